"""Profiles: where they are found, how they merge with options, and reuse of dask-jobqueue."""

from __future__ import annotations

import os

import pytest
import yaml

from hpcframe.jobs import JobError, make_params
from hpcframe.jobs.profiles import (
    SHIPPED_DIR,
    ProfileRenamedWarning,
    find_profile,
    from_dask_jobqueue,
    load_profile,
    parse_qstat_q,
    parse_sinfo,
)
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
    for name in ("slurm-local", "slurm", "pbs", "torque"):
        p = make_params(os.path.join(ROOT, "configs", f"{name}.yaml"))
        assert p.scheduler in ("slurm", "pbs", "torque")


def test_shipped_profiles_are_found_outside_a_clone(workdir):
    """The new user of issue 13: in a fresh directory (no ./configs), by name."""
    assert not (workdir / "configs").exists()
    for name in ("slurm-local", "slurm", "pbs", "torque"):
        path = find_profile(name)
        assert path == os.path.join(SHIPPED_DIR, f"{name}.yaml")
        make_params(name)
    # one home for each fact: configs/*.yaml in the repository are links to the shipped files
    for name in ("slurm-local", "slurm", "pbs", "torque"):
        assert os.path.realpath(os.path.join(ROOT, "configs", f"{name}.yaml")) == os.path.join(
            SHIPPED_DIR, f"{name}.yaml"
        )


def test_shipped_profiles_are_package_data():
    tomllib = pytest.importorskip("tomllib")

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        data = tomllib.load(fh)["tool"]["setuptools"]["package-data"]["hpcframe"]
    import glob

    pattern = next(d for d in data if "cluster_profiles" in d)
    shipped = glob.glob(os.path.join(ROOT, "hpcframe", pattern))
    assert sorted(os.path.basename(f) for f in shipped) == sorted(
        f"{n}.yaml" for n in ("slurm-local", "slurm", "pbs", "torque")
    )


def test_old_name_local_finds_slurm_local_with_a_warning(workdir):
    with pytest.warns(ProfileRenamedWarning, match="renamed 'slurm-local'"):
        assert find_profile("local") == os.path.join(SHIPPED_DIR, "slurm-local.yaml")
    # ... unless the user has a profile of their own called local
    write(workdir / "configs/local.yaml", {"scheduler": "pbs"})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_profile("local")["scheduler"] == "pbs"


def test_search_order_configs_then_home_then_env(workdir, monkeypatch):
    extra = workdir / "site-profiles"
    write(extra / "site.yaml", {"scheduler": "pbs"})
    write(workdir / "home/.config/hpcframe/profiles/mine.yaml", {"scheduler": "torque"})
    write(workdir / "configs/mine.yaml", {"scheduler": "slurm"})
    monkeypatch.setenv("HPCFRAME_PROFILES", str(extra))
    assert find_profile("mine") == str(workdir / "configs/mine.yaml")
    os.remove(workdir / "configs/mine.yaml")
    assert find_profile("mine") == str(workdir / "home/.config/hpcframe/profiles/mine.yaml")
    write(workdir / "configs/slurm.yaml", {"scheduler": "torque"})  # the user's own wins
    assert load_profile("slurm")["scheduler"] == "torque"
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
        "mem": "61036M",  # Dask's units: 64GB = 64e9 bytes = 61035.2 MiB, rounded up
        "ntasks_per_node": 32,
        "extra_directives": ["--constraint=cpu", "--qos=debug"],
        "setup": ["module load python", "conda activate analysis"],
    }
    assert from_dask_jobqueue("torque", str(path))["partition"] == "workq"
    # dask settings < options; rendered
    p = make_params(None, {"nodes": 2}, dask_config=str(path), scheduler="slurm")
    assert (p.partition, p.ntasks_per_node, p.nodes, p.mem) == ("regular", 32, 2, "61036M")


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


@pytest.mark.parametrize(
    "memory,mem",
    [
        ("4GB", "3815M"),
        ("4GiB", "4096M"),
        ("4 GB", "3815M"),
        ("500MB", "477M"),
        ("1e9", "954M"),
        (2**30, "1024M"),
    ],
)
def test_dask_memory_means_what_dask_means(workdir, memory, mem):
    """dask.utils.parse_bytes: GB = 10**9 bytes, GiB = 2**30; hpcframe renders MiB, rounded up
    (what dask-jobqueue's own SLURM rendering gives)."""
    from dask.utils import parse_bytes

    path = write(workdir / "jq.yaml", {"jobqueue": {"slurm": {"memory": memory}}})
    got = from_dask_jobqueue("slurm", str(path))["mem"]
    assert got == mem
    assert int(got[:-1]) * 2**20 >= parse_bytes(memory) > (int(got[:-1]) - 1) * 2**20


