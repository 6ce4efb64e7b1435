"""A small CRM for the alert tests, written out row by row; today is Sunday 6 Dec 2026.

Last complete periods as of TODAY: month Nov 2026 (Dec is running), quarter Q3 2026 (Q4 is
running), ISO week Mon 23 – Sun 29 Nov 2026 (the week of 30 Nov is running).

Churn (subscriptions from 1 Jan 2026; E1–E4 Enterprise, S1–S2 SMB):
  E2 ends 15 Nov 2026, E3 ends 3 Dec 2026 (in the running month and quarter).
  Nov 2026, Enterprise: customers at start 4 (E1–E4), churned 1 (E2) → 1 ÷ 4 = 25 %.
  Nov 2026, SMB: 2 at start, none churned → 0 %.  Oct 2026, Enterprise: 0 ÷ 4 = 0 %.
  Q3 2026, Enterprise: 0 ÷ 4 = 0 % (Q4, running, would be 2 ÷ 4).
NPS (survey nps, all on E1):
  Oct 2026: scores 10,10,9,9,9,9 (6 promoters), 8,7 (2 passives), 3,5 (2 detractors)
            → 100·(6 − 2) ÷ 10 = +40.
  Nov 2026: 10,9,9 (3 promoters), 8,8,7 (3 passives), 0,2,6,6 (4 detractors)
            → 100·(3 − 4) ÷ 10 = −10.   Change Nov − Oct = −50 points.
  1–5 Dec 2026: five 0s (running month: never evaluated).
Revenue (payments on the 10th of each month, Nov 2023 – Nov 2026, 37 months):
  E1 (Enterprise): 1000 + 20·((3·i) mod 7) − 60 in month i = 0…35, then Nov 2026: 5000.
  S1 (SMB): 500 + 10·((5·i) mod 7) − 30, Nov 2026 as the pattern says (i = 36).
Complaint tickets (category defect, by opened_at):
  P1: none in the 12 weeks before, 4 in the week of 23 Nov → expected 0, λ = 0.5,
      P(X ≥ 4) = 1 − e^−0.5·(1 + 0.5 + 0.125 + 0.0208) = 0.00175 < 0.01 and 4 ≥ 3: a spike.
  P2: 1 a week in the 12 weeks before (expected 1), 3 in the week of 23 Nov:
      P(X ≥ 3 | λ = 1) = 1 − e^−1·2.5 = 0.0803: no spike. 10 in the running week: ignored.
"""

from __future__ import annotations

import datetime as dt
from datetime import datetime as T

import sqlalchemy as sa

from crm_data import schema
from crm_data.engines import make_engine

TODAY = dt.date(2026, 12, 6)

ACCOUNTS = [
    dict(account_id=a, name=f"Account {a}", segment=seg, created_at=T(2025, 12, 1))
    for a, seg in [("E1", "Enterprise"), ("E2", "Enterprise"), ("E3", "Enterprise"), ("E4", "Enterprise"),
                   ("S1", "SMB"), ("S2", "SMB")]
]  # fmt: skip
PRODUCTS = [dict(product_id="P1", name="Core"), dict(product_id="P2", name="Addon")]
ENDS = {"E2": T(2026, 11, 15), "E3": T(2026, 12, 3)}
SUBSCRIPTIONS = [
    dict(subscription_id=f"sub-{a['account_id']}", account_id=a["account_id"], product_id="P1", mrr=100.0,
         started_at=T(2026, 1, 1), ended_at=ENDS.get(a["account_id"]))
    for a in ACCOUNTS
]  # fmt: skip

_NPS = [(T(2026, 10, 5), s) for s in (10, 10, 9, 9, 9, 9, 8, 7, 3, 5)]
_NPS += [(T(2026, 11, 20), s) for s in (10, 9, 9, 8, 8, 7, 0, 2, 6, 6)]
_NPS += [(T(2026, 12, 3), 0) for _ in range(5)]
SURVEYS = [
    dict(response_id=f"r{i}", account_id="E1", survey="nps", score=float(s), responded_at=when)
    for i, (when, s) in enumerate(_NPS)
]


def _month(i: int) -> T:
    index = 2023 * 12 + 10 + i  # i = 0: Nov 2023
    return T(index // 12, index % 12 + 1, 10)


ENTERPRISE_NOVEMBER = 5000.0
PAYMENTS = [
    dict(payment_id=f"pE{i}", account_id="E1", paid_at=_month(i),
         amount=ENTERPRISE_NOVEMBER if i == 36 else 1000.0 + 20 * ((3 * i) % 7) - 60)
    for i in range(37)
] + [
    dict(payment_id=f"pS{i}", account_id="S1", paid_at=_month(i), amount=500.0 + 10 * ((5 * i) % 7) - 30)
    for i in range(37)
]  # fmt: skip

SPIKE_WEEK = T(2026, 11, 23)  # Monday
_TICKETS = [("P1", SPIKE_WEEK + dt.timedelta(days=d, hours=9)) for d in (0, 1, 3, 6)]
_TICKETS += [("P2", SPIKE_WEEK - dt.timedelta(weeks=w) + dt.timedelta(days=2)) for w in range(1, 13)]
_TICKETS += [("P2", SPIKE_WEEK + dt.timedelta(days=d)) for d in (1, 2, 4)]
_TICKETS += [("P2", T(2026, 11, 30, 8) + dt.timedelta(hours=h)) for h in range(10)]
TICKETS = [
    dict(ticket_id=f"t{i}", account_id="S2", product_id=p, category="defect", opened_at=when)
    for i, (p, when) in enumerate(_TICKETS)
]

ROWS = {
    "accounts": ACCOUNTS,
    "products": PRODUCTS,
    "subscriptions": SUBSCRIPTIONS,
    "survey_responses": SURVEYS,
    "payments": PAYMENTS,
    "tickets": TICKETS,
}


def write(path) -> str:
    """A DuckDB file at ``path`` holding these rows; its URL."""
    return write_url(f"duckdb:///{path}")


def write_url(url: str) -> str:
    """These rows in the (empty) database at ``url``; the URL."""
    engine = make_engine(url)
    try:
        schema.create_schema(engine)
        with engine.begin() as conn:
            for table in schema.TABLE_NAMES:
                if ROWS.get(table):
                    conn.execute(sa.insert(schema.metadata.tables[table]), ROWS[table])
    finally:
        engine.dispose()
    return url
