"""The one place where SQL dialects differ (DuckDB, PostgreSQL, SQLite, ...).

KPI code builds portable SQLAlchemy Core and asks this module for the few expressions
that every database spells differently: period truncation, day differences, linear
percentiles, and the per-connection setup (UTC session time zone, SQLite functions).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterator
from typing import ClassVar, Literal

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

Freq = Literal["week", "month", "quarter", "year"]
FREQS: tuple[str, ...] = ("month", "quarter", "year")


#: PostgreSQL's per-sort / per-hash memory for the dashboard's sessions (``work_mem``;
#: ``CRM_PG_WORK_MEM`` overrides it, e.g. ``16MB``). The server's default, 4 MB, makes the
#: KPIs' sorts (distinct paying accounts, the sales cycle's percentiles) spill to disk from
#: a few hundred thousand rows on; a few dashboard sessions with a few sorts each stay far
#: below the memory of any machine that holds such a database.
PG_WORK_MEM = "64MB"

#: PostgreSQL's just-in-time compilation for the dashboard's sessions (``jit``): off. The
#: server compiles a statement's expressions with LLVM when the planner's *estimated* cost
#: passes ``jit_above_cost`` (and inlines and optimises them above 500,000), and the
#: estimates of the KPIs' joins of aggregates are far off: ``profitability_ends``' FULL
#: JOIN of the payments' and the costs' sums per account is estimated at 15M rows (58,740
#: real at 100k accounts), so the server spent 0.49 s compiling for a 0.5 s statement —
#: the Marketing page's filter change 1.0 s with JIT, 0.55 s without; no page measured got
#: slower without it (docs/performance.md, session 13, branch ``pgm3``).
PG_JIT = "off"


def _pg_work_mem() -> str:
    value = os.environ.get("CRM_PG_WORK_MEM", PG_WORK_MEM).strip()
    if not re.fullmatch(r"[0-9]+ ?(kB|MB|GB)?", value):
        raise ValueError(f"CRM_PG_WORK_MEM must be a size like 64MB, not {value!r}")
    return value


def prepare_engine(engine: sa.Engine) -> None:
    """Make every new connection of ``engine`` use UTC (and give SQLite what it lacks);
    PostgreSQL sessions also get :data:`PG_WORK_MEM` and :data:`PG_JIT`."""
    name = engine.dialect.name
    work_mem = _pg_work_mem() if name == "postgresql" else ""
    if name == "duckdb" and not engine.dialect._supports_statement_cache:
        # duckdb_engine opts out of SQLAlchemy's compiled-statement cache, so every KPI
        # statement was compiled anew on each call (~2 ms each); its Core SELECTs with bound
        # parameters cache like PostgreSQL's (the KPI tests run with the cache on).
        engine.dialect._supports_statement_cache = True

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, connection_record):
        if name == "sqlite":
            _register_sqlite_functions(dbapi_connection)
            return
        statement = {
            "duckdb": "SET TimeZone='UTC'",
            "postgresql": "SET TIME ZONE 'UTC'",
            "mysql": "SET time_zone = '+00:00'",
            "mariadb": "SET time_zone = '+00:00'",
        }.get(name)
        if statement:
            cursor = dbapi_connection.cursor()
            cursor.execute(statement)
            if name == "postgresql":
                cursor.execute(f"SET work_mem = '{work_mem}'")
                cursor.execute(f"SET jit = {PG_JIT}")
            cursor.close()
            if name == "postgresql":
                dbapi_connection.commit()


#: DuckDB's memory for the engines that only read (the dashboard's, ``check``'s:
#: ``make_engine(read_only=True)``): its buffer manager's ``memory_limit`` (hash tables,
#: sorts, cached blocks of the file), beyond which it spills to :func:`duckdb_temp_directory`.
#: ``CRM_DUCKDB_MEMORY_LIMIT`` overrides it (e.g. ``512MB``; ``default``: DuckDB's own, 80 % of
#: the machine's RAM). DuckDB's default let one dashboard process grow to 2.5 GB at 1M
#: accounts; with 640MB every page's peak stays under 1 GB at 1M accounts (the Sales
#: pipeline 0.87 GB, a live whole-database quality check 0.99 GB) for the same CPU as with
#: 1GB, which let the Sales pipeline reach 1.2 GB and the quality check 1.3 GB (measured
#: in session 11: docs/performance.md, *Every page at L after session 11*). Engines that
#: write (demo, import, roll-ups) keep DuckDB's default.
DUCKDB_MEMORY_LIMIT = "640MB"


def duckdb_memory_limit() -> str | None:
    """The ``memory_limit`` for DuckDB readers: ``CRM_DUCKDB_MEMORY_LIMIT`` or
    :data:`DUCKDB_MEMORY_LIMIT`; None for ``default`` (DuckDB's own limit)."""
    value = os.environ.get("CRM_DUCKDB_MEMORY_LIMIT", DUCKDB_MEMORY_LIMIT).strip()
    if value.lower() in ("default", ""):
        return None
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)? ?(KB|MB|GB|KiB|MiB|GiB)", value, flags=re.IGNORECASE):
        raise ValueError(
            f"CRM_DUCKDB_MEMORY_LIMIT must be a size like 512MB or 1GB (or default), not {value!r}"
        )
    return value


