"""Categoricals made straight from Arrow dictionaries (``io.types.block_to_pandas``), string
columns dictionary-encoded by their bytes (``io.types.encode_strings``) and categorical group
keys grouped on their codes (``aggregations.chunk_partial``): each must give exactly what
pyarrow's ``to_pandas``, Arrow's ``dictionary_encode`` and pandas' group-by give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcframe import aggregations as A
from hpcframe.io import types as T

DICT = pa.dictionary(pa.int32(), pa.large_string())

words = st.sampled_from(["ab", "ba", "zz", "a\x00", "é", "xy", "longer value", ""])


@st.composite
def dictionary_columns(draw):
    """A chunked dictionary<int32, large_string> column: chunks with their own, shared or
    identical-but-distinct dictionaries, unused entries, null indices, empty chunks."""
    pool = draw(st.lists(words, min_size=1, max_size=6, unique=True))
    shared = pa.array(pool, pa.large_string())
    chunks = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["shared", "copy", "own"]))
        if kind == "shared":
            dictionary = shared
        elif kind == "copy":  # equal values, another buffer
            dictionary = pa.array(list(pool), pa.large_string())
        else:
            dictionary = pa.array(draw(st.permutations(pool)), pa.large_string())
        n = draw(st.integers(0, 8))
        idx = [draw(st.one_of(st.none(), st.integers(0, len(dictionary) - 1))) for _ in range(n)]
        chunks.append(pa.DictionaryArray.from_arrays(pa.array(idx, pa.int32()), dictionary))
    return pa.chunked_array(chunks, DICT)


def _reference(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(date_as_object=False, split_blocks=True)


@settings(max_examples=150, deadline=None)
@given(dictionary_columns(), st.booleans())
def test_block_to_pandas_categoricals_equal_to_pandas(col, keep):
    table = pa.table({"v": pa.array(np.arange(len(col), dtype=np.int64)), "k": col})
    field = table.schema.field("k")
    if keep:  # as normalize_table marks a group key kept as dictionary
        field = field.with_metadata({T.DICT_KEY: b"1"})
        table = table.cast(pa.schema([table.schema.field("v"), field]))
    T._RECENT_DTYPES.clear()
    expected = _reference(table)
    got = T.block_to_pandas(table)
    pd.testing.assert_frame_equal(got, expected, check_exact=True, check_categorical=True)
    assert got["k"].dtype == expected["k"].dtype
    # a second block with the same dictionary reuses the dtype
    again = T.block_to_pandas(table)
    pd.testing.assert_frame_equal(again, expected, check_exact=True)


def test_ordered_dictionary_and_unused_entries():
    dictionary = pa.array(["c", "a", "b", "unused"], pa.large_string())
    arr = pa.DictionaryArray.from_arrays(pa.array([0, 2, None, 0], pa.int32()), dictionary, ordered=True)
    table = pa.table({"k": arr})
    got = T.block_to_pandas(table)
    pd.testing.assert_frame_equal(got, _reference(table), check_exact=True)
    assert got["k"].cat.ordered and list(got["k"].cat.categories) == ["c", "a", "b", "unused"]


def test_duplicate_dictionary_values_still_rejected():
    """A dictionary with a repeated value is not a valid set of categories: not a group key
    kept by hpcframe (whose dictionaries Arrow builds by hashing), so checked, and pandas'
    own conversion raises as before."""
    dictionary = pa.array(["a", "b", "a"], pa.large_string())
    table = pa.table({"k": pa.DictionaryArray.from_arrays(pa.array([0, 1, 2], pa.int32()), dictionary)})
    T._RECENT_DTYPES.clear()
    with pytest.raises(ValueError, match="unique"):
        _reference(table)
    with pytest.raises(ValueError, match="unique"):
        T.block_to_pandas(table)


def test_null_in_dictionary_left_to_pyarrow():
    dictionary = pa.array(["a", None, "b"], pa.large_string())
    table = pa.table({"k": pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 1], pa.int32()), dictionary)})
    assert T._fast_categoricals(table) == {}
    with pytest.raises(ValueError, match="null"):
        _reference(table)
    with pytest.raises(ValueError, match="null"):  # the same error as before
        T.block_to_pandas(table)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.text(alphabet="ab\x00c", max_size=12), st.none()), max_size=40),
    st.integers(1, 20),
    st.booleans(),
    st.booleans(),
)
def test_encode_strings_equals_arrow(values, width, large, same):
    """Equal byte lengths (the fixed-width path) or not, or with nulls (Arrow's hash)."""
    if same:
        values = [None if v is None else (v + "." * 20)[:width] for v in values]
    _check_encoding(values, large)


def test_encode_strings_string_view():
    col = pa.chunked_array([pa.array(["ab", None, "cd", "ab"], pa.string_view())])
    got = T.encode_strings(col)
    assert got.type == DICT
    assert got.to_pylist() == ["ab", None, "cd", "ab"]
    assert got.chunk(0).dictionary.to_pylist() == ["ab", "cd"]
    fixed = T.encode_strings(pa.chunked_array([pa.array(["ab", "cd", "ab"], pa.string_view())]))
    assert fixed.chunk(0).indices.to_pylist() == [0, 1, 0]


def test_encode_strings_multibyte_equal_byte_length():
    _check_encoding(["éa", "abc", "aé", "éa", "abc"], True)  # 3 bytes each
    _check_encoding(["é", "ab", "é"], False)


def _check_encoding(values, large):
    col = pa.chunked_array([pa.array(values, pa.large_string() if large else pa.string())])
    got = T.encode_strings(col)
    expected = col.cast(DICT)
    assert got.type == DICT
    assert got.to_pylist() == expected.to_pylist() == values
    for g, e in zip(got.chunks, expected.chunks):
        assert g.dictionary.equals(e.dictionary)
        assert g.indices.equals(e.indices)


def test_fixed_width_codes_long_values():
    rng = np.random.default_rng(3)
    values = [
        f"id{int(i):010d}x{int(j):05d}" for i, j in zip(rng.integers(0, 50, 5000), rng.integers(0, 7, 5000))
    ]
    arr = pa.array(values)
    codes = T.fixed_width_codes(arr)
    expected, _ = pd.factorize(np.array(values, dtype=object))
    np.testing.assert_array_equal(codes, expected)
    sliced = arr.slice(17, 300)
    np.testing.assert_array_equal(
        T.fixed_width_codes(sliced), pd.factorize(np.array(values[17:317], dtype=object))[0]
    )
    assert T.fixed_width_codes(pa.array(["a", "bb"])) is None
    assert T.fixed_width_codes(pa.array(["a" * 40, "b" * 40])) is None


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    width=st.integers(1, 32),
    n=st.integers(1, 60),
    alphabet=st.sampled_from(["01", "0123456789", "ab\x00\x7f", "x"]),
    prefix=st.integers(0, 32),
    suffix=st.integers(0, 32),
    large=st.booleans(),
    skip=st.integers(0, 3),
)
def test_fixed_width_codes_equal_factorize(seed, width, n, alphabet, prefix, suffix, large, skip):
    """Codes of equal-length values by their bytes' varying bits equal ``pd.factorize``'s,
    and so do ``fixed_width_ids``' first rows:
    a common prefix or suffix (words that do not vary: left out), values that differ in a
    single bit, in the bytes two words share (the last word overlaps the one before it when
    the length is not a multiple of 8), one value only; ``string`` and ``large_string``,
    sliced arrays."""
    rng = np.random.default_rng(seed)
    prefix, suffix = min(prefix, width), min(suffix, width - min(prefix, width))
    middle = width - prefix - suffix
    values = [  # (not NumPy's strings: they drop trailing NULs)
        "p" * prefix + "".join(alphabet[i] for i in rng.integers(0, len(alphabet), middle)) + "s" * suffix
        for _ in range(n + skip)
    ]
    arr = pa.array(values, pa.large_string() if large else pa.string()).slice(skip)
    codes = T.fixed_width_codes(arr)
    want, _ = pd.factorize(np.array(values[skip:], dtype=object))
    assert codes is not None and codes.dtype == np.int64
    np.testing.assert_array_equal(codes, want)
    ids, first = T.fixed_width_ids(arr)  # with each code's first row (found by the sort, or read off)
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_array_equal(first, [np.flatnonzero(want == g)[0] for g in range(want.max() + 1)])


