"""forecasting.store: forecasts stored beside the database, read back identical by any process.

* Round trip: a forecast read back equals the one computed, field by field — frames and
  series exactly (dtypes, index and its type, column index, the history's ``freq``; floats
  bit for bit, NaN included) — for a 48-month seasonal series (every model, calibrated
  intervals), a 14-month one with a missing month and a missing value, one too short to
  backtest, a constant one and an empty one.
* The key changes with the series' values, dates and name, with every argument and with
  the method's version (the ``forecasting`` sources, statsmodels' version).
* ``revenue_forecast`` on DuckDB, SQLite and PostgreSQL: computed once, then read back (no
  model fitted) identical.
* A store written by another process is read back, equal to the forecast computed afresh
  here; reading it back imports no statsmodels.
* The demo and an import (wired as the command line wires them) store the forecast the
  Forecast page opens on — the page benchmark's default and "3 years, quarters" states
  then fit nothing; ``python -m crm_data forecasts`` computes it once, then finds it.
* A corrupt, foreign or tampered row is not trusted: the forecast is computed again and
  stored over it.

Revenue fixture: account A1 pays 1000 + 10·k on the 15th of month k = 0..13 (2025-01 ..
2026-02); A2 pays 5000 on 2025-01-20. With TODAY = 2026-11-15 the series is 2025-01 ..
2026-02, 14 months: 6000 (1000 + 5000), then 1010, 1020, …, 1130.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import hooks, schema
from crm_data.cli import main
from crm_data.demo import generate
from crm_data.engines import make_engine
from crm_data.importing import import_paths
from crm_data.stored_results import ResultStore
from forecasting import revenue_forecast, selection
from forecasting import store as store_module
from forecasting.result import FORECASTS, ForecastResult, forecast_key
from forecasting.revenue import monthly_revenue
from forecasting.store import (
    DEPENDENCIES,
    KIND,
    STORE_VARIABLE,
    ForecastStore,
    default_history_filters,
    method_version,
    stored_forecast,
    stored_key,
    version_of,
)
from kpis.filters import Filters
from tests.crm_data.test_importing import write_bundle

ROOT = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 11, 15)
HISTORY = Filters("2025-01-01", "2026-03-01")
SERIES = [6000.0, *(1000.0 + 10 * k for k in range(1, 14))]


@pytest.fixture(autouse=True)
def _store_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The store on (the suite turns it off), and no store engine kept past the test."""
    monkeypatch.setenv(STORE_VARIABLE, "on")
    yield
    store_module.forget_opened()


def months(n: int, start: str = "2021-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="MS")


def seasonal(n: int) -> pd.Series:
    t = np.arange(n)
    noise = np.random.default_rng(7).normal(0.0, 30.0, n)
    values = 1000.0 + 10.0 * t + 200.0 * np.sin(2 * np.pi * t / 12) + noise
    return pd.Series(np.round(values, 2), index=months(n), name="revenue")


def gappy() -> pd.Series:
    series = seasonal(14).drop(months(14)[5])  # a missing month
    series.iloc[8] = np.nan  # a missing value
    return series


CASES = {
    "48 months, seasonal": lambda: seasonal(48),
    "14 months, a gap and a NaN": lambda: gappy(),
    "5 months: no backtest": lambda: seasonal(5),
    "constant": lambda: pd.Series(5.0, index=months(12), name="revenue"),
    "empty": lambda: pd.Series([], index=pd.DatetimeIndex([]), dtype=float, name="revenue"),
}


def assert_identical(a: ForecastResult, b: ForecastResult) -> None:
    """Field by field: frames and series exactly (types of index and values included)."""
    for field in dataclasses.fields(ForecastResult):
        x, y = getattr(a, field.name), getattr(b, field.name)
        assert type(x) is type(y), field.name
        if isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y, check_exact=True)
            assert type(x.index) is type(y.index) and x.index.equals(y.index), field.name
            assert x.columns.dtype == y.columns.dtype, field.name
        elif isinstance(x, pd.Series):
            pd.testing.assert_series_equal(x, y, check_exact=True, check_freq=True)
            assert type(x.index) is type(y.index) and x.index.freq == y.index.freq, field.name
            assert x.index.name == y.index.name, field.name
        else:
            assert repr(x) == repr(y), field.name
            if isinstance(x, list):
                assert all(type(u) is type(v) for u, v in zip(x, y, strict=True)), field.name


