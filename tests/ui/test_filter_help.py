"""Filters that help (issue 14, point 10): the lists narrow each other, a chosen value the
others no longer leave is kept and said, the date range applies at once."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from kpis.filters import NARROWING, Scope, dimension_combinations, dimension_values, narrowed_options

# --- the narrowing rule, by hand ------------------------------------------------------------

KNOWN = {
    "segments": ["Enterprise", "SMB"],
    "industries": ["Retail", "Tech"],
    "regions": ["APAC", "EMEA"],
    "countries": ["Germany", "Japan", "Singapore"],
    "company_sizes": ["1-10", "1000+"],
    "acquisition_channels": ["ads", "web"],
    "owners": ["U1", "U2", "U3"],
    "products": ["P1", "P2"],
}
# (segment, industry, region, country, company size, channel, owner)
COMBINATIONS = pd.DataFrame(
    [
        ("Enterprise", "Tech", "EMEA", "Germany", "1000+", "ads", "U1"),
        ("SMB", "Retail", "APAC", "Japan", "1-10", "web", "U2"),
        ("SMB", "Tech", "APAC", "Singapore", "1-10", "web", "U3"),  # U3 owns a deal of this account
    ],
    columns=list(NARROWING),
).astype("category")


def test_region_narrows_countries_and_owners():
    offered = narrowed_options(KNOWN, COMBINATIONS, {"regions": ["APAC"]})
    assert offered["countries"] == ["Japan", "Singapore"]
    assert offered["owners"] == ["U2", "U3"]
    assert offered["segments"] == ["SMB"]
    assert offered["regions"] == ["APAC", "EMEA"]  # a list is not narrowed by itself
    assert offered["products"] == ["P1", "P2"]  # products narrow nothing and are not narrowed


def test_several_lists_narrow_together():
    offered = narrowed_options(KNOWN, COMBINATIONS, {"regions": ["APAC"], "industries": ["Tech"]})
    assert offered["countries"] == ["Singapore"]
    assert offered["owners"] == ["U3"]
    # industry is narrowed by the region only: APAC has Retail and Tech
    assert offered["industries"] == ["Retail", "Tech"]
    nothing = narrowed_options(KNOWN, COMBINATIONS, {})
    assert nothing == KNOWN


def test_combinations_come_from_accounts_and_their_deal_owners(db):
    from tests.kpis.more_fixtures import BASE, load, ts

    deal = {
        "deal_id": "D1",
        "account_id": "A4",
        "owner_id": "U2",
        "created_at": ts("2024-01-01"),
        "status": "open",
    }
    load(db, BASE, {"deals": [deal]})
    combinations = dimension_combinations(db)
    rows = [
        tuple(None if pd.isna(v) else v for v in r) for r in combinations.itertuples(index=False, name=None)
    ]
    accounts = {r["account_id"]: r for r in BASE["accounts"]}
    a4 = accounts["A4"]
    key = tuple(
        a4.get(c) for c in ("segment", "industry", "region", "country", "company_size", "acquisition_channel")
    )
    # A4 has no owner, but U2 owns one of its deals: both combinations are there
    assert (*key, None) in rows and (*key, "U2") in rows
    region = a4["region"]
    offered = narrowed_options(dimension_values(db), combinations, {"regions": [region]})
    assert "U2" in offered["owners"]
    # a scope without A4's region leaves its combinations out
    other = next(r["region"] for r in BASE["accounts"] if r["region"] != region)
    assert set(dimension_combinations(db, Scope(regions=[other]))["regions"]) == {other}


# --- in the app ---------------------------------------------------------------------------------


def _regions(demo_engine) -> dict[str, list[str]]:
    accounts = schema.accounts
    with demo_engine.connect() as c:
        rows = c.execute(sa.select(accounts.c.region, accounts.c.country).distinct()).fetchall()
    out: dict[str, list[str]] = {}
    for region, country in rows:
        if region and country:
            out.setdefault(region, []).append(country)
    return {r: sorted(c) for r, c in out.items()}


def test_region_narrows_the_country_options_in_the_app(app, demo_engine):
    regions = _regions(demo_engine)
    region = sorted(regions, key=lambda r: len(regions[r]))[0]
    at = app().run()
    everything = at.sidebar.multiselect(key="country").options
    assert len(everything) > len(regions[region])
    at.sidebar.multiselect(key="region").set_value([region]).run()
    assert not at.exception
    assert at.sidebar.multiselect(key="country").options == regions[region]
    # the owners follow too: only owners of the region's accounts or of their deals
    owners = dimension_values(demo_engine)["owners"]
    narrowed = at.sidebar.multiselect(key="owner").options
    assert narrowed and len(narrowed) <= len(owners)


def test_a_chosen_value_the_others_exclude_is_kept_and_said(app, demo_engine):
    regions = _regions(demo_engine)
    region, other = sorted(regions)[:2]
    country = regions[other][0]
    at = app(query_params={"region": [region], "country": [country]}).run()
    assert not at.exception
    assert at.sidebar.multiselect(key="country").value == [country]  # kept, not silently dropped
    assert country in at.sidebar.multiselect(key="country").options
    notes = [str(c.value) for c in at.sidebar.caption if "No account matches" in str(c.value)]
    assert notes == [
        f":orange[:material/warning: No account matches region {region} with country {country}: kept as chosen, "
        "so nothing is counted — remove or change one of them.]"
    ]
    assert at.query_params["country"] in (country, [country])


def test_changing_the_date_range_recomputes_at_once(app, demo_engine, default_filters):
    import json

    import kpis
    from tests.ui.test_pages_service_feedback_marketing_forecast import plotly_values

    def sessions(at) -> list[float]:
        for chart in at.get("plotly_chart"):
            spec = json.loads(chart.proto.spec)
            for trace in spec["data"]:
                if trace.get("name") == "Sessions":
                    return plotly_values(trace["y"]).tolist()
        raise AssertionError("no web sessions chart")

    at = app("pages/5_Marketing_and_retention_cost.py").run()
    start = default_filters.start + dt.timedelta(days=31)  # a later first month: 12 months + the current one
    last = default_filters.end - dt.timedelta(days=1)
    assert len(sessions(at)) == len(kpis.web_metrics(demo_engine, default_filters, "month"))
    at.sidebar.date_input(key="date_range").set_value((start, last)).run()  # one change, one run
    assert not at.exception
    narrowed = kpis.web_metrics(demo_engine, default_filters.replace(start=start), "month")
    assert sessions(at) == narrowed["sessions"].astype(float).tolist()
    assert f"{start:%d %b %Y} – {last:%d %b %Y}" in str(at.caption[0].value)
    # a half-picked range (the calendar's first click) keeps the last full range and says so
    at.sidebar.date_input(key="date_range").set_value((start - dt.timedelta(days=31),)).run()
    assert not at.exception
    assert sessions(at) == narrowed["sessions"].astype(float).tolist()
    assert any("Pick an end date too" in str(c.value) for c in at.sidebar.caption)
