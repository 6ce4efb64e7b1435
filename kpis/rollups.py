"""Roll-ups: the Overview's additive KPIs pre-aggregated per calendar period (month,
quarter, year) and per combination of the six account dimensions — the customer base
(active, new, churned customers and MRR movements), retention costs, revenue, NPS/CES
counts, won/lost/open deals and first-contact resolutions — and the deals created per
month with their status now (the Sales pipeline's lead conversion and win rate by an
account dimension).

Why: at a million accounts, the per-account activity at 12 month boundaries over 2M
subscriptions and the distinct paying accounts over 12M payments take 1.7 s of the
Overview's 1.9 s on DuckDB, and every KPI takes seconds on PostgreSQL; read from the
roll-ups, these KPIs sum a few thousand rows (``python -m benchmarks`` measures both
paths). The sales cycle's median and 90th percentile are not sums, so it always reads
the deals.

Same numbers: each roll-up row is the KPI's own aggregate — the measures declared once in
:mod:`kpis.measures`, which the KPI functions sum too (this module imports no KPI module;
the KPI modules import it) — grouped additionally by the account's ``segment, industry,
region, country, company_size, acquisition_channel`` and by the period the KPI dates the
record by. Every measure is a count or a sum over accounts or records, and each account
lies in exactly one dimension group, so summing the groups a filter selects gives the KPI
of the filtered rows — distinct paying accounts included. Records without an account (or
whose account is missing) fall in the group whose dimensions are all NULL, which an
account-level filter excludes, as the base tables' filters do. Sums of doubles may differ
from the direct path in the last bits (summation order). Each period also has a total row
(grain ``*month`` etc., dimensions NULL: the sum of all its groups), which a read without
account-level filters sums instead of the groups (:func:`total_grain`). A distinct-accounts
count (the revenue's paying accounts) is not additive over months: its quarters and years
are counted from a per-account table of the months each account counts in
(:class:`kpis.measures.DistinctAccounts`), the other measures of those rows summed from
the month rows.

When they are read (:func:`read`): ``CRM_ROLLUPS`` is not ``off``; the roll-ups exist, hold
every measure of this version (a table built before a measure was added is read again only
after :func:`refresh`, which rebuilds it) and cover every requested period; the filters set
no owners and no products (not roll-up dimensions), and no pipelines for a roll-up of deals
(``deals.pipeline`` is not a roll-up dimension either; the other roll-ups do not depend on
it). When ``end`` cuts the last period short (the current month, say), the
roll-ups answer the complete periods and the base tables that part of the last one
(:func:`remainder`; one small query). Otherwise the KPI runs on the base tables.

Freshness: :func:`refresh` rebuilds them from the CRM tables (``python -m crm_data
rollups``); their state (built or not, covering which months, from which CRM tables) is
the data layer's :mod:`crm_data.derived`. Writers of CRM tables report what they changed
through :mod:`crm_data.hooks`; :func:`listen` (wired by the command line, the Import page
and the test fixtures) answers with :func:`update` in the writer's transaction: only the
periods the changed records touch are deleted and inserted again — a record's months by
the columns its measure set dates it by, old and new values; a subscription every month
from its start to its end (or the last covered month when it runs on); the quarters and
years containing them (summed from the month rows where the measures allow; a distinct
count's per-account months rewritten for the touched months only) — and a roll-up is rebuilt whole when its months are unknown, when
accounts changed other than by new accounts (an account's dimensions group all its
records), or when the months covered change. Unwired, the writer invalidates the roll-ups
depending on what it changed and the KPIs read the base tables until the next refresh.
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

from crm_data import derived, hooks, schema
from crm_data.derived import state
from crm_data.dialects import FREQS, may_select, period_key, refresh_work_mem
from kpis import measures, stage_visits
from kpis.core import connection, grid_frame, period_end, period_found, period_starts
from kpis.filters import ACCOUNT_DIMENSIONS, Filters, account_conditions
from kpis.measures import MeasureSet

#: The accounts columns every roll-up is grouped by (the account-level filter lists).
DIMENSIONS: tuple[str, ...] = tuple(ACCOUNT_DIMENSIONS.values())
#: Months per period of each grain.
MONTHS = {"month": 1, "quarter": 3, "year": 12}

metadata = sa.MetaData()


@dataclass(frozen=True, eq=False)
class Rollup:
    """A roll-up table built from :attr:`measure_set`: ``grain, period`` (``YYYYMM`` of the
    period's first month), the dimension columns, then the counts and sums."""

    measure_set: MeasureSet
    table: sa.Table
    #: Per account and year, the months it counts in (:class:`kpis.measures.DistinctAccounts`);
    #: None without a distinct-accounts measure.
    months_table: sa.Table | None = None

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def counts(self) -> tuple[str, ...]:
        return self.measure_set.counts

    @property
    def sums(self) -> tuple[str, ...]:
        return self.measure_set.sums

    @property
    def measures(self) -> tuple[str, ...]:
        return self.measure_set.measures

    @property
    def records(self) -> sa.Table:
        """The CRM table its records come from (grouped through their account)."""
        return self.measure_set.records

    @property
    def cut_by_end(self) -> bool:
        return self.measure_set.cut_by_end

    @property
    def months_add_up(self) -> bool:
        return self.measure_set.months_add_up

    @property
    def tables(self) -> tuple[sa.Table, sa.Table]:
        """The CRM tables it summarises: accounts and its records' table."""
        return (schema.accounts, self.records)

    def source(self, dialect: sa.Dialect, grain: str, periods: list[pd.Timestamp]) -> sa.Select:
        """The SELECT of ``period, *DIMENSIONS, *measures`` that fills ``periods`` of ``grain``."""
        return self.measure_set.source(dialect, grain, periods, DIMENSIONS)


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


def _months_table(name: str) -> sa.Table:
    """A distinct-accounts measure's per-account months: ``account_id``, ``period`` (the
    year's label ``YYYY01``), ``months`` (bit ``m − 1`` set: counted in month ``m``)."""
    table = sa.Table(
        name,
        metadata,
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
    )
    schema.row_store_index(table, "period", "account_id")
    return table


_BY_NAME: dict[str, Rollup] = {}


def rollup_of(measure_set: MeasureSet) -> Rollup:
    """The roll-up of ``measure_set`` (one per name; its table is named after it and must
    start with ``rollup_``, :data:`crm_data.derived.PREFIX`)."""
    found = _BY_NAME.get(measure_set.name)
    if found is not None:
        if found.measure_set is not measure_set:
            raise ValueError(f"another measure set is named {measure_set.name}")
        return found
    if not measure_set.name.startswith(derived.PREFIX):
        raise ValueError(f"a roll-up's name starts with {derived.PREFIX!r}: {measure_set.name}")
    distinct = measure_set.distinct
    if distinct is not None and (
        distinct.measure not in measure_set.counts or not distinct.table.startswith(derived.PREFIX)
    ):
        raise ValueError(
            f"{measure_set.name}: a distinct count is one of its counts, its table starts with {derived.PREFIX!r}"
        )
    rollup = Rollup(
        measure_set,
        _table(measure_set.name, measure_set.counts, measure_set.sums),
        None if distinct is None else _months_table(distinct.table),
    )
    _BY_NAME[measure_set.name] = rollup
    return rollup


def period_label(period: pd.Timestamp) -> int:
    """``YYYYMM`` of a period start (the roll-ups' ``period`` column)."""
    return period.year * 100 + period.month


def _month(label: int) -> pd.Timestamp:
    """The month labelled ``YYYYMM``."""
    return pd.Timestamp(label // 100, label % 100, 1)


def _grain_label(month: int, grain: str) -> int:
    """The label of the ``grain`` period containing the month labelled ``month``."""
    year, number = divmod(month, 100)
    return year * 100 + number - (number - 1) % MONTHS[grain]


def _grain_periods(first: pd.Timestamp, last: pd.Timestamp, grain: str) -> list[pd.Timestamp]:
    """The periods of ``grain`` from the one containing month ``first`` to the one
    containing month ``last``."""
    start = first - pd.DateOffset(months=(first.month - 1) % MONTHS[grain])
    return period_starts(start.date(), (last + pd.DateOffset(months=1)).date(), grain)


#: Active, new, churned and retained customers and their MRR (``kpis.customer_base``).
CUSTOMER_BASE = rollup_of(measures.CUSTOMER_BASE)
#: Retention costs, in all and per category (``kpis.customer_base``).
RETENTION_COSTS = rollup_of(measures.RETENTION_COSTS)
#: Paying accounts, revenue, gross revenue and refunds (``kpis.revenue``).
REVENUE = rollup_of(measures.REVENUE)
#: NPS and CES counts and score sums (``kpis.feedback.survey_scores``).
SURVEY_SCORES = rollup_of(measures.SURVEY_SCORES)
#: Won, lost and open deals (``kpis.sales.win_rate``).
WIN_RATE = rollup_of(measures.WIN_RATE)
#: Resolved tickets, those resolved at the first contact and those with a recorded contact
#: count (``kpis.service``).
FIRST_CONTACT_RESOLUTION = rollup_of(measures.FIRST_CONTACT_RESOLUTION)
#: Deals created, won, lost and open by created month (``kpis.pipeline.lead_conversion``,
#: ``win_rate_by``).
CREATED_DEALS = rollup_of(measures.CREATED_DEALS)
#: Every roll-up of :data:`kpis.measures.MEASURE_SETS`.
ROLLUPS: tuple[Rollup, ...] = tuple(rollup_of(m) for m in measures.MEASURE_SETS)
#: The CRM tables the roll-ups summarise (each once: two roll-ups may summarise one table).
SOURCES: tuple[sa.Table, ...] = tuple(
    dict.fromkeys((schema.accounts, *(rollup.records for rollup in ROLLUPS)))
)
#: Every derived table :func:`refresh` builds and :func:`on_tables_changed` keeps current:
#: the roll-ups, then the stored stage visits (:mod:`kpis.stage_visits`).
DERIVED: tuple[str, ...] = (*(rollup.name for rollup in ROLLUPS), stage_visits.NAME)


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
    conn: sa.Connection,
    today: dt.date | None = None,
    changed: Collection[str] | None = None,
    rollups: Iterable[Rollup] = ROLLUPS,
    visits: bool | None = None,
) -> dict[str, int]:
    """Rebuild roll-ups (default: all of :data:`ROLLUPS`) from the CRM tables, for every
    period, in the caller's transaction (creating the tables when missing); return the rows
    written per rebuilt roll-up.

    ``changed`` names the CRM tables a writer changed: then only the roll-ups that
    summarise one of them (:attr:`Rollup.tables`) are rebuilt, and those never built — an
    import of tickets rebuilds first-contact resolution, not the customer base. Default:
    all. Each grain's rows come from one INSERT ... SELECT, so no data passes through
    Python; the quarters and years of a roll-up whose measures add up over months are summed
    from its month rows (:func:`_insert_from_months`, as :func:`update` does), not from the
    records. With no record any roll-up counts (:func:`data_months`) they are emptied and
    their state removed (the KPIs then read the base tables).

    ``visits``: also rebuild the stored stage visits (:func:`kpis.stage_visits.refresh`;
    when ``changed`` is given, only if it names one of their sources or they were never
    built). Default: when ``rollups`` is all of :data:`ROLLUPS`."""
    with refresh_work_mem(conn):
        written = _refresh(conn, today, changed, rollups)
    if visits is None:
        visits = rollups is ROLLUPS
    if visits and (
        changed is None
        or stage_visits.NAME not in derived.built(conn)
        or any(t.name in changed for t in stage_visits.SOURCES)
    ):
        written[stage_visits.NAME] = stage_visits.refresh(conn)
    return written


def _refresh(
    conn: sa.Connection, today: dt.date | None, changed: Collection[str] | None, rollups: Iterable[Rollup]
) -> dict[str, int]:
    """:func:`refresh`, inside :func:`crm_data.dialects.refresh_work_mem`."""
    chosen = list(rollups)
    _prepare(conn, chosen)
    built = derived.built(conn)
    due = [
        rollup
        for rollup in chosen
        if changed is None or rollup.name not in built or any(t.name in changed for t in rollup.tables)
    ]
    months = data_months(conn, today) if due else None
    counted = derived.table_rows(conn, (t for rollup in due for t in rollup.tables)) if due else {}
    written: dict[str, int] = {}
    for rollup in due:
        conn.execute(rollup.table.delete())
        derived.forget(conn, rollup.name)
        if rollup.months_table is not None:
            conn.execute(rollup.months_table.delete())
        written[rollup.name] = 0
        if months is None:
            continue
        rows: int | None = 0
        for grain in FREQS:  # months first: the quarters and years of additive measures sum them
            periods = _grain_periods(*months, grain)
            if grain != "month" and rollup.months_add_up:
                rows = _add_rows(rows, _insert_from_months(conn, rollup, grain, periods))
                continue
            if grain != "month" and rollup.months_table is not None:
                continue  # below, from the per-account months
            rows = _add_rows(rows, _insert(conn, rollup, grain, periods))
            if grain == "month" and rollup.months_table is not None:
                _insert_account_months(conn, rollup, rollup.months_table, *months)
                _analyze(conn, rollup.months_table)
        if rollup.months_table is not None:
            spans = {grain: _grain_periods(*months, grain) for grain in FREQS if grain != "month"}
            rows = _add_rows(rows, _insert_distinct_from_months(conn, rollup, spans))
        for grain in FREQS:
            rows = _add_rows(rows, _insert_totals(conn, rollup, grain))
        written[rollup.name] = _record(conn, rollup, months, counted, rows)
    _forget_engines()
    return written


def _forget_engines() -> None:
    """Forget what the readers know of each engine's roll-ups (they were just rewritten)."""
    _HAS_STATE.clear()
    _CURRENT.clear()
    _TOTALS.clear()


def total_grain(grain: str) -> str:
    """The ``grain`` of a roll-up's total rows of ``grain`` periods (``*month``): per period,
    every measure summed over all dimension groups (dimensions NULL) — what a read without
    account-level filters sums, in one row per period (at 1M accounts a month has tens of
    thousands of dimension groups)."""
    return "*" + grain


def _insert_totals(
    conn: sa.Connection, rollup: Rollup, grain: str, first: int = 0, last: int = 999999
) -> int | None:
    """INSERT ... SELECT the total rows (:func:`total_grain`) of the ``grain`` periods labelled
    ``first``..``last`` from their dimension groups' rows; the rows written."""
    table = rollup.table
    rows = (
        sa.select(
            sa.literal(total_grain(grain), sa.String()).label("grain"),
            table.c.period,
            *(sa.func.sum(table.c[m]).label(m) for m in rollup.measures),
        )
        .where(table.c.grain == grain, table.c.period >= first, table.c.period <= last)
        .group_by(table.c.period)
    )
    return derived.written(
        conn.execute(table.insert().from_select(["grain", "period", *rollup.measures], rows))
    )


def _prepare(conn: sa.Connection, rollups: Iterable[Rollup]) -> None:
    """Drop the tables of ``rollups`` built by a version with other measures (rebuilt
    whole, their state gone), then create the missing tables and the state tables."""
    present = derived.table_names(conn)  # one catalog lookup, not one per table
    for rollup in rollups:
        if derived.lacks_columns(conn, rollup.table, present):
            rollup.table.drop(conn)
            derived.forget(conn, rollup.name)
            present.discard(rollup.table.name)
        for table in (rollup.table, rollup.months_table):
            if table is not None and table.name not in present:
                table.create(conn)
                present.add(table.name)
    derived.create(conn, present)


def _insert(conn: sa.Connection, rollup: Rollup, grain: str, periods: list[pd.Timestamp]) -> int | None:
    """INSERT ... SELECT the rows of ``periods`` (consecutive, of ``grain``); the rows written."""
    rows = rollup.source(conn.dialect, grain, periods).subquery()
    return derived.written(
        conn.execute(
            rollup.table.insert().from_select(
                ["grain", "period", *DIMENSIONS, *rollup.measures],
                sa.select(sa.literal(grain, sa.String()).label("grain"), *rows.c),
            )
        )
    )


def _containing(month_label: sa.ColumnElement[int], grain: str) -> sa.ColumnElement[int]:
    """The label of the quarter or year containing the month labelled ``month_label``:
    ``label − (month − 1) mod 3`` (quarter) or ``label − month + 1`` (year)."""
    month = month_label % 100
    return month_label - (month - 1) % 3 if grain == "quarter" else month_label - month + 1


def _insert_from_months(
    conn: sa.Connection, rollup: Rollup, grain: str, periods: list[pd.Timestamp]
) -> int | None:
    """INSERT ... SELECT the rows of ``periods`` (quarters or years) as the sums of their
    months' rows per dimension group, from the roll-up itself (for a roll-up whose measures
    add up over months; its month rows are current), labelled by :func:`_containing`."""
    table = rollup.table
    label = _containing(table.c.period, grain)
    last_month = period_label(period_end(periods[-1], grain) - pd.DateOffset(months=1))
    dimensions = [table.c[column] for column in DIMENSIONS]
    rows = (
        sa.select(
            sa.literal(grain, sa.String()).label("grain"),
            label.label("period"),
            *dimensions,
            *(sa.func.sum(table.c[m]).label(m) for m in rollup.measures),
        )
        .where(
            table.c.grain == "month", table.c.period >= period_label(periods[0]), table.c.period <= last_month
        )
        .group_by(label, *dimensions)
    )
    return derived.written(
        conn.execute(table.insert().from_select(["grain", "period", *DIMENSIONS, *rollup.measures], rows))
    )


#: Every month's bit of a per-account months mask.
ALL_MONTHS = (1 << 12) - 1
_INT = {value: sa.literal_column(str(value), sa.Integer()) for value in (0, 1)}


def _bits(first: pd.Timestamp, last: pd.Timestamp, year: int) -> int:
    """The mask of the months of ``year`` from month ``first`` to month ``last``."""
    return sum(1 << (m.month - 1) for m in pd.date_range(first, last, freq="MS") if m.year == year)


def _account_months(
    dialect: sa.Dialect, rollup: Rollup, first: pd.Timestamp, last: pd.Timestamp
) -> sa.Select:
    """SELECT account_id, period, months: per account and year, the mask of the months
    from ``first`` to ``last`` in which the account counts in the distinct measure (a
    record ``where`` selects, dated in the month) — per (account, month) first, then
    ``months = Σ 2^(m − 1)`` over the account's months m of the year."""
    spec = rollup.measure_set.distinct
    assert spec is not None
    records = rollup.records
    dated = spec.dated(records)
    end = period_end(last, "month")
    low, high = (first.date(), end.date()) if isinstance(dated.type, sa.Date) else (first, end)
    month = period_key(dialect, dated, "month")
    per_month = (
        sa.select(records.c.account_id, month.label("month"))
        .where(spec.where(records), dated >= low, dated < high)
        .group_by(records.c.account_id, month)
        .subquery("per_month")
    )
    number = per_month.c.month % 100
    bit = sa.case(
        *((number == m, sa.literal_column(str(1 << (m - 1)), sa.Integer())) for m in range(1, 13)),
        else_=_INT[0],
    )
    year = _containing(per_month.c.month, "year")
    return sa.select(per_month.c.account_id, year.label("period"), sa.func.sum(bit).label("months")).group_by(
        per_month.c.account_id, year
    )


def _insert_account_months(
    conn: sa.Connection, rollup: Rollup, into: sa.Table, first: pd.Timestamp, last: pd.Timestamp
) -> int | None:
    """INSERT ... SELECT :func:`_account_months` of ``first``..``last`` into ``into``; the
    rows written."""
    return derived.written(
        conn.execute(
            into.insert().from_select(
                ["account_id", "period", "months"], _account_months(conn.dialect, rollup, first, last)
            )
        )
    )


def _update_account_months(
    conn: sa.Connection, rollup: Rollup, first: pd.Timestamp, last: pd.Timestamp, added_only: bool
) -> None:
    """Rewrite the bits of the months ``first``..``last`` in ``rollup``'s per-account months
    (the other months' bits are kept: their records did not change), from those months'
    records: ``months = (months & ~touched) | fresh`` where the account counts in a touched
    month (rows written only when that changes), new rows for accounts and years without
    one; unless ``added_only`` (records only added: no bit can go), the touched bits are
    also cleared where the account no longer counts and rows left without a bit deleted."""
    table = rollup.months_table
    assert table is not None
    fresh = sa.Table(
        "rollup_fresh_months",
        sa.MetaData(),
        *(sa.Column(c.name, c.type) for c in table.c),
        prefixes=["TEMPORARY"],
    )
    fresh.create(conn)
    _insert_account_months(conn, rollup, fresh, first, last)
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"ANALYZE {fresh.name}"))
    same = sa.and_(table.c.account_id == fresh.c.account_id, table.c.period == fresh.c.period)
    for year in range(first.year, last.year + 1):
        label, touched = year * 100 + 1, _bits(first, last, year)
        kept = table.c.months.bitwise_and(ALL_MONTHS - touched)
        merged = kept.bitwise_or(fresh.c.months)
        conn.execute(
            table.update()
            .where(same, table.c.period == label, table.c.months != merged)
            .values(months=merged)
        )
        new = sa.select(fresh.c.account_id, fresh.c.period, fresh.c.months).where(
            fresh.c.period == label, ~sa.exists().where(same)
        )
        conn.execute(table.insert().from_select(["account_id", "period", "months"], new))
        if not added_only:
            conn.execute(
                table.update()
                .where(
                    table.c.period == label,
                    table.c.months.bitwise_and(touched) != 0,
                    ~sa.exists().where(same),
                )
                .values(months=kept)
            )
            conn.execute(table.delete().where(table.c.period == label, table.c.months == 0))
    fresh.drop(conn)
    _analyze(conn, table)


