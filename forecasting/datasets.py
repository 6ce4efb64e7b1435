"""Loaders for the public monthly series the forecasting tests and benchmark use.

* ``load_superstore_monthly(path, category=None)``: Tableau's "Sample - Superstore" orders
  (2014–2017) as total sales per calendar month of ``Order Date`` (of one ``Category`` —
  Furniture, Office Supplies, Technology — when given). The shared copy is UTF-8 with ISO dates
  (``YYYY-MM-DD``); other dates formats (``M/D/YYYY`` in other copies) are parsed too, and
  the file is read as UTF-8 with a latin-1 fallback (some copies are Windows-1252).
* ``load_elec_equip()``: statsmodels' bundled ``elec_equip`` series (euro-area electrical
  equipment orders index, monthly, 1995-01 .. 2016-05, 257 points).
* ``load_co2_monthly()``: statsmodels' bundled Mauna Loa ``co2`` (weekly, ppm) as monthly
  means, 1958-03 .. 2001-12 (526 points; the 5 months without any weekly value are
  interpolated linearly).
* ``load_elnino_monthly()``: statsmodels' bundled ``elnino`` sea-surface temperatures
  (one row per year, one column per month) as one monthly series, 1950-01 .. 2010-12
  (732 points).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def load_superstore_monthly(path: str | Path, category: str | None = None) -> pd.Series:
    """Monthly sales (sum of ``Sales`` by month of ``Order Date``) from ``orders.csv`` or
    the folder holding it, indexed by month start; only the rows of ``category`` when given
    (months without a sale of it count 0)."""
    path = Path(path)
    if path.is_dir():
        path = path / "orders.csv"
    columns = ["Order Date", "Sales", "Category"] if category else ["Order Date", "Sales"]
    try:
        orders = pd.read_csv(path, usecols=columns, encoding="utf-8")
    except UnicodeDecodeError:
        orders = pd.read_csv(path, usecols=columns, encoding="latin-1")
    dates = pd.to_datetime(orders["Order Date"], format="ISO8601", errors="coerce")
    if dates.isna().any():
        dates = dates.fillna(pd.to_datetime(orders["Order Date"], format="%m/%d/%Y", errors="coerce"))
    months = dates.dt.to_period("M").dt.to_timestamp().astype("datetime64[ns]")
    sales = pd.to_numeric(orders["Sales"], errors="coerce")
    if category:
        if not (orders["Category"] == category).any():
            raise ValueError(f"no orders of category {category!r}")
        sales = sales.where(orders["Category"] == category, 0.0)
    monthly = sales.groupby(months).sum()
    monthly.index.name = "period"
    monthly.name = "sales" if not category else f"sales {category}"
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


def _monthly_index(index: pd.Index) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(index).to_period("M").to_timestamp().astype("datetime64[ns]")


def load_co2_monthly() -> pd.Series:
    """statsmodels' weekly ``co2`` as monthly means, indexed by month start."""
    from statsmodels.datasets import co2

    weekly = co2.load().data["co2"].astype(float)
    monthly = weekly.groupby(_monthly_index(weekly.index)).mean()
    full = pd.date_range(monthly.index[0], monthly.index[-1], freq="MS").astype("datetime64[ns]")
    monthly = monthly.reindex(full).interpolate(method="linear")
    monthly.index.name = "period"
    monthly.name = "co2"
    return monthly


def load_elnino_monthly() -> pd.Series:
    """statsmodels' ``elnino`` (a year per row, a month per column) as one monthly series."""
    from statsmodels.datasets import elnino

    table = elnino.load().data
    values = table.drop(columns="YEAR").to_numpy(dtype=float).ravel()
    start = f"{int(table['YEAR'].iloc[0])}-01-01"
    index = pd.date_range(start, periods=len(values), freq="MS").astype("datetime64[ns]")
    return pd.Series(values, index=pd.DatetimeIndex(index, name="period"), name="elnino")
