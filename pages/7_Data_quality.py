"""Data quality: the ``python -m crm_data check`` report — duplicates, missing key fields,
stale open deals, orphans, future timestamps, overlapping subscriptions — each finding with
the records behind it and a CSV download.

The whole database's report is the stored one (``python -m crm_data check``, every import,
or "Re-check now" here: ``ui.quality``), with its age, and a note when the data changed
since; analysts and admins can re-check. A user with a restricted scope gets the records
within it, checked now — only the checks that found something in the stored whole-database
report, while the data are those it checked (``crm_data.quality_snapshot.check_scope``); a
limited scope sees no findings on the tables without an account;
the records behind the findings need the analyst role."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from charts.theme import fmt_count
from crm_data.quality_snapshot import check_scope
from ui import auth
from ui import quality as stored
from ui.data import call
from ui.filters import global_filters
from ui.report import PageReport, show_dataframe

st.set_page_config(page_title="CRM Insights — Data quality", page_icon=":material/rule:", layout="wide")
view = global_filters()
scope = view.filters.scope
user = view.user or auth.current_user()
report = PageReport(
    "Data quality",
    view,
    caption=(
        f":material/info: The check looks at the records within your scope ({scope.describe()}): "
        "the sidebar filters do not apply here."
        if scope.restricted
        else ":material/info: The check looks at the whole database: the sidebar filters do not apply here."
    ),
)

stale_days = st.columns([1, 2])[0].number_input(
    "An open deal is stale after this many days without a stage change",
    min_value=1,
    max_value=3650,
    value=90,
    step=15,
    key="quality_stale_days",
)
when, button = st.columns([5, 1], vertical_alignment="center")
if scope.restricted:
    shown = stored.Shown(call(check_scope, stale_days=int(stale_days), scope=scope))
else:
    may_recheck = user.may(stored.RECHECK_ROLE)
    clicked = may_recheck and button.button(
        "Re-check now", key="quality_recheck", icon=":material/refresh:", help="Check the whole database now"
    )
    if clicked:
        with st.spinner("Checking the whole database…"):
            shown = stored.recheck(int(stale_days))
    else:
        shown = stored.whole_database(int(stale_days), may_store=may_recheck)
quality = shown.report
checked = shown.snapshot.computed_at if shown.snapshot is not None else quality.checked_at
notes = []
if shown.snapshot is None and not scope.restricted:
    notes.append("not stored")
if quality.reused_checks and quality.earlier_check_at is not None:
    notes.append(
        f"{len(quality.reused_checks)} checks that found nothing in the whole database "
        f"{stored.age(quality.earlier_check_at)} not run again"
    )
if shown.snapshot is not None and shown.snapshot.report.stale_days != quality.stale_days:
    notes.append(f"stale open deals checked now for {quality.stale_days} days")
when.caption(
    " · ".join(
        [f":material/schedule: Checked {stored.age(checked)} (at {checked:%Y-%m-%d %H:%M} UTC)", *notes]
    )
)
if shown.problem:
    st.info(shown.problem, icon=":material/database:")
if shown.changed:
    tables = ", ".join(shown.changed)
    advice = (
        "Re-check now to update the findings."
        if user.may(stored.RECHECK_ROLE)
        else "An analyst or admin can re-check (or run `python -m crm_data check`)."
    )
    st.warning(
        f"The data changed since the last check (rows added or removed in {tables}): the findings below "
        f"may be out of date. {advice}",
        icon=":material/update:",
    )
if quality.scope is not None:
    st.caption(
        ":material/lock: Findings on the tables without an account (users, products, pipeline stages, "
        "web traffic, social media, campaigns, costs without an account, the KPI roll-ups) are not shown "
        "for your scope."
    )
findings = list(quality.findings)
problems = sorted((f for f in findings if f.count), key=lambda f: -f.count)

if not problems:
    st.success(f"No problems found in {len(findings)} checks.", icon=":material/verified:")
else:
    st.warning(
        f"{len(problems)} of {len(findings)} checks found problems "
        f"({fmt_count(sum(f.count for f in problems))} records).",
        icon=":material/report:",
    )

# problems first (most records first), then the clean checks in their own order
ordered = sorted(findings, key=lambda f: (f.count == 0, -f.count))
summary = pd.DataFrame(
    [
        {
            "check": f.title,
            "severity": f.severity,
            "table": f.table,
            "records": int(f.count),
            "what it means": f.description,
        }
        for f in ordered
    ]
)
show_dataframe(
    summary,
    column_config={"records": st.column_config.NumberColumn(format="localized")},
)

for finding in problems:
    with st.expander(
        f"{finding.title} — {fmt_count(finding.count)} in {finding.table}", icon=":material/warning:"
    ):
        st.caption(finding.description)
        records = finding.records
        if records is None or records.empty:
            st.write("The check counted these records but did not list them.")
        else:
            listed = None
            if len(records) < finding.count:
                listed = f"The first {len(records):,} of {finding.count:,} records."
            report.table(records, finding.title, caption=listed, records=True)
