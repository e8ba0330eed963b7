"""Arrow → pandas type mapping: what a column becomes when it reaches pandas.

=============================================  =======================================
Arrow type                                     pandas dtype
=============================================  =======================================
int8…int64, uint8…uint64 (no nulls)            the same NumPy integer dtype
integer with a null anywhere in the dataset    float64 (NaN for null) in every block
float16/32/64                                  float16/float32/float64
bool (no nulls)                                bool
bool with a null anywhere in the dataset       object (True/False/None) in every block
decimal32/64/128/256                           float64, correctly rounded (NaN for null)
string, large_string, string_view              pandas ``str``
dictionary<string> (categorical)               ``category``
date32, date64                                 datetime64[ms]
timestamp[unit, tz]                            datetime64[unit, tz]
=============================================  =======================================

Casts happen in Arrow, once per batch, before filtering and conversion, so that filters see
exactly the values pandas will see.

**The dtype is a property of the dataset, not of the block.** pandas reads a whole dataset at
once (``pd.read_parquet(directory)``), so an integer column that holds a single null anywhere
is float64 everywhere, and a bool column with a null is object everywhere. A block of such a
column that happens to have no nulls must be converted the same way, or arithmetic runs in
int64 (wrapping where pandas rounds) and group keys differ between blocks. The sources decide
this once, at discovery, from metadata shared by every rank (Parquet ``null_count``
statistics; see :func:`hpcframe.io.dataset.mark_dataset_types`) and record it in the dataset
schema as field metadata (:data:`DTYPE_KEY`):

``nulls``
    an integer (→ float64, cast in Arrow so pushed-down filters compute in float64 too) or
    bool (→ object after conversion) column with a null somewhere in the dataset;
``object``
    a column of a frame given to ``from_pandas`` with ``object`` dtype that is not a string
    column (bools with ``None``, Python ints, ...): converted back to Python objects
    (``None`` for null), as the frame held them;
``ext:<name>``
    a column of a ``from_pandas`` frame with a pandas nullable dtype (``Int64``, ``boolean``,
    ``Float64``, ...): every block is rebuilt with that dtype.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.types as pat

if TYPE_CHECKING:
    import numpy as np

#: field metadata key of the dataset-level dtype decision (see the module docstring)
DTYPE_KEY = b"hpcframe.pandas"
#: field metadata key :func:`normalize_table` puts on the string columns it keeps as
#: dictionaries for a group-by (``keep_dict``; see :func:`block_to_pandas`)
DICT_KEY = b"hpcframe.dictkey"
NULLS = b"nulls"
OBJECT = b"object"
EXTENSION = b"ext:"  # + a pandas nullable dtype name (from_pandas): rebuilt as that dtype


def dtype_flag(f: pa.Field) -> bytes | None:
    """The dataset-level dtype decision recorded on field ``f`` (``NULLS``, ``OBJECT``), or
    ``None``."""
    return (f.metadata or {}).get(DTYPE_KEY)


def flag_fields(schema: pa.Schema, flags: dict) -> pa.Schema:
    """``schema`` with ``flags[name]`` (``NULLS`` or ``OBJECT``) recorded on those fields."""
    fields = []
    for f in schema:
        flag = flags.get(f.name)
        if flag is not None:
            f = f.with_metadata({**(f.metadata or {}), DTYPE_KEY: flag})
        fields.append(f)
    return pa.schema(fields, metadata=schema.metadata)


def strip_flags(schema: pa.Schema, only: bytes | None = None) -> pa.Schema:
    """``schema`` without dtype flags (only the flag ``only``, if given): a file written from a
    flagged schema carries them in its field metadata, but they are decided anew for every
    dataset (its nulls may differ); a write keeps stored integers exact (no ``NULLS``)."""
    fields = []
    for f in schema:
        if f.metadata and DTYPE_KEY in f.metadata and only in (None, f.metadata[DTYPE_KEY]):
            rest = {k: v for k, v in f.metadata.items() if k != DTYPE_KEY}
            f = f.with_metadata(rest) if rest else f.remove_metadata()
        fields.append(f)
    return pa.schema(fields, metadata=schema.metadata)


def field_arrow_type(f: pa.Field) -> pa.DataType:
    """The Arrow type column ``f`` of a dataset schema is cast to before it goes to pandas:
    :func:`pandas_arrow_type`, and float64 for an integer column with nulls in the dataset."""
    if dtype_flag(f) == NULLS and pat.is_integer(f.type):
        return pa.float64()
    return pandas_arrow_type(f.type)


def pandas_arrow_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type a column of type ``t`` is cast to before it goes to pandas."""
    if pat.is_decimal(t):
        return pa.float64()
    if pat.is_date(t):
        return pa.timestamp("ms")
    if pat.is_string(t) or pat.is_large_string(t) or _is_string_view(t):
        return pa.large_string()
    if pat.is_dictionary(t):
        return pa.dictionary(t.index_type, pandas_arrow_type(t.value_type), t.ordered)
    return t


