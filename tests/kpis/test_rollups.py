"""kpis.rollups: the roll-ups give the numbers of the base tables, are really read when they
apply, and are left alone (base tables) when they do not; each test runs on DuckDB, SQLite
and PostgreSQL through the ``db`` fixture.

The equality tests compare ``customer_base`` and ``revenue`` with roll-ups on and with
``CRM_ROLLUPS=off`` (the direct path) and spy on the base statement builders
(``kpis.customer_base._base_statement``, ``kpis.revenue._revenue_statement``) to prove
which path ran. The hand-checked numbers come from tests/kpis/test_churn.py,
test_costs.py and test_revenue.py (their comments hold the arithmetic).
"""

from __future__ import annotations

import datetime as dt
import importlib
import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import period_key
from kpis import Filters, customer_base, revenue, revenue_retention, rollups
from kpis.core import period_starts
from tests.kpis import fixtures, more_fixtures
from tests.kpis.fixtures import column
from tests.kpis.test_revenue import PAYMENTS as REVENUE_PAYMENTS
from tests.kpis.test_revenue import SUBSCRIPTIONS as REVENUE_SUBSCRIPTIONS

#: The modules (not the functions of the same name that ``kpis`` exports).
CUSTOMER_BASE_MODULE = importlib.import_module("kpis.customer_base")
REVENUE_MODULE = importlib.import_module("kpis.revenue")

#: ``today`` of every refresh here: after the data, so the roll-ups cover up to December 2025.
TODAY = dt.date(2025, 12, 31)
JAN_TO_APR = Filters("2024-01-01", "2024-05-01")
ROLLED = (rollups.CUSTOMER_BASE, rollups.RETENTION_COSTS, rollups.REVENUE)

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
    """Count the calls of the base-table statement builders (still running them)."""
    calls: Counter[str] = Counter()
    for module, name in ((CUSTOMER_BASE_MODULE, "_base_statement"), (REVENUE_MODULE, "_revenue_statement")):
        original = getattr(module, name)

        def spy(*args: object, _original: Callable = original, _name: str = name) -> sa.Select:
            calls[_name] += 1
            return _original(*args)

        monkeypatch.setattr(module, name, spy)
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


def read_all(engine: sa.Engine, f: Filters, freq: str) -> dict[str, dict | None]:
    """``rollups.read`` of each roll-up for the periods of ``f``."""
    periods = period_starts(f.start, f.end, freq)
    with engine.connect() as conn:
        return {r.name: rollups.read(conn, r, f, freq, periods) for r in ROLLED}


def state_rows(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(rollups.state.name):
            return []
        return [tuple(r) for r in conn.execute(sa.select(rollups.state).order_by(rollups.state.c.rollup))]


def table_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            r.name: conn.execute(sa.select(sa.func.count()).select_from(r.table)).scalar_one() for r in ROLLED
        }


