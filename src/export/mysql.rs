//! Export of native enforcement for MySQL/MariaDB, which have no row level
//! security.
//!
//! The model:
//!
//! * a mapping table `<prefix>meta.principal_attributes(login, attribute,
//!   value)`, one row per value (so multi-valued attributes work), filled
//!   for the policy's declared users;
//! * per combination of groups of the declared users (usually one group),
//!   a database `<prefix><group>[__<group>…]` holding one `SQL SECURITY
//!   DEFINER` view per table the combination may read, named like the table
//!   (`<schema>_<table>` outside the default schema), `ALGORITHM =
//!   TEMPTABLE`: the view's rows are computed before the user's query sees
//!   them (the counterpart of PostgreSQL's `security_barrier`; a merged
//!   view could evaluate the user's predicates on rows it filters out, and
//!   MariaDB 10.11 merges some shapes wrongly). A view filters the
//!   base table by the mapping rows of the *connected* login:
//!   `USER()` (the account the client logged in as, host part cut off at
//!   the last `@`), not `CURRENT_USER()`, which inside a definer view is the
//!   definer;
//! * a role of the same name with `SELECT` on that database only (nothing
//!   on the base tables or the mapping table), and for each declared user a
//!   login `<prefix>u_<user>` created locked (`ACCOUNT LOCK`: give it a
//!   password and unlock it), granted that role as its default role;
//!   administrators get `SELECT` on the base databases instead.
//!
//! Basic sandboxes compare the bytes of text (`HEX(column) IN (SELECT
//! HEX(value) …)`: exact, case-, accent- and trailing-space-sensitive, as
//! the rewrite's added binary comparison), and numbers, dates and booleans after a checked
//! cast (a value that does not look like one matches nothing). Several
//! sandboxes of a `combine: union` table are ORed. Custom sandboxes are
//! views of the question with each `{{variable}}` replaced by a subquery on
//! the mapping table (a list inside `IN (…)`, a scalar elsewhere). Unlike
//! PostgreSQL, MySQL DDL is not transactional: the export is a script of
//! idempotent statements (`IF NOT EXISTS`, `CREATE OR REPLACE VIEW`) that
//! can be run again after the policy changes, but it does not remove views,
//! databases, roles or users an older policy had.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::ExportOptions;
use crate::access::{decide, Decision};
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::{
    BasicFilter, ColumnType, Database, Mask, MaskKind, Policy, SandboxKind, Table, ADMINISTRATORS,
    ALL_USERS, VAR_PREFIX,
};
use crate::principal::{Principal, Scalar};

/// The longest database, table or role name MySQL keeps.
const MAX_IDENT: usize = 64;

/// The mapping table, qualified.
pub fn mapping_table(opts: &ExportOptions) -> Result<String> {
    Ok(format!(
        "{}.`principal_attributes`",
        ident(&format!("{}meta", opts.role_prefix))?
    ))
}

/// The login of declared user `user`.
pub fn login(opts: &ExportOptions, user: &str) -> String {
    format!("{}u_{user}", opts.role_prefix)
}

/// The database holding the views (and the role) of a combination of
/// groups (`all_users` left out; sorted).
pub fn views_database(opts: &ExportOptions, groups: &[String]) -> String {
    let mut g: Vec<&str> = groups
        .iter()
        .map(String::as_str)
        .filter(|g| *g != ALL_USERS)
        .collect();
    g.sort_unstable();
    g.dedup();
    if g.is_empty() {
        g.push(ALL_USERS);
    }
    format!("{}{}", opts.role_prefix, g.join("__"))
}

/// A backquoted MySQL identifier; refuses names MySQL would refuse or
/// truncate.
fn ident(name: &str) -> Result<String> {
    if name.is_empty()
        || name.chars().count() > MAX_IDENT
        || name.contains(['\0', '/', '\\', '.'])
        || name.ends_with(' ')
    {
        return Err(Error::Unsupported {
            construct: format!(
                "MySQL name `{}` (empty, longer than {MAX_IDENT}, ending in a space, or holding NUL, /, \\ or .)",
                name.escape_debug()
            ),
        });
    }
    Ok(format!("`{}`", name.replace('`', "``")))
}

/// A string literal whose meaning does not depend on `sql_mode`
/// (`NO_BACKSLASH_ESCAPES`) or on quotes: the UTF-8 bytes in hex.
fn literal(s: &str) -> String {
    if s.is_empty() {
        return "_utf8mb4''".into();
    }
    let mut out = String::from("_utf8mb4 X'");
    for b in s.bytes() {
        let _ = write!(out, "{b:02X}");
    }
    out.push('\'');
    out
}

