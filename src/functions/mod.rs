//! Which functions native SQL may call: a curated allow-list per dialect,
//! an always-denied list no policy can lift, and the policy's own
//! additions and removals (`functions: {allow, deny, variables}`).
//!
//! Fail closed: a function is accepted only when it is on the dialect's
//! list (`postgres.tsv`, `mysql.tsv`, `sqlite.tsv`, `generic.tsv`) or the
//! policy allows it, and it is never on `denied.tsv`. No function that
//! takes SQL text, a table or a file name, acts on the server or reveals
//! other sessions may be on any list. MySQL/MariaDB variables (`@@x`,
//! `@x`) are refused unless the policy lists them; assigning one is
//! always refused.
//!
//! The data files are compiled in (`include_str!`) and parsed once into
//! hash maps; the check is one walk of the query, and a call to a listed
//! function costs one or two hash lookups and no allocation (unless its
//! name has capitals).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use sqlparser::ast::{
    BinaryOperator, Expr, Ident, ObjectName, ObjectNamePart, Value, ValueWithSpan,
};

use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::FunctionPolicy;

pub(crate) mod pattern;

/// What a function on an allow-list does (the data files' second column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Category {
    Aggregate,
    Window,
    String,
    Math,
    Datetime,
    Conditional,
    Conversion,
    Json,
    Array,
    Fulltext,
    /// Row-generating table functions: the only ones allowed in FROM.
    Table,
}

impl Category {
    /// Every category, in the order the documentation lists them.
    pub(crate) const ALL: [Category; 11] = [
        Category::Aggregate,
        Category::Window,
        Category::String,
        Category::Math,
        Category::Datetime,
        Category::Conditional,
        Category::Conversion,
        Category::Json,
        Category::Array,
        Category::Fulltext,
        Category::Table,
    ];

    /// The category's name as written in the data files.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Category::Aggregate => "aggregate",
            Category::Window => "window",
            Category::String => "string",
            Category::Math => "math",
            Category::Datetime => "datetime",
            Category::Conditional => "conditional",
            Category::Conversion => "conversion",
            Category::Json => "json",
            Category::Array => "array",
            Category::Fulltext => "fulltext",
            Category::Table => "table",
        }
    }

    fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// One line of an allow-list data file.
#[derive(Debug, Clone, Copy)]
struct Entry {
    name: &'static str,
    category: Category,
    /// Free text for the docs.
    #[cfg_attr(not(test), allow(dead_code))]
    note: &'static str,
}

/// The allow-list data file of a dialect.
fn source(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => include_str!("postgres.tsv"),
        Dialect::Mysql => include_str!("mysql.tsv"),
        Dialect::Sqlite => include_str!("sqlite.tsv"),
        Dialect::Generic => include_str!("generic.tsv"),
        Dialect::Duckdb => include_str!("duckdb.tsv"),
        Dialect::Clickhouse => include_str!("clickhouse.tsv"),
        Dialect::Spark => include_str!("spark.tsv"),
        Dialect::Snowflake => include_str!("snowflake.tsv"),
        Dialect::Bigquery => include_str!("bigquery.tsv"),
        Dialect::Redshift => include_str!("redshift.tsv"),
        Dialect::Mssql => include_str!("mssql.tsv"),
        Dialect::Trino => include_str!("trino.tsv"),
    }
}

/// The always-denied data file.
const DENIED_SOURCE: &str = include_str!("denied.tsv");

/// The data lines of a file (comments and blank lines dropped), with their
/// 1-based line numbers.
fn data_lines(src: &'static str) -> impl Iterator<Item = (usize, &'static str)> {
    src.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
}

