//! Generated POLICIES (not only generated queries), shared by
//! `tests/policy_props.rs` (proptest, with a SQLite oracle) and the fuzz
//! target `fuzz/fuzz_targets/policy.rs` (which includes this file by path,
//! so it uses nothing but std, sqlparser and sqlsandbox).
//!
//! A policy is built from a list of numbers, one per decision (a missing
//! number is the simplest choice), as `tests/differential/generate.rs`
//! builds queries: 1–4 tables of 2–6 columns whose names are sometimes
//! multibyte, need quotes or are reserved words; per table one access:
//! unrestricted, no_access, a basic sandbox (one or two column/attribute
//! pairs), `combine: union` of two groups' basic sandboxes, or a custom
//! sandbox from a generated saved question (hidden columns, maybe a CTE, a
//! join to another declared table, `{{var}}` compared with a column). The
//! one user has integer `tenant` and text `region` attributes, single or
//! multi-valued, some of them hostile.
//!
//! Every table's first column is its integer tenant column and its second
//! its text region column; sandboxes filter on those, so that the oracle
//! (per-user views) and the expected sandbox texts follow from the [`Spec`]
//! alone, never from the library.
//!
//! Queries carry `§` where a schema qualifier goes: `main.` for sqlsandbox,
//! `temp.` for the oracle's views.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{Expr, ObjectName, Query, SetExpr, TableFactor, Visit, Visitor};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;
use sqlsandbox::{Dialect, Options, Policy, Principal};

/// The decisions left, one number each.
pub struct Choices<'a> {
    left: &'a [u16],
}

impl<'a> Choices<'a> {
    /// Decisions taken from `left`, in order.
    pub fn new(left: &'a [u16]) -> Self {
        Choices { left }
    }
    fn next(&mut self) -> usize {
        match self.left.split_first() {
            Some((first, rest)) => {
                self.left = rest;
                usize::from(*first)
            }
            None => 0,
        }
    }
    fn below(&mut self, n: usize) -> usize {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.next() % 100 >= 100 - percent
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// A column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Int,
    Text,
    Date,
    Dec,
}

impl Ty {
    fn policy(self) -> &'static str {
        match self {
            Ty::Int => "integer",
            Ty::Text => "text",
            Ty::Date => "date",
            Ty::Dec => "decimal",
        }
    }
}

/// A generated column.
#[derive(Debug, Clone)]
pub struct Col {
    pub name: String,
    pub ty: Ty,
}

/// A custom sandbox's saved question.
#[derive(Debug, Clone)]
pub struct Custom {
    /// Indexes of the columns it returns (the others are hidden).
    pub visible: Vec<usize>,
    /// Reads the table through a CTE of this name.
    pub cte: Option<String>,
    /// Joins another declared table (index) on the tenant columns.
    pub join: Option<usize>,
    /// Also compares the region column with `{{region}}`.
    pub region: bool,
    /// Declares the parameter type instead of letting it be inferred.
    pub typed: bool,
    /// Writes the table with its schema.
    pub qualified: bool,
}

/// A table's access for the user's main group.
#[derive(Debug, Clone)]
pub enum Grant {
    Unrestricted,
    NoAccess,
    /// tenant column = `tenant` (and region column = `region`).
    Basic {
        region: bool,
    },
    /// `combine: union`: group g1 tenant = `tenant`, group g2 region = `region`.
    Union,
    Custom(Custom),
}

/// A generated table.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    /// `cols[0]` is the integer tenant column, `cols[1]` the text region one.
    pub cols: Vec<Col>,
    pub access: Grant,
}

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(Vec<i64>, bool),
    Text(Vec<String>, bool),
    Missing,
}

impl Attr {
    /// The values as SQLite literals, and whether the attribute is a list.
    fn literals(&self) -> Option<(Vec<String>, bool)> {
        match self {
            Attr::Int(v, many) => Some((v.iter().map(i64::to_string).collect(), *many)),
            Attr::Text(v, many) => Some((v.iter().map(|s| sql_string(s)).collect(), *many)),
            Attr::Missing => None,
        }
    }
}

/// A generated policy and its one user `u`.
#[derive(Debug, Clone)]
pub struct Spec {
    pub tables: Vec<Table>,
    pub tenant: Attr,
    pub region: Attr,
}

const TABLE_NAMES: &[&str] = &[
    "orders",
    "größe",
    "名前表",
    "select",
    "Order",
    "user data",
    "t_1",
    "événements",
    "group",
    "accounts",
];
const TENANT_COLS: &[&str] = &["tenant_id", "名前", "größe", "from", "Tenant", "t id"];
const REGION_COLS: &[&str] = &["region", "régión", "where", "Zone", "地域"];
const EXTRA_COLS: &[&str] = &[
    "amount", "note", "day", "ünit", "列", "limit", "x y", "price", "id",
];
const CTE_NAMES: &[&str] = &["base", "src", "ctë", "w", "キュー"];

/// Region values the data holds; the user's hostile values are added.
const REGIONS: &[&str] = &["eu", "us"];

