"""``Filters``: the slice of the data a KPI looks at, and how it becomes SQL.

Rules (DESIGN.md):

* ``start``/``end`` are dates, half-open ``[start, end)`` in UTC.
* Account-level lists (segments, industries, regions, countries, company sizes,
  acquisition channels) select records through their account. A record whose
  ``account_id`` is NULL counts only while no account-level list is set. Tables that have
  no account column at all (web traffic, social media, campaigns) are not account
  records and are not narrowed by these lists.
* ``owners`` select records by their own owner column (``deals.owner_id``,
  ``interactions.user_id``), else through their account's ``owner_id``.
* ``products`` select records by their own ``product_id`` (deals, subscriptions,
  tickets), else through their account: accounts with a subscription to one of them.
* ``pipelines`` select deals by ``deals.pipeline`` (a deal without one counts only while
  no pipeline is selected); records of other tables are not narrowed by them.
* An empty list means all. Values only ever reach SQL as bound parameters.
* ``scope`` (a :class:`Scope`) is what the signed-in user may see at most: regions,
  countries, segments, industries, owners. It is applied in this module, beside the chosen
  lists and never instead of them (``account_conditions`` and ``scope``), so every KPI,
  roll-up read, drill-down, export and forecast gets it; a chosen value outside the scope
  selects nothing rather than widening it. A restricted scope also excludes records
  without an account, and the tables that have no account column (web traffic, social
  media, campaigns: company-wide figures) for the KPIs that pass them through ``scope``.
  ``Filters.within(scope)`` narrows a Filters' scope; nothing widens it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import TypeVar

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crm_data import schema
from crm_data.dialects import per_dialect
from crm_data.scope import (  # the scope is the data layer's; re-exported here
    ACCOUNT_DIMENSIONS,
    EVERYTHING,
    SCOPE_DIMENSIONS,  # (also re-exported)
    Scope,
    _as_tuple,
)
from kpis.core import connection as _connection
from kpis.stage_visits import ACCOUNT_KEYS

#: Filters fields that are lists of values (everything but the dates and the scope).
LIST_FIELDS: tuple[str, ...] = (
    "segments",
    "industries",
    "regions",
    "countries",
    "company_sizes",
    "acquisition_channels",
    "owners",
    "products",
)


@dataclass(frozen=True)
class Filters:
    """What to look at: a half-open UTC date range ``[start, end)`` and segment lists.

    Hashable, so it can key a cache. Lists are normalised to sorted tuples.
    """

    start: dt.date
    end: dt.date
    segments: tuple[str, ...] = field(default=())
    industries: tuple[str, ...] = field(default=())
    regions: tuple[str, ...] = field(default=())
    countries: tuple[str, ...] = field(default=())
    company_sizes: tuple[str, ...] = field(default=())
    acquisition_channels: tuple[str, ...] = field(default=())
    owners: tuple[str, ...] = field(default=())
    products: tuple[str, ...] = field(default=())
    pipelines: tuple[str, ...] = field(default=())
    #: The user's scope: applied with the lists above, never widened by them.
    scope: Scope = field(default=EVERYTHING)

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = dt.date.fromisoformat(value)
            if isinstance(value, dt.datetime):
                value = value.date()
            object.__setattr__(self, name, value)
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        for name in LIST_FIELDS:
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        if not isinstance(self.scope, Scope):
            object.__setattr__(self, "scope", Scope.from_dict(self.scope))  # type: ignore[arg-type]

    @property
    def start_ts(self) -> dt.datetime:
        """``start`` as a naive UTC timestamp (midnight)."""
        return dt.datetime.combine(self.start, dt.time())

    @property
    def end_ts(self) -> dt.datetime:
        """``end`` as a naive UTC timestamp (midnight), exclusive."""
        return dt.datetime.combine(self.end, dt.time())

    @property
    def has_account_filter(self) -> bool:
        """True when any account-level list is set, or the scope limits an account dimension."""
        return any(getattr(self, name) for name in ACCOUNT_DIMENSIONS) or any(
            name in ACCOUNT_DIMENSIONS for name in self.scope.limits()
        )

    @property
    def limits_owners_or_products(self) -> bool:
        """True when owners or products are chosen, or the scope limits the owners: the
        filters that are not roll-up dimensions and that the deals' indexes serve."""
        return bool(self.owners or self.products or self.scope.owners is not None)

    @property
    def owner_limits(self) -> list[tuple[str, ...]]:
        """The owner lists that apply: the chosen one and the scope's (each must hold)."""
        limits = [self.owners] if self.owners else []
        if self.scope.owners is not None:
            limits.append(self.scope.owners)
        return limits

    def within(self, scope: Scope) -> Filters:
        """A copy that sees at most ``scope`` (intersected with any scope it already has)."""
        return self.replace(scope=self.scope.intersect(scope))

    def replace(self, **changes: object) -> Filters:
        """A copy with some fields changed."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Filters(**values)  # type: ignore[arg-type]


#: While True (inside :func:`named_values`), the values of the filters reach SQL as named
#: bind parameters without values (``filter_<list>``, ``scope_<dimension>``, ``start_day``
#: ...), so a statement built once serves every Filters of the same shape
#: (:func:`shape`), executed with :func:`value_params`.
_NAMED: ContextVar[bool] = ContextVar("kpis_filters_named", default=False)


@contextmanager
def named_values() -> Iterator[None]:
    """Build statements whose filter values are named bind parameters (a template)."""
    token = _NAMED.set(True)
    try:
        yield
    finally:
        _NAMED.reset(token)


def named_values_active() -> bool:
    """True inside :func:`named_values`."""
    return _NAMED.get()


def _in(column: ColumnElement, name: str, values: tuple[str, ...]) -> ColumnElement[bool]:
    """``column IN (values)``; inside :func:`named_values`, ``column IN (:name)`` expanding."""
    if _NAMED.get():
        return column.in_(sa.bindparam(name, expanding=True, type_=column.type))
    return column.in_(values)


def shape(f: Filters) -> tuple[object, ...]:
    """What the statements built from ``f`` depend on besides its values: which lists are
    set and which scope dimensions are limited (empty or not). Two Filters of one shape
    give the same statement template (:func:`named_values`)."""
    chosen = tuple(bool(getattr(f, name)) for name in (*LIST_FIELDS, "pipelines"))
    limits = tuple(None if v is None else bool(v) for v in (getattr(f.scope, n) for n in SCOPE_DIMENSIONS))
    return chosen + limits


def value_params(f: Filters) -> dict[str, object]:
    """The bind parameters of a template built inside :func:`named_values` for ``f``."""
    params: dict[str, object] = {
        "start_day": f.start,
        "end_day": f.end,
        "start_ts": f.start_ts,
        "end_ts": f.end_ts,
    }
    for name in (*LIST_FIELDS, "pipelines"):
        params[f"filter_{name}"] = list(getattr(f, name))
    for name, values in f.scope.limits().items():
        params[f"scope_{name}"] = list(values)
    return params


#: Statement templates of :func:`template` by (builder, dialect, ``shape``, arguments).
_TEMPLATES: dict[tuple[object, ...], object] = {}
T = TypeVar("T")
_TEMPLATES_MAX = 1024


def template(build: Callable[..., T], dialect: sa.Dialect, f: Filters, *args: Hashable) -> T:
    """``build(dialect, f, *args)`` built once per filter :func:`shape` inside
    :func:`named_values`: the values of ``f`` are named parameters, executed with
    :func:`value_params` of the filters at hand. Another owner, product, region or date
    range of a shape seen before reuses the statement and its compiled SQL.

    ``build`` must take every value of ``f`` through this module's conditions (:func:`scope`,
    :func:`in_range`, :func:`in_day_range`, :func:`account_conditions`), never read a value of
    ``f`` itself: the template serves every Filters of its shape."""
    key = (build, dialect, shape(f), args)
    statement = _TEMPLATES.get(key)
    if statement is None:
        with named_values():
            statement = build(dialect, f, *args)
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()
        _TEMPLATES[key] = statement
    return statement  # type: ignore[return-value]


def account_conditions(f: Filters, table: sa.Table) -> list[ColumnElement[bool]]:
    """``column IN (values)`` for each account-level list that is set, on ``table``'s
    columns of the same names (``accounts``, or a KPI roll-up grouped by them), and for each
    account dimension the scope limits (both hold: a chosen value outside the scope selects
    nothing)."""
    chosen = [
        _in(table.c[column], f"filter_{name}", getattr(f, name))
        for name, column in ACCOUNT_DIMENSIONS.items()
        if getattr(f, name)
    ]
    limited = [
        _in(table.c[ACCOUNT_DIMENSIONS[name]], f"scope_{name}", values) if values else sa.false()
        for name, values in f.scope.limits().items()
        if name in ACCOUNT_DIMENSIONS
    ]
    return chosen + limited


def account_ids(f: Filters) -> sa.Select | None:
    """``SELECT account_id FROM accounts WHERE <account-level lists>``, or None when none is set."""
    accounts = schema.accounts
    conditions = account_conditions(f, accounts)
    if not conditions:
        return None
    return sa.select(accounts.c.account_id).where(*conditions)


def scope(f: Filters, table: sa.Table | sa.FromClause) -> list[ColumnElement[bool]]:
    """WHERE conditions that restrict rows of ``table`` to the filters' segments,
    owners and products (not the date range: each KPI dates records by its own column).

    Everything selected through the account — the account-level lists and, for a table
    without its own owner column, the owners — is one semi-join on the accounts' primary
    key, ``account_id IN (SELECT account_id FROM accounts WHERE <all of them>)``: the same
    rows as one ``IN`` per list (each holds for the same account), with one scan of
    ``accounts`` (indexed by ``owner_id`` on row stores) instead of one per list. A table
    with an ``account_key`` column (the stored visits and deal rows of
    :mod:`kpis.stage_visits`) is selected on DuckDB by that integer instead
    (:func:`account_keys`, :func:`crm_data.dialects.selects_accounts_by_key`)."""
    columns = table.c
    conditions: list[ColumnElement[bool]] = []
    accounts = schema.accounts
    through_account = account_conditions(f, accounts)
    own = "owner_id" if "owner_id" in columns else ("user_id" if "user_id" in columns else None)
    for key, owners in _owner_limits(f):
        if not owners:
            conditions.append(sa.false())
        elif own is not None:
            conditions.append(_in(columns[own], key, owners))
        else:
            through_account.append(_in(accounts.c.owner_id, key, owners))
    if through_account and "account_id" in columns:
        by_id = columns.account_id.in_(sa.select(accounts.c.account_id).where(*through_account))
        if "account_key" in columns:  # DuckDB: by the integer keys (crm_data.dialects)
            by_id = per_dialect(by_id, duckdb=columns.account_key.in_(account_keys(through_account)))
        conditions.append(by_id)
    if f.scope.restricted and not ({"account_id", "owner_id", "user_id"} & set(columns.keys())):
        conditions.append(sa.false())  # company-wide records (no account): outside any scope
    if f.products:
        if "product_id" in columns:
            conditions.append(_in(columns.product_id, "filter_products", f.products))
        elif "account_id" in columns:
            subscriptions = schema.subscriptions
            conditions.append(
                columns.account_id.in_(
                    sa.select(subscriptions.c.account_id).where(
                        _in(subscriptions.c.product_id, "filter_products", f.products)
                    )
                )
            )
    if f.pipelines and "pipeline" in columns:
        conditions.append(_in(columns.pipeline, "filter_pipelines", f.pipelines))
    return conditions


def account_keys(conditions: list[ColumnElement[bool]]) -> sa.Select:
    """The integer keys (``kpis.stage_visits.ACCOUNT_KEYS``) of the accounts that meet
    ``conditions`` (on ``accounts``): ``SELECT account_key FROM rollup_account_keys JOIN
    accounts USING (account_id) WHERE <conditions>``. A stored table with an
    ``account_key`` column (the stored visits and deal rows) is selected by these integers
    rather than by its text ``account_id``: the same rows (each key stands for one account
    id), a probe of integers instead of text in every statement."""
    accounts = schema.accounts
    return (
        sa.select(ACCOUNT_KEYS.c.account_key)
        .select_from(ACCOUNT_KEYS.join(accounts, accounts.c.account_id == ACCOUNT_KEYS.c.account_id))
        .where(*conditions)
    )


def _owner_limits(f: Filters) -> list[tuple[str, tuple[str, ...]]]:
    """``Filters.owner_limits`` with each list's bind-parameter name (:func:`named_values`)."""
    limits = [("filter_owners", f.owners)] if f.owners else []
    if f.scope.owners is not None:
        limits.append(("scope_owners", f.scope.owners))
    return limits


