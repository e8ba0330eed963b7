"""The 22 TPC-H queries in SQL, for DuckDB: the reference answers of the hpcframe queries
(:mod:`tpch_hf_queries`).

Standard TPC-H text (spec 3.0) with the substitution parameters of the spec's validation run
(the same as :mod:`tpch_hf_queries` uses). Aliases are added where the standard leaves an
output column unnamed (Q18 ``sum_qty``), so that column names match the pandas versions.
DuckDB's own ``tpch`` extension is not needed: :func:`connect` creates one view per table
over the tpchgen-cli Parquet folders (``DIR/<table>/*.parquet``).
"""

from __future__ import annotations

import os

TABLES = ("lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region")

SQL: dict[str, str] = {}

SQL["q1"] = """
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
"""

SQL["q2"] = """
select s_acctbal, s_name, n_name, p_partkey, p_mfgr, s_address, s_phone, s_comment
from part, supplier, partsupp, nation, region
where p_partkey = ps_partkey
  and s_suppkey = ps_suppkey
  and p_size = 15
  and p_type like '%BRASS'
  and s_nationkey = n_nationkey
  and n_regionkey = r_regionkey
  and r_name = 'EUROPE'
  and ps_supplycost = (
      select min(ps_supplycost)
      from partsupp, supplier, nation, region
      where p_partkey = ps_partkey
        and s_suppkey = ps_suppkey
        and s_nationkey = n_nationkey
        and n_regionkey = r_regionkey
        and r_name = 'EUROPE')
order by s_acctbal desc, n_name, s_name, p_partkey
limit 100
"""

SQL["q3"] = """
select l_orderkey,
       sum(l_extendedprice * (1 - l_discount)) as revenue,
       o_orderdate, o_shippriority
from customer, orders, lineitem
where c_mktsegment = 'BUILDING'
  and c_custkey = o_custkey
  and l_orderkey = o_orderkey
  and o_orderdate < date '1995-03-15'
  and l_shipdate > date '1995-03-15'
group by l_orderkey, o_orderdate, o_shippriority
order by revenue desc, o_orderdate
limit 10
"""

SQL["q4"] = """
select o_orderpriority, count(*) as order_count
from orders
where o_orderdate >= date '1993-07-01'
  and o_orderdate < date '1993-07-01' + interval '3' month
  and exists (
      select * from lineitem
      where l_orderkey = o_orderkey and l_commitdate < l_receiptdate)
group by o_orderpriority
order by o_orderpriority
"""

SQL["q5"] = """
select n_name, sum(l_extendedprice * (1 - l_discount)) as revenue
from customer, orders, lineitem, supplier, nation, region
where c_custkey = o_custkey
  and l_orderkey = o_orderkey
  and l_suppkey = s_suppkey
  and c_nationkey = s_nationkey
  and s_nationkey = n_nationkey
  and n_regionkey = r_regionkey
  and r_name = 'ASIA'
  and o_orderdate >= date '1994-01-01'
  and o_orderdate < date '1994-01-01' + interval '1' year
group by n_name
order by revenue desc
"""

SQL["q6"] = """
select sum(l_extendedprice * l_discount) as revenue
from lineitem
where l_shipdate >= date '1994-01-01'
  and l_shipdate < date '1994-01-01' + interval '1' year
  and l_discount between 0.06 - 0.01 and 0.06 + 0.01
  and l_quantity < 24
"""

SQL["q7"] = """
select supp_nation, cust_nation, l_year, sum(volume) as revenue
from (
    select n1.n_name as supp_nation, n2.n_name as cust_nation,
           extract(year from l_shipdate) as l_year,
           l_extendedprice * (1 - l_discount) as volume
    from supplier, lineitem, orders, customer, nation n1, nation n2
    where s_suppkey = l_suppkey
      and o_orderkey = l_orderkey
      and c_custkey = o_custkey
      and s_nationkey = n1.n_nationkey
      and c_nationkey = n2.n_nationkey
      and ((n1.n_name = 'FRANCE' and n2.n_name = 'GERMANY')
        or (n1.n_name = 'GERMANY' and n2.n_name = 'FRANCE'))
      and l_shipdate between date '1995-01-01' and date '1996-12-31'
) as shipping
group by supp_nation, cust_nation, l_year
order by supp_nation, cust_nation, l_year
"""

