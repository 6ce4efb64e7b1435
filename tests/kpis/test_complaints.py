"""kpis.complaints: weekly defect / complaint tickets per product against the product's own
12-week baseline, flagged by the Poisson upper tail (DuckDB, SQLite, PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from kpis.complaints import complaint_spikes, complaint_weekly
from kpis.filters import Filters
from tests.kpis.more_fixtures import BASE, assert_databases_agree, load, ts

_ids = iter(range(1, 1000))


def ticket(product, account, opened, category="defect"):
    return {"ticket_id": f"T{next(_ids)}", "product_id": product, "account_id": account,
            "category": category, "opened_at": ts(opened)}  # fmt: skip


# P1 (Widget): one ticket a week on Tuesdays 10:00 for the 11 weeks Monday 2024-01-01 .. 2024-03-11,
# and one on Sunday 2024-03-24 23:59:59 (still the week of Monday Mar 18): 12 weeks × 1 ticket.
BASELINE = [
    ticket("P1", "A1", (dt.datetime(2024, 1, 2, 10) + dt.timedelta(weeks=w)).isoformat(" "))
    for w in range(11)
] + [ticket("P1", "A1", "2024-03-24 23:59:59", "complaint")]
# The planted spike, week of Monday 2024-03-25: 6 tickets (one exactly at Monday 00:00),
# 3 of them from A1 (SMB), 2 from A2 (Enterprise), 1 without an account.
SPIKE = [
    ticket("P1", "A1", "2024-03-25 00:00:00"),
    ticket("P1", "A1", "2024-03-26 09:00", "complaint"),
    ticket("P1", "A1", "2024-03-26 10:00"),
    ticket("P1", "A2", "2024-03-26 11:00"),
    ticket("P1", "A2", "2024-03-27 11:00"),
    ticket("P1", None, "2024-03-28 11:00"),
]
NOT_COUNTED = [
    ticket("P1", "A1", "2024-03-26 12:00", "question"),  # not a defect / complaint
    ticket(None, "A1", "2024-03-26 12:00"),  # no product
    ticket("P1", "A1", "2024-04-08 00:00:00"),  # at the end of the range
]
# A normal week for P1 (Monday Apr 1): 2 tickets.
NORMAL = [ticket("P1", "A1", "2024-04-02 10:00"), ticket("P1", "A3", "2024-04-03 10:00")]
# P2 (Gadget), no history: 2 tickets in the week of Mar 25, 4 in the week of Apr 1.
NEW_PRODUCT = [ticket("P2", "A2", f"2024-03-2{d} 10:00") for d in (6, 7)] + [
    ticket("P2", "A2", f"2024-04-0{d} 10:00") for d in (1, 2, 3, 4)
]

WEEKS = Filters("2024-03-25", "2024-04-08")  # Mondays Mar 25 and Apr 1; baseline from Jan 1


@pytest.fixture
def engine(db: sa.Engine) -> sa.Engine:
    load(db, BASE, {"tickets": BASELINE + SPIKE + NOT_COUNTED + NORMAL + NEW_PRODUCT})
    return db


def test_planted_spike_is_flagged_and_normal_week_is_not(engine: sa.Engine) -> None:
    out = complaint_spikes(engine, WEEKS)
    assert list(out.columns) == [
        "product_id",
        "product_name",
        "week",
        "observed",
        "expected",
        "p_value",
        "is_spike",
    ]
    p1 = out[out["product_id"] == "P1"].reset_index(drop=True)
    assert p1["product_name"].tolist() == ["Widget", "Widget"]
    assert p1["week"].tolist() == [pd.Timestamp("2024-03-25"), pd.Timestamp("2024-04-01")]
    assert p1["observed"].tolist() == [6, 2]
    # Mar 25: baseline = 12 weeks × 1 / 12 = 1.0
    #   P(X ≥ 6 | 1) = 1 − e⁻¹(1 + 1 + 1/2 + 1/6 + 1/24 + 1/120) = 1 − 0.367879 × 2.716667 = 0.000594 -> spike
    # Apr 1: baseline = (11 weeks × 1 + 6) / 12 = 17/12 = 1.416667
    #   P(X ≥ 2 | 17/12) = 1 − 0.242521 × 2.416667 = 0.413907 -> not a spike
    assert p1["expected"].tolist() == pytest.approx([1.0, 17 / 12])
    assert p1["p_value"].tolist() == pytest.approx([0.000594, 0.413907], abs=1e-6)
    assert p1["is_spike"].tolist() == [True, False]


def test_new_product_uses_the_rate_floor(engine: sa.Engine) -> None:
    p2 = complaint_spikes(engine, WEEKS).query("product_id == 'P2'")
    # Mar 25: baseline 0 (12 zero weeks) -> λ = 0.5: P(X ≥ 2) = 1 − e^−0.5 × 1.5 = 0.090204 -> no
    # Apr 1: baseline 2/12 -> λ = 0.5: P(X ≥ 4) = 1 − e^−0.5 (1 + 0.5 + 0.125 + 0.0208333) = 0.001752 -> spike
    assert p2["observed"].tolist() == [2, 4]
    assert p2["expected"].tolist() == pytest.approx([0.0, 2 / 12])
    assert p2["p_value"].tolist() == pytest.approx([0.090204, 0.001752], abs=1e-6)
    assert p2["is_spike"].tolist() == [False, True]


def test_segment_filter_drops_tickets_without_account(engine: sa.Engine) -> None:
    smb = complaint_spikes(engine, WEEKS.replace(segments=["SMB"]))
    # SMB = A1, A3: P1 Mar 25 keeps the 3 A1 tickets (baseline still 1.0):
    #   P(X ≥ 3 | 1) = 1 − e⁻¹ × 2.5 = 0.080301 -> not a spike; P2 (only A2) disappears
    assert smb["product_id"].unique().tolist() == ["P1"]
    assert smb["observed"].tolist() == [3, 2]
    assert smb["p_value"].iloc[0] == pytest.approx(0.080301, abs=1e-6)
    assert not smb["is_spike"].any()
    assert complaint_spikes(engine, WEEKS.replace(segments=["Nobody"])).empty


def test_weekly_evidence_series(engine: sa.Engine) -> None:
    longer = Filters("2024-03-04", "2024-04-08")
    weekly = complaint_weekly(engine, longer, "P1")
    # Mondays Mar 4, 11, 18, 25, Apr 1: 1, 1, 1, 6, 2 tickets.
    # Mar 4's baseline covers Mondays Dec 11 .. Feb 26: the 3 December weeks without tickets count as 0,
    # the 9 weeks Jan 1 .. Feb 26 have 1 each -> 9/12
    assert weekly["observed"].tolist() == [1, 1, 1, 6, 2]
    assert weekly["expected"].iloc[0] == pytest.approx(9 / 12)
    assert weekly["is_spike"].tolist() == [False, False, False, True, False]
    assert complaint_weekly(engine, longer, "P9").empty


def test_results_agree_across_databases(make_db) -> None:
    def compute(engine: sa.Engine) -> dict[str, pd.DataFrame]:
        return {"complaint_spikes": complaint_spikes(engine, Filters("2024-01-01", "2024-04-15"))}

    tickets = BASELINE + SPIKE + NOT_COUNTED + NORMAL + NEW_PRODUCT
    assert_databases_agree(make_db, [BASE, {"tickets": tickets}], compute)


MORE_KEYS = [
    "revenue", "active_customers", "net_revenue_retention", "revenue_churn", "lead_conversion", "funnel",
    "weighted_pipeline", "cohort_retention", "customer_profitability", "campaign_funnel", "web_ctr",
    "social_engagement", "complaint_spikes",
]  # fmt: skip


@pytest.mark.parametrize("key", MORE_KEYS)
def test_registry_entry_matches_its_function(key: str, make_db) -> None:
    """The registry's definition of each more-KPI is its docstring's formula, word for word;
    its value column is one the function returns (even on an empty database); its page exists."""
    import inspect
    from pathlib import Path

    from kpis.registry import get

    kpi = get(key)
    words = " ".join(kpi.definition.split())
    assert words in " ".join(inspect.getdoc(kpi.function).split())
    kwargs = {"freq": "month"} if "freq" in inspect.signature(kpi.function).parameters else {}
    frame = kpi.function(make_db("duckdb"), Filters("2024-01-01", "2024-04-01"), **kwargs)
    assert kpi.value_column in frame.columns
    assert (Path(__file__).resolve().parents[2] / kpi.page).is_file()
