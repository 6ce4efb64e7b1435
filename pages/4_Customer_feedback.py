"""Customer feedback: NPS with its 95 % interval, the score distribution, Customer Effort Score per
touchpoint and the latest comments.

Thin page: the numbers come from ``kpis`` (through the cache in ``ui.data``); this script only
draws them. Every chart has its definition and exports (PNG / SVG / PDF / HTML / CSV / XLSX).
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

import kpis
from charts import figures
from charts.theme import BAD, GOOD, NEUTRAL, PALETTE, axis_format, readable
from ui.cards import docstring_definition
from ui.data import kpi
from ui.drilldown import Drill, Point, period_title, records
from ui.filters import View, global_filters
from ui.report import PageReport, is_empty, no_data

st.set_page_config(
    page_title="CRM Insights — Customer feedback", page_icon=":material/reviews:", layout="wide"
)
view = global_filters()
report = PageReport("Customer feedback", view)

CES_MEASURES = {
    "ces_mean": ("Mean score (1–7, 7 = very easy)", "ci_low", "ci_high", "score"),
    "share_easy": ("Share easy (scores 5–7)", "share_easy_ci_low", "share_easy_ci_high", "ratio"),
}


def low_sample_flags(frame: pd.DataFrame) -> list[bool]:
    return (
        frame["low_sample"].fillna(False).astype(bool).tolist()
        if "low_sample" in frame
        else [False] * len(frame)
    )


def nps_trend(view: View) -> None:
    st.subheader("Net Promoter Score")
    nps = kpi(kpis.nps, view)
    if is_empty(nps, ["responses"]):
        no_data("No NPS responses in this selection.")
        return
    fig = figures.trend(nps, ["nps"], "nps", view.freq, names=["NPS"], interval=("ci_low", "ci_high"))
    fig.update_traces(
        marker={"symbol": ["circle-open" if low else "circle" for low in low_sample_flags(nps)], "size": 9},
        customdata=nps[["responses"]],
        hovertemplate="NPS %{y:+.1f} (%{customdata[0]:,} responses)<extra></extra>",
        selector={"name": "NPS"},
    )
    fig.add_hline(y=0, line={"color": NEUTRAL, "width": 1})
    fig.update_yaxes(**axis_format("nps"), range=[-100, 100])

    def nps_responses(point: Point) -> Drill | None:
        if point.period is None:
            return None
        return Drill(
            f"NPS responses in {period_title(view, point.period)}",
            records("nps", view, point.period),
            "promoters 9–10, passives 7–8, detractors 0–6",
        )

    report.chart(fig, nps, "NPS per period with 95 % interval", kpi_key="nps", drill=nps_responses)
    if any(low_sample_flags(nps)):
        st.caption(
            "Hollow markers: fewer than 30 responses in the period — the interval is wide, read with care."
        )


def score_distribution(view: View) -> None:
    scores = kpi(kpis.nps_score_distribution, view)
    if is_empty(scores, ["responses"]):
        return
    colours = [BAD if s <= 6 else (NEUTRAL if s <= 8 else GOOD) for s in scores["score"]]
    fig = go.Figure(
        go.Bar(
            x=scores["score"],
            y=scores["responses"],
            marker_color=colours,
            hovertemplate="score %{x:.0f}: %{y:,} responses<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="score (0–6 detractors · 7–8 passives · 9–10 promoters)", dtick=1)
    fig.update_yaxes(**axis_format("count"), title_text="responses")

    def score_responses(point: Point) -> Drill | None:
        try:
            score = float(point.x)
        except (TypeError, ValueError):
            return None
        return Drill(
            f"NPS responses with score {score:g}", records("nps", view, group=score), "in the date range"
        )

    report.chart(
        fig,
        scores,
        "NPS score distribution",
        definition=docstring_definition(kpis.nps_score_distribution),
        drill=score_responses,
    )


def effort_by_touchpoint(view: View) -> None:
    st.subheader("Customer Effort Score per touchpoint")
    ces = kpi(kpis.ces, view)
    if is_empty(ces, ["responses"]):
        no_data("No CES responses in this selection.")
        return
    measure = st.radio(
        "Show",
        list(CES_MEASURES),
        format_func=lambda key: CES_MEASURES[key][0],
        horizontal=True,
        key="feedback_ces_measure",
    )
    label, low_column, high_column, unit = CES_MEASURES[measure]
    touchpoints = [t for t, rows in ces.groupby("touchpoint", sort=True) if rows["responses"].sum() > 0]
    columns = 2 if len(touchpoints) > 1 else 1
    rows_needed = math.ceil(len(touchpoints) / columns)
    fig = make_subplots(
        rows=rows_needed,
        cols=columns,
        shared_xaxes=True,
        shared_yaxes=True,
        subplot_titles=[readable(t) for t in touchpoints],
        vertical_spacing=0.12 if rows_needed > 1 else 0.0,
        horizontal_spacing=0.04,
    )
    for index, touchpoint in enumerate(touchpoints):
        rows = ces[ces["touchpoint"] == touchpoint]
        position = {"row": index // columns + 1, "col": index % columns + 1}
        periods = list(rows["period"])
        fig.add_trace(
            go.Scatter(
                x=periods + periods[::-1],
                y=list(rows[high_column]) + list(rows[low_column])[::-1],
                fill="toself",
                fillcolor="rgba(0,114,178,0.15)",
                line={"width": 0},
                hoverinfo="skip",
                name="95 % interval",
                showlegend=index == 0,
                legendgroup="interval",
            ),
            **position,
        )
        fig.add_trace(
            go.Scatter(
                x=rows["period"],
                y=rows[measure],
                name=label.split(" (")[0],
                mode="lines+markers",
                line={"color": PALETTE[0]},
                marker={
                    "symbol": ["circle-open" if low else "circle" for low in low_sample_flags(rows)],
                    "size": 7,
                },
                customdata=rows[["responses"]],
                hovertemplate=f"{readable(touchpoint)}: %{{y}} (%{{customdata[0]:,}} responses)<extra></extra>",
                showlegend=index == 0,
                legendgroup="value",
                meta={"touchpoint": touchpoint},
            ),
            **position,
        )
    if unit == "score":
        fig.update_yaxes(**axis_format("score"), range=[1, 7.05])
    else:
        fig.update_yaxes(**axis_format("ratio"), range=[0, 1.02])
    figures.period_axis(fig, view.freq)
    fig.update_layout(height=max(380, 250 * rows_needed + 120), hovermode="closest")

    def ces_responses(point: Point) -> Drill | None:
        touchpoint = point.meta.get("touchpoint")
        if point.period is None or touchpoint is None:
            return None
        return Drill(
            f"CES responses at {readable(touchpoint)} in {period_title(view, point.period)}",
            records("ces", view, point.period, touchpoint),
            "easy = score 5–7",
        )

    report.chart(
        fig, ces, f"CES per touchpoint: {label.split(' (')[0].lower()}", kpi_key="ces", drill=ces_responses
    )
    st.caption("Shaded: 95 % interval. Hollow markers: fewer than 30 responses in the period.")


def comments(view: View) -> None:
    st.subheader("Latest comments")
    limit = st.select_slider(
        "How many", options=[10, 20, 50, 100, 200], value=20, key="feedback_comment_limit"
    )
    latest = kpi(kpis.latest_comments, view, limit=limit)
    if is_empty(latest):
        no_data("No comments in this selection.")
        return
    shown = latest.rename(
        columns={
            "responded_at": "Responded (UTC)",
            "survey": "Survey",
            "touchpoint": "Touchpoint",
            "score": "Score",
            "comment": "Comment",
            "account_id": "Account",
        }
    )
    report.table(
        shown, f"The {len(shown)} newest comments", caption="All surveys, newest first.", records=True
    )


nps_trend(view)
score_distribution(view)
effort_by_touchpoint(view)
comments(view)
report.finish()
