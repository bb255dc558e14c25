"""The statistics and helpers every benchmark shares."""

from __future__ import annotations

import math

import pytest

from infuser.bench.common import mean_interval, paired_interval, slug, student_t_quantile


@pytest.mark.parametrize(("degrees", "quantile"), [(1, 12.7062047), (2, 4.3026527), (4, 2.7764451),
                                                   (9, 2.2621572), (29, 2.0452296), (1000, 1.9623391)])
def test_student_t_quantiles_match_the_tables(degrees, quantile):
    # published two-sided 95% critical values, to the 7 decimals the tables give
    assert student_t_quantile(0.975, degrees) == pytest.approx(quantile, abs=5e-7)
    assert student_t_quantile(0.025, degrees) == pytest.approx(-quantile, abs=5e-7)


def test_intervals_of_means_and_of_paired_differences():
    values = [1.0, 2.0, 3.0, 4.0]
    interval = mean_interval(values)
    half = 3.1824463 * math.sqrt(5 / 3) / 2  # t(0.975, 3) * s / sqrt(n)
    assert interval.mean == 2.5 and interval.high - 2.5 == pytest.approx(half, abs=1e-6)
    assert interval.low == pytest.approx(2.5 - half, abs=1e-6) and interval.excludes_zero
    # a constant shift between arms is a certain difference, however noisy the arms themselves are
    shifted = paired_interval([v + 0.5 for v in values], values)
    assert (shifted.mean, shifted.low, shifted.high) == pytest.approx((0.5, 0.5, 0.5))
    assert mean_interval([0.3]) == type(interval)(0.3, 0.3, 0.3)
    assert paired_interval([1.0, -1.0], [0.0, 0.0]).as_dict("x_") == \
        {"x_mean": 0.0, "x_ci_low": pytest.approx(-12.7062047 * math.sqrt(2) / math.sqrt(2), abs=1e-6),
         "x_ci_high": pytest.approx(12.7062047, abs=1e-6)}
    with pytest.raises(ValueError, match="pairs"):
        paired_interval([1.0], [1.0, 2.0])


def test_an_interval_of_a_bounded_quantity_stays_within_its_range():
    correlations = mean_interval([0.9, 0.5, 0.95])  # t with 2 degrees of freedom reaches past 1
    assert correlations.high > 1
    cut = correlations.within(-1.0, 1.0)
    assert (cut.mean, cut.low, cut.high) == (correlations.mean, correlations.low, 1.0)


def test_slugs_name_files():
    assert slug("TracIn (cosine)") == "tracin-cosine"
    assert slug("???", "arm") == "arm"
