"""Sign-in, roles and scopes in AppTest: the gate comes before any page content; a scoped
user sees the KPI layer's numbers for the scope, whatever the URL, the session state or
the filter bar say; a viewer cannot import nor read the audit log; sessions expire.

Accounts go to a per-test SQLite file (``CRM_AUTH_DATABASE_URL``), so the other UI tests
keep their anonymous dashboard on the shared demo database.
"""

from __future__ import annotations

import datetime as dt

import pytest
from streamlit.testing.v1 import AppTest

import kpis
from crm_data.accounts import MAX_FAILURES, AccountStore
from crm_data.quality import check_database
from kpis.filters import Scope, dimension_values
from tests.ui.test_dashboard import _expected, _metric
from ui import auth

PASSWORD = "a long enough password"


@pytest.fixture
def accounts(app_db: str, tmp_path, monkeypatch: pytest.MonkeyPatch, demo_engine):
    monkeypatch.setenv("CRM_AUTH_DATABASE_URL", f"sqlite:///{tmp_path / 'auth.sqlite'}")
    regions = dimension_values(demo_engine)["regions"]
    store = AccountStore.open(app_db)
    store.add("boss", role="admin", password=PASSWORD, actor="test")
    store.add("rm-a", role="viewer", scope={"regions": [regions[0]]}, password=PASSWORD, actor="test")
    store.add("rm-b", role="analyst", scope={"regions": [regions[1]]}, password=PASSWORD, actor="test")
    yield store, regions
    store.dispose()


def sign_in(at: AppTest, name: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="auth_name").input(name)
    at.text_input(key="auth_password").input(password)
    buttons = [b for b in at.button if b.label == "Sign in"]
    assert buttons, [b.label for b in at.button]
    return buttons[0].click().run()


def test_the_sign_in_form_comes_before_any_page_content(app, accounts) -> None:
    for script in ("dashboard.py", "pages/1_Sales_pipeline.py", "pages/8_Import.py", "pages/9_Audit_log.py"):
        at = app(script).run()
        assert not at.exception
        assert [t.value for t in at.title] == ["CRM Insights — sign in"], script
        assert not at.metric and not at.sidebar.get("page_link") and not at.get("file_uploader"), script
        assert not at.sidebar.multiselect, script


def test_wrong_passwords_then_the_lock_out(app, accounts) -> None:
    store, _regions = accounts
    at = app("dashboard.py").run()
    for _ in range(MAX_FAILURES - 1):
        sign_in(at, "rm-a", "not the password")
        assert "Wrong name or password." in [e.value for e in at.error]
    sign_in(at, "rm-a", "not the password")
    assert any("locked until" in e.value for e in at.error)
    sign_in(at, "rm-a")  # the right password, but locked
    assert any("locked until" in e.value for e in at.error) and not at.metric
    actions = list(store.audit_log(actions=["sign_in_failed", "sign_in_locked"])["action"])
    assert actions.count("sign_in_failed") == MAX_FAILURES and actions.count("sign_in_locked") == 1


def test_a_scoped_viewer_sees_the_kpi_layers_numbers_for_the_scope(
    app, accounts, demo_engine, default_filters
):
    _store, regions = accounts
    at = app("dashboard.py").run()
    sign_in(at, "rm-a")
    assert not at.exception
    assert at.title[0].value != "CRM Insights — sign in"
    scoped = default_filters.within(Scope(regions=(regions[0],)))
    churn = kpis.churn_rate(demo_engine, scoped, "month")
    assert _metric(at, "Churn rate") == _expected(churn, "churn_rate", scoped, "ratio")
    everyone = kpis.churn_rate(demo_engine, default_filters, "month")
    assert not churn.equals(everyone)
    # the filter bar offers the scope's region only
    assert at.sidebar.multiselect(key="region").options == [regions[0]]
    # the session state cannot widen it: another region in the filter's own copy selects nothing
    at.session_state["_flt_regions"] = [regions[1]]
    at.session_state["region"] = [regions[1]]
    at.run()
    assert _metric(at, "Churn rate") == _expected(churn, "churn_rate", scoped, "ratio")
    assert "What's in the database" not in [e.label for e in at.expander]  # whole-database counts


def test_a_url_for_another_region_is_ignored(app, accounts, demo_engine, default_filters) -> None:
    _store, regions = accounts
    at = app("dashboard.py", query_params={"region": [regions[1]]}).run()
    sign_in(at, "rm-a")
    notices = [w.value for w in at.sidebar.warning]
    assert any("Ignored unknown region" in n for n in notices), notices
    scoped = default_filters.within(Scope(regions=(regions[0],)))
    churn = kpis.churn_rate(demo_engine, scoped, "month")
    assert _metric(at, "Churn rate") == _expected(churn, "churn_rate", scoped, "ratio")


