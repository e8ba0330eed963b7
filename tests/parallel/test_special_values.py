"""Reductions, describe() and group-bys over special values spread across blocks: ±inf in
float columns (pandas gives NaN for inf - inf and for every variance with an inf) and int64
values near 2**62 (pandas' mean accumulates in float64 and never wraps; its sum wraps)."""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from tests.helpers.compare import ILL_RTOL, assert_same
from tests.helpers.mpi import rank, timeout, world

pytestmark = timeout(60)

# rows per file: several blocks of 500 (conftest), an empty file, small files
FILES = [600, 0, 300, 450, 1100, 80, 230]
BIG = 2**62


@pytest.fixture(scope="module")
def special(shared_dir):
    d = os.path.join(shared_dir, "special_values")
    if rank() == 0:
        os.makedirs(d)
        rng = np.random.default_rng(2024)
        start = 0
        for f, n in enumerate(FILES):
            k = rng.choice(list("abcde"), n)
            x = rng.normal(10.0, 3.0, n)
            x[rng.random(n) < 0.1] = np.nan
            # sparse ±inf: per group some blocks have +inf, some -inf, some both, some none
            x[rng.random(n) < 0.004] = np.inf
            x[rng.random(n) < 0.004] = -np.inf
            pinf = rng.normal(size=n)
            if f == 4:
                pinf[7] = np.inf  # +inf only (sum/mean inf, var NaN)
            across = rng.normal(size=n)
            if f == 0:
                across[3] = np.inf  # +inf in the first file, -inf in a later one: NaN
            if f == 5:
                across[9] = -np.inf
            within = rng.normal(size=n)
            if f == 2:
                within[[4, 250]] = [np.inf, -np.inf]  # both in one block: NaN
            big = rng.integers(BIG, BIG + 2**40, n).astype(np.int64)
            near = rng.integers(2**63 - 2**20, 2**63 - 1, n).astype(np.int64)
            pq.write_table(
                pa.table(
                    {
                        "id": np.arange(start, start + n, dtype=np.int64),
                        "k": pa.array(k, pa.string()),
                        "x": x,
                        "pinf": pinf,
                        "across": across,
                        "within": within,
                        "big": pa.array(big, pa.int64()),
                        "near": pa.array(near, pa.int64()),
                    }
                ),
                os.path.join(d, f"part-{f}.parquet"),
                row_group_size=500,
            )
            start += n
    if world() is not None:
        world().Barrier()
    return d


def _open(path):
    return hf.read_parquet(path), pd.read_parquet(path)


FLOATS = ["x", "pinf", "across", "within"]
SCALARS = {f"{c}.{how}": (c, how) for c in FLOATS for how in ("sum", "mean", "var", "std")}
SCALARS.update({f"big.{how}": ("big", how) for how in ("sum", "mean", "var", "std", "min", "max")})
# within 2**20 of 2**63 float64 keeps 9 bits of the spread: var/std say little there
SCALARS.update({f"near.{how}": ("near", how) for how in ("sum", "mean", "min", "max")})


@pytest.mark.parametrize("name", sorted(SCALARS))
def test_scalar_reductions_with_inf_and_huge_ints(special, name):
    col, how = SCALARS[name]
    df, ref = _open(special)
    got = getattr(df[col], how)().compute()
    exp = getattr(ref[col], how)()
    if col in ("big", "near") and how in ("var", "std"):
        # 2**62 + [0, 2**40) as float64 (spacing 1024): ill-conditioned, as in test_reductions
        assert got == pytest.approx(exp, rel=ILL_RTOL), name
        return
    assert_same(got, exp, msg=name, exact=how in ("sum", "min", "max") and col in ("big", "near"))


def test_inf_cases_are_what_pandas_says(special):
    """The data really has the cases: NaN for +inf and -inf, inf for +inf only."""
    _, ref = _open(special)
    assert np.isnan(ref.across.sum()) and np.isnan(ref.within.sum())
    assert ref.pinf.sum() == np.inf and np.isnan(ref.pinf.var())
    assert ref.big.mean() > 4e18  # the int64 sum wraps, the mean does not


@pytest.mark.parametrize("where", ["all", "some_blocks", "nothing"])
def test_describe_with_inf_and_huge_ints(special, where):
    df, ref = _open(special)
    pick = {"all": lambda d: d, "some_blocks": lambda d: d[d.id >= 900], "nothing": lambda d: d[d.id < 0]}[
        where
    ]
    cols = ["x", "pinf", "across", "within", "big"]
    got, exp = pick(df)[cols].describe().compute(), pick(ref)[cols].describe()
    # std of 2**62 + [0, 2**40) is ill-conditioned (see test_reductions)
    assert got.loc["std", "big"] == pytest.approx(exp.loc["std", "big"], rel=ILL_RTOL, nan_ok=True)
    got.loc["std", "big"] = exp.loc["std", "big"]
    assert_same(got, exp, msg=where)
    for c in cols:
        got, exp = pick(df)[c].describe().compute(), pick(ref)[c].describe()
        assert got["std"] == pytest.approx(exp["std"], rel=ILL_RTOL, nan_ok=True)
        got["std"] = exp["std"]
        assert_same(got, exp, msg=c)


GROUPED = {
    "x": lambda d: d.groupby("k").x.agg(["sum", "mean", "var", "std", "count", "min", "max"]),
    "across": lambda d: d.groupby("k").across.agg(["sum", "mean", "var", "std"]),
    "within_pinf": lambda d: d.groupby("k")[["within", "pinf"]].sum(),
    "mean_var": lambda d: d.groupby("k")[["within", "pinf", "across"]].var(),
    "big": lambda d: d.groupby("k").big.agg(["sum", "mean", "min", "max"]),
    "big_std": lambda d: d.groupby("k").big.std(),
    "near_mean": lambda d: d.groupby("k").near.mean(),
    "filtered": lambda d: d[d.id % 3 == 0].groupby("k").x.agg(["sum", "mean", "var"]),
    "all_filtered": lambda d: d[d.id < 0].groupby("k").x.agg(["sum", "mean", "var"]),
}


@pytest.mark.parametrize("name", sorted(GROUPED))
def test_groupby_with_inf_and_huge_ints(special, name):
    df, ref = _open(special)
    got, exp = GROUPED[name](df).compute(), GROUPED[name](ref)
    if name == "big_std":  # ill-conditioned (see test_reductions)
        pd.testing.assert_series_equal(got, exp, rtol=ILL_RTOL)
        return
    assert_same(got, exp, msg=name)


@pytest.mark.parametrize("name", ["x", "across", "big"])
def test_groupby_with_inf_and_huge_ints_shuffled(special, name):
    old = hf.config.shuffle_rows
    hf.config.shuffle_rows = 1
    try:
        df, ref = _open(special)
        assert_same(GROUPED[name](df), GROUPED[name](ref), msg=name)
    finally:
        hf.config.shuffle_rows = old


@pytest.mark.parametrize(
    "values",
    [
        [1.0, np.inf, 3.5],  # 50% sits on 3.5, next to inf: pandas gives NaN
        [3.5, 2.0, np.inf, -np.inf, 1.0],
        [np.inf, 1.0, 2.0, 3.0, 4.0, np.inf, -np.inf, 5.0, 6.0],
    ],
)
def test_describe_quartiles_next_to_inf(values):
    ref = pd.DataFrame({"x": values * 7})
    df = hf.from_pandas(ref, npartitions=4)
    assert_same(df.x.describe().compute(), ref.x.describe())
