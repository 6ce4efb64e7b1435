"""``benchmarks.pages``: every page's KPI calls per filter state, on a tiny demo. Checks that
the lists match the page scripts and that every call ran and was timed; never wall-clock
times."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import pages
from crm_data.engines import make_engine
from tests.conftest import write_demo_database

ACCOUNTS = 200
SEED = 7


def test_the_benchmark_lists_every_kpi_call_of_every_page() -> None:
    assert pages.check_matches_pages() == []
    assert set(pages.PAGES) == {
        "Overview", "Sales pipeline", "Customers & churn", "Marketing & retention cost", "Forecast", "Data quality",
    }  # fmt: skip


def test_a_page_script_that_changes_is_noticed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "page.py"
    script.write_text("x = kpi(kpis.funnel, view.filters)\ny = call(check_database, stale_days=1)\n")
    assert pages.page_calls(script) == ["funnel", "check_database"]
    # an absolute script path: ROOT / script is the script
    monkeypatch.setattr(pages, "PAGES", {"Tiny": (str(script), [pages.Call("kpis.funnel", "filters")])})
    (problem,) = pages.check_matches_pages()
    assert "check_database" in problem


def test_filter_states_are_the_issues(tmp_path: Path) -> None:
    url = write_demo_database(tmp_path, ACCOUNTS, SEED)
    engine = make_engine(url, read_only=True)
    try:
        default, freq, cut, _bounds = pages.state_view(engine, "default")
        assert freq == "month" and default.start.day == 1 and cut <= default.end
        assert (default.end - default.start).days > 365  # 12 full months and the current one
        owner, _, _, _ = pages.state_view(engine, "one owner")
        product, _, _, _ = pages.state_view(engine, "one product")
        sliced, _, _, _ = pages.state_view(engine, "region × industry")
        assert (
            len(owner.owners) == len(product.products) == len(sliced.regions) == len(sliced.industries) == 1
        )
        long, freq, _, _ = pages.state_view(engine, "3 years, quarters")
        assert freq == "quarter" and long.end == default.end and (long.end - long.start).days > 3 * 365 - 31
        for page in pages.PAGES:
            times = pages.run_page(engine, page, "one owner")
            assert {c.name for c in pages.PAGES[page][1]} <= set(times), page
            assert all(t >= 0 for t in times.values())
        # --calls: only the named calls, with the CPU seconds of each
        cpu: dict[str, float] = {}
        times = pages.run_page(engine, "Sales pipeline", "one owner", {"stage_durations"}, cpu)
        assert set(times) == set(cpu) == {"stage_durations"}
        assert cpu["stage_durations"] >= 0
    finally:
        engine.dispose()


@pytest.mark.slow
def test_fresh_processes_and_the_table(tmp_path: Path) -> None:
    url = write_demo_database(tmp_path, ACCOUNTS, SEED)
    states = ["default", "one product"]
    result = pages.run_benchmark(url, ["Overview", "Data quality"], states, runs=1, log=lambda _line: None)
    rows = {(r["page"], r["state"]): r for r in result["rows"]}
    # Data quality does not follow the sidebar filters: measured once
    assert set(rows) == {("Overview", "default"), ("Overview", "one product"), ("Data quality", "default")}
    for row in rows.values():
        assert row["change_s"] > 0 and row["first_s"] > 0 and row["peak_rss_mb"] > 0
        assert row["change_vs_overview"] > 0
    assert rows[("Overview", "default")]["change_vs_overview"] == 1.0
    table = pages.markdown_table(result, states)
    assert "| Data quality |" in table and "| Overview |" in table and "—" in table


def test_an_unknown_call_is_refused_before_any_database_is_built(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        pages.main(["--size", "M", "--calls", "stage_durations", "no_such_call"])
    assert "no_such_call" in capsys.readouterr().err


def test_two_databases_side_by_side() -> None:
    def result(url: str, seconds: float) -> dict:
        return {"url": url, "rows": [{"page": "Overview", "state": "default", "change_s": seconds}]}

    duck, pg = (
        result("duckdb:////work/bench/M.duckdb", 0.5),
        result("postgresql+psycopg://h/crm_bench_m", 1.5),
    )
    table = pages.versus_table(duck, pg, ["default", "one owner"])
    assert table.splitlines()[0] == "| page | state | duckdb M.duckdb | postgresql crm_bench_m | ratio |"
    assert table.splitlines()[2] == "| Overview | default | 500 ms | 1.5 s | 3.0× |"
    assert len(table.splitlines()) == 3  # no row for a state neither measured
