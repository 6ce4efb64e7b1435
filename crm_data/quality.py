"""Data-quality checks of the canonical tables ("clean your CRM"), computed in SQL.

:func:`check_database` runs every check below on DuckDB, SQLite or PostgreSQL and returns
a :class:`QualityReport`: one :class:`Finding` per check — also the clean ones, with
``count == 0`` — carrying the number of offending records and up to ``limit`` of them.

Checks (``key``: what counts):

* ``duplicate_accounts``: accounts whose *normalised name* is shared with another account.
  Normalised = lower case, trimmed, dots and apostrophes dropped, other punctuation made
  a blank, blanks collapsed, and up to two trailing legal suffixes removed (Inc, Ltd, LLC, GmbH, AG, Corp, Co, PLC, SA, BV, …).
* ``duplicate_contacts``: contacts whose email (lower case, trimmed) another contact has.
* ``missing_<table>_<column>``: missing key fields — accounts without segment, industry,
  region or owner; contacts without email; deals without amount; tickets without product
  (NULL or blank).
* ``stale_open_deals``: open deals whose last stage change (latest ``entered_at`` in
  ``deal_stage_history``, else ``created_at``) is more than ``stale_days`` before ``now``.
* ``orphan_<table>_<column>``: references (not blank) to a record that does not exist — the ones no
  foreign key enforces (owners, products, contacts, deals, tickets, campaigns, stages,
  managers) and, because SQLite does not enforce foreign keys, the declared ones too. A
  foreign key the database enforces (PostgreSQL: validated, triggers enabled;
  ``crm_data.dialects.enforced_references``) admits no orphan: its check counts 0 without
  joining the parent (at 100k accounts: the stage history's join with the deals, the
  accounts joined to ten tables).
* ``future_<table>``: rows with a timestamp / date after ``now`` (planned values are
  allowed: ``subscriptions.ended_at``, ``campaigns.started_on`` / ``ended_on``).
* ``stale_rollups`` (only where KPI roll-ups were built): roll-ups whose source tables
  gained or lost rows since (``crm_data.derived.stale``).
* ``overlapping_subscriptions``: pairs of subscriptions of the same account and product
  (a missing product counts as one product) whose ``[started_at, ended_at)`` intervals
  overlap (no ``ended_at`` = still running).

``scope`` (a ``kpis.filters.Scope``, or a mapping like ``{"regions": ["EMEA"]}``): every
finding counts and lists only the records inside it, as ``kpis.filters.scope`` selects
them (account dimensions through the record's account; owners by ``deals.owner_id`` /
``interactions.user_id``, else the account's ``owner_id``); ``deal_stage_history`` rows
through their deal. Duplicates count among the records in scope only (both of a pair in
it); orphans when the child record is in scope. A restricted scope gets no findings on
the tables without an account (:data:`ACCOUNTLESS_TABLES`) nor ``stale_rollups``
(``QualityReport.hidden_tables`` names them); an unrestricted one the whole database.

Query shapes (1M accounts: ~50 checks over tables of up to 18M rows): the row checks of a
table — missing fields, orphans, future timestamps — are counted together, one
``count(*) FILTER (WHERE …)`` each, over the table with each reference's parent joined LEFT
on its key (an orphan: a non-blank reference whose parent key is NULL; the blank test runs
only for the rows without a parent) — in one statement on PostgreSQL and SQLite; on DuckDB
the plain checks in one statement per table and the references per *parent*: every child
table's references stacked and the parent joined once (:func:`_count_references`); their
records are read only when the count is not 0, the first ``limit`` by key. The duplicate names are normalised once (a MATERIALIZED CTE).
Each finding has a :func:`severity`. :mod:`crm_data.quality_snapshot` stores the whole
database's report for the Data quality page.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa

from crm_data import derived, dialects, schema
from crm_data.validation import column_kind, existing_tables

if TYPE_CHECKING:
    from crm_data.scope import Scope

#: Sample records kept per finding.
DEFAULT_LIMIT = 20
LEGAL_SUFFIXES: tuple[str, ...] = (
    "inc", "incorporated", "ltd", "limited", "llc", "llp", "lp", "gmbh", "mbh", "ag", "kg", "corp",
    "corporation", "co", "company", "plc", "sa", "sas", "sarl", "srl", "spa", "bv", "nv", "oy", "ab",
    "as", "pty", "se",
)  # fmt: skip
_DROPPED = r"[.'`]"  # abbreviation dots and apostrophes vanish: "S.A." -> "sa", "O'Neil" -> "oneil"
_PUNCTUATION = r"[,;:!?\"&()/\\_*+#@~|-]"  # other punctuation separates words
#: (table, column) pairs whose future values are plans, not errors.
PLANNED_COLUMNS = schema.PLANNED_COLUMNS
#: Key fields reported when missing.
KEY_FIELDS: tuple[tuple[str, str], ...] = (
    ("accounts", "segment"),
    ("accounts", "industry"),
    ("accounts", "region"),
    ("accounts", "owner_id"),
    ("contacts", "email"),
    ("deals", "amount"),
    ("tickets", "product_id"),
)
#: Tables without an account: no record of them is inside a restricted scope, so their
#: findings (and ``stale_rollups``) are left out for one.
ACCOUNTLESS_TABLES: frozenset[str] = frozenset(
    {"users", "products", "pipeline_stages", "web_traffic", "social_media", "campaigns"}
)
#: References that no foreign key declares: (table, column, parent table, parent column).
SOFT_REFERENCES: tuple[tuple[str, str, str, str], ...] = (
    ("accounts", "owner_id", "users", "user_id"),
    ("users", "manager_id", "users", "user_id"),
    ("subscriptions", "product_id", "products", "product_id"),
    ("deals", "owner_id", "users", "user_id"),
    ("deals", "product_id", "products", "product_id"),
    ("deal_stage_history", "stage", "pipeline_stages", "stage"),
    ("interactions", "contact_id", "contacts", "contact_id"),
    ("interactions", "user_id", "users", "user_id"),
    ("interactions", "deal_id", "deals", "deal_id"),
    ("interactions", "ticket_id", "tickets", "ticket_id"),
    ("interactions", "campaign_id", "campaigns", "campaign_id"),
    ("tickets", "product_id", "products", "product_id"),
    ("survey_responses", "contact_id", "contacts", "contact_id"),
    ("survey_responses", "ticket_id", "tickets", "ticket_id"),
    ("campaign_responses", "contact_id", "contacts", "contact_id"),
)


#: A finding's severity: ``error`` — the data contradicts itself, and figures computed from
#: it are wrong (orphans, future timestamps, overlapping subscriptions, roll-ups older than
#: the data); ``warning`` — likely mistakes for someone to review (duplicates, missing key
#: fields, stale open deals).
ERROR, WARNING = "error", "warning"
#: Checks whose findings time alone can add, the data unchanged (an open deal becomes stale):
#: :func:`check_database` never takes their findings from an earlier check (``nothing_found``).
GROWING_CHECKS: frozenset[str] = frozenset({"stale_open_deals"})
_ERROR_CHECKS = ("orphan_", "future_", "overlapping_", "stale_rollups")


def severity(key: str) -> str:
    """The severity of check ``key`` (:data:`ERROR` or :data:`WARNING`)."""
    return ERROR if key.startswith(_ERROR_CHECKS) else WARNING


@dataclass
class Finding:
    """One check's result: how many records are affected and some of them."""

    key: str
    title: str
    table: str
    count: int
    description: str
    records: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def severity(self) -> str:
        """:data:`ERROR` or :data:`WARNING` (:func:`severity`)."""
        return severity(self.key)


