"""Sending things to people: e-mail (SMTP with STARTTLS) and webhooks (Slack-compatible JSON),
with retries and a record of every attempt.

* :func:`send_mail` sends one message (text, optional HTML, attachments) through the SMTP
  server of :class:`MailSettings` (``MailSettings.from_env()`` reads ``CRM_SMTP_*``).
* :func:`post_webhook` POSTs a JSON payload (``{"text": ...}`` is what Slack, Mattermost,
  Rocket.Chat and Teams' incoming webhooks accept) and fails on any non-2xx answer.
* :func:`deliver` calls a ``send`` function up to ``attempts`` times, waiting
  ``BACKOFF_SECONDS · 2^(n−1)`` between attempts (2 s, then 4 s), and writes every attempt
  to the app table ``app_deliveries`` (when, kind ``alert``/``report``, target, recipient,
  attempt number, ok, error text). A delivery whose last attempt failed stays there as
  failed: :func:`undelivered` lists those so the next run sends them again; nothing is lost.
  ``deliver`` itself always sends (it never skips a target already delivered): a caller
  that runs again asks :func:`delivered` first.

``app_deliveries`` lives where the sign-in accounts live (``crm_data.accounts.auth_url``: a
``<name>-auth.sqlite`` beside a DuckDB or SQLite file, the same database on PostgreSQL, or
``$CRM_AUTH_DATABASE_URL``) and is created on first use. ``url`` arguments are the *CRM*
database URL (``crm_data.engines.database_url``: ``--url``, ``$CRM_DATABASE_URL`` or the
embedded DuckDB file); the app database is derived from it.

Plain Python: no Streamlit.
"""

from __future__ import annotations

import datetime as dt
import os
import smtplib
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import pandas as pd
import sqlalchemy as sa

#: The kinds of delivery recorded in ``app_deliveries``.
KINDS: tuple[str, ...] = ("alert", "report")
#: The first wait between attempts; each further wait doubles it.
BACKOFF_SECONDS = 2.0
#: Attempts per delivery and run.
ATTEMPTS = 3

metadata = sa.MetaData()

app_deliveries = sa.Table(
    "app_deliveries",
    metadata,
    sa.Column("delivery_id", sa.String(32), primary_key=True),
    sa.Column("attempted_at", sa.DateTime(), nullable=False),  # naive UTC
    sa.Column("kind", sa.String(16), nullable=False),  # alert | report
    sa.Column("target", sa.String(254), nullable=False),  # what was delivered: "alert 3 2026-11-01" …
    sa.Column("recipient", sa.String(1000), nullable=False),  # an e-mail address or a webhook URL
    sa.Column("attempt", sa.Integer(), nullable=False),  # 1, 2, … within one deliver() call
    sa.Column("ok", sa.Boolean(), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),  # "" when ok
    sa.Index("ix_app_deliveries_kind_target", "kind", "target"),
    sa.Index("ix_app_deliveries_at", "attempted_at"),
)


class DeliveryError(RuntimeError):
    """A message that could not be sent; the text says to where and why."""


# ---------------------------------------------------------------- e-mail