/// A function name as the data files must spell it: a lower-case ASCII
/// word (a denied prefix ends in `*`).
fn well_formed(name: &str) -> bool {
    let name = name.strip_suffix('*').unwrap_or(name);
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Parses an allow-list file: each line or the reason it is malformed.
fn parse_list(src: &'static str) -> impl Iterator<Item = Result<Entry, String>> {
    data_lines(src).map(|(n, line)| {
        let mut cols = line.split('\t');
        let name = cols.next().unwrap_or_default();
        let category = cols.next().unwrap_or_default();
        let note = cols.next().unwrap_or_default();
        if cols.next().is_some() {
            return Err(format!("line {n}: more than three columns"));
        }
        if !well_formed(name) || name.ends_with('*') {
            return Err(format!("line {n}: bad function name `{name}`"));
        }
        let category = Category::parse(category)
            .ok_or_else(|| format!("line {n}: unknown category `{category}`"))?;
        Ok(Entry {
            name,
            category,
            note,
        })
    })
}

/// The always-denied list: exact names and name prefixes, with reasons.
struct Denied {
    exact: HashMap<&'static str, &'static str>,
    prefixes: Vec<(&'static str, &'static str)>,
}

impl Denied {
    fn reason(&self, name: &str) -> Option<&'static str> {
        self.exact.get(name).copied().or_else(|| {
            self.prefixes
                .iter()
                .find(|(p, _)| name.starts_with(p))
                .map(|(_, why)| *why)
        })
    }
}

/// Parses the denied file: each line as (name or `prefix*`, reason), or the
/// reason it is malformed.
fn parse_denied() -> impl Iterator<Item = Result<(&'static str, &'static str), String>> {
    data_lines(DENIED_SOURCE).map(|(n, line)| match line.split_once('\t') {
        Some((name, why)) if well_formed(name) && !why.trim().is_empty() => Ok((name, why)),
        _ => Err(format!("line {n}: expected `name<TAB>reason`")),
    })
}

fn denied() -> &'static Denied {
    static D: OnceLock<Denied> = OnceLock::new();
    D.get_or_init(|| {
        let mut d = Denied {
            exact: HashMap::new(),
            prefixes: Vec::new(),
        };
        // A malformed line (the unit tests rule them out) is dropped.
        for (name, why) in parse_denied().flatten() {
            match name.strip_suffix('*') {
                Some(prefix) => d.prefixes.push((prefix, why)),
                None => {
                    d.exact.insert(name, why);
                }
            }
        }
        d
    })
}

/// Why `name` (lower case, unqualified) is always denied, if it is.
pub(crate) fn denied_reason(name: &str) -> Option<&'static str> {
    denied().reason(name)
}

/// The allow-list of a dialect: name to category.
fn allowed(d: Dialect) -> &'static HashMap<&'static str, Category> {
    static SLOTS: [OnceLock<HashMap<&'static str, Category>>; Dialect::ALL.len()] =
        [const { OnceLock::new() }; Dialect::ALL.len()];
    // Every dialect is in ALL; were one not, it would get an empty list.
    let Some(slot) = Dialect::ALL
        .iter()
        .position(|x| *x == d)
        .and_then(|i| SLOTS.get(i))
    else {
        static EMPTY: OnceLock<HashMap<&'static str, Category>> = OnceLock::new();
        return EMPTY.get_or_init(HashMap::new);
    };
    slot.get_or_init(|| {
        // Malformed lines are dropped and denied names are never taken,
        // whatever the file says (the unit tests keep both out).
        parse_list(source(d))
            .flatten()
            .filter(|e| denied_reason(e.name).is_none())
            .map(|e| (e.name, e.category))
            .collect()
    })
}

/// The entries of a dialect's allow-list in file order (for the docs).
#[cfg(test)]
fn entries(d: Dialect) -> Vec<Entry> {
    parse_list(source(d)).flatten().collect()
}

/// The key a name part is compared by: PostgreSQL keeps a quoted name
/// exact and folds the rest to lower case; everywhere else names are
/// case-insensitive. Folding is ASCII-only, as in the databases, so a
/// name with a non-ASCII look-alike letter never matches a list entry.
fn key(d: Dialect, ident: &Ident) -> Cow<'_, str> {
    match d {
        Dialect::Postgres => d.normalize(ident),
        _ => Dialect::Sqlite.normalize(ident),
    }
}

/// A function name resolved for the check.
struct Name<'a> {
    /// The function's own (last) name, as compared.
    short: Cow<'a, str>,
    /// `None` when the name is a built-in's (unqualified, or
    /// `pg_catalog.`-qualified on PostgreSQL); otherwise the whole dotted
    /// name, which only the policy can allow.
    qualified: Option<String>,
}

