"""``import hpcframe`` and ``hpcframe --help/--version`` stay light (issue 11, start-up).

Each check starts a fresh interpreter (a test process has imported pandas long ago) and looks
at ``sys.modules`` after the import or the command: no pandas, pyarrow, numpy or mpi4py before
data is touched. Not timed: what is imported is the regression, the time follows from it
(docs/benchmarks.md has the measurements).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = ("pandas", "pyarrow", "numpy", "mpi4py", "h5py", "yaml")

_REPORT = f"""
import json, sys
print("\\n" + json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def _heavy_after(code: str, launcher: bool = False) -> tuple[list[str], str]:
    """Run ``code`` in a fresh interpreter; the heavy modules it imported, and its stdout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    for var in ("HPCFRAME_ENGINE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE"):
        env.pop(var, None)
    if launcher:  # what mpiexec puts in the environment of each rank
        env.update(PMI_RANK="0", PMI_SIZE="1")
    cmd = [sys.executable, "-c", code + _REPORT]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    *before, last = out.rstrip("\n").split("\n")
    return json.loads(last), "\n".join(before)


@pytest.mark.parametrize("launcher", [False, True], ids=["plain", "under-launcher"])
def test_import_hpcframe_imports_no_data_libraries(launcher):
    heavy, _ = _heavy_after("import hpcframe\nhpcframe.config\nhpcframe.HpcframeError", launcher)
    assert heavy == [], f"`import hpcframe` imported {heavy}; import them where data is touched"


def test_lazy_names_still_resolve():
    heavy, out = _heavy_after("import hpcframe as hf\nprint(hf.read_csv.__module__, hf.Frame.__name__)")
    assert out.split() == ["hpcframe.readers", "Frame"]
    assert "pandas" in heavy  # touching a data name loads the data libraries


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["run", "--help"]], ids=" ".join)
def test_cli_version_and_help_import_no_data_libraries(args):
    code = (
        "from hpcframe.cli import main\n"
        "try:\n"
        f"    main({args!r}, prog_name='hpcframe')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
    )
    heavy, out = _heavy_after(code, launcher=True)
    assert heavy == [], f"`hpcframe {' '.join(args)}` imported {heavy}"
    if args == ["--version"]:
        assert out.strip().startswith("hpcframe ")
    elif args == ["--help"]:
        for command in ("info", "run", "convert", "report", "submit", "status", "logs", "cancel"):
            assert f"  {command} " in out, f"`hpcframe --help` does not list {command}"


def test_every_registered_command_loads():
    import click

    from hpcframe.cli import COMMANDS, main

    ctx = click.Context(main)
    for name in COMMANDS:
        cmd = main.get_command(ctx, name)
        assert isinstance(cmd, click.Command) and cmd.name == name
    assert main.get_command(ctx, "no-such-command") is None
