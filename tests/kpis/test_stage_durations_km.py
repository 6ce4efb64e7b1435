"""stage_durations' Kaplan–Meier quantiles on hand-made Lead visits: ties of finished and
censored visits, several censored stretches, a censored last visit, an exact 0.5 after a
censored visit (the numbering of ``kpis.sales._km_quantiles``).

Every deal is created in Q1 2024 and enters Lead when created; a FINISHED Lead visit of d
days moves to Qualified d days later; a CENSORED one stays in Lead (open deal) and is cut
at C = now = 1 Mar 2024, d days after it entered. Each test runs on DuckDB, SQLite and
PostgreSQL (``db`` fixture).
"""

from __future__ import annotations

import datetime as dt
import math

import pytest

from kpis import Filters, stage_durations
from tests.kpis import fixtures

Q1 = Filters("2024-01-01", "2024-04-01")
NOW = dt.datetime(2024, 3, 1)
NAN = math.nan

# (owner, product) -> Lead visits as (days, finished)
GROUPS: dict[tuple[str, str], list[tuple[int, bool]]] = {
    # numbered by duration, finished before censored: 1:1F 2:2C 3:3F 4:3F 5:3C 6:4F 7:6F 8:7C 9:9F
    ("u1", "P1"): [(1, True), (2, False), (3, True), (3, True), (3, False), (4, True), (6, True),
                   (7, False), (9, True)],
    # 1:2F 2:2C 3:5F 4:5C (the last number censored)
    ("u2", "P1"): [(2, True), (2, False), (5, True), (5, False)],
    # 1:1C 2:2F 3:3F 4:4F 5:5F
    ("u1", "P2"): [(1, False), (2, True), (3, True), (4, True), (5, True)],
}  # fmt: skip


@pytest.fixture
def leads(db, visits_path):
    fixtures.load(db, only=("accounts", "users", "products", "pipeline_stages"))
    deals, history = [], []
    for (owner, product), visits in GROUPS.items():
        for number, (days, finished) in enumerate(visits):
            deal_id = f"K-{owner}-{product}-{number}"
            entered = (
                dt.datetime(2024, 1, 10) + dt.timedelta(days=number)
                if finished
                else NOW - dt.timedelta(days=days)
            )
            deals.append(fixtures._deal(deal_id, "A1", owner, product, 100.0, entered, None, "open"))
            history.append(dict(deal_id=deal_id, stage="Lead", entered_at=entered))
            if finished:
                history.append(
                    dict(deal_id=deal_id, stage="Qualified", entered_at=entered + dt.timedelta(days=days))
                )
    fixtures.insert(db, "deals", deals)
    fixtures.insert(db, "deal_stage_history", history)
    return visits_path(db)


def _lead(engine, owner: str, product: str) -> list:
    frame = stage_durations(engine, Q1.replace(owners=[owner], products=[product]), now=NOW).set_index(
        "stage"
    )
    return frame.loc[
        "Lead", ["deals", "finished", "censored", "median_days", "p90_days", "conversion_to_next"]
    ].tolist()


def test_ties_and_several_censored_stretches(leads):
    # n=9. t=1 n=9 d=1 S=8/9; t=3 n=7 (3, 3, 3 censored, 4, 6, 7c, 9) d=2 S=8/9·5/7=40/63;
    # t=4 n=4 d=1 S=30/63=0.476 -> median 4; t=6 n=3 d=1 S=20/63; t=9 n=1 d=1 S=0 -> p90 9.
    # The censored 3 is still at risk at 3 (numbered after the finished 3s).
    assert _lead(leads, "u1", "P1") == pytest.approx([9, 6, 3, 4.0, 9.0, 6 / 9])


def test_last_visit_censored(leads):
    # n=4. t=2 n=4 d=1 S=3/4; t=5 n=2 d=1 S=3/8 -> median 5; the last visit (5) censored -> p90 NaN
    assert _lead(leads, "u2", "P1") == pytest.approx([4, 2, 2, 5.0, NAN, 2 / 4], nan_ok=True)


def test_exactly_half_after_a_censored_visit(leads):
    # 1 censored first, then n=4 at risk: S 3/4, 2/4 at 3 (exactly 0.5: median 3), 1/4, 0 at 5 (p90 5)
    assert _lead(leads, "u1", "P2") == pytest.approx([5, 4, 1, 3.0, 5.0, 4 / 5])


def test_all_groups_together(leads):
    # the 18 visits numbered together (finished first at a tie): 1 F C | 2 F F C C | 3 F F F C |
    # 4 F F | 5 F F C | 6 F | 7 C | 9 F. t=1 n=18 d=1 S=17/18; t=2 n=16 d=2 ·14/16 = 0.826;
    # t=3 n=12 d=3 ·9/12 = 0.620; t=4 n=8 d=2 ·6/8 = 0.465 -> median 4; t=5 n=6 d=2 ·4/6 = 0.310;
    # t=6 n=3 d=1 ·2/3 = 0.207; t=9 n=1 d=1 S=0 -> p90 9.
    frame = stage_durations(leads, Q1, now=NOW).set_index("stage")
    assert frame.loc[
        "Lead", ["deals", "finished", "censored", "median_days", "p90_days"]
    ].tolist() == pytest.approx([18, 12, 6, 4.0, 9.0])
    # every Qualified visit is still open at C: censored, no quantile
    assert frame.loc["Qualified", ["deals", "finished", "censored"]].tolist() == [12, 0, 12]
    assert math.isnan(frame.loc["Qualified", "median_days"])
