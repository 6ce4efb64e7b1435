"""kpis.pipeline: lead conversion, win rate by dimension, funnel, weighted pipeline, aging.

Expected numbers are worked out by hand in the comments; each test runs on DuckDB, SQLite
and PostgreSQL through the ``db`` fixture.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import schema
from kpis import pipeline, rollups, stage_visits
from kpis.filters import Filters
from kpis.pipeline import (
    funnel,
    lead_conversion,
    open_deal_aging,
    stuck_deals,
    weighted_pipeline,
    win_rate_by,
)
from tests.kpis.fixtures import statements_sent
from tests.kpis.more_fixtures import BASE, assert_databases_agree, load, ts
from tests.kpis.test_rollups import allow_orphans


def deal(deal_id, account, owner, product, source, created, status, closed, amount):
    return {"deal_id": deal_id, "account_id": account, "owner_id": owner, "product_id": product,
            "name": f"Deal {deal_id}", "lead_source": source, "created_at": ts(created), "status": status,
            "closed_at": ts(closed) if closed else None, "amount": amount}  # fmt: skip


# Accounts (more_fixtures): A1 SMB/U1, A2 Enterprise/U2, A3 SMB/U1, A4 Mid-Market/no owner.
DEALS = [
    deal("D1", "A1", "U1", "P1", "web", "2024-01-05", "won", "2024-02-20", 1000.0),
    deal("D2", "A2", "U2", "P1", "referral", "2024-01-10", "lost", "2024-02-15", 5000.0),
    deal("D3", "A3", "U1", "P2", "web", "2024-02-01 00:00:00", "won", "2024-03-01", 300.0),  # boundary: Feb
    deal("D4", "A1", "U1", "P2", "web", "2024-02-15", "open", None, 2000.0),
    deal("D5", None, "U2", "P1", "event", "2024-03-01", "open", None, 400.0),  # no account
    deal("D6", "A4", None, "P1", "referral", "2024-03-20", "open", None, 700.0),  # no stage history
    deal("D7", "A2", "U2", "P1", "referral", "2023-12-31 23:59:59", "lost", "2024-01-10", 100.0),
    deal("D8", "A4", None, "P1", "referral", "2024-04-01 00:00:00", "open", None, 900.0),
    deal("D9", "A3", "U1", "P1", "web", "2024-01-20", "won", "2024-03-15", 600.0),  # won, no Closed Won row
    deal("D10", "A2", "U2", "P1", "event", "2023-10-01", "open", None, 50.0),
]

HISTORY_TEXT = """
D1 Lead 2024-01-05 | Qualified 2024-01-10 | Proposal 2024-01-20 | Negotiation 2024-02-01 | Closed Won 2024-02-20
D2 Lead 2024-01-10 | Qualified 2024-01-15 | Closed Lost 2024-02-15
D3 Lead 2024-02-01 | Proposal 2024-02-10 | Closed Won 2024-03-01
D4 Lead 2024-02-15 | Qualified 2024-02-20 | Proposal 2024-03-01 | Qualified 2024-03-10
D5 Lead 2024-03-01 | Qualified 2024-03-05
D7 Lead 2023-12-31 23:59:59 | Closed Lost 2024-01-10
D8 Lead 2024-04-01 | Negotiation 2024-04-05
D9 Lead 2024-01-20 | Qualified 2024-01-25 | Proposal 2024-02-05 | Negotiation 2024-02-25
D10 Lead 2023-10-01 | Proposal 2023-11-01
"""
# D3 skips Qualified; D4 re-enters Qualified; D8 skips to Negotiation.


def _history() -> list[dict]:
    rows = []
    for line in HISTORY_TEXT.strip().splitlines():
        deal_id, rest = line.split(" ", 1)
        for part in rest.split(" | "):
            words = part.split(" ")
            stamp = " ".join(w for w in words if w[:1].isdigit())
            stage = " ".join(w for w in words if not w[:1].isdigit())
            rows.append({"deal_id": deal_id, "stage": stage, "entered_at": ts(stamp)})
    return rows


Q1 = Filters("2024-01-01", "2024-04-01")


@pytest.fixture
def engine(db: sa.Engine) -> sa.Engine:
    load(db, BASE, {"deals": DEALS, "deal_stage_history": _history()})
    return db


@pytest.fixture(params=("base", "rolled"))
def created_path(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[sa.Engine], sa.Engine]:
    """``created_path(engine)`` -> ``engine`` (call it after loading the rows), with
    ``lead_conversion`` and ``win_rate_by`` reading the deals (``base``: ``CRM_ROLLUPS=off``)
    or the roll-up of deals by created month (``rolled``: built now; their base statements
    refused whenever the roll-up must answer — whole months, account-level filters only, by
    an account dimension)."""
    if request.param == "base":
        monkeypatch.setenv("CRM_ROLLUPS", "off")
        return lambda engine: engine
    monkeypatch.setenv("CRM_ROLLUPS", "on")

    def whole_months(f: Filters) -> bool:
        return f.start.day == 1 and f.end.day == 1 and not (f.owners or f.products)

    lead_statement, by_statement = pipeline._lead_conversion_statement, pipeline._win_rate_by_statement

    def lead(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
        assert not whole_months(f), f"the deals were read: {f}"
        return lead_statement(dialect, f, freq)

    def by_group(f: Filters, by: str) -> sa.Select:
        assert not (whole_months(f) and by in rollups.DIMENSIONS), f"the deals were read: {f} by {by}"
        return by_statement(f, by)

    def take(engine: sa.Engine) -> sa.Engine:
        rollups.refresh_database(engine)
        monkeypatch.setattr(pipeline, "_lead_conversion_statement", lead)
        monkeypatch.setattr(pipeline, "_win_rate_by_statement", by_group)
        return engine

    return take


@pytest.fixture
def visits_engine(engine: sa.Engine, visits_path: Callable[[sa.Engine], sa.Engine]) -> sa.Engine:
    """``engine``, with the funnel and the open deals' current stages read from the base
    tables or from the stored visits."""
    return visits_path(engine)


def test_lead_conversion_by_month(engine: sa.Engine, created_path: Callable[[sa.Engine], sa.Engine]) -> None:
    engine = created_path(engine)
    out = lead_conversion(engine, Q1, "month")
    assert list(out.columns)[:6] == ["period", "created", "won", "lost", "open", "lead_conversion"]
    # Jan: D1 won, D2 lost, D9 won (D7 created Dec 31 23:59:59 is outside)  -> 3 created, 2 won: 2/3
    # Feb: D3 won (created exactly Feb 1), D4 open                         -> 2, 1 won: 1/2
    # Mar: D5, D6 open                                                      -> 2, 0 won: 0 (open in denominator)
    assert out["created"].tolist() == [3, 2, 2]
    assert out["won"].tolist() == [2, 1, 0]
    assert out["lost"].tolist() == [1, 0, 0]
    assert out["open"].tolist() == [0, 1, 2]
    assert out["lead_conversion"].tolist() == pytest.approx([2 / 3, 0.5, 0.0])
    # cohort win rate won/(won+lost): Jan 2/3, Feb 1/1, Mar NaN (nothing closed)
    assert out["closed_win_rate"].iloc[:2].tolist() == pytest.approx([2 / 3, 1.0])
    assert math.isnan(out["closed_win_rate"].iloc[2])


def test_lead_conversion_interval_and_low_sample(
    engine: sa.Engine, created_path: Callable[[sa.Engine], sa.Engine]
) -> None:
    engine = created_path(engine)
    # Wilson score 95 % of won ÷ created, z = 1.959964 (z² = 3.841459):
    #   (p + z²/2n ∓ z·√(p(1 − p)/n + z²/4n²)) ÷ (1 + z²/n)
    # Jan 2/3: centre (0.666667 + 0.640243)/2.280486 = 0.573084,
    #   half 1.959964·√(0.074074 + 0.106707)/2.280486 = 0.365424 -> [0.207660, 0.938508]
    # Feb 1/2: centre (0.5 + 0.960365)/2.920729 = 0.5, half 1.959964·√(0.125 + 0.240091)/2.920729
    #   = 0.405469 -> [0.094531, 0.905469]
    # Mar 0/2: centre 0.960365/2.920729 = 0.328810 = half -> [0, 0.657620]
    out = lead_conversion(engine, Q1, "month")
    assert list(out.columns) == [
        "period", "created", "won", "lost", "open", "lead_conversion", "ci_low", "ci_high", "low_sample",
        "closed_win_rate",
    ]  # fmt: skip
    assert out["ci_low"].tolist() == pytest.approx([0.207660, 0.094531, 0.0], abs=1e-6)
    assert out["ci_high"].tolist() == pytest.approx([0.938508, 0.905469, 0.657620], abs=1e-6)
    assert out["low_sample"].tolist() == [True, True, True]  # 3, 2, 2 created < 30
    empty = lead_conversion(engine, Q1.replace(segments=["Nobody"]), "month")
    assert empty[["ci_low", "ci_high"]].isna().all(axis=None) and empty["low_sample"].all()


def test_lead_conversion_low_sample_boundary(
    engine: sa.Engine, created_path: Callable[[sa.Engine], sa.Engine]
) -> None:
    # May 2024: 30 deals created (15 won, 15 open); June: 29 (15 won, 14 open). Only the
    # segment "Bulk" (account B1) selects them.
    # May 15/30: low_sample False; Wilson centre (0.5 + 0.064024)/1.128049 = 0.5,
    #   half 1.959964·√(0.008333 + 0.001067)/1.128049 = 0.168459 -> [0.331541, 0.668459]
    # June 15/29: low_sample True; p = 0.517241, centre (0.517241 + 0.066232)/1.132464 = 0.515224,
    #   half 1.959964·√(0.008609 + 0.001142)/1.132464 = 0.170915 -> [0.344310, 0.686139]
    bulk_account = {"account_id": "B1", "name": "Bulk", "segment": "Bulk", "created_at": ts("2023-01-01")}
    load(engine, {"accounts": [bulk_account]})
    bulk = [
        deal(f"M{i}", "B1", "U1", "P1", "web", "2024-05-10", "won" if i < 15 else "open", "2024-05-20" if i < 15 else None, 1.0)
        for i in range(30)
    ] + [
        deal(f"J{i}", "B1", "U1", "P1", "web", "2024-06-10", "won" if i < 15 else "open", "2024-06-20" if i < 15 else None, 1.0)
        for i in range(29)
    ]  # fmt: skip
    load(engine, {"deals": bulk})
    engine = created_path(engine)
    out = lead_conversion(engine, Filters("2024-05-01", "2024-07-01", segments=["Bulk"]), "month")
    assert out["created"].tolist() == [30, 29]
    assert out["lead_conversion"].tolist() == pytest.approx([0.5, 15 / 29])
    assert out["low_sample"].tolist() == [False, True]
    assert out["ci_low"].tolist() == pytest.approx([0.331541, 0.344310], abs=1e-6)
    assert out["ci_high"].tolist() == pytest.approx([0.668459, 0.686139], abs=1e-6)


def test_lead_conversion_quarter_year_segment_and_empty(
    engine: sa.Engine, created_path: Callable[[sa.Engine], sa.Engine]
) -> None:
    engine = created_path(engine)
    q = lead_conversion(engine, Filters("2024-01-01", "2024-07-01"), "quarter")
    # Q1: 7 created (D1-D6, D9), 3 won -> 3/7; Q2: D8 (created Apr 1 00:00) open -> 0/1
    assert q["created"].tolist() == [7, 1]
    assert q["lead_conversion"].tolist() == pytest.approx([3 / 7, 0.0])
    y = lead_conversion(engine, Filters("2024-01-01", "2025-01-01"), "year")
    assert y["created"].tolist() == [8] and y["lead_conversion"].tolist() == pytest.approx([3 / 8])
    smb = lead_conversion(engine, Q1.replace(segments=["SMB"]), "month")
    # SMB = A1, A3: Jan D1, D9 (2 won); Feb D3 won, D4 open; Mar nothing: D5 has no account -> excluded
    assert smb["created"].tolist() == [2, 2, 0]
    assert smb["lead_conversion"].iloc[:2].tolist() == pytest.approx([1.0, 0.5])
    assert math.isnan(smb["lead_conversion"].iloc[2])
    empty = lead_conversion(engine, Q1.replace(segments=["Nobody"]), "month")
    assert empty["created"].tolist() == [0, 0, 0] and empty["lead_conversion"].isna().all()


def test_win_rate_by_segment(engine: sa.Engine, created_path: Callable[[sa.Engine], sa.Engine]) -> None:
    engine = created_path(engine)
    out = win_rate_by(engine, Q1, "segment").set_index("group")
    # deals created in Q1: D1-D6, D9
    # SMB: D1 won, D3 won, D4 open, D9 won -> created 4, won 3, lost 0: win 3/3, conversion 3/4
    # Enterprise: D2 lost -> 1, 0, 1: win 0, conversion 0
    # Mid-Market: D6 open -> win NaN, conversion 0; "(not set)": D5 (no account) likewise
    assert out.loc["SMB", ["created", "won", "lost"]].tolist() == [4, 3, 0]
    assert out.loc["SMB", "win_rate"] == pytest.approx(1.0)
    assert out.loc["SMB", "lead_conversion"] == pytest.approx(0.75)
    # Wilson 95 % for 3/3: z² = 3.8415; centre = (1 + z²/6)/(1 + z²/3) = 0.71925;
    # half = z·sqrt(z²/36)/(1 + z²/3) = 0.28075 -> (0.43850, 1.0)
    assert out.loc["SMB", "ci_low"] == pytest.approx(0.43850, abs=1e-4)
    assert out.loc["SMB", "ci_high"] == pytest.approx(1.0)
    assert bool(out.loc["SMB", "low_sample"]) is True
    assert out.loc["Enterprise", "win_rate"] == 0.0
    assert math.isnan(out.loc["Mid-Market", "win_rate"]) and out.loc["Mid-Market", "lead_conversion"] == 0.0
    assert out.loc["(not set)", "created"] == 1
    assert out.index[0] == "SMB"  # largest group first


def test_win_rate_by_owner_source_product_and_empty(
    engine: sa.Engine, created_path: Callable[[sa.Engine], sa.Engine]
) -> None:
    engine = created_path(engine)
    owner = win_rate_by(engine, Q1, "owner").set_index("group")
    # U1: D1 D3 D4 D9 (3 won); U2: D2 lost, D5 open; (not set): D6
    assert owner["created"].to_dict() == {"U1": 4, "U2": 2, "(not set)": 1}
    assert owner.loc["U2", "win_rate"] == 0.0 and owner.loc["U2", "lead_conversion"] == 0.0
    source = win_rate_by(engine, Q1, "lead_source").set_index("group")
    assert source["created"].to_dict() == {"web": 4, "referral": 2, "event": 1}
    product = win_rate_by(engine, Q1, "product").set_index("group")
    # P1: D1 won, D2 lost, D5, D6 open, D9 won -> win 2/3, conversion 2/5; P2: D3 won, D4 open -> 1/1, 1/2
    assert product.loc["P1", "win_rate"] == pytest.approx(2 / 3)
    assert product.loc["P1", "lead_conversion"] == pytest.approx(0.4)
    assert product.loc["P2", "lead_conversion"] == pytest.approx(0.5)
    smb = win_rate_by(engine, Q1.replace(segments=["SMB"]), "owner")
    assert smb["group"].tolist() == ["U1"]  # D5 (U2, no account) is excluded by the segment filter
    assert win_rate_by(engine, Q1.replace(segments=["Nobody"]), "segment").empty
    with pytest.raises(ValueError):
        win_rate_by(engine, Q1, "colour")


def test_win_rate_by_from_the_rollup_counts_missing_accounts_as_not_set_and_whole_months_only(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # plus DG: won, created 2024-02-10 by account GHOST, which is not in accounts
    allow_orphans(engine)
    load(engine, {"deals": [deal("DG", "GHOST", "U1", "P1", "web", "2024-02-10", "won", "2024-03-05", 10.0)]})
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    rollups.refresh_database(engine)
    read: list[tuple[Filters, str]] = []
    original = pipeline._win_rate_by_statement

    def spy(f: Filters, by: str) -> sa.Select:
        read.append((f, by))
        return original(f, by)

    monkeypatch.setattr(pipeline, "_win_rate_by_statement", spy)

    def created(f: Filters) -> dict[str, tuple[int, int, int]]:
        out = win_rate_by(engine, f, "segment").set_index("group")
        return {g: (int(r.created), int(r.won), int(r.lost)) for g, r in out.iterrows()}

    # Q1 from the roll-up: SMB D1 D3 D4 D9 (3 won); Enterprise D2 lost; Mid-Market D6;
    # "(not set)": D5 (no account) and DG (missing account, won) — the roll-up's group whose
    # dimensions are all NULL
    assert created(Q1) == {
        "SMB": (4, 3, 0),
        "(not set)": (2, 1, 0),
        "Enterprise": (1, 0, 1),
        "Mid-Market": (1, 0, 0),
    }
    # end inside April, no deal created after it: April whole from the roll-up (D8, Mid-Market)
    assert created(Q1.replace(end="2024-04-02"))["Mid-Market"] == (2, 0, 0)
    assert read == []
    # start inside January (D1 on 5 Jan left out): the deals
    assert created(Q1.replace(start="2024-01-06"))["SMB"] == (3, 2, 0)
    # end inside March with D6 (20 Mar) after it: the deals
    assert created(Q1.replace(end="2024-03-10")) == {
        "SMB": (4, 3, 0),
        "(not set)": (2, 1, 0),
        "Enterprise": (1, 0, 1),
    }
    assert [by for _, by in read] == ["segment", "segment"]
    # a segment filter leaves the deals of missing accounts out on both paths
    assert created(Q1.replace(segments=["SMB", "Enterprise"])) == {"SMB": (4, 3, 0), "Enterprise": (1, 0, 1)}
    assert len(read) == 2
    monkeypatch.setenv("CRM_ROLLUPS", "off")
    assert created(Q1)["(not set)"] == (2, 1, 0)
    assert len(read) == 3


def test_funnel_in_order_and_any(visits_engine: sa.Engine) -> None:
    out = funnel(visits_engine, Q1)
    # Funnel stages: Lead 1, Qualified 2, Proposal 3, Negotiation 4, Closed Won 5 (Closed Lost left out).
    # Deals created in Q1 = 7. Stages entered (rank):
    #   D1 {1,2,3,4,5} prefix 5 max 5 | D2 {1,2} prefix 2 max 2 (Closed Lost not a funnel stage)
    #   D3 {1,3,5} prefix 1 max 5     | D4 {1,2,3} (Qualified twice) prefix 3 max 3
    #   D5 {1,2} prefix 2 max 2       | D6 {} (no history)      | D9 {1,2,3,4} + won -> {1..5}
    # in order (prefix >= r): 6, 5 (D1 D2 D4 D5 D9), 3 (D1 D4 D9), 2, 2
    # any (max >= r):         6, 6, 4 (D1 D3 D4 D9), 3 (D1 D3 D9), 3
    assert out["stage"].tolist() == ["Lead", "Qualified", "Proposal", "Negotiation", "Closed Won"]
    assert out["position"].tolist() == [1, 2, 3, 4, 5]
    assert out["reached_in_order"].tolist() == [6, 5, 3, 2, 2]
    assert out["reached_any"].tolist() == [6, 6, 4, 3, 3]
    assert out["step_conversion_in_order"].tolist() == pytest.approx([6 / 7, 5 / 6, 3 / 5, 2 / 3, 1.0])
    assert out["cumulative_conversion_in_order"].tolist() == pytest.approx(
        [6 / 7, 5 / 7, 3 / 7, 2 / 7, 2 / 7]
    )
    assert out["step_conversion_any"].tolist() == pytest.approx([6 / 7, 1.0, 4 / 6, 3 / 4, 1.0])
    assert out["cumulative_conversion_any"].tolist() == pytest.approx([6 / 7, 6 / 7, 4 / 7, 3 / 7, 3 / 7])


def test_funnel_segment_and_empty(visits_engine: sa.Engine) -> None:
    smb = funnel(visits_engine, Q1.replace(segments=["SMB"]))
    # D1, D3, D4, D9 (4 created): in order 4, 3, 3, 2, 2; any 4, 4, 4, 3, 3
    assert smb["reached_in_order"].tolist() == [4, 3, 3, 2, 2]
    assert smb["reached_any"].tolist() == [4, 4, 4, 3, 3]
    assert smb["cumulative_conversion_any"].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.75, 0.75])
    empty = funnel(visits_engine, Q1.replace(segments=["Nobody"]))
    assert empty["reached_any"].tolist() == [0, 0, 0, 0, 0]
    assert empty["step_conversion_in_order"].isna().all() and empty["cumulative_conversion_any"].isna().all()


def test_funnel_counts_a_closed_won_row_of_a_deal_not_won_and_a_won_deal_without_history(
    engine: sa.Engine, visits_path: Callable[[sa.Engine], sa.Engine]
) -> None:
    # D11, open, created in Q1: Lead, an unknown stage, then a Closed Won row (status and
    # history disagree): it entered Lead and Closed Won -> {1, 5}: prefix 1, max 5. D12, won,
    # no history: it entered Closed Won -> {5}: prefix 0, max 5. With
    # test_funnel_in_order_and_any's 7 deals: 9 created; in order 7, 5, 3, 2, 2; any 8, 8, 6, 5, 5
    d11 = deal("D11", "A1", "U1", "P1", "web", "2024-03-05", "open", None, 100.0)
    d12 = deal("D12", "A1", "U1", "P1", "web", "2024-03-06", "won", "2024-03-20", 100.0)
    history = [
        {"deal_id": "D11", "stage": stage, "entered_at": ts(day)}
        for stage, day in (("Lead", "2024-03-05"), ("Demo", "2024-03-07"), ("Closed Won", "2024-03-10"))
    ]
    with engine.begin() as c:
        c.execute(sa.insert(schema.deals), [d11, d12])
        c.execute(sa.insert(schema.deal_stage_history), history)
    out = funnel(visits_path(engine), Q1)
    assert out["reached_in_order"].tolist() == [7, 5, 3, 2, 2]
    assert out["reached_any"].tolist() == [8, 8, 6, 5, 5]
    assert out["cumulative_conversion_any"].tolist() == pytest.approx([8 / 9, 8 / 9, 6 / 9, 5 / 9, 5 / 9])
    assert out["cumulative_conversion_in_order"].tolist() == pytest.approx(
        [7 / 9, 5 / 9, 3 / 9, 2 / 9, 2 / 9]
    )


def test_the_stored_deal_rows_hold_the_bits_of_every_stage_entered(engine: sa.Engine) -> None:
    """kpis.stage_visits.DEAL_STAGES: one row per deal, ``stages`` = Σ 2^(key − 1) over the
    distinct known stages of its history, open and closed, and an open deal's latest
    history row (a Closed Won row of an open deal too: the status and the history disagree). Keys
    by (position, stage): Lead 1, Qualified 2, Proposal 3, Negotiation 4, Closed Won 5,
    Closed Lost 6 -> bits 1, 2, 4, 8, 16, 32. An unknown stage ("Demo") has no key: no bit."""
    from kpis import stage_visits

    d11 = deal("D11", "A1", "U1", "P1", "web", "2024-03-05", "open", None, 100.0)
    history = [
        {"deal_id": "D11", "stage": stage, "entered_at": ts(day)}
        for stage, day in (("Lead", "2024-03-05"), ("Demo", "2024-03-07"), ("Closed Won", "2024-03-10"))
    ]
    with engine.begin() as c:
        c.execute(sa.insert(schema.deals), [d11])
        c.execute(sa.insert(schema.deal_stage_history), history)
        stage_visits.refresh(c)
    table = stage_visits.DEAL_STAGES
    with engine.connect() as c:
        rows = {
            deal_id: (int(stages), stage, None if entered is None else ts(str(entered)))
            for deal_id, stages, stage, entered in c.execute(
                sa.select(table.c.deal_id, table.c.stages, table.c.stage, table.c.entered_at)
            )
        }
    # stages; an open deal's latest history row (stage, entered_at), won or lost: NULL
    assert rows == {
        "D1": (1 + 2 + 4 + 8 + 16, None, None),  # won: Lead .. Closed Won = 31
        "D2": (1 + 2 + 32, None, None),  # lost: Lead, Qualified, Closed Lost = 35
        "D3": (1 + 4 + 16, None, None),  # won, skips Qualified = 21
        "D4": (1 + 2 + 4, "Qualified", ts("2024-03-10")),  # Qualified twice, one bit = 7; re-entered last
        "D5": (1 + 2, "Qualified", ts("2024-03-05")),  # = 3
        "D6": (0, None, None),  # open, no history
        "D7": (1 + 32, None, None),  # lost = 33
        "D8": (1 + 8, "Negotiation", ts("2024-04-05")),  # = 9
        "D9": (1 + 2 + 4 + 8, None, None),  # won without a Closed Won row: its history's bits = 15
        "D10": (1 + 4, "Proposal", ts("2023-11-01")),  # = 5
        "D11": (1 + 16, "Closed Won", ts("2024-03-10")),  # open: Lead, Demo (no key: no bit), Closed Won = 17
    }


def test_funnel_with_more_stages_than_the_stored_bits_reads_the_history(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 stages: the stored deal rows have bits for keys 1..63 only, so the funnel counts
    from the history, the stored visits built. The fixture's six stages (keys 1..6), 57
    closed lost stages at positions 7..63 (keys 7..63), an open stage "Late" at position 64
    (key 64). Funnel stages (ranks): Lead 1, Qualified 2, Proposal 3, Negotiation 4, Closed
    Won 5, Late 6. D5 (created Mar 1: Lead, Qualified) enters Late on Mar 20 -> {1, 2, 6}.
    With test_funnel_in_order_and_any's other deals, 7 created:
    any (max ≥ r): 6, 6, 5 (D1 D3 D4 D5 D9), 4 (D1 D3 D5 D9), 4, 1 (D5);
    in order: 6, 5, 3, 2, 2, 0."""
    from kpis import pipeline, stage_visits

    monkeypatch.setenv("CRM_ROLLUPS", "on")
    lost = [
        {"stage": f"Lost {p:02d}", "position": p, "probability": 0.0, "is_closed": True, "is_won": False}
        for p in range(7, 64)
    ]
    late = {"stage": "Late", "position": 64, "probability": 0.9, "is_closed": False, "is_won": False}
    with engine.begin() as c:
        c.execute(sa.insert(schema.pipeline_stages), [*lost, late])
        c.execute(
            sa.insert(schema.deal_stage_history),
            [{"deal_id": "D5", "stage": "Late", "entered_at": ts("2024-03-20")}],
        )
        stage_visits.refresh(c)
    with engine.connect() as c:
        assert stage_visits.available(c)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the stored deal rows were read")

    monkeypatch.setattr(pipeline, "_stored_funnel_masks", refuse)
    out = funnel(engine, Q1)
    assert out["stage"].tolist() == ["Lead", "Qualified", "Proposal", "Negotiation", "Closed Won", "Late"]
    assert out["reached_any"].tolist() == [6, 6, 5, 4, 4, 1]
    assert out["reached_in_order"].tolist() == [6, 5, 3, 2, 2, 0]


