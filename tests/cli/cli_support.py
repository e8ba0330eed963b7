"""Helpers of the CLI tests, importable under a unique name (``conftest`` is ambiguous when
tests/cli and tests/ingest are collected in one pytest run)."""


def write_spec(path, text: str) -> str:
    """Write ``text`` to ``path``; return the path as a string."""
    with open(path, "w") as fh:
        fh.write(text)
    return str(path)
