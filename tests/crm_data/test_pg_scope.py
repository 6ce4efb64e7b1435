"""``crm_data.pg_scope``: a user's scope enforced by PostgreSQL itself, on a real server.

Imports a small bundle with accounts in EMEA and APAC (deals, payments, tickets for each, a
deal without an account, company-wide web traffic) into a scratch schema, applies the
statements for a role limited to EMEA, connects as that role the way the dashboard does
(trust authentication on 127.0.0.1) and checks that every table shows only EMEA's rows,
that the KPIs computed as the role equal the KPI layer's answer for the same scope computed
as the owner, and that the roll-ups (aggregates of every account) cannot be read while the
KPIs still work from the base tables. The role is dropped at the end.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

import kpis
from crm_data import pg_scope, schema
from crm_data.cli import main
from crm_data.engines import make_engine
from crm_data.importing import import_paths
from kpis import rollups
from kpis.filters import Filters, Scope
from tests.conftest import pg_scratch_schema_engine
from tests.crm_data.test_importing import write_bundle

BUNDLE = {
    "accounts": """
        account_id,name,segment,region,owner_id,created_at
        E1,Emea One,SMB,EMEA,u1,2024-01-05T00:00:00Z
        E2,Emea Two,Enterprise,EMEA,u2,2024-01-06T00:00:00Z
        P1,Apac One,SMB,APAC,u1,2024-01-07T00:00:00Z
        """,
    "deals": """
        deal_id,account_id,owner_id,amount,created_at,closed_at,status
        D1,E1,u1,100,2024-01-10,2024-02-10T12:00:00Z,won
        D2,E2,u2,200,2024-01-11,2024-02-20T12:00:00Z,lost
        D3,P1,u1,300,2024-02-01,2024-03-05T12:00:00Z,won
        D4,P1,u1,400,2024-02-02,2024-03-06T12:00:00Z,won
        D5,,u1,500,2024-02-03,2024-03-07T12:00:00Z,lost
        """,
    "payments": """
        payment_id,account_id,paid_at,amount
        Y1,E1,2024-02-01T10:00:00Z,10
        Y2,E2,2024-02-02T10:00:00Z,20
        Y3,P1,2024-02-03T10:00:00Z,1000
        Y4,P1,2024-03-03T10:00:00Z,2000
        """,
    "tickets": """
        ticket_id,account_id,opened_at
        T1,E1,2024-02-01T10:00:00Z
        T2,P1,2024-02-02T10:00:00Z
        T3,,2024-02-03T10:00:00Z
        """,
    "web_traffic": """
        date,source,sessions
        2024-02-01,organic,100
        """,
}
FILTERS = Filters(dt.date(2024, 1, 1), dt.date(2024, 4, 1))
EMEA = Scope(regions=("EMEA",))
#: The rows the EMEA role may see, per table (key column).
VISIBLE = {
    "accounts": ("account_id", ["E1", "E2"]),
    "deals": ("deal_id", ["D1", "D2"]),
    "payments": ("payment_id", ["Y1", "Y2"]),
    "tickets": ("ticket_id", ["T1"]),
    "web_traffic": ("source", []),
}


@pytest.fixture
def owner(pg_database_url: str, tmp_path: Path) -> Iterator[sa.Engine]:
    """The tables' owner (postgres) on a new scratch schema holding the bundle (and its roll-ups)."""
    engine = pg_scratch_schema_engine(pg_database_url, "rls")
    schema.create_schema(engine)
    report = import_paths(engine, [write_bundle(tmp_path / "bundle", BUNDLE)])
    assert report.ok, report.render()
    yield engine
    engine.dispose()


