"""Issue 10's "done when" on the local twin: a spec with a small search (4 trials, 2 in parallel) trains,
the best trial is published as one version, and its manifest lists all four trials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelops.storage.registry import Registry
from tests.unit.test_trainer import diabetes

pytestmark = [pytest.mark.twin, pytest.mark.slow]


def test_a_search_spec_on_the_twin_publishes_the_best_trial_as_one_version(twin: Any, tmp_path: Path) -> None:
    # Given a spec with a 4-trial Bayesian search, 2 trials at a time, uploaded before its dataset
    s3 = twin.client("s3")
    data, registry = twin.outputs["DataBucketName"], twin.outputs["RegistryBucketName"]
    spec = {
        "task": "regression",
        "target": "target",
        "training": {
            "epochs": 8,
            "hidden_units": [16],
            "learning_rate": 0.02,
            "seed": 3,
            "early_stopping_patience": 3,
            "search": {
                "max_trials": 4,
                "max_parallel": 2,
                "strategy": "bayesian",
                "seed": 5,
                "learning_rate": {"min": 0.003, "max": 0.05},
                "hidden_units": [[8], [16, 8]],
                "batch_size": [16, 64],
            },
        },
    }
    s3.put_object(Bucket=data, Key="datasets/search-demo/model.json", Body=json.dumps(spec).encode())

    # When the dataset lands and the twin runs the pipeline (train_trigger, the training job, convert)
    s3.put_object(Bucket=data, Key="datasets/search-demo/train.csv", Body=diabetes(tmp_path / "d.csv"))
    twin.wait_idle(timeout=300)

    # Then one version, the best trial's, whose manifest lists the four trials
    reg = Registry(s3, registry)
    assert reg.list_versions("search-demo") == [1]
    manifest = reg.get_manifest("search-demo", 1)
    search = manifest.get("search")
    assert [t["number"] for t in search["trials"]] == [0, 1, 2, 3]
    assert (search["strategy"], search["mode"], search["parallel"]) == ("bayesian", "in_job", 2)
    complete = [t for t in search["trials"] if t["state"] == "complete"]
    best = min(complete, key=lambda t: t["value"])
    assert search["best_trial"] == best["number"]
    assert manifest.get("training")["record"]["trial"]["params"] == best["params"]
    assert reg.resolve("search-demo") == 1
    [job_record] = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=registry, Prefix="jobs/modelops-search-demo-")["Contents"]
        if not o["Key"].endswith((".started.json", ".artifact.json"))
    ]
    record = json.loads(s3.get_object(Bucket=registry, Key=job_record)["Body"].read())
    assert record["search"]["mode"] == "in_job" and record["backend"] == "local"
