"""Adding a KPI with a roll-up touches one place: a throwaway :class:`kpis.measures.MeasureSet`
declared here gets a working roll-up (built, read, filtered by an account dimension,
refreshed incrementally) and a KPI function that reads it or the base tables with the same
numbers — on DuckDB, SQLite and PostgreSQL.

Fixture (hand-computed): accounts A (region EU), B (region NA), C (no region); payments A
150 on 5 Jan 2025, A 50 on 20 Jan, B 200 on 31 Jan, B 100 on 1 Feb, C 300 on 10 Feb.
"Big" payments are those of 100 or more: January 2 (350.0), February 2 (400.0), Q1 4
(750.0); region EU: January 1 (150.0), February none.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import hooks, schema
from crm_data.dialects import period_start
from kpis import rollups
from kpis.core import period_starts
from kpis.filters import Filters, in_range, scope
from kpis.measures import MeasureSet

TODAY = dt.date(2025, 12, 31)


def big_payment_sums(payments: sa.Table) -> list[sa.ColumnElement]:
    """big_payments = payments of 100 or more; big_amount = Σ their amounts."""
    big = payments.c.amount >= 100
    return [
        sa.func.sum(sa.case((big, 1), else_=0)).label("big_payments"),
        sa.func.sum(sa.case((big, payments.c.amount), else_=0.0)).label("big_amount"),
    ]


#: The one declaration a newcomer writes (in kpis/measures.py, listed in MEASURE_SETS).
BIG_PAYMENTS = MeasureSet(
    "rollup_test_big_payments",
    schema.payments,
    ("big_payments",),
    ("big_amount",),
    big_payment_sums,
    dated=lambda payments: payments.c.paid_at,
    date_columns=("paid_at",),
)


def big_payments(conn: sa.Connection | sa.Engine, f: Filters, freq: str = "month") -> pd.DataFrame:
    """The KPI function: the same expressions on the base tables, or the roll-up."""

    def statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
        pay = schema.payments
        period = period_start(dialect, pay.c.paid_at, freq)
        return (
            sa.select(period.label("period"), *BIG_PAYMENTS.expressions(pay))  # type: ignore[misc]
            .where(in_range(pay.c.paid_at, f), *scope(f, pay))
            .group_by(period)
        )

    periods = period_starts(f.start, f.end, freq)
    rollup = rollups.rollup_of(BIG_PAYMENTS)
    return rollups.period_rows_or_rolled(
        conn, rollup, f, freq, periods, statement, counts=BIG_PAYMENTS.counts, sums=BIG_PAYMENTS.sums
    )


def load(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            schema.accounts.insert(),
            [
                dict(account_id="A", name="A", region="EU", created_at=dt.datetime(2024, 1, 1)),
                dict(account_id="B", name="B", region="NA", created_at=dt.datetime(2024, 1, 1)),
                dict(account_id="C", name="C", region=None, created_at=dt.datetime(2024, 1, 1)),
            ],
        )
        conn.execute(
            schema.payments.insert(),
            [
                dict(payment_id="Y1", account_id="A", paid_at=dt.datetime(2025, 1, 5), amount=150.0),
                dict(payment_id="Y2", account_id="A", paid_at=dt.datetime(2025, 1, 20), amount=50.0),
                dict(payment_id="Y3", account_id="B", paid_at=dt.datetime(2025, 1, 31, 23, 59), amount=200.0),
                dict(payment_id="Y4", account_id="B", paid_at=dt.datetime(2025, 2, 1), amount=100.0),
                dict(payment_id="Y5", account_id="C", paid_at=dt.datetime(2025, 2, 10), amount=300.0),
            ],
        )


def read(engine: sa.Engine, f: Filters, freq: str) -> dict[int, tuple]:
    periods = period_starts(f.start, f.end, freq)
    with engine.connect() as conn:
        found = rollups.read(conn, rollups.rollup_of(BIG_PAYMENTS), f, freq, periods)
    assert found is not None, "the roll-up did not answer"
    return {p.year * 100 + p.month: tuple(row) for p, row in found.items()}


def test_a_throwaway_measure_set_gets_a_working_rollup(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    load(db)
    rollup = rollups.rollup_of(BIG_PAYMENTS)
    assert rollups.rollup_of(BIG_PAYMENTS) is rollup
    with db.begin() as conn:
        # rows: January A, B; February B, C; Q1 A, B, C; 2025 A, B, C; the totals of
        # January, February, Q1 and 2025
        assert rollups.refresh(conn, TODAY, rollups=[rollup]) == {"rollup_test_big_payments": 14}
    q1 = Filters(dt.date(2025, 1, 1), dt.date(2025, 3, 1))
    assert read(db, q1, "month") == {202501: (2, 350.0), 202502: (2, 400.0)}
    assert read(db, Filters(dt.date(2025, 1, 1), dt.date(2025, 4, 1)), "quarter") == {202501: (4, 750.0)}
    assert read(db, q1.replace(regions=("EU",)), "month") == {202501: (1, 150.0)}
    # the KPI function: same frame from the roll-up and from the base tables
    rolled = big_payments(db, q1)
    monkeypatch.setenv("CRM_ROLLUPS", "off")
    direct = big_payments(db, q1)
    pd.testing.assert_frame_equal(rolled, direct)
    assert list(rolled["big_payments"]) == [2, 2]
    assert list(rolled["big_amount"]) == [350.0, 400.0]
    # a change reported through the hooks refreshes just its month (and quarter, year)
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    with db.begin() as conn:
        conn.execute(
            schema.payments.insert().values(
                payment_id="Y6", account_id="A", paid_at=dt.datetime(2025, 3, 3), amount=120.0
            )
        )
        span = hooks.DateSpan(dt.date(2025, 3, 3), dt.date(2025, 3, 3))
        change = hooks.Change({"payments": hooks.TableChange(True, 1, 0, False, {"paid_at": span})}, TODAY)
        assert rollups.update(conn, change, rollups=[rollup]) == ["rollup_test_big_payments"]
    assert read(db, Filters(dt.date(2025, 1, 1), dt.date(2025, 4, 1)), "month") == {
        202501: (2, 350.0),
        202502: (2, 400.0),
        202503: (1, 120.0),
    }
    assert read(db, Filters(dt.date(2025, 1, 1), dt.date(2025, 4, 1)), "quarter") == {202501: (5, 870.0)}


def test_a_measure_set_needs_a_rollup_name() -> None:
    with pytest.raises(ValueError, match="rollup_"):
        rollups.rollup_of(MeasureSet("big", schema.payments, ("n",), (), big_payment_sums))
