"""HubSpot exports as HubSpot writes them (issue "Real exports as the vendors write them"),
imported into DuckDB and PostgreSQL; every figure is computed by hand from the fixture.

The fixtures are BYTES imitating HubSpot's CSV exports (CRM > Deals > Export):

* a deals export with only the columns the user chose, unquoted, dates like
  ``2023-04-04 11:48``, without Pipeline, associations, won/lost flags or any
  ``Date entered "<stage> (<pipeline>)"`` column (the common case);
* an "all properties" export of 120 columns, every field quoted, CRLF line ends: 14
  pipelines with their ``Date entered`` (and ``Date exited``) columns, HubSpot's own flags
  ``Is Closed Won`` / ``Is closed lost`` / ``Is Deal Closed?``, renamed stages (``Paid``,
  ``Contract Signed``, ``Closed: lost``, ``Closed: abandoned``, ``Closed Lost `` with a
  trailing blank, and a stage labelled ``Closed Lost`` that HubSpot does not flag as lost),
  ``;``-separated ``Associated Company IDs``;
* a companies export where one company has an empty name.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

import kpis
from crm_data import schema
from crm_data.cli import main
from crm_data.importing import import_paths, stored_stages
from crm_data.mappings import MappingError, ReadReport, load_mapping
from kpis import rollups
from kpis.core import period_starts
from kpis.filters import dimension_values
from tests.crm_data.mappings import write_exports

KINDS = ("duckdb", "postgresql")
YEAR_2023 = kpis.Filters(dt.date(2023, 1, 1), dt.date(2024, 1, 1))
YEAR_2024 = kpis.Filters(dt.date(2024, 1, 1), dt.date(2025, 1, 1))

# ---- the deals export with the columns the user chose ---------------------------------

SELECTED_DEALS = (
    "\ufeffRecord ID,Deal Name,Deal Stage,Close Date,Deal owner,Amount,Closed Lost Reason,"
    "Last Modified Date,Create Date\n"
    "1001,Acme renewal,Closed Won,2023-04-04 11:48,Ana Ruiz,12000,,2023-04-04 11:50,2023-01-10 09:00\n"
    "1002,Beta pilot,Closed Lost,2023-03-15 16:20,Ben Ode,5000,Budget,2023-03-15 16:21,2023-02-01 10:00\n"
    "1003,Gamma suite,Contract Signed,2023-05-02 10:00,Ana Ruiz,30000,,2023-05-02 10:05,2023-02-14 08:30\n"
    "1004,Delta add-on,Paid,2023-05-20 12:00,Ben Ode,4500,,2023-05-21 09:00,2023-03-01 13:15\n"
    "1005,Epsilon rollout,Closed: lost,2023-06-30 17:00,Ana Ruiz,8000,Went dark,2023-07-01 08:00,2023-03-20 11:00\n"
    "1006,Zeta trial,Closed: abandoned,2023-07-03 09:00,Ben Ode,2500,,2023-07-03 09:01,2023-04-02 15:45\n"
    "1007,Eta upgrade,Appointment Scheduled,2023-09-30 00:00,Ana Ruiz,7000,,2023-06-12 10:00,2023-06-12 09:30\n"
    "1008,Theta licences,Closed Lost ,2023-08-14 14:10,Ben Ode,6000,Competitor,2023-08-14 14:12,2023-05-05 10:20\n"
    "1009,Iota services,Contract Signed,2023-08-31 16:00,Ana Ruiz,15000,,2023-09-01 08:00,2023-06-01 13:00\n"
    "1010,Kappa expansion,Closed Won,2023-09-12 10:30,Ben Ode,9000,,2023-09-12 10:31,2023-07-07 12:00\n"
).encode("utf-8")
# By label alone: won = Closed Won (1001, 1010: 12,000 + 9,000 = 21,000); lost = Closed Lost,
# "Closed Lost " (trailing blank), "Closed: lost" (1002, 1005, 1008); open = Appointment
# Scheduled (1007, a stage of the default pipeline) and the stages nothing places, counted
# as open: Contract Signed (1003, 1009), Paid (1004), Closed: abandoned (1006).
STAGE_FILE = b'[stages]\n"Contract Signed" = "won"\n"paid" = "won"\n"Closed:  Abandoned" = "lost"\n'
# With the stage file: won 1001, 1003, 1004, 1009, 1010 = 12,000 + 30,000 + 4,500 + 15,000
# + 9,000 = 70,500; lost 1002, 1005, 1006, 1008; open 1007.

# ---- the "all properties" export: 120 columns, all quoted ------------------------------

PIPELINES: dict[str, list[str]] = {
    "Sales Pipeline": [
        "Appointment Scheduled", "Qualified To Buy", "Contract Sent", "Closed Won", "Closed Lost",
        "Closed: abandoned",
    ],
    "NYC Schools": ["Application", "Paid", "Closed: lost"],
    "Renewals": ["Renewal Due", "Contract Signed", "Closed Lost "],
    "Partners": ["Intro", "Closed: lost"],
    **{
        f"{city} Schools": ["Application", "Paid", "Closed: lost"]
        for city in ("Boston", "Chicago", "Denver", "Austin", "Seattle", "Miami", "Atlanta", "Dallas",
                     "Phoenix", "Portland")
    },
}  # fmt: skip
CORE = [
    "Record ID", "Deal Name", "Deal Stage", "Pipeline", "Amount", "Close Date", "Create Date", "Deal owner",
    "Closed Lost Reason", "Last Modified Date", "Is Closed Won", "Is closed lost", "Is Deal Closed?",
    "Associated Company IDs", "Associated Company", "Deal Type", "Deal Description", "Forecast category",
    "Deal probability", "Amount in company currency",
]  # fmt: skip
ENTERED = [
    f'Date entered "{stage} ({pipeline})"' for pipeline, stages in PIPELINES.items() for stage in stages
]
OTHERS = [f'Date exited "{stage} (NYC Schools)"' for stage in PIPELINES["NYC Schools"]] + [
    f"Custom property {n:02d}" for n in range(1, 54)
]
HEADER = CORE + ENTERED + OTHERS


def _deal(
    record: int,
    name: str,
    stage: str,
    pipeline: str,
    amount: str,
    close: str,
    create: str,
    owner: str,
    flags: tuple[str, str, str],
    companies: tuple[str, str] = ("", ""),
    entered: dict[str, str] | None = None,
    lost_reason: str = "",
) -> dict[str, str]:
    row = dict.fromkeys(HEADER, "")
    row.update(
        {
            "Record ID": str(record), "Deal Name": name, "Deal Stage": stage, "Pipeline": pipeline,
            "Amount": amount, "Close Date": close, "Create Date": create, "Deal owner": owner,
            "Closed Lost Reason": lost_reason, "Last Modified Date": close,
            "Is Closed Won": flags[0], "Is closed lost": flags[1], "Is Deal Closed?": flags[2],
            "Associated Company IDs": companies[0], "Associated Company": companies[1],
            "Deal Type": "newbusiness", "Forecast category": "Pipeline", "Deal probability": "0.2",
            "Custom property 07": "n/a",
        }
    )  # fmt: skip
    for stage_name, at in (entered or {}).items():
        row[f'Date entered "{stage_name} ({pipeline})"'] = at
    return row


WON, LOST, OPEN = ("true", "false", "true"), ("false", "true", "true"), ("false", "false", "false")
ALL_DEALS = [
    _deal(9101, "Lincoln High - district licence", "Paid", "NYC Schools", "18000", "2024-02-20 15:30",
          "2024-01-08 09:00", "Ana Ruiz", WON, ("501;502", "Lincoln High;Roosevelt Prep"),
          {"Application": "2024-01-08 09:00", "Paid": "2024-02-20 15:30"}),
    _deal(9102, "Harbor Health renewal", "Contract Signed", "Renewals", "24000", "2024-03-05 11:00",
          "2024-02-01 10:00", "Ben Ode", WON, ("504", "Harbor Health"),
          {"Renewal Due": "2024-02-01 10:00", "Contract Signed": "2024-03-05 11:00"}),
    # labelled Closed Lost, but in this account's pipeline not a closing stage: open by the flags
    _deal(9103, "Lincoln High - tablets", "Closed Lost", "Sales Pipeline", "7000", "2024-06-30 00:00",
          "2024-02-10 09:00", "Ana Ruiz", OPEN, ("501", "Lincoln High"),
          {"Appointment Scheduled": "2024-02-10 09:00", "Qualified To Buy": "2024-02-15 14:00",
           "Closed Lost": "2024-03-01 16:00"}),
    _deal(9104, "Partner referral", "Closed: lost", "Partners", "3000", "2024-04-10 17:45",
          "2024-03-02 08:00", "Ben Ode", LOST, ("505", ""),
          {"Intro": "2024-03-02 08:00", "Closed: lost": "2024-04-10 17:45"}, "No budget"),
    _deal(9105, "Walk-in enquiry", "Closed: abandoned", "Sales Pipeline", "5500", "2024-05-02 12:00",
          "2024-03-11 10:00", "Ana Ruiz", LOST, ("", ""),
          {"Appointment Scheduled": "2024-03-11 10:00", "Closed: abandoned": "2024-05-02 12:00"}),
    _deal(9106, "Oak Dental - school programme", "Application", "NYC Schools", "12000", "2024-09-01 00:00",
          "2024-04-01 09:30", "Ben Ode", OPEN, ("506", "Oak Dental"), {"Application": "2024-04-01 09:30"}),
    _deal(9107, "Renewal 2024 (lost)", "Closed Lost ", "Renewals", "9000", "2024-05-20 10:00",
          "2024-04-15 10:00", "Ana Ruiz", LOST, ("503", ""),
          {"Renewal Due": "2024-04-15 10:00", "Closed Lost ": "2024-05-20 10:00"}, "Competitor"),
    _deal(9108, "Oak Dental - practice suite", "Closed Won", "Sales Pipeline", "31000", "2024-06-03 14:00",
          "2024-04-20 09:00", "Ben Ode", WON, ("506;501", "Oak Dental;Lincoln High"),
          {"Appointment Scheduled": "2024-04-20 09:00", "Qualified To Buy": "2024-04-25 09:00",
           "Contract Sent": "2024-05-10 09:00", "Closed Won": "2024-06-03 14:00"}),
]  # fmt: skip
# won 9101, 9102, 9108 (18,000 + 24,000 + 31,000 = 73,000); lost 9104, 9105, 9107; open 9103,
# 9106. Stage history: the non-blank Date entered cells, 2 + 2 + 3 + 2 + 2 + 1 + 2 + 4 = 18.

COMPANIES = (
    b"\xef\xbb\xbfRecord ID,Company name,Create Date,Industry,Country/Region\n"
    b"501,Lincoln High,2023-11-02 08:15,Education,United States\n"
    b"503,,2023-12-01 10:00,Dental,United States\n"
    b"506,Oak Dental,2024-01-15 14:20,Dental,Canada\n"
)
# accounts: 501, 503 ("HubSpot company 503", a placeholder), 506 from the companies export;
# 504 (Harbor Health, from Associated Company) and 505 (no name: "HubSpot company 505") only
# named by deals; 502 is only the SECOND company of deal 9101 (a deal's account is its first).


def _quoted(row: list[str]) -> str:
    return ",".join('"' + value.replace('"', '""') + '"' for value in row)


def all_properties_export() -> bytes:
    lines = [_quoted(HEADER)] + [_quoted([deal[column] for column in HEADER]) for deal in ALL_DEALS]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _rows(engine: sa.Engine, statement: sa.Select) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(statement)]


def _statuses(engine: sa.Engine) -> dict[str, str]:
    deals = schema.deals
    return dict(_rows(engine, sa.select(deals.c.deal_id, deals.c.status)))


# ---- tests -----------------------------------------------------------------------------


def test_the_all_properties_fixture_looks_like_hubspot_writes_it() -> None:
    data = all_properties_export()
    header = data.split(b"\r\n", 1)[0]
    assert len(HEADER) == 120 and header.count(b'","') == 119
    assert b'"Date entered ""Paid (NYC Schools)"""' in header
    assert data.count(b"\r\n") == 1 + len(ALL_DEALS)


