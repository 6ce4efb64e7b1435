"""kpis.rollups' incremental refresh: after an import (wired, as the application does), the
roll-ups hold exactly what a full rebuild gives — compared table by table, row by row — and
only the periods the import touched were rewritten; accounts changed other than by new
accounts, or new accounts that orphan records referenced, rebuild the roll-ups whole. On
DuckDB, SQLite and PostgreSQL (the ``db`` fixture).

The base data are tests/kpis/test_rollups.py's (the hand-written fixture, generated rows
from January 2023 to June 2025, and records of the missing account GHOST); the import
adds a month, November 2025, of every kind of record.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import derived, hooks, schema
from crm_data.importing import TableInput, import_tables
from kpis import rollups
from kpis.filters import Filters
from kpis.revenue import revenue
from tests.kpis import more_fixtures
from tests.kpis.test_rollups import deal, load_everything, response, spy_base_statements, ticket

TODAY = dt.date(2025, 12, 31)


@pytest.fixture(autouse=True)
def _wired(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    rollups.listen()
    yield


def snapshot(engine: sa.Engine) -> dict[str, pd.DataFrame]:
    """Every roll-up table, rows sorted by grain, period and dimensions, and every
    per-account months table, sorted by year and account."""
    keys = ["grain", "period", *rollups.DIMENSIONS]
    found = {}
    with engine.connect() as conn:
        for rollup in rollups.ROLLUPS:
            rows = conn.execute(sa.select(rollup.table)).mappings().all()
            frame = pd.DataFrame(rows, columns=list(rollup.table.c.keys()))
            frame = frame.sort_values(keys, na_position="first", ignore_index=True)
            found[rollup.name] = frame.astype({c: "float64" for c in rollup.measures})
            if rollup.months_table is not None:
                rows = conn.execute(sa.select(rollup.months_table)).mappings().all()
                months = pd.DataFrame(rows, columns=list(rollup.months_table.c.keys()))
                found[rollup.months_table.name] = months.sort_values(
                    ["period", "account_id"], ignore_index=True
                )
    return found


def assert_same_tables(incremental: dict[str, pd.DataFrame], full: dict[str, pd.DataFrame]) -> None:
    for name, frame in full.items():
        assert len(incremental[name]) == len(frame), name
        pd.testing.assert_frame_equal(incremental[name], frame, check_exact=False, rtol=1e-12, obj=name)


def assert_equals_rebuild(engine: sa.Engine, today: dt.date) -> None:
    """The roll-ups as they stand (after an incremental refresh) equal a full rebuild's."""
    incremental = snapshot(engine)
    rollups.refresh_database(engine, today)
    assert_same_tables(incremental, snapshot(engine))


def assert_recorded_rows(engine: sa.Engine) -> None:
    """The rows the state records for each derived table (kept from the rows written, not
    counted) are its rows."""
    with engine.connect() as conn:
        recorded = dict(conn.execute(sa.select(derived.state.c.rollup, derived.state.c.rows)).all())
        for name in recorded:
            assert (
                recorded[name]
                == conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one()
            ), name


