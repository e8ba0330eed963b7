"""REAL SLURM: a string array (``--array carrier=AA,UA``) mapped through task indices 0..n-1.
Each task must see its own string (in ``$HPCFRAME_ARRAY_INDEX`` and in ``{carrier}`` of the
script arguments), log to its own file, and ``hpcframe status`` lists the tasks in order."""

from __future__ import annotations

import json
import os

import pytest

from hpcframe.jobs import log_files, scheduler_for, wait
from tests.helpers.jobs import SCRIPTS, make_dataset

pytestmark = pytest.mark.timeout(300)


def test_string_array_tasks_get_their_values_and_status_is_ordered(slurm_cluster, workdir, hf):
    src, _ = make_dataset(workdir)
    res = hf(
        "submit",
        os.path.join(SCRIPTS, "groupby_job.py"),
        "--cluster-profile",
        "slurm-local",
        "--ntasks-per-node",
        "1",
        "--time",
        "00:05:00",
        "--array",
        "carrier=AA,UA",
        "--",
        src,
        "out",
        "c{carrier}",
    )
    assert res.exit_code == 0, res.output
    job = res.stdout.strip().splitlines()[-1]
    rows = wait(job, scheduler_for("slurm"), timeout=240, poll=0.5)
    assert {s for _, s, _ in rows} == {"COMPLETED"}, hf("logs", job).stdout
    for value in ("AA", "UA"):
        seen = json.loads((workdir / "out" / f"c{value}.rank0.json").read_text())
        assert seen["array_index"] == value and seen["argv"][-1] == f"c{value}"
        assert seen["size"] == 1
    status = hf("status", job)
    assert status.exit_code == 0, status.output
    ids = [line.split("\t")[0] for line in status.stdout.splitlines()]
    assert ids == [f"{job}_0", f"{job}_1"], status.stdout
    _, files = log_files(job)
    assert sorted(os.path.basename(f) for f in files if "stdout" in f) == [
        f"stdout.{job}_0.log",
        f"stdout.{job}_1.log",
    ]


def test_old_profile_name_still_works_with_a_message(slurm_cluster, workdir, hf):
    res = hf("submit", os.path.join(SCRIPTS, "sleep_job.py"), "--profile", "local", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "renamed 'slurm-local'" in res.stderr
    assert "#SBATCH --partition=debug" in res.stdout
