"""Copy a benchmark DuckDB database into SQLite or PostgreSQL, table by table.

The SQLite and PostgreSQL figures must be on the very same rows as the DuckDB ones, so the
other databases are filled from the DuckDB file (through ``crm_data.bulk.bulk_insert``,
the product's per-dialect bulk path) rather than by running the demo generator again. On
PostgreSQL each table is loaded as an import's bulk load is (``crm_data.bulk.deferred_indexes``:
its secondary indexes and foreign keys are created after its rows). Then, as an import does,
the KPI roll-ups are built and the revenue forecast the Forecast page opens on is computed
and stored beside the copy (``forecasting.store.compute_ahead``): the demo stored it beside
the DuckDB file, so without it the Forecast page on the copy fitted the models (2–3 s) where
the DuckDB file read them back, and ``python -m benchmarks.pages --versus`` compared a fit
with a lookup (docs/performance.md, session 13, branch ``pgm3``).

    python -m benchmarks.copy benchmarks/data/M.duckdb sqlite:///benchmarks/data/M.sqlite
"""

from __future__ import annotations

import argparse
import time

import duckdb
import sqlalchemy as sa

from crm_data import dialects, schema
from crm_data.bulk import bulk_insert, deferred_indexes
from crm_data.engines import make_engine
from kpis.rollups import refresh_database

CHUNK_ROWS = 489_472  # 239 of DuckDB's 2,048-row vectors
VECTOR_ROWS = 2_048


def copy_database(duckdb_path: str, target_url: str, progress: bool = True) -> dict[str, int]:
    """Replace every canonical table at ``target_url`` with the DuckDB file's rows, then
    build the KPI roll-ups there and store the Forecast page's default forecast beside it
    (as an import would; not when ``$CRM_FORECAST_STORE`` is not ``on``)."""
    source = duckdb.connect(duckdb_path, read_only=True)
    engine = make_engine(target_url)
    counts: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            schema.metadata.drop_all(conn)
            schema.metadata.create_all(conn)
        for table in schema.TABLES:
            began = time.perf_counter()
            total = source.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0]
            columns = ", ".join(f'"{c.name}"' for c in table.columns)
            order = ", ".join(f'"{c.name}"' for c in table.primary_key.columns) or "1"
            written = 0
            with engine.begin() as conn, deferred_indexes(conn, table):
                # one ordered scan read in batches (a LIMIT/OFFSET page per chunk re-ran the
                # top-N of every row before it: quadratic in the table's size)
                result = source.execute(f'SELECT {columns} FROM "{table.name}" ORDER BY {order}')
                while written < total:
                    # DuckDB's own DataFrame conversion (as .df()), CHUNK_ROWS rows at a time
                    frame = result.fetch_df_chunk(CHUNK_ROWS // VECTOR_ROWS)
                    if frame.empty:
                        break
                    written += bulk_insert(conn, table, frame)
            counts[table.name] = written
            if progress:
                print(
                    f"  {table.name:22s} {written:>12,} rows in {time.perf_counter() - began:6.1f} s",
                    flush=True,
                )
        with engine.begin() as conn:
            dialects.analyze(conn)  # the roll-up build below plans with the loaded tables' statistics
        began = time.perf_counter()
        written = refresh_database(engine)  # as the product's import does
        if progress:
            print(
                f"  KPI roll-ups {sum(written.values()):>18,} rows in {time.perf_counter() - began:6.1f} s",
                flush=True,
            )
        if engine.dialect.name == "postgresql":
            # and the roll-up tables'; VACUUM also marks the pages all-visible, which the
            # index-only scans of the covering indexes need (autovacuum would, later)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        else:
            with engine.begin() as conn:
                dialects.analyze(conn)  # and the roll-up tables'
        _store_forecasts(engine, progress)
    finally:
        source.close()
        engine.dispose()
    return counts


def _store_forecasts(engine: sa.Engine, progress: bool) -> None:
    """The forecasts an import computes ahead (``forecasting.store.compute_ahead``), stored
    beside the copy: in the database itself on PostgreSQL, a file beside SQLite's."""
    from forecasting import store as forecast_store

    try:
        done = forecast_store.compute_ahead_beside(engine)
    finally:
        forecast_store.forget_opened()  # a file store's engine (SQLite), kept per process
    if progress:
        for ahead in done:
            print(f"  {ahead.line()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("duckdb_path")
    parser.add_argument("target_url")
    args = parser.parse_args()
    began = time.perf_counter()
    counts = copy_database(args.duckdb_path, args.target_url)
    print(f"copied {sum(counts.values()):,} rows in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
