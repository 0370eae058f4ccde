"""A multi-tenant report service: every query is sandboxed by sqlsandbox,
then executed through SQLAlchemy on SQLite or PostgreSQL.

The service holds one compiled policy for the process (with a rewrite
cache), takes requests as dicts -- ``{"user": ..., "sql": ...}``, or
``"question"`` for a query-builder question -- and answers with the rows, or
with the refusal's stable code. Values reach the database as bind
parameters, in the driver's own placeholder style
(``Rewritten.for_paramstyle``).

Run it::

    python python/examples/service.py                      # SQLite in memory
    SQLSANDBOX_PG_URL=postgres://postgres@127.0.0.1:5432/test \\
        python python/examples/service.py                  # PostgreSQL too

On PostgreSQL it works in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from typing import Any, Dict, List, Optional

import sqlalchemy as sa

import sqlsandbox

# The shop's policy; `{dialect}` and `{schema}` are filled in per database.
# Customers see their tenant's orders and accounts (without e-mails) and
# every product; analysts see everything; `ops` sees the orders of every
# tenant in its list.
POLICY = """
version: 1
attributes: [tenant, tenants]
databases:
  shop:
    dialect: {dialect}
    default_schema: {schema}
    tables:
      {schema}.accounts:
        columns: {{id: integer, tenant_id: integer, name: text, email: text}}
      {schema}.orders:
        columns: {{id: integer, tenant_id: integer, account_id: integer, product_id: integer, total: integer, status: text}}
        foreign_keys: {{account_id: accounts.id, product_id: products.id}}
      {schema}.products:
        columns: {{id: integer, name: text, price: integer}}
questions:
  tenant_accounts:
    database: shop
    collection: internal
    sql: SELECT id, tenant_id, name FROM accounts WHERE tenant_id = {{{{tenant}}}}
  orders_over:
    database: shop
    collection: reports
    sql: SELECT id, total FROM orders WHERE total > {{{{minimum}}}}
collections:
  internal: {{}}
  reports: {{}}
groups:
  customers:
    data:
      shop:
        {schema}:
          accounts: {{sandbox: {{question: tenant_accounts, parameters: {{tenant: tenant}}}}}}
          orders: {{sandbox: {{column: tenant_id, attribute: tenant}}}}
          products: unrestricted
    native: {{shop: true}}
    collections: {{reports: view}}
  ops:
    data:
      shop:
        {schema}:
          orders: {{sandbox: {{column: tenant_id, attribute: tenants}}}}
    native: {{shop: true}}
  analysts:
    data: {{shop: unrestricted}}
    native: {{shop: true}}
    collections: {{reports: view}}
users:
  alice: {{groups: [customers], attributes: {{tenant: 1}}}}
  bob: {{groups: [customers], attributes: {{tenant: 2}}}}
  olga: {{groups: [ops], attributes: {{tenants: [2, 3]}}}}
  carol: {{groups: [analysts]}}
