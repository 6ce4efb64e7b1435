"""The Overview page on the demo database: every card renders, and the numbers are
exactly what ``kpis`` returns for the same filters."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

import kpis
from charts.theme import fmt_value
from crm_data import schema
from kpis.filters import dimension_values
from tests.conftest import DEMO_TODAY
from ui.report import NO_DATA

CARD_TITLES = 10


def _metric(at, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no card {label!r} among {[m.label for m in at.metric]}"
    return found[0]


def _last_complete_month(filters) -> pd.Timestamp:
    # The card shows the last month of the range that has ended by the data's today (the day
    # after its last day: DEMO_TODAY, whatever the real date is).
    month = pd.Timestamp(min(filters.end, DEMO_TODAY.replace(day=1)))
    return month - pd.DateOffset(months=1)


def _expected(frame: pd.DataFrame, column: str, filters, unit: str) -> str:
    row = frame[frame["period"] == _last_complete_month(filters)]
    assert len(row) == 1
    return fmt_value(row[column].iloc[0], unit)


def test_overview_renders_every_card(app):
    at = app().run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(at.metric) == CARD_TITLES
    assert at.title[0].value == "Overview"
    assert any(e.label == "What's in the database" for e in at.expander)


def test_cards_match_kpis_before_and_after_a_segment_change(app, demo_engine, default_filters):
    at = app().run()
    churn = kpis.churn_rate(demo_engine, default_filters, "month")
    wins = kpis.win_rate(demo_engine, default_filters, "month")
    assert _metric(at, "Churn rate") == _expected(churn, "churn_rate", default_filters, "ratio")
    assert _metric(at, "Win rate") == _expected(wins, "win_rate", default_filters, "ratio")
    before = {m.label: m.value for m in at.metric}

    segment = dimension_values(demo_engine)["segments"][0]
    at.sidebar.multiselect(key="segment").set_value([segment]).run()
    assert not at.exception
    narrowed = default_filters.replace(segments=(segment,))
    churn = kpis.churn_rate(demo_engine, narrowed, "month")
    wins = kpis.win_rate(demo_engine, narrowed, "month")
    assert _metric(at, "Churn rate") == _expected(churn, "churn_rate", narrowed, "ratio")
    assert _metric(at, "Win rate") == _expected(wins, "win_rate", narrowed, "ratio")
    after = {m.label: m.value for m in at.metric}
    assert after != before  # one segment of several has fewer customers, revenue, deals


def test_period_change_switches_cards_to_quarters(app, demo_engine, default_filters):
    at = app(query_params={"period": "quarter"}).run()
    assert not at.exception
    # the caption under the metrics names the quarter compared with the one before
    churn = kpis.churn_rate(demo_engine, default_filters, "quarter")
    today = pd.Timestamp(DEMO_TODAY)
    complete = churn[churn["period"] + pd.DateOffset(months=3) <= today]
    if len(complete):
        expected = fmt_value(complete["churn_rate"].iloc[-1], "ratio")
        assert _metric(at, "Churn rate") == expected


def _empty_region_country(engine) -> tuple[str, str]:
    """A region and a country that no account has together."""
    a = schema.accounts
    with engine.connect() as conn:
        regions = [r for (r,) in conn.execute(sa.select(a.c.region).distinct()) if r]
        countries = [c for (c,) in conn.execute(sa.select(a.c.country).distinct()) if c]
        pairs = set(conn.execute(sa.select(a.c.region, a.c.country).distinct()).all())
    for region in regions:
        for country in countries:
            if (region, country) not in pairs:
                return region, country
    raise AssertionError("every region has every country: no empty combination in the demo data")


def test_empty_selection_shows_no_data(app, demo_engine):
    region, country = _empty_region_country(demo_engine)
    at = app(query_params={"region": region, "country": country}).run()
    assert not at.exception
    assert not at.error
    assert any(NO_DATA in i.value for i in at.info)


def _fresh_app(monkeypatch, url: str):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.ui.conftest import APP_TIMEOUT, PROJECT_ROOT

    monkeypatch.setenv("CRM_DATABASE_URL", url)
    st.cache_data.clear()
    st.cache_resource.clear()
    return AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=APP_TIMEOUT)


def test_missing_database_says_how_to_create_it(tmp_path, monkeypatch):
    at = _fresh_app(monkeypatch, f"duckdb:///{tmp_path / 'nothing-here.duckdb'}").run()
    assert not at.exception
    assert any("python -m crm_data demo" in i.value for i in at.info)
    assert not at.metric
    assert not (tmp_path / "nothing-here.duckdb").exists()  # read-only: nothing was created


def test_database_without_tables_says_how_to_fill_it(tmp_path, monkeypatch):
    from crm_data.engines import make_engine

    path = tmp_path / "empty.duckdb"
    writer = make_engine(f"duckdb:///{path}")
    with writer.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE unrelated (x INTEGER)")
        conn.commit()
    writer.dispose()
    at = _fresh_app(monkeypatch, f"duckdb:///{path}").run()
    assert not at.exception
    assert any("has no CRM tables yet" in i.value for i in at.info)


def test_cards_with_a_short_title_name_the_kpi_in_full_in_their_help(app):
    """Long KPI names get a card title that fits (tests/browser checks none is cut short);
    the help then starts with the full name."""
    from kpis import registry

    at = app().run()
    shortened = [entry for entry in registry.KPIS if entry.short_title]
    assert {e.key for e in shortened} >= {"first_contact_resolution", "retention_cost"}
    cards = {m.label: m for m in at.metric}
    for entry in shortened:
        assert len(entry.short_title) < len(entry.title)
        card = cards[entry.short_title]
        assert card.help.startswith(f"**{entry.title}**: ")
        assert card.help.endswith(entry.definition)
    assert cards["Churn rate"].help == registry.get("churn_rate").definition


LOW_SAMPLE_MARK = "Fewer than 30 observations: read with care."


def _cards(at) -> dict[str, tuple[str, list[str]]]:
    """Card title -> (value shown, captions in the card's column)."""
    cards = {}
    for column in at.columns:
        if len(column.metric) == 1:
            metric = column.metric[0]
            cards[metric.label] = (metric.value, [c.value for c in column.caption])
    return cards


def test_low_sample_cards_carry_the_mark(tmp_path, monkeypatch):
    """The hand-written KPI fixture (tests/kpis/fixtures.py) as the database: its data end on
    10 Mar 2024, so March 2024 is a partial period and the cards show February 2024, the last
    complete month (kpis.core.is_partial).

    February 2024 by hand: customers at 1 Feb A1 (S1 100 + S5 10), A3 (20), A4 (30): 3 < 30;
    A4 ends 20 Feb -> churn 1/3 = 33.3 %; NRR: MRR 160 at start, A1 loses the add-on (-10),
    A4 churns (-30) -> 120/160 = 75.0 %; retention cost K3 30 / 2 retained (A1, A3) = $15.00.
    Each rests on fewer than 30 customers: the same mark as the win-rate card (4 deals closed
    in February). Active customers (a count) and revenue carry none.
    """
    from crm_data.engines import make_engine
    from tests.kpis import fixtures

    path = tmp_path / "hand.duckdb"
    writer = make_engine(f"duckdb:///{path}")
    schema.create_schema(writer)
    fixtures.load(writer)
    writer.dispose()
    at = _fresh_app(monkeypatch, f"duckdb:///{path}").run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    cards = _cards(at)
    assert len(cards) == CARD_TITLES
    assert cards["Churn rate"][0] == fmt_value(1 / 3, "ratio")
    assert cards["Net revenue retention"][0] == fmt_value(120 / 160, "ratio")
    assert cards["Retention cost each"][0] == fmt_value(15.0, "money")
    for title in ("Churn rate", "Net revenue retention", "Retention cost each", "Win rate"):
        assert any(LOW_SAMPLE_MARK in c for c in cards[title][1]), (title, cards[title])
    for title in ("Active customers", "Revenue"):
        assert not any(LOW_SAMPLE_MARK in c for c in cards[title][1]), (title, cards[title])
