"""churn_rate, churn_by, churned_accounts on the hand-written fixture (tests/kpis/fixtures.py).

Customers active at each month start (started_at <= t < ended_at), no filter:
  1 Jan: A1 (S1,S5), A2 (S2), A3 (S3 starts exactly 1 Jan 00:00), A5 (S6) = 4; A4 starts 15 Jan.
  1 Feb: A1, A3, A4 — A2 ended exactly 1 Feb 00:00 (not active), A5 ended 20 Jan.
  1 Mar: A1 (S1; S5 ended exactly 1 Mar), A3 — A4 ended 20 Feb.
  1 Apr: A1 — A3 ended 10 Mar.   1 May: A1.

Intervals: Wilson score 95 % interval of churned ÷ customers_at_start, z = 1.959964
(z² = 3.841459), with p = k ÷ n:
    (p + z²/2n ∓ z·√(p(1 − p)/n + z²/4n²)) ÷ (1 + z²/n);  low_sample = n < 30.
The 30-account fixture ``BULK`` below (segment "Bulk") puts the low_sample boundary at
29 / 30 customers and a 3-of-10 group, worked out by hand there.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
from collections import Counter
from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from kpis import Filters, churn_by, churn_rate, churned_accounts, rollups
from kpis.core import period_starts, wilson_interval
from tests.kpis import fixtures
from tests.kpis.fixtures import column

JAN_TO_APR = Filters("2024-01-01", "2024-05-01")
RATE_COLUMNS = ["churn_rate", "ci_low", "ci_high", "low_sample"]
NAN = math.nan
CUSTOMER_BASE_MODULE = importlib.import_module("kpis.customer_base")

# BULK: 30 accounts B01..B30 in segment "Bulk"; B01..B10 industry Mining, B11..B30 Farming.
# Each has one P1 subscription from 1 Jun 2023, except B30, which starts 10 Jan 2024;
# B01, B02, B03 (Mining) end 20 Feb 2024. Customers active at each month start (Bulk only):
#   1 Jan: B01..B29 = 29 (B30 not yet);  1 Feb: all 30;  1 Mar: B04..B30 = 27;  1 Apr: 27.
BULK_ACCOUNTS = [
    dict(account_id=f"B{i:02d}", name=f"Bulk {i}", segment="Bulk", industry="Mining" if i <= 10 else "Farming",
         created_at=datetime(2023, 5, 1))
    for i in range(1, 31)
]  # fmt: skip
BULK_SUBSCRIPTIONS = [
    dict(subscription_id=f"BS{i:02d}", account_id=f"B{i:02d}", product_id="P1", mrr=10.0,
         started_at=datetime(2024, 1, 10) if i == 30 else datetime(2023, 6, 1),
         ended_at=datetime(2024, 2, 20) if i <= 3 else None, end_reason="price" if i <= 3 else None)
    for i in range(1, 31)
]  # fmt: skip
BULK = Filters("2024-01-01", "2024-04-01", segments=["Bulk"])


@pytest.fixture
def crm(db):
    return fixtures.load(db)


def test_monthly_churn(crm):
    frame = churn_rate(crm, JAN_TO_APR, "month")
    assert list(frame.columns) == ["period", "customers_at_start", "churned", *RATE_COLUMNS]
    assert [p.strftime("%Y-%m-%d") for p in frame["period"]] == [
        "2024-01-01",
        "2024-02-01",
        "2024-03-01",
        "2024-04-01",
    ]
    # Jan: 4 at start, A2 + A5 gone by 1 Feb -> 2/4; A4 (won 15 Jan) in neither count
    # Feb: A1, A3, A4 -> A4 gone -> 1/3;  Mar: A1, A3 -> A3 gone -> 1/2;  Apr: A1 stays -> 0/1
    assert list(frame["customers_at_start"]) == [4, 3, 2, 1]
    assert list(frame["churned"]) == [2, 1, 1, 0]
    assert column(frame, "churn_rate") == pytest.approx([0.5, 1 / 3, 0.5, 0.0], abs=1e-12)


def test_segment_with_a_period_without_customers(crm):
    # SMB = A3, A4. Jan: A3 -> stays (0/1). Feb: A3, A4 -> A4 churns (1/2). Mar: A3 -> churns (1/1).
    # Apr: nobody at start -> 0 counts and NaN, no ZeroDivisionError.
    frame = churn_rate(crm, JAN_TO_APR.replace(segments=["SMB"]), "month")
    assert list(frame["customers_at_start"]) == [1, 2, 1, 0]
    assert list(frame["churned"]) == [0, 1, 1, 0]
    assert column(frame, "churn_rate") == pytest.approx([0.0, 0.5, 1.0, math.nan], nan_ok=True)
    # Apr: the interval is NaN too (wilson_interval of 0 of 0), and 0 < 30 is a low sample.
    assert math.isnan(frame.loc[3, "ci_low"]) and math.isnan(frame.loc[3, "ci_high"])
    assert frame.loc[:2, ["ci_low", "ci_high"]].notna().all(axis=None)
    assert frame["low_sample"].tolist() == [True] * 4


def test_empty_segment_is_nan_everywhere(crm):
    frame = churn_rate(crm, JAN_TO_APR.replace(segments=["Nobody"]), "month")
    assert len(frame) == 4
    assert list(frame["customers_at_start"]) == [0, 0, 0, 0]
    assert frame["churn_rate"].isna().all()
    assert frame[["ci_low", "ci_high"]].isna().all(axis=None)
    assert frame["low_sample"].all()


def test_product_filter_counts_only_those_subscriptions(crm):
    # P2 = S5 (A1, ends exactly 1 Mar) and S3 (A3). Jan: A1, A3 -> both still active 1 Feb (0/2).
    # Feb: A1, A3 -> A1 not active 1 Mar under P2 (1/2). Mar: A3 -> ends 10 Mar (1/1). Apr: none.
    frame = churn_rate(crm, JAN_TO_APR.replace(products=["P2"]), "month")
    assert list(frame["customers_at_start"]) == [2, 2, 1, 0]
    assert list(frame["churned"]) == [0, 1, 1, 0]


def test_owner_filter_goes_through_the_account(crm):
    # u2 owns A2, A4. Jan: A2 churns (1/1). Feb: A4 churns (1/1). Mar, Apr: nobody.
    frame = churn_rate(crm, JAN_TO_APR.replace(owners=["u2"]), "month")
    assert list(frame["customers_at_start"]) == [1, 1, 0, 0]
    assert column(frame, "churn_rate") == pytest.approx([1.0, 1.0, math.nan, math.nan], nan_ok=True)


def test_quarters(crm):
    # Q1 2024: 4 at 1 Jan (A1, A2, A3, A5); at 1 Apr only A1 -> 3/4. Q2..Q4: A1 stays -> 0/1.
    frame = churn_rate(crm, Filters("2024-01-01", "2025-01-01"), "quarter")
    assert [p.month for p in frame["period"]] == [1, 4, 7, 10]
    assert list(frame["customers_at_start"]) == [4, 1, 1, 1]
    assert list(frame["churned"]) == [3, 0, 0, 0]
    assert column(frame, "churn_rate") == pytest.approx([0.75, 0.0, 0.0, 0.0])


def test_years_with_a_year_without_customers(crm):
    # 1 Jan 2023: nobody active yet (S1 starts June 2023) -> 0, NaN.
    # 1 Jan 2024: 4; 1 Jan 2025: A1 -> 3/4.
    frame = churn_rate(crm, Filters("2023-01-01", "2025-01-01"), "year")
    assert [p.year for p in frame["period"]] == [2023, 2024]
    assert list(frame["customers_at_start"]) == [0, 4]
    assert list(frame["churned"]) == [0, 3]
    assert column(frame, "churn_rate") == pytest.approx([math.nan, 0.75], nan_ok=True)


def test_only_periods_starting_inside_the_range(crm):
    # [15 Jan, 15 Mar): the months starting inside are Feb and Mar.
    frame = churn_rate(crm, Filters("2024-01-15", "2024-03-15"), "month")
    assert [p.month for p in frame["period"]] == [2, 3]
    assert list(frame["churned"]) == [1, 1]


def test_churn_by_segment(crm):
    # Summed over Jan..Apr: Enterprise A1 (4 months) + A2 (Jan, churned) -> 5 starts, 1 churned.
    # SMB: Jan A3; Feb A3, A4 (A4 churns); Mar A3 (churns) -> 4 starts, 2 churned.
    # A5 has no segment -> "(not set)": Jan only, churned -> 1/1.
    frame = churn_by(crm, JAN_TO_APR, "segment")
    assert list(frame["group"]) == ["(not set)", "Enterprise", "SMB"]
    assert list(frame["customers_at_start"]) == [1, 5, 4]
    assert list(frame["churned"]) == [1, 1, 2]
    assert column(frame, "churn_rate") == pytest.approx([1.0, 0.2, 0.5])


def test_churn_by_owner_and_unknown_dimension(crm):
    # u1: A1 (4 months), A3 (Jan, Feb, Mar; churns in Mar) -> 7 starts, 1 churned.
    # u2: A2 (Jan, churns), A4 (Feb, churns) -> 2, 2.  A5 has no owner -> (not set) 1, 1.
    frame = churn_by(crm, JAN_TO_APR, "owner_id")
    assert dict(zip(frame["group"], frame["customers_at_start"], strict=True)) == {
        "(not set)": 1,
        "u1": 7,
        "u2": 2,
    }
    assert dict(zip(frame["group"], frame["churned"], strict=True)) == {"(not set)": 1, "u1": 1, "u2": 2}
    with pytest.raises(ValueError):
        churn_by(crm, JAN_TO_APR, "name")


def test_churn_by_empty_selection(crm):
    frame = churn_by(crm, JAN_TO_APR.replace(segments=["Nobody"]), "segment")
    assert frame.empty
    assert list(frame.columns) == ["group", "customers_at_start", "churned", *RATE_COLUMNS]


def test_churned_accounts_drill_down(crm):
    # January churners: A5 (S6 ended 20 Jan, "budget", 40) and A2 (S2 ended 1 Feb 00:00, "closed", 50).
    frame = churned_accounts(crm, JAN_TO_APR, "2024-01-01", "month")
    assert list(frame["account_id"]) == ["A5", "A2"]
    assert list(frame["end_reason"]) == ["budget", "closed"]
    assert column(frame, "lost_mrr") == [40.0, 50.0]
    assert [t.strftime("%Y-%m-%d %H:%M") for t in frame["ended_at"]] == [
        "2024-01-20 00:00",
        "2024-02-01 00:00",
    ]
    # The drill-down lists exactly as many accounts as churn_rate counted.
    assert len(churned_accounts(crm, JAN_TO_APR, "2024-02-01")) == 1
    assert churned_accounts(crm, JAN_TO_APR, "2024-04-01").empty
    # With the SMB filter, January has no churner (A3 stays).
    assert churned_accounts(crm, JAN_TO_APR.replace(segments=["SMB"]), "2024-01-01").empty


# Two more January churners whose MRR is missing (NULL):
#   A6: S7 (P1, MRR NULL, 1 Dec 2023 -> 12 Jan 2024) and S8 (P2, MRR NULL, 1 Dec 2023 -> 10 Jan 2024)
#   A7: S9 (P1, MRR NULL, 1 Dec 2023 -> 5 Jan 2024) and S10 (P2, MRR 25, 1 Dec 2023 -> 25 Jan 2024)
NULL_MRR_ACCOUNTS = [
    dict(account_id=a, name=f"No MRR {a}", segment="SMB", created_at=datetime(2023, 11, 1)) for a in ("A6", "A7")
]  # fmt: skip
NULL_MRR_SUBSCRIPTIONS = [
    dict(subscription_id=sid, account_id=account, product_id=product, mrr=mrr, started_at=datetime(2023, 12, 1),
         ended_at=ended, end_reason="budget")
    for sid, account, product, mrr, ended in [
        ("S7", "A6", "P1", None, datetime(2024, 1, 12)), ("S8", "A6", "P2", None, datetime(2024, 1, 10)),
        ("S9", "A7", "P1", None, datetime(2024, 1, 5)), ("S10", "A7", "P2", 25.0, datetime(2024, 1, 25)),
    ]
]  # fmt: skip


def test_churned_accounts_with_missing_mrr_lose_0(crm):
    fixtures.insert(crm, "accounts", NULL_MRR_ACCOUNTS)
    fixtures.insert(crm, "subscriptions", NULL_MRR_SUBSCRIPTIONS)
    # January churners by their latest end: A6 12 Jan (S7), A5 20 Jan, A7 25 Jan (S10), A2 1 Feb.
    # lost_mrr: A6 NULL + NULL -> 0 (NULL MRR counts as 0, as in customer_base); A5 40;
    #   A7 NULL + 25 -> 25; A2 50.
    frame = churned_accounts(crm, JAN_TO_APR, "2024-01-01")
    assert list(frame["account_id"]) == ["A6", "A5", "A7", "A2"]
    assert column(frame, "lost_mrr") == [0.0, 40.0, 25.0, 50.0]
    # The same money as the customer base's churned_mrr: 0 + 40 + 25 + 50 = 115 of 6 at start
    # (A1, A2, A3, A5, A6, A7), 4 churned.
    from kpis import customer_base

    january = customer_base(crm, JAN_TO_APR, "month", costs=False).iloc[0]
    assert (january["customers_at_start"], january["churned"]) == (6, 4)
    assert january["churned_mrr"] == pytest.approx(frame["lost_mrr"].sum()) == 115.0


# ---------------------------------------------------------------- intervals and low_sample


@pytest.fixture
def bulk(db):
    fixtures.load(db)
    fixtures.insert(db, "accounts", BULK_ACCOUNTS)
    fixtures.insert(db, "subscriptions", BULK_SUBSCRIPTIONS)
    return db


def test_interval_and_low_sample_by_hand(bulk):
    frame = churn_rate(bulk, BULK, "month")
    # Jan 0 of 29 (B30 joins 10 Jan); Feb 3 of 30 (B01..B03 end 20 Feb); Mar 0 of 27.
    assert list(frame["customers_at_start"]) == [29, 30, 27]
    assert list(frame["churned"]) == [0, 3, 0]
    assert column(frame, "churn_rate") == pytest.approx([0.0, 0.1, 0.0])
    # low_sample: 29 < 30 -> True; 30 is not below 30 -> False; 27 -> True.
    assert frame["low_sample"].tolist() == [True, False, True]
    # Feb, 3 of 30: p = 0.1, z²/n = 0.128049, 1 + z²/n = 1.128049;
    #   centre = (0.1 + 0.064024) ÷ 1.128049 = 0.145405
    #   half   = 1.959964·√(0.1·0.9/30 + 3.841459/3600) ÷ 1.128049
    #          = 1.959964·√0.00406707 ÷ 1.128049 = 1.959964·0.063774 ÷ 1.128049 = 0.110805
    #   -> [0.145405 − 0.110805, 0.145405 + 0.110805] = [0.0346, 0.2562]
    assert (frame.loc[1, "ci_low"], frame.loc[1, "ci_high"]) == pytest.approx((0.0346, 0.2562), abs=1e-4)
    # Jan, 0 of 29: p = 0, so centre = half and the bounds are 0 and z² ÷ (n + z²)
    #   = 3.841459 ÷ 32.841459 = 0.1170 (Mar, 0 of 27: 3.841459 ÷ 30.841459 = 0.1246)
    assert column(frame, "ci_low") == pytest.approx([0.0, 0.0346, 0.0], abs=1e-4)
    assert column(frame, "ci_high") == pytest.approx([0.1170, 0.2562, 0.1246], abs=1e-4)
    # the interval always holds the rate
    assert (frame["ci_low"] <= frame["churn_rate"]).all() and (frame["churn_rate"] <= frame["ci_high"]).all()


def test_quarter_interval(bulk):
    # Q1 2024: 29 at 1 Jan (B30 is new in the quarter, in neither count); at 1 Apr B01..B03
    # are gone -> 3 of 29, a low sample; Wilson 3 of 29 = [0.0358, 0.2639]
    frame = churn_rate(bulk, Filters("2024-01-01", "2024-04-01", segments=["Bulk"]), "quarter")
    assert list(frame["customers_at_start"]) == [29]
    assert list(frame["churned"]) == [3]
    assert frame["low_sample"].tolist() == [True]
    assert (frame.loc[0, "ci_low"], frame.loc[0, "ci_high"]) == pytest.approx((0.0358, 0.2639), abs=1e-4)


def test_churn_by_interval_by_hand(bulk):
    # February alone, by industry: Farming 0 of 20, Mining 3 of 10.
    frame = churn_by(bulk, Filters("2024-02-01", "2024-03-01", segments=["Bulk"]), "industry")
    assert list(frame.columns) == ["group", "customers_at_start", "churned", *RATE_COLUMNS]
    assert list(frame["group"]) == ["Farming", "Mining"]
    assert list(frame["customers_at_start"]) == [20, 10]
    assert list(frame["churned"]) == [0, 3]
    # Mining, 3 of 10: p = 0.3, z²/n = 0.384146, 1 + z²/n = 1.384146;
    #   centre = (0.3 + 0.192073) ÷ 1.384146 = 0.492073 ÷ 1.384146 = 0.355507
    #   half   = 1.959964·√(0.3·0.7/10 + 3.841459/400) ÷ 1.384146
    #          = 1.959964·√0.03060365 ÷ 1.384146 = 1.959964·0.174939 ÷ 1.384146 = 0.247715
    #   -> [0.355507 − 0.247715, 0.355507 + 0.247715] = [0.1078, 0.6032]
    # Farming, 0 of 20: [0, 3.841459 ÷ 23.841459] = [0, 0.1611]
    assert column(frame, "ci_low") == pytest.approx([0.0, 0.1078], abs=1e-4)
    assert column(frame, "ci_high") == pytest.approx([0.1611, 0.6032], abs=1e-4)
    assert frame["low_sample"].tolist() == [True, True]
    # Jan..Mar, customer-months: Mining 10 + 10 + 7 = 27 (3 churned), Farming 19 + 20 + 20 = 59
    # -> low_sample counts Σ customers_at_start: Mining 27 < 30, Farming 59 is not.
    quarter = churn_by(bulk, BULK, "industry")
    assert list(quarter["customers_at_start"]) == [59, 27]
    assert list(quarter["churned"]) == [0, 3]
    assert quarter["low_sample"].tolist() == [False, True]
    assert (quarter.loc[1, "ci_low"], quarter.loc[1, "ci_high"]) == pytest.approx(wilson_interval(3, 27))


def test_no_period_in_the_range_is_an_empty_frame(bulk):
    # [10 Jan, 20 Jan) holds no month start: no rows, the same columns, no error.
    frame = churn_rate(bulk, Filters("2024-01-10", "2024-01-20"), "month")
    assert frame.empty
    assert list(frame.columns) == ["period", "customers_at_start", "churned", *RATE_COLUMNS]
    assert churn_by(bulk, Filters("2024-01-10", "2024-01-20"), "segment").empty


def test_rollup_and_base_table_paths_give_the_same_intervals(bulk, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CRM_ROLLUPS", raising=False)
    rollups.refresh_database(bulk, today=dt.date(2025, 12, 31))
    calls: Counter[str] = Counter()
    original = CUSTOMER_BASE_MODULE._base_statement

    def spy(*args: object) -> sa.Select:
        calls["base"] += 1
        return original(*args)

    monkeypatch.setattr(CUSTOMER_BASE_MODULE, "_base_statement", spy)
    cases = [
        (BULK, "month"),
        (Filters("2024-01-01", "2025-01-01", segments=["Bulk"]), "quarter"),
        (JAN_TO_APR.replace(segments=["SMB"]), "month"),  # April: nobody at start, NaN bounds
        (JAN_TO_APR, "month"),
        (Filters("2023-01-01", "2025-01-01"), "year"),
    ]
    for f, freq in cases:
        with bulk.connect() as conn:
            periods = period_starts(f.start, f.end, freq)
            assert rollups.read(conn, rollups.CUSTOMER_BASE, f, freq, periods) is not None, (f, freq)
        rolled = churn_rate(bulk, f, freq)
        assert calls["base"] == 0, f"the roll-up was not read: {f} {freq}"
        monkeypatch.setenv("CRM_ROLLUPS", "off")
        direct = churn_rate(bulk, f, freq)
        monkeypatch.delenv("CRM_ROLLUPS")
        assert calls["base"] == 1, f"the base tables were not read: {f} {freq}"
        calls.clear()
        assert list(rolled.columns) == list(direct.columns)
        pd.testing.assert_frame_equal(rolled, direct, check_exact=False, rtol=1e-12, atol=1e-12)
        assert rolled["low_sample"].dtype == bool
    # the Bulk months on the roll-up path: the hand-checked numbers above
    frame = churn_rate(bulk, BULK, "month")
    assert column(frame, "ci_high") == pytest.approx([0.1170, 0.2562, 0.1246], abs=1e-4)
    assert frame["low_sample"].tolist() == [True, False, True]
