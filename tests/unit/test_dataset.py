"""The streaming dataset validator: every bad input the issue lists, and memory that stays flat."""

from __future__ import annotations

import hashlib
import math
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops.domain.dataset import Limits, load_csv, min_rows, split_sizes, validate_stream
from modelops.domain.errors import DatasetRejectedError
from modelops.domain.spec import ModelSpec, parse_spec

MiB = 1024 * 1024


def spec_of(**kw: Any) -> ModelSpec:
    return parse_spec({"task": "regression", "target": "y", **kw})


def csv_bytes(n: int = 20, header: str = "a,b,y", eol: str = "\n", row: Any = None) -> bytes:
    row = row or (lambda i: f"{i},{i * 0.5},{i % 7}")
    return (header + eol + "".join(row(i) + eol for i in range(n))).encode()


def validate(data: bytes, spec: ModelSpec | None = None, **limits: Any) -> Any:
    return validate_stream([data], spec or spec_of(), Limits(**limits))


# ---------------------------------------------------------------------------- accepted
def test_good_file_reports_rows_features_and_sha_of_the_exact_bytes() -> None:
    data = csv_bytes(25)
    report = validate(data)
    assert report.ok, report.reason
    assert report.rows == 25
    assert report.features == ["a", "b"]
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.complete and report.bytes_read == len(data)
    assert report.duplicate_rows == 0 and report.missing == {"a": 0, "b": 0, "y": 0}


@pytest.mark.parametrize(
    ("bom", "eol"),
    [(b"\xef\xbb\xbf", "\n"), (b"", "\r\n"), (b"\xef\xbb\xbf", "\r\n")],
    ids=["bom", "crlf", "both"],
)
def test_bom_and_crlf_are_accepted(bom: bytes, eol: str) -> None:
    data = bom + csv_bytes(20, eol=eol)
    report = validate(data)
    assert report.ok, report.reason
    assert report.columns == ["a", "b", "y"]  # no BOM glued to the first name, no \r on the last
    assert report.rows == 20
    assert report.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_chunk_boundaries_do_not_matter(size: int) -> None:
    data = b"\xef\xbb\xbf" + csv_bytes(
        30, header='"a, first",b,y', eol="\r\n", row=lambda i: f'{i},"{i}",{i % 3}'
    )
    whole = validate(data, spec_of(features=["a, first", "b"]))
    pieces = validate_stream(
        [data[i : i + size] for i in range(0, len(data), size)], spec_of(features=["a, first", "b"])
    )
    assert whole.ok and pieces.ok
    assert (pieces.rows, pieces.sha256, pieces.features) == (whole.rows, whole.sha256, whole.features)


def test_last_line_without_newline_counts() -> None:
    assert validate(csv_bytes(20).rstrip(b"\n")).rows == 20


def test_inferred_features_type_text_columns_as_categorical_and_exclude_empty_ones() -> None:
    # (issue 16) a text column is a categorical feature now, not silently excluded; a column with no
    # value at all is still excluded and reported
    data = csv_bytes(20, header="id,a,name,blank,y", row=lambda i: f"{i},{i * 2},row{i % 4},,{i}")
    report = validate(data)
    assert report.ok, report.reason
    assert report.features == ["id", "a", "name"]
    assert report.feature_types == {"id": "numeric", "a": "numeric", "name": "categorical"}
    assert report.categories["name"]["distinct"] == 4
    assert report.excluded_columns == ["blank"]


# ---------------------------------------------------------------------------- rejected
def test_empty_file() -> None:
    assert validate(b"").code == "empty_file"
    assert validate(b"\n \r\n\n").code == "empty_file"


def test_header_only() -> None:
    report = validate(b"a,b,y\r\n")
    assert report.code == "no_rows"
    assert not report.ok


def test_missing_target_column() -> None:
    report = validate(csv_bytes(20, header="a,b,c"))
    assert report.code == "missing_target"
    assert "'y'" in report.reason


def test_missing_header_row_gets_a_hint() -> None:
    report = validate(b"1,2,3\n4,5,6\n")
    assert report.code == "missing_target"
    assert "header row missing" in report.reason


