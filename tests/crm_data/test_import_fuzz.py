"""Property: no import path ends in a traceback, whatever the files hold ("Hardening the data door").

Hypothesis feeds the import (a) random bytes as files named like bundle tables and like vendor
exports, and (b) random mutations of the project's own valid inputs (test_importing's BASE
bundle, the sample exports of tests/crm_data/mappings/samples and the vendor fixtures of the
mapping tests): bytes deleted / inserted / replaced, truncation, duplicated lines, swapped
delimiters, injected quotes / NUL / CR / BOM, UTF-16 and other encodings, blanked cells, huge
numbers and dates like 0000-01-01 / 9999-12-31.

For each input, importing onto a database that holds BASE either succeeds (``report.ok``) or is
refused cleanly (a report that is not ok, or a ``MappingError``; exit code 1 on the command
line, no traceback) — never any other exception — and a refusal leaves every table of the
database as it was (row count and content hash per table).

Runs: in-process ``import_paths`` on DuckDB (random bytes 60 examples, mutations 120), on
PostgreSQL (40 examples), and the command line in a process of its own on DuckDB (6 examples): about
75 s on two shared cores; all derandomized, so CI sees the same inputs every run. How many
inputs were tried, imported and refused per path is written to ``test-artifacts/import-fuzz.json``
(and printed, ``-s``). CRM_FUZZ_SCALE=N explores: N times the examples, new inputs each run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import textwrap
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_data import schema
from crm_data.engines import make_engine
from crm_data.importing import import_paths
from crm_data.mappings import MappingError
from tests.conftest import ROOT, pg_scratch_schema_engine
from tests.crm_data.mappings import test_hubspot_exports as hubspot
from tests.crm_data.mappings import test_mailchimp_exports as mailchimp
from tests.crm_data.mappings import test_pipedrive_exports as pipedrive
from tests.crm_data.mappings.test_reading_rules import SALESFORCE_ACCOUNTS
from tests.crm_data.test_importing import BASE, write_bundle
from tests.servers import run_module_cli

#: minutes on two shared cores: `make test` starts this module early (tests/conftest.py)
pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).parent / "mappings" / "samples"
TODAY = date(2025, 6, 15)
ARTIFACT = ROOT / "test-artifacts" / "import-fuzz.json"

#: CRM_FUZZ_SCALE=N (exploring, not CI): N times the examples, and new random inputs each run.
SCALE = int(os.environ.get("CRM_FUZZ_SCALE", "1"))
FUZZ = settings(
    derandomize=SCALE == 1,  # the same inputs on every run (CI is deterministic)
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


# --- the valid inputs the mutations start from ------------------------------------------------


def _folder(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


#: (mapping or None for a CSV bundle, {file name: bytes}) — every one imports cleanly as it is.
SEEDS: dict[str, tuple[str | None, dict[str, bytes]]] = {
    "bundle": (
        None,
        {f"{t}.csv": textwrap.dedent(text).lstrip("\n").encode() for t, text in BASE.items()},
    ),
    "hubspot samples": ("hubspot", _folder(SAMPLES / "hubspot")),
    "hubspot all properties": (
        "hubspot",
        {
            "hubspot-crm-exports-all-deals-2024-06-30.csv": hubspot.all_properties_export(),
            "hubspot-crm-exports-all-companies-2024-06-30.csv": hubspot.COMPANIES,
        },
    ),
    "salesforce samples": ("salesforce", _folder(SAMPLES / "salesforce")),
    "mailchimp samples": ("mailchimp", _folder(SAMPLES / "mailchimp")),
    "mailchimp reports": (
        "mailchimp",
        {"campaign_reports.csv": mailchimp.CAMPAIGN_REPORTS, "email_activity.csv": mailchimp.ACTIVITY},
    ),
    "mailchimp audience": (
        "mailchimp",
        {
            "subscribed_members_export_8c2a9f31d0.csv": mailchimp.SUBSCRIBED,
            "unsubscribed_members_export_8c2a9f31d0.csv": mailchimp.UNSUBSCRIBED,
        },
    ),
    "pipedrive": (
        "pipedrive",
        {
            "deals-2024.csv": pipedrive.DEALS,
            "organizations-2024.csv": pipedrive.ORGANIZATIONS,
            "activities-2024.csv": pipedrive.ACTIVITIES,
        },
    ),
    "salesforce accounts (windows-1252)": ("salesforce", {"Account.csv": SALESFORCE_ACCOUNTS}),
}

#: File names for random bytes: bundle tables and vendor exports of a few mappings.
RANDOM_TARGETS: list[tuple[str | None, list[str]]] = [
    (None, ["accounts.csv", "deals.csv", "deal_stage_history.csv", "tickets.csv", "campaign_responses.csv"]),
    ("hubspot", ["hubspot-crm-exports-all-deals.csv", "hubspot-crm-exports-all-companies.csv"]),
    ("salesforce", ["Opportunity.csv", "OpportunityHistory.csv", "Account.csv"]),
    ("mailchimp", ["campaign_reports.csv", "email_activity.csv"]),
    ("pipedrive", ["deals.csv", "organizations.csv", "activities.csv"]),
    ("superstore", ["Sample - Superstore.csv"]),
    ("telco_churn", ["WA_Fn-UseC_-Telco-Customer-Churn.csv"]),
]

# --- strategies --------------------------------------------------------------------------------

TOKENS = [
    b'"',
    b'""',
    b"\x00",
    b"\r",
    b"\n",
    b"\r\n",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xff",
    b",",
    b";",
    b"\t",
]
CELLS = [
    "",
    " ",
    "0000-01-01",
    "9999-12-31",
    "0000-00-00",
    "2024-02-30",
    "1900-01-01",
    "2024-13-45T25:61:61",
    "99999999999999999999999999999999",
    "-99999999999999999999",
    "2147483648",
    "9223372036854775807",
    "9223372036854775808",
    "1e-400",
    "1e309",
    "-1e308",
    "NaN",
    "inf",
    "1,5",
    "=1+1",
    "\x00",
    "null",
    "x" * 300,
    "é" * 40,
    '"',
]


CSV_ALPHABET = st.sampled_from(list(',;"\n\r\t -:.0123456789eETZaAxé\x00\ufeff'))


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


@st.composite
def _mutation(draw: st.DrawFn, data: bytes) -> bytes:
    size = len(data)
    at = draw(st.integers(0, size))
    kind = draw(
        st.sampled_from(
            [
                "delete",
                "insert",
                "replace",
                "truncate",
                "duplicate line",
                "delete line",
                "delimiters",
                "token",
                "encoding",
                "cell",
                "cell",
                "cell",
            ]
        )
    )
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 40)) :]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=20)) + data[at:]
    if kind == "replace":
        chunk = draw(st.binary(min_size=1, max_size=8))
        return data[:at] + chunk + data[at + len(chunk) :]
    if kind == "truncate":
        return data[:at]
    if kind in ("duplicate line", "delete line"):
        lines = _lines(data)
        if not lines:
            return data
        i = draw(st.integers(0, len(lines) - 1))
        repeated = [lines[i]] * (draw(st.integers(2, 5)) if kind == "duplicate line" else 0)
        return b"".join(lines[:i] + repeated + lines[i + 1 :])
    if kind == "delimiters":
        old, new = draw(
            st.sampled_from([(b",", b";"), (b",", b"\t"), (b",", b"|"), (b'"', b"'"), (b"\n", b"\r")])
        )
        return data.replace(old, new)
    if kind == "token":
        return data[:at] + draw(st.sampled_from(TOKENS)) + data[at:]
    if kind == "encoding":
        text = data.decode("utf-8", errors="replace")
        codec = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "cp1252", "latin-1", "utf-8-sig"]))
        return text.encode(codec, errors="replace")
    # a cell of a data line blanked or replaced by an extreme value
    lines = _lines(data)
    if len(lines) < 2:
        return data
    i = draw(st.integers(1, len(lines) - 1))
    cells = lines[i].rstrip(b"\r\n").split(b",")
    j = draw(st.integers(0, len(cells) - 1))
    cells[j] = draw(st.sampled_from(CELLS)).encode()
    ending = lines[i][len(lines[i].rstrip(b"\r\n")) :]
    return b"".join([*lines[:i], b",".join(cells) + ending, *lines[i + 1 :]])


@st.composite
def mutated_inputs(draw: st.DrawFn) -> tuple[str, str | None, dict[str, bytes]]:
    """A valid input with one to three mutations (of one file each), or one file left out."""
    label = draw(st.sampled_from(sorted(SEEDS)))
    mapping, files = SEEDS[label]
    files = dict(files)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(files)))
        if draw(st.integers(0, 9)) == 0 and len(files) > 1:
            del files[name]
        else:
            files[name] = draw(_mutation(files[name]))
    return label, mapping, files


@st.composite
def random_inputs(draw: st.DrawFn) -> tuple[str, str | None, dict[str, bytes]]:
    """One or two files of random bytes (sometimes after a valid header line) named like the
    files of a bundle or of a mapping's exports."""
    mapping, names = draw(st.sampled_from(RANDOM_TARGETS))
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    headers = [_lines(data)[0] for m, files in SEEDS.values() if m == mapping for data in files.values()]
    files = {}
    for name in chosen:
        body = draw(
            st.one_of(
                st.binary(max_size=300),
                st.text(CSV_ALPHABET, max_size=300).map(str.encode),  # CSV-like text: gets further in
            )
        )
        if headers and draw(st.booleans()):
            body = draw(st.sampled_from(headers)) + body
        files[name] = body
    return f"{mapping or 'bundle'} random", mapping, files


