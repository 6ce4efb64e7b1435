"""Service: first-contact resolution, ticket volumes, resolution times and complaint spikes.

Thin page: the numbers come from ``kpis`` (through the cache in ``ui.data``); this script only
draws them. Every chart has its definition and exports (PNG / SVG / PDF / HTML / CSV / XLSX).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import kpis
from charts import figures
from charts.theme import BAD, NEUTRAL, PALETTE, axis_format, readable
from ui.cards import docstring_definition
from ui.data import kpi
from ui.drilldown import Drill, Point, period_title, records
from ui.filters import View, global_filters
from ui.report import PageReport, is_empty, no_data

st.set_page_config(page_title="CRM Insights — Service", page_icon=":material/support_agent:", layout="wide")
view = global_filters()
report = PageReport("Service", view)

BREAKDOWNS = {"category": "Category", "product": "Product", "channel": "Channel", "priority": "Priority"}


def service_level(view: View) -> None:
    fcr = kpi(kpis.first_contact_resolution, view)
    st.subheader("First-contact resolution")
    if is_empty(fcr, ["resolved"]):
        no_data("No resolved tickets in this selection.")
        return
    if is_empty(fcr, ["recorded"]):
        no_data(
            f"{int(fcr['resolved'].sum()):,} tickets were resolved, but none records how many contacts it "
            "took (Salesforce cases and many help desks do not count them), so first-contact resolution "
            "is unknown here — not 0 %."
        )
        return
    fig = figures.trend(
        fcr,
        ["fcr_rate"],
        "ratio",
        view.freq,
        names=["First-contact resolution"],
        interval=("ci_low", "ci_high"),
    )
    low = fcr["low_sample"].fillna(False).astype(bool)
    fig.update_traces(
        marker={"symbol": ["circle-open" if flag else "circle" for flag in low], "size": 9},
        selector={"name": "First-contact resolution"},
    )
    report.chart(
        fig,
        fcr,
        "First-contact resolution per period",
        kpi_key="first_contact_resolution",
        drill=lambda point: resolved_tickets(view, point),
    )
    if "low_sample" in fcr and fcr["low_sample"].fillna(False).astype(bool).any():
        st.caption("Hollow markers: fewer than 30 resolved tickets in the period — read with care.")
    if ((fcr["resolved"] > 0) & (fcr["recorded"] == 0)).any():
        st.caption(
            ":material/info: Gaps: periods whose resolved tickets record no contact count — unknown, not 0 %."
        )


def resolved_tickets(view: View, point: Point) -> Drill | None:
    """The tickets resolved in the clicked period (first_contact: resolved at the first contact)."""
    if point.period is None:
        return None
    return Drill(
        f"Tickets resolved in {period_title(view, point.period)}",
        records("first_contact", view, point.period),
        "first contact = resolved with one contact",
    )


def ticket_volumes(view: View) -> None:
    st.subheader("Tickets")
    by = st.radio(
        "Group tickets by",
        list(BREAKDOWNS),
        format_func=BREAKDOWNS.__getitem__,
        horizontal=True,
        key="service_breakdown",
    )
    tickets = kpi(kpis.ticket_breakdown, view, by=by)
    if is_empty(tickets, ["tickets"]):
        no_data("No tickets opened in this selection.")
        return
    fig = go.Figure()
    for index, (group, rows) in enumerate(tickets.groupby("group", sort=True)):
        name = str(group) if by == "product" else readable(group)  # products come by name
        fig.add_trace(
            go.Bar(
                x=rows["period"],
                y=rows["tickets"],
                name=name,
                marker_color=PALETTE[index % 8],
                meta={"group": str(group)},
            )
        )
    fig.update_layout(barmode="stack")
    fig.update_yaxes(**axis_format("count"), title_text="tickets")
    figures.period_axis(fig, view.freq)

    def opened(point: Point) -> Drill | None:
        group = point.meta.get("group", point.where.get("group"))
        if point.period is None or group is None:
            return None
        return Drill(
            f"{point.trace} tickets opened in {period_title(view, point.period)}",
            records("tickets", view, point.period, (by, group)),
        )

    report.chart(
        fig,
        tickets,
        f"Tickets by {BREAKDOWNS[by].lower()}",
        definition=docstring_definition(kpis.ticket_breakdown),
        drill=opened,
    )


def resolution_speed(view: View) -> None:
    st.subheader("Resolution times")
    times = kpi(kpis.resolution_times, view)
    if is_empty(times, ["resolved"]):
        no_data("No resolved tickets in this selection.")
        return
    fig = go.Figure()
    series = [
        ("median_hours_to_resolve", "Median hours to resolve", PALETTE[0], "solid"),
        ("p90_hours_to_resolve", "90th percentile hours to resolve", PALETTE[0], "dash"),
        ("median_hours_to_first_response", "Median hours to first response", PALETTE[1], "solid"),
    ]
    for column, name, colour, dash in series:
        fig.add_trace(
            go.Scatter(
                x=times["period"],
                y=times[column],
                name=name,
                mode="lines+markers",
                line={"color": colour, "dash": dash},
            )
        )
    fig.update_yaxes(title_text="hours", tickformat=",.0f", hoverformat=",.1f", rangemode="tozero")
    figures.period_axis(fig, view.freq)
    report.chart(
        fig,
        times,
        "Resolution times",
        definition=docstring_definition(kpis.resolution_times),
        drill=lambda point: resolved_tickets(view, point),
    )


def complaint_spikes(view: View) -> None:
    st.subheader("Complaint spikes for production")
    spikes = kpi(kpis.complaint_spikes, view)
    if is_empty(spikes):
        no_data("No complaint tickets in this selection.")
        return
    flagged = spikes[spikes["is_spike"].fillna(False).astype(bool)]
    evidence = flagged[["product_name", "week", "observed", "expected", "p_value"]].assign(
        week=pd.to_datetime(flagged["week"]).dt.date
    )
    evidence = evidence.rename(
        columns={
            "product_name": "Product",
            "week": "Week starting",
            "observed": "Complaints observed",
            "expected": "Complaints expected",
            "p_value": "p-value",
        }
    )
    if flagged.empty:
        st.success("No product had a complaint spike in this selection.", icon=":material/check_circle:")
    else:
        products = flagged["product_name"].nunique()
        st.warning(
            f"{len(flagged)} week(s) with a complaint spike across {products} product(s): "
            "worth a look by production.",
            icon=":material/report:",
        )
        report.table(
            evidence.sort_values(["Week starting", "Product"], ascending=[False, True]),
            "Flagged weeks: the evidence",
            caption="Observed complaints against the expected level for that product; small p-values are unlikely "
            "to be chance.",
        )

    ranked = flagged["product_name"].value_counts().index.tolist() + sorted(
        set(spikes["product_name"].dropna()) - set(flagged["product_name"])
    )
    if not ranked:
        return
    product = st.selectbox("Weekly complaints for product", ranked, key="service_spike_product")
    weekly = spikes[spikes["product_name"] == product].sort_values("week")
    spike_weeks = weekly["is_spike"].fillna(False).astype(bool)
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=weekly["week"],
            y=weekly["observed"],
            name="Complaints observed",
            marker_color=[BAD if flag else NEUTRAL for flag in spike_weeks],
            customdata=weekly["p_value"],
            hovertemplate="%{y:,} complaints<br>p-value %{customdata:.4f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=weekly["week"],
            y=weekly["expected"],
            name="Expected",
            mode="lines",
            line={"color": PALETTE[0]},
            hovertemplate="%{y:,.1f} expected<extra></extra>",  # a mean count: one decimal
        )
    )
    fig.update_yaxes(**axis_format("count"), title_text="complaints per week", rangemode="tozero")
    shown = weekly[["product_id", "product_name", "week", "observed", "expected", "p_value", "is_spike"]]

    def week_tickets(point: Point) -> Drill | None:
        if point.curve != 0 or not 0 <= point.index < len(shown):
            return None  # the expected line has no records
        row = shown.iloc[point.index]
        week = pd.Timestamp(row["week"])
        return Drill(
            f"Complaints about {product} in the week of {week:%d %b %Y}",
            records("complaints", view, group=(str(row["product_id"]), week.to_pydatetime())),
            "defect and complaint tickets opened that week",
        )

    report.chart(fig, shown, f"Weekly complaints: {product}", kpi_key="complaint_spikes", drill=week_tickets)
    st.caption("Red bars: weeks flagged as spikes.")


service_level(view)
ticket_volumes(view)
resolution_speed(view)
complaint_spikes(view)
report.finish()
