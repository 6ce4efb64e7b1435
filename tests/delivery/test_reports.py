"""delivery.reports: scheduled reports rendered headless per recipient and mailed to a real
SMTP server (aiosmtpd) as PDF / XLSX / PPTX; due times under frozen time (time-machine).

The CRM is the hand-written fixture of tests/kpis/fixtures.py. Win rate by close date,
Jan–Apr 2024 (tests/kpis/test_sales.py): Jan D7 won; Feb D1, D3, D4 won, D6 lost; Mar D2
lost -> [1/1, 3/4, 0/1, none] = [100 %, 75 %, 0 %, –]. A recipient scoped to region NA
sees the deals of A3 and A4 only (Austin, Boston): D3 won 11 Feb, D5 open -> Feb 1/1 =
100 %, no closed deal in Jan, Mar or Apr.
"""

from __future__ import annotations

import datetime as dt
import io
import subprocess
from pathlib import Path

import openpyxl
import pytest
import time_machine
from pptx import Presentation

from charts import export
from crm_data import schema
from crm_data.accounts import AccountStore
from crm_data.engines import make_engine
from delivery import channels, render, reports
from delivery.reports import ReportError
from tests.delivery.servers import smtp_server
from tests.kpis import fixtures

UTC = dt.UTC
FILTERS = "from=2024-01-01&to=2024-04-30"
MONDAY_0800 = dt.datetime(2024, 5, 6, 8, 0, tzinfo=UTC)  # a Monday
WIN_RATE_SHEET = "Win rate per month"
NO_WAIT = lambda seconds: None  # noqa: E731 - retries without sleeping


@pytest.fixture
def crm_url(tmp_path: Path) -> str:
    """The fixture CRM in a DuckDB file, accounts beside it: all@ sees everything, na@ region NA."""
    url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    engine = make_engine(url)
    schema.create_schema(engine)
    fixtures.load(engine)
    engine.dispose()
    store = AccountStore.open(url)
    store.add("all@example.com", role="viewer", sso=True, actor="test")
    store.add("na@example.com", role="viewer", scope={"regions": ["NA"]}, sso=True, actor="test")
    store.add("alice", role="viewer", scope={"regions": ["EU"]}, password="a long password 123", actor="test")
    store.dispose()
    return url


def _settings(port: int) -> channels.MailSettings:
    return channels.MailSettings(host="127.0.0.1", port=port, sender="crm@example.com", starttls=False)


def _attachments(message) -> dict[str, tuple[str, bytes]]:
    return {p.get_filename(): (p.get_content_type(), p.get_content()) for p in message.iter_attachments()}


def _pdf_text(content: bytes, tmp_path: Path) -> str:
    path = tmp_path / "attachment.pdf"
    path.write_bytes(content)
    out = subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True).stdout
    return " ".join(out.split())


def _win_rates(xlsx: bytes) -> dict[str, float | None]:
    """Month -> win rate from the workbook's win-rate sheet."""
    book = openpyxl.load_workbook(io.BytesIO(xlsx))
    (name,) = [n for n in book.sheetnames if n.startswith(WIN_RATE_SHEET)]
    rows = list(book[name].iter_rows(values_only=True))
    header = list(rows[0])
    period, rate = header.index("period"), header.index("win_rate")
    return {f"{row[period]:%Y-%m}": row[rate] for row in rows[1:]}


# --- schedules -----------------------------------------------------------------------------