def test_a_viewer_cannot_import_nor_read_the_audit_log(app, accounts) -> None:
    at = app("dashboard.py").run()
    sign_in(at, "rm-a")
    labels = [link.proto.label for link in at.sidebar.get("page_link")]
    assert "Import" not in labels and "Audit log" not in labels
    for script in ("pages/8_Import.py", "pages/9_Audit_log.py"):
        at.switch_page(script).run()
        assert not at.exception
        assert any("needs the admin role" in e.value for e in at.error), script
        assert not at.get("file_uploader") and not at.dataframe and not at.get("download_button"), script


def test_record_level_drill_downs_need_the_analyst_role(app, accounts) -> None:
    at = app("dashboard.py").run()
    sign_in(at, "rm-a")
    at.switch_page("pages/4_Customer_feedback.py").run()  # the newest comments: record-level
    assert any("Record-level detail needs the analyst role" in i.value for i in at.info)
    assert not any("newest comments" in str(m.value) and "Download" in str(m.value) for m in at.markdown)
    viewer_tables = len(at.dataframe)
    at = app("dashboard.py").run()
    sign_in(at, "rm-b")  # an analyst
    at.switch_page("pages/4_Customer_feedback.py").run()
    assert not any("Record-level detail" in i.value for i in at.info)
    assert len(at.dataframe) == viewer_tables + 1
    at.switch_page("pages/7_Data_quality.py").run()  # the findings within the analyst's scope
    assert not at.exception and at.title[0].value == "Data quality"
    assert not any("Record-level detail" in i.value for i in at.info)


def test_an_admin_reads_the_audit_log(app, accounts) -> None:
    at = app("dashboard.py").run()
    sign_in(at, "rm-a", "wrong password")
    sign_in(at, "boss")
    at.switch_page("pages/9_Audit_log.py").run()
    assert not at.exception and at.title[0].value == "Audit log"
    log = at.dataframe[0].value
    assert {"Signed in", "Failed sign-in", "Account added"} <= set(log["what"])
    assert set(log[log["what"] == "Failed sign-in"]["target"]) == {"rm-a"}
    at.switch_page("pages/8_Import.py").run()
    assert not at.exception and at.title[0].value == "Import data"


def test_sessions_expire_and_sign_out_clears_the_session(app, accounts) -> None:
    store, _regions = accounts
    at = app("dashboard.py").run()
    sign_in(at, "boss")
    assert at.metric
    session = at.session_state[auth.SESSION_KEY]
    at.session_state[auth.SESSION_KEY] = {
        **session,
        "seen": session["seen"] - auth.IDLE_TIMEOUT - dt.timedelta(seconds=1),
    }
    at.run()
    assert at.title[0].value == "CRM Insights — sign in" and not at.metric
    assert any("without activity" in i.value for i in at.info)
    sign_in(at, "boss")
    next(button for button in at.sidebar.button if button.label == "Sign out").click().run()
    assert at.title[0].value == "CRM Insights — sign in"
    assert {"session_expired", "sign_out"} <= set(store.audit_log()["action"])


def test_anonymous_only_on_a_loopback_address(app, app_db, monkeypatch: pytest.MonkeyPatch) -> None:
    at = app("dashboard.py").run()
    assert at.metric  # no accounts, 127.0.0.1 (ui/streamlit_config.toml): anonymous, as before
    assert auth.loopback("127.0.0.1") and auth.loopback("::1") and auth.loopback("localhost")
    assert not auth.loopback("0.0.0.0") and not auth.loopback("") and not auth.loopback("192.168.1.5")
    monkeypatch.setattr(auth, "anonymous_allowed", lambda: False)
    at = app("dashboard.py").run()
    assert not at.metric and any("no sign-in is configured" in e.value for e in at.error)


