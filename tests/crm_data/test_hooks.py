"""crm_data.hooks and crm_data.derived: the data layer reports changed tables and keeps
derived tables honest without knowing the KPI layer.

* Wired (``kpis.rollups.listen``, as the command line, the Import page and the test
  fixtures do): an import refreshes the roll-ups (tests/kpis/test_incremental_rollups.py
  checks the numbers).
* Unwired (an analyst calling ``crm_data.importing`` from Python): the import commits, the
  roll-ups depending on a changed table lose their state, the others keep it, and the KPIs
  read the base tables — the same numbers as ``CRM_ROLLUPS=off`` — until a refresh.
* A listener is trusted only for the derived tables it says it brought up to date.
* The data layer's modules load without the KPI layer; its scope conditions are
  ``kpis.filters.scope``'s.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import derived, hooks, schema
from crm_data.importing import import_paths
from crm_data.scope import Scope, conditions
from kpis import first_contact_resolution, rollups, stage_visits, win_rate
from kpis.filters import Filters
from kpis.filters import scope as kpi_scope
from tests.crm_data.test_importing import ROLLUP_BUNDLE, write_bundle

Q1_2024 = Filters("2024-01-01", "2024-04-01")
TICKET = "ticket_id,account_id,opened_at,resolved_at,contacts_until_resolved\nT9,A2,2024-03-02,2024-03-03,1\n"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def imported(db: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    rollups.listen()
    assert import_paths(db, [write_bundle(tmp_path / "bundle", ROLLUP_BUNDLE)]).ok
    with db.connect() as conn:
        assert set(derived.built(conn)) == set(rollups.DERIVED)
    return db


def test_unwired_import_invalidates_the_rollups_of_the_changed_tables(
    imported: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hooks.unwired():
        assert hooks.listeners() == ()
        report = import_paths(imported, [write_bundle(tmp_path / "ticket", {"tickets": TICKET})])
    assert report.ok, report.render()
    assert rollups.on_tables_changed in hooks.listeners()  # restored
    with imported.connect() as conn:
        built = set(derived.built(conn))
        # the stored stage visits do not depend on tickets: kept
        assert built == set(rollups.DERIVED) - {rollups.FIRST_CONTACT_RESOLUTION.name}
        periods = [pd.Timestamp(2024, m, 1) for m in (1, 2, 3)]
        assert rollups.read(conn, rollups.FIRST_CONTACT_RESOLUTION, Q1_2024, "month", periods) is None
        assert rollups.read(conn, rollups.WIN_RATE, Q1_2024, "month", periods) is not None
    # never a wrong number: the base tables answer, with the new ticket
    fcr = first_contact_resolution(imported, Q1_2024, "month")
    monkeypatch.setenv("CRM_ROLLUPS", "off")
    pd.testing.assert_frame_equal(fcr, first_contact_resolution(imported, Q1_2024, "month"))
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    # the full rebuild (python -m crm_data rollups) brings it back
    rollups.refresh_database(imported)
    with imported.connect() as conn:
        assert set(derived.built(conn)) == set(rollups.DERIVED)
    pd.testing.assert_frame_equal(fcr, first_contact_resolution(imported, Q1_2024, "month"))


def test_a_listener_is_trusted_only_for_what_it_refreshed(imported: sa.Engine) -> None:
    seen: list[hooks.Change] = []

    def only_win_rate(conn: sa.Connection, change: hooks.Change) -> list[str]:
        seen.append(change)
        return [rollups.WIN_RATE.name]

    every = hooks.Change.unknown(["accounts"])
    with hooks.unwired():
        hooks.add_listener(only_win_rate)
        hooks.add_listener(only_win_rate)  # once
        assert hooks.listeners() == (only_win_rate,)
        with imported.begin() as conn:
            gone = hooks.tables_changed(conn, every)
            assert hooks.tables_changed(conn, hooks.Change({})) == []  # nothing changed: no call
        hooks.remove_listener(only_win_rate)
        assert hooks.listeners() == ()
    assert seen == [every]
    assert sorted(gone) == sorted(r.name for r in rollups.ROLLUPS if r is not rollups.WIN_RATE)
    with imported.connect() as conn:
        # the stored stage visits do not depend on accounts: kept
        assert set(derived.built(conn)) == {rollups.WIN_RATE.name, stage_visits.NAME}
    assert win_rate(imported, Q1_2024, "month")["won"].sum() > 0


def test_committed_listeners_run_after_the_commit_and_report_warnings(db: sa.Engine, tmp_path: Path) -> None:
    """A committed listener runs once the import is committed (another connection sees its
    rows), once per import that changed rows; what it could not do is a warning of the
    import, which still succeeded."""
    seen: list[tuple[list[str], int]] = []

    def after(engine: sa.Engine, change: hooks.Change) -> str | None:
        with engine.connect() as conn:  # a connection of its own: the import's rows are committed
            accounts = conn.execute(sa.select(sa.func.count()).select_from(schema.accounts)).scalar_one()
        seen.append((sorted(change.names), accounts))
        return "the listener could not do its work"

    bundle = {"accounts": "account_id,name,created_at\nA1,Acme Inc,2024-03-01\n"}
    before = hooks.committed_listeners()  # the command line's, when a test ran it in this process
    with hooks.unwired():
        hooks.add_committed_listener(after)
        hooks.add_committed_listener(after)  # once
        assert hooks.committed_listeners() == (after,) and hooks.listeners() == ()
        report = import_paths(db, [write_bundle(tmp_path / "one", bundle)])
        assert report.ok and report.committed, report.render()
        assert seen == [(["accounts"], 1)]
        assert [w.reason for w in report.warnings] == ["the listener could not do its work"]
        assert report.warnings[0].level == "warning"
        again = import_paths(db, [write_bundle(tmp_path / "one", bundle)])  # no row changed: not told
        assert again.ok and seen == [(["accounts"], 1)] and again.warnings == []
        assert hooks.tables_committed(db, hooks.Change({})) == []  # nothing changed: no call
        hooks.remove_committed_listener(after)
        assert hooks.committed_listeners() == ()
    assert hooks.committed_listeners() == before  # restored


def test_state_without_recorded_sources_depends_on_every_table(imported: sa.Engine) -> None:
    """A state row written before ``rollup_sources`` existed: any change invalidates it, and
    the stale check counts every CRM table for it (so reports it until it is rebuilt)."""
    with imported.begin() as conn:
        conn.execute(derived.sources.delete().where(derived.sources.c.rollup == rollups.REVENUE.name))
        depends = derived.dependencies(conn)
        assert depends[rollups.REVENUE.name] == frozenset(derived.CRM_TABLES)
        assert depends[rollups.WIN_RATE.name] == {"accounts", "deals"}
        assert list(derived.stale(conn)["rollup"]) == [rollups.REVENUE.name]
        assert derived.invalidate(conn, ["products"]) == [rollups.REVENUE.name]


def test_derived_table_names_start_with_the_prefix(db: sa.Engine) -> None:
    with db.begin() as conn, pytest.raises(ValueError, match="rollup_"):
        derived.record(conn, "summary", ["accounts"], 202401, 202412, 0, 0)


def test_the_data_layer_loads_without_the_kpi_layer() -> None:
    code = (
        "import sys\n"
        "import crm_data.importing, crm_data.demo, crm_data.quality, crm_data.pg_scope, crm_data.hooks\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kpis', 'forecasting', 'ui', 'streamlit')))\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert found.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "scope",
    [
        Scope(regions=["EMEA"]),
        Scope(segments=["SMB", "Enterprise"], owners=["u1"]),
        Scope(owners=[]),
        Scope(countries=[]),
        Scope(),
    ],
)
@pytest.mark.parametrize("table", ["accounts", "deals", "interactions", "tickets", "web_traffic", "users"])
def test_scope_conditions_are_the_kpi_layers(scope: Scope, table: str) -> None:
    t = schema.metadata.tables[table]
    ours = [str(c.compile(compile_kwargs={"literal_binds": True})) for c in conditions(scope, t)]
    only_scope = Filters(dt.date.min, dt.date.min, scope=scope)
    theirs = [str(c.compile(compile_kwargs={"literal_binds": True})) for c in kpi_scope(only_scope, t)]
    assert ours == theirs
