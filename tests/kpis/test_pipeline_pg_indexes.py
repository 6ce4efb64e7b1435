"""PostgreSQL only: the pipeline forecast's learning median and the open deals of the weighted
pipeline and of the forecast are read by index-only scans of partial covering indexes — the
stored tables' ``kpis.stage_visits.WON_LAST_INDEX`` and ``OPEN_DEALS_INDEX``, and for an
owner's or a product's open deals ``deals``' ``ix_deals_open`` —, unfiltered and within an
owner, a product and an account-level selection (the scope columns are in the indexes); a
table built without them gets them at the next import. The numbers are the KPI tests' (the
statements do not change: only their plans)."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import hooks
from forecasting.pipeline import pipeline_forecast
from kpis import Filters, stage_visits, weighted_pipeline
from tests.kpis import fixtures

TODAY = pd.Timestamp("2024-03-15").date()
RANGE = Filters("2023-12-01", "2024-04-01")
SELECTIONS = {
    "everything": RANGE,
    "one owner": RANGE.replace(owners=["u1"]),
    "one product": RANGE.replace(products=["P1"]),
    "one segment": RANGE.replace(segments=["SMB"]),
}


def _plan_text(engine: sa.Engine, statement: str, parameters) -> str:
    """The plan with sequential and bitmap scans off: an index the statement can read
    index-only shows as such."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql("SET enable_bitmapscan = off")
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
    return "\n".join(row[0] for row in rows)


@pytest.fixture
def stored(make_db, monkeypatch):
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    engine = make_db("postgresql")
    fixtures.load(engine)
    with engine.begin() as conn:
        stage_visits.refresh(conn)
    return engine


@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_the_learning_median_reads_the_won_last_visits_index_only(stored, selection):
    f = SELECTIONS[selection]
    with fixtures.statements_sent(stored, "percentile_cont") as statements:
        pipeline_forecast(stored, f, today=TODAY)
    (median,) = [(s, p) for s, p in statements if "rollup_stage_visits" in s]
    plan = _plan_text(stored, *median)
    assert f"Index Only Scan using {stage_visits.WON_LAST_INDEX.name}" in plan, plan


# an owner or a product selection reads the open deals through ``deals``' own indexes on
# PostgreSQL (``kpis.pipeline.reads_stored_open``)
@pytest.mark.parametrize("selection", ["everything", "one segment"])
def test_the_open_deals_are_read_index_only(stored, selection):
    f = SELECTIONS[selection]
    with fixtures.statements_sent(stored, "rollup_deal_stages.status = ") as statements:
        weighted_pipeline(stored, f)
        pipeline_forecast(stored, f, today=TODAY)
    # the weighted pipeline's and the forecast's open deals, not the learning's closed ones
    opened = [(s, p) for s, p in statements if not s.startswith("SELECT rollup_deal_stages.stages")]
    assert len(opened) == 2, [s for s, _ in statements]
    for statement, parameters in opened:
        plan = _plan_text(stored, statement, parameters)
        assert f"Index Only Scan using {stage_visits.OPEN_DEALS_INDEX.name}" in plan, plan


def test_tables_built_without_the_indexes_get_them_at_the_next_import(stored):
    names = [str(index.name) for index in stage_visits.POSTGRESQL_INDEXES]
    with stored.begin() as conn:
        for name in names:
            conn.exec_driver_sql(f"DROP INDEX {name}")
    with stored.begin() as conn:  # an import touching none of the visits' sources
        assert stage_visits.update(conn, hooks.Change.unknown(["payments"])) == [stage_visits.NAME]
    inspector = sa.inspect(stored)
    present = {
        index["name"]
        for table in (stage_visits.NAME, stage_visits.DEALS_NAME)
        for index in inspector.get_indexes(table)
    }
    assert set(names) <= present


@pytest.mark.parametrize("selection", ["one owner", "one product"])
def test_an_owners_or_a_products_open_deals_are_read_index_only(stored, selection):
    # selected on ``deals`` (``kpis.pipeline.reads_stored_open``: not the stored rows on a
    # row store), from its open deals' partial index (``crm_data.schema``'s ix_deals_open);
    # joined to the stored deal rows (by their deal_id index here: a few rows)
    f = SELECTIONS[selection]
    with fixtures.statements_sent(stored, "open_deals AS") as statements:
        weighted_pipeline(stored, f)
    ((statement, parameters),) = statements
    plan = _plan_text(stored, statement, parameters)
    assert "Index Only Scan using ix_deals_open" in plan, plan
