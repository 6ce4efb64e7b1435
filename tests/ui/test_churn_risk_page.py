"""The Customers & churn page's "Churn risk" section on a demo database whose today is
pinned (15 Jun 2024), so the page shows the same numbers on any real date: the ranking is
``forecasting.customer_models.churn_risk``'s, it reacts to the filters, the holdout check
and the projected cohort survival are drawn, small selections warn, empty ones say so."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from crm_data.engines import make_engine
from forecasting import customer_models
from kpis.filters import Filters, data_date_range, dimension_values
from tests.ui.conftest import APP_TIMEOUT, PROJECT_ROOT
from tests.ui.test_dashboard import _empty_region_country
from ui.filters import default_range

PAGE = "pages/2_Customers_and_churn.py"
TODAY = dt.date(2024, 6, 15)


@pytest.fixture(scope="module")
def pinned_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    from crm_data.demo import generate

    url = f"duckdb:///{Path(tmp_path_factory.mktemp('churn-risk-ui')) / 'demo.duckdb'}"
    writer = make_engine(url)
    try:
        generate(writer, accounts=400, seed=7, today=TODAY, progress=False)
    finally:
        writer.dispose()
    return url


@pytest.fixture
def page(pinned_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    monkeypatch.setenv("CRM_DATABASE_URL", pinned_db)
    st.cache_data.clear()
    st.cache_resource.clear()

    def make(query_params: dict[str, object] | None = None) -> AppTest:
        at = AppTest.from_file(str(PROJECT_ROOT / PAGE), default_timeout=APP_TIMEOUT)
        if query_params:
            at.query_params = dict(query_params)
        return at.run()

    yield make
    st.cache_data.clear()
    st.cache_resource.clear()


def _figure(at: AppTest, title: str) -> dict:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if title in (spec["layout"].get("title") or {}).get("text", ""):
            return spec
    raise AssertionError(f"no chart titled {title!r}")


def _array(value) -> list:
    """A Plotly JSON array: a plain list, or plotly's base64 typed array ``{dtype, bdata}``."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).tolist()
    return list(value)


def _expected(pinned_db: str, **filters: object) -> customer_models.ChurnRisk:
    engine = make_engine(pinned_db, read_only=True)
    try:
        bounds = data_date_range(engine)
        start, end = default_range(bounds)
        f = Filters(start=start, end=end, **filters)
        return customer_models.churn_risk(
            engine, f, unit="week", horizon=52, as_of=min(f.end, bounds[1] + dt.timedelta(days=1))
        )
    finally:
        engine.dispose()


def test_churn_risk_is_the_last_section_and_ranks_like_the_model(page, pinned_db):
    at = page()
    assert not at.exception, [e.value for e in at.exception]
    assert [h.value for h in at.main.header][-1] == "Churn risk"
    expected = _expected(pinned_db).accounts
    shown = _figure(at, "Accounts by probability of being inactive")["data"][0]
    top = expected.sort_values(["inactive_probability", "account_id"], ascending=[False, True]).head(20)
    assert _array(shown["x"])[::-1] == pytest.approx(top["inactive_probability"].tolist())
    table = next(d.value for d in at.dataframe if "clv_revenue" in d.value.columns)
    assert len(table) == len(expected)
    assert table["account_id"].head(20).tolist() == top["account_id"].tolist()
    # every number has its definition beside it
    captions = " ".join(c.value for c in at.caption)
    for word in ("inactive_probability", "expected_transactions", "clv_revenue", "discounted"):
        assert word in captions
    # the model's warning about scheduled (subscription) payments is shown
    assert "schedule" in captions
    # holdout check beside the model, projected cohort survival
    assert "Holdout" in captions and "predicted" in captions
    holdout = _figure(at, "Holdout: predicted vs actual payment days")
    assert [t["name"] for t in holdout["data"]] == ["Actual", "Predicted"]
    survival = _figure(at, "Cohort survival: observed and projected")
    names = [t["name"] for t in survival["data"]]
    assert names[:2] == ["All cohorts, observed", "All cohorts, sBG"]
    projected = survival["data"][1]
    observed = survival["data"][0]
    assert max(_array(projected["x"])) == max(_array(observed["x"])) + 24  # drawn past the observed months


def test_ranking_by_expected_value_and_export_data(page, pinned_db):
    at = page()
    at.selectbox(key="risk_rank").set_value("clv_revenue").run()
    assert not at.exception
    expected = _expected(pinned_db).accounts
    top = expected.sort_values(["clv_revenue", "account_id"], ascending=[False, True]).head(20)
    shown = _figure(at, "Accounts by expected remaining value")["data"][0]
    assert _array(shown["x"])[::-1] == pytest.approx(top["clv_revenue"].tolist())
    # only the accounts that paid in the last 8 weeks: the ranking among them
    at.toggle(key="risk_recent").set_value(True).run()
    assert not at.exception
    recent = expected[expected["T"] - expected["recency"] <= 8]
    assert 0 < len(recent) < len(expected)
    table = next(d.value for d in at.dataframe if "clv_revenue" in d.value.columns)
    assert sorted(table["account_id"]) == sorted(recent["account_id"])


def test_a_small_segment_warns_and_an_empty_one_says_no_data(page, pinned_db):
    engine = make_engine(pinned_db, read_only=True)
    try:
        segments = dimension_values(engine)["segments"]
        sizes = {s: len(_expected(pinned_db, segments=(s,)).accounts) for s in segments}
    finally:
        engine.dispose()
    smallest = min(sizes, key=sizes.get)
    at = page({"segment": smallest})
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    if sizes[smallest] < customer_models.MIN_CUSTOMERS:
        assert "Fewer than 30 accounts" in captions
    assert "cohorts have fewer than 30 customers" in captions  # per-month cohorts of one segment
    engine = make_engine(pinned_db, read_only=True)
    try:
        region, country = _empty_region_country(engine)
    finally:
        engine.dispose()
    at = page({"region": region, "country": country})
    assert not at.exception
    assert [h.value for h in at.main.header][-1] == "Churn risk"
    assert any("No account paid" in i.value for i in at.info)


def test_table_matches_expected_columns(pinned_db):
    accounts = _expected(pinned_db).accounts
    assert isinstance(accounts, pd.DataFrame)
    assert {"inactive_probability", "clv_revenue", "expected_amount"} <= set(accounts.columns)


def test_a_long_ranking_lists_its_first_rows_and_downloads_every_account(page, pinned_db, monkeypatch):
    """Beyond ``RISK_TABLE_ROWS`` accounts the table and the chart's export hold the first
    rows of the ranking (names read for those only); the whole list is two downloads."""
    monkeypatch.setenv("CRM_RISK_TABLE_ROWS", "25")
    at = page()
    assert not at.exception, [e.value for e in at.exception]
    expected = _expected(pinned_db).accounts
    assert len(expected) > 25
    table = next(d.value for d in at.dataframe if "clv_revenue" in d.value.columns)
    top = expected.sort_values(["inactive_probability", "account_id"], ascending=[False, True]).head(25)
    assert table["account_id"].tolist() == top["account_id"].tolist()
    assert table["name"].tolist() == top["name"].tolist()
    titles = " ".join(m.value for m in at.markdown)
    assert f"The first 25 of the {len(expected):,} accounts that paid in this range" in titles
    labels = [b.proto.label for b in at.get("download_button")]
    assert f"All {len(expected):,} accounts that paid in this range (CSV)" in labels
    assert f"All {len(expected):,} accounts that paid in this range (XLSX)" in labels
