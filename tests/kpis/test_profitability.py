"""kpis.profitability: payments − costs per account, by cost category (DuckDB, SQLite, PostgreSQL)."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from kpis.filters import Filters
from kpis.profitability import customer_profitability, profitability_ends
from tests.kpis.more_fixtures import BASE, assert_databases_agree, day, load, ts

PAYMENTS = [
    {"payment_id": "p1", "account_id": "A1", "paid_at": ts("2024-01-10"), "amount": 1000.0},
    {"payment_id": "p2", "account_id": "A1", "paid_at": ts("2024-02-01"), "amount": -200.0},  # refund
    {
        "payment_id": "p3",
        "account_id": "A1",
        "paid_at": ts("2024-04-01 00:00:00"),
        "amount": 500.0,
    },  # after Q1
    {"payment_id": "p4", "account_id": "A2", "paid_at": ts("2024-03-31 23:59:59"), "amount": 300.0},
    {"payment_id": "p5", "account_id": "A4", "paid_at": ts("2023-12-31"), "amount": 50.0},  # before Q1
]

COSTS = [
    {"cost_id": "c1", "account_id": "A1", "incurred_on": day("2024-01-01"), "category": "personnel",
     "purpose": "retention", "amount": 100.0},  # first day: in
    {"cost_id": "c2", "account_id": "A1", "incurred_on": day("2024-03-31"), "category": "loyalty",
     "purpose": "retention", "amount": 50.0},
    {"cost_id": "c3", "account_id": "A1", "incurred_on": day("2024-04-01"), "category": "marketing",
     "purpose": "acquisition", "amount": 25.0},  # end day: out
    {"cost_id": "c4", "account_id": "A3", "incurred_on": day("2024-02-10"), "category": "production",
     "purpose": "other", "amount": 80.0},
    {"cost_id": "c5", "account_id": None, "incurred_on": day("2024-02-01"), "category": "overhead",
     "purpose": "other", "amount": 1000.0},  # no account: cannot be attributed
    {"cost_id": "c6", "account_id": "A2", "incurred_on": day("2024-01-15"), "category": "overhead",
     "purpose": "other", "amount": 300.0},
]  # fmt: skip

Q1 = Filters("2024-01-01", "2024-04-01")


@pytest.fixture
def engine(db: sa.Engine) -> sa.Engine:
    load(db, BASE, {"payments": PAYMENTS, "costs": COSTS})
    return db


def test_profit_per_account_in_q1(engine: sa.Engine) -> None:
    out = customer_profitability(engine, Q1)
    assert list(out.columns) == [
        "account_id", "name", "segment", "payments", "costs",
        "personnel", "production", "overhead", "marketing", "loyalty", "profit",
    ]  # fmt: skip
    # A1: payments 1000 - 200 = 800; costs 100 (personnel) + 50 (loyalty) = 150 -> profit 650
    # A2: payments 300; costs 300 (overhead) -> 0
    # A3: payments 0; costs 80 (production) -> -80
    # A4: only a payment before Q1 -> not listed; c5 (no account) attributed to nobody
    assert out["account_id"].tolist() == ["A1", "A2", "A3"]
    assert out["payments"].tolist() == pytest.approx([800.0, 300.0, 0.0])
    assert out["costs"].tolist() == pytest.approx([150.0, 300.0, 80.0])
    assert out["personnel"].tolist() == pytest.approx([100.0, 0.0, 0.0])
    assert out["loyalty"].tolist() == pytest.approx([50.0, 0.0, 0.0])
    assert out["overhead"].tolist() == pytest.approx([0.0, 300.0, 0.0])
    assert out["production"].tolist() == pytest.approx([0.0, 0.0, 80.0])
    assert out["marketing"].tolist() == pytest.approx([0.0, 0.0, 0.0])
    assert out["profit"].tolist() == pytest.approx([650.0, 0.0, -80.0])
    assert out["name"].tolist() == ["Alpha", "Beta", "Gamma"]


def test_profit_limit_longer_range_and_filters(engine: sa.Engine) -> None:
    assert customer_profitability(engine, Q1, limit=2)["account_id"].tolist() == ["A1", "A2"]
    year = customer_profitability(engine, Filters("2023-01-01", "2025-01-01"))
    # A1: 1000 - 200 + 500 = 1300; costs 100 + 50 + 25 = 175 -> 1125; A4: 50 -> 50
    assert year["account_id"].tolist() == ["A1", "A4", "A2", "A3"]
    assert year["profit"].tolist() == pytest.approx([1125.0, 50.0, 0.0, -80.0])
    assert year["marketing"].iloc[0] == pytest.approx(25.0)
    smb = customer_profitability(engine, Q1.replace(segments=["SMB"]))
    assert smb["account_id"].tolist() == ["A1", "A3"]
    u2 = customer_profitability(engine, Q1.replace(owners=["U2"]))
    assert u2["account_id"].tolist() == ["A2"]
    empty = customer_profitability(engine, Q1.replace(segments=["Nobody"]))
    assert empty.empty and "profit" in empty.columns


def test_results_agree_across_databases(make_db) -> None:
    def compute(engine: sa.Engine) -> dict[str, pd.DataFrame]:
        return {"customer_profitability": customer_profitability(engine, Filters("2023-01-01", "2025-01-01"))}

    assert_databases_agree(make_db, [BASE, {"payments": PAYMENTS, "costs": COSTS}], compute)


def test_profitability_ends_are_the_first_and_last_rows_of_the_ranking(engine: sa.Engine) -> None:
    year = Filters("2023-01-01", "2025-01-01")
    # ranking over the two years: A1 1125, A4 50, A2 0, A3 -80 (see above)
    ends = profitability_ends(engine, year, n=1)
    assert ends["account_id"].tolist() == ["A1", "A3"]
    assert ends["profit"].tolist() == pytest.approx([1125.0, -80.0])
    assert ends["accounts"].tolist() == [4, 4]  # the whole ranking's size, not the rows returned
    full = customer_profitability(engine, year)
    assert list(ends.columns) == [*full.columns, "accounts"]
    pd.testing.assert_frame_equal(
        ends.drop(columns="accounts"), full.iloc[[0, 3]].reset_index(drop=True), check_dtype=False
    )
    # 2·n covers the ranking: every account once, in order
    assert profitability_ends(engine, year, n=2)["account_id"].tolist() == ["A1", "A4", "A2", "A3"]
    assert profitability_ends(engine, year, n=10)["account_id"].tolist() == ["A1", "A4", "A2", "A3"]
    q1 = profitability_ends(engine, Q1.replace(segments=["SMB"]), n=1)
    assert q1["account_id"].tolist() == ["A1", "A3"] and q1["accounts"].tolist() == [2, 2]
    empty = profitability_ends(engine, Q1.replace(segments=["Nobody"]))
    assert empty.empty and "accounts" in empty.columns and "profit" in empty.columns
    with pytest.raises(ValueError, match="n must be"):
        profitability_ends(engine, year, n=-1)


def test_profitability_ends_agree_across_databases(make_db) -> None:
    def compute(engine: sa.Engine) -> dict[str, pd.DataFrame]:
        return {"ends": profitability_ends(engine, Filters("2023-01-01", "2025-01-01"), n=1)}

    assert_databases_agree(make_db, [BASE, {"payments": PAYMENTS, "costs": COSTS}], compute)


def test_profitability_ends_break_ties_by_account_and_keep_to_the_filters(db: sa.Engine) -> None:
    """Two top-n sorts (best first, and the reverse) give the ranking's ends: ties at a cut
    are ordered by account_id as in the whole ranking (A2 and A3 both −5: A2 ranks second,
    A3 last); one owner's ends sum that owner's accounts' payments only."""
    payments = [
        {"payment_id": "t1", "account_id": "A1", "paid_at": ts("2024-01-10"), "amount": 10.0},
        {"payment_id": "t2", "account_id": "A2", "paid_at": ts("2024-01-10"), "amount": -5.0},
        {"payment_id": "t3", "account_id": "A3", "paid_at": ts("2024-01-10"), "amount": -5.0},
        {"payment_id": "t4", "account_id": "A4", "paid_at": ts("2024-01-10"), "amount": -5.0},
    ]
    load(db, BASE, {"payments": payments})
    assert customer_profitability(db, Q1)["account_id"].tolist() == ["A1", "A2", "A3", "A4"]
    ends = profitability_ends(db, Q1, n=1)
    assert ends["account_id"].tolist() == ["A1", "A4"] and ends["accounts"].tolist() == [4, 4]
    assert profitability_ends(db, Q1, n=2)["account_id"].tolist() == ["A1", "A2", "A3", "A4"]
    assert profitability_ends(db, Q1, n=3)["account_id"].tolist() == ["A1", "A2", "A3", "A4"]
    u1 = profitability_ends(db, Q1.replace(owners=["U1"]), n=1)  # U1 owns A1 and A3
    assert u1["account_id"].tolist() == ["A1", "A3"] and u1["accounts"].tolist() == [2, 2]
    assert u1["payments"].tolist() == pytest.approx([10.0, -5.0])
    assert profitability_ends(db, Q1, n=0).empty


