"""A tensor classifier's answer carries ``labels`` next to TF Serving's fields (issue 15, item 3: "labels
apply when the spec says the task is classification; otherwise outputs are returned as tensors"):
``modelops.stages.predict.render.render_tensors`` over the ``ModelInfo`` of a version's manifest, and
the answer's size bound counting them."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest

from modelops.inference import ModelInfo, model_info
from modelops.stages.predict.render import render_tensors, tensor_answer_bound
from modelops.storage.registry import Manifest

IMAGE = {"name": "image", "shape": [8, 8, 1], "dtype": "float32"}
DIGIT = {"name": "digit", "shape": [10], "dtype": "float32"}
DIGITS = [str(d) for d in range(10)]


def info(task: str, classes: Any, outputs: list[dict[str, Any]] | None = None) -> ModelInfo:
    """The ModelInfo predict builds from a tensor version's manifest."""
    schema = {
        "task": task,
        "target": "digit",
        "classes": classes,
        "inputs": [IMAGE],
        "outputs": outputs or [DIGIT],
    }
    doc = {
        "model": "digits",
        "version": 3,
        "task": task,
        "schema": schema,
        "artifacts": {"tflite": {"file": "model.tflite", "key": "blobs/x", "size": 1, "sha256": "ab" * 32}},
    }
    return model_info(Manifest.from_doc("digits", 3, doc))


def scores(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((rows, 10)).astype(np.float32)


def same(written: Any, y: np.ndarray) -> bool:
    """The answer's numbers read back as the float32 values the model gave (orjson writes float32s
    as their shortest decimals)."""
    return bool(np.array_equal(np.asarray(written, dtype=np.float32), y))


def answer(i: ModelInfo, y: dict[str, np.ndarray], columnar: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(render_tensors(i, "digits", y, "req-1", columnar))
    return doc


def test_a_multiclass_tensor_model_with_classes_answers_a_label_per_row_beside_tf_servings_fields() -> None:
    y = scores(4)
    # row format: predictions exactly as TF Serving writes them, and the argmax's class per row
    doc = answer(info("multiclass", DIGITS), {"digit": y})
    assert list(doc) == ["model", "version", "request_id", "predictions", "labels"]
    assert same(doc["predictions"], y)
    assert doc["labels"] == [DIGITS[i] for i in y.argmax(axis=1)]
    # columnar format: outputs, and the same labels
    doc = answer(info("multiclass", DIGITS), {"digit": y}, columnar=True)
    assert list(doc) == ["model", "version", "request_id", "outputs", "labels"]
    assert same(doc["outputs"], y) and doc["labels"] == [DIGITS[i] for i in y.argmax(axis=1)]


def test_numeric_classes_stay_numbers_and_a_sigmoid_is_thresholded_at_one_half() -> None:
    y = scores(3)
    assert answer(info("multiclass", list(range(10))), {"digit": y})["labels"] == y.argmax(axis=1).tolist()
    p = np.array([[0.1], [0.5], [0.93]], np.float32)
    sigmoid = info("binary", ["benign", "malignant"], [{"name": "p", "shape": [1], "dtype": "float32"}])
    doc = answer(sigmoid, {"p": p})
    assert same(doc["predictions"], p) and doc["labels"] == ["benign", "malignant", "malignant"]


def test_several_outputs_are_labelled_from_the_first() -> None:
    outputs = [DIGIT, {"name": "score", "shape": [1], "dtype": "float32"}]
    y = {"digit": scores(2), "score": np.array([[9.0], [8.0]], np.float32)}
    doc = answer(info("multiclass", DIGITS, outputs), y)
    assert [set(row) for row in doc["predictions"]] == [{"digit", "score"}] * 2
    assert doc["labels"] == [DIGITS[i] for i in y["digit"].argmax(axis=1)]


@pytest.mark.parametrize(
    ("task", "classes"),
    [
        ("regression", None),
        ("regression", DIGITS),  # a regression task is never labelled, whatever the schema holds
        ("multiclass", None),  # an imported classifier without --classes or --eval: outputs only
        ("multiclass", ["a", "b", "c"]),  # classes that do not fit [10] (written before convert checked)
    ],
)
def test_without_a_classification_task_and_classes_that_fit_outputs_are_tensors_only(
    task: str, classes: Any
) -> None:
    i = info(task, classes)
    y = scores(2)
    doc = answer(i, {"digit": y})
    assert list(doc) == ["model", "version", "request_id", "predictions"]
    assert same(doc["predictions"], y)
    assert tensor_answer_bound(i) == tensor_answer_bound(info("regression", None))


def test_the_answer_size_bound_counts_the_labels() -> None:
    long = [f"class-{'é' * 30}-{d}" for d in range(10)]  # escaped: 6 bytes a character
    labelled, plain = info("multiclass", long), info("multiclass", None)
    fixed, per_row = tensor_answer_bound(labelled)
    assert (fixed, per_row) > tensor_answer_bound(plain)
    rows = 50
    y = np.full((rows, 10), -1.0000001e-6, np.float32)  # the longest float32 text
    y[:, 7] = 0.0
    body = render_tensors(labelled, "digits", {"digit": y}, "", columnar=False)
    assert orjson.loads(body)["labels"] == [long[7]] * rows
    escaped = len(json.dumps(body)) - 2  # the body as the proxy result's JSON string holds it
    assert escaped <= fixed + rows * per_row
    # each row's label, escaped, and its comma are inside what the bound adds per row
    label_text = len(json.dumps(orjson.dumps(long[7]).decode())) - 2
    assert per_row - tensor_answer_bound(plain)[1] >= label_text + 1
