"""Goals: targets per KPI and period with their actual value, progress and status (judged
by pace within a running period: ``kpis.goals``), the quota attainment per owner, and — for
analysts and admins — adding, changing, removing and importing goals (``crm_data.goals``).
Viewers read only; everyone sees only the goals inside their scope."""

from __future__ import annotations

import math

import pandas as pd
import sqlalchemy as sa
import streamlit as st

from charts.theme import fmt_value
from crm_data import goals as store_module
from crm_data.goals import DIMENSIONS, GOAL_KPIS, GoalError, GoalImportError, make_goal
from kpis import goals as kg
from kpis.core import as_of
from ui import auth, data
from ui import goals as ui_goals
from ui.filters import global_filters, period_label

st.set_page_config(page_title="CRM Insights — Goals", page_icon=":material/flag:", layout="wide")
view = global_filters()
user = auth.current_user()
may_edit = user.may(auth.ANALYST)
scope = view.filters.scope
today = as_of(view.today)
url = data.database_url()
labels = data.dimension_labels(url)
owner_names = labels.get("owners", {})

st.title("Goals")
st.caption(
    f"Targets per KPI and month, quarter or year, judged as of {today:%d %b %Y} (data up to the day "
    "before). A running period is judged by pace: revenue, won amount and new customers against the "
    "same elapsed share of their target, rates and other values on their value so far. Each goal has "
    "its own period and slice: the sidebar filters do not apply to this list (the Overview's cards "
    "show the goal of exactly the selected filters)."
    + (f" You see the goals inside your scope ({scope.describe()})." if scope.restricted else "")
)

try:
    goals = [g for g in ui_goals.all_goals() if kg.visible(g, scope)]
except sa.exc.SQLAlchemyError as error:
    reason = " ".join(str(getattr(error, "orig", error)).split())[:300]
    st.error(f"The goals cannot be read from the app database: {reason}", icon=":material/error:")
    st.stop()


def _exported_goals(shown: list, actor: str):
    """The goals CSV, built when the button is clicked and written to the audit log."""

    def build() -> bytes:
        auth.store().record(actor, "export", "goals.csv", {"page": "Goals", "rows": len(shown)})
        return store_module.goals_csv(shown).encode()

    return build


# --- the list ------------------------------------------------------------------------
if not goals:
    st.info(
        "No goals yet."
        + (" Add one below or import a CSV." if may_edit else " Analysts and admins can set them."),
        icon=":material/flag:",
    )
else:
    rows = []
    for goal in goals:
        judged = ui_goals.judge(goal, view)
        unit = GOAL_KPIS[goal.kpi].unit
        rows.append(
            {
                "id": goal.goal_id,
                "KPI": GOAL_KPIS[goal.kpi].title,
                "period": period_label(pd.Timestamp(goal.period_start), goal.period_kind),
                "for": kg.slice_text(goal, owner_names),
                "actual": fmt_value(judged.actual, unit),
                "target": fmt_value(goal.target, unit),
                "expected by now": fmt_value(judged.expected, unit) if judged.running else "",
                "progress": None if math.isnan(judged.progress) else judged.progress,
                "status": judged.status,
            }
        )
    table = pd.DataFrame(rows)
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key="goals_table",
        column_config={
            "progress": st.column_config.ProgressColumn(
                "progress",
                help="actual ÷ target (lower is better: target ÷ actual), 0–100 %",
                min_value=0.0,
                max_value=1.0,
                format="percent",
            ),
        },
    )
    counts = table["status"].value_counts()
    st.caption(" · ".join(f"{ui_goals.status_markdown(s)}: {counts[s]}" for s in kg.STATUSES if s in counts))
    st.download_button(
        "Goals (CSV)",
        data=_exported_goals(goals, user.name),
        file_name="goals.csv",
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
        key="goals_csv",
        help="The goals in the import format (edit and import again).",
    )

