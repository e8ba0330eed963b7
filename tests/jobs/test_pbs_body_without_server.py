"""PBS Pro and Torque WITHOUT a PBS server (none can run here): the rendered job script's body
is run under ``bash`` with the environment a real server gives a job (``PBS_NODEFILE`` listing
this host twice, ``PBS_O_WORKDIR``, ``PBS_JOBID``, ``PBS_ARRAY_INDEX``/``PBS_ARRAYID``), its
output redirected to the log files the ``#PBS -o/-e`` directives name. What is NOT covered:
``qsub`` parsing the directives, and ``qstat``/``qdel`` (their output parsers are tested on
recorded text below)."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pandas as pd
import pytest

from hpcframe.jobs import ArraySpec, make_params, render_job
from hpcframe.jobs.pbs import PBSPro, parse_qstat_f
from tests.helpers.jobs import SCRIPTS, expected_groupby, make_dataset
from tests.helpers.mpi import MPIEXEC


def run_like_a_pbs_server(script_text, tmp_path, extra_env, timeout=90):
    """bash SCRIPT with a PBS job's environment, started in $HOME as PBS does."""
    script = tmp_path / "job.pbs"
    script.write_text(script_text)
    nodefile = tmp_path / "pbs_nodefile"
    nodefile.write_text(f"{socket.gethostname()}\n" * 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PMI_", "HYDRA_"))}
    env.update(
        {
            "PBS_NODEFILE": str(nodefile),
            "PBS_O_WORKDIR": str(tmp_path / "submit-dir"),
            "PBS_JOBID": "4242.fakeserver",
            "PBS_ENVIRONMENT": "PBS_BATCH",
            **extra_env,
        }
    )
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        ["bash", str(script)], cwd=home, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.timeout(150)
@pytest.mark.parametrize("scheduler,index_var", [("pbs", "PBS_ARRAY_INDEX"), ("torque", "PBS_ARRAYID")])
def test_rendered_pbs_body_runs_two_ranks_without_a_pbs_server(scheduler, index_var, tmp_path, monkeypatch):
    submit_dir = tmp_path / "submit-dir"
    submit_dir.mkdir()
    monkeypatch.chdir(submit_dir)
    src, df = make_dataset(tmp_path)
    p = make_params(
        None,
        {"ntasks_per_node": 2, "launcher": MPIEXEC},
        scheduler=scheduler,
        array=ArraySpec.parse("month=1-3"),
    )
    text = render_job(
        p, os.path.join(SCRIPTS, "groupby_job.py"), [src, "out", "m{month}"], run_dir=str(tmp_path / "run")
    )
    assert 'cd "$PBS_O_WORKDIR"' in text
    proc = run_like_a_pbs_server(text, tmp_path, {index_var: "2"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = submit_dir / "out"  # relative paths resolve in PBS_O_WORKDIR, not $HOME
    ranks = sorted(json.loads((out / f"m2.rank{r}.json").read_text())["size"] for r in (0, 1))
    assert ranks == [2, 2]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "m2.parquet"), expected_groupby(df))


QSTAT_PBSPRO = """Job Id: 101.pbs01
    Job_Name = flights
    job_state = F
    Exit_status = 0
Job Id: 102.pbs01
    job_state = F
    Exit_status = 1
Job Id: 103.pbs01
    job_state = R
Job Id: 104.pbs01
    job_state = Q
"""


def test_qstat_output_parsing_on_recorded_text():
    """No PBS server: ``qstat -x -f`` output as PBS Pro prints it, parsed."""
    rows = parse_qstat_f(QSTAT_PBSPRO)
    assert [(r[0], r[1]) for r in rows] == [
        ("101.pbs01", "COMPLETED"),
        ("102.pbs01", "FAILED"),
        ("103.pbs01", "RUNNING"),
        ("104.pbs01", "PENDING"),
    ]
    assert PBSPro().parse_job_id("4242.pbs01\n") == "4242.pbs01"
    assert PBSPro().parse_job_id("4243[].pbs01\n") == "4243[].pbs01"
