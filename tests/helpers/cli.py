"""Data and files of the command-line and job-spec tests: flight-like rows (the shared
``flights`` fixtures of tests/conftest.py are built from them) and spec files."""

from __future__ import annotations

import numpy as np
import pandas as pd


def flights_frame(n: int = 600, seed: int = 3) -> pd.DataFrame:
    """Flight-like rows: NaN delays, string carriers, datetimes, three months."""
    rng = np.random.default_rng(seed)
    dep = rng.normal(10, 30, n).round(1)
    dep[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "month": rng.integers(1, 4, n),
            "day": rng.integers(1, 6, n),
            "carrier": pd.array(rng.choice(["AA", "UA", "DL", "B6"], n), dtype="str"),
            "origin": pd.array(rng.choice(["JFK", "LGA", "EWR"], n), dtype="str"),
            "dep_delay": dep,
            "arr_delay": (dep + rng.normal(0, 5, n)).round(1),
            "distance": rng.integers(100, 3000, n),
            "time_hour": pd.Timestamp("2013-01-01") + pd.to_timedelta(rng.integers(0, 90 * 24, n), unit="h"),
        }
    )


def read_back_parquet_dataset(flights: pd.DataFrame) -> pd.DataFrame:
    """``flights`` as hpcframe reads the hive dataset: month last, rows in file order."""
    parts = [p.drop(columns="month").assign(month=m) for m, p in flights.groupby("month")]
    return pd.concat(parts, ignore_index=True)


def write_spec(path, text: str) -> str:
    """Write ``text`` to ``path``; return the path as a string."""
    with open(path, "w") as fh:
        fh.write(text)
    return str(path)
