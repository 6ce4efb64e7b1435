"""Column specs of a mapping: how one canonical column's values come out of a source file.

A spec (see ``crm_data.mappings.engine`` and docs/mappings.md) is evaluated on the text
frame of one export file, step by step: base value (``column`` / ``template`` / ``value``),
``split``, ``case``, ``map`` / ``else``, ``default``, ``type`` conversion (numbers, booleans,
dates and times in a source time zone -> naive UTC), ``add`` / ``subtract`` offsets,
``scale``, ``reciprocal`` (1 / x: a rate quoted the other way round), ``bins``, ``when`` /
``unless``, ``prefix`` / ``suffix``; a list of specs gives, per row, the first that is not
blank (``{"first_of": [...]}`` once parsed). Values are Python
objects (``None`` = blank); a value that does not convert becomes ``Invalid(raw text)``,
written out unchanged so that validation reports it with its file, line and column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.mappings.dates import AutoDates, read_auto
from crm_data.mappings.report import MappingError, ReadReport

SPEC_KEYS = frozenset(
    {
        "column", "template", "value", "split", "map", "else", "default", "type", "format", "timezone",
        "decimal", "thousands", "add", "case", "subtract", "scale", "bins", "when", "unless", "prefix", "suffix",
        "agg", "day_first", "stage", "flags", "fallback", "when_mapped", "reciprocal", "estimate",
    }
)  # fmt: skip
#: The base of a spec: exactly one of these.
BASE_KEYS = ("column", "template", "value", "stage")
#: ``flags`` of a ``stage`` spec: the vendor's own won / lost / closed yes-no columns.
FLAG_KEYS = frozenset({"won", "lost", "closed"})
#: Deal statuses a stage can be placed as.
STAGE_STATUSES = ("won", "lost", "open")
_WORD = re.compile(r"[^\W\d_]+")
TYPES = frozenset({"text", "number", "integer", "boolean", "datetime", "date"})
UNITS = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0, "days": 86400.0}
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "x", "t"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "f"})
_OFFSET_RE = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_TEMPLATE_RE = re.compile(r"\{([^{}]+)\}")
_TIME_DIRECTIVE = re.compile(r"%[HIMSpXcTrRfzZ]")


@dataclass(frozen=True)
class Invalid:
    """A value that did not convert; written out as its original text for validation to report."""

    raw: str


def check_keys(raw: object, allowed: frozenset[str] | set[str], where: str) -> None:
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: expected a table, got {raw!r}")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise MappingError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def as_list(value: object) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def fold(value: object) -> str:
    return str(value).strip().casefold()


# ---- column specs --------------------------------------------------------------------


def target_table(name: str) -> sa.Table | None:
    """The table a ``[[tables]]`` block may feed: a canonical table, or the settings table
    ``crm_insights_meta`` (key / value rows, e.g. the reporting currency), else None."""
    if name in schema.metadata.tables:
        return schema.metadata.tables[name]
    from crm_data.importing import meta  # the importer owns its settings table

    return meta if name == meta.name else None


def stage_key(label: object) -> str:
    """How stage labels are compared: case and blanks ignored (``"Closed  Lost "`` =
    ``"closed lost"``)."""
    return " ".join(str(label).split()).casefold()


@dataclass
class Context:
    src: pd.DataFrame
    path: Path
    table: str
    timezone: str
    notes: list[str]
    report: ReadReport | None = None
    block: str = ""
    #: The user's stage assignments (``stage_key(label)`` -> won / lost / open).
    stage_map: dict[str, str] = field(default_factory=dict)
    #: Stages the mapping itself places (its static ``pipeline_stages`` rows).
    known_stages: dict[str, str] = field(default_factory=dict)
    #: True while a spec with a ``fallback`` is evaluated: its missing columns are blanks.
    lenient: bool = False

    def column(self, name: str, target: str, optional: bool = False) -> pd.Series:
        """A source column (any case), or blanks (plus a note) when an optional one is absent
        (``optional``: also for a required target, e.g. one the importer estimates)."""
        found = resolve_column(self.src.columns, name)
        if found is not None:
            return self.src[found]
        table = target_table(self.table)
        assert table is not None
        column = table.c[target]
        blanks = pd.Series([None] * len(self.src), index=self.src.index, dtype=object)
        if (not column.nullable or column.primary_key) and not (optional or self.lenient):
            self.error(None, "", f"column {name!r} is missing (needed for {self.table}.{target})")
            return blanks
        note = f"{self.path}: no column {name!r}; {self.table}.{target} left blank"
        if not self.lenient and note not in self.notes:
            self.notes.append(note)
        return blanks

    def line(self, position: int) -> int | None:
        """The file line of the source row at ``position``."""
        if "__line__" not in self.src.columns:
            return None
        return int(self.src["__line__"].iloc[position])

    def error(self, line: int | None, column: str, reason: str) -> None:
        """Record an error (raised with the others at the end of the read), or raise it now."""
        if self.report is None:
            where = f"{self.path}:{line}" if line is not None else str(self.path)
            raise MappingError(f"{where}: {f'column {column!r}: ' if column else ''}{reason}")
        self.report.error(self.path, line, column, reason)


def evaluate(spec: dict[str, Any], ctx: Context, target: str) -> pd.Series:
    """The values of one canonical column (typed Python objects, ``None`` for blank).
    ``{"first_of": [spec, ...]}`` (a list of specs in the mapping): per row, the first of
    them that is not blank."""
    if "first_of" in spec:
        parts = [evaluate(part, ctx, target) for part in spec["first_of"]]
        values = parts[0]
        for part in parts[1:]:
            values = values.where(~omap(values, is_blank).astype(bool), part)
        return values.astype(object)
    if "fallback" not in spec:
        return _evaluate(spec, ctx, target)
    lenient, ctx.lenient = ctx.lenient, True
    try:
        values = _evaluate(spec, ctx, target)
    finally:
        ctx.lenient = lenient
    return _fall_back(values, spec["fallback"], ctx, target)


def _fall_back(values: pd.Series, fallback: object, ctx: Context, target: str) -> pd.Series:
    """``fallback`` (a spec) for the rows where ``values`` came out blank; its ``warn`` text
    reports how many it filled, with examples."""
    spec = {"column": fallback} if isinstance(fallback, str) else dict(fallback)  # type: ignore[arg-type]
    blank = omap(values, is_blank).astype(bool)
    if not blank.any():
        return values
    filled = evaluate(spec, ctx, target)
    used = blank & ~omap(filled, is_blank).astype(bool)
    values = values.where(~used, filled)
    if spec.get("warn") and used.any() and ctx.report is not None:
        positions = [i for i, hit in enumerate(used) if hit]
        examples = [(ctx.line(i), f"{to_text(values.iloc[i])}") for i in positions[:3]]
        message = f"{len(positions):,d} {spec['warn']}"
        ctx.report.warn(ctx.path, message, column=target, examples=examples, count=len(positions))
    return values


def _evaluate(spec: dict[str, Any], ctx: Context, target: str) -> pd.Series:
    values = _base(spec, ctx, target)
    if "split" in spec:
        sep = spec["split"]
        values = omap(values, lambda v: None if is_blank(v) else (str(v).split(sep)[0].strip() or None))
    if "case" in spec:
        change = {"lower": str.lower, "upper": str.upper}[spec["case"]]
        values = omap(values, lambda v: v if is_blank(v) else change(str(v)))
    if "map" in spec:
        values = omap(values, _mapper(spec["map"], spec.get("else")))
    if "default" in spec:
        default = spec["default"]
        values = omap(values, lambda v: default if is_blank(v) else v)
    values = _convert(values, spec, ctx, target)
    for key, sign in (("add", 1), ("subtract", -1)):
        for offset in as_list(spec.get(key)):
            values = _shift(values, offset, sign, ctx, target)
    if "scale" in spec:
        factor = float(spec["scale"])
        values = omap(
            values, lambda v: v * factor if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        )
    if spec.get("reciprocal"):
        values = omap(values, _reciprocal)
    if "bins" in spec:
        values = omap(values, _binner(spec["bins"]))
    for key, keep in (("when", True), ("unless", False)):
        for column, wanted in spec.get(key, {}).items():
            hit = condition(
                ctx.column(column, target), wanted, lambda p, v, c=column: _not_boolean(ctx, p, c, v)
            )
            values = values.where(hit if keep else ~hit, None)
    if "prefix" in spec or "suffix" in spec:
        pre, post = str(spec.get("prefix", "")), str(spec.get("suffix", ""))
        values = omap(
            values, lambda v: v if is_blank(v) or isinstance(v, Invalid) else f"{pre}{to_text(v)}{post}"
        )
    return values.astype(object)


def _base(spec: dict[str, Any], ctx: Context, target: str) -> pd.Series:
    index = ctx.src.index
    if "stage" in spec:
        return stage_statuses(spec, ctx, target)
    if "value" in spec:
        return pd.Series([spec["value"]] * len(index), index=index, dtype=object)
    if "column" in spec:
        given = as_list(spec["column"])
        names = [n for n in given if resolve_column(ctx.src.columns, n) is not None] or given[:1]
        values = ctx.column(names[0], target, optional="estimate" in spec).copy()
        for name in names[1:]:
            values = values.where(values.notna(), ctx.column(name, target))
        return values.astype(object)
    template = str(spec["template"])
    names = _TEMPLATE_RE.findall(template)
    columns = {name: ctx.column(name, target) for name in names}

    def fill(position: int) -> str | None:
        text = _TEMPLATE_RE.sub(lambda m: columns[m.group(1)].iat[position] or "", template)
        text = " ".join(text.split())
        return text or None

    return pd.Series([fill(i) for i in range(len(index))], index=index, dtype=object)


def stage_statuses(spec: dict[str, Any], ctx: Context, target: str) -> pd.Series:
    """won / lost / open per deal from its stage (``stage = "<stage column>"``).

    In this order: the vendor's own flags (``flags = { won = ..., lost = ..., closed = ...
    }``, yes/no columns; used when the file has the won flag and the lost or closed one:
    won when won, lost when lost or closed and not won, open when not closed), then the
    user's assignments (a stage file, the Import page), then the stages the mapping lists
    itself (its ``pipeline_stages`` rows), then the label's words (``won`` / ``lost``, case
    and blanks ignored). A stage none of these places is counted as open and reported by
    name with its number of deals (a warning); so is a label whose words the flags
    contradict (``Closed Lost`` not flagged lost)."""
    labels = ctx.column(str(spec["stage"]), target)
    flags = {key: resolve_column(ctx.src.columns, str(name)) for key, name in spec.get("flags", {}).items()}
    use_flags = flags.get("won") is not None and (
        flags.get("lost") is not None or flags.get("closed") is not None
    )

    def flag(key: str, position: int) -> bool | None:
        column = flags.get(key)
        if not use_flags or column is None:
            return None
        value = _boolean(ctx.src[column].iat[position])
        if isinstance(value, Invalid):
            _not_boolean(ctx, position, column, value.raw)
            return None
        return value  # type: ignore[return-value]

    out: list[str | None] = []
    uses: dict[tuple[str, str, str], int] = {}
    shown: dict[str, str] = {}
    for position, label in enumerate(labels):
        if is_blank(label):
            out.append(None)
            continue
        key = stage_key(label)
        shown.setdefault(key, " ".join(str(label).split()))
        won, lost, closed = flag("won", position), flag("lost", position), flag("closed", position)
        status, how = None, ""
        if won:
            status, how = "won", "flags"
        elif lost or (closed and won is False):
            status, how = "lost", "flags"
        elif won is False and (lost is False or closed is False):
            status, how = "open", "flags"
        elif key in ctx.stage_map:
            status, how = ctx.stage_map[key], "assigned"
        elif key in ctx.known_stages:
            status, how = ctx.known_stages[key], "mapping"
        else:
            status, how = _status_from_words(key), "label"
            if status is None:
                status, how = "open", "unplaced"
        out.append(status)
        uses[(key, status, how)] = uses.get((key, status, how), 0) + 1
    if ctx.report is not None:
        for (key, status, how), count in uses.items():
            ctx.report.count_stage(shown[key], status, how, count)
        _report_stages(ctx, str(spec["stage"]), uses, shown)
    return pd.Series(out, index=labels.index, dtype=object)


def _status_from_words(key: str) -> str | None:
    words = set(_WORD.findall(key))
    if "won" in words and "lost" not in words:
        return "won"
    if "lost" in words and "won" not in words:
        return "lost"
    return None


def _report_stages(
    ctx: Context, column: str, uses: dict[tuple[str, str, str], int], shown: dict[str, str]
) -> None:
    assert ctx.report is not None
    unplaced = {key: n for (key, _, how), n in uses.items() if how == "unplaced"}
    if unplaced:
        listed = ", ".join(
            f'"{shown[key]}" ({n:,d} deal{"s" if n != 1 else ""})'
            for key, n in sorted(unplaced.items(), key=lambda item: (-item[1], item[0]))
        )
        first = shown[min(unplaced, key=lambda key: (-unplaced[key], key))]
        ctx.report.warn(
            ctx.path,
            f"deal stage(s) the mapping cannot place as won, lost or open, counted as OPEN: {listed}. "
            f'Say what they are in a stage file (--stages stages.toml with [stages] "{first}" = "won") '
            "or in the Import page's stage step",
            column=column,
            count=sum(unplaced.values()),
        )
    contradicted = {
        (key, status): n
        for (key, status, how), n in uses.items()
        if how == "flags" and _status_from_words(key) not in (None, status)
    }
    for (key, status), n in sorted(contradicted.items()):
        ctx.report.warn(
            ctx.path,
            f'stage "{shown[key]}" ({n:,d} deal{"s" if n != 1 else ""}) is {status.upper()} by the won / lost '
            "flags in the export, whatever its label says (the flags decide)",
            column=column,
            count=n,
        )


def _mapper(table: dict[str, Any], otherwise: object) -> Callable[[object], object]:
    folded = {fold(k): v for k, v in table.items()}

    def apply(value: object) -> object:
        if is_blank(value):
            return value
        key = fold(value)
        if key in folded:
            return folded[key]
        return value if otherwise is None else otherwise

    return apply


def _reciprocal(value: object) -> object:
    """1 / value for a number (a rate quoted the other way round); 0 does not convert."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return value
    return Invalid(f"1/{to_text(value)}") if value == 0 else 1.0 / value


