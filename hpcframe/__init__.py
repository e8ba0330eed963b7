"""hpcframe: pandas analytics over partitioned Parquet/HDF5, across MPI ranks.

>>> import hpcframe as hf
>>> flights = hf.read_parquet("data/flights/")
>>> by_day = flights[flights.carrier == "AA"].groupby(["year", "month", "day"]).dep_delay.mean()
>>> by_day.compute()        # local engine; the same script under mpiexec runs on every rank

``import hpcframe`` is light: it imports only the configuration and the error classes. pandas,
pyarrow and numpy are imported on first use of a name that needs them (``hf.read_parquet``,
``hf.Frame`` ...; see :data:`_LAZY`), mpi4py only when a computation starts in a process run by
an MPI launcher (or a communicator is passed), h5py only by :func:`read_hdf`.
tests/unit/test_startup.py keeps it so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from .comm import abort_job_on_uncaught
from .config import config
from .errors import (
    ColumnNotFoundError,
    ComputeError,
    DatasetComputeError,
    DatasetError,
    HpcframeError,
    JobInterrupted,
)

# under an MPI launcher, an uncaught exception on one rank ends the job (no rank left waiting)
abort_job_on_uncaught()

__all__ = [
    "read_parquet",
    "read_hdf",
    "from_pandas",
    "compute",
    "cluster",
    "merge",
    "register_aggregation",
    "read_csv",
    "to_parquet",
    "to_hdf",
    "to_csv",
    "ProgressBar",
    "Profiler",
    "ResourceProfiler",
    "Cache",
    "CacheProfiler",
    "visualize",
    "profiling",
    "last_run_stats",
    "config",
    "Frame",
    "Series",
    "GroupBy",
    "Result",
    "Scalar",
    "HpcframeError",
    "DatasetError",
    "ComputeError",
    "DatasetComputeError",
    "ColumnNotFoundError",
    "JobInterrupted",
    "__version__",
]


_LAZY = {  # name -> module: imported on first use, so `import hpcframe` stays light
    "read_parquet": "hpcframe.readers",
    "read_hdf": "hpcframe.readers",
    "read_csv": "hpcframe.readers",
    "from_pandas": "hpcframe.readers",
    "compute": "hpcframe.frame",
    "merge": "hpcframe.frame",
    "Frame": "hpcframe.frame",
    "Series": "hpcframe.frame",
    "GroupBy": "hpcframe.frame",
    "Result": "hpcframe.frame",
    "Scalar": "hpcframe.frame",
    "register_aggregation": "hpcframe.aggregations",
    "last_run_stats": "hpcframe.execute",
    "to_parquet": "hpcframe.writing",
    "to_hdf": "hpcframe.writing",
    "to_csv": "hpcframe.writing",
    "ProgressBar": "hpcframe.diagnostics",
    "Profiler": "hpcframe.diagnostics",
    "ResourceProfiler": "hpcframe.diagnostics",
    "visualize": "hpcframe.diagnostics",
    "profiling": "hpcframe.diagnostics",
    "QueryError": "hpcframe.query",
    "Cache": "hpcframe.cache",
    "CacheProfiler": "hpcframe.diagnostics",
    "SpecError": "hpcframe.spec",
    # the Dask engine's cluster and error (dask imported only when used)
    "cluster": "hpcframe.jobs.dask",
    "DaskEngineError": "hpcframe.dask_engine",
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from .aggregations import register_aggregation
    from .diagnostics import Profiler, ProgressBar, ResourceProfiler, profiling, visualize
    from .execute import last_run_stats
    from .frame import Frame, GroupBy, Result, Scalar, Series, compute, merge
    from .readers import from_pandas, read_csv, read_hdf, read_parquet
    from .writing import to_csv, to_hdf, to_parquet


def __getattr__(name):
    """The lazily exported names (:data:`_LAZY`), imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hpcframe' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__():
    """The module's names, including the lazily exported ones."""
    return sorted(set(globals()) | set(_LAZY))
