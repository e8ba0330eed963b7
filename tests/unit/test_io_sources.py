"""io.sources: the descriptive helpers every source gets, whatever attributes it has."""

from __future__ import annotations

from hpcframe.io.sources import source_label


class _Labelled:
    label = "data/flights/"


class _Files:
    files = ["a.parquet", "b.parquet"]


class _BrokenLabel:
    @property
    def label(self):
        raise RuntimeError("cannot describe")


def test_source_label_prefers_label_then_files():
    assert source_label(_Labelled()) == "data/flights/"
    assert source_label(_Files()) == "2 files (a.parquet, ...)"


def test_source_label_never_raises():
    """It builds error messages while the other ranks wait in an agreement: a source whose
    ``label`` raises is named by its class instead."""
    assert source_label(_BrokenLabel()) == "_BrokenLabel"


def _sources(tmp_path):
    """One source of every kind: Parquet, HDF5, CSV, pandas, and a stage held in memory."""
    import numpy as np
    import pandas as pd

    import hpcframe as hf

    df = pd.DataFrame({"k": ["a", "b", "a", "c"], "x": np.arange(4.0)})
    df.to_parquet(tmp_path / "d.parquet")
    df.to_csv(tmp_path / "d.csv", index=False)
    hf.to_hdf(hf.from_pandas(df), str(tmp_path / "d.h5"))
    frames = [
        hf.read_parquet(str(tmp_path / "d.parquet")),
        hf.read_hdf(str(tmp_path / "d.h5")),
        hf.read_csv(str(tmp_path / "d.csv")),
        hf.from_pandas(df),
    ]
    frames.append(frames[0].groupby("k").agg(s=("x", "sum")))
    frames.append(frames[0].persist())
    return frames


def test_every_source_implements_the_protocol(tmp_path):
    from hpcframe.io.dataset import Source

    for frame in _sources(tmp_path):
        assert isinstance(frame.node.scan().source, Source), type(frame.node.scan().source)


def test_the_engine_sets_no_attribute_on_a_source(tmp_path):
    """Discovered partitions are cached in io.sources (weakly, by source), never on it."""
    for frame in _sources(tmp_path):
        source = frame.node.scan().source
        before = dict(vars(source))
        frame.len().compute()
        frame.explain()
        after = vars(source)
        assert set(after) == set(before), (type(source).__name__, set(after) ^ set(before))


def test_a_parquet_file_replaced_since_it_was_opened_is_read_anew(tmp_path):
    """The Parquet reader keeps a few files open between reads: a file replaced since (written
    to a temporary name and renamed over it, as hpcframe's own writers do) is another inode,
    and must be opened again, not read through the kept handle of the old file."""
    import os

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import hpcframe as hf

    path = tmp_path / "d" / "f.parquet"
    path.parent.mkdir()

    def write(values, target):
        pq.write_table(pa.table({"x": values}), target, compression="none", use_dictionary=False)

    write(np.arange(100.0), path)
    frame = hf.read_parquet(str(path.parent))
    assert frame.x.sum().compute() == 4950.0
    st = os.stat(path)
    write(np.arange(100.0) + 1, tmp_path / "new.parquet")  # the same layout, other values
    os.replace(tmp_path / "new.parquet", path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old times
    assert frame.x.sum().compute() == 5050.0
