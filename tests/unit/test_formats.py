"""Dataset formats (issue 16): gzip (bomb-safe, truncation), Parquet (by record batch, flat columns
only, nulls as missing) and the spec's CSV dialect."""

from __future__ import annotations

import gzip
import hashlib
import io
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelops.domain.dataset import Limits, load_csv, validate_file, validate_stream
from modelops.domain.formats import FormatError, format_of, gunzip
from modelops.domain.spec import ModelSpec, parse_spec

MiB = 1024 * 1024


def spec_of(**kw: Any) -> ModelSpec:
    return parse_spec({"task": "regression", "target": "y", **kw})


def rows(n: int = 30) -> bytes:
    return ("a,plan,y\n" + "".join(f"{i},{('basic', 'pro')[i % 2]},{i * 0.5}\n" for i in range(n))).encode()


def pieces(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[k : k + size] for k in range(0, len(data), size)]


def test_format_of_names_the_three_formats() -> None:
    assert format_of("datasets/m/a.csv") == "csv"
    assert format_of("datasets/m/a.csv.gz") == "csv.gz"
    assert format_of("datasets/m/a.parquet") == "parquet"
    assert format_of("datasets/m/a.json") is None


# ---------------------------------------------------------------------------- gzip
def test_a_gzip_csv_validates_like_the_csv_and_hashes_the_stored_bytes() -> None:
    plain = rows()
    packed = gzip.compress(plain)
    report = validate_stream(pieces(packed, 100), spec_of(), fmt="csv.gz")
    assert report.ok, report.reason
    assert report.rows == 30 and report.format == "csv.gz"
    assert report.sha256 == hashlib.sha256(packed).hexdigest()  # the object's bytes, not the CSV's
    assert report.bytes_read == len(packed)


def test_gzip_members_are_read_one_after_the_other() -> None:
    plain = rows()
    cut = plain.index(b"\n", 200) + 1
    packed = gzip.compress(plain[:cut]) + gzip.compress(plain[cut:])
    report = validate_stream([packed], spec_of(), fmt="csv.gz")
    assert report.ok and report.rows == 30


