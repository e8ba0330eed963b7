"""``config.huge_pages``: with "off" (the default) NumPy asks for no transparent huge pages
while hpcframe computes, writes or persists, and NumPy's own choice is back afterwards, also
when the computation fails; with "on" NumPy's choice is left alone
(``execute.process_settings``). Observed on NumPy's own switch, from inside the computation
(a ``map_partitions`` function runs in the middle of it)."""

import os
import subprocess
import sys

import pandas as pd
import pytest

import hpcframe as hf
from hpcframe import execute

switch = execute._numpy_huge_pages_switch()
try:
    from numpy._core.multiarray import _get_madvise_hugepage as numpy_choice
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import _get_madvise_hugepage as numpy_choice

pytestmark = pytest.mark.skipif(switch is None, reason="this NumPy has no huge-page switch")


@pytest.fixture
def frame(tmp_path):
    path = str(tmp_path / "t.parquet")
    pd.DataFrame({"k": ["a", "b", "a"], "v": [1.0, 2.0, 3.0]}).to_parquet(path)
    return hf.read_parquet(path)


@pytest.fixture(params=[True, False], ids=["numpy-asks", "numpy-does-not"])
def numpy_default(request):
    """NumPy's own choice before the computation (set both ways), restored after the test."""
    before = switch(request.param)
    yield request.param
    switch(before)


@pytest.fixture
def huge_pages(request):
    before = hf.config.huge_pages
    yield lambda value: setattr(hf.config, "huge_pages", value)
    hf.config.huge_pages = before


def _seen(frame) -> list:
    """NumPy's choice as the computation's partitions see it."""
    return frame.map_partitions(lambda df: numpy_choice(), combine=list).compute()


@pytest.mark.parametrize("setting", ["off", "on"])
def test_compute_sets_numpy_choice_and_restores_it(frame, numpy_default, huge_pages, setting):
    huge_pages(setting)
    seen = _seen(frame)
    assert seen and all(s == (numpy_default if setting == "on" else False) for s in seen)
    assert numpy_choice() == numpy_default


def test_restored_after_a_failing_computation(frame, numpy_default, huge_pages):
    huge_pages("off")

    def fail(df):
        assert numpy_choice() is False
        raise RuntimeError("boom")

    with pytest.raises(Exception, match="boom"):
        frame.map_partitions(fail).compute()
    assert numpy_choice() == numpy_default


def test_write_and_persist_run_without_huge_pages(frame, tmp_path, numpy_default, huge_pages, monkeypatch):
    huge_pages("off")
    seen = []

    def recording(fn):
        def wrapped(*args, **kwargs):
            seen.append(numpy_choice())
            return fn(*args, **kwargs)

        return wrapped

    from hpcframe import writing

    monkeypatch.setattr(writing, "read_parts", recording(writing.read_parts))  # the write's reads
    frame.to_parquet(str(tmp_path / "out"))
    assert seen and set(seen) == {False} and numpy_choice() == numpy_default
    seen.clear()
    monkeypatch.setattr(execute, "prepare", recording(execute.prepare))  # persist's computation
    kept = frame.persist()
    assert seen == [False] and numpy_choice() == numpy_default
    pd.testing.assert_frame_equal(kept.compute(), hf.read_parquet(str(tmp_path / "out")).compute())


def test_bad_environment_value_is_refused_at_import():
    env = dict(os.environ, HPCFRAME_HUGE_PAGES="maybe")
    out = subprocess.run([sys.executable, "-c", "import hpcframe"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "HPCFRAME_HUGE_PAGES='maybe' must be one of on, off" in out.stderr
