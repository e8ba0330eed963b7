"""A checkpoint signal (SIGUSR1/SIGTERM with HPCFRAME_CHECKPOINT_SIGNALS) stops every rank at a
block boundary, agreed, with exit code 75; a stopped conversion resumes where it stopped and
equals an uninterrupted one (real signals, real mpiexec, 1-4 ranks)."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from tests.helpers.mpi import MPIEXEC

HERE = os.path.dirname(__file__)
SCRIPT = os.path.join(HERE, "scripts", "checkpoint_stop.py")
ROOT = os.path.dirname(os.path.dirname(HERE))
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt") / "data"
    d.mkdir()
    for i in range(12):  # x = 0..119, one block of 10 rows per file
        pd.DataFrame({"x": np.arange(i * 10, (i + 1) * 10), "y": np.arange(10) * 1.5}).assign(
            k=lambda f: f.x % 3
        ).to_parquet(d / f"part-{i:02d}.parquet")
    return str(d)


def _env(**extra):
    env = dict(os.environ, HPCFRAME_CHECKPOINT_SIGNALS="USR1,TERM", PYTHONPATH=ROOT)
    env.pop("HPCFRAME_CHECKPOINT_FILE", None)
    env.update(extra)
    return env


def _cmd(n, *args):
    return ([MPIEXEC, "-n", str(n)] if n > 1 else []) + [sys.executable, SCRIPT, *args]


def _run(n, *args, **env):
    return subprocess.run(_cmd(n, *args), capture_output=True, text=True, timeout=120, env=_env(**env))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_a_signal_to_one_rank_stops_every_rank_at_a_block_boundary(data, n):
    proc = _run(n, "self", data)
    out = proc.stdout
    report = out + proc.stderr
    assert proc.returncode == 75, report
    assert out.count("rank-caught: JobCheckpointed") == n, report
    assert "result" not in out
    assert f"rank {n - 1} on" in out and "stopped at a block boundary" in out, report
    # the signalling rank ran exactly two blocks: it stopped before its third
    assert len(re.findall(rf"block \d+ rank {n - 1}(?!\d)", out)) == 2, report


def test_a_second_signal_drops_the_block_in_flight(data):
    t0 = time.time()
    proc = _run(2, "drop", data)
    out = proc.stdout
    assert proc.returncode == 75, out + proc.stderr
    assert out.count("rank-caught: JobCheckpointed") == 2
    assert "dropped the block in flight" in out
    assert time.time() - t0 < 25  # the 30 s block was dropped, not finished


def test_a_signal_from_outside_to_every_rank(data):
    """As srun forwards a job's SIGUSR1 (or SLURM sends SIGTERM at the time limit) to every
    task: both ranks stop, agree, and exit 75."""
    proc = subprocess.Popen(
        _cmd(2, "wait", data), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(SLOW="0.3")
    )
    pids, lines = {}, []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        for rank, pid in re.findall(r"pid (\d+) (\d+)", line):  # lines of 2 ranks may interleave
            pids[int(rank)] = int(pid)
        if "block" in line and len(pids) == 2:
            break
    for sig, pid in zip((signal.SIGUSR1, signal.SIGTERM), pids.values()):
        os.kill(pid, sig)
    rest, err = proc.communicate(timeout=60)
    out = "".join(lines) + rest
    assert proc.returncode == 75, out + err
    assert out.count("rank-caught: JobCheckpointed") == 2, out + err
    # each rank stops at its next block boundary, or at the other's notice: one or both named
    assert "SIGUSR1 arrived" in out or "SIGTERM arrived" in out, out + err
    assert "result" not in out


def test_a_request_file_stops_the_ranks(data, tmp_path):
    """The job script's fallback for launchers that do not forward signals: the batch shell
    creates HPCFRAME_CHECKPOINT_FILE; the ranks see it at their next block boundary."""
    flag = tmp_path / "checkpoint.request"
    env = _env(SLOW="0.3", HPCFRAME_CHECKPOINT_FILE=str(flag))
    proc = subprocess.Popen(
        _cmd(2, "wait", data), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "block" in line:
            break
    flag.write_text("")
    rest, err = proc.communicate(timeout=60)
    out = "".join(lines) + rest
    assert proc.returncode == 75, out + err
    assert out.count("rank-caught: JobCheckpointed") == 2
    assert "checkpoint request" in out


@pytest.mark.parametrize("n", [3])
def test_a_signalled_conversion_resumes_and_equals_an_uninterrupted_one(data, tmp_path, n):
    out = str(tmp_path / "out")
    first = _run(n, "convert", data, out)
    assert first.returncode == 75, first.stdout + first.stderr
    assert not os.path.exists(out)  # nothing published yet
    done_before = len(re.findall(r"block \d+ rank", first.stdout))
    second = _run(n, "convert", data, out, NOSIGNAL="1")
    assert second.returncode == 0, second.stdout + second.stderr
    redone = len(re.findall(r"block \d+ rank", second.stdout))
    assert redone == 12 - done_before  # no finished block was written again
    assert f"skipped {done_before}" in second.stdout
    got, want = pd.read_parquet(out), pd.read_parquet(data)
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("n", [1, 4])
def test_a_signalled_query_resumes_from_the_kept_partials(data, tmp_path, n):
    """With HPCFRAME_CACHE_DIR (what a checkpointing job script sets), the partials of the
    blocks finished before the signal are kept; the resumed run reads only the others and its
    result equals pandas' (and so an uninterrupted run's)."""
    out, store = str(tmp_path / "result.parquet"), str(tmp_path / "checkpoint")
    first = _run(n, "query", data, out, HPCFRAME_CACHE_DIR=store)
    assert first.returncode == 75, first.stdout + first.stderr
    assert first.stdout.count("rank-caught: JobCheckpointed") == n
    done_before = len(re.findall(r"block \d+ rank", first.stdout))
    assert 0 < done_before < 12
    second = _run(n, "query", data, out, HPCFRAME_CACHE_DIR=store, NOSIGNAL="1")
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"computed read {12 - done_before}" in second.stdout, second.stdout
    df = pd.read_parquet(data)
    want = df.groupby("k").agg(total=("x", "sum"), mean_y=("y", "mean"), n=("y", "count"))
    pd.testing.assert_frame_equal(pd.read_parquet(out), want)


def test_hpcframe_convert_checkpoints_with_exit_75_and_resumes(data, tmp_path):
    """The command line: a checkpoint request while ``hpcframe convert`` runs on 2 ranks ends
    it with exit status 75 (the job script requeues on it), its written parts kept; the same
    command again finishes the conversion, equal to the source."""
    from hpcframe.io.writers import leaves_recorded

    out = tmp_path / "out"
    flag = tmp_path / "checkpoint.request"
    staging = tmp_path / ".out.hpcframe-staging"
    cmd = [
        MPIEXEC,
        "-n",
        "2",
        sys.executable,
        "-m",
        "hpcframe.cli",
        "convert",
        data,
        str(out),
        "--to",
        "parquet",
    ]
    # rank 0 pauses 4 s before its 2nd part: the request arrives while it is busy
    env = _env(
        HPCFRAME_CHECKPOINT_FILE=str(flag), HPCFRAME_TEST_FAULT="part:pause:0:2", HPCFRAME_TEST_PAUSE="4"
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (staging.is_dir() and leaves_recorded(str(staging)) >= 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    flag.write_text("")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, stdout + stderr
    assert "checkpointed" in stderr and "re-run the same command to resume" in stderr, stderr
    kept = leaves_recorded(str(staging))
    assert 0 < kept < 12 and not out.exists()
    flag.unlink()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_env())
    assert again.returncode == 0, again.stdout + again.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(data))


def test_a_job_spec_in_the_launcher_leaves_mpi_cleanly_with_75_and_resumes(data, tmp_path):
    """What a job's ranks run (``python -m mpi4py -m hpcframe.jobs.launch job.yaml``): a
    checkpoint request ends every rank with MPI_Finalize and exit status 75 (no MPI_Abort);
    the same command again resumes from the partials in HPCFRAME_CACHE_DIR."""
    out, flag = tmp_path / "out.parquet", tmp_path / "checkpoint.request"
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"input:\n  path: {data}\ngroupby: [k]\naggregate:\n  x: sum\n  y: mean\n"
        f"output:\n  path: {out}\n  overwrite: true\n"
    )
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "mpi4py", "-m", "hpcframe.jobs.launch", str(spec)]
    env = _env(HPCFRAME_CHECKPOINT_FILE=str(flag), HPCFRAME_CACHE_DIR=str(tmp_path / "checkpoint"))
    flag.write_text("")  # asked before the first block: nothing is done, everything is kept
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    report = first.stdout + first.stderr
    assert first.returncode == 75, report
    assert "checkpoint: every rank stopped; 2 of 2 rank(s) got the request" in report
    assert "hpcframe: checkpointed" in report and "BAD TERMINATION" not in report, report
    assert not out.exists()
    flag.unlink()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    df = pd.read_parquet(data)
    want = df.groupby("k").agg(x=("x", "sum"), y=("y", "mean")).reset_index()
    pd.testing.assert_frame_equal(pd.read_parquet(out), want)
