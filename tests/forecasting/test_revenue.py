"""forecasting.revenue: the monthly revenue series from kpis.revenue, full months only, then
forecast() — on DuckDB, SQLite and PostgreSQL.

Fixture: account A1 (SMB) pays 1000 + 10·k on the 15th of month k = 0..17
(2025-01 .. 2026-06), with a refund of 50 in 2025-04 (k = 3: 1030 − 50 = 980); account A2
(Enterprise) pays 5000 once, on 2025-01-20. Nothing is paid after 2026-06.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import schema
from forecasting import revenue_forecast
from forecasting.revenue import monthly_revenue
from kpis.filters import Filters

TODAY = dt.date(2026, 11, 15)


@pytest.fixture
def engine(db: sa.Engine) -> sa.Engine:
    accounts = [
        {"account_id": "A1", "name": "Small Co", "segment": "SMB", "created_at": dt.datetime(2024, 6, 1)},
        {
            "account_id": "A2",
            "name": "Big Co",
            "segment": "Enterprise",
            "created_at": dt.datetime(2024, 6, 1),
        },
    ]
    payments = []
    for k in range(18):
        month = pd.Timestamp("2025-01-15") + pd.DateOffset(months=k)
        payments.append({"payment_id": f"p{k}", "account_id": "A1", "paid_at": month.to_pydatetime(),
                         "amount": 1000.0 + 10 * k})  # fmt: skip
    payments.append(
        {"payment_id": "refund", "account_id": "A1", "paid_at": dt.datetime(2025, 4, 20), "amount": -50.0}
    )
    payments.append(
        {"payment_id": "big", "account_id": "A2", "paid_at": dt.datetime(2025, 1, 20), "amount": 5000.0}
    )
    with db.begin() as c:
        c.execute(sa.insert(schema.accounts), accounts)
        c.execute(sa.insert(schema.payments), payments)
    return db


def expected_smb() -> list[float]:
    values = [1000.0 + 10 * k for k in range(18)]
    values[3] -= 50.0  # the refund
    return values


def test_series_keeps_full_months_with_data(engine: sa.Engine) -> None:
    f = Filters("2024-01-01", "2026-12-01")
    series, notes = monthly_revenue(engine, f, today=TODAY)
    assert [p.strftime("%Y-%m") for p in series.index[[0, -1]]] == ["2025-01", "2026-06"]
    values = expected_smb()
    values[0] += 5000.0  # A2's payment in 2025-01
    assert series.tolist() == pytest.approx(values)
    assert notes == [
        "The current month (2026-11) is not over yet and was left out.",
        "12 month(s) before the first revenue (2025-01) were left out.",
        "4 month(s) after the last payment in the database (2026-06) were left out: no data was recorded for them.",
    ]


def test_partial_last_month_and_segment_filter(engine: sa.Engine) -> None:
    # end on 2026-06-15: June is cut short -> the series ends in May; SMB drops A2's 5000
    f = Filters("2025-01-01", "2026-06-15", segments=["SMB"])
    series, notes = monthly_revenue(engine, f, today=TODAY)
    assert series.tolist() == pytest.approx(expected_smb()[:17])
    assert notes == ["The month of 2026-06 is cut short by the date range and was left out."]


def test_full_history_reaches_back_before_the_date_range(engine: sa.Engine) -> None:
    f = Filters("2026-01-01", "2026-12-01", segments=["SMB"])
    series, notes = monthly_revenue(engine, f, today=TODAY)
    assert series.tolist() == pytest.approx(expected_smb()[12:])  # the range only: 2026-01 .. 2026-06
    assert not any("learn from every month" in n for n in notes)
    series, notes = monthly_revenue(engine, f, today=TODAY, full_history=True)
    assert series.tolist() == pytest.approx(expected_smb())  # from 2025-01, the first payment
    assert notes[-1] == (
        "The models learn from every month with revenue up to the end of the date range "
        "(2025-01 to 2026-06), not only the months in the range."
    )


def test_revenue_forecast(engine: sa.Engine) -> None:
    result = revenue_forecast(
        engine, Filters("2024-01-01", "2026-12-01", segments=["SMB"]), horizon=6, today=TODAY
    )
    assert result.history.tolist() == pytest.approx(expected_smb())
    assert [p.strftime("%Y-%m") for p in result.forecast["period"][[0, 5]]] == ["2026-07", "2026-12"]
    assert result.notes[0] == "The current month (2026-11) is not over yet and was left out."
    assert (result.forecast["lo95"] <= result.forecast["hi95"]).all()
    assert set(result.backtest["model"]) >= {"seasonal_naive", "theta"}
    forced = revenue_forecast(
        engine, Filters("2024-01-01", "2026-12-01"), horizon=3, model="seasonal_naive", today=TODAY
    )
    assert forced.model == "seasonal_naive" and "override" in forced.reason


def test_no_revenue_gives_an_empty_result_with_notes(db: sa.Engine) -> None:
    result = revenue_forecast(db, Filters("2025-01-01", "2026-01-01"), today=TODAY)
    assert result.model == "none"
    assert "No revenue was recorded for this selection in the date range." in result.notes
    result = revenue_forecast(db, Filters("2026-11-02", "2026-11-20"), today=TODAY)
    assert "The date range holds no full month." in result.notes
