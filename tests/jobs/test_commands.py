"""The click commands (through the real ``hpcframe`` group when part A's cli has them):
dry runs, usage errors with exit code 2, records in the run directory."""

from __future__ import annotations

import json
import os
import shlex

import pytest

from hpcframe.jobs import JobError, find_run
from tests.helpers.jobs import SCRIPTS


def test_dry_run_prints_script_with_arguments_after_double_dash(workdir, hf):
    script = os.path.join(SCRIPTS, "groupby_job.py")
    res = hf(
        "submit",
        script,
        "--scheduler",
        "slurm",
        "--nodes",
        "2",
        "--ntasks-per-node",
        "16",
        "--time",
        "01:00:00",
        "--dry-run",
        "--",
        "--arg",
        "1",
        "x; rm -rf /",
    )
    assert res.exit_code == 0, res.output
    last = res.stdout.strip().splitlines()[-1]
    assert shlex.split(last)[-3:] == ["--arg", "1", "x; rm -rf /"]
    assert "#SBATCH --nodes=2" in res.stdout and "#SBATCH --ntasks-per-node=16" in res.stdout
    assert not (workdir / "hpcframe-runs").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--name", "x; rm -rf /"], "job name 'x; rm -rf /' is not allowed"),
        (["--nodes", "0"], "nodes must be at least 1"),
        (["--time", "soon"], "time 'soon' is not valid"),
        (["--array", "month"], "array 'month' is not valid"),
        (["--after", "abc"], "job id 'abc' is not valid"),
        (["--profile", "nope"], "profile 'nope' not found"),
    ],
)
def test_usage_errors_exit_2_and_say_what_to_fix(workdir, hf, args, message):
    res = hf("submit", os.path.join(SCRIPTS, "sleep_job.py"), "--scheduler", "slurm", *args, "--dry-run")
    assert res.exit_code == 2
    assert message in res.stderr


def test_missing_target_and_spec_with_arguments(workdir, hf):
    res = hf("submit", "missing.py", "--scheduler", "slurm", "--dry-run")
    assert res.exit_code == 2 and "'missing.py' does not exist" in res.stderr
    (workdir / "job.yaml").write_text("input: {path: x}\n")
    res = hf("submit", "job.yaml", "--scheduler", "slurm", "--dry-run", "--", "--x")
    assert res.exit_code == 2 and "arguments after -- are for a user script" in res.stderr


def test_status_logs_cancel_of_unknown_job(workdir, hf):
    for cmd in ("status", "logs", "cancel"):
        res = hf(cmd, "999999")
        assert res.exit_code == 2 and "no run directory records job 999999" in res.stderr
    assert hf("status", "1;reboot").exit_code == 2


def test_failed_submission_keeps_run_dir_and_reports_command(workdir, hf, monkeypatch):
    """``sbatch`` replaced by a failing program on PATH (a stand-in: no cluster needed)."""
    bindir = workdir / "bin"
    bindir.mkdir()
    fake = bindir / "sbatch"
    fake.write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    res = hf("submit", os.path.join(SCRIPTS, "sleep_job.py"), "--scheduler", "slurm", "--partition", "nope")
    assert res.exit_code == 1
    assert "sbatch --parsable" in res.stderr and "exit code 1" in res.stderr
    assert "invalid partition specified" in res.stderr
    (run,) = (workdir / "hpcframe-runs").iterdir()
    info = json.loads((run / "job.json").read_text())
    assert info["job_id"] is None and os.path.isfile(info["script"])
    with pytest.raises(JobError):
        find_run("12345")


def test_help_of_every_command(hf):
    for cmd in ("submit", "status", "logs", "cancel"):
        res = hf(cmd, "--help")
        assert res.exit_code == 0 and "Usage:" in res.stdout


def test_dask_config_option_feeds_the_script(workdir, hf):
    (workdir / "jobqueue.yaml").write_text(
        "jobqueue:\n  slurm:\n    queue: regular\n    walltime: '00:20:00'\n    cores: 4\n"
        "    job-extra-directives: ['--qos=debug']\n"
    )
    res = hf(
        "submit",
        os.path.join(SCRIPTS, "sleep_job.py"),
        "--scheduler",
        "slurm",
        "--dask-config",
        "jobqueue.yaml",
        "--time",
        "00:05:00",
        "--dry-run",
    )
    assert res.exit_code == 0, res.output
    for line in (
        "#SBATCH --partition=regular",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --time=00:05:00",
        "#SBATCH --qos=debug",
    ):
        assert line in res.stdout.splitlines()


@pytest.mark.parametrize(
    "recorded,asked",
    [("1234.pbs01", "1234"), ("1234[].pbs01", "1234"), ("1234[].pbs01", "1234[].pbs01"), ("77", "77_3")],
)
def test_find_run_by_pbs_and_array_ids(workdir, recorded, asked):
    run = workdir / "hpcframe-runs" / "20250101-000000-x"
    run.mkdir(parents=True)
    (run / "job.json").write_text(json.dumps({"job_id": recorded, "run_dir": str(run), "scheduler": "pbs"}))
    assert find_run(asked)["run_dir"] == str(run)
    assert find_run(str(run))["job_id"] == recorded
