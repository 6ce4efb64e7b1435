"""``benchmarks.floor_duckdb``: the hand-written DuckDB SQL computes the same Overview
headline numbers as the product for one owner, one product and region × industry (the
filter rules of ``kpis.filters.scope``), on a small demo. Never wall-clock times."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import floor_duckdb, overview, pages
from crm_data.engines import make_engine
from kpis import Filters
from tests.conftest import DEMO_TODAY, write_demo_database


def test_the_floor_agrees_with_the_product_for_owners_and_products(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_ROLLUPS", "off")  # owners and products take the direct path anyway
    engine = make_engine(write_demo_database(tmp_path, 300, 7), read_only=True)
    start, end = overview.window(DEMO_TODAY)
    s = pages._slices(engine)
    try:
        with engine.connect() as held:
            con = held.connection.driver_connection
            for floor_args, lists in [
                ({"owner": s["owner"]}, {"owners": [s["owner"]]}),
                ({"product": s["product"]}, {"products": [s["product"]]}),
                ({"region": s["region"], "industry": s["industry"]}, {"regions": [s["region"]], "industries": [s["industry"]]}),
                ({"owner": s["owner"], "product": s["product"]}, {"owners": [s["owner"]], "products": [s["product"]]}),
            ]:  # fmt: skip
                floor = floor_duckdb.headline(floor_duckdb.overview(con, start, end, **floor_args))
                product = overview.headline(overview.product_overview(engine, Filters(start, end, **lists)))
                assert floor["won"] > 0 and floor["revenue"] != 0, floor_args  # something selected
                assert overview.disagreements(floor, product) == [], floor_args
            everything = floor_duckdb.headline(floor_duckdb.overview(con, start, end))
            assert everything["won"] > floor["won"]  # ... and less than everything
    finally:
        engine.dispose()
