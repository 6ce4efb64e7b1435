"""The customer base summed from subscription spans (``kpis.activity.span_statement``, the
direct path of a product filter) against the per (period, account) grid
(``kpis.activity.grid_statement``) and against numbers worked out by hand, on every database
kind; and the statement templates' parameters against the filters' values.

Hand-written rows (product PX; instants t0 = 1 Jan, t1 = 1 Feb, t2 = 1 Mar, t3 = 1 Apr 2024):

* X1: PX 100 from 2023-06-01, running; PX 50 from 10 Jan to exactly 1 Mar; PY 5 running (not PX).
  MRR at t0..t3: 100, 150, 100, 100.
* X2: PX 40 2023-01-01 .. 15 Jan; PX 60 from 25 Jan, running (a gap inside January).
  40, 60, 60, 60.
* X3: PX, MRR NULL (0), from exactly 1 Feb to 15 Mar: inactive, 0, 0, inactive.
* X4: PX 70 from 5 Jan to 25 Jan: active at no instant, in no count.
* X5: PX 30 2023-05-01 .. exactly 1 Feb; PX 20 from exactly 1 Feb (back to back at t1).
  30, 20, 20, 20.
* X6: PX 10 from 2023-01-01 to 20 Mar: 10, 10, 10, inactive.
* X7: PY 999 only: outside the PX filter.
* X8: PX 15 2023-10-01 .. 20 Jan; PX 25 from 10 Feb (inactive at t1): 15, inactive, 25, 25.

January (t0 -> t1): at start X1, X2, X5, X6, X8 = 5 (MRR 100 + 40 + 30 + 10 + 15 = 195); at
end X1, X2, X3, X5, X6 = 5; new X3; churned X8 (churned MRR 15); retained X1, X2, X5, X6 = 4;
expansion X1 50 + X2 20 = 70; contraction X5 10. Σx² = 100² + 40² + 30² + 10² + 15² = 12,825;
kept Σy² = 150² + 60² + 20² + 10² = 26,600; Σxy = 15,000 + 2,400 + 600 + 100 = 18,100;
g = min(x, y) = 100, 40, 20, 10: Σg² = 12,100; Σxg = 10,000 + 1,600 + 600 + 100 = 12,300.

February (t1 -> t2): at start X1 150, X2 60, X3 0, X5 20, X6 10 = 5 (MRR 240); at end those
and X8 = 6; new X8; churned none; retained 5; contraction X1 50. Σx² = 22,500 + 3,600 + 400 +
100 = 26,600; Σy² = 10,000 + 3,600 + 400 + 100 = 14,100; Σxy = 15,000 + 3,600 + 400 + 100 =
19,100; g = 100, 60, 0, 20, 10: Σg² = 14,100; Σxg = 19,100.

March (t2 -> t3): at start X1 100, X2 60, X3 0, X5 20, X6 10, X8 25 = 6 (MRR 215); at end X1,
X2, X5, X8 = 4; churned X3, X6 = 2 (churned MRR 0 + 10); retained 4, unchanged: Σx² = 10,000
+ 3,600 + 400 + 100 + 625 = 14,725 over the six; Σy² = Σxy = Σg² = Σxg = 14,625 over the four.

Quarter Q1 (t0 -> t3): at start 5 (MRR 195), at end X1, X2, X5, X8 = 4; churned X6 (10);
retained 4: X2 +20, X8 +10 (expansion 30), X5 −10 (contraction 10).
"""

from __future__ import annotations

import importlib
from datetime import datetime as T

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data.scope import Scope
from kpis import Filters, customer_base
from kpis.activity import CHANGE, SINGLE, STEADY, fold_spans
from kpis.core import period_starts
from kpis.filters import named_values
from tests.kpis import fixtures
from tests.kpis.test_customer_base_templates import CASES

MODULE = importlib.import_module("kpis.customer_base")

#: Owner U1 holds every account but X7 (U2).
ACCOUNTS = [
    dict(account_id=f"X{i}", name=f"X {i}", created_at=T(2022, 1, 1), owner_id="U2" if i == 7 else "U1")
    for i in range(1, 9)
]
PRODUCTS = [
    dict(product_id="PX", name="Test", family="Test", list_price=1.0),
    dict(product_id="PY", name="Other", family="Test", list_price=1.0),
]


def _sub(sid: str, account: str, mrr: float | None, start: T, end: T | None, product: str = "PX") -> dict:
    return dict(
        subscription_id=sid, account_id=account, product_id=product, mrr=mrr, started_at=start, ended_at=end
    )


