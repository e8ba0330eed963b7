"""Job specs are untrusted input, and bounded. Their YAML (and profiles'): aliases that
expand to millions of values, self-references, huge integers, deep nesting and huge files are
refused quickly with an error naming the key and the limit, and no error message does work
(repr) proportional to the expanded value; legitimate aliases still work. Their filters: many
and/or terms run like pandas, too deep or too large ones are usage errors (exit 2)."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from hpcframe.jobs import JobError
from hpcframe.jobs.profiles import load_profile
from hpcframe.spec import (
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_VALUES,
    SpecError,
    apply_overrides,
    load_spec,
    parse_spec,
)


def bomb(levels: int = 8, width: int = 9) -> str:
    """A flow sequence of anchors, each level ``width`` aliases of the previous one: a few
    hundred bytes that stand for ``width ** levels`` strings."""
    parts = ["&a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        parts.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "[" + ", ".join(parts) + "]"


def bounded(fn, seconds=10.0, megabytes=30):
    """Run ``fn`` (expected to raise); assert it took little memory and not the minutes the
    unbounded input would take (a generous limit: the machine may be busy; the memory bound
    is the sharp check); return the exception."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - returned to the caller to check
        err = exc
    else:
        err = None
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    assert peak < megabytes * 2**20, f"peak {peak / 2**20:.0f} MB"
    assert err is not None, "no error raised"
    return err


@pytest.mark.parametrize(
    "key", ["subtotals", "groupby", "filter", "aggregate", "options", "assign", "output", "input"]
)
def test_alias_bomb_is_refused_quickly_naming_the_key(tmp_path, parquet_dir, key):
    """A ~400-byte alias bomb took 5.5 s and 760 MB: an error message repr()'d it in full."""
    text = (
        f"input: {parquet_dir}\n{key}: {bomb()}\n"
        if key != "input"
        else f"input: {{path: {parquet_dir}, columns: {bomb()}}}\n"
    )
    assert len(text) < 600
    path = tmp_path / "job.yaml"
    path.write_text(text)
    err = bounded(lambda: load_spec(path))
    assert isinstance(err, SpecError), err
    assert err.key.startswith(key) and f"the limit is {MAX_YAML_VALUES:,}" in str(err)
    assert "aliases" in str(err) and len(str(err)) < 400


def test_value_below_the_limit_gives_a_short_error_cheaply(parquet_dir):
    """5 levels (59,049 strings) is within the limit: the validator's message stays short and
    is built without expanding the value."""
    import yaml

    data = {"input": parquet_dir, "subtotals": yaml.safe_load(bomb(levels=5))}
    err = bounded(lambda: parse_spec(data), megabytes=5)
    assert isinstance(err, SpecError) and err.key == "subtotals"
    assert "true or false" in str(err) and len(str(err)) < 200


def test_shared_python_objects_are_counted_expanded(parquet_dir):
    """parse_spec of a Python mapping (the API, not only files) applies the same limit."""
    inner = ["carrier"] * 1000
    data = {"input": parquet_dir, "groupby": [inner] * 1000}
    err = bounded(lambda: parse_spec(data))
    assert isinstance(err, SpecError) and err.key == "groupby"


@pytest.mark.parametrize(
    "text,key,words",
    [
        ("groupby: &a [*a]\n", "groupby[0]", "refers to itself"),
        ("groupby: 0x" + "f" * 2000 + "\n", "groupby", "integer of 8000 bits is too large"),
        ("groupby: " + "1" * 5000 + "\n", "", "below 2**1024"),
        (
            "groupby: " + "[" * 60 + "]" * 60 + "\n",
            "groupby" + "[0]" * (MAX_YAML_DEPTH - 1),
            f"more than {MAX_YAML_DEPTH} levels",
        ),
        ("groupby: " + "[" * 5000 + "]" * 5000 + "\n", "", "nest"),
    ],
)
def test_other_hostile_yaml(tmp_path, parquet_dir, text, key, words):
    path = tmp_path / "job.yaml"
    path.write_text(f"input: {parquet_dir}\n" + text)
    err = bounded(lambda: load_spec(path))
    assert isinstance(err, SpecError), repr(err)
    assert err.key == key and words in str(err), str(err)
    assert len(str(err)) < 500


