"""Paired comparison statistics for the cross-validation reports.

The paper calls a configuration "significantly" better than another by comparing per-fold
accuracies; this module gives the paired t-test behind such a claim. scipy is not a dependency, so
Student's t distribution is computed here from the regularised incomplete beta function
(continued fraction, modified Lentz method), which is accurate to about 1e-12 for the small
degrees of freedom that 5- or 10-fold cross-validation gives.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

#: Relative spread below which differences count as all equal: subtracting two accuracies that
#: are equal on paper can leave a standard deviation of 1e-17, which would otherwise give t = 1e16.
_ZERO_SPREAD = 1e-12

_LENTZ_TINY = 1e-300
_LENTZ_EPS = 1e-15
_LENTZ_MAX_TERMS = 1000


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b): the cumulative distribution function of the Beta(a, b) distribution at ``x``."""
    if a <= 0 or b <= 0:
        raise ValueError(f"incomplete beta: a and b must be positive, got a={a}, b={b}")
    if math.isnan(x):
        raise ValueError("incomplete beta: x is NaN")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The continued fraction converges fast only below the distribution's bulk; above it, use
    # the symmetry I_x(a, b) = 1 - I_{1-x}(b, a).
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(1.0 - x, b, a) / b


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """Evaluate the continued fraction of I_x(a, b) with the modified Lentz method."""

    def nonzero(value: float) -> float:
        return value if abs(value) >= _LENTZ_TINY else _LENTZ_TINY

    c = 1.0
    d = 1.0 / nonzero(1.0 - (a + b) * x / (a + 1.0))
    fraction = d
    for m in range(1, _LENTZ_MAX_TERMS + 1):
        # Each m contributes an even term, then an odd term, of the fraction.
        even = m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m))
        d = 1.0 / nonzero(1.0 + even * d)
        c = nonzero(1.0 + even / c)
        fraction *= d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0))
        d = 1.0 / nonzero(1.0 + odd * d)
        c = nonzero(1.0 + odd / c)
        step = d * c
        fraction *= step
        if abs(step - 1.0) < _LENTZ_EPS:
            return fraction
    raise ArithmeticError(f"incomplete beta: no convergence for x={x}, a={a}, b={b}")


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    _check_df(df)
    if math.isnan(t):
        raise ValueError("t is NaN")
    if math.isinf(t):
        return 0.0
    return regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    half_tail = t_two_sided_p(t, df) / 2.0
    return 1.0 - half_tail if t > 0 else half_tail


def t_ppf(q: float, df: float) -> float:
    """The quantile of Student's t: the ``t`` with P(T <= t) = ``q``, for 0 < q < 1."""
    _check_df(df)
    if not 0.0 < q < 1.0:
        raise ValueError(f"t quantile: q must lie strictly between 0 and 1, got {q}")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    if q == 0.5:
        return 0.0
    # Solve on the two-sided tail, which keeps its precision where the CDF is close to 1.
    target = 2.0 * (1.0 - q)
    low, high = 0.0, 1.0
    while t_two_sided_p(high, df) > target:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_two_sided_p(middle, df) > target:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * high:
            break
    return (low + high) / 2.0


def _check_df(df: float) -> None:
    if not df > 0:
        raise ValueError(f"Student's t: degrees of freedom must be positive, got {df}")


def paired_t(differences: Iterable[float]) -> dict:
    """Two-sided paired t-test of the mean of ``differences`` (one per pair, e.g. per fold) against 0.

    Returns ``{"n", "mean", "sd", "t", "df", "p", "ci95": (low, high)}``; ``sd`` is the sample
    standard deviation (ddof=1). Without two pairs there is no test: ``sd``, ``t``, ``df``, ``p``
    and ``ci95`` are None (``mean`` too when there is no pair at all). When all differences are
    equal the test is degenerate but still meaningful: a nonzero mean gives t = +/-inf, p = 0 and
    a zero-width interval; a zero mean gives t = 0 and p = 1.
    """
    values = _finite_values(differences)
    summary = _mean_and_sd(values)
    result = {**summary, "t": None, "df": None, "p": None, "ci95": None}
    n, mean, sd = summary["n"], summary["mean"], summary["sd"]
    if sd is None:
        return result
    if sd <= _ZERO_SPREAD * float(np.abs(values).max()):
        sd = 0.0
    df = n - 1
    result.update(sd=sd, df=df)
    if sd == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        result.update(t=t, p=1.0 if mean == 0.0 else 0.0, ci95=(mean, mean))
        return result
    standard_error = sd / math.sqrt(n)
    t = mean / standard_error
    half_width = t_ppf(0.975, df) * standard_error
    result.update(t=t, p=t_two_sided_p(t, df), ci95=(mean - half_width, mean + half_width))
    return result


def _mean_and_sd(values: np.ndarray) -> dict:
    """``{"n", "mean", "sd"}`` of a flat float array: ``mean`` None without values, ``sd`` (sample
    standard deviation, ddof=1) None with fewer than two."""
    n = int(values.size)
    mean = float(values.mean()) if n else None
    sd = float(values.std(ddof=1)) if n >= 2 else None
    return {"n": n, "mean": mean, "sd": sd}


def _finite_values(differences: Iterable[float], caller: str = "paired_t", what: str = "difference") -> np.ndarray:
    """The differences as a 1-D float array, refusing NaN and infinity with the offending position."""
    values = np.asarray(list(differences), dtype=float)
    if values.ndim != 1:
        raise ValueError(f"{caller}: expected a flat sequence of {what}s, got shape {values.shape}")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"{caller}: {what} at position {int(bad[0])} is not a finite number ({values[bad[0]]})")
    return values


def mean_ci95(values: Iterable[float]) -> dict:
    """The mean of ``values`` (e.g. per-fold accuracies) with its two-sided 95% confidence interval.

    Student's t interval: mean +/- t(0.975, n - 1) * s / sqrt(n), with s the sample standard
    deviation (ddof=1) and n - 1 degrees of freedom (NIST/SEMATECH e-Handbook of Statistical
    Methods, section 1.3.5.2, "Confidence limits for the mean"). It assumes the values are a
    sample from a normal distribution; with 5 folds t(0.975, 4) = 2.776, so the interval is wide.

    Returns ``{"n", "mean", "sd", "ci95": (low, high)}`` in the values' unit; with one value
    ``sd`` and ``ci95`` are None, with none ``mean`` is None too. NaN or infinite values are
    refused (ValueError naming the position).
    """
    summary = _mean_and_sd(_finite_values(values, caller="mean_ci95", what="value"))
    result = {**summary, "ci95": None}
    if summary["sd"] is None:
        return result
    n, mean, sd = summary["n"], summary["mean"], summary["sd"]
    half_width = t_ppf(0.975, n - 1) * sd / math.sqrt(n)
    result["ci95"] = (mean - half_width, mean + half_width)
    return result
