//! Export of native enforcement: the PostgreSQL DDL (roles, grants, row
//! level security policies and security-barrier views) that makes the
//! database enforce a policy by itself, as defence in depth behind the
//! rewrite.
//!
//! The model:
//!
//! * one `NOLOGIN` role per group (`sqlsandbox_<group>`); every group role
//!   is a member of the `all_users` role and so inherits its grants;
//!   `administrators` gets `BYPASSRLS`;
//! * a least-privilege login role for the query service
//!   (`sqlsandbox_service`, `NOINHERIT`): `CONNECT` on the database, `USAGE`
//!   on the schemas of declared tables, `SELECT` on declared tables and
//!   nothing more; it is a member of every group role so that it can
//!   `SET ROLE` to the group of the principal it serves (on tables under
//!   row level security the service itself sees no rows);
//! * basic sandboxes become `CREATE POLICY ... USING (column = <setting>)`
//!   where the setting is `current_setting('sqlsandbox.<attribute>', true)`
//!   cast to the column's type. Every setting is read as a comma-separated
//!   list (`= ANY(string_to_array(...)::type[])`), so multi-valued
//!   attributes work; a missing or empty setting yields `NULL` and denies;
//! * custom sandboxes become views `WITH (security_barrier)` in a schema
//!   named like the group role (so that PostgreSQL's default
//!   `search_path = "$user", public` finds the view before the table after
//!   `SET ROLE`); the group gets `SELECT` on the view, not the table;
//! * unrestricted grants are plain `GRANT SELECT` (plus a `USING (true)`
//!   policy where the table is under row level security).
//!
//! Use [`session_settings`] to compute the `set_config` calls for a
//! principal.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::access::group_grant;
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::{
    ColumnType, Database, Policy, Sandbox, SandboxKind, Table, TableGrant, ADMINISTRATORS,
    ALL_USERS, VAR_PREFIX,
};
use crate::principal::{Principal, Scalar};

#[cfg(feature = "live")]
pub mod live;
pub mod mysql;
mod pgmask;

pub use pgmask::{masked_schema, masking_role};

/// The longest identifier PostgreSQL keeps without truncating it.
const MAX_IDENT: usize = 63;

/// Options of [`export_postgres_with`].
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Prefix of every role name (and of the schemas holding views);
    /// default `sqlsandbox_`.
    pub role_prefix: String,
    /// Prefix of the session settings the policies read; default
    /// `sqlsandbox` (settings `sqlsandbox.<attribute>`).
    pub setting_prefix: String,
    /// Export only this policy database (default: every PostgreSQL one).
    pub database: Option<String>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            role_prefix: "sqlsandbox_".into(),
            setting_prefix: "sqlsandbox".into(),
            database: None,
        }
    }
}

/// Exports the PostgreSQL DDL enforcing `policy` natively, with the default
/// [`ExportOptions`].
pub fn export_postgres(policy: &Policy) -> Result<String> {
    export_postgres_with(policy, &ExportOptions::default())
}

/// The role name of a group under `opts`.
pub fn role_name(opts: &ExportOptions, group: &str) -> String {
    format!("{}{}", opts.role_prefix, group)
}

/// The login role of the query service under `opts`.
pub fn service_role(opts: &ExportOptions) -> String {
    format!("{}service", opts.role_prefix)
}

/// The session settings (`name`, `value`) to `set_config` for `principal`
/// before it queries under native enforcement: one per attribute, values of
/// multi-valued attributes joined with commas. Refuses values containing a
/// comma (they would be split into several values) and attribute names
/// that are not plain identifiers.
pub fn session_settings(
    principal: &Principal,
    opts: &ExportOptions,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, value) in principal.attributes() {
        let setting = setting_name(opts, name)?;
        let mut parts = Vec::new();
        for v in value.values() {
            let text = match v {
                Scalar::Text(s) => s.clone(),
                Scalar::Integer(i) => i.to_string(),
                Scalar::Number(n) => n.clone(),
                Scalar::Bool(b) => b.to_string(),
            };
            if text.contains(',') {
                return Err(Error::Unsupported {
                    construct: format!(
                        "attribute `{name}` value containing a comma under native enforcement"
                    ),
                });
            }
            parts.push(text);
        }
        out.push((setting, parts.join(",")));
    }
    Ok(out)
}

/// Exports the PostgreSQL DDL enforcing `policy` natively.
///
/// Fails when a name cannot be used safely (longer than PostgreSQL's 63
/// bytes, or an attribute name that is not a plain identifier), when
/// `opts.database` names no PostgreSQL database of the policy, or when no
/// database of the policy uses the PostgreSQL dialect.
pub fn export_postgres_with(policy: &Policy, opts: &ExportOptions) -> Result<String> {
    Ok(render_postgres(policy, opts)?.sql)
}