@dataclass
class QualityReport:
    """Every check's :class:`Finding` (clean checks have ``count == 0``)."""

    findings: list[Finding]
    checked_at: datetime
    stale_days: int
    missing_tables: list[str] = field(default_factory=list)
    #: The scope the findings are limited to (None: the whole database).
    scope: Scope | None = None
    #: Tables whose findings were left out because the scope is restricted.
    hidden_tables: list[str] = field(default_factory=list)
    #: Checks not run for this report: nothing found by an earlier check of the same data
    #: (``check_database``'s ``nothing_found``), made at ``earlier_check_at`` when known.
    reused_checks: list[str] = field(default_factory=list)
    earlier_check_at: datetime | None = None

    @property
    def problems(self) -> list[Finding]:
        """The findings with at least one offending record."""
        return [f for f in self.findings if f.count]

    @property
    def ok(self) -> bool:
        """True when no check found anything."""
        return not self.problems and not self.missing_tables

    def finding(self, key: str) -> Finding:
        """The finding of check ``key``."""
        for item in self.findings:
            if item.key == key:
                return item
        raise KeyError(key)

    def render(self, rows: int = 10) -> str:
        """A readable text report: each problem with up to ``rows`` sample records, then the clean checks."""
        out = [
            f"Data-quality report — checked {self.checked_at:%Y-%m-%d %H:%M} UTC "
            f"(open deals are stale after {self.stale_days} days without a stage change)",
        ]
        if self.scope is not None:
            hidden = self.hidden_tables
            out.append(
                f"within {self.scope.describe()}"
                + (f"; findings on {', '.join(hidden)} (no account) are not shown" if hidden else "")
            )
        if self.reused_checks:
            when = f" at {self.earlier_check_at:%Y-%m-%d %H:%M} UTC" if self.earlier_check_at else ""
            out.append(
                f"{len(self.reused_checks)} checks that found nothing in the whole database{when} "
                "were not run again (the data has not changed since)"
            )
        if self.missing_tables:
            out.append(f"tables missing (checks on them skipped): {', '.join(self.missing_tables)}")
        problems = self.problems
        if not self.findings:
            out.append("No checks ran: none of the tables they need exist.")
        else:
            out.append(
                f"{len(problems)} of {len(self.findings)} checks found problems."
                if problems
                else f"All {len(self.findings)} checks passed."
            )
        for item in problems:
            out.append("")
            out.append(f"[!] {item.title}: {item.count:,d}")
            out.append(f"    {item.description}")
            if not item.records.empty:
                sample = item.records.head(rows).to_string(index=False, max_colwidth=40)
                out.extend("    " + line for line in sample.splitlines())
                if item.count > min(rows, len(item.records)):
                    out.append(f"    ... {item.count - min(rows, len(item.records)):,d} more")
        clean = [f.title for f in self.findings if not f.count]
        if clean:
            out.append("")
            out.append("Passed: " + "; ".join(clean) + ".")
        return "\n".join(out)


