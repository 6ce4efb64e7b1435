"""forecasting.pipeline: open deals × learnt stage win probability, placed in their expected
close month — on a hand-written fixture, on DuckDB, SQLite and PostgreSQL.

The fixture (Filters 2026-01-01 .. 2026-12-01, today 2026-11-30, so the months are
2026-11, 2026-12, 2027-01):

Stages: Lead (1, table probability 0.1), Qualified (2, 0.3), Proposal (3, 0.6),
Negotiation (4, 0.8), Closed Won (5), Closed Lost (6).

Closed learning deals (all closed in 2026, account A1 / SMB):
* 10 won, W0..W9: created 2026-02-01 + i days; Lead at creation, Qualified +10 d,
  Proposal +20 d, closed (Closed Won) at +30 + 2i days.
* 30 lost, L0..L29: created 2026-03-01 + j days; Lead at creation, L0..L4 also Qualified
  at +5 d; closed (Closed Lost) at +15 d.

Win probability:
* Lead: 40 closed deals passed through it (≥ 30) -> learnt 10 / 40 = 0.25;
* Qualified: 10 won + 5 lost = 15 < 30 -> stage table 0.3;
* Proposal: 10 < 30 -> 0.6; Negotiation: 0 -> 0.8.
Median days from (last) entry to close among won deals:
* Lead: 30 + 2i for i = 0..9 = 30..48 -> (38 + 40) / 2 = 39;
* Qualified: 20..38 -> 29; Proposal: 10..28 -> 19;
* Negotiation: no won deal passed through it -> median sales cycle = created -> closed of
  won deals = 30..48 days -> 39.

Open deals (amount; current stage entered; + median days = expected close; bucket).
"Today" is 2026-11-30 (TODAY's date, 00:00): an expected close before it is OVERDUE (in
no month); the first month runs from today to 2026-12-01:
* O1 1000, Lead 2026-11-01 + 39 d = 2026-12-10 -> Dec; 1000 × 0.25 = 250
* O2 2000, Lead 10-01 then Qualified 10-20 + 29 d = 11-18 -> overdue; 2000 × 0.3 = 600
* O3 4000, Proposal 2026-09-01 + 19 d = 09-20 -> overdue; 4000 × 0.6 = 2400
* O4 3000, Lead 10-01, Proposal 10-15, Qualified 11-01, Proposal again 11-10 (latest)
  + 19 d = 11-29 -> overdue (the day before today); 3000 × 0.6 = 1800
* O5 5000, Negotiation 11-20 + 39 d = 12-29 -> Dec; 5000 × 0.8 = 4000 (account A2, Enterprise)
* O6  500, no history: Lead since creation 11-14 + 39 d = 12-23 -> Dec; 500 × 0.25 = 125
* O7 no amount, Lead 11-14 + 39 d = 12-23 -> Dec; counts 0
* O8 1000, Negotiation 11-28 + 39 d = 2027-01-06 -> Jan; 1000 × 0.8 = 800
* O9  700, Proposal 11-11 + 19 d = 11-30 00:00 = today: not overdue -> Nov; 700 × 0.6 = 420
By month: Nov = 420 (1 deal, amount 700); Dec = 250 + 4000 + 125 + 0 = 4375 (4 deals,
amount 6500); Jan = 800 (1 deal, amount 1000). Overdue: O2 + O3 + O4 = 3 deals, amount
9000, expected 600 + 2400 + 1800 = 4800. Expected pipeline (learned win rates, every open
deal) = 420 + 4375 + 800 + 4800 = 10395.

The weighted pipeline (``kpis.weighted_pipeline``, the stage table's probabilities) of the
same deals: Lead 1000 × 0.1 = 100 (O6 has no history: "(no stage)", no probability);
Qualified 2000 × 0.3 = 600; Proposal (4000 + 3000 + 700) × 0.6 = 4620; Negotiation
(5000 + 1000) × 0.8 = 4800 -> 10120: the other name, the other number.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import schema
from forecasting import ForecastResult, combined_next_quarter, pipeline_forecast
from forecasting.pipeline import COMBINED_RULE, PipelineForecast
from kpis.filters import Filters

FILTERS = Filters("2026-01-01", "2026-12-01")
TODAY = dt.datetime(2026, 11, 30, 12, 0)


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def fixture_rows() -> dict[str, list[dict[str, object]]]:
    accounts = [
        {"account_id": "A1", "name": "Small Co", "segment": "SMB", "created_at": t("2025-01-01")},
        {"account_id": "A2", "name": "Big Co", "segment": "Enterprise", "created_at": t("2025-01-01")},
    ]
    stages = [
        {"stage": "Lead", "position": 1, "probability": 0.1, "is_closed": False, "is_won": False},
        {"stage": "Qualified", "position": 2, "probability": 0.3, "is_closed": False, "is_won": False},
        {"stage": "Proposal", "position": 3, "probability": 0.6, "is_closed": False, "is_won": False},
        {"stage": "Negotiation", "position": 4, "probability": 0.8, "is_closed": False, "is_won": False},
        {"stage": "Closed Won", "position": 5, "probability": 1.0, "is_closed": True, "is_won": True},
        {"stage": "Closed Lost", "position": 6, "probability": 0.0, "is_closed": True, "is_won": False},
    ]
    deals: list[dict[str, object]] = []
    history: list[dict[str, object]] = []
    day = dt.timedelta(days=1)
    for i in range(10):
        created = t("2026-02-01") + i * day
        closed = created + (30 + 2 * i) * day
        deals.append(
            {
                "deal_id": f"W{i}",
                "account_id": "A1",
                "amount": 100.0,
                "created_at": created,
                "closed_at": closed,
                "status": "won",
            }
        )
        for stage, offset in (("Lead", 0), ("Qualified", 10), ("Proposal", 20)):
            history.append({"deal_id": f"W{i}", "stage": stage, "entered_at": created + offset * day})
        history.append({"deal_id": f"W{i}", "stage": "Closed Won", "entered_at": closed})
    for j in range(30):
        created = t("2026-03-01") + j * day
        closed = created + 15 * day
        deals.append(
            {
                "deal_id": f"L{j}",
                "account_id": "A1",
                "amount": 100.0,
                "created_at": created,
                "closed_at": closed,
                "status": "lost",
            }
        )
        history.append({"deal_id": f"L{j}", "stage": "Lead", "entered_at": created})
        if j < 5:
            history.append({"deal_id": f"L{j}", "stage": "Qualified", "entered_at": created + 5 * day})
        history.append({"deal_id": f"L{j}", "stage": "Closed Lost", "entered_at": closed})
    open_deals = [
        ("O1", "A1", 1000.0, "2026-11-01", [("Lead", "2026-11-01")]),
        ("O2", "A1", 2000.0, "2026-10-01", [("Lead", "2026-10-01"), ("Qualified", "2026-10-20")]),
        ("O3", "A1", 4000.0, "2026-08-01", [("Lead", "2026-08-01"), ("Proposal", "2026-09-01")]),
        (
            "O4",
            "A1",
            3000.0,
            "2026-10-01",
            [
                ("Lead", "2026-10-01"),
                ("Proposal", "2026-10-15"),
                ("Qualified", "2026-11-01"),
                ("Proposal", "2026-11-10"),
            ],
        ),
        ("O5", "A2", 5000.0, "2026-11-01", [("Lead", "2026-11-01"), ("Negotiation", "2026-11-20")]),
        ("O6", "A1", 500.0, "2026-11-14", []),
        ("O7", "A1", None, "2026-11-14", [("Lead", "2026-11-14")]),
        ("O8", "A1", 1000.0, "2026-11-02", [("Lead", "2026-11-02"), ("Negotiation", "2026-11-28")]),
        ("O9", "A1", 700.0, "2026-11-01", [("Lead", "2026-11-01"), ("Proposal", "2026-11-11")]),
    ]
    for deal_id, account, amount, created, stages_entered in open_deals:
        deals.append(
            {
                "deal_id": deal_id,
                "account_id": account,
                "amount": amount,
                "created_at": t(created),
                "closed_at": None,
                "status": "open",
            }
        )
        for stage, entered in stages_entered:
            history.append({"deal_id": deal_id, "stage": stage, "entered_at": t(entered)})
    return {"accounts": accounts, "pipeline_stages": stages, "deals": deals, "deal_stage_history": history}  # fmt: skip


def _add_open_deals(
    engine: sa.Engine, amounts: dict[str, float], history: list[tuple[str, str, str]]
) -> None:
    """Add open deals of account A1 created 2026-11-01 (deal -> amount) and history rows
    (deal, stage, entered on that day) to the fixture."""
    deals = [
        {
            "deal_id": deal,
            "account_id": "A1",
            "amount": amount,
            "created_at": t("2026-11-01"),
            "status": "open",
        }
        for deal, amount in amounts.items()
    ]
    rows = [{"deal_id": deal, "stage": stage, "entered_at": t(entered)} for deal, stage, entered in history]
    with engine.begin() as c:
        c.execute(sa.insert(schema.deals), deals)
        c.execute(sa.insert(schema.deal_stage_history), rows)


@pytest.fixture
def engine(db: sa.Engine, visits_path: Callable[[sa.Engine], sa.Engine]) -> sa.Engine:
    """The fixture's rows, on each path of the learning (base tables, stored visits)."""
    with db.begin() as c:
        for name, rows in fixture_rows().items():
            c.execute(sa.insert(schema.metadata.tables[name]), rows)
    return visits_path(db)


