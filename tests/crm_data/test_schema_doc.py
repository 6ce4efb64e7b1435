"""docs/data-model.md is generated from the code: it is current, complete, and cannot drift.

The committed file must equal :func:`crm_data.schema_doc.render`; every table and column
of the schema appears with its type and required flag, every enum value set, score scale,
reference and KPI appears; and a schema column without a description (or a description
of a column that is gone) fails — checked on copies of the metadata, never by changing
the real schema.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm_data import quality, schema, schema_doc, validation
from crm_data.validation import column_kind
from kpis import registry


@pytest.fixture(scope="module")
def document() -> str:
    """The rendered document (rendering imports every KPI module: do it once)."""
    return schema_doc.render()


def metadata_copy() -> sa.MetaData:
    """A copy of the canonical metadata (same tables, columns and keys, in the same order)."""
    copy = sa.MetaData()
    for table in schema.metadata.tables.values():
        table.to_metadata(copy)
    return copy


def table_section(document: str, table: str) -> str:
    """The text of ``### table`` up to the next heading."""
    match = re.search(rf"^### {re.escape(table)}\n(.*?)(?=^#)", document, re.S | re.M)
    assert match, f"no section for table {table}"
    return match.group(1)


def column_cells(section: str, column: str) -> list[str]:
    """The cells of ``column``'s row in a table section."""
    rows = [line for line in section.splitlines() if line.startswith(f"| `{column}` |")]
    assert len(rows) == 1, f"{column}: {len(rows)} rows"
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", rows[0])[1:-1]]


def test_committed_document_is_current(document: str) -> None:
    committed = schema_doc.DOC_PATH.read_bytes().decode("utf-8")
    assert committed == document, f"docs/data-model.md is out of date: run `{schema_doc.REGENERATE}`"


def test_check_passes_on_the_committed_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert schema_doc.main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_check_fails_on_a_stale_file_and_says_how_to_regenerate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: str
) -> None:
    stale = tmp_path / "data-model.md"
    stale.write_text(document.replace("| `amount` |", "| `amount_eur` |", 1), encoding="utf-8")
    assert schema_doc.main(["--check", "--path", str(stale)]) == 1
    assert schema_doc.REGENERATE in capsys.readouterr().err
    assert schema_doc.main(["--check", "--path", str(tmp_path / "missing.md")]) == 1
    assert schema_doc.REGENERATE in capsys.readouterr().err


def test_main_prints_the_document(capsys: pytest.CaptureFixture[str], document: str) -> None:
    assert schema_doc.main([]) == 0
    assert capsys.readouterr().out == document


def test_tables_appear_in_schema_order(document: str) -> None:
    headings = re.findall(r"^### (\w+)$", document, re.M)
    assert headings == list(schema.metadata.tables)
    assert set(headings) == set(schema.TABLE_NAMES)


def test_every_column_appears_with_type_and_required_flag(document: str) -> None:
    for table in schema.metadata.tables.values():
        section = table_section(document, table.name)
        listed = re.findall(r"^\| `(\w+)` \|", section, re.M)
        assert listed == [c.name for c in table.columns], table.name
        for column in table.columns:
            name, kind, required, *_ = column_cells(section, column.name)
            assert name == f"`{column.name}`"
            assert kind == schema_doc.TYPE_NAMES[column_kind(column)], f"{table.name}.{column.name}"
            expected = "yes" if (column.primary_key or not column.nullable) else "no"
            assert required == expected, f"{table.name}.{column.name}"


def test_required_flags_spot_checks(document: str) -> None:
    section = table_section(document, "payments")
    assert column_cells(section, "amount")[:3] == ["`amount`", "number", "yes"]
    assert column_cells(section, "payment_id")[2:4] == ["yes", "primary key"]
    contacts = table_section(document, "contacts")
    assert column_cells(contacts, "email")[2] == "no"
    assert column_cells(table_section(document, "accounts"), "created_at")[1] == "timestamp (UTC)"
    assert column_cells(table_section(document, "costs"), "incurred_on")[1] == "date"
    assert column_cells(table_section(document, "pipeline_stages"), "is_won")[1] == "boolean"
    assert column_cells(table_section(document, "tickets"), "contacts_until_resolved")[1] == "integer"


def test_composite_and_missing_primary_keys(document: str) -> None:
    assert "Primary key: (`deal_id`, `stage`, `entered_at`)." in table_section(document, "deal_stage_history")
    assert "Primary key: (`date`, `source`)." in table_section(document, "web_traffic")
    assert "Primary key: none." in table_section(document, "campaign_responses")


def test_every_enum_value_set_appears(document: str) -> None:
    assert schema.ENUMS, "the schema defines enums"
    for (table, column), values in schema.ENUMS.items():
        listed = ", ".join(f"`{v}`" for v in sorted(values))
        assert f"| `{table}.{column}` | {listed} |" in document, f"{table}.{column}"
        assert column_cells(table_section(document, table), column)[4] == listed
    assert set(schema.COST_CATEGORIES) == schema.ENUMS[("costs", "category")]


def test_free_text_columns_list_no_values(document: str) -> None:
    assert column_cells(table_section(document, "tickets"), "channel")[4] == ""
    assert column_cells(table_section(document, "campaigns"), "channel")[4] == ""


def test_score_scales_appear(document: str) -> None:
    assert "* `nps`: 0–10 in whole points." in document
    assert "* `ces`: 1–7." in document
    assert "* `csat`: any number" in document