def _is_string_view(t: pa.DataType) -> bool:
    return getattr(pat, "is_string_view", lambda _: False)(t)


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every field mapped by :func:`pandas_arrow_type`."""
    return pa.schema([pa.field(f.name, field_arrow_type(f)) for f in schema])


def filter_schema(schema: pa.Schema) -> pa.Schema:
    """The types predicates are evaluated on while reading: as :func:`normalize_schema`, but
    dates stay dates (the expression compares them with date scalars: no cast per row). The
    fields keep their metadata (a nullable extension dtype's flag decides how missing values
    compare)."""
    return pa.schema(
        [
            pa.field(f.name, f.type if pat.is_date(f.type) else field_arrow_type(f), metadata=f.metadata)
            for f in schema
        ]
    )


def is_string(t: pa.DataType) -> bool:
    """Whether ``t`` is an Arrow string type (``string``, ``large_string`` or ``string_view``)."""
    return pat.is_string(t) or pat.is_large_string(t) or _is_string_view(t)


def normalize_table(
    table: pa.Table, declared: pa.Schema | None = None, keep_dict=(), keep_dates: bool = False
) -> pa.Table:
    """Cast the columns of ``table`` to the types pandas users expect (see the module table),
    judged by the ``declared`` dataset schema (a reader may hand string columns over as
    dictionaries). String columns named in ``keep_dict`` stay dictionary-encoded (they become
    ``category`` in pandas: group keys aggregate on integer codes). With ``keep_dates`` dates
    are left as dates (for filtering)."""
    declared = declared or table.schema
    cols, fields = [], []
    for name, col in zip(table.column_names, table.columns):
        decl = declared.field(name) if name in declared.names else pa.field(name, col.type)
        dtype = decl.type
        if keep_dates and pat.is_date(dtype):
            target = col.type
        elif name in keep_dict and is_string(dtype):
            target = pa.dictionary(pa.int32(), pa.large_string())
        else:
            target = field_arrow_type(decl)
        meta = decl.metadata
        if name in keep_dict and is_string(dtype):  # only a group key's codes count
            meta = {**(meta or {}), DICT_KEY: b"1"}
        elif meta and DICT_KEY in meta:  # (never taken over from a file or an earlier block)
            meta = {k: v for k, v in meta.items() if k != DICT_KEY} or None
        if col.type == target:
            cols.append(col)
        elif pat.is_dictionary(target) and is_string(col.type):
            cols.append(encode_strings(col))
        elif pat.is_decimal(col.type) and target == pa.float64():
            cols.append(decimal_to_float64(col))
        elif pat.is_integer(col.type) and pat.is_floating(target):
            # rounded to nearest, as pandas converts an integer column with nulls (a safe
            # cast would refuse values above 2**53)
            cols.append(col.cast(target, safe=False))
        else:
            cols.append(col.cast(target))
        fields.append(pa.field(name, target, metadata=meta))  # keeps the dtype flag
    if not cols:
        return table
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


# dictionary-encoding string columns of equal-length values without a string hash
#: strings longer than this are encoded by Arrow's hash
_FIXED_WIDTH_MAX = 32
_ALL_BITS = (1 << 64) - 1


def encode_strings(col) -> pa.ChunkedArray:
    """A string column as ``dictionary<int32, large_string>``, each chunk encoded on its own
    with the values in order of first appearance (what Arrow's ``dictionary_encode`` gives).
    A chunk whose values all have the same length (at most 32 bytes, no nulls: identifiers,
    codes) is encoded by :func:`fixed_width_codes` (integer hashing, about twice as fast as
    hashing the strings); the others by Arrow."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    target = pa.dictionary(pa.int32(), pa.large_string())
    out = []
    for arr in chunks:
        made = None
        if not (pat.is_string(arr.type) or pat.is_large_string(arr.type)):
            arr = arr.cast(pa.large_string())  # string_view: Arrow has no dictionary cast for it
        if len(arr) and not arr.null_count:
            ids = fixed_width_ids(arr)
            if ids is not None:
                made = _dictionary_from_codes(arr, *ids)
        out.append(made if made is not None else arr.cast(target))
    return pa.chunked_array(out, target)


def fixed_width_codes(arr: pa.Array):
    """Group codes (int64, numbered by first appearance, as ``pandas.factorize``) of a string
    array without nulls whose values all have the same byte length (1 to 32), or ``None``:
    :func:`fixed_width_ids` without the first rows."""
    got = _fixed_width(arr)
    return None if got is None else got[0]


def fixed_width_ids(arr: pa.Array):
    """``(codes, first)``: :func:`fixed_width_codes`' codes and the row where each code first
    appears (in code order), or ``None``. The sort that numbers the codes finds those rows on
    its way; otherwise they are read off the codes."""
    got = _fixed_width(arr)
    if got is None:
        return None
    codes, first = got
    return codes, (first_rows(codes) if first is None else first)


def _fixed_width(arr: pa.Array):
    """``(codes, first rows or None)`` of :func:`fixed_width_ids`, or ``None``: group codes
    (int64, numbered by first appearance, as ``pandas.factorize``) of a string array without
    nulls whose values all have the same byte length ``L`` (1 to 32). Equal strings of one
    length are equal byte rows: the rows are read as ``ceil(L / 8)`` unsigned 64-bit words,
    in place. A word whose bits are the same in every row (a
    common prefix: ``"id0000012345"``) is left out, and each other word counts only the bits
    that vary (from the lowest to the highest that differs from the first row's). One word:
    those bits are factorized as an integer. Several words whose varying bits and the row
    number fit 64 bits together: the bits side by side in one integer, numbered by
    :func:`sorted_ids` (hashing that integer was slower: packed digits and letters fill few
    of a hash table's slots, and mixing them first costs the table its locality). Otherwise
    each word is factorized and the codes combined (mixed radix, renumbered before they could
    overflow)."""
    import numpy as np
    import pandas as pd

    t = arr.type
    if arr.null_count or not (pat.is_string(t) or pat.is_large_string(t)):
        return None
    n = len(arr)
    if n == 0:
        return None
    buffers = arr.buffers()
    off_type = np.int64 if pat.is_large_string(t) else np.int32
    offsets = np.frombuffer(buffers[1], dtype=off_type)[arr.offset : arr.offset + n + 1]
    start = int(offsets[0])
    width = int(offsets[1]) - start
    if width <= 0 or width > _FIXED_WIDTH_MAX or int(offsets[-1]) - start != n * width:
        return None
    if not (np.diff(offsets) == width).all():
        return None
    words = -(-width // 8)
    if width >= 8:  # each word read in place, 8 bytes at a time: the last one ends the value
        at = [start + min(8 * w, width - 8) for w in range(words)]
        cols = [np.ndarray((n,), dtype="<u8", buffer=buffers[2], offset=a, strides=(width,)) for a in at]
        # the last word's bytes that the one before it holds already are not its own
        owned = [_ALL_BITS] * (words - 1) + [_ALL_BITS ^ ((1 << (8 * (8 * words - width))) - 1)]
    else:
        data = np.frombuffer(buffers[2], dtype=np.uint8, count=start + n * width)[start:].reshape(n, width)
        padded = np.zeros((n, 8), dtype=np.uint8)
        padded[:, :width] = data
        cols, owned = [padded.view("<u8")[:, 0]], [_ALL_BITS]
    spans = _varying_bits(cols, owned)
    if not spans:  # one value
        return np.zeros(n, dtype=np.int64), np.zeros(1, dtype=np.int64)
    shift = max((n - 1).bit_length(), 1)
    if len(spans) > 1 and sum(bits for _, _, bits in spans) + shift <= 64:
        # the varying bits side by side in one integer, numbered by a sort (one hash table per
        # word and one of the combined codes took longer: q3's 12-byte ids, 40 bits)
        key = None
        filled = 0
        for w, low, bits in spans:
            part = _span_value(cols[w], low, bits)
            if filled:
                part <<= np.uint64(filled)
                key |= part
            else:
                key = part
            filled += bits
        return sorted_ids(key)
    ids = None
    for w, low, bits in spans:  # each word's varying bits as a small integer
        codes, uniques = pd.factorize(_span_value(cols[w], low, bits))
        codes = codes.astype(np.int64, copy=False)
        if ids is None:
            ids = codes
            continue
        if int(ids.max(initial=0)) >= (2**62) // max(len(uniques), 1):
            ids = pd.factorize(ids)[0].astype(np.int64, copy=False)
        ids = ids * len(uniques) + codes
    if len(spans) > 1:
        ids = pd.factorize(ids)[0].astype(np.int64, copy=False)  # first-appearance numbering
    return ids, None


def sorted_ids(x):
    """``(ids, first)`` of the integers ``x``: a group number per row, numbered by first
    appearance as ``pd.factorize`` numbers them, and each group's first row; by a sort
    instead of a hash table. Less memory (a hash table of millions of keys takes ~40 bytes
    per row) and, with many groups, much less time: a hash table larger than the caches
    misses on nearly every row (5,000,000 distinct keys: pandas' ``factorize`` 0.5 s, this
    0.2 s). Where each value's offset from the minimum and its row number fit one 64-bit
    integer together, one sort of those integers (NumPy's SIMD sort) orders the rows by value
    and, within a value, by row; otherwise an argsort does, and each group's first row is the
    smallest of its rows."""
    import numpy as np

    # (each temporary dropped as soon as the next exists: ~5 int64 arrays of len(x) at most)
    n = len(x)
    if not n:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    lo, hi = int(x.min()), int(x.max())
    shift = max((n - 1).bit_length(), 1)
    new = np.empty(n, dtype=bool)
    new[0] = True
    if (hi - lo).bit_length() + shift <= 64:
        if x.dtype == np.uint64:  # each value's offset from the minimum (a new array)
            key = x - np.uint64(lo)
        else:
            key = (x.astype(np.int64) - np.int64(lo)).view(np.uint64)
        key <<= np.uint64(shift)
        key |= np.arange(n, dtype=np.uint64)
        key.sort()
        order = (key & np.uint64((1 << shift) - 1)).view(np.int64)
        key >>= np.uint64(shift)  # the values' offsets, in order
        np.not_equal(key[1:], key[:-1], out=new[1:])
        del key
        starts = order[new]  # each group's first row, groups by value
    else:
        order = np.argsort(x)  # (ties in any order)
        xs = x[order]
        np.not_equal(xs[1:], xs[:-1], out=new[1:])
        del xs
        starts = np.minimum.reduceat(order, np.flatnonzero(new))
    first_row = np.zeros(n, dtype=bool)
    first_row[starts] = True
    number = np.cumsum(first_row, dtype=np.int64)  # first rows numbered in row order
    del first_row
    number -= 1
    renumber = number[starts]  # each group's number by first appearance, groups by value
    del number
    group = np.cumsum(new, dtype=np.int64)
    group -= 1  # each sorted row's group, numbered by value
    del new
    np.take(renumber, group, out=group)  # numbered by first appearance
    ids = np.empty(n, dtype=np.int64)
    ids[order] = group
    del order, group
    first = np.empty(len(starts), dtype=np.int64)
    first[renumber] = starts
    return ids, first


def _span_value(col, low: int, bits: int):
    """The ``bits`` bits of each word of ``col`` from bit ``low`` up, as a new uint64 array:
    a word's span of :func:`_varying_bits` as a small integer."""
    import numpy as np

    part = col >> np.uint64(low)
    if bits < 64:
        part &= np.uint64((1 << bits) - 1)
    return part


def _varying_bits(cols, owned) -> list[tuple[int, int, int]]:
    """``(word, lowest bit, bit count)`` of each of ``cols`` (arrays of unsigned 64-bit words,
    one per row) whose ``owned`` bits differ between rows: the span from the lowest to the
    highest bit in which some row differs from the first row. Bits outside the spans are
    equal in every row (or another word's), so two rows are equal exactly when their spans'
    bits are."""
    import numpy as np

    out = []
    for w, (col, mask) in enumerate(zip(cols, owned)):
        differ = int(np.bitwise_or.reduce(col ^ col[0])) & mask
        if differ:
            low = (differ & -differ).bit_length() - 1
            out.append((w, low, differ.bit_length() - low))
    return out


def _dictionary_from_codes(arr: pa.Array, codes, first) -> pa.Array | None:
    """``arr`` as a dictionary array from its first-appearance ``codes`` and each code's
    ``first`` row (``None`` past int32)."""
    import numpy as np

    if len(first) >= 2**31 - 1:
        return None
    dictionary = arr.take(pa.array(first)).cast(pa.large_string())
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), dictionary)


