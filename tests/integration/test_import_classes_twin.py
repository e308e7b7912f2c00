"""``modelops models import --classes`` on the twin (issue 15, item 3): the classes given become the
version's ``schema.classes`` and predict's answers carry a label per row (the argmax's class) next to
TF Serving's ``predictions``; ``GET /models/{name}`` shows them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from modelops_cli.main import cli
from modelops_local.lifecycle import Life
from modelops_local.twin import Twin

pytestmark = [pytest.mark.slow, pytest.mark.twin]

MODEL = "shapes-import"
CLASSES = ["circle", "square", "triangle"]


@pytest.fixture
def env(twin_in_env: Twin) -> Twin:
    """The twin, named by the environment as ``eval "$(modelops local env)"`` would (for the CLI)."""
    return twin_in_env


def test_imported_classes_label_each_answer_row(env: Twin, tmp_path: Path) -> None:
    import keras

    # Given a small image classifier trained elsewhere (three scores per image) and a sample of images
    keras.utils.set_random_seed(0)
    image = keras.Input(shape=(4, 4, 1), name="image")
    model = keras.Model(image, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(image)))
    model.save(tmp_path / "shapes.keras")
    x = np.random.default_rng(2).random((32, 4, 4, 1), dtype=np.float32)
    np.save(tmp_path / "sample.npy", x)
    (tmp_path / "model.json").write_text(
        json.dumps({"task": "multiclass", "target": "shape", "training": {"backend": "local"}})
    )

    # When it is imported with its classes
    r = CliRunner().invoke(
        cli,
        [
            "models",
            "import",
            MODEL,
            str(tmp_path / "shapes.keras"),
            "--sample",
            str(tmp_path / "sample.npy"),
            "--spec",
            str(tmp_path / "model.json"),
            "--classes",
            ",".join(CLASSES),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["classes"] == CLASSES
    life = Life(env)
    life.settle()

    # Then the version's schema holds them, the model page shows them
    assert life.production(MODEL) == 1
    assert life.manifest(MODEL, 1).get("schema")["classes"] == CLASSES
    status, page = life.http("GET", f"/models/{MODEL}")
    assert status == 200 and page["schema"]["classes"] == CLASSES

    # and each answer row carries the class of its highest score, beside TF Serving's predictions
    status, got = life.http("POST", f"/models/{MODEL}/predict", {"instances": x[:8].tolist()})
    assert status == 200, got
    scores = np.asarray(got["predictions"], dtype=np.float64)
    assert scores.shape == (8, 3)
    assert got["labels"] == [CLASSES[i] for i in scores.argmax(axis=1)]
