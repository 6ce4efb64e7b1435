"""Drill-down: the records behind one point of a KPI chart, with names instead of ids.

``records_for(kind, conn, filters, freq=..., period=..., group=..., limit=...)`` returns a
:class:`Records`: at most ``limit`` rows (the limit is applied in SQL) and ``total``, the
number of records the KPI counts for that period / group. Each kind selects exactly the
rows its KPI counts — the same table, date column, ``kpis.filters.scope`` conditions and
period rule (a period ``p`` of ``freq`` holds the records dated in ``[p, end of p)`` and in
the filters' range ``[start, end)``) — so the drill-down's ``total`` equals the KPI's count:

=====================  ==========================================================  ==========================
kind                   records                                                     total equals
=====================  ==========================================================  ==========================
``win_rate``           won and lost deals by closed_at                             won + lost
``lead_conversion``    deals by created_at (every status)                          created
``win_rate_by``        deals created in the range, in ``group`` = (by, value)      created (won + lost: closed)
``sales_cycle``        won deals by closed_at, optionally in a cycle-days bin      deals (a bin: its deals)
``open_deals``         open deals in a stage, as of min(now, end)                  open_deals of the aging
``pipeline``           open deals (status open) in their current stage             open_deals (Σ amount)
``funnel``             deals created in the range that reached a funnel stage      reached_in_order / _any
``stage_visits``       deals created in the range with an observed visit to a stage  deals of stage_durations
``first_contact``      tickets by resolved_at                                      resolved
``tickets``            tickets by opened_at, in ``group`` = (by, value)            tickets
``nps``                NPS responses by responded_at (optionally one score)        responses
``ces``                CES responses by responded_at, ``group`` = touchpoint       responses
``complaints``         complaint tickets of a product in a week (Monday)           observed
``revenue``            payments by paid_at                                         payment rows (revenue = Σ)
``churn``              customers active at the period's start, churned flagged     customers_at_start
``new_customers``      customers active at the period's end and not at its start   new_customers
``churned``            customers active at the start and not at the end            churned
``mrr_retention``      customers active at the start, MRR at start and end         accounts_at_start
``churn_by``           customer-months of ``group`` = (by, value), churned flagged  customers_at_start
``cohort``             a signup-month cohort's accounts, retained at month k        customers (retained: Σ)
``campaign``           responses of one campaign                                   sent (without report figures)
``retention_cost``     retention costs by incurred_on (optionally one category)    Σ amount = retention_costs
``account_ledger``     one account's payments (+) and costs (−) in the range       Σ amount = profit
=====================  ==========================================================  ==========================

Rows name their account, owner, product and contact (``accounts.name``, ``users.name``,
``products.name``, ``contacts.name``); ids stay beside them only for the record itself
(``deal_id``, ``ticket_id`` …) so it can be found in the CRM. Plain Python, no Streamlit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crm_data import schema
from crm_data.dialects import days_between, not_materialized
from kpis.churn import CHURN_DIMENSIONS, NOT_SET, customer_flows
from kpis.complaints import COMPLAINT_CATEGORIES
from kpis.core import connection, naive_timestamps, period_end, period_starts
from kpis.customer_base import is_retention_cost
from kpis.feedback import CES_EASY_MIN
from kpis.filters import Filters, in_day_range, in_range, scope
from kpis.pipeline import (
    NO_STAGE,
    WIN_RATE_DIMENSIONS,
    _as_of,
    _created_deals,
    _literal_table,
    _open_at,
    _stages,
    current_stage,
)
from kpis.revenue import FOREVER
from kpis.service import BREAKDOWNS as TICKET_BREAKDOWNS

Bind = sa.Connection | sa.Engine

#: Rows returned at most unless the caller says otherwise.
DEFAULT_LIMIT = 500


@dataclass(frozen=True)
class Records:
    """``frame``: at most ``limit`` records; ``total``: how many the KPI counts (all of them)."""

    frame: pd.DataFrame
    total: int

    @property
    def complete(self) -> bool:
        """True when ``frame`` holds every record (the limit did not cut)."""
        return len(self.frame) >= self.total


# ---------------------------------------------------------------- shared pieces


def _window(column: ColumnElement, f: Filters, freq: str, period: object | None) -> list[ColumnElement[bool]]:
    """The KPI's date rule: in ``[start, end)``, and with ``period`` in ``[p, end of p)``."""
    conditions = [in_range(column, f)]
    if period is not None:
        start = pd.Timestamp(period)
        conditions += [column >= start.to_pydatetime(), column < period_end(start, freq).to_pydatetime()]
    return conditions


def _equals(column: ColumnElement, value: object) -> ColumnElement[bool]:
    """``column = value``; the "(not set)" group is ``column IS NULL`` (or the text itself)."""
    if value is None or value == NOT_SET:
        return sa.or_(column.is_(None), column == NOT_SET)
    return column == value


def _fetch(
    conn: Bind, statement: sa.Select, order_by: list, limit: int, times: tuple[str, ...] = ()
) -> Records:
    """Run ``statement`` twice: the count of all its rows, and its first ``limit`` rows in
    ``order_by`` order (both in SQL). ``times`` columns become naive UTC timestamps."""
    counted = sa.select(sa.func.count()).select_from(statement.order_by(None).subquery("counted"))
    with connection(conn) as c:
        total = int(c.execute(counted).scalar_one())
        result = c.execute(statement.order_by(*order_by).limit(int(limit)))
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    for column in times:
        if column in frame and len(frame):
            frame[column] = naive_timestamps(frame[column])
    return Records(frame, total)


