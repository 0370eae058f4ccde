//! The effective permission of a principal on a table: the union over its
//! groups, most permissive first (unrestricted > sandboxed > no access).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::policy::{
    CollectionLevel, Combine, Database, DbGrant, Policy, Question, Sandbox, SandboxKind,
    SchemaGrant, Table, TableGrant,
};
use crate::principal::Principal;

/// What a principal may do with one table.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Read it as is (granted unrestricted, or the principal is an admin).
    Unrestricted {
        /// The group that granted it (`administrators` for admins).
        group: String,
    },
    /// Read it through a sandbox. Several sandboxes only with `combine: union`.
    Sandboxed(Vec<Arc<Sandbox>>),
}

/// One group's grant on a table, flattened through database and schema.
pub fn group_grant(grant: Option<&DbGrant>, table: &Table) -> TableGrant {
    match grant {
        None | Some(DbGrant::NoAccess) | Some(DbGrant::Blocked) => TableGrant::NoAccess,
        Some(DbGrant::Unrestricted) => TableGrant::Unrestricted,
        Some(DbGrant::Schemas(schemas)) => match schemas.get(&table.key.schema) {
            None | Some(SchemaGrant::NoAccess) => TableGrant::NoAccess,
            Some(SchemaGrant::Unrestricted) => TableGrant::Unrestricted,
            Some(SchemaGrant::Tables(tables)) => tables
                .get(&table.key.name)
                .cloned()
                .unwrap_or(TableGrant::NoAccess),
        },
    }
}

