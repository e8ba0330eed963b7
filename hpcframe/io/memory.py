"""An in-memory pandas DataFrame as a dataset of row-range partitions (``hf.from_pandas``).

In an SPMD program every rank holds the same frame; each rank converts only its own share.
"""

from __future__ import annotations

import pyarrow as pa

from .dataset import Partition


class PandasSource:
    """A pandas DataFrame split into ``npartitions`` equal row ranges (``hf.from_pandas``).

    Raises :class:`TypeError` if ``df`` is not a DataFrame, :class:`ValueError` if
    ``npartitions < 1``.
    """

    format = "pandas"

    def __init__(self, df, npartitions: int = 1):
        import pandas as pd

        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"from_pandas expects a pandas DataFrame, not {type(df).__name__}")
        if npartitions < 1:
            raise ValueError(f"npartitions must be at least 1, got {npartitions}")
        self.df = df.reset_index(drop=True)
        self.npartitions = npartitions
        self.files: list[str] = []  # no files: partitions are row ranges of the frame
        self.label = f"pandas DataFrame {df.shape[0]}x{df.shape[1]}"
        self._schema = _frame_schema(self.df)

    def schema(self) -> pa.Schema:
        """The Arrow schema of the frame, flagged with the pandas dtype each column gets back."""
        return self._schema

    def discover(self, comm) -> list[Partition]:
        """One partition per row range (nothing to read: every rank computes the same list)."""
        n = len(self.df)
        k = self.npartitions
        bounds = [n * i // k for i in range(k + 1)]
        row_bytes = max(1, int(self.df.memory_usage(deep=False, index=False).sum()) // max(n, 1))
        # one "file" per partition: the user chose the partitioning, keep it
        return [
            Partition(
                f"<pandas partition {i}>",
                "in memory",
                bounds[i],
                bounds[i + 1],
                (bounds[i + 1] - bounds[i]) * row_bytes,
            )
            for i in range(k)
        ]

    def read(self, part: Partition, columns: list[str]) -> pa.Table:
        """The rows of ``part``, restricted to ``columns``, as an Arrow table of the schema's types."""
        chunk = self.df.iloc[part.start : part.stop][list(columns)]
        return pa.Table.from_pandas(chunk, schema=_select(self._schema, columns), preserve_index=False)


# pandas' nullable (masked) dtypes: without a flag an Int64 column would be int64 in blocks
# without NA and float64 in the others
_NULLABLE = {
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "Float32",
    "Float64",
    "boolean",
}


def _frame_schema(df) -> pa.Schema:
    """The Arrow schema of ``df``, with the dtype each column must get back in pandas.

    Types of ``object`` columns come from their values (an empty frame says nothing about
    them): strings stay strings; pandas nullable dtypes (``Int64``, ``boolean``...) are flagged
    to be rebuilt as such in every block; any other object column (bools with ``None``, Python ints or
    floats with ``None``, decimals, ...) is flagged ``object`` (see :mod:`hpcframe.io.types`)
    so that every block gives back Python objects, as the frame holds them. A column Arrow
    cannot hold (values of several types) is refused, naming it."""
    import pandas as pd

    from .dataset import DatasetError
    from .types import EXTENSION, OBJECT, flag_fields, is_string

    base = pa.Schema.from_pandas(df.head(0), preserve_index=False)
    fields, flags = list(base), {}
    na_strings = [
        str(name)
        for name in df.columns
        if isinstance(df[name].dtype, pd.StringDtype) and df[name].dtype.na_value is pd.NA
    ]
    if na_strings:
        import warnings

        warnings.warn(
            f"from_pandas: column(s) {', '.join(map(repr, na_strings))} have pandas' 'string' "
            "dtype (missing values pd.NA); hpcframe holds them as 'str' (missing values NaN): "
            "results come back 'str', and a missing string compares as NaN does (s != 'a' "
            "keeps it). Convert with .astype('str') to silence this.",
            UserWarning,
            stacklevel=4,
        )
    for i, name in enumerate(df.columns):
        if i >= len(fields):
            continue
        dtype = df[name].dtype
        if isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.name in _NULLABLE:
            flags[fields[i].name] = EXTENSION + dtype.name.encode()
            continue
        if not pd.api.types.is_object_dtype(dtype):
            continue
        try:
            t = pa.array(df[name], from_pandas=True).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError) as exc:
            kinds = sorted({type(v).__name__ for v in df[name].dropna().head(10_000)})
            raise DatasetError(
                f"from_pandas: column {name!r} (object dtype) holds values hpcframe cannot "
                f"store in one typed column ({', '.join(kinds)}: {exc}). Convert it to one "
                f"type first, e.g. df[{name!r}].astype(str)"
            ) from exc
        fields[i] = fields[i].with_type(t)
        if not is_string(t):
            flags[fields[i].name] = OBJECT
    return flag_fields(pa.schema(fields, metadata=base.metadata), flags)


def _select(schema: pa.Schema, columns) -> pa.Schema:
    return pa.schema([schema.field(c) for c in columns])
