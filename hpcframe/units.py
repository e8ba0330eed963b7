"""Sizes written by people (``64MB``, ``4 GiB``, ``500M``): the one parser of them.

Units are binary (``k`` = 1024, as SLURM and PBS read memory); ``B``, ``iB`` and the case are
optional. Used by the command line (``--chunk-size``) and the job parameters (``mem``).
"""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.I)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text, default_unit: str = "") -> float:
    """The number of bytes ``text`` says (``"64MB"``, ``"4 MiB"``, ``"1g"``, ``"65536"``).

    A number without a unit letter counts ``default_unit`` (``""``: bytes, ``"m"``: MiB).
    Raises ``ValueError`` when ``text`` is not a size.
    """
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a size; write e.g. 64MB, 512KiB or 1GB")
    unit = (m.group(2) or default_unit).lower()
    return float(m.group(1)) * _UNITS[unit]
