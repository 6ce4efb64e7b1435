"""Derived tables — tables computed from the CRM tables (the KPI roll-ups) — and the
state that says which are built, from which CRM tables, and whether they are current.

The data layer owns this state so it can keep derived tables honest without knowing what
they hold: whoever builds a derived table records it (:func:`record`: name, the CRM tables
it depends on, the months it covers, the source rows it saw); a writer of CRM tables that
does not rebuild the derived tables depending on what it changed removes their state
(:func:`invalidate`, called by :func:`crm_data.hooks.tables_changed` for every derived
table no listener brought up to date). A derived table without state is never read: its
readers (``kpis.rollups``) fall back to the base tables — slower, never a wrong number.
``check`` (:mod:`crm_data.quality`) asks :func:`stale` for derived tables whose source
tables gained or lost rows since they were built (a writer that bypassed the hooks).

Naming: every derived table, and the two state tables, are named ``rollup_*``
(:data:`PREFIX`), so :mod:`crm_data.pg_scope` can keep them from a scoped role (aggregates
of *all* accounts) without a list of them.

A state row without recorded sources (written before ``rollup_sources`` existed) depends,
for :func:`invalidate` and :func:`stale`, on every CRM table: kept honest, conservatively.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable

import pandas as pd
import sqlalchemy as sa

from crm_data import schema

#: Every derived table's name starts with it (the state tables' too).
PREFIX = "rollup_"

metadata = sa.MetaData()

#: One row per built derived table: the months it covers (``YYYYMM``) and when it was built.
state = sa.Table(
    "rollup_state",
    metadata,
    sa.Column("rollup", sa.String(64), primary_key=True),
    sa.Column("first_period", sa.Integer(), nullable=False),
    sa.Column("last_period", sa.Integer(), nullable=False),
    sa.Column("rows", sa.BigInteger(), nullable=False),
    sa.Column("refreshed_at", sa.DateTime(), nullable=False),
    # rows of the tables it summarises when built: ``stale`` compares it with now
    sa.Column("source_rows", sa.BigInteger(), nullable=True),
)
#: The CRM tables each derived table depends on (one row per pair).
sources = sa.Table(
    "rollup_sources",
    metadata,
    sa.Column("rollup", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(64), primary_key=True),
)
#: The CRM tables by name.
CRM_TABLES: dict[str, sa.Table] = {table.name: table for table in schema.TABLES}


def table_names(conn: sa.Connection) -> set[str]:
    """Every table of the database (its default schema), in one catalog lookup: a writer
    that asks about several tables asks once (each lookup is a catalog query, a few ms on
    DuckDB, and an import's refresh made dozens)."""
    return set(sa.inspect(conn).get_table_names())


def has_state(conn: sa.Connection) -> bool:
    """True when the state table exists (some derived table was built once)."""
    return sa.inspect(conn).has_table(state.name)


def create(conn: sa.Connection, present: Collection[str] | None = None) -> None:
    """Create the state tables when missing (in the caller's transaction); ``present``:
    the database's tables when the caller has just listed them (:func:`table_names`)."""
    present = table_names(conn) if present is None else present
    missing = [table for table in metadata.sorted_tables if table.name not in present]
    if missing:
        metadata.create_all(conn, tables=missing, checkfirst=False)


def record(
    conn: sa.Connection,
    name: str,
    depends_on: Iterable[str],
    first_period: int,
    last_period: int,
    rows: int,
    source_rows: int,
) -> None:
    """Record ``name`` as built from ``depends_on`` (CRM table names), covering the months
    ``first_period``..``last_period`` (``YYYYMM``), holding ``rows`` rows, built when its
    sources held ``source_rows`` rows in all (replaces its previous state)."""
    if not name.startswith(PREFIX):
        raise ValueError(f"a derived table's name starts with {PREFIX!r}: {name}")
    create(conn)
    _delete_state(conn, name, sources_exist=True)
    conn.execute(
        state.insert().values(
            rollup=name,
            first_period=first_period,
            last_period=last_period,
            rows=rows,
            refreshed_at=dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0),
            source_rows=source_rows,
        )
    )
    conn.execute(sources.insert(), [{"rollup": name, "source": source} for source in sorted(set(depends_on))])


def forget(conn: sa.Connection, name: str) -> None:
    """Remove ``name``'s state: it is not read until built again."""
    present = table_names(conn)
    if state.name in present:
        _delete_state(conn, name, sources_exist=sources.name in present)


