"""The layers' dependencies run one way (issue 15), read from the source with ``ast`` —
module-level and function-level imports alike:

* ``crm_data`` (the data layer) imports no ``kpis``, ``forecasting``, ``ui``, ``pages`` nor
  Streamlit — except its entry points (the command line ``crm_data.cli`` /
  ``crm_data.__main__`` and the ``python -m crm_data.schema_doc`` generator: applications,
  which wire the layers) and the exceptions listed in :data:`KNOWN`, each with its reason;
* ``kpis`` imports no ``ui``, ``pages`` nor Streamlit;
* the roll-ups (``kpis.rollups``, the stored stage visits ``kpis.stage_visits``) and the
  measure declarations (``kpis.measures``, ``kpis.activity``) import no KPI module — only
  :data:`ROLLUP_MAY_IMPORT` of ``kpis``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Modules of crm_data that are applications (they may import every layer).
ENTRY_POINTS = {"crm_data.cli", "crm_data.__main__", "crm_data.schema_doc"}
#: crm_data modules that still import the KPI layer, and why (not part of the roll-ups'
#: layering; a new one fails the test).
KNOWN = {
    # a goal's KPI title and unit come from the KPI registry (``from kpis import registry``)
    "crm_data.goals": {"kpis", "kpis.registry"},
}
#: What the roll-ups and the measure declarations may import from kpis.
ROLLUP_MAY_IMPORT = {
    "kpis",
    "kpis.activity",
    "kpis.core",
    "kpis.filters",
    "kpis.measures",
    "kpis.rollups",
    "kpis.stage_visits",
}
ROLLUP_MODULES = {"kpis.rollups", "kpis.measures", "kpis.activity", "kpis.stage_visits"}
UPPER = ("kpis", "forecasting", "ui", "pages", "streamlit")


def module_name(path: Path, root: Path = ROOT) -> str:
    """``crm_data/cli.py`` -> ``crm_data.cli`` (``__init__`` -> the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every module ``path`` imports, anywhere in it (``from a import b`` gives ``a`` and
    ``a.b``, as ``b`` may be a module; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = package[: len(package) - node.level + 1]
                base = ".".join([*prefix, base] if base else prefix)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, packages: tuple[str, ...] | set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def violations(root: Path = ROOT) -> list[str]:
    """The imports that break the rules, as ``module -> imported``."""
    found = []
    for package in ("crm_data", "kpis"):
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            for imported in sorted(imports(path, root)):
                upward = (
                    package == "crm_data"
                    and module not in ENTRY_POINTS
                    and _within(imported, UPPER)
                    and imported not in KNOWN.get(module, set())
                )
                into_ui = package == "kpis" and _within(imported, ("ui", "pages", "streamlit"))
                into_kpi = (
                    module in ROLLUP_MODULES
                    and _within(imported, ("kpis",))
                    and imported not in ROLLUP_MAY_IMPORT
                    and not any(imported.startswith(m + ".") for m in ROLLUP_MAY_IMPORT - {"kpis"})
                )
                if upward or into_ui or into_kpi:
                    found.append(f"{module} -> {imported}")
    return found


def test_dependencies_run_one_way() -> None:
    assert violations() == []


def test_the_rules_catch_each_kind_of_violation(tmp_path: Path) -> None:
    """A throwaway tree with one violation of each rule, function-level imports included."""
    files = {
        "crm_data/__init__.py": "",
        "crm_data/cli.py": "from kpis import rollups\n",  # an entry point: allowed
        "crm_data/importing.py": "def refresh():\n    from kpis import rollups\n",
        "crm_data/quality.py": "import forecasting.pipeline\n",
        "kpis/__init__.py": "",
        "kpis/core.py": "import streamlit as st\n",
        "kpis/rollups.py": "from kpis.core import connection\nfrom . import sales\n",
        "kpis/measures.py": "def f():\n    from kpis.customer_base import customer_base\n",
        "kpis/sales.py": "from kpis import rollups, measures\n",  # KPI -> rollups: allowed
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert violations(tmp_path) == [
        "crm_data.importing -> kpis",
        "crm_data.importing -> kpis.rollups",
        "crm_data.quality -> forecasting.pipeline",
        "kpis.core -> streamlit",
        "kpis.measures -> kpis.customer_base",
        "kpis.measures -> kpis.customer_base.customer_base",
        "kpis.rollups -> kpis.sales",
    ]


@pytest.mark.parametrize("module", sorted(ROLLUP_MODULES))
def test_rollup_modules_exist(module: str) -> None:
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file()
