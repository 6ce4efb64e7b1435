"""Marketing & retention cost: campaign funnels and cost per conversion, web traffic and CTR,
social engagement, retention cost per retained customer by cost bucket, customer profitability.

Thin page: the numbers come from ``kpis`` (through the cache in ``ui.data``); this script only
draws them. Every chart has its definition and exports (PNG / SVG / PDF / HTML / CSV / XLSX).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

import kpis
from charts import figures
from charts.theme import BAD, GOOD, PALETTE, axis_format
from ui.currency import currency_warning
from ui.data import kpi
from ui.drilldown import Drill, Point, period_title, records
from ui.filter_scope import honoured_view
from ui.filters import View, global_filters
from ui.report import PageReport, is_empty, no_data

st.set_page_config(
    page_title="CRM Insights — Marketing & retention cost", page_icon=":material/campaign:", layout="wide"
)
view = global_filters()
report = PageReport("Marketing & retention cost", view)
currency_warning(view)  # amounts in currencies without exchange rates

COST_BUCKETS = ["personnel", "production", "overhead", "marketing", "loyalty"]
FUNNEL_STEPS = [("sent", "Sent"), ("opened", "Opened"), ("clicked", "Clicked"), ("converted", "Converted")]


def campaigns(view: View) -> None:
    st.subheader("Campaigns")
    funnel = kpi(kpis.campaign_funnel, view)
    if is_empty(funnel, ["sent", "cost"]):
        no_data("No campaign in this selection: none started in the range, or none was sent to its accounts.")
        return
    funnel = funnel.sort_values("sent", ascending=False).reset_index(drop=True)
    allocated = bool((funnel["share_of_sends"].fillna(0) != 1).any())
    if allocated:
        st.caption(
            ":material/call_split: Campaign cost is allocated to this selection by its share of each "
            "campaign's sends: cost = campaign cost × (sends to the selection ÷ all the campaign's sends)."
        )
    left, right = st.columns([2, 3])
    with left:
        labels = dict(zip(funnel["campaign_id"], funnel["name"].fillna(funnel["campaign_id"]), strict=True))
        chosen = st.selectbox(
            "Campaign funnel", list(labels), format_func=labels.__getitem__, key="marketing_campaign"
        )
        row = funnel[funnel["campaign_id"] == chosen].iloc[0]
        fig = go.Figure(
            go.Funnel(
                y=[label for _, label in FUNNEL_STEPS],
                x=[row[column] for column, _ in FUNNEL_STEPS],
                textinfo="value+percent initial",
                marker={"color": PALETTE[0]},
            )
        )
        fig.update_layout(title={"text": "Campaign funnel", "subtitle": {"text": str(row["name"])}})

        def step_responses(point: Point) -> Drill | None:
            if not 0 <= point.index < len(FUNNEL_STEPS):
                return None
            step, label = FUNNEL_STEPS[point.index]
            return Drill(
                f"{label}: responses to {row['name']}",
                records("campaign", view, group=(str(chosen), step)),
                f"the campaign's recorded responses with a {step} time (a vendor report's whole-campaign "
                "figure, where the funnel shows one, can be larger)",
            )

        report.chart(
            fig,
            funnel[funnel["campaign_id"] == chosen],
            f"Funnel: {row['name']}",
            kpi_key="campaign_funnel",
            drill=step_responses,
        )
    with right:
        ranked = funnel.dropna(subset=["cost_per_conversion"]).sort_values("cost_per_conversion")
        if ranked.empty:
            no_data("No campaign converted anyone in this selection, so there is no cost per conversion.")
        else:
            channels = sorted(ranked["channel"].fillna("(none)").unique())
            fig = go.Figure()
            for index, channel in enumerate(channels):
                rows = ranked[ranked["channel"].fillna("(none)") == channel]
                fig.add_trace(
                    go.Scatter(
                        x=rows["converted"],
                        y=rows["cost_per_conversion"],
                        mode="markers",
                        name=str(channel),
                        marker={"color": PALETTE[index % len(PALETTE)], "size": 10, "opacity": 0.85},
                        customdata=rows[["name", "cost"]],
                        meta={"campaign_ids": [str(c) for c in rows["campaign_id"]]},
                        hovertemplate="<b>%{customdata[0]}</b><br>%{y:$,.2f} per conversion<br>"
                        "%{x:,} conversions, "
                        + ("allocated cost" if allocated else "cost")
                        + " %{customdata[1]:$,.0f}<extra></extra>",
                    )
                )
            fig.update_xaxes(**axis_format("count"), title_text="conversions", rangemode="tozero")
            fig.update_yaxes(**axis_format("money"), title_text="cost per conversion", rangemode="tozero")
            fig.update_layout(hovermode="closest")

            def campaign_responses(point: Point) -> Drill | None:
                ids = point.meta.get("campaign_ids", [])
                if not 0 <= point.index < len(ids):
                    return None
                campaign = ids[point.index]
                name = labels.get(campaign, campaign)
                return Drill(
                    f"Responses to {name}",
                    records("campaign", view, group=campaign),
                    "conversions first; the funnel counts those with each timestamp set",
                )

            report.chart(
                fig,
                ranked,
                "Cost per conversion against conversions, by campaign",
                drill=campaign_responses,
                definition="Campaign cost (allocated to the selection by its share of the sends) ÷ responses "
                "with converted_at set; campaigns without a conversion are left out (no finite cost per "
                "conversion).",
            )
    report.table(
        funnel[
            [
                "name",
                "channel",
                "objective",
                "cost",
                *(["campaign_cost", "share_of_sends"] if allocated else []),
                "sent",
                "opened",
                "clicked",
                "converted",
                "open_rate",
                "click_rate",
                "conversion_rate",
                "cost_per_conversion",
            ]
        ],
        "All campaigns",
    )


def web(view: View) -> None:
    st.subheader("Web traffic")
    traffic = kpi(kpis.web_metrics, honoured_view(view, kpis.web_metrics))  # no account: no segment filter
    if is_empty(traffic, ["sessions", "impressions"]):
        no_data("No web traffic in this selection.")
        return
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Bar(x=traffic["period"], y=traffic["sessions"], name="Sessions", marker_color=PALETTE[4])
    )
    fig.add_trace(
        go.Scatter(
            x=traffic["period"],
            y=traffic["ctr"],
            name="CTR",
            mode="lines+markers",
            line={"color": PALETTE[0]},
        ),
        secondary_y=True,
    )
    fig.update_yaxes(**axis_format("count"), title_text="sessions", secondary_y=False)
    fig.update_yaxes(
        **axis_format("ratio"), title_text="click-through rate", secondary_y=True, showgrid=False
    )
    figures.period_axis(fig, view.freq)
    report.chart(fig, traffic, "Web sessions and click-through rate", kpi_key="web_ctr")


def social(view: View) -> None:
    st.subheader("Social media")
    metrics = kpi(kpis.social_metrics, honoured_view(view, kpis.social_metrics))
    if is_empty(metrics, ["impressions", "engagements"]):
        no_data("No social-media data in this selection.")
        return
    fig = go.Figure()
    for index, (platform, rows) in enumerate(metrics.groupby("platform", sort=True)):
        fig.add_trace(
            go.Scatter(
                x=rows["period"],
                y=rows["engagement_rate"],
                name=str(platform),
                mode="lines+markers",
                line={"color": PALETTE[index % len(PALETTE)]},
                customdata=rows[["engagements", "impressions"]],
                hovertemplate="%{y:.2%} (%{customdata[0]:,} engagements / %{customdata[1]:,} impressions)"
                "<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_yaxes(**axis_format("ratio"), title_text="engagement rate", rangemode="tozero")
    fig.update_yaxes(tickformat=".1%")
    figures.period_axis(fig, view.freq)
    report.chart(fig, metrics, "Social engagement rate by platform", kpi_key="social_engagement")


def retention_cost(view: View) -> None:
    st.subheader("Retention cost")
    cost = kpi(kpis.retention_cost, view)
    if is_empty(cost, ["retention_costs"]):
        no_data("No retention costs in this selection.")
        return
    per_customer = st.toggle(
        "Per retained customer", value=True, key="marketing_retention_per_customer",
        help="On: each bucket ÷ customers retained over the period (the bars add up to the cost per retained "
        "customer). Off: the period's retention costs.",
    )  # fmt: skip
    buckets = [b for b in COST_BUCKETS if b in cost]
    retained = cost["retained_customers"].where(cost["retained_customers"] > 0)
    fig = go.Figure()
    for index, bucket in enumerate(buckets):
        values = cost[bucket] / retained if per_customer else cost[bucket]
        fig.add_trace(
            go.Bar(
                x=cost["period"],
                y=values,
                name=bucket.capitalize(),
                marker_color=PALETTE[index],
                meta={"category": bucket},
            )
        )
    if per_customer:
        fig.add_trace(
            go.Scatter(
                x=cost["period"],
                y=cost["cost_per_retained_customer"],
                name="Cost per retained customer",
                mode="markers",
                marker={"symbol": "line-ew-open", "size": 24, "color": "#000000", "line": {"width": 2}},
            )
        )
    fig.update_layout(barmode="stack")
    figures.period_axis(fig, view.freq)
    fig.update_yaxes(
        **axis_format("money"), title_text="per retained customer" if per_customer else "retention costs"
    )
    title = (
        "Retention cost per retained customer by cost bucket" if per_customer else "Retention costs by bucket"
    )

    def cost_rows(point: Point) -> Drill | None:
        if point.period is None:
            return None
        category = point.meta.get("category")  # None: the cost per retained customer marker
        what = f"{category} retention costs" if category else "Retention costs"
        return Drill(
            f"{what.capitalize()} in {period_title(view, point.period)}",
            records("retention_cost", view, point.period, category),
            "largest first",
        )

    report.chart(fig, cost, title, kpi_key="retention_cost", drill=cost_rows)


TOP_N = [5, 10, 20, 50]  # accounts at each end of the profitability ranking


def profitability(view: View) -> None:
    st.subheader("Customer profitability")
    # only the ends of the ranking leave the database (the largest choice below at each end)
    accounts = kpi(kpis.profitability_ends, view, n=max(TOP_N))
    if is_empty(accounts, ["payments", "costs"]):
        no_data("No payments or account costs in this selection.")
        return
    count = st.select_slider("Accounts at each end", options=TOP_N, value=10, key="marketing_top_n")
    ranked = accounts.drop(columns="accounts").sort_values("profit", ascending=False)
    top, bottom = ranked.head(count), ranked.tail(count).iloc[::-1]
    shown = ranked if len(ranked) <= 2 * count else pd.concat([ranked.head(count), ranked.tail(count)])
    fig = go.Figure(
        go.Bar(
            x=shown["profit"],
            y=shown["name"].fillna(shown["account_id"]),
            orientation="h",
            marker_color=[GOOD if p >= 0 else BAD for p in shown["profit"]],
            customdata=shown[["payments", "costs"]],
            hovertemplate="profit %{x:$,.0f}<br>payments %{customdata[0]:$,.0f} − costs %{customdata[1]:$,.0f}"
            "<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(**axis_format("money"), title_text="profit (payments − costs)")
    fig.update_layout(height=max(400, 24 * len(shown) + 120))

    def ledger(point: Point) -> Drill | None:
        if not 0 <= point.index < len(shown):
            return None
        row = shown.iloc[point.index]
        return Drill(
            f"Payments and costs of {row['name'] if pd.notna(row['name']) else row['account_id']}",
            records("account_ledger", view, group=str(row["account_id"])),
            "in the date range; payments as paid, costs negative, so the amounts add up to the profit",
        )

    report.chart(
        fig,
        shown,
        f"Most and least profitable accounts (top and bottom {count})",
        kpi_key="customer_profitability",
        drill=ledger,
    )
    st.caption(f"{int(accounts['accounts'].iloc[0]):,} accounts with payments or costs in the range.")
    # one above the other: side by side, half a 1440 px screen cuts their ten columns off
    report.table(top, f"Top {len(top)} accounts by profit", records=True)
    report.table(bottom, f"Bottom {len(bottom)} accounts by profit", records=True)


campaigns(view)
web(view)
social(view)
retention_cost(view)
profitability(view)
report.finish()