def test_value_rules_and_the_date_window_appear(document: str) -> None:
    """Generated from crm_data.validation's rules: every range (also in its column's
    *allowed values* cell), the signed amounts, the order rules, the window and the limits."""
    for (table, column), bounds in validation.VALUE_RULES.items():
        assert f"  | `{table}.{column}` | {bounds} |" in document, f"{table}.{column}"
        assert column_cells(table_section(document, table), column)[4] == str(bounds)
    for table, column in validation.SIGNED_COLUMNS:
        assert f"`{table}.{column}` (a negative amount is" in document
    for table, earlier, later in validation.ORDER_RULES:
        assert f"`{table}.{later}` before `{earlier}`" in document
    for table, column in schema.PLANNED_COLUMNS:
        assert f"`{table}.{column}`" in document.split("**Dates and timestamps**")[1].split("\n")[0]
    for phrase in (
        f"before `{validation.EARLIEST_DATE.isoformat()}`",
        f"today (UTC) + {validation.EVENT_HORIZON_YEARS} year",
        f"after today + {validation.PLANNED_HORIZON_YEARS} years",
        f"longer than {validation.MAX_TEXT_LENGTH:,d} characters",
        f"longer than {validation.MAX_ID_LENGTH} characters",
        "a NUL character (`\\x00`)",
        "Primary-key columns are always\nrequired.",
    ):
        assert phrase in document, phrase


def test_every_reference_appears(document: str) -> None:
    for table in schema.metadata.tables.values():
        for column in table.columns:
            for fk in column.foreign_keys:
                assert f"| `{table.name}.{column.name}` | `{fk.target_fullname}` |" in document
                cells = column_cells(table_section(document, table.name), column.name)
                assert f"→ `{fk.target_fullname}` (foreign key)" in cells[3]
    for table, column, parent, parent_column in quality.SOFT_REFERENCES:
        assert f"| `{table}.{column}` | `{parent}.{parent_column}` |" in document
        cells = column_cells(table_section(document, table), column)
        assert f"→ `{parent}.{parent_column}` (soft)" in cells[3]


def test_rules_and_bundle_format_are_stated(document: str) -> None:
    for phrase in (
        "`started_at ≤ t < ended_at`",
        "no `ended_at` = still running",
        "`2024-03-01T09:30:00+02:00` is stored as `2024-03-01 07:30:00`",
        "a negative amount is a\nrefund",
        "named `<table>.csv`",
        "**All or nothing.**",
        "**Upsert by id.**",
        "half-open range `[start, end)` in UTC",
        "calendar months, quarters or years in UTC",
        "Rates are fractions",
    ):
        assert phrase in document, phrase


def test_every_kpi_appears_with_its_definition(document: str) -> None:
    for kpi in registry.KPIS:
        function = f"`{kpi.function.__module__}.{kpi.function.__name__}`"
        row = (
            f"| {kpi.title} | `{kpi.key}` | {function} | {schema_doc.UNIT_NAMES[kpi.unit]} | "
            f"`{kpi.value_column}` | {kpi.definition.replace('|', chr(92) + '|')} |"
        )
        assert row in document, kpi.key
    assert set(schema_doc.UNIT_NAMES) == set(registry.UNITS)


def test_the_real_schema_is_fully_described() -> None:
    assert schema_doc.description_problems(schema.metadata) == []


def test_a_new_column_without_description_fails() -> None:
    copy = metadata_copy()
    copy.tables["payments"].append_column(sa.Column("discount", sa.Double()))
    assert schema_doc.descriptions_missing(copy) == ["payments.discount"]
    with pytest.raises(ValueError, match=r"payments\.discount: no description"):
        schema_doc.render(copy)


def test_a_new_table_without_description_fails() -> None:
    copy = metadata_copy()
    sa.Table("refunds", copy, sa.Column("refund_id", sa.String, primary_key=True))
    assert schema_doc.descriptions_missing(copy) == ["refunds", "refunds.refund_id"]
    with pytest.raises(ValueError, match="refunds"):
        schema_doc.render(copy)


def test_a_description_of_a_removed_column_fails() -> None:
    copy = sa.MetaData()
    for table in schema.metadata.tables.values():
        if table.name == "payments":
            columns = [sa.Column(c.name, c.type, primary_key=c.primary_key) for c in table.columns]
            sa.Table("payments", copy, *(c for c in columns if c.name != "amount"))
        else:
            table.to_metadata(copy)
    assert schema_doc.descriptions_stale(copy) == ["payments.amount"]
    with pytest.raises(ValueError, match=r"payments\.amount: described .* but not in the schema"):
        schema_doc.render(copy)


def test_a_description_of_an_unknown_column_fails() -> None:
    descriptions = {**schema_doc.COLUMN_DESCRIPTIONS, ("deals", "discount"): "Discount granted."}
    assert schema_doc.descriptions_stale(schema.metadata, descriptions) == ["deals.discount"]
    tables = {**schema_doc.TABLE_DESCRIPTIONS, "leads": "Leads."}
    assert schema_doc.descriptions_stale(schema.metadata, table_descriptions=tables) == ["leads"]
    with pytest.raises(ValueError, match=r"deals\.discount"):
        schema_doc.render(descriptions=descriptions)


def test_a_blank_description_counts_as_missing() -> None:
    descriptions = {**schema_doc.COLUMN_DESCRIPTIONS, ("deals", "name"): "  "}
    assert schema_doc.descriptions_missing(schema.metadata, descriptions) == ["deals.name"]


def test_render_of_a_copy_with_a_described_extra_column() -> None:
    copy = metadata_copy()
    copy.tables["payments"].append_column(sa.Column("discount", sa.Double()))
    descriptions = {**schema_doc.COLUMN_DESCRIPTIONS, ("payments", "discount"): "Discount granted."}
    text = schema_doc.render(copy, descriptions=descriptions)
    cells = column_cells(table_section(text, "payments"), "discount")
    assert cells == ["`discount`", "number", "no", "", "", "Discount granted."]
