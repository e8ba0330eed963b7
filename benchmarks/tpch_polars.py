"""The 22 TPC-H queries for Polars (lazy API), the comparison engine of ``tpch_all.py``.

Written in the style of the Polars versions of pola-rs/polars-benchmark, with the validation
parameters and output columns of :mod:`tpch_sql` / :mod:`tpch_hf_queries`. The tables are
``scan_parquet`` of tpchgen-cli's folders with the decimal money columns cast to Float64 (as
hpcframe and the pandas versions read them), dates kept as ``Date``.
"""

from __future__ import annotations

import datetime as _dt
import os

import polars as pl

TABLES = ("lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region")


def _d(text: str) -> _dt.date:
    return _dt.date.fromisoformat(text)


def load(data_dir: str) -> dict[str, pl.LazyFrame]:
    """A lazy ``scan_parquet`` per table, decimals cast to Float64."""
    out = {}
    for table in TABLES:
        folder = os.path.join(data_dir, table)
        path = os.path.join(folder, "*.parquet") if os.path.isdir(folder) else folder + ".parquet"
        out[table] = scan(path)
    return out


def scan(path) -> pl.LazyFrame:
    """``scan_parquet`` of ``path`` (a file, glob or list of files), decimals cast to Float64."""
    lf = pl.scan_parquet(path)
    schema = lf.collect_schema()
    casts = [pl.col(n).cast(pl.Float64) for n, t in schema.items() if isinstance(t, pl.Decimal)]
    return lf.with_columns(casts) if casts else lf


def _rev():
    return pl.col("l_extendedprice") * (1 - pl.col("l_discount"))


def q1(t):
    return (
        t["lineitem"]
        .filter(pl.col("l_shipdate") <= _d("1998-09-02"))
        .group_by("l_returnflag", "l_linestatus")
        .agg(
            pl.col("l_quantity").sum().alias("sum_qty"),
            pl.col("l_extendedprice").sum().alias("sum_base_price"),
            _rev().sum().alias("sum_disc_price"),
            (_rev() * (1 + pl.col("l_tax"))).sum().alias("sum_charge"),
            pl.col("l_quantity").mean().alias("avg_qty"),
            pl.col("l_extendedprice").mean().alias("avg_price"),
            pl.col("l_discount").mean().alias("avg_disc"),
            pl.len().alias("count_order"),
        )
        .sort("l_returnflag", "l_linestatus")
    )


def q2(t):
    europe = (
        t["region"]
        .filter(pl.col("r_name") == "EUROPE")
        .join(t["nation"], left_on="r_regionkey", right_on="n_regionkey")
        .join(t["supplier"], left_on="n_nationkey", right_on="s_nationkey")
        .join(t["partsupp"], left_on="s_suppkey", right_on="ps_suppkey")
    )
    j = (
        t["part"]
        .filter((pl.col("p_size") == 15) & pl.col("p_type").str.ends_with("BRASS"))
        .join(europe, left_on="p_partkey", right_on="ps_partkey")
    )
    return (
        j.filter(pl.col("ps_supplycost") == pl.col("ps_supplycost").min().over("p_partkey"))
        .select("s_acctbal", "s_name", "n_name", "p_partkey", "p_mfgr", "s_address", "s_phone", "s_comment")
        .sort(["s_acctbal", "n_name", "s_name", "p_partkey"], descending=[True, False, False, False])
        .head(100)
    )


def q3(t):
    day = _d("1995-03-15")
    return (
        t["customer"]
        .filter(pl.col("c_mktsegment") == "BUILDING")
        .join(t["orders"].filter(pl.col("o_orderdate") < day), left_on="c_custkey", right_on="o_custkey")
        .join(t["lineitem"].filter(pl.col("l_shipdate") > day), left_on="o_orderkey", right_on="l_orderkey")
        .group_by("o_orderkey", "o_orderdate", "o_shippriority")
        .agg(_rev().sum().alias("revenue"))
        .select(pl.col("o_orderkey").alias("l_orderkey"), "revenue", "o_orderdate", "o_shippriority")
        .sort(["revenue", "o_orderdate"], descending=[True, False])
        .head(10)
    )


