"""The declarative mapping interpreter: export files + a TOML mapping -> canonical tables.

A mapping (see ``docs/mappings.md``) has three parts:

* ``[mapping]``: name, description, default source ``timezone``, ``encodings`` to try
  (line by line, ISO-8859-1 last), ``ignore`` (file name patterns that are not data, e.g.
  a data dictionary, or a vendor's other objects: a folder file matching them is skipped
  even when its columns fit an export), ``blank_values`` (cells read as blank, e.g.
  Salesforce's empty-reference id ``000000000000000AAA``);
* ``[files.<key>]``: which input files are which export: ``patterns`` (case-insensitive
  globs on the file name) and/or ``header`` (columns the file must have, so a file is
  recognised whatever its name), plus ``encodings`` / ``delimiter`` pins (by default the
  delimiter is detected from the header line: ``crm_data.mappings.sources``);
* ``[[tables]]``: one block per canonical table fed from one file (``from``), with a
  column spec per canonical column, or static ``rows``. A block may also feed the
  settings table ``crm_insights_meta`` (``key`` / ``value`` rows, e.g. the reporting
  currency: ``crm_data.currency``).

A column spec (a source column name, or a table of steps: ``column`` / ``template`` /
``value``, value maps, types, formats, time zones, offsets, ``reciprocal``, conditions, id
prefixes; or a LIST of such specs: the first non-blank) is evaluated by
``crm_data.mappings.columns``; ``estimate`` asks the importer to fill blanks
(``crm_data.estimates``); docs/mappings.md lists every key.

The named derivation steps, for what a column spec alone cannot say:

* ``where`` / ``where_not``: keep only the source rows whose column is (not) in a list (a
  ``where_not`` column absent from the file drops nothing, with a note);
* ``unpivot = {columns = "<regex>", name = "...", value = "..."}``: one row per matching
  source column and non-blank cell, with two extra source columns: ``name`` (the regex's
  first group, else the column name) and ``value`` (the cell). This turns HubSpot's
  "Date entered <stage>" columns into stage-history rows;
* ``group_by = [canonical columns]``: one row per distinct key; every other column takes
  its ``agg`` (first non-blank by default, or last, min, max, sum, count). This derives
  accounts from the distinct customers of an order list;
* ``drop_rows_without = [canonical columns]``: drop rows where those came out blank (e.g.
  a stage never entered, an unanswered call without rating);
* ``rows = [{...}, ...]``: static rows (e.g. the pipeline stages of a vendor's default
  pipeline), with no ``from``.

Values that do not convert (a date not matching its format, text in a number) are passed
on unchanged, so validation reports them with file, line and column. Every output row
keeps the line of the original file its record started on (a grouped row: its first).
Timestamps come out as naive UTC text (``YYYY-MM-DD HH:MM:SS``); a date column's format is
detected from the whole column (``crm_data.mappings.dates``) unless the spec pins it.

What reading detected or repaired (an encoding fallback, a delimiter, a date format, a
skipped file) goes to a ``ReadReport`` as warnings; what would lose or corrupt data (a
record of the wrong width, an undecidable date order, a file named like an export but
lacking its columns) is an error: every error found is listed in one ``MappingError``
(``crm_data.mappings.report``).
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.mappings.columns import (
    BASE_KEYS,
    FLAG_KEYS,
    SPEC_KEYS,
    STAGE_STATUSES,
    TYPES,
    Context,
    Invalid,
    as_list,
    check_keys,
    condition,
    evaluate,
    is_blank,
    omap,
    resolve_column,
    stage_key,
    target_table,
    text_frame,
    to_text,
)
from crm_data.mappings.report import MappingError, ReadReport
from crm_data.mappings.sources import (
    DEFAULT_ENCODINGS,
    EMPTY,
    Head,
    SourceFrame,
    expand_paths,
    peek,
    read_text_table,
)

if TYPE_CHECKING:
    from crm_data.importing import TableInput

BLOCK_KEYS = frozenset(
    {
        "table", "from", "columns", "rows", "where", "where_not", "unpivot", "group_by", "drop_rows_without",
        "stub", "skipped",
    }
)  # fmt: skip
FILE_KEYS = frozenset({"patterns", "header", "encodings", "delimiter", "required", "description"})
MAPPING_KEYS = frozenset(
    {"name", "description", "timezone", "encodings", "ignore", "documentation", "blank_values"}
)
AGGREGATES = frozenset({"first", "last", "min", "max", "sum", "count"})


@dataclass
class FileSpec:
    """How to recognise and read one kind of export file."""

    key: str
    patterns: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    encodings: list[str] | None = None
    delimiter: str | None = None
    required: bool = False


@dataclass
class TableBlock:
    """One ``[[tables]]`` block: rows of one canonical table from one source file (or static)."""

    table: str
    source: str | None
    columns: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]] | None = None
    where: dict[str, list[Any]] = field(default_factory=dict)
    where_not: dict[str, list[Any]] = field(default_factory=dict)
    unpivot: dict[str, str] | None = None
    group_by: list[str] = field(default_factory=list)
    drop_rows_without: list[str] = field(default_factory=list)
    label: str = ""
    #: Rows only for keys no other block of the table (nor the database) holds; the text
    #: is the warning that counts them (e.g. accounts of deals missing from the import).
    stub: str | None = None
    #: Warning counting the source rows ``where`` / ``where_not`` left out.
    skipped: str | None = None


@dataclass
class Produced:
    """A canonical table's text frame from one source, with original line numbers;
    ``estimated``: columns whose blank values the importer estimates (``estimate``)."""

    table: str
    frame: pd.DataFrame
    source: str
    lines: list[int] | None
    estimated: tuple[str, ...] = ()
    stub: str | None = None


@dataclass
class Matched:
    """Which input file is which export (``files`` key -> paths), and what fits none.

    ``problems``: ``(path, why, level)`` for the files that fit no entry: ``"error"`` for a
    file given by name, or named like an export but lacking its columns (its data would be
    lost); ``"warning"`` for an empty file, or a file in a given folder that is no export of
    this mapping (skipped). ``ignored``: folder files matching the mapping's ``ignore``.
    ``by_columns``: folder files whose NAME fits no entry, read as the export whose columns
    they have (said in a warning: another object's file with those columns would be read
    as this export).
    """

    files: dict[str, list[Path]]
    problems: list[tuple[Path, str, str]]
    ignored: list[Path]
    by_columns: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class Mapping:
    """A parsed mapping; ``read(paths)`` turns export files into ``TableInput`` objects."""

    name: str
    description: str
    timezone: str
    encodings: list[str]
    files: dict[str, FileSpec]
    blocks: list[TableBlock]
    ignore: list[str] = field(default_factory=list)
    blank_values: list[str] = field(default_factory=list)
    path: Path | None = None

    @property
    def known_stages(self) -> dict[str, str]:
        """The stages this mapping places itself, from its static ``pipeline_stages`` rows:
        ``stage_key(label)`` -> won / lost / open."""
        known: dict[str, str] = {}
        for block in self.blocks:
            if block.table != "pipeline_stages" or block.rows is None:
                continue
            for row in block.rows:
                status = "won" if row.get("is_won") else "lost" if row.get("is_closed") else "open"
                known[stage_key(row["stage"])] = status
        return known

    # ---- parsing -------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> Mapping:
        """Parse a TOML mapping file."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise MappingError(f"{path}: not valid TOML: {error}") from None
        mapping = cls.from_dict(data, default_name=path.stem)
        mapping.path = path
        return mapping

    @classmethod
    def from_dict(cls, data: dict[str, Any], default_name: str = "mapping") -> Mapping:
        """Build and check a mapping from parsed TOML."""
        check_keys(data, {"mapping", "files", "tables"}, "top level")
        head = data.get("mapping", {})
        check_keys(head, MAPPING_KEYS, "[mapping]")
        files = {}
        for key, raw in data.get("files", {}).items():
            check_keys(raw, FILE_KEYS, f"[files.{key}]")
            files[key] = FileSpec(
                key=key,
                patterns=as_list(raw.get("patterns")),
                header=as_list(raw.get("header")),
                encodings=as_list(raw["encodings"]) if "encodings" in raw else None,
                delimiter=raw.get("delimiter"),
                required=bool(raw.get("required", False)),
            )
            if not files[key].patterns and not files[key].header:
                raise MappingError(f"[files.{key}]: give patterns or header (or both)")
        blocks = [_parse_block(i, raw, files) for i, raw in enumerate(data.get("tables", []), start=1)]
        if not blocks:
            raise MappingError("the mapping has no [[tables]] blocks")
        return cls(
            name=str(head.get("name", default_name)),
            description=str(head.get("description", "")),
            timezone=str(head.get("timezone", "UTC")),
            encodings=as_list(head.get("encodings")) or list(DEFAULT_ENCODINGS),
            files=files,
            blocks=blocks,
            ignore=as_list(head.get("ignore")),
            blank_values=[str(v) for v in as_list(head.get("blank_values"))],
        )

    # ---- matching ------------------------------------------------------------------
    def match(self, paths: Sequence[str | Path]) -> Matched:
        """Assign every input file to a ``[files]`` entry (by name pattern, else by header)."""
        explicit, found = expand_paths(list(paths))
        result = Matched(files={}, problems=[], ignored=[])
        for path in [*explicit, *found]:
            if path in found and _matches(path.name, self.ignore):
                result.ignored.append(path)  # a folder file the mapping says is not data
                continue
            key, why, named = self._identify(path)
            if key is not None:
                result.files.setdefault(key, []).append(path)
                if path in found and not named:
                    result.by_columns.append((path, key))
            elif why == EMPTY:
                result.problems.append((path, why, "warning"))
            else:
                serious = named or path not in found
                result.problems.append((path, why, "error" if serious else "warning"))
        return result

    def _identify(self, path: Path) -> tuple[str | None, str, bool]:
        """``(key, why, named)``: the ``[files]`` entry of ``path``, or ``None`` and why none
        fits; ``named``: the file's name fits an entry's patterns (the one found, or one
        whose columns it lacks)."""
        heads: dict[tuple[str | None, tuple[str, ...]], Head] = {}

        def head(spec: FileSpec | None) -> Head:
            pins = (
                (spec.delimiter, tuple(spec.encodings or self.encodings))
                if spec
                else (None, tuple(self.encodings))
            )
            if pins not in heads:
                heads[pins] = peek(path, list(pins[1]), pins[0])
            return heads[pins]

        named_specs = [spec for spec in self.files.values() if _matches(path.name, spec.patterns)]
        if head(None).problem:
            return None, head(None).problem, bool(named_specs)
        best: tuple[int, int, str] | None = None
        lacking: list[tuple[FileSpec, list[str], Head]] = []
        for spec in self.files.values():
            by_name = spec in named_specs
            if spec.header:
                columns = head(spec)
                have = {h.casefold() for h in columns.header}
                missing = [h for h in spec.header if h.strip().casefold() not in have]
                if missing:
                    lacking.append((spec, missing, columns))
                    continue
            elif not by_name:
                continue
            rank = (1 if by_name else 0, len(spec.header), spec.key)
            if best is None or rank[:2] > best[:2]:
                best = rank
        if best:
            return best[2], "", best[0] == 1
        for spec, missing, columns in lacking:
            if spec in named_specs:
                why = (
                    f"named like the {spec.key} export of the {self.name} mapping ({' or '.join(spec.patterns)}) "
                    "but the column(s) "
                    f"{', '.join(missing)} are missing; {_columns_of(columns)}"
                )
                return None, why, True
        expected = "; ".join(_describe(spec) for spec in self.files.values())
        why = f"not an export this mapping ({self.name}) knows: {_columns_of(head(None))}"
        close = [
            (len(spec.header) - len(missing), spec, missing)
            for spec, missing, _ in lacking
            if missing != spec.header
        ]
        if close:
            _, spec, missing = max(close, key=lambda c: c[0])
            why += f"; the closest is {spec.key}, which also needs the column(s) {', '.join(missing)}"
        return None, f"{why}. Expected: {expected}", False

    # ---- reading -------------------------------------------------------------------
    def read(
        self,
        paths: Sequence[str | Path],
        notes: list[str] | None = None,
        report: ReadReport | None = None,
        *,
        stages: dict[str, str] | None = None,
        database: sa.Engine | sa.Connection | None = None,
    ) -> list[TableInput]:
        """Read export files (or folders) into ``TableInput`` objects, parents first.

        ``report`` (if given) collects the warnings (see ``crm_data.mappings.report``) and
        the notes; ``notes`` (if given) the notes alone: folder files the mapping ignores,
        optional columns absent from a file. ``stages``: the user's stage assignments
        (label -> won / lost / open, for ``stage`` specs). ``database``: the import's
        target, so that ``stub`` blocks leave out the records it already holds. Raises
        ``MappingError`` listing every error (a given file that is no export of this
        mapping, a record of the wrong width, an undecidable date format, a required export
        or column missing, ...).
        """
        from crm_data.importing import TableInput

        return [
            TableInput(table=p.table, frame=p.frame, source=p.source, lines=p.lines, estimated=p.estimated)
            for p in self.produce(paths, notes, report, stages=stages, database=database)
        ]

    def produce(
        self,
        paths: Sequence[str | Path],
        notes: list[str] | None = None,
        report: ReadReport | None = None,
        *,
        stages: dict[str, str] | None = None,
        database: sa.Engine | sa.Connection | None = None,
    ) -> list[Produced]:
        """Like ``read`` but returns plain ``Produced`` records (no importer needed)."""
        report = report if report is not None else ReadReport()
        try:
            return self._produce(paths, report, check_stage_map(stages or {}), database)
        finally:
            if notes is not None:
                notes.extend(n for n in report.notes if n not in notes)

    def _produce(
        self,
        paths: Sequence[str | Path],
        report: ReadReport,
        stages: dict[str, str],
        database: sa.Engine | sa.Connection | None,
    ) -> list[Produced]:
        matched = self.match(paths)
        for path in matched.ignored:
            report.note(f"{path}: skipped (the mapping {self.name} ignores files named like this)")
        for path, key in matched.by_columns:
            columns = ", ".join(self.files[key].header)
            report.warn(
                path, f"read as the {key} export: recognised by its columns ({columns}), not by its name"
            )
        for path, why, level in matched.problems:
            if level == "error":
                report.error(path, None, "", why)
            else:
                report.warn(path, f"skipped: {why}")
        if not matched.files:
            report.raise_errors()
            expected = "; ".join(_describe(spec) for spec in self.files.values())
            skipped = "; ".join(
                f"{p.name} ({why.split('. Expected: ')[0]})" for p, why, _ in matched.problems
            )
            skipped = "; ".join(filter(None, [skipped, ", ".join(p.name for p in matched.ignored)])) or "none"
            raise MappingError(
                f"no {self.name} export among the given files (skipped: {skipped}). Expected: {expected}",
                report.errors,
            )
        missing = [k for k, spec in self.files.items() if spec.required and k not in matched.files]
        if missing:
            report.error(
                "", None, "", "missing export(s): " + "; ".join(_describe(self.files[k]) for k in missing)
            )
        frames: dict[Path, SourceFrame] = {}
        for block in self.blocks:
            for path in matched.files.get(block.source or "", []):
                if path not in frames:
                    spec = self.files[block.source or ""]
                    frames[path] = read_text_table(
                        path, spec.encodings or self.encodings, spec.delimiter, report
                    )
                    if self.blank_values:  # e.g. Salesforce's empty-reference id 000000000000000AAA
                        frame = frames[path].frame
                        frames[path].frame = frame.mask(frame.isin(self.blank_values), None)
        report.raise_errors()
        produced: list[Produced] = []
        known = self.known_stages
        for block in self.blocks:
            if block.rows is not None:
                produced.append(_static_rows(block, self.name))
                continue
            assert block.source is not None
            for path in matched.files.get(block.source, []):
                item = self._run_block(block, frames[path], report, stages, known)
                if item is not None:
                    produced.append(item)
        report.raise_errors()
        produced = _resolve_stubs(produced, database, report)
        order = {name: i for i, name in enumerate(schema.TABLE_NAMES)}
        produced.sort(key=lambda p: order.get(p.table, -1))  # settings (crm_insights_meta) first
        return _merge_per_table(produced)

    def _run_block(
        self,
        block: TableBlock,
        source: SourceFrame,
        report: ReadReport,
        stages: dict[str, str],
        known_stages: dict[str, str],
    ) -> Produced | None:
        src = source.frame.copy()
        src["__line__"] = source.lines
        before = src
        src = _filter_rows(src, block.where, keep=True, where=source.path, report=report)
        src = _filter_rows(src, block.where_not, keep=False, where=source.path, report=report)
        if block.skipped and len(src) < len(before):
            _report_skipped(block, before, src, source.path, report)
        if block.unpivot:
            if block.unpivot.get("absent") and not _unpivot_columns(src, block.unpivot):
                report.warn(source.path, f"{len(src):,d} {block.unpivot['absent']}")
                return None
            src = _unpivot(src, block.unpivot, source.path)
        src = src.reset_index(drop=True)
        if block.stub and not _has_key_column(block, src):
            return None  # e.g. a deals export without association columns: no accounts to add
        context = Context(
            src=src,
            path=source.path,
            table=block.table,
            timezone=self.timezone,
            notes=report.notes,
            report=report,
            block=block.label,
            stage_map=stages,
            known_stages=known_stages,
        )
        out = pd.DataFrame({col: evaluate(spec, context, col) for col, spec in block.columns.items()})
        out = out.reindex(src.index)
        for col, spec in block.columns.items():
            for other, wanted in spec.get("when_mapped", {}).items():
                out[col] = out[col].where(condition(out[other], wanted), None)
        lines = src["__line__"]
        if block.drop_rows_without:
            keep = pd.Series(True, index=out.index)
            for col in block.drop_rows_without:
                keep &= omap(out[col], lambda v: not is_blank(v)).astype(bool)
            out, lines = out[keep], lines[keep]
        if block.group_by:
            aggs = {col: block.columns[col].get("agg", "first") for col in out.columns}
            out, lines = _group(out, lines, block.group_by, aggs)
        text = text_frame(out)
        estimated = tuple(col for col, spec in block.columns.items() if "estimate" in spec)
        return Produced(
            block.table, text, str(source.path), [int(x) for x in lines], stub=block.stub, estimated=estimated
        )


