"""The Data quality page with a stored report: its age (time pinned), the note when the
data changed since, "Re-check now", storing on the first view, and a scoped user who gets
the findings of the scope, not the stored whole-database report.

The stored report goes to a per-test SQLite file (``CRM_AUTH_DATABASE_URL``, where it lives
beside the sign-in accounts), so the shared demo database and the other tests are untouched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import time_machine
from streamlit.testing.v1 import AppTest

from crm_data.quality import check_database
from crm_data.quality_snapshot import SnapshotStore, check_and_store, table_rows
from kpis.filters import Scope
from tests.ui.test_auth import accounts, sign_in  # noqa: F401 (the fixture)

CHECKED = dt.datetime(2026, 12, 6, 14, 2)
PAGE = "pages/7_Data_quality.py"


@pytest.fixture
def store(app_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SnapshotStore]:
    """The demo database's snapshot store, in this test's own file."""
    monkeypatch.setenv("CRM_AUTH_DATABASE_URL", f"sqlite:///{tmp_path / 'auth.sqlite'}")
    opened = SnapshotStore.open(app_db)
    yield opened
    opened.dispose()


def _at(moment: dt.datetime) -> time_machine.travel:
    return time_machine.travel(moment.replace(tzinfo=dt.UTC), tick=False)


def _captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def _counts(at: AppTest) -> dict[str, int]:
    summary = at.dataframe[0].value
    return dict(zip(summary["check"], summary["records"], strict=True))


def test_the_stored_report_is_shown_with_its_age(app, demo_engine, store) -> None:
    stored = check_and_store(demo_engine, store, now=CHECKED)
    with _at(CHECKED + dt.timedelta(hours=2, minutes=5)):
        at = app(PAGE).run()
    assert not at.exception and not at.error
    assert "Checked 2 h ago (at 2026-12-06 14:02 UTC)" in " ".join(_captions(at))
    assert _counts(at) == {f.title: f.count for f in stored.report.findings}
    assert not any("data changed" in w.value for w in at.warning)
    assert [b.label for b in at.button if b.label == "Re-check now"] == ["Re-check now"]  # an admin
    with _at(CHECKED + dt.timedelta(minutes=4)):
        at = app(PAGE).run()
    assert "Checked 4 min ago (at 2026-12-06 14:02 UTC)" in " ".join(_captions(at))


def test_a_change_in_the_data_since_is_said(app, demo_engine, store) -> None:
    report = check_database(demo_engine, now=CHECKED)
    rows = table_rows(demo_engine)
    store.write(report, {**rows, "payments": rows["payments"] - 1})  # one payment fewer than now
    with _at(CHECKED + dt.timedelta(days=3)):
        at = app(PAGE).run()
    assert not at.exception
    assert "Checked 3 days ago (at 2026-12-06 14:02 UTC)" in " ".join(_captions(at))
    notes = [w.value for w in at.warning if "data changed" in w.value]
    assert notes and "rows added or removed in payments" in notes[0]
    assert "Re-check now" in notes[0]


def test_recheck_now_stores_a_new_report(app, demo_engine, store) -> None:
    report = check_database(demo_engine, now=CHECKED)
    rows = table_rows(demo_engine)
    store.write(report, {**rows, "payments": rows["payments"] - 1})
    later = CHECKED + dt.timedelta(days=1)
    with _at(later):
        at = app(PAGE).run()
        at.button(key="quality_recheck").click().run()
    assert not at.exception
    assert "Checked just now (at 2026-12-07 14:02 UTC)" in " ".join(_captions(at))
    assert not any("data changed" in w.value for w in at.warning)
    again = store.read()
    assert again is not None and again.computed_at == later
    assert again.changed_tables(table_rows(demo_engine)) == []
    assert _counts(at) == {f.title: f.count for f in check_database(demo_engine, now=later).findings}


def test_without_a_stored_report_the_first_view_checks_and_stores(app, demo_engine, store) -> None:
    assert store.read() is None
    with _at(CHECKED):
        at = app(PAGE).run()
    assert not at.exception
    assert "Checked just now (at 2026-12-06 14:02 UTC)" in " ".join(_captions(at))
    stored = store.read()
    assert stored is not None and stored.computed_at == CHECKED
    assert _counts(at) == {f.title: f.count for f in stored.report.findings}


def test_another_stale_deal_threshold_is_checked_now(app, demo_engine, store) -> None:
    check_and_store(demo_engine, store, now=CHECKED)
    with _at(CHECKED + dt.timedelta(hours=1)):
        at = app(PAGE).run()
        at.number_input(key="quality_stale_days").set_value(30).run()
    assert not at.exception
    assert "stale open deals checked now for 30 days" in " ".join(_captions(at))
    expected = check_database(demo_engine, stale_days=30, now=CHECKED + dt.timedelta(hours=1))
    assert _counts(at)["Stale open deals"] == expected.finding("stale_open_deals").count
    stored = store.read()
    assert stored is not None and stored.report.stale_days == 90  # the stored report is left as it was


def test_a_scoped_user_gets_the_scope_not_the_stored_report(app, accounts, demo_engine) -> None:  # noqa: F811
    """The stored report covers the whole database: an EMEA analyst gets EMEA's findings
    (checked now), and no button re-checks the whole database for them."""
    store, _regions = accounts
    store.add(
        "emea", role="analyst", scope={"regions": ["EMEA"]}, password="a long enough password", actor="t"
    )
    from ui import auth

    auth.forget_accounts()
    snapshots = SnapshotStore.open(str(demo_engine.url))
    try:
        whole = check_and_store(demo_engine, snapshots, now=CHECKED).report
    finally:
        snapshots.dispose()
    later = CHECKED + dt.timedelta(hours=3)
    emea = check_database(demo_engine, stale_days=90, scope=Scope(regions=("EMEA",)), now=later)
    assert {f.title: f.count for f in emea.findings} != {f.title: f.count for f in whole.findings}
    with _at(later):
        at = app(PAGE).run()
        sign_in(at, "emea")
    assert not at.exception
    assert _counts(at) == {f.title: f.count for f in emea.findings}
    # the checks clean in the stored whole-database report (the same data) were not run again
    in_scope = {f.key for f in emea.findings}
    clean = [f for f in whole.findings if not f.count and f.key in in_scope and f.key != "stale_open_deals"]
    assert (
        clean
        and f"{len(clean)} checks that found nothing in the whole database 3 h ago not run again"
        in (" ".join(_captions(at)))
    )
    assert not [b for b in at.button if b.label == "Re-check now"]
    assert not any("data changed" in w.value for w in at.warning)
