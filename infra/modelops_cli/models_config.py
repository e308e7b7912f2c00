"""``modelops models config NAME [--psi-threshold X] ... [--json]``: a model's monitoring settings,
read or changed without retraining (``models/{model}/config.json``, compare-and-swap with history)."""

from __future__ import annotations

import json
from typing import Any

import click

from modelops.domain import settings as model_settings
from modelops.domain.errors import ModelOpsError
from modelops.storage.settings import SettingsStore
from modelops_cli.context import Context

_OPTIONS = {
    "psi_threshold": "psi_threshold",
    "new_category_threshold": "new_category_threshold",
    "capture_sample_rate": "capture_sample_rate",
    "label_window_days": "label_window_days",
    "retrain_on_drift": "retrain_on_drift",
}


def _registry(ctx: click.Context) -> Any:
    return ctx.find_object(Context).registry(ctx.meta.get("registry_bucket"))


def _defaults_version(reg: Any, name: str) -> tuple[int | None, dict[str, Any] | None]:
    """The version whose manifest gives the defaults shown: production's, else the newest."""
    try:
        version: int | None = reg.resolve(name)
    except ModelOpsError:
        versions = reg.list_versions(name)
        version = versions[-1] if versions else None
    if version is None:
        return None, None
    spec = reg.get_manifest(name, version).get("spec") or {}
    monitoring = spec.get("monitoring") if isinstance(spec, dict) else None
    return version, monitoring if isinstance(monitoring, dict) else None


@click.command("config")
@click.argument("name")
@click.option(
    "--psi-threshold", type=float, default=None, help="Drift when a feature's PSI is above this (0-10]."
)
@click.option(
    "--new-category-threshold",
    type=float,
    default=None,
    help="Drift when a categorical feature's new-category share rises more than this (0-1].",
)
@click.option(
    "--capture-sample-rate", type=float, default=None, help="Share of predict requests captured [0-1]."
)
@click.option(
    "--label-window-days", type=int, default=None, help="Late labels are matched to this many days (1-31)."
)
@click.option(
    "--retrain-on-drift/--no-retrain-on-drift",
    default=None,
    help="Write a retrain dataset from labelled traffic when a version drifts.",
)
@click.option(
    "--unset",
    "unset",
    multiple=True,
    type=click.Choice(sorted(model_settings.FIELDS)),
    help="Remove an override: the version's own value applies again (repeatable).",
)
@click.option("--reason", default="set by hand", show_default=True, help="Kept in the settings' history.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def config(
    ctx: click.Context,
    name: str,
    psi_threshold: float | None,
    new_category_threshold: float | None,
    capture_sample_rate: float | None,
    label_window_days: int | None,
    retrain_on_drift: bool | None,
    unset: tuple[str, ...],
    reason: str,
    as_json: bool,
) -> None:
    """Read NAME's monitoring settings (no options) or change them. They override the values each
    version was trained with (its manifest's spec.monitoring), which stay its defaults; the monitor and
    predict pick a change up within their cache TTL (60 s). Changes are compare-and-swap writes with a
    history entry (who, when, old -> new); a concurrent change is re-read and kept."""
    given = {
        "psi_threshold": psi_threshold,
        "new_category_threshold": new_category_threshold,
        "capture_sample_rate": capture_sample_rate,
        "label_window_days": label_window_days,
        "retrain_on_drift": retrain_on_drift,
    }
    changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    for field in unset:
        if field in changes:
            raise click.UsageError(f"--unset {field} and a new value for it cannot go together")
        changes[field] = None
    try:
        changes = model_settings.check_changes(changes)
    except model_settings.SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    reg = _registry(ctx)
    store = SettingsStore(reg.objects, actor=reg.actor)
    try:
        if changes:
            doc: dict[str, Any] | None = store.update(name, changes, reason=reason)
        else:
            if not reg.model_exists(name):
                raise click.ClickException(f"model_not_found: model {name!r} is not in the registry")
            doc = store.read(name)[0]
        version, monitoring = _defaults_version(reg, name)
    except ModelOpsError as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from None
    overrides = dict((doc or {}).get("settings") or {})
    values, sources = model_settings.effective(monitoring, overrides)
    out = {
        "model": name,
        "settings": overrides,
        "revision": (doc or {}).get("revision", 0),
        "updated_at": (doc or {}).get("updated_at"),
        "updated_by": (doc or {}).get("updated_by"),
        "defaults_from_version": version,
        "effective": values,
        "sources": sources,
    }
    if as_json:
        click.echo(json.dumps(out, indent=1, sort_keys=True))
        return
    head = f"{name}: revision {out['revision']}"
    if doc:
        head += f", set by {out['updated_by']} at {out['updated_at']}"
    click.echo(head)
    for field, value in values.items():
        where = sources[field]
        origin = f"v{version}'s manifest" if where == "manifest" else where
        click.echo(f"  {field:<24} {json.dumps(value):<8} ({origin})")