/// An account name `'name'@'%'`; only plain names.
fn account(name: &str) -> Result<String> {
    if name.is_empty()
        || name.len() > 80
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::Unsupported {
            construct: format!(
                "the MySQL login `{}` (letters, digits, _ and - only, at most 80)",
                name.escape_debug()
            ),
        });
    }
    Ok(format!("'{name}'@'%'"))
}

/// The connected login, without its host (cut at the last `@`).
const LOGIN: &str =
    "LEFT(USER(), CHAR_LENGTH(USER()) - CHAR_LENGTH(SUBSTRING_INDEX(USER(), '@', -1)) - 1)";

/// `value` (text from the mapping table) as `ty`, `NULL` when it does not
/// look like one.
fn typed(value: &str, ty: ColumnType) -> String {
    match ty {
        ColumnType::Integer => format!(
            "CASE WHEN {value} REGEXP '^-?[0-9]{{1,18}}$' THEN CAST({value} AS SIGNED) END"
        ),
        ColumnType::Decimal => format!(
            "CASE WHEN {value} REGEXP '^-?[0-9]{{1,30}}([.][0-9]{{1,30}})?$' THEN CAST({value} AS DECIMAL(65,30)) END"
        ),
        ColumnType::Date => format!("CAST({value} AS DATE)"),
        ColumnType::Timestamp => format!("CAST({value} AS DATETIME(6))"),
        ColumnType::Boolean => {
            format!("CASE {value} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END")
        }
        ColumnType::Text | ColumnType::Uuid => value.to_string(),
    }
}

/// The rows of the mapping table for the connected login and `attribute`.
fn rows_of(map: &str, attribute: &str) -> String {
    format!(
        "FROM {map} m WHERE BINARY m.`login` = BINARY {LOGIN} AND BINARY m.`attribute` = BINARY {}",
        literal(attribute)
    )
}

/// One basic sandbox (its filters ANDed) on the base table aliased `s`.
fn basic(map: &str, filters: &[BasicFilter]) -> Result<String> {
    let mut parts = Vec::new();
    for f in filters {
        let col = format!("s.{}", ident(&f.column)?);
        // An uncorrelated `IN`: MariaDB 10.11 rewrites a correlated
        // `EXISTS (… WHERE BINARY s.c = BINARY m.value)` into an `IN` that
        // compares under the column's collation again (`SALES` matched
        // `sales`); tests/mariadb_export.rs caught it.
        let (left, right) = match f.ty {
            ColumnType::Text | ColumnType::Uuid => {
                (format!("HEX({col})"), "HEX(m.`value`)".to_string())
            }
            ty => (col, typed("m.`value`", ty)),
        };
        parts.push(format!(
            "{left} IN (SELECT {right} {})",
            rows_of(map, &f.attribute)
        ));
    }
    Ok(parts.join(" AND "))
}