def _binner(bins: list[list[Any]]) -> Callable[[object], object]:
    edges = sorted(((float(lower), str(label)) for lower, label in bins), key=lambda b: b[0])

    def apply(value: object) -> object:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            return value
        label = None
        for lower, name in edges:
            if value >= lower:
                label = name
        return label

    return apply


def condition(
    values: pd.Series, wanted: object, not_boolean: Callable[[int, str], None] | None = None
) -> pd.Series:
    """Which values are one of ``wanted`` (a value or a list), matched ignoring case and
    blanks; a blank matches nothing. TOML booleans (``true`` / ``false``) match by meaning:
    ``1``/``0``, ``true``/``false`` (any case), ``yes``/``no``, ``y``/``n``, ``t``/``f``;
    another value is passed to ``not_boolean(position, text)`` and matches nothing."""
    choices = as_list(wanted)
    if choices and all(isinstance(choice, bool) for choice in choices):
        accepted = set(choices)

        def hit(position: int, value: object) -> bool:
            if is_blank(value):
                return False
            meaning = _boolean(value)
            if isinstance(meaning, Invalid):
                if not_boolean is not None:
                    not_boolean(position, str(value))
                return False
            return meaning in accepted

        return pd.Series([hit(i, v) for i, v in enumerate(values)], index=values.index, dtype=bool)
    allowed = {fold(choice) for choice in choices}
    return omap(values, lambda v: not is_blank(v) and fold(v) in allowed).astype(bool)


