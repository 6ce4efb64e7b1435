"""Why a KPI has nothing to show: one sentence a page can put in its empty state.

``funnel_empty_reason(conn, f)`` explains an empty pipeline funnel (``kpis.pipeline.funnel``),
checking in this order:

1. no funnel stages are configured (``pipeline_stages`` is empty, or holds only closed-lost
   stages);
2. the account-level filters (with the user's scope) select no account at all;
3. no deal was created in ``[start, end)`` (the account lists, owners, products and
   pipelines left out; the user's scope kept, so nothing outside it is counted);
4. deals were created in the range, none of them inside the filters;
5. deals inside the filters were created, none of them entered a funnel stage.

None when the funnel has something to show.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from crm_data import schema
from kpis.core import connection
from kpis.filters import ACCOUNT_DIMENSIONS, DIMENSION_FIELDS, Filters, account_ids, in_range, scope

Bind = sa.Connection | sa.Engine

#: Filters field -> how a sentence names it.
NAMES: dict[str, str] = {
    "segments": "segment",
    "industries": "industry",
    "regions": "region",
    "countries": "country",
    "company_sizes": "company size",
    "acquisition_channels": "acquisition channel",
    "owners": "owner",
    "products": "product",
    "pipelines": "pipeline",
}


def _days(f: Filters) -> str:
    last = f.end - dt.timedelta(days=1)
    return f"between {f.start:%d %b %Y} and {last:%d %b %Y}"


def no_account_reason(conn: Bind, f: Filters) -> str | None:
    """ "No account matches these filters together (segment, company size) …" when the
    account-level filters (with the user's scope) select no account; else None."""
    selected = account_ids(f)
    if selected is None:
        return None
    with connection(conn) as c:
        accounts = c.execute(sa.select(sa.func.count()).select_from(selected.subquery())).scalar_one()
    if accounts:
        return None
    chosen = [NAMES[n] for n in ACCOUNT_DIMENSIONS if getattr(f, n)]
    if len(chosen) > 1:
        what = "No account matches these filters together (" + ", ".join(chosen) + ")"
    elif chosen:
        what = f"No account has the chosen {chosen[0]}"
    else:
        what = "No account is inside your access scope"
    return f"{what}, so no deal can be counted: remove or change one in the sidebar."


def funnel_empty_reason(conn: Bind, f: Filters) -> str | None:
    """The reason the funnel of ``f`` is empty, as one sentence that says what to do; None
    when some deal created in the range (within the filters) entered a funnel stage."""
    deals, history, stages = schema.deals, schema.deal_stage_history, schema.pipeline_stages
    with connection(conn) as c:
        configured = c.execute(sa.select(stages.c.stage, stages.c.is_closed, stages.c.is_won)).fetchall()
        funnel_stages = [stage for stage, closed, won in configured if not closed or won]
        won_stages = [stage for stage, _closed, won in configured if won]
        if not funnel_stages:
            return (
                "No pipeline stages are configured, so there is no funnel to draw: import a "
                "pipeline_stages table (or, for HubSpot exports, give the stages with --stages)."
            )
        nobody = no_account_reason(c, f)
        if nobody:
            return nobody
        everywhere = Filters(f.start, f.end, scope=f.scope)  # the range alone, inside the scope
        created_in_range = c.execute(
            sa.select(sa.func.count()).where(
                in_range(deals.c.created_at, everywhere), *scope(everywhere, deals)
            )
        ).scalar_one()
        if not created_in_range:
            return f"No deals were created {_days(f)}: widen the date range in the sidebar."
        created = (
            sa.select(deals.c.deal_id, deals.c.status)
            .where(in_range(deals.c.created_at, f), *scope(f, deals))
            .subquery()
        )
        created_selected = c.execute(sa.select(sa.func.count()).select_from(created)).scalar_one()
        if not created_selected:
            chosen = [NAMES[n] for n in DIMENSION_FIELDS if getattr(f, n)]
            return (
                f"{created_in_range:,} deal{'s were' if created_in_range != 1 else ' was'} created "
                f"{_days(f)}, none of them for the chosen {', '.join(chosen) or 'filters'}: "
                "remove or change a filter in the sidebar."
            )
        entered = c.execute(
            sa.select(sa.func.count(sa.distinct(created.c.deal_id)))
            .select_from(created.join(history, history.c.deal_id == created.c.deal_id))
            .where(history.c.stage.in_(funnel_stages))
        ).scalar_one()
        won = c.execute(
            sa.select(sa.func.count()).select_from(created).where(created.c.status == "won")
        ).scalar_one()
        won = won if won_stages else 0  # a won deal enters the won stage, when there is one
        if not entered and not won:
            return (
                f"{created_selected:,} deal{'s were' if created_selected != 1 else ' was'} created "
                f"{_days(f)}, but none has entered a funnel stage (no stage history for them)."
            )
    return None
