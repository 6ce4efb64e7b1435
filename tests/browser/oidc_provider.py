"""A small, real OpenID Connect provider for the browser tests (authorization code flow).

Not a mock of Streamlit's login: Streamlit's own ``st.login`` (Authlib) talks to it over
HTTP exactly as to Google or Okta — discovery document, authorization redirect with
``state`` and ``nonce`` (and PKCE when sent), a login form in the browser, the code
exchanged at the token endpoint with the client secret, an RS256-signed ID token checked
against the JWKS, userinfo.

    provider = OidcProvider(users={"alice@example.com": "her password"}, client_id="crm",
                            client_secret="s3cret", redirect_uris=["http://127.0.0.1:8501/oauth2callback"])
    provider.start()          # a thread on 127.0.0.1:<free port>; provider.issuer is its URL
    ...
    provider.stop()

Users sign in with their e-mail address and password on ``/authorize``; the ID token
carries ``email``, ``email_verified`` (true) and ``name``. Codes are single-use and live
60 seconds. ``python -m tests.browser.oidc_provider --port 9400 --user alice@example.com=pw
--client crm:secret --redirect http://127.0.0.1:8501/oauth2callback`` runs it by hand.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from joserfc import jwt
from joserfc.jwk import RSAKey

CODE_LIFETIME = 60
TOKEN_LIFETIME = 3600


class OidcProvider:
    """An OpenID Connect provider on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        users: dict[str, str],
        client_id: str,
        client_secret: str,
        redirect_uris: list[str],
        port: int = 0,
    ) -> None:
        self.users = {k.lower(): v for k, v in users.items()}
        self.client_id, self.client_secret = client_id, client_secret
        self.redirect_uris = list(redirect_uris)
        self.key = RSAKey.generate_key(
            2048, parameters={"kid": secrets.token_hex(4), "use": "sig", "alg": "RS256"}
        )
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}
        self.logins: list[str] = []  # who signed in, in order (for the tests)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread: threading.Thread | None = None

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def start(self) -> OidcProvider:
        self._thread = threading.Thread(target=self.server.serve_forever, name="oidc-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---------------------------------------------------------------- protocol

    def metadata(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "email", "email_verified", "name"],
        }

    def claims(self, email: str) -> dict:
        return {"sub": hashlib.sha256(email.encode()).hexdigest()[:16], "email": email, "email_verified": True,
                "name": email.split("@")[0].title()}  # fmt: skip

    def issue_code(self, request: dict, email: str) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self.codes[code] = {**request, "email": email, "expires": time.time() + CODE_LIFETIME}
            self.logins.append(email)
        return code

    def exchange(self, form: dict, authorization: str | None) -> tuple[int, dict]:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, client_secret = (urllib.parse.unquote(p) for p in decoded.partition(":"))
        if client_id != self.client_id or not secrets.compare_digest(client_secret or "", self.client_secret):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            grant = self.codes.pop(form.get("code", ""), None)  # single use
        if grant is None or grant["expires"] < time.time() or grant["client_id"] != client_id:
            return 400, {"error": "invalid_grant"}
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
        challenge = grant.get("code_challenge")
        if challenge:
            verifier = form.get("code_verifier", "")
            digest = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            )
            if digest != challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE"}
        now = int(time.time())
        claims = {**self.claims(grant["email"]), "iss": self.issuer, "aud": client_id, "iat": now,
                  "exp": now + TOKEN_LIFETIME, "auth_time": now}  # fmt: skip
        if grant.get("nonce"):
            claims["nonce"] = grant["nonce"]
        id_token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)
        access_token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[access_token] = self.claims(grant["email"])
        return 200, {"access_token": access_token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME,
                     "id_token": id_token, "scope": grant.get("scope", "openid")}  # fmt: skip

    def check_request(self, query: dict) -> str | None:
        """None when an authorization request is acceptable, else the reason."""
        if query.get("client_id") != self.client_id:
            return "unknown client_id"
        if query.get("redirect_uri") not in self.redirect_uris:
            return "redirect_uri not registered"
        if query.get("response_type") != "code":
            return "only response_type=code"
        if "openid" not in query.get("scope", "").split():
            return "scope must include openid"
        return None


LOGIN_PAGE = """<!doctype html><html><head><title>Test identity provider</title></head><body>
<h1>Test identity provider</h1>{error}
<form method="post" action="/authorize">{hidden}
<label>E-mail <input name="username" id="username" autocomplete="username"></label>
<label>Password <input name="password" id="password" type="password"></label>
<button type="submit" id="submit">Sign in</button></form></body></html>"""

REQUEST_FIELDS = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge",
                  "code_challenge_method")  # fmt: skip


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

        def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: dict) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def _form(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            return dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))

        def _login_page(self, request: dict, error: str = "") -> None:
            hidden = "".join(
                f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in request.items() if v
            )
            text = LOGIN_PAGE.format(
                hidden=hidden, error=f'<p id="error">{html.escape(error)}</p>' if error else ""
            )
            self._send(200, text.encode(), "text/html; charset=utf-8")

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/.well-known/openid-configuration":
                self._json(200, provider.metadata())
            elif url.path == "/jwks":
                self._json(200, {"keys": [provider.key.as_dict(private=False)]})
            elif url.path == "/authorize":
                problem = provider.check_request(query)
                if problem:
                    self._send(400, problem.encode(), "text/plain")
                else:
                    self._login_page({k: query.get(k, "") for k in REQUEST_FIELDS})
            elif url.path == "/userinfo":
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                claims = provider.tokens.get(token)
                self._json(200, claims) if claims else self._json(401, {"error": "invalid_token"})
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            form = self._form()
            if url.path == "/token":
                status, body = provider.exchange(form, self.headers.get("Authorization"))
                self._json(status, body)
                return
            if url.path != "/authorize":
                self._send(404, b"not found", "text/plain")
                return
            request = {k: form.get(k, "") for k in REQUEST_FIELDS}
            problem = provider.check_request(request)
            if problem:
                self._send(400, problem.encode(), "text/plain")
                return
            email = form.get("username", "").strip().lower()
            expected = provider.users.get(email)
            if expected is None or not secrets.compare_digest(expected, form.get("password", "")):
                self._login_page(request, "Wrong e-mail or password.")
                return
            code = provider.issue_code(request, email)
            target = (
                request["redirect_uri"]
                + "?"
                + urllib.parse.urlencode({"code": code, "state": request["state"]})
            )
            self._send(302, b"", "text/plain", {"Location": target})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--user", action="append", default=[], metavar="EMAIL=PASSWORD")
    parser.add_argument("--client", default="crm-insights:secret", metavar="ID:SECRET")
    parser.add_argument("--redirect", action="append", default=[], metavar="URI")
    args = parser.parse_args()
    users = dict(u.split("=", 1) for u in args.user)
    client_id, _, client_secret = args.client.partition(":")
    provider = OidcProvider(users, client_id, client_secret, args.redirect, port=args.port)
    print(f"issuer {provider.issuer}; server_metadata_url {provider.metadata_url}", flush=True)
    provider.server.serve_forever()


if __name__ == "__main__":
    main()
