"""The Data quality page's report: the stored one, or checked now.

* Whole database (a user without a restricted scope): the report stored by ``python -m
  crm_data check``, by every import and by this page (:mod:`crm_data.quality_snapshot`),
  read at most every ``SNAPSHOT_TTL`` seconds, with its age and — when a CRM table's row
  count now (read at most every ``ROWS_TTL`` seconds) differs from the one stored with it —
  the tables whose data changed since. None stored: checked now, and stored when the user
  may re-check (analysts and admins: :data:`RECHECK_ROLE`).
* A restricted scope: checked now within it (``ui.data.call``'s cache; the page calls
  ``crm_data.quality_snapshot.check_scope``): the stored report covers the whole database and
  keeps only a few records per finding, so a scope's counts cannot be taken from it — but
  the checks that found nothing in it are not run again while the data are the same.
* Another stale-deal threshold than the stored report's: that one check is run now.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

import sqlalchemy as sa
import streamlit as st

from crm_data.engines import database_url
from crm_data.quality import QualityReport, check_database
from crm_data.quality_snapshot import Snapshot, SnapshotStore, table_rows
from ui import data

SNAPSHOT_TTL = 30  # seconds a read snapshot is reused (another process may store a new one)
ROWS_TTL = 60  # seconds the CRM tables' row counts are reused for "data changed since"
#: The role that may re-check (and so store) the whole database's report.
RECHECK_ROLE = "analyst"


@dataclass
class Shown:
    """What the page shows: the report, the stored snapshot it comes from (None: checked
    now and not stored), the tables changed since, and why storing failed (if it did)."""

    report: QualityReport
    snapshot: Snapshot | None = None
    changed: list[str] = field(default_factory=list)
    problem: str | None = None


@st.cache_resource(show_spinner=False)
def _store(url: str) -> SnapshotStore:
    return SnapshotStore.open(url)


@st.cache_data(ttl=SNAPSHOT_TTL, show_spinner=False)
def _snapshot(url: str) -> Snapshot | None:
    return _store(url).read()


@st.cache_data(ttl=ROWS_TTL, show_spinner=False)
def _rows_now(url: str) -> dict[str, int]:
    return table_rows(data.engine())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def age(then: dt.datetime, now: dt.datetime | None = None) -> str:
    """How long ago ``then`` (naive UTC) was: "just now", "5 min ago", "2 h ago", "3 days ago"."""
    seconds = ((now or _now()) - then).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


def _reason(error: BaseException) -> str:
    return " ".join(str(getattr(error, "orig", error) or error).split())[:300]


def recheck(stale_days: int) -> Shown:
    """Check the whole database now and store the report (the counts first: a change during
    the check shows as "data changed"); when it cannot be stored, the report is shown all
    the same with the reason."""
    url = database_url()
    with data.engine().connect() as conn:
        rows = table_rows(conn)
        report = check_database(conn, stale_days=stale_days)
    snapshot = Snapshot(report, rows)
    try:
        _store(url).write(report, rows)
    except (sa.exc.SQLAlchemyError, OSError) as error:
        return Shown(
            report, problem=f"The report could not be stored ({_reason(error)}): shown all the same."
        )
    finally:
        _snapshot.clear()
        _rows_now.clear()
    return Shown(report, snapshot)


def whole_database(stale_days: int, may_store: bool) -> Shown:
    """The whole database's report: the stored one (the stale-deal check run now when
    ``stale_days`` differs from its), else checked now — and stored when ``may_store``."""
    url = database_url()
    try:
        snapshot = _snapshot(url)
    except (sa.exc.SQLAlchemyError, OSError) as error:  # e.g. a role that may not read it
        live = data.call(check_database, stale_days=stale_days)
        return Shown(live, problem=f"The stored report cannot be read ({_reason(error)}): checked now.")
    if snapshot is None:
        if may_store:
            return recheck(stale_days)
        return Shown(data.call(check_database, stale_days=stale_days))
    report = snapshot.report
    if report.stale_days != stale_days:
        live = data.call(check_database, stale_days=stale_days, checks=("stale_open_deals",))
        now_found = {f.key: f for f in live.findings}
        findings = [now_found.get(f.key, f) for f in report.findings]
        report = replace(report, findings=findings, stale_days=stale_days)
    changed = snapshot.changed_tables(_rows_now(url))
    return Shown(report, snapshot, changed)