fn resolve(name: &ObjectName, d: Dialect) -> Result<Name<'_>> {
    fn ident<'n>(p: &'n ObjectNamePart, name: &ObjectName) -> Result<&'n Ident> {
        match p {
            ObjectNamePart::Identifier(i) => Ok(i),
            ObjectNamePart::Function(_) => Err(Error::unsupported(format!(
                "the computed function name `{name}`"
            ))),
        }
    }
    // No allocation for the common one-part name.
    let (last, first) = match name.0.as_slice() {
        [] => return Err(Error::unsupported("an empty function name")),
        [one] => (ident(one, name)?, None),
        [first, .., last] => (ident(last, name)?, Some(ident(first, name)?)),
    };
    let builtin = match (first, name.0.len()) {
        // MySQL resolves a quoted name to a stored function, never to the
        // built-in; other engines may too (only PostgreSQL and SQLite are
        // known not to).
        (None, _) => last.quote_style.is_none() || matches!(d, Dialect::Postgres | Dialect::Sqlite),
        (Some(schema), 2) => d == Dialect::Postgres && key(d, schema) == "pg_catalog",
        _ => false,
    };
    let qualified = if builtin {
        None
    } else {
        let mut parts = Vec::with_capacity(name.0.len());
        for p in &name.0 {
            parts.push(key(d, ident(p, name)?));
        }
        Some(parts.join("."))
    };
    Ok(Name {
        short: key(d, last),
        qualified,
    })
}

/// Checks one function call: `in_from` when it is a table function in
/// FROM, where only row-generating functions (category `table`) or ones
/// the policy allows may stand.
pub(crate) fn check_function(
    name: &ObjectName,
    d: Dialect,
    policy: &FunctionPolicy,
    in_from: bool,
) -> Result<()> {
    let n = resolve(name, d)?;
    let policy_denies = |k: &str| !policy.deny.is_empty() && policy.deny.contains(k);
    // The common case: a listed built-in the policy does not take away.
    if n.qualified.is_none() {
        if let Some(&cat) = allowed(d).get(n.short.as_ref()) {
            if !policy_denies(&n.short) && (!in_from || cat == Category::Table) {
                return Ok(());
            }
        }
    }
    let refuse = |reason: String| {
        Err(Error::ForbiddenFunction {
            function: name.to_string(),
            reason,
        })
    };
    if let Some(why) = denied_reason(&n.short) {
        return refuse(why.to_string());
    }
    let full = n.qualified.as_deref().unwrap_or(&n.short);
    if policy_denies(&n.short) || policy_denies(full) {
        return refuse("removed by the policy under `functions: deny:`".into());
    }
    if policy.allow.contains(full) {
        return Ok(());
    }
    match (&n.qualified, allowed(d).get(n.short.as_ref())) {
        (None, Some(_)) => refuse(format!(
            "only row-generating table functions may be used in FROM, and `{}` is not one; add it under `functions: allow:` if it is safe",
            n.short
        )),
        (None, None) => refuse(format!(
            "it is not on the {d} allow-list; add it under `functions: allow:` if it is safe"
        )),
        (Some(q), _) => refuse(format!(
            "a schema-qualified or quoted name calls a user-defined function; add `{q}` under `functions: allow:` if it is safe"
        )),
    }
}

/// Checks a table function in FROM (`FROM generate_series(1, 3)`).
pub(crate) fn check_table_function(
    name: &ObjectName,
    d: Dialect,
    policy: &FunctionPolicy,
) -> Result<()> {
    check_function(name, d, policy, true)
}

/// Whether an identifier is a MySQL/MariaDB variable (`@x`, `@@x`): an
/// unquoted name cannot start with `@` in any other way.
fn is_variable(i: &Ident) -> bool {
    i.quote_style.is_none() && i.value.starts_with('@')
}