def _as_scope(scope: Scope | Mapping[str, Iterable[str]] | None) -> Scope | None:
    """``scope`` as a ``kpis.filters.Scope`` when it restricts anything, else None."""
    if scope is None:
        return None
    from crm_data.scope import Scope

    if not isinstance(scope, Scope):
        scope = Scope.from_dict(dict(scope))
    return scope if scope.restricted else None


def _within(scope: Scope | None, table: sa.FromClause, table_name: str) -> list[sa.ColumnElement[bool]]:
    """WHERE conditions keeping the rows of ``table`` (``table_name`` or an alias of it) inside
    ``scope``: :func:`crm_data.scope.conditions` (``kpis.filters.scope``'s own);
    ``deal_stage_history`` through its deal."""
    if scope is None:
        return []
    from crm_data.scope import conditions

    if table_name == "deal_stage_history":
        deals = schema.deals
        return [table.c.deal_id.in_(sa.select(deals.c.deal_id).where(*conditions(scope, deals)))]
    return conditions(scope, table)


def _blank(column: sa.ColumnElement) -> sa.ColumnElement:
    if column_kind(column) == "text":  # type: ignore[arg-type]
        return sa.or_(column.is_(None), sa.func.trim(column) == "")
    return column.is_(None)


def _count_and_records(
    conn: sa.Connection, base: sa.Select, order: list[sa.ColumnElement], limit: int
) -> tuple[int, pd.DataFrame]:
    """``count(*)`` of ``base`` and its first ``limit`` rows by ``order`` — one statement
    (the count as a window over every row, beside the first rows), so the check's query
    runs once, not once for the count and again for the records."""
    sub = base.subquery()
    names = [c.name for c in sub.columns]
    total = sa.func.count().over().label("_rows_in_finding")
    statement = sa.select(*sub.columns, total).order_by(*(sub.c[c.name] for c in order)).limit(max(limit, 1))
    rows = conn.execute(statement).fetchall()
    if not rows:
        return 0, pd.DataFrame(columns=names)
    count = int(rows[0][-1])
    return count, pd.DataFrame([tuple(r)[:-1] for r in rows[:limit]], columns=names)


def normalised_name(dialect: sa.Dialect, column: sa.ColumnElement) -> sa.ColumnElement:
    """SQL: the company name for duplicate matching (see the module docstring)."""
    text = dialects.regexp_replace(dialect, sa.func.lower(sa.func.trim(column)), _DROPPED, "")
    text = dialects.regexp_replace(dialect, text, _PUNCTUATION, " ")
    text = sa.func.trim(dialects.regexp_replace(dialect, text, " +", " "))
    suffixes = " (" + "|".join(LEGAL_SUFFIXES) + ")$"
    for _ in range(2):
        text = sa.func.trim(dialects.regexp_replace(dialect, text, suffixes, ""))
    return text


