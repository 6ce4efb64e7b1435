"""ui.navigation: the sidebar lists the pages by their names ("Overview", not "dashboard"),
on every page, and Streamlit's own file-named list is switched off."""

from __future__ import annotations

import re
import tomllib

import pytest
from streamlit.testing.v1 import AppTest

from ui.navigation import PAGES, entries, label_from_file

from .conftest import PROJECT_ROOT

EXPECTED = [
    "Overview",
    "Sales pipeline",
    "Customers & churn",
    "Service",
    "Customer feedback",
    "Marketing & retention cost",
    "Forecast",
    "Goals",
    "Data quality",
    "Import",
    "Audit log",
    "Alerts",
    "Reports",
]


def _sidebar_links(at) -> list[tuple[str, str]]:
    return [(link.proto.label, link.proto.page) for link in at.sidebar.get("page_link")]


def test_streamlit_own_page_list_is_hidden():
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showSidebarNavigation"] is False


def test_every_page_script_has_exactly_one_entry_and_the_overview_comes_first():
    scripts = [e.script for e in entries()]
    on_disk = ["dashboard.py", *sorted(f"pages/{p.name}" for p in (PROJECT_ROOT / "pages").glob("*.py"))]
    assert sorted(scripts) == sorted(on_disk)
    assert len(set(scripts)) == len(scripts)
    assert scripts[0] == "dashboard.py" and entries()[0].label == "Overview"


def test_an_unlisted_page_still_gets_a_readable_entry(tmp_path):
    (tmp_path / "pages").mkdir()
    (tmp_path / "dashboard.py").write_text("")
    (tmp_path / "pages" / "9_Win_loss_review.py").write_text("")
    found = entries(tmp_path)
    assert [e.label for e in found] == ["Overview", "Win loss review"]
    assert label_from_file("pages/10_Churn.py") == "Churn"


@pytest.mark.parametrize("script", [None, "pages/3_Service.py", "pages/8_Import.py"])
def test_the_sidebar_links_every_page_by_name(app, script):
    at = app("dashboard.py").run()
    if script:
        at.switch_page(script).run()
        assert at.title[0].value != "Overview"
    assert not at.exception
    links = _sidebar_links(at)
    assert [label for label, _page in links] == EXPECTED
    assert "dashboard" not in [label.lower() for label, _page in links]
    # the URL paths of classic discovery: "" for dashboard.py, "Sales_pipeline" for 1_Sales_pipeline.py
    assert [page for _label, page in links] == [""] + [
        re.sub(r"^\d+_", "", e.script.removeprefix("pages/").removesuffix(".py")) for e in PAGES[1:]
    ]


def test_the_links_are_there_when_the_database_is_missing(app, monkeypatch, tmp_path):
    monkeypatch.setenv("CRM_DATABASE_URL", f"duckdb:///{tmp_path / 'missing.duckdb'}")
    at = app("dashboard.py").run()
    assert not at.exception
    assert [label for label, _page in _sidebar_links(at)] == EXPECTED
    assert any("no database yet" in i.value.lower() for i in at.info)


def test_a_page_started_alone_links_what_streamlit_knows_without_failing(app_db):
    # AppTest of one page file: Streamlit knows only that script (as its main page, while the
    # links resolve against pages/pages/), so unknown links are left out instead of raising
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "3_Service.py"), default_timeout=120).run()
    assert not at.exception
    assert set(label for label, _page in _sidebar_links(at)) <= set(EXPECTED)
    assert at.title[0].value == "Service"
