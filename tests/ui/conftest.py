"""Fixtures for Streamlit AppTest page tests (shared by every ``tests/ui/test_*.py``).

* ``demo_db_url`` (session): a DuckDB file in a session tmp dir filled by
  ``crm_data.demo.generate(engine, accounts=400, seed=7)``; the writing engine is
  disposed before any test reads it. Returns its SQLAlchemy URL.
* ``demo_engine`` (session): a READ-ONLY engine on that file (the same configuration the
  dashboard uses, so DuckDB lets both share the file in this process). Use it to compute
  the numbers a page should show: ``kpis.churn_rate(demo_engine, filters, "month")``.
* ``app_db`` (function): points ``CRM_DATABASE_URL`` at the demo database for this test
  and clears Streamlit's data/resource caches before and after, so no page sees another
  test's database or cached results. Returns the URL.
* ``app`` (function, uses ``app_db``): factory ``app("pages/1_Sales_pipeline.py",
  query_params=None)`` -> a NOT yet run ``AppTest`` for that script (absolute path, a
  generous ``default_timeout`` for this slow shared machine). Call ``.run()`` yourself.
* ``default_filters`` (session): ``kpis.Filters`` equal to what the filter bar shows
  with no URL parameters (``ui.filters.default_range`` on the demo data's date range).
* ``PROJECT_ROOT``: the project folder (for ``AppTest.from_file`` paths).

Example::

    def test_page_renders(app):
        at = app("pages/3_Service.py").run()
        assert not at.exception
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import streamlit as st
from streamlit.testing.v1 import AppTest

from crm_data.engines import make_engine
from kpis.filters import Filters, data_date_range
from tests.conftest import write_demo_database

PROJECT_ROOT = Path(__file__).resolve().parents[2]
APP_TIMEOUT = 120  # seconds per AppTest run: the machine is shared and slow
DEMO_ACCOUNTS = 400
DEMO_SEED = 7


@pytest.fixture(scope="session")
def demo_db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A demo DuckDB file (400 accounts, seed 7), written once per test session."""
    return write_demo_database(tmp_path_factory.mktemp("ui-demo"), DEMO_ACCOUNTS, DEMO_SEED)


@pytest.fixture(scope="session")
def demo_engine(demo_db_url: str) -> Iterator[sa.Engine]:
    """Read-only engine on the demo database (same configuration as the dashboard's)."""
    engine = make_engine(demo_db_url, read_only=True)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def default_filters(demo_engine: sa.Engine) -> Filters:
    """The filters the sidebar starts with when the URL carries none."""
    from ui.filters import default_range

    start, end = default_range(data_date_range(demo_engine))
    return Filters(start=start, end=end)


def _clear_streamlit_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def app_db(demo_db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``CRM_DATABASE_URL`` -> the demo database for this test, with clean Streamlit caches."""
    monkeypatch.setenv("CRM_DATABASE_URL", demo_db_url)
    _clear_streamlit_caches()
    yield demo_db_url
    _clear_streamlit_caches()


@pytest.fixture
def app(app_db: str) -> Callable[..., AppTest]:
    """Factory: ``app("dashboard.py", query_params={"segment": ["SMB"]})`` -> an AppTest, not run."""

    def make(script: str = "dashboard.py", query_params: dict[str, object] | None = None) -> AppTest:
        at = AppTest.from_file(str(PROJECT_ROOT / script), default_timeout=APP_TIMEOUT)
        if query_params:
            at.query_params = dict(query_params)
        return at

    return make
