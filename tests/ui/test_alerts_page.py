"""The Alerts page in AppTest on the demo database: viewers read, analysts add a rule,
evaluate it and see it fire (delivered to a local webhook server); a scoped user sees only
the rules within their scope."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from crm_data.accounts import AccountStore
from delivery.alerts import AlertStore
from kpis.filters import dimension_values
from tests.delivery.servers import webhook_server
from tests.ui.test_auth import PASSWORD, sign_in

PAGE = "pages/11_Alerts.py"


@pytest.fixture
def people(app_db: str, tmp_path, monkeypatch: pytest.MonkeyPatch, demo_engine):
    monkeypatch.setenv("CRM_AUTH_DATABASE_URL", f"sqlite:///{tmp_path / 'auth.sqlite'}")
    monkeypatch.delenv("CRM_SMTP_HOST", raising=False)
    regions = dimension_values(demo_engine)["regions"]
    store = AccountStore.open(app_db)
    store.add("boss", role="admin", password=PASSWORD, actor="test")
    store.add("rm-a", role="viewer", scope={"regions": [regions[0]]}, password=PASSWORD, actor="test")
    store.add("rm-b", role="analyst", scope={"regions": [regions[1]]}, password=PASSWORD, actor="test")
    yield regions
    store.dispose()


def _open(app, name: str) -> AppTest:
    at = app("dashboard.py").run()
    sign_in(at, name)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def test_an_analyst_adds_a_rule_evaluates_it_and_sees_it_fire(app, app_db, people) -> None:
    at = _open(app, "rm-b")
    assert at.title[0].value == "Alerts"
    with webhook_server() as (base, hooks):
        at.selectbox(key="alert_kpi").set_value("active_customers")
        at.selectbox(key="alert_condition").set_value("above")
        at.text_input(key="alert_threshold").input("0")
        at.text_area(key="alert_channels").input(f"{base}/hook")
        at.button(key="FormSubmitter:alert_add-Add rule").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        rules = at.dataframe[0].value
        assert rules["rule"].tolist() == ["Active customers, month above 0"]
        at.button(key="alert_evaluate").click().run()
        assert not at.exception
        assert any(w.value.startswith("**Fired:** Active customers") for w in at.warning)
    assert len(hooks.bodies) == 1 and "Active customers" in hooks.bodies[0]["text"]
    assert any("1 alert(s)." in str(m.value) for m in at.markdown)
    rule = AlertStore(app_db).rules()[0]
    assert rule.created_by == "rm-b" and rule.scope == {"regions": [people[1]]}  # evaluated within it


def test_a_viewer_reads_and_a_scoped_user_sees_only_rules_within_the_scope(app, app_db, people) -> None:
    store = AlertStore(app_db)
    store.add("nps", condition="above", threshold=0, channels=["boss@example.com"], name="everything")
    from kpis.filters import Scope

    store.add("nps", condition="above", threshold=0, channels=["a@example.com"], name="region A",
              scope=Scope(regions=(people[0],)))  # fmt: skip
    at = _open(app, "rm-a")
    assert at.dataframe[0].value["name"].tolist() == ["region A"]
    assert not at.get("form") and not [b for b in at.button if b.label in ("Evaluate now", "Remove rule")]
    assert any("Analysts and admins add" in c.value for c in at.caption)
    at = _open(app, "boss")
    assert at.dataframe[0].value["name"].tolist() == ["everything", "region A"]
