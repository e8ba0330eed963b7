"""Read-ahead (issue 11): a rank reads its next block in a background thread while it computes
the current one (``hf.config.readahead``). Results, errors and what is read must be the same
with it on and off, on any number of ranks.

The data are real CSV files (xz, gzip, plain; several row chunks per compressed file, so one
file's stream is continued from block to block) and the Parquet data set of the suite;
results are compared with pandas and between the two settings. Which thread read a block is
observed by wrapping the source's ``read`` (the read itself is the real one).
"""

from __future__ import annotations

import os
import threading

import pandas as pd
import pytest

import hpcframe as hf
from hpcframe.io.csv import CSVSource
from tests.helpers import mpi
from tests.helpers.ingest import compress, flights
from tests.helpers.mpi import allgather, timeout
from tests.parallel.conftest import DASK_ENGINE

pytestmark = [
    timeout(90),
    pytest.mark.skipif(DASK_ENGINE, reason="read-ahead is part of the local and MPI engines"),
]

#: file -> (rows, compression): more rows than ``block_rows`` (500 in tests/parallel), so the
#: compressed files are read in several row chunks from one stream, the plain ones in ranges
GOOD = {
    "g01.csv.xz": (1300, "xz"),
    "g02.csv.gz": (700, "gz"),
    "g03.csv": (900, None),
    "g04.csv.xz": (400, "xz"),
    "g05.csv.xz": (1100, "xz"),
    "g06.csv": (600, None),
}
#: one block per file; b03 holds a value that does not fit its column (after the sample)
BAD = [f"b{i:02d}.csv.xz" for i in range(6)]
BAD_FILE, BAD_ROW = 3, 250  # data row (0-based) of the bad value in BAD[BAD_FILE]
SAMPLE_ROWS = 100


def _write(root, name, df, kind):
    plain = os.path.join(root, name.split(".csv")[0] + ".csv")
    df.to_csv(plain, index=False)
    if kind:
        compress(plain, kind)
        os.remove(plain)


@pytest.fixture(scope="module")
def csv_dirs(shared_dir, comm):
    """``(good folder, its pandas frame, bad folder)``, written by rank 0."""
    good = os.path.join(shared_dir, "readahead-good")
    bad = os.path.join(shared_dir, "readahead-bad")
    frames = [flights(rows, seed=i) for i, (rows, _) in enumerate(GOOD.values())]
    if mpi.rank() == 0:
        os.makedirs(good, exist_ok=True)
        os.makedirs(bad, exist_ok=True)
        for (name, (_, kind)), df in zip(GOOD.items(), frames):
            _write(good, name, df, kind)
        for i, name in enumerate(BAD):
            df = flights(300, seed=10 + i, year=2000 + i).astype({"Flights": object})
            if i == BAD_FILE:
                df.loc[BAD_ROW, "Flights"] = "many"
            _write(bad, name, df, "xz")
    if comm is not None:
        comm.Barrier()
    return good, pd.concat(frames, ignore_index=True), bad


@pytest.fixture
def readahead(monkeypatch):
    """Set ``hf.config.readahead`` for one test."""

    def set_(mode):
        monkeypatch.setattr(hf.config, "readahead", mode)

    return set_


class _Names(list):
    def __init__(self):
        super().__init__()
        self.files: dict[str, set] = {}

    def clear(self):
        super().clear()
        self.files.clear()


@pytest.fixture
def reader_threads(monkeypatch):
    """The names of the threads that read blocks of CSV files (this rank), in order; and
    ``names.files``: ``{file name: threads that read a block of it}``."""
    names = _Names()
    real = CSVSource.read

    def read(self, part, columns):
        name = threading.current_thread().name
        names.append(name)
        names.files.setdefault(os.path.basename(part.path), set()).add(name)
        return real(self, part, columns)

    monkeypatch.setattr(CSVSource, "read", read)
    return names


def _query(path):
    raw = hf.read_csv(path)
    return raw[raw.Carrier != "WN"].groupby(["Carrier", "Month"])[["Flights", "Cancelled"]].sum()


