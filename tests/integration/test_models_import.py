"""`modelops models import` on the twin (issue 15, item 2): a Keras model trained here, outside the
platform, becomes a version through the same convert path (parity, serving budget, gate), and predict
answers as the Keras model does; a path that is no model and a sample of the wrong shape are usage
errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from modelops_cli.main import cli
from modelops_local.lifecycle import Life
from modelops_local.twin import Twin

pytestmark = [pytest.mark.slow, pytest.mark.twin]

MODEL = "iris-import"
FEATURES = ["sl", "sw", "pl", "pw"]
SPEC = {
    "task": "multiclass",
    "target": "species",
    "training": {"backend": "local"},
    "promotion": {"metric": "accuracy"},
}


@pytest.fixture
def env(twin_in_env: Twin) -> Twin:
    """The twin, named by the environment as ``eval "$(modelops local env)"`` would (for the CLI)."""
    return twin_in_env


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small Keras classifier trained on iris here, saved as a .keras file, and its CSVs."""
    import keras
    from sklearn.datasets import load_iris

    keras.utils.set_random_seed(0)
    data = load_iris()
    x, y = data.data.astype(np.float32), data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    train, held = order[:100], order[100:]
    norm = keras.layers.Normalization()
    norm.adapt(x[train])
    model = keras.Sequential(
        [
            keras.Input(shape=(4,)),
            norm,
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x[train], y[train], epochs=40, batch_size=16, verbose=0)
    root = tmp_path_factory.mktemp("iris")
    path = root / "iris.keras"
    model.save(path)

    def csv(rows: np.ndarray, name: str) -> Path:
        lines = [",".join([*FEATURES, "species"])]
        lines += [",".join([*(f"{v:.1f}" for v in x[i]), str(int(y[i]))]) for i in rows]
        out = root / name
        out.write_text("\n".join(lines) + "\n")
        return out

    spec = root / "model.json"
    spec.write_text(json.dumps(SPEC))
    return {
        "path": path,
        "sample": csv(train, "sample.csv"),
        "eval": csv(held, "eval.csv"),
        "spec": spec,
        "x_held": x[held],
        "expected": np.asarray(model.predict(x[held], verbose=0)),
    }


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["models", "import", *args])


def test_an_imported_keras_model_answers_over_http_as_keras_does(env: Twin, iris: dict[str, Any]) -> None:
    # Given a Keras model trained outside the platform, with a sample and labelled evaluation rows
    # When it is imported
    r = run(
        MODEL,
        str(iris["path"]),
        "--sample",
        str(iris["sample"]),
        "--eval",
        str(iris["eval"]),
        "--spec",
        str(iris["spec"]),
        "--json",
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["tabular"] is True and out["created"] is True
    env.wait_idle(300)

    # Then convert published one version from the import's job, the gate put it in production
    life = Life(env)
    assert life.versions(MODEL) == [1]
    manifest = life.manifest(MODEL, 1)
    assert manifest.get("training")["job"] == out["job"]
    assert manifest.get("training")["record"]["source"] == "import"
    assert [f["name"] for f in manifest.get("schema")["features"]] == FEATURES
    assert manifest.get("parity")["float32"]["passed"] is True
    assert life.production(MODEL) == 1
    record = json.loads(
        life.s3().get_object(Bucket=life.registry_bucket, Key=f"jobs/{out['job']}.json")["Body"].read()
    )
    assert record["source"] == "import" and record["model_file"]["sha256"] == out["sha256"]
    assert record["who"].startswith("arn:")

    # and predict over HTTP answers what the Keras model answers, within the parity tolerance
    got = life.predict(MODEL, iris["x_held"].tolist())
    probs = np.asarray(got["probabilities"], dtype=np.float64)
    tolerance = manifest.get("parity")["float32"]["tolerance"]
    assert probs.shape == iris["expected"].shape
    assert np.max(np.abs(probs - iris["expected"])) <= tolerance


def test_a_path_that_is_no_model_is_a_usage_error(env: Twin, tmp_path: Path, iris: dict[str, Any]) -> None:
    not_a_model = tmp_path / "weights.h5"
    not_a_model.write_bytes(b"not a model")
    r = run(MODEL, str(not_a_model), "--spec", str(iris["spec"]))
    assert r.exit_code == 2
    assert "neither a SavedModel folder" in r.output
    empty = tmp_path / "folder"
    empty.mkdir()
    assert run(MODEL, str(empty), "--spec", str(iris["spec"])).exit_code == 2


def test_a_sample_of_the_wrong_shape_is_a_usage_error(
    env: Twin, tmp_path: Path, iris: dict[str, Any]
) -> None:
    sample = tmp_path / "sample.npy"
    np.save(sample, np.zeros((5, 3), dtype=np.float32))
    before = life_keys(env)
    r = run(MODEL, str(iris["path"]), "--sample", str(sample), "--spec", str(iris["spec"]))
    assert r.exit_code == 2
    assert "takes [rows, 4], the sample has [5, 3]" in r.output
    assert life_keys(env) == before  # nothing written


def life_keys(twin: Twin) -> list[str]:
    life = Life(twin)
    got = life.s3().list_objects_v2(Bucket=life.registry_bucket, Prefix="jobs/")
    return [o["Key"] for o in got.get("Contents", [])]