/// The DDL of an export and the names of what it creates that are not
/// found by their comment alone: the roles and the view schemas (the plan
/// of [`live`] drops the sqlsandbox-owned ones the policy no longer has).
#[derive(Debug, Default)]
pub(crate) struct Out {
    /// The DDL.
    pub(crate) sql: String,
    /// Every role it creates.
    pub(crate) roles: BTreeSet<String>,
    /// Every schema it creates (views of custom sandboxes, definer
    /// functions, masking views).
    pub(crate) schemas: BTreeSet<String>,
    /// The ownership marker written as the comment of what it creates.
    marker: String,
}

impl Out {
    fn push_str(&mut self, s: &str) {
        self.sql.push_str(s);
    }
}

impl std::fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.sql.push_str(s);
        Ok(())
    }
}

/// The comment sqlsandbox writes on every role, policy, view, schema,
/// table and function it creates under `opts` (`COMMENT ON … IS
/// '<marker>'`): what carries it (and, for roles, also starts with the
/// role prefix) is sqlsandbox's to change or drop, with its owner and
/// privileges (module `live`); nothing else is.
pub fn marker(opts: &ExportOptions) -> String {
    format!("sqlsandbox export {}", opts.role_prefix)
}

/// Builds the export of `policy` under `opts`.
pub(crate) fn render_postgres(policy: &Policy, opts: &ExportOptions) -> Result<Out> {
    check_prefix(&opts.role_prefix, "role prefix")?;
    check_prefix(&opts.setting_prefix, "setting prefix")?;
    let dbs: Vec<&Database> = match &opts.database {
        Some(name) => {
            let db = policy.database(name).ok_or_else(|| Error::Unknown {
                kind: "database",
                name: name.clone(),
            })?;
            vec![db]
        }
        None => policy.databases.values().collect(),
    };
    let (pg, other): (Vec<&Database>, Vec<&Database>) = dbs
        .into_iter()
        .partition(|d| d.dialect == Dialect::Postgres);
    if pg.is_empty() {
        return Err(Error::Unsupported {
            construct: "export to PostgreSQL of a policy without a PostgreSQL database".into(),
        });
    }

    let mut out = Out {
        marker: marker(opts),
        ..Out::default()
    };
    let _ = writeln!(
        out,
        "-- Native enforcement of policy {} for PostgreSQL, generated by sqlsandbox.",
        comment(policy.file())
    );
    out.push_str(
        "-- Defence in depth behind the rewrite: the query service connects as the\n\
         -- service role, SET ROLEs to the principal's group role and sets the\n\
         -- principal's attributes with set_config('<prefix>.<attribute>', value, false)\n\
         -- (multi-valued attributes comma-separated). A missing setting denies.\n",
    );
    for db in &other {
        let _ = writeln!(
            out,
            "-- database {}: dialect {:?}, not exported",
            comment(&db.name),
            db.dialect
        );
    }

    // Roles (cluster-wide).
    let service = service_role(opts);
    let mut groups: Vec<&str> = policy.groups.keys().map(String::as_str).collect();
    groups.retain(|g| *g != ALL_USERS && *g != ADMINISTRATORS);
    out.push_str(
        "\n-- Roles (cluster-wide): created when missing, their attributes set on every run,\n\
         -- so that the export can be applied again after the policy changes.\n",
    );
    create_role(&mut out, &service, "LOGIN NOINHERIT")?;
    let all = role_name(opts, ALL_USERS);
    create_role(&mut out, &all, "NOLOGIN")?;
    for g in &groups {
        let r = role_name(opts, g);
        create_role(&mut out, &r, "NOLOGIN")?;
        let _ = writeln!(out, "GRANT {} TO {};", ident(&all)?, ident(&r)?);
    }
    let admin = role_name(opts, ADMINISTRATORS);
    create_role(&mut out, &admin, "NOLOGIN BYPASSRLS")?;
    if pg.iter().any(|db| pgmask::has_masks(policy, db)) {
        pgmask::check_names(opts, &groups)?;
        // Owns the masking views: not a superuser, no BYPASSRLS, no
        // member, so row level security applies to what the views read.
        create_role(&mut out, &masking_role(opts), "NOLOGIN")?;
    }
    let mut members = vec![all.clone()];
    members.extend(groups.iter().map(|g| role_name(opts, g)));
    members.push(admin.clone());
    for m in &members {
        let _ = writeln!(out, "GRANT {} TO {};", ident(m)?, ident(&service)?);
    }

    for db in &pg {
        tenant_roles(policy, db, opts, &mut out)?;
    }
    for db in pg {
        export_database(policy, db, opts, &groups, &mut out)?;
    }
    Ok(out)
}

/// The login role of tenant `value` (see [`Database::tenant_roles`]).
pub fn tenant_role(opts: &ExportOptions, value: &str) -> String {
    format!("{}tenant_{value}", opts.role_prefix)
}

