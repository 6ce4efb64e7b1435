"""Reading export files for a mapping: encodings, delimiters, strict records, true line numbers.

Every value is read as text (stripped; empty cells become ``None``) so that the mapping,
not a CSV sniffer, decides what is a number or a date. Each row remembers the line of the
original file where its record starts, so a message can point at that line even when an
earlier record holds a quoted line break.

The reading rules (docs/mappings.md, "Reading the files"):

* **Encoding.** A byte-order mark decides (UTF-8, UTF-16 LE/BE, UTF-32: Excel's "Unicode
  text" is UTF-16 LE with a BOM); UTF-16 without a BOM is recognised by its zero bytes.
  Otherwise the file is decoded LINE BY LINE with the mapping's ``encodings`` in order
  (default UTF-8, then Windows-1252) and ISO-8859-1 as the last resort, which decodes any
  byte: a file is never refused for its encoding. Lines that needed an encoding after the
  first are reported as a warning (count and examples).
* **Delimiter.** Pinned by ``delimiter`` in the mapping, else detected from the header line
  among comma, semicolon and tab (the most frequent outside quotes; Excel's ``sep=;``
  first line is honoured). Anything but a comma is reported as a warning.
* **Records.** RFC 4180 quoting (a quoted field may hold delimiters and line breaks). A
  record with fewer or more fields than the header, or a quote never closed, is an error
  naming the file and the line where the record starts. Blank lines are skipped (their
  line numbers still count).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from crm_data.mappings.report import MAX_ERRORS_PER_FILE, MAX_EXAMPLES, MappingError, ReadReport
from crm_data.validation import allow_long_csv_fields

__all__ = [
    "DATA_SUFFIXES",
    "DEFAULT_ENCODINGS",
    "DELIMITERS",
    "EMPTY",
    "LAST_RESORT",
    "Decoded",
    "Head",
    "MappingError",
    "SourceFrame",
    "decode_bytes",
    "expand_paths",
    "peek",
    "read_text_table",
    "sniff_delimiter",
]

#: Encodings tried in order, line by line, when a mapping names none: UTF-8 (a BOM is
#: dropped), then Windows-1252, the usual "ANSI" / "latin-1" of spreadsheet exports.
DEFAULT_ENCODINGS: tuple[str, ...] = ("utf-8-sig", "cp1252")
#: Tried after the mapping's encodings: decodes every byte, so no file is refused.
LAST_RESORT = "latin-1"
#: Delimiters recognised from the header line, in order of preference on a tie.
DELIMITERS: tuple[str, ...] = (",", ";", "\t")
DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}
_A_DELIMITER = {",": "a comma", ";": "a semicolon", "\t": "a tab", "|": "a vertical bar"}

#: File name endings picked up when a folder is given.
DATA_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".txt")

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_WIDE = ("utf-16", "utf-32")  # codec name prefixes that are not ASCII-compatible
_NAMES = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8",
    "cp1252": "Windows-1252",
    "iso8859-1": "ISO-8859-1 (Latin-1)",
    "utf-16-le": "UTF-16 little-endian",
    "utf-16-be": "UTF-16 big-endian",
    "utf-16": "UTF-16",
    "utf-32-le": "UTF-32 little-endian",
    "utf-32-be": "UTF-32 big-endian",
    "utf-32": "UTF-32",
}
_LINE_BREAK = re.compile(rb"(\r\n|\r|\n)")
_SEP_LINE = re.compile(r'^"?sep=(.)"?[ \t]*$', re.IGNORECASE)
_HEAD_BYTES = 65536
#: Why a file with no header row (nothing, or blank lines only) is skipped.
EMPTY = "the file is empty"
_STOPS = frozenset(',;\t"')


def encoding_name(encoding: str) -> str:
    """A readable name: ``cp1252`` -> ``Windows-1252``."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return encoding
    return _NAMES.get(name, name)


