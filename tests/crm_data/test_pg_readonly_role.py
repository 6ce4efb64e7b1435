"""The README's read-only PostgreSQL role for the dashboard, on a real server.

The dashboard's own read-only mode on PostgreSQL is a session default
(``default_transaction_read_only``), which ``SET TRANSACTION READ WRITE`` undoes. A role that
was only granted SELECT cannot write whatever it sets. This test runs the README recipe in
the session's scratch database (``pg_database_url``), imports a small bundle afterwards (so
the KPI roll-up tables are created after the grant: the default privileges must cover them),
connects as the role the way the dashboard does and checks that reading and the KPIs work
while every write fails with a permission error. The role is dropped at the end.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

import kpis
from crm_data import schema
from crm_data.engines import make_engine
from crm_data.importing import import_paths
from kpis import rollups
from kpis.filters import Filters
from tests.conftest import pg_scratch_schema_engine
from tests.crm_data.test_importing import write_bundle

#: The README recipe ("PostgreSQL: a read-only role for the dashboard"), with the names
#: filled in by the test, plus its line for tables outside ``public``. Run by a superuser;
#: the tables' owner is postgres here too.
RECIPE = """
CREATE ROLE {role} LOGIN PASSWORD '{password}';
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role};
ALTER ROLE {role} SET search_path = {schema};
"""

BUNDLE = {
    "accounts": """
        account_id,name,segment,created_at
        A1,Acme,SMB,2024-01-05T00:00:00Z
        A2,Globex,Enterprise,2024-01-06T00:00:00Z
        """,
    "deals": """
        deal_id,account_id,amount,created_at,closed_at,status
        D1,A1,100,2024-01-10,2024-02-10T12:00:00Z,won
        D2,A2,200,2024-01-11,2024-02-20T12:00:00Z,lost
        D3,A1,300,2024-02-01,2024-03-05T12:00:00Z,won
        D4,A2,400,2024-03-01,,open
        """,
}
FILTERS = Filters(dt.date(2024, 1, 1), dt.date(2024, 4, 1))


def _quoted(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


@pytest.fixture
def owner(pg_database_url: str) -> Iterator[sa.Engine]:
    """The tables' owner (postgres) on a new scratch schema with the canonical tables."""
    engine = pg_scratch_schema_engine(pg_database_url, "ro")
    schema.create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def dashboard_role(owner: sa.Engine, pg_database_url: str) -> Iterator[tuple[str, str]]:
    """The README's role, created with a unique name on the owner's schema: (role, password).
    Dropped at the end (roles belong to the whole server, not to the scratch database)."""
    role = f"crm_dashboard_{uuid.uuid4().hex[:10]}"
    password = secrets.token_hex(12)
    with owner.connect() as conn:
        names = {
            "role": _quoted(conn, role),
            "password": password,
            "database": _quoted(conn, sa.make_url(pg_database_url).database or ""),
            "schema": _quoted(conn, conn.exec_driver_sql("SELECT current_schema()").scalar_one()),
            "owner": _quoted(conn, conn.exec_driver_sql("SELECT current_user").scalar_one()),
        }
        for statement in RECIPE.format(**names).strip().splitlines():
            conn.exec_driver_sql(statement)
        conn.commit()
    try:
        yield role, password
    finally:
        with owner.connect() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {names['role']}")  # its grants, default ones too
            conn.exec_driver_sql(f"DROP ROLE {names['role']}")
            conn.commit()
            gone = conn.execute(sa.text("SELECT count(*) FROM pg_roles WHERE rolname = :r"), {"r": role})
            assert gone.scalar_one() == 0


def _as_role(pg_database_url: str, role: str, password: str, *, read_only: bool) -> sa.Engine:
    """An engine connecting as ``role``, made like the dashboard's (``crm_data.engines``)."""
    url = sa.make_url(pg_database_url).set(username=role, password=password)
    return make_engine(url.render_as_string(hide_password=False), read_only=read_only)


