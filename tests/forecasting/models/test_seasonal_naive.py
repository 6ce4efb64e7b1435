"""forecasting.models.seasonal_naive: the baseline's forecasts and empirical intervals, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecasting.models.seasonal_naive import SeasonalNaive, in_sample_mae, naive_lag


def test_lag_is_12_from_two_full_years_else_1() -> None:
    assert naive_lag(23) == 1
    assert naive_lag(24) == 12


def test_seasonal_forecast_repeats_last_year_with_residual_quantile_intervals() -> None:
    # year 1: 1..12, year 2: 2..13 -> every seasonal residual y_t - y_{t-12} = 1
    y = np.r_[np.arange(1.0, 13.0), np.arange(2.0, 14.0)]
    fitted = SeasonalNaive().fit(y)
    assert fitted.label == "seasonal naive (lag 12)"
    p = fitted.predict(13)
    # steps 1..12 repeat year 2 (2..13); step 13 wraps to its first month (2)
    assert p.mean.tolist() == [*range(2, 14), 2]
    # |residuals| all 1 -> q80 = q95 = 1; widened by sqrt(ceil(h / 12)): 1 for h <= 12, sqrt(2) at h = 13
    assert p.lo80[:12] == pytest.approx(p.mean[:12] - 1)
    assert p.hi95[:12] == pytest.approx(p.mean[:12] + 1)
    assert p.lo80[12] == pytest.approx(2 - math.sqrt(2))
    assert p.hi95[12] == pytest.approx(2 + math.sqrt(2))


def test_naive_on_a_short_series() -> None:
    y = np.array([5.0, 7.0, 4.0, 6.0, 8.0])
    fitted = SeasonalNaive().fit(y)
    assert fitted.label == "naive (last value)"
    p = fitted.predict(2)
    assert p.mean.tolist() == [8.0, 8.0]
    # |residuals| = 2, 3, 2, 2 -> sorted 2, 2, 2, 3; linear quantiles:
    # q80 at position 0.8 * 3 = 2.4 -> 2 + 0.4 * 1 = 2.4; q95 at 2.85 -> 2.85
    assert p.lo80[0] == pytest.approx(8 - 2.4)
    assert p.hi95[0] == pytest.approx(8 + 2.85)
    # step 2 = two naive steps ahead -> widened by sqrt(2)
    assert p.hi80[1] == pytest.approx(8 + 2.4 * math.sqrt(2))
    # the MASE scale: mean |residual| = (2 + 3 + 2 + 2) / 4 = 2.25
    assert in_sample_mae(y) == pytest.approx(2.25)


def test_single_point_has_zero_width_interval_and_no_scale() -> None:
    p = SeasonalNaive().fit(np.array([7.0])).predict(3)
    assert p.mean.tolist() == [7.0, 7.0, 7.0]
    assert p.lo95.tolist() == p.hi95.tolist() == [7.0, 7.0, 7.0]
    assert math.isnan(in_sample_mae(np.array([7.0])))
