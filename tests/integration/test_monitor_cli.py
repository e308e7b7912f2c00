"""``modelops monitor run`` against moto (in-process), through the real click group."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from modelops_cli.context import Context
from modelops_cli.monitor import monitor, parse_window
from tests.integration.test_monitor import DATA, capture_lines, publish_model, put_captures, training_data


@pytest.fixture
def ctx(s3: Any, registry_bucket: str) -> Context:
    s3.create_bucket(Bucket=DATA)
    return Context(
        endpoint_url=None,
        region="us-east-1",
        outputs={
            "DataBucketName": DATA,
            "RegistryBucketName": registry_bucket,
            "MetricsNamespace": "ModelOps",
        },
    )


def test_run_prints_the_verdict_and_the_report(ctx: Context, s3: Any) -> None:
    publish_model(s3)
    x = training_data(np.random.default_rng(1), 500)
    x[:, 0] += 3
    put_captures(s3, capture_lines(x, batch=5))

    out = CliRunner().invoke(monitor, ["run", "--model", "demo", "--window", "30m"], obj=ctx)

    assert out.exit_code == 0, out.output
    assert "demo v1 (production): DRIFT, 500 rows" in out.output and "drifted: f0" in out.output
    assert "report: s3://registry/monitoring/demo/" in out.output and "report.html" in out.output
    assert "MaxPsiRatio" in out.output


def test_dry_run_json_and_bad_arguments(ctx: Context, s3: Any) -> None:
    publish_model(s3)
    out = CliRunner().invoke(monitor, ["run", "--json", "--dry-run"], obj=ctx)
    assert out.exit_code == 0 and json.loads(out.output)["models"] == []
    bad = CliRunner().invoke(monitor, ["run", "--window", "soon"], obj=ctx)
    assert bad.exit_code == 2 and "30m, 1h, 2d" in bad.output
    bad = CliRunner().invoke(monitor, ["run", "--model", "Bad Name"], obj=ctx)
    assert bad.exit_code == 1 and "invalid model name" in bad.output


def test_parse_window() -> None:
    assert [parse_window(w) for w in ("90", "90s", "30m", "1h", "2d")] == [90, 90, 1800, 3600, 172800]
