"""The demo generator on DuckDB, SQLite and PostgreSQL: every table filled, reproducible,
consistent (enums, references, stage order) and telling the story it promises (defect
spike, churn driven by NPS and unresolved tickets, refunds, costs, quality problems)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import demo as demo_module
from crm_data import demo_accounts, schema
from crm_data.demo import generate
from crm_data.engines import make_engine
from crm_data.quality import SOFT_REFERENCES
from kpis import Filters, customer_base, first_contact_resolution, revenue, rollups, survey_scores, win_rate
from kpis.core import period_starts
from tests.conftest import pg_scratch_schema_engine

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = 300
SEED = 7
TODAY = dt.datetime.now(dt.UTC).date()


def _read_all(engine: sa.Engine) -> dict[str, pd.DataFrame]:
    with engine.connect() as conn:
        return {t.name: pd.DataFrame(conn.execute(sa.select(t)).mappings().all()) for t in schema.TABLES}


@pytest.fixture(scope="module", params=["duckdb", "sqlite", "postgresql"])
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Demo data for ACCOUNTS accounts on one database kind: counts, engine and all rows."""
    kind = request.param
    if kind == "postgresql":
        engine = pg_scratch_schema_engine(request.getfixturevalue("pg_database_url"), "demo")
    else:
        suffix = "duckdb" if kind == "duckdb" else "sqlite"
        engine = make_engine(f"{kind}:///{tmp_path_factory.mktemp('demo') / f'demo.{suffix}'}")
    counts = generate(engine, accounts=ACCOUNTS, seed=SEED, progress=False)
    yield {"kind": kind, "engine": engine, "counts": counts, "rows": _read_all(engine)}
    engine.dispose()