def q4(t):
    late = t["lineitem"].filter(pl.col("l_commitdate") < pl.col("l_receiptdate"))
    return (
        t["orders"]
        .filter(pl.col("o_orderdate").is_between(_d("1993-07-01"), _d("1993-10-01"), closed="left"))
        .join(late, left_on="o_orderkey", right_on="l_orderkey", how="semi")
        .group_by("o_orderpriority")
        .agg(pl.len().alias("order_count"))
        .sort("o_orderpriority")
    )


def q5(t):
    return (
        t["region"]
        .filter(pl.col("r_name") == "ASIA")
        .join(t["nation"], left_on="r_regionkey", right_on="n_regionkey")
        .join(t["customer"], left_on="n_nationkey", right_on="c_nationkey")
        .join(
            t["orders"].filter(
                pl.col("o_orderdate").is_between(_d("1994-01-01"), _d("1995-01-01"), closed="left")
            ),
            left_on="c_custkey",
            right_on="o_custkey",
        )
        .join(t["lineitem"], left_on="o_orderkey", right_on="l_orderkey")
        .join(t["supplier"], left_on=["l_suppkey", "n_nationkey"], right_on=["s_suppkey", "s_nationkey"])
        .group_by("n_name")
        .agg(_rev().sum().alias("revenue"))
        .sort("revenue", descending=True)
    )


def q6(t):
    return (
        t["lineitem"]
        .filter(
            pl.col("l_shipdate").is_between(_d("1994-01-01"), _d("1995-01-01"), closed="left")
            & pl.col("l_discount").is_between(0.05, 0.07)
            & (pl.col("l_quantity") < 24)
        )
        .select((pl.col("l_extendedprice") * pl.col("l_discount")).sum().alias("revenue"))
    )


def q7(t):
    pair = ["FRANCE", "GERMANY"]
    nation = t["nation"].filter(pl.col("n_name").is_in(pair))
    s = t["supplier"].join(nation, left_on="s_nationkey", right_on="n_nationkey")
    s = s.select("s_suppkey", pl.col("n_name").alias("supp_nation"))
    c = t["customer"].join(nation, left_on="c_nationkey", right_on="n_nationkey")
    c = c.select("c_custkey", pl.col("n_name").alias("cust_nation"))
    return (
        t["lineitem"]
        .filter(pl.col("l_shipdate").is_between(_d("1995-01-01"), _d("1996-12-31")))
        .join(s, left_on="l_suppkey", right_on="s_suppkey")
        .join(t["orders"], left_on="l_orderkey", right_on="o_orderkey")
        .join(c, left_on="o_custkey", right_on="c_custkey")
        .filter(pl.col("supp_nation") != pl.col("cust_nation"))
        .group_by("supp_nation", "cust_nation", pl.col("l_shipdate").dt.year().alias("l_year"))
        .agg(_rev().sum().alias("revenue"))
        .sort("supp_nation", "cust_nation", "l_year")
    )


def q8(t):
    america = (
        t["region"]
        .filter(pl.col("r_name") == "AMERICA")
        .join(t["nation"], left_on="r_regionkey", right_on="n_regionkey")
        .join(t["customer"], left_on="n_nationkey", right_on="c_nationkey")
        .select("c_custkey")
    )
    s = t["supplier"].join(t["nation"], left_on="s_nationkey", right_on="n_nationkey")
    s = s.select("s_suppkey", pl.col("n_name").alias("nation"))
    return (
        t["lineitem"]
        .join(
            t["part"].filter(pl.col("p_type") == "ECONOMY ANODIZED STEEL"),
            left_on="l_partkey",
            right_on="p_partkey",
        )
        .join(
            t["orders"].filter(pl.col("o_orderdate").is_between(_d("1995-01-01"), _d("1996-12-31"))),
            left_on="l_orderkey",
            right_on="o_orderkey",
        )
        .join(america, left_on="o_custkey", right_on="c_custkey")
        .join(s, left_on="l_suppkey", right_on="s_suppkey")
        .with_columns(_rev().alias("volume"), pl.col("o_orderdate").dt.year().alias("o_year"))
        .group_by("o_year")
        .agg(
            (
                pl.when(pl.col("nation") == "BRAZIL").then(pl.col("volume")).otherwise(0.0).sum()
                / pl.col("volume").sum()
            ).alias("mkt_share")
        )
        .sort("o_year")
    )


