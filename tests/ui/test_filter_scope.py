"""Filters that say where they apply (issue 14, point 2): a chart whose KPI cannot honour an
active filter says so, on the page and in its export metadata; the page passes such a KPI
only the filters it honours."""

from __future__ import annotations

import datetime as dt
import json

import pytest

import kpis
from kpis import registry
from kpis.filters import Filters, Scope
from ui import filter_scope

MARKETING = "pages/5_Marketing_and_retention_cost.py"
SERVICE = "pages/3_Service.py"
WEB_NOTE = "Not filtered by: Segment, Company size (web traffic has no account)"
SOCIAL_NOTE = "Not filtered by: Segment, Company size (social media has no account)"


def captions(at) -> list[str]:
    return [str(c.value) for c in at.caption]


def figure_titles(at) -> list[str]:
    return [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]


# --- the declaration -------------------------------------------------------------------------


def test_honoured_dimensions_follow_the_tables_read():
    assert registry.honours(kpis.web_metrics) == frozenset()
    assert registry.honours(kpis.social_metrics) == frozenset()
    assert "pipelines" in registry.honours(kpis.win_rate)
    assert "pipelines" not in registry.honours(kpis.first_contact_resolution)
    assert {"segments", "owners", "products"} <= registry.honours(kpis.campaign_funnel)
    assert registry.get("web_ctr").honours == frozenset()
    assert registry.ignored(kpis.web_metrics, ["segments", "company_sizes"]) == [
        ("segments", "web traffic has no account"),
        ("company_sizes", "web traffic has no account"),
    ]
    assert registry.ignored(kpis.first_contact_resolution, ["segments", "pipelines"]) == [
        ("pipelines", "tickets have no pipeline")
    ]


def test_every_kpi_function_says_what_it_reads():
    import inspect

    functions = [getattr(kpis, n) for n in kpis.__all__ if callable(getattr(kpis, n))]
    takes_filters = [fn for fn in functions if "f" in inspect.signature(fn).parameters]
    assert takes_filters and [fn.__name__ for fn in takes_filters if fn not in registry.READS] == []


def test_note_and_honoured_filters():
    f = Filters(
        "2026-01-01",
        "2026-02-01",
        segments=["Enterprise"],
        company_sizes=["1-10"],
        scope=Scope(regions=["EMEA"]),
    )
    assert filter_scope.not_filtered_note(f, kpis.web_metrics) == WEB_NOTE
    assert filter_scope.not_filtered_note(f, kpis.churn_rate) is None
    assert filter_scope.not_filtered_note(f.replace(segments=(), company_sizes=()), kpis.web_metrics) is None
    stripped = filter_scope.honoured_filters(f, kpis.web_metrics)
    # the lists it cannot honour are gone; the date range and the user's scope stay
    assert stripped == Filters("2026-01-01", "2026-02-01", scope=Scope(regions=["EMEA"]))
    assert filter_scope.honoured_filters(f, kpis.churn_rate) == f


# --- the page ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_account_filters(demo_engine) -> dict[str, list[str]]:
    """Segment = Enterprise (or the first) and a company size none of its accounts has, if any."""
    values = kpis.dimension_values(demo_engine)
    return {"segment": [values["segments"][0]], "company_size": [values["company_sizes"][0]]}


def test_web_and_social_charts_say_they_are_not_filtered(
    app, demo_engine, default_filters, no_account_filters
):
    at = app(MARKETING, query_params=no_account_filters).run()
    assert not at.exception
    notes = [c for c in captions(at) if "Not filtered by" in c]
    # exactly the web-traffic and the social chart, nothing else (campaigns, costs, profit honour them)
    assert [n.split(" ", 1)[1] for n in notes] == [WEB_NOTE, SOCIAL_NOTE]
    # and the numbers are the unfiltered ones, which is what the note says
    web = kpis.web_metrics(demo_engine, default_filters, "month")
    drawn = next(
        json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
        if json.loads(c.proto.spec)["layout"]["title"]["text"].startswith("Web sessions")
    )
    sessions = next(t for t in drawn["data"] if t.get("name") == "Sessions")
    from tests.ui.test_pages_service_feedback_marketing_forecast import plotly_values

    assert plotly_values(sessions["y"]).tolist() == web["sessions"].astype(float).tolist()


