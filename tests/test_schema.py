"""The canonical schema creates cleanly on every supported database."""

import sqlalchemy as sa

from crm_data import schema


def test_all_tables_are_created(db: sa.Engine) -> None:
    names = set(sa.inspect(db).get_table_names())
    assert names == set(schema.TABLE_NAMES)
    assert len(names) == 18  # the 17 CRM tables and exchange_rates


def test_create_schema_is_idempotent(db: sa.Engine) -> None:
    schema.create_schema(db)  # second time: nothing to do, no error
    assert len(sa.inspect(db).get_table_names()) == 18


def test_a_database_from_before_the_currency_columns_gets_them(make_db) -> None:
    engine = make_db("duckdb", create=False)
    old = sa.MetaData()
    for table in schema.metadata.tables.values():
        if table.name != "exchange_rates":
            # without indexes: a copy loses their ddl_if rules (DuckDB creates none of them)
            table.to_metadata(old).indexes.clear()
    for name in ("deals", "payments"):
        for column in ("currency", "amount_original"):
            old.tables[name]._columns.remove(old.tables[name].c[column])
    old.create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO deals (deal_id, created_at, status) VALUES ('d1', '2024-01-01', 'open')"
        )
    schema.create_schema(engine)
    with engine.connect() as conn:
        assert {"currency", "amount_original"} <= schema.table_columns(conn, "deals")
        assert {"currency", "amount_original"} <= schema.table_columns(conn, "payments")
        assert conn.exec_driver_sql("SELECT deal_id, currency FROM deals").all() == [("d1", None)]
        assert schema.add_missing_columns(conn) == []  # nothing left to add


def test_parents_come_before_children() -> None:
    order = schema.TABLE_NAMES
    assert order.index("accounts") < order.index("deals") < order.index("deal_stage_history")
    assert order.index("campaigns") < order.index("campaign_responses")


def test_sessions_run_in_utc(db: sa.Engine) -> None:
    with db.connect() as c:
        if db.dialect.name == "duckdb":
            assert c.exec_driver_sql("SELECT current_setting('TimeZone')").scalar() == "UTC"
        elif db.dialect.name == "postgresql":
            assert c.exec_driver_sql("SHOW TIME ZONE").scalar() == "UTC"


def _pg_catalog(engine: sa.Engine) -> dict[str, list[tuple]]:
    """The tables, columns, constraints and indexes of the engine's PostgreSQL schema (its
    ``search_path``), without the schema's name."""
    queries = {
        "columns": "SELECT table_name, column_name, ordinal_position, data_type, is_nullable, column_default,"
        " character_maximum_length, numeric_precision, numeric_scale FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY 1, 3",
        "constraints": "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)"
        " FROM pg_constraint WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2",
        "indexes": "SELECT tablename, indexname, replace(indexdef, ' ' || schemaname || '.', ' ')"
        " FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1, 2",
    }
    with engine.connect() as conn:
        return {name: [tuple(row) for row in conn.exec_driver_sql(sql)] for name, sql in queries.items()}


def test_make_db_on_postgresql_gives_what_create_schema_gives(make_db, pg_database_url: str) -> None:
    """The test schemas ``make_db`` makes by replaying ``create_schema``'s DDL
    (tests/conftest.py ``pg_schema_ddl``) have every table, column, constraint and index a
    ``create_schema`` on an empty schema gives."""
    from tests.conftest import pg_scratch_schema_engine

    reference = pg_scratch_schema_engine(pg_database_url, "reference")
    try:
        schema.create_schema(reference)
        expected = _pg_catalog(reference)
    finally:
        reference.dispose()
    replayed = _pg_catalog(make_db("postgresql"))
    assert len(expected["columns"]) > 100 and expected["indexes"] and expected["constraints"]
    assert replayed == expected
