"""Engines for any SQLAlchemy URL, with UTC sessions and an optional read-only mode.

The URL comes from the caller, else ``CRM_DATABASE_URL``, else the embedded default, a
DuckDB file called ``crm.duckdb`` (:func:`default_db_path`):

* running from a source checkout (the folder above ``crm_data`` holds ``pyproject.toml``
  and ``dashboard.py``): ``data/crm.duckdb`` in that project folder (git-ignored);
* installed as a package (e.g. into ``site-packages``):
  ``$XDG_DATA_HOME/crm-insights/crm.duckdb``, i.e. ``~/.local/share/crm-insights/crm.duckdb``
  when ``XDG_DATA_HOME`` is unset.

Reading never creates a database: ``make_engine(read_only=True)`` refuses a DuckDB or
SQLite file that does not exist (``FileNotFoundError``). DuckDB lets one process write a
file, or any number of processes read it: an engine whose connection fails on the file's
lock raises :class:`DatabaseBusyError`, whose message says what to do.

A database that cannot be used at all (a damaged or foreign file, a folder, a PostgreSQL
server that cannot be reached, a database or role it does not have) raises the driver's
error; :func:`explain_database_error` turns it into one plain sentence saying what is wrong
and what to do (the command line and the dashboard show that sentence).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa

from crm_data import dialects

#: The folder above the ``crm_data`` package: the project folder in a source checkout,
#: ``site-packages`` when installed.
PROJECT_DIR = Path(__file__).resolve().parent.parent
#: The file name of the embedded database, and the folder of an installed package's data.
DB_FILE_NAME = "crm.duckdb"
APP_DIR_NAME = "crm-insights"


def is_source_checkout(project_dir: Path = PROJECT_DIR) -> bool:
    """True when ``project_dir`` is the project folder of a checkout (not site-packages)."""
    return (project_dir / "pyproject.toml").is_file() and (project_dir / "dashboard.py").is_file()


def default_db_path(project_dir: Path = PROJECT_DIR, environ: Mapping[str, str] | None = None) -> Path:
    """The embedded DuckDB file: ``<project>/data/crm.duckdb`` in a source checkout, else
    ``$XDG_DATA_HOME/crm-insights/crm.duckdb`` (``~/.local/share`` when ``XDG_DATA_HOME``
    is unset, empty or relative, as the XDG base-directory specification says)."""
    if is_source_checkout(project_dir):
        return project_dir / "data" / DB_FILE_NAME
    environ = os.environ if environ is None else environ
    data_home = environ.get("XDG_DATA_HOME", "")
    base = (
        Path(data_home) if data_home and Path(data_home).is_absolute() else Path.home() / ".local" / "share"
    )
    return base / APP_DIR_NAME / DB_FILE_NAME


DEFAULT_DB_PATH = default_db_path()
DEFAULT_URL = f"duckdb:///{DEFAULT_DB_PATH}"

_NO_DATABASE_HINT = "run `crm-insights demo` first (or load your data with `crm-insights import PATH`)"


class DatabaseBusyError(sa.exc.OperationalError, RuntimeError):
    """The embedded DuckDB file is held by another process (e.g. the running dashboard).

    ``str(error)`` says what to do; ``error.orig`` is DuckDB's own lock error. It is an
    ``sqlalchemy.exc.OperationalError`` too, so code that handles database errors in
    general (``except sqlalchemy.exc.DBAPIError``) keeps handling it.
    """

    def __init__(self, message: str, orig: BaseException | None = None) -> None:
        super().__init__(None, None, orig)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type, tuple[str, BaseException | None]]:
        return self.__class__, (self.message, self.orig)


def database_url(url: str | None = None) -> str:
    """The URL to use: ``url``, else ``$CRM_DATABASE_URL``, else the embedded DuckDB file
    (:func:`default_db_path`)."""
    return url or os.environ.get("CRM_DATABASE_URL") or f"duckdb:///{default_db_path()}"


def _is_lock_error(error: BaseException | None) -> bool:
    text = str(error).lower()
    return "could not set lock" in text or "conflicting lock" in text


def busy_message(database: str | None, read_only: bool, reason: BaseException | None = None) -> str:
    """What to do when the DuckDB file ``database`` is locked by another process."""
    if read_only:
        # DuckDB lets readers share a file: a reader is refused only beside a writer
        return (
            f"the database file {database} is open for writing in another process (a "
            "`crm-insights demo` or `import`, or a program that opened it with make_engine() "
            "without read_only=True): wait until it has finished, or stop it, then try again."
        )
    held_by_readers = "read-only mode" in str(reason)  # DuckDB says so when only readers hold it
    holder = (
        "probably the dashboard"
        if held_by_readers
        else "a `crm-insights demo` or `import`, the dashboard's Import page, or another program writing to it"
    )
    return (
        f"the database file {database} is open in another process ({holder}). To write to it, "
        "stop that process (the dashboard: Ctrl+C where `crm-insights serve` runs), run the command "
        "again, then start the dashboard; or write to another file with --url and point "
        "CRM_DATABASE_URL at it. To only read it beside the dashboard, open it read-only: "
        "make_engine(read_only=True)."
    )


def _raise_busy_on_lock(engine: sa.Engine, read_only: bool) -> None:
    """Turn DuckDB's file-lock error, raised while an engine connects, into DatabaseBusyError."""

    @sa.event.listens_for(engine, "handle_error")
    def _on_error(context: sa.engine.ExceptionContext) -> None:
        original = context.original_exception
        if context.connection is None and _is_lock_error(original):
            raise DatabaseBusyError(busy_message(engine.url.database, read_only, original), original)