@pytest.mark.parametrize("kind", KINDS)
def test_selected_columns_deals_export_without_pipelines_flags_or_history(
    make_db, tmp_path: Path, kind: str
) -> None:
    engine = make_db(kind)
    path = write_exports(tmp_path, {"hubspot-crm-exports-deals-2023.csv": SELECTED_DEALS}) / (
        "hubspot-crm-exports-deals-2023.csv"
    )
    report = import_paths(engine, [path], mapping="hubspot")
    assert report.ok, report.render()
    assert report.rows == {"pipeline_stages": 7, "users": 2, "deals": 10}  # no stage history rows
    assert _statuses(engine) == {
        "hs-1001": "won", "hs-1002": "lost", "hs-1003": "open", "hs-1004": "open", "hs-1005": "lost",
        "hs-1006": "open", "hs-1007": "open", "hs-1008": "lost", "hs-1009": "open", "hs-1010": "won",
    }  # fmt: skip
    warnings = [w.reason for w in report.warnings]
    unplaced = next(w for w in warnings if "cannot place" in w)
    assert '"Contract Signed" (2 deals), "Closed: abandoned" (1 deal), "Paid" (1 deal)' in unplaced
    assert "10 deal(s) without stage history" in " ".join(warnings)
    # closed_at only for won and lost deals: Close Date is the EXPECTED date of open ones
    deals = schema.deals
    closed = dict(_rows(engine, sa.select(deals.c.deal_id, deals.c.closed_at)))
    assert closed["hs-1001"] == dt.datetime(2023, 4, 4, 11, 48)
    assert closed["hs-1007"] is None and closed["hs-1003"] is None
    assert report.summary is not None
    assert report.summary.deals == {"won": 2, "lost": 3, "open": 5}
    assert report.summary.won_amount == {"": 21000.0}
    assert report.summary.dates["deals.created_at"] == (dt.date(2023, 1, 10), dt.date(2023, 7, 7))
    wins = kpis.win_rate(engine, YEAR_2023, "year")
    assert (wins.loc[0, "won"], wins.loc[0, "lost"]) == (2, 3)
    assert wins.loc[0, "win_rate"] == pytest.approx(0.4)