def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every forecast computed from now on (not read back) appends to the returned list."""
    calls: list[int] = []
    real = selection._forecast

    def counting(*args: object, **kwargs: object) -> ForecastResult:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(selection, "_forecast", counting)
    return calls


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ForecastStore]:
    results = ResultStore(sa.create_engine(f"sqlite:///{tmp_path / 'store.sqlite'}"), owned=True)
    yield ForecastStore(results)
    results.dispose()


@pytest.mark.parametrize("case", list(CASES))
def test_a_forecast_read_back_is_the_forecast_computed(
    case: str, store: ForecastStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    series = CASES[case]()
    computed = stored_forecast(series, store=store)
    FORECASTS.cache_clear()
    calls = counted(monkeypatch)
    read = stored_forecast(series, store=store)
    assert calls == []  # read back: nothing fitted
    assert_identical(read, computed)
    if case == "48 months, seasonal":  # the richest result: every model, calibrated intervals
        assert len(computed.backtest) == 4 and computed.calibrated and computed.held_out.points > 0
    if case == "empty":
        assert computed.model == "none"


def test_the_key_changes_with_the_series_the_arguments_and_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    series = seasonal(24)
    base = stored_key(forecast_key(series, 12, None, 12, False))
    assert stored_key(forecast_key(series.copy(), 12, None, 12, False)) == base  # same content
    changed = series.copy()
    changed.iloc[5] += 0.01
    later = series.copy()
    later.index = months(24, "2021-02-01")
    others = [
        forecast_key(changed, 12, None, 12, False),
        forecast_key(later, 12, None, 12, False),
        forecast_key(series.rename("other"), 12, None, 12, False),
        forecast_key(series, 6, None, 12, False),
        forecast_key(series, 12, "theta", 12, False),
        forecast_key(series, 12, None, 6, False),
        forecast_key(series, 12, None, 12, True),
    ]
    keys = {stored_key(key) for key in others if key is not None}
    assert len(keys) == len(others) and base not in keys
    monkeypatch.setattr(store_module, "_version", "another version of the method")
    assert stored_key(forecast_key(series, 12, None, 12, False)) != base


def test_the_version_changes_with_the_sources_and_the_libraries(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "models" / "b.py").write_text("y = 2\n")
    installed = {"statsmodels": "0.15.0", "numpy": "2.4.6"}
    first = version_of(tmp_path, installed)
    assert version_of(tmp_path, dict(installed)) == first
    (tmp_path / "models" / "b.py").write_text("y = 3\n")
    edited = version_of(tmp_path, installed)
    (tmp_path / "c.py").write_text("")
    added = version_of(tmp_path, installed)
    upgraded = version_of(tmp_path, {**installed, "statsmodels": "0.15.1"})
    assert len({first, edited, added, upgraded}) == 4
    # a module left out (one that only stores and reads back) may change: the same version
    kept = version_of(tmp_path, installed, leave_out=["c.py"])
    (tmp_path / "c.py").write_text("def put(): ...\n")
    assert version_of(tmp_path, installed, leave_out=["c.py"]) == kept
    assert version_of(tmp_path, installed) != added
    # this package's sources but the storage modules, and the installed statsmodels, scipy,
    # numpy and pandas
    assert "statsmodels" in DEPENDENCIES
    assert set(store_module.STORAGE_MODULES) == {"store.py", "fit_store.py"}
    assert method_version() == version_of(
        Path(store_module.__file__).resolve().parent,
        {name: importlib.metadata.version(name) for name in DEPENDENCIES},
        leave_out=store_module.STORAGE_MODULES,
    )


def fill(engine: sa.Engine) -> sa.Engine:
    """The revenue fixture (module docstring)."""
    accounts = [
        {"account_id": "A1", "name": "Small Co", "segment": "SMB", "created_at": dt.datetime(2024, 6, 1)},
        {
            "account_id": "A2",
            "name": "Big Co",
            "segment": "Enterprise",
            "created_at": dt.datetime(2024, 6, 1),
        },
    ]
    payments = [
        {"payment_id": f"p{k}", "account_id": "A1", "amount": 1000.0 + 10 * k,
         "paid_at": (pd.Timestamp("2025-01-15") + pd.DateOffset(months=k)).to_pydatetime()}
        for k in range(14)
    ]  # fmt: skip
    payments.append(
        {"payment_id": "big", "account_id": "A2", "paid_at": dt.datetime(2025, 1, 20), "amount": 5000.0}
    )
    with engine.begin() as c:
        c.execute(sa.insert(schema.accounts), accounts)
        c.execute(sa.insert(schema.payments), payments)
    return engine


def test_revenue_forecast_is_computed_once_then_read_back(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(db)
    calls = counted(monkeypatch)
    first = revenue_forecast(db, HISTORY, today=TODAY)
    assert first.history.tolist() == SERIES and calls == [1]
    FORECASTS.cache_clear()  # another process: only the store knows it
    again = revenue_forecast(db, HISTORY, today=TODAY)
    assert calls == [1]  # read back
    assert_identical(again, first)
    if db.dialect.name != "postgresql":  # beside the file; on PostgreSQL in the database itself
        database = Path(str(db.url.database))
        assert database.with_name(database.stem + "-auth.sqlite").exists()
    # store=False: neither read nor written
    FORECASTS.cache_clear()
    revenue_forecast(db, HISTORY, today=TODAY, store=False)
    assert calls == [1, 1]


def test_a_forecast_stored_by_another_process_is_read_back_without_statsmodels(
    make_db: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = fill(make_db("duckdb"))  # type: ignore[operator]
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    code = (
        "import datetime as dt, sys\n"
        "from crm_data.engines import make_engine\n"
        "from kpis.filters import Filters\n"
        "import forecasting\n"
        f"engine = make_engine({url!r}, read_only=True)\n"
        "names = forecasting.MODELS  # the page's model list\n"
        "result = forecasting.revenue_forecast(engine, Filters('2025-01-01', '2026-03-01'), "
        "today=dt.date(2026, 11, 15))\n"
        "print(result.model, 'statsmodels' in sys.modules)\n"
    )
    env = {**os.environ, STORE_VARIABLE: "on"}

    def run() -> list[str]:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    model, imported = run()
    assert imported == "True"  # computed there, and stored
    assert run() == [model, "False"]  # read back by the next process: no statsmodels
    engine = make_engine(url, read_only=True)
    try:
        calls = counted(monkeypatch)
        read = revenue_forecast(engine, HISTORY, today=TODAY)
        assert calls == [] and read.model == model
        FORECASTS.cache_clear()
        fresh = revenue_forecast(engine, HISTORY, today=TODAY, store=False)
        assert calls == [1]
        assert_identical(read, fresh)
    finally:
        engine.dispose()


def stored_default(engine: sa.Engine, today: dt.date | None) -> ForecastResult | None:
    """The stored forecast of the Forecast page's default series, or None."""
    filters = default_history_filters(engine, today)
    assert filters is not None
    series, _ = monthly_revenue(engine, filters, today)
    store = ForecastStore.beside(engine)
    assert store is not None
    return store.get(forecast_key(series, 12, None, 12, False))