def make_engine(url: str | None = None, *, read_only: bool = False) -> sa.Engine:
    """An engine whose every connection uses UTC (and, if asked, cannot write).

    Read-only means DuckDB ``read_only``, SQLite ``mode=ro`` and PostgreSQL
    ``default_transaction_read_only``. For a DuckDB file, the folder is created when
    writing; reading a DuckDB or SQLite file that does not exist raises
    ``FileNotFoundError`` (nothing is created). A DuckDB connection refused because another
    process holds the file raises :class:`DatabaseBusyError`: a reader is refused beside
    a writer only, a writer beside any other process.
    """
    sa_url = sa.make_url(database_url(url))
    backend = sa_url.get_backend_name()
    connect_args: dict[str, object] = {}
    if backend == "duckdb":
        database = sa_url.database or ":memory:"
        if database != ":memory:":
            path = Path(database)
            if read_only and not path.exists():
                raise FileNotFoundError(f"no database at {path}: {_NO_DATABASE_HINT}")
            path.parent.mkdir(parents=True, exist_ok=True)
        if read_only:
            connect_args["read_only"] = True
    elif backend == "sqlite":
        if read_only and sa_url.database not in (None, "", ":memory:"):
            if not sa_url.database.startswith("file:") and not Path(sa_url.database).exists():
                raise FileNotFoundError(f"no database at {sa_url.database}: {_NO_DATABASE_HINT}")
            sa_url = sa_url.set(database=f"file:{sa_url.database}?mode=ro", query={"uri": "true"})
    elif backend == "postgresql" and read_only:
        connect_args["options"] = "-c default_transaction_read_only=on"
    engine = sa.create_engine(sa_url, connect_args=connect_args)
    dialects.prepare_engine(engine)
    if backend == "duckdb":
        if read_only:
            dialects.limit_duckdb_memory(engine)
        _raise_busy_on_lock(engine, read_only)
    return engine


def connect_checked(engine: sa.Engine) -> sa.Connection:
    """Open a connection; DuckDB's file-lock error becomes :class:`DatabaseBusyError`
    (engines of :func:`make_engine` do this themselves; this also covers other engines)."""
    try:
        return engine.connect()
    except DatabaseBusyError:
        raise
    except sa.exc.DBAPIError as error:
        if engine.dialect.name == "duckdb" and _is_lock_error(error.orig):
            message = busy_message(engine.url.database, False, error.orig)
            raise DatabaseBusyError(message, error.orig) from error
        raise


# --- broken or unreachable databases ------------------------------------------------------

_WHERE = "CRM_DATABASE_URL (or --url)"


def _error_text(error: BaseException) -> str:
    """The driver's own message (``error.orig`` of a SQLAlchemy error), on one line."""
    orig = getattr(error, "orig", None) or error
    return " ".join(str(orig).split())


def _file_path(sa_url: sa.URL) -> Path | None:
    """The file of a DuckDB or SQLite URL (None for in-memory databases and servers)."""
    if sa_url.get_backend_name() not in ("duckdb", "sqlite"):
        return None
    database = sa_url.database or ""
    if database in ("", ":memory:"):
        return None
    if database.startswith("file:"):  # SQLite URI filename: file:PATH?mode=ro
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database)


def _server(sa_url: sa.URL, text: str) -> str:
    """``host:port`` of the PostgreSQL server, as libpq names it in ``text`` when it does."""
    found = re.search(r'server at "([^"]+)"(?:\s*\([^)]*\))?, port (\d+)', text)
    if found:
        return f"{found.group(1)}:{found.group(2)}"
    found = re.search(r'server on socket "([^"]+)"', text)
    if found:
        return f"the socket {found.group(1)}"
    return f"{sa_url.host or 'localhost'}:{sa_url.port or 5432}"