def _current_schema(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT current_schema()").scalar_one()


@pytest.fixture
def role(owner: sa.Engine) -> Iterator[str]:
    """A unique role name; the role is dropped at the end (roles belong to the whole server)."""
    name = f"crm_emea_{uuid.uuid4().hex[:8]}"
    yield name
    with owner.connect() as conn:
        if conn.execute(
            sa.text("SELECT count(*) FROM pg_roles WHERE rolname = :r"), {"r": name}
        ).scalar_one():
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.exec_driver_sql(f"DROP OWNED BY {quoted}")  # its grants and policies
            conn.exec_driver_sql(f"DROP ROLE {quoted}")
            conn.commit()
        gone = conn.execute(sa.text("SELECT count(*) FROM pg_roles WHERE rolname = :r"), {"r": name})
        assert gone.scalar_one() == 0


def _as_role(pg_database_url: str, role: str) -> sa.Engine:
    """The dashboard's read-only engine, connecting as ``role`` without a password (trust)."""
    url = sa.make_url(pg_database_url).set(username=role, password=None)
    return make_engine(url.render_as_string(hide_password=False), read_only=True)


def _keys(conn: sa.Connection, table: str, column: str) -> list[str]:
    t = schema.metadata.tables[table]
    return conn.execute(sa.select(t.c[column]).order_by(t.c[column])).scalars().all()


def test_a_scoped_role_sees_only_its_scope_and_the_kpis_agree(
    owner: sa.Engine, role: str, pg_database_url: str
) -> None:
    with owner.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(rollups.state)).scalar_one() > 0
    pg_scope.apply(owner, pg_scope.scope_role_sql(role, EMEA, _current_schema(owner)))
    scoped = FILTERS.within(EMEA)
    expected = {
        "win_rate": kpis.win_rate(owner, scoped, "month"),
        "revenue": kpis.revenue(owner, scoped, "month"),
        "quarterly": kpis.win_rate(owner, scoped, "quarter"),
    }
    everything = kpis.win_rate(owner, FILTERS, "month")
    assert everything["won"].sum() == 3 and everything["lost"].sum() == 2  # the owner bypasses RLS

    dashboard = _as_role(pg_database_url, role)
    try:
        with dashboard.connect() as conn:
            assert conn.exec_driver_sql("SELECT current_user").scalar_one() == role
            for table, (column, rows) in VISIBLE.items():
                assert _keys(conn, table, column) == rows, table
            assert conn.execute(sa.select(sa.func.count()).select_from(schema.products)).scalar_one() == 0
            # the roll-ups hold every account's aggregates: not readable at all
            for table in (rollups.state, rollups.WIN_RATE.table, rollups.REVENUE.table):
                with pytest.raises(sa.exc.ProgrammingError) as failure:
                    conn.execute(sa.select(sa.func.count()).select_from(table))
                assert isinstance(failure.value.orig, psycopg.errors.InsufficientPrivilege)
                conn.rollback()
        # the KPIs, unfiltered, as the role: the base tables through its policies
        shown = kpis.win_rate(dashboard, FILTERS, "month")
        assert shown.equals(expected["win_rate"])
        assert shown["won"].sum() == 1 and shown["lost"].sum() == 1
        assert kpis.revenue(dashboard, FILTERS, "month").equals(expected["revenue"])
        assert kpis.revenue(dashboard, FILTERS, "month")["revenue"].sum() == 30
        assert kpis.win_rate(dashboard, FILTERS, "quarter").equals(expected["quarterly"])
        # and with the signed-in user's scope on top (the dashboard passes it too)
        assert kpis.win_rate(dashboard, scoped, "month").equals(expected["win_rate"])
        # the filter bar's sources still load
        assert kpis.filters.dimension_values(dashboard)["regions"] == ["EMEA"]
    finally:
        dashboard.dispose()


def test_applying_again_changes_the_scope_and_an_unrestricted_role_sees_everything(
    owner: sa.Engine, role: str, pg_database_url: str
) -> None:
    schema_name = _current_schema(owner)
    pg_scope.apply(owner, pg_scope.scope_role_sql(role, EMEA, schema_name))
    with owner.connect() as conn:  # a table of the app's own (sign-in) the dashboard was granted
        conn.exec_driver_sql("CREATE TABLE app_accounts (name text)")
        conn.exec_driver_sql(f'GRANT SELECT ON app_accounts TO "{role}"')
        conn.commit()
    tricky = Scope(regions=("APAC", "O'Brien %s \\"), owners=("u1",))
    pg_scope.apply(owner, pg_scope.scope_role_sql(role, tricky, schema_name))  # alters the role
    dashboard = _as_role(pg_database_url, role)
    try:
        with dashboard.connect() as conn:
            assert _keys(conn, "accounts", "account_id") == ["P1"]
            assert conn.exec_driver_sql("SELECT count(*) FROM app_accounts").scalar_one() == 0  # kept
            assert _keys(conn, "deals", "deal_id") == ["D3", "D4"]
            assert _keys(conn, "payments", "payment_id") == ["Y3", "Y4"]
        assert kpis.win_rate(dashboard, FILTERS, "month").equals(
            kpis.win_rate(owner, FILTERS.within(tricky), "month")
        )
        pg_scope.apply(owner, pg_scope.scope_role_sql(role, Scope(), schema_name))
        with dashboard.connect() as conn:
            assert _keys(conn, "deals", "deal_id") == ["D1", "D2", "D3", "D4", "D5"]
            assert conn.execute(sa.select(sa.func.count()).select_from(rollups.state)).scalar_one() > 0
        assert kpis.win_rate(dashboard, FILTERS, "month").equals(kpis.win_rate(owner, FILTERS, "month"))
    finally:
        dashboard.dispose()


def test_the_cli_prints_and_applies_the_statements(
    owner: sa.Engine, role: str, pg_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    schema_name = _current_schema(owner)
    args = ["users", "pg-role", role, "--region", "EMEA", "--schema", schema_name]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.strip().splitlines() == [f"{s};" for s in pg_scope.scope_role_sql(role, EMEA, schema_name)]
    assert main([*args, "--apply", "--url", pg_database_url]) == 0
    dashboard = _as_role(pg_database_url, role)
    try:
        with dashboard.connect() as conn:
            assert _keys(conn, "accounts", "account_id") == ["E1", "E2"]
    finally:
        dashboard.dispose()
