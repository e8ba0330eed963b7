"""Fixtures of the command-line tests: a small hive-partitioned Parquet dataset and the same
rows as an HDF5 column group, written with pandas/pyarrow/h5py into a temporary directory.

These tests run in one process (the local engine); the MPI test launches ``mpiexec`` itself.
Started under an MPI launcher, the module is skipped (it would run the same subprocesses once
per rank)."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

_MPI_ENV = ("PMI_SIZE", "PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def pytest_collection_modifyitems(config, items):
    if any(v in os.environ for v in _MPI_ENV):
        skip = pytest.mark.skip(reason="tests/cli runs without MPI (it starts mpiexec itself)")
        for item in items:
            if "tests/cli/" in str(item.fspath).replace(os.sep, "/"):
                item.add_marker(skip)


def flights_frame(n: int = 600, seed: int = 3) -> pd.DataFrame:
    """Flight-like rows: NaN delays, string carriers, datetimes, three months."""
    rng = np.random.default_rng(seed)
    dep = rng.normal(10, 30, n).round(1)
    dep[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "month": rng.integers(1, 4, n),
        "day": rng.integers(1, 6, n),
        "carrier": pd.array(rng.choice(["AA", "UA", "DL", "B6"], n), dtype="str"),
        "origin": pd.array(rng.choice(["JFK", "LGA", "EWR"], n), dtype="str"),
        "dep_delay": dep,
        "arr_delay": (dep + rng.normal(0, 5, n)).round(1),
        "distance": rng.integers(100, 3000, n),
        "time_hour": pd.Timestamp("2013-01-01") + pd.to_timedelta(rng.integers(0, 90 * 24, n),
                                                                   unit="h"),
    })


@pytest.fixture(scope="session")
def flights() -> pd.DataFrame:
    return flights_frame()


@pytest.fixture(scope="session")
def parquet_dir(tmp_path_factory, flights) -> str:
    """``flights`` as Parquet, hive-partitioned by month, two row groups per file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("data") / "flights"
    for month, part in flights.groupby("month"):
        d = root / f"month={month}"
        d.mkdir(parents=True)
        table = pa.Table.from_pandas(part.drop(columns="month"), preserve_index=False)
        pq.write_table(table, d / "part-0.parquet", row_group_size=(len(part) + 1) // 2)
    return str(root)


def read_back_parquet_dataset(flights: pd.DataFrame) -> pd.DataFrame:
    """``flights`` as hpcframe reads the hive dataset: month last, rows in file order."""
    parts = [p.drop(columns="month").assign(month=m) for m, p in flights.groupby("month")]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="session")
def flights_ordered(flights) -> pd.DataFrame:
    return read_back_parquet_dataset(flights)


@pytest.fixture(scope="session")
def hdf5_file(tmp_path_factory, flights) -> str:
    """The numeric and string columns of ``flights`` as an HDF5 group of 1-D datasets."""
    import h5py

    path = tmp_path_factory.mktemp("h5") / "flights.h5"
    with h5py.File(path, "w", track_order=True) as f:
        g = f.create_group("flights", track_order=True)
        for c in ["month", "day", "dep_delay", "arr_delay", "distance"]:
            g.create_dataset(c, data=flights[c].to_numpy())
        for c in ["carrier", "origin"]:
            g.create_dataset(c, data=np.array(list(flights[c]), dtype=h5py.string_dtype()))
    return str(path)


from cli_support import write_spec  # noqa: E402,F401 - kept for `from conftest import`
