"""The stored data-quality report: written by an import and by ``check``, read back identical
to a live check, stale once a table's row count changes.

The bundle below has exactly two problems, written out by hand: accounts A1 "Acme Inc" and
A2 "ACME Ltd." share the normalised name "acme" (2 duplicate accounts), and ticket K2 names
product P9, which does not exist (1 orphan ticket). Time is pinned to ``NOW``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import time_machine

from crm_data import schema
from crm_data.cli import main
from crm_data.engines import make_engine
from crm_data.importing import import_paths
from crm_data.quality import GROWING_CHECKS, QualityReport, check_database
from crm_data.quality_snapshot import (
    Snapshot,
    SnapshotStore,
    check_and_store,
    check_scope,
    decode_records,
    encode_records,
    opened,
    table_rows,
)
from tests.crm_data.test_importing import write_bundle
from tests.kpis.fixtures import statements_sent

NOW = dt.datetime(2026, 11, 30, 12, 0)
TODAY = NOW.date()
BUNDLE = {
    "users": """
        user_id,name
        U1,Ann
        """,
    "products": """
        product_id,name
        P1,Widget
        """,
    "accounts": """
        account_id,name,segment,industry,region,owner_id,created_at
        A1,Acme Inc,SMB,Retail,EMEA,U1,2024-01-01
        A2,ACME Ltd.,SMB,Retail,APAC,U1,2024-01-01
        A3,Globex,SMB,Retail,EMEA,U1,2024-01-01
        """,
    "tickets": """
        ticket_id,account_id,product_id,opened_at
        K1,A1,P1,2026-01-05
        K2,A3,P9,2026-02-01
        """,
}
#: The bundle's problems, by hand (see the module docstring).
PROBLEMS = {"duplicate_accounts": 2, "orphan_tickets_product_id": 1}
#: Within EMEA (A1 and A3): the orphan ticket K2 of A3; A1's duplicate, A2, is in APAC.
EMEA = {"regions": ["EMEA"]}
EMEA_PROBLEMS = {"orphan_tickets_product_id": 1}
ROWS = {"users": 1, "products": 1, "accounts": 3, "tickets": 2}


@contextlib.contextmanager
def opened_beside(engine: sa.Engine) -> Iterator[SnapshotStore]:
    store = SnapshotStore.beside(engine)
    try:
        yield store
    finally:
        store.dispose()


def _import(engine: sa.Engine, folder: Path, stored_before: bool = True) -> None:
    """Import the bundle at NOW; ``stored_before``: a report (of the empty database) is
    stored first, as by ``check`` — an import keeps a stored report current."""
    if stored_before:
        with opened_beside(engine) as store:
            check_and_store(engine, store, now=NOW - dt.timedelta(days=1))
    with time_machine.travel(NOW.replace(tzinfo=dt.UTC), tick=False):
        report = import_paths(engine, [write_bundle(folder, BUNDLE)], today=TODAY)
    assert report.ok and report.committed, report.render()
    assert not report.warnings, report.render()


def assert_same_report(stored: Snapshot, engine: sa.Engine) -> None:
    """The stored report equals a live check at the stored time: every finding's key, title,
    table, severity, count, description and records (values and dtypes)."""
    live = check_database(engine, stale_days=stored.report.stale_days, now=stored.computed_at)
    assert [f.key for f in stored.report.findings] == [f.key for f in live.findings]
    for mine, theirs in zip(stored.report.findings, live.findings, strict=True):
        assert (mine.title, mine.table, mine.severity, mine.count, mine.description) == (
            theirs.title,
            theirs.table,
            theirs.severity,
            theirs.count,
            theirs.description,
        ), mine.key
        pd.testing.assert_frame_equal(mine.records, theirs.records, check_index_type=False, obj=mine.key)
    assert stored.report.missing_tables == live.missing_tables
    assert stored.report.render() == live.render()


def test_an_import_stores_the_report_read_back_identical(db: sa.Engine, tmp_path: Path) -> None:
    _import(db, tmp_path / "bundle")
    store = SnapshotStore.beside(db)
    try:
        stored = store.read()
    finally:
        store.dispose()
    assert stored is not None
    assert stored.computed_at == NOW and stored.report.stale_days == 90
    assert {f.key: f.count for f in stored.report.problems} == PROBLEMS
    duplicates = stored.report.finding("duplicate_accounts").records
    assert duplicates[["normalised_name", "account_id"]].values.tolist() == [["acme", "A1"], ["acme", "A2"]]
    orphans = stored.report.finding("orphan_tickets_product_id").records
    assert orphans.values.tolist() == [["K2", "P9"]]
    assert stored.report.finding("orphan_tickets_product_id").severity == "error"
    assert stored.report.finding("duplicate_accounts").severity == "warning"
    assert {k: v for k, v in stored.source_rows.items() if v} == ROWS
    assert_same_report(stored, db)
    assert stored.changed_tables(table_rows(db)) == []


def test_an_import_checks_nothing_when_no_report_is_stored(db: sa.Engine, tmp_path: Path) -> None:
    """Nobody asked for a report yet: the import does not pay for a whole-database check
    (the page checks live on its first view)."""
    _import(db, tmp_path / "bundle", stored_before=False)
    with opened_beside(db) as store:
        assert store.read() is None


def test_the_data_changed_since_when_a_row_count_differs(db: sa.Engine, tmp_path: Path) -> None:
    _import(db, tmp_path / "bundle")
    store = SnapshotStore.beside(db)
    try:
        with db.begin() as conn:  # written behind the snapshot's back (not an import)
            conn.execute(
                schema.payments.insert().values(payment_id="Y1", account_id="A1", paid_at=NOW, amount=5.0)
            )
        stored = store.read()
        assert stored is not None and stored.changed_tables(table_rows(db)) == ["payments"]
        with db.begin() as conn:
            conn.execute(schema.tickets.delete().where(schema.tickets.c.ticket_id == "K1"))
        assert stored.changed_tables(table_rows(db)) == ["payments", "tickets"]  # schema order
        # checked again: current, and the orphan is still found
        again = check_and_store(db, store, now=NOW + dt.timedelta(hours=1))
        assert again.changed_tables(table_rows(db)) == []
        reread = store.read()
        assert reread is not None and reread.computed_at == NOW + dt.timedelta(hours=1)
        assert {f.key: f.count for f in reread.report.problems} == PROBLEMS
        assert_same_report(reread, db)
    finally:
        store.dispose()


def test_the_check_command_stores_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    engine = make_engine(url)
    try:
        schema.create_schema(engine)
        _import(engine, tmp_path / "bundle")
    finally:
        engine.dispose()
    with opened(url) as store:
        store.clear()
        assert store.read() is None
        with time_machine.travel((NOW + dt.timedelta(days=1)).replace(tzinfo=dt.UTC), tick=False):
            assert main(["check", "--url", url]) == 0
        out = capsys.readouterr().out
        assert "[!] Duplicate accounts: 2" in out
        assert "Stored for the dashboard's Data quality page (checked 2026-12-01 12:00 UTC)." in out
        stored = store.read()
    assert stored is not None and stored.computed_at == NOW + dt.timedelta(days=1)
    assert {f.key: f.count for f in stored.report.problems} == PROBLEMS
    # beside the CRM file: the dashboard's read-only hold on the DuckDB file does not matter
    assert (tmp_path / "crm-auth.sqlite").exists()
    reader = make_engine(url, read_only=True)
    try:
        assert_same_report(stored, reader)
    finally:
        reader.dispose()


def test_a_scoped_report_is_not_stored(make_db) -> None:
    engine = make_db("duckdb")
    store = SnapshotStore(engine)
    report = check_database(engine, now=NOW, scope={"regions": ["EMEA"]})
    with pytest.raises(ValueError, match="whole-database"):
        store.write(report, table_rows(engine))


def assert_same_findings(mine: QualityReport, theirs: QualityReport) -> None:
    assert [(f.key, f.title, f.count) for f in mine.findings] == [
        (f.key, f.title, f.count) for f in theirs.findings
    ]
    for a, b in zip(mine.findings, theirs.findings, strict=True):
        pd.testing.assert_frame_equal(a.records, b.records, check_index_type=False, obj=a.key)
    assert (mine.hidden_tables, mine.missing_tables) == (theirs.hidden_tables, theirs.missing_tables)


def test_a_scope_runs_only_the_checks_that_found_something_in_the_stored_report(
    db: sa.Engine, tmp_path: Path
) -> None:
    """The data are the snapshot's: the checks clean in the whole database are not run
    within EMEA (fewer statements), the report is the live check's all the same."""
    _import(db, tmp_path / "bundle")
    later = NOW + dt.timedelta(hours=2)
    # the survey responses (none: every check of them clean) are only counted, for the data version
    with statements_sent(db, "survey_responses") as fast_statements:
        fast = check_scope(db, EMEA, now=later)
    with statements_sent(db, "survey_responses") as full_statements:
        full = check_database(db, scope=EMEA, now=later)
    assert {f.key: f.count for f in fast.problems} == EMEA_PROBLEMS
    assert_same_findings(fast, full)
    run_again = {"duplicate_accounts", "orphan_tickets_product_id", *GROWING_CHECKS}
    assert set(fast.reused_checks) == {f.key for f in full.findings} - run_again
    assert fast.earlier_check_at == NOW and full.reused_checks == []
    assert len(fast_statements) == 1 and "count(*)" in fast_statements[0][0]
    assert full_statements  # the live check reads them
    assert (
        "checks that found nothing in the whole database at 2026-11-30 12:00 UTC were not run"
        in fast.render()
    )
    # the same instant with its time zone (14:00 UTC = 15:00 at UTC+1)
    aware = check_scope(
        db, EMEA, now=later.replace(tzinfo=dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=1)))
    )
    assert aware.checked_at == later and aware.reused_checks == fast.reused_checks


