"""Declarative jobs: a YAML spec → a validated :class:`JobSpec` → one computation → a file.

.. code-block:: yaml

    input: {path: data/flights/, columns: [carrier, month, day, dep_delay]}
    filter: "carrier in ['AA', 'UA'] and dep_delay > 0"
    assign: {delay_h: "dep_delay / 60"}
    groupby: [carrier, month]
    aggregate:
      dep_delay: [mean, max]          # dict form: column → aggregation(s)
      n_flights: {column: dep_delay, agg: size}   # named form: output → column + aggregation
    options: {dropna: true, sort: true}
    output: {path: by_month.parquet, overwrite: false}

:func:`load_spec` reads and validates a file (raising :class:`SpecError` that names the key),
:func:`run_spec` runs a spec on every rank of the communicator (rank 0 writes the output
atomically, see :mod:`hpcframe.io.output`), :func:`run_job` does both collectively, as
``hpcframe run`` does. :func:`dataset_info` describes an input for ``hpcframe info``.
See ``docs/jobs-specs.md`` for the format.

The package has one module per step: :mod:`~hpcframe.spec.validate` (YAML, overrides,
validation), :mod:`~hpcframe.spec.build` (the lazy computation), :mod:`~hpcframe.spec.run`
(running it on every rank) and :mod:`~hpcframe.spec.info` (``hpcframe info``'s data). They
return data; how it is printed is decided by :mod:`hpcframe.cli`.
"""

from __future__ import annotations

from .build import build, open_input
from .info import dataset_info
from .run import RunSummary, explain_job, run_job, run_spec
from .validate import (
    HDF5_SUFFIXES,
    INPUT_FORMATS,
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_INT_BITS,
    MAX_YAML_VALUES,
    OUTPUT_FORMATS,
    PARQUET_SUFFIXES,
    AggSpec,
    InputSpec,
    JobSpec,
    OutputSpec,
    SpecError,
    YAMLLimitError,
    apply_overrides,
    check_yaml_size,
    load_spec,
    load_yaml,
    parse_spec,
)

__all__ = [
    "HDF5_SUFFIXES",
    "INPUT_FORMATS",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_INT_BITS",
    "MAX_YAML_VALUES",
    "OUTPUT_FORMATS",
    "PARQUET_SUFFIXES",
    "AggSpec",
    "InputSpec",
    "JobSpec",
    "OutputSpec",
    "RunSummary",
    "SpecError",
    "YAMLLimitError",
    "apply_overrides",
    "build",
    "check_yaml_size",
    "dataset_info",
    "explain_job",
    "load_spec",
    "load_yaml",
    "open_input",
    "parse_spec",
    "run_job",
    "run_spec",
]