def first_rows(codes):
    """The row where each of ``codes`` (numbered by first appearance, as ``pandas.factorize``;
    none missing) first appears, in code order: a row holds the first occurrence of its value
    exactly when its code exceeds every earlier code."""
    import numpy as np

    if not len(codes):
        return np.empty(0, dtype=np.int64)
    seen = np.maximum.accumulate(codes)
    first = np.empty(len(codes), dtype=bool)
    first[0] = True
    np.greater(seen[1:], seen[:-1], out=first[1:])
    return np.flatnonzero(first)


def decimal_to_float64(col) -> pa.ChunkedArray:
    """A decimal column as float64, correctly rounded: every value is the float nearest to the
    exact decimal, as ``float(decimal.Decimal(text))`` gives (Arrow's own cast is not: it
    rounds twice, off by one unit in the last place for about a quarter of 17-digit values).

    decimal128 values are taken from their 128-bit integer representation ``v`` (value
    ``v / 10**scale``). Where ``|v| <= 2**53`` and ``10**|scale|`` is exactly representable
    (scale at most 22) both operands are exact floats and one IEEE division (or
    multiplication) is correctly rounded: that is done in NumPy. The other values are rounded
    exactly by Python's integer true division. decimal32/64 are widened to decimal128 (exact);
    decimal256 goes through :class:`decimal.Decimal`.
    """
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    t = col.type
    # the common exact case into one array (pandas then takes it without a copy)
    if pat.is_decimal128(t) and t.precision <= _EXACT_DIGITS and 0 <= t.scale <= 22:
        if sum(len(a) for a in chunks):
            return pa.chunked_array([_exact_decimals(chunks, t)], pa.float64())
    out = [_decimal_chunk_to_float64(arr, t) for arr in chunks]
    return pa.chunked_array(out, pa.float64())


