"""The models read from the database: the per-account summary computed in SQL (DuckDB,
SQLite, PostgreSQL) against hand-worked numbers and a pandas reference, and the fits,
cohort projections and holdout checks on a demo database with a pinned today."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from benchmarks.pages import forget_built_statements
from crm_data.engines import make_engine
from forecasting import customer_models as cm
from kpis.clv_summary import customer_summary, customer_summary_counts
from kpis.filters import Filters
from tests.kpis.fixtures import insert, statements_sent

T = dt.datetime
TODAY = dt.date(2024, 6, 15)  # the demo's pinned "today": nothing here depends on the real date
AS_OF = T(2024, 6, 15)

ACCOUNTS = [
    dict(account_id="A1", name="One", segment="SMB", created_at=T(2023, 1, 1)),
    dict(account_id="A2", name="Two", segment="Enterprise", created_at=T(2023, 1, 1)),
    dict(account_id="A3", name="Three", segment="SMB", created_at=T(2023, 1, 1)),
    dict(account_id="A4", name="Four", segment="SMB", created_at=T(2023, 1, 1)),
]
PAYMENTS = [
    # A1: first day 2 Jan (two payments that day = one transaction of 30), repeats on 16 Jan
    # (10) and 30 Jan (a payment of 20 and a same-day refund: spend counts positives, 20).
    ("P1", "A1", T(2024, 1, 2, 9), 10.0),
    ("P2", "A1", T(2024, 1, 2, 17), 20.0),
    ("P3", "A1", T(2024, 1, 16, 12), 10.0),
    ("P4", "A1", T(2024, 1, 30, 23, 59), 20.0),
    ("P5", "A1", T(2024, 1, 30, 1), -5.0),
    # A2: one transaction on 9 Jan; a refund on 10 Jan is not a transaction.
    ("P6", "A2", T(2024, 1, 9), 100.0),
    ("P7", "A2", T(2024, 1, 10), -100.0),
    # A3: before the period (not in it), then 29 Feb 00:00 exactly: in; 1 Mar 00:00: after.
    ("P8", "A3", T(2023, 12, 31, 23), 50.0),
    ("P9", "A3", T(2024, 2, 29, 0, 0), 40.0),
    ("P10", "A3", T(2024, 3, 1, 0, 0), 60.0),
    ("P11", "A3", T(2024, 3, 8, 10), 60.0),
    # A4 only a zero amount: no transaction.
    ("P12", "A4", T(2024, 1, 5), 0.0),
]
PERIOD = Filters(dt.date(2024, 1, 1), dt.date(2024, 3, 1))


@pytest.fixture
def small(db: sa.Engine) -> sa.Engine:
    insert(db, "accounts", ACCOUNTS)
    insert(
        db,
        "payments",
        [dict(zip(("payment_id", "account_id", "paid_at", "amount"), p, strict=True)) for p in PAYMENTS],
    )
    return db


def test_customer_summary_by_hand(small: sa.Engine) -> None:
    out = customer_summary(small, PERIOD, unit="week").set_index("account_id")
    assert list(out.index) == ["A1", "A2", "A3"]
    a1, a2, a3 = out.loc["A1"], out.loc["A2"], out.loc["A3"]
    # A1: 3 transaction days, 2 repeats; t_x = 28 days; T = 2 Jan → 1 Mar = 59 days
    assert (a1["transactions"], a1["frequency"]) == (3, 2)
    assert a1["recency"] == pytest.approx(28 / 7)
    assert a1["T"] == pytest.approx(59 / 7)
    assert a1["mean_repeat_amount"] == pytest.approx((10 + 20) / 2)
    assert a1["total_amount"] == pytest.approx(60)
    assert (a1["first_paid"], a1["last_paid"]) == (dt.date(2024, 1, 2), dt.date(2024, 1, 30))
    assert a1["name"] == "One" and a1["segment"] == "SMB"
    # A2: one transaction, no repeat
    assert (a2["frequency"], a2["recency"]) == (0, 0)
    assert a2["T"] == pytest.approx(52 / 7)
    assert np.isnan(a2["mean_repeat_amount"])
    # A3 enters on 29 Feb (the December payment is before the period): T = 1 day
    assert (a3["frequency"], a3["T"]) == (0, pytest.approx(1 / 7))


def test_customer_summary_units_filters_as_of_and_holdout(small: sa.Engine) -> None:
    days = customer_summary(small, PERIOD, unit="day").set_index("account_id")
    assert days.loc["A1", "T"] == pytest.approx(59) and days.loc["A1", "recency"] == pytest.approx(28)
    months = customer_summary(small, PERIOD, unit="month").set_index("account_id")
    assert months.loc["A1", "T"] == pytest.approx(59 / (365.25 / 12))
    smb = customer_summary(small, PERIOD.replace(segments=("Enterprise",)))
    assert list(smb["account_id"]) == ["A2"]
    # as_of earlier than f.end: T and the payments stop there
    early = customer_summary(small, PERIOD, unit="day", as_of=T(2024, 1, 20, 12)).set_index("account_id")
    assert early.loc["A1", "frequency"] == 1 and early.loc["A1", "T"] == pytest.approx(18.5)
    assert "A3" not in early.index
    held = customer_summary(small, PERIOD, holdout_end=dt.date(2024, 3, 9)).set_index("account_id")
    assert held["holdout_transactions"].to_dict() == {"A1": 0, "A2": 0, "A3": 2}
    with pytest.raises(ValueError, match="holdout_end"):
        customer_summary(small, PERIOD, holdout_end=dt.date(2024, 2, 1))
    with pytest.raises(ValueError, match="unit"):
        customer_summary(small, PERIOD, unit="fortnight")
    empty = customer_summary(small, Filters(dt.date(2020, 1, 1), dt.date(2020, 2, 1)))
    assert empty.empty and "frequency" in empty.columns


# ---------------------------------------------------------------- the demo database


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    """400 demo accounts, seed 7, today pinned to 15 Jun 2024; read-only afterwards."""
    from crm_data.demo import generate

    url = f"duckdb:///{tmp_path_factory.mktemp('clv-demo') / 'demo.duckdb'}"
    writer = make_engine(url)
    try:
        generate(writer, accounts=400, seed=7, today=TODAY, progress=False)
    finally:
        writer.dispose()
    engine = make_engine(url, read_only=True)
    yield engine
    engine.dispose()


def _pandas_summary(engine: sa.Engine, f: Filters, unit: str) -> pd.DataFrame:
    """The same summary in pandas from the raw payments (the reference)."""
    with engine.connect() as c:
        pay = pd.read_sql("SELECT account_id, paid_at, amount FROM payments", c)
    pay = pay[(pay["paid_at"] >= f.start_ts) & (pay["paid_at"] < f.end_ts) & (pay["amount"] > 0)]
    pay = pay.assign(day=pay["paid_at"].dt.floor("D"))
    daily = pay.groupby(["account_id", "day"], as_index=False)["amount"].sum()
    first = daily.groupby("account_id")["day"].transform("min")
    daily = daily.assign(repeat=np.where(daily["day"] > first, daily["amount"], np.nan), first=first)
    g = daily.groupby("account_id")
    size = cm.UNIT_DAYS[unit]
    out = pd.DataFrame(
        {
            "frequency": g.size() - 1,
            "recency": (g["day"].max() - g["first"].min()).dt.days / size,
            "T": (pd.Timestamp(f.end_ts) - g["first"].min()).dt.days / size,
            "mean_repeat_amount": g["repeat"].mean(),
        }
    )
    return out.sort_index()


def test_summary_in_sql_equals_pandas_on_the_demo(demo: sa.Engine) -> None:
    f = Filters(dt.date(2023, 6, 1), dt.date(2024, 6, 1))
    sql = customer_summary(demo, f, unit="week").set_index("account_id")
    reference = _pandas_summary(demo, f, "week")
    assert list(sql.index) == list(reference.index)
    for column in ("frequency", "recency", "T", "mean_repeat_amount"):
        np.testing.assert_allclose(sql[column].to_numpy(float), reference[column].to_numpy(float), rtol=1e-9)


def test_fits_from_the_database_equal_the_pure_fits(demo: sa.Engine) -> None:
    f = Filters(dt.date(2023, 6, 1), dt.date(2024, 6, 1))
    summary = customer_summary(demo, f)
    transactions = cm.fit_bg_nbd(demo, f, unit="week")
    pure = cm.fit_bg_nbd_summary(summary["frequency"], summary["recency"], summary["T"])
    assert transactions.params == pytest.approx(pure.params)
    assert transactions.accounts is not None and len(transactions.accounts) == len(summary)
    predicted = transactions.predict(26)
    assert predicted["alive_probability"].between(0, 1).all()
    assert (predicted["expected_transactions"] >= 0).all()
    # monthly billing: every account pays on a schedule, so the transaction rates do not
    # differ the way the model's Gamma assumes; the fit says so rather than inventing intervals
    assert set(transactions.at_bound) == {"r", "alpha"}
    assert transactions.intervals.set_index("parameter").loc[["r", "alpha"], "low95"].isna().all()
    spend = cm.fit_gamma_gamma(demo, f)
    assert spend.customers == int((summary["frequency"] > 0).sum())


def test_churn_risk_ranks_accounts_and_checks_the_holdout(demo: sa.Engine) -> None:
    f = Filters(dt.date(2023, 6, 1), dt.date(2024, 7, 1))
    risk = cm.churn_risk(demo, f, unit="week", horizon=52, as_of=AS_OF)
    accounts = risk.accounts
    assert not risk.low_sample and len(accounts) > 200
    assert accounts["inactive_probability"].is_monotonic_decreasing
    np.testing.assert_allclose(accounts["alive_probability"] + accounts["inactive_probability"], 1.0)
    assert accounts.loc[accounts["frequency"] == 0, "inactive_probability"].eq(0).all()
    assert (accounts["clv_revenue"].dropna() >= 0).all()
    assert any("schedule" in p for p in risk.problems)
    # the accounts judged likeliest gone paid last long ago
    top = accounts.head(20)
    assert (pd.to_datetime(top["last_paid"]) < pd.Timestamp(2024, 3, 1)).all()
    # holdout: fitted on the first two thirds, the totals within 15 % (measured +5.9 %)
    summary = risk.holdout_summary
    assert summary["accounts"] > 150 and summary["holdout_units"] == pytest.approx(18.14, abs=0.01)
    assert abs(summary["error"]) < 0.15
    assert summary["correlation"] > 0.3
    assert list(risk.holdout.columns) == ["calibration_frequency", "accounts", "actual", "predicted"]
    assert risk.holdout["accounts"].sum() == summary["accounts"]


def test_churn_risk_on_an_empty_or_tiny_selection(demo: sa.Engine) -> None:
    empty = cm.churn_risk(demo, Filters(dt.date(2010, 1, 1), dt.date(2010, 6, 1)))
    assert empty.accounts.empty and empty.transactions is None and empty.low_sample
    assert empty.problems == ("No account paid in this selection.",)
    tiny = cm.churn_risk(demo, Filters(dt.date(2024, 5, 1), dt.date(2024, 6, 1)))
    assert tiny.low_sample or tiny.transactions is None


@pytest.mark.parametrize("freq", ["month", "quarter", "year"])
def test_cohort_sbg_on_the_demo(demo: sa.Engine, freq: str) -> None:
    f = Filters(dt.date(2019, 1, 1), dt.date(2024, 6, 1))
    result = cm.cohort_sbg(demo, f, freq=freq, as_of=AS_OF, horizon=12)
    assert result.pooled is not None and 0 < result.pooled.churn_rate < 0.2
    fits = result.fits
    assert fits["customers"].sum() == result.pooled.customers
    small = fits[fits["customers"] < cm.MIN_CUSTOMERS]
    assert small["low_sample"].all() and (small["fitted"] == "pooled").all()
    curves = result.curves
    for cohort, rows in curves.groupby("cohort"):
        observed = fits.loc[fits["cohort"] == cohort, "periods_observed"].iloc[0]
        assert rows["months_since_start"].max() == observed + 12
        assert rows.loc[rows["kind"] == "projected", "observed_rate"].isna().all()
        assert rows["projected_rate"].is_monotonic_decreasing
    if freq == "month":
        assert fits["low_sample"].all()  # ~5 signups a month at 400 accounts
    if freq == "year":
        assert not fits["low_sample"].all()


def test_cohort_sbg_holdout_on_the_demo(demo: sa.Engine) -> None:
    """The pooled sBG fitted with every cohort's last 6 months held out projects the cohorts'
    survivors in those months within 15 % (measured: −0.5 … +10.2 %, month 6 the worst)."""
    f = Filters(dt.date(2019, 1, 1), dt.date(2024, 6, 1))
    table = cm.cohort_sbg_holdout(demo, f, holdout=6, as_of=AS_OF)
    assert list(table["months_ahead"]) == [1, 2, 3, 4, 5, 6]
    assert (table["cohorts"] > 30).all()
    assert table["relative_error"].abs().max() < 0.15
    assert (table["actual"].diff().dropna() <= 0).all()


def test_cohort_sbg_reuses_cohort_retention(demo: sa.Engine) -> None:
    import kpis

    f = Filters(dt.date(2022, 1, 1), dt.date(2023, 1, 1))
    retention = kpis.cohort_retention(demo, f, as_of=AS_OF)
    result = cm.cohort_sbg(demo, f, as_of=AS_OF)
    sizes = retention[retention["months_since_start"] == 0].set_index("cohort")["customers"]
    shown = result.fits.set_index("cohort")["customers"]
    assert shown.to_dict() == {k: v for k, v in sizes.to_dict().items() if v > 0}


# ---------------------------------------------------------------- aggregated input (issue 15)


def test_customer_summary_counts_by_hand(small: sa.Engine) -> None:
    """A1: 3 transaction days (2, 16, 30 Jan), A2: 1 (9 Jan), A3: 1 (29 Feb); T to 1 Mar.
    Holdout [1 Mar, 15 Mar): A3 pays on 1 and 8 Mar (2 days), A1 and A2 not."""
    counts = customer_summary_counts(small, PERIOD, unit="day", holdout_end=T(2024, 3, 15))
    assert list(counts.columns) == ["frequency", "recency", "T", "holdout_transactions", "accounts"]
    rows = {tuple(r[:4]): r[4] for r in counts.itertuples(index=False)}
    assert rows == {(2, 28.0, 59.0, 0): 1, (0, 0.0, 52.0, 0): 1, (0, 0.0, 1.0, 2): 1}
    plain = customer_summary_counts(small, PERIOD, unit="week")
    assert list(plain.columns) == ["frequency", "recency", "T", "accounts"]
    assert plain["accounts"].sum() == 3
    assert customer_summary_counts(small, Filters(dt.date(2010, 1, 1), dt.date(2010, 2, 1))).empty


def test_customer_summary_counts_group_the_summary(demo: sa.Engine) -> None:
    f = Filters(dt.date(2023, 6, 1), dt.date(2024, 2, 1))
    summary = customer_summary(demo, f, unit="week", holdout_end=AS_OF)
    counts = customer_summary_counts(demo, f, unit="week", holdout_end=AS_OF)
    keys = ["frequency", "recency", "T", "holdout_transactions"]
    reference = summary.groupby(keys).size().rename("accounts").reset_index()
    merged = counts.sort_values(keys).reset_index(drop=True)
    assert len(merged) < len(summary)  # fewer rows than accounts (at 1M accounts: ~1 %)
    for column in [*keys, "accounts"]:  # recency and T are the same numbers, bit for bit
        assert merged[column].tolist() == reference[column].tolist(), column


def test_bg_nbd_holdout_from_grouped_rows_equals_the_per_account_check(demo: sa.Engine) -> None:
    """The check as it was computed on one row per account (the reference below) gives the
    same table and totals as the weighted sums over the grouped rows."""
    f = Filters(dt.date(2023, 6, 1), dt.date(2024, 7, 1))
    table, totals = cm.bg_nbd_holdout(demo, f, "week", as_of=AS_OF)
    split = totals["split"]
    summary = customer_summary(demo, f.replace(end=split.date()), unit="week", holdout_end=AS_OF)
    args = (summary["frequency"], summary["recency"], summary["T"])
    fit = cm.fit_bg_nbd_summary(*args)
    predicted = fit.expected_transactions(totals["holdout_units"], *args)
    actual = summary["holdout_transactions"].to_numpy(float)
    bins = np.minimum(summary["frequency"].to_numpy(), 7)
    reference = (
        pd.DataFrame({"bin": bins, "actual": actual, "predicted": predicted})
        .groupby("bin")
        .agg(accounts=("actual", "size"), actual=("actual", "mean"), predicted=("predicted", "mean"))
    )
    assert table["accounts"].tolist() == reference["accounts"].tolist()
    np.testing.assert_allclose(table["actual"], reference["actual"], rtol=1e-12)
    np.testing.assert_allclose(table["predicted"], reference["predicted"], rtol=1e-12)
    assert totals["accounts"] == len(summary)
    assert totals["actual"] == pytest.approx(actual.sum(), rel=1e-12)
    assert totals["predicted"] == pytest.approx(predicted.sum(), rel=1e-12)
    assert totals["mae"] == pytest.approx(np.mean(np.abs(predicted - actual)), rel=1e-12)
    assert totals["correlation"] == pytest.approx(np.corrcoef(predicted, actual)[0, 1], rel=1e-12)


# ---------------------------------------------------------------- one scan for churn_risk (issue 15)


def test_customer_summary_split_by_hand(small: sa.Engine) -> None:
    """Split at 20 Jan in [1 Jan, 1 Mar): A1 has days 2 and 16 Jan before it (frequency 1,
    recency 14 days, T 18 days) and 30 Jan after it (1 holdout day); A2 one day, 9 Jan (T 11
    days); A3's only day (29 Feb) is after the split, so A3 is not in the calibration rows."""
    from kpis.clv_summary import customer_summary_split

    summary, counts = customer_summary_split(small, PERIOD, T(2024, 1, 20), unit="day")
    pd.testing.assert_frame_equal(summary, customer_summary(small, PERIOD, unit="day"))
    assert list(counts.columns) == ["frequency", "recency", "T", "holdout_transactions", "accounts"]
    rows = {tuple(r[:4]): r[4] for r in counts.itertuples(index=False)}
    assert rows == {(1, 14.0, 18.0, 1): 1, (0, 0.0, 11.0, 0): 1}
    reference = customer_summary_counts(
        small, PERIOD.replace(end=dt.date(2024, 1, 20)), unit="day", holdout_end=T(2024, 3, 1)
    )
    pd.testing.assert_frame_equal(counts, reference, check_dtype=False)
    with pytest.raises(ValueError, match="strictly inside"):
        customer_summary_split(small, PERIOD, T(2024, 3, 1))
    empty, none = customer_summary_split(
        small, Filters(dt.date(2010, 1, 1), dt.date(2010, 2, 1)), T(2010, 1, 9)
    )
    assert empty.empty and none.empty


