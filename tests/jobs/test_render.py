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
    # exclusive placement, per-task logs of a string array, ranks per node (issue 13 item 6)
    "pbs_exclusive.pbs": dict(
        scheduler="pbs", launcher="mpiexec", exclusive=True, array=ArraySpec.parse("carrier=AA,UA,New York")
    ),
    "pbs_place_extra.pbs": dict(
        scheduler="pbs", launcher="mpiexec", extra_directives=["-l place=pack:excl"], after=[]
    ),
    "torque_exclusive.pbs": dict(
        scheduler="torque",
        launcher="mpiexec",
        exclusive=True,
        array=ArraySpec.parse("carrier=AA,UA,New York"),
    ),
    "slurm_strings.sbatch": dict(scheduler="slurm", array=ArraySpec.parse("carrier=AA,UA,New York")),
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
        (dict(scheduler="pbs", array=ArraySpec.parse("carrier=AA")), "at least two tasks"),
        (dict(scheduler="pbs", array=ArraySpec.parse("month=3-3")), "at least two tasks"),
        (dict(scheduler="pbs", extra_directives=["-l place=pack"], exclusive=True), "does not ask for excl"),
        (dict(scheduler="pbs", extra_directives=["-l place=sideways"]), "not a PBS placement"),
        (dict(scheduler="pbs", extra_directives=["-l place=excl,ncpus=2"]), "one directive of its own"),
        (dict(scheduler="torque", extra_directives=["-l place=scatter"]), "Torque has no place"),
        (dict(scheduler="slurm", exclusive=True, extra_directives=["--exclusive=user"]), "keep one"),
        (dict(exclusive="yes"), "exclusive must be true or false"),
        (dict(scheduler="lsf"), "not supported"),
        (dict(env={"A B": "1"}), "valid shell variable"),
    ],
)
def test_impossible_combinations_are_rejected(kw, match):
    with pytest.raises(JobError, match=match):
        params(**kw)


@pytest.mark.parametrize(
    "text",
    [
        "month",
        "month=12-1",
        "m=1-3:0",
        "1month=1-3",
        "m=1,,2",
        "m=1,1",
        "m=a,a",
        "m=a/b",
        "m=a,'b'",
        "m=x{y}",
        "m=",
    ],
)
def test_invalid_array_specs(text):
    with pytest.raises(JobError, match="array"):
        ArraySpec.parse(text)


def test_array_specs():
    assert ArraySpec.parse("month=1-12").task_values() == list(range(1, 13))
    assert ArraySpec.parse("part=0-9:3").range_text() == "0-9:3"
    assert ArraySpec.parse("year=2019,2021").task_values() == [2019, 2021]
    assert ArraySpec.parse("1-3").name == "array"
    strings = ArraySpec.parse("carrier=AA, UA,JFK-LAX")
    assert strings.is_strings and strings.task_values() == ["AA", "UA", "JFK-LAX"]
    assert strings.index_text() == "0-2"
    # Torque and SLURM take integer lists; PBS Pro's -J takes one range: lists are mapped
    p = params(scheduler="torque", array=ArraySpec.parse("year=2019,2021"), launcher="mpiexec")
    assert "#PBS -t 2019,2021" in scheduler_for("torque").render(p, PROGRAM, RUN_DIR)
    p = params(scheduler="pbs", array=ArraySpec.parse("year=2019,2021"), launcher="mpiexec")
    text = scheduler_for("pbs").render(p, PROGRAM, RUN_DIR)
    assert "#PBS -J 0-1" in text and "HPCFRAME_ARRAY_VALUES=(2019 2021)" in text


HOSTILE_VALUES = ["AA", "New York", "$(touch pwned)", "`id`", "a;b", "it&s", "*", "~root", "$HOME"]


