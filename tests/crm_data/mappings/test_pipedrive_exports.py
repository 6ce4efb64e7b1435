"""Pipedrive exports as Pipedrive writes them (issue "Real exports as the vendors write
them"): deals, organizations and activities, "<Object> - <field>" columns, every value
quoted, times like ``2024-01-15 09:30:00``; imported into DuckDB and PostgreSQL, every
figure computed by hand from the fixture."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

import kpis
from crm_data import schema
from crm_data.importing import import_paths
from crm_data.mappings import load_mapping, suggest_mappings
from tests.crm_data.mappings import write_exports

KINDS = ("duckdb", "postgresql")
YEAR_2024 = kpis.Filters(dt.date(2024, 1, 1), dt.date(2025, 1, 1))


def _csv(rows: list[list[str]]) -> bytes:
    return "".join(",".join(f'"{v}"' for v in row) + "\r\n" for row in rows).encode("utf-8")


DEAL_COLUMNS = [
    "Deal - ID", "Deal - Title", "Deal - Creator", "Deal - Owner", "Deal - Value", "Deal - Currency",
    "Deal - Weighted value", "Deal - Probability", "Organization - Name", "Deal - Contact person",
    "Deal - Expected close date", "Deal - Pipeline", "Deal - Stage", "Deal - Label", "Deal - Status",
    "Deal - Deal created", "Deal - Update time", "Deal - Last stage change", "Deal - Won time",
    "Deal - Lost time", "Deal - Deal closed on", "Deal - Lost reason", "Deal - Visible to",
    "Deal - Total activities",
]  # fmt: skip


def _deal(
    id_: str, title: str, owner: str, value: str, currency: str, org: str, pipeline: str, stage: str,
    status: str, created: str, won: str = "", lost: str = "", reason: str = "",
) -> list[str]:  # fmt: skip
    closed = won or lost
    return [
        id_, title, "Jana Novak", owner, value, currency, value, "", org, "", "2024-06-30", pipeline, stage, "",
        status, created, closed or created, closed or created, won, lost, closed, reason, "Entire company", "3",
    ]  # fmt: skip


DEALS = _csv(
    [
        DEAL_COLUMNS,
        _deal("1", "Acme - CRM rollout", "Jana Novak", "12000", "EUR", "Acme GmbH", "Sales",
              "Negotiations Started", "Won", "2024-01-15 09:30:00", won="2024-03-01 16:00:00"),
        _deal("2", "Bolt - pilot", "Tom Berg", "4000", "USD", "Bolt Inc", "Sales", "Proposal Made", "Lost",
              "2024-01-20 11:00:00", lost="2024-02-10 10:00:00", reason="Price"),
        _deal("3", "Cobalt - renewal", "Tom Berg", "8000", "EUR", "Cobalt AB", "Renewals", "Contract Sent",
              "Open", "2024-02-05 14:15:00"),
        _deal("4", "Acme - add-on", "Jana Novak", "2500", "EUR", "Acme GmbH", "Sales", "Negotiations Started",
              "Won", "2024-02-10 08:00:00", won="2024-04-12 12:30:00"),
        _deal("5", "Dune - test deal", "Tom Berg", "100", "EUR", "Dune SA", "Sales", "Qualified", "Deleted",
              "2024-02-11 17:00:00"),
        _deal("6", "Echo - expansion", "Jana Novak", "6000", "USD", "", "Renewals", "Negotiations Started",
              "Lost", "2024-03-01 09:00:00", lost="2024-05-20 15:00:00", reason="No decision"),
        _deal("7", "Fjord - licences", "Tom Berg", "9500", "EUR", "Fjord AS", "Renewals", "Contract Sent",
              "Won", "2024-03-15 10:00:00", won="2024-06-28 17:45:00"),
    ]
)  # fmt: skip
# deals (deal 5 is deleted: skipped): won 1, 4, 7 = 12,000 + 2,500 + 9,500 = 24,000;
# lost 2, 6; open 3. Currencies: EUR on 1, 3, 4, 7 and USD on 2, 6.

ORGANIZATIONS = _csv(
    [
        ["Organization - ID", "Organization - Name", "Organization - Owner", "Organization - People",
         "Organization - Open deals", "Organization - Won deals", "Organization - Lost deals",
         "Organization - Address", "Organization - Country of Address", "Organization - Organization created",
         "Organization - Update time"],
        ["11", "Acme GmbH", "Jana Novak", "2", "0", "2", "0", "Hauptstr. 1, Berlin", "Germany",
         "2023-11-20 08:00:00", "2024-04-12 12:30:00"],
        ["12", "Bolt Inc", "Tom Berg", "1", "0", "0", "1", "1 Main St, Austin", "United States",
         "2024-01-19 15:00:00", "2024-02-10 10:00:00"],
        ["13", "Cobalt AB", "Tom Berg", "1", "1", "0", "0", "Storgatan 5, Malmö", "Sweden",
         "2023-09-01 10:00:00", "2024-02-05 14:15:00"],
    ]
)  # fmt: skip
# accounts: Acme, Bolt, Cobalt; Fjord AS only named by deal 7 (an account with its name,
# created at that deal's creation); Dune SA only by the deleted deal (no account).

ACTIVITIES = _csv(
    [
        ["Activity - ID", "Activity - Type", "Activity - Subject", "Activity - Due date", "Activity - Due time",
         "Activity - Duration", "Activity - Done", "Activity - Marked as done time", "Activity - Deal",
         "Activity - Person", "Activity - Organization", "Activity - Assigned to user", "Activity - Note",
         "Activity - Add time"],
        ["101", "Call", "Intro call", "2024-01-16", "10:00", "00:30", "Done", "2024-01-16 10:25:00",
         "Acme - CRM rollout", "Max Weber", "Acme GmbH", "Jana Novak", "", "2024-01-15 09:40:00"],
        ["102", "Meeting", "Demo", "2024-01-25", "14:00", "01:00", "Done", "2024-01-25 15:10:00",
         "Bolt - pilot", "Ann Lee", "Bolt Inc", "Tom Berg", "", "2024-01-20 11:05:00"],
        ["103", "Email", "Proposal sent", "2024-02-01", "", "", "Done", "2024-02-01 09:05:00",
         "Cobalt - renewal", "", "Cobalt AB", "Tom Berg", "", "2024-02-01 09:00:00"],
        ["104", "Task", "Prepare contract", "2024-02-02", "", "", "To do", "", "Cobalt - renewal", "",
         "Cobalt AB", "Tom Berg", "", "2024-02-01 09:10:00"],
        ["105", "Call", "Follow-up", "2024-07-02", "09:00", "00:15", "To do", "", "Cobalt - renewal", "",
         "Cobalt AB", "Tom Berg", "", "2024-06-20 10:00:00"],
        ["106", "Lunch", "Lunch with the CFO", "2024-03-20", "12:30", "01:30", "Done", "2024-03-20 13:30:00",
         "", "Eva Lund", "Gamma Ltd", "Jana Novak", "", "2024-03-18 16:00:00"],
        ["107", "Deadline", "Contract deadline", "2024-03-31", "", "", "Done", "2024-03-29 11:00:00",
         "Fjord - licences", "", "Fjord AS", "Tom Berg", "", "2024-03-15 10:05:00"],
    ]
)  # fmt: skip
# interactions: 101 phone, 102 meeting, 103 email, 106 meeting (lunch); skipped 104 (a task,
# to do), 105 (to do), 107 (a deadline). Gamma Ltd: named by activity 106 only (a new account).


def _rows(engine: sa.Engine, statement: sa.Select) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(statement)]


def test_the_exports_are_recognised_as_pipedrive(tmp_path: Path) -> None:
    folder = write_exports(
        tmp_path / "export",
        {
            "deals-2024.csv": DEALS,
            "organizations-2024.csv": ORGANIZATIONS,
            "activities-2024.csv": ACTIVITIES,
        },
    )
    suggested = suggest_mappings([folder])
    assert (suggested[0][0].name, suggested[0][1]) == ("pipedrive", 3)
    matched = load_mapping("pipedrive").match([folder])
    assert {key: [p.name for p in paths] for key, paths in matched.files.items()} == {
        "deals": ["deals-2024.csv"],
        "organizations": ["organizations-2024.csv"],
        "activities": ["activities-2024.csv"],
    }


@pytest.mark.parametrize("kind", KINDS)
def test_deals_organizations_and_activities(make_db, tmp_path: Path, kind: str) -> None:
    engine = make_db(kind)
    folder = write_exports(
        tmp_path / "export",
        {
            "deals-2024.csv": DEALS,
            "organizations-2024.csv": ORGANIZATIONS,
            "activities-2024.csv": ACTIVITIES,
        },
    )
    report = import_paths(engine, [folder], mapping="pipedrive")
    assert report.ok, report.render()
    assert report.rows == {"accounts": 5, "users": 2, "deals": 6, "interactions": 4}
    deals = schema.deals
    assert _rows(
        engine, sa.select(deals.c.deal_id, deals.c.status, deals.c.closed_at).order_by(deals.c.deal_id)
    ) == [
        ("pd-1", "won", dt.datetime(2024, 3, 1, 16, 0)),
        ("pd-2", "lost", dt.datetime(2024, 2, 10, 10, 0)),
        ("pd-3", "open", None),
        ("pd-4", "won", dt.datetime(2024, 4, 12, 12, 30)),
        ("pd-6", "lost", dt.datetime(2024, 5, 20, 15, 0)),
        ("pd-7", "won", dt.datetime(2024, 6, 28, 17, 45)),
    ]
    by_id = {
        r[0]: r[1:] for r in _rows(engine, sa.select(deals.c.deal_id, deals.c.account_id, deals.c.pipeline))
    }
    assert by_id["pd-1"] == ("pd-org-acme gmbh", "Sales") and by_id["pd-6"] == (None, "Renewals")
    accounts = schema.accounts
    assert _rows(engine, sa.select(accounts.c.account_id, accounts.c.name, accounts.c.created_at).order_by(
        accounts.c.account_id
    )) == [
        ("pd-org-acme gmbh", "Acme GmbH", dt.datetime(2023, 11, 20, 8, 0)),
        ("pd-org-bolt inc", "Bolt Inc", dt.datetime(2024, 1, 19, 15, 0)),
        ("pd-org-cobalt ab", "Cobalt AB", dt.datetime(2023, 9, 1, 10, 0)),
        ("pd-org-fjord as", "Fjord AS", dt.datetime(2024, 3, 15, 10, 0)),  # from deal 7
        ("pd-org-gamma ltd", "Gamma Ltd", dt.datetime(2024, 3, 18, 16, 0)),  # from activity 106
    ]  # fmt: skip
    interactions = schema.interactions
    assert _rows(engine, sa.select(interactions.c.interaction_id, interactions.c.channel, interactions.c.occurred_at)
                 .order_by(interactions.c.interaction_id)) == [
        ("pd-act-101", "phone", dt.datetime(2024, 1, 16, 10, 25)),
        ("pd-act-102", "meeting", dt.datetime(2024, 1, 25, 15, 10)),
        ("pd-act-103", "email", dt.datetime(2024, 2, 1, 9, 5)),
        ("pd-act-106", "meeting", dt.datetime(2024, 3, 20, 13, 30)),
    ]  # fmt: skip

    warnings = [str(w) for w in report.warnings]
    deleted = next(w for w in warnings if "deleted deal(s) skipped" in w)
    assert "1 deleted deal(s) skipped" in deleted and "line 6: Deal - Status = Deleted" in deleted
    # Deal - Currency -> deals.currency: with no reporting currency set, nothing is converted
    # and the import says so per currency (never sums EUR and USD silently)
    currencies = next(w for w in warnings if "no reporting currency is set" in w)
    assert "EUR (4 deals), USD (2 deals)" in currencies and "NOT converted" in currencies
    skipped = next(w for w in warnings if "activity(ies) skipped" in w)
    assert (
        "3 activity(ies) skipped" in skipped
        and "line 5: Activity - Done = To do, Activity - Type = Task" in skipped
    )
    assert any("1 organization(s) that deals name" in w and "pd-org-fjord as Fjord AS" in w for w in warnings)
    assert any("1 organization(s) that activities name" in w for w in warnings)

    assert report.summary is not None
    assert report.summary.deals == {"won": 3, "lost": 2, "open": 1}
    assert report.summary.won_amount == {"EUR": 24000.0}
    assert "  won amount (EUR): 24,000.00" in report.render()
    wins = kpis.win_rate(engine, YEAR_2024, "year")
    assert (wins.loc[0, "won"], wins.loc[0, "lost"], wins.loc[0, "win_rate"]) == (3, 2, 0.6)
    renewals = kpis.win_rate(engine, YEAR_2024.replace(pipelines=("Renewals",)), "year")
    assert (renewals.loc[0, "won"], renewals.loc[0, "lost"], renewals.loc[0, "open_created"]) == (1, 1, 1)
    # won deals' cycles: 46 d 6.5 h (1), 62 d 4.5 h (4), 105 d 7.75 h (7)
    cycle = kpis.sales_cycle(engine, YEAR_2024)
    assert cycle.loc[0, "mean_days"] == pytest.approx((46 + 6.5 / 24 + 62 + 4.5 / 24 + 105 + 7.75 / 24) / 3)


@pytest.mark.parametrize("kind", KINDS)
def test_deal_currencies_are_converted_with_the_databases_rates(make_db, tmp_path: Path, kind: str) -> None:
    """Deal - Currency is each deal's currency: with EUR as the reporting currency and a USD
    rate of 0.9 from 2024-01-01, the USD deals' values are converted, the EUR ones kept."""
    engine = make_db(kind)
    rates = b"currency,valid_from,rate_to_reporting\r\nUSD,2024-01-01,0.9\r\n"
    bundle = write_exports(tmp_path / "rates", {"exchange_rates.csv": rates})
    assert import_paths(engine, [bundle], reporting_currency="EUR").ok
    path = write_exports(tmp_path / "pd", {"deals.csv": DEALS}) / "deals.csv"
    report = import_paths(engine, [path], mapping="pipedrive")
    assert report.ok, report.render()
    assert not [w for w in report.warnings if "currenc" in w.reason]
    deals = schema.deals
    rows = _rows(
        engine,
        sa.select(deals.c.deal_id, deals.c.currency, deals.c.amount_original, deals.c.amount).order_by(
            deals.c.deal_id
        ),
    )
    assert rows == [
        ("pd-1", "EUR", 12000.0, 12000.0), ("pd-2", "USD", 4000.0, 3600.0), ("pd-3", "EUR", 8000.0, 8000.0),
        ("pd-4", "EUR", 2500.0, 2500.0), ("pd-6", "USD", 6000.0, 5400.0), ("pd-7", "EUR", 9500.0, 9500.0),
    ]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_deals_in_one_currency_are_not_reported(make_db, tmp_path: Path, kind: str) -> None:
    engine = make_db(kind)
    one_currency = DEALS.replace(b'"USD"', b'"EUR"')
    path = write_exports(tmp_path, {"deals.csv": one_currency}) / "deals.csv"
    report = import_paths(engine, [path], mapping="pipedrive")
    assert report.ok, report.render()
    assert not [w for w in report.warnings if "several currencies" in w.reason]
    # no organizations export: every organization the (not deleted) deals name is an account
    accounts = schema.accounts
    assert [r[0] for r in _rows(engine, sa.select(accounts.c.name).order_by(accounts.c.name))] == [
        "Acme GmbH", "Bolt Inc", "Cobalt AB", "Fjord AS",
    ]  # fmt: skip
