"""Parquet page CRC checksums: a page that does not match its checksum is an error naming the
file and row group, on every rank; files and columns that are intact read as pandas does."""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from tests.helpers.compare import assert_same
from tests.helpers.mpi import rank, timeout, world

pytestmark = timeout(60)


def _corrupt_page(path: str, row_group: int, column: int) -> None:
    """Overwrite 8 bytes in the middle of the (single, plain, uncompressed) data page of one
    column chunk, as a disk or a copy might: the file still parses, the values are wrong."""
    chunk = pq.read_metadata(path).row_group(row_group).column(column)
    middle = chunk.data_page_offset + chunk.total_compressed_size // 2
    with open(path, "r+b") as fh:
        fh.seek(middle)
        fh.write(np.array([1e300], "<f8").tobytes())


@pytest.fixture(scope="module")
def crc_data(shared_dir):
    """Three files of 1000 rows in row groups of 250, written with page checksums; in
    ``bad/part1.parquet`` the page of column x in row group 2 is corrupt. ``nocrc/`` holds the
    same corruption in files written without checksums (nothing to verify)."""
    d = os.path.join(shared_dir, "parquet_integrity")
    if rank() == 0:
        for sub, crc in (("good", True), ("bad", True), ("nocrc", False)):
            os.makedirs(os.path.join(d, sub))
            for f in range(3):
                path = os.path.join(d, sub, f"part{f}.parquet")
                n = np.arange(1000) + 1000 * f
                pq.write_table(
                    pa.table({"x": n * 0.5, "y": n}),
                    path,
                    row_group_size=250,
                    compression="NONE",
                    use_dictionary=False,
                    write_page_checksum=crc,
                )
                if sub != "good" and f == 1:
                    _corrupt_page(path, 2, 0)
    if world() is not None:
        world().Barrier()
    return d


def test_intact_files_with_checksums_read_as_pandas(crc_data):
    path = os.path.join(crc_data, "good")
    assert_same(hf.read_parquet(path).compute(), pd.read_parquet(path), exact=True)


@pytest.mark.parametrize(
    "query",
    [
        lambda df: df.compute(),
        lambda df: df.x.sum().compute(),
        lambda df: df.groupby("y").x.mean().compute(root=0),
        lambda df: df[df.y > 1600].x.max().compute(),
    ],
    ids=["compute", "sum", "groupby-root0", "filtered-max"],
)
def test_a_corrupt_page_is_an_error_on_every_rank(crc_data, query):
    df = hf.read_parquet(os.path.join(crc_data, "bad"))
    with pytest.raises(hf.DatasetError, match=r"part1\.parquet, row group 2 is corrupt.*CRC checksum"):
        query(df)


def test_columns_without_a_corrupt_page_still_read(crc_data):
    path = os.path.join(crc_data, "bad")
    assert hf.read_parquet(path).y.sum().compute() == int(np.arange(3000).sum())
    statistics_prune_it = hf.read_parquet(path)
    assert statistics_prune_it[statistics_prune_it.y < 1400].x.sum().compute() == float(
        (np.arange(1400) * 0.5).sum()
    )


def test_files_without_checksums_are_read_unverified(crc_data):
    """Nothing to verify: the corruption is not detectable (as in pandas), but reading works."""
    path = os.path.join(crc_data, "nocrc")
    assert_same(hf.read_parquet(path).compute(), pd.read_parquet(path), exact=True)