def _not_boolean(ctx: Context, position: int, column: str, text: str) -> None:
    ctx.error(ctx.line(position), column, f"{text!r} is not a yes/no value (true/false, yes/no, 1/0)")


def _label(spec: dict[str, Any], ctx: Context) -> str:
    """The source column(s) a spec reads, for messages."""
    if "column" in spec:
        given = as_list(spec["column"])
        return next((str(n) for n in given if resolve_column(ctx.src.columns, n) is not None), str(given[0]))
    if "template" in spec:
        return str(spec["template"])
    return f"value {spec.get('value')!r}"


def _convert(values: pd.Series, spec: dict[str, Any], ctx: Context, target: str) -> pd.Series:
    default_tz = ctx.timezone
    kind = spec.get("type", "text")
    if kind == "text":
        return omap(
            values, lambda v: None if is_blank(v) else v if isinstance(v, (str, Invalid)) else to_text(v)
        )
    if kind in ("number", "integer"):
        dec, thousands = spec.get("decimal", "."), spec.get("thousands", ",")
        return omap(values, lambda v: _number(v, dec, thousands, integer=kind == "integer"))
    if kind == "boolean":
        return omap(values, _boolean)
    formats = as_list(spec.get("format")) or ["auto"]
    outcomes: list[AutoDates] = []
    parsed = parse_datetimes(
        values, formats, str(spec.get("timezone", default_tz)), spec.get("day_first"), outcomes
    )
    for outcome in outcomes:
        _report_dates(outcome, ctx, target, _label(spec, ctx))
    if kind == "date":
        return omap(parsed, lambda v: v.date() if isinstance(v, pd.Timestamp) else v)
    return parsed