/// Attribute values an attacker might choose (NUL-free).
pub fn hostile() -> Vec<String> {
    let mut v: Vec<String> = [
        "eu",
        "us",
        "ap",
        "eu' OR '1'='1",
        "x'); DROP TABLE orders; --",
        "'; DROP",
        "\\",
        "\\'",
        "'",
        "\"",
        "-- c",
        "/* c */",
        "größe ☃ 名前",
        "$$",
        "%",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("x'".repeat(600));
    v.push("é".repeat(3000));
    v
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Picks a name from `pool` not yet in `taken` (ASCII case-insensitively).
fn fresh(c: &mut Choices, pool: &[&str], taken: &mut Vec<String>, fallback: &str) -> String {
    let start = c.below(pool.len());
    for i in 0..pool.len() {
        let n = pool[(start + i) % pool.len()];
        if !taken.iter().any(|t| lower(t) == lower(n)) {
            taken.push(n.to_string());
            return n.to_string();
        }
    }
    let n = format!("{fallback}{}", taken.len());
    taken.push(n.clone());
    n
}

impl Spec {
    /// Builds a policy spec from decisions.
    pub fn generate(c: &mut Choices) -> Spec {
        let n = 1 + c.below(4);
        let mut names = Vec::new();
        let mut tables = Vec::new();
        for _ in 0..n {
            let name = fresh(c, TABLE_NAMES, &mut names, "tbl");
            let mut taken = Vec::new();
            let mut cols = vec![
                Col {
                    name: fresh(c, TENANT_COLS, &mut taken, "tc"),
                    ty: Ty::Int,
                },
                Col {
                    name: fresh(c, REGION_COLS, &mut taken, "rc"),
                    ty: Ty::Text,
                },
            ];
            for _ in 0..c.below(5) {
                let name = fresh(c, EXTRA_COLS, &mut taken, "c");
                // One type per name across tables: a question that joins
                // two tables with a same-named column of different types
                // is refused at load (see `known_bug_question_column_type_
                // ignores_qualifier` in tests/policy_props.rs).
                let ty = [Ty::Int, Ty::Text, Ty::Date, Ty::Dec][name.chars().count() % 4];
                cols.push(Col { name, ty });
            }
            tables.push(Table {
                name,
                cols,
                access: Grant::Unrestricted,
            });
        }
        for i in 0..n {
            let access = match c.below(6) {
                0 => Grant::Basic {
                    region: c.chance(40),
                },
                1 => Grant::NoAccess,
                2 => Grant::Unrestricted,
                3 => Grant::Union,
                _ => {
                    let ncols = tables[i].cols.len();
                    let mut visible: Vec<usize> = (0..ncols).filter(|_| c.chance(60)).collect();
                    if visible.is_empty() {
                        visible.push(c.below(ncols));
                    }
                    let cte = c.chance(40).then(|| {
                        let mut taken: Vec<String> =
                            tables.iter().map(|t| t.name.clone()).collect();
                        fresh(c, CTE_NAMES, &mut taken, "cte")
                    });
                    let join = (n > 1 && c.chance(40)).then(|| (i + 1 + c.below(n - 1)) % n);
                    Grant::Custom(Custom {
                        visible,
                        cte,
                        join,
                        region: c.chance(30),
                        typed: c.chance(30),
                        qualified: c.chance(50),
                    })
                }
            };
            tables[i].access = access;
        }
        let pool = hostile();
        // Running out of decisions gives the simplest user: one tenant.
        let tenant = match c.below(10) {
            9 => Attr::Missing,
            0..=5 => Attr::Int(vec![1 + c.below(5) as i64], false),
            _ => {
                let v = (1..=5).filter(|_| c.chance(40)).collect();
                Attr::Int(v, true)
            }
        };
        let region = match c.below(10) {
            9 => Attr::Missing,
            0..=5 => Attr::Text(vec![c.pick(&pool)], false),
            _ => {
                let k = c.below(4);
                Attr::Text((0..k).map(|_| c.pick(&pool)).collect(), true)
            }
        };
        Spec {
            tables,
            tenant,
            region,
        }
    }

    /// Whether table `t` is protected (sandboxed or no access).
    pub fn protected(&self, t: usize) -> bool {
        !matches!(self.tables[t].access, Grant::Unrestricted)
    }

    /// Regions present in the data.
    pub fn regions(&self) -> Vec<String> {
        let mut v: Vec<String> = REGIONS.iter().map(|s| s.to_string()).collect();
        if let Attr::Text(r, _) = &self.region {
            for x in r {
                if !v.contains(x) {
                    v.push(x.clone());
                }
            }
        }
        v
    }

    /// The question of custom table `t`, for the policy (`{{tenant}}`) or,
    /// with `values`, with the user's values in place (`main.` qualified).
    fn question(&self, t: usize, values: bool) -> String {
        let table = &self.tables[t];
        let Grant::Custom(q) = &table.access else {
            unreachable!("not a custom table")
        };
        let tref = if q.qualified || values {
            format!("main.{}", qi(&table.name))
        } else {
            qi(&table.name)
        };
        let tc = qi(&table.cols[0].name);
        let rc = qi(&table.cols[1].name);
        let cond = |col: &str, attr: &Attr, var: &str| -> String {
            if values {
                cond(col, attr)
            } else {
                format!("{col} = {{{{{var}}}}}")
            }
        };
        let mut filter = cond(&format!("a.{tc}"), &self.tenant, "tenant");
        if q.region {
            filter += &format!(" AND {}", cond(&format!("a.{rc}"), &self.region, "region"));
        }
        let cols: Vec<String> = q
            .visible
            .iter()
            .map(|&i| format!("a.{}", qi(&table.cols[i].name)))
            .collect();
        let mut sql = String::new();
        let from = match &q.cte {
            Some(name) => {
                sql += &format!(
                    "WITH {} AS (SELECT * FROM {tref} AS a WHERE {filter}) ",
                    qi(name)
                );
                qi(name)
            }
            None => tref,
        };
        sql += &format!("SELECT {} FROM {from} AS a", cols.join(", "));
        if let Some(j) = q.join {
            let other = &self.tables[j];
            let schema = if q.qualified || values { "main." } else { "" };
            sql += &format!(
                " JOIN {schema}{} AS j ON j.{} = a.{tc}",
                qi(&other.name),
                qi(&other.cols[0].name)
            );
        }
        if q.cte.is_none() {
            sql += &format!(" WHERE {filter}");
        }
        sql
    }

    /// The policy YAML; with `bad_cte`, custom questions with a CTE name it
    /// after a declared table (which the loader must refuse).
    pub fn yaml(&self, bad_cte: bool) -> String {
        let mut y = String::from(
            "version: 1\ndatabases:\n  db:\n    dialect: sqlite\n    default_schema: main\n    tables:\n",
        );
        for t in &self.tables {
            let cols: Vec<String> = t
                .cols
                .iter()
                .map(|c| format!("{}: {}", ys(&c.name), c.ty.policy()))
                .collect();
            let combine = if matches!(t.access, Grant::Union) {
                ", combine: union"
            } else {
                ""
            };
            y += &format!(
                "      {}: {{columns: {{{}}}{combine}}}\n",
                ys(&format!("main.{}", t.name)),
                cols.join(", ")
            );
        }
        y += "questions:\n";
        for (i, t) in self.tables.iter().enumerate() {
            if let Grant::Custom(q) = &t.access {
                let mut sql = self.question(i, false);
                if bad_cte {
                    if let Some(cte) = &q.cte {
                        let name = &self.tables[(i + 1) % self.tables.len()].name;
                        sql = sql.replace(&qi(cte), &qi(name));
                    }
                }
                y += &format!("  q{i}: {{database: db, sql: {}}}\n", ys(&sql));
            }
        }
        y += "groups:\n  g1:\n    native: {db: true}\n    data: {db: {main: {";
        let mut g2 = Vec::new();
        for (i, t) in self.tables.iter().enumerate() {
            let tc = ys(&t.cols[0].name);
            let rc = ys(&t.cols[1].name);
            let grant = match &t.access {
                Grant::Unrestricted => "unrestricted".to_string(),
                Grant::NoAccess => "no_access".to_string(),
                Grant::Basic { region: false } | Grant::Union => {
                    format!("{{sandbox: {{column: {tc}, attribute: tenant}}}}")
                }
                Grant::Basic { region: true } => format!(
                    "{{sandbox: {{filters: [{{column: {tc}, attribute: tenant}}, {{column: {rc}, attribute: region}}]}}}}"
                ),
                Grant::Custom(q) => {
                    let mut params = vec![if q.typed {
                        "tenant: {attribute: tenant, type: integer}".to_string()
                    } else {
                        "tenant: tenant".to_string()
                    }];
                    if q.region {
                        params.push("region: region".into());
                    }
                    format!(
                        "{{sandbox: {{question: q{i}, parameters: {{{}}}}}}}",
                        params.join(", ")
                    )
                }
            };
            if matches!(t.access, Grant::Union) {
                g2.push(format!(
                    "{}: {{sandbox: {{column: {rc}, attribute: region}}}}",
                    ys(&t.name)
                ));
            }
            y += &format!("{}: {grant}, ", ys(&t.name));
        }
        y += "}}}\n";
        if g2.is_empty() {
            y += "  g2: {}\n";
        } else {
            y += &format!("  g2: {{data: {{db: {{main: {{{}}}}}}}}}\n", g2.join(", "));
        }
        y += "users:\n  u:\n    groups: [g1, g2]\n    attributes: {";
        for (name, a) in [("tenant", &self.tenant), ("region", &self.region)] {
            let list = |v: Vec<String>, many: bool| {
                if many {
                    format!("[{}]", v.join(", "))
                } else {
                    v.into_iter().next().unwrap_or_default()
                }
            };
            match a {
                Attr::Int(v, many) => {
                    y += &format!(
                        "{name}: {}, ",
                        list(v.iter().map(i64::to_string).collect(), *many)
                    )
                }
                Attr::Text(v, many) => {
                    y += &format!(
                        "{name}: {}, ",
                        list(v.iter().map(|s| ys(s)).collect(), *many)
                    )
                }
                Attr::Missing => {}
            }
        }
        y += "}\n";
        y
    }

    /// The SQLite schema and rows: tenants 1–4, each in every region.
    pub fn data(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.tables {
            let cols: Vec<String> = t
                .cols
                .iter()
                .map(|c| {
                    let ty = match c.ty {
                        Ty::Int => "INTEGER",
                        Ty::Text | Ty::Date => "TEXT",
                        Ty::Dec => "NUMERIC",
                    };
                    format!("{} {ty}", qi(&c.name))
                })
                .collect();
            out.push(format!(
                "CREATE TABLE main.{} ({})",
                qi(&t.name),
                cols.join(", ")
            ));
            for tenant in 1..=4i64 {
                for (r, region) in self.regions().iter().enumerate() {
                    let vals: Vec<String> = t
                        .cols
                        .iter()
                        .enumerate()
                        .map(|(i, c)| match (i, c.ty) {
                            (0, _) => tenant.to_string(),
                            (1, _) => sql_string(region),
                            (_, Ty::Int) => (tenant * 100 + r as i64 * 10 + i as i64).to_string(),
                            (_, Ty::Text) => sql_string(&format!("v{tenant}-{r}")),
                            (_, Ty::Date) => format!("'2024-0{tenant}-1{r}'"),
                            (_, Ty::Dec) => format!("{tenant}.{r}5"),
                        })
                        .collect();
                    out.push(format!(
                        "INSERT INTO main.{} VALUES ({})",
                        qi(&t.name),
                        vals.join(", ")
                    ));
                }
            }
        }
        out
    }

    /// The oracle: one TEMP view per table showing what the user may see
    /// (no rows for no-access tables), as (name, SELECT).
    pub fn oracle_views(&self) -> Vec<(String, String)> {
        self.tables
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let base = format!("SELECT * FROM main.{}", qi(&t.name));
                let tc = qi(&t.cols[0].name);
                let rc = qi(&t.cols[1].name);
                let sql = match &t.access {
                    Grant::Unrestricted => base,
                    Grant::NoAccess => format!("{base} WHERE 0"),
                    Grant::Basic { region } => {
                        let mut w = cond(&tc, &self.tenant);
                        if *region {
                            w = format!("{w} AND {}", cond(&rc, &self.region));
                        }
                        format!("{base} WHERE {w}")
                    }
                    Grant::Union => format!(
                        "{base} WHERE ({}) OR ({})",
                        cond(&tc, &self.tenant),
                        cond(&rc, &self.region)
                    ),
                    Grant::Custom(_) => self.question(i, true),
                };
                (qi(&t.name), sql)
            })
            .collect()
    }

    /// The sandbox subqueries sqlsandbox must build for the user, in the
    /// normal form of [`normal`]: independent of the library's builder.
    pub fn expected_sandboxes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, t) in self.tables.iter().enumerate() {
            let base = format!("SELECT * FROM main.{}", qi(&t.name));
            let tc = qi(&t.cols[0].name);
            let rc = qi(&t.cols[1].name);
            let sql = match &t.access {
                Grant::Unrestricted | Grant::NoAccess => continue,
                Grant::Basic { region: false } => {
                    format!("{base} WHERE {}", cond(&tc, &self.tenant))
                }
                Grant::Basic { region: true } => format!(
                    "{base} WHERE ({}) AND ({})",
                    cond(&tc, &self.tenant),
                    cond(&rc, &self.region)
                ),
                Grant::Union => format!(
                    "{base} WHERE ({}) OR ({})",
                    cond(&tc, &self.tenant),
                    cond(&rc, &self.region)
                ),
                Grant::Custom(_) => self.question(i, true),
            };
            // With the fence or without it (`fence: auto` leaves it out
            // when nothing unsafe reaches the sandbox's rows).
            if let Ok(s) = normal(&format!("{sql} LIMIT -1")) {
                out.push(s);
            }
            if let Ok(s) = normal(&sql) {
                out.push(s);
            }
        }
        out
    }
}