def test_weighted_pipeline(visits_engine: sa.Engine) -> None:
    out = weighted_pipeline(visits_engine, Q1).set_index("stage")
    # Open deals now (the date range does not matter): D4, D5, D6, D8, D10
    #   D4 latest entry Qualified (Mar 10, re-entered) 2000; D5 Qualified 400; D8 Negotiation 900;
    #   D10 Proposal 50; D6 no history -> "(no stage)" 700
    assert list(out.index) == ["Lead", "Qualified", "Proposal", "Negotiation", "(no stage)"]
    assert out["open_deals"].tolist() == [0, 2, 1, 1, 1]
    assert out["amount"].tolist() == pytest.approx([0.0, 2400.0, 50.0, 900.0, 700.0])
    # weighted: 0, 2400 × 0.25 = 600, 50 × 0.5 = 25, 900 × 0.75 = 675, NaN
    assert out["weighted_amount"].iloc[:4].tolist() == pytest.approx([0.0, 600.0, 25.0, 675.0])
    assert math.isnan(out.loc["(no stage)", "weighted_amount"])
    smb = weighted_pipeline(visits_engine, Q1.replace(segments=["SMB"])).set_index("stage")
    # SMB: only D4 (D5 has no account, D6/D8 are Mid-Market, D10 Enterprise); no "(no stage)" row
    assert smb["open_deals"].tolist() == [0, 1, 0, 0]
    assert smb.loc["Qualified", "weighted_amount"] == pytest.approx(500.0)
    u2 = weighted_pipeline(visits_engine, Q1.replace(owners=["U2"])).set_index("stage")
    assert u2.loc["Qualified", "weighted_amount"] == pytest.approx(100.0)  # D5 400 × 0.25
    assert u2.loc["Proposal", "weighted_amount"] == pytest.approx(25.0)  # D10