def _number(value: object, decimal: str, thousands: str, integer: bool) -> object:
    if is_blank(value) or isinstance(value, Invalid):
        return None if is_blank(value) else value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip().replace("\u00a0", "").replace(" ", "")
        text = text.lstrip("$€£¥").rstrip("$€£¥")
        if thousands:
            text = text.replace(thousands, "")
        if decimal != ".":
            text = text.replace(decimal, ".")
        try:
            number = float(text)
        except ValueError:
            return Invalid(str(value))
    if integer:
        if not number.is_integer():
            return Invalid(str(value))
        return int(number)
    return number


def _boolean(value: object) -> object:
    if is_blank(value) or isinstance(value, (bool, Invalid)):
        return None if is_blank(value) else value
    word = fold(value)
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return Invalid(str(value))


def parse_datetimes(
    values: pd.Series,
    formats: list[str],
    timezone: str,
    day_first: bool | None = None,
    outcomes: list[AutoDates] | None = None,
) -> pd.Series:
    """Parse text with the first matching format; naive local times are in ``timezone``.

    Returns Timestamps as naive UTC, ``None`` for blanks and ``Invalid`` for text that
    matches no format. ``"auto"`` reads ISO 8601, numeric and month-name dates with the
    day/month order decided from all the values it is given (``crm_data.mappings.dates``;
    ``day_first`` pins the order; what it found is appended to ``outcomes``). ``"iso"``
    accepts ISO 8601 with or without an offset (an offset wins over ``timezone``);
    ``"epoch_ms"`` / ``"epoch_s"`` are Unix times (UTC); anything else is a strptime format.
    """
    texts = omap(
        values, lambda v: None if is_blank(v) else (v.isoformat() if hasattr(v, "isoformat") else str(v))
    )
    result = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    todo = texts.notna()
    for fmt in formats:
        if not todo.any():
            break
        chunk = texts[todo]
        if fmt == "auto":
            outcome = read_auto(chunk, day_first)
            parsed = outcome.parsed.copy()
            local = ~outcome.utc & ~outcome.date_only & parsed.notna()
            parsed[local] = _localize(parsed[local], timezone).astype("datetime64[us]")
            if outcomes is not None:
                outcomes.append(outcome)
        elif fmt == "iso":
            parsed = _parse_iso(chunk, timezone)
        elif fmt in ("epoch_ms", "epoch_s"):
            numbers = pd.to_numeric(chunk, errors="coerce")
            parsed = pd.to_datetime(numbers, unit="ms" if fmt == "epoch_ms" else "s", errors="coerce")
        else:
            parsed = pd.to_datetime(chunk, format=fmt, errors="coerce")
            if _TIME_DIRECTIVE.search(fmt):  # a date alone is midnight UTC, never shifted
                parsed = _localize(parsed, timezone)
        parsed = parsed.astype("datetime64[us]")
        result.loc[parsed.index] = result.loc[parsed.index].where(result.loc[parsed.index].notna(), parsed)
        todo &= result.isna()
    out = pd.Series([None] * len(values), index=values.index, dtype=object)
    good = result.notna()
    out[good] = list(result[good])
    bad = texts.notna() & ~good
    out[bad] = [Invalid(t) for t in texts[bad]]
    return out