/// `col = v`, `col IN (v, …)`, or `1 = 0` for an empty list; `1 = 0` too
/// for a missing attribute (the oracle shows nothing; sqlsandbox refuses).
fn cond(col: &str, attr: &Attr) -> String {
    match attr.literals() {
        Some((v, false)) if v.len() == 1 => format!("{col} = {}", v[0]),
        Some((v, _)) if !v.is_empty() => format!("{col} IN ({})", v.join(", ")),
        _ => "1 = 0".into(),
    }
}

/// A SQLite string literal.
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A quoted SQL identifier.
pub fn qi(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A YAML double-quoted scalar.
fn ys(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A query printed by sqlparser with identifier quotes dropped (the
/// library quotes only names that need it; this test quotes every name).
pub fn normal(sql: &str) -> Result<String, String> {
    let mut stmts = Parser::parse_sql(&SQLiteDialect {}, sql).map_err(|e| e.to_string())?;
    match (stmts.pop(), stmts.is_empty()) {
        (Some(s), true) => Ok(s.to_string().replace('"', "")),
        _ => Err("not one statement".into()),
    }
}

// ----- queries -----------------------------------------------------------------

/// A generated query: the SQL (with `§` for a schema qualifier), whether
/// it is a statement sqlsandbox must refuse whatever the policy, and
/// whether SQLite reads it otherwise than sqlsandbox.
#[derive(Debug, Clone)]
pub struct GenQuery {
    pub sql: String,
    pub must_refuse: bool,
    /// A CTE body reads an unqualified table of the CTE's own name: SQLite
    /// binds it to the CTE (a recursive reference, even without
    /// RECURSIVE), sqlsandbox to the table (as PostgreSQL does), and
    /// qualifies it in its output; the results may differ, safely.
    pub ambiguous: bool,
}

impl GenQuery {
    /// The text sqlsandbox gets.
    pub fn app(&self) -> String {
        self.sql.replace('§', "main.")
    }
    /// The text the oracle runs (views live in `temp`).
    pub fn oracle(&self) -> String {
        self.sql.replace('§', "temp.")
    }
}

fn plain(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "select", "from", "where", "group", "order", "limit", "by", "table",
    ];
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&name)
}

/// An identifier as a user might write it: quoted, or for plain names
/// sometimes bare or upper case.
fn ident(c: &mut Choices, name: &str) -> String {
    if plain(name) {
        match c.below(3) {
            0 => name.to_string(),
            1 => name.to_ascii_uppercase(),
            _ => qi(name),
        }
    } else {
        qi(name)
    }
}

struct Q<'a> {
    spec: &'a Spec,
    c: Choices<'a>,
    /// Table names (lower case) of the CTEs whose bodies are being built.
    defining: Vec<String>,
    /// A body read an unqualified table of its own CTE's name.
    ambiguous: bool,
}