def _insert_distinct_from_months(
    conn: sa.Connection, rollup: Rollup, spans: dict[str, list[pd.Timestamp]]
) -> int | None:
    """INSERT ... SELECT the rows of the quarters and years ``spans`` names (grain ->
    consecutive periods) of a roll-up with a distinct-accounts measure (its month rows and
    per-account months current), in one statement (``accounts`` read once): per period and
    dimension group, the distinct measure = the accounts whose months mask has a bit in the
    period's months (accounts missing from ``accounts`` in the all-NULL group, as the
    records' statement puts them), every other measure = the sum of its month rows."""
    spec, helper = rollup.measure_set.distinct, rollup.months_table
    assert spec is not None and helper is not None
    spans = {grain: periods for grain, periods in spans.items() if periods}
    if not spans:
        return 0
    table, accounts = rollup.table, schema.accounts

    def constant(value: object, type_: sa.types.TypeEngine) -> sa.ColumnElement:
        return sa.literal_column(f"'{value}'" if isinstance(value, str) else str(value), type_)

    grid_rows = [
        sa.select(
            constant(grain, sa.String()).label("grain"),
            constant(period_label(p), sa.Integer()).label("label"),
            constant(p.year * 100 + 1, sa.Integer()).label("year"),
            constant(sum(1 << (p.month - 1 + k) for k in range(MONTHS[grain])), sa.Integer()).label("bits"),
        )
        for grain, periods in spans.items()
        for p in periods
    ]
    grid = (grid_rows[0] if len(grid_rows) == 1 else sa.union_all(*grid_rows)).cte("grid")

    def zero(measure: str) -> sa.ColumnElement:
        return _INT[0] if measure in rollup.counts else measures.ZERO

    counted = sa.select(
        grid.c.grain,
        grid.c.label.label("period"),
        *(accounts.c[d].label(d) for d in DIMENSIONS),
        *((_INT[1] if m == spec.measure else zero(m)).label(m) for m in rollup.measures),
    ).select_from(
        helper.join(
            grid, sa.and_(helper.c.period == grid.c.year, helper.c.months.bitwise_and(grid.c.bits) != 0)
        ).outerjoin(accounts, accounts.c.account_id == helper.c.account_id)
    )
    summed = [
        sa.select(
            constant(grain, sa.String()).label("grain"),
            _containing(table.c.period, grain).label("period"),
            *(table.c[d].label(d) for d in DIMENSIONS),
            *((zero(m) if m == spec.measure else table.c[m]).label(m) for m in rollup.measures),
        ).where(
            table.c.grain == "month",
            table.c.period >= period_label(periods[0]),
            table.c.period <= period_label(period_end(periods[-1], grain) - pd.DateOffset(months=1)),
        )
        for grain, periods in spans.items()
    ]
    both = sa.union_all(counted, *summed).subquery("both_parts")
    keys = [both.c.grain, both.c.period, *(both.c[d] for d in DIMENSIONS)]
    rows = sa.select(*keys, *(sa.func.sum(both.c[m]).label(m) for m in rollup.measures)).group_by(*keys)
    return derived.written(
        conn.execute(table.insert().from_select(["grain", "period", *DIMENSIONS, *rollup.measures], rows))
    )


