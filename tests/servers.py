"""Real processes started by the tests: servers (``crm-insights serve``, ``streamlit run``)
— a free port, waiting until one is healthy, stopping it with what it started — and another
process holding a DuckDB file open, as the dashboard or an import does."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

#: seconds a Streamlit server may take to answer its health check
START_TIMEOUT = 120


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(
    base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = START_TIMEOUT
) -> None:
    """Return once the Streamlit server at ``base`` answers its health check; fail with the
    end of its ``log`` when it exits or does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"the server did not become healthy in {timeout} s:\n{log.read_text()[-3000:]}")


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Stop a server started with ``start_new_session=True`` and everything it started (the
    export Chromium shares its process group): SIGTERM, then SIGKILL after ``timeout`` s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def duckdb_held_open(path: str, read_only: bool, table: str) -> Iterator[None]:
    """Another process with the DuckDB file at ``path`` open (read-only like the dashboard,
    or writing like an import), having read ``table``, until the block ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys\n"
            f"c = duckdb.connect({path!r}, read_only={read_only})\n"
            f"c.execute('select count(*) from {table}').fetchall()\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield
    finally:
        holder.communicate(input="", timeout=30)  # closing stdin ends the holder
