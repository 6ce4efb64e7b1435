"""Browser benchmark: time from a filter change to the Overview redrawn, in a real browser.

    python -m benchmarks.browser [--size M] [--runs 5]

Starts ``streamlit run dashboard.py`` (headless, 127.0.0.1, a free port) on the benchmark's
DuckDB (``benchmarks/data/<size>.duckdb``, built by ``python -m benchmarks``), opens the
Overview in Debian's chromium driven by Playwright (the launch arguments of the browser
tests), and for each run picks a different value in the sidebar's Region filter — a filter
combination the server has not computed yet, so nothing comes from its KPI cache — and
measures from the click on the option until the script run has finished and every card
and chart of the page is drawn again. Then it clears the filter (not timed). Prints the
median, min and max in ms and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

HERE = Path(__file__).resolve().parent
SIDEBAR = '[data-testid="stSidebar"]'
APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
WATCH_RUNS = """() => {
    window.__runs = 0;
    const app = document.querySelector('[data-testid="stApp"]');
    new MutationObserver(() => {
        if (app.getAttribute('data-test-script-state') === 'running') window.__runs += 1;
    }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
DRAWN = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (window.__runs < 1 || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (document.querySelector('[data-stale="true"]')) return false;
    const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]');
    const drawn = document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg');
    return drawn.length >= charts.length;
}"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(database: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {
        **os.environ,
        "CRM_DATABASE_URL": f"duckdb:///{database}",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    command = [
        sys.executable, "-m", "streamlit", "run", "dashboard.py",
        "--server.address", "127.0.0.1", "--server.port", str(port),
        "--server.headless", "true", "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=HERE.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return process, base
        except OSError:
            time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    raise SystemExit("streamlit did not start within 120 s")


def _wait_idle(page) -> None:
    page.wait_for_selector(APP_IDLE, timeout=120_000)
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=120_000)


def _widget(page, label: str):
    return page.locator(f'{SIDEBAR} [data-testid="stMultiSelect"]').filter(has_text=label).first


def _change(page, action) -> float:
    """Run ``action`` (a widget change); seconds until the page is redrawn."""
    page.evaluate(WATCH_RUNS)
    began = time.perf_counter()
    action()
    page.wait_for_function(DRAWN, timeout=120_000, polling="raf")
    return time.perf_counter() - began


def measure(database: Path, runs: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    from crm_data.engines import make_engine
    from kpis.filters import dimension_values

    engine = make_engine(f"duckdb:///{database}", read_only=True)
    values = dimension_values(engine)
    engine.dispose()
    # single-value filters, each a combination the server has not computed before
    choices = [
        (label, value)
        for label, name in [("Region", "regions"), ("Industry", "industries"), ("Segment", "segments")]
        for value in values[name]
    ]
    if len(choices) < runs + 1:
        raise SystemExit(
            f"only {len(choices)} distinct filter values: use --runs {len(choices) - 1} or fewer"
        )
    process, base = _start_server(database)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(120_000)
            page.goto(base)
            _wait_idle(page)
            times = []
            for run in range(runs + 1):  # the first change warms the server's code paths up
                label, value = choices[run]
                _widget(page, label).locator("input").click()

                def pick(value: str = value) -> None:
                    page.get_by_role("option", name=value, exact=True).click()
                    page.keyboard.press("Escape")

                took = _change(page, pick)
                if run:
                    times.append(took)
                    print(f"  {label} = {value}: {took * 1000:.0f} ms", flush=True)

                def clear(label: str = label) -> None:
                    _widget(page, label).locator("input").click()
                    page.keyboard.press("Backspace")  # removes the chosen region
                    page.keyboard.press("Escape")

                _change(page, clear)
            browser.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="M")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    database = HERE / "data" / f"{args.size}.duckdb"
    if not database.exists():
        raise SystemExit(f"{database} does not exist: run `python -m benchmarks --sizes {args.size}` first")
    times = measure(database, args.runs)
    median = statistics.median(times)
    print(
        f"{args.size}: filter change -> Overview redrawn: median {median * 1000:.0f} ms "
        f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, {len(times)} runs)"
    )
    print(json.dumps({"size": args.size, "median_s": median, "runs": len(times), "times_s": times}))


if __name__ == "__main__":
    main()
