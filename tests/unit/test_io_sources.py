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