def test_pipeline_by_month_and_stage(engine: sa.Engine) -> None:
    pipe = pipeline_forecast(engine, FILTERS, months=3, today=TODAY)
    by_month = pipe.by_month
    assert list(by_month.columns) == ["period", "expected_revenue", "deals", "amount"]
    assert [p.strftime("%Y-%m") for p in by_month["period"]] == ["2026-11", "2026-12", "2027-01"]
    assert by_month["expected_revenue"].tolist() == pytest.approx([420.0, 4375.0, 800.0])
    assert by_month["deals"].tolist() == [1, 4, 1]
    # unweighted: Nov 700 (O9); Dec 1000 + 5000 + 500 + 0; Jan 1000
    assert by_month["amount"].tolist() == pytest.approx([700.0, 6500.0, 1000.0])

    stages = pipe.by_stage.set_index("stage")
    assert list(stages.index) == ["Lead", "Qualified", "Proposal", "Negotiation"]
    assert stages["open_deals"].tolist() == [3, 1, 3, 2]  # Lead: O1, O6, O7; Proposal: O3, O4, O9
    assert stages["win_probability"].tolist() == pytest.approx([0.25, 0.3, 0.6, 0.8])
    assert stages["probability_source"].tolist() == ["history", "stage table", "stage table", "stage table"]
    assert stages["closed_deals"].tolist() == [40, 15, 10, 0]
    assert stages["median_days_to_close"].tolist() == pytest.approx([39.0, 29.0, 19.0, 39.0])
    assert stages["days_source"].tolist() == ["history", "history", "history", "sales cycle median"]
    # in the months: Lead 250 + 125; Qualified -; Proposal 420 (O9); Negotiation 4000 + 800
    assert stages["expected_revenue"].tolist() == pytest.approx([375.0, 0.0, 420.0, 4800.0])
    assert stages["expected_revenue"].sum() == pytest.approx(by_month["expected_revenue"].sum())
    # overdue: Qualified O2 600; Proposal O3 2400 + O4 1800
    assert stages["overdue_deals"].tolist() == [0, 1, 2, 0]
    assert stages["expected_revenue_overdue"].tolist() == pytest.approx([0.0, 600.0, 4200.0, 0.0])

    notes = " ".join(pipe.notes)
    assert "3 open deal(s) are overdue" in notes  # O2, O3, O4
    assert "amount 9,000.00" in notes
    assert "1 open deal(s) have no stage history" in notes  # O6
    assert "1 open deal(s) have no amount" in notes  # O7
    assert "Fewer than 30 closed deals passed through Qualified, Proposal, Negotiation" in notes
    assert (
        "No won deal passed through Negotiation: their time to close is the median sales cycle (39 days)"
        in notes
    )


