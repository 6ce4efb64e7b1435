"""The Forecast page reads back the forecast computed ahead (``python -m crm_data forecasts``,
as the demo and every import do): a new server's first view shows it without importing
statsmodels (≈ 0.8 s of that view) and without fitting a model.

The page runs in a fresh interpreter (``AppTest``), so ``sys.modules`` shows what the page
itself imported; the demo database is this test's own (a store is written beside it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crm_data.cli import main
from forecasting.store import STORE_VARIABLE, forget_opened
from tests.conftest import write_demo_database

ROOT = Path(__file__).resolve().parents[2]

PAGE = """
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("pages/6_Forecast.py", default_timeout=120).run()
print(json.dumps({
    "exceptions": [str(e.value) for e in at.exception],
    "model": [m.value for m in at.markdown if m.value.startswith("**Model used:**")],
    "statsmodels": "statsmodels" in sys.modules,
}))
"""


def test_the_first_view_reads_the_forecast_computed_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = write_demo_database(tmp_path, 120, 11)
    monkeypatch.setenv(STORE_VARIABLE, "on")
    try:
        assert main(["forecasts", "--url", url]) == 0
    finally:
        forget_opened()
    env = {**os.environ, "CRM_DATABASE_URL": url, STORE_VARIABLE: "on"}
    done = subprocess.run(
        [sys.executable, "-c", PAGE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    assert shown["exceptions"] == []
    assert len(shown["model"]) == 1  # a forecast is shown …
    assert shown["statsmodels"] is False  # … read back: fitting one imports statsmodels
