"""Time one implementation on one database in a fresh process; print one JSON line.

    python -m benchmarks.run_one IMPL URL [--runs N] [--region R --industry I] [--owner O] [--product P]

IMPL is ``product`` (the kpis package), ``floor`` (hand-written DuckDB SQL) or ``pandas``.
The median of N timed runs after one warm-up run, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import sqlalchemy as sa

from benchmarks import overview


def forget_built_statements() -> None:
    """Empty the kpis modules' per-filters statement caches (``functools.lru_cache``), so
    each timed run pays what a new filter selection pays; SQLAlchemy's compiled cache (keyed
    by statement shape, not values) stays warm, as in a running dashboard."""
    import kpis

    for module in {getattr(kpis, name).__module__ for name in kpis.__all__}:
        for value in vars(sys.modules[module]).values():
            if hasattr(value, "cache_clear"):
                value.cache_clear()


def _cpu_seconds() -> float:
    """CPU time of this process so far (user + system, DuckDB's threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("impl", choices=["product", "floor", "pandas"])
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--region")
    parser.add_argument("--industry")
    parser.add_argument("--owner", help="one owner (product and floor only)")
    parser.add_argument("--product", help="one product (product and floor only)")
    args = parser.parse_args()
    start, end = overview.window()
    extra: dict[str, float] = {}

    if args.impl == "product":
        from crm_data.engines import make_engine
        from kpis import Filters

        engine = make_engine(args.url, read_only=args.url.startswith("duckdb"))
        f = Filters(
            start,
            end,
            regions=[args.region] if args.region else (),
            industries=[args.industry] if args.industry else (),
            owners=[args.owner] if args.owner else (),
            products=[args.product] if args.product else (),
        )

        def once() -> object:
            forget_built_statements()  # a filter change builds its statements anew
            return overview.product_overview(engine, f)

        headline = overview.headline
    elif args.impl == "floor":
        import duckdb

        from benchmarks import floor_duckdb

        con = duckdb.connect(sa.make_url(args.url).database, read_only=True)
        con.execute("SET TimeZone='UTC'")

        def once() -> object:
            return floor_duckdb.overview(
                con, start, end, args.region, args.industry, args.owner, args.product
            )

        headline = floor_duckdb.headline
    else:
        from benchmarks import pandas_baseline
        from crm_data.engines import make_engine

        began = time.perf_counter()
        data = pandas_baseline.load(make_engine(args.url, read_only=True))
        extra["load_s"] = time.perf_counter() - began

        def once() -> object:
            return pandas_baseline.overview(data, start, end, args.region, args.industry)

        headline = pandas_baseline.headline

    numbers = headline(once())  # warm-up, and the numbers to compare across implementations
    times, cpu = [], []
    for _ in range(args.runs):
        began, used = time.perf_counter(), _cpu_seconds()
        once()
        times.append(time.perf_counter() - began)
        cpu.append(_cpu_seconds() - used)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "impl": args.impl,
                "median_s": statistics.median(times),
                "median_cpu_s": statistics.median(cpu),
                "runs": len(times),
                "peak_rss_mb": round(peak_mb),
                **extra,
                "headline": numbers,
            }
        )
    )


if __name__ == "__main__":
    main()
