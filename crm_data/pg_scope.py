"""PostgreSQL: a user's scope enforced by the database itself (row-level security).

The KPI layer applies a signed-in user's :class:`~kpis.filters.Scope`; a login role made by
:func:`scope_role_sql` cannot see past it whatever SQL it runs. The statements (run by a
superuser or the tables' owner, in one transaction: :func:`apply`):

* create the LOGIN role, or alter an existing one (no password: set one with ``ALTER ROLE``
  or psql's ``\\password``); CONNECT on the database, USAGE on the schema, its search_path;
* revoke whatever it was granted on the CRM and roll-up tables (not on others, such as the
  dashboard's sign-in tables ``app_accounts``/``app_audit``), then grant SELECT on the CRM tables
  only — never on the KPI roll-ups (every table named ``rollup_*``, :mod:`crm_data.derived`:
  aggregates of *all* accounts) for a restricted scope; the KPIs then read the base tables
  (``kpis.rollups`` treats a missing SELECT privilege as "no roll-ups");
* ENABLE ROW LEVEL SECURITY and one ``FOR SELECT TO role`` policy on every table with
  records of accounts, mirroring ``kpis.filters.scope``: ``accounts`` by its own columns
  (and ``owner_id``); contacts, subscriptions, payments, tickets, survey_responses,
  campaign_responses, costs through ``account_id``; deals and interactions through
  ``account_id`` and their own owner column (``deals.owner_id``, ``interactions.user_id``);
  deal_stage_history through its deal. A row without an account is invisible as soon as
  the scope limits an account dimension (``account_id IN (...)`` is never true for NULL);
* the company-wide tables (web_traffic, social_media, campaigns) get RLS and a policy
  ``USING (false)`` for a restricted scope: readable (the dashboard's pages load) but empty,
  as the KPI layer hides them; users, products and pipeline_stages (the filter bar, the
  pipeline's stages) stay fully readable, without RLS.

An unrestricted scope gives ``USING (true)`` policies and SELECT on the roll-ups that exist
when the statements run (roll-ups built later: run them again). Row-level
security does not apply to the tables' owner nor to superusers (or BYPASSRLS roles); once it
is enabled, any *other* role sees no rows of those tables until it has a policy — give it one
with this module (an unrestricted scope) or BYPASSRLS.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from psycopg import sql

from crm_data.derived import PREFIX
from crm_data.scope import ACCOUNT_DIMENSIONS, Scope

#: Tables whose rows belong to an account through ``account_id`` (accounts itself aside).
ACCOUNT_TABLES: tuple[str, ...] = (
    "contacts",
    "subscriptions",
    "deals",
    "interactions",
    "tickets",
    "survey_responses",
    "campaign_responses",
    "payments",
    "costs",
)
#: Company-wide tables without an account: empty for a restricted scope.
COMPANY_TABLES: tuple[str, ...] = ("campaigns", "web_traffic", "social_media")
#: Read by the dashboard whatever the scope (filter bar, pipeline stages): no RLS.
SHARED_TABLES: tuple[str, ...] = ("users", "products", "pipeline_stages")


def _owner_column(table: sa.Table) -> str | None:
    """The record's own owner column, as ``kpis.filters.scope`` picks it."""
    for name in ("owner_id", "user_id"):
        if name in table.c:
            return name
    return None


def _in(column: sql.Composable, values: tuple[str, ...]) -> sql.Composable:
    """``column IN ('a', 'b')`` with quoted literals; FALSE for no values."""
    if not values:
        return sql.SQL("false")
    return sql.SQL("{} IN ({})").format(column, sql.SQL(", ").join(sql.Literal(v) for v in values))


def _and(parts: Iterable[sql.Composable]) -> sql.Composable:
    parts = list(parts)
    if not parts:
        return sql.SQL("true")
    return sql.SQL(" AND ").join(sql.SQL("({})").format(p) for p in parts)


def _account_dimensions(scope: Scope) -> list[sql.Composable]:
    """The scope's account-dimension limits on the columns of ``accounts``."""
    return [
        _in(sql.Identifier(ACCOUNT_DIMENSIONS[name]), values)
        for name, values in scope.limits().items()
        if name in ACCOUNT_DIMENSIONS
    ]


def _condition(table: sa.Table, scope: Scope, schema_name: str) -> sql.Composable:
    """The USING expression for ``table``'s rows (``kpis.filters.scope`` with only a scope)."""
    parts: list[sql.Composable] = []
    dimensions = _account_dimensions(scope)
    own = _owner_column(table)
    if table.name == "accounts":
        parts += dimensions
    elif dimensions and "account_id" in table.c:
        parts.append(
            sql.SQL("account_id IN (SELECT account_id FROM {}.{} WHERE {})").format(
                sql.Identifier(schema_name), sql.Identifier("accounts"), _and(dimensions)
            )
        )
    if scope.owners is not None:
        if own is not None:
            parts.append(_in(sql.Identifier(own), scope.owners))
        elif "account_id" in table.c:
            parts.append(
                sql.SQL("account_id IN (SELECT account_id FROM {}.{} WHERE {})").format(
                    sql.Identifier(schema_name),
                    sql.Identifier("accounts"),
                    _in(sql.Identifier("owner_id"), scope.owners),
                )
            )
    return _and(parts)


