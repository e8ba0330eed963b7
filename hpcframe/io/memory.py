"""An in-memory pandas DataFrame as a dataset of row-range partitions (``hf.from_pandas``).

In an SPMD program every rank holds the same frame; each rank converts only its own share.
"""
from __future__ import annotations

import pyarrow as pa

from .dataset import Partition


class PandasSource:
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
        self._schema = pa.Schema.from_pandas(self.df.head(0), preserve_index=False)

    def schema(self) -> pa.Schema:
        return self._schema

    def discover(self, comm) -> list[Partition]:
        n = len(self.df)
        k = self.npartitions
        bounds = [n * i // k for i in range(k + 1)]
        row_bytes = max(1, int(self.df.memory_usage(deep=False, index=False).sum()) // max(n, 1))
        # one "file" per partition: the user chose the partitioning, keep it
        return [Partition(f"<pandas partition {i}>", "in memory", bounds[i], bounds[i + 1],
                          (bounds[i + 1] - bounds[i]) * row_bytes) for i in range(k)]

    def read(self, part: Partition, columns: list[str]) -> pa.Table:
        chunk = self.df.iloc[part.start:part.stop][list(columns)]
        return pa.Table.from_pandas(chunk, schema=_select(self._schema, columns),
                                    preserve_index=False)


def _select(schema: pa.Schema, columns) -> pa.Schema:
    return pa.schema([schema.field(c) for c in columns])
