"""Group-bys on string keys kept as dictionaries, through every way a block's key arrives:
Parquet dictionary pages (a different dictionary per row group), PLAIN pages (read as strings
and encoded after the read, by bytes when the values have one length), and a categorical
column written by pandas (the same dictionary, with unused entries, in every row group).
Null keys, blocks a filter empties, dropna both ways and sort=False; compared with pandas."""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.compare import assert_same
from tests.helpers.mpi import timeout

pytestmark = timeout(120)

N_FILES, ROWS, ROW_GROUP = 3, 1500, 400


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = ROWS
    fixed = np.array([f"id{i:07d}" for i in range(300)], dtype=object)  # one byte length
    varied = np.array([f"k{i}" * (1 + i % 3) for i in range(60)], dtype=object)
    f = fixed[rng.integers(0, len(fixed), n)]
    v = varied[rng.integers(0, len(varied), n)]
    f[rng.random(n) < 0.03] = None
    v[rng.random(n) < 0.03] = None
    cat = pd.Categorical(
        rng.choice(["red", "green", "blue"], n), categories=["blue", "green", "red", "unused"]
    )
    cat[rng.random(n) < 0.03] = np.nan
    return pd.DataFrame(
        {
            "f": f,
            "v": v,
            "c": cat,
            "t": rng.integers(0, 1000, n).astype("int64"),  # filter column: ascending row groups
            "i": rng.integers(-50, 50, n).astype("int64"),
            "x": rng.normal(size=n),
        }
    )


@pytest.fixture(scope="module")
def dict_data(shared_dir):
    """``{layout: (folder, pandas frame)}``: ``dict`` (dictionary pages), ``plain`` (no
    dictionary for the string keys)."""
    frames = [_frame(i) for i in range(N_FILES)]
    for k, fr in enumerate(frames):  # row groups of file 1 hold t < 500 and t >= 500 apart
        if k == 1:
            frames[k] = fr.sort_values("t", kind="stable").reset_index(drop=True)
    out = {}
    for layout in ("dict", "plain"):
        path = os.path.join(shared_dir, f"dictcat-{layout}")
        if mpi.rank() == 0:
            os.makedirs(path, exist_ok=True)
            for k, fr in enumerate(frames):
                table = pa.Table.from_pandas(fr, preserve_index=False)
                opts = {"use_dictionary": ["c"]} if layout == "plain" else {}
                pq.write_table(
                    table, os.path.join(path, f"part-{k}.parquet"), row_group_size=ROW_GROUP, **opts
                )
        mpi.barrier()
        out[layout] = (path, pd.concat(frames, ignore_index=True))
    return out


AGGS = {
    "q3": lambda g: g.agg(i=("i", "sum"), x=("x", "mean")),
    "q7": lambda g: g.agg(hi=("i", "max"), lo=("i", "min"), n=("i", "size")),
    "var": lambda g: g.agg(s=("x", "std"), n=("x", "count"), first=("i", "first")),
}


@pytest.mark.parametrize("layout", ["dict", "plain"])
@pytest.mark.parametrize("keys", [["f"], ["v"], ["c"], ["f", "v"], ["c", "i"]], ids="_".join)
@pytest.mark.parametrize("dropna", [True, False])
@pytest.mark.parametrize("sort", [True, False])
def test_string_keys_equal_pandas(dict_data, layout, keys, dropna, sort):
    path, ref = dict_data[layout]
    df = hf.read_parquet(path)
    names = list(AGGS)
    got = hf.compute(*[AGGS[a](df.groupby(keys, dropna=dropna, sort=sort)) for a in names])
    for name, result in zip(names, got):
        expected = AGGS[name](ref.groupby(keys, dropna=dropna, sort=sort, observed=True))
        assert_same(result, expected, exact=name == "q7", msg=f"{name} by {keys} {layout} dropna={dropna}")


@pytest.mark.parametrize("layout", ["dict", "plain"])
@pytest.mark.parametrize("dropna", [True, False])
def test_filter_empties_blocks(dict_data, layout, dropna):
    """Row groups no row of which passes (and some with few rows) between others."""
    path, ref = dict_data[layout]
    df = hf.read_parquet(path)
    for cut in (990, 500):
        got = df[df.t > cut].groupby(["f"], dropna=dropna).agg(i=("i", "sum"), x=("x", "mean"))
        sub = ref[ref.t > cut]
        expected = sub.groupby(["f"], dropna=dropna).agg(i=("i", "sum"), x=("x", "mean"))
        assert_same(got, expected, msg=f"t > {cut} {layout} dropna={dropna}")


