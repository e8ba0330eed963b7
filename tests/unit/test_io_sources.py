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