# --- databases and the property ---------------------------------------------------------------


def snapshot(engine: sa.Engine) -> dict[str, tuple[int, str]]:
    """Every table of the database (the canonical ones, the roll-ups, the application's own):
    its row count and a hash of its rows (sorted, so the order rows come back in is moot)."""
    with engine.connect() as conn:
        out = {}
        for name in sorted(sa.inspect(conn).get_table_names()):
            rows = sorted(repr(tuple(r)) for r in conn.execute(sa.text(f'SELECT * FROM "{name}"')))
            out[name] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
        return out


STATS: dict[str, Counter[str]] = defaultdict(Counter)


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    """Write (and print) how many inputs each path tried, imported and refused cleanly."""
    yield
    if not STATS:
        return
    figures = {key: dict(counts) for key, counts in sorted(STATS.items())}
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(figures, indent=2) + "\n")
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    for key, counts in STATS.items():
        entry, database, *_ = key.split()
        totals[f"{entry} {database} (all inputs)"].update(counts)
    figures.update({key: dict(counts) for key, counts in sorted(totals.items())})
    print("\nimport fuzz (tried / imported / refused cleanly / traceback):")
    for key, c in figures.items():
        print(f"  {key:60s} {c.get('tried', 0):4d} {c.get('imported', 0):4d} "
              f"{c.get('refused', 0):4d} {c.get('traceback', 0):4d}")  # fmt: skip


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def check_import(engine: sa.Engine, before: dict, folder: Path, mapping: str | None, key: str) -> bool:
    """Import ``folder`` in-process: ok, or refused cleanly with the database unchanged.
    Returns whether it imported (the database changed, maybe)."""
    STATS[key]["tried"] += 1
    try:
        report = import_paths(engine, [folder], mapping=mapping, today=TODAY)
    except MappingError:
        ok = False
    except Exception:
        STATS[key]["traceback"] += 1
        raise
    else:
        ok = report.ok
        assert report.render()
    STATS[key]["imported" if ok else "refused"] += 1
    if not ok:
        assert snapshot(engine) == before, "a refused import changed the database"
    return ok