def test_plain_pages_are_read_as_strings(dict_data):
    """The string keys of the ``plain`` layout have no dictionary pages: read as strings;
    the small dictionaries of the ``dict`` layout are read as dictionaries."""
    from hpcframe.io.parquet import _plain_strings

    path, _ = dict_data["plain"]
    meta = pq.read_metadata(os.path.join(path, "part-0.parquet"))
    assert _plain_strings(meta, ["f", "v", "c"]) == {"f", "v"}
    path, _ = dict_data["dict"]
    meta = pq.read_metadata(os.path.join(path, "part-0.parquet"))
    # (a dictionary as large as the row group may count as plain: either read is correct)
    assert _plain_strings(meta, ["f", "v", "c"]) <= {"f"}


def test_float_results_identical_on_any_rank_count(dict_data):
    """Float aggregates through coded keys are the same bits on every rank count: the result
    of all ranks equals the one-process (serial communicator) result on each rank."""
    from hpcframe.comm import Comm

    path, _ = dict_data["dict"]
    q = hf.read_parquet(path).groupby(["f", "v"], dropna=False).agg(x=("x", "mean"), s=("x", "std"))
    pd.testing.assert_frame_equal(q.compute(), q.compute(comm=Comm()), check_exact=True)


@pytest.mark.parametrize("dropna", [True, False])
def test_shuffled_groups_of_other_categories_in_every_file(mixed_categories, cfg, dropna):
    """A group-by finished by the hash shuffle on several ranks: every rank's groups have the
    categories of its own rows, and the tables stacked were ``str`` for a categorical value
    (``first``/``last`` of a dictionary column whose files have other category lists).
    ``sort=False``: sorted categorical groups follow their values here (user guide)."""
    cfg(shuffle="shuffle")
    path, ref = mixed_categories
    df = hf.read_parquet(path)
    spec = dict(first=("c", "first"), last=("c", "last"), x=("x", "sum"), n=("i", "size"))
    for keys in (["k"], ["i"], ["k", "i"]):
        got = df.groupby(keys, dropna=dropna, sort=False).agg(**spec).compute()
        expected = ref.groupby(keys, dropna=dropna, sort=False).agg(**spec)
        assert_same(got, expected, msg=f"by {keys} dropna={dropna}")


@pytest.mark.parametrize("as_index", [False, True])
def test_group_result_as_a_frame_keeps_categorical_keys(mixed_categories, as_index):
    """A group result used as a frame (filtered, a column selected, reset_index) keeps its
    categorical key categorical, with the categories of the collected result (the observed
    values sorted, see the user guide), instead of ``str`` (a regression: the stage's
    combine made the keys strings). Values and rows as pandas."""
    path, ref = mixed_categories
    df = hf.read_parquet(path)
    g = df.groupby(["k", "i"], as_index=as_index).agg(x=("x", "sum"), n=("i", "size"))
    r = ref.groupby(["k", "i"], as_index=as_index, observed=True).agg(x=("x", "sum"), n=("i", "size"))
    if as_index:
        g, r = g.reset_index(), r.reset_index()
    whole = g.compute()
    cats = pd.CategoricalDtype(sorted(ref.k.dropna().unique()))
    assert whole.k.dtype == cats
    # the groups in the order of the observed values (pandas: the categories' order)
    r = r.astype({"k": cats}).sort_values(["k", "i"], kind="stable").reset_index(drop=True)
    assert_same(whole, r, msg="whole")
    got = hf.compute(g[g.n > 1], g[["k", "x"]], g[g.k.isin(["ab", "lo"])])
    exp = [whole[whole.n > 1], whole[["k", "x"]], whole[whole.k.isin(["ab", "lo"])]]
    for i, (h, e) in enumerate(zip(got, exp)):
        assert h.k.dtype == cats, (i, h.k.dtype)
        assert_same(h, e.reset_index(drop=True), msg=f"case {i}")
