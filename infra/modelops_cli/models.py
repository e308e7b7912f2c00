"""``modelops models list|show|promote|rollback``."""

from __future__ import annotations

import json
from typing import Any

import click

from modelops.domain.errors import ModelOpsError
from modelops_cli.context import Context

pass_ctx = click.make_pass_decorator(Context)


def _fail(exc: ModelOpsError) -> None:
    raise click.ClickException(f"{exc.code}: {exc}")


@click.group()
@click.option(
    "--bucket", default=None, help="Registry bucket (default: MODELOPS_REGISTRY_BUCKET_NAME or the twin's)."
)
@click.pass_context
def models(ctx: click.Context, bucket: str | None) -> None:
    """Look at and move models in the registry."""
    ctx.meta["registry_bucket"] = bucket


def _registry(ctx: click.Context) -> Any:
    return ctx.find_object(Context).registry(ctx.meta.get("registry_bucket"))


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_models(ctx: click.Context, as_json: bool) -> None:
    """Every model with its versions and aliases."""
    reg = _registry(ctx)
    try:
        rows = []
        for name in reg.list_models():
            aliases = {a: d.version for a, d in reg.list_aliases(name).items()}
            rows.append({"model": name, "versions": reg.list_versions(name), "aliases": aliases})
    except ModelOpsError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("no models in the registry yet")
    for r in rows:
        al = ", ".join(f"{a}=v{v}" for a, v in sorted(r["aliases"].items())) or "no aliases"
        click.echo(f"{r['model']:<24} versions {r['versions']}  {al}")


@models.command("show")
@click.argument("name")
@click.argument("version", type=int, required=False)
@click.pass_context
def show(ctx: click.Context, name: str, version: int | None) -> None:
    """A model (aliases, versions) or one version's manifest."""
    reg = _registry(ctx)
    try:
        if version is not None:
            click.echo(json.dumps(reg.get_manifest(name, version).doc, indent=1, sort_keys=True))
            return
        versions = reg.list_versions(name)
        if not versions and not reg.model_exists(name):
            raise click.ClickException(f"model_not_found: model {name!r} is not in the registry")
        out = {
            "model": name,
            "versions": versions,
            "aliases": {a: d.to_dict() for a, d in reg.list_aliases(name).items()},
            "history": reg.history(name)[-10:],
        }
    except ModelOpsError as exc:
        _fail(exc)
    click.echo(json.dumps(out, indent=1, sort_keys=True))


@models.command("promote")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--alias", default="production", show_default=True)
@click.option("--reason", default="promoted by hand", show_default=True)
@click.pass_context
def promote(ctx: click.Context, name: str, version: int, alias: str, reason: str) -> None:
    """Point ALIAS at VERSION (compare-and-swap; the previous version is kept for rollback).

    Promoting the canary's version finishes the canary: it takes all the traffic."""
    try:
        doc = _registry(ctx).promote(name, version, alias, reason=reason)
    except ModelOpsError as exc:
        _fail(exc)
    click.echo(f"{name} {alias} -> v{doc.version} (previous: v{doc.previous})")


@models.command("rollback")
@click.argument("name")
@click.option("--alias", default="production", show_default=True)
@click.option("--reason", default="rolled back by hand", show_default=True)
@click.pass_context
def rollback(ctx: click.Context, name: str, alias: str, reason: str) -> None:
    """Point ALIAS back at its previous version (a canary is dropped with it)."""
    try:
        doc = _registry(ctx).rollback(name, alias, reason=reason)
    except ModelOpsError as exc:
        _fail(exc)
    click.echo(f"{name} {alias} -> v{doc.version} (rolled back from v{doc.previous})")
