"""The mapping engine's reading rules on realistic vendor files written here as BYTES,
imported through the real engine into DuckDB and PostgreSQL:

A. records of the wrong width are errors with file:line (quoted line breaks counted);
B. skipped or unreadable files are named with the reason; UTF-16 and semicolon files are read;
C. mixed encodings are decoded line by line (UTF-8, Windows-1252, then Latin-1) with warnings;
D. vendor booleans and date formats, the day/month order decided per column, pins;
E. warnings (nothing lost) apart from errors (all or nothing), in the report and the CLI.

Every expected figure is worked out by hand from the fixture above it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data.importing import ImportIssue, import_paths
from crm_data.mappings import MappingError, ReadReport, load_mapping
from crm_data.mappings.columns import parse_datetimes

KINDS = ["duckdb", "postgresql"]
SAMPLES = Path(__file__).parent / "samples"
HUBSPOT_COMPANIES = SAMPLES / "hubspot" / "hubspot-crm-exports-all-companies-2024-06-30.csv"


def _write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def _rows(engine: sa.Engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql))]


def _count(engine: sa.Engine, table: str) -> int:
    return _rows(engine, f"SELECT count(*) FROM {table}")[0][0]


def _warnings(report) -> list[str]:
    return [f"{Path(w.file).name}: {w.reason}" for w in report.warnings]


# ---- A. records of the wrong width ----------------------------------------------------------

HUBSPOT_COMPANIES_HEADER = (
    b"Record ID,Company name,Company Domain Name,Company owner,Create Date,Industry,Number of Employees,"
    b"City,State/Region,Country/Region,Original Traffic Source,Lifecycle Stage\r\n"
)
# a download cut short: the last record stops inside "United States" (10 of 12 fields)
TRUNCATED_COMPANIES = (
    HUBSPOT_COMPANIES_HEADER
    + b"18234567101,Northwind Traders,northwind.example,Avery Chen,2024-01-08 09:14,Wholesale,120,Seattle,"
    b"Washington,United States,Organic search,Customer\r\n"
    b"18234567102,Contoso Pharma,contoso.example,Jordan Blake,2024-01-22 16:40,Pharmaceuticals,2400,Basel,"
    b"Basel-Stadt,Switzerland,Paid search,Customer\r\n"
    b"18234567103,Fabrikam Tools,fabrikam.example,Avery Chen,2024-02-03 11:02,Machinery,35,Lyon,"
    b"Auvergne-Rh\xc3\xb4ne-Alpes,France,Referrals,Opportunity\r\n"
    b"18234567104,Tailspin Air,tailspin.example,Jordan Blake,2024-02-19 08:55,Airlines/Aviation,640,Austin,"
    b"Texas,Unit"
)


@pytest.mark.parametrize("kind", KINDS)
def test_a_truncated_hubspot_companies_file_is_an_error_on_its_line(
    kind: str, make_db, tmp_path: Path
) -> None:
    path = _write(tmp_path, "hubspot-crm-exports-all-companies-2024-06-30.csv", TRUNCATED_COMPANIES)
    engine = make_db(kind)
    with pytest.raises(MappingError) as caught:
        import_paths(engine, [path], mapping="hubspot")
    assert caught.value.issues == [
        ImportIssue(
            str(path),
            5,
            "",
            "10 fields where the header has 12: the last record is cut short (was the file truncated?)",
        )
    ]
    assert f"{path}:5: 10 fields where the header has 12" in str(caught.value)
    assert _count(engine, "accounts") == 0  # not 'Unit' as the country of Tailspin Air: nothing at all


MAILCHIMP_ACTIVITY_HEADER = b"campaign_id,list_id,email_id,email_address,action,timestamp,url,ip\n"
MAILCHIMP_ACTIVITY = (
    MAILCHIMP_ACTIVITY_HEADER
    + b"a1b2c3d4e5,8c2a9f31d0,5f1e2d3c,Maria.Lopez@northwind.example,open,2024-03-05T10:41:12+00:00,,203.0.113.10\n"
    b"a1b2c3d4e5,8c2a9f31d0,5f1e2d3c,Maria.Lopez@northwind.example,click,2024-03-05T10:42:03+00:00,"
    b'"https://example.com/spring?utm_source=mailchimp&utm_content=a,b",203.0.113.10\n'
    b"a1b2c3d4e5,8c2a9f31d0,9a8b7c6d,l.meier@contoso.example,open,2024-03-05T12:15:00+01:00,,198.51.100.4\n"
)


@pytest.mark.parametrize("kind", KINDS)
def test_a_truncated_mailchimp_activity_file_is_an_error_on_its_line(
    kind: str, make_db, tmp_path: Path
) -> None:
    engine = make_db(kind)
    reports = _write(
        tmp_path / "export",
        "campaign_reports.csv",
        (SAMPLES / "mailchimp" / "campaign_reports.csv").read_bytes(),
    )
    # cut inside the timestamp of the 3rd activity (line 4): 6 of 8 fields
    cut = MAILCHIMP_ACTIVITY[: MAILCHIMP_ACTIVITY.index(b"12:15:00")] + b"12:1"
    activity = _write(tmp_path / "export", "email_activity.csv", cut)
    with pytest.raises(MappingError) as caught:
        import_paths(engine, [reports, activity], mapping="mailchimp")
    assert [(i.file, i.row, i.reason) for i in caught.value.issues] == [
        (
            str(activity),
            4,
            "6 fields where the header has 8: the last record is cut short (was the file truncated?)",
        )
    ]
    # cut inside the quoted url of the click (line 3): the quote never closes
    cut = MAILCHIMP_ACTIVITY[: MAILCHIMP_ACTIVITY.index(b"utm_content")]
    activity.write_bytes(cut)
    with pytest.raises(MappingError) as caught:
        import_paths(engine, [reports, activity], mapping="mailchimp")
    assert [(i.row, i.reason) for i in caught.value.issues] == [
        (3, "a quoted value that starts in this record is never closed (was the file truncated?)")
    ]
    assert _count(engine, "campaigns") == 0
    # the whole file: 2 campaigns, 2 recipients (Maria: first open and click; Lukas: open)
    activity.write_bytes(MAILCHIMP_ACTIVITY)
    report = import_paths(engine, [reports, activity], mapping="mailchimp")
    assert report.ok, report.render()
    assert report.rows == {"campaigns": 2, "campaign_responses": 2}
    assert _rows(engine, "SELECT contact_id, opened_at, clicked_at FROM campaign_responses ORDER BY 1") == [
        ("mc-l.meier@contoso.example", dt.datetime(2024, 3, 5, 11, 15), None),
        (
            "mc-maria.lopez@northwind.example",
            dt.datetime(2024, 3, 5, 10, 41, 12),
            dt.datetime(2024, 3, 5, 10, 42, 3),
        ),
    ]


# HubSpot feedback submissions with comments holding line breaks (CRLF file, CRLF in values)
FEEDBACK_HEADER = (
    b"Record ID,Survey Name,Survey Type,Value,Response Group,Content,Submission Timestamp,Survey Channel,"
    b"Contact ID,Ticket ID\r\n"
)
FEEDBACK = (
    FEEDBACK_HEADER
    + b'301,Quarterly NPS,NPS,9,Promoter,"Great onboarding,\r\nthanks!\r\nKeep it up.",2024-03-20 10:00,Email,501,\r\n'  # 2-4
    b"302,Quarterly NPS,NPS,6,Detractor,Too expensive for us,2024-03-21 15:30,Email,502,\r\n"  # 5
    b'304,Support CES,CES,6,,"Quick fix\r\nby Sofia",2024-03-04 13:00,Email,501,7001\r\n'  # 6-7
)


@pytest.mark.parametrize("kind", KINDS)
def test_quoted_line_breaks_are_one_record_and_bad_records_are_named_by_their_first_line(
    kind: str, make_db, tmp_path: Path
) -> None:
    engine = make_db(kind)
    path = _write(tmp_path, "hubspot-crm-exports-feedback-submissions-2024-06-30.csv", FEEDBACK)
    (survey,) = [p for p in load_mapping("hubspot").produce([path]) if p.table == "survey_responses"]
    assert survey.lines == [2, 5, 6]
    report = import_paths(engine, [path], mapping="hubspot")
    assert report.ok, report.render()
    assert report.rows == {"pipeline_stages": 7, "survey_responses": 3}  # the stages: the mapping's own rows
    assert _rows(engine, "SELECT response_id, comment FROM survey_responses ORDER BY 1") == [
        ("hs-301", "Great onboarding,\r\nthanks!\r\nKeep it up."),
        ("hs-302", "Too expensive for us"),
        ("hs-304", "Quick fix\r\nby Sofia"),
    ]
    # an unquoted comma in line 5 (11 fields); an extra field in the record of lines 6-7
    bad = FEEDBACK.replace(b"Too expensive for us", b"Too expensive, for us").replace(
        b"501,7001", b"501,7001,x"
    )
    path.write_bytes(bad)
    with pytest.raises(MappingError) as caught:
        import_paths(make_db(kind), [path], mapping="hubspot")
    assert [(i.row, i.reason) for i in caught.value.issues] == [
        (5, "11 fields where the header has 10 (a value with a comma that is not quoted?)"),
        (6, "11 fields where the header has 10 (a value with a comma that is not quoted?)"),
    ]
    assert str(caught.value).splitlines() == [
        "2 problems reading the files:",
        f"  {path}:5: 11 fields where the header has 10 (a value with a comma that is not quoted?)",
        f"  {path}:6: 11 fields where the header has 10 (a value with a comma that is not quoted?)",
    ]


# ---- B. files skipped or unreadable; UTF-16 and semicolons read ---------------------------

# HubSpot companies opened in Excel (US) and saved as "Unicode Text (*.txt)": UTF-16 LE with a
# byte-order mark, tab-delimited, CRLF, dates in Excel's m/d/yyyy h:mm
COMPANIES_UNICODE_TEXT = b"\xff\xfe" + (
    "Record ID\tCompany name\tCompany Domain Name\tCompany owner\tCreate Date\tIndustry\tNumber of Employees\t"
    "City\tState/Region\tCountry/Region\tOriginal Traffic Source\tLifecycle Stage\r\n"
    "18234567101\tNorthwind Traders\tnorthwind.example\tAvery Chen\t1/8/2024 9:14\tWholesale\t120\tSeattle\t"
    "Washington\tUnited States\tOrganic search\tCustomer\r\n"
    "18234567102\tContoso Pharma\tcontoso.example\tJordan Blake\t1/22/2024 16:40\tPharmaceuticals\t2400\tBasel\t"
    "Basel-Stadt\tSwitzerland\tPaid search\tCustomer\r\n"
    "18234567103\tFabrikam Tools\tfabrikam.example\tAvery Chen\t2/3/2024 11:02\tMachinery\t35\tLyon\t"
    "Auvergne-Rhône-Alpes\tFrance\tReferrals\tOpportunity\r\n"
    "18234567104\t東京精密 Tokyo Seimitsu\ttokyo-seimitsu.example\tJordan Blake\t2/19/2024 8:55\tMachinery\t640\t"
    "Hachiōji\tTokyo\tJapan\tDirect traffic\tLead\r\n"
).encode("utf-16-le")


@pytest.mark.parametrize("kind", KINDS)
def test_an_excel_unicode_text_file_is_read_as_utf16_with_tabs(kind: str, make_db, tmp_path: Path) -> None:
    engine = make_db(kind)
    path = _write(tmp_path, "hubspot-crm-exports-all-companies-2024-06-30.txt", COMPANIES_UNICODE_TEXT)
    report = import_paths(engine, [path], mapping="hubspot")
    assert report.ok, report.render()
    assert report.rows == {"accounts": 4, "pipeline_stages": 7}
    assert _rows(
        engine, "SELECT account_id, name, city, country, company_size, created_at FROM accounts ORDER BY 1"
    ) == [
        (
            "hs-18234567101",
            "Northwind Traders",
            "Seattle",
            "United States",
            "50-249",
            dt.datetime(2024, 1, 8, 9, 14),
        ),
        (
            "hs-18234567102",
            "Contoso Pharma",
            "Basel",
            "Switzerland",
            "1000+",
            dt.datetime(2024, 1, 22, 16, 40),
        ),
        ("hs-18234567103", "Fabrikam Tools", "Lyon", "France", "1-49", dt.datetime(2024, 2, 3, 11, 2)),
        (
            "hs-18234567104",
            "東京精密 Tokyo Seimitsu",
            "Hachiōji",
            "Japan",
            "250-999",
            dt.datetime(2024, 2, 19, 8, 55),
        ),
    ]
    name = path.name
    assert _warnings(report) == [
        f"{name}: read as UTF-16 little-endian (byte-order mark)",
        f"{name}: columns separated by tabs (detected from the header line)",
        f"{name}: dates read as %m/%d/%Y %H:%M (month first: '1/22/2024 16:40' on line 3 has its second number "
        "above 12) (e.g. line 3: 1/22/2024 16:40 → 2024-01-22 16:40; line 2: 1/8/2024 9:14 → 2024-01-08 09:14; "
        "line 4: 2/3/2024 11:02 → 2024-02-03 11:02; and 1 more)",
    ]
    assert [w.column for w in report.warnings] == ["", "", "Create Date"]


# HubSpot contacts opened in a German Excel and saved as "CSV (Trennzeichen-getrennt)":
# Windows-1252, semicolons, dates dd.mm.yyyy hh:mm; a company name holding ";" is quoted
CONTACTS_GERMAN_EXCEL = (
    b"Record ID;First Name;Last Name;Email;Phone Number;Job Title;Contact owner;Create Date;Lifecycle Stage;"
    b"Associated Company;Associated Company IDs (Primary)\r\n"
    b"501;Maria;Lopez;maria.lopez@northwind.example;+1 206 555 0101;Purchasing Manager;Avery Chen;"
    b"08.01.2024 09:20;Customer;Northwind Traders;18234567101\r\n"
    b"502;Lukas;Meier;l.meier@contoso.example;+41 61 555 0102;Head of IT;Jordan Blake;23.01.2024 10:05;"
    b"Customer;Contoso Pharma;18234567102\r\n"
    b"503;Chlo\xe9;Dubois;chloe.dubois@fabrikam.example;;CFO;Avery Chen;03.02.2024 11:30;Opportunity;"
    b"Fabrikam Tools;18234567103\r\n"
    b'504;Sam;Okafor;sam@tailspin.example;+1 512 555 0104;;Jordan Blake;20.02.2024 13:45;Lead;"Tailspin Air; '
    b'Austin";18234567104\r\n'
)


@pytest.mark.parametrize("kind", KINDS)
def test_a_semicolon_file_from_a_european_excel_is_read(kind: str, make_db, tmp_path: Path) -> None:
    engine = make_db(kind)
    folder = tmp_path / "export"
    _write(folder, HUBSPOT_COMPANIES.name, HUBSPOT_COMPANIES.read_bytes())
    contacts = _write(folder, "hubspot-crm-exports-all-contacts-2024-06-30.csv", CONTACTS_GERMAN_EXCEL)
    report = import_paths(engine, [folder], mapping="hubspot")
    assert report.ok, report.render()
    assert report.rows == {"accounts": 4, "contacts": 4, "pipeline_stages": 7}
    assert _rows(
        engine, "SELECT contact_id, account_id, name, phone, created_at FROM contacts ORDER BY 1"
    ) == [
        ("hs-501", "hs-18234567101", "Maria Lopez", "+1 206 555 0101", dt.datetime(2024, 1, 8, 9, 20)),
        ("hs-502", "hs-18234567102", "Lukas Meier", "+41 61 555 0102", dt.datetime(2024, 1, 23, 10, 5)),
        ("hs-503", "hs-18234567103", "Chloé Dubois", None, dt.datetime(2024, 2, 3, 11, 30)),
        ("hs-504", "hs-18234567104", "Sam Okafor", "+1 512 555 0104", dt.datetime(2024, 2, 20, 13, 45)),
    ]
    name = contacts.name
    assert _warnings(report) == [
        f'{name}: line(s) that are not UTF-8: read as Windows-1252 (e.g. line 4: byte 0xe9 in "Chloé")',
        f"{name}: columns separated by semicolons (detected from the header line)",
        f"{name}: dates read as %d.%m.%Y %H:%M (day first: '23.01.2024 10:05' on line 3 has its first number "
        "above 12) (e.g. line 3: 23.01.2024 10:05 → 2024-01-23 10:05; line 2: 08.01.2024 09:20 → 2024-01-08 "
        "09:20; line 4: 03.02.2024 11:30 → 2024-02-03 11:30; and 1 more)",
    ]
    assert [w.column for w in report.warnings] == ["", "", "Create Date"]


@pytest.mark.parametrize("kind", KINDS)
def test_files_skipped_or_refused_are_named_with_the_reason(kind: str, make_db, tmp_path: Path) -> None:
    engine = make_db(kind)
    folder = tmp_path / "export"
    _write(folder, HUBSPOT_COMPANIES.name, HUBSPOT_COMPANIES.read_bytes())
    _write(folder, "hubspot-crm-exports-all-tickets-2024-06-30.csv", b"")  # an empty download
    # the companies export again, saved under another name with "Record ID" renamed
    renamed = HUBSPOT_COMPANIES.read_bytes().replace(b"Record ID", b"Company ID", 1)
    other = _write(folder, "export (3).csv", renamed)
    report = import_paths(engine, [folder], mapping="hubspot")
    assert report.ok, report.render()
    assert report.rows == {"accounts": 4, "pipeline_stages": 7}
    assert _warnings(report) == [
        "export (3).csv: skipped: not an export this mapping (hubspot) knows: its columns: Company ID, Company name, "
        "Company Domain Name, Company owner, Create Date, Industry, Number of Employees, City, …; the closest is "
        "companies, which also needs the column(s) Record ID. Expected: companies (*compan*.csv / a file with "
        "columns Record ID, Company name); contacts (*contact*.csv / a file with columns Record ID, First Name, "
        "Last Name); deals (*deal*.csv / a file with columns Record ID, Deal Name, Deal Stage); tickets "
        "(*ticket*.csv / a file with columns Ticket ID, Ticket status); feedback (*feedback*.csv or "
        "*survey*.csv / a file with columns Record ID, Survey Type)",
        "hubspot-crm-exports-all-tickets-2024-06-30.csv: skipped: the file is empty",
    ]
    # given by name, the same file is an error
    with pytest.raises(MappingError) as caught:
        import_paths(engine, [other], mapping="hubspot")
    assert caught.value.issues[0].file == str(other)
    assert (
        "the closest is companies, which also needs the column(s) Record ID" in caught.value.issues[0].reason
    )
    # a deals export whose "Deal Stage" column was renamed: its deals would be lost -> error
    deals = (SAMPLES / "hubspot" / "hubspot-crm-exports-all-deals-2024-06-30.csv").read_bytes()
    _write(folder, "hubspot-crm-exports-all-deals-2024-06-30.csv", deals.replace(b"Deal Stage", b"Stage", 1))
    with pytest.raises(MappingError) as caught:
        import_paths(engine, [folder], mapping="hubspot")
    (issue,) = caught.value.issues
    assert Path(issue.file).name == "hubspot-crm-exports-all-deals-2024-06-30.csv"
    assert issue.reason.startswith(
        "named like the deals export of the hubspot mapping (*deal*.csv) but the column(s) Deal Stage are "
        "missing; its columns: Record ID, "
        "Deal Name, Stage, Pipeline, Amount, Close Date, Create Date, Deal owner, …"
    )
    assert _count(engine, "accounts") == 4  # from the first import; the refused one wrote nothing


def test_excel_sep_line_and_a_workbook_saved_as_csv(tmp_path: Path) -> None:
    # Excel's "sep=;" first line pins the delimiter; it is not the header (line numbers still count it)
    path = _write(tmp_path, "contacts.csv", b"sep=;\r\n" + CONTACTS_GERMAN_EXCEL)
    read = ReadReport()
    (contacts,) = [p for p in load_mapping("hubspot").produce([path], report=read) if p.table == "contacts"]
    assert contacts.lines == [3, 4, 5, 6]
    assert "columns separated by semicolons (detected from Excel's sep= line)" in [
        w.message for w in read.warnings
    ]
    # an .xlsx renamed .csv is a zip file
    book = _write(tmp_path, "hubspot-crm-exports-all-deals.csv", b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 40)
    with pytest.raises(MappingError) as caught:
        load_mapping("hubspot").produce([book])
    assert caught.value.issues[0].reason == (
        "an Excel workbook (.xlsx) or another zip file, not delimited text: save it as CSV"
    )


# ---- C. mixed encodings --------------------------------------------------------------------

# Salesforce Data Loader export written as Windows-1252 (Data Loader's "Write in UTF-8" off):
# line 3 was pasted from a UTF-8 tool; line 4 holds byte 0x81 (an u-umlaut of the DOS code
# page 850), which Windows-1252 does not define
SALESFORCE_ACCOUNTS = (
    b'"ID","NAME","TYPE","INDUSTRY","NUMBEROFEMPLOYEES","BILLINGCITY","BILLINGSTATE","BILLINGCOUNTRY",'
    b'"ACCOUNTSOURCE","OWNERID","CREATEDDATE"\r\n'
    b'"0015g00000AbCdEAAV","Soci\xe9t\xe9 G\xe9n\xe9rale","Customer - Direct","Banking","117000","Paris","","France",'
    b'"Web","0055g00000OwnAAAAQ","2024-01-05T09:12:44.000Z"\r\n'
    b'"0015g00000AbCdFAAV","Cr\xc3\xa8me de la Cr\xc3\xa8me Catering","Customer - Direct","Food & Beverage","45",'
    b'"Gen\xc3\xa8ve","GE","Switzerland","Partner Referral","0055g00000OwnBAAAQ","2024-01-18T15:03:10.000Z"\r\n'
    b'"0015g00000AbCdGAAV","M\x81ller Maschinenbau GmbH","Customer - Channel","Machinery","2680","Stuttgart",'
    b'"BW","Germany","Phone Inquiry","0055g00000OwnAAAAQ","2024-02-02T08:30:00.000Z"\r\n'
    b'"0015g00000AbCdHAAV","Z\xfcrcher Kantonalbank","Prospect","Banking","5200","Z\xfcrich","ZH","Switzerland",'
    b'"Web","0055g00000OwnBAAAQ","2024-02-19T10:00:00.000Z"\r\n'
)


@pytest.mark.parametrize("kind", KINDS)
def test_a_windows_1252_file_with_stray_utf8_and_an_undefined_byte_is_read_line_by_line(
    kind: str, make_db, tmp_path: Path
) -> None:
    engine = make_db(kind)
    path = _write(tmp_path, "Account.csv", SALESFORCE_ACCOUNTS)
    report = import_paths(engine, [path], mapping="salesforce")
    assert report.ok, report.render()
    assert _rows(
        engine, "SELECT account_id, name, city, company_size, created_at FROM accounts ORDER BY 1"
    ) == [
        ("0015g00000AbCdEAAV", "Société Générale", "Paris", "1000+", dt.datetime(2024, 1, 5, 9, 12, 44)),
        (
            "0015g00000AbCdFAAV",
            "Crème de la Crème Catering",
            "Genève",
            "1-49",
            dt.datetime(2024, 1, 18, 15, 3, 10),
        ),
        (
            "0015g00000AbCdGAAV",
            "M\x81ller Maschinenbau GmbH",
            "Stuttgart",
            "1000+",
            dt.datetime(2024, 2, 2, 8, 30),
        ),
        ("0015g00000AbCdHAAV", "Zürcher Kantonalbank", "Zürich", "1000+", dt.datetime(2024, 2, 19, 10, 0)),
    ]
    assert _warnings(report) == [
        "Account.csv: line(s) that are not UTF-8: read as Windows-1252 (e.g. line 2: byte 0xe9 in "
        '"Société Générale"; line 5: byte 0xfc in "Zürcher Kantonalbank")',
        "Account.csv: line(s) that are neither UTF-8 nor Windows-1252: read as ISO-8859-1 (Latin-1), where such "
        'bytes are control characters (check these values) (e.g. line 4: byte 0x81 in "M\\x81ller Maschinenbau GmbH")',
    ]
    assert [(w.row, w.level) for w in report.warnings] == [(None, "warning"), (None, "warning")]
    rendered = report.render()
    assert "2 warning(s):" in rendered and "line 4: byte 0x81" in rendered


# ---- D. vendor booleans and dates ----------------------------------------------------------

# a CRM export of deals and its pipeline, with the conventions of several vendors mixed on
# purpose: Salesforce-like ISO with +0000, Pipedrive-like "2023-02-07 20:47:49", HubSpot-like
# "2023-04-04 11:48", US m/d/yy (with a 12-hour time), Mailchimp's "Jun 01, 2023 09:46 pm";
# booleans as 1/0/blank, TRUE/FALSE, Yes/No, true/false
CONVENTIONS_MAPPING = """
[mapping]
name = "conventions"
timezone = "America/New_York"

