"""The Dask engine on clusters from ``hf.cluster()``: the profile -> dask-jobqueue mapping (both
ways), a LocalCluster, and a REAL dask-jobqueue ``SLURMCluster`` on the single-node SLURM of
tests/slurm/start_slurm.sh (one job, one worker): start, run a query, scale to zero, shut down."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from hpcframe.jobs.base import parse_mem
from hpcframe.jobs.dask import jobqueue_kwargs
from hpcframe.jobs.profiles import from_dask_jobqueue, load_profile

pytest.importorskip("dask_jobqueue")
pytestmark = pytest.mark.timeout(300)


def _write_profile(path, **extra) -> str:
    lines = [
        "scheduler: slurm",
        "partition: debug",
        "nodes: 1",
        "ntasks_per_node: 1",
        "cpus_per_task: 1",
        'time: "00:05:00"',
        "mem: 1G",
        "name: hf-dask-test",
    ]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _data(tmp_path):
    rng = np.random.default_rng(7)
    df = pd.DataFrame(
        {
            "carrier": rng.choice(["AA", "UA", "DL", "B6"], 3000),
            "dep_delay": rng.normal(10, 30, 3000),
        }
    )
    path = tmp_path / "flights"
    path.mkdir()
    for i in range(3):
        df.iloc[i * 1000 : (i + 1) * 1000].to_parquet(path / f"part{i}.parquet", row_group_size=250)
    return str(path), df


def test_profile_to_jobqueue_and_back(tmp_path):
    """The profile's resources become dask-jobqueue's settings; written as a Dask config
    file, ``from_dask_jobqueue`` reads the same resources back."""
    prof = tmp_path / "p.yaml"
    prof.write_text(
        "scheduler: slurm\npartition: short\naccount: proj\nntasks_per_node: 4\ncpus_per_task: 2\n"
        'time: "02:00:00"\nmem: 16G\nmodules: [python/3.11]\nsetup: ["source env.sh"]\n'
        "env: {OMP_NUM_THREADS: 2}\nextra_directives: ['--constraint=ib']\n"
    )
    kw = jobqueue_kwargs(load_profile(str(prof)))
    assert kw["queue"] == "short" and kw["account"] == "proj" and kw["walltime"] == "02:00:00"
    assert kw["memory"] == "16384MiB" and kw["cores"] == 8 and kw["processes"] == 4
    assert kw["job_extra_directives"] == ["--constraint=ib"]
    assert kw["job_script_prologue"] == [
        "module load python/3.11",
        "source env.sh",
        "export OMP_NUM_THREADS=2",
    ]
    import yaml

    cfg = tmp_path / "dask.yaml"
    section = {k.replace("_", "-"): v for k, v in kw.items() if k != "processes"}
    cfg.write_text(yaml.safe_dump({"jobqueue": {"slurm": section}}))
    back = from_dask_jobqueue("slurm", str(cfg))
    assert back["partition"] == "short" and back["account"] == "proj" and back["time"] == "02:00:00"
    assert parse_mem(back["mem"]) == parse_mem("16G") and back["extra_directives"] == ["--constraint=ib"]
    # the job script dask-jobqueue renders from it (no submission)
    from dask_jobqueue import SLURMCluster

    script = SLURMCluster(**kw, dashboard_address=None).job_script()
    for want in (
        "#SBATCH -p short",
        "#SBATCH -A proj",
        "#SBATCH -t 02:00:00",
        "--constraint=ib",
        "module load",
    ):
        assert want in script, script


def test_profile_without_mem_is_a_clear_error(tmp_path):
    prof = tmp_path / "nomem.yaml"
    prof.write_text("scheduler: slurm\npartition: debug\n")
    with pytest.raises(hf.HpcframeError, match="no mem.*memory="):
        hf.cluster(profile=str(prof), jobs=1)


def test_local_cluster_context_manager(tmp_path, capsys):
    src, df = _data(tmp_path)
    flights = hf.read_parquet(src)
    q = flights.groupby("carrier").dep_delay.mean()
    with hf.cluster(jobs=1, processes=False) as c:
        assert "dashboard:" in capsys.readouterr().out
        got = q.compute(engine=c)
        c.scale(jobs=2)
        c.adapt(minimum_jobs=1, maximum_jobs=2)
        again = hf.compute(q, flights.len(), engine=c)
    pd.testing.assert_series_equal(got, q.compute(), check_exact=True)
    pd.testing.assert_series_equal(again[0], got, check_exact=True)
    assert again[1] == len(df)
    assert c.cluster.status.name == "closed"


def _squeue(name):
    out = subprocess.run(
        ["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True, timeout=30
    ).stdout
    return [ln for ln in out.splitlines() if ln.strip()]


def test_slurm_cluster_end_to_end(slurm_cluster, tmp_path):
    """A real SLURMCluster from a profile: one job with one worker runs the query (the same
    result as the local engine, bit for bit), then scales to zero and shuts down."""
    src, df = _data(tmp_path)
    prof = _write_profile(tmp_path / "slurm-dask.yaml")
    logs = tmp_path / "logs"
    flights = hf.read_parquet(src)
    q = flights[flights.dep_delay > 0].groupby("carrier").dep_delay.agg(["mean", "sum", "count"])
    expected = q.compute()
    name = f"hfdask{os.getpid()}"
    with hf.cluster(
        profile=prof, jobs=1, job_name=name, log_directory=str(logs), local_directory=str(tmp_path)
    ) as c:
        script = c.job_script()
        assert "#SBATCH -p debug" in script and "#SBATCH -t 00:05:00" in script, script
        c.wait_for_workers(1, timeout=180)
        assert _squeue(name), "the worker's SLURM job is not in squeue"
        got = q.compute(engine=c)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        ref = df[df.dep_delay > 0].groupby("carrier").dep_delay.agg(["mean", "sum", "count"])
        pd.testing.assert_frame_equal(got, ref, check_exact=False, check_dtype=False)
        c.scale(jobs=0)
        deadline = time.time() + 120
        while time.time() < deadline and (c.client.scheduler_info()["workers"] or _squeue(name)):
            time.sleep(1)
        assert not c.client.scheduler_info()["workers"], "workers still connected after scale(0)"
        assert not _squeue(name), f"SLURM job still queued after scale(0): {_squeue(name)}"
    assert c.cluster.status.name == "closed"
    assert not _squeue(name)


def test_pbs_profile_renders_a_pbs_cluster(tmp_path):
    """A PBS profile gives a dask-jobqueue PBSCluster (its job script; nothing submitted)."""
    prof = tmp_path / "pbs.yaml"
    prof.write_text(
        "scheduler: pbs\nqueue: workq\naccount: myproject\nntasks_per_node: 2\ncpus_per_task: 1\n"
        'time: "01:00:00"\nmem: 4G\nmodules: [python/3.11]\n'
    )
    with hf.cluster(profile=str(prof), quiet=True) as c:
        assert c.kind == "pbs"
        script = c.job_script()
    for want in ("#PBS -q workq", "#PBS -A myproject", "walltime=01:00:00", "module load python/3.11"):
        assert want in script, script
    assert "--nworkers 2" in script or "--nprocs 2" in script, script
