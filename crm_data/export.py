"""Export every canonical table as a CSV bundle (the format ``python -m crm_data import`` reads).

One ``<table>.csv`` per table (all 17, empty ones with just the header), UTF-8, ``\\n``
line endings, canonical column names in schema order, rows ordered by primary key.
Values: timestamps ``2024-03-01T09:30:00Z`` (``.ffffff`` added when there are
sub-second parts), dates ``2024-03-01``, booleans ``true``/``false``, integers without a
decimal point, doubles in Python's shortest round-trip form, missing values empty.
Fields holding a comma, a double quote, ``\\n`` or ``\\r`` are quoted (a bare carriage
return would end the row for a CSV reader). Exporting and importing into an empty
database gives identical tables.

**A bundle is data, not a spreadsheet: its values are written exactly.** It exists to be
read back by our importer (a backup, or a move between databases: DuckDB to PostgreSQL),
so text such as ``=SUM(1+1)`` or ``-5 days`` is written as it is, without the formula
neutralising of the dashboard's downloads (``crm_data.spreadsheet_safety``): a quote put in
front would either change the value on every round trip or need the importer to strip
it, which would then change a value that really starts with a quote. Neither the
dashboard nor the CLI offers a bundle as a download. Do not open a bundle from an
untrusted database in a spreadsheet application; for a spreadsheet, use the dashboard's
CSV / XLSX downloads (``charts.export.frame_csv`` / ``frame_xlsx``), which neutralise text
that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.engines import connect_checked
from crm_data.spreadsheet_safety import csv_text
from crm_data.validation import column_kind, existing_tables

CHUNK_ROWS = 200_000


def format_frame(table: sa.Table, frame: pd.DataFrame) -> pd.DataFrame:
    """The bundle text of ``frame``'s values (vectorised), missing values as NA."""
    out: dict[str, pd.Series] = {}
    for column in table.columns:
        series = frame[column.name]
        kind = column_kind(column)
        if kind in ("timestamp", "date"):
            stamps = pd.to_datetime(series)
            if isinstance(stamps.dtype, pd.DatetimeTZDtype):
                stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
            if kind == "date":
                text = stamps.dt.strftime("%Y-%m-%d")
            else:
                text = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S")
                fraction = stamps.dt.microsecond.fillna(0) != 0
                if fraction.any():
                    text = text.where(~fraction, stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%f"))
                text = text + "Z"
            out[column.name] = text.where(stamps.notna())
        elif kind == "boolean":
            flags = series.astype("boolean")
            out[column.name] = flags.map({True: "true", False: "false"}).where(flags.notna())
        elif kind == "integer":
            out[column.name] = pd.to_numeric(series).astype("Int64").astype("str").where(series.notna())
        elif kind == "float":
            numbers = pd.to_numeric(series).astype("float64")
            out[column.name] = numbers.astype("str").where(numbers.notna())  # shortest round-trip repr
        else:
            out[column.name] = series.astype("str").where(series.notna())
    return pd.DataFrame(out, index=frame.index)


def _chunks(conn: sa.Connection, table: sa.Table) -> Iterator[pd.DataFrame]:
    order = list(table.primary_key.columns) or list(table.columns)
    statement = sa.select(*table.columns).order_by(*order)
    if conn.dialect.name == "duckdb":
        sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        reader = conn.connection.driver_connection.sql(sql).to_arrow_reader(CHUNK_ROWS)
        for batch in reader:
            yield batch.to_pandas()
        return
    result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(statement)
    columns = [c.name for c in table.columns]
    for rows in result.partitions():
        yield pd.DataFrame.from_records(rows, columns=columns)


def export_bundle(engine: sa.Engine, folder: str | Path) -> dict[str, int]:
    """Write every canonical table as ``folder/<table>.csv``; return the rows per table.

    Tables missing from the database are written with a header only. Values are exact (no
    formula neutralising: a bundle is data for the importer, see the module docstring).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with connect_checked(engine) as conn, conn.begin():
        present = existing_tables(conn)
        for table in schema.TABLES:
            header = pd.DataFrame(columns=[c.name for c in table.columns])
            rows = 0
            with open(folder / f"{table.name}.csv", "w", encoding="utf-8", newline="") as out:
                out.write(csv_text(header))
                if table.name in present:
                    for chunk in _chunks(conn, table):
                        out.write(csv_text(format_frame(table, chunk), header=False))
                        rows += len(chunk)
            counts[table.name] = rows
    return counts