def test_huge_file_is_refused(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("input: x\n# " + "x" * MAX_YAML_BYTES + "\n")
    with pytest.raises(SpecError, match=f"the limit is {MAX_YAML_BYTES:,}"):
        load_spec(path)


def test_binary_file_is_a_spec_error(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_bytes(b"input: \xff\xfe\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(path)


def test_override_values_are_bounded_too(parquet_dir):
    err = bounded(lambda: apply_overrides({"input": parquet_dir}, [f"groupby={bomb()}"]))
    assert isinstance(err, SpecError) and err.key.startswith("groupby")
    assert "--set groupby" in str(err)


def test_ordinary_aliases_still_work(tmp_path, parquet_dir):
    path = tmp_path / "job.yaml"
    path.write_text(
        f"input: {{path: {parquet_dir}, columns: &cols [carrier, dep_delay]}}\n"
        "groupby: [carrier]\n"
        "aggregate: {dep_delay: &aggs [mean, max]}\n"
        "output: {path: out.parquet}\n"
    )
    spec = load_spec(path)
    assert spec.input.columns == ("carrier", "dep_delay")
    assert [a.agg for a in spec.aggregate] == ["mean", "max"]


def test_profile_alias_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text(f"scheduler: slurm\nmodules: {bomb()}\n")
    err = bounded(lambda: load_profile(str(path)))
    assert isinstance(err, JobError) and "modules" in str(err) and "aliases" in str(err)
    path.write_text("scheduler: slurm\nname: &n [*n]\n")
    err = bounded(lambda: load_profile(str(path)))
    assert isinstance(err, JobError) and "refers to itself" in str(err)


# ------------------------------------------------------------------ query limits in a spec
def _run(*args):
    from click.testing import CliRunner

    from hpcframe.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], env={"HPCFRAME_DEBUG": ""})


def test_spec_filter_with_390_terms_runs_like_pandas(tmp_path, parquet_dir, flights):
    """390 and-terms failed with RecursionError ("computation failed") on every rank."""
    import pandas as pd

    terms = [f"distance != {100 + 7 * i}" for i in range(390)]
    path = tmp_path / "job.yaml"
    path.write_text(
        f'input: {parquet_dir}\nfilter: "{" and ".join(terms)}"\n'
        "groupby: [month]\naggregate: {distance: sum}\n"
        f"output: {tmp_path / 'o.parquet'}\n"
    )
    r = _run("run", path, "-q")
    assert r.exit_code == 0, r.output
    mask = ~flights.distance.isin([100 + 7 * i for i in range(390)])
    want = flights[mask].groupby("month")["distance"].sum().reset_index()
    got = pd.read_parquet(tmp_path / "o.parquet")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


@pytest.mark.parametrize(
    "flt,words",
    [
        (" + ".join(["distance"] * 150) + " > 0", "levels deep; the limit is 100"),
        ("distance.isin([15**25000])", "too large"),
        ("distance == " + " * ".join(["15**25000"] * 200), "the limit is 100"),
    ],
)
def test_spec_filter_over_a_limit_is_a_usage_error(tmp_path, parquet_dir, flt, words):
    path = tmp_path / "job.yaml"
    path.write_text(f'input: {parquet_dir}\nfilter: "{flt}"\noutput: {tmp_path / "o.csv"}\n')
    t0 = time.perf_counter()
    r = _run("run", path)
    assert time.perf_counter() - t0 < 5
    assert r.exit_code == 2, r.output
    assert "filter" in r.output and words in r.output and len(r.output) < 1000
    assert not (tmp_path / "o.csv").exists()