def _exact_decimals(chunks, t: pa.DataType) -> pa.Array:
    """decimal128 chunks of precision at most 15 (every ``|v| < 10**15 < 2**53``, so the low
    64-bit word is the value and an exact float) as one float64 array: each value converted,
    then one IEEE division by ``10**scale`` (exact, scale <= 22) — correctly rounded, the same
    operations as :func:`_decimal_chunk_to_float64`."""
    import numpy as np

    total = sum(len(a) for a in chunks)
    values = np.empty(total, dtype=np.float64)
    nulls = None
    pos = 0
    for arr in chunks:
        n = len(arr)
        if n == 0:
            continue
        off = arr.offset
        words = np.frombuffer(arr.buffers()[1], dtype=np.uint64, count=2 * (off + n))[2 * off :]
        values[pos : pos + n] = words[0::2].view(np.int64)  # exact: |v| < 2**53
        if arr.null_count:
            if nulls is None:
                nulls = np.zeros(total, dtype=bool)
            nulls[pos : pos + n] = mask_to_numpy(arr.is_null())
        pos += n
    if t.scale:
        values /= float(10**t.scale)
    return pa.array(values, pa.float64(), mask=nulls)


_EXACT_INT = 2**53
#: decimals of at most this many digits are below 2**53 in magnitude (10**15 < 2**53)
_EXACT_DIGITS = 15


