"""`explain`: what a principal may read and why, with or without a query."""

from __future__ import annotations

import json

import sqlsandbox


def test_explain_principal(saas):
    e = saas.explain(user="alice")
    assert e.principal == "alice" and e.groups == ["all_users", "customers"] and not e.admin
    (db,) = e.databases
    assert db["database"] == "warehouse" and db["native"] is True
    tables = {t["table"]: t for t in db["tables"]}
    assert tables["public.orders"]["decision"] == "sandboxed"
    assert tables["public.products"]["decision"] == "unrestricted"
    assert tables["audit.logins"]["decision"] == "denied"
    assert e.query is None and e.error is None
    assert "public.orders" in e.text and str(e) == e.text
    d = e.to_dict()
    assert d["query"] is None and d["explanation"]["principal"] == "alice"
    json.dumps(d)


def test_explain_query(saas):
    e = saas.explain(user="alice", sql="SELECT count(*) FROM orders")
    assert isinstance(e.query, sqlsandbox.Rewritten)
    assert "tenant_id = 42" in e.query.sql
    assert e.to_dict()["query"]["rewritten"]["sql"] == e.query.sql


def test_explain_refused_query_is_reported_not_raised(saas):
    e = saas.explain(user="alice", sql="SELECT email FROM accounts")
    assert e.query is None
    assert isinstance(e.error, sqlsandbox.HiddenColumn) and e.error.code == "SB303"
    assert e.to_dict()["query"] == {
        "refused": {"code": "SB303", "message": e.error.message}
    }


def test_explain_builder_question(saas):
    e = saas.explain(user="alice", builder={"query": {"source-table": "orders"}})
    assert e.query is not None and "tenant_id = 42" in e.query.sql


def test_explain_all_users(saas):
    m = saas.explain_all_users()
    json.dumps(m)
    assert "alice" in json.dumps(m)
