"""The mapping interpreter on small hand-written exports: every step, line numbers, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import kpis
from crm_data.importing import import_paths, validate_tables
from crm_data.mappings import MappingError, load_mapping
from crm_data.mappings.engine import Mapping


def _mapping(tmp_path: Path, text: str) -> Mapping:
    path = tmp_path / "custom.toml"
    path.write_text(text, encoding="utf-8")
    return load_mapping(path)


def _frames(mapping: Mapping, *paths: Path, notes: list[str] | None = None) -> dict[str, tuple]:
    return {p.table: (p.frame, p.lines, p.source) for p in mapping.produce(list(paths), notes)}


ACCOUNTS = """
[mapping]
name = "shop"
[files.customers]
patterns = ["customers*.csv"]
header = ["Kunde", "Name"]
[[tables]]
table = "accounts"
from = "customers"
[tables.columns]
account_id = { column = "Kunde", prefix = "k-" }
name = "Name"
segment = { column = "Typ", map = { B2B = "Business", b2c = "Consumer" }, else = "Other", default = "Unknown" }
company_size = { column = "Mitarbeiter", type = "number", thousands = "'", bins = [[0, "small"], [100, "large"]] }
city = { column = "Ort", split = "/", case = "upper" }
created_at = { column = "Seit", type = "datetime", format = ["%d.%m.%Y %H:%M", "iso"], timezone = "Europe/Zurich" }
"""


def test_line_numbers_point_at_the_original_file(tmp_path: Path, make_db) -> None:
    # header on line 1; record k1 spans lines 2-3 (quoted line break); line 4 blank;
    # k2 on line 5; k3 (bad date) on line 6
    (tmp_path / "customers.csv").write_bytes(
        b"Kunde,Name,Typ,Mitarbeiter,Ort,Seit\r\n"
        b'1,"Muster AG\r\nHauptsitz",B2B,1\'200,Bern/Mitte,15.01.2024 10:00\r\n'
        b"\r\n"
        b"2,Beispiel GmbH,b2c,12,Basel,2024-07-15T10:00:00+00:00\r\n"
        b"3,Kaputt SA,,7,Genf,31.02.2024 10:00\r\n"
    )
    mapping = _mapping(tmp_path, ACCOUNTS)
    _, lines, source = _frames(mapping, tmp_path / "customers.csv")["accounts"]
    assert lines == [2, 5, 6]
    assert source.endswith("customers.csv")
    report = validate_tables(make_db("duckdb"), mapping.read([tmp_path / "customers.csv"]))
    assert not report.ok
    # the impossible 31 February stays as written and is reported on ITS line (6), not 4 (index + 2)
    assert [(i.row, i.column) for i in report.errors] == [(6, "created_at")]


def test_value_maps_numbers_text_and_time_zones(tmp_path: Path) -> None:
    (tmp_path / "customers.csv").write_text(
        "Kunde,Name,Typ,Mitarbeiter,Ort,Seit\n"
        "1,Muster AG,B2B,1'200,Bern/Mitte,15.01.2024 10:00\n"  # winter: UTC+1
        "2,Beispiel GmbH,B2C,12,basel,15.07.2024 10:00\n"  # summer: UTC+2; map is case-insensitive
        "3,Dritte AG,Partner,,,2024-07-15T10:00:00+00:00\n"  # an explicit offset wins over the zone
        "4,Vierte AG,,99,Zug,2024-03-31 02:30\n"  # a local time that does not exist (DST gap) -> shifted
    )
    frame, _, _ = _frames(_mapping(tmp_path, ACCOUNTS), tmp_path / "customers.csv")["accounts"]
    assert frame["account_id"].tolist() == ["k-1", "k-2", "k-3", "k-4"]
    assert frame["segment"].tolist() == ["Business", "Consumer", "Other", "Unknown"]
    assert frame["company_size"].tolist() == ["large", "small", None, "small"]
    assert frame["city"].tolist() == ["BERN", "BASEL", None, "ZUG"]
    assert frame["created_at"].tolist() == [
        "2024-01-15 09:00:00",
        "2024-07-15 08:00:00",
        "2024-07-15 10:00:00",
        "2024-03-31 01:00:00",  # 02:30 does not exist in Zurich; shifted forward to 03:00 CEST = 01:00 UTC
    ]


def test_encodings_bom_and_crlf(tmp_path: Path) -> None:
    mapping = _mapping(tmp_path, ACCOUNTS)
    # Windows-1252 ("latin-1") export: é is byte 0xE9, not valid UTF-8
    (tmp_path / "customers_latin.csv").write_bytes(
        "Kunde,Name,Seit\r\n1,Café Müller,2024-01-01\r\n".encode("cp1252")
    )
    # UTF-8 with a byte-order mark and CRLF: the BOM must not stick to the first header
    (tmp_path / "customers_bom.csv").write_bytes(
        "\ufeffKunde,Name,Seit\r\n2,Crème SA,2024-01-01\r\n".encode()
    )
    produced = mapping.produce([tmp_path / "customers_latin.csv", tmp_path / "customers_bom.csv"])
    (accounts,) = produced
    assert accounts.frame["name"].tolist() == ["Café Müller", "Crème SA"]
    assert accounts.lines == [2, 2]
    assert "customers_latin.csv" in accounts.source and "customers_bom.csv" in accounts.source


SUBSCRIPTIONS = """
[files.people]
patterns = ["people.csv"]
[[tables]]
table = "accounts"
from = "people"
[tables.columns]
account_id = "id"
name = "id"
created_at = { value = "2018-01-01", type = "datetime", subtract = { column = "tenure", unit = "months" } }
[[tables]]
table = "subscriptions"
from = "people"
[tables.columns]
subscription_id = { column = "id", prefix = "sub-" }
account_id = "id"
started_at = { value = "2018-01-01", type = "datetime", subtract = { column = "tenure", unit = "months" } }
ended_at = { value = "2018-01-01", type = "datetime", when = { left = "Yes" } }
end_reason = { value = "churned", unless = { left = ["No", ""] } }
mrr = { column = "monthly", type = "number", decimal = ",", thousands = "." , scale = 12 }
[[tables]]
table = "tickets"
from = "people"
drop_rows_without = ["resolved_at"]
[tables.columns]
ticket_id = "id"
opened_at = { template = "{day} {time}", type = "datetime", format = "%Y-%m-%d %H:%M:%S" }
resolved_at = { template = "{day} {time}", type = "datetime", format = "%Y-%m-%d %H:%M:%S", add = [{ column = "wait", unit = "seconds" }, { column = "talk", unit = "hms" }] }
contacts_until_resolved = { value = 1, type = "integer", when = { left = "No" } }
"""


def test_offsets_conditions_and_dropped_rows(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text(
        "id,tenure,left,monthly,day,time,wait,talk\n"
        'a,0,No,"1.234,5",2021-01-01,9:12:58,30,0:02:23\n'
        "b,1,Yes,10,2021-01-01,23:59:00,60,1:00:01\n"
        "c,72,No,,2021-01-02,8:00:00,,\n"
    )
    tables = _frames(_mapping(tmp_path, SUBSCRIPTIONS), tmp_path / "people.csv")
    subs = tables["subscriptions"][0]
    # 2018-01-01 minus 0, 1 and 72 calendar months
    assert subs["started_at"].tolist() == [
        "2018-01-01 00:00:00",
        "2017-12-01 00:00:00",
        "2012-01-01 00:00:00",
    ]
    assert subs["ended_at"].tolist() == [None, "2018-01-01 00:00:00", None]
    assert subs["end_reason"].tolist() == [None, "churned", None]
    # 1.234,5 (German notation) = 1234.5 per month, x 12 = 14814
    assert subs["mrr"].tolist() == ["14814", "120", None]
    tickets, lines, _ = tables["tickets"]
    # a: 09:12:58 + 30 s + 2 min 23 s = 09:15:51; b: 23:59:00 + 60 s + 1:00:01 = next day 01:00:01
    assert tickets["resolved_at"].tolist() == ["2021-01-01 09:15:51", "2021-01-02 01:00:01"]
    assert tickets["contacts_until_resolved"].tolist() == ["1", None]
    assert lines == [2, 3]  # c has no wait/talk -> no resolved_at -> dropped


HISTORY = """
[files.deals]
patterns = ["deals.csv"]
[[tables]]
table = "deals"
from = "deals"
[tables.columns]
deal_id = "id"
created_at = { column = "created", type = "date" }
status = { column = "stage", map = { won = "won", lost = "lost" }, else = "open" }
[[tables]]
table = "deal_stage_history"
from = "deals"
unpivot = { columns = '^entered (.+)$', name = "stage name", value = "stage date" }
[tables.columns]
deal_id = "id"
stage = "stage name"
entered_at = { column = "stage date", type = "datetime" }
[[tables]]
table = "deal_stage_history"
from = "deals"
[tables.columns]
deal_id = "id"
stage = { value = "New" }
entered_at = { column = "created", type = "datetime" }
[[tables]]
table = "users"
from = "deals"
group_by = ["user_id"]
[tables.columns]
user_id = "owner"
name = { column = "owner", agg = "first" }
team = { column = "created", agg = "max" }
region = { column = "created", agg = "min" }
"""


def test_unpivot_group_by_and_blocks_of_one_table(tmp_path: Path) -> None:
    (tmp_path / "deals.csv").write_text(
        "id,owner,stage,created,entered Demo,entered won\n"
        "d1,Ann,won,2024-01-05,2024-01-10,2024-02-01\n"
        "d2,Bob,Demo,2024-01-07,2024-01-09,\n"
        "d3,Ann,New,2024-03-01,,\n"
    )
    tables = _frames(_mapping(tmp_path, HISTORY), tmp_path / "deals.csv")
    history, lines, _ = tables["deal_stage_history"]
    rows = list(zip(history["deal_id"], history["stage"], history["entered_at"].str[:10], strict=True))
    assert rows == [
        ("d1", "Demo", "2024-01-10"),  # unpivot: one row per non-blank "entered <stage>" cell
        ("d1", "won", "2024-02-01"),
        ("d2", "Demo", "2024-01-09"),
        ("d1", "New", "2024-01-05"),  # second block of the same table, appended
        ("d2", "New", "2024-01-07"),
        ("d3", "New", "2024-03-01"),
    ]
    assert lines == [2, 2, 3, 2, 3, 4]
    users, user_lines, _ = tables["users"]
    assert users.to_dict("records") == [
        {"user_id": "Ann", "name": "Ann", "team": "2024-03-01", "region": "2024-01-05"},
        {"user_id": "Bob", "name": "Bob", "team": "2024-01-07", "region": "2024-01-07"},
    ]
    assert user_lines == [2, 3]  # a group points at its first line


def test_mistakes_in_a_mapping_or_the_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="unknown key"):
        _mapping(tmp_path, ACCOUNTS.replace('name = "Name"', 'name = { colum = "Name" }'))
    with pytest.raises(MappingError, match="required column"):
        _mapping(tmp_path, ACCOUNTS.replace('name = "Name"\n', ""))
    with pytest.raises(MappingError, match="no column 'size'"):
        _mapping(tmp_path, ACCOUNTS.replace("company_size", "size"))
    mapping = _mapping(tmp_path, ACCOUNTS)
    (tmp_path / "orders.csv").write_text("Order,Amount\n1,2\n")
    with pytest.raises(MappingError, match=r"orders\.csv: not an export this mapping"):
        mapping.produce([tmp_path / "orders.csv"])
    (tmp_path / "customers.csv").write_text("Kunde,Name\n1,A\n")
    with pytest.raises(MappingError, match=r"column 'Seit' is missing \(needed for accounts\.created_at\)"):
        mapping.produce([tmp_path / "customers.csv"])
    (tmp_path / "customers.csv").write_text("Kunde,Name,Seit\n1,A,\n")
    notes: list[str] = []
    (accounts,) = mapping.produce([tmp_path / "customers.csv"], notes)
    assert accounts.frame["city"].tolist() == [None]  # optional columns absent: blank + a note
    assert any("no column 'Typ'" in n for n in notes)
    # a file recognised by its columns, whatever its name
    (tmp_path / "extract.csv").write_text("kunde,NAME,seit\n2,B,2024-01-01\n")
    assert mapping.match([tmp_path / "extract.csv"]).files == {"customers": [tmp_path / "extract.csv"]}
    # the required created_at is blank: validation refuses the row, naming file and line
    report = import_paths(
        _engine(tmp_path), [tmp_path / "customers.csv"], mapping=str(tmp_path / "custom.toml")
    )
    assert not report.ok
    assert [(i.row, i.column) for i in report.errors] == [(2, "created_at")]


def _engine(tmp_path: Path):
    from crm_data.engines import make_engine

    return make_engine(f"duckdb:///{tmp_path / 'x.duckdb'}")


def test_unknown_mapping_name() -> None:
    with pytest.raises(MappingError, match="unknown mapping 'nosuch'"):
        load_mapping("nosuch")


def test_the_documented_example_works(tmp_path: Path, make_db) -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "mappings.md").read_text(encoding="utf-8")
    toml_text = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "shop.toml").write_text(toml_text, encoding="utf-8")
    (tmp_path / "customers.csv").write_text(
        "Kunde;Name;Typ;Seit;Ort\n1001;Muster AG;B2B;15.01.2024 10:00;Bern\n"
    )
    (tmp_path / "orders.csv").write_text(
        "Bestellung;Kunde;Datum;Betrag;Status\n"
        "A-1;1001;03.02.2024 14:30;1'250,00;bezahlt\n"
        "A-2;1001;10.03.2024 09:00;-80,00;Gutschrift\n"
        "A-3;1001;11.03.2024 09:00;99,00;storniert\n"
    )
    engine = make_db("duckdb")
    report = import_paths(
        engine, [tmp_path / "customers.csv", tmp_path / "orders.csv"], mapping=str(tmp_path / "shop.toml")
    )
    assert report.ok, report.render()
    assert report.rows == {"accounts": 1, "subscriptions": 1, "payments": 2}  # A-3 cancelled: skipped
    per_year = kpis.revenue(engine, kpis.Filters("2024-01-01", "2025-01-01"), "year")
    # 1'250,00 - 80,00 = 1170; Zurich 15.01.2024 10:00 (UTC+1) -> 09:00 UTC
    assert (per_year.loc[0, "revenue"], per_year.loc[0, "refunds"]) == (1170.0, 80.0)
    with engine.connect() as conn:
        created = conn.exec_driver_sql("SELECT created_at FROM accounts").scalar_one()
    assert str(created) == "2024-01-15 09:00:00"


# ---- steps added for vendor exports (Salesforce) ---------------------------------------------

VENDOR = """
[mapping]
name = "vendor"
blank_values = ["000000000000000AAA"]
ignore = ["Product2*.csv"]
[files.deals]
patterns = ["deals*.csv"]
header = ["Id", "Closed", "Won"]
[files.rates]
patterns = ["rates*.csv"]
header = ["Code", "PerUnit"]
[[tables]]
table = "deals"
from = "deals"
where_not = { Deleted = true }
[tables.columns]
deal_id = "Id"
account_id = "AccountId"
created_at = { value = "2024-01-01", type = "datetime" }
status = [
  { value = "won", when = { Closed = true, Won = true } },
  { value = "lost", when = { Closed = true, Won = false } },
  { value = "open", when = { Closed = false } },
]
[[tables]]
table = "exchange_rates"
from = "rates"
[tables.columns]
currency = "Code"
valid_from = { value = "2024-01-01", type = "date" }
rate_to_reporting = { column = "PerUnit", type = "number", reciprocal = true }
[[tables]]
table = "crm_insights_meta"
from = "rates"
where = { Home = true }
[tables.columns]
key = { value = "reporting_currency" }
value = "Code"
"""


def test_a_list_of_specs_takes_the_first_non_blank_and_booleans_match_by_meaning(tmp_path: Path) -> None:
    (tmp_path / "deals.csv").write_bytes(
        b"Id,AccountId,Closed,Won\r\n"
        b"d1,000000000000000AAA,1,1\r\n"  # the placeholder id is blank: no account
        b"d2,a2,TRUE,FALSE\r\n"
        b"d3,a3,false,false\r\n"
        b"d4,a4,,\r\n"  # blank checkboxes: no status (validation reports it)
    )
    frame, _, _ = _frames(_mapping(tmp_path, VENDOR), tmp_path / "deals.csv")["deals"]
    assert frame["status"].tolist() == ["won", "lost", "open", None]
    assert frame["account_id"].tolist() == [None, "a2", "a3", "a4"]


def test_where_not_on_an_absent_column_drops_nothing_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "deals.csv").write_bytes(b"Id,Closed,Won\r\nd1,1,1\r\n")
    notes: list[str] = []
    frame, _, _ = _frames(_mapping(tmp_path, VENDOR), tmp_path / "deals.csv", notes=notes)["deals"]
    assert frame["deal_id"].tolist() == ["d1"]
    assert any("no column 'Deleted'; where_not drops no rows for it" in note for note in notes)
    (tmp_path / "deals.csv").write_bytes(b"Id,Closed,Won,Deleted\r\nd1,1,1,0\r\nd2,1,1,1\r\n")
    frame, _, _ = _frames(_mapping(tmp_path, VENDOR), tmp_path / "deals.csv")["deals"]
    assert frame["deal_id"].tolist() == ["d1"]


def test_reciprocal_rates_and_a_settings_block(tmp_path: Path) -> None:
    (tmp_path / "rates.csv").write_bytes(b"Code,PerUnit,Home\r\nUSD,1,1\r\nPEN,3.75,0\r\nXXX,0,0\r\n")
    produced = _frames(_mapping(tmp_path, VENDOR), tmp_path / "rates.csv")
    rates, _, _ = produced["exchange_rates"]
    assert rates["rate_to_reporting"].tolist() == ["1", repr(1 / 3.75), "1/0"]  # 1/0 does not convert
    settings, lines, _ = produced["crm_insights_meta"]
    assert settings.to_dict("records") == [{"key": "reporting_currency", "value": "USD"}]
    assert lines == [2]


def test_ignored_folder_files_are_not_read_even_when_their_columns_fit(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "deals.csv").write_bytes(b"Id,Closed,Won\r\nd1,1,1\r\n")
    (folder / "Product2.csv").write_bytes(b"Id,Closed,Won\r\np1,0,0\r\n")  # fits the deals export
    matched = _mapping(tmp_path, VENDOR).match([folder])
    assert [p.name for p in matched.files["deals"]] == ["deals.csv"]
    assert [p.name for p in matched.ignored] == ["Product2.csv"]


def test_only_known_estimates_are_accepted(tmp_path: Path) -> None:
    text = VENDOR.replace('deal_id = "Id"', 'deal_id = { column = "Id", estimate = "earliest_record" }')
    with pytest.raises(
        MappingError, match=r'the importer estimates only accounts.created_at: estimate = "earliest_record"'
    ):
        _mapping(tmp_path, text)
