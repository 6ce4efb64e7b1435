"""Real servers for the delivery tests: an SMTP server (aiosmtpd, optionally with STARTTLS
and a self-signed certificate made here) and an HTTP server receiving webhooks."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.servers import free_port


def self_signed_cert(folder: Path, host: str = "localhost") -> tuple[Path, Path]:
    """A certificate for ``host`` (and 127.0.0.1) and its key, as PEM files in ``folder``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Received:
    """What the SMTP server received: one entry per message."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)
    fail_next: int = 0  # answer this many DATA commands with 451


class _Handler:
    def __init__(self, received: Received) -> None:
        self.received = received

    async def handle_DATA(self, server, session, envelope):
        if self.received.fail_next > 0:
            self.received.fail_next -= 1
            return "451 4.3.0 try again later"
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        self.received.messages.append(message)
        self.received.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        transport = getattr(server, "transport", None)
        implicit = transport is not None and transport.get_extra_info("ssl_object") is not None
        self.received.tls.append(session.ssl is not None or implicit)
        return "250 OK"


def _authenticator(user: str, password: str):
    def check(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (user, password)
        return AuthResult(success=ok, handled=False)

    return check


@contextmanager
def smtp_server(
    folder: Path | None = None, *, user: str = "", password: str = "", implicit_tls: bool = False
) -> Iterator[tuple[int, Received]]:
    """An SMTP server on 127.0.0.1 (a free port): with STARTTLS (required) when ``folder``
    is given (its certificate written there as cert.pem) — or TLS from the start with
    ``implicit_tls`` —, with AUTH LOGIN/PLAIN when ``user`` is given (only over TLS)."""
    received = Received()
    port = free_port()
    kwargs: dict = {}
    if folder is not None:
        cert, key = self_signed_cert(folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        if implicit_tls:  # SMTPS: TLS from the first byte
            kwargs.update(ssl_context=context)
        else:
            kwargs.update(tls_context=context, require_starttls=True)
    if user:
        kwargs.update(authenticator=_authenticator(user, password), auth_required=True)
    if not user or implicit_tls:  # aiosmtpd counts only STARTTLS as TLS for AUTH
        kwargs.update(auth_require_tls=False)
    controller = Controller(_Handler(received), hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


@dataclass
class Hooks:
    """What the webhook server received: the JSON bodies and paths."""

    bodies: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give next (default 200)


@contextmanager
def webhook_server() -> Iterator[tuple[str, Hooks]]:
    """An HTTP server on 127.0.0.1 recording POSTed JSON; yields its base URL."""
    hooks = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status = hooks.statuses.pop(0) if hooks.statuses else 200
            if status == 200:
                assert self.headers.get("Content-Type") == "application/json"
                hooks.bodies.append(json.loads(body))
                hooks.paths.append(self.path)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            answer = b"ok" if status == 200 else b"invalid_token"
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hooks
    finally:
        server.shutdown()
        server.server_close()
