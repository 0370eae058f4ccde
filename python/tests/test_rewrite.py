"""Rewrites of native SQL, builder questions and saved questions, the
result object, principals, options and the rewrite cache."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

import sqlsandbox
from conftest import POLICIES, ROOT

ALICE_SQL = (
    "SELECT a.plan, sum(o.total) FROM accounts a JOIN orders o ON o.account_id = a.id "
    "GROUP BY a.plan"
)


def test_rewrite_matches_the_readme(saas):
    out = saas.rewrite(ALICE_SQL, user="alice")
    assert out.sql == (
        "SELECT a.plan, sum(o.total) FROM (SELECT id, plan, tenant_id, created_at FROM "
        "public.accounts WHERE tenant_id = 42) a JOIN (SELECT * FROM public.orders WHERE "
        "tenant_id = 42) o ON o.account_id = a.id GROUP BY a.plan"
    )
    assert str(out) == out.sql
    assert out.params == []
    assert out.database == "warehouse"
    assert out.dialect == "postgres"
    assert out.destination is None and out.role is None and out.role_statement is None
    assert [(a.table, a.alias, a.kind) for a in out.applied] == [
        ("public.accounts", "a", "custom"),
        ("public.orders", "o", "basic"),
    ]
    assert out.applied[0].question == "sandboxed_accounts"
    assert out.applied[1].groups == ["customers"]
    assert out.applied[1].bindings == [("tenant", 42)]
    assert out.fencing.mode == "auto"
    assert out.fencing.fenced is False
    assert out.fencing.reason is None
    assert len(out.fingerprint) == 32


def test_params_are_python_values(saas):
    out = saas.rewrite("SELECT * FROM events", user="alice", params=True)
    assert "42" not in out.sql and "'eu'" not in out.sql
    assert out.sql == (
        "SELECT * FROM (SELECT * FROM public.events WHERE (tenant_id = $1) AND (region = $2)) AS events"
    )
    assert out.params == [42, "eu"]
    assert out.param_types == ["integer", "text"]
    assert [type(p) for p in out.params] == [int, str]


def test_decimal_and_boolean_params():
    policy = sqlsandbox.Policy.from_yaml(
        """
version: 1
databases:
  db:
    dialect: sqlite
    default_schema: main
    tables:
      main.t: {columns: {id: integer, price: decimal, active: boolean}}
groups:
  g:
    data: {db: {main: {t: {sandbox: {filters: [{column: price, attribute: p}, {column: active, attribute: a}]}}}}}
    native: {db: true}
