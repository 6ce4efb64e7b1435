"""Alert rules on the hand-written CRM of tests/delivery/fixtures.py (expected numbers worked
out there), delivered to a real SMTP server (aiosmtpd) and a local webhook server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import time_machine

from crm_data.engines import make_engine
from delivery.alerts import (
    AlertError,
    AlertStore,
    evaluate,
    last_complete_period,
    parse_threshold,
    run,
)
from delivery.channels import MailSettings, deliveries
from forecasting.revenue import revenue_forecast
from kpis import Filters
from tests.delivery import fixtures
from tests.delivery.servers import smtp_server, webhook_server

TODAY = fixtures.TODAY  # Sunday 6 Dec 2026
NOW = dt.datetime(2026, 12, 6, 7, 0, tzinfo=dt.UTC)


@pytest.fixture
def crm(tmp_path: Path):
    url = fixtures.write(tmp_path / "crm.duckdb")
    engine = make_engine(url, read_only=True)
    yield url, engine, AlertStore(url)
    engine.dispose()


def _plain(port: int) -> MailSettings:
    return MailSettings(host="127.0.0.1", port=port, sender="crm@example.com", starttls=False)


def test_last_complete_period() -> None:
    assert last_complete_period(TODAY, "month") == (dt.date(2026, 11, 1), dt.date(2026, 12, 1))
    assert last_complete_period(TODAY, "quarter") == (dt.date(2026, 7, 1), dt.date(2026, 10, 1))
    assert last_complete_period(TODAY, "year") == (dt.date(2025, 1, 1), dt.date(2026, 1, 1))
    assert last_complete_period(TODAY, "week") == (dt.date(2026, 11, 23), dt.date(2026, 11, 30))
    # on the 1st the month just ended is complete; data runs up to the start of today
    assert last_complete_period(dt.date(2026, 12, 1), "month") == (dt.date(2026, 11, 1), dt.date(2026, 12, 1))
    assert last_complete_period(dt.date(2026, 1, 1), "quarter") == (dt.date(2025, 10, 1), dt.date(2026, 1, 1))


def test_churn_above_a_threshold_in_a_segment(crm) -> None:
    _url, engine, store = crm
    rule = store.add("churn_rate", condition="above", threshold="3%", filters={"segments": ["Enterprise"]},
                     channels=["lead@example.com"])  # fmt: skip
    assert rule.threshold == 0.03
    result = evaluate(engine, rule, TODAY)
    assert (result.fired, result.period, result.value) == (True, dt.date(2026, 11, 1), 0.25)  # 1 ÷ 4
    assert result.message == "Churn rate (segments Enterprise), Nov 2026: 25.0 % is above 3.0 %"
    smb = store.add("churn_rate", condition="above", threshold=0.03, filters={"segments": ["SMB"]},
                    channels=["lead@example.com"])  # fmt: skip
    assert (evaluate(engine, smb, TODAY).fired, evaluate(engine, smb, TODAY).value) == (False, 0.0)
    high = store.add("churn_rate", condition="above", threshold="30%", filters={"segments": ["Enterprise"]},
                     channels=["lead@example.com"])  # fmt: skip
    assert not evaluate(engine, high, TODAY).fired


def test_the_running_period_never_fires(crm) -> None:
    _url, engine, store = crm
    # Q4 2026 is running (2 of 4 Enterprise customers gone by 3 Dec); Q3 is the last complete: 0 %
    rule = store.add("churn_rate", condition="above", threshold="3%", grain="quarter",
                     filters={"segments": ["Enterprise"]}, channels=["lead@example.com"])  # fmt: skip
    result = evaluate(engine, rule, TODAY)
    assert (result.fired, result.period, result.value) == (False, dt.date(2026, 7, 1), 0.0)
    # December's five detractors are in the running month: November is judged, at −10
    nps_rule = store.add("nps", condition="below", threshold=-50, channels=["lead@example.com"])
    assert (evaluate(engine, nps_rule, TODAY).fired, evaluate(engine, nps_rule, TODAY).value) == (
        False,
        -10.0,
    )


def test_nps_falls_by_ten_points(crm) -> None:
    _url, engine, store = crm
    rule = store.add("nps", condition="change_by", threshold=-10, channels=["cx@example.com"])
    result = evaluate(engine, rule, TODAY)
    assert result.fired and result.value == -10.0
    assert result.details["previous"] == 40.0 and result.details["change"] == -50.0
    assert result.message == "Net Promoter Score, Nov 2026: -10.0, fell by 50.0 points from +40.0 in Oct 2026"
    deeper = store.add("nps", condition="change_by", threshold=-60, channels=["cx@example.com"])
    assert not evaluate(engine, deeper, TODAY).fired
    rise = store.add("nps", condition="change_by", threshold=10, channels=["cx@example.com"])
    assert not evaluate(engine, rise, TODAY).fired


@pytest.mark.slow
def test_revenue_outside_the_forecast_interval(crm) -> None:
    _url, engine, store = crm
    rule = store.add("revenue", condition="outside_forecast", filters={"segments": ["Enterprise"]},
                     channels=["cfo@example.com"])  # fmt: skip
    assert rule.threshold == 95
    result = evaluate(engine, rule, TODAY)
    # the same forecast, made as of 1 Nov from the months before it
    expected = revenue_forecast(engine, Filters("2026-10-01", "2026-11-01", segments=["Enterprise"]),
                                horizon=1, today=dt.date(2026, 11, 1), full_history=True).forecast.iloc[0]  # fmt: skip
    assert result.details["low"] == pytest.approx(expected["lo95"])
    assert result.details["high"] == pytest.approx(expected["hi95"])
    assert expected["hi95"] < fixtures.ENTERPRISE_NOVEMBER  # the pattern stays near 1000
    assert result.fired and result.value == fixtures.ENTERPRISE_NOVEMBER
    assert "is above the forecast's 95 % interval" in result.message
    smb = store.add("revenue", condition="outside_forecast", threshold="95", filters={"segments": ["SMB"]},
                    channels=["cfo@example.com"])  # fmt: skip
    normal = evaluate(engine, smb, TODAY)
    assert not normal.fired and normal.details["low"] <= normal.value <= normal.details["high"]


def test_complaint_spike_on_a_product(crm) -> None:
    _url, engine, store = crm
    rule = store.add(
        "complaint_spikes", condition="complaint_spike", grain="week", channels=["ops@example.com"]
    )
    result = evaluate(engine, rule, TODAY)
    assert result.fired and result.period == dt.date(2026, 11, 23)
    assert [p["product_id"] for p in result.details["products"]] == ["P1"]
    assert result.details["products"][0]["observed"] == 4
    assert result.details["products"][0]["p_value"] == pytest.approx(0.0017516, abs=1e-6)
    assert "Core: 4 tickets (12-week mean 0.0)" in result.message
    addon = store.add("complaint_spikes", condition="complaint_spike", grain="week",
                      filters={"products": ["P2"]}, channels=["ops@example.com"])  # fmt: skip
    assert not evaluate(engine, addon, TODAY).fired  # P(X ≥ 3 | 1) = 0.080; its running week is ignored


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(kpi="nope", condition="above", threshold=1), "unknown KPI 'nope'"),
        (dict(kpi="churn_rate", condition="above", threshold="3"), "write 3% or 0.03"),
        (dict(kpi="nps", condition="above", threshold="3%"), "not a rate"),
        (dict(kpi="churn_rate", condition="above"), "needs a threshold"),
        (dict(kpi="churn_rate", condition="sideways", threshold=1), "unknown condition"),
        (dict(kpi="funnel", condition="above", threshold=0.1), "no single value per period"),
        (dict(kpi="nps", condition="outside_forecast"), "revenue forecast"),
        (dict(kpi="revenue", condition="complaint_spike", grain="week"), "complaint_spikes per week"),
        (dict(kpi="nps", condition="above", threshold=1, channels=[]), "at least one channel"),
        (dict(kpi="nps", condition="above", threshold=1, channels=["nobody"]), "e-mail address or an http"),
        (
            dict(kpi="nps", condition="above", threshold=1, filters={"colour": ["red"]}),
            "unknown filter 'colour'",
        ),
        (dict(kpi="nps", condition="change_by", threshold=0), "other than 0"),
        (dict(kpi="nps", condition="above", threshold=1, name="a\nBcc: x@evil.test"), "one line of text"),
    ],
)
def test_bad_rules_are_refused_and_nothing_is_stored(crm, kwargs: dict, message: str) -> None:
    _url, _engine, store = crm
    kwargs.setdefault("channels", ["a@example.com"])
    kpi = kwargs.pop("kpi")
    with pytest.raises(AlertError, match=message):
        store.add(kpi, **kwargs)
    assert store.rules() == []


def test_parse_threshold() -> None:
    assert parse_threshold("3 %", "churn_rate", "above") == pytest.approx(0.03)
    assert parse_threshold("−10", "nps", "change_by") == -10.0
    assert parse_threshold("-2%", "win_rate", "change_by") == pytest.approx(-0.02)
    assert parse_threshold("1,500", "revenue", "above") == 1500.0
    assert parse_threshold(None, "revenue", "outside_forecast") == 95.0
    assert parse_threshold(None, "complaint_spikes", "complaint_spike") is None


def test_run_fires_once_per_rule_and_period_and_delivers_by_mail_and_webhook(crm) -> None:
    _url, engine, store = crm
    with smtp_server() as (port, received), webhook_server() as (base, hooks):
        churn = store.add("churn_rate", condition="above", threshold="3%", filters={"segments": ["Enterprise"]},
                          channels=["lead@example.com", f"{base}/slack"], name="Enterprise churn")  # fmt: skip
        store.add("nps", condition="change_by", threshold=-60, channels=["cx@example.com"])  # does not fire
        with time_machine.travel(NOW, tick=False):
            first = run(engine, store, TODAY, mail=_plain(port), wait=lambda s: None)
            second = run(engine, store, TODAY, mail=_plain(port), wait=lambda s: None)
    assert [(e.rule.rule_id, e.period) for e in first.fired] == [(churn.rule_id, dt.date(2026, 11, 1))]
    assert sorted(first.deliveries) == sorted(
        [(churn.rule_id, dt.date(2026, 11, 1), "lead@example.com", True),
         (churn.rule_id, dt.date(2026, 11, 1), f"{base}/slack", True)]
    )  # fmt: skip
    assert (second.fired, second.deliveries, len(second.evaluations)) == ([], [], 2)
    assert len(received.messages) == 1  # run twice: one mail
    mail = received.messages[0]
    assert mail["Subject"] == "[CRM Insights] Enterprise churn"
    assert "Churn rate (segments Enterprise), Nov 2026: 25.0 % is above 3.0 %" in mail.get_content()
    assert hooks.bodies == [
        {"text": "*Enterprise churn*\nChurn rate (segments Enterprise), Nov 2026: 25.0 % is above 3.0 %"}
    ]
    events = store.events()
    assert events[["rule_id", "period", "value"]].values.tolist() == [
        [churn.rule_id, dt.date(2026, 11, 1), 0.25]
    ]
    assert events["fired_at"].tolist() == [pd.Timestamp(2026, 12, 6, 7, 0)]
    # a month later the next period is judged: December, 1 of 3 Enterprise customers gone
    with smtp_server() as (port, received), time_machine.travel(NOW, tick=False):
        store.remove(store.rules()[1].rule_id)
        store.get(churn.rule_id)
        later = run(
            engine,
            store,
            dt.date(2027, 1, 5),
            mail=_plain(port),
            wait=lambda s: None,
            rule_ids=[churn.rule_id],
        )
    assert [(e.period, round(e.value, 4)) for e in later.fired] == [(dt.date(2026, 12, 1), round(1 / 3, 4))]


def test_a_failed_delivery_is_retried_by_the_next_run_and_only_it(crm) -> None:
    url, engine, store = crm
    waits: list[float] = []
    with smtp_server() as (port, received), webhook_server() as (base, hooks):
        rule = store.add(
            "nps", condition="change_by", threshold=-10, channels=["cx@example.com", f"{base}/hook"]
        )
        received.fail_next = 3  # every attempt of the first run is refused (451)
        first = run(engine, store, TODAY, mail=_plain(port), wait=waits.append)
        assert [(r, ok) for (_, _, r, ok) in first.deliveries] == [
            ("cx@example.com", False),
            (f"{base}/hook", True),
        ]
        assert waits == [2.0, 4.0]
        assert received.messages == [] and len(hooks.bodies) == 1
        history = deliveries(kind="alert", url=url)
        failed = history[history["recipient"] == "cx@example.com"]
        assert failed["ok"].tolist() == [False, False, False] and failed["error"].str.contains("451").all()
        second = run(engine, store, TODAY, mail=_plain(port), wait=waits.append)
        assert second.fired == []  # the event is not repeated ...
        assert [(r, ok) for (_, _, r, ok) in second.deliveries] == [
            ("cx@example.com", True)
        ]  # ... its mail is sent
        assert len(received.messages) == 1 and len(hooks.bodies) == 1  # the webhook is not sent again
        third = run(engine, store, TODAY, mail=_plain(port), wait=waits.append)
        assert third.deliveries == [] and len(received.messages) == 1
    assert rule.rule_id == 1


def test_mail_without_smtp_settings_is_recorded_as_failed_and_kept(crm, monkeypatch) -> None:
    url, engine, store = crm
    monkeypatch.delenv("CRM_SMTP_HOST", raising=False)
    store.add("nps", condition="change_by", threshold=-10, channels=["cx@example.com"])
    report = run(engine, store, TODAY, wait=lambda s: None)
    assert [ok for *_, ok in report.deliveries] == [False]
    assert deliveries(kind="alert", url=url)["error"].tolist() == [
        "e-mail is not set up: set CRM_SMTP_HOST and CRM_SMTP_FROM"
    ]
    assert len(store.pending()) == 1


def test_a_rule_sees_no_more_than_its_author(crm) -> None:
    from kpis.filters import EVERYTHING, Scope

    _url, engine, store = crm
    smb_only = Scope(segments=("SMB",))
    rule = store.add("churn_rate", condition="above", threshold="3%", filters={"segments": ["Enterprise"]},
                     channels=["a@example.com"], scope=smb_only)  # fmt: skip
    assert store.get(rule.rule_id).scope == {"segments": ["SMB"]}
    result = evaluate(engine, rule, TODAY)  # Enterprise ∩ scope SMB: no customers, no value
    assert not result.fired and result.value is None
    assert rule.visible_to(EVERYTHING) and rule.visible_to(Scope(segments=("SMB", "Enterprise")))
    assert not rule.visible_to(Scope(segments=("Enterprise",))) and not rule.visible_to(
        Scope(regions=("EU",))
    )
    everyone = store.add("nps", condition="above", threshold=0, channels=["a@example.com"])
    assert everyone.visible_to(EVERYTHING) and not everyone.visible_to(smb_only)


def test_one_run_at_a_time_and_a_crashed_runs_lock_is_taken_over(crm) -> None:
    import sqlalchemy as sa

    from delivery.alerts import RunInProgress, app_alert_lock

    _url, engine, store = crm
    store.add("nps", condition="change_by", threshold=-10, channels=["cx@example.com"])
    with store.engine.begin() as conn:  # another run, started 10 minutes ago
        conn.execute(
            app_alert_lock.insert().values(
                name="run", holder="other-host:42", since=NOW.replace(tzinfo=None) - dt.timedelta(minutes=10)
            )
        )
    with (
        time_machine.travel(NOW, tick=False),
        pytest.raises(
            RunInProgress,
            match=r"another alerts run \(other-host:42\) has been running since 2026-12-06 06:50 UTC",
        ),
    ):
        run(engine, store, TODAY, wait=lambda s: None)
    assert store.events().empty
    # 31 minutes after it started it is taken to have crashed: this run goes ahead
    with smtp_server() as (port, received), time_machine.travel(NOW + dt.timedelta(minutes=21), tick=False):
        report = run(engine, store, TODAY, mail=_plain(port), wait=lambda s: None)
    assert len(report.fired) == 1 and len(received.messages) == 1
    with store.engine.connect() as conn:  # and it let go of the lock
        assert conn.execute(sa.select(sa.func.count()).select_from(app_alert_lock)).scalar_one() == 0


def test_a_new_rule_never_inherits_a_removed_ones_alerts(crm) -> None:
    _url, engine, store = crm
    with smtp_server() as (port, received):
        old = store.add("nps", condition="change_by", threshold=-10, channels=["cx@example.com"])
        run(engine, store, TODAY, mail=_plain(port), wait=lambda s: None)
        store.remove(old.rule_id)  # the newest rule: SQLite would hand its id out again
        new = store.add("nps", condition="change_by", threshold=-10, channels=["cx@example.com"])
        report = run(engine, store, TODAY, mail=_plain(port), wait=lambda s: None)
    assert new.rule_id == old.rule_id + 1
    assert [e.rule.rule_id for e in report.fired] == [new.rule_id]
    assert len(received.messages) == 2