def _add_rows(total: int | None, rows: int | None) -> int | None:
    """``total + rows``, None when either is unknown."""
    return None if total is None or rows is None else total + rows


def _analyze(conn: sa.Connection, table: sa.Table) -> None:
    """ANALYZE ``table`` on PostgreSQL (a table filled in this transaction has no
    statistics: the planner took the per-account months' 57k rows of a year at 100k
    accounts for 600 and probed ``accounts`` by index for each)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f'ANALYZE "{table.name}"'))


def _record(
    conn: sa.Connection,
    rollup: Rollup,
    months: tuple[pd.Timestamp, pd.Timestamp],
    counted: dict[str, int],
    rows: int | None = None,
) -> int:
    """Record ``rollup`` as built over ``months`` (:mod:`crm_data.derived`), holding
    ``rows`` rows (None: counted here — counting every roll-up's rows took 2 s of the
    refresh at 1M accounts on PostgreSQL); its rows. (Its per-account months have no state
    of their own: they are written with the roll-up, in the same transaction.)"""
    if rows is None:
        rows = conn.execute(sa.select(sa.func.count()).select_from(rollup.table)).scalar_one()
    derived.record(
        conn,
        rollup.name,
        (t.name for t in rollup.tables),
        period_label(months[0]),
        period_label(months[1]),
        rows,
        sum(counted[t.name] for t in rollup.tables),
    )
    return rows


def touched_months(
    rollup: Rollup, change: hooks.Change, last: pd.Timestamp
) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first and last month of ``rollup`` whose rows ``change`` may alter (``last``:
    the last month covered, the end of a subscription that runs on); ``(last + 1 month,
    last)`` — an empty range — when none; None when unknown (rebuild it whole).

    Accounts changed other than by new accounts that no record referenced yet: unknown
    (an account's dimensions group every record of it). The records' table: the months
    of the old and new values of the columns the measure set dates a record by
    (:attr:`~kpis.measures.MeasureSet.date_columns`); with ``spans`` every month from the
    earliest start to the latest end (any end NULL: to ``last``)."""
    nothing = (last + pd.DateOffset(months=1), last)
    accounts = change.tables.get(schema.accounts.name)
    if accounts is not None and not accounts.pure_insert:
        return None
    records = change.tables.get(rollup.records.name)
    if records is None:
        return nothing
    spec = rollup.measure_set
    if not records.known or not spec.date_columns or any(c not in records.dates for c in spec.date_columns):
        return None
    spans = [records.dates[c] for c in spec.date_columns]
    firsts = [s.first for s in spans if s.first is not None]
    lasts = [s.last for s in spans if s.last is not None]
    if spec.spans and spans[-1].has_null and firsts:
        lasts.append(last.date())
    if not firsts or not lasts:
        return nothing
    month = lambda day: pd.Timestamp(day).to_period("M").to_timestamp()  # noqa: E731
    return month(min(firsts)), month(max(lasts))


