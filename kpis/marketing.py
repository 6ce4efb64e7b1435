"""Marketing KPIs: campaign funnels, web traffic and social media per period."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import period_start
from kpis.core import connection, naive_key, on_period_grid, period_starts, ratio
from kpis.filters import Filters, has_column, in_day_range, scope

Bind = sa.Connection | sa.Engine


#: Funnel step -> the campaigns column holding a vendor report's figure for it.
REPORT_FIGURES: dict[str, str] = {"sent": "recipients", "opened": "opens", "clicked": "clicks"}


def campaign_funnel(conn: Bind, f: Filters) -> pd.DataFrame:
    """Funnel per campaign, with the campaign's cost allocated to the selection.

    campaigns whose started_on lies in [start, end); sent / opened / clicked / converted =
    responses with that timestamp set, or the vendor report's figures of the campaign;
    open_rate, click_rate and conversion_rate are relative to sent; cost = campaign_cost ×
    share_of_sends, where share_of_sends = the selection's sends ÷ the campaign's sends (1
    without a segment, owner or product filter); cost_per_conversion = cost ÷ converted
    (NaN when nothing converted).

    * counts = responses with a non-null ``sent_at`` / ``opened_at`` / ``clicked_at`` /
      ``converted_at``; open_rate = opened ÷ sent, click_rate = clicked ÷ sent,
      conversion_rate = converted ÷ sent (NaN when nothing was sent);
    * a campaign's report figures (``campaigns.recipients`` / ``opens`` / ``clicks``, e.g.
      Mailchimp's Total Recipients, Unique Opens, Unique Clicks) replace the counts of
      sent / opened / clicked where they are set, while no segment, owner or product filter
      is set: they are whole-campaign numbers that no filter can narrow (with such a filter
      only the responses count);
    * campaign_cost = ``campaigns.cost``, the whole campaign's. With a segment, owner or
      product filter the responses are narrowed (through their account; responses without
      an account count only while no account-level filter is set) and the campaign's cost
      with them: the campaign's sends = the larger of its responses with ``sent_at`` (all
      accounts) and its report's recipients; share_of_sends = the selection's sent ÷ that, so
      a segment that got 11 of 68 sends carries 11/68 of the cost. A campaign without any
      send to share by has share_of_sends and cost NaN under such a filter;
    * cost_per_conversion is also NaN when the campaign has no cost.

    A restricted user scope sees no campaigns. Sorted by started_on, campaign_id.
    Columns: campaign_id, name, channel, objective, cost, campaign_cost, share_of_sends, sent,
    opened, clicked, converted, open_rate, click_rate, conversion_rate, cost_per_conversion.
    """
    campaigns, responses = schema.campaigns, schema.campaign_responses
    counts = ["sent", "opened", "clicked", "converted"]
    per_campaign = (
        sa.select(
            responses.c.campaign_id,
            *(sa.func.count(responses.c[f"{step}_at"]).label(step) for step in counts),
        )
        .where(*scope(f, responses))
        .group_by(responses.c.campaign_id)
        .cte("per_campaign")
    )
    all_sends = (
        sa.select(responses.c.campaign_id, sa.func.count(responses.c.sent_at).label("sends"))
        .group_by(responses.c.campaign_id)
        .cte("all_sends")
    )
    whole_campaigns = not (f.has_account_filter or f.owners or f.products)
    with connection(conn) as c:
        reported = has_column(c, campaigns, REPORT_FIGURES["sent"])
        figures = whole_campaigns and reported

        listed = campaigns.outerjoin(per_campaign, per_campaign.c.campaign_id == campaigns.c.campaign_id)

        def step_count(step: str) -> sa.ColumnElement:
            counted = sa.func.coalesce(per_campaign.c[step], 0)
            if figures and step in REPORT_FIGURES:
                counted = sa.func.coalesce(campaigns.c[REPORT_FIGURES[step]], counted)
            return counted.label(step)

        statement = (
            sa.select(
                campaigns.c.campaign_id,
                campaigns.c.name,
                campaigns.c.channel,
                campaigns.c.objective,
                campaigns.c.cost,
                *(step_count(step) for step in counts),
                # every campaign's sends: only to share its cost by under a filter (unfiltered,
                # the share is 1; not counting them spares a scan of every response)
                (sa.null() if whole_campaigns else sa.func.coalesce(all_sends.c.sends, 0)).label("all_sends"),
                (campaigns.c[REPORT_FIGURES["sent"]] if reported else sa.null()).label("recipients"),
            )
            .select_from(
                listed
                if whole_campaigns
                else listed.outerjoin(all_sends, all_sends.c.campaign_id == campaigns.c.campaign_id)
            )
            .where(in_day_range(campaigns.c.started_on, f), *scope(f, campaigns))  # none in a user scope
            .order_by(campaigns.c.started_on, campaigns.c.campaign_id)
        )
        result = c.execute(statement)
        out = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    out[counts] = out[counts].astype(int)
    out["campaign_cost"] = out["cost"].astype(float)
    if whole_campaigns:
        out["share_of_sends"] = 1.0
    else:
        sends = np.maximum(
            out["all_sends"].to_numpy(dtype=float),
            pd.to_numeric(out["recipients"], errors="coerce").fillna(0).to_numpy(dtype=float),
        )
        out["share_of_sends"] = [ratio(mine, whole) for mine, whole in zip(out["sent"], sends, strict=True)]
    out["cost"] = out["campaign_cost"] * out["share_of_sends"]
    out = out[
        ["campaign_id", "name", "channel", "objective", "cost", "campaign_cost", "share_of_sends", *counts]
    ]
    out["open_rate"] = [ratio(o, s) for o, s in zip(out["opened"], out["sent"], strict=True)]
    out["click_rate"] = [ratio(k, s) for k, s in zip(out["clicked"], out["sent"], strict=True)]
    out["conversion_rate"] = [ratio(v, s) for v, s in zip(out["converted"], out["sent"], strict=True)]
    out["cost_per_conversion"] = [
        math.nan if math.isnan(cost) else ratio(cost, v)
        for cost, v in zip(out["cost"], out["converted"], strict=True)
    ]
    return out.astype(
        {
            "share_of_sends": float,
            "open_rate": float,
            "click_rate": float,
            "conversion_rate": float,
            "cost_per_conversion": float,
        }
    )


def web_metrics(conn: Bind, f: Filters, freq: str = "month") -> pd.DataFrame:
    """Web traffic per period.

    ctr = clicks ÷ impressions and signup_rate = signups ÷ sessions, daily web_traffic
    summed over all sources by date in the period.

    * sessions, pageviews, impressions, clicks, signups = sums of the rows with ``date``
      in the period and in ``[start, end)`` (NULL counts as 0);
    * ratios are NaN when their denominator is 0.

    Web traffic has no account: segment filters do not narrow it (a restricted user scope
    sees none: company-wide figures). Periods without data
    have zeros. Columns: period, sessions, pageviews, impressions, clicks, signups, ctr,
    signup_rate.
    """
    web = schema.web_traffic
    sums = ["sessions", "pageviews", "impressions", "clicks", "signups"]
    periods = period_starts(f.start, f.end, freq)
    with connection(conn) as c:
        period = period_start(c.dialect, web.c.date, freq).label("period")
        statement = (
            sa.select(period, *(sa.func.coalesce(sa.func.sum(web.c[s]), 0).label(s) for s in sums))
            .where(in_day_range(web.c.date, f), *scope(f, web))  # nothing in a user scope
            .group_by(period)
        )
        result = c.execute(statement)
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    out = on_period_grid(frame, periods, fill=dict.fromkeys(sums, 0))
    out[sums] = out[sums].astype("int64")
    out["ctr"] = [ratio(k, i) for k, i in zip(out["clicks"], out["impressions"], strict=True)]
    out["signup_rate"] = [ratio(s, n) for s, n in zip(out["signups"], out["sessions"], strict=True)]
    return out.astype({"ctr": float, "signup_rate": float})


def social_metrics(conn: Bind, f: Filters, freq: str = "month") -> pd.DataFrame:
    """Social media per period and platform.

    engagement_rate = engagements ÷ impressions per platform, summed over the period's
    days; followers = the value on the last day of the period that has one.

    * impressions, engagements, mentions = sums over the rows with ``date`` in the
      period and in ``[start, end)``;
    * followers is a level, not a sum: the latest non-null value in the period (and the
      range); engagement_rate is NaN when impressions are 0.

    One row per period and platform (every platform in the table, every period; periods
    without data have zeros and followers NaN). No account: segment filters do not narrow
    it (a restricted user scope sees none). Columns: period, platform, followers, impressions, engagements, mentions,
    engagement_rate.
    """
    social = schema.social_media
    sums = ["impressions", "engagements", "mentions"]
    periods = period_starts(f.start, f.end, freq)
    with connection(conn) as c:
        period = period_start(c.dialect, social.c.date, freq)
        in_range = sa.and_(in_day_range(social.c.date, f), *scope(f, social))  # nothing in a user scope
        totals = (
            sa.select(
                period.label("period"),
                social.c.platform,
                *(sa.func.coalesce(sa.func.sum(social.c[s]), 0).label(s) for s in sums),
            )
            .where(in_range)
            .group_by(period, social.c.platform)
            .cte("totals")
        )
        last_day = (
            sa.select(
                period.label("period"),
                social.c.platform,
                social.c.followers,
                sa.func.row_number()
                .over(partition_by=[period, social.c.platform], order_by=social.c.date.desc())
                .label("rn"),
            )
            .where(in_range, social.c.followers.is_not(None))
            .cte("last_day")
        )
        statement = sa.select(
            totals.c.period, totals.c.platform, last_day.c.followers, *(totals.c[s] for s in sums)
        ).select_from(
            totals.outerjoin(
                last_day,
                sa.and_(
                    last_day.c.period == totals.c.period,
                    last_day.c.platform == totals.c.platform,
                    last_day.c.rn == 1,
                ),
            )
        )
        # period and platform -> (followers, *sums): a few dozen rows
        found = {(naive_key(row[0]), row[1]): row[2:] for row in c.execute(statement)}
        platforms = [
            p for (p,) in c.execute(sa.select(social.c.platform).distinct().order_by(social.c.platform))
        ]
    columns = ["period", "platform", "followers", *sums, "engagement_rate"]
    if not periods or not platforms:
        return pd.DataFrame(columns=columns)
    # every (period, platform), periods outer, platforms sorted, built once from the rows
    # found (a grid per platform, concatenated and sorted, was ~50 of the call's ~60 ms)
    platforms = sorted(platforms)
    grid = pd.to_datetime(periods)
    rows = [found.get((period, platform)) for period in grid for platform in platforms]
    data: dict[str, object] = {
        "period": np.repeat(grid.to_numpy(), len(platforms)),
        "platform": platforms * len(grid),
        "followers": np.array(
            [math.nan if r is None or r[0] is None else float(r[0]) for r in rows], dtype="float64"
        ),
    }
    for j, name in enumerate(sums, start=1):
        data[name] = np.array([0 if r is None or r[j] is None else int(r[j]) for r in rows], dtype="int64")
    data["engagement_rate"] = np.array(
        [ratio(e, i) for e, i in zip(data["engagements"], data["impressions"], strict=True)], dtype="float64"
    )
    return pd.DataFrame(data)[columns]
