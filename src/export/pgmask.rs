//! Column masks in the PostgreSQL export.
//!
//! For every table some group masks, the export creates one view in the
//! schema `<prefix>masked`, named like the table (`<schema>_<table>`
//! outside the database's default schema), `WITH (security_barrier)`,
//! that computes each masked column as the rewrite does under `combine:
//! union`: the stored value on the rows of a grant of the caller that
//! shows it, else the mask of the first grant of the caller that masks it
//! (`CASE WHEN <caller is a member of the group role> AND <the group's row
//! condition> THEN … END`). The masked groups' roles lose `SELECT` on the
//! masked columns of the table (column privileges: they keep the others),
//! so the stored value cannot be read around the view.
//!
//! *Rows.* The views run with their owner's rights, not the caller's:
//! with `security_invoker` the caller would need `SELECT` on the masked
//! columns, and could then read them from the table. The owner is the
//! masking role `<prefix>masking` (`NOLOGIN`, no `BYPASSRLS`, not the
//! tables' owner), and every SELECT policy of a database with masks also
//! applies to it, guarded by `pg_has_role(current_user, '<group role>',
//! 'USAGE')`: inside a view `current_user` is still the caller, so the
//! view reads exactly the rows the caller's own policies give it (and a
//! rule's subquery on another table reads that table's rows for the
//! caller too).
//!
//! *Keys.* A `hash` key is never written into a view (anyone who may read
//! a view can read its definition in `pg_views`) nor into a function body
//! (`pg_proc.prosrc` is readable by everyone): it is a row of the table
//! `<prefix>masked.mask_keys`, owned by the masking role, readable by no
//! one else; the view reads it with its owner's rights. No function the
//! caller could call hashes guesses with the key.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use sqlparser::ast::{Expr, Ident, VisitMut, VisitorMut};

use super::{
    basic_condition, ident, literal, qualified, rule_condition, Access, ExportOptions, Out,
};
use crate::access::group_grant;
use crate::error::{Error, Result};
use crate::policy::mask::VALUE_MARKER;
use crate::policy::{Database, Mask, MaskKind, Policy, SandboxKind, Table, TableGrant};
use crate::principal::Scalar;

/// The role owning the masking views (and the hash keys) under `opts`.
pub fn masking_role(opts: &ExportOptions) -> String {
    format!("{}masking", opts.role_prefix)
}

/// The schema of the masking views under `opts`.
pub fn masked_schema(opts: &ExportOptions) -> String {
    format!("{}masked", opts.role_prefix)
}

/// The table of hash keys, in [`masked_schema`].
const KEYS: &str = "mask_keys";

/// Whether some group masks a column of `db`.
pub(super) fn has_masks(policy: &Policy, db: &Database) -> bool {
    db.tables().iter().any(|t| {
        policy.groups.values().any(|g| {
            matches!(group_grant(g.data.get(&db.name), t), TableGrant::Sandbox(s) if !s.masks.is_empty())
        })
    })
}

/// Refuses groups whose role would be named like the masking role or the
/// masking views' schema.
pub(super) fn check_names(opts: &ExportOptions, groups: &[&str]) -> Result<()> {
    for g in groups {
        let role = super::role_name(opts, g);
        if role == masking_role(opts) || role == masked_schema(opts) {
            return Err(Error::Unsupported {
                construct: format!(
                    "group `{g}` in a PostgreSQL export with column masks (its role `{role}` would be named like the masking role or the masking views' schema; rename the group or change the role prefix)"
                ),
            });
        }
    }
    Ok(())
}

/// The masked columns of a table (normalised names), over every group's grant.
pub(super) fn masked_columns<'a>(grants: impl Iterator<Item = &'a TableGrant>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for g in grants {
        if let TableGrant::Sandbox(s) = g {
            out.extend(s.masks.iter().map(|m| m.column.clone()));
        }
    }
    out
}

