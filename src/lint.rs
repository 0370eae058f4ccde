//! `check`: lints over a policy that loaded, each with a code, a severity
//! and the file position of the key it is about.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::access::{self, collection_level, group_grant};
use crate::bind::{coerce, Target};
use crate::policy::{
    locate::locate, CollectionLevel, DbGrant, Policy, SandboxKind, TableGrant, ALL_USERS,
    ROOT_COLLECTION,
};
use crate::principal::Principal;

/// How bad a finding is. Errors make `check` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Probably a mistake.
    Warning,
    /// Certainly a problem for someone.
    Error,
}

/// One lint finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable code, e.g. `L001`.
    pub code: &'static str,
    /// Severity.
    pub severity: Severity,
    /// 1-based line in the policy file, when found.
    pub line: Option<usize>,
    /// Dotted key path it is about.
    pub key: String,
    /// What and why.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{sev}[{}]", self.code)?;
        if let Some(l) = self.line {
            write!(f, " line {l}")?;
        }
        write!(f, " ({}): {}", self.key, self.message)
    }
}

struct Lints<'a> {
    src: &'a str,
    out: Vec<Finding>,
}

impl Lints<'_> {
    fn push(&mut self, code: &'static str, severity: Severity, path: &[&str], message: String) {
        let (line, _) = locate(self.src, path);
        self.out.push(Finding {
            code,
            severity,
            line,
            key: path.join("."),
            message,
        });
    }
}

/// Principals the policy itself names: its users and API keys.
fn known_principals(policy: &Policy) -> Vec<(String, Principal)> {
    let mut v: Vec<(String, Principal)> = policy
        .user_names()
        .into_iter()
        .filter_map(|u| {
            Principal::from_user(policy, u)
                .ok()
                .map(|p| (format!("user `{u}`"), p))
        })
        .collect();
    for k in &policy.api_keys {
        if let Ok(p) = Principal::new(policy, &k.name, [k.group.as_str()], k.attributes.clone()) {
            v.push((format!("API key `{}`", k.name), p));
        }
    }
    v
}

