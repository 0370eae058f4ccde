//! `diff`: what a policy change does, per principal and table.
//!
//! Both policies are evaluated for every principal either of them knows —
//! each declared user, each group on its own (a principal with just that
//! group and no attributes, so its sandboxes read in attribute names), each
//! API key, and the anonymous principal of public embedding — with the same
//! machinery `explain` uses ([`access::decide`] decides every table). The
//! two views are compared per database, table and collection, and every
//! difference is classified:
//!
//! - `widen`: someone can read more (access gained, a sandbox lifted or
//!   changed in a way that cannot be proven narrower, a column newly
//!   visible, native SQL gained, a collection level up, a saved question
//!   that may now be run, a new principal, a
//!   different routing destination or role, a fence turned off, a function
//!   allowed);
//! - `narrow`: someone can read less, provably;
//! - `neutral`: bookkeeping with no effect on reads of its own (a table
//!   declared or dropped, group memberships — their effects are reported
//!   separately — or an API key's secret rotated).
//!
//! A sandbox is narrower only when every one of its new conditions implies
//! an old one: the same `column = attribute` filters plus more ANDed
//! filters, a multi-valued attribute with fewer values, fewer sandboxes
//! ORed by `combine: union`. Any other change of a sandbox is reported as
//! `changed (treated as widening)`.
//!
//! ```
//! use sqlsandbox::{policydiff, Policy};
//! let old = Policy::from_yaml(r#"
//! version: 1
//! databases:
//!   db: {dialect: postgres, tables: {orders: {columns: {id: integer, tenant_id: integer}}}}
//! groups:
//!   customers: {data: {db: {public: {orders: {sandbox: {column: tenant_id, attribute: tenant}}}}}}
//! "#, "old.yaml").unwrap();
//! let new = Policy::from_yaml(r#"
//! version: 1
//! databases:
//!   db: {dialect: postgres, tables: {orders: {columns: {id: integer, tenant_id: integer}}}}
//! groups:
//!   customers: {data: {db: unrestricted}}
//! "#, "new.yaml").unwrap();
//! let report = policydiff::diff(&old, &new).unwrap();
//! assert_eq!(report.summary.widen, 1);
//! assert!(report.to_text().contains("access gained"));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use crate::access::{self, Decision};
use crate::error::{Error, Result};
use crate::explain;
use crate::policy::{CollectionLevel, Database, FenceMode, Policy, SandboxKind, Table, ROUTER};
use crate::principal::Principal;
use crate::routing;

/// What a change does to what someone can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Someone can read more (or it cannot be proven that they cannot).
    Widen,
    /// Someone can read less.
    Narrow,
    /// No effect on reads of its own.
    Neutral,
}

impl Class {
    fn as_str(self) -> &'static str {
        match self {
            Class::Widen => "widen",
            Class::Narrow => "narrow",
            Class::Neutral => "neutral",
        }
    }
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A principal appeared or disappeared.
    Principal,
    /// Write access to a table (INSERT, UPDATE, DELETE under write rules).
    Write,
    /// A user's groups, or an API key's group or secret.
    Membership,
    /// Access to a table: none, sandboxed, unrestricted (or refused).
    Access,
    /// The sandbox on a table (rules, or the attribute values it binds).
    Sandbox,
    /// The columns of a table someone can see (or, policy-wide, declares).
    Columns,
    /// Native SQL permission on a database.
    Native,
    /// The permission level on a collection.
    Collection,
    /// Whether a saved question may be run by name (view on its
    /// collection, its database not `blocked`).
    Question,
    /// Where and as which role a principal's queries run.
    Route,
    /// A database declared, dropped or changed (dialect).
    Database,
    /// A table declared or dropped.
    Table,
    /// The optimisation fence of a database's sandboxes.
    Fence,
    /// A database's routing rule (attribute, destinations).
    Routing,
    /// A database's impersonation rule.
    Impersonation,
    /// The functions or variables native SQL may use.
    Functions,
}

/// One difference between the two policies.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The principal (`user:NAME`, `group:NAME`, `api-key:NAME`,
    /// `anonymous`), or `null` for a policy-wide change.
    pub principal: Option<String>,
    /// The database, when the change is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The table (`schema.table`), when the change is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The collection, when the change is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// The saved question, when the change is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// What changed.
    pub kind: Kind,
    /// Widen, narrow or neutral.
    pub class: Class,
    /// The old state, described (`null` when there was none).
    pub old: Option<String>,
    /// The new state, described (`null` when there is none).
    pub new: Option<String>,
    /// Columns newly visible or hidden (for `columns` changes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// The change in a sentence (what the text output prints).
    pub message: String,
}

/// Counts of changes by class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Changes that let someone read more.
    pub widen: usize,
    /// Changes that let someone read less.
    pub narrow: usize,
    /// Changes with no effect on reads of their own.
    pub neutral: usize,
}

/// Everything that differs between two policies.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The old policy's file (or `REV:path`).
    pub old: String,
    /// The new policy's file (or `REV:path`).
    pub new: String,
    /// Counts by class.
    pub summary: Summary,
    /// The changes: policy-wide ones first, then per principal (users,
    /// groups, API keys, anonymous; each sorted by name), each in database,
    /// table and collection order.
    pub changes: Vec<Change>,
}

impl Report {
    /// Whether any change is in `class`.
    pub fn has(&self, class: Class) -> bool {
        self.changes.iter().any(|c| c.class == class)
    }