def test_stored_latest_splits_the_open_deals_by_one_left_join(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the stored visits built, ``current_stage`` splits the deals by one left join to
    the stored rows (matched: the stored row; the rest: the visits), not by a join and a
    ``NOT IN`` of its result — the same numbers as test_weighted_pipeline's. (The weighted
    pipeline itself reads the stored rows alone: its one caller left is a row store with an
    owner or product filter, ``pipeline.reads_stored_open``.)"""
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    with engine.begin() as conn:
        stage_visits.refresh(conn)
    deals = schema.deals
    open_deals = sa.select(deals.c.deal_id, deals.c.amount).where(deals.c.status == "open").cte("open_deals")
    with statements_sent(engine, "stored_latest") as sent, engine.connect() as conn:
        latest = pipeline.current_stage(conn, open_deals, None)
        stage = sa.func.coalesce(latest.c.stage, "(no stage)").label("stage")
        found = {
            s: (n, a)
            for s, n, a in conn.execute(
                sa.select(stage, sa.func.count(), sa.func.sum(latest.c.amount)).group_by(stage)
            )
        }
    # D4 + D5 Qualified 2400, D10 Proposal 50, D8 Negotiation 900, D6 "(no stage)" 700
    assert found == {
        "Qualified": (2, 2400.0),
        "Proposal": (1, 50.0),
        "Negotiation": (1, 900.0),
        "(no stage)": (1, 700.0),
    }
    ((statement, _),) = sent
    assert re.search(r"LEFT OUTER JOIN rollup_deal_stages\b", statement), statement
    # the one NOT IN left: the deals without a running visit (kpis.pipeline._stored_current)
    assert statement.count("NOT IN") == 1, statement


def test_two_pipeline_figures_have_two_names_each_saying_how_it_differs() -> None:
    """Issue 14 point 3: one definition per name. The weighted pipeline (configured stage
    probabilities, this module) and the expected pipeline (learned win rates, forecasting)
    are two registry entries whose titles differ and whose definitions name each other; each
    definition is its function's docstring word for word."""
    import inspect

    from forecasting.pipeline import expected_pipeline
    from kpis.registry import get

    weighted, expected = get("weighted_pipeline"), get("expected_pipeline")
    assert weighted.title == "Weighted pipeline (stage probabilities)"
    assert expected.title == "Expected pipeline (learned win rates)"
    assert expected.title in weighted.definition and weighted.title in expected.definition
    for entry, function in ((weighted, weighted_pipeline), (expected, expected_pipeline)):
        assert " ".join(entry.definition.split()) in " ".join(inspect.getdoc(function).split())


