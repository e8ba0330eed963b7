"""``hpcframe info`` and ``hpcframe run`` through click's CliRunner (in this process, local
engine): outputs equal pandas, exit codes, and no half-written files."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from click.testing import CliRunner

import hpcframe as hf
from hpcframe.cli import main
from tests.helpers.cli import write_spec


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env or {"HPCFRAME_DEBUG": ""})


def read_output(path) -> pd.DataFrame:
    path = str(path)
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    if path.endswith(".h5"):
        return hf.read_hdf(path).compute()
    return pd.read_csv(path)


def by_day_pandas(df: pd.DataFrame) -> pd.DataFrame:
    """The pandas result of SPEC below."""
    sel = df[df.carrier.isin(["AA", "UA"]) & (df.dep_delay > -5)]
    out = sel.groupby(["month", "day"]).agg(
        dep_delay_mean=("dep_delay", "mean"),
        dep_delay_max=("dep_delay", "max"),
        arr_delay=("arr_delay", "mean"),
        flights=("dep_delay", "count"),
    )
    return out.reset_index()


SPEC = """
input: {{path: {data}}}
filter: "carrier in ['AA', 'UA'] and dep_delay > -5"
groupby: [month, day]
aggregate:
  dep_delay: [mean, max]
  arr_delay: mean
  flights: {{column: dep_delay, agg: count}}
output: {{path: {out}}}
"""


def assert_same(got: pd.DataFrame, want: pd.DataFrame):
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True),
        want.reset_index(drop=True),
        check_dtype=False,
        check_exact=False,
        rtol=1e-12,
    )


# ------------------------------------------------------------------------------ basics
def test_version_and_help():
    r = invoke("--version")
    assert r.exit_code == 0 and r.output.strip() == f"hpcframe {hf.__version__}"
    for args in ([], ["info"], ["run"]):
        r = invoke(*args, "--help")
        assert r.exit_code == 0, r.output
        assert "Exit codes" in r.output and "Examples" in r.output


def test_usage_error_exit_code_2(tmp_path):
    assert invoke("run").exit_code == 2  # missing SPEC
    assert invoke("run", "x.yaml", "--bogus").exit_code == 2


# ------------------------------------------------------------------------------ info
def test_info_parquet(parquet_dir, flights):
    r = invoke("info", parquet_dir)
    assert r.exit_code == 0, r.output
    out = r.output
    assert f"rows        {len(flights):,}" in out
    assert "partitions  6 (row groups)" in out and "files       3" in out
    assert "hive        month" in out and "month (hive)" in out
    for col in ["carrier", "dep_delay", "time_hour"]:
        assert col in out
    assert "float64" in out and "str" in out and "datetime64" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("distance "))
    assert str(flights.distance.min()) in line and str(flights.distance.max()) in line


def test_info_json_and_partitions(parquet_dir, flights):
    r = invoke("info", parquet_dir, "--json")
    info = json.loads(r.output)
    assert info["rows"] == len(flights) and len(info["partitions"]) == 6
    assert info["hive"] == ["month"]
    r = invoke("info", parquet_dir, "--partitions")
    assert r.output.count("part-0.parquet") == 6


def test_info_hdf5(hdf5_file, flights):
    r = invoke("info", hdf5_file)
    assert r.exit_code == 0, r.output
    assert "format      hdf5" in r.output and f"{len(flights):,}" in r.output


def test_info_missing_path_exit_2(tmp_path):
    r = invoke("info", tmp_path / "nope")
    assert r.exit_code == 2
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------ run
@pytest.mark.parametrize("ext", ["parquet", "h5", "csv"])
def test_run_writes_what_pandas_computes(tmp_path, parquet_dir, flights_ordered, ext):
    out = tmp_path / f"by_day.{ext}"
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out=out))
    r = invoke("run", spec)
    assert r.exit_code == 0, r.output
    assert "rows out: " in r.output and str(out) in r.output
    assert_same(read_output(out), by_day_pandas(flights_ordered))
    assert sorted(os.listdir(tmp_path)) == sorted(["job.yaml", out.name])


def test_run_refuses_to_overwrite(tmp_path, parquet_dir, flights_ordered):
    out = tmp_path / "o.parquet"
    out.write_text("precious")
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out=out))
    r = invoke("run", spec)
    assert r.exit_code == 2
    assert "exists already" in r.stderr and "overwrite" in r.stderr
    assert out.read_text() == "precious"
    r = invoke("run", spec, "--overwrite", "-q")
    assert r.exit_code == 0 and r.output == ""
    assert_same(read_output(out), by_day_pandas(flights_ordered))


def test_overrides_and_output_option(tmp_path, parquet_dir, flights_ordered):
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out="unused.csv"))
    out = tmp_path / "ua.csv"
    r = invoke("run", spec, "--set", "filter=carrier == 'UA'", "--set", "groupby=[origin]", "--output", out)
    assert r.exit_code == 0, r.output
    sel = flights_ordered[flights_ordered.carrier == "UA"]
    want = (
        sel.groupby("origin")
        .agg(
            dep_delay_mean=("dep_delay", "mean"),
            dep_delay_max=("dep_delay", "max"),
            arr_delay=("arr_delay", "mean"),
            flights=("dep_delay", "count"),
        )
        .reset_index()
    )
    assert_same(read_output(out), want)
    assert not os.path.exists("unused.csv")


def test_whole_frame_aggregation_and_assign(tmp_path, parquet_dir, flights_ordered):
    out = tmp_path / "total.parquet"
    spec = write_spec(
        tmp_path / "job.yaml",
        f"""
