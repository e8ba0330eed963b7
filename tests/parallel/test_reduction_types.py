"""The types of reduction, describe() and group-by results are pandas' types: float32 stays
float32, a datetime mean is a Timestamp, int64/uint8 maxima are int64, counts of distinct
values and lengths are Python ints, categoricals stay categorical, bool/string/categorical
Series describe themselves with count/unique/top/freq; and iterating a GroupBy works."""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from tests.helpers.compare import assert_same
from tests.helpers.datasets import arrow_to_pandas
from tests.helpers.mpi import rank, timeout, world

pytestmark = timeout(60)

FILES = [0, 600, 300, 0, 450, 1100, 80]  # blocks of 500 (conftest); empty files first
F32_RTOL = 1e-5  # pandas accumulates float32 in float32; hpcframe in float64, then rounds


@pytest.fixture(scope="module")
def typed(shared_dir):
    d = os.path.join(shared_dir, "reduction_types")
    if rank() == 0:
        os.makedirs(d)
        rng = np.random.default_rng(99)
        start = 0
        for f, n in enumerate(FILES):
            nulls = (rng.random(n) < 0.1) if f in (2, 5) else np.zeros(n, dtype=bool)
            ts = np.datetime64("2013-01-01T00:00:00", "us") + rng.integers(0, 365 * 86400 * 10**6, n).astype(
                "timedelta64[us]"
            )
            pq.write_table(
                pa.table(
                    {
                        "id": np.arange(start, start + n, dtype=np.int64),
                        "k": pa.array(rng.integers(0, 4, n), pa.int64()),
                        "f32": pa.array(rng.normal(3.0, 2.0, n).astype(np.float32)),
                        "x": rng.normal(size=n),
                        "u8": pa.array(rng.integers(0, 256, n).astype(np.uint8)),
                        "i64": pa.array(rng.integers(-1000, 1000, n), pa.int64()),
                        "ts": pa.array(ts, pa.timestamp("us"), mask=nulls),
                        "tsz": pa.array(
                            ts.astype("datetime64[ms]").astype("int64"), pa.timestamp("ms", tz="Europe/Paris")
                        ),
                        "day": pa.array(ts.astype("datetime64[D]"), pa.date32()),
                        "flag": pa.array(rng.random(n) < 0.3, pa.bool_(), mask=nulls),
                        "s": pa.array(rng.choice(["u", "v", "w"], n), pa.string(), mask=nulls),
                        "cat": pa.array(rng.choice(["hi", "lo", "mid"], n)).dictionary_encode(),
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
    """hpcframe's frame and the pandas reference (dates as datetime64[ms], see the user guide)."""
    return hf.read_parquet(path), arrow_to_pandas(pq.read_table(path))


@pytest.mark.parametrize("how", ["sum", "mean", "var", "std"])
def test_float32_reductions_stay_float32(typed, how):
    df, ref = _open(typed)
    got, exp = getattr(df.f32, how)().compute(), getattr(ref.f32, how)()
    assert type(got) is type(exp) is np.float32, (type(got), type(exp))
    assert got == pytest.approx(exp, rel=F32_RTOL)
    got = getattr(df.groupby("k").f32, how)().compute()
    exp = getattr(ref.groupby("k").f32, how)()
    assert got.dtype == exp.dtype == np.float32
    pd.testing.assert_series_equal(got, exp, rtol=F32_RTOL)
    got, exp = getattr(df[["f32"]], how)().compute(), getattr(ref[["f32"]], how)()
    pd.testing.assert_series_equal(got, exp, rtol=F32_RTOL, check_index_type=False)
    got, exp = getattr(df[["f32", "x"]], how)().compute(), getattr(ref[["f32", "x"]], how)()
    assert got.dtype == exp.dtype == np.float64
    pd.testing.assert_series_equal(got, exp, rtol=F32_RTOL, check_index_type=False)


@pytest.mark.parametrize("how", ["mean", "sum", "var", "std"])
def test_float32_moments_whose_squares_overflow_float32(how):
    # [1e30, 0]: its variance (5e59) overflows float32 but its std (7.07e29) does not.
    # pandas' group-by computes the std in float64 (and then keeps float64: a float32 would
    # lose more than 5e-4), but its Series.std is the root of the float32 variance: inf
    # (3e38 + 3e38 - 3e38 is not here: pandas' float32 accumulation overflows where
    #    hpcframe's float64 does not, a documented difference)
    ref = pd.DataFrame(
        {
            "k": [1, 2, 1, 2, 3, 3, 3],
            "g": np.array([1e30, 1.0, 0.0, 2.0, 3e38, 1.0, 2e38], dtype=np.float32),
        }
    )
    df = hf.from_pandas(ref, npartitions=4)
    with np.errstate(over="ignore"):
        exp = getattr(ref.groupby("k").g, how)()
        exp_whole = getattr(ref.g.iloc[:4], how)()
    got = getattr(df.groupby("k").g, how)().compute()
    assert got.dtype == exp.dtype, (got.dtype, exp.dtype)
    pd.testing.assert_series_equal(got, exp, rtol=F32_RTOL)
    got = df.groupby("k").agg(r=("g", how)).compute()
    pd.testing.assert_frame_equal(got, ref.groupby("k").agg(r=("g", how)), rtol=F32_RTOL)
    got = getattr(df[df.k < 3].g, how)().compute()
    assert type(got) is type(exp_whole) is np.float32, (type(got), type(exp_whole))
    assert got == pytest.approx(exp_whole, rel=F32_RTOL), (got, exp_whole)


@pytest.mark.parametrize("how", ["max", "min", "sum", "count"])
def test_frame_reductions_over_int64_and_uint8_are_int64(typed, how):
    df, ref = _open(typed)
    got, exp = getattr(df[["i64", "u8"]], how)().compute(), getattr(ref[["i64", "u8"]], how)()
    assert got.dtype == exp.dtype  # sum: float64 (int64 and uint64 sums), as pandas
    if how in ("min", "max"):
        assert got.dtype == np.int64
    assert_same(got, exp, exact=True, check_index_type=False, msg=how)


@pytest.mark.parametrize("where", ["all", "nothing"])
def test_nunique_and_len_are_python_ints(typed, where):
    df, ref = _open(typed)
    if where == "nothing":
        df, ref = df[df.id < 0], ref[ref.id < 0]
    got = hf.compute(df.k.nunique(), df.s.nunique(), df.len())
    exp = (ref.k.nunique(), ref.s.nunique(), len(ref))
    assert got == exp
    assert all(type(v) is int for v in got), [type(v) for v in got]
    assert type(len(df)) is int


@pytest.mark.parametrize("col", ["ts", "tsz", "day"])
def test_datetime_mean(typed, col):
    df, ref = _open(typed)
    # float64 sums of ticks in another order: the truncated mean can be one tick apart
    tick = pd.Timedelta(
        1, unit=np.datetime_data(ref[col].dtype.base)[0] if col != "tsz" else ref[col].dtype.unit
    )
    got, exp = df[col].mean().compute(), ref[col].mean()
    assert isinstance(got, pd.Timestamp) and abs(got - exp) <= tick, (got, exp)
    got, exp = df.groupby("k")[col].mean().compute(), ref.groupby("k")[col].mean()
    assert got.dtype == exp.dtype
    assert ((got - exp).abs() <= tick).all(), (got, exp)
    assert_same(got.index.to_series(), exp.index.to_series())
    got, exp = df[df.id < 0][col].mean().compute(), ref[ref.id < 0][col].mean()
    assert got is pd.NaT and exp is pd.NaT


@pytest.mark.parametrize("col", ["flag", "s", "cat"])
@pytest.mark.parametrize("where", ["all", "blocks_without_nulls", "nothing"])
def test_describe_of_bool_string_and_categorical_series(typed, col, where):
    df, ref = _open(typed)
    pick = {
        "all": lambda d: d,
        "blocks_without_nulls": lambda d: d[d.id < 600],
        "nothing": lambda d: d[d.id < 0],
    }[where]
    got, exp = pick(df)[col].describe().compute(), pick(ref)[col].describe()
    assert got.dtype == exp.dtype == object
    assert list(got.index) == list(exp.index) == ["count", "unique", "top", "freq"]
    assert got.name == exp.name
    for label in exp.index:
        assert (pd.isna(got[label]) and pd.isna(exp[label])) or got[label] == exp[label], (
            label,
            got[label],
            exp[label],
        )


@pytest.mark.parametrize("how", ["first", "last"])
def test_groupby_first_last_of_a_categorical_stay_categorical(typed, how):
    df, ref = _open(typed)
    got = getattr(df.groupby("k").cat, how)().compute()
    exp = getattr(ref.groupby("k").cat, how)()
    assert isinstance(got.dtype, pd.CategoricalDtype)
    assert_same(got, exp, exact=True)
    got = getattr(df.groupby("k")[["cat", "x"]], how)().compute()
    exp = getattr(ref.groupby("k")[["cat", "x"]], how)()
    assert isinstance(got["cat"].dtype, pd.CategoricalDtype)
    assert_same(got, exp, exact=True)


def test_filter_keeping_no_rows_keeps_the_categories(typed):
    df, ref = _open(typed)
    got = df[(df.x * 2.0) > 1e9].compute()  # evaluated on every block: none prunable
    exp = ref[(ref.x * 2.0) > 1e9]
    assert len(got) == 0
    assert sorted(got.cat.cat.categories) == sorted(exp.cat.cat.categories)


@pytest.mark.parametrize("by", ["k", ["k"], ["k", "flag"]])
def test_iterating_a_groupby(typed, by):
    df, ref = _open(typed)

    def sub(d):
        return d[d.id % 7 == 0]

    got = list(sub(df).groupby(by))
    exp = list(sub(ref).groupby(by))
    assert [k for k, _ in got] == [k for k, _ in exp]
    for (_, g), (_, e) in zip(got, exp):
        pd.testing.assert_frame_equal(g.reset_index(drop=True), e.reset_index(drop=True))
    got = [(k, s.tolist()) for k, s in sub(df).groupby(by).x]
    exp = [(k, s.tolist()) for k, s in sub(ref).groupby(by).x]
    assert got == exp


@pytest.mark.parametrize("where", ["all", "nothing"])
def test_describe_of_a_frame_without_numeric_columns(typed, where):
    df, ref = _open(typed)
    if where == "nothing":
        df, ref = df[df.id < 0], ref[ref.id < 0]
    cols = ["flag", "s", "cat"]
    got, exp = df[cols].describe().compute(), ref[cols].describe()
    assert list(got.columns) == list(exp.columns) and list(got.index) == list(exp.index)
    assert (got.dtypes == object).all() and (exp.dtypes == object).all()  # noqa: E721 - dtypes
    for c in cols:
        for label in exp.index:
            g, e = got.loc[label, c], exp.loc[label, c]
            assert (pd.isna(g) and pd.isna(e)) or g == e, (c, label, g, e)


def test_timedelta_mean():
    ref = pd.DataFrame(
        {"k": np.arange(40) % 3, "t": pd.to_timedelta(np.arange(40) * 1500, unit="ms").as_unit("us")}
    )
    ref.loc[[3, 17], "t"] = pd.NaT
    df = hf.from_pandas(ref, npartitions=6)
    got, exp = df.t.mean().compute(), ref.t.mean()
    assert isinstance(got, pd.Timedelta) and got == exp, (got, exp)
    assert_same(df.groupby("k").t.mean(), ref.groupby("k").t.mean(), exact=True)


def test_frame_mean_with_datetime_columns(typed):
    df, ref = _open(typed)
    got, exp = df[["x", "ts", "k"]].mean().compute(), ref[["x", "ts", "k"]].mean()
    assert got.dtype == exp.dtype == object and list(got.index) == list(exp.index)
    assert got["x"] == pytest.approx(exp["x"]) and got["k"] == pytest.approx(exp["k"])
    assert abs(got["ts"] - exp["ts"]) <= pd.Timedelta(1, unit="us")
    got = df[["x", "ts"]].mean(numeric_only=True).compute()
    assert_same(got, ref[["x", "ts"]].mean(numeric_only=True), check_index_type=False)


@pytest.mark.parametrize("as_index", [False, True])
def test_group_result_as_a_frame_keeps_object_bools(typed, as_index):
    """The max of a bool column with nulls in later files is ``object`` in pandas, also in a
    group result used as a frame (filtered, a column selected): a regression, the held
    partitions had the combine's ``bool`` (only CSV input was widened, and not with
    ``as_index=False``)."""
    df, ref = _open(typed)
    assert ref.flag.dtype == object
    spec = dict(m=("flag", "max"), n=("flag", "count"))
    g = df.groupby("k", as_index=as_index).agg(**spec)
    r = ref.groupby("k", as_index=as_index).agg(**spec)
    got = hf.compute(g[g.n > 0], g[["m"]], g.m[g.n > 0])
    exp = [r[r.n > 0], r[["m"]], r.m[r.n > 0]]
    for h, e in zip(got, exp):
        assert h.dtypes.tolist() == e.dtypes.tolist() if isinstance(e, pd.DataFrame) else h.dtype == e.dtype
        assert_same(h, e if as_index else e.reset_index(drop=True))


NULLABLE = pd.DataFrame(
    {
        "F": pd.array([None, 1.5, np.inf, -np.inf], dtype="Float64"),
        "I": pd.array([None, 1, 2, 3], dtype="Int64"),
        "B": pd.array([None, True, False, True], dtype="boolean"),
    }
)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("col", ["F", "I", "B"])
@pytest.mark.parametrize("rows", [(0, 1), (0, 2), (1, 2), (1, 4), (2, 4)], ids=str)
def test_reductions_of_nullable_columns_answer_na_as_pandas(col, rows):
    """Regression (randomized expression runs, session 38): the mean, var and std of a
    ``from_pandas`` nullable column (``Int64``, ``Float64``, ``boolean``) with no value (or one,
    for var/std; or ``inf - inf``) came back NaN; pandas answers ``<NA>``. Every whole-column
    reduction gives pandas' value and type."""
    pdf = NULLABLE.iloc[slice(*rows)].reset_index(drop=True)
    df = hf.from_pandas(pdf, npartitions=2)
    for agg in ("mean", "var", "std", "sum", "min", "max", "median", "count"):
        want = getattr(pdf[col], agg)()
        got = getattr(df[col], agg)().compute()
        if want is pd.NA:
            assert got is pd.NA, (agg, got)
            continue
        assert type(got) is type(want), (agg, got, want)
        assert got == want or (pd.isna(got) and pd.isna(want)), (agg, got, want)