def test_results_are_identical_on_and_off(csv_dirs, readahead, reader_threads):
    good, df, _ = csv_dirs
    got = {}
    for mode in ("on", "off"):
        readahead(mode)
        reader_threads.clear()
        got[mode] = (_query(good).compute(), hf.read_csv(good).Cancelled.sum().compute())
        assert hf.last_run_stats()["rows_read"] == allgather(hf.last_run_stats()["rows_read"])[mpi.rank()]
        if mode == "on" and len(reader_threads) > 1:  # read ahead: not all in this thread
            assert any(n.startswith("hpcframe-readahead") for n in reader_threads), reader_threads
        if mode == "off":
            assert set(reader_threads) <= {threading.main_thread().name}, reader_threads
    pd.testing.assert_frame_equal(got["on"][0], got["off"][0], check_exact=True)
    assert got["on"][1] == got["off"][1]  # bit for bit
    exp = df[df.Carrier != "WN"].groupby(["Carrier", "Month"])[["Flights", "Cancelled"]].sum()
    pd.testing.assert_frame_equal(got["on"][0], exp, check_exact=False, rtol=1e-12)


def test_parquet_results_are_identical_on_and_off(dir6, readahead):
    got = {}
    for mode in ("on", "off"):
        readahead(mode)
        frame = dir6.open()
        got[mode] = frame.groupby("ki")[["x", "n"]].sum().compute()
    pd.testing.assert_frame_equal(got["on"], got["off"], check_exact=True)


def test_persisted_rows_are_identical_on_and_off(csv_dirs, readahead):
    good, df, _ = csv_dirs
    got = {}
    for mode in ("on", "off"):
        readahead(mode)
        kept = hf.read_csv(good).persist()
        try:
            got[mode] = kept.groupby("FlightDate").Flights.sum().compute()
        finally:
            kept.unpersist()
    pd.testing.assert_series_equal(got["on"], got["off"], check_exact=True)


def _error(path, mode, readahead, fn=None):
    readahead(mode)
    raw = hf.read_csv(path, sample_rows=SAMPLE_ROWS)
    query = raw.map_partitions(fn) if fn is not None else raw.groupby("Year").Flights.sum()
    with pytest.raises(hf.ComputeError) as ei:
        query.compute()
    return ei.value


def test_a_read_error_ahead_is_raised_at_its_own_block(csv_dirs, readahead, reader_threads):
    """b03's bad value is met while b02 is computed (read ahead): it is reported for b03, as
    without read-ahead (same message, every rank), and the next query works."""
    _, _, bad = csv_dirs
    on = _error(bad, "on", readahead)
    if mpi.size() == 1:  # the bad block was read in the background thread
        assert all(n.startswith("hpcframe-readahead") for n in reader_threads.files[BAD[BAD_FILE]])
    off = _error(bad, "off", readahead)
    assert str(on) == str(off)
    msg = str(on)
    assert BAD[BAD_FILE] in msg, msg
    assert f"line {BAD_ROW + 2}" in msg and "'many'" in msg and "'Flights'" in msg, msg
    assert [f[2] for f in on.failures] == [f[2] for f in off.failures]
    assert all(BAD[BAD_FILE] in f[2] for f in on.failures), on.failures  # the block, not b02
    assert allgather(msg) == [msg] * mpi.size()
    readahead("on")
    got = hf.read_csv(bad, sample_rows=SAMPLE_ROWS, usecols=["Year", "Month"]).Month.sum().compute()
    assert got == sum(flights(300, seed=10 + i, year=2000 + i).Month.sum() for i in range(len(BAD)))


def test_a_failing_block_hides_the_read_error_of_the_next_one(csv_dirs, readahead):
    """b02's user function fails while b03 (unreadable) is read ahead: b02's error is the one
    reported (b03 is never reached without read-ahead either)."""
    _, _, bad = csv_dirs

    def fn(part):
        if (part["Year"] == 2000 + BAD_FILE - 1).any():
            raise ValueError("boom in the block before the bad one")
        return part[["Month"]]

    on, off = (_error(bad, mode, readahead, fn) for mode in ("on", "off"))
    if mpi.size() == 1:  # one rank reads them all: it stops at b02, with or without
        assert str(on) == str(off)
        assert "boom in the block before the bad one" in str(on)
        assert "'many'" not in str(on), str(on)
        assert [BAD[BAD_FILE - 1] in f[2] for f in on.failures] == [True]
        return
    # b02 and b03 are on different ranks: each may fail first (and stop the other with a
    # notice); every failure reported is one of the two, each at its own block
    for err in (on, off):
        assert err.failures, str(err)
        for _, _, where, message, *_ in err.failures:
            if BAD[BAD_FILE - 1] in where:
                assert "boom in the block before the bad one" in message, str(err)
            else:
                assert BAD[BAD_FILE] in where and "'many'" in message, str(err)
        assert allgather(str(err)) == [str(err)] * mpi.size()