def allow_orphans(engine: sa.Engine) -> None:
    """Let subscriptions, payments and costs point at accounts that do not exist: DuckDB and
    SQLite (no PRAGMA foreign_keys) already do; PostgreSQL loses those foreign keys here."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        for table in ("subscriptions", "payments", "costs"):
            for key in inspector.get_foreign_keys(table):
                conn.execute(sa.text(f'ALTER TABLE {table} DROP CONSTRAINT "{key["name"]}"'))


#: Records of account GHOST, which is not in accounts (its dimensions are all NULL):
#: active at 1 Jan and 1 Feb 2024, gone by 1 Mar; pays 40 on 5 Mar; a 7.0 retention cost
#: on 20 Mar.
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
}  # fmt: skip


def generated_rows(seed: int = 7) -> dict[str, list[dict]]:
    """``fixtures.synthetic_rows`` made richer for the roll-ups: every account dimension set
    (or NULL) on the generated accounts, and payments (refunds, zeros, odd seconds and
    instants on period boundaries), which synthetic_rows has none of. Without the users,
    products and stages the hand-written fixture already holds."""
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
    return rows


def load_everything(engine: sa.Engine) -> sa.Engine:
    """The hand-written fixture, the generated rows and the GHOST orphans."""
    fixtures.load(engine)
    fixtures.load_rows(engine, generated_rows())
    allow_orphans(engine)
    fixtures.load_rows(engine, ORPHANS)
    return engine


# ---------------------------------------------------------------- same numbers, really read


def test_rollups_equal_the_base_tables_for_every_selection_and_freq(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_everything(db)
    written = rollups.refresh_database(db, today=TODAY)
    assert all(written[r.name] > 0 for r in ROLLED), written
    with db.connect() as conn:
        # coverage: from the earliest generated subscription / payment / cost (January 2023)
        # to December of TODAY's year
        assert {
            tuple(r)
            for r in conn.execute(sa.select(rollups.state.c.first_period, rollups.state.c.last_period))
        } == {(202301, 202512)}
    calls = spy_base_statements(monkeypatch)
    checked = 0
    for freq, (start, end) in WINDOWS.items():
        for name, selection in SELECTIONS.items():
            f = Filters(start, end, **selection)
            what = f"{name} by {freq}"
            found = read_all(db, f, freq)
            assert all(v is not None for v in found.values()), f"roll-ups not read: {what}"
            assert calls.total() == 0, f"base tables read: {what}"
            rolled, direct = both_paths(monkeypatch, lambda f=f, freq=freq: customer_base(db, f, freq))
            assert_same(rolled, direct, f"customer_base {what}")
            rolled_revenue, direct_revenue = both_paths(
                monkeypatch, lambda f=f, freq=freq: revenue(db, f, freq)
            )
            assert_same(rolled_revenue, direct_revenue, f"revenue {what}")
            assert calls == {"_base_statement": 1, "_revenue_statement": 1}, what  # only with "off"
            calls.clear()
            if name == "nothing":
                assert found[rollups.REVENUE.name] == {} and found[rollups.CUSTOMER_BASE.name] == {}
                assert (direct["customers_at_start"] == 0).all() and (direct_revenue["revenue"] == 0).all()
            else:  # a selection that proves something: customers, payers and refunds in it
                assert direct["customers_at_start"].sum() > 0, what
                assert direct_revenue["paying_accounts"].sum() > 0, what
                assert (direct_revenue["refunds"] > 0).any(), what
            if name in ("unfiltered", "smb"):
                assert direct["retention_costs"].sum() > 0, what
                assert direct["churned"].sum() > 0, what
            if name == "unfiltered":  # A1's add-on S5 ends on 1 Mar 2024
                assert direct["contraction"].sum() > 0, what
            checked += 1
    assert checked == len(WINDOWS) * len(SELECTIONS)


def test_the_rollup_tables_are_what_the_kpis_read(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tamper with the roll-up rows: the KPIs follow them (so the equality above was not
    the base tables compared with themselves); a refresh repairs them."""
    load_everything(db)
    rollups.refresh_database(db, today=TODAY)
    f = Filters("2024-01-01", "2024-07-01")
    good = revenue(db, f, "month")
    good_base = customer_base(db, f, "month")
    with db.begin() as conn:
        table = rollups.REVENUE.table
        conn.execute(table.update().where(table.c.grain == "month").values(revenue=table.c.revenue + 1000.0))
        table = rollups.CUSTOMER_BASE.table
        conn.execute(table.update().where(table.c.grain == "month").values(churned=table.c.churned + 1))
    tampered = revenue(db, f, "month")
    assert (tampered["revenue"] - good["revenue"]).min() >= 1000.0
    assert (customer_base(db, f, "month")["churned"] > good_base["churned"]).all()
    rollups.refresh_database(db, today=TODAY)
    assert_same(revenue(db, f, "month"), good, "revenue after a refresh")
    assert_same(customer_base(db, f, "month"), good_base, "customer_base after a refresh")


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
    assert calls.total() == 0


