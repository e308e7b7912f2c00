"""Your own TensorFlow model on the twin (issue 15), on scikit-learn's 8x8 digits (shipped inside its
package, no download): the digits as a CSV of pixels, the ``train.py`` of docs/training.md "A CNN on
images" as it stands there, the rows the platform held out from that script, and a CNN trained outside
the platform for ``modelops models import``. ``make demo`` (modelops_local.demo) narrates both paths;
tests/e2e/test_own_model.py asserts them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelops_local.lifecycle import Life
from modelops_local.twin import Twin, exports

ROOT = Path(__file__).resolve().parents[2]
PIXELS = [f"p{i}" for i in range(64)]
TARGET = "digit"
SCRIPT_MODEL = "digits-script"
IMPORT_MODEL = "digits-import"
SCRIPT_SPEC: dict[str, Any] = {
    "task": "multiclass",
    "target": TARGET,
    "training": {"backend": "local", "entry_point": "train.py", "epochs": 15, "seed": 0},
    "promotion": {"metric": "accuracy"},
}
IMAGE = {"name": "image", "shape": [8, 8, 1], "dtype": "float32"}
"""The signature's input of both CNNs, as the version's schema and ``GET /models/{name}`` show it."""


def documented_script() -> bytes:
    """The ``train.py`` of docs/training.md "A CNN on images", byte for byte."""
    parts = (ROOT / "docs" / "training.md").read_text().split("**A CNN on images**", 1)
    found = re.search(r"```python\n(.*?)```", parts[1], re.S) if len(parts) == 2 else None
    if found is None:
        raise LookupError('docs/training.md lost its "A CNN on images" train.py')
    return found.group(1).encode()


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits: rows of 64 pixels (0..16) and their labels (0..9)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.asarray(d.data, dtype=np.int64), np.asarray(d.target, dtype=np.int64)


def digits_csv() -> bytes:
    """The digits as the script reads them: columns ``p0``..``p63`` and ``digit``."""
    x, y = digits()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*PIXELS, TARGET])
    w.writerows([*map(int, row), int(label)] for row, label in zip(x, y, strict=True))
    return buf.getvalue().encode()


def images(pixels: np.ndarray) -> np.ndarray:
    """Rows of 64 pixels (0..16) as the models' input: [rows, 8, 8, 1] float32, the values unchanged
    (the models scale them with a ``Rescaling`` layer, so the gate can feed the CSV's rows as they are)."""
    return np.asarray(pixels, dtype=np.float32).reshape(-1, 8, 8, 1)


def job_record(life: Life, job: str) -> dict[str, Any]:
    """The job record (``jobs/{job}.json`` in the registry bucket) of a training job or an import."""
    body = life.s3().get_object(Bucket=life.registry_bucket, Key=f"jobs/{job}.json")["Body"].read()
    return dict(json.loads(body))


def held_out_digits(life: Life, job: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation rows the platform kept from the job (the script never saw them): images, labels."""
    key = job["split"]["evaluation"]["key"]
    text = life.s3().get_object(Bucket=life.registry_bucket, Key=key)["Body"].read().decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    x = images(np.array([[float(r[p]) for p in PIXELS] for r in rows]))
    return x, np.array([int(float(r[TARGET])) for r in rows], dtype=np.int64)


@dataclass(frozen=True)
class Outside:
    """A CNN trained outside the platform: its ``.keras`` file, sample and spec, and its own answers
    (``expected``) on the digits it did not see (``x_held``, ``y_held``)."""

    path: Path
    sample: Path
    spec: Path
    x_held: np.ndarray
    y_held: np.ndarray
    expected: np.ndarray
    epochs: int
    train_rows: int


def train_outside(root: Path, epochs: int = 15, train_rows: int = 1400) -> Outside:
    """Train a small CNN on the first ``train_rows`` of a seeded shuffle of the digits, here (Keras in
    this process), and write ``digits.keras``, ``sample.npz`` (256 training images under ``image``, the
    signature's input name) and ``model.json`` into ``root``."""
    import keras

    keras.utils.set_random_seed(0)
    pixels, y = digits()
    x = images(pixels)
    order = np.random.default_rng(0).permutation(len(y))
    train, held = order[:train_rows], order[train_rows:]
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    h = keras.layers.Rescaling(1 / 16)(inputs)
    h = keras.layers.Conv2D(8, 3, activation="relu", padding="same")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy")
    model.fit(x[train], y[train], epochs=epochs, batch_size=32, verbose=0)
    root.mkdir(parents=True, exist_ok=True)
    model.save(root / "digits.keras")
    np.savez(root / "sample.npz", image=x[train[:256]])
    (root / "model.json").write_text(
        json.dumps({"task": "multiclass", "target": TARGET, "training": {"backend": "local"}})
    )
    return Outside(
        path=root / "digits.keras",
        sample=root / "sample.npz",
        spec=root / "model.json",
        x_held=x[held],
        y_held=y[held],
        expected=np.asarray(model.predict(x[held], verbose=0), dtype=np.float64),
        epochs=epochs,
        train_rows=len(train),
    )


def run_cli(twin: Twin, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The ``modelops`` CLI in a child process whose environment names the twin, as
    ``eval "$(modelops local env)"`` would in another shell (and nothing else of AWS's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODELOPS_"))}
    env.update(exports(twin.state()))
    env.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    return subprocess.run(
        [sys.executable, "-m", "modelops_cli.main", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
