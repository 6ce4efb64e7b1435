"""``revenue_forecast``: the monthly revenue of the current filters, forecast by ``forecast()``.

The series is ``kpis.revenue(conn, f, "month")``'s revenue (payments net of refunds by
``paid_at``; read by ``kpis.revenue.revenue_series``, which counts no paying accounts) for
the filters' segments, owners and products, restricted to full months:

* with ``full_history=True`` the models learn from every month with data up to the end of
  the date range, not only from the months inside it (a 12-month range is too short to see
  a seasonal pattern or to backtest); a note says which months were used. The default,
  ``False``, reads exactly the filters' range (the Forecast page widens the range itself);

* the month containing ``today`` (UTC) is still running: it and everything after it are
  left out; so is a last month cut short by the filter's ``end`` (``end`` not on the 1st);
* months before the first month with any revenue are dropped (the business or segment
  had not started);
* monthly sums are rounded to cents (payments are in cents; a database's parallel sum can
  differ in the last bit between runs, which must not change the model chosen);
* months after the last payment recorded in the whole database are dropped (no data was
  loaded for them — e.g. a historical import — rather than zero sales).

Every cut is stated in the result's notes, ahead of the forecast's own notes.

The forecast itself is read back from the store beside the database when it was computed
before, by any process (``forecasting.store``: keyed by the series' values, the arguments
and the forecasting code's version); the Forecast page's default one is computed ahead by
``python -m crm_data demo``, every import and ``python -m crm_data forecasts``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from forecasting.result import ForecastResult
from forecasting.store import ForecastStore, stored_forecast
from kpis.core import connection
from kpis.filters import Filters


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def monthly_revenue(
    conn: sa.Connection | sa.Engine, f: Filters, today: dt.date | None = None, full_history: bool = False
) -> tuple[pd.Series, list[str]]:
    """The full-month revenue series for ``f`` (rules in the module docstring) and notes."""
    from kpis.revenue import revenue_series  # kpis.revenue's period and revenue columns

    notes: list[str] = []
    today = today or _utc_today()
    current_month = _month_start(today)
    end = f.end if f.end.day == 1 else _month_start(f.end)
    if end != f.end:
        notes.append(f"The month of {f.end:%Y-%m} is cut short by the date range and was left out.")
    if end > current_month:
        notes.append(f"The current month ({current_month:%Y-%m}) is not over yet and was left out.")
        end = current_month
    empty = pd.Series(
        [], index=pd.DatetimeIndex([], dtype="datetime64[ns]", name="period"), dtype=float, name="revenue"
    )
    if end <= f.start:
        notes.append("The date range holds no full month.")
        return empty, notes
    paid_at = schema.payments.c.paid_at
    with connection(conn) as c:
        first_payment, last_payment = c.execute(sa.select(sa.func.min(paid_at), sa.func.max(paid_at))).one()
        start = f.start
        if full_history and first_payment is not None:
            start = min(start, _month_start(pd.Timestamp(first_payment).date()))
        frame = revenue_series(c, f.replace(start=start, end=end), "month")
    # rounded to cents: DuckDB's parallel sums of amounts differ in the last bit from run to
    # run, and the order SARIMAX chooses by AIC must not depend on that (same data, same model)
    series = pd.Series(
        np.round(frame["revenue"].to_numpy(dtype=float), 2),
        index=pd.DatetimeIndex(pd.to_datetime(frame["period"]), name="period").astype("datetime64[ns]"),
        name="revenue",
    )
    nonzero = series.index[series != 0]
    if len(nonzero) == 0:
        notes.append("No revenue was recorded for this selection in the date range.")
        return empty, notes
    if nonzero[0] > series.index[0]:
        skipped = int((series.index < nonzero[0]).sum())
        notes.append(f"{skipped} month(s) before the first revenue ({nonzero[0]:%Y-%m}) were left out.")
        series = series[series.index >= nonzero[0]]
    if last_payment is not None:
        last_month = pd.Timestamp(pd.Timestamp(last_payment).date().replace(day=1))
        after = series.index > last_month
        if after.any():
            notes.append(
                f"{int(after.sum())} month(s) after the last payment in the database ({last_month:%Y-%m}) "
                "were left out: no data was recorded for them."
            )
            series = series[~after]
    if len(series) and series.index[0] < pd.Timestamp(f.start):
        notes.append(
            f"The models learn from every month with revenue up to the end of the date range "
            f"({series.index[0]:%Y-%m} to {series.index[-1]:%Y-%m}), not only the months in the range."
        )
    return series, notes


def revenue_forecast(
    conn: sa.Connection | sa.Engine,
    f: Filters,
    horizon: int = 12,
    model: str | None = None,
    today: dt.date | None = None,
    full_history: bool = False,
    store: ForecastStore | bool = True,
) -> ForecastResult:
    """Forecast monthly revenue for the filters ``f`` (series rules in the module docstring;
    model choice in ``forecasting.selection``). ``today`` defaults to the current UTC date.

    The forecast of the series is looked up in this process's ``FORECASTS``, then in
    ``store`` — by default (True) the forecasts stored beside ``conn``'s database
    (``forecasting.store``: read back identical, without importing statsmodels) — and
    computed only when neither has it (then stored there). ``store=False``: not looked up
    nor stored beside the database."""
    series, notes = monthly_revenue(conn, f, today, full_history)
    kept: ForecastStore | None = None
    if isinstance(store, ForecastStore):
        kept = store
    elif store:
        kept = ForecastStore.beside(conn)
    result = stored_forecast(series, horizon=horizon, model=model, store=kept)
    result.notes = notes + result.notes
    return result