def test_dask_memory_unreadable_names_the_setting(workdir):
    path = write(workdir / "jq.yaml", {"jobqueue": {"slurm": {"memory": "lots"}}})
    with pytest.raises(JobError, match=r"jobqueue.slurm .*memory 'lots'"):
        from_dask_jobqueue("slurm", str(path))


def test_dask_resource_spec_is_used_not_ignored(workdir):
    path = write(
        workdir / "jq.yaml",
        {
            "jobqueue": {
                "pbs": {
                    "cores": 4,
                    "memory": "8GB",
                    "resource-spec": "select=2:ncpus=24:mpiprocs=12:mem=100GB",
                }
            }
        },
    )
    got = from_dask_jobqueue("pbs", str(path))
    assert (got["nodes"], got["ntasks_per_node"], got["cpus_per_task"], got["mem"]) == ("2", "12", 2, "100GB")
    p = make_params(None, dask_config=str(path), scheduler="pbs", overrides={"launcher": "mpiexec"})
    assert (p.nodes, p.ntasks_per_node, p.cpus_per_task, p.mem) == (2, 12, 2, "102400M")  # PBS units: binary
    path = write(workdir / "jq2.yaml", {"jobqueue": {"pbs": {"resource-spec": "nodes=2:ppn=8"}}})
    got = from_dask_jobqueue("torque", str(path))
    assert (got["nodes"], got["ntasks_per_node"]) == ("2", "8")


@pytest.mark.parametrize(
    "spec,match",
    [
        ("select=1:ncpus=8:ngpus=1", "'ngpus=1' is not understood"),
        ("select=1:ncpus=7:mpiprocs=2", "not a multiple"),
        ("host=node01", "not understood"),
    ],
)
def test_dask_resource_spec_it_cannot_use_is_an_error(workdir, spec, match):
    path = write(workdir / "jq.yaml", {"jobqueue": {"pbs": {"resource-spec": spec}}})
    with pytest.raises(JobError, match=match) as info:
        from_dask_jobqueue("pbs", str(path))
    assert "job-extra-directives" in str(info.value) or "multiple" in str(info.value)


def test_dask_job_extra_place_excl_is_accepted(workdir):
    """The dask-jobqueue config of issue 13, refused before: now exclusive placement."""
    path = write(
        workdir / "jq.yaml", {"jobqueue": {"pbs": {"cores": 8, "job-extra-directives": ["-l place=excl"]}}}
    )
    p = make_params(None, dask_config=str(path), scheduler="pbs", overrides={"launcher": "mpiexec"})
    assert p.exclusive and p.extra_directives == ["-l place=excl"]


# --------------------------------------------------------------------------------------------
# hpcframe profiles / profiles show / profiles init
# --------------------------------------------------------------------------------------------
def test_profiles_lists_shipped_user_and_shadowed(workdir, hf):
    write(workdir / "home/.config/hpcframe/profiles/mine.yaml", {"scheduler": "torque"})
    write(workdir / "configs/slurm.yaml", {"scheduler": "slurm", "partition": "site"})
    res = hf("profiles")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SCHEDULER", "PATH"]
    by_name = {}
    for ln in lines[1:]:
        by_name.setdefault(ln.split()[0], []).append(ln)
    assert "mine" in by_name and "torque" in by_name["mine"][0]
    assert len(by_name["slurm"]) == 2 and "hidden by" in by_name["slurm"][1]
    assert "(shipped)" in by_name["pbs"][0] and "old name of slurm-local" in by_name["local"][0]
    assert hf("profiles", "list").stdout == res.stdout


