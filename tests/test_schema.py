"""The canonical schema creates cleanly on every supported database."""

import sqlalchemy as sa

from crm_data import schema


def test_all_seventeen_tables_are_created(db: sa.Engine) -> None:
    names = set(sa.inspect(db).get_table_names())
    assert names == set(schema.TABLE_NAMES)
    assert len(names) == 17


def test_create_schema_is_idempotent(db: sa.Engine) -> None:
    schema.create_schema(db)  # second time: nothing to do, no error
    assert len(sa.inspect(db).get_table_names()) == 17


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
