"""hpcframe: pandas analytics over partitioned Parquet/HDF5, across MPI ranks.

>>> import hpcframe as hf
>>> flights = hf.read_parquet("data/flights/")
>>> by_day = flights[flights.carrier == "AA"].groupby(["year", "month", "day"]).dep_delay.mean()
>>> by_day.compute()        # local engine; the same script under mpiexec runs on every rank

``import hpcframe`` is light: pandas and pyarrow are imported, mpi4py only when the process
runs under an MPI launcher (or a communicator is passed), h5py only by :func:`read_hdf`.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .aggregations import register_aggregation
from .config import config
from .errors import ColumnNotFoundError, ComputeError, DatasetComputeError, DatasetError, HpcframeError
from .errors import JobInterrupted
from .execute import last_run_stats
from .frame import Frame, GroupBy, Result, Series, compute

__all__ = [
    "read_parquet", "read_hdf", "from_pandas", "compute", "register_aggregation",
    "read_csv", "to_parquet", "to_hdf", "to_csv",
    "ProgressBar", "Profiler", "ResourceProfiler", "visualize", "profiling",
    "last_run_stats", "config", "Frame", "Series", "GroupBy", "Result",
    "HpcframeError", "DatasetError", "ComputeError", "DatasetComputeError", "ColumnNotFoundError", "JobInterrupted",
    "__version__",
]


def _frame(source) -> Frame:
    from .io.types import empty_frame
    from .plan import Scan

    return Frame(Scan(source, empty_frame(source.schema())))


def read_parquet(path, columns=None, hive: bool = True) -> Frame:
    """A lazy frame over Parquet data: a file, a directory (searched recursively; ``key=value``
    folders become columns when ``hive``), a glob pattern, or a list of files.

    Only the footers of the first file are read now. Raises ``FileNotFoundError`` when nothing
    matches and :class:`DatasetError` when the first file is not Parquet.
    """
    from .io.parquet import ParquetSource

    frame = _frame(ParquetSource(path, hive=hive))
    return frame[list(columns)] if columns is not None else frame


def read_hdf(path, key: str | None = None, columns=None) -> Frame:
    """A lazy frame over HDF5 data (h5py): a group of equal-length 1-D column datasets, a
    compound dataset, or a table written by ``pandas.DataFrame.to_hdf(format="table")``.
    ``path`` may be a file, a glob or a list; ``key`` selects the object inside the files.
    """
    from .io.hdf5 import HDF5Source
    from .io.paths import expand_paths

    files, _ = expand_paths(path, (".h5", ".hdf5", ".hdf", ".he5"), "HDF5")
    frame = _frame(HDF5Source(files, key=key, label=_given(path)))
    return frame[list(columns)] if columns is not None else frame


def _given(path):
    """The path the user passed, as text (for messages), or None for a list."""
    import os

    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else None


def from_pandas(df, npartitions: int = 1) -> Frame:
    """A lazy frame over an in-memory pandas DataFrame split into ``npartitions`` row ranges.
    Under MPI every rank must hold the same frame (as in an SPMD script)."""
    from .io.memory import PandasSource

    return _frame(PandasSource(df, npartitions))


_LAZY = {  # name -> module: imported on first use, so `import hpcframe` stays light
    "read_csv": "hpcframe.io.csv",
    "to_parquet": "hpcframe.io.writers",
    "to_hdf": "hpcframe.io.writers",
    "to_csv": "hpcframe.io.writers",
    "ProgressBar": "hpcframe.diagnostics",
    "Profiler": "hpcframe.diagnostics",
    "ResourceProfiler": "hpcframe.diagnostics",
    "visualize": "hpcframe.diagnostics",
    "profiling": "hpcframe.diagnostics",
    "QueryError": "hpcframe.query",
    "SpecError": "hpcframe.spec",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hpcframe' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
