"""kpis.why_empty: an empty funnel says why (issue 14, point 2) — DuckDB, SQLite, PostgreSQL.

Accounts (more_fixtures.BASE): A1 SMB/U1, A2 Enterprise/U2, A3 SMB/U1, A4 Mid-Market, no owner.
"""

from __future__ import annotations

import sqlalchemy as sa

from kpis.filters import Filters, Scope
from kpis.pipeline import funnel
from kpis.why_empty import funnel_empty_reason
from tests.kpis.more_fixtures import BASE, load, ts

Q1 = Filters("2024-01-01", "2024-04-01")


def deal(deal_id, account, created, status="open", owner=None):
    return {"deal_id": deal_id, "account_id": account, "owner_id": owner, "created_at": ts(created),
            "status": status, "amount": 100.0}  # fmt: skip


DEALS = [
    deal("D1", "A1", "2024-01-10", owner="U1"),  # SMB, entered Lead
    deal("D2", "A2", "2024-02-01", "won", owner="U2"),  # Enterprise, won
    deal("D3", "A3", "2023-12-31 23:59:59", owner="U1"),  # before Q1
]
HISTORY = [
    {"deal_id": "D1", "stage": "Lead", "entered_at": ts("2024-01-10")},
    {"deal_id": "D3", "stage": "Lead", "entered_at": ts("2023-12-31 23:59:59")},
]


def test_a_funnel_with_deals_needs_no_reason(db: sa.Engine) -> None:
    load(db, BASE, {"deals": DEALS, "deal_stage_history": HISTORY})
    assert funnel_empty_reason(db, Q1) is None
    assert funnel_empty_reason(db, Q1.replace(segments=["Enterprise"])) is None  # D2 won: enters Closed Won


def test_no_stages_configured(db: sa.Engine) -> None:
    load(db, {k: v for k, v in BASE.items() if k != "pipeline_stages"}, {"deals": DEALS})
    assert funnel(db, Q1).empty
    assert funnel_empty_reason(db, Q1).startswith("No pipeline stages are configured")


def test_filters_that_exclude_every_account(db: sa.Engine) -> None:
    load(db, BASE, {"deals": DEALS, "deal_stage_history": HISTORY})
    # Enterprise is A2 only, whose company size is not A1's: the two together select no account
    sizes = {row["account_id"]: row["company_size"] for row in BASE["accounts"]}
    f = Q1.replace(segments=["Enterprise"], company_sizes=[sizes["A1"]])
    assert sizes["A1"] != sizes["A2"]
    assert funnel_empty_reason(db, f) == (
        "No account matches these filters together (segment, company size), so no deal can be "
        "counted: remove or change one in the sidebar."
    )
    assert funnel_empty_reason(db, Q1.replace(segments=["Nobody"])).startswith(
        "No account has the chosen segment"
    )
    assert funnel_empty_reason(db, Q1.within(Scope(regions=[]))).startswith(
        "No account is inside your access"
    )


def test_no_deals_in_the_range(db: sa.Engine) -> None:
    load(db, BASE, {"deals": DEALS, "deal_stage_history": HISTORY})
    f = Filters("2024-06-01", "2024-07-01", segments=["SMB"])
    assert funnel_empty_reason(db, f) == (
        "No deals were created between 01 Jun 2024 and 30 Jun 2024: widen the date range in the sidebar."
    )


def test_deals_in_the_range_but_none_for_the_filters(db: sa.Engine) -> None:
    load(db, BASE, {"deals": DEALS, "deal_stage_history": HISTORY})
    # Mid-Market = A4, which has no deal; Q1 has D1 and D2
    f = Q1.replace(segments=["Mid-Market"])
    assert funnel(db, f)["reached_any"].sum() == 0
    assert funnel_empty_reason(db, f) == (
        "2 deals were created between 01 Jan 2024 and 31 Mar 2024, none of them for the chosen segment: "
        "remove or change a filter in the sidebar."
    )


def test_deals_that_never_entered_a_stage(db: sa.Engine) -> None:
    load(db, BASE, {"deals": [DEALS[0]]})  # D1 without its stage history
    assert funnel_empty_reason(db, Q1) == (
        "1 deal was created between 01 Jan 2024 and 31 Mar 2024, but none has entered a funnel stage "
        "(no stage history for them)."
    )
