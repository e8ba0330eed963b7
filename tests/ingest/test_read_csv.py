"""hf.read_csv: lazy, split or streamed, one schema, results equal to pandas.read_csv."""

import os
import warnings

import pandas as pd
import pytest

from hpcframe.errors import DatasetError
from hpcframe.io.csv import ByteRange, RowChunk
from hpcframe.io.sources import known_partitions
from hpcframe.readers import read_csv
from tests.helpers.ingest import compress, flights

pytestmark = pytest.mark.timeout(120)


def pandas_read(path, **kw):
    return pd.read_csv(path, **kw)


@pytest.mark.parametrize("kind", [None, "gz", "bz2", "xz", "zst"])
def test_plain_and_compressed_files_equal_pandas(tmp_path, kind, small_blocks):
    plain = str(tmp_path / "f.csv")
    flights(9000).to_csv(plain, index=False)
    path = plain if kind is None else compress(plain, kind)
    raw = read_csv(path, chunk_bytes=64 << 10)
    got = raw.compute()
    pd.testing.assert_frame_equal(got, pandas_read(plain))
    parts = known_partitions(raw.node.scan().source)
    assert len(parts) > 3  # really split / chunked
    assert all(isinstance(p.piece, RowChunk if kind else ByteRange) for p in parts)


def test_query_on_a_glob_of_compressed_files(tmp_path, small_blocks):
    frames = []
    for i, kind in enumerate(["gz", "xz", "bz2"]):
        df = flights(3000, seed=i)
        p = str(tmp_path / f"flights-2016-{i}.csv")
        df.to_csv(p, index=False)
        compress(p, kind)
        os.remove(p)
        frames.append(df)
    raw = read_csv(str(tmp_path / "flights-2016-*.csv.*"), chunk_bytes=32 << 10)
    got = raw[raw.Carrier == "AA"].groupby("FlightDate")[["Flights", "Cancelled"]].sum().compute()
    exp = pd.concat(frames, ignore_index=True)
    exp = exp[exp.Carrier == "AA"].groupby("FlightDate")[["Flights", "Cancelled"]].sum()
    pd.testing.assert_frame_equal(got, exp)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("trailing", [True, False])
@pytest.mark.parametrize("chunk", [1024, 1777, 5000])
def test_byte_ranges_give_every_line_exactly_once(tmp_path, newline, trailing, chunk):
    df = flights(1500)
    text = df.to_csv(index=False, lineterminator=newline)
    if not trailing:
        text = text.rstrip("\r\n")
    path = tmp_path / "f.csv"
    path.write_bytes(text.encode())
    assert os.path.getsize(path) % chunk  # not a multiple of the chunk
    raw = read_csv(str(path), chunk_bytes=chunk)
    pd.testing.assert_frame_equal(raw.compute(), pd.read_csv(path))
    assert len(known_partitions(raw.node.scan().source)) > 10


def test_types_are_unified_across_files(tmp_path):
    (tmp_path / "a.csv").write_text("k,x,y\n1,1,5\n2,2,6\n")
    (tmp_path / "b.csv").write_text("k,x,y\n3,2.5,abc\n4,,7\n")
    raw = read_csv(str(tmp_path / "*.csv"))
    assert str(raw.dtypes["x"]) == "float64"  # int in a.csv, float in b.csv
    assert pd.api.types.is_string_dtype(raw.dtypes["y"])  # int in a.csv, text in b.csv
    got = raw.compute()
    assert got.x.tolist()[:3] == [1.0, 2.0, 2.5] and pd.isna(got.x[3])
    assert got.y.tolist() == ["5", "6", "abc", "7"]


