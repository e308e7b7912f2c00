"""The promotion gate on tensor models (issue 15: an imported or a script's model goes through the same
gate): two versions of a small CNN on scikit-learn's 8x8 digits, converted by convert with real
TensorFlow on moto, then scored by the gate with real LiteRT on the platform's held-out rows (a CSV of
64 pixel columns and the digit, each row fed as an [8, 8, 1] image, row-major). The decision carries
both accuracies; a candidate whose signature differs from production's is kept out, saying why."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops.stages import convert as conversion
from modelops.stages import gate as gating
from modelops.storage.evaluation import EvaluationStore
from modelops.storage.registry import Registry
from tests.fakes import FakeBus
from tests.integration.convert_support import (
    BUCKET,
    artifact_key,
    put_job_record,
    sagemaker_event,
    stage_event,
    targz_dir,
)

pytestmark = pytest.mark.slow

MODEL = "digits"
PIXELS = [f"p{i}" for i in range(64)]
SPEC = {
    "task": "multiclass",
    "target": "digit",
    "training": {"entry_point": "train.py"},
    "promotion": {"metric": "accuracy"},
}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.asarray(d.data, dtype=np.float32), np.asarray(d.target, dtype=np.int64)


def _cnn(shape: tuple[int, ...], epochs: int, x: np.ndarray, y: np.ndarray) -> Any:
    """A small CNN taking the raw pixels (0..16; it rescales them itself), trained ``epochs`` epochs."""
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input(shape=shape, name="image")
    h = keras.layers.Rescaling(1.0 / 16)(image)
    if len(shape) == 2:
        h = keras.layers.Reshape((8, 8, 1))(h)
    h = keras.layers.Conv2D(4, 3, activation="relu", padding="same")(h)
    h = keras.layers.Flatten()(keras.layers.MaxPooling2D()(h))
    model = keras.Model(image, keras.layers.Dense(10, activation="softmax")(h))
    if epochs:
        model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        model.fit(x.reshape(-1, *shape), y, epochs=epochs, batch_size=32, verbose=0)
    return model


def _folder(root: Path, model: Any, sample: np.ndarray) -> Path:
    root.mkdir()
    model.save(root / "model.keras")
    buf = io.BytesIO()
    np.savez(buf, image=sample)
    (root / "sample.npz").write_bytes(buf.getvalue())
    return root


@pytest.fixture(scope="module")
def cnns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    x, y = _digits()
    train, held = slice(0, 1000), slice(1000, None)
    root = tmp_path_factory.mktemp("gate-cnns")
    images = x[train].reshape(-1, 8, 8, 1)
    return {
        "weak": _folder(root / "weak", _cnn((8, 8, 1), 0, x[train], y[train]), images[:64]),
        "good": _folder(root / "good", _cnn((8, 8, 1), 8, x[train], y[train]), images[:64]),
        "flat": _folder(root / "flat", _cnn((8, 8), 8, x[train], y[train]), x[train][:64].reshape(-1, 8, 8)),
        "held": (x[held], y[held]),
    }


def _heldout_csv(x: np.ndarray, y: np.ndarray) -> bytes:
    lines = [",".join([*PIXELS, "digit"])]
    lines += [",".join([*(str(int(v)) for v in row), str(int(t))]) for row, t in zip(x, y, strict=True)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def registry(s3: Any, registry_bucket: str) -> Registry:
    return Registry(s3, registry_bucket, actor="convert")


def _publish(s3: Any, registry: Registry, bus: FakeBus, job: str, folder: Path) -> gating.Result:
    """Convert publishes the job's model as the next version; the gate (with the platform's evaluation
    rows, real LiteRT) decides about it."""
    put_job_record(
        s3,
        job,
        model=MODEL,
        spec_doc=SPEC,
        validation={"features": PIXELS, "feature_types": {}, "classes": list(range(10))},
    )
    s3.put_object(Bucket=BUCKET, Key=artifact_key(MODEL, job), Body=targz_dir(folder))
    converted = conversion.handle_event(sagemaker_event(job), conversion.Deps(registry=registry, bus=bus))
    assert converted.outcome == "published", converted.reason
    deps = gating.Deps(registry=registry, bus=bus, evaluation=EvaluationStore(registry.objects))
    event = stage_event("ModelVersionPublished", bus.of("ModelVersionPublished")[-1])
    return gating.handle_event(event, deps)


def test_a_better_cnn_is_promoted_on_the_platforms_heldout_digits(
    cnns: dict[str, Any], s3: Any, registry: Registry, bus: FakeBus
) -> None:
    # Given an untrained CNN in production, and the platform's held-out digits (64 pixels and the digit)
    first = _publish(s3, registry, bus, f"modelops-{MODEL}-weak", cnns["weak"])
    assert first.gate is not None and first.gate["action"] == "promote"
    x_held, y_held = cnns["held"]
    digest = EvaluationStore(registry.objects).put_heldout(MODEL, _heldout_csv(x_held, y_held))[1]

    # When a trained CNN of the same signature is published
    res = _publish(s3, registry, bus, f"modelops-{MODEL}-good", cnns["good"])

    # Then the gate scored both on the same 797 rows, each row an [8, 8, 1] image, and promoted v2
    assert res.gate is not None and res.gate["action"] == "promote", res.reason
    assert registry.resolve(MODEL) == 2
    promoted = bus.of("ModelPromoted")[-1]
    assert promoted["source"] == "heldout" and promoted["evaluation"]["sha256"] == [digest]
    assert promoted["evaluation"]["rows"] == len(y_held) == 797
    assert promoted["evaluation"]["columns"] == 64 and promoted["evaluation"]["inputs"] == [
        "image [8, 8, 1] float32"
    ]
    assert promoted["candidate_value"] > 0.85 and promoted["production_value"] < 0.3
    assert promoted["interval"]["lower"] > 0.5
    entry = [h for h in registry.history(MODEL, "production") if h.get("kind") == "gate"][-1]
    assert (entry["candidate"], entry["candidate_value"], entry["production_value"]) == (
        2,
        promoted["candidate_value"],
        promoted["production_value"],
    )

    # and a candidate whose input differs from production's ([8, 8], not [8, 8, 1]) is kept out
    flat = _publish(s3, registry, bus, f"modelops-{MODEL}-flat", cnns["flat"])
    assert flat.gate is not None and flat.gate["action"] == "keep" and registry.resolve(MODEL) == 2
    assert (
        "its inputs (image [8, 8] float32) are not production v2's (image [8, 8, 1] float32)" in flat.reason
    )
    assert "promote by hand" in flat.reason
    assert bus.of("PromotionRejected")[-1]["version"] == 3