def test_due_times_follow_the_cron_schedule():
    since = dt.datetime(2024, 4, 1, tzinfo=UTC)
    weekly = "0 8 * * 1"  # Mondays 08:00
    # Monday 6 May 07:59: the latest Monday 08:00 is 29 April; at 08:00 it is 6 May
    assert reports.latest_due(weekly, "UTC", since, MONDAY_0800 - dt.timedelta(minutes=1)) == dt.datetime(
        2024, 4, 29, 8, 0, tzinfo=UTC
    )
    assert reports.latest_due(weekly, "UTC", since, MONDAY_0800) == MONDAY_0800
    # nothing scheduled between creation and now
    assert (
        reports.latest_due(
            weekly, "UTC", MONDAY_0800 + dt.timedelta(hours=1), MONDAY_0800 + dt.timedelta(days=2)
        )
        is None
    )
    # every minute: the current minute
    assert (
        reports.latest_due("* * * * *", "UTC", since, MONDAY_0800 + dt.timedelta(seconds=59)) == MONDAY_0800
    )
    # 08:00 in Berlin is 06:00 UTC in summer (CEST), 07:00 in winter
    assert reports.latest_due("0 8 * * *", "Europe/Berlin", since, MONDAY_0800) == dt.datetime(
        2024, 5, 6, 6, 0, tzinfo=UTC
    )
    assert reports.next_run(
        "0 8 * * *", "Europe/Berlin", dt.datetime(2024, 12, 2, 12, tzinfo=UTC)
    ) == dt.datetime(2024, 12, 3, 7, 0, tzinfo=UTC)
    # a yearly schedule found far back
    assert reports.latest_due(
        "0 6 1 1 *", "UTC", dt.datetime(2020, 1, 1, tzinfo=UTC), MONDAY_0800
    ) == dt.datetime(2024, 1, 1, 6, 0, tzinfo=UTC)
    assert reports.next_run(weekly, "UTC", MONDAY_0800) == MONDAY_0800 + dt.timedelta(days=7)


@pytest.mark.parametrize(
    ("cron", "names"),
    [("1", "mon"), ("0", "sun"), ("7", "sun"), ("1-5", "mon,tue,wed,thu,fri"), ("5-7", "sun,fri,sat"),
     ("1/2", "sun,mon,wed,fri"), ("sat,sun", "sun,sat"), ("*", "*")],
)  # fmt: skip
def test_cron_weekdays_count_from_sunday_not_from_apschedulers_monday(cron, names):
    # APScheduler 3 reads a bare 1 as Tuesday (Monday is 0 there); cron's 1 is Monday
    assert reports.cron_weekdays(cron) == names


def test_schedules_in_words_and_bad_ones_refused():
    assert reports.describe_schedule("0 8 * * 1") == "every Monday at 08:00 UTC"
    assert reports.describe_schedule("30 7 * * *", "Europe/Berlin") == "every day at 07:30 Europe/Berlin"
    assert reports.describe_schedule("0 9 1 * *") == "on day 1 of every month at 09:00 UTC"
    assert reports.describe_schedule("0 8 * * 1-5") == "every weekday (Monday to Friday) at 08:00 UTC"
    assert reports.describe_schedule("*/15 8-18 * * 1-5") == "cron '*/15 8-18 * * 1-5' (UTC)"
    with pytest.raises(ReportError, match="has 4 fields; cron needs 5"):
        reports.cron_trigger("0 8 * *")
    with pytest.raises(ReportError, match="not valid cron"):
        reports.cron_trigger("0 25 * * *")
    with pytest.raises(ReportError, match="unknown time zone 'Mars/Olympus'"):
        reports.cron_trigger("0 8 * * *", "Mars/Olympus")


def test_a_report_is_checked_before_it_is_saved(crm_url):
    def add(**changes):
        args = {
            "name": "Weekly", "pages": ["Sales pipeline"], "query": FILTERS, "fmt": "pdf",
            "recipients": ["all@example.com"], "schedule": "0 8 * * 1",
        } | changes  # fmt: skip
        return reports.add_report(**args, actor="test", url=crm_url)

    with pytest.raises(ReportError, match="no report page 'Sales'"):
        add(pages=["Sales"])
    with pytest.raises(ReportError, match="unknown filter 'segments'"):
        add(query="segments=SMB")
    with pytest.raises(
        ReportError, match=r"from=2024-31-01'? is not a date|filter from='2024-31-01' is not a date"
    ):
        add(query="from=2024-31-01")
    with pytest.raises(ReportError, match="unknown format 'docx'"):
        add(fmt="docx")
    with pytest.raises(ReportError, match="is no account: reports go to accounts only"):
        add(recipients=["stranger@example.com"])
    with pytest.raises(ReportError, match="alice=ADDRESS"):
        add(recipients=["alice"])
    with pytest.raises(ReportError, match="cron needs 5"):
        add(schedule="daily")
    with pytest.raises(ReportError, match=r"all@example\.com named twice as a recipient"):
        add(recipients=["all@example.com", "alice=ALL@example.com"])
    assert reports.reports(crm_url) == []  # nothing half-saved
    report = add(
        pages=["sales-pipeline", "pages/1_Sales_pipeline.py", "overview"],
        recipients=["alice=Alice@Example.com"],
    )
    assert report.pages == ("pages/1_Sales_pipeline.py", "dashboard.py")
    assert report.recipients == ("alice=Alice@Example.com",)
    with pytest.raises(ReportError, match="exists already"):
        add()
    assert "Sales pipeline" in reports.report_pages() and "Overview" in reports.report_pages()


