"""The second, independent parser of tests/dialect_parse.rs: sqlglot.

Reads a JSON array of items from the file named by argv[1]:

    {"id": 7, "dialect": "snowflake", "sql": "<rewritten>", "params": [...],
     "original": "<the query as sent>", "schema": "app",
     "sandboxes": {"orders": [["tenant_id", [1]]], ...} or null,
     "hidden": {"accounts": ["email"]}}

and writes a JSON array of {"id": 7, "problems": [...]} to standard
output (an empty list: the rewrite means what it should). For each item:

1. the rewritten SQL parses as exactly one statement in the dialect;
2. the base tables it reads (schema-qualified, CTE and derived-table names
   resolved by sqlglot's scope analysis, unqualified names in `schema`)
   are exactly the base tables the original query reads;
3. with `sandboxes` (a customer), every read of a sandboxed table stands
   alone in the FROM of a subquery (a derived table) whose WHERE has, among
   its top-level AND-ed conditions, each of the table's sandbox conditions:
   `column = v` or `column IN (v, …)` over exactly the user's values (as
   literals, or as bind parameters whose values are those: numbered ones by
   their number, `?` by their place in the text), or a constant
   false condition when the user has no values; and whose select list names
   none of the table's hidden columns;
Where sqlglot cannot parse the original query in the dialect (not valid
there to begin with), `problems` is null: counted apart, not checked.
"""

import json
import sys

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope


def base_tables(tree, schema):
    """(schema, table) of every base table read, and the Table nodes."""
    found = set()
    nodes = []
    for scope in traverse_scope(tree):
        for _name, source in scope.selected_sources.values():
            if isinstance(source, exp.Table):
                found.add(((source.db or schema).lower(), source.name.lower()))
                nodes.append((scope, source))
    return found, nodes


def conjuncts(e):
    while isinstance(e, exp.Paren):
        e = e.this
    if isinstance(e, exp.And):
        return conjuncts(e.left) + conjuncts(e.right)
    return [e]


MARK = "__sqlsandbox_parameter_"


def number_positional(sql, dialect):
    """`sql` with each positional `?` replaced by a string literal naming
    its position (`'__sqlsandbox_parameter_1'`, …), found by sqlglot's own
    tokenizer (so never inside a string, identifier or comment); the tree's
    order of nodes is not the text's (a WITH comes after the SELECT)."""
    tokens = sqlglot.tokenize(sql, read=dialect)
    out, last, n = [], 0, 0
    for t in tokens:
        if t.token_type == sqlglot.TokenType.PLACEHOLDER and t.text == "?":
            n += 1
            out.append(sql[last:t.start])
            out.append(f"'{MARK}{n}'")
            last = t.end + 1
    out.append(sql[last:])
    return "".join(out)


class Values:
    """Resolves literals and placeholders to the values they stand for."""

    def __init__(self, tree, params):
        self.params = params

    def value(self, e):
        while isinstance(e, exp.Paren):
            e = e.this
        if isinstance(e, exp.Cast):
            return self.value(e.this)
        if isinstance(e, exp.Neg):
            v = self.value(e.this)
            return -v if isinstance(v, int) else ("?", e.sql())
        if isinstance(e, exp.Literal):
            if e.is_string and e.this.startswith(MARK):
                return self.param(int(e.this[len(MARK):]) - 1, e)
            if e.is_string:
                return e.this
            try:
                return int(e.this)
            except ValueError:
                return e.this
        if isinstance(e, (exp.Placeholder, exp.Parameter)):
            # Numbered: `$1`, `@p1`, `:1`.
            digits = "".join(ch for ch in str(e.name) if ch.isdigit())
            if not digits:
                return ("?", e.sql())
            return self.param(int(digits) - 1, e)
        return ("?", e.sql())

    def param(self, i, e):
        if 0 <= i < len(self.params):
            (_kind, v), = self.params[i].items()
            return v
        return ("?", e.sql())


