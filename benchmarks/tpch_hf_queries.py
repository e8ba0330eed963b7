"""The 22 TPC-H queries in the pandas API, run as they are by pandas and by hpcframe.

Each query ``qN(tables)`` takes a dict of the eight tables (``"lineitem"``, ``"orders"``, ...)
and returns its answer. The tables are either plain pandas DataFrames (:func:`load_pandas`)
or lazy hpcframe Frames (:func:`load_hpcframe`): the query text is the same, written with
the pandas API subset hpcframe offers (boolean filters, ``assign``, ``merge``, ``isin``,
``groupby(...).agg(name=(column, func)).reset_index()``, ``sort_values``, ``head``, ``.dt``,
``.str``, ``where``), in the style of the pandas versions of the Polars decision-support
benchmark (pola-rs/polars-benchmark, ``queries/pandas``). A scalar a query uses in the
middle (Q11, Q14, Q15, Q17, Q22: a threshold or a ratio) is written as in pandas,
``ps["value"].sum() * 0.0001``: with hpcframe it is a lazy scalar, computed in the same
computation as the rows that use it. The one engine-specific part:

- :func:`collect` turns the answer into pandas (``.compute()`` when lazy).

Substitution parameters are those of the TPC-H validation run (the same as the SQL texts of
:mod:`tpch_sql`, DuckDB's reference). Money columns are ``decimal128`` in tpchgen-cli's
Parquet: hpcframe reads them as float64 (correctly rounded), and :func:`load_pandas` does the
same, so answers differ from DuckDB's exact decimals only by float rounding.

    python benchmarks/tpch_hf_queries.py DATA_DIR [q1,q3,...] [--engine pandas|hpcframe]
"""

from __future__ import annotations

import datetime as _dt
import os

import pandas as pd

TABLES = ("lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region")


