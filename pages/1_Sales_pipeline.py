"""Sales pipeline: funnel (step and cumulative conversion), win rate and lead conversion
by segment / owner / lead source, sales-cycle distribution, time in each phase (open
deals censored), the open pipeline (weighted by stage probabilities, expected by learned
win rates, overdue deals apart — ``ui.pipeline_summary``, as on Forecast), and aging open
deals with the stuck deals behind them."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

import kpis
from charts import figures
from charts.theme import NEUTRAL, PALETTE, axis_format, fmt_days, fmt_value
from kpis.why_empty import funnel_empty_reason, no_account_reason
from ui.cards import docstring_definition
from ui.currency import currency_warning
from ui.data import kpi
from ui.drilldown import Drill, Point, period_title, records
from ui.filters import global_filters
from ui.pipeline_summary import WEIGHTED_LABEL, pipeline_metrics
from ui.report import PageReport, is_empty, low_sample_note, no_data

st.set_page_config(
    page_title="CRM Insights — Sales pipeline", page_icon=":material/filter_alt:", layout="wide"
)
view = global_filters()
report = PageReport("Sales pipeline", view)
currency_warning(view)  # amounts in currencies without exchange rates

STUCK_LIMIT = 2000  # rows in the stuck-deals drill-down (and its CSV)
BREAKDOWNS = {
    "segment": "Segment",
    "owner": "Owner",
    "lead_source": "Lead source",
    "industry": "Industry",
    "region": "Region",
    "company_size": "Company size",
    "acquisition_channel": "Acquisition channel",
    "product": "Product",
}

# --- funnel -----------------------------------------------------------------------------
st.header("Funnel")
counting = st.segmented_control(
    "Count a deal at a stage when it",
    ["in_order", "any"],
    default="in_order",
    format_func={
        "in_order": "passed every stage before it, in order",
        "any": "reached it at all",
    }.__getitem__,
    key="funnel_counting",
)
counting = counting or "in_order"
funnel = kpi(kpis.funnel, view.filters)
nobody = kpi(no_account_reason, view.filters)  # the account filters together select no account
if is_empty(funnel, ["reached_in_order", "reached_any"]):
    # say why: no stages configured, filters that exclude every account, no deals in the range …
    no_data(kpi(funnel_empty_reason, view.filters) or "No deal of this selection entered a funnel stage.")
else:
    suffix = "in_order" if counting == "in_order" else "any"
    fig = figures.funnel(
        funnel, f"reached_{suffix}", f"step_conversion_{suffix}", f"cumulative_conversion_{suffix}"
    )
    title = "Pipeline funnel (" + ("stages in order" if counting == "in_order" else "any stage reached") + ")"

    def reached_deals(point: Point) -> Drill | None:
        stage = str(point.y)  # the funnel's stages are on the y axis
        how = "entered every stage up to it" if counting == "in_order" else "reached it or a later stage"
        return Drill(
            f"Deals that reached {stage}",
            records("funnel", view, group=(stage, counting)),
            f"created in the date range; {how}",
        )

    report.chart(fig, funnel, title, kpi_key="funnel", drill=reached_deals)

# --- win rate and lead conversion ------------------------------------------------------------
st.header("Win rate and lead conversion")
trend = kpi(kpis.win_rate, view)
if is_empty(trend, ["won", "lost"]):
    no_data(nobody or "No deals were won or lost in this selection.")
else:
    fig = figures.trend(
        trend, ["win_rate"], "ratio", view.freq, names=["Win rate"], interval=("ci_low", "ci_high")
    )

    def closed_deals(point: Point) -> Drill | None:
        if point.period is None:
            return None
        label = period_title(view, point.period)
        return Drill(
            f"Deals won or lost in {label}", records("win_rate", view, point.period), "by close date"
        )

    report.chart(
        fig,
        trend,
        f"Win rate per {view.freq} (by close date, 95 % interval)",
        kpi_key="win_rate",
        drill=closed_deals,
    )

cohorts = kpi(kpis.lead_conversion, view)
if not is_empty(cohorts, ["created"]):
    fig = figures.trend(
        cohorts,
        ["lead_conversion", "closed_win_rate"],
        "ratio",
        view.freq,
        names=["Lead conversion (won ÷ created)", "Win rate of the cohort (won ÷ closed)"],
    )

    def created_deals(point: Point) -> Drill | None:
        if point.period is None:
            return None
        label = period_title(view, point.period)
        return Drill(
            f"Deals created in {label}", records("lead_conversion", view, point.period), "every status"
        )

    report.chart(
        fig,
        cohorts,
        f"Lead conversion by created {view.freq}",
        kpi_key="lead_conversion",
        drill=created_deals,
    )
    st.caption(
        ":material/hourglass_top: Recent cohorts still have open deals, so their conversion is still rising."
    )

by = st.columns([1, 2])[0].selectbox(
    "Break down by", list(BREAKDOWNS), format_func=BREAKDOWNS.__getitem__, key="win_rate_by"
)
by_group = kpi(kpis.win_rate_by, view.filters, by=by)
if is_empty(by_group, ["created", "won", "lost"]):
    no_data(nobody)
else:
    labels = (
        view.labels.get("owners" if by == "owner" else "products", {}) if by in ("owner", "product") else None
    )
    fig = figures.bars(
        by_group,
        "group",
        ["win_rate", "lead_conversion"],
        "ratio",
        names=["Win rate (won ÷ closed)", "Lead conversion (won ÷ created)"],
        errors=("ci_low", "ci_high"),
        category_labels=labels,
    )
    shown_as = {label: value for value, label in (labels or {}).items()}

    def group_deals(point: Point) -> Drill | None:
        value = shown_as.get(str(point.category), point.category)
        return Drill(
            f"Deals of {BREAKDOWNS[by].lower()} {point.category}",
            records("win_rate_by", view, group=(by, value)),
            "created in the date range, every status (the win rate counts the won and lost)",
        )

    report.chart(
        fig,
        by_group,
        f"Win rate and lead conversion by {BREAKDOWNS[by].lower()}",
        kpi_key="win_rate",
        drill=group_deals,
    )
    low_sample_note(by_group, "Groups with fewer than 30 closed deals have wide intervals.")

# --- sales cycle ---------------------------------------------------------------------------
st.header("Sales cycle")
cycle = kpi(kpis.sales_cycle, view.filters)
distribution = kpi(kpis.sales_cycle_distribution, view.filters, bins=20)
if is_empty(cycle, ["deals"]) or is_empty(distribution, ["deals"]):
    no_data(nobody or "No deals were won in this selection.")
else:
    row = cycle.iloc[0]
    st.markdown(
        f"**{fmt_value(row['deals'], 'count')}** won deals · median **{fmt_days(row['median_days'])}** · "
        f"mean {fmt_days(row['mean_days'])} · 90th percentile {fmt_days(row['p90_days'])}"
    )
    fig = figures.histogram_bins(distribution, "bin_start_days", "bin_end_days", "deals")

    def cycle_deals(point: Point) -> Drill | None:
        if not 0 <= point.index < len(distribution):
            return None
        row = distribution.iloc[point.index]
        last = point.index == len(distribution) - 1
        days = (float(row["bin_start_days"]), float(row["bin_end_days"]), last)
        return Drill(
            f"Won deals with a sales cycle of {point.x} days",
            records("sales_cycle", view, group=days),
            "won deals closed in the date range, longest cycle first",
        )

    report.chart(
        fig, distribution, "Sales-cycle length of won deals", kpi_key="sales_cycle", drill=cycle_deals
    )

# --- time in each phase --------------------------------------------------------------------
st.header("Time in each phase")
stages = kpi(kpis.stage_durations, view.filters)
if is_empty(stages, ["deals"]):
    no_data(nobody or "No deals were created in this selection.")
else:
    fig = go.Figure()
    fig.add_trace(go.Bar(x=stages["stage"], y=stages["median_days"], name="Median", marker_color=PALETTE[0]))
    fig.add_trace(
        go.Scatter(
            x=stages["stage"],
            y=stages["p90_days"],
            name="90th percentile",
            mode="markers",
            marker={"symbol": "line-ew-open", "size": 28, "line": {"width": 3, "color": PALETTE[1]}},
        )
    )
    fig.update_yaxes(title_text="days in stage", **axis_format("days"))
    fig.update_layout(hovermode="x unified")

    def visiting_deals(point: Point) -> Drill | None:
        stage = str(point.category)
        return Drill(
            f"Deals that entered {stage}",
            records("stage_visits", view, group=stage),
            "created in the date range, with a visit to the stage by today (or the end of the range)",
        )

    report.chart(
        fig,
        stages,
        "Days in each stage (Kaplan–Meier, open deals censored)",
        kpi_key="stage_durations",
        drill=visiting_deals,
    )
    censored = int(stages["censored"].sum()) if "censored" in stages else 0
    st.caption(
        f":material/schedule: {censored:,} stage visits are still open: they count as *censored* — "
        "known to have lasted at least until today (or the end of the range) — so slow open deals "
        "neither vanish nor pull the median down. A missing median means fewer than half of the visits "
        "have finished yet."
    )

# --- weighted pipeline ---------------------------------------------------------------------
st.header("Open pipeline")
pipeline = kpi(kpis.weighted_pipeline, view.filters)
if is_empty(pipeline, ["open_deals"]):
    no_data(nobody or "No open deals in this selection.")
else:
    pipeline_metrics(view)  # weighted, expected and overdue: the same figures as on Forecast
    fig = figures.bars(
        pipeline,
        "stage",
        ["amount", "weighted_amount"],
        "money",
        names=["Open amount", "Weighted (amount × stage probability)"],
    )
    total = pipeline["weighted_amount"].sum()

    def pipeline_deals(point: Point) -> Drill | None:
        stage = str(point.category)
        return Drill(
            f"Open deals in {stage}",
            records("pipeline", view, group=stage),
            "open deals in their current stage, weighted by its probability; largest first",
        )

    report.chart(
        fig,
        pipeline,
        f"{WEIGHTED_LABEL} by stage (total {fmt_value(total, 'money')})",
        kpi_key="weighted_pipeline",
        drill=pipeline_deals,
    )

# --- aging open deals + drill-down -------------------------------------------------------------
aging = kpi(kpis.open_deal_aging, view.filters)
if not is_empty(aging, ["open_deals"]):
    fig = figures.bars(
        aging,
        "stage",
        ["median_age_days", "p90_age_days"],
        "days",
        names=["Median age", "90th percentile age"],
    )
    fig.add_hline(y=90, line_dash="dot", line_color=NEUTRAL, annotation_text="90 days")

    def stage_deals(point: Point) -> Drill | None:
        stage = str(point.category)
        return Drill(
            f"Open deals in {stage}",
            records("open_deals", view, group=stage),
            "as of today (or the end of the range), longest in the stage first",
        )

    report.chart(
        fig,
        aging,
        "Age of open deals by current stage",
        definition=docstring_definition(kpis.open_deal_aging),
        drill=stage_deals,
    )

    st.subheader("Stuck deals")
    left, right = st.columns([2, 1])
    stage_names = [str(s) for s in aging["stage"]]
    stage = left.selectbox("Stage", stage_names, key="stuck_stage")
    min_days = right.number_input(
        "In the stage for at least (days)", 0, 3650, 90, step=15, key="stuck_min_days"
    )
    stuck = kpi(kpis.stuck_deals, view.filters, stage=stage, min_days=int(min_days), limit=STUCK_LIMIT)
    if stuck.empty:
        no_data(f"No open deal has been in {stage} for {int(min_days)} days or more.")
    else:
        report.table(
            stuck,
            f"Deals in {stage} for at least {int(min_days)} days",
            caption=f"The {STUCK_LIMIT:,} longest-waiting deals." if len(stuck) >= STUCK_LIMIT else None,
            records=True,
        )

report.finish()
