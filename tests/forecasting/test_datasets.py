"""forecasting.datasets: the two public monthly series, checked against the raw data."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from forecasting.datasets import (
    load_co2_monthly,
    load_elec_equip,
    load_elnino_monthly,
    load_superstore_monthly,
)


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


def test_superstore_categories_add_up_to_the_total(shared_data: Callable[[str], Path]) -> None:
    folder = shared_data("superstore-sales")
    total = load_superstore_monthly(folder)
    parts = [load_superstore_monthly(folder, c) for c in ("Furniture", "Office Supplies", "Technology")]
    assert all(len(p) == 48 for p in parts)
    assert sum(parts).to_numpy() == pytest.approx(total.to_numpy())
    with pytest.raises(ValueError, match="no orders of category"):
        load_superstore_monthly(folder, "Toys")


def test_co2_and_elnino_monthly() -> None:
    from statsmodels.datasets import co2

    series = load_co2_monthly()
    assert len(series) == 526 and not series.isna().any()
    assert str(series.index[0].date()) == "1958-03-01" and str(series.index[-1].date()) == "2001-12-01"
    weekly = co2.load().data["co2"]
    march_1958 = weekly[(weekly.index.year == 1958) & (weekly.index.month == 3)].mean()
    assert series.iloc[0] == pytest.approx(march_1958)
    elnino = load_elnino_monthly()
    assert len(elnino) == 732 and str(elnino.index[-1].date()) == "2010-12-01"
    assert (elnino.iloc[0], elnino.iloc[13]) == pytest.approx((23.11, 25.28))  # 1950-01, 1951-02