    /// Text for people: grouped by principal, one line per change, and a
    /// summary line.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "diff {} → {}", self.old, self.new);
        let mut current: Option<Option<&str>> = None;
        for c in &self.changes {
            let who = c.principal.as_deref();
            if current != Some(who) {
                let _ = writeln!(s, "{}:", who.unwrap_or("policy"));
                current = Some(who);
            }
            let _ = writeln!(s, "  {:<8} {}", c.class.as_str(), c.message);
        }
        let n = self.changes.len();
        let _ = writeln!(
            s,
            "{n} change{}: {} widen, {} narrow, {} neutral",
            if n == 1 { "" } else { "s" },
            self.summary.widen,
            self.summary.narrow,
            self.summary.neutral
        );
        s
    }
}

/// Reads a policy named on the command line: a file, or `REV:path` read
/// with `git show REV:path` (when the argument has a colon and is not an
/// existing file). Returns the policy with the label it is reported under.
pub fn load(arg: &str) -> Result<Policy> {
    if arg.contains(':') && !Path::new(arg).exists() {
        let text = git_show(None, arg)?;
        Policy::from_yaml(&text, arg)
    } else {
        Policy::from_path(arg)
    }
}

/// Reads the committed version of the policy file `path` at git revision
/// `rev` (`git show REV:./FILE`, run in the file's directory, so a
/// relative or absolute path both work). It is reported as `REV:path`.
pub fn load_git(rev: &str, path: &str) -> Result<Policy> {
    let p = Path::new(path);
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file = p.file_name().ok_or_else(|| Error::Io {
        path: path.to_string(),
        message: "not a file name".into(),
    })?;
    let spec = format!("{rev}:./{}", file.to_string_lossy());
    let text = git_show(Some(dir), &spec)?;
    Policy::from_yaml(&text, &format!("{rev}:{path}"))
}

fn git_show(dir: Option<&Path>, spec: &str) -> Result<String> {
    let mut cmd = std::process::Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let out = cmd.arg("show").arg(spec).output().map_err(|e| Error::Io {
        path: spec.to_string(),
        message: format!("cannot run git: {e}"),
    })?;
    if !out.status.success() {
        return Err(Error::Io {
            path: spec.to_string(),
            message: format!(
                "git show failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    String::from_utf8(out.stdout).map_err(|_| Error::Io {
        path: spec.to_string(),
        message: "not UTF-8 text".into(),
    })
}

/// Compares two policies (see the module documentation).
pub fn diff(old: &Policy, new: &Policy) -> Result<Report> {
    let mut changes = Vec::new();
    policy_wide(old, new, &mut changes);
    let mut who: BTreeSet<Who> = Who::all(old);
    who.extend(Who::all(new));
    for w in &who {
        let before = View::of(old, w)?;
        let after = View::of(new, w)?;
        compare(w, &before, &after, &mut changes);
    }
    let mut summary = Summary::default();
    for c in &changes {
        match c.class {
            Class::Widen => summary.widen += 1,
            Class::Narrow => summary.narrow += 1,
            Class::Neutral => summary.neutral += 1,
        }
    }
    Ok(Report {
        old: old.file().to_string(),
        new: new.file().to_string(),
        summary,
        changes,
    })
}

/// A principal of either policy, in report order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    User(String),
    Group(String),
    ApiKey(String),
    Anonymous,
}

impl Who {
    fn all(policy: &Policy) -> BTreeSet<Who> {
        let mut v: BTreeSet<Who> = policy
            .user_names()
            .into_iter()
            .map(|u| Who::User(u.to_string()))
            .collect();
        v.extend(policy.groups.keys().map(|g| Who::Group(g.clone())));
        v.extend(policy.api_keys.iter().map(|k| Who::ApiKey(k.name.clone())));
        v.insert(Who::Anonymous);
        v
    }

    fn id(&self) -> String {
        match self {
            Who::User(n) => format!("user:{n}"),
            Who::Group(n) => format!("group:{n}"),
            Who::ApiKey(n) => format!("api-key:{n}"),
            Who::Anonymous => "anonymous".into(),
        }
    }

    /// The principal in `policy`, with whether its attributes are real
    /// values (`false` for a group on its own: its sandboxes are compared
    /// as rules over attribute names). `None` when the policy lacks it.
    fn principal(&self, policy: &Policy) -> Result<Option<(Principal, bool)>> {
        Ok(match self {
            Who::User(n) if policy.users.contains_key(n) => {
                Some((Principal::from_user(policy, n)?, true))
            }
            Who::Group(g) if policy.groups.contains_key(g) => Some((
                Principal::new(
                    policy,
                    &self.id(),
                    [g.as_str()],
                    std::iter::empty::<(String, crate::AttributeValue)>(),
                )?,
                false,
            )),
            Who::ApiKey(n) => policy
                .api_keys
                .iter()
                .find(|k| k.name == *n)
                .map(|k| (Principal::of_api_key(k), true)),
            Who::Anonymous => Some((Principal::anonymous(), true)),
            Who::User(_) | Who::Group(_) => None,
        })
    }
}

/// One sandbox as a rule that can be compared across policies.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    /// `column = attribute` filters, ANDed: (column, type, attribute).
    Filters(BTreeSet<(String, String, String)>),
    /// A rule compared by content only (a custom sandbox: its question's
    /// SQL as parsed and its parameter bindings); `attributes` are those it
    /// binds.
    Opaque {
        key: String,
        attributes: BTreeSet<String>,
    },
}

/// Attribute values a principal's sandbox binds (`None` for a group on its
/// own: the same attribute name stands for the same unknown value).
type Bound = Option<BTreeMap<String, BTreeSet<String>>>;

#[derive(Debug, Clone)]
enum State {
    /// The table is not declared in this policy.
    NotDeclared,
    /// No group grants it.
    Denied,
    /// Granted, but every query on it is refused (a sandbox conflict, a
    /// missing or mistyped attribute).
    Refused(String),
    /// Sandboxed (several rules: ORed by `combine: union`).
    Sandboxed {
        rules: Vec<Rule>,
        bound: Bound,
        text: String,
    },
    /// Read as is.
    Unrestricted,
}

