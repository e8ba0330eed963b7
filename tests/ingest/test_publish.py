"""Writes are transactions: a reader never sees a partial dataset, and every interrupted state
(a kill at any stage, a full disk at any stage, a second writer, a planted link) is either
resumed by running the same write again or refused with a message that says what to do.

The faults are real: ``SIGKILL`` of a real ``hpcframe convert`` process at a chosen stage
(``HPCFRAME_TEST_FAULT=stage:kill``, see :func:`hpcframe.io.writers._fault`), the kernel's
ENOSPC from a small tmpfs (where mounting one is allowed), an injected ``OSError(ENOSPC)`` at
each stage (tests named ``injected``), and concurrent processes.
"""

import io
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import hpcframe as hf
from hpcframe.cli import main
from hpcframe.errors import DatasetError
from hpcframe.io.output import write_table
from hpcframe.io.writers import MANIFEST, STAGING
from hpcframe.writing import to_parquet
from tests.helpers.ingest import flights

pytestmark = pytest.mark.timeout(240)
ENV = {"HPCFRAME_BLOCK_ROWS": "1500", "HPCFRAME_DEBUG": ""}
#: Stages of a write, in order (``vds`` only for HDF5). ``part``/``leaf-record`` are hit on
#: the 3rd/2nd time, i.e. in the middle of the data.
STAGES = ["lock", "plan", "part", "leaf-record", "manifest", "vds", "cleanup", "publish", "published"]
NTH = {"part": 3, "leaf-record": 2}