def _decimal_chunk_to_float64(arr: pa.Array, t: pa.DataType) -> pa.Array:
    import numpy as np

    if not pat.is_decimal128(t) and not pat.is_decimal256(t):  # decimal32/64: widen exactly
        t = pa.decimal128(max(t.precision, 1), t.scale)
        arr = arr.cast(t)
    n = len(arr)
    if n == 0:
        return pa.array([], pa.float64())
    mask = mask_to_numpy(arr.is_null()) if arr.null_count else None
    if pat.is_decimal256(t):
        return _via_text(arr)
    off = arr.offset
    words = np.frombuffer(arr.buffers()[1], dtype=np.uint64, count=2 * (off + n))[2 * off :]
    lo, hi = words[0::2], words[1::2].view(np.int64)
    signed = lo.view(np.int64)
    # the value fits int64 when the high word is the sign extension of the low word
    fits = hi == (signed >> np.int64(63))
    small = fits & (signed >= -_EXACT_INT) & (signed <= _EXACT_INT)
    scale = t.scale
    values = signed.astype(np.float64)
    if abs(scale) > 22:
        small[:] = False
    elif scale > 0:
        values /= float(10**scale)
    elif scale < 0:
        values *= float(10**-scale)
    rest = np.flatnonzero(~small if mask is None else ~small & ~mask)
    if len(rest):
        values[rest] = _via_text(arr.take(pa.array(rest))).to_numpy(zero_copy_only=False)
    return pa.array(values, pa.float64(), mask=mask)


