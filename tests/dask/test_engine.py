"""The Dask engine (hpcframe.dask_engine) on a LocalCluster of 2 worker processes: results bit
for bit equal to the local engine and to ``mpiexec -n 2``, clear errors (a failing partition,
a stage, a bad engine), ``config.engine``, head(n) reading only what it needs, diagnostics."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers.mpi import UNDER_MPI, needs_mpiexec, run_mpi

pytest.importorskip("distributed")
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(UNDER_MPI, reason="the Dask engine runs without MPI"),
]

N = 6000


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0", silence_logs=50)
    c = Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """6 Parquet files × 4 row groups, floats spanning many magnitudes (so the bracketing of
    sums shows in the last bits), string keys with nulls, ints."""
    rng = np.random.default_rng(15)
    df = pd.DataFrame(
        {
            "k": rng.choice(["a", "b", "c", None], N),
            "i": rng.integers(-1000, 1000, N),
            "x": rng.normal(0, 1, N) * 10.0 ** rng.integers(-8, 9, N),
            "y": rng.random(N),
        }
    )
    path = tmp_path_factory.mktemp("dask") / "data"
    path.mkdir()
    for j in range(6):
        df.iloc[j * 1000 : (j + 1) * 1000].to_parquet(path / f"p{j}.parquet", row_group_size=250)
    return str(path), df


def queries(frame):
    big = frame[frame.y > 0.2]
    return [
        frame.x.sum(),
        frame.x.mean(),
        big.x.var(),
        frame.groupby("k").x.agg(["sum", "mean", "std", "count"]),
        big.groupby(["k", "i"]).y.sum(),
        frame.assign(z=frame.x * frame.y).z.sum(),
        frame.k.value_counts(),
        frame.x.describe(),
        frame.len(),
        frame.head(7),
    ]


def _hex(value):
    """Every float of a result as float.hex (a bit-exact, JSON-able fingerprint)."""
    if isinstance(value, pd.Series):
        value = value.to_frame()
    if isinstance(value, pd.DataFrame):
        cells = value.reset_index().to_numpy(dtype=object).ravel().tolist()
        return [_hex(v) for v in cells]
    if isinstance(value, (float, np.floating)):
        return float(value).hex()
    if isinstance(value, (int, np.integer)):
        return int(value)
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def test_results_identical_to_local_engine(client, data):
    path, df = data
    old = hf.config.block_rows
    hf.config.block_rows = 100  # 24 row groups -> 60 leaves: a deep tree
    try:
        qs = queries(hf.read_parquet(path))
        on_dask = hf.compute(*qs, engine=client)
        local = hf.compute(*qs)
    finally:
        hf.config.block_rows = old
    for a, b in zip(on_dask, local):
        assert _hex(a) == _hex(b)
    assert _hex(on_dask[0]) == _hex(local[0])
    assert on_dask[8] == N
    pd.testing.assert_frame_equal(on_dask[9], df.head(7))
    pd.testing.assert_series_equal(
        on_dask[6].sort_index(), df.k.value_counts().sort_index(), check_names=False
    )


MPI_SCRIPT = """
import json, sys
import hpcframe as hf
sys.path.insert(0, {root!r})
from tests.dask.test_engine import queries, _hex
hf.config.block_rows = 100
res = hf.compute(*queries(hf.read_parquet({path!r})), root=0)
if res[0] is not None:
    with open({out!r}, "w") as fh:
        json.dump([_hex(r) for r in res], fh)
