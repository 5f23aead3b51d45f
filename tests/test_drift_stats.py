"""Each drift test against SciPy's own result, and Evidently's default choice of test."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from cellops.errors import CellopsUsageError
from cellops.monitoring import choice
from cellops.monitoring import stattests as st


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


@pytest.mark.parametrize("n1,n2", [(40, 55), (800, 1200), (30_000, 20_000)])
def test_ks_pvalue_from_statistic_matches_scipy(rng, n1, n2):
    a, b = rng.normal(0, 1, n1), rng.normal(0.05, 1.1, n2)
    expected = stats.ks_2samp(a, b)
    assert st.ks_pvalue(a, b) == pytest.approx(expected.pvalue, rel=1e-12)
    assert st.ks_pvalue_from_d(expected.statistic, n1, n2) == pytest.approx(
        expected.pvalue, rel=1e-9, abs=1e-15
    )


def test_ks_statistic_from_cdfs_is_the_sup_distance(rng):
    a, b = np.sort(rng.normal(0, 1, 500)), np.sort(rng.normal(0.3, 1, 700))
    grid = np.concatenate([a, b])
    f_a = np.searchsorted(a, grid, side="right") / a.size
    f_b = np.searchsorted(b, grid, side="right") / b.size
    assert st.ks_statistic_from_cdfs(f_a, f_b) == pytest.approx(stats.ks_2samp(a, b).statistic)


@pytest.mark.parametrize(
    "make",
    [
        lambda r: (r.normal(0, 1, 1000), r.normal(0.2, 1, 1000)),  # equal sizes
        lambda r: (r.normal(0, 1, 1234), r.normal(0.2, 2, 987)),
        lambda r: (r.integers(0, 7, 3000).astype(float), r.integers(0, 9, 2100).astype(float)),
        lambda r: (r.exponential(1, 1), r.exponential(1, 50)),
    ],
)
def test_wasserstein_matches_scipy(rng, make):
    a, b = make(rng)
    got = st.wasserstein_sorted(np.sort(a), np.sort(b))
    assert got == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9, abs=1e-12)


def test_wasserstein_norm_uses_reference_std_with_floor():
    assert st.wasserstein_norm(0.5, 2.0) == 0.25
    assert st.wasserstein_norm(0.5, 0.0) == pytest.approx(500.0)


def test_chisquare_matches_scipy(rng):
    ref = rng.integers(50, 500, 6).astype(float)
    cur = rng.integers(50, 500, 6).astype(float)
    f_exp = ref * cur.sum() / ref.sum()
    assert st.chisquare_pvalue(ref, cur) == pytest.approx(
        stats.chisquare(cur, f_exp).pvalue, rel=1e-9
    )


def test_chisquare_value_absent_from_reference_is_drift():
    assert st.chisquare_pvalue(np.array([10.0, 0.0]), np.array([5.0, 5.0])) == 0.0


def test_z_test_matches_hand_computation(rng):
    ref, cur = np.array([420.0, 580.0]), np.array([530.0, 470.0])
    n1, n2 = ref.sum(), cur.sum()
    p1, p2 = ref[1] / n1, cur[1] / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    expected = 2 * (1 - stats.norm.cdf(abs(z)))
    assert st.z_pvalue(ref, cur) == pytest.approx(expected, rel=1e-9)
    assert st.z_pvalue(ref[::-1], cur[::-1]) == pytest.approx(expected, rel=1e-9)


def test_z_test_single_shared_value_is_one():
    assert st.z_pvalue(np.array([10.0, 0.0]), np.array([7.0, 0.0])) == 1.0


def test_jensenshannon_matches_scipy(rng):
    p, q = rng.random(30), rng.random(30)
    p[3] = 0.0
    assert st.jensenshannon(p, q) == pytest.approx(distance.jensenshannon(p, q), rel=1e-9)


def test_psi_matches_evidently_formula():
    ref = np.array([0.5, 0.3, 0.2, 0.0])
    cur = np.array([0.4, 0.3, 0.2, 0.1])
    filled = np.array([0.5, 0.3, 0.2, 0.0001])
    expected = np.sum((filled - cur) * np.log(filled / cur))
    assert st.psi(ref, cur) == pytest.approx(expected)
    tiny = np.array([0.99995, 0.00005, 0.0])
    assert st.fill_zeroes(tiny)[2] == pytest.approx(0.00005 / 1e6)


@pytest.mark.parametrize("integer", [False, True])
def test_sturges_edges_match_numpy(rng, integer):
    for n in (30, 1001, 250_000):
        data = rng.integers(0, 25, n) if integer else rng.normal(3, 2, n)
        edges = st.sturges_edges(data.min(), data.max(), data.size, integer=integer)
        np.testing.assert_array_equal(edges, np.histogram_bin_edges(data, bins="sturges"))
        expected = np.histogram(data, edges)[0]
        np.testing.assert_array_equal(st.uniform_histogram(data, edges), expected)
        np.testing.assert_array_equal(st.sorted_histogram(np.sort(data), edges), expected)


def test_constant_column_edges_match_numpy():
    data = np.full(50, 4.0)
    np.testing.assert_array_equal(
        st.sturges_edges(4.0, 4.0, 50), np.histogram_bin_edges(data, bins="sturges")
    )


@pytest.mark.parametrize(
    "kind,rows,n_unique,expected",
    [
        ("numeric", 10, 1, "z"),
        ("numeric", 1000, 2, "z"),
        ("numeric", 1000, 3, "chisquare"),
        ("numeric", 1000, 5, "chisquare"),
        ("numeric", 1000, 6, "ks"),
        ("numeric", 1001, 5, "jensenshannon"),
        ("numeric", 1001, 6, "wasserstein"),
        ("numeric", 1_000_000, 1_000_000, "wasserstein"),
        ("categorical", 999, 2, "z"),
        ("categorical", 1000, 3, "chisquare"),
        ("categorical", 1000, 50_000, "chisquare"),
        ("categorical", 1001, 2, "jensenshannon"),
        ("categorical", 1_000_000, 100_000, "jensenshannon"),
    ],
)
def test_default_test_choice(kind, rows, n_unique, expected):
    assert choice.default_test(kind, rows, n_unique) == expected


def test_thresholds_and_comparisons_are_evidentlys():
    assert choice.THRESHOLDS == {
        "ks": 0.05, "chisquare": 0.05, "z": 0.05,
        "wasserstein": 0.1, "jensenshannon": 0.1, "psi": 0.1,
    }  # fmt: skip
    assert choice.is_drifted("ks", 0.05, 0.05)  # p <= threshold
    assert not choice.is_drifted("chisquare", 0.05, 0.05)  # p < threshold
    assert not choice.is_drifted("z", 0.05, 0.05)
    assert choice.is_drifted("wasserstein", 0.1, 0.1)  # distance >= threshold
    assert not choice.is_drifted("psi", 0.0999, 0.1)
    assert not choice.is_drifted("jensenshannon", float("nan"), 0.1)


def test_unknown_stattest_lists_the_valid_ones():
    assert choice.check_stattest(" PSI ") == "psi"
    with pytest.raises(CellopsUsageError, match="ks, chisquare, z, wasserstein"):
        choice.check_stattest("kolmogorov")
