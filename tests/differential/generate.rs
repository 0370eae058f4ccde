//! Random valid queries over the test schema, for proptest.
//!
//! proptest draws a list of numbers; [`query`] turns it into a query by
//! taking one number per decision, a missing number meaning the simplest
//! choice. Shrinking the list (fewer, smaller numbers) therefore shrinks
//! the query: fewer joins, fewer predicates, no nesting.
//!
//! The SQL is portable across PostgreSQL, MariaDB and SQLite: aliased
//! output columns, typed literals taken from the data, ORDER BY over every
//! output column whenever LIMIT is used (a total order up to equal rows),
//! no hidden columns.

use super::dataset::{table, Kind, TableDef, TABLES};

/// A generated query and the user who sends it.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Index into the users of the test policy.
    pub user: usize,
    /// The SQL, with `{s}` for a schema qualifier.
    pub sql: String,
    /// Compare rows in order.
    pub ordered: bool,
}

/// The decisions left, one number each.
struct Choices<'a> {
    left: &'a [u16],
}

impl Choices<'_> {
    fn next(&mut self) -> usize {
        match self.left.split_first() {
            Some((first, rest)) => {
                self.left = rest;
                usize::from(*first)
            }
            None => 0,
        }
    }
    /// A number below `n`.
    fn below(&mut self, n: usize) -> usize {
        self.next() % n.max(1)
    }
    /// True with about `percent`% probability (false when out of numbers).
    fn chance(&mut self, percent: usize) -> bool {
        self.next() % 100 >= 100 - percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Joins the generator may use: `(table, column) = (table, column)`.
const EDGES: &[(&str, &str, &str, &str)] = &[
    ("orders", "account_id", "accounts", "id"),
    ("orders", "product_id", "products", "id"),
    ("orders", "tenant_id", "tenants", "id"),
    ("events", "account_id", "accounts", "id"),
    ("events", "tenant_id", "tenants", "id"),
    ("accounts", "tenant_id", "tenants", "id"),
    ("orders", "account_id", "events", "account_id"),
    ("orders", "account_id", "orders", "account_id"),
];

/// A column in scope: its SQL and kind.
#[derive(Clone)]
struct Col {
    sql: String,
    kind: Kind,
}

/// Literals that occur in the data (or just miss it), per column.
fn literals(column: &str, kind: Kind) -> &'static [&'static str] {
    match (column, kind) {
        ("tenant_id", _) => &["1", "2", "3", "5", "6"],
        ("product_id", _) => &["1", "3", "5", "9", "12"],
        ("account_id", _) | ("id", _) => {
            &["1001", "1007", "2003", "5004", "6002", "10050", "20010"]
        }
        ("status", _) => &["paid", "PAID", "pending", "refunded", "cancelled"],
        ("region", _) => &["eu", "us", "ap", "EU"],
        ("kind", _) => &["login", "logout", "purchase", "view"],
        ("plan", _) => &["free", "pro", "enterprise ✓"],
        ("country", _) => &["DE", "US", "FR", "AT"],
        ("category", _) => &["tools", "apparel", "misc", "services"],
        (_, Kind::Text) => &["Ana", "Zoë", "Widget", "Acme Corp", "M"],
        (_, Kind::Int) => &["0", "2", "5", "1000"],
        (_, Kind::Num) => &["0", "9.99", "50", "120.5", "300", "450"],
        (_, Kind::Time) => &[
            "2023-03-01 00:00:00",
            "2023-12-31 23:59:59",
            "2024-01-01 00:00:00",
            "2024-06-15 12:00:00",
        ],
    }
}

fn literal(c: &mut Choices, column: &str, kind: Kind) -> String {
    let v = c.pick(literals(column, kind));
    match kind {
        Kind::Int | Kind::Num => v.to_string(),
        Kind::Text | Kind::Time => format!("'{v}'"),
    }
}

/// The bare column name of `a.col`.
fn bare(sql: &str) -> &str {
    sql.rsplit('.').next().unwrap_or(sql)
}

/// A table name, sometimes schema-qualified.
fn table_ref(c: &mut Choices, t: &TableDef) -> String {
    if c.chance(15) {
        format!("{{s}}.{}", t.name)
    } else {
        t.name.to_string()
    }
}

struct Gen<'a, 'c> {
    c: &'a mut Choices<'c>,
    aliases: usize,
    /// Table names already used as names in FROM (each at most once).
    taken: Vec<&'static str>,
}