def test_without_account_filters_no_chart_has_the_note(app):
    at = app(MARKETING).run()
    assert not at.exception
    assert not [c for c in captions(at) if "Not filtered by" in c]


def test_export_metadata_says_what_is_not_filtered(default_filters):
    import plotly.graph_objects as go

    from ui.filters import View
    from ui.report import PageReport

    view = View(filters=default_filters.replace(segments=("Enterprise",)))
    report = PageReport("Marketing", view)  # outside a Streamlit run: drawing is a no-op
    report.chart(go.Figure(), None, "Web", kpi_key="web_ctr")
    report.chart(go.Figure(), None, "Churn", kpi_key="churn_rate")
    assert report._meta("Web", "ctr")["Not filtered by"] == "Segment (web traffic has no account)"
    assert "Not filtered by" not in report._meta("Churn", "churn")
    # the whole-page PDF carries it beside the definition
    assert report.items[0].definition.endswith("Not filtered by: Segment (web traffic has no account).")
    assert "Not filtered by" not in report.items[1].definition


# --- an empty funnel says why ------------------------------------------------------------------


def test_an_empty_funnel_says_the_filters_exclude_every_account(app, demo_engine):
    import sqlalchemy as sa

    from crm_data import schema

    accounts = schema.accounts
    with demo_engine.connect() as c:
        pairs = set(c.execute(sa.select(accounts.c.segment, accounts.c.company_size).distinct()).fetchall())
        segments = sorted({s for s, _ in pairs if s})
        sizes = sorted({z for _, z in pairs if z})
    missing = next((s, z) for s in segments for z in sizes if (s, z) not in pairs)
    at = app(
        "pages/1_Sales_pipeline.py", query_params={"segment": [missing[0]], "company_size": [missing[1]]}
    ).run()
    assert not at.exception
    reason = (
        "No account matches these filters together (segment, company size), so no deal can be counted: "
        "remove or change one in the sidebar."
    )
    assert str(at.info[0].value) == reason
    # every empty section of the page gives the same reason, not a generic "no data"
    assert len(at.info) >= 5 and {str(i.value) for i in at.info} == {reason}


def test_an_empty_funnel_says_no_deals_were_created(app, demo_engine):
    import sqlalchemy as sa

    from crm_data import schema

    with demo_engine.connect() as c:
        first = c.execute(sa.select(sa.func.min(schema.deals.c.created_at))).scalar_one().date()
    # the date picker starts on 1 January of the first data year; the demo's first deal is later
    start, last = first.replace(month=1, day=1), first - dt.timedelta(days=1)
    assert start <= last
    at = app("pages/1_Sales_pipeline.py", query_params={"from": str(start), "to": str(last)}).run()
    assert not at.exception
    assert str(at.info[0].value) == (
        f"No deals were created between {start:%d %b %Y} and {last:%d %b %Y}: widen the date range in the sidebar."
    )


def test_the_campaign_table_shows_the_allocated_cost(app, demo_engine, default_filters):
    segment = kpis.dimension_values(demo_engine)["segments"][0]
    at = app(MARKETING, query_params={"segment": [segment]}).run()
    assert not at.exception
    expected = kpis.campaign_funnel(demo_engine, default_filters.replace(segments=(segment,)))
    table = next(df.value for df in at.dataframe if "share_of_sends" in df.value.columns)
    assert len(table) == len(expected) > 0
    assert table["cost"].tolist() == pytest.approx(
        (table["campaign_cost"] * table["share_of_sends"]).tolist(), nan_ok=True
    )
    assert table["cost"].sum() == pytest.approx(expected["cost"].sum())
    assert table["cost"].sum() < table["campaign_cost"].sum()  # not every campaign's whole cost
    assert any("Campaign cost is allocated to this selection" in c for c in captions(at))
