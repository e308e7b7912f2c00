"""``modelops models list|show|promote|rollback|compare``."""

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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, name: str, version: int | None, as_json: bool) -> None:
    """A model (aliases, versions) or one version's manifest (JSON either way: --json is accepted for
    uniformity)."""
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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def promote(ctx: click.Context, name: str, version: int, alias: str, reason: str, as_json: bool) -> None:
    """Point ALIAS at VERSION (compare-and-swap; the previous version is kept for rollback).

    Promoting the canary's version finishes the canary: it takes all the traffic."""
    try:
        doc = _registry(ctx).promote(name, version, alias, reason=reason)
    except ModelOpsError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"model": name, **doc.to_dict()}, indent=1, sort_keys=True, default=str))
        return
    click.echo(f"{name} {alias} -> v{doc.version} (previous: v{doc.previous})")


@models.command("rollback")
@click.argument("name")
@click.option("--alias", default="production", show_default=True)
@click.option("--reason", default="rolled back by hand", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def rollback(ctx: click.Context, name: str, alias: str, reason: str, as_json: bool) -> None:
    """Point ALIAS back at its previous version (a canary is dropped with it)."""
    try:
        doc = _registry(ctx).rollback(name, alias, reason=reason)
    except ModelOpsError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"model": name, **doc.to_dict()}, indent=1, sort_keys=True, default=str))
        return
    click.echo(f"{name} {alias} -> v{doc.version} (rolled back from v{doc.previous})")


@models.command("compare")
@click.argument("name")
@click.argument("a", type=int)
@click.argument("b", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=None,
    help="Rows scored at most (default: the gate's, GATE_MAX_EVAL_ROWS or 20,000).",
)
@click.pass_context
def compare(ctx: click.Context, name: str, a: int, b: int, as_json: bool, max_rows: int | None) -> None:
    """Score versions A and B on the same evaluation rows, as the promotion gate would with A in
    production and B the candidate: the pinned set (datasets/NAME/eval/) when there is one, else every
    accepted dataset's evaluation rows. Prints both metrics, B's improvement over A and its 95% paired
    bootstrap interval (the gate's seed, so a recorded decision is reproduced exactly)."""
    import os

    from modelops.domain import evaluation as evalrows
    from modelops.stages.gate import compare_versions
    from modelops.storage.evaluation import EvaluationStore

    if a == b:
        raise click.ClickException("invalid_argument: compare two different versions")
    reg = _registry(ctx)
    limit = max_rows or int(os.environ.get("GATE_MAX_EVAL_ROWS", evalrows.MAX_ROWS))
    try:
        got = compare_versions(
            reg, EvaluationStore(reg.objects), name, production=a, candidate=b, max_eval_rows=limit
        )
        metric = _spec_metric(reg.get_manifest(name, b))
    except ModelOpsError as exc:
        _fail(exc)
    out = {
        "model": name,
        "a": a,
        "b": b,
        "metric": metric,
        "source": got.source,
        "rows": got.rows,
        "a_value": got.production_value,
        "b_value": got.candidate_value,
        "interval": dict(got.interval) if got.interval else None,
        "evaluation": dict(got.evaluation),
        "problem": got.problem,
        "claims": {"a": (got.claims or {}).get("production"), "b": (got.claims or {}).get("candidate")},
    }
    if as_json:
        click.echo(json.dumps(out, indent=1, sort_keys=True, default=str))
    else:
        click.echo(_compare_text(out))
    if got.problem:
        raise click.ClickException(f"not_comparable: {got.problem}")


def _spec_metric(manifest: Any) -> str:
    from modelops.stages.gate import spec_of

    return spec_of(manifest).metric  # the candidate's spec names the metric, as in the gate


def _g(v: Any) -> str:
    return "n/a" if not isinstance(v, int | float) or isinstance(v, bool) else f"{v:.6g}"


def _compare_text(o: dict[str, Any]) -> str:
    m, a, b = o["metric"], o["a"], o["b"]
    if o["source"] == "job_claim":
        return (
            f"{o['model']}: the platform holds no evaluation rows (upload a pinned set under "
            f"datasets/{o['model']}/eval/); the jobs' own {m}: v{a} {_g(o['claims']['a'])}, "
            f"v{b} {_g(o['claims']['b'])} (not comparable: not the same rows)"
        )
    ev = o["evaluation"]
    lines = [
        f"{o['model']}: v{b} against v{a} on the same {o['rows']} {o['source']} evaluation rows "
        f"(sha256 {', '.join(s[:12] for s in ev.get('sha256', [])[:5])})"
    ]
    if o["problem"]:
        return "\n".join(lines)
    lines.append(f"  v{a} {m} {_g(o['a_value'])}")
    lines.append(f"  v{b} {m} {_g(o['b_value'])}")
    iv = o["interval"]
    if iv:
        lines.append(
            f"  improvement of v{b} {_g(iv['improvement'])} (positive = better), {iv['confidence']:.0%} interval "
            f"[{_g(iv['lower'])}, {_g(iv['upper'])}] ({iv['resamples']} paired bootstrap resamples, seed {iv['seed']})"
        )
    else:
        lines.append("  no bootstrap interval: the metric is undefined on these rows")
    return "\n".join(lines)


def _register_config() -> None:
    from modelops_cli.models_config import config

    models.add_command(config)


_register_config()
import modelops_cli.models_import  # noqa: E402, F401  (registers `models import` on the group)
