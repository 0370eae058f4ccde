"""A SQL engine behind a pipe, for the differential tests.

Started by the Rust tests (tests/engines/mod.rs) as
`python engine.py duckdb|clickhouse|spark`; reads one JSON request per line
on standard input and writes one JSON reply per line on standard output:

    {"op": "exec", "sql": "...", "db": "x"?}                  -> {"ok": true}
    {"op": "batch", "sql": ["...", ...]}                       -> {"ok": true} or the first error
    {"op": "query", "sql": "...", "params": [...], "db": "x"?} -> {"ok": true, "columns": [...], "rows": [[...]]}

`params` are positional bind parameters, JSON values tagged with their
kind: {"int": 5}, {"text": "eu"}, {"num": "1.50"}, {"bool": true}. `db`
names the database (schema) unqualified names resolve to. Any failure
replies {"ok": false, "error": "..."}; the runner never dies of a failed
statement.

Every cell is rendered as text here, for both sides of a comparison, in
the form the Rust harness uses (tests/differential/harness.rs, `Rows`):
`NULL`; integers in decimal; floats as Rust's `{:.9e}` (9 significant
digits after the point, exponent without `+` or leading zeros); decimals
as their plain text; text as Rust's `{:?}` (quoted, escaped); timestamps
as `ts <ISO text>`; booleans `true`/`false`.
"""

import datetime
import decimal
import json
import math
import os
import sys
import unicodedata


