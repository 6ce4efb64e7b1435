"""The Overview's KPI calls on the dashboard's default date range, per period grain.

    python -m benchmarks.views URL [--runs 3]

The default range ends with the current, unfinished month (``ui.filters.default_range``,
clamped to the last day with data as the date picker does), so the roll-ups answer the
complete periods and the base tables the cut one. For month, quarter and year it prints
the median time of each call (after a warm-up, statements built anew each run, as for a
new filter selection) and their total. ``CRM_ROLLUPS=off`` times the direct path.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import statistics
import time

import kpis
from benchmarks import overview
from benchmarks.run_one import forget_built_statements
from crm_data.dialects import FREQS
from crm_data.engines import make_engine
from kpis import Filters
from kpis.filters import data_date_range

logging.getLogger("streamlit").setLevel(logging.ERROR)  # no "No runtime found" warnings outside a server
from ui.filters import default_range  # noqa: E402 - after silencing Streamlit's import-time warnings


def dashboard_range(bounds: tuple[dt.date, dt.date] | None) -> tuple[dt.date, dt.date]:
    """The Overview's default ``[start, end)``: the date picker ends on the last day with data."""
    start, end = default_range(bounds)
    if bounds is not None:
        end = min(end, bounds[1] + dt.timedelta(days=1))
    return start, end


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.views", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    engine = make_engine(args.url, read_only=True)
    f = Filters(*dashboard_range(data_date_range(engine)))
    names = list(dict.fromkeys(name for name, _ in overview.CALLS))
    print(f"range {f.start} – {f.end} (end exclusive)")
    for freq in FREQS:
        medians = {}
        for name in names:
            function = getattr(kpis, name)
            function(engine, f, freq=freq)  # warm-up
            times = []
            for _ in range(args.runs):
                forget_built_statements()
                began = time.perf_counter()
                function(engine, f, freq=freq)
                times.append(time.perf_counter() - began)
            medians[name] = statistics.median(times)
        calls = ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in medians.items())
        print(f"{freq:8s} total {sum(medians.values()) * 1000:6.0f} ms  ({calls})")
    engine.dispose()


if __name__ == "__main__":
    main()
