"""Customers & churn: churn trend, revenue churn and net revenue retention, churn by
segment, signup-cohort retention, the accounts that churned in a chosen period, and the
churn risk ahead (``forecasting.customer_models``: BG/NBD, Gamma-Gamma, cohort sBG)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import kpis
from charts import figures
from charts.theme import NEUTRAL, PALETTE, axis_format, fmt_ratio
from forecasting import customer_models, fit_store
from kpis.clv_summary import account_names
from ui.cards import docstring_definition
from ui.data import call, data_date_range, database_url, engine, kpi
from ui.drilldown import Drill, Point, clickable_cells, period_title, records
from ui.filters import global_filters
from ui.report import PageReport, audited, is_empty, low_sample_note, no_data, show_dataframe

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

    def customers_at_start(point: Point) -> Drill | None:
        if point.period is None:
            return None
        return Drill(
            f"Customers at the start of {period_title(view, point.period)}",
            records("churn", view, point.period),
            "churned = no active subscription at the period's end; churned first",
        )

    report.chart(fig, churn, f"Churn rate per {view.freq}", kpi_key="churn_rate", drill=customers_at_start)
    low_sample_note(churn, "Periods with fewer than 30 customers at their start have wide 95 % intervals.")

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

    def flows(point: Point) -> Drill | None:
        if point.period is None:
            return None
        label = period_title(view, point.period)
        if point.meta.get("column") == "churned":
            return Drill(f"Customers who churned in {label}", records("churned", view, point.period))
        return Drill(f"New customers in {label}", records("new_customers", view, point.period))

    report.chart(
        fig, active, f"New and churned customers per {view.freq}", kpi_key="active_customers", drill=flows
    )

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

    def mrr_accounts(point: Point) -> Drill | None:
        if point.period is None:
            return None
        return Drill(
            f"Customers at the start of {period_title(view, point.period)} and their MRR",
            records("mrr_retention", view, point.period),
            "MRR at the period's start and end (0 when churned)",
        )

    report.chart(
        fig,
        retention,
        f"Net revenue retention and revenue churn per {view.freq}",
        kpi_key="net_revenue_retention",
        drill=mrr_accounts,
    )

# --- average revenue per account ---------------------------------------------------------
st.header("Average revenue per account")
paying = kpi(kpis.revenue, view)
if is_empty(paying, ["paying_accounts"]):
    no_data("No account paid in this selection.")
else:
    fig = figures.trend(paying, ["arpa"], "money", view.freq, names=["ARPA (revenue ÷ paying accounts)"])
    report.chart(fig, paying, f"Average revenue per account (ARPA) per {view.freq}", kpi_key="arpa")

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
    shown_as = {label: value for value, label in (labels or {}).items()}

    def group_customers(point: Point) -> Drill | None:
        label = str(point.y)  # horizontal bars: the group is on the y axis
        return Drill(
            f"Customer-months of {BREAKDOWNS[by].lower()} {label}",
            records("churn_by", view, group=(by, shown_as.get(label, label))),
            "one row per month and customer active at its start; churned first",
        )

    report.chart(
        fig,
        by_group,
        f"Monthly churn rate by {BREAKDOWNS[by].lower()}",
        kpi_key="churn_rate",
        definition=docstring_definition(kpis.churn_by),
        drill=group_customers,
    )
    low_sample_note(
        by_group, "Groups with fewer than 30 customer-months at the start have wide 95 % intervals."
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

    def cohort_accounts(point: Point) -> Drill | None:
        try:
            cohort = pd.to_datetime(str(point.y), format="%b %Y")
            months = int(point.x)
        except (TypeError, ValueError):
            return None
        return Drill(
            f"Accounts of the {point.y} cohort, {months} months on",
            records("cohort", view, cohort, months),
            f"retained = still a customer at the start of month {months}",
        )

    report.chart(
        clickable_cells(fig),
        cohorts,
        "Retention by signup-month cohort",
        kpi_key="cohort_retention",
        drill=cohort_accounts,
    )

# --- churn risk -----------------------------------------------------------------------
st.header("Churn risk")
HORIZON_WEEKS, DISCOUNT = 52, 0.10
RISK_DEFINITION = (
    "BG/NBD model (Fader, Hardie & Lee 2005) fitted by maximum likelihood to the accounts' payments in the "
    "selected range: a transaction is a UTC day with a positive payment; frequency = repeat payment days, "
    "recency = weeks from the first to the last payment day, T = weeks from the first payment day to the end "
    "of the data. inactive_probability = 1 − the probability the account is still active given frequency, "
    "recency and T (0 without a repeat payment: the model lets accounts leave only right after a payment). "
    f"expected_transactions = expected payment days in the next {HORIZON_WEEKS} weeks. expected_amount = "
    "Gamma-Gamma expected spend per payment day (its mean repeat payment shrunk towards all accounts' mean). "
    f"clv_revenue = expected revenue over the next {HORIZON_WEEKS} weeks, discounted at "
    f"{DISCOUNT:.0%} a year."
)
RANKINGS = {
    "inactive_probability": "Probability of being inactive",
    "clv_revenue": "Expected remaining value",
}
#: Accounts the churn-risk table lists (and the chart's export holds); the whole ranking is a
#: download, built when clicked (``CRM_RISK_TABLE_ROWS`` overrides the number, e.g. in tests).
RISK_TABLE_ROWS = int(os.environ.get("CRM_RISK_TABLE_ROWS", "1000"))


def _named(accounts: pd.DataFrame, names: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``accounts`` (ranked, without names) with ``names``' name and segment (same order), in ``columns``."""
    return accounts.assign(name=names["name"].to_numpy(), segment=names["segment"].to_numpy())[columns]