def test_dtype_parse_dates_usecols(tmp_path):
    path = tmp_path / "f.csv"
    flights(500).to_csv(path, index=False)
    raw = read_csv(
        str(path),
        dtype={"Flights": "float64", "Carrier": "category"},
        parse_dates=["FlightDate"],
        usecols=["FlightDate", "Carrier", "Flights"],
    )
    got = raw.compute()
    assert list(got.columns) == ["FlightDate", "Carrier", "Flights"]
    assert got.Flights.dtype == "float64" and isinstance(got.Carrier.dtype, pd.CategoricalDtype)
    exp = pd.read_csv(path, parse_dates=["FlightDate"], usecols=["FlightDate", "Carrier", "Flights"])
    assert (got.FlightDate.values == exp.FlightDate.values.astype(got.FlightDate.dtype)).all()


def bad_value_file(tmp_path, name="bad.csv"):
    df = flights(3000)
    text = df.to_csv(index=False).splitlines()
    fields = text[2500].split(",")
    fields[4] = "many"  # Flights, an int column; line 2501 of the file
    text[2500] = ",".join(fields)
    path = tmp_path / name
    path.write_text("\n".join(text) + "\n")
    return str(path)


@pytest.mark.parametrize("kind", [None, "gz"])
def test_value_that_does_not_fit_names_file_and_line(tmp_path, kind):
    path = bad_value_file(tmp_path)
    path = path if kind is None else compress(path, kind)
    raw = read_csv(path, chunk_bytes=8 << 10, sample_rows=1000)  # the sample says int
    with pytest.raises(DatasetError) as e:
        raw.Flights.sum().compute()
    msg = str(e.value)
    assert os.path.basename(path) in msg and "line 2501" in msg and "'many'" in msg
    assert "Flights" in msg and "on_bad_lines" in msg


@pytest.mark.parametrize("kind", [None, "xz"])
def test_bad_lines_skip_and_warn(tmp_path, kind):
    path = bad_value_file(tmp_path)
    with open(path, "a") as f:
        f.write("1,2,3\n")  # too few fields
    path = path if kind is None else compress(path, kind)
    exp = pd.read_csv(bad_value_file(tmp_path, "clean.csv"))
    exp = exp.drop(index=2499)
    exp["Flights"] = exp.Flights.astype("int64")
    got = read_csv(path, on_bad_lines="skip", chunk_bytes=8 << 10, sample_rows=1000).compute()
    pd.testing.assert_frame_equal(got, exp.reset_index(drop=True))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        read_csv(path, on_bad_lines="warn", chunk_bytes=8 << 10, sample_rows=1000).compute()
    text = " ".join(str(x.message) for x in w)
    assert "skipped" in text and "many" in text


