"""CSV planning is done once per job (issue 11): each file is described (header check and
decompressed size) by one rank only, the descriptors are exchanged, and the row estimates of
compressed files are estimates of their rows, not chunk capacities.

The observable is real: :attr:`CSVSource.examined` is what each process did while planning,
gathered over the ranks here. Results are compared with pandas on the same files.
"""

from __future__ import annotations

import os
import re

import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.ingest import compress, flights
from tests.helpers.mpi import timeout

pytestmark = timeout(60)

#: file name -> (rows, compression): every way a CSV file's size is found while planning
FILES = {
    "m01.csv.xz": (1500, "xz"),
    "m02.csv.xz": (2300, "xz"),
    "m03.csv.xz": (900, "xz"),
    "m04.csv.gz": (1700, "gz"),
    "m05.csv.gz": (1100, "gz"),
    "m06.csv.bz2": (1300, "bz2"),
    "m07.csv": (800, None),
}
HOW = {"xz": "xz index", "gz": "gzip trailer", None: "plain"}


@pytest.fixture(scope="module")
def csv_files(shared_dir, comm):
    """The files of :data:`FILES` in one folder (written by rank 0) and their pandas frame."""
    root = os.path.join(shared_dir, "csv-planning")
    frames = [flights(rows, seed=i) for i, (rows, _) in enumerate(FILES.values())]
    if mpi.rank() == 0:
        os.makedirs(root, exist_ok=True)
        for (name, (_, kind)), df in zip(FILES.items(), frames):
            plain = os.path.join(root, name.split(".csv")[0] + ".csv")
            df.to_csv(plain, index=False)
            if kind:
                compress(plain, kind)
                os.remove(plain)
    if comm is not None:
        comm.Barrier()
    return root, pd.concat(frames, ignore_index=True)


def _gathered(comm, value):
    return [value] if comm is None else comm.allgather(value)


def test_every_file_is_planned_by_one_rank_only(csv_files, comm, size):
    root, df = csv_files
    raw = hf.read_csv(root)
    query = raw[raw.Carrier == "AA"].groupby("Month")[["Flights", "Cancelled"]].sum()
    got = query.compute()
    exp = df[df.Carrier == "AA"].groupby("Month")[["Flights", "Cancelled"]].sum()
    pd.testing.assert_frame_equal(got, exp, check_exact=False, rtol=1e-12)

    examined = _gathered(comm, raw._node.source.examined)
    seen: dict[str, list[int]] = {}
    for rank, mine in enumerate(examined):
        for path in mine:
            seen.setdefault(os.path.basename(path), []).append(rank)
    assert sorted(seen) == sorted(FILES), seen
    assert all(len(ranks) == 1 for ranks in seen.values()), f"files planned on several ranks: {seen}"
    if size > 1:  # spread over the ranks, not all on one
        assert len({r for ranks in seen.values() for r in ranks}) == min(size, len(FILES)), seen
    how = {os.path.basename(p): h for mine in examined for p, h in mine.items()}
    for name, (_, kind) in FILES.items():
        if kind == "bz2":  # no size in the file: measured on its first bytes
            assert re.fullmatch(r"probe \d+ bytes", how[name]), how
        else:  # no decompression while planning
            assert how[name] == HOW[kind], how

    # a second computation on the same frame plans nothing again
    before = dict(raw._node.source.examined)
    raw.Flights.sum().compute()
    assert raw._node.source.examined == before


def test_explain_estimates_rows_of_compressed_files(csv_files):
    """explain()'s row estimate is within 10% of the truth (it once reported the chunk
    capacity: 6,967,128 rows for the 336,776-row seed data), the same on every rank."""
    root, df = csv_files
    text = hf.read_csv(root).groupby("Month").Flights.sum().explain()
    line = next(ln for ln in text.splitlines() if ln.startswith("Partitions:"))
    m = re.search(r"~([\d,]+) rows \(estimated", line)
    assert m, line
    estimate = int(m.group(1).replace(",", ""))
    assert abs(estimate - len(df)) <= 0.1 * len(df), (estimate, len(df))
    assert len(set(_gathered(mpi.world(), estimate))) == 1


@pytest.mark.parametrize("chunk_bytes", [None, 1024])
def test_head_of_a_split_csv_file_reads_by_rows_not_by_estimates(shared_dir, chunk_bytes, monkeypatch):
    """Regression (session 38's randomized CSV runs): ``head(n)`` cut a leaf's byte ranges at
    n rows by their row *estimates* (from the sampled rows, here shorter than the later ones),
    so it returned too few rows, or rows with a gap. Byte ranges are read whole now; the
    rows produced (exact) decide when to stop."""
    monkeypatch.setattr(hf.config, "block_rows", 1 << 20)  # (the folder's fixture makes 500)
    path = os.path.join(shared_dir, "head-estimates.csv")
    if mpi.rank() == 0:
        with open(path, "w") as fh:
            fh.write("id,x\n" + "".join(f"{i},{i * 0.25}\n" for i in range(3000)))
    mpi.barrier()
    want = pd.read_csv(path)
    frame = hf.read_csv(path, sample_rows=10, chunk_bytes=chunk_bytes)
    pd.testing.assert_frame_equal(frame.head(1234).compute(), want.head(1234))
    pd.testing.assert_series_equal(frame.id.head(1234).compute(), want.id.head(1234))
