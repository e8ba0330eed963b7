"""The package's layers: imports point downwards only (see docs/design.md).

Every ``import`` in ``hpcframe`` counts, at module level or inside a function: a function-level
import is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "hpcframe")

#: Modules of hpcframe that ``io/`` may import: the bottom of the house.
IO_MAY_IMPORT = ("hpcframe.io", "hpcframe.errors", "hpcframe.config")


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _modules() -> dict[str, str]:
    out = {}
    for folder, _dirs, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                out[_module_name(path)] = path
    return out


MODULES = _modules()


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """Absolute module names one ``from ... import ...`` statement loads."""
    if node.level:
        parts = module.split(".")
        base = parts if is_package else parts[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    names = [f"{prefix}.{a.name}" for a in node.names]
    submodules = [n for n in names if n in MODULES]
    # "from pkg import sub" depends on pkg.sub only; a name that is not a submodule is pkg's own.
    return submodules if len(submodules) == len(names) else [prefix] + submodules


def imports_of(module: str) -> set[str]:
    """Every module (inside or outside hpcframe) that ``module`` imports anywhere."""
    path = MODULES[module]
    is_package = path.endswith("__init__.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.update(_resolve(module, is_package, node))
    return out


def _internal(names: set[str]) -> set[str]:
    """The hpcframe modules among ``names`` (a package import counts as its ``__init__``)."""
    out = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("hpcframe"):
            out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    """module -> the hpcframe modules it imports (a package's own __init__ excluded)."""
    out = {}
    for module in MODULES:
        out[module] = _internal(imports_of(module)) - {module}
    return out


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``g`` (a list of modules, first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_io_imports_nothing_above_it():
    offending = {}
    for module in MODULES:
        if module == "hpcframe.io" or module.startswith("hpcframe.io."):
            bad = sorted(
                d
                for d in _internal(imports_of(module))
                if not any(d == ok or d.startswith(ok + ".") for ok in IO_MAY_IMPORT)
            )
            if bad:
                offending[module] = bad
    assert not offending, f"io/ imports from above it: {offending}"


def test_only_the_cli_imports_click():
    importers = sorted(
        m
        for m in MODULES
        if any(n == "click" or n.startswith("click.") for n in imports_of(m))
        and not (m == "hpcframe.cli" or m.startswith("hpcframe.cli."))
    )
    assert not importers, f"click imported outside hpcframe/cli: {importers}"


@pytest.mark.parametrize("module", ["hpcframe.io.formats", "hpcframe.comm"])
def test_the_modules_exist(module):
    assert module in MODULES


def test_dir_lists_the_lazy_names():
    import hpcframe as hf

    names = dir(hf)
    for name in hf.__all__:
        assert name in names, name
    assert "to_parquet" in names and "ProgressBar" in names


def test_the_package_is_typed():
    assert os.path.isfile(os.path.join(ROOT, "py.typed"))
