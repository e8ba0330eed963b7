"""The example scripts in jobscripts/ are what ``hpcframe submit --dry-run`` renders for the
settings in their header: they are regenerated with HPCFRAME_REGEN_REFERENCE=1 and must never
drift from the renderer."""

from __future__ import annotations

import os

import pytest

from hpcframe.jobs import ArraySpec, JobParams, scheduler_for
from hpcframe.jobs.base import validate
from tests.helpers import ROOT

RUN = "/home/me/project/hpcframe-runs/20250101-120000-{name}"
PY = "/home/me/venvs/hpcframe/bin/python"
SPEC = ["-m", "hpcframe.jobs.launch", "/home/me/project/job.yaml"]
SCRIPT = ["-m", "hpcframe.jobs.launch", "/home/me/project/analysis.py", "--year", "2013"]
COMMON = dict(
    python=PY,
    workdir="/home/me/project",
    modules=["python/3.11"],
    setup=["source /home/me/venvs/hpcframe/bin/activate"],
    account="myproject",
)

EXAMPLES = {
    "slurm_spec.sbatch": (
        "hpcframe submit job.yaml --profile slurm --nodes 2 --ntasks-per-node 16 --time 01:00:00",
        dict(scheduler="slurm", name="flights", nodes=2, ntasks_per_node=16, partition="compute", mem="32G"),
        SPEC,
    ),
    "slurm_user_script.sbatch": (
        "hpcframe submit analysis.py --profile slurm --nodes 1 --ntasks-per-node 8 -- --year 2013",
        dict(scheduler="slurm", name="analysis", nodes=1, ntasks_per_node=8, partition="compute"),
        SCRIPT,
    ),
    "slurm_array.sbatch": (
        "hpcframe submit job.yaml --profile slurm --array month=1-12 --after 1234",
        dict(
            scheduler="slurm",
            name="monthly",
            ntasks_per_node=4,
            partition="compute",
            array=ArraySpec.parse("month=1-12"),
            after=["1234"],
        ),
        SPEC,
    ),
    "pbs_spec.pbs": (
        "hpcframe submit job.yaml --profile pbs --nodes 2 --ntasks-per-node 16 --time 01:00:00",
        dict(
            scheduler="pbs",
            name="flights",
            nodes=2,
            ntasks_per_node=16,
            partition="workq",
            mem="32G",
            launcher="mpiexec",
        ),
        SPEC,
    ),
    "pbs_array.pbs": (
        "hpcframe submit job.yaml --profile pbs --array month=1-12",
        dict(
            scheduler="pbs",
            name="monthly",
            ntasks_per_node=4,
            partition="workq",
            array=ArraySpec.parse("month=1-12"),
            launcher="mpiexec",
        ),
        SPEC,
    ),
    "torque_spec.pbs": (
        "hpcframe submit job.yaml --profile torque --nodes 2 --ntasks-per-node 8",
        dict(
            scheduler="torque",
            name="flights",
            nodes=2,
            ntasks_per_node=8,
            partition="batch",
            launcher="mpiexec",
        ),
        SPEC,
    ),
}


def rendered(name: str) -> str:
    command, kw, program = EXAMPLES[name]
    p = validate(JobParams(**{**COMMON, "time": "01:00:00", **kw}))
    text = scheduler_for(p.scheduler).render(p, program, RUN.format(name=p.name))
    head, rest = text.split("\n", 1)
    return (
        f"{head}\n# Example: what `{command}` renders\n# (paths shown for a user 'me' in "
        "/home/me/project; see jobscripts/README.md).\n" + rest
    )


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_is_current(name):
    path = os.path.join(ROOT, "jobscripts", name)
    text = rendered(name)
    if os.environ.get("HPCFRAME_REGEN_REFERENCE"):
        with open(path, "w") as fh:
            fh.write(text)
    with open(path) as fh:
        assert fh.read().splitlines() == text.splitlines(), f"{path} is stale: regenerate it"