[files.deals]
patterns = ["deals*.csv"]
[files.stages]
patterns = ["stages*.csv"]

[[tables]]
table = "pipeline_stages"
from = "stages"
[tables.columns]
stage = "Stage"
position = { column = "Order", type = "integer" }
is_closed = { column = "Closed", type = "boolean" }
is_won = { column = "Won", type = "boolean" }

[[tables]]
table = "deals"
from = "deals"
[tables.columns]
deal_id = "Deal ID"
created_at = { column = "Created", type = "datetime" }
closed_at = { column = "Close Date", type = "datetime", when = { "Is Closed" = true } }
status = { column = "Stage", map = { Won = "won", Lost = "lost" }, else = "open" }

[[tables]]
table = "interactions"
from = "deals"
drop_rows_without = ["occurred_at"]
[tables.columns]
interaction_id = { column = "Deal ID", prefix = "first-email-" }
deal_id = "Deal ID"
channel = { value = "email" }
occurred_at = { column = "First Email Sent", type = "datetime" }
"""
STAGES = b"Stage,Order,Closed,Won\nProspect,1,0,\nProposal,2,FALSE,No\nWon,3,TRUE,Yes\nLost,4,1,false\n"
DEALS = (
    b"Deal ID,Stage,Created,Is Closed,Close Date,First Email Sent\n"
    b'D-1,Won,2024-01-22T16:14:25.000+0000,1,02/03/24,"Jun 01, 2023 09:46 pm"\n'  # 2
    b'D-2,Lost,2023-02-07 20:47:49,yes,02/23/26 08:55 PM,"Jun 02, 2023 07:05 am"\n'  # 3
    b"D-3,Proposal,2023-04-04 11:48,0,12/01/68,\n"  # 4: open: its expected close date is not kept
    b"D-4,Prospect,2023-05-06 09:00,,01/01/69,\n"  # 5
)


@pytest.mark.parametrize("kind", KINDS)
def test_vendor_booleans_and_date_formats(kind: str, make_db, tmp_path: Path) -> None:
    engine = make_db(kind)
    mapping = _write(tmp_path, "conventions.toml", CONVENTIONS_MAPPING.encode())
    folder = tmp_path / "export"
    _write(folder, "stages.csv", STAGES)
    deals_path = _write(folder, "deals.csv", DEALS)
    report = import_paths(engine, [folder], mapping=str(mapping))
    assert report.ok, report.render()
    assert _rows(
        engine, "SELECT stage, position, is_closed, is_won FROM pipeline_stages ORDER BY position"
    ) == [
        ("Prospect", 1, False, None),
        ("Proposal", 2, False, False),
        ("Won", 3, True, True),
        ("Lost", 4, True, False),
    ]
    # New York: EST (UTC-5) in winter, EDT (UTC-4) in summer; +0000 is UTC already; a date alone
    # (D-1's 02/03/24) is midnight UTC, not shifted
    assert _rows(engine, "SELECT deal_id, created_at, closed_at, status FROM deals ORDER BY 1") == [
        ("D-1", dt.datetime(2024, 1, 22, 16, 14, 25), dt.datetime(2024, 2, 3), "won"),
        ("D-2", dt.datetime(2023, 2, 8, 1, 47, 49), dt.datetime(2026, 2, 24, 1, 55), "lost"),
        ("D-3", dt.datetime(2023, 4, 4, 15, 48), None, "open"),
        ("D-4", dt.datetime(2023, 5, 6, 13, 0), None, "open"),
    ]
    # Mailchimp's send times, in New York time (EDT, UTC-4) -> UTC
    assert _rows(engine, "SELECT interaction_id, occurred_at FROM interactions ORDER BY 1") == [
        ("first-email-D-1", dt.datetime(2023, 6, 2, 1, 46)),
        ("first-email-D-2", dt.datetime(2023, 6, 2, 11, 5)),
    ]
    assert _warnings(report) == [
        "deals.csv: dates read as %m/%d/%y (3), %m/%d/%y %I:%M %p (1) (month first: '02/23/26 08:55 PM' on line 3 "
        "has its second number above 12) (e.g. line 3: 02/23/26 08:55 PM → 2026-02-23 20:55; line 2: 02/03/24 → "
        "2024-02-03; line 4: 12/01/68 → 2068-12-01; and 1 more)",
        "deals.csv: dates read as %b %d, %Y %I:%M %p (e.g. line 2: Jun 01, 2023 09:46 pm → 2023-06-01 21:46; "
        "line 3: Jun 02, 2023 07:05 am → 2023-06-02 07:05)",
    ]
    # two-digit years: 00-68 -> 20xx, 69-99 -> 19xx (D-3 and D-4 are open: their dates are not kept)
    texts = pd.Series(["12/01/68", "01/01/69", "02/03/24"], dtype=object)
    assert parse_datetimes(texts, ["auto"], "UTC", day_first=False).tolist() == [
        pd.Timestamp("2068-12-01"),
        pd.Timestamp("1969-01-01"),
        pd.Timestamp("2024-02-03"),
    ]
    # a yes/no column with another word is an error naming file, line and column
    deals_path.write_bytes(
        DEALS.replace(b"D-4,Prospect,2023-05-06 09:00,,", b"D-4,Prospect,2023-05-06 09:00,n/a,")
    )
    with pytest.raises(MappingError) as caught:
        import_paths(make_db(kind), [folder], mapping=str(mapping))
    assert caught.value.issues == [
        ImportIssue(str(deals_path), 5, "Is Closed", "'n/a' is not a yes/no value (true/false, yes/no, 1/0)")
    ]


# Salesforce report export ("Export Details", US locale): Close Date as m/d/yy
DATES_MAPPING = """
[files.opportunities]
patterns = ["report*.csv"]
[[tables]]
table = "deals"
from = "opportunities"
[tables.columns]
deal_id = "Opportunity ID"
status = { value = "won" }
created_at = { column = "Created Date", type = "datetime" }
closed_at = { column = "Close Date", type = "date"PIN }
"""
AMBIGUOUS = (
    b'"Opportunity ID","Opportunity Name","Created Date","Close Date"\r\n'
    b'"0065g00000OpAaAAAQ","Edge Emergency Generator","2023-12-01","01/02/24"\r\n'
    b'"0065g00000OpAbAAAQ","Burlington Weaving Plant","2023-12-05","03/04/24"\r\n'
)


def _dates_mapping(tmp_path: Path, pin: str = "") -> str:
    path = tmp_path / "report.toml"
    path.write_text(DATES_MAPPING.replace("PIN", pin), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("kind", KINDS)
def test_an_ambiguous_date_column_is_an_error_that_says_how_to_pin_it(
    kind: str, make_db, tmp_path: Path
) -> None:
    engine = make_db(kind)
    path = _write(tmp_path, "report1.csv", AMBIGUOUS)
    with pytest.raises(MappingError) as caught:
        import_paths(engine, [path], mapping=_dates_mapping(tmp_path))
    assert caught.value.issues == [
        ImportIssue(
            str(path),
            None,
            "Close Date",
            "(deals.closed_at) the dates can be read day first or month first (2 such as '01/02/24' (line 2), "
            "'03/04/24' (line 3)) and no value has a day above 12 to decide. Pin the order in [[tables]] #1 "
            '(deals), column closed_at: day_first = true (or format = "%d/%m/%y") for day first, day_first = '
            'false (or format = "%m/%d/%y") for month first',
        )
    ]
    assert str(caught.value).startswith(f"{path}:Close Date: (deals.closed_at) the dates can be read")
    assert _count(engine, "deals") == 0


@pytest.mark.parametrize("kind", KINDS)
def test_one_day_above_12_decides_day_first_and_is_reported(kind: str, make_db, tmp_path: Path) -> None:
    engine = make_db(kind)
    data = AMBIGUOUS + b'"0065g00000OpAcAAAQ","Pyramid Emergency Generators","2024-01-10","13/02/24"\r\n'
    path = _write(tmp_path, "report1.csv", data)
    report = import_paths(engine, [path], mapping=_dates_mapping(tmp_path))
    assert report.ok, report.render()
    assert _rows(engine, "SELECT deal_id, closed_at FROM deals ORDER BY 1") == [
        ("0065g00000OpAaAAAQ", dt.datetime(2024, 2, 1)),
        ("0065g00000OpAbAAAQ", dt.datetime(2024, 4, 3)),
        ("0065g00000OpAcAAAQ", dt.datetime(2024, 2, 13)),
    ]
    assert _warnings(report) == [
        "report1.csv: dates read as %d/%m/%y (day first: '13/02/24' on line 4 has its first number above 12) "
        "(e.g. line 4: 13/02/24 → 2024-02-13; line 2: 01/02/24 → 2024-02-01; line 3: 03/04/24 → 2024-04-03)"
    ]
    # one value each way: no order fits the column
    path.write_bytes(data + b'"0065g00000OpAdAAAQ","Dickenson Mobile","2024-01-11","02/14/24"\r\n')
    with pytest.raises(MappingError) as caught:
        import_paths(make_db(kind), [path], mapping=_dates_mapping(tmp_path))
    assert caught.value.issues[0].reason.startswith(
        "(deals.closed_at) mixes day-first dates ('13/02/24' on line 4) and month-first dates ('02/14/24' on line 5)"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_pinned_order_and_format_are_honoured(kind: str, make_db, tmp_path: Path) -> None:
    path = _write(tmp_path, "report1.csv", AMBIGUOUS)
    engine = make_db(kind)
    report = import_paths(engine, [path], mapping=_dates_mapping(tmp_path, ", day_first = true"))
    assert report.ok, report.render()
    assert _rows(engine, "SELECT closed_at FROM deals ORDER BY deal_id") == [
        (dt.datetime(2024, 2, 1),),
        (dt.datetime(2024, 4, 3),),
    ]
    assert _warnings(report) == [
        "report1.csv: dates read as %d/%m/%y (day first, as pinned by day_first in the mapping) (e.g. line 2: "
        "01/02/24 → 2024-02-01; line 3: 03/04/24 → 2024-04-03)"
    ]
    engine = make_db(kind)
    report = import_paths(engine, [path], mapping=_dates_mapping(tmp_path, ', format = "%m/%d/%y"'))
    assert report.ok, report.render()
    assert _rows(engine, "SELECT closed_at FROM deals ORDER BY deal_id") == [
        (dt.datetime(2024, 1, 2),),
        (dt.datetime(2024, 3, 4),),
    ]
    assert report.warnings == []  # a pinned format is the user's choice: nothing to report
    # a pinned order that a value contradicts: that value is reported by validation
    path.write_bytes(AMBIGUOUS + b'"0065g00000OpAcAAAQ","Pyramid","2024-01-10","02/13/24"\r\n')
    report = import_paths(make_db(kind), [path], mapping=_dates_mapping(tmp_path, ", day_first = true"))
    assert [(e.row, e.column) for e in report.errors] == [(4, "closed_at")]
    with pytest.raises(MappingError, match="day_first is true or false"):
        load_mapping(_dates_mapping(tmp_path, ', format = "%m/%d/%y", day_first = true'))


# ---- E. warnings in the command line's report ------------------------------------------------


def test_the_command_line_prints_the_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crm_data.cli import main

    path = _write(tmp_path / "export", "Account.csv", SALESFORCE_ACCOUNTS)
    url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    assert main(["import", str(path.parent), "--url", url, "--mapping", "salesforce"]) == 0
    out = capsys.readouterr().out
    assert "2 warning(s):" in out
    assert f"{path}: line(s) that are not UTF-8: read as Windows-1252 (e.g. line 2: byte 0xe9" in out
    assert f"{path}: line(s) that are neither UTF-8 nor Windows-1252" in out
    assert "accounts" in out.split("imported in", 1)[1]
