"""The example service (python/examples/service.py) on SQLite, always, and
on PostgreSQL when SQLSANDBOX_PG_URL is set: each user sees only their
rows, through SQLAlchemy, with values bound as the driver's parameters."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import mark_done

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "service.py"

spec = importlib.util.spec_from_file_location("service", EXAMPLE)
assert spec is not None and spec.loader is not None
service_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(service_module)
ReportService = service_module.ReportService
engine_for = service_module.engine_for
ORDERS = service_module.ORDERS
ACCOUNTS = service_module.ACCOUNTS

# Which tenants each user may see orders of (None: every tenant).
TENANTS = {"alice": {1}, "bob": {2}, "olga": {2, 3}, "carol": None}


def ground_truth(user, columns):
    tenants = TENANTS[user]
    rows = [o for o in ORDERS if tenants is None or o[1] in tenants]
    names = ["id", "tenant_id", "account_id", "product_id", "total", "status"]
    return sorted([[o[names.index(c)] for c in columns] for o in rows])


def check(service):
    """Every user, several queries: the rows equal the ground truth."""
    results = {}
    for user in TENANTS:
        for sql, columns in [
            ("SELECT id, tenant_id, total FROM orders", ["id", "tenant_id", "total"]),
            ("SELECT o.id, o.status FROM orders o WHERE o.total > 50 OR o.status = 'open'", ["id", "status"]),
            ("SELECT id FROM orders WHERE status LIKE 'p%'", ["id"]),
        ]:
            r = service.handle({"user": user, "sql": sql})
            assert r["status"] == 200, (user, sql, r)
            rows = sorted(r["rows"])
            want = ground_truth(user, columns)
            if "total > 50" in sql:
                want = [row for row in ground_truth(user, ["id", "status", "total"]) if row[2] > 50 or row[1] == "open"]
                want = sorted([row[:2] for row in want])
            if "LIKE" in sql:
                want = sorted([[o[0]] for o in ORDERS if (TENANTS[user] is None or o[1] in TENANTS[user]) and o[5].startswith("p")])
            assert rows == want, (user, sql, rows, want)
            results[(user, sql)] = rows
        # A `%` in the query (an operator, a literal) reaches the database
        # as written, with parameters (alice, bob, olga) and without (carol):
        # the `format` paramstyles double it, and the driver undoes that.
        sql = "SELECT id, total % 7 AS m, '100%' AS pct FROM orders"
        r = service.handle({"user": user, "sql": sql})
        assert r["status"] == 200, (user, r)
        visible = [o for o in ORDERS if TENANTS[user] is None or o[1] in TENANTS[user]]
        assert sorted(r["rows"]) == sorted([[o[0], o[4] % 7, "100%"] for o in visible]), (user, r)
        results[(user, sql)] = r["rows"]

    # A join through the custom sandbox on accounts.
    r = service.handle({
        "user": "alice",
        "sql": "SELECT a.name, sum(o.total) AS spent FROM accounts a JOIN orders o ON o.account_id = a.id GROUP BY a.name",
    })
    assert r["status"] == 200 and [list(x) for x in r["rows"]] == [["Acme", 350]]
    # Refusals come back with their code.
    r = service.handle({"user": "alice", "sql": "SELECT email FROM accounts"})
    assert r == {"status": 403, "error": {"code": "SB303", "message": r["error"]["message"]}}
    r = service.handle({"user": "alice", "sql": "SELEC"})
    assert r["status"] == 400 and r["error"]["code"] == "SB101"
    # A builder question and a saved question.
    r = service.handle({"user": "bob", "question": {"query": {"source-table": "orders", "aggregation": [["sum", ["field", "total"]]]}}})
    assert r["status"] == 200 and int(r["rows"][0][0]) == 115
    r = service.handle({"user": "alice", "saved": "orders_over", "variables": {"minimum": 150}})
    assert r["status"] == 200 and r["rows"] == [[102, 250]]
    # Hostile values as bind parameters: nothing leaks, nothing breaks.
    for evil in ["1 OR 1=1", "0) OR (1=1", "'; DROP TABLE orders; --"]:
        r = service.handle({"user": "alice", "saved": "orders_over", "variables": {"minimum": evil}})
        assert r["status"] == 403 and r["error"]["code"] == "SB302", r
    # The rewrite cache served the repeated dashboard queries.
    stats = service.policy.cache_stats()
    assert stats["hits"] > 0
    return results


def test_service_on_sqlite():
    service = ReportService(engine_for(None, "main"), "main")
    service.create()
    check(service)


def test_service_demo_runs():
    env = dict(os.environ)
    env.pop("SQLSANDBOX_PG_URL", None)
    out = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, check=True)
    assert "== sqlite" in out.stdout and '"SB303"' in out.stdout


@pytest.mark.skipif("SQLSANDBOX_PG_URL" not in os.environ, reason="needs SQLSANDBOX_PG_URL")
def test_service_on_postgres():
    url = os.environ["SQLSANDBOX_PG_URL"]
    schema = f"sqlsandbox_pytest_{uuid.uuid4().hex[:8]}"
    service = ReportService(engine_for(url, schema), schema)
    service.create()
    try:
        results = check(service)
    finally:
        service.drop()
        service.engine.dispose()
    mark_done("python-postgres", f"{len(results)} queries for {len(TENANTS)} users matched the ground truth")