SQL["q8"] = """
select o_year,
       sum(case when nation = 'BRAZIL' then volume else 0 end) / sum(volume) as mkt_share
from (
    select extract(year from o_orderdate) as o_year,
           l_extendedprice * (1 - l_discount) as volume,
           n2.n_name as nation
    from part, supplier, lineitem, orders, customer, nation n1, nation n2, region
    where p_partkey = l_partkey
      and s_suppkey = l_suppkey
      and l_orderkey = o_orderkey
      and o_custkey = c_custkey
      and c_nationkey = n1.n_nationkey
      and n1.n_regionkey = r_regionkey
      and r_name = 'AMERICA'
      and s_nationkey = n2.n_nationkey
      and o_orderdate between date '1995-01-01' and date '1996-12-31'
      and p_type = 'ECONOMY ANODIZED STEEL'
) as all_nations
group by o_year
order by o_year
"""

SQL["q9"] = """
select nation, o_year, sum(amount) as sum_profit
from (
    select n_name as nation,
           extract(year from o_orderdate) as o_year,
           l_extendedprice * (1 - l_discount) - ps_supplycost * l_quantity as amount
    from part, supplier, lineitem, partsupp, orders, nation
    where s_suppkey = l_suppkey
      and ps_suppkey = l_suppkey
      and ps_partkey = l_partkey
      and p_partkey = l_partkey
      and o_orderkey = l_orderkey
      and s_nationkey = n_nationkey
      and p_name like '%green%'
) as profit
group by nation, o_year
order by nation, o_year desc
"""

SQL["q10"] = """
select c_custkey, c_name,
       sum(l_extendedprice * (1 - l_discount)) as revenue,
       c_acctbal, n_name, c_address, c_phone, c_comment
from customer, orders, lineitem, nation
where c_custkey = o_custkey
  and l_orderkey = o_orderkey
  and o_orderdate >= date '1993-10-01'
  and o_orderdate < date '1993-10-01' + interval '3' month
  and l_returnflag = 'R'
  and c_nationkey = n_nationkey
group by c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment
order by revenue desc
limit 20
"""

SQL["q11"] = """
select ps_partkey, sum(ps_supplycost * ps_availqty) as value
from partsupp, supplier, nation
where ps_suppkey = s_suppkey
  and s_nationkey = n_nationkey
  and n_name = 'GERMANY'
group by ps_partkey
having sum(ps_supplycost * ps_availqty) > (
    select sum(ps_supplycost * ps_availqty) * 0.0001
    from partsupp, supplier, nation
    where ps_suppkey = s_suppkey
      and s_nationkey = n_nationkey
      and n_name = 'GERMANY')
order by value desc
"""

SQL["q12"] = """
select l_shipmode,
       sum(case when o_orderpriority = '1-URGENT' or o_orderpriority = '2-HIGH'
                then 1 else 0 end) as high_line_count,
       sum(case when o_orderpriority <> '1-URGENT' and o_orderpriority <> '2-HIGH'
                then 1 else 0 end) as low_line_count
from orders, lineitem
where o_orderkey = l_orderkey
  and l_shipmode in ('MAIL', 'SHIP')
  and l_commitdate < l_receiptdate
  and l_shipdate < l_commitdate
  and l_receiptdate >= date '1994-01-01'
  and l_receiptdate < date '1994-01-01' + interval '1' year
group by l_shipmode
order by l_shipmode
"""

SQL["q13"] = """
select c_count, count(*) as custdist
from (
    select c_custkey, count(o_orderkey) as c_count
    from customer left outer join orders
      on c_custkey = o_custkey and o_comment not like '%special%requests%'
    group by c_custkey
) as c_orders
group by c_count
order by custdist desc, c_count desc
"""

SQL["q14"] = """
select 100.00 * sum(case when p_type like 'PROMO%'
                         then l_extendedprice * (1 - l_discount) else 0 end)
       / sum(l_extendedprice * (1 - l_discount)) as promo_revenue
from lineitem, part
where l_partkey = p_partkey
  and l_shipdate >= date '1995-09-01'
  and l_shipdate < date '1995-09-01' + interval '1' month
"""