impl Q<'_> {
    fn table(&mut self) -> usize {
        self.c.below(self.spec.tables.len())
    }
    /// A table reference, maybe schema-qualified.
    fn tref(&mut self, t: usize) -> String {
        let name = ident(&mut self.c, &self.spec.tables[t].name.clone());
        if self.c.chance(30) {
            format!("§{name}")
        } else {
            self.ambiguous |= self.defining.contains(&lower(&self.spec.tables[t].name));
            name
        }
    }
    /// A column of `t` (maybe a hidden one), qualified with `alias`.
    fn col(&mut self, t: usize, alias: &str) -> String {
        let cols = &self.spec.tables[t].cols;
        let i = if self.c.chance(70) {
            0
        } else {
            self.c.below(cols.len())
        };
        let name = cols[i].name.clone();
        format!("{alias}.{}", ident(&mut self.c, &name))
    }
    fn alias(&mut self) -> String {
        match self.c.below(4) {
            0 => "x".into(),
            1 => "y".into(),
            2 => {
                let t = self.table();
                qi(&self.spec.tables[t].name)
            }
            _ => "a1".into(),
        }
    }
    /// A one-column subquery (count, max of a column, or a column).
    fn scalar(&mut self, depth: u32) -> String {
        let t = self.table();
        let tref = self.tref(t);
        let a = "s".to_string();
        match self.c.below(4) {
            0 if depth > 0 => {
                let inner = self.select(depth - 1);
                format!("SELECT count(*) FROM ({inner}) AS s")
            }
            1 => {
                let col = self.col(t, &a);
                format!("SELECT max({col}) FROM {tref} AS s")
            }
            _ => format!("SELECT count(*) FROM {tref} AS s"),
        }
    }
    /// A SELECT of bounded depth; deterministic results (no LIMIT without
    /// a single-row result).
    fn select(&mut self, depth: u32) -> String {
        if depth > 0 && self.c.chance(35) {
            return self.wrapped(depth - 1);
        }
        let t = self.table();
        let tref = self.tref(t);
        let a = self.alias();
        let mut grouped = false;
        let proj = match self.c.below(6) {
            0 => "*".to_string(),
            1 => {
                grouped = true;
                "count(*) AS n".to_string()
            }
            2 => {
                let k = 1 + self.c.below(3);
                (0..k)
                    .map(|i| format!("{} AS c{i}", self.col(t, &a)))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            3 => {
                let s = self.scalar(depth.saturating_sub(1));
                format!("({s}) AS s, {}", self.col(t, &a))
            }
            4 => format!("{a}.*"),
            _ => format!("max({}) AS m", self.col(t, &a)),
        };
        let mut sql = format!("SELECT {proj} FROM {tref} AS {a}");
        if self.c.chance(30) {
            let t2 = self.table();
            let tref2 = self.tref(t2);
            let on = if self.c.chance(50) {
                format!(
                    "j.{} = {}",
                    qi(&self.spec.tables[t2].cols[0].name),
                    self.col(t, &a)
                )
            } else {
                format!("EXISTS ({})", self.scalar(depth.saturating_sub(1)))
            };
            let kind = if self.c.chance(30) {
                "LEFT JOIN"
            } else {
                "JOIN"
            };
            sql += &format!(" {kind} {tref2} AS j ON {on}");
        }
        if self.c.chance(40) {
            let w = match self.c.below(3) {
                0 => format!(
                    "{} IN (SELECT {} FROM {} AS w)",
                    self.col(t, &a),
                    {
                        let t2 = self.table();
                        qi(&self.spec.tables[t2].cols[0].name.clone())
                    },
                    {
                        let t2 = self.table();
                        self.tref(t2)
                    }
                ),
                1 => format!("EXISTS ({})", self.scalar(depth.saturating_sub(1))),
                _ => format!("{} = {}", self.col(t, &a), 1 + self.c.below(4)),
            };
            sql += &format!(" WHERE {w}");
        }
        if grouped && self.c.chance(40) {
            let g = self.col(t, &a);
            let s = self.scalar(depth.saturating_sub(1));
            sql += &format!(" GROUP BY {g} HAVING count(*) < ({s}) + 100");
        }
        if self.c.chance(15) {
            let s = self.scalar(depth.saturating_sub(1));
            sql += &format!(" ORDER BY ({s})");
        }
        sql
    }
    /// Wrapping constructs: CTEs shadowing table names, WITH RECURSIVE
    /// with forward references, set operations, derived tables, LATERAL,
    /// TABLESAMPLE, LIMIT subqueries.
    fn wrapped(&mut self, depth: u32) -> String {
        let kind = self.c.below(8);
        // The table whose name a CTE takes (kinds 0, 1 and 7).
        let t = self.table();
        let shadows = matches!(kind, 0 | 1 | 7);
        if shadows {
            self.defining.push(lower(&self.spec.tables[t].name));
        }
        let inner = self.select(depth);
        if shadows {
            self.defining.pop();
        }
        match kind {
            0 => {
                let name = ident(&mut self.c, &self.spec.tables[t].name.clone());
                format!("WITH {name} AS ({inner}) SELECT * FROM {name} AS x")
            }
            1 => {
                let name = qi(&self.spec.tables[t].name);
                format!("WITH RECURSIVE fw AS (SELECT * FROM {name} AS z), {name} AS ({inner}) SELECT * FROM fw AS x")
            }
            2 => {
                let other = self.scalar(depth);
                let op = self.c.pick(&["UNION", "UNION ALL", "EXCEPT", "INTERSECT"]);
                format!("SELECT count(*) AS n FROM ({inner}) AS l {op} {other}")
            }
            3 => {
                let a = self.alias();
                format!("SELECT count(*) AS n FROM ({inner}) AS {a}")
            }
            4 => {
                let t = self.table();
                let tref = self.tref(t);
                format!("SELECT * FROM {tref} AS x, LATERAL ({inner}) AS l")
            }
            5 => {
                let t = self.table();
                let tref = self.tref(t);
                let s = self.scalar(depth);
                format!("SELECT count(*) AS n FROM {tref} AS x TABLESAMPLE SYSTEM (({s}))")
            }
            6 => {
                let s = self.scalar(depth);
                format!("SELECT count(*) AS n FROM ({inner}) AS d LIMIT ({s})")
            }
            _ => {
                let name = qi(&self.spec.tables[t].name);
                format!(
                    "WITH c1 AS ({inner}), {name} AS (SELECT * FROM c1) SELECT * FROM {name} AS x"
                )
            }
        }
    }
    /// A statement that writes, locks or changes the session.
    fn write(&mut self) -> String {
        let t = self.table();
        let tref = self.tref(t);
        let col = qi(&self.spec.tables[t].cols[0].name);
        let sel = self.select(0);
        match self.c.below(14) {
            0 => format!("INSERT INTO {tref} ({col}) VALUES (1)"),
            1 => format!("UPDATE {tref} SET {col} = 1"),
            2 => format!("DELETE FROM {tref}"),
            3 => "SET x = 1".into(),
            4 => format!("COPY {tref} TO STDOUT"),
            5 => "CALL f()".into(),
            6 => format!("SELECT * INTO loot FROM {tref}"),
            7 => format!("SELECT * FROM {tref} FOR UPDATE"),
            8 => format!("{sel}; DELETE FROM {tref}"),
            9 => format!("WITH d AS (DELETE FROM {tref} RETURNING *) SELECT * FROM d"),
            10 => format!("PRAGMA table_info({tref})"),
            11 => "ATTACH 'x.db' AS x".into(),
            12 => format!("CREATE TABLE loot AS SELECT * FROM {tref}"),
            _ => format!("DROP TABLE {tref}"),
        }
    }
}