def _report_dates(outcome: AutoDates, ctx: Context, target: str, label: str) -> None:
    """Errors for an undecidable column; a warning naming the format chosen (once per file
    and source column)."""
    where = f"{ctx.table}.{target}"
    pin = f"in {ctx.block}, column {target}" if ctx.block else f"on {where}"
    if outcome.conflict:
        (day_at, day_text), (month_at, month_text) = outcome.conflict
        ctx.error(
            None,
            label,
            f"({where}) mixes day-first dates ({day_text!r} on line {ctx.line(day_at)}) and month-first "
            f"dates ({month_text!r} on line {ctx.line(month_at)}): correct the file, or pin the order "
            f"{pin} with day_first = true or false (the values that do not fit are then reported)",
        )
        return
    if outcome.ambiguous:
        shown = ", ".join(f"{text!r} (line {ctx.line(at)})" for at, text in outcome.ambiguous[:3])
        day, month = outcome.shape_formats or ("%d/%m/%Y", "%m/%d/%Y")
        ctx.error(
            None,
            label,
            f"({where}) the dates can be read day first or month first ({len(outcome.ambiguous)} such as {shown}) "
            f"and no value has a day above 12 to decide. Pin the order {pin}: day_first = true "
            f'(or format = "{day}") for day first, day_first = false (or format = "{month}") for month first',
        )
        return
    if not outcome.detected or ctx.report is None:
        return
    key = ("dates", str(ctx.path), label)
    if not ctx.report.first_time(key):
        return
    formats = ", ".join(
        f"{fmt} ({count:,d})" if len(outcome.formats) > 1 else fmt for fmt, count in outcome.formats
    )
    message = f"dates read as {formats}"
    if outcome.order and outcome.pinned:
        message += f" ({outcome.order}, as pinned by day_first in the mapping)"
    elif outcome.order and outcome.decided_by:
        at, text = outcome.decided_by
        part = "first" if outcome.order == "day first" else "second"
        message += f" ({outcome.order}: {text!r} on line {ctx.line(at)} has its {part} number above 12)"
    positions = (
        [outcome.decided_by[0]] if outcome.decided_by and outcome.decided_by[0] in outcome.detected else []
    )
    positions += [at for at in outcome.detected if at not in positions]
    examples = []
    for at in positions[:3]:
        value = outcome.parsed[at]
        stamp = (
            value.strftime("%Y-%m-%d %H:%M") if (value.hour or value.minute) else value.strftime("%Y-%m-%d")
        )
        examples.append((ctx.line(at), f"{outcome.texts[at]} → {stamp}"))
    ctx.report.warn(ctx.path, message, column=label, examples=examples, count=len(outcome.detected))