def _delete_state(conn: sa.Connection, name: str, sources_exist: bool) -> None:
    """Delete ``name``'s rows of the state tables (the state table exists; ``sources``
    too when ``sources_exist``: a database from before it may lack it)."""
    conn.execute(state.delete().where(state.c.rollup == name))
    if sources_exist:
        conn.execute(sources.delete().where(sources.c.rollup == name))


def built(conn: sa.Connection) -> dict[str, tuple[int, int]]:
    """Built derived tables: name -> (first, last) month covered as ``YYYYMM``."""
    if not has_state(conn):
        return {}
    rows = conn.execute(sa.select(state.c.rollup, state.c.first_period, state.c.last_period)).all()
    return {name: (int(first), int(last)) for name, first, last in rows}


def dependencies(conn: sa.Connection) -> dict[str, frozenset[str]]:
    """Built derived tables: name -> the CRM tables it depends on (every CRM table when
    none was recorded)."""
    names = built(conn)
    recorded: dict[str, set[str]] = {}
    if names and sa.inspect(conn).has_table(sources.name):
        for name, source in conn.execute(sa.select(sources.c.rollup, sources.c.source)):
            recorded.setdefault(name, set()).add(source)
    return {name: frozenset(recorded.get(name) or CRM_TABLES) for name in names}


def invalidate(
    conn: sa.Connection, changed: Collection[str] | None = None, keep: Collection[str] = ()
) -> list[str]:
    """Remove the state of every built derived table that depends on a table of ``changed``
    (default: every one), except those in ``keep`` (brought up to date by the caller), in
    the caller's transaction; return their names. Their readers then use the base tables
    until they are built again."""
    gone = [
        name
        for name, depends_on in dependencies(conn).items()
        if name not in keep and (changed is None or depends_on & set(changed))
    ]
    for name in gone:
        forget(conn, name)
    return gone


def lacks_columns(conn: sa.Connection, table: sa.Table, present: Collection[str] | None = None) -> bool:
    """True when ``table`` exists in the database without every column it has now (built by
    an earlier version); False when it is missing or current. ``present``: the database's
    tables when the caller has just listed them (:func:`table_names`)."""
    exists = sa.inspect(conn).has_table(table.name) if present is None else table.name in present
    if not exists:
        return False
    # the columns of an empty result (duckdb_engine's inspector cannot list columns)
    found = conn.execute(sa.select(sa.literal_column("*")).select_from(sa.table(table.name)).limit(0))
    return not set(table.c.keys()) <= set(found.keys())


def written(result: sa.CursorResult) -> int | None:
    """The rows an INSERT, UPDATE or DELETE wrote (None when the driver does not say)."""
    return result.rowcount if result.rowcount is not None and result.rowcount >= 0 else None


def table_rows(conn: sa.Connection, tables: Iterable[sa.Table]) -> dict[str, int]:
    """Rows per table, each table counted once, in one statement."""
    unique = {table.name: table for table in tables}
    if not unique:
        return {}
    counts = [sa.select(sa.func.count()).select_from(t).scalar_subquery().label(n) for n, t in unique.items()]
    row = conn.execute(sa.select(*counts)).one()
    return {name: int(row[i]) for i, name in enumerate(unique)}


def stale(conn: sa.Connection) -> pd.DataFrame:
    """Built derived tables whose source tables changed size since (rows added or deleted
    by a writer that bypassed :mod:`crm_data.hooks`; in-place updates are not detected).
    Columns: rollup, refreshed_at, source_rows (when built), rows_now. Empty when none is
    stale or none was built."""
    columns = ["rollup", "refreshed_at", "source_rows", "rows_now"]
    if not has_state(conn):
        return pd.DataFrame(columns=columns)
    depends = dependencies(conn)
    built_rows = conn.execute(sa.select(state.c.rollup, state.c.refreshed_at, state.c.source_rows)).all()
    present = set(sa.inspect(conn).get_table_names())
    needed = {t for names in depends.values() for t in names if t in present}
    counted = table_rows(conn, (CRM_TABLES[t] for t in sorted(needed)))
    found = []
    for name, at, rows in built_rows:
        now = sum(counted.get(t, 0) for t in depends[name])
        if rows != now:
            found.append((name, at, rows, now))
    return pd.DataFrame(found, columns=columns)


__all__ = [
    "CRM_TABLES",
    "PREFIX",
    "built",
    "create",
    "dependencies",
    "forget",
    "has_state",
    "invalidate",
    "record",
    "sources",
    "stale",
    "state",
    "table_names",
    "table_rows",
]