# ---- parsing helpers -----------------------------------------------------------------


def _parse_block(index: int, raw: dict[str, Any], files: dict[str, FileSpec]) -> TableBlock:
    where = f"[[tables]] #{index}"
    check_keys(raw, BLOCK_KEYS, where)
    table_name = raw.get("table")
    table = target_table(str(table_name))
    if table is None:
        raise MappingError(f"{where}: unknown canonical table {table_name!r}")
    where = f"[[tables]] #{index} ({table_name})"
    if "rows" in raw:
        rows = raw["rows"]
        for row in rows:
            for col in row:
                if col not in table.c:
                    raise MappingError(f"{where}: {table_name} has no column {col!r}")
        return TableBlock(table=table_name, source=None, columns={}, rows=rows)
    source = raw.get("from")
    if source not in files:
        raise MappingError(f"{where}: 'from' must name a [files] entry, got {source!r}")
    columns: dict[str, dict[str, Any]] = {}
    for col, spec in raw.get("columns", {}).items():
        if col not in table.c:
            raise MappingError(f"{where}: {table_name} has no column {col!r}")
        if isinstance(spec, list):  # the first non-blank of several specs
            if not spec:
                raise MappingError(f"{where} column {col}: an empty list of specs")
            parts = [_check_spec(part, f"{where} column {col}") for part in spec]
            columns[col] = {"first_of": parts}
        else:
            columns[col] = _check_spec(spec, f"{where} column {col}")
        _check_estimate(columns[col], where, str(table_name), col)
    for col, spec in columns.items():
        for other in spec.get("when_mapped", {}):
            if other not in columns or other == col:
                raise MappingError(
                    f"{where} column {col}: when_mapped names {other!r}, not another mapped column"
                )
    missing = [c.name for c in table.c if not c.nullable and c.name not in columns]
    if missing:
        raise MappingError(f"{where}: required column(s) {', '.join(missing)} not mapped")
    for key in ("group_by", "drop_rows_without"):
        for col in as_list(raw.get(key)):
            if col not in columns:
                raise MappingError(f"{where}: {key} names {col!r}, which is not a mapped column")
    unpivot = raw.get("unpivot")
    if unpivot is not None:
        check_keys(unpivot, {"columns", "name", "value", "absent"}, f"{where} unpivot")
        if not all(k in unpivot for k in ("columns", "name", "value")):
            raise MappingError(f"{where} unpivot: give columns (a regex), name and value")
    if "stub" in raw and (not isinstance(raw["stub"], str) or len(table.primary_key.columns) != 1):
        raise MappingError(f"{where}: stub is the text of its warning, for a table with a one-column key")
    return TableBlock(
        table=table_name,
        source=source,
        columns=columns,
        where={k: _condition_values(v) for k, v in raw.get("where", {}).items()},
        where_not={k: _condition_values(v) for k, v in raw.get("where_not", {}).items()},
        unpivot=unpivot,
        group_by=as_list(raw.get("group_by")),
        drop_rows_without=as_list(raw.get("drop_rows_without")),
        label=where,
        stub=raw.get("stub"),
        skipped=raw.get("skipped"),
    )


