"""The Examples sections of the public API's docstrings are true: every module's ``>>>``
examples run as doctests (``hf`` is the imported package, as in the docs; examples that need
files or a cluster are marked ``# doctest: +SKIP``)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hpcframe

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(hpcframe.__path__, "hpcframe.")
    if m.name not in ("hpcframe.cli.__main__", "hpcframe.demo")
)


@pytest.mark.parametrize("name", MODULES)
def test_examples_in_docstrings_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write here
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, extraglobs={"hf": hpcframe}, optionflags=flags, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