/// Checks a variable read: `@@name`, `@@session.name` (and `global.`,
/// `local.`) need `name` under `functions: variables:`; a user variable
/// `@name` needs `@name` there.
fn check_variable(parts: &[Ident], policy: &FunctionPolicy) -> Result<()> {
    let text = parts
        .iter()
        .map(|p| p.value.as_str())
        .collect::<Vec<_>>()
        .join(".");
    let Some(first) = parts.first() else {
        return Ok(());
    };
    let first = first.value.to_ascii_lowercase();
    let wanted = match (first.strip_prefix("@@"), parts) {
        (Some(""), _) => None,
        (Some("session" | "global" | "local"), [_, name]) => Some(name.value.to_ascii_lowercase()),
        (Some(name), [_]) => Some(name.to_string()),
        (None, [_]) if first.len() > 1 => Some(first.clone()),
        _ => None,
    };
    match wanted {
        Some(w) if policy.variables.contains(&w) => Ok(()),
        Some(w) => Err(Error::ForbiddenFunction {
            function: text,
            reason: format!(
                "server and session variables may reveal the server or other sessions' state; add `{w}` under `functions: variables:` if it is safe"
            ),
        }),
        None => Err(Error::unsupported(format!("the variable reference `{text}`"))),
    }
}

/// Built-in PostgreSQL types that sqlparser reads as custom type names.
const KNOWN_CUSTOM_TYPES: &[&str] = &[
    "citext",
    "inet",
    "cidr",
    "macaddr",
    "macaddr8",
    "money",
    "timestamptz",
    "timetz",
    "varchar",
    "bpchar",
    "int2",
    "int4",
    "int8",
    "float4",
    "float8",
    "bool",
    "numeric",
    "decimal",
    "smallserial",
    "serial",
    "bigserial",
];

fn is_tableoid(e: &Expr) -> bool {
    match e {
        Expr::Identifier(i) => i.value.eq_ignore_ascii_case("tableoid"),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .is_some_and(|i| i.value.eq_ignore_ascii_case("tableoid")),
        Expr::Nested(inner) => is_tableoid(inner),
        _ => false,
    }
}

/// A cast is a function call too: to a type sqlsandbox does not know (a
/// user-defined type's input function or cast may do anything), or to a
/// catalog type (`'accounts'::regclass` probes the catalog), it is refused.
fn check_type(dt: &sqlparser::ast::DataType) -> Result<()> {
    use sqlparser::ast::{ArrayElemTypeDef, DataType};
    let refuse = |why: &str| {
        Err(Error::ForbiddenFunction {
            function: format!("a cast to {dt}"),
            reason: why.to_string(),
        })
    };
    match dt {
        DataType::Custom(name, _) => {
            let known = match name.0.as_slice() {
                [ObjectNamePart::Identifier(i)] => KNOWN_CUSTOM_TYPES
                    .iter()
                    .any(|k| i.value.eq_ignore_ascii_case(k)),
                _ => false,
            };
            if known {
                Ok(())
            } else {
                refuse("a type sqlsandbox does not know may run a user-defined input function or cast")
            }
        }
        DataType::Regclass => refuse("a computed value cast to regclass searches the catalog (`tableoid::regclass` and constant names are allowed)"),
        DataType::Table(_)
        | DataType::NamedTable { .. }
        | DataType::Trigger
        | DataType::AnyType => refuse("not a value type"),
        DataType::Array(
            ArrayElemTypeDef::AngleBracket(inner)
            | ArrayElemTypeDef::SquareBracket(inner, _)
            | ArrayElemTypeDef::Parenthesis(inner)
            | ArrayElemTypeDef::ParenthesisNotNull(inner)
            | ArrayElemTypeDef::Qualified(inner, _),
        ) => check_type(inner),
        _ => Ok(()),
    }
}

