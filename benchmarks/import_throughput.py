"""Import throughput into PostgreSQL: the deals of a benchmark DuckDB file as a canonical
``deals.csv``, imported (``crm_data.importing``) into a scratch database that already holds
the file's accounts, users, products and pipeline stages (and their KPI roll-ups), vacuumed
and analysed.

Each phase of the import — reading the CSV, validating, writing, refreshing the roll-ups —
is timed by the import's own progress steps: CPU seconds of this process (``client``) and of
its PostgreSQL backend (``server``, read from ``/proc``: the server must run on this
machine), and wall seconds. ``--again`` imports the same file a second time (nothing
changes). The scratch database is dropped afterwards.

    python -m benchmarks.import_throughput /work/bench/M.duckdb --again
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
import sqlalchemy as sa

from crm_data import schema
from crm_data.bulk import bulk_insert
from crm_data.engines import make_engine
from crm_data.importing import import_tables, read_bundle
from kpis.rollups import refresh_database

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PARENTS = (schema.users, schema.products, schema.pipeline_stages, schema.accounts)
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    """One step of an import: ``client`` / ``server`` CPU seconds and ``wall`` seconds."""

    name: str
    client: float
    server: float
    wall: float


def export_deals(source: str, folder: Path) -> tuple[int, dt.date]:
    """Write the DuckDB file's deals as ``folder/deals.csv`` (ISO 8601 UTC timestamps); return
    the row count and the day after the latest timestamp (the data's own today)."""
    con = duckdb.connect(source, read_only=True)
    try:
        columns = [c.name for c in schema.deals.columns]
        have = {r[0] for r in con.execute("DESCRIBE deals").fetchall()}
        shown = [
            f"strftime({c}, '%Y-%m-%dT%H:%M:%SZ') AS {c}" if c in ("created_at", "closed_at") else c
            for c in columns
            if c in have
        ]
        target = str(folder / "deals.csv").replace("'", "''")
        con.execute(f"COPY (SELECT {', '.join(shown)} FROM deals ORDER BY deal_id) TO '{target}' (HEADER)")
        rows, latest = con.execute(
            "SELECT count(*), max(greatest(created_at, coalesce(closed_at, created_at))) FROM deals"
        ).fetchone()
    finally:
        con.close()
    return int(rows), (latest.date() if latest else dt.date.today()) + dt.timedelta(days=1)


def _backend_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def measure(source: str, admin_url: str = ADMIN_URL, again: bool = False) -> tuple[int, list[Phase]]:
    """Import the deals of ``source`` into a scratch database on ``admin_url``'s server; return
    the row count and the timed phases (``first: …``, and ``again: …`` with ``again``)."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"crm_import_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = make_engine(sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False))
    pids: list[int] = []

    @sa.event.listens_for(engine, "connect")
    def _remember_backend(dbapi_connection: object, record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        pids.append(cursor.fetchone()[0])
        cursor.close()

    try:
        con = duckdb.connect(source, read_only=True)
        try:
            with engine.begin() as conn:
                schema.metadata.create_all(conn)
                for table in PARENTS:
                    columns = ", ".join(f'"{c.name}"' for c in table.columns)
                    bulk_insert(conn, table, con.execute(f'SELECT {columns} FROM "{table.name}"').df())
        finally:
            con.close()
        refresh_database(engine)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")  # as a database in use would be
        phases: list[Phase] = []
        with tempfile.TemporaryDirectory() as folder:
            rows, today = export_deals(source, Path(folder))
            for label in ("first", "again") if again else ("first",):
                marks: list[tuple[str, float, float, float]] = []

                def mark(step: str, label: str = label, marks: list = marks) -> None:
                    marks.append(
                        (f"{label}: {step}", time.process_time(), _backend_cpu(pids), time.perf_counter())
                    )

                mark("read")
                inputs, issues = read_bundle([folder])
                if issues:
                    raise RuntimeError("; ".join(str(i) for i in issues))
                report = import_tables(engine, inputs, progress=lambda f, m: mark(m), today=today)
                if not report.ok:
                    raise RuntimeError(report.render())
                phases += [
                    Phase(step, c2 - c1, s2 - s1, w2 - w1)
                    for (step, c1, s1, w1), (_, c2, s2, w2) in itertools.pairwise(marks)
                ]
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    return rows, phases


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="a benchmark DuckDB file (read only)")
    parser.add_argument("--admin-url", default=ADMIN_URL, help="a PostgreSQL URL allowed to CREATE DATABASE")
    parser.add_argument("--again", action="store_true", help="import the same file a second time")
    args = parser.parse_args()
    rows, phases = measure(args.source, args.admin_url, args.again)
    for phase in phases:
        print(
            f"{phase.name:40s} client {phase.client:6.2f}  server {phase.server:6.2f}  wall {phase.wall:6.2f}"
        )
    imported = [p for p in phases if p.name.startswith("first:") and "roll-ups" not in p.name]
    cpu = sum(p.client + p.server for p in imported)
    print(f"{rows:,} deals: {cpu:.2f} s CPU without the roll-ups = {rows / cpu:,.0f} rows per CPU second")


if __name__ == "__main__":
    main()