def test_a_scope_checks_everything_when_the_data_changed_since(db: sa.Engine, tmp_path: Path) -> None:
    """A contact without an email written behind the snapshot's back (clean in it): found."""
    _import(db, tmp_path / "bundle")
    with db.begin() as conn:
        conn.execute(schema.contacts.insert().values(contact_id="C9", account_id="A3", name="No Mail"))
    report = check_scope(db, EMEA, now=NOW + dt.timedelta(hours=2))
    assert {f.key: f.count for f in report.problems} == {**EMEA_PROBLEMS, "missing_contacts_email": 1}
    assert report.reused_checks == [] and report.earlier_check_at is None


def test_a_scope_checked_before_the_snapshot_time_checks_everything(db: sa.Engine, tmp_path: Path) -> None:
    """On 20 Jan 2026 ticket K2 (A3, opened 1 Feb) lies in the future; the snapshot, taken
    later, found no future ticket."""
    _import(db, tmp_path / "bundle")
    earlier = dt.datetime(2026, 1, 20)
    report = check_scope(db, EMEA, now=earlier)
    assert {f.key: f.count for f in report.problems} == {**EMEA_PROBLEMS, "future_tickets": 1}
    assert_same_findings(report, check_database(db, scope=EMEA, now=earlier))


def test_stale_open_deals_are_checked_within_a_scope_whatever_the_snapshot(make_db) -> None:
    """Deal D1 (EMEA) last changed on 1 Sep 2026: not stale (90 days) at the snapshot on
    1 Nov, stale on 1 Dec, the data unchanged."""
    engine = make_db("duckdb")
    with engine.begin() as conn:
        conn.execute(
            schema.accounts.insert().values(
                account_id="A1", name="Acme", region="EMEA", created_at=dt.datetime(2026, 1, 1)
            )
        )
        conn.execute(
            schema.deals.insert().values(
                deal_id="D1", account_id="A1", status="open", created_at=dt.datetime(2026, 9, 1)
            )
        )
    snapshot = Snapshot(check_database(engine, now=dt.datetime(2026, 11, 1)), table_rows(engine))
    assert snapshot.report.finding("stale_open_deals").count == 0
    report = check_scope(engine, EMEA, now=dt.datetime(2026, 12, 1), snapshot=snapshot)
    assert report.finding("stale_open_deals").count == 1
    assert "stale_open_deals" not in report.reused_checks and report.reused_checks
    with pytest.raises(ValueError, match="stale_open_deals"):
        check_database(engine, scope=EMEA, nothing_found=[snapshot.report.finding("stale_open_deals")])


def test_records_round_trip_through_json() -> None:
    frame = pd.DataFrame(
        [
            (
                "A1",
                dt.datetime(2026, 1, 2, 3, 4, 5),
                dt.date(2026, 1, 2),
                decimal.Decimal("1.50"),
                2.5,
                7,
                None,
            ),
            ("A2", None, None, None, None, 8, "x"),
        ],
        columns=["id", "at", "on", "amount", "score", "n", "note"],
    )
    back = decode_records(encode_records(frame))
    pd.testing.assert_frame_equal(back, frame)
    empty = pd.DataFrame(columns=["a", "b"])
    pd.testing.assert_frame_equal(decode_records(encode_records(empty)), empty)
