"""Data-quality checks: clean data gives no finding; each planted problem is found exactly.

The fixture is written out below; ``NOW`` is the check time. Every case adds or changes
a few rows and states which finding must report which records — and that every other
check still reports nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from crm_data import schema
from crm_data.quality import check_database

NOW = datetime(2026, 11, 30, 12, 0)
T = datetime


def clean_rows() -> dict[str, list[dict]]:
    """A small CRM with nothing wrong in it."""
    return {
        "users": [
            {"user_id": "U1", "name": "Ann", "team": "East"},
            {"user_id": "U2", "name": "Bob", "manager_id": "U1"},
        ],
        "products": [{"product_id": "P1", "name": "Widget"}, {"product_id": "P2", "name": "Gadget"}],
        "pipeline_stages": [
            {"stage": "Lead", "position": 1},
            {"stage": "Proposal", "position": 2},
            {"stage": "Closed Won", "position": 3, "is_closed": True, "is_won": True},
        ],
        "accounts": [
            # "Acme Inc" and "Acme Industries" stay distinct: only legal suffixes are dropped
            _account("A1", "Acme Inc"),
            _account("A2", "Acme Industries"),
            _account("A3", "Globex"),
        ],
        "contacts": [
            {"contact_id": "C1", "account_id": "A1", "name": "Cy", "email": "cy@acme.test"},
            {"contact_id": "C2", "account_id": "A2", "name": "Di", "email": "di@acme.test"},
        ],
        "subscriptions": [
            # S1 ends exactly when S2 starts: half-open intervals, no overlap
            _subscription("S1", "A1", "P1", T(2024, 1, 1), T(2025, 1, 1)),
            _subscription("S2", "A1", "P1", T(2025, 1, 1), None),
            # same account, other product: no overlap
            _subscription("S3", "A1", "P2", T(2024, 6, 1), None),
            _subscription("S4", "A3", "P1", T(2024, 1, 1), T(2027, 1, 1)),  # a planned end is fine
        ],
        "deals": [
            # D1 open, last stage change 2026-11-01: 29 days before NOW, not stale
            _deal("D1", "A1", "open", T(2026, 9, 1)),
            _deal("D2", "A3", "won", T(2024, 1, 1), closed_at=T(2024, 3, 1)),
        ],
        "deal_stage_history": [
            {"deal_id": "D1", "stage": "Lead", "entered_at": T(2026, 9, 1)},
            {"deal_id": "D1", "stage": "Proposal", "entered_at": T(2026, 11, 1)},
            {"deal_id": "D2", "stage": "Lead", "entered_at": T(2024, 1, 1)},
            {"deal_id": "D2", "stage": "Closed Won", "entered_at": T(2024, 3, 1)},
        ],
        "tickets": [{"ticket_id": "K1", "account_id": "A1", "product_id": "P1", "opened_at": T(2026, 1, 5)}],
        "campaigns": [
            {
                "campaign_id": "M1",
                "name": "Spring",
                "started_on": date(2026, 3, 1),
                "ended_on": date(2027, 3, 1),
            }
        ],
        "interactions": [
            {
                "interaction_id": "I1",
                "account_id": "A1",
                "contact_id": "C1",
                "user_id": "U1",
                "channel": "email",
                "occurred_at": T(2026, 11, 30, 11, 59),
                "deal_id": "D1",
                "ticket_id": "K1",
                "campaign_id": "M1",
            }
        ],
        "payments": [{"payment_id": "Y1", "account_id": "A1", "paid_at": T(2026, 11, 1), "amount": 100.0}],
    }


def _account(account_id: str, name: str, **extra: object) -> dict:
    row = {
        "account_id": account_id,
        "name": name,
        "segment": "SMB",
        "industry": "Retail",
        "region": "EMEA",
        "owner_id": "U1",
        "created_at": T(2024, 1, 1),
    }
    return row | extra


def _subscription(sid: str, account: str, product: str | None, start: datetime, end: datetime | None) -> dict:
    return {
        "subscription_id": sid,
        "account_id": account,
        "product_id": product,
        "started_at": start,
        "ended_at": end,
    }


def _deal(deal_id: str, account: str, status: str, created: datetime, **extra: object) -> dict:
    row = {
        "deal_id": deal_id,
        "account_id": account,
        "owner_id": "U2",
        "product_id": "P1",
        "amount": 1000.0,
        "created_at": created,
        "status": status,
    }
    return row | extra


def load(engine: sa.Engine, rows: dict[str, list[dict]]) -> None:
    with engine.begin() as conn:
        for table in schema.TABLES:
            if rows.get(table.name):
                conn.execute(
                    table.insert(), [{c.name: r.get(c.name) for c in table.columns} for r in rows[table.name]]
                )


def _counts(engine: sa.Engine) -> dict[str, int]:
    report = check_database(engine, stale_days=90, now=NOW)
    return {f.key: f.count for f in report.findings}


def test_clean_data_has_no_findings(db: sa.Engine) -> None:
    load(db, clean_rows())
    report = check_database(db, stale_days=90, now=NOW)
    assert report.ok, report.render()
    assert len(report.findings) == 50
    assert all(f.count == 0 and f.records.empty for f in report.findings)
    assert "All 50 checks passed." in report.render()


def _plant_duplicate_accounts(rows: dict) -> None:
    rows["accounts"] += [
        _account("A4", " ACME, Inc. "),  # -> "acme"
        _account("A5", "acme  gmbh"),  # -> "acme"
        _account("A6", "Acme Corp. Ltd"),  # two suffixes -> "acme"
        _account("A7", "Globex S.A."),  # -> "globex"
    ]


def _plant_duplicate_contacts(rows: dict) -> None:
    rows["contacts"].append({"contact_id": "C3", "account_id": "A3", "email": " CY@Acme.test"})


def _plant_missing_fields(rows: dict) -> None:
    rows["accounts"].append(_account("A8", "Initech", segment=None, owner_id="  "))  # blank owner = missing
    rows["contacts"].append({"contact_id": "C4", "account_id": "A3", "email": ""})
    rows["deals"].append(_deal("D3", "A3", "lost", T(2026, 1, 1), amount=None))
    rows["tickets"].append({"ticket_id": "K2", "opened_at": T(2026, 2, 1)})


def _plant_stale_deals(rows: dict) -> None:
    # D4: last stage change 2026-08-31 12:00 = 91 days before NOW -> stale
    rows["deals"].append(_deal("D4", "A3", "open", T(2026, 6, 1)))
    rows["deal_stage_history"].append({"deal_id": "D4", "stage": "Lead", "entered_at": T(2026, 8, 31, 12)})
    # D5: no history, created 2026-09-01 = 90 days before NOW -> exactly 90 days is not stale
    rows["deals"].append(_deal("D5", "A3", "open", T(2026, 9, 1, 12)))
    # D6: no history, created long ago -> stale
    rows["deals"].append(_deal("D6", "A3", "open", T(2025, 1, 1)))
    # D7: old but closed -> not stale
    rows["deals"].append(_deal("D7", "A3", "lost", T(2025, 1, 1), closed_at=T(2025, 2, 1)))


def _plant_orphans(rows: dict) -> None:
    rows["deals"].append(_deal("D8", "A3", "won", T(2026, 1, 1), owner_id="U9", closed_at=T(2026, 2, 1)))
    rows["tickets"].append({"ticket_id": "K3", "product_id": "P9", "opened_at": T(2026, 2, 1)})
    rows["interactions"].append(
        {"interaction_id": "I2", "channel": "phone", "occurred_at": T(2026, 1, 1), "deal_id": "D99"}
    )
    rows["deal_stage_history"].append({"deal_id": "D2", "stage": "Negotiation", "entered_at": T(2024, 2, 1)})


def _plant_future(rows: dict) -> None:
    rows["payments"].append(
        {"payment_id": "Y2", "account_id": "A1", "paid_at": T(2026, 11, 30, 12, 1), "amount": 5.0}
    )
    rows["campaigns"].append(
        {"campaign_id": "M2", "name": "Next", "started_on": date(2027, 1, 1)}
    )  # planned: fine


def _plant_overlaps(rows: dict) -> None:
    rows["subscriptions"] += [
        _subscription("S5", "A3", "P1", T(2026, 6, 1), None),  # overlaps S4 (ends 2027)
        _subscription("S6", "A2", None, T(2024, 1, 1), T(2024, 6, 1)),
        _subscription(
            "S7", "A2", None, T(2024, 5, 1), T(2024, 7, 1)
        ),  # overlaps S6: no product = one product
    ]


CASES: dict[str, tuple[Callable[[dict], None], dict[str, list[tuple]]]] = {
    "duplicate accounts": (
        _plant_duplicate_accounts,
        {
            "duplicate_accounts": [
                ("acme", "A1"),
                ("acme", "A4"),
                ("acme", "A5"),
                ("acme", "A6"),
                ("globex", "A3"),
                ("globex", "A7"),
            ]
        },
    ),
    "duplicate contacts": (
        _plant_duplicate_contacts,
        {"duplicate_contacts": [("cy@acme.test", "C1"), ("cy@acme.test", "C3")]},
    ),
    "missing fields": (
        _plant_missing_fields,
        {
            "missing_accounts_segment": [("A8",)],
            "missing_accounts_owner_id": [("A8",)],
            "missing_contacts_email": [("C4",)],
            "missing_deals_amount": [("D3",)],
            "missing_tickets_product_id": [("K2",)],
        },
    ),
    "stale open deals": (_plant_stale_deals, {"stale_open_deals": [("D6",), ("D4",)]}),
    "orphans": (
        _plant_orphans,
        {
            "orphan_deals_owner_id": [("D8", "U9")],
            "orphan_tickets_product_id": [("K3", "P9")],
            "orphan_interactions_deal_id": [("I2", "D99")],
            "orphan_deal_stage_history_stage": [("D2", "Negotiation", T(2024, 2, 1), "Negotiation")],
        },
    ),
    "future timestamps": (_plant_future, {"future_payments": [("Y2",)]}),
    "overlapping subscriptions": (
        _plant_overlaps,
        {"overlapping_subscriptions": [("A2", "S6", "S7"), ("A3", "S4", "S5")]},
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_planted_problem_is_found(db: sa.Engine, case: str) -> None:
    plant, expected = CASES[case]
    rows = clean_rows()
    plant(rows)
    load(db, rows)
    report = check_database(db, stale_days=90, now=NOW)
    for key, records in expected.items():
        finding = report.finding(key)
        assert finding.count == len(records), (key, finding.records)
        width = len(records[0])
        if key == "duplicate_accounts":
            got = list(finding.records[["normalised_name", "account_id"]].itertuples(index=False, name=None))
        elif key == "duplicate_contacts":
            got = list(finding.records[["normalised_email", "contact_id"]].itertuples(index=False, name=None))
        elif key == "overlapping_subscriptions":
            columns = ["account_id", "subscription_id", "overlapping_subscription_id"]
            got = list(finding.records[columns].itertuples(index=False, name=None))
        else:
            got = [tuple(r[:width]) for r in finding.records.itertuples(index=False, name=None)]
        assert got == records, key
    others = {f.key: f.count for f in report.findings if f.key not in expected and f.count}
    assert others == {}


def test_stale_deal_records_say_how_long(make_db) -> None:
    engine = make_db("duckdb")
    rows = clean_rows()
    _plant_stale_deals(rows)
    load(engine, rows)
    records = check_database(engine, stale_days=90, now=NOW).finding("stale_open_deals").records
    # D6: created 2025-01-01 00:00 -> NOW 2026-11-30 12:00 = 365 + 333 days + 0.5 = 698.5 days
    # D4: 2026-08-31 12:00 -> 2026-11-30 12:00 = 1 + 30 + 31 + 29 = 91 days
    assert records["days_without_change"].round(9).tolist() == [698.5, 91.0]
    # a shorter threshold catches D5 (90 days) and D1 (29 days) too
    assert check_database(engine, stale_days=20, now=NOW).finding("stale_open_deals").count == 4


def test_sample_records_are_capped_and_render_lists_them(make_db) -> None:
    engine = make_db("sqlite")
    rows = clean_rows()
    rows["accounts"] += [_account(f"B{i:02d}", "Same Name", segment=None) for i in range(30)]
    load(engine, rows)
    report = check_database(engine, stale_days=90, now=NOW, limit=5)
    duplicates = report.finding("duplicate_accounts")
    assert duplicates.count == 30 and len(duplicates.records) == 5
    text = report.render(rows=3)
    assert "[!] Duplicate accounts: 30" in text
    assert "[!] Accounts without segment: 30" in text
    assert "... 27 more" in text
    assert "B02" in text and "B03" not in text


def test_missing_tables_are_reported_not_crashed_on(make_db) -> None:
    engine = make_db("duckdb", create=False)
    with engine.begin() as conn:
        schema.accounts.create(conn)
    report = check_database(engine, now=NOW)
    assert not report.ok
    assert "deals" in report.missing_tables
    assert {f.key for f in report.findings} >= {"duplicate_accounts", "missing_accounts_segment"}
    assert "tables missing" in report.render()


#: A row of each table the roll-ups summarise besides payments, written behind their back.
BEHIND_THEIR_BACK: dict[str, dict] = {
    "accounts": _account("A9", "Initech"),
    "subscriptions": _subscription("S9", "A3", "P2", T(2026, 2, 1), None),
    "costs": {"cost_id": "K9", "incurred_on": date(2026, 2, 1), "category": "loyalty", "amount": 1.0},
    "survey_responses": {"response_id": "R9", "account_id": "A1", "survey": "nps", "score": 9.0,
                         "responded_at": T(2026, 11, 2)},
    "deals": _deal("D9", "A1", "lost", T(2026, 10, 1), closed_at=T(2026, 11, 2)),
    "tickets": {"ticket_id": "K9", "account_id": "A1", "opened_at": T(2026, 11, 2)},
}  # fmt: skip


def test_stale_rollups_are_reported_until_refreshed(db: sa.Engine) -> None:
    """Roll-ups built, then a payment written behind their back: the check names the
    revenue roll-up, the one that summarises payments (built from N rows of accounts and
    payments, N + 1 now); a refresh clears it. Without roll-ups the check is absent (the 50
    checks above)."""
    from kpis import rollups

    load(db, clean_rows())
    rollups.refresh_database(db, today=NOW.date())
    report = check_database(db, stale_days=90, now=NOW)
    assert report.ok, report.render()
    assert report.finding("stale_rollups").count == 0
    with db.begin() as conn:
        built = rollups.source_rows(conn, rollups.REVENUE.tables)
        conn.execute(
            schema.payments.insert().values(
                payment_id="Y9", account_id="A1", paid_at=T(2026, 11, 2), amount=5.0
            )
        )
    stale = check_database(db, stale_days=90, now=NOW).finding("stale_rollups")
    assert stale.count == 1
    assert stale.records[["rollup", "source_rows", "rows_now"]].values.tolist() == [
        [rollups.REVENUE.name, built, built + 1]
    ]
    assert "python -m crm_data rollups" in stale.description
    # the description names every summarised table
    assert all(t.name in stale.description for t in rollups.SOURCES)
    rollups.refresh_database(db, today=NOW.date())
    assert check_database(db, stale_days=90, now=NOW).finding("stale_rollups").count == 0


def test_every_summarised_table_makes_the_rollups_stale(db: sa.Engine) -> None:
    """A row added to (then one deleted from) any table of ``rollups.SOURCES`` behind the
    roll-ups' back makes exactly the roll-ups that summarise it stale (an account: all of
    them); a row of a table they do not summarise makes none."""
    from kpis import rollups, stage_visits

    assert {t.name for t in rollups.SOURCES} - {"payments"} == set(BEHIND_THEIR_BACK)
    load(db, clean_rows())
    rollups.refresh_database(db, today=NOW.date())
    for name, row in BEHIND_THEIR_BACK.items():
        table = schema.metadata.tables[name]
        key = next(iter(table.primary_key.columns))
        load(db, {name: [row]})
        stale = check_database(db, stale_days=90, now=NOW).finding("stale_rollups")
        summarising = {r.name for r in rollups.ROLLUPS if table in r.tables}
        if table in stage_visits.SOURCES:
            summarising.add(stage_visits.NAME)
        assert summarising and set(stale.records["rollup"]) == summarising, name
        with db.begin() as conn:  # back to the rows they were built from
            conn.execute(table.delete().where(key == row[key.name]))
        assert check_database(db, stale_days=90, now=NOW).finding("stale_rollups").count == 0, name
    # a row fewer than when built: the clean ticket K1 (interactions reference it, not by key)
    with db.begin() as conn:
        conn.execute(schema.tickets.delete().where(schema.tickets.c.ticket_id == "K1"))
    stale = check_database(db, stale_days=90, now=NOW).finding("stale_rollups")
    assert stale.records["rollup"].tolist() == [rollups.FIRST_CONTACT_RESOLUTION.name]
    rollups.refresh_database(db, today=NOW.date())
    # not summarised: users
    load(db, {"users": [{"user_id": "U9", "name": "Eve"}]})
    assert check_database(db, stale_days=90, now=NOW).finding("stale_rollups").count == 0


# --- the scope: accounts in two regions (A*: EMEA, B*: APAC), problems in both ---------


def two_region_rows() -> dict[str, list[dict]]:
    """``clean_rows`` (accounts A1-A3, all EMEA) plus APAC accounts and problems in both
    regions, one or two of each kind; the counts per scope are written out below."""
    rows = clean_rows()
    rows["users"].append({"user_id": "U3", "name": "Cat", "manager_id": "U9"})  # orphan manager: no account
    rows["accounts"] += [
        _account("A4", "Globex Ltd"),  # EMEA: duplicates A3 "Globex"
        _account("A5", "Umbrella", segment=None),  # EMEA, no segment
        _account("A6", "Hooli", region=None),  # no region: in no region's scope
        _account("B1", "Initech", region="APAC"),
        _account("B2", "Initech Ltd", region="APAC"),  # APAC: duplicates B1
        _account("B3", "Acme GmbH", region="APAC"),  # "acme" like A1 (EMEA): a cross-region pair
        _account("B4", "Vandelay", region="APAC", segment=None),  # APAC, no segment
    ]
    rows["contacts"] += [
        {"contact_id": "C4", "account_id": "A3", "email": ""},  # EMEA, no email
        {"contact_id": "C5", "account_id": "B1", "email": "cy@acme.test"},  # C1's (EMEA): cross-region
        {"contact_id": "C6", "account_id": "A3", "email": "DI@acme.test"},  # C2's: an EMEA pair
        {"contact_id": "C7", "account_id": "B1", "email": "x@initech.test"},
        {"contact_id": "C8", "account_id": "B2", "email": " X@initech.test"},  # an APAC pair
    ]
    rows["deals"] += [
        _deal("D3", "B1", "lost", T(2026, 1, 1), amount=None),  # APAC, no amount
        _deal("D4", "A3", "open", T(2025, 1, 1)),  # EMEA, stale
        _deal("D5", "B2", "open", T(2025, 1, 1)),  # APAC, stale
        _deal("D6", "B1", "won", T(2026, 1, 1), owner_id="U9", closed_at=T(2026, 2, 1)),  # APAC orphan owner
    ]
    rows["deal_stage_history"] += [
        {"deal_id": "D2", "stage": "Negotiation", "entered_at": T(2024, 2, 1)},  # EMEA (A3's deal)
        {"deal_id": "D5", "stage": "Negotiation", "entered_at": T(2025, 2, 1)},  # APAC (B2's deal)
    ]
    rows["tickets"].append(
        {"ticket_id": "K3", "account_id": "A1", "product_id": "P9", "opened_at": T(2026, 2, 1)}
    )  # EMEA orphan product
    rows["interactions"].append(
        {"interaction_id": "I2", "channel": "phone", "occurred_at": T(2026, 1, 1), "deal_id": "D99"}
    )  # orphan deal, no account
    rows["payments"] += [
        {"payment_id": "Y2", "account_id": "A1", "paid_at": T(2026, 12, 1), "amount": 5.0},  # EMEA future
        {"payment_id": "Y3", "account_id": "B1", "paid_at": T(2026, 12, 1), "amount": 5.0},  # APAC future
    ]
    rows["costs"] = [
        {"cost_id": "Q1", "incurred_on": date(2027, 1, 1), "category": "ads", "amount": 1.0},  # no account
        {
            "cost_id": "Q2",
            "incurred_on": date(2027, 1, 1),
            "category": "ads",
            "account_id": "A1",
            "amount": 1.0,
        },
    ]
    rows["web_traffic"] = [{"date": date(2027, 1, 1), "source": "google", "sessions": 1}]  # no account
    rows["subscriptions"] += [
        _subscription("S5", "A3", "P1", T(2026, 6, 1), None),  # EMEA: overlaps S4
        _subscription("S6", "B1", None, T(2024, 1, 1), T(2024, 6, 1)),
        _subscription("S7", "B1", None, T(2024, 5, 1), T(2024, 7, 1)),  # APAC: overlaps S6
    ]
    return rows


#: The findings with records, by hand: whole database, EMEA, APAC.
WHOLE_DATABASE = {
    "duplicate_accounts": 6,  # acme A1+B3, globex A3+A4, initech B1+B2
    "duplicate_contacts": 6,  # cy C1+C5, di C2+C6, x C7+C8
    "missing_accounts_segment": 2,  # A5, B4
    "missing_accounts_region": 1,  # A6
    "missing_contacts_email": 1,  # C4
    "missing_deals_amount": 1,  # D3
    "stale_open_deals": 2,  # D4, D5
    "orphan_users_manager_id": 1,  # U3
    "orphan_deals_owner_id": 1,  # D6
    "orphan_deal_stage_history_stage": 2,  # D2, D5 Negotiation
    "orphan_interactions_deal_id": 1,  # I2
    "orphan_tickets_product_id": 1,  # K3
    "future_payments": 2,  # Y2, Y3
    "future_costs": 2,  # Q1, Q2
    "future_web_traffic": 1,
    "overlapping_subscriptions": 2,  # S4+S5, S6+S7
}
EMEA = {
    "duplicate_accounts": 2,  # A3, A4 (acme: only A1 is in EMEA)
    "duplicate_contacts": 2,  # C2, C6 (cy: C5 is APAC's)
    "missing_accounts_segment": 1,  # A5
    "missing_contacts_email": 1,  # C4
    "stale_open_deals": 1,  # D4
    "orphan_deal_stage_history_stage": 1,  # D2 (A3's deal)
    "orphan_tickets_product_id": 1,  # K3
    "future_payments": 1,  # Y2
    "future_costs": 1,  # Q2 (Q1 has no account)
    "overlapping_subscriptions": 1,  # S4+S5
}
APAC = {
    "duplicate_accounts": 2,  # B1, B2
    "duplicate_contacts": 2,  # C7, C8
    "missing_accounts_segment": 1,  # B4
    "missing_deals_amount": 1,  # D3
    "stale_open_deals": 1,  # D5
    "orphan_deals_owner_id": 1,  # D6
    "orphan_deal_stage_history_stage": 1,  # D5
    "future_payments": 1,  # Y3
    "overlapping_subscriptions": 1,  # S6+S7
}
#: Checks on tables without an account: absent from a restricted scope's report.
ACCOUNTLESS_CHECKS = {"orphan_users_manager_id", "future_web_traffic", "future_social_media"}


def _problems(report) -> dict[str, int]:
    return {f.key: f.count for f in report.findings if f.count}


def test_a_scope_counts_only_its_records(db: sa.Engine) -> None:
    from kpis.filters import Scope

    load(db, two_region_rows())
    assert _problems(check_database(db, stale_days=90, now=NOW)) == WHOLE_DATABASE
    emea = check_database(db, stale_days=90, now=NOW, scope=Scope(regions=("EMEA",)))
    assert _problems(emea) == EMEA
    assert _problems(check_database(db, stale_days=90, now=NOW, scope={"regions": ["APAC"]})) == APAC
    # the records listed are EMEA's too; a duplicate counts its partners within the scope
    duplicates = emea.finding("duplicate_accounts").records
    assert duplicates[["account_id", "accounts_with_this_name"]].values.tolist() == [["A3", 2], ["A4", 2]]
    assert emea.finding("duplicate_contacts").records["contact_id"].tolist() == ["C2", "C6"]
    assert emea.finding("stale_open_deals").records["deal_id"].tolist() == ["D4"]
    assert emea.finding("future_costs").records["cost_id"].tolist() == ["Q2"]
    assert emea.finding("overlapping_subscriptions").records["overlapping_subscription_id"].tolist() == ["S5"]
    # tables without an account: not in a restricted scope's report, and it says so
    keys = {f.key for f in emea.findings}
    assert not keys & ACCOUNTLESS_CHECKS and "stale_rollups" not in keys
    assert "users" in emea.hidden_tables and "web_traffic" in emea.hidden_tables
    assert "within region EMEA; findings on" in emea.render()
    # owners as kpis.filters selects them: deals by their owner, other records by their account's
    u2 = _problems(check_database(db, stale_days=90, now=NOW, scope=Scope(owners=("U2",))))
    # U2 owns the deals (D3-D5; D6 is U9's) and no account; the stage history goes with its deal
    assert u2 == {"stale_open_deals": 2, "missing_deals_amount": 1, "orphan_deal_stage_history_stage": 2}
    # U1 owns every account but no deal: APAC's findings less the deals'
    u1 = _problems(check_database(db, stale_days=90, now=NOW, scope={"owners": ["U1"], "regions": ["APAC"]}))
    assert u1 == {
        "duplicate_accounts": 2,
        "duplicate_contacts": 2,
        "missing_accounts_segment": 1,
        "future_payments": 1,
        "overlapping_subscriptions": 1,
    }


def test_an_unrestricted_scope_gives_the_whole_database_report(db: sa.Engine) -> None:
    from kpis.filters import EVERYTHING

    load(db, two_region_rows())
    whole = check_database(db, stale_days=90, now=NOW)
    assert whole.scope is None and whole.hidden_tables == []
    for scope in (EVERYTHING, {}, None):
        again = check_database(db, stale_days=90, now=NOW, scope=scope)
        assert [(f.key, f.title, f.table, f.count, f.description) for f in again.findings] == [
            (f.key, f.title, f.table, f.count, f.description) for f in whole.findings
        ]
        for mine, theirs in zip(again.findings, whole.findings, strict=True):
            assert mine.records.equals(theirs.records), mine.key
        assert again.render() == whole.render()


# ------------------------------------------------------------ foreign keys the database enforces


def _statements_of(engine: sa.Engine) -> list[str]:
    """Every statement ``engine`` executes from now on (appended as it runs)."""
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda c, cur, statement, *_: seen.append(statement))
    return seen


def test_enforced_foreign_keys_are_not_joined_on_postgresql(make_db) -> None:
    """On PostgreSQL the schema's foreign keys (``payments.account_id`` → accounts, the stage
    history's ``deal_id`` → deals, ...) are validated constraints: no orphan can exist, so
    their checks count 0 without joining the parent — the payments' row checks (no other
    reference) read the payments alone. The clean fixture: all 50 checks, none found."""
    from crm_data.dialects import enforced_references

    engine = make_db("postgresql")
    load(engine, clean_rows())
    with engine.connect() as conn:
        enforced = enforced_references(conn)
    assert ("payments", "account_id", "accounts", "account_id") in enforced
    assert ("deal_stage_history", "deal_id", "deals", "deal_id") in enforced
    assert ("deals", "owner_id", "users", "user_id") not in enforced  # a soft reference: no key
    seen = _statements_of(engine)
    report = check_database(engine, stale_days=90, now=NOW)
    assert len(report.findings) == 50 and report.ok
    assert report.finding("orphan_payments_account_id").count == 0
    counted = [s for s in seen if "FROM payments" in s and "count(*) FILTER" in s]
    assert len(counted) == 1 and "JOIN" not in counted[0], counted


@pytest.mark.parametrize("how", ["not validated", "triggers disabled"])
def test_an_unenforced_foreign_key_is_still_checked(make_db, how: str) -> None:
    """A constraint added NOT VALID over an orphan, or one whose triggers are disabled while
    the orphan is written, does not vouch for the rows: the orphan is counted (1: payment Y9
    of account A404, which does not exist)."""
    from crm_data.dialects import enforced_references

    engine = make_db("postgresql")
    load(engine, clean_rows())
    orphan = {"payment_id": "Y9", "account_id": "A404", "paid_at": T(2026, 10, 1), "amount": 5.0}
    with engine.begin() as conn:
        (key,) = [k["name"] for k in sa.inspect(conn).get_foreign_keys("payments")]
        if how == "not validated":
            conn.exec_driver_sql(f"ALTER TABLE payments DROP CONSTRAINT {key}")
            conn.execute(schema.payments.insert(), [orphan])
            conn.exec_driver_sql(
                f"ALTER TABLE payments ADD CONSTRAINT {key} FOREIGN KEY (account_id) "
                "REFERENCES accounts (account_id) NOT VALID"
            )
        else:
            conn.exec_driver_sql("ALTER TABLE payments DISABLE TRIGGER ALL")
            conn.execute(schema.payments.insert(), [orphan])
    with engine.connect() as conn:
        assert ("payments", "account_id", "accounts", "account_id") not in enforced_references(conn)
    report = check_database(engine, stale_days=90, now=NOW)
    finding = report.finding("orphan_payments_account_id")
    assert finding.count == 1
    assert finding.records["payment_id"].tolist() == ["Y9"]


@pytest.mark.parametrize("kind", ["duckdb", "sqlite"])
def test_no_foreign_key_is_trusted_where_none_is_enforced(make_db, kind: str) -> None:
    """DuckDB (no foreign keys in its DDL) and SQLite (not enforced without ``PRAGMA
    foreign_keys``): every reference is checked by a join; SQLite accepts the orphan payment
    and it is counted (1)."""
    from crm_data.dialects import enforced_references

    engine = make_db(kind)
    rows = clean_rows()
    rows["payments"].append(
        {"payment_id": "Y9", "account_id": "A404", "paid_at": T(2026, 10, 1), "amount": 5.0}
    )
    load(engine, rows)
    with engine.connect() as conn:
        assert enforced_references(conn) == frozenset()
    assert check_database(engine, stale_days=90, now=NOW).finding("orphan_payments_account_id").count == 1
