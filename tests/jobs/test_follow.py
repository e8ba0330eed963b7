"""REAL SLURM: following jobs from anywhere (issue 13, items 1-3).

Four small jobs in all, shared by the tests through module-scoped fixtures: a 2-rank user
script whose last rank raises ``SystemExit("...")``, a job submitted by hand with ``sbatch``,
a submitted ``hpcframe convert`` and a CSV job spec with ``progress: true``. Every command is
run from a directory other than the one the job was submitted from, with the per-user job
record in a private ``XDG_STATE_HOME``.
"""

from __future__ import annotations

import os
import subprocess

import pandas as pd
import pytest
from click.testing import CliRunner

from hpcframe.jobs import records
from tests.helpers import ROOT
from tests.helpers.jobs import cli_group

PROFILE = os.path.join(ROOT, "configs", "local.yaml")
pytestmark = pytest.mark.timeout(300)

FAILING = """\
import sys, time
from mpi4py import MPI

comm = MPI.COMM_WORLD
print(f"rank {comm.rank} starting", flush=True)
time.sleep(3)
if comm.rank == comm.size - 1:
    raise SystemExit("bad input: column 'dep_delay' is missing in part-7.parquet")
comm.Barrier()
print("unreachable", flush=True)
"""

SPEC = """\
input:
  path: flights-2013-*.csv.xz
filter: "delay > 0"
groupby: [carrier]
aggregate:
  delay: sum
output:
  path: by_carrier.parquet
progress: true
profile_dir: prof
"""


@pytest.fixture(scope="module")
def env(slurm_cluster, tmp_path_factory):
    """A submit directory, another directory to follow from, a private state directory."""
    root = tmp_path_factory.mktemp("follow")
    saved = {k: os.environ.get(k) for k in ("XDG_STATE_HOME", "HPCFRAME_RUNS", "HPCFRAME_PROFILE")}
    os.environ["XDG_STATE_HOME"] = str(root / "state")
    os.environ.pop("HPCFRAME_RUNS", None)
    os.environ.pop("HPCFRAME_PROFILE", None)
    cwd = os.getcwd()
    (root / "submit").mkdir()
    (root / "elsewhere").mkdir()
    yield root
    os.chdir(cwd)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def hf(*args):
    return CliRunner().invoke(cli_group(), [str(a) for a in args], catch_exceptions=False)


def submit_from(env, *args) -> str:
    os.chdir(env / "submit")
    res = hf("submit", *args)
    assert res.exit_code == 0, res.output
    job = res.stdout.strip().splitlines()[-1]
    assert job.isdigit(), res.output
    os.chdir(env / "elsewhere")
    return job


@pytest.fixture(scope="module")
def failing_job(env):
    (env / "submit" / "failing.py").write_text(FAILING)
    return submit_from(env, "failing.py", "--profile", PROFILE, "--ntasks-per-node", "2", "--name", "failing")


@pytest.fixture(scope="module")
def csv_data(env):
    import numpy as np

    rng = np.random.default_rng(3)
    parts = []
    for i in range(3):
        df = pd.DataFrame(
            {
                "carrier": rng.choice(["AA", "DL", "UA"], 60),
                "delay": rng.integers(-20, 90, 60).astype("int64"),
            }
        )
        df.to_csv(env / "submit" / f"flights-2013-{i}.csv.xz", index=False)
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def test_failing_job_followed_from_another_directory(env, failing_job):
    """logs --follow tails until the end; wait exits with the script's status (1, not 137);
    status names the rank and its SystemExit message; the scheduler's ExitCode is 1:0."""
    assert os.getcwd() == str(env / "elsewhere")
    assert not (env / "elsewhere" / "hpcframe-runs").exists()
    followed = hf("logs", failing_job, "--follow", "--poll", "0.5")
    assert followed.exit_code == 0, followed.output
    assert "rank 0 starting" in followed.stdout and "rank 1 starting" in followed.stdout
    assert "bad input: column 'dep_delay' is missing" in followed.stdout
    assert "unreachable" not in followed.stdout

    waited = hf("wait", failing_job, "--poll", "0.5")
    assert waited.exit_code == 1, waited.output
    assert f"{failing_job}\tFAILED\texit status 1" in waited.stdout
    assert "rank 1 of 2 failed (exit status 1)" in waited.stderr

    status = hf("status", failing_job)
    assert status.exit_code == 3, status.output
    assert "ExitCode=1:0" in status.stdout  # was 137:0: srun killed the step after MPI_Abort
    assert "rank 1 of 2 failed (exit status 1)" in status.stdout
    assert "SystemExit: bad input: column 'dep_delay' is missing in part-7.parquet" in status.stdout
    assert "failing.py:8" in status.stdout  # where it was raised

    table = hf("jobs")
    assert table.exit_code == 0, table.output
    line = next(ln for ln in table.stdout.splitlines() if ln.startswith(failing_job + " "))
    run_dir = records.load(failing_job)["run_dir"]
    assert line.split()[1:3] == ["failing", "FAILED"] and line.split()[-1] == run_dir
    assert run_dir.startswith(str(env / "submit" / "hpcframe-runs"))