def coverage(engine: sa.Engine) -> dict[str, tuple[int, int]]:
    names = {rollup.name for rollup in rollups.ROLLUPS}  # not the stored stage visits: by deal
    with engine.connect() as conn:
        return {name: months for name, months in derived.built(conn).items() if name in names}


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def november(engine: sa.Engine) -> list[TableInput]:
    """One month of new records (November 2025): a new account NEW1 with a running
    subscription, its payments, a retention cost, NPS and CES responses, deals and tickets;
    a subscription of an existing account from November to December; and an open deal of
    March 2024 won in November (an update: March 2024 and November 2025 change)."""
    with engine.connect() as conn:
        accounts = schema.accounts
        existing = (
            conn.execute(
                sa.select(accounts.c.account_id)
                .where(accounts.c.region.is_not(None))
                .order_by(accounts.c.account_id)
            )
            .scalars()
            .first()
        )
        deals = schema.deals
        opened = (
            conn.execute(
                sa.select(deals).where(deals.c.status == "open", deals.c.account_id == existing).limit(1)
            )
            .mappings()
            .first()
        )
    new_account = dict(
        account_id="NEW1", name="New One", segment="SMB", industry="Tech", region="EU", country="DE",
        company_size="small", acquisition_channel="web", owner_id="u1", created_at=datetime(2025, 11, 2),
    )  # fmt: skip
    won = dict(opened or deal("DNEWOPEN", existing, "open", datetime(2024, 3, 9)))
    won.update(status="won", closed_at=datetime(2025, 11, 20))
    inputs = [
        TableInput("accounts", frame([new_account]), "test:accounts"),
        TableInput(
            "subscriptions",
            frame(
                [
                    dict(
                        subscription_id="SNEW1",
                        account_id="NEW1",
                        product_id="P1",
                        mrr=50.0,
                        started_at=datetime(2025, 11, 3),
                        ended_at=None,
                        end_reason=None,
                    ),
                    dict(
                        subscription_id="SNEW2",
                        account_id=existing,
                        product_id="P1",
                        mrr=20.0,
                        started_at=datetime(2025, 11, 10),
                        ended_at=datetime(2025, 12, 10),
                        end_reason="price",
                    ),
                ]
            ),
            "test:subscriptions",
        ),
        TableInput(
            "payments",
            frame(
                [
                    dict(payment_id="YNEW1", account_id="NEW1", paid_at=datetime(2025, 11, 5), amount=50.0),
                    dict(
                        payment_id="YNEW2",
                        account_id=existing,
                        paid_at=datetime(2025, 11, 30, 23, 59),
                        amount=-5.0,
                    ),
                ]
            ),
            "test:payments",
        ),
        TableInput(
            "costs",
            frame(
                [
                    dict(
                        cost_id="KNEW1",
                        incurred_on=dt.date(2025, 11, 7),
                        category="loyalty",
                        purpose="retention",
                        account_id="NEW1",
                        amount=12.0,
                    )
                ]
            ),
            "test:costs",
        ),
        TableInput(
            "survey_responses",
            frame(
                [
                    response("RNEW1", "NEW1", "nps", 10.0, datetime(2025, 11, 8)),
                    response("RNEW2", existing, "ces", 3.0, datetime(2025, 11, 9)),
                ]
            ),
            "test:survey_responses",
        ),
        TableInput(
            "deals",
            frame([deal("DNEW1", "NEW1", "open", datetime(2025, 11, 4)), won]),
            "test:deals",
        ),
        TableInput(
            "tickets",
            frame(
                [
                    ticket("TNEW1", "NEW1", datetime(2025, 11, 10), datetime(2025, 11, 12), 1),
                    ticket("TNEW2", existing, datetime(2025, 11, 11), None, None),
                ]
            ),
            "test:tickets",
        ),
    ]
    return inputs


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Records the full rebuilds (:func:`kpis.rollups.refresh`) and the periods inserted."""
    calls: dict[str, list] = defaultdict(list)
    refresh, insert = rollups.refresh, rollups._insert

    def spy_refresh(conn, today=None, changed=None, rollups=rollups.ROLLUPS):
        chosen = list(rollups)
        calls["refresh"].append(sorted(r.name for r in chosen))
        return refresh(conn, today, changed, chosen)

    def spy_insert(conn, rollup, grain, periods):
        calls[rollup.name].append((grain, [p.year * 100 + p.month for p in periods]))
        return insert(conn, rollup, grain, periods)

    monkeypatch.setattr(rollups, "refresh", spy_refresh)
    monkeypatch.setattr(rollups, "_insert", spy_insert)
    return calls


def test_an_imported_month_refreshes_only_its_periods_and_equals_a_full_rebuild(
    db: sa.Engine, spied: dict[str, list]
) -> None:
    load_everything(db)
    rollups.refresh_database(db, TODAY)
    before = coverage(db)
    spied.clear()
    report = import_tables(db, november(db), today=TODAY)
    assert report.ok, report.errors
    assert spied["refresh"] == []  # no roll-up rebuilt whole
    # tickets: only November 2025 from the records (Q4 and 2025: summed from the month rows)
    assert spied["rollup_first_contact_resolution"] == [("month", [202511])]
    # the customer base's quarters and years do not add up over months: from the records
    assert spied["rollup_customer_base"] == [
        ("month", [202511, 202512]),
        ("quarter", [202510]),
        ("year", [202501]),
    ]
    # the deal opened in March 2024 and won in November 2025: every month in between
    months = dict(spied["rollup_win_rate"])["month"]
    assert months[0] <= 202403 and months[-1] == 202511
    assert coverage(db) == before
    assert_recorded_rows(db)
    assert_equals_rebuild(db, TODAY)
    assert_recorded_rows(db)


def test_accounts_changed_in_place_rebuild_every_rollup_whole(db: sa.Engine, spied: dict[str, list]) -> None:
    load_everything(db)
    rollups.refresh_database(db, TODAY)
    with db.connect() as conn:
        row = dict(
            conn.execute(sa.select(schema.accounts).where(schema.accounts.c.region == "EU").limit(1))
            .mappings()
            .one()
        )
    row["region"] = "APAC"  # all its records move to another dimension group
    spied.clear()
    report = import_tables(db, [TableInput("accounts", frame([row]), "test:accounts")], today=TODAY)
    assert report.ok, report.errors
    assert spied["refresh"] == [sorted(r.name for r in rollups.ROLLUPS)]
    assert_equals_rebuild(db, TODAY)


def test_a_new_account_that_orphans_referenced_rebuilds_whole(db: sa.Engine, spied: dict[str, list]) -> None:
    load_everything(db)  # records of GHOST, an account that does not exist
    rollups.refresh_database(db, TODAY)
    ghost = dict(
        account_id="GHOST",
        name="Ghost",
        segment="SMB",
        region="EU",
        owner_id="u1",
        created_at=datetime(2023, 1, 2),
    )
    spied.clear()
    report = import_tables(db, [TableInput("accounts", frame([ghost]), "test:accounts")], today=TODAY)
    assert report.ok, report.errors
    assert spied["refresh"] == [sorted(r.name for r in rollups.ROLLUPS)]
    assert_equals_rebuild(db, TODAY)


def test_touched_months_from_a_change() -> None:
    last = pd.Timestamp(2025, 12, 1)
    span = hooks.DateSpan
    change = hooks.Change(
        {
            "subscriptions": hooks.TableChange(
                True,
                1,
                0,
                False,
                {
                    "started_at": span(dt.date(2025, 3, 4), dt.date(2025, 3, 4)),
                    "ended_at": span(dt.date(2025, 6, 1), dt.date(2025, 6, 1)),
                },
            ),
            "tickets": hooks.TableChange(True, 2, 0, False, {"resolved_at": span(None, None, True)}),
            "deals": hooks.TableChange(
                True, 1, 1, False, {"created_at": span(dt.date(2024, 2, 1), dt.date(2025, 1, 1))}
            ),
        }
    )
    month = pd.Timestamp
    assert rollups.touched_months(rollups.CUSTOMER_BASE, change, last) == (
        month(2025, 3, 1),
        month(2025, 6, 1),
    )
    # unresolved tickets only: nothing to refresh
    first, end = rollups.touched_months(rollups.FIRST_CONTACT_RESOLUTION, change, last)
    assert first > end
    # a deal change without closed_at's span: unknown, rebuilt whole
    assert rollups.touched_months(rollups.WIN_RATE, change, last) is None
    # a running subscription: to the last month covered
    running = hooks.Change(
        {
            "subscriptions": hooks.TableChange(
                True, 1, 0, False, {"started_at": span(dt.date(2025, 9, 9), dt.date(2025, 9, 9)),
                                    "ended_at": span(None, None, True)}
            )
        }
    )  # fmt: skip
    assert rollups.touched_months(rollups.CUSTOMER_BASE, running, last) == (month(2025, 9, 1), last)
    # accounts updated in place: unknown for every roll-up
    moved = hooks.Change({"accounts": hooks.TableChange(True, 0, 1)})
    assert all(rollups.touched_months(r, moved, last) is None for r in rollups.ROLLUPS)
    # new accounts alone touch nothing
    added = hooks.Change({"accounts": hooks.TableChange(True, 3, 0)})
    first, end = rollups.touched_months(rollups.REVENUE, added, last)
    assert first > end


def test_a_new_year_adds_its_periods_without_a_full_rebuild(db: sa.Engine, spied: dict[str, list]) -> None:
    """Built on 31 December 2025 (covering to December 2025), then a ticket and a payment of
    January 2026 imported on 20 January 2026: the roll-ups now cover to December 2026 — the
    new months, quarters and year inserted, the rest kept — as a full rebuild would."""
    load_everything(db)
    rollups.refresh_database(db, TODAY)
    existing = "A1"
    january = [
        TableInput(
            "tickets",
            frame([ticket("TJAN", existing, datetime(2026, 1, 5), datetime(2026, 1, 6), 1)]),
            "test:tickets",
        ),
        TableInput(
            "payments",
            frame([dict(payment_id="YJAN", account_id=existing, paid_at=datetime(2026, 1, 7), amount=9.0)]),
            "test:payments",
        ),
    ]
    later = dt.date(2026, 1, 20)
    spied.clear()
    report = import_tables(db, january, today=later)
    assert report.ok, report.errors
    assert spied["refresh"] == []
    assert dict(spied["rollup_first_contact_resolution"])["month"] == list(range(202601, 202613))
    assert {name: last for name, (_, last) in coverage(db).items()} == dict.fromkeys(
        (r.name for r in rollups.ROLLUPS), 202612
    )
    assert_equals_rebuild(db, later)


def payment(key: str, account: str, day: str, amount: float) -> dict:
    return dict(payment_id=key, account_id=account, paid_at=datetime.fromisoformat(day), amount=amount)


def test_an_import_counts_a_quarters_and_years_paying_accounts_once(
    db: sa.Engine, spied: dict[str, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hand-checked: the paying accounts of a quarter and year after imports that touch
    November and December 2025 only — an account paying again in the quarter counts once,
    an account whose only payment of the quarter turns into a refund (an update) no longer
    counts; the quarter and year come from the per-account months, not the payments."""
    more_fixtures.load(
        db,
        more_fixtures.BASE,
        {
            "payments": [
                payment("Y1", "A1", "2025-01-10", 100.0),
                payment("Y2", "A1", "2025-10-05", 50.0),
                payment("Y3", "A2", "2025-11-03", 30.0),
                payment("Y4", "A2", "2025-11-20", -30.0),
                payment("Y5", "A3", "2025-12-01", -10.0),
            ]
        },
    )
    rollups.refresh_database(db, TODAY)
    year = Filters("2025-01-01", "2026-01-01")
    before = revenue(db, year, "quarter")
    assert before["paying_accounts"].tolist() == [1, 0, 0, 2]  # Q4: A1 (October), A2 (November)
    added = [
        payment("Y6", "A1", "2025-11-15", 20.0),  # A1 paid in October already
        payment("Y7", "A3", "2025-12-10", 40.0),  # A3: its first positive payment of the year
        payment("Y8", "A4", "2025-11-20", -5.0),  # a refund: A4 does not pay
    ]
    spied.clear()
    report = import_tables(db, [TableInput("payments", frame(added), "test:payments")], today=TODAY)
    assert report.ok, report.errors
    assert spied["refresh"] == []
    assert spied["rollup_revenue"] == [("month", [202511, 202512])]  # quarters and years: not from payments
    calls = spy_base_statements(monkeypatch)
    quarters = revenue(db, year, "quarter")
    assert quarters["paying_accounts"].tolist() == [1, 0, 0, 3]
    assert quarters["revenue"].tolist() == pytest.approx([100.0, 0.0, 0.0, 95.0])
    assert revenue(db, year, "year")["paying_accounts"].tolist() == [3]
    assert revenue(db, year.replace(segments=["SMB"]), "quarter")["paying_accounts"].tolist() == [1, 0, 0, 2]
    months = revenue(db, Filters("2025-10-01", "2026-01-01"), "month")
    assert months["paying_accounts"].tolist() == [1, 2, 1]
    assert calls.total() == 0  # all read from the roll-up
    assert_equals_rebuild(db, TODAY)

    # an update: A2's only positive payment becomes a refund
    report = import_tables(
        db,
        [TableInput("payments", frame([payment("Y3", "A2", "2025-11-03", -1.0)]), "test:payments")],
        today=TODAY,
    )
    assert report.ok, report.errors
    quarters = revenue(db, year, "quarter")
    assert quarters["paying_accounts"].tolist() == [1, 0, 0, 2]
    assert quarters["revenue"].tolist() == pytest.approx([100.0, 0.0, 0.0, 64.0])
    assert revenue(db, year, "year")["paying_accounts"].tolist() == [2]
    assert calls.total() == 0
    assert_equals_rebuild(db, TODAY)


