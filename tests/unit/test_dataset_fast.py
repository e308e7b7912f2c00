"""The validator's fast path (plain batches checked a column at a time) gives exactly the report of the
row-at-a-time path: the same problems (codes, messages naming rows, columns and values), counts,
classes, categories, duplicate sample and SHA-256, and the same rows in the sink, whatever the
chunking and the batch size. Each input also proves the fast path took rows where it could."""

from __future__ import annotations

import gzip
import io
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelops.domain.dataset as dataset
from modelops.domain.dataset import (
    Limits,
    Production,
    validate_evaluation_stream,
    validate_part,
    validate_stream,
)
from modelops.domain.encoding import InputSchema
from modelops.domain.spec import ModelSpec, parse_spec

REGRESSION = parse_spec({"task": "regression", "target": "y"})
BATCHES = (1, 48, 300, 4096)
"""Fast-path batch sizes in bytes (1: every line a batch of its own; the row path is 0)."""
CHUNKINGS = (None, 7, 64, 1000)
"""Chunk sizes the bytes arrive in (None: one chunk)."""


def chunks_of(data: bytes, size: int | None) -> list[bytes]:
    if size is None:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


def run(
    monkeypatch: pytest.MonkeyPatch,
    batch: int,
    data: bytes,
    spec: ModelSpec,
    limits: Limits,
    size: int | None = None,
    how: str = "stream",
    **kw: Any,
) -> tuple[dict[str, Any], str, int]:
    """The report (with what a merge needs), the sink's text, and the rows the fast path took."""
    monkeypatch.setattr(dataset, "PLAIN_BATCH_BYTES", batch)
    taken = 0
    real = dataset._Scanner._plain

    def spy(self: Any, first: int, text: str) -> bool:
        nonlocal taken
        took = real(self, first, text)
        taken += (text.count("\n") + 1) if took else 0
        return took

    monkeypatch.setattr(dataset._Scanner, "_plain", spy)
    sink = io.StringIO()
    validate = {"stream": validate_stream, "part": validate_part, "eval": validate_evaluation_stream}[how]
    report = validate(chunks_of(data, size), spec, limits, sink=sink, **kw)
    monkeypatch.undo()
    return report.to_part_dict(), sink.getvalue(), taken


def same_reports(
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    spec: ModelSpec = REGRESSION,
    limits: Limits | None = None,
    **kw: Any,
) -> tuple[dict[str, Any], int]:
    """Assert every batch size and chunking gives the row path's report and sink; return that report
    and the most rows the fast path took in one run."""
    limits = limits or Limits(min_rows=5)
    most = 0
    for size in CHUNKINGS:  # (a stop reads as far as its chunk: bytes_read depends on the chunking)
        want, want_sink, none = run(monkeypatch, 0, data, spec, limits, size, **kw)
        assert none == 0
        for batch in BATCHES:
            got, got_sink, taken = run(monkeypatch, batch, data, spec, limits, size, **kw)
            assert got == want, f"batch {batch}, chunks of {size}"
            assert got_sink == want_sink, f"batch {batch}, chunks of {size}"
            most = max(most, taken)
    return run(monkeypatch, 0, data, spec, limits, None, **kw)[0], most


def table(header: str, rows: list[str], eol: str = "\n") -> bytes:
    return (eol.join([header, *rows]) + eol).encode()


