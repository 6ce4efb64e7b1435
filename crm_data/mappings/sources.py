"""Reading export files for a mapping: encodings, BOM, CRLF, and true line numbers.

Every value is read as text (stripped; empty cells become ``None``) so that the mapping,
not a CSV sniffer, decides what is a number or a date. Each row remembers the line of the
original file where its record starts, so an error can point at that line even when an
earlier record holds a quoted line break.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from crm_data.validation import allow_long_csv_fields

#: Encodings tried in order when a mapping names none: UTF-8 (a BOM is dropped), then
#: Windows-1252, the usual "latin-1" of spreadsheet exports (it decodes every byte).
DEFAULT_ENCODINGS: tuple[str, ...] = ("utf-8-sig", "cp1252")

#: File name endings picked up when a folder is given.
DATA_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".txt")


class MappingError(ValueError):
    """The files cannot be read with this mapping (unknown file, missing column, bad TOML)."""


@dataclass
class SourceFrame:
    """One export file as text: ``frame`` (one row per record) and each record's first line."""

    path: Path
    frame: pd.DataFrame
    lines: list[int]
    encoding: str


def decode(data: bytes, encodings: tuple[str, ...] | list[str]) -> tuple[str, str]:
    """``data`` as text using the first encoding that decodes it; returns (text, encoding)."""
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return text.removeprefix("\ufeff"), encoding
    raise MappingError(f"cannot decode the file with any of {', '.join(encodings)}")


def read_text_table(
    path: Path, encodings: tuple[str, ...] | list[str] = DEFAULT_ENCODINGS, delimiter: str | None = None
) -> SourceFrame:
    """Read a delimited export into text columns, keeping each record's original line number.

    CRLF, LF and CR line ends are all accepted; blank lines are skipped (their line numbers
    still count); a record shorter than the header is padded with empty cells.
    """
    try:
        text, encoding = decode(path.read_bytes(), encodings)
    except MappingError as error:
        raise MappingError(f"{path}: {error}") from None
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    allow_long_csv_fields()  # a long description is text; the validation checks its length
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    records: list[list[str]] = []
    lines: list[int] = []
    previous_end = 0
    for record in reader:
        start = previous_end + 1
        previous_end = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip() for cell in record]
            continue
        records.append(record)
        lines.append(start)
    if header is None:
        raise MappingError(f"{path}: the file is empty (no header row)")
    width = len(header)
    rows = [[_clean(cell) for cell in (r + [""] * (width - len(r)))[:width]] for r in records]
    frame = pd.DataFrame(rows, columns=_unique(header), dtype=object)
    return SourceFrame(path=path, frame=frame, lines=lines, encoding=encoding)


def read_header(
    path: Path, encodings: tuple[str, ...] | list[str] = DEFAULT_ENCODINGS, delimiter: str | None = None
) -> list[str]:
    """The column names of a delimited export (first non-blank record), or [] if unreadable."""
    try:
        with path.open("rb") as handle:
            head = handle.read(65536)
        text, _ = decode(head, encodings)
    except (OSError, MappingError):
        return []
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    allow_long_csv_fields()
    for record in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
        if record and any(cell.strip() for cell in record):
            return [cell.strip() for cell in record]
    return []


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
