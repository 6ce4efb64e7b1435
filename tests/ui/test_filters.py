"""The global filter bar: defaults, URL round trip, validation, page switches, reset."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from crm_data import schema
from kpis.filters import dimension_values
from ui.filters import View, default_range, period_label

HOSTILE = "' OR 1=1 --"


def _values(at, key):
    return at.sidebar.multiselect(key=key).value


def _params(at, key):
    value = at.query_params.get(key)
    return [value] if isinstance(value, str) else list(value or [])


# --- pure helpers ------------------------------------------------------------------------


def test_default_range_is_last_twelve_full_months_plus_current():
    # data up to 2026-11-20, today 2026-11-30: current month = Nov 2026,
    # start = 12 full months earlier = 2025-11-01, end (exclusive) = 2026-12-01.
    bounds = (dt.date(2023, 1, 5), dt.date(2026, 11, 20))
    assert default_range(bounds, today=dt.date(2026, 11, 30)) == (dt.date(2025, 11, 1), dt.date(2026, 12, 1))


def test_default_range_follows_data_that_ended_long_ago():
    # an imported history ending 2019-03-15: open on Mar 2018 .. Mar 2019, not on empty months.
    bounds = (dt.date(2015, 1, 1), dt.date(2019, 3, 15))
    assert default_range(bounds, today=dt.date(2026, 11, 30)) == (dt.date(2018, 3, 1), dt.date(2019, 4, 1))


def test_default_range_without_data_uses_today():
    assert default_range(None, today=dt.date(2026, 1, 31)) == (dt.date(2025, 1, 1), dt.date(2026, 2, 1))


def test_period_labels():
    assert period_label("2026-04-01", "month") == "Apr 2026"
    assert period_label("2026-04-01", "quarter") == "Q2 2026"
    assert period_label("2026-01-01", "year") == "2026"


def test_view_describe_lists_active_filters_with_names(default_filters):
    view = View(
        filters=default_filters.replace(segments=("SMB",), owners=("U1",)),
        freq="quarter",
        labels={"owners": {"U1": "Ann Owner"}},
    )
    text = view.describe()
    assert "per quarter" in text
    assert "Segment: SMB" in text
    assert "Owner: Ann Owner" in text
    assert f"{default_filters.start:%d %b %Y}" in text


# --- in the app --------------------------------------------------------------------------


def test_defaults_are_written_to_the_url(app, default_filters):
    at = app().run()
    assert not at.exception
    assert at.query_params["from"] in (default_filters.start.isoformat(), [default_filters.start.isoformat()])
    last = default_filters.end - dt.timedelta(days=1)
    assert _params(at, "to") == [last.isoformat()]
    assert _params(at, "period") == ["month"]
    assert at.sidebar.date_input(key="date_range").value == (default_filters.start, last)


def test_changing_a_filter_updates_the_url(app, demo_engine):
    segment = dimension_values(demo_engine)["segments"][0]
    at = app().run()
    at.sidebar.multiselect(key="segment").set_value([segment]).run()
    at.sidebar.radio(key="freq").set_value("quarter").run()
    assert not at.exception
    assert _params(at, "segment") == [segment]
    assert _params(at, "period") == ["quarter"]


def test_query_params_restore_the_filters(app, demo_engine):
    known = dimension_values(demo_engine)
    segments = known["segments"][:2]
    region = known["regions"][0]
    at = app(
        query_params={
            "segment": segments,
            "region": region,
            "from": "2025-02-01",
            "to": "2025-07-31",
            "period": "quarter",
        }
    ).run()
    assert not at.exception
    assert sorted(_values(at, "segment")) == sorted(segments)
    assert _values(at, "region") == [region]
    assert at.sidebar.radio(key="freq").value == "quarter"
    assert at.sidebar.date_input(key="date_range").value == (dt.date(2025, 2, 1), dt.date(2025, 7, 31))
    assert not at.sidebar.warning  # nothing was rejected
    assert sorted(_params(at, "segment")) == sorted(segments)  # and the link stays the same


def test_hostile_query_param_is_ignored_with_a_notice(app):
    plain = app().run()
    hostile = app(query_params={"segment": HOSTILE}).run()
    assert not hostile.exception
    assert _values(hostile, "segment") == []
    notices = [w.value for w in hostile.sidebar.warning]
    assert any("Ignored unknown segment" in n for n in notices), notices
    assert "segment" not in hostile.query_params
    # the numbers are those of the unfiltered view
    assert [(m.label, m.value) for m in hostile.metric] == [(m.label, m.value) for m in plain.metric]


def test_unreadable_dates_and_period_fall_back_to_defaults(app, default_filters):
    at = app(query_params={"from": "2025-13-45", "to": "yesterday", "period": "fortnight"}).run()
    assert not at.exception
    notices = " ".join(w.value for w in at.sidebar.warning)
    assert "unreadable date" in notices
    assert "period" in notices
    last = default_filters.end - dt.timedelta(days=1)
    assert at.sidebar.date_input(key="date_range").value == (default_filters.start, last)
    assert at.sidebar.radio(key="freq").value == "month"


def test_reversed_dates_fall_back_to_defaults(app, default_filters):
    at = app(query_params={"from": "2025-06-01", "to": "2025-01-01"}).run()
    assert "ends before it starts" in " ".join(w.value for w in at.sidebar.warning)
    assert at.sidebar.date_input(key="date_range").value[0] == default_filters.start


def test_filters_survive_a_page_switch(app, demo_engine):
    known = dimension_values(demo_engine)
    segment, industry = known["segments"][-1], known["industries"][0]
    at = app().run()
    at.sidebar.multiselect(key="segment").set_value([segment]).run()
    at.sidebar.multiselect(key="industry").set_value([industry]).run()
    at.sidebar.radio(key="freq").set_value("quarter").run()
    at.switch_page("pages/2_Customers_and_churn.py").run()
    assert not at.exception
    assert _values(at, "segment") == [segment]
    assert _values(at, "industry") == [industry]
    assert at.sidebar.radio(key="freq").value == "quarter"
    at.switch_page("dashboard.py").run()
    assert _values(at, "segment") == [segment]
    assert _params(at, "industry") == [industry]


def test_owner_filter_offers_names(app, demo_engine):
    with demo_engine.connect() as conn:
        user_id, name = conn.execute(
            sa.select(schema.users.c.user_id, schema.users.c.name).order_by(schema.users.c.user_id).limit(1)
        ).one()
    at = app(query_params={"owner": user_id}).run()
    widget = at.sidebar.multiselect(key="owner")
    assert widget.value == [user_id]
    assert any(f"Owner: {name}" in c.value for c in at.caption)


def test_reset_restores_defaults(app, demo_engine, default_filters):
    segment = dimension_values(demo_engine)["segments"][0]
    at = app(query_params={"segment": segment, "period": "year"}).run()
    at.sidebar.button[0].click().run()
    assert not at.exception
    assert _values(at, "segment") == []
    assert at.sidebar.radio(key="freq").value == "month"
    assert "segment" not in at.query_params
    assert _params(at, "from") == [default_filters.start.isoformat()]


def test_a_copied_link_restores_exactly_the_same_view(app, demo_engine):
    known = dimension_values(demo_engine)
    first = app().run()
    first.sidebar.multiselect(key="segment").set_value(known["segments"][:1]).run()
    first.sidebar.multiselect(key="company_size").set_value(known["company_sizes"][:2]).run()
    first.sidebar.radio(key="freq").set_value("quarter").run()
    first.sidebar.date_input(key="date_range").set_value((dt.date(2024, 4, 1), dt.date(2026, 3, 31))).run()
    link = {key: first.query_params[key] for key in first.query_params}

    second = app(query_params=link).run()
    assert not second.exception
    for key in ("segment", "company_size", "industry", "owner"):
        assert _values(second, key) == _values(first, key)
    assert second.sidebar.radio(key="freq").value == "quarter"
    assert second.sidebar.date_input(key="date_range").value == (dt.date(2024, 4, 1), dt.date(2026, 3, 31))
    assert [(m.label, m.value, m.delta) for m in second.metric] == [
        (m.label, m.value, m.delta) for m in first.metric
    ]
