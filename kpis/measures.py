"""The KPIs' additive measures, declared once: what each roll-up holds and what the KPI
functions sum on the base tables.

Both :mod:`kpis.rollups` (which builds and reads the roll-up tables) and the KPI modules
(:mod:`kpis.customer_base`, :mod:`kpis.feedback`, :mod:`kpis.sales`, :mod:`kpis.service`,
:mod:`kpis.revenue`) import this module; it imports no KPI module and neither does
:mod:`kpis.rollups`, so the dependencies run one way: KPI modules → rollups → measures
(→ :mod:`kpis.activity`, :mod:`kpis.core`, :mod:`kpis.filters`, :mod:`crm_data`).

A :class:`MeasureSet` names, for one roll-up: the records table, the date a KPI counts a
record by (``dated``), which records count (``where``), and the count and sum expressions
(labelled SQLAlchemy aggregates over the records, counts first). The roll-up row of a
period and account-dimension group is ``SELECT <expressions> FROM records LEFT JOIN
accounts WHERE dated IS NOT NULL AND where GROUP BY period(dated), <dimensions>``; the KPI
function runs the same expressions over its filtered rows, so both give the same numbers.
Two roll-ups are not a plain grouping and declare their own ``statement``: the customer
base (activity at each period's start and end, :mod:`kpis.activity`) and revenue (distinct
paying accounts: per account first).

Adding a KPI with a roll-up
---------------------------
Declare its :class:`MeasureSet` here and append it to :data:`MEASURE_SETS` — that is the
one place: :func:`kpis.rollups.rollup_of` makes its table, ``python -m crm_data rollups``
and the importer's refresh build it (all periods, or only those an import touched: list
the record columns ``dated`` draws from in ``date_columns``), ``check`` reports it stale.
The KPI function sums ``measures.expressions(records)`` on the base tables and calls
``rollups.period_rows_or_rolled(conn, rollups.rollup_of(MY_MEASURES), ...)`` to read the
roll-up when it can answer. ``tests/kpis/test_measures.py`` builds a working roll-up from
a throwaway measure set this way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import period_key
from kpis.activity import ACTIVITY_COUNTS, MRR_SPREAD, MRR_SUMS, _activity_statement, period_grid
from kpis.core import period_end
from kpis.filters import Filters

#: No segment, owner or product filters: the roll-ups count every record.
_EVERYTHING = Filters(dt.date(1, 1, 1), dt.date(9999, 12, 31))
#: Constant written into the SQL (not bound).
ZERO = sa.literal_column("0.0", sa.Double())
#: CES scores that count as "easy" (scale 1–7, 7 = very easy).
CES_EASY_MIN = 5

#: ``statement(dialect, grain, periods, by)``: the SELECT of ``period`` (``YYYYMM`` label
#: of the period start), the ``by`` accounts columns, then the counts and sums, for the
#: periods ``periods`` of ``grain`` only.
Statement = Callable[[sa.Dialect, str, list[pd.Timestamp], tuple[str, ...]], sa.Select]


@dataclass(frozen=True)
class DistinctAccounts:
    """A count measure of distinct accounts (``measure``): the accounts with a record that
    ``where(records)`` selects, dated by ``dated(records)`` in the period. A quarter's or
    year's count is not the sum of its months' (an account paying in two months is one
    paying account of the quarter), so the roll-up keeps beside its rows the table
    ``table``: per account and year (``period`` = the year's label ``YYYY01``) the months
    the account counts in, as a 12-bit mask (bit ``m − 1`` set = counted in month ``m``;
    only rows with a bit set). A quarter's or year's count per dimension group = the
    accounts whose mask has a bit in its months; its other measures are the sums of its
    months' rows. An import rewrites only the bits of the months it touched (from the
    records of those months), where recomputing the distinct accounts of the touched
    quarter and year read all their records (the year 2026 whole at 1M accounts: 12.6 of
    the refresh's 44 s on PostgreSQL)."""

    measure: str
    table: str
    dated: Callable[[sa.Table], sa.ColumnElement]
    where: Callable[[sa.Table], sa.ColumnElement[bool]]


@dataclass(frozen=True, eq=False)
class MeasureSet:
    """One roll-up's measures: ``name`` (its table), ``records`` (the CRM table its records
    come from, grouped through their ``account_id``), ``counts`` and ``sums`` (the measure
    names, in the order ``expressions`` returns them), ``expressions(records)`` (labelled
    aggregates), ``dated(records)`` (the date a KPI counts a record by), ``where(records)``
    (which records count), ``day_dated`` (``dated`` is a DATE, not a timestamp), and
    ``date_columns``: the record columns ``dated`` draws from — a changed record touches the
    periods of those columns' old and new values (:mod:`kpis.rollups`' incremental refresh);
    with ``spans`` a record counts in every period from its first to its second column (a
    NULL end: every later period). ``statement`` replaces the plain grouping (see the module
    docstring). ``cut_by_end``: the KPI counts a period's records only before ``end`` (not
    so for activity measured at the period's own start and end). ``months_add_up``: a
    quarter's or year's measures are the sums of its months' (not so for distinct accounts).
    ``distinct``: a count of distinct accounts whose quarters and years the roll-up counts
    from its per-account months table, the other measures summed from the months
    (:class:`DistinctAccounts`; with ``months_add_up`` False).
    """

    name: str
    records: sa.Table
    counts: tuple[str, ...]
    sums: tuple[str, ...]
    expressions: Callable[[sa.Table], list[sa.ColumnElement]] | None = None
    dated: Callable[[sa.Table], sa.ColumnElement] | None = None
    where: Callable[[sa.Table], sa.ColumnElement[bool]] | None = None
    day_dated: bool = False
    date_columns: tuple[str, ...] = ()
    spans: bool = False
    statement: Statement | None = None
    cut_by_end: bool = True
    months_add_up: bool = True
    distinct: DistinctAccounts | None = None

    @property
    def measures(self) -> tuple[str, ...]:
        """Counts then sums."""
        return (*self.counts, *self.sums)

    @property
    def built_from_months(self) -> bool:
        """A quarter's and year's rows are built from its month rows (summed; a distinct
        count from the per-account months table), not from the records."""
        return self.months_add_up or self.distinct is not None

    def source(
        self, dialect: sa.Dialect, grain: str, periods: list[pd.Timestamp], by: tuple[str, ...]
    ) -> sa.Select:
        """The SELECT of ``period, *by, *measures`` for ``periods`` (consecutive periods of
        ``grain``): ``statement`` when declared, else the records grouped by the period of
        ``dated`` and the accounts columns ``by`` (records without an account, or whose
        account is missing, fall in the group whose ``by`` columns are all NULL)."""
        if self.statement is not None:
            return self.statement(dialect, grain, periods, by)
        if self.expressions is None or self.dated is None:
            raise ValueError(
                f"measure set {self.name} declares neither expressions and dated nor a statement"
            )
        table, accounts = self.records, schema.accounts
        dated = self.dated(table)
        period = period_key(dialect, dated, grain)
        dimensions = [accounts.c[column] for column in by]
        within = _within(dated, periods, grain, self.day_dated)
        where = [] if self.where is None else [self.where(table)]
        return (
            sa.select(period.label("period"), *dimensions, *self.expressions(table))
            .select_from(table.outerjoin(accounts, accounts.c.account_id == table.c.account_id))
            .where(dated.is_not(None), within, *where)
            .group_by(period, *dimensions)
        )


def _within(
    dated: sa.ColumnElement, periods: list[pd.Timestamp], grain: str, day_dated: bool
) -> sa.ColumnElement[bool]:
    """``first period start <= dated < last period end`` (DATE or timestamp comparison)."""
    bounds = Filters(periods[0].date(), period_end(periods[-1], grain).date())
    if day_dated:
        return sa.and_(dated >= bounds.start, dated < bounds.end)
    return sa.and_(dated >= bounds.start_ts, dated < bounds.end_ts)


# ---------------------------------------------------------------- customer base


def _customer_base_statement(
    dialect: sa.Dialect, grain: str, periods: list[pd.Timestamp], by: tuple[str, ...]
) -> sa.Select:
    """The activity at each period's start and end (:func:`kpis.activity._activity_statement`,
    over every subscription) per period label and ``by`` group."""
    keys = [p.year * 100 + p.month for p in periods]
    grid = period_grid([(p, period_end(p, grain)) for p in periods], keys=keys)
    return _activity_statement(_EVERYTHING, grid, by=by)


#: Active, new, churned and retained customers and their MRR (``kpis.customer_base``).
CUSTOMER_BASE = MeasureSet(
    "rollup_customer_base",
    schema.subscriptions,
    ACTIVITY_COUNTS,
    MRR_SUMS + MRR_SPREAD,
    date_columns=("started_at", "ended_at"),
    spans=True,
    statement=_customer_base_statement,
    cut_by_end=False,
    months_add_up=False,  # activity at a quarter's start and end is not the sum of its months'
)


# ---------------------------------------------------------------- retention costs


def is_retention_cost(costs: sa.Table) -> sa.ColumnElement[bool]:
    """The costs that are retention costs."""
    return costs.c.purpose == "retention"


def retention_cost_sums(costs: sa.Table) -> list[sa.ColumnElement]:
    """retention_costs = Σ amount, and one Σ amount per cost category, over ``costs`` rows."""
    return [
        sa.func.sum(costs.c.amount).label("retention_costs"),
        *(
            sa.func.sum(sa.case((costs.c.category == category, costs.c.amount), else_=ZERO)).label(category)
            for category in schema.COST_CATEGORIES
        ),
    ]


#: Retention costs, in all and per category, by incurred_on (``kpis.customer_base``).
RETENTION_COSTS = MeasureSet(
    "rollup_retention_costs",
    schema.costs,
    (),
    ("retention_costs", *schema.COST_CATEGORIES),
    retention_cost_sums,
    dated=lambda costs: costs.c.incurred_on,
    where=is_retention_cost,
    day_dated=True,
    date_columns=("incurred_on",),
)


# ---------------------------------------------------------------- revenue


def _revenue_statement(
    dialect: sa.Dialect, grain: str, periods: list[pd.Timestamp], by: tuple[str, ...]
) -> sa.Select:
    """:func:`kpis.revenue.revenue`'s sums in two steps: per (period, account) first —
    paying = 1 when the account has a positive payment in the period; revenue = Σ amount;
    gross_revenue = Σ positive amounts; refunds = Σ −amount of negative amounts — then per
    ``by`` group (a third of the time of counting distinct accounts per group)."""
    payments, accounts = schema.payments, schema.accounts
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
        .where(_within(payments.c.paid_at, periods, grain, day_dated=False))
        .group_by(period, payments.c.account_id)
        .subquery("per_account")
    )
    dimensions = [accounts.c[column] for column in by]
    return (
        sa.select(
            per_account.c.period,
            *dimensions,
            *(sa.func.sum(per_account.c[c]) for c in ("paying", "revenue", "gross_revenue", "refunds")),
        )
        .select_from(per_account.outerjoin(accounts, accounts.c.account_id == per_account.c.account_id))
        .group_by(per_account.c.period, *dimensions)
    )