def update(conn: sa.Connection, change: hooks.Change, rollups: Iterable[Rollup] = ROLLUPS) -> list[str]:
    """Bring ``rollups`` up to date after ``change`` (:mod:`crm_data.hooks`), in the
    writer's transaction; return their names (all current afterwards).

    Never built (or built by a version with other measures): built whole. Not depending on
    a changed table, and covering the months it should: left alone. Otherwise only the periods :func:`touched_months` names are
    deleted and inserted again — every grain's periods containing those months (a quarter or
    year of a roll-up whose measures add up over months: summed from its fresh month rows,
    the others from the records); when the months covered (:func:`data_months`) grow at the
    end (a record in a new year: the roll-ups cover to its December), the new months too.
    Rebuilt whole (:func:`refresh`) when the months touched are unknown or the months
    covered change otherwise."""
    with refresh_work_mem(conn):
        return _update(conn, change, rollups)


def _update(conn: sa.Connection, change: hooks.Change, rollups: Iterable[Rollup]) -> list[str]:
    """:func:`update`, inside :func:`crm_data.dialects.refresh_work_mem`."""
    chosen = list(rollups)
    present = derived.table_names(conn)
    without_months = {
        r.name for r in chosen if r.months_table is not None and not _has_rows(conn, r.months_table, present)
    }
    _prepare(conn, chosen)
    _backfill_totals(conn, chosen)
    built = derived.built(conn)
    names = change.names
    months = data_months(conn, change.today)
    covered = None if months is None else (period_label(months[0]), period_label(months[1]))
    due = [
        r
        for r in chosen
        if built.get(r.name) != covered  # never built: None
        or any(t.name in names for t in r.tables)
        or r.name in without_months
    ]
    if not due:
        return [r.name for r in chosen]
    whole, partial = [], []
    for rollup in due:
        coverage = built.get(rollup.name)
        if months is None or coverage is None or coverage[0] != period_label(months[0]):
            whole.append(rollup)
            continue
        if rollup.name in without_months:
            whole.append(rollup)  # built by an earlier version, without its per-account months
            continue
        old_last = _month(coverage[1])
        touched = touched_months(rollup, change, months[1])
        if touched is None or old_last > months[1]:
            whole.append(rollup)
            continue
        first, last = max(touched[0], months[0]), min(touched[1], months[1])
        if old_last < months[1]:  # the covered months grow (a new year): their periods too
            grown = old_last + pd.DateOffset(months=1)
            first, last = (grown, months[1]) if first > last else (min(first, grown), months[1])
        partial.append((rollup, first, last))
    if whole:
        refresh(conn, change.today, rollups=whole)
    if partial:
        counted = derived.table_rows(conn, (t for rollup, _, _ in partial for t in rollup.tables))
        before = _state_rows(conn)
        for rollup, first, last in partial:
            rows = before.get(rollup.name)  # with the totals backfilled
            if first <= last:
                distinct: dict[str, list[pd.Timestamp]] = {}
                ranges: dict[str, tuple[int, int]] = {}
                for grain in FREQS:
                    periods = _grain_periods(first, last, grain)
                    ranges[grain] = (period_label(periods[0]), period_label(periods[-1]))
                    gone = derived.written(
                        conn.execute(
                            rollup.table.delete().where(
                                rollup.table.c.grain.in_((grain, total_grain(grain))),
                                rollup.table.c.period >= ranges[grain][0],
                                rollup.table.c.period <= ranges[grain][1],
                            )
                        )
                    )
                    rows = _add_rows(rows, None if gone is None else -gone)
                    if grain != "month" and rollup.months_add_up:
                        rows = _add_rows(rows, _insert_from_months(conn, rollup, grain, periods))
                    elif grain != "month" and rollup.months_table is not None:
                        distinct[grain] = periods  # below, from the months
                    else:
                        rows = _add_rows(rows, _insert(conn, rollup, grain, periods))
                    if grain == "month" and rollup.months_table is not None:
                        records = change.tables.get(rollup.records.name)
                        added_only = records is None or records.pure_insert
                        _update_account_months(conn, rollup, first, last, added_only)
                if distinct:
                    rows = _add_rows(rows, _insert_distinct_from_months(conn, rollup, distinct))
                for grain, (low, high) in ranges.items():
                    rows = _add_rows(rows, _insert_totals(conn, rollup, grain, low, high))

            _record(conn, rollup, months, counted, rows)  # type: ignore[arg-type]  # months is set here
        _forget_engines()
    return [r.name for r in chosen]


