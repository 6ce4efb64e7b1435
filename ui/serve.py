"""``crm-insights serve``: start the dashboard with Streamlit, from any working directory.

``streamlit run dashboard.py`` reads the look of the app (theme, hidden page list, viewer
toolbar) from ``.streamlit/config.toml`` of the *working directory*, which an installed
package does not have. ``serve`` therefore

* finds ``dashboard.py`` with importlib (the ``dashboard`` module is installed beside this
  package; in a source checkout it is the project folder's file);
* reads every option of ``ui/streamlit_config.toml`` (shipped with the package) and hands
  them to Streamlit as command-line flags would, plus ``server.address`` and
  ``server.port``: flags win over any config.toml found on the way;
* passes ``--url`` to the app as ``CRM_DATABASE_URL`` (the server runs in this process);
* refuses to start an empty dashboard: without ``--url`` or ``CRM_DATABASE_URL`` and
  without the default embedded database file, it says to run ``crm-insights demo``;
* refuses to listen on anything but a loopback address (``--address 0.0.0.0``) while no
  sign-in is configured — no account in the app tables (``crm-insights users add``) and
  no ``[auth]`` section in the secrets — and says how to configure it;
  ``--allow-anonymous`` overrides (``CRM_ALLOW_ANONYMOUS=1`` for the app, see ui/auth.py);
* secrets (single sign-on's ``[auth]``): Streamlit reads ``.streamlit/secrets.toml`` of
  the *working directory* the command runs in (the server keeps it; ``serve`` does not
  change directory), then ``~/.streamlit/secrets.toml``; ``--secrets FILE`` names the
  file instead (Streamlit's ``secrets.files`` option).
* refuses to start on a database that cannot be used at all (a damaged or foreign file, a
  folder, a PostgreSQL server, database or role that cannot be reached): it reads what
  every page reads first (the filter bar's values) and prints the sentence of
  ``crm_data.engines.explain_database_error`` (exit code 2).

Streamlit is started through ``streamlit.web.bootstrap`` (what ``streamlit run`` calls:
``load_config_options`` then ``run``), so it runs until Ctrl+C.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from crm_data.engines import default_db_path

#: Streamlit's options for the dashboard, shipped with the package (``.streamlit/config.toml``
#: of a checkout links to it).
CONFIG_FILE = Path(__file__).resolve().with_name("streamlit_config.toml")
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 8501


def dashboard_script() -> Path:
    """The file of the ``dashboard`` module installed with this package.

    importlib finds it (in ``site-packages``, or the checkout through an editable install);
    a different ``dashboard`` module that comes first on ``sys.path`` (``python -m`` run
    in a folder with its own ``dashboard.py``) is passed over for the one beside ``ui``.
    """
    home = Path(__file__).resolve().parent.parent
    spec = importlib.util.find_spec("dashboard")
    if spec is not None and spec.origin and Path(spec.origin).resolve().parent == home:
        return Path(spec.origin).resolve()
    beside = home / "dashboard.py"
    if beside.is_file():
        return beside
    raise FileNotFoundError(f"dashboard.py is not installed beside {home / 'ui'}: reinstall crm-insights")


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):  # a sub-section such as [theme.sidebar]
            options.update(_flatten(value, f"{key}."))
        else:
            options[key] = value
    return options


def flag_options(
    address: str = DEFAULT_ADDRESS, port: int = DEFAULT_PORT, config_file: Path = CONFIG_FILE
) -> dict[str, Any]:
    """Streamlit's options as ``streamlit run`` flags set them (``{"theme.base": "light",
    ...}``): every option of ``config_file``, then ``server.address`` and ``server.port``."""
    with config_file.open("rb") as handle:
        options = _flatten(tomllib.load(handle))
    options["server.address"] = address
    options["server.port"] = port
    return options


def missing_database(url: str | None = None) -> Path | None:
    """The default embedded database file when the dashboard would read it (no ``url``,
    no ``CRM_DATABASE_URL``) and it does not exist; else None."""
    if url or os.environ.get("CRM_DATABASE_URL"):
        return None
    path = default_db_path()
    return None if path.exists() else path


def secrets_files(secrets: str | None = None) -> list[Path]:
    """The secrets files Streamlit will read: ``secrets``, else its defaults
    (``~/.streamlit/secrets.toml``, then ``.streamlit/secrets.toml`` of the working directory)."""
    if secrets:
        return [Path(secrets).expanduser().resolve()]
    return [Path.home() / ".streamlit" / "secrets.toml", Path.cwd() / ".streamlit" / "secrets.toml"]


def oidc_configured(files: list[Path]) -> bool:
    """True when one of ``files`` has an ``[auth]`` section with what st.login needs."""
    for path in files:
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            auth = tomllib.load(handle).get("auth") or {}
        if auth.get("redirect_uri") and auth.get("cookie_secret"):
            return True
    return False


def accounts_configured(url: str | None) -> bool:
    """True when the dashboard's database has at least one sign-in account."""
    from crm_data.accounts import AccountStore
    from crm_data.engines import database_url

    store = AccountStore.open(database_url(url))
    try:
        return store.any_accounts()
    finally:
        store.dispose()


def loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost (not for unset: Streamlit then listens
    everywhere). The one rule for anonymous use: here before starting, in ``ui.auth`` in
    the app (this module imports no Streamlit, so ``serve`` can refuse quietly)."""
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def unusable_database(url: str | None = None, prog: str = "crm-insights") -> str | None:
    """What is wrong, in one sentence, when the dashboard could not read the database at
    all; None when it can start (it says itself that a database is missing, has no CRM
    tables or is busy).

    It reads what every page reads first (the filter bar's values and date range), so a
    damaged DuckDB file is found when that data is damaged; damage elsewhere in the file
    shows on the pages that read it.
    """
    from crm_data.engines import database_url, explain_database_error, make_engine
    from kpis.filters import data_date_range, dimension_values

    url = database_url(url)
    try:
        engine = make_engine(url, read_only=True)
    except FileNotFoundError:
        return None
    try:
        with engine.connect() as conn:
            dimension_values(conn)
            data_date_range(conn)
    except Exception as error:  # the app reports anything not explained here itself
        return explain_database_error(error, url, prog)
    finally:
        engine.dispose()  # release the DuckDB file before the app opens it
    return None


def serve(
    url: str | None = None,
    address: str = DEFAULT_ADDRESS,
    port: int = DEFAULT_PORT,
    prog: str = "crm-insights",
    allow_anonymous: bool = False,
    secrets: str | None = None,
) -> int:
    """Run the dashboard until it is stopped; returns the exit code (2: no database yet, one
    that cannot be used, or no sign-in configured for a network address).

    ``url`` (else ``CRM_DATABASE_URL``, else the embedded DuckDB file) is the database the
    app reads; ``prog`` is how the user calls the command line, for the advice printed.
    """
    missing = missing_database(url)
    if missing is not None:
        print(
            f"error: there is no database yet at {missing}: create the demo database with "
            f"`{prog} demo` (or load your data with `{prog} import PATH`), then run `{prog} serve` "
            "again; or point the dashboard at a database with --url or CRM_DATABASE_URL.",
            file=sys.stderr,
        )
        return 2
    files = secrets_files(secrets)
    if secrets and not files[0].is_file():
        print(f"error: no secrets file at {files[0]}", file=sys.stderr)
        return 2
    if not (loopback(address) or allow_anonymous or oidc_configured(files) or accounts_configured(url)):
        print(
            f"error: refusing to listen on {address} without sign-in: anyone who reaches the port "
            "would see all data and could import. Configure sign-in first:\n"
            f"  built-in accounts: `{prog} users add NAME --role admin` (asks for a password), then "
            "viewers and analysts with their scope, e.g. "
            f"`{prog} users add rm-emea --role viewer --region EMEA`;\n"
            "  single sign-on: an [auth] section (redirect_uri, cookie_secret, client_id, client_secret, "
            "server_metadata_url) in .streamlit/secrets.toml of this directory or --secrets FILE, and "
            f"`{prog} users add EMAIL --sso --role viewer` per person.\n"
            f"Or listen on 127.0.0.1 only; or, to serve everyone without sign-in anyway, add --allow-anonymous.",
            file=sys.stderr,
        )
        return 2
    problem = unusable_database(url, prog)
    if problem is not None:
        print(f"error: {problem[:1].lower()}{problem[1:]}", file=sys.stderr)
        return 2
    if url:
        os.environ["CRM_DATABASE_URL"] = url  # read by crm_data.engines.database_url in the app
    if allow_anonymous:
        os.environ["CRM_ALLOW_ANONYMOUS"] = "1"  # read by ui.auth.anonymous_allowed in the app
    script = dashboard_script()
    options = flag_options(address, port)
    if secrets:
        options["secrets.files"] = [str(f) for f in files]

    from streamlit.web import bootstrap

    bootstrap.load_config_options(flag_options=options)
    bootstrap.run(str(script), False, [], options)
    return 0