impl State {
    fn level(&self) -> u8 {
        match self {
            State::NotDeclared | State::Denied | State::Refused(_) => 0,
            State::Sandboxed { .. } => 1,
            State::Unrestricted => 2,
        }
    }

    fn describe(&self) -> String {
        match self {
            State::NotDeclared => "not declared".into(),
            State::Denied => "denied".into(),
            State::Refused(why) => format!("refused ({why})"),
            State::Sandboxed { text, .. } => format!("sandboxed by {text}"),
            State::Unrestricted => "unrestricted".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct TableView {
    state: State,
    /// Visible columns: normalised name → name as declared.
    visible: BTreeMap<String, String>,
    /// Per write command the principal may run: its rules, described.
    writes: BTreeMap<&'static str, String>,
    /// Masked columns: normalised name → the masks, described.
    masked: BTreeMap<String, String>,
}

/// Everything one principal may do under one policy.
#[derive(Debug, Default)]
struct View {
    /// Whether the principal exists in the policy.
    exists: bool,
    /// A user's groups (or an API key's group), `all_users` left out.
    groups: Vec<String>,
    /// An API key's secret hashes: the current one, then the previous one
    /// during a rotation.
    secret: Option<Vec<String>>,
    /// (database, `schema.table`) → access.
    tables: BTreeMap<(String, String), TableView>,
    /// database → native SQL allowed.
    native: BTreeMap<String, bool>,
    /// database → route (destination and role), or why it is refused;
    /// only databases with routing or impersonation, only for principals
    /// with real attribute values.
    routes: BTreeMap<String, std::result::Result<String, String>>,
    /// collection → level.
    collections: BTreeMap<String, CollectionLevel>,
    /// saved question → may be run by name.
    questions: BTreeMap<String, bool>,
}

impl View {
    fn of(policy: &Policy, who: &Who) -> Result<View> {
        let Some((p, concrete)) = who.principal(policy)? else {
            return Ok(View::default());
        };
        let mut view = View {
            exists: true,
            groups: p
                .groups()
                .iter()
                .filter(|g| *g != crate::policy::ALL_USERS || matches!(who, Who::ApiKey(_)))
                .cloned()
                .collect(),
            secret: match who {
                Who::ApiKey(n) => policy.api_keys.iter().find(|k| k.name == *n).map(|k| {
                    std::iter::once(&k.sha256)
                        .chain(k.previous_sha256.iter())
                        .cloned()
                        .collect()
                }),
                Who::User(_) | Who::Group(_) | Who::Anonymous => None,
            },
            ..View::default()
        };
        let explained = explain::explain(policy, &p);
        for db in policy.databases.values() {
            let ex = explained.databases.iter().find(|d| d.database == db.name);
            view.native.insert(
                db.name.clone(),
                ex.map_or_else(
                    || access::check_native(policy, &p, db).is_ok(),
                    |d| d.native,
                ),
            );
            let by_name: BTreeMap<&str, &explain::TableExplanation> = ex
                .map(|d| d.tables.iter().map(|x| (x.table.as_str(), x)).collect())
                .unwrap_or_default();
            for t in db.tables() {
                let name = t.qualified();
                let tv = table_view(
                    policy,
                    &p,
                    concrete,
                    db,
                    t,
                    by_name.get(name.as_str()).copied(),
                );
                view.tables.insert((db.name.clone(), name), tv);
            }
            if concrete && (db.routing.is_some() || db.impersonation.is_some()) {
                let route = routing::route(policy, &p, db)
                    .map(|r| describe_route(db, &r))
                    .map_err(|e| e.to_string());
                view.routes.insert(db.name.clone(), route);
            }
        }
        for c in policy.collections.keys() {
            view.collections
                .insert(c.clone(), access::collection_level(policy, &p, c));
        }
        for (name, q) in &policy.questions {
            view.questions
                .insert(name.clone(), access::check_question(policy, &p, q).is_ok());
        }
        Ok(view)
    }
}

fn describe_route(db: &Database, r: &routing::Route) -> String {
    let mut s = match &r.destination {
        None if db.routing.is_some() => "router database".to_string(),
        None => "this database".to_string(),
        Some(slug) => {
            let target = db
                .routing
                .as_ref()
                .and_then(|rt| rt.destinations.get(slug))
                .and_then(|d| d.as_deref());
            match target {
                Some(t) => format!("destination `{slug}` (database `{t}`)"),
                None => format!("destination `{slug}`"),
            }
        }
    };
    // Where the destination's tables are: a changed schema or catalog
    // reads other tables, so it is a change of route.
    if let Some(c) = &r.catalog {
        let _ = write!(s, " in catalog `{c}`");
    }
    if let Some(schema) = &r.schema {
        let _ = write!(s, " in schema `{schema}`");
    }
    match &r.role {
        Some(role) => {
            let _ = write!(s, " as role `{role}`");
        }
        None => s.push_str(" as the connection's role"),
    }
    s
}

fn all_columns(t: &Table) -> BTreeMap<String, String> {
    t.columns
        .iter()
        .map(|c| (c.key.clone(), c.name.clone()))
        .collect()
}

/// The comparable rule of one sandbox, and the columns it leaves visible
/// (`None`: every declared column). Every kind is matched by name: a new
/// kind must say how it compares (a kind that lets every row through is
/// `Rule::Filters` of no filter; anything else compared by content is
/// `Rule::Opaque`).
fn rule(
    policy: &Policy,
    kind: &SandboxKind,
    restrictive: &[std::sync::Arc<crate::policy::Rule>],
) -> (Vec<Rule>, Option<BTreeSet<String>>) {
    // Restrictive rules ANDed on top make every permissive part another
    // rule (compared by content: a change there is never proven narrower).
    let on_top: Vec<String> = restrictive
        .iter()
        .map(|r| format!("{}:{}", r.group, r.expr))
        .collect();
    let rule_key = |r: &crate::policy::Rule| {
        format!(
            "{} AS {} COLUMNS {:?}",
            r.expr,
            if r.definer { "definer" } else { "invoker" },
            r.columns
        )
    };
    let opaque = |key: String, attributes: BTreeSet<String>| {
        let key = if on_top.is_empty() {
            key
        } else {
            format!("{key} AND {}", on_top.join(" AND "))
        };
        Rule::Opaque { key, attributes }
    };
    let restrictive_attrs: BTreeSet<String> = restrictive
        .iter()
        .flat_map(|r| r.parameters.iter().map(|p| p.attribute.clone()))
        .collect();
    match kind {
        SandboxKind::Basic(filters) if on_top.is_empty() => (
            vec![Rule::Filters(
                filters
                    .iter()
                    .map(|f| (f.column.clone(), f.ty.to_string(), f.attribute.clone()))
                    .collect(),
            )],
            None,
        ),
        SandboxKind::Basic(filters) => {
            let mut attrs: BTreeSet<String> = filters.iter().map(|f| f.attribute.clone()).collect();
            attrs.extend(restrictive_attrs);
            (vec![opaque(format!("{filters:?}"), attrs)], None)
        }
        // Every row: no filter (narrower than anything but itself).
        SandboxKind::All if on_top.is_empty() => (vec![Rule::Filters(BTreeSet::new())], None),
        SandboxKind::All => (vec![opaque("every row".into(), restrictive_attrs)], None),
        // No row: an opaque rule no other equals.
        SandboxKind::Empty => (vec![opaque("no rows".into(), BTreeSet::new())], None),
        SandboxKind::Rules(rules) => {
            let mut cols: Option<BTreeSet<String>> = Some(BTreeSet::new());
            let mut out = Vec::new();
            for r in rules {
                match (&r.columns, cols.as_mut()) {
                    (Some(c), Some(acc)) => acc.extend(c.iter().cloned()),
                    _ => cols = None,
                }
                let mut attrs: BTreeSet<String> =
                    r.parameters.iter().map(|p| p.attribute.clone()).collect();
                attrs.extend(restrictive_attrs.iter().cloned());
                out.push(opaque(rule_key(r), attrs));
            }
            (out, cols)
        }
        SandboxKind::Custom {
            question,
            parameters,
        } => {
            let q = policy.questions.get(question);
            let sql = q.map_or_else(|| format!("question {question}"), |q| q.query.to_string());
            let params: Vec<String> = parameters
                .iter()
                .map(|p| {
                    format!(
                        "{}={}:{}",
                        p.variable,
                        p.attribute,
                        p.ty.map_or_else(|| "?".to_string(), |t| t.to_string())
                    )
                })
                .collect();
            (
                vec![opaque(
                    format!("{sql} WITH {}", params.join(",")),
                    parameters.iter().map(|p| p.attribute.clone()).collect(),
                )],
                q.and_then(|q| q.columns.as_ref())
                    .map(|cols| cols.iter().map(|(c, _)| c.clone()).collect()),
            )
        }
    }
}

fn table_view(
    policy: &Policy,
    p: &Principal,
    concrete: bool,
    db: &Database,
    t: &Table,
    explained: Option<&explain::TableExplanation>,
) -> TableView {
    let writes = write_view(policy, p, db, t);
    let none = |state| TableView {
        state,
        visible: BTreeMap::new(),
        writes: writes.clone(),
        masked: BTreeMap::new(),
    };
    let view = match access::decide(policy, p, db, t) {
        Err(e @ Error::SandboxConflict { .. }) => none(State::Refused(e.to_string())),
        Err(_) => none(State::Denied),
        Ok(Decision::Unrestricted { .. }) => TableView {
            state: State::Unrestricted,
            visible: all_columns(t),
            writes: BTreeMap::new(),
            masked: BTreeMap::new(),
        },
        Ok(Decision::Sandboxed(sandboxes)) => {
            if concrete {
                if let Some(te) = explained.filter(|te| te.decision == "error") {
                    return none(State::Refused(te.reason.clone()));
                }
            }
            let mut rules = Vec::new();
            let mut visible = all_columns(t);
            let mut masked: BTreeMap<String, String> = BTreeMap::new();
            for sb in &sandboxes {
                // Every field named: a field added to `Sandbox` (say,
                // rules ANDed on top) fails to compile here until the
                // comparison takes it into account.
                let crate::policy::Sandbox {
                    group: _,
                    kind,
                    restrictive,
                    // Compared per command in `write_view`.
                    writes: _,
                    masks,
                } = sb.as_ref();
                for m in masks {
                    let entry = masked.entry(m.column.clone()).or_default();
                    if !entry.is_empty() {
                        entry.push_str(" / ");
                    }
                    let _ = write!(entry, "{} ({})", m.describe(), m.group);
                }
                let (r, cols) = rule(policy, kind, restrictive);
                if let Some(cols) = cols {
                    visible.retain(|k, _| cols.contains(k));
                }
                rules.extend(r);
            }
            let mut text = sandboxes
                .iter()
                .map(|s| s.kind.describe())
                .collect::<Vec<_>>()
                .join(" OR ");
            // Restrictive rules are ANDed on top of them all; each sandbox
            // carries its principal's whole set, so the first one's say it.
            if let Some(sb) = sandboxes.first() {
                for r in &sb.restrictive {
                    let _ = write!(
                        text,
                        " AND restrictive ({}: {} from {})",
                        r.name,
                        r.filter.trim(),
                        r.group
                    );
                }
            }
            let bound = if concrete {
                let bound: Vec<(String, crate::AttributeValue)> =
                    explained.map(|te| te.bound.clone()).unwrap_or_default();
                if !bound.is_empty() {
                    let vals: Vec<String> =
                        bound.iter().map(|(a, v)| format!("{a} = {v}")).collect();
                    let _ = write!(text, " binding {}", vals.join(", "));
                }
                Some(
                    bound
                        .iter()
                        .map(|(a, v)| {
                            (
                                a.clone(),
                                v.values().into_iter().map(|s| s.to_string()).collect(),
                            )
                        })
                        .collect(),
                )
            } else {
                None
            };
            // A column some grant of a union shows unmasked is masked on
            // the other grants' rows only: still a mask.
            TableView {
                state: State::Sandboxed { rules, bound, text },
                visible,
                writes: BTreeMap::new(),
                masked,
            }
        }
    };
    TableView { writes, ..view }
}

/// The write commands `p` may run on `t`, each with its rules described
/// (permissive ones, then restrictive ones; filter and check).
fn write_view(
    policy: &Policy,
    p: &Principal,
    db: &Database,
    t: &Table,
) -> BTreeMap<&'static str, String> {
    use crate::policy::Command;
    let mut out = BTreeMap::new();
    for (c, name) in [
        (Command::Insert, "INSERT"),
        (Command::Update, "UPDATE"),
        (Command::Delete, "DELETE"),
    ] {
        if let Ok((perm, restr)) = access::decide_write(policy, p, db, t, c) {
            let describe = |r: &crate::policy::Rule| {
                let check = r
                    .check
                    .as_ref()
                    .map_or_else(String::new, |c| format!(" check {}", c.filter.trim()));
                format!("{} ({}){check}", r.filter.trim(), r.group)
            };
            let mut text = perm
                .iter()
                .map(|r| describe(r))
                .collect::<Vec<_>>()
                .join(" OR ");
            for r in &restr {
                let _ = write!(text, " AND restrictive {}", describe(r));
            }
            out.insert(name, text);
        }
    }
    out
}

/// Whether every row `inner` lets through, `outer` lets through too
/// (provably; `false` when it cannot tell).
fn within(inner: &[Rule], inner_bound: &Bound, outer: &[Rule], outer_bound: &Bound) -> bool {
    // Same attribute, values of `inner` among those of `outer`.
    let values_within = |attr: &str| match (inner_bound, outer_bound) {
        (None, None) => true,
        (Some(i), Some(o)) => match (i.get(attr), o.get(attr)) {
            (Some(iv), Some(ov)) => iv.is_subset(ov),
            _ => false,
        },
        _ => false,
    };
    let values_equal = |attr: &str| match (inner_bound, outer_bound) {
        (None, None) => true,
        (Some(i), Some(o)) => matches!((i.get(attr), o.get(attr)), (Some(a), Some(b)) if a == b),
        _ => false,
    };
    !inner.is_empty()
        && inner.iter().all(|b| {
            outer.iter().any(|a| match (b, a) {
                (Rule::Filters(fb), Rule::Filters(fa)) => {
                    fa.is_subset(fb) && fa.iter().all(|(_, _, attr)| values_within(attr))
                }
                (
                    Rule::Opaque {
                        key: kb,
                        attributes: ab,
                    },
                    Rule::Opaque {
                        key: ka,
                        attributes: _,
                    },
                ) => kb == ka && ab.iter().all(|attr| values_equal(attr)),
                (Rule::Filters(_), Rule::Opaque { .. })
                | (Rule::Opaque { .. }, Rule::Filters(_)) => false,
            })
        })
}

struct Emit<'a> {
    principal: Option<String>,
    out: &'a mut Vec<Change>,
}

impl Emit<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        database: Option<&str>,
        table: Option<&str>,
        collection: Option<&str>,
        kind: Kind,
        class: Class,
        old: Option<String>,
        new: Option<String>,
        columns: Vec<String>,
        message: String,
    ) {
        self.out.push(Change {
            principal: self.principal.clone(),
            database: database.map(str::to_string),
            table: table.map(str::to_string),
            collection: collection.map(str::to_string),
            question: None,
            kind,
            class,
            old,
            new,
            columns,
            message,
        });
    }
}