def _check_estimate(spec: dict[str, Any], where: str, table_name: str, col: str) -> None:
    """``estimate`` only where the importer knows how (``crm_data.estimates.ESTIMATES``)."""
    if "estimate" not in spec:
        return
    from crm_data.estimates import ESTIMATES  # what the importer can estimate

    if (table_name, col) not in ESTIMATES or spec["estimate"] != ESTIMATES[(table_name, col)]:
        known = "; ".join(f'{t}.{c}: estimate = "{how}"' for (t, c), how in ESTIMATES.items())
        raise MappingError(f"{where} column {col}: the importer estimates only {known}")


def _check_spec(raw: object, where: str, fallback: bool = False) -> dict[str, Any]:
    """A column spec as a dict, checked (``fallback``: the spec of a ``fallback`` key, which
    may also hold ``warn``)."""
    spec = {"column": raw} if isinstance(raw, str) else dict(raw) if isinstance(raw, dict) else raw
    check_keys(spec, SPEC_KEYS | {"warn"} if fallback else SPEC_KEYS, where)
    assert isinstance(spec, dict)
    if sum(k in spec for k in BASE_KEYS) != 1:
        raise MappingError(f"{where}: give exactly one of {', '.join(BASE_KEYS)}")
    if spec.get("type", "text") not in TYPES:
        raise MappingError(f"{where}: type must be one of {', '.join(sorted(TYPES))}")
    if "day_first" in spec and (
        not isinstance(spec["day_first"], bool) or "auto" not in (as_list(spec.get("format")) or ["auto"])
    ):
        raise MappingError(f'{where}: day_first is true or false, for format = "auto" (the default)')
    if spec.get("agg", "first") not in AGGREGATES:
        raise MappingError(f"{where}: agg must be one of {', '.join(sorted(AGGREGATES))}")
    if "flags" in spec:
        if "stage" not in spec:
            raise MappingError(f"{where}: flags go with stage")
        check_keys(spec["flags"], FLAG_KEYS, f"{where} flags")
    if "fallback" in spec:
        spec["fallback"] = _check_spec(spec["fallback"], f"{where} fallback", fallback=True)
    return spec