def _via_text(arr: pa.Array) -> pa.Array:
    """Decimals as float64 through their exact decimal text, which Arrow parses correctly
    rounded (fast_float); values out of the float range (negative scales) through
    :class:`decimal.Decimal` (``inf``, as ``float(Decimal)``)."""
    try:
        return arr.cast(pa.string()).cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import numpy as np

        return pa.array(
            np.array([np.nan if v is None else float(v) for v in arr.to_pylist()], dtype=np.float64),
            pa.float64(),
            mask=arr.is_null(),
        )


# row masks between Arrow's bitmaps and NumPy's bool arrays: Arrow's own conversions go
# element by element (about 1 ms per million rows each way, ~4 % of a filtered scan's CPU at
# TPC-H SF 10); the bits are (un)packed by NumPy in a twentieth of that
def mask_to_numpy(answer) -> np.ndarray:
    """An Arrow bool array or chunked array as a NumPy bool array (a new array), a null
    answer ``False`` (a filter drops the row either way)."""
    import numpy as np

    if not pat.is_boolean(answer.type):
        import pyarrow.compute as pc

        filled = pc.fill_null(answer, False) if answer.null_count else answer
        return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)
    chunks = answer.chunks if isinstance(answer, pa.ChunkedArray) else [answer]
    parts = [_chunk_mask(c) for c in chunks if len(c)]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def _chunk_mask(arr: pa.Array) -> np.ndarray:
    import numpy as np

    validity, values = arr.buffers()
    n, off = len(arr), arr.offset
    bits = np.unpackbits(np.frombuffer(values, dtype=np.uint8), count=off + n, bitorder="little")[off:]
    if arr.null_count:
        bits &= np.unpackbits(np.frombuffer(validity, dtype=np.uint8), count=off + n, bitorder="little")[off:]
    return bits.view(bool)


def mask_to_arrow(mask) -> pa.Array:
    """A NumPy bool array as an Arrow bool array without nulls (the same rows)."""
    import numpy as np

    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.ndim != 1:
        return pa.array(mask, pa.bool_())
    bits = pa.py_buffer(np.packbits(mask, bitorder="little"))
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, bits])


