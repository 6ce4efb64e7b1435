"""crm_data.dialects.fetch_columns: a result as one numpy array per column, on every database
(DuckDB through its own columnar fetch, :func:`crm_data.dialects.fetches_columns`)."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import fetch_columns, fetches_columns


def test_fetch_columns_gives_one_array_per_column_by_label(db: sa.Engine) -> None:
    with db.begin() as conn:
        conn.execute(
            schema.pipeline_stages.insert(),
            [
                dict(stage="Lead", position=1, probability=0.1, is_closed=False, is_won=False),
                dict(stage="Won", position=2, probability=1.0, is_closed=True, is_won=True),
            ],
        )
    stages = schema.pipeline_stages
    with db.connect() as conn:
        arrays = fetch_columns(
            conn,
            sa.select((stages.c.position * 10).label("tens"), stages.c.probability.label("p")).order_by(
                stages.c.position
            ),
        )
        empty = fetch_columns(conn, sa.select(stages.c.position.label("k")).where(stages.c.position > 5))
    assert list(arrays) == ["tens", "p"]
    assert arrays["tens"].tolist() == [10, 20] and isinstance(arrays["tens"], np.ndarray)
    assert arrays["p"].tolist() == [0.1, 1.0]
    assert len(empty["k"]) == 0
    assert fetches_columns(db.dialect) is (db.dialect.name == "duckdb")