# --- sending -------------------------------------------------------------------------------


def test_run_due_sends_a_pdf_once_per_scheduled_time(crm_url, tmp_path):
    if not export.chromium_available():
        pytest.skip(export.MISSING_CHROMIUM_HELP)
    with time_machine.travel(dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC), tick=True):
        reports.add_report(
            "Pipeline weekly", ["Sales pipeline"], FILTERS, "pdf", ["all@example.com"], "0 8 * * 1",
            actor="test", url=crm_url,
        )  # fmt: skip
    with smtp_server() as (port, received):
        send = reports.mail_sender(_settings(port))
        with time_machine.travel(MONDAY_0800 - dt.timedelta(minutes=5), tick=True):
            assert reports.run_due(url=crm_url, send=send) == []  # not due yet (created after 29 Apr 08:00)
        with time_machine.travel(MONDAY_0800 + dt.timedelta(seconds=20), tick=True):
            (result,) = reports.run_due(url=crm_url, send=send)
            assert result.outcomes == {"all@example.com": "sent"}
            assert reports.run_due(url=crm_url, send=send) == []  # run twice: sent once
        with time_machine.travel(MONDAY_0800 + dt.timedelta(hours=3), tick=True):
            assert reports.run_due(url=crm_url, send=send) == []
    assert len(received.messages) == 1
    message = received.messages[0]
    assert received.envelopes[0][1] == ["all@example.com"]
    assert message["Subject"] == "Pipeline weekly — 06 May 2024"
    body = message.get_body(("plain",)).get_content()
    assert "every Monday at 08:00 UTC" in body and "Next report: Mon 13 May 2024 08:00 UTC" in body
    ((name, (mime, content)),) = _attachments(message).items()
    assert name == "pipeline-weekly-sales-pipeline-2024-05-06.pdf" and mime == "application/pdf"
    assert content.startswith(b"%PDF")
    text = _pdf_text(content, tmp_path)
    assert "Sales pipeline" in text and "01 Jan 2024 – 30 Apr 2024" in text and "Win rate per month" in text
    history = reports.runs(url=crm_url)
    assert history["status"].tolist() == ["sent"]
    assert history["due_at"].tolist() == [dt.datetime(2024, 5, 6, 8, 0)]


def test_each_recipient_gets_only_their_scope_in_the_xlsx(crm_url):
    with time_machine.travel(dt.datetime(2024, 5, 6, 7, 0, tzinfo=UTC), tick=True):
        reports.add_report(
            "Pipeline numbers", ["Sales pipeline"], FILTERS, "xlsx",
            ["all@example.com", "na@example.com"], "0 8 * * *", actor="test", url=crm_url,
        )  # fmt: skip
    with (
        smtp_server() as (port, received),
        time_machine.travel(MONDAY_0800 + dt.timedelta(seconds=5), tick=True),
    ):
        (result,) = reports.run_due(url=crm_url, send=reports.mail_sender(_settings(port)))
    assert result.outcomes == {"all@example.com": "sent", "na@example.com": "sent"}
    by_recipient = {
        envelope[1][0]: message
        for envelope, message in zip(received.envelopes, received.messages, strict=True)
    }
    files = {to: _attachments(m) for to, m in by_recipient.items()}
    everything = files["all@example.com"]["pipeline-numbers-2024-05-06.xlsx"][1]
    north_america = files["na@example.com"]["pipeline-numbers-2024-05-06.xlsx"][1]
    nan = None
    assert _win_rates(everything) == {"2024-01": 1.0, "2024-02": 0.75, "2024-03": 0.0, "2024-04": nan}
    assert _win_rates(north_america) == {"2024-01": nan, "2024-02": 1.0, "2024-03": nan, "2024-04": nan}
    scope = openpyxl.load_workbook(io.BytesIO(north_america))["Filters"]
    assert [c.value for c in scope[2]] == [
        "Sales pipeline", "01 Jan 2024 – 30 Apr 2024 · per month · all accounts · within region NA", "regions NA",
    ]  # fmt: skip
    assert (
        "Numbers limited to what na@example.com may see: regions NA."
        in by_recipient["na@example.com"].get_body(("plain",)).get_content()
    )


