"""A period cut short by ``end`` comes from the roll-ups when no record is dated on or
after ``end`` (``kpis.rollups._nothing_after``): the dashboard's default range ends the day
after the last day with data, so its cut month, quarter or year is the roll-up's row. A
record dated after ``end`` sends that part back to the base tables, and the numbers never
include it. On DuckDB, SQLite and PostgreSQL (the ``db`` fixture).

Hand-checked numbers: payments Y1 A1 15 Jan 30; Y2 A1 3 Mar 100; Y3 A2 10 Mar 50; Y4 A2
10 Mar −5 (a refund). Range 1 Jan – 11 Mar 2024 (the day after the last payment):
January revenue 30, 1 paying account; February nothing; March revenue 145 (gross 150,
refunds 5), paying accounts A1, A2 = 2. The first quarter and the year: revenue 175,
paying accounts 2 (A1 paid in January and March: one account). Deals: D1 A1 created
5 Jan, won 8 Mar; D2 A2 open, created 9 Mar -> March: 1 won, 0 lost, 1 open created.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections import Counter
from collections.abc import Callable
from datetime import datetime as T

import pandas as pd
import pytest
import sqlalchemy as sa

from kpis import Filters, revenue, rollups, win_rate
from kpis.core import period_starts
from tests.kpis import fixtures
from tests.kpis.fixtures import column

REVENUE_MODULE = importlib.import_module("kpis.revenue")
SALES_MODULE = importlib.import_module("kpis.sales")

ACCOUNTS = [a for a in fixtures.ACCOUNTS if a["account_id"] in ("A1", "A2", "A3")]
PAYMENTS = [
    dict(payment_id="Y1", account_id="A1", paid_at=T(2024, 1, 15), amount=30.0),
    dict(payment_id="Y2", account_id="A1", paid_at=T(2024, 3, 3), amount=100.0),
    dict(payment_id="Y3", account_id="A2", paid_at=T(2024, 3, 10), amount=50.0),
    dict(payment_id="Y4", account_id="A2", paid_at=T(2024, 3, 10, 12), amount=-5.0),
]
DEALS = [
    dict(deal_id="D1", account_id="A1", owner_id="u1", product_id="P1", amount=10.0,
         created_at=T(2024, 1, 5), closed_at=T(2024, 3, 8), status="won"),
    dict(deal_id="D2", account_id="A2", owner_id="u2", product_id="P1", amount=20.0,
         created_at=T(2024, 3, 9), closed_at=None, status="open"),
]  # fmt: skip
#: The day after the last record: the dashboard's default range ends here.
RANGE = Filters("2024-01-01", "2024-03-11")


@pytest.fixture(autouse=True)
def _rollups_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_ROLLUPS", raising=False)


def load(db: sa.Engine, payments: list[dict], deals: list[dict]) -> sa.Engine:
    fixtures.load_rows(
        db,
        {"accounts": ACCOUNTS, "users": fixtures.USERS, "products": fixtures.PRODUCTS,
         "payments": payments, "deals": deals},
    )  # fmt: skip
    rollups.refresh_database(db, today=dt.date(2024, 12, 31))
    return db


def spy(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the base-table statements revenue and win_rate build (still running them)."""
    calls: Counter[str] = Counter()
    for module, name in ((REVENUE_MODULE, "_revenue_statement"), (SALES_MODULE, "_win_rate_statement")):
        original = getattr(module, name)

        def counted(*args: object, _original: Callable = original, _name: str = name) -> sa.Select:
            calls[_name] += 1
            return _original(*args)

        monkeypatch.setattr(module, name, counted)
    return calls


def direct(monkeypatch: pytest.MonkeyPatch, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    with monkeypatch.context() as patched:
        patched.setenv("CRM_ROLLUPS", "off")
        return compute()


def assert_same(rolled: pd.DataFrame, plain: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(rolled, plain, check_exact=False, rtol=1e-9, atol=1e-9)


def test_a_cut_period_without_later_records_is_the_rollups_row(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(db, PAYMENTS, DEALS)
    expected = {
        "month": ([30.0, 0.0, 145.0], [1, 0, 2], [0, 0, 1], [0, 0, 1]),
        "quarter": ([175.0], [2], [1], [1]),
        "year": ([175.0], [2], [1], [1]),
    }
    for freq, (money, payers, won, opened) in expected.items():
        periods = period_starts(RANGE.start, RANGE.end, freq)
        assert rollups.remainder(RANGE, freq, periods) is not None  # 11 March cuts the last period
        with monkeypatch.context() as patched:
            calls = spy(patched)
            paid = revenue(db, RANGE, freq)
            deals = win_rate(db, RANGE, freq)
            assert calls == Counter(), freq  # nothing from the base tables
        assert column(paid, "revenue") == pytest.approx(money), freq
        assert list(paid["paying_accounts"]) == payers, freq
        assert list(deals["won"]) == won and list(deals["open_created"]) == opened, freq
        assert list(deals["lost"]) == [0] * len(won), freq
        assert_same(paid, direct(monkeypatch, lambda freq=freq: revenue(db, RANGE, freq)))
        assert_same(deals, direct(monkeypatch, lambda freq=freq: win_rate(db, RANGE, freq)))


def test_a_record_after_end_sends_the_cut_part_to_the_base_tables(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a payment of A3 on 20 March and a deal lost on 20 March: after the range's end
    later_payment = dict(payment_id="Y5", account_id="A3", paid_at=T(2024, 3, 20), amount=70.0)
    later_deal = dict(
        deal_id="D3", account_id="A3", owner_id="u1", product_id="P1", amount=5.0,
        created_at=T(2024, 2, 1), closed_at=T(2024, 3, 20), status="lost",
    )  # fmt: skip
    load(db, [*PAYMENTS, later_payment], [*DEALS, later_deal])
    for freq, money, payers in (("month", [30.0, 0.0, 145.0], [1, 0, 2]), ("year", [175.0], [2])):
        with monkeypatch.context() as patched:
            calls = spy(patched)
            paid = revenue(db, RANGE, freq)
            deals = win_rate(db, RANGE, freq)
            # the cut part only (revenue's year: its paying accounts do not add up over months)
            assert calls == Counter({"_revenue_statement": 1, "_win_rate_statement": 1}), freq
        assert column(paid, "revenue") == pytest.approx(money), freq  # not Y5's 70
        assert list(paid["paying_accounts"]) == payers, freq  # not A3
        assert list(deals["lost"]) == [0] * len(money), freq  # not D3
        assert_same(paid, direct(monkeypatch, lambda freq=freq: revenue(db, RANGE, freq)))
        assert_same(deals, direct(monkeypatch, lambda freq=freq: win_rate(db, RANGE, freq)))
    # ... while a range that ends after them counts them, from the roll-ups alone
    april = RANGE.replace(end=dt.date(2024, 4, 1))
    with monkeypatch.context() as patched:
        calls = spy(patched)
        assert column(revenue(db, april, "month"), "revenue") == pytest.approx([30.0, 0.0, 215.0])
        assert calls == Counter()