def _policy_name(role: str) -> str:
    return f"crm_scope_{role}"[:63]


def scope_role_sql(role: str, scope: Scope, schema: str = "public") -> list[str]:
    """The statements that make ``role`` a LOGIN role reading ``schema``'s CRM tables only
    within ``scope`` (see the module docstring). Names are quoted as identifiers and the
    scope's values as literals (``psycopg.sql``); run them in one transaction."""
    from crm_data import schema as crm_schema  # the parameter shadows the module name

    if not role:
        raise ValueError("the role needs a name")
    tables = {t.name: t for t in crm_schema.TABLES}
    who = sql.Identifier(role)
    ns = sql.Identifier(schema)

    def table(name: str) -> sql.Composable:
        return sql.SQL("{}.{}").format(ns, sql.Identifier(name))

    # the derived tables (KPI roll-ups and their state, ``crm_data.derived``): every table
    # of the schema named ``rollup_*`` when the statements run
    derived_tables = sql.SQL(
        "ARRAY(SELECT tablename::text FROM pg_tables WHERE schemaname = {schema} AND tablename LIKE {pattern})"
    ).format(schema=sql.Literal(schema), pattern=sql.Literal(PREFIX.replace("_", "\\_") + "%"))
    body = sql.SQL(
        "DECLARE t text; BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN CREATE ROLE {who} LOGIN; "
        "ELSE ALTER ROLE {who} LOGIN; END IF; "
        "EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), {name}); "
        "FOREACH t IN ARRAY ARRAY[{tables}]::text[] || {derived} LOOP "
        "IF to_regclass(format('%I.%I', {schema}, t)) IS NOT NULL THEN "
        "EXECUTE format('REVOKE ALL ON %I.%I FROM %I', {schema}, t, {name}); END IF; END LOOP; "
        "{grant}END"
    ).format(
        name=sql.Literal(role),
        who=who,
        schema=sql.Literal(schema),
        tables=sql.SQL(", ").join(sql.Literal(n) for n in tables),
        derived=derived_tables,
        grant=sql.SQL(
            ""
            if scope.restricted
            else "FOREACH t IN ARRAY {derived} LOOP "
            "EXECUTE format('GRANT SELECT ON %I.%I TO %I', {schema}, t, {name}); END LOOP; "
        ).format(derived=derived_tables, schema=sql.Literal(schema), name=sql.Literal(role)),
    )
    text = body.as_string(None)
    tag = "$crm$"
    while tag in text:  # a dollar-quote delimiter the body does not contain
        tag = tag[:-1] + "_$"
    statements: list[sql.Composable] = [
        sql.SQL(f"DO {tag}{text}{tag}"),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ns, who),
        sql.SQL("ALTER ROLE {} SET search_path = {}").format(who, ns),
    ]
    readable = [*ACCOUNT_TABLES, "accounts", "deal_stage_history", *COMPANY_TABLES, *SHARED_TABLES]
    statements.append(
        sql.SQL("GRANT SELECT ON {} TO {}").format(sql.SQL(", ").join(table(n) for n in readable), who)
    )
    policy = sql.Identifier(_policy_name(role))
    deals = _condition(tables["deals"], scope, schema)
    using: dict[str, sql.Composable] = {
        "accounts": _condition(tables["accounts"], scope, schema),
        **{name: _condition(tables[name], scope, schema) for name in ACCOUNT_TABLES},
        "deal_stage_history": sql.SQL("deal_id IN (SELECT deal_id FROM {} WHERE {})").format(
            table("deals"), deals
        ),
        **{name: sql.SQL("false" if scope.restricted else "true") for name in COMPANY_TABLES},
    }
    for name, condition in using.items():
        statements += [
            sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table(name)),
            sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(policy, table(name)),
            sql.SQL("CREATE POLICY {} ON {} FOR SELECT TO {} USING ({})").format(
                policy, table(name), who, condition
            ),
        ]
    return [s.as_string(None) for s in statements]


def apply(url_or_engine: str | sa.Engine, statements: list[str]) -> None:
    """Run ``statements`` in one transaction (all or nothing), as the connecting user."""
    from crm_data.engines import make_engine

    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()  # psycopg: no parameter parsing
            for statement in statements:
                cursor.execute(statement)
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


__all__ = ["ACCOUNT_TABLES", "COMPANY_TABLES", "SHARED_TABLES", "apply", "scope_role_sql"]