#: Paying accounts, revenue, gross revenue and refunds by paid_at (``kpis.revenue``).
REVENUE = MeasureSet(
    "rollup_revenue",
    schema.payments,
    ("paying_accounts",),
    ("revenue", "gross_revenue", "refunds"),
    date_columns=("paid_at",),
    statement=_revenue_statement,
    months_add_up=False,  # an account paying in two months is one paying account of the quarter
    distinct=DistinctAccounts(
        "paying_accounts",
        "rollup_revenue_paying_months",
        dated=lambda payments: payments.c.paid_at,
        # as _revenue_statement's paying: a positive payment of a known account id
        where=lambda payments: sa.and_(payments.c.amount > 0, payments.c.account_id.is_not(None)),
    ),
)


# ---------------------------------------------------------------- survey scores


def survey_score_sums(table: sa.Table) -> list[sa.ColumnElement]:
    """:func:`kpis.feedback.survey_scores`' counts and sums over ``survey_responses`` rows,
    one column per survey and measure: nps_responses, promoters (NPS score ≥ 9), detractors
    (NPS score ≤ 6), ces_responses, easy (CES score ≥ :data:`CES_EASY_MIN`), total (Σ CES
    score), total_squares (Σ CES score²)."""
    nps, ces = table.c.survey == "nps", table.c.survey == "ces"
    score = sa.cast(table.c.score, sa.Double())

    def count(condition: sa.ColumnElement[bool], name: str) -> sa.ColumnElement:
        return sa.func.sum(sa.case((condition, 1), else_=0)).label(name)

    return [
        count(nps, "nps_responses"),
        count(sa.and_(nps, table.c.score >= 9), "promoters"),
        count(sa.and_(nps, table.c.score <= 6), "detractors"),
        count(ces, "ces_responses"),
        count(sa.and_(ces, table.c.score >= CES_EASY_MIN), "easy"),
        sa.func.sum(sa.case((ces, score))).label("total"),
        sa.func.sum(sa.case((ces, score * score))).label("total_squares"),
    ]