/// Checks one expression node (not its children): a function call, a
/// variable, a variable assignment, an operator that is a function call by
/// another name. The pre-rewrite walk and the verifier both call it.
pub(crate) fn check_expr(e: &Expr, dialect: Dialect, policy: &FunctionPolicy) -> Result<()> {
    match e {
        // `tableoid::regclass` names the table or partition a visible row
        // is stored in, and `'public.orders'::regclass` is a constant to
        // compare it with (at most it tells whether a table of that name
        // exists); a computed value cast to regclass searches the catalog.
        Expr::Cast {
            data_type: sqlparser::ast::DataType::Regclass,
            expr,
            ..
        } if is_tableoid(expr)
            || matches!(
                expr.as_ref(),
                Expr::Value(ValueWithSpan {
                    value: Value::SingleQuotedString(_),
                    ..
                })
            ) => {}
        Expr::Cast { data_type, .. } => check_type(data_type)?,
        Expr::TypedString(ts) => check_type(&ts.data_type)?,
        Expr::Function(f) => check_function(&f.name, dialect, policy, false)?,
        Expr::Identifier(i) if is_variable(i) => check_variable(std::slice::from_ref(i), policy)?,
        Expr::CompoundIdentifier(parts) if parts.iter().any(is_variable) => {
            check_variable(parts, policy)?
        }
        Expr::BinaryOp { op, .. }
        | Expr::AnyOp { compare_op: op, .. }
        | Expr::AllOp { compare_op: op, .. } => check_operator(op)?,
        Expr::Convert {
            data_type: Some(dt),
            ..
        } => check_type(dt)?,
        _ => {}
    }
    Ok(())
}

/// The built-in operators `OPERATOR(pg_catalog.…)` may name.
const PG_CATALOG_OPERATORS: &[&str] = &[
    "+", "-", "*", "/", "%", "=", "<>", "!=", "<", ">", "<=", ">=", "||",
];

/// An operator is a function call by another name: one from a schema of
/// the user's, or one sqlsandbox does not know, may do anything.
fn check_operator(op: &BinaryOperator) -> Result<()> {
    match op {
        BinaryOperator::Assignment => Err(Error::NotReadOnly(
            "assigning a variable (`@x := …`) writes session state that outlives the query".into(),
        )),
        BinaryOperator::PGCustomBinaryOperator(path) => match path.as_slice() {
            // `OPERATOR(pg_catalog.+)` is the built-in `+`. Only operators
            // whose checks do not depend on how they are spelled: `~~`
            // (LIKE) written this way would pass every check keyed on the
            // LIKE syntax (the pattern check, row-safety).
            [schema, name]
                if schema.eq_ignore_ascii_case("pg_catalog")
                    && PG_CATALOG_OPERATORS.contains(&name.as_str()) =>
            {
                Ok(())
            }
            [schema, _] if schema.eq_ignore_ascii_case("pg_catalog") => {
                Err(Error::ForbiddenFunction {
                    function: op.to_string(),
                    reason: "only arithmetic and comparison operators may be written as OPERATOR(pg_catalog.…); write the operator itself".into(),
                })
            }
            _ => Err(Error::ForbiddenFunction {
                function: op.to_string(),
                reason: "a user-defined operator calls a function sqlsandbox cannot check".into(),
            }),
        },
        BinaryOperator::Custom(_) => Err(Error::ForbiddenFunction {
            function: op.to_string(),
            reason: "an operator sqlsandbox does not know may call any function".into(),
        }),
        _ => Ok(()),
    }
}

