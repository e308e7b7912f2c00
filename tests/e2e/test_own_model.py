"""Your own TensorFlow model on the twin (issue 15, item 6), on scikit-learn's 8x8 digits (shipped in
the package): a small CNN trained by the user's script uploaded with its data (docs/training.md "A CNN on
images", run as it stands there), served over HTTP with image tensors in TF Serving's row and columnar
formats and right on the platform's held-out digits; and the same kind of CNN trained here, outside the
platform, imported with ``modelops models import``, answering over HTTP as Keras does within the parity
tolerance convert recorded."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from modelops import aws
from modelops_cli.main import cli
from modelops_local.lifecycle import Life
from modelops_local.twin import Twin, exports

pytestmark = [pytest.mark.slow, pytest.mark.twin]

ROOT = Path(__file__).parents[2]
PIXELS = [f"p{i}" for i in range(64)]
TARGET = "digit"
SCRIPT_MODEL = "digits-script"
IMPORT_MODEL = "digits-import"
SCRIPT_SPEC = {
    "task": "multiclass",
    "target": TARGET,
    "training": {"backend": "local", "entry_point": "train.py", "epochs": 15, "seed": 0},
    "promotion": {"metric": "accuracy"},
}
IMAGE = {"name": "image", "shape": [8, 8, 1], "dtype": "float32"}


def documented_script() -> bytes:
    """The ``train.py`` of docs/training.md "A CNN on images", byte for byte."""
    text = (ROOT / "docs" / "training.md").read_text()
    section = text.split("**A CNN on images**", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "docs/training.md lost its CNN train.py"
    return found.group(1).encode()


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.asarray(d.data, dtype=np.int64), np.asarray(d.target, dtype=np.int64)


def digits_csv() -> bytes:
    x, y = digits()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*PIXELS, TARGET])
    w.writerows([*map(int, row), int(label)] for row, label in zip(x, y, strict=True))
    return buf.getvalue().encode()


def images(pixels: np.ndarray) -> np.ndarray:
    """Rows of 64 pixels (0..16) as the models' input: [rows, 8, 8, 1] float32 in [0, 1]."""
    return (np.asarray(pixels, dtype=np.float32) / 16.0).reshape(-1, 8, 8, 1)


@pytest.fixture
def env(twin: Twin, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Twin]:
    """The environment names the twin, as ``eval "$(modelops local env)"`` would (for the CLI)."""
    monkeypatch.chdir(tmp_path)
    for key, value in dict(exports(twin.state())).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MODELOPS_TEST_KEEP_ENDPOINT", "1")
    aws.clear_cache()
    yield twin
    aws.clear_cache()