fn compare(who: &Who, old: &View, new: &View, out: &mut Vec<Change>) {
    let mut e = Emit {
        principal: Some(who.id()),
        out,
    };
    let what = match who {
        Who::User(_) => "user",
        Who::Group(_) => "group",
        Who::ApiKey(_) => "API key",
        Who::Anonymous => "anonymous principal",
    };
    match (old.exists, new.exists) {
        (false, true) => e.push(
            None,
            None,
            None,
            Kind::Principal,
            Class::Widen,
            None,
            Some(who.id()),
            vec![],
            format!("{what} added"),
        ),
        (true, false) => e.push(
            None,
            None,
            None,
            Kind::Principal,
            Class::Narrow,
            Some(who.id()),
            None,
            vec![],
            format!("{what} removed"),
        ),
        (true, true) => {
            if old.groups != new.groups && !matches!(who, Who::Group(_) | Who::Anonymous) {
                let (o, n) = (old.groups.join(", "), new.groups.join(", "));
                e.push(
                    None,
                    None,
                    None,
                    Kind::Membership,
                    Class::Neutral,
                    Some(o.clone()),
                    Some(n.clone()),
                    vec![],
                    format!("groups [{o}] → [{n}] (what that changes is listed separately)"),
                );
            }
            if old.secret != new.secret {
                let (o, n) = (
                    old.secret.clone().unwrap_or_default(),
                    new.secret.clone().unwrap_or_default(),
                );
                let what = if n.len() > o.len() && o.iter().all(|h| n.contains(h)) {
                    "a new secret is accepted beside the old one (rotation started)"
                } else if o.len() > n.len() && n.iter().all(|h| o.contains(h)) {
                    "the previous secret is no longer accepted (rotation finished)"
                } else {
                    "secret (sha256) changed"
                };
                e.push(
                    None,
                    None,
                    None,
                    Kind::Membership,
                    Class::Neutral,
                    None,
                    None,
                    vec![],
                    what.into(),
                );
            }
        }
        (false, false) => {}
    }

    // Native SQL and routes, per database.
    let dbs: BTreeSet<&String> = old.native.keys().chain(new.native.keys()).collect();
    for db in dbs {
        let o = old.native.get(db).copied().unwrap_or(false);
        let n = new.native.get(db).copied().unwrap_or(false);
        if o != n {
            let (class, verb) = if n {
                (Class::Widen, "gained")
            } else {
                (Class::Narrow, "lost")
            };
            e.push(
                Some(db),
                None,
                None,
                Kind::Native,
                class,
                Some(o.to_string()),
                Some(n.to_string()),
                vec![],
                format!("{db}: native SQL {verb}"),
            );
        }
        if let (Some(o), Some(n)) = (old.routes.get(db), new.routes.get(db)) {
            let class = match (o, n) {
                (Ok(a), Ok(b)) if a == b => None,
                (Err(_), Err(_)) => None,
                (Err(_), Ok(_)) => Some((Class::Widen, "route opened")),
                (Ok(_), Err(_)) => Some((Class::Narrow, "route refused")),
                (Ok(_), Ok(_)) => Some((Class::Widen, "route changed (treated as widening)")),
            };
            if let Some((class, verb)) = class {
                let text = |r: &std::result::Result<String, String>| match r {
                    Ok(s) => s.clone(),
                    Err(why) => format!("refused ({why})"),
                };
                e.push(
                    Some(db),
                    None,
                    None,
                    Kind::Route,
                    class,
                    Some(text(o)),
                    Some(text(n)),
                    vec![],
                    format!("{db}: {verb}: {} → {}", text(o), text(n)),
                );
            }
        }
    }

    // Tables.
    let keys: BTreeSet<&(String, String)> = old.tables.keys().chain(new.tables.keys()).collect();
    // A table the policy does not declare; for a principal the policy
    // does not have, every table is simply denied.
    let missing = |v: &View| TableView {
        state: if v.exists {
            State::NotDeclared
        } else {
            State::Denied
        },
        visible: BTreeMap::new(),
        writes: BTreeMap::new(),
        masked: BTreeMap::new(),
    };
    let (missing_old, missing_new) = (missing(old), missing(new));
    for key in keys {
        let (db, table) = key;
        let o = old.tables.get(key).unwrap_or(&missing_old);
        let n = new.tables.get(key).unwrap_or(&missing_new);
        let subject = format!("{db}.{table}");
        let (lo, ln) = (o.state.level(), n.state.level());
        let (od, nd) = (o.state.describe(), n.state.describe());
        let access = |class, verb: &str| {
            (
                class,
                format!("{subject}: access {verb}: {od} → {nd}"),
                Kind::Access,
            )
        };
        let line = if ln > lo {
            Some(access(Class::Widen, "gained"))
        } else if ln < lo {
            Some(access(
                Class::Narrow,
                if ln == 0 { "lost" } else { "reduced" },
            ))
        } else {
            match (&o.state, &n.state) {
                (
                    State::Sandboxed {
                        rules: ro,
                        bound: bo,
                        ..
                    },
                    State::Sandboxed {
                        rules: rn,
                        bound: bn,
                        ..
                    },
                ) => {
                    let narrower = within(rn, bn, ro, bo);
                    let wider = within(ro, bo, rn, bn);
                    let verb = match (narrower, wider) {
                        (true, true) => None,
                        (true, false) => Some((Class::Narrow, "sandbox narrowed")),
                        (false, true) => Some((Class::Widen, "sandbox widened")),
                        (false, false) => {
                            Some((Class::Widen, "sandbox changed (treated as widening)"))
                        }
                    };
                    verb.map(|(class, verb)| {
                        let message = if od == nd {
                            // Same description, different rule: a custom
                            // sandbox's question or its bindings.
                            format!(
                                "{subject}: {verb}: {od} (its question's SQL or parameters changed)"
                            )
                        } else {
                            format!("{subject}: {verb}: {od} → {nd}")
                        };
                        (class, message, Kind::Sandbox)
                    })
                }
                (State::Denied, State::Refused(_)) | (State::Refused(_), State::Denied)
                    if old.exists && new.exists =>
                {
                    Some((
                        Class::Neutral,
                        format!("{subject}: still no access: {od} → {nd}"),
                        Kind::Access,
                    ))
                }
                _ => None,
            }
        };
        if let Some((class, message, kind)) = line {
            e.push(
                Some(db),
                Some(table),
                None,
                kind,
                class,
                Some(od.clone()),
                Some(nd.clone()),
                vec![],
                message,
            );
        }
        for command in ["INSERT", "UPDATE", "DELETE"] {
            let (ow, nw) = (o.writes.get(command), n.writes.get(command));
            let change = match (ow, nw) {
                (None, Some(w)) => {
                    Some((Class::Widen, format!("{subject}: {command} gained: {w}")))
                }
                (Some(w), None) => Some((Class::Narrow, format!("{subject}: {command} lost: {w}"))),
                (Some(a), Some(b)) if a != b => Some((
                    Class::Widen,
                    format!("{subject}: {command} rules changed (treated as widening): {a} → {b}"),
                )),
                _ => None,
            };
            if let Some((class, message)) = change {
                e.push(
                    Some(db),
                    Some(table),
                    None,
                    Kind::Write,
                    class,
                    ow.cloned(),
                    nw.cloned(),
                    vec![],
                    message,
                );
            }
        }
        if lo > 0 && ln > 0 {
            let shown: Vec<String> = n
                .visible
                .iter()
                .filter(|(k, _)| !o.visible.contains_key(*k))
                .map(|(_, v)| v.clone())
                .collect();
            let hidden: Vec<String> = o
                .visible
                .iter()
                .filter(|(k, _)| !n.visible.contains_key(*k))
                .map(|(_, v)| v.clone())
                .collect();
            // Masks: one removed or changed may show more (a change is
            // never proven narrower); one added shows less.
            let mut unmasked = Vec::new();
            let mut changed = Vec::new();
            let mut masked = Vec::new();
            for (k, name) in &n.visible {
                if !o.visible.contains_key(k) {
                    continue;
                }
                match (o.masked.get(k), n.masked.get(k)) {
                    (Some(_), None) => unmasked.push(name.clone()),
                    (None, Some(m)) => masked.push(format!("{name} ({m})")),
                    (Some(a), Some(b)) if a != b => changed.push(format!("{name} ({a} → {b})")),
                    _ => {}
                }
            }
            for (cols, class, verb) in [
                (shown, Class::Widen, "columns newly visible"),
                (hidden, Class::Narrow, "columns hidden"),
                (unmasked, Class::Widen, "columns unmasked"),
                (changed, Class::Widen, "masks changed"),
                (masked, Class::Narrow, "columns newly masked"),
            ] {
                if !cols.is_empty() {
                    let message = format!("{subject}: {verb}: {}", cols.join(", "));
                    e.push(
                        Some(db),
                        Some(table),
                        None,
                        Kind::Columns,
                        class,
                        None,
                        None,
                        cols,
                        message,
                    );
                }
            }
        }
    }

    // Collections.
    let cols: BTreeSet<&String> = old
        .collections
        .keys()
        .chain(new.collections.keys())
        .collect();
    for c in cols {
        let o = old
            .collections
            .get(c)
            .copied()
            .unwrap_or(CollectionLevel::None);
        let n = new
            .collections
            .get(c)
            .copied()
            .unwrap_or(CollectionLevel::None);
        if o != n {
            let class = if n > o { Class::Widen } else { Class::Narrow };
            let (os, ns) = (level(o), level(n));
            e.push(
                None,
                None,
                Some(c),
                Kind::Collection,
                class,
                Some(os.into()),
                Some(ns.into()),
                vec![],
                format!("collection {c}: {os} → {ns}"),
            );
        }
    }

    // Saved questions run by name.
    let qs: BTreeSet<&String> = old.questions.keys().chain(new.questions.keys()).collect();
    for q in qs {
        let o = old.questions.get(q).copied().unwrap_or(false);
        let n = new.questions.get(q).copied().unwrap_or(false);
        if o != n {
            let (class, verb) = if n {
                (Class::Widen, "may now be run")
            } else {
                (Class::Narrow, "may no longer be run")
            };
            let allowed = |b: bool| Some(if b { "allowed" } else { "denied" }.to_string());
            e.out.push(Change {
                principal: e.principal.clone(),
                database: None,
                table: None,
                collection: None,
                question: Some(q.clone()),
                kind: Kind::Question,
                class,
                old: allowed(o),
                new: allowed(n),
                columns: vec![],
                message: format!("question {q} {verb} (its SQL is sandboxed like any other)"),
            });
        }
    }
}