def _duplicate_accounts(conn: sa.Connection, limit: int, scope: Scope | None = None, **_: object) -> Finding:
    accounts = schema.accounts
    key = normalised_name(conn.dialect, accounts.c.name).label("normalised_name")
    named = (
        sa.select(accounts.c.account_id, accounts.c.name, key)
        .where(accounts.c.name.is_not(None), *_within(scope, accounts, "accounts"))
        .cte("named")
        # computed once: read twice below, the regular expressions would otherwise run per read
        .prefix_with("MATERIALIZED")
    )
    groups = (
        sa.select(named.c.normalised_name, sa.func.count().label("accounts_with_this_name"))
        .where(named.c.normalised_name != "")
        .group_by(named.c.normalised_name)
        .having(sa.func.count() > 1)
        .cte("groups")
    )
    base = sa.select(
        named.c.normalised_name, named.c.account_id, named.c.name, groups.c.accounts_with_this_name
    ).join_from(named, groups, named.c.normalised_name == groups.c.normalised_name)
    count, records = _count_and_records(conn, base, [named.c.normalised_name, named.c.account_id], limit)
    return Finding(
        "duplicate_accounts",
        "Duplicate accounts",
        "accounts",
        count,
        "accounts whose name, normalised (case, punctuation, legal suffixes like Inc/Ltd/GmbH "
        "ignored), is the same as another account's",
        records,
    )


def _duplicate_contacts(conn: sa.Connection, limit: int, scope: Scope | None = None, **_: object) -> Finding:
    contacts = schema.contacts
    key = sa.func.lower(sa.func.trim(contacts.c.email)).label("normalised_email")
    mails = (
        sa.select(contacts.c.contact_id, contacts.c.account_id, contacts.c.name, contacts.c.email, key)
        .where(*_within(scope, contacts, "contacts"))
        # not MATERIALIZED (unlike the accounts' names): lower(trim()) is cheap to compute twice,
        # and 2.8M contacts held whole cost DuckDB ~0.4 GB more at 1M accounts
        .cte("mails")
    )
    groups = (
        sa.select(mails.c.normalised_email, sa.func.count().label("contacts_with_this_email"))
        # a blank email (NULL, or only blanks: normalised to '') is no match: tested on the
        # key itself, not by a second trim() of every email (≈ 30 % of the check at 1M
        # accounts); the rows joined below have a key of these groups, so no blank one
        .where(mails.c.normalised_email != "")
        .group_by(mails.c.normalised_email)
        .having(sa.func.count() > 1)
        .cte("groups")
    )
    base = sa.select(
        mails.c.normalised_email,
        mails.c.contact_id,
        mails.c.account_id,
        mails.c.name,
        mails.c.email,
        groups.c.contacts_with_this_email,
    ).join_from(mails, groups, mails.c.normalised_email == groups.c.normalised_email)
    count, records = _count_and_records(conn, base, [mails.c.normalised_email, mails.c.contact_id], limit)
    return Finding(
        "duplicate_contacts",
        "Duplicate contacts",
        "contacts",
        count,
        "contacts whose email (lower case, trimmed) another contact also has",
        records,
    )


@dataclass(frozen=True)
class _RowCheck:
    """A check that judges each row of ``table`` on its own: a missing key field, a
    reference to a record that does not exist, a timestamp after the check time.

    :func:`check_database` counts every row check of one table in ONE scan of it — one
    ``count(*) FILTER (WHERE condition)`` each, the parents of its references joined LEFT
    on their key (a reference is an orphan when it is not blank and the joined parent key is
    NULL) — and lists records only for the checks that counted any: ``listing(now)`` is the
    SELECT of the records (without the scope) and their order."""

    key: str
    title: str
    table: str
    description: str
    #: (parent alias joined LEFT for ``parent``, or None; now) -> the row's condition
    condition: Callable[[sa.FromClause | None, datetime], sa.ColumnElement[bool]]
    listing: Callable[[datetime], tuple[sa.Select, list[sa.ColumnElement]]]
    #: (column, parent table, parent column) of a reference
    parent: tuple[str, str, str] | None = None

    @property
    def needs(self) -> set[str]:
        return {self.table} | ({self.parent[1]} if self.parent else set())


@dataclass(frozen=True)
class _QueryCheck:
    """A check with a statement of its own (duplicates, stale deals, overlaps):
    ``run(conn, limit=, now=, stale_days=, scope=)`` returns its :class:`Finding`."""

    key: str
    table: str
    needs: set[str]
    run: Callable[..., Finding]