def _backfill_totals(conn: sa.Connection, rollups: Iterable[Rollup]) -> None:
    """Add the total rows (:func:`total_grain`) of every period to the roll-ups built by an
    earlier version without them (their recorded rows too)."""
    for rollup in rollups:
        if _has_totals(conn, rollup) or not _has_rows(conn, rollup.table):  # exists: _prepare ran
            continue
        rows: int | None = 0
        for grain in FREQS:
            rows = _add_rows(rows, _insert_totals(conn, rollup, grain))
        if rows is not None:
            conn.execute(state.update().where(state.c.rollup == rollup.name).values(rows=state.c.rows + rows))
    _TOTALS.clear()


def _has_rows(conn: sa.Connection, table: sa.Table, present: Collection[str] | None = None) -> bool:
    """``table`` holds a row; it exists, or is one of ``present`` (the database's tables,
    :func:`crm_data.derived.table_names`) when given."""
    if present is not None and table.name not in present:
        return False
    return conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is not None


def _state_rows(conn: sa.Connection) -> dict[str, int]:
    """The rows each built derived table held when last recorded."""
    return {name: int(rows) for name, rows in conn.execute(sa.select(state.c.rollup, state.c.rows))}


def on_tables_changed(conn: sa.Connection, change: hooks.Change) -> list[str]:
    """The :mod:`crm_data.hooks` listener: :func:`update` every roll-up and the stored
    stage visits (:func:`kpis.stage_visits.update`; a first import builds them all)."""
    return [*update(conn, change), *stage_visits.update(conn, change)]


