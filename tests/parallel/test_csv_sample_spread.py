"""The CSV type sample is read once per job (issue 11, "planning once"): each sample file is
sampled by one rank only — the rank that then reads it, going on from the stream its sample
left open — and the types are exchanged, so every rank gets the schema one process gets.

Observed for real: the calls of ``CSVSource._sample`` and of ``open_decompressed`` (every
decompression of a file from its start) are counted on each rank and gathered. Results and
dtypes are compared with pandas on the same files.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest

import hpcframe as hf
from hpcframe.io import csv as csvmod
from hpcframe.io.csv import SAMPLE_FILES
from hpcframe.io.dataset import DatasetError
from tests.helpers import mpi
from tests.helpers.ingest import compress, flights
from tests.helpers.mpi import timeout

pytestmark = timeout(60)

NFILES = 12  # more files than the sample holds (SAMPLE_FILES)
ROWS = 400
SAMPLE_ROWS = 150  # a part of each file: its read goes on after the sample


def _gathered(comm, value):
    return [value] if comm is None else comm.allgather(value)


def _write(root, frames, comm):
    if mpi.rank() == 0:
        os.makedirs(root, exist_ok=True)
        for i, df in enumerate(frames):
            plain = os.path.join(root, f"m{i:02d}.csv")
            df.to_csv(plain, index=False)
            compress(plain, "xz")
            os.remove(plain)
    if comm is not None:
        comm.Barrier()


@pytest.fixture(scope="module")
def xz_files(shared_dir, comm):
    """:data:`NFILES` ``.xz`` files of :data:`ROWS` rows (one with an empty integer field
    after the sample) and their pandas frame."""
    root = os.path.join(shared_dir, "csv-sample-spread")
    frames = [flights(ROWS, seed=i) for i in range(NFILES)]
    frames[9]["Month"] = frames[9]["Month"].astype("Int64")
    frames[9].loc[ROWS - 3, "Month"] = pd.NA  # an int column with a null, not in any sample
    _write(root, frames, comm)
    files = sorted(os.path.join(root, f) for f in os.listdir(root))
    return root, files, pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


@pytest.fixture
def counted(monkeypatch):
    """``{"sample": {path: n}, "open": {path: n}}``: this process's type samples and
    decompressions from the start of a file."""
    calls: dict[str, dict[str, int]] = {"sample": {}, "open": {}}
    sample, opened = csvmod.CSVSource._sample, csvmod.open_decompressed

    def counting_sample(self, path):
        calls["sample"][path] = calls["sample"].get(path, 0) + 1
        return sample(self, path)

    def counting_open(path, raw=None):
        calls["open"][path] = calls["open"].get(path, 0) + 1
        return opened(path, raw)

    monkeypatch.setattr(csvmod.CSVSource, "_sample", counting_sample)
    monkeypatch.setattr(csvmod, "open_decompressed", counting_open)
    return calls


def _total(per_rank: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for mine in per_rank:
        for path, n in mine.items():
            out[path] = out.get(path, 0) + n
    return out


def test_each_sample_file_is_sampled_and_decompressed_once_per_job(xz_files, comm, size, counted):
    root, files, df = xz_files
    raw = hf.read_csv(os.path.join(root, "*.csv.xz"), sample_rows=SAMPLE_ROWS)
    query = raw[raw.Carrier == "AA"].groupby(["Year", "Month"])[["Flights", "Cancelled"]].sum()
    got = query.compute()
    exp = df[df.Carrier == "AA"].groupby(["Year", "Month"])[["Flights", "Cancelled"]].sum()
    pd.testing.assert_frame_equal(got, exp)  # Month: float64 (a null after the samples), as pandas
    pd.testing.assert_frame_equal(raw.compute(), df)  # every dtype as pandas.read_csv's

    sample_files = raw._node.source.sample_files()  # spread over the dataset, in file order
    assert sample_files == [files[i * NFILES // SAMPLE_FILES] for i in range(SAMPLE_FILES)]
    samples = _total(_gathered(comm, counted["sample"]))
    assert samples == dict.fromkeys(sample_files, 1), f"sampled more than once in the job: {samples}"
    sampled = _gathered(comm, raw._node.source.sampled)
    assert sorted(p for mine in sampled for p in mine) == sample_files
    if size > 1:  # spread: not every file on one rank
        assert sum(1 for mine in sampled if mine) > 1, sampled
    # a fresh frame: its sample and its first computation decompress a sampled file once on
    # the rank that sampled it (the sample's stream goes on into that rank's read), and at
    # most once more on another rank (a file sampled by one rank to balance the sample, read
    # by another); before, every rank decompressed the start of every sample file
    counted["open"].clear()
    counted["sample"].clear()
    raw2 = hf.read_csv(os.path.join(root, "*.csv.xz"), sample_rows=SAMPLE_ROWS)
    pd.testing.assert_series_equal(
        raw2.groupby("Carrier").Flights.sum().compute(), df.groupby("Carrier").Flights.sum()
    )
    opens = _gathered(comm, counted["open"])
    samplers = _gathered(comm, raw2._node.source.sampled)
    for path in sample_files:
        (sampler,) = [r for r, mine in enumerate(samplers) if path in mine]
        assert opens[sampler].get(path) == 1, (path, sampler, opens)
        assert all(mine.get(path, 0) <= 1 for mine in opens), (path, opens)
    opened = _total(opens)
    assert sum(opened.get(p, 0) for p in sample_files) <= len(sample_files) * 3 // 2, opened
    # the spread sample files are each sampled by a rank that reads them: decompressed once
    assert {p: opened[p] for p in sample_files} == dict.fromkeys(sample_files, 1), opened
    # the schema is the same on every rank (and the one pandas' dtypes match)
    assert len(set(map(str, _gathered(comm, raw2._node.source.schema())))) == 1


def test_a_bad_sample_file_fails_on_every_rank(shared_dir, comm):
    """A sample file with a wrong number of fields (sampled by the last rank that samples)
    raises the same DatasetError, naming the file and line, on every rank."""
    root = os.path.join(shared_dir, "csv-sample-spread-bad")
    frames = [flights(60, seed=i) for i in range(NFILES)]
    _write(root, frames, comm)
    bad = os.path.join(root, "m07.csv.xz")
    if mpi.rank() == 0:
        import lzma

        with lzma.open(bad) as f:
            text = f.read().splitlines(keepends=True)
        text[5] = b"1,2,3\n"
        with lzma.open(bad + ".tmp", "wb") as f:
            f.write(b"".join(text))
        os.replace(bad + ".tmp", bad)
    if comm is not None:
        comm.Barrier()
    with pytest.raises(DatasetError) as info:
        hf.read_csv(os.path.join(root, "*.csv.xz"))
    message = str(info.value)
    assert "m07.csv.xz, line 6" in message and "expected" in message
    assert len(set(_gathered(comm, message))) == 1


def test_a_different_header_in_a_sample_file_fails_on_every_rank(shared_dir, comm):
    root = os.path.join(shared_dir, "csv-sample-spread-header")
    frames = [flights(50, seed=i) for i in range(NFILES)]
    frames[6] = frames[6].rename(columns={"Carrier": "Airline"})
    _write(root, frames, comm)
    with pytest.raises(DatasetError) as info:
        hf.read_csv(os.path.join(root, "*.csv.xz"))
    message = str(info.value)
    assert "m06.csv.xz: the header" in message and "Airline" in message
    assert len(set(_gathered(comm, message))) == 1


def _one_xz(shared_dir, comm, name, text: bytes) -> str:
    root = os.path.join(shared_dir, "csv-sample-resume")
    path = os.path.join(root, name)
    if mpi.rank() == 0:
        import lzma

        os.makedirs(root, exist_ok=True)
        with lzma.open(path, "wb") as f:
            f.write(text)
    if comm is not None:
        comm.Barrier()
    return path


@pytest.mark.parametrize(
    "tail",
    [b"", b"\n\n", b"7,8.5,x\n"],
    ids=["sample-is-the-file", "blank-lines-after", "one-row-after"],
)
def test_the_read_goes_on_from_the_parsed_sample(shared_dir, comm, tail):
    """The sample's parsed rows start the first read; what follows is parsed from the open
    stream (nothing, blank lines, one row): the frame is pandas'."""
    text = b"a,b,c\n" + b"".join(b"%d,%d.25,s%d\n" % (i, i, i % 3) for i in range(40)) + tail
    path = _one_xz(shared_dir, comm, f"t{len(tail)}.csv.xz", text)
    raw = hf.read_csv(path, sample_rows=40)
    pd.testing.assert_frame_equal(raw.compute(), pd.read_csv(path))
    assert raw[raw.a > 3].b.sum().compute() == pd.read_csv(path).query("a > 3").b.sum()