def _missing_field(table_name: str, column_name: str) -> _RowCheck:
    table = schema.metadata.tables[table_name]
    keys = list(table.primary_key.columns)
    extra = [
        n for n in ("name", "account_id", "status") if n in table.c and n not in table.primary_key.columns
    ]

    def listing(now: datetime) -> tuple[sa.Select, list[sa.ColumnElement]]:
        return sa.select(*keys, *(table.c[n] for n in extra)).where(_blank(table.c[column_name])), keys

    noun = {"owner_id": "owner", "product_id": "product"}.get(column_name, column_name)
    return _RowCheck(
        f"missing_{table_name}_{column_name}",
        f"{table_name.capitalize()} without {noun}",
        table_name,
        f"{table_name} whose {column_name} is empty",
        lambda parent, now: _blank(table.c[column_name]),
        listing,
    )


def _stale_open_deals(
    conn: sa.Connection, limit: int, now: datetime, stale_days: int, scope: Scope | None = None, **_: object
) -> Finding:
    deals, history = schema.deals, schema.deal_stage_history
    last = (
        sa.select(history.c.deal_id, sa.func.max(history.c.entered_at).label("last_stage_change"))
        # only the open deals' history: the finding keeps open deals alone
        .where(history.c.deal_id.in_(sa.select(deals.c.deal_id).where(deals.c.status == "open")))
        .group_by(history.c.deal_id)
        .cte("last_change")
    )
    changed = sa.func.coalesce(last.c.last_stage_change, deals.c.created_at)
    now_param = sa.bindparam("now", now, type_=sa.DateTime())
    cutoff = sa.bindparam("cutoff", now - timedelta(days=stale_days), type_=sa.DateTime())
    base = (
        sa.select(
            deals.c.deal_id,
            deals.c.name,
            deals.c.account_id,
            deals.c.owner_id,
            deals.c.amount,
            changed.label("last_stage_change"),
            dialects.days_between(conn.dialect, changed, now_param).label("days_without_change"),
        )
        .join_from(deals, last, deals.c.deal_id == last.c.deal_id, isouter=True)
        .where(deals.c.status == "open", changed < cutoff, *_within(scope, deals, "deals"))
    )
    count, records = _count_and_records(conn, base, [sa.column("last_stage_change"), deals.c.deal_id], limit)
    return Finding(
        "stale_open_deals",
        "Stale open deals",
        "deals",
        count,
        f"open deals without a stage change (last entered_at, else created_at) for more than {stale_days} days",
        records,
    )


def _orphans(table_name: str, column_name: str, parent_name: str, parent_column: str) -> _RowCheck:
    table = schema.metadata.tables[table_name]
    keys = list(table.primary_key.columns) or [c for c in table.columns if c.name != column_name][:2]
    reference = table.c[column_name]

    def listing(now: datetime) -> tuple[sa.Select, list[sa.ColumnElement]]:
        parent = schema.metadata.tables[parent_name].alias("parent")
        exists = sa.exists().where(parent.c[parent_column] == reference)
        statement = sa.select(*keys, reference).where(sa.not_(_blank(reference)), sa.not_(exists))
        return statement, [*keys, reference]

    def condition(parent: sa.FromClause | None, now: datetime) -> sa.ColumnElement[bool]:
        if parent is None:
            raise ValueError(f"orphan_{table_name}_{column_name} counts against its parent joined LEFT")
        return _orphan(parent.c[parent_column], reference, _blank(reference))

    return _RowCheck(
        f"orphan_{table_name}_{column_name}",
        f"Orphan {table_name}.{column_name}",
        table_name,
        f"{table_name} whose {column_name} is not in {parent_name}.{parent_column}",
        condition,
        listing,
        (column_name, parent_name, parent_column),
    )


def _future(table_name: str) -> _RowCheck | None:
    table = schema.metadata.tables[table_name]
    columns = [
        c
        for c in table.columns
        if column_kind(c) in ("timestamp", "date") and (table_name, c.name) not in PLANNED_COLUMNS
    ]
    if not columns:
        return None
    keys = list(table.primary_key.columns) or [
        table.c[c] for c in ("campaign_id", "account_id", "contact_id")
    ]
    shown = [*keys, *(c for c in columns if c not in keys)]

    def condition(parent: sa.FromClause | None, now: datetime) -> sa.ColumnElement[bool]:
        later = []
        for column in columns:
            if column_kind(column) == "date":
                later.append(column > sa.bindparam(None, now.date(), type_=sa.Date()))
            else:
                later.append(column > sa.bindparam(None, now, type_=sa.DateTime()))
        return sa.or_(*later)

    def listing(now: datetime) -> tuple[sa.Select, list[sa.ColumnElement]]:
        return sa.select(*shown).where(condition(None, now)), keys

    names = ", ".join(c.name for c in columns)
    return _RowCheck(
        f"future_{table_name}",
        f"Future timestamps in {table_name}",
        table_name,
        f"{table_name} rows with {names} after the check time",
        condition,
        listing,
    )