def test_an_admin_import_is_audited_and_upload_names_are_not_paths(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import streamlit as st

    from crm_data import schema
    from tests.ui.test_import_page import HUBSPOT, PAGE, _count

    url = f"duckdb:///{tmp_path / 'imported.duckdb'}"
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    monkeypatch.setenv("CRM_AUTH_DATABASE_URL", f"sqlite:///{tmp_path / 'auth.sqlite'}")
    st.cache_data.clear()
    st.cache_resource.clear()
    store = AccountStore.open(url)
    store.add("boss", role="admin", password=PASSWORD, actor="test")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert [t.value for t in at.title] == ["CRM Insights — sign in"]
    sign_in(at, "boss")
    at.selectbox(key="import_mapping").set_value("hubspot").run()
    # hostile names: folders and dots in front of the export names the mapping recognises
    files = [(f"../../../tmp/{p.name}", p.read_bytes(), "text/csv") for p in sorted(HUBSPOT.iterdir())]
    at.file_uploader(key="import_files").set_value(files).run()
    assert not at.exception
    at.button(key="import_go").click().run()
    assert any("Imported in" in s.value for s in at.success)
    assert _count(url, schema.deals) == 6
    row = store.audit_log(actions=["import"]).iloc[0]
    details = json.loads(row["details"])
    assert row["actor"] == "boss"
    assert details["rows_changed"]["deals"] == 6 and details["ok"] is True
    assert (
        all("/" not in name for name in details["files"])
        and "hubspot-crm-exports-all-deals-2024-06-30.csv" in details["files"]
    )
    # the roll-up rebuild (admins, this page) is audited too
    at.run()
    at.button(key="rollups_rebuild").click().run()
    assert not at.exception and any("Rebuilt" in m.value for m in at.success)
    assert "rollups_rebuilt" in set(store.audit_log()["action"])
    store.dispose()
    st.cache_data.clear()
    st.cache_resource.clear()


def test_every_export_is_audited_with_who_what_and_the_filters(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from ui.filters import View
    from ui.report import PageReport

    monkeypatch.setenv("CRM_AUTH_DATABASE_URL", f"sqlite:///{tmp_path / 'auth.sqlite'}")
    monkeypatch.setenv("CRM_DATABASE_URL", f"duckdb:///{tmp_path / 'crm.duckdb'}")
    auth._store.clear()
    user = auth.User("rm-a", "viewer", Scope(regions=("EMEA",)), "password")
    view = View(filters=kpis.Filters("2024-01-01", "2024-02-01").within(user.scope), user=user)
    report = PageReport("Sales pipeline", view)
    build = report._audited(lambda: b"data", "win-rate.csv", "Win rate")
    assert build() == b"data"
    row = auth.store().audit_log(actions=["export"]).iloc[0]
    details = json.loads(row["details"])
    assert (row["actor"], row["target"]) == ("rm-a", "win-rate.csv")
    assert details["page"] == "Sales pipeline" and details["what"] == "Win rate"
    assert "within region EMEA" in details["filters"]
    assert not report.may_see_records()
    assert PageReport(
        "x", View(filters=view.filters, user=auth.User("a", "analyst", Scope(), "sso"))
    ).may_see_records()
    auth._store.clear()


def _quality_counts(at: AppTest) -> dict[str, int]:
    summary = at.dataframe[0].value
    return dict(zip(summary["check"], summary["records"], strict=True))


def test_a_scoped_user_sees_the_data_quality_findings_of_the_scope(app, accounts, demo_engine) -> None:
    """An EMEA analyst: EMEA's counts and records, not APAC's nor the whole database's; a
    viewer of another region: that region's counts, without the records."""
    store, regions = accounts
    assert {"EMEA", "APAC"} <= set(regions)
    store.add("emea", role="analyst", scope={"regions": ["EMEA"]}, password=PASSWORD, actor="test")
    store.add("apac", role="viewer", scope={"regions": ["APAC"]}, password=PASSWORD, actor="test")
    auth.forget_accounts()
    with demo_engine.connect() as conn:
        emea = check_database(conn, stale_days=90, scope=Scope(regions=("EMEA",)))
        apac = check_database(conn, stale_days=90, scope=Scope(regions=("APAC",)))
        whole = check_database(conn, stale_days=90)
    counts = {
        region: {f.title: f.count for f in r.findings} for region, r in [("EMEA", emea), ("APAC", apac)]
    }
    assert counts["EMEA"] != counts["APAC"]
    assert counts["EMEA"] != {f.title: f.count for f in whole.findings}

    at = app("pages/7_Data_quality.py").run()
    sign_in(at, "emea")
    assert not at.exception and at.title[0].value == "Data quality"
    assert not any("covers the whole database" in i.value for i in at.info)
    assert _quality_counts(at) == counts["EMEA"]
    assert any("tables without an account" in c.value for c in at.caption)
    listed = sorted((f for f in emea.problems if not f.records.empty), key=lambda f: -f.count)
    assert listed and [len(t.value) for t in at.dataframe[1:]] == [len(f.records) for f in listed]
    shown_accounts = {a for t in at.dataframe[1:] if "account_id" in t.value for a in t.value["account_id"]}
    with demo_engine.connect() as conn:
        region_of = dict(conn.exec_driver_sql("select account_id, region from accounts").fetchall())
    assert shown_accounts and {region_of.get(a) for a in shown_accounts} == {"EMEA"}

    at = app("pages/7_Data_quality.py").run()
    sign_in(at, "apac")  # a viewer: the counts, not the records
    assert not at.exception
    assert _quality_counts(at) == counts["APAC"]
    assert len(at.dataframe) == 1 and not at.get("download_button")
    assert any("Record-level detail needs the analyst role" in i.value for i in at.info)
