"""Alerts: the rules that tell people when a KPI crosses a line, the alerts they fired and
their deliveries (``delivery.alerts``). Everyone may read; analysts and admins add and
remove rules and evaluate them now (``crm-insights alerts run`` does it on a schedule).

A rule is evaluated within its author's scope, and shown only to users whose scope holds
it. The sidebar filters do not apply here."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from crm_data.engines import database_url
from delivery.alerts import (
    CONDITIONS,
    FILTER_FIELDS,
    PERIOD_KPIS,
    AlertError,
    AlertStore,
    Rule,
    RunInProgress,
    run,
)
from delivery.channels import MailSettings, shown_recipient
from kpis.registry import get as kpi_definition
from ui import auth, data
from ui.filters import global_filters

st.set_page_config(page_title="CRM Insights — Alerts", page_icon=":material/notifications:", layout="wide")
view = global_filters()  # the sign-in gate runs first, inside
user = view.user or auth.current_user()
may_edit = user.may(auth.ANALYST)
url = database_url()

st.title("Alerts")
st.caption(
    "Each rule is judged on the last complete period (the running one never fires), once per period: "
    "an alert is sent once, by e-mail and to webhooks, and a failed delivery is sent again by the next "
    "run. `crm-insights alerts run` evaluates the rules on a schedule (README: *For leaders → Alerts*). "
    "The sidebar filters do not apply here."
)

CONDITION_LABELS = {
    "above": "above a line",
    "below": "below a line",
    "change_by": "changes by at least (on the previous period)",
    "outside_forecast": "outside the revenue forecast's interval",
    "complaint_spike": "a complaint spike on a product",
}
KPI_KEYS = [*PERIOD_KPIS, "complaint_spikes"]

try:
    store = AlertStore(url)
    rules = [r for r in store.rules() if r.visible_to(user.scope)]
except Exception as error:  # e.g. a read-only PostgreSQL role without the app tables
    st.error(
        f"The alert rules cannot be read or created in the app database: {error}", icon=":material/error:"
    )
    st.stop()
visible_ids = {r.rule_id for r in rules}


def _rules_frame(rules: list[Rule]) -> pd.DataFrame:
    events = store.events()
    last = events.groupby("rule_id")["period"].max() if len(events) else pd.Series(dtype=object)
    return pd.DataFrame(
        [
            {
                "id": r.rule_id,
                "name": r.name,
                "rule": r.describe(),
                "tells": ", ".join(shown_recipient(c) for c in r.channels),
                "last alert (period)": last.get(r.rule_id, "—"),
                "by": r.created_by,
            }
            for r in rules
        ],
        columns=["id", "name", "rule", "tells", "last alert (period)", "by"],
    )


st.subheader("Rules")
rules_slot = st.empty()  # drawn at the end, after an evaluation, so "last alert" is current
if not rules:
    st.info("No alert rules yet." + (" Add one below." if may_edit else ""), icon=":material/info:")

if may_edit:
    known = data.dimension_values(url, user.scope)
    with st.expander("Add a rule", expanded=not rules, icon=":material/add_alert:"):
        with st.form("alert_add", clear_on_submit=False, border=False):
            left, middle, right = st.columns(3)
            kpi = left.selectbox(
                "KPI", KPI_KEYS, format_func=lambda k: kpi_definition(k).title, key="alert_kpi"
            )
            condition = middle.selectbox(
                "Condition", CONDITIONS, format_func=CONDITION_LABELS.__getitem__, key="alert_condition"
            )
            grain = right.selectbox(
                "Period",
                ("month", "quarter", "year"),
                key="alert_grain",
                help="Complaint spikes are judged per week, the revenue forecast per month.",
            )
            threshold = left.text_input(
                "Threshold",
                key="alert_threshold",
                help="A line in the KPI's unit: 3% (or 0.03) for a rate, 40 for NPS, 10000 for money. "
                "For a change: −10 = falls by 10 or more, 10 = rises by 10 or more. For the forecast: "
                "95 or 80 (the interval; empty = 95). Empty for a complaint spike.",
            )
            name = middle.text_input("Name (optional)", key="alert_name")
            channels = right.text_area(
                "Tell (one e-mail address or webhook URL per line)", key="alert_channels", height=100
            )
            chosen: dict[str, list[str]] = {}
            columns = st.columns(3)
            for column, field in zip(columns, ("segments", "regions", "products"), strict=True):
                options = known.get(field, [])
                labels = data.dimension_labels(url).get(field, {})
                chosen[field] = column.multiselect(
                    field.capitalize(),
                    options,
                    format_func=lambda v, labels=labels: labels.get(v, v),
                    key=f"alert_{field}",
                    placeholder="All",
                )
            submitted = st.form_submit_button("Add rule", icon=":material/add:")
        if submitted:
            if condition == "complaint_spike":
                grain = "week"
            elif condition == "outside_forecast":
                grain = "month"
            try:
                rule = store.add(
                    kpi,
                    condition=condition,
                    threshold=threshold,
                    grain=grain,
                    filters={k: v for k, v in chosen.items() if k in FILTER_FIELDS and v},
                    channels=[line.strip() for line in channels.replace(",", "\n").splitlines()],
                    name=name,
                    created_by=user.name,
                    scope=user.scope,
                )
            except AlertError as error:
                st.error(f"The rule was not added: {error}", icon=":material/error:")
            else:
                auth.record("alert_rule_added", f"alert {rule.rule_id}", {"rule": rule.describe()})
                st.success(f"Added rule {rule.rule_id}: {rule.describe()}", icon=":material/check:")
                st.rerun()

    if rules:
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        doomed = left.selectbox(
            "Remove a rule",
            [r.rule_id for r in rules],
            format_func=lambda i: next(f"{r.rule_id} · {r.name}" for r in rules if r.rule_id == i),
            key="alert_remove_choice",
        )
        if right.button("Remove rule", icon=":material/delete:", key="alert_remove"):
            removed = store.remove(doomed)
            auth.record("alert_rule_removed", f"alert {removed.rule_id}", {"rule": removed.describe()})
            st.rerun()

        if st.button("Evaluate now", icon=":material/play_arrow:", key="alert_evaluate", type="primary"):
            today = view.today or dt.datetime.now(dt.UTC).date()
            try:
                mail = MailSettings.from_env()
            except ValueError as error:
                st.error(f"E-mail is not set up correctly: {error}", icon=":material/error:")
                mail = None
            try:
                with st.spinner("Evaluating the rules and sending the alerts …"):
                    report = run(
                        data.engine(), store, today, mail=mail, rule_ids=sorted(visible_ids), attempts=1
                    )
            except RunInProgress as error:
                st.warning(f"Not evaluated: {error}", icon=":material/hourglass:")
                st.stop()
            new = {id(e) for e in report.fired}
            for evaluation in report.evaluations:
                if id(evaluation) in new:
                    st.warning(f"**Fired:** {evaluation.message}", icon=":material/notifications_active:")
                elif evaluation.fired:
                    st.info(
                        f"Fired before (not sent again): {evaluation.message}", icon=":material/done_all:"
                    )
                else:
                    st.success(f"Not fired: {evaluation.message}", icon=":material/check:")
            for rule_id, error_text in report.errors:
                st.error(f"Rule {rule_id} could not be evaluated: {error_text}", icon=":material/error:")
            failed = report.failed_deliveries
            sent = len(report.deliveries) - failed
            st.caption(
                f"As of {today:%d %b %Y}: {len(report.fired)} new alert(s); {sent} delivery(ies) sent, "
                f"{failed} failed (recorded below; the next run sends them again)."
            )
else:
    st.caption(":material/lock: Analysts and admins add, remove and evaluate rules.")

st.subheader("Alerts fired")
events = store.events()
events = events[events["rule_id"].isin(visible_ids)] if user.scope.restricted else events
if events.empty:
    st.caption("No alert has fired yet.")
else:
    events["channels"] = events["channels"].map(
        lambda text: ", ".join(shown_recipient(c) for c in text.split(", ") if c)
    )
    newest = events.iloc[0]
    st.markdown(f"**{len(events)} alert(s).** Newest, rule {newest['rule_id']}: {newest['message']}")
    st.dataframe(
        events.rename(
            columns={"fired_at": "fired at (UTC)", "rule_id": "rule", "channels": "told", "message": "alert"}
        )[["fired at (UTC)", "rule", "period", "alert", "told"]],
        hide_index=True,
        width="stretch",
        key="alert_events_table",
    )

st.subheader("Deliveries")
attempts = store.deliveries()
if user.scope.restricted:
    rule_of = attempts["target"].str.split(" ").str[1]
    attempts = attempts[rule_of.isin({str(i) for i in visible_ids})]
if attempts.empty:
    st.caption("Nothing delivered yet.")
else:
    st.dataframe(
        pd.DataFrame(
            {
                "when (UTC)": attempts["attempted_at"],
                "alert": attempts["target"],
                "to": attempts["recipient"].map(shown_recipient),
                "attempt": attempts["attempt"],
                "outcome": attempts["ok"].map({True: "sent", False: "failed"}),
                "error": attempts["error"],
            }
        ),
        hide_index=True,
        width="stretch",
        key="alert_deliveries_table",
    )

if rules:
    rules_slot.dataframe(_rules_frame(rules), hide_index=True, width="stretch", key="alert_rules_table")
