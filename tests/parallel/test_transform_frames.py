"""groupby().transform of several columns (a lazy Frame) and of one column (a lazy Series)
equal pandas, including partitions whose every key is missing (pandas itself fails on such a
frame alone: hpcframe gives those rows NaN/NaT, as pandas does for the whole frame), integer
columns that become float only where a key is missing, and tz-aware times. Local and 1-4 ranks."""

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers.mpi import timeout

pytestmark = timeout(60)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame(
        {
            "k": rng.choice(["a", "b", "c", None], n),
            "x": rng.normal(size=n),
            "y": rng.integers(0, 9, n),
            "t": pd.date_range("2024-01-01", periods=n, freq="h", tz="Europe/Paris"),
        }
    )
    return df, hf.from_pandas(df, npartitions=5)


CASES = {
    "frame_mean": lambda g: g[["x", "y"]].transform("mean"),
    "frame_max_all_columns": lambda g: g.transform("max"),
    "series_first_tz": lambda g: g.t.transform("first"),
    "series_function": lambda g: g.x.transform(lambda s: s - s.mean()),
    "series_int_sum": lambda g: g.y.transform("sum"),
}


@pytest.mark.parametrize("dropna", [True, False])
@pytest.mark.parametrize("name", sorted(CASES))
def test_transform_equals_pandas(data, name, dropna):
    df, frame = data
    got = CASES[name](frame.groupby("k", dropna=dropna)).compute()
    exp = CASES[name](df.groupby("k", dropna=dropna)).reset_index(drop=True)
    if isinstance(exp, pd.DataFrame):
        pd.testing.assert_frame_equal(got, exp, check_exact=False, rtol=1e-12)
    else:
        pd.testing.assert_series_equal(got, exp, check_exact=False, rtol=1e-12)


def test_assign_two_transforms_of_one_frame(data):
    df, frame = data
    g, pg = frame.groupby("k"), df.groupby("k")
    got = frame.assign(m=g.x.transform("mean"), n=g.y.transform("count")).compute()
    exp = df.assign(m=pg.x.transform("mean"), n=pg.y.transform("count"))
    pd.testing.assert_frame_equal(got, exp, check_exact=False, rtol=1e-12)


def test_filter_by_a_transform_of_the_frame(data):
    df, frame = data
    got = frame[frame.x > frame.groupby("k").x.transform("mean")].compute()
    exp = df[df.x > df.groupby("k").x.transform("mean")].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, exp)


def test_two_transforms_in_one_expression_are_refused_with_a_hint(data):
    _, frame = data
    g = frame.groupby("k")
    with pytest.raises(ValueError, match="assign one of them"):
        g.x.transform("mean") - g.x.transform("max")
