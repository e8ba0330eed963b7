"""TPC-H Q1 and Q6 (lineitem only) for several engines.

Used by ``run_baselines.py`` to produce baseline numbers for hpcframe.

Data is assumed to be the tpchgen-cli Parquet output (one directory of
``lineitem.<N>.parquet`` files).  Its Arrow types are kept as generated:
``l_quantity``/``l_extendedprice``/``l_discount``/``l_tax`` are
``decimal128(15, 2)``, the flags are ``string_view``, dates are ``date32``.

Type handling per engine (deliberate, see the benchmark report):

* DuckDB and Polars compute on the native DECIMAL / DATE types.
* pandas and Dask convert the four decimal columns to ``float64`` right after
  reading (``pd.read_parquet`` with default settings turns decimal128 into
  Python ``decimal.Decimal`` objects and date32 into ``datetime.date``
  objects, which is ~25x slower and ~10x larger in memory: roughly 1.8 GB per
  3.75M-row file, i.e. > 24 GiB for SF10).  Their floating-point sums can
  therefore differ from the exact decimal results in the last digits.

Query text (standard TPC-H, substitution parameters from the spec's
validation run):

Q1::

    select l_returnflag, l_linestatus,
           sum(l_quantity) as sum_qty,
           sum(l_extendedprice) as sum_base_price,
           sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
           sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
           avg(l_quantity) as avg_qty,
           avg(l_extendedprice) as avg_price,
           avg(l_discount) as avg_disc,
           count(*) as count_order
    from lineitem
    where l_shipdate <= date '1998-12-01' - interval '90' day
    group by l_returnflag, l_linestatus
    order by l_returnflag, l_linestatus

Q6::

    select sum(l_extendedprice * l_discount) as revenue
    from lineitem
    where l_shipdate >= date '1994-01-01'
      and l_shipdate < date '1994-01-01' + interval '1' year
      and l_discount between 0.06 - 0.01 and 0.06 + 0.01
      and l_quantity < 24
"""

from __future__ import annotations

import datetime as _dt
import glob
import os
from decimal import Decimal

# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------
Q1_SHIPDATE_MAX = _dt.date(1998, 12, 1) - _dt.timedelta(days=90)  # 1998-09-02, inclusive
Q6_SHIPDATE_MIN = _dt.date(1994, 1, 1)  # inclusive
Q6_SHIPDATE_MAX = _dt.date(1995, 1, 1)  # exclusive
Q6_DISCOUNT_MIN = Decimal("0.05")  # inclusive
Q6_DISCOUNT_MAX = Decimal("0.07")  # inclusive
Q6_QUANTITY_LT = 24

Q1_COLUMNS = [
    "l_quantity",
    "l_extendedprice",
    "l_discount",
    "l_tax",
    "l_returnflag",
    "l_linestatus",
    "l_shipdate",
]
Q6_COLUMNS = ["l_quantity", "l_extendedprice", "l_discount", "l_shipdate"]
DECIMAL_COLUMNS = ["l_quantity", "l_extendedprice", "l_discount", "l_tax"]

Q1_OUTPUT = [
    "l_returnflag",
    "l_linestatus",
    "sum_qty",
    "sum_base_price",
    "sum_disc_price",
    "sum_charge",
    "avg_qty",
    "avg_price",
    "avg_disc",
    "count_order",
]

QUERIES = ("q1", "q6")


def parquet_files(data_dir: str) -> list[str]:
    """lineitem part files, in part-number order (names are not zero padded)."""
    files = glob.glob(os.path.join(data_dir, "*.parquet"))

    def part_no(path: str) -> int:
        stem = os.path.basename(path).rsplit(".", 2)
        try:
            return int(stem[-2])
        except (IndexError, ValueError):
            return 0

    files.sort(key=lambda p: (part_no(p), p))
    if not files:
        raise FileNotFoundError(f"no *.parquet under {data_dir}")
    return files


