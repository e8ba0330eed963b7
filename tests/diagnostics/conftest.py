"""Fixtures of the diagnostics tests: a small Parquet dataset (and the same rows as
xz-compressed CSV), the job script run under a real ``mpiexec -n N`` (piped, or on a terminal
through util-linux ``script``), and headless Chromium (installed with apt-get when missing and
running as root). The runners are in :mod:`tests.helpers.diagnostics`."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers.diagnostics import FILES, ROW_GROUP, ROWS, run_job


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    import numpy as np
    import pandas as pd

    out = tmp_path_factory.mktemp("diag-data")
    rng = np.random.default_rng(0)
    frames = []
    for i in range(FILES):
        df = pd.DataFrame(
            {"key": rng.integers(0, 20, ROWS), "x": rng.normal(size=ROWS), "y": rng.normal(size=ROWS)}
        )
        df.to_parquet(out / f"part-{i}.parquet", row_group_size=ROW_GROUP)
        frames.append(df)
    return str(out), pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="session")
def csv_dataset(dataset, tmp_path_factory):
    """The same rows as ``dataset`` in xz-compressed CSV files (the seed workflow of lazy
    ``read_csv`` over ``*.csv.xz``): their row counts are only estimated before reading.
    Returns (glob, DataFrame)."""
    import lzma

    _, df = dataset
    out = tmp_path_factory.mktemp("diag-csv")
    for i in range(FILES):
        part = df.iloc[i * ROWS : (i + 1) * ROWS]
        with lzma.open(out / f"part-{i}.csv.xz", "wt") as fh:
            part.to_csv(fh, index=False)
    return str(out / "*.csv.xz"), df


@pytest.fixture(scope="session")
def runs(dataset, tmp_path_factory):
    """Lazily run the job once per (ranks, tty); returns (output text, output directory)."""
    data, _ = dataset
    base = tmp_path_factory.mktemp("diag-runs")
    done = {}

    def get(ranks, tty=False):
        key = (ranks, tty)
        if key not in done:
            out = str(base / f"n{ranks}-{'tty' if tty else 'pipe'}")
            done[key] = (run_job(ranks, data, out, "auto", tty), out)
        return done[key]

    return get


@pytest.fixture(scope="session")
def chromium():
    """Path of a headless Chromium; installed from Debian when missing and running as root."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        proc = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )
        if proc.returncode != 0:  # the package lists may be missing on a fresh machine
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, env=env)
            proc = subprocess.run(
                ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                capture_output=True,
                text=True,
                timeout=900,
                env=env,
            )
        path = shutil.which("chromium")
        if path:
            return path
        pytest.fail(f"apt-get install chromium failed:\n{proc.stdout[-3000:]}{proc.stderr}")
    pytest.skip("headless Chromium is missing (apt-get install chromium, as root)")