@dataclass(frozen=True)
class Attachment:
    """A file attached to an e-mail: ``mime_type`` such as ``application/pdf``."""

    filename: str
    content: bytes
    mime_type: str


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class MailSettings:
    """An SMTP server to send through. ``starttls`` (the default) upgrades the connection
    with STARTTLS and verifies the server's certificate (against the system's authorities, or
    ``cafile`` when given) before any password or message is sent; a server that does not
    offer STARTTLS is then refused. ``implicit_tls`` (port 465, "SMTPS") opens TLS before
    the first word instead, verified the same way."""

    host: str
    sender: str
    port: int = 587
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    cafile: str | None = None
    timeout: float = 30.0
    implicit_tls: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MailSettings | None:
        """The settings from ``CRM_SMTP_HOST``, ``CRM_SMTP_PORT`` (587), ``CRM_SMTP_USER``,
        ``CRM_SMTP_PASSWORD``, ``CRM_SMTP_FROM`` (default: the user when it is an address),
        ``CRM_SMTP_STARTTLS`` (on; ``off``/``0``/``false``/``no`` turn it off) and
        ``CRM_SMTP_CAFILE`` (a PEM file of authorities to trust instead of the system's);
        port 465 means TLS from the start (SMTPS) instead of STARTTLS. None when ``CRM_SMTP_HOST`` is not set. A malformed value raises ``ValueError``
        naming the variable."""
        env = os.environ if environ is None else environ
        host = (env.get("CRM_SMTP_HOST") or "").strip()
        if not host:
            return None
        port_text = (env.get("CRM_SMTP_PORT") or "587").strip()
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"CRM_SMTP_PORT must be a port number, not {port_text!r}") from None
        if not 0 < port < 65536:
            raise ValueError(f"CRM_SMTP_PORT must be between 1 and 65535, not {port}")
        tls_text = (env.get("CRM_SMTP_STARTTLS") or "on").strip().lower()
        if tls_text not in _TRUE | _FALSE:
            raise ValueError(f"CRM_SMTP_STARTTLS must be on or off, not {tls_text!r}")
        user = (env.get("CRM_SMTP_USER") or "").strip() or None
        sender = (env.get("CRM_SMTP_FROM") or "").strip() or (user if user and "@" in user else "")
        if not sender:
            raise ValueError("CRM_SMTP_FROM is not set: the address the mails come from")
        return cls(
            host=host,
            sender=sender,
            port=port,
            user=user,
            password=env.get("CRM_SMTP_PASSWORD") or None,
            starttls=tls_text in _TRUE,
            cafile=(env.get("CRM_SMTP_CAFILE") or "").strip() or None,
            implicit_tls=port == 465,
        )


def _checked_addresses(to: Sequence[str]) -> list[str]:
    if isinstance(to, str):
        to = [to]
    addresses = [a.strip() for a in to if a and a.strip()]
    if not addresses:
        raise ValueError("an e-mail needs at least one recipient")
    for address in addresses:
        if "@" not in address or any(c.isspace() or c in ",;<>" for c in address):
            raise ValueError(f"not an e-mail address: {address!r}")
    return addresses


def build_message(
    settings: MailSettings,
    to: Sequence[str],
    subject: str,
    text: str,
    attachments: Sequence[Attachment] = (),
    html: str | None = None,
) -> EmailMessage:
    """The message :func:`send_mail` sends (text, an HTML alternative, then attachments)."""
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(_checked_addresses(to))
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2] or None)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for attachment in attachments:
        maintype, slash, subtype = attachment.mime_type.partition("/")
        if not slash or not maintype or not subtype:
            raise ValueError(f"{attachment.filename}: not a MIME type: {attachment.mime_type!r}")
        message.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return message


def send_mail(
    settings: MailSettings,
    to: Sequence[str],
    subject: str,
    text: str,
    attachments: Sequence[Attachment] = (),
    html: str | None = None,
) -> None:
    """Send one e-mail to ``to`` through ``settings``' server. Raises :class:`DeliveryError`
    (server, port and the reason) when the server cannot be reached, refuses STARTTLS, the
    sign-in or a recipient; ``ValueError`` for a malformed address or MIME type."""
    message = build_message(settings, to, subject, text, attachments, html)
    where = f"SMTP server {settings.host}:{settings.port}"
    try:
        if settings.implicit_tls:
            context = ssl.create_default_context(cafile=settings.cafile)
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout, context=context
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        with client as smtp:
            smtp.ehlo()
            if settings.starttls and not settings.implicit_tls:
                if not smtp.has_extn("starttls"):
                    raise DeliveryError(
                        f"{where} does not offer STARTTLS (set CRM_SMTP_STARTTLS=off only for a "
                        "server on this machine or a trusted network)"
                    )
                context = ssl.create_default_context(cafile=settings.cafile)
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.user:
                smtp.login(settings.user, settings.password or "")
            refused = smtp.send_message(message)
    except DeliveryError:
        raise
    except smtplib.SMTPAuthenticationError as error:
        raise DeliveryError(f"{where} refused the sign-in of {settings.user}: {_smtp_text(error)}") from error
    except smtplib.SMTPRecipientsRefused as error:
        refused_text = "; ".join(f"{a}: {_smtp_text(e)}" for a, e in error.recipients.items())
        raise DeliveryError(f"{where} refused the recipients: {refused_text}") from error
    except (smtplib.SMTPException, ssl.SSLError, OSError) as error:
        raise DeliveryError(f"{where}: {type(error).__name__}: {_smtp_text(error)}") from error
    if refused:
        refused_text = "; ".join(f"{a}: {_smtp_text(e)}" for a, e in refused.items())
        raise DeliveryError(f"{where} refused some recipients: {refused_text}")


