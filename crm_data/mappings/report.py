"""What reading export files with a mapping found: warnings (repaired, nothing lost) and
errors (data would be lost or wrong: the import stops, all or nothing).

A *warning* says what the reader did for the user and where: lines decoded with a fallback
encoding, a detected delimiter or UTF-16 file, the date format chosen for a column, a file
skipped and why. Each one carries a count and up to :data:`MAX_EXAMPLES` examples with
their line numbers; the import goes ahead.

Steps that repair data for a vendor (placeholder names, stub accounts, estimated dates)
add their own warnings with :meth:`ReadReport.warn` (a column spec's ``Context.report``):
calls with the same file, column and message add up into one warning.

An *error* is an :class:`~crm_data.validation.ImportIssue` (``file:line:column: reason``):
a record with too few or too many fields, a quote never closed, a date column whose
day/month order cannot be decided, an export the mapping cannot recognise. Reading goes
on to collect every error it can, then raises one :class:`MappingError` listing them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crm_data.validation import ImportIssue

#: How many examples a warning keeps (it counts them all).
MAX_EXAMPLES = 3
#: How many errors of one kind one file reports one by one (the rest are counted).
MAX_ERRORS_PER_FILE = 10


class MappingError(ValueError):
    """The files cannot be read with this mapping (unknown file, missing column, bad TOML,
    a record cut short, an undecidable date format...). ``issues`` lists the problems with
    file and line when there are several or they have a line."""

    def __init__(self, message: str, issues: Sequence[ImportIssue] = ()) -> None:
        super().__init__(message)
        self.issues: list[ImportIssue] = list(issues)


@dataclass
class ReadWarning:
    """One kind of repair in one file (and column): how often, and up to 3 examples."""

    file: str
    message: str
    column: str = ""
    count: int = 0
    examples: list[tuple[int | None, str]] = field(default_factory=list)

    def __str__(self) -> str:
        where = f"{self.file}: column {self.column!r}: " if self.column else f"{self.file}: "
        return where + self.text()

    def text(self) -> str:
        """The message with the count of cases beyond the examples and the examples."""
        text = self.message
        if self.examples:
            shown = "; ".join(
                f"line {line}: {example}" if line is not None else example for line, example in self.examples
            )
            more = self.count - len(self.examples)
            text += f" (e.g. {shown}{f'; and {more:,d} more' if more > 0 else ''})"
        return text

    def issue(self) -> ImportIssue:
        """As an importer issue of level ``warning`` (the lines are in the text)."""
        return ImportIssue(self.file, None, self.column, self.text(), "warning")


@dataclass
class ReadReport:
    """Warnings and errors of one ``Mapping.read``; ``notes`` are plain information (a file
    ignored by the mapping's ``ignore`` patterns, an optional column absent)."""

    warnings: list[ReadWarning] = field(default_factory=list)
    errors: list[ImportIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error_count: int = 0
    #: Deal stages seen: ``(label, status, how)`` -> deals, ``how`` = flags | assigned |
    #: mapping | label | unplaced (see ``crm_data.mappings.columns.stage_statuses``).
    stage_uses: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _index: dict[tuple[str, str, str], ReadWarning] = field(default_factory=dict, repr=False)
    _seen: set[tuple[str, ...]] = field(default_factory=set, repr=False)

    def first_time(self, key: tuple[str, ...]) -> bool:
        """True the first time ``key`` is asked (to report a finding once, e.g. per file and
        source column when several blocks read the same column)."""
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def warn(
        self,
        file: str | Path,
        message: str,
        *,
        column: str = "",
        examples: Iterable[tuple[int | None, str]] = (),
        count: int | None = None,
    ) -> ReadWarning:
        """Add to the warning ``message`` of ``file`` (and ``column``): ``count`` more cases
        (default: one per example, or one), keeping the first examples."""
        key = (str(file), column, message)
        warning = self._index.get(key)
        if warning is None:
            warning = self._index[key] = ReadWarning(str(file), message, column)
            self.warnings.append(warning)
        examples = list(examples)
        warning.count += count if count is not None else max(len(examples), 1)
        for example in examples:
            if len(warning.examples) < MAX_EXAMPLES:
                warning.examples.append(example)
        return warning

    def error(self, file: str | Path, line: int | None, column: str, reason: str) -> None:
        """Record an error (``file:line:column: reason``); the same one is kept once."""
        issue = ImportIssue(str(file), line, column, reason)
        if issue not in self.errors:
            self.errors.append(issue)
            self.error_count += 1

    def count_stage(self, label: str, status: str, how: str, count: int) -> None:
        """``count`` deals in stage ``label`` were placed as ``status`` by ``how``."""
        key = (label, status, how)
        self.stage_uses[key] = self.stage_uses.get(key, 0) + count

    def stages(self, *hows: str) -> dict[str, int]:
        """Deals per stage label placed by one of ``hows`` (all when none is given), most first."""
        counts: dict[str, int] = {}
        for (label, _status, how), count in self.stage_uses.items():
            if not hows or how in hows:
                counts[label] = counts.get(label, 0) + count
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0].casefold())))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def issues(self) -> list[ImportIssue]:
        """Errors, then warnings, as importer issues."""
        return [*self.errors, *(w.issue() for w in self.warnings)]

    def raise_errors(self) -> None:
        """Raise one :class:`MappingError` listing every error found so far, if any."""
        if not self.errors:
            return
        if len(self.errors) == 1:
            raise MappingError(_plain(self.errors[0]), self.errors)
        lines = [f"{len(self.errors)} problems reading the files:"]
        lines.extend(f"  {_plain(issue)}" for issue in self.errors)
        raise MappingError("\n".join(lines), self.errors)


def _plain(issue: ImportIssue) -> str:
    """``file:line: reason`` (no empty column part)."""
    if not issue.file:
        return issue.reason
    where = issue.file
    if issue.row is not None:
        where += f":{issue.row}"
    if issue.column:
        where += f":{issue.column}"
    return f"{where}: {issue.reason}"