SUBSCRIPTIONS = [
    _sub("X1a", "X1", 100.0, T(2023, 6, 1), None),
    _sub("X1b", "X1", 50.0, T(2024, 1, 10), T(2024, 3, 1)),
    _sub("X1c", "X1", 5.0, T(2023, 6, 1), None, "PY"),
    _sub("X2a", "X2", 40.0, T(2023, 1, 1), T(2024, 1, 15)),
    _sub("X2b", "X2", 60.0, T(2024, 1, 25), None),
    _sub("X3a", "X3", None, T(2024, 2, 1), T(2024, 3, 15)),
    _sub("X4a", "X4", 70.0, T(2024, 1, 5), T(2024, 1, 25)),
    _sub("X5a", "X5", 30.0, T(2023, 5, 1), T(2024, 2, 1)),
    _sub("X5b", "X5", 20.0, T(2024, 2, 1), None),
    _sub("X6a", "X6", 10.0, T(2023, 1, 1), T(2024, 3, 20)),
    _sub("X7a", "X7", 999.0, T(2023, 1, 1), None, "PY"),
    _sub("X8a", "X8", 15.0, T(2023, 10, 1), T(2024, 1, 20)),
    _sub("X8b", "X8", 25.0, T(2024, 2, 10), None),
]

MEASURES = [
    "customers_at_start", "new_customers", "churned", "customers_at_end", "retained_customers",
    "mrr_at_start", "expansion", "contraction", "churned_mrr",
]  # fmt: skip
MONTHS = {
    "customers_at_start": [5, 5, 6],
    "new_customers": [1, 1, 0],
    "churned": [1, 0, 2],
    "customers_at_end": [5, 6, 4],
    "retained_customers": [4, 5, 4],
    "mrr_at_start": [195.0, 240.0, 215.0],
    "expansion": [70.0, 0.0, 0.0],
    "contraction": [10.0, 50.0, 0.0],
    "churned_mrr": [15.0, 0.0, 10.0],
}
QUARTER = {
    "customers_at_start": [5],
    "new_customers": [0],
    "churned": [1],
    "customers_at_end": [4],
    "retained_customers": [4],
    "mrr_at_start": [195.0],
    "expansion": [30.0],
    "contraction": [10.0],
    "churned_mrr": [10.0],
}
#: Σx², kept Σy², Σxy, Σg², Σxg per month (the module docstring).
SPREAD_MONTHS = [
    (12825.0, 26600.0, 18100.0, 12100.0, 12300.0),
    (26600.0, 14100.0, 19100.0, 14100.0, 19100.0),
    (14725.0, 14625.0, 14625.0, 14625.0, 14625.0),
]
Q1 = Filters("2024-01-01", "2024-04-01", products=["PX"])


