"""Rendered job scripts: compared line by line with reference files, hostile values quoted or
rejected, impossible combinations refused before anything is submitted."""

from __future__ import annotations

import difflib
import os
import shlex

import pytest

from hpcframe.jobs import ArraySpec, JobError, JobParams, make_params, scheduler_for
from hpcframe.jobs.base import parse_mem, parse_time, validate
from tests.helpers.jobs import REFERENCE, SCRIPTS

PROGRAM = ["-m", "hpcframe.jobs.launch", "/home/user/project/job.yaml"]
RUN_DIR = "/home/user/project/hpcframe-runs/20250101-120000-flights"


def params(**kw) -> JobParams:
    base = dict(
        name="flights",
        nodes=2,
        ntasks_per_node=16,
        cpus_per_task=2,
        time="01:30:00",
        mem="32G",
        partition="compute",
        account="proj42",
        modules=["python/3.11", "mpich"],
        setup=["source /home/user/venv/bin/activate"],
        python="/home/user/venv/bin/python",
        array=ArraySpec.parse("month=1-12"),
        after=["1234"],
        workdir="/home/user/project",
        node_cpus=64,
    )
    base.update(kw)
    return validate(JobParams(**base))


CASES = {
    "slurm.sbatch": dict(scheduler="slurm", extra_directives=["--exclusive"]),
    "pbs.pbs": dict(scheduler="pbs", launcher="mpiexec", extra_directives=["-m abe"]),
    "torque.pbs": dict(scheduler="torque", launcher="mpiexec"),
}


def assert_same_lines(text: str, ref_name: str):
    path = os.path.join(REFERENCE, ref_name)
    if os.environ.get("HPCFRAME_REGEN_REFERENCE"):
        with open(path, "w") as fh:
            fh.write(text)
    with open(path) as fh:
        ref = fh.read()
    diff = list(difflib.unified_diff(ref.splitlines(), text.splitlines(), ref_name, "rendered", lineterm=""))
    assert not diff, "rendered script differs from the reference:\n" + "\n".join(diff)


@pytest.mark.parametrize("ref", sorted(CASES))
def test_rendered_script_matches_reference(ref):
    p = params(**CASES[ref])
    assert_same_lines(scheduler_for(p.scheduler).render(p, PROGRAM, RUN_DIR), ref)


def test_render_is_pure_and_sorted():
    p = params(scheduler="slurm")
    s = scheduler_for("slurm")
    a, b = s.render(p, PROGRAM, RUN_DIR), s.render(p, PROGRAM, RUN_DIR)
    assert a == b
    directives = [ln for ln in a.splitlines() if ln.startswith("#SBATCH")]
    assert directives == sorted(directives)


def test_user_script_arguments_are_quoted_and_come_back_intact(workdir):
    hostile = ["; rm -rf /", "$(touch pwned)", "`id`", "a b", "it's", "{month}"]
    (workdir / "analysis.py").write_text("print('hi')\n")
    p = make_params(scheduler="slurm", overrides={"python": "/opt/py thon/bin/python"})
    from hpcframe.jobs import render_job

    text = render_job(p, "analysis.py", hostile, run_dir="/tmp/run dir; echo x")
    launch = text.splitlines()[-1]
    words = shlex.split(launch)
    assert words[-len(hostile) :] == hostile
    assert words[:2] == ["srun", "--mpi=pmi2"] and words[2] == "/opt/py thon/bin/python"
    assert "export HPCFRAME_RUN_DIR='/tmp/run dir; echo x'" in text
    assert "#SBATCH '--output=/tmp/run dir; echo x/stdout.%j.log'" in text


@pytest.mark.parametrize(
    "field,value",
    [
        ("name", "x; rm -rf /"),
        ("name", "$(id)"),
        ("name", ""),
        ("partition", "debug;ls"),
        ("account", "a b"),
        ("modules", ["python; rm -rf /"]),
        ("name", "-rf"),
    ],
)
def test_hostile_names_are_rejected(field, value):
    with pytest.raises(JobError, match="not allowed"):
        params(scheduler="slurm", **{field: value})