def test_profitability_ends_with_a_product_filter_sum_and_list_that_products_accounts(db: sa.Engine) -> None:
    """A product selects accounts through their subscriptions: the ends sum and list only the
    accounts with a subscription to it (the ranking's accounts are not semi-joined to the
    subscriptions again: the sums are narrowed already), named by their own account row."""
    subscriptions = [
        {"subscription_id": "s1", "account_id": "A1", "product_id": "P1", "mrr": 10.0,
         "started_at": ts("2023-06-01"), "ended_at": None},
        {"subscription_id": "s2", "account_id": "A3", "product_id": "P1", "mrr": 10.0,
         "started_at": ts("2023-06-01"), "ended_at": ts("2023-12-01")},  # ended before Q1: still P1's
        {"subscription_id": "s3", "account_id": "A2", "product_id": "P2", "mrr": 10.0,
         "started_at": ts("2023-06-01"), "ended_at": None},
    ]  # fmt: skip
    load(db, BASE, {"payments": PAYMENTS, "costs": COSTS, "subscriptions": subscriptions})
    p1 = Q1.replace(products=["P1"])
    ends = profitability_ends(db, p1, n=1)
    # Q1: A1 650 (800 paid, 150 costs), A3 -80 (production costs); A2 (P2 only) is left out
    assert ends["account_id"].tolist() == ["A1", "A3"]
    assert ends["name"].tolist() == ["Alpha", "Gamma"]
    assert ends["profit"].tolist() == pytest.approx([650.0, -80.0])
    assert ends["accounts"].tolist() == [2, 2]
    full = customer_profitability(db, p1)
    pd.testing.assert_frame_equal(ends.drop(columns="accounts"), full, check_dtype=False)
    p2 = profitability_ends(db, Q1.replace(products=["P2"]), n=5)
    assert p2["account_id"].tolist() == ["A2"] and p2["payments"].tolist() == pytest.approx([300.0])
    assert profitability_ends(db, Q1.replace(products=["P9"])).empty