def test_pptx_attachment_holds_native_charts_with_the_scoped_numbers(crm_url):
    with time_machine.travel(dt.datetime(2024, 5, 6, 7, 0, tzinfo=UTC), tick=True):
        report = reports.add_report(
            "Pipeline slides", ["Sales pipeline"], FILTERS, "pptx", ["na@example.com"], "0 8 * * *",
            actor="test", url=crm_url,
        )  # fmt: skip
    with (
        smtp_server() as (port, received),
        time_machine.travel(MONDAY_0800 + dt.timedelta(minutes=2), tick=True),
    ):
        result = reports.send_now(
            report.name, actor="test", url=crm_url, send=reports.mail_sender(_settings(port))
        )
    assert result.trigger == "manual" and result.status == "sent"
    ((name, (mime, content)),) = _attachments(received.messages[0]).items()
    assert name.endswith(".pptx") and mime == render.MIME_TYPES["pptx"]
    deck = Presentation(io.BytesIO(content))
    slide = next(s for s in deck.slides if s.shapes.title.text.startswith("Win rate per month"))
    chart = next(shape.chart for shape in slide.shapes if shape.has_chart)
    assert list(next(iter(chart.plots[0].series)).values) == [None, 1.0, None, None]
    assert "within region NA" in deck.slides[0].placeholders[1].text


def test_a_failed_delivery_is_recorded_and_sent_by_the_next_run(crm_url):
    with time_machine.travel(dt.datetime(2024, 5, 6, 7, 0, tzinfo=UTC), tick=True):
        reports.add_report(
            "Retry me",
            ["Overview"],
            FILTERS,
            "xlsx",
            ["na@example.com"],
            "0 8 * * *",
            actor="test",
            url=crm_url,
        )
    with smtp_server() as (port, received):
        send = reports.mail_sender(_settings(port))
        received.fail_next = 3  # every attempt of the first run is answered 451
        with time_machine.travel(MONDAY_0800 + dt.timedelta(seconds=5), tick=True):
            (first,) = reports.run_due(url=crm_url, send=send, wait=NO_WAIT)
            assert first.status == "failed" and "451" in first.outcomes["na@example.com"]
            assert reports.runs(url=crm_url)["status"].tolist() == ["failed"]
            assert channels.undelivered("report", url=crm_url) == [
                ("report 1 2024-05-06T08:00:00", "na@example.com")
            ]
            assert reports.run_due(url=crm_url, send=send, wait=NO_WAIT) == []  # not again within 10 minutes
        with time_machine.travel(MONDAY_0800 + dt.timedelta(minutes=15), tick=True):
            (retry,) = reports.run_due(url=crm_url, send=send, wait=NO_WAIT)
            assert retry.outcomes == {"na@example.com": "sent"} and retry.trigger == "retry of schedule"
            assert reports.run_due(url=crm_url, send=send, wait=NO_WAIT) == []
    assert len(received.messages) == 1
    assert received.messages[0]["Subject"] == "Retry me — 06 May 2024"
    run = reports.runs(url=crm_url).iloc[0]
    assert run["status"] == "sent" and run["due_at"] == dt.datetime(2024, 5, 6, 8, 0)
    attempts = channels.deliveries(kind="report", url=crm_url)
    assert attempts["ok"].tolist().count(False) == 3 and attempts["ok"].tolist().count(True) == 1