fn level(l: CollectionLevel) -> &'static str {
    match l {
        CollectionLevel::None => "none",
        CollectionLevel::View => "view",
        CollectionLevel::Curate => "curate",
    }
}

fn fence(f: FenceMode) -> &'static str {
    match f {
        FenceMode::Auto => "auto",
        FenceMode::Always => "always",
        FenceMode::Never => "never",
    }
}

/// Changes that concern every principal alike: databases, tables and their
/// columns, fences, routing and impersonation rules, function lists.
fn policy_wide(old: &Policy, new: &Policy, out: &mut Vec<Change>) {
    let mut e = Emit {
        principal: None,
        out,
    };
    let names: BTreeSet<&String> = old.databases.keys().chain(new.databases.keys()).collect();
    for name in names {
        let (o, n) = match (old.databases.get(name), new.databases.get(name)) {
            (Some(o), Some(n)) => (o, n),
            (o, n) => {
                let verb = if n.is_some() { "declared" } else { "dropped" };
                e.push(
                    Some(name),
                    None,
                    None,
                    Kind::Database,
                    Class::Neutral,
                    o.map(|d| d.dialect.to_string()),
                    n.map(|d| d.dialect.to_string()),
                    vec![],
                    format!("database {name} {verb} (who may read it is listed per principal)"),
                );
                continue;
            }
        };
        if o.dialect != n.dialect {
            e.push(
                Some(name),
                None,
                None,
                Kind::Database,
                Class::Neutral,
                Some(o.dialect.to_string()),
                Some(n.dialect.to_string()),
                vec![],
                format!("database {name}: dialect {} → {}", o.dialect, n.dialect),
            );
        }
        if o.fence != n.fence {
            let class = match (o.fence, n.fence) {
                (_, FenceMode::Never) => Class::Widen,
                (FenceMode::Never, _) => Class::Narrow,
                (FenceMode::Auto | FenceMode::Always, FenceMode::Auto | FenceMode::Always) => {
                    Class::Neutral
                }
            };
            e.push(
                Some(name),
                None,
                None,
                Kind::Fence,
                class,
                Some(fence(o.fence).into()),
                Some(fence(n.fence).into()),
                vec![],
                format!(
                    "database {name}: fence {} → {}",
                    fence(o.fence),
                    fence(n.fence)
                ),
            );
        }
        routing_rules(&mut e, name, o, n);
        let columns = |d: &Database| -> BTreeMap<String, BTreeMap<String, String>> {
            d.tables()
                .into_iter()
                .map(|t| (t.qualified(), all_columns(t)))
                .collect()
        };
        let (co, cn) = (columns(o), columns(n));
        let tables: BTreeSet<&String> = co.keys().chain(cn.keys()).collect();
        for t in tables {
            match (co.get(t), cn.get(t)) {
                (Some(a), Some(b)) => {
                    for (cols, verb) in [
                        (
                            b.iter()
                                .filter(|(k, _)| !a.contains_key(*k))
                                .map(|(_, v)| v.clone())
                                .collect::<Vec<_>>(),
                            "declared",
                        ),
                        (
                            a.iter()
                                .filter(|(k, _)| !b.contains_key(*k))
                                .map(|(_, v)| v.clone())
                                .collect::<Vec<_>>(),
                            "dropped",
                        ),
                    ] {
                        if !cols.is_empty() {
                            let message =
                                format!("{name}.{t}: columns {verb}: {}", cols.join(", "));
                            e.push(
                                Some(name),
                                Some(t),
                                None,
                                Kind::Columns,
                                Class::Neutral,
                                None,
                                None,
                                cols,
                                message,
                            );
                        }
                    }
                }
                (a, b) => {
                    let verb = if b.is_some() { "declared" } else { "dropped" };
                    e.push(
                        Some(name),
                        Some(t),
                        None,
                        Kind::Table,
                        Class::Neutral,
                        a.map(|_| "declared".to_string()),
                        b.map(|_| "declared".to_string()),
                        vec![],
                        format!(
                            "table {name}.{t} {verb} (who may read it is listed per principal)"
                        ),
                    );
                }
            }
        }
    }
    for (what, o, n) in [
        ("function", &old.functions.allow, &new.functions.allow),
        (
            "variable",
            &old.functions.variables,
            &new.functions.variables,
        ),
    ] {
        set_changes(&mut e, o, n, |x, added| {
            if added {
                (Class::Widen, format!("native SQL may use {what} `{x}`"))
            } else {
                (
                    Class::Narrow,
                    format!("native SQL may no longer use {what} `{x}`"),
                )
            }
        });
    }
    set_changes(
        &mut e,
        &old.functions.deny,
        &new.functions.deny,
        |x, added| {
            if added {
                (Class::Narrow, format!("function `{x}` denied"))
            } else {
                (Class::Widen, format!("function `{x}` no longer denied"))
            }
        },
    );
}

