"""crm_data.goals: the app_goals store (add / update / remove / list, one goal per KPI,
period and slice), the CSV import (all-or-nothing, ``file:row:column: reason``) on SQLite
and PostgreSQL, and ``crm-insights goals list | import | remove``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm_data import accounts, cli, goals
from crm_data.engines import make_engine
from crm_data.goals import Goal, GoalError, GoalImportError, GoalStore, make_goal, parse_period
from tests.kpis import fixtures

OWNERS = {"u1": "Alice", "u2": "Bob", "u3": "Alice"}  # two Alices: a name that is ambiguous


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, make_db: Callable[..., sa.Engine]) -> GoalStore:
    return GoalStore(make_db(request.param, create=False))


def _count(store: GoalStore) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(goals.app_goals)).scalar_one()


def test_periods_and_targets_are_parsed_or_refused_with_the_reason() -> None:
    assert parse_period("2026-12") == ("month", dt.date(2026, 12, 1))
    assert parse_period("2026-Q4") == ("quarter", dt.date(2026, 10, 1))
    assert parse_period("2026-q1") == ("quarter", dt.date(2026, 1, 1))
    assert parse_period("2026") == ("year", dt.date(2026, 1, 1))
    for bad in ("2026-13", "2026-Q5", "Dec 2026", "26-12", ""):
        with pytest.raises(GoalError, match="not a period"):
            parse_period(bad)
    churn = make_goal("churn_rate", "2026-Q4", "3%", {"segment": "SMB"})
    assert (churn.target, churn.period_end, churn.slice) == (
        pytest.approx(0.03),
        dt.date(2027, 1, 1),
        {"segment": "SMB"},
    )
    assert make_goal("churn_rate", "2026-12", "0.03").target == pytest.approx(0.03)
    with pytest.raises(GoalError, match=r"outside 0 to 1 \(write 3% or 0.03"):
        make_goal("churn_rate", "2026-12", "3")
    with pytest.raises(GoalError, match="not a share"):
        make_goal("revenue", "2026-12", "5%")
    with pytest.raises(GoalError, match="not a number"):
        make_goal("revenue", "2026-12", "250,000")
    with pytest.raises(GoalError, match="outside -100 to 100"):
        make_goal("nps", "2026", "120")
    with pytest.raises(GoalError, match="no goals for KPI 'funnel'"):
        make_goal("funnel", "2026", "0.5")  # one value per stage: no goal
    with pytest.raises(GoalError, match="outside 1 to 7"):
        make_goal("ces", "2026", "8")
    with pytest.raises(GoalError, match="company-wide"):
        make_goal("web_ctr", "2026", "2%", {"region": "EMEA"})
    assert make_goal("won_amount", "2026-Q4", "100", {"owner": "Bob"}, owners=OWNERS).owner == "u2"
    with pytest.raises(GoalError, match="ambiguous"):
        make_goal("won_amount", "2026-Q4", "100", {"owner": "alice"}, owners=OWNERS)
    with pytest.raises(GoalError, match="no owner 'Carol'"):
        make_goal("won_amount", "2026-Q4", "100", {"owner": "Carol"}, owners=OWNERS)


def test_registry_supplies_the_goal_kpis_titles_units_and_direction() -> None:
    from kpis import registry

    for key, info in goals.GOAL_KPIS.items():
        if key in ("won_amount", "new_customers"):
            continue
        entry = registry.get(key)
        assert (info.title, info.unit, info.higher_is_better) == (
            entry.title,
            entry.unit,
            entry.higher_is_better,
        )
    assert goals.GOAL_KPIS["churn_rate"].higher_is_better is False
    assert {k for k, v in goals.GOAL_KPIS.items() if v.additive} == {"revenue", "won_amount", "new_customers"}


def test_store_add_update_remove_list_and_audit(store: GoalStore) -> None:
    assert store.goals() == []
    revenue = store.add(make_goal("revenue", "2026-12", "250000"), actor="ana")
    quota = store.add(make_goal("won_amount", "2026-Q4", "120000", {"owner": "u1"}), actor="ana")
    assert (revenue.goal_id, quota.goal_id) == (1, 2)
    again = store.add(make_goal("revenue", "2026-12", "300000"), actor="bo")  # same KPI, period, slice
    assert again.goal_id == 1 and _count(store) == 2
    assert store.get(1).target == 300000.0 and store.get(1).updated_by == "bo"
    # another slice of the same KPI and period is another goal
    smb = store.add(make_goal("revenue", "2026-12", "50000", {"segment": "SMB"}), actor="ana")
    assert smb.goal_id == 3
    assert store.update(3, target="60000", actor="ana").target == 60000.0
    with pytest.raises(GoalError, match="not a number"):
        store.update(3, target="lots", actor="ana")
    listed = store.goals()
    assert [(g.goal_id, g.kpi, g.period, g.owner, g.segment) for g in listed] == [
        (1, "revenue", "2026-12", "", ""),
        (3, "revenue", "2026-12", "", "SMB"),
        (2, "won_amount", "2026-Q4", "u1", ""),
    ]
    assert store.goals(kpi="won_amount") == [quota.__class__(**{**quota.__dict__, "updated_at": None})]
    removed = store.remove(2, actor="ana")
    assert removed.owner == "u1" and _count(store) == 2
    with pytest.raises(GoalError, match="no goal 2"):
        store.remove(2, actor="ana")
    with store.engine.connect() as conn:
        audit = conn.execute(
            sa.select(
                accounts.app_audit.c.actor, accounts.app_audit.c.action, accounts.app_audit.c.target
            ).order_by(accounts.app_audit.c.occurred_at)
        ).all()
    assert [tuple(r) for r in audit] == [
        ("ana", "goal_added", "goal 1"),
        ("ana", "goal_added", "goal 2"),
        ("bo", "goal_changed", "goal 1"),
        ("ana", "goal_added", "goal 3"),
        ("ana", "goal_changed", "goal 3"),
        ("ana", "goal_removed", "goal 2"),
    ]


GOOD_CSV = """kpi,period,target,segment,region,country,industry,owner
revenue,2026-12,250000,,,,,
churn_rate,2026-Q4,3%,Enterprise,,,,
won_amount,2026-Q4,120000,,,,,Bob
nps,2026,40,,EU,,,
"""


def test_csv_import_adds_and_changes_goals(store: GoalStore) -> None:
    store.add(make_goal("revenue", "2026-12", "1"), actor="t")
    assert store.import_csv(GOOD_CSV, "goals.csv", actor="t", owners=OWNERS) == (3, 1)
    got = {(g.kpi, g.period): g for g in store.goals()}
    assert got[("revenue", "2026-12")].target == 250000.0 and got[("revenue", "2026-12")].goal_id == 1
    assert got[("churn_rate", "2026-Q4")].target == pytest.approx(0.03)
    assert got[("churn_rate", "2026-Q4")].segment == "Enterprise"
    assert got[("won_amount", "2026-Q4")].owner == "u2"  # the name became the id
    assert got[("nps", "2026")].region == "EU"
    # importing the same file again changes nothing but the counts
    assert store.import_csv(GOOD_CSV, "goals.csv", actor="t", owners=OWNERS) == (0, 4)
    assert _count(store) == 4
    # the export is the import format: it reads back to the same goals
    assert goals.parse_csv(goals.goals_csv(store.goals())) == [
        Goal(**{**g.__dict__, "goal_id": None, "updated_by": "", "updated_at": None}) for g in store.goals()
    ]
    assert len(goals.parse_csv(goals.template_csv())) == 3


BAD_CSV = """kpi,period,target,segment,region,country,industry,owner
revenue,2026-12,250000,,,,,
churn_rate,2026-Q4,3,,,,,
funnel,2026-13,5,,,,,
won_amount,2026-Q4,120000,,,,,Carol
revenue,2026-12,1,,,,,
web_ctr,2026,2%,,EU,,,
revenue,2026-11,x,,,,,,extra
"""


def test_csv_import_with_bad_rows_writes_nothing_and_names_file_row_column(store: GoalStore) -> None:
    store.add(make_goal("revenue", "2026-12", "1"), actor="t")
    with pytest.raises(GoalImportError) as caught:
        store.import_csv(BAD_CSV, "q4.csv", actor="t", owners=OWNERS)
    assert [str(p) for p in caught.value.problems] == [
        "q4.csv:3:target: Churn rate target 3 is outside 0 to 1 (write 3% or 0.03 for three percent)",
        "q4.csv:4:kpi: no goals for KPI 'funnel'; one of: " + ", ".join(goals.GOAL_KPIS),
        "q4.csv:4:period: not a period: '2026-13' (write 2026-12 for a month, 2026-Q4 for a quarter, "
        "2026 for a year)",
        "q4.csv:5:owner: no owner 'Carol' in the CRM users table (write a user id or a name)",
        "q4.csv:6:kpi: the same goal as row 2 (KPI, period and slice)",
        "q4.csv:7:region: Web click-through rate is company-wide: no slice",
        "q4.csv:8:: more values than the 8 columns",
    ]
    assert "nothing imported" in str(caught.value)
    assert [(g.kpi, g.target) for g in store.goals()] == [("revenue", 1.0)]  # untouched
    with pytest.raises(GoalImportError) as header:
        store.import_csv("kpi,period,goal\nrevenue,2026,1\n", "h.csv", actor="t")
    assert [str(p) for p in header.value.problems] == [
        "h.csv:1:target: required column missing",
        "h.csv:1:goal: unknown column (the columns are kpi, period, target, segment, region, country, "
        "industry, owner)",
    ]
    with pytest.raises(GoalImportError, match="empty"):
        store.import_csv("", "e.csv", actor="t")


def test_the_store_lives_beside_the_accounts(tmp_path: Path) -> None:
    crm = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    store = GoalStore.open(crm)
    try:
        store.add(make_goal("revenue", "2026", "1000000"), actor="t")
        assert Path(store.engine.url.database) == tmp_path / "crm-auth.sqlite"
        assert not (tmp_path / "crm.duckdb").exists()  # the CRM file is not written
    finally:
        store.dispose()


@pytest.fixture
def crm_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    engine = make_engine(url)
    from crm_data import schema

    schema.create_schema(engine)
    fixtures.load(engine)
    engine.dispose()
    return url


def test_cli_goals_list_import_remove(
    crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "goals.csv"
    good.write_text(
        "kpi,period,target,owner\nwon_amount,2024-Q1,1000,Alice\nwon_amount,2024-Q1,1000,u2\nrevenue,2024-02,100,\n"
    )
    assert cli.main(["goals", "list", "--url", crm_url]) == 0
    assert "no goals yet" in capsys.readouterr().out
    assert cli.main(["goals", "import", str(good), "--url", crm_url]) == 0
    assert capsys.readouterr().out == "imported goals.csv: 3 goal(s) added, 0 changed\n"
    assert cli.main(["goals", "list", "--url", crm_url, "--today", "2024-03-16"]) == 0
    out = capsys.readouterr().out.splitlines()
    # fixture: Alice (u1) won D1 1000 + D3 200 in Q1 2024, Bob (u2) D4 300 + D7 600;
    # February revenue = Y3 20 − Y4 25 = −5
    assert out[1].split() == ["3", "revenue", "2024-02", "100", "-5", "missed", "all", "accounts"]
    assert out[2].split() == ["1", "won_amount", "2024-Q1", "1000", "1200", "achieved", "owner", "Alice"]
    # Q1 up to 16 Mar: 75 of 91 days, so 1000 × 75/91 = 824.2 expected: 900 is on track
    assert out[3].split() == ["2", "won_amount", "2024-Q1", "1000", "900", "on", "track", "owner", "Bob"]
    assert out[4] == "as of 16 Mar 2024 (data up to the day before)"
    assert cli.main(["goals", "remove", "2", "--url", crm_url]) == 0
    assert capsys.readouterr().out == "removed goal 2: won_amount 2024-Q1 target 1000\n"
    bad = tmp_path / "bad.csv"
    bad.write_text("kpi,period,target\nrevenue,2024-02,lots\n")
    assert cli.main(["goals", "import", str(bad), "--url", crm_url]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: bad.csv:2:target: not a number: 'lots' (a plain number with a decimal point, no thousands "
        "separators)",
        "error: 1 problem(s) in bad.csv: nothing imported",
    ]
    assert cli.main(["goals", "remove", "9", "--url", crm_url]) == 2
    assert capsys.readouterr().err == "error: no goal 9 (see `goals list`)\n"
    assert cli.main(["goals", "remove", "x", "--url", crm_url]) == 2
    assert "a goal id is a number" in capsys.readouterr().err
    assert cli.main(["goals", "import", str(tmp_path / "none.csv"), "--url", crm_url]) == 2
    assert capsys.readouterr().err == f"error: no file {tmp_path / 'none.csv'} to import goals from\n"
    store = GoalStore.open(crm_url)
    try:
        with store.engine.connect() as conn:
            details = conn.execute(
                sa.select(accounts.app_audit.c.details).where(accounts.app_audit.c.action == "goals_imported")
            ).scalar_one()
    finally:
        store.dispose()
    assert json.loads(details) == {"added": 3, "changed": 0}


def test_a_write_racing_another_writer_is_retried(store: GoalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # another session stores the same KPI, period and slice between our look-up and our insert
    other = GoalStore(store.engine)
    goal = make_goal("revenue", "2026-12", "500")
    original = GoalStore._find
    raced = []

    def find_then_race(self, conn, wanted):
        found = original(self, conn, wanted)
        if not raced:
            raced.append(True)
            with self.engine.connect() as side:  # a second connection: commits on its own
                side.execute(
                    goals.app_goals.insert().values(
                        goal_id=1, kpi="revenue", period_kind="month", period_start=dt.date(2026, 12, 1),
                        target=400.0, updated_by="other", updated_at=dt.datetime(2026, 12, 6),
                    )
                )  # fmt: skip
                side.commit()
        return found

    store.ensure()
    monkeypatch.setattr(GoalStore, "_find", find_then_race)
    stored = store.add(goal, actor="me")
    assert raced and (stored.goal_id, stored.target) == (1, 500.0)  # the retry changed the other's goal
    assert [(g.goal_id, g.target, g.updated_by) for g in other.goals()] == [(1, 500.0, "me")]
