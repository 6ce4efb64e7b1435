"""kpis.revenue: revenue per period, active customers, MRR retention, cohort retention.

Every expected number is worked out by hand from the rows below (comments show the
arithmetic); each test runs on DuckDB, SQLite and PostgreSQL through the ``db`` fixture.
"""

from __future__ import annotations

import importlib
import math

import pandas as pd
import pytest
import sqlalchemy as sa

from kpis.filters import Filters
from kpis.revenue import active_customers, cohort_retention, revenue, revenue_retention, revenue_series
from tests.kpis.more_fixtures import BASE, assert_databases_agree, day, load, ts

PAYMENTS = [
    # Jan 2024
    {
        "payment_id": "p1",
        "account_id": "A1",
        "paid_at": ts("2024-01-01 00:00:00"),
        "amount": 100.0,
    },  # on the boundary: Jan
    {"payment_id": "p2", "account_id": "A1", "paid_at": ts("2024-01-31 23:59:59"), "amount": 50.0},
    {"payment_id": "p3", "account_id": "A2", "paid_at": ts("2024-01-15 10:00:00"), "amount": 200.0},
    {"payment_id": "p4", "account_id": "A2", "paid_at": ts("2024-01-20 10:00:00"), "amount": -30.0},  # refund
    # Feb 2024: a payment and its full refund
    {"payment_id": "p5", "account_id": "A3", "paid_at": ts("2024-02-01 00:00:00"), "amount": 80.0},
    {"payment_id": "p6", "account_id": "A3", "paid_at": ts("2024-02-10 00:00:00"), "amount": -80.0},
    # Mar 2024: nothing. Outside [2024-01-01, 2024-04-01):
    {"payment_id": "p8", "account_id": "A1", "paid_at": ts("2023-12-31 23:59:59"), "amount": 999.0},
    {"payment_id": "p9", "account_id": "A2", "paid_at": ts("2024-04-01 00:00:00"), "amount": 500.0},
]

SUBSCRIPTIONS = [
    # account, mrr, started_at, ended_at
    {
        "subscription_id": "S1",
        "account_id": "A1",
        "product_id": "P1",
        "mrr": 100.0,
        "started_at": ts("2023-06-01"),
        "ended_at": None,
    },
    {
        "subscription_id": "S2",
        "account_id": "A2",
        "product_id": "P1",
        "mrr": 200.0,
        "started_at": ts("2023-01-01"),
        "ended_at": ts("2024-02-01 00:00:00"),
    },  # ends exactly at Feb 1
    {
        "subscription_id": "S3",
        "account_id": "A3",
        "product_id": "P1",
        "mrr": 50.0,
        "started_at": ts("2024-01-01 00:00:00"),
        "ended_at": None,
    },  # starts exactly at Jan 1
    {
        "subscription_id": "S4",
        "account_id": "A3",
        "product_id": "P2",
        "mrr": 30.0,
        "started_at": ts("2024-02-15"),
        "ended_at": None,
    },
    {
        "subscription_id": "S5",
        "account_id": "A1",
        "product_id": "P2",
        "mrr": 40.0,
        "started_at": ts("2023-09-01"),
        "ended_at": ts("2024-03-10"),
    },
    {
        "subscription_id": "S6",
        "account_id": "A4",
        "product_id": "P1",
        "mrr": 60.0,
        "started_at": ts("2024-01-10"),
        "ended_at": ts("2024-03-01 00:00:00"),
    },
    {
        "subscription_id": "S7",
        "account_id": "A4",
        "product_id": "P2",
        "mrr": 10.0,
        "started_at": ts("2024-02-05"),
        "ended_at": ts("2024-02-20"),
    },  # in and out inside Feb
]
# Active accounts and their MRR at each instant (started_at <= t < ended_at):
#   2024-01-01: A1 140 (S1+S5), A2 200 (S2), A3 50 (S3)            -> 3 accounts, 390
#   2024-02-01: A1 140, A3 50, A4 60 (S6); S2 ended exactly then       -> 3 accounts, 250
#   2024-03-01: A1 140, A3 80 (S3+S4); S6 ended exactly then           -> 2 accounts, 220
#   2024-04-01: A1 100 (S5 ended Mar 10), A3 80                        -> 2 accounts, 180
#   2024-07-01 and 2025-01-01: as on 2024-04-01

Q1 = Filters("2024-01-01", "2024-04-01")


@pytest.fixture
def engine(db: sa.Engine) -> sa.Engine:
    load(db, BASE, {"payments": PAYMENTS, "subscriptions": SUBSCRIPTIONS})
    return db


