"""Without a scheduler: the per-user job record (atomic, safe when submits race), failure
records and the job's exit status (the REAL launch module under the pip MPICH ``mpiexec``),
``qstat -f``/``scontrol``/``sacct`` parsing, submitting hpcframe commands, CSV job specs and
the spec's ``progress:``/``profile_dir:`` keys (run locally and compared with pandas)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shlex
import subprocess

import pandas as pd
import pytest

from hpcframe.jobs import records
from hpcframe.jobs.launch import exit_status_main, failure_record, job_key, status_of
from hpcframe.jobs.slurm import exit_status, parse_sacct, parse_scontrol_tasks
from hpcframe.spec import SpecError, parse_spec, run_job
from tests.helpers.mpi import MPIEXEC, PYTHON, needs_mpiexec


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "hpcframe" / "jobs"


def test_state_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert records.state_dir() == str(tmp_path / "hpcframe")
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert records.state_dir() == str(tmp_path / "home" / ".local" / "state" / "hpcframe")


def _save_many(args):
    start, n = args
    for i in range(start, start + n):
        records.save({"scheduler": "slurm", "job_id": str(i), "name": f"j{i}", "run_dir": None})


def test_racing_submits_all_land_whole(state):
    """Four processes record 200 jobs at once: every record is there and parses."""
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        pool.map(_save_many, [(k * 50, 50) for k in range(4)])
    names = sorted(os.listdir(state))
    assert len(names) == 200 and not [n for n in names if not n.endswith(".json")]
    assert {r["job_id"] for r in records.all_records()} == {str(i) for i in range(200)}
    assert records.load("17_3")["name"] == "j17"  # an array task id selects its array


def test_unwritable_state_dir_warns_and_submit_goes_on(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    assert records.save({"scheduler": "slurm", "job_id": "5"}) is None
    assert "cannot record job 5" in capsys.readouterr().err


def test_exit_status_words():
    assert status_of(SystemExit("bad")) == 1 and status_of(SystemExit(4)) == 4
    assert status_of(SystemExit(None)) == 0 and status_of(SystemExit(256 + 3)) == 3
    assert status_of(KeyboardInterrupt()) == 130 and status_of(ValueError()) == 1
    assert exit_status("1:0") == 1 and exit_status("0:9") == 137 and exit_status("0:0") == 0
    assert exit_status("x") is None
    assert job_key({"SLURM_JOB_ID": "9"}) == "9"
    assert job_key({"SLURM_JOB_ID": "9", "SLURM_ARRAY_JOB_ID": "8", "SLURM_ARRAY_TASK_ID": "2"}) == "8_2"
    assert job_key({"PBS_JOBID": "12[3].srv"}) == "12_3_.srv"


def test_a_consequence_points_at_the_rank_that_failed():
    from hpcframe.errors import ComputeError

    exc = ComputeError("1 of 3 rank(s) failed", [(2, "n1", "reading", "OSError: disk gone")])
    rec = failure_record(exc, 0, 3)
    assert (rec["rank"], rec["origin"], rec["origin_error"]) == (0, 2, ["OSError: disk gone"])
    lines = records.describe_failure([rec])
    assert lines[0] == "rank 2 of 3 failed (exit status 1):" and lines[1].strip() == "OSError: disk gone"
    from hpcframe.spec import SpecError

    both = [failure_record(SpecError("aggregate.x", "column 'x' not found"), r, 2) for r in (0, 1)]
    assert records.describe_failure(both)[0].startswith("ranks 0, 1 of 2 failed (exit status 2) on ")


FAILING = """\
from mpi4py import MPI
if MPI.COMM_WORLD.rank == 1:
    raise SystemExit("no such column: 'x'")
