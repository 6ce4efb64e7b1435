"""Fast bulk loading of a DataFrame into one canonical table, per dialect.

``bulk_insert(conn, table, frame)`` picks the fastest correct path:

* **DuckDB**: the frame is registered (as an Arrow table) on the raw DuckDB connection and copied with
  ``INSERT INTO t (cols) SELECT CAST(col AS type), ... FROM frame`` (columnar, no Python
  loop per row).
* **PostgreSQL** (psycopg 3): ``COPY t (cols) FROM STDIN (FORMAT csv)`` fed with CSV text
  written by pandas in chunks (``crm_data.spreadsheet_safety.csv_text``: a value holding a
  carriage return is quoted).
* **anything else**: ``executemany`` of ``table.insert()`` in chunks of plain Python values.

Values: timestamps are naive and mean UTC (tz-aware input is converted to UTC, then made
naive); NaN / NaT / None / ``pd.NA`` become NULL; dates stay dates; booleans stay
booleans; integer columns with missing values stay integers. Columns of ``table`` that are
missing from ``frame`` are left NULL (they must be nullable). The insert runs inside the
caller's transaction on ``conn``.
"""

from __future__ import annotations

import itertools
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
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


def _insert_postgresql_copy(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    text_columns = [
        c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])
    ]
    if any((frame[c] == _PG_NULL).any() for c in text_columns):
        # a literal "\N" would read back as NULL: take the slower, exact path
        _insert_executemany(conn, table, frame)
        return
    preparer = conn.dialect.identifier_preparer
    target = preparer.format_table(table)
    names = ", ".join(preparer.quote(c) for c in frame.columns)
    statement = f"COPY {target} ({names}) FROM STDIN (FORMAT csv, NULL '{_PG_NULL}')"
    cursor = conn.connection.driver_connection.cursor()
    try:
        with cursor.copy(statement) as copy:
            for start in range(0, len(frame), COPY_CHUNK):
                chunk = frame.iloc[start : start + COPY_CHUNK]
                # csv_text: a carriage return in a value is quoted (to_csv left it bare and COPY
                # then ended the row there)
                copy.write(csv_text(chunk, header=False, na_rep=_PG_NULL))
    finally:
        cursor.close()


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
