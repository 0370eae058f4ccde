#!/usr/bin/env python3
"""Runs a batch of SQL on one embedded engine for tests/builder_engines.rs.

    builder_run.py ENGINE IN.json OUT.json

ENGINE is duckdb, clickhouse (chDB) or spark (pyspark, local mode). IN.json
is {"setup": [statement, ...], "queries": [{"id": ..., "sql": ...}, ...]}:
the setup statements run first (any failure is fatal: exit 2), then every
query, each on its own (an engine error is reported, not fatal). OUT.json is
{"engine": ..., "version": ..., "seconds": ..., "results": [{"id": ...,
"rows": [[cell, ...], ...]} or {"id": ..., "error": "..."}]}.

Cells are JSON null, numbers (integers, floats and decimals; booleans as 1
and 0), or strings; dates are "YYYY-MM-DD" and timestamps "YYYY-MM-DD
HH:MM:SS" (fractions of a second kept), so the Rust side compares them with
SQLite's text. One process, one session per run: the engine's data lives in
a temporary directory removed at the end. The session time zone is UTC, as
SQLite's datetime('now') is.
"""

import datetime
import decimal
import json
import os
import shutil
import sys
import tempfile
import time

os.environ["TZ"] = "UTC"
if hasattr(time, "tzset"):
    time.tzset()


def cell(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return 1 if v else 0
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, datetime.datetime):
        s = v.strftime("%Y-%m-%d %H:%M:%S")
        if v.microsecond:
            s += ".%06d" % v.microsecond
        return s
    if isinstance(v, datetime.date):
        return v.strftime("%Y-%m-%d")
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8", "replace")
    return str(v)


class Duckdb:
    def __init__(self, tmp):
        import duckdb

        self.version = duckdb.__version__
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")

    def run(self, sql):
        return [[cell(v) for v in row] for row in self.con.execute(sql).fetchall()]

    def close(self):
        self.con.close()


class Clickhouse:
    # JSONCompact with numbers unquoted; the column types say which strings
    # are dates.
    SETTINGS = (
        " SETTINGS output_format_json_quote_64bit_integers = 0,"
        " output_format_json_quote_decimals = 0,"
        " output_format_json_quote_64bit_floats = 0"
    )

    def __init__(self, tmp):
        import chdb
        from chdb import session

        self.version = chdb.__version__
        self.sess = session.Session(os.path.join(tmp, "chdb"))

    def run(self, sql):
        res = self.sess.query(sql.rstrip().rstrip(";") + self.SETTINGS, "JSONCompact")
        text = res.bytes().decode("utf-8") if hasattr(res, "bytes") else str(res)
        if not text.strip():
            return []
        out = json.loads(text)
        types = [m["type"] for m in out.get("meta", [])]
        rows = []
        for r in out.get("data", []):
            row = []
            for v, t in zip(r, types):
                if isinstance(v, str) and ("Int" in t or "Float" in t or "Decimal" in t):
                    v = float(v)
                if isinstance(v, bool):
                    v = 1 if v else 0
                row.append(v)
            rows.append(row)
        return rows

    def setup(self, sql):
        self.sess.query(sql)

    def close(self):
        self.sess.close()


class Spark:
    def __init__(self, tmp):
        from pyspark.sql import SparkSession

        warehouse = os.path.join(tmp, "warehouse")
        self.spark = (
            SparkSession.builder.master("local[2]")
            .appName("sqlsandbox-builder-engines")
            .config("spark.sql.warehouse.dir", warehouse)
            .config("spark.driver.extraJavaOptions", "-Dderby.system.home=" + tmp)
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        self.spark.sparkContext.setLogLevel("OFF")
        self.version = self.spark.version

    def run(self, sql):
        return [[cell(v) for v in row] for row in self.spark.sql(sql).collect()]

    def close(self):
        self.spark.stop()


ENGINES = {"duckdb": Duckdb, "clickhouse": Clickhouse, "spark": Spark}


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ENGINES:
        sys.exit("usage: builder_run.py duckdb|clickhouse|spark IN.json OUT.json")
    engine, src, dst = sys.argv[1:]
    with open(src, encoding="utf-8") as f:
        job = json.load(f)
    start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="sqlsandbox-builder-" + engine + "-")
    try:
        e = ENGINES[engine](tmp)
        try:
            for stmt in job["setup"]:
                try:
                    (getattr(e, "setup", None) or e.run)(stmt)
                except Exception as err:  # noqa: BLE001 - reported, then fatal
                    print(f"setup failed on {engine}: {stmt}\n{err}", file=sys.stderr)
                    sys.exit(2)
            results = []
            for q in job["queries"]:
                try:
                    results.append({"id": q["id"], "rows": e.run(q["sql"])})
                except Exception as err:  # noqa: BLE001 - an engine error is a result
                    msg = str(err).strip().splitlines()
                    results.append({"id": q["id"], "error": " ".join(msg[:3])[:600]})
            version = e.version
        finally:
            e.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {
        "engine": engine,
        "version": version,
        "seconds": round(time.monotonic() - start, 3),
        "results": results,
    }
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
