"""Roll-ups: the Overview's additive KPIs pre-aggregated per calendar period (month,
quarter, year) and per combination of the six account dimensions — the customer base
(active, new, churned customers and MRR movements), retention costs, revenue, NPS/CES
counts, won/lost/open deals and first-contact resolutions.

Why: at a million accounts, the per-account activity at 12 month boundaries over 2M
subscriptions and the distinct paying accounts over 12M payments take 1.7 s of the
Overview's 1.9 s on DuckDB, and every KPI takes seconds on PostgreSQL; read from the
roll-ups, these KPIs sum a few thousand rows (``python -m benchmarks`` measures both
paths). The sales cycle's median and 90th percentile are not sums, so it always reads
the deals.

Same numbers: each roll-up row is the KPI's own aggregate (the expressions of
``kpis.customer_base``, ``kpis.feedback``, ``kpis.sales``, ``kpis.service``; revenue's
sums per account first) grouped additionally by the account's ``segment, industry,
region, country, company_size, acquisition_channel`` and by the period the KPI dates the
record by. Every measure is a count or a sum over accounts or records, and each account
lies in exactly one dimension group, so summing the groups a filter selects gives the KPI
of the filtered rows — distinct paying accounts included. Records without an account (or
whose account is missing) fall in the group whose dimensions are all NULL, which an
account-level filter excludes, as the base tables' filters do. Sums of doubles may differ
from the direct path in the last bits (summation order).

When they are read (:func:`read`): ``CRM_ROLLUPS`` is not ``off``; the roll-ups exist, hold
every measure of this version (a table built before a measure was added is read again only
after :func:`refresh`, which rebuilds it) and cover every requested period; the filters set
no owners and no products (not roll-up dimensions), and no pipelines for a roll-up of deals
(``deals.pipeline`` is not a roll-up dimension either; the other roll-ups do not depend on
it). When ``end`` cuts the last period short (the current month, say), the
roll-ups answer the complete periods and the base tables that part of the last one
(:func:`remainder`; one small query). Otherwise the KPI runs on the base tables.

Freshness: :func:`refresh` rebuilds them from the CRM tables. The importer calls it inside
its own transaction (the data and the roll-ups change together), the demo generator after
writing; anything else that writes the CRM tables must run ``python -m crm_data rollups``.
``python -m crm_data check`` reports roll-ups whose source tables gained or lost rows
since they were built (:func:`stale`).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import weakref
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import FREQS, period_key
from kpis.core import connection, grid_frame, period_end, period_found, period_rows, period_starts
from kpis.filters import ACCOUNT_DIMENSIONS, Filters, account_conditions

#: The accounts columns every roll-up is grouped by (the account-level filter lists).
DIMENSIONS: tuple[str, ...] = tuple(ACCOUNT_DIMENSIONS.values())
#: Months per period of each grain.
MONTHS = {"month": 1, "quarter": 3, "year": 12}

metadata = sa.MetaData()

#: One row per built roll-up: the months it covers (``YYYYMM``) and when it was built.
state = sa.Table(
    "rollup_state",
    metadata,
    sa.Column("rollup", sa.String(64), primary_key=True),
    sa.Column("first_period", sa.Integer(), nullable=False),
    sa.Column("last_period", sa.Integer(), nullable=False),
    sa.Column("rows", sa.BigInteger(), nullable=False),
    sa.Column("refreshed_at", sa.DateTime(), nullable=False),
    # rows of the tables it summarises when built: ``stale`` compares it with now
    sa.Column("source_rows", sa.BigInteger(), nullable=True),
)


@dataclass(frozen=True, eq=False)
class Rollup:
    """A roll-up table: ``grain, period`` (``YYYYMM`` of the period's first month), the
    dimension columns, then ``counts`` and ``sums``; ``source(dialect, grain, periods)``
    is the SELECT of ``period, *DIMENSIONS, *counts, *sums`` that fills one grain."""

    table: sa.Table
    counts: tuple[str, ...]
    sums: tuple[str, ...]
    source: Callable[[sa.Dialect, str, list[pd.Timestamp]], sa.Select]
    #: The CRM table its records come from (grouped through their account).
    records: sa.Table
    #: The KPI counts a period's records only before ``end`` (all but the customer base's
    #: activity, which is measured at the period's own start and end).
    cut_by_end: bool = True
    #: A quarter's or year's measures are the sums of its months' (not so for distinct
    #: paying accounts): a cut quarter or year can take its complete months from the month
    #: roll-up.
    months_add_up: bool = True

    @property
    def tables(self) -> tuple[sa.Table, sa.Table]:
        """The CRM tables it summarises: accounts and its records' table."""
        return (schema.accounts, self.records)

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def measures(self) -> tuple[str, ...]:
        return (*self.counts, *self.sums)


def _table(name: str, counts: tuple[str, ...], sums: tuple[str, ...]) -> sa.Table:
    table = sa.Table(
        name,
        metadata,
        sa.Column("grain", sa.String(8), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        *(sa.Column(column, sa.String()) for column in DIMENSIONS),
        *(sa.Column(column, sa.BigInteger()) for column in counts),
        *(sa.Column(column, sa.Double()) for column in sums),
    )
    schema.row_store_index(table, "grain", "period")
    return table


def period_label(period: pd.Timestamp) -> int:
    """``YYYYMM`` of a period start (the roll-ups' ``period`` column)."""
    return period.year * 100 + period.month


def _grain_label(month: int, grain: str) -> int:
    """The label of the ``grain`` period containing the month labelled ``month``."""
    year, number = divmod(month, 100)
    return year * 100 + number - (number - 1) % MONTHS[grain]


def _grain_periods(first: pd.Timestamp, last: pd.Timestamp, grain: str) -> list[pd.Timestamp]:
    """The periods of ``grain`` from the one containing month ``first`` to the one
    containing month ``last``."""
    start = first - pd.DateOffset(months=(first.month - 1) % MONTHS[grain])
    return period_starts(start.date(), (last + pd.DateOffset(months=1)).date(), grain)


# ---------------------------------------------------------------- sources


def _dimensions() -> list[sa.Column]:
    return [schema.accounts.c[column] for column in DIMENSIONS]


def _with_accounts(table: sa.Table | sa.Subquery) -> sa.Join:
    """``table`` with its account's dimensions (NULL when it has none)."""
    accounts = schema.accounts
    return table.outerjoin(accounts, accounts.c.account_id == table.c.account_id)


#: No segment, owner or product filters: the roll-ups group every record.
_EVERYTHING = Filters(dt.date(1, 1, 1), dt.date(9999, 12, 31))


def _customer_base_source(dialect: sa.Dialect, grain: str, periods: list[pd.Timestamp]) -> sa.Select:
    from kpis.customer_base import _activity_statement
    from kpis.revenue import period_grid

    grid = period_grid([(p, period_end(p, grain)) for p in periods], keys=[period_label(p) for p in periods])
    return _activity_statement(_EVERYTHING, grid, by=DIMENSIONS)


def _grouped(
    dialect: sa.Dialect,
    grain: str,
    table: sa.Table,
    dated: sa.ColumnElement,
    sums: list[sa.ColumnElement],
    *where: sa.ColumnElement[bool],
) -> sa.Select:
    """``sums`` over ``table`` rows (with a date, matching ``where``) per period of
    ``dated`` and dimension group."""
    period = period_key(dialect, dated, grain)
    return (
        sa.select(period.label("period"), *_dimensions(), *sums)
        .select_from(_with_accounts(table))
        .where(dated.is_not(None), *where)
        .group_by(period, *_dimensions())
    )


def _retention_costs_source(dialect: sa.Dialect, grain: str, periods: list[pd.Timestamp]) -> sa.Select:
    from kpis.customer_base import is_retention_cost, retention_cost_sums

    costs = schema.costs
    return _grouped(
        dialect, grain, costs, costs.c.incurred_on, retention_cost_sums(costs), is_retention_cost(costs)
    )


def _survey_scores_source(dialect: sa.Dialect, grain: str, periods: list[pd.Timestamp]) -> sa.Select:
    from kpis.feedback import survey_score_sums

    table = schema.survey_responses
    return _grouped(
        dialect,
        grain,
        table,
        table.c.responded_at,
        survey_score_sums(table),
        table.c.survey.in_(("nps", "ces")),
    )


def _win_rate_source(dialect: sa.Dialect, grain: str, periods: list[pd.Timestamp]) -> sa.Select:
    from kpis.sales import win_rate_date, win_rate_sums

    deals = schema.deals
    return _grouped(
        dialect,
        grain,
        deals,
        win_rate_date(deals),
        win_rate_sums(deals),
        deals.c.status.in_(("won", "lost", "open")),
    )


def _fcr_source(dialect: sa.Dialect, grain: str, periods: list[pd.Timestamp]) -> sa.Select:
    from kpis.service import fcr_sums

    tickets = schema.tickets
    return _grouped(dialect, grain, tickets, tickets.c.resolved_at, fcr_sums(tickets))


def _revenue_source(dialect: sa.Dialect, grain: str, periods: list[pd.Timestamp]) -> sa.Select:
    """:func:`kpis.revenue.revenue`'s sums in two steps: per (period, account) first — a
    paying account is one with a positive payment in the period — then per dimension
    group (a third of the time of counting distinct accounts per group)."""
    payments = schema.payments
    period = period_key(dialect, payments.c.paid_at, grain)
    positive = payments.c.amount > 0
    one, zero = sa.literal_column("1", sa.Integer()), sa.literal_column("0", sa.Integer())
    per_account = (
        sa.select(
            period.label("period"),
            payments.c.account_id,
            sa.func.max(
                sa.case((sa.and_(positive, payments.c.account_id.is_not(None)), one), else_=zero)
            ).label("paying"),
            sa.func.sum(payments.c.amount).label("revenue"),
            sa.func.sum(sa.case((positive, payments.c.amount), else_=0.0)).label("gross_revenue"),
            sa.func.sum(sa.case((payments.c.amount < 0, -payments.c.amount), else_=0.0)).label("refunds"),
        )
        .group_by(period, payments.c.account_id)
        .subquery("per_account")
    )
    return (
        sa.select(
            per_account.c.period,
            *_dimensions(),
            *(sa.func.sum(per_account.c[c]) for c in ("paying", "revenue", "gross_revenue", "refunds")),
        )
        .select_from(_with_accounts(per_account))
        .group_by(per_account.c.period, *_dimensions())
    )


def _rollup(
    name: str,
    records: sa.Table,
    counts: tuple[str, ...],
    sums: tuple[str, ...],
    source: Callable,
    cut_by_end: bool = True,
    months_add_up: bool = True,
) -> Rollup:
    return Rollup(_table(name, counts, sums), counts, sums, source, records, cut_by_end, months_add_up)


#: Active, new, churned and retained customers and their MRR (``kpis.customer_base``).
CUSTOMER_BASE = _rollup(
    "rollup_customer_base",
    schema.subscriptions,
    ("customers_at_start", "new_customers", "churned", "customers_at_end", "retained_customers"),
    (
        "mrr_at_start",
        "expansion",
        "contraction",
        "churned_mrr",
        # sums of squares and products for the MRR ratios' intervals
        "mrr_at_start_squares",
        "net_mrr_squares",
        "net_mrr_products",
        "gross_mrr_squares",
        "gross_mrr_products",
    ),
    _customer_base_source,
    cut_by_end=False,
)
#: Retention costs, in all and per category (``kpis.customer_base``).
RETENTION_COSTS = _rollup(
    "rollup_retention_costs",
    schema.costs,
    (),
    ("retention_costs", *schema.COST_CATEGORIES),
    _retention_costs_source,
)
#: Paying accounts, revenue, gross revenue and refunds (``kpis.revenue``).
REVENUE = _rollup(
    "rollup_revenue",
    schema.payments,
    ("paying_accounts",),
    ("revenue", "gross_revenue", "refunds"),
    _revenue_source,
    months_add_up=False,  # an account paying in two months is one paying account of the quarter
)
#: NPS and CES counts and score sums (``kpis.feedback.survey_scores``).
SURVEY_SCORES = _rollup(
    "rollup_survey_scores",
    schema.survey_responses,
    ("nps_responses", "promoters", "detractors", "ces_responses", "easy"),
    ("total", "total_squares"),
    _survey_scores_source,
)
#: Won, lost and open deals (``kpis.sales.win_rate``).
WIN_RATE = _rollup("rollup_win_rate", schema.deals, ("won", "lost", "open_created"), (), _win_rate_source)
#: Resolved tickets, those resolved at the first contact and those with a recorded contact
#: count (``kpis.service``).
FIRST_CONTACT_RESOLUTION = _rollup(
    "rollup_first_contact_resolution",
    schema.tickets,
    ("resolved", "first_contact", "recorded"),
    (),
    _fcr_source,
)
ROLLUPS: tuple[Rollup, ...] = (
    CUSTOMER_BASE,
    RETENTION_COSTS,
    REVENUE,
    SURVEY_SCORES,
    WIN_RATE,
    FIRST_CONTACT_RESOLUTION,
)
#: The CRM tables the roll-ups summarise.
SOURCES: tuple[sa.Table, ...] = (schema.accounts, *(rollup.records for rollup in ROLLUPS))


# ---------------------------------------------------------------- building


def data_months(
    conn: sa.Connection, today: dt.date | None = None
) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first and last month the roll-ups cover: from the earliest date a roll-up counts
    a record by (subscription start, payment, cost, survey response, deal creation or
    close, ticket resolution) to the latest of those or December of ``today``'s year
    (default: today, UTC), so every period of the current year can be answered — but never
    past December of the year after ``today``: a record dated decades ahead (the importer
    refuses events more than a year ahead, other writers may not) would add every period up
    to it; the periods after the roll-ups read the base tables. Planned dates (a
    subscription's ``ended_at``) never set the range. None when there is no such record, or
    when every one lies after that December."""
    deals = schema.deals
    columns = [
        schema.subscriptions.c.started_at,
        schema.payments.c.paid_at,
        schema.costs.c.incurred_on,
        schema.survey_responses.c.responded_at,
        deals.c.created_at,
        deals.c.closed_at,
        schema.tickets.c.resolved_at,
    ]
    stamps = []
    for column in columns:
        stamps.extend(conn.execute(sa.select(sa.func.min(column), sa.func.max(column))).one())
    found = [pd.Timestamp(str(value)) for value in stamps if value is not None]
    if not found:
        return None
    today = today or dt.datetime.now(dt.UTC).date()
    december = pd.Timestamp(today.year, 12, 1)
    bound = pd.Timestamp(today.year + 1, 12, 1)
    first = min(found).to_period("M").to_timestamp()
    if first > bound:
        return None
    return first, max(min(max(found).to_period("M").to_timestamp(), bound), december)


def refresh(
    conn: sa.Connection, today: dt.date | None = None, changed: Collection[str] | None = None
) -> dict[str, int]:
    """Rebuild roll-ups from the CRM tables in the caller's transaction (creating the
    tables when missing); return the rows written per rebuilt roll-up.

    ``changed`` names the CRM tables a writer changed: then only the roll-ups that
    summarise one of them (:attr:`Rollup.tables`) are rebuilt, and those never built — an
    import of tickets rebuilds first-contact resolution, not the customer base. Default:
    all. Each grain's rows come from one INSERT ... SELECT, so no data passes through
    Python. With no record any roll-up counts (:func:`data_months`) they are emptied and
    their state removed (the KPIs then read the base tables)."""
    outdated = {rollup.name for rollup in ROLLUPS if _outdated(conn, rollup)}
    for rollup in ROLLUPS:
        if rollup.name in outdated:  # built by a version with other measures: rebuilt whole
            rollup.table.drop(conn)
    metadata.create_all(conn, checkfirst=True)
    built = {name for (name,) in conn.execute(sa.select(state.c.rollup))} - outdated
    due = [
        rollup
        for rollup in ROLLUPS
        if changed is None or rollup.name not in built or any(t.name in changed for t in rollup.tables)
    ]
    months = data_months(conn, today) if due else None
    counted = _table_rows(conn, (t for rollup in due for t in rollup.tables)) if due else {}
    written: dict[str, int] = {}
    for rollup in due:
        conn.execute(rollup.table.delete())
        conn.execute(state.delete().where(state.c.rollup == rollup.name))
        written[rollup.name] = 0
        if months is None:
            continue
        for grain in FREQS:
            rows = rollup.source(conn.dialect, grain, _grain_periods(*months, grain)).subquery()
            conn.execute(
                rollup.table.insert().from_select(
                    ["grain", "period", *DIMENSIONS, *rollup.measures],
                    sa.select(sa.literal(grain, sa.String()).label("grain"), *rows.c),
                )
            )
        written[rollup.name] = conn.execute(sa.select(sa.func.count()).select_from(rollup.table)).scalar_one()
        conn.execute(
            state.insert().values(
                rollup=rollup.name,
                first_period=period_label(months[0]),
                last_period=period_label(months[1]),
                rows=written[rollup.name],
                refreshed_at=dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0),
                source_rows=sum(counted[t.name] for t in rollup.tables),
            )
        )
    _HAS_STATE.clear()
    _CURRENT.clear()
    return written


def _outdated(conn: sa.Connection, rollup: Rollup) -> bool:
    """True when ``rollup``'s table exists without every column it has now (built by an
    earlier version: a measure was added since)."""
    if not sa.inspect(conn).has_table(rollup.name):
        return False
    # the columns of an empty result (duckdb_engine's inspector cannot list columns)
    found = conn.execute(sa.select(sa.literal_column("*")).select_from(sa.table(rollup.name)).limit(0))
    return not set(rollup.table.c.keys()) <= set(found.keys())


def source_rows(conn: sa.Connection, tables: Iterable[sa.Table] = SOURCES) -> int:
    """Rows in ``tables`` (default: every table the roll-ups summarise), in all."""
    return sum(_table_rows(conn, tables).values())


def _table_rows(conn: sa.Connection, tables: Iterable[sa.Table]) -> dict[str, int]:
    """Rows per table, each table counted once, in one statement."""
    unique = {table.name: table for table in tables}
    counts = [sa.select(sa.func.count()).select_from(t).scalar_subquery().label(n) for n, t in unique.items()]
    row = conn.execute(sa.select(*counts)).one()
    return {name: int(row[i]) for i, name in enumerate(unique)}


def stale(conn: sa.Connection) -> pd.DataFrame:
    """Built roll-ups whose source tables (:attr:`Rollup.tables`) changed size since
    (rows added or deleted by a writer that did not refresh them; in-place updates are not
    detected). Columns: rollup, refreshed_at, source_rows (when built), rows_now. Empty
    when none is stale or none was built."""
    columns = ["rollup", "refreshed_at", "source_rows", "rows_now"]
    if not sa.inspect(conn).has_table(state.name):
        return pd.DataFrame(columns=columns)
    tables = {rollup.name: rollup.tables for rollup in ROLLUPS}
    found = []
    built = conn.execute(sa.select(state.c.rollup, state.c.refreshed_at, state.c.source_rows)).all()
    counted = _table_rows(conn, SOURCES)  # after the state: DuckDB ends an open result at the next query
    for name, at, rows in built:
        now = sum(counted[t.name] for t in tables[name]) if name in tables else None
        if rows != now:
            found.append((name, at, rows, now))
    return pd.DataFrame(found, columns=columns)


def invalidate(conn: sa.Connection) -> None:
    """Mark every roll-up unbuilt, in the caller's transaction (for a writer about to
    change the CRM tables without :func:`refresh` in the same transaction): the KPIs read
    the base tables until the next refresh."""
    if sa.inspect(conn).has_table(state.name):
        conn.execute(state.delete())


def refresh_database(
    engine: sa.Engine, today: dt.date | None = None, changed: Collection[str] | None = None
) -> dict[str, int]:
    """:func:`refresh` in a transaction of its own."""
    with engine.begin() as conn:
        return refresh(conn, today, changed)


# ---------------------------------------------------------------- reading


def enabled() -> bool:
    """False when the environment variable ``CRM_ROLLUPS`` is ``off`` (or 0/false/no):
    every KPI then reads the base tables (the benchmark's direct path)."""
    return os.environ.get("CRM_ROLLUPS", "on").strip().lower() not in ("off", "0", "false", "no")


def answers(f: Filters, freq: str) -> bool:
    """True when the roll-ups can answer these filters: no owners and no products (not
    roll-up dimensions), neither chosen nor limited by the scope. Any date range: see
    :func:`remainder`."""
    return not (f.owners or f.products or f.scope.owners is not None) and freq in MONTHS


def remainder(f: Filters, freq: str, periods: list[pd.Timestamp]) -> Filters | None:
    """When ``end`` cuts the last period short (the dashboard's default range ends with
    the current, unfinished month): the filters of just that part, ``[its start, end)``,
    for the base tables to answer; else None."""
    if not periods or period_end(periods[-1], freq) <= pd.Timestamp(f.end):
        return None
    return f.replace(start=periods[-1].date())


#: Engines known to hold the roll-up state table (only positive answers are kept: a
#: database may gain roll-ups while the dashboard runs, not lose them).
_HAS_STATE: weakref.WeakKeyDictionary[sa.Engine, bool] = weakref.WeakKeyDictionary()
#: Per engine, the roll-ups whose table has every column of this version (positive
#: answers only, as above).
_CURRENT: weakref.WeakKeyDictionary[sa.Engine, set[str]] = weakref.WeakKeyDictionary()


def _may_read(conn: sa.Connection, *tables: sa.Table) -> bool:
    """False when the connecting PostgreSQL role has no SELECT privilege on one of ``tables``
    (a role limited to a scope, ``crm_data.pg_scope``: the roll-ups hold every account's
    aggregates); the KPIs then read the base tables. Asked, not tried: a failed SELECT would
    abort the transaction."""
    if conn.dialect.name != "postgresql":
        return True
    return all(
        conn.execute(sa.select(sa.func.has_table_privilege(table.name, "SELECT"))).scalar_one()
        for table in tables
    )


def _coverage(conn: sa.Connection, rollup: Rollup) -> tuple[int, int] | None:
    """(first, last) month of ``rollup`` as ``YYYYMM``, or None when it was never built or
    was built by an earlier version without all of today's measures (until a refresh)."""
    if not _HAS_STATE.get(conn.engine):
        if not sa.inspect(conn).has_table(state.name) or not _may_read(conn, state):
            return None
        _HAS_STATE[conn.engine] = True
    row = conn.execute(
        sa.select(state.c.first_period, state.c.last_period).where(state.c.rollup == rollup.name)
    ).first()
    if row is None:
        return None
    current = _CURRENT.setdefault(conn.engine, set())
    if rollup.name not in current:
        if _outdated(conn, rollup) or not _may_read(conn, rollup.table):
            return None
        current.add(rollup.name)
    return int(row[0]), int(row[1])


@functools.lru_cache(maxsize=256)
def _read_statement(rollup: Rollup, f: Filters, freq: str, first: int, last: int) -> sa.Select:
    table = rollup.table
    selected = account_conditions(f, table)
    return (
        sa.select(
            table.c.period,
            *(sa.cast(sa.func.sum(table.c[c]), sa.BigInteger()).label(c) for c in rollup.counts),
            *(sa.func.sum(table.c[c]).label(c) for c in rollup.sums),
        )
        .where(table.c.grain == freq, table.c.period >= first, table.c.period <= last, *selected)
        .group_by(table.c.period)
    )


#: The columns that date each cut-by-end roll-up's records (a record lies in the period of
#: one of them): where :func:`_nothing_after` looks for records on or after ``end``.
_DATED_BY: dict[str, tuple[sa.Column, ...]] = {
    "rollup_retention_costs": (schema.costs.c.incurred_on,),
    "rollup_revenue": (schema.payments.c.paid_at,),
    "rollup_survey_scores": (schema.survey_responses.c.responded_at,),
    "rollup_win_rate": (schema.deals.c.created_at, schema.deals.c.closed_at),
    "rollup_first_contact_resolution": (schema.tickets.c.resolved_at,),
}


def _nothing_after(
    conn: sa.Connection, rollup: Rollup, f: Filters, freq: str, periods: list[pd.Timestamp]
) -> bool:
    """True when ``end`` cuts the last period short but no record of ``rollup`` (of any
    account) is dated in ``[end, the period's end)``: the roll-up's row of that period then
    counts exactly the records before ``end``. So it is for the dashboard's default range,
    which ends the day after the last day with data: the cut month, quarter or year comes
    from the roll-up like the others, not from the base tables (at 1M accounts on
    PostgreSQL, the distinct paying accounts of a cut year took seconds). One ``SELECT ...
    LIMIT 1`` per dating column: an index range scan on row stores."""
    columns = _DATED_BY.get(rollup.name)
    if not columns or not periods:
        return False
    until = period_end(periods[-1], freq)
    for column in columns:
        if isinstance(column.type, sa.Date):
            low, high = f.end, until.date()
        else:
            low, high = f.end_ts, until.to_pydatetime()
        if conn.execute(sa.select(column).where(column >= low, column < high).limit(1)).first():
            return False
    return True


def read(
    conn: sa.Connection, rollup: Rollup, f: Filters, freq: str, periods: list[pd.Timestamp]
) -> dict[pd.Timestamp, tuple] | None:
    """``rollup``'s measures summed over the dimension groups the filters select, per
    period of ``periods`` that has any (period start -> ``(*counts, *sums)``) — except a
    last period that ``end`` cuts short (:func:`remainder`), when the KPI counts records
    only before ``end``: :func:`read_with_remainder` adds it from the base tables. None
    when the roll-up cannot answer (see the module docstring): the caller then reads the
    base tables."""
    if not periods or not enabled() or not answers(f, freq):
        return None
    if f.pipelines and "pipeline" in rollup.records.c:
        return None  # the pipeline is not a roll-up dimension: the deals answer
    coverage = _coverage(conn, rollup)
    if coverage is None:
        return None
    if rollup.cut_by_end and remainder(f, freq, periods) is not None:
        periods = periods[:-1]
        if not periods:
            return {}
    first, last = (period_label(p) for p in (periods[0], periods[-1]))
    if first < _grain_label(coverage[0], freq) or last > _grain_label(coverage[1], freq):
        return None
    by_label = {period_label(p): p for p in periods}
    rows = conn.execute(_read_statement(rollup, f, freq, first, last))
    return {by_label[int(row[0])]: tuple(row[1:]) for row in rows}


def groups_statement(
    conn: sa.Connection,
    rollup: Rollup,
    f: Filters,
    freq: str,
    periods: list[pd.Timestamp],
    group: Callable[[sa.ColumnElement], sa.ColumnElement],
    by: str,
    measures: Collection[str],
) -> sa.Select | None:
    """The SELECT of ``measures`` of ``rollup`` summed over all of ``periods`` per
    ``group(column by)`` (``by`` one of :data:`DIMENSIONS`; ``group`` labels it, e.g.
    ``coalesce(..., '(not set)')``), for the dimension groups the filters select — leaving
    out the group whose dimensions are all NULL, which holds both the accounts without any
    dimension value and the records of missing accounts (a KPI that counts only the first
    asks the base tables for them). None when the roll-up cannot answer (as :func:`read`;
    also when ``end`` cuts the last period of a roll-up that counts records only before
    ``end``). Counts come back as BIGINT, sums as the table's doubles; unordered."""
    if not periods or by not in DIMENSIONS or not enabled() or not answers(f, freq):
        return None
    if f.pipelines and "pipeline" in rollup.records.c:
        return None
    coverage = _coverage(conn, rollup)
    cut = rollup.cut_by_end and remainder(f, freq, periods) is not None
    if cut and (coverage is None or not _nothing_after(conn, rollup, f, freq, periods)):
        return None
    if coverage is None:
        return None
    first, last = (period_label(p) for p in (periods[0], periods[-1]))
    if first < _grain_label(coverage[0], freq) or last > _grain_label(coverage[1], freq):
        return None
    table = rollup.table
    key = group(table.c[by])
    all_null = sa.and_(*(table.c[column].is_(None) for column in DIMENSIONS))
    sums = [
        sa.cast(sa.func.sum(table.c[m]), sa.BigInteger()) if m in rollup.counts else sa.func.sum(table.c[m])
        for m in measures
    ]
    return (
        sa.select(key, *(total.label(m) for total, m in zip(sums, measures, strict=True)))
        .where(
            table.c.grain == freq,
            table.c.period >= first,
            table.c.period <= last,
            sa.not_(all_null),
            *account_conditions(f, table),
        )
        .group_by(key)
    )


def read_with_remainder(
    conn: sa.Connection,
    rollup: Rollup,
    f: Filters,
    freq: str,
    periods: list[pd.Timestamp],
    base_rows: Callable[[Filters], dict[pd.Timestamp, tuple]],
) -> dict[pd.Timestamp, tuple] | None:
    """:func:`read`, plus the last period's part before ``end`` when ``end`` cuts it short:
    from ``base_rows(filters of that part)`` — or, for a quarter or year whose measures
    add up over months, its complete months from the month roll-up and only the days of
    the month ``end`` falls in from ``base_rows``. None when the roll-up cannot answer."""
    part = remainder(f, freq, periods) if rollup.cut_by_end else None
    if part is not None and enabled() and answers(f, freq) and _nothing_after(conn, rollup, f, freq, periods):
        whole = f.replace(end=period_end(periods[-1], freq).date())  # the same records
        return read(conn, rollup, whole, freq, periods)
    rolled = read(conn, rollup, f, freq, periods)
    if rolled is None or part is None:
        return rolled
    cut_month = pd.Timestamp(f.end).to_period("M").to_timestamp()  # the month end falls in
    months = period_starts(part.start, cut_month.date(), "month")
    if freq != "month" and rollup.months_add_up and months:
        # the cut quarter / year: its complete months from the month roll-up, the rest
        # (the days of the month end falls in) from the base tables
        monthly = read(conn, rollup, f.replace(start=part.start, end=cut_month.date()), "month", months)
        if monthly is not None:
            total: tuple = ()
            for row in monthly.values():
                total = _add(total, row)
            if cut_month < pd.Timestamp(f.end):
                total = _add(total, base_rows(part.replace(start=cut_month.date())).get(periods[-1], ()))
            if total:
                rolled[periods[-1]] = total
            return rolled
    rolled.update(base_rows(part))
    return rolled


def _add(left: tuple, right: tuple) -> tuple:
    """Two rows of measures added element by element (an empty row or a NULL adds nothing)."""
    if not left or not right:
        return left or right
    return tuple(b if a is None else a if b is None else a + b for a, b in zip(left, right, strict=True))


def period_rows_or_rolled(
    conn: sa.Connection | sa.Engine,
    rollup: Rollup,
    f: Filters,
    freq: str,
    periods: list[pd.Timestamp],
    statement: Callable[[sa.Dialect, Filters, str], sa.Select],
    counts: tuple[str, ...] = (),
    sums: tuple[str, ...] = (),
) -> pd.DataFrame:
    """:func:`kpis.core.period_rows` of ``statement(dialect, f, freq)`` on the base tables,
    or the same frame from ``rollup`` when it can answer (its measures are ``counts`` then
    ``sums``)."""
    with connection(conn) as c:
        rolled = read_with_remainder(
            c, rollup, f, freq, periods, lambda part: period_found(c, statement(c.dialect, part, freq))
        )
        if rolled is not None:
            return grid_frame(rolled, periods, counts=counts, sums=sums)
        return period_rows(c, statement(c.dialect, f, freq), periods, counts=counts, sums=sums)


__all__ = [
    "CUSTOMER_BASE",
    "DIMENSIONS",
    "FIRST_CONTACT_RESOLUTION",
    "RETENTION_COSTS",
    "REVENUE",
    "ROLLUPS",
    "SURVEY_SCORES",
    "WIN_RATE",
    "Rollup",
    "answers",
    "data_months",
    "enabled",
    "groups_statement",
    "invalidate",
    "period_rows_or_rolled",
    "read",
    "read_with_remainder",
    "refresh",
    "refresh_database",
    "remainder",
    "source_rows",
    "stale",
    "state",
]
