"""Scheduled reports (analysts and admins): the reports with their next run, a form to add
one (pages, filters, format, recipients, a cron schedule shown in words with its next runs),
"send now", removing one, and the history of runs and deliveries. The work is done by
``delivery.reports`` (``crm-insights reports run-due`` or ``crm-insights scheduler`` sends
on schedule); "send now" runs ``crm-insights reports send`` in the background."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import streamlit as st

from crm_data.engines import database_url
from delivery import channels, reports
from ui import auth
from ui.filters import global_filters

st.set_page_config(page_title="CRM Insights — Reports", page_icon=":material/schedule_send:", layout="wide")
global_filters()  # the sign-in gate runs first, inside; the current filters seed a new report's filters
user = auth.require(auth.ANALYST)
url = database_url()

st.title("Scheduled reports")
st.caption(
    "Pages with filters, sent by e-mail as PDF, XLSX or PPTX on a schedule. Each recipient is an account and "
    "gets only what its scope allows. Sent by `crm-insights reports run-due` (cron or a systemd timer) or "
    "`crm-insights scheduler`; times in UTC unless a report says otherwise."
)
if channels.MailSettings.from_env() is None:
    st.warning(
        "No mail server is configured for this server process: set CRM_SMTP_HOST and CRM_SMTP_FROM (see the README) "
        "where `reports run-due` runs.",
        icon=":material/mail_off:",
    )

# --- the reports -------------------------------------------------------------------------------
listed = reports.reports(url)
history = reports.runs(url=url)


def _last(report_id: int) -> str:
    rows = history[history["report_id"] == report_id]
    if rows.empty:
        return "never sent"
    row = rows.iloc[0]
    return f"{row['status']} ({row['trigger']} {pd.Timestamp(row['due_at']):%d %b %H:%M})"


if listed:
    table = pd.DataFrame(
        {
            "report": [r.name for r in listed],
            "pages": [", ".join(reports.page_title(p) for p in r.pages) for r in listed],
            "format": [r.format.upper() for r in listed],
            "recipients": [", ".join(r.recipients) for r in listed],
            "schedule": [r.describe() for r in listed],
            "next run (UTC)": [reports.next_run(r.schedule, r.timezone) for r in listed],
            "filters": [r.query or "default range" for r in listed],
            "last run": [_last(r.report_id) for r in listed],
        }
    )
    st.dataframe(table, hide_index=True, width="stretch", key="reports_table")
    names = [r.name for r in listed]
    left, middle, right = st.columns([2, 1, 1], vertical_alignment="bottom")
    chosen = left.selectbox("Report", names, key="reports_chosen")
    if middle.button("Send now", icon=":material/send:", key="reports_send_now"):
        report = next(r for r in listed if r.name == chosen)
        subprocess.Popen(  # rendering takes a while: in the background, recorded in the history below
            [sys.executable, "-m", "crm_data", "reports", "send", str(report.report_id)],
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "CRM_DATABASE_URL": url},  # not on the command line: it may hold a password
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        auth.record("report_send_requested", chosen, {"report_id": report.report_id})
        st.success(
            f"Sending “{chosen}” now; it appears in the history below when done.", icon=":material/send:"
        )
    if right.button("Remove", icon=":material/delete:", key="reports_remove"):
        reports.remove_report(chosen, actor=user.name, url=url)
        st.rerun()
else:
    st.info("No reports yet: add one below.", icon=":material/schedule_send:")

# --- add one -----------------------------------------------------------------------------------
st.subheader("Add a report")
pages = reports.report_pages()
accounts = auth.store().accounts()
with st.container(border=True):
    name = st.text_input("Name (the e-mail's subject)", key="reports_new_name")
    chosen_pages = st.multiselect("Pages", list(pages), default=["Overview"], key="reports_new_pages")
    current = "&".join(f"{k}={v}" for k in st.query_params for v in st.query_params.get_all(k))
    query = st.text_input(
        "Filters (the pages' URL query)",
        value=current,
        key="reports_new_filters",
        help="Seeded with the sidebar's current filters. Without from / to, every run shows the default range "
        "(the last 12 full months and the current one).",
    )
    fmt = st.radio("Format", ["pdf", "xlsx", "pptx"], horizontal=True, key="reports_new_format",
                   format_func=str.upper)  # fmt: skip
    recipients = st.text_area(
        "Recipients (one per line: an account named by its e-mail address, or NAME=ADDRESS)",
        key="reports_new_recipients",
        help="Accounts: " + (", ".join(a.name for a in accounts) or "none (anonymous install: any address)"),
    )
    left, right = st.columns([2, 1])
    schedule = left.text_input(
        "Schedule (cron: minute hour day month weekday)", value="0 8 * * 1", key="reports_new_cron"
    )
    timezone = right.text_input("Time zone", value="UTC", key="reports_new_tz")
    try:
        upcoming = [reports.next_run(schedule, timezone)]
        for _ in range(2):
            upcoming.append(reports.next_run(schedule, timezone, upcoming[-1]))
        st.caption(
            f":material/event: {reports.describe_schedule(schedule, timezone)} — next: "
            + ", ".join(f"{t:%a %d %b %Y %H:%M} UTC" for t in upcoming if t)
        )
    except reports.ReportError as error:
        st.caption(f":red[:material/error: {error}]")
    if st.button("Add report", type="primary", icon=":material/add:", key="reports_new_add"):
        try:
            added = reports.add_report(
                name, chosen_pages, query, fmt, [r for r in recipients.splitlines() if r.strip()], schedule,
                timezone=timezone.strip() or "UTC", actor=user.name, url=url,
            )  # fmt: skip
        except reports.ReportError as error:
            st.error(str(error), icon=":material/error:")
        else:
            st.success(f"Added “{added.name}”: {added.describe()}.", icon=":material/check:")
            st.rerun()

# --- history -------------------------------------------------------------------------------------
st.subheader("History")
if history.empty:
    st.caption("No runs yet.")
else:
    by_id = {r.report_id: r.name for r in listed}
    shown = pd.DataFrame(
        {
            "report": history["report_id"].map(lambda i: by_id.get(i, f"removed report {i}")),
            "scheduled (UTC)": history["due_at"],
            "trigger": history["trigger"],
            "status": history["status"],
            "finished (UTC)": history["finished_at"],
            "recipients": history["detail"].map(
                lambda d: "; ".join(f"{k}: {v}" for k, v in json.loads(d or "{}").items())
            ),
        }
    )
    st.dataframe(shown, hide_index=True, width="stretch", key="reports_history")
since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=30)
attempts = channels.deliveries(kind="report", url=url)
attempts = attempts[attempts["attempted_at"] >= since]
with st.expander(f"Delivery attempts, last 30 days ({len(attempts)})", icon=":material/outgoing_mail:"):
    st.dataframe(attempts, hide_index=True, width="stretch", key="reports_attempts")
    owed = channels.undelivered("report", url=url)
    if owed:
        st.warning(
            f"{len(owed)} deliver{'ies' if len(owed) != 1 else 'y'} failed and will be retried by the next run-due.",
            icon=":material/schedule:",
        )