def test_listed_feature_not_in_header() -> None:
    report = validate(csv_bytes(20), spec_of(features=["a", "zzz"]))
    assert report.code == "missing_features"
    assert "zzz" in report.reason


@pytest.mark.parametrize("header", ["a,a,y", "a,,y"])
def test_bad_header(header: str) -> None:
    assert validate(csv_bytes(20, header=header)).code == "bad_header"


def test_text_in_a_numeric_column() -> None:
    data = csv_bytes(20, row=lambda i: f"{i},{'oops' if i == 4 else i},{i}")
    report = validate(data, spec_of(features=["a", "b"]))
    assert report.code == "non_numeric"
    assert "row 6, column 'b': 'oops'" in report.reason  # line 6 = header + 5th row


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-Infinity", "1e999"])
def test_nan_and_inf_are_rejected(bad: str) -> None:
    report = validate(csv_bytes(20, row=lambda i: f"{i},{bad if i == 3 else i},{i}"))
    assert report.code == "non_finite"
    assert "b" in report.reason


def test_nan_target_is_rejected_for_regression() -> None:
    report = validate(csv_bytes(20, row=lambda i: f"{i},{i},{'inf' if i == 2 else i}"))
    assert report.code == "bad_target"


def test_one_row() -> None:
    report = validate(csv_bytes(1))
    assert report.code == "too_few_rows"
    assert "at least 10" in report.reason


def test_ragged_rows() -> None:
    report = validate(csv_bytes(20, row=lambda i: f"{i},{i}" if i == 5 else f"{i},{i},{i}"))
    assert report.code == "ragged_row"


def test_missing_target_value() -> None:
    report = validate(csv_bytes(20, row=lambda i: f"{i},{i},{'' if i == 9 else i}"))
    assert report.code == "missing_target"
    assert report.missing["y"] == 1


def test_missing_rate_is_reported_and_limited() -> None:
    one = validate(csv_bytes(20, row=lambda i: f"{i},{'NA' if i == 0 else i},{i}"))
    assert one.ok and one.missing["b"] == 1 and one.max_missing_rate == pytest.approx(0.05)
    two = validate(csv_bytes(20, row=lambda i: f"{i},{'' if i < 2 else i},{i}"))
    assert two.code == "too_many_missing"
    assert "b (10.0%)" in two.reason


def test_duplicate_rate_is_reported_and_limited() -> None:
    data = csv_bytes(20, row=lambda i: f"{i % 10},{i % 10},{i % 10}")
    report = validate(data, max_duplicate_rate=0.6)
    assert report.ok and report.duplicate_rows == 10 and report.duplicate_rate == pytest.approx(0.5)
    assert report.duplicates_exact
    assert validate(data, max_duplicate_rate=0.4).code == "too_many_duplicates"


def test_duplicate_rate_is_estimated_in_bounded_memory() -> None:
    # 6000 distinct rows, each twice: 50% duplicates; only 256 hashes may be kept
    data = csv_bytes(12_000, row=lambda i: f"{i % 6000},{(i % 6000) * 3},1")
    report = validate(data, duplicate_sample=256)
    assert not report.duplicates_exact
    assert report.duplicate_rate == pytest.approx(0.5, abs=0.1)


def test_not_utf8() -> None:
    report = validate(b"a,b,y\n" + b"1,\xff\xfe,2\n" * 20)
    assert report.code == "not_utf8"


def test_too_many_rows_stops_reading() -> None:
    report = validate(csv_bytes(50), max_rows=30)
    assert report.code == "too_many_rows"
    assert report.sha256 is None and not report.complete


@pytest.mark.parametrize(
    ("task", "labels", "code", "classes"),
    [
        ("binary", ["no", "yes"], None, ["no", "yes"]),
        ("binary", ["1", "0.0"], None, [0, 1]),
        ("binary", ["a", "b", "c"], "bad_target", None),
        ("multiclass", ["x"], "single_class", ["x"]),  # issue 14: one class teaches nothing
        ("binary", ["x"], "single_class", ["x"]),
        ("multiclass", ["2", "10", "1"], None, [1, 2, 10]),
    ],
)
def test_classification_targets(
    task: str, labels: list[str], code: str | None, classes: list[Any] | None
) -> None:
    data = csv_bytes(24, header="a,y", row=lambda i: f"{i},{labels[i % len(labels)]}")
    report = validate(data, parse_spec({"task": task, "target": "y"}))
    assert report.code == code, report.reason
    if classes is not None:
        assert report.classes == classes
        assert sum(report.class_counts or []) == 24