def _smtp_text(error: object) -> str:
    if isinstance(error, tuple) and len(error) == 2:  # (code, message) as smtplib gives them
        code, text = error
        text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
        return f"{code} {text}"
    if isinstance(error, smtplib.SMTPResponseException):
        return _smtp_text((error.smtp_code, error.smtp_error))
    return str(error) or type(error).__name__


# ---------------------------------------------------------------- webhooks


def is_webhook(recipient: str) -> bool:
    """True for an ``http://`` or ``https://`` URL (a webhook), False for anything else."""
    return recipient.strip().lower().startswith(("http://", "https://"))


def shown_recipient(recipient: str) -> str:
    """A recipient as the dashboard shows it: e-mail addresses as they are, webhook URLs with
    their path hidden but its last 4 characters (``https://hooks.slack.com/…WXYZ``) — a
    webhook URL is a credential: whoever has it may post to the channel."""
    if not is_webhook(recipient):
        return recipient
    import httpx

    try:
        url = httpx.URL(recipient.strip())
    except httpx.InvalidURL:
        return "(webhook)"
    tail = (url.raw_path.decode(errors="replace") or "/")[-4:]
    return f"{url.scheme}://{url.host}{f':{url.port}' if url.port else ''}/…{tail}"


def post_webhook(url: str, payload: dict, timeout: float = 10.0) -> None:
    """POST ``payload`` as JSON to ``url`` (Slack-compatible: ``{"text": "..."}``). Raises
    :class:`DeliveryError` with the host and the reason on a connection error, a timeout or
    an answer other than 2xx (with the start of its body)."""
    import httpx

    if not is_webhook(url):
        raise ValueError(f"a webhook is an http:// or https:// URL, not {url!r}")
    host = httpx.URL(url).host
    try:
        response = httpx.post(url, json=payload, timeout=timeout)
    except httpx.HTTPError as error:
        raise DeliveryError(f"webhook {host}: {type(error).__name__}: {error}") from error
    if not 200 <= response.status_code < 300:
        body = " ".join(response.text.split())[:200]
        raise DeliveryError(f"webhook {host} answered {response.status_code}: {body}")


# ---------------------------------------------------------------- the record of attempts

_engines: dict[str, sa.Engine] = {}
_created: dict[str, frozenset[str]] = {}  # the tables created per app database
_engines_lock = threading.Lock()


def app_engine(url: str | None = None) -> sa.Engine:
    """The engine of the app database for the CRM database ``url`` (see the module
    docstring), with every table of :data:`metadata` created — ``app_deliveries`` and those
    of the modules imported so far (alerts, reports): a module imported after the first call
    gets its tables on the next one; one engine per database and process."""
    from crm_data.accounts import auth_url, make_auth_engine
    from crm_data.engines import database_url

    target = auth_url(database_url(url))
    with _engines_lock:
        engine = _engines.get(target)
        if engine is None:
            engine = _engines[target] = make_auth_engine(target)
        wanted = frozenset(metadata.tables)
        if not wanted <= _created.get(target, frozenset()):
            with engine.begin() as conn:
                metadata.create_all(conn, checkfirst=True)
            _created[target] = wanted
    return engine


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def record_attempt(
    kind: str,
    target: str,
    recipient: str,
    attempt: int,
    error: str | None,
    *,
    url: str | None = None,
) -> None:
    """Write one attempt (``error`` None: it succeeded) to ``app_deliveries``."""
    if kind not in KINDS:
        raise ValueError(f"unknown delivery kind {kind!r}: one of {', '.join(KINDS)}")
    with app_engine(url).begin() as conn:
        conn.execute(
            app_deliveries.insert().values(
                delivery_id=uuid.uuid4().hex,
                attempted_at=_now(),
                kind=kind,
                target=target[:254],
                recipient=recipient[:1000],
                attempt=attempt,
                ok=error is None,
                error=error or "",
            )
        )


