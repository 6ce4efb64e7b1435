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
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crm_data import schema
from kpis.core import connection as _connection

#: Filter field -> accounts column, for the account-level lists.
ACCOUNT_DIMENSIONS: dict[str, str] = {
    "segments": "segment",
    "industries": "industry",
    "regions": "region",
    "countries": "country",
    "company_sizes": "company_size",
    "acquisition_channels": "acquisition_channel",
}


def _as_tuple(values: object) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        return (values,)
    return tuple(sorted({str(v) for v in values}))


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
        for f in fields(self)[2:]:
            object.__setattr__(self, f.name, _as_tuple(getattr(self, f.name)))

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
        """True when any account-level list is set."""
        return any(getattr(self, name) for name in ACCOUNT_DIMENSIONS)

    def replace(self, **changes: object) -> Filters:
        """A copy with some fields changed."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Filters(**values)  # type: ignore[arg-type]


def account_conditions(f: Filters, table: sa.Table) -> list[ColumnElement[bool]]:
    """``column IN (values)`` for each account-level list that is set, on ``table``'s
    columns of the same names (``accounts``, or a KPI roll-up grouped by them)."""
    return [
        table.c[column].in_(getattr(f, name))
        for name, column in ACCOUNT_DIMENSIONS.items()
        if getattr(f, name)
    ]


def account_ids(f: Filters) -> sa.Select | None:
    """``SELECT account_id FROM accounts WHERE <account-level lists>``, or None when none is set."""
    accounts = schema.accounts
    conditions = account_conditions(f, accounts)
    if not conditions:
        return None
    return sa.select(accounts.c.account_id).where(*conditions)


def scope(f: Filters, table: sa.Table | sa.FromClause) -> list[ColumnElement[bool]]:
    """WHERE conditions that restrict rows of ``table`` to the filters' segments,
    owners and products (not the date range: each KPI dates records by its own column)."""
    columns = table.c
    conditions: list[ColumnElement[bool]] = []
    selected_accounts = account_ids(f)
    if selected_accounts is not None and "account_id" in columns:
        conditions.append(columns.account_id.in_(selected_accounts))
    accounts = schema.accounts
    if f.owners:
        own = "owner_id" if "owner_id" in columns else ("user_id" if "user_id" in columns else None)
        if own is not None:
            conditions.append(columns[own].in_(f.owners))
        elif "account_id" in columns:
            conditions.append(
                columns.account_id.in_(
                    sa.select(accounts.c.account_id).where(accounts.c.owner_id.in_(f.owners))
                )
            )
    if f.products:
        if "product_id" in columns:
            conditions.append(columns.product_id.in_(f.products))
        elif "account_id" in columns:
            subscriptions = schema.subscriptions
            conditions.append(
                columns.account_id.in_(
                    sa.select(subscriptions.c.account_id).where(subscriptions.c.product_id.in_(f.products))
                )
            )
    if f.pipelines and "pipeline" in columns:
        conditions.append(columns.pipeline.in_(f.pipelines))
    return conditions


def in_range(column: ColumnElement, f: Filters) -> ColumnElement[bool]:
    """``start <= column < end`` for a timestamp column."""
    return sa.and_(column >= f.start_ts, column < f.end_ts)


def in_day_range(column: ColumnElement, f: Filters) -> ColumnElement[bool]:
    """``start <= column < end`` for a DATE column."""
    return sa.and_(column >= f.start, column < f.end)


#: Filter field -> (table, column) whose distinct values the filter bar offers.
DIMENSION_SOURCES: dict[str, tuple[sa.Table, str]] = {
    **{name: (schema.accounts, column) for name, column in ACCOUNT_DIMENSIONS.items()},
    "owners": (schema.users, "user_id"),
    "products": (schema.products, "product_id"),
    "pipelines": (schema.deals, "pipeline"),
}


def dimension_values(conn: sa.Connection | sa.Engine) -> dict[str, list[str]]:
    """The available values of each filter dimension, sorted (for the filter bar); none for
    a column the database does not have yet (a database created before it was added)."""
    result: dict[str, list[str]] = {}
    with _connection(conn) as c:
        for name, (table, column) in DIMENSION_SOURCES.items():
            if name == "pipelines" and not has_column(c, table, column):
                result[name] = []
                continue
            col = table.c[column]
            rows = c.execute(sa.select(col).where(col.is_not(None)).distinct().order_by(col))
            result[name] = [r[0] for r in rows]
    return result


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


def _to_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])
