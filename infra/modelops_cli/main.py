"""``modelops``: the command line of the bundle (registry, twin, predict, monitor, status)."""

from __future__ import annotations

import click

from modelops_cli.context import make_context
from modelops_cli.local import local
from modelops_cli.models import models
from modelops_cli.monitor import monitor
from modelops_cli.predict import predict
from modelops_cli.status import status


@click.group()
@click.option(
    "--endpoint-url",
    envvar="MODELOPS_ENDPOINT_URL",
    default=None,
    help="AWS endpoint (the twin's, for example).",
)
@click.option("--region", default=None, help="AWS region (default: AWS_DEFAULT_REGION or us-east-1).")
@click.pass_context
def cli(ctx: click.Context, endpoint_url: str | None, region: str | None) -> None:
    """modelops: train, convert, serve, monitor and alert on TensorFlow models, serverless."""
    ctx.obj = make_context(endpoint_url, region)


cli.add_command(models)
cli.add_command(monitor)
cli.add_command(predict)
cli.add_command(local)
cli.add_command(status)

if __name__ == "__main__":  # pragma: no cover
    cli()