SQL["q15"] = """
with revenue as (
    select l_suppkey as supplier_no,
           sum(l_extendedprice * (1 - l_discount)) as total_revenue
    from lineitem
    where l_shipdate >= date '1996-01-01'
      and l_shipdate < date '1996-01-01' + interval '3' month
    group by l_suppkey)
select s_suppkey, s_name, s_address, s_phone, total_revenue
from supplier, revenue
where s_suppkey = supplier_no
  and total_revenue = (select max(total_revenue) from revenue)
order by s_suppkey
"""

SQL["q16"] = """
select p_brand, p_type, p_size, count(distinct ps_suppkey) as supplier_cnt
from partsupp, part
where p_partkey = ps_partkey
  and p_brand <> 'Brand#45'
  and p_type not like 'MEDIUM POLISHED%'
  and p_size in (49, 14, 23, 45, 19, 3, 36, 9)
  and ps_suppkey not in (
      select s_suppkey from supplier where s_comment like '%Customer%Complaints%')
group by p_brand, p_type, p_size
order by supplier_cnt desc, p_brand, p_type, p_size
"""

SQL["q17"] = """
select sum(l_extendedprice) / 7.0 as avg_yearly
from lineitem, part
where p_partkey = l_partkey
  and p_brand = 'Brand#23'
  and p_container = 'MED BOX'
  and l_quantity < (
      select 0.2 * avg(l_quantity) from lineitem where l_partkey = p_partkey)
"""

SQL["q18"] = """
select c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, sum(l_quantity) as sum_qty
from customer, orders, lineitem
where o_orderkey in (
      select l_orderkey from lineitem group by l_orderkey having sum(l_quantity) > 300)
  and c_custkey = o_custkey
  and o_orderkey = l_orderkey
group by c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice
order by o_totalprice desc, o_orderdate
limit 100
"""

SQL["q19"] = """
select sum(l_extendedprice * (1 - l_discount)) as revenue
from lineitem, part
where (p_partkey = l_partkey
       and p_brand = 'Brand#12'
       and p_container in ('SM CASE', 'SM BOX', 'SM PACK', 'SM PKG')
       and l_quantity >= 1 and l_quantity <= 1 + 10
       and p_size between 1 and 5
       and l_shipmode in ('AIR', 'AIR REG')
       and l_shipinstruct = 'DELIVER IN PERSON')
   or (p_partkey = l_partkey
       and p_brand = 'Brand#23'
       and p_container in ('MED BAG', 'MED BOX', 'MED PKG', 'MED PACK')
       and l_quantity >= 10 and l_quantity <= 10 + 10
       and p_size between 1 and 10
       and l_shipmode in ('AIR', 'AIR REG')
       and l_shipinstruct = 'DELIVER IN PERSON')
   or (p_partkey = l_partkey
       and p_brand = 'Brand#34'
       and p_container in ('LG CASE', 'LG BOX', 'LG PACK', 'LG PKG')
       and l_quantity >= 20 and l_quantity <= 20 + 10
       and p_size between 1 and 15
       and l_shipmode in ('AIR', 'AIR REG')
       and l_shipinstruct = 'DELIVER IN PERSON')
"""

SQL["q20"] = """
select s_name, s_address
from supplier, nation
where s_suppkey in (
      select ps_suppkey from partsupp
      where ps_partkey in (select p_partkey from part where p_name like 'forest%')
        and ps_availqty > (
            select 0.5 * sum(l_quantity) from lineitem
            where l_partkey = ps_partkey
              and l_suppkey = ps_suppkey
              and l_shipdate >= date '1994-01-01'
              and l_shipdate < date '1994-01-01' + interval '1' year))
  and s_nationkey = n_nationkey
  and n_name = 'CANADA'
order by s_name
"""

SQL["q21"] = """
select s_name, count(*) as numwait
from supplier, lineitem l1, orders, nation
where s_suppkey = l1.l_suppkey
  and o_orderkey = l1.l_orderkey
  and o_orderstatus = 'F'
  and l1.l_receiptdate > l1.l_commitdate
  and exists (
      select * from lineitem l2
      where l2.l_orderkey = l1.l_orderkey and l2.l_suppkey <> l1.l_suppkey)
  and not exists (
      select * from lineitem l3
      where l3.l_orderkey = l1.l_orderkey
        and l3.l_suppkey <> l1.l_suppkey
        and l3.l_receiptdate > l3.l_commitdate)
  and s_nationkey = n_nationkey
  and n_name = 'SAUDI ARABIA'
group by s_name
order by numwait desc, s_name
limit 100
"""

