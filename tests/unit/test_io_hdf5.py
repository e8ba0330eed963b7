"""HDF5Source: layouts, chunk-aligned partitions, multi-file datasets, errors, no unpickling."""

import datetime
import pickle

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hpcframe.io.dataset import DatasetError
from hpcframe.io.hdf5 import HDF5Source, Opaque, PickleLimitError, safe_unpickle


class FakeComm:
    rank, size = 0, 1

    def allgather(self, obj):  # pragma: no cover - HDF5Source must not communicate
        raise AssertionError("HDF5Source.discover must not call comm")


def read_all(src, columns=None):
    """Concatenate every partition, as pandas."""
    parts = src.discover(FakeComm())
    columns = columns or src.schema().names
    tables = [src.read(p, columns) for p in parts]
    if not tables:
        return src.schema().empty_table().select(columns).to_pandas(), parts
    return pa.concat_tables(tables).to_pandas(), parts


def assert_chunk_aligned(parts, chunk, nrows):
    assert parts[0].start == 0 and parts[-1].stop == nrows
    for a, b in zip(parts, parts[1:]):
        assert a.stop == b.start
    for p in parts:
        assert p.start % chunk == 0
        assert p.stop % chunk == 0 or p.stop == nrows


def sample_frame(n=50, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[::5] = np.nan
    return pd.DataFrame(
        {
            "i": np.arange(n, dtype="int64"),
            "x": x,
            "i32": rng.integers(-100, 100, n).astype("int32"),
            "flag": rng.random(n) > 0.5,
            "s": [None if k % 7 == 3 else f"s{k}é" for k in range(n)],
        }
    )


def write_column_group(path, df, chunk=7, key="data", **extra):
    with h5py.File(path, "w") as f:
        g = f.create_group(key, track_order=True)
        for name in df.columns:
            col = df[name]
            if name == "s":  # fixed-width UTF-8 bytes, NUL padded; "" for missing is fine here
                data = np.array([v.encode() for v in col.fillna("")], dtype="S12")
            else:
                data = col.to_numpy()
            g.create_dataset(name, data=data, chunks=(chunk,) if chunk else None, **extra)


# --------------------------------------------------------------------------- layout 1: column group
def test_column_group_roundtrip_and_chunk_alignment(tmp_path):
    df = sample_frame(50)
    path = str(tmp_path / "cols.h5")
    write_column_group(path, df, chunk=7, compression="gzip")
    src = HDF5Source([path], chunk_rows=20)
    assert src.schema() == pa.schema(
        [
            ("i", pa.int64()),
            ("x", pa.float64()),
            ("i32", pa.int32()),
            ("flag", pa.bool_()),
            ("s", pa.string()),
        ]
    )
    out, parts = read_all(src)
    assert [(p.start, p.stop) for p in parts] == [(0, 21), (21, 42), (42, 50)]
    assert_chunk_aligned(parts, 7, 50)
    assert all(p.piece == "/data" and p.path == path and not p.stats and not p.hive for p in parts)
    assert parts[0].nbytes == 21 * (8 + 8 + 4 + 1 + 12)
    pd.testing.assert_frame_equal(out, df.assign(s=df.s.fillna("")))


def test_column_group_aligns_to_largest_chunk_and_vlen_strings(tmp_path):
    path = str(tmp_path / "mixed.h5")
    n = 100
    with h5py.File(path, "w") as f:
        f.create_dataset("t/a", data=np.arange(n), chunks=(10,))
        f.create_dataset("t/b", data=np.arange(n) * 0.5, chunks=(16,))
        f.create_dataset("t/c", data=[f"v{k}" for k in range(n)], dtype=h5py.string_dtype(), chunks=(16,))
    src = HDF5Source([path], chunk_rows=45)  # ~45 rows -> 3 chunks of 16
    out, parts = read_all(src, ["c", "a"])
    assert_chunk_aligned(parts, 16, n)
    assert [p.num_rows for p in parts] == [48, 48, 4]
    expected = pd.DataFrame({"c": [f"v{k}" for k in range(n)], "a": np.arange(n)})
    pd.testing.assert_frame_equal(out, expected)


def test_contiguous_dataset_uses_plain_ranges(tmp_path):
    path = str(tmp_path / "plain.h5")
    with h5py.File(path, "w") as f:
        f["values"] = np.arange(25, dtype="<f4")  # a lone 1-D dataset: one column
    src = HDF5Source([path], chunk_rows=10)
    out, parts = read_all(src)
    assert [(p.start, p.stop) for p in parts] == [(0, 10), (10, 20), (20, 25)]
    pd.testing.assert_frame_equal(out, pd.DataFrame({"values": np.arange(25, dtype="float32")}))


def test_unequal_column_lengths(tmp_path):
    path = str(tmp_path / "bad.h5")
    with h5py.File(path, "w") as f:
        f["g/a"] = np.arange(10)
        f["g/b"] = np.arange(7)
    with pytest.raises(DatasetError, match=r"bad\.h5.*a=10.*b=7"):
        HDF5Source([path]).schema()


def test_empty_dataset_has_schema_but_no_partitions(tmp_path):
    path = str(tmp_path / "empty.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("g/a", shape=(0,), maxshape=(None,), dtype="i8", chunks=(8,))
        f.create_dataset("g/s", shape=(0,), maxshape=(None,), dtype="S4", chunks=(8,))
    src = HDF5Source([path])
    assert src.schema() == pa.schema([("a", pa.int64()), ("s", pa.string())])
    assert src.discover(FakeComm()) == []


# --------------------------------------------------------------------------- layout 2: compound
def test_compound_dataset_reads_only_needed_fields(tmp_path):
    n = 45
    rec = np.zeros(n, dtype=[("id", "<i8"), ("val", ">f8"), ("name", "S6"), ("ok", "?")])
    rec["id"] = np.arange(n)
    rec["val"] = np.where(np.arange(n) % 4 == 0, np.nan, np.arange(n) / 3)
    rec["name"] = [f"n{k}".encode() for k in range(n)]
    rec["ok"] = np.arange(n) % 2 == 0
    path = str(tmp_path / "rec.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("records", data=rec, chunks=(8,))
    src = HDF5Source([path], chunk_rows=16)
    assert src.schema().names == ["id", "val", "name", "ok"]
    assert src.schema().field("val").type == pa.float64()
    out, parts = read_all(src, ["name", "val"])
    assert_chunk_aligned(parts, 8, n)
    expected = pd.DataFrame({"name": [f"n{k}" for k in range(n)], "val": rec["val"].astype("<f8")})
    pd.testing.assert_frame_equal(out, expected)
    one = src.read(parts[1], ["id"])  # single-field read
    assert one.column("id").to_pylist() == list(range(parts[1].start, parts[1].stop))


# --------------------------------------------------------------------------- layout 3: pandas
def pandas_frame(n=5000):
    df = sample_frame(n, seed=1)
    df["s"] = df["s"].where(np.arange(n) % 11 != 5, "nan")  # the literal text "nan" survives
    df["c"] = np.arange(n, dtype="int64") * 2  # a second int64 column shares a values_block
    df["t"] = pd.date_range("2020-01-01", periods=n, freq="min")
    df.loc[3, "t"] = pd.NaT
    df["tns"] = pd.date_range("2021-01-01", periods=n, freq="s", tz="Europe/Paris").as_unit("ns")
    df["dt"] = pd.to_timedelta(np.arange(n), unit="s")
    return df


@pytest.mark.parametrize("data_columns", [None, True])
def test_pandas_table_roundtrip(tmp_path, data_columns):
    df = pandas_frame()
    path = str(tmp_path / "pd.h5")
    df.to_hdf(path, key="df", format="table", data_columns=data_columns)
    with h5py.File(path) as f:
        chunk = f["df/table"].chunks[0]
    src = HDF5Source([path], chunk_rows=1500)
    assert src.schema().names == list(df.columns)  # default RangeIndex dropped, order kept
    assert src.schema().field("tns").type == pa.timestamp("ns", tz="Europe/Paris")
    out, parts = read_all(src)
    assert len(parts) > 1
    assert_chunk_aligned(parts, chunk, len(df))
    pd.testing.assert_frame_equal(out, df)
    assert out["s"].isna().sum() == df["s"].isna().sum() and (out["s"] == "nan").any()


def test_pandas_named_index_is_exposed_and_key_may_be_nested(tmp_path):
    idx = pd.date_range("2022-01-01", periods=30, freq="h", name="when")
    df = pd.DataFrame({"v": np.arange(30.0)}, index=idx)
    path = str(tmp_path / "idx.h5")
    df.to_hdf(path, key="a/b", format="table")
    src = HDF5Source([path], key="a/b")
    assert src.schema().names == ["when", "v"]
    out, _ = read_all(src)
    pd.testing.assert_frame_equal(out, df.reset_index())
    assert HDF5Source([path], key="/a/b/table").schema() == src.schema()


def test_pandas_table_is_never_unpickled(tmp_path, monkeypatch):
    df = pandas_frame(300)
    df.index = pd.date_range("2020", periods=300, freq="D", name="day")  # pickles a freq object
    path = str(tmp_path / "pd.h5")
    df.to_hdf(path, key="df", format="table")

    def forbidden(*a, **k):
        raise AssertionError("pickle must not be used to read HDF5 attributes")

    import _pickle

    for mod in (pickle, _pickle):
        for name in ("loads", "load", "Unpickler"):
            monkeypatch.setattr(mod, name, forbidden)
    out, _ = read_all(HDF5Source([path], chunk_rows=100))
    pd.testing.assert_frame_equal(out, df.reset_index())


def test_pandas_unsupported_formats(tmp_path):
    path = str(tmp_path / "fixed.h5")
    pd.DataFrame({"a": [1, 2]}).to_hdf(path, key="df", format="fixed")
    with pytest.raises(DatasetError, match=r"fixed\.h5.*format='fixed'"):
        HDF5Source([path]).schema()
    path = str(tmp_path / "cat.h5")
    pd.DataFrame({"k": pd.Categorical(["a", "b"])}).to_hdf(path, key="df", format="table")
    with pytest.raises(DatasetError, match=r"cat\.h5.*categorical"):
        HDF5Source([path]).schema()


# --------------------------------------------------------------------------- several files
def test_two_files_are_one_dataset(tmp_path):
    df = pandas_frame(3000)
    p1, p2 = str(tmp_path / "one.h5"), str(tmp_path / "two.h5")
    df.iloc[:1000].to_hdf(p1, key="df", format="table")
    df.iloc[1000:].to_hdf(p2, key="df", format="table", data_columns=True)
    src = HDF5Source([p1, p2], chunk_rows=800)
    out, parts = read_all(src)
    paths = [p.path for p in parts]
    assert paths == [p1] * paths.count(p1) + [p2] * paths.count(p2) and paths.count(p1) > 1
    assert sum(p.num_rows for p in parts if p.path == p1) == 1000
    pd.testing.assert_frame_equal(out, df.reset_index(drop=True))


def test_files_with_different_columns(tmp_path):
    df = sample_frame(20)
    p1, p2, p3 = (str(tmp_path / f"{k}.h5") for k in "abc")
    write_column_group(p1, df)
    write_column_group(p2, df.assign(i32=df.i32.astype("float64")))
    write_column_group(p3, df.drop(columns="x"))
    with pytest.raises(DatasetError, match=r"b\.h5.*'i32'.*double"):
        HDF5Source([p1, p2]).discover(FakeComm())
    with pytest.raises(DatasetError, match=r"c\.h5.*'x' is missing"):
        HDF5Source([p1, p3]).discover(FakeComm())


# --------------------------------------------------------------------------- errors
def test_file_errors(tmp_path):
    missing = str(tmp_path / "nope.h5")
    with pytest.raises(DatasetError, match=r"nope\.h5.*no such file"):
        HDF5Source([missing]).schema()
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5 at all")
    with pytest.raises(DatasetError, match=r"junk\.h5.*cannot open as HDF5"):
        HDF5Source([str(junk)]).discover(FakeComm())


def test_key_errors(tmp_path):
    path = str(tmp_path / "two_tables.h5")
    with h5py.File(path, "w") as f:
        f["first/a"] = np.arange(3)
        f["second/a"] = np.arange(3)
    with pytest.raises(DatasetError, match=r"two_tables\.h5.*first, second.*key="):
        HDF5Source([path]).schema()
    with pytest.raises(DatasetError, match=r"two_tables\.h5.*'third'"):
        HDF5Source([path], key="third").schema()
    assert HDF5Source([path], key="second").schema().names == ["a"]


def test_unknown_column(tmp_path):
    path = str(tmp_path / "cols.h5")
    write_column_group(path, sample_frame(10))
    src = HDF5Source([path])
    part = src.discover(FakeComm())[0]
    with pytest.raises(DatasetError, match=r"cols\.h5.*'nope'.*available: i, x, i32, flag, s"):
        src.read(part, ["x", "nope"])


# --------------------------------------------------------------------------- safe_unpickle
CALLED = []


class Evil:
    def __reduce__(self):
        return (CALLED.append, ("executed",))


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_safe_unpickle_literals_and_never_executes(protocol):
    value = {"names": ["a", "é", 3, None, 2**70], 1: (True, 2.5, ()), "nested": {"k": [[]]}}
    assert safe_unpickle(pickle.dumps(value, protocol=protocol)) == value
    if protocol >= 4:  # older protocols pickle bytes and sets through REDUCE calls
        value = {"b": b"x", "s": {1, 2}, "f": frozenset("a")}
        assert safe_unpickle(pickle.dumps(value, protocol=protocol)) == value
    out = safe_unpickle(pickle.dumps({"x": Evil(), "y": [1]}, protocol=protocol))
    assert isinstance(out["x"], Opaque) and out["y"] == [1]
    assert CALLED == []
    with pytest.raises(ValueError):
        safe_unpickle(b"not a pickle")


def _memo_bomb(levels=30, fanout=4) -> bytes:
    """A few hundred bytes: list 0 = [], list k = [list k-1] * fanout via the memo (shared
    references), so that the decoded value has fanout**levels leaves as a tree."""
    out = [b"\x80\x02]q\x00"]  # PROTO 2, EMPTY_LIST, BINPUT 0
    for _ in range(levels):
        out.append(b"(" + b"h\x00" * fanout + b"lq\x00")  # MARK, BINGET 0 * k, LIST, BINPUT 0
    return b"".join(out) + b"."


def test_safe_unpickle_bounds_a_memo_bomb():
    """A 400-byte pickle that would expand exponentially through its memo is refused with
    bounded memory (no wall-clock limit: the machine may be busy; an unbounded expansion
    would exhaust the memory bound long before it finished)."""
    import tracemalloc

    bomb = _memo_bomb()
    assert len(bomb) < 402
    tracemalloc.start()
    with pytest.raises(PickleLimitError, match="pickle bomb"):
        safe_unpickle(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50e6, peak
    # sharing through the memo is still decoded (as independent copies)
    shared = safe_unpickle(pickle.dumps([["a"]] * 3, protocol=2))
    assert shared == [["a"]] * 3 and shared[0] is not shared[1]
    deep = b"(" * 200 + b"l" * 200 + b"."
    with pytest.raises(PickleLimitError, match="deep"):
        safe_unpickle(deep)


def test_pandas_table_with_a_pickle_bomb_attribute_is_a_clear_error(tmp_path):
    path = str(tmp_path / "bomb.h5")
    pandas_frame(20).to_hdf(path, key="df", format="table")
    with h5py.File(path, "a") as f:
        f["df/table"].attrs["values_block_0_kind"] = np.bytes_(_memo_bomb())
    with pytest.raises(
        DatasetError,
        match=r"bomb\.h5.*'values_block_0_kind' of /df/table.*"
        r"safety limits",
    ):
        HDF5Source([path]).schema()


@pytest.mark.parametrize(
    "value, what",
    [
        (np.void(b"\x01\x02\x03"), "opaque bytes"),  # an HDF5 OPAQUE attribute
        (np.bytes_(pickle.dumps(datetime.timezone.utc, protocol=0)), "pickled Python object"),
        (np.int64(7), "int"),
    ],
)
def test_pandas_table_with_a_non_text_encoding_is_a_clear_error(tmp_path, value, what):
    path = str(tmp_path / "enc.h5")
    pandas_frame(20).to_hdf(path, key="df", format="table")
    with h5py.File(path, "a") as f:
        f["df"].attrs["encoding"] = value
    with pytest.raises(DatasetError, match=rf"enc\.h5.*'encoding' of /df.*{what}"):
        HDF5Source([path]).schema()


def test_pandas_table_with_an_unknown_encoding_is_a_clear_error(tmp_path):
    path = str(tmp_path / "enc.h5")
    pandas_frame(20).to_hdf(path, key="df", format="table")
    with h5py.File(path, "a") as f:
        f["df"].attrs["encoding"] = np.bytes_(b"no-such-codec")
    with pytest.raises(DatasetError, match=r"enc\.h5.*'encoding' of /df.*unknown.*no-such-codec"):
        HDF5Source([path]).schema()


@pytest.mark.parametrize(
    "tz",
    [
        "UTC",
        datetime.timezone.utc,
        datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
        datetime.timezone(datetime.timedelta(hours=-3)),
        "Europe/Paris",
    ],
    ids=["utc-name", "utc-object", "plus-0530", "minus-03", "paris"],
)
def test_pandas_table_time_zones_roundtrip(tmp_path, tz):
    df = pd.DataFrame(
        {"t": pd.date_range("2020-03-29", periods=40, freq="37min", tz=tz), "x": np.arange(40.0)},
        index=pd.date_range("2021-01-01", periods=40, freq="D", tz=tz, name="day"),
    )
    path = str(tmp_path / "tz.h5")
    df.to_hdf(path, key="df", format="table")
    out, _ = read_all(HDF5Source([path], chunk_rows=16))
    expected = pd.read_hdf(path).reset_index()
    pd.testing.assert_frame_equal(out, expected)
    assert str(out.t.dtype) == str(expected.t.dtype) and str(out.day.dtype) == str(df.index.dtype)
    import hpcframe as hf

    frame = hf.read_hdf(path)
    assert (frame.t == expected.t.iloc[3]).sum().compute() == 1


def test_time_zone_objects_that_are_not_offsets_are_refused(tmp_path):
    from hpcframe.io.hdf5 import _time_zone

    evil = safe_unpickle(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(DatasetError, match=r"f\.h5.*field 't'.*time zone stored as a Python"):
        _time_zone(evil, "field 't'", "f.h5")
    half_second = safe_unpickle(pickle.dumps(datetime.timezone(datetime.timedelta(seconds=30)), protocol=0))
    with pytest.raises(DatasetError, match="whole minutes"):
        _time_zone(half_second, "field 't'", "f.h5")
    assert CALLED == []


def test_hdf5_source_describes_itself_like_the_other_sources(tmp_path):
    import hpcframe as hf

    path = str(tmp_path / "pd.h5")
    df = pandas_frame(300)
    df.to_hdf(path, key="df", format="table")
    src = HDF5Source([path], key="df")
    assert src.format == "hdf5" and src.files == [path] and path in src.label and "df" in src.label
    frame = hf.read_hdf(path)
    text = frame[frame.x > 0].explain()
    assert "hdf5" in text and path in text
    out = str(tmp_path / "out")
    hf.to_parquet(frame[frame.x > 0], out)
    pd.testing.assert_frame_equal(hf.read_parquet(out).compute(), df[df.x > 0].reset_index(drop=True))
    many = HDF5Source([path, path])
    assert many.label.startswith("2 HDF5 files")


class WithListArgs:
    def __reduce__(self):
        return (WithListArgs, ([1, 2],))


def test_safe_unpickle_keeps_call_arguments_and_opaque_keys_hashable():
    out = safe_unpickle(pickle.dumps({WithListArgs(): 1, "tz": datetime.timezone.utc}, protocol=2))
    (key,) = [k for k in out if isinstance(k, Opaque)]
    assert key.args == ([1, 2],) and out[key] == 1
    assert out["tz"].func == "datetime timezone" and out["tz"].args[0].args == (0, 0, 0)