def _permission_denied(engine: sa.Engine, *statements: str) -> str:
    """Run ``statements`` in one transaction; the last must fail with a permission error."""
    with engine.connect() as conn:
        *before, last = statements
        for statement in before:
            conn.exec_driver_sql(statement)
        with pytest.raises(sa.exc.ProgrammingError) as failure:
            conn.exec_driver_sql(last)
        conn.rollback()
    assert isinstance(failure.value.orig, psycopg.errors.InsufficientPrivilege), failure.value
    return str(failure.value.orig)


def test_the_read_only_role_reads_and_computes_kpis_but_cannot_write(
    owner: sa.Engine, dashboard_role: tuple[str, str], pg_database_url: str, tmp_path: Path
) -> None:
    # imported after the grant: the roll-up tables are new, readable through the default privileges
    report = import_paths(owner, [write_bundle(tmp_path / "bundle", BUNDLE)])
    assert report.ok, report.render()
    with owner.connect() as conn:
        assert sa.inspect(conn).has_table(rollups.WIN_RATE.table.name)
    expected = kpis.win_rate(owner, FILTERS, "month")

    role, password = dashboard_role
    dashboard = _as_role(pg_database_url, role, password, read_only=True)  # as ui.data opens it
    writable = _as_role(pg_database_url, role, password, read_only=False)
    try:
        with dashboard.connect() as conn:
            assert conn.exec_driver_sql("SELECT current_user").scalar_one() == role
            assert conn.execute(sa.select(sa.func.count()).select_from(schema.deals)).scalar_one() == 4
            names = conn.execute(sa.select(schema.accounts.c.name).order_by(schema.accounts.c.account_id))
            assert names.scalars().all() == ["Acme", "Globex"]
            built = conn.execute(sa.select(sa.func.count()).select_from(rollups.state)).scalar_one()
            assert built > 0  # a table created after the grant
        shown = kpis.win_rate(dashboard, FILTERS, "month")
        assert shown.equals(expected)
        by_month = {row.period.month: (row.won, row.lost) for row in shown.itertuples()}
        assert by_month[2] == (1, 1) and by_month[3] == (1, 0)
        assert kpis.win_rate(dashboard, FILTERS, "quarter")["won"].sum() == 2

        insert = "INSERT INTO web_traffic (date, source, sessions) VALUES ('2024-01-01', 'x', 1)"
        update = "UPDATE accounts SET name = 'changed'"
        delete = "DELETE FROM deals"
        writes = (insert, update, delete, "TRUNCATE deals", "CREATE TABLE sneaky (x int)")
        for statement in writes:  # no read-only session default at all: the grants decide
            assert "permission denied" in _permission_denied(writable, statement)
        # the dashboard's session default is undone by one statement; the missing grants are not
        for statement in writes:
            message = _permission_denied(dashboard, "SET TRANSACTION READ WRITE", statement)
            assert "permission denied" in message
        message = _permission_denied(dashboard, "SET TRANSACTION READ WRITE", insert)
        assert "permission denied for table web_traffic" in message
    finally:
        dashboard.dispose()
        writable.dispose()

    with owner.connect() as conn:  # nothing changed
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.deals)).scalar_one() == 4
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.web_traffic)).scalar_one() == 0
        assert not sa.inspect(conn).has_table("sneaky")


def test_without_the_role_the_session_default_alone_does_not_stop_a_write(
    owner: sa.Engine, pg_database_url: str
) -> None:
    """Why the role is needed: the dashboard's read-only engine, as the owner, writes after
    ``SET TRANSACTION READ WRITE``."""
    with owner.connect() as conn:
        table = f"{_quoted(conn, conn.exec_driver_sql('SELECT current_schema()').scalar_one())}.web_traffic"
    engine = make_engine(pg_database_url, read_only=True)
    insert = f"INSERT INTO {table} (date, source, sessions) VALUES ('2024-01-01', 'x', 1)"
    try:
        with engine.connect() as conn:
            with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
                conn.exec_driver_sql(insert)
            conn.rollback()
            conn.exec_driver_sql("SET TRANSACTION READ WRITE")
            conn.exec_driver_sql(insert)
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one() == 1
            conn.rollback()
    finally:
        engine.dispose()