def _names(table: sa.Table) -> tuple[sa.FromClause, list[ColumnElement]]:
    """``table`` outer-joined to its account (and the account's owner when ``table`` has no
    owner of its own), product and contact, and the name columns to select."""
    accounts, users, products, contacts = schema.accounts, schema.users, schema.products, schema.contacts
    source: sa.FromClause = table
    columns: list[ColumnElement] = []
    if "account_id" in table.c:
        source = source.outerjoin(accounts, accounts.c.account_id == table.c.account_id)
        columns.append(accounts.c.name.label("account"))
        columns.append(accounts.c.segment.label("segment"))
    owner = table.c.owner_id if "owner_id" in table.c else accounts.c.owner_id
    if "owner_id" in table.c or "account_id" in table.c:
        source = source.outerjoin(users, users.c.user_id == owner)
        columns.append(users.c.name.label("owner"))
    if "product_id" in table.c:
        source = source.outerjoin(products, products.c.product_id == table.c.product_id)
        columns.append(products.c.name.label("product"))
    if "contact_id" in table.c:
        source = source.outerjoin(contacts, contacts.c.contact_id == table.c.contact_id)
        columns.append(contacts.c.name.label("contact"))
    return source, columns


# ---------------------------------------------------------------- deals


def _deal_statement(dialect: sa.Dialect, conditions: list, source: sa.FromClause | None = None) -> sa.Select:
    deals = schema.deals
    joined, names = _names(deals)
    if source is not None:  # an account-dimension grouping joined the accounts already
        joined = source
    cycle = sa.case(
        (deals.c.status == "won", days_between(dialect, deals.c.created_at, deals.c.closed_at)),
        else_=sa.null(),
    )
    return (
        sa.select(
            deals.c.deal_id,
            deals.c.name.label("deal"),
            *names,
            deals.c.status,
            deals.c.amount,
            deals.c.created_at,
            deals.c.closed_at,
            cycle.label("cycle_days"),
            deals.c.lost_reason,
            deals.c.lead_source,
        )
        .select_from(joined)
        .where(*conditions)
    )


_DEAL_TIMES = ("created_at", "closed_at")


def win_rate_deals(
    conn: Bind, f: Filters, freq: str = "month", period: object | None = None, limit: int = DEFAULT_LIMIT
) -> Records:
    """The deals behind ``kpis.win_rate``: won and lost deals with closed_at in the period
    (open deals are not in the rate). total = won + lost; ``status`` says which."""
    deals = schema.deals
    conditions = [
        deals.c.status.in_(("won", "lost")),
        *_window(deals.c.closed_at, f, freq, period),
        *scope(f, deals),
    ]
    with connection(conn) as c:
        statement = _deal_statement(c.dialect, conditions)
        return _fetch(c, statement, [deals.c.closed_at.desc(), deals.c.deal_id], limit, _DEAL_TIMES)


