"""stage_durations on PostgreSQL: the planner estimates its visits CTE from statistics.

The visits are filtered on a window's output (the stage's columns passed through the
window over each deal's history). A filter on an expression there (a CASE of the stage's
columns, as before) is estimated at 0.5 % of the window's rows, so the hash aggregates and
sorts over the visits were planned for a few thousand rows at 100k accounts where there
were 1.1M. Here: 400 deals (Lead → Qualified → Proposal → Closed Won/Lost or still open),
ANALYZEd, and the plan's estimate for the visits CTE is compared with the visits counted.
"""

from __future__ import annotations

import datetime as dt

from crm_data.dialects import analyze
from kpis import Filters, stage_durations
from tests.kpis import fixtures

YEAR = Filters("2024-01-01", "2025-01-01")
NOW = dt.datetime(2024, 12, 1)


def _visits_cte_rows(plan: dict) -> float | None:
    """The planner's row estimate of the CTE named ``visits`` in an EXPLAIN (FORMAT JSON) plan."""
    if plan.get("Subplan Name") == "CTE visits":
        return float(plan["Plan Rows"])
    for child in plan.get("Plans", []):
        found = _visits_cte_rows(child)
        if found is not None:
            return found
    return None


def test_visits_cte_estimated_from_statistics(make_db):
    engine = make_db("postgresql")
    fixtures.load(engine, only=("accounts", "users", "products", "pipeline_stages"))
    deals, history = [], []
    for i in range(400):
        created = dt.datetime(2024, 1, 1) + dt.timedelta(hours=19 * i)
        ending = ("won", "lost", "open", "open")[i % 4]
        closed = created + dt.timedelta(days=40) if ending != "open" else None
        deals.append(fixtures._deal(f"E{i}", "A1", "u1", "P1", 100.0, created, closed, ending))
        for step, stage in enumerate(("Lead", "Qualified", "Proposal")):
            history.append(
                dict(deal_id=f"E{i}", stage=stage, entered_at=created + dt.timedelta(days=10 * step))
            )
        if closed is not None:
            stage = "Closed Won" if ending == "won" else "Closed Lost"
            history.append(dict(deal_id=f"E{i}", stage=stage, entered_at=closed))
    fixtures.insert(engine, "deals", deals)
    fixtures.insert(engine, "deal_stage_history", history)
    with engine.begin() as c:  # this test's tables only: a database-wide ANALYZE locks every
        # table of the other tests' scratch schemas too (out of shared memory under -n auto)
        analyze(c, ["accounts", "users", "products", "pipeline_stages", "deals", "deal_stage_history"])

    with fixtures.statements_sent(engine, "visits") as statements:
        frame = stage_durations(engine, YEAR, now=NOW)
    visits = int(frame["finished"].sum() + frame["censored"].sum())
    assert visits > 1000  # the open stages' visits entered before NOW
    ((statement, parameters),) = statements
    estimated = _visits_cte_rows(fixtures.postgresql_plan(engine, statement, parameters))
    assert estimated is not None
    assert visits / 3 <= estimated <= visits * 3, (estimated, visits)
