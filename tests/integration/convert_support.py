"""Helpers shared by the convert tests (no TensorFlow here): events, job records, tarballs (the event
bus is the shared ``bus`` fixture, ``tests.fakes.FakeBus``)."""

from __future__ import annotations

import copy
import io
import json
import tarfile
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parents[2] / "events"
BUCKET = "registry"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def sagemaker_event(job: str, status: str = "Completed", reason: str | None = None) -> dict[str, Any]:
    ev = copy.deepcopy(load_event("sagemaker_training_completed.json"))
    ev["detail"]["TrainingJobName"] = job
    ev["detail"]["TrainingJobStatus"] = status
    model = job.split("-")[1] if job.count("-") >= 2 else "demo"
    ev["detail"]["ModelArtifacts"]["S3ModelArtifacts"] = (
        f"s3://{BUCKET}/staging/{model}/{job}/output/model.tar.gz"
    )
    if reason is not None:
        ev["detail"]["FailureReason"] = reason
    return ev


def spec(task: str = "regression", **sections: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"task": task, "target": "y", "features": ["a", "b", "c"]}
    doc.update(sections)
    return doc


def put_job_record(s3: Any, job: str, model: str = "demo", spec_doc: Any = None, **extra: Any) -> None:
    record = {
        "job": job,
        "model": model,
        "backend": "sagemaker",
        "dataset": {
            "uri": f"s3://data/datasets/{model}/train.csv",
            "bucket": "data",
            "key": f"datasets/{model}/train.csv",
            "version_id": "v1",
            "sha256": "ab" * 32,
            "rows": 256,
        },
        "spec": spec() if spec_doc is None else spec_doc,
        "spec_sha256": "cd" * 32,
        "created_at": "2025-01-01T11:00:00Z",
        "staging_prefix": f"staging/{model}/{job}/",
        **extra,
    }
    s3.put_object(Bucket=BUCKET, Key=f"jobs/{job}.json", Body=json.dumps(record).encode())


def artifact_key(model: str, job: str) -> str:
    return f"staging/{model}/{job}/output/model.tar.gz"


def targz(files: dict[str, bytes]) -> bytes:
    """A tar.gz of in-memory files (name -> bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def targz_dir(root: Path) -> bytes:
    """A model dir tarred the way SageMaker does (members relative to the dir)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(root.iterdir()):
            tar.add(path, arcname=path.name)
    return buf.getvalue()


def registry_keys(s3: Any, prefix: str = "models/") -> list[str]:
    page = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in page.get("Contents", []))


def stage_event(detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    """A stage event as EventBridge delivers it to a rule's target."""
    return {"source": "modelops", "detail-type": detail_type, "detail": detail}


def gate_last_published(registry: Any, bus: Any) -> Any:
    """What the gate function does in the stack when convert's last ``ModelVersionPublished`` reaches it
    (EventBridge rule -> GateFunction): the gate stage's result. Its events go to the same ``bus``."""
    from modelops.stages import gate

    deps = gate.Deps(registry=registry, bus=bus)
    return gate.handle_event(stage_event("ModelVersionPublished", bus.of("ModelVersionPublished")[-1]), deps)
