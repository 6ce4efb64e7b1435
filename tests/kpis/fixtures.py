"""A small, hand-written CRM written out row by row, shared by the KPI tests.

Every expected number in tests/kpis/test_*.py is worked out by hand from these rows (the
arithmetic is in the tests' comments). The rows are chosen to hit the edge cases:
timestamps exactly on month boundaries (00:00:00 of the 1st belongs to the new month),
records without an account, deals that skip or re-enter stages, open deals that must be
censored, a segment with no customers, a refund.

Accounts (segment, owner):  A1 Enterprise u1 · A2 Enterprise u2 · A3 SMB u1 · A4 SMB u2 ·
A5 no segment, no owner. Products: P1 "Core", P2 "Addon".
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from crm_data import schema

T = datetime  # short alias for the timestamps below

ACCOUNTS = [
    dict(account_id="A1", name="Alpha GmbH", segment="Enterprise", industry="Tech", company_size="large",
         region="EU", country="DE", city="Berlin", acquisition_channel="referral", owner_id="u1",
         created_at=T(2023, 5, 1)),
    dict(account_id="A2", name="Beta SA", segment="Enterprise", industry="Retail", company_size="mid",
         region="EU", country="FR", city="Paris", acquisition_channel="ads", owner_id="u2",
         created_at=T(2023, 9, 1)),
    dict(account_id="A3", name="Gamma Inc", segment="SMB", industry="Tech", company_size="small",
         region="NA", country="US", city="Austin", acquisition_channel="web", owner_id="u1",
         created_at=T(2023, 12, 1)),
    dict(account_id="A4", name="Delta LLC", segment="SMB", industry="Retail", company_size="small",
         region="NA", country="US", city="Boston", acquisition_channel="ads", owner_id="u2",
         created_at=T(2024, 1, 10)),
    dict(account_id="A5", name="Epsilon", segment=None, industry=None, company_size=None,
         region=None, country=None, city=None, acquisition_channel=None, owner_id=None,
         created_at=T(2023, 10, 1)),
]  # fmt: skip

USERS = [
    dict(user_id="u1", name="Alice", team="East", department="Sales", manager_id=None, region="EU"),
    dict(user_id="u2", name="Bob", team="West", department="Sales", manager_id="u1", region="NA"),
]

PRODUCTS = [
    dict(product_id="P1", name="Core", family="Platform", list_price=100.0),
    dict(product_id="P2", name="Addon", family="Extras", list_price=20.0),
]

SUBSCRIPTIONS = [
    # A1 stays a customer all along (S1); its add-on S5 ends exactly on 1 Mar 00:00.
    dict(subscription_id="S1", account_id="A1", product_id="P1", mrr=100.0,
         started_at=T(2023, 6, 1), ended_at=None, end_reason=None),
    dict(subscription_id="S5", account_id="A1", product_id="P2", mrr=10.0,
         started_at=T(2023, 12, 1), ended_at=T(2024, 3, 1), end_reason="downgrade"),
    # A2 ends exactly at 1 Feb 00:00: active at 1 Jan, not at 1 Feb -> churned in January.
    dict(subscription_id="S2", account_id="A2", product_id="P1", mrr=50.0,
         started_at=T(2023, 9, 15), ended_at=T(2024, 2, 1), end_reason="closed"),
    # A3 starts exactly at 1 Jan 00:00 (active at 1 Jan), ends mid March.
    dict(subscription_id="S3", account_id="A3", product_id="P2", mrr=20.0,
         started_at=T(2024, 1, 1), ended_at=T(2024, 3, 10, 12), end_reason="price"),
    # A4 is won during January (in neither January count), churns in February.
    dict(subscription_id="S4", account_id="A4", product_id="P1", mrr=30.0,
         started_at=T(2024, 1, 15), ended_at=T(2024, 2, 20), end_reason="switched"),
    # A5 (no segment) churns in January.
    dict(subscription_id="S6", account_id="A5", product_id="P1", mrr=40.0,
         started_at=T(2023, 11, 1), ended_at=T(2024, 1, 20), end_reason="budget"),
]  # fmt: skip

PIPELINE_STAGES = [
    dict(stage="Lead", position=1, probability=0.1, is_closed=False, is_won=False),
    dict(stage="Qualified", position=2, probability=0.3, is_closed=False, is_won=False),
    dict(stage="Proposal", position=3, probability=0.6, is_closed=False, is_won=False),
    dict(stage="Negotiation", position=4, probability=0.8, is_closed=False, is_won=False),
    dict(stage="Closed Won", position=5, probability=1.0, is_closed=True, is_won=True),
    dict(stage="Closed Lost", position=6, probability=0.0, is_closed=True, is_won=False),
]


def _deal(deal_id, account, owner, product, amount, created, closed, status, lost_reason=None):
    return dict(deal_id=deal_id, account_id=account, owner_id=owner, product_id=product, name=f"Deal {deal_id}",
                amount=amount, lead_source="web", created_at=created, closed_at=closed, status=status,
                lost_reason=lost_reason)  # fmt: skip


DEALS = [
    _deal("D1", "A1", "u1", "P1", 1000.0, T(2024, 1, 5), T(2024, 2, 4), "won"),  # cycle 30 d
    _deal(
        "D2", "A2", "u2", "P1", 500.0, T(2024, 1, 10), T(2024, 3, 1), "lost", "price"
    ),  # closed on 1 Mar 00:00
    _deal("D3", "A3", "u1", "P2", 200.0, T(2024, 2, 1), T(2024, 2, 11, 12), "won"),  # cycle 10.5 d
    _deal("D4", None, "u2", "P1", 300.0, T(2024, 2, 15), T(2024, 2, 29), "won"),  # no account, cycle 14 d
    _deal("D5", "A4", "u1", "P1", 800.0, T(2024, 1, 20), None, "open"),
    _deal("D6", "A1", "u1", "P2", 400.0, T(2024, 2, 5), T(2024, 2, 25), "lost", "timing"),
    _deal("D7", "A5", "u2", "P1", 600.0, T(2023, 12, 1), T(2024, 1, 16), "won"),  # cycle 46 d
    _deal("D8", "A2", "u2", "P2", 700.0, T(2024, 3, 10), None, "open"),
]

DEAL_STAGE_HISTORY = [
    dict(deal_id=deal, stage=stage, entered_at=at)
    for deal, stage, at in [
        ("D1", "Lead", T(2024, 1, 5)), ("D1", "Qualified", T(2024, 1, 10)), ("D1", "Proposal", T(2024, 1, 20)),
        ("D1", "Closed Won", T(2024, 2, 4)),
        # D2 skips Qualified
        ("D2", "Lead", T(2024, 1, 10)), ("D2", "Proposal", T(2024, 1, 15)), ("D2", "Closed Lost", T(2024, 3, 1)),
        # D3 re-enters Qualified and Proposal
        ("D3", "Lead", T(2024, 2, 1)), ("D3", "Qualified", T(2024, 2, 3)), ("D3", "Proposal", T(2024, 2, 5)),
        ("D3", "Qualified", T(2024, 2, 7)), ("D3", "Proposal", T(2024, 2, 9)), ("D3", "Closed Won", T(2024, 2, 11, 12)),
        ("D4", "Lead", T(2024, 2, 15)), ("D4", "Qualified", T(2024, 2, 20)), ("D4", "Closed Won", T(2024, 2, 29)),
        # D5 is still open in Proposal
        ("D5", "Lead", T(2024, 1, 20)), ("D5", "Qualified", T(2024, 1, 25)), ("D5", "Proposal", T(2024, 2, 10)),
        ("D6", "Lead", T(2024, 2, 5)), ("D6", "Closed Lost", T(2024, 2, 25)),
        ("D7", "Lead", T(2023, 12, 1)), ("D7", "Qualified", T(2023, 12, 11)), ("D7", "Proposal", T(2023, 12, 21)),
        ("D7", "Negotiation", T(2024, 1, 1)), ("D7", "Closed Won", T(2024, 1, 16)),
        # D8 is still open in Lead
        ("D8", "Lead", T(2024, 3, 10)),
    ]
]  # fmt: skip


def _ticket(
    ticket_id, account, product, channel, category, priority, opened, first_response, resolved, contacts
):
    return dict(ticket_id=ticket_id, account_id=account, product_id=product, channel=channel, category=category,
                priority=priority, opened_at=opened, first_response_at=first_response, resolved_at=resolved,
                contacts_until_resolved=contacts)  # fmt: skip


TICKETS = [
    _ticket("T1", "A1", "P1", "email", "defect", "high", T(2024, 1, 3, 9), T(2024, 1, 3, 10), T(2024, 1, 3, 12), 1),
    _ticket("T2", "A2", "P1", "phone", "billing", "low", T(2024, 1, 10, 8), T(2024, 1, 10, 12), T(2024, 1, 11, 8), 2),
    # resolved exactly at 1 Feb 00:00 -> February
    _ticket("T3", "A3", "P2", "chat", "question", "low", T(2024, 1, 31, 20), T(2024, 1, 31, 22), T(2024, 2, 1), 1),
    # no account, no first response, unknown contact count
    _ticket("T4", None, "P1", "email", "complaint", "high", T(2024, 2, 5, 10), None, T(2024, 2, 7, 10), None),
    _ticket("T5", "A4", "P2", "phone", "defect", "medium", T(2024, 2, 20), T(2024, 2, 20, 6), None, None),
    _ticket("T6", "A1", "P2", "email", "question", "low", T(2024, 3, 1), T(2024, 3, 1, 1), T(2024, 3, 1, 9), 1),
]  # fmt: skip


def _response(response_id, account, survey, touchpoint, score, at, comment=None):
    return dict(response_id=response_id, account_id=account, contact_id=None, survey=survey, touchpoint=touchpoint,
                score=score, comment=comment, responded_at=at, ticket_id=None)  # fmt: skip


SURVEY_RESPONSES = [
    _response("R1", "A1", "nps", "purchase", 10.0, T(2024, 1, 5), "Great product"),
    _response("R2", "A2", "nps", "purchase", 9.0, T(2024, 1, 6)),
    _response("R3", "A3", "nps", "support", 7.0, T(2024, 1, 7), "   "),  # blank comment: not a comment
    _response("R4", "A4", "nps", "support", 3.0, T(2024, 1, 8), "Too slow"),
    _response("R5", None, "nps", "website_visit", 6.0, T(2024, 1, 31, 23, 59, 59)),  # last second of January
    _response("R6", "A1", "nps", "support", 8.0, T(2024, 2, 1)),  # exactly 1 Feb 00:00 -> February
    _response("R7", "A2", "nps", "support", 0.0, T(2024, 2, 10), "Broken again"),
    _response("C1", "A1", "ces", "support", 6.0, T(2024, 1, 4)),
    _response("C2", "A2", "ces", "support", 4.0, T(2024, 1, 12)),
    _response("C3", "A3", "ces", "support", 7.0, T(2024, 1, 20)),
    _response("C4", "A1", "ces", "signup", 2.0, T(2024, 1, 25), "Signup was hard"),
    _response("C5", "A4", "ces", "signup", 5.0, T(2024, 2, 2)),
    _response("C6", None, "ces", None, 3.0, T(2024, 2, 14)),
    _response("X1", "A3", "csat", "support", 4.0, T(2024, 1, 15), "ok"),
]

COSTS = [
    dict(cost_id="K1", incurred_on=date(2024, 1, 10), category="personnel", purpose="retention", account_id="A1", amount=100.0),
    dict(cost_id="K2", incurred_on=date(2024, 1, 20), category="loyalty", purpose="retention", account_id="A2", amount=50.0),
    dict(cost_id="K3", incurred_on=date(2024, 2, 1), category="marketing", purpose="retention", account_id=None, amount=30.0),
    dict(cost_id="K4", incurred_on=date(2024, 1, 31), category="overhead", purpose="retention", account_id="A3", amount=20.0),
    dict(cost_id="K5", incurred_on=date(2024, 2, 15), category="production", purpose="acquisition", account_id="A4", amount=999.0),
    dict(cost_id="K6", incurred_on=date(2024, 3, 5), category="loyalty", purpose="retention", account_id="A3", amount=10.0),
]  # fmt: skip

PAYMENTS = [
    dict(payment_id="Y1", account_id="A1", paid_at=T(2024, 1, 1), amount=110.0),
    dict(payment_id="Y2", account_id="A2", paid_at=T(2024, 1, 15), amount=50.0),
    dict(payment_id="Y3", account_id="A3", paid_at=T(2024, 2, 1), amount=20.0),
    dict(payment_id="Y4", account_id="A2", paid_at=T(2024, 2, 10), amount=-25.0),  # refund
]

#: table name -> rows, parents first.
ROWS: dict[str, list[dict]] = {
    "accounts": ACCOUNTS,
    "users": USERS,
    "products": PRODUCTS,
    "subscriptions": SUBSCRIPTIONS,
    "pipeline_stages": PIPELINE_STAGES,
    "deals": DEALS,
    "deal_stage_history": DEAL_STAGE_HISTORY,
    "tickets": TICKETS,
    "survey_responses": SURVEY_RESPONSES,
    "costs": COSTS,
    "payments": PAYMENTS,
}


@contextlib.contextmanager
def statements_sent(engine: sa.Engine, containing: str) -> Iterator[list[tuple[str, Any]]]:
    """The (statement, parameters) that ``engine`` sends inside the block and whose text
    contains ``containing``."""
    seen: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if containing in statement:
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def postgresql_plan(engine: sa.Engine, statement: str, parameters: Any) -> dict:
    """PostgreSQL's plan of ``statement`` with ``parameters`` (``EXPLAIN (FORMAT JSON)``):
    its top node."""
    with engine.connect() as c:
        plan = c.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar_one()
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


def insert(engine: sa.Engine, table: str, rows: list[dict]) -> None:
    """Insert ``rows`` into ``table`` with a plain SQLAlchemy insert."""
    if rows:
        with engine.begin() as conn:
            conn.execute(sa.insert(schema.metadata.tables[table]), rows)


def load(engine: sa.Engine, only: tuple[str, ...] | None = None) -> sa.Engine:
    """Insert the fixture rows (all tables, or only those named) and return ``engine``."""
    for table in schema.TABLE_NAMES:
        if table in ROWS and (only is None or table in only):
            insert(engine, table, ROWS[table])
    return engine


def column(frame, name: str) -> list[float]:
    """A result column as plain floats (NaN stays NaN), for ``pytest.approx(..., nan_ok=True)``."""
    return [float(v) for v in frame[name]]


def synthetic_rows(seed: int = 7, accounts: int = 40) -> dict[str, list[dict]]:
    """A seeded, generated CRM (timestamps with odd seconds) for the cross-database agreement
    test only: no expected numbers are derived from it, only equality across databases."""
    import random
    from datetime import timedelta

    rng = random.Random(seed)
    start = T(2023, 1, 1)

    def when(days: float) -> datetime:
        return start + timedelta(seconds=rng.randrange(int(days * 86400)))

    segments = ["Enterprise", "SMB", "Mid", None]
    rows: dict[str, list[dict]] = {name: [] for name in ROWS}
    rows["users"] = USERS
    rows["products"] = PRODUCTS
    rows["pipeline_stages"] = PIPELINE_STAGES
    open_stages = [s["stage"] for s in PIPELINE_STAGES if not s["is_closed"]]
    for i in range(accounts):
        account = f"G{i}"
        rows["accounts"].append(dict(account_id=account, name=f"Generated {i}", segment=rng.choice(segments),
                                     owner_id=rng.choice(["u1", "u2", None]), created_at=when(30)))  # fmt: skip
        began = when(400)
        ended = (
            began + timedelta(seconds=rng.randrange(30 * 86400, 500 * 86400)) if rng.random() < 0.6 else None
        )
        rows["subscriptions"].append(dict(subscription_id=f"GS{i}", account_id=account, product_id=rng.choice(["P1", "P2"]),
                                          mrr=rng.choice([10.0, 25.5, 99.9]), started_at=began, ended_at=ended,
                                          end_reason="price" if ended else None))  # fmt: skip
        for j in range(3):
            deal = f"GD{i}_{j}"
            created = when(600)
            status = rng.choice(["won", "lost", "open"])
            at = created
            path = open_stages[: rng.randrange(1, 5)]
            if rng.random() < 0.3:
                path = [*path, path[0]]  # re-enter the first stage
            history = []
            for stage in path:
                history.append(dict(deal_id=deal, stage=stage, entered_at=at))
                at = at + timedelta(seconds=rng.randrange(3600, 40 * 86400))
            closed = at if status != "open" else None
            if closed:
                history.append(
                    dict(
                        deal_id=deal, stage="Closed Won" if status == "won" else "Closed Lost", entered_at=at
                    )
                )
            rows["deals"].append(dict(deal_id=deal, account_id=account if rng.random() < 0.9 else None,
                                      owner_id=rng.choice(["u1", "u2"]), product_id=rng.choice(["P1", "P2"]),
                                      amount=rng.choice([100.0, 250.25]), created_at=created, closed_at=closed,
                                      status=status))  # fmt: skip
            rows["deal_stage_history"].extend(history)
            opened = when(600)
            resolved = (
                opened + timedelta(seconds=rng.randrange(600, 9 * 86400)) if rng.random() < 0.8 else None
            )
            rows["tickets"].append(dict(ticket_id=f"GT{i}_{j}", account_id=account if rng.random() < 0.9 else None,
                                        product_id=rng.choice(["P1", "P2"]), channel=rng.choice(["email", "phone"]),
                                        category=rng.choice(["defect", "question", None]), priority="low",
                                        opened_at=opened, first_response_at=opened + timedelta(seconds=rng.randrange(60, 86400)),
                                        resolved_at=resolved, contacts_until_resolved=rng.choice([1, 1, 2, None])))  # fmt: skip
            survey = rng.choice(["nps", "ces"])
            score = float(rng.randrange(0, 11) if survey == "nps" else rng.randrange(1, 8))
            rows["survey_responses"].append(dict(response_id=f"GR{i}_{j}", account_id=account if rng.random() < 0.9 else None,
                                                 survey=survey, touchpoint=rng.choice(["support", "signup", None]),
                                                 score=score, comment=rng.choice([None, "fine", "bad"]),
                                                 responded_at=when(600)))  # fmt: skip
            rows["costs"].append(dict(cost_id=f"GK{i}_{j}", incurred_on=when(600).date(),
                                      category=rng.choice(["personnel", "loyalty", "marketing"]),
                                      purpose=rng.choice(["retention", "acquisition"]),
                                      account_id=account if rng.random() < 0.8 else None, amount=rng.choice([12.34, 56.78, 0.1])))  # fmt: skip
    return rows


def load_rows(engine: sa.Engine, rows: dict[str, list[dict]]) -> sa.Engine:
    """Insert ``rows`` (table name -> rows) parents first and return ``engine``."""
    for table in schema.TABLE_NAMES:
        insert(engine, table, rows.get(table, []))
    return engine
