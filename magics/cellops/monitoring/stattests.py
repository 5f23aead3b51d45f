"""The statistical tests, computed as Evidently 0.7 computes them, from arrays or counts.

Each function takes what it needs already reduced (sorted samples, aligned counts, CDF values)
so that the raw-data engine and the profile engine share them. Inputs are free of missing and
non-finite values (see `columns.finite_values`). See `choice.py` for where each formula comes from.
"""

from __future__ import annotations

import math

import numpy as np

# scipy.stats.ks_2samp tries the exact distribution up to this many rows on either side
KS_MAX_EXACT_N = 10_000


def ks_pvalue(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sided two-sample Kolmogorov-Smirnov p-value (`scipy.stats.ks_2samp`, method auto)."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(reference, current).pvalue)


def ks_pvalue_from_d(d: float, n1: int, n2: int) -> float:
    """The p-value `ks_2samp` gives for the statistic `d` with samples of n1 and n2 rows."""
    from scipy.stats import distributions

    d = float(min(max(d, 0.0), 1.0))
    if max(n1, n2) <= KS_MAX_EXACT_N:
        try:
            from scipy.stats._stats_py import _attempt_exact_2kssamp

            success, d, prob = _attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), d, "two-sided")
            if success:
                return float(np.clip(prob, 0, 1))
        except (ImportError, TypeError, ValueError):  # a SciPy without the private helper
            pass
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(distributions.kstwo.sf(d, np.round(en)), 0, 1))


def wasserstein_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """First Wasserstein distance of two sorted samples, as `scipy.stats.wasserstein_distance`.

    Uses W1 = integral over p of |Qa(p) - Qb(p)|: the breakpoints i/n and j/m of the two step
    quantile functions are merged by integer arithmetic (i*m and j*n), with no sort and no
    binary search, so the cost is a few passes over n + m values.
    """
    n, m = len(a), len(b)
    if n == m:
        return float(np.mean(np.abs(a - b)))
    i = np.arange(n, dtype=np.int64)
    j = np.arange(m, dtype=np.int64)
    # position in the merged order of breakpoints (b first on ties)
    pos_a = i + (i * m) // n + 1
    pos_b = j + (j * n + m - 1) // m
    t = np.empty(n + m, dtype=np.int64)
    t[pos_a] = i * m
    t[pos_b] = j * n
    qa = np.empty(n + m, dtype=np.float64)
    qb = np.empty(n + m, dtype=np.float64)
    qa[pos_a] = a
    qa[pos_b] = a[(j * n) // m]
    qb[pos_b] = b
    qb[pos_a] = b[np.minimum((i * m) // n, m - 1)]
    widths = np.diff(t, append=n * m)
    return float(np.dot(widths, np.abs(qa - qb)) / (n * m))


def wasserstein_norm(distance: float, reference_std: float) -> float:
    """Evidently's normed Wasserstein: the distance over max(std(reference), 0.001)."""
    return float(distance / max(float(reference_std), 0.001))


def chisquare_pvalue(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Chi-square p-value of current counts against reference counts scaled to the current total.

    Evidently: f_exp = reference count * (n_current / n_reference), f_obs = current count, over
    the union of values; a value absent from the reference gives an infinite statistic (p = 0).
    Computed as `scipy.stats.chisquare` does (statistic, then chi2 survival with k - 1 dof),
    with `scipy.special` only (scipy.stats takes seconds to import).
    """
    from scipy.special import chdtrc

    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    f_exp = ref * (cur.sum() / ref.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = float(np.sum((cur - f_exp) ** 2 / f_exp))
    return float(chdtrc(cur.size - 1, stat))


def z_pvalue(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Two-proportion z-test p-value (Evidently's `_z_stat_test`) on the first value's share.

    The counts are aligned over the (at most two) values; a single shared value gives p = 1.
    Which value comes first does not change |z|. p = 2 * (1 - Phi(|z|)) as Evidently writes it.
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    if (
        np.count_nonzero(ref) == 1
        and np.count_nonzero(cur) == 1
        and np.argmax(ref) == np.argmax(cur)
    ):
        return 1.0
    n1, n2 = ref.sum(), cur.sum()
    p1 = (n1 - ref[0]) / n1
    p2 = (n2 - cur[0]) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - _normal_cdf(abs(float(z)))))


def _normal_cdf(x: float) -> float:
    """scipy.special.ndtr, with the standard library."""
    if x != x:
        return x
    if abs(x) < math.sqrt(0.5):
        return 0.5 + 0.5 * math.erf(x / math.sqrt(2))
    tail = 0.5 * math.erfc(abs(x) / math.sqrt(2))
    return 1 - tail if x > 0 else tail


def jensenshannon(reference_percents: np.ndarray, current_percents: np.ndarray) -> float:
    """Jensen-Shannon distance, natural log, as `scipy.spatial.distance.jensenshannon`."""
    p = np.asarray(reference_percents, dtype=np.float64)
    q = np.asarray(current_percents, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    return float(np.sqrt(max((left.sum() + right.sum()) / 2.0, 0.0)))


def fill_zeroes(percents: np.ndarray) -> np.ndarray:
    """Evidently's `feel_zeroes`: empty bins get min(non-zero)/1e6, or 0.0001."""
    out = np.array(percents, dtype=np.float64)
    nonzero = out[out != 0]
    if nonzero.size == 0:
        return out
    low = nonzero.min()
    out[out == 0] = low / 10**6 if low <= 0.0001 else 0.0001
    return out


def psi(reference_percents: np.ndarray, current_percents: np.ndarray) -> float:
    """Population stability index over bins, after Evidently's zero filling."""
    ref = fill_zeroes(reference_percents)
    cur = fill_zeroes(current_percents)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def sturges_edges(low: float, high: float, n_total: int, integer: bool = False) -> np.ndarray:
    """`np.histogram_bin_edges(combined, bins="sturges")` from the combined min, max and size.

    `integer`: the combined sample has an integer dtype (NumPy then keeps bins at least 1 wide).
    """
    first, last = float(low), float(high)
    ptp = last - first
    if first == last:
        first, last = first - 0.5, last + 0.5
    width = ptp / (np.log2(n_total) + 1.0)
    if width:
        if integer and width < 1:
            width = 1
        n_bins = int(np.ceil((last - first) / width))
    else:
        n_bins = 1
    return np.linspace(first, last, n_bins + 1, endpoint=True)


def sorted_histogram(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """`np.histogram(values, edges)[0]` for sorted values (last bin closed)."""
    left = np.searchsorted(sorted_values, edges[:-1], side="left")
    right = np.searchsorted(sorted_values, edges[-1:], side="right")
    return np.diff(np.concatenate([left, right]))


def uniform_histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """`np.histogram(values, edges)[0]` for linspace edges, by NumPy's fast uniform-bin path."""
    counts, _ = np.histogram(values, bins=len(edges) - 1, range=(edges[0], edges[-1]))
    return counts


def grid_counts(values: np.ndarray, low: float, high: float, bins: int) -> np.ndarray:
    """Counts in `bins` equal bins over [low, high] (values outside are clipped in); like
    np.histogram but without its exact-edge corrections, for approximations only."""
    scale = bins / (high - low)
    idx = ((values - low) * scale).astype(np.intp)
    np.clip(idx, 0, bins - 1, out=idx)
    return np.bincount(idx, minlength=bins)


def ks_statistic_from_cdfs(cdf_reference: np.ndarray, cdf_current: np.ndarray) -> float:
    """sup |F_ref - F_cur| over the points where both CDFs were evaluated."""
    return float(np.max(np.abs(np.asarray(cdf_reference) - np.asarray(cdf_current))))
