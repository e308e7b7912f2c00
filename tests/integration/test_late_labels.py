"""Late labels (moto, an injected clock): labels uploaded days after the predictions change that day's
quality figure on the next monitor run; bad labels are counted, never fatal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from modelops.domain import report as reports
from modelops.stages import monitor
from modelops.storage.s3 import ObjectStore
from modelops.storage.settings import SettingsStore
from tests.integration import test_monitor as base
from tests.integration.test_monitor import (
    DATA,
    capture_lines,
    publish_model,
    training_data,
    weights,
)

world = base.world  # the fixture

DAY = 86400.0


def day_d() -> float:
    """10:00 UTC five days ago: day D (in the past, so S3's real LastModified times come after it)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=5)).timestamp() + 10 * 3600


def run_at(ts: float) -> dict[str, Any]:
    m = monitor.build()
    m.clock = lambda: ts
    return m.handle({})


def labels(world: dict[str, Any], name: str, lines: list[Any]) -> None:
    body = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
    world["s3"].put_object(Bucket=DATA, Key=f"labels/demo/{name}.jsonl", Body=body.encode())


def report_at(world: dict[str, Any], ts: float) -> dict[str, Any]:
    end = ts - 90  # the function's capture lag (CAPTURE_BUFFER_SECONDS 60 + 30)
    key = f"monitoring/demo/{reports.stamp_of(end)}/report.json"
    doc: dict[str, Any] = json.loads(world["s3"].get_object(Bucket="registry", Key=key)["Body"].read())
    return doc


def day_entry(section: dict[str, Any], day: str) -> dict[str, Any]:
    (entry,) = [d for d in section["days"] if d["day"] == day]
    return entry


def test_a_label_uploaded_two_days_later_changes_that_day_s_figure(world: dict[str, Any]) -> None:
    # Given 200 predictions captured on day D (one row per request)
    publish_model(world["s3"])
    d = day_d()
    day = datetime.fromtimestamp(d, UTC).strftime("%Y-%m-%d")
    rng = np.random.default_rng(3)
    x = training_data(rng, 200)
    rids = [f"req-{i}" for i in range(200)]
    key = f"captures/{datetime.fromtimestamp(d, UTC):%Y/%m/%d/%H}/CaptureStream-1-d"
    world["s3"].put_object(Bucket=DATA, Key=key, Body=b"".join(capture_lines(x, ts=d, rids=rids)))
    # and, before the real labels, a file with an unknown request id and a bad line
    labels(world, "early", [{"request_id": "nope", "row": 0, "label": 1.0}, "not json"])

    # When the monitor runs on D+1: day D has 200 captured predictions and no label yet
    before = run_at(d + DAY)
    section = before["late_labels"]["demo"]
    entry = day_entry(section, day)
    assert (entry["captured"], entry["labelled"], entry["metrics"]) == (200, 0, None)
    assert section["labels"]["unknown"] == 1 and section["labels"]["bad_lines"] == 1
    assert day_entry(report_at(world, d + DAY)["late_labels"], day)["labelled"] == 0

    # Then labels for 100 of them arrive on D+2 (one duplicated, one of the wrong type)
    pred = (x.astype(np.float32) @ weights().astype(np.float32)).astype(np.float64)
    truth = pred + rng.normal(0, 0.5, 200)
    lines: list[Any] = [{"request_id": rids[i], "row": 0, "label": float(truth[i])} for i in range(100)]
    lines.append({"request_id": rids[0], "row": 0, "label": 99.0})  # a duplicate: counted, not used
    lines.append({"request_id": rids[150], "row": 0, "label": "high"})  # a string for a regression target
    labels(world, "late", lines)
    after = run_at(d + 2 * DAY)

    # the next run's figure for day D is the RMSE of those 100 rows
    section = after["late_labels"]["demo"]
    entry = day_entry(section, day)
    assert (entry["captured"], entry["labelled"], entry["wrong_type"]) == (200, 101, 1)
    err = pred[:100] - truth[:100]
    assert entry["metrics"]["rmse"] == pytest.approx(float(np.sqrt(np.mean(err**2))), rel=1e-5)
    assert entry["coverage"] == pytest.approx(101 / 200)
    assert section["labels"] == {
        "lines": 104,
        "matched": 101,
        "unknown": 1,
        "duplicates": 1,
        "bad_lines": 1,
        "wrong_type": 1,
        "over_limit": 0,
    }
    # the report (a label-only report: no traffic in this window) carries the same
    rep = report_at(world, d + 2 * DAY)
    assert rep["verdict"] == "no_traffic"
    assert rep["report_url"].startswith("https://") and "X-Amz-Expires=43200" in rep["report_url"]
    assert day_entry(rep["late_labels"], day)["metrics"]["rmse"] == pytest.approx(entry["metrics"]["rmse"])
    assert (
        "labelled 101 of 200"
        in world["s3"]
        .get_object(Bucket="registry", Key=rep["report_html"].removeprefix("s3://registry/"))["Body"]
        .read()
        .decode()
    )


def test_the_label_window_comes_from_the_settings(world: dict[str, Any]) -> None:
    # Given predictions on day D and their labels
    publish_model(world["s3"])
    d = day_d()
    x = training_data(np.random.default_rng(4), 10)
    rids = [f"q{i}" for i in range(10)]
    key = f"captures/{datetime.fromtimestamp(d, UTC):%Y/%m/%d/%H}/CaptureStream-1-e"
    world["s3"].put_object(Bucket=DATA, Key=key, Body=b"".join(capture_lines(x, ts=d, rids=rids)))
    labels(world, "l", [{"request_id": r, "row": 0, "label": 1.0} for r in rids])
    # When the window is 1 day and the run is 2 days later: day D is outside it
    SettingsStore(ObjectStore(world["s3"], "registry")).update("demo", {"label_window_days": 1})
    monitor.build.cache_clear()
    section = run_at(d + 2 * DAY)["late_labels"]["demo"]
    assert section["label_window_days"] == 1 and section["days"] == []
    assert section["labels"]["unknown"] == 10
    # and with the default 7 days it is matched
    SettingsStore(ObjectStore(world["s3"], "registry")).update("demo", {"label_window_days": None})
    monitor.build.cache_clear()
    section = run_at(d + 2 * DAY)["late_labels"]["demo"]
    assert section["label_window_days"] == 7 and section["labels"]["matched"] == 10


def test_a_model_without_labels_costs_no_capture_reads(world: dict[str, Any]) -> None:
    publish_model(world["s3"])
    summary = run_at(day_d() + DAY)
    assert summary["late_labels"] == {}