MPI.COMM_WORLD.Barrier()
"""


@needs_mpiexec
def test_failed_rank_records_its_status_and_the_trap_returns_it(tmp_path):
    """The real launch module under mpiexec: rank 1 raises SystemExit("..."); its record
    says so, and ``--exit-status`` turns the launcher's status into the script's (1)."""
    (tmp_path / "bad.py").write_text(FAILING)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_", "PMI_", "HYDRA_"))}
    env.update(HPCFRAME_RUN_DIR=str(tmp_path), SLURM_JOB_ID="4242")
    cmd = [MPIEXEC, "-n", "2", PYTHON, "-m", "mpi4py", "-m", "hpcframe.jobs.launch", str(tmp_path / "bad.py")]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    rec = json.loads((tmp_path / "failure.4242.rank1.json").read_text())
    assert (rec["rank"], rec["size"], rec["exit_status"], rec["kind"]) == (1, 2, 1, "SystemExit")
    assert rec["error"][0] == "SystemExit: no such column: 'x'" and "bad.py:3" in rec["error"][1]
    assert exit_status_main("137", env) == 1
    assert exit_status_main("137", {**env, "SLURM_JOB_ID": "1"}) == 137  # no record: unchanged
    # as the job script does it: the ERR trap before the launch line
    script = f"""set -eo pipefail
trap 'exec {PYTHON} -m hpcframe.jobs.launch --exit-status "$?"' ERR
(exit 137)
"""
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "rank 1 of 2 failed (exit status 1)" in done.stderr


QSTAT = """\
Job Id: 77.pbs-server
    Job_Name = flights
    Job_Owner = me@login1
    job_state = F
    Exit_status = 2
    resources_used.walltime = 00:01:05
    Output_Path = login1:/home/me/runs/x/stdout.log
    Error_Path = login1:/home/me/runs/x/stder
\tr.log
    Variable_List = PBS_O_HOME=/home/me,PBS_O_WORKDIR=/home/me/project,PBS_O_SHELL=/bin/bash

Job Id: 78.pbs-server
    Job_Name = next
    job_state = Q
