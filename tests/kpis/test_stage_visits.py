"""kpis.stage_visits: the stored stage visits give ``stage_durations`` the frames of the base
tables, and stay right after an import — new history rows of old deals, status changes, new
deals — without a full rebuild; a change of the stages, or one it cannot bound, rebuilds
them whole; unwired, an import removes their state and the base tables answer. On DuckDB,
SQLite and PostgreSQL (the ``db`` fixture).

The data: tests/kpis/test_rollups.py's (the hand-written fixture, generated deals from
January 2023 to June 2025 with re-entered and skipped stages, deals of a missing account),
plus test_sales.py's deals entering an unknown stage at the instant of a known one, and
deals of two pipelines.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator
from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import derived, hooks, schema
from crm_data.importing import TableInput, import_tables
from crm_data.scope import Scope
from kpis import rollups, sales, stage_durations, stage_visits
from kpis.filters import Filters
from tests.kpis import fixtures
from tests.kpis.test_rollups import deal, load_everything
from tests.kpis.test_sales import UNKNOWN_STAGE_DEALS, UNKNOWN_STAGE_HISTORY

TODAY = dt.date(2025, 12, 31)
EVERY_DEAL = Filters("2022-01-01", "2026-01-01")
SELECTIONS = [
    EVERY_DEAL,
    Filters("2024-01-01", "2024-07-01"),
    Filters("2023-01-01", "2025-01-01", segments=["SMB"]),
    Filters("2023-01-01", "2025-07-01", regions=["EU", "NA"], industries=["Tech"]),
    Filters("2023-01-01", "2025-07-01", owners=["u2"]),
    Filters("2023-01-01", "2025-07-01", products=["P2"]),
    Filters("2023-01-01", "2025-07-01", pipelines=["Partners"]),
    Filters("2023-01-01", "2025-07-01", scope=Scope(owners=("u1",))),
    Filters("2023-01-01", "2025-07-01", scope=Scope(regions=("EU",))),
    Filters("2023-01-01", "2025-07-01", segments=["Nobody"]),
]
#: Observation ends: the range's end (now later), and instants inside the data.
NOWS = [None, datetime(2024, 3, 1), datetime(2024, 9, 30, 23, 59, 59, 999999)]


@pytest.fixture(autouse=True)
def _wired(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    rollups.listen()
    yield


def load(engine: sa.Engine) -> sa.Engine:
    load_everything(engine)
    fixtures.insert(engine, "deals", UNKNOWN_STAGE_DEALS)
    fixtures.insert(engine, "deal_stage_history", UNKNOWN_STAGE_HISTORY)
    partners = [
        dict(deal(f"PA{i}", "A3", status, datetime(2024, 2, 1 + i), closed, product="P2"), pipeline=pipeline)
        for i, (status, closed, pipeline) in enumerate(
            [
                ("won", datetime(2024, 3, 1), "Partners"),
                ("open", None, "Partners"),
                ("lost", datetime(2024, 2, 20), "Direct"),
            ]
        )
    ]
    fixtures.insert(engine, "deals", partners)
    fixtures.insert(
        engine,
        "deal_stage_history",
        [
            dict(deal_id=d["deal_id"], stage=stage, entered_at=d["created_at"] + dt.timedelta(days=days))
            for d in partners
            for stage, days in (("Lead", 0), ("Proposal", 3), ("Qualified", 8))
        ],
    )
    return engine


def build(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        stage_visits.refresh(conn)


def direct(
    engine: sa.Engine, f: Filters, now: datetime | None, monkeypatch: pytest.MonkeyPatch
) -> pd.DataFrame:
    """``stage_durations`` on the base tables (``CRM_ROLLUPS=off``)."""
    with monkeypatch.context() as m:
        m.setenv("CRM_ROLLUPS", "off")
        m.setattr(sales, "_stored_visits", _refuse)
        return stage_durations(engine, f, now=now)


def stored(
    engine: sa.Engine, f: Filters, now: datetime | None, monkeypatch: pytest.MonkeyPatch
) -> pd.DataFrame:
    """``stage_durations`` from the stored visits (the base-table path refused)."""
    with monkeypatch.context() as m:
        m.setattr(sales, "_stage_visits", _refuse)
        return stage_durations(engine, f, now=now)


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("the other path of stage_durations was taken")


def assert_same_everywhere(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    for f in SELECTIONS:
        for now in NOWS:
            expected = direct(engine, f, now, monkeypatch)
            pd.testing.assert_frame_equal(stored(engine, f, now, monkeypatch), expected, obj=f"{f} now={now}")
        expected_readers = other_readers(engine, f, monkeypatch, "base")
        for name, result in other_readers(engine, f, monkeypatch, "stored").items():
            if isinstance(result, pd.DataFrame):
                pd.testing.assert_frame_equal(result, expected_readers[name], obj=f"{name} {f}")
            else:
                assert result == expected_readers[name], f"{name} {f}"


def other_readers(
    engine: sa.Engine, f: Filters, monkeypatch: pytest.MonkeyPatch, path: str
) -> dict[str, object]:
    """``pipeline_forecast`` and ``funnel`` on the base tables (``CRM_ROLLUPS=off``) or on
    the stored visits (``stored``), each path's other one refused."""
    from forecasting import pipeline, pipeline_forecast
    from kpis import funnel
    from kpis import pipeline as kpis_pipeline

    with monkeypatch.context() as m:
        if path == "base":
            m.setenv("CRM_ROLLUPS", "off")
        for module, base, stored_path in (
            (pipeline, "_learning_pass", "_stored_learning"),
            (kpis_pipeline, "_funnel_masks", "_stored_funnel_masks"),
        ):
            m.setattr(module, stored_path if path == "base" else base, _refuse)
        forecast = pipeline_forecast(engine, f, months=3, today=TODAY)
        return {
            "by_stage": forecast.by_stage,
            "by_month": forecast.by_month,
            "notes": forecast.notes,
            "funnel": funnel(engine, f),
        }