def _source(folder, seed, n=6000):
    os.makedirs(folder, exist_ok=True)
    frames = []
    for i in range(3):
        p = os.path.join(folder, f"f-{i}.csv")
        flights(n // 3, seed=seed * 10 + i).to_csv(p, index=False)
        frames.append(pd.read_csv(p))
    return os.path.join(folder, "f-*.csv"), pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    return _source(str(d / "a"), 1), _source(str(d / "b"), 2, 3000)


@pytest.fixture(autouse=True)
def blocks(monkeypatch):
    """Leaves of at most 1500 rows in this process (and its forked children), as
    ``HPCFRAME_BLOCK_ROWS`` does for the subprocesses."""
    from hpcframe.config import config

    monkeypatch.setattr(config, "block_rows", int(ENV["HPCFRAME_BLOCK_ROWS"]))


class Result:
    def __init__(self, returncode, stdout="", stderr=""):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def convert(src, dst, *args, fault=None, env=None):
    """``hpcframe convert SRC DST ...``: in this process (click's test runner), or, when
    ``fault`` is a ``kill``, in a forked child that really gets SIGKILL at that stage
    (fork, not a new interpreter, to keep the many fault tests fast)."""
    argv = ["convert", src, dst, "--chunk-bytes", "32KB", *args]
    e = {**ENV, "HPCFRAME_TEST_FAULT": fault, **(env or {})}
    if fault and ":kill" in fault:
        ctx = multiprocessing.get_context("fork")

        def child():
            code = 1
            try:
                os.environ.update({k: v for k, v in e.items() if v is not None})
                main.main(argv, standalone_mode=False)
                code = 0
            finally:
                os._exit(code)

        proc = ctx.Process(target=child)
        proc.start()
        proc.join(120)
        if proc.exitcode is None:
            proc.kill()
            pytest.fail(f"{argv} with {fault} did not finish in 120 s")
        return Result(proc.exitcode)
    r = CliRunner().invoke(main, argv, env=e)
    return Result(r.exit_code, r.stdout, r.stderr)


def start(src, dst, *args, fault=None, env=None):
    e = {**os.environ, **ENV, **(env or {})}
    if fault:
        e["HPCFRAME_TEST_FAULT"] = fault
    return subprocess.Popen(
        [sys.executable, "-m", "hpcframe.cli", "convert", src, dst, "--chunk-bytes", "32KB", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=e,
    )


def sort(df):
    cols = sorted(df.columns)
    return df[cols].sort_values(cols, kind="mergesort").reset_index(drop=True)


def read(dst, to):
    if to == "hdf5":
        return hf.read_hdf(dst).compute()
    return hf.read_parquet(dst).compute()


def expected(exp, to):
    return exp.fillna({"Origin": ""}) if to == "hdf5" else exp


def visible(dst, to):
    """What a reader sees at ``dst``: ``None`` (nothing) or the data."""
    try:
        return read(dst, to)
    except FileNotFoundError:
        return None


def assert_clean(tmp, names):
    """Only ``names`` are left in ``tmp``: no lock, staging or old dataset beside them."""
    assert sorted(os.listdir(tmp)) == sorted(names)


def dst_names(to):
    return ["out.h5", "out.h5.d"] if to == "hdf5" else ["out"]


@pytest.mark.parametrize("to", ["parquet", "hdf5"])
@pytest.mark.parametrize("stage", STAGES)
def test_kill_at_every_stage_then_rerun_resumes(tmp_path, sources, to, stage):
    """SIGKILL at ``stage`` of a new write: a reader sees nothing (or, once published, the
    whole dataset); running the same command again finishes it; once more does nothing."""
    if stage == "vds" and to != "hdf5":
        pytest.skip("only HDF5 stages a table file")
    (src, exp), _ = sources
    dst = str(tmp_path / ("out.h5" if to == "hdf5" else "out"))
    nth = NTH.get(stage, 1)
    p = convert(src, dst, "--to", to, fault=f"{stage}:kill::{nth}")
    assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr
    seen = visible(dst, to)
    if stage == "published" and to == "parquet":  # (HDF5: the file dst comes last)
        pd.testing.assert_frame_equal(sort(seen), sort(expected(exp, to)))
    else:
        assert seen is None  # never a partial dataset
    p = convert(src, dst, "--to", to)
    assert p.returncode == 0, p.stdout + p.stderr
    pd.testing.assert_frame_equal(sort(read(dst, to)), sort(expected(exp, to)))
    assert_clean(tmp_path, dst_names(to))
    p = convert(src, dst, "--to", to)
    assert p.returncode == 0 and "nothing to do" in p.stdout and "MB" not in p.stdout, p.stdout


@pytest.mark.parametrize("to", ["parquet", "hdf5"])
@pytest.mark.parametrize("stage", STAGES)
def test_kill_at_every_stage_of_an_overwrite(tmp_path, sources, to, stage):
    """SIGKILL at ``stage`` while replacing dataset A by B: a reader sees all of A, nothing
    (only in the window between the two renames of the publish), or all of B — never a
    mix; re-running the same command (with --overwrite) finishes B."""
    if stage == "vds" and to != "hdf5":
        pytest.skip("only HDF5 stages a table file")
    (src_a, exp_a), (src_b, exp_b) = sources
    dst = str(tmp_path / ("out.h5" if to == "hdf5" else "out"))
    assert convert(src_a, dst, "--to", to).returncode == 0
    p = convert(src_b, dst, "--to", to, "--overwrite", fault=f"{stage}:kill::{NTH.get(stage, 1)}")
    assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr
    seen = visible(dst, to)
    if stage == "publish" or (stage == "published" and to == "hdf5"):
        assert seen is None  # between the renames (HDF5: the file dst comes last)
    elif stage == "published":
        pd.testing.assert_frame_equal(sort(seen), sort(expected(exp_b, to)))
    else:
        pd.testing.assert_frame_equal(sort(seen), sort(expected(exp_a, to)))
    p = convert(src_b, dst, "--to", to, "--overwrite")
    assert p.returncode == 0, p.stdout + p.stderr
    pd.testing.assert_frame_equal(sort(read(dst, to)), sort(expected(exp_b, to)))
    assert_clean(tmp_path, dst_names(to))


def test_a_finished_publish_is_resumed_without_overwrite_only_when_it_was_asked(tmp_path, sources):
    """Killed between the commit and the publish of an overwrite: the same command finishes
    it; without --overwrite the old dataset is kept and the message says what to do."""
    (src_a, exp_a), (src_b, exp_b) = sources
    dst = str(tmp_path / "out")
    assert convert(src_a, dst).returncode == 0
    assert convert(src_b, dst, "--overwrite", fault="cleanup:kill").returncode == -9
    p = convert(src_b, dst)
    assert p.returncode == 2 and "--overwrite" in p.stderr, p.stderr
    pd.testing.assert_frame_equal(sort(read(dst, "parquet")), sort(exp_a))
    p = convert(src_a, dst)  # another write: staging holds B's finished, unpublished write
    assert p.returncode == 2 and "re-run that write to publish it" in p.stderr, p.stderr
    p = convert(src_b, dst, "--overwrite")
    assert p.returncode == 0 and "published" in p.stdout, p.stdout + p.stderr
    pd.testing.assert_frame_equal(sort(read(dst, "parquet")), sort(exp_b))


# --------------------------------------------------------------------------- disk full
DISK_STAGES = ["lock", "plan", "part", "leaf-record", "manifest", "vds", "cleanup", "publish"]


@pytest.mark.parametrize("to", ["parquet", "hdf5"])
@pytest.mark.parametrize("stage", DISK_STAGES)
def test_disk_full_injected_at_every_stage_then_resume(tmp_path, sources, to, stage, monkeypatch):
    """An ``OSError(ENOSPC)`` injected at the write call of ``stage``: exit 1, the message
    names the file and says to re-run; nothing visible; the re-run finishes the write."""
    if stage == "vds" and to != "hdf5":
        pytest.skip("only HDF5 stages a table file")
    (src, exp), _ = sources
    dst = str(tmp_path / ("out.h5" if to == "hdf5" else "out"))
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HPCFRAME_TEST_FAULT", f"{stage}:enospc::{NTH.get(stage, 1)}")
    args = ["convert", (src), dst, "--to", to, "--chunk-bytes", "32KB"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    assert "no space left" in r.output and "re-run" in r.output, r.output
    named = {
        "lock": ".hpcframe-lock",
        "plan": "_hpcframe_plan.json",
        "part": "part-",
        "leaf-record": "leaf-0000",
        "manifest": MANIFEST,
        "vds": "_hpcframe_vds.h5",
        "cleanup": ".hpcframe-staging",
        "publish": dst,
    }
    assert named[stage] in r.output, r.output
    assert visible(dst, to) is None
    monkeypatch.delenv("HPCFRAME_TEST_FAULT")
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(sort(read(dst, to)), sort(expected(exp, to)))
    assert_clean(tmp_path, dst_names(to))
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "nothing to do" in r.output, r.output


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MB tmpfs at ``tmp_path/fs`` (skipped where mounting is not allowed)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    p = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_mount_point_as_the_destination_is_refused_up_front(sources, small_fs):
    """Regression (session 38's failure probes): an empty mount point as the destination
    (a container's bind mount) was staged beside it, on the parent file system, and the
    publish's rename failed with EBUSY on every run, each saying "re-run to resume". It is
    refused before anything is written, with the folder to write into instead."""
    (src, _), _ = sources
    p = convert(src, str(small_fs))
    assert p.returncode != 0
    assert "is a mount point" in p.stderr and os.path.join(str(small_fs), "data") in p.stderr
    assert os.listdir(small_fs) == []
    assert not any(".hpcframe-staging" in n for n in os.listdir(small_fs.parent))
    assert convert(src, os.path.join(str(small_fs), "data")).returncode == 0


@pytest.mark.parametrize("stage", ["plan", "part", "leaf-record", "manifest"])
def test_real_disk_full_at_every_stage_then_resume(tmp_path, sources, small_fs, stage):
    """A real full file system (tmpfs, filled by a file just before ``stage``'s write, so
    that the write gets the kernel's ENOSPC): exit 1 naming the file, nothing visible;
    after freeing space the same command resumes."""
    (src, exp), _ = sources
    dst = str(small_fs / "out")
    filler = str(small_fs / "filler")
    p = convert(
        src,
        dst,
        "--compression",
        "none",
        fault=f"{stage}:fill::{NTH.get(stage, 1)}",
        env={"HPCFRAME_TEST_FILLER": filler},
    )
    assert p.returncode == 1, p.stdout + p.stderr
    assert "no space left" in p.stderr and "re-run" in p.stderr and str(small_fs) in p.stderr
    assert "Traceback" not in p.stderr
    assert visible(dst, "parquet") is None
    os.remove(filler)
    p = convert(src, dst, "--compression", "none")
    assert p.returncode == 0, p.stdout + p.stderr
    pd.testing.assert_frame_equal(sort(read(dst, "parquet")), sort(exp))
    assert_clean(small_fs, ["out"])


def test_real_disk_too_small_names_the_file_then_resume_after_growing(tmp_path, sources, small_fs):
    """The data does not fit the file system: the error names a part file; after the file
    system grows, the same command resumes (the finished parts are kept)."""
    (_, exp), _ = sources
    big = pd.concat([exp] * 40, ignore_index=True)
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(4):
        big.iloc[i::4].to_csv(folder / f"b-{i}.csv", index=False)
    dst = str(small_fs / "out")
    p = convert(str(folder / "b-*.csv"), dst, "--compression", "none")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "no space left" in p.stderr and re.search(r"part-[0-9a-f]+-0", p.stderr), p.stderr
    assert visible(dst, "parquet") is None
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_fs)], check=True)
    p = convert(str(folder / "b-*.csv"), dst, "--compression", "none")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "already done" in p.stdout and "(0 part(s) written" not in p.stdout
    got = read(dst, "parquet")
    assert len(got) == len(big)
    pd.testing.assert_frame_equal(sort(got), sort(big))


