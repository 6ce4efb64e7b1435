"""stage_durations orders stages by (position, stage): two open stages share a position.

``kpis.sales`` numbers the stages by (position, stage) and sorts a deal's visits entered
at the same instant by that number (an unknown stage first). Here "Demo" and "Qualified"
both have position 2, so "Demo" comes first — as a row of the result and among visits
entered at the same instant. Every deal is created on 1 Feb 2024 in Lead and enters Demo
and Qualified at the same instant T one day later: the Demo visit ends at once (0 days,
the Qualified visit follows it) and the Qualified one lasts until Proposal, d days later
(4, 6, 8 days for deals 0, 1, 2). Deal 2 also enters an unknown stage "Review" at T + 8
days, the instant it enters Proposal: an unknown stage sorts first there, so Qualified
still ends at T + 8. Ordered the other way round (Qualified before Demo), Demo would
last 4, 6, 8 and Qualified 0 days. Runs on DuckDB, SQLite and PostgreSQL (``db``).
"""

from __future__ import annotations

import datetime as dt

import pytest

from kpis import Filters, stage_durations
from tests.kpis import fixtures

FEB = Filters("2024-02-01", "2024-03-01")
NOW = dt.datetime(2024, 6, 1)


@pytest.fixture
def tied(db, visits_path):
    fixtures.load(db, only=("accounts", "users", "products", "pipeline_stages"))
    fixtures.insert(
        db,
        "pipeline_stages",
        [dict(stage="Demo", position=2, probability=0.2, is_closed=False, is_won=False)],
    )
    created = dt.datetime(2024, 2, 1)
    tied_at = created + dt.timedelta(days=1)
    deals, history = [], []
    for number, days in enumerate((4, 6, 8)):
        deal_id = f"T{number}"
        deals.append(fixtures._deal(deal_id, "A1", "u1", "P1", 100.0, created, None, "open"))
        proposal = tied_at + dt.timedelta(days=days)
        history += [
            dict(deal_id=deal_id, stage="Lead", entered_at=created),
            dict(deal_id=deal_id, stage="Qualified", entered_at=tied_at),
            dict(deal_id=deal_id, stage="Demo", entered_at=tied_at),
            dict(deal_id=deal_id, stage="Proposal", entered_at=proposal),
        ]
        if number == 2:
            history.append(dict(deal_id=deal_id, stage="Review", entered_at=proposal))
    fixtures.insert(db, "deals", deals)
    fixtures.insert(db, "deal_stage_history", history)
    return visits_path(db)


def test_stages_sharing_a_position_are_ordered_by_name(tied):
    frame = stage_durations(tied, FEB, now=NOW)
    assert frame["stage"].tolist() == ["Lead", "Demo", "Qualified", "Proposal", "Negotiation"]
    assert frame["position"].tolist() == [1, 2, 2, 3, 4]
    by_stage = frame.set_index("stage")
    # Demo: three visits of 0 days, finished (S = 0 at 0: median and p90 0)
    assert by_stage.loc["Demo", ["deals", "finished", "censored"]].tolist() == [3, 3, 0]
    assert by_stage.loc["Demo", ["median_days", "p90_days"]].tolist() == pytest.approx([0.0, 0.0])
    # Qualified: 4, 6, 8 days, finished: S 2/3, 1/3, 0 -> median 6, p90 8
    assert by_stage.loc["Qualified", ["deals", "finished", "censored"]].tolist() == [3, 3, 0]
    assert by_stage.loc["Qualified", ["median_days", "p90_days"]].tolist() == pytest.approx([6.0, 8.0])
    # every deal moved on from Demo (to Proposal, position 3 > 2) and from Qualified
    assert by_stage.loc["Demo", "conversion_to_next"] == pytest.approx(1.0)
    assert by_stage.loc["Qualified", "conversion_to_next"] == pytest.approx(1.0)
    # Proposal: still open at NOW, censored; Lead: 1 day each
    assert by_stage.loc["Proposal", ["deals", "finished", "censored"]].tolist() == [3, 0, 3]
    assert by_stage.loc["Lead", ["median_days", "p90_days"]].tolist() == pytest.approx([1.0, 1.0])
