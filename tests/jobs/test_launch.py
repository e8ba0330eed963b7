"""Inside the job: hpcframe.jobs.launch checks COMM_WORLD.size against the scheduler's grant.

These run the REAL launch module under the real ``mpiexec`` (pip MPICH), with the scheduler's
environment variables set by the test (no scheduler runs here: the variables are what SLURM/PBS
would export)."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pandas as pd
import pytest

from hpcframe.jobs.launch import LaunchError, check_world, expected_size, substitute
from tests.helpers.jobs import SCRIPTS, expected_groupby, make_dataset
from tests.helpers.mpi import MPIEXEC, PYTHON

LAUNCH = [PYTHON, "-m", "mpi4py", "-m", "hpcframe.jobs.launch"]


def run(cmd, env_extra, cwd, timeout=90):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "PBS_", "HPCFRAME_ARRAY", "PMI_", "HYDRA_"))
    }
    env.update(env_extra)
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_expected_size_from_scheduler_variables(tmp_path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("n1\nn1\nn2\nn2\n")
    assert expected_size({}) is None
    assert expected_size({"SLURM_NTASKS": "4"})[0] == 4
    assert expected_size({"SLURM_NPROCS": "3"})[0] == 3
    assert expected_size({"PBS_NODEFILE": str(nodefile)})[0] == 4
    assert expected_size({"PBS_NODEFILE": str(nodefile), "HPCFRAME_CPUS_PER_TASK": "2"})[0] == 2
    with pytest.raises(LaunchError, match="PBS_NODEFILE=.*cannot be read"):
        expected_size({"PBS_NODEFILE": str(tmp_path / "missing")})


def test_check_world_in_this_process_is_a_singleton():
    """This pytest process is an MPI singleton (size 1): what plain srun would start."""
    from mpi4py import MPI

    assert check_world(MPI.COMM_WORLD, env={}) == 1
    assert check_world(MPI.COMM_WORLD, env={"SLURM_NTASKS": "1"}) == 1
    with pytest.raises(
        LaunchError,
        match=r"size is 1 but the scheduler granted 4 tasks "
        r"\(SLURM_NTASKS=4\).*singleton.*srun --mpi=pmi2",
    ):
        check_world(MPI.COMM_WORLD, env={"SLURM_NTASKS": "4"})


def test_array_placeholder_substitution():
    env = {"HPCFRAME_ARRAY_NAME": "month", "SLURM_ARRAY_TASK_ID": "7"}
    assert substitute("data/month={month}/x_{month}.parquet", env) == "data/month=7/x_7.parquet"
    assert substitute("{month}", {}) == "{month}"


@pytest.mark.timeout(120)
def test_two_ranks_matching_grant_run_the_script(tmp_path):
    src, df = make_dataset(tmp_path)
    out = tmp_path / "out"
    proc = run(
        [MPIEXEC, "-n", "2", *LAUNCH, os.path.join(SCRIPTS, "groupby_job.py"), src, str(out), "m{month}"],
        {"SLURM_NTASKS": "2", "HPCFRAME_ARRAY_NAME": "month", "SLURM_ARRAY_TASK_ID": "5"},
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    ranks = [json.loads((out / f"m5.rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["size"], r["array_index"]) for r in ranks] == [(0, 2, "5"), (1, 2, "5")]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "m5.parquet"), expected_groupby(df))


@pytest.mark.timeout(120)
def test_world_smaller_than_grant_is_a_clear_error(tmp_path):
    proc = run(
        [MPIEXEC, "-n", "2", *LAUNCH, os.path.join(SCRIPTS, "sleep_job.py")], {"SLURM_NTASKS": "3"}, tmp_path
    )
    assert proc.returncode != 0
    assert "MPI world size is 2 but the scheduler granted 3 tasks (SLURM_NTASKS=3)" in proc.stderr


@pytest.mark.timeout(120)
def test_singletons_under_a_grant_of_two_say_why(tmp_path):
    """Two separate processes without a launcher = what plain ``srun`` (no --mpi=pmi2) does."""
    procs = [
        subprocess.Popen(
            [*LAUNCH, os.path.join(SCRIPTS, "sleep_job.py")],
            cwd=tmp_path,
            env={**os.environ, "SLURM_NTASKS": "2"},
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode != 0
        assert "MPI world size is 1 but the scheduler granted 2 tasks" in err
        assert "singleton" in err and "--mpi=pmi2" in err


@pytest.mark.timeout(120)
def test_pbs_nodefile_mismatch(tmp_path):
    nodefile = tmp_path / "nodes"  # hydra reads it too: list this host (3 slots)
    nodefile.write_text(f"{socket.gethostname()}\n" * 3)
    proc = run(
        [MPIEXEC, "-n", "2", *LAUNCH, os.path.join(SCRIPTS, "sleep_job.py")],
        {"PBS_NODEFILE": str(nodefile)},
        tmp_path,
    )
    assert proc.returncode != 0
    assert "size is 2 but the scheduler granted 3 tasks (3 lines in PBS_NODEFILE=" in proc.stderr


@pytest.mark.timeout(120)
def test_uncaught_exception_on_one_rank_aborts_instead_of_hanging(tmp_path):
    proc = run(
        [MPIEXEC, "-n", "2", *LAUNCH, os.path.join(SCRIPTS, "fail_job.py")],
        {"SLURM_NTASKS": "2"},
        tmp_path,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "deliberate failure on the last rank" in proc.stderr
    assert "unreachable" not in proc.stderr
