//! `explain`: what a principal may read, and why — per database and table,
//! the deciding group, the sandbox and the values it binds.

use std::fmt::Write;

use serde::Serialize;

use crate::access::{self, group_grant, Decision};
use crate::bind::{coerce, Target};
use crate::error::Error;
use crate::policy::{Policy, TableGrant, ADMINISTRATORS};
use crate::principal::{AttributeValue, Principal};

/// The decision on one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableExplanation {
    /// `schema.table`.
    pub table: String,
    /// `unrestricted`, `sandboxed`, `denied` or `error`.
    pub decision: String,
    /// Groups that decided it (the granting group, or the sandboxing groups).
    pub groups: Vec<String>,
    /// The sandbox, described.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Attribute values the sandbox binds for this principal.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bound: Vec<(String, AttributeValue)>,
    /// Why, in a sentence.
    pub reason: String,
}

/// The decisions on one database.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseExplanation {
    /// Database name.
    pub database: String,
    /// Whether the principal may send native SQL there.
    pub native: bool,
    /// Per table, sorted by name.
    pub tables: Vec<TableExplanation>,
}

/// Everything `explain` says about one principal.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The principal.
    pub principal: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// Whether it bypasses data permissions.
    pub admin: bool,
    /// Per database.
    pub databases: Vec<DatabaseExplanation>,
}

fn explain_table(
    policy: &Policy,
    p: &Principal,
    db: &crate::policy::Database,
    t: &crate::policy::Table,
) -> TableExplanation {
    let table = t.qualified();
    match access::decide(policy, p, db, t) {
        Ok(Decision::Unrestricted { group }) => TableExplanation {
            table,
            decision: "unrestricted".into(),
            groups: vec![group.clone()],
            sandbox: None,
            bound: vec![],
            reason: if group == ADMINISTRATORS {
                "administrators bypass data permissions".into()
            } else {
                format!("group `{group}` grants it unrestricted (the most permissive grant wins)")
            },
        },
        Ok(Decision::Sandboxed(sbs)) => {
            let mut bound = Vec::new();
            let mut problems = Vec::new();
            for sb in &sbs {
                let needs = sb.attributes(&table.to_string());
                for (attr, ty, what) in needs {
                    match p.attribute(&attr) {
                        None => problems.push(
                            Error::MissingAttribute {
                                attribute: attr.clone(),
                                table: table.clone(),
                            }
                            .to_string(),
                        ),
                        Some(v) => {
                            let what = || what.clone();
                            let target = Target {
                                attribute: attr.as_str(),
                                what: &what,
                            };
                            if let Some(e) = v
                                .values()
                                .into_iter()
                                .find_map(|s| coerce(s, ty, &target).err())
                            {
                                problems.push(e.to_string());
                            }
                            if !bound.iter().any(|(a, _)| *a == attr) {
                                bound.push((attr.clone(), v.clone()));
                            }
                        }
                    }
                }
            }
            let sandbox = sbs
                .iter()
                .map(|s| s.kind.describe())
                .collect::<Vec<_>>()
                .join(" OR ");
            let groups: Vec<String> = sbs.iter().map(|s| s.group.clone()).collect();
            if problems.is_empty() {
                TableExplanation {
                    table,
                    decision: "sandboxed".into(),
                    reason: format!(
                        "group{} `{}` sandbox{} it and no group grants it unrestricted",
                        if groups.len() > 1 { "s" } else { "" },
                        groups.join("`, `"),
                        if groups.len() > 1 { "" } else { "es" }
                    ),
                    groups,
                    sandbox: Some(sandbox),
                    bound,
                }
            } else {
                TableExplanation {
                    table,
                    decision: "error".into(),
                    groups,
                    sandbox: Some(sandbox),
                    bound,
                    reason: format!("queries on it are refused: {}", problems.join("; ")),
                }
            }
        }
        Err(e @ Error::SandboxConflict { .. }) => TableExplanation {
            table,
            decision: "error".into(),
            groups: p
                .groups()
                .iter()
                .filter(|g| {
                    policy.groups.get(*g).is_some_and(|gr| {
                        matches!(
                            group_grant(gr.data.get(&db.name), t),
                            TableGrant::Sandbox(_)
                        )
                    })
                })
                .cloned()
                .collect(),
            sandbox: None,
            bound: vec![],
            reason: format!("queries on it are refused: {e}"),
        },
        Err(_) => {
            let blocked: Vec<String> = p
                .groups()
                .iter()
                .filter(|g| {
                    policy.groups.get(*g).is_some_and(|gr| {
                        matches!(gr.data.get(&db.name), Some(crate::policy::DbGrant::Blocked))
                    })
                })
                .cloned()
                .collect();
            TableExplanation {
                table,
                decision: "denied".into(),
                reason: if blocked.is_empty() {
                    format!("no group of [{}] grants it", p.groups().join(", "))
                } else {
                    format!(
                        "database `{}` is blocked for group `{}` and no other group grants the table",
                        db.name,
                        blocked.join("`, `")
                    )
                },
                groups: blocked,
                sandbox: None,
                bound: vec![],
            }
        }
    }
}