def _pg_url(make_db: Callable[..., sa.Engine]) -> str:
    """A PostgreSQL URL of a fresh scratch schema (its search_path), for the command line."""
    engine = make_db("postgresql", create=False)
    name = f"cli_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    url = engine.url.update_query_dict({"options": f"-c search_path={name}"})
    return url.render_as_string(hide_password=False)


@pytest.mark.parametrize("kind", KINDS)
def test_stage_file_on_the_command_line_is_remembered(
    make_db, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"duckdb:///{tmp_path / 'crm.duckdb'}" if kind == "duckdb" else _pg_url(make_db)
    folder = write_exports(tmp_path / "export", {"hubspot-crm-exports-deals-2023.csv": SELECTED_DEALS})
    stages = write_exports(tmp_path, {"stages.toml": STAGE_FILE}) / "stages.toml"
    assert main(["import", str(folder), "--mapping", "hubspot", "--stages", str(stages), "--url", url]) == 0
    out = capsys.readouterr().out
    assert "cannot place" not in out
    assert "what the files held (check it against the CRM):" in out
    assert "  deals: 10 (won 5, lost 4, open 1)" in out
    assert "  won amount: 70,500.00" in out
    assert "  dates: 2023-01-10 – 2023-09-12" in out  # first Create Date .. last Close Date
    engine = sa.create_engine(url)
    try:
        assert stored_stages(engine, "hubspot") == {
            "Closed: Abandoned": "lost", "Contract Signed": "won", "paid": "won",
        }  # fmt: skip
        # the next import, without the file, places them the same way
        assert main(["import", str(folder), "--mapping", "hubspot", "--url", url]) == 0
        assert "cannot place" not in capsys.readouterr().out
        statuses = _statuses(engine)
        assert [d for d, s in sorted(statuses.items()) if s == "won"] == [
            "hs-1001",
            "hs-1003",
            "hs-1004",
            "hs-1009",
            "hs-1010",
        ]
        assert statuses["hs-1006"] == "lost"
        wins = kpis.win_rate(engine, YEAR_2023, "year")
        assert (wins.loc[0, "won"], wins.loc[0, "lost"]) == (5, 4)
    finally:
        engine.dispose()


def test_a_bad_stage_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_exports(tmp_path / "export", {"deals.csv": SELECTED_DEALS})
    stages = write_exports(tmp_path, {"stages.toml": b'[stages]\n"Paid" = "maybe"\n'}) / "stages.toml"
    url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    assert main(["import", str(folder), "--mapping", "hubspot", "--stages", str(stages), "--url", url]) == 1
    assert "'maybe' is not one of won, lost, open" in capsys.readouterr().err
    assert not (tmp_path / "crm.duckdb").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_all_properties_export_with_custom_pipelines_flags_and_missing_companies(
    make_db, tmp_path: Path, kind: str
) -> None:
    engine = make_db(kind)
    folder = write_exports(
        tmp_path / "export",
        {
            "hubspot-crm-exports-all-deals-2024-06-30.csv": all_properties_export(),
            "hubspot-crm-exports-all-companies-2024-06-30.csv": COMPANIES,
        },
    )
    report = import_paths(engine, [folder], mapping="hubspot")
    assert report.ok, report.render()
    assert report.rows == {
        "accounts": 5,
        "pipeline_stages": 7,
        "users": 2,
        "deals": 8,
        "deal_stage_history": 18,
    }
    # HubSpot's flags decide, whatever the stage is called
    assert _statuses(engine) == {
        "hs-9101": "won", "hs-9102": "won", "hs-9103": "open", "hs-9104": "lost",
        "hs-9105": "lost", "hs-9106": "open", "hs-9107": "lost", "hs-9108": "won",
    }  # fmt: skip
    warnings = [str(w) for w in report.warnings]
    assert not [w for w in warnings if "cannot place" in w]
    assert any('stage "Closed Lost" (1 deal) is OPEN by the won / lost flags' in w for w in warnings)
    # companies only deals name: 504 named from Associated Company, 505 a placeholder
    accounts = schema.accounts
    names = dict(_rows(engine, sa.select(accounts.c.account_id, accounts.c.name)))
    assert names == {
        "hs-501": "Lincoln High", "hs-503": "HubSpot company 503", "hs-504": "Harbor Health",
        "hs-505": "HubSpot company 505", "hs-506": "Oak Dental",
    }  # fmt: skip
    stubs = next(w for w in warnings if "that deals name are in no companies export" in w)
    assert stubs.split(": ", 1)[1].startswith("2 company(ies)") and "first associated company" in stubs
    assert "hs-504 Harbor Health" in stubs
    placeholder = next(w for w in warnings if "empty name" in w)
    assert "1 company(ies) with an empty name" in placeholder and "line 3: HubSpot company 503" in placeholder
    created = dict(_rows(engine, sa.select(accounts.c.account_id, accounts.c.created_at)))
    assert created["hs-504"] == dt.datetime(2024, 2, 1, 10, 0)  # the Create Date of deal 9102
    deals = schema.deals
    assert dict(_rows(engine, sa.select(deals.c.deal_id, deals.c.account_id)))["hs-9101"] == "hs-501"
    pipelines = dict(_rows(engine, sa.select(deals.c.deal_id, deals.c.pipeline)))
    assert pipelines["hs-9101"] == "NYC Schools" and pipelines["hs-9108"] == "Sales Pipeline"
    history = schema.deal_stage_history
    entered = _rows(
        engine,
        sa.select(history.c.stage, history.c.entered_at)
        .where(history.c.deal_id == "hs-9107")
        .order_by(history.c.entered_at),
    )
    assert entered == [
        ("Renewal Due", dt.datetime(2024, 4, 15, 10, 0)),
        ("Closed Lost", dt.datetime(2024, 5, 20, 10, 0)),  # the label's trailing blank is gone
    ]
    assert report.summary is not None and report.summary.won_amount == {"": 73000.0}
    # won 3, lost 3 in 2024: from the win-rate roll-up (built by the import)
    wins = kpis.win_rate(engine, YEAR_2024, "year")
    assert (wins.loc[0, "won"], wins.loc[0, "lost"], wins.loc[0, "win_rate"]) == (3, 3, 0.5)
    # the pipeline filter: NYC Schools = 9101 won, 9106 open. The roll-up has no pipeline: it
    # must not answer (it would say 3 won, 3 lost)
    nyc = YEAR_2024.replace(pipelines=("NYC Schools",))
    with engine.connect() as conn:
        periods = period_starts(nyc.start, nyc.end, "year")
        assert rollups.read(conn, rollups.WIN_RATE, YEAR_2024, "year", periods) is not None
        assert rollups.read(conn, rollups.WIN_RATE, nyc, "year", periods) is None
        assert rollups.read(conn, rollups.REVENUE, nyc, "year", periods) is not None  # not about deals
    wins = kpis.win_rate(engine, nyc, "year")
    assert (wins.loc[0, "won"], wins.loc[0, "lost"], wins.loc[0, "open_created"]) == (1, 0, 1)
    both = YEAR_2024.replace(pipelines=("NYC Schools", "Partners"))
    wins = kpis.win_rate(engine, both, "year")
    assert (wins.loc[0, "won"], wins.loc[0, "lost"]) == (1, 1)
    cycle = kpis.sales_cycle(engine, YEAR_2024.replace(pipelines=("Sales Pipeline",)))
    # 9108 only: 2024-04-20 09:00 -> 2024-06-03 14:00 = 44 days 5 hours
    assert cycle.loc[0, "deals"] == 1 and cycle.loc[0, "mean_days"] == pytest.approx(44 + 5 / 24)
    assert dimension_values(engine)["pipelines"] == ["NYC Schools", "Partners", "Renewals", "Sales Pipeline"]

    # the deals again, alone: the companies are in the database now, so no account is
    # invented (and Lincoln High keeps its name)
    again = import_paths(engine, [folder / "hubspot-crm-exports-all-deals-2024-06-30.csv"], mapping="hubspot")
    assert again.ok, again.render()
    assert "accounts" not in again.rows
    assert not [w for w in again.warnings if "no companies export" in w.reason]
    assert _count(engine, schema.accounts) == 5


def test_deals_without_association_columns_add_no_accounts(tmp_path: Path) -> None:
    path = write_exports(tmp_path, {"deals.csv": SELECTED_DEALS}) / "deals.csv"
    produced = {p.table: p for p in load_mapping("hubspot").produce([path])}
    assert "accounts" not in produced
    assert produced["deals"].frame["account_id"].isna().all()


def test_stage_assignments_and_what_the_report_says_about_stages(tmp_path: Path) -> None:
    path = write_exports(tmp_path, {"deals.csv": SELECTED_DEALS}) / "deals.csv"
    report = ReadReport()
    produced = {
        p.table: p
        for p in load_mapping("hubspot").produce([path], report=report, stages={"CONTRACT signed ": "won"})
    }
    status = dict(zip(produced["deals"].frame["deal_id"], produced["deals"].frame["status"], strict=True))
    assert status["hs-1003"] == status["hs-1009"] == "won"
    assert report.stages("unplaced") == {"Closed: abandoned": 1, "Paid": 1}
    assert report.stages("assigned") == {"Contract Signed": 2}
    assert report.stages("label") == {"Closed: lost": 1}  # the word "lost"
    # the default pipeline's own stages ("Closed Lost " is read trimmed)
    assert report.stages("mapping") == {"Closed Lost": 2, "Closed Won": 2, "Appointment Scheduled": 1}
    with pytest.raises(MappingError, match="'later' is not one of won, lost, open"):
        load_mapping("hubspot").produce([path], stages={"Paid": "later"})


@pytest.mark.parametrize("given", ["file", "folder"])
def test_a_deals_file_without_the_deal_columns_names_them(tmp_path: Path, given: str) -> None:
    # e.g. a deals report saved from a dashboard, not a CRM export
    folder = write_exports(
        tmp_path / "export",
        {"deals-q1.csv": b"Deal,Stage,Amount\nAcme renewal,Closed Won,12000\n"},
    )
    path = folder / "deals-q1.csv" if given == "file" else folder
    with pytest.raises(MappingError) as caught:
        load_mapping("hubspot").read([path])
    message = str(caught.value)
    assert "deals-q1.csv" in message
    assert "named like the deals export of the hubspot mapping (*deal*.csv)" in message
    assert "the column(s) Record ID, Deal Name, Deal Stage are missing" in message
    assert "its columns: Deal, Stage, Amount" in message


@pytest.mark.parametrize("kind", KINDS)
def test_a_database_from_before_the_pipeline_column_keeps_working(make_db, tmp_path: Path, kind: str) -> None:
    engine = make_db(kind, create=False)
    old = sa.MetaData()
    for table in schema.metadata.sorted_tables:
        dropped = {
            "deals": {"pipeline"},
            "campaigns": {"recipients", "delivered", "opens", "clicks", "unsubscribes"},
        }
        sa.Table(
            table.name, old, *(c._copy() for c in table.columns if c.name not in dropped.get(table.name, ()))
        )
    old.create_all(engine)
    # the dashboard reads it: no pipeline to offer, the funnel counts responses
    assert dimension_values(engine)["pipelines"] == []
    assert kpis.campaign_funnel(engine, YEAR_2024).empty
    folder = write_exports(
        tmp_path / "export", {"hubspot-crm-exports-all-deals-2024-06-30.csv": all_properties_export()}
    )
    report = import_paths(engine, [folder], mapping="hubspot")
    assert report.ok, report.render()
    with engine.connect() as conn:
        assert "pipeline" in schema.table_columns(conn, "deals")
        assert "recipients" in schema.table_columns(conn, "campaigns")
    assert dimension_values(engine)["pipelines"] == ["NYC Schools", "Partners", "Renewals", "Sales Pipeline"]