SQL["q22"] = """
select cntrycode, count(*) as numcust, sum(c_acctbal) as totacctbal
from (
    select substring(c_phone from 1 for 2) as cntrycode, c_acctbal
    from customer
    where substring(c_phone from 1 for 2) in ('13', '31', '23', '29', '30', '18', '17')
      and c_acctbal > (
          select avg(c_acctbal) from customer
          where c_acctbal > 0.00
            and substring(c_phone from 1 for 2) in ('13', '31', '23', '29', '30', '18', '17'))
      and not exists (select * from orders where o_custkey = c_custkey)
) as custsale
group by cntrycode
order by cntrycode
"""

#: The ORDER BY of each query as ``[(column, ascending), ...]`` (empty: no ORDER BY, or a
#: one-row answer). Used to check that an answer's order is right where SQL fixes it.
ORDER: dict[str, list[tuple[str, bool]]] = {
    "q1": [("l_returnflag", True), ("l_linestatus", True)],
    "q2": [("s_acctbal", False), ("n_name", True), ("s_name", True), ("p_partkey", True)],
    "q3": [("revenue", False), ("o_orderdate", True)],
    "q4": [("o_orderpriority", True)],
    "q5": [("revenue", False)],
    "q6": [],
    "q7": [("supp_nation", True), ("cust_nation", True), ("l_year", True)],
    "q8": [("o_year", True)],
    "q9": [("nation", True), ("o_year", False)],
    "q10": [("revenue", False)],
    "q11": [("value", False)],
    "q12": [("l_shipmode", True)],
    "q13": [("custdist", False), ("c_count", False)],
    "q14": [],
    "q15": [("s_suppkey", True)],
    "q16": [("supplier_cnt", False), ("p_brand", True), ("p_type", True), ("p_size", True)],
    "q17": [],
    "q18": [("o_totalprice", False), ("o_orderdate", True)],
    "q19": [],
    "q20": [("s_name", True)],
    "q21": [("numwait", False), ("s_name", True)],
    "q22": [("cntrycode", True)],
}


def create_views(con, data_dir: str) -> None:
    """One view per TPC-H table on DuckDB connection ``con`` over ``data_dir/<table>/*.parquet``
    (tpchgen-cli's ``--parts`` layout) or ``data_dir/<table>.parquet``."""
    for table in TABLES:
        folder = os.path.join(data_dir, table)
        path = os.path.join(folder, "*.parquet") if os.path.isdir(folder) else folder + ".parquet"
        if not os.path.isdir(folder) and not os.path.exists(path):
            raise FileNotFoundError(f"TPC-H table {table!r} not found under {data_dir} (expected {folder}/)")
        quoted = path.replace("'", "''")
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{quoted}')")


def connect(data_dir: str, threads: int | None = None):
    """A DuckDB connection with one view per TPC-H table (see :func:`create_views`).

    Parameters
    ----------
    data_dir : str
        The folder tpchgen-cli wrote.
    threads : int, optional
        DuckDB's ``threads`` setting (its default: all cores).

    Returns
    -------
    duckdb.DuckDBPyConnection
    """
    import duckdb

    con = duckdb.connect()
    if threads is not None:
        con.execute(f"SET threads={int(threads)}")
    create_views(con, data_dir)
    return con


def run(con, query: str):
    """The answer of ``query`` (``"q1"`` .. ``"q22"``) as a pandas DataFrame."""
    return con.execute(SQL[query]).df()


