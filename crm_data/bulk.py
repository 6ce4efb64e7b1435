"""Fast bulk loading of a DataFrame into one canonical table, per dialect.

``bulk_insert(conn, table, frame)`` picks the fastest correct path:

* **DuckDB**: the frame is registered (as an Arrow table) on the raw DuckDB connection and copied with
  ``INSERT INTO t (cols) SELECT CAST(col AS type), ... FROM frame`` (columnar, no Python
  loop per row).
* **PostgreSQL** (psycopg 3): ``COPY t (cols) FROM STDIN (FORMAT csv)`` fed with CSV
  written by Arrow's C++ writer in chunks of :data:`COPY_CHUNK` rows (every text value
  quoted, so ``""`` is an empty string and an unquoted empty field is NULL; line breaks and
  carriage returns stay inside their quotes). A frame Arrow cannot type (an object column
  mixing text and numbers) takes pandas' CSV text instead
  (``crm_data.spreadsheet_safety.csv_text``, NULL written as ``\\N``).
* **anything else**: ``executemany`` of ``table.insert()`` in chunks of plain Python values.

:func:`deferred_indexes` drops a PostgreSQL table's secondary indexes and its own foreign
keys for a bulk load inside the caller's transaction and creates them again afterwards
(one sort per index and one join per key instead of a B-tree insert and a key lookup per
row).

Values: timestamps are naive and mean UTC (tz-aware input is converted to UTC, then made
naive); NaN / NaT / None / ``pd.NA`` become NULL; dates stay dates; booleans stay
booleans; integer columns with missing values stay integers. Columns of ``table`` that are
missing from ``frame`` are left NULL (they must be nullable). The insert runs inside the
caller's transaction on ``conn``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from crm_data.spreadsheet_safety import csv_text

#: Rows per ``executemany`` batch / per CSV chunk sent to COPY.
EXECUTEMANY_CHUNK = 20_000
COPY_CHUNK = 200_000
_PG_NULL = r"\N"


def bulk_insert(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> int:
    """Insert every row of ``frame`` into ``table`` through ``conn``; return the row count.

    ``frame``'s columns must be columns of ``table`` (in any order); extra columns raise
    ``ValueError``.
    """
    unknown = [c for c in frame.columns if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name}: columns not in the table: {unknown}")
    if frame.empty:
        return 0
    columns = [c.name for c in table.columns if c.name in frame.columns]
    frame = _normalise(table, frame[columns])
    dialect = conn.dialect.name
    if dialect == "duckdb":
        _insert_duckdb(conn, table, frame)
    elif dialect == "postgresql" and conn.dialect.driver == "psycopg":
        _insert_postgresql_copy(conn, table, frame)
    else:
        _insert_executemany(conn, table, frame)
    return len(frame)


def _is_datetime_type(column: sa.Column) -> bool:
    return isinstance(column.type, sa.DateTime)


def _is_date_type(column: sa.Column) -> bool:
    return isinstance(column.type, sa.Date) and not isinstance(column.type, sa.DateTime)


def _normalise(table: sa.Table, frame: pd.DataFrame) -> pd.DataFrame:
    """Naive-UTC timestamps, integer columns as nullable integers; the rest untouched."""
    changed: dict[str, pd.Series] = {}
    for name in frame.columns:
        column = table.c[name]
        series = frame[name]
        if _is_datetime_type(column) or _is_date_type(column):
            if isinstance(series.dtype, pd.DatetimeTZDtype):
                changed[name] = series.dt.tz_convert("UTC").dt.tz_localize(None)
            elif series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
                if _is_date_type(column):
                    parsed = pd.to_datetime(series, format="ISO8601", utc=True).dt.tz_localize(None)
                    changed[name] = parsed.dt.date.where(parsed.notna(), None)
                else:
                    changed[name] = pd.to_datetime(series, format="ISO8601", utc=True).dt.tz_localize(None)
        elif isinstance(column.type, sa.Integer) and pd.api.types.is_float_dtype(series.dtype):
            changed[name] = series.round().astype("Int64")
    if not changed:
        return frame
    return frame.assign(**changed)


def _insert_duckdb(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    raw = conn.connection.driver_connection
    view = f"_bulk_{uuid.uuid4().hex}"
    preparer = conn.dialect.identifier_preparer
    target = preparer.format_table(table)
    names = ", ".join(preparer.quote(c) for c in frame.columns)
    selects = ", ".join(
        f"CAST({preparer.quote(c)} AS {table.c[c].type.compile(dialect=conn.dialect)})" for c in frame.columns
    )
    # Arrow is scanned several times faster than a DataFrame (strings need no conversion)
    raw.register(view, pa.Table.from_pandas(frame, preserve_index=False))
    try:
        raw.execute(f"INSERT INTO {target} ({names}) SELECT {selects} FROM {view}")
    finally:
        raw.unregister(view)


def _arrow_table(frame: pd.DataFrame) -> pa.Table | None:
    """``frame`` as an Arrow table (NaN / NaT / None / ``pd.NA`` as nulls), or None when Arrow
    cannot give a column one type (an object column mixing text and numbers, say) or a type
    that :func:`_csv_writable` does not list (categories, decimals, ...)."""
    try:
        data = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return data if all(_csv_writable(field.type) for field in data.schema) else None


def _csv_writable(kind: pa.DataType) -> bool:
    """True for the Arrow types whose CSV text PostgreSQL reads back as the same value."""
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_timestamp(kind)
        or pa.types.is_date(kind)
        or pa.types.is_null(kind)
    )


def _arrow_csv_chunks(data: pa.Table) -> Iterator[bytes]:
    """CSV of ``data`` without a header, :data:`COPY_CHUNK` rows at a time. Arrow quotes
    every text value (an empty string is ``""``) and writes a null as an empty, unquoted
    field — what ``COPY ... (FORMAT csv)`` reads as NULL."""
    options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
    for start in range(0, data.num_rows, COPY_CHUNK):
        out = io.BytesIO()
        pa_csv.write_csv(data.slice(start, COPY_CHUNK), out, options)
        yield out.getvalue()


def _pandas_csv_chunks(frame: pd.DataFrame) -> Iterator[str] | None:
    """CSV text of ``frame`` by pandas with NULL as ``\\N``, or None when a text value is a
    literal ``\\N`` (it would read back as NULL)."""
    text_columns = [
        c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])
    ]
    if any((frame[c] == _PG_NULL).any() for c in text_columns):
        return None
    # csv_text: a carriage return in a value is quoted (to_csv left it bare and COPY then
    # ended the row there)
    return (
        csv_text(frame.iloc[start : start + COPY_CHUNK], header=False, na_rep=_PG_NULL)
        for start in range(0, len(frame), COPY_CHUNK)
    )


def _insert_postgresql_copy(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    data = _arrow_table(frame)
    if data is not None:
        chunks: Iterator[bytes] | Iterator[str] = _arrow_csv_chunks(data)
        options = "FORMAT csv"
    else:
        pandas_chunks = _pandas_csv_chunks(frame)
        if pandas_chunks is None:  # a literal "\N": take the slower, exact path
            _insert_executemany(conn, table, frame)
            return
        chunks, options = pandas_chunks, f"FORMAT csv, NULL '{_PG_NULL}'"
    preparer = conn.dialect.identifier_preparer
    target = preparer.format_table(table)
    names = ", ".join(preparer.quote(c) for c in frame.columns)
    cursor = conn.connection.driver_connection.cursor()
    try:
        with cursor.copy(f"COPY {target} ({names}) FROM STDIN ({options})") as copy:
            for chunk in chunks:
                copy.write(chunk)
    finally:
        cursor.close()


@contextlib.contextmanager
def deferred_indexes(conn: sa.Connection, table: sa.Table) -> Iterator[list[str]]:
    """On PostgreSQL: drop ``table``'s secondary indexes (neither unique nor a primary key)
    and its foreign keys (those of ``table``'s own columns) in the caller's transaction, let
    the caller load rows, then create them again exactly as they were (``pg_get_indexdef``,
    ``pg_get_constraintdef``); yields the statements that recreate them. Creating an index
    sorts the table once and adding a foreign key checks every row in one join, where a load
    into the indexed table pays a B-tree insert per index and a key lookup per row. A
    violated key fails the ``ADD CONSTRAINT`` like the row would have, and any failure rolls
    the drops back with the rest of the transaction. The drops lock ``table`` (and the
    referenced tables against writes) until the transaction ends: other sessions' reads of
    ``table`` wait for it. On other databases nothing is dropped (yields an empty list)."""
    if conn.dialect.name != "postgresql":
        yield []
        return
    preparer = conn.dialect.identifier_preparer
    target = preparer.format_table(table)
    indexes = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = CAST(:table AS regclass) AND NOT i.indisunique AND NOT i.indisprimary"
            " ORDER BY c.relname"
        ),
        {"table": target},
    ).all()
    keys = conn.execute(
        sa.text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = CAST(:table AS regclass) AND contype = 'f' ORDER BY conname"
        ),
        {"table": target},
    ).all()
    schema_name = conn.execute(
        sa.text("SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = CAST(:table AS regclass)"),
        {"table": target},
    ).scalar_one()
    for name, _ in keys:
        conn.exec_driver_sql(f"ALTER TABLE {target} DROP CONSTRAINT {preparer.quote(name)}")
    for name, _ in indexes:
        conn.exec_driver_sql(f"DROP INDEX {preparer.quote(schema_name)}.{preparer.quote(name)}")
    recreate = [definition for _, definition in indexes] + [
        f"ALTER TABLE {target} ADD CONSTRAINT {preparer.quote(name)} {definition}"
        for name, definition in keys
    ]
    yield recreate
    for statement in recreate:
        conn.exec_driver_sql(statement)


def _python_values(table: sa.Table, frame: pd.DataFrame) -> list[list[object]]:
    """One list per column of plain Python objects (int, float, str, bool, datetime, date),
    with None for every missing value."""
    out: list[list[object]] = []
    for name in frame.columns:
        series = frame[name]
        missing = series.isna().to_numpy()
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            values = (
                series.dt.date.to_numpy(dtype=object)
                if _is_date_type(table.c[name])
                else series.dt.to_pydatetime()
            )
            values = np.asarray(values, dtype=object)
        else:
            values = series.to_numpy(dtype=object)
        values = values.copy()
        values[missing] = None
        out.append(values.tolist())
    return out


def _insert_executemany(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    columns = list(frame.columns)
    rows = zip(*_python_values(table, frame), strict=True)
    statement = table.insert()
    while batch := list(itertools.islice(rows, EXECUTEMANY_CHUNK)):
        conn.execute(statement, [dict(zip(columns, row, strict=True)) for row in batch])
