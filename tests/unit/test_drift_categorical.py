"""Categorical features in the baseline, the drift statistics, the verdict and the report: PSI over the
vocabulary plus OOV, the new-category rate as its own statistic, corrupt indices counted, category
values escaped in the HTML report; numeric features exactly as before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelops.domain import drift
from modelops.domain import report as reports
from modelops.domain.baseline import column_stats, compute_baseline
from modelops.domain.encoding import InputSchema

VOCAB = ["basic", "pro", "team"]
SHARES = [0.5, 0.3, 0.18, 0.02]  # basic, pro, team, OOV


def _schema(vocab: list[str] = VOCAB) -> InputSchema:
    return InputSchema.from_dict(
        {"features": [{"name": "age"}, {"name": "plan", "type": "categorical", "vocabulary": vocab}]}
    )


def _indices(shares: list[float], n: int, seed: int = 0) -> np.ndarray:
    """``n`` indices with exactly these shares (rounded), shuffled."""
    counts = np.round(np.asarray(shares) * n).astype(int)
    counts[0] += n - counts.sum()
    idx = np.repeat(np.arange(len(shares)), counts).astype(np.float32)
    return np.random.default_rng(seed).permutation(idx)


def _baseline(n: int = 10_000) -> dict:
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.normal(40, 10, n), _indices(SHARES, n)]).astype(np.float32)
    return compute_baseline(x, ["age", "plan"], x[:, 0] / 100, schema=_schema())


def _ref(baseline: dict | None = None) -> drift.FeatureReference:
    return drift.FeatureReference.from_stats("plan", (baseline or _baseline())["features"]["plan"])


def _psi_by_hand(ref: list[float], counts: np.ndarray) -> float:
    p = counts / counts.sum()
    q = np.asarray(ref)
    p = np.where(p == 0, 1e-4, p)
    q = np.where(q == 0, 1e-4, q)
    return float(sum((pi - qi) * np.log(pi / qi) for pi, qi in zip(p, q, strict=True)))


# ---------------------------------------------------------------------------------------------- baseline
def test_a_categorical_baseline_stores_the_shares_of_each_index_and_oov() -> None:
    b = _baseline()
    plan = b["features"]["plan"]
    assert b["schema_version"] == 2
    assert set(plan) == {"type", "count", "missing", "vocabulary", "proportions", "oov_rate"}
    assert plan["type"] == "categorical" and plan["vocabulary"] == VOCAB and plan["missing"] == 0
    assert plan["count"] == 10_000
    assert plan["proportions"] == pytest.approx(SHARES) and plan["oov_rate"] == pytest.approx(0.02)
    assert "type" not in b["features"]["age"] and len(b["features"]["age"]["edges"]) == 9


def test_a_numeric_schema_or_none_gives_the_baseline_of_today() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (500, 2))
    numeric = InputSchema.from_dict({"features": ["a", "b"]})
    old = compute_baseline(x, ["a", "b"], x[:, 0])
    assert compute_baseline(x, ["a", "b"], x[:, 0], schema=numeric) == old
    assert old["schema_version"] == 1
    assert old["features"]["a"] == column_stats(x[:, 0], 10, 0)


def test_a_training_column_that_is_not_indices_is_refused() -> None:
    x = np.array([[1.0, 0], [2.0, 4], [3.0, 1]])  # 4 > OOV index 3
    with pytest.raises(ValueError, match=r"'plan': 1 value\(s\) are not vocabulary indices 0..3"):
        compute_baseline(x, ["age", "plan"], x[:, 0], schema=_schema())
    x[1, 1] = 0.5
    with pytest.raises(ValueError, match="not vocabulary indices"):
        compute_baseline(x, ["age", "plan"], x[:, 0], schema=_schema())


def test_the_schema_must_name_the_same_features() -> None:
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="the schema's features"):
        compute_baseline(x, ["plan", "age"], x[:, 0], schema=_schema())


# ---------------------------------------------------------------------------------------------- statistics
def test_an_unchanged_distribution_has_psi_near_zero_and_no_new_category_rise() -> None:
    ref = _ref()
    got = drift.compare(ref, drift.partial(ref, _indices(SHARES, 4000, seed=9)))
    assert got.psi is not None and got.psi < 1e-4
    assert got.categorical is not None
    assert got.categorical.new_category_rate == pytest.approx(0.02)
    assert got.categorical.new_category_rise == pytest.approx(0.0, abs=1e-9)
    assert got.ks is None and got.wasserstein is None and got.mean is None  # numeric-only statistics


def test_a_shifted_distribution_has_the_psi_computed_by_hand() -> None:
    ref = _ref()
    current = _indices([0.1, 0.3, 0.6, 0.0], 2000)  # no OOV at all: an empty bucket takes the floor
    got = drift.compare(ref, drift.partial(ref, current))
    counts = np.bincount(current.astype(int), minlength=4)
    assert got.psi == pytest.approx(_psi_by_hand(SHARES, counts), abs=1e-9)
    assert got.psi > 0.2
    assert got.current_proportions == pytest.approx([0.1, 0.3, 0.6, 0.0])
    assert got.categorical is not None and got.categorical.counts == counts.tolist()


def test_the_new_category_rate_counts_the_oov_index() -> None:
    ref = _ref()
    current = _indices([0.45, 0.25, 0.15, 0.15], 1000)  # OOV 2% -> 15%
    got = drift.compare(ref, drift.partial(ref, current)).to_dict()
    assert got["type"] == "categorical"
    assert got["new_category_rate"] == pytest.approx(0.15)
    assert got["baseline_new_category_rate"] == pytest.approx(0.02)
    assert got["new_category_rise"] == pytest.approx(0.13)
    assert got["counts"][-1] == 150 and got["vocabulary"] == VOCAB


def test_corrupt_indices_are_counted_and_left_out() -> None:
    ref = _ref()
    good = _indices(SHARES, 1000)
    bad = np.array([-1.0, 4.0, 99.0, 0.5, np.nan, np.inf], dtype=np.float32)
    got = drift.compare(ref, drift.partial(ref, np.concatenate([good, bad])))
    assert got.categorical is not None and got.categorical.invalid == 6
    assert got.count == 1006 and got.n == 1000
    assert got.missing_rate == pytest.approx(6 / 1006)
    assert got.psi is not None and got.psi < 1e-4  # the valid rows are unchanged
    only_bad = drift.compare(ref, drift.partial(ref, bad))
    assert only_bad.psi is None and only_bad.categorical is not None
    assert only_bad.categorical.new_category_rate is None and only_bad.categorical.invalid == 6


def test_categorical_partials_merge_and_survive_json() -> None:
    ref = _ref()
    current = _indices([0.2, 0.2, 0.2, 0.4], 3000)
    merged = drift.FeaturePartial.empty(ref)
    for chunk in np.array_split(current, 5):
        merged.merge(
            drift.FeaturePartial.from_dict(json.loads(json.dumps(drift.partial(ref, chunk).to_dict())))
        )
    whole = drift.compare(ref, drift.partial(ref, current))
    assert drift.compare(ref, merged).to_dict() == whole.to_dict()


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"type": "categorical", "vocabulary": ["a", "b"], "proportions": [0.5, 0.5]}, "expected one more"),
        ({"type": "categorical", "vocabulary": "ab", "proportions": [1.0]}, "list of strings"),
        ({"type": "categorical", "vocabulary": ["a"], "proportions": [0.5, -0.5]}, "not negative"),
        ({"type": "categorical", "vocabulary": ["a"], "proportions": "x"}, "malformed"),
        ({"type": "text", "edges": []}, "unknown type"),
    ],
)
def test_malformed_categorical_baselines_are_refused(block: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        drift.FeatureReference.from_stats("plan", block)


# ---------------------------------------------------------------------------------------------- verdict
def _judge(current: np.ndarray, **ctx_kw: float) -> dict:
    b = _baseline()
    refs, pred_ref = drift.references(b, ["age", "plan"])
    ctx = drift.VersionContext("m", 1, ["age", "plan"], refs=refs, pred_ref=pred_ref, **ctx_kw)  # type: ignore[arg-type]
    n = current.size
    age = np.random.default_rng(5).normal(40, 10, n).astype(np.float32)
    parts = [drift.partial(refs[0], age), drift.partial(refs[1], current)]
    return drift.judge(ctx, parts, drift.partial(pred_ref, age / 100), n, 100)


def test_a_new_category_rise_alone_is_drift_with_its_reason() -> None:
    # OOV 2% -> 9%: PSI stays under 0.2, the rate rises 7 points (> 5)
    out = _judge(_indices([0.46, 0.28, 0.17, 0.09], 5000))
    (plan,) = out["drifted_features"]
    assert out["verdict"] == "drift" and plan["name"] == "plan" and plan["psi"] < 0.2
    assert plan["reasons"] == ["new_category_rate"] and plan["type"] == "categorical"
    assert plan["new_category_rate"] == pytest.approx(0.09)
    assert plan["new_category_threshold"] == drift.NEW_CATEGORY_THRESHOLD
    assert out["max_new_category_rise"] == pytest.approx(0.07)
    # a looser threshold: the same window is ok
    assert _judge(_indices([0.46, 0.28, 0.17, 0.09], 5000), new_category_threshold=0.1)["verdict"] == "ok"


def test_a_psi_breach_on_a_categorical_feature_is_drift() -> None:
    out = _judge(_indices([0.1, 0.3, 0.58, 0.02], 5000))
    (plan,) = out["drifted_features"]
    assert plan["reasons"] == ["psi"] and plan["psi"] > 0.2


def test_a_numeric_version_has_no_categorical_fields() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (2000, 2))
    refs, pred_ref = drift.references(compute_baseline(x, ["a", "b"], x[:, 0]), ["a", "b"])
    ctx = drift.VersionContext("m", 1, ["a", "b"], refs=refs, pred_ref=pred_ref)
    cur = rng.normal(3, 1, (500, 2))
    parts = [drift.partial(r, cur[:, i]) for i, r in enumerate(refs)]
    out = drift.judge(ctx, parts, drift.partial(pred_ref, cur[:, 0]), 500, 100)
    assert "max_new_category_rise" not in out and "new_category_threshold" not in out
    assert set(out["drifted_features"][0]) == {"name", "psi", "ks", "wasserstein_norm"}
    assert "type" not in out["features"][0]


# ---------------------------------------------------------------------------------------------- report
def test_category_values_are_escaped_in_the_html_report() -> None:
    vocab = ["<script>alert(1)</script>", "pro", "a&b"]
    b = compute_baseline(
        np.column_stack([np.arange(100.0), _indices(SHARES, 100)]),
        ["age", "plan"],
        np.zeros(100),
        schema=_schema(vocab),
    )
    refs, pred_ref = drift.references(b, ["age", "plan"])
    ctx = drift.VersionContext("m<b>", 1, ["age", "plan"], refs=refs, pred_ref=pred_ref)
    cur = _indices([0.1, 0.1, 0.1, 0.7], 500)
    parts = [drift.partial(refs[0], np.arange(500.0)), drift.partial(refs[1], cur)]
    result = {
        "model": "m<b>",
        "version": 1,
        "samples": 500,
        "lines": 500,
        "psi_threshold": 0.2,
        **drift.judge(ctx, parts, drift.partial(pred_ref, np.zeros(500)), 500, 100),
    }
    doc = reports.model_report("m<b>", [result], {"start": "s", "end": "e"}, "now", 100, 0)
    html = reports.render_html({**doc, "report": "r", "report_html": "h"})
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "a&amp;b" in html
    assert "(new / missing)" in html and "70.00%" in html  # the window's OOV share
    assert "Categorical features" in html
    # the JSON keeps the raw value (JSON is not HTML)
    assert json.loads(reports.to_json(doc))["versions"][0]["features"][1]["vocabulary"][0] == vocab[0]


def test_a_large_vocabulary_shows_its_largest_categories_the_rest_and_oov() -> None:
    vocab = [f"c{i}" for i in range(50)]
    shares = [1.0 / 51] * 51
    feature = {
        "type": "categorical",
        "vocabulary": vocab,
        "reference_proportions": shares,
        "current_proportions": [0.5] + [0.0] * 49 + [0.5],
    }
    rows = reports.category_shares(feature)
    assert len(rows) == reports.SHOWN_CATEGORIES + 2
    assert rows[0] == ("c0", pytest.approx(1 / 51), 0.5)
    assert rows[-2][0] == "(30 other categories)" and rows[-2][1] == pytest.approx(30 / 51)
    assert rows[-1] == (reports.OOV_LABEL, pytest.approx(1 / 51), 0.5)
    svg = reports.bar_chart(feature)
    assert svg.count("<rect") == 2 * len(rows)