# --------------------------------------------------------------------------------------------
# comparing an answer with DuckDB's
# --------------------------------------------------------------------------------------------
def normalise(df):
    """Each column as float64 (numbers, decimals), ``YYYY-MM-DD`` text (dates) or text."""
    import decimal

    import numpy as np
    import pandas as pd

    out = {}
    for name in df.columns:
        col = df[name]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            out[name] = col.dt.strftime("%Y-%m-%d").astype(object)
        elif pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
            out[name] = col.astype("float64")
        else:
            values = list(col)
            sample = next((v for v in values if v is not None and v == v), None)
            if isinstance(sample, (decimal.Decimal, int, float, np.number)):
                out[name] = pd.Series([np.nan if v is None else float(v) for v in values], dtype="float64")
            elif hasattr(sample, "strftime"):
                out[name] = pd.Series(
                    [None if v is None else v.strftime("%Y-%m-%d") for v in values], dtype=object
                )
            else:
                out[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(out, columns=list(df.columns)).reset_index(drop=True)


def _columns_equal(a, b, rtol: float) -> list[int]:
    """The row positions where columns ``a`` and ``b`` (normalised) differ."""
    import numpy as np

    if a.dtype == "float64" and b.dtype == "float64":
        x, y = a.to_numpy(), b.to_numpy()
        same = np.isclose(x, y, rtol=rtol, atol=1e-9) | (np.isnan(x) & np.isnan(y))
    else:
        same = a.astype(object).to_numpy() == b.astype(object).to_numpy()
    return [int(i) for i in np.flatnonzero(~same)]


def compare(query: str, got, expected, rtol: float = 1e-6) -> None:
    """Check an answer of ``query`` against DuckDB's (``expected``, from :func:`run`).

    Numbers are compared with a relative tolerance ``rtol`` (the pandas and hpcframe answers
    are float64 sums of decimals, DuckDB's are exact), dates and strings exactly. Rows are
    compared as a multiset, and where the query has an ORDER BY the order columns must also
    agree row by row (rows tied on them may come in any order). A one-value answer (Q6, Q14,
    Q17, Q19) may be a scalar; an empty SQL sum (NULL) matches pandas' 0.

    Parameters
    ----------
    query : str
        ``"q1"`` .. ``"q22"``.
    got : pandas.DataFrame, pandas.Series or scalar
        The answer to check.
    expected : pandas.DataFrame
        DuckDB's answer.
    rtol : float, default 1e-6
        Relative tolerance for numbers.

    Raises
    ------
    AssertionError
        Naming the query, the column and the first differing rows.
    """
    import pandas as pd

    if isinstance(got, pd.DataFrame) and got.shape == (1, 1) and expected.shape == (1, 1):
        got = got.iloc[0, 0]  # a one-value answer
    if not isinstance(got, (pd.DataFrame, pd.Series)):
        if expected.shape != (1, 1):
            raise AssertionError(f"{query}: got a scalar {got!r}, DuckDB answered {expected.shape[0]} rows")
        want = expected.iloc[0, 0]
        want = 0.0 if want is None or want != want else float(want)
        value = 0.0 if got is None or got != got else float(got)
        if not abs(value - want) <= rtol * max(abs(value), abs(want)) + 1e-9:
            raise AssertionError(f"{query}: got {value!r}, DuckDB answered {want!r}")
        return
    if isinstance(got, pd.Series):
        got = got.to_frame()
    got = got.reset_index(drop=True)
    if list(got.columns) != list(expected.columns):
        raise AssertionError(f"{query}: columns {list(got.columns)}, DuckDB's are {list(expected.columns)}")
    if len(got) != len(expected):
        raise AssertionError(
            f"{query}: {len(got)} rows, DuckDB answered {len(expected)} rows\n"
            f"got:\n{got.head(10)}\nexpected:\n{expected.head(10)}"
        )
    a, b = normalise(got), normalise(expected)
    for name, _asc in ORDER.get(query, []):
        bad = _columns_equal(a[name], b[name], rtol)
        if bad:
            raise AssertionError(
                f"{query}: the ORDER BY column {name!r} differs in rows {bad[:10]} (order or values)\n"
                f"got:\n{got.iloc[bad[:5]]}\nexpected:\n{expected.iloc[bad[:5]]}"
            )
    # rows as a multiset: sort by the exact columns first, then by the numbers (rounded)
    exact = [c for c in a.columns if a[c].dtype != "float64"]
    floats = [c for c in a.columns if a[c].dtype == "float64"]

    def ordered(df):
        keys = df[exact].copy()
        for c in floats:
            keys[c] = df[c].round(4)
        order = keys.sort_values(list(keys.columns), kind="stable").index
        return df.loc[order].reset_index(drop=True)

    a, b = ordered(a), ordered(b)
    for name in a.columns:
        bad = _columns_equal(a[name], b[name], rtol)
        if bad:
            raise AssertionError(
                f"{query}: column {name!r} differs in {len(bad)} of {len(a)} rows (compared as sorted rows)\n"
                f"got:\n{a.iloc[bad[:5]]}\nexpected:\n{b.iloc[bad[:5]]}"
            )
