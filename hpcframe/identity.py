"""What a write's rows come from, as one digest: so that an interrupted write is resumed only
over the same input.

A write records its plan in its staging folder; the next run of the same write resumes it
(the leaves already written are kept) only when its plan is the same (:mod:`hpcframe.writing`).
The text of the chain says which query it is, not over what: :func:`input_digest` adds

* every source the frame reads, through its stages (a join, a group-by result, a persisted
  or shuffled frame: the frames they read): the source's options and schema
  (:func:`hpcframe.cache.source_fingerprint`: a CSV's ``na_values``, its types...) and the
  identity of each partition (:func:`hpcframe.cache.block_identity`: the file's absolute
  path, size and modification time in ns, the row group / byte range, the rows); an
  in-memory frame (``from_pandas``) by a hash of its values;
* the user functions of the chains (``map_partitions``, ``apply``, ``transform``,
  registered aggregations...): their code, constants, default arguments and the simple
  values (numbers, strings...) they close over (a closed-over object of another type counts
  by its type: a change inside it is not seen).

So a file appended, edited or replaced, other read options, or another lambda make another
digest, and the interrupted write is started over instead of mixing old and new rows.
"""

from __future__ import annotations

import functools
import hashlib
import types
from typing import Any

from .cache import _simple, block_identity, source_fingerprint
from .io.sources import partitions_of

__all__ = ["input_digest"]


def input_digest(node, comm) -> str:
    """The SHA-256 hex digest of the inputs of the frame whose plan is ``node`` (see the
    module docstring), the same on every rank. Called by every rank: a source not discovered
    yet is discovered over ``comm`` (collectively; a write has discovered them all before)."""
    from .stages import StageSource

    items: list = []
    seen: set[int] = set()

    def visit(n) -> None:
        for step in n.chain():
            items.append(_functions_of(step))
        source = n.scan().source
        if id(source) in seen:
            return
        seen.add(id(source))
        if isinstance(source, StageSource):
            items.append(_functions_of(source))  # (a group window's or apply's function)
            for m in source.inputs():
                visit(m)
            return
        items.append(source_fingerprint(source))
        parts = partitions_of(source, comm)
        ident = block_identity(parts)
        items.append(ident if ident is not None else _data_identity(source))

    visit(node)
    return hashlib.sha256(repr(items).encode()).hexdigest()


def _data_identity(source) -> Any:
    """An in-memory source by a hash of its values (pandas' row hashes), or its kind."""
    df = getattr(source, "df", None)
    if df is None:
        return type(source).__name__
    import pandas as pd

    try:
        hashes = pd.util.hash_pandas_object(df, index=False).to_numpy()
    except TypeError:  # values pandas cannot hash (lists...): their text
        return hashlib.sha256(df.to_csv().encode()).hexdigest()
    return (len(df), list(map(str, df.columns)), hashlib.sha256(hashes.tobytes()).hexdigest())


def _functions_of(step) -> list:
    """The keys (:func:`function_key`) of the callables a plan step or a stage holds in its
    attributes (directly, or in lists, tuples and dicts of them)."""
    out: list = []

    def walk(value, depth: int) -> None:
        if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, functools.partial)):
            out.append(function_key(value))
        elif depth and isinstance(value, (list, tuple)):
            for v in value:
                walk(v, depth - 1)
        elif depth and isinstance(value, dict):
            for v in value.values():
                walk(v, depth - 1)

    for value in vars(step).values():
        walk(value, 3)
    return out


def function_key(fn) -> Any:
    """What identifies a user function for a resumed write: its module and name, its code
    (bytecode, constants and names, nested functions' too), default arguments and the
    simple values it closes over."""
    if isinstance(fn, functools.partial):
        return ("partial", function_key(fn.func), _simple(list(fn.args)), _simple(fn.keywords))
    code = getattr(fn, "__code__", None)
    name = (getattr(fn, "__module__", None), getattr(fn, "__qualname__", type(fn).__name__))
    if code is None:  # a builtin
        return name
    cells = []
    for cell in fn.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            value = None
        nested = callable(value) and hasattr(value, "__code__")
        cells.append(function_key(value) if nested else _simple(value))
    defaults = _simple(list(fn.__defaults__ or ())), _simple(fn.__kwdefaults__ or {})
    return (name, _code_key(code), cells, defaults)


def _code_key(code: types.CodeType) -> tuple:
    consts = tuple(_code_key(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts)
    return (code.co_code, consts, code.co_names)
