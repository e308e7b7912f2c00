"""Batch scoring on the twin (issue 20, item 2; docs/scoring.md): ScoreStateMachine from
statemachines/score.asl.json, run by moto's interpreter with the score functions in-process.

Done when: a scoring run over a 200,000-row CSV produces exactly 200,000 scores equal to predict's
answers for the same rows (a sample through the twin's HTTP predict, every row against
``modelops.inference`` run here), bad rows go to rejects with their reason, and a model with no
production version is ScoringFailed with nothing under scores/.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any

import numpy as np
import pytest
import requests

from modelops.inference import LoadedModel, litert_interpreter, model_info, predict_rows
from modelops.storage.registry import Registry
from modelops_local.twin import Twin
from tests.integration.predict_support import FEATURES, models, publish

pytestmark = pytest.mark.twin

ROWS = 200_000


def _registry(twin: Twin) -> Registry:
    return Registry(twin.client("s3"), twin.outputs["RegistryBucketName"])


def _upload(twin: Twin, model: str, name: str, body: bytes) -> tuple[str, str]:
    key = f"datasets/{model}/score/{name}"
    out = twin.client("s3").put_object(Bucket=twin.outputs["DataBucketName"], Key=key, Body=body)
    return key, out["VersionId"]


def _get(twin: Twin, key: str) -> bytes:
    return twin.client("s3").get_object(Bucket=twin.outputs["DataBucketName"], Key=key)["Body"].read()


def _keys(twin: Twin, prefix: str) -> list[str]:
    s3 = twin.client("s3")
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=twin.outputs["DataBucketName"], Prefix=prefix
    ):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def _alerts(twin: Twin, model: str) -> list[dict[str, Any]]:
    """The alerts published for ``model`` (the stage bus's rule -> AlertFunction -> SNS)."""
    twin.wait_idle(60)
    return [
        a
        for inv in twin.invocations_of("AlertFunction")
        if inv.ok and isinstance(inv.result, dict)
        for a in inv.result.get("alerts", [])
        if a.get("model") == model and a.get("status") == "published"
    ]


def _csv(x: np.ndarray) -> bytes:
    buf = io.StringIO()
    buf.write("id," + ",".join(FEATURES) + "\n")
    ids = np.arange(x.shape[0])
    np.savetxt(buf, np.column_stack([ids, x]), fmt=["%d"] + ["%.6g"] * x.shape[1], delimiter=",")
    return buf.getvalue().encode()


def _run_of(twin: Twin, key: str, version_id: str) -> Any:
    """The execution an upload started (DataBucket -> EventBridge -> ScoreStartFunction ->
    StartExecution, named after the key and its object version), once the twin is idle."""
    from modelops.stages.score import run_name

    twin.wait_idle(300)
    name = run_name(key, version_id)
    runs = [ex for ex in twin.executions if ex.state_machine.endswith("ScoreStateMachine") or ex.name == name]
    mine = [ex for ex in runs if ex.name == name]
    assert len(mine) == 1, [ex.name for ex in runs]
    return mine[0]


def _read_parts(twin: Twin, manifest: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    rows: list[list[str]] = []
    header: list[str] = []
    for key in manifest["parts"]:
        lines = list(csv.reader(io.StringIO(_get(twin, key).decode())))
        header = lines[0]
        rows += lines[1:]
    return header, rows


def test_two_hundred_thousand_rows_score_exactly_as_predict_answers(twin: Twin, tmp_path: Any) -> None:
    # Given a published multiclass model and a 200,000-row CSV of its features (and an id column)
    model = "scoring-mc"
    built = models()["multiclass"]
    manifest = publish(_registry(twin), model, built)
    rng = np.random.default_rng(20)
    x = rng.normal(3.0, 1.5, size=(ROWS, len(FEATURES))).astype(np.float32)
    body = _csv(x)

    # When it is uploaded under datasets/{model}/score/: the upload starts the scoring machine
    # (DataBucket -> EventBridge -> ScoreStartFunction), in chunks of 20,000 rows: 10 map children
    key, version_id = _upload(twin, model, "customers.csv", body)
    ex = _run_of(twin, key, version_id)

    # Then exactly 200,000 scores, in 10 parts, and a manifest that says so
    assert ex.ok, ex.summary()
    assert ex.output is not None
    out = json.loads(ex.output) if isinstance(ex.output, str) else ex.output
    assert out["ok"] is True and out["rows_out"] == ROWS and out["rejected"] == 0
    run_prefix = f"scores/{model}/{manifest.version}/{ex.name}/"
    doc = json.loads(_get(twin, run_prefix + "manifest.json"))
    assert (doc["rows_in"], doc["rows_out"], doc["rejected"], doc["chunks"]) == (ROWS, ROWS, 0, 10)
    assert doc["version"] == manifest.version and doc["status"] == "completed"
    assert doc["input"]["version_id"] == version_id
    assert doc["input"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert doc["failed_chunks"] == []
    header, rows = _read_parts(twin, doc)
    labels = built.classes
    assert header == ["row", "prediction", *(f"probability_{c}" for c in labels)]
    assert [int(r[0]) for r in rows] == list(range(1, ROWS + 1))

    # every row equals modelops.inference run here on the same parsed values (float32 exactly)
    parsed = np.array([[float(v) for v in line.split(",")[1:]] for line in body.decode().splitlines()[1:]])
    info = model_info(_registry(twin).get_manifest(model, manifest.version))
    loaded = LoadedModel(info, built.path, litert_interpreter)
    y = predict_rows(loaded, parsed.astype(np.float32))
    got = np.array([[float(v) for v in r[2:]] for r in rows], dtype=np.float32)
    np.testing.assert_array_equal(got, y)
    assert [r[1] for r in rows] == [labels[i] for i in y.argmax(axis=1)]

    # and a sample of 2,000 rows equals predict's answers over the twin's HTTP API
    sample = rng.choice(ROWS, size=2000, replace=False)
    url = f"{twin.api_url}/models/{model}/predict"
    headers = {"x-api-key": twin.api_key} if twin.api_key else {}
    for batch in np.array_split(sample, 4):
        instances = parsed[batch].tolist()
        answer = requests.post(url, json={"instances": instances}, headers=headers, timeout=30).json()
        assert answer["version"] == manifest.version
        assert answer["predictions"] == [rows[i][1] for i in batch]
        want = np.array(answer["probabilities"], dtype=np.float32)
        np.testing.assert_array_equal(got[batch], want)
    assert any(a["subject"].startswith("[INFO] ScoringCompleted: scoring-mc") for a in _alerts(twin, model))


def test_bad_rows_go_to_rejects_with_their_reason_and_the_rest_is_scored(twin: Twin) -> None:
    # Given a model and a file with five bad rows among good ones
    model = "scoring-bad"
    built = models()["binary"]
    manifest = publish(_registry(twin), model, built)
    lines = ["sepal_length,sepal_width,petal_length,petal_width"]
    for i in range(1, 301):
        lines.append(f"{i % 7}.5,{i % 3}.25,1.5,0.{i % 9}")
    lines[10] = "1,2,three,4"  # row 10: not a number
    lines[20] = "1,2,3"  # row 20: three fields
    lines[30] = "1,,3,4"  # row 30: missing
    lines[40] = "1,2,3,1e40"  # row 40: beyond float32
    lines[50] = ""  # row 50: empty
    key, version_id = _upload(twin, model, "bad.csv", ("\n".join(lines) + "\n").encode())
    assert _run_of(twin, key, version_id).ok  # the upload's own run (one chunk)

    # When it is scored again in chunks of 100 rows
    ex = twin.start_execution(
        "ScoreStateMachine",
        {"bucket": twin.outputs["DataBucketName"], "key": key, "version_id": version_id, "chunk_rows": 100},
        name="bad-run",
        timeout=120,
    )

    # Then the bad rows are listed with their reasons and the other 295 rows are scored
    assert ex.ok, ex.summary()
    doc = json.loads(_get(twin, f"scores/{model}/{manifest.version}/bad-run/manifest.json"))
    assert (doc["rows_in"], doc["rows_out"], doc["rejected"], doc["chunks"]) == (300, 295, 5, 3)
    rejects = []
    for k in doc["rejects"]:
        rejects += list(csv.reader(io.StringIO(_get(twin, k).decode())))[1:]
    reasons = {int(r): why for r, why in rejects}
    assert sorted(reasons) == [10, 20, 30, 40, 50]
    assert "sepal_width" not in reasons[10] and "petal_length is 'three'" in reasons[10]
    assert "has 3 fields" in reasons[20]
    assert "sepal_width is missing" in reasons[30]
    assert "petal_width is not a finite float32" in reasons[40]
    assert reasons[50] == "empty row"
    _, rows = _read_parts(twin, doc)
    assert len(rows) == 295 and not {10, 20, 30, 40, 50} & {int(r[0]) for r in rows}


def test_a_model_without_a_production_version_is_scoring_failed_and_writes_no_scores(twin: Twin) -> None:
    # Given a model with a version that was never promoted
    model = "scoring-unpromoted"
    publish(_registry(twin), model, models()["binary"], promote=False)
    key, version_id = _upload(
        twin, model, "x.csv", b"sepal_length,sepal_width,petal_length,petal_width\n1,2,3,4\n"
    )

    # When its upload starts a scoring run
    ex = _run_of(twin, key, version_id)

    # Then it fails with the reason, publishes ScoringFailed, and nothing is under scores/
    assert ex.status == "FAILED" and ex.error == "ScoringFailed"
    assert _keys(twin, f"scores/{model}/") == []
    outcome = json.loads(
        twin.client("s3")
        .get_object(Bucket=twin.outputs["RegistryBucketName"], Key=f"score-runs/{ex.name}/result.json")[
            "Body"
        ]
        .read()
    )
    assert outcome["ok"] is False and "has no production version" in outcome["reason"]
    subjects = [a["subject"] for a in _alerts(twin, model)]
    assert any(
        s.startswith("[WARNING] ScoringFailed: scoring-unpromoted") and "has no production" in s
        for s in subjects
    )
