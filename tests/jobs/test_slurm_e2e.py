"""REAL SLURM end to end: ``hpcframe submit/status/logs/cancel`` against the single-node cluster
of tests/slurm/start_slurm.sh (slurmctld + slurmd + munged on this machine), jobs started with
``srun --mpi=pmi2`` and the pip MPICH. Fails (not skips) in CI when the cluster cannot start."""

from __future__ import annotations

import json
import os
import time

import pandas as pd
import pytest

from hpcframe.jobs import find_run, log_files, scheduler_for, wait
from tests.helpers import ROOT
from tests.helpers.jobs import SCRIPTS, expected_groupby, make_dataset

PROFILE = os.path.join(ROOT, "configs", "local.yaml")
pytestmark = pytest.mark.timeout(300)


def submit(hf, *args) -> str:
    res = hf("submit", *args)
    assert res.exit_code == 0, res.output
    job_id = res.stdout.strip().splitlines()[-1]
    assert job_id.isdigit(), res.output
    return job_id


def finished(job_id, timeout=180):
    return wait(job_id, scheduler_for("slurm"), timeout=timeout, poll=0.5)


def test_user_mpi_script_two_tasks(slurm_cluster, workdir, hf):
    src, df = make_dataset(workdir)
    job = submit(
        hf,
        os.path.join(SCRIPTS, "groupby_job.py"),
        "--profile",
        PROFILE,
        "--ntasks-per-node",
        "2",
        "--name",
        "groupby",
        "--",
        src,
        "out",
        "result",
    )
    assert [s for _, s, _ in finished(job)] == ["COMPLETED"]
    for r in (0, 1):
        seen = json.loads((workdir / "out" / f"result.rank{r}.json").read_text())
        assert (seen["rank"], seen["size"]) == (r, 2)
    pd.testing.assert_frame_equal(pd.read_parquet(workdir / "out/result.parquet"), expected_groupby(df))
    info = find_run(job)
    assert info["scheduler"] == "slurm" and os.path.isfile(info["script"])
    assert "srun --mpi=pmi2" in open(info["script"]).read()
    res = hf("status", job)
    assert res.exit_code == 0 and "COMPLETED" in res.stdout
    assert hf("logs", job).exit_code == 0


def test_dry_run_prints_the_script_and_submits_nothing(slurm_cluster, workdir, hf):
    res = hf(
        "submit",
        os.path.join(SCRIPTS, "sleep_job.py"),
        "--profile",
        PROFILE,
        "--nodes",
        "1",
        "--ntasks-per-node",
        "2",
        "--time",
        "00:05:00",
        "--dry-run",
    )
    assert res.exit_code == 0
    assert "#SBATCH --ntasks-per-node=2" in res.stdout and "#SBATCH --time=00:05:00" in res.stdout
    assert not (workdir / "hpcframe-runs").exists()


def test_array_of_three_tasks(slurm_cluster, workdir, hf):
    src, df = make_dataset(workdir)
    job = submit(
        hf,
        os.path.join(SCRIPTS, "groupby_job.py"),
        "--profile",
        PROFILE,
        "--ntasks-per-node",
        "1",
        "--array",
        "part=1-3",
        "--",
        src,
        "out",
        "p{part}",
    )
    rows = finished(job)
    assert sorted(t for t, _, _ in rows) == [f"{job}_{i}" for i in (1, 2, 3)]
    assert {s for _, s, _ in rows} == {"COMPLETED"}
    for i in (1, 2, 3):
        seen = json.loads((workdir / "out" / f"p{i}.rank0.json").read_text())
        assert seen["array_index"] == str(i) and seen["argv"][-1] == f"p{i}"
    _, files = log_files(job)
    assert len([f for f in files if "stdout" in f]) == 3
    one = hf("status", f"{job}_2")
    assert one.exit_code == 0 and one.stdout.splitlines() == [f"{job}_2\tCOMPLETED\tReason=None ExitCode=0:0"]


def test_dependency_runs_after_the_first_job(slurm_cluster, workdir, hf):
    src, _ = make_dataset(workdir)
    first = submit(
        hf,
        os.path.join(SCRIPTS, "groupby_job.py"),
        "--profile",
        PROFILE,
        "--ntasks-per-node",
        "1",
        "--",
        src,
        "out",
        "first",
    )
    second = submit(
        hf,
        os.path.join(SCRIPTS, "groupby_job.py"),
        "--profile",
        PROFILE,
        "--ntasks-per-node",
        "1",
        "--after",
        first,
        "--",
        src,
        "out",
        "second",
    )
    assert "--dependency=afterok:" + first in open(find_run(second)["script"]).read()
    assert [s for _, s, _ in finished(second)] == ["COMPLETED"]
    t1 = os.path.getmtime(workdir / "out/first.rank0.json")
    t2 = os.path.getmtime(workdir / "out/second.rank0.json")
    assert t2 >= t1


def test_dependency_on_a_failed_job_never_runs(slurm_cluster, workdir, hf):
    bad = submit(hf, os.path.join(SCRIPTS, "fail_job.py"), "--profile", PROFILE, "--ntasks-per-node", "2")
    after = submit(
        hf,
        os.path.join(SCRIPTS, "sleep_job.py"),
        "--profile",
        PROFILE,
        "--ntasks-per-node",
        "1",
        "--after",
        bad,
    )
    rows = finished(after)
    assert rows[0][1] == "CANCELLED" and "DependencyNeverSatisfied" in rows[0][2]


