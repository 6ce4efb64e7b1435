"""AppTest of pages/8_Import.py: upload exports, preview, import, and the refusals
(invalid files, an external database, a locked DuckDB file)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import streamlit as st
from streamlit.testing.v1 import AppTest

from crm_data import schema
from crm_data.engines import make_engine

from .conftest import APP_TIMEOUT, PROJECT_ROOT

PAGE = str(PROJECT_ROOT / "pages" / "8_Import.py")
HUBSPOT = PROJECT_ROOT / "tests" / "crm_data" / "mappings" / "samples" / "hubspot"


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """CRM_DATABASE_URL -> a DuckDB file that does not exist yet; clean Streamlit caches."""
    url = f"duckdb:///{tmp_path / 'imported.duckdb'}"
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield url
    st.cache_data.clear()
    st.cache_resource.clear()


def _uploads(folder: Path, replace: tuple[bytes, bytes] | None = None) -> list[tuple[str, bytes, str]]:
    files = []
    for path in sorted(folder.iterdir()):
        content = path.read_bytes()
        if replace and "tickets" in path.name:
            content = content.replace(*replace)
        files.append((path.name, content, "text/csv"))
    return files


def _page(mapping: str, files: list[tuple[str, bytes, str]]) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=APP_TIMEOUT).run()
    assert not at.exception
    at.selectbox(key="import_mapping").set_value(mapping).run()
    at.file_uploader(key="import_files").set_value(files).run()
    assert not at.exception
    return at


def _count(url: str, table: sa.Table) -> int:
    engine = make_engine(url, read_only=True)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    finally:
        engine.dispose()


def test_page_on_the_demo_database_previews_against_it(app) -> None:
    # ui-core's fixture: CRM_DATABASE_URL = the shared demo database (only previewed here)
    at = app("pages/8_Import.py").run()
    assert not at.exception
    assert len(at.sidebar.multiselect) > 0  # the global filter bar is drawn first
    at.selectbox(key="import_mapping").set_value("mailchimp").run()
    files = [(p.name, p.read_bytes(), "text/csv") for p in sorted((HUBSPOT.parent / "mailchimp").iterdir())]
    at.file_uploader(key="import_files").set_value(files).run()
    assert not at.exception
    assert at.dataframe[0].value.set_index("table")["rows"].to_dict() == {
        "campaigns": 2,
        "campaign_responses": 4,
    }
    assert [b.key for b in at.button if b.key == "import_go"] == ["import_go"]


def test_preview_then_import_into_a_new_database(target: str) -> None:
    at = _page("hubspot", _uploads(HUBSPOT))
    preview = at.dataframe[0].value.set_index("table")
    assert preview.loc["deals", "rows"] == 6
    assert preview.loc["deal_stage_history", "rows"] == 24
    assert [s.value for s in at.success] == ["The files are valid."]
    at.button(key="import_go").click().run()
    assert not at.exception
    assert any("Imported in" in s.value for s in at.success)
    written = at.dataframe[-1].value.set_index("table")
    assert written.loc["deals", "inserted or changed"] == 6
    assert _count(target, schema.deals) == 6
    assert _count(target, schema.survey_responses) == 5
    # the next run sees the data: the filter bar is drawn from the new database
    at.run()
    assert not at.exception
    assert len(at.sidebar.multiselect) > 0


def test_invalid_files_show_file_line_and_column_and_cannot_be_imported(target: str) -> None:
    at = _page("hubspot", _uploads(HUBSPOT, replace=(b"2024-04-02 10:20", b"04/31/2024 10:20")))
    issues = at.dataframe[1].value
    assert issues[["file", "line", "column"]].values.tolist() == [
        ["hubspot-crm-exports-all-tickets-2024-06-30.csv", 5, "opened_at"]
    ]
    assert "1 error(s)" in at.error[0].value
    assert not [b for b in at.button if b.key == "import_go"]
    assert not Path(sa.make_url(target).database).exists()


def test_unknown_files_for_a_mapping_are_named(target: str) -> None:
    at = _page("salesforce", _uploads(HUBSPOT)[:1])
    issue = at.dataframe[0].value.loc[0]
    assert issue["file"] == "hubspot-crm-exports-all-companies-2024-06-30.csv"
    assert issue["problem"].startswith("not an export this mapping (salesforce) knows")


def test_external_database_offers_only_the_preview_and_the_command(
    monkeypatch: pytest.MonkeyPatch, target: str, pg_database_url: str
) -> None:
    # a reachable, empty PostgreSQL database (an unreachable one stops the page with an
    # error: tests/ui/test_broken_databases.py); the server trusts the login, the password
    # is there to be hidden
    external = sa.make_url(pg_database_url).set(password="secret").render_as_string(hide_password=False)
    monkeypatch.setenv("CRM_DATABASE_URL", external)
    at = _page("hubspot", _uploads(HUBSPOT))
    assert at.dataframe[0].value.set_index("table").loc["deals", "rows"] == 6
    assert any("external database" in i.value for i in at.info)
    command = at.code[0].value
    assert command.startswith("python -m crm_data import ") and "--mapping hubspot" in command
    assert "secret" not in command and "***" in command
    assert not [b for b in at.button if b.key == "import_go"]


def test_a_locked_duckdb_file_is_reported(target: str) -> None:
    path = sa.make_url(target).database
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({path!r}); print('ready', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        at = _page("hubspot", _uploads(HUBSPOT))
        at.button(key="import_go").click().run()
        assert not at.exception
        assert "is locked by another process" in at.error[0].value
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.2)
    engine = make_engine(target, read_only=True)
    try:
        assert "deals" not in sa.inspect(engine).get_table_names()  # nothing was written
    finally:
        engine.dispose()


def test_csv_bundle(target: str) -> None:
    accounts_csv = (
        b"account_id,name,segment,created_at\r\na1,Acme,SMB,2024-01-05\r\na2,Beta,Enterprise,2024-02-30\r\n"
    )
    at = _page("CSV bundle", [("accounts.csv", accounts_csv, "text/csv")])
    issues = at.dataframe[1].value
    assert issues[["file", "line", "column"]].values.tolist() == [["accounts.csv", 3, "created_at"]]
    fixed = accounts_csv.replace(b"2024-02-30", b"2024-02-28")
    at.file_uploader(key="import_files").set_value([("accounts.csv", fixed, "text/csv")]).run()
    at.button(key="import_go").click().run()
    assert not at.exception
    assert _count(target, schema.accounts) == 2


def test_warnings_of_the_mapping_are_listed_before_the_import_button(target: str) -> None:
    from tests.crm_data.mappings.test_reading_rules import SALESFORCE_ACCOUNTS

    at = _page("salesforce", [("Account.csv", SALESFORCE_ACCOUNTS, "text/csv")])
    (warning,) = at.warning
    assert "they do not stop the import" in warning.value
    assert "Account.csv: line(s) that are not UTF-8: read as Windows-1252" in warning.value
    assert 'line 4: byte 0x81 in "M\\x81ller Maschinenbau GmbH"' in warning.value
    at.button(key="import_go").click().run()
    assert not at.exception
    assert _count(target, schema.accounts) == 4


def test_unknown_deal_stages_are_assigned_on_the_page_and_remembered(target: str) -> None:
    from crm_data.importing import stored_stages
    from tests.crm_data.mappings.test_hubspot_exports import SELECTED_DEALS

    files = [("hubspot-crm-exports-deals-2023.csv", SELECTED_DEALS, "text/csv")]
    at = _page("hubspot", files)
    assert [s.value for s in at.subheader][:1] == ["Deal stages"]
    radios = {r.key: r for r in at.radio}
    assert set(radios) == {f"import_stage::{s}" for s in ("Contract Signed", "Closed: abandoned", "Paid")}
    assert radios["import_stage::Contract Signed"].label == "Contract Signed — 2 deals"
    assert radios["import_stage::Paid"].value is None  # not chosen yet: counted as open
    assert any("3 stage(s) not placed yet: their 4 deal(s) count as open" in w.value for w in at.warning)
    at.radio(key="import_stage::Contract Signed").set_value("won").run()
    at.radio(key="import_stage::Paid").set_value("won").run()
    at.radio(key="import_stage::Closed: abandoned").set_value("lost").run()
    assert not any("not placed yet" in w.value for w in at.warning)
    assert not any("cannot place" in w.value for w in at.warning)
    at.button(key="import_go").click().run()
    assert not at.exception
    held = next(m.value for m in at.markdown if "deals: 10" in m.value)
    assert "- deals: 10 (won 5, lost 4, open 1)" in held and "- won amount: 70,500.00" in held
    assert "What the files held" in [s.value for s in at.subheader]
    engine = make_engine(target, read_only=True)
    try:
        assert stored_stages(engine, "hubspot") == {
            "Closed: abandoned": "lost", "Contract Signed": "won", "Paid": "won",
        }  # fmt: skip
        with engine.connect() as conn:
            statuses = dict(conn.execute(sa.select(schema.deals.c.deal_id, schema.deals.c.status)).all())
        assert statuses["hs-1003"] == "won" and statuses["hs-1006"] == "lost"
    finally:
        engine.dispose()
    # a new session: the choices come from the database, nothing is left unplaced
    st.cache_data.clear()
    st.cache_resource.clear()
    again = _page("hubspot", files)
    assert not any("not placed yet" in w.value for w in again.warning)
    assert again.radio(key="import_stage::Paid").value == "won"


def test_external_database_gets_the_stage_choices_as_a_stage_file(
    monkeypatch: pytest.MonkeyPatch, target: str, pg_database_url: str
) -> None:
    from tests.crm_data.mappings.test_hubspot_exports import SELECTED_DEALS

    # a reachable external database (an unreachable one stops the page with its error)
    monkeypatch.setenv("CRM_DATABASE_URL", pg_database_url)
    at = _page("hubspot", [("deals.csv", SELECTED_DEALS, "text/csv")])
    at.radio(key="import_stage::Paid").set_value("won").run()
    assert "--mapping hubspot --stages stages.toml --url" in at.code[0].value
    assert at.code[1].value == '[stages]\n"Paid" = "won"'


def test_the_pipeline_filter_appears_when_the_data_has_several_pipelines(target: str) -> None:
    from tests.crm_data.mappings.test_hubspot_exports import COMPANIES, all_properties_export

    # the sample export has one pipeline: no pipeline filter
    at = _page("hubspot", _uploads(HUBSPOT))
    at.button(key="import_go").click().run()
    at.run()
    assert not at.exception
    assert "segment" in [m.key for m in at.sidebar.multiselect]
    assert "pipeline" not in [m.key for m in at.sidebar.multiselect]
    # 4 pipelines: the filter bar offers them
    files = [
        ("hubspot-crm-exports-all-deals-2024-06-30.csv", all_properties_export(), "text/csv"),
        ("hubspot-crm-exports-all-companies-2024-06-30.csv", COMPANIES, "text/csv"),
    ]
    at.file_uploader(key="import_files").set_value(files).run()
    at.button(key="import_go").click().run()
    assert not at.exception
    at.run()
    pipeline = at.sidebar.multiselect(key="pipeline")
    assert pipeline.options == ["NYC Schools", "Partners", "Renewals", "Sales Pipeline"]
    pipeline.set_value(["NYC Schools"]).run()
    assert not at.exception
    assert at.query_params["pipeline"] == "NYC Schools"  # the link keeps it


def test_csv_bundle_preview_shows_a_missing_id_and_an_old_date_and_reads_long_text(target: str) -> None:
    """The page runs the same validation: an empty id and a date before 1900 are errors of
    the preview (they passed it and failed in the database, or were stored), and a 140 kB
    multi-line comment is read (it raised ``_csv.Error: field larger than field limit``)."""
    comment = b'"' + b"c" * 140_000 + b"\n" + b"d" * 10 + b'"'
    surveys = (
        b"response_id,account_id,survey,score,comment,responded_at\nR1,a2,nps,9," + comment + b",2024-02-01\n"
    )
    accounts = b"account_id,name,created_at\n,Acme,2024-01-05\na2,Beta,2024-01-05\na3,Old,0000-01-01\n"
    files = [("accounts.csv", accounts, "text/csv"), ("survey_responses.csv", surveys, "text/csv")]
    at = _page("CSV bundle", files)
    issues = at.dataframe[1].value
    assert issues[["file", "line", "column", "problem"]].values.tolist() == [
        ["accounts.csv", 2, "account_id", "required value is empty"],
        ["accounts.csv", 4, "created_at", "0000-01-01 is before the earliest accepted date 1900-01-01"],
    ]
    assert "2 error(s)" in at.error[0].value
    assert not [b for b in at.button if b.key == "import_go"]
    fixed = accounts.replace(b"\n,Acme", b"\na1,Acme").replace(b"0000-01-01", b"2024-01-05")
    at.file_uploader(key="import_files").set_value(
        [("accounts.csv", fixed, "text/csv"), ("survey_responses.csv", surveys, "text/csv")]
    ).run()
    assert [s.value for s in at.success] == ["The files are valid."]
    at.button(key="import_go").click().run()
    assert not at.exception
    engine = make_engine(target, read_only=True)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.select(schema.survey_responses.c.comment)).scalar_one()
    finally:
        engine.dispose()
    assert stored == "c" * 140_000 + "\n" + "d" * 10


def test_salesforce_currency_exports_preview_and_import(target: str) -> None:
    from tests.crm_data.mappings.test_salesforce_exports import (
        ORG_ACCOUNTS,
        ORG_CURRENCIES,
        ORG_DATED_RATES,
        ORG_OPPORTUNITIES,
    )

    files = [
        ("Account.csv", ORG_ACCOUNTS, "text/csv"),
        ("Opportunity.csv", ORG_OPPORTUNITIES, "text/csv"),
        ("DatedConversionRate.csv", ORG_DATED_RATES, "text/csv"),
        ("CurrencyType.csv", ORG_CURRENCIES, "text/csv"),
    ]
    at = _page("salesforce", files)
    preview = at.dataframe[0].value
    # the corporate currency is a setting of the import, listed first
    assert preview["table"].tolist()[0] == "crm_insights_meta"
    at.button(key="import_go").click().run()
    assert not at.exception
    assert _count(target, schema.deals) == 7
    engine = make_engine(target, read_only=True)
    try:
        with engine.connect() as conn:
            won = conn.exec_driver_sql("SELECT sum(amount) FROM deals WHERE status = 'won'").scalar_one()
    finally:
        engine.dispose()
    # 100,000 (PEN) + 51,515.15 (MXN) + 50,000 (COP) + 50,000 (USD): see test_salesforce_exports
    assert won == pytest.approx(100000 + 850000 / 16.5 + 50000 + 50000)


def test_currencies_left_unconverted_are_said_after_the_import(target: str) -> None:
    from tests.crm_data.mappings.test_salesforce_exports import (
        ORG_ACCOUNTS,
        ORG_DATED_RATES,
        ORG_OPPORTUNITIES,
    )

    files = [
        ("Account.csv", ORG_ACCOUNTS, "text/csv"),
        ("Opportunity.csv", ORG_OPPORTUNITIES, "text/csv"),
        ("DatedConversionRate.csv", ORG_DATED_RATES, "text/csv"),
    ]
    at = _page("salesforce", files)
    at.button(key="import_go").click().run()
    assert not at.exception
    # no CurrencyType: no corporate currency, so nothing is converted, and the page says so
    assert any("NOT converted" in w.value and "COP (1 deals)" in w.value for w in at.warning)
