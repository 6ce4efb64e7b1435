"""first_contact_resolution, ticket_breakdown, resolution_times on the hand-written fixture.

Tickets (account, product, channel, category, priority; opened -> first response -> resolved; contacts):
  T1 A1 P1 email defect high      3 Jan 09:00 -> 10:00 -> 3 Jan 12:00 (3 h), 1
  T2 A2 P1 phone billing low     10 Jan 08:00 -> 12:00 -> 11 Jan 08:00 (24 h), 2
  T3 A3 P2 chat question low     31 Jan 20:00 -> 22:00 -> 1 Feb 00:00 exactly (4 h), 1
  T4 --  P1 email complaint high  5 Feb 10:00 -> none -> 7 Feb 10:00 (48 h), unknown contacts
  T5 A4 P2 phone defect medium   20 Feb 00:00 -> 06:00 -> open
  T6 A1 P2 email question low     1 Mar 00:00 -> 01:00 -> 1 Mar 09:00 (9 h), 1
"""

from __future__ import annotations

import math

import pytest

from kpis import Filters, first_contact_resolution, resolution_times, ticket_breakdown
from tests.kpis import fixtures
from tests.kpis.fixtures import column

JAN_TO_APR = Filters("2024-01-01", "2024-05-01")
NAN = math.nan


@pytest.fixture
def crm(db):
    return fixtures.load(db)


def test_monthly_fcr(crm):
    frame = first_contact_resolution(crm, JAN_TO_APR, "month")
    # by resolved_at: Jan T1 (1), T2 (2) -> 1/2; Feb T3 (1, resolved 1 Feb 00:00), T4 (count not
    # recorded: resolved, not first-contact) -> 1/2; Mar T6 -> 1/1; Apr none -> NaN
    assert list(frame["resolved"]) == [2, 2, 1, 0]
    assert list(frame["recorded"]) == [2, 1, 1, 0]
    assert list(frame["first_contact"]) == [1, 1, 1, 0]
    assert column(frame, "fcr_rate") == pytest.approx([0.5, 0.5, 1.0, NAN], nan_ok=True)
    # Wilson 1/2: centre 0.5, half = 1.96·sqrt(0.125 + 0.240091)/2.920729 = 0.405469
    assert column(frame, "ci_low")[0] == pytest.approx(0.094531, abs=1e-6)
    assert column(frame, "ci_high")[0] == pytest.approx(0.905469, abs=1e-6)
    assert frame["low_sample"].all()


def test_fcr_segment_excludes_tickets_without_account(crm):
    # SMB = A3, A4: only T3 is resolved (Feb) -> 1/1; T4 has no account
    frame = first_contact_resolution(crm, JAN_TO_APR.replace(segments=["SMB"]), "month")
    assert list(frame["resolved"]) == [0, 1, 0, 0]
    assert column(frame, "fcr_rate") == pytest.approx([NAN, 1.0, NAN, NAN], nan_ok=True)
    empty = first_contact_resolution(crm, JAN_TO_APR.replace(segments=["Nobody"]), "month")
    assert empty["fcr_rate"].isna().all()


def test_fcr_quarter_and_product(crm):
    # Q1: resolved T1, T2, T3, T4, T6 = 5, first contact T1, T3, T6 = 3 -> 0.6
    frame = first_contact_resolution(crm, Filters("2024-01-01", "2025-01-01"), "quarter")
    assert list(frame["resolved"]) == [5, 0, 0, 0]
    assert frame.loc[0, "fcr_rate"] == pytest.approx(0.6)
    # P1 tickets resolved: T1, T2, T4 (T4's count not recorded) -> 1/3 over the year
    year = first_contact_resolution(crm, Filters("2024-01-01", "2025-01-01").replace(products=["P1"]), "year")
    assert (year.loc[0, "resolved"], year.loc[0, "recorded"], year.loc[0, "first_contact"]) == (3, 2, 1)
    assert year.loc[0, "fcr_rate"] == pytest.approx(1 / 3)


