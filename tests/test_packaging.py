"""The package as a user installs it: ``pip install .`` (not editable) into a fresh virtual
environment, then used from outside the checkout.

The environment is made without ``--system-site-packages``, so a dependency missing from
requirements.txt (the package's dependencies) fails here, and every dependency is
installed: measured at 41-53 s on this machine (pip installing from its local wheel folder),
below the ~90 s that would have justified reusing the test environment's packages with
``--no-deps``. One environment serves the whole module.

pip builds a wheel in the folder it installs from (``build/``, ``*.egg-info``); it gets a
copy of what pyproject.toml declares, so the checkout is left alone and a file the
package needs but does not declare is missing here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.crm_data.test_cli import _first_run
from tests.servers import free_port, stop_process_group, wait_healthy

pytestmark = pytest.mark.slow

INSTALL_TIMEOUT = 1200
#: no .pyc for the dependencies' modules (Python compiles what the tests import as they import
#: it); pip installs the same files otherwise
NO_COMPILE = ["--no-compile"]
MAPPINGS = sorted(path.name for path in (ROOT / "crm_data" / "mappings").glob("*.toml"))
PAGES = sorted(path.name for path in (ROOT / "pages").glob("*.py"))


@dataclass
class Installed:
    venv: Path
    site_packages: Path
    elsewhere: Path  # a working directory outside the checkout
    xdg_data_home: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CRM_DATABASE_URL", "VIRTUAL_ENV")
        }
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["XDG_DATA_HOME"] = str(self.xdg_data_home)
        env.update(extra)
        return env

    def run(self, *command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command), cwd=self.elsewhere, env=self.env(), capture_output=True, text=True, timeout=timeout
        )


def _copy_declared_sources(target: Path) -> None:
    """Copy pyproject.toml and what it declares: py-modules, packages, readme, requirement files."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    files = ["pyproject.toml", project["project"]["readme"]]
    files += [f"{module}.py" for module in setuptools["py-modules"]]
    files += project["tool"]["setuptools"]["dynamic"]["dependencies"]["file"]
    target.mkdir(parents=True)
    for name in files:
        shutil.copy2(ROOT / name, target / name)
    for top in sorted({package.split(".")[0] for package in setuptools["packages"]}):
        shutil.copytree(ROOT / top, target / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    _copy_declared_sources(source)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *NO_COMPILE, str(source)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    assert install.returncode == 0, install.stderr[-5000:]
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return Installed(venv, Path(purelib), elsewhere, root / "xdg")


def test_the_package_ships_the_dashboard_pages_config_and_mappings(installed: Installed) -> None:
    site = installed.site_packages
    assert (site / "dashboard.py").is_file()
    assert sorted(path.name for path in (site / "pages").glob("*.py")) == PAGES
    assert (site / "ui" / "streamlit_config.toml").is_file()
    assert (site / "ui" / "serve.py").is_file()
    assert sorted(path.name for path in (site / "crm_data" / "mappings").glob("*.toml")) == MAPPINGS
    assert not (site / "tests").exists()


def test_the_packages_import_from_another_directory(installed: Installed) -> None:
    code = (
        "import crm_data, kpis, forecasting, forecasting.models, charts, ui\n"
        "import crm_data.cli, crm_data.demo, crm_data.importing, kpis.rollups, charts.figures, ui.serve\n"
        "import delivery.alerts, delivery.channels, delivery.reports, delivery.render, charts.slides\n"
        "from crm_data.engines import default_db_path, is_source_checkout\n"
        "from crm_data.mappings import SHIPPED\n"
        "print(crm_data.__file__)\n"
        "print(is_source_checkout())\n"
        "print(default_db_path())\n"
        "print(ui.serve.dashboard_script())\n"
        "print(ui.serve.CONFIG_FILE)\n"
        "print(','.join(SHIPPED))\n"
    )
    result = installed.run(installed.bin("python"), "-c", code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    site = installed.site_packages
    assert lines[0] == str(site / "crm_data" / "__init__.py")  # not the checkout's
    assert lines[1] == "False"
    assert lines[2] == str(installed.xdg_data_home / "crm-insights" / "crm.duckdb")
    assert lines[3] == str(site / "dashboard.py")
    assert lines[4] == str(site / "ui" / "streamlit_config.toml")
    assert lines[5].split(",") == [Path(name).stem for name in MAPPINGS]


def test_the_console_script_and_python_m(installed: Installed) -> None:
    script = installed.run(installed.bin("crm-insights"), "--help")
    assert script.returncode == 0, script.stderr
    assert script.stdout.startswith("usage: crm-insights [-h] COMMAND")
    module = installed.run(installed.bin("python"), "-m", "crm_data", "--help")
    assert module.returncode == 0, module.stderr
    assert module.stdout.startswith("usage: python -m crm_data [-h] COMMAND")
    mappings = installed.run(installed.bin("crm-insights"), "import", "--help")
    assert ", ".join(Path(name).stem for name in MAPPINGS) in " ".join(mappings.stdout.split())


def test_demo_check_and_rollups_on_a_url(installed: Installed) -> None:
    url = f"duckdb:///{installed.elsewhere / 'x.duckdb'}"
    demo = installed.run(installed.bin("crm-insights"), "demo", "--accounts", "50", "--url", url, "--quiet")
    assert demo.returncode == 0, demo.stderr
    assert f"demo data written to {url}" in demo.stdout
    check = installed.run(installed.bin("crm-insights"), "check", "--url", url)
    assert check.returncode == 0, check.stderr
    assert "checks found problems" in check.stdout  # the demo's injected problems
    rollups = installed.run(installed.bin("crm-insights"), "rollups", "--url", url)
    assert rollups.returncode == 0, rollups.stderr


def test_the_default_database_lives_in_xdg_data_home_and_serve_uses_it(installed: Installed) -> None:
    default = installed.xdg_data_home / "crm-insights" / "crm.duckdb"
    cli = installed.bin("crm-insights")

    serve = installed.run(cli, "serve")
    assert serve.returncode == 2, serve.stderr
    assert f"there is no database yet at {default}" in serve.stderr
    assert "`crm-insights demo`" in serve.stderr
    check = installed.run(cli, "check")
    assert check.returncode == 2
    assert f"no database at {default}: run `crm-insights demo` first" in check.stderr
    assert not default.exists()

    demo = installed.run(cli, "demo", "--accounts", "50", "--quiet")
    assert demo.returncode == 0, demo.stderr
    assert default.is_file()
    assert not (installed.elsewhere / "data").exists()
    assert not (installed.site_packages / "data").exists()

    port = free_port()
    log = installed.elsewhere / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [cli, "serve", "--port", str(port)],
            cwd=installed.elsewhere,
            env=installed.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process, log)
        session, texts, _ = _first_run(port)
    finally:
        stop_process_group(process, timeout=30)
    assert session is not None
    assert session.main_script_path == str(installed.site_packages / "dashboard.py")
    assert session.config.hide_sidebar_nav is True  # ui/streamlit_config.toml, shipped
    assert "Overview" in texts
    assert f"Read-only connection to `duckdb:///{default}`." in texts