def test_a_gzip_that_expands_1000x_stops_at_the_limit_in_bounded_memory() -> None:
    # 64 MiB of repetitive CSV compress to ~64 KiB (1000x); the limit is 1 MiB
    line = b"1,basic," + b" " * 100_000 + b"2\n"  # blanks around a cell are stripped: a valid row
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    packed = comp.compress(b"a,plan,y\n")
    for _ in range(64):
        packed += comp.compress(line * (MiB // len(line)))
    packed += comp.flush()
    assert len(packed) * 900 < 64 * MiB  # really a bomb
    tracemalloc.start()
    try:
        report = validate_stream(pieces(packed, 64 * 1024), spec_of(), Limits(max_bytes=MiB), fmt="csv.gz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.code == "too_large"
    assert "decompresses to more than the limit of 1048576 bytes" in report.reason
    assert report.sha256 is None and not report.complete
    assert peak < 16 * MiB, peak


def test_a_truncated_gzip_is_bad_gzip() -> None:
    packed = gzip.compress(rows(300))
    report = validate_stream([packed[: len(packed) // 2]], spec_of(), fmt="csv.gz")
    assert report.code == "bad_gzip" and "truncated" in report.reason


def test_bytes_that_are_not_gzip_are_bad_gzip() -> None:
    report = validate_stream([rows()], spec_of(), fmt="csv.gz")
    assert report.code == "bad_gzip"


def test_gunzip_alone_refuses_past_the_limit() -> None:
    with pytest.raises(FormatError) as exc:
        list(gunzip([gzip.compress(b"x" * 10_000)], 1000))
    assert exc.value.code == "too_large"


# ---------------------------------------------------------------------------- CSV dialect
def test_a_european_csv_semicolon_comma_decimal_latin1() -> None:
    text = "größe;stadt;y\n" + "".join(f"{i},5;{('Köln', 'Zürich')[i % 2]};{i},25\n" for i in range(30))
    data = text.encode("latin-1")
    spec = spec_of(csv={"delimiter": ";", "decimal": ",", "encoding": "latin-1"})
    sink = io.StringIO()
    report = validate_stream(pieces(data, 50), spec, sink=sink)
    assert report.ok, report.reason
    assert report.columns == ["größe", "stadt", "y"]
    assert report.feature_types == {"größe": "numeric", "stadt": "categorical"}
    assert report.categories["stadt"]["distinct"] == 2
    # the platform's copy is plain CSV: ",", ".", UTF-8
    lines = sink.getvalue().splitlines()
    assert lines[0] == "größe,stadt,y" and lines[2] == "1.5,Zürich,1.25"
    # read as UTF-8, the same bytes are not text
    assert validate_stream([data], spec_of(csv={"delimiter": ";"})).code == "not_utf8"


def test_a_latin1_byte_under_cp1252_that_has_no_character_is_bad_encoding() -> None:
    data = b"a;y\n\x81;1\n"
    report = validate_stream([data], spec_of(csv={"delimiter": ";", "encoding": "cp1252"}))
    assert report.code == "bad_encoding" and "line 2" in report.reason


# ---------------------------------------------------------------------------- Parquet
def write_parquet(path: Path, table: pa.Table, row_group_size: int = 10) -> Path:
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_a_parquet_file_validates_by_record_batch(tmp_path: Path) -> None:
    n = 40
    table = pa.table(
        {
            "a": pa.array(range(n), pa.int64()),
            "plan": pa.array([("basic", "pro")[i % 2] for i in range(n)]),
            "flag": pa.array([i % 3 == 0 for i in range(n)]),
            "y": pa.array([i * 0.5 for i in range(n)], pa.float64()),
        }
    )
    path = write_parquet(tmp_path / "d.parquet", table)
    sink = io.StringIO()
    report = validate_file(path, spec_of(), sink=sink)
    assert report.ok, report.reason
    assert report.format == "parquet" and report.rows == n
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.feature_types == {"a": "numeric", "plan": "categorical", "flag": "numeric"}
    assert sink.getvalue().splitlines()[:2] == ["a,plan,flag,y", "0,basic,1,0.0"]
    loaded = load_csv(path, spec_of())
    assert loaded.x.shape == (n, 3) and loaded.categories["plan"][:2] == ["basic", "pro"]


def test_a_parquet_file_with_a_nested_column_is_unsupported_column(tmp_path: Path) -> None:
    table = pa.table(
        {
            "a": pa.array([1, 2, 3]),
            "tags": pa.array([["x"], ["y", "z"], []], pa.list_(pa.string())),
            "y": pa.array([1.0, 2.0, 3.0]),
        }
    )
    report = validate_file(write_parquet(tmp_path / "d.parquet", table), spec_of())
    assert report.code == "unsupported_column"
    assert "'tags' (list<element: string>)" in report.reason


def test_a_parquet_int_column_holding_nulls_counts_them_missing(tmp_path: Path) -> None:
    n = 40
    values = [None if i in (3, 30) else i for i in range(n)]
    table = pa.table({"a": pa.array(values, pa.int32()), "y": pa.array([float(i) for i in range(n)])})
    path = write_parquet(tmp_path / "d.parquet", table)
    report = validate_file(path, spec_of())
    assert report.ok, report.reason
    assert report.missing["a"] == 2 and report.feature_types == {"a": "numeric"}
    many = pa.table(
        {
            "a": pa.array([None] * 10 + list(range(30)), pa.int32()),
            "y": pa.array([1.0 * i for i in range(40)]),
        }
    )
    assert validate_file(write_parquet(tmp_path / "m.parquet", many), spec_of()).code == "too_many_missing"


def test_bytes_that_are_not_parquet_are_bad_parquet(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(rows())
    assert validate_file(path, spec_of()).code == "bad_parquet"


def test_a_parquet_file_over_the_byte_limit_is_too_large(tmp_path: Path) -> None:
    table = pa.table({"a": pa.array(range(1000)), "y": pa.array([1.0 * i for i in range(1000)])})
    path = write_parquet(tmp_path / "d.parquet", table, 100)
    assert validate_file(path, spec_of(), Limits(max_bytes=100)).code == "too_large"
