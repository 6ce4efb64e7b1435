"""Cached, read-only database access for the pages.

* ``engine()``: one read-only engine per process (``st.cache_resource``), for
  ``CRM_DATABASE_URL`` or the embedded default DuckDB file.
* ``kpi(function, view_or_filters, **kwargs)``: a KPI result, cached with
  ``st.cache_data`` keyed by the function's name, the filters and the arguments.
* ``require_database()``: stops the page with a friendly message (not a traceback) when
  the database is missing, empty or held by a writer, and with one ``st.error`` saying
  what is wrong and what to do when it cannot be used at all (a damaged or foreign file, a
  folder, a PostgreSQL server, database or role that cannot be reached:
  ``crm_data.engines.explain_database_error``). Every read below stops the page the same
  way when the damage shows only then (a DuckDB file is read block by block).
* ``refresh()``: forget cached results and close the engine. The read-only engine keeps
  the embedded DuckDB file open (DuckDB then refuses writers in other processes, and a
  writer in this process needs the read-only connections closed): call ``refresh()``
  before writing to it from the dashboard process (the Import page) and after.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import sqlalchemy as sa
import streamlit as st

from crm_data import schema
from crm_data.engines import database_url, explain_database_error, make_engine

__all__ = ["call", "database_url", "engine", "kpi", "kpi_again", "refresh", "require_database", "shown_url"]
from kpis.filters import EVERYTHING, Filters, Scope

#: How the dashboard tells to run the command line, in its messages.
CLI = "python -m crm_data"
#: How long cached KPI results live (seconds): data only changes through imports, which
#: call ``refresh()``; the TTL bounds staleness when another process writes.
CACHE_TTL = 15 * 60


class DatabaseUnavailable(RuntimeError):
    """The dashboard cannot read the database; the message says what to do."""


def shown_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return sa.make_url(url).render_as_string(hide_password=True)


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> sa.Engine:
    return make_engine(url, read_only=True)


def engine() -> sa.Engine:
    """The process-wide read-only engine (raises ``DatabaseUnavailable`` with advice)."""
    url = database_url()
    try:
        return _engine(url)
    except FileNotFoundError as error:
        raise DatabaseUnavailable(
            f"There is no database yet at `{shown_url(url)}`.\n\n"
            "Create the demo database with `python -m crm_data demo` (or import your data with "
            "`python -m crm_data import PATH`), then reload this page."
        ) from error


def _is_lock_error(text: str) -> bool:
    return "lock" in text


def _is_missing_table(text: str) -> bool:
    """The database was reached and a CRM table is not there (DuckDB, SQLite, PostgreSQL)."""
    return (
        "catalog error: table with name" in text
        or "no such table" in text
        or bool(re.search(r'relation "[^"]*" does not exist', text))
    )


def _problem_message(error: Exception, url: str) -> str:
    """The message for a database that was reached but cannot be read now."""
    text = str(getattr(error, "orig", error) or error).lower()
    if _is_lock_error(text):
        return (
            f"The database `{shown_url(url)}` is being written by another process "
            f"(a `{CLI} demo` or `import`). Reload this page when it has finished."
        )
    if _is_missing_table(text):
        return (
            f"The database `{shown_url(url)}` has no CRM tables yet. Run `{CLI} demo` "
            f"or `{CLI} import PATH`, then reload this page."
        )
    return f"The database `{shown_url(url)}` cannot be read: {getattr(error, 'orig', error)}"


def _forget_engine(url: str) -> None:
    """Close the cached engine of ``url`` (a replaced or repaired file is opened afresh)."""
    with contextlib.suppress(Exception):
        _engine(url).dispose()
    _engine.clear()


def _classify(error: BaseException, url: str) -> tuple[str, str] | None:
    """``("error", sentence)`` when the database cannot be used at all, ``("info", message)``
    when it is locked, has no CRM tables or cannot be read for another database reason;
    None for anything else (a bug: the caller re-raises it)."""
    if isinstance(error, DatabaseUnavailable):
        return "info", str(error)
    sentence = explain_database_error(error, url, CLI)
    if sentence is not None:
        return "error", sentence
    if isinstance(error, sa.exc.DBAPIError | OSError):
        return "info", _problem_message(error, url)
    return None


def _stop_with(kind: str, message: str) -> None:
    """The message (an ``st.error`` for a database that cannot be used, else an ``st.info``)
    and ``st.stop()``: the rest of the page does not run."""
    if kind == "error":
        st.error(message, icon=":material/error:")
    else:
        st.info(message, icon=":material/database:")
    st.stop()


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def _check(url: str) -> tuple[str, str] | None:
    """None when the CRM tables are readable, else ``(kind, message)`` for the user."""
    try:
        with engine().connect() as conn:
            conn.execute(sa.select(sa.func.count()).select_from(schema.accounts)).scalar_one()
    except Exception as error:
        problem = _classify(error, url)
        if problem is None:
            raise
        _forget_engine(url)
        return problem
    return None


def require_database() -> sa.Engine:
    """The engine, or a friendly message on the page and ``st.stop()``: an ``st.error``
    saying what to do when the database cannot be used at all, else an ``st.info``."""
    url = database_url()
    problem = _check(url)
    if problem is not None:
        _check.clear()  # look again on the next run: the user may have created it meanwhile
        _stop_with(*problem)
    return engine()


def stop_if_unusable(error: BaseException, url: str) -> None:
    """When ``error`` says the database cannot be used at all: its sentence in an
    ``st.error`` and ``st.stop()``; else return (the caller decides)."""
    sentence = explain_database_error(error, url, CLI)
    if sentence is not None:
        _check.clear()
        _forget_engine(url)
        _stop_with("error", sentence)


@contextlib.contextmanager
def _friendly_database_errors() -> Iterator[None]:
    """Turn "the database cannot be used" (damaged, unreachable) into one ``st.error``, and
    "the file is locked / gone / has no tables" into an ``st.info``, then ``st.stop()``;
    anything else (a bug) propagates."""
    url = database_url()
    try:
        yield
    except DatabaseUnavailable as error:
        _stop_with("info", str(error))
    except Exception as error:
        stop_if_unusable(error, url)
        text = str(getattr(error, "orig", error)).lower()
        if not isinstance(error, sa.exc.DBAPIError) or not (_is_lock_error(text) or _is_missing_table(text)):
            raise  # e.g. a KPI's bad SQL: a bug, keep its traceback
        _check.clear()
        _stop_with("info", _problem_message(error, url))


def _qualified_name(function: Callable[..., Any]) -> str:
    return f"{function.__module__}:{function.__qualname__}"


def _resolve(name: str) -> Callable[..., Any]:
    module, _, qualname = name.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


@st.cache_data(ttl=CACHE_TTL, show_spinner=False, max_entries=2000)
def _cached_kpi(url: str, name: str, filters: Filters, kwargs: tuple[tuple[str, Any], ...]) -> Any:
    function = _resolve(name)
    return function(engine(), filters, **dict(kwargs))


def _accepts(function: Callable[..., Any], parameter: str) -> bool:
    try:
        return parameter in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def kpi(function: Callable[..., Any], view_or_filters: Any, **kwargs: Any) -> Any:
    """``function(engine, filters, **kwargs)``, cached by function name + filters + kwargs.

    Given a ``View`` (from ``ui.filters.global_filters()``), its filters are used and, when
    the function takes a ``freq`` that was not passed, the view's period too. Returns a
    copy: callers may modify it.
    """
    filters = getattr(view_or_filters, "filters", view_or_filters)
    if not isinstance(filters, Filters):
        raise TypeError(f"expected a View or kpis.Filters, got {type(view_or_filters).__name__}")
    freq = getattr(view_or_filters, "freq", None)
    if freq is not None and "freq" not in kwargs and _accepts(function, "freq"):
        kwargs["freq"] = freq
    key = tuple(sorted((k, _hashable(v)) for k, v in kwargs.items()))
    name = _qualified_name(function)
    with _friendly_database_errors():
        result = _cached_kpi(database_url(), name, filters, key)
    if isinstance(result, pd.DataFrame):  # how to compute it again for another range (last year)
        result.attrs[SOURCE] = _source_text(name, key)
    return result


#: ``DataFrame.attrs`` key of a ``kpi`` result: a token naming its function and keyword
#: arguments in ``_SOURCES`` (attrs stay plain text: Streamlit writes a shown frame's
#: attrs as JSON, and no code is ever loaded back from them).
SOURCE = "kpi_source"
#: token -> (function name, keyword arguments); bounded by the dashboard's distinct KPI calls
_SOURCES: dict[str, tuple[str, tuple[tuple[str, Any], ...]]] = {}


def _source_text(name: str, key: tuple[tuple[str, Any], ...]) -> str:
    token = hashlib.sha256(repr((name, key)).encode()).hexdigest()[:24]
    _SOURCES[token] = (name, key)
    return token


def kpi_again(frame: pd.DataFrame, filters: Filters) -> Any:
    """The KPI that made ``frame`` (a ``kpi`` result, see ``SOURCE``) for other ``filters``
    (e.g. last year's range), cached like ``kpi``; None when ``frame`` is not one."""
    source = _SOURCES.get(getattr(frame, "attrs", {}).get(SOURCE))
    if source is None:
        return None
    name, key = source
    with _friendly_database_errors():
        return _cached_kpi(database_url(), name, filters, key)


@st.cache_data(ttl=CACHE_TTL, show_spinner=False, max_entries=200)
def _cached_call(url: str, name: str, kwargs: tuple[tuple[str, Any], ...]) -> Any:
    with engine().connect() as conn:
        return _resolve(name)(conn, **dict(kwargs))


def call(function: Callable[..., Any], **kwargs: Any) -> Any:
    """``function(connection, **kwargs)`` for functions without filters (e.g. the data-quality
    check), cached like ``kpi`` by function name + arguments."""
    key = tuple(sorted((k, _hashable(v)) for k, v in kwargs.items()))
    with _friendly_database_errors():
        return _cached_call(database_url(), _qualified_name(function), key)


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def _dimension_values(url: str, scope: Scope = EVERYTHING) -> dict[str, list[str]]:
    from kpis.filters import dimension_values as read

    return read(engine(), scope)


def dimension_values(url: str, scope: Scope = EVERYTHING) -> dict[str, list[str]]:
    """The filter bar's choices per dimension within ``scope`` (``kpis.filters.dimension_values``)."""
    with _friendly_database_errors():
        return _dimension_values(url, scope)


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def _data_date_range(url: str) -> tuple[dt.date, dt.date] | None:
    from kpis.filters import data_date_range as read

    return read(engine())


def data_date_range(url: str) -> tuple[dt.date, dt.date] | None:
    """First and last day with data (``kpis.filters.data_date_range``)."""
    with _friendly_database_errors():
        return _data_date_range(url)


def table_row_counts(url: str) -> pd.DataFrame:
    """Rows per canonical table, parents first: what is in the database."""
    with _friendly_database_errors():
        return _table_row_counts(url)


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def _table_row_counts(url: str) -> pd.DataFrame:
    rows = []
    with engine().connect() as conn:
        for table in schema.metadata.sorted_tables:
            try:
                count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            except sa.exc.DBAPIError as error:
                if explain_database_error(error, url) is not None:
                    raise  # the database cannot be used: not a missing table
                count = None
            rows.append({"table": table.name, "rows": count})
    return pd.DataFrame(rows)


def refresh() -> None:
    """Forget every cached result and close the engine (call after writing new data)."""
    st.cache_data.clear()
    with contextlib.suppress(DatabaseUnavailable):
        engine().dispose()
    _engine.clear()


def dimension_labels(url: str) -> dict[str, dict[str, str]]:
    """Display names for id-valued filters: ``{"owners": {user_id: name}, "products": {...}}``."""
    with _friendly_database_errors():
        return _dimension_labels(url)


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def _dimension_labels(url: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    with engine().connect() as conn:
        for key, table, id_column in (
            ("owners", schema.users, "user_id"),
            ("products", schema.products, "product_id"),
        ):
            rows = conn.execute(sa.select(table.c[id_column], table.c.name))
            out[key] = {str(i): str(n) for i, n in rows if n is not None}
    return out
