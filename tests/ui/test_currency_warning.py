"""Pages that show money say when amounts mix currencies (ui.currency): a Salesforce org in
PEN, MXN, COP and USD imported with the dated rates of every currency but COP."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import kpis
from crm_data import schema
from crm_data.engines import make_engine
from crm_data.importing import import_paths
from kpis.currencies import currency_status, money_by_currency
from tests.crm_data.mappings.test_salesforce_exports import _org_folder
from tests.ui.conftest import APP_TIMEOUT, PROJECT_ROOT

#: The money of the view per currency as written (the default range, May 2023 - May 2024,
#: holds the four won deals; the open pipeline has no dates): COP 200,000,000 won;
#: MXN 850,000 won, 300,000 open; PEN 375,000 won; USD 50,000 won, 80,000 open.
EXPECTED = [
    ("COP", "0.00", "200,000,000.00", "0.00", "NO"),
    ("MXN", "0.00", "850,000.00", "300,000.00", "yes"),
    ("PEN", "0.00", "375,000.00", "0.00", "yes"),
    ("USD", "0.00", "50,000.00", "80,000.00", "yes"),
]


@pytest.fixture(scope="module")
def mixed_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("mixed")
    url = f"duckdb:///{folder / 'crm.duckdb'}"
    engine = make_engine(url)
    try:
        schema.create_schema(engine)
        report = import_paths(
            engine,
            [_org_folder(folder / "export", CurrencyType=True)],
            mapping="salesforce",
            reporting_currency="USD",
        )
        assert report.ok, report.render()
    finally:
        engine.dispose()
    return url


@pytest.fixture
def mixed_app(mixed_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CRM_DATABASE_URL", mixed_url)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield mixed_url
    st.cache_data.clear()
    st.cache_resource.clear()


def _run(script: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / script), default_timeout=APP_TIMEOUT).run()
    assert not at.exception, at.exception
    return at


def test_money_by_currency_as_written(mixed_url: str) -> None:
    engine = make_engine(mixed_url, read_only=True)
    try:
        assert currency_status(engine) == ("USD", ("COP",))
        table = money_by_currency(engine, kpis.Filters(dt.date(2024, 1, 1), dt.date(2025, 1, 1)))
    finally:
        engine.dispose()
    assert table.values.tolist() == [
        ["COP", 0.0, 200000000.0, 0.0, False],
        ["MXN", 0.0, 850000.0, 300000.0, True],
        ["PEN", 0.0, 375000.0, 0.0, True],
        ["USD", 0.0, 50000.0, 80000.0, True],
    ]


@pytest.mark.parametrize("script", ["dashboard.py", "pages/1_Sales_pipeline.py"])
def test_pages_that_show_money_say_which_currencies_are_not_converted(mixed_app: str, script: str) -> None:
    at = _run(script)
    warnings = [w.value for w in at.warning if "not converted" in w.value]
    assert warnings == [
        "**Amounts in COP are not converted to USD**: import exchange rates for them (Salesforce: "
        "DatedConversionRate.csv or CurrencyType.csv; or an exchange_rates.csv). Until then money figures add "
        "them as written; per currency:"
    ]
    (table,) = [frame.value for frame in at.dataframe if "open pipeline" in frame.value.columns]
    assert [tuple(row) for row in table.values.tolist()] == EXPECTED
    assert list(table.columns) == [
        "currency",
        "payments (range)",
        "won deals (range)",
        "open pipeline",
        "in USD",
    ]


def test_no_warning_when_every_amount_is_converted(app) -> None:
    at = app().run()  # the demo database: no currency at all
    assert not at.exception
    assert not [w for w in at.warning if "not converted" in w.value]