def test_churn_risk_from_one_scan_equals_the_separate_queries(demo: sa.Engine) -> None:
    """churn_risk reads the summary and the holdout check's rows in one query: the same
    accounts, the same holdout table and totals, bit for bit, as the two queries."""
    f = Filters(dt.date(2023, 6, 1), dt.date(2024, 7, 1))
    risk = cm.churn_risk(demo, f, unit="week", horizon=52, as_of=AS_OF)
    table, totals = cm.bg_nbd_holdout(demo, f, "week", as_of=AS_OF)
    pd.testing.assert_frame_equal(risk.holdout, table)
    assert risk.holdout_summary == totals
    summary = customer_summary(demo, f, unit="week", as_of=AS_OF)
    shown = risk.accounts.sort_values("account_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(shown[summary.columns], summary)


def test_cohort_sbg_on_the_heatmaps_frame_with_its_holdout(demo: sa.Engine) -> None:
    """The page's one call: fitted to the frame it already has, with the holdout check —
    the same numbers as reading the cohorts again and the separate holdout call."""
    import kpis

    f = Filters(dt.date(2019, 1, 1), dt.date(2024, 6, 1))
    retention = kpis.cohort_retention(demo, f, as_of=AS_OF)
    together = cm.cohort_sbg(demo, f, freq="quarter", as_of=AS_OF, horizon=12, holdout=6, retention=retention)
    alone = cm.cohort_sbg(demo, f, freq="quarter", as_of=AS_OF, horizon=12)
    assert alone.holdout is None
    pd.testing.assert_frame_equal(together.fits, alone.fits)
    pd.testing.assert_frame_equal(together.curves, alone.curves)
    pd.testing.assert_frame_equal(together.pooled_curve, alone.pooled_curve)
    assert together.pooled.params == alone.pooled.params
    pd.testing.assert_frame_equal(together.holdout, cm.cohort_sbg_holdout(demo, f, holdout=6, as_of=AS_OF))
    empty = cm.cohort_sbg(demo, Filters(dt.date(2010, 1, 1), dt.date(2010, 2, 1)), as_of=AS_OF, holdout=6)
    assert empty.pooled is None and empty.holdout.empty


def test_first_day_by_arg_min_equals_the_window(small: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB's one aggregate (repeat spend = all days' spend − the first day's, by
    ``arg_min``) gives the frames the portable window form gives, on every database that
    has it (elsewhere both are the window); without names the same rows less name and
    segment, and ``account_names`` reads those for any ids, in their order."""
    from kpis import clv_summary
    from kpis.clv_summary import account_names, customer_summary_split

    split = T(2024, 1, 20)
    fast = customer_summary_split(small, PERIOD, split, unit="day")
    bare, _ = customer_summary_split(small, PERIOD, split, unit="day", names=False)
    clv_summary._statement.cache_clear()
    clv_summary._counts_statement.cache_clear()
    monkeypatch.setattr(clv_summary, "value_at_min", lambda *args: None)
    window = customer_summary_split(small, PERIOD, split, unit="day")
    clv_summary._statement.cache_clear()
    pd.testing.assert_frame_equal(fast[0], window[0])
    pd.testing.assert_frame_equal(fast[1], window[1])
    pd.testing.assert_frame_equal(bare, fast[0].drop(columns=["name", "segment"]))
    names = account_names(small, ["A3", "A1", "NOPE"])
    assert names["account_id"].tolist() == ["A3", "A1", "NOPE"]
    assert (
        names["name"].head(2).tolist() == ["Three", "One"]
        and names["segment"].head(2).tolist() == ["SMB"] * 2
    )
    assert names[["name", "segment"]].iloc[2].isna().all()
    monkeypatch.setattr(clv_summary, "NAME_BATCH", 1)  # a whole list: one read of the table
    pd.testing.assert_frame_equal(account_names(small, ["A3", "A1", "NOPE"]), names)


def test_account_names_bind_the_ids_as_one_array(small: sa.Engine) -> None:
    """``account_names`` sends its ids as one array parameter on DuckDB and PostgreSQL
    (``crm_data.dialects.in_values``: ``account_id = ANY(:ids)``), a parameter per id on
    SQLite; the names, in the order asked, either way (an id twice, an unknown one)."""
    from kpis.clv_summary import account_names

    with statements_sent(small, "FROM accounts") as sent:
        names = account_names(small, ["A3", "A1", "NOPE", "A3"])
    assert names["account_id"].tolist() == ["A3", "A1", "NOPE", "A3"]
    assert names["name"].tolist()[:2] == ["Three", "One"] and names["name"].tolist()[3] == "Three"
    assert pd.isna(names["name"].iloc[2]) and pd.isna(names["segment"].iloc[2])
    ((statement, parameters),) = sent
    values = list(parameters.values()) if isinstance(parameters, dict) else list(parameters)
    if small.dialect.name in ("duckdb", "postgresql"):
        assert "ANY" in statement.upper() and " IN " not in statement.upper()
        assert [sorted(v) for v in values] == [["A1", "A3", "NOPE"]]
    else:
        assert sorted(values) == ["A1", "A3", "NOPE"]


def test_churn_risk_without_names_ranks_the_same_accounts(demo: sa.Engine) -> None:
    """The page's call (``names=False``): the same ranked rows as with names, less the two
    columns; ``ranking`` orders them like the page's sort."""
    f = Filters(dt.date(2023, 6, 1), dt.date(2024, 7, 1))
    named = cm.churn_risk(demo, f, unit="week", horizon=52, as_of=AS_OF)
    bare = cm.churn_risk(demo, f, unit="week", horizon=52, as_of=AS_OF, names=False)
    pd.testing.assert_frame_equal(bare.accounts, named.accounts.drop(columns=["name", "segment"]))
    expected = named.accounts.sort_values(["clv_revenue", "account_id"], ascending=[False, True])
    assert bare.ranking("clv_revenue")["account_id"].tolist() == expected["account_id"].tolist()


def test_churn_risk_computes_the_lifetime_value_of_the_rows_asked_for(
    demo: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``churn_risk`` leaves clv_revenue to the rankings: the CLV's quadrature (53 horizons)
    runs for the distinct (x, T) of the rows a ranking takes, for every account when it
    ranks by clv_revenue or takes them all — and each row's value is the one
    ``customer_lifetime_value`` gives every account at once, bit for bit."""
    f = Filters(dt.date(2023, 6, 1), dt.date(2024, 7, 1))
    horizons: list[tuple[int, int]] = []  # (steps, histories) of each quadrature
    real = cm._future_transactions_steps
    monkeypatch.setattr(
        cm,
        "_future_transactions_steps",
        lambda r, alpha, a, b, steps, x, T: (
            horizons.append((len(steps), len(x))) or real(r, alpha, a, b, steps, x, T)
        ),
    )
    forget_built_statements()  # the fits and the discounted transactions kept by the process
    risk = cm.churn_risk(demo, f, unit="week", horizon=52, as_of=AS_OF, names=False)
    assert risk.transactions is not None and risk.spend is not None
    assert [n for n, _ in horizons if n == 53] == []  # no CLV yet
    accounts = risk.by_account
    every = cm.customer_lifetime_value(
        risk.transactions, risk.spend, accounts["frequency"], accounts["recency"], accounts["T"],
        accounts["mean_repeat_amount"], horizon=52, discount_rate=0.1,
    )  # fmt: skip
    horizons.clear()
    top = risk.ranking("inactive_probability", rows=5)
    histories = len(top[["frequency", "T"]].drop_duplicates())
    assert horizons == [(53, histories)] and histories <= 5
    positions = risk.order[:5]
    np.testing.assert_array_equal(top["clv_revenue"].to_numpy(), every[positions])
    assert risk.by_account["clv_revenue"].notna().sum() == 5  # the others wait
    horizons.clear()
    pd.testing.assert_frame_equal(risk.ranking("inactive_probability", rows=5), top)
    assert horizons == []  # computed once
    ranked = risk.ranking("clv_revenue")
    assert [n for n, _ in horizons] == [53]
    np.testing.assert_array_equal(risk.by_account["clv_revenue"].to_numpy(), every)
    expected = accounts.assign(clv_revenue=every).sort_values(
        ["clv_revenue", "account_id"], ascending=[False, True]
    )
    assert ranked["account_id"].tolist() == expected["account_id"].tolist()


def test_per_account_in_one_pass_by_hand(small: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB aggregates the payments per account in one pass when each of an account's
    payments is on its own day (A2, A5) and groups by day first for the accounts with two
    payments on one day (A1: 10 + 20 on 2 Jan). A5 (added here): 50 on 3 Jan, 25 on 10 Jan,
    then after the 20 Jan split 5 on 25 Jan and 7 on 31 Jan. Worked by hand on every
    database; on DuckDB the same frames as grouping every account by day first."""
    from kpis import clv_summary
    from kpis.clv_summary import customer_summary_split

    insert(small, "accounts", [dict(account_id="A5", name="Five", segment="SMB", created_at=T(2023, 1, 1))])
    insert(
        small,
        "payments",
        [
            dict(payment_id=f"Q{i}", account_id="A5", paid_at=paid, amount=amount)
            for i, (paid, amount) in enumerate(
                [
                    (T(2024, 1, 3, 8), 50.0),
                    (T(2024, 1, 10), 25.0),
                    (T(2024, 1, 25, 23), 5.0),
                    (T(2024, 1, 31), 7.0),
                ]
            )
        ],
    )
    split = T(2024, 1, 20)
    summary, counts = customer_summary_split(small, PERIOD, split, unit="day", names=False)
    rows = summary.set_index("account_id")
    assert list(rows.index) == ["A1", "A2", "A3", "A5"]
    assert rows["transactions"].to_dict() == {"A1": 3, "A2": 1, "A3": 1, "A5": 4}
    assert rows.loc["A1", "total_amount"] == 60 and rows.loc["A1", "mean_repeat_amount"] == 15
    assert rows.loc["A5", "total_amount"] == 87 and rows.loc["A5", "mean_repeat_amount"] == pytest.approx(
        37 / 3
    )
    assert (rows.loc["A5", "first_paid"], rows.loc["A5", "last_paid"]) == (
        dt.date(2024, 1, 3),
        dt.date(2024, 1, 31),
    )
    assert (rows.loc["A5", "recency"], rows.loc["A5", "T"]) == (28, 58)
    assert np.isnan(rows.loc["A2", "mean_repeat_amount"]) and rows.loc["A2", "total_amount"] == 100
    # before the split: A1 2 and 16 Jan (30 → 1 holdout day), A2 9 Jan, A5 3 and 10 Jan (2 holdout days)
    found = {tuple(r[:4]): r[4] for r in counts.itertuples(index=False)}
    assert found == {(1, 14.0, 18.0, 1): 1, (0, 0.0, 11.0, 0): 1, (1, 7.0, 17.0, 2): 1}
    if small.dialect.name == "duckdb":
        end = clv_summary.calibration_end(PERIOD)
        sql = str(clv_summary._statement(small.dialect, PERIOD, end, None, split, False).compile(small))
        assert "bit_or" in sql and "bitstring_agg" not in sql
        clv_summary._statement.cache_clear()
        monkeypatch.setattr(clv_summary, "BITMAP_DAYS", 0)  # every account grouped by day first
        by_day, by_day_counts = customer_summary_split(small, PERIOD, split, unit="day", names=False)
        clv_summary._statement.cache_clear()
        assert "bit_or" not in str(
            clv_summary._statement(small.dialect, PERIOD, end, None, split, False).compile(small)
        )
        clv_summary._statement.cache_clear()
        pd.testing.assert_frame_equal(summary, by_day)
        pd.testing.assert_frame_equal(counts, by_day_counts)


def test_distinct_buckets_by_hand(db: sa.Engine) -> None:
    """Days 100 … 480 (381 days) in buckets of ⌈381 ÷ 127⌉ = 3: days 100, 101, 102 share
    bucket 0 (1 bucket for 3 rows); 100, 103, 480 are buckets 0, 1 and 126 (3 for 3); 477,
    478, 480 are buckets 125, 126, 126 (2 for 3: two distinct days in one bucket). DuckDB
    only (elsewhere None: the summary groups by day)."""
    from crm_data.dialects import bucket_width, distinct_buckets

    assert (bucket_width(100, 480), bucket_width(0, 126), bucket_width(0, 127), bucket_width(5, 5)) == (
        3,
        1,
        2,
        1,
    )
    day = sa.column("day", sa.Integer())
    buckets = distinct_buckets(db.dialect, day, 100, 480)
    if db.dialect.name != "duckdb":
        assert buckets is None
        return
    rows = "(VALUES (1, 100), (1, 101), (1, 102), (2, 100), (2, 103), (2, 480), (3, 477), (3, 478), (3, 480))"
    assert _buckets_per_group(db, buckets, rows) == [(1, 1, 3), (2, 3, 3), (3, 2, 3)]


def _buckets_per_group(db: sa.Engine, buckets: sa.ColumnElement[int], rows: str) -> list[tuple[int, ...]]:
    """(g, buckets, rows) per group g of ``rows`` (a VALUES list of (g, day))."""
    statement = (
        sa.select(sa.column("g"), buckets, sa.func.count())
        .select_from(sa.text(f"{rows} AS t(g, day)"))
        .group_by(sa.column("g"))
        .order_by(sa.column("g"))
    )
    with db.connect() as c:
        return [tuple(r) for r in c.execute(statement)]


def test_distinct_buckets_of_a_bigint_by_hand(db: sa.Engine) -> None:
    """With ``apart`` = 28 (a monthly payer's days), days 100 … 480 (381 days) fit 63
    buckets of ⌈381 ÷ 63⌉ = 7 days, at most 28 wide: bits of a BIGINT. 100, 101, 102 share
    bucket 0 (1 for 3 rows); 100, 107, 480 are buckets 0, 1 and 54 (3 for 3); 470, 476,
    477 are buckets 52, 53, 53 (2 for 3). 63 buckets of 28 days cover 1,764 days; one day
    more and a HUGEINT's 127 buckets (of 14 days) are used. The per-account summary over
    three years (1,096 days: buckets of 18) uses the BIGINT; over five years the HUGEINT."""
    from crm_data.dialects import BUCKETS, NARROW_BUCKETS, bucket_count, bucket_width, distinct_buckets
    from kpis import clv_summary

    assert (NARROW_BUCKETS, BUCKETS) == (63, 127)
    assert (bucket_count(100, 480, 28), bucket_width(100, 480, 63)) == (63, 7)
    assert (bucket_count(0, 1763, 28), bucket_count(0, 1764, 28), bucket_count(100, 480)) == (63, 127, 127)
    assert bucket_width(0, 1764, bucket_count(0, 1764, 28)) == 14
    day = sa.column("day", sa.Integer())
    buckets = distinct_buckets(db.dialect, day, 100, 480, apart=28)
    if db.dialect.name != "duckdb":
        assert buckets is None
        return
    assert "CAST(1 AS BIGINT)" in str(buckets) and "HUGEINT" not in str(buckets)
    rows = "(VALUES (1, 100), (1, 101), (1, 102), (2, 100), (2, 107), (2, 480), (3, 470), (3, 476), (3, 477))"
    assert _buckets_per_group(db, buckets, rows) == [(1, 1, 3), (2, 3, 3), (3, 2, 3)]
    for years, kind in ((3, "BIGINT"), (5, "HUGEINT")):
        f = Filters(dt.date(2024 - years, 6, 1), dt.date(2024, 6, 1))
        sql = str(clv_summary._statement(db.dialect, f, f.end_ts, None, dt.datetime(2023, 6, 1), False))
        assert f"CAST(1 AS {kind}) <<" in sql


def test_grouped_counts_equal_pandas_grouping() -> None:
    """``customer_summary_split``'s calibration rows grouped by one sort of a mixed-radix
    key: the same frame as pandas' sorted ``groupby(...).size()`` — by hand on five rows,
    on 20,000 random rows with negative values, with a column of one value, in the pandas
    fallback (a key over 62 bits) and empty."""
    from kpis.clv_summary import _grouped_counts

    def pandas(columns: dict[str, np.ndarray]) -> pd.DataFrame:
        keys = pd.DataFrame(columns)
        return keys.groupby(list(keys.columns), sort=True).size().rename("accounts").reset_index()

    by_hand = {"a": np.array([2, 1, 2, 1, 2]), "b": np.array([5, 7, 5, 3, 4])}
    assert _grouped_counts(by_hand).values.tolist() == [[1, 3, 1], [1, 7, 1], [2, 4, 1], [2, 5, 2]]
    rng = np.random.default_rng(3)
    cases = [
        {"t": rng.integers(1, 26, 20_000), "span": rng.integers(0, 732, 20_000), "first": rng.integers(-50, 700, 20_000), "h": rng.integers(0, 14, 20_000)},
        {"t": np.full(100, 4), "span": rng.integers(0, 3, 100)},
        {"x": rng.integers(-(2**40), 2**40, 500), "y": rng.integers(0, 2**30, 500)},
        {"t": np.zeros(0, dtype=int), "span": np.zeros(0, dtype=int)},
    ]  # fmt: skip
    for columns in cases:
        pd.testing.assert_frame_equal(_grouped_counts(columns), pandas(columns), check_exact=True)


def test_per_account_with_two_days_in_one_bucket_by_hand(
    small: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over 2024 (366 days: buckets of 3 days from 1 Jan) A6 pays 20 on 1 Jan, 30 on 3 Jan
    (two days, one bucket) and 10 on 20 Feb: on DuckDB it is grouped by day with the
    accounts that share a day — three transactions, total 60, mean repeat spend (30 + 10) ÷
    2 = 20, first and last days 1 Jan and 20 Feb. Split at 1 Feb: before it A6 has 1 and 3
    Jan (frequency 1, recency 2 days, T 31 days) and one day after (20 Feb); A1 2, 16 and 30
    Jan (frequency 2, recency 28, T 30, none after); A2 9 Jan (T 23); A3 none before.
    Every database; on DuckDB the same frames as grouping every account by day, from a
    statement without the first day before the split and the days after it (derived)."""
    from kpis import clv_summary
    from kpis.clv_summary import customer_summary_split

    year = Filters(dt.date(2024, 1, 1), dt.date(2025, 1, 1))
    insert(small, "accounts", [dict(account_id="A6", name="Six", segment="SMB", created_at=T(2023, 1, 1))])
    payments = [(T(2024, 1, 1, 10), 20.0), (T(2024, 1, 3), 30.0), (T(2024, 2, 20, 12), 10.0)]
    insert(
        small,
        "payments",
        [dict(payment_id=f"S{i}", account_id="A6", paid_at=p, amount=a) for i, (p, a) in enumerate(payments)],
    )
    split = T(2024, 2, 1)
    summary, counts = customer_summary_split(small, year, split, unit="day", names=False)
    six = summary.set_index("account_id").loc["A6"]
    assert (six["transactions"], six["frequency"], six["total_amount"], six["mean_repeat_amount"]) == (
        3,
        2,
        60,
        20,
    )
    assert (six["first_paid"], six["last_paid"]) == (dt.date(2024, 1, 1), dt.date(2024, 2, 20))
    assert (six["recency"], six["T"]) == (50, 366)
    found = {tuple(r[:4]): r[4] for r in counts.itertuples(index=False)}
    assert found == {(1, 2.0, 31.0, 1): 1, (2, 28.0, 30.0, 0): 1, (0, 0.0, 23.0, 0): 1}
    if small.dialect.name == "duckdb":
        end = clv_summary.calibration_end(year)
        sql = str(clv_summary._statement(small.dialect, year, end, None, split, False).compile(small))
        assert "bit_or" in sql and "split_first_day" not in sql and "holdout_transactions" not in sql
        clv_summary._statement.cache_clear()
        monkeypatch.setattr(clv_summary, "BITMAP_DAYS", 0)  # every account grouped by day first
        by_day, by_day_counts = customer_summary_split(small, year, split, unit="day", names=False)
        clv_summary._statement.cache_clear()
        pd.testing.assert_frame_equal(summary, by_day)
        pd.testing.assert_frame_equal(counts, by_day_counts)


def test_one_pass_with_a_product_reads_the_shared_day_accounts_again_by_hand(
    small: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One product (P: A1 and A3 subscribe to it, A2 to Q only; A7, not a subscriber, pays
    twice on 5 Jan), January–February split at 20 Jan: A1 (10 + 20 on 2 Jan, one
    transaction of 30; 10 on 16 Jan; 20 on 30 Jan) has 3 transactions, total 60, mean
    repeat spend (10 + 20) ÷ 2 = 15, first and last days 2 and 30 Jan; before the split 2
    and 16 Jan (frequency 1, recency 14 days, T 18 days) and one day after; A3 one
    transaction on 29 Feb (none before the split). A2 and A7 are not in the product. Every
    database; on DuckDB the one pass reads the payments table twice — every account's
    payments, then again those of the accounts with a day of two payments (A1) — with no
    CTE of the payments (a CTE read twice was shared, ~10 % of the statement at 1M
    accounts), and gives the frames of grouping every account by day."""
    from kpis import clv_summary
    from kpis.clv_summary import customer_summary_split

    insert(small, "accounts", [dict(account_id="A7", name="Seven", segment="SMB", created_at=T(2023, 1, 1))])
    insert(
        small,
        "payments",
        [
            dict(payment_id="S7a", account_id="A7", paid_at=T(2024, 1, 5, 9), amount=40.0),
            dict(payment_id="S7b", account_id="A7", paid_at=T(2024, 1, 5, 15), amount=2.0),
        ],
    )
    insert(
        small,
        "subscriptions",
        [
            dict(
                subscription_id=f"U{i}", account_id=a, product_id=product, mrr=10.0, started_at=T(2023, 6, 1)
            )
            for i, (a, product) in enumerate([("A1", "P"), ("A3", "P"), ("A2", "Q"), ("A1", "Q")])
        ],
    )
    product = PERIOD.replace(products=("P",))
    split = T(2024, 1, 20)
    summary, counts = customer_summary_split(small, product, split, unit="day", names=False)
    rows = summary.set_index("account_id")
    assert list(rows.index) == ["A1", "A3"]
    assert rows["transactions"].to_dict() == {"A1": 3, "A3": 1}
    assert (rows.loc["A1", "total_amount"], rows.loc["A1", "mean_repeat_amount"]) == (60, 15)
    assert (rows.loc["A1", "first_paid"], rows.loc["A1", "last_paid"]) == (
        dt.date(2024, 1, 2),
        dt.date(2024, 1, 30),
    )
    assert (rows.loc["A1", "recency"], rows.loc["A1", "T"]) == (28, 59)
    assert rows.loc["A3", "total_amount"] == 40 and np.isnan(rows.loc["A3", "mean_repeat_amount"])
    found = {tuple(r[:4]): r[4] for r in counts.itertuples(index=False)}
    assert found == {(1, 14.0, 18.0, 1): 1}
    if small.dialect.name == "duckdb":
        end = clv_summary.calibration_end(product)
        sql = str(clv_summary._statement(small.dialect, product, end, None, split, False).compile(small))
        assert "bit_or" in sql and "NOT MATERIALIZED" not in sql and "positive_payments AS" not in sql
        assert sql.count("FROM payments") == 2
        clv_summary._statement.cache_clear()
        monkeypatch.setattr(clv_summary, "BITMAP_DAYS", 0)  # every account grouped by day first
        by_day, by_day_counts = customer_summary_split(small, product, split, unit="day", names=False)
        clv_summary._statement.cache_clear()
        pd.testing.assert_frame_equal(summary, by_day)
        pd.testing.assert_frame_equal(counts, by_day_counts)


def test_postgresql_per_account_rows_skip_sqlalchemy_rows(make_db, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL the per-account rows reach pandas as psycopg's own tuples (a SQLAlchemy
    Row per account cost more than the statement at 100k accounts): no SQLAlchemy fetch
    returns them, and the numbers are the hand-worked ones of
    :func:`test_customer_summary_by_hand` (A1: 3 transaction days, total 60, mean repeat
    spend (10 + 20) / 2 = 15, first paid 2 Jan; A2: one transaction of 100)."""
    engine = make_db("postgresql")
    insert(engine, "accounts", ACCOUNTS)
    insert(
        engine,
        "payments",
        [dict(zip(("payment_id", "account_id", "paid_at", "amount"), p, strict=True)) for p in PAYMENTS],
    )
    fetched: list[int] = []
    fetchall = sa.engine.CursorResult.fetchall

    def counted(self: sa.engine.CursorResult) -> list:
        rows = fetchall(self)
        fetched.append(len(rows))
        return rows

    monkeypatch.setattr(sa.engine.CursorResult, "fetchall", counted)
    out = customer_summary(engine, PERIOD, unit="week").set_index("account_id")
    assert list(out.index) == ["A1", "A2", "A3"]
    assert max(fetched, default=0) < 3  # the three accounts' rows came from psycopg
    a1, a2 = out.loc["A1"], out.loc["A2"]
    assert (a1["transactions"], a1["frequency"], a1["total_amount"]) == (3, 2, 60.0)
    assert a1["mean_repeat_amount"] == 15.0 and a1["first_paid"] == dt.date(2024, 1, 2)
    assert (a2["transactions"], a2["total_amount"]) == (1, 100.0) and np.isnan(a2["mean_repeat_amount"])
    assert out["transactions"].dtype == np.int64 and out["total_amount"].dtype == np.float64


# ---------------------------------------------------------------- PostgreSQL: payments in order (session 11)


def test_previous_in_order_by_hand(db: sa.Engine) -> None:
    """``lag(v)`` per g ordered by t: g = 1 has t = 1, 2, 3 with v = 10, 20, 30 (given out of
    order), so the values before are NULL, 10, 20; g = 2's only row has none. PostgreSQL
    only (elsewhere None: the summary groups by day)."""
    from crm_data.dialects import previous_in_order

    g, t, v = sa.column("g"), sa.column("t"), sa.column("v")
    previous = previous_in_order(db.dialect, v, g, t)
    if db.dialect.name != "postgresql":
        assert previous is None
        return
    rows = "(VALUES (1, 3, 30), (1, 1, 10), (2, 5, 50), (1, 2, 20)) AS r(g, t, v)"
    statement = sa.select(g, t, previous).select_from(sa.text(rows)).order_by(g, t)
    with db.connect() as c:
        assert [tuple(r) for r in c.execute(statement)] == [
            (1, 1, None),
            (1, 2, 10),
            (1, 3, 20),
            (2, 5, None),
        ]


def test_per_account_in_paid_at_order_by_hand(small: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A7 (added here) pays 1e16 on 3 Jan, 1 on 4 Jan and 1 on 5 Jan, written latest first:
    added in day order its total is (1e16 + 1) + 1 = 1e16 (each 1 is half a unit in the
    last place of 1e16, rounded to even), its repeat spend 1 + 1 = 2 (mean 1); in the
    order written, 1 + 1 + 1e16 = 1e16 + 2 (DuckDB's sum, in its own order). On PostgreSQL one ``lag`` window in (account_id,
    paid_at) order and one aggregate give the rows, A1 (two payments on 2 Jan) is read
    again grouped by day, alone; the frames equal the window over per-day rows on every
    database (elsewhere that is the only form)."""
    from kpis import clv_summary
    from kpis.clv_summary import customer_summary_split

    insert(small, "accounts", [dict(account_id="A7", name="Seven", segment="SMB", created_at=T(2023, 1, 1))])
    days = [(T(2024, 1, 5, 9), 1.0), (T(2024, 1, 4, 9), 1.0), (T(2024, 1, 3, 9), 1e16)]
    insert(
        small,
        "payments",
        [dict(payment_id=f"R{i}", account_id="A7", paid_at=p, amount=a) for i, (p, a) in enumerate(days)],
    )
    split = T(2024, 1, 20)
    clv_summary._statement.cache_clear()
    with statements_sent(small, "payments") as statements:
        summary, counts = customer_summary_split(small, PERIOD, split, unit="day", names=False)
        named = customer_summary(small, PERIOD, unit="day")
    seven = summary.set_index("account_id").loc["A7"]
    assert (seven["transactions"], seven["mean_repeat_amount"]) == (3, 1.0)
    assert 1.0 + 1.0 + 1e16 != 1e16  # the order matters: DuckDB adds in its own (1e16 + 2)
    assert seven["total_amount"] == (1e16 + 2 if small.dialect.name == "duckdb" else 1e16)
    one = summary.set_index("account_id").loc["A1"]
    assert (one["transactions"], one["total_amount"], one["mean_repeat_amount"]) == (3, 60.0, 15.0)
    per_account = [s for s, _ in statements]
    if small.dialect.name == "postgresql":
        assert len(per_account) == 4  # the split's rows, A1 again; the summary's, A1 again
        assert "lag(" in per_account[0] and "shared_days" in per_account[0]
        again = [p for s, p in statements if "lag(" not in s]
        assert all(sorted(v for v in p.values() if v in ("A1", "A2", "A3", "A7")) == ["A1"] for p in again)
    else:
        assert not any("lag(" in s for s in per_account)
    clv_summary._statement.cache_clear()
    monkeypatch.setattr(clv_summary, "previous_in_order", lambda *args: None)
    by_day, by_day_counts = customer_summary_split(small, PERIOD, split, unit="day", names=False)
    named_by_day = customer_summary(small, PERIOD, unit="day")
    clv_summary._statement.cache_clear()
    pd.testing.assert_frame_equal(summary, by_day)
    pd.testing.assert_frame_equal(counts, by_day_counts)
    pd.testing.assert_frame_equal(named, named_by_day)


def test_many_accounts_with_a_day_of_two_payments_read_again_all_by_day(
    small: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above ``REREAD_BY_ID_MAX`` accounts with a day of two payments (here 0: A1, two
    payments on 2 Jan, is one too many) the summary is read again whole, grouped by day —
    one statement without a list of ids (PostgreSQL takes at most 65,535 parameters) —
    and gives the frames of the by-day form."""
    from kpis import clv_summary

    monkeypatch.setattr(clv_summary, "REREAD_BY_ID_MAX", 0)
    clv_summary._statement.cache_clear()
    with statements_sent(small, "payments") as per_account:
        summary = customer_summary(small, PERIOD, unit="day")
    if small.dialect.name == "postgresql":
        assert len(per_account) == 2 and "lag(" in per_account[0][0]
        statement, parameters = per_account[1]
        assert "lag(" not in statement and "A1" not in list(parameters.values())
    else:
        assert len(per_account) == 1
    one = summary.set_index("account_id").loc["A1"]
    assert (one["transactions"], one["total_amount"]) == (3, 60.0)
    clv_summary._statement.cache_clear()
    monkeypatch.setattr(clv_summary, "previous_in_order", lambda *args: None)
    by_day = customer_summary(small, PERIOD, unit="day")
    clv_summary._statement.cache_clear()
    pd.testing.assert_frame_equal(summary, by_day)
