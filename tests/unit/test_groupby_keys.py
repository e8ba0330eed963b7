"""groupby() with no keys: refused up front, as pandas does."""

from __future__ import annotations

import pandas as pd
import pytest

import hpcframe as hf


@pytest.mark.parametrize("subtotals", [False, True])
def test_groupby_without_keys_raises_like_pandas(subtotals):
    # regression: an empty key list crashed later (ValueError on unpacking, or
    # AttributeError with subtotals=True) instead of pandas' error
    pdf = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    with pytest.raises(ValueError, match="No group keys passed!"):
        pdf.groupby([])["b"].sum()
    with pytest.raises(ValueError, match="No group keys passed!"):
        hf.from_pandas(pdf).groupby([])["b"].sum(subtotals=subtotals)
