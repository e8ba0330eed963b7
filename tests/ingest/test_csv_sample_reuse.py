"""The type sample of a compressed CSV file and its first read share one decompression: the
stream the sample leaves open is used by the first read (its bytes replayed), unless the file
changed in between. Results are compared with pandas."""

from __future__ import annotations

import os

import pandas as pd

import hpcframe as hf
from tests.helpers.ingest import compress, flights


def _xz(tmp_path, name, df):
    plain = str(tmp_path / name)
    df.to_csv(plain, index=False)
    compress(plain, "xz")
    os.remove(plain)
    return plain + ".xz"


def test_first_read_goes_on_from_the_sample(tmp_path):
    df = flights(30_000, seed=3)  # more rows than the sample: the read crosses its end
    path = _xz(tmp_path, "a.csv", df)
    raw = hf.read_csv(path, sample_rows=1000)
    source = raw._node.source
    assert path in source._kept  # left open by the sample
    pd.testing.assert_frame_equal(raw.compute(), pd.read_csv(path))
    assert source._kept == {}  # used once
    pd.testing.assert_frame_equal(raw.compute(), pd.read_csv(path))  # a second read: a new stream


def test_a_file_changed_after_sampling_is_read_again_from_disk(tmp_path):
    path = _xz(tmp_path, "a.csv", flights(3000, seed=1))
    raw = hf.read_csv(path, sample_rows=100)
    changed = flights(5000, seed=2)
    _xz(tmp_path, "a.csv", changed)
    os.utime(path, ns=(1, 1))  # a different modification time even on a coarse clock
    pd.testing.assert_frame_equal(raw.compute(), pd.read_csv(path))
    assert len(changed) == 5000


def test_sample_is_the_first_lines(tmp_path):
    import lzma

    path = _xz(tmp_path, "a.csv", flights(5000, seed=4))
    source = hf.read_csv(path, sample_rows=777)._node.source
    with lzma.open(path) as f:
        first = b"".join(f.readline() for _ in range(778))
    assert source._sample(path) == first