def q9(t):
    return (
        t["lineitem"]
        .join(
            t["part"].filter(pl.col("p_name").str.contains("green", literal=True)),
            left_on="l_partkey",
            right_on="p_partkey",
        )
        .join(t["supplier"], left_on="l_suppkey", right_on="s_suppkey")
        .join(t["partsupp"], left_on=["l_suppkey", "l_partkey"], right_on=["ps_suppkey", "ps_partkey"])
        .join(t["orders"], left_on="l_orderkey", right_on="o_orderkey")
        .join(t["nation"], left_on="s_nationkey", right_on="n_nationkey")
        .group_by(pl.col("n_name").alias("nation"), pl.col("o_orderdate").dt.year().alias("o_year"))
        .agg((_rev() - pl.col("ps_supplycost") * pl.col("l_quantity")).sum().alias("sum_profit"))
        .sort(["nation", "o_year"], descending=[False, True])
    )


def q10(t):
    return (
        t["customer"]
        .join(
            t["orders"].filter(
                pl.col("o_orderdate").is_between(_d("1993-10-01"), _d("1994-01-01"), closed="left")
            ),
            left_on="c_custkey",
            right_on="o_custkey",
        )
        .join(
            t["lineitem"].filter(pl.col("l_returnflag") == "R"), left_on="o_orderkey", right_on="l_orderkey"
        )
        .join(t["nation"], left_on="c_nationkey", right_on="n_nationkey")
        .group_by("c_custkey", "c_name", "c_acctbal", "c_phone", "n_name", "c_address", "c_comment")
        .agg(_rev().sum().alias("revenue"))
        .select("c_custkey", "c_name", "revenue", "c_acctbal", "n_name", "c_address", "c_phone", "c_comment")
        .sort("revenue", descending=True)
        .head(20)
    )


def q11(t):
    ps = (
        t["nation"]
        .filter(pl.col("n_name") == "GERMANY")
        .join(t["supplier"], left_on="n_nationkey", right_on="s_nationkey")
        .join(t["partsupp"], left_on="s_suppkey", right_on="ps_suppkey")
        .with_columns((pl.col("ps_supplycost") * pl.col("ps_availqty")).alias("value"))
    )
    threshold = ps.select(pl.col("value").sum() * 0.0001)
    return (
        ps.group_by("ps_partkey")
        .agg(pl.col("value").sum())
        .join(threshold.select(pl.col("value").alias("threshold")), how="cross")
        .filter(pl.col("value") > pl.col("threshold"))
        .select("ps_partkey", "value")
        .sort("value", descending=True)
    )


def q12(t):
    high = pl.col("o_orderpriority").is_in(["1-URGENT", "2-HIGH"])
    return (
        t["orders"]
        .join(
            t["lineitem"].filter(
                pl.col("l_shipmode").is_in(["MAIL", "SHIP"])
                & (pl.col("l_commitdate") < pl.col("l_receiptdate"))
                & (pl.col("l_shipdate") < pl.col("l_commitdate"))
                & pl.col("l_receiptdate").is_between(_d("1994-01-01"), _d("1995-01-01"), closed="left")
            ),
            left_on="o_orderkey",
            right_on="l_orderkey",
        )
        .group_by("l_shipmode")
        .agg(high.sum().alias("high_line_count"), (~high).sum().alias("low_line_count"))
        .sort("l_shipmode")
    )


def q13(t):
    orders = t["orders"].filter(~pl.col("o_comment").str.contains("special.*requests"))
    return (
        t["customer"]
        .join(orders, left_on="c_custkey", right_on="o_custkey", how="left")
        .group_by("c_custkey")
        .agg(pl.col("o_orderkey").count().alias("c_count"))
        .group_by("c_count")
        .agg(pl.len().alias("custdist"))
        .sort(["custdist", "c_count"], descending=[True, True])
    )