def test_the_demo_stores_the_forecast_the_page_opens_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.pages import run_page

    engine = make_engine(f"duckdb:///{tmp_path / 'demo.duckdb'}")
    try:
        with hooks.unwired():
            store_module.listen()  # as the command line wires it
            generate(engine, accounts=30, seed=4, progress=False)
        assert stored_default(engine, None) is not None
        FORECASTS.cache_clear()  # a new server process
        calls = counted(monkeypatch)
        for state in ("default", "3 years, quarters"):  # the page's defaults, as the benchmark opens them
            run_page(engine, "Forecast", state, calls=["revenue_forecast"])
        assert calls == []
    finally:
        engine.dispose()


BUNDLE = {
    "accounts": "account_id,name,created_at\nA1,Small Co,2024-06-01\nA2,Big Co,2024-06-01\n",
    "payments": "payment_id,account_id,paid_at,amount\n"
    + "".join(f"p{k},A1,{pd.Timestamp('2025-01-15') + pd.DateOffset(months=k):%Y-%m-%d},{1000 + 10 * k}\n"
              for k in range(14))
    + "big,A2,2025-01-20,5000\n",
}  # fmt: skip


def test_the_command_and_an_import_store_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    engine = make_engine(url)
    with hooks.unwired():  # an analyst's import from Python: nothing computed ahead
        assert import_paths(engine, [write_bundle(tmp_path / "first", BUNDLE)], today=TODAY).ok
    assert stored_default(engine, TODAY) is None
    engine.dispose()
    calls = counted(monkeypatch)
    assert main(["forecasts", "--url", url]) == 0
    assert "revenue forecast, whole company (14 months): computed and stored" in capsys.readouterr().out
    assert main(["forecasts", "--url", url]) == 0
    assert "revenue forecast, whole company (14 months): already stored" in capsys.readouterr().out
    assert calls == [1]
    # an import adding a month: the import computes the new series' forecast after its commit
    engine = make_engine(url)
    try:
        with hooks.unwired():
            store_module.listen()  # as the command line and the Import page wire it
            payment = "payment_id,account_id,paid_at,amount\np14,A1,2026-03-15,1140\n"
            report = import_paths(
                engine, [write_bundle(tmp_path / "more", {"payments": payment})], today=TODAY
            )
            assert report.ok and report.warnings == [], report.render()
            assert calls == [1, 1]
            stored = stored_default(engine, TODAY)
            assert stored is not None and stored.history.tolist() == [*SERIES, 1140.0]
            # an import that cannot change the series (no payment, no dated record): not even looked up
            monkeypatch.setattr(
                store_module, "compute_ahead", lambda *args, **kwargs: pytest.fail("looked up")
            )
            account = "account_id,name,created_at\nA3,New Co,2026-03-01\n"
            report = import_paths(
                engine, [write_bundle(tmp_path / "acc", {"accounts": account})], today=TODAY
            )
            assert report.ok and report.warnings == [], report.render()
    finally:
        engine.dispose()