def _quoted_name(text: str, kind: str, default: str | None) -> str:
    found = re.search(rf'{kind} "([^"]*)" does not exist', text)
    return found.group(1) if found else (default or "?")


def explain_database_error(
    error: BaseException, url: str | sa.URL | None = None, prog: str = "crm-insights"
) -> str | None:
    """One plain sentence saying what is wrong with the database and what to do, when
    ``error`` (a SQLAlchemy, DBAPI or OS error raised while opening or reading the database
    of ``url``) says it cannot be used at all; None for any other error (a busy file, a
    missing table, a bug: the caller handles those).

    Recognised: a DuckDB or SQLite file that is damaged (truncated, bytes overwritten), is
    not a database of that kind, is empty (0 bytes) or is a folder; a PostgreSQL server
    that refuses connections, a host name that does not resolve, a database or role the
    server does not have, a wrong password. ``prog`` is how the user runs the command line
    (for the advice). The URL is shown with its password hidden.
    """
    if isinstance(error, DatabaseBusyError):
        return None
    sa_url = sa.make_url(database_url(url) if not isinstance(url, sa.URL) else url)
    shown = sa_url.render_as_string(hide_password=True)
    backend = sa_url.get_backend_name()
    text = _error_text(error)
    lowered = text.lower()
    create = f"`{prog} demo` (demo data) or `{prog} import PATH` (your data)"
    path = _file_path(sa_url)
    if path is not None:
        kind = "DuckDB" if backend == "duckdb" else "SQLite"
        if path.is_dir():
            example = path / (DB_FILE_NAME if backend == "duckdb" else "crm.db")
            return (
                f"The database path {path} is a folder, not a {kind} file: point {_WHERE} at the "
                f"database file itself (e.g. {example})."
            )
        empty = path.is_file() and path.stat().st_size == 0
        foreign = "not a valid duckdb database file" in lowered or "file is not a database" in lowered
        damage = None
        if "could not read enough bytes" in lowered:  # DuckDB reading past the end of the file
            damage = "truncated: it is shorter than the database it holds, e.g. after an interrupted copy"
        elif "corrupt database file" in lowered:  # DuckDB: a block fails its checksum
            damage = "part of it was overwritten: its data fails DuckDB's checksum"
        elif "database disk image is malformed" in lowered:  # SQLite: truncated or overwritten
            damage = "SQLite finds its contents malformed: truncated or partly overwritten"
        if empty and (foreign or damage):
            return (
                f"The database file {path} is empty (0 bytes), not a {kind} database: delete it, "
                f"then create the database there with {create}."
            )
        if foreign:
            return (
                f"The file {path} is not a {kind} database: point {_WHERE} at your database "
                f"file, or move this file away and create a new database with {create}."
            )
        if damage:
            return (
                f"The {kind} file {path} is damaged ({damage}): restore it from a backup, or move "
                f"it away and create a new database with {create}."
            )
        return None
    if backend != "postgresql":
        return None
    server = _server(sa_url, text)
    no_socket = "server on socket" in lowered and "no such file or directory" in lowered
    if "connection refused" in lowered or no_socket:
        why = "no such socket" if no_socket else "connection refused"
        return (
            f"No PostgreSQL server is listening at {server} ({why}), so {shown} cannot be "
            f"reached: start PostgreSQL there, or correct the host and port in {_WHERE}."
        )
    if "failed to resolve host" in lowered or "could not translate host name" in lowered:
        return (
            f"The host name {sa_url.host} of {shown} cannot be found (DNS lookup failed): correct "
            f"the host in {_WHERE}."
        )
    if re.search(r'fatal: +database "[^"]*" does not exist', lowered):
        name = _quoted_name(text, "database", sa_url.database)
        return (
            f'The PostgreSQL server at {server} has no database "{name}": create it (`createdb '
            f"{name}`) and fill it with {create}, or correct the database name in {_WHERE}."
        )
    if re.search(r'fatal: +role "[^"]*" does not exist', lowered):
        name = _quoted_name(text, "role", sa_url.username)
        return (
            f'The PostgreSQL server at {server} has no role (user) "{name}": create it (`createuser '
            f"{name}`; the README shows a read-only role for the dashboard), or correct the user "
            f"name in {_WHERE}."
        )
    if "password authentication failed" in lowered:
        return (
            f"The PostgreSQL server at {server} refused the password of user "
            f'"{sa_url.username}": correct the password in {_WHERE}.'
        )
    return None
