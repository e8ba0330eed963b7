"""Dataset discovery (hpcframe.io.paths): file order, which files are data files, and refusal of
non-regular files before anything opens them. Shared by Parquet, HDF5 and CSV."""

import os
import socket

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from hpcframe.io.paths import NotARegularFileError, expand_paths

PQ = (".parquet", ".parq", ".pq")
NAMES = [
    "z.parquet",
    "a/x.parquet",
    "a.parquet",
    "a-b/y.parquet",
    "B/q.parquet",
    "a/b.parquet",
    "a/deeper/c.parquet",
    "é.parquet",
    "k=1/m.parquet",
]


def _write_tree(root, names=NAMES):
    for i, name in enumerate(names):
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(pa.table({"f": [name], "i": [i]}), path)


def test_directory_order_is_sorted_relative_paths_like_pyarrow(tmp_path):
    root = str(tmp_path / "ds")
    _write_tree(root)
    os.makedirs(os.path.join(root, "_staging"))
    pq.write_table(pa.table({"f": ["skip"], "i": [0]}), os.path.join(root, "_staging", "s.parquet"))
    pq.write_table(pa.table({"f": ["skip"], "i": [0]}), os.path.join(root, ".hidden.parquet"))
    files, got_root = expand_paths(root, PQ, "Parquet")
    rel = [os.path.relpath(f, root) for f in files]
    assert rel == sorted(NAMES) and got_root == root
    assert files == pads.dataset(root, format="parquet").files
    frame = hf.read_parquet(root, hive=False)
    pd.testing.assert_frame_equal(frame.compute(), pd.read_parquet(root)[["f", "i"]])
    assert frame.head(3).compute().f.tolist() == sorted(NAMES)[:3]


def test_glob_and_list_orders(tmp_path):
    root = str(tmp_path / "ds")
    _write_tree(root)
    files, _ = expand_paths(os.path.join(root, "**", "*.parquet"), PQ, "Parquet")
    assert files == sorted(files) and len(files) == len(NAMES)
    given = [os.path.join(root, "z.parquet"), os.path.join(root, "a.parquet")]
    assert expand_paths(given, PQ, "Parquet")[0] == given  # a list keeps the user's order


def _fifo(path):
    os.mkfifo(path)
    return path


def _socket(path):
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    return s


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "socket", "device", "broken-link"])
def test_non_regular_files_are_refused_before_opening(tmp_path, kind):
    root = str(tmp_path / "ds")
    _write_tree(root, ["a.parquet", "sub/b.parquet"])
    bad = os.path.join(root, "sub", "c.parquet")
    keep = None
    if kind == "fifo":
        _fifo(bad)
        what = "FIFO"
    elif kind == "socket":
        keep = _socket(bad)
        what = "socket"
    elif kind == "device":
        os.symlink("/dev/null", bad)
        what = "character device"
    else:
        os.symlink(os.path.join(root, "missing.parquet"), bad)
        what = "broken symbolic link"
    try:
        for path in (root, bad, os.path.join(root, "*", "*.parquet"), [os.path.join(root, "a.parquet"), bad]):
            with pytest.raises(NotARegularFileError, match=rf"c\.parquet is .*{what}") as ei:
                hf.read_parquet(path).compute()
            assert isinstance(ei.value, hf.DatasetError) and isinstance(ei.value, OSError)
    finally:
        if keep is not None:
            keep.close()


@pytest.mark.timeout(30)
def test_fifo_is_refused_for_hdf5_csv_and_info(tmp_path):
    from hpcframe.spec import dataset_info

    d = tmp_path / "mixed"
    d.mkdir()
    pd.DataFrame({"x": [1.0]}).to_hdf(str(d / "a.h5"), key="df", format="table")
    (d / "a.csv").write_text("x\n1\n")
    _fifo(str(d / "b.h5"))
    _fifo(str(d / "b.csv"))
    with pytest.raises(NotARegularFileError, match=r"b\.h5 is a FIFO"):
        hf.read_hdf(str(d / "*.h5"))
    with pytest.raises(NotARegularFileError, match=r"b\.csv is a FIFO"):
        hf.read_csv(str(d))
    with pytest.raises(NotARegularFileError, match=r"b\.h5 is a FIFO"):
        dataset_info(str(d / "*.h5"))


def test_symlinks_to_regular_files_are_followed(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    pq.write_table(pa.table({"x": [1.0, 2.0]}), str(tmp_path / "real.parquet"))
    os.symlink(str(tmp_path / "real.parquet"), str(root / "link.parquet"))
    os.symlink(str(tmp_path), str(root / "loop"))  # a linked folder is not descended into
    files, _ = expand_paths(str(root), PQ, "Parquet")
    assert files == [str(root / "link.parquet")]
    assert hf.read_parquet(str(root)).x.sum().compute() == 3.0


@pytest.mark.parametrize(
    "values, dtype",
    [
        (["99999999999999999999", "1"], "str"),
        (["1_000", "2"], "str"),
        (["+5", "3"], "str"),
        ([" 7", "3"], "str"),
        (["١٢", "1"], "str"),  # non-ASCII digits
        (["9223372036854775808", "1"], "str"),
        (["-9223372036854775809", "1"], "str"),
        (["9223372036854775807", "-9223372036854775808"], "int64"),
        (["-5", "007", "3"], "int64"),
    ],
)
def test_hive_values_are_int64_only_when_plain_digits_that_fit(tmp_path, values, dtype):
    root = tmp_path / "hive"
    for i, v in enumerate(values):
        (root / f"k={v}").mkdir(parents=True)
        pq.write_table(pa.table({"x": [float(i)]}), str(root / f"k={v}" / "p.parquet"))
    df = hf.read_parquet(str(root))
    got = df.compute()
    ref = pd.read_parquet(str(root))  # pandas: category of the folder texts
    ref_k = ref.k.astype(str) if dtype == "str" else ref.k.astype(str).map(int)
    order = got.sort_values("x").reset_index(drop=True)
    expected = ref.assign(k=ref_k).sort_values("x").reset_index(drop=True)
    assert order.k.tolist() == expected.k.tolist()
    if dtype == "int64":
        assert str(got.k.dtype) == "int64"
        first = int(values[0])
        assert df[df.k == first].x.sum().compute() == 0.0
    else:
        assert got.k.map(type).eq(str).all()
        assert df[df.k == values[0]].x.sum().compute() == 0.0
        assert sorted(df.k.value_counts().compute().index) == sorted(values)


@pytest.mark.timeout(30)
def test_hdf5_source_given_a_fifo_directly_refuses_it(tmp_path):
    from hpcframe.io.hdf5 import HDF5Source

    fifo = _fifo(str(tmp_path / "pipe.h5"))
    with pytest.raises(NotARegularFileError, match=r"pipe\.h5 is a FIFO"):
        HDF5Source([fifo]).schema()
