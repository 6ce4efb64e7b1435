"""Several currencies in one database (crm_data.currency): amounts converted at import into
the reporting currency with dated exchange rates, the originals kept, unconverted
currencies recorded and never summed silently. CSV bundles written here as bytes,
imported into DuckDB and PostgreSQL; every figure worked out by hand from the fixture.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

import kpis
from crm_data import currency
from crm_data.importing import WonAmount, import_paths, won_amount_by_currency

KINDS = ["duckdb", "postgresql"]

ACCOUNTS = b"account_id,name,created_at\r\na1,Lima SAC,2023-06-01\r\na2,Monterrey SA,2023-06-01\r\n"
# rates into EUR: 1 PEN = 0.25 EUR from 2024-01-01, 0.24 from 2024-03-01; 1 MXN = 0.05; 1 USD = 0.92
RATES = (
    b"currency,valid_from,rate_to_reporting\r\n"
    b"PEN,2024-01-01,0.25\r\n"
    b"PEN,2024-03-01,0.24\r\n"
    b"MXN,2024-01-01,0.05\r\n"
    b"USD,2024-01-01,0.92\r\n"
)
# p1 1,000 PEN on Jan 15 -> 250; p2 1,000 "pen" on Mar 10 -> 240; p3 20,000 MXN -> 1,000;
# p4 a refund of 2,000 MXN -> -100; p5 400 PEN on 2023-12-20, before PEN's first rate -> with
# that first rate, 100; p6 no currency = the reporting currency -> 500; p7 300 EUR -> 300
PAYMENTS = (
    b"payment_id,account_id,paid_at,amount,currency\r\n"
    b"p1,a1,2024-01-15 10:00:00,1000,PEN\r\n"
    b"p2,a1,2024-03-10 10:00:00,1000,pen\r\n"
    b"p3,a2,2024-02-01 09:00:00,20000,MXN\r\n"
    b"p4,a2,2024-02-20 09:00:00,-2000,MXN\r\n"
    b"p5,a1,2023-12-20 12:00:00,400,PEN\r\n"
    b"p6,a2,2024-03-05 08:00:00,500,\r\n"
    b"p7,a2,2024-03-06 08:00:00,300,EUR\r\n"
)
# d1 10,000 PEN won Feb 10 -> 2,500; d2 100,000 MXN open: today's rate -> 5,000;
# d3 5,000 USD won Mar 15 -> 4,600; d4 2,000 PEN lost Feb 1 -> 500
DEALS = (
    b"deal_id,account_id,created_at,closed_at,status,amount,currency\r\n"
    b"d1,a1,2024-01-05,2024-02-10,won,10000,PEN\r\n"
    b"d2,a2,2024-01-10,,open,100000,MXN\r\n"
    b"d3,a2,2024-01-12,2024-03-15,won,5000,USD\r\n"
    b"d4,a1,2024-01-20,2024-02-01,lost,2000,PEN\r\n"
)
MONTHS = kpis.Filters(dt.date(2023, 12, 1), dt.date(2024, 4, 1))


def _bundle(folder: Path, **files: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / f"{name}.csv").write_bytes(data)
    return folder


def _rows(engine: sa.Engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql))]


def _setting(engine: sa.Engine, key: str) -> str | None:
    with engine.connect() as conn:
        return currency.read_setting(conn, key)


@pytest.mark.parametrize("kind", KINDS)
def test_payments_and_deals_are_converted_at_import_and_keep_their_original(
    kind: str, make_db, tmp_path: Path
) -> None:
    engine = make_db(kind)
    folder = _bundle(
        tmp_path / "bundle", accounts=ACCOUNTS, exchange_rates=RATES, payments=PAYMENTS, deals=DEALS
    )
    report = import_paths(engine, [folder], reporting_currency="eur")
    assert report.ok, report.render()
    assert _setting(engine, currency.REPORTING_CURRENCY) == "EUR"
    assert _setting(engine, currency.UNCONVERTED) is None
    payments = _rows(engine, "SELECT payment_id, amount_original, currency, amount FROM payments ORDER BY 1")
    assert [row[:3] for row in payments] == [
        ("p1", 1000.0, "PEN"),
        ("p2", 1000.0, "PEN"),  # the code upper-cased
        ("p3", 20000.0, "MXN"),
        ("p4", -2000.0, "MXN"),
        ("p5", 400.0, "PEN"),
        ("p6", None, None),  # no currency: the reporting currency, left as it is
        ("p7", 300.0, "EUR"),
    ]
    assert [row[3] for row in payments] == pytest.approx([250, 240, 1000, -100, 100, 500, 300])
    # the KPIs read the converted amounts: Dec 100; Jan 250; Feb 1,000 - 100; Mar 240 + 500 + 300
    revenue = kpis.revenue(engine, MONTHS, "month")
    assert revenue["revenue"].tolist() == pytest.approx([100, 250, 900, 1040])
    assert revenue["refunds"].tolist() == pytest.approx([0, 0, 100, 0])
    deals = _rows(engine, "SELECT deal_id, amount FROM deals ORDER BY 1")
    assert [amount for _, amount in deals] == pytest.approx([2500, 5000, 4600, 500])
    with engine.connect() as conn:
        assert won_amount_by_currency(conn) == [
            WonAmount("PEN", 1, 10000.0, pytest.approx(2500.0)),
            WonAmount("USD", 1, 5000.0, pytest.approx(4600.0)),
        ]
    # p5 lies before PEN's first rate: converted with it, and said so
    assert [w.reason for w in report.warnings] == [
        "1 payments in PEN are dated before its first exchange rate (2024-01-01): converted with that first rate"
    ]
    assert "in EUR" in report.render()
    # the same files again change nothing (the staged rows are converted before the upsert)
    again = import_paths(engine, [folder], reporting_currency="EUR")
    assert again.ok and sum(again.written.values()) == 0, again.render()


@pytest.mark.parametrize("kind", KINDS)
def test_a_currency_without_rates_is_stored_unconverted_recorded_and_converted_once_rates_arrive(
    kind: str, make_db, tmp_path: Path
) -> None:
    engine = make_db(kind)
    cop = DEALS + b"d5,a1,2024-02-05,2024-03-20,won,8000000,COP\r\n"
    report = import_paths(
        engine,
        [_bundle(tmp_path / "first", accounts=ACCOUNTS, exchange_rates=RATES, deals=cop)],
        reporting_currency="EUR",
    )
    assert report.ok, report.render()
    # d5 is stored as written; the other deals are converted as before
    assert _rows(engine, "SELECT amount_original, currency, amount FROM deals WHERE deal_id = 'd5'") == [
        (8000000.0, "COP", 8000000.0)
    ]
    assert _setting(engine, currency.UNCONVERTED) == "COP"
    (warning,) = report.warnings
    assert warning.reason.startswith(
        "no exchange rate into EUR for COP (1 deals): these amounts are stored as written, NOT converted"
    )
    assert report.won_by_currency[0] == WonAmount("COP", 1, 8000000.0, None)
    assert "not converted" in report.render()
    # COP's rates arrive: the stored deal is converted, the record of unconverted currencies cleared
    later = import_paths(
        engine,
        [
            _bundle(
                tmp_path / "later",
                exchange_rates=b"currency,valid_from,rate_to_reporting\r\nCOP,2024-01-01,0.00025\r\n",
            )
        ],
    )
    assert later.ok, later.render()
    assert later.written["deals"] == 1  # d5 only
    assert _rows(engine, "SELECT amount FROM deals WHERE deal_id = 'd5'") == [(pytest.approx(2000.0),)]
    assert _setting(engine, currency.UNCONVERTED) is None


def test_without_a_reporting_currency_nothing_is_converted_and_every_currency_is_recorded(
    make_db, tmp_path: Path
) -> None:
    engine = make_db("duckdb")
    report = import_paths(
        engine, [_bundle(tmp_path / "b", accounts=ACCOUNTS, exchange_rates=RATES, deals=DEALS)]
    )
    assert report.ok, report.render()
    assert _rows(engine, "SELECT amount FROM deals ORDER BY deal_id") == [
        (10000.0,),
        (100000.0,),
        (5000.0,),
        (2000.0,),
    ]
    assert _setting(engine, currency.REPORTING_CURRENCY) is None
    assert _setting(engine, currency.UNCONVERTED) == "MXN,PEN,USD"
    (warning,) = report.warnings
    assert (
        "no reporting currency is set, so amounts in MXN (1 deals), PEN (2 deals), USD (1 deals)"
        in warning.reason
    )
    # once it is given, the stored amounts are converted
    again = import_paths(engine, [_bundle(tmp_path / "c", exchange_rates=RATES)], reporting_currency="EUR")
    assert again.ok, again.render()
    assert [a for (a,) in _rows(engine, "SELECT amount FROM deals ORDER BY deal_id")] == pytest.approx(
        [2500, 5000, 4600, 500]
    )
    assert _setting(engine, currency.UNCONVERTED) is None


def test_a_single_currency_is_the_reporting_currency(make_db, tmp_path: Path) -> None:
    engine = make_db("duckdb")
    usd = b"deal_id,created_at,status,amount,currency\r\nx1,2024-01-05,open,100,USD\r\nx2,2024-01-06,open,50,USD\r\n"
    report = import_paths(engine, [_bundle(tmp_path / "b", deals=usd)])
    assert report.ok, report.render()
    assert _setting(engine, currency.REPORTING_CURRENCY) == "USD"
    assert [w.reason.split(":")[0] for w in report.warnings] == ["reporting currency USD"]
    assert _rows(engine, "SELECT amount FROM deals ORDER BY deal_id") == [(100.0,), (50.0,)]


def test_the_reporting_currency_cannot_change_under_converted_amounts(make_db, tmp_path: Path) -> None:
    engine = make_db("duckdb")
    folder = _bundle(tmp_path / "b", accounts=ACCOUNTS, exchange_rates=RATES, deals=DEALS)
    assert import_paths(engine, [folder], reporting_currency="EUR").ok
    report = import_paths(engine, [folder], reporting_currency="USD")
    assert not report.ok
    assert [e.reason for e in report.errors] == [
        "this import says the reporting currency is USD, but the amounts and exchange rates of the database "
        "are in EUR: import into a new database to change it"
    ]
    assert _setting(engine, currency.REPORTING_CURRENCY) == "EUR"


def test_currency_codes_and_rates_are_checked_with_their_line(make_db, tmp_path: Path) -> None:
    engine = make_db("duckdb")
    rates = RATES + b"MXN,2024-06-01,0\r\n"  # line 6
    deals = DEALS + b"d6,a1,2024-02-05,,open,10,Soles\r\n"  # line 6
    report = import_paths(
        engine,
        [_bundle(tmp_path / "b", accounts=ACCOUNTS, exchange_rates=rates, deals=deals)],
        reporting_currency="EUR",
    )
    assert not report.ok
    assert sorted((e.file, e.row, e.column, e.reason) for e in report.errors) == [
        (
            "deals.csv",
            6,
            "currency",
            "'Soles' is not an ISO 4217 currency code (three letters, such as PEN or USD)",
        ),
        ("exchange_rates.csv", 6, "rate_to_reporting", "a rate must be above 0, not '0'"),
    ]
    assert _rows(engine, "SELECT count(*) FROM deals") == [(0,)]


def test_the_command_line_takes_the_reporting_currency_and_prints_won_deals_per_currency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from crm_data.cli import main

    folder = _bundle(tmp_path / "b", accounts=ACCOUNTS, exchange_rates=RATES, deals=DEALS)
    url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    assert main(["import", str(folder), "--url", url, "--reporting-currency", "EUR"]) == 0
    out = capsys.readouterr().out
    # won: d1 10,000 PEN -> 2,500 EUR; d3 5,000 USD -> 4,600 EUR
    assert "  currency                    deals         as written             in EUR" in out
    assert "  PEN                             1          10,000.00           2,500.00" in out
    assert "  USD                             1           5,000.00           4,600.00" in out
    assert "  total                           2                              7,100.00" in out
    assert main(["import", str(folder), "--url", url, "--reporting-currency", "Euro"]) == 1
    assert "--reporting-currency:1:value: 'EURO' is not an ISO 4217 currency code" in capsys.readouterr().err