def test_wrong_number_of_fields_names_the_line(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("a,b\n1,2\n3,4,5\n6,7\n")
    with pytest.raises(DatasetError, match=r"f\.csv, line 3: expected 2 fields, found 3"):
        read_csv(str(path), sample_rows=1).compute()


def test_headers_must_agree(tmp_path):
    (tmp_path / "a.csv").write_text("k,x\n1,2\n")
    (tmp_path / "b.csv").write_text("k,z\n1,2\n")
    with pytest.raises(DatasetError, match="b.csv: the header k, z differs"):
        read_csv(str(tmp_path / "*.csv"), sample_rows=1).compute()


def test_unknown_option_and_column_are_clear(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(TypeError, match="unsupported option.*nrows"):
        read_csv(str(path), nrows=3)
    with pytest.raises(DatasetError, match="no column 'c'"):
        read_csv(str(path), usecols=["a", "c"])


def test_quoted_newlines_are_detected_and_the_file_streamed(tmp_path):
    """A line break inside a quoted field (seen in the sample) turns byte-range splitting
    off: the file is streamed, and rows stay whole."""
    path = tmp_path / "f.csv"
    rows = [f'{i},"line {i}\nsecond part"' if i % 7 == 0 else f"{i},plain {i}" for i in range(3000)]
    path.write_text("a,b\n" + "\n".join(rows) + "\n")
    raw = read_csv(str(path), chunk_bytes=4096)
    assert all(
        isinstance(p.piece, RowChunk)
        for p in raw._node.source.discover(__import__("hpcframe.comm", fromlist=["Comm"]).Comm())
    )
    pd.testing.assert_frame_equal(raw.compute(), pd.read_csv(path))


def test_lowering_block_rows_after_a_query_rediscovers(tmp_path, monkeypatch):
    """Byte ranges have estimated row counts: they must never be cut by rows, so a smaller
    ``block_rows`` later makes the source cut its files again instead."""
    from hpcframe.config import config

    path = tmp_path / "f.csv"
    flights(6000).to_csv(path, index=False)
    raw = read_csv(str(path), chunk_bytes=64 << 10)
    assert raw.len().compute() == 6000
    monkeypatch.setattr(config, "block_rows", 700)
    pd.testing.assert_frame_equal(raw.compute(), pd.read_csv(path))
    assert all(p.num_rows <= 700 for p in known_partitions(raw.node.scan().source))


@pytest.mark.parametrize("block_rows", [None, 1000])
def test_compressed_files_estimate_their_rows_not_the_chunk_capacity(tmp_path, monkeypatch, block_rows):
    """A compressed file's partitions say how many rows it probably has: the last chunk of
    a file holds the estimated rest, not a full chunk (12 small .xz files once claimed
    6,967,128 rows for 336,776). Earlier chunks hold exactly their rows."""
    from hpcframe.comm import Comm
    from hpcframe.config import config

    if block_rows:
        monkeypatch.setattr(config, "block_rows", block_rows)
    frames = []
    for i in range(12):
        df = flights(2500 + 100 * i, seed=i)
        p = str(tmp_path / f"m{i:02d}.csv")
        df.to_csv(p, index=False)
        compress(p, "xz")
        os.remove(p)
        frames.append(df)
    raw = read_csv(str(tmp_path / "m*.csv.xz"))
    source = raw._node.source
    assert source.exact_row_counts is False
    parts = source.discover(Comm())
    actual = sum(len(f) for f in frames)
    estimate = sum(p.num_rows for p in parts)
    assert abs(estimate - actual) <= 0.1 * actual, (estimate, actual)
    for i, f in enumerate(frames):
        mine = [p for p in parts if p.path.endswith(f"m{i:02d}.csv.xz")]
        assert mine[-1].piece.last and not any(p.piece.last for p in mine[:-1])
        assert abs(sum(p.num_rows for p in mine) - len(f)) <= 0.1 * len(f)
        assert sum(p.nbytes for p in mine) == os.path.getsize(mine[0].path)
    exp = pd.concat([pd.read_csv(tmp_path / f"m{i:02d}.csv.xz") for i in range(12)], ignore_index=True)
    pd.testing.assert_frame_equal(raw.compute(), exp)


OPTION_CASES = {
    # pandas: names= without header= means the file has no header line
    "names_without_header": ("1,2\n3,4\n5,6\n", {"names": ["x", "y"]}),
    # one word, not its characters
    "na_values_one_string": ("a,b\nfoo,1\no,2\nbar,3\n", {"na_values": "foo"}),
    "na_values_numbers": ("a,b\nfoo,1\no,-999\nbar,3\n", {"na_values": [-999]}),
    # pandas' default missing-value words include None and <NA>
    "default_na_words": ("a,b\nNone,1\n<NA>,2\n4,3\n", {}),
    # pandas' bool words only: 1 and 0 are not bools
    "bool_words": ("a,b\n1,True\nTrue,False\n0,true\n", {}),
    "more_bool_words": ("a,b\nyes,1\nno,2\n", {"true_values": ["yes"], "false_values": ["no"]}),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_options_read_as_pandas_reads_them(tmp_path, case):
    """Regression (session 38's randomized CSV runs): ``names=`` dropped the first line,
    ``na_values="foo"`` took its characters and ``[-999]`` failed, ``None``/``<NA>`` were not
    missing, and ``1``/``0`` made a column of bools (Arrow's defaults)."""
    text, kw = OPTION_CASES[case]
    path = tmp_path / "f.csv"
    path.write_text(text)
    pd.testing.assert_frame_equal(read_csv(str(path), **kw).compute(), pd.read_csv(path, **kw))


def test_na_values_per_column_is_refused_clearly(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("a,b\nfoo,1\n")
    with pytest.raises(ValueError, match="na_values per column"):
        read_csv(str(path), na_values={"a": ["foo"]}).compute()


def test_old_mac_line_ends_are_refused_not_read_as_no_rows(tmp_path):
    """Regression (session 38's randomized CSV runs): a file whose lines end with '\\r'
    alone (documented as unsupported) read as 0 rows without an error."""
    path = tmp_path / "cr.csv"
    path.write_bytes(b"a,b\r1,2\r3,4\r")
    with pytest.raises(DatasetError, match=r"end with '\\r' alone.*tr "):
        read_csv(str(path)).compute()


def test_a_quoted_line_break_after_the_sample_across_a_range_end_is_refused(tmp_path):
    """Regression (session 38's randomized CSV runs): a quoted field with a line break that
    the type sample did not see, where a byte range ends inside it, came back as two rows
    without an error. Such a range holds an odd number of quotes: refused with the option
    that reads it; the option gives pandas' rows."""
    rows = [f"{i},v{i}" for i in range(300)]
    rows[137] = '137,"x\n7,z"'
    path = tmp_path / "nl.csv"
    path.write_text("a,b\n" + "\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match="quoted field with a line break.*newlines_in_values=True"):
        read_csv(str(path), sample_rows=50, chunk_bytes=1024).compute()
    got = read_csv(str(path), sample_rows=50, chunk_bytes=1024, newlines_in_values=True).compute()
    pd.testing.assert_frame_equal(got, pd.read_csv(path))


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"sep": r"\s+"}, ValueError, "must be one character"),
        ({"sep": "::"}, ValueError, "must be one character"),
        ({"sep": "\\t"}, ValueError, r"sep=chr\(9\)"),
        ({"sep": None}, ValueError, "guessing the separator"),
        ({"dtype": "float64"}, TypeError, "dtype must be a dict"),
    ],
    ids=["regex", "two-characters", "backslash-t", "none", "one-dtype"],
)
def test_unsupported_separators_and_dtypes_are_named(tmp_path, kw, error, match):
    """Regression (session 38's randomized CSV runs): these gave Arrow's or Python's own
    messages (``only single character unicode strings``, ``'str' object has no attribute
    'items'``), or (``sep=None``) one column of unsplit lines."""
    path = tmp_path / "f.csv"
    path.write_text("a;b\n1;2\n")
    with pytest.raises(error, match=match):
        read_csv(str(path), **kw).compute()


def test_a_header_naming_a_column_twice_is_named(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("a,a,b\n1,2,3\n")
    with pytest.raises(DatasetError, match="names 'a' more than once"):
        read_csv(str(path)).compute()


@pytest.mark.parametrize("rows", [300, 3000])
def test_the_line_of_a_short_row_is_its_own_not_an_earlier_longer_one(tmp_path, rows):
    """Regression (session 38's failure probes): the error of a row with too few fields named
    the first line that *started* with the row's text (``1,x`` in ``1,x1,0.28``)."""
    path = tmp_path / "short.csv"
    lines = [f"{i},x{i},0.5" for i in range(rows)]
    path.write_text("a,b,c\n" + "\n".join(lines) + "\n1,x\n")
    with pytest.raises(DatasetError, match=rf"line {rows + 2}: expected 3 fields, found 2"):
        read_csv(str(path)).compute()


def test_quote_characters_inside_unquoted_fields_are_read_as_characters(tmp_path):
    """The check for a quoted field crossing a byte range's end looks at quotes that open a
    field only: inch marks (``12" pipe``) at the end of every range are read as pandas reads
    them."""
    path = tmp_path / "inches.csv"
    path.write_text("a,b\n" + "".join(f'{i},{i}" pipe\n' for i in range(300)))
    got = read_csv(str(path), sample_rows=50, chunk_bytes=1024).compute()
    pd.testing.assert_frame_equal(got, pd.read_csv(path))
