"""Regressions from the CLI review: a launcher or extra directive with unbalanced quotes is a
JobError naming the value (exit 2 from `hpcframe submit`), not a ValueError traceback."""
from __future__ import annotations

import os

import pytest

from hpcframe.jobs import JobError, JobParams
from hpcframe.jobs.base import validate

from jobsupport import SCRIPTS


@pytest.mark.parametrize("kw,what", [
    (dict(launcher="srun --mpi='pmi2"), "launcher"),
    (dict(extra_directives=['--comment="open']), "extra directive"),
])
def test_unbalanced_quote_launcher_is_a_job_error(kw, what):
    with pytest.raises(JobError, match=what) as info:
        validate(JobParams(name="q", scheduler="slurm", time="00:01:00", **kw))
    value = kw.get("launcher") or kw["extra_directives"][0]
    assert repr(value) in str(info.value)


def test_unbalanced_quote_launcher_submit_exits_2(workdir, hf):
    res = hf("submit", os.path.join(SCRIPTS, "sleep_job.py"), "--scheduler", "slurm",
             "--launcher", "srun --mpi='pmi2", "--dry-run")
    assert res.exit_code == 2, res.output
    assert "launcher" in res.stderr and "quote" in res.stderr