def test_split_sizes_and_min_rows() -> None:
    assert split_sizes(10, 0.2) == (8, 2)
    assert split_sizes(2, 0.5) == (1, 1)
    assert min_rows(spec_of(), Limits()) == 10
    assert min_rows(spec_of(training={"validation_split": 0.05}), Limits()) == 40


# ---------------------------------------------------------------------------- big inputs, flat memory
class LazyCsv:
    """A file-like object producing ``total`` bytes of CSV on demand (never held in memory)."""

    def __init__(
        self,
        total: int,
        chunk: int = MiB,
        line: bytes = b"0.2500000000000,1.5000000000000,3.7500000000000,2.000000000000\n",
    ):
        self.total, self.chunk, self.served = total, chunk, 0
        self.header = b"a,b,c,y\n"
        reps = chunk // len(line) + 1
        self.block = (line * reps)[:chunk]

    def read(self, n: int = -1) -> bytes:
        if self.served >= self.total:
            return b""
        if self.served == 0:
            out = self.header + self.block[: min(self.chunk, self.total) - len(self.header)]
        else:
            out = self.block[: min(self.chunk, self.total - self.served)]
        self.served += len(out)
        return out

    def iter_chunks(self) -> Iterator[bytes]:
        while chunk := self.read():
            yield chunk


def _peak_while(fn: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def test_200mb_stream_stops_at_the_byte_limit_with_flat_memory() -> None:
    body = LazyCsv(200 * MiB)
    limits = Limits(max_bytes=4 * MiB, max_duplicate_rate=1.0)
    report, peak = _peak_while(lambda: validate_stream(body.iter_chunks(), spec_of(), limits))
    assert report.code == "too_large"
    assert body.served <= limits.max_bytes + MiB  # stopped within one chunk of the limit
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_200mb_stream_stops_at_the_row_limit_with_flat_memory() -> None:
    body = LazyCsv(200 * MiB)
    limits = Limits(max_rows=40_000, max_duplicate_rate=1.0)
    report, peak = _peak_while(lambda: validate_stream(body.iter_chunks(), spec_of(), limits))
    assert report.code == "too_many_rows"
    assert body.served < 4 * MiB  # 40k rows of 60 bytes, not 200 MB
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_known_size_over_the_limit_reads_nothing() -> None:
    def never() -> Iterator[bytes]:
        raise AssertionError("the body must not be read")
        yield b""  # pragma: no cover

    report = validate_stream(never(), spec_of(), Limits(), size=200 * MiB)
    assert report.code == "too_large"
    assert report.bytes_read == 0


def test_one_endless_line_is_cut_off() -> None:
    body = LazyCsv(50 * MiB, line=b"1" * 1000)  # no newline at all after the header
    report, peak = _peak_while(
        lambda: validate_stream(body.iter_chunks(), spec_of(), Limits(max_line_bytes=MiB))
    )
    assert report.code == "line_too_long"
    assert body.served <= 3 * MiB
    assert peak < 16 * MiB


# ---------------------------------------------------------------------------- loading (the trainer's reader)
def test_load_csv_returns_matrix_with_nan_for_missing(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(
        csv_bytes(
            20, header="a,label,b", row=lambda i: f"{'' if i == 0 else i},{'cat' if i % 2 else 'dog'},{i * 2}"
        )
    )
    data = load_csv(path, parse_spec({"task": "binary", "target": "label"}))
    assert data.features == ["a", "b"]
    assert data.x.shape == (20, 2) and math.isnan(data.x[0, 0]) and data.x[3, 1] == 6.0
    assert data.classes == ["cat", "dog"]
    assert np.array_equal(data.y, np.array([1 if i % 2 == 0 else 0 for i in range(20)]))


def test_load_csv_rejects_what_the_validator_rejects(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(csv_bytes(20, row=lambda i: f"{i},nan,{i}"))
    with pytest.raises(DatasetRejectedError, match="non_finite"):
        load_csv(path, spec_of())
