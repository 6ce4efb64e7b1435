"""The sidebar's page navigation, with the names people say ("Overview", "Sales pipeline").

Streamlit's classic ``pages/`` discovery would name the first entry after the entry script
("dashboard") and the others after their file names. ``.streamlit/config.toml`` hides that
list (``client.showSidebarNavigation = false``) and ``navigation()`` draws this one instead
with ``st.page_link``. ``ui.filters.global_filters()`` calls it first, so it is on every page
(also when the database is missing and the filters cannot be drawn).

Classic discovery stays in charge of routing (``/Sales_pipeline`` …): it is the arrangement
that works both in AppTest and in the browser (see ../shared/notes/streamlit-pages.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

PROJECT_DIR = Path(__file__).resolve().parent.parent
MAIN_SCRIPT = "dashboard.py"
PAGES_DIR = "pages"


@dataclass(frozen=True)
class PageEntry:
    """One navigation entry: the script (relative to the project), its label and icon."""

    script: str
    label: str
    icon: str | None = None


#: The pages in sidebar order, labelled as in their titles. A ``pages/*.py`` missing here
#: still gets an entry (labelled from its file name, after these).
PAGES: tuple[PageEntry, ...] = (
    PageEntry(MAIN_SCRIPT, "Overview", ":material/monitoring:"),
    PageEntry("pages/1_Sales_pipeline.py", "Sales pipeline", ":material/filter_alt:"),
    PageEntry("pages/2_Customers_and_churn.py", "Customers & churn", ":material/group:"),
    PageEntry("pages/3_Service.py", "Service", ":material/support_agent:"),
    PageEntry("pages/4_Customer_feedback.py", "Customer feedback", ":material/reviews:"),
    PageEntry("pages/5_Marketing_and_retention_cost.py", "Marketing & retention cost", ":material/campaign:"),
    PageEntry("pages/6_Forecast.py", "Forecast", ":material/trending_up:"),
    PageEntry("pages/10_Goals.py", "Goals", ":material/flag:"),
    PageEntry("pages/7_Data_quality.py", "Data quality", ":material/rule:"),
    PageEntry("pages/8_Import.py", "Import", ":material/upload:"),
    PageEntry("pages/9_Audit_log.py", "Audit log", ":material/policy:"),
    PageEntry("pages/11_Alerts.py", "Alerts", ":material/notifications:"),
    PageEntry("pages/12_Reports.py", "Reports", ":material/schedule_send:"),
)

#: The role a page needs (the page itself refuses lower roles: ``ui.auth.require``).
PAGE_ROLES: dict[str, str] = {
    "pages/8_Import.py": "admin",
    "pages/9_Audit_log.py": "admin",
    "pages/12_Reports.py": "analyst",
}


def label_from_file(script: str) -> str:
    """``pages/9_Win_loss_review.py`` -> "Win loss review" (classic discovery's rule, readable)."""
    stem = re.sub(r"^\d+[_\-\s]*", "", Path(script).stem)
    text = stem.replace("_", " ").strip() or Path(script).stem
    return text[0].upper() + text[1:]


def entries(project_dir: Path = PROJECT_DIR) -> list[PageEntry]:
    """The navigation entries whose scripts exist: ``PAGES`` in order, then any other page."""
    listed = [e for e in PAGES if (project_dir / e.script).is_file()]
    known = {e.script for e in PAGES}
    others = sorted(
        (p for p in (project_dir / PAGES_DIR).glob("*.py") if not p.name.startswith("_")),
        key=lambda p: p.name,
    )
    extra = [
        PageEntry(f"{PAGES_DIR}/{p.name}", label_from_file(p.name))
        for p in others
        if f"{PAGES_DIR}/{p.name}" not in known
    ]
    return listed + extra


def navigation() -> None:
    """Check who is looking (``ui.auth.gate()``: the sign-in form and a stop when nobody is
    signed in), then draw the page links at the top of the sidebar (the current page is
    highlighted) and who is signed in. Pages above the user's role are left out of the list
    (their scripts refuse such users themselves).

    A page Streamlit has not registered is left out instead of failing: that only happens
    when the app is started from another script than ``dashboard.py`` (e.g. an AppTest of
    one page file alone), where the other pages do not exist for Streamlit.
    """
    from ui import auth

    user = auth.gate()
    sidebar = st.sidebar
    with sidebar.container(key="crm_navigation"):
        for entry in entries():
            if not user.may(PAGE_ROLES.get(entry.script, auth.VIEWER)):
                continue
            try:
                st.page_link(entry.script, label=entry.label, icon=entry.icon)
            except StreamlitPageNotFoundError:
                continue
    auth.sidebar_badge()
    sidebar.divider()
