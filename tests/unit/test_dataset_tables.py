"""Issue 16 in the validator: categorical columns (declared and inferred), the stray-word rule, label
sanity, schema continuity, and the spec's new keys. Formats are in test_formats.py."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops.domain.dataset import Limits, Production, load_csv, validate_stream
from modelops.domain.encoding import MAX_CATEGORY_CHARS, InputSchema
from modelops.domain.errors import DatasetRejectedError, SpecError
from modelops.domain.spec import ModelSpec, parse_spec

PLANS = ("basic", "pro", "team")


def spec_of(**kw: Any) -> ModelSpec:
    return parse_spec({"task": "regression", "target": "y", **kw})


def table(n: int, header: str, row: Any) -> bytes:
    return (header + "\n" + "".join(row(i) + "\n" for i in range(n))).encode()


def validate(data: bytes, spec: ModelSpec | None = None, **kw: Any) -> Any:
    production = kw.pop("production", None)
    return validate_stream([data], spec or spec_of(), Limits(**kw), production=production)


# ---------------------------------------------------------------------------- the spec
def test_spec_features_may_declare_types_and_round_trip() -> None:
    doc = {
        "task": "binary",
        "target": "y",
        "features": ["age", {"name": "plan", "type": "categorical"}, {"name": "n", "type": "numeric"}],
        "schema": "reset",
        "csv": {"delimiter": ";", "decimal": ",", "encoding": "cp1252"},
        "training": {"max_categories": 8},
    }
    spec = parse_spec(doc)
    assert spec.features == ["age", "plan", "n"]
    assert spec.feature_types == {"plan": "categorical", "n": "numeric"}
    assert spec.schema_mode == "reset" and spec.training.max_categories == 8
    dumped = spec.model_dump(mode="json")
    assert dumped["schema"] == "reset" and "schema_mode" not in dumped
    assert parse_spec(dumped) == spec
    assert parse_spec(spec.model_dump_json()) == spec


def test_spec_defaults_stay_out_of_the_json() -> None:
    # the spec's SHA-256 (and so the job name) of an existing spec does not change
    dumped = spec_of().model_dump(mode="json")
    assert not {"schema", "csv", "feature_types"} & set(dumped)
    assert "max_categories" not in dumped["training"]


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"schema_mode": "reset"}, "schema_mode: unknown key"),
        ({"schema": "drop"}, "schema"),
        ({"features": [{"name": "a", "type": "text"}]}, "type must be 'numeric' or 'categorical'"),
        ({"features": [{"name": "a", "kind": "numeric"}]}, "unknown key 'kind'"),
        ({"training": {"max_categories": 0}}, "training.max_categories"),
        ({"training": {"max_categories": 1001}}, "training.max_categories"),
        ({"csv": {"delimiter": ","}, "features": None}, None),
        ({"csv": {"delimiter": ",", "decimal": ","}}, "cannot also be the delimiter"),
        ({"csv": {"delimiter": ":"}}, "csv.delimiter"),
        ({"csv": {"encoding": "utf-16"}}, "csv.encoding"),
        ({"feature_types": {"a": "numeric"}}, "not among the features"),
    ],
)
def test_spec_refuses_bad_new_keys(doc: dict[str, Any], says: str | None) -> None:
    if says is None:
        spec_of(**doc)
        return
    with pytest.raises(SpecError) as exc:
        spec_of(**doc)
    assert says in str(exc.value)


# ---------------------------------------------------------------------------- the headline bug
def test_one_stray_word_in_a_numeric_column_is_rejected_naming_the_cell() -> None:
    # 60 rows, 13 features, one cell a word: never reclassified or excluded
    header = ",".join(f"f{j}" for j in range(13)) + ",y"
    data = table(
        60,
        header,
        lambda i: ",".join("oops" if (i, j) == (17, 5) else str(i * j) for j in range(13)) + f",{i}",
    )
    report = validate(data)
    assert report.code == "non_numeric"
    assert "row 19, column 'f5': 'oops'" in report.reason  # header is line 1, row 17 is line 19
    assert report.features == [f"f{j}" for j in range(13)] and report.excluded_columns == []
    assert report.feature_types["f5"] == "numeric"


def test_a_declared_numeric_column_names_its_text_cells() -> None:
    data = table(20, "a,b,y", lambda i: f"{i},{'x' if i < 15 else i},{i}")
    report = validate(data, spec_of(features=[{"name": "a"}, {"name": "b", "type": "numeric"}]))
    assert report.code == "non_numeric" and "declared numeric" in report.reason
    assert "row 2, column 'b': 'x'" in report.reason and "and 10 more" in report.reason


# ---------------------------------------------------------------------------- categorical columns
def test_a_text_column_is_inferred_categorical_and_loaded_as_categories(tmp_path: Path) -> None:
    data = table(30, "age,plan,y", lambda i: f"{20 + i},{PLANS[i % 3]},{i % 5}")
    report = validate(data)
    assert report.ok, report.reason
    assert report.feature_types == {"age": "numeric", "plan": "categorical"}
    assert report.categories["plan"] == {"distinct": 3, "top": [["basic", 10], ["pro", 10], ["team", 10]]}
    path = tmp_path / "d.csv"
    path.write_bytes(data)
    loaded = load_csv(path, spec_of())
    assert loaded.features == ["age", "plan"] and loaded.kinds == ["numeric", "categorical"]
    assert np.isnan(loaded.x[:, 1]).all() and loaded.x[3, 0] == 23
    assert loaded.categories["plan"][:4] == ["basic", "pro", "team", "basic"]


def test_a_declared_categorical_column_of_numbers_stays_categorical(tmp_path: Path) -> None:
    data = table(20, "zone,y", lambda i: f"{i % 4},{i}")
    spec = spec_of(features=[{"name": "zone", "type": "categorical"}])
    assert validate(data, spec).feature_types == {"zone": "categorical"}
    path = tmp_path / "d.csv"
    path.write_bytes(data)
    assert load_csv(path, spec).categories["zone"][:5] == ["0", "1", "2", "3", "0"]


@pytest.mark.parametrize("cell", ["", "   ", "NA", "n/a", "null"])
def test_empty_whitespace_and_na_categories_are_missing(cell: str, tmp_path: Path) -> None:
    data = table(40, "plan,y", lambda i: f"{cell if i == 7 else PLANS[i % 3]},{i}")
    report = validate(data)
    assert report.ok, report.reason
    assert report.missing["plan"] == 1 and report.categories["plan"]["distinct"] == 3
    path = tmp_path / "d.csv"
    path.write_bytes(data)
    assert load_csv(path, spec_of()).categories["plan"][7] is None
    # missing categories count against the missing-rate limit like numbers do
    many = table(40, "plan,y", lambda i: f"{cell if i % 4 == 0 else PLANS[i % 3]},{i}")
    assert validate(many).code == "too_many_missing"


def test_a_categorical_column_with_100000_distinct_values_is_refused_in_bounded_memory() -> None:
    def chunks() -> Any:
        yield b"id,a,y\n"
        for start in range(0, 100_000, 5_000):
            yield "".join(f"user-{i:06d},{i % 7},{i % 3}\n" for i in range(start, start + 5_000)).encode()

    tracemalloc.start()
    try:
        report = validate_stream(chunks(), spec_of(), Limits())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.code == "high_cardinality"
    assert "column 'id' has more than 1000 distinct values" in report.reason
    assert "id" in report.features  # refused, not dropped
    assert peak < 8 * 1024 * 1024, peak  # counting stopped at the limit


def test_an_identifier_column_is_refused_even_under_the_cardinality_limit() -> None:
    data = table(200, "ref,a,y", lambda i: f"r{i},{i % 5},{i}")
    report = validate(data)
    assert report.code == "high_cardinality"
    assert "column 'ref' has 200 distinct values in 200 rows" in report.reason


def test_a_text_split_key_is_not_a_feature() -> None:
    data = table(200, "customer,a,y", lambda i: f"c{i},{i % 5},{i}")
    report = validate(data, spec_of(training={"split_key": "customer"}))
    assert report.ok, report.reason
    assert report.features == ["a"] and report.excluded_columns == ["customer"]


def test_a_10kb_category_value_is_rejected_naming_the_cell() -> None:
    huge = "x" * 10_240
    data = table(20, "plan,y", lambda i: f"{huge if i == 3 else PLANS[i % 3]},{i}")
    report = validate(data)
    assert report.code == "category_too_long"
    assert f"column 'plan', row 5: a 10240-character value (at most {MAX_CATEGORY_CHARS})" in report.reason


def test_load_csv_with_a_schema_keeps_its_features_order_and_types(tmp_path: Path) -> None:
    # the dataset's columns reordered; the schema names production's order; zone's numbers are categories
    data = table(20, "y,zone,age", lambda i: f"{i},{i % 3},{30 + i}")
    path = tmp_path / "d.csv"
    path.write_bytes(data)
    schema = InputSchema.from_dict(
        {"features": [{"name": "age"}, {"name": "zone", "type": "categorical", "vocabulary": ["0", "1"]}]}
    )
    loaded = load_csv(path, spec_of(), schema=schema)
    assert loaded.features == ["age", "zone"] and loaded.kinds == ["numeric", "categorical"]
    assert loaded.x[0, 0] == 30 and loaded.categories["zone"][:3] == ["0", "1", "2"]


def test_load_csv_rejects_what_validation_rejects(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(table(20, "a,y", lambda i: f"{'oops' if i == 2 else i},{i}"))
    with pytest.raises(DatasetRejectedError, match="non_numeric"):
        load_csv(path, spec_of())


# ---------------------------------------------------------------------------- label sanity
def classification(**kw: Any) -> ModelSpec:
    return parse_spec({"task": "multiclass", "target": "y", **kw})


def test_59_rows_of_one_class_and_1_of_another_is_class_coverage_with_the_numbers() -> None:
    data = table(60, "a,b,y", lambda i: f"{i},{i * 2},{'rare' if i == 0 else 'common'}")
    report = validate(data, classification())
    assert report.code == "class_coverage"
    assert "fewer than 2 rows: rare: 1" in report.reason
    assert "rows per class: common: 59, rare: 1" in report.reason


def test_few_rows_of_a_class_is_a_warning_not_a_rejection() -> None:
    data = table(60, "a,y", lambda i: f"{i},{'rare' if i < 3 else 'common'}")
    report = validate(data, classification())
    assert report.ok, report.reason
    assert report.warnings == ["class rare has 3 rows (fewer than 10)"]
    assert report.to_dict()["warnings"] == report.warnings


def test_a_class_production_knows_missing_here_is_rejected_and_warned() -> None:
    data = table(60, "a,y", lambda i: f"{i},{i % 2}")
    schema = InputSchema.from_dict({"features": ["a"]})
    report = validate(data, classification(), production=Production(3, schema, [0, 1, 2]))
    assert report.code == "class_coverage" and "2: 0" in report.reason
    assert "class 2 of production v3 has no rows in this dataset" in report.warnings
    # the spec resets the schema: a dropped class is only a warning then
    reset = validate(data, classification(), production=Production(3, None, [0, 1, 2]))
    assert reset.ok, reset.reason
    assert "class 2 of production v3 has no rows in this dataset" in reset.warnings


# ---------------------------------------------------------------------------- schema continuity
PROD = InputSchema.from_dict(
    {
        "features": [
            {"name": "age", "type": "numeric"},
            {"name": "plan", "type": "categorical", "vocabulary": list(PLANS)},
        ]
    }
)


def continuity(data: bytes, schema: InputSchema = PROD, **kw: Any) -> Any:
    return validate(data, spec_of(**kw), production=Production(3, schema))


def test_the_same_schema_is_accepted() -> None:
    report = continuity(table(60, "age,plan,y", lambda i: f"{i},{PLANS[i % 3]},{i}"))
    assert report.ok, report.reason


def test_reordered_columns_are_accepted_in_productions_order() -> None:
    report = continuity(table(60, "plan,y,age", lambda i: f"{PLANS[i % 3]},{i},{i}"))
    assert report.ok, report.reason
    assert report.features == ["age", "plan"]


def test_a_renamed_column_is_schema_changed_naming_old_and_new() -> None:
    report = continuity(table(60, "years,plan,y", lambda i: f"{i},{PLANS[i % 3]},{i}"))
    assert report.code == "schema_changed"
    assert "column 'age' of production v3 is missing and 'years' is new (renamed?)" in report.reason
    assert '"schema": "reset"' in report.reason


def test_a_new_and_a_missing_column_are_named() -> None:
    report = continuity(table(60, "plan,x,z,y", lambda i: f"{PLANS[i % 3]},{i},{i},{i}"))
    assert report.code == "schema_changed"
    assert "columns of production v3 missing here: 'age'" in report.reason
    assert "columns not in production v3: 'x', 'z'" in report.reason


def test_a_column_numeric_in_production_and_text_here_is_schema_changed() -> None:
    # mixed types across two datasets: numeric in v3, text in this one
    report = continuity(table(60, "age,plan,y", lambda i: f"a{i % 4},{PLANS[i % 3]},{i}"))
    assert report.code == "schema_changed"
    assert "column 'age' is numeric in production v3, text here (e.g. row 2: 'a0')" in report.reason


def test_a_categorical_column_of_production_holding_numbers_stays_categorical() -> None:
    schema = InputSchema.from_dict(
        {"features": [{"name": "zone", "type": "categorical", "vocabulary": ["1", "2"]}]}
    )
    report = continuity(table(60, "zone,y", lambda i: f"{1 + i % 2},{i}"), schema)
    assert report.ok, report.reason
    assert report.feature_types == {"zone": "categorical"}


def test_a_frequent_new_category_is_schema_changed_a_rare_one_is_oov() -> None:
    rare = continuity(table(200, "age,plan,y", lambda i: f"{i},{'gold' if i == 0 else PLANS[i % 3]},{i}"))
    assert rare.ok, rare.reason  # 1 row of 200 (0.5%): the OOV bucket takes it
    frequent = continuity(
        table(200, "age,plan,y", lambda i: f"{i},{'gold' if i % 10 == 0 else PLANS[i % 3]},{i}")
    )
    assert frequent.code == "schema_changed"
    assert "column 'plan' has values production v3's vocabulary does not hold: 'gold' (10.0% of rows)" in (
        frequent.reason
    )


def test_a_full_vocabulary_tolerates_values_rarer_than_its_least_frequent_one() -> None:
    # production kept the top 3 values (max_categories 3); a 4th value, rarer than all three, is OOV
    data = table(200, "age,plan,y", lambda i: f"{i},{'other' if i % 20 == 0 else PLANS[i % 3]},{i}")
    assert continuity(data, training={"max_categories": 3}).ok
    assert continuity(data).code == "schema_changed"  # a vocabulary with room would have taken it