def duckdb_temp_directory() -> str:
    """Where a DuckDB reader spills what exceeds its memory limit: a folder of this process
    (``crm-insights-duckdb-<pid>``) in ``CRM_DUCKDB_TEMP_DIRECTORY``, else in the system's
    temporary folder (created when missing). DuckDB creates the process's folder on the first
    spill and deletes it when the process closes the database. (DuckDB's default, ``<database>.tmp`` beside the file, needs a
    writable folder, which a read-only reader of a shared file may not have.)"""
    base = os.environ.get("CRM_DUCKDB_TEMP_DIRECTORY", "").strip() or tempfile.gettempdir()
    return os.path.join(base, f"crm-insights-duckdb-{os.getpid()}")


def duckdb_threads() -> int | None:
    """``CRM_DUCKDB_THREADS`` for DuckDB readers (None, the default: DuckDB's own, one per
    core). One thread spills less under the memory limit (each thread builds its own part
    of a hash table or sort): ``stage_durations`` over three years at 1M accounts took
    25.9 s CPU with one thread against 41.2 s with two, both at 512MB — but a query that
    fits in memory then uses one core only."""
    value = os.environ.get("CRM_DUCKDB_THREADS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"CRM_DUCKDB_THREADS must be a whole number ≥ 1, not {value!r}")
    return int(value)


def limit_duckdb_memory(engine: sa.Engine) -> None:
    """Give every new connection of the DuckDB ``engine`` :func:`duckdb_memory_limit`,
    :func:`duckdb_temp_directory` and, when set, :func:`duckdb_threads` (settings of the
    whole database instance, which all the process's connections to the file share; the
    folder is set only when it differs — DuckDB refuses to switch the temporary folder
    once it holds spilled blocks, even to the same one)."""
    if engine.dialect.name != "duckdb":
        return
    limit = duckdb_memory_limit()
    threads = duckdb_threads()
    if limit is None and threads is None:
        return
    folder = duckdb_temp_directory()
    # DuckDB creates the folder itself on the first spill, but not the folders above it
    os.makedirs(os.path.dirname(folder), exist_ok=True)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, connection_record):
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT current_setting('temp_directory')")
        current = cursor.fetchone()[0]
        if threads is not None:
            cursor.execute(f"SET threads = {threads}")
        if limit is not None:
            cursor.execute(f"SET memory_limit = '{limit}'")
        if current != folder:
            cursor.execute(f"SET temp_directory = '{folder.replace(chr(39), chr(39) * 2)}'")
        cursor.close()


class _PercentileCont:
    """SQLite aggregate ``percentile_cont(value, fraction)``: linear interpolation."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.fraction = 0.5

    def step(self, value: float | None, fraction: float) -> None:
        if value is not None:
            self.values.append(float(value))
        self.fraction = float(fraction)

    def finalize(self) -> float | None:
        return percentile_linear(self.values, self.fraction)


def percentile_linear(values: list[float], fraction: float) -> float | None:
    """The percentile of ``values`` interpolated linearly, like SQL ``percentile_cont``."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def _register_sqlite_functions(dbapi_connection: sqlite3.Connection) -> None:
    dbapi_connection.create_aggregate("percentile_cont", 2, _PercentileCont)
    dbapi_connection.create_function(
        "ln", 1, lambda x: None if x is None or x <= 0 else math.log(x), deterministic=True
    )
    dbapi_connection.create_function(
        "exp", 1, lambda x: None if x is None else math.exp(x), deterministic=True
    )
    dbapi_connection.create_function(
        "floor", 1, lambda x: None if x is None else math.floor(x), deterministic=True
    )
    dbapi_connection.create_function(
        "sqrt", 1, lambda x: None if x is None or x < 0 else math.sqrt(x), deterministic=True
    )
    dbapi_connection.create_function("regexp_replace", 3, _regexp_replace_all, deterministic=True)


def _regexp_replace_all(value: str | None, pattern: str, replacement: str) -> str | None:
    return None if value is None else re.sub(pattern, replacement, value)


def period_start(dialect: sa.Dialect, column: ColumnElement, freq: Freq) -> ColumnElement:
    """The first instant of the calendar ``freq`` (week starts Monday) containing ``column``,
    as a timestamp."""
    if freq not in ("week", *FREQS):
        raise ValueError(f"freq must be one of {FREQS}, not {freq!r}")
    name = dialect.name
    if name in ("duckdb", "postgresql"):
        return sa.cast(sa.func.date_trunc(freq, column), sa.DateTime())
    if name == "sqlite":
        day = sa.func.date(column)
        if freq == "week":
            back = (sa.cast(sa.func.strftime("%w", column), sa.Integer) + 6) % 7  # Monday on or before
            expr = sa.func.date(day, "-" + sa.cast(back, sa.String) + " days")
        elif freq == "month":
            expr = sa.func.date(day, "start of month")
        elif freq == "year":
            expr = sa.func.date(day, "start of year")
        else:  # quarter: month - ((month-1) % 3)
            back = (sa.cast(sa.func.strftime("%m", column), sa.Integer) - 1) % 3
            expr = sa.func.date(day, "start of month", "-" + sa.cast(back, sa.String) + " months")
        return sa.func.datetime(expr, type_=sa.DateTime())
    raise NotImplementedError(f"period_start is not implemented for {name}")


def period_key(dialect: sa.Dialect, column: ColumnElement, freq: Freq) -> ColumnElement[int]:
    """The calendar ``freq`` period containing ``column`` as the integer ``YYYYMM`` of its
    first month (2026-04-17 -> 202604 by month and by quarter, 202601 by year): a period
    label that compares and groups the same way on every database."""
    start = period_start(dialect, column, freq)
    return sa.cast(sa.extract("year", start) * 100 + sa.extract("month", start), sa.Integer())