def numbers(n: int, cols: int = 3, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    return [[repr(round(rng.uniform(-100, 100), 4)) for _ in range(cols)] for _ in range(n)]


def lines(cells: list[list[str]]) -> list[str]:
    return [",".join(row) for row in cells]


# ---------------------------------------------------------------------------- clean inputs: fast
def test_a_clean_numeric_table_is_taken_by_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    report, taken = same_reports(monkeypatch, table("a,b,y", lines(numbers(120))))
    assert report["ok"], report["reason"]
    assert report["rows"] == 120 and report["feature_types"] == {"a": "numeric", "b": "numeric"}
    assert taken >= 100  # all but the header's batch


def test_missing_cells_are_counted_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    cells = numbers(120)
    for r in (3, 50, 51, 119):
        cells[r][r % 2] = ""
    cells[70][0] = "NA"
    cells[71][1] = " null "
    cells[72][0] = "   "
    report, taken = same_reports(monkeypatch, table("a,b,y", lines(cells)), limits=Limits(min_rows=5))
    assert report["missing"] == {"a": 3, "b": 4, "y": 0}
    assert taken > 0


@pytest.mark.parametrize("word", ["abc", "1,5x", "0x10", "1_000", "١٢", "--1", "1e", "."])
def test_a_stray_word_in_a_numeric_column_is_named_alike(monkeypatch: pytest.MonkeyPatch, word: str) -> None:
    cells = numbers(200)
    for r in (10, 99, 100, 101, 150, 151, 152, 199):  # around batch and chunk boundaries
        cells[r][1] = word.replace(",", ";")
    report, taken = same_reports(monkeypatch, table("a,b,y", lines(cells)))
    if word in ("1_000", "١٢"):  # float() reads these: numbers, as in the row path
        assert report["ok"], report["reason"]
    else:
        assert report["code"] == "non_numeric"
        assert f"row 12, column 'b': {word.replace(',', ';')!r}" in report["reason"]
        assert "and 3 more" in report["reason"]
    assert taken > 0


@pytest.mark.parametrize("cell", ["1e5", "+1", ".5", "1.", "-0", " 7 ", "\t3", "1E-3", "00012"])
def test_number_spellings_read_alike(monkeypatch: pytest.MonkeyPatch, cell: str) -> None:
    cells = numbers(120)
    for r in range(0, 120, 3):
        cells[r][0] = cell
    report, taken = same_reports(monkeypatch, table("a,b,y", lines(cells)))
    assert report["ok"], report["reason"]
    assert report["feature_types"]["a"] == "numeric"
    assert taken > 0


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity", "1e999", "NaN"])
def test_non_finite_cells_are_named_in_row_order_alike(monkeypatch: pytest.MonkeyPatch, cell: str) -> None:
    cells = numbers(150)
    for r, c in ((5, 1), (5, 0), (60, 1), (61, 0), (90, 0), (90, 1), (140, 1), (149, 0)):
        cells[r][c] = cell
    report, _ = same_reports(monkeypatch, table("a,b,y", lines(cells)))
    assert report["code"] == "non_finite"
    # the first five examples, row by row, columns in order within a row
    assert f"row 7, column 'a': {cell!r}; row 7, column 'b': {cell!r}; row 62, column 'b'" in report["reason"]


def test_non_finite_and_missing_targets_are_named_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    cells = numbers(120)
    cells[4][2] = ""
    cells[60][2] = "inf"
    cells[61][2] = "many"
    cells[110][2] = "NA"
    report, taken = same_reports(monkeypatch, table("a,b,y", lines(cells)))
    assert report["code"] == "missing_target"
    assert "2 rows have no target value (e.g. row 6; row 112)" in report["reason"]
    assert "row 62: 'inf' is not finite; row 63: 'many' is not a number" in report["reason"]
    assert taken > 0


def test_a_constant_target_is_reported_with_its_value_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    cells = numbers(100)
    for r, row in enumerate(cells):
        row[2] = ["-0.0", "0", "0.0", "-0"][r % 4]
    report, _ = same_reports(monkeypatch, table("a,b,y", lines(cells)))
    assert report["code"] == "constant_target" and "same value (-0)" in report["reason"]


# ---------------------------------------------------------------------------- text, quotes, layout
def test_quoted_fields_read_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = lines(numbers(150))
    rows[20] = '"1.5",2,3'
    rows[80] = '4,"a, quoted ""cell""",5'
    rows[81] = '"multi\nline",6,7'  # a quoted field running onto the next line
    report, taken = same_reports(monkeypatch, table("a,b,y", rows))
    assert report["code"] == "non_numeric"
    assert "row 82, column 'b': 'a, quoted \"cell\"'" in report["reason"]
    assert "row 84, column 'a': 'multi\\nline'" in report["reason"]  # where the row ends
    assert taken > 0


def test_a_quote_opened_near_the_end_runs_on_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = lines(numbers(150))
    rows[140] = '1,"2,3\n4,5'
    report, _ = same_reports(monkeypatch, table("a,b,y", rows))
    assert not report["ok"]


@pytest.mark.parametrize("eol", ["\r\n", "\n"])
def test_crlf_blank_lines_and_a_missing_last_newline_read_alike(
    monkeypatch: pytest.MonkeyPatch, eol: str
) -> None:
    rows = lines(numbers(150))
    rows[30] = ""
    rows[100] = ""
    data = table("a,b,y", rows, eol)[: -len(eol)]  # no newline after the last row
    report, taken = same_reports(monkeypatch, data)
    assert report["ok"], report["reason"]
    assert report["rows"] == 148
    assert taken > 0


def test_a_stray_carriage_return_is_bad_csv_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = lines(numbers(150))
    rows[90] = "1\r2,3,4"
    report, _ = same_reports(monkeypatch, table("a,b,y", rows))
    assert report["code"] == "bad_csv" and "near line 92" in report["reason"]


def test_rows_with_too_many_or_too_few_cells_are_named_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = lines(numbers(150))
    rows[40] = "1,2"
    rows[41] = "1,2,3,4"
    rows[120] = "1,2,3,4,5"
    rows[121] = "   "  # a blank-looking row is a row of one field
    report, taken = same_reports(monkeypatch, table("a,b,y", rows))
    assert report["code"] == "ragged_row"
    assert "4 rows do not have as many fields as the header" in report["reason"]
    assert "row 42 has 2 fields, the header 3; row 43 has 4 fields" in report["reason"]
    assert taken > 0


def test_a_bom_and_a_semicolon_dialect_read_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_spec({"task": "regression", "target": "y", "csv": {"delimiter": ";"}})
    rows = [";".join(r) for r in numbers(120)]
    rows[50] = "1;a,b;2"  # a comma in a cell: the sink quotes it
    report, taken = same_reports(monkeypatch, b"\xef\xbb\xbf" + table("a;b;y", rows), spec)
    assert report["code"] == "non_numeric" and report["columns"] == ["a", "b", "y"]
    assert taken > 0


def test_a_comma_decimal_dialect_reads_row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_spec({"task": "regression", "target": "y", "csv": {"delimiter": ";", "decimal": ","}})
    rows = [";".join(c.replace(".", ",") for c in r) for r in numbers(120)]
    report, taken = same_reports(monkeypatch, table("a;b;y", rows), spec)
    assert report["ok"], report["reason"]
    assert taken == 0


def test_latin1_text_reads_row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_spec({"task": "regression", "target": "y", "csv": {"encoding": "latin-1"}})
    rows = [f"{r[0]},{'é' if i % 2 else 'à'},{r[2]}" for i, r in enumerate(numbers(120))]
    report, taken = same_reports(monkeypatch, "\n".join(["a,b,y", *rows]).encode("latin-1"), spec)
    assert report["feature_types"] == {"a": "numeric", "b": "categorical"}
    assert taken == 0


def test_bad_utf8_in_the_middle_stops_at_the_same_row(monkeypatch: pytest.MonkeyPatch) -> None:
    data = table("a,b,y", lines(numbers(150)))
    cut = data.index(b"\n", len(data) // 2)
    data = data[:cut] + b",\xff" + data[cut:]
    report, _ = same_reports(monkeypatch, data)
    assert report["code"] == "not_utf8" and not report["complete"]


def test_a_line_too_long_stops_at_the_same_row(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = lines(numbers(150))
    rows[100] = "1,2," + "9" * 300
    report, _ = same_reports(monkeypatch, table("a,b,y", rows), limits=Limits(min_rows=5, max_line_bytes=200))
    assert report["code"] == "line_too_long" and "line 102" in report["reason"]


def test_too_many_rows_stops_at_the_same_row(monkeypatch: pytest.MonkeyPatch) -> None:
    report, _ = same_reports(
        monkeypatch, table("a,b,y", lines(numbers(150))), limits=Limits(min_rows=5, max_rows=97)
    )
    assert report["code"] == "too_many_rows" and report["rows"] == 98


# ---------------------------------------------------------------------------- categories, classes
def test_categorical_columns_count_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(1)
    plans = ["basic", " basic", "pro ", "team", "1", "2.5", "NA", ""]
    rows = [f"{rng.choice(plans)},{rng.randint(0, 9)},{rng.random():.3f}" for _ in range(300)]
    rows[200] = "x" * 250 + ",1,2"  # an over-long value
    report, taken = same_reports(monkeypatch, table("plan,n,y", rows))
    assert report["feature_types"] == {"plan": "categorical", "n": "numeric"}
    assert report["code"] == "category_too_long" and "row 202" in report["reason"]
    assert report["categories"]["plan"]["distinct"] == 5
    assert taken > 0


def test_a_column_past_the_cardinality_cap_stops_counting_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [f"id{i},{'x' * 210 if i == 170 else 'k' + str(i % 3)},{i % 5}" for i in range(300)]
    rows[20] = "id20," + "y" * 220 + ",1"  # over-long before the cap is passed: reported
    limits = Limits(min_rows=5, max_cardinality=100)
    report, taken = same_reports(monkeypatch, table("key,k,y", rows), limits=limits)
    assert "column 'key' has more than 100 distinct values" in report["reason"]
    assert "column 'k', row 22: a 220-character value" in report["reason"]
    assert taken > 0


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_classes_are_counted_alike(monkeypatch: pytest.MonkeyPatch, task: str) -> None:
    spec = parse_spec({"task": task, "target": "y"})
    labels = ["1", "1.0", " 0", "0", "2"] if task == "multiclass" else ["1", "1.0", " 0", "0"]
    rows = [f"{r[0]},{r[1]},{labels[i % len(labels)]}" for i, r in enumerate(numbers(200))]
    report, taken = same_reports(monkeypatch, table("a,b,y", rows), spec)
    assert report["ok"], report["reason"]
    assert report["classes"] == ([0, 1, 2] if task == "multiclass" else [0, 1])
    assert taken > 0


def test_text_classes_a_missing_label_and_too_many_classes_read_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = parse_spec({"task": "multiclass", "target": "y"})
    rows = [f"{r[0]},{r[1]},c{i % 7}" for i, r in enumerate(numbers(200))]
    rows[150] = "1,2,"
    report, _ = same_reports(monkeypatch, table("a,b,y", rows), spec)
    assert report["code"] == "missing_target" and "row 152" in report["reason"]
    many, _ = same_reports(monkeypatch, table("a,b,y", rows), spec, Limits(min_rows=5, max_classes=4))
    assert "target 'y' has more than 4 classes" in many["reason"]


def test_the_duplicate_sample_is_the_same_when_it_overflows(monkeypatch: pytest.MonkeyPatch) -> None:
    cells = numbers(300)
    rows = lines(cells) + lines(cells[:100])
    limits = Limits(min_rows=5, duplicate_sample=64)
    report, taken = same_reports(monkeypatch, table("a,b,y", rows), limits=limits)
    assert not report["duplicates_exact"] and 0 < report["duplicate_rows"] < 400
    part, _ = same_reports(monkeypatch, table("a,b,y", rows), limits=limits, how="part")
    assert 32 < len(part["dup_hashes"]) <= 64 and int(part["dup_threshold"]) < 1 << 64
    assert taken > 0


def test_parts_evaluation_sets_and_continuity_read_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [f"{r[0]},{['a', 'b', 'c'][i % 3]},{r[2]}" for i, r in enumerate(numbers(200))]
    data = table("age,plan,y", rows)
    part, taken = same_reports(monkeypatch, data, how="part")
    assert part["dup_hashes"] and taken > 0
    evaluation, _ = same_reports(monkeypatch, data, how="eval")
    assert evaluation["ok"], evaluation["reason"]
    schema = InputSchema.from_dict(
        {"features": [{"name": "age"}, {"name": "plan", "type": "categorical", "vocabulary": ["a", "b"]}]}
    )
    changed, _ = same_reports(monkeypatch, data, production=Production(3, schema))
    assert changed["code"] == "schema_changed" and "'c'" in changed["reason"]


def test_gzip_reads_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    data = gzip.compress(table("a,b,y", lines(numbers(300))))
    report, taken = same_reports(monkeypatch, data, fmt="csv.gz")
    assert report["ok"], report["reason"]
    assert taken > 0


# ---------------------------------------------------------------------------- any table
CELLS = st.sampled_from(
    ["1", "-2.5", "1e5", "+1", ".5", "1.", " 3 ", "", "NA", "nan", "inf", "abc", "x y", '"q,1"', "1e999"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.lists(CELLS, min_size=2, max_size=4), min_size=1, max_size=40),
    eol=st.sampled_from(["\n", "\r\n"]),
    batch=st.integers(1, 400),
    chunk=st.integers(1, 300),
    task=st.sampled_from(["regression", "multiclass"]),
)
def test_any_table_reads_alike(rows: list[list[str]], eol: str, batch: int, chunk: int, task: str) -> None:
    spec = parse_spec({"task": task, "target": "y"})
    data = table("a,b,y", [",".join(r) for r in rows], eol)
    limits = Limits(min_rows=2, duplicate_sample=8)
    with pytest.MonkeyPatch.context() as mp:
        want = run(mp, 0, data, spec, limits)[:2]
    with pytest.MonkeyPatch.context() as mp:
        got = run(mp, batch, data, spec, limits, chunk)[:2]
    assert got == want