@pytest.mark.parametrize("dtype", ["str", "string[pyarrow]"])
def test_one_string_key_group_ids_by_bytes_equal_factorize(dtype):
    """``group_ids`` of one string key (the combine of partials stacked from several blocks:
    a chunked Arrow column) numbers equal-length values by their bytes
    (``aggregations.string_codes``) exactly as ``pd.factorize``; missing values or
    unequal lengths take ``pd.factorize`` itself."""
    rng = np.random.default_rng(5)
    values = [f"id{int(i):010d}" for i in rng.integers(0, 300, 2000)]
    for case in (values, values[:7] + [None] + values[7:], values[:9] + ["short"] + values[9:]):
        parts = [pd.Series(case[:500], dtype=dtype), pd.Series(case[500:], dtype=dtype)]
        col = pd.concat(parts, ignore_index=True)
        t = pd.DataFrame({"k": col})
        ids, first = A.group_ids(t, ["k"])
        want, _ = pd.factorize(col, use_na_sentinel=False)
        np.testing.assert_array_equal(ids, want)
        np.testing.assert_array_equal(first, [np.flatnonzero(want == g)[0] for g in range(want.max() + 1)])
        assert (A.string_codes(col) is None) == (case is not values)
        codes, width = A._key_codes(col)
        np.testing.assert_array_equal(codes, want)
        assert width == want.max() + 1


