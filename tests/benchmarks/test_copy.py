"""``benchmarks.copy``: a demo DuckDB file copied into PostgreSQL holds the same rows, every
table ends with the indexes and foreign keys its schema declares (they are created after the
rows there, as an import's bulk load does), and the Forecast page's default forecast is
stored in the copy, as the demo stored it beside the DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from benchmarks.copy import copy_database
from crm_data import schema
from forecasting import store as forecast_store
from tests.conftest import scratch_postgres_database, write_demo_database


def _catalog(engine: sa.Engine) -> list[tuple[str, str]]:
    """The indexes and constraints of the canonical tables (not of the roll-ups)."""
    names = {"names": list(schema.TABLE_NAMES)}
    with engine.connect() as conn:
        indexes = conn.execute(
            sa.text(
                "SELECT indexname, indexdef FROM pg_indexes"
                " WHERE schemaname = 'public' AND tablename = ANY(:names) ORDER BY 1"
            ),
            names,
        ).all()
        keys = conn.execute(
            sa.text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text = ANY(:names) ORDER BY 1"
            ),
            names,
        ).all()
    return [tuple(r) for r in [*indexes, *keys]]


def test_copy_into_postgresql_keeps_rows_indexes_and_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = write_demo_database(tmp_path, 150, 3)
    monkeypatch.setenv(forecast_store.STORE_VARIABLE, "on")
    source = url.removeprefix("duckdb:///")
    with scratch_postgres_database("crm_copy") as target, scratch_postgres_database("crm_schema") as empty:
        counts = copy_database(source, target, progress=False)
        reference = sa.create_engine(empty)
        schema.metadata.create_all(reference)
        engine = sa.create_engine(target)
        try:
            assert _catalog(engine) == _catalog(reference)
            with duckdb.connect(source, read_only=True) as con, engine.connect() as conn:
                for table in schema.TABLES:
                    order = ", ".join(f'"{c.name}"' for c in table.columns)
                    expected = con.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0]
                    assert counts[table.name] == expected
                    got = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                    assert got == expected, table.name
                    if table is schema.deals:
                        rows = con.execute(f'SELECT {order} FROM "deals" ORDER BY {order}').fetchall()
                        assert [
                            tuple(r) for r in conn.execute(sa.select(table).order_by(*table.columns))
                        ] == rows
            # the page's default forecast is stored: computing it ahead again finds it
            store = forecast_store.ForecastStore.beside(engine)
            assert store is not None
            again = forecast_store.compute_ahead(engine, store)
            assert [(a.computed, a.stored) for a in again] == [(False, True)]
        finally:
            engine.dispose()
            reference.dispose()