/// Decides how `principal` may read `table` of `db`.
pub fn decide(
    policy: &Policy,
    principal: &Principal,
    db: &Database,
    table: &Table,
) -> Result<Decision> {
    if principal.is_admin() {
        return Ok(Decision::Unrestricted {
            group: crate::policy::ADMINISTRATORS.to_string(),
        });
    }
    // PostgreSQL's model: the permissive grants of all the principal's
    // groups, combined as the table says (`combine: error` refuses two
    // different ones, as Metabase does; `union` ORs them), and every
    // group's restrictive rules ANDed on top.
    let mut permissive: Vec<Arc<Sandbox>> = Vec::new();
    let mut restrictive: Vec<Arc<crate::policy::Rule>> = Vec::new();
    let mut unrestricted: Option<&String> = None;
    for gname in principal.groups() {
        let Some(group) = policy.groups.get(gname) else {
            continue;
        };
        match group_grant(group.data.get(&db.name), table) {
            TableGrant::Unrestricted => {
                unrestricted.get_or_insert(gname);
            }
            TableGrant::Sandbox(s) => {
                for r in &s.restrictive {
                    if !restrictive.iter().any(|x| x == r) {
                        restrictive.push(Arc::clone(r));
                    }
                }
                let grants_rows = !matches!(&s.kind, SandboxKind::Rules(r) if r.is_empty());
                if grants_rows
                    && !permissive
                        .iter()
                        .any(|x| x.kind == s.kind && same_masks(&x.masks, &s.masks))
                {
                    permissive.push(if s.restrictive.is_empty() {
                        s
                    } else {
                        Arc::new(Sandbox {
                            group: s.group.clone(),
                            kind: clone_kind(&s.kind),
                            restrictive: Vec::new(),
                            writes: Vec::new(),
                            masks: s.masks.clone(),
                        })
                    });
                }
            }
            TableGrant::NoAccess => {}
        }
    }
    let with_restrictive = |kind: SandboxKind, group: String| {
        Arc::new(Sandbox {
            group,
            kind,
            restrictive: restrictive.clone(),
            writes: Vec::new(),
            masks: Vec::new(),
        })
    };
    if let Some(group) = unrestricted {
        if restrictive.is_empty() {
            return Ok(Decision::Unrestricted {
                group: group.clone(),
            });
        }
        return Ok(Decision::Sandboxed(vec![with_restrictive(
            SandboxKind::All,
            group.clone(),
        )]));
    }
    let mut out: Vec<Arc<Sandbox>> = match permissive.as_slice() {
        [] if table.on_denied == crate::policy::OnDenied::Empty => {
            return Ok(Decision::Sandboxed(vec![Arc::new(Sandbox {
                group: String::new(),
                kind: SandboxKind::Empty,
                restrictive: Vec::new(),
                writes: Vec::new(),
                masks: Vec::new(),
            })]))
        }
        [] => {
            return Err(Error::AccessDenied {
                principal: principal.name().to_string(),
                object: format!("table {}", table.qualified()),
                reason: format!(
                    "none of the groups [{}] grants access to it in database `{}`",
                    principal.groups().join(", "),
                    db.name
                ),
            })
        }
        [_] => permissive,
        [a, b, ..] => {
            let unionable = permissive.iter().all(|s| match &s.kind {
                // `All` here is a masks-only grant: every row, masked.
                SandboxKind::Basic(_) | SandboxKind::Rules(_) | SandboxKind::All => true,
                SandboxKind::Custom { question, .. } => {
                    policy.questions.get(question).is_some_and(|q| {
                        crate::policy::question::filter_of(&q.query, table, db.dialect).is_some()
                    })
                }
                SandboxKind::Empty => false,
            });
            if table.combine == Combine::Union && unionable {
                permissive
            } else {
                return Err(Error::SandboxConflict {
                    table: table.qualified(),
                    group_a: a.group.clone(),
                    sandbox_a: a.describe(),
                    group_b: b.group.clone(),
                    sandbox_b: b.describe(),
                });
            }
        }
    };
    if !restrictive.is_empty() {
        if let Some(custom) = out
            .iter()
            .find(|s| matches!(s.kind, SandboxKind::Custom { .. }))
        {
            let r = restrictive
                .first()
                .map(|r| r.group.clone())
                .unwrap_or_default();
            return Err(Error::SandboxConflict {
                table: table.qualified(),
                group_a: custom.group.clone(),
                sandbox_a: custom.kind.describe(),
                group_b: r,
                sandbox_b: "restrictive rules, which cannot narrow a custom sandbox (its question decides the rows; write the restriction into it)".into(),
            });
        }
        // Restrictive rules ride on the first grant; the rewrite ANDs them
        // once, on top of all.
        if let Some(first) = out.first_mut() {
            *first = Arc::new(Sandbox {
                group: first.group.clone(),
                kind: clone_kind(&first.kind),
                restrictive,
                writes: Vec::new(),
                masks: first.masks.clone(),
            });
        }
    }
    Ok(Decision::Sandboxed(out))
}

/// What a non-administrator is told about a table it may not read: the
/// same whether the table is not declared or no group of theirs grants
/// it, and named as the query wrote it, so that a refusal tells nothing
/// about which tables exist (`explain` tells an administrator why).
///
/// `hint` (from [`readable_hint`]) is appended: it names only tables the
/// principal may read, and is computed the same way whether or not the
/// table exists, so it tells nothing more.
pub(crate) fn invisible_table(
    principal: &Principal,
    written: &str,
    db: &Database,
    hint: &str,
) -> Error {
    Error::AccessDenied {
        principal: principal.name().to_string(),
        object: format!("table {written}"),
        reason: format!(
            "database `{}` has no table of that name that this principal may read (undeclared tables, tables no group of theirs grants, system catalogs and information_schema are refused alike){hint}",
            db.name
        ),
    }
}

