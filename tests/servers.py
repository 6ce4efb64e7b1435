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


# ---------------------------------------------------------------- the command line, forked

#: What ``python -m crm_data`` imports before it runs a command (the fork server imports it
#: once; a command then costs its own work, not ~2 s of imports). No Streamlit: ``serve``
#: imports it in the command's own process, as the real command does.
CLI_PRELOAD = (
    "crm_data.cli",
    "crm_data.demo",
    "crm_data.importing",
    "crm_data.quality",
    "crm_data.quality_snapshot",
    "crm_data.validation",
    "crm_data.accounts",
    "kpis",
    "kpis.rollups",
)


def _fork_server() -> None:
    """The fork server's loop (run as ``python -c``, in the project folder): import
    :data:`CLI_PRELOAD`, say ``ready``, then per request line (JSON: args, env, cwd, stdout,
    stderr file names) fork a child that becomes ``python -m crm_data ARGS``: its stdout and
    stderr are the files (fd level), stdin is /dev/null, the environment is the request's,
    and ``crm_data/__main__.py`` runs as ``__main__`` exactly as ``-m`` runs it — an exit
    code, or an uncaught exception's traceback, ends the child like any interpreter (atexit
    handlers and DuckDB's checkpoint on close included). Replies ``{"pid"}``, then
    ``{"code"}`` once the child has ended."""
    import gc
    import importlib
    import json
    import runpy

    for name in CLI_PRELOAD:
        importlib.import_module(name)
    gc.freeze()  # the children's collections skip (and do not copy) what the imports made
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the command's process: it never returns into this loop
            for fd, name, flags in (
                (0, os.devnull, os.O_RDONLY),
                (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            ):
                opened = os.open(name, flags, 0o644)
                os.dup2(opened, fd)
                os.close(opened)
            sys.stdin = open(os.devnull)  # noqa: SIM115 - the process's stdin until it exits
            os.environ.clear()
            os.environ.update(request["env"])
            os.chdir(request["cwd"])
            sys.argv = ["-m", *request["args"]]  # run_module puts crm_data/__main__.py first
            try:
                runpy.run_module("crm_data", run_name="__main__", alter_sys=True)
            finally:  # __main__ ends with sys.exit(main()): that, or an exception, ends the child
                sys.stdout.flush()
            raise SystemExit(0)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


class ForkedCommandLine:
    """``python -m crm_data ARGS`` as its own process, forked from one that has imported the
    command line already (:func:`_fork_server`): the same exit code, stdout and stderr as
    ``subprocess.run([sys.executable, "-m", "crm_data", *args])`` for about a tenth of the
    CPU. One fork server per test process, started on first use and stopped at exit. An
    import that prints anything on stderr fails every call (a fresh process would print it
    each time)."""

    def __init__(self) -> None:
        self._server: subprocess.Popen[str] | None = None
        self._folder: Path | None = None
        self._count = 0

    def _start(self) -> subprocess.Popen[str]:
        import atexit
        import tempfile

        if self._server is not None and self._server.poll() is None:
            return self._server
        root = Path(__file__).resolve().parent.parent
        self._folder = Path(tempfile.mkdtemp(prefix="crm-cli-fork-"))
        errors = self._folder / "server.err"
        with errors.open("wb") as err:
            self._server = subprocess.Popen(
                [sys.executable, "-c", "from tests.servers import _fork_server; _fork_server()"],
                cwd=root,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self._server.stdout is not None
        ready = self._server.stdout.readline().strip()
        printed = errors.read_text()
        assert ready == "ready" and not printed, f"the fork server did not start cleanly:\n{printed[-3000:]}"
        atexit.register(self.stop)
        return self._server

    def stop(self) -> None:
        if self._server is not None and self._server.poll() is None:
            assert self._server.stdin is not None
            self._server.stdin.close()
            try:
                self._server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._server.kill()
        self._server = None

    def run(
        self, *args: str, timeout: float = 300, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        import json
        import threading

        server = self._start()
        assert server.stdin is not None and server.stdout is not None and self._folder is not None
        self._count += 1
        out, err = self._folder / f"{self._count}.out", self._folder / f"{self._count}.err"
        request = {
            "args": list(args),
            "env": dict(os.environ),
            "cwd": str(cwd or Path(__file__).resolve().parent.parent),
            "stdout": str(out),
            "stderr": str(err),
        }
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        pid = json.loads(server.stdout.readline())["pid"]
        killed: list[bool] = []

        def kill() -> None:
            killed.append(True)
            os.kill(pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            code = json.loads(server.stdout.readline())["code"]
        finally:
            timer.cancel()
        if killed:
            raise subprocess.TimeoutExpired([sys.executable, "-m", "crm_data", *args], timeout)
        stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        out.unlink()
        err.unlink()
        return subprocess.CompletedProcess([sys.executable, "-m", "crm_data", *args], code, stdout, stderr)


_FORKED_CLI = ForkedCommandLine()


def run_module_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m crm_data ARGS`` in its own process (forked: see :class:`ForkedCommandLine`),
    in the project folder, with this process's environment."""
    return _FORKED_CLI.run(*args, timeout=timeout)