input: {parquet_dir}
assign: {{gain: "dep_delay - arr_delay", km: "distance * 1.609"}}
filter: "gain > 0 and origin == 'JFK'"
aggregate: {{gain: [mean, max], km: sum, rows: {{column: gain, agg: size}}}}
output: {out}
""",
    )
    r = invoke("run", spec)
    assert r.exit_code == 0, r.output
    df = flights_ordered.assign(
        gain=flights_ordered.dep_delay - flights_ordered.arr_delay, km=flights_ordered.distance * 1.609
    )
    sel = df[(df.gain > 0) & (df.origin == "JFK")]
    want = pd.DataFrame(
        {
            "gain_mean": [sel.gain.mean()],
            "gain_max": [sel.gain.max()],
            "km": [sel.km.sum()],
            "rows": [len(sel)],
        }
    )
    assert_same(read_output(out), want)


def test_select_rows_without_aggregate(tmp_path, parquet_dir, flights_ordered):
    out = tmp_path / "late.parquet"
    spec = write_spec(
        tmp_path / "job.yaml",
        f"""
input: {{path: {parquet_dir}, columns: [carrier, dep_delay, time_hour]}}
filter: "dep_delay > 60 and time_hour < '2013-02-15'"
output: {out}
""",
    )
    r = invoke("run", spec)
    assert r.exit_code == 0, r.output
    df = flights_ordered[["carrier", "dep_delay", "time_hour"]]
    want = df[(df.dep_delay > 60) & (df.time_hour < pd.Timestamp("2013-02-15"))]
    got = read_output(out)
    assert_same(
        got.assign(time_hour=got.time_hour.astype("datetime64[ns]")),
        want.assign(time_hour=want.time_hour.astype("datetime64[ns]")),
    )


def test_subtotals(tmp_path, parquet_dir, flights_ordered):
    out = tmp_path / "sub.csv"
    spec = write_spec(
        tmp_path / "job.yaml",
        f"""
input: {parquet_dir}
groupby: [origin, carrier]
aggregate: {{dep_delay: mean}}
subtotals: true
output: {out}
""",
    )
    r = invoke("run", spec)
    assert r.exit_code == 0, r.output
    got = pd.read_csv(out)
    detail = flights_ordered.groupby(["origin", "carrier"]).dep_delay.mean()
    assert len(got) == len(detail) + 3 + 1
    total = got[(got.origin == "All") & (got.carrier == "All")].dep_delay.iloc[0]
    assert total == pytest.approx(flights_ordered.dep_delay.mean(), rel=1e-12)
    jfk = got[(got.origin == "JFK") & (got.carrier == "All")].dep_delay.iloc[0]
    assert jfk == pytest.approx(flights_ordered[flights_ordered.origin == "JFK"].dep_delay.mean())


def test_hdf5_input(tmp_path, hdf5_file, flights):
    out = tmp_path / "o.parquet"
    spec = write_spec(
        tmp_path / "job.yaml",
        f"""
