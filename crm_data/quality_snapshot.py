"""The stored data-quality report: the last whole-database check, read back with its age.

At a million accounts :func:`crm_data.quality.check_database` scans every large table
(some 50 checks: ~20 s of CPU); the Data quality page reads the report stored here
instead. ``python -m crm_data check``, the page's "Re-check now" (and its first
view by an analyst or admin) and — once a report is stored — every import that changed
rows (:func:`crm_data.importing.import_tables`, :func:`store_after_import`) store it
(:func:`check_and_store`): each finding — key, severity, count, up to ``limit`` sample
records as JSON — with the time of the check, its ``stale_days`` and the *data version*:
the row count of every CRM table when it ran.

Staleness: :meth:`Snapshot.changed_tables` compares those counts with the counts now (the
page says "the data changed since the last check"). Like the KPI roll-ups' staleness, a
writer other than import/check that changes values in place without adding or deleting
rows goes unnoticed (an import rewrites the snapshot itself).

Only the whole database is stored (``scope=None``): a restricted scope's counts cannot be
derived from it (it keeps counts and a few records, not every record), so a scoped user's
findings are computed live within the scope (:func:`check_scope`) — but only those of the
checks that found something in the whole database: while the data are those of the
snapshot, a check that found nothing in all the records finds nothing in some of them
(at 1M accounts, the demo's one region: 12.8 → ≈ 3 s CPU).

Where (:meth:`SnapshotStore.open`): beside the sign-in accounts and goals
(:func:`crm_data.accounts.auth_url`) — a SQLite file beside a DuckDB or SQLite CRM file,
the CRM database itself on PostgreSQL (or ``$CRM_AUTH_DATABASE_URL``). Not in the DuckDB
file: the dashboard holds it open read-only and DuckDB then lets no other process write
it, so ``check`` and the page's button could not store anything while a dashboard runs.

Tables (created on first write): ``quality_snapshot`` (one row per finding, in report
order) and ``quality_snapshot_state`` (one row: when, stale days, sample limit, row counts,
missing tables). A write replaces both in one transaction: a reader sees the old snapshot
or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.engines import explain_database_error
from crm_data.quality import DEFAULT_LIMIT, GROWING_CHECKS, Finding, QualityReport, check_database
from crm_data.stored_results import BesideAccounts
from crm_data.validation import existing_tables

if TYPE_CHECKING:
    from crm_data.scope import Scope

metadata = sa.MetaData()
findings_table = sa.Table(
    "quality_snapshot",
    metadata,
    sa.Column("position", sa.Integer(), primary_key=True),
    sa.Column("check_key", sa.String(80), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("table_name", sa.String(64), nullable=False),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    #: {"columns": [...], "types": [...], "rows": [[...], ...]} (see :func:`encode_records`)
    sa.Column("records", sa.Text(), nullable=False),
)
state_table = sa.Table(
    "quality_snapshot_state",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("computed_at", sa.DateTime(), nullable=False),
    sa.Column("stale_days", sa.Integer(), nullable=False),
    sa.Column("sample_limit", sa.Integer(), nullable=False),
    #: {table: rows} of every CRM table present when the check ran: the data version
    sa.Column("source_rows", sa.Text(), nullable=False),
    sa.Column("missing_tables", sa.Text(), nullable=False),
)


@dataclass(frozen=True)
class Snapshot:
    """A stored report and the row counts of the CRM tables when it was computed."""

    report: QualityReport
    source_rows: dict[str, int]
    limit: int = DEFAULT_LIMIT

    @property
    def computed_at(self) -> dt.datetime:
        """When the check ran (naive UTC)."""
        return self.report.checked_at

    def changed_tables(self, rows_now: Mapping[str, int]) -> list[str]:
        """The CRM tables whose row count differs now (or that appeared or disappeared
        since), in schema order: empty when the snapshot matches the data."""
        names = set(self.source_rows) | set(rows_now)
        return [n for n in schema.TABLE_NAMES if n in names and self.source_rows.get(n) != rows_now.get(n)]


def table_rows(conn: sa.Connection | sa.Engine) -> dict[str, int]:
    """Rows of every CRM table present, in one statement: the data version a snapshot keeps."""
    if isinstance(conn, sa.Engine):
        with conn.connect() as connection:
            return table_rows(connection)
    present = existing_tables(conn)
    tables = [t for t in schema.TABLES if t.name in present]
    if not tables:
        return {}
    counts = [sa.select(sa.func.count()).select_from(t).scalar_subquery() for t in tables]
    row = conn.execute(sa.select(*counts)).one()
    return {t.name: int(n) for t, n in zip(tables, row, strict=True)}


# --- sample records as JSON, read back as the same DataFrame ------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, pd.Timestamp | dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, decimal.Decimal):
        return "decimal"
    return "plain"


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it (None for NULL, NaN and NaT)."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:  # NaN
        return None
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if hasattr(value, "item"):  # a numpy scalar
        return _plain(value.item())
    return value


def _restore(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "decimal":
        return decimal.Decimal(value)
    return value


def encode_records(frame: pd.DataFrame) -> str:
    """``frame`` (a finding's records) as JSON: column names, each column's kind (datetime,
    date, decimal or plain) and the rows; :func:`decode_records` builds the same frame."""
    columns = [str(c) for c in frame.columns]
    rows = [list(r) for r in frame.itertuples(index=False, name=None)]
    kinds = []
    for i in range(len(columns)):
        first = next((r[i] for r in rows if _plain(r[i]) is not None), None)
        kinds.append(_kind(first))
    plain = [[_plain(v) for v in r] for r in rows]
    return json.dumps({"columns": columns, "types": kinds, "rows": plain}, separators=(",", ":"))


def decode_records(text: str) -> pd.DataFrame:
    """The frame :func:`encode_records` wrote (built from Python values as a live check
    builds it from database rows, so the dtypes are the same)."""
    data = json.loads(text)
    columns, kinds = data["columns"], data["types"]
    if not data["rows"]:
        return pd.DataFrame(columns=columns)
    rows = [tuple(_restore(v, k) for v, k in zip(r, kinds, strict=True)) for r in data["rows"]]
    return pd.DataFrame(rows, columns=columns)


# --- the store -----------------------------------------------------------------------------


class SnapshotStore(BesideAccounts):
    """The stored report of a CRM database (any SQLAlchemy engine the app may write)."""

    @classmethod
    def open(cls, crm_url: str) -> SnapshotStore:
        """The store of the CRM database ``crm_url``: beside its sign-in accounts."""
        from crm_data import accounts

        return cls(accounts.make_auth_engine(accounts.auth_url(crm_url)), owned=True)

    def _exists(self) -> bool:
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            from pathlib import Path

            if not Path(url.database).exists():
                return False
        with self.engine.connect() as conn:
            return sa.inspect(conn).has_table(state_table.name)

    def read(self) -> Snapshot | None:
        """The stored snapshot, or None (never stored, or cleared)."""
        if not self._exists():
            return None
        with self.engine.connect() as conn:
            state = conn.execute(sa.select(state_table).where(state_table.c.id == 1)).one_or_none()
            if state is None:
                return None
            rows = conn.execute(sa.select(findings_table).order_by(findings_table.c.position)).all()
        findings = [
            Finding(
                r.check_key, r.title, r.table_name, int(r.count), r.description, decode_records(r.records)
            )
            for r in rows
        ]
        report = QualityReport(
            findings, state.computed_at, int(state.stale_days), list(json.loads(state.missing_tables))
        )
        source_rows = {str(k): int(v) for k, v in json.loads(state.source_rows).items()}
        return Snapshot(report, source_rows, int(state.sample_limit))

    def write(
        self, report: QualityReport, source_rows: Mapping[str, int], limit: int = DEFAULT_LIMIT
    ) -> None:
        """Replace the stored snapshot by ``report`` (a whole-database report) and the row
        counts it was computed from, in one transaction."""
        if report.scope is not None:
            raise ValueError("only a whole-database report is stored, not one within a scope")
        with self.engine.begin() as conn:
            metadata.create_all(conn, checkfirst=True)
            conn.execute(findings_table.delete())
            conn.execute(state_table.delete())
            conn.execute(
                state_table.insert().values(
                    id=1,
                    computed_at=report.checked_at,
                    stale_days=report.stale_days,
                    sample_limit=limit,
                    source_rows=json.dumps(dict(source_rows)),
                    missing_tables=json.dumps(list(report.missing_tables)),
                )
            )
            if report.findings:
                conn.execute(
                    findings_table.insert(),
                    [
                        {
                            "position": i,
                            "check_key": f.key,
                            "severity": f.severity,
                            "title": f.title,
                            "table_name": f.table,
                            "count": int(f.count),
                            "description": f.description,
                            "records": encode_records(f.records),
                        }
                        for i, f in enumerate(report.findings)
                    ],
                )

    def clear(self) -> None:
        """Forget the stored snapshot (the page then checks live)."""
        if self._exists():
            with self.engine.begin() as conn:
                conn.execute(findings_table.delete())
                conn.execute(state_table.delete())


def check_and_store(
    crm: sa.Engine | sa.Connection,
    store: SnapshotStore,
    stale_days: int = 90,
    now: dt.datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Snapshot:
    """Check the whole database and store the report with the row counts, counted first (a
    change during the check then shows as "data changed"). Returns what was stored."""
    if isinstance(crm, sa.Engine):
        with crm.connect() as conn:
            return check_and_store(conn, store, stale_days=stale_days, now=now, limit=limit)
    rows = table_rows(crm)
    report = check_database(crm, stale_days=stale_days, now=now, limit=limit)
    store.write(report, rows, limit)
    return Snapshot(report, rows, limit)


def check_scope(
    conn: sa.Connection | sa.Engine,
    scope: Scope | Mapping[str, Any] | None,
    stale_days: int = 90,
    now: dt.datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    snapshot: Snapshot | None = None,
) -> QualityReport:
    """:func:`crm_data.quality.check_database` within ``scope`` — the same report — without
    running again the checks that found nothing in the stored whole-database ``snapshot``
    (default: the one stored beside the database; none, or unreadable: every check runs).

    Their findings are taken from the snapshot (``check_database``'s ``nothing_found``)
    only while it holds for the data: every CRM table has the row count it had then
    (:meth:`Snapshot.changed_tables`, the page's own staleness test) and ``now`` is not
    before the snapshot's check. The stale open deals are always checked (time alone adds
    some). The report names the checks not run again and the snapshot's time."""
    if isinstance(conn, sa.Engine):
        with conn.connect() as connection:
            return check_scope(connection, scope, stale_days, now=now, limit=limit, snapshot=snapshot)
    if now is None:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    elif now.tzinfo is not None:  # naive UTC, as check_database and the stored time
        now = now.astimezone(dt.UTC).replace(tzinfo=None)
    if snapshot is None:
        snapshot = _stored_beside(conn.engine)
    clean: list[Finding] = []
    if (
        snapshot is not None
        and snapshot.report.scope is None
        and snapshot.computed_at <= now
        and not snapshot.changed_tables(table_rows(conn))
    ):
        clean = [f for f in snapshot.report.findings if not f.count and f.key not in GROWING_CHECKS]
    report = check_database(
        conn, stale_days=stale_days, now=now, limit=limit, scope=scope, nothing_found=clean
    )
    if report.reused_checks:
        report.earlier_check_at = snapshot.computed_at  # type: ignore[union-attr]
    return report


def _stored_beside(crm: sa.Engine) -> Snapshot | None:
    """The snapshot stored beside the CRM database, or None (none stored, or not readable,
    e.g. by a database role without access to it)."""
    store = SnapshotStore.beside(crm)
    try:
        return store.read()
    except (sa.exc.SQLAlchemyError, OSError):
        return None
    finally:
        store.dispose()


def store_after_import(crm: sa.Engine, now: dt.datetime | None = None) -> str | None:
    """Keep the stored report current after an import (called after the import's commit):
    when a report is stored, check the database again with its stale days and sample limit
    and store the new one. When none is stored (nobody has run ``check`` or viewed the page
    as an analyst or admin yet), nothing is checked: the whole-database check costs ~20 s
    of CPU at a million accounts, and the page checks live on its first view anyway. Never
    raises for a database problem: returns what went wrong (the snapshot is then cleared,
    so the page checks live rather than showing findings older than the import), or None."""
    with contextlib.ExitStack() as stack:
        store = SnapshotStore.beside(crm)
        stack.callback(store.dispose)
        try:
            stored = store.read()
            if stored is None:
                return None
            check_and_store(crm, store, stale_days=stored.report.stale_days, now=now, limit=stored.limit)
        except (sa.exc.SQLAlchemyError, OSError) as error:
            with contextlib.suppress(sa.exc.SQLAlchemyError, OSError):
                store.clear()
            damage = explain_database_error(error, crm.url)  # e.g. a damaged block found by the check
            return damage or f"the data-quality snapshot was not stored: {getattr(error, 'orig', error)}"
    return None


@contextlib.contextmanager
def opened(crm_url: str) -> Iterator[SnapshotStore]:
    """:meth:`SnapshotStore.open`, disposed afterwards."""
    store = SnapshotStore.open(crm_url)
    try:
        yield store
    finally:
        store.dispose()