def test_write_table_disk_full_names_the_output(small_fs):
    """``write_table`` (spec outputs) on a full file system names the output file and
    leaves nothing behind."""
    import numpy as np

    df = pd.DataFrame({"x": np.random.default_rng(0).random(500_000)})
    out = str(small_fs / "result.parquet")
    with pytest.raises(OSError, match="no space left.*result.parquet"):
        write_table(df, out)
    assert os.listdir(small_fs) == []


# --------------------------------------------------------------------------- two writers
def test_second_writer_is_refused_while_the_first_runs(tmp_path, sources):
    """Two converts of different sources into one folder: the second is refused (exit 2,
    naming the first's pid) while the first holds the lock; the result is exactly the
    first's data."""
    (src_a, exp_a), (src_b, _) = sources
    dst = str(tmp_path / "out")
    lock = tmp_path / ".out.hpcframe-lock"
    first = start(src_a, dst, fault="part:pause", env={"HPCFRAME_TEST_PAUSE": "6"})
    try:
        deadline = time.monotonic() + 60
        while not lock.exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        holder = json.loads(lock.read_text())
        assert holder["pid"] == first.pid
        p = convert(src_b, dst)
        assert p.returncode == 2, p.stdout + p.stderr
        assert f"pid {first.pid}" in p.stderr and "being written by another" in p.stderr
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, err
    pd.testing.assert_frame_equal(sort(read(dst, "parquet")), sort(exp_a))
    assert_clean(tmp_path, ["out"])


