"""Where and how ``hpcframe run`` writes its output: the file mode follows the umask,
``--output`` does not inherit the spec's ``overwrite``, an unknown ``--output`` suffix lists
every known one."""
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
    spec = write_spec(tmp_path / "job.yaml",
                      SPEC.format(data=parquet_dir, out=tmp_path / "spec.parquet"))
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
    spec = write_spec(tmp_path / "job.yaml",
                      SPEC.format(data=parquet_dir, out=tmp_path / "spec.parquet"))
    r = invoke("run", spec, "--output", tmp_path / name)
    assert r.exit_code == 2, r.output
    assert "--output" in r.output
    for suffixes in FORMATS.values():
        for s in suffixes:
            assert s in r.output
    assert not (tmp_path / name).exists()
