"""kpis.churn_by read from the customer-base roll-up: the same frame as on the base tables
(``CRM_ROLLUPS=off``) for every dimension and selection, on DuckDB, SQLite and PostgreSQL —
with an account whose dimensions are all NULL (A5, counted from the base tables) and the
subscriptions of a missing account (GHOST, left out on both paths) — and really read."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from kpis import Filters, churn_by, rollups
from kpis.churn import CHURN_DIMENSIONS, NOT_SET
from tests.kpis import fixtures
from tests.kpis.test_rollups import SELECTIONS, TODAY, assert_same, both_paths, load_everything

#: Account BLANK has no dimension value at all (like A5): a customer at 1 Jan, 1 Feb and
#: 1 Mar 2024, churned in March.
BLANK = {
    "accounts": [
        dict(account_id="BLANK", name="Blank", segment=None, industry=None, company_size=None, region=None,
             country=None, city=None, acquisition_channel=None, owner_id=None, created_at=datetime(2023, 6, 1)),
    ],
    "subscriptions": [
        dict(subscription_id="SBLANK", account_id="BLANK", product_id="P1", mrr=3.0,
             started_at=datetime(2023, 12, 20), ended_at=datetime(2024, 3, 10), end_reason="price"),
    ],
}  # fmt: skip
WINDOWS = [Filters("2024-01-01", "2024-07-01"), Filters("2023-01-01", "2025-07-01")]


@pytest.fixture
def built(db: sa.Engine) -> sa.Engine:
    load_everything(db)
    fixtures.load_rows(db, BLANK)
    rollups.refresh_database(db, today=TODAY)
    return db


@pytest.fixture(autouse=True)
def _rollups_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_ROLLUPS", raising=False)


def test_churn_by_from_the_rollup_equals_the_base_tables(built: sa.Engine, monkeypatch) -> None:
    checked = 0
    for window in WINDOWS:
        for name, selection in SELECTIONS.items():
            f = window.replace(**selection)
            for by in CHURN_DIMENSIONS:
                rolled, direct = both_paths(monkeypatch, lambda f=f, by=by: churn_by(built, f, by))
                assert_same(rolled, direct, f"churn_by {by} {name} {f.start}–{f.end}")
                checked += 1
    assert checked == len(WINDOWS) * len(SELECTIONS) * len(CHURN_DIMENSIONS)
    # BLANK's three customer-months and its churn are in "(not set)" on both paths
    f = Filters("2024-01-01", "2024-04-01")
    with_blank = churn_by(built, f, "segment").set_index("group")
    with built.begin() as conn:
        conn.execute(
            sa.delete(fixtures_table("subscriptions")).where(sa.column("subscription_id") == "SBLANK")
        )
    monkeypatch.setenv("CRM_ROLLUPS", "off")
    without = churn_by(built, f, "segment").set_index("group")
    assert with_blank.loc[NOT_SET, "customers_at_start"] - without.loc[NOT_SET, "customers_at_start"] == 3
    assert with_blank.loc[NOT_SET, "churned"] - without.loc[NOT_SET, "churned"] == 1


def fixtures_table(name: str) -> sa.Table:
    from crm_data import schema

    return schema.metadata.tables[name]


def test_churn_by_reads_the_rollup(built: sa.Engine) -> None:
    """Tampered roll-up rows show in churn_by (so the equality above compared two paths);
    owner_id (not a roll-up dimension) and an owner filter read the base tables."""
    f = Filters("2024-01-01", "2024-07-01")
    good = churn_by(built, f, "segment")
    owners = churn_by(built, f, "owner_id")
    one_owner = churn_by(built, f.replace(owners=["u1"]), "segment")
    table = rollups.CUSTOMER_BASE.table
    with built.begin() as conn:
        conn.execute(
            table.update()
            .where(table.c.grain == "month", table.c.segment == "SMB")
            .values(customers_at_start=table.c.customers_at_start + 1000)
        )
    now = churn_by(built, f, "segment").set_index("group")
    before = good.set_index("group")
    # + 1000 per month (6) and per SMB dimension group (at least one a month)
    assert now.loc["SMB", "customers_at_start"] - before.loc["SMB", "customers_at_start"] >= 6000
    assert now.loc["SMB", "churned"] == before.loc["SMB", "churned"]
    pd.testing.assert_frame_equal(churn_by(built, f, "owner_id"), owners)
    pd.testing.assert_frame_equal(churn_by(built, f.replace(owners=["u1"]), "segment"), one_owner)