def _parse_iso(texts: pd.Series, timezone: str) -> pd.Series:
    with_offset = texts.str.contains(_OFFSET_RE)
    parsed = pd.Series(pd.NaT, index=texts.index, dtype="datetime64[us]")
    if with_offset.any():
        aware = pd.to_datetime(texts[with_offset], format="ISO8601", utc=True, errors="coerce")
        parsed[with_offset] = aware.dt.tz_convert(None).astype("datetime64[us]")
    if (~with_offset).any():
        naive = pd.to_datetime(texts[~with_offset], format="ISO8601", errors="coerce")
        timed = texts[~with_offset].str.strip().str.len() > 10  # a date alone is midnight UTC, never shifted
        naive[timed] = _localize(naive[timed], timezone)
        parsed[~with_offset] = naive.astype("datetime64[us]")
    return parsed


def _localize(parsed: pd.Series, timezone: str) -> pd.Series:
    """Naive local times in ``timezone`` -> naive UTC (ambiguous times: the first, DST, one)."""
    if timezone.upper() == "UTC" or parsed.empty:
        return parsed
    if getattr(parsed.dt, "tz", None) is not None:
        return parsed.dt.tz_convert(None)
    ambiguous = np.ones(len(parsed), dtype=bool)
    local = parsed.dt.tz_localize(timezone, ambiguous=ambiguous, nonexistent="shift_forward")
    return local.dt.tz_convert(None)


