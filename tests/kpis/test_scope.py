"""A user's scope (``kpis.filters.Scope``) is applied by the KPI layer to every query, beside
the chosen filters and never widened by them; on DuckDB, SQLite and PostgreSQL.

The hand-made fixture (tests/kpis/fixtures.py): A1 (EU, Enterprise, u1), A2 (EU,
Enterprise, u2), A3 (NA, SMB, u1), A4 (NA, SMB, u2), A5 (no region, no owner).
"""

from __future__ import annotations

import datetime as dt
import inspect

import pandas as pd
import pytest
import sqlalchemy as sa

import kpis
from kpis import registry, rollups
from kpis.filters import EVERYTHING, Filters, Scope, dimension_values
from tests.kpis import fixtures

JAN_TO_APR = Filters("2024-01-01", "2024-05-01")
EU = Scope(regions=("EU",))
#: KPIs over tables without an account column: company-wide, none of it inside a scope.
COMPANY_WIDE = {"web_metrics", "social_metrics"}


def load(engine: sa.Engine) -> sa.Engine:
    fixtures.load(engine)
    fixtures.insert(
        engine,
        "web_traffic",
        [
            dict(
                date=dt.date(2024, 1, 5),
                source="organic",
                sessions=10,
                pageviews=20,
                impressions=100,
                clicks=5,
                signups=1,
            )
        ],
    )
    return engine


def call(engine: sa.Engine, function, f: Filters) -> pd.DataFrame:
    extra = {}
    if "freq" in inspect.signature(function).parameters:
        extra["freq"] = "month"
    return function(engine, f, **extra)


def test_scope_eu_sees_the_eu_numbers_only(db: sa.Engine) -> None:
    load(db)
    everyone = kpis.customer_base(db, JAN_TO_APR, freq="month")
    scoped = kpis.customer_base(db, JAN_TO_APR.within(EU), freq="month")
    # January: A1, A2, A3 (starts exactly 1 Jan) and A5 active at 1 Jan; in EU A1 and A2.
    assert everyone["customers_at_start"].iloc[0] == 4
    assert scoped["customers_at_start"].iloc[0] == 2
    # A2 (EU) ends exactly 1 Feb: churned in January; A5's January churn is outside the scope.
    assert scoped["churned"].iloc[0] == 1
    assert scoped["customers_at_start"].iloc[1] == 1  # February: A1 only
    won = kpis.win_rate(db, JAN_TO_APR.within(EU), freq="quarter")
    assert won.equals(kpis.win_rate(db, JAN_TO_APR.replace(regions=("EU",)), freq="quarter"))


def test_every_kpi_under_a_scope_equals_the_same_filter_and_a_scope_is_never_widened(db: sa.Engine) -> None:
    load(db)
    checked = 0
    for entry in registry.KPIS:
        function = entry.function
        scoped = call(db, function, JAN_TO_APR.within(EU))
        name = function.__name__
        if name in COMPANY_WIDE:
            unscoped = call(db, function, JAN_TO_APR)
            numbers = scoped.select_dtypes("number").drop(columns=["followers"], errors="ignore")
            assert (numbers.fillna(0) == 0).all().all(), name
            assert name == "social_metrics" or unscoped["sessions"].sum() == 10
            continue
        filtered = call(db, function, JAN_TO_APR.replace(regions=("EU",)))
        pd.testing.assert_frame_equal(scoped, filtered, obj=name)
        # a chosen value outside the scope selects nothing (never "all")
        outside = call(db, function, JAN_TO_APR.replace(regions=("NA",)).within(EU))
        nothing = call(db, function, JAN_TO_APR.replace(regions=("nowhere",)))
        pd.testing.assert_frame_equal(outside, nothing, obj=f"{name} outside the scope")
        # choosing the same region again inside the scope changes nothing
        again = call(db, function, JAN_TO_APR.replace(regions=("EU", "NA")).within(EU))
        pd.testing.assert_frame_equal(again, filtered, obj=f"{name} EU+NA within EU")
        checked += 1
    assert checked >= 15


def test_owner_scope_and_an_empty_scope(db: sa.Engine) -> None:
    load(db)
    mine = kpis.win_rate(db, JAN_TO_APR.within(Scope(owners=("u1",))), freq="quarter")
    assert mine.equals(kpis.win_rate(db, JAN_TO_APR.replace(owners=("u1",)), freq="quarter"))
    other = kpis.win_rate(
        db, JAN_TO_APR.replace(owners=("u2",)).within(Scope(owners=("u1",))), freq="quarter"
    )
    nothing = kpis.win_rate(db, JAN_TO_APR.replace(owners=("nobody",)), freq="quarter")
    assert other.equals(nothing)
    none_at_all = kpis.customer_base(db, JAN_TO_APR.within(Scope(regions=())), freq="month")
    assert (none_at_all["customers_at_start"] == 0).all()


def test_rollups_apply_the_scope(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    load(db)
    rollups.refresh_database(db, today=dt.date(2025, 12, 31))
    f = JAN_TO_APR.within(EU)
    with db.connect() as conn:
        periods = kpis.core.period_starts(f.start, f.end, "month")
        assert rollups.read(conn, rollups.CUSTOMER_BASE, f, "month", periods) is not None  # really read
        assert (
            rollups.read(conn, rollups.CUSTOMER_BASE, f.within(Scope(owners=("u1",))), "month", periods)
            is None
        )
    rolled = kpis.customer_base(db, f, freq="month")
    monkeypatch.setenv("CRM_ROLLUPS", "off")
    direct = kpis.customer_base(db, f, freq="month")
    pd.testing.assert_frame_equal(rolled, direct, check_exact=False)
    assert rolled["customers_at_start"].iloc[0] == 2


def test_within_narrows_and_nothing_widens() -> None:
    f = JAN_TO_APR.within(EU)
    assert f.within(EVERYTHING).scope == EU
    assert f.replace(regions=("NA",)).scope == EU  # choosing values keeps the scope
    assert f.within(Scope(regions=("EU", "NA"))).scope == EU
    assert f.within(Scope(regions=("NA",))).scope.regions == ()
    assert f.within(Scope(segments=("SMB",))).scope == Scope(regions=("EU",), segments=("SMB",))
    assert hash(f) != hash(JAN_TO_APR) and f != JAN_TO_APR  # a different cache key
    assert Scope.from_dict(EU.as_dict()) == EU
    assert Scope.from_dict({"regions": ["EU"], "bogus": ["x"]}) == EU
    assert Filters(JAN_TO_APR.start, JAN_TO_APR.end, scope={"regions": ["EU"]}).scope == EU


def test_the_filter_bar_offers_only_values_inside_the_scope(db: sa.Engine) -> None:
    load(db)
    everything = dimension_values(db)
    assert everything["regions"] == ["EU", "NA"]
    inside = dimension_values(db, EU)
    assert inside["regions"] == ["EU"]
    assert inside["countries"] == ["DE", "FR"]
    assert inside["owners"] == ["u1", "u2"]  # the owners of EU accounts
    assert dimension_values(db, Scope(regions=("NA",), owners=("u2",)))["owners"] == ["u2"]
    assert dimension_values(db, Scope(segments=("SMB",)))["regions"] == ["NA"]