def test_overdue_deals_are_apart_not_in_the_current_month(engine: sa.Engine) -> None:
    pipe = pipeline_forecast(engine, FILTERS, months=3, today=TODAY)
    assert (pipe.overdue_deals, pipe.overdue_amount) == (3, pytest.approx(9000.0))
    assert pipe.overdue_expected == pytest.approx(4800.0)
    # the current month holds only O9 (expected to close today, not before it)
    assert pipe.by_month.loc[0, "expected_revenue"] == pytest.approx(420.0)
    # Expected pipeline (learned win rates) = every open deal: months + overdue (nothing later)
    assert pipe.expected_total == pytest.approx(420.0 + 4375.0 + 800.0 + 4800.0)


def test_a_day_earlier_the_deal_due_yesterday_is_not_overdue_yet(engine: sa.Engine) -> None:
    # today 2026-11-29: O4 (expected 11-29) is due today -> November, no longer overdue
    pipe = pipeline_forecast(engine, FILTERS, months=3, today=dt.date(2026, 11, 29))
    assert pipe.overdue_deals == 2  # O2, O3
    assert pipe.overdue_expected == pytest.approx(600.0 + 2400.0)
    assert pipe.by_month["expected_revenue"].tolist() == pytest.approx([1800.0 + 420.0, 4375.0, 800.0])


