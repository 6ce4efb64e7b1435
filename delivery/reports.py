"""Scheduled reports: dashboard pages with filters, sent by e-mail as PDF, XLSX or PPTX on a
cron schedule, each recipient getting only what their scope allows.

A report (``app_reports``) is

* **pages**: page scripts of the dashboard (:func:`report_pages`: the Overview and every page
  that draws a ``PageReport``), named as in the sidebar ("Sales pipeline"), by file
  (``pages/1_Sales_pipeline.py``) or as a slug (``sales-pipeline``);
* **filters**: the URL query the pages understand (``segment=SMB&period=quarter``; ``from`` /
  ``to`` fix the dates, else each run shows the pages' default range: the last 12 full
  months and the current one);
* **format**: ``pdf`` (a file per page), ``xlsx`` (one workbook) or ``pptx`` (a deck per page);
* **recipients**: app accounts (``crm_data.accounts``). An account named by its e-mail
  address is written as it is (``lead@example.com``); another as ``NAME=ADDRESS``
  (``alice=alice@example.com``). Each recipient's pages are rendered with that account
  signed in (``delivery.render``), so its scope applies. An address that is no account is
  refused while any account exists (nobody would know what it may see); on an install
  without accounts (anonymous, everything visible) plain addresses are accepted;
* **schedule**: cron syntax, 5 fields (``0 8 * * 1``: Mondays at 08:00), in ``timezone``
  (default UTC), read by APScheduler's ``CronTrigger.from_crontab``.

:func:`run_due` (``crm-insights reports run-due``, for cron or a systemd timer, or every
minute from ``crm-insights scheduler``) sends every report whose latest scheduled time
(at or before now, after the report was created) has no run yet. A run is claimed by
inserting its ``app_report_runs`` row, unique per (report, scheduled time), so a report due
at 08:00 is sent once however often ``run-due`` runs, even from two processes at once.
Fire times missed while nothing ran are not caught up one by one: the latest is sent. A
run cut short (the process died) is resumed by the first ``run-due`` an hour later: the
recipients it had not reached yet get it then.

Delivery goes through ``delivery.channels.deliver`` (retries, every attempt recorded in
``app_deliveries``). A recipient whose delivery failed, or whose pages could not be
rendered, is recorded as owed (``channels.undelivered``) and sent again by the next
``run-due``: never silently lost. The retry renders the pages again (the numbers of that
moment), under the same scheduled time.

Tables live where the sign-in accounts live (``crm_data.accounts.auth_url``) and are
created on first use. Plain Python: Streamlit is only used inside ``delivery.render``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import sqlalchemy as sa

from delivery import channels
from delivery.render import FORMATS, PROJECT_DIR

KIND = "report"
OVERVIEW = "dashboard.py"
#: URL parameters the pages understand (``ui.filters``): dates, period, the dimensions.
QUERY_PARAMS = frozenset(
    {"from", "to", "period"}
    | {
        "segment",
        "industry",
        "region",
        "country",
        "company_size",
        "acquisition_channel",
        "owner",
        "product",
        "pipeline",
    }
)
PERIODS = ("month", "quarter", "year")

metadata = sa.MetaData()

app_reports = sa.Table(
    "app_reports",
    metadata,
    sa.Column("report_id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("pages", sa.Text(), nullable=False),  # JSON list of page scripts
    sa.Column("query", sa.Text(), nullable=False),  # the filters as a URL query
    sa.Column("format", sa.String(8), nullable=False),
    sa.Column("recipients", sa.Text(), nullable=False),  # JSON list of recipient specs
    sa.Column("schedule", sa.String(120), nullable=False),  # cron, 5 fields
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("created_by", sa.String(254), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),  # naive UTC
    sqlite_autoincrement=True,  # an id is never reused: deliveries and runs name reports by id
)

app_report_runs = sa.Table(
    "app_report_runs",
    metadata,
    sa.Column("run_id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("report_id", sa.Integer(), nullable=False),
    sa.Column("due_at", sa.DateTime(), nullable=False),  # the scheduled time (naive UTC); manual: when asked
    sa.Column("trigger", sa.String(16), nullable=False),  # schedule | manual
    sa.Column("started_at", sa.DateTime(), nullable=False),
    sa.Column("finished_at", sa.DateTime(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # running | sent | partial | failed
    sa.Column("detail", sa.Text(), nullable=False),  # JSON: recipient address -> outcome
    sa.UniqueConstraint("report_id", "due_at", "trigger", name="uq_app_report_runs_due"),
    sqlite_autoincrement=True,
)


class ReportError(ValueError):
    """A report that cannot be saved or sent as asked; the message says what and why."""


# --------------------------------------------------------------------------------------------
# Pages, filters, recipients, schedules
# --------------------------------------------------------------------------------------------


def page_title(script: str) -> str:
    """A page's title as its ``PageReport`` shows it ("Customers & churn"), else from its
    file (``pages/1_Sales_pipeline.py`` -> "Sales pipeline"); ``dashboard.py`` -> "Overview"."""
    if script == OVERVIEW:
        return "Overview"
    for title, known in report_pages().items():
        if known == script:
            return title
    stem = Path(script).stem
    return re.sub(r"^\d+_", "", stem).replace("_", " ")


def report_pages(project: Path = PROJECT_DIR) -> dict[str, str]:
    """The pages a report can hold: title -> script (the Overview, then every page that
    draws a ``PageReport``, in sidebar order)."""
    pages = {"Overview": OVERVIEW}

    def order(path: Path) -> tuple[int, str]:
        number = re.match(r"(\d+)_", path.name)
        return (int(number.group(1)) if number else 10**6, path.name)

    for path in sorted((project / "pages").glob("*.py"), key=order):
        source = path.read_text(encoding="utf-8")
        if "PageReport(" in source:
            script = f"pages/{path.name}"
            named = re.search(r"PageReport\(\s*[\"']([^\"']+)[\"']", source)  # the title the page shows
            pages[named.group(1) if named else page_title(script)] = script
    return pages


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def resolve_page(name: str, pages: dict[str, str] | None = None) -> str:
    """The script of a page named by title, file, stem or slug (case-insensitive)."""
    pages = pages if pages is not None else report_pages()
    wanted = _slug(name.strip().removeprefix("pages/").removesuffix(".py"))
    for title, script in pages.items():
        stem = Path(script).stem
        if wanted in {_slug(title), _slug(stem), _slug(re.sub(r"^\d+_", "", stem))} or (
            script == OVERVIEW and wanted in {"overview", "dashboard"}
        ):
            return script
    raise ReportError(f"no report page {name!r}: one of {', '.join(pages)}")


def normal_query(query: str) -> str:
    """The filters as a URL query, checked: known parameters only, ``from`` / ``to`` as
    YYYY-MM-DD (``from`` not after ``to``), ``period`` month / quarter / year. Values of the
    dimensions are checked by the pages against the database on every run (a value outside a
    recipient's scope is ignored there, and the mail says so)."""
    pairs = parse_qsl(query.strip().lstrip("?"), keep_blank_values=True, strict_parsing=False)
    for key, value in pairs:
        if key not in QUERY_PARAMS:
            raise ReportError(
                f"unknown filter {key!r} in {query!r}: one of {', '.join(sorted(QUERY_PARAMS))}"
            )
        if not value:
            raise ReportError(f"filter {key!r} has no value in {query!r}")
        if key in ("from", "to"):
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise ReportError(f"filter {key}={value!r} is not a date (YYYY-MM-DD)") from None
        if key == "period" and value not in PERIODS:
            raise ReportError(f"period={value!r}: one of {', '.join(PERIODS)}")
    dates = dict((k, v) for k, v in pairs if k in ("from", "to"))
    if len(dates) == 2 and dates["from"] > dates["to"]:
        raise ReportError(f"from={dates['from']} is after to={dates['to']}")
    return urlencode(pairs)


@dataclass(frozen=True)
class Recipient:
    """Where a report goes and as whom it is rendered (``account`` None: anonymous install)."""

    spec: str
    address: str
    account: str | None
    scope: str = "everything"


def _address_ok(address: str) -> bool:
    return bool(re.fullmatch(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+", address))


def resolve_recipient(spec: str, store: Any) -> Recipient:
    """A recipient spec (``lead@example.com``, ``alice=alice@example.com``) checked against
    the accounts of ``store`` (``crm_data.accounts.AccountStore``)."""
    text = spec.strip()
    name, equals, address = text.partition("=")
    if not equals:
        name = address = text
    name, address = name.strip(), address.strip()
    if not _address_ok(address):
        if not equals and store.get(name) is not None:
            raise ReportError(
                f"recipient {name!r} is an account without an e-mail address: write {name}=ADDRESS"
            )
        raise ReportError(f"recipient {spec!r}: {address!r} is not an e-mail address")
    account = store.get(name)
    if account is None:
        if store.any_accounts():
            raise ReportError(
                f"recipient {spec!r} is no account: reports go to accounts only, so each recipient gets "
                f"just what their scope allows (add one: crm-insights users add {address} --sso --role viewer "
                "--region …; or name an account: NAME=ADDRESS)"
            )
        if equals:
            raise ReportError(f"recipient {spec!r}: there is no account {name!r} (no accounts at all)")
        return Recipient(text, address.lower(), None)
    return Recipient(text, address.lower(), account.name, account.describe_scope())


def cron_trigger(schedule: str, timezone: str = "UTC") -> Any:
    """APScheduler's ``CronTrigger`` for a 5-field cron expression in ``timezone``."""
    from apscheduler.triggers.cron import CronTrigger

    fields = schedule.split()
    if len(fields) != 5:
        raise ReportError(
            f"schedule {schedule!r} has {len(fields)} fields; cron needs 5: minute hour day month weekday "
            "(e.g. '0 8 * * 1' for Mondays at 08:00)"
        )
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"unknown time zone {timezone!r} (e.g. UTC, Europe/Berlin)") from None
    minute, hour, day, month, weekday = fields
    try:
        return CronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=cron_weekdays(weekday), timezone=zone
        )
    except ValueError as error:
        raise ReportError(f"schedule {schedule!r} is not valid cron: {error}") from None


_WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_weekdays(field_text: str) -> str:
    """Cron's weekday field (0 or 7 = Sunday, 1 = Monday …, names, lists, ranges, steps) as
    APScheduler 3 reads it. ``CronTrigger.from_crontab`` passes numbers through, and
    APScheduler 3 counts Monday as 0, so ``0 8 * * 1`` would fire on Tuesdays; the days are
    given by name instead: ``1-5`` -> ``mon,tue,wed,thu,fri``."""
    text = field_text.strip().lower()
    if text in ("*", "?"):
        return "*"

    def number(token: str) -> int:
        if token[:3] in _WEEKDAY_NAMES and not token[:1].isdigit():
            return _WEEKDAY_NAMES.index(token[:3])
        if not token.isdigit() or int(token) > 7:
            raise ReportError(f"weekday {token!r} in {field_text!r}: 0–7 (0 and 7: Sunday) or mon … sun")
        return int(token)

    days: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ReportError(f"step {step_text!r} in {field_text!r} is not a positive number")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, _, high = span.partition("-")
            first, last = number(low), number(high)
            if last < first:
                raise ReportError(f"weekday range {span!r} in {field_text!r} runs backwards")
        else:
            first = last = number(span)
            if step:
                last = 7
        days.update(d % 7 for d in range(first, last + 1, step or 1))
    return ",".join(_WEEKDAY_NAMES[d] for d in sorted(days))


_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


def describe_schedule(schedule: str, timezone: str = "UTC") -> str:
    """A cron schedule in words for the common shapes ("every Monday at 08:00 UTC"), else
    the expression itself ("cron '*/15 8-18 * * 1-5' (UTC)")."""
    fields = schedule.split()
    if len(fields) == 5 and fields[0].isdigit() and fields[1].isdigit():
        minute, hour, day, month, weekday = fields
        at = f"at {int(hour):02d}:{int(minute):02d} {timezone}"
        if (day, month, weekday) == ("*", "*", "*"):
            return f"every day {at}"
        if (day, month) == ("*", "*") and weekday in ("1-5", "mon-fri"):
            return f"every weekday (Monday to Friday) {at}"
        if (day, month) == ("*", "*"):
            key = weekday.lower()
            number = _DAY_NAMES.get(key[:3]) if not key.isdigit() else int(key)
            if number is not None and 0 <= number <= 7:
                return f"every {_DAYS[number]} {at}"
        if day.isdigit() and (month, weekday) == ("*", "*"):
            return f"on day {int(day)} of every month {at}"
    return f"cron '{schedule}' ({timezone})"


def _utc(moment: dt.datetime) -> dt.datetime:
    """Naive UTC (as stored) from an aware datetime, or a naive one taken as UTC."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def next_run(schedule: str, timezone: str = "UTC", after: dt.datetime | None = None) -> dt.datetime | None:
    """The first scheduled time strictly after ``after`` (default: now), aware in UTC."""
    after = _aware(after or dt.datetime.now(dt.UTC))
    trigger = cron_trigger(schedule, timezone)
    found = trigger.get_next_fire_time(None, after + dt.timedelta(microseconds=1))
    return None if found is None else found.astimezone(dt.UTC)


#: How far back :func:`latest_due` looks, widening only while it finds nothing.
_WINDOWS = (dt.timedelta(hours=1), dt.timedelta(days=1), dt.timedelta(days=8), dt.timedelta(days=32),
            dt.timedelta(days=367), dt.timedelta(days=366 * 5))  # fmt: skip


def latest_due(schedule: str, timezone: str, since: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    """The latest scheduled time in ``[since, now]`` (aware UTC), or None. The look-back
    window widens (an hour, a day, 8 days …) only while it holds no scheduled time, so a
    minutely schedule costs at most ~60 steps and a yearly one a few."""
    trigger = cron_trigger(schedule, timezone)
    since, now = _aware(since), _aware(now)
    for window in _WINDOWS:
        start = max(since, now - window)
        latest = None
        fire = trigger.get_next_fire_time(None, start)
        while fire is not None and fire <= now:
            latest = fire
            fire = trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
        if latest is not None:
            return latest.astimezone(dt.UTC)
        if start == since:
            return None
    return None


# --------------------------------------------------------------------------------------------
# The tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    report_id: int
    name: str
    pages: tuple[str, ...]
    query: str
    format: str
    recipients: tuple[str, ...]
    schedule: str
    timezone: str
    created_by: str
    created_at: dt.datetime

    def describe(self) -> str:
        return describe_schedule(self.schedule, self.timezone)


def app_engine(url: str | None = None) -> sa.Engine:
    """The app database for the CRM database ``url``, with the report tables created."""
    engine = channels.app_engine(url)
    with engine.begin() as conn:
        metadata.create_all(conn, checkfirst=True)
    return engine


def _store(url: str | None) -> Any:
    from crm_data.accounts import AccountStore
    from crm_data.engines import database_url

    return AccountStore.open(database_url(url))


def _report(row: Any) -> Report:
    return Report(
        row.report_id,
        row.name,
        tuple(json.loads(row.pages)),
        row.query,
        row.format,
        tuple(json.loads(row.recipients)),
        row.schedule,
        row.timezone,
        row.created_by,
        row.created_at,
    )


def add_report(
    name: str,
    pages: Sequence[str],
    query: str,
    fmt: str,
    recipients: Sequence[str],
    schedule: str,
    *,
    timezone: str = "UTC",
    actor: str,
    url: str | None = None,
    now: dt.datetime | None = None,
) -> Report:
    """Check and save a report (every field checked before anything is written)."""
    name = " ".join((name or "").split())
    if not name or len(name) > 200:
        raise ReportError("a report needs a name (1–200 characters)")
    if not pages:
        raise ReportError("a report needs at least one page")
    known = report_pages()
    scripts = list(dict.fromkeys(resolve_page(p, known) for p in pages))
    query = normal_query(query or "")
    if fmt not in FORMATS:
        raise ReportError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    if not recipients:
        raise ReportError("a report needs at least one recipient")
    store = _store(url)
    try:
        resolved = list({r.spec: r for r in (resolve_recipient(spec, store) for spec in recipients)}.values())
    finally:
        store.dispose()
    addresses = [r.address for r in resolved]
    twice = sorted({a for a in addresses if addresses.count(a) > 1})
    if twice:
        raise ReportError(f"{', '.join(twice)} named twice as a recipient: one account per address")
    specs = [r.spec for r in resolved]
    cron_trigger(schedule, timezone)
    created = _utc(now or dt.datetime.now(dt.UTC))
    engine = app_engine(url)
    with engine.begin() as conn:
        if conn.execute(sa.select(app_reports.c.report_id).where(app_reports.c.name == name)).first():
            raise ReportError(f"a report {name!r} exists already (remove it first, or choose another name)")
        report_id = conn.execute(
            app_reports.insert().values(
                name=name,
                pages=json.dumps(scripts),
                query=query,
                format=fmt,
                recipients=json.dumps(specs),
                schedule=" ".join(schedule.split()),
                timezone=timezone,
                created_by=actor,
                created_at=created,
            )
        ).inserted_primary_key[0]
    _audit(url, actor, "report_added", name, {"pages": scripts, "format": fmt, "recipients": specs})
    return get_report(report_id, url=url)


def _audit(url: str | None, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
    store = _store(url)
    try:
        store.record(actor, action, target, details)
    finally:
        store.dispose()


def reports(url: str | None = None) -> list[Report]:
    with app_engine(url).connect() as conn:
        rows = conn.execute(sa.select(app_reports).order_by(app_reports.c.report_id)).all()
    return [_report(r) for r in rows]


def get_report(key: int | str, url: str | None = None) -> Report:
    """A report by id or name."""
    column = app_reports.c.report_id if isinstance(key, int) or str(key).isdigit() else app_reports.c.name
    value = int(key) if column is app_reports.c.report_id else str(key)
    with app_engine(url).connect() as conn:
        row = conn.execute(sa.select(app_reports).where(column == value)).first()
    if row is None:
        raise ReportError(f"no report {key!r} (see `crm-insights reports list`)")
    return _report(row)


def remove_report(key: int | str, *, actor: str, url: str | None = None) -> Report:
    """Delete a report (its runs stay as history)."""
    report = get_report(key, url)
    with app_engine(url).begin() as conn:
        conn.execute(app_reports.delete().where(app_reports.c.report_id == report.report_id))
    _audit(url, actor, "report_removed", report.name, {"report_id": report.report_id})
    return report


def runs(report_id: int | None = None, *, limit: int = 200, url: str | None = None) -> pd.DataFrame:
    """The newest runs (newest first): run_id, report_id, due_at, trigger, started_at,
    finished_at, status, detail (JSON text)."""
    r = app_report_runs.c
    statement = sa.select(app_report_runs).order_by(r.started_at.desc(), r.run_id.desc()).limit(limit)
    if report_id is not None:
        statement = statement.where(r.report_id == report_id)
    with app_engine(url).connect() as conn:
        rows = conn.execute(statement).all()
    columns = [c.name for c in app_report_runs.columns]
    return pd.DataFrame([tuple(row) for row in rows], columns=columns)


def target_of(report: Report, due: dt.datetime, trigger: str = "schedule") -> str:
    """What ``app_deliveries`` calls one run's message: ``report 3 2026-12-07T08:00:00``
    (``report 3 manual 2026-12-07T09:13:05`` for "send now")."""
    stamp = _utc(due).isoformat(timespec="seconds")
    return f"report {report.report_id} {'manual ' if trigger == 'manual' else ''}{stamp}"


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

Sender = Callable[[Sequence[str], str, str, Sequence[Any]], None]


@dataclass
class RunResult:
    """What one run did: per recipient address, ok or the error."""

    report: str
    due_at: dt.datetime
    trigger: str
    outcomes: dict[str, str] = field(default_factory=dict)  # address -> "sent" | error text

    @property
    def status(self) -> str:
        sent = [v == "sent" for v in self.outcomes.values()]
        if sent and all(sent):
            return "sent"
        return "partial" if any(sent) else "failed"


def mail_sender(settings: Any | None = None) -> Sender:
    """A sender through SMTP (``delivery.channels.send_mail``; settings from ``CRM_SMTP_*``)."""
    settings = settings or channels.MailSettings.from_env()
    if settings is None:
        raise ReportError(
            "no mail server: set CRM_SMTP_HOST (and CRM_SMTP_FROM, CRM_SMTP_USER, CRM_SMTP_PASSWORD, "
            "CRM_SMTP_PORT) so reports can be sent"
        )

    def send(to: Sequence[str], subject: str, text: str, files: Sequence[Any]) -> None:
        attachments = [channels.Attachment(f.filename, f.content, f.mime_type) for f in files]
        channels.send_mail(settings, list(to), subject, text, attachments)

    return send


def _mail_text(report: Report, pages: Sequence[Any], recipient: Recipient, due: dt.datetime) -> str:
    lines = [
        f"{report.name}: {', '.join(p.title for p in pages)} as {report.format.upper()}, "
        f"scheduled {describe_schedule(report.schedule, report.timezone)}.",
        f"Run for {_aware(due):%d %b %Y %H:%M} UTC.",
        "",
    ]
    for page in pages:
        lines.append(f"{page.title}: {page.context}")
        lines += [f"  note: {notice}" for notice in page.notices]
    if recipient.account is not None:
        lines += ["", f"Numbers limited to what {recipient.account} may see: {recipient.scope}."]
    following = next_run(report.schedule, report.timezone, due)
    if following is not None:
        lines += ["", f"Next report: {following:%a %d %b %Y %H:%M} UTC."]
    lines += ["", "Sent by CRM Insights (crm-insights reports list shows every report)."]
    return "\n".join(lines)


def _render_for(
    report: Report, recipient: Recipient, url: str, due: dt.datetime
) -> tuple[list[Any], list[Any]]:
    from delivery import render

    pages = [render.render_page(script, report.query, recipient.account, url) for script in report.pages]
    files = render.render_files(report.name, pages, report.format, scope=recipient.scope, when=_aware(due))
    return pages, files


def _deliver_one(
    report: Report,
    spec: str,
    due: dt.datetime,
    trigger: str,
    url: str,
    send: Sender,
    wait: Callable[[float], None],
    cache: dict[str | None, tuple[list[Any], list[Any]]],
) -> tuple[str, str]:
    """Render (once per account within a run) and send to one recipient; (address, outcome)."""
    target = target_of(report, due, trigger)
    store = _store(url)
    try:
        recipient = resolve_recipient(spec, store)
    except ReportError as error:
        address = spec.rpartition("=")[2].strip().lower() or spec
        channels.record_attempt(KIND, target, address, 1, f"not sent: {error}", url=url)
        return address, str(error)
    finally:
        store.dispose()
    if channels.delivered(KIND, target, recipient.address, url=url):
        return recipient.address, "sent"
    try:
        if recipient.account not in cache:
            cache[recipient.account] = _render_for(report, recipient, url, due)
        pages, files = cache[recipient.account]
    except Exception as error:  # recorded as owed: the next run renders and sends again
        text = f"could not render: {type(error).__name__}: {error}"
        channels.record_attempt(KIND, target, recipient.address, 1, text, url=url)
        return recipient.address, text
    subject = f"{report.name} — {_aware(due):%d %b %Y}"
    text = _mail_text(report, pages, recipient, due)
    ok = channels.deliver(
        KIND,
        target,
        recipient.address,
        lambda: send([recipient.address], subject, text, files),
        wait=wait,
        url=url,
    )
    if ok:
        return recipient.address, "sent"
    history = channels.deliveries(kind=KIND, target_prefix=target, limit=50, url=url)
    mine = history[history["recipient"] == recipient.address]
    return recipient.address, (mine["error"].iloc[0] if len(mine) else "not delivered")


def _finish(run_id: int, result: RunResult, url: str | None) -> None:
    with app_engine(url).begin() as conn:
        conn.execute(
            app_report_runs.update()
            .where(app_report_runs.c.run_id == run_id)
            .values(
                finished_at=_utc(dt.datetime.now(dt.UTC)),
                status=result.status,
                detail=json.dumps(result.outcomes, sort_keys=True),
            )
        )


def _claim(report: Report, due: dt.datetime, trigger: str, url: str | None) -> int | None:
    """Insert the run's row; None when another run-due already has it (idempotency)."""
    try:
        with app_engine(url).begin() as conn:
            return conn.execute(
                app_report_runs.insert().values(
                    report_id=report.report_id,
                    due_at=_utc(due),
                    trigger=trigger,
                    started_at=_utc(dt.datetime.now(dt.UTC)),
                    status="running",
                    detail="{}",
                )
            ).inserted_primary_key[0]
    except sa.exc.IntegrityError:
        return None


def run_report(
    report: Report,
    due: dt.datetime,
    *,
    trigger: str = "schedule",
    url: str | None = None,
    send: Sender | None = None,
    wait: Callable[[float], None] | None = None,
) -> RunResult | None:
    """Claim and run one report for its scheduled time ``due``; None when that run exists."""
    from crm_data.engines import database_url

    url = database_url(url)
    send = send or mail_sender()
    run_id = _claim(report, due, trigger, url)
    if run_id is None:
        return None
    result = RunResult(report.name, _utc(due), trigger)
    cache: dict[str | None, tuple[list[Any], list[Any]]] = {}
    try:
        for spec in report.recipients:
            address, outcome = _deliver_one(report, spec, due, trigger, url, send, wait or _sleep, cache)
            result.outcomes[address] = outcome
    finally:
        _finish(run_id, result, url)
    return result


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def send_now(
    key: int | str,
    *,
    actor: str,
    url: str | None = None,
    send: Sender | None = None,
    now: dt.datetime | None = None,
) -> RunResult:
    """Run a report at once ("send now"), apart from its schedule."""
    report = get_report(key, url)
    moment = _utc(now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    _audit(url, actor, "report_sent", report.name, {"trigger": "manual"})
    result = run_report(report, moment, trigger="manual", url=url, send=send)
    if result is None:
        raise ReportError(f"{report.name} was just sent (at {moment:%H:%M:%S} UTC): try again in a second")
    return result


def run_due(
    *,
    url: str | None = None,
    now: dt.datetime | None = None,
    send: Sender | None = None,
    wait: Callable[[float], None] | None = None,
) -> list[RunResult]:
    """Send every report that is due (module docstring), then what earlier runs still owe.
    Idempotent: a scheduled time is run once whatever the number of calls."""
    from crm_data.engines import database_url

    url = database_url(url)
    now = _aware(now or dt.datetime.now(dt.UTC))
    listed = reports(url)
    if not listed:
        return []  # nothing to send: no mail server needed
    send = send or mail_sender()
    results = []
    attempted: set[str] = set()
    for report in listed:
        due = latest_due(report.schedule, report.timezone, _aware(report.created_at), now)
        if due is None:
            continue
        result = run_report(report, due, url=url, send=send, wait=wait)
        if result is not None:
            results.append(result)
            attempted.add(target_of(report, due))
    results += _resume_stale(url, send, wait, now)
    results += _retry_owed(url, send, wait, attempted, now)
    return results


#: A run still "running" this long after it started was cut short (the process died): the
#: next run-due sends what it had not sent yet.
STALE_AFTER = dt.timedelta(hours=1)


def _resume_stale(
    url: str, send: Sender, wait: Callable[[float], None] | None, now: dt.datetime
) -> list[RunResult]:
    r = app_report_runs.c
    with app_engine(url).connect() as conn:
        stale = conn.execute(
            sa.select(app_report_runs).where(r.status == "running", r.started_at < _utc(now - STALE_AFTER))
        ).all()
    by_id = {report.report_id: report for report in reports(url)}
    results = []
    for run in stale:
        report = by_id.get(run.report_id)
        result = RunResult(
            report.name if report else f"removed report {run.report_id}", run.due_at, f"resumed {run.trigger}"
        )
        if report is not None:
            cache: dict[str | None, tuple[list[Any], list[Any]]] = {}
            for spec in report.recipients:
                address, outcome = _deliver_one(
                    report, spec, run.due_at, run.trigger, url, send, wait or _sleep, cache
                )
                result.outcomes[address] = outcome
        _finish(run.run_id, result, url)
        results.append(result)
    return results


_TARGET = re.compile(r"^report (\d+) (manual )?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)$")


#: An owed delivery is tried again by run-due at most this often, for this long after its
#: scheduled time; after that it stays in the history as failed (``reports list`` shows it).
RETRY_EVERY = dt.timedelta(minutes=10)
RETRY_FOR = dt.timedelta(days=7)


def _retry_now(target: str, address: str, due: dt.datetime, now: dt.datetime, url: str) -> bool:
    if _aware(due) < now - RETRY_FOR:
        return False
    history = channels.deliveries(kind=KIND, target_prefix=target, limit=1000, url=url)
    mine = history[(history["target"] == target) & (history["recipient"] == address)]
    if mine.empty:
        return True
    last = pd.Timestamp(mine["attempted_at"].max()).to_pydatetime()
    return _aware(last) <= now - RETRY_EVERY


def _retry_owed(
    url: str, send: Sender, wait: Callable[[float], None] | None, skip: Iterable[str], now: dt.datetime
) -> list[RunResult]:
    """Deliveries of earlier runs that never succeeded: render and send them again (at most
    every :data:`RETRY_EVERY`, for :data:`RETRY_FOR` after their scheduled time)."""
    skip = set(skip)
    by_id = {r.report_id: r for r in reports(url)}
    results: dict[str, RunResult] = {}
    cache: dict[str, dict[str | None, tuple[list[Any], list[Any]]]] = {}
    for target, address in channels.undelivered(KIND, url=url):
        found = _TARGET.match(target)
        if target in skip or not found or int(found.group(1)) not in by_id:
            continue  # this run's own failures wait for the next run; removed reports are not sent
        report = by_id[int(found.group(1))]
        trigger = "manual" if found.group(2) else "schedule"
        due = dt.datetime.fromisoformat(found.group(3))
        spec = next((s for s in report.recipients if s.rpartition("=")[2].strip().lower() == address), None)
        if spec is None:
            continue  # no longer a recipient of this report
        if not _retry_now(target, address, due, now, url):
            continue
        result = results.setdefault(target, RunResult(report.name, due, f"retry of {trigger}"))
        _, outcome = _deliver_one(
            report, spec, due, trigger, url, send, wait or _sleep, cache.setdefault(target, {})
        )
        result.outcomes[address] = outcome
    for target, result in results.items():
        found = _TARGET.match(target)
        assert found is not None
        with app_engine(url).begin() as conn:
            row = conn.execute(
                sa.select(app_report_runs.c.run_id, app_report_runs.c.detail).where(
                    app_report_runs.c.report_id == int(found.group(1)),
                    app_report_runs.c.due_at == result.due_at,
                    app_report_runs.c.trigger == ("manual" if found.group(2) else "schedule"),
                )
            ).first()
        if row is not None:
            merged = RunResult(
                result.report, result.due_at, result.trigger, {**json.loads(row.detail), **result.outcomes}
            )
            _finish(row.run_id, merged, url)
    return list(results.values())
