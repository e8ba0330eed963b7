"""Settings read from ``HPCFRAME_*`` environment variables: sizes in bytes take units, as
``HPCFRAME_CACHE_BYTES`` does, and bad values are named."""

import subprocess
import sys

import pytest


def _setting(name: str, env: dict) -> subprocess.CompletedProcess:
    """``hpcframe.config.<name>`` in a fresh interpreter with ``env`` (settings are read when
    the configuration is made, at import)."""
    code = f"import hpcframe as hf; print(hf.config.{name})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize(
    "name, raw, expected",
    [
        ("memory_budget", "1MB", 1 << 20),
        ("memory_budget", "1000000", 1_000_000),
        ("shuffle_round_bytes", "64MiB", 64 << 20),
        ("broadcast_bytes", "2GB", 2 << 30),
    ],
)
def test_byte_settings_take_units(name, raw, expected):
    """Regression (session 38's failure probes): ``HPCFRAME_MEMORY_BUDGET=1MB`` was refused as
    "must be a whole number" while ``HPCFRAME_CACHE_BYTES=2GB`` was taken."""
    p = _setting(name, {f"HPCFRAME_{name.upper()}": raw, "PATH": ""})
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) == expected


@pytest.mark.parametrize("raw, match", [("abc", "is not a size"), ("0", "must be positive")])
def test_bad_byte_settings_are_named(raw, match):
    p = _setting("memory_budget", {"HPCFRAME_MEMORY_BUDGET": raw, "PATH": ""})
    assert p.returncode != 0
    assert "HPCFRAME_MEMORY_BUDGET" in p.stderr and match in p.stderr
