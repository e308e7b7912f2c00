"""A dataset of many parts on the twin (docs/training.md "Datasets of many parts"): 8 part files and a
``_SUCCESS`` marker train exactly one version through DatasetStateMachine (moto's States Language
interpreter, its Lambda tasks in this process); one bad part rejects the whole dataset naming that
part and trains nothing; parts without a marker start nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np
import pytest

from modelops_local.lifecycle import Life, sklearn_table
from modelops_local.twin import Twin

pytestmark = pytest.mark.twin

PARTS = 8
ROWS = 30
SPEC = {
    "task": "regression",
    "target": "progression",
    "training": {"backend": "local", "epochs": 3, "hidden_units": [8], "seed": 1},
}


@pytest.fixture(scope="module")
def parts() -> list[bytes]:
    table = sklearn_table("diabetes")
    return [table.csv_bytes(np.arange(i * ROWS, (i + 1) * ROWS)) for i in range(PARTS)]


def upload_parts(life: Life, model: str, folder: str, bodies: list[bytes]) -> list[str]:
    return [life.upload_dataset(model, f"{folder}/part-{i:05d}.csv", b) for i, b in enumerate(bodies)]


def executions(twin: Twin, since: int) -> list[Any]:
    return [e for e in twin.executions if e.state_machine == "DatasetStateMachine"][since:]


def rejected_events(twin: Twin, model: str) -> list[dict[str, Any]]:
    found = []
    for inv in twin.invocations_of("DatasetReduceFunction"):
        if inv.result and inv.result.get("model") == model:
            found.append(inv.result)
    return found


def test_parts_without_a_marker_start_nothing(twin: Twin, parts: list[bytes]) -> None:
    life = Life(twin)
    model = f"parts{uuid.uuid4().hex[:8]}"
    life.upload_spec(model, SPEC)
    before, runs = twin.mark(), len(executions(twin, 0))

    keys = upload_parts(life, model, "2025-01-01", parts)
    life.settle()

    answered = [i for i in twin.invocations_of("TrainTriggerFunction", since=before) if i.ok]
    statuses = [r["status"] for i in answered for r in i.result["results"]]
    assert len(statuses) == PARTS and set(statuses) == {"ignored"}
    assert len(executions(twin, 0)) == runs
    assert life.jobs_started(model) == [] and life.versions(model) == []
    assert len(keys) == PARTS


def test_eight_parts_and_a_marker_train_exactly_one_version(twin: Twin, parts: list[bytes]) -> None:
    life = Life(twin)
    model = f"parts{uuid.uuid4().hex[:8]}"
    life.upload_spec(model, SPEC)
    upload_parts(life, model, "2025-01-01", parts)
    life.settle()
    runs = len(executions(twin, 0))

    # When the folder's marker arrives (twice: a replayed record starts nothing new)
    life.upload_dataset(model, "2025-01-01/_SUCCESS", b"")
    life.settle()
    life.upload_dataset(model, "2025-01-01/_SUCCESS", b"")
    life.settle()

    # Then one execution validated the 8 parts in 8 map children and one job trained one version; the
    # second marker (a new object version) validated again and found the job started
    ex, again = executions(twin, runs)
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert ex.output["status"] == "started", ex.output
    assert again.status == "SUCCEEDED" and again.output["status"] == "duplicate"
    assert again.output["job"] == ex.output["job"]
    children = [i for i in ex.invocations if i.function == "DatasetPartFunction"]
    assert len(children) == PARTS and all(i.ok for i in children)
    assert len(life.jobs_started(model)) == 1
    assert life.versions(model) == [1]
    (job,) = life.jobs_started(model)
    record = json.loads(
        life.s3().get_object(Bucket=life.registry_bucket, Key=f"jobs/{job}.json")["Body"].read()
    )
    assert record["dataset"]["folder"] == f"datasets/{model}/2025-01-01/"
    assert record["dataset"]["parts"] == PARTS and record["dataset"]["rows"] == PARTS * ROWS
    split = record["split"]
    assert split["train"]["key"] == f"inputs/{model}/{job}/train/" and split["train"]["parts"] == PARTS
    assert split["train"]["rows"] + split["evaluation"]["rows"] == PARTS * ROWS
    listed = life.s3().list_objects_v2(Bucket=life.registry_bucket, Prefix=split["train"]["key"])
    assert len(listed["Contents"]) == PARTS


def test_one_bad_part_rejects_the_whole_dataset_naming_it(twin: Twin, parts: list[bytes]) -> None:
    life = Life(twin)
    model = f"parts{uuid.uuid4().hex[:8]}"
    life.upload_spec(model, SPEC)
    bad = parts[5].decode().split("\n")
    cells = bad[3].split(",")
    cells[1] = "oops"  # a stray word in a numeric column
    bad[3] = ",".join(cells)
    bodies = [*parts[:5], "\n".join(bad).encode(), *parts[6:]]
    upload_parts(life, model, "broken", bodies)
    life.upload_dataset(model, "broken/_SUCCESS", b"")
    life.settle()

    (outcome,) = rejected_events(twin, model)
    bad_key = f"datasets/{model}/broken/part-00005.csv"
    assert outcome["status"] == "rejected" and outcome["code"] == "non_numeric"
    assert f"part {bad_key}" in outcome["reason"] and "'oops'" in outcome["reason"]
    assert outcome["field"] == bad_key
    assert life.jobs_started(model) == [] and life.versions(model) == []
    # quarantined: the marker and the bad part, each beside its reason
    listed = life.s3().list_objects_v2(Bucket=life.data_bucket, Prefix=f"quarantine/{model}/broken/")
    found = {o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", [])}
    assert {"_SUCCESS", "part-00005.csv", "reason.json"} <= found
    assert "part-00004.csv" not in found
