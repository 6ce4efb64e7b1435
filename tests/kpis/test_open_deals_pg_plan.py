"""The open deals' current stage on PostgreSQL: no join evaluated pair by pair.

``kpis.pipeline._current_stage`` ranks each deal's history rows in a window and keeps rank
1. Joined back to the deals on ``rn = 1`` (as before), PostgreSQL estimated that filter of
a window at one row and joined the open deals to the ranked rows by a nested loop whose
join filter compared every pair (the busiest region × industry at 100,000 accounts: 33M
comparisons, 6–14 s for ``stuck_deals``). Now the deals are joined to their history first
and ranked in one window with nothing joined after it. Here: 600 open deals of account A1
(region EU) with two stage entries each, ANALYZEd; the plans of ``open_deal_aging`` and
``stuck_deals`` for region EU must have no join with a join filter, and the numbers are
the ones worked out by hand.

Deals O0..O599 created 2024-01-01, entered Lead on 2024-01-02 and Qualified on 2024-03-01
(O0..O299) or on 2024-06-01 (O300..O599); as of 2024-04-01 (the range's end) the first
half sit in Qualified for 31 days, the second half in Lead for 90 days (Jan 2 → Apr 1).
"""

from __future__ import annotations

import datetime as dt

from crm_data.dialects import analyze
from kpis import Filters
from kpis.pipeline import open_deal_aging, stuck_deals
from tests.kpis import fixtures

EU = Filters("2024-01-01", "2024-04-01", regions=["EU"])
NOW = dt.datetime(2024, 12, 1)  # after the range's end: aged as of 2024-04-01


def _pair_joins(plan: dict) -> list[str]:
    """The join nodes of an EXPLAIN (FORMAT JSON) plan that evaluate a join filter per pair."""
    found = [plan["Join Filter"]] if "Join Filter" in plan else []
    for child in plan.get("Plans", []):
        found += _pair_joins(child)
    return found


def test_current_stages_are_not_joined_pair_by_pair(make_db):
    engine = make_db("postgresql")
    fixtures.load(engine, only=("accounts", "users", "products", "pipeline_stages"))
    created = dt.datetime(2024, 1, 1)
    deals = [fixtures._deal(f"O{i}", "A1", "u1", "P1", 10.0, created, None, "open") for i in range(600)]
    history = []
    for i in range(600):
        qualified = dt.datetime(2024, 3, 1) if i < 300 else dt.datetime(2024, 6, 1)
        history.append(dict(deal_id=f"O{i}", stage="Lead", entered_at=dt.datetime(2024, 1, 2)))
        history.append(dict(deal_id=f"O{i}", stage="Qualified", entered_at=qualified))
    fixtures.insert(engine, "deals", deals)
    fixtures.insert(engine, "deal_stage_history", history)
    with engine.begin() as c:  # this test's tables only (as test_stage_durations_pg_plan)
        analyze(c, ["accounts", "users", "products", "pipeline_stages", "deals", "deal_stage_history"])

    with fixtures.statements_sent(engine, "deal_stage_history") as statements:
        aging = open_deal_aging(engine, EU, now=NOW)
        stuck = stuck_deals(engine, EU, "Lead", min_days=90, limit=1000, now=NOW)
    by_stage = aging.set_index("stage")
    assert by_stage.loc["Lead", "open_deals"] == 300 and by_stage.loc["Qualified", "open_deals"] == 300
    assert by_stage.loc["Lead", "median_age_days"] == 90.0 and by_stage.loc["Qualified", "over_90_days"] == 0
    assert len(stuck) == 300 and set(stuck["days_in_stage"]) == {90.0}
    assert len(statements) == 2
    for statement, parameters in statements:
        assert _pair_joins(fixtures.postgresql_plan(engine, statement, parameters)) == [], statement
