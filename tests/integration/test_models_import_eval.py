"""``modelops models import --eval`` for a tensor model (issue 15, item 2), on moto: the CSV's columns
but the target, in their order, are the one input's values flattened row-major, so the gate can score
the model on them (docs/cli.md); a CSV whose columns cannot fill the input, one for a model with
several inputs, or one with categories is a usage error (exit 2) before anything is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from modelops_cli.main import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("eval-models")
    image = keras.Input(shape=(2, 2, 1), name="image")
    one = keras.Model(image, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(image)))
    one.save(root / "one.keras")
    meta = keras.Input(shape=(2,), name="meta")
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), meta])
    two = keras.Model([image, meta], keras.layers.Dense(2, activation="softmax")(joined))
    two.save(root / "two.keras")
    np.save(root / "sample.npy", np.random.default_rng(0).random((8, 2, 2, 1), dtype=np.float32))
    np.savez(
        root / "sample.npz",
        image=np.zeros((8, 2, 2, 1), dtype=np.float32),
        meta=np.zeros((8, 2), dtype=np.float32),
    )
    (root / "model.json").write_text(json.dumps({"task": "binary", "target": "y", "training": {}}))
    return {"root": root}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3: Any, registry_bucket: str) -> Any:
    monkeypatch.chdir(tmp_path)  # no .modelops/local.json here
    monkeypatch.setenv("MODELOPS_REGISTRY_BUCKET_NAME", registry_bucket)
    return s3


def _csv(path: Path, header: list[str], n: int = 40, text: str | None = None) -> Path:
    rng = np.random.default_rng(1)
    lines = [",".join(header)]
    for i in range(n):
        cells = [f"{v:.3f}" for v in rng.random(len(header) - 1)] + [str(i % 2)]
        if text is not None:
            cells[0] = text if i % 2 else "blue"
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def _import(root: Path, model: str, eval_csv: Path, sample: str = "sample.npy") -> Any:
    args = ["models", "import", "pix", str(root / model), "--sample", str(root / sample)]
    args += ["--spec", str(root / "model.json"), "--eval", str(eval_csv), "--json"]
    return CliRunner().invoke(cli, args)


def _keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_an_eval_csv_of_the_inputs_values_is_stored_for_the_gate(
    models: dict[str, Path], env: Any, registry_bucket: str, tmp_path: Path
) -> None:
    root = models["root"]
    eval_csv = _csv(tmp_path / "eval.csv", ["p0", "p1", "p2", "p3", "y"])
    r = _import(root, "one.keras", eval_csv)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["tabular"] is False and out["classes"] == [0, 1]
    assert any(k.startswith("evaluation/pix/heldout/") for k in _keys(env, registry_bucket))


@pytest.mark.parametrize(
    ("model", "sample", "header", "text", "expected"),
    [
        (
            "one.keras",
            "sample.npy",
            ["p0", "p1", "p2", "y"],
            None,
            "--eval: eval.csv has 3 columns besides the target 'y'; input 'image' takes [2, 2, 1] float32, "
            "4 values per row",
        ),
        (
            "two.keras",
            "sample.npz",
            ["p0", "p1", "p2", "p3", "p4", "p5", "y"],
            None,
            "--eval: the gate feeds each row to a model with one input; this one takes",
        ),
        ("one.keras", "sample.npy", ["p0", "p1", "p2", "p3", "y"], "red", "--eval: p0 hold categories"),
    ],
)
def test_an_eval_csv_the_gate_cannot_feed_is_a_usage_error_before_anything_is_written(
    models: dict[str, Path],
    env: Any,
    registry_bucket: str,
    tmp_path: Path,
    model: str,
    sample: str,
    header: list[str],
    text: str | None,
    expected: str,
) -> None:
    eval_csv = _csv(tmp_path / "eval.csv", header, text=text)
    r = _import(models["root"], model, eval_csv, sample)
    assert r.exit_code == 2, r.output
    assert expected in " ".join(r.output.split())
    assert _keys(env, registry_bucket) == []
