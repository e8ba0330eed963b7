"""How often a Ctrl-C goes unanswered: a process computes CSV scans with read-ahead in a loop
(``hf.read_csv(...).groupby(...).sum().compute()``), one SIGINT arrives at a random moment,
and the process must stop within 15 s (it prints ``interrupted`` and exits). A run that does
not stop is counted as unanswered, then stopped with a second SIGINT (or killed).

    python benchmarks/sigint_loss.py --runs 200

Measured on this machine (docs/design.md, "Signals"), ``--runs 60``: 2 unanswered before
hpcframe's guard kept a SIGINT pending and its CSV reads turned pyarrow's SIGINT handler
off, 0 after. The data (six small CSV files of a flights table: xz, gzip, plain; dates and text
with commas and empty values) are written to a temporary folder.
"""

from __future__ import annotations

import argparse
import gzip
import lzma
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: file -> (rows, compression)
FILES = {
    "g01.csv.xz": (1300, "xz"),
    "g02.csv.gz": (700, "gz"),
    "g03.csv": (900, None),
    "g04.csv.xz": (400, "xz"),
    "g05.csv.xz": (1100, "xz"),
    "g06.csv": (600, None),
}

CHILD = """
import os, sys, hpcframe as hf
hf.config.readahead = "on"
path = sys.argv[1]

def total():
    return hf.read_csv(path).groupby("Carrier").Flights.sum().compute()

total()
print("started", flush=True)
try:
    while True:
        total()
except (KeyboardInterrupt, hf.ComputeError) as exc:
    print("interrupted", type(exc).__name__, flush=True)
"""


def write_data(root: str) -> None:
    """The six CSV files of :data:`FILES` in ``root``."""
    for i, (name, (rows, kind)) in enumerate(FILES.items()):
        rng = np.random.default_rng(i)
        dates = zip(rng.integers(1, 13, rows), rng.integers(1, 29, rows))
        df = pd.DataFrame(
            {
                "Year": 2016,
                "Month": rng.integers(1, 13, rows),
                "FlightDate": [f"2016-{m:02d}-{d:02d}" for m, d in dates],
                "Carrier": rng.choice(["AA", "UA", "DL", "WN"], rows),
                "Flights": rng.integers(0, 5, rows),
                "Cancelled": rng.random(rows).round(3),
                "Origin": rng.choice(["JFK", "a, quoted", "LAX", ""], rows),
            }
        )
        data = df.to_csv(index=False).encode()
        if kind == "xz":
            data = lzma.compress(data)
        elif kind == "gz":
            data = gzip.compress(data)
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)


def one_run(root: str, delay: float, wait: float) -> bool:
    """Whether one SIGINT, ``delay`` seconds after the loop started, stopped the process."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, root],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = child.stdout.readline().strip()
        if line != "started":
            raise RuntimeError(f"the child did not start: {line!r} {child.stderr.read()[-2000:]}")
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        try:
            child.communicate(timeout=wait)
            return True
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGINT)  # the second one
            try:
                child.communicate(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
            return False
    finally:
        child.kill()
        child.wait()


def main() -> None:
    """Run the measurement and print how many SIGINTs went unanswered."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="processes to interrupt (default 100)")
    parser.add_argument("--max-delay", type=float, default=0.5, help="the SIGINT's latest moment (s)")
    parser.add_argument("--wait", type=float, default=15.0, help="seconds a process has to stop")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random moments")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    lost = 0
    with tempfile.TemporaryDirectory(prefix="hpcframe-sigint-") as root:
        write_data(root)
        for i in range(args.runs):
            if not one_run(root, rng.uniform(0, args.max_delay), args.wait):
                lost += 1
                print(f"run {i}: the SIGINT went unanswered", flush=True)
    print(f"{lost} of {args.runs} SIGINTs unanswered")


if __name__ == "__main__":
    main()