def _date(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


# --------------------------------------------------------------------------------------------
# shims and loaders
# --------------------------------------------------------------------------------------------
def collect(x, comm=None):
    """``x`` as pandas: ``x.compute()`` for an hpcframe lazy object, ``x`` otherwise.

    Parameters
    ----------
    x : object
        A query's answer.
    comm : mpi4py communicator, optional
        Passed to ``compute``.

    Returns
    -------
    object
        A pandas DataFrame or Series, or a scalar.
    """
    compute = getattr(x, "compute", None)
    if compute is None or isinstance(x, (pd.DataFrame, pd.Series)):
        return x
    return compute(comm=comm) if comm is not None else compute()


def _table_path(data_dir: str, table: str) -> str:
    folder = os.path.join(data_dir, table)
    if os.path.isdir(folder):
        return folder
    if os.path.exists(folder + ".parquet"):
        return folder + ".parquet"
    raise FileNotFoundError(
        f"TPC-H table {table!r} not found under {data_dir}: expected the folder {folder}/ "
        f"(tpchgen-cli parquet --parts=N) or {folder}.parquet"
    )


def load_pandas(data_dir: str, tables=TABLES) -> dict[str, pd.DataFrame]:
    """The tables as pandas DataFrames, read with pyarrow, with the types hpcframe gives them:
    decimals as float64, dates as ``datetime64[ms]``, strings as ``str``.

    Parameters
    ----------
    data_dir : str
        The folder tpchgen-cli wrote (``DIR/<table>/*.parquet`` or ``DIR/<table>.parquet``).
    tables : iterable of str, optional
        The tables to read (default: all eight).

    Returns
    -------
    dict of str to pandas.DataFrame
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = {}
    for table in tables:
        t = pq.read_table(_table_path(data_dir, table))
        fields = []
        for f in t.schema:
            typ = f.type
            if pa.types.is_decimal(typ):
                typ = pa.float64()
            elif pa.types.is_date(typ):
                typ = pa.timestamp("ms")
            elif pa.types.is_string_view(typ) or pa.types.is_large_string(typ):
                typ = pa.string()
            fields.append(pa.field(f.name, typ))
        out[table] = t.cast(pa.schema(fields)).to_pandas()
    return out


def load_dask(data_dir: str, tables=TABLES) -> dict:
    """The tables as Dask DataFrames (``dd.read_parquet``), with the types of :func:`load_pandas`
    (decimals cast to float64, dates to ``datetime64[ms]``)."""
    import dask.dataframe as dd

    out = {}
    for table in tables:
        ddf = dd.read_parquet(_table_path(data_dir, table))
        casts = {}
        for name, dtype in ddf.dtypes.items():
            text = str(dtype)
            if text.startswith("decimal"):
                casts[name] = "float64"
            elif text.startswith("date32") or text.startswith("date64"):
                casts[name] = "datetime64[ms]"
        # column by column: dask-expr pushes a projection through astype({...}) and loses the cast
        out[table] = ddf.assign(**{name: ddf[name].astype(dtype) for name, dtype in casts.items()})
    return out


def load_hpcframe(data_dir: str, tables=TABLES) -> dict:
    """The tables as lazy hpcframe Frames (``hf.read_parquet`` of each table's folder)."""
    import hpcframe as hf

    return {table: hf.read_parquet(_table_path(data_dir, table)) for table in tables}


# --------------------------------------------------------------------------------------------
# the queries
# --------------------------------------------------------------------------------------------
def q1(t):
    li = t["lineitem"]
    cutoff = pd.Timestamp(_dt.date(1998, 12, 1) - _dt.timedelta(days=90))
    f = li[li.l_shipdate <= cutoff]
    f = f.assign(disc_price=f.l_extendedprice * (1 - f.l_discount))
    f = f.assign(charge=f.disc_price * (1 + f.l_tax))
    g = (
        f.groupby(["l_returnflag", "l_linestatus"])
        .agg(
            sum_qty=("l_quantity", "sum"),
            sum_base_price=("l_extendedprice", "sum"),
            sum_disc_price=("disc_price", "sum"),
            sum_charge=("charge", "sum"),
            avg_qty=("l_quantity", "mean"),
            avg_price=("l_extendedprice", "mean"),
            avg_disc=("l_discount", "mean"),
            count_order=("l_quantity", "count"),
        )
        .reset_index()
    )
    return g.sort_values(["l_returnflag", "l_linestatus"])


def q2(t):
    region, nation, supplier = t["region"], t["nation"], t["supplier"]
    part, partsupp = t["part"], t["partsupp"]
    r = region[region.r_name == "EUROPE"]
    n = nation.merge(r, left_on="n_regionkey", right_on="r_regionkey")
    s = supplier.merge(n, left_on="s_nationkey", right_on="n_nationkey")
    ps = partsupp.merge(s, left_on="ps_suppkey", right_on="s_suppkey")
    p = part[(part.p_size == 15) & part.p_type.str.endswith("BRASS")]
    j = p.merge(ps, left_on="p_partkey", right_on="ps_partkey")
    cheapest = j.groupby("p_partkey").agg(min_cost=("ps_supplycost", "min")).reset_index()
    j = j.merge(cheapest, on="p_partkey")
    j = j[j.ps_supplycost == j.min_cost]
    j = j[["s_acctbal", "s_name", "n_name", "p_partkey", "p_mfgr", "s_address", "s_phone", "s_comment"]]
    j = j.sort_values(["s_acctbal", "n_name", "s_name", "p_partkey"], ascending=[False, True, True, True])
    return j.head(100)


def q3(t):
    customer, orders, lineitem = t["customer"], t["orders"], t["lineitem"]
    day = _date("1995-03-15")
    c = customer[customer.c_mktsegment == "BUILDING"]
    o = orders[orders.o_orderdate < day]
    li = lineitem[lineitem.l_shipdate > day]
    j = c.merge(o, left_on="c_custkey", right_on="o_custkey")
    j = j.merge(li, left_on="o_orderkey", right_on="l_orderkey")
    j = j.assign(revenue=j.l_extendedprice * (1 - j.l_discount))
    g = (
        j.groupby(["l_orderkey", "o_orderdate", "o_shippriority"])
        .agg(revenue=("revenue", "sum"))
        .reset_index()
    )
    g = g[["l_orderkey", "revenue", "o_orderdate", "o_shippriority"]]
    return g.sort_values(["revenue", "o_orderdate"], ascending=[False, True]).head(10)


def q4(t):
    orders, lineitem = t["orders"], t["lineitem"]
    o = orders[(orders.o_orderdate >= _date("1993-07-01")) & (orders.o_orderdate < _date("1993-10-01"))]
    late = lineitem[lineitem.l_commitdate < lineitem.l_receiptdate]
    o = o[o.o_orderkey.isin(late.l_orderkey)]  # EXISTS: a semi-join
    g = o.groupby("o_orderpriority").agg(order_count=("o_orderkey", "count")).reset_index()
    return g.sort_values("o_orderpriority")


def q5(t):
    region, nation, customer = t["region"], t["nation"], t["customer"]
    orders, lineitem, supplier = t["orders"], t["lineitem"], t["supplier"]
    r = region[region.r_name == "ASIA"]
    n = nation.merge(r, left_on="n_regionkey", right_on="r_regionkey")
    c = customer.merge(n, left_on="c_nationkey", right_on="n_nationkey")
    o = orders[(orders.o_orderdate >= _date("1994-01-01")) & (orders.o_orderdate < _date("1995-01-01"))]
    j = c.merge(o, left_on="c_custkey", right_on="o_custkey")
    j = j.merge(lineitem, left_on="o_orderkey", right_on="l_orderkey")
    j = j.merge(supplier, left_on=["l_suppkey", "c_nationkey"], right_on=["s_suppkey", "s_nationkey"])
    j = j.assign(revenue=j.l_extendedprice * (1 - j.l_discount))
    g = j.groupby("n_name").agg(revenue=("revenue", "sum")).reset_index()
    return g.sort_values("revenue", ascending=False)


def q6(t):
    li = t["lineitem"]
    f = li[
        (li.l_shipdate >= _date("1994-01-01"))
        & (li.l_shipdate < _date("1995-01-01"))
        & li.l_discount.between(0.05, 0.07)
        & (li.l_quantity < 24)
    ]
    return (f.l_extendedprice * f.l_discount).sum()


def q7(t):
    nation, supplier, customer = t["nation"], t["supplier"], t["customer"]
    orders, lineitem = t["orders"], t["lineitem"]
    pair = ["FRANCE", "GERMANY"]
    s = supplier.merge(nation, left_on="s_nationkey", right_on="n_nationkey")
    s = s[s.n_name.isin(pair)]
    s = s.assign(supp_nation=s.n_name)[["s_suppkey", "supp_nation"]]
    c = customer.merge(nation, left_on="c_nationkey", right_on="n_nationkey")
    c = c[c.n_name.isin(pair)]
    c = c.assign(cust_nation=c.n_name)[["c_custkey", "cust_nation"]]
    li = lineitem[(lineitem.l_shipdate >= _date("1995-01-01")) & (lineitem.l_shipdate <= _date("1996-12-31"))]
    j = li.merge(s, left_on="l_suppkey", right_on="s_suppkey")
    j = j.merge(orders, left_on="l_orderkey", right_on="o_orderkey")
    j = j.merge(c, left_on="o_custkey", right_on="c_custkey")
    j = j[j.supp_nation != j.cust_nation]
    j = j.assign(l_year=j.l_shipdate.dt.year, volume=j.l_extendedprice * (1 - j.l_discount))
    g = j.groupby(["supp_nation", "cust_nation", "l_year"]).agg(revenue=("volume", "sum")).reset_index()
    return g.sort_values(["supp_nation", "cust_nation", "l_year"])


def q8(t):
    part, region, nation, customer = t["part"], t["region"], t["nation"], t["customer"]
    orders, lineitem, supplier = t["orders"], t["lineitem"], t["supplier"]
    p = part[part.p_type == "ECONOMY ANODIZED STEEL"][["p_partkey"]]
    r = region[region.r_name == "AMERICA"]
    n1 = nation.merge(r, left_on="n_regionkey", right_on="r_regionkey")
    c = customer.merge(n1, left_on="c_nationkey", right_on="n_nationkey")[["c_custkey"]]
    o = orders[(orders.o_orderdate >= _date("1995-01-01")) & (orders.o_orderdate <= _date("1996-12-31"))]
    s = supplier.merge(nation, left_on="s_nationkey", right_on="n_nationkey")
    s = s.assign(nation=s.n_name)[["s_suppkey", "nation"]]
    j = lineitem.merge(p, left_on="l_partkey", right_on="p_partkey")
    j = j.merge(o, left_on="l_orderkey", right_on="o_orderkey")
    j = j.merge(c, left_on="o_custkey", right_on="c_custkey")
    j = j.merge(s, left_on="l_suppkey", right_on="s_suppkey")
    j = j.assign(o_year=j.o_orderdate.dt.year, volume=j.l_extendedprice * (1 - j.l_discount))
    j = j.assign(brazil=j.volume.where(j.nation == "BRAZIL", 0.0))
    g = j.groupby("o_year").agg(brazil=("brazil", "sum"), total=("volume", "sum")).reset_index()
    g = g.assign(mkt_share=g.brazil / g.total)[["o_year", "mkt_share"]]
    return g.sort_values("o_year")


def q9(t):
    part, lineitem, supplier = t["part"], t["lineitem"], t["supplier"]
    partsupp, orders, nation = t["partsupp"], t["orders"], t["nation"]
    p = part[part.p_name.str.contains("green", regex=False)][["p_partkey"]]
    j = lineitem.merge(p, left_on="l_partkey", right_on="p_partkey")
    j = j.merge(supplier, left_on="l_suppkey", right_on="s_suppkey")
    j = j.merge(partsupp, left_on=["l_suppkey", "l_partkey"], right_on=["ps_suppkey", "ps_partkey"])
    j = j.merge(orders, left_on="l_orderkey", right_on="o_orderkey")
    j = j.merge(nation, left_on="s_nationkey", right_on="n_nationkey")
    j = j.assign(
        nation=j.n_name,
        o_year=j.o_orderdate.dt.year,
        amount=j.l_extendedprice * (1 - j.l_discount) - j.ps_supplycost * j.l_quantity,
    )
    g = j.groupby(["nation", "o_year"]).agg(sum_profit=("amount", "sum")).reset_index()
    return g.sort_values(["nation", "o_year"], ascending=[True, False])


def q10(t):
    customer, orders, lineitem, nation = t["customer"], t["orders"], t["lineitem"], t["nation"]
    o = orders[(orders.o_orderdate >= _date("1993-10-01")) & (orders.o_orderdate < _date("1994-01-01"))]
    li = lineitem[lineitem.l_returnflag == "R"]
    j = customer.merge(o, left_on="c_custkey", right_on="o_custkey")
    j = j.merge(li, left_on="o_orderkey", right_on="l_orderkey")
    j = j.merge(nation, left_on="c_nationkey", right_on="n_nationkey")
    j = j.assign(revenue=j.l_extendedprice * (1 - j.l_discount))
    keys = ["c_custkey", "c_name", "c_acctbal", "c_phone", "n_name", "c_address", "c_comment"]
    g = j.groupby(keys).agg(revenue=("revenue", "sum")).reset_index()
    g = g[["c_custkey", "c_name", "revenue", "c_acctbal", "n_name", "c_address", "c_phone", "c_comment"]]
    return g.sort_values("revenue", ascending=False).head(20)


def q11(t):
    partsupp, supplier, nation = t["partsupp"], t["supplier"], t["nation"]
    n = nation[nation.n_name == "GERMANY"]
    s = supplier.merge(n, left_on="s_nationkey", right_on="n_nationkey")[["s_suppkey"]]
    ps = partsupp.merge(s, left_on="ps_suppkey", right_on="s_suppkey")
    ps = ps.assign(value=ps.ps_supplycost * ps.ps_availqty)
    threshold = ps["value"].sum() * 0.0001
    g = ps.groupby("ps_partkey").agg(value=("value", "sum")).reset_index()
    g = g[g["value"] > threshold]
    return g.sort_values("value", ascending=False)


def q12(t):
    orders, lineitem = t["orders"], t["lineitem"]
    li = lineitem[
        lineitem.l_shipmode.isin(["MAIL", "SHIP"])
        & (lineitem.l_commitdate < lineitem.l_receiptdate)
        & (lineitem.l_shipdate < lineitem.l_commitdate)
        & (lineitem.l_receiptdate >= _date("1994-01-01"))
        & (lineitem.l_receiptdate < _date("1995-01-01"))
    ]
    j = orders.merge(li, left_on="o_orderkey", right_on="l_orderkey")
    high = j.o_orderpriority.isin(["1-URGENT", "2-HIGH"])
    j = j.assign(high_line_count=high.astype("int64"), low_line_count=(~high).astype("int64"))
    g = (
        j.groupby("l_shipmode")
        .agg(high_line_count=("high_line_count", "sum"), low_line_count=("low_line_count", "sum"))
        .reset_index()
    )
    return g.sort_values("l_shipmode")


def q13(t):
    customer, orders = t["customer"], t["orders"]
    o = orders[~orders.o_comment.str.contains("special.*requests", regex=True)]
    j = customer.merge(o, left_on="c_custkey", right_on="o_custkey", how="left")
    per_customer = j.groupby("c_custkey").agg(c_count=("o_orderkey", "count")).reset_index()
    g = per_customer.groupby("c_count").agg(custdist=("c_custkey", "count")).reset_index()
    return g.sort_values(["custdist", "c_count"], ascending=[False, False])


def q14(t):
    lineitem, part = t["lineitem"], t["part"]
    li = lineitem[(lineitem.l_shipdate >= _date("1995-09-01")) & (lineitem.l_shipdate < _date("1995-10-01"))]
    j = li.merge(part, left_on="l_partkey", right_on="p_partkey")
    j = j.assign(revenue=j.l_extendedprice * (1 - j.l_discount))
    j = j.assign(promo=j.revenue.where(j.p_type.str.startswith("PROMO"), 0.0))
    return 100.0 * j.promo.sum() / j.revenue.sum()


def q15(t):
    lineitem, supplier = t["lineitem"], t["supplier"]
    li = lineitem[(lineitem.l_shipdate >= _date("1996-01-01")) & (lineitem.l_shipdate < _date("1996-04-01"))]
    li = li.assign(revenue=li.l_extendedprice * (1 - li.l_discount))
    rev = li.groupby("l_suppkey").agg(total_revenue=("revenue", "sum")).reset_index()
    top = rev.total_revenue.max()
    best = rev[rev.total_revenue == top]
    j = supplier.merge(best, left_on="s_suppkey", right_on="l_suppkey")
    j = j[["s_suppkey", "s_name", "s_address", "s_phone", "total_revenue"]]
    return j.sort_values("s_suppkey")


def q16(t):
    part, partsupp, supplier = t["part"], t["partsupp"], t["supplier"]
    p = part[
        (part.p_brand != "Brand#45")
        & ~part.p_type.str.startswith("MEDIUM POLISHED")
        & part.p_size.isin([49, 14, 23, 45, 19, 3, 36, 9])
    ]
    complaints = supplier[supplier.s_comment.str.contains("Customer.*Complaints", regex=True)]
    ps = partsupp[~partsupp.ps_suppkey.isin(complaints.s_suppkey)]  # NOT IN: an anti-join
    j = ps.merge(p, left_on="ps_partkey", right_on="p_partkey")
    g = j.groupby(["p_brand", "p_type", "p_size"]).agg(supplier_cnt=("ps_suppkey", "nunique")).reset_index()
    return g.sort_values(["supplier_cnt", "p_brand", "p_type", "p_size"], ascending=[False, True, True, True])


def q17(t):
    lineitem, part = t["lineitem"], t["part"]
    p = part[(part.p_brand == "Brand#23") & (part.p_container == "MED BOX")][["p_partkey"]]
    j = lineitem.merge(p, left_on="l_partkey", right_on="p_partkey")
    avg = j.groupby("p_partkey").agg(avg_quantity=("l_quantity", "mean")).reset_index()
    j = j.merge(avg, on="p_partkey")
    j = j[j.l_quantity < 0.2 * j.avg_quantity]
    return j.l_extendedprice.sum() / 7.0


def q18(t):
    customer, orders, lineitem = t["customer"], t["orders"], t["lineitem"]
    per_order = lineitem.groupby("l_orderkey").agg(sum_qty=("l_quantity", "sum")).reset_index()
    big = per_order[per_order.sum_qty > 300]
    o = orders[orders.o_orderkey.isin(big.l_orderkey)]
    j = customer.merge(o, left_on="c_custkey", right_on="o_custkey")
    j = j.merge(lineitem, left_on="o_orderkey", right_on="l_orderkey")
    keys = ["c_name", "c_custkey", "o_orderkey", "o_orderdate", "o_totalprice"]
    g = j.groupby(keys).agg(sum_qty=("l_quantity", "sum")).reset_index()
    return g.sort_values(["o_totalprice", "o_orderdate"], ascending=[False, True]).head(100)


def q19(t):
    lineitem, part = t["lineitem"], t["part"]
    li = lineitem[
        lineitem.l_shipmode.isin(["AIR", "AIR REG"]) & (lineitem.l_shipinstruct == "DELIVER IN PERSON")
    ]
    j = li.merge(part, left_on="l_partkey", right_on="p_partkey")
    j = j[
        (
            (j.p_brand == "Brand#12")
            & j.p_container.isin(["SM CASE", "SM BOX", "SM PACK", "SM PKG"])
            & j.l_quantity.between(1, 11)
            & j.p_size.between(1, 5)
        )
        | (
            (j.p_brand == "Brand#23")
            & j.p_container.isin(["MED BAG", "MED BOX", "MED PKG", "MED PACK"])
            & j.l_quantity.between(10, 20)
            & j.p_size.between(1, 10)
        )
        | (
            (j.p_brand == "Brand#34")
            & j.p_container.isin(["LG CASE", "LG BOX", "LG PACK", "LG PKG"])
            & j.l_quantity.between(20, 30)
            & j.p_size.between(1, 15)
        )
    ]
    return (j.l_extendedprice * (1 - j.l_discount)).sum()


def q20(t):
    part, lineitem, partsupp = t["part"], t["lineitem"], t["partsupp"]
    supplier, nation = t["supplier"], t["nation"]
    p = part[part.p_name.str.startswith("forest")][["p_partkey"]]
    li = lineitem[(lineitem.l_shipdate >= _date("1994-01-01")) & (lineitem.l_shipdate < _date("1995-01-01"))]
    shipped = li.groupby(["l_partkey", "l_suppkey"]).agg(sum_qty=("l_quantity", "sum")).reset_index()
    ps = partsupp.merge(p, left_on="ps_partkey", right_on="p_partkey")
    ps = ps.merge(shipped, left_on=["ps_partkey", "ps_suppkey"], right_on=["l_partkey", "l_suppkey"])
    ps = ps[ps.ps_availqty > 0.5 * ps.sum_qty]
    n = nation[nation.n_name == "CANADA"]
    s = supplier.merge(n, left_on="s_nationkey", right_on="n_nationkey")
    s = s[s.s_suppkey.isin(ps.ps_suppkey)]
    return s[["s_name", "s_address"]].sort_values("s_name")


def q21(t):
    lineitem, supplier, orders, nation = t["lineitem"], t["supplier"], t["orders"], t["nation"]
    li = lineitem[["l_orderkey", "l_suppkey", "l_receiptdate", "l_commitdate"]]
    # EXISTS another supplier in the order; NOT EXISTS another supplier late in it
    suppliers = li.groupby("l_orderkey").agg(n_supp=("l_suppkey", "nunique")).reset_index()
    late = li[li.l_receiptdate > li.l_commitdate]
    late_suppliers = late.groupby("l_orderkey").agg(n_late=("l_suppkey", "nunique")).reset_index()
    j = late.merge(suppliers, on="l_orderkey").merge(late_suppliers, on="l_orderkey")
    j = j[(j.n_supp > 1) & (j.n_late == 1)]
    n = nation[nation.n_name == "SAUDI ARABIA"]
    s = supplier.merge(n, left_on="s_nationkey", right_on="n_nationkey")
    o = orders[orders.o_orderstatus == "F"]
    j = j.merge(s, left_on="l_suppkey", right_on="s_suppkey")
    j = j.merge(o, left_on="l_orderkey", right_on="o_orderkey")
    g = j.groupby("s_name").agg(numwait=("l_orderkey", "count")).reset_index()
    return g.sort_values(["numwait", "s_name"], ascending=[False, True]).head(100)


def q22(t):
    customer, orders = t["customer"], t["orders"]
    codes = ["13", "31", "23", "29", "30", "18", "17"]
    c = customer.assign(cntrycode=customer.c_phone.str.slice(0, 2))
    c = c[c.cntrycode.isin(codes)]
    average = c[c.c_acctbal > 0.0].c_acctbal.mean()
    c = c[(c.c_acctbal > average) & ~c.c_custkey.isin(orders.o_custkey)]  # NOT EXISTS: anti-join
    g = (
        c.groupby("cntrycode")
        .agg(numcust=("c_acctbal", "count"), totacctbal=("c_acctbal", "sum"))
        .reset_index()
    )
    return g.sort_values("cntrycode")


QUERIES = {f"q{i}": globals()[f"q{i}"] for i in range(1, 23)}


def run(name: str, tables: dict, comm=None):
    """The answer of query ``name`` (``"q1"`` .. ``"q22"``) on ``tables``, as pandas."""
    return collect(QUERIES[name](tables), comm=comm)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir")
    ap.add_argument("queries", nargs="?", default=",".join(QUERIES))
    ap.add_argument("--engine", choices=("pandas", "hpcframe"), default="hpcframe")
    args = ap.parse_args(argv)
    tables = load_pandas(args.data_dir) if args.engine == "pandas" else load_hpcframe(args.data_dir)
    for name in args.queries.split(","):
        print(f"-- {name}\n{run(name, tables)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