def test_two_names_two_numbers_on_the_same_deals(engine: sa.Engine) -> None:
    from kpis import weighted_pipeline

    weighted = weighted_pipeline(engine, FILTERS)["weighted_amount"].sum()  # stage table probabilities
    expected = pipeline_forecast(engine, FILTERS, months=3, today=TODAY).expected_total  # learned
    assert weighted == pytest.approx(100.0 + 600.0 + 4620.0 + 4800.0)
    assert expected == pytest.approx(10395.0)


def test_one_month_leaves_later_deals_out(engine: sa.Engine) -> None:
    pipe = pipeline_forecast(engine, FILTERS, months=1, today=TODAY)
    assert pipe.by_month["expected_revenue"].tolist() == pytest.approx([420.0])
    stages = pipe.by_stage.set_index("stage")
    # after November: Lead O1 250 + O6 125 (+ O7 0); Negotiation O5 4000 + O8 800
    assert stages.at["Lead", "expected_revenue_later"] == pytest.approx(375.0)
    assert stages.at["Negotiation", "expected_revenue_later"] == pytest.approx(4800.0)
    assert any("5 open deal(s) are expected to close after 2026-11" in n for n in pipe.notes)
    assert pipe.expected_total == pytest.approx(10395.0)  # the same deals, whatever the months


def test_segment_filter_scopes_open_deals(engine: sa.Engine) -> None:
    # SMB = A1: every learning deal stays, O5 (A2, Enterprise) leaves -> December loses 4000
    pipe = pipeline_forecast(engine, FILTERS.replace(segments=("SMB",)), months=3, today=TODAY)
    assert pipe.by_month["expected_revenue"].tolist() == pytest.approx([420.0, 375.0, 800.0])


def test_empty_database_gives_zeros_and_a_note(
    db: sa.Engine, visits_path: Callable[[sa.Engine], sa.Engine]
) -> None:
    pipe = pipeline_forecast(visits_path(db), FILTERS, months=2, today=TODAY)
    assert pipe.by_month["expected_revenue"].tolist() == [0.0, 0.0]
    assert pipe.by_stage.empty
    assert "There are no open deals for this selection." in pipe.notes


def _stat(means: list[float]) -> ForecastResult:
    periods = pd.date_range("2026-11-01", periods=len(means), freq="MS")
    frame = pd.DataFrame(
        {"period": periods, "mean": means, "lo80": means, "hi80": means, "lo95": means, "hi95": means}
    )
    history = pd.Series(np.ones(3), pd.date_range("2026-08-01", periods=3, freq="MS"))
    return ForecastResult("ets", frame, pd.DataFrame(), history, [], "", "ETS(A,N,N)")


def _pipe(expected: list[float]) -> PipelineForecast:
    by_month = pd.DataFrame(
        {"period": pd.date_range("2026-11-01", periods=3, freq="MS"), "expected_revenue": expected,
         "deals": [1, 1, 1], "amount": expected}
    )  # fmt: skip
    return PipelineForecast(by_month, pd.DataFrame(), [])


