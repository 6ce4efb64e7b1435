"""One computation of the customer base per selection within a page run
(``kpis.customer_base.sharing`` / ``start_sharing``, which ``ui.filters.global_filters``
calls at the top of every page): the KPIs built on it read the database once, hand out
independent copies, and a new run reads the database again.

Hand-checked on the fixture (tests/kpis/fixtures.py): at 1 Jan 2024 A1, A2, A3 (starting
exactly then) and A5 are active, 4 customers; A2 (ending exactly at 1 Feb) and A5 churn in
January, churn rate 2 ÷ 4 = 0.5."""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

import kpis
from kpis import Filters
from kpis.customer_base import sharing, start_sharing
from tests.kpis import fixtures

JANUARY_TO_MARCH = Filters("2024-01-01", "2024-04-01")


@pytest.fixture
def crm(make_db: Callable[..., sa.Engine], monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    monkeypatch.setenv("CRM_ROLLUPS", "off")  # every call reads the base tables
    return fixtures.load(make_db("duckdb"))


@pytest.fixture
def statements(crm: sa.Engine) -> Iterator[list[str]]:
    """The statements the engine sends that read subscriptions (the customer base's)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if "subscriptions" in statement:
            seen.append(statement)

    sa.event.listen(crm, "before_cursor_execute", record)
    yield seen
    sa.event.remove(crm, "before_cursor_execute", record)


def test_the_kpis_of_one_selection_read_the_customer_base_once(crm: sa.Engine, statements: list[str]) -> None:
    with sharing():
        churn = kpis.churn_rate(crm, JANUARY_TO_MARCH)
        active = kpis.active_customers(crm, JANUARY_TO_MARCH)
        retention = kpis.revenue_retention(crm, JANUARY_TO_MARCH)
        assert len(statements) == 1
        kpis.churn_rate(crm, JANUARY_TO_MARCH, freq="quarter")  # another selection: computed
        kpis.churn_rate(crm, JANUARY_TO_MARCH.replace(segments=["SMB"]))
        assert len(statements) == 3
    assert churn["customers_at_start"].tolist()[0] == 4
    assert churn["churned"].tolist()[0] == 2
    assert churn["churn_rate"].tolist()[0] == pytest.approx(0.5)
    assert retention["accounts_at_start"].tolist() == churn["customers_at_start"].tolist()
    assert active["period"].tolist() == churn["period"].tolist()


def test_shared_frames_equal_unshared_ones_and_are_copies(crm: sa.Engine) -> None:
    alone = kpis.customer_base(crm, JANUARY_TO_MARCH)
    with sharing():
        first = kpis.customer_base(crm, JANUARY_TO_MARCH)
        first.loc[0, "customers_at_start"] = -1  # a caller changing its frame
        second = kpis.customer_base(crm, JANUARY_TO_MARCH)
    assert second.equals(alone)
    assert second["customers_at_start"].tolist()[0] == 4


def test_outside_a_run_and_in_a_new_run_the_database_is_read_again(
    crm: sa.Engine, statements: list[str]
) -> None:
    kpis.churn_rate(crm, JANUARY_TO_MARCH)
    kpis.churn_rate(crm, JANUARY_TO_MARCH)
    assert len(statements) == 2  # no sharing outside a run

    def page_run() -> int:
        start_sharing()  # as ui.filters.global_filters does
        kpis.churn_rate(crm, JANUARY_TO_MARCH)
        return int(kpis.active_customers(crm, JANUARY_TO_MARCH)["customers_at_start"].iloc[0])

    run = contextvars.copy_context()
    assert run.run(page_run) == 4
    assert len(statements) == 3
    # an import between two runs: A4 active since December 2023
    fixtures.insert(
        crm,
        "subscriptions",
        [
            dict(
                subscription_id="S7",
                account_id="A4",
                product_id="P2",
                mrr=5.0,
                started_at=dt.datetime(2023, 12, 1),
                ended_at=None,
                end_reason=None,
            )
        ],
    )
    assert run.run(page_run) == 5  # the same thread's next run starts a fresh memo
    assert len(statements) == 5