def q14(t):
    return (
        t["lineitem"]
        .filter(pl.col("l_shipdate").is_between(_d("1995-09-01"), _d("1995-10-01"), closed="left"))
        .join(t["part"], left_on="l_partkey", right_on="p_partkey")
        .select(
            (
                100.0
                * pl.when(pl.col("p_type").str.starts_with("PROMO")).then(_rev()).otherwise(0.0).sum()
                / _rev().sum()
            ).alias("promo_revenue")
        )
    )


def q15(t):
    revenue = (
        t["lineitem"]
        .filter(pl.col("l_shipdate").is_between(_d("1996-01-01"), _d("1996-04-01"), closed="left"))
        .group_by("l_suppkey")
        .agg(_rev().sum().alias("total_revenue"))
    )
    return (
        t["supplier"]
        .join(revenue, left_on="s_suppkey", right_on="l_suppkey")
        .filter(pl.col("total_revenue") == pl.col("total_revenue").max())
        .select("s_suppkey", "s_name", "s_address", "s_phone", "total_revenue")
        .sort("s_suppkey")
    )


def q16(t):
    complaints = (
        t["supplier"].filter(pl.col("s_comment").str.contains("Customer.*Complaints")).select("s_suppkey")
    )
    return (
        t["part"]
        .filter(
            (pl.col("p_brand") != "Brand#45")
            & ~pl.col("p_type").str.starts_with("MEDIUM POLISHED")
            & pl.col("p_size").is_in([49, 14, 23, 45, 19, 3, 36, 9])
        )
        .join(t["partsupp"], left_on="p_partkey", right_on="ps_partkey")
        .join(complaints, left_on="ps_suppkey", right_on="s_suppkey", how="anti")
        .group_by("p_brand", "p_type", "p_size")
        .agg(pl.col("ps_suppkey").n_unique().alias("supplier_cnt"))
        .sort(["supplier_cnt", "p_brand", "p_type", "p_size"], descending=[True, False, False, False])
    )


def q17(t):
    return (
        t["part"]
        .filter((pl.col("p_brand") == "Brand#23") & (pl.col("p_container") == "MED BOX"))
        .join(t["lineitem"], left_on="p_partkey", right_on="l_partkey")
        .filter(pl.col("l_quantity") < 0.2 * pl.col("l_quantity").mean().over("p_partkey"))
        .select((pl.col("l_extendedprice").sum() / 7.0).alias("avg_yearly"))
    )


def q18(t):
    big = (
        t["lineitem"]
        .group_by("l_orderkey")
        .agg(pl.col("l_quantity").sum().alias("sum_quantity"))
        .filter(pl.col("sum_quantity") > 300)
    )
    return (
        t["orders"]
        .join(big, left_on="o_orderkey", right_on="l_orderkey", how="semi")
        .join(t["customer"], left_on="o_custkey", right_on="c_custkey")
        .join(t["lineitem"], left_on="o_orderkey", right_on="l_orderkey")
        .group_by("c_name", "o_custkey", "o_orderkey", "o_orderdate", "o_totalprice")
        .agg(pl.col("l_quantity").sum().alias("sum_qty"))
        .select(
            "c_name",
            pl.col("o_custkey").alias("c_custkey"),
            "o_orderkey",
            "o_orderdate",
            "o_totalprice",
            "sum_qty",
        )
        .sort(["o_totalprice", "o_orderdate"], descending=[True, False])
        .head(100)
    )


