"""``ui.cards.latest``: which period a card shows and its change (pure pandas)."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd

from ui.cards import docstring_definition, latest


def _frame(values, low=None):
    periods = pd.to_datetime(["2026-08-01", "2026-09-01", "2026-10-01", "2026-11-01"])
    out = pd.DataFrame({"period": periods, "rate": values})
    if low is not None:
        out["low_sample"] = low
    return out


def test_latest_takes_the_last_complete_period_and_its_change():
    # today 2026-11-30: November has not ended, so the card shows October (0.30)
    # against September (0.20): delta = 0.30 - 0.20 = 0.10.
    numbers = latest(
        _frame([0.1, 0.2, 0.3, 0.9], low=[False, False, True, False]), "rate", "month", dt.date(2026, 11, 30)
    )
    assert numbers.period == pd.Timestamp("2026-10-01")
    assert numbers.previous == pd.Timestamp("2026-09-01")
    assert math.isclose(numbers.value, 0.3)
    assert math.isclose(numbers.delta, 0.1)
    assert numbers.sparkline == [0.1, 0.2, 0.3]
    assert numbers.low_sample is True


def test_latest_includes_a_period_that_ended_today():
    # 2026-12-01: November has ended -> value 0.9, delta 0.9 - 0.3 = 0.6.
    numbers = latest(_frame([0.1, 0.2, 0.3, 0.9]), "rate", "month", dt.date(2026, 12, 1))
    assert math.isclose(numbers.value, 0.9) and math.isclose(numbers.delta, 0.6)
    assert numbers.low_sample is False


def test_latest_without_a_complete_period_shows_the_current_one_without_delta():
    frame = _frame([0.1, 0.2, 0.3, 0.9]).tail(1)
    numbers = latest(frame, "rate", "month", dt.date(2026, 11, 15))
    assert math.isclose(numbers.value, 0.9)
    assert math.isnan(numbers.delta) and numbers.previous is None


def test_latest_with_missing_previous_value_has_no_delta():
    numbers = latest(_frame([0.1, float("nan"), 0.3, 0.9]), "rate", "month", dt.date(2026, 11, 30))
    assert math.isclose(numbers.value, 0.3) and math.isnan(numbers.delta)
    assert numbers.sparkline == [0.1, 0.3]


def test_latest_of_an_empty_frame_is_empty():
    numbers = latest(pd.DataFrame(columns=["period", "rate"]), "rate", "month")
    assert math.isnan(numbers.value) and numbers.period is None and numbers.sparkline == []


def _with_formula():
    """Tickets opened per period and group.

    Formula: tickets = count of tickets by ``opened_at``, per group;
    a missing value is the group "(not set)". Columns: period, group, tickets.

    Notes: only for the test.
    """


def _without_formula():
    """How long open deals have waited.

    Age = days in the current stage:

    * open_deals = count;
    * over_90_days = deals aged more than 90 days.

    Columns: stage, open_deals.
    """


def test_docstring_definition_keeps_the_formula_paragraph_not_only_the_summary():
    assert docstring_definition(_with_formula) == (
        "Tickets opened per period and group. Formula: tickets = count of tickets by opened_at, "
        'per group; a missing value is the group "(not set)".'
    )


def test_docstring_definition_without_a_formula_paragraph_keeps_the_body_without_columns():
    assert docstring_definition(_without_formula) == (
        "How long open deals have waited. Age = days in the current stage: open_deals = count; "
        "over_90_days = deals aged more than 90 days."
    )


def test_docstring_definition_prefers_the_registry_entry_of_the_function():
    import kpis
    from kpis import registry

    entry = registry.get("churn_rate")
    assert (
        docstring_definition(kpis.churn_rate)
        == f"{registry.in_words('churn_rate')} Formula: {entry.definition}"
    )
    assert "Formula: tickets = count of tickets by opened_at" in docstring_definition(kpis.ticket_breakdown)


def test_the_ticket_chart_of_the_service_page_states_the_formula(app):
    at = app("pages/3_Service.py").run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert any(
        "Tickets opened per period and group. Formula: tickets = count of tickets" in c for c in captions
    )


def test_latest_leaves_out_a_month_the_range_cuts():
    # the range ends on 15 Nov 2026 (end = 16 Nov), long before today: November holds half
    # its days, so the card shows October (0.30) against September (0.20), as on 30 Nov.
    frame = _frame([0.1, 0.2, 0.3, 0.9])
    numbers = latest(frame, "rate", "month", dt.date(2027, 3, 1), end=dt.date(2026, 11, 16))
    assert numbers.period == pd.Timestamp("2026-10-01")
    assert math.isclose(numbers.value, 0.3) and math.isclose(numbers.delta, 0.1)
    # a range ending with November is complete on 1 Dec
    numbers = latest(frame, "rate", "month", dt.date(2026, 12, 1), end=dt.date(2026, 12, 1))
    assert numbers.period == pd.Timestamp("2026-11-01")
