"""Element-wise Series methods and accessors (abs, round, clip, fillna, astype, where/mask,
.dt fields and rounding, .str len/lower/upper/strip/slice/replace) equal pandas, in new
columns, in filters (evaluated while reading) and in group keys, with NaN, None, negative
numbers and tz-aware times. Local and 1-4 ranks."""

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers.mpi import timeout

pytestmark = timeout(60)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    n = 300
    df = pd.DataFrame(
        {
            "x": np.where(rng.random(n) < 0.1, np.nan, rng.normal(0, 10, n)),
            "i": rng.integers(-5, 5, n),
            "s": rng.choice(["Alpha ", "beta", None, "GAMMA", ""], n),
            "t": pd.date_range("2013-01-01", periods=n, freq="37h", tz="America/New_York"),
        }
    )
    return df, hf.from_pandas(df, npartitions=4)


CASES = {
    "abs": lambda d: d.x.abs(),
    "builtin_abs": lambda d: abs(d.i),
    "round": lambda d: d.x.round(1),
    "clip": lambda d: d.i.clip(-2, 3),
    "clip_lower_only": lambda d: d.x.clip(lower=0),
    "fillna": lambda d: d.x.fillna(0),
    "fillna_column": lambda d: d.x.fillna(d.i),
    "astype_float32": lambda d: d.i.astype("float32"),
    "astype_str": lambda d: d.i.astype("str"),
    "where_constant": lambda d: d.x.where(d.x > 0, 0),
    "where_column": lambda d: d.x.where(d.i > 0, d.i),
    "mask_nan": lambda d: d.x.mask(d.i > 2),
    "year": lambda d: d.t.dt.year,
    "month": lambda d: d.t.dt.month,
    "hour": lambda d: d.t.dt.hour,
    "day_of_week": lambda d: d.t.dt.day_of_week,
    "date": lambda d: d.t.dt.date,
    "floor_day": lambda d: d.t.dt.floor("D"),
    "str_len": lambda d: d.s.str.len(),
    "str_lower": lambda d: d.s.str.lower(),
    "str_upper": lambda d: d.s.str.upper(),
    "str_strip": lambda d: d.s.str.strip(),
    "str_slice": lambda d: d.s.str[:3],
    "str_replace": lambda d: d.s.str.replace("a", "A"),
    "arithmetic_of_methods": lambda d: d.x.abs().round(2) + d.t.dt.month,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_method_equals_pandas(data, name):
    df, frame = data
    got = CASES[name](frame).compute()
    exp = CASES[name](df).reset_index(drop=True)
    pd.testing.assert_series_equal(got, exp, check_names=False)


def test_methods_in_filters_assign_and_group_keys(data):
    df, frame = data
    q = lambda d: d[(d.t.dt.month <= 3) & (d.x.abs() > 5)].assign(y=d.t.dt.year)  # noqa: E731
    pd.testing.assert_frame_equal(q(frame).compute(), q(df).reset_index(drop=True))
    got = frame.assign(m=frame.t.dt.month).groupby("m").x.mean().compute()
    exp = df.assign(m=df.t.dt.month).groupby("m").x.mean()
    pd.testing.assert_series_equal(got, exp, check_exact=False, rtol=1e-12)


def test_an_unknown_method_is_refused(data):
    _, frame = data
    with pytest.raises(AttributeError, match="dt.nanosecondz"):
        _ = frame.t.dt.nanosecondz
    with pytest.raises(TypeError, match="constants"):
        frame.x.clip(frame.i)  # a column as a bound: not offered (constants only)