/// "; did you mean `public.orders`?" for a table name (normalised schema,
/// if written, and name) that the principal cannot read: the nearest of
/// the tables it may read. A written schema that holds none of them is
/// matched against those that do (a misspelt schema), then the name
/// against that schema's tables; an unqualified name against the default
/// schema's. Empty when nothing is close.
pub(crate) fn readable_hint(
    policy: &Policy,
    principal: &Principal,
    db: &Database,
    schema: Option<&str>,
    name: &str,
) -> String {
    use crate::suggest::closest;
    let readable: Vec<&Arc<Table>> = db
        .tables()
        .into_iter()
        .filter(|t| decide(policy, principal, db, t).is_ok())
        .collect();
    let in_schema = |s: &str| -> Vec<&str> {
        readable
            .iter()
            .filter(|t| t.key.schema == s)
            .map(|t| t.key.name.as_str())
            .collect()
    };
    let qualified = schema.is_some();
    let (schema, exact) = match schema {
        None => (db.default_schema.as_str(), true),
        Some(s) if readable.iter().any(|t| t.key.schema == s) => (s, true),
        Some(s) => {
            let schemas: std::collections::BTreeSet<&str> =
                readable.iter().map(|t| t.key.schema.as_str()).collect();
            match closest(s, schemas) {
                Some(near) => (near, false),
                None => return String::new(),
            }
        }
    };
    let names = in_schema(schema);
    let table = if !exact && names.contains(&name) {
        Some(name)
    } else {
        closest(name, names)
    };
    match table {
        Some(t) if qualified => format!("; did you mean `{schema}.{t}`?"),
        Some(t) => format!("; did you mean `{t}`?"),
        None => String::new(),
    }
}

/// What a non-administrator is told about a saved question it may not run:
/// the same whether it does not exist or sits in a collection they may not
/// view (naming the collection would reveal another client's).
pub(crate) fn invisible_question(principal: &Principal, name: &str) -> Error {
    Error::AccessDenied {
        principal: principal.name().to_string(),
        object: format!("question `{name}`"),
        reason: "there is no such question that this principal may run".to_string(),
    }
}

/// A principal's write rules for one command on one table: permissive
/// (ORed), restrictive (ANDed).
pub type WriteRules = (Vec<Arc<crate::policy::Rule>>, Vec<Arc<crate::policy::Rule>>);

/// The write rules that let `principal` run `command` on `table`:
/// permissive ones (ORed) and restrictive ones (ANDed), from all its
/// groups. Writes are refused unless some group's rule grants them —
/// an `unrestricted` read grant does not, nor does being an administrator.
pub fn decide_write(
    policy: &Policy,
    principal: &Principal,
    db: &Database,
    table: &Table,
    command: crate::policy::Command,
) -> Result<WriteRules> {
    let mut permissive: Vec<Arc<crate::policy::Rule>> = Vec::new();
    let mut restrictive: Vec<Arc<crate::policy::Rule>> = Vec::new();
    if !principal.is_admin() {
        for gname in principal.groups() {
            let Some(group) = policy.groups.get(gname) else {
                continue;
            };
            if let TableGrant::Sandbox(s) = group_grant(group.data.get(&db.name), table) {
                for r in s.writes.iter().filter(|r| command.in_set(r.commands)) {
                    let list = if r.restrictive {
                        &mut restrictive
                    } else {
                        &mut permissive
                    };
                    if !list.iter().any(|x| x == r) {
                        list.push(Arc::clone(r));
                    }
                }
            }
        }
    }
    if permissive.is_empty() {
        return Err(Error::WriteDenied {
            principal: principal.name().to_string(),
            command: command.to_string(),
            table: table.qualified(),
            reason: if principal.is_admin() {
                "administrators read everything, but write only through write rules, which their group cannot have".to_string()
            } else {
                format!(
                    "no rule of the groups [{}] grants {command} on it in database `{}`",
                    principal.groups().join(", "),
                    db.name
                )
            },
        });
    }
    Ok((permissive, restrictive))
}

/// Whether two grants mask the same columns the same way.
fn same_masks(a: &[Arc<crate::policy::Mask>], b: &[Arc<crate::policy::Mask>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.column == y.column
                && x.kind == y.kind
                && x.value == y.value
                && x.unless.as_ref().map(|u| &u.expr) == y.unless.as_ref().map(|u| &u.expr)
        })
}