def block_to_pandas(table: pa.Table, declared: pa.Schema | None = None):
    """A normalised Arrow table (see :func:`normalize_table`) as a pandas DataFrame with a
    RangeIndex, with the dataset-level dtypes of ``declared`` (default: the table's own
    schema): a bool column with nulls in the dataset is object even in a block without any,
    an ``object`` column of a pandas frame comes back as Python objects."""
    declared = declared if declared is not None else table.schema
    # string dictionaries become categoricals from their codes and the Arrow
    #    dictionary as it is (pyarrow's to_pandas turns the dictionary into Python strings and
    #    pandas hashes them again to validate the categories: ~50 ms per 1e5-entry block)
    cats = _fast_categoricals(table)
    view = table
    for i, (codes, _) in cats.items():
        view = view.set_column(i, pa.field(table.schema.field(i).name, codes.type), codes)
    df = view.to_pandas(date_as_object=False, split_blocks=True, types_mapper=_arrow_backed(table.schema))
    if cats:
        import pandas as pd

        for i, (_, cat_dtype) in cats.items():
            codes = df.iloc[:, i].to_numpy()
            df.isetitem(i, pd.Categorical.from_codes(codes, dtype=cat_dtype, validate=False))
    for f in declared:
        flag = dtype_flag(f)
        if flag is None or f.name not in table.column_names:
            continue
        col = table.column(f.name)
        if flag == OBJECT and not pat.is_dictionary(col.type):
            df[f.name] = _objects(col, df.index)
        elif flag.startswith(EXTENSION):
            df[f.name] = _extension(col, flag[len(EXTENSION) :].decode(), df.index)
        elif flag == NULLS and pat.is_boolean(col.type) and df[f.name].dtype != object:
            df[f.name] = df[f.name].astype(object)
    return df


# categoricals straight from Arrow dictionaries
def _fast_categoricals(table: pa.Table) -> dict:
    """``{position: (codes, CategoricalDtype)}`` for the string dictionary columns of ``table``
    that :func:`block_to_pandas` turns into categoricals itself: codes as an Arrow integer
    array (``-1`` for null), the dtype with the dictionary as categories. The others (nulls
    in the dictionary, other value types) are left to pyarrow's ``to_pandas``."""
    out: dict = {}
    if len(set(table.column_names)) != table.num_columns:
        return out
    for i, f in enumerate(table.schema):
        if not pat.is_dictionary(f.type) or not is_string(f.type.value_type):
            continue
        col = table.column(i)
        made = _dictionary_codes(col, f)
        if made is not None:
            out[i] = made
    return out


def _dictionary_codes(col: pa.ChunkedArray, f: pa.Field):
    """``(codes, CategoricalDtype)`` of one string dictionary column (see
    :func:`_fast_categoricals`), or ``None``.

    Several chunks with different dictionaries are unified first (the dictionary of the first
    chunk, then the new values of each later one, as ``to_pandas`` unifies them). A dictionary
    is checked to hold distinct values (pandas' rule for categories) in Arrow, unless the
    column is a group key :func:`normalize_table` kept as dictionary (:data:`DICT_KEY`): Arrow
    builds those dictionaries by hashing (the Parquet and CSV readers, ``dictionary_encode``),
    and the group-by only uses its codes and maps them back to values per block. The dtype of
    a dictionary equal to a recent one is reused (the row groups of a file often share one)."""
    import pyarrow.compute as pc

    if col.num_chunks == 0:
        return None
    if col.num_chunks > 1 and not all(c.dictionary.equals(col.chunk(0).dictionary) for c in col.chunks[1:]):
        unify = getattr(col, "unify_dictionaries", None)
        if unify is None:
            return None
        col = unify()
        trusted = True  # a unified dictionary is built by hashing: distinct values
    else:
        trusted = DICT_KEY in (f.metadata or {})
    dictionary = col.chunk(0).dictionary
    if dictionary.null_count:
        return None
    dtype = _category_dtype(dictionary, f.type.ordered, trusted)
    if dtype is None:
        return None
    chunks = [c.indices for c in col.chunks]
    indices = chunks[0] if len(chunks) == 1 else pa.chunked_array(chunks).combine_chunks()
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    return indices, dtype


#: recently made categorical dtypes: ``(dictionary, ordered, dtype)``, newest last
_RECENT_DTYPES: list = []