def listen() -> None:
    """Wire the roll-ups to :mod:`crm_data.hooks` (once; the application calls it: the
    command line, the Import page, the test fixtures): every writer's change then updates
    them in its transaction."""
    hooks.add_listener(on_tables_changed)


def source_rows(conn: sa.Connection, tables: Iterable[sa.Table] = SOURCES) -> int:
    """Rows in ``tables`` (default: every table the roll-ups summarise), in all."""
    return sum(derived.table_rows(conn, tables).values())


def stale(conn: sa.Connection) -> pd.DataFrame:
    """Built roll-ups whose source tables changed size since they were built
    (:func:`crm_data.derived.stale`)."""
    return derived.stale(conn)


def invalidate(conn: sa.Connection) -> None:
    """Mark every roll-up unbuilt, in the caller's transaction (for a writer about to
    change the CRM tables without a refresh in the same transaction): the KPIs read the
    base tables until the next refresh (:func:`crm_data.derived.invalidate`)."""
    derived.invalidate(conn)


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


def visits_readable(conn: sa.Connection) -> bool:
    """The stored stage visits are read (by ``stage_durations``, ``funnel``,
    ``current_stage`` and ``pipeline_forecast``'s learning): the roll-ups are on
    (:func:`enabled`) and the visits are built and readable
    (:func:`kpis.stage_visits.available`)."""
    return enabled() and stage_visits.available(conn)


