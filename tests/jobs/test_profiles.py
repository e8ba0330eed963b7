"""Profiles: where they are found, how they merge with options, and reuse of dask-jobqueue."""

from __future__ import annotations

import os

import pytest
import yaml

from hpcframe.jobs import JobError, make_params
from hpcframe.jobs.profiles import find_profile, from_dask_jobqueue, load_profile
from tests.helpers import ROOT

DASK_YAML = """
jobqueue:
  slurm:
    queue: regular
    account: m1234
    walltime: '02:00:00'
    memory: 64GB
    cores: 32
    job-extra-directives: ["--constraint=cpu", "--qos=debug"]
    job-script-prologue: ["module load python", "conda activate analysis"]
  pbs:
    queue: workq
    walltime: '00:45:00'
    cores: 8
"""


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data) if isinstance(data, dict) else data)
    return path


def test_shipped_profiles_load_and_validate(workdir):
    for name in ("local", "slurm", "pbs", "torque"):
        p = make_params(os.path.join(ROOT, "configs", f"{name}.yaml"))
        assert p.scheduler in ("slurm", "pbs", "torque")


def test_search_order_configs_then_home_then_env(workdir, monkeypatch):
    extra = workdir / "site-profiles"
    write(extra / "site.yaml", {"scheduler": "pbs"})
    write(workdir / "home/.config/hpcframe/profiles/mine.yaml", {"scheduler": "torque"})
    write(workdir / "configs/mine.yaml", {"scheduler": "slurm"})
    monkeypatch.setenv("HPCFRAME_PROFILES", str(extra))
    assert find_profile("mine") == str(workdir / "configs/mine.yaml")
    os.remove(workdir / "configs/mine.yaml")
    assert find_profile("mine") == str(workdir / "home/.config/hpcframe/profiles/mine.yaml")
    assert load_profile("site")["scheduler"] == "pbs"
    with pytest.raises(JobError, match=r"profile 'nope' not found in .*available: .*site"):
        find_profile("nope")


def test_options_override_profile(workdir):
    write(
        workdir / "configs/c.yaml",
        {"scheduler": "slurm", "queue": "big", "nodes": 4, "ntasks-per-node": 8, "time": "02:00:00"},
    )
    p = make_params("c", {"nodes": 2, "time": None, "partition": None})
    assert (p.nodes, p.ntasks_per_node, p.partition, p.time) == (2, 8, "big", "02:00:00")


def test_profile_errors_name_the_file_and_key(workdir):
    write(workdir / "configs/bad.yaml", {"scheduler": "slurm", "ntasks": 4})
    with pytest.raises(
        JobError,
        match=r"bad.yaml \(also allowed: dask_jobqueue\): "
        r"unknown key\(s\) ntasks; valid keys",
    ):
        make_params("bad")
    write(workdir / "configs/lsf.yaml", {"scheduler": "lsf"})
    with pytest.raises(JobError, match="scheduler 'lsf' is not one of slurm, pbs, torque"):
        make_params("lsf")
    write(workdir / "configs/broken.yaml", "scheduler: [slurm\n")
    with pytest.raises(JobError, match="broken.yaml: not valid YAML"):
        make_params("broken")
    write(workdir / "configs/big.yaml", {"scheduler": "slurm", "node_cpus": 8, "ntasks_per_node": 16})
    with pytest.raises(JobError, match="16 CPUs, but a node has 8"):
        make_params("big")


def test_dask_jobqueue_file_is_reused(workdir):
    path = write(workdir / "jobqueue.yaml", DASK_YAML)
    got = from_dask_jobqueue("slurm", str(path))
    assert got == {
        "partition": "regular",
        "account": "m1234",
        "time": "02:00:00",
        "mem": "64GB",
        "ntasks_per_node": 32,
        "extra_directives": ["--constraint=cpu", "--qos=debug"],
        "setup": ["module load python", "conda activate analysis"],
    }
    assert from_dask_jobqueue("torque", str(path))["partition"] == "workq"
    # dask settings < options; rendered
    p = make_params(None, {"nodes": 2}, dask_config=str(path), scheduler="slurm")
    assert (p.partition, p.ntasks_per_node, p.nodes, p.mem) == ("regular", 32, 2, "65536M")


def test_dask_jobqueue_from_users_dask_config_dir(workdir, monkeypatch):
    """``dask_jobqueue: true`` in a profile reads Dask's own search path (here ~/.config/dask
    of a fake HOME: dask.config.paths is computed when dask is imported, so it is pointed there)
    with lower priority than the profile."""
    write(workdir / "home/.config/dask/jobqueue.yaml", DASK_YAML)
    import dask.config

    monkeypatch.setattr(dask.config, "paths", [str(workdir / "home/.config/dask")])
    write(workdir / "configs/d.yaml", {"scheduler": "pbs", "dask_jobqueue": True, "time": "00:10:00"})
    p = make_params("d")
    assert (p.partition, p.ntasks_per_node, p.time) == ("workq", 8, "00:10:00")


def test_dask_jobqueue_missing_file(workdir):
    with pytest.raises(JobError, match="does not exist"):
        from_dask_jobqueue("slurm", str(workdir / "nope.yaml"))