def test_every_table_is_filled_and_counted(demo: dict) -> None:
    counts, rows = demo["counts"], demo["rows"]
    assert set(counts) == set(schema.TABLE_NAMES)
    for table in schema.TABLE_NAMES:
        assert counts[table] > 0, table
        assert len(rows[table]) == counts[table], table
    assert counts["accounts"] == ACCOUNTS
    # about five deals per account, several stage rows per deal
    assert 3.5 <= counts["deals"] / ACCOUNTS <= 7.0
    assert counts["deal_stage_history"] > 3 * counts["deals"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A second, independent run with the demo fixture's arguments (DuckDB)."""
    engine = make_engine(f"duckdb:///{tmp_path_factory.mktemp('reference') / 'ref.duckdb'}")
    counts = generate(engine, accounts=ACCOUNTS, seed=SEED, progress=False)
    rows = _read_all(engine)
    engine.dispose()
    return {"counts": counts, "rows": rows}


def test_same_seed_same_rows_on_every_database(demo: dict, reference: dict) -> None:
    """Same seed and day: identical rows, whatever the database (a DuckDB run as the reference)."""
    assert reference["counts"] == demo["counts"]
    expected = reference["rows"]
    for table in ("accounts", "deals", "deal_stage_history", "payments", "survey_responses", "costs"):
        key = list(expected[table].columns[:3])
        left = expected[table].sort_values(key).reset_index(drop=True)
        right = demo["rows"][table].sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(left, right, check_dtype=False, check_exact=False, rtol=1e-12)


def test_different_seed_different_rows(tmp_path: Path) -> None:
    one = make_engine(f"duckdb:///{tmp_path / 'one.duckdb'}")
    two = make_engine(f"duckdb:///{tmp_path / 'two.duckdb'}")
    today = dt.date(2026, 11, 30)
    generate(one, accounts=200, seed=1, progress=False, today=today)
    generate(two, accounts=200, seed=2, progress=False, today=today)
    a, b = _read_all(one), _read_all(two)
    assert not a["accounts"]["segment"].equals(b["accounts"]["segment"])
    assert a["payments"]["amount"].sum() != b["payments"]["amount"].sum()
    one.dispose()
    two.dispose()


def test_regenerating_replaces_the_data(tmp_path: Path) -> None:
    engine = make_engine(f"duckdb:///{tmp_path / 'again.duckdb'}")
    generate(engine, accounts=250, seed=3, progress=False)
    counts = generate(engine, accounts=120, seed=3, progress=False)
    rows = _read_all(engine)
    assert len(rows["accounts"]) == 120 == counts["accounts"]
    assert len(rows["deals"]) == counts["deals"]
    engine.dispose()


def test_history_covers_three_years_and_reaches_this_month(demo: dict) -> None:
    rows = demo["rows"]
    month = pd.Timestamp(TODAY.replace(day=1))
    midnight = pd.Timestamp(TODAY)
    assert rows["accounts"]["created_at"].min() < month - pd.DateOffset(years=3)
    for table, column in [("deals", "created_at"), ("payments", "paid_at"), ("tickets", "opened_at")]:
        values = pd.to_datetime(rows[table][column])
        assert values.min() < month - pd.DateOffset(years=3) + pd.DateOffset(months=6), table
        if TODAY.day > 3:  # the current month has a few days of data
            assert values.max() >= month, table
        assert values.max() < midnight, f"{table}.{column} reaches into the future"
    days = pd.to_datetime(rows["web_traffic"]["date"])
    assert days.max() == midnight - pd.Timedelta(days=1)
    assert days.min() <= month - pd.DateOffset(years=3)


def test_enum_columns_hold_allowed_values(demo: dict) -> None:
    for (table, column), allowed in schema.ENUMS.items():
        values = set(demo["rows"][table][column].dropna())
        assert values, f"{table}.{column} is empty"
        assert values <= allowed, f"{table}.{column}: {values - allowed}"
    rows = demo["rows"]
    assert set(rows["accounts"]["segment"]) == {"SMB", "Mid-Market", "Enterprise"}
    assert {"EMEA", "North America", "LATAM", "APAC"} == set(rows["accounts"]["region"])
    assert set(rows["survey_responses"].query("survey == 'ces'")["touchpoint"]) >= {
        "support", "signup", "website_visit", "return_exchange"
    }  # fmt: skip
    scores = rows["survey_responses"].groupby("survey")["score"].agg(["min", "max"])
    assert scores.loc["nps", "min"] >= 0 and scores.loc["nps", "max"] <= 10
    assert scores.loc["ces", "min"] >= 1 and scores.loc["ces", "max"] <= 7
    assert rows["survey_responses"]["comment"].notna().any()


REFERENCES = [
    # child table, column, parent table, parent key (declared foreign keys and soft ones)
    *[
        (t.name, fk.parent.name, fk.column.table.name, fk.column.name)
        for t in schema.TABLES
        for fk in t.foreign_keys
    ],
    *SOFT_REFERENCES,  # the references the data-quality check follows
]


def test_every_reference_has_its_parent(demo: dict) -> None:
    rows = demo["rows"]
    assert len(REFERENCES) > 20
    for child, column, parent, key in REFERENCES:
        values = rows[child][column].dropna()
        orphans = set(values) - set(rows[parent][key])
        assert not orphans, f"{child}.{column} -> {parent}.{key}: {sorted(orphans)[:5]}"
    # a contact referenced by a response belongs to the response's account
    merged = (
        rows["survey_responses"]
        .dropna(subset=["contact_id"])
        .merge(rows["contacts"], on="contact_id", suffixes=("", "_contact"))
    )
    assert (merged["account_id"] == merged["account_id_contact"]).all()


def test_stage_history_is_ordered_inside_each_deal(demo: dict) -> None:
    rows = demo["rows"]
    deals = rows["deals"].set_index("deal_id")
    history = rows["deal_stage_history"].merge(rows["pipeline_stages"], on="stage")
    history = history.sort_values(["deal_id", "entered_at"]).join(deals, on="deal_id")
    assert set(history["deal_id"]) == set(deals.index)
    assert (history["entered_at"] >= history["created_at"]).all()
    assert (history["closed_at"].isna() | (history["entered_at"] <= history["closed_at"])).all()
    first = history.groupby("deal_id")["entered_at"].min()
    assert (first == deals.loc[first.index, "created_at"]).all()
    last = history.groupby("deal_id").tail(1).set_index("deal_id")
    closed = deals["status"] != "open"
    assert (last.loc[closed[closed].index, "entered_at"] == deals.loc[closed, "closed_at"]).all()
    assert (last.loc[deals.index[deals["status"] == "won"], "stage"] == "Closed Won").all()
    assert (last.loc[deals.index[deals["status"] == "lost"], "stage"] == "Closed Lost").all()
    assert not last.loc[deals.index[deals["status"] == "open"], "is_closed"].astype(bool).any()
    # lost reasons only on lost deals; open deals without a close date
    assert deals.loc[deals["status"] == "lost", "lost_reason"].notna().all()
    assert deals.loc[deals["status"] != "lost", "lost_reason"].isna().all()
    assert deals.loc[deals["status"] == "open", "closed_at"].isna().all()
    # some won deals skip a stage, some re-enter Proposal
    stages_per_won = history[history["status"] == "won"].groupby("deal_id")["stage"].nunique()
    assert (stages_per_won < 5).any()
    assert (history.groupby(["deal_id", "stage"]).size() > 1).any()


def test_stage_durations_differ_by_segment(demo: dict) -> None:
    rows = demo["rows"]
    won = (
        rows["deals"]
        .query("status == 'won'")
        .merge(rows["accounts"][["account_id", "segment"]], on="account_id")
    )
    days = (won["closed_at"] - won["created_at"]).dt.total_seconds() / 86400
    median = days.groupby(won["segment"]).median()
    assert median["SMB"] < median["Mid-Market"] < median["Enterprise"]


def _quarter(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.to_period("Q")


def test_one_product_has_a_defect_spike_in_one_recent_quarter(demo: dict) -> None:
    tickets = demo["rows"]["tickets"]
    defects = tickets[tickets["category"] == "defect"].assign(quarter=_quarter(tickets["opened_at"]))
    current = pd.Timestamp(TODAY).to_period("Q")
    complete = defects[defects["quarter"] < current]
    per_quarter = complete.groupby(["product_id", "quarter"]).size()
    product, spike = per_quarter.idxmax()
    assert spike >= current - 8, "the spike lies in the last two years"
    own = per_quarter.loc[product]
    first = own.index.min()
    quarters = pd.period_range(first, current - 1, freq="Q")
    own = own.reindex(quarters, fill_value=0)
    others = own.drop(spike)
    assert own[spike] >= 3 * others.mean(), (product, spike, own.to_dict())
    assert own[spike] >= 10


def test_churn_is_higher_with_low_nps_and_unresolved_tickets(demo: dict) -> None:
    rows = demo["rows"]
    subs = rows["subscriptions"]
    running = subs["ended_at"].isna().groupby(subs["account_id"]).any()
    churned = ~running  # every subscription has ended
    nps = rows["survey_responses"].query("survey == 'nps'").groupby("account_id")["score"].mean()
    low, high = nps.index[nps <= 6], nps.index[nps >= 9]
    assert len(low) >= 15 and len(high) >= 15
    assert churned[low].mean() >= 1.5 * churned[high].mean(), (churned[low].mean(), churned[high].mean())
    tickets = rows["tickets"]
    old = tickets["opened_at"] < pd.Timestamp(TODAY) - pd.Timedelta(days=60)
    unresolved = tickets[old & tickets["resolved_at"].isna()]["account_id"].unique()
    with_tickets = tickets["account_id"].unique()
    without = np.setdiff1d(with_tickets, unresolved)
    assert len(unresolved) >= 10
    assert churned[unresolved].mean() >= 1.3 * churned[without].mean()


def test_payments_follow_mrr_with_refunds(demo: dict) -> None:
    rows = demo["rows"]
    payments = rows["payments"]
    assert (payments["amount"] < 0).any(), "refunds"
    assert (payments["amount"] > 0).mean() > 0.98
    # last complete month: invoices ≈ MRR running mid-month (± seasonal usage, partial starts)
    month = (pd.Timestamp(TODAY.replace(day=1)) - pd.DateOffset(months=1)).to_period("M")
    mid = month.to_timestamp() + pd.Timedelta(days=14)
    subs = rows["subscriptions"]
    running = subs[(subs["started_at"] <= mid) & (subs["ended_at"].isna() | (subs["ended_at"] > mid))]
    invoiced = payments[(payments["amount"] > 0) & (payments["paid_at"].dt.to_period("M") == month)][
        "amount"
    ].sum()
    assert 0.8 <= invoiced / running["mrr"].sum() <= 1.25
    # subscription amounts depend on the segment
    mrr = subs.merge(rows["accounts"], on="account_id").groupby("segment")["mrr"].median()
    assert mrr["SMB"] < mrr["Mid-Market"] < mrr["Enterprise"]


def test_costs_in_every_category_and_purpose(demo: dict) -> None:
    costs = demo["rows"]["costs"]
    assert set(costs["category"]) == set(schema.COST_CATEGORIES)
    assert {"acquisition", "retention"} <= set(costs["purpose"])
    assert costs["account_id"].notna().any() and costs["account_id"].isna().any()
    assert (costs["amount"] > 0).all()


def test_quality_problems_are_injected(demo: dict) -> None:
    rows = demo["rows"]
    accounts = rows["accounts"]
    normalised = accounts["name"].str.lower().str.replace(r"\s+(inc\.|ltd)$", "", regex=True)
    spellings = accounts.groupby(normalised)["name"].nunique()
    assert (spellings > 1).any(), "duplicate accounts by name variant"
    contacts = rows["contacts"]
    spellings = contacts.groupby([contacts["account_id"], contacts["email"].str.lower()])["email"].nunique()
    assert (spellings > 1).any(), "the same e-mail in another case"
    assert rows["deals"]["amount"].isna().any()
    history = rows["deal_stage_history"].groupby("deal_id")["entered_at"].max()
    open_deals = rows["deals"].query("status == 'open'")["deal_id"]
    assert (history[open_deals] < pd.Timestamp(TODAY) - pd.Timedelta(days=120)).any(), "stale open deals"


def test_cli_demo_prints_row_counts(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    done = subprocess.run(
        [sys.executable, "-m", "crm_data", "demo", "--accounts", "200", "--url", url, "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "accounts" in done.stdout and "deal_stage_history" in done.stdout
    line = next(li for li in done.stdout.splitlines() if li.strip().startswith("accounts"))
    assert line.split()[-1] == "200"
    assert "demo data" not in done.stderr  # --quiet: no progress bar


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in schema.TABLES
        }


def _fail_on_tickets(*args: object, **kwargs: object) -> None:
    raise RuntimeError("generator broke")


def test_a_failed_run_keeps_the_previous_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(f"duckdb:///{tmp_path / 'keep.duckdb'}")
    before = generate(engine, accounts=150, seed=5, progress=False)
    monkeypatch.setattr(demo_accounts, "_tickets", _fail_on_tickets)
    with pytest.raises(RuntimeError, match="generator broke"):
        generate(engine, accounts=180, seed=6, progress=False)
    assert _counts(engine) == before
    engine.dispose()


def test_chunks_join_up_and_a_failed_chunked_run_leaves_empty_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With chunks of 100 accounts, 250 accounts are three chunks, each committed."""
    monkeypatch.setattr(demo_module, "CHUNK_ACCOUNTS", 100)
    engine = make_engine(f"duckdb:///{tmp_path / 'chunks.duckdb'}")
    counts = generate(engine, accounts=250, seed=8, progress=False)
    rows = _read_all(engine)
    assert counts == _counts(engine)
    assert list(rows["accounts"]["account_id"].sort_values()) == [f"A{i:07d}" for i in range(1, 251)]
    deal_numbers = rows["deals"]["deal_id"].str[1:].astype(int).sort_values()
    assert list(deal_numbers) == list(range(1, len(deal_numbers) + 1))  # ids run on across chunks
    for child, column, parent, key in REFERENCES:
        assert set(rows[child][column].dropna()) <= set(rows[parent][key]), (child, column)

    calls = {"n": 0}
    original = demo_accounts._tickets

    def fail_in_second_chunk(*args: object, **kwargs: object):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("generator broke")
        return original(*args, **kwargs)

    monkeypatch.setattr(demo_accounts, "_tickets", fail_in_second_chunk)
    with pytest.raises(RuntimeError, match="generator broke"):
        generate(engine, accounts=250, seed=9, progress=False)
    assert set(_counts(engine).values()) == {0}
    engine.dispose()


def test_demo_builds_the_rollups_the_kpis_read(demo: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """After ``generate``, the last 12 full months by month come from every roll-up, with the
    numbers of the base tables for each KPI that reads one (unfiltered and for one segment)."""
    monkeypatch.delenv("CRM_ROLLUPS", raising=False)
    engine = demo["engine"]
    with engine.connect() as conn:
        state = conn.execute(sa.select(rollups.state.c.rollup, rollups.state.c.rows)).all()
    assert sorted(name for name, _ in state) == sorted(r.name for r in rollups.ROLLUPS)
    assert all(rows > 0 for _, rows in state)
    end = TODAY.replace(day=1)
    everyone = Filters((pd.Timestamp(end) - pd.DateOffset(months=12)).date(), end)
    segment = demo["rows"]["accounts"]["segment"].dropna().sort_values().iloc[0]
    for f in (everyone, everyone.replace(segments=[segment])):
        monkeypatch.delenv("CRM_ROLLUPS", raising=False)
        periods = period_starts(f.start, f.end, "month")
        assert len(periods) == 12
        with engine.connect() as conn:
            assert all(rollups.read(conn, r, f, "month", periods) is not None for r in rollups.ROLLUPS)
        # customers at start, revenue, NPS responses, won deals, resolved tickets
        for kpi in (customer_base, revenue, survey_scores, win_rate, first_contact_resolution):
            monkeypatch.delenv("CRM_ROLLUPS", raising=False)
            rolled = kpi(engine, f, "month")
            monkeypatch.setenv("CRM_ROLLUPS", "off")
            direct = kpi(engine, f, "month")
            pd.testing.assert_frame_equal(
                rolled, direct, check_exact=False, rtol=1e-9, atol=1e-9, obj=f"{kpi.__name__} {f}"
            )
            assert direct.iloc[:, 1].sum() > 0, (kpi.__name__, f)
