"""Declarative mappings: turn CRM / dataset exports into the canonical tables.

``load_mapping("hubspot")`` loads a shipped mapping (a TOML file in this folder);
``load_mapping("my_crm.toml")`` loads a user's own. ``mapping.read(paths)`` returns the
``TableInput`` list that ``crm_data.importing.import_tables`` validates and writes;
``mapping.read(paths, report=ReadReport())`` also collects the warnings (what was detected
or repaired). The format is documented in ``docs/mappings.md`` and in
``crm_data.mappings.engine``.
"""

from __future__ import annotations

from pathlib import Path

from crm_data.mappings.engine import Mapping
from crm_data.mappings.report import MappingError, ReadReport, ReadWarning

MAPPINGS_DIR = Path(__file__).resolve().parent

#: The mappings shipped with the product, by name.
SHIPPED: list[str] = [
    "hubspot",
    "salesforce",
    "mailchimp",
    "maven_crm",
    "telco_churn",
    "pwc_call_center",
    "superstore",
]


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


__all__ = [
    "MAPPINGS_DIR",
    "SHIPPED",
    "Mapping",
    "MappingError",
    "ReadReport",
    "ReadWarning",
    "load_mapping",
    "mapping_path",
]