def answers(f: Filters, freq: str) -> bool:
    """True when the roll-ups can answer these filters: no owners and no products (not
    roll-up dimensions), neither chosen nor limited by the scope. Any date range: see
    :func:`remainder`."""
    return not f.limits_owners_or_products and freq in MONTHS


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
#: Per engine, the roll-ups holding total rows (:func:`total_grain`; positive answers only:
#: a roll-up built by an earlier version has none until rebuilt).
_TOTALS: weakref.WeakKeyDictionary[sa.Engine, set[str]] = weakref.WeakKeyDictionary()


def _has_totals(conn: sa.Connection, rollup: Rollup) -> bool:
    """True when ``rollup`` holds total rows (one indexed ``SELECT ... LIMIT 1``, once per
    engine while true)."""
    known = _TOTALS.setdefault(conn.engine, set())
    if rollup.name in known:
        return True
    table = rollup.table
    found = conn.execute(
        sa.select(table.c.period).where(table.c.grain == total_grain("year")).limit(1)
    ).first()
    if found is not None:
        known.add(rollup.name)
    return found is not None


def _coverage(conn: sa.Connection, rollup: Rollup) -> tuple[int, int] | None:
    """(first, last) month of ``rollup`` as ``YYYYMM``, or None when it was never built or
    was built by an earlier version without all of today's measures (until a refresh)."""
    if not _HAS_STATE.get(conn.engine):
        if not sa.inspect(conn).has_table(state.name) or not may_select(conn, state):
            return None
        _HAS_STATE[conn.engine] = True
    row = conn.execute(
        sa.select(state.c.first_period, state.c.last_period).where(state.c.rollup == rollup.name)
    ).first()
    if row is None:
        return None
    current = _CURRENT.setdefault(conn.engine, set())
    if rollup.name not in current:
        if derived.lacks_columns(conn, rollup.table) or not may_select(conn, rollup.table):
            return None
        current.add(rollup.name)
    return int(row[0]), int(row[1])


