"""CPU of one ``kpis.customer_base`` call on the Overview's window, statements built anew
(``forget_built_statements``) as for a new filter selection; prints the first call's and the
median of N later calls' CPU milliseconds (user + system of the process).

    CRM_ROLLUPS=off python -m benchmarks.customer_base_call URL [--owner O] [--product P] [--runs N]
"""

from __future__ import annotations

import argparse
import resource
import statistics

from benchmarks import overview
from benchmarks.run_one import forget_built_statements


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--owner")
    parser.add_argument("--product")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    from crm_data.engines import make_engine
    from kpis import Filters, customer_base

    engine = make_engine(args.url, read_only=args.url.startswith("duckdb"))
    start, end = overview.window()
    f = Filters(
        start,
        end,
        owners=[args.owner] if args.owner else (),
        products=[args.product] if args.product else (),
    )
    used = _cpu_seconds()
    customer_base(engine, f, overview.FREQ)
    first = _cpu_seconds() - used
    times = []
    for _ in range(args.runs):
        forget_built_statements()
        used = _cpu_seconds()
        customer_base(engine, f, overview.FREQ)
        times.append(_cpu_seconds() - used)
    print(f"first {first * 1000:.1f} ms, median {statistics.median(times) * 1000:.1f} ms CPU")


if __name__ == "__main__":
    main()
