"""kpis.rollups' full build (:func:`kpis.rollups.refresh`): a roll-up whose measures add up
over months reads its records once, for the months, and sums its quarters and years from
its month rows; one with a per-account months table (distinct accounts) reads them for the
months too and counts its quarters and years from that table; the others read their
records for every grain. Both ways give the same
rows as reading the records for every grain (the build before this change). On DuckDB,
SQLite and PostgreSQL (the ``db`` fixture), on tests/kpis/test_rollups.py's data.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pytest
import sqlalchemy as sa

from kpis import rollups
from tests.kpis.test_incremental_rollups import assert_same_tables, snapshot
from tests.kpis.test_rollups import load_everything

TODAY = dt.date(2025, 12, 31)


def test_quarters_and_years_of_additive_rollups_are_summed_from_their_months(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    load_everything(db)
    from_records: dict[str, list[str]] = defaultdict(list)
    from_months: dict[str, list[str]] = defaultdict(list)
    insert, insert_from_months = rollups._insert, rollups._insert_from_months

    def spy_insert(conn: sa.Connection, rollup: rollups.Rollup, grain: str, periods: list) -> int | None:
        from_records[rollup.name].append(grain)
        return insert(conn, rollup, grain, periods)

    def spy_from_months(conn: sa.Connection, rollup: rollups.Rollup, grain: str, periods: list) -> int | None:
        from_months[rollup.name].append(grain)
        return insert_from_months(conn, rollup, grain, periods)

    monkeypatch.setattr(rollups, "_insert", spy_insert)
    monkeypatch.setattr(rollups, "_insert_from_months", spy_from_months)
    rollups.refresh_database(db, TODAY)
    for rollup in rollups.ROLLUPS:
        if rollup.months_add_up:
            assert from_records[rollup.name] == ["month"], rollup.name
            assert from_months[rollup.name] == ["quarter", "year"], rollup.name
        elif rollup.months_table is not None:
            assert from_records[rollup.name] == ["month"], rollup.name
            assert rollup.name not in from_months
        else:
            assert from_records[rollup.name] == ["month", "quarter", "year"], rollup.name
            assert rollup.name not in from_months
    assert any(r.months_add_up for r in rollups.ROLLUPS)
    assert any(not r.months_add_up and r.months_table is None for r in rollups.ROLLUPS)
    built = snapshot(db)
    assert all(len(frame) for frame in built.values())

    # every grain from the records, as the full build did before
    monkeypatch.setattr(rollups, "_insert_from_months", insert)
    rollups.refresh_database(db, TODAY)
    assert_same_tables(built, snapshot(db))
