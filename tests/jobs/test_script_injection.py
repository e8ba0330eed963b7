"""Job scripts cannot be used to inject commands: a control character (newline, carriage
return, tab, ...) in ANY value written into a job script -- the submit directory, the run
directory, names, profile values, the target path, script arguments -- is refused with an error
naming the parameter, and hostile-but-printable values render into a script that, run by
bash, executes nothing but the launch line."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess

import pytest

from hpcframe.jobs import JobError, JobParams, make_params, render_job, scheduler_for
from hpcframe.jobs.base import CONTROL_RE, validate

SCHEDULERS = ["slurm", "pbs", "torque"]
# a newline followed by a command; the trailing '#' comments out shlex.quote's closing quote,
# which is exactly what made the injection run before control characters were refused
INJECT = "\ntouch INJECTED #"


def write_target(workdir):
    path = workdir / "analysis.py"
    path.write_text("print('hi')\n")
    return str(path)


def fake_tools(tmp_path):
    """A bin/ directory with sbatch/qsub/srun/mpiexec/module stand-ins that only record their
    arguments (one line per call, shell-quoted) in ``calls.log``."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for tool in ("sbatch", "qsub", "srun", "mpiexec", "module"):
        p = bindir / tool
        p.write_text(
            f'#!/bin/bash\nprintf "%q " {tool} "$@" >> {shlex.quote(str(log))}\n'
            f"echo >> {shlex.quote(str(log))}\necho 4242\n"
        )
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return bindir, log


def injected(root) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.startswith("INJECTED")]


# ---------------------------------------------------------------------------------------------
# control characters are refused, naming the parameter
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_newline_in_the_submit_directory_is_refused(scheduler, workdir, monkeypatch):
    """The submit directory becomes ``#SBATCH --chdir`` (and the default workdir): a newline in
    it used to end the directive line and run the rest as a command."""
    target = write_target(workdir)
    evil = workdir / f"sub{INJECT}"
    evil.mkdir()
    monkeypatch.chdir(evil)
    with pytest.raises(JobError, match=r"working directory .*contains a newline"):
        make_params(scheduler=scheduler)
    # parameters made elsewhere (workdir unset): render itself refuses the current directory
    p = validate(JobParams(scheduler=scheduler, launcher="mpiexec"))
    assert p.workdir is None
    if scheduler == "slurm":
        with pytest.raises(JobError, match=r"working directory .*contains a newline"):
            render_job(p, target, run_dir="/tmp/run")


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize(
    "char,name",
    [
        ("\n", "newline"),
        ("\r", "carriage return"),
        ("\t", "tab"),
        ("\x1b", "control character"),
        ("\x85", "control character"),
    ],
)
def test_control_character_in_the_run_directory_is_refused(scheduler, char, name, workdir):
    """The run directory becomes ``--output/--error`` (SLURM) and ``-o/-e`` (PBS)."""
    target = write_target(workdir)
    p = make_params(scheduler=scheduler)
    with pytest.raises(JobError, match=rf"run directory .*contains a {name}"):
        render_job(p, target, run_dir=f"/tmp/runs/x{char}touch INJECTED #")


FIELDS = [
    ("workdir", "/home/u/p{}", "working directory"),
    ("python", "/opt/py{}/bin/python", "python"),
    ("launcher", "mpiexec{}", "launcher"),
    ("setup", ["source x{}"], "setup line"),
    ("extra_directives", ["--comment=x{}"], "extra directive"),
    ("env", {"A": "x{}"}, "env value of A"),
]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("field,template,what", FIELDS, ids=[f[0] for f in FIELDS])
@pytest.mark.parametrize("char", ["\n", "\t", "\x00", "\x7f"], ids=["nl", "tab", "nul", "del"])
def test_control_characters_in_any_parameter_are_refused(scheduler, field, template, what, char):
    def fill(t):
        if isinstance(t, list):
            return [fill(x) for x in t]
        if isinstance(t, dict):
            return {k: fill(v) for k, v in t.items()}
        return t.format(char)

    kw = dict(scheduler=scheduler, name="job", time="00:05:00", launcher="mpiexec")
    kw[field] = fill(template)
    with pytest.raises(JobError) as info:
        validate(JobParams(**kw))
    msg = str(info.value)
    assert msg.startswith(what) and ("single line" in msg or "control character" in msg or "a tab" in msg), (
        msg
    )


@pytest.mark.parametrize(
    "field,value,what",
    [
        ("name", "flights\n", "job name"),
        ("partition", "compute\n", "partition/queue"),
        ("account", "proj42\n", "account"),
        ("modules", ["mpich\n"], "module"),
        ("name", "flights\r", "job name"),
        ("partition", "a\tb", "partition/queue"),
    ],
)
def test_trailing_newline_in_a_name_is_refused(field, value, what):
    """``re.match(r"...$")`` accepted a final newline (``$`` matches before it)."""
    with pytest.raises(JobError, match=f"^{what} .* is not allowed: use letters"):
        validate(JobParams(**{"name": "job", "scheduler": "slurm", field: value}))