def deliver(
    kind: str,
    target: str,
    recipient: str,
    send: Callable[[], None],
    *,
    attempts: int = ATTEMPTS,
    wait: Callable[[float], None] = time.sleep,
    url: str | None = None,
) -> bool:
    """Call ``send()`` until it returns without an exception, at most ``attempts`` times,
    waiting ``BACKOFF_SECONDS · 2^(n−1)`` seconds (through ``wait``) after failed attempt n;
    every attempt is recorded in ``app_deliveries`` (``kind`` ``alert``/``report``,
    ``target``: what is delivered, unique per thing to send, e.g. ``"alert 3 2026-11-01"``;
    ``recipient``: the address or webhook URL). True when delivered, False when every
    attempt failed (the last error recorded; :func:`undelivered` lists it for the next run).
    ``url``: the CRM database (default: ``$CRM_DATABASE_URL`` or the embedded file)."""
    if kind not in KINDS:
        raise ValueError(f"unknown delivery kind {kind!r}: one of {', '.join(KINDS)}")
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    app_engine(url)  # fail on an unusable app database before sending anything
    for attempt in range(1, attempts + 1):
        try:
            send()
        except Exception as error:  # recorded, retried; the last one is kept as the failure
            text = str(error) if isinstance(error, DeliveryError) else f"{type(error).__name__}: {error}"
            record_attempt(kind, target, recipient, attempt, text or type(error).__name__, url=url)
            if attempt < attempts:
                wait(BACKOFF_SECONDS * 2 ** (attempt - 1))
            continue
        record_attempt(kind, target, recipient, attempt, None, url=url)
        return True
    return False


def delivered(kind: str, target: str, recipient: str, *, url: str | None = None) -> bool:
    """True when ``target`` reached ``recipient`` once (any successful attempt recorded)."""
    d = app_deliveries.c
    with app_engine(url).connect() as conn:
        row = conn.execute(
            sa.select(d.delivery_id)
            .where(d.kind == kind, d.target == target[:254], d.recipient == recipient[:1000], d.ok)
            .limit(1)
        ).first()
    return row is not None


def delivered_pairs(kind: str, *, url: str | None = None) -> set[tuple[str, str]]:
    """Every (target, recipient) of ``kind`` delivered once (one query, for a run's checks)."""
    d = app_deliveries.c
    with app_engine(url).connect() as conn:
        rows = conn.execute(sa.select(d.target, d.recipient).where(d.kind == kind, d.ok).distinct())
        return {(r.target, r.recipient) for r in rows}


def undelivered(kind: str, *, url: str | None = None) -> list[tuple[str, str]]:
    """The (target, recipient) pairs of ``kind`` that were attempted and never succeeded,
    oldest first: what the next run must send again."""
    d = app_deliveries.c
    s = app_deliveries.alias("s")
    succeeded = sa.select(s.c.delivery_id).where(
        s.c.kind == d.kind, s.c.target == d.target, s.c.recipient == d.recipient, s.c.ok
    )
    statement = (
        sa.select(d.target, d.recipient, sa.func.min(d.attempted_at).label("first"))
        .where(d.kind == kind, ~sa.exists(succeeded))
        .group_by(d.target, d.recipient)
        .order_by(sa.func.min(d.attempted_at), d.target, d.recipient)
    )
    with app_engine(url).connect() as conn:
        return [(r.target, r.recipient) for r in conn.execute(statement)]


def deliveries(
    *, kind: str | None = None, target_prefix: str | None = None, limit: int = 1000, url: str | None = None
) -> pd.DataFrame:
    """The newest ``limit`` attempts (newest first): attempted_at, kind, target, recipient,
    attempt, ok, error."""
    columns = ["attempted_at", "kind", "target", "recipient", "attempt", "ok", "error"]
    d = app_deliveries.c
    statement = sa.select(*(d[c] for c in columns)).order_by(d.attempted_at.desc()).limit(limit)
    if kind is not None:
        statement = statement.where(d.kind == kind)
    if target_prefix is not None:
        statement = statement.where(d.target.startswith(target_prefix, autoescape=True))
    with app_engine(url).connect() as conn:
        rows = conn.execute(statement).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    frame["ok"] = frame["ok"].astype(bool)
    return frame
