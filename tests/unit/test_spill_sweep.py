"""Spill folders of processes that were killed are removed by the next process that spills
into the same directory (a SIGKILL leaves no chance to clean up)."""

import os
import subprocess

import hpcframe
from hpcframe.io.ranked import _spill_dir, _spill_prefix


def test_the_spill_folders_of_ended_processes_of_this_host_are_swept(tmp_path, monkeypatch):
    """Regression (session 38's failure probes): ``hpcframe-spill-*`` folders of a rank killed
    with SIGKILL stayed (48 MB in the probe), and no later run removed them."""
    monkeypatch.setattr(hpcframe.config, "spill_dir", str(tmp_path))
    ended = subprocess.Popen(["true"])
    ended.wait()  # its pid is free now
    dead = tmp_path / f"{_spill_prefix()}{ended.pid}-abc"
    alive = tmp_path / f"{_spill_prefix()}{os.getppid()}-def"  # our parent: running
    elsewhere = tmp_path / f"hpcframe-spill-another-host-{ended.pid}-ghi"  # not ours to judge
    for folder in (dead, alive, elsewhere):
        folder.mkdir()
        (folder / "part-000000.arrow").write_bytes(b"x")
    mine = _spill_dir()
    assert os.path.basename(mine).startswith(f"{_spill_prefix()}{os.getpid()}-")
    assert not dead.exists() and alive.exists() and elsewhere.exists()
