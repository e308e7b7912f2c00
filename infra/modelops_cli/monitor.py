"""``modelops monitor run [--model M] [--window 1h]``: one monitor run, from this machine.

Runs the same code as the MonitorFunction (``modelops.stages.monitor.run_monitor``) against the
configured endpoint (the twin, or a deployed stack), writes the report to the registry, publishes
the metrics (unless ``--dry-run``), and prints a summary. It publishes no events: the stack's stage
bus accepts them from the stack's own roles only, so DriftDetected (alerts, retraining) comes from the
deployed monitor function.
"""

from __future__ import annotations

import json
import re
from typing import Any

import click

from modelops.aws import AwsError
from modelops.domain.errors import ModelOpsError
from modelops.stages import monitor as monitoring
from modelops_cli.context import Context

pass_ctx = click.make_pass_decorator(Context)
EXIT_DRIFT = 3  # docs/cli.md "Exit codes"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> int:
    """``90`` / ``90s``, ``30m``, ``1h``, ``2d`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not m:
        raise click.BadParameter(f"{text!r}: use a number of seconds or 30m, 1h, 2d")
    seconds = int(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not 60 <= seconds <= monitoring.MAX_WINDOW_SECONDS:
        raise click.BadParameter(f"{text!r}: the window must be between 1 minute and 31 days")
    return seconds


def _num(v: Any) -> str:
    return "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))


def summary_lines(summary: dict[str, Any]) -> list[str]:
    w = summary["window"]
    lines = [
        f"window {w['start']} .. {w['end']}: {summary['objects']} capture objects, {summary['lines']:,} lines, "
        f"{summary['bad_lines']:,} bad" + (f" {summary['bad']}" if summary["bad"] else ""),
    ]
    if not summary["models"]:
        lines.append("no captured traffic in the window")
    for m in summary["models"]:
        head = f"{m['model']} v{m['version']} ({m.get('role') or 'other'}): {m['verdict'].upper()}"
        head += f", {m['samples']:,} rows, max PSI {_num(m['max_psi'])}"
        if m["drifted_features"]:
            head += f"; drifted: {', '.join(m['drifted_features'])}"
        lines.append(head)
        if m.get("quality"):
            lines.append("  quality: " + ", ".join(f"{k} {_num(v)}" for k, v in m["quality"].items()))
        if m.get("retrain"):
            lines.append(f"  retrain: {m['retrain']}")
        lines.append(f"  report: {m['report'].replace('report.json', 'report.html')}")
    if summary["unknown_versions"]:
        lines.append(f"not in the registry: {summary['unknown_versions']}")
    if summary["max_psi_ratio"] is not None:
        lines.append(f"MaxPsiRatio {summary['max_psi_ratio']:.3g} (the drift alarm fires above 1)")
    return lines


@click.group()
def monitor() -> None:
    """Drift and quality of captured traffic against each version's training baseline."""


@monitor.command("run")
@click.option("--model", default=None, help="Only this model (default: every model in the captures).")
@click.option("--window", default="1h", show_default=True, help="How far back: 90s, 30m, 1h, 2d.")
@click.option(
    "--min-samples", default=100, show_default=True, type=click.IntRange(1), help="Fewer rows: no verdict."
)
@click.option("--dry-run", is_flag=True, help="Write the report but publish no metrics.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
@click.option(
    "--fail-on-drift", is_flag=True, help=f"Exit with status {EXIT_DRIFT} when a model's verdict is drift."
)
@pass_ctx
def run(
    ctx: Context,
    model: str | None,
    window: str,
    min_samples: int,
    dry_run: bool,
    as_json: bool,
    fail_on_drift: bool,
) -> None:
    """Run the monitor once over the last WINDOW of captures and print what it found.

    Exit status 3 with --fail-on-drift when drift was found (0 otherwise; 1 on errors)."""
    seconds = parse_window(window)
    try:
        namespace = ctx.output("MetricsNamespace")
    except click.ClickException:
        namespace = "ModelOps"
    try:
        if model is not None:
            monitoring.request_from_event({"model": model})
        settings = monitoring.MonitorSettings(
            data_bucket=ctx.output("DataBucketName"),
            registry_bucket=ctx.output("RegistryBucketName"),
            namespace=namespace,
            window_seconds=seconds,
            min_samples=min_samples,
            model=model,
            publish=not dry_run,
        )
        # No events: the stage bus takes PutEvents from the stack's own roles only (docs/security.md),
        # so DriftDetected (and so alerts and retraining) come from the deployed monitor function.
        summary = monitoring.run_monitor(settings, s3=ctx.client("s3"), cloudwatch=ctx.client("cloudwatch"))
    except (ModelOpsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    except AwsError as exc:
        raise click.ClickException(f"AWS call failed: {exc}") from exc
    if as_json:
        click.echo(json.dumps(summary, indent=1, default=str))
    else:
        for line in summary_lines(summary):
            click.echo(line)
    if fail_on_drift and drifted(summary):
        raise click.exceptions.Exit(EXIT_DRIFT)


def drifted(summary: dict[str, Any]) -> list[str]:
    """The models whose verdict in this run is drift."""
    return [str(m["model"]) for m in summary.get("models", []) if m.get("verdict") == "drift"]