def test_a_revenue_rollup_without_its_per_account_months_is_rebuilt_whole(
    db: sa.Engine, spied: dict[str, list]
) -> None:
    """Built by an earlier version (no per-account months table): the next import rebuilds
    the revenue roll-up whole, the others only their touched periods."""
    load_everything(db)
    rollups.refresh_database(db, TODAY)
    with db.begin() as conn:
        rollups.REVENUE.months_table.drop(conn)
    spied.clear()
    report = import_tables(db, november(db), today=TODAY)
    assert report.ok, report.errors
    assert spied["refresh"] == [["rollup_revenue"]]
    assert_equals_rebuild(db, TODAY)


def test_rollups_without_total_rows_read_their_groups_and_gain_them_at_the_next_import(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built by an earlier version without total rows: unfiltered reads sum the dimension
    groups (same numbers); the next import adds every period's totals, as a rebuild has."""
    load_everything(db)
    rollups.refresh_database(db, TODAY)
    f = Filters("2024-01-01", "2025-01-01")
    expected = revenue(db, f, "quarter")
    with db.begin() as conn:
        for rollup in rollups.ROLLUPS:
            conn.execute(rollup.table.delete().where(rollup.table.c.grain.like("*%")))
            rows = conn.execute(sa.select(sa.func.count()).select_from(rollup.table)).scalar_one()
            conn.execute(
                derived.state.update().where(derived.state.c.rollup == rollup.name).values(rows=rows)
            )
    rollups._forget_engines()
    calls = spy_base_statements(monkeypatch)
    pd.testing.assert_frame_equal(revenue(db, f, "quarter"), expected)
    assert calls.total() == 0
    report = import_tables(db, november(db), today=TODAY)
    assert report.ok, report.errors
    assert_recorded_rows(db)
    assert_equals_rebuild(db, TODAY)


def test_the_refresh_runs_with_its_own_work_mem_on_postgresql(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The roll-ups' statements run at ``CRM_PG_REFRESH_WORK_MEM`` on PostgreSQL (the
    writer's transaction gets its own setting back afterwards); elsewhere nothing changes."""
    load_everything(db)
    seen: list[str] = []
    insert = rollups._insert

    def spy(conn, rollup, grain, periods):
        if conn.dialect.name == "postgresql":
            seen.append(conn.execute(sa.text("SELECT current_setting('work_mem')")).scalar_one())
        return insert(conn, rollup, grain, periods)

    monkeypatch.setattr(rollups, "_insert", spy)
    monkeypatch.setenv("CRM_PG_REFRESH_WORK_MEM", "96MB")
    with db.begin() as conn:
        before = None
        if conn.dialect.name == "postgresql":
            before = conn.execute(sa.text("SELECT current_setting('work_mem')")).scalar_one()
        rollups.refresh(conn, TODAY)
        if before is not None:
            assert conn.execute(sa.text("SELECT current_setting('work_mem')")).scalar_one() == before
    if db.dialect.name == "postgresql":
        assert seen and set(seen) == {"96MB"}
    monkeypatch.setenv("CRM_PG_REFRESH_WORK_MEM", "lots")
    with db.begin() as conn:
        if conn.dialect.name == "postgresql":
            with pytest.raises(ValueError, match="CRM_PG_REFRESH_WORK_MEM"):
                rollups.refresh(conn, TODAY)
        else:
            rollups.refresh(conn, TODAY)
