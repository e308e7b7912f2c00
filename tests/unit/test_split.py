"""The platform's split (issue 14): each row's side is decided by a hash of its content, so the same
row lands on the same side in every dataset of a model; the evaluation rows never train."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import pytest

from modelops.domain.dataset import Limits, validate_evaluation_stream, validate_stream
from modelops.domain.spec import parse_spec
from modelops.domain.split import (
    SplitPlan,
    bucket,
    canonical_cell,
    check_split,
    identity,
    is_evaluation,
    project_csv,
    split_csv,
)

REG = parse_spec({"task": "regression", "target": "y", "features": ["a", "b"]})


def rows_of(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------- one row
def test_canonical_cells_ignore_how_a_value_is_written() -> None:
    assert canonical_cell("1") == canonical_cell("1.0") == canonical_cell(" 1e0 ") == "1.0"
    assert canonical_cell("-0") == canonical_cell("0") == "0.0"
    assert canonical_cell("") == canonical_cell("NA") == canonical_cell(" null ") == ""
    assert canonical_cell(" yes ") == "yes"
    assert identity(["1", "NA", "x"]) == "1.0\x1f\x1fx"


def test_the_bucket_is_the_documented_sha256_rule() -> None:
    text = identity(["3", "4.5", "7"])
    expected = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2**32
    assert bucket(text) == expected and 0.0 <= expected < 1.0
    assert is_evaluation(text, 0.2) == (expected < 0.2)


def test_the_same_row_lands_on_the_same_side_whatever_the_dataset_around_it() -> None:
    # Given one row written in two datasets: other columns, another column order, other spelling
    one = SplitPlan.for_dataset(REG, ["a", "b", "y"], ["a", "b"])
    two = SplitPlan.for_dataset(REG, ["id", "y", "b", "a"], ["a", "b"])
    for i in range(500):
        a, b, y = str(i), str(i % 7), str(2 * i)
        # Then its identity, and so its side, is the same in both
        assert one.row_identity([a, b, y]) == two.row_identity(["row-" + a, y + ".0", b, a + ".0"])
        assert one.to_evaluation([a, b, y]) == two.to_evaluation(["x", y, b, a])


def test_the_share_is_respected_on_10k_rows() -> None:
    plan = SplitPlan.for_dataset(REG, ["a", "b", "y"], ["a", "b"])
    for share in (0.1, 0.2, 0.5):
        plan = SplitPlan(share=share, header=("a", "b", "y"), features=("a", "b"), target="y")
        held = sum(plan.to_evaluation([str(i), str(i * 3 % 17), str(i % 101)]) for i in range(10_000))
        # binomial standard deviation at 10k rows is at most 0.5 %: 2 % is four of them
        assert abs(held / 10_000 - share) < 0.02, (share, held)


def test_a_split_key_keeps_rows_that_share_it_together() -> None:
    spec = parse_spec(
        {"task": "regression", "target": "y", "features": ["a"], "training": {"split_key": "customer"}}
    )
    plan = SplitPlan.for_dataset(spec, ["customer", "a", "y"], ["a"])
    sides: dict[str, set[bool]] = {}
    for i in range(2000):
        customer = f"c{i % 50}"
        sides.setdefault(customer, set()).add(plan.to_evaluation([customer, str(i), str(i * 2)]))
    assert all(len(s) == 1 for s in sides.values())  # every customer on one side only
    assert {True, False} == {next(iter(s)) for s in sides.values()}  # and both sides are used
    with pytest.raises(ValueError, match="split_key"):
        SplitPlan.for_dataset(spec, ["a", "y"], ["a"])


# ---------------------------------------------------------------------------- one dataset
def test_split_csv_writes_each_row_to_exactly_one_side(tmp_path: Path) -> None:
    # Given a validated dataset (BOM, CRLF, a missing cell, quoting, an extra column)
    lines = ["a,b,note,y"] + [f'{i},{"NA" if i == 7 else i % 5},"x, {i}",{i * 3 + i % 5}' for i in range(400)]
    src = tmp_path / "d.csv"
    src.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    report = validate_stream([src.read_bytes()], REG)
    assert report.ok, report.reason
    plan = SplitPlan.for_dataset(REG, report.columns, report.features)

    # When the platform splits it
    got = split_csv(src, plan, tmp_path / "train.csv", tmp_path / "eval.csv", "regression")

    # Then the training side keeps the original columns and the evaluation side features + target
    train, held = rows_of(tmp_path / "train.csv"), rows_of(tmp_path / "eval.csv")
    assert train[0] == ["a", "b", "note", "y"] and held[0] == ["a", "b", "y"]
    assert got.train.rows == len(train) - 1 and got.evaluation.rows == len(held) - 1
    assert got.train.rows + got.evaluation.rows == 400 and 40 < got.evaluation.rows < 130
    # every row on exactly one side, and on the side its content says
    train_ids = {(r[0], r[1], r[3]) for r in train[1:]}
    held_ids = {(r[0], r[1], r[2]) for r in held[1:]}
    assert not {t[0] for t in train_ids} & {h[0] for h in held_ids}
    assert len(train_ids) + len(held_ids) == 400
    assert all(plan.to_evaluation(list(r)) is False for r in train[1:])
    assert ("7", "", "23") in held_ids or ("7", "NA", "23") in train_ids  # missing → empty on the eval side
    # the recorded hashes are those of the bytes written
    assert got.train.sha256 == hashlib.sha256((tmp_path / "train.csv").read_bytes()).hexdigest()
    assert got.evaluation.sha256 == hashlib.sha256((tmp_path / "eval.csv").read_bytes()).hexdigest()
    assert got.record()["method"] == "sha256-row-v1" and got.record()["share"] == 0.2
    # and the training rows validate as the trainer will validate them
    assert validate_stream([(tmp_path / "train.csv").read_bytes()], REG).ok


def test_check_split_refuses_training_rows_that_cannot_train(tmp_path: Path) -> None:
    # 12 rows at a 0.5 share: the training side gets fewer than the 10 the trainer needs
    spec = parse_spec({"task": "regression", "target": "y", "training": {"validation_split": 0.5}})
    src = write(tmp_path / "d.csv", "a,y\n" + "".join(f"{i},{i}\n" for i in range(12)))
    plan = SplitPlan.for_dataset(spec, ["a", "y"], ["a"])
    got = split_csv(src, plan, tmp_path / "t.csv", tmp_path / "e.csv", "regression")
    problem = check_split(got, spec, Limits())
    assert problem is not None and problem.code == "too_few_rows" and "split" in problem.message

    # a target that varies only across the evaluation side leaves a constant training target
    got.train_target_range = (3.0, 3.0)
    got.train.rows = 100
    problem = check_split(got, spec, Limits())
    assert problem is not None and problem.code == "constant_target"

    binary = parse_spec({"task": "binary", "target": "y"})
    got.train_target_range, got.train_classes = None, [1]
    problem = check_split(got, binary, Limits())
    assert problem is not None and problem.code == "single_class"


def test_project_csv_writes_features_then_target(tmp_path: Path) -> None:
    src = write(tmp_path / "p.csv", "y,b,a\n1,2,3\n4,NA,6\n")
    side = project_csv(src, ["y", "b", "a"], ["a", "b", "y"], tmp_path / "out.csv")
    assert rows_of(tmp_path / "out.csv") == [["a", "b", "y"], ["3", "2", "1"], ["6", "", "4"]]
    assert side.rows == 2


# ---------------------------------------------------------------------------- validation (issue 14)
def test_a_constant_target_is_rejected() -> None:
    body = "a,y\n" + "".join(f"{i},5\n" for i in range(50))
    report = validate_stream([body.encode()], parse_spec({"task": "regression", "target": "y"}))
    assert report.code == "constant_target" and "same value (5)" in report.reason


def test_a_missing_split_key_column_is_rejected() -> None:
    spec = parse_spec({"task": "regression", "target": "y", "training": {"split_key": "customer"}})
    body = "a,y\n" + "".join(f"{i},{i}\n" for i in range(50))
    report = validate_stream([body.encode()], spec)
    assert report.code == "missing_split_key" and "customer" in report.reason


CLS = parse_spec({"task": "binary", "target": "y", "features": ["a", "b"]})


@pytest.mark.parametrize(
    ("body", "classes", "code"),
    [
        ("a,y\n1,0\n", None, "missing_features"),
        ("a,b,c,y\n1,2,3,0\n", None, "extra_columns"),
        ("a,b\n1,2\n", None, "missing_target"),
        ("a,b,y\n1,2,0\n3,4,2\n", [0, 1], "unknown_labels"),
        ("a,b,y\n1,2,0\n3,4,1\n5,6,2\n", None, "unknown_labels"),  # binary: at most two labels
        ("", None, "empty_file"),
        ("a,b,y\n", None, "no_rows"),
        ("a,b,y\n1,2,1\n", [0, 1], None),  # one row and one class are fine for an evaluation set
        ("b,y,a\n1,yes,2\n", ["no", "yes"], None),
    ],
)
def test_evaluation_sets_are_validated_against_the_models_columns_and_classes(
    body: str, classes: list[object] | None, code: str | None
) -> None:
    report = validate_evaluation_stream([body.encode()], CLS, classes=classes)
    assert report.code == code, report.reason


def test_an_evaluation_set_without_declared_features_takes_productions() -> None:
    spec = parse_spec({"task": "regression", "target": "y"})
    ok = validate_evaluation_stream([b"a,b,y\n1,2,3\n"], spec, features=["a", "b"])
    assert ok.ok and ok.features == ["a", "b"]
    extra = validate_evaluation_stream([b"a,b,c,y\n1,2,3,4\n"], spec, features=["a", "b"])
    assert extra.code == "extra_columns" and "c" in extra.reason
    # (issue 16) with no features known, a text column is a categorical feature, not an extra column
    text = validate_evaluation_stream([b"a,name,y\n1,x,3\n"], spec)
    assert text.ok and text.feature_types == {"a": "numeric", "name": "categorical"}
    blank = validate_evaluation_stream([b"a,blank,y\n1,,3\n"], spec)
    assert blank.code == "extra_columns" and "blank" in blank.reason