def _with_names(accounts: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``accounts`` with each account's name and segment (read for these rows), in ``columns``."""
    names = call(account_names, account_ids=tuple(accounts["account_id"]))
    return _named(accounts, names, columns).reset_index(drop=True)


def _download_all(
    everyone: Callable[[], pd.DataFrame], count: int, columns: list[str], title: str, which: str
) -> None:
    """CSV and XLSX buttons for every ranked account (``everyone()``, ``count`` of them) with
    its name: the ranking and the names are read when clicked."""
    from charts import export

    bind = engine()

    def frame() -> pd.DataFrame:
        accounts = everyone()
        return _named(accounts, account_names(bind, accounts["account_id"].tolist()), columns)

    meta = {"Page": report.title, "Table": title, "Definition": RISK_DEFINITION, "Filters": view.describe()}
    left, right = st.columns(2)
    for column, fmt, build in (
        (left, "csv", lambda: export.frame_csv(frame())),
        (right, "xlsx", lambda: export.frame_xlsx({title[:31]: frame()}, meta)),
    ):
        name = export.file_name(title, view.file_tag(), fmt)
        with column:
            st.download_button(
                f"All {count:,} accounts that {which} ({fmt.upper()})",
                data=audited(build, view, report.title, name, title),
                file_name=name,
                mime=export.MIME_TYPES[fmt],
                key=f"dl-risk-all-{fmt}",
                on_click="ignore",
                icon=":material/download:",
            )


bounds = data_date_range(database_url())
# T runs to the end of the data, not to a range end in the future (a month not yet paid is no silence)
as_of = min(view.filters.end, bounds[1] + dt.timedelta(days=1)) if bounds else None
# the accounts without their names: those are read for the rows shown (and for the whole
# list only when its download is clicked), not joined to every paying account
risk = kpi(
    customer_models.churn_risk,
    view.filters,
    unit=fit_store.PAGE_UNIT,  # the unit and holdout the fits computed ahead were made with
    horizon=HORIZON_WEEKS,
    as_of=as_of,
    names=False,
)
if risk.transactions is None:
    no_data(" ".join(risk.problems) or None)
else:
    if risk.low_sample:
        st.caption(
            f":orange[:material/warning: Fewer than {customer_models.MIN_CUSTOMERS} accounts (or repeat "
            "payers) in this selection: the model's numbers are uncertain.]"
        )
    for problem in risk.problems:
        st.caption(f":orange[:material/warning: {problem}]")
    by_rank = st.selectbox(
        "Rank accounts by", list(RANKINGS), format_func=RANKINGS.__getitem__, key="risk_rank"
    )
    recent = st.toggle(
        "Only accounts that paid in the last 8 weeks (who may leave next)", value=False, key="risk_recent"
    )
    # weeks since the last payment day (T − recency) ≤ 8; ranked by by_rank, then account_id:
    # the rows shown taken alone, the whole ranking only for a download (when clicked)
    within = 8 if recent else None
    count = risk.count(within)
    columns = [
        "account_id", "name", "segment", "last_paid", "frequency", "recency", "T", "inactive_probability",
        "expected_transactions", "expected_amount", "clv_revenue",
    ]  # fmt: skip
    ranked = _with_names(risk.ranking(by_rank, within_units=within, rows=RISK_TABLE_ROWS), columns)
    top = ranked.head(20).iloc[::-1]
    unit = "ratio" if by_rank == "inactive_probability" else "money"
    fig = go.Figure(
        go.Bar(
            x=top[by_rank],
            y=top["name"].fillna(top["account_id"]),
            orientation="h",
            marker_color=PALETTE[1] if unit == "ratio" else PALETTE[0],
            name=RANKINGS[by_rank],
        )
    )
    fig.update_xaxes(title_text=RANKINGS[by_rank].lower(), **axis_format(unit))
    fig.update_layout(height=figures.horizontal_height(len(top)), showlegend=False)
    report.chart(fig, ranked, f"Accounts by {RANKINGS[by_rank].lower()} (top 20)", definition=RISK_DEFINITION)
    which = "paid in this range" + (" and the last 8 weeks" if recent else "")
    shown = (
        f"All {count:,} accounts that {which}"
        if count <= RISK_TABLE_ROWS
        else f"The first {len(ranked):,} of the {count:,} accounts that {which}"
    )
    report.table(
        ranked,
        shown,
        height=320,
        caption=(
            "Ranked as above; the chart's Export has these rows as CSV and XLSX with the definitions"
            + ("." if count <= RISK_TABLE_ROWS else ", the buttons below every account.")
        ),
    )
    if count > RISK_TABLE_ROWS:
        _download_all(
            lambda risk=risk, by=by_rank, within=within: risk.ranking(by, within_units=within),
            count,
            columns,
            f"All accounts by {RANKINGS[by_rank].lower()}",
            which,
        )
    fit, spend = risk.transactions, risk.spend
    params = ", ".join(f"{k} = {v:,.3g}" for k, v in fit.params.items())
    spend_params = ", ".join(f"{k} = {v:,.3g}" for k, v in spend.params.items()) if spend else "not fitted"
    model_col, holdout_col = st.columns(2)
    with model_col:
        st.markdown("**The model**")
        st.caption(
            f"BG/NBD on {fit.customers:,} accounts: {params} (weeks). Gamma-Gamma on "
            f"{spend.customers if spend else 0:,} repeat payers: {spend_params}. Their 95 % intervals "
            "(Wald, log scale; empty where a parameter ran to the edge of the search):"
        )
        intervals = pd.concat(
            [fit.intervals.assign(model="BG/NBD")]
            + ([spend.intervals.assign(model="Gamma-Gamma")] if spend else [])
        )
        show_dataframe(intervals[["model", "parameter", "estimate", "low95", "high95"]])
    with holdout_col:
        st.markdown("**Holdout check**")
        totals = risk.holdout_summary
        if risk.holdout.empty:
            st.caption("Too little data before the holdout split to check the model.")
        else:
            st.caption(
                f"Fitted on payments before {totals['split']:%d %b %Y}, the model predicted "
                f"{totals['predicted']:,.0f} payment days for these {int(totals['accounts']):,} accounts in the "
                f"{totals['holdout_units']:.0f} weeks after; they made {totals['actual']:,.0f} "
                f"({totals['error']:+.1%}; mean absolute error {totals['mae']:.2f} per account)."
            )
            hold = risk.holdout
            fig = go.Figure(
                [
                    go.Bar(
                        x=hold["calibration_frequency"], y=hold["actual"], name="Actual", marker_color=NEUTRAL
                    ),
                    go.Bar(
                        x=hold["calibration_frequency"],
                        y=hold["predicted"],
                        name="Predicted",
                        marker_color=PALETTE[0],
                    ),
                ]
            )
            fig.update_xaxes(title_text="repeat payment days before the split", type="category")
            fig.update_yaxes(title_text="mean payment days after the split")
            fig.update_layout(barmode="group")
            report.chart(
                fig,
                hold,
                "Holdout: predicted vs actual payment days",
                definition=(
                    "The range is split two thirds in; the BG/NBD fitted on the first part predicts each account's "
                    "payment days in the rest (Fader, Hardie & Lee 2005's check), averaged by the account's "
                    "repeat payment days before the split."
                ),
            )

    # projected cohort survival (sBG)
    # fitted to the heatmap's cohorts (not read again), with the holdout check in the same call
    cohorts_fit = kpi(
        customer_models.cohort_sbg,
        view.filters,
        horizon=24,
        holdout=fit_store.PAGE_COHORT_HOLDOUT,
        retention=cohorts,
    )
    if cohorts_fit.pooled is None:
        no_data("No signup cohort lost a customer yet: nothing to project retention from.")
    else:
        pooled = cohorts_fit.pooled
        curve = cohorts_fit.pooled_curve
        fig = go.Figure()
        seen = curve[curve["kind"] == "observed"]
        fig.add_trace(
            go.Scatter(x=seen["months_since_start"], y=seen["observed_rate"], name="All cohorts, observed",
                       mode="lines+markers", line={"color": "#1F2937", "width": 2})
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(x=curve["months_since_start"], y=curve["projected_rate"], name="All cohorts, sBG",
                       mode="lines", line={"color": "#1F2937", "dash": "dash"})
        )  # fmt: skip
        own = cohorts_fit.fits[~cohorts_fit.fits["low_sample"]].tail(5)
        for i, cohort in enumerate(own["cohort"]):
            rows = cohorts_fit.curves[cohorts_fit.curves["cohort"] == cohort]
            colour = PALETTE[i % len(PALETTE)]
            label = view.period_label(cohort)
            observed = rows[rows["kind"] == "observed"]
            fig.add_trace(
                go.Scatter(
                    x=observed["months_since_start"],
                    y=observed["observed_rate"],
                    name=f"{label}, observed",
                    mode="lines",
                    line={"color": colour},
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=rows["months_since_start"],
                    y=rows["projected_rate"],
                    name=f"{label}, sBG",
                    mode="lines",
                    line={"color": colour, "dash": "dot"},
                )
            )
        fig.update_xaxes(title_text="months since signup")
        fig.update_layout(legend={"orientation": "v", "x": 1.02, "y": 1, "yanchor": "top"})
        fig.update_yaxes(title_text="share still a customer", rangemode="tozero", **axis_format("ratio"))
        report.chart(
            fig,
            pd.concat([cohorts_fit.curves, cohorts_fit.pooled_curve.assign(cohort="all")]),
            "Cohort survival: observed and projected",
            definition=(
                "Shifted-beta-geometric model (Fader & Hardie 2007): each account has its own monthly churn "
                "probability, spread across accounts as Beta(alpha, beta), so a cohort's retention rises as the "
                "churn-prone leave. Fitted by maximum likelihood to the signup cohorts of the heatmap above "
                f"(grouped by {view.freq}); observed = share of the cohort still a customer (Kaplan-Meier over "
                "its monthly cohorts), dashed = the model's survival, 24 months past the data. "
                f"All cohorts: alpha = {pooled.alpha:.3g}, beta = {pooled.beta:.3g}, first-month churn "
                f"{fmt_ratio(pooled.churn_rate)}, discounted expected remaining lifetime of a new customer "
                f"(DERL, 10 % a year) {pooled.derl(0, 1.1 ** (1 / 12) - 1):.1f} months."
            ),
        )
        small = cohorts_fit.fits[cohorts_fit.fits["low_sample"]]
        if len(small):
            st.caption(
                f":orange[:material/warning: {len(small)} of {len(cohorts_fit.fits)} cohorts have fewer than "
                f"{customer_models.MIN_CUSTOMERS} customers or {customer_models.MIN_PERIODS} months of data: "
                "they are projected with the fit of all cohorts.]"
            )
        backtest = cohorts_fit.holdout
        if backtest is not None and not backtest.empty:
            worst = backtest["relative_error"].abs().max()
            st.caption(
                f":material/history: Holdout: fitted with each cohort's last 6 months hidden, the model projected "
                f"{backtest['predicted'].iloc[-1]:,.0f} customers still there 6 months on; there were "
                f"{backtest['actual'].iloc[-1]:,.0f} (largest monthly error {fmt_ratio(worst)}, "
                f"{int(backtest['cohorts'].iloc[0])} cohorts)."
            )

report.finish()