@pytest.fixture
def spans_db(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    monkeypatch.setenv("CRM_ROLLUPS", "off")
    return fixtures.load_rows(
        db, {"accounts": ACCOUNTS, "products": PRODUCTS, "subscriptions": SUBSCRIPTIONS}
    )


@pytest.fixture
def crm(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    monkeypatch.setenv("CRM_ROLLUPS", "off")
    return fixtures.load(db)


def _both_paths(engine: sa.Engine, f: Filters, freq: str, monkeypatch: pytest.MonkeyPatch) -> list:
    """customer_base(f) by spans and by the grid (templates rebuilt for each path)."""
    frames = []
    for by_spans in (True, False):
        MODULE._TEMPLATES.clear()
        with monkeypatch.context() as patched:
            patched.setattr(MODULE, "_by_spans", lambda _f, by_spans=by_spans: by_spans)
            frames.append(customer_base(engine, f, freq))
    MODULE._TEMPLATES.clear()
    return frames


def _sums_both_paths(engine: sa.Engine, f: Filters, freq: str, monkeypatch: pytest.MonkeyPatch) -> list:
    """The base statement's folded sums (period index -> the 14 activity sums, then the cost
    sums), by spans and by the grid: the sums of squares and products the frame does not show."""
    periods = period_starts(f.start, f.end, freq)
    out = []
    for by_spans in (True, False):
        with monkeypatch.context() as patched:
            patched.setattr(MODULE, "_by_spans", lambda _f, by_spans=by_spans: by_spans)
            statement = MODULE._build_base_statement(engine.dialect, f, freq, True, periods)
            with engine.connect() as c:
                out.append(MODULE._fold(c.execute(statement), len(periods), True))
    return out


def test_spans_and_grid_give_the_hand_worked_numbers(
    spans_db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for frame in _both_paths(spans_db, Q1, "month", monkeypatch):
        for column, expected in MONTHS.items():
            assert list(frame[column]) == pytest.approx(expected, abs=1e-9), column
        assert frame["customers_at_start"].dtype == "int64"
    for sums in _sums_both_paths(spans_db, Q1, "month", monkeypatch):
        spread = [sums[i][len(MEASURES) : len(MEASURES) + 5] for i in range(3)]
        assert spread == [pytest.approx(row, abs=1e-9) for row in SPREAD_MONTHS]
    for frame in _both_paths(spans_db, Q1, "quarter", monkeypatch):
        for column, expected in QUARTER.items():
            assert list(frame[column]) == pytest.approx(expected, abs=1e-9), column


def test_the_product_filter_reads_spans(spans_db: sa.Engine) -> None:
    """A product filter takes the span statement (the default path), with the same numbers."""
    assert MODULE._by_spans(Q1) and not MODULE._by_spans(Q1.replace(products=[], regions=["EMEA"]))
    frame = customer_base(spans_db, Q1, "month")
    assert list(frame["churned"]) == MONTHS["churned"]
    assert list(frame["expansion"]) == pytest.approx(MONTHS["expansion"])


def test_an_owner_filter_reads_spans(spans_db: sa.Engine) -> None:
    """An owner list (chosen or the scope's) takes the span statement too (on PostgreSQL the
    grid joined the owner's accounts after a range join over every subscription). Owner U1,
    no product filter: X7 (U2) is out, X1's PY subscription (5, running) is in, so the MRR
    at start is 5 more each month (X1: 105, 155, 105 at t0..t2) and every count, expansion,
    contraction and churned MRR is as with PX alone (X1 is retained throughout)."""
    owner = Filters("2024-01-01", "2024-04-01", owners=["U1"])
    assert MODULE._by_spans(owner)
    assert MODULE._by_spans(Filters("2024-01-01", "2024-04-01", scope=Scope(owners=("U1",))))
    frame = customer_base(spans_db, owner, "month")
    for column, expected in MONTHS.items():
        if column == "mrr_at_start":
            expected = [200.0, 245.0, 220.0]
        assert list(frame[column]) == pytest.approx(expected, abs=1e-9), column


def test_spans_and_grid_agree_on_every_template_case(crm: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture's filters of every shape (test_customer_base_templates.CASES), both ways."""
    for f, freq in CASES:
        by_spans, by_grid = _both_paths(crm, f, freq, monkeypatch)
        pd.testing.assert_frame_equal(by_spans, by_grid, obj=f"{f} {freq}")


def test_fold_spans_by_hand() -> None:
    # 3 periods. SINGLE (ka=1, kb=3): 2 accounts, Σm = 30, Σm² = 500: new in period 0, steady in
    # period 1, churned in period 2. STEADY periods 0..1: 1 account, M = 7. CHANGE in period 2.
    rows = [
        (SINGLE, 1, 3, 2, 0, 0, 2, 2, 30.0, 0.0, 0.0, 0.0, 500.0, 500.0, 500.0, 500.0, 500.0),
        (STEADY, 0, 1, 1, 0, 0, 1, 1, 7.0, 0.0, 0.0, 0.0, 49.0, 49.0, 49.0, 49.0, 49.0),
        (CHANGE, 2, 2, 1, 0, 1, 0, 0, 5.0, 0.0, 0.0, 5.0, 25.0, 0.0, 0.0, 0.0, 0.0),
    ]
    out = fold_spans(rows, 3)
    assert out[0][:5] == [1, 2, 0, 3, 1] and out[0][5] == 7.0
    assert out[1][:5] == [3, 0, 0, 3, 3] and out[1][5] == 37.0 and out[1][9] == 549.0
    assert out[2][:5] == [3, 0, 3, 0, 0] and out[2][5] == 35.0 and out[2][8] == 35.0
    assert out[2][9] == 525.0 and out[2][10] == 0.0


@pytest.mark.parametrize("by_spans", [True, False])
def test_template_parameters_match_the_filter_values(by_spans: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every named parameter of a template gets a value from ``_base_params`` — the values of
    the filters it is executed for, not of the filters it was built from — and the bound
    statement of those filters has the same values in the same places."""
    monkeypatch.setattr(MODULE, "_by_spans", lambda _f: by_spans)
    dialect = sa.create_engine("sqlite://").dialect
    for f, freq in CASES:
        periods = period_starts(f.start, f.end, freq)
        other = f.replace(start="2020-01-01", end="2021-01-01") if freq == "month" else f
        with named_values():
            template = MODULE._build_base_statement(dialect, other, freq, True, periods)
        compiled = template.compile(dialect=dialect)
        params = MODULE._base_params(f, freq, periods)
        named = set(compiled.binds) - {b for b, p in compiled.binds.items() if p.value is not None}
        assert named <= set(params), f"{f}: no value for {sorted(named - set(params))}"
        templated = compiled.construct_params(params)
        bound = MODULE._build_base_statement(dialect, f, freq, True, periods).compile(dialect=dialect)
        values = [templated[name] for name in compiled.positiontup or []]
        expected = [bound.construct_params()[name] for name in bound.positiontup or []]
        assert _flat(values) == _flat(expected), f"{f} {freq}"


def _flat(values: list) -> list:
    """The values in order, lists spread out, without ints (the bound grid binds its period
    indexes, a template writes them into the SQL)."""
    out = []
    for value in values:
        out.extend(value if isinstance(value, list | tuple) else [value])
    return [v for v in out if not isinstance(v, int)]
