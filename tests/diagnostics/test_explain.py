"""explain(): what it says about row counts and statistics must be true of the source
(CSV: estimated rows, no statistics), and it works for every kind of source."""

from __future__ import annotations

import re

import hpcframe as hf


def _rows_line(text):
    return next(ln for ln in text.splitlines() if ln.startswith("Partitions:"))


def test_explain_of_compressed_csv_labels_estimates_and_claims_no_pruning(csv_dataset):
    """The seed workflow: lazy read_csv over *.csv.xz. Its row counts are estimates and CSV
    has no statistics (explain once said "6,967,128 rows" and "statistics pruning on")."""
    pattern, df = csv_dataset
    frame = hf.read_csv(pattern)
    text = frame[frame.x > 0].groupby("key").y.sum().explain()
    line = _rows_line(text)
    m = re.search(r"~([\d,]+) rows \(estimated", line)
    assert m, line
    assert abs(int(m.group(1).replace(",", "")) - len(df)) <= 0.1 * len(df), line
    assert "statistics pruning on" not in text and "pruned by statistics" not in text, text
    assert "no column statistics" in text and "no statistics to prune with" in line
    assert re.search(r"rank 0: blocks .*~[\d,]+ rows \(estimated\)", text), text
    assert text.splitlines()[1] == f"Scan: csv {pattern}"


def test_explain_of_parquet_keeps_exact_rows_and_statistics_pruning(dataset):
    data, df = dataset
    frame = hf.read_parquet(data)
    text = frame[frame.x > 0].groupby("key").y.sum().explain()
    line = _rows_line(text)
    assert f" {len(df):,} rows in " in line and "~" not in line and "estimated" not in text
    assert "statistics pruning on: (x > 0)" in text and "pruned by statistics" in line


def test_explain_of_hdf5(tmp_path):
    """explain() works on HDF5 (it once raised AttributeError: 'HDF5Source' object has no
    attribute 'label'); rows are exact there and HDF5 has no statistics."""
    import h5py
    import numpy as np

    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("data")
        g.create_dataset("k", data=np.arange(100) % 7, chunks=(10,))
        g.create_dataset("v", data=np.arange(100.0), chunks=(10,))
    frame = hf.read_hdf(str(path), key="data")
    text = frame[frame.v > 50].groupby("k").v.sum().explain()
    assert text.splitlines()[1].startswith("Scan: hdf5 "), text
    assert str(path) in text.splitlines()[1]
    line = _rows_line(text)
    assert " 100 rows in " in line and "~" not in line, line
    assert "statistics pruning on" not in text and "no column statistics" in text


def test_source_format_and_label_of_any_source():
    """Derived from what every source has (its class, its files) when an attribute is
    missing; an attribute that exists wins."""
    from hpcframe.explain import source_format, source_label

    class HDF5Source:  # a source without ``format`` or ``label``
        paths = ("/data/a.h5", "/data/b.h5")

    class Custom:
        pass

    class Labelled:
        format, label = "parquet", "flights/"

    assert source_format(HDF5Source()) == "hdf5"
    assert source_label(HDF5Source()) == "2 files (/data/a.h5, ...)"
    assert source_format(Custom()) == "custom" and source_label(Custom()) == "custom source"
    assert (source_format(Labelled()), source_label(Labelled())) == ("parquet", "flights/")
