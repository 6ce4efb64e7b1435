"""Cached, read-only database access for the pages.

* ``engine()``: one read-only engine per process (``st.cache_resource``), for
  ``CRM_DATABASE_URL`` or the embedded default DuckDB file.
* ``kpi(function, view_or_filters, **kwargs)``: a KPI result, cached with
  ``st.cache_data`` keyed by the function's name, the filters and the arguments.
* ``require_database()``: stops the page with a friendly message (not a traceback) when
  the database is missing, empty or held by a writer.
* ``refresh()``: forget cached results and close the engine. The read-only engine keeps
  the embedded DuckDB file open (DuckDB then refuses writers in other processes, and a
  writer in this process needs the read-only connections closed): call ``refresh()``
  before writing to it from the dashboard process (the Import page) and after.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import importlib
import inspect
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import sqlalchemy as sa
import streamlit as st

from crm_data import schema
from crm_data.engines import database_url, make_engine

__all__ = ["call", "database_url", "engine", "kpi", "kpi_again", "refresh", "require_database", "shown_url"]
from kpis.filters import Filters

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


def _problem_message(error: Exception, url: str) -> str:
    text = str(getattr(error, "orig", error) or error).lower()
    if "lock" in text:
        return (
            f"The database `{shown_url(url)}` is being written by another process "
            "(a `python -m crm_data demo` or `import`). Reload this page when it has finished."
        )
    if "does not exist" in text or "no such table" in text or "catalog" in text:
        return (
            f"The database `{shown_url(url)}` has no CRM tables yet. Run `python -m crm_data demo` "
            "or `python -m crm_data import PATH`, then reload this page."
        )
    return f"The database `{shown_url(url)}` cannot be read: {getattr(error, 'orig', error)}"


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def _check(url: str) -> str | None:
    """None when the CRM tables are readable, else a message for the user."""
    try:
        with engine().connect() as conn:
            conn.execute(sa.select(sa.func.count()).select_from(schema.accounts)).scalar_one()
    except DatabaseUnavailable as error:
        return str(error)
    except (sa.exc.DBAPIError, OSError) as error:
        _engine.clear()
        return _problem_message(error, url)
    return None


def require_database() -> sa.Engine:
    """The engine, or a friendly message on the page and ``st.stop()``."""
    url = database_url()
    problem = _check(url)
    if problem is not None:
        _check.clear()  # look again on the next run: the user may have created it meanwhile
        st.info(problem, icon=":material/database:")
        st.stop()
    return engine()


@contextlib.contextmanager
def _friendly_database_errors() -> Iterator[None]:
    """Turn "the file is locked / gone / has no tables" into a message and ``st.stop()``;
    anything else (a bug) propagates."""
    url = database_url()
    try:
        yield
    except DatabaseUnavailable as error:
        st.info(str(error), icon=":material/database:")
        st.stop()
    except sa.exc.DBAPIError as error:
        text = str(error.orig).lower()
        if not any(word in text for word in ("lock", "no such table", "catalog error", "does not exist")):
            raise
        _check.clear()
        st.info(_problem_message(error, url), icon=":material/database:")
        st.stop()


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


#: ``DataFrame.attrs`` key of a ``kpi`` result: its function and keyword arguments, as
#: text (Streamlit writes a shown frame's attrs as JSON).
SOURCE = "kpi_source"


def _source_text(name: str, key: tuple[tuple[str, Any], ...]) -> str:
    return base64.b64encode(pickle.dumps((name, key))).decode("ascii")


def kpi_again(frame: pd.DataFrame, filters: Filters) -> Any:
    """The KPI that made ``frame`` (a ``kpi`` result, see ``SOURCE``) for other ``filters``
    (e.g. last year's range), cached like ``kpi``; None when ``frame`` is not one."""
    source = getattr(frame, "attrs", {}).get(SOURCE)
    if not isinstance(source, str):
        return None
    name, key = pickle.loads(base64.b64decode(source))  # written by ``kpi`` in this process
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
def dimension_values(url: str) -> dict[str, list[str]]:
    """The filter bar's choices per dimension (``kpis.filters.dimension_values``)."""
    from kpis.filters import dimension_values as read

    return read(engine())


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def data_date_range(url: str) -> tuple[dt.date, dt.date] | None:
    """First and last day with data (``kpis.filters.data_date_range``)."""
    from kpis.filters import data_date_range as read

    return read(engine())


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def table_row_counts(url: str) -> pd.DataFrame:
    """Rows per canonical table, parents first: what is in the database."""
    rows = []
    with engine().connect() as conn:
        for table in schema.metadata.sorted_tables:
            try:
                count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            except sa.exc.DBAPIError:
                count = None
            rows.append({"table": table.name, "rows": count})
    return pd.DataFrame(rows)


def refresh() -> None:
    """Forget every cached result and close the engine (call after writing new data)."""
    st.cache_data.clear()
    with contextlib.suppress(DatabaseUnavailable):
        engine().dispose()
    _engine.clear()


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def dimension_labels(url: str) -> dict[str, dict[str, str]]:
    """Display names for id-valued filters: ``{"owners": {user_id: name}, "products": {...}}``."""
    out: dict[str, dict[str, str]] = {}
    with engine().connect() as conn:
        for key, table, id_column in (
            ("owners", schema.users, "user_id"),
            ("products", schema.products, "product_id"),
        ):
            rows = conn.execute(sa.select(table.c[id_column], table.c.name))
            out[key] = {str(i): str(n) for i, n in rows if n is not None}
    return out
