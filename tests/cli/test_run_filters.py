"""A filter that cannot run on the data's schema (``.str`` on a number column, a literal too
large for any column) is refused before anything runs: a usage error naming the filter from
``hpcframe run --set filter=...``, a ``QueryError`` from the query API."""
from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from hpcframe.cli import main
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


@pytest.mark.parametrize("flt,words", [
    ("dep_delay.str.contains('a')", ["str.contains needs a text column", "'dep_delay'",
                                     "float64"]),
    ("dep_delay.str.startswith('a')", ["str.startswith needs a text column"]),
    ("dep_delay > 10**5000", ["too large", "float64"]),
    ("dep_delay < -10**400 or dep_delay > 1", ["too large"]),
    ("dep_delay.between(0, 10**400)", ["too large"]),
])
def test_filters_that_fail_on_the_schema_are_usage_errors(tmp_path, parquet_dir, flt, words):
    spec = write_spec(tmp_path / "job.yaml",
                      SPEC.format(data=parquet_dir, out=tmp_path / "o.parquet"))
    r = invoke("run", spec, "--set", f"filter={flt}")
    assert r.exit_code == 2, r.output
    assert "filter" in r.output and "unexpected" not in r.output
    for w in words:
        assert w in r.output
    assert len(r.output) < 1000  # no 5000-digit number in the message
    assert not (tmp_path / "o.parquet").exists()


def test_text_filter_on_a_text_column_still_works(tmp_path, parquet_dir):
    spec = write_spec(tmp_path / "job.yaml",
                      SPEC.format(data=parquet_dir, out=tmp_path / "o.parquet"))
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