/// Builds a query against `spec` from decisions.
pub fn query(spec: &Spec, choices: &[u16]) -> GenQuery {
    let mut q = Q {
        spec,
        c: Choices::new(choices),
        defining: Vec::new(),
        ambiguous: false,
    };
    let must_refuse = q.c.chance(12);
    let sql = if must_refuse { q.write() } else { q.select(3) };
    GenQuery {
        sql,
        must_refuse,
        ambiguous: q.ambiguous,
    }
}

// ----- the checks --------------------------------------------------------------

/// Options for the SQLite rewrite.
pub fn sqlite_opts() -> Options {
    Options::default().with_dialect(Dialect::Sqlite)
}

/// Loads the spec's policy: a question CTE named like a declared table must
/// be refused at load; the real policy must load. Returns it with `u`.
pub fn load(spec: &Spec) -> (Policy, Principal) {
    let has_cte = spec
        .tables
        .iter()
        .any(|t| matches!(&t.access, Grant::Custom(q) if q.cte.is_some()));
    if has_cte {
        let bad = spec.yaml(true);
        match Policy::from_yaml(&bad, "bad.yaml") {
            Err(e) if e.to_string().contains("has the name of a declared table") => {}
            other => panic!("a question CTE named like a declared table: {other:?}\n{bad}"),
        }
    }
    let yaml = spec.yaml(false);
    let policy = Policy::from_yaml(&yaml, "generated.yaml")
        .unwrap_or_else(|e| panic!("generated policy does not load: {e}\n{yaml}"));
    let user = Principal::from_user(&policy, "u").unwrap_or_else(|e| panic!("user u: {e}\n{yaml}"));
    (policy, user)
}

