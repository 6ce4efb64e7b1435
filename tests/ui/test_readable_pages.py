"""Issue 14, point 9: no raw code on any page. Every page runs under AppTest on the demo
database; no table column header or cell, no figure legend entry, category, tick label,
subplot title or hover name, and no option of a select box reads like a stored code
(``website_visit``, ``paid_search``, ``poor_support``: ``^[a-z]+(_[a-z]+)+$``).

The figures are read from the ``plotly_chart`` elements' specs, the tables from the
``dataframe`` elements (their column labels from the column configuration Streamlit gets).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from charts.theme import NOT_FROM_ZERO

from .conftest import PROJECT_ROOT

RAW_CODE = re.compile(r"^[a-z]+(_[a-z]+)+$")
#: a code inside a longer text (a hover "poor_support: 12"), outside Plotly's %{…} fields
RAW_CODE_WORD = re.compile(r"(?<![\w{.%\[])[a-z]+(?:_[a-z]+)+(?![\w(\[])")
PLACEHOLDER = re.compile(r"%\{[^}]*\}")

PAGES = [
    "dashboard.py",
    *sorted(str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "pages").glob("*.py")),
]


def _array(value: object) -> list:
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).tolist()
    if isinstance(value, list | tuple):
        return list(value)
    return [] if value is None else [value]


def _strings(values: object) -> Iterator[str]:
    for value in _array(values):
        if isinstance(value, list):
            yield from _strings(value)
        elif isinstance(value, str):
            yield value


def _hover_words(text: str) -> list[str]:
    return RAW_CODE_WORD.findall(PLACEHOLDER.sub(" ", text))


def figure_codes(spec: dict) -> list[str]:
    """Raw codes a reader meets in one Plotly figure spec: legend entries, category values,
    tick labels, annotations (subplot titles), hover names and hover texts."""
    found: list[str] = []
    where = spec.get("layout", {}).get("title", {}).get("text", "?")

    def check(kind: str, text: str) -> None:
        if RAW_CODE.match(text.strip()):
            found.append(f"{where!r} {kind}: {text!r}")

    for trace in spec.get("data", []):
        if trace.get("showlegend", True) is not False and trace.get("name"):
            check("legend", str(trace["name"]))
        for axis in ("x", "y", "labels", "ids"):
            for text in _strings(trace.get(axis)):
                check(f"{axis} category", text)
        for field in ("hovertext", "text", "hovertemplate"):
            for text in _strings(trace.get(field)):
                found += [f"{where!r} {field}: {w!r} in {text!r}" for w in _hover_words(text)]
    layout = spec.get("layout", {})
    for name, axis in layout.items():
        if re.fullmatch(r"[xy]axis\d*", name) and isinstance(axis, dict):
            for text in _strings(axis.get("ticktext")):
                check(f"{name} tick", text)
            for text in _strings(axis.get("categoryarray")):
                check(f"{name} category", text)
    for annotation in layout.get("annotations", []):
        check("annotation", str(annotation.get("text", "")))
    return found


def rate_axes_not_from_zero(spec: dict) -> list[str]:
    """Rate axes (a % tick format) that neither start at zero (``rangemode`` tozero /
    nonnegative, or a ``range`` from 0) nor carry the mark ``charts.theme.NOT_FROM_ZERO``
    in their title."""
    found = []
    layout = spec.get("layout", {})
    where = layout.get("title", {}).get("text", "?")
    for name, axis in layout.items():
        if not (re.fullmatch(r"[xy]axis\d*", name) and isinstance(axis, dict)):
            continue
        if not str(axis.get("tickformat", "")).endswith("%") or axis.get("type") in ("category", "date"):
            continue
        start = (axis.get("range") or [None])[0]
        title = str((axis.get("title") or {}).get("text") or "")
        if axis.get("rangemode") in ("tozero", "nonnegative") or start == 0 or NOT_FROM_ZERO in title:
            continue
        found.append(f"{where!r} {name}: rate axis from {start!r}, not marked")
    return found


def table_codes(element) -> list[str]:
    """Raw codes in one ``st.dataframe``: column headers as shown (the configured label,
    else the column name) and text cells."""
    frame: pd.DataFrame = element.value
    config = json.loads(element.proto.columns or "{}")
    found = []
    for column in frame.columns:
        shown = str((config.get(str(column)) or {}).get("label") or column)
        if RAW_CODE.match(shown):
            found.append(f"table header {shown!r}")
        series = frame[column]
        if pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series):
            for value in series.dropna().astype(str).unique():
                if RAW_CODE.match(value):
                    found.append(f"table {shown!r} cell {value!r}")
    return found


def page_rate_axes(at) -> list[str]:
    return [
        f for chart in at.get("plotly_chart") for f in rate_axes_not_from_zero(json.loads(chart.proto.spec))
    ]


def page_codes(at) -> list[str]:
    found: list[str] = []
    for chart in at.get("plotly_chart"):
        found += figure_codes(json.loads(chart.proto.spec))
    for table in at.dataframe:
        found += table_codes(table)
    for widget in [*at.selectbox, *at.multiselect, *at.radio]:
        found += [f"option {o!r} of {widget.label!r}" for o in widget.options if RAW_CODE.match(str(o))]
    return found


def unformatted_numbers(element) -> list[str]:
    """Number columns of one ``st.dataframe`` shown as raw floats (``0.1234567``): a
    fractional column without a number format in its column configuration. Whole numbers
    are counts and need a format too (no "1234.0")."""
    frame: pd.DataFrame = element.value
    config = json.loads(element.proto.columns or "{}")
    found = []
    for column in frame.columns:
        series = frame[column]
        if not pd.api.types.is_float_dtype(series) or series.dropna().empty:
            continue
        entry = config.get(str(column)) or {}
        if (entry.get("type_config") or {}).get("format"):
            continue
        shown = entry.get("label") or column
        found.append(f"table column {shown!r} unformatted: {series.dropna().head(3).tolist()}")
    return found


def page_findings(at) -> dict[str, list[str]]:
    return {
        "raw codes": page_codes(at),
        "rate axes not from zero": page_rate_axes(at),
        "unformatted numbers": [f for table in at.dataframe for f in unformatted_numbers(table)],
    }


@pytest.mark.parametrize("page", PAGES)
def test_the_page_is_readable(app, page):
    """No raw code; rate axes from zero (or marked); every number column formatted."""
    at = app(page).run()
    assert not at.exception, [e.value for e in at.exception]
    found = page_findings(at)
    assert not any(found.values()), "\n".join(f"{kind}: {f}" for kind, fs in found.items() for f in fs)


@pytest.fixture
def imported_codes_db(demo_db_url, tmp_path, monkeypatch):
    """A copy of the demo database where imported data brought codes no label knows: a lead
    source ``trade_show_booth``, an acquisition channel ``paid_social_ads`` and a churn
    reason ``moved_to_inhouse_tool``."""
    import shutil

    import sqlalchemy as sa
    import streamlit as st

    from crm_data.engines import make_engine

    source = demo_db_url.removeprefix("duckdb:///")
    target = tmp_path / "imported.duckdb"
    shutil.copy(source, target)
    url = f"duckdb:///{target}"
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE deals SET lead_source = 'trade_show_booth' WHERE deal_id IN "
                    "(SELECT deal_id FROM deals ORDER BY deal_id LIMIT 60)"
                )
            )
            conn.execute(
                sa.text(
                    "UPDATE accounts SET acquisition_channel = 'paid_social_ads' WHERE account_id IN "
                    "(SELECT account_id FROM accounts ORDER BY account_id LIMIT 40)"
                )
            )
            conn.execute(
                sa.text(
                    "UPDATE subscriptions SET end_reason = 'moved_to_inhouse_tool' "
                    "WHERE end_reason IS NOT NULL"
                )
            )
    finally:
        engine.dispose()
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield url
    st.cache_data.clear()
    st.cache_resource.clear()


def test_a_code_only_imported_data_has_gets_a_readable_label(imported_codes_db):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PROJECT_ROOT / "pages/1_Sales_pipeline.py"), default_timeout=120).run()
    at.selectbox(key="win_rate_by").set_value("lead_source").run()
    assert not at.exception, [e.value for e in at.exception]
    spec = next(
        json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
        if "by lead source" in json.loads(c.proto.spec)["layout"]["title"]["text"]
    )
    categories = {x for trace in spec["data"] for x in _strings(trace.get("x"))}
    assert "Trade show booth" in categories and "trade_show_booth" not in categories
    channels = next(m for m in at.sidebar.multiselect if m.label == "Acquisition channel")
    assert "Paid social ads" in channels.options and "paid_social_ads" not in channels.options
    found = page_findings(at)
    assert not any(found.values()), found


def test_an_imported_churn_reason_reads_as_words_in_the_churned_accounts(imported_codes_db):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PROJECT_ROOT / "pages/2_Customers_and_churn.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    cells = {
        str(v)
        for table in at.dataframe
        for column in table.value.columns
        for v in table.value[column].unique()
    }
    found = page_findings(at)
    assert not any(found.values()), found
    assert "moved_to_inhouse_tool" not in cells
    assert "Moved to inhouse tool" in cells  # the reason is on the page, in words
