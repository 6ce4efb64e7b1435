"""Issue 14, point 9: one place turns stored codes into labels (``charts.theme.label``,
``readable_values``; ``charts.figures.readable_figure`` for figures)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots

from charts.figures import CODES_META, band_outline, rate_axes_from_zero, readable_figure
from charts.theme import (
    NOT_FROM_ZERO,
    axis_format,
    column_label,
    is_code_column,
    label,
    mark_not_from_zero,
    readable_values,
)


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        ("website_visit", "Website visit"),
        ("paid_search", "Paid search"),
        ("poor_support", "Poor support"),
        ("in_app", "In-app"),
        ("return_exchange", "Return / exchange"),
        ("support", "Support"),
        # codes only imported data has: a readable fallback, never the code
        ("trade_show_booth", "Trade show booth"),
        ("lost_mrr", "Lost MRR"),
        ("nps_by_ces_touchpoint", "NPS by CES touchpoint"),
        ("PAID_SOCIAL", "Paid social"),  # a CRM's internal value in capitals
        ("COMPUTER_SOFTWARE", "Computer software"),
        ("SMB", "SMB"),
        ("EMEA", "EMEA"),
        # text written for people stays as it is
        ("Mid-Market", "Mid-Market"),
        ("1-10", "1-10"),
        ("U013", "U013"),
        ("Acme Corp", "Acme Corp"),
        ("e-mail", "e-mail"),
    ],
)
def test_label(code, shown):
    assert label(code) == shown


@pytest.mark.parametrize(
    ("column", "shown"),
    [("days_in_stage", "Days in stage"), ("account_id", "Account ID"), ("win_rate", "Win rate"),
     ("ctr", "Click-through rate"), ("Responded (UTC)", "Responded (UTC)")],
)  # fmt: skip
def test_column_label(column, shown):
    assert column_label(column) == shown


def test_code_columns_are_told_from_names_and_free_text():
    assert is_code_column(["support", "website_visit", None])
    assert is_code_column(["email", "phone"])  # allowed values of a stored enumeration
    assert not is_code_column(["alice", "bob"])  # user names: not codes
    assert not is_code_column(["Too expensive.", "poor_support"])


def test_readable_values_labels_codes_and_keeps_the_rest():
    frame = pd.DataFrame(
        {
            "end_reason": ["poor_support", "price", None],
            "account": ["Acme Corp", "alice", "Zen Labs"],
            "comment": ["see product_fit", "Too slow", "ok"],
            "mrr": [1.5, 2.0, 3.0],
        }
    )
    shown = readable_values(frame)
    assert shown["end_reason"].tolist()[:2] == ["Poor support", "Price"]
    assert pd.isna(shown["end_reason"].iloc[2])
    assert shown["account"].tolist() == ["Acme Corp", "alice", "Zen Labs"]
    assert shown["comment"].tolist() == ["see product_fit", "Too slow", "ok"]
    assert shown["mrr"].tolist() == [1.5, 2.0, 3.0]
    assert frame["end_reason"].iloc[0] == "poor_support"  # the caller's frame is untouched


def test_readable_figure_labels_legends_categories_ticks_and_subplot_titles():
    fig = make_subplots(rows=1, cols=2, subplot_titles=["website_visit", "support"])
    fig.add_trace(go.Bar(x=["paid_search", "email", "in_app"], y=[3, 2, 1], name="paid_search"), row=1, col=1)
    fig.add_trace(
        go.Scatter(x=[1, 2], y=[0.1, 0.2], name="Share easy", text=["poor_support", "See notes"]),
        row=1,
        col=2,
    )
    fig.update_xaxes(tickvals=[1, 2], ticktext=["return_exchange", "signup"], row=1, col=2)
    readable_figure(fig)
    bar, line = fig.data
    assert bar.name == "Paid search"
    assert list(bar.x) == ["Paid search", "Email", "In-app"]
    assert bar.meta[CODES_META] == {"Paid search": "paid_search", "Email": "email", "In-app": "in_app"}
    assert line.name == "Share easy" and list(line.x) == [1, 2]
    assert list(line.text) == ["Poor support", "See notes"]
    assert list(fig.layout.xaxis2.ticktext) == ["Return / exchange", "Signup"]
    assert [a.text for a in fig.layout.annotations] == ["Website visit", "Support"]


def test_readable_figure_leaves_dates_and_names_alone():
    fig = go.Figure(go.Bar(x=["2026-01-01", "2026-02-01"], y=[1, 2], name="Won deals"))
    fig.add_trace(go.Bar(x=["Mid-Market", "SMB"], y=[1, 2], name="alice"))
    readable_figure(fig)
    assert list(fig.data[0].x) == ["2026-01-01", "2026-02-01"]
    assert list(fig.data[1].x) == ["Mid-Market", "SMB"] and fig.data[1].name == "alice"
    assert fig.data[0].meta is None


def test_rate_axes_start_at_zero_unless_ranged_or_marked():
    fig = make_subplots(rows=1, cols=3)
    for col in (1, 2, 3):
        fig.add_trace(go.Scatter(x=[1, 2], y=[0.41, 0.43]), row=1, col=col)
    fig.update_yaxes(**axis_format("ratio"))
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    mark_not_from_zero(fig, "yaxis3")
    fig.update_xaxes(tickformat="%b %Y")  # a date axis: no rate
    rate_axes_from_zero(fig)
    assert fig.layout.yaxis.rangemode == "tozero"
    assert fig.layout.yaxis2.rangemode is None and tuple(fig.layout.yaxis2.range) == (0, 1)
    assert fig.layout.yaxis3.rangemode == "normal"
    assert NOT_FROM_ZERO in fig.layout.yaxis3.title.text
    assert fig.layout.xaxis.rangemode is None


def test_a_count_axis_is_left_to_the_data():
    fig = go.Figure(go.Scatter(x=[1, 2], y=[410, 430]))
    fig.update_yaxes(**axis_format("count"))
    rate_axes_from_zero(fig)
    assert fig.layout.yaxis.rangemode is None


def test_a_band_leaves_a_gap_where_a_bound_is_missing():
    nan = float("nan")
    xs, ys = band_outline([1, 2, 3, 4, 5], [0.1, 0.2, nan, 0.3, 0.4], [0.5, 0.6, nan, 0.7, 0.8])
    # two closed shapes: periods 1-2 and 4-5, out along the high bound and back along the low
    assert xs == [1, 2, 2, 1, None, 4, 5, 5, 4]
    assert ys == [0.5, 0.6, 0.2, 0.1, None, 0.7, 0.8, 0.4, 0.3]
    assert band_outline([1, 2], [None, None], [None, None]) == ([], [])


def test_a_hover_change_that_reads_as_zero_has_no_sign():
    from charts.figures import _delta_text

    assert _delta_text(0.00001, 0.2, (".1%", "")) == "0.0 pp"
    assert _delta_text(-0.00001, 0.2, (".1%", "")) == "0.0 pp"
    assert _delta_text(0.002, 0.2, (".1%", "")) == "+0.2 pp"
    assert _delta_text(0.2, 1000.0, (",.0f", "")) == "0 (0.0 %)"
    assert _delta_text(3.0, 1000.0, (",.0f", "")) == "+3 (+0.3 %)"


def test_readable_values_labels_a_categorical_code_column_only():
    frame = pd.DataFrame(
        {
            "touchpoint": pd.Categorical(["website_visit", "support", "website_visit"]),
            "owner": pd.Categorical(["alice", "bob", "alice"]),
        }
    )
    shown = readable_values(frame)
    assert shown["touchpoint"].tolist() == ["Website visit", "Support", "Website visit"]
    assert shown["owner"].tolist() == ["alice", "bob", "alice"]
