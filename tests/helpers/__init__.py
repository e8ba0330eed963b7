"""Helpers shared by the whole test suite (one package, imported as ``tests.helpers.X``).

- :mod:`~tests.helpers.mpi`: MPI detection without importing mpi4py, this rank and the
  world size, ``MPIEXEC`` and :func:`~tests.helpers.mpi.run_mpi` (a real ``mpiexec -n N``
  with a timeout), the per-test timeout marker that works under MPI;
- :mod:`~tests.helpers.compare`: hpcframe results compared with pandas (``assert_same``);
- :mod:`~tests.helpers.datasets`: the data sets of the parallel suite and their pandas
  references; :mod:`~tests.helpers.generate`: the randomized differential cases;
- :mod:`~tests.helpers.cli`, :mod:`~tests.helpers.ingest`, :mod:`~tests.helpers.jobs`,
  :mod:`~tests.helpers.diagnostics`: small data builders and runners of one subject.

Fixtures live in ``tests/conftest.py`` (shared) and in each folder's ``conftest.py``.
"""

from __future__ import annotations

import os

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)