def table(engine: sa.Engine, stored: sa.Table = stage_visits.TABLE) -> pd.DataFrame:
    """The stored visits (or deal rows: ``stage_visits.DEAL_STAGES``), in a fixed order
    (timestamps as text: SQLite returns strings)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(stored)).mappings().all()
    frame = pd.DataFrame(rows, columns=list(stored.c.keys())).astype(str)
    order = ["deal_id", "stage_key", "entered_at"] if stored is stage_visits.TABLE else [stored.c[0].name]
    return frame.sort_values(order, ignore_index=True)


def test_the_stored_visits_give_the_frames_of_the_base_tables(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(db)
    with db.connect() as conn:
        assert not stage_visits.available(conn)  # written without the hooks: never built
    build(db)
    with db.connect() as conn:
        assert stage_visits.available(conn)
    assert_same_everywhere(db, monkeypatch)
    every = stored(db, EVERY_DEAL, None, monkeypatch)
    assert every["deals"].sum() > 0 and every["censored"].sum() > 0
    # the selections select something, and not everything
    assert 0 < stored(db, SELECTIONS[6], None, monkeypatch)["deals"].sum() < every["deals"].sum()
    # CRM_ROLLUPS=off: the base tables, built or not
    monkeypatch.setenv("CRM_ROLLUPS", "off")
    monkeypatch.setattr(sales, "_stored_visits", _refuse)
    pd.testing.assert_frame_equal(stage_durations(db, EVERY_DEAL), every)


def test_history_window_orders_each_deals_rows_alone(db: sa.Engine) -> None:
    """``history_window`` (the stored visits' window, without the deals' columns), by hand:
    HW1 enters Qualified and Proposal at one instant (stage key 2 before 3), an unknown
    stage (no key, no position) and Closed Won; HW2 goes back from Negotiation to
    Qualified. ``next_entered`` is the deal's next row; ``later_position`` the highest
    position of an open stage at or after the row (NULL: none — an unknown stage counts as
    open but has no position, a closed one does not count)."""
    fixtures.insert(db, "pipeline_stages", fixtures.PIPELINE_STAGES)
    fixtures.insert(db, "accounts", [a for a in fixtures.ROWS["accounts"] if a["account_id"] == "A1"])
    fixtures.insert(db, "deals", [deal("HW1", "A1", "won", datetime(2024, 1, 1), datetime(2024, 1, 10))])
    fixtures.insert(db, "deals", [deal("HW2", "A1", "open", datetime(2024, 2, 1))])
    day = datetime
    rows = [
        ("HW1", "Lead", day(2024, 1, 1)),
        ("HW1", "Proposal", day(2024, 1, 5)),
        ("HW1", "Qualified", day(2024, 1, 5)),
        ("HW1", "Mystery", day(2024, 1, 9)),
        ("HW1", "Closed Won", day(2024, 1, 10)),
        ("HW2", "Lead", day(2024, 2, 1)),
        ("HW2", "Negotiation", day(2024, 2, 3)),
        ("HW2", "Qualified", day(2024, 2, 7)),
    ]
    fixtures.insert(db, "deal_stage_history", [dict(deal_id=d, stage=s, entered_at=at) for d, s, at in rows])
    window = stage_visits.history_window(stage_visits.stage_keys())
    w = window.c
    statement = sa.select(
        w.deal_id, w.known_stage, w.stage_key, w.position, w.later_position, w.next_entered
    ).order_by(w.deal_id, w.entered_at, w.stage_key.asc().nulls_first())
    with db.connect() as conn:
        got = [tuple(r) for r in conn.execute(statement)]
    got = [(d, s, k, p, later, None if nxt is None else pd.Timestamp(nxt)) for d, s, k, p, later, nxt in got]
    t = pd.Timestamp
    assert got == [
        ("HW1", "Lead", 1, 1, 3, t("2024-01-05")),
        ("HW1", "Qualified", 2, 2, 3, t("2024-01-05")),
        ("HW1", "Proposal", 3, 3, 3, t("2024-01-09")),
        ("HW1", None, None, None, None, t("2024-01-10")),
        ("HW1", "Closed Won", 5, 5, None, None),
        ("HW2", "Lead", 1, 1, 4, t("2024-02-03")),
        ("HW2", "Negotiation", 4, 4, 4, t("2024-02-07")),
        ("HW2", "Qualified", 2, 2, 2, None),
    ]


def _old_deals(engine: sa.Engine) -> tuple[dict, dict]:
    """Two open deals created in 2023, each with its history: one gains a stage, one is lost."""
    deals, history = schema.deals, schema.deal_stage_history
    with engine.connect() as conn:
        opened = (
            conn.execute(
                sa.select(deals)
                .where(
                    deals.c.status == "open",
                    deals.c.closed_at.is_(None),
                    deals.c.created_at < datetime(2024, 1, 1),
                    deals.c.deal_id.in_(sa.select(history.c.deal_id)),
                )
                .order_by(deals.c.deal_id)
                .limit(2)
            )
            .mappings()
            .all()
        )
    assert len(opened) == 2
    return dict(opened[0]), dict(opened[1])


def november(engine: sa.Engine) -> list[TableInput]:
    """November 2025: an old open deal enters Negotiation (its last visit ends, its earlier
    ones progress); another old open deal is lost (its last visit ends at closed_at); a new
    deal with two stages."""
    moving, losing = _old_deals(engine)
    losing.update(status="lost", closed_at=datetime(2025, 11, 20))
    new = deal("DNOV", "A1", "open", datetime(2025, 11, 3))
    history = [
        dict(deal_id=moving["deal_id"], stage="Negotiation", entered_at=datetime(2025, 11, 12, 8, 30)),
        dict(deal_id="DNOV", stage="Lead", entered_at=datetime(2025, 11, 3)),
        dict(deal_id="DNOV", stage="Qualified", entered_at=datetime(2025, 11, 9, 17)),
    ]
    return [
        TableInput("deals", pd.DataFrame([losing, new]), "test:deals"),
        TableInput("deal_stage_history", pd.DataFrame(history), "test:deal_stage_history"),
    ]


@pytest.fixture
def rebuilds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One item per full rebuild of the stored visits."""
    calls: list[int] = []
    whole = stage_visits._refresh

    def spy(conn: sa.Connection) -> int:
        calls.append(1)
        return whole(conn)

    monkeypatch.setattr(stage_visits, "_refresh", spy)
    return calls


