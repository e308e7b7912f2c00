"""The monitor's batch decoder: same answers as capture.decode_line, bad lines counted, never a crash,
and the same result whatever the block size (lines split across reads)."""

from __future__ import annotations

import io
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelops.domain.baseline import compute_baseline
from modelops.domain.capture import CaptureFormatError, decode_line, encode_record
from modelops.stages import monitor as monitoring

NAMES = ["a", "b", "c"]
RNG = np.random.default_rng(0)
TRAIN = RNG.normal(size=(2000, 3))
BASELINE = compute_baseline(TRAIN, NAMES, TRAIN[:, 0])
NOW = 1_800_000_000.0


def context(model: str, version: int) -> monitoring.VersionContext | None:
    if (model, version) != ("m", 1):
        return None
    from modelops.domain import drift

    refs, pred = drift.references(BASELINE, NAMES)
    return monitoring.VersionContext(model="m", version=1, features=NAMES, refs=refs, pred_ref=pred)


def scan(data: bytes, block: int = 1 << 20) -> monitoring.WindowScan:
    s = monitoring.WindowScan(NOW - 3600, NOW, context, block_bytes=block)
    s.feed_stream(io.BytesIO(data))
    return s


def lines(n: int, seed: int = 1) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rows = int(rng.integers(1, 4))
        x = rng.normal(size=(rows, 3)).astype(np.float32)
        out.append(encode_record("m", 1, f"r{i}", NOW - 10, x, x[:, :1]))
    return out


def test_rows_match_decode_line() -> None:
    data = lines(50)
    s = scan(b"".join(data))
    g = s.groups[("m", 1)]
    expected = np.concatenate([decode_line(x).x for x in data])
    assert g.rows == expected.shape[0] and g.parts is not None
    assert [p.count for p in g.parts] == [expected.shape[0]] * 3
    assert g.parts[0].sums.sum() == np.sum(expected[:, 0].astype(np.float64))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=7, max_value=600))
def test_block_size_does_not_change_the_result(block: int) -> None:
    data = b"".join(lines(30, seed=2))
    whole = scan(data)
    pieces = scan(data, block=block)
    a, b = whole.groups[("m", 1)], pieces.groups[("m", 1)]
    assert (a.rows, a.lines) == (b.rows, b.lines) and pieces.summary()["bad_lines"] == 0
    assert a.parts is not None and b.parts is not None
    for p, q in zip(a.parts, b.parts, strict=True):
        np.testing.assert_array_equal(p.cells, q.cells)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=200), st.sampled_from(lines(5, seed=3))), max_size=12))
def test_garbage_is_counted_never_raised(chunks: list[bytes]) -> None:
    data = b"\n".join(chunks)
    s = scan(data)
    summary = s.summary()
    good = 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            decode_line(raw)
            good += 1
        except CaptureFormatError:
            pass
    rows = sum(g.lines for g in s.groups.values()) - sum(sum(g.bad.values()) for g in s.groups.values())
    # every non-blank line is either decoded into rows or counted (as bad or outside the window)
    assert s.lines == rows + summary["bad_lines"] + summary["outside_window"] + summary["other_models"]
    assert rows <= good


def test_each_bad_kind_has_its_reason() -> None:
    ok = json.loads(lines(1)[0])
    bad = {
        "missing_field": {k: v for k, v in ok.items() if k != "request_id"},
        "non_numeric": dict(ok, ts="yesterday"),
        "unsupported_format": dict(ok, v=2),
        "wrong_feature_count": dict(ok, f=4),
        "bad_array": dict(ok, n=99),
        "wrong_output_count": None,
    }
    first = encode_record("m", 1, "a", NOW - 5, np.zeros((1, 3), np.float32), np.zeros((1, 1), np.float32))
    second = encode_record("m", 1, "b", NOW - 5, np.zeros((1, 3), np.float32), np.zeros((1, 2), np.float32))
    body = b"".join((json.dumps(v) + "\n").encode() for v in bad.values() if v) + first + second
    got = scan(body).summary()["bad"]
    assert got == {k: 1 for k in bad}