impl Gen<'_, '_> {
    /// A fresh alias (`t1`, `t2`, …: never a table's name).
    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("t{}", self.aliases)
    }

    /// Takes `name` for a FROM item if no other item has it.
    fn take(&mut self, name: &'static str) -> bool {
        let free = !self.taken.contains(&name);
        if free {
            self.taken.push(name);
        }
        free
    }

    /// One FROM item reading `t`: under a fresh alias, as the bare table
    /// (its columns then go by `orders.id`), under another table's name, or
    /// as a derived table `(SELECT * FROM t … WHERE …)`, sometimes named
    /// like the table. Returns its SQL and the name its columns go by.
    fn table_item(&mut self, t: &'static TableDef) -> (String, String) {
        let table = table_ref(self.c, t);
        match self.c.below(8) {
            1 if self.take(t.name) => (table, t.name.to_string()),
            2 => {
                let other = TABLES[self.c.below(TABLES.len())].name;
                if self.take(other) {
                    (format!("{table} AS {other}"), other.to_string())
                } else {
                    let a = self.alias();
                    (format!("{table} {a}"), a)
                }
            }
            3 => {
                let inner = self.alias();
                let cols = Self::columns_of(&inner, t);
                let filter = self.predicate(&cols, 1);
                let name = if self.c.chance(50) && self.take(t.name) {
                    t.name.to_string()
                } else {
                    self.alias()
                };
                (
                    format!("(SELECT * FROM {table} {inner} WHERE {filter}) AS {name}"),
                    name,
                )
            }
            _ => {
                let a = self.alias();
                (format!("{table} {a}"), a)
            }
        }
    }

    fn columns_of(alias: &str, t: &TableDef) -> Vec<Col> {
        t.visible()
            .map(|col| Col {
                sql: format!("{alias}.{}", col.name),
                kind: col.kind,
            })
            .collect()
    }

    /// `FROM` with 0–2 joins; returns the clause and the columns in scope.
    fn joined_tables(&mut self) -> (String, Vec<Col>, Vec<(String, &'static TableDef)>) {
        let t0: &'static TableDef = &TABLES[self.c.below(TABLES.len())];
        let (mut sql, a0) = self.table_item(t0);
        let mut scope = vec![(a0, t0)];
        let joins = self.c.below(3);
        for _ in 0..joins {
            // Edges with one end in scope, either direction.
            let mut options = Vec::new();
            for (alias, t) in &scope {
                for &(lt, lc, rt, rc) in EDGES {
                    if lt == t.name {
                        options.push((alias.clone(), lc, rt, rc));
                    }
                    if rt == t.name {
                        options.push((alias.clone(), rc, lt, lc));
                    }
                }
            }
            let (alias, col, other, other_col) = options[self.c.below(options.len())].clone();
            let def = table(other);
            let kind = if self.c.chance(30) {
                "LEFT JOIN"
            } else {
                "JOIN"
            };
            // USING needs the column in exactly one table on the left.
            let left_has = scope
                .iter()
                .filter(|(_, t)| t.visible().any(|c| c.name == col))
                .count();
            let using = col == other_col && left_has == 1 && self.c.chance(40);
            let (item, a) = self.table_item(def);
            if using {
                sql += &format!(" {kind} {item} USING ({col})");
            } else {
                sql += &format!(" {kind} {item} ON {a}.{other_col} = {alias}.{col}");
            }
            scope.push((a, def));
        }
        let cols = scope
            .iter()
            .flat_map(|(a, t)| Self::columns_of(a, t))
            .collect();
        (sql, cols, scope)
    }

    /// A predicate over `cols` (nesting up to `depth`).
    fn predicate(&mut self, cols: &[Col], depth: usize) -> String {
        let col = cols[self.c.below(cols.len())].clone();
        let name = bare(&col.sql).to_string();
        let choice = if depth == 0 {
            self.c.below(6)
        } else {
            self.c.below(11)
        };
        match choice {
            0 | 1 => {
                let op = self.c.pick(&["=", "<>", "<", "<=", ">", ">="]);
                format!("{} {op} {}", col.sql, literal(self.c, &name, col.kind))
            }
            2 => {
                let not = if self.c.chance(50) { " NOT" } else { "" };
                format!("{} IS{not} NULL", col.sql)
            }
            3 => format!(
                "{} IN ({}, {})",
                col.sql,
                literal(self.c, &name, col.kind),
                literal(self.c, &name, col.kind)
            ),
            4 if col.kind != Kind::Text => {
                let (a, b) = (
                    literal(self.c, &name, col.kind),
                    literal(self.c, &name, col.kind),
                );
                format!("{} BETWEEN {a} AND {b}", col.sql)
            }
            4 | 5 if col.kind == Kind::Text => {
                let prefix: String = literal(self.c, &name, col.kind)
                    .trim_matches('\'')
                    .chars()
                    .take(1)
                    .collect();
                format!("{} LIKE '{prefix}%'", col.sql)
            }
            4 | 5 => format!("{} IS NOT NULL", col.sql),
            6 => {
                let op = self.c.pick(&["AND", "OR"]);
                format!(
                    "({} {op} {})",
                    self.predicate(cols, depth - 1),
                    self.predicate(cols, depth - 1)
                )
            }
            7 => format!("NOT ({})", self.predicate(cols, depth - 1)),
            8 => self.in_subquery(cols, depth),
            9 => self.exists(cols, depth),
            _ => self.scalar_comparison(cols),
        }
    }

    /// `x IN (SELECT … FROM t WHERE …)` on an id-like integer column.
    fn in_subquery(&mut self, cols: &[Col], depth: usize) -> String {
        let ids: Vec<&Col> = cols
            .iter()
            .filter(|c| {
                matches!(
                    bare(&c.sql),
                    "id" | "account_id" | "tenant_id" | "product_id"
                )
            })
            .collect();
        let col = ids[self.c.below(ids.len())].clone();
        let sources: &[(&str, &str)] = match bare(&col.sql) {
            "tenant_id" => &[
                ("tenants", "id"),
                ("accounts", "tenant_id"),
                ("orders", "tenant_id"),
                ("events", "tenant_id"),
            ],
            "product_id" => &[("products", "id"), ("orders", "product_id")],
            _ => &[
                ("accounts", "id"),
                ("orders", "account_id"),
                ("events", "account_id"),
            ],
        };
        let (t, inner) = self.c.pick(sources);
        let def = table(t);
        let a = self.alias();
        let mut sql = format!(
            "{} IN (SELECT {a}.{inner} FROM {} {a}",
            col.sql,
            table_ref(self.c, def)
        );
        if self.c.chance(60) {
            let inner_cols = Self::columns_of(&a, def);
            sql += &format!(" WHERE {}", self.predicate(&inner_cols, depth - 1));
        }
        sql + ")"
    }

    /// `[NOT] EXISTS (SELECT 1 FROM t WHERE t.c = outer.c …)`, correlated.
    fn exists(&mut self, cols: &[Col], depth: usize) -> String {
        let keyed: Vec<&Col> = cols
            .iter()
            .filter(|c| matches!(bare(&c.sql), "account_id" | "tenant_id"))
            .collect();
        if keyed.is_empty() {
            return format!("{} IS NOT NULL", cols[0].sql);
        }
        let col = keyed[self.c.below(keyed.len())].clone();
        let t = self.c.pick(&["orders", "events"]);
        let def = table(t);
        let a = self.alias();
        let not = if self.c.chance(30) { "NOT " } else { "" };
        let mut sql = format!(
            "{not}EXISTS (SELECT 1 FROM {} {a} WHERE {a}.{} = {}",
            table_ref(self.c, def),
            bare(&col.sql),
            col.sql
        );
        if self.c.chance(50) {
            let inner_cols = Self::columns_of(&a, def);
            sql += &format!(" AND {}", self.predicate(&inner_cols, depth - 1));
        }
        sql + ")"
    }

    /// `x > (SELECT avg(…) FROM t)` on a number column.
    fn scalar_comparison(&mut self, cols: &[Col]) -> String {
        let nums: Vec<&Col> = cols.iter().filter(|c| c.kind == Kind::Num).collect();
        if nums.is_empty() {
            let col = &cols[self.c.below(cols.len())];
            return format!("{} IS NULL", col.sql);
        }
        let col = nums[self.c.below(nums.len())].clone();
        let (t, c) = self.c.pick(&[("orders", "total"), ("products", "price")]);
        let agg = self.c.pick(&["avg", "max", "min"]);
        let op = self.c.pick(&["<", ">="]);
        let a = self.alias();
        format!(
            "{} {op} (SELECT {agg}({a}.{c}) FROM {} {a})",
            col.sql,
            table_ref(self.c, table(t))
        )
    }

    /// A `SELECT` body: projection, FROM, WHERE, GROUP BY. Returns the SQL,
    /// the output columns' kinds, and whether it is a `SELECT *`.
    fn select(&mut self, allow_star: bool) -> (String, Vec<Kind>, bool) {
        let (from, cols, scope) = self.joined_tables();
        let filter = if self.c.chance(70) {
            format!(" WHERE {}", self.predicate(&cols, 2))
        } else {
            String::new()
        };
        let shape = self.c.below(if allow_star { 5 } else { 4 });
        match shape {
            // Aggregates, grouped or not.
            1 | 2 => {
                let groups: Vec<Col> = (0..self.c.below(3))
                    .map(|_| cols[self.c.below(cols.len())].clone())
                    .collect();
                let mut items: Vec<String> = groups.iter().map(|g| g.sql.clone()).collect();
                let mut kinds: Vec<Kind> = groups.iter().map(|g| g.kind).collect();
                for _ in 0..1 + self.c.below(3) {
                    let col = cols[self.c.below(cols.len())].clone();
                    let numeric = matches!(col.kind, Kind::Int | Kind::Num);
                    let (expr, kind) = match self.c.below(6) {
                        0 => ("count(*)".to_string(), Kind::Int),
                        1 => (format!("count({})", col.sql), Kind::Int),
                        2 => (format!("count(DISTINCT {})", col.sql), Kind::Int),
                        3 if numeric => (format!("sum({})", col.sql), Kind::Num),
                        4 if numeric => (format!("avg({})", col.sql), Kind::Num),
                        n => (
                            format!("{}({})", if n % 2 == 0 { "min" } else { "max" }, col.sql),
                            col.kind,
                        ),
                    };
                    items.push(expr);
                    kinds.push(kind);
                }
                let items: Vec<String> = items
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("{e} AS c{i}"))
                    .collect();
                let mut sql = format!("SELECT {} FROM {from}{filter}", items.join(", "));
                if !groups.is_empty() {
                    let g: Vec<String> = groups.iter().map(|g| g.sql.clone()).collect();
                    sql += &format!(" GROUP BY {}", g.join(", "));
                    if self.c.chance(30) {
                        sql += &format!(" HAVING count(*) > {}", self.c.below(4));
                    }
                }
                (sql, kinds, false)
            }
            // A window function beside a few columns.
            3 => {
                let mut picked: Vec<Col> = (0..1 + self.c.below(2))
                    .map(|_| cols[self.c.below(cols.len())].clone())
                    .collect();
                let part = cols[self.c.below(cols.len())].sql.clone();
                let order = cols[self.c.below(cols.len())].sql.clone();
                let nums: Vec<&Col> = cols
                    .iter()
                    .filter(|c| matches!(c.kind, Kind::Int | Kind::Num))
                    .collect();
                let num = nums[self.c.below(nums.len())].sql.clone();
                let (window, kind) = match self.c.below(4) {
                    0 => (format!("count(*) OVER (PARTITION BY {part})"), Kind::Int),
                    1 => (format!("sum({num}) OVER (PARTITION BY {part})"), Kind::Num),
                    2 => (
                        format!("rank() OVER (PARTITION BY {part} ORDER BY {order})"),
                        Kind::Int,
                    ),
                    _ => (format!("dense_rank() OVER (ORDER BY {order})"), Kind::Int),
                };
                picked.push(Col { sql: window, kind });
                let items: Vec<String> = picked
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{} AS c{i}", c.sql))
                    .collect();
                let kinds = picked.iter().map(|c| c.kind).collect();
                (
                    format!("SELECT {} FROM {from}{filter}", items.join(", ")),
                    kinds,
                    false,
                )
            }
            // SELECT * or alias.*.
            4 => {
                let star = if self.c.chance(50) {
                    "*".to_string()
                } else {
                    format!("{}.*", scope[self.c.below(scope.len())].0)
                };
                (format!("SELECT {star} FROM {from}{filter}"), vec![], true)
            }
            // Plain columns, maybe DISTINCT, maybe a correlated scalar
            // subquery.
            _ => {
                let mut picked: Vec<Col> = (0..1 + self.c.below(4))
                    .map(|_| cols[self.c.below(cols.len())].clone())
                    .collect();
                let keyed: Vec<&Col> = cols
                    .iter()
                    .filter(|c| matches!(bare(&c.sql), "account_id" | "tenant_id"))
                    .collect();
                if !keyed.is_empty() && self.c.chance(25) {
                    let key = keyed[self.c.below(keyed.len())].sql.clone();
                    let t = table(self.c.pick(&["orders", "events"]));
                    let a = self.alias();
                    picked.push(Col {
                        sql: format!(
                            "(SELECT count(*) FROM {} {a} WHERE {a}.{} = {key})",
                            table_ref(self.c, t),
                            bare(&key)
                        ),
                        kind: Kind::Int,
                    });
                }
                let distinct = if self.c.chance(25) { "DISTINCT " } else { "" };
                let items: Vec<String> = picked
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{} AS c{i}", c.sql))
                    .collect();
                let kinds = picked.iter().map(|c| c.kind).collect();
                (
                    format!("SELECT {distinct}{} FROM {from}{filter}", items.join(", ")),
                    kinds,
                    false,
                )
            }
        }
    }

    /// One column of `kind` from a random table, for set operations.
    fn single_column(&mut self, kind: Kind) -> String {
        let options: Vec<(&TableDef, &str)> = TABLES
            .iter()
            .flat_map(|t| {
                t.visible()
                    .filter(|c| c.kind == kind)
                    .map(move |c| (t, c.name))
            })
            .collect();
        let (t, col) = options[self.c.below(options.len())];
        let a = self.alias();
        let mut sql = format!("SELECT {a}.{col} AS c0 FROM {} {a}", table_ref(self.c, t));
        if self.c.chance(50) {
            let cols = Self::columns_of(&a, t);
            sql += &format!(" WHERE {}", self.predicate(&cols, 1));
        }
        sql
    }

    /// A whole query: maybe a set operation, maybe nested in a CTE or a
    /// derived table, maybe ordered and limited.
    fn query(&mut self) -> (String, bool) {
        let (mut sql, kinds, star) = if self.c.chance(15) {
            let kind = self.c.pick(&[Kind::Int, Kind::Text, Kind::Num, Kind::Time]);
            let op = self.c.pick(&["UNION", "UNION ALL", "INTERSECT", "EXCEPT"]);
            let (a, b) = (self.single_column(kind), self.single_column(kind));
            (format!("{a} {op} {b}"), vec![kind], false)
        } else {
            self.select(true)
        };
        let mut kinds = kinds;
        if !star && self.c.chance(25) {
            // Nest: the query becomes a CTE or a derived table `d`.
            let n = kinds.len();
            let pick = self.c.below(n);
            // Sometimes named like a table the inner query does not read
            // (SQLite takes a CTE naming itself for a circular reference):
            // the outer query must then read the CTE, not the table.
            let unread: Vec<&str> = TABLES
                .iter()
                .map(|t| t.name)
                .filter(|name| {
                    !sql.split(|ch: char| !ch.is_alphanumeric() && ch != '_')
                        .any(|w| w == *name)
                })
                .collect();
            let d = if !unread.is_empty() && self.c.chance(40) {
                unread[self.c.below(unread.len())].to_string()
            } else {
                "d".to_string()
            };
            let outer_col = format!("{d}.c{pick}");
            let name = format!("c{pick}");
            let filter = if self.c.chance(60) {
                format!(
                    " WHERE {outer_col} {} {}",
                    self.c.pick(&["=", "<>", ">", "<"]),
                    literal(self.c, &name, kinds[pick])
                )
            } else {
                String::new()
            };
            let (select, out_kinds) = if self.c.chance(40) {
                (
                    format!("SELECT {outer_col} AS c0, count(*) AS c1"),
                    vec![kinds[pick], Kind::Int],
                )
            } else {
                ("SELECT *".to_string(), kinds.clone())
            };
            let group = if out_kinds.len() == 2 && select.contains("count(*)") {
                format!(" GROUP BY {outer_col}")
            } else {
                String::new()
            };
            sql = if self.c.chance(50) {
                format!("WITH {d} AS ({sql}) {select} FROM {d}{filter}{group}")
            } else {
                format!("{select} FROM ({sql}) {d}{filter}{group}")
            };
            kinds = out_kinds;
        }
        if !star && self.c.chance(30) {
            let positions: Vec<String> = (1..=kinds.len()).map(|i| i.to_string()).collect();
            sql += &format!(" ORDER BY {}", positions.join(", "));
            if self.c.chance(70) {
                sql += &format!(" LIMIT {}", 1 + self.c.below(10));
                if self.c.chance(30) {
                    sql += &format!(" OFFSET {}", self.c.below(5));
                }
            }
            return (sql, true);
        }
        (sql, false)
    }
}

/// The query (and user, an index below `users`) the numbers `choices` stand for.
pub fn query(choices: &[u16], users: usize) -> Generated {
    let mut c = Choices { left: choices };
    let user = c.below(users);
    let mut g = Gen {
        c: &mut c,
        aliases: 0,
        taken: Vec::new(),
    };
    let (sql, ordered) = g.query();
    Generated { user, sql, ordered }
}
