#!/usr/bin/env python3
"""The same corpus through a sqlglot-based row-level-security rewrite (the
approach Apache Superset takes for its RLS filters: parse, replace each
protected table by a filtered subquery, generate), timed beside
sqlsandbox's own figures measured on the same machine in the same run.

Run: python3 benches/peer_sqlglot.py      (needs `pip install sqlglot`)
"""
import json
import os
import subprocess
import sys
import timeit

import sqlglot
from sqlglot import exp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = ["point_lookup", "dashboard_1kb", "in_list_1000", "joins_50_20kb"]

# alice's filters, as in policies/saas.yaml (the custom sandbox on accounts
# becomes a filtered subquery too).
FILTERS = {
    "orders": "tenant_id = 42",
    "events": "tenant_id = 42 AND region = 'eu'",
    "accounts": "tenant_id = 42",
}


def rls(sql):
    """Superset-style: replace each protected table by a filtered subquery."""
    tree = sqlglot.parse_one(sql, read="postgres")
    for table in list(tree.find_all(exp.Table)):
        name = table.name.lower()
        if name in FILTERS:
            alias = table.alias or name
            sub = sqlglot.parse_one(
                f"(SELECT * FROM public.{name} WHERE {FILTERS[name]}) AS {alias}", read="postgres"
            )
            table.replace(sub)
    return tree.sql(dialect="postgres")


def floor(sql):
    return sqlglot.parse_one(sql, read="postgres").sql(dialect="postgres")


def best_us(fn, sql):
    timer = timeit.Timer(lambda: fn(sql))
    n, _ = timer.autorange()
    return min(timer.repeat(repeat=5, number=n)) / n * 1e6


def main():
    out = subprocess.run(
        ["cargo", "run", "-q", "--release", "--example", "bench_corpus"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    ours = {r["query"]: r for r in json.loads(out)}
    print(f"sqlglot {sqlglot.__version__}, Python {sys.version.split()[0]}")
    head = f"{'query':<16}{'bytes':>7}{'sqlparser floor':>17}{'sqlsandbox':>12}{'vs floor':>10}{'sqlglot parse+gen':>19}{'sqlglot RLS':>13}{'sqlglot/sqlsandbox':>20}"
    print(head)
    for name in CORPUS:
        sql = open(os.path.join(ROOT, "benches", "corpus", name + ".sql")).read()
        g_floor = best_us(floor, sql)
        g_rls = best_us(rls, sql)
        r = ours[name]
        print(
            f"{name:<16}{r['bytes']:>7}{r['floor_us']:>15.1f}us{r['rewrite_us']:>10.1f}us"
            f"{r['rewrite_us'] / r['floor_us']:>9.2f}x{g_floor:>17.1f}us{g_rls:>11.1f}us"
            f"{g_rls / r['rewrite_us']:>19.1f}x"
        )


if __name__ == "__main__":
    main()
