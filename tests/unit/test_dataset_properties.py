"""Property tests of the streaming dataset validator: any bytes, any chunking, never a crash; a
valid table is accepted whatever its chunk boundaries; one bad cell is always caught."""

from __future__ import annotations

import hashlib
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelops.domain.dataset import Limits, validate_stream
from modelops.domain.spec import parse_spec

SPEC = parse_spec({"task": "regression", "target": "y", "features": ["a", "b"]})
LIMITS = Limits(min_rows=5)
finite = st.floats(allow_nan=False, allow_infinity=False, width=32, min_value=-1e6, max_value=1e6)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in [*points, len(data)]:
        out.append(data[last:p])
        last = p
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_any_bytes_give_a_report_never_an_exception(data: bytes, cuts: list[int]) -> None:
    report = validate_stream(chunked(data, cuts), SPEC, LIMITS)
    assert report.ok == (not report.problems)
    json.dumps(report.to_dict())  # the report itself always serialises (it goes into reason.json)
    if not report.ok:
        assert report.reason and report.code


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(finite, finite, finite), min_size=20, max_size=60, unique=True),
    cuts=st.lists(st.integers(0, 5000), max_size=10),
    eol=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
)
def test_a_valid_table_is_accepted_whatever_the_chunking(rows, cuts, eol: str, bom: bool) -> None:  # type: ignore[no-untyped-def]
    text = eol.join(["a,b,y", *(f"{a!r},{b!r},{y!r}" for a, b, y in rows)]) + eol
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    report = validate_stream(chunked(data, cuts), SPEC, Limits(min_rows=5, max_duplicate_rate=1.0))
    assert report.ok, report.reason
    assert report.rows == len(rows)
    assert report.sha256 == hashlib.sha256(data).hexdigest()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(finite, finite, finite), min_size=20, max_size=40),
    where=st.tuples(st.integers(0, 39), st.integers(0, 2)),
    bad=st.sampled_from(["abc", "nan", "inf", "-inf", "1e999", "0x10", "1,5", "true"]),
)
def test_one_bad_cell_is_always_caught(rows, where, bad: str) -> None:  # type: ignore[no-untyped-def]
    r, c = where[0] % len(rows), where[1]
    lines = [[repr(v) for v in row] for row in rows]
    lines[r][c] = f'"{bad}"' if "," in bad else bad
    data = ("a,b,y\n" + "\n".join(",".join(cells) for cells in lines) + "\n").encode()
    report = validate_stream([data], SPEC, Limits(min_rows=5, max_duplicate_rate=1.0))
    assert not report.ok, f"{bad!r} at row {r} column {c} was accepted"
    assert not math.isnan(report.rows)
