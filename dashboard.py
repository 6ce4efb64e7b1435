"""CRM Insights — the Overview page (the app's entry: ``streamlit run dashboard.py``).

Pages live in ``pages/`` (classic discovery); every page calls ``ui.filters.global_filters()``
first, so the sidebar filters apply everywhere and survive page switches and links.
This page: one card per headline KPI (the last complete period, its change on the period
before, a sparkline, a low-sample warning, a link to its page), the cards' exports (PNG / PDF
image, CSV / XLSX figures with the filters: ``ui.overview_export``) and what is in the database.
"""

from __future__ import annotations

import importlib

import pandas as pd
import streamlit as st

from kpis.core import LOW_SAMPLE, period_end, period_starts
from ui import data
from ui.cards import CardNumbers, CardSpec, kpi_card, latest, registry_entry, slide_card
from ui.currency import currency_warning
from ui.filters import View, global_filters, period_label
from ui.goals import card_goal_text
from ui.overview_export import cards_table, overview_exports
from ui.report import no_data, overview_download, show_dataframe

st.set_page_config(page_title="CRM Insights — Overview", page_icon=":material/monitoring:", layout="wide")
view = global_filters()

SALES, CHURN, FEEDBACK = (
    "pages/1_Sales_pipeline.py",
    "pages/2_Customers_and_churn.py",
    "pages/4_Customer_feedback.py",
)
CARDS: list[CardSpec] = [
    CardSpec("revenue", "revenue", "revenue", "pages/6_Forecast.py"),
    # customer_base: active customers, churn, NRR and retention cost from one query (cached once);
    # its rates are low-sample below 30 customers at the start (retention cost: retained customers)
    CardSpec("active_customers", "customer_base", "customers_at_end", CHURN),
    CardSpec("churn_rate", "customer_base", "churn_rate", CHURN, count="customers_at_start"),
    CardSpec(
        "net_revenue_retention", "customer_base", "net_revenue_retention", CHURN, count="customers_at_start"
    ),
    # survey_scores: NPS and CES (all touchpoints) from one query
    CardSpec("nps", "survey_scores", "nps", FEEDBACK, count="nps_responses"),
    CardSpec("ces", "survey_scores", "ces_mean", FEEDBACK, count="ces_responses"),
    CardSpec("win_rate", "win_rate", "win_rate", SALES),
    CardSpec("sales_cycle", "sales_cycle", "median_days", SALES, count="deals"),  # freq: one query
    CardSpec("first_contact_resolution", "first_contact_resolution", "fcr_rate", "pages/3_Service.py"),
    CardSpec(
        "retention_cost",
        "customer_base",
        "cost_per_retained_customer",
        "pages/5_Marketing_and_retention_cost.py",
        count="retained_customers",
    ),
]


def kpi_function(name: str):
    """``kpis.<name>``, or None while that KPI is not available."""
    try:
        return getattr(importlib.import_module("kpis"), name, None)
    except ImportError:
        return None


def card_frame(spec: CardSpec, view: View) -> pd.DataFrame:
    """The KPI per period of the view, one row per period (from ``kpis`` via the cache)."""
    function = kpi_function(spec.function)
    if spec.per_period:
        frame = data.kpi(function, view, **dict(spec.kwargs))
    else:  # one call per period: [period start, next period start)
        rows = []
        for start in period_starts(view.filters.start, view.filters.end, view.freq):
            end = period_end(start, view.freq)
            one = data.kpi(function, view.filters.replace(start=start.date(), end=end.date()))
            rows.append({"period": start, **(one.iloc[0].to_dict() if len(one) else {})})
        frame = pd.DataFrame(rows)
    if spec.count and spec.count in frame:
        frame["low_sample"] = pd.to_numeric(frame[spec.count], errors="coerce").fillna(0) < LOW_SAMPLE
    return frame


def compute_card(spec: CardSpec, view: View) -> CardNumbers | str | None:
    """The card's numbers; a message when its KPI failed; None while it is not available."""
    if kpi_function(spec.function) is None:
        return None
    try:
        return latest(card_frame(spec, view), spec.column, view.freq, view.today, end=view.filters.end)
    except Exception as error:  # one failing KPI must not take the whole Overview down
        return f"could not be computed ({type(error).__name__}: {error})"