@pytest.mark.parametrize("scheduler,task_var", [("slurm", "SLURM_ARRAY_TASK_ID"), ("torque", "PBS_ARRAYID")])
def test_string_array_values_reach_each_task_intact(scheduler, task_var, tmp_path):
    """The array lines of the script, run by bash: task i sees exactly the i-th string (quoted,
    never expanded or run)."""
    import subprocess

    array = ArraySpec.parse("v=" + ",".join(HOSTILE_VALUES))
    p = params(scheduler=scheduler, array=array, launcher="mpiexec", after=[])
    lines = scheduler_for(scheduler).array_lines(p)
    body = (
        "\n".join(ln for ln in lines if not ln.startswith(("exec ", "mkdir")))
        + '\nprintf %s "$HPCFRAME_ARRAY_INDEX"\n'
    )
    for i, want in enumerate(HOSTILE_VALUES):
        env = {"PATH": os.environ["PATH"], task_var: str(i), "HOME": str(tmp_path)}
        out = subprocess.run(["bash", "-c", body], env=env, cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout == want, out
    assert not (tmp_path / "pwned").exists()


def test_pbs_place_from_dask_jobqueue_is_accepted():
    """dask-jobqueue's ``job-extra-directives: ['-l place=excl']`` was refused; now it sets
    exclusive and replaces hpcframe's own ``place=scatter`` line."""
    p = params(scheduler="pbs", launcher="mpiexec", extra_directives=["-l place=excl"], array=None)
    assert p.exclusive
    text = scheduler_for("pbs").render(p, PROGRAM, RUN_DIR)
    assert [ln for ln in text.splitlines() if "place=" in ln] == ["#PBS -l place=excl"]
    p = params(scheduler="pbs", launcher="mpiexec", exclusive=True, array=None)
    assert "#PBS -l place=scatter:excl" in scheduler_for("pbs").render(p, PROGRAM, RUN_DIR)
    p = params(scheduler="torque", launcher="mpiexec", extra_directives=["-l place=scatter:excl"], array=None)
    text = scheduler_for("torque").render(p, PROGRAM, RUN_DIR)
    assert p.exclusive and "#PBS -n" in text and "place=" not in text


def test_torque_ranks_per_node_respects_a_placement_in_the_launcher():
    p = params(scheduler="torque", launcher="mpiexec --map-by ppr:16:node", array=None)
    launch = scheduler_for("torque").render(p, PROGRAM, RUN_DIR).splitlines()[-1]
    assert launch.startswith("mpiexec --map-by ppr:16:node -n ") and "-ppn" not in launch
    p = params(scheduler="torque", launcher="srun", array=None)
    assert "-ppn" not in scheduler_for("torque").render(p, PROGRAM, RUN_DIR)


def test_status_rows_are_in_task_order():
    from hpcframe.jobs.pbs import parse_qstat_f
    from hpcframe.jobs.slurm import parse_scontrol

    text = "\n".join(
        f"JobId={100 + t} ArrayJobId=99 ArrayTaskId={t} JobState=COMPLETED Reason=None ExitCode=0:0"
        for t in (10, 2, 1)
    )
    text += "\nJobId=99 ArrayJobId=99 ArrayTaskId=11-12 JobState=PENDING Reason=None ExitCode=0:0"
    assert [r[0] for r in parse_scontrol(text)] == ["99_1", "99_2", "99_10", "99_11-12"]
    qstat = "".join(f"Job Id: 7[{t}].srv\n    job_state = R\n" for t in (3, 1, 2))
    from hpcframe.jobs.base import task_order

    assert [r[0] for r in sorted(parse_qstat_f(qstat), key=task_order)] == [
        "7[1].srv",
        "7[2].srv",
        "7[3].srv",
    ]


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


@pytest.mark.timeout(150)
def test_torque_string_array_task_runs_and_logs_to_its_own_file(tmp_path, monkeypatch):
    """The rendered Torque body, run by bash with the environment Torque gives array task 1 of
    job ``4242[1].fakeserver`` (no server here): 2 ranks with ``-ppn 2``, the task sees ``UA``,
    and its output lands in ``stdout.4242_1.log`` (not the shared ``-o`` file)."""
    from hpcframe.jobs import render_job
    from tests.helpers.jobs import make_dataset
    from tests.helpers.mpi import MPIEXEC
    from tests.jobs.test_pbs_body_without_server import run_like_a_pbs_server

    submit_dir = tmp_path / "submit-dir"
    submit_dir.mkdir()
    monkeypatch.chdir(submit_dir)
    src, _ = make_dataset(tmp_path)
    p = make_params(
        None, {"ntasks_per_node": 2, "launcher": MPIEXEC}, scheduler="torque", array="carrier=AA,UA"
    )
    run = tmp_path / "run"
    text = render_job(
        p, os.path.join(SCRIPTS, "groupby_job.py"), [src, "out", "c{carrier}"], run_dir=str(run)
    )
    assert f"{shlex.quote(MPIEXEC)} -ppn 2 -n " in text
    proc = run_like_a_pbs_server(text, tmp_path, {"PBS_ARRAYID": "1", "PBS_JOBID": "4242[1].fakeserver"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json

    seen = [json.loads((submit_dir / "out" / f"cUA.rank{r}.json").read_text()) for r in (0, 1)]
    assert [(s["array_index"], s["size"]) for s in seen] == [("UA", 2), ("UA", 2)]
    assert (run / "stdout.4242_1.log").exists() and (run / "stderr.4242_1.log").exists()
    assert proc.stdout == ""  # everything after the redirect went to the task's own log
