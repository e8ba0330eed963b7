"""Helpers of the batch-job tests: the click group of the job commands, reference job
scripts, the job scripts run by tests, and a small data set with its expected result."""

from __future__ import annotations

import os

import click

from tests.helpers import TESTS

REFERENCE = os.path.join(TESTS, "jobs", "reference")
"""Reference job scripts, compared line by line with what the renderer gives."""
SCRIPTS = os.path.join(TESTS, "jobs", "scripts")
"""User scripts the batch-job tests submit or launch."""


def cli_group() -> click.Group:
    """``hpcframe``'s real group when part A's cli exists, else a group with only our commands."""
    try:
        from hpcframe.cli import main

        if "submit" in main.commands or "submit" in getattr(main, "lazy_commands", {}):  # lazy since issue 11
            return main
    except ImportError:
        pass
    from hpcframe.cli.jobs import register

    group = click.Group("hpcframe")
    register(group)
    return group


def make_dataset(root) -> tuple[str, object]:
    """A small partitioned Parquet dataset (4 files) and the same rows as one pandas frame."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    src = os.path.join(str(root), "flights")
    os.makedirs(src, exist_ok=True)
    parts = []
    for i in range(4):
        df = pd.DataFrame(
            {
                "carrier": rng.choice(["AA", "DL", "UA"], 50),
                "delay": rng.integers(-10, 100, 50).astype("int64"),
            }
        )
        df.to_parquet(os.path.join(src, f"part-{i}.parquet"), index=False)
        parts.append(df)
    return src, pd.concat(parts, ignore_index=True)


def expected_groupby(df):
    """What groupby_job.py must produce, computed with pandas."""
    return df.groupby("carrier")["delay"].sum().to_frame()
