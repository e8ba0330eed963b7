"""`hpcframe convert` under a real mpiexec with 1-4 ranks (subprocesses with timeouts)."""

import os
import re

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from hpcframe.io.writers import LEAVES, MANIFEST
from tests.helpers.ingest import HERE, compress, flights
from tests.helpers.mpi import run_mpi

pytestmark = pytest.mark.timeout(300)
CONVERT = ["-m", "hpcframe.cli", "convert"]
SMALL = {"HPCFRAME_BLOCK_ROWS": "3000"}


@pytest.fixture(scope="module")
def csvs(tmp_path_factory):
    d = tmp_path_factory.mktemp("csvs")
    frames = []
    for i, kind in enumerate(["gz", None, "xz", "bz2", None]):
        p = str(d / f"flights-{i}.csv")
        flights(4000, seed=i).to_csv(p, index=False)
        frames.append(pd.read_csv(p))
        if kind:
            compress(p, kind)
            os.remove(p)
    return str(d / "flights-*"), pd.concat(frames, ignore_index=True)


def sort(df):
    cols = list(df.columns)
    return df.sort_values(cols, kind="mergesort").reset_index(drop=True)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_convert_to_hive_parquet_on_n_ranks(tmp_path, csvs, n):
    pattern, exp = csvs
    out = str(tmp_path / "out")
    proc = run_mpi(
        n,
        CONVERT
        + [
            pattern,
            out,
            "--to",
            "parquet",
            "--partition-by",
            "Year,Month",
            "--chunk-bytes",
            "64KB",
            "--progress",
        ],
        env=SMALL,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{len(exp):,} rows" in proc.stdout and f"on {n} rank(s)" in proc.stdout
    assert proc.stdout.count("wrote /") == 1  # summary from rank 0 only
    assert os.path.exists(os.path.join(out, MANIFEST))
    got = hf.read_parquet(out).compute()[list(exp.columns)]
    pd.testing.assert_frame_equal(sort(got), sort(exp))


def test_convert_to_hdf5_on_two_ranks(tmp_path, csvs):
    pattern, exp = csvs
    out = str(tmp_path / "flights.h5")
    proc = run_mpi(2, CONVERT + [pattern, out, "--to", "hdf5", "--chunk-bytes", "64KB"], env=SMALL)
    assert proc.returncode == 0, proc.stderr
    got = hf.read_hdf(out).compute()
    pd.testing.assert_frame_equal(sort(got), sort(exp.fillna({"Origin": ""})))


def test_dry_run_shows_files_ranks_and_outputs(tmp_path, csvs):
    pattern, _ = csvs
    out = str(tmp_path / "out")
    proc = run_mpi(3, CONVERT + [pattern, out, "--dry-run", "--chunk-bytes", "64KB"], env=SMALL)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "over 3 rank(s)" in text and "rank 2:" in text
    assert re.search(r"flights-0\.csv\.gz \[.*\] -> part-TAG-000000\.parquet", text)
    assert not os.path.exists(out)


def test_bad_usage_is_a_clear_error(tmp_path, csvs):
    pattern, _ = csvs
    proc = run_mpi(1, CONVERT + [pattern, str(tmp_path / "o"), "--chunk-bytes", "lots"])
    assert proc.returncode != 0 and "is not a size" in proc.stderr
    proc = run_mpi(2, CONVERT + [str(tmp_path / "nothing-*.csv"), str(tmp_path / "o")])
    assert proc.returncode == 1 and proc.stderr.count("no file matches") == 1


def test_failure_on_one_rank_then_resume(tmp_path, csvs):
    pattern, exp = csvs
    out = str(tmp_path / "out")
    script = os.path.join(HERE, "scripts", "convert_report.py")
    fail = run_mpi(3, [script, pattern, out, "65536", "5"], env=SMALL)
    assert fail.stdout.count("ComputeError") == 3, fail.stdout + fail.stderr
    assert not os.path.exists(out)  # nothing a reader would pick up
    assert os.listdir(os.path.join(str(tmp_path), ".out.hpcframe-staging", LEAVES))
    ok = run_mpi(3, [script, pattern, out, "65536"], env=SMALL)
    assert ok.returncode == 0, ok.stderr
    skipped = int(re.search(r"skipped=(\d+)", ok.stdout).group(1))
    assert skipped >= 1
    got = hf.read_parquet(out).compute()
    pd.testing.assert_frame_equal(sort(got), sort(exp))


def test_peak_memory_per_rank_is_bounded_by_the_chunk(tmp_path):
    """A 200 MB CSV converted in 4 MB chunks on 2 ranks: each rank's peak RSS stays far
    below the file size (a rank that loaded the file would need well over 400 MB)."""
    path = tmp_path / "big.csv"
    rng = np.random.default_rng(1)
    block = "".join(
        f"{i},{rng.integers(0, 10**9)},{rng.random():.6f},name{i % 97},{i % 13}\n" for i in range(20000)
    ).encode()
    with open(path, "wb") as f:
        f.write(b"a,b,c,d,e\n")
        while f.tell() < 200e6:
            f.write(block)
    size_mb = os.path.getsize(path) / 1e6
    script = os.path.join(HERE, "scripts", "convert_report.py")
    proc = run_mpi(
        2,
        [script, str(path), str(tmp_path / "out"), str(4 << 20)],
        env={"HPCFRAME_BLOCK_ROWS": "100000"},
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    peaks = [float(x) for x in re.findall(r"maxrss_mb=(\d+)", proc.stdout)]
    assert len(peaks) == 2
    assert max(peaks) < 300 < size_mb * 2, (peaks, size_mb)  # whole file: > 400 MB
    os.remove(path)


# --------------------------------------------------------------------------- faults, 2 ranks
def _pandas(pattern):
    import glob

    return pd.concat([pd.read_csv(f) for f in sorted(glob.glob(pattern))], ignore_index=True)


def _beside(tmp_path):
    return sorted(n for n in os.listdir(tmp_path))


@pytest.mark.parametrize("stage,rank", [("part", 1), ("leaf-record", 0), ("manifest", 0), ("publish", 0)])
def test_kill_of_one_rank_at_a_stage_then_resume(tmp_path, csvs, stage, rank):
    """SIGKILL of one rank of ``mpiexec -n 2`` at ``stage``: the job ends (no hang), a reader
    sees nothing, and the same command on 2 ranks resumes and equals pandas."""
    pattern, exp = csvs
    out = str(tmp_path / "out")
    args = CONVERT + [pattern, out, "--chunk-bytes", "64KB"]
    proc = run_mpi(
        2,
        args,
        env={
            **SMALL,
            "HPCFRAME_TEST_FAULT": f"{stage}:kill:{rank}:2"
            if stage in ("part", "leaf-record")
            else f"{stage}:kill:{rank}",
        },
    )
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert not os.path.exists(out)
    proc = run_mpi(2, args, env=SMALL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pd.testing.assert_frame_equal(sort(hf.read_parquet(out).compute()), sort(exp))
    assert _beside(tmp_path) == ["out"]  # no lock, staging or old dataset left


def test_kill_while_publishing_an_overwrite_then_resume(tmp_path, csvs):
    """Rank 0 killed between the two renames of an overwrite on 2 ranks: nothing visible
    (never a mix); the same command publishes the new dataset."""
    pattern, exp = csvs
    out = str(tmp_path / "out")
    first = pattern.replace("flights-*", "flights-0*")
    assert run_mpi(2, CONVERT + [first, out], env=SMALL).returncode == 0
    args = CONVERT + [pattern, out, "--overwrite", "--chunk-bytes", "64KB"]
    proc = run_mpi(2, args, env={**SMALL, "HPCFRAME_TEST_FAULT": "publish:kill:0"})
    assert proc.returncode != 0
    assert not os.path.exists(out)
    proc = run_mpi(2, args, env=SMALL)
    assert proc.returncode == 0 and "published" in proc.stdout, proc.stdout + proc.stderr
    pd.testing.assert_frame_equal(sort(hf.read_parquet(out).compute()), sort(exp))
    assert _beside(tmp_path) == ["out"]


def test_disk_full_on_one_rank_names_the_file_then_resume(tmp_path, csvs):
    """An injected ``OSError(ENOSPC)`` on rank 1 while it writes a part: every rank stops
    (exit 1, no hang), the message (printed once) names the part file and says to re-run;
    the re-run resumes."""
    pattern, exp = csvs
    out = str(tmp_path / "out")
    args = CONVERT + [pattern, out, "--chunk-bytes", "64KB"]
    proc = run_mpi(2, args, env={**SMALL, "HPCFRAME_TEST_FAULT": "part:enospc:1:2"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.count("no space left") == 1 and "rank 1" in proc.stderr
    assert re.search(r"\.out\.hpcframe-staging/part-[0-9a-f]+-\d+\.parquet", proc.stderr), proc.stderr
    assert not os.path.exists(out)
    proc = run_mpi(2, args, env=SMALL)
    assert proc.returncode == 0 and "already done" in proc.stdout, proc.stdout + proc.stderr
    pd.testing.assert_frame_equal(sort(hf.read_parquet(out).compute()), sort(exp))


def test_two_parallel_writers_racing_never_mix(tmp_path, csvs):
    """Two ``mpiexec -n 2`` converts of different sources into one folder at the same time:
    one succeeds, the other is refused (exit 2), the folder holds exactly the winner's
    rows."""
    import subprocess
    import sys

    from tests.helpers.mpi import MPIEXEC

    pattern, _ = csvs
    patterns = [pattern, pattern.replace("flights-*", "flights-[01]*")]
    out = str(tmp_path / "out")
    procs = [
        subprocess.Popen(
            [MPIEXEC, "-n", "2", sys.executable, *CONVERT, p, out, "--chunk-bytes", "64KB"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **SMALL},
        )
        for p in patterns
    ]
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], (codes, results)
    winner = codes.index(0)
    err = results[1 - winner][1]
    assert "being written by another" in err or "already holds a dataset" in err, err
    got = hf.read_parquet(out).compute()
    pd.testing.assert_frame_equal(
        sort(got[list(exp_cols(got))]), sort(_pandas(patterns[winner])[list(exp_cols(got))])
    )
    assert _beside(tmp_path) == ["out"]


def exp_cols(df):
    return sorted(df.columns)