def month_index(dialect: sa.Dialect, column: ColumnElement) -> ColumnElement[int]:
    """The calendar month containing ``column`` as an integer count of months:
    ``year · 12 + month − 1`` (2026-04-17 -> 24315), so that consecutive months differ by 1
    and a month's index minus another's is the number of months between them."""
    name = dialect.name
    if name == "duckdb":
        return sa.cast(sa.func.year(column) * 12 + sa.func.month(column) - 1, sa.Integer())
    if name == "postgresql":
        # date_part() is double precision (EXTRACT is numeric since PostgreSQL 14: slower)
        year = sa.func.date_part(sa.literal_column("'year'"), column, type_=sa.Double())
        month = sa.func.date_part(sa.literal_column("'month'"), column, type_=sa.Double())
        return sa.cast(year * 12 + month - 1, sa.Integer())
    if name == "sqlite":
        year = sa.cast(sa.func.strftime("%Y", column), sa.Integer())
        month = sa.cast(sa.func.strftime("%m", column), sa.Integer())
        return year * 12 + month - 1
    raise NotImplementedError(f"month_index is not implemented for {name}")


#: Months per period of :func:`period_number`.
PERIOD_MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}


def period_number(dialect: sa.Dialect, column: ColumnElement, freq: str) -> ColumnElement[int] | None:
    """The calendar month, quarter or year containing ``column`` as an integer count of
    such periods, ⌊:func:`month_index` ÷ months per period⌋ (consecutive periods differ by
    1; :func:`period_number_of` gives a date's in Python); None for weeks."""
    months = PERIOD_MONTHS.get(freq)
    if months is None:
        return None
    index = month_index(dialect, column)
    if months == 1:
        return index
    return sa.cast(sa.func.floor(index / float(months)), sa.Integer())


def period_number_start(dialect: sa.Dialect, number: ColumnElement[int], freq: str) -> ColumnElement | None:
    """The first instant (a timestamp) of the month, quarter or year numbered ``number``
    by :func:`period_number`: its first month's :func:`month_index` is m = number · months
    per period, so year = ⌊m ÷ 12⌋, month = m mod 12 + 1 (the same instant as
    :func:`period_start` of any instant in it). For a few grouped rows, where
    :func:`period_start` of every row costs a ``date_trunc`` each (DuckDB:
    ``make_timestamp``); None elsewhere."""
    if dialect.name != "duckdb":
        return None
    first = number * PERIOD_MONTHS[freq] if PERIOD_MONTHS[freq] != 1 else number
    first = first.self_group()
    year = first.op("//")(sa.literal_column("12"))  # DuckDB's integer division (m ≥ 0: the floor)
    month = (first % 12) + 1
    zero = sa.literal_column("0")
    return sa.func.make_timestamp(year, month, sa.literal_column("1"), zero, zero, zero, type_=sa.DateTime())


def period_number_of(day: dt.date, freq: str) -> int:
    """:func:`period_number` of the instant ``day`` (a date or datetime) for a month,
    quarter or year ``freq``."""
    return (day.year * 12 + day.month - 1) // PERIOD_MONTHS[freq]


def month_ceiling_index(dialect: sa.Dialect, column: ColumnElement) -> ColumnElement[int]:
    """:func:`month_index` of the first month whose first instant is at or after ``column``:
    the month of ``column`` when ``column`` is that month's first instant, else the next one.
    So ``column ≤ first instant of month m`` ⟺ ``month_ceiling_index(column) ≤ m``, and
    ``column > first instant of month m`` ⟺ ``m < month_ceiling_index(column)``: a range
    condition against a grid of month starts becomes an integer one.

    SQLite keeps timestamps as text, compared as text (as SQLAlchemy writes and binds them:
    ``YYYY-MM-DD HH:MM:SS.ffffff``): the month's first instant is written the same way."""
    name = dialect.name
    if name in ("duckdb", "postgresql"):
        first = sa.func.date_trunc("month", column, type_=sa.DateTime())
    elif name == "sqlite":
        first = sa.func.strftime("%Y-%m-01 00:00:00.000000", column, type_=sa.DateTime())
    else:
        raise NotImplementedError(f"month_ceiling_index is not implemented for {name}")
    return month_index(dialect, column) + sa.case((column > first, 1), else_=0)


def bit_or(dialect: sa.Dialect, value: ColumnElement[int]) -> ColumnElement[int] | None:
    """Aggregate: the bitwise OR of the group's (BIGINT) ``value``; None where the database
    has no such aggregate (SQLite: the caller computes the same another way)."""
    if dialect.name in ("duckdb", "postgresql"):
        return sa.func.bit_or(value, type_=sa.BigInteger())
    return None


def greatest(dialect: sa.Dialect, *values: ColumnElement) -> ColumnElement:
    """The largest of ``values`` (scalar; none of them NULL: the databases differ there)."""
    if dialect.name == "sqlite":
        return sa.func.max(*values, type_=values[0].type)
    return sa.func.greatest(*values, type_=values[0].type)


def least(dialect: sa.Dialect, *values: ColumnElement) -> ColumnElement:
    """The smallest of ``values`` (scalar; none of them NULL: the databases differ there)."""
    if dialect.name == "sqlite":
        return sa.func.min(*values, type_=values[0].type)
    return sa.func.least(*values, type_=values[0].type)


def scans_to_filter(dialect: sa.Dialect) -> bool:
    """True when the database finds the rows of a selective filter (one owner, one product)
    by scanning (DuckDB: zone maps; the CRM tables have no secondary indexes there,
    ``crm_data.schema.row_store_index``), so one scan of a narrow table beats a scan of
    the deals joined to it; False on row stores, whose secondary indexes (``deals.owner_id``,
    ``deals.product_id``) find those rows without a scan."""
    return dialect.name == "duckdb"


