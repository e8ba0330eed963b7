"""``hpcframe run --cache-dir`` (a daily append reads only the new file), ``hpcframe cache
info|clear``, and two jobs sharing one cache directory at the same time (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from hpcframe.cli import main
from hpcframe.io.partials import PartialStore
from tests.helpers import mpi
from tests.helpers.cli import write_spec

SPEC = """
input: {{path: {data}}}
filter: "delay > -20"
groupby: [day, carrier]
aggregate: {{delay: [mean, max], flights: sum}}
output: {{path: {out}, overwrite: true}}
"""


def _day(i: int, rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(i)
    delay = rng.normal(10, 30, rows)
    delay[rng.random(rows) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "day": np.full(rows, i, dtype="int64"),
            "carrier": pd.array(rng.choice(["AA", "UA", "DL"], rows), dtype="str"),
            "flights": rng.integers(0, 9, rows).astype("int64"),
            "delay": delay,
        }
    )


def _write(folder, i):
    _day(i).to_parquet(os.path.join(folder, f"day{i:02d}.parquet"), row_group_size=200, index=False)


def _expected(folder) -> pd.DataFrame:
    files = sorted(f for f in os.listdir(folder) if f.endswith(".parquet"))
    pdf = pd.concat([pd.read_parquet(os.path.join(folder, f)) for f in files], ignore_index=True)
    pdf = pdf[pdf.delay > -20]
    g = pdf.groupby(["day", "carrier"])
    return pd.DataFrame(
        {"delay_mean": g.delay.mean(), "delay_max": g.delay.max(), "flights": g.flights.sum()}
    )


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], env={"HPCFRAME_DEBUG": ""})


def _check(out, folder):
    got = pd.read_parquet(out)
    want = _expected(folder).reset_index()
    assert len(got) == len(want)
    assert np.allclose(got["flights"].to_numpy(), want["flights"].to_numpy())
    assert np.allclose(got["delay_mean"].to_numpy(), want["delay_mean"].to_numpy())
    assert np.allclose(got["delay_max"].to_numpy(), want["delay_max"].to_numpy())


@pytest.fixture
def daily(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        _write(data, i)
    return str(data)


def test_run_with_cache_dir_reads_only_the_new_file(tmp_path, daily):
    cache, out, plain = tmp_path / "cache", tmp_path / "out.parquet", tmp_path / "plain.parquet"
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=daily, out=out))
    r = invoke("run", spec, "--cache-dir", cache)
    assert r.exit_code == 0, r.output
    assert "blocks:   3 read, 0 from the cache" in r.output
    first = pd.read_parquet(out)
    r = invoke("run", spec, "--cache-dir", cache)
    assert "blocks:   0 read, 3 from the cache" in r.output, r.output
    pd.testing.assert_frame_equal(pd.read_parquet(out), first, check_exact=True)
    _write(daily, 3)  # tomorrow's file
    r = invoke("run", spec, "--cache-dir", cache)
    assert r.exit_code == 0, r.output
    assert "blocks:   1 read, 3 from the cache" in r.output, r.output
    r = invoke("run", spec, "-o", plain, "--overwrite", "-q")  # no cache: the same bytes of results
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(plain), check_exact=True)
    _check(out, daily)


def test_cache_info_and_clear(tmp_path, daily):
    cache = tmp_path / "cache"
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=daily, out=tmp_path / "o.parquet"))
    assert invoke("run", spec, "--cache-dir", cache, "-q").exit_code == 0
    r = invoke("cache", "info", cache)
    assert r.exit_code == 0, r.output
    assert "entries    3" in r.output
    r = invoke("cache", "info", cache, "--json")
    assert '"entries": 3' in r.output
    store = PartialStore(cache)
    old = time.time() - 40 * 86400
    path = store.path_of(store.keys()[0])
    os.utime(path, (old, old))
    r = invoke("cache", "clear", cache, "--older-than", "30d")
    assert r.exit_code == 0 and "removed 1 entries" in r.output, r.output
    assert store.info()["entries"] == 2
    r = invoke("cache", "clear", cache, "--older-than", "soon")
    assert r.exit_code == 2 and "not an age" in r.output
    r = invoke("cache", "clear", cache)
    assert "removed 2 entries" in r.output and store.info()["entries"] == 0
    r = invoke("cache", "info", tmp_path / "data")
    assert r.exit_code == 2 and "not a cache directory" in r.output


def test_unwritable_cache_dir_is_a_usage_error(tmp_path, daily):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=daily, out=tmp_path / "o.parquet"))
    r = invoke("run", spec, "--cache-dir", blocker / "cache")
    assert r.exit_code == 2, r.output
    assert "--cache-dir" in r.output and "cache" in r.output


def _env():
    drop = ("PMI_", "PMIX_", "OMPI_", "MV2_", "HYDRA_", "MPI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    return env


def test_two_jobs_share_a_cache_directory_at_once(tmp_path, daily):
    """Two processes run the job together, twice each, on one cache directory (every
    entry is written by both): every output is right and no entry is ever corrupt."""
    cache = tmp_path / "cache"
    specs = [
        write_spec(tmp_path / f"job{j}.yaml", SPEC.format(data=daily, out=tmp_path / f"out{j}.parquet"))
        for j in range(2)
    ]
    for round_ in range(2):
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "hpcframe.cli", "run", s, "--cache-dir", str(cache)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=_env(),
            )
            for s in specs
        ]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        for j in range(2):
            _check(tmp_path / f"out{j}.parquet", daily)
        if round_ == 0:
            _write(daily, 3 + round_)  # the next round also writes new entries
    store = PartialStore(cache)
    for key in store.keys():
        assert store.get(key) is not None
    assert store.rejected == 0
    assert store.info()["entries"] == 4
    leftovers = [f for _, _, fs in os.walk(cache) for f in fs if f.endswith(".tmp")]
    assert leftovers == []


def test_profile_dir_records_the_cache(tmp_path, daily):
    cache, prof = tmp_path / "cache", tmp_path / "prof"
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=daily, out=tmp_path / "o.parquet"))
    assert invoke("run", spec, "--cache-dir", cache, "-q").exit_code == 0
    r = invoke("run", spec, "--cache-dir", cache, "--profile-dir", prof, "-q")
    assert r.exit_code == 0, r.output
    got = pd.read_parquet(prof / "cache.parquet").set_index("level")
    assert got.loc["disk partials", "hits"] == 3 and got.loc["disk partials", "misses"] == 0
    r = invoke("report", prof)
    assert r.exit_code == 0, r.output
    page = (prof / "report.html").read_text()
    assert "bytes served" in page and "disk partials" in page  # the Cache table


@mpi.needs_mpiexec
def test_cache_filled_by_two_ranks_serves_one(tmp_path, daily):
    """A job on 2 MPI ranks fills the cache; the next job, on 1 rank, reads nothing and
    writes the same bytes of results (keys do not depend on the rank count)."""
    cache, out = tmp_path / "cache", tmp_path / "out.parquet"
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=daily, out=out))
    env = {**_env(), "HPCFRAME_BLOCK_ROWS": "200"}  # 2 blocks per file: both ranks compute
    proc = subprocess.run(
        mpi.mpiexec(2, sys.executable, "-m", "hpcframe.cli", "run", spec, "--cache-dir", cache),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "blocks:   6 read, 0 from the cache" in proc.stdout
    first = pd.read_parquet(out)
    proc = subprocess.run(
        [sys.executable, "-m", "hpcframe.cli", "run", spec, "--cache-dir", cache],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "blocks:   0 read, 6 from the cache" in proc.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(out), first, check_exact=True)
    _check(out, daily)