#: NPS and CES counts and score sums by responded_at (``kpis.feedback.survey_scores``).
SURVEY_SCORES = MeasureSet(
    "rollup_survey_scores",
    schema.survey_responses,
    ("nps_responses", "promoters", "detractors", "ces_responses", "easy"),
    ("total", "total_squares"),
    survey_score_sums,
    dated=lambda table: table.c.responded_at,
    where=lambda table: table.c.survey.in_(("nps", "ces")),
    date_columns=("responded_at",),
)


# ---------------------------------------------------------------- win rate


def win_rate_date(deals: sa.Table) -> sa.ColumnElement:
    """The date :func:`kpis.sales.win_rate` counts a deal by: created_at while open, else
    closed_at."""
    return sa.case((deals.c.status == "open", deals.c.created_at), else_=deals.c.closed_at)


def win_rate_sums(deals: sa.Table) -> list[sa.ColumnElement]:
    """won, lost and open_created = the number of ``deals`` rows of each status."""
    return [
        sa.func.sum(sa.case((deals.c.status == status, 1), else_=0)).label(name)
        for status, name in (("won", "won"), ("lost", "lost"), ("open", "open_created"))
    ]


#: Won, lost and open deals (``kpis.sales.win_rate``).
WIN_RATE = MeasureSet(
    "rollup_win_rate",
    schema.deals,
    ("won", "lost", "open_created"),
    (),
    win_rate_sums,
    dated=win_rate_date,
    where=lambda deals: deals.c.status.in_(("won", "lost", "open")),
    date_columns=("created_at", "closed_at"),
)