def draw_card(spec: CardSpec, numbers: CardNumbers | str | None, view: View, shown: tuple | None) -> None:
    name = spec.key.replace("_", " ").capitalize()
    if numbers is None:
        with st.container(border=True):
            st.caption(f"**{name}**: `kpis.{spec.function}` is not available yet.")
        return
    if isinstance(numbers, str):
        with st.container(border=True):
            st.error(f"**{name}** {numbers}")
        return
    caption = None
    if numbers.period is None:
        caption = "No period in the selected range."
    elif (numbers.period, numbers.previous) != shown:
        caption = period_label(numbers.period, view.freq)
        if numbers.previous is not None:
            caption += f" vs {period_label(numbers.previous, view.freq)}"
    goal = card_goal_text(spec.key, view, numbers.period)  # "target X · on track" (ui/goals.py)
    if goal:
        caption = f"{caption}  \n{goal}" if caption else goal
    kpi_card(
        spec.key,
        numbers.value,
        numbers.delta,
        numbers.sparkline,
        numbers.low_sample,
        getattr(registry_entry(spec.key), "page", None) or spec.link,
        caption=caption,
    )


def common_periods(cards: list[CardNumbers | str | None]) -> tuple[pd.Timestamp, pd.Timestamp | None] | None:
    """The (period, previous period) most cards show, for the page caption."""
    pairs = [(c.period, c.previous) for c in cards if isinstance(c, CardNumbers) and c.period is not None]
    return max(set(pairs), key=pairs.count) if pairs else None


def nothing_to_show(cards: list[CardNumbers | str | None]) -> bool:
    """True when every computed card is empty: no value, or a zero, in every period."""
    computed = [c for c in cards if isinstance(c, CardNumbers)]
    return bool(computed) and all(not any(v for v in c.sparkline if v == v) for c in computed)


st.title("Overview")
numbers = [compute_card(spec, view) for spec in CARDS]
shown = common_periods(numbers)
if shown is not None:
    current, previous = (period_label(p, view.freq) if p is not None else None for p in shown)
    compared = f" and its change on {previous}" if previous else ""
    ended = not view.is_partial(shown[0])
    which = (
        f"the last complete {view.freq} in the range"
        if ended
        else f"so far (no {view.freq} of the range has ended)"
    )
    st.caption(
        f":material/filter_alt: {view.describe()}. Cards show {current}, {which}{compared}; "
        "the line is the trend over the range."
    )
else:
    st.caption(f":material/filter_alt: {view.describe()}")
currency_warning(view)  # the revenue card: amounts in currencies without exchange rates
if nothing_to_show(numbers):
    no_data()
for row in range(0, len(CARDS), 5):
    for spec, card, column in zip(CARDS[row : row + 5], numbers[row : row + 5], st.columns(5), strict=False):
        with column:
            draw_card(spec, card, view, shown)


def export_frame(spec: CardSpec, view: View) -> pd.DataFrame | None:
    """The card's KPI frame for its export row (cached: the one the card was drawn from)."""
    try:
        return card_frame(spec, view) if kpi_function(spec.function) is not None else None
    except Exception:  # the card shows the error; its export row stays empty
        return None


# the cards as PNG / PDF and their figures as CSV / XLSX, with the filters (ui.overview_export)
overview_exports(
    view,
    cards_table(
        [(s.key, s.column, n, export_frame(s, view)) for s, n in zip(CARDS, numbers, strict=True)], view.freq
    ),
)


def card_periods(card: CardNumbers | str | None) -> str:
    """ "Nov 2026 vs Oct 2026": the periods a card shows, for its slide."""
    if not isinstance(card, CardNumbers) or card.period is None:
        return ""
    text = period_label(card.period, view.freq)
    return text + (f" vs {period_label(card.previous, view.freq)}" if card.previous is not None else "")


overview_download(view, [slide_card(s.key, c, card_periods(c)) for s, c in zip(CARDS, numbers, strict=True)])

url = data.database_url()
if view.filters.scope.restricted:  # whole-database counts: not for a limited scope
    st.stop()
with st.expander("What's in the database", icon=":material/database:"):
    counts = data.table_row_counts(url)
    bounds = data.data_date_range(url)
    if bounds is None:
        st.write("No dated records yet (no subscriptions, deals, payments or tickets).")
    else:
        st.write(f"Records from **{bounds[0]:%d %b %Y}** to **{bounds[1]:%d %b %Y}** (UTC).")
    show_dataframe(counts, width="content")
    st.caption(f"Read-only connection to `{data.shown_url(url)}`.")