@pytest.mark.parametrize("round_", range(3))
def test_two_writers_racing_never_mix(tmp_path, sources, round_):
    """Two converts of different sources started together into one folder: exactly one
    succeeds, the other is refused with a clear message (exit 2), and the folder holds
    exactly the winner's rows."""
    (src_a, exp_a), (src_b, exp_b) = sources
    dst = str(tmp_path / "out")
    procs = [start(src_a, dst), start(src_b, dst)]
    results = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], (codes, results)
    winner = codes.index(0)
    loser_err = results[1 - winner][1]
    assert "being written by another" in loser_err or "already holds a dataset" in loser_err
    pd.testing.assert_frame_equal(sort(read(dst, "parquet")), sort([exp_a, exp_b][winner]))
    assert_clean(tmp_path, ["out"])


def test_stale_lock_of_a_killed_writer_is_cleared_and_a_foreign_one_explained(tmp_path, sources):
    """A lock left by a killed writer on this host is cleared by the next run; a lock from
    another host is refused with the command that clears it."""
    (src, exp), _ = sources
    dst = str(tmp_path / "out")
    lock = tmp_path / ".out.hpcframe-lock"
    assert convert(src, dst, fault="part:kill").returncode == -9
    assert lock.exists()
    p = convert(src, dst)
    assert p.returncode == 0, p.stderr
    assert not lock.exists()
    lock.write_text(
        json.dumps(
            {
                "host": "node-elsewhere",
                "pid": 4242,
                "started": "then",
                "token": "x",
                "command": "hpcframe convert ...",
            }
        )
    )
    p = convert(src, dst, "--overwrite")
    assert p.returncode == 2 and f"rm {lock}" in p.stderr and "node-elsewhere" in p.stderr
    lock.unlink()
    assert convert(src, dst, "--overwrite").returncode == 0
    pd.testing.assert_frame_equal(sort(read(dst, "parquet")), sort(exp))


