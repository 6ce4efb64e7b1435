"""Text that is safe to hand to spreadsheets and CSV readers.

Two separate concerns, both about files we write:

* **Formula neutralising** (:func:`neutralise_text`, :func:`neutralise_frame`), for files people
  open in a spreadsheet application (the dashboard's CSV and XLSX downloads). A text cell that
  starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return can be run as a formula
  when a spreadsheet opens the file (CSV / formula injection: ``=HYPERLINK(...)``,
  ``+cmd|' /C calc'!A0``, ``@SUM(1+1)``). Following OWASP's rule, such text gets a single
  quote in front (``'=HYPERLINK(...)``): the spreadsheet shows it as text and a reader still
  sees the original after the quote. Only *text* is changed: numbers stay numbers (``-5`` as
  a number is written as ``-5``), while the text ``"-5 days"`` becomes ``'-5 days``. Dates,
  booleans and missing values are never changed.

  Not for data interchange: the CSV bundle (``crm_data.export.export_bundle``), which our own
  importer reads back, stays exact.

* **CSV text whose line breaks are always quoted** (:func:`csv_text`), for every CSV we write.
  Python's ``csv`` module (which ``DataFrame.to_csv`` uses) quotes a field only for the
  characters of its line terminator, so with ``"\\n"`` line endings a carriage return inside
  a value was written bare and a CSV reader then splits the row there. :func:`csv_text` writes
  ``"\\n"`` line endings and quotes every field holding ``\\r`` or ``\\n``.

Plain pandas, no Streamlit: ``charts`` and the dashboard import it, never the other way round.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Hashable

import pandas as pd

#: The first characters that make a spreadsheet read a cell as a formula (OWASP: CSV injection).
FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")

#: What neutralised text starts with: a single quote, which spreadsheets show as text.
NEUTRALISING_PREFIX = "'"

#: Characters that make :func:`csv_text` quote a field (delimiter, quote and line breaks).
_NEEDS_QUOTES = (",", '"', "\r", "\n")


def neutralise_text(text: str) -> str:
    """``text`` with a single quote in front when it starts with a formula trigger, else unchanged.

    >>> neutralise_text("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> neutralise_text("-5 days"), neutralise_text("Acme")
    ("'-5 days", 'Acme')
    """
    return NEUTRALISING_PREFIX + text if text.startswith(FORMULA_TRIGGERS) else text


def neutralise_value(value: object) -> object:
    """:func:`neutralise_text` for a string; any other value (number, date, missing) unchanged."""
    return neutralise_text(value) if isinstance(value, str) else value


def _neutralise_label(label: Hashable) -> Hashable:
    if isinstance(label, tuple):  # a MultiIndex column
        return tuple(neutralise_value(part) for part in label)
    return neutralise_value(label)


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` for a spreadsheet: every text cell and column name neutralised.

    Text columns (object, string or categorical dtype) have each string passed through
    :func:`neutralise_text`; numbers in them (a mixed object column) stay numbers. Numeric,
    boolean and date columns are not touched. The index is kept as is (exports drop it).
    """
    out = frame.copy()
    for position in range(out.shape[1]):
        series = out.iloc[:, position]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(object)
        elif not (pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)):
            continue
        out.isetitem(position, series.map(neutralise_value))
    out.columns = out.columns.map(_neutralise_label)
    return out


def _csv_field(field: str) -> str:
    if any(character in field for character in _NEEDS_QUOTES):
        return '"' + field.replace('"', '""') + '"'
    return field


def _csv_line(fields: list[str]) -> str:
    if fields == [""]:
        return '""\n'  # as the csv module writes it: a bare empty line would be no row at all
    return ",".join(_csv_field(field) for field in fields) + "\n"


def csv_text(
    frame: pd.DataFrame, *, header: bool = True, na_rep: str = "", date_format: str | None = None
) -> str:
    """``frame.to_csv(index=False, lineterminator="\\n")`` with every field holding ``\\r`` quoted.

    The common case (no carriage return anywhere) is pandas' own output, unchanged. Otherwise
    the frame is written with ``"\\r\\n"`` line endings, for which the csv module quotes every
    field holding ``\\r`` or ``\\n``, read back into fields and written again with ``"\\n"``
    line endings and the same quoting rule plus carriage returns.
    """
    options = {"index": False, "header": header, "na_rep": na_rep, "date_format": date_format}
    text = frame.to_csv(lineterminator="\n", **options)
    if "\r" not in text:
        return text
    crlf = frame.to_csv(lineterminator="\r\n", **options)
    return "".join(_csv_line(fields) for fields in csv.reader(io.StringIO(crlf, newline="")))