def created_deals(
    conn: Bind,
    f: Filters,
    freq: str = "month",
    period: object | None = None,
    group: tuple[str, object] | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Records:
    """The deals behind ``kpis.lead_conversion`` (created_at in the period: total = created)
    and ``kpis.win_rate_by`` (``group`` = (by, value): created in the range with that value,
    "(not set)" = missing; total = created, its won + lost = the group's closed deals)."""
    deals, accounts = schema.deals, schema.accounts
    conditions = [*_window(deals.c.created_at, f, freq, period), *scope(f, deals)]
    if group is not None:
        by, value = group
        if by not in WIN_RATE_DIMENSIONS:
            raise ValueError(f"group by must be one of {sorted(WIN_RATE_DIMENSIONS)}, not {by!r}")
        table, column = WIN_RATE_DIMENSIONS[by]
        conditions.append(_equals(table.c[column], value))
        if table is accounts and value in (None, NOT_SET):
            conditions[-1] = sa.or_(conditions[-1], deals.c.account_id.is_(None))
    with connection(conn) as c:
        statement = _deal_statement(c.dialect, conditions)
        return _fetch(c, statement, [deals.c.created_at.desc(), deals.c.deal_id], limit, _DEAL_TIMES)


def cycle_deals(
    conn: Bind,
    f: Filters,
    freq: str = "month",
    period: object | None = None,
    days: tuple[float, float, bool] | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Records:
    """The won deals behind ``kpis.sales_cycle`` (closed_at in the range / period); with
    ``days`` = (start, end, last) only the cycles in one bin of
    ``kpis.sales_cycle_distribution``: start ≤ days < end (≤ end for the last bin)."""
    deals = schema.deals
    conditions = [deals.c.status == "won", *_window(deals.c.closed_at, f, freq, period), *scope(f, deals)]
    with connection(conn) as c:
        if days is not None:
            low, high, last = days
            cycle = days_between(c.dialect, deals.c.created_at, deals.c.closed_at)
            conditions.append(cycle >= sa.literal(float(low), sa.Double()))
            edge = sa.literal(float(high), sa.Double())
            conditions.append(cycle <= edge if last else cycle < edge)
        statement = _deal_statement(c.dialect, conditions)
        return _fetch(
            c, statement, [sa.literal_column("cycle_days").desc(), deals.c.deal_id], limit, _DEAL_TIMES
        )


def open_deals(
    conn: Bind,
    f: Filters,
    stage: str | None = None,
    now: dt.datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Records:
    """The open deals behind ``kpis.open_deal_aging`` in ``stage`` (None = every stage), as
    of min(now, end), longest in the stage first (``kpis.stuck_deals`` with no minimum age)."""
    deals = schema.deals
    with connection(conn) as c:
        aged = _open_at(c, f, _as_of(f, now))
        joined, names = _names(deals)
        conditions = [] if stage is None else [aged.c.stage == stage]
        statement = (
            sa.select(
                deals.c.deal_id,
                deals.c.name.label("deal"),
                *names,
                aged.c.stage,
                deals.c.amount,
                deals.c.created_at,
                aged.c.entered_at,
                aged.c.age.label("days_in_stage"),
            )
            .select_from(joined.join(aged, aged.c.deal_id == deals.c.deal_id))
            .where(*conditions)
        )
        return _fetch(c, statement, [aged.c.age.desc(), deals.c.deal_id], limit, ("created_at", "entered_at"))


def pipeline_deals(conn: Bind, f: Filters, stage: str | None = None, limit: int = DEFAULT_LIMIT) -> Records:
    """The open deals behind ``kpis.weighted_pipeline`` in ``stage`` (None = every stage):
    status open (the date range does not restrict them), current stage = latest entered
    (the KPI's tie rule), "(no stage)" without history; total = open_deals, Σ amount = amount
    (NULL = 0), ``weighted_amount`` = amount × the stage's probability. Largest first."""
    deals, stages = schema.deals, schema.pipeline_stages
    open_deals = (
        sa.select(deals.c.deal_id).where(deals.c.status == "open", *scope(f, deals)).cte("open_deals")
    )
    with connection(conn) as c:
        latest = current_stage(c, not_materialized(open_deals), None)
        current = sa.func.coalesce(latest.c.stage, NO_STAGE)
        amount = sa.func.coalesce(deals.c.amount, sa.literal(0.0, sa.Double()))
        joined, names = _names(deals)
        source = joined.join(latest, latest.c.deal_id == deals.c.deal_id)  # every open deal once
        source = source.outerjoin(stages, stages.c.stage == latest.c.stage)
        statement = (
            sa.select(
                deals.c.deal_id,
                deals.c.name.label("deal"),
                *names,
                current.label("stage"),
                amount.label("amount"),
                stages.c.probability,
                (amount * stages.c.probability).label("weighted_amount"),
                deals.c.created_at,
                latest.c.entered_at,
            )
            .select_from(source)
            .where(*([] if stage is None else [current == stage]))
        )
        return _fetch(c, statement, [amount.desc(), deals.c.deal_id], limit, ("created_at", "entered_at"))


def funnel_deals(
    conn: Bind, f: Filters, stage_counting: tuple[str, str], limit: int = DEFAULT_LIMIT
) -> Records:
    """The deals behind one stage of ``kpis.funnel``: ``stage_counting`` = (stage,
    "in_order" | "any"); deals created in the range that entered every funnel stage up to
    this one ("in_order") or this stage or a later one ("any") — the KPI's stages (closed-
    lost ones left out), its entries (history rows; a won deal enters the won stage) and
    its stage bits: with r the stage's rank and m the deal's mask, in order ⇔ m mod 2^r =
    2^r − 1, any ⇔ m ≥ 2^(r − 1). total = reached_in_order / reached_any."""
    stage, counting = stage_counting
    if counting not in ("in_order", "any"):
        raise ValueError(f"counting must be in_order or any, not {counting!r}")
    deals, history = schema.deals, schema.deal_stage_history
    with connection(conn) as c:
        stages = _stages(c)
        stages = stages[~(stages["is_closed"] & ~stages["is_won"])].reset_index(drop=True)
        names = [str(s) for s in stages["stage"]]
        if stage not in names:
            return Records(pd.DataFrame(), 0)
        rank = names.index(stage) + 1
        ranks = [
            (s, 1 << i, int(w))
            for i, (s, w) in enumerate(zip(stages["stage"], stages["is_won"], strict=True))
        ]
        grid = _literal_table(
            ranks, ["stage", "bit", "won"], [sa.String(), sa.BigInteger(), sa.Integer()], "fstages"
        )
        cohort = sa.select(deals.c.deal_id, deals.c.status).where(*_created_deals(f)).cte("cohort")
        entries = sa.union_all(
            sa.select(history.c.deal_id, grid.c.bit).select_from(
                history.join(cohort, cohort.c.deal_id == history.c.deal_id).join(
                    grid, grid.c.stage == history.c.stage
                )
            ),
            sa.select(cohort.c.deal_id, grid.c.bit)
            .select_from(cohort.join(grid, grid.c.won == 1))
            .where(cohort.c.status == "won"),
        ).cte("entries")
        per_deal = (
            sa.select(entries.c.deal_id, sa.func.sum(sa.distinct(entries.c.bit)).label("mask"))
            .group_by(entries.c.deal_id)
            .cte("per_deal")
        )
        mask = sa.cast(per_deal.c.mask, sa.BigInteger())
        if counting == "in_order":
            reached = mask % sa.literal(1 << rank, sa.BigInteger()) == sa.literal(
                (1 << rank) - 1, sa.BigInteger()
            )
        else:
            reached = mask >= sa.literal(1 << (rank - 1), sa.BigInteger())
        inner = sa.select(per_deal.c.deal_id).where(reached)
        statement = _deal_statement(c.dialect, [deals.c.deal_id.in_(inner)])
        return _fetch(c, statement, [deals.c.created_at.desc(), deals.c.deal_id], limit, _DEAL_TIMES)


def stage_visit_deals(
    conn: Bind, f: Filters, stage: str, now: dt.datetime | None = None, limit: int = DEFAULT_LIMIT
) -> Records:
    """The deals behind one row of ``kpis.stage_durations``: deals created in [start, end)
    (the filters' scope) with a visit to ``stage`` entered before C = min(end, now) — an
    observed visit; total = deals. ``visits`` = their observed visits to the stage,
    ``first_entered_at`` the first; ``status`` the deal's now. Latest first entry first."""
    deals, history = schema.deals, schema.deal_stage_history
    censor_at = min(f.end_ts, now or dt.datetime.now(dt.UTC).replace(tzinfo=None))
    created = sa.select(deals.c.deal_id).where(in_range(deals.c.created_at, f), *scope(f, deals))
    visits = (
        sa.select(
            history.c.deal_id,
            sa.func.count().label("visits"),
            sa.func.min(history.c.entered_at).label("first_entered_at"),
        )
        .where(
            history.c.stage == stage,
            history.c.entered_at < sa.literal(censor_at, sa.DateTime()),
            history.c.deal_id.in_(created),
        )
        .group_by(history.c.deal_id)
        .cte("stage_visits")
    )
    joined, names = _names(deals)
    statement = sa.select(
        deals.c.deal_id,
        deals.c.name.label("deal"),
        *names,
        deals.c.status,
        deals.c.amount,
        deals.c.created_at,
        visits.c.first_entered_at,
        visits.c.visits,
        deals.c.closed_at,
    ).select_from(joined.join(visits, visits.c.deal_id == deals.c.deal_id))
    order = [visits.c.first_entered_at.desc(), deals.c.deal_id]
    return _fetch(conn, statement, order, limit, ("created_at", "first_entered_at", "closed_at"))


# ---------------------------------------------------------------- tickets


def _ticket_statement(dialect: sa.Dialect, conditions: list) -> sa.Select:
    tickets = schema.tickets
    joined, names = _names(tickets)
    return (
        sa.select(
            tickets.c.ticket_id,
            *names,
            tickets.c.category,
            tickets.c.channel,
            tickets.c.priority,
            tickets.c.opened_at,
            tickets.c.resolved_at,
            tickets.c.contacts_until_resolved,
            sa.case((tickets.c.contacts_until_resolved == 1, True), else_=False).label("first_contact"),
            (days_between(dialect, tickets.c.opened_at, tickets.c.resolved_at) * 24.0).label(
                "hours_to_resolve"
            ),
        )
        .select_from(joined)
        .where(*conditions)
    )


_TICKET_TIMES = ("opened_at", "resolved_at")


def resolved_tickets(
    conn: Bind, f: Filters, freq: str = "month", period: object | None = None, limit: int = DEFAULT_LIMIT
) -> Records:
    """The tickets behind ``kpis.first_contact_resolution`` and ``kpis.resolution_times``:
    resolved_at in the period; total = resolved, ``first_contact`` flags the numerator."""
    tickets = schema.tickets
    conditions = [*_window(tickets.c.resolved_at, f, freq, period), *scope(f, tickets)]
    with connection(conn) as c:
        statement = _ticket_statement(c.dialect, conditions)
        return _fetch(c, statement, [tickets.c.resolved_at.desc(), tickets.c.ticket_id], limit, _TICKET_TIMES)


def opened_tickets(
    conn: Bind,
    f: Filters,
    freq: str = "month",
    period: object | None = None,
    group: tuple[str, object] | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Records:
    """The tickets behind ``kpis.ticket_breakdown``: opened_at in the period, ``group`` =
    (category | product | channel | priority, value) — a product by its name (else its id)
    as the breakdown shows it, "(not set)" = missing."""
    tickets, products = schema.tickets, schema.products.alias("named_product")
    conditions = [*_window(tickets.c.opened_at, f, freq, period), *scope(f, tickets)]
    if group is not None:
        by, value = group
        if by not in TICKET_BREAKDOWNS:
            raise ValueError(f"group by must be one of {TICKET_BREAKDOWNS}, not {by!r}")
        if by == "product":
            shown = sa.func.coalesce(
                sa.select(products.c.name)
                .where(products.c.product_id == tickets.c.product_id)
                .scalar_subquery(),
                tickets.c.product_id,
            )
            conditions.append(_equals(shown, value))
        else:
            conditions.append(_equals(tickets.c[by], value))
    with connection(conn) as c:
        statement = _ticket_statement(c.dialect, conditions)
        return _fetch(c, statement, [tickets.c.opened_at.desc(), tickets.c.ticket_id], limit, _TICKET_TIMES)


def complaint_tickets(
    conn: Bind, f: Filters, product_week: tuple[str, object], limit: int = DEFAULT_LIMIT
) -> Records:
    """The tickets behind one week of ``kpis.complaint_spikes``: ``product_week`` =
    (product_id, the week's Monday); category defect or complaint, opened_at in that week
    and before the range's end; total = observed."""
    tickets = schema.tickets
    product, week = product_week
    monday = pd.Timestamp(week)
    conditions = [
        tickets.c.category.in_(COMPLAINT_CATEGORIES),
        tickets.c.product_id == product,
        tickets.c.opened_at >= monday.to_pydatetime(),
        tickets.c.opened_at < (monday + pd.Timedelta(days=7)).to_pydatetime(),
        tickets.c.opened_at < f.end_ts,
        *scope(f, tickets),
    ]
    with connection(conn) as c:
        statement = _ticket_statement(c.dialect, conditions)
        return _fetch(c, statement, [tickets.c.opened_at.desc(), tickets.c.ticket_id], limit, _TICKET_TIMES)


# ---------------------------------------------------------------- survey responses


def responses(
    conn: Bind,
    f: Filters,
    survey: str,
    freq: str = "month",
    period: object | None = None,
    touchpoint: str | None = None,
    score: float | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Records:
    """The survey responses behind ``kpis.nps`` (``survey`` = "nps": total = responses,
    ``category`` = promoter 9–10 / passive 7–8 / detractor 0–6) and ``kpis.ces`` ("ces",
    optionally one ``touchpoint``, "(not set)" = missing; ``category`` = easy 5–7 or not),
    responded_at in the period; ``score`` = one bar of ``kpis.nps_score_distribution``."""
    table = schema.survey_responses
    conditions = [table.c.survey == survey, *_window(table.c.responded_at, f, freq, period), *scope(f, table)]
    if touchpoint is not None:
        conditions.append(_equals(table.c.touchpoint, touchpoint))
    if score is not None:
        conditions.append(table.c.score == float(score))
    if survey == "nps":
        category = sa.case(
            (table.c.score >= 9, "promoter"), (table.c.score <= 6, "detractor"), else_="passive"
        )
    else:
        category = sa.case((table.c.score >= CES_EASY_MIN, "easy"), else_="not easy")
    joined, names = _names(table)
    statement = (
        sa.select(
            table.c.response_id,
            *names,
            table.c.touchpoint,
            table.c.score,
            category.label("category"),
            table.c.comment,
            table.c.responded_at,
        )
        .select_from(joined)
        .where(*conditions)
    )
    return _fetch(
        conn, statement, [table.c.responded_at.desc(), table.c.response_id], limit, ("responded_at",)
    )


# ---------------------------------------------------------------- payments


def payments(
    conn: Bind, f: Filters, freq: str = "month", period: object | None = None, limit: int = DEFAULT_LIMIT
) -> Records:
    """The payments behind ``kpis.revenue``: paid_at in the period; revenue = Σ amount
    (refunds negative), gross_revenue = Σ positive amounts. Largest amounts first."""
    pay = schema.payments
    joined, names = _names(pay)
    statement = (
        sa.select(pay.c.payment_id, *names, pay.c.amount, pay.c.paid_at)
        .select_from(joined)
        .where(*_window(pay.c.paid_at, f, freq, period), *scope(f, pay))
    )
    return _fetch(conn, statement, [pay.c.amount.desc(), pay.c.payment_id], limit, ("paid_at",))


# ---------------------------------------------------------------- customers


def _mrr_at(instant: ColumnElement, f: Filters, name: str) -> sa.CTE:
    """Per account: Σ MRR (NULL = 0) of its scoped subscriptions active at ``instant``."""
    sub = schema.subscriptions
    active = sa.and_(sub.c.started_at <= instant, sa.or_(sub.c.ended_at.is_(None), sub.c.ended_at > instant))
    return (
        sa.select(
            sub.c.account_id,
            sa.func.sum(sa.func.coalesce(sub.c.mrr, sa.literal(0.0, sa.Double()))).label("mrr"),
        )
        .where(active, *scope(f, sub))
        .group_by(sub.c.account_id)
        .cte(name)
    )


def customers(
    conn: Bind,
    f: Filters,
    freq: str = "month",
    period: object | None = None,
    which: str = "at_start",
    limit: int = DEFAULT_LIMIT,
) -> Records:
    """Customers of one period ``[s, e)`` of ``kpis.customer_base`` (the rule of
    ``kpis.churn_rate``: active at t = a scoped subscription with started_at ≤ t < ended_at):

    * ``which`` = "at_start": active at s (total = customers_at_start = accounts_at_start),
      ``churned`` flags those not active at e (Σ = churned), churned first;
    * "churned": active at s and not at e (total = churned);
    * "new": active at e and not at s (total = new_customers).

    Each row has the account's MRR at s and at e (Σ mrr_at_start over "at_start" =
    mrr_at_start of ``kpis.revenue_retention``)."""
    if which not in ("at_start", "churned", "new"):
        raise ValueError(f"which must be at_start, churned or new, not {which!r}")
    if period is None:
        raise ValueError("customers needs the period")
    start = pd.Timestamp(period)
    at_start, at_end = customer_flows(f, [start], freq)
    s = sa.literal(start.to_pydatetime(), sa.DateTime())
    e = sa.literal(period_end(start, freq).to_pydatetime(), sa.DateTime())
    mrr_s, mrr_e = _mrr_at(s, f, "mrr_s"), _mrr_at(e, f, "mrr_e")
    accounts, users = schema.accounts, schema.users
    if which == "new":
        base = sa.select(at_end.c.account_id).except_(sa.select(at_start.c.account_id)).cte("chosen")
    else:
        base = sa.select(at_start.c.account_id).cte("chosen")
    ended = at_end.c.account_id.is_(None)
    source = (
        base.join(accounts, accounts.c.account_id == base.c.account_id)
        .outerjoin(at_end, at_end.c.account_id == base.c.account_id)
        .outerjoin(users, users.c.user_id == accounts.c.owner_id)
        .outerjoin(mrr_s, mrr_s.c.account_id == base.c.account_id)
        .outerjoin(mrr_e, mrr_e.c.account_id == base.c.account_id)
    )
    statement = sa.select(
        accounts.c.account_id,
        accounts.c.name.label("account"),
        accounts.c.segment,
        accounts.c.industry,
        accounts.c.region,
        accounts.c.country,
        users.c.name.label("owner"),
        sa.case((ended, True), else_=False).label("churned"),
        sa.func.coalesce(mrr_s.c.mrr, sa.literal(0.0, sa.Double())).label("mrr_at_start"),
        sa.func.coalesce(mrr_e.c.mrr, sa.literal(0.0, sa.Double())).label("mrr_at_end"),
    ).select_from(source)
    if which == "churned":
        statement = statement.where(ended)
    order = [sa.case((ended, 0), else_=1), accounts.c.name, accounts.c.account_id]
    return _fetch(conn, statement, order, limit)


def churn_by_customers(
    conn: Bind, f: Filters, group: tuple[str, object], limit: int = DEFAULT_LIMIT
) -> Records:
    """The customer-months behind one group of ``kpis.churn_by`` (``group`` = (by, value),
    "(not set)" = missing): a row per month of the range and account active at its start,
    ``churned`` when not active at its end. total = Σ customers_at_start, Σ churned = churned.
    Churned first, newest month first."""
    by, value = group
    if by not in CHURN_DIMENSIONS:
        raise ValueError(f"group by must be one of {sorted(CHURN_DIMENSIONS)}, not {by!r}")
    periods = period_starts(f.start, f.end, "month")
    if not periods:
        return Records(pd.DataFrame(), 0)
    at_start, at_end = customer_flows(f, periods, "month")
    accounts, users = schema.accounts, schema.users
    ended = at_end.c.account_id.is_(None)
    source = (
        at_start.join(accounts, accounts.c.account_id == at_start.c.account_id)
        .outerjoin(
            at_end,
            sa.and_(at_end.c.period == at_start.c.period, at_end.c.account_id == at_start.c.account_id),
        )
        .outerjoin(users, users.c.user_id == accounts.c.owner_id)
    )
    statement = (
        sa.select(
            at_start.c.period.label("month"),
            accounts.c.account_id,
            accounts.c.name.label("account"),
            accounts.c.segment,
            accounts.c.region,
            accounts.c.country,
            users.c.name.label("owner"),
            sa.case((ended, True), else_=False).label("churned"),
        )
        .select_from(source)
        .where(_equals(accounts.c[CHURN_DIMENSIONS[by]], value))
    )
    order = [sa.case((ended, 0), else_=1), at_start.c.period.desc(), accounts.c.name, accounts.c.account_id]
    return _fetch(conn, statement, order, limit, ("month",))


def cohort_customers(
    conn: Bind, f: Filters, cohort: object, months_since_start: int = 0, limit: int = DEFAULT_LIMIT
) -> Records:
    """The accounts of one signup-month cohort of ``kpis.cohort_retention`` (first scoped
    subscription start in that month; total = customers) with ``retained`` = active at the
    first instant of month cohort + k (Σ retained = retained; every account at k = 0)."""
    sub, accounts, users = schema.subscriptions, schema.accounts, schema.users
    first = pd.Timestamp(cohort)
    k = int(months_since_start)
    month_start = first.to_pydatetime()
    month_end = period_end(first, "month").to_pydatetime()
    firsts = (
        sa.select(sub.c.account_id, sa.func.min(sub.c.started_at).label("first_start"))
        .where(*scope(f, sub))
        .group_by(sub.c.account_id)
        .cte("firsts")
    )
    members = (
        sa.select(firsts.c.account_id, firsts.c.first_start)
        .where(firsts.c.first_start >= month_start, firsts.c.first_start < month_end)
        .cte("members")
    )
    instant = (first + pd.DateOffset(months=k)).to_pydatetime()
    still = (
        sa.select(sub.c.account_id)
        .where(
            sub.c.started_at <= instant,
            sa.func.coalesce(sub.c.ended_at, sa.literal(FOREVER, sa.DateTime())) > instant,
            *scope(f, sub),
        )
        .distinct()
        .cte("still")
    )
    retained = sa.true() if k == 0 else still.c.account_id.is_not(None)
    statement = sa.select(
        accounts.c.account_id,
        accounts.c.name.label("account"),
        accounts.c.segment,
        accounts.c.region,
        users.c.name.label("owner"),
        members.c.first_start.label("first_started_at"),
        sa.case((retained, True), else_=False).label("retained"),
    ).select_from(
        members.join(accounts, accounts.c.account_id == members.c.account_id)
        .outerjoin(still, still.c.account_id == members.c.account_id)
        .outerjoin(users, users.c.user_id == accounts.c.owner_id)
    )
    return _fetch(conn, statement, [accounts.c.name, accounts.c.account_id], limit, ("first_started_at",))


# ---------------------------------------------------------------- marketing and costs


#: The steps of a campaign funnel, in order (a response took a step when its timestamp is set).
CAMPAIGN_STEPS = ("sent", "opened", "clicked", "converted")


def campaign_responses(
    conn: Bind, f: Filters, campaign: str | tuple[str, str], limit: int = DEFAULT_LIMIT
) -> Records:
    """The responses of one campaign of ``kpis.campaign_funnel`` (scoped like its counts;
    total = responses), or with ``campaign`` = (campaign_id, step) only those that took the
    step (sent / opened / clicked / converted: the timestamp set; total = the funnel's count
    of the step — except where it shows the vendor report's figures, with no account filter)."""
    campaign_id, step = (campaign, None) if isinstance(campaign, str) else campaign
    if step is not None and step not in CAMPAIGN_STEPS:
        raise ValueError(f"step must be one of {CAMPAIGN_STEPS}, not {step!r}")
    table, campaigns = schema.campaign_responses, schema.campaigns
    joined, names = _names(table)
    statement = (
        sa.select(
            campaigns.c.name.label("campaign"),
            *names,
            table.c.sent_at,
            table.c.opened_at,
            table.c.clicked_at,
            table.c.converted_at,
        )
        .select_from(joined.join(campaigns, campaigns.c.campaign_id == table.c.campaign_id))
        .where(
            table.c.campaign_id == campaign_id,
            *scope(f, table),
            *([] if step is None else [table.c[f"{step}_at"].is_not(None)]),
        )
    )
    order = [
        table.c.converted_at.desc().nulls_last(),
        table.c.clicked_at.desc().nulls_last(),
        table.c.sent_at.desc().nulls_last(),
        table.c.account_id,
    ]
    return _fetch(conn, statement, order, limit, ("sent_at", "opened_at", "clicked_at", "converted_at"))


def retention_costs(
    conn: Bind,
    f: Filters,
    freq: str = "month",
    period: object | None = None,
    category: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Records:
    """The costs behind ``kpis.retention_cost``: purpose = retention, incurred_on in the
    period (optionally one ``category``); Σ amount = retention_costs (or that category's)."""
    costs = schema.costs
    conditions = [is_retention_cost(costs), in_day_range(costs.c.incurred_on, f), *scope(f, costs)]
    if period is not None:
        start = pd.Timestamp(period)
        conditions += [
            costs.c.incurred_on >= start.date(),
            costs.c.incurred_on < period_end(start, freq).date(),
        ]
    if category is not None:
        conditions.append(costs.c.category == category)
    joined, names = _names(costs)
    statement = (
        sa.select(costs.c.cost_id, *names, costs.c.category, costs.c.amount, costs.c.incurred_on)
        .select_from(joined)
        .where(*conditions)
    )
    return _fetch(conn, statement, [costs.c.amount.desc(), costs.c.cost_id], limit)


def account_ledger(conn: Bind, f: Filters, account_id: str, limit: int = DEFAULT_LIMIT) -> Records:
    """The payments and costs behind one account of ``kpis.customer_profitability``:
    payments by paid_at and costs carrying the account by incurred_on in [start, end), the
    account within the filters' segments / owners / products. ``amount`` is signed — a
    payment as paid (refunds negative), a cost negative — so Σ amount = profit; ``kind``
    says which, ``category`` a cost's. Newest first; at most ``limit`` of each (in SQL),
    total = payments + costs."""
    accounts, pay, costs = schema.accounts, schema.payments, schema.costs
    inside = sa.select(accounts.c.account_id).where(accounts.c.account_id == account_id, *scope(f, accounts))
    paid = sa.select(
        pay.c.payment_id.label("record_id"),
        sa.literal("payment").label("kind"),
        sa.null().label("category"),
        pay.c.amount,
        pay.c.paid_at.label("dated"),
    ).where(pay.c.account_id.in_(inside), in_range(pay.c.paid_at, f))
    spent = sa.select(
        costs.c.cost_id.label("record_id"),
        sa.literal("cost").label("kind"),
        costs.c.category,
        (-costs.c.amount).label("amount"),
        costs.c.incurred_on.label("dated"),
    ).where(costs.c.account_id.in_(inside), in_day_range(costs.c.incurred_on, f))
    first = _fetch(conn, paid, [pay.c.paid_at.desc(), pay.c.payment_id], limit, ("dated",))
    second = _fetch(conn, spent, [costs.c.incurred_on.desc(), costs.c.cost_id], limit)
    parts = [part.frame for part in (first, second) if len(part.frame)]
    frame = pd.concat(parts, ignore_index=True) if parts else first.frame
    if len(frame):
        frame["dated"] = pd.to_datetime(frame["dated"])
        frame = frame.sort_values(["dated", "record_id"], ascending=[False, True]).reset_index(drop=True)
    with connection(conn) as c:
        name = c.execute(sa.select(accounts.c.name).where(accounts.c.account_id == account_id)).scalar()
    frame.insert(0, "account", name)
    return Records(frame, first.total + second.total)


# ---------------------------------------------------------------- one entry point

#: kind -> function(conn, filters, freq, period, group, limit) (see the module docstring).
KINDS: dict[str, Callable[..., Records]] = {
    "win_rate": lambda c, f, freq, period, group, limit: win_rate_deals(c, f, freq, period, limit),
    "lead_conversion": lambda c, f, freq, period, group, limit: created_deals(
        c, f, freq, period, None, limit
    ),
    "win_rate_by": lambda c, f, freq, period, group, limit: created_deals(c, f, freq, None, group, limit),
    "sales_cycle": lambda c, f, freq, period, group, limit: cycle_deals(c, f, freq, period, group, limit),
    "open_deals": lambda c, f, freq, period, group, limit: open_deals(c, f, group, None, limit),
    "funnel": lambda c, f, freq, period, group, limit: funnel_deals(c, f, group, limit),
    "stage_visits": lambda c, f, freq, period, group, limit: stage_visit_deals(c, f, group, None, limit),
    "pipeline": lambda c, f, freq, period, group, limit: pipeline_deals(c, f, group, limit),
    "complaints": lambda c, f, freq, period, group, limit: complaint_tickets(c, f, group, limit),
    "account_ledger": lambda c, f, freq, period, group, limit: account_ledger(c, f, group, limit),
    "first_contact": lambda c, f, freq, period, group, limit: resolved_tickets(c, f, freq, period, limit),
    "tickets": lambda c, f, freq, period, group, limit: opened_tickets(c, f, freq, period, group, limit),
    "nps": lambda c, f, freq, period, group, limit: responses(
        c, f, "nps", freq, period, score=group, limit=limit
    ),
    "ces": lambda c, f, freq, period, group, limit: responses(c, f, "ces", freq, period, group, limit=limit),
    "revenue": lambda c, f, freq, period, group, limit: payments(c, f, freq, period, limit),
    "churn": lambda c, f, freq, period, group, limit: customers(c, f, freq, period, "at_start", limit),
    "mrr_retention": lambda c, f, freq, period, group, limit: customers(
        c, f, freq, period, "at_start", limit
    ),
    "churned": lambda c, f, freq, period, group, limit: customers(c, f, freq, period, "churned", limit),
    "new_customers": lambda c, f, freq, period, group, limit: customers(c, f, freq, period, "new", limit),
    "churn_by": lambda c, f, freq, period, group, limit: churn_by_customers(c, f, group, limit),
    "cohort": lambda c, f, freq, period, group, limit: cohort_customers(c, f, period, group or 0, limit),
    "campaign": lambda c, f, freq, period, group, limit: campaign_responses(c, f, group, limit),
    "retention_cost": lambda c, f, freq, period, group, limit: retention_costs(
        c, f, freq, period, group, limit
    ),
}


#: ``kpis.registry`` key -> the kind of its records (``records_for`` takes either).
KPI_KINDS: dict[str, str] = {
    "churn_rate": "churn",
    "nps": "nps",
    "ces": "ces",
    "win_rate": "win_rate",
    "sales_cycle": "sales_cycle",
    "stage_durations": "stage_visits",
    "first_contact_resolution": "first_contact",
    "retention_cost": "retention_cost",
    "revenue": "revenue",
    "active_customers": "new_customers",
    "net_revenue_retention": "mrr_retention",
    "revenue_churn": "mrr_retention",
    "lead_conversion": "lead_conversion",
    "funnel": "funnel",
    "weighted_pipeline": "pipeline",
    "cohort_retention": "cohort",
    "customer_profitability": "account_ledger",
    "campaign_funnel": "campaign",
    "complaint_spikes": "complaints",
}


def records_for(
    kind: str,
    conn: Bind,
    f: Filters,
    freq: str = "month",
    period: object | None = None,
    group: object | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Records:
    """The records behind one point of a KPI chart: ``kind`` (a key of :data:`KINDS`, or a
    ``kpis.registry`` key of :data:`KPI_KINDS`), the
    point's ``period`` (its first day, of ``freq``) and ``group`` (what the kind narrows by:
    ``(by, value)`` for a breakdown, a touchpoint, a score, a stage, a campaign id, a cost
    category, a cycle-days bin, months since start); at most ``limit`` rows, ``total`` all."""
    kind = kind if kind in KINDS else KPI_KINDS.get(kind, kind)
    if kind not in KINDS:
        raise ValueError(
            f"kind must be one of {sorted(KINDS)} or a KPI key of {sorted(KPI_KINDS)}, not {kind!r} "
            "(web and social figures are company-wide aggregates: no records behind them)"
        )
    if int(limit) < 1:
        raise ValueError(f"limit must be at least 1, not {limit!r}")
    return KINDS[kind](conn, f, freq, period, group, int(limit))


def drill(
    conn: Bind,
    f: Filters,
    kind: str,
    freq: str = "month",
    period: object | None = None,
    group: object | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Records:
    """:func:`records_for` with the connection and filters first, the signature of every
    KPI (``ui.data.kpi`` caches it like one)."""
    return records_for(kind, conn, f, freq, period, group, limit)