/// A copy of a sandbox kind (its rules shared).
fn clone_kind(k: &SandboxKind) -> SandboxKind {
    match k {
        SandboxKind::Basic(f) => SandboxKind::Basic(f.clone()),
        SandboxKind::Custom {
            question,
            parameters,
        } => SandboxKind::Custom {
            question: question.clone(),
            parameters: parameters.clone(),
        },
        SandboxKind::Rules(r) => SandboxKind::Rules(r.clone()),
        SandboxKind::All => SandboxKind::All,
        SandboxKind::Empty => SandboxKind::Empty,
    }
}

/// Whether `principal` may create query-builder questions on `db` (some
/// group's `queries:` level is `builder` or `native`).
pub fn check_builder(policy: &Policy, principal: &Principal, db: &Database) -> Result<()> {
    if principal.is_admin()
        || principal
            .groups()
            .iter()
            .filter_map(|g| policy.groups.get(g))
            .any(|g| g.query_level(&db.name) >= crate::policy::QueryLevel::Builder)
    {
        Ok(())
    } else {
        Err(Error::BuilderDenied {
            principal: principal.name().to_string(),
            database: db.name.clone(),
        })
    }
}

/// Whether `principal` may send native SQL to `db`.
pub fn check_native(policy: &Policy, principal: &Principal, db: &Database) -> Result<()> {
    if principal.is_admin()
        || principal
            .groups()
            .iter()
            .filter_map(|g| policy.groups.get(g))
            .any(|g| g.native(&db.name))
    {
        Ok(())
    } else {
        Err(Error::NativeDenied {
            principal: principal.name().to_string(),
            database: db.name.clone(),
        })
    }
}

/// The principal's effective permission on a collection: per group, the
/// nearest explicit grant walking up the collection tree (sub-collections
/// inherit unless they say otherwise); the most permissive over groups.
pub fn collection_level(
    policy: &Policy,
    principal: &Principal,
    collection: &str,
) -> CollectionLevel {
    if principal.is_admin() {
        return CollectionLevel::Curate;
    }
    principal
        .groups()
        .iter()
        .filter_map(|g| policy.groups.get(g))
        .map(|g| {
            let mut cur = Some(collection);
            let mut guard = 0;
            while let Some(c) = cur {
                if let Some(level) = g.collection_level(c) {
                    return level;
                }
                cur = policy.collections.get(c).and_then(|c| c.parent.as_deref());
                guard += 1;
                if guard > 1000 {
                    break;
                }
            }
            CollectionLevel::None
        })
        .max()
        .unwrap_or(CollectionLevel::None)
}

/// Whether `principal` may run saved question `q` by name: view on its
/// collection, and a database that is not `blocked` for it.
pub fn check_question(policy: &Policy, principal: &Principal, q: &Question) -> Result<()> {
    if principal.is_admin() {
        return Ok(());
    }
    let denied = |reason: String| Error::AccessDenied {
        principal: principal.name().to_string(),
        object: format!("question `{}`", q.name),
        reason,
    };
    let collection = &q.collection;
    if collection_level(policy, principal, collection) < CollectionLevel::View {
        return Err(denied(format!(
            "no group of [{}] may view collection `{collection}`",
            principal.groups().join(", ")
        )));
    }
    // Metabase: `blocked` on a database hides saved questions on it even
    // from people who can view their collection, unless another group
    // grants access to that database.
    let grants: Vec<Option<&DbGrant>> = principal
        .groups()
        .iter()
        .filter_map(|g| policy.groups.get(g))
        .map(|g| g.data.get(&q.database))
        .collect();
    let blocked = grants.iter().any(|g| matches!(g, Some(DbGrant::Blocked)));
    let granted = grants
        .iter()
        .any(|g| matches!(g, Some(DbGrant::Unrestricted) | Some(DbGrant::Schemas(_))));
    if blocked && !granted {
        return Err(denied(format!(
            "database `{}` is blocked for this principal",
            q.database
        )));
    }
    Ok(())
}