def _category_dtype(dictionary: pa.Array, ordered: bool, trusted: bool):
    """The ``CategoricalDtype`` with the values of ``dictionary`` (distinct, no nulls) as
    categories, in the dtype pyarrow's ``to_pandas`` gives them; ``None`` when the values are
    not distinct (pandas' own conversion then raises its error) or not of that dtype."""
    import pyarrow.compute as pc

    for d, o, dtype in reversed(_RECENT_DTYPES):
        if o == ordered and len(d) == len(dictionary) and (d is dictionary or d.equals(dictionary)):
            return dtype
    values_dtype = _category_values_dtype(dictionary.type)
    if values_dtype is None:
        return None
    if not trusted and pc.count_distinct(dictionary, mode="all").as_py() != len(dictionary):
        return None
    import pandas as pd

    values = values_dtype.__from_arrow__(pa.chunked_array([dictionary]))
    cats = pd.Index(values, copy=False)
    if cats.dtype != values_dtype:
        return None
    make = getattr(pd.CategoricalDtype, "_from_fastpath", None)  # no second uniqueness check
    dtype = make(cats, ordered) if make is not None else pd.CategoricalDtype(cats, ordered)
    _RECENT_DTYPES[:] = [*_RECENT_DTYPES[-3:], (dictionary, ordered, dtype)]
    return dtype


@functools.lru_cache(maxsize=8)
def _category_values_dtype(value_type: pa.DataType):
    """The dtype pyarrow's ``to_pandas`` gives the categories of a dictionary of
    ``value_type`` when it is a pandas Arrow string dtype (else ``None``)."""
    import pandas as pd

    one = pa.DictionaryArray.from_arrays(pa.array([0], pa.int32()), pa.array(["a"], value_type))
    dtype = pa.table({"c": one}).to_pandas()["c"].cat.categories.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        return dtype
    return None


# Arrow-backed pandas columns (ArrowDtype) come back as such
def _arrow_backed(schema: pa.Schema):
    """A ``types_mapper`` for ``to_pandas`` giving the columns that pandas wrote as
    ``ArrowDtype`` (e.g. ``large_list<item: int64>[pyarrow]``, which pyarrow cannot parse
    by name) back as ``ArrowDtype``; ``None`` when there are none."""
    # the pandas metadata JSON is parsed once per distinct text, not per block
    names = _arrow_backed_names((schema.metadata or {}).get(b"pandas"))
    if not names:
        return None
    types = {f.type for f in schema if f.name in names}
    if not types:
        return None
    import pandas as pd

    return lambda t: pd.ArrowDtype(t) if t in types else None


@functools.lru_cache(maxsize=32)
def _arrow_backed_names(text: bytes | None) -> frozenset:
    """The columns the pandas metadata ``text`` (JSON) records as ``ArrowDtype``."""
    if not text:
        return frozenset()
    meta = json.loads(text)
    return frozenset(
        c.get("field_name", c.get("name"))
        for c in meta.get("columns", [])
        if str(c.get("numpy_type", "")).endswith("[pyarrow]")
    )


def _extension(col, name: str, index):
    """A column as a pandas nullable extension array (``Int64``, ``boolean``, ``Float64``...)."""
    import pandas as pd

    chunked = col if isinstance(col, pa.ChunkedArray) else pa.chunked_array([col])
    # an Arrow-backed column (pandas cannot parse nested types such as
    #    "large_list<item: int64>[pyarrow]" by name): the Arrow data as it is
    if name.endswith("[pyarrow]"):
        return pd.Series(pd.arrays.ArrowExtensionArray(chunked), index=index)
    dtype = pd.api.types.pandas_dtype(name)
    return pd.Series(dtype.__from_arrow__(chunked), index=index, dtype=dtype)


def _objects(col, index):
    """A column as a pandas object Series of Python values, ``None`` for null."""
    import numpy as np
    import pandas as pd

    values = np.empty(len(col), dtype=object)
    values[:] = col.to_pylist()
    return pd.Series(values, index=index, dtype=object)


def to_pandas(table: pa.Table):
    """A normalised Arrow table as a pandas DataFrame with a RangeIndex."""
    return block_to_pandas(normalize_table(table), table.schema)


def empty_frame(schema: pa.Schema):
    """An empty pandas DataFrame with the dtypes the columns of ``schema`` will have."""
    return to_pandas(schema.empty_table())
