"""The diagnostics tests' job: its data set's shape, the job script run alone or under a real
``mpiexec -n N`` (piped, or on a pseudo-terminal), and headless Chromium runs."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest

from tests.helpers import ROOT, TESTS
from tests.helpers.mpi import MPIEXEC, PYTHON

JOB = os.path.join(TESTS, "diagnostics", "scripts", "job.py")
TIMEOUT = 120
FILES, ROWS, ROW_GROUP = 8, 1000, 500  # 8 files x 2 row groups, cut in blocks of 250 rows
LEAVES = FILES * ROWS // 250  # leaves per scan


def job_env() -> dict:
    """This environment without the MPI launcher's variables and progress setting."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPI_LOCALNRANKS"))
    }
    env.pop("HPCFRAME_PROGRESS", None)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def job_command(ranks: int | None, data: str, out: str, mode: str, report: bool = True) -> list[str]:
    cmd = [PYTHON, JOB, data, out, mode, "report" if report else "noreport"]
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
        proc = subprocess.run(
            cmd, capture_output=True, timeout=TIMEOUT, env=job_env(), stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{shlex.join(cmd)} hung: killed after {TIMEOUT} s\n{exc.stdout!r}")
    text = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, (
        f"{shlex.join(cmd)} exited {proc.returncode}\n{text}\n{proc.stderr.decode(errors='replace')}"
    )
    return text


def chromium_run(chromium, tmp_path, *args) -> subprocess.CompletedProcess:
    """Run headless Chromium with ``args``; fail the test when it hangs."""
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
        *args,
    ]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"headless Chromium hung: {shlex.join(cmd)}")