def read_stage_file(path: str | Path) -> dict[str, str]:
    """A stage file: the user's stage assignments, label -> won / lost / open::

        [stages]
        "Contract Signed" = "won"
        "Closed: abandoned" = "lost"

    Raises ``MappingError`` for a file that is not such TOML or a status not won, lost, open."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise MappingError(f"{path}: cannot be read ({error.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise MappingError(f"{path}: not valid TOML: {error}") from None
    stages = data.get("stages")
    if set(data) != {"stages"} or not isinstance(stages, dict):
        raise MappingError(
            f'{path}: a stage file holds one [stages] table: "<stage label>" = "won" | "lost" | "open"'
        )
    try:
        check_stage_map(stages)
    except MappingError as error:
        raise MappingError(f"{path}: {error}") from None
    return {str(label): str(status).strip().lower() for label, status in stages.items()}


def check_stage_map(stages: dict[str, str]) -> dict[str, str]:
    """The user's stage assignments keyed by ``stage_key``; a status other than won, lost or
    open is a ``MappingError``."""
    checked: dict[str, str] = {}
    for label, status in stages.items():
        value = str(status).strip().casefold()
        if value not in STAGE_STATUSES:
            raise MappingError(f"stage {label!r}: {status!r} is not one of {', '.join(STAGE_STATUSES)}")
        checked[stage_key(label)] = value
    return checked


def _condition_values(values: object) -> list[Any]:
    """Condition values as text, except TOML booleans (matched by meaning: 1/0, yes/no...)."""
    return [v if isinstance(v, bool) else str(v) for v in as_list(values)]


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name.lower(), p.lower()) for p in patterns)


def _columns_of(head: Head) -> str:
    shown = ", ".join(head.header[:8]) + (", …" if len(head.header) > 8 else "")
    if len(head.header) == 1 and head.delimiter == ",":
        return f"its header has a single column ({shown}): is it separated by something else?"
    return f"its columns: {shown}"


def _describe(spec: FileSpec) -> str:
    parts = []
    if spec.patterns:
        parts.append(" or ".join(spec.patterns))
    if spec.header:
        parts.append("a file with columns " + ", ".join(spec.header))
    return f"{spec.key} ({' / '.join(parts)})"


# ---- row-level derivations -----------------------------------------------------------


def _filter_rows(
    src: pd.DataFrame, conditions: dict[str, list[Any]], keep: bool, where: Path, report: ReadReport
) -> pd.DataFrame:
    for name, values in conditions.items():
        column = resolve_column(src.columns, name)
        if column is None and not keep:  # no such column: no row has one of the values
            report.note(f"{where}: no column {name!r}; where_not drops no rows for it")
            continue
        if column is None:
            raise MappingError(f"{where}: column {name!r} is missing (used by where)")

        def not_boolean(position: int, text: str, column: str = column, frame: pd.DataFrame = src) -> None:
            line = int(frame["__line__"].iloc[position])
            report.error(where, line, column, f"{text!r} is not a yes/no value (true/false, yes/no, 1/0)")

        hit = condition(src[column], values, not_boolean)
        src = src[hit if keep else ~hit]
    return src


def _has_key_column(block: TableBlock, src: pd.DataFrame) -> bool:
    """False when the source has none of the columns the block's key is read from."""
    key = next(iter(schema.metadata.tables[block.table].primary_key.columns)).name
    spec = block.columns.get(key, {})
    if "column" not in spec:
        return True
    return any(resolve_column(src.columns, str(name)) is not None for name in as_list(spec["column"]))


