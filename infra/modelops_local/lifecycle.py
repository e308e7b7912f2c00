"""The whole life of a model on the twin, step by step, with real clients only.

boto3 against the twin's AWS endpoint and HTTP against its API, as a user in another shell would.
`make demo` (modelops_local.demo) narrates these steps on scikit-learn's diabetes table; the e2e
test (tests/e2e) runs them on another table and asserts each one.
"""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelops.storage.registry import Manifest, Registry
from modelops_local.twin import Twin


@dataclass
class Dataset:
    """A table: feature names, target name, rows (features) and targets."""

    features: list[str]
    target: str
    x: np.ndarray
    y: np.ndarray

    def csv_bytes(self, rows: slice | np.ndarray | None = None) -> bytes:
        sel = slice(None) if rows is None else rows
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([*self.features, self.target])
        for xr, yr in zip(self.x[sel], self.y[sel], strict=True):
            w.writerow([*(repr(float(v)) for v in xr), repr(float(yr))])
        return buf.getvalue().encode()


def sklearn_table(name: str) -> Dataset:
    """A table that scikit-learn ships inside its package (no download)."""
    from sklearn import datasets

    loader = {
        "diabetes": datasets.load_diabetes,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
    }[name]
    d = loader()
    names = [str(n).replace(" ", "_") for n in d.feature_names]
    target = "progression" if name == "diabetes" else "label"
    return Dataset(
        names, target, np.asarray(d.data, dtype=np.float64), np.asarray(d.target, dtype=np.float64)
    )


@dataclass
class AlertMessage:
    subject: str
    body: str
    attributes: dict[str, str]


