"""Hostile attribute and variable values are bound, never pasted as SQL:
executed on SQLite, they match no row (or are refused), with literals and
with bind parameters alike."""

from __future__ import annotations

import sqlite3

import pytest

import sqlsandbox

POLICY = """
version: 1
databases:
  db:
    dialect: sqlite
    default_schema: main
    tables:
      main.notes: {columns: {id: integer, owner: text, tenant: integer, body: text}}
questions:
  by_owner:
    database: db
    collection: shared
    sql: SELECT id, body FROM notes WHERE owner = {{who}}
collections:
  shared: {}
groups:
  users:
    data: {db: {main: {notes: {sandbox: {column: owner, attribute: owner}}}}}
    native: {db: true}
    collections: {shared: view}
  tenants:
    data: {db: {main: {notes: {sandbox: {column: tenant, attribute: tenant}}}}}
    native: {db: true}
"""

HOSTILE = [
    "x' OR '1'='1",
    "x' OR 1=1 --",
    "x'); DROP TABLE notes; --",
    "x\\' OR 1=1 #",
    "' UNION SELECT 1, 'alice', 1, 'stolen' --",
    "alice' --",
    "x\u02bc OR \u02bc1\u02bc=\u02bc1",  # modifier letter apostrophe
    "$1",
    "?",
    "%s",
    ":p1",
    "*/ OR 1=1 /*",
    "alice\n' OR '1'='1",
]


@pytest.fixture()
def db():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE notes (id integer, owner text, tenant integer, body text)")
    conn.executemany(
        "INSERT INTO notes VALUES (?, ?, ?, ?)",
        [(1, "alice", 1, "a1"), (2, "alice", 1, "a2"), (3, "bob", 2, "b1")],
    )
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def policy():
    return sqlsandbox.Policy.from_yaml(POLICY, "hostile.yaml")


def run(conn, out, style="qmark"):
    sql, params = out.for_paramstyle(style)
    return conn.execute(sql, params).fetchall()


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("params", [False, True])
def test_hostile_text_attribute_matches_nothing(db, policy, value, params):
    out = policy.rewrite(
        "SELECT id, body FROM notes", groups=["users"], attributes={"owner": value}, params=params
    )
    if params:
        assert out.params == [value]
        assert value not in out.sql or value in ("?",)
    assert run(db, out) == []
    assert run(db, out, "named") == []
    # The table is still there.
    assert db.execute("SELECT count(*) FROM notes").fetchone() == (3,)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_value_for_an_integer_column_is_refused(policy, value):
    with pytest.raises(sqlsandbox.AttributeTypeError) as e:
        policy.rewrite("SELECT id FROM notes", groups=["tenants"], attributes={"tenant": value})
    assert e.value.code == "SB302" and e.value.attribute == "tenant"


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("params", [False, True])
def test_hostile_question_variable_matches_nothing(db, policy, value, params):
    out = policy.rewrite_question(
        "by_owner", {"who": value}, groups=["users"], attributes={"owner": "alice"}, params=params
    )
    assert run(db, out) == []


@pytest.mark.parametrize("params", [False, True])
def test_nul_characters_are_refused(policy, params):
    # No database stores them in text; a NUL could end the string early
    # in a C client.
    with pytest.raises(sqlsandbox.AttributeTypeError):
        policy.rewrite("SELECT id FROM notes", groups=["users"], attributes={"owner": "alice\x00"}, params=params)
    with pytest.raises(sqlsandbox.AttributeTypeError):
        policy.rewrite_question(
            "by_owner", {"who": "alice\x00"}, groups=["users"], attributes={"owner": "alice"}, params=params
        )


def test_hostile_list_attribute(db, policy):
    out = policy.rewrite(
        "SELECT id FROM notes ORDER BY id",
        groups=["users"],
        attributes={"owner": ["bob", "x' OR '1'='1"]},
        params=True,
    )
    assert out.params == ["bob", "x' OR '1'='1"]
    assert run(db, out) == [(3,)]


def test_honest_values_still_match(db, policy):
    for params in [False, True]:
        out = policy.rewrite(
            "SELECT id FROM notes ORDER BY id", groups=["users"], attributes={"owner": "alice"}, params=params
        )
        assert run(db, out) == [(1,), (2,)]


def test_placeholders_in_the_query_are_refused(policy):
    # A placeholder in the caller's SQL could bind a sandbox's value
    # elsewhere: the rewrite refuses it.
    for sql in ["SELECT id FROM notes WHERE id = ?", "SELECT id FROM notes WHERE id = :p1"]:
        with pytest.raises(sqlsandbox.SqlsandboxError):
            policy.rewrite(sql, groups=["users"], attributes={"owner": "alice"}, params=True)
