"""``modelops status``: the whole fleet at a glance (registry, last monitor result, open alarms)."""

from __future__ import annotations

import json
import re
from typing import Any

import click

from modelops.domain.errors import ModelOpsError
from modelops.storage.fleet import fleet_status
from modelops_cli.context import Context


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Every model: production and canary versions, their metrics, the last monitor result, open alarms."""
    c = ctx.find_object(Context)
    cloudwatch = c.client("cloudwatch")
    try:
        report = fleet_status(c.registry(), StackAlarms(cloudwatch, c.stack) if c.stack else cloudwatch)
    except ModelOpsError as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from exc
    report["stack"] = c.stack
    if c.stack:
        report["alarms"] = [a for a in report["alarms"] if is_stack_alarm(a["name"], c.stack)]
    if as_json:
        click.echo(json.dumps(report, indent=1, sort_keys=True, default=str))
        return
    click.echo(render(report))


def is_stack_alarm(name: str, stack: str) -> bool:
    """An alarm of the template's (AWS::CloudWatch::Alarm without AlarmName): CloudFormation, and the
    twin, name it ``{stack}-{LogicalId}-{SUFFIX}``, so ``modelops-dev-DriftAlarm-X`` is not stack
    ``modelops``'s."""
    return re.fullmatch(rf"{re.escape(stack)}-[A-Za-z0-9]+-[A-Za-z0-9]+", name) is not None


class StackAlarms:
    """A CloudWatch client whose DescribeAlarms asks only for the alarms named ``{stack}-...``."""

    def __init__(self, cloudwatch: Any, stack: str) -> None:
        self._cw = cloudwatch
        self._prefix = f"{stack}-"

    def get_paginator(self, operation: str) -> Any:
        paginator = self._cw.get_paginator(operation)
        if operation != "describe_alarms":
            return paginator
        prefix = self._prefix

        class _Prefixed:
            def paginate(self, **kwargs: Any) -> Any:
                state = kwargs.get("StateValue")
                for page in paginator.paginate(AlarmNamePrefix=prefix, **kwargs):
                    # AWS applies both filters; moto (and so the twin) only the prefix: keep the state's
                    yield {
                        kind: [a for a in page.get(kind, []) if state is None or a.get("StateValue") == state]
                        for kind in ("MetricAlarms", "CompositeAlarms")
                    }

        return _Prefixed()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cw, name)


def _metrics(m: dict[str, Any] | None) -> str:
    if not m:
        return "-"
    keys = [k for k in ("rmse", "mae", "r2", "accuracy", "auc") if k in m]
    return " ".join(f"{k}={m[k]:.4g}" for k in keys) or "-"


def render(report: dict[str, Any]) -> str:
    lines = []
    models = report["models"]
    if not models:
        lines.append("no models in the registry yet")
    for m in models:
        prod = m.get("production")
        canary = m.get("canary")
        head = f"{m['model']}: {len(m['versions'])} version(s)"
        if prod:
            head += f", production v{prod['version']} ({_metrics(prod.get('metrics'))})"
        else:
            head += ", no production alias"
        if canary:
            head += (
                f", canary v{canary['version']} at {canary['weight']:.0%} ({_metrics(canary.get('metrics'))})"
            )
        lines.append(head)
        mon = m.get("monitor")
        if mon:
            verdict = {
                "drift": "DRIFT",
                "ok": "ok",
                "insufficient_samples": "too few samples",
                "no_baseline": "no baseline",
            }.get(str(mon.get("verdict")), str(mon.get("verdict", "?")))
            if mon.get("drift"):
                verdict = "DRIFT"
            lines.append(
                f"  last monitor {mon.get('at', '?')}: {verdict}, max PSI {mon.get('max_psi', '-')}, "
                f"{mon.get('samples', 0)} samples; report {mon.get('report_html') or mon.get('report', '-')}"
            )
        else:
            lines.append("  not monitored yet")
    alarms = report["alarms"]
    whose = f" in stack {report['stack']}" if report.get("stack") else ""
    lines.append("")
    if alarms:
        lines.append(f"{len(alarms)} alarm(s) open{whose}:")
        lines += [f"  {a['name']}: {a['reason']}" for a in alarms]
    else:
        lines.append(f"no alarms open{whose}")
    return "\n".join(lines)