#: Every filter-bar list (a Filters field): the account-level ones, then owners, products,
#: pipelines.
DIMENSION_FIELDS: tuple[str, ...] = (*ACCOUNT_DIMENSIONS, "owners", "products", "pipelines")


def honoured_dimensions(table: sa.Table | sa.FromClause) -> frozenset[str]:
    """The Filters lists that :func:`scope` applies to rows of ``table`` (the same rules):
    the account-level lists through ``account_id``; owners through ``owner_id`` /
    ``user_id`` / ``account_id``; products through ``product_id`` / ``account_id``;
    pipelines through ``pipeline``. A table without any of them (web traffic, social
    media) honours none: a KPI over it gives the same numbers whatever those lists say."""
    columns = set(table.c.keys())
    honoured: set[str] = set()
    if "account_id" in columns:
        honoured.update(ACCOUNT_DIMENSIONS)
    if columns & {"owner_id", "user_id", "account_id"}:
        honoured.add("owners")
    if columns & {"product_id", "account_id"}:
        honoured.add("products")
    if "pipeline" in columns:
        honoured.add("pipelines")
    return frozenset(honoured)


def in_range(column: ColumnElement, f: Filters) -> ColumnElement[bool]:
    """``start <= column < end`` for a timestamp column."""
    if _NAMED.get():
        return sa.and_(
            column >= sa.bindparam("start_ts", type_=column.type),
            column < sa.bindparam("end_ts", type_=column.type),
        )
    return sa.and_(column >= f.start_ts, column < f.end_ts)