/// Per-tenant login roles, where the policy asks for them: one role per
/// value of the database's `tenant_roles` attribute among the declared
/// users, member of those users' group roles, with the attribute preset
/// (`ALTER ROLE … SET`), so that a tenant connecting with its own role gets
/// its rows with no session setup.
fn tenant_roles(policy: &Policy, db: &Database, opts: &ExportOptions, out: &mut Out) -> Result<()> {
    let Some(attr) = &db.tenant_roles else {
        return Ok(());
    };
    let mut tenants: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for user in policy.user_names() {
        let Ok(p) = crate::Principal::from_user(policy, user) else {
            continue;
        };
        if p.is_admin() {
            continue;
        }
        let Some(crate::AttributeValue::Single(v)) = p.attribute(attr) else {
            continue;
        };
        let value = match v {
            crate::Scalar::Text(t) => t.clone(),
            other => other.to_string(),
        };
        if value.is_empty()
            || value.len() > 40
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::Unsupported {
                construct: format!(
                    "a per-tenant role for {attr} value {value:?} of user `{user}` (letters, digits, _ and - only, at most 40)"
                ),
            });
        }
        let groups = tenants.entry(value).or_default();
        groups.extend(
            p.groups()
                .iter()
                .filter(|g| g.as_str() != ALL_USERS)
                .cloned(),
        );
    }
    let _ = writeln!(
        out,
        "\n-- Per-tenant login roles for database {} (attribute `{}` preset).",
        comment(&db.name),
        comment(attr)
    );
    let setting = setting_name(opts, attr)?;
    for (value, groups) in tenants {
        let role = ident(&tenant_role(opts, &value))?;
        let mut member_of = vec![ident(&role_name(opts, ALL_USERS))?];
        for g in &groups {
            member_of.push(ident(&role_name(opts, g))?);
        }
        create_role(out, &tenant_role(opts, &value), "LOGIN")?;
        for m in &member_of {
            let _ = writeln!(out, "GRANT {m} TO {role};");
        }
        let _ = writeln!(out, "ALTER ROLE {role} SET {setting} = '{value}';");
    }
    Ok(())
}

/// One group's way to read one table.
struct Access<'a> {
    role: String,
    group: &'a str,
    grant: TableGrant,
}

