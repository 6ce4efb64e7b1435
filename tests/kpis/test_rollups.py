"""kpis.rollups: the roll-ups give the numbers of the base tables, are really read when they
apply, and are left alone (base tables) when they do not; each test runs on DuckDB, SQLite
and PostgreSQL through the ``db`` fixture.

The equality tests compare every KPI that reads a roll-up (``KPIS``: customer_base,
revenue, survey_scores, win_rate, first_contact_resolution, lead_conversion) with roll-ups on and with
``CRM_ROLLUPS=off`` (the direct path) and spy on their base statement builders
(``kpis.customer_base._base_statement``, ``kpis.revenue._revenue_statement``,
``kpis.feedback._survey_scores_statement``, ``kpis.sales._win_rate_statement``,
``kpis.service._fcr_statement``, ``kpis.pipeline._lead_conversion_statement``) to prove which path ran. The hand-checked numbers come
from tests/kpis/test_churn.py, test_costs.py, test_revenue.py, test_feedback.py,
test_sales.py and test_service.py (their comments hold the arithmetic).
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import ModuleType

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import period_key
from kpis import (
    Filters,
    customer_base,
    first_contact_resolution,
    lead_conversion,
    retention_cost,
    revenue,
    revenue_retention,
    rollups,
    survey_scores,
    win_rate,
)
from kpis.core import period_starts, wilson_interval
from tests.kpis import fixtures, more_fixtures
from tests.kpis.fixtures import column
from tests.kpis.test_revenue import PAYMENTS as REVENUE_PAYMENTS
from tests.kpis.test_revenue import SPREAD, SPREAD_Q1, assert_spread_retention
from tests.kpis.test_revenue import SUBSCRIPTIONS as REVENUE_SUBSCRIPTIONS

#: The modules (not the functions of the same name that ``kpis`` exports).
CUSTOMER_BASE_MODULE = importlib.import_module("kpis.customer_base")
REVENUE_MODULE = importlib.import_module("kpis.revenue")
FEEDBACK_MODULE = importlib.import_module("kpis.feedback")
SALES_MODULE = importlib.import_module("kpis.sales")
SERVICE_MODULE = importlib.import_module("kpis.service")
PIPELINE_MODULE = importlib.import_module("kpis.pipeline")

#: ``today`` of every refresh here: after the data, so the roll-ups cover up to December 2025.
TODAY = dt.date(2025, 12, 31)
JAN_TO_APR = Filters("2024-01-01", "2024-05-01")
ROLLED = rollups.ROLLUPS
NAN = math.nan


@dataclass(frozen=True)
class Kpi:
    """A KPI that reads roll-ups: its function ``(engine, filters, freq) -> frame``, the
    roll-ups it reads and the base-table statement builder it runs when they do not apply."""

    function: Callable[[sa.Engine, Filters, str], pd.DataFrame]
    module: ModuleType
    statement: str
    reads: tuple[rollups.Rollup, ...]

    @property
    def name(self) -> str:
        return self.function.__name__


KPIS: tuple[Kpi, ...] = (
    Kpi(
        customer_base,
        CUSTOMER_BASE_MODULE,
        "_base_statement",
        (rollups.CUSTOMER_BASE, rollups.RETENTION_COSTS),
    ),
    Kpi(revenue, REVENUE_MODULE, "_revenue_statement", (rollups.REVENUE,)),
    Kpi(survey_scores, FEEDBACK_MODULE, "_survey_scores_statement", (rollups.SURVEY_SCORES,)),
    Kpi(win_rate, SALES_MODULE, "_win_rate_statement", (rollups.WIN_RATE,)),
    Kpi(first_contact_resolution, SERVICE_MODULE, "_fcr_statement", (rollups.FIRST_CONTACT_RESOLUTION,)),
    Kpi(lead_conversion, PIPELINE_MODULE, "_lead_conversion_statement", (rollups.CREATED_DEALS,)),
)
BY_NAME = {kpi.name: kpi for kpi in KPIS}
BY_ROLLUP = {rollup.name: rollup for rollup in rollups.ROLLUPS}

#: Account-level selections; the last one selects nothing (no account in region "Nowhere").
SELECTIONS: dict[str, dict[str, list[str]]] = {
    "unfiltered": {},
    "smb": {"segments": ["SMB"]},
    "regions+industries": {"regions": ["EU", "NA"], "industries": ["Tech"]},
    "countries": {"countries": ["US", "DE"]},
    "company_sizes": {"company_sizes": ["small", "mid"]},
    "acquisition_channels": {"acquisition_channels": ["ads", "web"]},
    "nothing": {"segments": ["SMB"], "regions": ["Nowhere"]},
}
#: Per freq, a window whose ``end`` is a boundary of that freq and lies inside the coverage.
WINDOWS: dict[str, tuple[str, str]] = {
    "month": ("2023-01-01", "2025-07-01"),
    "quarter": ("2023-01-01", "2025-07-01"),
    "year": ("2023-01-01", "2026-01-01"),
}


# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _rollups_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with roll-ups enabled, whatever the environment says."""
    monkeypatch.delenv("CRM_ROLLUPS", raising=False)


def spy_base_statements(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the calls of the base-table statement builders of ``KPIS`` (still running them)."""
    calls: Counter[str] = Counter()
    for kpi in KPIS:
        original = getattr(kpi.module, kpi.statement)

        def spy(*args: object, _original: Callable = original, _name: str = kpi.statement) -> sa.Select:
            calls[_name] += 1
            return _original(*args)

        monkeypatch.setattr(kpi.module, kpi.statement, spy)
    return calls


def both_paths(
    monkeypatch: pytest.MonkeyPatch, compute: Callable[[], pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``compute()`` with roll-ups on, then with ``CRM_ROLLUPS=off``."""
    rolled = compute()
    monkeypatch.setenv("CRM_ROLLUPS", "off")
    try:
        direct = compute()
    finally:
        monkeypatch.delenv("CRM_ROLLUPS")
    return rolled, direct


def assert_same(rolled: pd.DataFrame, direct: pd.DataFrame, what: str) -> None:
    pd.testing.assert_frame_equal(rolled, direct, check_exact=False, rtol=1e-9, atol=1e-9, obj=what)


def every_kpi_both_paths(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, f: Filters, freq: str
) -> dict[str, pd.DataFrame]:
    """Every KPI of ``KPIS`` with roll-ups on and off, asserted equal; KPI name -> the
    direct (``CRM_ROLLUPS=off``) frame."""
    found = {}
    for kpi in KPIS:
        rolled, direct = both_paths(monkeypatch, lambda kpi=kpi: kpi.function(engine, f, freq))
        assert_same(rolled, direct, f"{kpi.name} {f} by {freq}")
        found[kpi.name] = direct
    return found


def read_all(engine: sa.Engine, f: Filters, freq: str) -> dict[str, dict | None]:
    """``rollups.read`` of each roll-up for the periods of ``f``."""
    periods = period_starts(f.start, f.end, freq)
    with engine.connect() as conn:
        return {r.name: rollups.read(conn, r, f, freq, periods) for r in ROLLED}


def state_rows(engine: sa.Engine) -> list[tuple]:
    """The state rows of the roll-ups (not of the stored stage visits: they cover deals, not
    periods; tests/kpis/test_stage_visits.py)."""
    state = rollups.state
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(state.name):
            return []
        mine = state.c.rollup.in_([r.name for r in ROLLED])
        return [tuple(r) for r in conn.execute(sa.select(state).where(mine).order_by(state.c.rollup))]


def refreshed(engine: sa.Engine, today: dt.date = TODAY) -> dict[str, int]:
    """``rollups.refresh_database``: the rows written per roll-up (not the stored stage
    visits', which it rebuilds too)."""
    names = {r.name for r in ROLLED}
    return {
        name: rows for name, rows in rollups.refresh_database(engine, today=today).items() if name in names
    }


def table_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            r.name: conn.execute(sa.select(sa.func.count()).select_from(r.table)).scalar_one() for r in ROLLED
        }


#: The summarised tables that point at an account (all of ``rollups.SOURCES`` but accounts).
ACCOUNT_RECORDS = [t.name for t in rollups.SOURCES if t is not schema.accounts]


