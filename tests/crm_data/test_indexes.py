"""Secondary indexes and planner statistics (``crm_data.schema``, ``crm_data.dialects``):
the owner / product filter columns are indexed on row stores, the sales cycle's partial
covering index and the payments' (account_id, paid_at) covering one exist on PostgreSQL
only, a database created before an index was added gets it from ``create_schema`` and from
an import, ``dialects.analyze`` fills the planner statistics, and PostgreSQL sessions get
``work_mem`` and no JIT compilation. On DuckDB, SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from crm_data import dialects, schema
from crm_data.dialects import days_between
from crm_data.engines import make_engine
from tests.kpis import fixtures

#: The filter bar's owner and product columns (``kpis.filters.scope``).
FILTER_INDEXES = {
    "ix_accounts_owner_id",
    "ix_deals_owner_id",
    "ix_deals_product_id",
    "ix_subscriptions_product_id",
    "ix_tickets_product_id",
}
POSTGRESQL_ONLY = {"ix_deals_won_closed_at", "ix_payments_account_id_paid_at", "ix_deals_open"}


def index_names(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        return {
            str(index["name"])
            for table in inspector.get_table_names()
            for index in inspector.get_indexes(table)
        }


def test_indexes_per_database(db: sa.Engine) -> None:
    names = index_names(db)
    if db.dialect.name == "duckdb":
        assert not names & (FILTER_INDEXES | POSTGRESQL_ONLY)  # zone maps, no ART indexes
    elif db.dialect.name == "sqlite":
        assert names >= FILTER_INDEXES and not names & POSTGRESQL_ONLY
    else:
        assert names >= FILTER_INDEXES | POSTGRESQL_ONLY
        expected = {
            "ix_deals_won_closed_at": "(closed_at) INCLUDE (created_at) WHERE ((status)::text = 'won'::text)",
            "ix_payments_account_id_paid_at": "(account_id, paid_at) INCLUDE (amount)",
            "ix_deals_open": "(owner_id) INCLUDE (product_id, deal_id, amount, created_at, account_id, pipeline)"
            " WHERE ((status)::text = 'open'::text)",
        }
        with db.connect() as conn:
            for name, columns in expected.items():
                definition = conn.exec_driver_sql(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = %(name)s"
                    " AND schemaname = current_schema()",
                    {"name": name},
                ).scalar_one()
                assert columns in definition, (name, definition)


def test_an_older_database_gets_the_new_indexes(db: sa.Engine) -> None:
    if db.dialect.name == "duckdb":
        assert schema.create_schema(db) is None and not index_names(db) & FILTER_INDEXES
        return
    with db.begin() as conn:
        for name in sorted((FILTER_INDEXES | POSTGRESQL_ONLY) & index_names(db)):
            conn.exec_driver_sql(f"DROP INDEX {name}")
    assert not index_names(db) & FILTER_INDEXES
    with db.begin() as conn:
        created = schema.create_missing_indexes(conn)
        assert set(created) == FILTER_INDEXES | (
            POSTGRESQL_ONLY if db.dialect.name == "postgresql" else set()
        )
        assert schema.create_missing_indexes(conn) == []  # nothing left to create
    assert index_names(db) >= FILTER_INDEXES


def test_analyze_fills_the_planner_statistics(db: sa.Engine) -> None:
    fixtures.load(db)
    with db.begin() as conn:
        dialects.analyze(conn, ["deals", "payments"])
        if db.dialect.name == "postgresql":
            analysed = conn.exec_driver_sql(
                "SELECT count(DISTINCT tablename) FROM pg_stats WHERE schemaname = current_schema()"
                " AND tablename IN ('deals', 'payments')"
            ).scalar_one()
            assert analysed == 2
        elif db.dialect.name == "sqlite":
            stats = {r[0] for r in conn.exec_driver_sql("SELECT tbl FROM sqlite_stat1")}
            assert {"deals", "payments"} <= stats
        dialects.analyze(conn)  # every table: no error on any database


def test_postgresql_sessions_get_work_mem(make_db, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_db("postgresql", create=False)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW work_mem").scalar_one() == dialects.PG_WORK_MEM
    monkeypatch.setenv("CRM_PG_WORK_MEM", "16MB")
    other = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        with other.connect() as conn:
            assert conn.exec_driver_sql("SHOW work_mem").scalar_one() == "16MB"
    finally:
        other.dispose()
    monkeypatch.setenv("CRM_PG_WORK_MEM", "16MB'; DROP TABLE deals; --")
    with pytest.raises(ValueError, match="CRM_PG_WORK_MEM"):
        make_engine(engine.url.render_as_string(hide_password=False))


#: Estimated above the server's default ``jit_above_cost`` (100,000): 4M joined rows.
_COSTLY = (
    "EXPLAIN SELECT sum(a.x * b.x) "
    "FROM generate_series(1, 2000) a(x) CROSS JOIN generate_series(1, 2000) b(x)"
)


def test_postgresql_sessions_compile_no_jit(make_db) -> None:
    # the server's default is on; the product's sessions set it off, so a statement
    # estimated above every JIT threshold plans without JIT (EXPLAIN lists none)
    engine = make_db("postgresql", create=False)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW jit").scalar_one() == dialects.PG_JIT == "off"
        assert "JIT" not in "\n".join(r[0] for r in conn.exec_driver_sql(_COSTLY))
        conn.exec_driver_sql("RESET jit")
        if conn.exec_driver_sql("SELECT pg_jit_available()").scalar_one():
            # the same statement compiles with the server's default
            assert "JIT" in "\n".join(r[0] for r in conn.exec_driver_sql(_COSTLY))


def test_days_between_is_the_exact_difference(db: sa.Engine) -> None:
    # whole seconds and milliseconds, across days: (3 d 4 h 0 min 30 s, 0.5 s, 1 d 0.25 s)
    pairs = [
        (dt.datetime(2024, 1, 1, 10), dt.datetime(2024, 1, 4, 14, 0, 30)),
        (dt.datetime(2024, 1, 1, 10), dt.datetime(2024, 1, 1, 10, 0, 0, 500_000)),
        (dt.datetime(2024, 1, 1, 23, 59, 59, 750_000), dt.datetime(2024, 1, 3)),
    ]
    expected = [3 + (4 * 3600 + 30) / 86400, 0.5 / 86400, 1 + 0.25 / 86400]
    with db.connect() as conn:
        found = [
            conn.execute(
                sa.select(
                    days_between(conn.dialect, sa.literal(a, sa.DateTime()), sa.literal(b, sa.DateTime()))
                )
            ).scalar_one()
            for a, b in pairs
        ]
    assert found == pytest.approx(expected, rel=1e-12)