fn export_database(
    policy: &Policy,
    db: &Database,
    opts: &ExportOptions,
    groups: &[&str],
    out: &mut Out,
) -> Result<()> {
    let service = ident(&service_role(opts))?;
    let admin = ident(&role_name(opts, ADMINISTRATORS))?;
    let _ = writeln!(
        out,
        "\n-- Database {} (run connected to the PostgreSQL database that holds it).",
        comment(&db.name)
    );
    out.push_str(&format!(
        "DO $sqlsandbox$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO {}', current_database()); END $sqlsandbox$;\n",
        service.replace('\'', "''")
    ));
    let tables = db.tables();
    let schemas: BTreeSet<&str> = tables.iter().map(|t| t.key.schema.as_str()).collect();
    // Who may read what, per table.
    let mut per_table: Vec<(&Table, Vec<Access>)> = Vec::new();
    let mut schema_users: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut all_groups: Vec<&str> = vec![ALL_USERS];
    all_groups.extend_from_slice(groups);
    for t in &tables {
        let mut acc = Vec::new();
        for g in &all_groups {
            let Some(group) = policy.groups.get(*g) else {
                continue;
            };
            let grant = group_grant(group.data.get(&db.name), t);
            if matches!(grant, TableGrant::NoAccess) {
                continue;
            }
            let role = role_name(opts, g);
            if !matches!(&grant, TableGrant::Sandbox(s) if matches!(s.kind, SandboxKind::Custom { .. }))
            {
                schema_users
                    .entry(t.key.schema.as_str())
                    .or_default()
                    .insert(role.clone());
            }
            acc.push(Access {
                role,
                group: g,
                grant,
            });
        }
        per_table.push((t, acc));
    }
    // Column masks: the masking role reads every declared table (under
    // row level security, as the caller: see `pgmask`).
    let masker = if pgmask::has_masks(policy, db) {
        pgmask::check_database(policy, db)?;
        Some(masking_role(opts))
    } else {
        None
    };
    let readers = match &masker {
        Some(m) => format!("{service}, {admin}, {}", ident(m)?),
        None => format!("{service}, {admin}"),
    };

    out.push_str("\n-- Schemas and tables: the service and the administrators.\n");
    for s in &schemas {
        let _ = writeln!(out, "GRANT USAGE ON SCHEMA {} TO {readers};", ident(s)?);
    }
    for t in &tables {
        let _ = writeln!(out, "GRANT SELECT ON {} TO {readers};", qualified(t)?);
    }

    out.push_str("\n-- Group grants.\n");
    for (s, roles) in &schema_users {
        for r in roles {
            let _ = writeln!(out, "GRANT USAGE ON SCHEMA {} TO {};", ident(s)?, ident(r)?);
        }
    }
    let mut views: Vec<(String, &Table, &Sandbox, &str)> = Vec::new();
    for (t, acc) in &per_table {
        let masked = pgmask::masked_columns(acc.iter().map(|a| &a.grant));
        let masker = masker.as_deref();
        let rls = acc
            .iter()
            .any(|a| matches!(&a.grant, TableGrant::Sandbox(s) if matches!(s.kind, SandboxKind::Basic(_) | SandboxKind::Rules(_)) || !s.writes.is_empty()))
            || t.on_denied == crate::policy::OnDenied::Empty;
        if rls {
            let _ = writeln!(
                out,
                "ALTER TABLE {} ENABLE ROW LEVEL SECURITY;",
                qualified(t)?
            );
        }
        if t.on_denied == crate::policy::OnDenied::Empty {
            // Readable by everyone, and under row level security without a
            // policy for them: no rows, as `on_denied: empty` says.
            grant_select(out, t, &role_name(opts, ALL_USERS), None, &masked)?;
        }
        for a in acc {
            let role = ident(&a.role)?;
            let policy_name = ident(&format!("{}{}", opts.role_prefix, a.group))?;
            match &a.grant {
                TableGrant::NoAccess => {}
                TableGrant::Unrestricted => {
                    grant_select(out, t, &a.role, None, &masked)?;
                    if rls {
                        select_policy(out, masker, &policy_name, t, false, &a.role, "true")?;
                    }
                }
                TableGrant::Sandbox(s) => match &s.kind {
                    SandboxKind::Basic(filters) => {
                        grant_select(out, t, &a.role, None, &masked)?;
                        select_policy(
                            out,
                            masker,
                            &policy_name,
                            t,
                            false,
                            &a.role,
                            &basic_condition(opts, filters)?,
                        )?;
                    }
                    SandboxKind::Custom { .. } => {
                        views.push((a.role.clone(), t, s, a.group));
                    }
                    SandboxKind::Rules(rules) => {
                        let cx = PolicyCx {
                            masker,
                            masked: &masked,
                        };
                        rule_policies(out, opts, &cx, t, &a.role, a.group, rules, &s.restrictive)?;
                    }
                    // Masks alone: every row, the masked columns through
                    // the masking view only.
                    SandboxKind::All if !s.masks.is_empty() => {
                        grant_select(out, t, &a.role, None, &masked)?;
                        if rls {
                            select_policy(out, masker, &policy_name, t, false, &a.role, "true")?;
                        }
                    }
                    SandboxKind::All | SandboxKind::Empty => {
                        return Err(Error::Verification(
                            "a group grant that only a decision makes".into(),
                        ))
                    }
                },
            }
            if let TableGrant::Sandbox(s) = &a.grant {
                if matches!(s.kind, SandboxKind::Basic(_)) && !s.restrictive.is_empty() {
                    let cx = PolicyCx {
                        masker,
                        masked: &masked,
                    };
                    rule_policies(out, opts, &cx, t, &a.role, a.group, &[], &s.restrictive)?;
                }
                write_policies(out, opts, t, &role, a.group, &s.writes)?;
            }
        }
    }

    if !views.is_empty() {
        out.push_str(
            "\n-- Custom sandboxes: security-barrier views in a schema named like the group\n\
             -- role, found first by the default search_path \"$user\", public after SET ROLE.\n",
        );
        let _ = writeln!(out, "SET search_path TO {};", ident(&db.default_schema)?);
        let mut made: BTreeSet<String> = BTreeSet::new();
        for (role, t, s, _group) in &views {
            let r = ident(role)?;
            if made.insert(role.clone()) {
                let _ = writeln!(out, "CREATE SCHEMA IF NOT EXISTS {r};");
                let _ = writeln!(out, "ALTER SCHEMA {r} OWNER TO CURRENT_USER;");
                let _ = writeln!(out, "GRANT USAGE ON SCHEMA {r} TO {r};");
                let _ = writeln!(out, "COMMENT ON SCHEMA {r} IS {};", literal(&out.marker));
                out.schemas.insert(role.clone());
            }
            let name = if t.key.schema == db.default_schema {
                t.key.name.clone()
            } else {
                format!("{}_{}", t.key.schema, t.key.name)
            };
            let body = view_body(policy, opts, s)?;
            let _ = writeln!(out, "DROP VIEW IF EXISTS {r}.{};", ident(&name)?);
            let _ = writeln!(
                out,
                "CREATE VIEW {r}.{} WITH (security_barrier) AS {body};",
                ident(&name)?
            );
            let _ = writeln!(out, "GRANT SELECT ON {r}.{} TO {r};", ident(&name)?);
            let _ = writeln!(
                out,
                "COMMENT ON VIEW {r}.{} IS {};",
                ident(&name)?,
                literal(&out.marker)
            );
        }
        out.push_str("RESET search_path;\n");
    }
    if masker.is_some() {
        pgmask::views(opts, db, &per_table, out)?;
    }
    Ok(())
}