@dataclass
class Life:
    """Drives the twin the way a user would. ``say`` narrates (print for the demo)."""

    twin: Twin
    say: Callable[[str], None] = field(default=lambda _m: None)
    _alert_queue: str | None = None
    _predicted: dict[str, int] = field(default_factory=dict)  # rows predict answered, per model

    # ------------------------------------------------------------------ clients
    @property
    def data_bucket(self) -> str:
        return str(self.twin.outputs["DataBucketName"])

    @property
    def registry_bucket(self) -> str:
        return str(self.twin.outputs["RegistryBucketName"])

    def s3(self) -> Any:
        return self.twin.client("s3")

    def registry(self) -> Registry:
        return Registry(self.s3(), self.registry_bucket, actor="demo")

    # ------------------------------------------------------------------ data in
    def upload_spec(self, model: str, spec: dict[str, Any]) -> None:
        self.s3().put_object(
            Bucket=self.data_bucket, Key=f"datasets/{model}/model.json", Body=json.dumps(spec).encode()
        )
        self.say(f"uploaded the model spec   s3://{self.data_bucket}/datasets/{model}/model.json")

    def upload_dataset(self, model: str, name: str, body: bytes) -> str:
        key = f"datasets/{model}/{name}"
        self.s3().put_object(Bucket=self.data_bucket, Key=key, Body=body)
        self.say(f"uploaded a dataset        s3://{self.data_bucket}/{key} ({body.count(b'\n') - 1} rows)")
        return key

    def settle(self, timeout: float = 300.0) -> None:
        """Wait until every event the upload caused has been handled (training and convert included)."""
        self.twin.wait_idle(timeout)

    def jobs_started(self, model: str) -> list[str]:
        return [name for name, job in self.twin.training.jobs.items() if f"-{model}-" in name]

    # ------------------------------------------------------------------ registry
    def versions(self, model: str) -> list[int]:
        return self.registry().list_versions(model)

    def manifest(self, model: str, version: int) -> Manifest:
        return self.registry().get_manifest(model, version)

    def production(self, model: str) -> int:
        return self.registry().resolve(model, "production")

    def verify_artifacts(self, model: str, version: int) -> dict[str, int]:
        """Download every artifact of the version and check it against the manifest (raises if not)."""
        reg = self.registry()
        m = reg.get_manifest(model, version)
        return {role: len(reg.read_artifact(m, role)) for role in m.artifacts}

    def history(self, model: str) -> list[dict[str, Any]]:
        return self.registry().history(model, "production")

    # ------------------------------------------------------------------ predict over HTTP
    def http(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(
            self.twin.api_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def predict(self, model: str, instances: Sequence[Any]) -> dict[str, Any]:
        status, doc = self.http("POST", f"/models/{model}/predict", {"instances": list(instances)})
        if status != 200:
            raise RuntimeError(f"predict answered {status}: {doc}")
        self._predicted[model] = self._predicted.get(model, 0) + len(instances)
        return dict(doc)

    def predicted_rows(self, model: str) -> int:
        """Rows predict has answered for ``model`` through :meth:`predict` (this Life's calls, wait_serving's
        probes included): what ``wait_captured`` waits for when every row is captured."""
        return self._predicted.get(model, 0)

    def wait_serving(self, model: str, version: int, probe: Sequence[Any], timeout: float = 60.0) -> float:
        """Call predict until ``version`` answers (the alias cache's TTL); returns the seconds it took."""
        started = time.monotonic()
        while (got := self.predict(model, [list(probe)])["version"]) != version:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{model} still answers with v{got} after {timeout:.0f} s")
            time.sleep(0.25)
        return time.monotonic() - started

    def send_traffic(self, model: str, rows: np.ndarray, batch: int = 1) -> int:
        """Call predict for every row (``batch`` rows a request); returns the number of requests."""
        n = 0
        for start in range(0, len(rows), batch):
            self.predict(model, rows[start : start + batch].tolist())
            n += 1
        return n

    def captured_rows(self, model: str | None = None) -> int:
        """Rows captured so far under captures/ (Firehose delivers each predict call's record), of
        ``model`` only when given (other models' traffic on the same twin does not count)."""
        from modelops.domain.capture import CaptureFormatError, decode_line, iter_lines

        s3 = self.s3()
        total = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.data_bucket, Prefix="captures/"):
            for obj in page.get("Contents", []):
                for line in iter_lines(s3.get_object(Bucket=self.data_bucket, Key=obj["Key"])["Body"].read()):
                    try:
                        record = decode_line(line)
                    except CaptureFormatError:
                        continue
                    if model is None or record.model == model:
                        total += record.x.shape[0]
        return total

    def wait_captured(self, rows: int, timeout: float = 60.0, model: str | None = None) -> int:
        """Wait until at least ``rows`` rows (of ``model``, when given) have landed in captures/
        (capture is asynchronous)."""
        deadline = time.monotonic() + timeout
        while (got := self.captured_rows(model)) < rows:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {got} of {rows} captured rows landed in {timeout:.0f} s")
            time.sleep(0.2)
        return got

    # ------------------------------------------------------------------ monitor and alerts
    def subscribe_alerts(self, queue_name: str = "demo-alerts") -> str:
        """An SQS queue subscribed to AlertsTopic, as a user's own subscriber would be."""
        sqs = self.twin.client("sqs")
        url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.twin.client("sns").subscribe(
            TopicArn=self.twin.outputs["AlertsTopicArn"], Protocol="sqs", Endpoint=arn
        )
        self._alert_queue = url
        return url

    def run_monitor(self) -> list[Any]:
        """The hourly schedule, now; then the alarm evaluation CloudWatch would do, then its effects."""
        results = self.twin.tick("MonitorFunction")
        self.settle(120)
        transitions = self.twin.evaluate_alarms()
        self.settle(120)
        return [results, transitions]

    def monitor_report(self, uri: str) -> dict[str, Any]:
        """The ``report.json`` a monitor run names in its summary (``models[].report``, an s3:// URI of
        the registry bucket): the single pass's and the fan-out's alike."""
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if bucket != self.registry_bucket or not key.endswith("/report.json"):
            raise ValueError(f"{uri!r} is not a report of the registry bucket")
        return dict(json.loads(self.s3().get_object(Bucket=bucket, Key=key)["Body"].read()))

    def monitor_run(self, run: str) -> dict[str, Any]:
        """``monitor-runs/{run}/result.json``: what the monitor fan-out's execution ``run`` decided
        (``complete``, and its ``summary``, the single pass's summary of the same window)."""
        obj = self.s3().get_object(Bucket=self.registry_bucket, Key=f"monitor-runs/{run}/result.json")
        return dict(json.loads(obj["Body"].read()))

    # ------------------------------------------------------------------ batch scoring
    def score_manifest(self, model: str, run: str) -> dict[str, Any]:
        """The manifest of scoring run ``run`` of ``model`` (``scores/{model}/{version}/{run}/``,
        whichever version it pinned); raises when the run wrote none (yet)."""
        s3 = self.s3()
        found = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.data_bucket, Prefix=f"scores/{model}/"
            )
            for o in page.get("Contents", [])
            if o["Key"].endswith(f"/{run}/manifest.json")
        ]
        if len(found) != 1:
            raise LookupError(f"scoring run {run} of {model} has {len(found)} manifests: {found}")
        return dict(json.loads(s3.get_object(Bucket=self.data_bucket, Key=found[0])["Body"].read()))

    def score_rows(self, manifest: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
        """A scoring run's parts read back in order: their header and every scored row (``row`` first)."""
        header: list[str] = []
        rows: list[list[str]] = []
        for key in manifest["parts"]:
            body = self.s3().get_object(Bucket=self.data_bucket, Key=key)["Body"].read().decode()
            lines = list(csv.reader(io.StringIO(body)))
            header, rows = lines[0], rows + lines[1:]
        return header, rows

    def alerts(self, wait_seconds: int = 1) -> list[AlertMessage]:
        assert self._alert_queue, "subscribe_alerts() first"
        sqs = self.twin.client("sqs")
        out: list[AlertMessage] = []
        while True:
            msgs = sqs.receive_message(
                QueueUrl=self._alert_queue,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=wait_seconds,
                MessageAttributeNames=["All"],
            )
            batch = msgs.get("Messages", [])
            if not batch:
                return out
            for m in batch:
                env = json.loads(m["Body"])
                attrs = {k: v.get("Value", "") for k, v in env.get("MessageAttributes", {}).items()}
                out.append(AlertMessage(env.get("Subject", ""), env.get("Message", ""), attrs))
                sqs.delete_message(QueueUrl=self._alert_queue, ReceiptHandle=m["ReceiptHandle"])
            wait_seconds = 0
