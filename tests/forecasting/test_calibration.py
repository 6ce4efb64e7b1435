"""forecasting.calibration: conformal quantiles and the horizon profile by hand, the
sequential held-out coverage by hand, the calibration backtest's folds, and the held-out
coverage of the calibrated intervals on two real monthly series."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting import forecast
from forecasting.calibration import (
    age_weights,
    calibrate,
    calibration_plan,
    conformal_quantile,
    held_out_coverage,
    horizon_profile,
)
from forecasting.datasets import load_elec_equip, load_superstore_monthly
from forecasting.models.base import Z80, Z95, Prediction

# The bands for the calibrated intervals on held-out folds.
BAND80 = (0.75, 0.85)
BAND95 = (0.90, 0.98)


def errors_frame(
    origins: list[int], steps: list[int], abs_errors: list[float], sd: float = 1.0
) -> pd.DataFrame:
    """Backtest rows with mean 0, actual = the error, the model's own normal intervals of ``sd``."""
    actual = np.asarray(abs_errors, dtype=float)
    return pd.DataFrame(
        {
            "origin": origins,
            "step": steps,
            "actual": actual,
            "mean": 0.0,
            "lo80": -Z80 * sd,
            "hi80": Z80 * sd,
            "lo95": -Z95 * sd,
            "hi95": Z95 * sd,
            "sd": sd,
            "non_negative": False,
        }
    )


def test_unweighted_quantiles_are_the_split_conformal_order_statistics() -> None:
    # |errors| 1..20 at one step, sd 1, equal weights: the ⌈21·0.80⌉ = 17th and ⌈21·0.95⌉ = 20th smallest
    errors = errors_frame([0] * 20, [1] * 20, [float(k) for k in range(20, 0, -1)])
    calibration = calibrate(errors, half_life=math.inf)
    assert calibration is not None and calibration.points == 20
    h80, h95 = calibration.half_widths(np.array([1.0]), np.array([1]))
    assert h80[0] == pytest.approx(17.0) and h95[0] == pytest.approx(20.0)
    # a forecast of mean 100 with the model's own sd 2 gets 100 ± 2·17 and 100 ± 2·20
    own = Prediction(np.array([100.0]), np.array([100 - 2 * Z80]), np.array([100 + 2 * Z80]),
                     np.array([100 - 2 * Z95]), np.array([100 + 2 * Z95]))  # fmt: skip
    calibrated = calibration.apply(own)
    assert (calibrated.lo80[0], calibrated.hi80[0]) == pytest.approx((66.0, 134.0))
    assert (calibrated.lo95[0], calibrated.hi95[0]) == pytest.approx((60.0, 140.0))
    # 18 errors: ⌈19·0.95⌉ = 19 > 18, no finite 95 % bound -> no calibration
    assert calibrate(errors.iloc[:18], min_points=1, half_life=math.inf) is None
    assert calibrate(errors.iloc[:19], min_points=20, half_life=math.inf) is None


def test_weighted_quantile_by_hand() -> None:
    # sorted scores 1 (w 1), 2 (w 1), 3 (w 0.5); the test point weighs 1: cumulative / 3.5
    scores, weights = np.array([3.0, 1.0, 2.0]), np.array([0.5, 1.0, 1.0])
    assert conformal_quantile(scores, 0.25, weights) == 1.0  # 1/3.5 = 0.286
    assert conformal_quantile(scores, 0.5, weights) == 2.0  # 2/3.5 = 0.571
    assert conformal_quantile(scores, 0.7, weights) == 3.0  # 2.5/3.5 = 0.714
    assert math.isinf(conformal_quantile(scores, 0.8, weights))
    assert age_weights(np.array([0, 12, 24])) == pytest.approx([1.0, 0.5, 0.25])
    assert age_weights(np.array([5, 50]), math.inf) == pytest.approx([1.0, 1.0])


