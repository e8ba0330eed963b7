"""``mpiexec -n 3 hpcframe run spec.yaml``: the installed console script on three real MPI
ranks writes what pandas computes; only rank 0 prints; errors exit non-zero on every rank."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.cli.test_cli import SPEC, assert_same, by_day_pandas, read_output
from tests.helpers.cli import write_spec
from tests.helpers.mpi import BIN, MPIEXEC

HPCFRAME = os.path.join(BIN, "hpcframe")
pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.skipif(
        not (os.path.exists(MPIEXEC) and os.path.exists(HPCFRAME)),
        reason="needs mpiexec and the hpcframe console script (pip install -e '.[mpich]')",
    ),
]


def mpirun(n: int, *args, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HPCFRAME_DEBUG"}
    env["HPCFRAME_BLOCK_ROWS"] = "50"  # small blocks: every rank gets a share of the data
    return subprocess.run(
        [MPIEXEC, "-n", str(n), HPCFRAME, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize("ext", ["parquet", "h5"])
def test_three_ranks_write_the_pandas_result(tmp_path, parquet_dir, flights_ordered, ext):
    out = tmp_path / f"by_day.{ext}"
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out=out))
    proc = mpirun(3, "run", spec)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("rows out:") == 1  # rank 0 only
    assert "on 3 rank(s)" in proc.stdout
    assert proc.stderr == ""
    assert_same(read_output(out), by_day_pandas(flights_ordered))
    assert sorted(os.listdir(tmp_path)) == sorted(["job.yaml", out.name])


def test_three_ranks_spec_error_printed_once(tmp_path, parquet_dir):
    out = tmp_path / "o.parquet"
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out=out))
    proc = mpirun(3, "run", spec, "--set", "filter=carier == 'AA'")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("Error: filter: column 'carier' not found") == 1, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["job.yaml"]


def test_three_ranks_unreadable_file_fails_everywhere(tmp_path, parquet_dir):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(parquet_dir, data)
    (data / "month=2" / "part-0.parquet").write_bytes(b"garbage")
    out = tmp_path / "out" / "o.csv"
    out.parent.mkdir()
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=data, out=out))
    proc = mpirun(3, "run", spec)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "month=2" in proc.stderr and "Traceback" not in proc.stderr
    assert os.listdir(out.parent) == []


# ------------------------------------------------------------------ a signal to one rank
def _rank_pids(root_pid: int) -> dict:
    """``{rank: pid}`` of the MPI ranks started under ``root_pid`` (mpiexec → proxy → ranks),
    from /proc (PMI_RANK in each process's environment)."""
    children: dict = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    ranks, todo = {}, [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            try:
                with open(f"/proc/{child}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            for item in env:
                if item.startswith(b"PMI_RANK="):
                    ranks[int(item[9:])] = child
    return ranks


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the ranks in /proc")
@pytest.mark.parametrize(
    "target,signame", [("rank 1", "SIGINT"), ("rank 1", "SIGTERM"), ("mpiexec", "SIGINT")]
)
def test_a_signal_to_one_rank_ends_every_rank(tmp_path, target, signame):
    """``kill -INT`` (or -TERM) to rank 1 of ``mpiexec -n 2 hpcframe run`` while the ranks
    read: every rank ends promptly and non-zero. A SIGINT is agreed on: each rank says it was
    interrupted, naming rank 1, its host and what it was reading (exit code 130). Ctrl-C on
    mpiexec (which forwards it to every rank) ends the job the same way."""
    import re
    import signal
    import socket
    import time

    import numpy as np
    import pandas as pd

    data = tmp_path / "many_blocks.parquet"
    n = 20_000
    pd.DataFrame({"k": np.arange(n) % 7, "x": np.arange(n, dtype="float64")}).to_parquet(
        data, row_group_size=20
    )
    spec = write_spec(
        tmp_path / "job.yaml", f"input: {{path: {data}}}\ngroupby: [k]\naggregate:\n  x: [sum, mean]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HPCFRAME_DEBUG"}
    env.update(HPCFRAME_BLOCK_ROWS="20", HPCFRAME_PROGRESS="lines", HPCFRAME_INTERRUPT_GRACE="60")
    proc = subprocess.Popen(
        [MPIEXEC, "-n", "2", HPCFRAME, "run", spec, "--progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = []
        while True:  # rank 0 prints this line when every rank starts reading
            line = proc.stdout.readline()
            lines.append(line)
            if not line or line.startswith("hpcframe: "):
                break
        assert line, "".join(lines) + proc.stderr.read()
        pids = _rank_pids(proc.pid)
        assert sorted(pids) == [0, 1], pids
        t0 = time.time()
        os.kill(pids[1] if target == "rank 1" else proc.pid, getattr(signal, signame))
        out, err = proc.communicate(timeout=90)
        seconds = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, out + err
    assert "rows out:" not in out
    assert seconds < 30, (seconds, out + err)
    if signame == "SIGINT":
        assert proc.returncode == 130, (proc.returncode, err)
        assert err.count("Error: interrupted: ") == 2, err  # rank 0 and "rank 1: Error: ..."
        assert "rank 1: Error: interrupted: " in err
        rank = "1" if target == "rank 1" else "[01]"
        assert re.search(rf"- rank {rank} on {re.escape(socket.gethostname())}, while ", err)
        assert "interrupted (SIGINT) on this rank" in err
        # what the rank was doing: normally reading a block of the file; on a loaded machine
        # the signal can land just before, while the diagnostics callbacks start
        assert "many_blocks.parquet" in err or "while starting the diagnostics callbacks" in err, err
        assert "Traceback" not in err