# ---------------------------------------------------------------- records without an account


def test_records_without_a_known_account_count_only_unfiltered(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixtures.load(db)
    allow_orphans(db)
    fixtures.load_rows(db, ORPHANS)
    rollups.refresh_database(db, today=TODAY)
    with db.connect() as conn:
        # exercised: the all-NULL dimension group holds K3 (account_id NULL, 30 on 1 Feb),
        # GHOST's payment and A5 (no dimensions at all, churned in January)
        no_dimensions = [rollups.REVENUE.table.c[d].is_(None) for d in rollups.DIMENSIONS]
        costs = rollups.RETENTION_COSTS.table
        assert conn.execute(
            sa.select(costs.c.retention_costs).where(
                costs.c.grain == "month",
                costs.c.period == 202402,
                *(costs.c[d].is_(None) for d in rollups.DIMENSIONS),
            )
        ).scalar_one() == pytest.approx(30.0)
        pay = rollups.REVENUE.table
        ghost = conn.execute(
            sa.select(pay.c.revenue, pay.c.paying_accounts).where(
                pay.c.grain == "month", pay.c.period == 202403, *no_dimensions
            )
        ).one()
        assert tuple(ghost) == (pytest.approx(40.0), 1)
    calls = spy_base_statements(monkeypatch)
    everyone = JAN_TO_APR
    with_segment = JAN_TO_APR.replace(segments=["Enterprise", "SMB"])  # every account that has one
    for f in (everyone, with_segment):
        assert all(v is not None for v in read_all(db, f, "month").values())
        for kpi in (customer_base, revenue):
            rolled, direct = both_paths(monkeypatch, lambda f=f, kpi=kpi: kpi(db, f, "month"))
            assert_same(rolled, direct, f"{kpi.__name__} {f}")
    assert calls == {"_base_statement": 2, "_revenue_statement": 2}  # the "off" runs only
    # Unfiltered: GHOST (active 1 Jan and 1 Feb, gone by 1 Mar) on top of test_churn's
    # 4, 3, 2, 1 and 2, 1, 1, 0; its 40 in March; its 7.0 cost in March (+ K6 10)
    base = customer_base(db, everyone, "month")
    assert list(base["customers_at_start"]) == [5, 4, 2, 1]
    assert list(base["churned"]) == [2, 2, 1, 0]
    assert column(base, "retention_costs") == pytest.approx([170.0, 30.0, 17.0, 0.0])
    money = revenue(db, everyone, "month")
    assert column(money, "revenue") == pytest.approx([160.0, -5.0, 40.0, 0.0])
    assert list(money["paying_accounts"]) == [2, 1, 1, 0]
    # Enterprise + SMB: A5, GHOST and K3 drop out. At start Jan A1 A2 A3, Feb A1 A3 A4,
    # Mar A1 A3, Apr A1; churned A2, A4, A3, none; costs Jan K1 K2 K4 = 170, Mar K6 = 10
    base = customer_base(db, with_segment, "month")
    assert list(base["customers_at_start"]) == [3, 3, 2, 1]
    assert list(base["churned"]) == [1, 1, 1, 0]
    assert column(base, "retention_costs") == pytest.approx([170.0, 0.0, 10.0, 0.0])
    money = revenue(db, with_segment, "month")
    assert column(money, "revenue") == pytest.approx([160.0, -5.0, 0.0, 0.0])
    assert list(money["paying_accounts"]) == [2, 1, 0, 0]


# ---------------------------------------------------------------- falling back to the base tables


def assert_falls_back(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch, f: Filters, freq: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """No roll-up answers ``f`` by ``freq``; both KPIs read the base tables and agree with
    ``CRM_ROLLUPS=off``. Returns (customer_base, revenue)."""
    assert read_all(db, f, freq) == {r.name: None for r in ROLLED}, (f, freq)
    with monkeypatch.context() as patched:
        calls = spy_base_statements(patched)
        base, direct = both_paths(patched, lambda: customer_base(db, f, freq))
        assert_same(base, direct, f"customer_base {f} {freq}")
        money, direct = both_paths(patched, lambda: revenue(db, f, freq))
        assert_same(money, direct, f"revenue {f} {freq}")
        assert calls == {"_base_statement": 2, "_revenue_statement": 2}  # on and off alike
    return base, money


@pytest.fixture
def built(db: sa.Engine) -> sa.Engine:
    """The hand-written fixture with roll-ups covering June 2023 (S1) to December 2024."""
    fixtures.load(db)
    rollups.refresh_database(db, today=dt.date(2024, 6, 30))
    assert {row[1:3] for row in state_rows(db)} == {(202306, 202412)}
    return db


def test_owners_and_products_are_not_rolled_up(built: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # test_churn test_owner_filter_goes_through_the_account: u2 -> 1, 1, 0, 0 at start
    base, _ = assert_falls_back(built, monkeypatch, JAN_TO_APR.replace(owners=["u2"]), "month")
    assert list(base["customers_at_start"]) == [1, 1, 0, 0]
    # test_product_filter_counts_only_those_subscriptions: P2 -> 2, 2, 1, 0 and 0, 1, 1, 0
    base, _ = assert_falls_back(built, monkeypatch, JAN_TO_APR.replace(products=["P2"]), "month")
    assert list(base["customers_at_start"]) == [2, 2, 1, 0]
    assert list(base["churned"]) == [0, 1, 1, 0]
    # with an account-level list as well
    assert_falls_back(built, monkeypatch, JAN_TO_APR.replace(segments=["SMB"], owners=["u1"]), "month")


def test_end_off_a_period_boundary_reads_the_base_tables(
    built: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mid-month end: February counts only payments before 5 Feb -> Y3 20 (the roll-up
    # would say -5 with Y4's refund on 10 Feb)
    _, money = assert_falls_back(built, monkeypatch, Filters("2024-01-01", "2024-02-05"), "month")
    assert column(money, "revenue") == pytest.approx([160.0, 20.0])
    # quarter grain, end in November (a month boundary, not a quarter's)
    _, money = assert_falls_back(built, monkeypatch, Filters("2024-01-01", "2024-11-01"), "quarter")
    assert column(money, "revenue") == pytest.approx([155.0, 0.0, 0.0, 0.0])  # 160 - 5 in Q1
    # year grain, end on 1 July
    assert_falls_back(built, monkeypatch, Filters("2024-01-01", "2024-07-01"), "year")
    # the same windows ending on a boundary of their freq are rolled up
    for f, freq in [
        (Filters("2024-01-01", "2024-02-01"), "month"),
        (Filters("2024-01-01", "2024-10-01"), "quarter"),
        (Filters("2024-01-01", "2025-01-01"), "year"),
    ]:
        assert all(v is not None for v in read_all(built, f, freq).values()), (f, freq)


def test_periods_outside_the_built_months_read_the_base_tables(
    built: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # before June 2023 (months), and a quarter / year that starts before it
    assert_falls_back(built, monkeypatch, Filters("2023-01-01", "2024-01-01"), "month")
    assert_falls_back(built, monkeypatch, Filters("2023-01-01", "2024-01-01"), "quarter")
    assert_falls_back(built, monkeypatch, Filters("2022-01-01", "2024-01-01"), "year")
    # after December 2024
    base, _ = assert_falls_back(built, monkeypatch, Filters("2024-01-01", "2025-02-01"), "month")
    assert list(base["customers_at_start"])[:4] == [4, 3, 2, 1]
    assert_falls_back(built, monkeypatch, Filters("2024-01-01", "2025-04-01"), "quarter")
    assert_falls_back(built, monkeypatch, Filters("2024-01-01", "2026-01-01"), "year")
    # inside: June 2023 (the first built month) to December 2024, and the quarter of June
    for f, freq in [
        (Filters("2023-06-01", "2025-01-01"), "month"),
        (Filters("2023-04-01", "2025-01-01"), "quarter"),
        (Filters("2023-01-01", "2025-01-01"), "year"),
    ]:
        assert all(v is not None for v in read_all(built, f, freq).values()), (f, freq)


def test_never_built_reads_the_base_tables(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    fixtures.load(db)
    with db.connect() as conn:
        assert not sa.inspect(conn).has_table(rollups.state.name)
    base, money = assert_falls_back(db, monkeypatch, JAN_TO_APR, "month")
    assert list(base["churned"]) == [2, 1, 1, 0]
    assert column(money, "revenue") == pytest.approx([160.0, -5.0, 0.0, 0.0])


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
            assert calls == {"_base_statement": 1, "_revenue_statement": 1}, value
    for value in ("on", "1", "yes"):
        monkeypatch.setenv("CRM_ROLLUPS", value)
        assert rollups.enabled(), value
        assert read_all(built, JAN_TO_APR, "month")[rollups.REVENUE.name] is not None, value


def test_invalidated_rollups_read_the_base_tables(built: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with built.begin() as conn:
        rollups.invalidate(conn)
        # a writer changes the data after invalidating: +100 on 15 Mar
        conn.execute(
            sa.insert(schema.payments).values(
                payment_id="Y9", account_id="A1", paid_at=datetime(2024, 3, 15), amount=100.0
            )
        )
    assert state_rows(built) == []
    _, money = assert_falls_back(built, monkeypatch, JAN_TO_APR, "month")
    assert column(money, "revenue") == pytest.approx([160.0, -5.0, 100.0, 0.0])
    rollups.refresh_database(built, today=dt.date(2024, 6, 30))
    assert read_all(built, JAN_TO_APR, "month")[rollups.REVENUE.name] is not None
    assert column(revenue(built, JAN_TO_APR, "month"), "revenue") == pytest.approx([160.0, -5.0, 100.0, 0.0])


def test_invalidate_without_rollups_does_nothing(db: sa.Engine) -> None:
    with db.begin() as conn:
        rollups.invalidate(conn)
        assert not sa.inspect(conn).has_table(rollups.state.name)


# ---------------------------------------------------------------- refresh


def test_refresh_of_an_empty_database_and_twice_in_a_row(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert rollups.refresh_database(db, today=TODAY) == {r.name: 0 for r in ROLLED}
    assert state_rows(db) == []
    assert table_counts(db) == {r.name: 0 for r in ROLLED}
    assert rollups.refresh_database(db, today=TODAY) == {r.name: 0 for r in ROLLED}  # again
    base, money = assert_falls_back(db, monkeypatch, JAN_TO_APR, "month")
    assert list(base["customers_at_start"]) == [0, 0, 0, 0]
    assert base["churn_rate"].isna().all()
    assert column(money, "revenue") == [0.0] * 4

    load_everything(db)
    first = rollups.refresh_database(db, today=TODAY)
    counts = table_counts(db)
    assert counts == first and all(counts.values())
    assert [(row[0], row[3]) for row in state_rows(db)] == sorted(first.items())
    assert rollups.refresh_database(db, today=TODAY) == first
    assert table_counts(db) == counts
    assert len(state_rows(db)) == 3

    # the data go away: the roll-ups are emptied and their state removed
    with db.begin() as conn:
        for table in (schema.payments, schema.costs, schema.subscriptions):
            conn.execute(table.delete())
    assert rollups.refresh_database(db, today=TODAY) == {r.name: 0 for r in ROLLED}
    assert state_rows(db) == [] and table_counts(db) == {r.name: 0 for r in ROLLED}
    assert read_all(db, JAN_TO_APR, "month") == {r.name: None for r in ROLLED}


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
