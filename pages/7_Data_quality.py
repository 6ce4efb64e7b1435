"""Data quality: the ``python -m crm_data check`` report — duplicates, missing key fields,
stale open deals, orphans, future timestamps, overlapping subscriptions — each finding with
the records behind it and a CSV download.

The check covers the records within the user's scope (the whole database for an unlimited
one; a limited scope sees no findings on the tables without an account); the records behind
the findings need the analyst role."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from charts.theme import fmt_count
from crm_data.quality import check_database
from ui.data import call
from ui.filters import global_filters
from ui.report import PageReport, show_dataframe

st.set_page_config(page_title="CRM Insights — Data quality", page_icon=":material/rule:", layout="wide")
view = global_filters()
scope = view.filters.scope
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
quality = call(check_database, stale_days=int(stale_days), scope=scope if scope.restricted else None)
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
        {"check": f.title, "table": f.table, "records": int(f.count), "what it means": f.description}
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