def _orphan(
    parent_key: sa.ColumnElement, reference: sa.ColumnElement, blank: sa.ColumnElement[bool]
) -> sa.ColumnElement[bool]:
    """The orphan condition of every count (:func:`_orphans`' check, :func:`_count_rows`,
    :func:`_count_references`): a reference that is not NULL, finds no parent (``parent_key``
    of the parent joined LEFT is NULL) and is not ``blank``. CASE, not AND: the blank test
    (a trim) runs only for the references without a parent."""
    unmatched = sa.and_(parent_key.is_(None), reference.is_not(None))
    return sa.case((unmatched, sa.not_(blank)), else_=sa.false())


def _parent_of(parent_name: str, parent_column: str, alias: str) -> sa.FromClause:
    """The parent table to join LEFT for a reference: the table itself when the column is its
    primary key (at most one match per row), else its distinct values of the column."""
    parent = schema.metadata.tables[parent_name]
    if [c.name for c in parent.primary_key.columns] == [parent_column]:
        return parent.alias(alias)
    return sa.select(parent.c[parent_column]).distinct().subquery(alias)


def _count_rows(
    conn: sa.Connection, table_name: str, checks: list[_RowCheck], now: datetime, scope: Scope | None
) -> list[int]:
    """The count of each row check of ``table_name``, in one statement: one scan of the
    table, each reference's parent joined LEFT on its key, one ``count(*) FILTER`` per check."""
    table = schema.metadata.tables[table_name]
    joined: sa.FromClause = table
    conditions = []
    for n, check in enumerate(checks):
        parent = None
        if check.parent is not None:
            column, parent_name, parent_column = check.parent
            parent = _parent_of(parent_name, parent_column, f"parent_{n}")
            joined = joined.outerjoin(parent, parent.c[parent_column] == table.c[column])
        conditions.append(check.condition(parent, now))
    counts = [sa.func.count().filter(condition) for condition in conditions]
    statement = sa.select(*counts).select_from(joined).where(*_within(scope, table, table_name))
    return [int(n) for n in conn.execute(statement).one()]


def _count_references(
    conn: sa.Connection, checks: list[_RowCheck], now: datetime, scope: Scope | None
) -> list[int]:
    """DuckDB: the orphan counts of ``checks`` (references to one parent, from any tables)
    in one statement — the references of every child table stacked (UNION ALL, each tagged
    with its check's number), the parent joined LEFT once on its key, one ``count(*)
    FILTER`` per check, the same condition as :func:`_orphans`' (a non-blank reference
    without a parent). The parent's hash table is built once for all its children (the
    deals for the stage history and the interactions, the accounts for nine tables), not
    once per reference; each child scan reads only its reference column."""
    _, parent_name, parent_column = checks[0].parent  # type: ignore[misc]
    stacked = []
    for n, check in enumerate(checks):
        table = schema.metadata.tables[check.table]
        reference = table.c[check.parent[0]]  # type: ignore[index]
        number = sa.literal(n, sa.Integer()).label("check_number")
        stacked.append(
            sa.select(number, reference.label("reference")).where(*_within(scope, table, check.table))
        )
    references = sa.union_all(*stacked).subquery("stacked_references")
    parent = _parent_of(parent_name, parent_column, "parent")
    joined = references.outerjoin(parent, parent.c[parent_column] == references.c.reference)
    counts = []
    for n, check in enumerate(checks):
        kind_of = schema.metadata.tables[check.table].c[check.parent[0]]  # type: ignore[index]
        blank = _blank(references.c.reference) if column_kind(kind_of) == "text" else sa.false()  # type: ignore[arg-type]
        orphan = _orphan(parent.c[parent_column], references.c.reference, blank)
        counts.append(sa.func.count().filter(sa.and_(references.c.check_number == n, orphan)))
    return [int(n) for n in conn.execute(sa.select(*counts).select_from(joined)).one()]