def allow_orphans(engine: sa.Engine) -> None:
    """Let the summarised tables point at accounts that do not exist: DuckDB and SQLite (no
    PRAGMA foreign_keys) already do; PostgreSQL loses those foreign keys here."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        for table in ACCOUNT_RECORDS:
            for key in inspector.get_foreign_keys(table):
                if key["referred_table"] == "accounts":
                    conn.execute(sa.text(f'ALTER TABLE {table} DROP CONSTRAINT "{key["name"]}"'))


def response(response_id, account, survey, score, at, touchpoint="support") -> dict:
    return dict(response_id=response_id, account_id=account, contact_id=None, survey=survey,
                touchpoint=touchpoint, score=score, comment=None, responded_at=at, ticket_id=None)  # fmt: skip


def deal(deal_id, account, status, created, closed=None, owner="u1", product="P1") -> dict:
    return dict(deal_id=deal_id, account_id=account, owner_id=owner, product_id=product, name=f"Deal {deal_id}",
                amount=100.0, lead_source="web", created_at=created, closed_at=closed, status=status,
                lost_reason=None)  # fmt: skip


def ticket(ticket_id, account, opened, resolved, contacts, product="P1") -> dict:
    return dict(ticket_id=ticket_id, account_id=account, product_id=product, channel="email",
                category="question", priority="low", opened_at=opened, first_response_at=None,
                resolved_at=resolved, contacts_until_resolved=contacts)  # fmt: skip


#: Records of account GHOST, which is not in accounts (its dimensions are all NULL):
#: active at 1 Jan and 1 Feb 2024, gone by 1 Mar; pays 40 on 5 Mar; a 7.0 retention cost
#: on 20 Mar; an NPS 9 (promoter) on 5 Mar and a CES 5 (easy) on 20 Mar; a deal won on
#: 15 Mar and one opened on 2 Apr; a ticket resolved on 20 Mar at the first contact and
#: one on 10 Apr after two.
ORPHANS: dict[str, list[dict]] = {
    "subscriptions": [
        dict(subscription_id="SG", account_id="GHOST", product_id="P1", mrr=5.0,
             started_at=datetime(2023, 12, 15), ended_at=datetime(2024, 2, 15), end_reason="price"),
    ],
    "payments": [dict(payment_id="YG", account_id="GHOST", paid_at=datetime(2024, 3, 5), amount=40.0)],
    "costs": [
        dict(cost_id="KG", incurred_on=dt.date(2024, 3, 20), category="loyalty", purpose="retention",
             account_id="GHOST", amount=7.0),
    ],
    "survey_responses": [
        response("RG1", "GHOST", "nps", 9.0, datetime(2024, 3, 5)),
        response("RG2", "GHOST", "ces", 5.0, datetime(2024, 3, 20)),
    ],
    "deals": [
        deal("DG1", "GHOST", "won", datetime(2024, 2, 10), datetime(2024, 3, 15)),
        deal("DG2", "GHOST", "open", datetime(2024, 4, 2)),
    ],
    "tickets": [
        ticket("TG1", "GHOST", datetime(2024, 3, 18), datetime(2024, 3, 20), 1),
        ticket("TG2", "GHOST", datetime(2024, 4, 8), datetime(2024, 4, 10), 2),
    ],
}  # fmt: skip

#: NPS scores on both sides of the promoter (9) and detractor (6) boundaries; CES scores on
#: both sides of the "easy" boundary (5). The schema requires a score (no NULL).
NPS_SCORES = (9.0, 6.0, 10.0, 0.0, 7.0, 8.0)
CES_SCORES = (5.0, 4.0, 7.0, 1.0)
#: Instants on period boundaries, and the last microsecond of a quarter.
BOUNDARIES = (
    datetime(2024, 4, 1),
    datetime(2024, 12, 31, 23, 59, 59),
    datetime(2025, 1, 1),
    datetime(2024, 9, 30, 23, 59, 59, 999999),
)
FIRST = datetime(2023, 1, 1)  # nothing before: the roll-ups cover from January 2023


def feedback_sales_service_rows(accounts: list[str | None], rng: random.Random) -> dict[str, list[dict]]:
    """Survey responses, deals and tickets for each of ``accounts`` (None: no account),
    between January 2023 and June 2025 (a tenth on ``BOUNDARIES``; a closing or resolution
    up to 90 days after the creation or opening):

    * per account 3 NPS responses (cycling through ``NPS_SCORES``), 2 CES responses
      (``CES_SCORES``), every fifth account a CSAT response (never counted);
    * 5 deals: won, lost, open, won, lost — the second won deal of every third account and
      the second lost deal of every fourth have no closed_at; every seventh account's open
      deal has a closed_at (created_at dates it); every eleventh account has a deal of a
      status outside won/lost/open;
    * 4 tickets with contacts_until_resolved 1, 2, NULL, 1 — the last one unresolved for
      every second account.
    """

    def when() -> datetime:
        if rng.random() < 0.1:
            return rng.choice(BOUNDARIES)
        return FIRST + timedelta(seconds=rng.randrange(910 * 86400))  # to 30 Jun 2025

    def before(at: datetime) -> datetime:
        return max(FIRST, at - timedelta(seconds=rng.randrange(3600, 90 * 86400)))

    rows: dict[str, list[dict]] = {"survey_responses": [], "deals": [], "tickets": []}
    for i, account in enumerate(accounts):
        for j in range(3):
            score = NPS_SCORES[(i + j) % len(NPS_SCORES)]
            rows["survey_responses"].append(response(f"XN{i}_{j}", account, "nps", score, when()))
        for j in range(2):
            score = CES_SCORES[(i + j) % len(CES_SCORES)]
            rows["survey_responses"].append(response(f"XC{i}_{j}", account, "ces", score, when()))
        if i % 5 == 0:
            rows["survey_responses"].append(response(f"XS{i}", account, "csat", 9.0, when()))
        for j, status in enumerate(("won", "lost", "open", "won", "lost")):
            owner, product = rng.choice(["u1", "u2"]), rng.choice(["P1", "P2"])
            if status == "open":
                created = when()
                closed = created + timedelta(days=3) if i % 7 == 0 else None
            else:
                closed = when()
                created = before(closed)
                if (j == 3 and i % 3 == 0) or (j == 4 and i % 4 == 0):
                    closed = None
            rows["deals"].append(deal(f"XD{i}_{j}", account, status, created, closed, owner, product))
        if i % 11 == 0:
            rows["deals"].append(deal(f"XD{i}_x", account, "on_hold", when(), None))
        for j, contacts in enumerate((1, 2, None, 1)):
            resolved = None if j == 3 and i % 2 == 0 else when()
            opened = before(resolved) if resolved else when()
            rows["tickets"].append(ticket(f"XT{i}_{j}", account, opened, resolved, contacts))
    return rows


def generated_rows(seed: int = 7) -> dict[str, list[dict]]:
    """``fixtures.synthetic_rows`` made richer for the roll-ups: every account dimension set
    (or NULL) on the generated accounts; payments (refunds, zeros, odd seconds and instants
    on period boundaries), which synthetic_rows has none of; and
    ``feedback_sales_service_rows`` of every generated account and of no account. Without
    the users, products and stages the hand-written fixture already holds."""
    rows = fixtures.synthetic_rows(seed=seed)
    for shared in ("users", "products", "pipeline_stages"):
        rows.pop(shared)
    rng = random.Random(seed + 1)
    for account in rows["accounts"]:
        account.update(
            industry=rng.choice(["Tech", "Retail", "Health", None]),
            region=rng.choice(["EU", "NA", "APAC", None]),
            country=rng.choice(["US", "DE", "FR", None]),
            company_size=rng.choice(["small", "mid", "large", None]),
            acquisition_channel=rng.choice(["ads", "web", "referral", None]),
        )
    start = datetime(2023, 1, 1)
    boundaries = [datetime(2024, 4, 1), datetime(2024, 12, 31, 23, 59, 59), datetime(2025, 1, 1)]
    payments = []
    for i, account in enumerate(rows["accounts"]):
        for j in range(rng.randrange(0, 7)):
            paid_at = (
                rng.choice(boundaries)
                if rng.random() < 0.1
                else start + timedelta(seconds=rng.randrange(910 * 86400))  # to 30 Jun 2025
            )
            amount = rng.choice([10.0, 25.5, 99.9, 0.1, 12.34, -25.5, -0.1, 0.0])
            payments.append(
                dict(
                    payment_id=f"GY{i}_{j}", account_id=account["account_id"], paid_at=paid_at, amount=amount
                )
            )
    rows["payments"] = payments
    extra = feedback_sales_service_rows([a["account_id"] for a in rows["accounts"]] + [None, None], rng)
    for table, records in extra.items():
        rows[table].extend(records)
    return rows


def load_everything(engine: sa.Engine) -> sa.Engine:
    """The hand-written fixture, the generated rows and the GHOST orphans."""
    fixtures.load(engine)
    fixtures.load_rows(engine, generated_rows())
    allow_orphans(engine)
    fixtures.load_rows(engine, ORPHANS)
    return engine


# ---------------------------------------------------------------- same numbers, really read


def test_every_rollup_is_read_by_a_kpi_checked_here() -> None:
    """``KPIS`` covers ``rollups.ROLLUPS``: a new roll-up needs its KPI in the equality tests."""
    assert {r.name for kpi in KPIS for r in kpi.reads} == {r.name for r in rollups.ROLLUPS}
    assert len({r.name for r in rollups.ROLLUPS}) == len(rollups.ROLLUPS)
    assert {t.name for t in rollups.SOURCES} >= {"accounts", *ORPHANS}


def assert_selects_something(found: dict[str, pd.DataFrame], name: str, what: str) -> None:
    """A non-empty selection holds each kind of record the roll-ups count."""
    base, money = found["customer_base"], found["revenue"]
    scores, deals, tickets = found["survey_scores"], found["win_rate"], found["first_contact_resolution"]
    assert base["customers_at_start"].sum() > 0, what
    assert money["paying_accounts"].sum() > 0, what
    assert (money["refunds"] > 0).any(), what
    for measure in ("promoters", "passives", "detractors"):
        assert scores[measure].sum() > 0, (measure, what)
    # CES: easy (5-7) and not easy
    assert 0 < (scores["share_easy"] * scores["ces_responses"]).sum() < scores["ces_responses"].sum(), what
    for measure in ("won", "lost", "open_created"):
        assert deals[measure].sum() > 0, (measure, what)
    # resolved at the first contact and not (2 contacts or unknown)
    assert 0 < tickets["first_contact"].sum() < tickets["resolved"].sum(), what
    if name in ("unfiltered", "smb"):
        assert base["retention_costs"].sum() > 0, what
        assert base["churned"].sum() > 0, what
    if name == "unfiltered":  # A1's add-on S5 ends on 1 Mar 2024
        assert base["contraction"].sum() > 0, what


def test_rollups_equal_the_base_tables_for_every_selection_and_freq(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_everything(db)
    written = rollups.refresh_database(db, today=TODAY)
    assert set(written) == set(rollups.DERIVED)  # the roll-ups and the stored stage visits
    assert all(written[r.name] > 0 for r in ROLLED), written
    with db.connect() as conn:
        assert sorted(r[0] for r in conn.execute(sa.select(rollups.state.c.rollup))) == sorted(written)
    # coverage: from the earliest generated record (January 2023) to December of TODAY's year
    assert {row[1:3] for row in state_rows(db)} == {(202301, 202512)}
    calls = spy_base_statements(monkeypatch)
    checked = 0
    for freq, (start, end) in WINDOWS.items():
        for name, selection in SELECTIONS.items():
            f = Filters(start, end, **selection)
            what = f"{name} by {freq}"
            read = read_all(db, f, freq)
            assert all(v is not None for v in read.values()), f"roll-ups not read: {what}"
            assert calls.total() == 0, f"base tables read: {what}"
            found = every_kpi_both_paths(db, monkeypatch, f, freq)
            assert calls == {kpi.statement: 1 for kpi in KPIS}, what  # only with "off"
            calls.clear()
            if name == "nothing":
                assert all(v == {} for v in read.values()), what
                for kpi_name, counted in [
                    ("customer_base", "customers_at_start"),
                    ("revenue", "revenue"),
                    ("survey_scores", "nps_responses"),
                    ("survey_scores", "ces_responses"),
                    ("win_rate", "won"),
                    ("win_rate", "open_created"),
                    ("first_contact_resolution", "resolved"),
                    ("lead_conversion", "created"),
                ]:
                    assert (found[kpi_name][counted] == 0).all(), (kpi_name, counted)
            else:  # a selection that proves something: every kind of record in it
                assert_selects_something(found, name, what)
            checked += 1
    assert checked == len(WINDOWS) * len(SELECTIONS)


def test_the_rollup_tables_are_what_the_kpis_read(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tamper with the roll-up rows: the KPIs follow them (so the equality above was not
    the base tables compared with themselves); a refresh repairs them."""
    load_everything(db)
    rollups.refresh_database(db, today=TODAY)
    f = Filters("2024-01-01", "2024-07-01")
    good = {kpi.name: kpi.function(db, f, "month") for kpi in KPIS}
    # per roll-up: a measure to add 1000 to, and the KPI column that shows it
    tampered = [
        (rollups.REVENUE, "revenue", "revenue", "revenue"),
        (rollups.CUSTOMER_BASE, "churned", "customer_base", "churned"),
        (rollups.RETENTION_COSTS, "retention_costs", "customer_base", "retention_costs"),
        (rollups.SURVEY_SCORES, "nps_responses", "survey_scores", "nps_responses"),
        (rollups.WIN_RATE, "won", "win_rate", "won"),
        (rollups.FIRST_CONTACT_RESOLUTION, "resolved", "first_contact_resolution", "resolved"),
        (rollups.CREATED_DEALS, "created", "lead_conversion", "created"),
    ]
    assert {r.name for r, *_ in tampered} == {r.name for r in ROLLED}
    with db.begin() as conn:
        for rollup, measure, _, _ in tampered:
            table = rollup.table
            conn.execute(
                table.update()
                .where(table.c.grain == rollups.total_grain("month"))
                .values({measure: table.c[measure] + 1000})
            )
    # unfiltered: the total rows
    for _, _, kpi_name, shown in tampered:
        now = BY_NAME[kpi_name].function(db, f, "month")
        assert ((now[shown] - good[kpi_name][shown]) >= 999.9).all(), (kpi_name, shown)
    # filtered: the dimension groups' rows, untouched so far
    every_region = f.replace(regions=["APAC", "EU", "NA"])  # every region but none (NULL)
    regional = {kpi.name: kpi.function(db, every_region, "month") for kpi in KPIS}
    with db.begin() as conn:
        for rollup, measure, _, _ in tampered:
            table = rollup.table
            conn.execute(
                table.update().where(table.c.grain == "month").values({measure: table.c[measure] + 1000})
            )
    for _, _, kpi_name, shown in tampered:
        now = BY_NAME[kpi_name].function(db, every_region, "month")
        assert (now[shown] - regional[kpi_name][shown]).sum() >= 999.9, (kpi_name, shown)
    rollups.refresh_database(db, today=TODAY)
    for kpi in KPIS:
        assert_same(kpi.function(db, f, "month"), good[kpi.name], f"{kpi.name} after a refresh")


