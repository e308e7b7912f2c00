"""The whole life on the twin, with real clients, on a table the demo does not use (diabetes,
regression): every step asserted, the two state machines included (the monitor fan-out started with
`modelops local tick`, a batch scoring run with `modelops score`). `make demo` narrates the same steps
on breast cancer."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from modelops.domain.report import run_independent
from modelops_cli.main import cli
from modelops_local.lifecycle import Dataset, Life, sklearn_table

MODEL = "progression"
SPEC: dict[str, Any] = {
    "task": "regression",
    "target": "progression",
    "training": {
        "backend": "local",
        "epochs": 60,
        "batch_size": 32,
        "hidden_units": [16],
        "learning_rate": 0.02,
        "early_stopping_patience": 8,
        "seed": 3,
    },
    "conversion": {"quantize": "dynamic_int8"},
    "promotion": {"metric": "rmse"},
    "monitoring": {"psi_threshold": 0.25},
}

SCORE_ROWS = 3000
TREND = frozenset({"trend"})
"""Left out of the comparison too: each run's report lists the windows judged before it (the single
pass's among the fan-out's)."""
pytestmark = [pytest.mark.slow, pytest.mark.twin]


@pytest.fixture(scope="module")
def table():  # type: ignore[no-untyped-def]
    return sklearn_table("diabetes")


def savedmodel_outputs(life: Life, version: int, x: np.ndarray, tmp: Path) -> np.ndarray:
    """What the trained SavedModel itself answers (its archive is verified against the manifest)."""
    import tensorflow as tf

    reg = life.registry()
    data = reg.read_artifact(reg.get_manifest(MODEL, version), "savedmodel")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp, filter="data")
    found = [p.parent for p in tmp.rglob("saved_model.pb")]
    assert len(found) == 1
    fn = tf.saved_model.load(str(found[0])).signatures["serving_default"]
    out = fn(tf.constant(x, dtype=tf.float32))
    return np.asarray(next(iter(out.values()))).reshape(len(x), -1)[:, -1]


def modelops(*args: str) -> Result:
    """The ``modelops`` CLI, in this process, in the environment ``modelops local env`` prints."""
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_the_whole_life(  # type: ignore[no-untyped-def]
    twin, twin_env, aws_cli, table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    life = Life(twin)
    # the directory `modelops local up` ran in: its state file names the twin for `modelops local tick`
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".modelops").mkdir()
    (tmp_path / ".modelops" / "local.json").write_text(json.dumps(twin.state()))
    life.subscribe_alerts("e2e-alerts")
    order = np.random.default_rng(7).permutation(len(table.y))
    bucket = life.data_bucket

    # Given a spec and a first dataset, uploaded with the real AWS CLI
    spec_file = tmp_path / "model.json"
    spec_file.write_text(json.dumps(SPEC))
    data_v1 = tmp_path / "v1.csv"
    # a third of the table: v2, on all of it, is then genuinely better (issue 14: the gate must see it
    # on the same rows beyond the noise; on 300 rows v2's gain was inside its interval, and it was kept)
    data_v1.write_bytes(table.csv_bytes(order[:150]))
    aws_cli("s3", "cp", str(spec_file), f"s3://{bucket}/datasets/{MODEL}/model.json")
    aws_cli("s3", "cp", str(data_v1), f"s3://{bucket}/datasets/{MODEL}/v1.csv")
    life.settle()

    # Then exactly one training job, and version 1 in production with verified artifacts
    assert len(life.jobs_started(MODEL)) == 1
    assert life.versions(MODEL) == [1]
    sizes = life.verify_artifacts(MODEL, 1)
    assert {"tflite", "tflite_int8", "savedmodel", "baseline"} <= sizes.keys()
    m1 = life.manifest(MODEL, 1)
    parity = m1.get("parity")["float32"]
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4 * float(
        np.abs(table.y).max()
    )  # float32 rounding
    metrics = m1.get("metrics")
    assert metrics["rmse"] < 0.9 * metrics["baseline_rmse"]  # clearly better than predicting the mean
    assert life.production(MODEL) == 1

    # The same bytes under another key start no second job
    aws_cli("s3", "cp", str(data_v1), f"s3://{bucket}/datasets/{MODEL}/v1-copy.csv")
    life.settle()
    assert len(life.jobs_started(MODEL)) == 1

    # Predictions over HTTP come from v1 and agree with the SavedModel
    rows = table.x[order[-20:]]
    answer = life.predict(MODEL, rows.tolist())
    assert answer["version"] == 1
    preds = np.asarray(answer["predictions"], dtype=np.float64).reshape(len(rows))
    np.testing.assert_allclose(
        preds, savedmodel_outputs(life, 1, rows, tmp_path / "sm1"), rtol=1e-5, atol=1e-4
    )
    assert "probabilities" not in answer

    # A second dataset (all rows): version 2, and the gate scores v1 and v2 itself on the same evaluation
    # rows the platform kept (both datasets' evaluation shares, deduplicated), with a bootstrap interval
    data_v2 = tmp_path / "v2.csv"
    data_v2.write_bytes(table.csv_bytes(order))
    aws_cli("s3", "cp", str(data_v2), f"s3://{bucket}/datasets/{MODEL}/v2.csv")
    life.settle()
    assert life.versions(MODEL) == [1, 2]
    life.verify_artifacts(MODEL, 2)
    gate = [h for h in life.history(MODEL) if h.get("kind") == "gate" and h.get("candidate") == 2]
    assert len(gate) == 1
    decision = gate[0]
    assert decision["source"] == "heldout" and decision["evaluation"]["rows"] >= 30, decision
    iv = decision["interval"]
    assert iv["resamples"] == 1000 and iv["lower"] <= decision["improvement"] <= iv["upper"], decision
    assert decision["candidate_value"] < decision["production_value"]  # rmse, on the same rows
    assert decision["policy"]["min_improvement"] == {"value": 0.0, "from": "stack"}
    assert (decision["decision"], decision["applied"], iv["lower"] > 0) == ("promote", True, True), decision
    expected = 2
    assert life.production(MODEL) == expected
    life.wait_serving(MODEL, expected, table.x[order[0]].tolist())

    # Traffic like the training data: the monitor sees no drift, the drift alarm stays quiet
    normal = table.x[order[:150]]
    life.send_traffic(MODEL, normal)
    life.wait_captured(150, model=MODEL)
    life.run_monitor()
    latest = json.loads(
        life.s3()
        .get_object(Bucket=life.registry_bucket, Key=f"monitoring/{MODEL}/latest.json")["Body"]
        .read()
    )
    assert latest["drift"] is False and latest["samples"] >= 150
    assert not [
        a for a in life.alerts() if a.attributes.get("kind") == "drift" and a.attributes.get("model") == MODEL
    ]

    # Traffic with one feature shifted: drift alarm, exactly one alert naming model, version, feature
    shifted = table.x[order[150:300]].copy()
    feature = "bmi"
    col = table.features.index(feature)
    shifted[:, col] += 3 * table.x[:, col].std()
    life.send_traffic(MODEL, shifted, batch=10)
    # every row predict answered has landed (the sample rate is 1): the fan-out below reads the same
    assert life.wait_captured(life.predicted_rows(MODEL), model=MODEL) == life.predicted_rows(MODEL)
    (single_pass,), _ = life.run_monitor()
    drift = [a for a in life.alerts() if a.attributes.get("kind") == "drift"]
    assert len(drift) == 1, [a.subject for a in drift]
    alert = drift[0]
    assert alert.attributes.get("model") == MODEL
    assert f"{MODEL} v{expected}" in alert.subject + alert.body
    assert feature in alert.body
    assert len(alert.subject) < 100

    # The monitor fanned out, as a user starts it: `modelops local tick MonitorStateMachine` runs the
    # template's Distributed Map (plan -> chunks -> reduce) over the same window of captures, and its
    # report is the single pass's: the same samples, the same PSI, KS and verdict for every feature
    assert single_pass.ok, single_pass.error_message
    single = [m for m in single_pass.result["models"] if m["model"] == MODEL]  # one entry per version
    single_report = life.monitor_report(single[0]["report"])  # now: a run in the same second rewrites it
    tick = json.loads(modelops("local", "tick", "MonitorStateMachine", "--json").stdout)
    (execution,) = tick["executions"]
    assert (execution["state_machine"], execution["status"]) == ("MonitorStateMachine", "SUCCEEDED"), (
        execution
    )
    ran = [(i["function"], i["outcome"]) for i in tick["invocations"]]
    assert {"MonitorPlanFunction", "MonitorChunkFunction", "MonitorReduceFunction"} <= {f for f, _ in ran}
    assert {o for _, o in ran} == {"ok"}, ran
    result = life.monitor_run(execution["execution"])
    assert result["complete"] is True
    fanned = [m for m in result["summary"]["models"] if m["model"] == MODEL]
    assert run_independent(fanned, TREND) == run_independent(single, TREND)
    # (what is compared holds both halves of the traffic, and the shift)
    (served,) = [m for m in fanned if m["version"] == expected]
    assert served["verdict"] == "drift" and served["drifted_features"] == [feature], served
    assert served["samples"] >= 300, served
    assert run_independent(life.monitor_report(fanned[0]["report"]), TREND) == run_independent(
        single_report, TREND
    )
    twin.wait_idle()

    # Batch scoring, as a user starts it: `modelops score NAME FILE.csv` uploads the file, the upload
    # starts ScoreStateMachine, and every row is scored by the production version as predict scores it
    rng = np.random.default_rng(11)
    pick = rng.integers(0, len(table.y), SCORE_ROWS)
    noise = rng.normal(1.0, 0.05, size=(SCORE_ROWS, len(table.features)))
    customers = Dataset(table.features, table.target, table.x[pick] * noise, table.y[pick])
    scoring_file = tmp_path / "customers.csv"
    scoring_file.write_bytes(customers.csv_bytes())
    started = json.loads(modelops("score", MODEL, str(scoring_file), "--json").stdout)
    life.settle()
    manifest = life.score_manifest(MODEL, started["run"])
    assert (manifest["status"], manifest["version"]) == ("completed", expected), manifest
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rejected"]) == (SCORE_ROWS, SCORE_ROWS, 0)
    assert manifest["input"]["sha256"] == hashlib.sha256(scoring_file.read_bytes()).hexdigest()
    assert manifest["failed_chunks"] == []
    header, scored = life.score_rows(manifest)
    assert header == ["row", "prediction"]
    assert [int(r[0]) for r in scored] == list(range(1, SCORE_ROWS + 1))
    sample = rng.choice(SCORE_ROWS, size=50, replace=False)
    answer = life.predict(MODEL, customers.x[sample].tolist())
    assert answer["version"] == expected
    np.testing.assert_array_equal(
        np.array([scored[i][1] for i in sample], dtype=np.float32),
        np.asarray(answer["predictions"], dtype=np.float32).reshape(len(sample)),
    )

    # The subscriber hears of the run once, and not again of the drift the fan-out judged again
    heard = [a for a in life.alerts() if a.attributes.get("model") == MODEL]
    assert [a.subject for a in heard] == [f"[INFO] ScoringCompleted: {MODEL} v{expected}"]
    assert f"rows_out: {SCORE_ROWS}\n" in heard[0].body and started["run"] in heard[0].body, heard[0].body
    twin.wait_idle()


def test_a_rejected_dataset_is_quarantined_alerted_and_trains_nothing(  # type: ignore[no-untyped-def]
    twin, aws_cli, table, tmp_path: Path
) -> None:
    life = Life(twin)
    life.subscribe_alerts("e2e-rejects")
    model = "rejects"
    spec_file = tmp_path / "model.json"
    spec = {**SPEC, "features": table.features, "training": {**SPEC["training"], "epochs": 2}}
    spec_file.write_text(json.dumps(spec))
    bad = table.csv_bytes(np.arange(60)).decode().splitlines()
    cells = bad[5].split(",")
    cells[2] = "twelve"
    bad[5] = ",".join(cells)
    data = tmp_path / "bad.csv"
    data.write_text("\n".join(bad) + "\n")
    jobs_before = len(twin.training.jobs)

    aws_cli("s3", "cp", str(spec_file), f"s3://{life.data_bucket}/datasets/{model}/model.json")
    aws_cli("s3", "cp", str(data), f"s3://{life.data_bucket}/datasets/{model}/bad.csv")
    life.settle()

    assert len(twin.training.jobs) == jobs_before
    keys = [
        o["Key"]
        for o in life.s3().list_objects_v2(Bucket=life.data_bucket, Prefix="quarantine/").get("Contents", [])
    ]
    assert any(k.endswith("reason.json") and f"/{model}/" in f"/{k}" for k in keys), keys
    reason = next(k for k in keys if k.endswith("reason.json") and model in k)
    doc = json.loads(life.s3().get_object(Bucket=life.data_bucket, Key=reason)["Body"].read())
    assert "twelve" in json.dumps(doc) or "numeric" in json.dumps(doc).lower()
    assert (
        life.s3().get_object(Bucket=life.data_bucket, Key=f"datasets/{model}/bad.csv")["Body"].read()
        == data.read_bytes()
    )
    rejected = [a for a in life.alerts() if model in a.subject]
    assert len(rejected) == 1 and "reject" in (rejected[0].subject + rejected[0].body).lower()
    assert not life.registry().model_exists(model)
    twin.wait_idle()
