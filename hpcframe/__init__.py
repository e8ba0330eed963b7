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
from .errors import (
    ColumnNotFoundError,
    ComputeError,
    DatasetComputeError,
    DatasetError,
    HpcframeError,
    JobInterrupted,
)
from .execute import last_run_stats
from .frame import Frame, GroupBy, Result, Series, compute
from .readers import from_pandas, read_csv, read_hdf, read_parquet

__all__ = [
    "read_parquet",
    "read_hdf",
    "from_pandas",
    "compute",
    "cluster",  # DASK
    "merge",
    "register_aggregation",
    "read_csv",
    "to_parquet",
    "to_hdf",
    "to_csv",
    "ProgressBar",
    "Profiler",
    "ResourceProfiler",
    "visualize",
    "profiling",
    "last_run_stats",
    "config",
    "Frame",
    "Series",
    "GroupBy",
    "Result",
    "HpcframeError",
    "DatasetError",
    "ComputeError",
    "DatasetComputeError",
    "ColumnNotFoundError",
    "JobInterrupted",
    "__version__",
]


_LAZY = {  # name -> module: imported on first use, so `import hpcframe` stays light
    "to_parquet": "hpcframe.writing",
    "to_hdf": "hpcframe.writing",
    "to_csv": "hpcframe.writing",
    "merge": "hpcframe.frame",
    "ProgressBar": "hpcframe.diagnostics",
    "Profiler": "hpcframe.diagnostics",
    "ResourceProfiler": "hpcframe.diagnostics",
    "visualize": "hpcframe.diagnostics",
    "profiling": "hpcframe.diagnostics",
    "QueryError": "hpcframe.query",
    "SpecError": "hpcframe.spec",
    # -- DASK: the Dask engine's cluster and error (dask imported only when used) --
    "cluster": "hpcframe.jobs.dask",
    "DaskEngineError": "hpcframe.dask_engine",
    # -- end DASK --
}


def __getattr__(name):
    """The lazily exported names (:data:`_LAZY`), imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hpcframe' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__():
    """The module's names, including the lazily exported ones."""
    return sorted(set(globals()) | set(_LAZY))