# ---------------------------------------------------------------- hand-checked numbers


def test_rollups_give_the_hand_checked_customer_base(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    fixtures.load(db)
    rollups.refresh_database(db, today=TODAY)
    calls = spy_base_statements(monkeypatch)
    assert all(v is not None for v in read_all(db, JAN_TO_APR, "month").values())
    frame = customer_base(db, JAN_TO_APR, "month")
    # tests/kpis/test_churn.py test_monthly_churn: 4, 3, 2, 1 at start; 2, 1, 1, 0 churned
    assert list(frame["customers_at_start"]) == [4, 3, 2, 1]
    assert list(frame["churned"]) == [2, 1, 1, 0]
    assert column(frame, "churn_rate") == pytest.approx([0.5, 1 / 3, 0.5, 0.0], abs=1e-12)
    # tests/kpis/test_costs.py: 170, 30 (K3, no account), 10, 0; retained 2, 2, 1, 1
    assert column(frame, "retention_costs") == pytest.approx([170.0, 30.0, 10.0, 0.0])
    assert list(frame["retained_customers"]) == [2, 2, 1, 1]
    assert column(frame, "loyalty") == pytest.approx([50.0, 0.0, 10.0, 0.0])
    # SMB (test_churn / test_costs): 1, 2, 1, 0 at start; 0, 1, 1, 0 churned; costs 20, 0, 10, 0
    smb = customer_base(db, JAN_TO_APR.replace(segments=["SMB"]), "month")
    assert list(smb["customers_at_start"]) == [1, 2, 1, 0]
    assert list(smb["churned"]) == [0, 1, 1, 0]
    assert column(smb, "retention_costs") == pytest.approx([20.0, 0.0, 10.0, 0.0])
    # test_churn test_quarters: Q1 2024 3 of 4 churned, then A1 alone; test_costs: Q1 costs 210
    quarters = customer_base(db, Filters("2024-01-01", "2025-01-01"), "quarter")
    assert list(quarters["customers_at_start"]) == [4, 1, 1, 1]
    assert list(quarters["churned"]) == [3, 0, 0, 0]
    assert column(quarters, "retention_costs") == pytest.approx([210.0, 0.0, 0.0, 0.0])
    # Revenue of fixtures.PAYMENTS: Jan Y1 110 + Y2 50 = 160 (payers A1, A2);
    # Feb Y3 20 + Y4 -25 = -5, gross 20, refunds 25, one payer (A3: A2 was only refunded)
    money = revenue(db, JAN_TO_APR, "month")
    assert column(money, "revenue") == pytest.approx([160.0, -5.0, 0.0, 0.0])
    assert column(money, "refunds") == pytest.approx([0.0, 25.0, 0.0, 0.0])
    assert list(money["paying_accounts"]) == [2, 1, 0, 0]
    assert calls.total() == 0


def test_rollups_give_the_hand_checked_survey_scores(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    fixtures.load(db)
    rollups.refresh_database(db, today=TODAY)
    calls = spy_base_statements(monkeypatch)
    assert read_all(db, JAN_TO_APR, "month")[rollups.SURVEY_SCORES.name] is not None
    frame = survey_scores(db, JAN_TO_APR, "month")
    # tests/kpis/test_feedback.py test_monthly_nps_with_intervals: Jan 5 responses, promoters
    # 10, 9; passive 7; detractors 3, 6 (R5, no account, last second of January) -> NPS 0,
    # ±78.3986; Feb R6 8 (1 Feb 00:00), R7 0 -> −50, [−100 (clipped), 19.2952]; Mar, Apr none
    assert list(frame["nps_responses"]) == [5, 2, 0, 0]
    assert list(frame["promoters"]) == [2, 0, 0, 0]
    assert list(frame["passives"]) == [1, 1, 0, 0]
    assert list(frame["detractors"]) == [2, 1, 0, 0]
    assert column(frame, "nps") == pytest.approx([0.0, -50.0, NAN, NAN], nan_ok=True)
    assert column(frame, "nps_ci_low") == pytest.approx([-78.3986, -100.0, NAN, NAN], nan_ok=True, abs=1e-4)
    assert column(frame, "nps_ci_high") == pytest.approx([78.3986, 19.2952, NAN, NAN], nan_ok=True, abs=1e-4)
    # test_ces_all_touchpoints: Jan 6, 4, 7, 2 -> 4.75, half width 3.528309, easy 2/4;
    # Feb 5 (on the easy boundary), 3 (C6, no account) -> 4, easy 1/2
    assert list(frame["ces_responses"]) == [4, 2, 0, 0]
    assert column(frame, "ces_mean") == pytest.approx([4.75, 4.0, NAN, NAN], nan_ok=True)
    assert column(frame, "ces_ci_low")[0] == pytest.approx(4.75 - 3.528309, abs=1e-5)
    assert column(frame, "ces_ci_high")[0] == pytest.approx(4.75 + 3.528309, abs=1e-5)
    assert column(frame, "share_easy") == pytest.approx([0.5, 0.5, NAN, NAN], nan_ok=True)
    assert (frame.loc[0, "share_easy_ci_low"], frame.loc[0, "share_easy_ci_high"]) == pytest.approx(
        wilson_interval(2, 4)
    )
    # test_segment_filter_drops_responses_without_account: Enterprise + SMB, Jan 10, 9, 7, 3
    # -> 100·(2 − 1)/4 = 25 (R5 has no account); Enterprise alone: R1 10, R2 9 -> 100, [100, 100]
    both = survey_scores(db, JAN_TO_APR.replace(segments=["Enterprise", "SMB"]), "month")
    assert list(both["nps_responses"]) == [4, 2, 0, 0]
    assert column(both, "nps")[:2] == pytest.approx([25.0, -50.0])
    enterprise = survey_scores(db, JAN_TO_APR.replace(segments=["Enterprise"]), "month")
    assert enterprise.loc[0, ["nps", "nps_ci_low", "nps_ci_high"]].tolist() == pytest.approx([100.0] * 3)
    # test_ces_segment_and_empty: SMB C3 7 (Jan), C5 5 (Feb); C6 has no account
    smb = survey_scores(db, JAN_TO_APR.replace(segments=["SMB"]), "month")
    assert list(smb["ces_responses"]) == [1, 1, 0, 0]
    assert column(smb, "ces_mean")[:2] == pytest.approx([7.0, 5.0])
    # test_empty_segment_nps_is_nan
    nobody = survey_scores(db, JAN_TO_APR.replace(segments=["Nobody"]), "month")
    assert list(nobody["nps_responses"]) == [0] * 4 and list(nobody["ces_responses"]) == [0] * 4
    assert nobody[["nps", "nps_ci_low", "ces_mean", "share_easy"]].isna().all(axis=None)
    # test_quarterly_nps: Q1 7 responses, promoters 2, detractors 3 -> 100·(2 − 3)/7
    quarters = survey_scores(db, Filters("2024-01-01", "2025-01-01"), "quarter")
    assert list(quarters["nps_responses"]) == [7, 0, 0, 0]
    assert quarters.loc[0, "nps"] == pytest.approx(-100 / 7)
    assert calls.total() == 0


def test_rollups_give_the_hand_checked_win_rate(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    fixtures.load(db)
    rollups.refresh_database(db, today=TODAY)
    calls = spy_base_statements(monkeypatch)
    assert read_all(db, JAN_TO_APR, "month")[rollups.WIN_RATE.name] is not None
    # tests/kpis/test_sales.py test_monthly_win_rate: by closed_at Jan D7 won; Feb D1, D3, D4
    # won, D6 lost; Mar D2 lost (1 Mar 00:00) -> 1, 0.75, 0, NaN; Wilson 3/4 [0.300642,
    # 0.954413]; open created Jan D5, Mar D8 -> all deals 0.5, 0.75, 0, NaN
    frame = win_rate(db, JAN_TO_APR, "month")
    assert list(frame["won"]) == [1, 3, 0, 0]
    assert list(frame["lost"]) == [0, 1, 1, 0]
    assert column(frame, "win_rate") == pytest.approx([1.0, 0.75, 0.0, NAN], nan_ok=True)
    assert (frame.loc[1, "ci_low"], frame.loc[1, "ci_high"]) == pytest.approx((0.300642, 0.954413), abs=1e-6)
    assert (frame.loc[0, "ci_low"], frame.loc[0, "ci_high"]) == pytest.approx(wilson_interval(1, 1))
    assert math.isnan(frame.loc[3, "ci_low"])
    assert frame["low_sample"].all()
    assert list(frame["open_created"]) == [1, 0, 1, 0]
    assert column(frame, "win_rate_all_deals") == pytest.approx([0.5, 0.75, 0.0, NAN], nan_ok=True)
    # test_win_rate_segment_excludes_deals_without_account: Enterprise Feb D1 won, D6 lost;
    # Mar D2 lost, D8 open (D7 is A5's, D4 has no account)
    enterprise = win_rate(db, JAN_TO_APR.replace(segments=["Enterprise"]), "month")
    assert list(enterprise["won"]) == [0, 1, 0, 0]
    assert list(enterprise["lost"]) == [0, 1, 1, 0]
    assert column(enterprise, "win_rate") == pytest.approx([NAN, 0.5, 0.0, NAN], nan_ok=True)
    assert column(enterprise, "win_rate_all_deals") == pytest.approx([NAN, 0.5, 0.0, NAN], nan_ok=True)
    # test_quarterly_and_yearly_win_rate: Q1 4 won of 6 closed, 4 of 8 with the open ones;
    # 2023: nothing closed (D7 was created in 2023 but is won)
    quarters = win_rate(db, Filters("2024-01-01", "2025-01-01"), "quarter")
    assert list(quarters["won"]) == [4, 0, 0, 0]
    assert quarters.loc[0, "win_rate"] == pytest.approx(4 / 6)
    assert quarters.loc[0, "win_rate_all_deals"] == pytest.approx(0.5)
    years = win_rate(db, Filters("2023-01-01", "2025-01-01"), "year")
    assert list(years["won"]) == [0, 4]
    assert math.isnan(years.loc[0, "win_rate"])
    assert calls.total() == 0


def test_rollups_give_the_hand_checked_first_contact_resolution(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixtures.load(db)
    rollups.refresh_database(db, today=TODAY)
    calls = spy_base_statements(monkeypatch)
    assert read_all(db, JAN_TO_APR, "month")[rollups.FIRST_CONTACT_RESOLUTION.name] is not None
    # tests/kpis/test_service.py test_monthly_fcr: Jan T1 (1), T2 (2) -> 1/2; Feb T3 (1,
    # 1 Feb 00:00), T4 (count not recorded, no account) -> 1/2; Mar T6 -> 1/1; Apr none; T5
    # is open. Wilson 1/2: [0.094531, 0.905469]
    frame = first_contact_resolution(db, JAN_TO_APR, "month")
    assert list(frame["resolved"]) == [2, 2, 1, 0]
    assert list(frame["recorded"]) == [2, 1, 1, 0]
    assert list(frame["first_contact"]) == [1, 1, 1, 0]
    assert column(frame, "fcr_rate") == pytest.approx([0.5, 0.5, 1.0, NAN], nan_ok=True)
    assert column(frame, "ci_low")[0] == pytest.approx(0.094531, abs=1e-6)
    assert column(frame, "ci_high")[0] == pytest.approx(0.905469, abs=1e-6)
    assert frame["low_sample"].all()
    # test_fcr_segment_excludes_tickets_without_account: SMB only T3 (Feb) -> 1/1
    smb = first_contact_resolution(db, JAN_TO_APR.replace(segments=["SMB"]), "month")
    assert list(smb["resolved"]) == [0, 1, 0, 0]
    assert column(smb, "fcr_rate") == pytest.approx([NAN, 1.0, NAN, NAN], nan_ok=True)
    nobody = first_contact_resolution(db, JAN_TO_APR.replace(segments=["Nobody"]), "month")
    assert nobody["fcr_rate"].isna().all()
    # test_fcr_quarter_and_product: Q1 5 resolved, 3 at the first contact -> 0.6
    quarters = first_contact_resolution(db, Filters("2024-01-01", "2025-01-01"), "quarter")
    assert list(quarters["resolved"]) == [5, 0, 0, 0]
    assert quarters.loc[0, "fcr_rate"] == pytest.approx(0.6)
    assert calls.total() == 0


def test_rollups_give_the_hand_checked_revenue(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    more_fixtures.load(
        db, more_fixtures.BASE, {"payments": REVENUE_PAYMENTS, "subscriptions": REVENUE_SUBSCRIPTIONS}
    )
    rollups.refresh_database(db, today=TODAY)
    calls = spy_base_statements(monkeypatch)
    q1 = Filters("2024-01-01", "2024-04-01")
    # tests/kpis/test_revenue.py test_revenue_by_month_nets_refunds_and_keeps_empty_months
    out = revenue(db, q1, "month")
    assert out["revenue"].tolist() == pytest.approx([320.0, 0.0, 0.0])
    assert out["gross_revenue"].tolist() == pytest.approx([350.0, 80.0, 0.0])
    assert out["refunds"].tolist() == pytest.approx([30.0, 80.0, 0.0])
    assert out["paying_accounts"].tolist() == [2, 1, 0]
    # test_revenue_by_quarter_and_year
    quarters = revenue(db, Filters("2024-01-01", "2025-01-01"), "quarter")
    assert quarters["revenue"].tolist() == pytest.approx([320.0, 500.0, 0.0, 0.0])
    assert quarters["paying_accounts"].tolist() == [3, 1, 0, 0]
    years = revenue(db, Filters("2023-01-01", "2025-01-01"), "year")
    assert years["revenue"].tolist() == pytest.approx([999.0, 820.0])
    assert years["refunds"].tolist() == pytest.approx([0.0, 110.0])
    # test_revenue_segment_filter_and_empty_segment
    smb = revenue(db, q1.replace(segments=["SMB"]), "month")
    assert smb["revenue"].tolist() == pytest.approx([150.0, 0.0, 0.0])
    assert smb["paying_accounts"].tolist() == [1, 1, 0]
    # test_revenue_retention_by_month
    mrr = revenue_retention(db, q1, "month")
    assert mrr["mrr_at_start"].tolist() == pytest.approx([390.0, 250.0, 220.0])
    assert mrr["expansion"].tolist() == pytest.approx([0.0, 30.0, 0.0])
    assert mrr["contraction"].tolist() == pytest.approx([0.0, 0.0, 40.0])
    assert mrr["churned_mrr"].tolist() == pytest.approx([200.0, 60.0, 0.0])
    # test_revenue_retention_intervals_by_month: the sums of squares and products come from the roll-up
    assert mrr["nrr_ci_low"].tolist() == pytest.approx([0.0, 0.245547, 0.559013], abs=1e-6)
    assert mrr["nrr_ci_high"].tolist() == pytest.approx([1.248655, 1.514453, 1.077351], abs=1e-6)
    assert mrr["grr_ci_low"].tolist() == pytest.approx([0.0, 0.204062, 0.559013], abs=1e-6)
    assert calls.total() == 0


def test_rollups_give_the_hand_checked_retention_intervals_and_low_sample(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    more_fixtures.load(db, more_fixtures.BASE, SPREAD)
    rollups.refresh_database(db, today=TODAY)
    calls = spy_base_statements(monkeypatch)
    # tests/kpis/test_revenue.py assert_spread_retention (35, 30, 29 accounts at the start)
    assert_spread_retention(revenue_retention(db, SPREAD_Q1, "month"))
    # tests/kpis/test_costs.py test_low_sample_boundary_at_30_retained_customers
    cost = retention_cost(db, SPREAD_Q1, "month")
    assert list(cost["retained_customers"]) == [30, 29, 29]
    assert cost["low_sample"].tolist() == [False, True, True]
    assert calls.total() == 0


def test_a_rollup_built_without_todays_measures_is_read_again_after_a_refresh(
    built: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database whose customer-base roll-up was built before the MRR sums of squares and
    products existed: the KPIs read the base tables (same numbers), the other roll-ups are
    still read, and the next refresh — even one for other tables — rebuilds it."""
    rollup = rollups.CUSTOMER_BASE
    added = ["mrr_at_start_squares", "net_mrr_squares", "net_mrr_products", "gross_mrr_squares",
             "gross_mrr_products"]  # fmt: skip
    kept = [c for c in rollup.table.c if c.name not in added]
    old = sa.Table(rollup.name, sa.MetaData(), *(sa.Column(c.name, c.type) for c in kept))
    with built.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(*kept))]
        rollup.table.drop(conn)
        old.create(conn)
        conn.execute(old.insert(), rows)
    calls = spy_base_statements(monkeypatch)
    found = read_all(built, JAN_TO_APR, "month")
    assert found[rollup.name] is None
    assert all(v is not None for name, v in found.items() if name != rollup.name)
    # test_churn test_monthly_churn / test_costs, from the base tables
    frame = customer_base(built, JAN_TO_APR, "month")
    assert list(frame["customers_at_start"]) == [4, 3, 2, 1]
    assert list(frame["churned"]) == [2, 1, 1, 0]
    assert column(frame, "retention_costs") == pytest.approx([170.0, 30.0, 10.0, 0.0])
    assert calls["_base_statement"] == 1
    rollups.refresh_database(built, today=dt.date(2024, 6, 30), changed={"tickets"})
    with built.connect() as conn:
        assert set(conn.execute(sa.select(rollup.table).limit(0)).keys()) >= set(added)
    calls.clear()
    assert None not in read_all(built, JAN_TO_APR, "month").values()
    assert_same(customer_base(built, JAN_TO_APR, "month"), frame, "customer_base after the rebuild")
    assert calls.total() == 0


# ---------------------------------------------------------------- records without an account


def test_records_without_a_known_account_count_only_unfiltered(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixtures.load(db)
    allow_orphans(db)
    fixtures.load_rows(db, ORPHANS)
    rollups.refresh_database(db, today=TODAY)

    def no_dimensions(rollup: rollups.Rollup, period: int, *measures: str) -> tuple:
        """``measures`` of ``rollup``'s all-NULL dimension group in month ``period``."""
        table = rollup.table
        with db.connect() as conn:
            row = conn.execute(
                sa.select(*(table.c[m] for m in measures)).where(
                    table.c.grain == "month",
                    table.c.period == period,
                    *(table.c[d].is_(None) for d in rollups.DIMENSIONS),
                )
            ).one()
        return tuple(row)

    # exercised: the all-NULL dimension group holds K3 (account_id NULL, 30 on 1 Feb),
    # GHOST's payment, A5 (no dimensions at all, churned in January; D7 won in January),
    # R5 (no account, NPS 6 in January), C6 (no account, CES 3 in February), D4 (no account,
    # won in February), T4 (no account, resolved in February, contacts unknown) and GHOST's
    # March records
    assert no_dimensions(rollups.RETENTION_COSTS, 202402, "retention_costs") == (pytest.approx(30.0),)
    assert no_dimensions(rollups.REVENUE, 202403, "revenue", "paying_accounts") == (pytest.approx(40.0), 1)
    scores = rollups.SURVEY_SCORES
    assert no_dimensions(scores, 202401, *scores.measures) == (1, 0, 1, 0, 0, None, None)
    assert no_dimensions(scores, 202402, *scores.measures) == (0, 0, 0, 1, 0, 3.0, 9.0)
    assert no_dimensions(scores, 202403, *scores.measures) == (1, 1, 0, 1, 1, 5.0, 25.0)
    assert no_dimensions(rollups.WIN_RATE, 202401, *rollups.WIN_RATE.measures) == (1, 0, 0)
    assert no_dimensions(rollups.WIN_RATE, 202402, *rollups.WIN_RATE.measures) == (1, 0, 0)
    assert no_dimensions(rollups.WIN_RATE, 202403, *rollups.WIN_RATE.measures) == (1, 0, 0)
    fcr = rollups.FIRST_CONTACT_RESOLUTION
    assert no_dimensions(fcr, 202402, *fcr.measures) == (1, 0, 0)  # resolved, first contact, recorded
    assert no_dimensions(fcr, 202403, *fcr.measures) == (1, 1, 1)
    calls = spy_base_statements(monkeypatch)
    everyone = JAN_TO_APR
    with_segment = JAN_TO_APR.replace(segments=["Enterprise", "SMB"])  # every account that has one
    for f in (everyone, with_segment):
        assert all(v is not None for v in read_all(db, f, "month").values())
        every_kpi_both_paths(db, monkeypatch, f, "month")
    assert calls == {kpi.statement: 2 for kpi in KPIS}  # the "off" runs only
    # Unfiltered: GHOST (active 1 Jan and 1 Feb, gone by 1 Mar) on top of test_churn's
    # 4, 3, 2, 1 and 2, 1, 1, 0; its 40 in March; its 7.0 cost in March (+ K6 10)
    base = customer_base(db, everyone, "month")
    assert list(base["customers_at_start"]) == [5, 4, 2, 1]
    assert list(base["churned"]) == [2, 2, 1, 0]
    assert column(base, "retention_costs") == pytest.approx([170.0, 30.0, 17.0, 0.0])
    money = revenue(db, everyone, "month")
    assert column(money, "revenue") == pytest.approx([160.0, -5.0, 40.0, 0.0])
    assert list(money["paying_accounts"]) == [2, 1, 1, 0]
    # Survey scores (test_feedback's 5, 2 NPS and 4, 2 CES responses): GHOST's NPS 9 and
    # CES 5 in March -> NPS 100, CES mean 5, easy 1/1
    scores = survey_scores(db, everyone, "month")
    assert list(scores["nps_responses"]) == [5, 2, 1, 0]
    assert list(scores["promoters"]) == [2, 0, 1, 0]
    assert list(scores["ces_responses"]) == [4, 2, 1, 0]
    assert column(scores, "ces_mean") == pytest.approx([4.75, 4.0, 5.0, NAN], nan_ok=True)
    assert column(scores, "share_easy") == pytest.approx([0.5, 0.5, 1.0, NAN], nan_ok=True)
    # Win rate (test_sales: won 1, 3, 0, 0; lost 0, 1, 1, 0; open created 1, 0, 1, 0): GHOST
    # won DG1 in March and opened DG2 in April
    deals = win_rate(db, everyone, "month")
    assert list(deals["won"]) == [1, 3, 1, 0]
    assert list(deals["lost"]) == [0, 1, 1, 0]
    assert list(deals["open_created"]) == [1, 0, 1, 1]
    # FCR (test_service: resolved 2, 2, 1, 0; first contact 1, 1, 1, 0): GHOST's TG1 (1
    # contact) in March, TG2 (2 contacts) in April
    tickets = first_contact_resolution(db, everyone, "month")
    assert list(tickets["resolved"]) == [2, 2, 2, 1]
    assert list(tickets["first_contact"]) == [1, 1, 2, 0]
    # Enterprise + SMB: A5, GHOST and K3 drop out. At start Jan A1 A2 A3, Feb A1 A3 A4,
    # Mar A1 A3, Apr A1; churned A2, A4, A3, none; costs Jan K1 K2 K4 = 170, Mar K6 = 10
    base = customer_base(db, with_segment, "month")
    assert list(base["customers_at_start"]) == [3, 3, 2, 1]
    assert list(base["churned"]) == [1, 1, 1, 0]
    assert column(base, "retention_costs") == pytest.approx([170.0, 0.0, 10.0, 0.0])
    money = revenue(db, with_segment, "month")
    assert column(money, "revenue") == pytest.approx([160.0, -5.0, 0.0, 0.0])
    assert list(money["paying_accounts"]) == [2, 1, 0, 0]
    # and R5, C6 (no account) and GHOST's responses: NPS Jan 4, Feb 2 (test_feedback);
    # CES Jan C1 C2 C3 C4, Feb C5 only
    scores = survey_scores(db, with_segment, "month")
    assert list(scores["nps_responses"]) == [4, 2, 0, 0]
    assert list(scores["ces_responses"]) == [4, 1, 0, 0]
    # D7 (A5's), D4 (no account), DG1, DG2: won Feb D1 D3; lost Feb D6, Mar D2; open D5, D8
    deals = win_rate(db, with_segment, "month")
    assert list(deals["won"]) == [0, 2, 0, 0]
    assert list(deals["lost"]) == [0, 1, 1, 0]
    assert list(deals["open_created"]) == [1, 0, 1, 0]
    # T4 (no account), TG1, TG2: Jan T1 T2, Feb T3, Mar T6
    tickets = first_contact_resolution(db, with_segment, "month")
    assert list(tickets["resolved"]) == [2, 1, 1, 0]
    assert list(tickets["first_contact"]) == [1, 1, 1, 0]


# ---------------------------------------------------------------- falling back to the base tables


def assert_falls_back(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch, f: Filters, freq: str
) -> dict[str, pd.DataFrame]:
    """No roll-up answers ``f`` by ``freq``; every KPI of ``KPIS`` reads the base tables and
    agrees with ``CRM_ROLLUPS=off``. Returns KPI name -> frame."""
    assert read_all(db, f, freq) == {r.name: None for r in ROLLED}, (f, freq)
    with monkeypatch.context() as patched:
        calls = spy_base_statements(patched)
        found = every_kpi_both_paths(db, patched, f, freq)
        assert calls == {kpi.statement: 2 for kpi in KPIS}, (f, freq)  # on and off alike
    return found


@pytest.fixture
def built(db: sa.Engine) -> sa.Engine:
    """The hand-written fixture with roll-ups covering June 2023 (S1) to December 2024."""
    fixtures.load(db)
    rollups.refresh_database(db, today=dt.date(2024, 6, 30))
    assert {row[1:3] for row in state_rows(db)} == {(202306, 202412)}
    assert len(state_rows(db)) == len(ROLLED)
    return db


def test_owners_and_products_are_not_rolled_up(built: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # test_churn test_owner_filter_goes_through_the_account: u2 -> 1, 1, 0, 0 at start
    found = assert_falls_back(built, monkeypatch, JAN_TO_APR.replace(owners=["u2"]), "month")
    assert list(found["customer_base"]["customers_at_start"]) == [1, 1, 0, 0]
    # test_sales test_win_rate_owner_and_product: u2 D7 won (Jan), D4 won (Feb), D2 lost (Mar)
    assert list(found["win_rate"]["won"]) == [1, 1, 0, 0]
    assert list(found["win_rate"]["lost"]) == [0, 0, 1, 0]
    # surveys have no owner: through the account's (u2: A2, A4) -> NPS Jan R2 9, R4 3; Feb R7 0;
    # CES Jan C2 4; Feb C5 5
    assert list(found["survey_scores"]["nps_responses"]) == [2, 1, 0, 0]
    assert list(found["survey_scores"]["ces_responses"]) == [1, 1, 0, 0]
    # test_churn test_product_filter_counts_only_those_subscriptions: P2 -> 2, 2, 1, 0 and 0, 1, 1, 0
    found = assert_falls_back(built, monkeypatch, JAN_TO_APR.replace(products=["P2"]), "month")
    assert list(found["customer_base"]["customers_at_start"]) == [2, 2, 1, 0]
    assert list(found["customer_base"]["churned"]) == [0, 1, 1, 0]
    # test_sales: P2 D3 won, D6 lost (Feb) -> 1/2
    assert column(found["win_rate"], "win_rate") == pytest.approx([NAN, 0.5, NAN, NAN], nan_ok=True)
    # test_service: P2 tickets resolved T3 (Feb, 1 contact), T6 (Mar, 1); T5 is open
    assert list(found["first_contact_resolution"]["resolved"]) == [0, 1, 1, 0]
    assert list(found["first_contact_resolution"]["first_contact"]) == [0, 1, 1, 0]
    # test_service test_fcr_quarter_and_product: P1 over 2024 -> T1, T2, T4 resolved, T1 first
    found = assert_falls_back(
        built, monkeypatch, Filters("2024-01-01", "2025-01-01", products=["P1"]), "year"
    )
    fcr = found["first_contact_resolution"]
    assert (fcr.loc[0, "resolved"], fcr.loc[0, "first_contact"]) == (3, 1)
    # with an account-level list as well
    assert_falls_back(built, monkeypatch, JAN_TO_APR.replace(segments=["SMB"], owners=["u1"]), "month")


def assert_cut_period_from_the_base_tables(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch, f: Filters, freq: str
) -> dict[str, pd.DataFrame]:
    """``end`` cuts the last period of ``f`` short: the roll-ups answer the complete
    periods (a roll-up of records counted before ``end`` leaves the cut period out,
    unless no record is dated on or after ``end``: tests/kpis/test_rollup_cut.py), the
    base statements only that part (``rollups.remainder``: ``[its start, end)``) — or, for
    a cut quarter or year whose measures add up over months, only the days of the month
    ``end`` falls in (none when ``end`` starts a month), its complete months coming from
    the month roll-up; every KPI agrees with ``CRM_ROLLUPS=off``. Returns KPI name -> frame."""
    periods = period_starts(f.start, f.end, freq)
    part = rollups.remainder(f, freq, periods)
    assert part == f.replace(start=periods[-1].date()), (f, freq)
    for rollup, rows in read_all(db, f, freq).items():
        assert rows is not None, (rollup, f, freq)
        if BY_ROLLUP[rollup].cut_by_end:
            assert periods[-1] not in rows, (rollup, f, freq)
    given: list[tuple[str, Filters]] = []
    with monkeypatch.context() as patched:
        for kpi in KPIS:
            original = getattr(kpi.module, kpi.statement)

            def spy(
                dialect: sa.Dialect,
                g: Filters,
                *rest: object,
                _o: Callable = original,
                _n: str = kpi.statement,
            ):
                given.append((_n, g))
                return _o(dialect, g, *rest)

            patched.setattr(kpi.module, kpi.statement, spy)
        for kpi in KPIS:
            kpi.function(db, f, freq)  # roll-ups on
    # customer_base reads its cut costs through _cost_statement, the others their own statement
    cut_month = f.end.replace(day=1)
    with db.connect() as conn:  # no record on or after end: the roll-up's row is the cut period's
        whole = {r for r in ROLLED if rollups._nothing_after(conn, r, f, freq, periods)}
    expected = []
    for kpi in KPIS:
        if kpi.name == "customer_base" or kpi.reads[0] in whole:
            continue
        if freq == "month" or not kpi.reads[0].months_add_up:
            expected.append((kpi.statement, part))
        elif cut_month < f.end:
            expected.append((kpi.statement, part.replace(start=cut_month)))
    assert sorted(given) == sorted(expected)
    return every_kpi_both_paths(db, monkeypatch, f, freq)


def test_end_inside_a_period_reads_only_that_part_from_the_base_tables(
    built: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mid-month end: February counts only payments before 5 Feb -> Y3 20 (February's
    # roll-up would say -5 with Y4's refund on 10 Feb)
    found = assert_cut_period_from_the_base_tables(
        built, monkeypatch, Filters("2024-01-01", "2024-02-05"), "month"
    )
    assert column(found["revenue"], "revenue") == pytest.approx([160.0, 20.0])
    # ... deals closed before 5 Feb: Jan D7 won, D5 opened; Feb D1 won (4 Feb) -- not D3,
    # D4, D6 (11, 29, 25 Feb), which the roll-up's February holds (3 won, 1 lost)
    deals = found["win_rate"]
    assert (list(deals["won"]), list(deals["lost"]), list(deals["open_created"])) == ([1, 1], [0, 0], [1, 0])
    # ... tickets resolved before 5 Feb: Jan T1, T2; Feb T3 (1 Feb 00:00) -- not T4 (7 Feb)
    tickets = found["first_contact_resolution"]
    assert (list(tickets["resolved"]), list(tickets["first_contact"])) == ([2, 1], [1, 1])
    # ... responses before 5 Feb: NPS Jan 5, Feb R6 (1 Feb 00:00) -- not R7 (10 Feb);
    # CES Jan 4, Feb C5 5 (2 Feb) -- not C6 (14 Feb)
    scores = found["survey_scores"]
    assert (list(scores["nps_responses"]), list(scores["ces_responses"])) == ([5, 1], [4, 1])
    assert column(scores, "ces_mean") == pytest.approx([4.75, 5.0])
    # the customer base is measured at each period's own start and end, cut or not
    # (test_churn: 4, 3 at start; 2, 1 churned)
    assert list(found["customer_base"]["customers_at_start"]) == [4, 3]
    assert list(found["customer_base"]["churned"]) == [2, 1]
    # quarter grain, end in November (a month boundary, not a quarter's)
    found = assert_cut_period_from_the_base_tables(
        built, monkeypatch, Filters("2024-01-01", "2024-11-01"), "quarter"
    )
    assert column(found["revenue"], "revenue") == pytest.approx([155.0, 0.0, 0.0, 0.0])  # 160 - 5 in Q1
    assert list(found["win_rate"]["won"]) == [4, 0, 0, 0]  # test_sales: Q1 D7, D1, D3, D4
    assert list(found["first_contact_resolution"]["resolved"]) == [5, 0, 0, 0]  # test_service: Q1
    # quarter grain cut on 5 Feb: January from the month roll-ups, 1-4 Feb from the tables
    # (revenue: the whole part, since paying accounts do not add up over months)
    found = assert_cut_period_from_the_base_tables(
        built, monkeypatch, Filters("2024-01-01", "2024-02-05"), "quarter"
    )
    assert list(found["win_rate"]["won"]) == [2]  # Jan D7, Feb D1 (4 Feb)
    assert list(found["first_contact_resolution"]["resolved"]) == [3]  # Jan T1, T2; Feb T3
    assert column(found["revenue"], "revenue") == pytest.approx([180.0])  # 160 + Y3 20
    # year grain, end on 1 July: January to June from the month roll-ups
    assert_cut_period_from_the_base_tables(built, monkeypatch, Filters("2024-01-01", "2024-07-01"), "year")
    # the same windows ending on a boundary of their freq are wholly rolled up
    for f, freq in [
        (Filters("2024-01-01", "2024-02-01"), "month"),
        (Filters("2024-01-01", "2024-10-01"), "quarter"),
        (Filters("2024-01-01", "2025-01-01"), "year"),
    ]:
        periods = period_starts(f.start, f.end, freq)
        assert rollups.remainder(f, freq, periods) is None
        assert all(v is not None for v in read_all(built, f, freq).values()), (f, freq)


def test_periods_outside_the_built_months_read_the_base_tables(
    built: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # before June 2023 (months), and a quarter / year that starts before it
    assert_falls_back(built, monkeypatch, Filters("2023-01-01", "2024-01-01"), "month")
    assert_falls_back(built, monkeypatch, Filters("2023-01-01", "2024-01-01"), "quarter")
    assert_falls_back(built, monkeypatch, Filters("2022-01-01", "2024-01-01"), "year")
    # after December 2024
    found = assert_falls_back(built, monkeypatch, Filters("2024-01-01", "2025-02-01"), "month")
    assert list(found["customer_base"]["customers_at_start"])[:4] == [4, 3, 2, 1]
    assert list(found["win_rate"]["won"])[:4] == [1, 3, 0, 0]
    assert_falls_back(built, monkeypatch, Filters("2024-01-01", "2025-04-01"), "quarter")
    assert_falls_back(built, monkeypatch, Filters("2024-01-01", "2026-01-01"), "year")
    # inside: June 2023 (the first built month) to December 2024, and the quarter of June
    for f, freq in [
        (Filters("2023-06-01", "2025-01-01"), "month"),
        (Filters("2023-04-01", "2025-01-01"), "quarter"),
        (Filters("2023-01-01", "2025-01-01"), "year"),
    ]:
        assert all(v is not None for v in read_all(built, f, freq).values()), (f, freq)


def test_records_far_in_the_future_do_not_stretch_the_rollups(
    built: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscription and a payment in 2100 (the importer refuses them; another writer may
    not): the roll-ups end with December of the year after today, not in 2100 (one such
    subscription made a 500-account import build 3.4M roll-up rows); the periods after read
    the base tables, with the same numbers."""
    before = table_counts(built)
    far = datetime(2100, 1, 1)
    fixtures.insert(
        built, "subscriptions", [dict(subscription_id="FAR", account_id="A1", mrr=10.0, started_at=far)]
    )
    fixtures.insert(built, "payments", [dict(payment_id="FAR", account_id="A1", paid_at=far, amount=5.0)])
    written = rollups.refresh_database(built, today=dt.date(2024, 6, 30))
    assert {row[1:3] for row in state_rows(built)} == {(202306, 202512)}
    # one more year of periods than before (to December 2025), not 76
    assert all(written[name] <= 2 * before[name] for name in before), (written, before)
    found = assert_falls_back(built, monkeypatch, Filters("2100-01-01", "2100-03-01"), "month")
    assert column(found["revenue"], "revenue") == [5.0, 0.0]
    assert list(found["customer_base"]["new_customers"]) == [0, 0]  # A1 is a customer before
    # with only far-future records there is nothing to roll up: no roll-up is built
    with built.begin() as conn:
        for table in ("deal_stage_history", *(t.name for t in rollups.SOURCES if t is not schema.accounts)):
            conn.execute(
                schema.metadata.tables[table]
                .delete()
                .where(
                    sa.or_(
                        *(
                            c < far
                            for c in schema.metadata.tables[table].c
                            if isinstance(c.type, sa.DateTime | sa.Date)
                        )
                    )
                )
            )
    with built.connect() as conn:
        assert rollups.data_months(conn, dt.date(2024, 6, 30)) is None


def test_never_built_reads_the_base_tables(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    fixtures.load(db)
    with db.connect() as conn:
        assert not sa.inspect(conn).has_table(rollups.state.name)
    found = assert_falls_back(db, monkeypatch, JAN_TO_APR, "month")
    assert list(found["customer_base"]["churned"]) == [2, 1, 1, 0]
    assert column(found["revenue"], "revenue") == pytest.approx([160.0, -5.0, 0.0, 0.0])
    assert list(found["survey_scores"]["nps_responses"]) == [5, 2, 0, 0]
    assert list(found["win_rate"]["won"]) == [1, 3, 0, 0]
    assert list(found["first_contact_resolution"]["resolved"]) == [2, 2, 1, 0]


def test_crm_rollups_off_reads_the_base_tables(built: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("off", "OFF", "0", "false", " no "):
        with monkeypatch.context() as patched:
            patched.setenv("CRM_ROLLUPS", value)
            assert not rollups.enabled(), value
            calls = spy_base_statements(patched)
            assert read_all(built, JAN_TO_APR, "month") == {r.name: None for r in ROLLED}, value
            assert list(customer_base(built, JAN_TO_APR, "month")["churned"]) == [2, 1, 1, 0]
            money = revenue(built, JAN_TO_APR, "month")
            assert column(money, "revenue") == pytest.approx([160.0, -5.0, 0.0, 0.0])
            assert list(survey_scores(built, JAN_TO_APR, "month")["nps_responses"]) == [5, 2, 0, 0]
            assert list(win_rate(built, JAN_TO_APR, "month")["won"]) == [1, 3, 0, 0]
            assert list(first_contact_resolution(built, JAN_TO_APR, "month")["resolved"]) == [2, 2, 1, 0]
            # tests/kpis/fixtures.py DEALS by created_at: Jan D1, D2, D5; Feb D3, D4, D6; Mar D8
            assert list(lead_conversion(built, JAN_TO_APR, "month")["created"]) == [3, 3, 1, 0]
            assert calls == {kpi.statement: 1 for kpi in KPIS}, value
    for value in ("on", "1", "yes"):
        monkeypatch.setenv("CRM_ROLLUPS", value)
        assert rollups.enabled(), value
        assert None not in read_all(built, JAN_TO_APR, "month").values(), value


def test_invalidated_rollups_read_the_base_tables(built: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with built.begin() as conn:
        rollups.invalidate(conn)
        # a writer changes the data after invalidating: +100 on 15 Mar, a deal won and a
        # ticket resolved at the first contact on 16 Mar
        conn.execute(
            sa.insert(schema.payments).values(
                payment_id="Y9", account_id="A1", paid_at=datetime(2024, 3, 15), amount=100.0
            )
        )
        conn.execute(
            sa.insert(schema.deals).values(
                deal("D9", "A1", "won", datetime(2024, 3, 1), datetime(2024, 3, 16))
            )
        )
        conn.execute(
            sa.insert(schema.tickets).values(
                ticket("T9", "A1", datetime(2024, 3, 15), datetime(2024, 3, 16), 1)
            )
        )
    assert state_rows(built) == []
    found = assert_falls_back(built, monkeypatch, JAN_TO_APR, "month")
    assert column(found["revenue"], "revenue") == pytest.approx([160.0, -5.0, 100.0, 0.0])
    assert list(found["win_rate"]["won"]) == [1, 3, 1, 0]
    assert list(found["first_contact_resolution"]["resolved"]) == [2, 2, 2, 0]
    rollups.refresh_database(built, today=dt.date(2024, 6, 30))
    assert None not in read_all(built, JAN_TO_APR, "month").values()
    assert column(revenue(built, JAN_TO_APR, "month"), "revenue") == pytest.approx([160.0, -5.0, 100.0, 0.0])
    assert list(win_rate(built, JAN_TO_APR, "month")["won"]) == [1, 3, 1, 0]
    assert list(first_contact_resolution(built, JAN_TO_APR, "month")["first_contact"]) == [1, 1, 2, 0]


def test_invalidate_without_rollups_does_nothing(db: sa.Engine) -> None:
    with db.begin() as conn:
        rollups.invalidate(conn)
        assert not sa.inspect(conn).has_table(rollups.state.name)


# ---------------------------------------------------------------- refresh


def test_refresh_of_an_empty_database_and_twice_in_a_row(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert refreshed(db) == {r.name: 0 for r in ROLLED}
    assert state_rows(db) == []
    assert table_counts(db) == {r.name: 0 for r in ROLLED}
    assert refreshed(db) == {r.name: 0 for r in ROLLED}  # again
    found = assert_falls_back(db, monkeypatch, JAN_TO_APR, "month")
    assert list(found["customer_base"]["customers_at_start"]) == [0, 0, 0, 0]
    assert found["customer_base"]["churn_rate"].isna().all()
    assert column(found["revenue"], "revenue") == [0.0] * 4
    assert found["survey_scores"]["nps"].isna().all()
    assert found["win_rate"]["win_rate"].isna().all()
    assert found["first_contact_resolution"]["fcr_rate"].isna().all()

    load_everything(db)
    first = refreshed(db)
    counts = table_counts(db)
    assert counts == first and all(counts.values())
    assert [(row[0], row[3]) for row in state_rows(db)] == sorted(first.items())
    assert refreshed(db) == first
    assert table_counts(db) == counts
    assert len(state_rows(db)) == len(ROLLED)

    # the data go away (all but the accounts): the roll-ups are emptied and their state removed
    with db.begin() as conn:
        conn.execute(schema.deal_stage_history.delete())  # it references deals
        for table in rollups.SOURCES:
            if table is not schema.accounts:
                conn.execute(table.delete())
    assert refreshed(db) == {r.name: 0 for r in ROLLED}
    assert state_rows(db) == [] and table_counts(db) == {r.name: 0 for r in ROLLED}
    assert read_all(db, JAN_TO_APR, "month") == {r.name: None for r in ROLLED}


#: One record alone in the CRM (besides account A) and the months the roll-ups then cover:
#: each date a roll-up counts a record by, and only those (a ticket's opened_at does not).
ALONE: dict[str, tuple[str, dict, tuple[int, int]]] = {
    "survey response": (
        "survey_responses",
        response("R", "A", "nps", 9.0, datetime(2022, 3, 15)),
        (202203, 202512),
    ),
    "open deal": ("deals", deal("D", "A", "open", datetime(2022, 3, 15)), (202203, 202512)),
    "deal closed after this year": (
        "deals",
        deal("D", "A", "won", datetime(2025, 11, 3), datetime(2026, 2, 10)),
        (202511, 202602),
    ),
    "lost deal without closed_at": ("deals", deal("D", "A", "lost", datetime(2022, 3, 15)), (202203, 202512)),
    "resolved ticket": (
        "tickets",
        ticket("T", "A", datetime(2021, 12, 30), datetime(2022, 3, 15), 1),
        (202203, 202512),
    ),
}


@pytest.mark.parametrize("case", ALONE)
def test_the_coverage_starts_and_ends_with_any_dated_record(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    table, record, months = ALONE[case]
    fixtures.insert(
        db, "accounts", [dict(account_id="A", name="A", segment="SMB", created_at=datetime(2020, 1, 1))]
    )
    fixtures.insert(db, table, [record])
    written = rollups.refresh_database(db, today=TODAY)
    assert {row[1:3] for row in state_rows(db)} == {months}
    assert len(state_rows(db)) == len(ROLLED)
    # the roll-ups answer the first and the last month covered, with the base tables' numbers
    first, last = (pd.Timestamp(m // 100, m % 100, 1) for m in months)
    f = Filters(first.date(), (last + pd.DateOffset(months=1)).date())
    assert None not in read_all(db, f, "month").values()
    found = every_kpi_both_paths(db, monkeypatch, f, "month")
    counted = {
        "survey response": (rollups.SURVEY_SCORES, found["survey_scores"]["nps_responses"].tolist()),
        "open deal": (rollups.WIN_RATE, found["win_rate"]["open_created"].tolist()),
        "deal closed after this year": (rollups.WIN_RATE, found["win_rate"]["won"].tolist()),
        "lost deal without closed_at": (rollups.WIN_RATE, found["win_rate"]["lost"].tolist()),
        "resolved ticket": (
            rollups.FIRST_CONTACT_RESOLUTION,
            found["first_contact_resolution"]["resolved"].tolist(),
        ),
    }[case]
    rollup, values = counted
    if case == "lost deal without closed_at":  # dated by nothing: counted nowhere
        assert sum(values) == 0 and written[rollup.name] == 0
    elif case == "deal closed after this year":  # created in November, counted when won in February
        assert values[-1] == 1 and sum(values) == 1
    else:
        assert values[0] == 1 and sum(values) == 1
        assert written[rollup.name] == 6  # one row per grain, and its total


# ---------------------------------------------------------------- period_key


PERIOD_KEYS = [
    # instant, (month, quarter, year)
    (datetime(2026, 4, 17, 10), (202604, 202604, 202601)),
    (datetime(2026, 12, 31, 23, 59, 59), (202612, 202610, 202601)),
    (datetime(2026, 1, 1), (202601, 202601, 202601)),
    (datetime(2026, 6, 30, 23, 59, 59, 500000), (202606, 202604, 202601)),
    (datetime(2026, 7, 1), (202607, 202607, 202601)),
    (datetime(1999, 11, 5, 1, 2, 3), (199911, 199910, 199901)),
]


def test_period_key_on_timestamps_and_days(db: sa.Engine) -> None:
    with db.begin() as conn:
        conn.execute(
            sa.insert(schema.accounts).values(account_id="A", name="A", created_at=datetime(2020, 1, 1))
        )
        conn.execute(
            sa.insert(schema.payments),
            [
                dict(payment_id=str(i), account_id="A", paid_at=at, amount=1.0)
                for i, (at, _) in enumerate(PERIOD_KEYS)
            ],
        )
        conn.execute(
            sa.insert(schema.costs),
            [
                dict(cost_id=str(i), incurred_on=at.date(), category="loyalty", amount=1.0)
                for i, (at, _) in enumerate(PERIOD_KEYS)
            ],
        )
        for table, column_name in ((schema.payments, "paid_at"), (schema.costs, "incurred_on")):
            keys = [
                period_key(conn.dialect, table.c[column_name], freq).label(freq)
                for freq in ("month", "quarter", "year")
            ]
            id_column = table.c.payment_id if table is schema.payments else table.c.cost_id
            found = {row[0]: tuple(row[1:]) for row in conn.execute(sa.select(id_column, *keys))}
            assert found == {str(i): expected for i, (_, expected) in enumerate(PERIOD_KEYS)}, column_name
            assert all(isinstance(v, int) for values in found.values() for v in values)