def test_next_quarter_is_the_forecast_with_the_pipeline_and_overdue_beside_it(engine: sa.Engine) -> None:
    pipe = pipeline_forecast(engine, FILTERS, months=3, today=TODAY)
    combined = combined_next_quarter(_stat([3000.0] * 12), pipe)
    assert combined["component"].tolist() == ["statistical", "pipeline", "overdue", "next_quarter"]
    # statistical 3 × 3000 = 9000; pipeline 420 + 4375 + 800 = 5595 (6 deals); overdue 4800 (3 deals)
    assert combined["amount"].tolist() == pytest.approx([9000.0, 5595.0, 4800.0, 9000.0])
    assert combined["deals"].tolist() == [0, 6, 3, 0]
    assert combined.loc[3, "detail"] == COMBINED_RULE
    assert "2026-11 to 2027-01" in combined.loc[0, "detail"]
    assert "= 62% of the forecast" in combined.loc[1, "detail"]  # 5595 / 9000
    assert "amount 9,000.00" in combined.loc[2, "detail"]
    # a pipeline larger than the forecast no longer replaces it (the old "larger of the two")
    combined = combined_next_quarter(_stat([1000.0] * 12), pipe)
    assert combined.set_index("component").at["next_quarter", "amount"] == pytest.approx(3000.0)


def test_next_quarter_without_overdue_deals() -> None:
    combined = combined_next_quarter(_stat([5000.0] * 12), _pipe([4800.0, 4375.0, 800.0]))
    assert combined["amount"].tolist() == pytest.approx([15000.0, 9975.0, 0.0, 15000.0])


@pytest.mark.parametrize(
    "filters",
    [FILTERS, Filters("2026-03-01", "2026-07-01"), Filters("2020-01-01", "2020-02-01")],
    ids=["year", "months", "no deals"],
)
def test_learnt_counts_and_cycle_median_are_the_kpis(engine: sa.Engine, filters: Filters) -> None:
    """The learning step's one pass over the closed deals gives kpis.sales_cycle's median and
    kpis.win_rate's counts over the same deals."""
    from forecasting.pipeline import _learn
    from kpis import sales_cycle

    with engine.connect() as c:
        learnt = _learn(c, filters, [])
    median = sales_cycle(engine, filters)["median_days"].iloc[0]
    if pd.isna(median):
        assert np.isnan(learnt.cycle_median)
    else:
        assert learnt.cycle_median == median
    deals = schema.deals
    won, closed = (
        sa.select(sa.func.count())
        .where(
            deals.c.status.in_(statuses),
            deals.c.closed_at >= filters.start_ts,
            deals.c.closed_at < filters.end_ts,
        )
        .scalar_subquery()
        for statuses in (("won",), ("won", "lost"))
    )
    with engine.connect() as c:
        won_n, closed_n = c.execute(sa.select(won, closed)).one()
    assert (
        learnt.overall_win_rate == pytest.approx(won_n / closed_n)
        if closed_n
        else np.isnan(learnt.overall_win_rate)
    )


def test_the_sales_cycle_median_alone_is_computed(engine: sa.Engine) -> None:
    """The forecast reads the median sales cycle (its days to close without a learnt one)
    and nothing else of ``kpis.sales_cycle``: no statement computes the cycle's mean or
    90th percentile."""
    from tests.kpis.fixtures import statements_sent

    with statements_sent(engine, "") as sent:
        pipe = pipeline_forecast(engine, FILTERS, months=3, today=TODAY)
    assert sent and not [text for text, _ in sent if "avg(" in text.lower()]
    assert not [
        params for _, params in sent if 0.9 in (params.values() if isinstance(params, dict) else params)
    ]
    negotiation = pipe.by_stage.set_index("stage").loc["Negotiation"]
    assert (negotiation["median_days_to_close"], negotiation["days_source"]) == (39.0, "sales cycle median")