def test_head_and_cache_read_nothing_ahead(csv_dirs, readahead, reader_threads):
    """head(n) may stop before the next block, and a cached block is not read: both read in
    this thread only, exactly the blocks they read without read-ahead."""
    good, df, _ = csv_dirs
    readahead("on")
    got = {}
    for mode in ("on", "off"):
        readahead(mode)
        reader_threads.clear()
        got[mode] = (
            hf.read_csv(good).head(10).compute(),
            hf.last_run_stats()["partitions_read"],
            list(reader_threads),
        )
    pd.testing.assert_frame_equal(got["on"][0], got["off"][0])
    assert got["on"][1:] == got["off"][1:]
    readahead("on")
    with hf.Cache("64MB"):
        first = _query(good).compute()
        reader_threads.clear()
        again = _query(good).compute()
    assert set(reader_threads) <= {threading.main_thread().name}, reader_threads
    pd.testing.assert_frame_equal(first, again, check_exact=True)


def test_the_setting_is_checked():
    import subprocess
    import sys

    env = dict(os.environ, HPCFRAME_READAHEAD="sometimes")
    for k in mpi.MPI_ENV:
        env.pop(k, None)
    out = subprocess.run(
        [sys.executable, "-c", "import hpcframe"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert "HPCFRAME_READAHEAD='sometimes' must be one of auto, on, off" in out.stderr


_CHILD = """
import sys, time, hpcframe as hf
from hpcframe import execute
from hpcframe.callbacks import Callback
hf.config.readahead = "on"
path = sys.argv[1]

def total():
    raw = hf.read_csv(path)
    return raw.groupby("Carrier").Flights.sum().compute()

class WaitForCtrlC(Callback):
    # after the first block is computed, while the next one is read ahead
    def on_leaf_done(self, run, leaf, times):
        print("started", len(execute._IN_FLIGHT), flush=True)
        time.sleep(60)

expected = total()
try:
    with WaitForCtrlC():
        total()
except (KeyboardInterrupt, hf.ComputeError) as exc:
    print("interrupted", type(exc).__name__, flush=True)
# nothing is left reading: the next computation is the same
assert total().equals(expected)
print("ok", flush=True)
"""


@pytest.mark.skipif(mpi.UNDER_MPI, reason="one process, interrupted from outside")
def test_ctrl_c_while_reading_ahead_stops_and_the_next_query_works(csv_dirs):
    """A SIGINT from outside while a block is read ahead in the background: the computation
    stops with :class:`~hpcframe.JobInterrupted`, the read in flight is settled, and the
    next computation reads the same files to the same result. The SIGINT arrives at a known
    point of the computation (a diagnostics callback after the first block waits for it):
    a SIGINT between computations may land in pandas or NumPy code that swallows the
    ``KeyboardInterrupt`` (NumPy's ctypes check), which no engine can answer for."""
    import signal
    import subprocess
    import sys

    good, _, _ = csv_dirs
    repo = os.path.dirname(os.path.dirname(os.path.abspath(hf.__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, good],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        started = child.stdout.readline().split()
        assert started[:1] == ["started"], (started, child.stderr.read() if child.poll() else "")
        assert int(started[1]) >= 1  # a read ahead was started and not yet taken
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert out.split("\n")[:2] == ["interrupted JobInterrupted", "ok"], (out, err)


def test_type_sample_errors_are_raised_in_file_order(shared_dir, comm, readahead):
    """The type sample's files are read two at a time: the error raised is still the first
    file's in order (a header that differs), not a later broken file's, as when read one by one."""
    root = os.path.join(shared_dir, "readahead-sample")
    if mpi.rank() == 0:
        os.makedirs(root, exist_ok=True)
        _write(root, "s00.csv.xz", flights(200, seed=1), "xz")
        _write(root, "s01.csv.xz", flights(200, seed=2).assign(Extra=1), "xz")
        with open(os.path.join(root, "s02.csv.xz"), "wb") as f:
            f.write(b"\xfd7zXZ\x00 not really xz" * 100)
    if comm is not None:
        comm.Barrier()
    messages = {}
    for mode in ("on", "off"):
        readahead(mode)
        with pytest.raises(hf.DatasetError) as ei:
            hf.read_csv(root)
        messages[mode] = str(ei.value)
    assert messages["on"] == messages["off"]
    assert "s01.csv.xz" in messages["on"] and "header" in messages["on"], messages["on"]