def test_fcr_is_unknown_not_zero_when_no_contact_count_is_recorded(crm):
    # P1 in February: only T4, whose contact count is not recorded (as on Salesforce cases):
    # resolved 1, recorded 0 -> the rate is NaN ("not recorded"), never 0 %
    frame = first_contact_resolution(crm, JAN_TO_APR.replace(products=["P1"]), "month")
    february = frame.iloc[1]  # Jan, Feb, Mar, Apr
    assert (february["resolved"], february["recorded"], february["first_contact"]) == (1, 0, 0)
    assert math.isnan(february["fcr_rate"])


def test_ticket_breakdown_by_category(crm):
    # by opened_at: Jan T1 defect, T2 billing, T3 question (31 Jan); Feb T4 complaint, T5 defect; Mar T6 question
    frame = ticket_breakdown(crm, JAN_TO_APR, "category", "month")
    assert len(frame) == 4 * 4  # every month × every category seen
    counts = {(p.month, g): n for p, g, n in frame.itertuples(index=False)}
    assert counts[(1, "defect")] == 1 and counts[(1, "billing")] == 1 and counts[(1, "question")] == 1
    assert counts[(1, "complaint")] == 0
    assert counts[(2, "complaint")] == 1 and counts[(2, "defect")] == 1
    assert counts[(3, "question")] == 1
    assert sum(n for (m, _), n in counts.items() if m == 4) == 0


def test_ticket_breakdown_by_product_channel_priority(crm):
    # product names: Core = P1 (T1, T2 Jan; T4 Feb), Addon = P2 (T3 Jan; T5 Feb; T6 Mar)
    product = ticket_breakdown(crm, JAN_TO_APR, "product", "month")
    assert sorted(product["group"].unique()) == ["Addon", "Core"]
    jan = product[product["period"].dt.month == 1].set_index("group")["tickets"].to_dict()
    assert jan == {"Addon": 1, "Core": 2}
    # channel over the quarter: email T1, T4, T6; phone T2, T5; chat T3
    channel = ticket_breakdown(crm, Filters("2024-01-01", "2024-04-01"), "channel", "quarter")
    assert channel.set_index("group")["tickets"].to_dict() == {"chat": 1, "email": 3, "phone": 2}
    # SMB priorities: T3 low (Jan), T5 medium (Feb)
    smb = ticket_breakdown(crm, JAN_TO_APR.replace(segments=["SMB"]), "priority", "month")
    assert smb.groupby("group")["tickets"].sum().to_dict() == {"low": 1, "medium": 1}
    assert ticket_breakdown(crm, JAN_TO_APR.replace(segments=["Nobody"]), "category", "month").empty
    with pytest.raises(ValueError):
        ticket_breakdown(crm, JAN_TO_APR, "account", "month")


def test_resolution_times(crm):
    frame = resolution_times(crm, JAN_TO_APR, "month")
    # Jan: 3 h, 24 h -> median 13.5, p90 3 + 0.9·21 = 21.9; first response 1 h, 4 h -> 2.5
    # Feb: T3 4 h, T4 48 h -> median 26, p90 4 + 0.9·44 = 43.6; first response T3 2 h only (T4 none)
    # Mar: T6 9 h; first response 1 h. Apr: nothing -> NaN
    assert list(frame["resolved"]) == [2, 2, 1, 0]
    assert column(frame, "median_hours_to_resolve") == pytest.approx([13.5, 26.0, 9.0, NAN], nan_ok=True)
    assert column(frame, "p90_hours_to_resolve") == pytest.approx([21.9, 43.6, 9.0, NAN], nan_ok=True)
    assert column(frame, "median_hours_to_first_response") == pytest.approx([2.5, 2.0, 1.0, NAN], nan_ok=True)


def test_resolution_times_segment(crm):
    # Enterprise: T1 3 h, T2 24 h (Jan), T6 9 h (Mar); T4 (no account) excluded from Feb
    frame = resolution_times(crm, JAN_TO_APR.replace(segments=["Enterprise"]), "month")
    assert list(frame["resolved"]) == [2, 0, 1, 0]
    assert column(frame, "median_hours_to_resolve") == pytest.approx([13.5, NAN, 9.0, NAN], nan_ok=True)