def _records(
    conn: sa.Connection, base: sa.Select, order: list[sa.ColumnElement], limit: int, count: int
) -> pd.DataFrame:
    """The first ``limit`` rows of ``base`` by ``order`` (none read when ``count`` is 0), with
    the column names :func:`_count_and_records` gives them."""
    sub = base.subquery()
    names = [c.name for c in sub.columns]
    if not count or limit < 1:
        return pd.DataFrame(columns=names)
    statement = sa.select(*sub.columns).order_by(*(sub.c[c.name] for c in order)).limit(limit)
    rows = conn.execute(statement).fetchall()
    if not rows:
        return pd.DataFrame(columns=names)
    return pd.DataFrame([tuple(r) for r in rows], columns=names)


def _overlapping_subscriptions(
    conn: sa.Connection, limit: int, scope: Scope | None = None, **_: object
) -> Finding:
    subs = schema.subscriptions
    a, b = subs.alias("a"), subs.alias("b")
    base = sa.select(
        a.c.account_id,
        a.c.product_id,
        a.c.subscription_id.label("subscription_id"),
        a.c.started_at.label("started_at"),
        a.c.ended_at.label("ended_at"),
        b.c.subscription_id.label("overlapping_subscription_id"),
        b.c.started_at.label("overlapping_started_at"),
        b.c.ended_at.label("overlapping_ended_at"),
    ).join_from(
        a,
        b,
        sa.and_(
            a.c.account_id == b.c.account_id,
            sa.func.coalesce(a.c.product_id, "") == sa.func.coalesce(b.c.product_id, ""),
            a.c.subscription_id < b.c.subscription_id,
            sa.or_(b.c.ended_at.is_(None), a.c.started_at < b.c.ended_at),
            sa.or_(a.c.ended_at.is_(None), b.c.started_at < a.c.ended_at),
        ),
    )
    within = [*_within(scope, a, "subscriptions"), *_within(scope, b, "subscriptions")]
    if within:  # both of the pair in scope
        base = base.where(*within)
    count, records = _count_and_records(
        conn,
        base,
        [sa.column("account_id"), sa.column("subscription_id"), sa.column("overlapping_subscription_id")],
        limit,
    )
    return Finding(
        "overlapping_subscriptions",
        "Overlapping subscriptions",
        "subscriptions",
        count,
        "pairs of subscriptions of the same account and product whose [started_at, ended_at) overlap",
        records,
    )


def _stale_rollups(conn: sa.Connection, limit: int, **_: object) -> Finding:
    records = derived.stale(conn)
    sources = sorted({t for names in derived.dependencies(conn).values() for t in names})
    return Finding(
        "stale_rollups",
        "KPI roll-ups older than the data",
        derived.state.name,
        len(records),
        f"The tables they summarise ({', '.join(sources)}) gained or lost "
        "rows since the roll-ups were built, by a writer other than demo/import: the Overview's "
        "KPIs may be out of date. Run `python -m crm_data rollups`.",
        records.head(limit),
    )


def _checks() -> list[_RowCheck | _QueryCheck]:
    """Every check, in report order."""
    checks: list[_RowCheck | _QueryCheck] = [
        _QueryCheck("duplicate_accounts", "accounts", {"accounts"}, _duplicate_accounts),
        _QueryCheck("duplicate_contacts", "contacts", {"contacts"}, _duplicate_contacts),
    ]
    checks += [_missing_field(t, c) for t, c in KEY_FIELDS]
    checks.append(
        _QueryCheck("stale_open_deals", "deals", {"deals", "deal_stage_history"}, _stale_open_deals)
    )
    references = list(SOFT_REFERENCES)
    for table in schema.TABLES:
        for foreign_key in sorted(table.foreign_keys, key=lambda k: k.parent.name):
            references.append(
                (table.name, foreign_key.parent.name, foreign_key.column.table.name, foreign_key.column.name)
            )
    checks += [_orphans(t, c, p, pc) for t, c, p, pc in references]
    for table in schema.TABLES:
        check = _future(table.name)
        if check is not None:
            checks.append(check)
    checks.append(
        _QueryCheck(
            "overlapping_subscriptions", "subscriptions", {"subscriptions"}, _overlapping_subscriptions
        )
    )
    return checks


#: The key of every check but ``stale_rollups``, in report order.
CHECK_KEYS: tuple[str, ...] = tuple(check.key for check in _checks())


