"""The capture line format: round trips, and never anything but CaptureFormatError on garbage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelops.domain.capture import CaptureFormatError, decode_line, encode_record, iter_lines

floats32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


@given(
    x=hnp.arrays(
        np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8), elements=floats32
    ),
    k=st.integers(1, 3),
    version=st.integers(1, 10_000),
)
def test_round_trip(x: np.ndarray, k: int, version: int) -> None:
    y = np.arange(x.shape[0] * k, dtype=np.float32).reshape(x.shape[0], k)
    line = encode_record("demo", version, "req-1", 1732700000.5, x, y)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    rec = decode_line(line)
    assert (rec.model, rec.version, rec.request_id) == ("demo", version, "req-1")
    np.testing.assert_array_equal(rec.x, x)
    np.testing.assert_array_equal(rec.y, y)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_bytes_only_raise_capture_format_error(data: bytes) -> None:
    try:
        decode_line(data)
    except CaptureFormatError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


# Generation of nested JSON is slow on a loaded 2-core machine; the checks themselves are fast.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "v": st.sampled_from([1, 2, "1", None]),
            "model": json_values,
            "version": json_values,
            "request_id": json_values,
            "ts": json_values,
            "n": json_values,
            "f": json_values,
            "k": json_values,
            "x": json_values | st.just("AAAAAA=="),
            "y": json_values | st.just("AAAAAA=="),
        },
    )
)
def test_wrong_fields_only_raise_capture_format_error(doc: dict) -> None:
    try:
        rec = decode_line(json.dumps(doc))
    except CaptureFormatError:
        return
    assert rec.x.shape == (int(doc["n"]), int(doc["f"]))


def test_truncated_line_is_a_format_error() -> None:
    line = encode_record("demo", 1, "r", 0.0, np.ones((2, 3)), np.ones(2))
    for cut in (1, len(line) // 2, len(line) - 3):
        with pytest.raises(CaptureFormatError):
            decode_line(line[:cut])


def test_sizes_must_match() -> None:
    doc = json.loads(encode_record("demo", 1, "r", 0.0, np.ones((2, 3)), np.ones(2)))
    doc["f"] = 4
    with pytest.raises(CaptureFormatError):
        decode_line(json.dumps(doc))


def test_iter_lines_skips_blanks() -> None:
    assert list(iter_lines(b"a\n\n  \nb\n")) == [b"a", b"b"]


def test_baseline_bins_discrete_traffic_like_the_training_data() -> None:
    """A discrete feature trained from rounded text must bin full-precision float32 traffic alike."""
    from modelops.domain.baseline import column_stats

    rng = np.random.default_rng(0)
    exact = rng.choice([-0.0446416365069974, 0.0506801187398187], size=400)
    train = np.array([float(f"{v:.6g}") for v in exact])  # as a CSV with 6 significant digits has it
    stats = column_stats(train)
    traffic = exact.astype("<f4").astype(np.float64)  # as predict captures it
    bins = np.bincount(
        np.searchsorted(stats["edges"], traffic, side="right"), minlength=len(stats["proportions"])
    )
    np.testing.assert_allclose(bins / bins.sum(), stats["proportions"])
    train_bins = np.bincount(np.searchsorted(stats["edges"], train, side="right"), minlength=len(bins))
    np.testing.assert_allclose(train_bins / train_bins.sum(), stats["proportions"])