def _unpivot_columns(src: pd.DataFrame, spec: dict[str, str]) -> list[str]:
    pattern = re.compile(spec["columns"])
    return [c for c in src.columns if c != "__line__" and pattern.search(c)]


def _report_skipped(
    block: TableBlock, before: pd.DataFrame, after: pd.DataFrame, path: Path, report: ReadReport
) -> None:
    dropped = before.loc[~before.index.isin(after.index)]
    names = [resolve_column(before.columns, c) for c in dict.fromkeys([*block.where, *block.where_not])]
    shown = [c for c in names if c is not None]
    examples = [
        (int(dropped["__line__"].iat[i]), ", ".join(f"{c} = {dropped[c].iat[i]}" for c in shown))
        for i in range(min(len(dropped), 3))
    ]
    report.warn(path, f"{len(dropped):,d} {block.skipped}", examples=examples, count=len(dropped))


def _resolve_stubs(
    produced: list[Produced], database: sa.Engine | sa.Connection | None, report: ReadReport
) -> list[Produced]:
    """Keep the rows of ``stub`` blocks whose key no other block of their table produced and
    the database does not hold (the first of equal keys); warn how many remain, per file."""
    result: list[Produced] = []
    for table_name in dict.fromkeys(p.table for p in produced):
        parts = [p for p in produced if p.table == table_name]
        stubs = [p for p in parts if p.stub]
        result.extend(p for p in parts if not p.stub)
        if not stubs:
            continue
        key = next(iter(schema.metadata.tables[table_name].primary_key.columns)).name
        given = {to_text(v) for p in parts if not p.stub for v in p.frame[key]}
        candidates = {to_text(v) for p in stubs for v in p.frame[key]} - given - {None}
        given |= _in_database(database, schema.metadata.tables[table_name], key, candidates)
        for part in stubs:
            keys = part.frame[key].map(to_text)
            keep = (~keys.isin(given) & keys.notna() & ~keys.duplicated()).to_numpy()
            given |= set(keys[keep])
            frame = part.frame[keep].reset_index(drop=True)
            lines = [line for line, kept in zip(part.lines or [], keep, strict=True) if kept]
            if frame.empty:
                continue
            shown = [c for c in ("name",) if c in frame.columns]
            examples = [
                (line, " ".join(str(frame[c].iat[i]) for c in [key, *shown]))
                for i, line in enumerate(lines[:3])
            ]
            report.warn(part.source, f"{len(frame):,d} {part.stub}", examples=examples, count=len(frame))
            result.append(Produced(part.table, frame, part.source, lines or None))
    return result


