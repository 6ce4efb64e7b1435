"""KPI latency benchmark: ``python -m benchmarks [--sizes M L] [--runs 5] [--postgres]``.

For each size (M = 100k accounts, L = 1M accounts) it builds a demo DuckDB with the
product's demo generator (timed: that is the demo-data figure; it includes building the
KPI roll-ups), then times one filter change — every KPI the Overview computes, monthly
over 12 months — unfiltered and filtered (one region × one industry), for:

* product: the ``kpis`` package on DuckDB, as shipped (reading the roll-ups of
  ``kpis.rollups`` where they apply);
* direct: the same with ``CRM_ROLLUPS=off`` — every KPI on the base tables;
* floor: the same KPIs as hand-written DuckDB SQL on the base tables;
* sqlite: the product's direct path on a SQLite copy of the same rows (``benchmarks.copy``;
  S and M only) — the engine comparison;
* pandas: a straightforward pandas implementation on data loaded into memory (S and M);
* postgres / postgres_direct: the product with and without roll-ups on a PostgreSQL copy
  of the same rows (with ``--postgres``; one database ``crm_bench_<size>`` per size).

Each figure is the median of ``--runs`` runs after a warm-up, in a fresh process (so peak
RSS is that implementation's own); product, direct and floor are interleaved, one process
per run, so load from elsewhere on the machine affects them alike. Ratios are computed
within this run. Databases are kept in ``benchmarks/data/`` (git-ignored) and reused;
``--rebuild`` makes them anew.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from benchmarks import overview

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SIZES = {"S": 10_000, "M": 100_000, "L": 1_000_000}
SEED = 42
PG_SERVER = os.environ.get("CRM_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")


def pg_url(size: str) -> str:
    """The PostgreSQL database of one size's copy."""
    return f"{PG_SERVER.rstrip('/')}/crm_bench_{size.lower()}"


def _run(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def build(url: str, accounts: int) -> float:
    """Build a demo database; return the wall time of the demo command."""
    began = time.perf_counter()
    _run(
        [
            sys.executable,
            "-m",
            "crm_data",
            "demo",
            "--accounts",
            str(accounts),
            "--seed",
            str(SEED),
            "--url",
            url,
            "--quiet",
        ]
    )
    return time.perf_counter() - began


def _stale(copy: Path, source: Path) -> bool:
    """True when ``copy`` is missing or older than the DuckDB file it was copied from."""
    return not copy.exists() or copy.stat().st_mtime < source.stat().st_mtime


def _copy(db: Path, url: str, done: Path) -> None:
    """The same rows in another database (``benchmarks.copy``), timed."""
    began = time.perf_counter()
    _run([sys.executable, "-m", "benchmarks.copy", str(db), url])
    print(f"copied {db.name} to {sa.make_url(url).render_as_string()} in {time.perf_counter() - began:.1f} s")


def measure(
    impl: str,
    url: str,
    runs: int,
    region: str | None = None,
    industry: str | None = None,
    rollups: bool = True,
) -> dict:
    """One implementation in a fresh process; ``rollups=False`` sets ``CRM_ROLLUPS=off``."""
    cmd = [sys.executable, "-m", "benchmarks.run_one", impl, url, "--runs", str(runs)]
    if region:
        cmd += ["--region", region, "--industry", industry or ""]
    env = {**os.environ, "CRM_ROLLUPS": "on" if rollups else "off"}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


#: The interleaved implementations: name -> (run_one implementation, roll-ups on).
INTERLEAVED = {"product": ("product", True), "direct": ("product", False), "floor": ("floor", True)}


def measure_interleaved(url: str, runs: int, region: str | None, industry: str | None) -> dict[str, dict]:
    """Product, direct and floor interleaved: ``runs`` rounds of one fresh process each
    (warm-up + one timed run), so a change in the machine's load hits all alike; medians
    over the rounds, peak RSS the largest."""
    samples: dict[str, list[dict]] = {name: [] for name in INTERLEAVED}
    for _ in range(runs):
        for name, (impl, rollups) in INTERLEAVED.items():
            samples[name].append(measure(impl, url, 1, region, industry, rollups))
    combined = {}
    for name, rounds in samples.items():
        times = [r["median_s"] for r in rounds]
        combined[name] = {
            "impl": name,
            "median_s": statistics.median(times),
            "runs": len(times),
            "times_s": times,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds),
            "headline": rounds[0]["headline"],
        }
    return combined


def busiest_slice(url: str) -> tuple[str, str]:
    """The most common region and, within it, the most common industry."""
    engine = sa.create_engine(url)
    with engine.connect() as c:
        region, industry = c.exec_driver_sql(
            "SELECT region, industry FROM accounts GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2 LIMIT 1"
        ).one()
    engine.dispose()
    return region, industry