def test_newline_in_a_target_path_or_script_argument_is_refused(workdir):
    p = make_params(scheduler="slurm")
    evil_dir = workdir / "a\nb"
    evil_dir.mkdir()
    (evil_dir / "x.py").write_text("print(1)\n")
    with pytest.raises(JobError, match="job target path .*contains a newline"):
        render_job(p, str(evil_dir / "x.py"), run_dir="/tmp/run")
    target = write_target(workdir)
    with pytest.raises(JobError, match="script argument 2 .*contains a newline"):
        render_job(p, target, ["ok", "x\ntouch INJECTED #"], run_dir="/tmp/run")
    with pytest.raises(JobError, match="program .*contains a tab"):
        scheduler_for("slurm").render(p, ["-c", "a\tb"], "/tmp/run")


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_submit_from_a_directory_with_a_newline_submits_nothing(
    scheduler, workdir, hf, monkeypatch, tmp_path
):
    """Through ``hpcframe submit`` (not --dry-run): exit 2 naming the directory, no run
    directory, the submit command never called, nothing injected."""
    bindir, log = fake_tools(tmp_path)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    target = write_target(workdir)
    evil = workdir / f"sub{INJECT}"
    evil.mkdir()
    monkeypatch.chdir(evil)
    res = hf("submit", target, "--scheduler", scheduler)
    assert res.exit_code == 2, res.output
    assert "working directory" in res.stderr and "newline" in res.stderr
    assert not log.exists() and not (evil / "hpcframe-runs").exists() and not injected(workdir)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_runs_root_with_a_newline_creates_nothing(scheduler, workdir, hf, monkeypatch, tmp_path):
    bindir, log = fake_tools(tmp_path)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    runs = workdir / f"runs{INJECT}"
    monkeypatch.setenv("HPCFRAME_RUNS", str(runs))
    res = hf("submit", write_target(workdir), "--scheduler", scheduler)
    assert res.exit_code == 2, res.output
    assert "run directory root" in res.stderr and "newline" in res.stderr
    assert not runs.exists() and not log.exists() and not injected(workdir)


# ---------------------------------------------------------------------------------------------
# hostile but printable values: quoted, and running the script runs only the launch line
# ---------------------------------------------------------------------------------------------
HOSTILE = "d $(touch INJECTED1) ; touch INJECTED2 `touch INJECTED3` 'q' \"dq\" \\ & | > <"


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_hostile_printable_values_run_nothing_but_the_launch_line(scheduler, workdir, tmp_path, monkeypatch):
    bindir, log = fake_tools(tmp_path)
    submit_dir = workdir / f"submit {HOSTILE}"
    submit_dir.mkdir()
    monkeypatch.chdir(submit_dir)
    target = submit_dir / f"job {HOSTILE}.py"
    target.write_text("print(1)\n")
    args = [HOSTILE, "$(touch INJECTED4)", "a b"]
    p = make_params(
        scheduler=scheduler,
        overrides={
            "python": f"/opt/{HOSTILE}/python",
            "env": {"X": HOSTILE},
            "extra_directives": ["--comment=$(touch INJECTED5)" if scheduler == "slurm" else "-m abe"],
            "launcher": "mpiexec",
        },
    )
    run_dir = str(tmp_path / f"run {HOSTILE}")
    text = render_job(p, str(target), args, run_dir=run_dir)
    # every value stayed on its line: the script has exactly the lines it was built from
    assert not CONTROL_RE.search(text.replace("\n", ""))
    directives = [ln for ln in text.splitlines() if ln.startswith(("#SBATCH", "#PBS"))]
    assert any(run_dir in shlex.split(ln)[1] or run_dir in " ".join(shlex.split(ln)[1:]) for ln in directives)
    script = tmp_path / "job.sh"
    script.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_"))}
    env.update(
        PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
        PBS_O_WORKDIR=str(submit_dir),
        PBS_NODEFILE=str(tmp_path / "nodefile"),
    )
    (tmp_path / "nodefile").write_text("n1\nn1\n")
    proc = subprocess.run(
        ["bash", str(script)], cwd=submit_dir, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = [shlex.split(ln) for ln in log.read_text().splitlines()]
    assert len(calls) == 1 and calls[0][0] == "mpiexec", calls
    assert calls[0][-len(args) :] == args
    assert calls[0][-len(args) - 3 : -len(args)] == ["-m", "hpcframe.jobs.launch", str(target)]
    assert f"/opt/{HOSTILE}/python" in calls[0]
    assert not injected(workdir) and not injected(tmp_path)
