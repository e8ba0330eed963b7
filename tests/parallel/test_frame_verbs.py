"""pandas' column verbs on lazy frames: ``drop``, ``rename``, ``dropna``, ``fillna``,
``astype``, ``pipe`` (and ``Series.rename``), compared with pandas on the nasty dataset
(strings and bools with nulls, categoricals, tz-aware times, decimals, float32, int64 near
2**63, an empty file) after filters, sorts, merges and group-bys; their errors by type and
message. Every query runs on every rank (SPMD), locally and under mpiexec."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hpcframe as hf
from tests.helpers.compare import exact
from tests.helpers.frames import keyed_frames, same, spmd_settings
from tests.helpers.mpi import timeout

pytestmark = timeout(120)

WHEN = pd.Timestamp("2024-01-01 12:00", tz="America/New_York")


def srt(d, by, **kw):
    return d.sort_values(by, kind="stable", **kw)


# each query: (function of a frame, the rows are a filter's: compare with a fresh index)
QUERIES = {
    # drop
    "drop_columns": (lambda d: d.drop(columns=["dec", "tz", "one"]), False),
    "drop_axis1_one_label": (lambda d: d.drop("kb", axis=1), False),
    "drop_axis_columns": (lambda d: d.drop(["kb", "d"], axis="columns"), False),
    "drop_ignore_missing": (lambda d: d.drop(columns=["zz", "cat"], errors="ignore"), False),
    "drop_after_filter": (lambda d: d[d.v > 0].drop(columns=["s", "big"]), True),
    "drop_after_sort": (lambda d: srt(d, "v").drop(columns=["v", "cat"]), False),
    "drop_then_filter_on_kept": (lambda d: d.drop(columns="s").pipe(lambda x: x[x.n > 20]), True),
    # rename
    "rename_nasty_dtypes": (
        lambda d: d.rename(columns={"cat": "c2", "tz": "when", "dec": "money", "kb": "flag"}),
        False,
    ),
    "rename_swap": (lambda d: d.rename(columns={"v": "n", "n": "v"}), False),
    "rename_rotate": (lambda d: d.rename(columns={"v": "n", "n": "big", "big": "v"}), False),
    "rename_callable": (lambda d: d.rename(columns=str.upper), False),
    "rename_mapper_axis1": (lambda d: d.rename({"s": "t"}, axis=1), False),
    "rename_unknown_ignored": (lambda d: d.rename(columns={"zz": "a", "id": "key"}), False),
    "rename_sorted_key": (lambda d: srt(d, "v").rename(columns={"v": "z"}), False),
    "rename_sorted_key_desc_na_first": (
        lambda d: srt(d, ["s", "v"], ascending=[False, True], na_position="first").rename(columns={"s": "t"}),
        False,
    ),
    "rename_sorted_swap": (lambda d: srt(d, "f32").rename(columns={"f32": "v", "v": "f32"}), False),
    "rename_sorted_then_reuse_old_name": (
        lambda d: srt(d, "v").rename(columns={"v": "z"}).pipe(lambda x: x.assign(v=x.n * 2)),
        False,
    ),
    "rename_sorted_then_head": (lambda d: srt(d, ["cat", "id"]).rename(columns={"id": "i"}).head(7), False),
    "rename_then_filter": (lambda d: d.rename(columns={"v": "w"}).pipe(lambda x: x[x.w > 1]), True),
    "rename_then_sort": (lambda d: srt(d.rename(columns={"v": "n", "n": "v"}), "v"), False),
    "rename_twice": (lambda d: d.rename(columns={"v": "a"}).rename(columns={"a": "v", "n": "a"}), False),
    # (a filter after a sort keeps the rows' labels, as pandas)
    "rename_after_sort_filter": (
        lambda d: srt(d, "big").pipe(lambda x: x[x.kb == True]).rename(columns={"big": "b"}),  # noqa: E712
        False,
    ),
    "rename_noop": (lambda d: d.rename(columns={"v": "v"}), False),
    # dropna
    "dropna_any": (lambda d: d.dropna(), True),
    "dropna_subset": (lambda d: d.dropna(subset=["s", "kb"]), True),
    "dropna_subset_one_name": (lambda d: d.dropna(subset="dec"), True),
    "dropna_how_all": (lambda d: d.dropna(how="all", subset=["v", "f32", "dec"]), True),
    "dropna_thresh": (lambda d: d.dropna(thresh=11), True),
    "dropna_thresh_subset": (lambda d: d.dropna(thresh=2, subset=["v", "f32", "s"]), True),
    "dropna_all_of_none": (lambda d: d.dropna(how="all", subset=[]), True),
    "dropna_any_of_none": (lambda d: d.dropna(subset=[]), True),
    "dropna_after_sort": (lambda d: srt(d, "v", na_position="first").dropna(subset=["s"]), False),
    # fillna
    "fillna_dict": (
        lambda d: d.fillna(
            {"v": 0.0, "f32": -1.5, "s": "none", "kb": False, "dec": 0.0, "cat": "hi", "tz": WHEN}
        ),
        False,
    ),
    "fillna_scalar_numeric": (lambda d: d[["id", "v", "f32", "dec", "big", "n"]].fillna(0), False),
    "fillna_scalar_str": (lambda d: d[["s", "one"]].fillna("?"), False),
    "fillna_unknown_keys_ignored": (lambda d: d.fillna({"v": 1.0, "zz": 3}), False),
    "fillna_from_column": (lambda d: d.fillna({"v": d.dec}), False),
    "fillna_reads_before_filling": (lambda d: d.fillna({"v": d.f32, "f32": 0.0}), False),
    "fillna_sorted_key": (lambda d: srt(d, "v", na_position="first").fillna({"v": 100.0}), False),
    "fillna_after_filter": (lambda d: d[d.n > 10].fillna({"s": "x"}), True),
    # astype
    "astype_dict": (
        lambda d: d.astype({"n": "float32", "f32": "float64", "cat": "str", "big": "str"}),
        False,
    ),
    "astype_all_str": (lambda d: d[["id", "s", "n", "cat"]].astype("str"), False),
    "astype_category": (lambda d: d.astype({"one": "category"}), False),
    "astype_sorted_key": (lambda d: srt(d, "n").astype({"n": "float64"}), False),
    "astype_then_filter": (lambda d: d.astype({"n": "float64"}).pipe(lambda x: x[x.n > 20.5]), True),
    # pipe
    "pipe_args": (lambda d: d.pipe(lambda x, c, lo: x[x[c] > lo], "v", lo=3), True),
    "pipe_tuple": (lambda d: d.pipe((lambda lo, data: data[data.n < lo], "data"), 7), True),
    # chains
    "chain": (
        lambda d: (
            d.drop(columns=["one", "d"])
            .rename(columns={"s": "key", "v": "value"})
            .dropna(subset=["key"])
            .fillna({"value": -1.0})
            .astype({"n": "int32"})
        ),
        True,
    ),
}


@pytest.fixture(scope="module")
def nasty_frame(nasty):
    path, ref = nasty
    return hf.read_parquet(path), ref


@pytest.mark.parametrize("name", list(QUERIES))
def test_verbs_as_pandas(nasty_frame, name):
    df, ref = nasty_frame
    q, fresh = QUERIES[name]
    got = q(df).compute()
    same(got, q(ref), msg=name, reset_index=fresh)


def test_verbs_in_one_computation(nasty_frame):
    """Several verbs computed together (one pass), and the empty results of each."""
    df, ref = nasty_frame
    names = list(QUERIES)
    got = hf.compute(*[QUERIES[k][0](df) for k in names])
    for k, res in zip(names, got):
        same(res, QUERIES[k][0](ref), msg=k, reset_index=QUERIES[k][1])
    empty = lambda d: d[d.v > 1e9]  # noqa: E731
    for k in ["drop_columns", "rename_nasty_dtypes", "dropna_subset", "fillna_dict", "astype_dict"]:
        q = QUERIES[k][0]
        res = q(empty(df)).compute()
        exp = q(empty(ref))
        assert len(res) == 0 and list(res.columns) == list(exp.columns), k
        assert res.dtypes.astype(str).tolist() == exp.dtypes.astype(str).tolist(), k


def test_rename_keeps_dtypes_and_schema(nasty_frame):
    df, ref = nasty_frame
    mapping = {"cat": "c2", "tz": "when", "dec": "money", "kb": "flag", "f32": "v", "v": "f32"}
    r = df.rename(columns=mapping)
    exp = ref.rename(columns=mapping)
    assert list(r.columns) == list(exp.columns)
    assert isinstance(r.dtypes["c2"], pd.CategoricalDtype)
    assert str(r.dtypes["when"]) == "datetime64[us, America/New_York]"
    assert r.dtypes["v"] == np.float32 and r.dtypes["money"] == np.float64
    got = r.compute()
    assert isinstance(got["c2"].dtype, pd.CategoricalDtype)
    same(got, exp)


# --------------------------------------------------------------------------------------------
# group-by results and merged frames
# --------------------------------------------------------------------------------------------
def _grouped(d):
    return d.groupby("s").agg(total=("n", "sum"), vmean=("v", "mean"), hi=("big", "max"))


GROUP_QUERIES = {
    "rename_values": lambda g: g.rename(columns={"total": "n", "vmean": "total"}),
    "rename_index_name_untouched": lambda g: g.rename(columns={"s": "x", "hi": "top"}),
    "drop_value": lambda g: g.drop(columns=["vmean"]),
    "fillna_value": lambda g: g.fillna({"vmean": 0.0}),
    "astype_value": lambda g: g.astype({"total": "float64"}),
    "dropna": lambda g: g.dropna(),
    "reset_then_rename_key": lambda g: g.reset_index().rename(columns={"s": "key"}),
    "filter_rename": lambda g: g[g.total > 100].rename(columns={"total": "t"}),
    "rename_then_group_again": lambda g: g.rename(columns={"hi": "k"}).groupby("k").total.sum(),
}


@pytest.mark.parametrize("name", list(GROUP_QUERIES))
def test_group_results(nasty_frame, name):
    df, ref = nasty_frame
    q = GROUP_QUERIES[name]
    same(q(_grouped(df)).compute(), q(_grouped(ref)), msg=name)


def test_as_index_false_group_result(nasty_frame):
    """The keys of ``as_index=False`` are columns: renamed as pandas, kept in key order."""
    df, ref = nasty_frame

    def q(d):
        g = d.groupby("s", as_index=False, dropna=False).agg(total=("n", "sum"))
        return g.rename(columns={"s": "key", "total": "t"}).astype({"t": "float64"})

    same(q(df).compute(), q(ref))


def test_series_rename(nasty_frame):
    df, ref = nasty_frame
    qs = [
        lambda d: d.v.rename("w"),
        lambda d: (d.v * 2).rename("double"),
        lambda d: d.tz.rename(None),
        lambda d: d.groupby("s").n.sum().rename("total"),
        lambda d: d.groupby("s").n.sum().rename("total").pipe(lambda s: s[s > 100]),
        lambda d: d.groupby("cat").v.transform("mean").rename("m"),
    ]
    got = hf.compute(*[q(df) for q in qs])
    for i, (q, res) in enumerate(zip(qs, got)):
        same(res, q(ref), msg=f"series {i}")


@pytest.fixture(scope="module")
def merged(nasty_frame):
    df, ref = nasty_frame

    def q(d):
        right = d.groupby("s").agg(m=("v", "mean")).reset_index()
        return d[["id", "s", "v", "cat"]].merge(right, on="s", how="left")

    return q(df), q(ref)


MERGE_QUERIES = {
    "drop": lambda m: m.drop(columns=["cat"]),
    "rename": lambda m: m.rename(columns={"m": "mean_v", "v": "m"}),
    "rename_then_filter": lambda m: m.rename(columns={"v": "w"}).pipe(lambda x: x[x.w > 0]),
    "dropna": lambda m: m.dropna(subset=["m"]),
    "fillna": lambda m: m.fillna({"m": 0.0, "s": "none"}),
    "astype": lambda m: m.astype({"id": "float64"}),
    "sorted_rename": lambda m: srt(m, "m").rename(columns={"m": "v", "v": "m"}),
}


@pytest.mark.parametrize("name", list(MERGE_QUERIES))
def test_merged_frames(merged, name):
    m, rm = merged
    q = MERGE_QUERIES[name]
    fresh = name in ("dropna", "rename_then_filter")
    same(q(m).compute(), q(rm), msg=name, reset_index=fresh)


def test_more_ranks_than_partitions():
    pdf = pd.DataFrame(
        {
            "a": [2.0, np.nan, 1.0],
            "b": pd.array(["x", None, "y"], dtype="str"),
            "c": pd.Categorical(["lo", None, "hi"]),
        }
    )
    df = hf.from_pandas(pdf, npartitions=1)

    def q(d):
        return srt(d, "a").rename(columns={"a": "b", "b": "a"}).fillna({"b": 0.0}).dropna(subset=["c"])

    same(q(df).compute(), q(pdf))
    exact(df.drop(columns=["a", "b"]).compute(), pdf.drop(columns=["a", "b"]))
    exact(df.astype({"a": "float32"}).compute(), pdf.astype({"a": "float32"}))


# --------------------------------------------------------------------------------------------
# errors, by type and message (raised when the verb is written, on every rank alike)
# --------------------------------------------------------------------------------------------
def test_errors(nasty_frame):
    df, ref = nasty_frame
    with pytest.raises(hf.ColumnNotFoundError, match="'zz' not found in the frame"):
        df.drop(columns=["zz", "v"])
    with pytest.raises(KeyError):  # as pandas
        df.drop(columns="zz")
    with pytest.raises(NotImplementedError, match="no row labels to drop by.*filter"):
        df.drop([0, 1])
    with pytest.raises(NotImplementedError, match="no row labels"):
        df.drop(index=[0])
    with pytest.raises(ValueError, match="Need to specify at least one"):
        df.drop()
    with pytest.raises(ValueError, match="No axis named 2"):
        df.drop("v", axis=2)

    with pytest.raises(NotImplementedError, match=r"rename\(columns=mapper\)"):
        df.rename({"v": "w"})  # pandas: renames the index
    with pytest.raises(NotImplementedError, match="no row labels"):
        df.rename(index={0: 1})
    with pytest.raises(TypeError, match="must pass an index"):
        df.rename()
    with pytest.raises(ValueError, match="unique column names"):
        df.rename(columns={"v": "n"})
    with pytest.raises(hf.ColumnNotFoundError, match="'zz'"):
        df.rename(columns={"zz": "a"}, errors="raise")
    with pytest.raises(TypeError, match="named by strings"):
        df.rename(columns={"v": 1})
    g = df.groupby("s").agg(total=("n", "sum"))
    with pytest.raises(ValueError, match="index"):
        g.rename(columns={"total": "s"})  # pandas allows a column named as the index
    keyed = df.groupby("cat", as_index=False).agg(total=("n", "sum"))
    with pytest.raises(ValueError, match="ordered by the column 'cat'"):
        keyed.astype({"cat": "str"})

    with pytest.raises(NotImplementedError, match="depends on the data"):
        df.dropna(axis=1)
    with pytest.raises(TypeError, match="cannot set both the how and thresh"):
        df.dropna(how="any", thresh=2)
    with pytest.raises(ValueError, match="invalid how option: most"):
        df.dropna(how="most")
    with pytest.raises(KeyError, match="zz"):
        df.dropna(subset=["zz"])

    with pytest.raises(NotImplementedError, match="row order.*transform"):
        df.fillna(method="ffill")
    with pytest.raises(NotImplementedError, match="row order"):
        df.ffill()
    with pytest.raises(ValueError, match="Must specify a fill 'value'"):
        df.fillna()
    with pytest.raises(TypeError, match="'s' \\(str\\)"):
        df.fillna(0)  # pandas 3: object column and a Pandas4Warning
    cats = hf.from_pandas(pd.DataFrame({"c": pd.Categorical(["lo", None], categories=["hi", "lo"])}))
    with pytest.raises(hf.ComputeError, match="new category"):
        cats.fillna("top").compute()  # pandas: TypeError when a value is missing (categories: data's)
    with pytest.raises(TypeError, match="scalar or dict"):
        df.fillna([0])

    with pytest.raises(hf.ColumnNotFoundError, match="'zz'"):
        df.astype({"zz": "int64"})
    with pytest.raises(NotImplementedError, match="block by block"):
        df.astype({"s": "int64"}, errors="ignore")

    with pytest.raises(ValueError, match="data is both the pipe target and a keyword argument"):
        df.pipe((lambda data: data, "data"), data=1)
    with pytest.raises(NotImplementedError, match="index labels"):
        df.v.rename(str.upper)


# --------------------------------------------------------------------------------------------
# random frames, random verb chains
# --------------------------------------------------------------------------------------------
VERBS = {
    "swap": lambda d: d.rename(columns={"i": "v", "v": "i"}),
    "rename_key": lambda d: d.rename(columns={"k": "key"}),
    "drop_i": lambda d: d.drop(columns=["i"], errors="ignore"),
    "dropna": lambda d: d.dropna(),
    "fill": lambda d: d.fillna({"v": 0.5, "k": "z", "key": "z"}),
    "astype": lambda d: d.astype({c: "float64" for c in ("i",) if c in d.columns}),
}


@spmd_settings(max_examples=25)
@given(
    keyed_frames([np.nan, -1.0, 0.0, 2.5]),
    st.sampled_from([None, "k", "v", "i"]),
    st.lists(st.sampled_from(list(VERBS)), min_size=1, max_size=4),
)
def test_random_verb_chains(data, sort_by, verbs):
    pdf, nparts = data
    df = hf.from_pandas(pdf, npartitions=nparts)

    def q(d):
        if sort_by is not None:
            d = srt(d, sort_by)
        for v in verbs:
            d = VERBS[v](d)
        return d

    # a filter renumbers the rows, unless it follows a sort (pandas' labels then)
    fresh = "dropna" in verbs and sort_by is None
    same(q(df).compute(), q(pdf), msg=f"{sort_by} {verbs}", reset_index=fresh)
