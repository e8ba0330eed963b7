"""Read-ahead and type-sample threads in a forked child (regression: the CI run of stop 21
hung in ``tests/ingest/test_publish.py``, whose fault tests fork the pytest process).

The pools of background threads are per process: a child forked after the parent read ahead
inherits the pool objects but none of their threads, so work submitted there would never run.
The child must make its own threads and finish the same query."""

from __future__ import annotations

import multiprocessing
import os

import pandas as pd
import pytest

import hpcframe as hf


@pytest.fixture
def csv_dir(tmp_path):
    for i in range(3):
        pd.DataFrame({"k": [i % 2, 1, 0] * 50, "v": range(i, i + 150)}).to_csv(
            tmp_path / f"p{i}.csv", index=False
        )
    return str(tmp_path)


def _query(folder):
    f = hf.read_csv(folder)
    return f.groupby("k").v.sum().compute()


def test_a_forked_child_reads_ahead_with_its_own_threads(csv_dir, monkeypatch):
    monkeypatch.setattr(hf.config, "readahead", "on")
    expected = _query(csv_dir)  # the parent's pools now exist, with their threads
    ctx = multiprocessing.get_context("fork")

    def child():
        code = 1
        try:
            got = _query(csv_dir)
            code = 0 if got.equals(expected) else 2
        finally:
            os._exit(code)

    proc = ctx.Process(target=child)
    proc.start()
    proc.join(60)
    if proc.exitcode is None:
        proc.kill()
        pytest.fail("the forked child hung in a read-ahead or type-sample pool of its parent")
    assert proc.exitcode == 0
