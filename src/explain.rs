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
    /// The row rules that apply, with the group each comes from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleExplanation>,
    /// Per column, when rules reveal some columns on some rows only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnExplanation>,
    /// Column masks that apply, from which group.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masks: Vec<MaskExplanation>,
    /// Why, in a sentence.
    pub reason: String,
}

/// One row rule applied to a table.
#[derive(Debug, Clone, Serialize)]
pub struct RuleExplanation {
    /// The group that has it.
    pub group: String,
    /// Its name.
    pub name: String,
    /// `permissive` (ORed with the others) or `restrictive` (ANDed) for
    /// reads; `insert`, `update`, `delete` (with `(restrictive)`) for
    /// write rules.
    pub kind: &'static str,
    /// The condition as written.
    pub filter: String,
    /// The columns it reveals, when it names them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// Whether tables it reads are read unrestricted.
    pub definer: bool,
}

/// One column mask that applies to the principal.
#[derive(Debug, Clone, Serialize)]
pub struct MaskExplanation {
    /// The column.
    pub column: String,
    /// The group whose grant masks it.
    pub group: String,
    /// The mask (`email`, `first 2`, `hash`, …).
    pub mask: String,
    /// The masked values' type.
    #[serde(rename = "type")]
    pub ty: crate::policy::ColumnType,
    /// Where the stored value shows instead (`unless`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unless: Option<String>,
}

/// Who reveals one column of a table under row rules with `columns:`.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnExplanation {
    /// The column.
    pub column: String,
    /// `all rows`, `hidden`, or the rows of which rules (`group / rule`).
    pub shown: String,
}

/// The rules and per-column reveals of a decision.
fn rule_lines(
    sbs: &[std::sync::Arc<crate::policy::Sandbox>],
    t: &crate::policy::Table,
) -> (Vec<RuleExplanation>, Vec<ColumnExplanation>) {
    use crate::policy::SandboxKind;
    let line = |r: &crate::policy::Rule| RuleExplanation {
        group: r.group.clone(),
        name: r.name.clone(),
        kind: if r.restrictive {
            "restrictive"
        } else {
            "permissive"
        },
        filter: r.filter.trim().to_string(),
        columns: r.columns.clone(),
        definer: r.definer,
    };
    let mut rules = Vec::new();
    // Permissive units, with the columns each reveals (`None`: all).
    let mut units: Vec<(String, Option<&Vec<String>>)> = Vec::new();
    let mut all_rows = false;
    for sb in sbs {
        match &sb.kind {
            SandboxKind::Rules(rs) => {
                for r in rs {
                    rules.push(line(r));
                    units.push((format!("{} / {}", r.group, r.name), r.columns.as_ref()));
                }
            }
            SandboxKind::Basic(_) | SandboxKind::Custom { .. } => {
                units.push((format!("{} / {}", sb.group, sb.kind.describe()), None))
            }
            SandboxKind::All => all_rows = true,
            SandboxKind::Empty => {}
        }
    }
    for sb in sbs {
        rules.extend(sb.restrictive.iter().map(|r| line(r)));
    }
    let mut columns = Vec::new();
    if !all_rows && units.iter().any(|(_, c)| c.is_some()) {
        for c in &t.columns {
            let by: Vec<&str> = units
                .iter()
                .filter(|(_, cs)| cs.is_none_or(|cs| cs.contains(&c.key)))
                .map(|(n, _)| n.as_str())
                .collect();
            let shown = if by.is_empty() {
                "hidden".to_string()
            } else if by.len() == units.len() {
                "all rows".to_string()
            } else {
                format!("rows of {}", by.join(", "))
            };
            columns.push(ColumnExplanation {
                column: c.name.clone(),
                shown,
            });
        }
    }
    (rules, columns)
}