def test_horizon_profile_by_hand() -> None:
    # |error|/sd at step 1: 1, 2, 3 (mean 2); at step 2: 2, 4, 6 (mean 4); step 3 has 2 errors: left out
    profile = horizon_profile(np.array([1, 1, 1, 2, 2, 2, 3, 3]), np.array([1, 2, 3, 2, 4, 6, 50, 50.0]))
    assert (profile.a, profile.b, profile.last_step) == pytest.approx((2.0, 2.0, 2))
    assert profile(np.array([1, 2, 5])) == pytest.approx([2.0, 4.0, 4.0])  # flat past step 2
    # a falling line never goes below a tenth of the mean ratio
    falling = horizon_profile(np.repeat([1, 2], 3), np.array([3, 3, 3, 0.01, 0.01, 0.01]))
    assert falling(np.array([2]))[0] == pytest.approx(0.1 * np.mean([3, 3, 3, 0.01, 0.01, 0.01]))


def test_held_out_coverage_calibrates_each_fold_only_on_earlier_actuals() -> None:
    # one-step folds at origins 0..29, sd 1: |error| 1 for the first 20, 1.5 for the last 10
    errors = errors_frame(list(range(30)), [1] * 30, [1.0] * 20 + [1.5] * 10)
    coverage = held_out_coverage(errors, half_life=math.inf)
    # folds 20..29 are evaluated; fold 20 + j sees 20 errors of 1 and j of 1.5 (one step: the
    # profile cancels, a half-width is an order statistic of the |errors|):
    # 95 %: the ⌈(21 + j)·0.95⌉-th smallest is 1.5 from j = 1 -> folds 21..29 inside: 9/10
    # 80 %: the ⌈(21 + j)·0.80⌉-th smallest is 1.5 from j = 5 -> folds 25..29 inside: 5/10
    assert (coverage.folds, coverage.points) == (10, 10)
    assert coverage.coverage95 == pytest.approx(0.9)
    assert coverage.coverage80 == pytest.approx(0.5)
    # the model's own intervals (±1.28, ±1.96) on the same points
    assert (coverage.model80, coverage.model95) == (0.0, 1.0)
    # too few earlier errors anywhere: nothing is measured
    assert held_out_coverage(errors.iloc[:20]).points == 0


@pytest.mark.parametrize(
    ("n", "folds", "first_origin"),
    [(48, 13, 24), (70, 23, 36), (257, 48, 198), (30, 9, 15)],
)
def test_calibration_plan(n: int, folds: int, first_origin: int) -> None:
    plan = calibration_plan(n, 12)
    assert plan is not None
    assert (plan.folds, plan.first_origin) == (folds, first_origin)
    assert plan.origins[-1] + plan.horizon == n


def assert_calibrated_coverage(name: str, series: pd.Series) -> None:
    result = forecast(series, horizon=12)
    held = result.held_out
    print(
        f"\n{name}: {result.model} ({result.spec}); held-out coverage on {held.points} points "
        f"({held.folds} folds): calibrated 80 % {held.coverage80:.3f}, 95 % {held.coverage95:.3f}; "
        f"model's own 80 % {held.model80:.3f}, 95 % {held.model95:.3f}"
    )
    assert result.calibrated and held.points >= 72
    assert BAND80[0] <= held.coverage80 <= BAND80[1]
    assert BAND95[0] <= held.coverage95 <= BAND95[1]
    assert str(held.points) in result.intervals


def test_superstore_calibrated_coverage_on_held_out_folds(shared_data: Callable[[str], Path]) -> None:
    # measured: Theta, 72 points (6 folds): 80 % 0.764, 95 % 0.917 (its own intervals 0.639 / 0.750)
    assert_calibrated_coverage("Superstore", load_superstore_monthly(shared_data("superstore-sales")))


def test_elec_equip_calibrated_coverage_on_held_out_folds() -> None:
    # measured: ETS(M,Ad,M), 492 points (41 folds): 80 % 0.823, 95 % 0.967 (its own 0.972 / 0.998)
    assert_calibrated_coverage("elec_equip", load_elec_equip())