fn set_changes(
    e: &mut Emit<'_>,
    old: &std::collections::HashSet<String>,
    new: &std::collections::HashSet<String>,
    line: impl Fn(&str, bool) -> (Class, String),
) {
    let all: BTreeSet<&String> = old.iter().chain(new.iter()).collect();
    for x in all {
        let (o, n) = (old.contains(x), new.contains(x));
        if o != n {
            let (class, message) = line(x, n);
            e.push(
                None,
                None,
                None,
                Kind::Functions,
                class,
                None,
                None,
                vec![],
                message,
            );
        }
    }
}

/// Routing and impersonation rules of one database, in attribute names.
fn routing_rules(e: &mut Emit<'_>, name: &str, o: &Database, n: &Database) {
    let rule = |d: &Database| {
        d.routing.as_ref().map(|r| {
            let dests: Vec<String> = r
                .destinations
                .iter()
                .map(|(slug, db)| match db {
                    Some(db) => format!("{slug} (database {db})"),
                    None => slug.clone(),
                })
                .collect();
            format!(
                "by attribute `{}` to {} or {ROUTER}",
                r.attribute,
                dests.join(", ")
            )
        })
    };
    let (ro, rn) = (rule(o), rule(n));
    if ro != rn {
        // Only destinations dropped, attribute and the rest unchanged: narrower.
        let narrower = match (&o.routing, &n.routing) {
            (Some(a), Some(b)) => {
                a.attribute == b.attribute
                    && b.destinations
                        .iter()
                        .all(|(k, v)| a.destinations.get(k) == Some(v))
            }
            _ => false,
        };
        let class = if narrower {
            Class::Narrow
        } else {
            Class::Widen
        };
        let show = |r: &Option<String>| r.clone().unwrap_or_else(|| "none".into());
        e.push(
            Some(name),
            None,
            None,
            Kind::Routing,
            class,
            ro.clone(),
            rn.clone(),
            vec![],
            format!(
                "database {name}: routing {} → {}{}",
                show(&ro),
                show(&rn),
                if narrower {
                    ""
                } else {
                    " (changed, treated as widening)"
                }
            ),
        );
    }
    let imp = |d: &Database| {
        d.impersonation
            .as_ref()
            .map(|i| format!("role from attribute `{}`", i.attribute))
    };
    let (io, inew) = (imp(o), imp(n));
    if io != inew {
        let show = |r: &Option<String>| r.clone().unwrap_or_else(|| "none".into());
        e.push(
            Some(name),
            None,
            None,
            Kind::Impersonation,
            Class::Widen,
            io.clone(),
            inew.clone(),
            vec![],
            format!(
                "database {name}: impersonation {} → {} (changed, treated as widening)",
                show(&io),
                show(&inew)
            ),
        );
    }
}