def test_a_lock_of_a_dead_but_unreaped_or_replaced_holder_is_stale():
    """Regression (session 38's failure probes): after a whole-job kill, a killed rank stays
    a zombie until init reaps it, and ``os.kill(pid, 0)`` succeeds on it: the next write was
    refused as "being written by another hpcframe job". A zombie holder is gone, and so is a
    holder whose pid another process has taken since (its start time differs)."""
    import socket
    import subprocess
    import time

    from hpcframe.io.fs import process_start as _process_start
    from hpcframe.io.writers import _stale

    host = socket.gethostname()
    child = subprocess.Popen(["true"])  # exits at once; not waited for: a zombie
    try:
        deadline = time.monotonic() + 10
        while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert _stale({"host": host, "pid": child.pid})
    finally:
        child.wait()
    init = {"host": host, "pid": 1, "pid_start": _process_start(1)}
    assert not _stale(init)  # alive, and the recorded process
    assert _stale({**init, "pid_start": init["pid_start"] + 1})  # another process with its pid
    assert not _stale({"host": host, "pid": 1})  # a lock of an older version: no start time


def test_a_reader_polling_during_a_write_never_sees_part_of_it(tmp_path, sources):
    """A reader polling the destination while a write (and then an overwrite) runs sees
    either nothing, the old dataset or the new one — never a partial one (a read that
    started on the old dataset may fail with "No such file" once it is replaced)."""
    (src_a, exp_a), (src_b, exp_b) = sources
    dst = str(tmp_path / "out")
    seen = set()
    for src, flags in ((src_a, ()), (src_b, ("--overwrite",))):
        proc = start(src, dst, *flags)
        while proc.poll() is None:
            try:
                n = hf.read_parquet(dst).len().compute()
            except FileNotFoundError:
                n = None
            except DatasetError as exc:  # the old dataset was replaced while being read
                assert "No such file" in str(exc), exc
                n = None
            seen.add(n)
        assert proc.returncode == 0, proc.stderr.read()
    assert seen <= {None, len(exp_a), len(exp_b)}, seen
    pd.testing.assert_frame_equal(sort(read(dst, "parquet")), sort(exp_b))


# --------------------------------------------------------------------------- links
def test_staging_link_is_never_followed(tmp_path, sources):
    """A link planted where the staging folder goes is refused; its target is untouched."""
    (src, exp), _ = sources
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "part-000000.parquet").write_text("precious")
    (tmp_path / ".out.hpcframe-staging").symlink_to(target)
    dst = str(tmp_path / "out")
    p = convert(src, dst)
    assert p.returncode == 1 and "symbolic link" in p.stderr, p.stderr
    assert os.listdir(target) == ["part-000000.parquet"]
    assert (target / "part-000000.parquet").read_text() == "precious"
    assert not os.path.exists(dst)
    (tmp_path / ".out.hpcframe-staging").unlink()
    assert convert(src, dst).returncode == 0
    pd.testing.assert_frame_equal(sort(read(dst, "parquet")), sort(exp))


def test_old_staging_link_inside_the_destination_is_never_followed(tmp_path, sources):
    """``dst/_hpcframe_staging`` as a link (the old layout) is refused, target untouched."""
    (src, _), _ = sources
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / STAGING).symlink_to(target)
    p = convert(src, str(out))
    assert p.returncode == 1 and "symbolic link" in p.stderr, p.stderr
    assert os.listdir(target) == ["keep.txt"]


def test_link_inside_the_staging_folder_is_never_followed(tmp_path, sources):
    """A hive folder in the staging folder replaced by a link (after a failed run) is
    refused when the write resumes; the link's target is untouched."""
    (src, _exp), _ = sources
    dst = str(tmp_path / "out")
    p = convert(src, dst, "--partition-by", "Month", fault="part:kill::3")
    assert p.returncode == -9
    staging = tmp_path / ".out.hpcframe-staging"
    target = tmp_path / "elsewhere"
    target.mkdir()
    for d in staging.glob("Month=*"):
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
        d.symlink_to(target)
    p = convert(src, dst, "--partition-by", "Month")
    assert p.returncode == 1 and "symbolic link" in p.stderr, p.stderr
    assert os.listdir(target) == []


