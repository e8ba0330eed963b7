"""Job specs: validation names the key, overrides, every example spec loads, and the atomic
output writer."""

from __future__ import annotations

import glob
import os

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from hpcframe.io.output import OutputExistsError, format_of, write_table
from hpcframe.spec import AggSpec, SpecError, apply_overrides, load_spec, parse_spec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "configs", "examples", "*.yaml")))


def test_there_are_example_specs():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_every_example_spec_validates(path):
    spec = load_spec(path, check_paths=False)
    assert spec.input.path and spec.output is not None and spec.aggregate


def base(parquet_dir, **changes):
    data = {
        "input": {"path": parquet_dir},
        "groupby": ["carrier"],
        "aggregate": {"dep_delay": "mean"},
        "output": {"path": "out.parquet"},
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


# (changes to the valid spec, the key path named in the error, words in the message)
BAD = [
    ({"colour": 1}, "colour", "Valid keys"),
    ({"input": {"path": "nowhere/"}}, "input.path", "does not exist"),
    ({"input": {"paht": "x"}}, "input.paht", "Did you mean 'path'"),
    ({"input": {"path": "DIR", "format": "orc"}}, "input.format", "parquet, hdf5"),
    ({"input": {"path": "DIR", "key": "t"}}, "input.key", "HDF5"),
    ({"input": {"path": "DIR", "columns": 5}}, "input.columns", "list of column names"),
    ({"input": {"path": "DIR", "columns": ["a", 3]}}, "input.columns[1]", "column name"),
    ({"filter": 3}, "filter", "query string"),
    ({"filter": ""}, "filter", "query string"),
    ({"groupby": [1]}, "groupby[0]", "column name"),
    ({"groupby": ["carrier", "carrier"]}, "groupby", "twice"),
    ({"aggregate": {"dep_delay": "avg"}}, "aggregate.dep_delay", "unknown aggregation 'avg'"),
    ({"aggregate": {"dep_delay": ["mean", "medain"]}}, "aggregate.dep_delay[1]", "Did you mean 'mean'"),
    ({"aggregate": {"dep_delay": 5}}, "aggregate.dep_delay", "aggregation name"),
    ({"aggregate": {"n": {"column": "x"}}}, "aggregate.n.agg", "required"),
    ({"aggregate": {"n": {"column": "x", "agg": "count", "as": 1}}}, "aggregate.n.as", "Valid"),
    ({"aggregate": {"carrier": "count"}}, "aggregate.carrier", "groupby"),
    ({"aggregate": None}, "aggregate", "groupby needs an aggregate"),
    ({"options": {"dropna": "yes"}}, "options.dropna", "true or false"),
    ({"options": {"ascending": True}}, "options.ascending", "dropna, sort"),
    (
        {"subtotals": True, "aggregate": {"dep_delay": "mean", "arr_delay": "sum"}},
        "subtotals",
        "one aggregation",
    ),
    ({"subtotals": True, "aggregate": {"dep_delay": "nunique"}}, "subtotals", "does not support"),
    ({"subtotals": True, "groupby": None, "aggregate": {"dep_delay": "sum"}}, "subtotals", "needs groupby"),
    ({"subtotals": "yes"}, "subtotals", "true or false"),
    ({"output": {"path": "out.xlsx"}}, "output.path", "output.format"),
    ({"output": {"path": "o.parquet", "format": "json"}}, "output.format", "parquet, hdf5, csv"),
    ({"output": {"path": "o.parquet", "overwrite": "no"}}, "output.overwrite", "true or false"),
    ({"output": {}}, "output.path", "required"),
    ({"assign": {"z": ["x"]}}, "assign.z", "string"),
    ({"assign": "z = x"}, "assign", "new column names"),
]


@pytest.mark.parametrize("changes,key,words", BAD, ids=[b[1] for b in BAD])
def test_validation_names_the_key(parquet_dir, changes, key, words):
    changes = {
        k: (
            {kk: (parquet_dir if vv == "DIR" else vv) for kk, vv in v.items()}
            if isinstance(v, dict) and k == "input"
            else v
        )
        for k, v in changes.items()
    }
    with pytest.raises(SpecError) as info:
        parse_spec(base(parquet_dir, **changes), source="job.yaml")
    err = info.value
    assert err.key == key, str(err)
    assert str(err).startswith(f"job.yaml: {key}: ")
    if words:
        assert words in str(err)


def test_the_spec_must_be_a_mapping_with_input():
    with pytest.raises(SpecError, match="mapping"):
        parse_spec(["input"])
    with pytest.raises(SpecError) as info:
        parse_spec({"filter": "x > 1"})
    assert info.value.key == "input"


def test_yaml_errors_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML at line"):
        load_spec(bad)
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")


def test_aggregate_forms(parquet_dir):
    spec = parse_spec(
        base(
            parquet_dir,
            aggregate={
                "dep_delay": ["mean", "max"],
                "arr_delay": "sum",
                "n": {"column": "dep_delay", "agg": "size"},
            },
        )
    )
    assert [(a.name, a.column, a.agg) for a in spec.aggregate] == [
        ("dep_delay_mean", "dep_delay", "mean"),
        ("dep_delay_max", "dep_delay", "max"),
        ("arr_delay", "arr_delay", "sum"),
        ("n", "dep_delay", "size"),
    ]
    assert isinstance(spec.aggregate[0], AggSpec)


def test_shorthands_and_defaults(parquet_dir):
    spec = parse_spec(
        {"input": parquet_dir, "groupby": "carrier", "aggregate": {"dep_delay": "mean"}, "output": "x.h5"}
    )
    assert spec.input.format == "parquet" and spec.groupby == ("carrier",)
    assert spec.output.format == "hdf5" and spec.output.overwrite is False
    assert spec.dropna and spec.sort and not spec.subtotals


def test_overrides():
    data = {"input": "a/", "output": "o.parquet", "options": {"sort": True}}
    out = apply_overrides(
        data,
        [
            "filter=carrier == 'UA'",
            "output.overwrite=true",
            "options.sort=false",
            "groupby=[a, b]",
            "assign.z=x + 1",
            "input.path=b/",
        ],
    )
    assert out["filter"] == "carrier == 'UA'"
    assert out["output"] == {"path": "o.parquet", "overwrite": True}
    assert out["options"]["sort"] is False and out["groupby"] == ["a", "b"]
    assert out["assign"] == {"z": "x + 1"} and out["input"] == {"path": "b/"}
    assert data["output"] == "o.parquet"  # the original is not changed
    with pytest.raises(SpecError, match="KEY=VALUE"):
        apply_overrides(data, ["filter"])
    with pytest.raises(SpecError, match="not a mapping"):
        apply_overrides({"filter": "x"}, ["filter.y=1"])


# ------------------------------------------------------------------ the atomic output writer
def test_format_of():
    assert format_of("a.parquet") == "parquet" and format_of("A.H5") == "hdf5"
    assert format_of("x.csv.gz") == "csv" and format_of("x.txt") is None


def test_write_refuses_to_overwrite_and_leaves_no_temp(tmp_path):
    df = pd.DataFrame({"a": [1, 2]})
    path = tmp_path / "o.parquet"
    write_table(df, path)
    with pytest.raises(OutputExistsError, match="exists already"):
        write_table(pd.DataFrame({"a": [9]}), path)
    assert pd.read_parquet(path).a.tolist() == [1, 2]
    write_table(pd.DataFrame({"a": [9]}), path, overwrite=True)
    assert pd.read_parquet(path).a.tolist() == [9]
    assert os.listdir(tmp_path) == ["o.parquet"]


@pytest.mark.parametrize("fmt", ["parquet", "hdf5"])
def test_a_failing_writer_leaves_nothing(tmp_path, fmt):
    bad = pd.DataFrame({"a": pd.Series([1, "x", 2.5], dtype=object)})
    if fmt == "hdf5":
        bad = pd.DataFrame({"a/b": [1, 2]})
    with pytest.raises(Exception):  # noqa: B017 - any error, as long as nothing is left
        write_table(bad, tmp_path / f"o.{'h5' if fmt == 'hdf5' else fmt}")
    assert os.listdir(tmp_path) == []


def test_write_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "no" / "o.csv")
    with pytest.raises(ValueError, match="output format"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "o.txt")
    with pytest.raises(OutputExistsError, match="directory"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path)


def test_hdf5_output_reads_back_with_read_hdf(tmp_path):
    df = pd.DataFrame(
        {
            "s": pd.array(["a", None, "ünï"], dtype="str"),
            "i": np.array([1, 2, 3], dtype="int32"),
            "f": [1.5, np.nan, 3.0],
            "b": [True, False, True],
            "t": pd.to_datetime(["2013-01-01 00:00:00", "2013-01-02 10:00:00", "2014-01-01 00:00:00"]),
            "c": pd.Categorical(["x", "y", "x"]),
        }
    )
    path = tmp_path / "o.h5"
    write_table(df, path)
    got = hf.read_hdf(path).compute()
    assert list(got.columns) == list(df.columns)
    assert got.s.tolist() == ["a", "", "ünï"]  # HDF5 strings have no null
    assert got.i.tolist() == [1, 2, 3] and got.b.tolist() == [True, False, True]
    np.testing.assert_array_equal(got.f.to_numpy(), df.f.to_numpy())
    assert got.c.tolist() == ["x", "y", "x"]
    assert pd.to_datetime(got.t, unit="ns").tolist() == df.t.tolist()
