"""Statement templates of the Overview's other base-table KPIs (``kpis.filters.template``: one
statement per filter shape, the values as named parameters): ``revenue``, ``survey_scores``
and ``first_contact_resolution`` against the same statements built with the values bound (the
path before the templates), on the hand-written fixture, on every database kind, with one
template serving several Filters of a shape one after the other; and every named parameter
of each template gets its value from ``value_params`` of the filters at hand."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pandas as pd
import pytest
import sqlalchemy as sa

from kpis import filters as kf
from kpis import first_contact_resolution, revenue, survey_scores
from kpis.filters import Filters, named_values, value_params
from tests.kpis import fixtures
from tests.kpis.test_customer_base_templates import CASES

#: (KPI, module, template getter, builder)
KPIS: list[tuple[Callable[..., pd.DataFrame], str, str, str]] = [
    (revenue, "kpis.revenue", "_revenue_statement", "_build_revenue_statement"),
    (survey_scores, "kpis.feedback", "_survey_scores_statement", "_build_survey_scores_statement"),
    (first_contact_resolution, "kpis.service", "_fcr_statement", "_build_fcr_statement"),
]
IDS = [kpi.__name__ for kpi, *_ in KPIS]


@pytest.fixture
def crm(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    monkeypatch.setenv("CRM_ROLLUPS", "off")  # owner and product filters read the base tables
    return fixtures.load(db)


@pytest.mark.parametrize(("kpi", "module", "getter", "builder"), KPIS, ids=IDS)
def test_templates_give_the_numbers_of_bound_statements(
    crm: sa.Engine, monkeypatch: pytest.MonkeyPatch, kpi: Callable, module: str, getter: str, builder: str
) -> None:
    kf._TEMPLATES.clear()
    templated = [kpi(crm, f, freq) for f, freq in CASES]
    assert len(kf._TEMPLATES) < len(CASES)  # some shapes were reused
    with monkeypatch.context() as patched:
        mod = importlib.import_module(module)
        build = getattr(mod, builder)
        patched.setattr(mod, getter, lambda dialect, f, freq: build(dialect, f, freq))  # values bound
        patched.setattr(mod, "value_params", lambda f: {})
        bound = [kpi(crm, f, freq) for f, freq in CASES]
    for (f, freq), mine, reference in zip(CASES, templated, bound, strict=True):
        pd.testing.assert_frame_equal(mine, reference, obj=f"{kpi.__name__} {f} {freq}")
    # the owner filter selects something the unfiltered case does not (the fixture's u2)
    assert not templated[0].equals(templated[2])


@pytest.mark.parametrize(("kpi", "module", "getter", "builder"), KPIS, ids=IDS)
def test_template_parameters_match_the_filter_values(
    kpi: Callable, module: str, getter: str, builder: str
) -> None:
    """A template built for other values of the same shape, given ``value_params(f)``, binds
    exactly the values the statement built with ``f``'s values bound has, in the same places."""
    build = getattr(importlib.import_module(module), builder)
    dialect = sa.create_engine("sqlite://").dialect
    for f, freq in CASES:
        other = Filters(
            "2019-03-01", "2019-09-01", **{n: ["zz"] for n in kf.LIST_FIELDS if getattr(f, n)}
        ).replace(scope=f.scope)
        assert kf.shape(other) == kf.shape(f)
        with named_values():
            compiled = build(dialect, other, freq).compile(dialect=dialect)
        params = value_params(f)
        named = {name for name, bind in compiled.binds.items() if bind.value is None}
        assert named <= set(params), f"{f}: no value for {sorted(named - set(params))}"
        templated = compiled.construct_params(params)
        bound = build(dialect, f, freq).compile(dialect=dialect)
        values = [templated[name] for name in compiled.positiontup or []]
        expected = [bound.construct_params()[name] for name in bound.positiontup or []]
        assert values == expected, f"{kpi.__name__} {f} {freq}"