def _in_database(
    database: sa.Engine | sa.Connection | None, table: sa.Table, key: str, values: set[str]
) -> set[str]:
    """Which of ``values`` the database holds in ``table.key`` (none without a database)."""
    if database is None or not values:
        return set()
    connection = database.connect() if isinstance(database, sa.Engine) else nullcontext(database)
    with connection as conn:
        if not sa.inspect(conn).has_table(table.name):
            return set()
        items = sorted(values)
        found: set[str] = set()
        for start in range(0, len(items), 1000):
            chunk = items[start : start + 1000]
            found.update(
                str(r[0]) for r in conn.execute(sa.select(table.c[key]).where(table.c[key].in_(chunk)))
            )
        return found


def _unpivot(src: pd.DataFrame, spec: dict[str, str], where: Path) -> pd.DataFrame:
    pattern = re.compile(spec["columns"])
    parts = []
    for column in src.columns:
        found = pattern.search(column)
        if not found or column == "__line__":
            continue
        label = found.group(1) if pattern.groups else column
        part = src[src[column].notna()].copy()
        part[spec["name"]] = label
        part[spec["value"]] = part[column]
        parts.append(part)
    if not parts:
        raise MappingError(f"{where}: no column matches the unpivot pattern {spec['columns']!r}")
    merged = pd.concat(parts)
    merged["__order__"] = range(len(merged))
    return merged.sort_values(["__line__", "__order__"], kind="stable").drop(columns="__order__")


