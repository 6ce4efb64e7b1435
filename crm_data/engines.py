"""Engines for any SQLAlchemy URL, with UTC sessions and an optional read-only mode.

The URL comes from the caller, else ``CRM_DATABASE_URL``, else the embedded default:
a DuckDB file at ``data/crm.duckdb`` in the project folder (git-ignored).
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from crm_data import dialects

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DB_PATH = PROJECT_DIR / "data" / "crm.duckdb"
DEFAULT_URL = f"duckdb:///{DEFAULT_DB_PATH}"


class DatabaseBusyError(RuntimeError):
    """The embedded DuckDB file is held by another process (e.g. the running dashboard)."""


def database_url(url: str | None = None) -> str:
    """The URL to use: ``url``, else ``$CRM_DATABASE_URL``, else the embedded DuckDB file."""
    return url or os.environ.get("CRM_DATABASE_URL") or DEFAULT_URL


def make_engine(url: str | None = None, *, read_only: bool = False) -> sa.Engine:
    """An engine whose every connection uses UTC (and, if asked, cannot write).

    Read-only means DuckDB ``read_only``, SQLite ``mode=ro`` and PostgreSQL
    ``default_transaction_read_only``. For a DuckDB file, the folder is created when
    writing; reading a file that does not exist raises ``FileNotFoundError``.
    """
    sa_url = sa.make_url(database_url(url))
    backend = sa_url.get_backend_name()
    connect_args: dict[str, object] = {}
    if backend == "duckdb":
        database = sa_url.database or ":memory:"
        if database != ":memory:":
            path = Path(database)
            if read_only and not path.exists():
                raise FileNotFoundError(f"no database at {path}: run `python -m crm_data demo` first")
            path.parent.mkdir(parents=True, exist_ok=True)
        if read_only:
            connect_args["read_only"] = True
    elif backend == "sqlite":
        if read_only and sa_url.database not in (None, "", ":memory:"):
            sa_url = sa_url.set(database=f"file:{sa_url.database}?mode=ro", query={"uri": "true"})
    elif backend == "postgresql" and read_only:
        connect_args["options"] = "-c default_transaction_read_only=on"
    engine = sa.create_engine(sa_url, connect_args=connect_args)
    dialects.prepare_engine(engine)
    return engine


def connect_checked(engine: sa.Engine) -> sa.Connection:
    """Open a connection, turning DuckDB's file-lock error into a clear message."""
    try:
        return engine.connect()
    except sa.exc.DBAPIError as error:
        if "lock" in str(error.orig).lower() and engine.dialect.name == "duckdb":
            raise DatabaseBusyError(
                f"the database file {engine.url.database} is open in another process "
                "(probably the dashboard). Stop the dashboard, run the command again, then "
                "start the dashboard; or write to another file with --url and point "
                "CRM_DATABASE_URL at it."
            ) from error
        raise
