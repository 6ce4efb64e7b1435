"""Issue 14, point 9: a card whose change reads as zero ("0.0 pp") shows no arrow, no
colour and no sign; a real change keeps its arrow and its good / bad colour."""

from __future__ import annotations

import pytest
from streamlit.proto.Metric_pb2 import Metric
from streamlit.testing.v1 import AppTest

from charts.theme import delta_is_zero, fmt_delta


def _card_script(delta: float, unit: str) -> None:
    from ui.cards import kpi_card

    kpi_card("churn_rate", 0.024, delta, title="Churn", unit=unit, higher_is_better=False)


@pytest.mark.parametrize(
    ("delta", "unit", "shown"), [(0.0, "ratio", "0.0 pp"), (0.0004, "ratio", "0.0 pp"), (-0.2, "count", "0")]
)
def test_a_change_that_reads_as_zero_has_no_arrow_and_no_colour(delta, unit, shown):
    at = AppTest.from_function(_card_script, args=(delta, unit)).run()
    assert not at.exception
    metric = at.metric[0].proto
    assert metric.delta == shown
    assert metric.direction == Metric.MetricDirection.NONE
    assert metric.color == Metric.MetricColor.GRAY


def test_a_real_change_keeps_its_arrow():
    at = AppTest.from_function(_card_script, args=(0.003, "ratio")).run()
    metric = at.metric[0].proto
    assert metric.delta == "+0.3 pp"
    assert metric.direction == Metric.MetricDirection.UP
    assert metric.color == Metric.MetricColor.RED  # churn up is bad


@pytest.mark.parametrize(
    ("change", "unit", "shown", "zero"),
    [(0.0, "ratio", "0.0 pp", True), (-0.00049, "ratio", "0.0 pp", True), (-0.0006, "ratio", "-0.1 pp", False),
     (0.004, "money", "$0.00", True), (0.2, "count", "0", True), (0.6, "count", "+1", False),
     (0.04, "days", "0.0 days", True), (float("nan"), "ratio", "", False)],
)  # fmt: skip
def test_fmt_delta_has_no_sign_on_a_zero_change(change, unit, shown, zero):
    assert fmt_delta(change, unit) == shown
    assert delta_is_zero(change, unit) is zero
