"""The exit code a command gives each error (``hpcframe.errors.exit_code``), shared by
``hpcframe run`` (``cli.common.handle_errors``) and a batch job's ranks (``jobs.launch``):
2 wrong input, 130 interrupted, 1 the run failed."""

from __future__ import annotations

import pytest

from hpcframe.errors import (
    ColumnNotFoundError,
    ComputeError,
    DatasetComputeError,
    DatasetError,
    HpcframeError,
    JobInterrupted,
    exit_code,
)
from hpcframe.jobs import JobError
from hpcframe.jobs.launch import LaunchError
from hpcframe.query import QueryError
from hpcframe.spec import SpecError


@pytest.mark.parametrize(
    "exc",
    [
        SpecError("aggregate.x", "unknown aggregation"),
        QueryError("bad syntax", "x ==", 4),
        ColumnNotFoundError("dep_dealy", ["dep_delay"]),
    ],
    ids=type,
)
def test_wrong_input_is_2(exc):
    assert exit_code(exc) == 2


@pytest.mark.parametrize("exc", [JobInterrupted("rank 1 interrupted"), KeyboardInterrupt()], ids=type)
def test_interrupted_is_130(exc):
    assert exit_code(exc) == 130


@pytest.mark.parametrize(
    "exc",
    [
        HpcframeError("failed"),
        ComputeError("rank 1 failed"),
        DatasetError("unreadable"),
        DatasetComputeError("rank 0: unreadable"),
        JobError("sbatch failed"),
        LaunchError("MPI world size is 1"),
        OSError("disk full"),
        ValueError("unexpected"),
    ],
    ids=type,
)
def test_failed_run_is_1(exc):
    assert exit_code(exc) == 1
