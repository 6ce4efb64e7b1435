"""Issue 14, point 9: one place formats every table column by meaning
(``ui.report.column_config``): headers as words, counts as integers, expected counts to one
decimal, every rate (MAPE too) as a percentage, money with the currency, days."""

from __future__ import annotations

import pandas as pd

from ui.report import column_config


def _formats(frame: pd.DataFrame) -> dict[str, tuple[str | None, object]]:
    config = column_config(frame)
    out = {}
    for name in frame.columns:
        entry = config.get(name) or {}
        out[name] = (entry.get("label"), (entry.get("type_config") or {}).get("format"))
    return out


def test_columns_are_labelled_and_formatted_by_meaning():
    frame = pd.DataFrame(
        {
            "deals": pd.array([3, 12], dtype="int64"),
            "responses": [4.0, 1200.0],  # a count read back as floats
            "expected": [2.34, 0.5],  # complaint spikes' expected weekly count
            "expected_transactions": [1.26, 3.0],
            "win_rate": [0.25, 0.5],
            "mape": [0.0842, 0.12],
            "coverage80": [0.8, 0.75],
            "lost_mrr": [120.5, 99.0],
            "days_in_stage": [3.5, 12.0],
            "account_id": ["A1", "A2"],
            "end_reason": ["poor_support", "price"],
        }
    )
    formats = _formats(frame)
    assert formats["deals"] == ("Deals", "%,d")
    assert formats["responses"] == ("Responses", "%,d")
    assert formats["expected"] == ("Expected", "%,.1f")
    assert formats["expected_transactions"] == ("Expected transactions", "%,.1f")
    assert formats["win_rate"] == ("Win rate", "percent")
    assert formats["mape"] == ("MAPE", "percent")
    assert formats["coverage80"] == ("Coverage of the 80 % interval", "percent")
    assert formats["lost_mrr"] == ("Lost MRR", "dollar")
    assert formats["days_in_stage"] == ("Days in stage", "%,.1f")
    assert formats["account_id"][0] == "Account ID"
    assert formats["end_reason"][0] == "End reason"


def test_a_fractional_measure_is_no_count():
    formats = _formats(pd.DataFrame({"estimate": [0.25, 1.0], "score": [5.0, 6.5]}))
    assert formats["estimate"][1] is None and formats["score"][1] is None


def test_the_page_own_entries_win_and_get_a_label():
    frame = pd.DataFrame({"mae": [1.0, 2.5], "chosen": [True, False]})
    config = column_config(frame, {"mae": {"type_config": {"type": "number", "format": "dollar"}}})
    assert config["mae"]["type_config"]["format"] == "dollar"
    assert config["mae"]["label"] == "MAE"
    assert config["chosen"]["label"] == "Chosen"
