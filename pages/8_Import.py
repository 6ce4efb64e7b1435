"""Import: drop CRM exports (or a CSV bundle), pick a mapping, preview the validation
(errors by file, line and column), then import into the embedded database — all or nothing.

Deal stages the mapping cannot place as won, lost or open (a CRM's own stage names) are
listed in a step of their own, each with a won / lost / open choice; the choices are read
with the files at once (the preview shows their effect) and remembered in the database
(``crm_insights_stage_map``) for the next import. After an import, a summary of what the
files held (deals won / lost / open, won amount, dates) to check against the CRM.

The dashboard reads its database read-only; the import opens its own short-lived writing
engine after closing the dashboard's. On an external database (CRM_DATABASE_URL is not a
DuckDB file) the page only previews: imports go through the command line.

Admins only (``ui.auth.require("admin")`` before anything of the page: anyone else who
opens its URL gets a refusal). Uploads are limited to ``MAX_UPLOAD_MB`` each; an upload's
name is never used as a path: the files are saved in a private temporary folder under a
cleaned name (``ui.uploads.safe_file_name``: letters, digits, ``._-()`` and spaces, no
folders, no leading dot), which the mappings still recognise. Every import is written to
the audit log (who, the files, the rows changed).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
import streamlit as st

from crm_data.engines import DatabaseBusyError, database_url, explain_database_error, make_engine
from crm_data.importing import (
    ImportReport,
    TableInput,
    import_tables,
    read_bundle,
    stored_stages,
    validate_tables,
)
from crm_data.mappings import SHIPPED, MappingError, ReadReport, load_mapping
from crm_data.schema import TABLE_NAMES, accounts
from forecasting import store as forecast_store
from kpis import rollups
from ui import auth, data
from ui.uploads import MAX_UPLOAD_MB, safe_file_name

BUNDLE = "CSV bundle"
STATUSES = ["won", "lost", "open"]
STAGE_KEY = "import_stage::"  # + the stage label: the widget of its won / lost / open choice
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
user = auth.require(auth.ADMIN)  # a viewer or analyst who opens this URL stops here

st.title("Import data")
st.caption(
    "Drop the export files of your CRM, choose what they are, check the preview, then import. "
    "The import is all or nothing: with any error, the database stays exactly as it was."
)


def _rebuild_rollups() -> None:
    """Rebuild the KPI roll-ups (admins: this page), like ``crm-insights rollups``."""
    from kpis.rollups import refresh_database

    data.refresh()  # close the dashboard's read-only connections to the file
    writer = make_engine(url)
    try:
        written = refresh_database(writer)
    except DatabaseBusyError:
        st.error(
            "The database file is locked by another process: nothing was rebuilt.", icon=":material/lock:"
        )
        return
    finally:
        writer.dispose()
        data.refresh()
    auth.record("rollups_rebuilt", "KPI roll-ups", {"rows": written}, actor=user.name)
    st.success(
        f"Rebuilt {len(written)} roll-ups ({sum(written.values()):,} rows).", icon=":material/done_all:"
    )


if _database_readable(url):
    with st.expander("KPI roll-ups", icon=":material/dataset:"):
        st.caption(
            "Imports rebuild them; after writing the CRM tables with another tool, rebuild them here "
            "(or `crm-insights rollups`)."
        )
        if external:
            st.code(f"crm-insights rollups --url '{data.shown_url(url)}'", language="bash")
        elif st.button("Rebuild the KPI roll-ups", key="rollups_rebuild", icon=":material/refresh:"):
            _rebuild_rollups()

choices = [BUNDLE, *SHIPPED, OWN]
choice = st.selectbox(
    "What are these files?",
    choices,
    key="import_mapping",
    format_func=lambda name: f"{name} — {MAPPING_HELP.get(name) or load_mapping(name).description}",
)
own_mapping = None
if choice == OWN:
    own_mapping = st.file_uploader("Mapping file", type=["toml"], key="import_own_mapping", max_upload_size=1)
uploads = st.file_uploader(
    "Export files",
    type=["csv", "tsv", "txt"],
    accept_multiple_files=True,
    key="import_files",
    help=f"Several files at once: e.g. the companies, contacts and deals exports. At most {MAX_UPLOAD_MB} MB each.",
    max_upload_size=MAX_UPLOAD_MB,
)

if not uploads or (choice == OWN and own_mapping is None):
    st.info("Add the files to see what would be imported.", icon=":material/upload_file:")
    st.stop()


def _shown_file(name: str, folder: Path) -> str:
    return name.replace(f"{folder}/", "")


def _stage_choices() -> dict[str, str]:
    """The won / lost / open choices made in the stage step (label -> status)."""
    return {
        str(key)[len(STAGE_KEY) :]: value
        for key, value in st.session_state.items()
        if str(key).startswith(STAGE_KEY) and value in STATUSES
    }


def _read_inputs(
    folder: Path, preview: sa.Engine
) -> tuple[list[TableInput], list[str], list[dict[str, object]], list[str], ReadReport, str]:
    """Save the uploads in ``folder`` and read them (``preview``: the database they would go
    to): inputs, notes, problems found reading, the warnings of the mapping (what it detected
    or repaired), the read report (its deal stages) and the mapping's name."""
    paths = []
    for number, upload in enumerate(uploads, start=1):
        name = safe_file_name(upload.name, f"upload-{number}.csv")
        path = folder / name
        copy = 1
        while path.exists():  # two uploads with one name (e.g. Data Loader's extract.csv)
            copy += 1
            path = folder / f"{Path(name).stem} ({copy}){Path(name).suffix}"
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
        return inputs, notes, problems, [], ReadReport(), ""
    mapping_source = choice
    if choice == OWN:
        mapping_path = folder / "_mapping.toml"
        mapping_path.write_bytes(own_mapping.getvalue())
        mapping_source = str(mapping_path)
    read = ReadReport()
    try:
        mapping = load_mapping(mapping_source)
        stages = {**_remembered_stages(preview, mapping.name), **_stage_choices()}
        inputs = mapping.read(paths, notes, report=read, stages=stages, database=preview)
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
        return [], notes, [{**issue, "level": "error"} for issue in issues], warnings, read, ""
    return (
        inputs,
        [_shown_file(n, folder) for n in notes],
        [],
        [_shown_file(str(w), folder) for w in read.warnings],
        read,
        mapping.name,
    )