/// The question of a custom sandbox with its variables replaced by lookups
/// into the mapping table.
fn custom(policy: &Policy, map: &str, question: &str, sandbox: &SandboxKind) -> Result<String> {
    let SandboxKind::Custom { parameters, .. } = sandbox else {
        return Err(Error::Verification("view of a basic sandbox".into()));
    };
    let q = policy.question(question).ok_or_else(|| Error::Unknown {
        kind: "question",
        name: question.to_string(),
    })?;
    let text = q.query.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some((before, after)) = rest.split_once(VAR_PREFIX) {
        out.push_str(before);
        let (var, tail) = after.split_at(
            after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len()),
        );
        let p = parameters
            .iter()
            .find(|p| p.variable == var)
            .ok_or_else(|| Error::MissingVariable {
                question: question.to_string(),
                variable: var.to_string(),
            })?;
        let ty =
            p.ty.or_else(|| q.inferred.get(var).copied())
                .unwrap_or(ColumnType::Text);
        let lookup = format!(
            "SELECT {} {}",
            typed("m.`value`", ty),
            rows_of(map, &p.attribute)
        );
        // Inside `IN (…)` a list; `= {{v}}` becomes `IN (…)` (several
        // values, as the rewrite's `IN` list); elsewhere a scalar subquery.
        let trimmed = out.trim_end();
        let equals = trimmed.ends_with('=')
            && !["<=", ">=", "!=", "<=>"]
                .iter()
                .any(|op| trimmed.ends_with(op));
        if trimmed.ends_with('(') && tail.trim_start().starts_with(')') {
            out.push_str(&lookup);
        } else if equals {
            let keep = trimmed.len().saturating_sub(1);
            out.truncate(keep);
            let _ = write!(out, " IN ({lookup})");
        } else {
            let _ = write!(out, "({lookup})");
        }
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// The select list of a view with column masks: as the rewrite under
/// `combine: union`, a column every grant shows as stored, one every grant
/// masks the same way masked, else `CASE WHEN <grants showing it> THEN col
/// WHEN <grants with one mask> THEN mask … END` (grants in the
/// combination's group order).
fn masked_projection(t: &Table, units: &[(String, &[std::sync::Arc<Mask>])]) -> Result<String> {
    let mut items = Vec::new();
    for c in &t.columns {
        let col = ident(&c.name)?;
        let mut shown: Vec<&str> = Vec::new();
        let mut masks: Vec<(&Mask, Vec<&str>)> = Vec::new();
        for (cond, ms) in units {
            match ms.iter().find(|m| m.column == c.key) {
                None => shown.push(cond),
                Some(m) => match masks.iter_mut().find(|(x, _)| same_mask(x, m)) {
                    Some((_, conds)) => conds.push(cond),
                    None => masks.push((m, vec![cond])),
                },
            }
        }
        let expr = match (shown.is_empty(), masks.as_slice()) {
            (_, []) => {
                items.push(format!("s.{col}"));
                continue;
            }
            (true, [(m, _)]) => mask_sql(t, m)?,
            _ => {
                let mut case = String::from("CASE");
                if !shown.is_empty() {
                    let _ = write!(case, " WHEN {} THEN s.{col}", shown.join(" OR "));
                }
                for (m, conds) in &masks {
                    let _ = write!(
                        case,
                        " WHEN {} THEN {}",
                        conds.join(" OR "),
                        mask_sql(t, m)?
                    );
                }
                case.push_str(" END");
                case
            }
        };
        items.push(format!("{expr} AS {col}"));
    }
    Ok(items.join(", "))
}

/// Whether two masks give the same values.
fn same_mask(a: &Mask, b: &Mask) -> bool {
    std::ptr::eq(a, b)
        || (a.kind == b.kind
            && a.value == b.value
            && a.unless.as_ref().map(|u| &u.expr) == b.unless.as_ref().map(|u| &u.expr))
}

/// A built-in mask's SQL over the stored column, its constant or hash key
/// as a literal. The key is in the view's definition, which the group's
/// role (`SELECT` only, no `SHOW VIEW`) cannot read. `unless` and
/// `expression` masks are row rules, which this export does not
/// translate: refused, naming the column.
fn mask_sql(t: &Table, m: &Mask) -> Result<String> {
    use sqlparser::ast::{Expr, Ident, VisitMut, VisitorMut};
    if m.unless.is_some() || m.custom.is_some() {
        return Err(Error::Unsupported {
            construct: format!(
                "the mask of group `{}` on {}.{} in the MySQL export (`unless` and `expression` masks are row rules, which it does not translate; use the PostgreSQL export, or the rewrite)",
                m.group,
                t.qualified(),
                m.column
            ),
        });
    }
    let Some((value, ty)) = &m.value else {
        return Ok(format!("{}", m.expr));
    };
    let with = match (value, ty, &m.kind) {
        (_, _, MaskKind::Hash) => literal(&scalar_text(value)),
        (Scalar::Integer(i), _, _) => i.to_string(),
        (Scalar::Number(n), _, _)
            if !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '-') =>
        {
            format!("CAST({n} AS DECIMAL(65,30))")
        }
        (Scalar::Bool(b), _, _) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        (v, ColumnType::Date, _) => format!("CAST({} AS DATE)", literal(&scalar_text(v))),
        (v, ColumnType::Timestamp, _) => {
            format!("CAST({} AS DATETIME(6))", literal(&scalar_text(v)))
        }
        (v, _, _) => literal(&scalar_text(v)),
    };
    struct Put {
        with: String,
        count: usize,
    }
    impl VisitorMut for Put {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
            if matches!(e, Expr::Identifier(i) if i.value == crate::policy::mask::VALUE_MARKER) {
                // Printed as is: a hex literal or a checked number.
                *e = Expr::Identifier(Ident::new(self.with.clone()));
                self.count += 1;
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut e = m.expr.clone();
    let mut put = Put { with, count: 0 };
    let _ = e.visit(&mut put);
    if put.count != 1 {
        return Err(Error::Verification(format!(
            "the mask on {}.{} holds its value {} times",
            t.qualified(),
            m.column,
            put.count
        )));
    }
    Ok(e.to_string())
}

fn scalar_text(v: &Scalar) -> String {
    match v {
        Scalar::Text(s) => s.clone(),
        Scalar::Integer(i) => i.to_string(),
        Scalar::Number(n) => n.clone(),
        Scalar::Bool(b) => b.to_string(),
    }
}

fn view_name(db: &Database, t: &Table) -> String {
    if t.key.schema == db.default_schema {
        t.key.name.clone()
    } else {
        format!("{}_{}", t.key.schema, t.key.name)
    }
}

fn qualified(t: &Table) -> Result<String> {
    Ok(format!("{}.{}", ident(&t.key.schema)?, ident(&t.key.name)?))
}

/// Exports the MySQL/MariaDB DDL enforcing `policy` natively (see the
/// module documentation). Fails when a name cannot be used safely, when
/// `opts.database` names no MySQL database of the policy, or when the
/// policy has none; a declared user whose groups conflict on a table is
/// refused like the rewrite refuses it.
pub fn export_mysql(policy: &Policy, opts: &ExportOptions) -> Result<String> {
    super::check_prefix(&opts.role_prefix, "role prefix")?;
    let dbs: Vec<&Database> = match &opts.database {
        Some(name) => vec![policy.database(name).ok_or_else(|| Error::Unknown {
            kind: "database",
            name: name.clone(),
        })?],
        None => policy.databases.values().collect(),
    };
    let dbs: Vec<&Database> = dbs
        .into_iter()
        .filter(|d| d.dialect == Dialect::Mysql)
        .collect();
    if dbs.is_empty() {
        return Err(Error::Unsupported {
            construct: "export to MySQL of a policy without a MySQL database".into(),
        });
    }
    let map = mapping_table(opts)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- Native enforcement of policy {} for MySQL/MariaDB, generated by sqlsandbox.\n\
         -- Not transactional; every statement can run again.",
        super::comment(policy.file())
    );
    let _ = writeln!(
        out,
        "CREATE DATABASE IF NOT EXISTS {};\n\
         CREATE TABLE IF NOT EXISTS {map} (`login` VARCHAR(80) NOT NULL, `attribute` VARCHAR(64) NOT NULL, `value` TEXT NOT NULL, KEY (`login`, `attribute`)) CHARACTER SET utf8mb4;",
        ident(&format!("{}meta", opts.role_prefix))?
    );

    // Declared users: their group combination, logins and attributes.
    let mut combos: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut users: Vec<(String, Principal, String)> = Vec::new();
    let admin = format!("{}{ADMINISTRATORS}", opts.role_prefix);
    for user in policy.user_names() {
        let p = Principal::from_user(policy, user)?;
        let role = if p.is_admin() {
            admin.clone()
        } else {
            let name = views_database(opts, p.groups());
            let mut groups = p.groups().to_vec();
            groups.sort_unstable();
            if let Some(other) = combos.insert(name.clone(), groups.clone()) {
                if other != groups {
                    return Err(Error::Unsupported {
                        construct: format!(
                            "two group combinations ([{}] and [{}]) sharing the MySQL database name `{name}`",
                            other.join(", "),
                            groups.join(", ")
                        ),
                    });
                }
            }
            name
        };
        users.push((login(opts, user), p, role));
    }

    out.push_str(
        "\n-- Views per group combination (SQL SECURITY DEFINER; rows of the connected login).\n",
    );
    for (name, groups) in &combos {
        let vdb = ident(name)?;
        let _ = writeln!(
            out,
            "CREATE DATABASE IF NOT EXISTS {vdb} CHARACTER SET utf8mb4;"
        );
        let probe = Principal::new(
            policy,
            name,
            groups.iter().map(String::as_str),
            Vec::<(String, crate::principal::AttributeValue)>::new(),
        )?;
        for db in &dbs {
            for t in db.tables() {
                let body = match decide(policy, &probe, db, t) {
                    // Refused by the rewrite too: no view.
                    Err(Error::AccessDenied { .. } | Error::SandboxConflict { .. }) => continue,
                    Err(e) => return Err(e),
                    Ok(Decision::Unrestricted { .. }) => {
                        format!("SELECT * FROM {}", qualified(t)?)
                    }
                    Ok(Decision::Sandboxed(sandboxes)) => {
                        let mut basics = Vec::new();
                        let mut view = None;
                        // Per permissive grant: its condition and masks.
                        let mut units: Vec<(String, &[std::sync::Arc<Mask>])> = Vec::new();
                        for s in &sandboxes {
                            match &s.kind {
                                SandboxKind::Basic(filters) => {
                                    let cond = format!("({})", basic(&map, filters)?);
                                    units.push((cond.clone(), &s.masks));
                                    basics.push(cond)
                                }
                                // Masks alone: every row, masked.
                                SandboxKind::All if !s.masks.is_empty() => {
                                    units.push(("(1 = 1)".to_string(), &s.masks));
                                    basics.push("(1 = 1)".to_string())
                                }
                                SandboxKind::Custom { question, .. } => {
                                    view = Some(custom(policy, &map, question, &s.kind)?)
                                }
                                // `on_denied: empty`: no rows.
                                SandboxKind::Empty => basics.push("(1 = 0)".to_string()),
                                SandboxKind::Rules(_) | SandboxKind::All => {
                                    return Err(Error::Unsupported {
                                        construct: format!(
                                            "row rules on {} in the MySQL export (use the PostgreSQL export, or the rewrite)",
                                            t.qualified()
                                        ),
                                    })
                                }
                            }
                            if !s.restrictive.is_empty() {
                                return Err(Error::Unsupported {
                                    construct: format!(
                                        "restrictive rules on {} in the MySQL export",
                                        t.qualified()
                                    ),
                                });
                            }
                        }
                        let masked = units.iter().any(|(_, m)| !m.is_empty());
                        match view {
                            Some(v) => v,
                            None if masked => format!(
                                "SELECT {} FROM {} s WHERE {}",
                                masked_projection(t, &units)?,
                                qualified(t)?,
                                basics.join(" OR ")
                            ),
                            None => format!(
                                "SELECT s.* FROM {} s WHERE {}",
                                qualified(t)?,
                                basics.join(" OR ")
                            ),
                        }
                    }
                };
                let _ = writeln!(
                    out,
                    "CREATE OR REPLACE ALGORITHM = TEMPTABLE DEFINER = CURRENT_USER SQL SECURITY DEFINER VIEW {vdb}.{} AS {body};",
                    ident(&view_name(db, t))?
                );
            }
        }
        let _ = writeln!(out, "CREATE ROLE IF NOT EXISTS {vdb};");
        let _ = writeln!(out, "GRANT SELECT ON {vdb}.* TO {vdb};");
    }
    let admin_role = ident(&admin)?;
    let _ = writeln!(out, "CREATE ROLE IF NOT EXISTS {admin_role};");
    let schemas: BTreeSet<&str> = dbs
        .iter()
        .flat_map(|d| d.tables())
        .map(|t| t.key.schema.as_str())
        .collect();
    for s in schemas {
        let _ = writeln!(out, "GRANT SELECT ON {}.* TO {admin_role};", ident(s)?);
    }

    out.push_str("\n-- Logins of the declared users (locked: set a password and unlock them) and their attributes.\n");
    for (login, p, role) in &users {
        let acc = account(login)?;
        let _ = writeln!(out, "CREATE USER IF NOT EXISTS {acc} ACCOUNT LOCK;");
        let _ = writeln!(out, "GRANT {} TO {acc};", ident(role)?);
        let _ = writeln!(out, "SET DEFAULT ROLE {} FOR {acc};", ident(role)?);
        let _ = writeln!(
            out,
            "DELETE FROM {map} WHERE BINARY `login` = BINARY {};",
            literal(login)
        );
        for (name, value) in p.attributes() {
            for v in value.values() {
                let text = match v {
                    Scalar::Text(s) => s.clone(),
                    Scalar::Integer(i) => i.to_string(),
                    Scalar::Number(n) => n.clone(),
                    Scalar::Bool(b) => b.to_string(),
                };
                let _ = writeln!(
                    out,
                    "INSERT INTO {map} (`login`, `attribute`, `value`) VALUES ({}, {}, {});",
                    literal(login),
                    literal(name),
                    literal(&text)
                );
            }
        }
    }
    Ok(out)
}
