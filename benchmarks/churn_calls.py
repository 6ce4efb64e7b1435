"""CPU of one call of the Customers & churn page in one filter state of ``benchmarks.pages``,
statements built anew before each run (``forget_built_statements``) as for a new filter
selection: the first call's and the median of N later calls' CPU seconds of this process
and, on PostgreSQL, of its server backend (``/proc/<pg_backend_pid()>/stat``: the backend
of the engine's one pooled connection; parallel workers are not counted, so set
``--no-parallel`` to keep the query in the backend).

    python -m benchmarks.churn_calls URL cohort_retention --state "3 years, quarters" [--runs N]
        [--no-parallel] [--save FILE.pkl]

``--save`` pickles the last result (to compare the numbers of two versions).
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import statistics
from typing import Any

from benchmarks.pages import PAGES, STATES, _resolve, forget_built_statements, state_view

PAGE = "Customers & churn"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _backend_cpu(pid: int | None) -> float:
    """user + system seconds of a local PostgreSQL backend (0 when not readable)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("call", choices=[c.name for c in PAGES[PAGE][1]])
    parser.add_argument("--state", choices=STATES, default="default")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--no-parallel", action="store_true", help="PostgreSQL: max_parallel_workers_per_gather = 0"
    )
    parser.add_argument("--save")
    args = parser.parse_args()
    import datetime as dt

    import sqlalchemy as sa

    from crm_data.dialects import prepare_engine
    from crm_data.engines import make_engine

    engine = make_engine(args.url, read_only=args.url.startswith("duckdb"))
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        engine = sa.create_engine(args.url, poolclass=sa.pool.SingletonThreadPool)  # one backend
        prepare_engine(engine)  # as make_engine: UTC, work_mem
    call = next(c for c in PAGES[PAGE][1] if c.name == args.call)
    function = _resolve(call.function)
    filters, freq, _cut, bounds = state_view(engine, args.state)
    kwargs: dict[str, Any] = dict(call.kwargs)
    if call.arg == "view":
        kwargs["freq"] = freq
    if "as_of" in call.derived:  # as benchmarks.pages derives it
        kwargs["as_of"] = min(filters.end, bounds[1] + dt.timedelta(days=1)) if bounds else None
    pid = None
    if postgres:
        with engine.connect() as c:
            pid = c.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            if args.no_parallel:
                c.exec_driver_sql("SET max_parallel_workers_per_gather = 0")
                c.commit()
    times, server = [], []
    result = None
    for _run in range(args.runs + 1):
        forget_built_statements()
        used, used_server = _cpu_seconds(), _backend_cpu(pid)
        result = function(engine, filters, **kwargs)
        times.append(_cpu_seconds() - used)
        server.append(_backend_cpu(pid) - used_server)
    line = (
        f"{args.call} · {args.state}: first {times[0]:.3f} s, median {statistics.median(times[1:]):.3f} s CPU"
    )
    if postgres:
        line += f"; server backend first {server[0]:.3f} s, median {statistics.median(server[1:]):.3f} s"
    print(line)
    if args.save:
        with open(args.save, "wb") as out:
            pickle.dump(result, out)


if __name__ == "__main__":
    main()
