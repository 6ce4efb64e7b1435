"""The demo's story holds on every calendar day, not just the day the suite happens to run.

The demo data are anchored to ``today``: each day gives other rows. Each check of
:mod:`tests.crm_data.demo_story` runs here on in-memory frames
(:func:`crm_data.demo.demo_frames`, no database) for every day of 2024 — a leap year, so
month ends, 29 February and year ends are among them — one test per month. The churn
story compares churn between groups of a few dozen accounts: at the 300 accounts of the
other checks it fails on about one day in ten by chance alone, so it is checked with
3,000 accounts (its smallest ratios over 2024: 1.96 against the required 1.5 for NPS,
1.54 against 1.3 for unresolved tickets).
"""

from __future__ import annotations

import datetime as dt

import pytest

from crm_data.demo import demo_frames
from tests.crm_data import demo_story as story

YEAR = 2024
SEED = 7
ACCOUNTS = 300
CHURN_ACCOUNTS = 3000
#: what the churn story reads: the demo stops each day's accounts there (not drawing their
#: campaign responses, interactions and costs)
CHURN_TABLES = ("subscriptions", "survey_responses", "tickets")


def _days(month: int) -> list[dt.date]:
    first = dt.date(YEAR, month, 1)
    following = dt.date(YEAR + month // 12, month % 12 + 1, 1)
    return [first + dt.timedelta(days=i) for i in range((following - first).days)]


def _failures(accounts: int, month: int, checks: list, tables: tuple[str, ...] | None = None) -> list[str]:
    failures = []
    for today in _days(month):
        rows = demo_frames(accounts, SEED, today, tables)
        for check in checks:
            try:
                check(rows, today)
            except AssertionError as error:
                failures.append(f"{today}: {check.__name__}: {str(error)[:300]}")
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("month", range(1, 13))
def test_the_story_holds_on_every_day(month: int) -> None:
    checks = [c for c in story.CHECKS if c is not story.churn_is_higher_with_low_nps_and_unresolved_tickets]
    assert _failures(ACCOUNTS, month, checks) == []


@pytest.mark.slow
@pytest.mark.parametrize("month", range(1, 13))
def test_churn_follows_nps_and_unresolved_tickets_on_every_day(month: int) -> None:
    churn = story.churn_is_higher_with_low_nps_and_unresolved_tickets
    assert _failures(CHURN_ACCOUNTS, month, [churn], CHURN_TABLES) == []


def test_days_cover_the_year() -> None:
    days = [d for month in range(1, 13) for d in _days(month)]
    assert len(days) == 366 and days[0] == dt.date(2024, 1, 1) and days[-1] == dt.date(2024, 12, 31)
    assert len(set(days)) == 366