# --- quota attainment ------------------------------------------------------------------
st.subheader("Quota attainment")
quarters = sorted({g.period_start for g in goals if kg.is_quota(g)}, reverse=True)
if not quarters:
    st.caption(
        "No quotas yet: a quota is a goal of won amount for one owner in a quarter "
        "(CSV: `won_amount,2026-Q4,120000,,,,,U001`)."
    )
else:
    current = [q for q in quarters if q <= today]
    quarter = st.selectbox(
        "Quarter",
        quarters,
        index=quarters.index(current[0]) if current else 0,
        format_func=lambda q: period_label(pd.Timestamp(q), "quarter"),
        key="goals_quarter",
    )
    with data.engine().connect() as conn:
        attainment = kg.quota_attainment(conn, goals, quarter, today, scope)
    st.dataframe(
        pd.DataFrame(
            {
                "owner": attainment["owner"],
                "won amount": attainment["won_amount"].map(lambda v: fmt_value(v, "money")),
                "quota": attainment["quota"].map(lambda v: fmt_value(v, "money")),
                "attainment": attainment["attainment"],
                "won deals": attainment["won_deals"],
                "expected by now": attainment["expected"].map(lambda v: fmt_value(v, "money")),
                "status": attainment["status"],
            }
        ),
        hide_index=True,
        width="stretch",
        key="goals_quota_table",
        column_config={
            "attainment": st.column_config.ProgressColumn(
                "attainment", help="won amount ÷ quota", min_value=0.0, max_value=1.0, format="percent"
            )
        },
    )
    st.caption(
        "attainment = won amount ÷ quota, where won amount = Σ amount of the owner's won deals with "
        "closed_at in the quarter up to today; expected by now = quota × elapsed share of the quarter."
    )

# --- changing goals (analysts and admins) --------------------------------------------------
if not may_edit:
    st.caption(":material/lock: Goals are set by analysts and admins; you can read them.")
    st.stop()


def _changed(message: str) -> None:
    ui_goals.forget_goals()
    st.session_state["_goals_message"] = message
    st.rerun()


if "_goals_message" in st.session_state:
    st.success(st.session_state.pop("_goals_message"), icon=":material/check:")

known = data.dimension_values(url, scope)
st.subheader("Add or change a goal")
with st.form("goal_add", border=True):
    left, middle, right = st.columns(3)
    kpi_key = left.selectbox("KPI", list(GOAL_KPIS), format_func=lambda k: GOAL_KPIS[k].title, key="goal_kpi")
    period_text = middle.text_input(
        "Period",
        placeholder="2026-12, 2026-Q4 or 2026",
        key="goal_period",
        help="a month, a quarter or a year",
    )
    target_text = right.text_input(
        "Target", placeholder="250000, or 3% for a rate", key="goal_target", help="rates as 3% or 0.03"
    )
    chosen: dict[str, str] = {}
    for column, (name, field_name) in zip(st.columns(len(DIMENSIONS)), DIMENSIONS.items(), strict=True):
        options = ["", *known.get(field_name, [])]
        names = labels.get(field_name, {})
        chosen[name] = column.selectbox(
            name.capitalize(),
            options,
            format_func=lambda v, names=names: "all" if v == "" else names.get(v, v),
            key=f"goal_{name}",
        )
    submitted = st.form_submit_button("Save goal", icon=":material/flag:")
if submitted:
    try:
        goal = make_goal(kpi_key, period_text, target_text, chosen, owners=owner_names or None)
        if not kg.visible(goal, scope):
            raise GoalError(f"this goal is outside your scope ({scope.describe()}): choose a slice inside it")
        stored = ui_goals.goal_store().add(goal, actor=user.name)
    except GoalError as error:
        st.error(f"Not saved: {error}", icon=":material/error:")
    except sa.exc.SQLAlchemyError as error:
        st.error(ui_goals.write_problem(error), icon=":material/error:")
    else:
        _changed(
            f"Saved goal {stored.goal_id}: {GOAL_KPIS[stored.kpi].title} {stored.period} target "
            f"{fmt_value(stored.target, GOAL_KPIS[stored.kpi].unit)} "
            f"({kg.slice_text(stored, owner_names)})."
        )

