"""``modelops score NAME SOURCE``: start a batch scoring run (docs/scoring.md).

SOURCE is a local CSV file (uploaded to ``datasets/NAME/score/FILE.csv``), an object of another bucket
(copied there) or the scoring input itself (``s3://DATA_BUCKET/datasets/NAME/score/FILE.csv``, already
uploaded). The upload starts the run (EventBridge -> ScoreStartFunction -> ScoreStateMachine); the
command prints the run's name and where its manifest will be.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import click

from modelops.aws import AwsError
from modelops.domain.spec import MODEL_NAME_RE
from modelops.stages.score import run_name
from modelops.storage import keys
from modelops_cli.context import Context

pass_ctx = click.make_pass_decorator(Context)


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise click.BadParameter(f"{uri!r}: use s3://BUCKET/KEY", param_hint="SOURCE")
    return bucket, key


@click.command("score")
@click.argument("name")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def score(c: Context, name: str, source: str, as_json: bool) -> None:
    """Score every row of a CSV with NAME's production version (a Distributed Map of chunks)."""
    if not MODEL_NAME_RE.fullmatch(name):
        raise click.BadParameter(f"{name!r} is not a model name", param_hint="NAME")
    bucket = c.output("DataBucketName")
    s3 = c.client("s3")
    try:
        if source.startswith("s3://"):
            src_bucket, src_key = _split_s3(source)
            if src_bucket == bucket and keys.score_input_model(src_key) == name:
                key = src_key
                version_id = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
            else:
                file = PurePosixPath(src_key).name
                if not file.endswith(".csv"):
                    raise click.BadParameter(f"{source!r} is not a .csv object", param_hint="SOURCE")
                key = keys.score_input(name, file)
                out = s3.copy_object(
                    Bucket=bucket, Key=key, CopySource={"Bucket": src_bucket, "Key": src_key}
                )
                version_id = out.get("VersionId")
        else:
            path = Path(source)
            if not path.is_file() or path.suffix != ".csv":
                raise click.BadParameter(f"{source!r} is not a local .csv file", param_hint="SOURCE")
            key = keys.score_input(name, path.name)
            with path.open("rb") as fh:
                version_id = s3.put_object(Bucket=bucket, Key=key, Body=fh, ContentType="text/csv").get(
                    "VersionId"
                )
    except AwsError as exc:
        raise click.ClickException(f"could not put the input in s3://{bucket}/: {exc}") from exc
    run = run_name(key, version_id)
    if as_json:
        doc = {
            "model": name,
            "input": f"s3://{bucket}/{key}",
            "version_id": version_id,
            "run": run,
            "manifest": f"s3://{bucket}/{keys.SCORES}{name}/{{version}}/{run}/manifest.json",
        }
        click.echo(json.dumps(doc, sort_keys=True))
        return
    click.echo(f"input: s3://{bucket}/{key} (version {version_id or '-'})")
    click.echo(f"run: {run} (the upload starts it)")
    click.echo(f"manifest: s3://{bucket}/{keys.SCORES}{name}/{{production version}}/{run}/manifest.json")
