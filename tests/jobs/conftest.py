"""Fixtures for the batch-job tests: a CLI runner over hpcframe's job commands, a clean working
directory, and (session scope) a REAL single-node SLURM cluster from tests/slurm/start_slurm.sh.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from click.testing import CliRunner

from tests.helpers import ROOT
from tests.helpers.jobs import cli_group


@pytest.fixture
def hf():
    """``hf("submit", "x.py", ...)`` -> click Result (exit_code, stdout, stderr)."""
    runner = CliRunner()
    group = cli_group()

    def invoke(*args):
        return runner.invoke(group, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working directory (run directories land in ./hpcframe-runs) with no profile
    search paths leaking in from the user's home."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HPCFRAME_PROFILES", raising=False)
    monkeypatch.delenv("HPCFRAME_PROFILE", raising=False)
    monkeypatch.delenv("HPCFRAME_RUNS", raising=False)
    monkeypatch.delenv("DASK_CONFIG", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)  # job records go under HOME
    return tmp_path


@pytest.fixture(scope="session")
def slurm_cluster():
    """Bring up the REAL single-node SLURM cluster; return its SLURM_CONF path.

    Needs root (slurmd, munge). When that or the start script fails, the tests FAIL if the
    ``CI`` environment variable is set (CI must run them) and are skipped otherwise.
    """

    def unavailable(why):
        if os.environ.get("CI"):
            pytest.fail(f"SLURM end-to-end tests must run in CI but cannot: {why}")
        pytest.skip(f"no SLURM cluster: {why}")

    if os.geteuid() != 0:
        unavailable("not running as root (slurmd and munged need root)")
    script = os.path.join(ROOT, "tests", "slurm", "start_slurm.sh")
    try:
        proc = subprocess.run(["bash", script], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        unavailable("tests/slurm/start_slurm.sh did not finish in 900 s")
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    if proc.returncode != 0 or not last.startswith("export SLURM_CONF="):
        unavailable(f"tests/slurm/start_slurm.sh exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    conf = last.split("=", 1)[1]
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old