"""

# Row ids encode their tenant (tenant * 100 + n), so a row of another
# tenant is recognisable in any result.
ACCOUNTS = [
    (101, 1, "Acme", "ceo@acme.test"),
    (201, 2, "Globex", "ceo@globex.test"),
    (301, 3, "Initech", "ceo@initech.test"),
]
PRODUCTS = [(1, "widget", 10), (2, "gadget", 25)]
ORDERS = [
    (101, 1, 101, 1, 100, "paid"),
    (102, 1, 101, 2, 250, "open"),
    (201, 2, 201, 1, 40, "paid"),
    (202, 2, 201, 2, 75, "paid"),
    (301, 3, 301, 2, 999, "open"),
]

# SQLAlchemy names the dialects its way.
DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}


def engine_for(url: Optional[str], schema: str) -> sa.Engine:
    """An engine for `url` (SQLite in memory when None); on PostgreSQL the
    session's search_path is the policy's default schema, as the policy
    assumes for the names the query writes unqualified."""
    if url is None:
        return sa.create_engine("sqlite+pysqlite://", poolclass=sa.pool.StaticPool)
    if url.startswith("postgres://"):
        url = "postgresql+psycopg2://" + url[len("postgres://") :]
    return sa.create_engine(url, connect_args={"options": f"-c search_path={schema}"})


class ReportService:
    """Rewrites each request for its user, runs it, returns rows or a refusal."""

    def __init__(self, engine: sa.Engine, schema: str) -> None:
        self.engine = engine
        self.schema = schema
        dialect = DIALECTS[engine.dialect.name]
        self.policy = sqlsandbox.Policy.from_yaml(
            POLICY.format(dialect=dialect, schema=schema),
            name="shop.yaml",
            cache_bytes=16 << 20,
        )
        self.paramstyle = engine.dialect.paramstyle

    def create(self) -> None:
        """Creates and fills the shop's tables."""
        s = self.schema
        with self.engine.begin() as conn:
            if self.engine.dialect.name != "sqlite":
                conn.exec_driver_sql(f"CREATE SCHEMA {s}")
            conn.exec_driver_sql(
                f"CREATE TABLE {s}.accounts (id integer PRIMARY KEY, tenant_id integer, name text, email text)"
            )
            conn.exec_driver_sql(
                f"CREATE TABLE {s}.products (id integer PRIMARY KEY, name text, price integer)"
            )
            conn.exec_driver_sql(
                f"CREATE TABLE {s}.orders (id integer PRIMARY KEY, tenant_id integer, account_id integer, product_id integer, total integer, status text)"
            )
            conn.execute(
                sa.text(f"INSERT INTO {s}.accounts VALUES (:id, :t, :n, :e)"),
                [dict(id=a, t=t, n=n, e=e) for a, t, n, e in ACCOUNTS],
            )
            conn.execute(
                sa.text(f"INSERT INTO {s}.products VALUES (:id, :n, :p)"),
                [dict(id=i, n=n, p=p) for i, n, p in PRODUCTS],
            )
            conn.execute(
                sa.text(f"INSERT INTO {s}.orders VALUES (:id, :t, :a, :p, :tot, :st)"),
                [dict(id=i, t=t, a=a, p=p, tot=tot, st=st) for i, t, a, p, tot, st in ORDERS],
            )

    def drop(self) -> None:
        """Drops what `create` made (PostgreSQL: the schema)."""
        if self.engine.dialect.name != "sqlite":
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    def handle(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """One request: ``{"user", "sql"}``, ``{"user", "question"}`` (a
        query-builder question) or ``{"user", "saved", "variables"}``. The
        answer is ``{"status": 200, "columns", "rows"}`` or the refusal:
        ``{"status": 403 | 400, "error": {"code", "message"}}``."""
        try:
            out = self.rewrite(request)
        except sqlsandbox.SqlsandboxError as e:
            return {"status": 403 if e.refusal else 400, "error": e.to_dict()}
        sql, params = out.for_paramstyle(self.paramstyle)
        with self.engine.connect() as conn:
            result = conn.exec_driver_sql(sql, params)
            return {
                "status": 200,
                "columns": list(result.keys()),
                "rows": [list(r) for r in result.all()],
                "fingerprint": out.fingerprint,
            }

    def rewrite(self, request: Dict[str, Any]) -> sqlsandbox.Rewritten:
        user = request["user"]
        if "sql" in request:
            return self.policy.rewrite(request["sql"], user=user, params=True)
        if "question" in request:
            return self.policy.rewrite_builder(request["question"], user=user, params=True)
        return self.policy.rewrite_question(
            request["saved"], request.get("variables", {}), user=user, params=True
        )


DEMO: List[Dict[str, Any]] = [
    {"user": "alice", "sql": "SELECT id, total FROM orders ORDER BY id"},
    {"user": "bob", "sql": "SELECT id, total FROM orders ORDER BY id"},
    {"user": "olga", "sql": "SELECT tenant_id, count(*) AS n FROM orders GROUP BY tenant_id ORDER BY tenant_id"},
    {"user": "carol", "sql": "SELECT count(*) AS n FROM orders"},
    {"user": "alice", "sql": "SELECT a.name, sum(o.total) AS spent FROM accounts a JOIN orders o ON o.account_id = a.id GROUP BY a.name"},
    {"user": "alice", "sql": "SELECT email FROM accounts"},
    {"user": "bob", "question": {"query": {"source-table": "orders", "aggregation": [["sum", ["field", "total"]]]}}},
    {"user": "alice", "saved": "orders_over", "variables": {"minimum": 150}},
]


def main() -> int:
    pg = os.environ.get("SQLSANDBOX_PG_URL")
    for url in [None] + ([pg] if pg else []):
        schema = "main" if url is None else f"sqlsandbox_example_{uuid.uuid4().hex[:8]}"
        service = ReportService(engine_for(url, schema), schema)
        print(f"== {service.engine.dialect.name}")
        service.create()
        try:
            for request in DEMO:
                print(json.dumps(request))
                print("  ->", json.dumps(service.handle(request), default=str))
        finally:
            service.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
