"""``python -m hpcframe.cli ARGS``: the same as ``hpcframe ARGS``."""

from . import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="hpcframe")
