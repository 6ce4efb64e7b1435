"""The customer base's statement template (``kpis.customer_base._base_statement``: built once
per filter shape, the values as named parameters) against the statement built with the
values bound (the path before the templates), on the hand-written fixture
(tests/kpis/fixtures.py), on every database kind. Both must give identical frames, also
when one template serves several Filters of the same shape one after the other."""

from __future__ import annotations

import importlib

import pandas as pd
import pytest
import sqlalchemy as sa

from kpis import Filters, customer_base
from kpis.core import period_starts
from kpis.filters import Scope, shape
from tests.kpis import fixtures

MODULE = importlib.import_module("kpis.customer_base")
JAN_TO_MAY = Filters("2024-01-01", "2024-06-01")

#: Filters of several shapes; consecutive ones share a shape where the values differ.
CASES: list[tuple[Filters, str]] = [
    (JAN_TO_MAY, "month"),
    (JAN_TO_MAY.replace(owners=["u1"]), "month"),
    (JAN_TO_MAY.replace(owners=["u2"]), "month"),  # same shape as u1
    (JAN_TO_MAY.replace(owners=["u1", "u2"]), "month"),  # same shape, two values
    (JAN_TO_MAY.replace(products=["P2"]), "month"),
    (JAN_TO_MAY.replace(products=["P1"]), "month"),
    (Filters("2023-11-01", "2024-04-01", products=["P1"]), "month"),  # same shape, other dates
    (JAN_TO_MAY.replace(segments=["SMB"], owners=["u2"]), "month"),
    (JAN_TO_MAY.replace(regions=["EU"], industries=["Tech", "Retail"]), "quarter"),
    (JAN_TO_MAY.within(Scope(regions=("NA",))), "month"),
    (JAN_TO_MAY.replace(owners=["u1"]).within(Scope(owners=("u2",))), "month"),  # nothing
    (JAN_TO_MAY.within(Scope(owners=())), "month"),
    (Filters("2023-01-01", "2025-01-01", owners=["u2"]), "year"),
]


@pytest.fixture
def crm(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    monkeypatch.setenv("CRM_ROLLUPS", "off")  # owner and product filters read the base tables
    return fixtures.load(db)


def _with_bound_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``customer_base`` build its statement with the values bound, as before."""

    def bound(dialect: sa.Dialect, f: Filters, freq: str, costs: bool) -> sa.Select:
        return MODULE._build_base_statement(dialect, f, freq, costs, period_starts(f.start, f.end, freq))

    monkeypatch.setattr(MODULE, "_base_statement", bound)
    monkeypatch.setattr(MODULE, "_base_params", lambda *args: {})


def test_templates_give_the_numbers_of_bound_statements(
    crm: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    MODULE._TEMPLATES.clear()
    calls = [(f, freq, True) for f, freq in CASES] + [(f, freq, False) for f, freq in CASES[1:3]]
    templated = [customer_base(crm, f, freq, costs=costs) for f, freq, costs in calls]
    assert len(MODULE._TEMPLATES) < len(calls)  # some shapes were reused
    with monkeypatch.context() as patched:
        _with_bound_values(patched)
        bound = [customer_base(crm, f, freq, costs=costs) for f, freq, costs in calls]
    for (f, freq, costs), mine, reference in zip(calls, templated, bound, strict=True):
        pd.testing.assert_frame_equal(mine, reference, obj=f"{f} {freq} costs={costs}")
    # the hand-written expectations (tests/kpis/test_churn.py): u2 owns A2 and A4
    u2 = templated[2]
    assert list(u2["customers_at_start"])[:4] == [1, 1, 0, 0]


def test_the_shape_ignores_values_and_sees_lists_and_limits() -> None:
    assert shape(JAN_TO_MAY.replace(owners=["u1"])) == shape(
        Filters("2020-01-01", "2020-02-01", owners=["x", "y"])
    )
    assert shape(JAN_TO_MAY.replace(owners=["u1"])) != shape(JAN_TO_MAY.replace(products=["P1"]))
    assert shape(JAN_TO_MAY.within(Scope(owners=()))) != shape(JAN_TO_MAY.within(Scope(owners=("u1",))))
    assert shape(JAN_TO_MAY.within(Scope(owners=("u1",)))) != shape(JAN_TO_MAY.replace(owners=["u1"]))