@pytest.mark.parametrize(
    "filters",
    [FILTERS, Filters("2026-03-01", "2026-07-01"), Filters("2020-01-01", "2020-02-01")],
    ids=["year", "months", "no deals"],
)
def test_one_pass_learning_is_the_per_pair_form(
    engine: sa.Engine, filters: Filters, visits_path: Callable[[sa.Engine], sa.Engine]
) -> None:
    """The learning pass (one row per closed deal, a column per stage of the table) gives the
    per-stage numbers of the general form (a row per (deal, stage) pair): also for a stage
    entered twice (the last entry counts) and for a stage the table does not list."""
    from forecasting.pipeline import PER_STAGE_COLUMNS, _passed_stages, _stage_history_stats

    day = dt.timedelta(days=1)
    extra = [  # W5..W9 enter Lead again 25 days after creation; W0, W1, L0 pass through "Demo"
        {"deal_id": f"W{i}", "stage": "Lead", "entered_at": t("2026-02-01") + (i + 25) * day}
        for i in range(5, 10)
    ] + [
        {"deal_id": deal, "stage": "Demo", "entered_at": t(entered)}
        for deal, entered in (("W0", "2026-02-05"), ("W1", "2026-02-07"), ("L0", "2026-03-03"))
    ]
    with engine.begin() as c:
        c.execute(sa.insert(schema.deal_stage_history), extra)
    visits_path(engine)  # written without the hooks: the stored visits built again
    known = ["Lead", "Qualified", "Proposal", "Negotiation", "Closed Won", "Closed Lost"]
    with engine.connect() as c:
        closed_n, won_n, per_stage, _ = _stage_history_stats(c, filters, known)
        general = pd.DataFrame(_passed_stages(c, filters, []), columns=PER_STAGE_COLUMNS)
    general["closed_deals"] = general["closed_deals"].astype(int)
    general["won_deals"] = general["won_deals"].astype(int)
    general["median_days"] = pd.to_numeric(general["median_days"], errors="coerce").astype(float)
    ordered = [frame.sort_values("stage", ignore_index=True) for frame in (per_stage, general)]
    pd.testing.assert_frame_equal(*ordered, check_exact=True)
    assert list(per_stage.columns) == PER_STAGE_COLUMNS
    if filters == FILTERS:
        assert (closed_n, won_n) == (40, 10)
        stages = per_stage.set_index("stage")
        # Lead's last entries: W0..W4 30 + 2i days before closing, W5..W9 2i + 5 -> 26.5
        assert stages.at["Lead", "median_days"] == pytest.approx(26.5)
        assert stages.at["Demo", "closed_deals"] == 3 and stages.at["Demo", "won_deals"] == 2
    elif filters.start.year == 2020:
        assert (closed_n, won_n) == (0, 0) and per_stage.empty