def test_job_submitted_by_hand_is_asked_of_the_scheduler(env, failing_job):
    """sbatch without hpcframe: status/logs/wait/jobs read scontrol's StdOut and ExitCode."""
    out = env / "by-hand.%j.out"
    proc = subprocess.run(
        ["sbatch", "--parsable", "-J", "byhand", "-n", "1", "-p", "debug", f"--output={out}",
         "--wrap", "echo hello from a job submitted by hand; exit 3"],
        capture_output=True, text=True, cwd=env, check=True,
    )  # fmt: skip
    job = proc.stdout.strip().split(";")[0]
    assert records.load(job) is None
    waited = hf("wait", job, "--poll", "0.5")
    assert waited.exit_code == 3, waited.output
    status = hf("status", job)
    assert status.exit_code == 3 and f"{job}\tFAILED" in status.stdout, status.output
    assert "(none: submitted outside hpcframe)" in status.stderr
    logs = hf("logs", job)
    assert logs.exit_code == 0 and "hello from a job submitted by hand" in logs.stdout
    assert f"by-hand.{job}.out" in logs.stdout
    rows = {r["job_id"]: r for r in records.job_table()}
    assert rows[job]["name"] == "byhand" and rows[job]["output"] == str(env / f"by-hand.{job}.out")
    assert rows[failing_job]["state"] == "FAILED"


def test_submitted_convert_command(env, csv_data):
    """hpcframe submit -- convert ...: the command runs on both ranks inside the job."""
    job = submit_from(
        env, "--profile", PROFILE, "--ntasks-per-node", "2", "--name", "conv", "--",
        "convert", "flights-2013-*.csv.xz", "flights-pq", "--to", "parquet",
    )  # fmt: skip
    assert records.load(job)["target"] == "hpcframe convert"
    waited = hf("wait", job, "--poll", "0.5")
    assert waited.exit_code == 0, hf("logs", job).stdout
    got = pd.read_parquet(env / "submit" / "flights-pq")
    pd.testing.assert_frame_equal(
        got.sort_values(["carrier", "delay"]).reset_index(drop=True),
        csv_data.sort_values(["carrier", "delay"]).reset_index(drop=True),
        check_dtype=False,
    )
    assert "on 2 rank(s)" in hf("logs", job).stdout


def test_csv_spec_with_progress_and_profile(env, csv_data):
    (env / "submit" / "job.yaml").write_text(SPEC)
    job = submit_from(env, "job.yaml", "--profile", PROFILE, "--ntasks-per-node", "1", "--name", "csvspec")
    waited = hf("wait", job, "--poll", "0.5")
    logs = hf("logs", job).stdout
    assert waited.exit_code == 0, logs
    got = pd.read_parquet(env / "submit" / "by_carrier.parquet")
    want = csv_data[csv_data.delay > 0].groupby("carrier")["delay"].sum().reset_index()
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert "100.0%" in logs and "partitions" in logs  # progress: true, in the batch log
    assert (env / "submit" / "prof" / "run.json").is_file()  # profile_dir: prof
