"""Helpers of the ingest tests: small CSV-like data sets and compressed copies of files.
(``mpiexec`` runs: :func:`tests.helpers.mpi.run_mpi`.)"""

import bz2
import gzip
import lzma
import os

import numpy as np
import pandas as pd

from tests.helpers import TESTS

HERE = os.path.join(TESTS, "ingest")
"""The ingest tests' folder (its ``scripts/`` are run under mpiexec)."""


def flights(n, seed=0, year=2016):
    """``n`` rows of a BTS-like flights table (a text column with commas and empty values)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Year": year,
            "Month": rng.integers(1, 13, n),
            "FlightDate": [
                f"{year}-{m:02d}-{d:02d}" for m, d in zip(rng.integers(1, 13, n), rng.integers(1, 29, n))
            ],
            "Carrier": rng.choice(["AA", "UA", "DL", "WN"], n),
            "Flights": rng.integers(0, 5, n),
            "Cancelled": rng.random(n).round(3),
            "Origin": rng.choice(["JFK", "a, quoted", "LAX", ""], n),
        }
    )


def compress(path, kind):
    """``path`` compressed to ``path + '.' + kind`` (gz, bz2, xz, zst)."""
    data = open(path, "rb").read()
    out = f"{path}.{kind}"
    if kind == "gz":
        data = gzip.compress(data)
    elif kind == "bz2":
        data = bz2.compress(data)
    elif kind == "xz":
        data = lzma.compress(data)
    else:
        import pyarrow as pa

        data = pa.compress(data, "zstd", asbytes=True)
        # pa.compress writes a raw frame: fine for a zstd stream reader
    with open(out, "wb") as f:
        f.write(data)
    return out