/// The decisions on one database.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseExplanation {
    /// Database name.
    pub database: String,
    /// Whether the principal may send native SQL there.
    pub native: bool,
    /// Whether the principal may create query-builder questions there.
    pub builder: bool,
    /// The routing destination its queries run on (`None`: this database).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The catalog the destination's tables are read from (three-part
    /// names), for a catalog destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    /// The schema the destination's tables are read from, for a schema
    /// destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The database role its queries run as (connection impersonation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Why every query on the database is refused (routing or
    /// impersonation), if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
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
    let mut out = explain_read(policy, p, db, t);
    // Write rules, per command, after the read rules.
    use crate::policy::Command;
    for c in [Command::Insert, Command::Update, Command::Delete] {
        if let Ok((perm, restr)) = access::decide_write(policy, p, db, t, c) {
            for (r, restrictive) in perm
                .iter()
                .map(|r| (r, false))
                .chain(restr.iter().map(|r| (r, true)))
            {
                let check = match (&r.check, c) {
                    (Some(k), Command::Insert | Command::Update) => {
                        format!(" CHECK {}", k.filter.trim())
                    }
                    _ => String::new(),
                };
                out.rules.push(RuleExplanation {
                    group: r.group.clone(),
                    name: r.name.clone(),
                    kind: match (c, restrictive) {
                        (Command::Insert, false) => "insert",
                        (Command::Insert, true) => "insert (restrictive)",
                        (Command::Update, false) => "update",
                        (Command::Update, true) => "update (restrictive)",
                        (Command::Delete, false) => "delete",
                        (Command::Delete, true) => "delete (restrictive)",
                    },
                    filter: format!("{}{check}", r.filter.trim()),
                    columns: None,
                    definer: r.definer,
                });
            }
        }
    }
    out
}

/// The read decision on one table, explained.
fn explain_read(
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
            rules: vec![],
            columns: vec![],
            masks: vec![],
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
                .map(|s| s.describe())
                .collect::<Vec<_>>()
                .join(" OR ");
            let masks: Vec<MaskExplanation> = sbs
                .iter()
                .flat_map(|s| s.masks.iter())
                .map(|m| MaskExplanation {
                    column: t
                        .column(&m.column)
                        .map_or_else(|| m.column.clone(), |c| c.name.clone()),
                    group: m.group.clone(),
                    mask: m.kind.to_string(),
                    ty: m.ty,
                    unless: m.unless.as_ref().map(|u| u.filter.trim().to_string()),
                })
                .collect();
            let groups: Vec<String> = sbs
                .iter()
                .map(|s| s.group.clone())
                .filter(|g| !g.is_empty())
                .collect();
            let (rules, columns) = rule_lines(&sbs, t);
            let restricting: Vec<String> = {
                let mut v: Vec<String> = sbs
                    .iter()
                    .flat_map(|s| s.restrictive.iter().map(|r| r.group.clone()))
                    .collect();
                v.dedup();
                v
            };
            let narrowed = if restricting.is_empty() {
                String::new()
            } else {
                format!(
                    "; restrictive rules of `{}` narrow it",
                    restricting.join("`, `")
                )
            };
            if problems.is_empty() {
                let reason = match sbs.first().map(|s| &s.kind) {
                    Some(crate::policy::SandboxKind::Empty) => {
                        "no group grants it, and it is `on_denied: empty`: it reads as having no rows".to_string()
                    }
                    Some(crate::policy::SandboxKind::All) if !masks.is_empty() => format!(
                        "group{} `{}` grant{} every row with masked columns{narrowed}",
                        if groups.len() > 1 { "s" } else { "" },
                        groups.join("`, `"),
                        if groups.len() > 1 { "" } else { "s" }
                    ),
                    Some(crate::policy::SandboxKind::All) => format!(
                        "group `{}` grants it unrestricted{narrowed}",
                        groups.join("`, `")
                    ),
                    _ => format!(
                        "group{} `{}` sandbox{} it and no group grants it unrestricted{narrowed}",
                        if groups.len() > 1 { "s" } else { "" },
                        groups.join("`, `"),
                        if groups.len() > 1 { "" } else { "es" }
                    ),
                };
                TableExplanation {
                    table,
                    decision: "sandboxed".into(),
                    reason,
                    groups,
                    sandbox: Some(sandbox),
                    bound,
                    rules,
                    columns,
                    masks,
                }
            } else {
                TableExplanation {
                    table,
                    decision: "error".into(),
                    groups,
                    sandbox: Some(sandbox),
                    bound,
                    rules,
                    columns,
                    masks,
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
            rules: vec![],
            columns: vec![],
            masks: vec![],
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
                rules: vec![],
                columns: vec![],
                masks: vec![],
            }
        }
    }
}