@dataclass
class Decoded:
    """A file's text and how it was decoded.

    ``encoding`` names what decoded it (``"UTF-16 little-endian (byte-order mark)"``);
    ``tried`` the encodings tried line by line before the last resort; ``fallbacks`` maps
    each encoding used after the first to examples of the lines it decoded, as
    ``(line, excerpt)``; ``counts`` how many lines each decoded.
    """

    text: str
    encoding: str
    tried: list[str]
    wide: bool = False
    fallbacks: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def decode_bytes(
    data: bytes, encodings: tuple[str, ...] | list[str] = DEFAULT_ENCODINGS, partial: bool = False
) -> Decoded:
    """Decode a whole export (see the module doc); raises ``MappingError`` only for a file
    whose byte-order mark or zero bytes say UTF-16/32 but whose bytes are not. ``partial``:
    ``data`` is the start of a file (a character may be cut at its end)."""
    data = data.removeprefix(codecs.BOM_UTF8)
    for bom, codec in _BOMS:
        if data.startswith(bom):
            label = f"{encoding_name(codec)} (byte-order mark)"
            return _decode_wide(data[len(bom) :], codec, label, partial)
    guessed = _guess_utf16(data[:4096])
    if guessed:
        label = f"{encoding_name(guessed)} (no byte-order mark; told by its zero bytes)"
        return _decode_wide(data, guessed, label, partial)
    order = _line_encodings(encodings)
    for encoding in [e for e in order if _is_wide(e)]:  # a mapping naming UTF-16 for files without BOM
        try:
            return Decoded(data.decode(encoding), encoding_name(encoding), [encoding], wide=True)
        except UnicodeDecodeError:
            continue
    order = [e for e in order if not _is_wide(e)]
    try:
        return Decoded(data.decode(order[0]), encoding_name(order[0]), _before_last_resort(order))
    except UnicodeDecodeError:
        return _decode_lines(data, order)


def _line_encodings(encodings: tuple[str, ...] | list[str]) -> list[str]:
    order: list[str] = []
    for encoding in list(encodings) or list(DEFAULT_ENCODINGS):
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise MappingError(f"unknown encoding {encoding!r} in the mapping") from None
        name = "utf-8" if name == "utf-8-sig" else name
        if name not in order:
            order.append(name)
    if codecs.lookup(LAST_RESORT).name not in order:
        order.append(codecs.lookup(LAST_RESORT).name)
    return order


def _is_wide(encoding: str) -> bool:
    return codecs.lookup(encoding).name.startswith(_WIDE)


def _decode_wide(data: bytes, codec: str, label: str, partial: bool) -> Decoded:
    try:
        return Decoded(
            data.decode(codec, errors="ignore" if partial else "strict"), label, [codec], wide=True
        )
    except UnicodeDecodeError as error:
        line = data[: error.start].decode(codec, errors="replace").count("\n") + 1
        raise MappingError(
            f"line {line}: the file says it is {encoding_name(codec)} but its bytes are not "
            f"({error.reason}); save it again as UTF-8"
        ) from None


def _guess_utf16(head: bytes) -> str | None:
    """UTF-16 without a byte-order mark: ASCII text has a zero byte in every other place."""
    if len(head) < 8:
        return None
    even, odd = head[0::2], head[1::2]
    zeros_even, zeros_odd = even.count(0) / len(even), odd.count(0) / len(odd)
    if zeros_odd > 0.3 and zeros_even < 0.05:
        return "utf-16-le"
    if zeros_even > 0.3 and zeros_odd < 0.05:
        return "utf-16-be"
    return None


