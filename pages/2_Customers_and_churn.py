"""Customers & churn: churn trend, revenue churn and net revenue retention, churn by
segment, signup-cohort retention, and the accounts that churned in a chosen period."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import kpis
from charts import figures
from ui.cards import docstring_definition
from ui.data import kpi
from ui.filters import global_filters
from ui.report import PageReport, is_empty, no_data

st.set_page_config(page_title="CRM Insights — Customers & churn", page_icon=":material/group:", layout="wide")
view = global_filters()
report = PageReport("Customers & churn", view)

BREAKDOWNS = {
    "segment": "Segment",
    "industry": "Industry",
    "region": "Region",
    "country": "Country",
    "company_size": "Company size",
    "acquisition_channel": "Acquisition channel",
    "owner_id": "Owner",
}

# --- churn trend + drill-down -------------------------------------------------------
st.header("Customer churn")
churn = kpi(kpis.churn_rate, view)
if is_empty(churn, ["customers_at_start"]):
    no_data("No customers at the start of any period in this selection.")
else:
    fig = figures.trend(
        churn,
        ["churn_rate"],
        "ratio",
        view.freq,
        names=["Churn rate"],
        interval=("ci_low", "ci_high"),
        y_title="churn rate",
    )
    report.chart(fig, churn, f"Churn rate per {view.freq}", kpi_key="churn_rate")
    if "low_sample" in churn and churn["low_sample"].fillna(False).astype(bool).any():
        st.caption(
            ":orange[:material/warning: Periods with fewer than 30 customers at their start have wide "
            "95 % intervals.]"
        )

    with st.expander("Which accounts churned?", icon=":material/person_remove:", expanded=False):
        with_churn = churn[churn["churned"] > 0]
        if with_churn.empty:
            st.write("No customer churned in this selection.")
        else:
            periods = list(pd.to_datetime(with_churn["period"]))
            chosen = st.selectbox(
                f"Pick a {view.freq}",
                periods,
                index=len(periods) - 1,
                format_func=lambda p: (
                    f"{view.period_label(p)} ({int(churn.loc[churn['period'] == p, 'churned'].iloc[0])} churned)"
                ),
                key="churn_drill_period",
            )
            accounts = kpi(kpis.churned_accounts, view, period=pd.Timestamp(chosen).date(), freq=view.freq)
            if accounts.empty:
                no_data()
            else:
                report.table(
                    accounts,
                    f"Accounts that churned in {view.period_label(chosen)}",
                    caption="Customers at the start of the period with no active subscription at its end.",
                    records=True,
                )

# --- customer base flows --------------------------------------------------------------
active = kpi(kpis.active_customers, view)
if not is_empty(active, ["customers_at_start", "customers_at_end", "new_customers"]):
    fig = figures.good_bad_bars(
        active, "period", "new_customers", "churned", ("New customers", "Churned customers"), view.freq
    )
    report.chart(fig, active, f"New and churned customers per {view.freq}", kpi_key="active_customers")

# --- revenue retention ----------------------------------------------------------------
st.header("Revenue churn and net revenue retention")
retention = kpi(kpis.revenue_retention, view)
if is_empty(retention, ["mrr_at_start"]):
    no_data("No recurring revenue at the start of any period in this selection.")
else:
    fig = figures.trend(
        retention,
        ["net_revenue_retention", "gross_revenue_retention", "revenue_churn_rate"],
        "ratio",
        view.freq,
        names=["Net revenue retention", "Gross revenue retention", "Revenue churn"],
    )
    report.chart(
        fig,
        retention,
        f"Net revenue retention and revenue churn per {view.freq}",
        kpi_key="net_revenue_retention",
    )

# --- churn by dimension -----------------------------------------------------------------
st.header("Churn by segment")
by = st.selectbox(
    "Break down by", list(BREAKDOWNS), format_func=BREAKDOWNS.__getitem__, key="churn_by_dimension"
)
by_group = kpi(kpis.churn_by, view.filters, by=by)
if is_empty(by_group, ["customers_at_start"]):
    no_data()
else:
    labels = view.labels.get("owners", {}) if by == "owner_id" else None
    fig = figures.bars(
        by_group.sort_values("churn_rate", ascending=False),
        "group",
        ["churn_rate"],
        "ratio",
        names=["Monthly churn rate"],
        errors=("ci_low", "ci_high"),
        horizontal=True,
        category_labels=labels,
    )
    report.chart(
        fig,
        by_group,
        f"Monthly churn rate by {BREAKDOWNS[by].lower()}",
        kpi_key="churn_rate",
        definition=docstring_definition(kpis.churn_by),
    )
    if "low_sample" in by_group and by_group["low_sample"].fillna(False).astype(bool).any():
        st.caption(
            ":orange[:material/warning: Groups with fewer than 30 customer-months at the start have wide "
            "95 % intervals.]"
        )

# --- cohorts --------------------------------------------------------------------------
st.header("Cohort retention")
cohorts = kpi(kpis.cohort_retention, view.filters)
if is_empty(cohorts, ["customers"]):
    no_data("No customer started in this date range, so there is no cohort to follow.")
else:
    fig = figures.heatmap(
        cohorts, "cohort", "months_since_start", "retention_rate", "ratio", x_title="months since start"
    )
    report.chart(fig, cohorts, "Retention by signup-month cohort", kpi_key="cohort_retention")

report.finish()
