"""pages/12_Reports.py: list, add (with the schedule in words and its next runs), refuse a bad
report with its reason, remove; viewers are refused. The sending itself is tested in
tests/delivery/test_reports.py."""

from __future__ import annotations

import datetime as dt

import time_machine

from delivery import reports

PAGE = "pages/12_Reports.py"


def test_add_a_report_and_see_it_listed_then_remove_it(app, app_db):
    with time_machine.travel(dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC), tick=True):  # a Monday
        at = app(PAGE).run()
        assert not at.exception
        assert any("No reports yet" in i.value for i in at.info)
        at.text_input(key="reports_new_cron").set_value("0 8 * * 1").run()
        caption = " ".join(c.value for c in at.caption)
        assert (
            "every Monday at 08:00 UTC — next: Mon 14 Dec 2026 08:00 UTC, Mon 21 Dec 2026 08:00 UTC"
            in caption
        )
        at.text_input(key="reports_new_cron").set_value("0 8 * *").run()
        assert any("cron needs 5" in c.value for c in at.caption)
        at.text_input(key="reports_new_cron").set_value("30 6 * * *").run()
        at.text_input(key="reports_new_name").set_value("Morning numbers").run()
        at.multiselect(key="reports_new_pages").set_value(["Overview", "Sales pipeline"]).run()
        at.radio(key="reports_new_format").set_value("pptx").run()
        at.text_area(key="reports_new_recipients").set_value("lead@example.com").run()
        at.text_input(key="reports_new_filters").set_value("segments=SMB").run()
        at.button(key="reports_new_add").click().run()
        assert any("unknown filter 'segments'" in e.value for e in at.error)
        at.text_input(key="reports_new_filters").set_value("segment=SMB&period=quarter").run()
        at.button(key="reports_new_add").click().run()
        assert not at.exception
    (report,) = reports.reports(app_db)
    assert (report.name, report.pages, report.format, report.recipients, report.schedule, report.query) == (
        "Morning numbers",
        ("dashboard.py", "pages/1_Sales_pipeline.py"),
        "pptx",
        ("lead@example.com",),
        "30 6 * * *",
        "segment=SMB&period=quarter",
    )
    table = at.dataframe[0].value  # the reports (the history comes after it)
    assert table["schedule"].tolist() == ["every day at 06:30 UTC"]
    assert table["last run"].tolist() == ["never sent"]
    at.button(key="reports_remove").click().run()
    assert reports.reports(app_db) == []
