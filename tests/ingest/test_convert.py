"""``hpcframe convert`` in one process (under mpiexec: test_mpi_convert.py): ``--overwrite``
stays inside the destination, a bad manifest is a clear error on every rank (no hang),
OSErrors keep their file name, exit codes, and ``--compression`` checked up front."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

import hpcframe as hf
from hpcframe.cli import main
from hpcframe.io.writers import MANIFEST
from tests.helpers.mpi import run_mpi

pytestmark = pytest.mark.timeout(120)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], env={"HPCFRAME_DEBUG": ""})


@pytest.fixture
def src(tmp_path):
    p = tmp_path / "src.csv"
    pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}).to_csv(p, index=False)
    return p


def _written(tmp_path, src):
    out = tmp_path / "out"
    r = invoke("convert", src, out)
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("entry", ["../victim/keep.txt", "ABS", "sub/../../victim/keep.txt"])
def test_overwrite_refuses_manifest_entries_outside_the_destination(tmp_path, src, entry):
    victim = tmp_path / "victim"
    victim.mkdir()
    keep = victim / "keep.txt"
    keep.write_text("precious")
    out = _written(tmp_path, src)
    m = json.loads((out / MANIFEST).read_text())
    entry = str(keep) if entry == "ABS" else entry
    m["files"].append({"path": entry, "rows": 0, "bytes": 0, "leaf": 0})
    (out / MANIFEST).write_text(json.dumps(m))
    r = invoke("convert", src, out, "--overwrite")
    assert r.exit_code == 1, r.output
    assert keep.read_text() == "precious"
    assert MANIFEST in r.output and entry in r.output and "Traceback" not in r.output


def test_overwrite_refuses_a_leaf_record_outside_the_staging_folder(tmp_path, src):
    from hpcframe.io.writers import LEAVES

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    # a run that stops before its commit (injected disk full) leaves its leaf records
    r = CliRunner().invoke(
        main,
        ["convert", str(src), str(out)],
        env={"HPCFRAME_DEBUG": "", "HPCFRAME_TEST_FAULT": "manifest:enospc"},
    )
    assert r.exit_code == 1, r.output
    record = tmp_path / ".out.hpcframe-staging" / LEAVES / "leaf-000000.json"
    assert record.exists()
    record.write_text(json.dumps([{"path": "../../victim.txt", "rows": 1, "bytes": 1, "leaf": 0}]))
    r = invoke("convert", src, out)
    assert r.exit_code == 1, r.output
    assert victim.read_text() == "precious" and "leaf-000000.json" in r.output


@pytest.mark.parametrize("manifest", ["[]", '{"plan": 5}', '{"files": 3}', "not json"])
def test_bad_manifest_is_a_clear_error(tmp_path, src, manifest):
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text(manifest)
    r = invoke("convert", src, out, "--overwrite")
    assert r.exit_code == 1, r.output
    assert "is not an hpcframe manifest" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("manifest", ["[]", '{"plan": 5}'])
def test_bad_manifest_fails_every_rank_without_hanging(tmp_path, src, manifest):
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text(manifest)
    proc = run_mpi(2, ["-m", "hpcframe.cli", "convert", str(src), str(out), "--overwrite"], timeout=60)
    assert proc.returncode != 0
    assert "is not an hpcframe manifest" in proc.stderr, proc.stderr


def test_existing_destination_is_a_usage_error_exit_2(tmp_path, src):
    out = _written(tmp_path, src)
    (out / "other.txt").write_text("x")
    r = invoke("convert", src, tmp_path / "out2")
    assert r.exit_code == 0
    r = invoke("convert", tmp_path / "src.csv", out, "--to", "csv")
    assert r.exit_code == 2, r.output
    assert "--overwrite" in r.output


def test_oserror_keeps_the_file_name_through_bcast(tmp_path, src):
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).mkdir()  # reading it fails with IsADirectoryError
    r = invoke("convert", src, out)
    assert r.exit_code == 1, r.output
    assert str(out / MANIFEST) in r.output


def test_debug_shows_the_traceback(tmp_path, src):
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text("[]")
    r = CliRunner().invoke(main, ["--debug", "convert", str(src), str(out)])
    assert r.exit_code == 1 and "Traceback" in r.output, r.output


@pytest.mark.parametrize(
    "to,codec", [("parquet", "lzf"), ("parquet", "bogus"), ("hdf5", "zstd"), ("csv", "gzip")]
)
def test_bad_compression_is_refused_up_front(tmp_path, src, to, codec):
    out = tmp_path / "out"
    r = invoke("convert", src, out, "--to", to, "--compression", codec)
    assert r.exit_code == 2, r.output
    assert "--compression" in r.output and not out.exists()


@pytest.mark.parametrize(
    "to,codec", [("parquet", "none"), ("parquet", "LZ4"), ("hdf5", "none"), ("hdf5", "lzf")]
)
def test_good_compression_is_accepted(tmp_path, src, to, codec):
    out = tmp_path / ("out.h5" if to == "hdf5" else "out")
    r = invoke("convert", src, out, "--to", to, "--compression", codec)
    assert r.exit_code == 0, r.output
    got = (hf.read_hdf(out) if to == "hdf5" else hf.read_parquet(out)).compute()
    assert list(got["a"]) == [1, 2, 3]


def test_library_convert_checks_compression(tmp_path, src):
    from hpcframe.convert import convert

    with pytest.raises(ValueError, match="--compression"):
        convert(str(src), str(tmp_path / "o"), "hdf5", compression="snappy")


def test_a_tab_separator_written_as_backslash_t(tmp_path):
    """Regression (session 38's randomized CSV runs): ``--sep '\\t'`` (what a shell passes
    for a tab written as an escape) failed with Python's "only single character unicode
    strings" message; it now means a tab."""
    src = tmp_path / "tab.csv"
    src.write_text("a\tb\n1\t2\n3\t4\n")
    out = tmp_path / "out"
    r = invoke("convert", src, out, "--sep", "\\t")
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(hf.read_parquet(str(out)).compute(), pd.read_csv(src, sep="\t"))
