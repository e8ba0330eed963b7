"""How a table column is stored in HDF5 by hpcframe, and how it is read back: one codec for
``to_hdf`` (:mod:`hpcframe.io.writers`), ``write_table`` (:mod:`hpcframe.io.output`) and
``read_hdf`` (:mod:`hpcframe.io.hdf5`).

A table is a group (:data:`GROUP`) of equal-length 1-D datasets, one per column, in column
order:

* numbers and booleans as they are; an integer or boolean column with missing values as
  ``float64`` with NaN (as pandas holds it) — a bool column with a missing value in any part
  of the table so in every file of the dataset, whose virtual dataset takes one type;
* strings (and categoricals, by their values) as UTF-8 variable-length strings; HDF5 strings
  have no null, so a missing string is written as ``""``;
* timestamps as ``int64`` counts of their unit since 1970 (a missing one as the smallest
  int64, which is NaT), with the attribute :data:`DTYPE_ATTR` holding the Arrow type
  (``timestamp[ns]``, ``timestamp[us, tz=UTC]``) and ``units`` saying it in words. The reader
  gives the column that type back.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

#: The group that holds the columns.
GROUP = "data"
#: The attribute that records a column's type when the stored HDF5 type does not say it.
DTYPE_ATTR = "hpcframe_dtype"
#: Older names of that attribute (files written before the codec was shared).
_OLD_ATTRS = ("hpcframe_type",)
_NAT = np.iinfo(np.int64).min


class EncodeError(TypeError):
    """A column cannot be stored in HDF5 (the message names it and says what to do)."""


def timestamp_attrs(t: pa.DataType) -> dict:
    """The attributes of a timestamp column of Arrow type ``t``."""
    return {DTYPE_ATTR: str(t), "units": f"{t.unit} since 1970-01-01"}


def encode_arrow(col, name: str, nulls_elsewhere: bool = False):
    """``(numpy values, h5py dtype or None, attributes)`` of one Arrow column ``col``.
    ``nulls_elsewhere``: the column has missing values in another part of the table (the
    files of one dataset must store it alike: a bool column then float64 with NaN in all)."""
    import h5py

    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(pa.string()), pa.string()
    if pa.types.is_string(t) or pa.types.is_large_string(t) or _is_string_view(t):
        values = col.cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False)
        return values.astype(object), h5py.string_dtype("utf-8"), {}
    if pa.types.is_timestamp(t):
        values = col.cast(pa.int64()).fill_null(_NAT).to_numpy()
        return values, np.int64, timestamp_attrs(t)
    if (col.null_count or nulls_elsewhere) and (pa.types.is_integer(t) or pa.types.is_boolean(t)):
        return col.cast(pa.float64()).fill_null(float("nan")).to_numpy(), np.float64, {}
    if col.null_count:
        col = col.fill_null(float("nan"))
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise EncodeError(
            f"cannot write column {name!r} of type {t} to HDF5; convert it to "
            "numbers, strings or timestamps, or write Parquet"
        )
    return col.to_numpy(), None, {}


def encode_pandas(s, name: str):
    """``(numpy values, attributes)`` of one pandas column ``s``. Raises :class:`EncodeError`
    (a ``TypeError``) for values HDF5 cannot hold, naming the column."""
    import h5py
    import pandas as pd

    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        s = s.astype(dtype.categories.dtype if dtype.categories.dtype != object else "str")
        dtype = s.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        values, _, attrs = encode_arrow(pa.chunked_array([pa.Array.from_pandas(s)]), name)
        return values, attrs
    if pd.api.types.is_bool_dtype(dtype) and not s.isna().any():
        return s.to_numpy(dtype=bool), {}
    if pd.api.types.is_numeric_dtype(dtype):
        if isinstance(dtype, np.dtype) and not (s.isna().any() and dtype.kind in "iu"):
            return s.to_numpy(), {}
        return s.to_numpy(dtype="float64", na_value=np.nan), {}
    if pd.api.types.is_string_dtype(dtype) or (isinstance(dtype, np.dtype) and dtype.kind == "O"):
        values = []
        for v in s.tolist():
            if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
                values.append("")
            elif isinstance(v, str):
                values.append(v)
            else:
                raise EncodeError(
                    f"cannot write column {name!r} to HDF5: it holds "
                    f"{type(v).__name__} values ({v!r}); only strings, numbers, "
                    "booleans and datetimes can be written"
                )
        return np.array(values, dtype=h5py.string_dtype("utf-8")), {}
    raise EncodeError(
        f"cannot write column {name!r} of type {dtype} to HDF5; convert it to "
        "numbers or strings, or write Parquet"
    )


def decoded_type(stored: pa.DataType, attrs) -> pa.DataType:
    """The Arrow type a column stored as ``stored`` (the type of the HDF5 data) with HDF5
    attributes ``attrs`` is read back as: the recorded timestamp type of an int64 column,
    else ``stored``. An attribute that cannot be understood is ignored."""
    if not pa.types.is_integer(stored):
        return stored
    text = None
    for key in (DTYPE_ATTR, *_OLD_ATTRS):
        if key in attrs:
            text = attrs[key]
            break
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        return stored
    m = re.fullmatch(r"(?:timestamp\[(\w+)(?:, tz=([^\]]+))?\]|datetime64\[(\w+)\])", text.strip())
    if m is None:
        return stored
    unit = m.group(1) or m.group(3)
    if unit not in ("s", "ms", "us", "ns"):
        return stored
    return pa.timestamp(unit, tz=m.group(2))


def _is_string_view(t) -> bool:
    return getattr(pa.types, "is_string_view", lambda _: False)(t)