/// Explains every declared table of every database for `principal`.
pub fn explain(policy: &Policy, principal: &Principal) -> Explanation {
    let databases = policy
        .databases
        .values()
        .map(|db| DatabaseExplanation {
            database: db.name.clone(),
            native: access::check_native(policy, principal, db).is_ok(),
            tables: db
                .tables()
                .into_iter()
                .map(|t| explain_table(policy, principal, db, t))
                .collect(),
        })
        .collect();
    Explanation {
        principal: principal.name().to_string(),
        groups: principal.groups().to_vec(),
        admin: principal.is_admin(),
        databases,
    }
}

impl Explanation {
    /// Text for people.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "principal {} (groups: {}{})",
            self.principal,
            self.groups.join(", "),
            if self.admin { "; administrator" } else { "" }
        );
        for db in &self.databases {
            let _ = writeln!(
                s,
                "database {}: native SQL {}",
                db.database,
                if db.native {
                    "allowed"
                } else {
                    "not allowed (query-builder questions only)"
                }
            );
            for t in &db.tables {
                let _ = writeln!(s, "  {:<28} {}", t.table, t.decision.to_uppercase());
                if let Some(sb) = &t.sandbox {
                    let _ = writeln!(s, "      sandbox: {sb}");
                }
                if !t.bound.is_empty() {
                    let vals: Vec<String> =
                        t.bound.iter().map(|(a, v)| format!("{a} = {v}")).collect();
                    let _ = writeln!(s, "      binds:   {}", vals.join(", "));
                }
                let _ = writeln!(s, "      why:     {}", t.reason);
            }
        }
        s
    }
}

/// The who-sees-what matrix over the policy's users.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    /// Users, in column order.
    pub users: Vec<String>,
    /// One row per `database.schema.table`: the cell per user.
    pub rows: Vec<(String, Vec<String>)>,
}

/// Builds the matrix for every user declared in the policy.
pub fn matrix(policy: &Policy) -> Result<Matrix, Error> {
    let users: Vec<String> = policy
        .user_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let principals: Vec<Principal> = users
        .iter()
        .map(|u| Principal::from_user(policy, u))
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    for db in policy.databases.values() {
        for t in db.tables() {
            let cells = principals
                .iter()
                .map(|p| {
                    let te = explain_table(policy, p, db, t);
                    match te.decision.as_str() {
                        "sandboxed" => {
                            let vals: Vec<String> =
                                te.bound.iter().map(|(a, v)| format!("{a}={v}")).collect();
                            format!("rows: {}", vals.join(","))
                        }
                        "unrestricted" => "all".into(),
                        "denied" => "-".into(),
                        _ => "ERROR".into(),
                    }
                })
                .collect();
            rows.push((format!("{}.{}", db.name, t.qualified()), cells));
        }
    }
    Ok(Matrix { users, rows })
}

impl Matrix {
    /// An aligned text table.
    pub fn to_text(&self) -> String {
        let first = self
            .rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut widths: Vec<usize> = self.users.iter().map(String::len).collect();
        for (_, cells) in &self.rows {
            for (w, c) in widths.iter_mut().zip(cells) {
                *w = (*w).max(c.len());
            }
        }
        let mut s = String::new();
        let _ = write!(s, "{:<first$}", "table");
        for (u, w) in self.users.iter().zip(&widths) {
            let _ = write!(s, "  {u:<w$}");
        }
        s.push('\n');
        for (name, cells) in &self.rows {
            let _ = write!(s, "{name:<first$}");
            for (c, w) in cells.iter().zip(&widths) {
                let _ = write!(s, "  {c:<w$}");
            }
            s.push('\n');
        }
        s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n"
    }
}