def _group(
    out: pd.DataFrame, lines: pd.Series, keys: list[str], aggs: dict[str, str]
) -> tuple[pd.DataFrame, pd.Series]:
    has_key = (
        pd.concat([omap(out[k], lambda v: not is_blank(v)) for k in keys], axis=1).astype(bool).all(axis=1)
    )
    keyed, loose = out[has_key], out[~has_key]
    if keyed.empty:
        return out, lines
    key_frame = pd.DataFrame({k: omap(keyed[k], to_text) for k in keys})
    groups = key_frame.groupby(keys, sort=False, dropna=False).indices
    rows, first_lines = [], []
    for positions in groups.values():
        part = keyed.iloc[positions]
        rows.append({col: _aggregate(part[col].tolist(), aggs[col]) for col in out.columns})
        first_lines.append(int(lines[keyed.index[positions]].min()))
    grouped = pd.DataFrame(rows, columns=out.columns)
    merged = pd.concat([grouped, loose.reset_index(drop=True)], ignore_index=True)
    all_lines = pd.Series(first_lines + [int(x) for x in lines[loose.index]])
    return merged, all_lines


def _aggregate(values: list[object], how: str) -> object:
    bad = [v for v in values if isinstance(v, Invalid)]
    if bad:
        return bad[0]
    present = [v for v in values if not is_blank(v)]
    if how == "count":
        return len(present)
    if not present:
        return None
    if how == "first":
        return present[0]
    if how == "last":
        return present[-1]
    if how == "min":
        return min(present)
    if how == "max":
        return max(present)
    return sum(present)  # type: ignore[arg-type]


