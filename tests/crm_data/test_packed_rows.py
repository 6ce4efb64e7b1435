"""crm_data.dialects.packed_rows / unpack_rows: a group's rows as one byte string on PostgreSQL
(``string_agg`` of the values' binary send forms), unpacked to the exact numbers the rows carry;
None on DuckDB and SQLite, which keep their own fetch."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import packed_rows, unpack_rows

#: (position, probability): doubles whose shortest decimal form is long or whose last bit a
#: text round trip could lose
ROWS = [(1, 0.1), (1, 1 / 3), (1, 2.0**-40 + 1.0), (2, 1e-300), (2, -7.5), (2, 123456.789012345678)]


def test_packed_rows_give_the_rows_numbers_bit_for_bit(db: sa.Engine) -> None:
    stages = schema.pipeline_stages
    with db.begin() as conn:
        conn.execute(
            stages.insert(),
            [
                dict(stage=f"S{i}", position=pos, probability=p, is_closed=False, is_won=False)
                for i, (pos, p) in enumerate(ROWS)
            ],
        )
    small = sa.cast(stages.c.position * 3, sa.SmallInteger())
    probability = sa.cast(stages.c.probability, sa.Double())
    packed = packed_rows(db.dialect, probability, small)
    if db.dialect.name != "postgresql":
        assert packed is None
        return
    with db.connect() as conn:
        by_group = {
            key: unpack_rows(rows, probability, small)
            for key, rows in conn.execute(
                sa.select(stages.c.position, packed).group_by(stages.c.position).order_by(stages.c.position)
            )
        }
    for position in (1, 2):
        doubles, smalls = by_group[position]
        expected = [p for pos, p in ROWS if pos == position]
        assert doubles.dtype == np.float64 and smalls.dtype == np.int16
        assert sorted(doubles.tobytes()[i : i + 8] for i in range(0, 8 * len(doubles), 8)) == sorted(
            np.array(expected, dtype=np.float64).tobytes()[i : i + 8] for i in range(0, 8 * len(expected), 8)
        )
        assert smalls.tolist() == [3 * position] * len(expected)
    nothing = unpack_rows(None, probability, small)
    assert [len(column) for column in nothing] == [0, 0]
    assert [column.dtype for column in nothing] == [np.float64, np.int16]
