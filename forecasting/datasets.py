"""Loaders for the two public monthly series the forecasting tests and checks use.

* ``load_superstore_monthly(path)``: Tableau's "Sample - Superstore" orders (2014–2017) as
  total sales per calendar month of ``Order Date``. The shared copy is UTF-8 with ISO dates
  (``YYYY-MM-DD``); other dates formats (``M/D/YYYY`` in other copies) are parsed too, and
  the file is read as UTF-8 with a latin-1 fallback (some copies are Windows-1252).
* ``load_elec_equip()``: statsmodels' bundled ``elec_equip`` series (euro-area electrical
  equipment orders index, monthly, 1995-01 .. 2016-05, 257 points).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def load_superstore_monthly(path: str | Path) -> pd.Series:
    """Monthly sales (sum of ``Sales`` by month of ``Order Date``) from ``orders.csv`` or
    the folder holding it, indexed by month start."""
    path = Path(path)
    if path.is_dir():
        path = path / "orders.csv"
    columns = ["Order Date", "Sales"]
    try:
        orders = pd.read_csv(path, usecols=columns, encoding="utf-8")
    except UnicodeDecodeError:
        orders = pd.read_csv(path, usecols=columns, encoding="latin-1")
    dates = pd.to_datetime(orders["Order Date"], format="ISO8601", errors="coerce")
    if dates.isna().any():
        dates = dates.fillna(pd.to_datetime(orders["Order Date"], format="%m/%d/%Y", errors="coerce"))
    months = dates.dt.to_period("M").dt.to_timestamp().astype("datetime64[ns]")
    monthly = pd.to_numeric(orders["Sales"], errors="coerce").groupby(months).sum()
    monthly.index.name = "period"
    monthly.name = "sales"
    return monthly.astype(float)


def load_elec_equip() -> pd.Series:
    """statsmodels' ``elec_equip`` monthly series, indexed by month start."""
    from statsmodels.datasets import elec_equip

    data = elec_equip.load().data
    series = data.iloc[:, 0].astype(float)
    series.index = pd.DatetimeIndex(series.index).to_period("M").to_timestamp().astype("datetime64[ns]")
    series.index.name = "period"
    series.name = "elec_equip"
    return series
