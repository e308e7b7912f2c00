"""``modelops predict NAME INSTANCES``: call the predict API (SigV4-signed, as the API's IAM auth wants)."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import boto3
import click
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from modelops_cli.context import Context


def signed_request(
    url: str, body: bytes, region: str, api_key: str | None, profile: str | None = None
) -> urllib.request.Request:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["x-api-key"] = api_key
    creds = boto3.session.Session(profile_name=profile).get_credentials()
    if creds is not None:
        aws_req = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(creds.get_frozen_credentials(), "execute-api", region).add_auth(aws_req)
        headers = dict(aws_req.headers.items())
    return urllib.request.Request(url, data=body, method="POST", headers=headers)


@click.command("predict")
@click.argument("name")
@click.argument("instances", default="-")
@click.option("--alias", default=None, help="Serve this alias instead of production.")
@click.option("--version", "version", type=int, default=None, help="Serve exactly this version.")
@click.option(
    "--api-url",
    default=None,
    help="The API's base URL (default: the stack's ApiUrl, MODELOPS_API_URL or the twin's).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Compact JSON on one line (the response is JSON either way)."
)
@click.pass_context
def predict(
    ctx: click.Context,
    name: str,
    instances: str,
    alias: str | None,
    version: int | None,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Predict with model NAME. INSTANCES is JSON: a list of rows or records ('-' reads stdin)."""
    c = ctx.find_object(Context)
    raw = sys.stdin.read() if instances == "-" else instances
    try:
        rows: Any = json.loads(raw)
    except ValueError as exc:
        raise click.ClickException(f"INSTANCES is not JSON: {exc}") from exc
    body = json.dumps({"instances": rows} if isinstance(rows, list) else rows).encode()
    query = {k: str(v) for k, v in (("alias", alias), ("version", version)) if v is not None}
    base = (api_url or c.output("ApiUrl")).rstrip("/")
    url = f"{base}/models/{urllib.parse.quote(name, safe='')}/predict"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    req = signed_request(url, body, c.region, os.environ.get("MODELOPS_API_KEY"), c.profile)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            click.echo(json.dumps(json.loads(resp.read()), indent=None if as_json else 1))
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")
        raise click.ClickException(f"HTTP {err.code}: {detail}") from err
    except urllib.error.URLError as err:
        raise click.ClickException(f"cannot reach {base}: {err.reason}") from err
