"""The statistics that compare and recommend use to tell a change from noise, with numpy only.

- :func:`mann_whitney_greater`: the one-sided Mann-Whitney U test (normal approximation with
  the tie and continuity corrections, never below the exact p of the most extreme outcome) that
  the samples of one cell tend to be larger than those of another. It makes no assumption on
  the shape of the timing distribution, which on a shared machine is skewed and heavy-tailed.
- :func:`can_show`: whether that test could show a change of a given size in a set of samples at
  all (not with 3 samples or fewer, nor with samples scattered wider than the change).
- :func:`robust_spread`: the standard deviation of a set of values estimated from their median
  absolute deviation, which a minority of outliers (the real regressions) does not move.
- :func:`overlap`: whether two sets of samples cannot be told apart (their interquartile ranges
  overlap, or the two-sided test is not significant).
- :func:`logistic_quantile` and :func:`student_t3_quantile`: the tail quantiles, in robust standard
  deviations, of two heavy-tailed models of how much honest timings move between runs.
"""

import math

import numpy as np

ALPHA = 0.05  # significance level of every test here


def _average_ranks(values):
    """1-based ranks, ties sharing their average rank; and the sizes of the groups of ties."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return (last - (counts - 1) / 2)[inverse], counts


def mann_whitney_greater(a, b):
    """p-value of the one-sided Mann-Whitney U test that the values of ``b`` tend to exceed ``a``'s.

    1.0 when either sample is empty or every value is tied.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n_a, n_b = len(a), len(b)
    if not n_a or not n_b:
        return 1.0
    ranks, ties = _average_ranks(np.concatenate([a, b]))
    u_b = ranks[n_a:].sum() - n_b * (n_b + 1) / 2
    n = n_a + n_b
    variance = n_a * n_b / 12 * ((n + 1) - (ties ** 3 - ties).sum() / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u_b - n_a * n_b / 2 - 0.5) / math.sqrt(variance)
    # With few samples the normal tail is too thin: no outcome is rarer than every value of b above every value of a.
    return max(0.5 * math.erfc(z / math.sqrt(2)), 1 / math.comb(n, n_a))


def can_show(samples, ratio, alpha=ALPHA):
    """Whether the test could show a change of ``samples`` by ``ratio`` at ``alpha``: the samples
    against themselves scaled by it, a pure change of that size, come out significant. Not with 3
    samples or fewer (the most extreme outcome of 3 against 3 has p = 1 / C(6, 3) = 0.05), nor
    when bursts of load scatter them wider than the change."""
    samples = np.asarray(samples, dtype=float)
    scaled = samples * ratio
    return (mann_whitney_greater(samples, scaled) if ratio > 1 else mann_whitney_greater(scaled, samples)) < alpha


def robust_spread(values):
    """1.4826 x the median absolute deviation: the standard deviation, were the values normal."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return 0.0
    return float(_MAD_TO_SD * np.median(np.abs(values - np.median(values))))


def overlap(a, b, alpha=ALPHA):
    """Whether samples ``a`` and ``b`` overlap: their interquartile ranges intersect, or the
    two-sided Mann-Whitney test cannot tell them apart at ``alpha``."""
    q1_a, q3_a = np.percentile(a, [25, 75])
    q1_b, q3_b = np.percentile(b, [25, 75])
    if q1_a <= q3_b and q1_b <= q3_a:
        return True
    return 2 * min(mann_whitney_greater(a, b), mann_whitney_greater(b, a)) >= alpha


_MAD_TO_SD = 1.4826  # a normal's standard deviation over its median absolute deviation


def logistic_quantile(p):
    """The p-quantile of a logistic distribution whose robust standard deviation (1.4826 x its median absolute
    deviation, which is its scale x ln 3) is 1. Its tails are exponential: heavier than a normal's."""
    return math.log(p / (1 - p)) / (_MAD_TO_SD * math.log(3))


def _student_t3_cdf(t):
    x = t / math.sqrt(3)
    return 0.5 + (x / (1 + x * x) + math.atan(x)) / math.pi


_T3_MAD = 0.764892328  # the median absolute deviation of Student's t with 3 degrees of freedom, its 0.75-quantile


def student_t3_quantile(p):
    """The p-quantile (0.5 <= p < 1) of Student's t with 3 degrees of freedom, scaled to a robust standard
    deviation of 1. Its tails fall as a power (t^-4): the model for timings of single runs, in which a cell
    now and then runs far slower for a whole process. The CDF is in closed form; inverted by bisection."""
    low, high = 0.0, 1.0
    while _student_t3_cdf(high) < p:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if _student_t3_cdf(middle) < p else (low, middle)
    return (low + high) / 2 / (_MAD_TO_SD * _T3_MAD)
