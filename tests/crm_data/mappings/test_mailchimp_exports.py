"""Mailchimp exports as Mailchimp writes them (issue "Real exports as the vendors write
them"), imported into DuckDB and PostgreSQL; every figure is computed by hand from the
fixture.

* campaign reports (Reports > Export as CSV), the newer ones with an ``Audience`` column,
  older ones with ``List``; Send Date like ``"Jun 01, 2023 09:46 pm"``; the report alone
  fills the campaign funnel (sent = Total Recipients, opened = Unique Opens, clicked =
  Unique Clicks);
* audience exports (the zip of subscribed / unsubscribed / cleaned members) -> contacts.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

import kpis
from crm_data import schema
from crm_data.importing import import_paths
from tests.crm_data.mappings import write_exports

KINDS = ("duckdb", "postgresql")
YEAR_2023 = kpis.Filters(dt.date(2023, 1, 1), dt.date(2024, 1, 1))

REPORT_HEADER = (
    "Title,Subject,{audience},Send Date,Send Weekday,Total Recipients,Successful Deliveries,Soft Bounces,"
    "Hard Bounces,Total Bounces,Times Forwarded,Forwarded Opens,Unique Opens,Open Rate,Total Opens,"
    "Unique Clicks,Click Rate,Total Clicks,Unsubscribes,Abuse Complaints,Times Liked on Facebook,Folder Id,"
    "Unique Id\r\n"
)
CAMPAIGN_REPORTS = (
    REPORT_HEADER.format(audience="Audience")
    + 'June newsletter,Summer is here,Customers,"Jun 01, 2023 09:46 pm",Thursday,1250,1238,9,3,12,0,0,512,'
    "41.36%,790,88,7.11%,120,6,0,0,,3fa9c1d2e4\r\n"
    + '"Summer sale, last call",Only 48 hours left,Customers,"Jul 14, 2023 08:05 am",Friday,980,975,4,1,5,'
    "2,1,301,30.87%,422,64,6.56%,91,3,1,0,,7bd2e0a9f1\r\n"
    + 'Webinar invite,Join us live,Prospects,"Sep 05, 2023 12:00 pm",Tuesday,400,396,2,2,4,0,0,180,'
    "45.45%,233,41,10.35%,55,1,0,0,,c0ffee1234\r\n"
).encode("utf-8")
# funnel 2023 (sent, opened, clicked): June 1,250 / 512 / 88 -> open 0.4096, click 0.0704;
# sale 980 / 301 / 64 -> 301/980, 64/980; webinar 400 / 180 / 41 -> 0.45, 0.1025.
OLD_REPORT = (
    REPORT_HEADER.format(audience="List")
    + 'Spring promo,Fresh deals,Newsletter,"Mar 05, 2019 10:30 am",Tuesday,200,198,1,1,2,0,0,90,45.45%,120,'
    "12,6.06%,15,2,0,0,,0ld5c00l01\r\n"
).encode("utf-8")
# a few recipients of the June newsletter were active (the activity export)
ACTIVITY = (
    b"campaign_id,list_id,email_id,email_address,action,timestamp,url,ip\r\n"
    b"3fa9c1d2e4,8c2a9f31d0,5f1e2d3c,Maria.Lopez@northwind.example,open,2023-06-01T21:50:12+00:00,,203.0.113.10\r\n"
    b"3fa9c1d2e4,8c2a9f31d0,5f1e2d3c,Maria.Lopez@northwind.example,click,2023-06-01T21:51:03+00:00,"
    b"https://example.com/summer,203.0.113.10\r\n"
    b"3fa9c1d2e4,8c2a9f31d0,9a8b7c6d,l.meier@contoso.example,open,2023-06-02T07:15:00+02:00,,198.51.100.4\r\n"
)

AUDIENCE_COLUMNS = (
    '"Email Address","First Name","Last Name",MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,'
    "LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,NOTES,TAGS"
)
SUBSCRIBED = (
    AUDIENCE_COLUMNS + "\n"
    'maria.lopez@northwind.example,Maria,Lopez,4,"2023-02-01 10:00:00",203.0.113.10,"2023-02-01 10:02:11",'
    '203.0.113.10,47.6062,-122.3321,-8,-7,America/Los_Angeles,US,WA,"2023-06-02 08:00:00",90498395,810826c56e,,'
    '"""Customers"""\n'
    'Sam@Tailspin.example,Sam,Okafor,2,,,"2022-11-20 08:30:00",,,,,,,,,"2022-11-20 08:30:00",90498396,810826c56f,,\n'
).encode("utf-8")
UNSUBSCRIBED = (
    AUDIENCE_COLUMNS + ",UNSUB_TIME,UNSUB_CAMPAIGN_TITLE,UNSUB_CAMPAIGN_ID,UNSUB_REASON,UNSUB_REASON_OTHER\n"
    'l.meier@contoso.example,Lukas,Meier,1,"2023-03-10 09:15:00",198.51.100.4,"2023-03-10 09:16:00",'
    '198.51.100.4,,,,,,CH,BS,"2023-07-15 12:00:00",90498397,810826c570,,,"2023-07-15 12:00:00",'
    '"Summer sale, last call",7bd2e0a9f1,"I no longer want to receive these emails",\n'
).encode("utf-8")
CLEANED = (
    AUDIENCE_COLUMNS + ",CLEAN_TIME,CLEAN_CAMPAIGN_TITLE,CLEAN_CAMPAIGN_ID\n"
    'old@defunct.example,,,1,"2021-05-05 12:00:00",,"2021-05-05 12:00:00",,,,,,,,,"2023-06-01 21:47:00",'
    '90498398,810826c571,,,"2023-06-01 21:47:00","June newsletter",3fa9c1d2e4\n'
).encode("utf-8")


@pytest.mark.parametrize("kind", KINDS)
def test_the_campaign_report_alone_fills_the_funnel(make_db, tmp_path: Path, kind: str) -> None:
    engine = make_db(kind)
    folder = write_exports(tmp_path / "mc", {"campaign_reports.csv": CAMPAIGN_REPORTS})
    report = import_paths(engine, [folder], mapping="mailchimp")
    assert report.ok, report.render()
    assert report.rows == {"campaigns": 3}
    funnel = kpis.campaign_funnel(engine, YEAR_2023).set_index("name")
    assert funnel["sent"].to_dict() == {
        "June newsletter": 1250,
        "Summer sale, last call": 980,
        "Webinar invite": 400,
    }
    assert funnel["opened"].tolist() == [512, 301, 180]
    assert funnel["clicked"].tolist() == [88, 64, 41]
    assert funnel["converted"].tolist() == [0, 0, 0]
    assert funnel["open_rate"].tolist() == pytest.approx([0.4096, 301 / 980, 0.45])
    assert funnel["click_rate"].tolist() == pytest.approx([0.0704, 64 / 980, 0.1025])
    campaigns = schema.campaigns
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                campaigns.c.started_on, campaigns.c.delivered, campaigns.c.unsubscribes, campaigns.c.channel
            ).where(campaigns.c.campaign_id == "mc-3fa9c1d2e4")
        ).one()
    assert tuple(row) == (dt.date(2023, 6, 1), 1238, 6, "email")  # "Jun 01, 2023 09:46 pm"
    assert report.summary is not None
    assert report.summary.dates == {"campaigns.started_on": (dt.date(2023, 6, 1), dt.date(2023, 9, 5))}


@pytest.mark.parametrize("kind", KINDS)
def test_report_figures_win_over_the_activity_but_not_under_a_segment_filter(
    make_db, tmp_path: Path, kind: str
) -> None:
    engine = make_db(kind)
    folder = write_exports(
        tmp_path / "mc",
        {"campaign_reports.csv": CAMPAIGN_REPORTS, "email_activity_3fa9c1d2e4.csv": ACTIVITY},
    )
    report = import_paths(engine, [folder], mapping="mailchimp")
    assert report.ok, report.render()
    assert report.rows == {"campaigns": 3, "campaign_responses": 2}
    june = kpis.campaign_funnel(engine, YEAR_2023).set_index("campaign_id").loc["mc-3fa9c1d2e4"]
    assert (june["sent"], june["opened"], june["clicked"]) == (1250, 512, 88)  # the report's
    # whole-campaign figures cannot be narrowed to a segment: the responses count there
    # (those two have no account, so none counts under an account filter)
    smb = kpis.campaign_funnel(engine, YEAR_2023.replace(segments=("SMB",))).set_index("campaign_id")
    assert smb.loc["mc-3fa9c1d2e4", ["sent", "opened", "clicked"]].tolist() == [0, 0, 0]


@pytest.mark.parametrize("kind", KINDS)
def test_an_older_report_with_a_list_column(make_db, tmp_path: Path, kind: str) -> None:
    engine = make_db(kind)
    folder = write_exports(tmp_path / "mc", {"campaign_reports_2019.csv": OLD_REPORT})
    report = import_paths(engine, [folder], mapping="mailchimp")
    assert report.ok, report.render()
    funnel = kpis.campaign_funnel(engine, kpis.Filters("2019-01-01", "2020-01-01"))
    assert funnel[["name", "sent", "opened", "clicked"]].values.tolist() == [["Spring promo", 200, 90, 12]]
    assert funnel.loc[0, "open_rate"] == pytest.approx(0.45)


@pytest.mark.parametrize("kind", KINDS)
def test_audience_exports_become_contacts(make_db, tmp_path: Path, kind: str) -> None:
    engine = make_db(kind)
    folder = write_exports(
        tmp_path / "audience_export_8c2a9f31d0",
        {
            "subscribed_members_export_8c2a9f31d0.csv": SUBSCRIBED,
            "unsubscribed_members_export_8c2a9f31d0.csv": UNSUBSCRIBED,
            "cleaned_members_export_8c2a9f31d0.csv": CLEANED,
        },
    )
    report = import_paths(engine, [folder], mapping="mailchimp")
    assert report.ok, report.render()
    assert report.rows == {"contacts": 4}
    contacts = schema.contacts
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                contacts.c.contact_id, contacts.c.name, contacts.c.email, contacts.c.created_at
            ).order_by(contacts.c.contact_id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("mc-l.meier@contoso.example", "Lukas Meier", "l.meier@contoso.example", dt.datetime(2023, 3, 10, 9, 15)),
        ("mc-maria.lopez@northwind.example", "Maria Lopez", "maria.lopez@northwind.example",
         dt.datetime(2023, 2, 1, 10, 0)),
        ("mc-old@defunct.example", None, "old@defunct.example", dt.datetime(2021, 5, 5, 12, 0)),
        # no OPTIN_TIME (added by hand): CONFIRM_TIME; the id is the lower-case address
        ("mc-sam@tailspin.example", "Sam Okafor", "Sam@Tailspin.example", dt.datetime(2022, 11, 20, 8, 30)),
    ]  # fmt: skip
