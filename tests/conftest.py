"""Fixtures and hooks shared by every test folder.

- Under an MPI launcher only tests/parallel runs: the other folders start ``mpiexec`` (and
  services) themselves and would run the same subprocesses once per rank, so they are skipped.
- ``flights`` and the same rows as a hive-partitioned Parquet dataset (``parquet_dir``,
  ``flights_ordered``) and as an HDF5 column group (``hdf5_file``), written once per session.

Helpers that tests import live in the ``tests.helpers`` package.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.helpers.cli import flights_frame, read_back_parquet_dataset
from tests.helpers.mpi import UNDER_MPI


def pytest_collection_modifyitems(config, items):
    if not UNDER_MPI:
        return
    skip = pytest.mark.skip(
        reason="under an MPI launcher only tests/parallel runs (the other "
        "folders run once, without MPI, and start mpiexec themselves)"
    )
    for item in items:
        if item.path.parent.name != "parallel":
            item.add_marker(skip)


@pytest.fixture(scope="session")
def flights() -> pd.DataFrame:
    """600 flight-like rows (see :func:`tests.helpers.cli.flights_frame`)."""
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


@pytest.fixture(scope="session")
def flights_ordered(flights) -> pd.DataFrame:
    """``flights`` in the order hpcframe reads ``parquet_dir``: month last, file order."""
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