/// `pg_has_role(current_user, '<role>', 'USAGE')`: the caller has the
/// role's privileges, which is how PostgreSQL decides that a policy `TO
/// role` applies to it.
pub(super) fn member_of(role: &str) -> String {
    format!("pg_has_role(current_user, {}, 'USAGE')", literal(role))
}

/// What the PostgreSQL export cannot do in a database with masks, refused
/// with the table and group named: definer rules (their SECURITY DEFINER
/// functions must be executable by every caller of a view whose policies
/// call them, and return the stored columns), and row rules revealing
/// some columns only on a masked table (a view column has one privilege
/// for all rows).
pub(super) fn check_database(policy: &Policy, db: &Database) -> Result<()> {
    for t in db.tables() {
        let grants: Vec<(&String, TableGrant)> = policy
            .groups
            .iter()
            .map(|(name, g)| (name, group_grant(g.data.get(&db.name), t)))
            .collect();
        let masked = !masked_columns(grants.iter().map(|(_, g)| g)).is_empty();
        for (group, grant) in &grants {
            let TableGrant::Sandbox(s) = grant else {
                continue;
            };
            let rules: Vec<&std::sync::Arc<crate::policy::Rule>> = match &s.kind {
                SandboxKind::Rules(r) => r.iter().collect(),
                _ => Vec::new(),
            };
            let all = rules
                .iter()
                .copied()
                .chain(s.restrictive.iter())
                .chain(s.writes.iter())
                .chain(s.masks.iter().flat_map(|m| m.rules()));
            for r in all {
                if r.definer {
                    return Err(Error::Unsupported {
                        construct: format!(
                            "rule `{}` of group `{group}` on {} reading as definer (`as: definer`) in a PostgreSQL export with column masks (the masking views would need every caller to execute its SECURITY DEFINER function, which returns the stored columns)",
                            r.name,
                            t.qualified()
                        ),
                    });
                }
            }
            if masked {
                if let Some(r) = rules.iter().find(|r| r.columns.is_some()) {
                    return Err(Error::Unsupported {
                        construct: format!(
                            "rule `{}` of group `{group}` revealing some columns only (`columns:`) on {}, whose columns some group masks, in the PostgreSQL export (a masking view's column has one privilege for every row)",
                            r.name,
                            t.qualified()
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The name of a table's masking view (in [`masked_schema`]).
pub(super) fn view_name(db: &Database, t: &Table) -> String {
    if t.key.schema == db.default_schema {
        t.key.name.clone()
    } else {
        format!("{}_{}", t.key.schema, t.key.name)
    }
}

/// The condition under which a group's grant gives the caller a row:
/// membership in its role and its row condition; `None` for grants that
/// give no row of the table itself (custom sandboxes read through their
/// own view, restrictive rules alone).
fn unit(opts: &ExportOptions, a: &Access) -> Result<Option<String>> {
    let member = member_of(&a.role);
    Ok(match &a.grant {
        TableGrant::NoAccess => None,
        TableGrant::Unrestricted => Some(member),
        TableGrant::Sandbox(s) => match &s.kind {
            SandboxKind::All => Some(member),
            SandboxKind::Basic(filters) => Some(format!(
                "({member} AND {})",
                basic_condition(opts, filters)?
            )),
            SandboxKind::Rules(rules) if !rules.is_empty() => {
                let mut conds = Vec::new();
                for r in rules {
                    conds.push(format!("({})", rule_condition(opts, r)?));
                }
                Some(format!("({member} AND ({}))", conds.join(" OR ")))
            }
            SandboxKind::Rules(_) | SandboxKind::Custom { .. } | SandboxKind::Empty => None,
        },
    })
}

/// Whether two masks give the same values.
fn same_mask(a: &Mask, b: &Mask) -> bool {
    std::ptr::eq(a, b)
        || (a.kind == b.kind
            && a.value == b.value
            && a.unless.as_ref().map(|u| &u.expr) == b.unless.as_ref().map(|u| &u.expr))
}

/// The key name of a hash mask in the keys table.
fn key_name(t: &Table, m: &Mask) -> String {
    format!("{}.{}.{}.{}", t.key.schema, t.key.name, m.column, m.group)
}

/// A mask's SQL over the stored column: its constant as a literal, its hash
/// key read from the keys table, its expression and `unless` with their
/// attributes read from the session settings.
fn mask_sql(opts: &ExportOptions, t: &Table, m: &Mask, column: &str) -> Result<String> {
    struct Put {
        with: String,
        count: usize,
    }
    impl VisitorMut for Put {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
            if matches!(e, Expr::Identifier(i) if i.value == VALUE_MARKER) {
                // Printed as is: a quoted literal or a fixed subquery.
                *e = Expr::Identifier(Ident::new(self.with.clone()));
                self.count += 1;
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let masked = match (&m.custom, &m.value) {
        (Some(rule), _) => rule_condition(opts, rule)?,
        (None, None) => m.expr.to_string(),
        (None, Some((value, _))) => {
            let with = if m.kind == MaskKind::Hash {
                format!(
                    "(SELECT k.secret FROM {}.{} k WHERE k.name = {})",
                    ident(&masked_schema(opts))?,
                    ident(KEYS)?,
                    literal(&key_name(t, m))
                )
            } else {
                literal(&scalar_text(value))
            };
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
            e.to_string()
        }
    };
    Ok(match &m.unless {
        None => masked,
        Some(u) => format!(
            "CASE WHEN {} THEN {column} ELSE {masked} END",
            rule_condition(opts, u)?
        ),
    })
}

fn scalar_text(v: &Scalar) -> String {
    match v {
        Scalar::Text(s) => s.clone(),
        Scalar::Integer(i) => i.to_string(),
        Scalar::Number(n) => n.clone(),
        Scalar::Bool(b) => b.to_string(),
    }
}

/// The masking views of `db` (see the module documentation).
pub(super) fn views(
    opts: &ExportOptions,
    db: &Database,
    per_table: &[(&Table, Vec<Access>)],
    out: &mut Out,
) -> Result<()> {
    let schema_name = masked_schema(opts);
    let schema = ident(&schema_name)?;
    let masker = ident(&masking_role(opts))?;
    let tables: Vec<(&Table, &Vec<Access>, BTreeSet<String>)> = per_table
        .iter()
        .map(|(t, acc)| (*t, acc, masked_columns(acc.iter().map(|a| &a.grant))))
        .filter(|(_, _, m)| !m.is_empty())
        .collect();
    out.push_str(
        "\n-- Column masks: one security-barrier view per masked table in the masking\n\
         -- schema, owned by the masking role (row level security applies to it for the\n\
         -- caller's rows); the masked columns of the table are not granted to the groups.\n\
         -- Query them with search_path = <masking schema>, <schema>.\n",
    );
    let _ = writeln!(out, "CREATE SCHEMA IF NOT EXISTS {schema};");
    let _ = writeln!(out, "ALTER SCHEMA {schema} OWNER TO CURRENT_USER;");
    let _ = writeln!(
        out,
        "COMMENT ON SCHEMA {schema} IS {};",
        literal(&out.marker)
    );
    let _ = writeln!(out, "GRANT USAGE, CREATE ON SCHEMA {schema} TO {masker};");
    out.schemas.insert(schema_name);

    // Hash keys: readable by the masking role only.
    let mut keys: Vec<(String, String)> = Vec::new();
    for (t, acc, _) in &tables {
        for a in acc.iter() {
            if let TableGrant::Sandbox(s) = &a.grant {
                for m in &s.masks {
                    if let (MaskKind::Hash, Some((Scalar::Text(k), _))) = (&m.kind, &m.value) {
                        keys.push((key_name(t, m), k.clone()));
                    }
                }
            }
        }
    }
    if !keys.is_empty() {
        let table = format!("{schema}.{}", ident(KEYS)?);
        let _ = writeln!(
            out,
            "CREATE TABLE IF NOT EXISTS {table} (name text PRIMARY KEY, secret text NOT NULL);"
        );
        let _ = writeln!(out, "ALTER TABLE {table} OWNER TO {masker};");
        let _ = writeln!(out, "REVOKE ALL ON TABLE {table} FROM PUBLIC;");
        let _ = writeln!(out, "COMMENT ON TABLE {table} IS {};", literal(&out.marker));
        let _ = writeln!(out, "DELETE FROM {table};");
        let rows: Vec<String> = keys
            .iter()
            .map(|(n, k)| format!("({}, {})", literal(n), literal(k)))
            .collect();
        let _ = writeln!(
            out,
            "INSERT INTO {table} (name, secret) VALUES {};",
            rows.join(", ")
        );
    }

    for (t, acc, masked) in &tables {
        let mut items = Vec::new();
        for c in &t.columns {
            let col = ident(&c.name)?;
            if !masked.contains(&c.key) {
                items.push(col);
                continue;
            }
            // Per grant: shown, or masked; the first grant that shows the
            // row unmasked wins, then the masks in group order.
            let mut shown: Vec<String> = Vec::new();
            let mut masks: Vec<(&Mask, Vec<String>)> = Vec::new();
            for a in acc.iter() {
                let Some(u) = unit(opts, a)? else { continue };
                let mask = match &a.grant {
                    TableGrant::Sandbox(s) => s.masks.iter().find(|m| m.column == c.key),
                    _ => None,
                };
                match mask {
                    None => shown.push(u),
                    Some(m) => match masks.iter_mut().find(|(x, _)| same_mask(x, m)) {
                        Some((_, conds)) => conds.push(u),
                        None => masks.push((m, vec![u])),
                    },
                }
            }
            let mut types = BTreeSet::new();
            if !shown.is_empty() {
                types.insert(c.ty.to_string());
            }
            for (m, _) in &masks {
                types.insert(m.ty.to_string());
            }
            if types.len() > 1 {
                return Err(Error::Unsupported {
                    construct: format!(
                        "column {}.{} is {} for different groups (a mask changes its type) in the PostgreSQL export: a view column has one type",
                        t.qualified(),
                        c.name,
                        types.into_iter().collect::<Vec<_>>().join(" or ")
                    ),
                });
            }
            let expr = match (shown.is_empty(), masks.as_slice()) {
                // Every grant masks it the same way.
                (true, [(m, _)]) => mask_sql(opts, t, m, &col)?,
                _ => {
                    let mut case = String::from("CASE");
                    if !shown.is_empty() {
                        let _ = write!(case, " WHEN {} THEN {col}", shown.join(" OR "));
                    }
                    for (m, conds) in &masks {
                        let _ = write!(
                            case,
                            " WHEN {} THEN {}",
                            conds.join(" OR "),
                            mask_sql(opts, t, m, &col)?
                        );
                    }
                    case.push_str(" END");
                    case
                }
            };
            items.push(format!("{expr} AS {col}"));
        }
        let view = format!("{schema}.{}", ident(&view_name(db, t))?);
        let _ = writeln!(out, "DROP VIEW IF EXISTS {view};");
        let _ = writeln!(
            out,
            "CREATE VIEW {view} WITH (security_barrier) AS SELECT {} FROM {};",
            items.join(", "),
            qualified(t)?
        );
        let _ = writeln!(out, "ALTER VIEW {view} OWNER TO {masker};");
        let _ = writeln!(out, "COMMENT ON VIEW {view} IS {};", literal(&out.marker));
        let readers: BTreeSet<&str> = acc
            .iter()
            .filter(|a| {
                !matches!(&a.grant, TableGrant::Sandbox(s) if matches!(s.kind, SandboxKind::Custom { .. } | SandboxKind::Empty))
            })
            .map(|a| a.role.as_str())
            .collect();
        for r in readers {
            let r = ident(r)?;
            let _ = writeln!(out, "GRANT USAGE ON SCHEMA {schema} TO {r};");
            let _ = writeln!(out, "GRANT SELECT ON {view} TO {r};");
        }
    }
    Ok(())
}
