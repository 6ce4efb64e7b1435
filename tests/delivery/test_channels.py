"""delivery.channels against real servers: aiosmtpd with STARTTLS (a self-signed certificate
made in the test), a plain http.server receiving webhooks, and the app_deliveries record."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import time_machine

from delivery.channels import (
    Attachment,
    DeliveryError,
    MailSettings,
    deliver,
    delivered,
    deliveries,
    post_webhook,
    send_mail,
    shown_recipient,
    undelivered,
)
from tests.delivery.servers import smtp_server, webhook_server
from tests.servers import free_port

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\nfake but binary\x00\x01\x02"


def test_mail_with_starttls_login_and_attachments(tmp_path: Path) -> None:
    with smtp_server(tmp_path, user="bot", password="s3cret") as (port, received):
        settings = MailSettings(
            host="localhost", port=port, sender="crm@example.com", user="bot", password="s3cret",
            cafile=str(tmp_path / "cert.pem"),
        )  # fmt: skip
        send_mail(
            settings,
            ["Lead@Example.com", "cfo@example.com"],
            "Churn rate above 3 %",
            "Churn rate, Enterprise, Nov 2026: 4.0 %",
            [
                Attachment("report.pdf", PDF, "application/pdf"),
                Attachment("data.csv", b"a,b\n1,2\n", "text/csv"),
            ],
            html="<p>Churn rate <b>4.0 %</b></p>",
        )
    assert received.tls == [True]
    assert received.envelopes == [("crm@example.com", ["Lead@Example.com", "cfo@example.com"])]
    message = received.messages[0]
    assert message["Subject"] == "Churn rate above 3 %"
    assert message["From"] == "crm@example.com"
    assert message.get_body(("plain",)).get_content().strip() == "Churn rate, Enterprise, Nov 2026: 4.0 %"
    assert "<b>4.0 %</b>" in message.get_body(("html",)).get_content()
    files = {(p.get_filename(), p.get_content_type()): p.get_content() for p in message.iter_attachments()}
    assert files == {("report.pdf", "application/pdf"): PDF, ("data.csv", "text/csv"): "a,b\n1,2\n"}


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # aiosmtpd: TLS is implicit here
def test_implicit_tls_on_port_465_style(tmp_path: Path) -> None:
    with smtp_server(tmp_path, user="bot", password="s3cret", implicit_tls=True) as (port, received):
        settings = MailSettings(
            host="localhost", port=port, sender="crm@example.com", user="bot", password="s3cret",
            cafile=str(tmp_path / "cert.pem"), implicit_tls=True,
        )  # fmt: skip
        send_mail(settings, ["a@example.com"], "over SMTPS", "t")
    assert [m["Subject"] for m in received.messages] == ["over SMTPS"]
    assert received.tls == [True]
    assert MailSettings.from_env(
        {"CRM_SMTP_HOST": "h", "CRM_SMTP_FROM": "x@y.z", "CRM_SMTP_PORT": "465"}
    ).implicit_tls


def test_starttls_refuses_an_untrusted_certificate(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as (port, received):
        settings = MailSettings(host="localhost", port=port, sender="crm@example.com")  # system CAs only
        with pytest.raises(
            DeliveryError, match=rf"localhost:{port}.*(CERTIFICATE_VERIFY_FAILED|certificate)"
        ):
            send_mail(settings, ["a@example.com"], "s", "t")
    assert received.messages == []


def test_starttls_refuses_a_server_without_it(tmp_path: Path) -> None:
    with smtp_server() as (port, received):
        settings = MailSettings(host="127.0.0.1", port=port, sender="crm@example.com")
        with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
            send_mail(settings, ["a@example.com"], "s", "t")
        plain = MailSettings(host="127.0.0.1", port=port, sender="crm@example.com", starttls=False)
        send_mail(plain, ["a@example.com"], "plain", "t")
    assert [m["Subject"] for m in received.messages] == ["plain"]
    assert received.tls == [False]


def test_wrong_password_and_unreachable_server_say_where() -> None:
    port = free_port()  # nothing listens
    settings = MailSettings(host="127.0.0.1", port=port, sender="crm@example.com", starttls=False, timeout=5)
    with pytest.raises(DeliveryError, match=rf"SMTP server 127\.0\.0\.1:{port}: ConnectionRefusedError"):
        send_mail(settings, ["a@example.com"], "s", "t")


def test_wrong_password(tmp_path: Path) -> None:
    with smtp_server(tmp_path, user="bot", password="right") as (port, received):
        settings = MailSettings(
            host="localhost", port=port, sender="crm@example.com", user="bot", password="wrong",
            cafile=str(tmp_path / "cert.pem"),
        )  # fmt: skip
        with pytest.raises(DeliveryError, match="refused the sign-in of bot: 535"):
            send_mail(settings, ["a@example.com"], "s", "t")
    assert received.messages == []


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ([], "at least one recipient"),
        (["not an address"], "not an e-mail address"),
        (["a@b.c, d@e.f"], "not an"),
    ],
)
def test_bad_recipients_are_refused_before_connecting(to: list[str], message: str) -> None:
    settings = MailSettings(host="127.0.0.1", port=free_port(), sender="crm@example.com")
    with pytest.raises(ValueError, match=message):
        send_mail(settings, to, "s", "t")


def test_settings_from_env() -> None:
    assert MailSettings.from_env({}) is None
    settings = MailSettings.from_env(
        {"CRM_SMTP_HOST": "smtp.example.com", "CRM_SMTP_USER": "bot@example.com", "CRM_SMTP_PASSWORD": "pw"}
    )
    assert settings == MailSettings(
        host="smtp.example.com", sender="bot@example.com", port=587, user="bot@example.com", password="pw"
    )
    assert "pw" not in repr(settings)
    off = MailSettings.from_env(
        {"CRM_SMTP_HOST": "h", "CRM_SMTP_PORT": "25", "CRM_SMTP_FROM": "x@y.z", "CRM_SMTP_STARTTLS": "off"}
    )
    assert (off.port, off.starttls, off.user, off.sender) == (25, False, None, "x@y.z")
    with pytest.raises(ValueError, match="CRM_SMTP_PORT must be a port number, not 'smtp'"):
        MailSettings.from_env({"CRM_SMTP_HOST": "h", "CRM_SMTP_FROM": "x@y.z", "CRM_SMTP_PORT": "smtp"})
    with pytest.raises(ValueError, match="CRM_SMTP_STARTTLS must be on or off, not 'maybe'"):
        MailSettings.from_env({"CRM_SMTP_HOST": "h", "CRM_SMTP_FROM": "x@y.z", "CRM_SMTP_STARTTLS": "maybe"})
    with pytest.raises(ValueError, match="CRM_SMTP_FROM is not set"):
        MailSettings.from_env({"CRM_SMTP_HOST": "h", "CRM_SMTP_USER": "bot"})


def test_webhook_posts_json_and_fails_on_an_error_answer() -> None:
    with webhook_server() as (base, hooks):
        post_webhook(f"{base}/services/T1/B2", {"text": "Churn rate above 3 %"})
        hooks.statuses.append(403)
        with pytest.raises(DeliveryError, match=r"webhook 127\.0\.0\.1 answered 403: invalid_token"):
            post_webhook(f"{base}/services/T1/B2", {"text": "again"})
    assert hooks.bodies == [{"text": "Churn rate above 3 %"}]
    assert hooks.paths == ["/services/T1/B2"]
    with pytest.raises(DeliveryError, match=r"webhook 127\.0\.0\.1: ConnectError"):
        post_webhook(f"http://127.0.0.1:{free_port()}/x", {"text": "nobody"}, timeout=5)
    with pytest.raises(ValueError, match="http:// or https:// URL"):
        post_webhook("ftp://example.com/x", {})


def _url(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'crm.duckdb'}"


def test_deliver_retries_with_backoff_and_records_each_attempt(tmp_path: Path) -> None:
    url = _url(tmp_path)
    waits: list[float] = []
    with smtp_server() as (port, received):
        settings = MailSettings(host="127.0.0.1", port=port, sender="crm@example.com", starttls=False)
        received.fail_next = 2  # 451 twice, then accepted
        with time_machine.travel(dt.datetime(2026, 12, 1, 7, 0, tzinfo=dt.UTC), tick=False):
            ok = deliver(
                "alert", "alert 1 2026-11-01", "a@example.com",
                lambda: send_mail(settings, ["a@example.com"], "s", "t"), wait=waits.append, url=url,
            )  # fmt: skip
    assert ok
    assert waits == [2.0, 4.0]
    assert len(received.messages) == 1
    history = deliveries(url=url).sort_values("attempt")
    assert history["attempt"].tolist() == [1, 2, 3]
    assert history["ok"].tolist() == [False, False, True]
    assert history["error"].iloc[0].endswith("451 4.3.0 try again later")
    assert history["error"].iloc[2] == ""
    assert set(history["attempted_at"]) == {dt.datetime(2026, 12, 1, 7, 0)}
    assert (history["kind"] == "alert").all() and (history["target"] == "alert 1 2026-11-01").all()
    assert delivered("alert", "alert 1 2026-11-01", "a@example.com", url=url)
    assert undelivered("alert", url=url) == []


def test_a_delivery_that_fails_stays_recorded_until_it_succeeds(tmp_path: Path) -> None:
    url = _url(tmp_path)
    waits: list[float] = []
    dead = f"http://127.0.0.1:{free_port()}/hook"

    def send() -> None:
        post_webhook(dead, {"text": "x"}, timeout=5)

    assert not deliver(
        "report", "report 7 2026-12-01T08:00", dead, send, attempts=2, wait=waits.append, url=url
    )
    assert waits == [2.0]  # no wait after the last attempt
    assert not delivered("report", "report 7 2026-12-01T08:00", dead, url=url)
    assert undelivered("report", url=url) == [("report 7 2026-12-01T08:00", dead)]
    assert undelivered("alert", url=url) == []
    history = deliveries(url=url)
    assert history["ok"].tolist() == [False, False]
    assert history["error"].str.contains("ConnectError").all()
    # the next run sends it again, and then it is no longer owed
    with webhook_server() as (base, hooks):
        assert deliver(
            "report", "report 7 2026-12-01T08:00", dead, lambda: post_webhook(base, {"text": "x"}), url=url
        )
    assert hooks.bodies == [{"text": "x"}]
    assert undelivered("report", url=url) == []


def test_deliver_refuses_an_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown delivery kind 'sms'"):
        deliver("sms", "t", "r", lambda: None, url=_url(tmp_path))


def test_webhook_urls_are_shown_without_their_secret_path() -> None:
    assert (
        shown_recipient("https://hooks.slack.com/services/T000/B000/abcdWXYZ")
        == "https://hooks.slack.com/…WXYZ"
    )
    assert shown_recipient("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/…hook"
    assert shown_recipient("lead@example.com") == "lead@example.com"


def test_tables_of_a_module_imported_later_are_created_on_the_next_call(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from delivery import channels

    url = _url(tmp_path)
    engine = channels.app_engine(url)
    late = sa.Table("app_late_module", channels.metadata, sa.Column("x", sa.Integer, primary_key=True))
    try:
        assert channels.app_engine(url) is engine
        with engine.connect() as conn:
            assert sa.inspect(conn).has_table("app_late_module")
    finally:
        channels.metadata.remove(late)