@st.composite
def keyed_frames(draw):
    n = draw(st.integers(1, 60))
    cats = draw(st.lists(words, min_size=1, max_size=5, unique=True))
    extra = draw(st.lists(words, max_size=2, unique=True))  # unused categories
    codes = [draw(st.integers(-1, len(cats) - 1)) for _ in range(n)]
    dtype = pd.CategoricalDtype(cats + [w for w in extra if w not in cats])
    k = pd.Categorical.from_codes(codes, dtype=dtype)
    j = [draw(st.sampled_from([1.0, 2.0, np.nan])) for _ in range(n)]
    x = [draw(st.one_of(st.floats(-1e6, 1e6), st.just(np.nan))) for _ in range(n)]
    v = [draw(st.integers(-(2**40), 2**40)) for _ in range(n)]
    return pd.DataFrame({"k": k, "j": j, "x": x, "v": np.array(v, dtype=np.int64)})


INTERS = [
    [("v", "sum"), ("x", "fsum"), ("x", "count")],  # q3: sum + mean (pandas' path)
    [("x", "count"), ("x", "mean"), ("x", "m2"), ("k", "count")],  # a key aggregated too
    [("x", "min"), ("x", "max"), ("v", "first"), ("v", "size")],
]


@settings(max_examples=150, deadline=None)
@given(keyed_frames(), st.sampled_from([["k"], ["k", "j"], ["j", "k"]]), st.booleans(), st.integers(0, 2))
def test_chunk_partial_coded_keys_equal_categorical_groupby(df, keys, dropna, which):
    """The partial of categorical keys grouped on codes equals, group by group and bit for
    bit, the partial of pandas' categorical group-by (what the code did before)."""
    inters = INTERS[which]
    got = A.chunk_partial(df, keys, inters, dropna, first_pos=5)  # first_pos: the pandas path
    ref = _categorical_partial(df, keys, inters, dropna)
    assert list(got.columns) == list(ref.columns)
    got = got.sort_values(A.FIRST_POS).reset_index(drop=True)
    ref = ref.sort_values(A.FIRST_POS).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, ref, check_exact=True)


def _categorical_partial(df, keys, inters, dropna):
    """``chunk_partial`` as before this change: pandas' group-by on the categorical keys."""
    saved = A._coded_keys
    A._coded_keys = lambda *a: {}
    try:
        return A.chunk_partial(df, keys, inters, dropna, first_pos=5)
    finally:
        A._coded_keys = saved
