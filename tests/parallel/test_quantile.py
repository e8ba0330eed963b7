"""Exact order statistics: ``Series.quantile`` (scalar or list, linear interpolation, NaN
skipped), ``Series.median``, ``Frame.quantile``/``Frame.median`` (``numeric_only``), equal to
pandas bit for bit, on any number of ranks.

Each column is sample-sorted over the ranks (a SortStage) and only the one or two values next
to each quantile are gathered; pandas interpolates between them exactly as between the values
of the whole column. Runs locally and under ``mpiexec -n 1..4``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.frames import assert_bits

pytestmark = mpi.timeout(120)

QS = [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.9, 0.999, 1.0]


@pytest.fixture(autouse=True)
def few_partitions(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", 5)


@pytest.mark.parametrize("col", ["v", "n", "big", "f32", "id", "d", "tz"])
def test_series_quantile_and_median(nasty, col):
    path, ref = nasty
    df = hf.read_parquet(path)
    s = df[col]
    got = hf.compute(s.quantile(0.5), s.quantile(0.37), s.quantile(QS), s.median())
    assert_bits(got[0], ref[col].quantile(0.5), col)
    assert_bits(got[1], ref[col].quantile(0.37), col)
    assert_bits(got[2], ref[col].quantile(QS), col)
    assert_bits(got[3], ref[col].median(), col)


def test_quantile_of_filtered_and_computed_series(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    got = hf.compute(df[df.n > 30].v.quantile([0.2, 0.8]), (df.v * 3 - df.n).median(), df.v.quantile(0.5))
    assert_bits(got[0], ref[ref.n > 30].v.quantile([0.2, 0.8]).rename("v"))
    assert_bits(got[1], (ref.v * 3 - ref.n).median())
    assert_bits(got[2], ref.v.quantile(0.5))


def test_special_values():
    big = 2**62 + 1
    pdf = pd.DataFrame(
        {
            "x": [1.0, np.inf, np.nan, -np.inf, 0.0, 2.5, np.nan, 7.0, -3.0],
            "i": [big, -big, 5, big - 1, 0, -1, big, 3, -big],
            "f": np.array([0.1, 0.2, np.nan, 0.7, 0.3, 0.3, 0.9, 1e-8, 5.0], dtype="float32"),
        }
    )
    df = hf.from_pandas(pdf, npartitions=4)
    for col in pdf.columns:
        got = hf.compute(df[col].quantile(QS), df[col].median(), df[col].quantile(0.3))
        assert_bits(got[0], pdf[col].quantile(QS), col)
        assert_bits(got[1], pdf[col].median(), col)
        assert_bits(got[2], pdf[col].quantile(0.3), col)


def test_empty_and_all_missing(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    none = df[df.n > 1000]
    r = ref[ref.n > 1000]
    got = hf.compute(none.v.quantile(0.5), none.v.quantile([0.5, 0.9]), none.v.median(), none.tz.median())
    assert_bits(got[0], r.v.quantile(0.5))
    assert_bits(got[1], r.v.quantile([0.5, 0.9]))
    assert_bits(got[2], r.v.median())
    assert pd.isna(got[3])
    nan = hf.from_pandas(pd.DataFrame({"x": [np.nan, np.nan]}), npartitions=2)
    assert pd.isna(nan.x.quantile(0.5).compute()) and pd.isna(nan.x.median().compute())


@pytest.mark.parametrize("q", [0.5, 0.3, [0.1, 0.5, 0.75]])
def test_frame_quantile_and_median(nasty, q):
    path, ref = nasty
    df = hf.read_parquet(path)
    num = df[["v", "n", "big", "f32", "id"]]
    got = hf.compute(num.quantile(q), df.quantile(q, numeric_only=True), df.median(numeric_only=True))
    assert_bits(got[0], ref[["v", "n", "big", "f32", "id"]].quantile(q))
    assert_bits(got[1], ref.quantile(q, numeric_only=True))
    assert_bits(got[2], ref.median(numeric_only=True))


def test_frame_median_keeps_float32():
    """pandas' frame median of float32 columns only is float32 (of rows: an empty frame's is
    float64), float64 once another column is not float32; an all-missing float32 column's
    median is a float32 NaN. Was float64 (the type of the empty probe's median)."""
    pdf = pd.DataFrame(
        {
            "f": np.array([0.1, 0.2, 0.3, 0.7, 0.25, 0.9], dtype="float32"),
            "g": np.array([0.5, np.nan, 1.5, 2.5, np.nan, 3.5], dtype="float32"),
            "nan": np.full(6, np.nan, dtype="float32"),
            "i": [3, 1, 2, 5, 4, 6],
        }
    )
    df = hf.from_pandas(pdf, npartitions=3)
    cases = [["f"], ["f", "g"], ["f", "nan"], ["nan"], ["f", "i"]]
    got = hf.compute(*[df[c].median() for c in cases], df[df.i > 10][["f"]].median(), df.nan.median())
    for c, g in zip(cases, got):
        assert_bits(g, pdf[c].median(), str(c))
    assert_bits(got[-2], pdf[pdf.i > 10][["f"]].median(), "empty")
    assert_bits(got[-1], pdf.nan.median(), "all missing")
    assert type(got[-1]) is type(pdf.nan.median())


def test_more_ranks_than_partitions(nasty, monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", 1)
    path, ref = nasty
    df = hf.read_parquet(path)
    assert_bits(df.v.quantile(QS).compute(), ref.v.quantile(QS))
    monkeypatch.setattr(hf.config, "partitions", 7)
    small = hf.from_pandas(ref.head(3), npartitions=1)
    assert_bits(small.v.quantile(QS).compute(), ref.head(3).v.quantile(QS))


def test_many_ties_and_one_value():
    pdf = pd.DataFrame({"x": np.repeat([1.0, 2.0, 3.0], 200), "y": np.full(600, 4.25)})
    df = hf.from_pandas(pdf, npartitions=5)
    assert_bits(df.x.quantile(QS).compute(), pdf.x.quantile(QS))
    assert_bits(df.y.median().compute(), pdf.y.median())


def test_errors(nasty):
    path, _ = nasty
    df = hf.read_parquet(path)
    with pytest.raises((TypeError, pa.ArrowNotImplementedError)):  # what pandas raises
        df.s.quantile(0.5)
    with pytest.raises(ValueError, match="interval"):
        df.v.quantile(1.5)
    with pytest.raises((TypeError, pa.ArrowNotImplementedError)):
        df.quantile(0.5)  # string columns, as pandas