def check_database(
    conn: sa.Connection | sa.Engine,
    stale_days: int = 90,
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    scope: Scope | Mapping[str, Iterable[str]] | None = None,
    checks: Collection[str] | None = None,
    nothing_found: Collection[Finding] = (),
) -> QualityReport:
    """Run every data-quality check; ``now`` (naive UTC, default: the current time) is the
    reference for stale deals and future timestamps; ``limit`` sample records per finding;
    ``scope``: only the records inside it (see the module docstring; None: everything);
    ``checks``: only the checks of these keys (None: all).

    ``nothing_found``: findings without records (count 0) of an earlier check of the same
    data, at or before ``now``, over at least the records this one looks at (e.g. the whole
    database's, for a scope): their checks are not run again, these findings are reported
    as they are (:func:`crm_data.quality_snapshot.check_scope`). Sound because no check can
    find a record in a part of the data that it did not find in the whole (the records in a
    scope are some of all the records; duplicates within a scope are duplicates in the
    whole), and a timestamp after ``now`` was after the earlier check time too; not for the
    :data:`GROWING_CHECKS` (a ValueError, as for a finding with records).

    The row checks of a table (missing fields, orphans, future timestamps) are counted in
    one scan of it (:func:`_count_rows`); records are read only for the checks that found
    some, the first ``limit`` by key."""
    if isinstance(conn, sa.Engine):
        with conn.connect() as connection:
            return check_database(
                connection,
                stale_days=stale_days,
                now=now,
                limit=limit,
                scope=scope,
                checks=checks,
                nothing_found=nothing_found,
            )
    reused = {finding.key: finding for finding in nothing_found}
    wrong = sorted(key for key, finding in reused.items() if finding.count or key in GROWING_CHECKS)
    if wrong:
        raise ValueError(f"nothing_found holds findings with records or of checks time can add: {wrong}")
    limited = _as_scope(scope)
    if now is None:
        now = datetime.now(UTC).replace(tzinfo=None)
    elif now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    present = existing_tables(conn)
    hidden: list[str] = []
    selected: list[_RowCheck | _QueryCheck] = []
    for check in _checks():
        if (checks is not None and check.key not in checks) or not check.needs <= present:
            continue
        if limited is not None and check.table in ACCOUNTLESS_TABLES:
            if check.table not in hidden:
                hidden.append(check.table)
            continue
        selected.append(check)
    by_table: dict[str, list[_RowCheck]] = {}
    counts: dict[str, int] = {}
    enforced = dialects.enforced_references(conn)
    for check in selected:
        if not isinstance(check, _RowCheck) or check.key in reused:
            continue
        if check.parent is not None and (check.table, *check.parent) in enforced:
            # a foreign key the database enforces: no orphan can exist, no parent is joined
            # (PostgreSQL: the accounts for ten tables, the deals for the stage history)
            counts[check.key] = 0
            continue
        by_table.setdefault(check.table, []).append(check)
    by_parent: dict[tuple[str, str], list[_RowCheck]] = {}
    for table_name, row_checks in by_table.items():
        # PostgreSQL and SQLite: every row check of the table in one pass (PostgreSQL's hash
        # joins stay within work_mem, SQLite looks each parent up in its key's index).
        # DuckDB: the references per parent, below — its columnar scans read only the
        # columns they need, while building a large parent's hash table (deals, contacts,
        # tickets) for each child anew cost ≈ 1 s each at 1M accounts, and several of them
        # held at once doubled the process's peak memory
        if conn.dialect.name == "duckdb":
            for check in row_checks:
                if check.parent is not None:
                    by_parent.setdefault(check.parent[1:], []).append(check)
            row_checks = [c for c in row_checks if c.parent is None]
        if row_checks:
            found = _count_rows(conn, table_name, row_checks, now, limited)
            counts.update(zip((c.key for c in row_checks), found, strict=True))
    for references in by_parent.values():
        found = _count_references(conn, references, now, limited)
        counts.update(zip((c.key for c in references), found, strict=True))
    findings = []
    for check in selected:
        if check.key in reused:
            findings.append(reused[check.key])
            continue
        if isinstance(check, _QueryCheck):
            findings.append(check.run(conn, limit=limit, now=now, stale_days=stale_days, scope=limited))
            continue
        table = schema.metadata.tables[check.table]
        base, order = check.listing(now)
        base = base.where(*_within(limited, table, check.table))
        count = counts[check.key]
        records = _records(conn, base, order, limit, count)
        findings.append(Finding(check.key, check.title, check.table, count, check.description, records))
    if (checks is None or "stale_rollups" in checks) and derived.has_state(conn):
        if limited is None:
            findings.append(_stale_rollups(conn, limit=limit))
        else:
            hidden.append(derived.state.name)
    missing = [name for name in schema.TABLE_NAMES if name not in present]
    return QualityReport(
        findings,
        now,
        stale_days,
        missing,
        scope=limited,
        hidden_tables=hidden,
        reused_checks=[check.key for check in selected if check.key in reused],
    )
