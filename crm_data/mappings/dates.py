"""Dates and times as exports write them, with the format decided from the whole column.

``format = "auto"`` (the default of a ``datetime`` / ``date`` column) reads:

* ISO 8601: ``2024-01-22T16:14:25.000+0000``, ``2024-03-05T14:22:10Z``,
  ``2023-02-07 20:47:49``, ``2023-04-04 11:48``, ``2024-03-05`` (an offset wins over the
  time zone);
* numeric dates with ``/``, ``.`` or ``-``, a 2- or 4-digit year, and an optional time
  (24-hour, or 12-hour with AM/PM): ``02/03/24``, ``02/23/26 08:55 PM``,
  ``15.01.2024 10:00``, ``1/8/2024 9:14``, ``2024/03/05``;
* month names: ``Jun 01, 2023 09:46 pm`` (Mailchimp), ``Mar 5, 2024``, ``05 Mar 2024``,
  ``05-Mar-24``, ``June 1, 2023`` (English names).

Day-first or month-first is decided for the WHOLE column (of one file), never per value:
a value whose first part is above 12 (``13/02/24``) means day first, one whose second
part is above 12 (``02/13/24``) month first. With no such value the column is ambiguous
(``01/02/24`` and ``03/04/24`` only) and that is an error telling how to pin the order
(``day_first = true`` / ``false``) or the format; values of both kinds in one column are an
error too. A date whose day and month are equal reads the same either way.

Two-digit years follow the POSIX / Python ``strptime`` rule: 00-68 are 2000-2068,
69-99 are 1969-1999 (also for pinned ``%y`` formats).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Two-digit years below this are 20xx, the others 19xx (POSIX strptime %y).
PIVOT = 69

ISO_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)?$",
    re.IGNORECASE,
)
NUMERIC_RE = (
    r"^(?P<a>\d{1,4})(?P<sep>[/.\-])(?P<b>\d{1,2})(?P=sep)(?P<c>\d{1,4})"
    r"(?:(?:[ T]+|,\s*)(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,]\d+)?)?"
    r"(?:\s*(?P<p>[AaPp])\.?[Mm]\.?)?)?$"
)
#: Formats with month names, tried in order on the values that have letters.
NAMED_FORMATS: tuple[str, ...] = (
    "%b %d, %Y %I:%M %p",
    "%b %d, %Y %I:%M:%S %p",
    "%b %d, %Y %H:%M",
    "%b %d, %Y %H:%M:%S",
    "%b %d, %Y",
    "%B %d, %Y %I:%M %p",
    "%B %d, %Y %H:%M",
    "%B %d, %Y",
    "%d %b %Y %H:%M:%S",
    "%d %b %Y %H:%M",
    "%d %b %Y",
    "%d %B %Y %H:%M",
    "%d %B %Y",
    "%d-%b-%Y %H:%M",
    "%d-%b-%Y",
    "%d-%b-%y",
    "%a, %d %b %Y %H:%M:%S",
    "%a %b %d %H:%M:%S %Y",
)


@dataclass
class AutoDates:
    """The outcome of reading one column with ``format = "auto"``.

    ``parsed``: naive Timestamps (local time, or UTC for ISO values with an offset: see
    ``utc``), ``NaT`` where a value was not read; ``date_only``: a date without a time
    (midnight UTC, never shifted by a time zone); ``texts`` the values read; ``detected``
    the positions read by a detected (not ISO) format. ``formats``: what was used for the non-ISO
    values, most frequent first, with how many values each read; ``order``: ``"day first"``
    / ``"month first"`` when numeric dates were read, ``decided_by``: ``(position, text)``
    of the value that decided it. ``ambiguous`` / ``conflict``: positions and texts that
    make the order undecidable (then nothing numeric is read).
    """

    parsed: pd.Series
    utc: pd.Series
    texts: pd.Series
    date_only: pd.Series
    detected: list[int] = field(default_factory=list)
    formats: list[tuple[str, int]] = field(default_factory=list)
    order: str | None = None
    decided_by: tuple[int, str] | None = None
    pinned: bool = False
    ambiguous: list[tuple[int, str]] = field(default_factory=list)
    conflict: tuple[tuple[int, str], tuple[int, str]] | None = None
    shape_formats: tuple[str, str] | None = None  # the shape's format day first / month first


def read_auto(texts: pd.Series, day_first: bool | None = None) -> AutoDates:
    """Read ``texts`` (str or None, positional index 0..n-1) with the whole-column rule."""
    parsed = pd.Series(pd.NaT, index=texts.index, dtype="datetime64[us]")
    utc = pd.Series(False, index=texts.index)
    date_only = pd.Series(False, index=texts.index)
    present = texts.notna()
    strings = texts[present].astype(str).str.strip()
    result = AutoDates(parsed=parsed, utc=utc, texts=strings, date_only=date_only)
    if not present.any():
        return result
    iso = strings.str.match(ISO_RE)
    if iso.any():
        with_offset = strings[iso].str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", case=False, regex=True)
        aware = strings[iso][with_offset]
        if len(aware):
            values = pd.to_datetime(aware, format="ISO8601", utc=True, errors="coerce")
            parsed[aware.index] = values.dt.tz_convert(None).astype("datetime64[us]")
            utc[aware.index] = True
        naive = strings[iso][~with_offset]
        date_only[naive.index[naive.str.len() == 10]] = True
        if len(naive):
            parsed[naive.index] = pd.to_datetime(naive, format="ISO8601", errors="coerce").astype(
                "datetime64[us]"
            )
    rest = strings[~iso]
    if rest.empty:
        return result
    parts = rest.str.extract(NUMERIC_RE)
    numeric = parts["a"].notna()
    if numeric.any():
        _read_numeric(parts[numeric], rest[numeric], day_first, result)
    named = rest[~numeric & rest.str.contains(r"[A-Za-z]", regex=True)]
    counts: dict[str, int] = {}
    for fmt in NAMED_FORMATS:
        if named.empty:
            break
        values = pd.to_datetime(named, format=fmt, errors="coerce")
        good = values.notna()
        if good.any():
            parsed[named.index[good]] = values[good].astype("datetime64[us]")
            counts[fmt] = int(good.sum())
            if not any(part in fmt for part in ("%H", "%I")):
                date_only[named.index[good]] = True
            result.detected.extend(int(i) for i in named.index[good])
            named = named[~good]
    result.formats.extend(sorted(counts.items(), key=lambda item: -item[1]))
    return result


def _read_numeric(parts: pd.DataFrame, texts: pd.Series, day_first: bool | None, result: AutoDates) -> None:
    a = parts["a"].astype(int)
    b = parts["b"].astype(int)
    c = parts["c"].astype(int)
    year_first = parts["a"].str.len() == 4
    bad_shape = (
        (~year_first & ~parts["c"].str.len().isin([2, 4]))
        | (year_first & (parts["c"].str.len() > 2))
        | (parts["a"].str.len() == 3)
        | (~year_first & ((a < 1) | (b < 1) | (a > 31) | (b > 31) | ((a > 12) & (b > 12))))
    )
    other = ~year_first & ~bad_shape
    says_day = other & (a > 12) & (b <= 12)
    says_month = other & (b > 12) & (a <= 12)
    result.shape_formats = _shape_formats(parts[other]) if other.any() else None
    if day_first is not None:
        result.pinned = True
        result.order = "day first" if day_first else "month first"
    elif says_day.any() and says_month.any():
        first_day = _first(texts, says_day)
        first_month = _first(texts, says_month)
        result.conflict = (first_day, first_month)
        day_first = None
    elif says_day.any():
        day_first, result.order, result.decided_by = True, "day first", _first(texts, says_day)
    elif says_month.any():
        day_first, result.order, result.decided_by = False, "month first", _first(texts, says_month)
    else:
        undecided = other & (a != b)
        if undecided.any():
            result.ambiguous = [(int(i), str(texts[i])) for i in texts.index[undecided]]
            day_first = None
        else:
            day_first = False  # only dates whose day and month are equal (or year first)
            result.order = "month first" if other.any() else None
    usable = year_first & ~bad_shape
    if day_first is not None:
        usable |= other
    if not usable.any():
        return
    if day_first:
        day, month = a.where(~year_first, c), b
    else:
        day, month = b.where(~year_first, c), a.where(~year_first, b)
    year = a.where(year_first, c)
    short = ~year_first & (parts["c"].str.len() == 2)
    year = year.where(~short, np.where(year < PIVOT, 2000 + year, 1900 + year))
    hour = parts["H"].fillna("0").astype(int)
    minute = parts["M"].fillna("0").astype(int)
    second = parts["S"].fillna("0").astype(int)
    meridiem = parts["p"].str.lower()
    twelve = meridiem.notna()
    usable &= ~(twelve & ((hour < 1) | (hour > 12)))
    hour = hour.where(~twelve, (hour % 12) + np.where(meridiem == "p", 12, 0))
    frame = pd.DataFrame(
        {"year": year, "month": month, "day": day, "hour": hour, "minute": minute, "second": second}
    )[usable]
    values = pd.to_datetime(frame, errors="coerce").astype("datetime64[us]")
    result.parsed[values.index] = values
    result.date_only[frame.index] = parts["H"][usable].isna()
    read = values.notna()
    result.detected.extend(int(i) for i in values.index[read])
    if read.any():
        formats = _formats(parts[usable][read], bool(day_first))
        result.formats.extend((str(fmt), int(count)) for fmt, count in formats.value_counts().items())


def _first(texts: pd.Series, mask: pd.Series) -> tuple[int, str]:
    index = texts.index[mask][0]
    return int(index), str(texts[index])


def _formats(parts: pd.DataFrame, day_first: bool) -> pd.Series:
    """The strptime format of each numeric value (for the report and the pin hint)."""
    sep = parts["sep"]
    year_first = parts["a"].str.len() == 4
    year = np.where(parts["c"].str.len() == 2, "%y", "%Y")
    dm = "%d" + sep + "%m" if day_first else "%m" + sep + "%d"
    date = pd.Series(np.where(year_first, "%Y" + sep + "%m" + sep + "%d", dm + sep + year), index=parts.index)
    time = pd.Series("", index=parts.index)
    has_time = parts["H"].notna()
    clock = np.where(parts["p"].notna(), "%I:%M", "%H:%M")
    seconds = np.where(parts["S"].notna(), ":%S", "")
    ampm = np.where(parts["p"].notna(), " %p", "")
    time[has_time] = (" " + pd.Series(clock, index=parts.index) + seconds + ampm)[has_time]
    return date + time


def _shape_formats(parts: pd.DataFrame) -> tuple[str, str]:
    """The most frequent shape's format, day first and month first: for the pin hint."""
    day = _formats(parts, True).value_counts().index[0]
    month = _formats(parts, False).value_counts().index[0]
    return str(day), str(month)
