"""predict with categorical features (modelops.stages.predict.parse.to_encoded, the OOV metric, the
typed schema of GET /models/{name}), without AWS or models."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelops.domain.encoding import MAX_CATEGORY_CHARS, Feature, InputSchema
from modelops.inference import model_info
from modelops.stages.predict.errors import RequestError
from modelops.stages.predict.parse import instances_of, parse_json, to_encoded
from modelops.stages.predict.service import _typed
from modelops.stages.predict.serving import ModelInfo
from modelops.stages.predict.telemetry import Telemetry

SCHEMA = InputSchema(
    (
        Feature("age"),
        Feature("plan", "categorical", ("basic", "pro", "team")),
        Feature("country", "categorical", ("de", "fr")),
    )
)
INFO = ModelInfo("shop", 4, "binary", SCHEMA.names, (0, 1), 1.0, "tflite", "0" * 64, schema=SCHEMA)


def encode(instances: Any) -> tuple[np.ndarray, dict[str, int]]:
    raw = json.dumps({"instances": instances})
    return to_encoded(instances_of(parse_json(raw), 10_000), INFO)


def refused(instances: Any) -> str:
    with pytest.raises(RequestError) as exc:
        encode(instances)
    assert exc.value.status == 422 and exc.value.code == "invalid_instances"
    return str(exc.value)


def test_model_info_carries_the_schema_and_old_manifests_stay_numeric() -> None:
    assert INFO.categorical and INFO.n_features == 3 and INFO.input_schema is SCHEMA
    old = ModelInfo("m", 1, "regression", ("a", "b"), None, 1.0, "tflite", "0" * 64)
    assert not old.categorical and [f.kind for f in old.input_schema.features] == ["numeric", "numeric"]

    class Manifest:
        model, version = "m", 2
        artifacts = {"tflite": type("A", (), {"file": "model.tflite", "sha256": "1" * 64})()}

        def __init__(self, schema: dict[str, Any]):
            self.doc = {"task": "binary", "schema": schema}

        def get(self, key: str, default: Any = None) -> Any:
            return self.doc.get(key, default)

    names_only = model_info(
        Manifest({"features": ["a", {"name": "b", "dtype": "float32"}], "classes": [0, 1]})
    )
    assert names_only.features == ("a", "b") and not names_only.categorical
    typed = model_info(Manifest({"features": SCHEMA.to_list(), "classes": [0, 1]}))
    assert typed.categorical and typed.input_schema == SCHEMA


def test_rows_and_records_of_strings_give_the_index_matrix() -> None:
    rows = [[41, "pro", "fr"], [19.5, " team ", "de"], [0, "basic", "de"]]
    x, oov = encode(rows)
    assert x.dtype == np.float32 and x.shape == (3, 3)
    np.testing.assert_array_equal(x, [[41, 1, 1], [19.5, 2, 0], [0, 0, 0]])
    assert oov == {"plan": 0, "country": 0}
    records = [{"country": r[2], "plan": r[1], "age": r[0]} for r in rows]  # any key order
    x2, _ = encode(records)
    np.testing.assert_array_equal(x2, x)
    # the same encoding the trainer and the gate use
    np.testing.assert_array_equal(SCHEMA.encode(rows)[0], x)


def test_an_unknown_category_is_answered_with_the_oov_index_and_counted() -> None:
    x, oov = encode([[1, "enterprise", "de"], [2, "pro", "jp"], [3, "Pro", "jp"]])
    assert x[:, 1].tolist() == [3, 1, 3] and x[:, 2].tolist() == [0, 2, 2]  # OOV = len(vocabulary)
    assert oov == {"plan": 2, "country": 2}


def test_a_number_where_a_category_is_expected_is_refused_naming_row_and_feature() -> None:
    msg = refused([[1, "pro", "de"], [2, 3, "de"]])
    assert msg.startswith("instances[1][1] ('plan') is a number") and "category" in msg
    assert refused([{"age": 1, "plan": "pro", "country": None}]).startswith("instances[0].country is null")
    assert "a boolean" in refused([[1, True, "de"]])


def test_a_category_where_a_number_is_expected_is_refused() -> None:
    msg = refused([["41", "pro", "de"]])
    assert msg == "instances[0][0] ('age') is a string; expected a number"
    assert refused([{"age": "forty", "plan": "pro", "country": "de"}]).startswith(
        "instances[0].age is a string"
    )
    assert "NaN" in refused([[float("nan"), "pro", "de"]])


def test_a_10_kb_category_is_refused_without_echoing_it() -> None:
    long = "x" * 10_240
    msg = refused([[1, long, "de"]])
    assert f"10240 characters long; a category has at most {MAX_CATEGORY_CHARS}" in msg
    assert len(msg) < 200
    x, oov = encode([[1, "y" * MAX_CATEGORY_CHARS, "de"]])  # at the limit: answered (unknown: OOV)
    assert x[0, 1] == 3 and oov["plan"] == 1


@pytest.mark.parametrize("missing", ["", "   ", "NA", "n/a", "null"])
def test_an_empty_or_na_category_is_refused_as_missing(missing: str) -> None:
    assert "is missing" in refused([[1, "pro", missing]])


@pytest.mark.parametrize(
    ("instances", "start"),
    [
        ([[1, "pro"]], "instances[0]: has 2 values; the model takes 3 features"),
        ([{"age": 1, "plan": "pro"}], "instances[0]: missing feature 'country'"),
        ([{"age": 1, "plan": "pro", "country": "de", "x": 1}], "instances[0]: unknown feature 'x'"),
        ([[1, "pro", "de"], {"age": 1}], "instances[1]: expected a list"),
        ([{"age": 1, "plan": "pro", "country": "de"}, [1, "pro", "de"]], "instances[1]: expected an object"),
        (["pro"], "instances[0]: expected a list of values"),
    ],
)
def test_shapes_are_checked_like_the_numeric_path(instances: Any, start: str) -> None:
    assert refused(instances).startswith(start)


cell = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.sampled_from(["pro", "de", " team"]),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.lists(cell, min_size=2, max_size=4),
            st.dictionaries(st.sampled_from(["age", "plan", "country", "z"]), cell),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_instances_give_a_valid_index_matrix_or_a_422(instances: list[Any]) -> None:
    try:
        x, oov = to_encoded(instances, INFO)
    except RequestError as exc:
        assert exc.status == 422 and str(exc).startswith("instances[")
        return
    assert x.shape == (len(instances), 3) and np.isfinite(x).all()
    assert set(x[:, 1].tolist()) <= {0, 1, 2, 3} and set(x[:, 2].tolist()) <= {0, 1, 2}
    assert oov["plan"] == int((x[:, 1] == 3).sum()) and oov["country"] == int((x[:, 2] == 2).sum())


def test_out_of_vocabulary_is_an_emf_metric_per_feature() -> None:
    t = Telemetry("ModelOps", "predict")
    out = io.StringIO()
    with redirect_stdout(out):
        t.out_of_vocabulary("shop", 4, {"plan": 2, "country": 0})
        t.out_of_vocabulary("shop", 4, {"plan": 1, "country": 3})
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(d["Feature"], d["OutOfVocabulary"]) for d in docs] == [
        ("plan", [2.0]),
        ("plan", [1.0]),
        ("country", [3.0]),
    ]
    directive = docs[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Metrics"] == [{"Name": "OutOfVocabulary", "Unit": "Count"}]
    assert directive["Dimensions"] == [["Model", "Version", "Feature", "service"]]
    assert (docs[0]["Model"], docs[0]["Version"]) == ("shop", "4")


def test_the_model_page_shows_each_features_type_and_vocabulary() -> None:
    old = {"task": "regression", "target": "y", "features": ["a", {"name": "b", "dtype": "float32"}]}
    assert _typed(old)["features"] == [
        {"name": "a", "type": "numeric", "dtype": "float32"},
        {"name": "b", "type": "numeric", "dtype": "float32"},
    ]
    new = {"task": "binary", "target": "y", "features": SCHEMA.to_list(), "classes": [0, 1]}
    assert _typed(new) == new and _typed(new)["features"][1]["vocabulary"] == ["basic", "pro", "team"]