/// Checks the properties that need no database, for a rewrite of `sql`:
/// returns `Ok(None)` when refused, `Ok(Some(output))` when rewritten and
/// (a) the output parses again as one SQLite statement, (b)
/// `Policy::recheck` accepts it, (c) no protected table is read outside a
/// sandbox subquery equal to one [`Spec::expected_sandboxes`] lists.
/// Every other dialect must not panic, and what it rewrites must recheck
/// (a dialect override whose output the override dialect reads otherwise is
/// refused: see `dialect_override_keeps_no_question_quotes` in
/// `tests/policy_props.rs`).
pub fn check_static(
    spec: &Spec,
    policy: &Policy,
    user: &Principal,
    sql: &str,
) -> Result<Option<String>, String> {
    for d in [Dialect::Postgres, Dialect::Mysql, Dialect::Generic] {
        let opts = Options::default().with_dialect(d);
        if let Ok(out) = policy.rewrite(user, sql, &opts) {
            policy
                .recheck(user, &out.sql, &opts)
                .map_err(|e| format!("recheck ({d:?}): {e}\n  output: {}", out.sql))?;
        }
    }
    let opts = sqlite_opts();
    let out = match policy.rewrite(user, sql, &opts) {
        Err(_) => return Ok(None),
        Ok(out) => out.sql,
    };
    let stmts = Parser::parse_sql(&SQLiteDialect {}, &out)
        .map_err(|e| format!("output does not parse: {e}\n  output: {out}"))?;
    if stmts.len() != 1 {
        return Err(format!("output has {} statements: {out}", stmts.len()));
    }
    policy
        .recheck(user, &out, &opts)
        .map_err(|e| format!("recheck: {e}\n  output: {out}"))?;
    check_outside(spec, &stmts[0]).map_err(|e| format!("{e}\n  output: {out}"))?;
    Ok(Some(out))
}

