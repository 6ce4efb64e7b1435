"""retention_cost on the hand-written fixture.

Costs: K1 10 Jan personnel retention A1 100 · K2 20 Jan loyalty retention A2 50 ·
K3 1 Feb marketing retention (no account) 30 · K4 31 Jan overhead retention A3 20 ·
K5 15 Feb production ACQUISITION A4 999 (never counted) · K6 5 Mar loyalty retention A3 10.
Retained customers (active at s and at e, see test_churn): Jan A1, A3 = 2; Feb A1, A3 = 2;
Mar A1 = 1; Apr A1 = 1.
"""

from __future__ import annotations

import math

import pytest

from kpis import Filters, retention_cost
from tests.kpis import fixtures
from tests.kpis.fixtures import column
from tests.kpis.more_fixtures import BASE, load
from tests.kpis.test_revenue import SPREAD, SPREAD_Q1

JAN_TO_APR = Filters("2024-01-01", "2024-05-01")
NAN = math.nan


@pytest.fixture
def crm(db):
    return fixtures.load(db)


def test_monthly_retention_cost(crm):
    frame = retention_cost(crm, JAN_TO_APR, "month")
    assert list(frame.columns) == [
        "period", "retention_costs", "retained_customers", "cost_per_retained_customer", "low_sample",
        "personnel", "production", "overhead", "marketing", "loyalty",
    ]  # fmt: skip
    # Jan: 100 + 50 + 20 = 170 over 2 retained -> 85; Feb: 30 (K3 on 1 Feb) / 2 -> 15;
    # Mar: 10 / 1 -> 10; Apr: 0 / 1 -> 0
    assert column(frame, "retention_costs") == pytest.approx([170.0, 30.0, 10.0, 0.0])
    assert list(frame["retained_customers"]) == [2, 2, 1, 1]
    assert column(frame, "cost_per_retained_customer") == pytest.approx([85.0, 15.0, 10.0, 0.0])
    assert column(frame, "personnel") == pytest.approx([100.0, 0.0, 0.0, 0.0])
    assert column(frame, "loyalty") == pytest.approx([50.0, 0.0, 10.0, 0.0])
    assert column(frame, "overhead") == pytest.approx([20.0, 0.0, 0.0, 0.0])
    assert column(frame, "marketing") == pytest.approx([0.0, 30.0, 0.0, 0.0])
    assert column(frame, "production") == pytest.approx([0.0] * 4)  # K5 is acquisition
    # retained 2, 2, 1, 1: each fewer than 30 -> low_sample
    assert frame["low_sample"].tolist() == [True] * 4


def test_low_sample_boundary_at_30_retained_customers(db):
    # tests/kpis/test_revenue.py SPREAD: retained (active at s and at e) Jan R01..R05 + R11..R35 = 30;
    # Feb R01..R05 + R12..R35 = 29 (R11 ends 10 Feb); Mar the same 29.
    # Costs: Jan 300 / 30 = 10 (not low); Feb 290 / 29 = 10 (low); Mar 0 / 29 = 0 (low).
    load(db, BASE, SPREAD)
    frame = retention_cost(db, SPREAD_Q1, "month")
    assert list(frame["retained_customers"]) == [30, 29, 29]
    assert column(frame, "cost_per_retained_customer") == pytest.approx([10.0, 10.0, 0.0])
    assert frame["low_sample"].tolist() == [False, True, True]


def test_segment_and_periods_without_retained_customers(crm):
    # SMB: costs K4 20 (Jan), K6 10 (Mar); K3 has no account -> excluded.
    # retained SMB: Jan A3 = 1; Feb A3 (A4 churns) = 1; Mar A3 churns = 0; Apr nobody = 0
    # -> 20/1, 0/1, 10/0 = NaN, 0/0 = NaN
    frame = retention_cost(crm, JAN_TO_APR.replace(segments=["SMB"]), "month")
    assert column(frame, "retention_costs") == pytest.approx([20.0, 0.0, 10.0, 0.0])
    assert list(frame["retained_customers"]) == [1, 1, 0, 0]
    assert column(frame, "cost_per_retained_customer") == pytest.approx([20.0, 0.0, NAN, NAN], nan_ok=True)


def test_quarter_and_empty(crm):
    # Q1: 170 + 30 + 10 = 210; retained over Q1 = active 1 Jan and 1 Apr = A1 -> 210
    frame = retention_cost(crm, Filters("2024-01-01", "2025-01-01"), "quarter")
    assert frame.loc[0, "retention_costs"] == pytest.approx(210.0)
    assert frame.loc[0, "retained_customers"] == 1
    assert frame.loc[0, "cost_per_retained_customer"] == pytest.approx(210.0)
    assert frame.loc[0, "loyalty"] == pytest.approx(60.0)
    assert column(frame, "retention_costs")[1:] == [0.0, 0.0, 0.0]
    empty = retention_cost(crm, JAN_TO_APR.replace(segments=["Nobody"]), "month")
    assert column(empty, "retention_costs") == [0.0] * 4
    assert empty["cost_per_retained_customer"].isna().all()