/// Runs every lint. `src` is the policy text (for line numbers).
pub fn check(policy: &Policy, src: &str) -> Vec<Finding> {
    let mut l = Lints {
        src,
        out: Vec::new(),
    };
    let principals = known_principals(policy);

    for db in policy.databases.values() {
        for t in db.tables() {
            let table = t.qualified();
            let mut sandboxing: Vec<(&str, std::sync::Arc<crate::policy::Sandbox>)> = Vec::new();
            let mut unrestricted: Vec<&str> = Vec::new();
            for g in policy.groups.values() {
                match group_grant(g.data.get(&db.name), t) {
                    TableGrant::Sandbox(s) => sandboxing.push((g.name.as_str(), s)),
                    TableGrant::Unrestricted => unrestricted.push(g.name.as_str()),
                    TableGrant::NoAccess => {}
                }
            }
            // L001: conflicting sandboxes.
            for (i, (ga, sa)) in sandboxing.iter().enumerate() {
                for (gb, sb) in sandboxing.iter().skip(i + 1) {
                    if sa.kind == sb.kind && sa.masks == sb.masks {
                        continue;
                    }
                    let unionable = |k: &SandboxKind| match k {
                        SandboxKind::Basic(_) | SandboxKind::Rules(_) | SandboxKind::All => true,
                        SandboxKind::Custom { question, .. } => {
                            policy.questions.get(question).is_some_and(|q| {
                                crate::policy::question::filter_of(&q.query, t, db.dialect)
                                    .is_some()
                            })
                        }
                        SandboxKind::Empty => false,
                    };
                    let combinable = t.combine == crate::policy::Combine::Union
                        && unionable(&sa.kind)
                        && unionable(&sb.kind);
                    // Restrictive rules alone grant nothing to conflict with.
                    let grants_nothing =
                        |k: &SandboxKind| matches!(k, SandboxKind::Rules(r) if r.is_empty());
                    if combinable || grants_nothing(&sa.kind) || grants_nothing(&sb.kind) {
                        continue;
                    }
                    let both: Vec<&str> = principals
                        .iter()
                        .filter(|(_, p)| {
                            p.groups().iter().any(|g| g == ga)
                                && p.groups().iter().any(|g| g == gb)
                                && !p.is_admin()
                        })
                        .map(|(n, _)| n.as_str())
                        .collect();
                    let path = ["groups", gb, "data", db.name.as_str()];
                    if both.is_empty() {
                        l.push("L001", Severity::Warning, &path, format!(
                            "groups `{ga}` and `{gb}` sandbox {table} differently; a principal in both would be refused (declare `combine: union` on the table if either sandbox should do)"
                        ));
                    } else {
                        l.push("L001", Severity::Error, &path, format!(
                            "{} {} in groups `{ga}` and `{gb}`, which sandbox {table} differently: every query on it will be refused",
                            both.join(", "), if both.len() > 1 { "are" } else { "is" }
                        ));
                    }
                }
            }
            // L012–L014: row rules that can never hold, deny everyone, or
            // are moot beside an always-true rule of the same group.
            for (g, sb) in &sandboxing {
                let path = ["groups", *g, "data", db.name.as_str()];
                let permissive: &[std::sync::Arc<crate::policy::Rule>] = match &sb.kind {
                    SandboxKind::Rules(r) => r,
                    _ => &[],
                };
                let always = permissive
                    .iter()
                    .find(|r| const_truth(&r.expr) == Some(Some(true)));
                for r in permissive {
                    match const_truth(&r.expr) {
                        Some(Some(true)) => {}
                        Some(_) => l.push("L012", Severity::Error, &path, format!(
                            "rule `{}` of `{g}` on {table} can never be true (`{}`): it grants no rows",
                            r.name, r.filter.trim()
                        )),
                        None if never_true(&r.expr, t) => l.push("L012", Severity::Error, &path, format!(
                            "rule `{}` of `{g}` on {table} can never be true (`{}` contradicts itself on a column): it grants no rows",
                            r.name, r.filter.trim()
                        )),
                        None => {
                            if let Some(a) = always {
                                l.push("L014", Severity::Warning, &path, format!(
                                    "rule `{}` of `{g}` on {table} is unused: rule `{}` of the same group is always true{}",
                                    r.name,
                                    a.name,
                                    if a.columns.is_some() { " (it may still reveal more columns)" } else { "" }
                                ));
                            }
                        }
                    }
                }
                for r in &sb.restrictive {
                    if matches!(const_truth(&r.expr), Some(Some(false)) | Some(None))
                        || never_true(&r.expr, t)
                    {
                        l.push("L013", Severity::Error, &path, format!(
                            "restrictive rule `{}` of `{g}` on {table} is never true (`{}`): it denies every row of the table to every member of `{g}`, whatever their other groups grant",
                            r.name, r.filter.trim()
                        ));
                    }
                }
            }
            // L016: a hash mask whose key is written in the policy file.
            for (g, sb) in &sandboxing {
                for m in sb.masks.iter().filter(|m| m.key_in_file) {
                    l.push("L016", Severity::Warning, &["groups", *g, "data", db.name.as_str()], format!(
                        "the hash mask of `{g}` on {table}.{} has its key in the policy file: whoever reads the file can hash guesses and match them (use `key_env`)",
                        m.column
                    ));
                }
            }
            // L015: an attribute declared with another type than the column
            // a sandbox compares it with.
            for (g, sb) in &sandboxing {
                let path = ["groups", *g, "data", db.name.as_str()];
                for (attr, ty, what) in sb.attributes(&table) {
                    let (Some(declared), Some(ty)) = (policy.attribute_types.get(&attr), ty) else {
                        continue;
                    };
                    if !declared.ty.compatible(ty) {
                        l.push("L015", Severity::Error, &path, format!(
                            "attribute `{attr}` is declared {declared}, but {what} binds it as {ty}: every value of the declared type fails there"
                        ));
                    }
                }
            }
            // L002: a sandbox made pointless by an unrestricted grant.
            for (gs, _) in sandboxing.iter().filter(|(_, s)| s.restrictive.is_empty()) {
                for gu in &unrestricted {
                    let everyone = *gu == ALL_USERS;
                    let both: Vec<&str> = principals
                        .iter()
                        .filter(|(_, p)| {
                            p.groups().iter().any(|g| g == gs) && p.groups().iter().any(|g| g == gu)
                        })
                        .map(|(n, _)| n.as_str())
                        .collect();
                    if everyone || !both.is_empty() {
                        let who = if everyone {
                            "every principal".to_string()
                        } else {
                            both.join(", ")
                        };
                        let what = if sandboxing
                            .iter()
                            .any(|(g, s)| g == gs && !s.masks.is_empty())
                        {
                            "the sandbox and column masks"
                        } else {
                            "the sandbox"
                        };
                        l.push("L002", Severity::Warning, &["groups", gs, "data", db.name.as_str()], format!(
                            "{what} of `{gs}` on {table} {} pointless for {who}: group `{gu}` grants the table unrestricted, and the most permissive grant wins",
                            if what == "the sandbox" { "is" } else { "are" }
                        ));
                    }
                }
            }
            // L009/L010: declared principals whose attributes cannot serve a sandbox.
            for (name, p) in &principals {
                if p.is_admin() {
                    continue;
                }
                if let Ok(access::Decision::Sandboxed(sbs)) = access::decide(policy, p, db, t) {
                    for sb in sbs {
                        let needs = sb.attributes(&table.to_string());
                        for (attr, ty, _) in needs {
                            let attr = attr.as_str();
                            match p.attribute(attr) {
                                None => l.push("L009", Severity::Warning, &user_path(name), format!(
                                    "{name} lacks attribute `{attr}`, which the sandbox of `{}` on {table} needs: their queries on it will be refused",
                                    sb.group
                                )),
                                Some(v) => {
                                    let what = || format!("the sandbox on {table}");
                                    let target = Target { attribute: attr, what: &what };
                                    if let Some(e) = v.values().into_iter().find_map(|s| coerce(s, ty, &target).err()) {
                                        l.push("L010", Severity::Error, &user_path(name), format!("{name}: {e}"));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // L003: sandbox questions stored where a sandboxed group can look.
    let mut sandbox_questions: BTreeSet<&str> = BTreeSet::new();
    for g in policy.groups.values() {
        for db in policy.databases.values() {
            for t in db.tables() {
                if let TableGrant::Sandbox(sb) = group_grant(g.data.get(&db.name), t) {
                    if let SandboxKind::Custom { question, .. } = &sb.kind {
                        if let Some((k, _)) = policy.questions.get_key_value(question) {
                            sandbox_questions.insert(k.as_str());
                        }
                    }
                }
            }
        }
    }
    for qname in sandbox_questions {
        let Some(q) = policy.questions.get(qname) else {
            continue;
        };
        let c = &q.collection;
        let Some(db) = policy.databases.get(&q.database) else {
            continue;
        };
        for g in policy.groups.values() {
            let sandboxed = db
                .tables()
                .into_iter()
                .any(|t| matches!(group_grant(g.data.get(&db.name), t), TableGrant::Sandbox(_)));
            if !sandboxed {
                continue;
            }
            if let Ok(p) =
                Principal::new(policy, "lint", [g.name.as_str()], Vec::<(String, _)>::new())
            {
                if collection_level(policy, &p, c) >= CollectionLevel::View {
                    l.push("L003", Severity::Warning, &["questions", qname, "collection"], format!(
                        "sandbox question `{qname}` is in collection `{c}`, which sandboxed group `{}` can view: they can read the sandbox's SQL (and change it if they curate)",
                        g.name
                    ));
                }
            }
        }
    }

    // L011: declared principals that routing or impersonation would refuse.
    for db in policy.databases.values() {
        if db.routing.is_none() && db.impersonation.is_none() {
            continue;
        }
        for (name, p) in &principals {
            // Only principals that can use the database at all.
            let uses = p
                .groups()
                .iter()
                .filter_map(|g| policy.groups.get(g))
                .any(|g| {
                    g.native(&db.name)
                        || g.data
                            .get(&db.name)
                            .is_some_and(|d| !matches!(d, DbGrant::NoAccess | DbGrant::Blocked))
                });
            if !uses {
                continue;
            }
            if let Err(e) = crate::routing::route(policy, p, db) {
                l.push(
                    "L011",
                    Severity::Warning,
                    &user_path(name),
                    format!("{name}: {e}"),
                );
            }
        }
    }

    // L004: all_users granting data access.
    if let Some(all) = policy.groups.get(ALL_USERS) {
        let mut dbs: Vec<&String> = all
            .data
            .iter()
            .filter(|(_, g)| !matches!(g, DbGrant::NoAccess | DbGrant::Blocked))
            .map(|(d, _)| d)
            .collect();
        dbs.sort();
        for d in dbs {
            l.push("L004", Severity::Warning, &["groups", ALL_USERS, "data", d.as_str()], format!(
                "`all_users` grants data access to database `{d}`: every principal gets it, whatever their other groups say (deny by default: grant to specific groups instead)"
            ));
        }
    }

    // L005: native SQL on a database where other groups are sandboxed.
    for db in policy.databases.values() {
        let sandboxed: BTreeSet<&str> = policy
            .groups
            .values()
            .filter(|g| {
                db.tables()
                    .into_iter()
                    .any(|t| matches!(group_grant(g.data.get(&db.name), t), TableGrant::Sandbox(_)))
            })
            .map(|g| g.name.as_str())
            .collect();
        for g in policy.groups.values() {
            if g.native(&db.name) && !sandboxed.is_empty() && !sandboxed.contains(g.name.as_str()) {
                l.push("L005", Severity::Info, &["groups", &g.name, "native", &db.name], format!(
                    "group `{}` may send native SQL to `{}`, where groups [{}] are sandboxed: sqlsandbox sandboxes that SQL, but only when every query goes through it",
                    g.name, db.name, sandboxed.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }

    // L006/L007/L008: unused questions, groups and attributes.
    let mut used_questions = BTreeSet::new();
    let mut used_attrs = BTreeSet::new();
    for g in policy.groups.values() {
        for db in policy.databases.values() {
            for t in db.tables() {
                if let TableGrant::Sandbox(sb) = group_grant(g.data.get(&db.name), t) {
                    if let SandboxKind::Custom { question, .. } = &sb.kind {
                        used_questions.insert(question.clone());
                    }
                    used_attrs.extend(sb.attributes("").into_iter().map(|(a, _, _)| a));
                }
            }
        }
    }
    for db in policy.databases.values() {
        used_attrs.extend(db.routing.iter().map(|r| r.attribute.clone()));
        used_attrs.extend(db.impersonation.iter().map(|i| i.attribute.clone()));
    }
    for (name, q) in &policy.questions {
        if !used_questions.contains(name)
            && q.collection == ROOT_COLLECTION
            && !policy
                .groups
                .values()
                .any(|g| g.collection_level(ROOT_COLLECTION) > Some(CollectionLevel::None))
        {
            l.push("L006", Severity::Info, &["questions", name], format!(
                "question `{name}` is used by no sandbox and is in the root collection, which no group may view: nobody but administrators can run it"
            ));
        }
    }
    let mut member_groups: BTreeSet<&str> = BTreeSet::new();
    for (_, p) in &principals {
        member_groups.extend(p.groups().iter().map(String::as_str));
    }
    for g in policy.groups.keys() {
        if g != ALL_USERS
            && g != crate::policy::ADMINISTRATORS
            && !member_groups.contains(g.as_str())
        {
            l.push(
                "L007",
                Severity::Info,
                &["groups", g],
                format!(
                "group `{g}` has no declared user or API key (fine if principals come from claims)"
            ),
            );
        }
    }
    let mut user_attrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (n, p) in &principals {
        for a in p.attributes().keys() {
            user_attrs.entry(a.clone()).or_default().push(n.clone());
        }
    }
    if let Some(declared) = &policy.declared_attributes {
        for a in declared {
            if !used_attrs.contains(a) {
                l.push(
                    "L008",
                    Severity::Info,
                    &["attributes"],
                    format!("declared attribute `{a}` is used by no sandbox"),
                );
            }
        }
    }
    for (a, who) in &user_attrs {
        // Every entry holds the principal that created it.
        let Some(first) = who.first() else {
            continue;
        };
        if !used_attrs.contains(a) {
            l.push(
                "L008",
                Severity::Info,
                &user_path(first),
                format!("attribute `{a}` ({}) is used by no sandbox", who.join(", ")),
            );
        }
    }
    l.out
        .sort_by(|a, b| (a.line, a.code, &a.message).cmp(&(b.line, b.code, &b.message)));
    l.out
}

/// Key path of a principal named `user \`x\`` or `API key \`x\``.
/// The value of a condition made of constants only: `Some(Some(b))` true
/// or false, `Some(None)` NULL, `None` when it reads a column, an
/// attribute, a subquery or anything this does not fold.
fn const_truth(e: &sqlparser::ast::Expr) -> Option<Option<bool>> {
    use sqlparser::ast::{BinaryOperator as B, Expr, UnaryOperator, Value};
    fn lit(e: &Expr) -> Option<Option<String>> {
        match e {
            Expr::Nested(i) => lit(i),
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => Some(Some(n.parse::<f64>().ok()?.to_string())),
                Value::SingleQuotedString(s) => Some(Some(format!("'{s}"))),
                Value::Null => Some(None),
                _ => None,
            },
            _ => None,
        }
    }
    match e {
        Expr::Nested(i) => const_truth(i),
        Expr::Value(v) => match &v.value {
            Value::Boolean(b) => Some(Some(*b)),
            Value::Null => Some(None),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => const_truth(expr).map(|v| v.map(|b| !b)),
        Expr::BinaryOp { left, op, right } => match op {
            B::And => match (const_truth(left), const_truth(right)) {
                (Some(Some(false)), _) | (_, Some(Some(false))) => Some(Some(false)),
                (Some(Some(true)), Some(r)) => Some(r),
                (Some(l), Some(Some(true))) => Some(l),
                (Some(None), Some(None)) => Some(None),
                _ => None,
            },
            B::Or => match (const_truth(left), const_truth(right)) {
                (Some(Some(true)), _) | (_, Some(Some(true))) => Some(Some(true)),
                (Some(Some(false)), Some(r)) => Some(r),
                (Some(l), Some(Some(false))) => Some(l),
                (Some(None), Some(None)) => Some(None),
                _ => None,
            },
            B::Eq | B::NotEq => {
                let (l, r) = (lit(left)?, lit(right)?);
                match (l, r) {
                    (Some(l), Some(r)) => Some(Some((l == r) == (*op == B::Eq))),
                    _ => Some(None),
                }
            }
            _ => None,
        },
        Expr::IsNull(i) => lit(i).map(|v| Some(v.is_none())),
        Expr::IsNotNull(i) => lit(i).map(|v| Some(v.is_some())),
        _ => None,
    }
}

/// Whether a condition is never true because its top-level AND terms
/// contradict each other on one column of `table` (`x > 5 AND x < 3`,
/// `x IS NULL AND x = 1`, `x IN (1, 2) AND x = 3`, `x BETWEEN 5 AND 1`),
/// or each side of an OR is so. Conservative: a term it does not
/// understand constrains nothing; values are compared only as numbers,
/// and only on `integer` and `decimal` columns (text compares by
/// collation, and SQLite compares a text column with a number as text);
/// any comparison with a non-NULL constant means the column is not NULL.
fn never_true(e: &sqlparser::ast::Expr, table: &crate::policy::Table) -> bool {
    use sqlparser::ast::{BinaryOperator as B, Expr};
    match e {
        Expr::Nested(i) => never_true(i, table),
        Expr::BinaryOp {
            left,
            op: B::Or,
            right,
        } => never_true(left, table) && never_true(right, table),
        _ => {
            let mut terms = Vec::new();
            conjuncts(e, &mut terms);
            if terms
                .iter()
                .any(|t| matches!(const_truth(t), Some(Some(false)) | Some(None)))
            {
                return true;
            }
            // OR terms inside the AND: never true when each side is.
            if terms.iter().any(|t| {
                matches!(strip(t), Expr::BinaryOp { op: B::Or, .. }) && never_true(t, table)
            }) {
                return true;
            }
            let mut per: BTreeMap<String, Range> = BTreeMap::new();
            for t in terms {
                if let Some((col, cs)) = constraint(t, table) {
                    let range = per.entry(col).or_default();
                    for c in cs {
                        range.add(c);
                    }
                }
            }
            per.values().any(Range::empty)
        }
    }
}

fn strip(e: &sqlparser::ast::Expr) -> &sqlparser::ast::Expr {
    match e {
        sqlparser::ast::Expr::Nested(i) => strip(i),
        _ => e,
    }
}

/// The terms of a conjunction, through parentheses.
fn conjuncts<'e>(e: &'e sqlparser::ast::Expr, out: &mut Vec<&'e sqlparser::ast::Expr>) {
    use sqlparser::ast::{BinaryOperator as B, Expr};
    match strip(e) {
        Expr::BinaryOp {
            left,
            op: B::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        other => out.push(other),
    }
}

/// What one term says about one column.
enum Constraint {
    Null,
    NotNull,
    /// Not NULL and, when the column is numeric, compared so with a number.
    Cmp(Option<(Cmp, f64)>),
    /// Not NULL and, when numeric, one of these numbers.
    OneOf(Option<Vec<f64>>),
}

#[derive(Clone, Copy)]
enum Cmp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// The constraints on one column, intersected.
#[derive(Default)]
struct Range {
    null: bool,
    not_null: bool,
    /// Lower and upper bounds (value, inclusive).
    lo: Option<(f64, bool)>,
    hi: Option<(f64, bool)>,
    /// The values allowed, when some term lists them.
    only: Option<Vec<f64>>,
    not: Vec<f64>,
}

impl Range {
    fn add(&mut self, c: Constraint) {
        let (cmp, v) = match c {
            Constraint::Null => {
                self.null = true;
                return;
            }
            Constraint::NotNull | Constraint::Cmp(None) | Constraint::OneOf(None) => {
                self.not_null = true;
                return;
            }
            Constraint::OneOf(Some(vs)) => {
                self.not_null = true;
                self.only = Some(match self.only.take() {
                    None => vs,
                    Some(old) => old.into_iter().filter(|x| vs.contains(x)).collect(),
                });
                return;
            }
            Constraint::Cmp(Some(cv)) => cv,
        };
        self.not_null = true;
        match cmp {
            Cmp::Eq => self.add(Constraint::OneOf(Some(vec![v]))),
            Cmp::NotEq => self.not.push(v),
            Cmp::Gt | Cmp::GtEq => {
                let inclusive = matches!(cmp, Cmp::GtEq);
                let tighter = match self.lo {
                    None => true,
                    Some((old, inc)) => v > old || (v == old && inc && !inclusive),
                };
                if tighter {
                    self.lo = Some((v, inclusive));
                }
            }
            Cmp::Lt | Cmp::LtEq => {
                let inclusive = matches!(cmp, Cmp::LtEq);
                let tighter = match self.hi {
                    None => true,
                    Some((old, inc)) => v < old || (v == old && inc && !inclusive),
                };
                if tighter {
                    self.hi = Some((v, inclusive));
                }
            }
        }
    }

    fn admits(&self, v: f64) -> bool {
        let above = self.lo.is_none_or(|(lo, inc)| v > lo || (inc && v == lo));
        let below = self.hi.is_none_or(|(hi, inc)| v < hi || (inc && v == hi));
        above && below && !self.not.contains(&v)
    }

    fn empty(&self) -> bool {
        if self.null && self.not_null {
            return true;
        }
        if let (Some((lo, li)), Some((hi, hi_inc))) = (self.lo, self.hi) {
            if lo > hi || (lo == hi && !(li && hi_inc)) {
                return true;
            }
        }
        match &self.only {
            Some(vs) => !vs.iter().any(|v| self.admits(*v)),
            None => false,
        }
    }
}

/// The column a term constrains and how (see `never_true`).
fn constraint(
    e: &sqlparser::ast::Expr,
    table: &crate::policy::Table,
) -> Option<(String, Vec<Constraint>)> {
    use sqlparser::ast::{BinaryOperator as B, Expr, UnaryOperator, Value};
    // The column (outside subqueries a rule reads only its own table), and
    // whether it is declared numeric.
    let column = |e: &Expr| -> Option<(String, bool)> {
        let ident = match strip(e) {
            Expr::Identifier(i) => i,
            Expr::CompoundIdentifier(parts) => parts.last()?,
            _ => return None,
        };
        let key = if ident.quote_style.is_some() {
            ident.value.clone()
        } else {
            ident.value.to_lowercase()
        };
        let numeric = table
            .columns
            .iter()
            .filter(|c| c.name.eq_ignore_ascii_case(&ident.value))
            .all(|c| {
                matches!(
                    c.ty,
                    crate::policy::ColumnType::Integer | crate::policy::ColumnType::Decimal
                )
            })
            && table
                .columns
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&ident.value));
        Some((key, numeric))
    };
    // A constant: `Some(Some(n))` a number, `Some(None)` another non-NULL
    // constant; `None` NULL or not a constant.
    fn number(e: &Expr) -> Option<Option<f64>> {
        match strip(e) {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => Some(n.parse::<f64>().ok().filter(|f| f.is_finite())),
                Value::SingleQuotedString(_) | Value::Boolean(_) => Some(None),
                _ => None,
            },
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => match strip(expr) {
                Expr::Value(v) => match &v.value {
                    Value::Number(n, _) => {
                        Some(n.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| -f))
                    }
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        }
    }
    match e {
        Expr::IsNull(i) => column(i).map(|(c, _)| (c, vec![Constraint::Null])),
        Expr::IsNotNull(i) => column(i).map(|(c, _)| (c, vec![Constraint::NotNull])),
        Expr::BinaryOp { left, op, right } => {
            let cmp = match op {
                B::Eq => Cmp::Eq,
                B::NotEq => Cmp::NotEq,
                B::Lt => Cmp::Lt,
                B::LtEq => Cmp::LtEq,
                B::Gt => Cmp::Gt,
                B::GtEq => Cmp::GtEq,
                _ => return None,
            };
            let flip = |c: Cmp| match c {
                Cmp::Lt => Cmp::Gt,
                Cmp::LtEq => Cmp::GtEq,
                Cmp::Gt => Cmp::Lt,
                Cmp::GtEq => Cmp::LtEq,
                other => other,
            };
            let ((col, numeric), value, cmp) = match (column(left), column(right)) {
                (Some(c), None) => (c, number(right)?, cmp),
                (None, Some(c)) => (c, number(left)?, flip(cmp)),
                _ => return None,
            };
            let known = value.filter(|_| numeric).map(|v| (cmp, v));
            Some((col, vec![Constraint::Cmp(known)]))
        }
        Expr::In {
            expr,
            target: sqlparser::ast::InTarget::List(list),
            negated: false,
            ..
        } => {
            let (col, numeric) = column(expr)?;
            // NULL in the list never makes it true; anything else unknown
            // leaves the values open.
            let mut values = Vec::new();
            let mut open = !numeric;
            for item in list {
                match strip(item) {
                    Expr::Value(v) if matches!(v.value, Value::Null) => {}
                    other => match number(other) {
                        Some(Some(n)) => values.push(n),
                        _ => open = true,
                    },
                }
            }
            let all_constants = list.iter().all(|i| {
                number(i).is_some()
                    || matches!(strip(i), Expr::Value(v) if matches!(v.value, Value::Null))
            });
            if !all_constants {
                // `x IN ({{list}})`: an empty list is never true either,
                // but an attribute may hold NULL-free values of any kind.
                return None;
            }
            Some((col, vec![Constraint::OneOf((!open).then_some(values))]))
        }
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => {
            let (col, numeric) = column(expr)?;
            match (number(low)?, number(high)?) {
                (Some(lo), Some(hi)) if numeric => Some((
                    col,
                    vec![
                        Constraint::Cmp(Some((Cmp::GtEq, lo))),
                        Constraint::Cmp(Some((Cmp::LtEq, hi))),
                    ],
                )),
                _ => Some((col, vec![Constraint::NotNull])),
            }
        }
        _ => None,
    }
}

fn user_path(name: &str) -> Vec<&str> {
    let inner = name.split('`').nth(1).unwrap_or(name);
    if name.starts_with("API key") {
        vec!["api_keys", inner]
    } else {
        vec!["users", inner]
    }
}