/// A group's row rules on one table: the table granted (only the rules'
/// columns when they name some), one permissive policy per permissive rule
/// and one restrictive policy per restrictive rule. Rules that read other
/// tables as invoker work as in the rewrite: PostgreSQL applies those
/// tables' policies to the subquery for the same role.
#[allow(clippy::too_many_arguments)]
fn rule_policies(
    out: &mut Out,
    opts: &ExportOptions,
    cx: &PolicyCx,
    t: &Table,
    role_raw: &str,
    group: &str,
    rules: &[std::sync::Arc<crate::policy::Rule>],
    restrictive: &[std::sync::Arc<crate::policy::Rule>],
) -> Result<()> {
    let role = &ident(role_raw)?;
    let column_sets: BTreeSet<Option<&Vec<String>>> =
        rules.iter().map(|r| r.columns.as_ref()).collect();
    match column_sets.into_iter().collect::<Vec<_>>().as_slice() {
        [] | [None] => grant_select(out, t, role_raw, None, cx.masked)?,
        [Some(cols)] => grant_select(out, t, role_raw, Some(cols), cx.masked)?,
        _ => {
            return Err(Error::Unsupported {
                construct: format!(
                    "row rules of group `{group}` on {} revealing different columns on different rows (PostgreSQL column privileges are per role, not per row)",
                    t.qualified()
                ),
            })
        }
    }
    for (i, r) in rules.iter().chain(restrictive).enumerate() {
        if r.definer {
            // A policy's subquery runs with the reader's rights (and the
            // read table's policies): a definer read goes through a
            // SECURITY DEFINER function of the exporting (owner) role.
            for key in &r.reads {
                let f = definer_function(opts, key)?;
                let tq = format!("{}.{}", ident(&key.schema)?, ident(&key.name)?);
                let schema = ident(&format!("{}definer", opts.role_prefix))?;
                out.schemas.insert(format!("{}definer", opts.role_prefix));
                let _ = writeln!(out, "CREATE SCHEMA IF NOT EXISTS {schema};");
                let _ = writeln!(out, "ALTER SCHEMA {schema} OWNER TO CURRENT_USER;");
                let _ = writeln!(
                    out,
                    "COMMENT ON SCHEMA {schema} IS {};",
                    literal(&out.marker)
                );
                let _ = writeln!(out, "GRANT USAGE ON SCHEMA {schema} TO {role};");
                // Owned by the applying role (the plan drops and creates
                // it again, so its body, flags, owner and privileges are
                // what this says), executable by the rule's group only.
                let _ = writeln!(
                    out,
                    "CREATE OR REPLACE FUNCTION {f}() RETURNS SETOF {tq} LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $sqlsandbox$ SELECT * FROM {tq} $sqlsandbox$;"
                );
                let _ = writeln!(out, "REVOKE ALL ON FUNCTION {f}() FROM PUBLIC;");
                let _ = writeln!(out, "GRANT EXECUTE ON FUNCTION {f}() TO {role};");
                let _ = writeln!(
                    out,
                    "COMMENT ON FUNCTION {f}() IS {};",
                    literal(&out.marker)
                );
            }
        }
        let name = ident(&format!("{}{}_{}", opts.role_prefix, group, i + 1))?;
        select_policy(
            out,
            cx.masker,
            &name,
            t,
            r.restrictive,
            role_raw,
            &rule_condition(opts, r)?,
        )?;
    }
    Ok(())
}

/// A basic sandbox's condition: each filter's column equal to one of its
/// setting's values, ANDed.
fn basic_condition(opts: &ExportOptions, filters: &[crate::policy::BasicFilter]) -> Result<String> {
    let mut conds = Vec::new();
    for f in filters {
        conds.push(format!(
            "{} = ANY (string_to_array({}, ',')::{}[])",
            ident(&f.column)?,
            setting(opts, &f.attribute)?,
            pg_type(f.ty)
        ));
    }
    Ok(conds.join(" AND "))
}

/// What the SELECT policies and grants of one table need to know about
/// column masks.
struct PolicyCx<'a> {
    /// The masking role, when the database has masks.
    masker: Option<&'a str>,
    /// The table's masked columns (normalised names; empty: none).
    masked: &'a BTreeSet<String>,
}

