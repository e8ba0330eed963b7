"""The schema the ranks agree on for held frames (``io.ranked.agree_schema``) is computed
once per distinct set of column names and dtypes, and is the schema of computing it for
every frame: same types, dtype flags and pandas metadata."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.api.types import is_object_dtype

from hpcframe.io.memory import _frame_schema
from hpcframe.io.ranked import _distinct_schemas, merge_schemas


def _blocks():
    rng = np.random.default_rng(3)

    def block(n, with_nan):
        f = rng.normal(size=n)
        if with_nan:
            f[0] = np.nan
        return pd.DataFrame(
            {
                "i": np.arange(n, dtype=np.int64),
                "f": f,
                "s": pd.array([f"s{j}" if j % 3 else None for j in range(n)], dtype="str"),
                "c": pd.Categorical(rng.choice(["a", "b"], n), categories=["a", "b"]),
                "t": pd.date_range("2024-03-10", periods=n, freq="h", tz="America/New_York"),
                "n": pd.array([1, None] * (n // 2) + [1] * (n % 2), dtype="Int64"),
            }
        )

    blocks = [block(6, False), block(0, False), block(5, True), block(7, False)]
    blocks.append(blocks[0].assign(i=blocks[0].i.astype("float64")))  # int with float: float64
    blocks.append(pd.DataFrame({"i": [1, None], "f": [True, None]}, dtype=object))  # values decide
    blocks.append(None)
    return blocks


@pytest.mark.parametrize("pick", [slice(None), slice(0, 4), slice(2, None), slice(5, 6)])
def test_one_schema_per_signature_is_the_same_schema(pick):
    frames = _blocks()[pick]
    calls = []

    def counted(df):
        calls.append(df)
        return _frame_schema(df)

    got = merge_schemas(_distinct_schemas(frames, counted))
    expected = merge_schemas([_frame_schema(df) for df in frames if df is not None])
    assert got == expected and (got is None or got.metadata == expected.metadata)
    held = [df for df in frames if df is not None]
    has_object = [any(is_object_dtype(d) for d in df.dtypes) for df in held]
    signatures = {(tuple(df.columns), tuple(df.dtypes)) for df, o in zip(held, has_object) if not o}
    objects = sum(has_object)
    assert len(calls) == len(signatures) + objects