if goals:
    st.subheader("Change a target or remove a goal")
    by_id = {g.goal_id: g for g in goals}
    left, middle, right = st.columns([3, 2, 2], vertical_alignment="bottom")
    picked = left.selectbox(
        "Goal",
        list(by_id),
        format_func=lambda i: (
            f"{i}: {GOAL_KPIS[by_id[i].kpi].title} {by_id[i].period} ({kg.slice_text(by_id[i], owner_names)}), "
            f"target {fmt_value(by_id[i].target, GOAL_KPIS[by_id[i].kpi].unit)}"
        ),
        key="goal_pick",
    )
    new_target = middle.text_input("New target", key="goal_new_target")
    buttons = right.columns(2)
    if buttons[0].button("Change", key="goal_change", icon=":material/edit:"):
        try:
            changed = ui_goals.goal_store().update(picked, target=new_target, actor=user.name)
        except GoalError as error:
            st.error(f"Not changed: {error}", icon=":material/error:")
        except sa.exc.SQLAlchemyError as error:
            st.error(ui_goals.write_problem(error), icon=":material/error:")
        else:
            _changed(f"Goal {picked}: target now {fmt_value(changed.target, GOAL_KPIS[changed.kpi].unit)}.")
    if buttons[1].button("Remove", key="goal_remove", icon=":material/delete:"):
        try:
            ui_goals.goal_store().remove(picked, actor=user.name)
        except GoalError as error:
            st.error(f"Not removed: {error}", icon=":material/error:")
        except sa.exc.SQLAlchemyError as error:
            st.error(ui_goals.write_problem(error), icon=":material/error:")
        else:
            _changed(f"Removed goal {picked}.")

st.subheader("Import goals from a CSV")
st.caption(
    f"Columns: {', '.join(store_module.CSV_COLUMNS)} — kpi, period and target required; periods "
    "2026-12, 2026-Q4 or 2026; rates as 3% or 0.03; owner a user id or name; an empty slice column "
    f"means all. KPIs: {', '.join(GOAL_KPIS)}. A goal already set for the same KPI, period and slice "
    "gets the new target. Any bad row: nothing is imported."
)
st.download_button(
    "CSV template",
    data=store_module.template_csv(),
    file_name="goals-template.csv",
    mime="text/csv",
    icon=":material/download:",
    on_click="ignore",
    key="goals_template",
)
upload = st.file_uploader("Goals CSV", type=["csv"], key="goals_upload")
if upload is not None and st.button("Import", key="goals_import", icon=":material/upload:"):
    try:
        text = upload.getvalue().decode("utf-8-sig")
    except UnicodeDecodeError:
        st.error(f"{upload.name} is not UTF-8 text: save the CSV as UTF-8. Nothing imported.")
    else:
        try:
            outside = [
                g
                for g in store_module.parse_csv(text, upload.name, owners=owner_names or None)
                if not kg.visible(g, scope)
            ]
            if outside:
                raise GoalError(
                    f"{len(outside)} goal(s) outside your scope ({scope.describe()}); nothing imported"
                )
            added, changed_count = ui_goals.goal_store().import_csv(
                text, upload.name, actor=user.name, owners=owner_names or None
            )
        except GoalImportError as error:
            st.error(
                f"{len(error.problems)} problem(s) in {upload.name}; nothing imported:\n\n"
                + "\n".join(f"- `{p}`" for p in error.problems),
                icon=":material/error:",
            )
        except GoalError as error:
            st.error(str(error), icon=":material/error:")
        except sa.exc.SQLAlchemyError as error:
            st.error(ui_goals.write_problem(error), icon=":material/error:")
        else:
            _changed(f"Imported {upload.name}: {added} goal(s) added, {changed_count} changed.")