/// `GRANT SELECT` on `t` to `role` (only `columns` when given); on a
/// table with masked columns, only its other columns, after revoking
/// what an earlier export granted (a table-wide grant would include them).
fn grant_select(
    out: &mut Out,
    t: &Table,
    role: &str,
    columns: Option<&Vec<String>>,
    masked: &BTreeSet<String>,
) -> Result<()> {
    let table = qualified(t)?;
    let r = ident(role)?;
    if masked.is_empty() {
        match columns {
            None => {
                let _ = writeln!(out, "GRANT SELECT ON {table} TO {r};");
            }
            Some(cols) => {
                let cols = cols.iter().map(|c| ident(c)).collect::<Result<Vec<_>>>()?;
                let _ = writeln!(out, "GRANT SELECT ({}) ON {table} TO {r};", cols.join(", "));
            }
        }
        return Ok(());
    }
    let mut cols = Vec::new();
    for c in &t.columns {
        let revealed = columns.is_none_or(|cs| cs.contains(&c.key));
        if revealed && !masked.contains(&c.key) {
            cols.push(ident(&c.name)?);
        }
    }
    let _ = writeln!(out, "REVOKE SELECT ON {table} FROM {r};");
    if !cols.is_empty() {
        let _ = writeln!(out, "GRANT SELECT ({}) ON {table} TO {r};", cols.join(", "));
    }
    Ok(())
}

/// A SELECT policy of `role` on `t`, dropped first. In a database with
/// column masks it also applies to the masking role, for the rows of
/// callers that are members of `role` (`pg_has_role(current_user, …,
/// 'USAGE')`, the membership by which PostgreSQL applies a policy): the
/// masking views run with their owner's rights, and `current_user` in
/// them is still the caller, so that they see the caller's rows.
#[allow(clippy::too_many_arguments)]
fn select_policy(
    out: &mut Out,
    masker: Option<&str>,
    name: &str,
    t: &Table,
    restrictive: bool,
    role: &str,
    cond: &str,
) -> Result<()> {
    let table = qualified(t)?;
    let r = ident(role)?;
    let kind = if restrictive {
        "RESTRICTIVE"
    } else {
        "PERMISSIVE"
    };
    let _ = writeln!(out, "DROP POLICY IF EXISTS {name} ON {table};");
    match masker {
        None => {
            let _ = writeln!(
                out,
                "CREATE POLICY {name} ON {table} AS {kind} FOR SELECT TO {r} USING ({cond});"
            );
        }
        Some(m) => {
            let member = pgmask::member_of(role);
            let using = if restrictive {
                format!("NOT {member} OR ({cond})")
            } else {
                format!("{member} AND ({cond})")
            };
            let _ = writeln!(
                out,
                "CREATE POLICY {name} ON {table} AS {kind} FOR SELECT TO {r}, {} USING ({using});",
                ident(m)?
            );
        }
    }
    comment_on_policy(out, name, t)
}

/// A group's write rules on one table: the privileges for the commands
/// they govern and one policy per rule and command (`FOR INSERT … WITH
/// CHECK`, `FOR UPDATE … USING … WITH CHECK`, `FOR DELETE … USING`).
fn write_policies(
    out: &mut Out,
    opts: &ExportOptions,
    t: &Table,
    role: &str,
    group: &str,
    writes: &[std::sync::Arc<crate::policy::Rule>],
) -> Result<()> {
    use crate::policy::Command;
    if writes.is_empty() {
        return Ok(());
    }
    let table = qualified(t)?;
    for (i, r) in writes.iter().enumerate() {
        let using = rule_condition(opts, r)?;
        let check = rule_condition(opts, r.check.as_deref().unwrap_or(r))?;
        for command in [Command::Insert, Command::Update, Command::Delete] {
            if !command.in_set(r.commands) {
                continue;
            }
            let _ = writeln!(out, "GRANT {command} ON {table} TO {role};");
            let name = ident(&format!(
                "{}{}_w{}_{}",
                opts.role_prefix,
                group,
                i + 1,
                command.to_string().to_lowercase()
            ))?;
            let clauses = match command {
                Command::Insert => format!("WITH CHECK ({check})"),
                Command::Update => format!("USING ({using}) WITH CHECK ({check})"),
                Command::Delete => format!("USING ({using})"),
            };
            let _ = writeln!(out, "DROP POLICY IF EXISTS {name} ON {table};");
            let _ = writeln!(
                out,
                "CREATE POLICY {name} ON {table} AS {} FOR {command} TO {role} {clauses};",
                if r.restrictive {
                    "RESTRICTIVE"
                } else {
                    "PERMISSIVE"
                }
            );
            comment_on_policy(out, &name, t)?;
        }
    }
    Ok(())
}

