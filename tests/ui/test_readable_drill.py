"""A category shown as its label (``charts.figures.readable_figure``) is clicked as its
stored code: the drill-down gets ``paid_search``, not "Paid search"."""

from __future__ import annotations

import plotly.graph_objects as go

from charts.figures import readable_figure
from ui.drilldown import point_of


def test_a_clicked_label_gives_the_drill_down_its_code():
    fig = readable_figure(go.Figure(go.Bar(x=["email", "paid_search"], y=[3, 5], name="Conversions")))
    assert list(fig.data[0].x) == ["Email", "Paid search"]
    point = point_of(fig, None, {"curve_number": 0, "point_index": 1, "x": "Paid search", "y": 5}, None)
    assert point.x == "paid_search" and point.category == "paid_search" and point.y == 5
    horizontal = readable_figure(go.Figure(go.Bar(y=["website_visit"], x=[2], orientation="h")))
    point = point_of(
        horizontal, None, {"curve_number": 0, "point_index": 0, "x": 2, "y": "Website visit"}, None
    )
    assert point.y == "website_visit"
