"""Adversarial review of the caches (issue 14): a cached run must never answer differently
from an uncached one.

The worst bug a cache can have is a stale or foreign entry served as if it were right. Each
test runs queries that differ from each other in one small thing (a literal's type, a
group-by option, a read option, the dataset root, a user function...) one after the other
through the *same* ``hf.Cache(size, dir=...)`` (memory and disk levels, and the disk level
alone with a fresh memory), and compares every cached answer bit for bit with an uncached
run, and with pandas where the query is plain pandas. Runs locally and on 1-4 ranks; the
Hypothesis differential runs on the local engine only (shrinking is not collective).
"""

from __future__ import annotations

import decimal
import os
import shutil

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.compare import assert_same

CACHE_SIZE = "64MB"


def _frame(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kf = rng.integers(0, 4, n).astype("float64")
    kf[rng.random(n) < 0.2] = np.nan
    x = rng.normal(0, 10, n).round(2)
    x[rng.random(n) < 0.1] = np.nan
    s = rng.choice(np.array(["a", "b", "c", None], dtype=object), n)
    dec = [None if v % 5 == 0 else decimal.Decimal(f"{v % 7}.{v % 3}0") for v in rng.integers(0, 100, n)]
    return pd.DataFrame(
        {
            "k": rng.integers(0, 3, n).astype("int64"),
            "kf": kf,
            "s": pd.array(s, dtype="str"),
            "c": pd.Categorical(rng.choice(["u", "v", "w"], n)),
            "b": rng.random(n) < 0.5,
            "t": pd.date_range("2024-03-09 20:00", periods=n, freq="37min", tz="America/New_York"),
            "dec": dec,
            "x": x,
            "n": rng.integers(-5, 5, n).astype("int64"),
        }
    )


@pytest.fixture(scope="module")
def data(shared_dir):
    """Two Parquet files (several row groups), a hive tree, a ';' CSV file and an HDF5 file
    with two keys, written by rank 0 in the shared folder."""
    root = os.path.join(shared_dir, "cache-adversarial")
    frames = [_frame(1, 70), _frame(2, 50)]

    def make():
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(os.path.join(root, "pq"))
        for i, f in enumerate(frames):
            f.to_parquet(os.path.join(root, "pq", f"part{i}.parquet"), row_group_size=25, index=False)
            hive = os.path.join(root, "hive", f"y={i + 1}")
            os.makedirs(hive)
            f[["k", "x"]].to_parquet(os.path.join(hive, "p.parquet"), index=False)
        with open(os.path.join(root, "a.csv"), "w") as fh:
            fh.write("k;x;s\n1;5;a\n2;NA;b\n1;-1;NA\n2;7;a\n3;;c\n1;2.5;-1\n")
        h5 = os.path.join(root, "h.h5")
        small = pd.DataFrame({"k": [1, 2, 1, 3], "x": [1.0, 2.0, 3.0, 4.0]})
        small.to_hdf(h5, key="a", format="table")
        (small.assign(x=small.x * 10)).to_hdf(h5, key="b", format="table")

    mpi.on_root(make)
    ref = pd.concat(frames, ignore_index=True)
    return root, ref


@pytest.fixture
def cache_dir(shared_dir, request):
    path = os.path.join(shared_dir, "cache-adv-" + request.node.name.replace("[", "-").replace("]", ""))
    mpi.on_root(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


def _equal(got, want, what: str) -> None:
    """Bit-for-bit equality of two results (frames, series or scalars)."""
    if isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=what)
    elif isinstance(want, pd.Series):
        pd.testing.assert_series_equal(got, want, check_exact=True, obj=what)
    else:
        same = type(got) is type(want) and (got == want or (pd.isna(got) and pd.isna(want)))
        assert same, f"{what}: {got!r} ({type(got).__name__}) != {want!r} ({type(want).__name__})"


def _check_all(queries, cache_dir: str, rounds: int = 2) -> None:
    """Run every query uncached, then through one shared cache: memory + disk (twice: the
    second a memory hit), and the disk level alone with an empty memory; then (``rounds=2``)
    once more in reverse order, so that each query also runs after the entries of the ones
    that follow it exist. Each cached answer must equal the uncached one."""
    refs = {}
    for name, q in queries:
        refs[name] = q()
    both = hf.Cache(CACHE_SIZE, dir=cache_dir)
    for name, q in queries:
        with both:
            _equal(q(), refs[name], f"{name} (memory+disk)")
            _equal(q(), refs[name], f"{name} (memory+disk again)")
        with hf.Cache(dir=cache_dir):
            _equal(q(), refs[name], f"{name} (disk only)")
    if rounds > 1:
        for name, q in reversed(queries):
            with both:
                _equal(q(), refs[name], f"{name} (memory+disk, in reverse order)")


# ----------------------------------------------------------------------------------------------
# queries that differ in one small thing share no entry
# ----------------------------------------------------------------------------------------------
def _near_twins(f):
    """Pairs of queries that differ only in a literal's type, an option, a step..."""
    tz = "America/New_York"
    return [
        ("x==1", lambda: f[f.n == 1].groupby("k").x.sum().compute()),
        ("x==1.0", lambda: f[f.n == 1.0].groupby("k").x.sum().compute()),
        ("x==True", lambda: f[f.n == True].groupby("k").x.sum().compute()),  # noqa: E712
        ("b==True", lambda: f[f.b == True].groupby("k").x.sum().compute()),  # noqa: E712
        ("b==1", lambda: f[f.b == 1].groupby("k").x.sum().compute()),
        ("n+1", lambda: f.assign(y=f.n + 1).groupby("k").y.sum().compute()),
        ("n+1.0", lambda: f.assign(y=f.n + 1.0).groupby("k").y.sum().compute()),
        ("n+True", lambda: f.assign(y=f.n + True).groupby("k").y.sum().compute()),
        ("n/2", lambda: f.assign(y=f.n / 2).groupby("k").y.sum().compute()),
        ("n//2", lambda: f.assign(y=f.n // 2).groupby("k").y.sum().compute()),
        ("-0.0", lambda: f.assign(y=f.x * -0.0).groupby("k").y.max().compute()),
        ("0.0", lambda: f.assign(y=f.x * 0.0).groupby("k").y.max().compute()),
        ("isin[1]", lambda: f[f.n.isin([1])].x.sum().compute()),
        ("isin[1.5]", lambda: f[f.n.isin([1.5])].x.sum().compute()),
        ("isin[True]", lambda: f[f.b.isin([True])].x.sum().compute()),
        ("between both", lambda: f[f.n.between(-1, 1)].x.sum().compute()),
        ("between neither", lambda: f[f.n.between(-1, 1, inclusive="neither")].x.sum().compute()),
        ("round(1)", lambda: f.assign(y=f.x.round(1)).groupby("k").y.sum().compute()),
        ("round(0)", lambda: f.assign(y=f.x.round(0)).groupby("k").y.sum().compute()),
        ("astype int32", lambda: f.assign(y=f.n.astype("int32")).groupby("k").y.sum().compute()),
        ("astype float32", lambda: f.assign(y=f.n.astype("float32")).groupby("k").y.sum().compute()),
        ("contains a", lambda: f[f.s.str.contains("a")].x.sum().compute()),
        ("contains A case", lambda: f[f.s.str.contains("A", case=False)].x.sum().compute()),
        # group-by options and key types
        ("by s", lambda: f.groupby("s").x.sum().compute()),
        ("by s dropna=False", lambda: f.groupby("s", dropna=False).x.sum().compute()),
        ("by s sort=False", lambda: f.groupby("s", sort=False).x.sum().compute()),
        ("by s both", lambda: f.groupby("s", dropna=False, sort=False).x.sum().compute()),
        ("by kf (NaN keys)", lambda: f.groupby("kf").x.sum().compute()),
        ("by kf dropna=False", lambda: f.groupby("kf", dropna=False).x.sum().compute()),
        ("by kf first", lambda: f.groupby("kf", dropna=False).x.first().compute()),
        ("by kf last", lambda: f.groupby("kf", dropna=False).x.last().compute()),
        ("by c (categorical)", lambda: f.groupby("c").x.sum().compute()),
        ("by c filtered", lambda: f[f.c == "u"].groupby("c").x.sum().compute()),
        ("by t (tz-aware)", lambda: f.groupby("t").n.sum().compute()),
        ("t > NY", lambda: f[f.t > pd.Timestamp("2024-03-10 12:00", tz=tz)].n.sum().compute()),
        ("t > UTC", lambda: f[f.t > pd.Timestamp("2024-03-10 12:00", tz="UTC")].n.sum().compute()),
        ("t hour", lambda: f.assign(h=f.t.dt.hour).groupby("h").n.sum().compute()),
        ("by dec", lambda: f.groupby("dec").n.sum().compute()),
        ("by dec dropna=False", lambda: f.groupby("dec", dropna=False).n.sum().compute()),
        ("by b, k", lambda: f.groupby(["b", "k"]).x.mean().compute()),
        ("by k, b", lambda: f.groupby(["k", "b"]).x.mean().compute()),
        ("x sum", lambda: f.x.sum().compute()),
        ("x mean", lambda: f.x.mean().compute()),
        ("x std", lambda: f.x.std().compute()),
        ("x var", lambda: f.x.var().compute()),
        ("x count", lambda: f.x.count().compute()),
        ("n nunique", lambda: f.n.nunique().compute()),
        ("sorted first", lambda: f.sort_values("x").groupby("k").n.first().compute()),
        ("sorted desc first", lambda: f.sort_values("x", ascending=False).groupby("k").n.first().compute()),
        ("proj then sum", lambda: f[["k", "x"]].groupby("k").x.sum().compute()),
        ("where", lambda: f.assign(y=f.x.where(f.n > 0, 0.0)).groupby("k").y.sum().compute()),
        ("mask", lambda: f.assign(y=f.x.mask(f.n > 0, 0.0)).groupby("k").y.sum().compute()),
    ]


@mpi.timeout(240)
def test_near_twin_queries_never_share_an_entry(data, cache_dir):
    root, ref = data
    f = hf.read_parquet(os.path.join(root, "pq"))
    queries = _near_twins(f)
    _check_all(queries, cache_dir)
    # and each is pandas' answer (the same lambdas on the pandas frame)
    p = ref
    plain = {
        "x==1.0": p[p.n == 1.0].groupby("k").x.sum(),
        "b==1": p[p.b == 1].groupby("k").x.sum(),
        "n+True": p.assign(y=p.n + True).groupby("k").y.sum(),
        "by s dropna=False": p.groupby("s", dropna=False).x.sum(),
        "by kf dropna=False": p.groupby("kf", dropna=False).x.sum(),
        "by kf first": p.groupby("kf", dropna=False).x.first(),
    }
    with hf.Cache(CACHE_SIZE, dir=cache_dir):
        for name, q in queries:
            if name in plain:
                assert_same(q(), plain[name], msg=name)


# ----------------------------------------------------------------------------------------------
# read options and dataset roots are part of the key
# ----------------------------------------------------------------------------------------------
@mpi.timeout(240)
def test_read_options_and_roots_never_share_an_entry(data, cache_dir):
    root, _ = data
    pq, hive, csv, h5 = (os.path.join(root, n) for n in ("pq", "hive", "a.csv", "h.h5"))
    one = os.path.join(pq, "part0.parquet")
    queries = [
        ("pq all", lambda: hf.read_parquet(pq).groupby("k").n.sum().compute()),
        ("pq columns", lambda: hf.read_parquet(pq, columns=["k", "n"]).groupby("k").n.sum().compute()),
        ("pq one file", lambda: hf.read_parquet(one).groupby("k").n.sum().compute()),
        ("hive by y", lambda: hf.read_parquet(hive).groupby("y").x.sum().compute()),
        ("hive by k", lambda: hf.read_parquet(hive).groupby("k").x.sum().compute()),
        ("hive off", lambda: hf.read_parquet(hive, hive=False).groupby("k").x.sum().compute()),
        # the same file under another root: no hive column, other schema
        ("hive sub-root", lambda: hf.read_parquet(os.path.join(hive, "y=1")).groupby("k").x.sum().compute()),
        ("hive y==1", lambda: (lambda d: d[d.y == 1].groupby("k").x.sum().compute())(hf.read_parquet(hive))),
        ("hive y==2", lambda: (lambda d: d[d.y == 2].groupby("k").x.sum().compute())(hf.read_parquet(hive))),
        ("csv ;", lambda: hf.read_csv(csv, sep=";").groupby("k").x.sum().compute()),
        ("csv na -1", lambda: hf.read_csv(csv, sep=";", na_values=["-1"]).groupby("k").x.sum().compute()),
        ("csv k str", lambda: hf.read_csv(csv, sep=";", dtype={"k": "str"}).groupby("k").x.sum().compute()),
        ("csv k float", lambda: hf.read_csv(csv, sep=";", dtype={"k": "f8"}).groupby("k").x.sum().compute()),
        ("csv s count", lambda: hf.read_csv(csv, sep=";").groupby("k").s.count().compute()),
        (
            "csv s count no NA",
            lambda: hf.read_csv(csv, sep=";", keep_default_na=False).groupby("k").s.count().compute(),
        ),
        ("hdf a", lambda: hf.read_hdf(h5, key="a").groupby("k").x.sum().compute()),
        ("hdf b", lambda: hf.read_hdf(h5, key="b").groupby("k").x.sum().compute()),
    ]
    _check_all(queries, cache_dir)
    with hf.Cache(dir=cache_dir):
        assert_same(queries[-1][1](), pd.read_hdf(h5, key="b").groupby("k").x.sum(), msg="hdf b")
        want = pd.read_csv(csv, sep=";", na_values=["-1"]).groupby("k").x.sum()
        assert_same(queries[10][1](), want, msg="csv na -1")


# ----------------------------------------------------------------------------------------------
# settings that change the blocks or the finish of a group-by
# ----------------------------------------------------------------------------------------------
@mpi.timeout(240)
def test_config_settings_share_no_wrong_entry(data, cache_dir):
    root, ref = data
    f = hf.read_parquet(os.path.join(root, "pq"))
    q = [
        ("by k sort=False first", lambda: f.groupby("k", sort=False).x.first().compute()),
        ("by s sum", lambda: f.groupby("s", dropna=False).x.sum().compute()),
        ("x sum", lambda: f.x.sum().compute()),
    ]
    keep = (hf.config.block_rows, hf.config.shuffle, hf.config.partitions)
    try:
        for block_rows, shuffle, partitions in [(10, "shuffle", 3), (7, "gather", 32)]:
            hf.config.block_rows, hf.config.shuffle, hf.config.partitions = block_rows, shuffle, partitions
            _check_all(q, cache_dir, rounds=1)
            with hf.Cache(dir=cache_dir):
                assert_same(q[0][1](), ref.groupby("k", sort=False).x.first(), msg=f"block_rows={block_rows}")
    finally:
        hf.config.block_rows, hf.config.shuffle, hf.config.partitions = keep


# ----------------------------------------------------------------------------------------------
# user functions: never served from another function's entry
# ----------------------------------------------------------------------------------------------
@mpi.timeout(240)
def test_user_functions_are_not_served_stale(data, cache_dir):
    root, ref = data
    f = hf.read_parquet(os.path.join(root, "pq"))

    def make(offset):
        # the same name and code object every time, another constant in its closure
        return lambda part: float(part.n.sum() + offset)

    queries = [
        ("map +0", lambda: f.map_partitions(make(0), combine=sum).compute()),
        ("map +1", lambda: f.map_partitions(make(1), combine=sum).compute()),
        ("apply max", lambda: f.groupby("k").apply(lambda g: g.n.max()).compute()),
        ("apply min", lambda: f.groupby("k").apply(lambda g: g.n.min()).compute()),
    ]
    _check_all(queries, cache_dir, rounds=1)
    with hf.Cache(CACHE_SIZE, dir=cache_dir):
        assert queries[1][1]() != queries[0][1]()
        assert_same(queries[3][1](), ref.groupby("k").apply(lambda g: g.n.min()), msg="apply min")


# ----------------------------------------------------------------------------------------------
# regression: hash_content=True must see a file rewritten in place with the same size and times
# ----------------------------------------------------------------------------------------------
@mpi.timeout(240)
def test_hash_content_sees_an_in_place_rewrite_in_the_same_process(shared_dir, cache_dir):
    folder = os.path.join(shared_dir, "cache-adv-rewrite")
    path = os.path.join(folder, "f.parquet")
    before = pd.DataFrame({"k": [1, 2, 1], "x": [1, 2, 3]})
    after = pd.DataFrame({"k": [1, 2, 1], "x": [7, 8, 9]})  # the same size once written
    times: dict = {}

    def write_first():
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        before.to_parquet(path, index=False)
        st = os.stat(path)
        times["t"] = (st.st_atime_ns, st.st_mtime_ns, st.st_size, st.st_ino)

    mpi.on_root(write_first)
    with hf.Cache(CACHE_SIZE, dir=cache_dir, hash_content=True):
        assert_same(hf.read_parquet(folder).groupby("k").x.sum(), before.groupby("k").x.sum())

    def rewrite_in_place():
        with open(path, "r+b") as fh:  # same inode
            fh.write(after.to_parquet(index=False))
        st = os.stat(path)
        assert (st.st_size, st.st_ino) == times["t"][2:], "the rewrite should keep size and inode"
        os.utime(path, ns=times["t"][:2])  # and the times (as within a coarse timestamp tick)

    mpi.on_root(rewrite_in_place)
    # the same process (its memory of file hashes) and the same cache object kind
    with hf.Cache(CACHE_SIZE, dir=cache_dir, hash_content=True):
        assert_same(hf.read_parquet(folder).groupby("k").x.sum(), after.groupby("k").x.sum())
    with hf.Cache(dir=cache_dir, hash_content=True):
        assert_same(hf.read_parquet(folder).groupby("k").x.sum(), after.groupby("k").x.sum())


# ----------------------------------------------------------------------------------------------
# Hypothesis: random queries, cached twice vs uncached vs pandas (local engine only)
# ----------------------------------------------------------------------------------------------
try:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the "test" extra
    st = None  # type: ignore[assignment]

_LITERALS = [0, 1, -1, 1.0, 0.5, -2.5, True, False, np.int32(1), np.float32(0.5)]
_OPS = ["==", "!=", "<", ">=", "+", "*"]
_KEYS = [None, "k", "kf", "s", "b", ["k", "b"], ["s", "kf"]]
_AGGS = ["sum", "mean", "count", "min", "max", "first", "last", "nunique", "size", "std", "var"]


def _apply(frame, col, op, lit, key, dropna, sort, agg):
    """The same query on an hpcframe or a pandas frame (a filter for comparisons, else an
    assignment ``y``), then a group-by or whole-column aggregation."""
    import operator

    fn = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, ">=": operator.ge}
    if op in fn:
        frame = frame[fn[op](frame[col], lit)]
        target = "x"
    else:
        frame = frame.assign(y=frame[col] + lit if op == "+" else frame[col] * lit)
        target = "y"
    if key is None:
        return getattr(frame[target], "count" if agg in ("size", "first", "last") else agg)()
    g = frame.groupby(key, dropna=dropna, sort=sort)[target]
    return getattr(g, agg)()


if st is not None:

    @pytest.fixture(scope="module")
    def hypo_cache(shared_dir):
        # one cache for every example: entries of earlier queries are there to be (wrongly) hit
        path = os.path.join(shared_dir, "cache-adv-hypothesis")
        return hf.Cache(CACHE_SIZE, dir=path), path

    @pytest.mark.skipif(mpi.UNDER_MPI, reason="Hypothesis drives the local engine only")
    @mpi.timeout(120)
    @settings(
        max_examples=30,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
        print_blob=False,
    )
    @given(
        col=st.sampled_from(["n", "x", "kf"]),
        op=st.sampled_from(_OPS),
        lit=st.sampled_from(_LITERALS),
        key=st.sampled_from(_KEYS),
        dropna=st.booleans(),
        sort=st.booleans(),
        agg=st.sampled_from(_AGGS),
    )
    def test_cache_differential_hypothesis(data, hypo_cache, col, op, lit, key, dropna, sort, agg):
        root, ref = data
        cache, path = hypo_cache
        f = hf.read_parquet(os.path.join(root, "pq"))
        try:
            want = _apply(ref, col, op, lit, key, dropna, sort, agg)
        except (TypeError, ValueError) as exc:
            pytest.skip(f"pandas refuses the query: {exc}")  # pragma: no cover - not drawn today
        uncached = _apply(f, col, op, lit, key, dropna, sort, agg).compute()
        with cache:
            first = _apply(f, col, op, lit, key, dropna, sort, agg).compute()
            second = _apply(f, col, op, lit, key, dropna, sort, agg).compute()
        with hf.Cache(dir=path):
            disk = _apply(f, col, op, lit, key, dropna, sort, agg).compute()
        what = f"{col} {op} {lit!r} ({type(lit).__name__}) by {key} dropna={dropna} sort={sort} {agg}"
        _equal(first, uncached, what + " [cached]")
        _equal(second, uncached, what + " [cached twice]")
        _equal(disk, uncached, what + " [disk only]")
        exact = agg in ("count", "size", "nunique", "min", "max", "first", "last")
        assert_same(uncached, want, exact=exact, msg=what)


# ----------------------------------------------------------------------------------------------
# regression: the source's fingerprint holds its schema in full (pyarrow's to_string cuts long
# names, types and metadata, so two schemas differing past the cut would share entries)
# ----------------------------------------------------------------------------------------------
def test_source_fingerprint_holds_long_names_and_metadata_in_full():
    import pyarrow as pa

    from hpcframe.cache import source_fingerprint

    class _Source:
        format = "parquet"

        def __init__(self, schema):
            self._schema = schema

        def schema(self):
            return self._schema

    long = "c" * 150
    a = pa.schema([pa.field(long + "1", pa.int64(), metadata={b"hpcframe": b"x" * 100 + b"1"})])
    b = pa.schema([pa.field(long + "1", pa.int64(), metadata={b"hpcframe": b"x" * 100 + b"2"})])
    c = pa.schema([pa.field(long + "2", pa.int64(), metadata={b"hpcframe": b"x" * 100 + b"1"})])
    fps = {repr(source_fingerprint(_Source(s))) for s in (a, b, c)}
    assert len(fps) == 3


# ----------------------------------------------------------------------------------------------
# regression: entries made by other hpcframe code are never used (the version string alone
# stays the same across the commits of a source tree or an editable install)
# ----------------------------------------------------------------------------------------------
def test_code_change_changes_every_key(tmp_path, monkeypatch):
    import hpcframe.cache as C

    real = C._version()
    package = os.path.dirname(os.path.abspath(C.__file__))
    copy = tmp_path / "hpcframe"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(C, "__file__", str(copy / "cache.py"))
    same = C._version.__wrapped__()
    with open(copy / "aggregations.py", "a") as fh:
        fh.write("\n# a fix in how partials are computed\n")
    changed = C._version.__wrapped__()
    assert same == real  # a copy of the same code: the same keys
    assert changed != same