def test_profitability_ends_without_reading_the_accounts_where_references_are_enforced(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Q1 by hand: A1 800 paid − 150 costs = 650, A2 300 − 300 = 0, A3 − 80 (production):
    the ends n = 1 are A1 and A3 of 3 accounts. Where the database enforces that every
    payment's and cost's account exists (PostgreSQL's validated foreign keys) the ranking
    is the sums' FULL JOIN, without reading ``accounts`` — unless a condition on the
    accounts' own columns narrows them (one owner: joined as before); the same frames as
    joining them (every database); a key added NOT VALID is not trusted (joined)."""
    from kpis import profitability

    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        ends = profitability_ends(engine, Q1, n=1)
        profitability_ends(engine, Q1.replace(owners=["U1"]), n=1)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert ends["account_id"].tolist() == ["A1", "A3"] and ends["accounts"].tolist() == [3, 3]
    assert ends["profit"].tolist() == pytest.approx([650.0, -80.0])
    ranking, owners = [s for s in statements if "profits" in s]
    enforced = engine.dialect.name == "postgresql"
    assert ("FULL OUTER JOIN" in ranking) == enforced and ("FROM accounts" not in ranking) == enforced
    assert "FULL OUTER JOIN" not in owners and "FROM accounts LEFT OUTER JOIN" in owners
    for f in (Q1, Q1.replace(owners=["U1"]), Q1.replace(segments=["SMB"]), Q1.replace(products=["P1"])):
        frames = []
        for flag in (True, False):
            monkeypatch.setattr(profitability, "_accounts_enforced", lambda conn, flag=flag: flag)
            frames.append(profitability_ends(engine, f, n=1))
        pd.testing.assert_frame_equal(*frames)
        if f is Q1:
            pd.testing.assert_frame_equal(frames[0], ends)
    monkeypatch.undo()
    if enforced:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE payments DROP CONSTRAINT payments_account_id_fkey")
            conn.exec_driver_sql(
                "ALTER TABLE payments ADD CONSTRAINT payments_account_id_fkey FOREIGN KEY (account_id) "
                "REFERENCES accounts (account_id) NOT VALID"
            )
        with engine.connect() as conn:
            assert not profitability._accounts_enforced(conn)
        pd.testing.assert_frame_equal(profitability_ends(engine, Q1, n=1), ends)
