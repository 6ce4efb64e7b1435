"""Fixtures of the KPI tests.

``visits_path``: ``kpis.stage_durations`` has two paths — a window over the base tables,
and the stored visits of :mod:`kpis.stage_visits` — that must give the same frames. A test
requesting it runs once per path: it calls ``visits_path(engine)`` once its deals are
loaded; on ``stored`` the visits are built then, and on either path the other one fails,
so each run really takes its own.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from kpis import sales, stage_visits


def _fail(what: str) -> Callable[..., object]:
    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"stage_durations took the {what} path")

    return refuse


@pytest.fixture(params=("base", "stored"))
def visits_path(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[sa.Engine], sa.Engine]:
    """``visits_path(engine)`` -> ``engine``, with ``stage_durations`` made to read the base
    tables (``base``) or the stored visits built now (``stored``)."""
    monkeypatch.setenv("CRM_ROLLUPS", "on")

    def take(engine: sa.Engine) -> sa.Engine:
        if request.param == "stored":
            with engine.begin() as conn:
                stage_visits.refresh(conn)
            monkeypatch.setattr(sales, "_stage_visits", _fail("base-table"))
        else:
            monkeypatch.setattr(sales, "_stored_visits", _fail("stored-visits"))
        return engine

    return take