/// Property (c) alone: no protected table of `spec` is read in `stmt`
/// outside a sandbox subquery equal to one [`Spec::expected_sandboxes`]
/// lists, except through an unqualified name bound to a CTE in scope.
pub fn check_outside(spec: &Spec, stmt: &sqlparser::ast::Statement) -> Result<(), String> {
    let protected: Vec<String> = (0..spec.tables.len())
        .filter(|&t| spec.protected(t))
        .map(|t| lower(&spec.tables[t].name))
        .collect();
    let mut check = Outside {
        protected: &protected,
        sandboxes: spec.expected_sandboxes(),
        sandbox_queries: Vec::new(),
        cte_bodies: HashMap::new(),
        frames: Vec::new(),
        pushed: Vec::new(),
        depth: 0,
    };
    match stmt.visit(&mut check) {
        ControlFlow::Break(name) => Err(format!(
            "protected table `{name}` read outside a sandbox; expected sandboxes: {:?}",
            check.sandboxes
        )),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// A scope frame: CTE names visible, and whether it hides the frame below
/// (a CTE body does not see its own query's later CTEs in a plain WITH).
struct Frame {
    names: Vec<String>,
    hides_below: bool,
}

/// The independent "(c)" check: a visitor over the output AST that fails
/// on a reference to a protected table that is neither inside an expected
/// sandbox subquery nor an unqualified name bound to a CTE in scope.
struct Outside<'a> {
    protected: &'a [String],
    sandboxes: Vec<String>,
    sandbox_queries: Vec<*const Query>,
    cte_bodies: HashMap<*const Query, Vec<String>>,
    frames: Vec<Frame>,
    pushed: Vec<(usize, bool)>,
    depth: usize,
}

impl Outside<'_> {
    fn bound(&self, name: &str) -> bool {
        let mut skip = false;
        for f in self.frames.iter().rev() {
            if skip {
                skip = false;
                continue;
            }
            if f.names.iter().any(|n| lower(n) == name) {
                return true;
            }
            skip = f.hides_below;
        }
        false
    }
}

