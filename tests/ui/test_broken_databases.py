"""A broken or unreachable database: every page shows ONE ``st.error`` with the sentence
of ``crm_data.engines.explain_database_error`` and stops, instead of an exception box.

The damaged DuckDB files are copies of the session's demo file (``demo_db_url``), damaged
like in ``tests/crm_data/test_broken_databases.py``; the PostgreSQL cases ask the real
server at 127.0.0.1:5432 (or nothing at port 1).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.crm_data.test_broken_databases import (
    PASSWORD,
    overwrite_table_data,
    pg_missing_database,
    pg_wrong_port,
    truncate_to_half,
)
from tests.ui.conftest import APP_TIMEOUT, PROJECT_ROOT


def _damaged_copy(demo_db_url: str, tmp_path: Path, damage: Callable[[Path], object]) -> str:
    path = tmp_path / "damaged.duckdb"
    shutil.copy(sa.make_url(demo_db_url).database, path)
    damage(path)
    return f"duckdb:///{path}"


#: case -> (URL maker, what the error says)
CASES: dict[str, tuple[Callable[[str, Path], str], list[str]]] = {
    "duckdb-truncated": (
        lambda demo, tmp: _damaged_copy(demo, tmp, truncate_to_half),
        ["The DuckDB file", "damaged.duckdb is damaged (truncated", "restore it from a backup"],
    ),
    "duckdb-overwritten": (
        lambda demo, tmp: _damaged_copy(demo, tmp, overwrite_table_data),
        ["damaged.duckdb is damaged (part of it was overwritten", "`python -m crm_data demo`"],
    ),
    "pg-wrong-port": (
        lambda demo, tmp: pg_wrong_port(),
        ["No PostgreSQL server is listening at 127.0.0.1:1 (connection refused)", "CRM_DATABASE_URL"],
    ),
    "pg-missing-database": (
        lambda demo, tmp: pg_missing_database(),
        ['has no database "crm_missing_', "createdb"],
    ),
}


@pytest.fixture
def broken_app(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], AppTest]:
    """Factory: ``broken_app(url, script)`` -> that page, run on the database of ``url``."""

    def run(url: str, script: str) -> AppTest:
        monkeypatch.setenv("CRM_DATABASE_URL", url)
        st.cache_data.clear()
        st.cache_resource.clear()
        return AppTest.from_file(str(PROJECT_ROOT / script), default_timeout=APP_TIMEOUT).run()

    yield run
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.mark.parametrize("script", ["dashboard.py", "pages/1_Sales_pipeline.py"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_page_shows_one_error_saying_what_to_do(
    case: str, script: str, demo_db_url: str, tmp_path: Path, broken_app: Callable[[str, str], AppTest]
) -> None:
    make, says = CASES[case]
    at = broken_app(make(demo_db_url, tmp_path), script)
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1, [e.value for e in at.error]
    message = at.error[0].value
    for part in says:
        assert part in message, message
    assert PASSWORD not in message
    assert not any("has no CRM tables" in i.value for i in at.info)
    assert not at.metric  # the page stopped after the message
    assert not at.title


def test_the_import_page_shows_the_error_too(
    demo_db_url: str, tmp_path: Path, broken_app: Callable[[str, str], AppTest]
) -> None:
    url = _damaged_copy(demo_db_url, tmp_path, overwrite_table_data)
    at = broken_app(url, "pages/8_Import.py")
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1, [e.value for e in at.error]
    assert "is damaged (part of it was overwritten" in at.error[0].value
    assert not at.info  # not "No CRM data yet"


def test_a_reachable_empty_database_still_says_it_has_no_crm_tables(
    pg_database_url: str, broken_app: Callable[[str, str], AppTest]
) -> None:
    """The scratch PostgreSQL database exists and is empty: the info, not an error."""
    at = broken_app(pg_database_url, "dashboard.py")
    assert not at.exception
    assert not at.error
    assert any("has no CRM tables yet" in i.value for i in at.info)