def _merge_per_table(produced: list[Produced]) -> list[Produced]:
    """One input per table (the importer takes one): blocks of a table are concatenated.

    Rows repeated verbatim (same values in every column) are dropped; conflicting rows
    with the same key are kept for validation to report. The source names every file
    involved; line numbers stay those of each row's own file.
    """
    merged: list[Produced] = []
    for table in dict.fromkeys(p.table for p in produced):
        parts = [p for p in produced if p.table == table]
        if len(parts) == 1:
            merged.append(parts[0])
            continue
        frame = pd.concat([p.frame for p in parts], ignore_index=True).astype(object)
        frame = frame.where(frame.notna(), None)
        lines: list[int] | None = None
        if all(p.lines is not None for p in parts):
            lines = [line for p in parts for line in (p.lines or [])]
        keep = ~frame.map(to_text).duplicated(keep="first").to_numpy()
        frame = frame[keep].reset_index(drop=True)
        if lines is not None:
            lines = [line for line, kept in zip(lines, keep, strict=True) if kept]
        source = " + ".join(dict.fromkeys(p.source for p in parts))
        estimated = tuple(dict.fromkeys(col for p in parts for col in p.estimated))
        merged.append(Produced(table, frame, source, lines, estimated))
    return merged


def _static_rows(block: TableBlock, mapping_name: str) -> Produced:
    table = target_table(block.table)
    assert table is not None
    frame = pd.DataFrame(
        [
            {col: to_text(row.get(col)) for col in [c.name for c in table.c] if col in row}
            for row in block.rows or []
        ]
    )
    return Produced(block.table, text_frame(frame), f"mapping {mapping_name}", None)