def in_day_range(column: ColumnElement, f: Filters) -> ColumnElement[bool]:
    """``start <= column < end`` for a DATE column."""
    if _NAMED.get():
        return sa.and_(
            column >= sa.bindparam("start_day", type_=column.type),
            column < sa.bindparam("end_day", type_=column.type),
        )
    return sa.and_(column >= f.start, column < f.end)


#: Filter field -> (table, column) whose distinct values the filter bar offers.
DIMENSION_SOURCES: dict[str, tuple[sa.Table, str]] = {
    **{name: (schema.accounts, column) for name, column in ACCOUNT_DIMENSIONS.items()},
    "owners": (schema.users, "user_id"),
    "products": (schema.products, "product_id"),
    "pipelines": (schema.deals, "pipeline"),
}


def scope_conditions(scope: Scope, table: sa.Table) -> list[ColumnElement[bool]]:
    """The scope's account-dimension limits on ``table``'s columns (``accounts``)."""
    return account_conditions(Filters(dt.date.min, dt.date.min, scope=scope), table)


def dimension_values(conn: sa.Connection | sa.Engine, scope: Scope = EVERYTHING) -> dict[str, list[str]]:
    """The available values of each filter dimension, sorted (for the filter bar); none for
    a column the database does not have yet (a database created before it was added).

    Within ``scope``: account dimensions from the accounts inside it; owners = the scope's
    owners, else (an account-limited scope) the owners of its accounts, else every user."""
    result: dict[str, list[str]] = {}
    accounts = schema.accounts
    inside = scope_conditions(scope, accounts)
    with _connection(conn) as c:
        for name, (table, column) in DIMENSION_SOURCES.items():
            if name == "pipelines" and not has_column(c, table, column):
                result[name] = []
                continue
            col = table.c[column]
            where = [col.is_not(None)]
            if table is accounts:
                where += inside
            elif name == "owners" and scope.owners is not None:
                where.append(col.in_(scope.owners) if scope.owners else sa.false())
            elif name == "owners" and inside:
                where.append(col.in_(sa.select(accounts.c.owner_id).where(*inside)))
            rows = c.execute(sa.select(col).where(*where).distinct().order_by(col))
            result[name] = [r[0] for r in rows]
    return result