/// A rule's condition with each `{{attribute}}` read from its session
/// setting: `col = ANY (string_to_array(setting, ',')::type[])` where a
/// list fits (`col = {{a}}`, `col IN ({{a}})`), `(setting)::type` elsewhere.
fn rule_condition(opts: &ExportOptions, r: &crate::policy::Rule) -> Result<String> {
    use sqlparser::ast::{BinaryOperator, Expr, Ident, VisitMut, VisitorMut};
    use std::ops::ControlFlow;
    struct Subst<'o> {
        opts: &'o ExportOptions,
        rule: &'o crate::policy::Rule,
    }
    impl Subst<'_> {
        fn raw(text: String) -> Expr {
            // Printed as is: the text is made here, from a checked
            // attribute name and a fixed type name.
            Expr::Identifier(Ident::new(text))
        }
        fn var(&self, e: &Expr) -> Option<Result<(String, &'static str)>> {
            let v = crate::policy::question::marker(e)?;
            let p = self.rule.parameters.iter().find(|p| p.variable == v)?;
            let ty = pg_type(p.ty.unwrap_or(ColumnType::Text));
            Some(setting(self.opts, &p.attribute).map(|s| (s, ty)))
        }
    }
    impl VisitorMut for Subst<'_> {
        type Break = Error;
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
            let any = |col: Expr, negated: bool, s: String, ty: &str| {
                let cond = Expr::BinaryOp {
                    left: Box::new(col),
                    op: BinaryOperator::Eq,
                    right: Box::new(Self::raw(format!(
                        "ANY (string_to_array({s}, ',')::{ty}[])"
                    ))),
                };
                if negated {
                    Expr::UnaryOp {
                        op: sqlparser::ast::UnaryOperator::Not,
                        expr: Box::new(Expr::Nested(Box::new(cond))),
                    }
                } else {
                    cond
                }
            };
            let replaced = match &*e {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } => match self.var(right) {
                    Some(Ok((s, ty))) => Some(any(left.as_ref().clone(), false, s, ty)),
                    Some(Err(err)) => return ControlFlow::Break(err),
                    None => None,
                },
                Expr::In {
                    expr,
                    target: sqlparser::ast::InTarget::List(list),
                    negated,
                    ..
                } if list.len() == 1 => match list.first().and_then(|x| self.var(x)) {
                    Some(Ok((s, ty))) => Some(any(expr.as_ref().clone(), *negated, s, ty)),
                    Some(Err(err)) => return ControlFlow::Break(err),
                    None => None,
                },
                other => match self.var(other) {
                    Some(Ok((s, ty))) => Some(Self::raw(format!("({s})::{ty}"))),
                    Some(Err(err)) => return ControlFlow::Break(err),
                    None => None,
                },
            };
            if let Some(new) = replaced {
                *e = new;
            }
            ControlFlow::Continue(())
        }
    }
    let mut expr = r.expr.clone();
    if let ControlFlow::Break(e) = expr.visit(&mut Subst { opts, rule: r }) {
        return Err(e);
    }
    if r.definer {
        struct Definer<'o> {
            opts: &'o ExportOptions,
        }
        impl VisitorMut for Definer<'_> {
            type Break = Error;
            fn pre_visit_table_factor(
                &mut self,
                f: &mut sqlparser::ast::TableFactor,
            ) -> ControlFlow<Error> {
                if let sqlparser::ast::TableFactor::Table {
                    name,
                    args: args @ None,
                    ..
                } = f
                {
                    let parts: Vec<String> = name
                        .0
                        .iter()
                        .filter_map(|p| p.as_ident())
                        .map(|i| Dialect::Postgres.normalize(i).into_owned())
                        .collect();
                    // One part: a CTE of the rule's subquery.
                    if let [schema, table] = parts.as_slice() {
                        let key = crate::policy::TableKey {
                            schema: schema.clone(),
                            name: table.clone(),
                        };
                        match definer_function(self.opts, &key) {
                            Ok(f) => {
                                *name = sqlparser::ast::ObjectName(vec![
                                    sqlparser::ast::ObjectNamePart::Identifier(Ident::new(f)),
                                ]);
                                *args = Some(sqlparser::ast::TableFunctionArgs {
                                    args: vec![],
                                    settings: None,
                                });
                            }
                            Err(e) => return ControlFlow::Break(e),
                        }
                    }
                }
                ControlFlow::Continue(())
            }
        }
        if let ControlFlow::Break(e) = expr.visit(&mut Definer { opts }) {
            return Err(e);
        }
    }
    let text = expr.to_string();
    if text.contains(VAR_PREFIX) {
        return Err(Error::Unsupported {
            construct: format!(
                "an `{{{{attribute}}}}` of rule `{}` in a place the PostgreSQL export cannot translate",
                r.name
            ),
        });
    }
    Ok(text)
}

/// The SECURITY DEFINER function through which definer rules read `key`:
/// `"<prefix>definer"."<schema>_<table>"`, quoted.
fn definer_function(opts: &ExportOptions, key: &crate::policy::TableKey) -> Result<String> {
    Ok(format!(
        "{}.{}",
        ident(&format!("{}definer", opts.role_prefix))?,
        ident(&format!("{}_{}", key.schema, key.name))?
    ))
}

