"""After a scan, glibc's malloc keeps freed block-sized buffers for the next block instead of
returning them to the system and faulting them in again (``execute._keep_block_buffers``);
while a computation runs, even buffers larger than glibc's largest ``mmap`` threshold come
from the heap and are reused (``execute._large_buffers_from_heap``), and afterwards they are
``mmap``-ed again; ``HPCFRAME_MALLOC_TUNE=0`` leaves malloc as it was. Observed on a real
process: the page faults of freeing and re-allocating 8 MB and 64 MB arrays."""

import ctypes
import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, resource, sys
import numpy as np
import pandas as pd
import hpcframe as hf
from hpcframe import execute

path = sys.argv[1]
pd.DataFrame({"k": ["a", "b"], "v": [1.0, 2.0]}).to_parquet(path)
hf.read_parquet(path).groupby("k").agg(v=("v", "sum")).compute()

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def churn():
    arrays = [np.ones(1 << 20) for _ in range(8)]  # 8 x 8 MB live, as one block's columns
    del arrays

def churn_large():
    arrays = [np.ones(8 << 20) for _ in range(3)]  # 3 x 64 MB live, as a stage's columns
    del arrays

def churned(work):
    work()
    f0 = faults()
    for _ in range(5):
        work()
    return faults() - f0

blocks = churned(churn)
execute._numpy_huge_pages_switch()(False)  # 4 KB pages, as while computing: faults count pages
with execute._large_buffers_from_heap():  # as every computation runs
    large_inside = churned(churn_large)
large_after = churned(churn_large)
print(json.dumps({"tuned": execute._MALLOC_TUNED, "faults": blocks,
                  "large_inside": large_inside, "large_after": large_after}))
"""


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return False
    return sys.platform.startswith("linux")


def _run(tmp_path, tune: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env["HPCFRAME_MALLOC_TUNE"] = tune
    env.pop("OMPI_COMM_WORLD_SIZE", None)  # a plain serial process even under mpiexec
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / f"t{tune}.parquet")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _glibc(), reason="glibc's mallopt only")
def test_freed_block_buffers_are_reused_not_faulted_in_again(tmp_path):
    tuned = _run(tmp_path, "1")
    plain = _run(tmp_path, "0")
    assert tuned["tuned"] and plain["tuned"]  # both ran the check once; "0" left malloc alone
    pages = 5 * 8 * (8 << 20) // 4096  # every page of every round, had it been given back
    assert plain["faults"] > pages // 8, plain  # glibc gives much of it back by default ...
    assert tuned["faults"] < pages // 100, tuned  # ... and keeps it for the next block when tuned


@pytest.mark.skipif(not _glibc(), reason="glibc's mallopt only")
def test_large_buffers_come_from_the_heap_only_while_computing(tmp_path):
    tuned = _run(tmp_path, "1")
    plain = _run(tmp_path, "0")
    pages = 5 * 3 * (64 << 20) // 4096  # every page of every round, had it been given back
    assert plain["large_inside"] > pages // 2, plain  # mmap-ed and unmapped every time ...
    assert tuned["large_inside"] < pages // 100, tuned  # ... reused from the heap when tuned
    assert tuned["large_after"] > pages // 2, tuned  # glibc's default again afterwards