impl Visitor for Outside<'_> {
    type Break = String;

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<String> {
        let ptr = q as *const Query;
        let sandbox = self.sandbox_queries.contains(&ptr);
        if sandbox {
            self.depth += 1;
        }
        let mut n = 0;
        if let Some(names) = self.cte_bodies.remove(&ptr) {
            self.frames.push(Frame {
                names,
                hides_below: true,
            });
            n += 1;
        }
        if let Some(w) = &q.with {
            let all: Vec<String> = w
                .cte_tables
                .iter()
                .map(|c| c.alias.name.value.clone())
                .collect();
            for (i, c) in w.cte_tables.iter().enumerate() {
                let visible = if w.recursive {
                    all.clone()
                } else {
                    all[..i].to_vec()
                };
                self.cte_bodies
                    .insert(c.query.as_ref() as *const Query, visible);
            }
            self.frames.push(Frame {
                names: all,
                hides_below: false,
            });
            n += 1;
        }
        self.pushed.push((n, sandbox));
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<String> {
        let (n, sandbox) = self.pushed.pop().unwrap_or((0, false));
        for _ in 0..n {
            self.frames.pop();
        }
        if sandbox {
            self.depth -= 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<String> {
        if let TableFactor::Derived { subquery, .. } = f {
            let text = subquery.to_string().replace('"', "");
            if self.depth == 0
                && (self.sandboxes.contains(&text)
                    || without_moved_conditions(subquery)
                        .iter()
                        .any(|t| self.sandboxes.contains(t)))
            {
                self.sandbox_queries.push(subquery.as_ref() as *const Query);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<String> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(|i| lower(&i.value))
            .collect();
        let Some(last) = parts.last() else {
            return ControlFlow::Continue(());
        };
        if self.protected.contains(last) && !(parts.len() == 1 && self.bound(last)) {
            return ControlFlow::Break(name.to_string());
        }
        ControlFlow::Continue(())
    }
}

/// A fenced sandbox with conditions moved into it is
/// `… WHERE (own) AND (moved) LIMIT -1`: its text without the moved part,
/// when that part reads no other relation (a moved condition can only
/// narrow the sandbox; what it is allowed to be is the verifier's
/// business, tested in tests/verifier.rs).
fn without_moved_conditions(q: &Query) -> Vec<String> {
    struct Reads(bool);
    impl sqlparser::ast::Visitor for Reads {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.0 = true;
            ControlFlow::Break(())
        }
        fn pre_visit_relation(&mut self, _: &ObjectName) -> ControlFlow<()> {
            self.0 = true;
            ControlFlow::Break(())
        }
    }
    let reads = |node: &dyn Fn(&mut Reads)| {
        let mut r = Reads(false);
        node(&mut r);
        r.0
    };
    let mut q = q.clone();
    if q.limit_clause.is_none() {
        return vec![];
    }
    // A top-N moved inside: `ORDER BY t.c … LIMIT n` in place of the fence.
    let top_n = match q.order_by.take() {
        Some(o) => {
            let limit = q.limit_clause.take();
            if reads(&|r| {
                let _ = sqlparser::ast::Visit::visit(&o, r);
                let _ = sqlparser::ast::Visit::visit(&limit, r);
            }) {
                return vec![];
            }
            true
        }
        None => false,
    };
    let mut out = Vec::new();
    if top_n {
        out.push(q.to_string().replace('"', ""));
    }
    let SetExpr::Select(s) = q.body.as_mut() else {
        return out;
    };
    match s.selection.take() {
        Some(Expr::BinaryOp {
            left,
            op: sqlparser::ast::BinaryOperator::And,
            right,
        }) if matches!(
            (left.as_ref(), right.as_ref()),
            (Expr::Nested(_), Expr::Nested(_))
        ) =>
        {
            let (Expr::Nested(own), Expr::Nested(moved)) = (*left, *right) else {
                return out;
            };
            if reads(&|r| {
                let _ = sqlparser::ast::Visit::visit(&*moved, r);
            }) {
                return out;
            }
            s.selection = Some(*own);
            out.push(q.to_string().replace('"', ""));
        }
        _ => {}
    }
    out
}

// ----- fuzzing -----------------------------------------------------------------

/// One fuzz input: byte 0 gives `k` (mod 64), the next `2k` bytes `k`
/// little-endian decisions for the policy, the rest is SQL (UTF-8, `§`
/// standing for `main.`). Panics when a property fails; the fuzz target
/// `policy` and the corpus replay in `tests/policy_props.rs` call it.
/// Returns whether the SQL was rewritten.
pub fn fuzz_one(data: &[u8]) -> bool {
    let Some((&k, rest)) = data.split_first() else {
        return false;
    };
    let k = usize::from(k % 64).min(rest.len() / 2);
    let choices: Vec<u16> = rest[..2 * k]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let Ok(sql) = std::str::from_utf8(&rest[2 * k..]) else {
        return false;
    };
    let spec = Spec::generate(&mut Choices::new(&choices));
    let (policy, user) = load(&spec);
    match check_static(&spec, &policy, &user, &sql.replace('§', "main.")) {
        Ok(out) => out.is_some(),
        Err(e) => panic!("{e}\n  input: {sql}\n  policy:\n{}", spec.yaml(false)),
    }
}