"""


@needs_mpiexec
def test_results_identical_to_mpi_engine(client, data, tmp_path):
    """The same queries under ``mpiexec -n 2`` give the same bits as on Dask."""
    path, _ = data
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = tmp_path / "mpi.json"
    script = tmp_path / "q.py"
    script.write_text(MPI_SCRIPT.format(root=root, path=path, out=str(out)))
    proc = run_mpi(2, [str(script)], timeout=150, env={"PYTHONPATH": root})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mpi = json.loads(out.read_text())
    old = hf.config.block_rows
    hf.config.block_rows = 100
    try:
        on_dask = hf.compute(*queries(hf.read_parquet(path)), engine=client)
    finally:
        hf.config.block_rows = old
    assert [_hex(r) for r in on_dask] == mpi


def test_config_engine_and_local_override(client, data):
    path, df = data
    frame = hf.read_parquet(path)
    hf.config.engine = client
    try:
        got = frame.y.sum().compute()
        assert hf.last_run_stats()["rows_read"] == N
        with pytest.raises(hf.DaskEngineError, match="runs on the local and MPI engines"):
            frame.persist().y.sum().compute()  # persist() itself runs on the local engine
        # engine="local" overrides the setting: stages run there
        assert frame.merge(frame[["i"]].drop_duplicates(), on="i").len().compute(engine="local") == N
    finally:
        hf.config.engine = None
    assert got == frame.y.sum().compute()


def test_stage_query_is_a_clear_error(client, data):
    path, _ = data
    frame = hf.read_parquet(path)
    for q in (
        frame.merge(frame, on="i").len(),
        frame.drop_duplicates("k").len(),
        frame.groupby("k").agg(s=("y", "sum")).s.max(),
    ):
        with pytest.raises(hf.DaskEngineError) as ei:
            q.compute(engine=client)
        text = str(ei.value)
        assert "runs on the local and MPI engines only" in text and "engine='local'" in text
        assert "mpiexec" in text


def test_bad_engine_values(data):
    frame = hf.read_parquet(data[0])
    with pytest.raises(hf.DaskEngineError, match="engine='sparkly' is not known"):
        frame.len().compute(engine="sparkly")
    with pytest.raises(hf.DaskEngineError, match="not int"):
        frame.len().compute(engine=3)
    with pytest.raises(hf.DaskEngineError, match="both comm="):
        frame.len().compute(engine="dask", comm=object())


def test_failing_partition_names_partition_and_worker(client, data):
    frame = hf.read_parquet(data[0])
    with pytest.raises(hf.ComputeError) as ei:
        frame.map_partitions(lambda d: d.assign(q=1 / 0 if d.y.max() > 0.5 else 1)).compute(engine=client)
    text = str(ei.value)
    assert "ZeroDivisionError" in text and "while processing partition" in text
    assert "Dask worker tcp://" in text and ".parquet" in text


def test_missing_file_is_a_dataset_error(client, tmp_path):
    pd.DataFrame({"a": [1.0, 2.0]}).to_parquet(tmp_path / "one.parquet")
    pd.DataFrame({"a": [3.0]}).to_parquet(tmp_path / "two.parquet")
    frame = hf.read_parquet(str(tmp_path))
    frame.a.sum().compute()  # discovered
    (tmp_path / "two.parquet").write_bytes(b"not parquet any more")
    with pytest.raises(hf.ComputeError) as ei:
        frame.a.sum().compute(engine=client)
    assert "two.parquet" in str(ei.value)


def test_head_reads_only_the_first_leaves(client, data):
    path, df = data
    frame = hf.read_parquet(path)
    got = frame.head(10).compute(engine=client)
    pd.testing.assert_frame_equal(got, df.head(10))
    assert hf.last_run_stats()["rows_read"] < N


def test_progress_bar_and_stats(client, data, capsys):
    frame = hf.read_parquet(data[0])
    with hf.ProgressBar():
        frame.x.max().compute(engine=client)
    err = capsys.readouterr()
    assert "100.0%" in err.out + err.err
    stats = hf.last_run_stats()
    assert stats["partitions_read"] == stats["partitions_total"] == 6
    assert stats["rows_read"] == N


def test_engine_dask_starts_a_local_cluster(data, capsys):
    from hpcframe import dask_engine

    try:
        got = hf.read_parquet(data[0]).len().compute(engine="dask")
        assert got == N
        assert "dashboard: http" in capsys.readouterr().out
    finally:
        dask_engine.close_default()


def test_import_stays_light():
    import subprocess

    code = (
        "import sys, hpcframe as hf; hf.config; "
        "print(any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_profiler_records_every_leaf(client, data):
    path, _ = data
    with hf.Profiler() as prof:
        hf.read_parquet(path).x.sum().compute(engine=client)
    res = prof.results
    assert len(res) == 6 and res["rows"].sum() == N
    time_cols = [c for c in res.columns if c in ("start", "read_end", "compute_end", "end")]
    assert time_cols, list(res.columns)
    assert (res[time_cols].to_numpy() > -1).all()  # on the client's clock (its planning began at 0)
    assert (res["end"] >= res["start"]).all()


def test_interrupt_on_the_client_cancels_and_raises_job_interrupted(client, data):
    """Ctrl-C while the client waits (here: raised by a callback as the first leaf is
    reported) cancels the tasks and raises JobInterrupted, as on the other engines."""
    from hpcframe.callbacks import Callback

    class CtrlC(Callback):
        def on_leaf_done(self, run, leaf, times):
            raise KeyboardInterrupt

    with CtrlC(), pytest.raises(hf.JobInterrupted, match="tasks were cancelled"):
        hf.read_parquet(data[0]).x.sum().compute(engine=client)
    assert hf.read_parquet(data[0]).len().compute(engine=client) == N  # the cluster still works
