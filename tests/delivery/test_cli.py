"""``crm-insights alerts add | list | run | remove`` on the fixture CRM, with a real SMTP server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crm_data.cli import main
from tests.conftest import ROOT
from tests.delivery import fixtures
from tests.delivery.servers import smtp_server


@pytest.fixture
def url(tmp_path: Path) -> str:
    return fixtures.write(tmp_path / "crm.duckdb")


def test_add_list_run_twice_and_remove(url: str, monkeypatch, capsys) -> None:
    args = ["--url", url]
    assert main(["alerts", "add", *args, "--kpi", "churn_rate", "--condition", "above", "--threshold", "3%",
                 "--segment", "Enterprise", "--to", "lead@example.com"]) == 0  # fmt: skip
    assert capsys.readouterr().out == (
        "added rule 1: Churn rate (segments Enterprise), month above 3.0 % → lead@example.com\n"
    )
    assert main(["alerts", "add", *args, "--kpi", "nps", "--condition", "change_by", "--threshold=-60",
                 "--to", "cx@example.com", "--name", "NPS collapse"]) == 0  # fmt: skip
    capsys.readouterr()
    with smtp_server() as (port, received):
        monkeypatch.setenv("CRM_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("CRM_SMTP_PORT", str(port))
        monkeypatch.setenv("CRM_SMTP_FROM", "crm@example.com")
        monkeypatch.setenv("CRM_SMTP_STARTTLS", "off")
        assert main(["alerts", "run", *args, "--today", "2026-12-06"]) == 0
        first = capsys.readouterr().out
        assert main(["alerts", "run", *args, "--today", "2026-12-06"]) == 0
        second = capsys.readouterr().out
    assert first.splitlines() == [
        "rule 1 [ALERT] Churn rate (segments Enterprise), Nov 2026: 25.0 % is above 3.0 %",
        "rule 2 [ok] Net Promoter Score, Nov 2026: -10.0, fell by 50.0 points from +40.0 in Oct 2026",
        "rule 1 2026-11-01: sent to lead@example.com",
    ]
    assert second.splitlines()[0] == (
        "rule 1 [fired before] Churn rate (segments Enterprise), Nov 2026: 25.0 % is above 3.0 %"
    )
    assert len(second.splitlines()) == 2  # nothing sent
    assert len(received.messages) == 1
    assert main(["alerts", "list", *args]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "   1  Churn rate (segments Enterprise), month above 3.0 % → lead@example.com; last alert 2026-11-01",
        "   2  NPS collapse: Net Promoter Score, month: falls by 60.0 points or more on the previous month "
        "→ cx@example.com; no alert yet",
    ]
    assert main(["alerts", "remove", *args, "2"]) == 0
    assert main(["alerts", "remove", *args, "2"]) == 1
    assert "error: no alert rule 2" in capsys.readouterr().err
    from crm_data.accounts import AccountStore

    audit = AccountStore.open(url).audit_log(actions=["alert_rule_added", "alert_rule_removed"])
    assert sorted(zip(audit["action"], audit["target"], strict=True)) == [
        ("alert_rule_added", "alert 1"), ("alert_rule_added", "alert 2"), ("alert_rule_removed", "alert 2")
    ]  # fmt: skip


def test_a_bad_rule_exits_1_and_a_failed_delivery_exits_1(url: str, monkeypatch, capsys) -> None:
    assert main(["alerts", "add", "--url", url, "--kpi", "churn_rate", "--condition", "above",
                 "--threshold", "3", "--to", "a@example.com"]) == 1  # fmt: skip
    assert "error: churn_rate is a rate between 0 and 1: write 3% or 0.03" in capsys.readouterr().err
    assert main(["alerts", "add", "--url", url, "--kpi", "nps", "--condition", "change_by",
                 "--threshold=-10", "--to", "a@example.com"]) == 0  # fmt: skip
    monkeypatch.delenv("CRM_SMTP_HOST", raising=False)
    assert main(["alerts", "run", "--url", url, "--today", "2026-12-06"]) == 1
    captured = capsys.readouterr()
    assert "FAILED (recorded; the next run tries again): a@example.com" in captured.out
    assert "1 delivery(ies) failed" in captured.err
    monkeypatch.setenv("CRM_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("CRM_SMTP_PORT", "smtp")
    assert main(["alerts", "run", "--url", url]) == 2
    assert "CRM_SMTP_PORT must be a port number" in capsys.readouterr().err


def test_crm_data_does_not_import_delivery() -> None:
    code = "import sys, crm_data.cli; crm_data.cli._parser(); print(any(m.startswith('delivery') for m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_run_without_a_crm_database_exits_2_and_creates_nothing(tmp_path: Path, capsys) -> None:
    url = f"duckdb:///{tmp_path / 'none' / 'crm.duckdb'}"
    assert main(["alerts", "run", "--url", url]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
