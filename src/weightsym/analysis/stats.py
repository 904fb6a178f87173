"""Small-sample statistics for results pages: a mean with its 95% interval, and the difference of two means with
Welch's interval (unequal variances), so a page can say "no detectable difference at n = 3" when the interval
includes zero.

Example:
    >>> s = summarize([0.930, 0.932, 0.929])
    >>> s.n, round(s.mean, 4), round(s.std, 4)
    (3, 0.9303, 0.0015)
    >>> round(s.low, 4), round(s.high, 4)
    (0.9265, 0.9341)
    >>> d = welch([0.930, 0.932, 0.929], [0.925, 0.927, 0.924])
    >>> round(d.diff, 4), d.low > 0
    (0.005, True)
    >>> welch([0.930, 0.932, 0.929], [0.931, 0.928, 0.930]).verdict("triangular", "dense")
    'no detectable difference at n = 3 vs 3'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import mean, stdev

from scipy import stats as _stats


@dataclass(frozen=True)
class Summary:
    """``n`` values: mean, sample standard deviation, min, max and the 95% t-interval of the mean."""

    n: int
    mean: float
    std: float
    min: float
    max: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def summarize(values, level: float = 0.95) -> Summary:
    """Mean and its ``level`` t-interval (a single value has no spread: std 0 and an interval of itself)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize: no values")
    m = mean(values)
    if len(values) < 2:
        return Summary(1, m, 0.0, m, m, m, m)
    s = stdev(values)
    half = float(_stats.t.ppf(0.5 + level / 2, len(values) - 1)) * s / math.sqrt(len(values))
    return Summary(len(values), m, s, min(values), max(values), m - half, m + half)


@dataclass(frozen=True)
class Difference:
    """``mean(a) - mean(b)`` with Welch's ``level`` interval (``low``, ``high``) and its degrees of freedom."""

    diff: float
    low: float
    high: float
    df: float
    n_a: int
    n_b: int

    def verdict(self, a: str, b: str) -> str:
        """Words a page may use: ahead / behind only when the interval excludes zero."""
        if self.low > 0:
            return f"{a} ahead of {b} by {100 * self.diff:.2f} points (95% CI {100 * self.low:+.2f} to " \
                   f"{100 * self.high:+.2f})"
        if self.high < 0:
            return f"{a} behind {b} by {-100 * self.diff:.2f} points (95% CI {100 * self.low:+.2f} to " \
                   f"{100 * self.high:+.2f})"
        return f"no detectable difference at n = {self.n_a} vs {self.n_b}"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def welch(a, b, level: float = 0.95) -> Difference:
    """Difference of means of ``a`` and ``b`` with Welch's t-interval; needs two values on each side (with one
    value on a side the interval is infinite)."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        raise ValueError("welch: both samples need values")
    diff = mean(a) - mean(b)
    if len(a) < 2 or len(b) < 2:
        return Difference(diff, -math.inf, math.inf, 0.0, len(a), len(b))
    va, vb = stdev(a) ** 2 / len(a), stdev(b) ** 2 / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(diff, diff, diff, math.inf, len(a), len(b))
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(_stats.t.ppf(0.5 + level / 2, df)) * se
    return Difference(diff, diff - half, diff + half, df, len(a), len(b))
