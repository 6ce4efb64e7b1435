"""forecasting.datasets: the two public monthly series, checked against the raw data."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from forecasting.datasets import load_elec_equip, load_superstore_monthly


def test_superstore_monthly_sales(shared_data: Callable[[str], Path]) -> None:
    folder = shared_data("superstore-sales")
    series = load_superstore_monthly(folder)
    # 2014-01 .. 2017-12, every month present
    assert len(series) == 48
    assert str(series.index[0].date()) == "2014-01-01" and str(series.index[-1].date()) == "2017-12-01"
    # totals agree with a plain csv reading of the raw file
    totals: dict[str, float] = {}
    with open(folder / "orders.csv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            month = row["Order Date"][:7]
            totals[month] = totals.get(month, 0.0) + float(row["Sales"])
    assert series.sum() == pytest.approx(sum(totals.values()))
    assert series.iloc[0] == pytest.approx(totals["2014-01"])
    assert series.iloc[-1] == pytest.approx(totals["2017-12"])


def test_elec_equip() -> None:
    series = load_elec_equip()
    assert len(series) == 257
    assert str(series.index[0].date()) == "1995-01-01"
    assert series.iloc[0] == pytest.approx(66.19)
