"""modelops.domain.signature: a tensor model's schema, TF Serving's request formats checked against
it, and its answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from modelops.domain.signature import (
    Signature,
    SignatureError,
    TensorRequestError,
    TensorSpec,
    classes_problem,
    label_output,
    labels,
    labels_per_row,
    parse_request,
    predictions,
)

SCHEMA: dict[str, Any] = {
    "task": "regression",
    "inputs": [
        {"name": "image", "shape": [2, 2, 1], "dtype": "float32"},
        {"name": "meta", "shape": [3], "dtype": "float32"},
        {"name": "ids", "shape": [2], "dtype": "int32"},
    ],
    "outputs": [
        {"name": "score", "shape": [1], "dtype": "float32"},
        {"name": "embed", "shape": [2], "dtype": "float32"},
    ],
}
SIG = Signature.from_schema(SCHEMA)
assert SIG is not None
ONE = Signature.from_schema({"inputs": [SCHEMA["inputs"][0]], "outputs": [SCHEMA["outputs"][0]]})
assert ONE is not None

IMAGE = [[[0.5], [1.0]], [[1.5], [2.0]]]


def _row(**change: Any) -> dict[str, Any]:
    row = {"image": IMAGE, "meta": [1.0, 2.0, 3.0], "ids": [4, 5]}
    row.update(change)
    return row


def _error(doc: Any, sig: Signature = SIG, max_rows: int = 100) -> TensorRequestError:
    with pytest.raises(TensorRequestError) as exc:
        parse_request(doc, sig, max_rows)
    return exc.value


# ---------------------------------------------------------------------------- the schema
def test_a_schema_with_features_is_tabular_and_round_trips_otherwise() -> None:
    assert Signature.from_schema({"features": ["a", "b"]}) is None
    assert SIG.to_dict() == {"inputs": SCHEMA["inputs"], "outputs": SCHEMA["outputs"]}
    assert SIG.input_names == ("image", "meta", "ids")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": [{"name": "x", "shape": [None, 3]}]}, "dimension 1 is None"),
        ({"inputs": [{"name": "x", "shape": [3], "dtype": "float64"}]}, "dtype 'float64'"),
        ({"inputs": [{"name": "x", "shape": [3]}, {"name": "x", "shape": [2]}]}, "names repeat"),
        ({"inputs": []}, "at least one"),
        ({"features": ["a"]}, "not both"),
        ({"outputs": "y"}, "must be lists"),
    ],
)
def test_a_bad_signature_is_refused_naming_what(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        Signature.from_schema({**SCHEMA, **change})


# ---------------------------------------------------------------------------- requests
def test_row_format_with_named_inputs_gives_one_array_per_input_in_its_dtype() -> None:
    got = parse_request({"instances": [_row(), _row(ids=[6, 7])]}, SIG, 100)
    assert got.rows == 2 and not got.columnar
    assert got.inputs["image"].shape == (2, 2, 2, 1) and got.inputs["image"].dtype == np.float32
    assert got.inputs["ids"].dtype == np.int32 and got.inputs["ids"].tolist() == [[4, 5], [6, 7]]


def test_columnar_format_and_a_single_input_as_bare_lists() -> None:
    cols = parse_request({"inputs": {"image": [IMAGE], "meta": [[1, 2, 3]], "ids": [[1, 2]]}}, SIG, 100)
    assert cols.rows == 1 and cols.columnar and cols.inputs["meta"].tolist() == [[1.0, 2.0, 3.0]]
    rows = parse_request({"instances": [IMAGE, IMAGE, IMAGE]}, ONE, 100)
    assert rows.inputs["image"].shape == (3, 2, 2, 1)
    bare = parse_request({"inputs": [IMAGE]}, ONE, 100)
    assert bare.columnar and bare.inputs["image"].shape == (1, 2, 2, 1)


@pytest.mark.parametrize(
    ("doc", "code", "message"),
    [
        ({"instances": [_row()], "inputs": {}}, "invalid_request", "not both"),
        ({"rows": []}, "invalid_request", "unknown key 'rows'"),
        ({"instances": []}, "invalid_request", "empty"),
        ({"instances": [_row()] * 3}, "too_many_rows", "3 rows; at most 2"),
        (
            {"instances": [_row(), {"image": IMAGE, "meta": [1, 2, 3]}]},
            "invalid_instances",
            "instances[1]: missing input 'ids'",
        ),
        ({"instances": [_row(extra=1)]}, "invalid_instances", "unknown input 'extra'"),
        (
            {"inputs": {"image": [IMAGE], "meta": [[1, 2, 3]]}},
            "invalid_instances",
            "inputs: missing input 'ids'",
        ),
        ({"instances": [IMAGE]}, "invalid_instances", "3 named inputs"),
        # wrong shape
        (
            {"instances": [_row(meta=[1.0, 2.0])]},
            "invalid_instances",
            "instances[0].meta has 2 values; expected 3",
        ),
        (
            {"instances": [_row(image=[[0.5, 1.0], [1.5, 2.0]])]},
            "invalid_instances",
            "instances[0].image[0][0] is a number; expected a list of 1",
        ),
        (
            {"instances": [_row(meta=[[1.0], [2.0], [3.0]])]},
            "invalid_instances",
            "instances[0].meta[0] is a list; expected a number",
        ),
        # ragged
        (
            {"instances": [_row(), _row(image=[[[0.5], [1.0]], [[1.5]]])]},
            "invalid_instances",
            "instances[1].image[1] has 1 values; expected 2",
        ),
        (
            {"inputs": {"image": [IMAGE, IMAGE], "meta": [[1, 2, 3]], "ids": [[1, 2], [3, 4]]}},
            "invalid_instances",
            "inputs.meta has 1 rows and inputs.image has 2",
        ),
        # wrong dtype
        (
            {"instances": [_row(ids=[4, 5.5])]},
            "invalid_instances",
            "instances[0].ids[1] is a number with a fraction",
        ),
        ({"instances": [_row(ids=[4, 2**31])]}, "invalid_instances", "out of the int32 range"),
        (
            {"instances": [_row(meta=[1.0, True, 3.0])]},
            "invalid_instances",
            "instances[0].meta[1] is a boolean",
        ),
        (
            {"instances": [_row(meta=[1.0, "2", 3.0])]},
            "invalid_instances",
            "instances[0].meta[1] is a string",
        ),
        ({"instances": [_row(meta=[1.0, None, 3.0])]}, "invalid_instances", "instances[0].meta[1] is null"),
        ({"instances": [_row(meta=[1.0, 1e39, 3.0])]}, "invalid_instances", "out of the float32 range"),
        (
            {"inputs": {"image": [IMAGE], "meta": [[1, 2, 3]], "ids": [[1, True]]}},
            "invalid_instances",
            "inputs.ids[0][1] is a boolean",
        ),
    ],
)
def test_a_bad_request_names_the_input_and_the_place(doc: Any, code: str, message: str) -> None:
    err = _error(doc, max_rows=2)
    assert err.code == code
    assert message in str(err)


def test_booleans_hidden_among_numbers_are_found_unless_the_body_has_none() -> None:
    doc = {"instances": [_row(meta=[1.0, True, 3.0])]}
    assert "is a boolean" in str(_error(doc))
    # The service says "no true/false in the text" only when it is so; then numpy's reading stands.
    ok = parse_request({"instances": [_row()]}, SIG, 10, may_hold_booleans=False)
    assert ok.inputs["meta"].tolist() == [[1.0, 2.0, 3.0]]


# ---------------------------------------------------------------------------- answers
def test_answers_take_tf_servings_shapes() -> None:
    y = {"score": np.array([[0.5], [1.5]], np.float32), "embed": np.array([[1, 2], [3, 4]], np.float32)}
    key, rows = predictions(SIG, y, columnar=False)
    assert key == "predictions"
    assert orjson.loads(orjson.dumps(rows, option=orjson.OPT_SERIALIZE_NUMPY)) == [
        {"score": [0.5], "embed": [1.0, 2.0]},
        {"score": [1.5], "embed": [3.0, 4.0]},
    ]
    key, cols = predictions(SIG, y, columnar=True)
    assert key == "outputs"
    assert orjson.loads(orjson.dumps(cols, option=orjson.OPT_SERIALIZE_NUMPY)) == {
        "score": [[0.5], [1.5]],
        "embed": [[1.0, 2.0], [3.0, 4.0]],
    }
    key, one = predictions(ONE, {"score": y["score"]}, columnar=False)
    assert key == "predictions" and one.tolist() == [[0.5], [1.5]]


# ---------------------------------------------------------------------------- classification labels
DIGITS = [str(d) for d in range(10)]
CLASSIFIER = Signature.from_schema(
    {
        "inputs": [{"name": "image", "shape": [8, 8, 1], "dtype": "float32"}],
        "outputs": [
            {"name": "digit", "shape": [10], "dtype": "float32"},
            {"name": "embed", "shape": [2], "dtype": "float32"},
        ],
    }
)
assert CLASSIFIER is not None


def _sig(*shape: int) -> Signature:
    sig = Signature.from_schema(
        {"inputs": [{"name": "x", "shape": [3]}], "outputs": [{"name": "p", "shape": list(shape)}]}
    )
    assert sig is not None
    return sig


def test_multiclass_labels_are_the_argmax_of_the_first_outputs_last_axis_one_per_row() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((5, 10)).astype(np.float32)
    y = {"digit": scores, "embed": rng.random((5, 2)).astype(np.float32)}
    assert labels(CLASSIFIER, "multiclass", DIGITS, y) == [DIGITS[i] for i in scores.argmax(axis=1)]
    assert label_output(CLASSIFIER, "multiclass", DIGITS) == CLASSIFIER.outputs[0]
    # classes keep their JSON type: numbers stay numbers
    assert labels(CLASSIFIER, "multiclass", list(range(10)), y) == scores.argmax(axis=1).tolist()


def test_a_single_sigmoid_is_the_second_class_at_one_half_or_more() -> None:
    y = {"p": np.array([[0.2], [0.5], [0.9], [0.49]], np.float32)}
    assert labels(_sig(1), "binary", ["no", "yes"], y) == ["no", "yes", "yes", "no"]
    # a scalar output per row, and two scores per row
    assert labels(_sig(), "binary", ["no", "yes"], {"p": np.array([0.7, 0.1], np.float32)}) == ["yes", "no"]
    two = {"p": np.array([[0.7, 0.3], [0.2, 0.8]], np.float32)}
    assert labels(_sig(2), "binary", ["no", "yes"], two) == ["no", "yes"]


def test_scores_over_a_longer_shape_give_nested_labels() -> None:
    y = {"p": np.array([[[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]]], np.float32)}  # 1 row of [2, 3]
    assert labels(_sig(2, 3), "multiclass", ["a", "b", "c"], y) == [["b", "a"]]
    assert labels_per_row(_sig(2, 3).outputs[0]) == 2 and labels_per_row(_sig(4).outputs[0]) == 1
    assert labels_per_row(_sig().outputs[0]) == 1


@pytest.mark.parametrize(
    ("task", "classes"),
    [
        ("regression", DIGITS),  # a regression task has no labels, whatever its schema says
        ("multiclass", None),  # an imported classifier without classes: outputs only
        ("multiclass", DIGITS[:3]),  # classes that do not fit (a version convert did not check)
    ],
)
def test_no_labels_without_a_classification_task_and_classes_that_fit(task: str, classes: Any) -> None:
    y = {"digit": np.ones((2, 10), np.float32), "embed": np.ones((2, 2), np.float32)}
    assert labels(CLASSIFIER, task, classes, y) is None
    assert label_output(CLASSIFIER, task, classes) is None


@pytest.mark.parametrize(
    ("task", "classes", "shape", "message"),
    [
        (
            "multiclass",
            ["a", "b", "c"],
            [10],
            "first output 'p' has shape [10] per row: its last dimension is 10; the 3 classes",
        ),
        (
            "multiclass",
            ["a", "b", "c"],
            [3, 4],
            "its last dimension is 4; the 3 classes (['a', 'b', 'c']) need 3",
        ),
        ("multiclass", ["a"], [1], "a multiclass model has at least 2 classes; 1 given"),
        ("binary", ["no", "yes"], [3], "a binary model's last dimension is 1 (a sigmoid: P('yes')) or 2"),
        ("binary", ["a", "b", "c"], [1], "a binary model has 2 classes; 3 given"),
        ("multiclass", ["a", "a"], [2], "the classes repeat"),
        ("multiclass", [True, False], [2], "the classes must be strings or numbers"),
        ("multiclass", [["a"], ["b"]], [2], "the classes must be strings or numbers"),
    ],
)
def test_classes_that_cannot_name_the_first_outputs_scores_say_why(
    task: str, classes: list[Any], shape: list[int], message: str
) -> None:
    problem = classes_problem(task, classes, TensorSpec("p", tuple(shape), "float32"))
    assert problem is not None and message in problem, problem


def test_classes_that_fit_have_no_problem() -> None:
    assert classes_problem("multiclass", DIGITS, CLASSIFIER.outputs[0]) is None
    assert classes_problem("binary", [0, 1], TensorSpec("p", (), "float32")) is None
    assert classes_problem("binary", [0, 1], TensorSpec("p", (2,), "float32")) is None
    assert classes_problem("regression", ["a"], TensorSpec("p", (7,), "float32")) is None
    assert classes_problem("multiclass", None, TensorSpec("p", (7,), "float32")) is None
