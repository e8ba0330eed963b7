"""REAL SLURM: a job submitted with ``--requeue`` that is signalled mid-run (the warning signal
to its batch shell, as ``#SBATCH --signal=B:USR1@...`` sends it) checkpoints on every rank,
requeues itself and resumes without redoing finished blocks; its output equals an
uninterrupted run's. ``--retries`` requeues a failed run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from hpcframe.jobs import find_run, scheduler_for, wait
from tests.helpers import ROOT
from tests.helpers.jobs import SCRIPTS

PROFILE = os.path.join(ROOT, "configs", "local.yaml")
SCRIPT = os.path.join(SCRIPTS, "checkpoint_job.py")
BLOCKS = 12
pytestmark = pytest.mark.timeout(400)


def _dataset(root) -> tuple[str, pd.DataFrame]:
    src = os.path.join(str(root), "data")
    os.makedirs(src)
    parts = []
    for i in range(BLOCKS):  # one block per file
        df = pd.DataFrame({"x": np.arange(i * 10, (i + 1) * 10), "y": np.arange(10) * 1.5})
        df["k"] = df.x % 3
        df.to_parquet(os.path.join(src, f"part-{i:02d}.parquet"), index=False)
        parts.append(df)
    return src, pd.concat(parts, ignore_index=True)


def _submit(hf, *args) -> str:
    res = hf("submit", *args)
    assert res.exit_code == 0, res.output
    job_id = res.stdout.strip().splitlines()[-1]
    assert job_id.isdigit(), res.output
    return job_id


def _logs(job_id) -> str:
    info = find_run(job_id)
    text = ""
    for name in sorted(os.listdir(info["run_dir"])):
        if name.startswith(("stdout", "stderr")):
            with open(os.path.join(info["run_dir"], name), errors="replace") as fh:
                text += f"==> {name} <==\n" + fh.read()
    return text


def _start_now_when_requeued(job):
    """SLURM holds a requeued job back for about two minutes (its BeginTime); the tests do not
    wait for that: once the job script said it requeues and the job is pending, it may start."""
    deadline = time.monotonic() + 90
    while f"requeueing job {job}" not in _logs(job) and time.monotonic() < deadline:
        time.sleep(0.3)
    for _ in range(40):
        if scheduler_for("slurm").status(job)[0][1] == "PENDING":
            # slurmd refuses a credential made in the second its last run's was revoked
            # ("Job credential revoked"): start a few seconds later
            time.sleep(3)
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], timeout=30, check=False)
            return
        time.sleep(0.5)


def test_a_signalled_job_requeues_itself_and_resumes(slurm_cluster, workdir, hf):
    src, df = _dataset(workdir)
    out = str(workdir / "out")
    job = _submit(
        hf,
        SCRIPT,
        "--profile",
        PROFILE,
        "--ntasks-per-node",
        "2",
        "--name",
        "ckpt",
        "--time",
        "00:05:00",
        "--requeue",
        "--signal",
        "USR1@60",
        "--",
        src,
        out,
    )
    script = open(find_run(job)["script"]).read()
    assert "#SBATCH --signal=B:USR1@60" in script and "#SBATCH --requeue" in script
    # wait until the ranks finished some blocks, then send the warning to the batch shell
    deadline = time.monotonic() + 120
    while len(re.findall(r"block \d+ rank \d run 0", _logs(job))) < 3:
        assert time.monotonic() < deadline, "the job did not start: " + _logs(job)
        time.sleep(0.3)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True, timeout=30)
    _start_now_when_requeued(job)
    rows = wait(job, scheduler_for("slurm"), timeout=300, poll=1.0)
    logs = _logs(job)
    assert [s for _, s, _ in rows] == ["COMPLETED"], logs
    assert "SIGUSR1 received: asking the ranks to checkpoint" in logs, logs
    assert "the ranks checkpointed (exit status 75)" in logs and f"requeueing job {job}" in logs, logs
    first = len(re.findall(r"block \d+ rank \d run 0", logs))
    assert 0 < first < BLOCKS, logs
    assert not os.path.exists(os.path.join(out, "run0.json"))  # the first run stopped
    with open(os.path.join(out, "run1.json")) as fh:
        resumed = json.load(fh)
    assert resumed["ranks"] == 2
    # only the blocks that were not finished before the signal were read again
    assert resumed["blocks_read"] == BLOCKS - first, logs
    assert len(re.findall(r"block \d+ rank \d run 1", logs)) == BLOCKS - first, logs
    assert len(re.findall(r"cached \d+ rank \d run 1", logs)) == first, logs
    want = df.groupby("k").agg(total=("x", "sum"), mean_y=("y", "mean"), n=("y", "count"))
    got = pd.read_parquet(os.path.join(out, "result.parquet"))
    pd.testing.assert_frame_equal(got, want)
    # and bit for bit what an uninterrupted run gives (here: one local rank, no cache)
    env = dict(os.environ, SLOW="0", HPCFRAME_ENGINE="local", PYTHONPATH=ROOT)
    env.pop("HPCFRAME_CACHE_DIR", None)
    plain = str(workdir / "plain")
    subprocess.run([sys.executable, SCRIPT, src, plain], check=True, env=env, timeout=120)
    pd.testing.assert_frame_equal(
        got, pd.read_parquet(os.path.join(plain, "result.parquet")), check_exact=True
    )


def test_retries_requeue_a_failed_run(slurm_cluster, workdir, hf):
    out = str(workdir / "out")
    job = _submit(
        hf,
        SCRIPT,
        "--profile",
        PROFILE,
        "--ntasks-per-node",
        "1",
        "--name",
        "retry",
        "--time",
        "00:03:00",
        "--retries",
        "1",
        "--",
        "--fail-first",
        out,
    )
    _start_now_when_requeued(job)
    rows = wait(job, scheduler_for("slurm"), timeout=300, poll=1.0)
    logs = _logs(job)
    assert [s for _, s, _ in rows] == ["COMPLETED"], logs
    assert "retry 1 of 1" in logs, logs
    with open(os.path.join(out, "ok.json")) as fh:
        assert json.load(fh) == {"run": 1}
