"""Checkpoint and requeue in rendered job scripts (``--requeue/--signal/--retries``): SLURM, PBS
Pro and Torque compared line by line with reference files, bad values refused with a message
naming them, and the PBS body run WITHOUT a PBS server: its own timer sends the warning, the
ranks checkpoint, ``qrerun`` is called, and the rerun resumes and equals pandas."""

from __future__ import annotations

import json
import os
import re

import pandas as pd
import pytest

from hpcframe.jobs import JobError, make_params, render_job
from tests.helpers.jobs import SCRIPTS
from tests.helpers.mpi import MPIEXEC
from tests.jobs.test_pbs_body_without_server import run_like_a_pbs_server
from tests.jobs.test_render import PROGRAM, RUN_DIR, assert_same_lines, params

CHECKPOINT = dict(requeue=True, signal="USR1@300", retries=2, array=None, after=[])


@pytest.mark.parametrize(
    "ref,kw",
    [
        ("checkpoint-slurm.sbatch", dict(scheduler="slurm")),
        ("checkpoint-pbs.pbs", dict(scheduler="pbs", launcher="mpiexec")),
        ("checkpoint-torque.pbs", dict(scheduler="torque", launcher="mpiexec")),
    ],
)
def test_rendering_matches_the_reference(ref, kw):
    from hpcframe.jobs import scheduler_for

    p = params(**CHECKPOINT, **kw)
    assert_same_lines(scheduler_for(p.scheduler).render(p, PROGRAM, RUN_DIR), ref)


def test_slurm_directives_and_defaults():
    p = params(scheduler="slurm", requeue=True, array=None, after=[])
    text = render_job_text(p)
    assert "#SBATCH --requeue" in text and "#SBATCH --signal=B:USR1@120" in text  # the default
    assert "#SBATCH --open-mode=append" in text
    assert "export HPCFRAME_CHECKPOINT_SIGNALS=USR1,TERM" in text
    assert 'scontrol requeue "$SLURM_JOB_ID"' in text
    plain = render_job_text(params(scheduler="slurm", array=None, after=[]))
    assert "requeue" not in plain and "HPCFRAME_CHECKPOINT" not in plain  # off by default
    only_signal = render_job_text(params(scheduler="slurm", signal="SIGUSR2@60", array=None, after=[]))
    assert "#SBATCH --signal=B:USR2@60" in only_signal and "#SBATCH --requeue" not in only_signal
    assert "scontrol requeue" not in only_signal  # checkpoint and stop, no requeue
    assert "export HPCFRAME_CHECKPOINT_SIGNALS=USR2,TERM" in only_signal


def render_job_text(p):
    from hpcframe.jobs import scheduler_for

    return scheduler_for(p.scheduler).render(p, PROGRAM, RUN_DIR)


@pytest.mark.parametrize(
    "kw,words",
    [
        (dict(signal="KILL@60"), ["--signal 'KILL@60'", "USR1, USR2, TERM"]),
        (dict(signal="USR1@later"), ["--signal 'USR1@later'", "NAME@SECONDS"]),
        (dict(signal="USR1@7200", time="01:00:00"), ["7200 s before the time limit", "01:00:00"]),
        (dict(retries=-1), ["--retries", "-1"]),
        (dict(retries="two"), ["--retries", "'two'"]),
        (dict(requeue="yes"), ["requeue must be true or false"]),
        (dict(extra_directives=["--signal=B:USR2@60"]), ["--signal"]),
        (dict(extra_directives=["--requeue"]), ["--requeue"]),
    ],
)
def test_bad_values_are_refused_naming_them(kw, words):
    with pytest.raises(JobError) as err:
        params(scheduler="slurm", array=None, after=[], **kw)
    for w in words:
        assert w in str(err.value)


def test_pbs_refuses_its_own_rerun_directive():
    with pytest.raises(JobError, match="-r"):
        params(scheduler="pbs", array=None, after=[], extra_directives=["-r n"])