def test_a_removed_account_is_not_sent_to_and_the_failure_is_recorded(crm_url):
    with time_machine.travel(dt.datetime(2024, 5, 6, 7, 0, tzinfo=UTC), tick=True):
        reports.add_report(
            "Gone", ["Overview"], FILTERS, "xlsx", ["na@example.com"], "0 8 * * *", actor="test", url=crm_url
        )
    store = AccountStore.open(crm_url)
    store.remove("na@example.com", actor="test")
    store.dispose()
    with (
        smtp_server() as (port, received),
        time_machine.travel(MONDAY_0800 + dt.timedelta(seconds=5), tick=True),
    ):
        (result,) = reports.run_due(url=crm_url, send=reports.mail_sender(_settings(port)), wait=NO_WAIT)
    assert received.messages == []
    assert "is no account" in result.outcomes["na@example.com"]
    assert reports.runs(url=crm_url)["status"].tolist() == ["failed"]


# --- the command line ------------------------------------------------------------------------


def test_cli_add_list_run_due_twice_and_remove(crm_url, monkeypatch, capsys):
    from crm_data.cli import main

    with smtp_server() as (port, received):
        for name, value in {
            "CRM_SMTP_HOST": "127.0.0.1", "CRM_SMTP_PORT": str(port), "CRM_SMTP_FROM": "crm@example.com",
            "CRM_SMTP_STARTTLS": "off",
        }.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        with time_machine.travel(dt.datetime(2024, 5, 6, 7, 0, tzinfo=UTC), tick=True):
            assert main(["reports", "add", "Overview daily", "--page", "Overview", "--filters", FILTERS,
                         "--format", "xlsx", "--to", "all@example.com", "--schedule", "30 7 * * *",
                         "--url", crm_url]) == 0  # fmt: skip
            assert "every day at 07:30 UTC, next Mon 06 May 2024 07:30 UTC" in capsys.readouterr().out
            assert main(["reports", "add", "Bad", "--page", "Overview", "--to", "x@example.com",
                         "--schedule", "30 7 * * *", "--url", crm_url]) == 1  # fmt: skip
            assert "is no account" in capsys.readouterr().err
        for _ in range(2):  # cron may run it twice in the same minute: one mail
            assert main(["reports", "run-due", "--now", "2024-05-06T07:30:10", "--url", crm_url]) == 0
        out = capsys.readouterr().out
        assert "Overview daily (schedule 2024-05-06 07:30 UTC) -> all@example.com: sent" in out
        assert out.strip().endswith("nothing due")
        assert main(["reports", "list", "--url", crm_url]) == 0
        listed = capsys.readouterr().out
        assert "Overview daily: Overview as XLSX to all@example.com" in listed
        assert "schedule 2024-05-06 07:30: sent" in listed
        assert main(["reports", "remove", "Overview daily", "--url", crm_url]) == 0
        assert main(["reports", "list", "--url", crm_url]) == 0
        assert "no reports" in capsys.readouterr().out
    assert len(received.messages) == 1
    ((name, (_, content)),) = _attachments(received.messages[0]).items()
    assert name == "overview-daily-2024-05-06.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(content))
    cards = list(book["Headline KPIs"].iter_rows(values_only=True))
    assert cards[0][:4] == ("kpi", "shown", "change", "periods")
    assert "Win rate" in [row[0] for row in cards[1:]]


def test_run_due_without_a_mail_server_says_what_to_set(crm_url, monkeypatch, capsys):
    from crm_data.cli import main

    monkeypatch.delenv("CRM_SMTP_HOST", raising=False)
    assert main(["reports", "run-due", "--url", crm_url]) == 0  # no report: no mail server needed
    assert capsys.readouterr().out.strip() == "nothing due"
    reports.add_report(
        "R", ["Overview"], "", "pdf", ["all@example.com"], "* * * * *", actor="test", url=crm_url
    )
    assert main(["reports", "run-due", "--url", crm_url]) == 1
    assert "no mail server: set CRM_SMTP_HOST" in capsys.readouterr().err
    assert reports.runs(url=crm_url).empty  # nothing claimed: the next run-due with a server sends it


