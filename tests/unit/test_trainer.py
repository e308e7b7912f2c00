"""The trainer and the training image's entrypoint, on real tables that scikit-learn ships.

Models are tiny (one hidden layer of 16, a few dozen epochs): each training takes about a second.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from modelops.compute import JobRequest, source_bundle
from modelops.domain.metrics import auc_binary, classification_metrics, regression_metrics
from modelops.domain.spec import ModelSpec, parse_spec
from modelops.ml.job import read_hyperparameters
from modelops.stages.train_trigger import canonical_spec_json
from modelops.storage import keys

CONTRACT_FILES = {
    "saved_model",
    "metrics.json",
    "schema.json",
    "baseline.json",
    "heldout.npz",
    "training_record.json",
}


def write_table(path: Path, x: np.ndarray, y: Any, names: list[str], target: str = "target") -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*names, target])
    for row, label in zip(x, y, strict=True):
        w.writerow([*(f"{v:.6g}" for v in row), label])
    data = buf.getvalue().encode()
    path.write_bytes(data)
    return data


def diabetes(path: Path) -> bytes:
    d = load_diabetes()
    return write_table(path, d.data, d.target, list(d.feature_names))


def spec_for(task: str, **training: Any) -> ModelSpec:
    base = {"epochs": 40, "hidden_units": [16], "batch_size": 32, "learning_rate": 0.02, "seed": 3}
    return parse_spec({"task": task, "target": "target", "training": {**base, **training}})


def hyperparameters(spec: ModelSpec, data: bytes, key: str = "datasets/demo/train.csv") -> dict[str, str]:
    return JobRequest(
        job="modelops-demo-0123456789ab",
        model="demo",
        spec=spec,
        spec_json=canonical_spec_json(spec),
        dataset_bucket="data",
        dataset_key=key,
        dataset_version_id="v1",
        dataset_sha256=hashlib.sha256(data).hexdigest(),
        rows=0,
        registry_bucket="registry",
        output_prefix=keys.staging_model_prefix("demo"),
        artifact_key=keys.output_artifact(keys.staging_prefix("demo", "modelops-demo-0123456789ab")),
        trials_prefix=keys.trials_prefix("demo", "modelops-demo-0123456789ab"),
    ).hyperparameters()


def sagemaker_dirs(root: Path, hps: dict[str, str]) -> dict[str, str]:
    """The directories and variables a SageMaker training container sees."""
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    return {
        "SM_CHANNEL_TRAIN": str(root / "input" / "data" / "train"),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_INPUT_CONFIG_DIR": str(config),
    }


def run_entrypoint(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *argv: str) -> int:
    from modelops_training import entrypoint

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return entrypoint.main(list(argv))


# ---------------------------------------------------------------------------- numpy metrics
def test_auc_matches_pairwise_definition_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairwise = (np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])) / (
        len(pos) * len(neg)
    )
    assert auc_binary(y, s) == pytest.approx(pairwise)
    assert auc_binary(np.ones(5), s[:5]) is None


def test_metric_helpers_on_known_values() -> None:
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert (
        m["rmse"] == pytest.approx(np.sqrt(4 / 3))
        and m["mae"] == pytest.approx(2 / 3)
        and m["r2"] == pytest.approx(-1.0)
    )
    c = classification_metrics(np.array([0, 1, 1, 0]), np.array([[0.1], [0.9], [0.4], [0.2]]))
    assert c["accuracy"] == 0.75 and c["auc"] == 1.0
    assert c["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.9, 0.4, 0.8])))


# ---------------------------------------------------------------------------- the SageMaker contract
@pytest.mark.slow
def test_diabetes_through_the_entrypoint_beats_the_constant_predictor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given SageMaker's directories, the dataset in the train channel and hyperparameters as sent
    spec = spec_for("regression")
    data = diabetes(tmp_path / "input" / "data" / "train" / "train.csv")
    env = sagemaker_dirs(tmp_path, hyperparameters(spec, data))

    # When the image's entrypoint runs as SageMaker runs it
    assert run_entrypoint(monkeypatch, env, "train") == 0

    # Then the held-out RMSE clearly beats predicting the training mean
    model_dir = tmp_path / "model"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["rmse"] < 0.85 * metrics["baseline_rmse"], metrics
    assert metrics["r2"] > 0.3 and metrics["n_val"] == 88
    # and the model dir holds everything docs/contracts.md lists
    assert CONTRACT_FILES <= {p.name for p in model_dir.iterdir()}
    assert (model_dir / "saved_model" / "saved_model.pb").is_file()
    schema = json.loads((model_dir / "schema.json").read_text())
    assert schema == {
        "task": "regression",
        "target": "target",
        "features": [
            {"name": n, "type": "numeric", "dtype": "float32"} for n in load_diabetes().feature_names
        ],
        "classes": None,
    }
    with np.load(model_dir / "heldout.npz", allow_pickle=False) as npz:
        x, y = npz["x"], npz["y"]
    assert x.dtype == np.float32 and y.dtype == np.float32 and x.shape == (88, 10) and y.shape == (88,)
    baseline = json.loads((model_dir / "baseline.json").read_text())
    assert baseline["n_rows"] == 354 and set(baseline["features"]) == set(load_diabetes().feature_names)
    assert {"count", "missing", "edges", "proportions", "sample"} <= set(baseline["prediction"])
    record = json.loads((model_dir / "training_record.json").read_text())
    assert record["dataset"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["dataset"]["version_id"] == "v1" and record["job"] == "modelops-demo-0123456789ab"
    assert record["frameworks"]["tensorflow"] and 1 <= record["epochs_run"] <= 40
    assert len(record["history"]["loss"]) == record["epochs_run"]
    assert json.loads((tmp_path / "output" / "data" / "metrics.json").read_text()) == metrics
    # the exported SavedModel answers like the metrics say (what convert will check)
    import tensorflow as tf

    serve = tf.saved_model.load(str(model_dir / "saved_model")).signatures["serving_default"]
    out = list(serve(tf.constant(x)).values())[0].numpy().ravel()
    assert regression_metrics(y, out)["rmse"] == pytest.approx(metrics["rmse"], rel=1e-4)
    # one line per epoch, and metric lines a tuning job's MetricDefinitions can parse
    log = capsys.readouterr().out
    assert "epoch 1/40 loss=" in log and "val_loss=" in log
    assert f"validation:rmse={metrics['rmse']:.6g}" in log


@pytest.mark.slow
def test_breast_cancer_binary(tmp_path: Path) -> None:
    from modelops.ml.trainer import train

    d = load_breast_cancer()
    path = tmp_path / "bc.csv"
    write_table(path, d.data, d.target, [n.replace(" ", "_") for n in d.feature_names])
    metrics = train(
        path, spec_for("binary", epochs=25, learning_rate=0.01), tmp_path / "model", log=lambda _: None
    )
    assert metrics["accuracy"] > metrics["baseline_accuracy"] + 0.2, metrics
    assert metrics["auc"] > 0.95 and metrics["baseline_auc"] == 0.5
    assert metrics["log_loss"] < metrics["baseline_log_loss"] / 2
    assert json.loads((tmp_path / "model" / "schema.json").read_text())["classes"] == [0, 1]


@pytest.mark.slow
def test_wine_multiclass_with_text_labels(tmp_path: Path) -> None:
    from modelops.ml.trainer import train

    d = load_wine()
    labels = [f"cultivar_{chr(ord('c') - t)}" for t in d.target]  # c, b, a: sorted order differs from index
    path = tmp_path / "wine.csv"
    write_table(path, d.data, labels, list(d.feature_names))
    metrics = train(path, spec_for("multiclass", epochs=30), tmp_path / "model", log=lambda _: None)
    assert metrics["accuracy"] > metrics["baseline_accuracy"] + 0.4, metrics
    assert metrics["auc"] > 0.95
    schema = json.loads((tmp_path / "model" / "schema.json").read_text())
    assert schema["classes"] == ["cultivar_a", "cultivar_b", "cultivar_c"]
    with np.load(tmp_path / "model" / "heldout.npz", allow_pickle=False) as npz:
        assert set(np.unique(npz["y"])) <= {0.0, 1.0, 2.0}


@pytest.mark.slow
def test_training_is_deterministic_given_the_seed_on_cpu(tmp_path: Path) -> None:
    from modelops.ml.trainer import train

    path = tmp_path / "d.csv"
    diabetes(path)
    spec = spec_for("regression", epochs=8)
    first = train(path, spec, tmp_path / "m1", log=lambda _: None)
    second = train(path, spec, tmp_path / "m2", log=lambda _: None)
    other = train(path, spec_for("regression", epochs=8, seed=4), tmp_path / "m3", log=lambda _: None)
    assert first == second
    assert first != other
    for name in ("heldout.npz", "baseline.json"):
        assert (tmp_path / "m1" / name).read_bytes() == (tmp_path / "m2" / name).read_bytes()


# ---------------------------------------------------------------------------- failures (no TensorFlow needed)
def test_dataset_changed_since_validation_fails_with_the_failure_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = spec_for("regression")
    data = diabetes(tmp_path / "input" / "data" / "train" / "train.csv")
    env = sagemaker_dirs(tmp_path, hyperparameters(spec, data + b"tampered"))
    assert run_entrypoint(monkeypatch, env) == 2
    failure = (tmp_path / "output" / "failure").read_text()
    assert "changed after it was validated" in failure
    assert "changed after it was validated" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def test_invalid_dataset_fails_with_the_validators_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "input" / "data" / "train" / "train.csv"
    path.parent.mkdir(parents=True)
    data = b"a,target\n" + b"".join(b"%d,nan\n" % i for i in range(20))
    path.write_bytes(data)
    env = sagemaker_dirs(tmp_path, hyperparameters(spec_for("regression"), data))
    assert run_entrypoint(monkeypatch, env) == 2
    assert "bad_target" in (tmp_path / "output" / "failure").read_text()


def test_missing_hyperparameters_fail_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = sagemaker_dirs(tmp_path, {"model": "demo"})
    assert run_entrypoint(monkeypatch, env) == 2
    assert "hyperparameters lack job, spec" in (tmp_path / "output" / "failure").read_text()


def test_hyperparameters_decoded_by_the_sagemaker_toolkit_are_restored(tmp_path: Path) -> None:
    spec = spec_for("regression")
    hps = hyperparameters(spec, b"x")
    decoded = {**hps, "spec": json.loads(hps["spec"])}  # what SM_HPS holds after the toolkit's json.loads
    got = read_hyperparameters({"SM_HPS": json.dumps(decoded), "SM_INPUT_CONFIG_DIR": str(tmp_path / "none")})
    assert parse_spec(got["spec"]) == spec and got["dataset_sha256"] == hps["dataset_sha256"]


# ---------------------------------------------------------------------------- AWS Batch mode
def _batch_env(tmp_path: Path, s3: Any, spec: ModelSpec, data: bytes) -> dict[str, str]:
    for bucket in ("data", "registry"):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    version = s3.put_object(Bucket="data", Key="datasets/demo/train.csv", Body=data)["VersionId"]
    s3.put_object(Bucket="data", Key="datasets/demo/train.csv", Body=b"a newer upload,target\n")
    hps = hyperparameters(spec, data)
    hps["dataset_version_id"] = version
    return {
        "SM_HPS": json.dumps(hps),
        "MODELOPS_OUTPUT_S3": "s3://registry/staging/demo/modelops-demo-0123456789ab/output/model.tar.gz",
    }


@pytest.mark.slow
def test_batch_mode_downloads_the_version_trains_and_uploads_the_archive(tmp_path: Path, s3: Any) -> None:
    from modelops_training.entrypoint import run_batch

    d = load_diabetes()
    data = write_table(tmp_path / "d.csv", d.data[:200], d.target[:200], list(d.feature_names))
    env = _batch_env(tmp_path, s3, spec_for("regression", epochs=5), data)

    assert run_batch(env, s3=s3) == 0

    body = s3.get_object(
        Bucket="registry", Key="staging/demo/modelops-demo-0123456789ab/output/model.tar.gz"
    )["Body"]
    with tarfile.open(fileobj=io.BytesIO(body.read())) as tar:
        names = set(tar.getnames())
    assert {
        "saved_model/saved_model.pb",
        "metrics.json",
        "schema.json",
        "baseline.json",
        "heldout.npz",
    } <= names
    assert "training_record.json" in names and not any(n.startswith(("/", "..", "./")) for n in names)


def test_batch_mode_failure_leaves_its_reason_beside_the_archive(tmp_path: Path, s3: Any) -> None:
    from modelops_training.entrypoint import run_batch

    data = b"a,target\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(20))
    env = _batch_env(tmp_path, s3, spec_for("regression"), data)
    env["SM_HPS"] = json.dumps({**json.loads(env["SM_HPS"]), "dataset_sha256": "0" * 64})

    assert run_batch(env, s3=s3) == 2

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="registry")["Contents"]]
    assert keys == ["staging/demo/modelops-demo-0123456789ab/output/failure"]
    reason = s3.get_object(Bucket="registry", Key=keys[0])["Body"].read().decode()
    assert "changed after it was validated" in reason


def test_batch_mode_without_configuration_fails_clearly(tmp_path: Path) -> None:
    from modelops_training.entrypoint import run_batch

    assert run_batch({"MODELOPS_OUTPUT_S3": "", "SM_HPS": "{}"}, s3=object()) == 2


# ---------------------------------------------------------------------------- the AWS image's source bundle
@pytest.mark.slow
def test_source_bundle_trains_on_its_own_under_script_mode(tmp_path: Path) -> None:
    # Given the sourcedir.tar.gz SageMaker would unpack in the AWS TensorFlow image
    src = tmp_path / "code"
    with tarfile.open(fileobj=io.BytesIO(source_bundle())) as tar:
        tar.extractall(src, filter="data")
    spec = spec_for("regression", epochs=3)
    data = diabetes(tmp_path / "input" / "data" / "train" / "train.csv")
    env = {**os.environ, **sagemaker_dirs(tmp_path, hyperparameters(spec, data)), "PYTHONPATH": ""}

    # When script mode runs `python train.py` in it
    run = subprocess.run(
        [sys.executable, "train.py"], cwd=src, env=env, capture_output=True, text=True, timeout=300
    )
    which = subprocess.run(
        [sys.executable, "-c", "import modelops; print(modelops.__file__)"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
    )

    # Then it trains with the bundled library, not an installed one
    assert run.returncode == 0, run.stderr[-2000:]
    assert "validation:rmse=" in run.stdout
    assert which.stdout.strip().startswith(str(src))
    assert CONTRACT_FILES <= {p.name for p in (tmp_path / "model").iterdir()}


def test_a_dataset_the_stage_accepted_with_a_looser_limit_still_trains(tmp_path: Path) -> None:
    """The stack may raise MAX_MISSING_RATE: bytes the stage validated (same SHA-256) are not judged
    again against the defaults; a file that was never validated is."""
    import hashlib

    from modelops.domain.errors import DatasetRejectedError
    from modelops.domain.spec import parse_spec
    from modelops.ml.trainer import check_dataset

    spec = parse_spec({"task": "regression", "target": "y", "features": ["a", "b"]})
    rows = ["a,b,y"] + [f"{i},{'' if i % 5 == 0 else i * 2},{i * 3}" for i in range(40)]  # 20% missing in b
    path = tmp_path / "data.csv"
    path.write_text("\n".join(rows) + "\n")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    got_sha, loaded = check_dataset(path, spec, {"dataset_sha256": sha})
    assert got_sha == sha and loaded.x.shape == (40, 2)
    with pytest.raises(DatasetRejectedError):
        check_dataset(path, spec, {})