@pytest.fixture(scope="module")
def duckdb_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A DuckDB file holding BASE (closed), and its snapshot: each example imports into a copy."""
    folder = tmp_path_factory.mktemp("fuzz-template")
    path = folder / "base.duckdb"
    engine = make_engine(f"duckdb:///{path}")
    try:
        schema.create_schema(engine)
        assert import_paths(engine, [write_bundle(folder / "base", BASE)], today=TODAY).ok
        before = snapshot(engine)
    finally:
        engine.dispose()
    return path, before


def _duckdb_property(
    template: tuple[Path, dict], given_input: tuple[str, str | None, dict[str, bytes]]
) -> None:
    label, mapping, files = given_input
    path, before = template
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(path, work / "db.duckdb")
        engine = make_engine(f"duckdb:///{work / 'db.duckdb'}")
        try:
            check_import(
                engine, before, write_files(work / "in", files), mapping, f"import_paths duckdb {label}"
            )
        finally:
            engine.dispose()


@settings(FUZZ, max_examples=60 * SCALE)
@given(given_input=random_inputs())
def test_random_bytes_never_end_in_a_traceback_duckdb(duckdb_template, given_input) -> None:
    _duckdb_property(duckdb_template, given_input)


@settings(FUZZ, max_examples=120 * SCALE)
@given(given_input=mutated_inputs())
def test_mutated_valid_inputs_never_end_in_a_traceback_duckdb(duckdb_template, given_input) -> None:
    _duckdb_property(duckdb_template, given_input)


@pytest.fixture(scope="module")
def pg_base(request: pytest.FixtureRequest) -> Iterator[Callable[[], tuple[sa.Engine, dict]]]:
    """``fresh()`` -> a PostgreSQL schema holding BASE, and its snapshot: the same one until an
    import succeeds (the next example then gets a new schema)."""
    url = request.getfixturevalue("pg_database_url")
    engines: list[sa.Engine] = []
    current: list[tuple[sa.Engine, dict]] = []

    def fresh(dirty: bool = False) -> tuple[sa.Engine, dict]:
        if current and not dirty:
            return current[0]
        engine = pg_scratch_schema_engine(url, "fuzz")
        engines.append(engine)
        schema.create_schema(engine)
        with tempfile.TemporaryDirectory() as tmp:
            assert import_paths(engine, [write_bundle(Path(tmp), BASE)], today=TODAY).ok
        current[:] = [(engine, snapshot(engine))]
        return current[0]

    yield fresh
    for engine in engines:
        engine.dispose()


@settings(FUZZ, max_examples=40 * SCALE)
@given(given_input=st.one_of(mutated_inputs(), random_inputs()))
def test_imports_never_end_in_a_traceback_postgresql(pg_base, given_input) -> None:
    label, mapping, files = given_input
    engine, before = pg_base()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_files(Path(tmp) / "in", files)
        if check_import(engine, before, folder, mapping, f"import_paths postgresql {label}"):
            pg_base(dirty=True)


@settings(FUZZ, max_examples=6 * SCALE)
@given(given_input=st.one_of(mutated_inputs(), random_inputs()))
def test_the_command_line_never_prints_a_traceback(duckdb_template, given_input) -> None:
    label, mapping, files = given_input
    path, before = duckdb_template
    key = f"cli duckdb {label}"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(path, work / "db.duckdb")
        url = f"duckdb:///{work / 'db.duckdb'}"
        folder = write_files(work / "in", files)
        command = ["import", str(folder), "--url", url]
        STATS[key]["tried"] += 1
        done = run_module_cli(*command, *(["--mapping", mapping] if mapping else []), timeout=120)
        if "Traceback" in done.stderr or done.returncode not in (0, 1):
            STATS[key]["traceback"] += 1
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode in (0, 1), done.stderr
        STATS[key]["imported" if done.returncode == 0 else "refused"] += 1
        if done.returncode == 1:
            assert "nothing was imported" in done.stderr
            engine = make_engine(url)
            try:
                assert snapshot(engine) == before
            finally:
                engine.dispose()