#: The filter-bar lists whose options narrow each other: the account-level lists and owners.
#: Products and pipelines describe deals, tickets and subscriptions rather than accounts: they
#: are always offered in full and narrow nothing.
NARROWING: tuple[str, ...] = (*ACCOUNT_DIMENSIONS, "owners")


def dimension_combinations(conn: sa.Connection | sa.Engine, scope: Scope = EVERYTHING) -> pd.DataFrame:
    """The distinct combinations of ``NARROWING`` values (segment, industry, region, country,
    company size, acquisition channel, owner) found on accounts, from one grouped query: each
    account with its own owner, and with the owner of each of its deals (an owner filter
    selects deals by their owner). Within ``scope``, like :func:`dimension_values`. One
    column per ``NARROWING`` name, categorical (compact to cache: a million accounts give a
    few hundred thousand rows of small integer codes)."""
    accounts, deals = schema.accounts, schema.deals
    dims = [accounts.c[column] for column in ACCOUNT_DIMENSIONS.values()]
    inside = scope_conditions(scope, accounts)  # owners outside the scope: not in ``known``
    own = sa.select(*dims, accounts.c.owner_id.label("owner")).where(*inside)
    dealt = (
        sa.select(*dims, deals.c.owner_id.label("owner"))
        .select_from(deals.join(accounts, accounts.c.account_id == deals.c.account_id))
        .where(*inside)
    )
    both = sa.union_all(own, dealt).subquery("combinations")
    columns = [both.c[c] for c in (*ACCOUNT_DIMENSIONS.values(), "owner")]
    with _connection(conn) as c:
        rows = c.execute(sa.select(*columns).group_by(*columns)).fetchall()
    frame = pd.DataFrame(rows, columns=list(NARROWING))
    return frame.astype({name: "category" for name in NARROWING})


