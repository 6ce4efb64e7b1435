"""Declarative mappings: turn CRM / dataset exports into the canonical tables.

``load_mapping("hubspot")`` loads a shipped mapping (a TOML file in this folder);
``load_mapping("my_crm.toml")`` loads a user's own. ``mapping.read(paths)`` returns the
``TableInput`` list that ``crm_data.importing.import_tables`` validates and writes;
``mapping.read(paths, report=ReadReport())`` also collects the warnings (what was detected
or repaired). The format is documented in ``docs/mappings.md`` and in
``crm_data.mappings.engine``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from crm_data.mappings.engine import Mapping, read_stage_file
from crm_data.mappings.report import MappingError, ReadReport, ReadWarning

MAPPINGS_DIR = Path(__file__).resolve().parent


def shipped_mappings() -> list[str]:
    """The names of the mappings shipped with the package: its ``*.toml`` files, sorted."""
    return sorted(path.stem for path in MAPPINGS_DIR.glob("*.toml"))


#: The mappings shipped with the product, by name (the TOML files of this folder).
SHIPPED: list[str] = shipped_mappings()


def mapping_path(name_or_path: str | Path) -> Path:
    """The TOML file of a shipped mapping name, or the given path to a user's mapping."""
    text = str(name_or_path)
    if text in SHIPPED:
        return MAPPINGS_DIR / f"{text}.toml"
    path = Path(text)
    if path.is_file():
        return path
    raise MappingError(
        f"unknown mapping {text!r}: give one of {', '.join(SHIPPED)} or the path of a mapping .toml file"
    )


def load_mapping(name_or_path: str | Path) -> Mapping:
    """A shipped mapping by name (see ``SHIPPED``), or a mapping TOML file by path."""
    return Mapping.from_file(mapping_path(name_or_path))


def label(mapping: Mapping) -> str:
    """A short name of what a mapping reads: its description up to a colon or parenthesis
    ("HubSpot CRM exports"), else its name."""
    text = mapping.description.split(":", 1)[0].split(" (", 1)[0].strip()
    return text or mapping.name


def suggest_mappings(paths: Sequence[str | Path]) -> list[tuple[Mapping, int]]:
    """The shipped mappings that recognise some of ``paths`` (files, or folders searched
    like ``Mapping.read`` does) as their exports, by file name pattern or header, with how
    many files each recognises: most files first, then by name. Empty when none does."""
    found: list[tuple[Mapping, int]] = []
    for name in SHIPPED:
        try:
            mapping = load_mapping(name)
            matched = mapping.match(list(paths))
        except (MappingError, OSError):
            continue
        recognised = sum(len(files) for files in matched.files.values())
        if recognised:
            found.append((mapping, recognised))
    return sorted(found, key=lambda item: (-item[1], item[0].name))


__all__ = [
    "MAPPINGS_DIR",
    "SHIPPED",
    "Mapping",
    "MappingError",
    "ReadReport",
    "ReadWarning",
    "label",
    "load_mapping",
    "mapping_path",
    "read_stage_file",
    "shipped_mappings",
    "suggest_mappings",
]
