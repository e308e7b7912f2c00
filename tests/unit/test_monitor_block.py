"""The monitor's column-wise path (``capture.read_block`` + ``WindowScan._feed_piece``) against the
line-by-line one (``read_header`` / ``read_arrays``): it accepts only lines the line-by-line path
accepts, with the same values, and a window scanned either way gives the same counts, the same
partials to the last bit and the same joined labels, whatever is wrong with the lines."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelops.domain import capture, drift
from modelops.domain.baseline import compute_baseline
from modelops.stages import monitor as monitoring
from modelops.stages.monitor import scan as scan_module

NAMES = ["a", "b", "c"]
TRAIN = np.random.default_rng(0).normal(size=(2000, 3))
BASELINE = compute_baseline(TRAIN, NAMES, TRAIN[:, 0])
NOW = 1_800_000_000.0
REFS, PRED = drift.references(BASELINE, NAMES)


def context(model: str, version: int) -> monitoring.VersionContext | None:
    if model == "m" and version in (1, 2):
        return monitoring.VersionContext(model="m", version=version, features=NAMES, refs=REFS, pred_ref=PRED)
    if model == "blind" and version == 1:  # a version whose schema is unknown: lines only counted
        return monitoring.VersionContext(model="blind", version=1, features=[], problem="no baseline")
    return None


def record(
    i: int, rng: np.random.Generator, model: str = "m", version: int = 1, ts: float = NOW - 10
) -> bytes:
    rows = 1 if rng.random() < 0.8 else int(rng.integers(2, 5))
    x = rng.normal(size=(rows, 3)).astype(np.float32)
    return capture.encode_record(model, version, f"r{i}", ts, x, x[:, :1] * 2)


def _set(line: bytes, key: str, raw: str) -> bytes:
    doc = json.loads(line)
    text = json.dumps(doc, separators=(",", ":"))
    old = f'"{key}":{json.dumps(doc[key], separators=(",", ":"))}'
    assert old in text
    return text.replace(old, f'"{key}":{raw}', 1).encode() + b"\n"


MUTATIONS: dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "truncated": lambda line, rng: line[: int(rng.integers(1, len(line) - 1))] + b"\n",
    "byte_flipped": lambda line, rng: (lambda i: line[:i] + b"#" + line[i + 1 :])(
        int(rng.integers(0, len(line) - 1))
    ),
    "v_float": lambda line, rng: _set(line, "v", "1.0"),
    "v_true": lambda line, rng: _set(line, "v", "true"),
    "v_two": lambda line, rng: _set(line, "v", "2"),
    "ts_int": lambda line, rng: _set(line, "ts", str(int(NOW - 5))),
    "ts_string": lambda line, rng: _set(line, "ts", '"now"'),
    "ts_huge": lambda line, rng: _set(line, "ts", "1e400"),
    "n_bool": lambda line, rng: _set(line, "n", "true"),
    "n_zero": lambda line, rng: _set(line, "n", "0"),
    "n_huge": lambda line, rng: _set(line, "n", str(2**70)),
    "f_two": lambda line, rng: _set(line, "f", "2"),
    "k_two": lambda line, rng: _set(line, "k", "2"),
    "version_str": lambda line, rng: _set(line, "version", '"1"'),
    "model_number": lambda line, rng: _set(line, "model", "7"),
    "x_bad_padding": lambda line, rng: _set(line, "x", json.dumps(json.loads(line)["x"].rstrip("=") + "A")),
    "x_not_base64": lambda line, rng: _set(line, "x", '"!!!!"'),
    "x_list": lambda line, rng: _set(line, "x", "[1,2,3]"),
    "y_short": lambda line, rng: _set(line, "y", '"AAAA"'),
    "extra_field": lambda line, rng: line.rstrip(b"\n")[:-1] + b',"z":{"a":[1]}}\n',
    "duplicate_key": lambda line, rng: line.rstrip(b"\n")[:-1] + b',"v":1}\n',
    "escaped_model": lambda line, rng: line.replace(b'"model":"m"', b'"model":"\\u006d"', 1),
    "spaces": lambda line, rng: line.replace(b'","', b'", "', 1),
    "crlf": lambda line, rng: line.rstrip(b"\n") + b"\r\n",
    "blank_after": lambda line, rng: line + b"\n",
    "two_on_a_line": lambda line, rng: line.rstrip(b"\n") + b" " + line,
    "split_in_two": lambda line, rng: line.replace(b',"n":', b',\n"n":', 1),
    "not_an_object": lambda line, rng: b"[1,2,3]\n",
    "tensor_line": lambda line, rng: capture.encode_tensor_record(
        "m", 1, "t", NOW - 10, {"image": np.ones((1, 2, 2), np.float32)}, {"out": np.ones((1, 1), np.float32)}
    ),
    "outside_window": lambda line, rng: _set(line, "ts", f"{NOW + 100:.3f}"),
    "other_model": lambda line, rng: line.replace(b'"model":"m"', b'"model":"other"', 1),
    "unknown_version": lambda line, rng: _set(line, "version", "9"),
    "second_version": lambda line, rng: _set(line, "version", "2"),
    "blind_model": lambda line, rng: line.replace(b'"model":"m"', b'"model":"blind"', 1),
}


def window(seed: int, n: int, bad: list[str]) -> list[bytes]:
    rng = np.random.default_rng(seed)
    lines = [record(i, rng) for i in range(n)]
    for i, name in zip(rng.permutation(n).tolist(), bad, strict=False):  # one fault per line
        lines[i] = MUTATIONS[name](lines[i], rng)
    return lines


def _accepts(line: bytes) -> tuple[Any, ...] | None:
    """What the line-by-line path makes of one line (None: refused)."""
    try:
        model, version, rid, ts, n, f, k, xs, ys = capture.read_header(line)
        xb, yb = capture.read_arrays(xs, ys, n, f, k)
    except capture.CaptureFormatError:
        return None
    return model, version, rid, ts, n, f, k, xb, yb


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_read_block_takes_only_what_the_line_path_takes_with_the_same_values(name: str) -> None:
    rng = np.random.default_rng(3)
    lines = [record(i, rng) for i in range(6)]
    lines[2] = MUTATIONS[name](lines[2], rng)
    block = b"".join(lines).rstrip(b"\n")
    got = capture.read_block(block)
    if got is None:
        return  # refused: the line-by-line path decides (test_scans_agree checks the counts)
    parts = block.split(b"\n")
    expected = [_accepts(line) for line in parts]
    assert all(e is not None for e in expected), f"{name}: read_block took a line the line path refuses"
    assert len(got.models) == len(parts)
    for i, e in enumerate(expected):
        assert e is not None
        assert (got.models[i], got.versions[i], got.request_id(i)) == e[:3]
        assert got.ts[i] == e[3] and type(e[3]) is float
        assert (int(got.n[i]), int(got.f[i]), int(got.k[i])) == e[4:7]
        assert (got.x[i], got.y[i]) == e[7:]


def test_read_block_reads_canonical_lines_as_decode_line_does() -> None:
    rng = np.random.default_rng(5)
    lines = [record(i, rng, version=1 + i % 2) for i in range(40)]
    got = capture.read_block(b"".join(lines).rstrip(b"\n"))
    assert got is not None
    for i, line in enumerate(lines):
        rec = capture.decode_line(line)
        assert (got.models[i], got.versions[i], got.request_id(i), got.ts[i]) == (
            rec.model,
            rec.version,
            rec.request_id,
            rec.ts,
        )
        assert np.array_equal(np.frombuffer(got.x[i], "<f4").reshape(rec.x.shape), rec.x)
        assert np.array_equal(np.frombuffer(got.y[i], "<f4").reshape(rec.y.shape), rec.y)


def _scan(data: bytes, block: int, labels: dict[str, Any] | None, column_wise: bool) -> dict[str, Any]:
    original = scan_module.read_block
    scan_module.read_block = original if column_wise else (lambda piece: None)
    try:
        s = monitoring.WindowScan(NOW - 3600, NOW, context, labels=labels, block_bytes=block)
        s.feed_stream(io.BytesIO(data))
        groups = s.groups
    finally:
        scan_module.read_block = original
    out: dict[str, Any] = {"summary": s.summary(), "groups": {}}
    for key, g in sorted(groups.items()):
        out["groups"][key] = {
            "lines": g.lines,
            "rows": g.rows,
            "k": g.k,
            "bad": dict(g.bad),
            "ts": (g.first_ts, g.last_ts),
            "parts": None if g.parts is None else [p.to_dict(exact=True) for p in g.parts],
            "pred": None if g.pred is None else g.pred.to_dict(exact=True),
            "label_x": [a.tolist() for a in g.label_x],
            "label_y": [a.tolist() for a in g.label_y],
            "label_v": list(g.label_v),
        }
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 400),
    bad=st.lists(st.sampled_from(sorted(MUTATIONS)), max_size=6),
    block=st.sampled_from([97, 1000, 4096, 1 << 20]),
    piece=st.sampled_from([1, 300, 5000, 256 * 1024]),
    labelled=st.booleans(),
)
def test_scans_agree(seed: int, n: int, bad: list[str], block: int, piece: int, labelled: bool) -> None:
    lines = window(seed, n, bad)
    data = b"".join(lines)
    labels = {"m": {(f"r{i}", 0): float(i) for i in range(0, n, 3)}} if labelled else None
    old = scan_module.PIECE_BYTES
    scan_module.PIECE_BYTES = piece
    try:
        column_wise = _scan(data, block, labels, True)
        line_by_line = _scan(data, block, labels, False)
    finally:
        scan_module.PIECE_BYTES = old
    assert column_wise == line_by_line


def test_the_column_path_is_taken_for_clean_lines() -> None:
    """Clean traffic does not fall back: the line-by-line reader is never called."""
    rng = np.random.default_rng(9)
    data = b"".join(record(i, rng, version=1 + i % 2) for i in range(300))
    original = monitoring.WindowScan._feed_each
    calls: list[int] = []
    monitoring.WindowScan._feed_each = lambda self, lines: calls.append(1)  # type: ignore[method-assign]
    try:
        s = monitoring.WindowScan(NOW - 3600, NOW, context)
        s.feed_stream(io.BytesIO(data))
        assert sum(g.lines for g in s.groups.values()) == 300
    finally:
        monitoring.WindowScan._feed_each = original  # type: ignore[method-assign]
    assert calls == []


def _framing_attacks() -> dict[str, list[bytes]]:
    """Blocks where one line's record spans two lines and another line holds two records, so that
    the count of records still equals the count of lines: only the framing checks refuse them."""
    rng = np.random.default_rng(11)
    a, b, c = (record(i, rng).rstrip(b"\n") for i in range(3))
    return {
        "split_and_doubled": [a.replace(b',"n":', b',\n"n":', 1), b + b" " + c],
        "nested_field_across_lines": [a[:-1] + b',"z":[{}', b"{}]}", b + b" " + c],
    }


@pytest.mark.parametrize("name", sorted(_framing_attacks()))
def test_a_record_across_lines_is_never_taken_even_when_the_counts_match(name: str) -> None:
    lines = _framing_attacks()[name]
    block = b"\n".join(lines)
    assert capture.read_block(block) is None
    data = block + b"\n"
    assert _scan(data, 1 << 20, None, True) == _scan(data, 1 << 20, None, False)
    assert _scan(data, 1 << 20, None, True)["summary"]["bad_lines"] == len(block.split(b"\n"))
