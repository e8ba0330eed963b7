"""``hpcframe run``'s options and what they write: the file mode follows the umask,
``--output`` does not inherit the spec's ``overwrite``, an unknown ``--output`` suffix lists
every known one, and a filter given with ``--set filter=...`` that cannot run on the data's
schema (``.str`` on a number column, a literal too large for any column) is a usage error
naming the filter before anything runs (a ``QueryError`` from the query API)."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest
from click.testing import CliRunner

from hpcframe.cli import main
from hpcframe.io.output import FORMATS, write_table
from tests.helpers.cli import write_spec

SPEC = """
input: {{path: {data}}}
filter: "dep_delay > -5"
groupby: [month]
aggregate: {{dep_delay: mean}}
output: {{path: {out}, overwrite: true}}
"""


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], env={"HPCFRAME_DEBUG": ""})


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_output_mode_follows_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        path = write_table(pd.DataFrame({"a": [1]}), str(tmp_path / "o.csv"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask


def test_output_option_does_not_inherit_the_spec_overwrite(tmp_path, parquet_dir):
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out=tmp_path / "spec.parquet"))
    other = tmp_path / "other.parquet"
    other.write_text("precious")
    r = invoke("run", spec, "--output", other)
    assert r.exit_code == 2, r.output
    assert "exists already" in r.output and other.read_text() == "precious"
    r = invoke("run", spec, "--output", other, "--overwrite", "-q")
    assert r.exit_code == 0, r.output
    assert len(pd.read_parquet(other)) > 0


@pytest.mark.parametrize("name", ["out.xlsx", "out.json", "out"])
def test_output_with_an_unknown_suffix_lists_every_suffix(tmp_path, parquet_dir, name):
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out=tmp_path / "spec.parquet"))
    r = invoke("run", spec, "--output", tmp_path / name)
    assert r.exit_code == 2, r.output
    assert "--output" in r.output
    for suffixes in FORMATS.values():
        for s in suffixes:
            assert s in r.output
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    "flt,words",
    [
        ("dep_delay.str.contains('a')", ["str.contains needs a text column", "'dep_delay'", "float64"]),
        ("dep_delay.str.startswith('a')", ["str.startswith needs a text column"]),
        ("dep_delay > 10**5000", ["too large", "float64"]),
        ("dep_delay < -10**400 or dep_delay > 1", ["too large"]),
        ("dep_delay.between(0, 10**400)", ["too large"]),
    ],
)
def test_filters_that_fail_on_the_schema_are_usage_errors(tmp_path, parquet_dir, flt, words):
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out=tmp_path / "o.parquet"))
    r = invoke("run", spec, "--set", f"filter={flt}")
    assert r.exit_code == 2, r.output
    assert "filter" in r.output and "unexpected" not in r.output
    for w in words:
        assert w in r.output
    assert len(r.output) < 1000  # no 5000-digit number in the message
    assert not (tmp_path / "o.parquet").exists()


def test_text_filter_on_a_text_column_still_works(tmp_path, parquet_dir):
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out=tmp_path / "o.parquet"))
    r = invoke("run", spec, "--set", "filter=carrier.str.contains('A') and dep_delay > 1e300")
    assert r.exit_code == 0, r.output


def test_query_api_raises_query_error():
    import hpcframe as hf
    from hpcframe.query import QueryError, apply_query

    f = hf.from_pandas(pd.DataFrame({"x": [1.0, 2.0], "s": ["a", "b"]}))
    with pytest.raises(QueryError, match="needs a text column"):
        apply_query(f, "x.str.endswith('a')")
    with pytest.raises(QueryError, match="too large"):
        apply_query(f, "x == 10**400")
    assert len(apply_query(f, "s.str.endswith('a')").compute()) == 1
