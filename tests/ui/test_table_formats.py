"""Issue 14, point 9: one place formats every table column by meaning
(``ui.report.column_config``): headers as words, counts as integers, expected counts to one
decimal, every rate (MAPE too) as a percentage, money with the currency, days."""

from __future__ import annotations

import pandas as pd

from ui.report import (
    CELL_PADDING_PX,
    CHAR_PX,
    HEADER_PADDING_PX,
    column_config,
    fitted_widths,
    natural_widths,
)


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
            "Complaints expected": [2.3333, 0.5],
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
    assert formats["Complaints expected"] == ("Complaints expected", "%,.1f")
    assert formats["win_rate"] == ("Win rate", "percent")
    assert formats["mape"] == ("MAPE", "percent")
    assert formats["coverage80"] == ("Coverage of the 80 % interval", "percent")
    assert formats["lost_mrr"] == ("Lost MRR", "dollar")
    assert formats["days_in_stage"] == ("Days in stage", "%,.1f")
    assert formats["account_id"][0] == "Account ID"
    assert formats["end_reason"][0] == "End reason"


def test_a_measure_without_a_unit_is_no_count_and_no_raw_float():
    frame = pd.DataFrame(
        {
            "estimate": [0.25, 1.0],
            "Recency": [4.428571428571429, 5.0],
            "low95": [0.0318, 0.04],
            "p-value": [3.3e-05, 0.2],
        }
    )
    formats = _formats(frame)
    assert formats["estimate"][1] == "%,.2f" and formats["Recency"][1] == "%,.2f"
    assert formats["low95"] == ("95 % low", "%.2g")
    assert formats["p-value"][1] == "%.2g"


def test_the_page_own_entries_win_and_get_a_label():
    frame = pd.DataFrame({"mae": [1.0, 2.5], "chosen": [True, False]})
    config = column_config(frame, {"mae": {"type_config": {"type": "number", "format": "dollar"}}})
    assert config["mae"]["type_config"]["format"] == "dollar"
    assert config["mae"]["label"] == "MAE"
    assert config["chosen"]["label"] == "Chosen"


def test_widths_are_left_alone_when_the_columns_fit():
    assert fitted_widths({"a": 100.0, "b": 200.0}, 400) is None


def test_the_widest_columns_share_one_cap_and_the_total_fits():
    # 950 px of room; natural widths 80 + 120 + 600 + 500 = 1300: the cap c solves
    # 80 + 120 + 2c = 950 -> c = 375; the narrow columns keep their widths
    widths = fitted_widths({"id": 80.0, "stage": 120.0, "comment": 600.0, "name": 500.0}, 950)
    assert widths is not None
    assert widths["id"] == 80 and widths["stage"] == 120
    assert abs(widths["comment"] - 375) <= 1 and abs(widths["name"] - 375) <= 1
    assert sum(widths.values()) <= 950


def test_natural_widths_follow_the_longest_header_or_cell():
    shown = pd.DataFrame({"Stage": ["Qualification", "Won"], "n": [1, 2]})
    widths = natural_widths(shown, {"n": {"label": "Open deals in stage"}})
    assert widths["Stage"] == len("Qualification") * CHAR_PX + CELL_PADDING_PX
    assert widths["n"] == len("Open deals in stage") * CHAR_PX + HEADER_PADDING_PX


def test_an_all_missing_text_column_has_a_header_width():
    shown = pd.DataFrame(
        {
            "comment": pd.Series([None, None], dtype=object),
            "empty": pd.Series([], dtype=object).reindex([0, 1]),
        }
    )
    widths = natural_widths(shown, {})
    assert widths["comment"] == len("comment") * CHAR_PX + HEADER_PADDING_PX