/// The saved question of a custom sandbox with every `{{variable}}`
/// replaced by its typed session setting.
fn view_body(policy: &Policy, opts: &ExportOptions, s: &Sandbox) -> Result<String> {
    let SandboxKind::Custom {
        question: qname,
        parameters,
    } = &s.kind
    else {
        return Err(Error::Verification("view of a basic sandbox".into()));
    };
    let q = policy.question(qname).ok_or_else(|| Error::Unknown {
        kind: "question",
        name: qname.clone(),
    })?;
    // Its tables were schema-qualified when the policy loaded.
    let text = q.query.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some((before, after)) = rest.split_once(VAR_PREFIX) {
        out.push_str(before);
        // `find` returns a char boundary, so `split_at` cannot panic.
        let (var, tail) = after.split_at(
            after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len()),
        );
        let p = parameters
            .iter()
            .find(|p| p.variable == var)
            .ok_or_else(|| Error::MissingVariable {
                question: qname.clone(),
                variable: var.to_string(),
            })?;
        let ty =
            p.ty.or_else(|| q.inferred.get(var).copied())
                .unwrap_or(ColumnType::Text);
        let _ = write!(out, "({})::{}", setting(opts, &p.attribute)?, pg_type(ty));
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// `NULLIF(current_setting('<prefix>.<attribute>', true), '')`: `NULL` (and
/// so no row) when the setting is missing or empty.
fn setting(opts: &ExportOptions, attribute: &str) -> Result<String> {
    Ok(format!(
        "NULLIF(current_setting('{}', true), '')",
        setting_name(opts, attribute)?
    ))
}

fn setting_name(opts: &ExportOptions, attribute: &str) -> Result<String> {
    if !is_plain(attribute) {
        return Err(Error::Unsupported {
            construct: format!(
                "attribute name `{attribute}` in a PostgreSQL setting (letters, digits and _ only)"
            ),
        });
    }
    Ok(format!(
        "{}.{}",
        opts.setting_prefix.to_lowercase(),
        attribute.to_lowercase()
    ))
}

fn is_plain(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_prefix(p: &str, what: &str) -> Result<()> {
    if p.is_empty() || is_plain(p) {
        Ok(())
    } else {
        Err(Error::Unsupported {
            construct: format!("{what} `{p}` (letters, digits and _ only)"),
        })
    }
}

/// The PostgreSQL type a sandbox value is cast to (as the masks' casts).
fn pg_type(ty: ColumnType) -> &'static str {
    crate::policy::mask::pg_type(ty)
}

/// A double-quoted PostgreSQL identifier; refuses names PostgreSQL would
/// truncate (two long names could then collide) and NUL bytes.
pub fn ident(name: &str) -> Result<String> {
    if name.is_empty() || name.len() > MAX_IDENT || name.contains('\0') {
        return Err(Error::Unsupported {
            construct: format!(
                "PostgreSQL identifier `{}` (empty, NUL, or longer than {MAX_IDENT} bytes)",
                name.escape_debug()
            ),
        });
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `CREATE ROLE` when the role is missing, then its attributes: DDL that
/// can run again. The name is quoted as a literal inside a `DO` block's
/// dollar-quoted body, which a name holding the delimiter would end.
fn create_role(out: &mut Out, name: &str, attributes: &str) -> Result<()> {
    const DELIMITER: &str = "$sqlsandbox$";
    if name.contains(DELIMITER) {
        return Err(Error::Unsupported {
            construct: format!(
                "the role name `{}` (it holds `{DELIMITER}`)",
                name.escape_debug()
            ),
        });
    }
    let r = ident(name)?;
    let name_literal = format!("'{}'", name.replace('\'', "''"));
    let _ = writeln!(
        out,
        "DO {DELIMITER} BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {name_literal}) THEN CREATE ROLE {r}; END IF; END {DELIMITER};"
    );
    // Every attribute spelled out, so that applying again undoes a manual
    // change (a `BYPASSRLS` or `SUPERUSER` granted by hand).
    let mut all = attributes.to_string();
    for (yes, no) in [
        ("LOGIN", "NOLOGIN"),
        ("INHERIT", "NOINHERIT"),
        ("BYPASSRLS", "NOBYPASSRLS"),
    ] {
        if !attributes.split(' ').any(|a| a == yes || a == no) {
            all.push(' ');
            all.push_str(if yes == "INHERIT" { yes } else { no });
        }
    }
    all.push_str(" NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION");
    let _ = writeln!(out, "ALTER ROLE {r} WITH {all};");
    let _ = writeln!(out, "COMMENT ON ROLE {r} IS {};", literal(&out.marker));
    out.roles.insert(name.to_string());
    Ok(())
}

/// `COMMENT ON POLICY` with the ownership marker.
fn comment_on_policy(out: &mut Out, policy_name: &str, t: &Table) -> Result<()> {
    let _ = writeln!(
        out,
        "COMMENT ON POLICY {policy_name} ON {} IS {};",
        qualified(t)?,
        literal(&out.marker)
    );
    Ok(())
}

/// A PostgreSQL string literal (standard conforming strings).
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn qualified(t: &Table) -> Result<String> {
    Ok(format!("{}.{}", ident(&t.key.schema)?, ident(&t.key.name)?))
}

/// Text safe inside a `--` comment (no line breaks).
fn comment(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}