@pytest.fixture
def stored(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    """The fixture's rows with the stored visits built (and read: ``CRM_ROLLUPS`` on)."""
    from kpis import stage_visits

    monkeypatch.setenv("CRM_ROLLUPS", "on")
    with db.begin() as c:
        for name, rows in fixture_rows().items():
            c.execute(sa.insert(schema.metadata.tables[name]), rows)
        stage_visits.refresh(c)
    return db


KNOWN_STAGES = ["Lead", "Qualified", "Proposal", "Negotiation", "Closed Won", "Closed Lost"]


def test_stored_learning_counts_the_deal_rows_and_reads_the_won_visits(stored: sa.Engine) -> None:
    """On the stored visits the learning counts the closed deals per stage from the stored
    deal rows' stage bits and reads the visits of the won deals only (the medians): no
    statement reads the lost deals' visits; the numbers of the module docstring."""
    from forecasting.pipeline import _stage_history_stats
    from tests.kpis.fixtures import statements_sent

    with statements_sent(stored, "rollup_") as sent, stored.connect() as c:
        closed_n, won_n, per_stage, learnt = _stage_history_stats(c, FILTERS, KNOWN_STAGES, every_stage=False)
    visits = [(text, params) for text, params in sent if "rollup_stage_visits" in text]
    assert visits and all("lost" not in text and "lost" not in str(params) for text, params in visits)
    assert any("rollup_deal_stages" in text for text, _ in sent)
    assert (closed_n, won_n) == (40, 10)
    assert learnt == {"Lead", "Qualified", "Proposal", "Negotiation"}
    stages = per_stage.set_index("stage")
    assert list(stages.index) == ["Lead", "Qualified", "Proposal"]  # no learning deal in Negotiation
    assert stages["closed_deals"].tolist() == [40, 15, 10]
    assert stages["won_deals"].tolist() == [10, 10, 10]
    assert stages["median_days"].tolist() == pytest.approx([39.0, 29.0, 19.0])


def test_stored_learning_without_a_bit_for_an_open_stage_reads_the_visits(
    stored: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An open stage whose key has no bit in the stored deal rows (above
    ``stage_visits.MASK_KEYS``, 63): the counts come from the visits and ``deals``, not the
    deal rows — the same numbers as from the bits."""
    from forecasting.pipeline import _stage_history_stats
    from kpis import stage_visits
    from tests.kpis.fixtures import statements_sent

    with stored.connect() as c:
        from_bits = _stage_history_stats(c, FILTERS, KNOWN_STAGES, every_stage=False)
    monkeypatch.setattr(stage_visits, "MASK_KEYS", 2)  # Proposal (3) and Negotiation (4): no bit
    with statements_sent(stored, "rollup_deal_stages") as sent, stored.connect() as c:
        from_visits = _stage_history_stats(c, FILTERS, KNOWN_STAGES, every_stage=False)
    assert not sent
    assert from_visits[:2] == from_bits[:2] == (40, 10)
    assert from_visits[3] == from_bits[3]
    ordered = [frame.sort_values("stage", ignore_index=True) for frame in (from_visits[2], from_bits[2])]
    pd.testing.assert_frame_equal(*ordered, check_exact=True)


def test_open_deals_in_a_closed_or_an_unknown_stage_learn_that_stage(
    engine: sa.Engine, visits_path: Callable[[sa.Engine], sa.Engine]
) -> None:
    """Open deals whose history ends in a closed stage or in one the stage table does not
    list get that stage's learnt probability and days (on the stored visits, which hold
    neither stage, the learning adds them from the history once such a deal is found).

    * O10 800: Lead 11-01, Closed Won 11-05. Closed Won: W0..W9 entered it at closed_at
      -> 10 closed (< 30: table 1.0), median 0 days -> expected 11-05: overdue, 800 × 1.0.
    * O11 600: Lead 11-01, Demo 11-03. Demo: W0 (02-05, closed 03-03: 26 d), W1 (02-07,
      closed 03-06: 27 d), L0 -> 3 closed, 2 won, no table row -> 2/3 (small sample),
      median 26.5 d -> 11-29 12:00, before today: overdue, 600 × 2/3 = 400.
    Overdue: O2, O3, O4 + O10, O11 = 5 deals, amount 9000 + 1400, expected 4800 + 1200."""
    _add_open_deals(
        engine,
        {"O10": 800.0, "O11": 600.0},
        [
            ("W0", "Demo", "2026-02-05"),
            ("W1", "Demo", "2026-02-07"),
            ("L0", "Demo", "2026-03-03"),
            ("O10", "Lead", "2026-11-01"),
            ("O10", "Closed Won", "2026-11-05"),
            ("O11", "Lead", "2026-11-01"),
            ("O11", "Demo", "2026-11-03"),
        ],
    )
    pipe = pipeline_forecast(visits_path(engine), FILTERS, months=3, today=TODAY)
    assert (pipe.overdue_deals, pipe.overdue_amount) == (5, pytest.approx(10400.0))
    assert pipe.overdue_expected == pytest.approx(4800.0 + 800.0 + 400.0)
    stages = pipe.by_stage.set_index("stage")
    assert list(stages.index) == ["Lead", "Qualified", "Proposal", "Negotiation", "Closed Won", "Demo"]
    assert stages.loc["Closed Won", ["open_deals", "closed_deals", "overdue_deals"]].tolist() == [1, 10, 1]
    assert stages.at["Closed Won", "median_days_to_close"] == 0.0
    assert stages.at["Closed Won", "probability_source"] == "stage table"
    assert stages.loc["Demo", ["open_deals", "closed_deals", "overdue_deals"]].tolist() == [1, 3, 1]
    assert stages.at["Demo", "median_days_to_close"] == pytest.approx(26.5)
    assert stages.at["Demo", "win_probability"] == pytest.approx(2 / 3)
    assert stages.at["Demo", "probability_source"] == "history (small sample)"
    assert "1 open deal(s) sit in a closed stage" in " ".join(pipe.notes)
    # the other stages as before
    assert stages.loc["Lead":"Negotiation", "closed_deals"].tolist() == [40, 15, 10, 0]
    assert pipe.by_month["expected_revenue"].tolist() == pytest.approx([420.0, 4375.0, 800.0])


def test_the_current_stage_among_rows_entered_at_the_same_instant(
    engine: sa.Engine, visits_path: Callable[[sa.Engine], sa.Engine]
) -> None:
    """The latest history row of an open deal, ties at one instant broken by the higher
    position, a stage missing from the table ranking below every known one:

    * O12 900: Lead 11-01, then Demo (unknown) and Qualified at 11-20 -> Qualified since
      11-20 + 29 d = 12-19: December, 900 × 0.3 = 270;
    * O13 100: Lead 11-01, then Qualified and Proposal at 11-21 -> Proposal since 11-21 +
      19 d = 12-10: December, 100 × 0.6 = 60.
    December: 4375 + 270 + 60 = 4705 (6 deals)."""
    _add_open_deals(
        engine,
        {"O12": 900.0, "O13": 100.0},
        [
            ("O12", "Lead", "2026-11-01"),
            ("O12", "Demo", "2026-11-20"),
            ("O12", "Qualified", "2026-11-20"),
            ("O13", "Lead", "2026-11-01"),
            ("O13", "Qualified", "2026-11-21"),
            ("O13", "Proposal", "2026-11-21"),
        ],
    )
    pipe = pipeline_forecast(visits_path(engine), FILTERS, months=3, today=TODAY)
    assert pipe.by_month["expected_revenue"].tolist() == pytest.approx([420.0, 4705.0, 800.0])
    assert pipe.by_month["deals"].tolist() == [1, 6, 1]
    stages = pipe.by_stage.set_index("stage")
    assert list(stages.index) == ["Lead", "Qualified", "Proposal", "Negotiation"]
    assert stages["open_deals"].tolist() == [3, 2, 4, 2]


def test_an_import_winning_an_open_deal_rewrites_its_stored_visits(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O1 (open, Lead since 2026-11-01) is won on 2026-11-15 by an import: the roll-ups'
    listener rewrites its stored visits (status, closed_at), so the learning from them is
    the base tables' — Lead: 41 closed, 11 won (11 / 41); median days to close of its won
    deals 30, 32, …, 48 and O1's 14 -> 38 — and the table is what a full rebuild gives."""
    from crm_data.importing import TableInput, import_tables
    from forecasting import pipeline
    from kpis import stage_visits

    monkeypatch.setenv("CRM_ROLLUPS", "on")
    with db.begin() as c:
        for name, rows in fixture_rows().items():
            c.execute(sa.insert(schema.metadata.tables[name]), rows)
        stage_visits.refresh(c)
        won = dict(c.execute(sa.select(schema.deals).where(schema.deals.c.deal_id == "O1")).mappings().one())
    won.update(status="won", closed_at=t("2026-11-15"))
    report = import_tables(db, [TableInput("deals", pd.DataFrame([won]), "test:deals")], today=TODAY.date())
    assert report.ok, report.errors

    def stored() -> pd.DataFrame:
        with monkeypatch.context() as m:
            m.setattr(pipeline, "_learning_pass", None)  # the stored visits or nothing
            return pipeline_forecast(db, FILTERS, months=3, today=TODAY).by_stage

    def visits() -> pd.DataFrame:
        with db.connect() as c:
            rows = c.execute(sa.select(stage_visits.TABLE)).mappings().all()
        frame = pd.DataFrame(rows, columns=list(stage_visits.TABLE.c.keys())).astype(str)
        return frame.sort_values(["deal_id", "stage_key", "entered_at"], ignore_index=True)

    with db.connect() as c:
        assert stage_visits.available(c)
    after_import, table = stored(), visits()
    lead = after_import.set_index("stage").loc["Lead"]
    assert (lead["closed_deals"], lead["open_deals"]) == (41, 2)  # O6, O7 still open
    assert lead["win_probability"] == pytest.approx(11 / 41)
    assert lead["median_days_to_close"] == pytest.approx(38.0)
    with monkeypatch.context() as m:
        m.setenv("CRM_ROLLUPS", "off")
        m.setattr(pipeline, "_stored_learning", None)  # the base tables or nothing
        base = pipeline_forecast(db, FILTERS, months=3, today=TODAY).by_stage
    pd.testing.assert_frame_equal(after_import, base)
    with db.begin() as c:
        stage_visits.refresh(c)
    pd.testing.assert_frame_equal(table, visits())  # what a full rebuild gives
