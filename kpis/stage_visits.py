"""The deals' stage visits, stored: what :func:`kpis.sales.stage_durations`,
``forecasting.pipeline_forecast``'s learning and :func:`kpis.pipeline.funnel` read instead
of every deal's whole stage history on each call.

A *visit* is one row of ``deal_stage_history`` whose stage is an open stage of
``pipeline_stages``. Its end is the deal's next ``entered_at`` (any stage), or the deal's
``closed_at`` when it is the last visit of a won / lost deal, else NULL (still running);
*progressed* = the deal is won, or at or after entering the stage entered an open stage of
higher position; *first* / *last* = the deal's first / last visit to the stage (by
``entered_at``). The order of a deal's visits: by ``entered_at``, visits entered at the
same instant by the stage's key (position, stage; a stage missing from ``pipeline_stages``
first) — :func:`visit_window`, which the base-table path of ``stage_durations`` runs on the
deals of its filters, and :func:`history_window`, the same window over the history alone
(the deals' columns joined after it), which the stored table runs on every deal; so both
give the same visits.

Nothing here depends on the observation time ``C = min(end, now)`` nor on the filters:
``stage_durations`` selects the stored visits of the deals created in its range (and its
segments, owners, products, pipelines: the deal's columns are stored beside the visit, the
account-level lists go through ``accounts`` as on the base tables), then applies C — a
visit entered at or after C is not observed, one whose end is after C is censored — and
runs the same Kaplan–Meier. ``pipeline_forecast``'s learning selects the last visits of the
deals won or lost in its range (the deal's status and closed_at are stored beside the
visit too): per open stage, the learning deals through it, the won ones and the median
days from the last entry to closed_at — one aggregate over these rows, grouped by stage.
``funnel`` reads the first visits of the deals created in its range (the open funnel
stages each deal entered). :func:`kpis.pipeline.current_stage` (the open deals' current
stage of the weighted pipeline, the aging and the forecast) reads the visit running at its
instant (entered by then, ended after it or not at all); the deal rows (:data:`DEAL_STAGES`)
also carry an open deal's name and amount, so the weighted pipeline, the stuck deals and the
forecast's open deals read the deals open now without ``deals``. Neither holds a closed stage nor a stage missing from
``pipeline_stages``: their readers take those from the base tables. The accounts are not
stored: a change of an account's dimensions changes no visit.

The table (:data:`TABLE`, named ``rollup_stage_visits``: a derived table of
:mod:`crm_data.derived`, like the roll-ups) depends on ``deals``, ``deal_stage_history``
and ``pipeline_stages``. :func:`refresh` rebuilds it; :func:`update` (called by the
roll-ups' listener, :func:`kpis.rollups.on_tables_changed`) rewrites after an import only
the visits of the deals that the change may have altered: the deals with a history row
entered in the span of the new history rows (an old deal gaining a stage ends its last
visit and may progress its earlier ones), and the deals whose created_at and closed_at lie
in the spans of the changed deals' old and new values (a status change: a new end of the
last visit, won, the stored status and closed_at). Stage positions or an unknown change:
rebuilt whole. Read only when :func:`available` (built by this version — a table without
this version's columns is rebuilt by the next :func:`refresh` or :func:`update` —,
readable by the connecting role) and the roll-ups are on (``CRM_ROLLUPS`` not ``off``).
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Sequence

import sqlalchemy as sa

from crm_data import derived, hooks, schema
from crm_data.dialects import bit_or, lock_against_writers, may_select, refresh_work_mem

#: The derived table's name (:data:`crm_data.derived.PREFIX`).
NAME = "rollup_stage_visits"
#: The CRM tables the visits are computed from.
SOURCES: tuple[sa.Table, ...] = (schema.deals, schema.deal_stage_history, schema.pipeline_stages)
#: The deals' columns stored beside each visit: the dates ``stage_durations`` (created_at)
#: and ``forecasting.pipeline_forecast``'s learning (status, closed_at) select deals by,
#: and the columns of ``kpis.filters.scope`` (owners, products, pipelines, and the account
#: through which the account-level lists select).
DEAL_COLUMNS: tuple[str, ...] = (
    "created_at",
    "status",
    "closed_at",
    "account_id",
    "owner_id",
    "product_id",
    "pipeline",
)

metadata = sa.MetaData()

#: One row per visit to an open stage of every deal.
TABLE = sa.Table(
    NAME,
    metadata,
    sa.Column("deal_id", schema.deals.c.deal_id.type, nullable=False),
    # the stage's number in (position, stage) order: :func:`stage_keys`
    sa.Column("stage_key", sa.Integer(), nullable=False),
    sa.Column("entered_at", sa.DateTime(), nullable=False),
    # NULL: still running (no later visit, the deal neither won nor lost)
    sa.Column("ended_at", sa.DateTime()),
    # 1: won, or an open stage of higher position entered at or after this visit
    sa.Column("progressed", sa.SmallInteger(), nullable=False),
    # 1: the deal's first visit to the stage (by entered_at)
    sa.Column("first_visit", sa.SmallInteger(), nullable=False),
    # 1: the deal's last visit to the stage (by entered_at)
    sa.Column("last_visit", sa.SmallInteger(), nullable=False),
    *(sa.Column(name, schema.deals.c[name].type) for name in DEAL_COLUMNS),
    # the deal's account as :data:`ACCOUNT_KEYS`' integer (NULL: the deal has no account)
    sa.Column("account_key", sa.Integer()),
)
schema.row_store_index(TABLE, "created_at")
schema.row_store_index(TABLE, "deal_id")


def finished_span(table: sa.Table | sa.FromClause) -> sa.ColumnElement:
    """A finished visit's length, ``ended_at - entered_at`` (an interval; NULL while it
    runs): the key of :data:`SPANS_INDEX` (the expression must be spelled this way for
    PostgreSQL to match the index)."""
    return table.c.ended_at - table.c.entered_at


#: PostgreSQL only: the visits with an end in (stage_key, length) order, with the columns
#: ``stage_durations`` selects them by, so that its Kaplan–Meier counts the finished visits
#: between two censored lengths, and finds the one at a rank, by index-only range scans
#: instead of sorting every visit of its range (:func:`kpis.sales.stage_durations`; at
#: 100k accounts over three years 2.2 → 0.5 s of server CPU, docs/performance.md,
#: session 14). A finished visit's length does not depend on the observation time C (a
#: censored one's does: those are few and sorted).
SPANS_INDEX = schema.postgresql_index(
    "ix_rollup_stage_visits_stage_key_span",
    TABLE,
    "stage_key",
    finished_span(TABLE),
    include=("created_at", "entered_at", "ended_at"),
    where="ended_at IS NOT NULL",
)

#: The columns of :func:`kpis.filters.scope` on the stored tables (the account through
#: which the account-level lists select, and the deal's own owner, product, pipeline):
#: carried by the PostgreSQL-only indexes below, so that a filtered reader's scan stays
#: index-only.
SCOPE_COLUMNS: tuple[str, ...] = ("account_id", "owner_id", "product_id", "pipeline")

#: PostgreSQL only: the won deals' last visits (the rows ``forecasting.pipeline_forecast``'s
#: learning takes its per-stage median days to close from) by (stage_key, closed_at), with
#: entered_at and the scope columns: an index-only range scan of the learning range's rows
#: per stage, already in stage order, where the statement scanned every visit (at 100k
#: accounts 1.37M rows for 260k by default) and sorted the kept ones by stage
#: (docs/performance.md, session 15, branch ``pgm``).
WON_LAST_INDEX = schema.postgresql_index(
    "ix_rollup_stage_visits_won_last",
    TABLE,
    "stage_key",
    "closed_at",
    include=("entered_at", *SCOPE_COLUMNS),
    where="last_visit = 1 AND status = 'won'",
)

#: The deal table's name (:data:`crm_data.derived.PREFIX`).
DEALS_NAME = "rollup_deal_stages"
#: The stages of key 1..MASK_KEYS have a bit in :data:`DEAL_STAGES`' ``stages`` (a signed
#: 64-bit integer); a database with more stages does not read the bits (``kpis.pipeline``).
MASK_KEYS = 63

#: One row per deal: the stages it has a history row for, and its columns.
DEAL_STAGES = sa.Table(
    DEALS_NAME,
    metadata,
    sa.Column("deal_id", schema.deals.c.deal_id.type, nullable=False),
    # Σ 2^(stage_key − 1) over the distinct stages of pipeline_stages (key ≤ MASK_KEYS) the
    # deal has a deal_stage_history row for; 0: none
    sa.Column("stages", sa.BigInteger(), nullable=False),
    # an open deal's latest deal_stage_history row (:func:`latest_first`); NULL: none, or
    # the deal is not open
    sa.Column("stage", schema.deal_stage_history.c.stage.type),
    sa.Column("entered_at", sa.DateTime()),
    # an open deal's name and amount (NULL when the deal is not open: few rows hold a
    # name): the weighted pipeline and the stuck deals of ``kpis.pipeline`` read the deals
    # open now without scanning ``deals``
    sa.Column("name", schema.deals.c.name.type),
    sa.Column("amount", schema.deals.c.amount.type),
    *(sa.Column(name, schema.deals.c[name].type) for name in DEAL_COLUMNS),
    # the deal's account as :data:`ACCOUNT_KEYS`' integer (NULL: the deal has no account)
    sa.Column("account_key", sa.Integer()),
)
schema.row_store_index(DEAL_STAGES, "created_at")
schema.row_store_index(DEAL_STAGES, "deal_id")

#: PostgreSQL only: the deals open now (a few percent of the stored deal rows), with what
#: the weighted pipeline (``kpis.pipeline.weighted_pipeline``) and the pipeline forecast's
#: open deals (``forecasting.pipeline``) read of them: an index-only scan of these rows
#: instead of a scan of every deal's row; with ``deal_id``, also the stored rows that an
#: owner's or a product's open deals (selected on ``deals``) are joined to
#: (``kpis.pipeline.current_stage``) (docs/performance.md, session 15, branch ``pgm``).
OPEN_DEALS_INDEX = schema.postgresql_index(
    "ix_rollup_deal_stages_open",
    DEAL_STAGES,
    "stage",
    include=("deal_id", "entered_at", "created_at", "amount", *SCOPE_COLUMNS),
    where="status = 'open'",
)

#: The PostgreSQL-only indexes of :data:`TABLE` and :data:`DEAL_STAGES`: created with the
#: tables, and by the next refresh or update for tables built without them.
POSTGRESQL_INDEXES: tuple[sa.Index, ...] = (SPANS_INDEX, WON_LAST_INDEX, OPEN_DEALS_INDEX)

#: The account keys table's name (:data:`crm_data.derived.PREFIX`).
KEYS_NAME = "rollup_account_keys"

#: One integer per account id found on a deal, the ``account_key`` of the stored visits
#: and deal rows: on DuckDB ``kpis.filters.scope`` selects their accounts by these integers —
#: ``account_key IN (SELECT account_key FROM rollup_account_keys JOIN accounts USING
#: (account_id) WHERE <account-level lists>)`` — instead of probing every selected row's
#: text ``account_id`` (DuckDB decodes the text of each scanned vector: at 1M accounts the
#: account list's semi-join cost 0.1–0.2 s of CPU per statement, the integers' ≈ 0.02 s;
#: docs/performance.md, session 15; PostgreSQL and SQLite keep the text semi-join:
#: ``crm_data.dialects.selects_accounts_by_key``). A key stands for one account id for
#: good: an id gets its key the first time a written deal carries it (:func:`_insert`), a
#: rebuild keeps the keys it finds, nothing deletes one. The accounts' dimensions are not stored: the
#: statement joins ``accounts`` for them, so a change of an account changes no key and no
#: row, and an id without an ``accounts`` row is selected by no account-level list, as on
#: the base tables.
ACCOUNT_KEYS = sa.Table(
    KEYS_NAME,
    metadata,
    sa.Column("account_id", schema.deals.c.account_id.type, nullable=False),
    sa.Column("account_key", sa.Integer(), nullable=False),
)
schema.row_store_index(ACCOUNT_KEYS, "account_id")
#: The tables written together under the state of :data:`NAME`; a rebuild empties the
#: first two (:data:`ACCOUNT_KEYS` keeps its keys).
TABLES: tuple[sa.Table, ...] = (TABLE, DEAL_STAGES, ACCOUNT_KEYS)


def stage_keys() -> sa.CTE:
    """``pipeline_stages`` numbered 1, 2, … by (position, stage): the visits are grouped,
    sorted and joined by this integer, not by the stage's name (a text sort key costs a
    collation-aware comparison per pair on PostgreSQL — most pairs tie on the stage —, and
    a string per row of DuckDB's windows and hash tables). Ordering the known stages by
    the key is ordering them by (position, stage)."""
    stages = schema.pipeline_stages
    return sa.select(
        stages.c.stage,
        stages.c.position,
        stages.c.is_closed,
        sa.func.row_number().over(order_by=[stages.c.position, stages.c.stage]).label("stage_key"),
    ).cte("stage_keys")


def _history_columns(keys: sa.CTE) -> list[sa.ColumnElement]:
    """The columns :func:`visit_window` and :func:`history_window` read of
    ``deal_stage_history`` joined to ``keys``: deal_id, entered_at, stage_key, position,
    known_stage (NULL: not in ``pipeline_stages``), is_closed, and two window columns,
    ``later_position`` (the highest position of an open stage among this row and the ones
    after it) and ``next_entered``. ``known_stage`` and ``is_closed`` are the stage's own
    columns, not a CASE of them: the visits' filter is on the window's output, and
    PostgreSQL estimates a filter on an expression there at 0.5 % of the rows (≈ 7k of 1.1M
    visits at M), on columns from their statistics.

    One ordering of a deal's visits for both (one sort, not two): by entered_at, then the
    stage's key — (position, stage) of a known stage; an unknown stage (no pipeline_stages
    row: NULL key) first among visits entered at the same instant, on every database
    (SQLite sorts NULL first by default, DuckDB and PostgreSQL last). Unknown stages at one
    instant tie with each other, but they are no visits of their own, and the rows before
    and after a known visit (which no other row ties with: (deal, stage, entered_at) is the
    history's key) do not depend on their order, so neither do its next_entered and
    later_position. Visits entered at the same instant but ordered before a visit have a
    position ≤ its own (or none: not an open stage), so "progressed" (later_position >
    position) is the same as over every visit entered at or after it, peers included."""
    history = schema.deal_stage_history
    visit_order = {
        "partition_by": history.c.deal_id,
        "order_by": [history.c.entered_at, keys.c.stage_key.asc().nulls_first()],
    }
    is_open_stage = keys.c.is_closed.is_not(sa.true())
    return [
        history.c.deal_id,
        history.c.entered_at,
        keys.c.stage_key,
        keys.c.position,
        keys.c.stage.label("known_stage"),
        keys.c.is_closed,
        sa.func.max(sa.case((is_open_stage, keys.c.position)))
        .over(**visit_order, rows=(0, None))
        .label("later_position"),
        sa.func.lead(history.c.entered_at).over(**visit_order).label("next_entered"),
    ]


def visit_window(deals: sa.CTE, keys: sa.CTE, carried: Sequence[str] = ()) -> sa.CTE:
    """Every history row of the deals of ``deals`` (a CTE of ``deal_id``, ``won`` — the
    deal is won —, ``closed_end`` — its closed_at when won or lost, else NULL —, and the
    ``carried`` columns) in one window per deal: deal_id, entered_at, stage_key, position,
    known_stage (NULL: not in ``pipeline_stages``), is_closed, later_position (the
    highest position of an open stage among this row and the ones after it),
    next_entered (:func:`_history_columns`), won, closed_end, then ``carried``."""
    history = schema.deal_stage_history
    return (
        sa.select(
            *_history_columns(keys),
            deals.c.won,
            deals.c.closed_end,
            *(deals.c[name] for name in carried),
        )
        .select_from(
            history.join(deals, deals.c.deal_id == history.c.deal_id).outerjoin(
                keys, keys.c.stage == history.c.stage
            )
        )
        .cte("all_visits")
    )


def visit_deals(where: Sequence[sa.ColumnElement[bool]], carried: Sequence[str] = ()) -> sa.CTE:
    """The deals of :func:`visit_window` selected by ``where`` (conditions on ``deals``):
    deal_id, won, closed_end, then the ``carried`` columns of ``deals``."""
    deals = schema.deals
    return (
        sa.select(
            deals.c.deal_id,
            (deals.c.status == "won").label("won"),
            # when a won / lost deal's last visit ends (NULL: the deal is still open)
            sa.case((deals.c.status.in_(("won", "lost")), deals.c.closed_at), else_=sa.null()).label(
                "closed_end"
            ),
            *(deals.c[name] for name in carried),
        )
        .where(*where)
        .cte("window_deals")
    )


def is_visit(window: sa.CTE) -> sa.ColumnElement[bool]:
    """A row of :func:`visit_window` that is a visit: a known stage that is open."""
    return sa.and_(window.c.known_stage.is_not(None), window.c.is_closed.is_not(sa.true()))


def progressed(window: sa.CTE) -> sa.ColumnElement[int]:
    """1 when the visit's deal is won or entered an open stage of higher position at or
    after it, else 0."""
    v = window.c
    return sa.case((sa.or_(v.won, v.later_position > v.position), 1), else_=0)


def ended_at(window: sa.CTE) -> sa.ColumnElement:
    """When the visit ends: the deal's next entered_at, else its closed_at when won or
    lost, else NULL."""
    return sa.func.coalesce(window.c.next_entered, window.c.closed_end)


def history_window(keys: sa.CTE, where: Sequence[sa.ColumnElement[bool]] = ()) -> sa.CTE:
    """The window of :func:`visit_window` over ``deal_stage_history`` alone (the rows
    ``where`` selects, conditions on the history): deal_id, entered_at, stage_key,
    position, known_stage, is_closed, later_position and next_entered — the same values,
    by the same ordering, without the deals' columns. A deal's window reads only its own
    rows, so joining ``deals`` after it (:func:`_rows`) gives :func:`visit_window`'s rows
    of those deals; the windows' sorts then carry five narrow columns instead of the
    deals' text columns as well (DuckDB at 1M accounts: the stored visits' build ≈ 25 %
    less CPU, docs/performance.md, session 15)."""
    history = schema.deal_stage_history
    return (
        sa.select(*_history_columns(keys))
        .select_from(history.outerjoin(keys, keys.c.stage == history.c.stage))
        .where(*where)
        .cte("history_visits")
    )


def _rows(deals_where: Sequence[sa.ColumnElement[bool]]) -> sa.Select:
    """The stored rows (:data:`TABLE`'s columns) of the deals ``deals_where`` selects.

    :func:`visit_window`'s visits, computed as :func:`history_window` over the history of
    those deals (every deal's when ``deals_where`` is empty), with the first / last flags
    of a second window; the deals' columns, ``won`` and ``closed_end`` (:func:`visit_deals`)
    are joined to the visits afterwards (an inner join, as :func:`visit_window`'s: history
    rows of a deal missing from ``deals`` give no visit)."""
    history = schema.deal_stage_history
    deals = visit_deals(deals_where, DEAL_COLUMNS)
    chosen = (
        [history.c.deal_id.in_(sa.select(schema.deals.c.deal_id).where(*deals_where))] if deals_where else []
    )
    window = history_window(stage_keys(), chosen)
    w = window.c
    # one window (one sort) for both flags: (deal, stage, entered_at) is the history's key,
    # so a deal's visits to a stage never tie on entered_at
    per_stage = {"partition_by": [w.deal_id, w.stage_key], "order_by": w.entered_at}
    first = sa.func.row_number().over(**per_stage) == 1
    last = sa.func.lead(w.entered_at).over(**per_stage).is_(None)
    visits = (
        sa.select(
            w.deal_id,
            w.stage_key,
            w.entered_at,
            w.next_entered,
            w.position,
            w.later_position,
            sa.case((first, 1), else_=0).label("first_visit"),
            sa.case((last, 1), else_=0).label("last_visit"),
        )
        .where(is_visit(window))
        .subquery("visits")
    )
    v, d = visits.c, deals.c
    return sa.select(
        v.deal_id,
        v.stage_key,
        v.entered_at,
        sa.func.coalesce(v.next_entered, d.closed_end).label("ended_at"),
        sa.case((sa.or_(d.won, v.later_position > v.position), 1), else_=0).label("progressed"),
        v.first_visit,
        v.last_visit,
        *(d[name] for name in DEAL_COLUMNS),
    ).select_from(visits.join(deals, deals.c.deal_id == v.deal_id))


def latest_first() -> list[sa.ColumnElement]:
    """The order that puts a deal's latest ``deal_stage_history`` row first (the history
    joined on the left to ``pipeline_stages``): by entered_at, then the higher stage
    position — a stage missing from pipeline_stages (NULL position) below every known
    one —, then the stage's name, all descending."""
    history, stages = schema.deal_stage_history, schema.pipeline_stages
    return [
        history.c.entered_at.desc(),
        stages.c.position.desc().nulls_last(),  # explicit: databases differ on NULLs by default
        history.c.stage.desc(),
    ]


def _deal_rows(dialect: sa.Dialect, deals_where: Sequence[sa.ColumnElement[bool]]) -> sa.Select:
    """The rows of :data:`DEAL_STAGES` of the deals ``deals_where`` selects."""
    deals, history, stages, keys = (
        schema.deals,
        schema.deal_stage_history,
        schema.pipeline_stages,
        stage_keys(),
    )
    chosen = [history.c.deal_id.in_(sa.select(deals.c.deal_id).where(*deals_where))] if deals_where else []
    bit = sa.literal(1, sa.BigInteger()).op("<<")(sa.cast(keys.c.stage_key - 1, sa.Integer()))
    # the OR of the bits of a deal's rows (5× faster than the sum of the distinct bits on
    # DuckDB; SQLite has no bit_or)
    ored = bit_or(dialect, bit)
    entered = (
        sa.select(
            history.c.deal_id, (sa.func.sum(sa.distinct(bit)) if ored is None else ored).label("stages")
        )
        .select_from(history.join(keys, keys.c.stage == history.c.stage))
        .where(keys.c.stage_key <= MASK_KEYS, *chosen)
        .group_by(history.c.deal_id)
        .subquery("entered")
    )
    # the latest row of the open deals only (the one reader, kpis.pipeline.current_stage,
    # reads the rows of the deals open now): one window over ≈ 5 % of the history
    still_open = history.c.deal_id.in_(
        sa.select(deals.c.deal_id).where(deals.c.status == "open", *deals_where)
    )
    ranked = (
        sa.select(
            history.c.deal_id,
            history.c.stage,
            history.c.entered_at,
            sa.func.row_number().over(partition_by=history.c.deal_id, order_by=latest_first()).label("rn"),
        )
        .select_from(history.outerjoin(stages, stages.c.stage == history.c.stage))
        .where(still_open)
        .subquery("ranked")
    )
    latest = (
        sa.select(ranked.c.deal_id, ranked.c.stage, ranked.c.entered_at).where(ranked.c.rn == 1).subquery()
    )
    return (
        sa.select(
            deals.c.deal_id,
            sa.cast(sa.func.coalesce(entered.c.stages, 0), sa.BigInteger()).label("stages"),
            latest.c.stage,
            latest.c.entered_at,
            sa.case((deals.c.status == "open", deals.c.name)).label("name"),
            sa.case((deals.c.status == "open", deals.c.amount)).label("amount"),
            *(deals.c[name] for name in DEAL_COLUMNS),
        )
        .select_from(
            deals.outerjoin(entered, entered.c.deal_id == deals.c.deal_id).outerjoin(
                latest, latest.c.deal_id == deals.c.deal_id
            )
        )
        .where(*deals_where)
    )


def _add_keys(conn: sa.Connection, deals_where: Sequence[sa.ColumnElement[bool]]) -> None:
    """Give each account id of the deals ``deals_where`` selects that has no key in
    :data:`ACCOUNT_KEYS` the next free keys: (the largest key, or 0) + 1, 2, … in
    account id order. Concurrent writers wait for each other
    (:func:`crm_data.dialects.lock_against_writers`): two imports never number two ids
    alike."""
    deals, keys = schema.deals, ACCOUNT_KEYS
    lock_against_writers(conn, keys)
    new_ids = (
        sa.select(deals.c.account_id)
        .where(
            *deals_where,
            deals.c.account_id.is_not(None),
            deals.c.account_id.not_in(sa.select(keys.c.account_id)),
        )
        .distinct()
        .subquery("new_ids")
    )
    largest = sa.select(sa.func.coalesce(sa.func.max(keys.c.account_key), 0)).scalar_subquery()
    numbered = sa.select(
        new_ids.c.account_id,
        sa.cast(largest + sa.func.row_number().over(order_by=new_ids.c.account_id), sa.Integer()),
    )
    conn.execute(keys.insert().from_select(["account_id", "account_key"], numbered))


def _insert(conn: sa.Connection, deals_where: Sequence[sa.ColumnElement[bool]]) -> int | None:
    """INSERT ... SELECT the visits and the deal rows (:data:`DEAL_STAGES`) of the deals
    ``deals_where`` selects, each with its account's key (:func:`_add_keys` first); the
    visits written."""
    _add_keys(conn, deals_where)
    keys = ACCOUNT_KEYS
    written = None
    for table, rows in ((DEAL_STAGES, _deal_rows(conn.dialect, deals_where)), (TABLE, _rows(deals_where))):
        computed = rows.subquery("rows")
        rows = sa.select(*computed.c, keys.c.account_key).select_from(
            computed.outerjoin(keys, keys.c.account_id == computed.c.account_id)
        )
        if conn.dialect.name == "duckdb":
            # in created_at order: DuckDB's zone maps then skip the row groups of deals
            # created outside a range (row stores have the index on created_at)
            rows = rows.order_by(computed.c.created_at)
        written = derived.written(conn.execute(table.insert().from_select([c.name for c in table.c], rows)))
    return written


def _sources_present(conn: sa.Connection) -> bool:
    """Every CRM table the visits are computed from exists."""
    inspector = sa.inspect(conn)
    return all(inspector.has_table(t.name) for t in SOURCES)


def _record(conn: sa.Connection, rows: int | None) -> int:
    """Record the table as built (:func:`crm_data.derived.record`): the months of the
    deals' created_at it covers (0 without deals), its rows (counted when ``rows`` is
    None), the rows of its sources now."""
    if rows is None:
        rows = conn.execute(sa.select(sa.func.count()).select_from(TABLE)).scalar_one()
    deals = schema.deals
    first, last = conn.execute(
        sa.select(sa.func.min(deals.c.created_at), sa.func.max(deals.c.created_at))
    ).one()
    label = lambda value: 0 if value is None else int(str(value)[:4]) * 100 + int(str(value)[5:7])  # noqa: E731
    counted = derived.table_rows(conn, SOURCES)
    derived.record(conn, NAME, counted.keys(), label(first), label(last), rows, sum(counted.values()))
    return rows


def refresh(conn: sa.Connection) -> int:
    """Rebuild the stored visits of every deal, in the caller's transaction (creating the
    table when missing, again when built by a version with other columns); the rows
    written. Nothing (and its state removed) when a source table is missing."""
    with refresh_work_mem(conn):
        return _refresh(conn)


def _refresh(conn: sa.Connection) -> int:
    """:func:`refresh`, inside :func:`crm_data.dialects.refresh_work_mem`."""
    if not _sources_present(conn):
        derived.forget(conn, NAME)
        return 0
    for table in TABLES:
        if derived.lacks_columns(conn, table):
            table.drop(conn)
        table.create(conn, checkfirst=True)
    _create_missing_indexes(conn)
    derived.forget(conn, NAME)
    for table in (TABLE, DEAL_STAGES):  # the account keys are kept
        conn.execute(table.delete())
    rows = _insert(conn, ())
    _analyze(conn)
    _KNOWN.clear()
    return _record(conn, rows)


def _create_missing_indexes(conn: sa.Connection) -> None:
    """Create each of :data:`POSTGRESQL_INDEXES` on PostgreSQL that its table lacks (built by
    a version without it; ``table.create`` makes them with a new table)."""
    if conn.dialect.name != "postgresql":
        return
    for index in POSTGRESQL_INDEXES:
        if not _has_index(conn, str(index.name)):
            index.create(conn)
            if index is SPANS_INDEX:
                _SPANS_INDEXED.pop(conn.engine, None)


def _has_index(conn: sa.Connection, name: str) -> bool:
    """The PostgreSQL relation ``name`` exists in the connection's schema search path."""
    return conn.execute(sa.select(sa.func.to_regclass(name))).scalar() is not None


def _analyze(conn: sa.Connection) -> None:
    """ANALYZE the tables on PostgreSQL (their statistics for the readers' plans)."""
    if conn.dialect.name == "postgresql":
        for table in TABLES:
            conn.execute(sa.text(f'ANALYZE "{table.name}"'))


def _instants(span: hooks.DateSpan) -> tuple[dt.datetime, dt.datetime] | None:
    """``[first day 00:00, the day after the last)`` of a span, None when it has no date."""
    if span.first is None or span.last is None:
        return None
    return (
        dt.datetime.combine(span.first, dt.time()),
        dt.datetime.combine(span.last + dt.timedelta(days=1), dt.time()),
    )


def changed_deals(change: hooks.Change) -> sa.ColumnElement[bool] | None:
    """A condition on ``deals`` that holds for every deal whose visits ``change`` may have
    altered (a superset), ``sa.false()`` when none; None when unknown (rebuild whole).

    * ``deal_stage_history`` rows added (the table has no column outside its key, so a
      known change adds rows): the deals with a row entered in the span of the changed rows'
      entered_at — the new rows' deals among them, old deals too.
    * ``deals`` inserted or updated: the deals whose created_at lies in the span of the
      changed rows' old and new created_at and whose closed_at lies in that of their
      closed_at (or is NULL, when a changed row's old or new closed_at was): every changed
      deal, whatever else changed in it (status, owner, product, account, pipeline).
    * ``pipeline_stages`` (positions, open or closed) or an unknown change: None."""
    deals, history = schema.deals, schema.deal_stage_history
    if schema.pipeline_stages.name in change.tables:
        return None
    found: list[sa.ColumnElement[bool]] = []
    rows = change.tables.get(history.name)
    if rows is not None:
        if not rows.known or "entered_at" not in rows.dates:
            return None
        span = _instants(rows.dates["entered_at"])
        if span is not None:
            entered = history.c.entered_at
            found.append(
                deals.c.deal_id.in_(sa.select(history.c.deal_id).where(entered >= span[0], entered < span[1]))
            )
    rows = change.tables.get(deals.name)
    if rows is not None:
        if not rows.known or not {"created_at", "closed_at"} <= set(rows.dates):
            return None
        created, closed = _instants(rows.dates["created_at"]), rows.dates["closed_at"]
        closing = []
        if _instants(closed) is not None:
            low, high = _instants(closed)  # type: ignore[misc]
            closing.append(sa.and_(deals.c.closed_at >= low, deals.c.closed_at < high))
        if closed.has_null:
            closing.append(deals.c.closed_at.is_(None))
        if created is not None and closing:
            found.append(
                sa.and_(deals.c.created_at >= created[0], deals.c.created_at < created[1], sa.or_(*closing))
            )
    return sa.or_(*found) if found else sa.false()


def update(conn: sa.Connection, change: hooks.Change) -> list[str]:
    """Bring the stored visits up to date after ``change`` (:mod:`crm_data.hooks`), in the
    writer's transaction; return ``[NAME]`` (current afterwards), or ``[]`` when a source
    table is missing.

    Never built (or by a version with other columns, or without :data:`DEAL_STAGES`), or a
    change :func:`changed_deals` cannot bound: rebuilt whole. Not touching its sources:
    left alone. Otherwise the visits and deal rows of the deals :func:`changed_deals` names
    are deleted and computed again from their whole history."""
    with refresh_work_mem(conn):
        return _update(conn, change)


def _update(conn: sa.Connection, change: hooks.Change) -> list[str]:
    """:func:`update`, inside :func:`crm_data.dialects.refresh_work_mem`."""
    if not _sources_present(conn):
        derived.forget(conn, NAME)
        return []
    state = (
        conn.execute(sa.select(derived.state.c.rows).where(derived.state.c.rollup == NAME)).first()
        if derived.has_state(conn)
        else None
    )
    present = derived.table_names(conn)
    if state is None or any(
        table.name not in present or derived.lacks_columns(conn, table, present) for table in TABLES
    ):
        _refresh(conn)
        return [NAME]
    _create_missing_indexes(conn)
    if not change.names & {t.name for t in SOURCES}:
        return [NAME]
    deals = changed_deals(change)
    if deals is None:
        _refresh(conn)
        return [NAME]
    chosen = sa.select(schema.deals.c.deal_id).where(deals)
    conn.execute(DEAL_STAGES.delete().where(DEAL_STAGES.c.deal_id.in_(chosen)))
    gone = derived.written(conn.execute(TABLE.delete().where(TABLE.c.deal_id.in_(chosen))))
    added = _insert(conn, (deals,))
    rows = None if gone is None or added is None else int(state[0]) - gone + added
    _analyze(conn)
    _KNOWN.clear()
    _record(conn, rows)
    return [NAME]


#: Per engine: the table is known to exist with this version's columns and to be readable
#: (positive answers only: a database gains the table while the dashboard runs).
_KNOWN: weakref.WeakKeyDictionary[sa.Engine, bool] = weakref.WeakKeyDictionary()


#: Per engine: :data:`SPANS_INDEX` is known to exist (positive answers only).
_SPANS_INDEXED: weakref.WeakKeyDictionary[sa.Engine, bool] = weakref.WeakKeyDictionary()


def spans_indexed(conn: sa.Connection) -> bool:
    """True when the stored visits have :data:`SPANS_INDEX` (PostgreSQL, the table built or
    updated by this version): ``stage_durations`` may then read the finished visits in
    length order from it. Asked only when :func:`available`."""
    if conn.dialect.name != "postgresql":
        return False
    if not _SPANS_INDEXED.get(conn.engine):
        if not _has_index(conn, str(SPANS_INDEX.name)):
            return False
        _SPANS_INDEXED[conn.engine] = True
    return True


def available(conn: sa.Connection) -> bool:
    """True when the stored visits may be read: built (state recorded, so current: any
    change of its sources refreshed it or removed its state), both tables (:data:`TABLES`)
    present with this version's columns,
    and readable by the connecting role (on PostgreSQL a role limited to a scope has no
    SELECT on the derived tables: it reads the base tables)."""
    if not _KNOWN.get(conn.engine):
        present = derived.table_names(conn)
        if not {derived.state.name, *(table.name for table in TABLES)} <= present:
            return False
        if not may_select(conn, derived.state, *TABLES):
            return False
        if any(derived.lacks_columns(conn, table, present) for table in TABLES):
            return False
        _KNOWN[conn.engine] = True
    state = derived.state
    return conn.execute(sa.select(state.c.rollup).where(state.c.rollup == NAME)).first() is not None


__all__ = [
    "ACCOUNT_KEYS",
    "DEALS_NAME",
    "DEAL_COLUMNS",
    "DEAL_STAGES",
    "KEYS_NAME",
    "MASK_KEYS",
    "NAME",
    "OPEN_DEALS_INDEX",
    "POSTGRESQL_INDEXES",
    "SCOPE_COLUMNS",
    "SOURCES",
    "SPANS_INDEX",
    "TABLE",
    "TABLES",
    "WON_LAST_INDEX",
    "available",
    "changed_deals",
    "ended_at",
    "finished_span",
    "history_window",
    "is_visit",
    "latest_first",
    "progressed",
    "refresh",
    "spans_indexed",
    "stage_keys",
    "update",
    "visit_deals",
    "visit_window",
]