def is_false(c):
    while isinstance(c, exp.Paren):
        c = c.this
    if isinstance(c, exp.Boolean):
        return not c.this
    if isinstance(c, exp.EQ):
        l, r = c.left, c.right
        if isinstance(l, exp.Literal) and isinstance(r, exp.Literal):
            return l.this != r.this
    if isinstance(c, exp.Not):
        return isinstance(c.this, exp.Boolean) and c.this.this
    return False


def condition_values(c, column, values):
    """The set of values `c` restricts `column` to, or None."""
    while isinstance(c, exp.Paren):
        c = c.this
    if isinstance(c, exp.EQ):
        for col, other in ((c.left, c.right), (c.right, c.left)):
            if isinstance(col, exp.Column) and col.name.lower() == column:
                return {json.dumps(values.value(other))}
    if isinstance(c, exp.In) and isinstance(c.this, exp.Column) and c.this.name.lower() == column:
        if c.args.get("query") is None and not c.args.get("unnest"):
            return {json.dumps(values.value(x)) for x in c.expressions}
    return None


def check(item):
    problems = []
    dialect = item["dialect"]
    schema = item["schema"].lower()
    try:
        original = sqlglot.parse_one(item["original"], read=dialect)
        want, _ = base_tables(original, schema)
    except Exception as e:  # noqa: BLE001
        # Not valid in the dialect to begin with (BigQuery: a bare UNION,
        # '' inside a string): counted apart, not checked.
        return None
    try:
        trees = sqlglot.parse(number_positional(item["sql"], dialect), read=dialect)
    except Exception as e:  # noqa: BLE001
        return [f"sqlglot cannot parse the rewrite: {type(e).__name__}: {str(e)[:300]}"]
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        return [f"{len(trees)} statements"]
    tree = trees[0]
    try:
        got, nodes = base_tables(tree, schema)
    except Exception as e:  # noqa: BLE001
        return [f"sqlglot's scope analysis fails on the rewrite: {type(e).__name__}: {str(e)[:200]}"]
    if got != want:
        problems.append(f"base tables read: {sorted(got)}, the original reads {sorted(want)}")
    sandboxes = item.get("sandboxes")
    if not sandboxes:
        return problems
    values = Values(tree, item.get("params") or [])
    hidden = item.get("hidden") or {}
    for scope, table in nodes:
        name = table.name.lower()
        if name not in sandboxes:
            continue
        where = f"read of {table.sql(dialect=dialect)}"
        select = scope.expression
        if not isinstance(select, exp.Select):
            problems.append(f"{where}: not in a SELECT")
            continue
        if len(scope.selected_sources) != 1 or select.args.get("joins"):
            problems.append(f"{where}: not alone in its FROM")
        if not isinstance(select.parent, exp.Subquery):
            problems.append(f"{where}: its SELECT is not a subquery")
        for projection in select.expressions if name in hidden else []:
            for col in projection.find_all(exp.Column, exp.Star):
                if isinstance(col, exp.Star) or col.name.lower() in hidden[name]:
                    problems.append(f"{where}: the sandbox selects {projection.sql(dialect=dialect)}")
        cond = select.args.get("where")
        parts = conjuncts(cond.this) if cond else []
        for column, allowed in sandboxes[name]:
            want_values = {json.dumps(v) for v in allowed}
            ok = False
            for c in parts:
                if not want_values and is_false(c):
                    ok = True
                v = condition_values(c, column, values)
                if v is not None and want_values and v == want_values:
                    ok = True
            if not ok:
                problems.append(
                    f"{where}: no sandbox condition {column} in {sorted(allowed)} in WHERE {cond.this.sql(dialect=dialect) if cond else '(none)'}"
                )
    return problems


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        items = json.load(f)
    out = [{"id": it["id"], "problems": check(it)} for it in items]
    json.dump({"sqlglot": sqlglot.__version__, "results": out}, sys.stdout)


if __name__ == "__main__":
    main()
