"""Convert of a model dir that holds only a model (issue 15: a script's, or an imported one), on moto
with real TensorFlow: the serving signature decides between the tabular path (the dataset's features,
baseline on the job's training rows, parity on the platform's evaluation rows) and the tensor path
(``sample.npz``), and the gate copes with a tensor candidate."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops.stages import convert as conversion
from modelops.storage.registry import Registry
from tests.fakes import FakeBus
from tests.integration.convert_support import (
    BUCKET,
    artifact_key,
    gate_last_published,
    put_job_record,
    sagemaker_event,
    targz_dir,
)

pytestmark = pytest.mark.slow

FEATURES = ["a", "b", "c"]


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, (x @ np.array([1.0, -2.0, 0.5]) + 3).astype(np.float32)


def _csv(x: np.ndarray, y: np.ndarray) -> bytes:
    lines = [",".join([*FEATURES, "y"])] + [
        ",".join(f"{v:.6f}" for v in (*r, t)) for r, t in zip(x, y, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("script-models")
    x, y = _rows(128, 0)
    tabular = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    tabular.compile(optimizer="adam", loss="mse")
    tabular.fit(x, y, epochs=2, verbose=0)
    tabular.export(str(root / "tabular" / "model" / "exported"), format="tf_saved_model", verbose=False)
    image = keras.Input(shape=(4, 4, 1), name="image")
    meta = keras.Input(shape=(2,), name="meta")
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), meta])
    tensor = keras.Model([image, meta], keras.layers.Dense(3, activation="softmax")(joined))
    (root / "tensor").mkdir()
    tensor.save(root / "tensor" / "model.keras")
    return {"tabular": root / "tabular", "tensor": root / "tensor"}


@pytest.fixture
def deps(s3, registry_bucket, bus: FakeBus) -> conversion.Deps:  # type: ignore[no-untyped-def]
    return conversion.Deps(registry=Registry(s3, registry_bucket, actor="convert"), bus=bus)


def _stage(s3: Any, job: str, model_dir: Path, task: str = "regression", **record: Any) -> None:
    spec_doc = {"task": task, "target": "y", "training": {"entry_point": "train.py"}}
    put_job_record(s3, job, spec_doc=spec_doc, **record)
    s3.put_object(Bucket=BUCKET, Key=artifact_key("demo", job), Body=targz_dir(model_dir))


def test_a_script_models_tabular_signature_is_converted_like_the_built_in_trainers(
    models: dict[str, Path], deps: conversion.Deps, s3: Any
) -> None:
    # Given a script-mode job whose model dir holds only a SavedModel (at any depth) taking [3] floats,
    # and the platform's split: training rows and evaluation rows
    job = "modelops-demo-script1"
    x_train, y_train = _rows(64, 1)
    x_eval, y_eval = _rows(40, 2)
    s3.put_object(Bucket=BUCKET, Key=f"inputs/demo/{job}/train.csv", Body=_csv(x_train, y_train))
    body = _csv(x_eval, y_eval)
    import hashlib

    eval_key = f"evaluation/demo/heldout/{hashlib.sha256(body).hexdigest()}.csv"
    s3.put_object(Bucket=BUCKET, Key=eval_key, Body=body)
    split = {"train": {"key": f"inputs/demo/{job}/train.csv"}, "evaluation": {"key": eval_key}}
    validation = {"features": FEATURES, "feature_types": dict.fromkeys(FEATURES, "numeric"), "classes": None}
    _stage(s3, job, models["tabular"], split=split, validation=validation)

    # When convert handles the job's completion
    result = conversion.handle_event(sagemaker_event(job), deps)

    # Then a tabular version: the dataset's features, parity on the 40 evaluation rows with the metric,
    # a baseline over the training rows, and no metrics of its own (the gate scores it)
    assert result.outcome == "published", result.reason
    manifest = deps.registry.get_manifest("demo", 1)
    assert [f["name"] for f in manifest.get("schema")["features"]] == FEATURES
    f32 = manifest.get("parity")["float32"]
    assert f32["rows"] == 40 and f32["passed"] is True and f32["metric"]["savedmodel"] is not None
    baseline = json.loads(deps.registry.read_artifact(manifest, "baseline"))
    assert baseline["n_rows"] == 64 and set(baseline["features"]) == set(FEATURES)
    assert manifest.get("metrics") == {}
    assert manifest.get("training")["record"]["model"] == {"kind": "savedmodel", "path": "model/exported"}


def test_a_tensor_model_without_a_sample_is_refused_naming_sample_npz(
    models: dict[str, Path], deps: conversion.Deps, s3: Any, bus: FakeBus
) -> None:
    job = "modelops-demo-script2"
    _stage(s3, job, models["tensor"], task="multiclass")
    result = conversion.handle_event(sagemaker_event(job), deps)
    assert result.outcome == "conversion_failed" and result.error_code == "artifact_invalid"
    assert "a tensor model needs sample.npz" in result.reason and "image [4, 4, 1] float32" in result.reason
    assert bus.of("ConversionFailed")[-1]["stage"] == "model"
    assert deps.registry.list_versions("demo") == []


def test_a_tensor_model_with_its_sample_is_published_and_the_gate_does_not_crash(
    models: dict[str, Path], deps: conversion.Deps, s3: Any, bus: FakeBus, tmp_path: Path
) -> None:
    # Given a .keras model with two named inputs and the sample the script wrote beside it
    job = "modelops-demo-script3"
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "model.keras").write_bytes((models["tensor"] / "model.keras").read_bytes())
    rng = np.random.default_rng(3)
    buf = io.BytesIO()
    np.savez(
        buf, image=rng.random((16, 4, 4, 1), dtype=np.float32), meta=rng.random((16, 2), dtype=np.float32)
    )
    (folder / "sample.npz").write_bytes(buf.getvalue())
    _stage(s3, job, folder, task="multiclass")

    result = conversion.handle_event(sagemaker_event(job), deps)

    # Then its schema is the signature, parity covers every output, the baseline is a tensor baseline
    assert result.outcome == "published", result.reason
    manifest = deps.registry.get_manifest("demo", 1)
    schema = manifest.get("schema")
    assert [i["name"] for i in schema["inputs"]] == ["image", "meta"] and "features" not in schema
    assert manifest.get("parity")["float32"]["rows"] == 16
    baseline = json.loads(deps.registry.read_artifact(manifest, "baseline"))
    assert baseline["n_rows"] == 16
    # and the gate, which has no rows it can score a tensor model on, decides without crashing
    gated = gate_last_published(deps.registry, bus)
    assert gated.outcome == "decided", gated.reason
    assert bus.of("ModelPromoted")[-1]["version"] == 1  # the first version of a model becomes production
    # a second tensor version: no platform rows to score it on, no claims: kept out, saying why
    _stage(s3, "modelops-demo-script3b", folder, task="multiclass")
    assert conversion.handle_event(sagemaker_event("modelops-demo-script3b"), deps).outcome == "published"
    second = gate_last_published(deps.registry, bus)
    assert second.outcome == "decided", second.reason
    rejected = bus.of("PromotionRejected")[-1]
    assert rejected["version"] == 2 and deps.registry.resolve("demo") == 1


def test_a_model_dir_with_two_models_is_refused(
    models: dict[str, Path], deps: conversion.Deps, s3: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "a.keras").write_bytes((models["tensor"] / "model.keras").read_bytes())
    (folder / "b.keras").write_bytes((models["tensor"] / "model.keras").read_bytes())
    job = "modelops-demo-script4"
    _stage(s3, job, folder)
    result = conversion.handle_event(sagemaker_event(job), deps)
    assert result.outcome == "conversion_failed" and "holds 2 models (a.keras, b.keras)" in result.reason


def _s3_created(key: str) -> dict[str, Any]:
    return {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": key, "etag": "e"}},
    }


def test_the_archive_of_an_import_is_a_completed_job_and_only_an_imports() -> None:
    ev = conversion.parse_job_event(_s3_created("staging/demo/import-demo-abc/output/model.tar.gz"))
    assert ev is not None and (ev.job, ev.status, ev.backend, ev.kind) == (
        "import-demo-abc",
        "completed",
        "import",
        "import",
    )
    assert conversion.parse_job_event(_s3_created("staging/demo/x/trials/1/output/model.tar.gz")) is None
    with pytest.raises(conversion.InvalidEventError):
        conversion.parse_job_event(_s3_created("staging/demo/import_x!/output/model.tar.gz"))


def test_an_archive_event_for_a_training_job_is_ignored(
    models: dict[str, Path], deps: conversion.Deps, s3: Any
) -> None:
    # a training job (no "source": "import") whose name happens to match the rule's wildcard
    job = "import-demo-trained"
    _stage(s3, job, models["tabular"])
    result = conversion.handle_event(_s3_created(artifact_key("demo", job)), deps)
    assert result.outcome == "ignored" and "not an import" in result.reason
    assert deps.registry.list_versions("demo") == []