def lock_against_writers(conn: sa.Connection, table: sa.Table) -> None:
    """Keep other writers of ``table`` waiting until the caller's transaction ends (readers
    go on): on PostgreSQL ``LOCK TABLE … IN SHARE ROW EXCLUSIVE MODE`` (it conflicts with
    itself), so a statement that numbers new rows from the table's largest value sees
    every row a concurrent writer committed. DuckDB (one writing process, conflicting
    transactions fail) and SQLite (one writer at a time) need none."""
    if conn.dialect.name == "postgresql":
        target = conn.dialect.identifier_preparer.format_table(table)
        conn.exec_driver_sql(f"LOCK TABLE {target} IN SHARE ROW EXCLUSIVE MODE")


def selects_accounts_by_key(dialect: sa.Dialect) -> bool:
    """True when an account-level list selects the stored visits and deal rows by their
    integer ``account_key`` (``kpis.filters.account_keys``) rather than by their text
    ``account_id``: DuckDB, which decodes the text of every scanned vector to probe the
    account list (0.1–0.2 s of CPU per statement at 1M accounts; the integers ≈ 0.02 s).
    PostgreSQL and SQLite keep the text semi-join, which the accounts' primary key serves
    (PostgreSQL misestimated the integer one into a nested loop: 6 s for one statement at
    100k accounts; docs/performance.md, session 15)."""
    return dialect.name == "duckdb"


