"""Freshness: how long an import of one month of new records spends refreshing the KPI
roll-ups (incremental: only the periods it touches), against a full rebuild.

The month: the records of the 31 days before the data's last month (payments, costs,
survey responses, deals, tickets, subscriptions started then) and the accounts created
then, copied under new keys (``N`` + key) and moved 31 days later, so they end on the
data's last day (records with a date after it left out; a subscription's end may be
planned); records keep their account. It is imported through
``crm_data.importing.import_tables`` with the roll-ups wired (``kpis.rollups.listen``),
timing the listener; then ``kpis.rollups.refresh`` (``python -m crm_data rollups``) is
timed on the same data. The database is CHANGED: run it on a copy.

    python -m benchmarks.refresh postgresql+psycopg://postgres@127.0.0.1:5432/crm_layers_m [--no-full]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from crm_data import hooks, schema
from crm_data.engines import make_engine
from crm_data.importing import TableInput, import_tables
from kpis import rollups

#: Table -> the column that dates a record (its window), and the columns moved by 31 days.
RECORDS = {
    "accounts": ("created_at", ("created_at",)),
    "subscriptions": ("started_at", ("started_at", "ended_at")),
    "payments": ("paid_at", ("paid_at",)),
    "costs": ("incurred_on", ("incurred_on",)),
    "survey_responses": ("responded_at", ("responded_at",)),
    "deals": ("created_at", ("created_at", "closed_at")),
    "tickets": ("opened_at", ("opened_at", "first_response_at", "resolved_at")),
}
SHIFT = dt.timedelta(days=31)
#: Columns that point at a record copied under a new key.
RENAMED = {"ticket_id", "deal_id", "contact_id"}


def month_of_records(engine: sa.Engine) -> tuple[list[TableInput], dt.date]:
    """The new month (see the module docstring) and the day after its last record."""
    with engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(schema.payments.c.paid_at))).scalar_one()
        end = pd.Timestamp(str(last)).normalize() - SHIFT + pd.Timedelta(days=1)
        start = end - SHIFT
        inputs = []
        for name, (dated, moved) in RECORDS.items():
            table = schema.metadata.tables[name]
            column = table.c[dated]
            low, high = (start.date(), end.date()) if name == "costs" else (start, end)
            frame = pd.DataFrame(
                conn.execute(sa.select(table).where(column >= low, column < high)).mappings().all()
            )
            if frame.empty:
                continue
            key = table.primary_key.columns[0].name
            frame[key] = "N" + frame[key].astype(str)
            if name == "accounts":
                frame = frame.assign(name=frame["name"] + " (new)")
            for c in moved:
                frame[c] = pd.to_datetime(frame[c]) + SHIFT
                if name == "costs":
                    frame[c] = frame[c].dt.date
            if name != "subscriptions":  # no event after the new today (ends may be planned)
                after = pd.Timestamp(end + SHIFT)
                frame = frame[
                    ~pd.concat([pd.to_datetime(frame[c]) >= after for c in moved], axis=1).any(axis=1)
                ]
            for c in RENAMED & set(frame.columns) - {key}:
                frame[c] = None  # the copies do not point at other copies
            inputs.append(TableInput(name, frame, f"benchmark:{name}"))
    return inputs, (end + SHIFT).date()


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu(conn: sa.Connection) -> float:
    """CPU seconds of the PostgreSQL backend serving ``conn`` so far (read from /proc: the
    server runs on this machine; parallel workers not included); 0 on other databases."""
    if conn.dialect.name != "postgresql":
        return 0.0
    pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="a COPY of a benchmark database (it is changed)")
    parser.add_argument(
        "--no-full",
        action="store_true",
        help="skip the full rebuild after the import (≈ 8 min of PostgreSQL at L)",
    )
    args = parser.parse_args()
    engine = make_engine(args.url)
    inputs, today = month_of_records(engine)
    with engine.begin() as conn:
        # roll-ups built by an earlier version (without the revenue's per-account months)
        # are rebuilt first, as the first import after an upgrade would: not timed
        wall = time.perf_counter()
        upgraded = rollups.update(conn, hooks.Change({}, today))
        print(f"roll-ups current before the import ({time.perf_counter() - wall:.1f} s wall): {upgraded}")
    print("new records:", {i.table: len(i.frame) for i in inputs}, "today:", today)
    timings: dict[str, tuple[float, float, float]] = {}
    real_update = rollups.update

    def timed_update(conn: sa.Connection, change: object) -> list[str]:
        wall, own, server = time.perf_counter(), cpu(), server_cpu(conn)
        try:
            return real_update(conn, change)  # type: ignore[arg-type]
        finally:
            spent = (time.perf_counter() - wall, cpu() - own, server_cpu(conn) - server)
            timings["incremental refresh"] = spent

    rollups.update = timed_update  # type: ignore[assignment]
    steps: dict[str, float] = {}

    def timed(name: str, function: Callable[..., object]) -> Callable[..., object]:
        def run(conn: sa.Connection, *args: object, **kwargs: object) -> object:
            server = server_cpu(conn)
            try:
                return function(conn, *args, **kwargs)
            finally:
                label = name + (f" {args[0].name} {args[1]}" if name.startswith("_insert") else "")
                steps[label] = steps.get(label, 0.0) + server_cpu(conn) - server

        return run

    for name in (
        "_insert",
        "_insert_from_months",
        "_insert_distinct_from_months",
        "_update_account_months",
        "_insert_totals",
        "data_months",
        "_record",
        "refresh",
    ):
        setattr(rollups, name, timed(name, getattr(rollups, name)))
    rollups.listen()
    wall, own = time.perf_counter(), cpu()
    report = import_tables(engine, inputs, today=today)
    timings["whole import"] = (time.perf_counter() - wall, cpu() - own, float("nan"))
    if not report.ok:
        raise SystemExit(report.render())
    print("database backend CPU seconds per step of the incremental refresh:")
    for label, seconds in sorted(steps.items(), key=lambda item: -item[1]):
        print(f"  {label}: {seconds:.1f}")
    if not args.no_full:
        with engine.begin() as conn:
            wall, own, server = time.perf_counter(), cpu(), server_cpu(conn)
            rollups.refresh(conn, today)
            spent = (time.perf_counter() - wall, cpu() - own, server_cpu(conn) - server)
            timings["full rebuild (python -m crm_data rollups)"] = spent
    for what, (seconds, cpu_seconds, server_seconds) in timings.items():
        print(
            f"{what}: {seconds:.1f} s wall, {cpu_seconds:.1f} s CPU of this process, "
            f"{server_seconds:.1f} s CPU of the database backend"
        )
    engine.dispose()


if __name__ == "__main__":
    main()