# --------------------------------------------------------------------------
# DuckDB (SQL, native DECIMAL/DATE)
# --------------------------------------------------------------------------
Q1_SQL = """
select
    l_returnflag,
    l_linestatus,
    sum(l_quantity) as sum_qty,
    sum(l_extendedprice) as sum_base_price,
    sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
    sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
    avg(l_quantity) as avg_qty,
    avg(l_extendedprice) as avg_price,
    avg(l_discount) as avg_disc,
    count(*) as count_order
from {lineitem}
where l_shipdate <= date '1998-12-01' - interval '90' day
group by l_returnflag, l_linestatus
order by l_returnflag, l_linestatus
"""

Q6_SQL = """
select sum(l_extendedprice * l_discount) as revenue
from {lineitem}
where l_shipdate >= date '1994-01-01'
  and l_shipdate < date '1994-01-01' + interval '1' year
  and l_discount between 0.06 - 0.01 and 0.06 + 0.01
  and l_quantity < 24
"""


def duckdb_query(con, query: str, data_dir: str):
    """Run a query on a duckdb connection; returns a pandas DataFrame."""
    lineitem = f"read_parquet('{os.path.join(data_dir, '*.parquet')}')"
    sql = {"q1": Q1_SQL, "q6": Q6_SQL}[query].format(lineitem=lineitem)
    return con.execute(sql).df()


# --------------------------------------------------------------------------
# Polars (lazy scan_parquet, native Decimal/Date)
# --------------------------------------------------------------------------
def polars_q1(lf):
    import polars as pl

    # Polars rounds a Decimal product to max(scale_a, scale_b) (2 here), unlike
    # SQL (scale_a + scale_b); widen the price first so the sums are exact.
    price6 = pl.col("l_extendedprice").cast(pl.Decimal(38, 6))
    disc_price = price6 * (1 - pl.col("l_discount"))
    return (
        lf.filter(pl.col("l_shipdate") <= pl.lit(Q1_SHIPDATE_MAX))
        .group_by("l_returnflag", "l_linestatus")
        .agg(
            pl.col("l_quantity").sum().alias("sum_qty"),
            pl.col("l_extendedprice").sum().alias("sum_base_price"),
            disc_price.sum().alias("sum_disc_price"),
            (disc_price * (1 + pl.col("l_tax"))).sum().alias("sum_charge"),
            pl.col("l_quantity").mean().alias("avg_qty"),
            pl.col("l_extendedprice").mean().alias("avg_price"),
            pl.col("l_discount").mean().alias("avg_disc"),
            pl.len().alias("count_order"),
        )
        .sort("l_returnflag", "l_linestatus")
    )


def polars_q6(lf):
    import polars as pl

    return lf.filter(
        (pl.col("l_shipdate") >= pl.lit(Q6_SHIPDATE_MIN))
        & (pl.col("l_shipdate") < pl.lit(Q6_SHIPDATE_MAX))
        & (pl.col("l_discount") >= pl.lit(Q6_DISCOUNT_MIN))
        & (pl.col("l_discount") <= pl.lit(Q6_DISCOUNT_MAX))
        & (pl.col("l_quantity") < Q6_QUANTITY_LT)
    ).select(
        # widen first: Polars rounds Decimal products to max(scale_a, scale_b)
        (pl.col("l_extendedprice").cast(pl.Decimal(38, 4)) * pl.col("l_discount")).sum().alias("revenue")
    )


def polars_query(query: str, data_dir: str):
    """Lazy scan + collect; returns a pandas DataFrame."""
    import polars as pl

    lf = pl.scan_parquet(os.path.join(data_dir, "*.parquet"))
    plan = {"q1": polars_q1, "q6": polars_q6}[query](lf)
    return plan.collect().to_pandas()


# --------------------------------------------------------------------------
# pandas-style code shared by the naive pandas run and Dask
# --------------------------------------------------------------------------
def _date(series, d: _dt.date):
    """A date constant comparable with ``series`` (datetime64 or date32[pyarrow])."""
    import pandas as pd

    if isinstance(series.dtype, pd.ArrowDtype):  # date32[pyarrow] (Dask)
        return d
    return pd.Timestamp(d)  # datetime64 (pandas path)


