"""Import: drop CRM exports (or a CSV bundle), pick a mapping, preview the validation
(errors by file, line and column), then import into the embedded database — all or nothing.

The dashboard reads its database read-only; the import opens its own short-lived writing
engine after closing the dashboard's. On an external database (CRM_DATABASE_URL is not a
DuckDB file) the page only previews: imports go through the command line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
import streamlit as st

from crm_data.engines import DatabaseBusyError, database_url, explain_database_error, make_engine
from crm_data.importing import ImportReport, TableInput, import_tables, read_bundle, validate_tables
from crm_data.mappings import SHIPPED, MappingError, ReadReport, load_mapping
from crm_data.schema import TABLE_NAMES, accounts
from ui import data

BUNDLE = "CSV bundle"
OWN = "My own mapping file (.toml)"
MAPPING_HELP = {
    BUNDLE: "one <table>.csv per canonical table, with the canonical column names",
    OWN: "a mapping you wrote (see docs/mappings.md)",
}

st.set_page_config(page_title="CRM Insights — Import", page_icon=":material/upload:", layout="wide")


def _database_readable(url: str) -> bool:
    """True when the CRM tables can be read (then the filter bar has something to show).
    A database that cannot be used at all (damaged, unreachable) stops the page with an
    ``st.error`` saying what to do: nothing can be imported into it."""
    try:
        engine = make_engine(url, read_only=True)
    except FileNotFoundError:
        return False
    try:
        with engine.connect() as conn:
            conn.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one()
        return True
    except sa.exc.DBAPIError as error:
        if explain_database_error(error, url) is not None:
            from ui.navigation import navigation

            navigation()
            data.stop_if_unusable(error, url)
        return False
    finally:
        engine.dispose()


url = database_url()
external = sa.make_url(url).get_backend_name() != "duckdb"
if _database_readable(url):
    from ui.filters import global_filters

    global_filters()
else:
    from ui.navigation import navigation

    navigation()
    st.sidebar.info("No CRM data yet: the filters appear after the first import.", icon=":material/info:")

st.title("Import data")
st.caption(
    "Drop the export files of your CRM, choose what they are, check the preview, then import. "
    "The import is all or nothing: with any error, the database stays exactly as it was."
)

choices = [BUNDLE, *SHIPPED, OWN]
choice = st.selectbox(
    "What are these files?",
    choices,
    key="import_mapping",
    format_func=lambda name: f"{name} — {MAPPING_HELP.get(name) or load_mapping(name).description}",
)
own_mapping = None
if choice == OWN:
    own_mapping = st.file_uploader("Mapping file", type=["toml"], key="import_own_mapping")
uploads = st.file_uploader(
    "Export files",
    type=["csv", "tsv", "txt"],
    accept_multiple_files=True,
    key="import_files",
    help="Several files at once: e.g. the companies, contacts and deals exports.",
)

if not uploads or (choice == OWN and own_mapping is None):
    st.info("Add the files to see what would be imported.", icon=":material/upload_file:")
    st.stop()


def _shown_file(name: str, folder: Path) -> str:
    return name.replace(f"{folder}/", "")


def _read_inputs(folder: Path) -> tuple[list[TableInput], list[str], list[dict[str, object]], list[str]]:
    """Save the uploads in ``folder`` and read them: inputs, notes, problems found reading,
    and the warnings of the mapping (what it detected or repaired)."""
    paths = []
    for upload in uploads:
        path = folder / Path(upload.name).name
        copy = 1
        while path.exists():  # two uploads with one name (e.g. Data Loader's extract.csv)
            copy += 1
            path = folder / f"{Path(upload.name).stem} ({copy}){Path(upload.name).suffix}"
        path.write_bytes(upload.getvalue())
        paths.append(path)
    notes: list[str] = []
    if choice == BUNDLE:
        inputs, issues = read_bundle(paths)
        problems = [
            {
                "file": _shown_file(i.file, folder),
                "line": i.row,
                "column": i.column,
                "problem": i.reason,
                "level": i.level,
            }
            for i in issues
        ]
        return inputs, notes, problems, []
    mapping_source = choice
    if choice == OWN:
        mapping_path = folder / "_mapping.toml"
        mapping_path.write_bytes(own_mapping.getvalue())
        mapping_source = str(mapping_path)
    read = ReadReport()
    try:
        inputs = load_mapping(mapping_source).read(paths, notes, report=read)
    except MappingError as error:
        issues = [
            {
                "file": _shown_file(i.file, folder),
                "line": i.row,
                "column": i.column,
                "problem": _shown_file(i.reason, folder),
            }
            for i in error.issues
        ] or [{"file": "", "line": None, "column": "", "problem": _shown_file(str(error), folder)}]
        warnings = [_shown_file(str(w), folder) for w in read.warnings]
        return [], notes, [{**issue, "level": "error"} for issue in issues], warnings
    return (
        inputs,
        [_shown_file(n, folder) for n in notes],
        [],
        [_shown_file(str(w), folder) for w in read.warnings],
    )


def _issue_rows(report: ImportReport, folder: Path) -> list[dict[str, object]]:
    return [
        {
            "file": _shown_file(i.file, folder),
            "line": i.row,
            "column": i.column,
            "problem": i.reason,
            "level": i.level,
        }
        for i in [*report.errors, *report.warnings]
    ]


def _preview_engine() -> sa.Engine:
    """An engine that can read the target database, or an empty in-memory one."""
    if _database_readable(url):
        return data.engine()
    return make_engine("duckdb:///:memory:")


with tempfile.TemporaryDirectory(prefix="crm-import-") as tmp:
    folder = Path(tmp)
    inputs, notes, problems, warnings = _read_inputs(folder)
    for note in notes:
        st.caption(f":material/info: {note}")
    if warnings:  # repaired or detected while reading: nothing lost, the import can go ahead
        st.warning(
            "Read with these repairs and detections (check them; they do not stop the import):\n\n"
            + "\n".join(f"- {w}" for w in warnings),
            icon=":material/warning:",
        )
    report = (
        validate_tables(_preview_engine(), inputs)
        if inputs and not any(p["level"] == "error" for p in problems)
        else None
    )
    if report is not None:
        problems += _issue_rows(report, folder)
    errors = [p for p in problems if p["level"] == "error"]
    error_total = len(errors) + (report.error_count - len(report.errors) if report else 0)

    st.subheader("Preview")
    rows = pd.DataFrame(
        [{"table": t.table, "rows": len(t.frame), "from": _shown_file(t.source, folder)} for t in inputs]
    )
    if not rows.empty:
        order = {name: i for i, name in enumerate(TABLE_NAMES)}  # settings (crm_insights_meta) first
        rows["order"] = rows["table"].map(lambda table: order.get(table, -1))
        st.dataframe(rows.sort_values("order").drop(columns="order"), hide_index=True)
    if problems:
        st.error(
            f"{error_total:,d} error(s): nothing can be imported until they are fixed in the files."
            if error_total
            else "Warnings only: the import can go ahead.",
            icon=":material/error:" if error_total else ":material/warning:",
        )
        st.dataframe(pd.DataFrame(problems), hide_index=True)
    elif inputs:
        st.success("The files are valid.", icon=":material/check_circle:")

    if error_total or not inputs:
        st.stop()

    if external:
        shown = data.shown_url(url)
        mapping_arg = (
            "" if choice == BUNDLE else f" --mapping {choice if choice != OWN else 'my_mapping.toml'}"
        )
        names = " ".join(Path(u.name).name for u in uploads)
        st.info(
            f"The dashboard is connected to an external database (`{shown}`): imports go through "
            "the command line, so that they run where the files and credentials are:",
            icon=":material/terminal:",
        )
        st.code(f"python -m crm_data import {names}{mapping_arg} --url '{shown}'", language="bash")
        st.stop()

    if st.button(
        "Import into the database", type="primary", icon=":material/database_upload:", key="import_go"
    ):
        bar = st.progress(0.0, text="starting")
        data.refresh()  # close the dashboard's read-only connections to the file
        writer = make_engine(url)
        try:
            result = import_tables(
                writer,
                inputs,
                progress=lambda fraction, message: bar.progress(min(max(fraction, 0.0), 1.0), text=message),
            )
        except DatabaseBusyError:
            st.error(
                f"The database file `{data.shown_url(url)}` is locked by another process — another "
                "dashboard or a `python -m crm_data` command still has it open. Stop it, then import "
                "again. Nothing was written.",
                icon=":material/lock:",
            )
            st.stop()
        except sa.exc.DBAPIError as error:  # a damaged file: one sentence saying what to do
            data.stop_if_unusable(error, url)
            raise
        finally:
            writer.dispose()
            data.refresh()
            st.cache_data.clear()  # the dashboard must show the new data
        if result.ok:
            written = pd.DataFrame(
                [
                    {"table": t, "rows in the files": n, "inserted or changed": result.written.get(t, 0)}
                    for t, n in result.rows.items()
                ]
            )
            st.success(
                f"Imported in {result.seconds:.1f} s. The dashboard now shows the new data.",
                icon=":material/done_all:",
            )
            st.dataframe(written, hide_index=True)
            found = [w for w in result.warnings if report is None or w not in report.warnings]
            if found:  # what only the import could tell: e.g. currencies left unconverted
                st.warning("\n".join(f"- {w}" for w in found), icon=":material/warning:")
        else:
            st.error("The import was refused; the database is unchanged.", icon=":material/error:")
            st.dataframe(pd.DataFrame(_issue_rows(result, folder)), hide_index=True)
