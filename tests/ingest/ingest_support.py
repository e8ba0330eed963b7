"""Helpers of the ingest tests: small CSV data sets, compression, mpiexec runs."""
import bz2
import gzip
import lzma
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

HERE = os.path.dirname(__file__)
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")


def flights(n, seed=0, year=2016):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "Year": year, "Month": rng.integers(1, 13, n),
        "FlightDate": [f"{year}-{m:02d}-{d:02d}" for m, d in
                       zip(rng.integers(1, 13, n), rng.integers(1, 29, n))],
        "Carrier": rng.choice(["AA", "UA", "DL", "WN"], n),
        "Flights": rng.integers(0, 5, n), "Cancelled": rng.random(n).round(3),
        "Origin": rng.choice(["JFK", "a, quoted", "LAX", ""], n)})


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


def run_mpi(n, args, timeout=120, env=None):
    """``mpiexec -n n python args...``; the process is killed after ``timeout`` seconds."""
    cmd = [MPIEXEC, "-n", str(n), sys.executable, *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as exc:  # a hang: fail with what the ranks printed
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s\nstdout:\n{out}\n"
                    f"stderr:\n{err}")
