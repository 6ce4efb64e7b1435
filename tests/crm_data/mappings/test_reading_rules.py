"""The mapping engine's reading rules on realistic vendor files written here as BYTES,
imported through the real engine into DuckDB and PostgreSQL:

A. records of the wrong width are errors with file:line (quoted line breaks counted);
B. skipped or unreadable files are named with the reason;
C. mixed encodings are decoded line by line (UTF-8, Windows-1252, then Latin-1) with warnings;
E. warnings (nothing lost) apart from errors (all or nothing), in the report and the CLI.

Every expected figure is worked out by hand from the fixture above it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm_data.importing import ImportIssue, import_paths
from crm_data.mappings import MappingError, ReadReport, load_mapping

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
        "named like the deals export (*deal*.csv) but the column(s) Deal Stage are missing; its columns: Record ID, "
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
