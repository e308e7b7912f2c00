"""The promotion gate's paired bootstrap (modelops.domain.bootstrap) and its evaluation rows
(modelops.domain.evaluation): pure numpy, no I/O."""

from __future__ import annotations

import numpy as np
import pytest

from modelops.domain import bootstrap
from modelops.domain import evaluation as evalrows


def noisy(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    return y, y + rng.normal(scale=0.5, size=n)


# ---------------------------------------------------------------------------- the interval
def test_a_clearly_better_candidate_has_an_interval_above_zero() -> None:
    y, good = noisy(500)
    worse = good + 0.4
    iv = bootstrap.paired_bootstrap("regression", "rmse", y, good, y, worse, seed=1)
    assert 0 < iv.lower < iv.improvement < iv.upper
    assert (iv.resamples, iv.undefined, iv.confidence) == (1000, 0, 0.95)


def test_the_sign_follows_the_metrics_direction() -> None:
    rng = np.random.default_rng(2)
    labels = (rng.random(400) < 0.5).astype(np.int64)
    good = np.where(labels == 1, 0.8, 0.2) + rng.normal(scale=0.25, size=400)
    bad = rng.random(400)
    iv = bootstrap.paired_bootstrap("binary", "accuracy", labels, good, labels, bad, seed=3)
    assert iv.lower > 0  # accuracy: higher is better, so a better candidate is positive too
    swapped = bootstrap.paired_bootstrap("binary", "accuracy", labels, bad, labels, good, seed=3)
    assert swapped.upper < 0 and swapped.improvement == pytest.approx(-iv.improvement)


def test_identical_models_have_a_zero_interval() -> None:
    y, out = noisy(100)
    iv = bootstrap.paired_bootstrap("regression", "mae", y, out, y, out.copy(), seed=4)
    assert (iv.improvement, iv.lower, iv.upper) == (0.0, 0.0, 0.0)


def test_the_same_rows_and_seed_give_the_same_interval_and_another_seed_another() -> None:
    y, good = noisy(200, seed=5)
    other = good + np.random.default_rng(6).normal(scale=0.3, size=200)
    a = bootstrap.paired_bootstrap("regression", "rmse", y, good, y, other, seed=11)
    b = bootstrap.paired_bootstrap(
        "regression", "rmse", y.copy(), good.copy(), y.copy(), other.copy(), seed=11
    )
    c = bootstrap.paired_bootstrap("regression", "rmse", y, good, y, other, seed=12)
    assert a == b and a.to_dict() == b.to_dict()
    assert (c.lower, c.upper) != (a.lower, a.upper) and c.improvement == a.improvement


def test_the_seed_comes_from_the_model_and_both_versions() -> None:
    s = bootstrap.seed_for("demo", 3, 2)
    assert s == bootstrap.seed_for("demo", 3, 2) and 0 <= s < 2**63
    assert (
        len(
            {
                s,
                bootstrap.seed_for("demo", 2, 3),
                bootstrap.seed_for("other", 3, 2),
                bootstrap.seed_for("demo", 3, None),
            }
        )
        == 4
    )


def test_resamples_on_which_auc_is_undefined_are_counted_and_left_out() -> None:
    # 3 positives in 30 rows: some resamples draw none of them
    labels = np.zeros(30, dtype=np.int64)
    labels[:3] = 1
    scores = np.linspace(0.9, 0.1, 30)
    iv = bootstrap.paired_bootstrap("binary", "auc", labels, scores, labels, scores[::-1].copy(), seed=7)
    assert iv.undefined > 0 and iv.lower > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.array([]), np.array([]), np.array([]), np.array([])), "no evaluation rows"),
        ((np.ones(3), np.ones(3), np.ones(2), np.ones(3)), "do not line up"),
        ((np.zeros(5), np.ones(5), np.zeros(5), np.ones(5)), "undefined on these rows"),
    ],
)
def test_bad_input_is_a_clear_error(args: tuple[np.ndarray, ...], message: str) -> None:
    task, metric = ("binary", "auc") if "undefined" in message else ("regression", "rmse")
    with pytest.raises(ValueError, match=message):
        bootstrap.paired_bootstrap(task, metric, *args, seed=1)


# ---------------------------------------------------------------------------- the rows
def table(sha: str, text: str) -> evalrows.Table:
    return evalrows.parse(sha, text.encode())


def test_rows_from_several_datasets_are_deduplicated_by_content() -> None:
    a = table("a" * 64, "f1,f2,y\n1,2,3\n4,5,6\n")
    b = table(
        "b" * 64, "f2,f1,y,extra\n2,1,3,x\n8,7,9,x\n"
    )  # the first row is a's first row, columns reordered
    rows = evalrows.combine([a, b], ["f1", "f2"], "y")
    assert (len(rows), rows.duplicates, rows.sha256) == (3, 1, ["a" * 64, "b" * 64])
    assert sorted(map(tuple, evalrows.features_of(rows, ["f1", "f2"]).tolist())) == [(1, 2), (4, 5), (7, 8)]


def test_the_cap_keeps_a_deterministic_sample_whatever_the_order() -> None:
    lines = "\n".join(f"{i},{i * 2},{i % 7}" for i in range(500))
    a = table("a" * 64, "f1,f2,y\n" + lines + "\n")
    b = table("b" * 64, "f1,f2,y\n" + "\n".join(reversed(lines.split("\n"))) + "\n")
    ra = evalrows.combine([a], ["f1", "f2"], "y", max_rows=50)
    rb = evalrows.combine([b], ["f1", "f2"], "y", max_rows=50)
    assert (len(ra), ra.available) == (50, 500)
    assert ra.features.tolist() == rb.features.tolist() and ra.targets == rb.targets


def test_tables_without_a_needed_column_are_skipped_and_bad_rows_counted() -> None:
    a = table("a" * 64, "f1,y\n1,2\n")
    b = table("b" * 64, "f1,f2,y\n1,2,3\n1,x,3\n1,nan,3\n1,2,\n1,2\n")
    rows = evalrows.combine([a, b], ["f1", "f2"], "y")
    assert rows.skipped == [{"sha256": "a" * 64, "missing": ["f2"]}]
    assert (len(rows), rows.unusable) == (1, 4)


@pytest.mark.parametrize(
    ("body", "message"), [(b"", "empty"), (b"\xff\xfe", "UTF-8"), (b"a,a,y\n1,2,3\n", "duplicate")]
)
def test_an_unreadable_csv_is_a_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evalrows.parse("c" * 64, body)


def test_labels_map_to_each_models_classes_and_unknown_labels_are_marked() -> None:
    rows = evalrows.combine([table("a" * 64, "f1,y\n1,yes\n2,no\n3,maybe\n4,1.0\n")], ["f1"], "y")
    by_text = dict(
        zip(rows.targets, evalrows.targets_for(rows, "binary", ["no", "yes"]).tolist(), strict=True)
    )
    assert by_text == {"yes": 1, "no": 0, "maybe": -1, "1.0": -1}
    numeric = evalrows.targets_for(rows, "binary", [0, 1])
    assert dict(zip(rows.targets, numeric.tolist(), strict=True))["1.0"] == 1
    with pytest.raises(ValueError, match="not a number"):
        evalrows.targets_for(rows, "regression", None)