def test_a_bad_line_after_the_parsed_sample_names_the_file(shared_dir, comm):
    text = b"a,b\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(30)) + b"1,2,3\n4,5\n"
    path = _one_xz(shared_dir, comm, "bad-after.csv.xz", text)
    with pytest.raises(DatasetError, match=r"bad-after\.csv\.xz.*expected 2 fields, found 3"):
        hf.read_csv(path, sample_rows=10).compute()


def test_a_parsed_sample_of_other_types_is_not_reused(shared_dir, comm):
    """A date column (a string unless parse_dates) and an int column with an empty field
    after the sample: the sample's types are not the read's, the rows are read again."""
    text = b"d,n\n" + b"".join(b"2024-01-%02d,%d\n" % (i % 28 + 1, i) for i in range(30)) + b"2024-02-01,\n"
    path = _one_xz(shared_dir, comm, "dates.csv.xz", text)
    pd.testing.assert_frame_equal(hf.read_csv(path, sample_rows=10).compute(), pd.read_csv(path))
    got = hf.read_csv(path, sample_rows=10, parse_dates=["d"]).compute()
    pd.testing.assert_frame_equal(got, pd.read_csv(path, parse_dates=["d"]), check_dtype=False)
    assert str(got.d.dtype).startswith("datetime64")


