"""Seed statistics: mean and Student-t confidence interval.

With K seeds per configuration the mean accuracy is reported with a 95 %
t interval, mean ± t(0.975, K-1) · s / sqrt(K) (s: sample standard deviation,
ddof=1). One seed gives no interval (NaN), never a fake zero-width one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MeanCI:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); NaN for n < 2
    low: float
    high: float

    @property
    def half(self) -> float:
        """Half-width of the interval (NaN when there is none)."""
        return (self.high - self.low) / 2

    def as_json(self) -> dict[str, float | int | None]:
        """mean, std, half, low, high (None where undefined: one seed has no interval,
        none has no mean) and n, so a summary stays strict JSON."""
        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {"mean": num(self.mean), "std": num(self.std), "half": num(self.half),
                "low": num(self.low), "high": num(self.high), "n": self.n}


def mean_ci(values: Iterable[float | None], confidence: float = 0.95) -> MeanCI:
    """Mean and t confidence interval of the finite values (None/NaN are skipped)."""
    x = np.array([float(v) for v in values if v is not None and math.isfinite(float(v))])
    n = len(x)
    if n == 0:
        return MeanCI(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return MeanCI(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    if std == 0.0:  # scipy returns NaN bounds for a zero scale; the interval is the point
        return MeanCI(n, mean, 0.0, mean, mean)
    from scipy import stats as _st  # seconds to import: only where an interval is drawn

    low, high = _st.t.interval(confidence, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    return MeanCI(n, mean, std, float(low), float(high))


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def format_mean_ci(mean, half, *, pct: bool = True, digits: int = 2) -> str:
    """'85.31 ± 0.42 %' (pct) or '0.8531 ± 0.0042'; the mean alone where there is no
    interval (one seed), '–' where there is no mean. The one mean ± CI text of hpsweep:
    tables, report and status."""
    if not _finite(mean):
        return "–"
    scale, unit = (100.0, " %") if pct else (1.0, "")
    text = f"{float(mean) * scale:.{digits}f}"
    if _finite(half):
        text += f" ± {float(half) * scale:.{digits}f}"
    return text + unit
