"""Load benchmark: many concurrent sessions on one dashboard server, without a browser each.

    python -m benchmarks.load [--accounts 5000] [--sessions 1 5 10 20 40] [--runs 5]
                              [--browser-runs 3 | --no-browser] [--rebuild]

Builds a demo DuckDB as ``python -m benchmarks`` does (``benchmarks/data/load-<accounts>.duckdb``,
reused; ``--rebuild`` makes it anew) and starts ``streamlit run dashboard.py`` on it as
``python -m benchmarks.browser`` does. Each session is a light client speaking Streamlit's
own protocol on ``/_stcore/stream`` (protobuf ``BackMsg`` up, ``ForwardMsg`` down): it
connects, asks for a run of the Overview (a ``rerun_script`` BackMsg, as the browser sends on
load) and waits for ``script_finished``; then, per run, it changes the filters the way the
browser does — a rerun whose ``widget_states`` carry new values of the sidebar's Segment,
Region, Industry and Company size multiselects (a rerun with only another ``query_string``
would not change anything: the dashboard seeds its filters from the URL on a session's
first run only) — and times "rerun sent → script_finished" as the redraw time.

Per level N, the N sessions connect and load the Overview together, then change their
filters at the same moment, ``--runs`` times (a burst: the worst case for a server); every
change is a filter combination no one has asked for before in this run (3, then 4 of the 4
dimensions), so nothing comes from the server's KPI cache. Every run is checked: script
finished successfully, no exception element, no error box, as many metric cards as the
warm-up run, the "Overview" title, and a filter caption naming every chosen dimension.

Alongside, one real browser (Playwright + Debian's chromium, the browser benchmark's
helpers) changes a sidebar filter at the same moment as the light sessions in
``--browser-runs`` extra rounds per level: its click → Overview redrawn, next to the light
sessions' times in those same rounds, is the sanity check that rerun → script_finished is
what a person sees (the browser then also counts as one more session).

The server's resources come from ``/proc`` (Linux; psutil is not a dependency): peak RSS
of the server process (and the peak PSS of its process tree, which includes the export
chromium it starts, see ``ui.report.warm_export_server``), its CPU as % of one core (mean
over the timed rounds; peak over 0.5 s samples), the whole machine's busy CPU and this
client's own CPU. Ratios are against N=1 of the same run.
Prints a table and writes ``benchmarks/load-results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import logging
import math
import os
import platform
import queue
import random
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetStates

from benchmarks.__main__ import DATA, SEED, build
from benchmarks.browser import _change, _start_server, _wait_idle, _widget

# no "No runtime found" warnings for ui's st.cache_data outside a server (Streamlit gives
# each of its loggers a level of its own: the parent's level does not reach this one)
logging.getLogger("streamlit.runtime.caching.cache_data_api").setLevel(logging.ERROR)
from ui.filters import DIMENSIONS  # noqa: E402 - after silencing Streamlit's import-time warnings

HERE = Path(__file__).resolve().parent
OUT = HERE / "load-results.json"
LEVELS = (1, 5, 10, 20, 40)
DEFAULT_ACCOUNTS = 5_000
RUN_TIMEOUT = 300.0  # seconds for one run (connect, or rerun -> script_finished)
SAMPLE_EVERY = 0.5  # seconds between /proc samples of the server
#: The sidebar multiselects a light session changes (URL parameters = widget keys).
CHANGED = ("segment", "region", "industry", "company_size")
#: The filters the browser session picks from, one value at a time (as benchmarks.browser).
BROWSER_FILTERS = ("Region", "Industry", "Segment", "Country")
FILTER_CAPTION = ":material/filter_alt:"
LABELS = {param: label for _name, param, label in DIMENSIONS}
FIELDS = {param: name for name, param, _label in DIMENSIONS}


class ProtocolError(RuntimeError):
    """The light client could not talk to the server (connection, handshake or run)."""


# --- the light client ------------------------------------------------------------------


@dataclass
class Run:
    """One script run seen by a light session: its time and what the server sent."""

    seconds: float
    problems: list[str] = field(default_factory=list)
    messages: Counter = field(default_factory=Counter)  # ForwardMsg type -> count
    elements: Counter = field(default_factory=Counter)  # element type -> count
    titles: list[str] = field(default_factory=list)
    caption: str = ""  # the page's filter caption (View.describe())


class LightSession:
    """One dashboard session over ``/_stcore/stream`` without a browser."""

    def __init__(self, base: str, expected_metrics: int = 1, timeout: float = RUN_TIMEOUT) -> None:
        self.uri = base.replace("http://", "ws://", 1).rstrip("/") + "/_stcore/stream"
        self.expected_metrics = expected_metrics
        self.timeout = timeout
        self.widget_ids: dict[str, str] = {}  # widget key (URL parameter) -> widget id
        self.broken = False  # after a failed run the stream's state is unknown: not used again
        self._ws: Any = None

    async def open(self, query_string: str = "") -> Run:
        """Connect and run the Overview once (as a browser does on load); timed from the
        connection attempt. Raises ``ProtocolError`` when the handshake or the run fails."""
        began = time.perf_counter()
        try:
            self._ws = await asyncio.wait_for(
                websockets.connect(self.uri, subprotocols=["streamlit"], max_size=None, open_timeout=None),
                self.timeout,
            )
        except (OSError, TimeoutError, websockets.WebSocketException) as error:
            raise ProtocolError(f"could not open {self.uri}: {type(error).__name__}: {error}") from error
        if self._ws.subprotocol != "streamlit":
            raise ProtocolError(f"{self.uri} did not accept the 'streamlit' subprotocol")
        run = await self._run(query_string=query_string, began=began)
        if not run.messages["new_session"]:
            raise ProtocolError("the first run sent no new_session message: not a Streamlit session?")
        return run

    async def change(self, values: dict[str, list[str]]) -> Run:
        """Set the given multiselects (widget key -> values; the others in ``CHANGED`` are
        emptied) and time the rerun until ``script_finished``; checks the caption names
        every chosen dimension."""
        states = WidgetStates()
        for param in CHANGED:
            if param not in self.widget_ids:
                raise ProtocolError(f"the Overview drew no {LABELS[param]!r} multiselect")
            state = states.widgets.add()
            state.id = self.widget_ids[param]
            state.string_array_value.data.extend(values.get(param, []))
        run = await self._run(widget_states=states)
        for param, chosen in values.items():
            if chosen and f"{LABELS[param]}: " not in run.caption:
                run.problems.append(
                    f"the caption does not show the {LABELS[param]} filter: {run.caption[:160]!r}"
                )
        return run

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
            self._ws = None

    async def _run(
        self, *, query_string: str = "", widget_states: WidgetStates | None = None, began: float | None = None
    ) -> Run:
        message = BackMsg()
        message.rerun_script.query_string = query_string
        message.rerun_script.page_script_hash = ""  # the main page: dashboard.py
        if widget_states is not None:
            message.rerun_script.widget_states.CopyFrom(widget_states)
        if self.broken or self._ws is None:
            raise ProtocolError("session lost earlier")
        began = time.perf_counter() if began is None else began
        run = Run(seconds=0.0)
        try:
            await self._ws.send(message.SerializeToString())
            await asyncio.wait_for(self._receive(run), self.timeout)
        except TimeoutError as error:
            self.broken = True
            raise ProtocolError(f"no script_finished within {self.timeout:.0f} s") from error
        except websockets.ConnectionClosed as error:
            self.broken = True
            raise ProtocolError(f"the server closed the connection: {error}") from error
        except ProtocolError:
            self.broken = True
            raise
        run.seconds = time.perf_counter() - began
        return run

    async def _receive(self, run: Run) -> None:
        """Read ForwardMsgs until the run's ``script_finished``, noting what they drew."""
        while True:
            data = await self._ws.recv()
            if not isinstance(data, bytes):
                raise ProtocolError(f"expected a binary ForwardMsg, got text {data[:80]!r}")
            msg = ForwardMsg()
            msg.ParseFromString(data)
            kind = msg.WhichOneof("type")
            run.messages[kind] += 1
            if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                self._note_element(msg.delta.new_element, run)
            elif kind == "script_finished":
                status = msg.script_finished
                if status == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    continue  # a rerun the script asked for follows
                if status != ForwardMsg.FINISHED_SUCCESSFULLY:
                    run.problems.append(
                        f"script finished with {ForwardMsg.ScriptFinishedStatus.Name(status)}"
                    )
                break
        if run.elements["metric"] < self.expected_metrics:
            run.problems.append(f"{run.elements['metric']} metric cards, expected {self.expected_metrics}")
        if "Overview" not in run.titles:
            run.problems.append(f"no 'Overview' title (headings: {run.titles})")

    def _note_element(self, element: Any, run: Run) -> None:
        kind = element.WhichOneof("type")
        run.elements[kind] += 1
        if kind == "exception":
            run.problems.append(f"exception: {element.exception.type}: {element.exception.message[:200]}")
        elif kind == "alert" and element.alert.format == Alert.ERROR:
            run.problems.append(f"error box: {element.alert.body[:200]}")
        elif kind == "heading":
            run.titles.append(element.heading.body)
        elif kind == "markdown" and element.markdown.body.startswith(FILTER_CAPTION):
            run.caption = element.markdown.body
        elif kind == "multiselect":
            for _name, param, label in DIMENSIONS:
                if element.multiselect.label == label:
                    self.widget_ids[param] = element.multiselect.id