def test_open_deal_aging_reconstructs_the_end_of_the_range(visits_engine: sa.Engine) -> None:
    f = Filters("2024-01-01", "2024-03-12")  # as of min(now, 2024-03-12 00:00) = 2024-03-12
    out = open_deal_aging(visits_engine, f).set_index("stage")
    # Open at Mar 12: D4 (open), D5 (created Mar 1), D9 (won later, closed Mar 15), D10 (open since Oct)
    #   D3 closed Mar 1 -> no; D6 created Mar 20 -> no.
    # D4 Qualified since Mar 10 -> 2 days; D5 Qualified since Mar 5 -> 7 days
    # D9 Negotiation since Feb 25 -> 4 (to Feb 29) + 1 + 11 = 16 days
    # D10 Proposal since 2023-11-01 -> 30 + 31 + 31 + 29 + 11 = 132 days (> 90)
    assert list(out.index) == ["Lead", "Qualified", "Proposal", "Negotiation"]
    assert out["open_deals"].tolist() == [0, 2, 1, 1]
    assert math.isnan(out.loc["Lead", "median_age_days"])
    # Qualified ages [2, 7]: median 4.5, p90 = 2 + 0.9 × 5 = 6.5
    assert out.loc["Qualified", "median_age_days"] == pytest.approx(4.5)
    assert out.loc["Qualified", "p90_age_days"] == pytest.approx(6.5)
    assert out.loc["Negotiation", "median_age_days"] == pytest.approx(16.0)
    assert out.loc["Proposal", "p90_age_days"] == pytest.approx(132.0)
    assert out["over_90_days"].tolist() == [0, 0, 1, 0]
    later = open_deal_aging(visits_engine, Q1).set_index("stage")
    # as of Apr 1 00:00: D4 22 d, D5 27 d (Qualified); D10 152 d; D8 created exactly Apr 1 -> Lead, 0 d;
    # D6 no history -> "(no stage)" since Mar 20 -> 12 d
    assert later["open_deals"].tolist() == [1, 2, 1, 0, 1]
    assert later.loc["Qualified", "median_age_days"] == pytest.approx(24.5)
    assert later.loc["(no stage)", "median_age_days"] == pytest.approx(12.0)
    assert later.loc["Lead", "median_age_days"] == pytest.approx(0.0)


