"""A tensor classifier's classes (issue 15, item 3): convert writes the job's classes into the version's
schema when they can name the scores of the model's first output and refuses the model, saying why,
when they cannot; a regression model keeps none. ``modelops models import --classes`` checks the same
before anything is written (usage errors, exit 2). Moto and real TensorFlow."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from modelops.stages import convert as conversion
from modelops.storage.registry import Registry
from modelops_cli.main import cli
from modelops_cli.models_import import _validation, parse_classes
from tests.fakes import FakeBus
from tests.integration.convert_support import BUCKET, artifact_key, put_job_record, sagemaker_event, targz_dir

pytestmark = pytest.mark.slow

LETTERS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``.keras`` CNN-like model, image [4, 4, 1] -> 3 softmax scores, and its sample."""
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input(shape=(4, 4, 1), name="image")
    model = keras.Model(image, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(image)))
    root = tmp_path_factory.mktemp("classes")
    model.save(root / "model.keras")
    buf = io.BytesIO()
    np.savez(buf, image=np.random.default_rng(1).random((16, 4, 4, 1), dtype=np.float32))
    (root / "sample.npz").write_bytes(buf.getvalue())
    return root


@pytest.fixture
def deps(s3, registry_bucket, bus: FakeBus) -> conversion.Deps:  # type: ignore[no-untyped-def]
    return conversion.Deps(registry=Registry(s3, registry_bucket, actor="convert"), bus=bus)


def _convert(s3: Any, deps: conversion.Deps, job: str, model_dir: Path, task: str, classes: Any) -> Any:
    spec_doc = {"task": task, "target": "y", "training": {"entry_point": "train.py"}}
    validation = {"features": [], "feature_types": {}, "classes": classes}
    put_job_record(s3, job, spec_doc=spec_doc, validation=validation)
    s3.put_object(Bucket=BUCKET, Key=artifact_key("demo", job), Body=targz_dir(model_dir))
    return conversion.handle_event(sagemaker_event(job), deps)


def test_the_datasets_classes_go_into_a_tensor_classifiers_schema(
    model_dir: Path, deps: conversion.Deps, s3: Any
) -> None:
    result = _convert(s3, deps, "modelops-demo-cls1", model_dir, "multiclass", LETTERS)
    assert result.outcome == "published", result.reason
    schema = deps.registry.get_manifest("demo", 1).get("schema")
    assert schema["classes"] == LETTERS and schema["outputs"][0]["shape"] == [3]


def test_classes_that_do_not_match_the_first_output_are_refused_naming_both(
    model_dir: Path, deps: conversion.Deps, s3: Any, bus: FakeBus
) -> None:
    ten = [str(d) for d in range(10)]
    result = _convert(s3, deps, "modelops-demo-cls2", model_dir, "multiclass", ten)
    assert result.outcome == "conversion_failed" and result.error_code == "artifact_invalid"
    assert "the dataset's classes (its target's values) cannot label the model's answers" in result.reason
    assert "has shape [3] per row: its last dimension is 3; the 10 classes" in result.reason
    assert bus.of("ConversionFailed")[-1]["stage"] == "model"
    assert deps.registry.list_versions("demo") == []
    # a binary spec over three scores is refused the same way
    result = _convert(s3, deps, "modelops-demo-cls3", model_dir, "binary", ["no", "yes"])
    assert result.outcome == "conversion_failed"
    assert "a binary model's last dimension is 1 (a sigmoid: P('yes')) or 2" in result.reason


def test_a_regression_model_keeps_no_classes(model_dir: Path, deps: conversion.Deps, s3: Any) -> None:
    result = _convert(s3, deps, "modelops-demo-cls4", model_dir, "regression", LETTERS)
    assert result.outcome == "published", result.reason
    assert deps.registry.get_manifest("demo", 1).get("schema")["classes"] is None


# ---------------------------------------------------------------------------- models import --classes
def _import(model_dir: Path, tmp_path: Path, task: str, *extra: str) -> Any:
    spec = tmp_path / "model.json"
    spec.write_text(json.dumps({"task": task, "target": "y", "training": {"backend": "local"}}))
    sample = tmp_path / "sample.npy"
    np.save(sample, np.zeros((4, 4, 4, 1), dtype=np.float32))
    args = ["models", "import", "demo", str(model_dir / "model.keras"), "--sample", str(sample)]
    return CliRunner().invoke(cli, [*args, "--spec", str(spec), *extra])


@pytest.mark.parametrize(
    ("task", "classes", "message"),
    [
        ("multiclass", "cat,dog", "--classes: the model's first output 'output_0' has shape [3] per row"),
        ("multiclass", "[0, 1, 2, 3]", "its last dimension is 3; the 4 classes ([0, 1, 2, 3]) need 4"),
        ("binary", "no,yes", "a binary model's last dimension is 1"),
        ("regression", "a,b,c", "--classes is for a binary or multiclass model; the spec says regression"),
        ("multiclass", "a,,c", "--classes: an empty name"),
        ("multiclass", "a,b,a", "--classes: a class repeats"),
        ("multiclass", "[1, true, 3]", "--classes: a JSON list of strings or numbers"),
        ("multiclass", "[1, 2", "--classes: not a JSON list"),
    ],
)
def test_import_classes_that_cannot_label_the_model_are_a_usage_error(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str, classes: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing is written, nothing is asked of a stack: checked first
    r = _import(model_dir, tmp_path, task, "--classes", classes)
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.output.split()), r.output


def test_classes_read_as_the_validator_reads_a_target_or_as_json() -> None:
    assert parse_classes("0, 1,2") == [0, 1, 2]  # numbers, as a numeric target's classes are
    assert parse_classes("0.5,1") == [0.5, 1]
    assert parse_classes("cat,dog") == ["cat", "dog"]
    assert parse_classes('["0", "1"]') == ["0", "1"]  # JSON keeps strings strings


def test_eval_labels_must_be_among_the_given_classes(tmp_path: Path) -> None:
    import click

    from modelops.domain.spec import parse_spec

    spec = parse_spec(json.dumps({"task": "multiclass", "target": "y", "training": {"backend": "local"}}))
    rows = tmp_path / "eval.csv"
    rows.write_text("a,y\n" + "".join(f"{i / 10},{'cat' if i % 2 else 'dog'}\n" for i in range(40)))
    assert _validation(spec, rows, None, ["dog", "cat"])["classes"] == ["dog", "cat"]  # given order wins
    assert _validation(spec, rows, None, None)["classes"] == ["cat", "dog"]  # else the rows' classes
    with pytest.raises(click.UsageError, match=r"labels \['dog'\] are not among --classes \['cat', 'bird'\]"):
        _validation(spec, rows, None, ["cat", "bird"])