def filter_combinations(values: dict[str, list[str]], seed: int = SEED) -> Iterator[dict[str, list[str]]]:
    """Distinct filter selections over ``CHANGED``: every combination of one value of 3 of
    the dimensions (shuffled), then of all 4 — none repeats, so none is in the KPI cache."""
    rng = random.Random(seed)
    for size in (3, len(CHANGED)):
        batch = []
        for params in itertools.combinations(CHANGED, size):
            for chosen in itertools.product(*(values[FIELDS[p]] for p in params)):
                batch.append({p: [v] for p, v in zip(params, chosen, strict=True)})
        rng.shuffle(batch)
        yield from batch


# --- the real browser alongside --------------------------------------------------------


class BrowserSession:
    """One chromium page on the dashboard, driven by Playwright's sync API in a thread of
    its own (so the light sessions' event loop keeps running while it waits)."""

    def __init__(self, base: str, choices: list[tuple[str, str]]) -> None:
        self.choices = iter(choices)
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="load-browser", daemon=True)
        self._thread.start()
        self.call(self._open, base).result()

    def call(self, function: Callable, *args: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((future, function, args))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, function, args = job
            try:
                future.set_result(function(*args))
            except BaseException as error:
                future.set_exception(error)

    def _open(self, base: str) -> None:
        from playwright.sync_api import sync_playwright

        from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.page = self._browser.new_context(viewport=VIEWPORT).new_page()
        self.page.set_default_timeout(RUN_TIMEOUT * 1000)
        self.page.goto(base)
        _wait_idle(self.page)
        self.prepare()
        self.pick()  # the first change warms the browser's own code paths up (not timed)

    def prepare(self) -> None:
        """Open the next filter's dropdown (not timed)."""
        self._label, self._value = next(self.choices)
        _widget(self.page, self._label).locator("input").click()

    def pick(self) -> tuple[float, int]:
        """Click the prepared option (timed: click → Overview redrawn), count exception
        boxes, clear the filter again (not timed). Returns (seconds, exception boxes)."""
        label, value = self._label, self._value

        def pick() -> None:
            self.page.get_by_role("option", name=value, exact=True).click()
            self.page.keyboard.press("Escape")

        took = _change(self.page, pick)
        exceptions = self.page.locator('[data-testid="stException"]').count()

        def clear() -> None:
            _widget(self.page, label).locator("input").click()
            self.page.keyboard.press("Backspace")
            self.page.keyboard.press("Escape")

        _change(self.page, clear)
        return took, exceptions

    def close(self) -> None:
        def shut() -> None:
            self._browser.close()
            self._playwright.stop()

        with contextlib.suppress(Exception):
            self.call(shut).result(timeout=60)
        self._jobs.put(None)
        self._thread.join(timeout=10)


# --- the server's resources from /proc -------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _rss_mb(pid: int, key: str = "VmRSS") -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _pss_mb(pid: int) -> float | None:
    """Proportional set size: shared pages split among the processes sharing them, so the
    sum over a process tree (the export chromium's processes) is not inflated."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (all cores)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / TICKS, total / TICKS


class ServerMonitor:
    """Samples the server's RSS, its process tree's PSS and its CPU every ``SAMPLE_EVERY`` s."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.available = Path(f"/proc/{pid}/stat").exists()
        self.peak_rss = self.peak_tree_pss = 0.0
        self.peak_cpu: float | None = None  # None until one whole sample interval has passed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="load-monitor", daemon=True)

    def __enter__(self) -> ServerMonitor:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()

    def _sample(self) -> None:
        last_cpu, last_at = _cpu_seconds(self.pid), time.perf_counter()
        while True:
            rss = _rss_mb(self.pid) or 0.0
            tree = sum(_pss_mb(p) or 0.0 for p in [self.pid, *_descendants(self.pid)])
            self.peak_rss, self.peak_tree_pss = max(self.peak_rss, rss), max(self.peak_tree_pss, tree)
            if self._stop.wait(SAMPLE_EVERY):
                return
            cpu, at = _cpu_seconds(self.pid), time.perf_counter()
            if cpu is not None and last_cpu is not None:
                self.peak_cpu = max(self.peak_cpu or 0.0, (cpu - last_cpu) / (at - last_at) * 100)
            last_cpu, last_at = cpu, at

    def counters(self) -> dict[str, float | None]:
        """Cumulative CPU seconds of the server, this client and the machine, now."""
        busy, total = _machine_busy() if self.available else (None, None)
        return {
            "at": time.perf_counter(),
            "server": _cpu_seconds(self.pid),
            "client": time.process_time(),
            "machine_busy": busy,
            "machine_total": total,
        }


def _cpu_between(before: dict, after: dict) -> dict[str, float | None]:
    """Mean CPU between two ``counters()``: server and client in % of one core, the
    machine in % of all its cores."""
    wall = after["at"] - before["at"]

    def pct(key: str) -> float | None:
        if before[key] is None or after[key] is None or wall <= 0:
            return None
        return round((after[key] - before[key]) / wall * 100, 1)

    machine = None
    if before["machine_total"] is not None and after["machine_total"] > before["machine_total"]:
        machine = round(
            (after["machine_busy"] - before["machine_busy"])
            / (after["machine_total"] - before["machine_total"])
            * 100,
            1,
        )
    return {"server_cpu_pct": pct("server"), "client_cpu_pct": pct("client"), "machine_cpu_pct": machine}


# --- one level, the whole benchmark ----------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with few values, p95 is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def _guarded(coroutine: Any) -> Run:
    try:
        return await coroutine
    except ProtocolError as error:
        return Run(seconds=float("nan"), problems=[str(error)])


async def measure_level(
    base: str,
    sessions: int,
    runs: int,
    combinations: Iterator[dict[str, list[str]]],
    expected_metrics: int,
    monitor: ServerMonitor,
    browser: BrowserSession | None = None,
    browser_runs: int = 0,
) -> dict[str, Any]:
    """N light sessions: load the Overview together, then ``runs`` rounds in which all of
    them change their filters at once; then ``browser_runs`` rounds with the browser too."""
    clients = [LightSession(base, expected_metrics) for _ in range(sessions)]
    problems: list[str] = []
    try:
        opened = await asyncio.gather(*(_guarded(c.open()) for c in clients))
        alive = [c for c in clients if c.widget_ids and not c.broken]
        problems += [p for run in opened for p in run.problems]
        times: list[float] = []
        rounds: list[float] = []
        before = monitor.counters()
        for _ in range(runs):
            began = time.perf_counter()
            done = await asyncio.gather(*(_guarded(c.change(next(combinations))) for c in alive))
            rounds.append(time.perf_counter() - began)
            times += [run.seconds for run in done if not run.problems]
            problems += [p for run in done for p in run.problems]
            problems += ["session lost"] * (sessions - len(alive))
        cpu = _cpu_between(before, monitor.counters())
        with_browser: dict[str, Any] = {}
        if browser is not None and browser_runs:
            light, seen, exceptions, failure = [], [], 0, None
            for _ in range(browser_runs):
                try:
                    await asyncio.wrap_future(browser.call(browser.prepare))
                    watched = asyncio.wrap_future(browser.call(browser.pick))
                    done = await asyncio.gather(*(_guarded(c.change(next(combinations))) for c in alive))
                    took, boxes = await watched
                except Exception as error:  # Playwright: a timeout, a missing option
                    failure = f"{type(error).__name__}: {str(error)[:300]}"
                    break
                seen.append(took)
                exceptions += boxes
                light += [run.seconds for run in done if not run.problems]
                problems += [p for run in done for p in run.problems]
            with_browser = {
                "browser_median_s": statistics.median(seen) if seen else None,
                "browser_times_s": seen,
                "browser_exception_boxes": exceptions,
                "browser_error": failure,
                "light_median_s": statistics.median(light) if light else None,
            }
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    first = [run.seconds for run in opened if not run.problems]
    return {
        "sessions": sessions,
        "loaded": len(first),  # sessions whose first run was correct
        "redraws": len(times),  # correct timed redraws (sessions × runs when all went well)
        "errors": len(problems),
        "problems": sorted(Counter(problems).items(), key=lambda item: -item[1])[:10],
        "median_s": statistics.median(times) if times else None,
        "p95_s": percentile(times, 95) if times else None,
        "max_s": max(times) if times else None,
        "redraws_per_s": round(len(times) / sum(rounds), 2) if rounds and sum(rounds) else None,
        "first_load_median_s": statistics.median(first) if first else None,
        "times_s": times,
        **cpu,
        "with_browser": with_browser,
    }


async def warm_up(base: str, combinations: Iterator[dict[str, list[str]]]) -> int:
    """One session: load and change once (the server's first run imports and connects).
    Fails loudly when the protocol does not work; returns the Overview's metric count."""
    client = LightSession(base, expected_metrics=0)
    try:
        loaded = await client.open()
        if not loaded.elements["metric"]:
            loaded.problems.append("the Overview drew no metric card")
        changed = await client.change(next(combinations))
    finally:
        await client.close()
    problems = loaded.problems + changed.problems
    if problems:
        raise ProtocolError("the warm-up session did not get a correct Overview: " + "; ".join(problems))
    return loaded.elements["metric"]


def run_benchmark(
    database: Path,
    levels: list[int],
    runs: int,
    browser_runs: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Start the dashboard on ``database`` and measure every level; the results as a dict."""
    from crm_data.engines import make_engine
    from kpis.filters import dimension_values

    engine = make_engine(f"duckdb:///{database}", read_only=True)
    values = dimension_values(engine)
    engine.dispose()
    pool = list(filter_combinations(values))
    needed = 1 + sum(levels) * (runs + browser_runs)
    if len(pool) < needed:
        raise SystemExit(
            f"{needed} distinct filter changes needed, this database has {len(pool)}: use fewer --runs"
        )
    combinations = iter(pool)
    browser_choices = [(label, v) for label in BROWSER_FILTERS for v in values[FIELDS[label.lower()]]]
    if browser_runs and len(browser_choices) < len(levels) * (browser_runs + 1) + 1:
        raise SystemExit(f"only {len(browser_choices)} browser filter values: use fewer --browser-runs")
    process, base = _start_server(database)
    browser = None
    try:
        began = time.perf_counter()
        try:
            expected = asyncio.run(warm_up(base, combinations))
        except ProtocolError as error:
            raise SystemExit(f"the light client does not work against {base}: {error}") from error
        log(
            f"server {base} (pid {process.pid}) warm in {time.perf_counter() - began:.1f} s; "
            f"the Overview draws {expected} metric cards"
        )
        if browser_runs:
            browser = BrowserSession(base, browser_choices)
        rows = []
        for n in levels:
            with ServerMonitor(process.pid) as monitor:
                row = asyncio.run(
                    measure_level(base, n, runs, combinations, expected, monitor, browser, browser_runs)
                )
            row.update(
                server_peak_rss_mb=round(monitor.peak_rss, 1),
                server_tree_peak_pss_mb=round(monitor.peak_tree_pss, 1),
                server_peak_cpu_pct=None if monitor.peak_cpu is None else round(monitor.peak_cpu, 1),
            )
            rows.append(row)
            log(_row_line(row, rows[0]))
        results = {"levels": rows, "server_vmhwm_mb": _rss_mb(process.pid, "VmHWM")}
    finally:
        if browser is not None:
            browser.close()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    return results


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:,.0f} ms"


def _ratio(value: float | None, base: float | None) -> str:
    return "–" if value is None or not base else f"{value / base:.1f}×"


def _row_line(row: dict, base: dict) -> str:
    ratio = f" ({_ratio(row['median_s'], base['median_s'])} N=1)" if base["sessions"] == 1 else ""
    line = (
        f"N={row['sessions']:3d}: redraw median {_ms(row['median_s'])}{ratio}, p95 {_ms(row['p95_s'])}, "
        f"{row['redraws']} redraws, {row['errors']} errors, {row['redraws_per_s']} redraws/s | server "
        f"peak {row['server_peak_rss_mb']} MB, CPU {row['server_cpu_pct']} % (peak {row['server_peak_cpu_pct']} %) "
        f"| machine {row['machine_cpu_pct']} % | client {row['client_cpu_pct']} %"
    )
    if row["with_browser"]:
        b = row["with_browser"]
        line += (
            f" | browser {_ms(b['browser_median_s'])} vs light {_ms(b['light_median_s'])} in the same rounds"
        )
        if b["browser_exception_boxes"] or b["browser_error"]:
            line += f" (browser: {b['browser_exception_boxes']} exception boxes, error {b['browser_error']})"
    for problem, count in row["problems"]:
        line += f"\n    {count} × {problem}"
    return line


def markdown_table(rows: list[dict]) -> str:
    """The levels as a Markdown table; ratios against N=1 of the same run."""
    base = rows[0] if rows and rows[0]["sessions"] == 1 else None
    lines = [
        "| sessions | redraw median | p95 | median ÷ N=1 | p95 ÷ N=1 | redraws/s | errors "
        "| server peak RSS | server CPU (mean / peak) | machine CPU | browser (light, same rounds) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b = r["with_browser"]
        browser = f"{_ms(b['browser_median_s'])} ({_ms(b['light_median_s'])})" if b else "–"
        lines.append(
            f"| {r['sessions']} | {_ms(r['median_s'])} | {_ms(r['p95_s'])} "
            f"| {_ratio(r['median_s'], base and base['median_s'])} | {_ratio(r['p95_s'], base and base['p95_s'])} "
            f"| {r['redraws_per_s']} | {r['errors']} | {r['server_peak_rss_mb']:.0f} MB "
            f"| {r['server_cpu_pct']} % / {r['server_peak_cpu_pct']} % | {r['machine_cpu_pct']} % | {browser} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--accounts", type=int, default=DEFAULT_ACCOUNTS)
    parser.add_argument("--sessions", type=int, nargs="+", default=list(LEVELS), help="the levels N")
    parser.add_argument("--runs", type=int, default=5, help="filter changes per session and level")
    parser.add_argument("--browser-runs", type=int, default=3, help="rounds with the real browser per level")
    parser.add_argument("--no-browser", action="store_true", help="light sessions only")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    if min(args.sessions) < 1 or args.runs < 1:
        parser.error("--sessions and --runs must be at least 1")
    DATA.mkdir(exist_ok=True)
    database = DATA / f"load-{args.accounts}.duckdb"
    if args.rebuild or not database.exists():
        database.unlink(missing_ok=True)
        took = build(f"duckdb:///{database}", args.accounts)
        print(f"demo data for {args.accounts:,} accounts written in {took:.1f} s")
    browser_runs = 0 if args.no_browser else args.browser_runs
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}; database {database.name}; levels {args.sessions}, {args.runs} runs")
    results = run_benchmark(database, sorted(set(args.sessions)), args.runs, browser_runs)
    OUT.write_text(
        json.dumps(
            {
                "machine": machine,
                "accounts": args.accounts,
                "runs": args.runs,
                "browser_runs": browser_runs,
                **results,
            },
            indent=2,
        )
    )
    print(f"\nraw results: {OUT}\n")
    print(markdown_table(results["levels"]))


if __name__ == "__main__":
    main()