input: {{path: {hdf5_file}, key: flights}}
filter: "carrier.str.startswith('A') or distance.between(500, 1000)"
groupby: carrier
aggregate: {{distance: [sum, nunique]}}
output: {out}
""",
    )
    r = invoke("run", spec)
    assert r.exit_code == 0, r.output
    sel = flights[flights.carrier.str.startswith("A") | flights.distance.between(500, 1000)]
    want = (
        sel.groupby("carrier")
        .agg(distance_sum=("distance", "sum"), distance_nunique=("distance", "nunique"))
        .reset_index()
    )
    assert_same(read_output(out), want)


def test_no_output_prints_the_table(tmp_path, parquet_dir):
    spec = write_spec(
        tmp_path / "job.yaml",
        f"""
input: {parquet_dir}
groupby: origin
aggregate: {{distance: max}}
""",
    )
    r = invoke("run", spec)
    assert r.exit_code == 0, r.output
    assert "JFK" in r.output and "LGA" in r.output and "output:   (none" in r.output
    r = invoke("run", spec, "--json")
    assert json.loads(r.output)["rows_out"] == 3


@pytest.mark.parametrize("flag", ["--explain", "--dry-run"])
def test_explain(tmp_path, parquet_dir, flag):
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out="x.parquet"))
    r = invoke("run", spec, flag)
    assert r.exit_code == 0, r.output
    assert "Scan: parquet" in r.output and "columns read" in r.output
    assert not os.path.exists("x.parquet")


# ------------------------------------------------------------------------------ failures
def test_spec_error_exit_2_one_line_no_temp(tmp_path, parquet_dir):
    out = tmp_path / "o.parquet"
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out=out))
    r = invoke("run", spec, "--set", "filter=carier == 'AA'")
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1, r.stderr
    assert "filter: column 'carier' not found" in r.stderr and "Did you mean 'carrier'" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["job.yaml"]


def test_spec_error_names_the_key(tmp_path, parquet_dir):
    spec = write_spec(
        tmp_path / "job.yaml",
        SPEC.format(data=parquet_dir, out="o.parquet").replace("arr_delay: mean", "arr_delay: avg"),
    )
    r = invoke("run", spec)
    assert r.exit_code == 2
    assert "aggregate.arr_delay: unknown aggregation 'avg'" in r.stderr


def test_query_injection_is_a_usage_error(tmp_path, parquet_dir):
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out="o.parquet"))
    r = invoke("run", spec, "--set", "filter=__import__('os').system('touch pwned')")
    assert r.exit_code == 2 and "not allowed" in r.stderr
    assert not os.path.exists("pwned")


def test_sum_of_strings_is_a_spec_error(tmp_path, parquet_dir):
    spec = write_spec(
        tmp_path / "job.yaml",
        SPEC.format(data=parquet_dir, out="o.parquet").replace("arr_delay: mean", "carrier: sum"),
    )
    r = invoke("run", spec)
    assert r.exit_code == 2 and "aggregate.carrier: sum needs a numeric column" in r.stderr


def test_unreadable_file_exit_1_no_output(tmp_path, parquet_dir):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(parquet_dir, data)
    (data / "month=3" / "part-0.parquet").write_bytes(b"not parquet at all")
    out = tmp_path / "out" / "o.parquet"
    out.parent.mkdir()
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=data, out=out))
    r = invoke("run", spec)
    assert r.exit_code == 1, r.output
    assert "month=3" in r.stderr and "Traceback" not in r.stderr
    assert os.listdir(out.parent) == []


def test_failing_write_exit_1_no_temp(tmp_path, parquet_dir):
    out = tmp_path / "out" / "o.h5"
    out.parent.mkdir()
    spec = write_spec(
        tmp_path / "job.yaml",
        f"""
input: {parquet_dir}
assign: {{"a/b": "distance * 2"}}
groupby: origin
aggregate: {{"a/b": sum}}
output: {out}
""",
    )
    r = invoke("run", spec)
    assert r.exit_code == 1, r.output
    assert "'a/b'" in r.stderr
    assert os.listdir(out.parent) == []


def test_debug_shows_the_traceback(tmp_path, parquet_dir):
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out="o.parquet"))
    r = invoke("--debug", "run", spec, "--set", "filter=nope > 1")
    assert r.exit_code == 2 and "Traceback" in r.stderr
    r = invoke("run", spec, "--set", "filter=nope > 1", env={"HPCFRAME_DEBUG": "1"})
    assert r.exit_code == 2 and "Traceback" in r.stderr