def test_scheduler_calls_run_due_every_minute_and_forecasts_every_night(crm_url, monkeypatch, capsys):
    from apscheduler.schedulers.blocking import BlockingScheduler

    from crm_data import cli
    from crm_data.cli import main

    calls: list[dict] = []
    nights: list[tuple] = []
    jobs: list[str] = []

    def start(self) -> None:  # run each job once instead of blocking
        for job in self.get_jobs():
            jobs.append(f"{job.id}: {job.trigger}")
            job.func()

    monkeypatch.setattr(BlockingScheduler, "start", start)
    monkeypatch.setattr(reports, "run_due", lambda **kwargs: calls.append(kwargs) or [])
    monkeypatch.setattr(cli, "_forecasts", lambda *args: nights.append(args) or 0)
    assert main(["scheduler", "--url", crm_url, "--forecast-each", "regions", "owners"]) == 0
    assert calls == [{"url": crm_url}]
    assert [args[0] for args in nights] == [crm_url] and nights[0][2] == ["regions", "owners"]
    assert jobs == ["reports-run-due: cron[minute='*']", "forecasts: cron[hour='0', minute='15']"]


def test_a_scheduled_time_is_claimed_once_on_postgresql_too(pg_database_url):
    """Two run-due processes on one PostgreSQL: the unique (report, scheduled time) row lets one win."""
    url = pg_database_url
    report = reports.add_report(
        "PG weekly", ["Overview"], "", "xlsx", ["lead@example.com"], "0 8 * * 1", actor="test", url=url,
        now=MONDAY_0800 - dt.timedelta(days=1),
    )  # fmt: skip
    assert reports.get_report("PG weekly", url=url) == report
    assert reports._claim(report, MONDAY_0800, "schedule", url) is not None
    assert reports._claim(report, MONDAY_0800, "schedule", url) is None
    assert reports._claim(report, MONDAY_0800, "manual", url) is not None  # "send now" at the same minute
    assert reports.runs(url=url)["status"].tolist() == ["running", "running"]
    reports.remove_report(report.report_id, actor="test", url=url)
    assert reports.reports(url) == []


def test_a_removed_reports_id_is_never_given_to_a_new_one(crm_url):
    """Deliveries and runs name a report by its id: a new report must not inherit them."""
    first = reports.add_report(
        "One", ["Overview"], "", "pdf", ["all@example.com"], "0 8 * * *", actor="t", url=crm_url
    )
    reports.remove_report("One", actor="t", url=crm_url)
    second = reports.add_report(
        "Two", ["Overview"], "", "pdf", ["all@example.com"], "0 8 * * *", actor="t", url=crm_url
    )
    assert second.report_id > first.report_id


def test_a_run_cut_short_is_resumed_by_a_later_run_due(crm_url):
    """A run-due that died after claiming 08:00 (the row says running): an hour on, the next
    run-due sends what was not sent, once."""
    with time_machine.travel(dt.datetime(2024, 5, 6, 7, 0, tzinfo=UTC), tick=True):
        report = reports.add_report(
            "Cut short",
            ["Overview"],
            FILTERS,
            "xlsx",
            ["na@example.com"],
            "0 8 * * *",
            actor="test",
            url=crm_url,
        )
    with time_machine.travel(MONDAY_0800 + dt.timedelta(seconds=5), tick=True):
        assert reports._claim(report, MONDAY_0800, "schedule", crm_url) is not None  # ... and then nothing
    with smtp_server() as (port, received):
        send = reports.mail_sender(_settings(port))
        with time_machine.travel(MONDAY_0800 + dt.timedelta(minutes=30), tick=True):
            assert reports.run_due(url=crm_url, send=send) == []  # maybe still at work: left alone
        with time_machine.travel(MONDAY_0800 + dt.timedelta(minutes=70), tick=True):
            (resumed,) = reports.run_due(url=crm_url, send=send)
            assert resumed.trigger == "resumed schedule" and resumed.outcomes == {"na@example.com": "sent"}
            assert reports.run_due(url=crm_url, send=send) == []
    assert len(received.messages) == 1
    assert received.messages[0]["Subject"] == "Cut short — 06 May 2024"
    assert reports.runs(url=crm_url)["status"].tolist() == ["sent"]