def test_an_import_rewrites_the_visits_of_the_deals_it_changed(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch, rebuilds: list[int]
) -> None:
    load(db)
    rollups.refresh_database(db, TODAY)  # the roll-ups and the stored visits
    with db.connect() as conn:
        assert stage_visits.NAME in derived.built(conn)
    assert len(rebuilds) == 1
    before = stored(db, EVERY_DEAL, None, monkeypatch)
    before_deals = table(db, stage_visits.DEAL_STAGES)
    moving = _old_deals(db)[0]["deal_id"]  # enters Negotiation (key 4: bit 8) in November
    assert int(before_deals.set_index("deal_id")["stages"][moving]) & 8 == 0
    report = import_tables(db, november(db), today=TODAY)
    assert report.ok, report.errors
    assert len(rebuilds) == 1  # not rebuilt whole: the changed deals only
    after, deals_after = table(db), table(db, stage_visits.DEAL_STAGES)
    changed = deals_after.set_index("deal_id")["stages"]
    # the new deal: Lead (key 1) and Qualified (key 2) = 3; the moving deal gained Negotiation (key 4)
    assert changed["DNOV"] == "3" and int(changed[moving]) & 8
    assert len(deals_after) == len(before_deals) + 1
    with db.connect() as conn:
        recorded = conn.execute(
            sa.select(derived.state.c.rows).where(derived.state.c.rollup == stage_visits.NAME)
        ).scalar_one()
    assert recorded == len(after)
    build(db)
    pd.testing.assert_frame_equal(after, table(db))  # what a full rebuild gives
    pd.testing.assert_frame_equal(deals_after, table(db, stage_visits.DEAL_STAGES))
    assert_same_everywhere(db, monkeypatch)
    # the import changed the figures (two visits finished, a new deal)
    now = stored(db, EVERY_DEAL, None, monkeypatch)
    assert now["finished"].sum() == before["finished"].sum() + 2 + 1
    assert not now.equals(before)


