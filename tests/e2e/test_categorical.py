"""Categorical features on the twin (issue 16): a table with two categorical columns and a known rule
(tests/categorical_data.py) is uploaded, trained, converted and promoted; predict answers strings over
HTTP (records and rows), an unknown category with the out-of-vocabulary bucket (200, counted in the
``OutOfVocabulary`` metric), and wrong types with 422."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from modelops.domain.encoding import InputSchema
from modelops_local.lifecycle import Life
from tests.categorical_data import SPEC_FEATURES, TARGET, rule, table

MODEL = "churn"
SPEC = {
    "task": "binary",
    "target": TARGET,
    "features": SPEC_FEATURES,
    "training": {
        "backend": "local",
        "epochs": 40,
        "batch_size": 32,
        "hidden_units": [16],
        "learning_rate": 0.02,
        "seed": 3,
    },
    "promotion": {"metric": "accuracy"},
}

pytestmark = [pytest.mark.slow, pytest.mark.twin]


def oov_lines(out: str) -> list[dict[str, Any]]:
    docs = []
    for line in out.splitlines():
        if '"OutOfVocabulary"' in line and line.startswith("{"):
            doc = json.loads(line)
            if doc.get("Model") == MODEL:
                docs.append(doc)
    return docs


def test_categorical_columns_train_serve_strings_and_count_unknown_values(
    twin: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    life = Life(twin)
    t = table(800, seed=5)

    # Given a spec declaring two categorical features and a dataset of 800 rows
    life.upload_spec(MODEL, SPEC)
    life.upload_dataset(MODEL, "v1.csv", t.csv_bytes())
    life.settle()

    # Then version 1 is trained, converted (parity on the index matrix) and in production
    assert life.versions(MODEL) == [1]
    assert life.production(MODEL) == 1
    m1 = life.manifest(MODEL, 1)
    schema = InputSchema.from_dict(m1.get("schema"))
    assert schema.names == ("age", "plan", "country")
    assert sorted(schema.feature("plan").vocabulary) == ["basic", "pro", "team"]
    assert m1.get("parity")["float32"]["passed"]
    metrics = m1.get("metrics")
    assert metrics["accuracy"] > metrics["baseline_accuracy"] + 0.12, metrics

    # The model page shows each feature's type and vocabulary
    status, page = life.http("GET", f"/models/{MODEL}")
    assert status == 200
    assert page["schema"]["features"][0] == {"name": "age", "type": "numeric", "dtype": "float32"}
    assert page["schema"]["features"][2]["type"] == "categorical"
    assert sorted(page["schema"]["features"][2]["vocabulary"]) == ["de", "es", "fr", "it", "nl"]

    # Predict with strings, as records and as rows: the same answers, and they follow the rule
    fresh = table(60, seed=99, flip=0.0)
    records = [{"country": c, "plan": p, "age": a} for a, p, c in fresh.rows]
    by_record = life.predict(MODEL, records)
    by_row = life.predict(MODEL, [[a, p, c] for a, p, c in fresh.rows])
    assert by_record["version"] == 1 and by_record["probabilities"] == by_row["probabilities"]
    expected = [rule(a, p, c) for a, p, c in fresh.rows]
    assert np.mean(np.asarray(by_record["predictions"]) == np.asarray(expected)) >= 0.85

    # An unknown category is answered (the OOV bucket) and counted
    capsys.readouterr()
    answer = life.predict(MODEL, [[30, "enterprise", "de"]])  # a row: unknown plan
    assert answer["version"] == 1 and len(answer["predictions"]) == 1
    records = [{"age": 50, "plan": "team", "country": "jp"}, {"age": 50, "plan": " team ", "country": "de"}]
    assert len(life.predict(MODEL, records)["predictions"]) == 2  # records: unknown country once
    twin.wait_idle()
    lines = oov_lines(capsys.readouterr().out)
    assert sorted((d["Feature"], d["OutOfVocabulary"][0]) for d in lines) == [("country", 1.0), ("plan", 1.0)]
    assert all(d["Version"] == "1" for d in lines)

    # Wrong types are 422, naming the row and the feature
    for instances, text in (
        ([[30, 2, "de"]], "instances[0][1] ('plan') is a number; expected a category"),
        (
            [{"age": "thirty", "plan": "pro", "country": "de"}],
            "instances[0].age is a string; expected a number",
        ),
        ([[30, "pro", "x" * 10_240]], "characters long"),
        ([[30, "pro", " "]], "is missing"),
    ):
        status, doc = life.http("POST", f"/models/{MODEL}/predict", {"instances": instances})
        assert (status, doc["error"]["code"]) == (422, "invalid_instances"), doc
        assert text in doc["error"]["message"]

    # A second dataset trains on production's schema (the same vocabularies, by name), and the gate
    # scores both versions on the platform's evaluation rows, category strings encoded by each
    more = table(900, seed=6)
    life.upload_dataset(MODEL, "v2.csv", more.csv_bytes())
    life.settle()
    assert life.versions(MODEL) == [1, 2]
    assert life.manifest(MODEL, 2).get("schema")["features"] == schema.to_list()
    [decision] = [h for h in life.history(MODEL) if h.get("kind") == "gate" and h.get("candidate") == 2]
    assert decision["source"] == "heldout" and decision["evaluation"]["rows"] >= 100, decision
    assert decision["evaluation"]["unusable"] == 0
    assert decision["candidate_value"] > 0.85 and decision["production_value"] > 0.85, decision

    # Traffic like the training data reaches the monitor: its report shows the categorical features
    # (shares over the vocabulary plus the OOV bucket, the new-category rate) beside the numeric one
    served = life.production(MODEL)
    life.wait_serving(MODEL, served, [30, "pro", "de"])
    normal = table(240, seed=11, flip=0.0)
    before = life.captured_rows(MODEL)
    for start in range(0, 240, 20):
        life.predict(MODEL, [[a, p, c] for a, p, c in normal.rows[start : start + 20]])
    life.wait_captured(before + 240, model=MODEL)
    life.run_monitor()
    s3 = life.s3()
    latest = json.loads(
        s3.get_object(Bucket=life.registry_bucket, Key=f"monitoring/{MODEL}/latest.json")["Body"].read()
    )
    key = latest["report"].removeprefix(f"s3://{life.registry_bucket}/")
    report = json.loads(s3.get_object(Bucket=life.registry_bucket, Key=key)["Body"].read())
    [judged] = [r for r in report["versions"] if r["version"] == served]
    feats = {f["name"]: f for f in judged["features"]}
    assert feats["plan"]["type"] == feats["country"]["type"] == "categorical"
    assert "type" not in feats["age"] and feats["age"]["ks"] is not None
    # like the training rows: no drift; the three unknown values sent above are a small OOV share
    assert (
        feats["plan"]["psi"] < judged["psi_threshold"] and feats["country"]["psi"] < judged["psi_threshold"]
    )
    assert feats["plan"]["new_category_rate"] < 0.05, feats["plan"]
    html = (
        s3.get_object(Bucket=life.registry_bucket, Key=key.replace(".json", ".html"))["Body"].read().decode()
    )
    assert "country" in html and "(new / missing)" in html