SMB = [1000.0 + 10 * k for k in range(14)]  # A1 alone (segment SMB)
PEOPLE = {"alice": {"segments": ["SMB"]}, "bob": {"segments": ["SMB"]}, "carol": {"segments": ["Enterprise"]},
          "root": None}  # fmt: skip


def read_back(url: str, *selections: Callable[[Filters], Filters]) -> list[ForecastResult]:
    """The revenue forecasts of ``selections`` (each made from the Forecast page's default
    filters) as a new dashboard process reads them: nothing kept in this one, the database
    read-only."""
    FORECASTS.cache_clear()
    engine = make_engine(url, read_only=True)
    try:
        page = default_history_filters(engine)
        assert page is not None
        return [revenue_forecast(engine, select(page)) for select in selections]
    finally:
        engine.dispose()
        store_module.forget_opened()


def test_each_signed_in_scope_and_each_filter_value_is_computed_ahead(
    make_db: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sign-in accounts alice and bob see segment SMB, carol segment Enterprise, root
    everything. ``forecasts --each segments`` forecasts three series once each: the whole
    company (SERIES), SMB's (A1 alone: 1000 + 10·k) — alice's and bob's view, and the filter
    bar's segment SMB — and Enterprise's (A2 alone: 5000 in 2025-01, then nothing) — carol's
    view and segment Enterprise. The pages of alice and carol then read theirs back; an
    import of a payment in a new month computes the three again (root's view is the whole
    company's; the --each values are the command's, not the import's)."""
    from crm_data.accounts import AccountStore
    from kpis.filters import Scope

    engine = fill(make_db("duckdb"))  # type: ignore[operator]
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    accounts = AccountStore.open(url)
    for name, scope in PEOPLE.items():
        accounts.add(name, role="viewer", scope=scope, password="correct horse battery", actor="test")
    accounts.dispose()
    calls = counted(monkeypatch)
    assert main(["forecasts", "--url", url, "--each", "sectors"]) == 2
    assert "--each: not filter lists: sectors" in capsys.readouterr().err and calls == []
    assert main(["forecasts", "--url", url, "--each", "segments", "--jobs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [
        "revenue forecast, whole company (14 months)",
        "revenue forecast, segment SMB (for alice, bob) (14 months)",
        "revenue forecast, segment Enterprise (for carol) (14 months)",
        "revenue forecast, segment Enterprise (14 months)",
        "revenue forecast, segment SMB (14 months)",
    ]
    assert [line.split(": ")[1].split(" in ")[0] for line in lines] == [
        "computed and stored", "computed and stored", "computed and stored", "already stored", "already stored"
    ]  # fmt: skip
    assert calls == [1, 1, 1]
    smb, enterprise = read_back(
        url,
        lambda page: page.within(Scope(segments=("SMB",))),
        lambda page: page.within(Scope(segments=("Enterprise",))),
    )
    assert calls == [1, 1, 1]  # read back
    assert smb.history.tolist() == SMB
    assert enterprise.history.tolist() == [5000.0] + [0.0] * 13
    # an import (wired as the command line wires it): the series that changed, for every signed-in scope
    engine = make_engine(url)
    try:
        with hooks.unwired():
            store_module.listen()
            payment = "payment_id,account_id,paid_at,amount\np14,A1,2026-03-15,1140\n"
            report = import_paths(
                engine, [write_bundle(tmp_path / "more", {"payments": payment})], today=TODAY
            )
        assert report.ok and report.warnings == [], report.render()
    finally:
        engine.dispose()
        store_module.forget_opened()
    assert calls == [1] * 6  # each series gained March (Enterprise's a 0): the three again, after the commit


def test_lists_joined_by_a_comma_are_forecast_for_each_combination(
    make_db: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``forecasts --each segments,regions``: each (segment, region) pair chosen together.
    A1 (SMB) is in North, A2 (Enterprise) in South, so of the four pairs two hold revenue —
    SMB & North is A1's series (1000 + 10·k), Enterprise & South A2's (5000, then nothing) —
    and two hold none (nothing to forecast). Three forecasts: the company's and the two
    pairs'; the page with that segment and region chosen reads its pair's back. More
    selections than the store keeps: refused before anything is computed."""

    engine = fill(make_db("duckdb"))  # type: ignore[operator]
    with engine.begin() as c:
        c.execute(
            sa.update(schema.accounts).where(schema.accounts.c.account_id == "A1").values(region="North")
        )
        c.execute(
            sa.update(schema.accounts).where(schema.accounts.c.account_id == "A2").values(region="South")
        )
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    calls = counted(monkeypatch)
    assert main(["forecasts", "--url", url, "--each", "segments,sectors"]) == 2
    assert "--each: not filter lists: sectors" in capsys.readouterr().err and calls == []
    with monkeypatch.context() as patched:
        patched.setattr(store_module, "MAX_ROWS", 4)
        assert main(["forecasts", "--url", url, "--each", "segments,regions"]) == 2
    assert "5 selections, more than the 4 forecasts the store keeps" in capsys.readouterr().err
    assert calls == []
    assert main(["forecasts", "--url", url, "--each", "segments,regions", "--jobs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0].split(": ")[0] for line in lines] == [
        "revenue forecast, whole company",
        "revenue forecast, segment Enterprise, region North",
        "revenue forecast, segment Enterprise, region South",
        "revenue forecast, segment SMB, region North",
        "revenue forecast, segment SMB, region South",
    ]
    assert [line.split(": ", 1)[1].split(" in ")[0] for line in lines] == [
        "computed and stored", "no revenue", "computed and stored", "computed and stored", "no revenue"
    ]  # fmt: skip
    assert calls == [1, 1, 1]
    smb_north, enterprise_south = read_back(
        url,
        lambda page: page.replace(segments=("SMB",), regions=("North",)),
        lambda page: page.replace(segments=("Enterprise",), regions=("South",)),
    )
    assert calls == [1, 1, 1]  # read back
    assert smb_north.history.tolist() == SMB
    assert enterprise_south.history.tolist() == [5000.0] + [0.0] * 13


def test_forecasts_computed_by_several_processes_are_the_ones_computed_here(make_db: object) -> None:
    """``forecasts --each segments --jobs 2``: the three series of the test above, forecast
    by two spawned processes, stored identical to the forecasts of this process. Run as the
    command (a process of its own, as a user or the scheduler runs it): a spawned worker
    imports its parent's main module, which inside the test runner may be any script a
    test ran before."""
    engine = fill(make_db("duckdb"))  # type: ignore[operator]
    url = engine.url.render_as_string(hide_password=False)
    chosen = store_module.ahead_selections(engine, each=["segments"])
    engine.dispose()
    assert [s.what for s in chosen] == ["revenue forecast, whole company", "revenue forecast, segment Enterprise",
                                        "revenue forecast, segment SMB"]  # fmt: skip
    command = [sys.executable, "-m", "crm_data", "forecasts", "--url", url, "--each", "segments", "--jobs", "2"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, STORE_VARIABLE: "on"}, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line.split(": ")[1].split(" in ")[0] for line in done.stdout.splitlines()] == [
        "computed and stored"
    ] * 3
    FORECASTS.cache_clear()
    engine = make_engine(url, read_only=True)
    store = ForecastStore.open(url)
    try:
        assert store is not None
        for chosen_one in chosen:
            series, _ = monthly_revenue(engine, chosen_one.filters)
            read = store.get(forecast_key(series, 12, None, 12, False))
            assert read is not None
            assert_identical(read, selection.forecast(series, 12, None))
    finally:
        engine.dispose()
        store_module.forget_opened()


CHEAP = pd.Series([3.0, 5.0, 4.0, 6.0, 5.0], index=months(5), name="revenue")  # the naive forecast only
TAMPERED = ["not JSON", "not a body", "another key's", "a complex dtype", "a text value", "an unknown model",
            "another version", "another kind"]  # fmt: skip


@pytest.mark.parametrize("tamper", TAMPERED)
def test_a_corrupt_or_foreign_row_is_computed_again_and_replaced(
    tamper: str, store: ForecastStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = forecast_key(CHEAP, 12, None, 12, False)
    assert key is not None
    address = stored_key(key)
    good = stored_forecast(CHEAP, store=store)
    row = store.results.get(address)
    assert row is not None and row.kind == KIND
    body, kind, version = json.loads(row.body), KIND, method_version()
    text = None
    if tamper == "not JSON":
        text = row.body[: len(row.body) // 2]
    elif tamper == "not a body":
        text = "{}"
    elif tamper == "another key's":
        body["key"] = "0" * 40
    elif tamper == "a complex dtype":
        body["forecast"]["data"][1]["dtype"] = "complex128"
    elif tamper == "a text value":
        body["forecast"]["data"][1]["values"][0] = "1e9"
    elif tamper == "an unknown model":
        body["model"] = "__import__('os').system('true')"
    elif tamper == "another version":
        version = "an older version of the method"
    else:
        kind = "another kind"
    assert store.results.put(address, kind, version, text if text is not None else json.dumps(body))
    FORECASTS.cache_clear()
    assert store.get(key) is None  # not trusted
    calls = counted(monkeypatch)
    again = stored_forecast(CHEAP, store=store)
    assert calls == [1]  # computed again
    assert_identical(again, good)
    read = store.get(key)  # and stored over the bad row
    assert read is not None
    assert_identical(read, good)


def test_read_only_the_store_is_read_but_not_written(
    store: ForecastStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_VARIABLE, "read")
    reader = ForecastStore(store.results, writable=False)
    stored_forecast(CHEAP, store=reader)
    assert store.results.keys() == []
    FORECASTS.cache_clear()
    stored_forecast(CHEAP, store=store)
    FORECASTS.cache_clear()
    calls = counted(monkeypatch)
    stored_forecast(CHEAP, store=reader)
    assert calls == [] and len(store.results.keys()) == 1
    monkeypatch.setenv(STORE_VARIABLE, "off")
    assert ForecastStore.beside(sa.create_engine("sqlite:///x.sqlite")) is None