def render_float(f):
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    mantissa, exp = f"{f:.9e}".split("e")
    return f"{mantissa}e{int(exp)}"


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def render_text(s):
    """Rust's `{:?}` of a `str` (non-printable characters as `\\u{..}`)."""
    out = ['"']
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") and ch != "\u200d":
            out.append("\\u{%x}" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def render(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return render_float(v)
    if isinstance(v, decimal.Decimal):
        if v.is_nan():
            return "NaN"
        # Plain notation, never exponent form; trailing zeros kept as the
        # engine typed them (both sides of a comparison use one engine).
        return format(v, "f")
    if isinstance(v, str):
        return render_text(v)
    if isinstance(v, datetime.datetime):
        return "ts " + v.isoformat(sep=" ")
    if isinstance(v, datetime.date):
        return "date " + v.isoformat()
    if isinstance(v, (bytes, bytearray)):
        return "blob " + repr(list(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(render(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{render(k)}: {render(x)}" for k, x in v.items()) + "}"
    # numpy scalars (chDB) and anything else: by value when possible.
    item = getattr(v, "item", None)
    if callable(item):
        return render(item())
    return type(v).__name__ + " " + str(v)


def param_value(p):
    (kind, v), = p.items()
    if kind == "num":
        return decimal.Decimal(v)
    return v


class Engine:
    """One engine: `execute(sql, db)` and `query(sql, params, db)`."""

    def __init__(self):
        self.current_db = None

    def use(self, db):
        if db is not None and db != self.current_db:
            self.set_db(db)
            self.current_db = db


class DuckDb(Engine):
    def __init__(self):
        super().__init__()
        import duckdb

        self.con = duckdb.connect(":memory:")
        self.con.execute("SET threads = 1")
        self.version = "DuckDB " + duckdb.__version__

    def set_db(self, db):
        self.con.execute(f"SET schema = '{db}'")

    def execute(self, sql, params=None):
        self.con.execute(sql, params or [])

    def query(self, sql, params):
        cur = self.con.execute(sql, params)
        columns = [d[0] for d in (cur.description or [])]
        return columns, cur.fetchall()


class ClickHouse(Engine):
    """chDB: ClickHouse in process. Bind parameters are not supported by
    its query API; a statement with parameters is refused here."""

    def __init__(self, path):
        super().__init__()
        from chdb import session

        self.session = session.Session(path)
        # A bare UNION means UNION DISTINCT, as in standard SQL (ClickHouse
        # refuses it by default).
        self.session.query("SET union_default_mode = 'DISTINCT'")
        self.version = "ClickHouse " + self.session.query("SELECT version()", "TSV").bytes().decode().strip() + " (chDB)"

    def set_db(self, db):
        self.session.query(f"USE {db}")

    @staticmethod
    def named(params):
        # ClickHouse query parameters are named: `{p1:Int64}` is params[0].
        # Their text is read with escape sequences.
        def escaped(v):
            if isinstance(v, str):
                for a, b in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"), ("\0", "\\0")):
                    v = v.replace(a, b)
            return v

        return {f"p{i + 1}": escaped(v) for i, v in enumerate(params)} if params else None

    def execute(self, sql, params=None):
        self.session.query(sql, "TSV", params=self.named(params))

    def query(self, sql, params):
        # JSONCompact keeps the column names and types; values come back as
        # JSON and are read by type below.
        res = self.session.query(sql, "JSONCompact", params=self.named(params))
        text = res.bytes() if hasattr(res, "bytes") else bytes(res)
        if not text:
            return [], []
        data = json.loads(text, parse_float=decimal.Decimal)
        columns = [c["name"] for c in data["meta"]]
        types = [c["type"] for c in data["meta"]]
        rows = [[ch_value(t, v) for t, v in zip(types, r)] for r in data["data"]]
        return columns, rows


def ch_type(t):
    while True:
        for w in ("Nullable(", "LowCardinality("):
            if t.startswith(w):
                t = t[len(w):-1]
                break
        else:
            return t


def ch_value(t, v):
    if v is None:
        return None
    t = ch_type(t)
    if t.startswith(("Int", "UInt")):
        return int(v)
    if t.startswith("Float"):
        return float(v)
    if t.startswith("Decimal"):
        return decimal.Decimal(str(v))
    if t == "Bool":
        return bool(v)
    if t.startswith("DateTime"):
        return datetime.datetime.fromisoformat(str(v))
    if t.startswith("Date"):
        return datetime.date.fromisoformat(str(v))
    if t.startswith("Array("):
        return [ch_value(t[6:-1], x) for x in v]
    return v


class Spark(Engine):
    def __init__(self, warehouse):
        super().__init__()
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        self.spark = (
            SparkSession.builder.master("local[1]")
            .appName("sqlsandbox-differential")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "1")
            .config("spark.default.parallelism", "1")
            .config("spark.sql.warehouse.dir", warehouse)
            .config("spark.sql.catalogImplementation", "in-memory")
            .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
            .config("spark.sql.session.timeZone", "UTC")
            # Tiny tables: planning and code generation cost more than the
            # data; results do not depend on either.
            .config("spark.sql.adaptive.enabled", "false")
            .config("spark.sql.codegen.wholeStage", "false")
            .getOrCreate()
        )
        self.spark.sparkContext.setLogLevel("OFF")
        import pyspark

        self.version = "Spark " + pyspark.__version__

    def set_db(self, db):
        self.spark.catalog.setCurrentDatabase(db)

    def execute(self, sql, params=None):
        self.spark.sql(sql, args=params or None).collect()

    def query(self, sql, params):
        df = self.spark.sql(sql, args=params or None)
        columns = list(df.columns)
        rows = [list(r) for r in df.collect()]
        return columns, rows


def open_engine(name, scratch):
    if name == "duckdb":
        return DuckDb()
    if name == "clickhouse":
        return ClickHouse(os.path.join(scratch, "chdb"))
    if name == "spark":
        return Spark(os.path.join(scratch, "warehouse"))
    raise SystemExit(f"unknown engine {name}")


def error_text(e):
    text = f"{type(e).__name__}: {e}"
    # Spark's messages carry a JVM stack trace after the first lines.
    lines = text.splitlines()
    return "\n".join(lines[:12])


def main():
    name = sys.argv[1]
    scratch = sys.argv[2] if len(sys.argv) > 2 else os.getcwd()
    # Everything the engines print goes to standard error: standard output
    # is the reply channel.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    try:
        engine = open_engine(name, scratch)
        out.write(json.dumps({"ok": True, "ready": engine.version}) + "\n")
    except Exception as e:  # noqa: BLE001
        out.write(json.dumps({"ok": False, "error": error_text(e)}) + "\n")
        return
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req["op"]
            if op == "batch":
                for sql in req["sql"]:
                    try:
                        engine.execute(sql)
                    except Exception as e:  # noqa: BLE001
                        raise RuntimeError(f"{error_text(e)}\n  in: {sql[:300]}") from None
                reply = {"ok": True}
            elif op == "exec":
                engine.use(req.get("db"))
                engine.execute(req["sql"], [param_value(p) for p in req.get("params", [])])
                reply = {"ok": True}
            elif op == "query":
                engine.use(req.get("db"))
                columns, rows = engine.query(req["sql"], [param_value(p) for p in req.get("params", [])])
                reply = {"ok": True, "columns": columns, "rows": [[render(v) for v in r] for r in rows]}
            elif op == "quit":
                break
            else:
                reply = {"ok": False, "error": f"unknown op {op}"}
        except Exception as e:  # noqa: BLE001
            reply = {"ok": False, "error": error_text(e)}
        out.write(json.dumps(reply, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