def test_open_deals_at_an_instant_come_from_the_stored_deal_rows_alone(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the stored visits built, the deals open at an instant and their stage are read
    from the stored deal rows, without scanning the deals table (the names of the stuck
    deals listed excepted)."""
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    with engine.begin() as conn:
        stage_visits.refresh(conn)
    with statements_sent(engine, "not_stored_latest") as sent:
        # as of Apr 1 00:00 (test_open_deal_aging_reconstructs_the_end_of_the_range): Lead D8
        # (its Negotiation row of Apr 5 is later: the stored visits), Qualified D4 and D5,
        # Proposal D10, "(no stage)" D6 (no history); D9, closed on Mar 15, is not open
        later = open_deal_aging(engine, Q1).set_index("stage")
        stuck = stuck_deals(engine, Q1, None, min_days=20, limit=10)
    assert later["open_deals"].tolist() == [1, 2, 1, 0, 1]
    # D10 152 d, D5 27 d, D4 22 d: the longest-waiting first
    assert stuck["deal_id"].tolist() == ["D10", "D5", "D4"]
    aging, listed = [statement for statement, _ in sent]
    deals_table = re.compile(r"\b(FROM|JOIN)\s+deals\b", re.IGNORECASE)
    assert not deals_table.search(aging), aging
    # stuck_deals: no deals table either (the listed deals are open now: their names and
    # amounts are stored)
    assert not deals_table.search(listed), listed
    # one owner: the stored rows on DuckDB; on a row store the deals (their owner_id index)
    stored_reads: list[Filters] = []
    original = pipeline._stored_open_at

    def spy(c: sa.Connection, f: Filters, as_of: object, carried: tuple[str, ...] = ()) -> sa.Subquery:
        stored_reads.append(f)
        return original(c, f, as_of, carried)

    monkeypatch.setattr(pipeline, "_stored_open_at", spy)
    # U1's deals open at Apr 1: D4 only (Qualified since Mar 10, 22 days)
    mine = open_deal_aging(engine, Q1.replace(owners=["U1"])).set_index("stage")
    assert mine["open_deals"].tolist() == [0, 1, 0, 0]
    assert mine.loc["Qualified", "median_age_days"] == pytest.approx(22.0)
    assert len(stored_reads) == (1 if engine.dialect.name == "duckdb" else 0)
    open_deal_aging(engine, Q1.replace(segments=["SMB"]))
    assert len(stored_reads) == (2 if engine.dialect.name == "duckdb" else 1)


def test_stuck_deals_drill_down(visits_engine: sa.Engine) -> None:
    f = Filters("2024-01-01", "2024-03-12")
    out = stuck_deals(visits_engine, f, "Qualified")
    for column in ["deal_id", "name", "account", "owner", "amount", "stage", "entered_at", "days_in_stage"]:
        assert column in out.columns
    # D5 7 days (no account, owner Ugo), then D4 2 days (Alpha, Uma)
    assert out["deal_id"].tolist() == ["D5", "D4"]
    assert out["days_in_stage"].tolist() == pytest.approx([7.0, 2.0])
    assert pd.isna(out["account"].iloc[0]) and out["account"].iloc[1] == "Alpha"
    assert out["owner"].tolist() == ["Ugo", "Uma"]
    assert pd.Timestamp(out["entered_at"].iloc[1]) == pd.Timestamp("2024-03-10")
    assert stuck_deals(visits_engine, f, "Qualified", min_days=5)["deal_id"].tolist() == ["D5"]
    assert stuck_deals(visits_engine, f.replace(segments=["SMB"]), "Qualified")["deal_id"].tolist() == ["D4"]
    every = stuck_deals(visits_engine, f, None, limit=2)
    assert every["deal_id"].tolist() == ["D10", "D9"]  # 132 and 16 days
    assert stuck_deals(visits_engine, f, "Lead").empty


#: Current-stage cases (all created 2024-01-01, account A1): ties at one instant, a closed
#: stage as the latest row, a stage missing from pipeline_stages, rows after the instant.
CURRENT_DEALS = [
    deal("T1", "A1", "U1", "P1", "web", "2024-01-01", "open", None, 100.0),
    deal("T2", "A1", "U1", "P1", "web", "2024-01-01", "open", None, 200.0),
    deal("T3", "A1", "U1", "P1", "web", "2024-01-01", "open", None, 400.0),
    deal("T4", "A1", "U1", "P1", "web", "2024-01-01", "open", None, 800.0),
    deal("T5", "A1", "U1", "P1", "web", "2024-01-01", "won", "2024-03-01", 1600.0),
    deal("T6", "A1", "U1", "P1", "web", "2024-01-01", "lost", "2024-02-10", 3200.0),
]
CURRENT_HISTORY = [
    {"deal_id": deal_id, "stage": stage, "entered_at": ts(stamp)}
    for deal_id, stage, stamp in [
        ("T1", "Lead", "2024-01-02"),
        ("T1", "Qualified", "2024-02-01"),  # tie: Proposal (higher position) is the latest
        ("T1", "Proposal", "2024-02-01"),
        ("T1", "Negotiation", "2024-03-01"),
        ("T2", "Lead", "2024-01-02"),
        ("T2", "Qualified", "2024-02-10"),  # tie with a closed stage of higher position
        ("T2", "Closed Lost", "2024-02-10"),
        ("T3", "Mystery", "2024-01-05"),  # not in pipeline_stages: below Lead at the tie
        ("T3", "Lead", "2024-01-05"),
        ("T3", "Qualified", "2024-03-01"),
        ("T4", "Lead", "2024-03-01"),  # nothing before Mar 1
        ("T5", "Lead", "2024-01-02"),
        ("T5", "Proposal", "2024-01-20"),
        ("T6", "Lead", "2024-01-02"),
    ]
]


def test_current_stage_ties_closed_latest_rows_and_an_instant_between_entries(
    db: sa.Engine, visits_path: Callable[[sa.Engine], sa.Engine]
) -> None:
    load(db, BASE, {"deals": CURRENT_DEALS, "deal_stage_history": CURRENT_HISTORY})
    engine = visits_path(db)
    later = pd.Timestamp("2024-12-01").to_pydatetime()
    # Now (open: T1..T4): T1 Negotiation 100, T2 Closed Lost 200, T3 Qualified 400, T4 Lead 800
    now = weighted_pipeline(engine, Q1).set_index("stage")
    assert list(now.index) == ["Lead", "Qualified", "Proposal", "Negotiation", "Closed Lost"]
    assert now["open_deals"].tolist() == [1, 1, 0, 1, 1]
    assert now["amount"].tolist() == pytest.approx([800.0, 400.0, 0.0, 100.0, 200.0])
    # 800 × 0.1, 400 × 0.25, 0, 100 × 0.75, 200 × 0
    assert now["weighted_amount"].tolist() == pytest.approx([80.0, 100.0, 0.0, 75.0, 0.0])
    # As of Feb 15 (between Feb 1 / Feb 10 and Mar 1); open then: T1..T4, T5 (closed Mar 1)
    #   T1 Proposal since Feb 1 (14 d), T2 Closed Lost since Feb 10 (5 d), T3 Lead since
    #   Jan 5 (41 d), T4 no row yet -> "(no stage)" since Jan 1 (45 d), T5 Proposal since
    #   Jan 20 (26 d); T6 closed Feb 10.
    feb15 = Filters("2024-01-01", "2024-02-15")
    aging = open_deal_aging(engine, feb15, now=later).set_index("stage")
    assert list(aging.index) == ["Lead", "Qualified", "Proposal", "Negotiation", "Closed Lost", "(no stage)"]
    assert aging["open_deals"].tolist() == [1, 0, 2, 0, 1, 1]
    # Proposal ages [14, 26]: median 20, p90 = 14 + 0.9 × 12 = 24.8
    assert aging.loc["Proposal", "median_age_days"] == pytest.approx(20.0)
    assert aging.loc["Proposal", "p90_age_days"] == pytest.approx(24.8)
    assert aging.loc["Lead", "median_age_days"] == pytest.approx(41.0)
    stuck = stuck_deals(engine, feb15, None, now=later)
    assert stuck["deal_id"].tolist() == ["T4", "T3", "T5", "T1", "T2"]
    assert stuck["stage"].tolist() == ["(no stage)", "Lead", "Proposal", "Proposal", "Closed Lost"]
    assert stuck["days_in_stage"].tolist() == pytest.approx([45.0, 41.0, 26.0, 14.0, 5.0])
    entered = ["2024-01-01", "2024-01-05", "2024-01-20", "2024-02-01", "2024-02-10"]
    assert stuck["entered_at"].tolist() == [pd.Timestamp(d) for d in entered]
    # As of Feb 1 00:00, the instant of T1's tie: T1 Proposal 0 d; T2, T6 Lead since Jan 2
    # (30 d); T3 Lead 27 d; T4 "(no stage)" 31 d; T5 Proposal since Jan 20 (12 d). Equal
    # ages by deal_id.
    feb1 = stuck_deals(engine, Filters("2024-01-01", "2024-02-01"), None, now=later)
    assert feb1["deal_id"].tolist() == ["T4", "T2", "T6", "T3", "T5", "T1"]
    assert feb1["stage"].tolist() == ["(no stage)", "Lead", "Lead", "Lead", "Proposal", "Proposal"]
    assert feb1["days_in_stage"].tolist() == pytest.approx([31.0, 30.0, 30.0, 27.0, 12.0, 0.0])


def test_results_agree_across_databases(make_db) -> None:
    year = Filters("2023-10-01", "2024-07-01")

    def compute(engine: sa.Engine) -> dict[str, pd.DataFrame]:
        return {
            "lead_conversion": lead_conversion(engine, year, "month"),
            "win_rate_by": win_rate_by(engine, year, "segment"),
            "funnel": funnel(engine, year),
            "weighted_pipeline": weighted_pipeline(engine, year),
            "open_deal_aging": open_deal_aging(engine, Filters("2024-01-01", "2024-03-12")),
            "stuck_deals": stuck_deals(engine, Filters("2024-01-01", "2024-04-01"), None),
        }

    assert_databases_agree(make_db, [BASE, {"deals": DEALS, "deal_stage_history": _history()}], compute)


def test_stored_deal_rows_give_the_open_deals_name_and_amount_without_reading_deals(
    engine: sa.Engine,
) -> None:
    """The stored deal rows carry an open deal's name and amount: ``weighted_pipeline`` is one
    aggregate of them and ``stuck_deals`` lists from them, neither reading ``deals`` — but
    for a listed deal open at the instant and closed since (no stored name or amount), whose
    name and amount are read from ``deals`` for its id alone."""
    with engine.begin() as conn:
        stage_visits.refresh(conn)
    reads_deals = re.compile(r"\b(FROM|JOIN) deals\b")
    with statements_sent(engine, "") as sent:
        out = weighted_pipeline(engine, Q1).set_index("stage")
        # Open now: D4 Qualified 2000, D5 Qualified 400, D10 Proposal 50, D8 Negotiation 900,
        # D6 no history 700 (test_weighted_pipeline)
        assert out["open_deals"].tolist() == [0, 2, 1, 1, 1]
        assert out["amount"].tolist() == pytest.approx([0.0, 2400.0, 50.0, 900.0, 700.0])
        f = Filters("2024-01-01", "2024-03-12")
        stuck = stuck_deals(engine, f, "Qualified")
        # D5 7 days (no account, Ugo) 400, D4 2 days (Alpha, Uma) 2000
        assert stuck["deal_id"].tolist() == ["D5", "D4"]
        assert stuck["name"].tolist() == ["Deal D5", "Deal D4"]
        assert stuck["amount"].tolist() == pytest.approx([400.0, 2000.0])
        assert stuck["account_id"].tolist()[1] == "A1" and stuck["owner"].tolist() == ["Ugo", "Uma"]
    assert not [s for s, _ in sent if reads_deals.search(s)]
    with statements_sent(engine, "") as sent:
        every = stuck_deals(engine, f, None, limit=2)
    # D10 open now (132 days in Proposal), D9 open on Mar 12 but won on Mar 15: its name and
    # amount from deals
    assert every["deal_id"].tolist() == ["D10", "D9"]
    assert every["name"].tolist() == ["Deal D10", "Deal D9"]
    assert every["amount"].tolist() == pytest.approx([50.0, 600.0])
    assert every["account_id"].tolist() == ["A2", "A3"] and every["owner_id"].tolist() == ["U2", "U1"]
    [read] = [s for s, _ in sent if reads_deals.search(s)]
    assert "deal_stage" not in read and "rollup" not in read
