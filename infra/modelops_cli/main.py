"""``modelops``: the command line of the bundle (registry, twin, predict, monitor, status, ui).

Exit codes (docs/cli.md): 0 ok, 1 error, 2 usage (click's), 3 drift found (``monitor run
--fail-on-drift``).
"""

from __future__ import annotations

from typing import Any

import click

from modelops_cli.context import Context, make_context
from modelops_cli.local import local
from modelops_cli.models import models
from modelops_cli.monitor import monitor
from modelops_cli.predict import predict
from modelops_cli.score import score
from modelops_cli.status import status
from modelops_cli.ui.command import ui

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DRIFT = 0, 1, 2, 3
_ARGV = "modelops.argv"
_RETRIED = "modelops.retried"


class Cli(click.Group):
    """The root group: when a command that used cached stack outputs fails, the stack is read again
    and, if one of those outputs changed since the cache was written, the command runs once more."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta.setdefault(_ARGV, list(args))
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, Exception) as exc:
            if isinstance(exc, click.exceptions.Exit | click.Abort | click.UsageError):
                raise
            c = ctx.obj
            outputs = c.stack_outputs if isinstance(c, Context) else None
            if outputs is None or ctx.meta.get(_RETRIED) or not outputs.changed_since_cache():
                raise
            click.echo(
                f"stack {outputs.stack}: outputs changed since they were cached; running again", err=True
            )
            argv = list(ctx.meta[_ARGV])
        again = self.make_context(ctx.info_name or "modelops", argv, parent=ctx.parent)
        again.meta[_RETRIED] = True
        with again:
            return self.invoke(again)


@click.group(cls=Cli)
@click.version_option(package_name="modelops", prog_name="modelops")
@click.option(
    "--stack",
    envvar="MODELOPS_STACK",
    default=None,
    help="A deployed stack's name: its Outputs (read once through CloudFormation, then cached) name "
    "the buckets, the API and the alarms.",
)
@click.option("--profile", default=None, help="AWS profile (default: AWS_PROFILE).")
@click.option("--refresh", is_flag=True, help="Read the stack's Outputs again instead of the cached copy.")
@click.option(
    "--endpoint-url",
    envvar="MODELOPS_ENDPOINT_URL",
    default=None,
    help="AWS endpoint (the twin's, for example).",
)
@click.option("--region", default=None, help="AWS region (default: AWS_DEFAULT_REGION or us-east-1).")
@click.pass_context
def cli(
    ctx: click.Context,
    stack: str | None,
    profile: str | None,
    refresh: bool,
    endpoint_url: str | None,
    region: str | None,
) -> None:
    """modelops: train, convert, serve, monitor and alert on TensorFlow models, serverless.

    Exit codes: 0 ok, 1 error, 2 usage, 3 drift found (monitor run --fail-on-drift)."""
    ctx.obj = make_context(endpoint_url, region, stack=stack or None, profile=profile, refresh=refresh)


cli.add_command(models)
cli.add_command(monitor)
cli.add_command(predict)
cli.add_command(score)
cli.add_command(local)
cli.add_command(status)
cli.add_command(ui)

if __name__ == "__main__":  # pragma: no cover
    cli()
