"""Fixtures of the diagnostics tests: a small Parquet dataset, the job script run under a real
``mpiexec -n N`` (piped, or on a terminal through util-linux ``script``), and headless
Chromium (installed with apt-get when missing and running as root)."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
JOB = os.path.join(HERE, "scripts", "job.py")
BIN = os.path.dirname(sys.executable)
MPIEXEC = os.path.join(BIN, "mpiexec")
TIMEOUT = 120
FILES, ROWS, ROW_GROUP = 8, 1000, 500     # 8 files x 2 row groups, cut in blocks of 250 rows
LEAVES = FILES * ROWS // 250               # leaves per scan


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    import numpy as np
    import pandas as pd

    out = tmp_path_factory.mktemp("diag-data")
    rng = np.random.default_rng(0)
    frames = []
    for i in range(FILES):
        df = pd.DataFrame({"key": rng.integers(0, 20, ROWS), "x": rng.normal(size=ROWS),
                           "y": rng.normal(size=ROWS)})
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
        part = df.iloc[i * ROWS:(i + 1) * ROWS]
        with lzma.open(out / f"part-{i}.csv.xz", "wt") as fh:
            part.to_csv(fh, index=False)
    return str(out / "*.csv.xz"), df


def _env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPI_LOCALNRANKS"))}
    env.pop("HPCFRAME_PROGRESS", None)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(HERE)) + os.pathsep + env.get(
        "PYTHONPATH", "")
    return env


def job_command(ranks: int | None, data: str, out: str, mode: str,
                report: bool = True) -> list[str]:
    cmd = [sys.executable, JOB, data, out, mode, "report" if report else "noreport"]
    return cmd if ranks is None else [MPIEXEC, "-n", str(ranks), *cmd]


def run_job(ranks, data, out, mode="auto", tty=False) -> str:
    """Run the job (under ``mpiexec -n ranks``, or alone when ``ranks`` is None) and return
    its output; with ``tty`` on a pseudo-terminal made by ``script -qec``. Fails the test on
    a non-zero exit or when it runs longer than TIMEOUT seconds (a hang)."""
    cmd = job_command(ranks, data, out, mode, report=not tty)
    if tty:
        if shutil.which("script") is None:
            pytest.skip("util-linux `script` is needed for the terminal tests")
        log = os.path.join(out + ".typescript")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        cmd = ["script", "-qec", shlex.join(cmd), log]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=TIMEOUT, env=_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{shlex.join(cmd)} hung: killed after {TIMEOUT} s\n{exc.stdout!r}")
    text = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, (f"{shlex.join(cmd)} exited {proc.returncode}\n{text}\n"
                                  f"{proc.stderr.decode(errors='replace')}")
    return text


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
        proc = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends",
                               "chromium"], capture_output=True, text=True, timeout=900,
                              env=env)
        if proc.returncode != 0:  # the package lists may be missing on a fresh machine
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, env=env)
            proc = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends",
                                   "chromium"], capture_output=True, text=True, timeout=900,
                                  env=env)
        path = shutil.which("chromium")
        if path:
            return path
        pytest.fail(f"apt-get install chromium failed:\n{proc.stdout[-3000:]}{proc.stderr}")
    pytest.skip("headless Chromium is missing (apt-get install chromium, as root)")


def chromium_run(chromium, tmp_path, *args) -> subprocess.CompletedProcess:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}",
           "--hide-scrollbars", "--virtual-time-budget=5000", *args]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"headless Chromium hung: {shlex.join(cmd)}")