def _shift(values: pd.Series, offset: dict[str, Any], sign: int, ctx: Context, target: str) -> pd.Series:
    check_keys(offset, {"column", "value", "unit"}, f"offset of {ctx.table}.{target}")
    unit = offset.get("unit", "days")
    if unit not in (*UNITS, "months", "hms"):
        raise MappingError(
            f"offset of {ctx.table}.{target}: unit must be seconds, minutes, hours, days, months or hms"
        )
    if "column" in offset:
        amounts = ctx.column(offset["column"], target)
    else:
        amounts = pd.Series([offset.get("value")] * len(values), index=values.index, dtype=object)

    def shift(base: object, amount: object) -> object:
        if is_blank(base) or isinstance(base, Invalid):
            return base
        if is_blank(amount):
            return None
        try:
            if unit == "hms":
                parts = [float(p) for p in str(amount).split(":")]
                seconds = sum(p * 60**i for i, p in enumerate(reversed(parts)))
                delta: object = pd.Timedelta(seconds=sign * seconds)
            elif unit == "months":
                delta = pd.DateOffset(months=sign * int(float(str(amount))))
            else:
                delta = pd.Timedelta(seconds=sign * float(str(amount)) * UNITS[unit])
        except ValueError:
            return Invalid(str(amount))
        return pd.Timestamp(base) + delta

    return pd.Series(
        [shift(b, a) for b, a in zip(values, amounts, strict=True)], index=values.index, dtype=object
    )


def resolve_column(columns: Sequence[str] | pd.Index, name: str) -> str | None:
    """The source column called ``name``: exact match, else ignoring case and blanks."""
    if name in columns:
        return name
    wanted = name.strip().casefold()
    return next((c for c in columns if str(c).strip().casefold() == wanted), None)


def omap(values: pd.Series, function: Callable[[object], object]) -> pd.Series:
    """``values.map(function)`` that keeps object dtype and ``None`` (no dtype inference)."""
    return pd.Series([function(v) for v in values], index=values.index, dtype=object)


def is_blank(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if value is pd.NaT:
        return True
    return isinstance(value, str) and not value.strip()


def text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every value as canonical text (object dtype, ``None`` for blank), index 0..n-1."""
    columns = {col: [to_text(v) for v in frame[col]] for col in frame.columns}
    return pd.DataFrame(columns, columns=list(frame.columns), dtype=object)


def to_text(value: object) -> str | None:
    """The canonical text form: ISO timestamps, plain numbers, true/false."""
    if is_blank(value):
        return None
    if isinstance(value, Invalid):
        return value.raw
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, pd.Timestamp):
        # not strftime: it refuses years outside 1..9999 (a file's 0000-01-01), which the
        # validation then names as outside the accepted dates
        return (
            f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
        )
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
