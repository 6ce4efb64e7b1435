"""Audit log (admins only): sign-ins and failed sign-ins, imports, exports, account and role
changes — who, when, what, from which address — newest first, with CSV / XLSX downloads;
and the sign-in accounts with their roles and scopes (changed with ``crm-insights users``)."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import streamlit as st

from charts import export
from ui import auth
from ui.filters import global_filters

st.set_page_config(page_title="CRM Insights — Audit log", page_icon=":material/policy:", layout="wide")
global_filters()  # the sign-in gate runs first, inside; the filters do not apply to this page
user = auth.require(auth.ADMIN)  # anyone else who opens this URL stops here

st.title("Audit log")
st.caption(
    "Sign-ins (and failures and lock-outs), sign-outs and expired sessions, imports, exports and "
    "account changes, newest first. Times in UTC. The sidebar filters do not apply here."
)

ACTIONS = {
    "sign_in": "Signed in",
    "sign_in_failed": "Failed sign-in",
    "sign_in_locked": "Refused: locked",
    "sso_refused": "Refused: no SSO account",
    "sign_out": "Signed out",
    "session_expired": "Session expired",
    "import": "Import",
    "rollups_rebuilt": "Roll-ups rebuilt",
    "export": "Export",
    "user_added": "Account added",
    "user_changed": "Account changed",
    "user_removed": "Account removed",
    "password_set": "Password set",
    "goal_added": "Goal added",
    "goal_changed": "Goal changed",
    "goal_removed": "Goal removed",
    "goals_imported": "Goals imported",
}

left, right = st.columns([1, 3])
days = left.number_input("Last days", min_value=1, max_value=3650, value=30, step=1, key="audit_days")
chosen = right.multiselect(
    "Actions", list(ACTIONS), format_func=ACTIONS.__getitem__, placeholder="All", key="audit_actions"
)
since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=int(days))
log = auth.store().audit_log(since=since, actions=chosen)
shown = pd.DataFrame(
    {
        "when (UTC)": log["occurred_at"],
        "who": log["actor"],
        "what": log["action"].map(lambda a: ACTIONS.get(a, a)),
        "target": log["target"],
        "details": log["details"].map(
            lambda d: ", ".join(f"{k}: {v}" for k, v in json.loads(d or "{}").items())
        ),
        "address": log["address"],
    }
)
st.dataframe(shown, hide_index=True, width="stretch")
st.caption(f"{len(shown):,} events.")


def _logged(build, fmt: str):
    def run() -> bytes:
        auth.store().record(
            user.name, "export", f"audit-log.{fmt}", {"page": "Audit log", "rows": len(shown)}
        )
        return build()

    return run


buttons = st.columns([1, 1, 4])
with buttons[0]:
    st.download_button(
        "CSV",
        data=_logged(lambda: export.frame_csv(shown), "csv"),
        file_name="audit-log.csv",
        mime=export.MIME_TYPES["csv"],
        on_click="ignore",
        icon=":material/download:",
        key="audit_csv",
    )
with buttons[1]:
    st.download_button(
        "XLSX",
        data=_logged(lambda: export.frame_xlsx({"Audit log": shown}, {"Exported by": user.name}), "xlsx"),
        file_name="audit-log.xlsx",
        mime=export.MIME_TYPES["xlsx"],
        on_click="ignore",
        icon=":material/download:",
        key="audit_xlsx",
    )

st.subheader("Accounts")
accounts = auth.store().accounts()
if not accounts:
    st.info("No sign-in accounts: the dashboard is anonymous on 127.0.0.1.", icon=":material/info:")
else:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "name": a.name,
                    "role": a.role,
                    "signs in with": "single sign-on" if a.sso else "password",
                    "sees": a.describe_scope(),
                }
                for a in accounts
            ]
        ),
        hide_index=True,
    )
st.caption(
    "Add, change or remove accounts on the server: `crm-insights users add NAME --role viewer --region EMEA`, "
    "`crm-insights users update NAME --role analyst`, `crm-insights users remove NAME` "
    "(`crm-insights users --help`)."
)