def narrowed_options(
    known: dict[str, list[str]], combinations: pd.DataFrame, chosen: dict[str, list[str]]
) -> dict[str, list[str]]:
    """The options each filter list offers given what the OTHER lists chose: a ``NARROWING``
    list offers the values of ``known`` found in a combination (a row of
    :func:`dimension_combinations`) that matches every other chosen ``NARROWING`` list
    (Region = APAC: only APAC's countries and the owners of APAC's accounts and their
    deals); a list whose others chose nothing, and every other list, offers ``known`` in
    full. Order as in ``known``."""
    out = {name: list(values) for name, values in known.items()}
    matches = {
        name: combinations[name].isin(chosen[name]).to_numpy()
        for name in NARROWING
        if chosen.get(name) and name in combinations
    }
    for name in NARROWING:
        others = [mask for other, mask in matches.items() if other != name]
        if not others or name not in known or name not in combinations:
            continue
        found = set(combinations[name][np.logical_and.reduce(others)].dropna().unique())
        out[name] = [v for v in known[name] if v in found]
    return out


def has_column(conn: sa.Connection, table: sa.Table, column: str) -> bool:
    """True when ``table`` exists in the database of ``conn`` with ``column`` (an optional
    column added to the schema later is missing from a database created before)."""
    if not sa.inspect(conn).has_table(table.name):
        return False
    return column in schema.table_columns(conn, table.name)


def data_date_range(conn: sa.Connection | sa.Engine) -> tuple[dt.date, dt.date] | None:
    """First and last day with a payment, deal, subscription or ticket; None if empty."""
    parts = [
        (schema.subscriptions.c.started_at,),
        (schema.deals.c.created_at,),
        (schema.payments.c.paid_at,),
        (schema.tickets.c.opened_at,),
    ]
    lows, highs = [], []
    with _connection(conn) as c:
        for (col,) in parts:
            low, high = c.execute(sa.select(sa.func.min(col), sa.func.max(col))).one()
            if low is not None:
                lows.append(_to_date(low))
                highs.append(_to_date(high))
    if not lows:
        return None
    return min(lows), max(highs)


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def default_range(
    bounds: tuple[dt.date, dt.date] | None, today: dt.date | None = None
) -> tuple[dt.date, dt.date]:
    """The dashboard's default date range: last 12 full months + the current month, as a
    half-open ``[start, end)`` (``ui.filters`` opens every page on it; ``forecasting.store``
    computes the Forecast page's default forecast ahead on it).

    "Current" is the month of the last day with data (``bounds[1]``), or today (UTC) if
    that is earlier (so an imported history that ended years ago still opens on data).
    """
    today = today or dt.datetime.now(dt.UTC).date()
    anchor = today if bounds is None else min(bounds[1], today)
    end = _add_months(_month_start(anchor), 1)
    return _add_months(end, -13), end


def _to_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])