def q19(t):
    q, size = pl.col("l_quantity"), pl.col("p_size")
    return (
        t["lineitem"]
        .filter(
            pl.col("l_shipmode").is_in(["AIR", "AIR REG"]) & (pl.col("l_shipinstruct") == "DELIVER IN PERSON")
        )
        .join(t["part"], left_on="l_partkey", right_on="p_partkey")
        .filter(
            (
                (pl.col("p_brand") == "Brand#12")
                & pl.col("p_container").is_in(["SM CASE", "SM BOX", "SM PACK", "SM PKG"])
                & q.is_between(1, 11)
                & size.is_between(1, 5)
            )
            | (
                (pl.col("p_brand") == "Brand#23")
                & pl.col("p_container").is_in(["MED BAG", "MED BOX", "MED PKG", "MED PACK"])
                & q.is_between(10, 20)
                & size.is_between(1, 10)
            )
            | (
                (pl.col("p_brand") == "Brand#34")
                & pl.col("p_container").is_in(["LG CASE", "LG BOX", "LG PACK", "LG PKG"])
                & q.is_between(20, 30)
                & size.is_between(1, 15)
            )
        )
        .select(_rev().sum().alias("revenue"))
    )


def q20(t):
    shipped = (
        t["lineitem"]
        .filter(pl.col("l_shipdate").is_between(_d("1994-01-01"), _d("1995-01-01"), closed="left"))
        .group_by("l_partkey", "l_suppkey")
        .agg((0.5 * pl.col("l_quantity").sum()).alias("half_qty"))
    )
    forest = t["part"].filter(pl.col("p_name").str.starts_with("forest")).select("p_partkey")
    suppliers = (
        t["partsupp"]
        .join(forest, left_on="ps_partkey", right_on="p_partkey", how="semi")
        .join(shipped, left_on=["ps_partkey", "ps_suppkey"], right_on=["l_partkey", "l_suppkey"])
        .filter(pl.col("ps_availqty") > pl.col("half_qty"))
        .select("ps_suppkey")
    )
    return (
        t["supplier"]
        .join(t["nation"].filter(pl.col("n_name") == "CANADA"), left_on="s_nationkey", right_on="n_nationkey")
        .join(suppliers, left_on="s_suppkey", right_on="ps_suppkey", how="semi")
        .select("s_name", "s_address")
        .sort("s_name")
    )


def q21(t):
    li = t["lineitem"].select("l_orderkey", "l_suppkey", "l_receiptdate", "l_commitdate")
    late = li.filter(pl.col("l_receiptdate") > pl.col("l_commitdate"))
    n_supp = li.group_by("l_orderkey").agg(pl.col("l_suppkey").n_unique().alias("n_supp"))
    n_late = late.group_by("l_orderkey").agg(pl.col("l_suppkey").n_unique().alias("n_late"))
    return (
        late.join(n_supp, on="l_orderkey")
        .join(n_late, on="l_orderkey")
        .filter((pl.col("n_supp") > 1) & (pl.col("n_late") == 1))
        .join(t["supplier"], left_on="l_suppkey", right_on="s_suppkey")
        .join(
            t["nation"].filter(pl.col("n_name") == "SAUDI ARABIA"),
            left_on="s_nationkey",
            right_on="n_nationkey",
        )
        .join(t["orders"].filter(pl.col("o_orderstatus") == "F"), left_on="l_orderkey", right_on="o_orderkey")
        .group_by("s_name")
        .agg(pl.len().alias("numwait"))
        .sort(["numwait", "s_name"], descending=[True, False])
        .head(100)
    )


def q22(t):
    codes = ["13", "31", "23", "29", "30", "18", "17"]
    c = t["customer"].with_columns(pl.col("c_phone").str.slice(0, 2).alias("cntrycode"))
    c = c.filter(pl.col("cntrycode").is_in(codes))
    average = c.filter(pl.col("c_acctbal") > 0.0).select(pl.col("c_acctbal").mean().alias("avg_acctbal"))
    return (
        c.join(t["orders"], left_on="c_custkey", right_on="o_custkey", how="anti")
        .join(average, how="cross")
        .filter(pl.col("c_acctbal") > pl.col("avg_acctbal"))
        .group_by("cntrycode")
        .agg(pl.len().alias("numcust"), pl.col("c_acctbal").sum().alias("totacctbal"))
        .sort("cntrycode")
    )


QUERIES = {f"q{i}": globals()[f"q{i}"] for i in range(1, 23)}


def run(name: str, tables: dict):
    """The answer of query ``name`` as pandas (a one-value answer as a 1x1 frame)."""
    return QUERIES[name](tables).collect().to_pandas()
