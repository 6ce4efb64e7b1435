"""``ui.cards.latest``: which period a card shows and its change (pure pandas)."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd

from ui.cards import latest


def _frame(values, low=None):
    periods = pd.to_datetime(["2026-08-01", "2026-09-01", "2026-10-01", "2026-11-01"])
    out = pd.DataFrame({"period": periods, "rate": values})
    if low is not None:
        out["low_sample"] = low
    return out


def test_latest_takes_the_last_complete_period_and_its_change():
    # today 2026-11-30: November has not ended, so the card shows October (0.30)
    # against September (0.20): delta = 0.30 - 0.20 = 0.10.
    numbers = latest(
        _frame([0.1, 0.2, 0.3, 0.9], low=[False, False, True, False]), "rate", "month", dt.date(2026, 11, 30)
    )
    assert numbers.period == pd.Timestamp("2026-10-01")
    assert numbers.previous == pd.Timestamp("2026-09-01")
    assert math.isclose(numbers.value, 0.3)
    assert math.isclose(numbers.delta, 0.1)
    assert numbers.sparkline == [0.1, 0.2, 0.3]
    assert numbers.low_sample is True


def test_latest_includes_a_period_that_ended_today():
    # 2026-12-01: November has ended -> value 0.9, delta 0.9 - 0.3 = 0.6.
    numbers = latest(_frame([0.1, 0.2, 0.3, 0.9]), "rate", "month", dt.date(2026, 12, 1))
    assert math.isclose(numbers.value, 0.9) and math.isclose(numbers.delta, 0.6)
    assert numbers.low_sample is False


def test_latest_without_a_complete_period_shows_the_current_one_without_delta():
    frame = _frame([0.1, 0.2, 0.3, 0.9]).tail(1)
    numbers = latest(frame, "rate", "month", dt.date(2026, 11, 15))
    assert math.isclose(numbers.value, 0.9)
    assert math.isnan(numbers.delta) and numbers.previous is None


def test_latest_with_missing_previous_value_has_no_delta():
    numbers = latest(_frame([0.1, float("nan"), 0.3, 0.9]), "rate", "month", dt.date(2026, 11, 30))
    assert math.isclose(numbers.value, 0.3) and math.isnan(numbers.delta)
    assert numbers.sparkline == [0.1, 0.3]


def test_latest_of_an_empty_frame_is_empty():
    numbers = latest(pd.DataFrame(columns=["period", "rate"]), "rate", "month")
    assert math.isnan(numbers.value) and numbers.period is None and numbers.sparkline == []