@pytest.mark.timeout(200)
def test_pbs_body_checkpoints_on_its_own_timer_reruns_and_resumes(tmp_path, monkeypatch):
    """PBS has no warning signal: the script's timer sends SIGUSR1 to the batch shell 25 s
    before the 33 s wall time; the ranks (Hydra's mpiexec, which does not forward SIGUSR1)
    see the request file, stop at a block boundary and exit 75; the script calls ``qrerun``
    (a stand-in on PATH records the call). The rerun resumes from the checkpoint."""
    submit_dir = tmp_path / "submit-dir"
    submit_dir.mkdir()
    monkeypatch.chdir(submit_dir)
    src = tmp_path / "data"
    src.mkdir()
    frames = []
    for i in range(12):
        df = pd.DataFrame({"x": range(i * 10, (i + 1) * 10), "y": [j * 1.5 for j in range(10)]})
        df["k"] = df.x % 3
        df.to_parquet(src / f"part-{i:02d}.parquet", index=False)
        frames.append(df)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "qrerun.calls"
    (bin_dir / "qrerun").write_text(f'#!/bin/bash\necho "$@" >> {calls}\n')
    (bin_dir / "qrerun").chmod(0o755)
    p = make_params(
        None,
        {"ntasks_per_node": 2, "launcher": MPIEXEC, "time": "00:00:33", "requeue": True, "signal": "USR1@25"},
        scheduler="pbs",
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    text = render_job(p, os.path.join(SCRIPTS, "checkpoint_job.py"), [str(src), "out"], run_dir=str(run_dir))
    assert "sleep 8 &" in text  # 33 s - 25 s
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": os.getcwd()}
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    # each rank's 6 blocks take 6 x SLOW s: with 1.5 s a rank that started within a second
    #    began its last block about when the 8 s timer fired, and sometimes finished without
    #    seeing the request (a failed CI run); 2.5 s leaves it mid-way at 8 s
    first = run_like_a_pbs_server(text, tmp_path, {**env, "SLOW": "2.5", "HPCFRAME_TEST_RUN": "0"})
    log = first.stdout + first.stderr
    assert first.returncode == 0, log  # qrerun succeeded: the script ends, PBS reruns the job
    assert "SIGUSR1 received: asking the ranks to checkpoint" in log, log
    assert "the ranks checkpointed (exit status 75)" in log, log
    assert calls.read_text().split() == ["4242.fakeserver"]
    done = len(re.findall(r"block \d+ rank \d run 0", log))
    assert done < 12, log
    out = submit_dir / "out"
    assert not (out / "run0.json").exists()
    second = run_like_a_pbs_server(text, tmp_path, {**env, "SLOW": "0", "HPCFRAME_TEST_RUN": "1"})
    assert second.returncode == 0, second.stdout + second.stderr
    assert json.loads((out / "run1.json").read_text())["blocks_read"] == 12 - done
    df = pd.concat(frames, ignore_index=True)
    want = df.groupby("k").agg(total=("x", "sum"), mean_y=("y", "mean"), n=("y", "count"))
    pd.testing.assert_frame_equal(pd.read_parquet(out / "result.parquet"), want)


def test_submit_options_reach_the_script(hf, workdir):
    script = os.path.join(SCRIPTS, "checkpoint_job.py")
    res = hf(
        "submit",
        script,
        "--scheduler",
        "slurm",
        "--requeue",
        "--retries",
        "2",
        "--signal",
        "USR2@90",
        "--dry-run",
    )
    assert res.exit_code == 0, res.output
    assert "#SBATCH --signal=B:USR2@90" in res.stdout and "#SBATCH --requeue" in res.stdout
    assert "hpcframe_retries=2" in res.stdout and "trap 'hpcframe_checkpoint USR2' USR2" in res.stdout
    bad = hf("submit", script, "--scheduler", "slurm", "--signal", "HUP@60", "--dry-run")
    assert bad.exit_code == 2 and "--signal 'HUP@60' is not valid" in bad.output