""",
        "p.yaml",
    )
    out = policy.rewrite(
        "SELECT id FROM t", groups=["g"], attributes={"p": Decimal("12.50"), "a": True}, params=True
    )
    assert out.params == [Decimal("12.50"), True]
    assert isinstance(out.params[0], Decimal) and out.params[1] is True
    assert out.param_types == ["decimal", "boolean"]
    d = out.to_dict()
    # The JSON shape: decimals as strings, exact.
    assert d["params"] == [{"value": "12.50", "type": "decimal"}, {"value": True, "type": "boolean"}]


def test_to_dict_is_the_cli_json(saas):
    out = saas.rewrite(ALICE_SQL, user="alice", params=True)
    d = out.to_dict()
    assert set(d) >= {"sql", "params", "database", "dialect", "applied", "fencing", "fingerprint"}
    assert d["sql"] == out.sql and d["fingerprint"] == out.fingerprint
    assert d["params"] == [{"value": 42, "type": "integer"}, {"value": 42, "type": "integer"}] or d[
        "params"
    ] == [{"value": 42, "type": "integer"}]
    assert d["applied"][1] == out.applied[1].to_dict()
    assert d["fencing"] == out.fencing.to_dict()
    json.dumps(d)  # plain data


def test_to_dict_equals_the_command_line_output(saas):
    """When the CLI binary is built (cargo test builds it), its JSON and
    to_dict() agree field for field."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    binary = target / "debug" / "sqlsandbox"
    if not binary.exists():
        pytest.skip("the sqlsandbox binary is not built in this checkout")
    cli = subprocess.run(
        [str(binary), "rewrite", "--policy", str(POLICIES / "saas.yaml"), "--user", "alice",
         "--params", "--format", "json", ALICE_SQL],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(cli.stdout) == saas.rewrite(ALICE_SQL, user="alice", params=True).to_dict()


def test_principal_forms_agree(saas):
    by_user = saas.rewrite("SELECT * FROM orders", user="alice")
    by_groups = saas.rewrite(
        "SELECT * FROM orders", groups=["customers"], attributes={"tenant": 42, "region": "eu"}
    )
    by_claims = saas.rewrite(
        "SELECT * FROM orders",
        claims={"sub": "alice", "groups": ["customers"], "attributes": {"tenant": 42}},
    )
    by_claims_json = saas.rewrite(
        "SELECT * FROM orders",
        claims='{"sub": "alice", "groups": ["customers"], "attributes": {"tenant": 42}}',
    )
    p = saas.principal(user="alice")
    by_object = saas.rewrite("SELECT * FROM orders", principal=p)
    sqls = {o.sql for o in [by_user, by_groups, by_claims, by_claims_json, by_object]}
    assert sqls == {"SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS orders"}
    # The fingerprint covers what was applied, not who asked.
    assert by_user.fingerprint == by_groups.fingerprint == by_object.fingerprint


def test_principal_object(saas, marketplace):
    p = saas.principal(user="alice")
    assert p.name == "alice"
    assert p.groups == ["all_users", "customers"]
    assert p.attributes == {"tenant": 42, "region": "eu"}
    assert not p.is_admin and not p.is_anonymous
    assert saas.principal(user="root").is_admin
    assert saas.principal(anonymous=True).is_anonymous
    caller = saas.principal(groups=["customers"], attributes={"tenant": [1, 2]}, name="api-7")
    assert caller.name == "api-7" and caller.attributes == {"tenant": [1, 2]}
    assert "api-7" in repr(caller)
    # Made for one policy, used with another: resolved again there.
    rita = marketplace.principal(user="rita")
    with pytest.raises(sqlsandbox.UnknownUser):
        saas.rewrite("SELECT 1", principal=rita)


def test_multi_valued_attribute(marketplace):
    out = marketplace.rewrite("SELECT id FROM sales", user="rita", params=True, database="shop")
    assert out.params == ["north", "east"]
    assert "IN ($1, $2)" in out.sql
    listed = marketplace.rewrite(
        "SELECT id FROM sales",
        groups=["regional_managers"],
        attributes={"regions": ("north", "east")},
        database="shop",
    )
    assert "IN ('north', 'east')" in listed.sql


def test_api_key_and_anonymous(marketplace, saas):
    # The reporting bot's group reads sales unrestricted, without native SQL.
    bot = marketplace.principal(api_key="demo-key-reporting-bot")
    assert bot.name == "api-key:reporting-bot" and bot.groups == ["reporting"]
    out = marketplace.rewrite_builder(
        {"query": {"source-table": "sales", "aggregation": [["count"]]}}, principal=bot, database="shop"
    )
    assert out.applied == []
    with pytest.raises(sqlsandbox.NativeSqlDenied):
        marketplace.rewrite("SELECT count(*) FROM sales", principal=bot, database="shop")
    with pytest.raises(sqlsandbox.UnknownName) as e:
        marketplace.rewrite("SELECT 1", api_key="wrong")
    assert e.value.kind == "API key"
    with pytest.raises(sqlsandbox.AccessDenied):
        saas.rewrite("SELECT * FROM orders", anonymous=True)


def test_principal_arguments_are_checked(saas):
    with pytest.raises(TypeError, match="name the principal once"):
        saas.rewrite("SELECT 1")
    with pytest.raises(TypeError, match="name the principal once"):
        saas.rewrite("SELECT 1", user="alice", groups=["customers"])
    with pytest.raises(TypeError, match="name the principal once"):
        saas.rewrite("SELECT 1", principal=saas.principal(user="alice"), user="bob")
    with pytest.raises(TypeError, match="name="):
        saas.rewrite("SELECT 1", user="alice", name="x")
    with pytest.raises(TypeError, match="attribute `tenant` must be"):
        saas.rewrite("SELECT 1", groups=["customers"], attributes={"tenant": None})
    with pytest.raises(TypeError, match="attribute `tenant` must be"):
        saas.rewrite("SELECT 1", groups=["customers"], attributes={"tenant": {"a": 1}})
    with pytest.raises(TypeError, match="not a finite number"):
        saas.rewrite("SELECT 1", groups=["customers"], attributes={"tenant": float("nan")})
    with pytest.raises(TypeError):
        saas.rewrite("SELECT 1", groups="customers")  # a str is not a list of groups


def test_options(saas):
    sql = "SELECT id FROM orders WHERE id = 5 AND 1 / id > 0"
    auto = saas.rewrite(sql, user="alice")
    assert auto.fencing.fenced and auto.fencing.reason and auto.fencing.pushed == 1
    never = saas.rewrite(sql, user="alice", fence="never")
    assert not never.fencing.fenced and never.fencing.mode == "never"
    as_sqlite = saas.rewrite("SELECT * FROM orders", user="alice", dialect="sqlite", params=True)
    assert as_sqlite.dialect == "sqlite" and "?" in as_sqlite.sql
    assert saas.rewrite("SELECT 1", user="alice", database="warehouse").database == "warehouse"
    with pytest.raises(sqlsandbox.LimitExceeded):
        saas.rewrite("SELECT " + "1+" * 50 + "1", user="alice", max_operators=10)
    with pytest.raises(sqlsandbox.LimitExceeded):
        saas.rewrite("SELECT 1", user="alice", max_sql_bytes=3)
    assert "pg" in sqlsandbox.dialects() or "postgres" in sqlsandbox.dialects()


def test_builder_question_as_dict_and_json(saas):
    question = {"query": {"source-table": "orders", "aggregation": [["count"]]}}
    out = saas.rewrite_builder(question, user="alice")
    assert "tenant_id = 42" in out.sql
    assert out.applied[0].table == "public.orders"
    assert saas.rewrite_builder(json.dumps(question), user="alice").sql == out.sql
    # Builder questions need no native SQL permission: erin (builder only)
    # may count products.
    erin = saas.rewrite_builder(
        {"query": {"source-table": "products", "aggregation": [["count"]]}}, user="erin"
    )
    assert "products" in erin.sql
    with pytest.raises(sqlsandbox.BuilderError) as e:
        saas.rewrite_builder({"query": {"source-table": "orders", "limit": object()}}, user="alice")
    assert e.value.path == "$.query.limit"
    nested: dict = {}
    nested["query"] = nested
    with pytest.raises(sqlsandbox.BuilderError, match="deeper"):
        saas.rewrite_builder(nested, user="alice")
    with pytest.raises(sqlsandbox.BuilderError):
        saas.rewrite_builder('{"query": {}, "query": {}}', user="alice")


def test_saved_question(marketplace, saas):
    out = marketplace.rewrite_question(
        "sales_since", {"since": "2024-01-01"}, user="rita", params=True
    )
    # The variable is coerced to the column's type (a timestamp).
    assert out.params == ["north", "east", "2024-01-01 00:00:00"]
    assert out.param_types == ["text", "text", "timestamp"]
    assert out.sql == (
        "SELECT region, count(*) AS n FROM (SELECT * FROM public.sales WHERE region IN ($1, $2)) "
        "AS sales WHERE sold_at >= $3 GROUP BY region"
    )
    big = saas.rewrite_question("big_orders", user="alice")
    assert "tenant_id = 42" in big.sql
    with pytest.raises(sqlsandbox.MissingVariable) as e:
        marketplace.rewrite_question("sales_since", user="rita")
    assert (e.value.question, e.value.variable) == ("sales_since", "since")
    with pytest.raises(sqlsandbox.UnknownQuestion):
        saas.rewrite_question("nope", user="root")
    # For anyone else, a question they may not run and one that does not
    # exist are refused alike.
    with pytest.raises(sqlsandbox.AccessDenied):
        saas.rewrite_question("nope", user="alice")


def test_policy_properties(saas):
    assert saas.file.endswith("saas.yaml")
    assert len(saas.digest) == 64
    assert saas.databases == ["warehouse"]
    assert "alice" in saas.users and "customers" in saas.groups
    assert "big_orders" in saas.questions
    assert "saas.yaml" in repr(saas)
    text = (POLICIES / "saas.yaml").read_text()
    assert sqlsandbox.Policy.from_yaml(text, "saas.yaml").digest == saas.digest
    assert sqlsandbox.version() == sqlsandbox.__version__


def test_rewrite_cache():
    text = (POLICIES / "saas.yaml").read_text()
    cached = sqlsandbox.Policy.from_yaml(text, "saas.yaml", cache_bytes=1 << 20)
    plain = sqlsandbox.Policy.from_yaml(text, "saas.yaml")
    assert plain.cache_stats() is None
    sql = "SELECT status, count(*) FROM orders GROUP BY status"
    for tenant in range(20):
        got = cached.rewrite(sql, groups=["customers"], attributes={"tenant": tenant}, params=True)
        want = plain.rewrite(sql, groups=["customers"], attributes={"tenant": tenant}, params=True)
        assert got.to_dict() == want.to_dict()
        assert got.params == [tenant]
    stats = cached.cache_stats()
    # Principals who differ only in their values share one entry.
    assert stats["misses"] == 1 and stats["hits"] == 19 and stats["entries"] == 1
    assert stats["bytes"] > 0
    cached.rewrite(sql, user="alice", params=True, cache=False)
    assert cached.cache_stats()["hits"] == 19
    cached.clear_cache()
    assert cached.cache_stats()["entries"] == 0


@pytest.mark.parametrize(
    "style,sql,params",
    [
        ("qmark", "(tenant_id = ?) AND (region = ?)", (42, "eu")),
        ("numeric", "(tenant_id = :1) AND (region = :2)", (42, "eu")),
        ("named", "(tenant_id = :p1) AND (region = :p2)", {"p1": 42, "p2": "eu"}),
        ("format", "(tenant_id = %s) AND (region = %s)", (42, "eu")),
        ("pyformat", "(tenant_id = %(p1)s) AND (region = %(p2)s)", {"p1": 42, "p2": "eu"}),
    ],
)
def test_for_paramstyle(saas, style, sql, params):
    out = saas.rewrite("SELECT * FROM events WHERE kind LIKE 'a%'", user="alice", params=True)
    got_sql, got_params = out.for_paramstyle(style)
    assert sql in got_sql
    assert got_params == params
    percent = "'a%%'" if style in ("format", "pyformat") else "'a%'"
    assert percent in got_sql


def test_for_paramstyle_repeats_positional_values(saas):
    # PostgreSQL reuses $1 for equal values; positional styles repeat them.
    out = saas.rewrite(
        "SELECT * FROM orders o1 JOIN orders o2 ON o1.id = o2.id", user="alice", params=True
    )
    assert out.sql.count("$1") == 2 and out.params == [42]
    sql, params = out.for_paramstyle("qmark")
    assert sql.count("?") == 2 and params == (42, 42)
    with pytest.raises(ValueError, match="paramstyle"):
        out.for_paramstyle("dollar")


def test_results_are_not_mutable_and_pickle_errors(saas):
    out = saas.rewrite("SELECT 1", user="alice")
    with pytest.raises(AttributeError):
        out.sql = "DROP TABLE x"  # type: ignore[misc]
    try:
        saas.rewrite("SELECT email FROM accounts", user="alice")
    except sqlsandbox.HiddenColumn as e:
        again = pickle.loads(pickle.dumps(e))
        assert type(again) is sqlsandbox.HiddenColumn
        assert (again.code, again.message, again.column) == (e.code, e.message, "email")
    else:
        pytest.fail("not refused")


def test_attributes_and_variables_take_any_mapping(saas, marketplace):
    from types import MappingProxyType

    out = saas.rewrite(
        "SELECT * FROM orders", groups=["customers"], attributes=MappingProxyType({"tenant": 42})
    )
    assert "tenant_id = 42" in out.sql
    q = marketplace.rewrite_question(
        "sales_since", MappingProxyType({"since": "2024-01-01"}), user="rita", params=True
    )
    assert q.params[-1] == "2024-01-01 00:00:00"
    with pytest.raises(TypeError, match="names must be str"):
        saas.rewrite("SELECT 1", groups=["customers"], attributes={1: 42})


def test_claims_that_are_not_json_are_refused(saas):
    with pytest.raises(sqlsandbox.UnknownName) as e:
        saas.rewrite("SELECT 1", claims={"groups": ["customers"], "attributes": {"tenant": object()}})
    assert e.value.kind == "claims" and "$.attributes.tenant" in e.value.name
    with pytest.raises(sqlsandbox.UnknownName):
        saas.rewrite("SELECT 1", claims='{"attributes": {"tenant": 1, "tenant": 2}}')


def test_for_paramstyle_leaves_literals_names_and_comments_alone(saas):
    out = saas.rewrite(
        "SELECT '$1 ? %s :p1' AS \"é€😀 $2\", id FROM orders WHERE status <> '?'",
        user="alice",
        params=True,
    )
    assert out.params == [42]
    for style, mark in [("qmark", "?"), ("named", ":p1"), ("format", "%s")]:
        sql, params = out.for_paramstyle(style)
        text = "'$1 ? %%s :p1'" if style == "format" else "'$1 ? %s :p1'"
        assert text in sql and '"é€😀 $2"' in sql and "<> '?'" in sql, sql
        assert f"tenant_id = {mark}" in sql and len(params) == 1