class _PerDialect(ColumnElement[bool]):
    """A condition spelled one way on DuckDB and another elsewhere (:func:`per_dialect`):
    compiled as the one the statement's dialect needs, the other never reaching SQL."""

    type = sa.Boolean()
    _is_implicitly_boolean = True  # a condition as it is (SQLite: no ``= 1`` appended)
    _traverse_internals: ClassVar = [  # SQLAlchemy's cache key and clones of both
        ("default", InternalTraversal.dp_clauseelement),
        ("duckdb", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, default: ColumnElement[bool], duckdb: ColumnElement[bool]) -> None:
        self.default = default
        self.duckdb = duckdb

    @property
    def _from_objects(self) -> list:  # the tables the condition's columns come from
        return self.default._from_objects


@compiles(_PerDialect)
def _compile_per_dialect(element: _PerDialect, compiler: sa.sql.compiler.SQLCompiler, **kw: object) -> str:
    chosen = element.duckdb if selects_accounts_by_key(compiler.dialect) else element.default
    return compiler.process(chosen, **kw)


def per_dialect(default: ColumnElement[bool], duckdb: ColumnElement[bool]) -> ColumnElement[bool]:
    """``duckdb`` where :func:`selects_accounts_by_key` (DuckDB), else ``default``: one
    statement built once for every dialect (``kpis.filters.scope`` has no connection),
    the choice made when it is compiled. Both must select the same rows."""
    return _PerDialect(default, duckdb)


def fetches_columns(dialect: sa.Dialect) -> bool:
    """True when the driver hands a result over as whole columns (DuckDB's ``fetchnumpy``:
    one array per column, no Python object per value), so millions of rows cost about what
    scanning them costs; False where each row becomes a tuple (PostgreSQL, SQLite), for which
    a caller keeps the work in SQL."""
    return dialect.name == "duckdb"


def counts_selected_rows(dialect: sa.Dialect) -> bool:
    """True when a Kaplan–Meier over rows selected by a filter other than the date range
    (owners, products, pipelines, an account list: few rows) is computed in numpy from the
    fetched rows rather than by the database's numbering window: DuckDB (it hands whole
    columns over, :func:`fetches_columns`, so it fetches every selection) and PostgreSQL,
    whose ≈ 10k–100k selected visits at 100k accounts, packed per stage into one byte string
    (:func:`packed_rows`), arrive faster than it sorts and numbers them
    (``kpis.sales.stage_durations``; docs/performance.md, session 16).
    SQLite keeps the SQL."""
    return dialect.name in ("duckdb", "postgresql")


#: A value's binary send function and its numpy type in :func:`packed_rows` (big-endian, as
#: PostgreSQL's ``*send`` functions write them).
_PACKED: dict[type, tuple[str, str]] = {
    sa.Double: ("float8send", ">f8"),
    sa.Float: ("float8send", ">f8"),
    sa.SmallInteger: ("int2send", ">i2"),
    sa.BigInteger: ("int8send", ">i8"),
    sa.Integer: ("int4send", ">i4"),
}


def _packed_format(value: ColumnElement) -> tuple[str, str]:
    """(PostgreSQL send function, numpy type) of ``value``'s SQL type (:data:`_PACKED`)."""
    for kind, packed in _PACKED.items():
        if isinstance(value.type, kind):
            return packed
    raise NotImplementedError(f"packed_rows: no binary form for {value.type!r}")


def packed_rows(dialect: sa.Dialect, *values: ColumnElement) -> ColumnElement[bytes] | None:
    """Aggregate: the group's rows of ``values`` (doubles, integers) as one byte string,
    each row their binary forms one after the other (PostgreSQL: ``string_agg(float8send(a)
    || int2send(b) || …, '')``, the exact bits of each value), for :func:`unpack_rows`: a
    group of 86k rows arrives as one value instead of 86k tuples, each value a Python
    object (0.3–0.5 s of client CPU at 100k accounts, docs/performance.md, session 16).
    None elsewhere (DuckDB fetches whole columns, :func:`fetches_columns`)."""
    if dialect.name != "postgresql":
        return None
    parts = [getattr(sa.func, _packed_format(v)[0])(v, type_=sa.LargeBinary()) for v in values]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined.op("||", return_type=sa.LargeBinary())(part)
    return sa.func.string_agg(joined, sa.literal_column("''::bytea"), type_=sa.LargeBinary())


def unpack_rows(packed: bytes | None, *values: ColumnElement) -> list[np.ndarray]:
    """The columns of :func:`packed_rows`' byte string (``values`` as given there), each a
    native numpy array (float64, int16, …): the same numbers the rows would carry."""
    formats = [_packed_format(v)[1] for v in values]
    record = np.dtype([(f"f{i}", fmt) for i, fmt in enumerate(formats)])
    rows = np.frombuffer(packed or b"", dtype=record)
    return [rows[f"f{i}"].astype(np.dtype(fmt).newbyteorder("=")) for i, fmt in enumerate(formats)]


def fetch_columns(conn: sa.Connection, statement: sa.Executable) -> dict[str, np.ndarray]:
    """``statement``'s result as one numpy array per column, by name: on DuckDB its
    ``fetchnumpy`` (:func:`fetches_columns`), elsewhere built from the rows."""
    result = conn.execute(statement)
    names = list(result.keys())
    if fetches_columns(conn.dialect):
        arrays = result.cursor.fetchnumpy()
        return {name: np.asarray(arrays[raw]) for name, raw in zip(names, arrays, strict=True)}
    rows = result.fetchall()
    return {name: np.array([row[i] for row in rows]) for i, name in enumerate(names)}


def days_between(dialect: sa.Dialect, start: ColumnElement, end: ColumnElement) -> ColumnElement:
    """``end - start`` in days as a float (seconds / 86,400)."""
    name = dialect.name
    if name == "duckdb":
        return sa.cast(sa.func.epoch(end) - sa.func.epoch(start), sa.Double()) / 86400.0
    if name == "postgresql":
        # date_part() is EXTRACT's double-precision form: EXTRACT returns numeric since
        # PostgreSQL 14, whose arithmetic took ~2/3 of the sales cycle's time over won deals
        return sa.func.date_part(sa.literal_column("'epoch'"), end - start, type_=sa.Double()) / 86400.0
    if name == "sqlite":
        # julianday() carries ~1e-10 day of float noise; rounding the difference to whole
        # milliseconds makes the result the same double DuckDB and PostgreSQL return.
        seconds = sa.func.round((sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0, 3)
        return seconds / 86400.0
    raise NotImplementedError(f"days_between is not implemented for {name}")


def value_at_min(dialect: sa.Dialect, value: ColumnElement, key: ColumnElement) -> ColumnElement | None:
    """Aggregate: ``value`` of the group's row with the smallest ``key`` (DuckDB's
    ``arg_min``: one hash aggregate, where the portable form is a window over the rows
    for the group's minimum and a second aggregate); None where the database has no such
    aggregate (PostgreSQL, SQLite: the caller uses the window)."""
    if dialect.name == "duckdb":
        return sa.func.arg_min(value, key, type_=value.type)
    return None


def previous_in_order(
    dialect: sa.Dialect, value: ColumnElement, partition: ColumnElement, order: ColumnElement
) -> ColumnElement | None:
    """Window: ``value`` of the row before in its ``partition`` ordered by ``order`` (NULL
    for the partition's first row), ``lag(value) OVER (PARTITION BY partition ORDER BY
    order)``, on PostgreSQL, where an index on ``(partition, order)`` hands the window its
    rows in that order (no sort) and one pass of the window and one aggregate per
    partition replace a sort, a grouping and a window (``kpis.clv_summary`` at 1M
    accounts, with ``ix_payments_account_id_paid_at``: 4.3–4.8 → 3.1–3.2 s backend CPU);
    None elsewhere (DuckDB has ``arg_min``, SQLite keeps the portable form)."""
    if dialect.name != "postgresql":
        return None
    return sa.func.lag(value).over(partition_by=partition, order_by=order)


def bitmap_agg(dialect: sa.Dialect, value: ColumnElement[int], low: int, high: int) -> ColumnElement | None:
    """Aggregate: the distinct integers ``value`` the group holds, every one in ``[low,
    high]``, as a bitmap of high − low + 1 bits, bit i set when the group holds low + i
    (no hash table of (group, value) pairs); :func:`bits_set_counts` counts the groups per
    bit. DuckDB: up to :data:`BUCKETS` bits a HUGEINT, ``bit_or(1 << (value − low))`` — a
    16-byte state per group, grouped and tested by integer operations: at 1M accounts, one
    product's 5.9M payments over 72 months, ``kpis.revenue``'s statement 0.57 → 0.37 s CPU
    (with its period numbers computed once) against a ``BIT`` string —; wider,
    ``bitstring_agg(value, low, high)``. None where the database has no such aggregate."""
    if dialect.name != "duckdb":
        return None
    if int(high) - int(low) + 1 <= BUCKETS:
        offset = (value - sa.literal_column(str(int(low)))).self_group()
        return sa.func.bit_or(sa.literal_column("CAST(1 AS HUGEINT)").op("<<")(offset))
    return sa.func.bitstring_agg(value, sa.literal_column(str(int(low))), sa.literal_column(str(int(high))))


def bytewise(dialect: sa.Dialect, text: ColumnElement[str]) -> ColumnElement[str]:
    """``text`` compared byte by byte, for a ``DISTINCT`` of identifiers, where only equality
    matters (PostgreSQL: ``COLLATE "C"``; elsewhere unchanged).

    PostgreSQL's ``count(DISTINCT …)`` sorts each group's values; under the database's
    collation (``C.UTF-8``, ``en_US.UTF-8``: libc's ``strcoll``, and no abbreviated keys)
    that sort costs a fifth of ``kpis.revenue``'s statement over one product's payments at
    100k accounts (0.28 → 0.23 s). A deterministic collation's equality is byte equality,
    so the distinct values, and their count, are the same."""
    if dialect.name == "postgresql":
        return sa.collate(text, "C")
    return text


#: Buckets of :func:`distinct_buckets`: bits 0 … 126 of a HUGEINT (1 << 127 overflows).
BUCKETS = 127
#: Buckets of :func:`distinct_buckets` in a BIGINT: bits 0 … 62 (1 << 63 overflows).
NARROW_BUCKETS = 63


def bucket_width(low: int, high: int, buckets: int = BUCKETS) -> int:
    """How many consecutive integers of ``[low, high]`` share a bucket of
    :func:`distinct_buckets`: ⌈(high − low + 1) ÷ buckets⌉."""
    return max(1, -(-(int(high) - int(low) + 1) // buckets))


def bucket_count(low: int, high: int, apart: int = 1) -> int:
    """How many buckets :func:`distinct_buckets` cuts ``[low, high]`` into:
    :data:`NARROW_BUCKETS` (a BIGINT) when they are at most ``apart`` wide, so values
    ``apart`` or more apart still never share one; :data:`BUCKETS` (a HUGEINT) otherwise."""
    return NARROW_BUCKETS if bucket_width(low, high, NARROW_BUCKETS) <= apart else BUCKETS


def distinct_buckets(
    dialect: sa.Dialect, value: ColumnElement[int], low: int, high: int, apart: int = 1
) -> ColumnElement[int] | None:
    """Aggregate: how many of the buckets of ``[low, high]`` — bucket i holds low + i·w …
    low + (i + 1)·w − 1, w = ``bucket_width(low, high, bucket_count(low, high, apart))``
    — hold a value of the group (every value in ``[low, high]``). At most the group's
    distinct values; equal to its rows only when each row's value has a bucket of its own,
    and then the values are distinct (the converse fails: two distinct values may share a
    bucket). Values w or more apart are in different buckets: ``apart`` is the gap the
    caller's groups usually keep (a monthly payer's days, 28), so 63 buckets of a BIGINT
    serve when they are at most that wide, else 127 narrower ones of a HUGEINT.

    DuckDB: ``bit_count(bit_or(1 << bucket))`` over a BIGINT (an 8-byte state; at 1M
    accounts over three years ≈ 10 % less CPU for the per-account statement than the
    HUGEINT's 16-byte state and 128-bit shifts) or a HUGEINT, where ``bitstring_agg``
    (:func:`bitmap_agg`) holds a bitmap of high − low + 1 bits (at 1M accounts over three
    years ≈ 0.4 s CPU and ≈ 200 MB more at the peak); None where the database has no
    such aggregate (the caller groups by the value first)."""
    if dialect.name != "duckdb":
        return None
    buckets = bucket_count(low, high, apart)
    width = bucket_width(low, high, buckets)
    # (value − low) // w: DuckDB's integer division (value ≥ low: the floor)
    offset = (value - sa.literal_column(str(int(low)))).self_group()
    bucket = offset.op("//")(sa.literal_column(str(width)))
    one = "CAST(1 AS BIGINT)" if buckets == NARROW_BUCKETS else "CAST(1 AS HUGEINT)"
    bit = sa.literal_column(one).op("<<")(bucket.self_group())
    return sa.func.bit_count(sa.func.bit_or(bit), type_=sa.BigInteger())


def bits_set_counts(dialect: sa.Dialect, bitmaps: sa.ColumnElement, width: int) -> sa.Subquery | None:
    """(bit, groups): for each bit 0 … width − 1 of the bitmaps of :func:`bitmap_agg` in
    the column ``bitmaps`` (of a subquery, one bitmap per group; ``width`` = high − low + 1
    of the bitmaps), how many of them have it set (bits no bitmap has: no row). The
    distinct bitmaps are counted first (groups = Σ count of the distinct bitmaps with the
    bit set): far fewer than the groups (one product over 72 months at 1M accounts: 2,534
    distinct bitmaps of 388k accounts), so few are tested per bit. DuckDB: the distinct
    bitmaps joined to ``range(width)``, bit tested by ``(bitmap >> bit) & 1`` (a HUGEINT)
    or ``get_bit`` (a BIT string); None elsewhere."""
    if dialect.name != "duckdb":
        return None
    distinct = (
        sa.select(bitmaps.label("bitmap"), sa.func.count().label("n"))
        .select_from(bitmaps.table)  # type: ignore[attr-defined]
        .group_by(bitmaps)
        .subquery("bitmaps")
    )
    bits = sa.func.range(sa.literal_column("0"), sa.literal_column(str(int(width)))).table_valued("range")
    bit = bits.alias("bits").c.range
    position = sa.cast(bit, sa.Integer())
    if int(width) <= BUCKETS:
        is_set = distinct.c.bitmap.op(">>")(position).self_group().op("&")(sa.literal_column("1")) == 1
    else:
        is_set = sa.func.get_bit(distinct.c.bitmap, position) == 1
    return (
        sa.select(bit.label("bit"), sa.cast(sa.func.sum(distinct.c.n), sa.BigInteger()).label("groups"))
        .select_from(distinct.join(bit.table, sa.true()))  # type: ignore[attr-defined]
        .where(is_set)
        .group_by(bit)
        .subquery("bits_set")
    )


def in_values(dialect: sa.Dialect, column: ColumnElement[str], values: list[str]) -> ColumnElement[bool]:
    """``column IN values`` (text values): on DuckDB and PostgreSQL ``column = ANY(:values)``
    with the list bound as one array parameter; elsewhere (SQLite) the IN list, a parameter
    per value. DuckDB filtered a scan of ``accounts`` by an IN list of 1,000 parameters in
    0.15 s at 100k accounts (0.13 s at 1M), by the array in 0.02 s (0.08 s); PostgreSQL
    gets one parameter instead of 1,000 (and no 65,535-parameter limit)."""
    if dialect.name in ("duckdb", "postgresql"):
        array = sa.ARRAY(sa.String())
        return column == sa.any_(sa.cast(sa.bindparam(None, list(values), type_=array), array))
    return column.in_(values)


def percentile(dialect: sa.Dialect, column: ColumnElement, fraction: float) -> ColumnElement:
    """Aggregate: the ``fraction`` percentile of ``column``, interpolated linearly."""
    if dialect.name == "sqlite":
        return sa.func.percentile_cont(column, sa.literal(fraction, sa.Double()))
    return sa.func.percentile_cont(sa.literal(fraction, sa.Double())).within_group(column)


def regexp_replace(
    dialect: sa.Dialect, column: ColumnElement, pattern: str, replacement: str
) -> ColumnElement:
    """``column`` with every match of ``pattern`` replaced by ``replacement``.

    Use the regex subset that RE2 (DuckDB), POSIX ARE (PostgreSQL) and Python ``re``
    (SQLite, registered by :func:`prepare_engine`) read alike: classes like ``[^a-z0-9 ]``,
    ``+``, ``*``, ``^``, ``$``, alternation; no ``\\b`` and no back-references.
    """
    if dialect.name in ("duckdb", "postgresql"):
        return sa.func.regexp_replace(column, pattern, replacement, "g", type_=sa.String())
    if dialect.name == "sqlite":
        return sa.func.regexp_replace(column, pattern, replacement, type_=sa.String())
    raise NotImplementedError(f"regexp_replace is not implemented for {dialect.name}")


def upsert_statements(
    dialect: sa.Dialect, table: sa.Table, staging: sa.Table, columns: list[str], keys: list[str]
) -> list[sa.Executable]:
    """Statements that upsert ``staging`` (same ``columns``) into ``table`` by its ``keys``.

    ``INSERT INTO table (columns) SELECT ... FROM staging ON CONFLICT (keys) DO UPDATE`` on
    DuckDB, PostgreSQL and SQLite: existing rows get the non-key ``columns`` only where a
    value differs (so re-inserting identical rows changes nothing); key-only tables use
    ``DO NOTHING``.

    DuckDB rewrites an update of an indexed column (its foreign-key columns) as delete +
    insert, which its foreign-key check rejects when other rows reference the row — even
    when the value does not change. So on DuckDB the ON CONFLICT clause leaves the
    foreign-key columns out and a second ``UPDATE ... FROM staging`` sets them only on rows
    where they really change (which DuckDB still refuses for a referenced row: a
    documented DuckDB limitation). The schema no longer writes foreign keys into DuckDB's
    DDL, so this matters only for DuckDB files created before that.
    """
    if dialect.name in ("duckdb", "postgresql"):
        from sqlalchemy.dialects.postgresql import insert
    elif dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"upsert_statements is not implemented for {dialect.name}")
    source = sa.select(*(staging.c[c] for c in columns))
    # SQLite needs a WHERE in INSERT ... SELECT ... ON CONFLICT to parse it unambiguously
    statement = insert(table).from_select(columns, source.where(sa.true()))
    updates = [c for c in columns if c not in keys]
    late: list[str] = []
    if dialect.name == "duckdb":
        late = [c for c in updates if table.c[c].foreign_keys]
        updates = [c for c in updates if c not in late]
    if updates:
        changed = sa.or_(*(table.c[c].is_distinct_from(statement.excluded[c]) for c in updates))
        statement = statement.on_conflict_do_update(
            index_elements=keys, set_={c: statement.excluded[c] for c in updates}, where=changed
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    statements: list[sa.Executable] = [statement]
    if late:
        statements.append(
            sa.update(table)
            .values({c: staging.c[c] for c in late})
            .where(*(table.c[k] == staging.c[k] for k in keys))
            .where(sa.or_(*(table.c[c].is_distinct_from(staging.c[c]) for c in late)))
        )
    return statements


def not_materialized(cte: sa.CTE) -> sa.CTE:
    """``cte`` planned inside the statement that reads it, on PostgreSQL (``AS NOT
    MATERIALIZED``; other databases unchanged).

    PostgreSQL computes a CTE read twice once, into a work table whose columns have no
    statistics: joined with a large table, the join is estimated blind and the planner
    hashed the large side (every deal_stage_history row: 15–18M at 1M accounts) to probe
    it with the CTE's rows. Inlined, the CTE is its base table's filter, estimated from
    the table's statistics: the few selected deals are hashed (and the scan may run in
    parallel). For a CTE that is a cheap filter of one table, read twice.
    """
    return cte.prefix_with("NOT MATERIALIZED", dialect="postgresql")


def rescanned(cte: sa.CTE) -> sa.CTE:
    """``cte`` computed again wherever it is read, on DuckDB (``AS NOT MATERIALIZED``;
    other databases unchanged): DuckDB materializes a CTE read twice, which for a filter
    of a large table holds every selected row in memory (the positive payments of
    ``kpis.clv_summary``'s one pass: +150 MB at 1M accounts) where reading the table
    again costs a scan."""
    return cte.prefix_with("NOT MATERIALIZED", dialect="duckdb")


def may_select(conn: sa.Connection, *tables: sa.Table) -> bool:
    """False when the connecting PostgreSQL role has no SELECT privilege on one of ``tables``
    (a role limited to a scope, ``crm_data.pg_scope``, is not granted the derived tables,
    which hold every account's aggregates); other databases: True. Asked, not tried: a
    failed SELECT would abort the transaction."""
    if conn.dialect.name != "postgresql":
        return True
    return all(
        conn.execute(sa.select(sa.func.has_table_privilege(table.name, "SELECT"))).scalar_one()
        for table in tables
    )


#: (table, column, parent table, parent column) of a single-column foreign key.
Reference = tuple[str, str, str, str]


def enforced_references(conn: sa.Connection) -> frozenset[Reference]:
    """The single-column foreign keys of the connection's schema that the database enforces,
    so no row of ``table`` can hold a ``column`` value (not NULL) that ``parent column``
    lacks: on PostgreSQL the validated constraints (``pg_constraint.convalidated``) none of
    whose triggers is disabled; elsewhere none (DuckDB gets no foreign keys in its DDL,
    ``crm_data.schema``; SQLite enforces them only under ``PRAGMA foreign_keys``, which this
    project does not set). A check for such orphans can only count 0 there."""
    if conn.dialect.name != "postgresql":
        return frozenset()
    rows = conn.exec_driver_sql(
        """
        SELECT child.relname, child_column.attname, parent.relname, parent_column.attname
        FROM pg_constraint AS c
        JOIN pg_class AS child ON child.oid = c.conrelid
        JOIN pg_class AS parent ON parent.oid = c.confrelid
        JOIN pg_attribute AS child_column
          ON child_column.attrelid = c.conrelid AND child_column.attnum = c.conkey[1]
        JOIN pg_attribute AS parent_column
          ON parent_column.attrelid = c.confrelid AND parent_column.attnum = c.confkey[1]
        WHERE c.contype = 'f' AND c.convalidated AND cardinality(c.conkey) = 1
          AND c.connamespace = current_schema()::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_trigger AS t WHERE t.tgconstraint = c.oid AND t.tgenabled = 'D')
        """
    )
    return frozenset((str(a), str(b), str(c), str(d)) for a, b, c, d in rows)


def analyze(conn: sa.Connection, tables: list[str] | None = None) -> None:
    """Refresh the planner statistics of ``tables`` (all of the connection's schema when
    None) after a bulk load.

    PostgreSQL plans from ``pg_statistic``, which autovacuum refreshes only some time after
    a load: until then a freshly loaded table looks empty or tiny, and joins over it get
    nested loops over millions of rows. ``ANALYZE`` samples a fixed number of rows per
    table (seconds even at 10M rows) and runs inside the open transaction, where it sees
    that transaction's own new rows. SQLite's planner uses ``sqlite_stat1`` the same way.
    DuckDB keeps its statistics up to date as it writes: nothing to do.
    """
    name = conn.dialect.name
    if name not in ("postgresql", "sqlite"):
        return
    preparer = conn.dialect.identifier_preparer
    if tables is None and name == "sqlite":
        conn.exec_driver_sql("ANALYZE")
        return
    if tables is None:  # PostgreSQL: the tables of this schema, not every schema of the database
        tables = sa.inspect(conn).get_table_names()
    for table in tables:
        conn.exec_driver_sql(f"ANALYZE {preparer.quote(table)}")


def include_ddl_in_transaction(conn: sa.Connection) -> None:
    """Make the DDL that follows part of ``conn``'s open transaction.

    DuckDB and PostgreSQL do this anyway. Python's sqlite3 only opens a transaction before
    INSERT/UPDATE/DELETE, so a CREATE TABLE issued first would commit on its own: start the
    transaction explicitly.
    """
    if conn.dialect.name == "sqlite":
        driver = conn.connection.driver_connection
        if not driver.in_transaction:
            conn.exec_driver_sql("BEGIN")


#: ``work_mem`` while the KPI roll-ups are built or refreshed on PostgreSQL
#: (``CRM_PG_REFRESH_WORK_MEM`` overrides it). Their statements group hundreds of thousands
#: of per-account rows by the six account dimensions; PostgreSQL estimates the groups as
#: the product of each column's distinct values (413k where there are 8k at 1M accounts),
#: and at 64 MB judged a hash table too large and sorted the rows by six text columns on
#: disk instead: the customer base's year at 1M accounts 4.4 → 2.7 s of backend CPU at
#: 256 MB (its hash tables then held 16 MB and 98 MB).
PG_REFRESH_WORK_MEM = "256MB"


@contextlib.contextmanager
def refresh_work_mem(conn: sa.Connection) -> Iterator[None]:
    """On PostgreSQL, ``work_mem`` = :data:`PG_REFRESH_WORK_MEM` for the statements run inside
    (``set_config(..., is_local => true)``: this transaction only), the previous value
    restored after; nothing on other databases."""
    if conn.dialect.name != "postgresql":
        yield
        return
    size = os.environ.get("CRM_PG_REFRESH_WORK_MEM", PG_REFRESH_WORK_MEM).strip()
    if not re.fullmatch(r"\d+\s*(kB|MB|GB)", size):
        raise ValueError(f"CRM_PG_REFRESH_WORK_MEM must be a size like 256MB, not {size!r}")
    before = conn.execute(sa.text("SELECT current_setting('work_mem')")).scalar_one()
    conn.execute(sa.text("SELECT set_config('work_mem', :size, true)"), {"size": size})
    try:
        yield
    finally:
        conn.execute(sa.text("SELECT set_config('work_mem', :size, true)"), {"size": before})