def pandas_q1(df):
    """Q1 on a pandas or dask DataFrame whose decimal columns are float64."""
    df = df[df["l_shipdate"] <= _date(df["l_shipdate"], Q1_SHIPDATE_MAX)]
    df = df.assign(
        disc_price=df["l_extendedprice"] * (1 - df["l_discount"]),
    )
    df = df.assign(charge=df["disc_price"] * (1 + df["l_tax"]))
    out = df.groupby(["l_returnflag", "l_linestatus"]).agg(
        sum_qty=("l_quantity", "sum"),
        sum_base_price=("l_extendedprice", "sum"),
        sum_disc_price=("disc_price", "sum"),
        sum_charge=("charge", "sum"),
        avg_qty=("l_quantity", "mean"),
        avg_price=("l_extendedprice", "mean"),
        avg_disc=("l_discount", "mean"),
        count_order=("l_quantity", "count"),
    )
    return out


def pandas_q6(df):
    """Q6 on a pandas or dask DataFrame whose decimal columns are float64.

    The float64 bounds 0.05/0.07 are the same doubles that the decimal values
    convert to, so the inclusive comparison is exact.
    """
    mask = (
        (df["l_shipdate"] >= _date(df["l_shipdate"], Q6_SHIPDATE_MIN))
        & (df["l_shipdate"] < _date(df["l_shipdate"], Q6_SHIPDATE_MAX))
        & (df["l_discount"] >= float(Q6_DISCOUNT_MIN))
        & (df["l_discount"] <= float(Q6_DISCOUNT_MAX))
        & (df["l_quantity"] < Q6_QUANTITY_LT)
    )
    sel = df[mask]
    return (sel["l_extendedprice"] * sel["l_discount"]).sum()


def finish_pandas_q1(out):
    """Sort/flatten a pandas Q1 result (after dask compute as well)."""
    return out.sort_index().reset_index()[Q1_OUTPUT]


def _decimals_to_float(ddf):
    """decimal128[pyarrow] -> float64 (used on Dask frames)."""
    return ddf.astype({c: "float64" for c in DECIMAL_COLUMNS if c in ddf.columns})


def pandas_read_file(path: str, columns: list[str]):
    """Read one file and convert it to numpy-backed pandas columns.

    Plain ``pd.read_parquet`` defaults are unusable here (Decimal/date Python
    objects, see module docstring), and ``dtype_backend="pyarrow"`` keeps the
    flags as ``string_view``, for which pyarrow has no ``take`` kernel (boolean
    filtering raises ArrowNotImplementedError) and pandas cannot ``astype``.
    So: read with pyarrow, cast decimals to float64 in Arrow, then
    ``to_pandas(date_as_object=False)`` (date32 -> datetime64[ms], string_view
    -> pandas ``str``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=columns)
    for c in DECIMAL_COLUMNS:
        if c in table.column_names:
            i = table.column_names.index(c)
            table = table.set_column(i, c, table.column(c).cast(pa.float64()))
    return table.to_pandas(date_as_object=False)


def pandas_query(query: str, data_dir: str):
    """Naive single-process pandas: read every file, concat, then compute."""
    import pandas as pd

    cols = Q1_COLUMNS if query == "q1" else Q6_COLUMNS
    frames = [pandas_read_file(f, cols) for f in parquet_files(data_dir)]
    df = pd.concat(frames, ignore_index=True)
    del frames
    if query == "q1":
        return finish_pandas_q1(pandas_q1(df))
    return pd.DataFrame({"revenue": [pandas_q6(df)]})


def dask_query(query: str, data_dir: str):
    """dask.dataframe read_parquet + the pandas-style query; computes on the
    currently active scheduler/client."""
    import dask.dataframe as dd
    import pandas as pd

    cols = Q1_COLUMNS if query == "q1" else Q6_COLUMNS
    ddf = dd.read_parquet(data_dir, columns=cols)
    ddf = _decimals_to_float(ddf)
    if query == "q1":
        return finish_pandas_q1(pandas_q1(ddf).compute())
    return pd.DataFrame({"revenue": [float(pandas_q6(ddf).compute())]})