def test_profiles_show_says_where_each_value_came_from(workdir, hf):
    path = write(workdir / "jq.yaml", {"jobqueue": {"slurm": {"account": "m1234", "memory": "4GB"}}})
    write(
        workdir / "configs/c.yaml",
        {"scheduler": "slurm", "partition": "big", "nodes": 3, "dask_jobqueue": str(path)},
    )
    res = hf("profiles", "show", "c")
    assert res.exit_code == 0, res.output
    rows = {ln.split()[0]: ln for ln in res.stdout.splitlines() if not ln.startswith("#")}
    assert rows["nodes"].split()[1] == "3" and "configs/c.yaml" in rows["nodes"]
    assert rows["account"].split()[1] == "m1234" and "jobqueue.slurm.account" in rows["account"]
    assert rows["mem"].split()[1] == "3815M" and "jobqueue.slurm.memory" in rows["mem"]
    assert rows["time"].split()[1] == "01:00:00" and rows["time"].endswith("default")
    assert "srun --mpi=pmi2" in rows["launcher"] and "scheduler default" in rows["launcher"]
    old = hf("profiles", "show", "local")
    assert old.exit_code == 0 and "renamed 'slurm-local'" in old.stderr
    assert "slurm-local.yaml" in old.stdout.splitlines()[0]
    bad = hf("profiles", "show", "nope")
    assert bad.exit_code == 2 and "profile 'nope' not found" in bad.stderr


SINFO = "debug*|2|24041|1|infinite|up\nlong|64+|256000|10|2-00:00:00|up\nshort|8|1000|4|30:00|down\n"
QSTAT_Q_PBSPRO = """Queue              Max   Tot Ena Str   Que   Run   Hld   Wat   Trn   Ext Type
---------------- ----- ----- --- --- ----- ----- ----- ----- ----- ----- ----
routeq               0     0 yes yes     0     0     0     0     0     0 Rout
workq                0     3 yes yes     1     2     0     0     0     0 Exec
"""
QSTAT_Q_TORQUE = """Queue              Max    Tot   Ena   Str   Que   Run   Hld   Wat   Trn   Ext T   Cpt
----------------   ---   ----    --    --   ---   ---   ---   ---   ---   --- -   ---
batch                0      0   yes   yes     0     0     0     0     0     0 E     0
"""


def test_sinfo_and_qstat_q_parsing_on_recorded_text():
    parts = parse_sinfo(SINFO)
    assert [(p["name"], p["default"], p["cpus"], p["time_limit"], p["available"]) for p in parts] == [
        ("debug", True, 2, "infinite", True),
        ("long", False, 64, "2-00:00:00", True),
        ("short", False, 8, "30:00", False),
    ]
    assert [(q["name"], q["type"]) for q in parse_qstat_q(QSTAT_Q_PBSPRO)] == [
        ("routeq", "R"),
        ("workq", "E"),
    ]
    assert [(q["name"], q["enabled"], q["type"]) for q in parse_qstat_q(QSTAT_Q_TORQUE)] == [
        ("batch", True, "E")
    ]


def test_profiles_init_asks_the_real_slurm(slurm_cluster, workdir, hf):
    """``profiles init`` on the single-node SLURM: sinfo says partition debug, 2 cpus."""
    res = hf("profiles", "init", "--name", "here")
    assert res.exit_code == 0, res.output
    path = workdir / "home/.config/hpcframe/profiles/here.yaml"
    assert path.exists() and f"wrote {path}" in res.stderr
    p = make_params("here")
    assert (p.scheduler, p.partition, p.ntasks_per_node, p.node_cpus, p.launcher) == (
        "slurm",
        "debug",
        2,
        2,
        "srun --mpi=pmi2",
    )
    again = hf("profiles", "init", "--name", "here")
    assert again.exit_code == 2 and "--force" in again.stderr
    assert hf("profiles", "init", "--name", "here", "--force").exit_code == 0
    printed = hf("profiles", "init", "--output", "-")
    assert printed.exit_code == 0 and "partition: debug" in printed.stdout
    dry = hf(
        "submit",
        os.path.join(ROOT, "tests/jobs/scripts/sleep_job.py"),
        "--cluster-profile",
        "here",
        "--dry-run",
    )
    assert dry.exit_code == 0 and "#SBATCH --partition=debug" in dry.stdout


def test_profiles_init_without_a_scheduler_says_what_to_do(workdir, hf, monkeypatch):
    monkeypatch.setenv("PATH", str(workdir))  # neither sinfo nor qstat
    res = hf("profiles", "init")
    assert res.exit_code == 2 and "neither sinfo (SLURM) nor qstat" in res.stderr


def test_help_tells_cluster_profile_from_profile_dir(hf):
    sub = hf("submit", "--help").stdout
    assert "--cluster-profile" in sub and "Not the performance record" in " ".join(sub.split())
    assert "carrier=AA,UA" in sub and "--exclusive" in sub
    run = " ".join(hf("run", "--help").stdout.split())
    assert "Not a cluster profile" in run