# ---------------------------------------------------------------- deals by created month

#: The statuses :func:`created_deal_sums` counts, in its column order.
DEAL_STATUSES: tuple[str, ...] = ("won", "lost", "open")


def created_deal_sums(deals: sa.Table) -> list[sa.ColumnElement]:
    """created = the number of ``deals`` rows; won, lost and open = those of each status
    (a deal of another status counts in created only)."""
    return [
        sa.func.count().label("created"),
        *(
            sa.func.sum(sa.case((deals.c.status == status, 1), else_=0)).label(status)
            for status in DEAL_STATUSES
        ),
    ]


#: Deals created, and of them won, lost and open now, by created_at
#: (``kpis.pipeline.lead_conversion`` and ``win_rate_by`` per account dimension). A deal's
#: status change touches its created month (``date_columns``: the old and new created_at).
CREATED_DEALS = MeasureSet(
    "rollup_created_deals",
    schema.deals,
    ("created", *DEAL_STATUSES),
    (),
    created_deal_sums,
    dated=lambda deals: deals.c.created_at,
    date_columns=("created_at",),
)


# ---------------------------------------------------------------- first-contact resolution


def fcr_sums(tickets: sa.Table) -> list[sa.ColumnElement]:
    """resolved = resolved ``tickets`` rows, first_contact = those with
    contacts_until_resolved = 1, recorded = those whose contact count is recorded."""
    return [
        sa.func.count().label("resolved"),
        sa.func.sum(sa.case((tickets.c.contacts_until_resolved == 1, 1), else_=0)).label("first_contact"),
        sa.func.count(tickets.c.contacts_until_resolved).label("recorded"),
    ]


#: Resolved tickets, those resolved at the first contact and those with a recorded contact
#: count, by resolved_at (``kpis.service``).
FIRST_CONTACT_RESOLUTION = MeasureSet(
    "rollup_first_contact_resolution",
    schema.tickets,
    ("resolved", "first_contact", "recorded"),
    (),
    fcr_sums,
    dated=lambda tickets: tickets.c.resolved_at,
    date_columns=("resolved_at",),
)

#: Every roll-up's measures (:mod:`kpis.rollups` builds one roll-up table per entry).
MEASURE_SETS: tuple[MeasureSet, ...] = (
    CUSTOMER_BASE,
    RETENTION_COSTS,
    REVENUE,
    SURVEY_SCORES,
    WIN_RATE,
    FIRST_CONTACT_RESOLUTION,
    CREATED_DEALS,
)

__all__ = [
    "CES_EASY_MIN",
    "CREATED_DEALS",
    "CUSTOMER_BASE",
    "DEAL_STATUSES",
    "FIRST_CONTACT_RESOLUTION",
    "MEASURE_SETS",
    "RETENTION_COSTS",
    "REVENUE",
    "SURVEY_SCORES",
    "WIN_RATE",
    "DistinctAccounts",
    "MeasureSet",
    "created_deal_sums",
    "fcr_sums",
    "is_retention_cost",
    "retention_cost_sums",
    "survey_score_sums",
    "win_rate_date",
    "win_rate_sums",
]
