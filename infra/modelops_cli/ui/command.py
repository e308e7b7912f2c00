"""``modelops ui`` (serve the fleet page) and ``modelops ui build --out DIR`` (write it as files)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from modelops.domain.errors import ModelOpsError
from modelops_cli.context import Context
from modelops_cli.status import StackAlarms
from modelops_cli.ui.data import WINDOWS, FleetData
from modelops_cli.ui.pages import TOP_FEATURES
from modelops_cli.ui.server import LOOPBACK, make_server
from modelops_cli.ui.site import Site


def _site_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    @click.option(
        "--windows",
        type=click.IntRange(1, 10_000),
        default=WINDOWS,
        show_default=True,
        help="How many of each model's latest monitor windows the drift page charts.",
    )
    @click.option(
        "--top",
        type=click.IntRange(1, 500),
        default=TOP_FEATURES,
        show_default=True,
        help="How many features get a chart on the drift page (all are listed, with a search box).",
    )
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def _site(ctx: click.Context, windows: int, top: int) -> Site:
    c = ctx.find_object(Context)
    assert c is not None
    registry = c.registry()
    cloudwatch = c.client("cloudwatch")
    where = f"stack {c.stack}" if c.stack else (f"endpoint {c.endpoint_url}" if c.endpoint_url else "AWS")
    data = FleetData(
        registry,
        StackAlarms(cloudwatch, c.stack) if c.stack else cloudwatch,
        stack=c.stack,
        source=f"{where} · registry s3://{registry.bucket}",
        windows=windows,
        top=top,
    )
    return Site(data)


@click.group("ui", invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: a free one; the URL is printed).",
)
@_site_options
@click.pass_context
def ui(ctx: click.Context, host: str, port: int, windows: int, top: int) -> None:
    """The fleet web page, read-only: every model, its versions and the gate's decisions, drift and
    quality over the monitor's windows, and their reports. Serves it until Ctrl-C;
    `modelops ui build --out DIR` writes the same pages as files."""
    if ctx.invoked_subcommand is not None:
        return
    site = _site(ctx, windows, top)
    try:
        server = make_server(site, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    if host not in LOOPBACK:
        click.echo(
            f"warning: listening on {host}: whoever reaches it reads the registry with your credentials",
            err=True,
        )
    click.echo(f"fleet page: {server.url} (read-only; Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@ui.command("build")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the site into (created if needed; an earlier build's files are written over).",
)
@_site_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def build(ctx: click.Context, out: Path, windows: int, top: int, as_json: bool) -> None:
    """Write the fleet page as static files (index.html, a page per model, its drift page and the
    monitor's reports), to open from disk or publish next to the reports."""
    site = _site(ctx, windows, top)
    try:
        summary = site.build(out)
    except ModelOpsError as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from exc
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
        return
    index = Path(summary["index"])
    click.echo(
        f"wrote {summary['pages']} page(s) and {summary['reports']} report(s) of {summary['models']} model(s)"
    )
    click.echo(f"fleet page: {index.as_uri()}")