@pytest.fixture(params=("roll-ups", "base tables"))
def revenue_engine(
    request: pytest.FixtureRequest, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> sa.Engine:
    """``engine`` with :func:`revenue` read from the roll-ups, or from the base tables: on
    DuckDB by the bitmap statement at every range length (``BITMAP_PERIODS`` widened to
    one period), elsewhere by the plain one."""
    if request.param == "base tables":
        monkeypatch.setenv("CRM_ROLLUPS", "off")
        monkeypatch.setattr(importlib.import_module("kpis.revenue"), "BITMAP_PERIODS", range(1, 601))
    return engine


def test_revenue_by_month_nets_refunds_and_keeps_empty_months(revenue_engine: sa.Engine) -> None:
    engine = revenue_engine
    out = revenue(engine, Q1, "month")
    assert list(out.columns) == ["period", "revenue", "gross_revenue", "refunds", "paying_accounts", "arpa"]
    assert list(out["period"]) == [
        pd.Timestamp("2024-01-01"),
        pd.Timestamp("2024-02-01"),
        pd.Timestamp("2024-03-01"),
    ]
    # Jan: 100 + 50 + 200 - 30 = 320; gross 350; refunds 30; payers A1, A2 -> arpa 160
    # Feb: 80 - 80 = 0; gross 80; refunds 80; payer A3 -> arpa 0 / 1 = 0
    # Mar: nothing -> zeros, arpa NaN. p8 (Dec 31 23:59:59) and p9 (Apr 1 00:00) are outside.
    assert out["revenue"].tolist() == pytest.approx([320.0, 0.0, 0.0])
    assert out["gross_revenue"].tolist() == pytest.approx([350.0, 80.0, 0.0])
    assert out["refunds"].tolist() == pytest.approx([30.0, 80.0, 0.0])
    assert out["paying_accounts"].tolist() == [2, 1, 0]
    assert out["arpa"].iloc[0] == pytest.approx(160.0)
    assert out["arpa"].iloc[1] == pytest.approx(0.0)
    assert math.isnan(out["arpa"].iloc[2])


def test_revenue_by_quarter_and_year(revenue_engine: sa.Engine) -> None:
    engine = revenue_engine
    quarters = revenue(engine, Filters("2024-01-01", "2025-01-01"), "quarter")
    # Q1: 320 + 0 = 320, gross 350 + 80 = 430, refunds 110, payers A1 A2 A3 -> arpa 320/3
    # Q2: p9 500 (Apr 1 00:00 belongs to Q2); Q3, Q4 empty
    assert quarters["revenue"].tolist() == pytest.approx([320.0, 500.0, 0.0, 0.0])
    assert quarters["paying_accounts"].tolist() == [3, 1, 0, 0]
    assert quarters["arpa"].iloc[0] == pytest.approx(320.0 / 3)
    years = revenue(engine, Filters("2023-01-01", "2025-01-01"), "year")
    # 2023: p8 999; 2024: 320 + 500 = 820, gross 430 + 500 = 930, refunds 110, payers 3 -> arpa 820/3
    assert years["period"].tolist() == [pd.Timestamp("2023-01-01"), pd.Timestamp("2024-01-01")]
    assert years["revenue"].tolist() == pytest.approx([999.0, 820.0])
    assert years["gross_revenue"].tolist() == pytest.approx([999.0, 930.0])
    assert years["refunds"].tolist() == pytest.approx([0.0, 110.0])
    assert years["arpa"].tolist() == pytest.approx([999.0, 820.0 / 3])


def test_revenue_segment_filter_and_empty_segment(revenue_engine: sa.Engine) -> None:
    engine = revenue_engine
    smb = revenue(engine, Q1.replace(segments=["SMB"]), "month")  # A1, A3
    # Jan: A1 100 + 50 = 150 (1 payer); Feb: A3 80 - 80 = 0 (1 payer)
    assert smb["revenue"].tolist() == pytest.approx([150.0, 0.0, 0.0])
    assert smb["paying_accounts"].tolist() == [1, 1, 0]
    empty = revenue(engine, Q1.replace(segments=["Nobody"]), "month")
    assert empty["revenue"].tolist() == [0.0, 0.0, 0.0]
    assert empty["arpa"].isna().all()


def test_revenue_paying_accounts_by_bitmap_over_twelve_periods(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve months and twelve quarters from the base tables: on DuckDB the bitmap
    statement (its default range of periods) with a HUGEINT per account (``bit_or``, up to
    127 periods), elsewhere the plain one — on PostgreSQL its distinct account ids compared
    bytewise (``COLLATE "C"``); the same numbers."""
    monkeypatch.setenv("CRM_ROLLUPS", "off")
    module = importlib.import_module("kpis.revenue")
    year = Filters("2024-01-01", "2025-01-01")
    sql = str(module._revenue_statement(engine.dialect, year, "month").compile(engine))
    if engine.dialect.name == "duckdb":
        assert "bit_or" in sql and "bitstring_agg" not in sql and "date_trunc" not in sql
    assert ('COLLATE "C"' in sql) == (engine.dialect.name == "postgresql")
    months = revenue(engine, year, "month")
    # Jan: A1 (p1 and p2: one paying account), A2 (p3; its refund p4) -> 2 paying, 320
    # Feb: A3 paid 80 and got it back -> 1 paying, revenue 0; Mar: nothing
    # Apr: A2 500 (p9, Apr 1 00:00) -> 1 paying; May … Dec: nothing
    assert months["paying_accounts"].tolist() == [2, 1, 0, 1] + [0] * 8
    assert months["revenue"].tolist() == pytest.approx([320.0, 0.0, 0.0, 500.0] + [0.0] * 8)
    quarters = revenue(engine, Filters("2023-01-01", "2026-01-01"), "quarter")
    # 2023 Q4: A1 999 (p8) -> 1; 2024 Q1: A1, A2, A3 -> 3, 320; 2024 Q2: A2 500 -> 1
    assert quarters["paying_accounts"].tolist() == [0, 0, 0, 1, 3, 1] + [0] * 6
    assert quarters["revenue"].tolist() == pytest.approx([0.0, 0.0, 0.0, 999.0, 320.0, 500.0] + [0.0] * 6)
    # product P2 (subscriptions S4, S5, S7: accounts A3, A1, A4): A2's payments are out
    # Jan: A1 100 + 50 -> 1 paying, 150; Feb: A3 80 - 80 -> 1, 0; Apr: A2's 500 is out -> 0
    p2 = revenue(engine, year.replace(products=["P2"]), "month")
    assert p2["paying_accounts"].tolist() == [1, 1] + [0] * 10
    assert p2["revenue"].tolist() == pytest.approx([150.0] + [0.0] * 11)


def test_revenue_paying_accounts_by_bitmap_over_more_than_127_periods(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """136 months (2013-01 … 2024-04) from the base tables: on DuckDB wider than a
    HUGEINT's 127 bits, so a ``BIT`` string per account (``bitstring_agg``); 127 months
    (2013-10 … 2024-04) still the HUGEINT. The same numbers as by hand on every database."""
    monkeypatch.setenv("CRM_ROLLUPS", "off")
    module = importlib.import_module("kpis.revenue")
    wide, narrow = Filters("2013-01-01", "2024-05-01"), Filters("2013-10-01", "2024-05-01")
    if engine.dialect.name == "duckdb":
        sql = str(module._revenue_statement(engine.dialect, wide, "month").compile(engine))
        assert "bitstring_agg" in sql and "bit_or" not in sql
        sql = str(module._revenue_statement(engine.dialect, narrow, "month").compile(engine))
        assert "bit_or" in sql and "bitstring_agg" not in sql
    for f, months in ((wide, 136), (narrow, 127)):
        out = revenue(engine, f, "month")
        assert len(out) == months
        # the last five months: Dec 2023 A1 999 (p8) -> 1 paying; Jan 2024 A1 (p1, p2) and
        # A2 (p3, refund p4) -> 2 paying, 320; Feb A3 80 − 80 -> 1 paying, 0; Mar nothing;
        # Apr A2 500 (p9) -> 1 paying. Every earlier month: nothing.
        assert out["paying_accounts"].tolist() == [0] * (months - 5) + [1, 2, 1, 0, 1]
        assert out["revenue"].tolist() == pytest.approx(
            [0.0] * (months - 5) + [999.0, 320.0, 0.0, 0.0, 500.0]
        )
        assert out["period"].iloc[-1] == pd.Timestamp("2024-04-01")
        assert out["period"].iloc[0] == pd.Timestamp(f.start)


def test_revenue_series_is_revenues_period_and_revenue(revenue_engine: sa.Engine) -> None:
    """``revenue_series`` (the revenue forecast's series): ``revenue``'s period and revenue
    columns, by hand, from the roll-ups and from the base tables (on DuckDB grouped by
    period number, no ``date_trunc`` per payment); a cut last period, a product, a segment."""
    engine = revenue_engine
    module = importlib.import_module("kpis.revenue")
    cases = [
        # Jan 320 (100 + 50 + 200 − 30), Feb 0 (80 − 80), Mar nothing
        (Q1, "month", [320.0, 0.0, 0.0]),
        # 2024 Q1 320; Q2 up to Apr 15: p9 500 (Apr 1 00:00) — a period cut by end
        (Filters("2024-01-01", "2024-04-15"), "quarter", [320.0, 500.0]),
        # 2023: p8 999; 2024: 320 + 500
        (Filters("2023-01-01", "2025-01-01"), "year", [999.0, 820.0]),
        # product P2 (A1, A3, A4): Jan A1 150, Feb A3 0; A2's payments out
        (Q1.replace(products=["P2"]), "month", [150.0, 0.0, 0.0]),
        # SMB (A1, A3): Jan 150, Feb 0
        (Q1.replace(segments=["SMB"]), "month", [150.0, 0.0, 0.0]),
    ]
    for f, freq, expected in cases:
        series = revenue_series(engine, f, freq)
        assert list(series.columns) == ["period", "revenue"]
        assert series["revenue"].tolist() == pytest.approx(expected), (f, freq)
        full = revenue(engine, f, freq)
        pd.testing.assert_frame_equal(
            series, full[["period", "revenue"]], check_exact=True, obj=f"{f} {freq}"
        )
        if engine.dialect.name == "duckdb":
            sql = str(module._net_revenue_statement(engine.dialect, f, freq).compile(engine))
            assert "make_timestamp" in sql and "date_trunc" not in sql


def test_active_customers_by_month(engine: sa.Engine) -> None:
    out = active_customers(engine, Q1, "month")
    assert list(out.columns) == [
        "period",
        "customers_at_start",
        "new_customers",
        "churned",
        "customers_at_end",
    ]
    # Jan: {A1,A2,A3} -> {A1,A3,A4}: churned A2, new A4
    # Feb: {A1,A3,A4} -> {A1,A3}: churned A4 (S6 ends exactly Mar 1); S7 in/out inside Feb changes nothing
    # Mar: {A1,A3} -> {A1,A3}
    assert out["customers_at_start"].tolist() == [3, 3, 2]
    assert out["new_customers"].tolist() == [1, 0, 0]
    assert out["churned"].tolist() == [1, 1, 0]
    assert out["customers_at_end"].tolist() == [3, 2, 2]


def test_active_customers_quarter_year_and_filters(engine: sa.Engine) -> None:
    q = active_customers(engine, Filters("2024-01-01", "2024-07-01"), "quarter")
    # Q1: {A1,A2,A3} -> Apr 1 {A1,A3}: churned 1, new 0 (A4 came and went inside Q1); Q2: 2 -> 2
    assert q["customers_at_start"].tolist() == [3, 2]
    assert q["churned"].tolist() == [1, 0]
    assert q["new_customers"].tolist() == [0, 0]
    assert q["customers_at_end"].tolist() == [2, 2]
    y = active_customers(engine, Filters("2024-01-01", "2025-01-01"), "year")
    assert y[["customers_at_start", "new_customers", "churned", "customers_at_end"]].iloc[0].tolist() == [
        3,
        0,
        1,
        2,
    ]
    # product P2 only: S4 (A3 from Feb 15), S5 (A1 to Mar 10), S7 (A4 Feb 5-20)
    # Jan: {A1} -> {A1}; Feb: {A1} -> {A1, A3}; Mar: {A1, A3} -> {A3}
    p2 = active_customers(engine, Q1.replace(products=["P2"]), "month")
    assert p2["customers_at_start"].tolist() == [1, 1, 2]
    assert p2["new_customers"].tolist() == [0, 1, 0]
    assert p2["churned"].tolist() == [0, 0, 1]
    empty = active_customers(engine, Q1.replace(segments=["Nobody"]), "month")
    assert empty["customers_at_start"].tolist() == [0, 0, 0]


def test_revenue_retention_by_month(engine: sa.Engine) -> None:
    out = revenue_retention(engine, Q1, "month")
    assert list(out.columns) == [
        "period",
        "accounts_at_start",
        "mrr_at_start",
        "expansion",
        "contraction",
        "churned_mrr",
        "revenue_churn_rate",
        "net_revenue_retention",
        "gross_revenue_retention",
        *RETENTION_INTERVALS,
        "low_sample",
    ]
    # Jan: start 390 (A1 140, A2 200, A3 50); A2 churned 200; A4 is new -> excluded
    #   churn = 200/390; NRR = (390 - 200)/390; GRR = 190/390
    # Feb: start 250 (A1 140, A3 50, A4 60); A3 50 -> 80 expansion 30; A4 churned 60
    #   churn = 60/250 = 0.24; NRR = (250 + 30 - 60)/250 = 0.88; GRR = (250 - 60)/250 = 0.76
    # Mar: start 220 (A1 140, A3 80); A1 140 -> 100 contraction 40
    #   churn = 40/220; NRR = GRR = 180/220
    assert out["mrr_at_start"].tolist() == pytest.approx([390.0, 250.0, 220.0])
    assert out["expansion"].tolist() == pytest.approx([0.0, 30.0, 0.0])
    assert out["contraction"].tolist() == pytest.approx([0.0, 0.0, 40.0])
    assert out["churned_mrr"].tolist() == pytest.approx([200.0, 60.0, 0.0])
    assert out["revenue_churn_rate"].tolist() == pytest.approx([200 / 390, 0.24, 40 / 220])
    assert out["net_revenue_retention"].tolist() == pytest.approx([190 / 390, 0.88, 180 / 220])
    assert out["gross_revenue_retention"].tolist() == pytest.approx([190 / 390, 0.76, 180 / 220])


RETENTION_INTERVALS = [
    "revenue_churn_ci_low", "revenue_churn_ci_high", "nrr_ci_low", "nrr_ci_high", "grr_ci_low", "grr_ci_high",
]  # fmt: skip


def test_revenue_retention_intervals_by_month(engine: sa.Engine) -> None:
    """Delta method over the n accounts active at s, per account x = MRR at s, y = MRR at e
    (0 when lost), g = min(x, y): R = Σy ÷ Σx, Var = n/(n − 1) · Σ(y − R·x)² ÷ (Σx)²,
    bounds R ∓ 1.959964·√Var; NRR's low bound clipped at 0, GRR's bounds to [0, 1];
    revenue churn = 1 − GRR."""
    out = revenue_retention(engine, Q1, "month")
    assert out["accounts_at_start"].tolist() == [3, 3, 2]
    assert out["low_sample"].tolist() == [True, True, True]  # fewer than 30 accounts
    # Feb: A1 x 140 y 140, A3 x 50 y 80, A4 x 60 y 0; Σx = 250, NRR = 220/250 = 0.88
    #   residuals 140 − 123.2 = 16.8, 80 − 44 = 36, 0 − 52.8 = −52.8 -> Σ² = 282.24 + 1296 + 2787.84
    #   = 4366.08; Var = 3/2 · 4366.08/62500 = 0.104786; √ = 0.323707; half = 0.634453
    #   -> [0.245547, 1.514453]
    # GRR: g = 140, 50, 0; Σg = 190, GRR = 0.76; residuals 140 − 106.4 = 33.6, 50 − 38 = 12, −45.6
    #   -> Σ² = 1128.96 + 144 + 2079.36 = 3352.32; Var = 3/2 · 3352.32/62500 = 0.080456; √ = 0.283647;
    #   half = 0.555938 -> [0.204062, 1.315938] -> clipped [0.204062, 1.0]; revenue churn [0, 0.795938]
    # Mar: A1 x 140 y 100, A3 x 80 y 80; NRR = GRR = 180/220 = 9/11; residuals −160/11, +160/11
    #   -> Σ² = 51200/121; Var = 2/1 · (51200/121)/48400 = (320/2420)²; half = 1.959964 · 0.132231
    #   = 0.259169 -> NRR [0.559013, 1.077351], GRR [0.559013, 1.0], revenue churn [0, 0.440987]
    # Jan: A1 140 -> 140, A2 200 -> 0, A3 50 -> 50; NRR = GRR = 190/390; residuals 28000/390,
    #   −38000/390, 10000/390 -> Σ² = 2328e6/152100 = 15305.72; Var = 3/2 · 15305.72/152100 = 0.150944;
    #   half = 1.959964 · 0.388515 = 0.761475 -> [−0.274296, 1.248655] -> NRR [0, 1.248655],
    #   GRR [0, 1.0], revenue churn [0, 1.0]
    assert out["nrr_ci_low"].tolist() == pytest.approx([0.0, 0.245547, 0.559013], abs=1e-6)
    assert out["nrr_ci_high"].tolist() == pytest.approx([1.248655, 1.514453, 1.077351], abs=1e-6)
    assert out["grr_ci_low"].tolist() == pytest.approx([0.0, 0.204062, 0.559013], abs=1e-6)
    assert out["grr_ci_high"].tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    assert out["revenue_churn_ci_low"].tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    assert out["revenue_churn_ci_high"].tolist() == pytest.approx([1.0, 0.795938, 0.440987], abs=1e-6)
    # Q2 (quarters): A1 100 -> 100, A3 80 -> 80, nothing changes: every residual 0 -> [1, 1]
    q = revenue_retention(engine, Filters("2024-04-01", "2024-07-01"), "quarter")
    assert q[["nrr_ci_low", "nrr_ci_high", "grr_ci_low", "grr_ci_high"]].iloc[0].tolist() == pytest.approx(
        [1.0, 1.0, 1.0, 1.0]
    )
    # no accounts at the start: NaN bounds, low sample
    empty = revenue_retention(engine, Q1.replace(segments=["Nobody"]), "month")
    assert empty[RETENTION_INTERVALS].isna().all(axis=None) and empty["low_sample"].all()


# SPREAD: 35 accounts R01..R35 in segment "Spread", each with a 10 MRR subscription from 1 Dec 2023.
#   January: R01..R05 add a second 10 MRR subscription on 15 Jan (expansion 10 each);
#            R06..R10 end on 20 Jan (churn).   February: R11 ends on 10 Feb.   March: no change.
#   Retention costs (account R12): 300 on 5 Jan, 290 on 5 Feb.
SPREAD_ACCOUNTS = [
    {"account_id": f"R{i:02d}", "name": f"Spread {i}", "segment": "Spread", "created_at": ts("2023-11-01")}
    for i in range(1, 36)
]
SPREAD_SUBSCRIPTIONS = [
    {"subscription_id": f"RS{i:02d}", "account_id": f"R{i:02d}", "product_id": "P1", "mrr": 10.0,
     "started_at": ts("2023-12-01"),
     "ended_at": ts("2024-01-20") if 6 <= i <= 10 else ts("2024-02-10") if i == 11 else None}
    for i in range(1, 36)
] + [
    {"subscription_id": f"RX{i:02d}", "account_id": f"R{i:02d}", "product_id": "P2", "mrr": 10.0,
     "started_at": ts("2024-01-15"), "ended_at": None}
    for i in range(1, 6)
]  # fmt: skip
SPREAD_COSTS = [
    {"cost_id": "RK1", "incurred_on": day("2024-01-05"), "category": "loyalty", "purpose": "retention",
     "account_id": "R12", "amount": 300.0},
    {"cost_id": "RK2", "incurred_on": day("2024-02-05"), "category": "loyalty", "purpose": "retention",
     "account_id": "R12", "amount": 290.0},
]  # fmt: skip
SPREAD = {"accounts": SPREAD_ACCOUNTS, "subscriptions": SPREAD_SUBSCRIPTIONS, "costs": SPREAD_COSTS}
SPREAD_Q1 = Filters("2024-01-01", "2024-04-01", segments=["Spread"])


def assert_spread_retention(out: pd.DataFrame) -> None:
    """The hand-worked numbers of SPREAD (shared with tests/kpis/test_rollups.py)."""
    # Accounts at the start: Jan 35; Feb 30 (R01..R05, R11..R35); Mar 29 (R11 gone) -> low_sample at 29.
    assert out["accounts_at_start"].tolist() == [35, 30, 29]
    assert out["low_sample"].tolist() == [False, False, True]
    # Jan: Σx = 350; y = 20 (R01..R05), 0 (R06..R10), 10 (R11..R35): Σy = 350, NRR = 1;
    #   residuals +10 (5), −10 (5), 0 (25) -> Σ² = 1000; Var = 35/34 · 1000/122500 = 0.00840336;
    #   √ = 0.0916699; half = 1.959964 · 0.0916699 = 0.179670 -> [0.820330, 1.179670]
    # Jan GRR: g = 10 (30 retained), 0 (5 lost): Σg = 300, GRR = 6/7 = 0.857143;
    #   residuals 10/7 (30), −60/7 (5) -> Σ² = (3000 + 18000)/49 = 428.5714;
    #   Var = 35/34 · 428.5714/122500 = 0.00360144; √ = 0.0600120; half = 0.117621
    #   -> [0.739521, 0.974764]; revenue churn 1 − 6/7 = 0.142857 in [0.025236, 0.260479]
    # Feb: Σx = 5·20 + 25·10 = 350; R11 lost: Σy = 340, NRR = 34/35 = 0.971429;
    #   residuals 20/35 (5), 10/35 (24), −340/35 (R11) -> Σ² = (2000 + 2400 + 115600)/1225 = 97.959184;
    #   Var = 30/29 · 97.959184/122500 = 0.00082724; √ = 0.0287618; half = 0.0563721
    #   -> [0.915057, 1.027801]; no expansion: GRR = NRR, clipped -> [0.915057, 1.0]
    # Mar: nothing changes: every residual 0 -> [1, 1] (29 accounts: low_sample)
    assert out["net_revenue_retention"].tolist() == pytest.approx([1.0, 34 / 35, 1.0])
    assert out["gross_revenue_retention"].tolist() == pytest.approx([6 / 7, 34 / 35, 1.0])
    assert out["nrr_ci_low"].tolist() == pytest.approx([0.820330, 0.915057, 1.0], abs=1e-6)
    assert out["nrr_ci_high"].tolist() == pytest.approx([1.179670, 1.027801, 1.0], abs=1e-6)
    assert out["grr_ci_low"].tolist() == pytest.approx([0.739521, 0.915057, 1.0], abs=1e-6)
    assert out["grr_ci_high"].tolist() == pytest.approx([0.974764, 1.0, 1.0], abs=1e-6)
    assert out["revenue_churn_ci_low"].tolist() == pytest.approx([0.025236, 0.0, 0.0], abs=1e-6)
    assert out["revenue_churn_ci_high"].tolist() == pytest.approx([0.260479, 0.084943, 0.0], abs=1e-6)


def test_revenue_retention_intervals_and_low_sample_boundary(db: sa.Engine) -> None:
    load(db, BASE, SPREAD)
    assert_spread_retention(revenue_retention(db, SPREAD_Q1, "month"))


def test_revenue_retention_quarter_year_segment_and_empty(engine: sa.Engine) -> None:
    q = revenue_retention(engine, Filters("2024-01-01", "2024-07-01"), "quarter")
    # Q1 [Jan 1, Apr 1): start 390; A1 140 -> 100 (contraction 40); A2 churned 200; A3 50 -> 80 (expansion 30)
    #   churn = (200 + 40)/390; NRR = (390 + 30 - 40 - 200)/390 = 180/390; GRR = (390 - 40 - 200)/390 = 150/390
    # Q2: start 180 (A1 100, A3 80), no change -> churn 0, NRR = GRR = 1
    assert q["revenue_churn_rate"].tolist() == pytest.approx([240 / 390, 0.0])
    assert q["net_revenue_retention"].tolist() == pytest.approx([180 / 390, 1.0])
    assert q["gross_revenue_retention"].tolist() == pytest.approx([150 / 390, 1.0])
    y = revenue_retention(engine, Filters("2024-01-01", "2025-01-01"), "year")
    assert y["net_revenue_retention"].tolist() == pytest.approx([180 / 390])
    smb = revenue_retention(engine, Q1.replace(segments=["SMB"]), "month")
    # SMB = A1, A3. Feb: start 190 (140 + 50), A3 +30 -> NRR 220/190, GRR 1, churn 0
    assert smb["net_revenue_retention"].iloc[1] == pytest.approx(220 / 190)
    assert smb["gross_revenue_retention"].iloc[1] == pytest.approx(1.0)
    empty = revenue_retention(engine, Q1.replace(segments=["Nobody"]), "month")
    assert empty["mrr_at_start"].tolist() == [0.0, 0.0, 0.0]
    assert empty["net_revenue_retention"].isna().all() and empty["revenue_churn_rate"].isna().all()


def test_cohort_retention(engine: sa.Engine) -> None:
    out = cohort_retention(engine, Filters("2024-01-01", "2024-03-01"), as_of=ts("2024-04-15"))
    assert list(out.columns)[:5] == [
        "cohort",
        "months_since_start",
        "customers",
        "retained",
        "retention_rate",
    ]
    # First subscription month: A1 2023-06, A2 2023-01, A3 2024-01 (Jan 1 00:00), A4 2024-01 (Jan 10).
    # Data end = min(as_of Apr 15, latest start/end = Mar 10) -> months up to March 2024.
    # Jan 2024 cohort {A3, A4}: k0 = 2; k1 (Feb 1): A3, A4 -> 2; k2 (Mar 1): A3 only (S6 ended Mar 1) -> 1
    # Feb 2024 cohort: empty -> customers 0, rate NaN (k0 and k1 = Mar 1)
    jan = out[out["cohort"] == pd.Timestamp("2024-01-01")]
    assert jan["months_since_start"].tolist() == [0, 1, 2]
    assert jan["customers"].tolist() == [2, 2, 2]
    assert jan["retained"].tolist() == [2, 2, 1]
    assert jan["retention_rate"].tolist() == pytest.approx([1.0, 1.0, 0.5])
    feb = out[out["cohort"] == pd.Timestamp("2024-02-01")]
    assert feb["months_since_start"].tolist() == [0, 1]
    assert feb["customers"].tolist() == [0, 0]
    assert feb["retention_rate"].isna().all()


def test_cohort_retention_interval_and_low_sample(engine: sa.Engine) -> None:
    # Wilson score 95 % of retained ÷ customers, z = 1.959964 (z² = 3.841459), n = 2:
    #   (p + z²/4 ∓ z·√(p(1 − p)/2 + z²/16)) ÷ (1 + z²/2), 1 + z²/2 = 2.920729, z²/4 = 0.960365
    # Jan 2024 cohort {A3, A4}: k0, k1 2/2 -> centre 1.960365/2.920729 = 0.671190,
    #   half 1.959964·√0.240091/2.920729 = 0.328810 -> [0.342380, 1.0]; k2 1/2 -> centre 0.5,
    #   half 1.959964·√(0.125 + 0.240091)/2.920729 = 0.405469 -> [0.094531, 0.905469].
    # Feb 2024 cohort empty: NaN bounds. Every cohort has fewer than 30 customers: low_sample.
    out = cohort_retention(engine, Filters("2024-01-01", "2024-03-01"), as_of=ts("2024-04-15"))
    assert list(out.columns) == [
        "cohort", "months_since_start", "customers", "retained", "retention_rate", "ci_low", "ci_high",
        "low_sample",
    ]  # fmt: skip
    jan = out[out["cohort"] == pd.Timestamp("2024-01-01")]
    assert jan["ci_low"].tolist() == pytest.approx([0.342380, 0.342380, 0.094531], abs=1e-6)
    assert jan["ci_high"].tolist() == pytest.approx([1.0, 1.0, 0.905469], abs=1e-6)
    feb = out[out["cohort"] == pd.Timestamp("2024-02-01")]
    assert feb[["ci_low", "ci_high"]].isna().all(axis=None)
    assert out["low_sample"].tolist() == [True] * 5


def test_cohort_retention_low_sample_boundary(engine: sa.Engine) -> None:
    # Cohort May 2024: 30 accounts C00..C29 start on 10 May; C00..C09 end on 20 May.
    # Cohort June 2024: 29 accounts D00..D28 start on 10 June, none ends.
    # Data end = min(as_of 15 Jul, latest start 10 Jun) -> months up to June.
    # May: k0 30/30, k1 (1 Jun) 20/30 -> low_sample False; June: k0 29/29 -> low_sample True.
    # Wilson 20/30: p = 0.666667, centre (0.666667 + 0.064024)/1.128049 = 0.647748,
    #   half 1.959964·√(0.007407 + 0.001067)/1.128049 = 0.159947 -> [0.487801, 0.807695]
    accounts = [
        {"account_id": f"{c}{i:02d}", "name": f"{c}{i:02d}", "segment": "Cohorts", "created_at": ts("2024-05-01")}
        for c, count in (("C", 30), ("D", 29))
        for i in range(count)
    ]  # fmt: skip
    subscriptions = [
        {"subscription_id": f"S{a['account_id']}", "account_id": a["account_id"], "product_id": "P1", "mrr": 1.0,
         "started_at": ts("2024-05-10" if a["account_id"][0] == "C" else "2024-06-10"),
         "ended_at": ts("2024-05-20") if a["account_id"] < "C10" else None}
        for a in accounts
    ]  # fmt: skip
    load(engine, {"accounts": accounts, "subscriptions": subscriptions})
    out = cohort_retention(
        engine, Filters("2024-05-01", "2024-07-01", segments=["Cohorts"]), as_of=ts("2024-07-15")
    )
    assert out["customers"].tolist() == [30, 30, 29]
    assert out["retained"].tolist() == [30, 20, 29]
    assert out["low_sample"].tolist() == [False, False, True]
    assert (out.loc[1, "ci_low"], out.loc[1, "ci_high"]) == pytest.approx((0.487801, 0.807695), abs=1e-6)


def test_cohort_retention_boundaries_and_as_of(engine: sa.Engine) -> None:
    out = cohort_retention(engine, Filters("2023-01-01", "2023-02-01"), as_of=ts("2024-04-15"))
    # Jan 2023 cohort = {A2} (S2 2023-01-01 -> 2024-02-01 00:00): months Jan 2023 .. Mar 2024 -> k = 0..14
    # k = 12 (2024-01-01): active -> 1; k = 13 (2024-02-01, the exact end): not active -> 0
    assert out["months_since_start"].tolist() == list(range(15))
    assert out.set_index("months_since_start").loc[12, "retained"] == 1
    assert out.set_index("months_since_start").loc[13, "retained"] == 0
    early = cohort_retention(engine, Filters("2024-01-01", "2024-02-01"), as_of=ts("2024-02-15"))
    # data end = as_of Feb 15 -> the Jan 2024 cohort has k = 0, 1 only
    assert early["months_since_start"].tolist() == [0, 1]
    smb = cohort_retention(
        engine, Filters("2024-01-01", "2024-02-01", segments=["SMB"]), as_of=ts("2024-04-15")
    )
    # SMB: only A3 in the Jan 2024 cohort, retained through March
    assert smb["customers"].tolist() == [1, 1, 1]
    assert smb["retained"].tolist() == [1, 1, 1]


def test_results_agree_across_databases(make_db) -> None:
    year = Filters("2023-01-01", "2025-01-01")

    def compute(engine: sa.Engine) -> dict[str, pd.DataFrame]:
        return {
            "revenue": revenue(engine, year, "month"),
            "active_customers": active_customers(engine, year, "quarter"),
            "revenue_retention": revenue_retention(engine, year, "month"),
            "cohort_retention": cohort_retention(engine, year, as_of=ts("2024-04-15")),
        }

    assert_databases_agree(make_db, [BASE, {"payments": PAYMENTS, "subscriptions": SUBSCRIPTIONS}], compute)