def test_a_users_cnn_script_trains_on_uploaded_digits_and_serves_image_tensors(env: Twin) -> None:
    life = Life(env)
    s3 = life.s3()

    # Given a spec naming the entry point, the documented CNN script under code/, then the digits
    life.upload_spec(SCRIPT_MODEL, SCRIPT_SPEC)
    s3.put_object(
        Bucket=life.data_bucket, Key=f"datasets/{SCRIPT_MODEL}/code/train.py", Body=documented_script()
    )
    life.upload_dataset(SCRIPT_MODEL, "digits.csv", digits_csv())
    life.settle()

    # Then the script's model is version 1, a tensor model with the signature's image input, in production
    assert life.versions(SCRIPT_MODEL) == [1]
    assert life.production(SCRIPT_MODEL) == 1
    manifest = life.manifest(SCRIPT_MODEL, 1)
    schema = manifest.get("schema")
    assert schema["inputs"] == [IMAGE]
    assert [o["shape"] for o in schema["outputs"]] == [[10]]
    assert manifest.get("parity")["float32"]["passed"] is True
    assert manifest.get("parity")["float32"]["rows"] == 256  # the script's sample.npz
    assert manifest.get("training")["record"]["source"] == "training"
    status, page = life.http("GET", f"/models/{SCRIPT_MODEL}")
    assert status == 200 and page["schema"]["inputs"] == [IMAGE]
    job = json.loads(
        s3.get_object(Bucket=life.registry_bucket, Key=f"jobs/{manifest.get('training')['job']}.json")[
            "Body"
        ].read()
    )
    assert job["code"]["entry_point"] == "train.py"
    assert [f["name"] for f in job["code"]["files"]] == ["train.py"]
    # the version names the code that trained it (lineage), as the job record does
    code = manifest.get("training")["record"]["code"]
    assert (code["sha256"], code["entry_point"]) == (job["code"]["sha256"], "train.py")

    # The platform kept the evaluation rows from the script: they are the held-out digits
    held = list(
        csv.DictReader(
            io.StringIO(
                s3.get_object(Bucket=life.registry_bucket, Key=job["split"]["evaluation"]["key"])["Body"]
                .read()
                .decode()
            )
        )
    )
    assert len(held) == job["split"]["evaluation"]["rows"] > 250
    x_held = images(np.array([[float(r[p]) for p in PIXELS] for r in held]))
    y_held = np.array([int(float(r[TARGET])) for r in held])

    # When predict is called over HTTP with the held-out images, in row format and in columnar format
    status, rows = life.http("POST", f"/models/{SCRIPT_MODEL}/predict", {"instances": x_held.tolist()})
    assert status == 200, rows
    status, columns = life.http("POST", f"/models/{SCRIPT_MODEL}/predict", {"inputs": x_held.tolist()})
    assert status == 200, columns

    # Then both answer the same ten probabilities per image, and the digits are right
    by_row = np.asarray(rows["predictions"], dtype=np.float64)
    assert rows["version"] == columns["version"] == 1
    assert by_row.shape == (len(held), 10)
    assert np.array_equal(by_row, np.asarray(columns["outputs"], dtype=np.float64))
    accuracy = float(np.mean(by_row.argmax(axis=1) == y_held))
    assert accuracy >= 0.9, accuracy

    # and an image of the wrong shape is refused before the model runs
    status, doc = life.http("POST", f"/models/{SCRIPT_MODEL}/predict", {"instances": [[[0.0] * 8] * 8]})
    assert (status, doc["error"]["code"]) == (422, "invalid_instances"), doc


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CNN on the digits trained here, outside the platform: a ``.keras`` file, its sample, its spec."""
    import keras

    keras.utils.set_random_seed(0)
    pixels, y = digits()
    x = images(pixels)
    order = np.random.default_rng(0).permutation(len(y))
    train, held = order[:1400], order[1400:]
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    h = keras.layers.Conv2D(8, 3, activation="relu", padding="same")(inputs)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy")
    model.fit(x[train], y[train], epochs=15, batch_size=32, verbose=0)
    root = tmp_path_factory.mktemp("digits")
    model.save(root / "digits.keras")
    np.savez(root / "sample.npz", image=x[train[:256]])
    (root / "model.json").write_text(
        json.dumps({"task": "multiclass", "target": TARGET, "training": {"backend": "local"}})
    )
    return {
        "path": root / "digits.keras",
        "sample": root / "sample.npz",
        "spec": root / "model.json",
        "x_held": x[held],
        "y_held": y[held],
        "expected": np.asarray(model.predict(x[held], verbose=0), dtype=np.float64),
    }


def test_a_cnn_trained_elsewhere_is_imported_and_answers_as_keras_does(
    env: Twin, outside: dict[str, Any]
) -> None:
    # Given a Keras CNN trained outside the platform and a sample of its inputs
    # When it is imported with the CLI
    r = CliRunner().invoke(
        cli,
        [
            "models",
            "import",
            IMPORT_MODEL,
            str(outside["path"]),
            "--sample",
            str(outside["sample"]),
            "--spec",
            str(outside["spec"]),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["created"] is True and out["tabular"] is False
    life = Life(env)
    life.settle()

    # Then convert made version 1 of it, a tensor model, in production
    assert life.versions(IMPORT_MODEL) == [1]
    assert life.production(IMPORT_MODEL) == 1
    manifest = life.manifest(IMPORT_MODEL, 1)
    assert manifest.get("training")["record"]["source"] == "import"
    assert manifest.get("schema")["inputs"] == [IMAGE]
    parity = manifest.get("parity")["float32"]
    assert parity["passed"] is True and parity["rows"] == 256

    # and predict over HTTP answers what the Keras model answers, within the recorded parity tolerance
    status, got = life.http(
        "POST", f"/models/{IMPORT_MODEL}/predict", {"instances": outside["x_held"].tolist()}
    )
    assert status == 200, got
    probs = np.asarray(got["predictions"], dtype=np.float64)
    assert probs.shape == outside["expected"].shape == (len(outside["y_held"]), 10)
    assert np.max(np.abs(probs - outside["expected"])) <= parity["tolerance"]
    assert float(np.mean(probs.argmax(axis=1) == outside["y_held"])) >= 0.9