def test_a_change_of_the_stages_or_of_unknown_rows_rebuilds_them_whole(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch, rebuilds: list[int]
) -> None:
    load(db)
    build(db)
    with db.begin() as conn:
        conn.execute(
            schema.pipeline_stages.update()
            .where(schema.pipeline_stages.c.stage == "Qualified")
            .values(position=3)  # ties with Proposal: ordered by name at the same instant
        )
        assert stage_visits.update(conn, hooks.Change.unknown(["pipeline_stages"])) == [stage_visits.NAME]
    assert len(rebuilds) == 2
    assert_same_everywhere(db, monkeypatch)
    with db.begin() as conn:
        conn.execute(schema.deals.update().where(schema.deals.c.status == "lost").values(status="won"))
        assert stage_visits.update(conn, hooks.Change.unknown(["deals"])) == [stage_visits.NAME]
        # a change of other tables leaves them alone
        assert stage_visits.update(conn, hooks.Change.unknown(["tickets", "accounts"])) == [stage_visits.NAME]
    assert len(rebuilds) == 3
    assert_same_everywhere(db, monkeypatch)


def test_unwired_an_import_removes_their_state_and_the_base_tables_answer(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(db)
    build(db)
    with hooks.unwired():
        assert import_tables(db, november(db), today=TODAY).ok
    with db.connect() as conn:
        assert stage_visits.NAME not in derived.built(conn)
        assert not stage_visits.available(conn)
    with monkeypatch.context() as m:
        m.setattr(sales, "_stored_visits", _refuse)
        frame = stage_durations(db, EVERY_DEAL)
    pd.testing.assert_frame_equal(frame, direct(db, EVERY_DEAL, None, monkeypatch))


def test_a_table_built_without_the_learning_columns_is_not_read_then_rebuilt(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch, rebuilds: list[int]
) -> None:
    """A table of the version before the learning columns (no status, closed_at,
    last_visit): not read — every reader takes the base tables —, and the next import
    rebuilds it whole with this version's columns."""
    from forecasting import pipeline, pipeline_forecast
    from kpis import funnel
    from kpis import pipeline as kpis_pipeline

    load(db)
    build(db)
    with db.begin() as conn:
        for column in ("status", "closed_at", "last_visit"):
            conn.exec_driver_sql(f"ALTER TABLE {stage_visits.NAME} DROP COLUMN {column}")
    stage_visits._KNOWN.clear()
    with db.connect() as conn:
        assert stage_visits.NAME in derived.built(conn) and not stage_visits.available(conn)
    with monkeypatch.context() as m:
        for module, name in (
            (sales, "_stored_visits"),
            (pipeline, "_stored_learning"),
            (kpis_pipeline, "_stored_funnel_masks"),
        ):
            m.setattr(module, name, _refuse)
        stage_durations(db, EVERY_DEAL)
        pipeline_forecast(db, EVERY_DEAL, today=TODAY)
        funnel(db, EVERY_DEAL)
    assert import_tables(db, november(db), today=TODAY).ok
    assert len(rebuilds) == 2
    with db.connect() as conn:
        assert stage_visits.available(conn)
    after = table(db)
    build(db)
    pd.testing.assert_frame_equal(after, table(db))


def test_visits_built_without_the_deal_rows_are_not_read_then_rebuilt(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch, rebuilds: list[int]
) -> None:
    """The stored visits of the version before ``stage_visits.DEAL_STAGES`` (no such table):
    not read — the funnel and stage_durations take the base tables —, and the next import
    rebuilds both tables whole."""
    from kpis import funnel
    from kpis import pipeline as kpis_pipeline

    load(db)
    build(db)
    expected = funnel(db, EVERY_DEAL)
    with db.begin() as conn:
        stage_visits.DEAL_STAGES.drop(conn)
    stage_visits._KNOWN.clear()
    with db.connect() as conn:
        assert stage_visits.NAME in derived.built(conn) and not stage_visits.available(conn)
    with monkeypatch.context() as m:
        m.setattr(sales, "_stored_visits", _refuse)
        m.setattr(kpis_pipeline, "_stored_funnel_masks", _refuse)
        stage_durations(db, EVERY_DEAL)
        pd.testing.assert_frame_equal(funnel(db, EVERY_DEAL), expected)
    assert import_tables(db, november(db), today=TODAY).ok
    assert len(rebuilds) == 2
    with db.connect() as conn:
        assert stage_visits.available(conn)
    after = table(db, stage_visits.DEAL_STAGES)
    assert len(after) > 0
    build(db)
    pd.testing.assert_frame_equal(after, table(db, stage_visits.DEAL_STAGES))


def test_deal_rows_built_without_the_open_deals_name_and_amount_are_not_read_then_rebuilt(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch, rebuilds: list[int]
) -> None:
    """Stored deal rows of the version before their ``name`` and ``amount`` (a database
    upgraded to this version): not read — the weighted pipeline and the stuck deals take
    the deals, with the same numbers —, and the next import rebuilds both tables whole,
    with an open deal's name and amount (NULL for a deal not open)."""
    from kpis import pipeline as kpis_pipeline
    from kpis import stuck_deals, weighted_pipeline

    load(db)
    build(db)
    at = datetime(2025, 6, 1)
    expected = (weighted_pipeline(db, EVERY_DEAL), stuck_deals(db, EVERY_DEAL, None, limit=50, now=at))
    with db.begin() as conn:
        for column in ("name", "amount"):
            conn.exec_driver_sql(f"ALTER TABLE {stage_visits.DEALS_NAME} DROP COLUMN {column}")
    stage_visits._KNOWN.clear()
    with db.connect() as conn:
        assert stage_visits.NAME in derived.built(conn) and not stage_visits.available(conn)
    with monkeypatch.context() as m:
        for name in ("_stored_weighted", "_stored_stuck_deals", "_stored_open_at", "_stored_latest"):
            m.setattr(kpis_pipeline, name, _refuse)
        pd.testing.assert_frame_equal(weighted_pipeline(db, EVERY_DEAL), expected[0])
        pd.testing.assert_frame_equal(stuck_deals(db, EVERY_DEAL, None, limit=50, now=at), expected[1])
    assert import_tables(db, november(db), today=TODAY).ok
    assert len(rebuilds) == 2
    with db.connect() as conn:
        assert stage_visits.available(conn)
    after = table(db, stage_visits.DEAL_STAGES)
    closed = after["status"] != "open"
    stored = after[["name", "amount"]]
    missing = stored.isna() | stored.isin(("None", "nan"))  # NULL, as text or not, per driver
    assert closed.any() and missing[closed].all(axis=None)
    assert (~missing.loc[~closed, "amount"]).any()
    build(db)
    pd.testing.assert_frame_equal(after, table(db, stage_visits.DEAL_STAGES))


def test_on_duckdb_stage_durations_fetches_the_stored_visits_per_stage_and_sorts_them_in_numpy(
    make_db: Callable[..., sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On DuckDB no statement numbers the visits (no ``row_number`` window): selected by the
    date range alone, one statement per open stage of ``pipeline_stages`` fetches that
    stage's durations and flags (a scan filtered by its ``stage_key``); selected by accounts
    (or owners, products, pipelines) too, one statement ordered by stage. The frames are the
    base tables'."""
    engine = load(make_db("duckdb"))
    build(engine)
    with engine.connect() as conn:
        open_stages = conn.execute(
            sa.select(sa.func.count()).where(schema.pipeline_stages.c.is_closed.is_not(sa.true()))
        ).scalar_one()
    assert open_stages >= 2
    for f, selected in (
        (EVERY_DEAL, False),
        (Filters("2024-01-01", "2024-07-01"), False),
        (SELECTIONS[3], True),
    ):
        with fixtures.statements_sent(engine, stage_visits.NAME) as sent:
            frame = stored(engine, f, None, monkeypatch)
        reads = [s for s, _ in sent if "flags" in s]
        assert not [s for s, _ in sent if "row_number" in s.lower()]
        if selected:
            assert len(reads) == 1 and "ORDER BY" in reads[0], reads
        else:
            assert len(reads) == open_stages and all("stage_key =" in s for s in reads), reads
        pd.testing.assert_frame_equal(frame, direct(engine, f, None, monkeypatch))


def test_the_stored_rows_select_accounts_by_integer_keys_that_an_import_extends(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch, rebuilds: list[int]
) -> None:
    """``stage_visits.ACCOUNT_KEYS``: one key per account id of a deal (GHOST's too, which
    has no ``accounts`` row), carried by every stored visit and deal row; on DuckDB an
    account-level list selects the stored rows by ``account_key IN (keys joined to
    accounts)``, never by their text ``account_id`` (PostgreSQL and SQLite: by the text
    ids, as before), with the base tables' numbers. An import of a new account's
    deal gives it the next key without renumbering the others; a full rebuild keeps them."""
    from forecasting import pipeline_forecast
    from kpis import funnel, open_deal_aging, stuck_deals, weighted_pipeline

    load(db)
    rollups.refresh_database(db, TODAY)
    keys_before = table(db, stage_visits.ACCOUNT_KEYS).sort_values("account_id", ignore_index=True)
    with db.connect() as conn:
        ids = {
            r[0] for r in conn.execute(sa.select(schema.deals.c.account_id).distinct()) if r[0] is not None
        }
    assert set(keys_before["account_id"]) == ids and "GHOST" in ids
    assert sorted(keys_before["account_key"].astype(int)) == list(range(1, len(ids) + 1))
    key_of = dict(zip(keys_before["account_id"], keys_before["account_key"].astype(int), strict=True))
    for stored_table in (stage_visits.TABLE, stage_visits.DEAL_STAGES):
        rows = table(db, stored_table)
        expected = rows["account_id"].map(key_of)  # no account: no key (NULL)
        found = pd.to_numeric(rows["account_key"], errors="coerce")
        assert found.isna().equals(expected.isna()) and (found.dropna() == expected.dropna()).all()

    region = Filters("2023-01-01", "2025-07-01", regions=["EU", "NA"], industries=["Tech"])
    with fixtures.statements_sent(db, "rollup_") as sent:
        stage_durations(db, region, now=datetime(2024, 9, 30))
        funnel(db, region)
        pipeline_forecast(db, region, months=3, today=TODAY)
        weighted_pipeline(db, region)
        open_deal_aging(db, region, now=datetime(2024, 9, 30))
        stuck_deals(db, region, None, limit=50, now=datetime(2024, 9, 30))
    reading = [
        s
        for s, _ in sent
        if ("FROM rollup_stage_visits" in s or "FROM rollup_deal_stages" in s) and "WHERE" in s
    ]
    assert len(reading) >= 6
    for statement in reading:  # DuckDB: the keys; elsewhere the text ids (crm_data.dialects)
        by_key = "account_key IN" in statement and "rollup_account_keys" in statement
        assert by_key == (db.dialect.name == "duckdb"), statement
        assert (".account_id IN" in statement) == (not by_key), statement
    assert_same_everywhere(db, monkeypatch)

    # a new account with a deal: the next key, the others as they were
    new_account = dict(fixtures.ACCOUNTS[0], account_id="A0NEW", name="New Co", region="NA", industry="Tech")
    new_deal = deal("DNEW", "A0NEW", "open", datetime(2025, 11, 4))
    history = [dict(deal_id="DNEW", stage="Lead", entered_at=datetime(2025, 11, 4))]
    report = import_tables(
        db,
        [
            TableInput("accounts", pd.DataFrame([new_account]), "test:accounts"),
            TableInput("deals", pd.DataFrame([new_deal]), "test:deals"),
            TableInput("deal_stage_history", pd.DataFrame(history), "test:deal_stage_history"),
        ],
        today=TODAY,
    )
    assert report.ok, report.errors
    keys_after = table(db, stage_visits.ACCOUNT_KEYS).sort_values("account_id", ignore_index=True)
    added = keys_after[keys_after["account_id"] == "A0NEW"]
    assert [int(float(k)) for k in added["account_key"]] == [len(ids) + 1]
    pd.testing.assert_frame_equal(
        keys_after[keys_after["account_id"] != "A0NEW"].reset_index(drop=True), keys_before
    )
    assert (
        int(float(table(db, stage_visits.DEAL_STAGES).set_index("deal_id")["account_key"]["DNEW"]))
        == len(ids) + 1
    )
    build(db)
    pd.testing.assert_frame_equal(
        table(db, stage_visits.ACCOUNT_KEYS).sort_values("account_id", ignore_index=True), keys_after
    )
    assert_same_everywhere(db, monkeypatch)
    everywhere = Filters("2025-01-01", "2026-01-01", regions=["NA"], industries=["Tech"])
    assert "DNEW" in set(stuck_deals(db, everywhere, None, limit=500)["deal_id"])


def test_stored_rows_built_without_account_keys_are_not_read_then_rebuilt(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch, rebuilds: list[int]
) -> None:
    """The stored visits and deal rows of the version before their ``account_key`` (and
    without ``rollup_account_keys``): not read — the readers take the base tables, with
    the same numbers —, and the next import rebuilds them whole, with the keys."""
    from kpis import funnel
    from kpis import pipeline as kpis_pipeline

    load(db)
    build(db)
    region = Filters("2023-01-01", "2025-07-01", regions=["EU", "NA"], industries=["Tech"])
    expected = (funnel(db, region), stage_durations(db, region))
    with db.begin() as conn:
        for name in (stage_visits.NAME, stage_visits.DEALS_NAME):
            conn.exec_driver_sql(f"ALTER TABLE {name} DROP COLUMN account_key")
        stage_visits.ACCOUNT_KEYS.drop(conn)
    stage_visits._KNOWN.clear()
    with db.connect() as conn:
        assert stage_visits.NAME in derived.built(conn) and not stage_visits.available(conn)
    with monkeypatch.context() as m:
        m.setattr(sales, "_stored_visits", _refuse)
        m.setattr(sales, "_durations_in_python", _refuse)
        m.setattr(kpis_pipeline, "_stored_funnel_masks", _refuse)
        pd.testing.assert_frame_equal(funnel(db, region), expected[0])
        pd.testing.assert_frame_equal(stage_durations(db, region), expected[1])
    assert import_tables(db, november(db), today=TODAY).ok
    assert len(rebuilds) == 2
    with db.connect() as conn:
        assert stage_visits.available(conn)
    after = table(db, stage_visits.DEAL_STAGES)
    assert pd.to_numeric(after["account_key"], errors="coerce").notna().any()
    build(db)
    pd.testing.assert_frame_equal(after, table(db, stage_visits.DEAL_STAGES))


def test_with_an_account_list_duckdb_reads_the_won_deals_median_and_histogram_from_the_stored_deal_rows(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``median_sales_cycle`` and ``sales_cycle_distribution`` (order-free figures of the won
    deals) with an account-level list: on DuckDB from the stored deal rows, their accounts
    by integer keys; elsewhere, without an account list, or with the stored rows not
    readable, from the deals — the same numbers either way. ``sales_cycle`` (a mean of
    doubles, which depends on the order of the sum) always reads the deals."""
    from kpis import sales_cycle, sales_cycle_distribution
    from kpis.sales import median_sales_cycle

    load(db)
    build(db)
    region = Filters("2023-01-01", "2025-07-01", regions=["EU", "NA"], industries=["Tech"])
    scoped = Filters("2023-01-01", "2025-07-01", scope=Scope(regions=("EU",)))
    for f in (region, scoped, EVERY_DEAL):
        with fixtures.statements_sent(db, "closed_at") as sent:
            found = (median_sales_cycle(db, f), sales_cycle_distribution(db, f, bins=7), sales_cycle(db, f))
        stored_rows = [s for s, _ in sent if "FROM rollup_deal_stages" in s]
        if db.dialect.name == "duckdb" and f is not EVERY_DEAL:
            assert len(stored_rows) == 3, sent  # the median, the longest cycle, the bins
            assert all("account_key IN" in s for s in stored_rows)
        else:
            assert not stored_rows
        assert sum("FROM deals" in s for s, _ in sent) == len(sent) - len(stored_rows)
        with monkeypatch.context() as m:
            m.setenv("CRM_ROLLUPS", "off")
            expected = (
                median_sales_cycle(db, f),
                sales_cycle_distribution(db, f, bins=7),
                sales_cycle(db, f),
            )
        assert found[0] == expected[0] or (math.isnan(found[0]) and math.isnan(expected[0]))
        pd.testing.assert_frame_equal(found[1], expected[1], check_exact=True)
        pd.testing.assert_frame_equal(found[2], expected[2], check_exact=True)
    assert (
        median_sales_cycle(db, region) > 0 and sales_cycle_distribution(db, region, bins=7)["deals"].sum() > 0
    )
