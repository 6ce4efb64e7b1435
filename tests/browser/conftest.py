"""Real-browser fixtures: ``streamlit run dashboard.py`` on 127.0.0.1 against a small demo
database, driven by Playwright with Debian's chromium.

* ``browser_demo_url`` (session): a DuckDB file with ``crm_data.demo.generate`` (400 accounts).
* ``dashboard_url`` (session): the base URL of a Streamlit server started for this session
  (``--server.headless true`` on a free port, ``CRM_DATABASE_URL`` = the demo file), ready
  once ``/_stcore/health`` answers ``ok``; stopped (its process group) at the end.
* ``browser`` (session) / ``page`` (function): chromium via ``executable_path`` (no
  downloaded browsers), a fresh context per test that accepts downloads.
* ``screenshot_dir``: ``test-artifacts/screenshots`` (or ``$CRM_SCREENSHOT_DIR``).
* ``signin_server`` (session, only for the sign-in tests): a second server, started with
  ``crm-insights serve --secrets`` from another directory, with accounts (``SIGNIN_USERS``)
  and single sign-on through a real local OpenID Connect provider.

Without chromium these tests skip with the reason; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import write_demo_database

PROJECT_ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = os.environ.get("CRM_CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEMO_ACCOUNTS = 400
DEMO_SEED = 11
SERVER_START_TIMEOUT = 120
VIEWPORT = {"width": 1440, "height": 1000}


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"chromium not found at {CHROMIUM}: install it with `apt-get install chromium`")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright Python package is not installed (pip install -r requirements-dev.txt)")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser_demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small demo DuckDB file for the server (written, then closed before the server starts)."""
    return write_demo_database(tmp_path_factory.mktemp("browser-demo"), DEMO_ACCOUNTS, DEMO_SEED)


def _wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.status == 200 and response.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(
        f"streamlit did not become healthy in {SERVER_START_TIMEOUT} s:\n{log.read_text()[-3000:]}"
    )


@pytest.fixture(scope="session")
def dashboard_url(
    chromium_executable: str, browser_demo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``python -m streamlit run dashboard.py`` on 127.0.0.1:<free port>; yields its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit-log") / "streamlit.log"
    env = {
        **os.environ,
        "CRM_DATABASE_URL": browser_demo_url,
        "CRM_CHROMIUM_PATH": chromium_executable,
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    command = [
        sys.executable, "-m", "streamlit", "run", "dashboard.py",
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, process, log)
        yield base
    finally:
        # the server and what it started (the export Chromium) share its own process group
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture(scope="session")
def browser(chromium_executable: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object, dashboard_url: str) -> Iterator[object]:
    context = browser.new_context(accept_downloads=True, viewport=VIEWPORT, base_url=dashboard_url)  # type: ignore[attr-defined]
    context.set_default_timeout(60_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    folder = Path(os.environ.get("CRM_SCREENSHOT_DIR", PROJECT_ROOT / "test-artifacts" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------- a server with sign-in

SIGNIN_PASSWORD = "browser test password"
#: (name, how, role, regions): the built-in account and the single sign-on user the browser
#: tests sign in as, each limited to one region of the demo data; and an admin.
SIGNIN_USERS = {
    "rm-emea": ("password", "viewer", ["EMEA"]),
    "alice@example.com": ("sso", "viewer", ["North America"]),
    "boss": ("password", "admin", []),
}
SSO_PASSWORD = "alice at the identity provider"


@dataclass
class SignInServer:
    """The dashboard with sign-in (``url``), its accounts database and the OIDC provider."""

    url: str
    auth_url: str
    provider: object


@pytest.fixture(scope="session")
def signin_server(
    chromium_executable: str, browser_demo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SignInServer]:
    """``crm-insights serve --secrets FILE`` (run from another directory) with built-in
    accounts and single sign-on through a real local OpenID Connect provider
    (tests/browser/oidc_provider.py); yields its URLs. Stopped at the end of the session."""
    from crm_data.accounts import AccountStore, make_auth_engine
    from tests.browser.oidc_provider import OidcProvider

    folder = tmp_path_factory.mktemp("signin")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    provider = OidcProvider(
        {"alice@example.com": SSO_PASSWORD, "mallory@example.com": SSO_PASSWORD},  # mallory: no account here
        "crm-insights",
        "client-secret-for-tests",
        [f"{base}/oauth2callback"],
    ).start()
    auth_url = f"sqlite:///{folder / 'auth.sqlite'}"
    store = AccountStore(make_auth_engine(auth_url))
    for name, (how, role, regions) in SIGNIN_USERS.items():
        scope = {"regions": regions} if regions else {}
        if how == "sso":
            store.add(name, role=role, scope=scope, sso=True, actor="test")
        else:
            store.add(name, role=role, scope=scope, password=SIGNIN_PASSWORD, actor="test")
    store.dispose()
    secrets = folder / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "{base}/oauth2callback"\n'
        'cookie_secret = "a-long-random-cookie-secret-for-the-browser-tests"\n'
        'client_id = "crm-insights"\n'
        'client_secret = "client-secret-for-tests"\n'
        f'server_metadata_url = "{provider.metadata_url}"\n'
    )
    log = folder / "serve.log"
    env = {
        **os.environ,
        "CRM_AUTH_DATABASE_URL": auth_url,
        "CRM_CHROMIUM_PATH": chromium_executable,
        "CRM_EXPORT_WARMUP": "0",
        "PYTHONPATH": str(PROJECT_ROOT),  # this checkout's packages, from another working directory
        "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",
    }
    env.pop("CRM_DATABASE_URL", None)
    env.pop("CRM_ALLOW_ANONYMOUS", None)
    command = [sys.executable, "-m", "crm_data", "serve", "--url", browser_demo_url, "--port", str(port),
               "--secrets", str(secrets)]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_healthy(base, process, log)
        yield SignInServer(base, auth_url, provider)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        provider.stop()
