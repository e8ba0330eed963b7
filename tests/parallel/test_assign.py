"""Column arithmetic with assign(): + - * / // % ** and unary minus, scalars and columns."""

import pandas as pd
import pytest

from tests.helpers.compare import assert_same
from tests.helpers.mpi import timeout

pytestmark = timeout(60)

COLS = ["id", "x", "y", "n", "ki"]

ASSIGNS = {
    "mixed": lambda d: d.assign(c=d.x * 2 + d.y / 3 - 1),
    "int_floordiv_mod": lambda d: d.assign(q=d.n // 7, r=d.n % 7),
    "float_floordiv_mod_negative": lambda d: d.assign(q=(d.x - 10) // 0.75, r=(d.x - 10) % 0.75),
    "pow_and_neg": lambda d: d.assign(p=d.y**2, m=-d.x, i=d.ki**2),
    "columns_only": lambda d: d.assign(c=d.x - d.y * d.n),
    "reflected_scalars": lambda d: d.assign(a=3 - d.x, b=1 / d.y, c=2**d.ki, e=100 // (d.ki + 1)),
    "divide_by_zero": lambda d: d.assign(c=d.n / d.ki, e=d.x / (d.ki - d.ki)),  # inf, -inf, NaN
    "overwrite_existing": lambda d: d.assign(x=d.x * 10),  # keeps the column's position
    "int_plus_float": lambda d: d.assign(c=d.n + d.y, e=d.n * 2, f=d.n - d.ki),
    # the first z is dead (overwritten before use), but z keeps its place before w, as in pandas
    "reassign_new_column_after_another": lambda d: d.assign(z=d.x + 1).assign(w=d.y).assign(z=d.n * 2),
    # a Series argument is the frame before the call (pandas computed it already), a callable
    # the frame so far: a swap, and values of a replaced column (a regression: they read the
    # new values)
    "swap_and_read_replaced": lambda d: d.assign(x=d.y, y=d.x, c=d.x * 2, e=lambda f: f.x + 1),
}


@pytest.mark.parametrize("query", list(ASSIGNS), ids=list(ASSIGNS))
def test_assign(dir6, query):
    q = ASSIGNS[query]
    got = q(dir6.open()[COLS]).compute()
    assert_same(got, q(dir6.pdf[COLS]))


def test_assign_then_filter_on_new_column(dir6):
    def q(d):
        e = d.assign(c=d.x * 2 - d.y)
        return e[e.c > 20][["id", "c"]]

    assert_same(q(dir6.open()).compute(), q(dir6.pdf), reset_index=True)


def test_assign_then_groupby_new_key(dir6):
    def q(d):
        e = d.assign(bucket=d.n // 100, v=d.x * d.y)
        return e.groupby("bucket")[["v", "n"]].sum()

    assert_same(q(dir6.open()).compute(), q(dir6.pdf))


def test_assign_on_hdf5(catalog):
    ds = catalog["h5_compound"]
    q = lambda d: d.assign(z=(d.noisy - 1e9) * d.y + d.n % 3)[["id", "z"]]  # noqa: E731
    assert_same(q(ds.open()).compute(), q(ds.pdf))


def test_arithmetic_on_int_with_nulls(dir6):
    df, ref = dir6.open(), dir6.pdf
    got = df.assign(m=df.nn + 1, k=df.nn * df.ki)[["id", "m", "k"]].compute()
    exp = ref.assign(m=ref.nn + 1, k=ref.nn * ref.ki)[["id", "m", "k"]]
    # ints with nulls: Int64 or float64 are both acceptable; compare as float64
    got = got.astype({"m": "float64", "k": "float64"})
    assert_same(got, exp)
    assert pd.isna(got.m).sum() == ref.nn.isna().sum()
