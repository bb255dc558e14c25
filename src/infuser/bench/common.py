"""What every benchmark shares: file names from labels, plain-text tables, headless plotting and
confidence intervals over seeds.

Benchmarks compare arms or estimators over a handful of seeds, so their statistics are small-sample
ones: a mean with a Student-t interval, and for two arms run on the same seeds the interval of
the per-seed differences (a paired comparison, which removes the variance the arms share).
"""

from __future__ import annotations

import logging
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

log = logging.getLogger(__name__)


def slug(label: str, fallback: str = "item") -> str:
    """A file-name-safe form of ``label`` (``"TracIn (cosine)"`` -> ``"tracin-cosine"``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower() or fallback


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> None:
    """Print ``rows`` under ``header`` as aligned columns: the first left-aligned, the rest right.

    Cells are printed as given (format numbers before passing them), so each benchmark keeps the
    precision its figures deserve.
    """
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(name)), *(len(row[i]) for row in cells)) for i, name in enumerate(header)]
    if title:
        print(title)

    def line(values: Sequence[str]) -> str:
        first, *rest = values
        return "  ".join([f"{first:<{widths[0]}}", *(f"{value:>{width}}" for value, width in zip(rest, widths[1:]))])

    print(line([str(name) for name in header]))
    for row in cells:
        print(line(row))


def pyplot() -> ModuleType | None:
    """matplotlib's pyplot on the headless Agg backend, or ``None`` (with a warning) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'infuser[bench]'); no plots written")
        return None
    return plt


@dataclass(frozen=True)
class Interval:
    """A mean and its two-sided confidence interval (``low == high == mean`` from one value)."""

    mean: float
    low: float
    high: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}mean": self.mean, f"{prefix}ci_low": self.low, f"{prefix}ci_high": self.high}

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def within(self, low: float, high: float) -> Interval:
        """The interval cut to the range the quantity can take: a t interval of a few values of a
        bounded quantity (a correlation) can reach past it."""
        return Interval(self.mean, max(self.low, low), min(self.high, high))


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """The mean of ``values`` with its Student-t confidence interval (independent draws, e.g. seeds)."""
    if not values:
        raise ValueError("mean_interval() needs at least one value")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean, mean, mean)
    half = student_t_quantile(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half)


def paired_interval(values: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> Interval:
    """The mean per-pair difference ``values[i] - baseline[i]`` with its t interval: two arms run on
    the same seeds, compared seed by seed."""
    if len(values) != len(baseline):
        raise ValueError(f"paired_interval() needs pairs: {len(values)} values against {len(baseline)}")
    return mean_interval([a - b for a, b in zip(values, baseline)], confidence)


def student_t_quantile(probability: float, degrees: int) -> float:
    """The ``probability`` quantile of Student's t with ``degrees`` degrees of freedom.

    Bisection on the distribution function, which is integrated numerically (Simpson's rule) from
    the density; exact to about 1e-9 for the confidence levels benchmarks use, with no dependency
    beyond the standard library.
    """
    if not 0 < probability < 1 or degrees < 1:
        raise ValueError(f"student_t_quantile() needs 0 < probability < 1 and degrees >= 1, got {probability}, "
                         f"{degrees}")
    if probability < 0.5:
        return -student_t_quantile(1 - probability, degrees)
    low, high = 0.0, 1.0
    while _t_cdf(high, degrees) < probability:
        low, high = high, high * 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_cdf(middle, degrees) < probability else (low, middle)
    return (low + high) / 2


def _t_cdf(t: float, degrees: int, steps: int = 2000) -> float:
    """P(T <= t) for t >= 0."""
    scale = math.exp(math.lgamma((degrees + 1) / 2) - math.lgamma(degrees / 2)) / math.sqrt(degrees * math.pi)

    def density(x: float) -> float:
        return scale * (1 + x * x / degrees) ** (-(degrees + 1) / 2)

    width = t / steps
    inner = sum((4 if i % 2 else 2) * density(i * width) for i in range(1, steps))
    return 0.5 + width / 3 * (density(0.0) + inner + density(t))
