"""The HubSpot, Salesforce and Mailchimp mappings on realistic sample exports
(tests/crm_data/mappings/samples/<vendor>/), imported into DuckDB, SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

import kpis
from crm_data import schema
from crm_data.importing import import_paths
from crm_data.mappings import SHIPPED, load_mapping

SAMPLES = Path(__file__).parent / "samples"
YEAR_2024 = kpis.Filters(dt.date(2024, 1, 1), dt.date(2025, 1, 1))


def _rows(engine: sa.Engine, table: sa.Table, *columns: str, order: str) -> list[tuple]:
    with engine.connect() as conn:
        query = sa.select(*(table.c[c] for c in columns)).order_by(
            table.c[order], *(table.c[c] for c in columns)
        )
        return [tuple(r) for r in conn.execute(query)]


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_every_shipped_mapping_parses() -> None:
    for name in SHIPPED:
        mapping = load_mapping(name)
        assert mapping.name == name
        assert mapping.description


def test_hubspot(db: sa.Engine) -> None:
    report = import_paths(db, [SAMPLES / "hubspot"], mapping="hubspot")
    assert report.ok, report.render()
    assert report.rows == {
        "accounts": 4,
        "contacts": 5,
        "pipeline_stages": 7,
        "users": 2,
        "deals": 6,
        "deal_stage_history": 24,  # the non-blank Date entered "<stage>" cells: 6+3+5+1+6+3
        "tickets": 4,
        "survey_responses": 5,  # the KNOWLEDGE survey row is not NPS/CES/CSAT
    }
    assert _rows(db, schema.deal_stage_history, "stage", "entered_at", order="deal_id")[-3:] == [
        ("Appointment Scheduled", dt.datetime(2024, 3, 20, 15, 0)),
        ("Closed Won", dt.datetime(2024, 4, 4, 12, 0)),
        ("Contract Sent", dt.datetime(2024, 3, 28, 10, 0)),
    ]
    # open deals keep no closed_at although the export has an (expected) Close Date
    assert _rows(db, schema.deals, "deal_id", "status", "closed_at", order="deal_id")[2:4] == [
        ("hs-9003", "open", None),
        ("hs-9004", "open", None),
    ]
    # won 9001, 9005, 9006; lost 9002 -> 3 / 4
    wins = kpis.win_rate(db, YEAR_2024, "year")
    assert (wins.loc[0, "won"], wins.loc[0, "lost"]) == (3, 1)
    assert wins.loc[0, "win_rate"] == pytest.approx(0.75)
    # cycles: 9001 Jan 10 09:00 -> Mar 15 10:00 = 65 d 1 h = 65.041667 d;
    # 9005 Mar 2 10:00 -> May 20 09:15 = 78 d 23 h 15 min = 78.968750 d;
    # 9006 Mar 20 15:00 -> Apr 4 12:00 = 14 d 21 h = 14.875 d. mean 52.961806, median 65.041667
    cycle = kpis.sales_cycle(db, YEAR_2024)
    assert cycle.loc[0, "deals"] == 3
    assert cycle.loc[0, "mean_days"] == pytest.approx((65 + 1 / 24 + 78 + 23.25 / 24 + 14.875) / 3)
    assert cycle.loc[0, "median_days"] == pytest.approx(65 + 1 / 24)
    # NPS responses 9, 6, 10 in March: 2 promoters, 1 detractor -> 100 * (2 - 1) / 3
    nps = kpis.nps(db, YEAR_2024, "year")
    assert nps.loc[0, "responses"] == 3
    assert nps.loc[0, "nps"] == pytest.approx(100 / 3)
    ces = kpis.ces(db, YEAR_2024, "year")
    assert ces["responses"].sum() == 1 and ces["ces_mean"].dropna().tolist() == [6.0]
    tickets = _rows(db, schema.tickets, "ticket_id", "category", "channel", "resolved_at", order="ticket_id")
    assert tickets[0] == ("hs-7001", "defect", "email", dt.datetime(2024, 3, 4, 12, 30))
    assert tickets[3] == ("hs-7004", "other", "web", None)


def test_hubspot_errors_name_the_export_line(tmp_path: Path, make_db) -> None:
    # the tickets export holds a quoted line break in the first record (lines 2-3):
    # a bad date on ticket 7003 must be reported on line 5, where it is in the file
    folder = tmp_path / "export"
    folder.mkdir()
    for sample in (SAMPLES / "hubspot").iterdir():
        text = sample.read_bytes()
        if "tickets" in sample.name:
            text = text.replace(b"2024-04-02 10:20", b"04/31/2024 10:20")
        (folder / sample.name).write_bytes(text)
    engine = make_db("duckdb")
    report = import_paths(engine, [folder], mapping="hubspot")
    assert not report.ok
    assert [(Path(i.file).name, i.row, i.column) for i in report.errors] == [
        ("hubspot-crm-exports-all-tickets-2024-06-30.csv", 5, "opened_at")
    ]
    assert _count(engine, schema.deals) == 0  # all or nothing


def test_salesforce(db: sa.Engine) -> None:
    report = import_paths(db, [SAMPLES / "salesforce"], mapping="salesforce")
    assert report.ok, report.render()
    assert report.rows == {
        "accounts": 3,
        "contacts": 3,
        "pipeline_stages": 10,
        "campaigns": 2,
        "campaign_responses": 3,
        "deals": 3,
        "deal_stage_history": 8,  # 9 history records; Qualification repeated (amount change) once
        "tickets": 3,
    }
    history = _rows(db, schema.deal_stage_history, "deal_id", "stage", "entered_at", order="entered_at")
    assert history[:3] == [
        ("0065g00000OpAaAAAQ", "Prospecting", dt.datetime(2024, 1, 8, 10, 0)),
        ("0065g00000OpAbAAAQ", "Prospecting", dt.datetime(2024, 1, 20, 14, 0)),
        ("0065g00000OpAaAAAQ", "Qualification", dt.datetime(2024, 1, 22, 11, 30)),  # first of the two
    ]
    wins = kpis.win_rate(db, YEAR_2024, "year")
    assert (wins.loc[0, "won"], wins.loc[0, "lost"]) == (1, 1)
    # won: created 2024-01-08T10:00Z, CloseDate 2024-03-28 -> 23 + 29 + 28 days - 10 h = 79.583333 d
    assert kpis.sales_cycle(db, YEAR_2024).loc[0, "mean_days"] == pytest.approx(80 - 10 / 24)
    funnel = kpis.campaign_funnel(db, YEAR_2024)
    webinar = funnel.set_index("campaign_id").loc["7015g00000CmAaAAAS"]
    assert (webinar["sent"], webinar["converted"], webinar["cost"]) == (2, 1, 4200.0)
    assert _rows(db, schema.tickets, "ticket_id", "category", "resolved_at", order="ticket_id")[2] == (
        "5005g00000CaAcAAAS",
        "other",
        None,
    )


def test_mailchimp(db: sa.Engine) -> None:
    report = import_paths(db, [SAMPLES / "mailchimp"], mapping="mailchimp")
    assert report.ok, report.render()
    assert report.rows == {"campaigns": 2, "campaign_responses": 4}
    with db.connect() as conn:
        responses = pd.read_sql(
            sa.select(schema.campaign_responses).order_by(schema.campaign_responses.c.contact_id), conn
        )
    assert responses["contact_id"].tolist() == [
        "mc-chloe.dubois@fabrikam.example",
        "mc-l.meier@contoso.example",
        "mc-maria.lopez@northwind.example",  # lower-cased
        "mc-sam@tailspin.example",
    ]
    # first open / click per recipient; +02:00 and +01:00 offsets converted to UTC
    maria = responses.iloc[2]
    assert pd.Timestamp(maria["opened_at"]) == pd.Timestamp("2024-03-05 10:41:12")
    assert pd.Timestamp(maria["clicked_at"]) == pd.Timestamp("2024-03-05 10:42:03")
    assert pd.Timestamp(responses.iloc[1]["opened_at"]) == pd.Timestamp("2024-03-05 11:15:00")
    assert pd.Timestamp(responses.iloc[0]["clicked_at"]) == pd.Timestamp("2024-04-17 07:01:10")
    assert pd.isna(responses.iloc[1]["clicked_at"])
    campaigns = _rows(db, schema.campaigns, "campaign_id", "name", "started_on", order="campaign_id")
    assert campaigns == [
        ("mc-a1b2c3d4e5", "March newsletter", dt.date(2024, 3, 5)),
        ("mc-f6e5d4c3b2", "Win-back offer", dt.date(2024, 4, 16)),
    ]
    # importing the same exports again changes nothing
    again = import_paths(db, [SAMPLES / "mailchimp"], mapping="mailchimp")
    assert again.ok and _count(db, schema.campaign_responses) == 4


def test_superstore_mapping_reads_the_windows_1252_tableau_csv(tmp_path: Path, make_db) -> None:
    # the widely copied "Sample - Superstore.csv" is Windows-1252 with M/D/YYYY dates
    header = (
        "Row ID,Order ID,Order Date,Ship Date,Ship Mode,Customer ID,Customer Name,Segment,Country,City,"
        "State,Postal Code,Region,Product ID,Category,Sub-Category,Product Name,Sales,Quantity,Discount,Profit\r\n"
    )
    rows = (
        "1,CA-2016-152156,11/8/2016,11/11/2016,Second Class,CG-12520,Claire Gute,Consumer,United States,"
        "Henderson,Kentucky,42420,South,FUR-BO-10001798,Furniture,Bookcases,Bush Somerset Collection Bookcase,"
        "261.96,2,0,41.9136\r\n"
        "2,CA-2017-100001,1/3/2017,1/5/2017,First Class,CG-12520,Claire Gute,Consumer,United States,"
        'Henderson,Kentucky,42420,South,OFF-AP-10002892,Office Supplies,Appliances,"Belkin Café 6 Outlet, Metallic",'
        "114.9,5,0,34.47\r\n"
    )
    path = tmp_path / "Sample - Superstore.csv"
    path.write_bytes((header + rows).encode("cp1252"))
    engine = make_db("duckdb")
    report = import_paths(engine, [path], mapping="superstore")
    assert report.ok, report.render()
    assert _rows(engine, schema.products, "name", order="product_id")[1] == (
        "Belkin Café 6 Outlet, Metallic",
    )
    assert _rows(engine, schema.accounts, "account_id", "created_at", order="account_id") == [
        ("CG-12520", dt.datetime(2016, 11, 8))  # the first order date of the customer
    ]
    per_year = kpis.revenue(engine, kpis.Filters("2016-01-01", "2018-01-01"), "year")
    assert per_year["revenue"].tolist() == pytest.approx([261.96, 114.9])
