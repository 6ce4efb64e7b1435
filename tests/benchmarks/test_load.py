"""``benchmarks.load``: the light client (Streamlit's websocket protocol, no browser) against a
real ``streamlit run dashboard.py`` on a tiny demo. Checks correctness and that numbers were
measured; never wall-clock times."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from benchmarks import load
from tests.conftest import write_demo_database

ACCOUNTS = 200
SEED = 7


def off_the_event_loop(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``function`` on a thread of its own: ``asyncio.run`` refuses to start inside a
    running event loop, which a browser test (Playwright's sync API) leaves in an xdist
    worker's main thread when it ran there first."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args, **kwargs).result()


def test_filter_combinations_never_repeat() -> None:
    values = {
        "segments": ["A", "B"],
        "regions": ["R1", "R2"],
        "industries": ["I1", "I2", "I3"],
        "company_sizes": ["S1", "S2"],
    }
    combinations = list(load.filter_combinations(values))
    keys = {tuple(sorted((k, tuple(v)) for k, v in c.items())) for c in combinations}
    assert len(keys) == len(combinations) == (2 * 2 * 3 + 2 * 2 * 2 + 2 * 3 * 2 + 2 * 3 * 2) + 2 * 2 * 3 * 2
    assert all(len(c) >= 3 for c in combinations)


def test_percentile_is_nearest_rank() -> None:
    assert load.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert load.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == 5.0


@pytest.mark.slow
def test_two_light_sessions_get_correct_overviews(tmp_path: Path) -> None:
    write_demo_database(tmp_path, ACCOUNTS, SEED)
    results = off_the_event_loop(
        load.run_benchmark, tmp_path / "demo.duckdb", [2], runs=1, log=lambda _line: None
    )

    (level,) = results["levels"]
    assert level["problems"] == []  # no exception element, no error box, every check passed
    assert level["errors"] == 0
    assert level["loaded"] == 2  # both sessions' first run reached script_finished, correct
    assert level["redraws"] == 2  # both sessions' filter change reached script_finished, correct
    assert all(t > 0 for t in level["times_s"])
    assert level["median_s"] > 0 and level["p95_s"] > 0 and level["first_load_median_s"] > 0
    assert level["redraws_per_s"] > 0
    assert level["server_peak_rss_mb"] > 0
    assert level["server_cpu_pct"] is not None and level["server_cpu_pct"] >= 0


def test_no_server_fails_loudly() -> None:
    import asyncio
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(load.ProtocolError, match="could not open"):
        off_the_event_loop(asyncio.run, load.LightSession(f"http://127.0.0.1:{port}", timeout=10).open())
