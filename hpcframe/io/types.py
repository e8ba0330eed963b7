"""Arrow → pandas type mapping: what a column becomes when it reaches pandas.

=============================================  =======================================
Arrow type                                     pandas dtype
=============================================  =======================================
int8…int64, uint8…uint64 (no nulls)            the same NumPy integer dtype
integer with nulls in a partition              float64 (NaN for null), as pandas does
float16/32/64                                  float16/float32/float64
bool                                           bool (object if nulls, as pandas does)
decimal32/64/128/256                           float64, correctly rounded (NaN for null)
string, large_string, string_view              pandas ``str``
dictionary<string> (categorical)               ``category``
date32, date64                                 datetime64[ms]
timestamp[unit, tz]                            datetime64[unit, tz]
=============================================  =======================================

Casts happen in Arrow, once per batch, before filtering and conversion, so that filters see
exactly the values pandas will see.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.types as pat


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
    return pa.schema([pa.field(f.name, pandas_arrow_type(f.type)) for f in schema])


def filter_schema(schema: pa.Schema) -> pa.Schema:
    """The types predicates are evaluated on while reading: as :func:`normalize_schema`, but
    dates stay dates (the expression compares them with date scalars: no cast per row)."""
    return pa.schema([pa.field(f.name, f.type if pat.is_date(f.type)
                               else pandas_arrow_type(f.type)) for f in schema])


def is_string(t: pa.DataType) -> bool:
    return pat.is_string(t) or pat.is_large_string(t) or _is_string_view(t)


def normalize_table(table: pa.Table, declared: pa.Schema | None = None, keep_dict=(),
                    keep_dates: bool = False) -> pa.Table:
    """Cast the columns of ``table`` to the types pandas users expect (see the module table),
    judged by the ``declared`` dataset schema (a reader may hand string columns over as
    dictionaries). String columns named in ``keep_dict`` stay dictionary-encoded (they become
    ``category`` in pandas: group keys aggregate on integer codes). With ``keep_dates`` dates
    are left as dates (for filtering)."""
    declared = declared or table.schema
    cols, fields = [], []
    for name, col in zip(table.column_names, table.columns):
        dtype = declared.field(name).type if name in declared.names else col.type
        if keep_dates and pat.is_date(dtype):
            target = col.type
        elif name in keep_dict and is_string(dtype):
            target = pa.dictionary(pa.int32(), pa.large_string())
        else:
            target = pandas_arrow_type(dtype)
        if col.type == target:
            cols.append(col)
        elif pat.is_decimal(col.type) and target == pa.float64():
            cols.append(decimal_to_float64(col))
        else:
            cols.append(col.cast(target))
        fields.append(pa.field(name, target))
    if not cols:
        return table
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


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
    out = [_decimal_chunk_to_float64(arr, t) for arr in chunks]
    return pa.chunked_array(out, pa.float64())


_EXACT_INT = 2 ** 53


def _decimal_chunk_to_float64(arr: pa.Array, t: pa.DataType) -> pa.Array:
    import numpy as np

    if not pat.is_decimal128(t) and not pat.is_decimal256(t):  # decimal32/64: widen exactly
        t = pa.decimal128(max(t.precision, 1), t.scale)
        arr = arr.cast(t)
    n = len(arr)
    if n == 0:
        return pa.array([], pa.float64())
    mask = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    if pat.is_decimal256(t):
        return _via_text(arr)
    off = arr.offset
    words = np.frombuffer(arr.buffers()[1], dtype=np.uint64, count=2 * (off + n))[2 * off:]
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
        values /= float(10 ** scale)
    elif scale < 0:
        values *= float(10 ** -scale)
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

        return pa.array(np.array([np.nan if v is None else float(v) for v in arr.to_pylist()],
                                 dtype=np.float64), pa.float64(), mask=arr.is_null())


def to_pandas(table: pa.Table):
    """A normalised Arrow table as a pandas DataFrame with a RangeIndex."""
    return normalize_table(table).to_pandas(date_as_object=False, split_blocks=True)


def empty_frame(schema: pa.Schema):
    """An empty pandas DataFrame with the dtypes the columns of ``schema`` will have."""
    return to_pandas(schema.empty_table())