/// The built-in ordering operators `ORDER BY … USING` may name; any other
/// (`USING OPERATOR(public.<)`, a custom operator) calls a function of the
/// database's, which sqlsandbox cannot check.
pub(crate) fn check_order_using(op: &ObjectName) -> Result<()> {
    const BUILTIN: &[&str] = &["<", ">", "<=", ">=", "~<~", "~>~", "~<=~", "~>=~"];
    let ok = match op.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => BUILTIN.contains(&i.value.as_str()),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::ForbiddenFunction {
            function: format!("ORDER BY … USING {op}"),
            reason: "only the built-in ordering operators (<, >, <=, >=) may sort".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, Policy, Principal};

    #[test]
    fn data_files_parse() {
        for d in Dialect::ALL {
            let bad: Vec<String> = parse_list(source(d)).filter_map(|e| e.err()).collect();
            assert!(bad.is_empty(), "{d}.tsv: {bad:?}");
            let mut seen = std::collections::HashSet::new();
            for e in entries(d) {
                assert!(seen.insert(e.name), "{d}.tsv lists `{}` twice", e.name);
            }
            assert!(allowed(d).len() > 50, "{d}.tsv is suspiciously short");
        }
        let bad: Vec<String> = parse_denied().filter_map(|e| e.err()).collect();
        assert!(bad.is_empty(), "denied.tsv: {bad:?}");
    }

    #[test]
    fn no_denied_name_is_on_any_allow_list() {
        for d in Dialect::ALL {
            for e in entries(d) {
                assert!(
                    denied_reason(e.name).is_none(),
                    "`{}` is on the {d} allow-list and always denied",
                    e.name
                );
            }
        }
    }

    #[test]
    fn the_review_findings_are_denied() {
        for name in [
            "ts_rewrite",
            "ts_stat",
            "pg_show_all_settings",
            "pg_hba_file_rules",
            "pg_show_all_file_settings",
            "pg_config",
            "pg_advisory_lock_shared",
            "pg_advisory_unlock",
            "pg_advisory_unlock_all",
            "pg_try_advisory_lock_shared",
            "pg_try_advisory_xact_lock",
            "pg_stat_reset",
            "pg_stat_reset_shared",
            "pg_create_logical_replication_slot",
            "pg_replication_origin_session_setup",
            "pg_import_system_collations",
            "pg_current_xact_id",
            "txid_current",
            "current_setting",
            "set_config",
            "master_gtid_wait",
            "release_lock",
            "release_all_locks",
            "get_lock",
            "is_free_lock",
            "is_used_lock",
            "last_insert_id",
            "load_file",
            "sys_exec",
        ] {
            assert!(denied_reason(name).is_some(), "`{name}` is not denied");
        }
    }

    const POLICY: &str = "version: 1
databases:
  db:
    dialect: DIALECT
    tables:
      t: {columns: {id: integer, name: text}}
FUNCTIONS
groups:
  g:
    data: {db: unrestricted}
    native: {db: true}
users:
  u: {groups: [g]}
";

    fn policy(dialect: &str, functions: &str) -> crate::Result<Policy> {
        Policy::from_yaml(
            &POLICY
                .replace("DIALECT", dialect)
                .replace("FUNCTIONS", functions),
            "p.yaml",
        )
    }

    fn run(p: &Policy, sql: &str) -> crate::Result<String> {
        let u = Principal::from_user(p, "u")?;
        p.rewrite(&u, sql, &Options::default()).map(|r| r.sql)
    }

    #[test]
    fn allowing_a_denied_name_is_refused_at_load() {
        for entry in [
            "query_to_xml",
            "PG_SLEEP",
            "pg_catalog.ts_rewrite",
            "x.pg_advisory_lock",
        ] {
            let err =
                policy("postgres", &format!("functions: {{allow: ['{entry}']}}")).unwrap_err();
            assert_eq!(err.code(), "SB002", "{entry}");
            let msg = err.to_string();
            assert!(
                msg.contains("functions.allow") && msg.contains(entry),
                "{msg}"
            );
        }
    }

    #[test]
    fn allow_adds_and_deny_removes() {
        let p = policy("postgres", "functions: {allow: [My_Udf], deny: [upper]}").unwrap();
        run(&p, "SELECT my_udf(name), MY_UDF(id), lower(name) FROM t").unwrap();
        let e = run(&p, "SELECT upper(name) FROM t").unwrap_err();
        assert_eq!(e.code(), "SB402");
        let plain = policy("postgres", "").unwrap();
        let e = run(&plain, "SELECT my_udf(name) FROM t").unwrap_err();
        assert!(
            e.to_string().contains("`functions: allow:`") && e.to_string().contains("my_udf"),
            "{e}"
        );
    }

    #[test]
    fn table_functions_in_from() {
        let p = policy("postgres", "").unwrap();
        run(&p, "SELECT * FROM generate_series(1, 3) AS g").unwrap();
        run(&p, "SELECT * FROM pg_catalog.generate_series(1, 3) AS g").unwrap();
        run(&p, "SELECT * FROM t, LATERAL unnest(ARRAY[t.id]) AS u").unwrap();
        for sql in [
            "SELECT * FROM lower('a') AS l",
            "SELECT * FROM public.generate_series(1, 3) AS g",
            "SELECT * FROM pg_show_all_settings() AS s",
        ] {
            assert_eq!(run(&p, sql).unwrap_err().code(), "SB402", "{sql}");
        }
        // A scalar function the policy allows may stand in FROM.
        let p = policy("postgres", "functions: {allow: [lower]}").unwrap();
        run(&p, "SELECT * FROM lower('a') AS l").unwrap();
    }

    #[test]
    fn mysql_variables() {
        let p = policy("mysql", "").unwrap();
        for sql in [
            "SELECT @@datadir",
            "SELECT @@hostname FROM t",
            "SELECT @@session.sql_mode",
            "SELECT @@GLOBAL.version",
            "SELECT @x",
            "SELECT id FROM t ORDER BY @x",
            "SELECT lower(@x) FROM t",
        ] {
            assert_eq!(run(&p, sql).unwrap_err().code(), "SB402", "{sql}");
        }
        assert_eq!(run(&p, "SELECT @a := 1").unwrap_err().code(), "SB401");
        let p = policy("mysql", "functions: {variables: [version_comment, '@tag']}").unwrap();
        run(
            &p,
            "SELECT @@version_comment, @@session.VERSION_COMMENT, @tag FROM t",
        )
        .unwrap();
        assert_eq!(run(&p, "SELECT @@datadir").unwrap_err().code(), "SB402");
        assert_eq!(run(&p, "SELECT @tag := 2").unwrap_err().code(), "SB401");
    }

    #[test]
    fn settings_stay_refused_on_postgres() {
        let p = policy("postgres", "").unwrap();
        for sql in [
            "SELECT current_setting('search_path')",
            "SELECT set_config('search_path', 'x', false)",
            "SELECT pg_catalog.set_config('search_path', 'x', false)",
            "SELECT \"current_setting\"('x')",
            "SELECT id FROM t WHERE id = $1",
        ] {
            assert!(run(&p, sql).is_err(), "{sql}");
        }
    }

    /// The allow-lists as a Markdown table, by dialect and category.
    fn functions_markdown() -> String {
        let mut out = String::from(
            "# Functions native SQL may call\n\n\
             Generated from `src/functions/*.tsv` by `cargo test --lib functions_doc`\n\
             (run it with `UPDATE_DOCS=1` to rewrite this file). Do not edit by hand.\n\n\
             A policy adds names with `functions: allow:` and removes them with\n\
             `functions: deny:`; see the README's \"Functions\" section. Only functions of\n\
             category `table` may stand in `FROM`.\n",
        );
        for d in Dialect::ALL {
            out.push_str(&format!(
                "\n## {d}\n\n| category | functions |\n| --- | --- |\n"
            ));
            let list = entries(d);
            for c in Category::ALL {
                let names: Vec<String> = list
                    .iter()
                    .filter(|e| e.category == c)
                    .map(|e| {
                        if e.note.is_empty() {
                            format!("`{}`", e.name)
                        } else {
                            format!("`{}` ({})", e.name, e.note.replace('|', "\\|"))
                        }
                    })
                    .collect();
                if !names.is_empty() {
                    out.push_str(&format!("| {} | {} |\n", c.name(), names.join(", ")));
                }
            }
        }
        out.push_str(
            "\n## Always denied (every dialect; a policy cannot allow these)\n\n\
             A name ending in `*` denies every function whose name starts with it.\n\n\
             | function | why |\n| --- | --- |\n",
        );
        for (name, why) in parse_denied().flatten() {
            out.push_str(&format!("| `{name}` | {why} |\n"));
        }
        out.push_str(
            "\n## Row-safe functions (`fence: auto`)\n\n\
             Functions a condition may call and still run unfenced: each is total\n\
             and silent for the argument types it accepts, so the database may\n\
             evaluate it on rows a sandbox filters out without revealing them.\n\
             Any other function keeps the fence (see the README's \"Database speed\").\n\n\
             | function | dialects | why it cannot fail |\n| --- | --- | --- |\n",
        );
        out.push_str(&crate::rewrite::rowsafe::safe_functions_markdown());
        out
    }

    #[test]
    fn functions_doc() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/functions.md");
        let want = functions_markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/functions.md is stale: run `UPDATE_DOCS=1 cargo test --lib functions_doc`"
        );
    }
}