def test_cancel_a_sleeping_job(slurm_cluster, workdir, hf):
    job = submit(hf, os.path.join(SCRIPTS, "sleep_job.py"), "--profile", PROFILE, "--ntasks-per-node", "1")
    deadline = time.monotonic() + 60
    while scheduler_for("slurm").status(job)[0][1] == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.5)
    res = hf("cancel", job)
    assert res.exit_code == 0 and f"cancelled {job}" in res.stdout
    assert finished(job, timeout=60)[0][1] == "CANCELLED"
    assert hf("status", job).exit_code == 3


def test_failing_job_shows_failed_and_its_log(slurm_cluster, workdir, hf):
    job = submit(hf, os.path.join(SCRIPTS, "fail_job.py"), "--profile", PROFILE, "--ntasks-per-node", "2")
    finished(job)
    res = hf("status", job)
    assert res.exit_code == 3 and "FAILED" in res.stdout, res.output
    logs = hf("logs", job)
    assert "deliberate failure on the last rank" in logs.stdout


def test_mismatched_launcher_fails_with_the_size_check(slurm_cluster, workdir, hf):
    """Plain ``srun`` (MpiDefault=none) starts 2 singletons: the job must fail saying so."""
    job = submit(
        hf,
        os.path.join(SCRIPTS, "sleep_job.py"),
        "--profile",
        PROFILE,
        "--ntasks-per-node",
        "2",
        "--launcher",
        "srun",
    )
    finished(job)
    assert "FAILED" in hf("status", job).stdout
    assert "MPI world size is 1 but the scheduler granted 2 tasks" in hf("logs", job).stdout


SPEC = """\
input:
  path: {src}
groupby: [carrier]
aggregate:
  delay: sum
output:
  path: {out}
"""


def as_table(expected):
    return expected.reset_index()


def test_job_spec_two_tasks(slurm_cluster, workdir, hf):
    src, df = make_dataset(workdir)
    (workdir / "job.yaml").write_text(SPEC.format(src="flights/", out="by_carrier.parquet"))
    job = submit(hf, "job.yaml", "--profile", PROFILE, "--ntasks-per-node", "2", "--name", "spec")
    assert [s for _, s, _ in finished(job)] == ["COMPLETED"], hf("logs", job).stdout
    got = pd.read_parquet(workdir / "by_carrier.parquet")
    pd.testing.assert_frame_equal(got, as_table(expected_groupby(df)), check_dtype=False)
    assert "rows out: 3" in hf("logs", job).stdout  # hpcframe run's summary, from rank 0


def test_job_spec_array_one_task_per_month(slurm_cluster, workdir, hf):
    """``--array month=1-3``: ``{month}`` in the spec's paths selects each task's subset."""
    src, df = make_dataset(workdir)
    df["month"] = [1 + i % 3 for i in range(len(df))]
    for m, part in df.groupby("month"):
        d = workdir / "by_month" / f"month={m}"
        d.mkdir(parents=True)
        part.drop(columns="month").to_parquet(d / "part-0.parquet", index=False)
    (workdir / "job.yaml").write_text(
        SPEC.format(src="by_month/month={month}/", out="carrier_{month}.parquet")
    )
    job = submit(hf, "job.yaml", "--profile", PROFILE, "--ntasks-per-node", "1", "--array", "month=1-3")
    assert {s for _, s, _ in finished(job)} == {"COMPLETED"}, hf("logs", job).stdout
    for m in (1, 2, 3):
        got = pd.read_parquet(workdir / f"carrier_{m}.parquet")
        want = as_table(expected_groupby(df[df.month == m]))
        pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_bad_spec_job_fails_and_says_why(slurm_cluster, workdir, hf):
    make_dataset(workdir)
    (workdir / "job.yaml").write_text(
        SPEC.format(src="flights/", out="x.parquet").replace("delay: sum", "no_such_column: sum")
    )
    job = submit(hf, "job.yaml", "--profile", PROFILE, "--ntasks-per-node", "2")
    finished(job)
    assert "FAILED" in hf("status", job).stdout
    assert "no_such_column" in hf("logs", job).stdout
    assert not (workdir / "x.parquet").exists()


HOSTILE_DIR = "sub $(touch INJECTED1) ;touch INJECTED2 `touch INJECTED3` 'q' \"dq\" %"


def test_hostile_submit_and_run_directories_inject_nothing(slurm_cluster, workdir, hf, monkeypatch):
    """A submit directory (-> ``--chdir``) and run directory (-> ``--output/--error``) full of
    shell syntax: sbatch reads the quoted directives, the job runs in that directory, its logs
    land in the run directory, and no command hidden in the names runs. A newline in the
    directory is refused before anything is submitted."""
    submit_dir = workdir / HOSTILE_DIR
    submit_dir.mkdir()
    monkeypatch.chdir(submit_dir)
    (submit_dir / "where.py").write_text(
        "import os, sys\nopen('where.txt', 'w').write(os.getcwd() + '\\n' + sys.argv[1])\n"
        "print('hello from the job')\n"
    )
    job = submit(hf, "where.py", "--profile", PROFILE, "--ntasks-per-node", "1", "--", "$(id)")
    assert [s for _, s, _ in finished(job)] == ["COMPLETED"], hf("logs", job).stdout
    assert (submit_dir / "where.txt").read_text() == f"{submit_dir}\n$(id)"
    _, files = log_files(job)
    assert [os.path.dirname(f) for f in files] == [find_run(job)["run_dir"]] * len(files)
    assert "hello from the job" in hf("logs", job).stdout
    assert not [f for _, _, fs in os.walk(workdir) for f in fs if f.startswith("INJECTED")]
    evil = workdir / "nl\ntouch INJECTED #"
    evil.mkdir()
    monkeypatch.chdir(evil)
    (evil / "where.py").write_text("print(1)\n")
    res = hf("submit", "where.py", "--profile", PROFILE)
    assert res.exit_code == 2 and "working directory" in res.stderr, res.output
    assert not (evil / "hpcframe-runs").exists()