"""


def test_parse_qstat_full():
    done, queued = records.parse_qstat_full(QSTAT)
    assert done["job_id"] == "77.pbs-server" and done["state"] == "FAILED" and done["exit_status"] == 2
    assert done["stdout"] == "/home/me/runs/x/stdout.log" and done["stderr"] == "/home/me/runs/x/stderr.log"
    assert done["workdir"] == "/home/me/project" and done["elapsed"] == "00:01:05"
    assert (queued["name"], queued["state"], queued["exit_status"]) == ("next", "PENDING", None)


def test_parse_scontrol_and_sacct():
    line = (
        "JobId=12 ArrayJobId=11 ArrayTaskId=2 JobName=a UserId=me(1) JobState=FAILED "
        "Reason=NonZeroExitCode ExitCode=0:9 RunTime=00:00:07 WorkDir=/w StdErr=/w/e StdOut=/w/o"
    )
    (t,) = parse_scontrol_tasks(line)
    assert (t["job_id"], t["state"], t["exit_status"], t["user"], t["stdout"]) == (
        "11_2",
        "FAILED",
        137,
        "me",
        "/w/o",
    )
    (s,) = parse_sacct("13|b|CANCELLED by 0|0:15|00:01:00|/w\n")
    assert (s["job_id"], s["state"], s["exit_status"], s["stdout"]) == ("13", "CANCELLED", 143, None)


def test_submit_dry_run_of_a_command(workdir, hf):
    res = hf(
        "submit",
        "--scheduler",
        "slurm",
        "--dry-run",
        "--",
        "convert",
        "in dir/*.csv",
        "out",
        "--to",
        "parquet",
    )
    assert res.exit_code == 0, res.output
    words = shlex.split(res.stdout.strip().splitlines()[-1])
    expected = ["hpcframe.jobs.launch", "--command", "convert", "in dir/*.csv", "out", "--to", "parquet"]
    assert words[-7:] == expected
    assert "--exit-status" in res.stdout
    refused = hf("submit", "--scheduler", "slurm", "--dry-run", "--", "wait", "12")
    assert refused.exit_code == 2 and "cannot itself be submitted" in refused.stderr
    (workdir / "job.yaml").write_text("input: x.parquet\n")
    spec_args = hf("submit", "job.yaml", "--scheduler", "slurm", "--dry-run", "--", "--progress")
    assert spec_args.exit_code == 2 and "-- run job.yaml --progress" in spec_args.stderr


def test_launch_runs_a_command_on_this_rank(tmp_path, monkeypatch, capsys):
    from hpcframe.jobs.base import CommandFailed
    from hpcframe.jobs.launch import failure_record, run_command_in_job

    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"a": [1, 2, 3]}).to_csv("x.csv", index=False)
    run_command_in_job("convert", ["x.csv", "out", "--to", "parquet"])
    pd.testing.assert_frame_equal(pd.read_parquet("out"), pd.DataFrame({"a": [1, 2, 3]}), check_dtype=False)
    with pytest.raises(CommandFailed) as exc:
        run_command_in_job("convert", ["missing.csv", "out2", "--to", "parquet"])
    assert (
        exc.value.exit_code != 0 and "Error: CSV path 'missing.csv' does not exist" in capsys.readouterr().err
    )
    rec = failure_record(exc.value, 0, 1)  # what the failed rank records
    assert rec["error"] == ["CommandFailed: hpcframe convert: CSV path 'missing.csv' does not exist"]
    with pytest.raises(CommandFailed, match="no command 'nope'"):
        run_command_in_job("nope", [])


@pytest.fixture
def csv_dir(tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(5)
    frames = []
    for i, ext in enumerate(["csv", "csv.gz", "csv.xz"]):
        df = pd.DataFrame({"k": rng.choice(["a", "b"], 30), "v": rng.integers(0, 50, 30).astype("int64")})
        df.to_csv(tmp_path / f"part-{i}.{ext}", index=False)
        frames.append(df)
    (tmp_path / "mixed").mkdir()
    frames[0].to_csv(tmp_path / "mixed" / "a.csv", index=False)
    return tmp_path, pd.concat(frames, ignore_index=True)


def test_csv_specs_are_detected_and_read_like_read_csv(csv_dir):
    root, df = csv_dir
    for path in ("part-0.csv", "part-1.csv.gz", "part-2.csv.xz", "part-*", "mixed/"):
        assert parse_spec({"input": path}).input.format == "csv", path
    spec = parse_spec({"input": {"path": "part-2.csv.xz", "csv": {"sep": ","}}})
    assert spec.input.csv == {"sep": ","}
    with pytest.raises(SpecError, match="input.csv.sepp: unknown key.*'sep'"):
        parse_spec({"input": {"path": "part-0.csv", "csv": {"sepp": ";"}}})
    pd.DataFrame({"k": ["a"]}).to_parquet(root / "p.parquet")
    with pytest.raises(SpecError, match="input.csv: read_csv options are for CSV input"):
        parse_spec({"input": {"path": "p.parquet", "csv": {"sep": ";"}}})
    with pytest.raises(SpecError, match="format: csv"):
        (root / "odd").mkdir()
        (root / "odd" / "x.bin").write_text("")
        parse_spec({"input": {"path": "odd/x.bin"}})


def test_csv_spec_with_progress_and_profile_dir(csv_dir, capsys):
    root, df = csv_dir
    (root / "job.yaml").write_text(
        "input: {path: 'part-*', csv: {dtype: {v: float64}}}\nfilter: 'v > 10'\n"
        "groupby: [k]\naggregate: {v: mean}\noutput: out.parquet\nprogress: true\nprofile_dir: prof\n"
    )
    summary = run_job(str(root / "job.yaml"))
    want = df[df.v > 10].astype({"v": "float64"}).groupby("k")["v"].mean().reset_index()
    pd.testing.assert_frame_equal(pd.read_parquet(root / "out.parquet"), want)
    assert summary.rows_out == 2
    assert "100.0%" in capsys.readouterr().out  # the progress lines of a non-terminal
    assert (root / "prof" / "run.json").is_file()
    for bad, key in (({"progress": "yes"}, "progress"), ({"profile_dir": 3}, "profile_dir")):
        with pytest.raises(SpecError, match=key):
            parse_spec({"input": "part-0.csv", **bad})


def test_info_reads_csv(csv_dir, hf):
    from tests.helpers.jobs import cli_group

    root, df = csv_dir
    from click.testing import CliRunner

    res = CliRunner().invoke(cli_group(), ["info", "part-*", "--json"], catch_exceptions=False)
    if res.exit_code == 2 and "No such command" in res.output:
        pytest.skip("hpcframe info is not in this group")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["format"] == "csv" and info["files"] == 3
    assert [c["name"] for c in info["columns"]] == list(df.columns)
    forced = CliRunner().invoke(cli_group(), ["info", "mixed/", "--format", "csv"], catch_exceptions=False)
    assert forced.exit_code == 0 and "csv" in forced.stdout
