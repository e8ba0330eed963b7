"""Row masks between Arrow and NumPy (``hpcframe.io.types.mask_to_numpy``/``mask_to_arrow``):
the bitmaps (un)packed by NumPy give exactly what Arrow's own conversions give, for any
length, offset (sliced arrays), chunking and nulls (a null answer is False). Randomized with
Hypothesis; the scan's filters use them for every block."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcframe.io.types import mask_to_arrow, mask_to_numpy


def _arrow_reference(answer) -> np.ndarray:
    """What the scan did before: fill nulls with False, then Arrow's conversion."""
    filled = pc.fill_null(answer, False) if answer.null_count else answer
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)


@st.composite
def bool_answers(draw):
    values = draw(st.lists(st.one_of(st.none(), st.booleans()), max_size=70))
    arr = pa.array(values, pa.bool_())
    start = draw(st.integers(0, len(values)))
    stop = draw(st.integers(start, len(values)))
    sliced = arr.slice(start, stop - start)  # an offset that is not a multiple of 8
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(sliced)))
        return pa.chunked_array([sliced.slice(0, cut), sliced.slice(cut)], pa.bool_())
    return sliced


@settings(max_examples=300, deadline=None)
@given(bool_answers())
def test_mask_to_numpy_equals_arrows_conversion(answer):
    got = mask_to_numpy(answer)
    assert got.dtype == np.bool_ and got.shape == (len(answer),)
    np.testing.assert_array_equal(got, _arrow_reference(answer))
    got[:] = True  # a fresh, writable array (the filters write into it)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), max_size=70), st.integers(0, 3))
def test_mask_to_arrow_equals_pa_array(values, step):
    mask = np.array(values, dtype=bool)[:: step + 1]  # also a strided view
    got = mask_to_arrow(mask)
    assert got.type == pa.bool_() and got.null_count == 0
    assert got.equals(pa.array(mask))
    np.testing.assert_array_equal(mask_to_numpy(got), mask)


def test_all_null_and_other_types():
    """An all-null answer is all False; an answer that is not a bool array (Arrow may answer
    a null-typed array) goes through Arrow's conversion; a non-bool NumPy array through
    ``pa.array``."""
    np.testing.assert_array_equal(mask_to_numpy(pa.nulls(5, pa.bool_())), np.zeros(5, dtype=bool))
    np.testing.assert_array_equal(mask_to_numpy(pa.array([1, 0, 2], pa.int8())), [True, False, True])
    assert mask_to_numpy(pa.chunked_array([], pa.bool_())).shape == (0,)
    assert mask_to_arrow(np.array([1, 0, 1])).equals(pa.array([True, False, True]))
