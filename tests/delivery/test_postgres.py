"""Alerts on PostgreSQL: the CRM tables and the app tables (app_alert_rules, app_alert_events,
app_deliveries) in one scratch database, as on a company's server; run twice, one mail."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from crm_data.engines import make_engine
from delivery.alerts import AlertStore, app_alert_events, run
from delivery.channels import MailSettings, deliveries
from tests.conftest import scratch_postgres_database
from tests.delivery import fixtures
from tests.delivery.servers import smtp_server


@pytest.fixture
def pg_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("CRM_AUTH_DATABASE_URL", raising=False)
    with scratch_postgres_database("crm_alerts") as url:
        try:
            yield fixtures.write_url(url)
        finally:
            from delivery import channels

            name = sa.make_url(url).database or ""
            for key in [k for k in channels._engines if name in k]:
                channels._engines.pop(key).dispose()


def test_alerts_on_postgresql(pg_url: str) -> None:
    store = AlertStore(pg_url)
    churn = store.add("churn_rate", condition="above", threshold="3%", filters={"segments": ["Enterprise"]},
                      channels=["lead@example.com"])  # fmt: skip
    store.add("nps", condition="change_by", threshold=-10, channels=["cx@example.com"])
    engine = make_engine(pg_url, read_only=True)
    try:
        with smtp_server() as (port, received):
            mail = MailSettings(host="127.0.0.1", port=port, sender="crm@example.com", starttls=False)
            first = run(engine, store, fixtures.TODAY, mail=mail, wait=lambda s: None)
            second = run(engine, store, fixtures.TODAY, mail=mail, wait=lambda s: None)
    finally:
        engine.dispose()
    assert [(e.rule.rule_id, e.value) for e in first.fired] == [
        (churn.rule_id, 0.25),
        (churn.rule_id + 1, -10.0),
    ]
    assert second.fired == [] and second.deliveries == []
    assert sorted(m["To"] for m in received.messages) == ["cx@example.com", "lead@example.com"]
    assert deliveries(kind="alert", url=pg_url)["ok"].tolist() == [True, True]
    with store.engine.connect() as conn:  # the tables are in the CRM database itself
        assert sa.inspect(conn).has_table("app_alert_rules")
        periods = conn.execute(
            sa.select(app_alert_events.c.period).order_by(app_alert_events.c.period)
        ).scalars()
        assert list(periods) == [dt.date(2026, 11, 1), dt.date(2026, 11, 1)]
