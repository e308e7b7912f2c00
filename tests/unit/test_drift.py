"""Drift statistics: PSI and KS agree with an independent computation (numpy by hand, scipy) to 1e-9,
partials merge exactly, and the binned Wasserstein stays within its stated bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from modelops.domain import drift, metrics
from modelops.domain.baseline import column_stats, compute_baseline


def _ref(train: np.ndarray, name: str = "x", bins: int = 10) -> drift.FeatureReference:
    return drift.FeatureReference.from_stats(name, column_stats(train, bins))


def _psi_by_hand(edges: np.ndarray, ref_props: np.ndarray, current: np.ndarray) -> float:
    # np.digitize(right=False) gives i with edges[i-1] <= x < edges[i], the baseline's bin rule
    cur = current[np.isfinite(current)]
    counts = np.bincount(np.digitize(cur, edges, right=False), minlength=len(edges) + 1)
    p = counts / counts.sum()
    q = np.asarray(ref_props, dtype=float)
    p = np.where(p == 0, 1e-4, p)
    q = np.where(q == 0, 1e-4, q)
    total = 0.0
    for pi, qi in zip(p, q, strict=True):
        total += (pi - qi) * np.log(pi / qi)
    return total


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


def test_psi_and_ks_match_independent_computation(rng: np.random.Generator) -> None:
    # Given a training column and a shifted window (float32, as captured)
    train = rng.normal(0.0, 1.0, 20_000)
    ref = _ref(train)
    current = rng.normal(0.4, 1.2, 50_000).astype(np.float32)
    # When
    got = drift.compare(ref, drift.partial(ref, current))
    # Then
    expected_psi = _psi_by_hand(ref.edges, ref.proportions, current.astype(np.float64))
    expected_ks = stats.ks_2samp(ref.sample, current.astype(np.float64)).statistic
    assert got.psi == pytest.approx(expected_psi, abs=1e-9)
    assert got.ks == pytest.approx(expected_ks, abs=1e-9)
    assert got.psi > 0.1 and got.ks > 0.1


def test_ks_exact_with_ties_and_chunks(rng: np.random.Generator) -> None:
    # integers force ties between the reference sample and the window, and inside the window
    train = rng.integers(0, 20, 5_000).astype(float)
    ref = _ref(train)
    current = rng.integers(2, 25, 30_000).astype(np.float32)
    merged = drift.FeaturePartial.empty(ref)
    for chunk in np.array_split(current, 7):
        merged.merge(drift.partial(ref, chunk))
    got = drift.compare(ref, merged)
    assert got.ks == pytest.approx(stats.ks_2samp(ref.sample, current.astype(float)).statistic, abs=1e-9)
    assert got.ks == pytest.approx(drift.ks_exact(ref.sample, current), abs=1e-12)
    assert got.psi == pytest.approx(_psi_by_hand(ref.edges, ref.proportions, current.astype(float)), abs=1e-9)


def test_psi_empty_bins_use_the_epsilon_floor(rng: np.random.Generator) -> None:
    ref = _ref(rng.uniform(0, 1, 10_000))
    current = np.full(1000, 0.05)  # everything in the first decile
    got = drift.compare(ref, drift.partial(ref, current))
    q = ref.proportions
    p = np.array([1.0] + [1e-4] * 9)
    assert got.psi == pytest.approx(float(np.sum((p - q) * np.log(p / q))), abs=1e-9)


def test_missing_and_out_of_range_rates(rng: np.random.Generator) -> None:
    train = rng.uniform(-1, 1, 5_000).astype(np.float32).astype(np.float64)  # model inputs are float32
    ref = _ref(train)
    current = np.concatenate(
        [
            rng.uniform(-1, 1, 900),
            [np.nan] * 40,
            [np.inf, -np.inf],
            [5.0] * 30,
            [-7.0] * 28,
            [train.max(), train.min()],
        ]
    )
    got = drift.compare(ref, drift.partial(ref, current))
    assert got.count == current.size
    assert got.missing_rate == pytest.approx(42 / current.size)
    with np.errstate(invalid="ignore"):
        outside = np.isfinite(current) & ((current < train.min()) | (current > train.max()))
    assert outside.sum() >= 58
    assert got.out_of_range_rate == pytest.approx(outside.sum() / current.size)
    assert got.n == current.size - 42


def test_wasserstein_exact_path_matches_scipy_and_is_normalised(rng: np.random.Generator) -> None:
    train = rng.normal(3.0, 2.0, 10_000).astype(np.float32).astype(np.float64)  # model inputs are float32
    ref = _ref(train)
    current = rng.normal(3.5, 2.0, 5_000)
    got = drift.compare(ref, drift.partial(ref, current))
    w = stats.wasserstein_distance(ref.sample, current)
    assert got.exact and got.wasserstein_bound == 0.0
    assert got.wasserstein == pytest.approx(w, abs=1e-9)
    assert got.wasserstein_norm == pytest.approx(w / train.std(), rel=1e-12)


def test_binned_wasserstein_within_its_bound(rng: np.random.Generator) -> None:
    train = rng.normal(0.0, 1.0, 10_000)
    ref = _ref(train)
    current = rng.normal(0.2, 1.1, 40_000)
    part = drift.FeaturePartial.from_dict(drift.partial(ref, current).to_dict())  # drops the raw values
    got = drift.compare(ref, part)
    exact = stats.wasserstein_distance(ref.sample, current)
    assert not got.exact
    assert got.wasserstein_bound is not None and got.wasserstein is not None
    assert abs(got.wasserstein - exact) <= got.wasserstein_bound + 1e-9
    assert got.wasserstein_bound < 0.01 * exact


def test_windows_beyond_the_exact_limit_drop_raw_values(rng: np.random.Generator, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(drift, "EXACT_LIMIT", 1_000)
    ref = _ref(rng.normal(size=5_000))
    merged = drift.FeaturePartial.empty(ref)
    for _ in range(3):
        merged.merge(drift.partial(ref, rng.normal(size=600)))
    assert merged.raw is None and merged.finite == 1_800


@settings(max_examples=60, deadline=None)
@given(
    a=st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=200),
    b=st.lists(st.one_of(st.floats(-60, 60), st.integers(-60, 60).map(float)), min_size=1, max_size=200),
)
def test_merging_partials_equals_one_partial_of_everything(a: list[float], b: list[float]) -> None:
    ref = _ref(np.arange(-40, 41, dtype=float), bins=5)
    whole = drift.partial(ref, np.array(a + b))
    merged = drift.partial(ref, np.array(a)).merge(drift.partial(ref, np.array(b)))
    assert merged.count == whole.count and merged.missing == whole.missing
    np.testing.assert_array_equal(merged.cells, whole.cells)
    np.testing.assert_array_equal(merged.ties, whole.ties)
    np.testing.assert_allclose(merged.sums, whole.sums, atol=1e-9)
    values = np.array(a + b)
    values = values[np.isfinite(values)]
    assert drift.ks_statistic(ref, merged) == pytest.approx(
        stats.ks_2samp(ref.sample, values).statistic, abs=1e-9
    )


def test_partial_survives_json_round_trip(rng: np.random.Generator) -> None:
    ref = _ref(rng.normal(size=3_000))
    p = drift.partial(ref, rng.normal(size=2_000))
    q = drift.FeaturePartial.from_dict(p.to_dict())
    assert (q.count, q.missing, q.vmin, q.vmax) == (p.count, p.missing, p.vmin, p.vmax)
    np.testing.assert_array_equal(q.cells, p.cells)
    with pytest.raises(ValueError):
        q.merge(drift.FeaturePartial.empty(_ref(rng.normal(size=10), bins=3)))


def test_references_from_a_baseline_and_malformed_ones(rng: np.random.Generator) -> None:
    x = rng.normal(size=(500, 3))
    b = compute_baseline(x, ["a", "b", "c"], x[:, 0])
    refs, pred = drift.references(b, ["a", "b", "c"])
    assert [r.name for r in refs] == ["a", "b", "c"] and pred.name == "prediction"
    with pytest.raises(ValueError):
        drift.references(b, ["a", "zz"])
    bad = dict(b["features"]["a"], proportions=[0.5, 0.5])
    with pytest.raises(ValueError):
        drift.FeatureReference.from_stats("a", bad)


def test_all_missing_column_gives_no_psi(rng: np.random.Generator) -> None:
    ref = _ref(rng.normal(size=1_000))
    got = drift.compare(ref, drift.partial(ref, np.full(10, np.nan, dtype=np.float32)))
    assert got.psi is None and got.ks is None and got.missing_rate == 1.0


def test_quality_regression_and_classification(rng: np.random.Generator) -> None:
    y = rng.normal(size=(200, 1))
    labels = list(rng.normal(size=200))
    q = metrics.quality("regression", y, labels)
    err = y[:, 0] - np.array(labels)
    assert q["rmse"] == pytest.approx(np.sqrt(np.mean(err**2))) and q["mae"] == pytest.approx(
        np.mean(np.abs(err))
    )

    prob = rng.uniform(size=300)
    lab = (rng.uniform(size=300) < prob).astype(int)
    q = metrics.quality("binary", prob[:, None], lab.tolist())
    u = stats.mannwhitneyu(prob[lab == 1], prob[lab == 0]).statistic
    assert q["auc"] == pytest.approx(u / ((lab == 1).sum() * (lab == 0).sum()), abs=1e-12)
    assert q["accuracy"] == pytest.approx(np.mean((prob >= 0.5) == lab))

    probs = rng.dirichlet([1, 1, 1], size=300)
    names = ["a", "b", "c"]
    truth = rng.integers(0, 3, 300)
    q = metrics.quality("multiclass", probs, [names[i] for i in truth] + [], classes=names)
    assert q["accuracy"] == pytest.approx(np.mean(np.argmax(probs, 1) == truth))
    assert 0.0 <= q["auc"] <= 1.0
    q = metrics.quality("multiclass", probs, ["nope"] + [names[i] for i in truth[1:]], classes=names)
    assert q["unusable"] == 1 and q["n"] == 299


def test_one_class_matcher_for_csv_text_and_captured_labels() -> None:
    """The gate (labels as CSV text) and the monitor (labels as JSON) match classes the same way."""
    from modelops.domain.metrics import match_class

    assert match_class("1.0", [0, 1]) == 1 and match_class(1, [0, 1]) == 1
    assert match_class("setosa", ["setosa", "virginica"]) == 0 and match_class("3", ["1", "3"]) == 1
    assert match_class("2", [0, 1]) is None and match_class(None, [0, 1]) is None
    assert match_class("1", [True, False]) is None  # a boolean is not the number 1 here


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-5, 5), min_size=0, max_size=300),
    st.lists(st.floats(-6, 6, allow_nan=False, width=32), min_size=0, max_size=100),
)
def test_partial_cells_and_ties_count_every_value_as_a_brute_force_does(
    ints: list[int], floats: list[float]
) -> None:
    """Cells and ties against a count by hand, with many values exactly on grid points (integers)."""
    train = np.arange(-4, 5, dtype=np.float64).repeat(30)
    ref = drift.references(compute_baseline(train[:, None], ["a"], train), ["a"])[0][0]
    values = np.asarray([*ints, *floats], dtype=np.float32)
    part = drift.partial(ref, values)
    grid = ref.grid
    v = values.astype(np.float64)
    expected_ties = [int(np.sum(v == g)) for g in grid]
    edges = np.concatenate([[-np.inf], grid, [np.inf]])
    expected_cells = [int(np.sum((v >= lo) & (v < hi))) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    assert part.ties.tolist() == expected_ties
    assert part.cells.tolist() == expected_cells
