"""A dataset of many parts, without the twin: which keys are parts and markers, the per-part report
and its merge (a bad part names itself, parts must agree, the duplicate estimate merges exactly), the
joined split, the trainer's reading of a folder of parts, and train_trigger's start of the validation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from modelops.compute.request import JobRequest
from modelops.domain.dataset import Limits, merge_parts, validate_part, validate_stream
from modelops.domain.spec import parse_spec
from modelops.domain.split import SplitPlan, join_csv_parts, merge_parts_split, part_summary, split_csv
from modelops.ml import job as ml_job
from modelops.ml.trainer import PARTS_DIGEST_FILE, check_dataset
from modelops.stages import train_trigger
from modelops.storage import keys

SPEC = parse_spec(json.dumps({"task": "binary", "target": "y", "training": {"epochs": 1}}))


def rows(start: int, n: int, *, label: int | None = None) -> list[str]:
    return [
        f"{i * 0.5},{(i * 7) % 11},{label if label is not None else i % 2}" for i in range(start, start + n)
    ]


def csv_bytes(lines: list[str], header: str = "a,b,y") -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode()


def report_of(body: bytes, **kw: Any):  # type: ignore[no-untyped-def]
    return validate_part([body], SPEC, Limits(), **kw)


# ---------------------------------------------------------------------------- keys
@pytest.mark.parametrize(
    ("key", "dataset", "part"),
    [
        ("datasets/m/train.csv", True, False),
        ("datasets/m/part-00000.csv", True, False),  # no folder: a dataset of its own, as before
        ("datasets/m/sub/file.csv", True, False),  # a nested dataset that is no part, as before
        ("datasets/m/2025-01-01/part-00000.csv", False, True),
        ("datasets/m/2025-01-01/part-00001-abc-c000.csv.gz", False, True),
        ("datasets/m/2025-01-01/part-00002.parquet", False, True),
        ("datasets/m/eval/part-00000.csv", True, False),  # eval/ stays a pinned evaluation set
        ("datasets/m/code/part-00000.csv", False, False),
        ("datasets/m/score/part-00000.csv", False, False),
    ],
)
def test_a_part_is_never_a_dataset_of_its_own(key: str, dataset: bool, part: bool) -> None:
    assert keys.is_dataset(key) is dataset
    assert keys.is_dataset_part(key) is part


def test_the_marker_names_its_folder_and_nothing_else_is_a_marker() -> None:
    assert keys.dataset_folder_of_marker("datasets/m/f/_SUCCESS") == ("m", "datasets/m/f/")
    for key in (
        "datasets/m/_SUCCESS",
        "datasets/m/f/g/_SUCCESS",
        "datasets/m/code/_SUCCESS",
        "x/m/f/_SUCCESS",
    ):
        assert keys.dataset_folder_of_marker(key) is None


# ---------------------------------------------------------------------------- per-part reports, merged
def test_a_part_alone_skips_the_dataset_wide_checks_the_merge_makes() -> None:
    # one class and three rows: a dataset would be rejected, a part is not
    part = report_of(csv_bytes(rows(0, 3, label=1)))
    assert part.ok, part.reason
    whole = validate_stream([csv_bytes(rows(0, 3, label=1))], SPEC, Limits())
    assert not whole.ok
    other = report_of(csv_bytes(rows(3, 30, label=0)))
    merged = merge_parts([("p0", part), ("p1", other)], SPEC)
    assert merged.ok, merged.reason
    assert merged.rows == 33 and merged.classes == [0, 1] and merged.class_counts == [30, 3]


def test_the_merge_equals_one_pass_over_all_rows() -> None:
    lines = rows(0, 300) + rows(0, 40)  # 40 duplicate rows, some across parts
    parts = [lines[i : i + 50] for i in range(0, len(lines), 50)]
    reports = [(f"p{i}", DatasetReportRoundTrip(report_of(csv_bytes(p)))) for i, p in enumerate(parts)]
    merged = merge_parts(reports, SPEC)
    one = validate_stream([csv_bytes(lines)], SPEC, Limits())
    assert merged.ok and one.ok
    for field in (
        "rows",
        "duplicate_rows",
        "classes",
        "class_counts",
        "features",
        "feature_types",
        "missing",
    ):
        assert getattr(merged, field) == getattr(one, field), field
    assert merged.duplicate_rows == 40 and merged.duplicates_exact


def DatasetReportRoundTrip(report):  # type: ignore[no-untyped-def]  # noqa: N802 - reads like a type
    """The report as the reduce step reads it back from S3."""
    from modelops.domain.dataset import DatasetReport

    return DatasetReport.from_part_dict(json.loads(json.dumps(report.to_part_dict())))


def test_the_duplicate_estimate_merges_past_the_sample() -> None:
    limits = Limits(duplicate_sample=64)
    lines = rows(0, 2000) + rows(0, 1000)
    parts = [lines[i : i + 500] for i in range(0, len(lines), 500)]
    reports = [(f"p{i}", validate_part([csv_bytes(p)], SPEC, limits)) for i, p in enumerate(parts)]
    merged = merge_parts(reports, SPEC, limits)
    one = validate_stream([csv_bytes(lines)], SPEC, limits)
    assert not merged.duplicates_exact
    # the same hashes below the same threshold: exactly the one-pass estimate
    assert merged.duplicate_rows == one.duplicate_rows


def test_a_stray_word_in_one_part_rejects_the_dataset_naming_that_part() -> None:
    bad = rows(100, 30)
    bad[7] = "oops,3,1"
    reports = [("datasets/m/f/part-00000.csv", report_of(csv_bytes(rows(0, 30))))]
    reports.append(("datasets/m/f/part-00001.csv", report_of(csv_bytes(bad))))
    merged = merge_parts(reports, SPEC)
    assert merged.code == "non_numeric"
    assert "part datasets/m/f/part-00001.csv" in merged.reason and "'oops'" in merged.reason
    assert "part-00000" not in merged.reason


def test_a_part_with_another_header_is_named() -> None:
    reports = [("p0", report_of(csv_bytes(rows(0, 30)))), ("p1", report_of(csv_bytes(rows(30, 30))))]
    reports.append(("p2", report_of(csv_bytes(rows(60, 30), header="a,c,y"))))
    merged = merge_parts(reports, SPEC)
    assert merged.code == "schema_mismatch" and merged.reason.startswith("part p2 ")


def test_a_part_whose_column_is_text_elsewhere_numbers_is_named() -> None:
    text = [f"{i},x{i % 3},{i % 2}" for i in range(30)]
    reports = [("p0", report_of(csv_bytes(rows(0, 30)))), ("p1", report_of(csv_bytes(text)))]
    merged = merge_parts(reports, SPEC)
    assert merged.code == "schema_mismatch" and "'b' is categorical there" in merged.reason


def test_the_size_limit_applies_per_part() -> None:
    body = csv_bytes(rows(0, 200))
    assert report_of(body).ok
    got = validate_part([body], SPEC, Limits(max_bytes=len(body) - 1))
    assert got.code == "too_large"
    assert validate_part([body], SPEC, Limits(max_bytes=100), size=len(body)).code == "too_large"


def test_no_parts_and_too_few_rows_in_all_are_rejected() -> None:
    assert merge_parts([], SPEC).code == "no_rows"
    merged = merge_parts([("p0", report_of(csv_bytes(rows(0, 2))))], SPEC)
    assert merged.code == "too_few_rows"


def test_the_dataset_sha256_ignores_the_parts_order() -> None:
    a, b = report_of(csv_bytes(rows(0, 30))), report_of(csv_bytes(rows(30, 30)))
    assert merge_parts([("x", a), ("y", b)], SPEC).sha256 == merge_parts([("y", b), ("x", a)], SPEC).sha256


# ---------------------------------------------------------------------------- the split, joined
def test_the_parts_split_puts_each_row_where_one_file_would(tmp_path: Path) -> None:
    lines = rows(0, 400)
    whole = tmp_path / "whole.csv"
    whole.write_bytes(csv_bytes(lines))
    plan = SplitPlan.for_dataset(SPEC, ["a", "b", "y"], ["a", "b"])
    one = split_csv(whole, plan, tmp_path / "t.csv", tmp_path / "e.csv", SPEC.task)
    summaries, evals, trains = [], [], []
    for i in range(4):
        src = tmp_path / f"p{i}.csv"
        src.write_bytes(csv_bytes(lines[i * 100 : (i + 1) * 100]))
        got = split_csv(src, plan, tmp_path / f"t{i}.csv", tmp_path / f"e{i}.csv", SPEC.task)
        summaries.append(part_summary(got))
        evals.append(tmp_path / f"e{i}.csv")
        trains.append(tmp_path / f"t{i}.csv")
    evaluation = join_csv_parts(evals, tmp_path / "joined-e.csv")
    merged = merge_parts_split(plan, summaries, evaluation)
    assert (merged.train.rows, merged.evaluation.rows) == (one.train.rows, one.evaluation.rows)
    assert evaluation.sha256 == one.evaluation.sha256  # the same held-out rows, in the same order
    assert merged.train_classes == one.train_classes
    # the trainer joins the train parts back into the one-file train rows, and checks their digest
    channel = tmp_path / "channel" / "train"
    channel.mkdir(parents=True)
    for i, t in enumerate(trains):
        (channel / f"part-{i:05d}.csv").write_bytes(t.read_bytes())
    found = ml_job.find_dataset(channel.parent, "s3://r/inputs/m/j/train/")
    assert found.read_bytes() == (tmp_path / "t.csv").read_bytes()
    assert (found.parent / PARTS_DIGEST_FILE).read_text().strip() == merged.train.sha256
    sha, data = check_dataset(found, SPEC, {"dataset_sha256": merged.train.sha256})
    assert sha == merged.train.sha256 and data.x.shape[0] == one.train.rows


def test_the_trainer_refuses_parts_with_another_header(tmp_path: Path) -> None:
    (tmp_path / "part-00000.csv").write_bytes(csv_bytes(rows(0, 5)))
    (tmp_path / "part-00001.csv").write_bytes(csv_bytes(rows(5, 5), header="a,c,y"))
    with pytest.raises(ml_job.TrainingError, match="part-00001.csv"):
        ml_job.find_dataset(tmp_path)


def test_the_train_channel_of_parts_is_the_folder_in_fast_file_mode() -> None:
    base = {
        "job": "j",
        "model": "m",
        "spec": SPEC,
        "spec_json": "{}",
        "dataset_bucket": "d",
        "dataset_key": "datasets/m/f/_SUCCESS",
        "dataset_version_id": None,
        "dataset_sha256": "0" * 64,
        "rows": 10,
        "registry_bucket": "r",
        "output_prefix": "staging/m/",
        "artifact_key": "staging/m/j/output/model.tar.gz",
        "trials_prefix": "staging/m/j/trials/",
    }
    req = JobRequest(**base, train_key="inputs/m/j/train/")
    assert req.train_channel_uri == "s3://r/inputs/m/j/train/" and req.train_input_mode == "FastFile"
    schema = JobRequest(
        **base, train_key="inputs/m/j/train/", input_schema_key="inputs/m/j/input_schema.json"
    )
    assert schema.train_channel_uri == "s3://r/inputs/m/j/"
    single = JobRequest(**base, train_key="inputs/m/j/train.csv")
    assert single.train_input_mode == "File" and single.train_channel_uri == "s3://r/inputs/m/j/train.csv"


# ---------------------------------------------------------------------------- the start
class FakeStates:
    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    def start_execution(self, **kw: Any) -> dict[str, Any]:
        if any(s["name"] == kw["name"] for s in self.started):
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ExecutionAlreadyExists", "Message": "x"}}, "StartExecution")
        self.started.append(kw)
        return {"executionArn": "arn:x"}


def test_the_marker_starts_one_validation_and_a_replay_none() -> None:
    states = FakeStates()
    starter = train_trigger.ExecutionStarter(
        "arn:aws:states:us-east-1:1:stateMachine:s-dataset", lambda _: states
    )
    obj = train_trigger.S3Object("data", "datasets/m/f/_SUCCESS", "v1", "e", 0, "ObjectCreated:Put")
    first = starter(obj, "m", "datasets/m/f/")
    again = starter(obj, "m", "datasets/m/f/")
    assert first["status"] == "validating" and again["status"] == "duplicate"
    (call,) = states.started
    assert call["name"] == first["execution"] and len(call["name"]) <= 80
    assert json.loads(call["input"])["marker"]["key"] == "datasets/m/f/_SUCCESS"
    other = train_trigger.S3Object("data", "datasets/m/f/_SUCCESS", "v2", "e2", 0, "ObjectCreated:Put")
    assert train_trigger.execution_name(other) != first["execution"]  # a new marker version runs again


def test_the_execution_name_is_what_step_functions_takes() -> None:
    obj = train_trigger.S3Object("data", "datasets/m/f/_SUCCESS", None, None, 0, "")
    name = train_trigger.execution_name(obj)
    assert name.startswith("dataset-") and len(name) == 48
    assert name == "dataset-" + hashlib.sha256(b"data\ndatasets/m/f/_SUCCESS\n\n").hexdigest()[:40]
