"""Issue 14, point 9: every definition reads in words first and gives the formula second —
on the definition card beside each chart, in the card's help and in every export."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from kpis import registry
from ui.cards import definition_text

KEYS = [entry.key for entry in registry.KPIS]
#: what a formula looks like: a code name, an equals or a division sign
FORMULA_MARK = re.compile(r"[a-z]+_[a-z_]+|=|÷|Σ")


@pytest.mark.parametrize("key", KEYS)
def test_every_kpi_has_words_before_its_formula(key):
    words = registry.in_words(key)
    assert words, f"{key}: no plain-words definition in kpis.registry.IN_WORDS"
    assert not FORMULA_MARK.search(words), f"{key}: the words hold a formula: {words!r}"
    text = definition_text(key)
    assert text.startswith(words)
    assert text.index("Formula:") > len(words) - 1
    assert text.endswith(registry.get(key).definition)


def _card(key: str) -> None:
    from ui.cards import definition_card

    definition_card(key)


def test_the_definition_card_shows_words_then_the_formula():
    at = AppTest.from_function(_card, args=("win_rate",)).run()
    caption = at.caption[0].value
    words = caption.index("Of the deals closed in a period, the share that were won.")
    formula = caption.index("win_rate = won ÷ (won + lost)")
    assert caption.index("Formula:") < formula and words < formula