def test_a_frame_built_on_one_rank_samples_alone(xz_files, comm):
    """Under MPI ``read_csv`` is collective like ``compute``; ``comm=COMM_SELF`` builds (and
    computes) a frame on one rank only, without waiting for the others."""
    root, files, df = xz_files

    def alone():
        self_comm = None
        if mpi.UNDER_MPI:
            from mpi4py import MPI

            self_comm = MPI.COMM_SELF
        raw = hf.read_csv(os.path.join(root, "*.csv.xz"), sample_rows=SAMPLE_ROWS, comm=self_comm)
        got = raw.groupby("Carrier").Flights.sum().compute(comm=self_comm)
        pd.testing.assert_series_equal(got, df.groupby("Carrier").Flights.sum())
        assert raw._node.source.sampled == raw._node.source.sample_files()

    mpi.on_root(alone)
    if comm is not None:
        comm.Barrier()


def test_convert_on_one_rank_samples_on_its_communicator(comm, tmp_path):
    """``convert(..., comm=COMM_SELF)`` on every rank at once, each rank its own CSV with its
    own columns: the type sample runs on the converting communicator, not on the world
    (there every rank would take the others' samples for its file's schema). Each output
    equals pandas' read of its file."""
    from hpcframe.convert import convert

    rank = 0 if comm is None else comm.Get_rank()
    self_comm = None
    if mpi.UNDER_MPI:
        from mpi4py import MPI

        self_comm = MPI.COMM_SELF
    want = pd.DataFrame({"id": range(50), f"rank{rank}": [f"r{rank}-{i}" for i in range(50)]})
    want[f"x{rank}"] = [i * 0.5 + rank for i in range(50)]
    src = str(tmp_path / f"in-{rank}.csv")
    want.to_csv(src, index=False)
    dst = str(tmp_path / f"out-{rank}")
    convert(src, dst, to="parquet", comm=self_comm)
    got = pd.read_parquet(dst).reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