# --------------------------------------------------------------------------- checksums
def _silently_corruptible(path):
    """Flip bytes of the first column chunk, from its end backwards, until one flip leaves a
    file that reads *without* error when checksums are not verified (a silently wrong
    value); return whether verifying the checksums detects that flip."""
    meta = pq.ParquetFile(path).metadata.row_group(0).column(0)
    start = meta.dictionary_page_offset or meta.data_page_offset
    end = start + meta.total_compressed_size
    with open(path, "rb") as f:
        original = f.read()
    for offset in range(end - 1, start, -1):
        data = bytearray(original)
        data[offset] ^= 0x55
        with open(path, "wb") as f:
            f.write(data)
        try:
            silent = pq.read_table(path).equals(pq.read_table(io.BytesIO(original))) is False
        except Exception:  # noqa: BLE001, S112 - a header byte: not a silent corruption
            continue
        if silent:
            try:
                pq.read_table(path, page_checksum_verification=True)
            except OSError as exc:
                assert "CRC" in str(exc) or "checksum" in str(exc).lower(), exc
                return True
            return False
    raise AssertionError(f"no silently corruptible byte found in {path}")


def test_parquet_writers_write_page_checksums(tmp_path, sources):
    """Files from ``to_parquet`` and from ``write_table`` carry page CRCs: a flipped byte in
    a data page is detected by a verifying reader (without CRCs it would read silently)."""
    (src, _), _ = sources
    out = str(tmp_path / "out")
    to_parquet(hf.read_csv(src), out, compression="none")
    with open(os.path.join(out, MANIFEST)) as f:
        manifest = json.load(f)
    a = os.path.join(out, manifest["files"][0]["path"])
    b = write_table(pd.DataFrame({"Flights": range(1000)}), str(tmp_path / "r.parquet"))
    for path in (a, b):
        pq.read_table(path, page_checksum_verification=True)  # intact: fine
        assert _silently_corruptible(path)


# --------------------------------------------------------------------------- destinations
def test_an_empty_destination_folder_is_replaced_by_the_publish(tmp_path, sources):
    """An existing empty folder is a valid destination (the rename replaces it)."""
    (src, exp), _ = sources
    (tmp_path / "out").mkdir()
    p = convert(src, str(tmp_path / "out"))
    assert p.returncode == 0, p.stderr
    pd.testing.assert_frame_equal(sort(read(str(tmp_path / "out"), "parquet")), sort(exp))
    assert_clean(tmp_path, ["out"])


@pytest.mark.parametrize(
    "stage,code,says",
    [
        ("manifest", 2, "holds files that hpcframe did not write"),  # before the commit
        ("cleanup", 1, "was created by someone else"),
    ],
)  # after it: the publish refuses
def test_a_file_appearing_in_the_destination_during_the_write_is_kept(tmp_path, sources, stage, code, says):
    """Someone else creates a file in the (empty) destination while a write is unfinished:
    the write refuses (their file is kept, the finished parts too) and says what to do; once
    the file is moved away, the re-run publishes."""
    (src, exp), _ = sources
    dst = tmp_path / "out"
    dst.mkdir()
    p = convert(src, str(dst), fault=f"{stage}:kill")
    assert p.returncode == -9
    (dst / "theirs.txt").write_text("theirs")
    p = convert(src, str(dst))
    assert p.returncode == code and says in p.stderr, p.stderr
    assert os.listdir(dst) == ["theirs.txt"] and (dst / "theirs.txt").read_text() == "theirs"
    (dst / "theirs.txt").unlink()
    p = convert(src, str(dst))
    assert p.returncode == 0, p.stderr
    pd.testing.assert_frame_equal(sort(read(str(dst), "parquet")), sort(exp))
    assert_clean(tmp_path, ["out"])


def test_a_different_write_into_an_unfinished_one_is_refused(tmp_path, sources):
    """An unfinished write of A blocks a write of B into the same folder (naming A and what
    to do); with --overwrite B discards A's parts and writes B."""
    (src_a, _), (src_b, exp_b) = sources
    dst = str(tmp_path / "out")
    assert convert(src_a, dst, fault="part:kill::3").returncode == -9
    p = convert(src_b, dst)
    assert p.returncode == 2 and "unfinished write of something else" in p.stderr
    assert src_a in p.stderr and "--overwrite" in p.stderr
    p = convert(src_b, dst, "--overwrite")
    assert p.returncode == 0, p.stderr
    pd.testing.assert_frame_equal(sort(read(dst, "parquet")), sort(exp_b))
    assert_clean(tmp_path, ["out"])
