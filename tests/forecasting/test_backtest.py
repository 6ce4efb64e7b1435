"""forecasting.backtest: the rolling-origin plan, the metrics and a backtest, by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from forecasting.backtest import TABLE_COLUMNS, backtest, backtest_plan, backtest_table, metrics


@pytest.mark.parametrize(
    ("n", "horizon", "expected_h", "expected_origins"),
    [
        # >= 36 points: 24 training points at least; 12 folds of 12 months ending at the last point
        (60, 12, 12, list(range(37, 49))),
        (48, 12, 12, list(range(25, 37))),
        # 30 points: min_train 15, 15 months available < 2 * 12 -> h = 15 // 2 = 7, folds = 15 - 7 + 1 = 9
        (30, 12, 7, list(range(15, 24))),
        # a requested horizon above 12 is cut to 12
        (60, 24, 12, list(range(37, 49))),
        # 6 points: min_train 5 -> one fold of one month
        (6, 12, 1, [5]),
    ],
)
def test_plan(n: int, horizon: int, expected_h: int, expected_origins: list[int]) -> None:
    plan = backtest_plan(n, horizon)
    assert plan is not None
    assert plan.horizon == expected_h
    assert list(plan.origins) == expected_origins
    assert plan.origins[-1] + plan.horizon == n


def test_plan_too_short_and_fold_cap() -> None:
    assert backtest_plan(5) is None
    plan = backtest_plan(60, 12, folds=3)
    assert plan is not None and list(plan.origins) == [46, 47, 48]


def test_metrics_by_hand() -> None:
    errors = pd.DataFrame(
        {
            "actual": [10.0, 0.0, 5.0, 20.0],
            "mean": [12.0, 1.0, 5.0, 10.0],
            "lo80": [9.0, 0.0, 4.0, 11.0],
            "hi80": [13.0, 2.0, 6.0, 19.0],
            "lo95": [8.0, 0.0, 3.0, 10.0],
            "hi95": [14.0, 3.0, 7.0, 21.0],
            "scale": [2.0, 2.0, 0.0, 4.0],
        }
    )
    m = metrics(errors)
    # e = -2, -1, 0, 10
    assert m["mae"] == pytest.approx(13 / 4)  # (2 + 1 + 0 + 10) / 4
    assert m["rmse"] == pytest.approx(math.sqrt(105 / 4))  # (4 + 1 + 0 + 100) / 4
    # MAPE skips the zero actual: (2/10 + 0/5 + 10/20) / 3
    assert m["mape"] == pytest.approx(0.7 / 3)
    # MASE skips the zero scale: (2/2 + 1/2 + 10/4) / 3
    assert m["mase"] == pytest.approx(4 / 3)
    # 80 %: 10 in [9,13], 0 in [0,2] (bound included), 5 in [4,6], 20 not in [11,19]
    assert m["coverage80"] == pytest.approx(0.75)
    assert m["coverage95"] == pytest.approx(1.0)


def test_mape_and_mase_are_nan_when_nothing_to_divide_by() -> None:
    errors = pd.DataFrame(
        {"actual": [0.0, 0.0], "mean": [0.0, 1.0], "lo80": [0.0, 0.0], "hi80": [0.0, 2.0],
         "lo95": [0.0, 0.0], "hi95": [0.0, 2.0], "scale": [0.0, float("nan")]}
    )  # fmt: skip
    m = metrics(errors)
    assert math.isnan(m["mape"]) and math.isnan(m["mase"])
    assert m["mae"] == pytest.approx(0.5)


def test_seasonal_naive_backtest_by_hand() -> None:
    # 1..8: min_train = 5, 3 months available -> h = 1, folds at origins 5, 6, 7
    y = np.arange(1.0, 9.0)
    result = backtest(pd.Series(y), "seasonal_naive")
    assert list(result.errors["origin"]) == [5, 6, 7]
    # naive forecasts 5, 6, 7 vs actuals 6, 7, 8: every error 1
    assert result.errors["mean"].tolist() == [5.0, 6.0, 7.0]
    assert result.metrics["mae"] == pytest.approx(1.0)
    # scale = in-sample naive MAE of each window = 1 -> MASE 1
    assert result.metrics["mase"] == pytest.approx(1.0)
    # |residuals| all 1 -> interval mean ± 1: the actual sits on the upper bound -> inside
    assert result.metrics["coverage80"] == 1.0
    table = backtest_table([result])
    assert list(table.columns) == TABLE_COLUMNS
    assert table.loc[0, "folds"] == 3 and table.loc[0, "horizon"] == 1


def test_backtest_refuses_a_model_that_does_not_apply() -> None:
    with pytest.raises(ValueError, match="first training window"):
        backtest(np.arange(1.0, 9.0), "ets")
    with pytest.raises(ValueError, match="too short"):
        backtest(np.arange(1.0, 5.0), "seasonal_naive")


def test_refit_and_extend_share_the_plan_and_the_first_fold() -> None:
    t = np.arange(48)
    y = 100 + t + 10 * np.sin(2 * np.pi * t / 12)
    fixed = backtest(y, "ets")
    refit = backtest(y, "ets", refit=True)
    assert fixed.plan == refit.plan
    # the first fold is fitted identically either way
    first = fixed.errors["origin"] == fixed.plan.first_origin
    assert fixed.errors.loc[first, "mean"].to_numpy() == pytest.approx(
        refit.errors.loc[first, "mean"].to_numpy()
    )