/// Explains every declared table of every database for `principal`.
pub fn explain(policy: &Policy, principal: &Principal) -> Explanation {
    let databases = policy
        .databases
        .values()
        .map(|db| {
            let route = crate::routing::route(policy, principal, db);
            let (route, refused) = match route {
                Ok(r) => (Some(r), None),
                Err(e) => (None, Some(format!("[{}] {e}", e.code()))),
            };
            let route = route.unwrap_or_default();
            DatabaseExplanation {
                database: db.name.clone(),
                native: access::check_native(policy, principal, db).is_ok(),
                builder: access::check_builder(policy, principal, db).is_ok(),
                destination: route.destination,
                catalog: route.catalog,
                schema: route.schema,
                role: route.role,
                refused,
                tables: db
                    .tables()
                    .into_iter()
                    .map(|t| explain_table(policy, principal, db, t))
                    .collect(),
            }
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
                match (db.native, db.builder) {
                    (true, _) => "allowed",
                    (false, true) => "not allowed (query-builder questions only)",
                    (false, false) =>
                        "not allowed, nor query-builder questions (saved questions only)",
                }
            );
            if let Some(d) = &db.destination {
                let mut place = String::new();
                if let Some(c) = &db.catalog {
                    place.push_str(&format!(" (catalog `{c}`)"));
                }
                if let Some(sc) = &db.schema {
                    place.push_str(&format!(" (schema `{sc}`)"));
                }
                let _ = writeln!(s, "  routed to destination `{d}`{place}");
            }
            if let Some(r) = &db.role {
                let _ = writeln!(s, "  runs as database role `{r}` (impersonation)");
            }
            if let Some(why) = &db.refused {
                let _ = writeln!(s, "  REFUSED: every query on it is refused: {why}");
            }
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
                for (i, r) in t.rules.iter().enumerate() {
                    let _ = writeln!(
                        s,
                        "      {} {:<11} {} / {}: {}{}{}",
                        if i == 0 { "rules:  " } else { "        " },
                        r.kind,
                        r.group,
                        r.name,
                        r.filter,
                        r.columns
                            .as_ref()
                            .map_or_else(String::new, |c| format!(" [columns {}]", c.join(", "))),
                        if r.definer { " [as definer]" } else { "" }
                    );
                }
                for (i, c) in t.columns.iter().enumerate() {
                    let _ = writeln!(
                        s,
                        "      {} {}: {}",
                        if i == 0 { "columns:" } else { "        " },
                        c.column,
                        c.shown
                    );
                }
                for (i, m) in t.masks.iter().enumerate() {
                    let _ = writeln!(
                        s,
                        "      {} {}: {} ({}, group {}){}",
                        if i == 0 { "masks:  " } else { "        " },
                        m.column,
                        m.mask,
                        m.ty,
                        m.group,
                        m.unless
                            .as_ref()
                            .map_or_else(String::new, |u| format!(" unless {u}"))
                    );
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
    /// Principals, in column order: declared users, then API keys
    /// (`api-key:NAME`).
    pub users: Vec<String>,
    /// One row per `database.schema.table`, per database's query creation
    /// and routing, and per collection: the cell per principal, as text.
    pub rows: Vec<(String, Vec<String>)>,
    /// The same rows with structured cells (for `--format json`).
    pub cells: Vec<MatrixRow>,
    /// Each group with the number of declared users and API keys in it.
    pub members: Vec<(String, usize)>,
}

/// One row of the matrix with structured cells.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixRow {
    /// `table`, `queries`, `route` or `collection`.
    pub kind: &'static str,
    /// What the row is about (`warehouse.public.orders`, `warehouse`, a
    /// collection name).
    pub object: String,
    /// One cell per principal, in [`Matrix::users`] order.
    pub cells: Vec<MatrixCell>,
}

/// One principal's access to one object.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixCell {
    /// `unrestricted`, `sandboxed`, `denied`, `error` (tables); `native`,
    /// `builder`, `none` (queries); `router`, a destination slug or
    /// `refused` (routes); `curate`, `view`, `none` (collections).
    pub decision: String,
    /// Attribute values a sandbox binds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bound: Vec<(String, AttributeValue)>,
    /// Masked columns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<String>,
    /// Why, where it is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Builds the matrix for every user and API key declared in the policy.
pub fn matrix(policy: &Policy) -> Result<Matrix, Error> {
    let mut users: Vec<String> = policy
        .user_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut principals: Vec<Principal> = users
        .iter()
        .map(|u| Principal::from_user(policy, u))
        .collect::<Result<_, _>>()?;
    for k in &policy.api_keys {
        users.push(format!("api-key:{}", k.name));
        principals.push(Principal::of_api_key(k));
    }
    let mut cells_rows: Vec<MatrixRow> = Vec::new();
    let cell = |decision: &str| MatrixCell {
        decision: decision.to_string(),
        bound: Vec::new(),
        masked: Vec::new(),
        reason: None,
    };
    for db in policy.databases.values() {
        for t in db.tables() {
            let cells = principals
                .iter()
                .map(|p| {
                    let te = explain_table(policy, p, db, t);
                    MatrixCell {
                        reason: (te.decision == "error").then(|| te.reason.clone()),
                        masked: te.masks.iter().map(|m| m.column.clone()).collect(),
                        bound: te.bound,
                        decision: te.decision,
                    }
                })
                .collect();
            cells_rows.push(MatrixRow {
                kind: "table",
                object: format!("{}.{}", db.name, t.qualified()),
                cells,
            });
        }
        cells_rows.push(MatrixRow {
            kind: "queries",
            object: db.name.clone(),
            cells: principals
                .iter()
                .map(|p| {
                    cell(if access::check_native(policy, p, db).is_ok() {
                        "native"
                    } else if access::check_builder(policy, p, db).is_ok() {
                        "builder"
                    } else {
                        "none"
                    })
                })
                .collect(),
        });
        if db.routing.is_some() || db.impersonation.is_some() {
            cells_rows.push(MatrixRow {
                kind: "route",
                object: db.name.clone(),
                cells: principals
                    .iter()
                    .map(|p| match crate::routing::route(policy, p, db) {
                        Ok(r) => {
                            let mut c = cell(r.destination.as_deref().unwrap_or("router"));
                            if let Some(role) = r.role {
                                c.decision = format!("{} as {role}", c.decision);
                            }
                            c
                        }
                        Err(e) => MatrixCell {
                            reason: Some(format!("[{}] {e}", e.code())),
                            ..cell("refused")
                        },
                    })
                    .collect(),
            });
        }
    }
    for c in policy.collections.keys() {
        cells_rows.push(MatrixRow {
            kind: "collection",
            object: c.clone(),
            cells: principals
                .iter()
                .map(|p| {
                    cell(match access::collection_level(policy, p, c) {
                        crate::policy::CollectionLevel::Curate => "curate",
                        crate::policy::CollectionLevel::View => "view",
                        crate::policy::CollectionLevel::None => "none",
                    })
                })
                .collect(),
        });
    }
    let rows = cells_rows
        .iter()
        .map(|r| {
            let name = match r.kind {
                "table" => r.object.clone(),
                kind => format!("{kind} {}", r.object),
            };
            let cells = r
                .cells
                .iter()
                .map(|c| match (r.kind, c.decision.as_str()) {
                    ("table", "sandboxed") => {
                        let vals: Vec<String> =
                            c.bound.iter().map(|(a, v)| format!("{a}={v}")).collect();
                        let mut t = format!("rows: {}", vals.join(","));
                        if !c.masked.is_empty() {
                            t.push_str(&format!(" masked: {}", c.masked.join(",")));
                        }
                        t
                    }
                    ("table", "unrestricted") => "all".into(),
                    ("table", "denied") => "-".into(),
                    ("table", _) => "ERROR".into(),
                    (_, d) => d.to_string(),
                })
                .collect();
            (name, cells)
        })
        .collect();
    let mut members: Vec<(String, usize)> = policy
        .groups
        .keys()
        .map(|g| {
            let n = principals
                .iter()
                .filter(|p| p.groups().iter().any(|x| x == g))
                .count();
            (g.clone(), n)
        })
        .collect();
    members.sort();
    Ok(Matrix {
        users,
        rows,
        cells: cells_rows,
        members,
    })
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
        let mut out = s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n";
        if !self.members.is_empty() {
            let groups: Vec<String> = self
                .members
                .iter()
                .map(|(g, n)| format!("{g} ({n})"))
                .collect();
            let _ = writeln!(out, "members: {}", groups.join(", "));
        }
        out
    }
}