@functools.lru_cache(maxsize=256)
def _read_statement(
    rollup: Rollup, f: Filters, freq: str, first: int, last: int, totals: bool = False
) -> sa.Select:
    """The roll-up's measures summed per period over the groups ``f`` selects — from the
    total rows when ``totals`` (the roll-up has them) and ``f`` sets no account-level
    filter."""
    table = rollup.table
    selected = account_conditions(f, table)
    if totals and not selected:
        freq = total_grain(freq)
    return (
        sa.select(
            table.c.period,
            *(sa.cast(sa.func.sum(table.c[c]), sa.BigInteger()).label(c) for c in rollup.counts),
            *(sa.func.sum(table.c[c]).label(c) for c in rollup.sums),
        )
        .where(table.c.grain == freq, table.c.period >= first, table.c.period <= last, *selected)
        .group_by(table.c.period)
    )


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
    columns = [rollup.records.c[name] for name in rollup.measure_set.date_columns]
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
    rows = conn.execute(_read_statement(rollup, f, freq, first, last, _has_totals(conn, rollup)))
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
    blank: bool = False,
) -> sa.Select | None:
    """The SELECT of ``measures`` of ``rollup`` summed over all of ``periods`` per
    ``group(column by)`` (``by`` one of :data:`DIMENSIONS`; ``group`` labels it, e.g.
    ``coalesce(..., '(not set)')``), for the dimension groups the filters select — leaving
    out, unless ``blank``, the group whose dimensions are all NULL, which holds both the
    accounts without any dimension value and the records of missing accounts (a KPI that
    counts only the first asks the base tables for them; one that puts both in the NULL
    group of ``by`` passes ``blank``). None when the roll-up cannot answer (as :func:`read`;
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
            *([] if blank else [sa.not_(all_null)]),
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


def found_or_rolled(
    c: sa.Connection,
    rollup: Rollup,
    f: Filters,
    freq: str,
    periods: list[pd.Timestamp],
    statement: Callable[[sa.Dialect, Filters, str], sa.Select],
    params: Callable[[Filters], dict[str, object]] | None = None,
) -> dict[pd.Timestamp, tuple]:
    """The rows of ``statement(dialect, f, freq)`` per period (period start -> its measures,
    :func:`kpis.core.period_found`), read from ``rollup`` when it can answer — the part of
    a period that ``end`` cuts short from the base tables (:func:`read_with_remainder`) —,
    else all from the base tables. ``params``: for a statement built as a template
    (``kpis.filters.template``), its bind values for the filters at hand
    (``kpis.filters.value_params``)."""

    def base_rows(part: Filters) -> dict[pd.Timestamp, tuple]:
        return period_found(c, statement(c.dialect, part, freq), params(part) if params else None)

    rolled = read_with_remainder(c, rollup, f, freq, periods, base_rows)
    return base_rows(f) if rolled is None else rolled


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
    ``sums``): :func:`found_or_rolled` on the period grid."""
    with connection(conn) as c:
        found = found_or_rolled(c, rollup, f, freq, periods, statement)
    return grid_frame(found, periods, counts=counts, sums=sums)


__all__ = [
    "CREATED_DEALS",
    "CUSTOMER_BASE",
    "DERIVED",
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
    "found_or_rolled",
    "groups_statement",
    "invalidate",
    "listen",
    "on_tables_changed",
    "period_rows_or_rolled",
    "read",
    "read_with_remainder",
    "refresh",
    "refresh_database",
    "remainder",
    "rollup_of",
    "source_rows",
    "stale",
    "state",
    "touched_months",
    "update",
]