def _remembered_stages(engine: sa.Engine, source: str) -> dict[str, str]:
    """The stage assignments the database remembers for ``source`` (none when unreadable)."""
    try:
        return stored_stages(engine, source)
    except sa.exc.DBAPIError:
        return {}


def _stage_step(read: ReadReport, remembered: dict[str, str]) -> dict[str, str]:
    """The stage step: every stage the mapping could not place (and every one placed by an
    assignment, to change it) with a won / lost / open choice; returns the choices made."""
    unplaced = read.stages("unplaced")
    assigned = read.stages("assigned")
    if not unplaced and not assigned:
        return {}
    st.subheader("Deal stages")
    st.caption(
        "These stages are your CRM's own: say whether a deal in each is won, lost or still open. "
        "Until you do, their deals count as open. Your choices are remembered for the next import."
    )
    if unplaced:
        st.warning(
            f"{len(unplaced)} stage(s) not placed yet: their {sum(unplaced.values()):,d} deal(s) count as open.",
            icon=":material/help:",
        )
    folded = {" ".join(k.split()).casefold(): v for k, v in remembered.items()}
    for label, deals in {**unplaced, **assigned}.items():
        key = STAGE_KEY + label
        if key not in st.session_state and label in assigned:
            st.session_state[key] = folded.get(" ".join(label.split()).casefold())
        st.radio(
            f"{label} — {deals:,d} deal{'s' if deals != 1 else ''}",
            STATUSES,
            index=None,
            key=key,
            horizontal=True,
        )
    return {
        label: status for label, status in _stage_choices().items() if label in unplaced or label in assigned
    }


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
    preview = _preview_engine()
    inputs, notes, problems, warnings, read, mapping_name = _read_inputs(folder, preview)
    chosen = _stage_step(read, _remembered_stages(preview, mapping_name) if mapping_name else {})
    for note in notes:
        st.caption(f":material/info: {note}")
    if warnings:  # repaired or detected while reading: nothing lost, the import can go ahead
        st.warning(
            "Read with these repairs and detections (check them; they do not stop the import):\n\n"
            + "\n".join(f"- {w}" for w in warnings),
            icon=":material/warning:",
        )
    report = (
        validate_tables(preview, inputs)
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
        names = " ".join(safe_file_name(u.name, "FILE.csv") for u in uploads)
        stages_arg = " --stages stages.toml" if chosen else ""
        st.info(
            f"The dashboard is connected to an external database (`{shown}`): imports go through "
            "the command line, so that they run where the files and credentials are:",
            icon=":material/terminal:",
        )
        st.code(
            f"python -m crm_data import {names}{mapping_arg}{stages_arg} --url '{shown}'", language="bash"
        )
        if chosen:
            st.caption("with your stage choices in `stages.toml`:")
            lines = "\n".join(f'"{label}" = "{status}"' for label, status in chosen.items())
            st.code(f"[stages]\n{lines}", language="toml")
        st.stop()

    if st.button(
        "Import into the database", type="primary", icon=":material/database_upload:", key="import_go"
    ):
        bar = st.progress(0.0, text="starting")
        data.refresh()  # close the dashboard's read-only connections to the file
        writer = make_engine(url)
        rollups.listen()  # the import refreshes the roll-up periods it touches, in its transaction
        forecast_store.listen()  # after its commit: the Forecast page's default forecast, computed ahead
        try:
            result = import_tables(
                writer,
                inputs,
                progress=lambda fraction, message: bar.progress(min(max(fraction, 0.0), 1.0), text=message),
                stages=(mapping_name, chosen) if mapping_name and chosen else None,
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
        auth.record(
            auth.store_module.IMPORT,
            ", ".join(safe_file_name(u.name, "?") for u in uploads)[:254],
            {
                "files": [safe_file_name(u.name, "?") for u in uploads],
                "mapping": choice if choice != OWN else "own mapping file",
                "ok": bool(result.ok),
                "rows_changed": dict(result.written),
            },
            actor=user.name,
        )
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
            summary = result.summary.lines() if result.summary else []
            if summary:
                st.subheader("What the files held")
                st.caption("Check these figures against your CRM.")
                st.markdown("\n".join(f"- {line.strip()}" for line in summary))
            found = [w for w in result.warnings if report is None or w not in report.warnings]
            if found:  # what only the import could tell: e.g. currencies left unconverted
                st.warning("\n".join(f"- {w}" for w in found), icon=":material/warning:")
        else:
            st.error("The import was refused; the database is unchanged.", icon=":material/error:")
            st.dataframe(pd.DataFrame(_issue_rows(result, folder)), hide_index=True)
