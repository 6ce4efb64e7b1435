"""churn_rate, churn_by, churned_accounts on the hand-written fixture (tests/kpis/fixtures.py).

Customers active at each month start (started_at <= t < ended_at), no filter:
  1 Jan: A1 (S1,S5), A2 (S2), A3 (S3 starts exactly 1 Jan 00:00), A5 (S6) = 4; A4 starts 15 Jan.
  1 Feb: A1, A3, A4 — A2 ended exactly 1 Feb 00:00 (not active), A5 ended 20 Jan.
  1 Mar: A1 (S1; S5 ended exactly 1 Mar), A3 — A4 ended 20 Feb.
  1 Apr: A1 — A3 ended 10 Mar.   1 May: A1.
"""

from __future__ import annotations

import math

import pytest

from kpis import Filters, churn_by, churn_rate, churned_accounts
from tests.kpis import fixtures
from tests.kpis.fixtures import column

JAN_TO_APR = Filters("2024-01-01", "2024-05-01")


@pytest.fixture
def crm(db):
    return fixtures.load(db)


def test_monthly_churn(crm):
    frame = churn_rate(crm, JAN_TO_APR, "month")
    assert list(frame.columns) == ["period", "customers_at_start", "churned", "churn_rate"]
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


def test_empty_segment_is_nan_everywhere(crm):
    frame = churn_rate(crm, JAN_TO_APR.replace(segments=["Nobody"]), "month")
    assert len(frame) == 4
    assert list(frame["customers_at_start"]) == [0, 0, 0, 0]
    assert frame["churn_rate"].isna().all()


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
    assert list(frame.columns) == ["group", "customers_at_start", "churned", "churn_rate"]


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