def test_hostile_extra_directive_is_quoted():
    p = params(scheduler="slurm", extra_directives=["--comment='$(rm -rf /)'", "--mail-user=`id`"])
    text = scheduler_for("slurm").render(p, PROGRAM, RUN_DIR)
    assert "#SBATCH '--comment=$(rm -rf /)'" in text
    assert "#SBATCH '--mail-user=`id`'" in text


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(nodes=0), "nodes must be at least 1"),
        (dict(ntasks_per_node=-2), "ntasks-per-node must be at least 1"),
        (dict(nodes="two"), "nodes must be a whole number"),
        (dict(ntasks_per_node=40, cpus_per_task=2), "= 80 CPUs, but a node has 64"),
        (dict(time="1 hour"), "time '1 hour' is not valid"),
        (dict(time="01:75:00"), "below 60"),
        (dict(time="00:00:00"), "longer than zero"),
        (dict(mem="lots"), "mem 'lots' is not valid"),
        (dict(after=["12; scancel -u root"]), "job id"),
        (dict(setup=["module load x\nrm -rf /"]), "single line"),
        (dict(extra_directives=["--nodes=4"]), "sets --nodes"),
        (dict(scheduler="pbs", extra_directives=["-l select=4:ncpus=8"]), "sets select"),
        (dict(scheduler="pbs", extra_directives=["-q other"]), "sets -q"),
        (dict(scheduler="pbs", array=ArraySpec.parse("year=2019,2021")), "take a range"),
        (dict(scheduler="lsf"), "not supported"),
        (dict(env={"A B": "1"}), "valid shell variable"),
    ],
)
def test_impossible_combinations_are_rejected(kw, match):
    with pytest.raises(JobError, match=match):
        params(**kw)


@pytest.mark.parametrize("text", ["month", "month=12-1", "m=1-3:0", "1month=1-3", "m=1,,2", "m=a-b", "m=1,1"])
def test_invalid_array_specs(text):
    with pytest.raises(JobError, match="array"):
        ArraySpec.parse(text)


def test_array_specs():
    assert ArraySpec.parse("month=1-12").task_values() == list(range(1, 13))
    assert ArraySpec.parse("part=0-9:3").range_text() == "0-9:3"
    assert ArraySpec.parse("year=2019,2021").task_values() == [2019, 2021]
    assert ArraySpec.parse("1-3").name == "array"
    # Torque takes lists, PBS Pro does not (checked above), SLURM does
    p = params(scheduler="torque", array=ArraySpec.parse("year=2019,2021"), launcher="mpiexec")
    assert "#PBS -t 2019,2021" in scheduler_for("torque").render(p, PROGRAM, RUN_DIR)


@pytest.mark.parametrize(
    "text,expect",
    [
        ("01:30:00", "01:30:00"),
        ("90", "01:30:00"),
        ("2-00:00:00", "48:00:00"),
        ("1-12", "36:00:00"),
        ("30:00", "00:30:00"),
        ("100:00:00", "100:00:00"),
    ],
)
def test_time_formats(text, expect):
    assert parse_time(text) == expect


@pytest.mark.parametrize(
    "text,mib", [("4G", 4096), ("4GB", 4096), ("4 GiB", 4096), ("500M", 500), ("1T", 1 << 20), ("2048", 2048)]
)
def test_mem_formats(text, mib):
    assert parse_mem(text) == mib


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(JobError, match="unknown key.*ntask.*valid keys: scheduler, name, nodes"):
        JobParams.from_dict({"ntask": 3})


# a launcher or extra directive with unbalanced quotes is a JobError naming the value (exit 2
# from `hpcframe submit`), not a ValueError traceback
@pytest.mark.parametrize(
    "kw,what",
    [
        (dict(launcher="srun --mpi='pmi2"), "launcher"),
        (dict(extra_directives=['--comment="open']), "extra directive"),
    ],
)
def test_unbalanced_quote_launcher_is_a_job_error(kw, what):
    with pytest.raises(JobError, match=what) as info:
        validate(JobParams(name="q", scheduler="slurm", time="00:01:00", **kw))
    value = kw.get("launcher") or kw["extra_directives"][0]
    assert repr(value) in str(info.value)


def test_unbalanced_quote_launcher_submit_exits_2(workdir, hf):
    res = hf(
        "submit",
        os.path.join(SCRIPTS, "sleep_job.py"),
        "--scheduler",
        "slurm",
        "--launcher",
        "srun --mpi='pmi2",
        "--dry-run",
    )
    assert res.exit_code == 2, res.output
    assert "launcher" in res.stderr and "quote" in res.stderr