def ensure_pg_database(url: str) -> None:
    admin = sa.create_engine(sa.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        name = sa.make_url(url).database
        if not c.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).first():
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=["M", "L"], choices=list(SIZES))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="also time the product on PostgreSQL copies")
    parser.add_argument(
        "--pg-direct-runs", type=int, default=0, help="runs of PostgreSQL without roll-ups (default: --runs)"
    )
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    DATA.mkdir(exist_ok=True)
    for problem in overview.check_matches_dashboard():
        print(f"WARNING: {problem}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    rows = []
    for size in args.sizes:
        accounts = SIZES[size]
        db = DATA / f"{size}.duckdb"
        url = f"duckdb:///{db}"
        if args.rebuild or not db.exists():
            db.unlink(missing_ok=True)
            took = build(url, accounts)
            print(f"{size}: demo data for {accounts:,} accounts written in {took:.1f} s")
        region, industry = busiest_slice(url)
        result = {"size": size, "accounts": accounts, "slice": f"{region} × {industry}"}
        for label, slice_args in [("unfiltered", (None, None)), ("filtered", (region, industry))]:
            result[label] = measure_interleaved(url, args.runs, *slice_args)
            if size in ("S", "M"):
                sqlite_db = DATA / f"{size}.sqlite"
                if args.rebuild or _stale(sqlite_db, db):
                    sqlite_db.unlink(missing_ok=True)
                    _copy(db, f"sqlite:///{sqlite_db}", sqlite_db)
                result[label]["sqlite"] = measure(
                    "product", f"sqlite:///{sqlite_db}", args.runs, *slice_args, rollups=False
                )
                result[label]["pandas"] = measure("pandas", url, args.runs, *slice_args)
            if args.postgres:
                target = pg_url(size)
                ensure_pg_database(target)
                marker = DATA / f"{size}.postgres-built"
                if args.rebuild or _stale(marker, db) or marker.read_text().strip() != target:
                    _copy(db, target, marker)
                    marker.write_text(target)
                result[label]["postgres"] = measure("product", target, args.runs, *slice_args)
                result[label]["postgres_direct"] = measure(
                    "product", target, args.pg_direct_runs or args.runs, *slice_args, rollups=False
                )
            _print_row(size, label, result[label])
            _check_agreement(size, label, result[label])
        rows.append(result)
    out = HERE / "results.json"
    previous = json.loads(out.read_text()) if out.exists() else []
    measured = {r["size"] for r in rows}
    merged = [r for r in previous if r.get("size") not in measured] + rows
    merged.sort(key=lambda r: list(SIZES).index(r["size"]))
    out.write_text(json.dumps(merged, indent=2))
    print(f"\nraw results (every size measured so far): {out}\n")
    print(markdown_table(merged))


def markdown_table(results: list[dict]) -> str:
    """The results as Markdown tables (medians in ms; ratios within each run): the product
    as shipped against the floor, then the direct path (no roll-ups) against the floor and
    the other engines."""
    shipped = [
        "| size | filter | product | floor | product ÷ floor | PostgreSQL | PostgreSQL ÷ product | product peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    direct = [
        "| size | filter | direct | floor | direct ÷ floor | SQLite ÷ direct | pandas ÷ direct "
        "| PostgreSQL direct | PostgreSQL direct ÷ direct |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for label in ("unfiltered", "filtered"):
            m = r.get(label)
            if not m or "direct" not in m:
                continue
            name = f"{r['size']} ({r['accounts']:,} accounts)"
            p, d, fl = (m[k]["median_s"] for k in ("product", "direct", "floor"))

            def ms(impl: str, m: dict = m) -> str:
                return f"{m[impl]['median_s'] * 1000:,.0f} ms" if impl in m else "–"

            def times(impl: str, base: float, m: dict = m) -> str:
                return f"{m[impl]['median_s'] / base:.1f}×" if impl in m else "–"

            shipped.append(
                f"| {name} | {label} | {ms('product')} | {ms('floor')} | {p / fl:.2f}× | {ms('postgres')} "
                f"| {times('postgres', p)} | {m['product']['peak_rss_mb']} MB |"
            )
            direct.append(
                f"| {name} | {label} | {ms('direct')} | {ms('floor')} | {d / fl:.2f}× | {times('sqlite', d)} "
                f"| {times('pandas', d)} | {ms('postgres_direct')} | {times('postgres_direct', d)} |"
            )
    return "\n".join(
        ["Product as shipped (roll-ups on):", "", *shipped, "", "Direct path (CRM_ROLLUPS=off):", "", *direct]
    )


def _check_agreement(size: str, label: str, r: dict) -> None:
    """Warn when an implementation's headline numbers differ from the floor's."""
    reference = r["floor"].get("headline", {})
    for impl, measured in r.items():
        if impl == "floor":
            continue
        problems = overview.disagreements(reference, measured.get("headline", {}))
        if problems:
            print(f"WARNING {size} {label}: {impl} and floor disagree: " + "; ".join(problems), flush=True)


def _print_row(size: str, label: str, r: dict) -> None:
    p, d, fl = (r[k]["median_s"] for k in ("product", "direct", "floor"))
    line = (
        f"{size} {label:10s} product {p * 1000:8.1f} ms (peak {r['product']['peak_rss_mb']} MB) | "
        f"direct {d * 1000:8.1f} ms | floor {fl * 1000:8.1f} ms | product/floor {p / fl:5.2f}× "
        f"| direct/floor {d / fl:5.2f}×"
    )
    if "sqlite" in r:
        line += f" | sqlite/direct {r['sqlite']['median_s'] / d:6.1f}×"
    if "pandas" in r:
        line += f" | pandas/direct {r['pandas']['median_s'] / d:6.1f}× (load {r['pandas']['load_s']:.1f} s)"
    if "postgres" in r:
        line += f" | postgres {r['postgres']['median_s'] * 1000:.0f} ms ({r['postgres']['median_s'] / p:.1f}× product)"
    if "postgres_direct" in r:
        line += f" | postgres direct {r['postgres_direct']['median_s'] * 1000:.0f} ms"
    print(line, flush=True)


if __name__ == "__main__":
    main()