def _decode_lines(data: bytes, order: list[str]) -> Decoded:
    """Each line with the first encoding of ``order`` that decodes it (the last never fails)."""
    parts = _LINE_BREAK.split(data)
    out: list[str] = []
    fallbacks: dict[str, list[tuple[int, str]]] = {}
    counts: dict[str, int] = {}
    for index in range(0, len(parts), 2):
        raw = parts[index]
        for encoding in order:
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                continue
            if encoding != order[0]:
                counts[encoding] = counts.get(encoding, 0) + 1
                examples = fallbacks.setdefault(encoding, [])
                if len(examples) < MAX_EXAMPLES:
                    examples.append((index // 2 + 1, _excerpt(raw, order[0], encoding)))
            break
        out.append(text)
        if index + 1 < len(parts):
            out.append(parts[index + 1].decode("ascii"))
    tried = _before_last_resort(order)
    return Decoded("".join(out), encoding_name(order[0]), tried, fallbacks=fallbacks, counts=counts)


def _before_last_resort(order: list[str]) -> list[str]:
    last = codecs.lookup(LAST_RESORT).name
    return [e for e in order if e != last] or order


def _excerpt(raw: bytes, first: str, used: str) -> str:
    """The first byte ``first`` could not decode, and the value around it as ``used`` read it
    (up to the nearest delimiter or quote, at most 40 characters each side)."""
    try:
        raw.decode(first)
        position = 0
    except UnicodeDecodeError as error:
        position = error.start
    text = raw.decode(used)
    at = len(raw[:position].decode(used))
    left, right = at, at
    while left > 0 and text[left - 1] not in _STOPS and at - left < 40:
        left -= 1
    while right < len(text) and text[right] not in _STOPS and right - at < 40:
        right += 1
    shown = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text[left:right])
    return f'byte 0x{raw[position : position + 1].hex()} in "{shown}"'


def sniff_delimiter(text: str, suffix: str = "") -> tuple[str, str]:
    """The delimiter of a delimited text and how it was found: ``(delimiter, how)``, where
    ``how`` is ``"sep line"`` (Excel's ``sep=;`` first line), ``"header"`` or ``"default"``."""
    for line in text[:_HEAD_BYTES].splitlines():
        if not line.strip():
            continue
        found = _SEP_LINE.match(line.strip())
        if found:
            return found.group(1), "sep line"
        counts = _count_outside_quotes(line)
        best = max(DELIMITERS, key=lambda d: (counts.get(d, 0), -DELIMITERS.index(d)))
        if counts.get(best, 0):
            return best, "header"
        break
    return ("\t" if suffix.lower() == ".tsv" else ","), "default"


def _count_outside_quotes(line: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in DELIMITERS:
            counts[ch] = counts.get(ch, 0) + 1
    return counts


@dataclass
class Head:
    """The start of a file: its column names, or why it has none (``problem``)."""

    header: list[str]
    delimiter: str
    problem: str = ""


def peek(
    path: Path, encodings: tuple[str, ...] | list[str] = DEFAULT_ENCODINGS, delimiter: str | None = None
) -> Head:
    """The header of a delimited export (its first non-blank record), or a ``problem``."""
    try:
        with path.open("rb") as handle:
            data = handle.read(_HEAD_BYTES)
    except OSError as error:
        return Head([], delimiter or ",", f"cannot be read ({error.strerror})")
    problem = _not_text(data)
    if problem:
        return Head([], delimiter or ",", problem)
    try:
        decoded = decode_bytes(data, encodings, partial=len(data) == _HEAD_BYTES)
    except MappingError as error:
        return Head([], delimiter or ",", str(error))
    text = _drop_sep_line(decoded.text)
    used = delimiter or sniff_delimiter(decoded.text, path.suffix)[0]
    try:
        allow_long_csv_fields()
        for record in csv.reader(io.StringIO(text, newline=""), delimiter=used):
            if record and any(cell.strip() for cell in record):
                return Head([cell.strip() for cell in record], used)
    except csv.Error as error:
        return Head([], used, f"its header line cannot be read ({error})")
    return Head([], used, EMPTY)


def _not_text(data: bytes) -> str:
    if not data.strip():
        return EMPTY
    if data.startswith(b"PK\x03\x04"):
        return "an Excel workbook (.xlsx) or another zip file, not delimited text: save it as CSV"
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        return "an Excel 97-2003 workbook (.xls), not delimited text: save it as CSV"
    if b"\x00" in data and not any(data.startswith(b) for b, _ in _BOMS) and not _guess_utf16(data[:4096]):
        return "not a text file (it holds zero bytes)"
    return ""


def _drop_sep_line(text: str) -> str:
    """Blank out Excel's ``sep=;`` first line (its line number still counts)."""
    first, newline, rest = text.partition("\n")
    if _SEP_LINE.match(first.strip().rstrip("\r")):
        return ("\r" if first.endswith("\r") else "") + newline + rest
    return text


@dataclass
class SourceFrame:
    """One export file as text: ``frame`` (one row per record) and each record's first line."""

    path: Path
    frame: pd.DataFrame
    lines: list[int]
    encoding: str
    delimiter: str = ","


def read_text_table(
    path: Path,
    encodings: tuple[str, ...] | list[str] = DEFAULT_ENCODINGS,
    delimiter: str | None = None,
    report: ReadReport | None = None,
) -> SourceFrame:
    """Read a delimited export into text columns, keeping each record's original line number.

    What was detected or repaired goes to ``report`` as warnings; records of the wrong width
    and unclosed quotes as errors (the frame then holds the readable records, padded or cut
    to the header's width). Without a ``report`` the first error raises ``MappingError``.
    """
    own = report is None
    report = report if report is not None else ReadReport()
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MappingError(f"{path}: cannot be read ({error.strerror})") from None
    problem = _not_text(data)
    if problem:
        raise MappingError(f"{path}: {problem}")
    try:
        decoded = decode_bytes(data, encodings)
    except MappingError as error:
        raise MappingError(f"{path}: {error}") from None
    _report_decoding(path, decoded, report)
    if delimiter is None:
        delimiter, how = sniff_delimiter(decoded.text, path.suffix)
        if delimiter != "," and how != "default":
            found = "from Excel's sep= line" if how == "sep line" else "from the header line"
            report.warn(
                path,
                f"columns separated by {DELIMITER_NAMES.get(delimiter, repr(delimiter))} (detected {found})",
            )
    text = _drop_sep_line(decoded.text)
    header, records, lines = _records(path, text, delimiter, report)
    if header is None:
        raise MappingError(f"{path}: {EMPTY} (no header row)")
    width = len(header)
    rows = [[_clean(cell) for cell in (r + [""] * (width - len(r)))[:width]] for r in records]
    frame = pd.DataFrame(rows, columns=_unique(header), dtype=object)
    if own:
        report.raise_errors()
    return SourceFrame(path=path, frame=frame, lines=lines, encoding=decoded.encoding, delimiter=delimiter)


def _report_decoding(path: Path, decoded: Decoded, report: ReadReport) -> None:
    if decoded.wide:
        report.warn(path, f"read as {decoded.encoding}")
    last = codecs.lookup(LAST_RESORT).name
    for encoding, examples in decoded.fallbacks.items():
        if encoding == last:
            message = (
                f"line(s) that are neither {' nor '.join(encoding_name(e) for e in decoded.tried)}: "
                f"read as {encoding_name(encoding)}, where such bytes are control characters "
                "(check these values)"
            )
        else:
            message = (
                f"line(s) that are not {encoding_name(decoded.tried[0])}: read as {encoding_name(encoding)}"
            )
        report.warn(path, message, examples=examples, count=decoded.counts[encoding])


def _records(
    path: Path, text: str, delimiter: str, report: ReadReport
) -> tuple[list[str] | None, list[list[str]], list[int]]:
    """Header and records (with the line each starts on); wrong widths go to ``report``."""
    allow_long_csv_fields()  # a long description is text; the validation checks its length
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    records: list[list[str]] = []
    lines: list[int] = []
    wrong: list[tuple[int, int]] = []
    previous_end = 0
    while True:
        start = previous_end + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            report.error(path, start, "", _quote_problem(str(error)))
            break
        previous_end = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip() for cell in record]
            continue
        if len(record) != len(header):
            wrong.append((start, len(record)))
        records.append(record)
        lines.append(start)
    if header is not None:
        last = lines[-1] if lines else None
        for line, found in wrong[:MAX_ERRORS_PER_FILE]:
            report.error(path, line, "", _width_problem(found, len(header), delimiter, line == last))
        if len(wrong) > MAX_ERRORS_PER_FILE:
            more = len(wrong) - MAX_ERRORS_PER_FILE
            report.error(path, None, "", f"and {more:,d} more record(s) with a wrong number of fields")
    return header, records, lines


def _width_problem(found: int, width: int, delimiter: str, last: bool) -> str:
    text = f"{found} fields where the header has {width}"
    if found < width:
        if last:
            return text + ": the last record is cut short (was the file truncated?)"
        return text + " (a record cut short, or a line break in a value that is not quoted?)"
    return text + f" (a value with {_A_DELIMITER.get(delimiter, repr(delimiter))} that is not quoted?)"


def _quote_problem(error: str) -> str:
    if "unexpected end of data" in error or "field larger than field limit" in error:
        return "a quoted value that starts in this record is never closed (was the file truncated?)"
    return f"malformed quoting ({error}; a quote inside a quoted value must be doubled)"


def expand_paths(paths: list[str | Path] | tuple[str | Path, ...]) -> tuple[list[Path], list[Path]]:
    """Files given directly, and the data files found inside given folders (recursively)."""
    explicit: list[Path] = []
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
            )
        elif path.is_file():
            explicit.append(path)
        else:
            raise MappingError(f"{path}: no such file or folder")
    return explicit, found


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _unique(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for name in header:
        count = seen.get(name, 0)
        seen[name] = count + 1
        names.append(name if count == 0 else f"{name}.{count}")
    return names
