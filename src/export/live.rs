//! Plan, apply and drift of the PostgreSQL export against a live database
//! (feature `live`).
//!
//! **What sqlsandbox owns.** Every role, row level security policy, view,
//! table, function and schema the export creates carries the comment
//! [`marker`] (`sqlsandbox export <role prefix>`); a role is sqlsandbox's
//! when its name starts with the role prefix *and* it carries the marker.
//! Privileges granted to those roles (on tables, views, sequences,
//! functions, schemas, the current database, columns; default privileges
//! naming them), their role settings (every database or the current one),
//! and their memberships in other roles are sqlsandbox's too; so are the
//! owner and every privilege of an owned object (to whomever, `PUBLIC`
//! included) and the default privileges of an owned schema. Nothing else
//! is ever dropped or revoked. The row level security flags of the
//! policy's declared tables are set to what the export needs; RLS is only
//! disabled on a table that has no policy without the marker.
//!
//! **Plan.** [`plan`] reads what sqlsandbox owns in the live database and
//! prints the migration: drop every owned policy, view, table and
//! function, revoke every owned grant and membership, reset the owned
//! roles' settings and the owned default privileges, switch off RLS where
//! the policy no longer needs it, drop owned schemas and roles the policy
//! no longer has, then the export itself (which creates what is missing
//! and grants again what stays). Run in one transaction ([`apply`]) no
//! other session sees an intermediate state: every statement of it,
//! `CREATE ROLE` and `DROP ROLE` included, is transactional in PostgreSQL.
//!
//! **Drift.** [`drift`] compares two normalised [`Model`]s of the catalog
//! restricted to what sqlsandbox owns: the live one, and the one the
//! policy asks for. The desired model is read from the same catalog after
//! running the plan inside a transaction that is then rolled back, so
//! policy expressions, view and function definitions are compared after
//! PostgreSQL's own deparse (`pg_get_expr`, `pg_get_viewdef`,
//! `pg_get_functiondef`), not as text sqlsandbox printed. (It takes the
//! plan's locks for that moment and needs the privileges of `apply`.)

use std::collections::BTreeSet;
use std::fmt;

use postgres::{Client, GenericClient, NoTls};

use super::{ident, marker, render_postgres, ExportOptions};
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::Policy;

/// One fact of the catalog that sqlsandbox owns, normalised (names
/// unquoted, lists sorted, expressions as PostgreSQL deparses them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Item {
    /// An owned role and its attributes.
    Role {
        /// Its name.
        name: String,
        /// `LOGIN`.
        login: bool,
        /// `INHERIT`.
        inherit: bool,
        /// `BYPASSRLS`.
        bypassrls: bool,
        /// `SUPERUSER`, `CREATEDB`, `CREATEROLE` or `REPLICATION`, those it has.
        privileged: String,
    },
    /// A setting of an owned role (`ALTER ROLE … [IN DATABASE …] SET`).
    RoleSetting {
        /// The role.
        role: String,
        /// The current database (`IN DATABASE`), or empty: every database.
        database: String,
        /// `name=value`.
        setting: String,
    },
    /// `member` (owned) is a member of `role` (any role).
    Member {
        /// The granted role.
        role: String,
        /// Its member.
        member: String,
        /// `WITH ADMIN OPTION`.
        admin: bool,
    },
    /// A privilege granted to an owned role, or on an owned object (a
    /// view, table or schema carrying the marker) to anyone but its owner.
    Grant {
        /// `SELECT`, `USAGE`, `CONNECT`, ...
        privilege: String,
        /// `TABLE`, `SEQUENCE`, `SCHEMA` or `DATABASE` (the current one).
        kind: String,
        /// The schema of a table, the schema, or empty.
        schema: String,
        /// The name of a table, or empty.
        object: String,
        /// The role; empty for `PUBLIC`.
        grantee: String,
    },
    /// A privilege on a function granted to an owned role, or on an owned
    /// function to anyone but its owner (`PUBLIC`'s default `EXECUTE`
    /// included).
    FunctionGrant {
        /// `EXECUTE`.
        privilege: String,
        /// The function's schema.
        schema: String,
        /// Its name.
        name: String,
        /// Its argument types (`pg_get_function_identity_arguments`).
        args: String,
        /// The role; empty for `PUBLIC`.
        grantee: String,
    },
    /// A function carrying the marker (the SECURITY DEFINER functions of
    /// `as: definer` rules).
    Function {
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
        /// Its argument types.
        args: String,
        /// Its owner (whose rights a SECURITY DEFINER function runs with).
        owner: String,
        /// `pg_get_functiondef`: body, language, volatility, `SECURITY
        /// DEFINER`, `SET search_path`, ...
        definition: String,
    },
    /// A default privilege (`ALTER DEFAULT PRIVILEGES`) in an owned schema,
    /// or granted to an owned role.
    DefaultPrivilege {
        /// The role whose future objects get it.
        role: String,
        /// The schema (`IN SCHEMA`), or empty: every schema.
        schema: String,
        /// `TABLES`, `SEQUENCES`, `FUNCTIONS`, `TYPES` or `SCHEMAS`.
        objects: String,
        /// `SELECT`, `EXECUTE`, ...
        privilege: String,
        /// The role; empty for `PUBLIC`.
        grantee: String,
    },
    /// A row level security policy carrying the marker, or naming an owned
    /// role (it gives that role rows: a grant to it).
    Policy {
        /// The schema of its table.
        schema: String,
        /// Its table.
        table: String,
        /// The policy name.
        name: String,
        /// `PERMISSIVE` or `RESTRICTIVE`, the command, the roles, `USING`
        /// and `WITH CHECK` as PostgreSQL prints them.
        definition: String,
    },
    /// A view carrying the marker.
    View {
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
        /// Its owner (whose rights it reads with).
        owner: String,
        /// Its options (`security_barrier=true`).
        options: String,
        /// `pg_get_viewdef`.
        definition: String,
    },
    /// A schema carrying the marker.
    Schema {
        /// Its name.
        name: String,
        /// Its owner.
        owner: String,
    },
    /// The row level security flags of a declared table.
    Rls {
        /// The schema of the table.
        schema: String,
        /// The table.
        table: String,
        /// `relrowsecurity`.
        enabled: bool,
        /// `relforcerowsecurity`.
        forced: bool,
    },
    /// A column privilege granted to an owned role (the masked columns of
    /// a table are not granted, the others are).
    ColumnGrant {
        /// `SELECT`, `INSERT`, ...
        privilege: String,
        /// The schema of the table.
        schema: String,
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The owned role.
        grantee: String,
    },
    /// A table carrying the marker (the hash keys of column masks).
    Table {
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
        /// Its owner.
        owner: String,
        /// An MD5 digest of its rows: a changed key is drift (the
        /// digest is never printed).
        digest: String,
    },
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |b: bool, yes: &'static str, no: &'static str| if b { yes } else { no };
        match self {
            Item::Role {
                name,
                login,
                inherit,
                bypassrls,
                privileged,
            } => write!(
                f,
                "role {name:?} {} {} {}{}{privileged}",
                on(*login, "LOGIN", "NOLOGIN"),
                on(*inherit, "INHERIT", "NOINHERIT"),
                on(*bypassrls, "BYPASSRLS", "NOBYPASSRLS"),
                if privileged.is_empty() { "" } else { " " }
            ),
            Item::RoleSetting {
                role,
                database,
                setting,
            } => {
                if database.is_empty() {
                    write!(f, "role {role:?} SET {setting:?}")
                } else {
                    write!(f, "role {role:?} IN DATABASE {database:?} SET {setting:?}")
                }
            }
            Item::Member {
                role,
                member,
                admin,
            } => write!(
                f,
                "membership {role:?} TO {member:?}{}",
                on(*admin, " WITH ADMIN OPTION", "")
            ),
            Item::Grant {
                privilege,
                kind,
                schema,
                object,
                grantee,
            } => {
                let to = Grantee(grantee);
                match kind.as_str() {
                    "TABLE" | "SEQUENCE" => write!(
                        f,
                        "grant {privilege} ON {kind} {schema:?}.{object:?} TO {to}"
                    ),
                    "SCHEMA" => write!(f, "grant {privilege} ON SCHEMA {schema:?} TO {to}"),
                    _ => write!(f, "grant {privilege} ON {kind} TO {to}"),
                }
            }
            Item::FunctionGrant {
                privilege,
                schema,
                name,
                args,
                grantee,
            } => write!(
                f,
                "grant {privilege} ON FUNCTION {schema:?}.{name:?}({args}) TO {}",
                Grantee(grantee)
            ),
            Item::Function {
                schema,
                name,
                args,
                owner,
                definition,
            } => write!(
                f,
                "function {schema:?}.{name:?}({args}) OWNER {owner:?}: {}",
                definition.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
            Item::DefaultPrivilege {
                role,
                schema,
                objects,
                privilege,
                grantee,
            } => {
                write!(f, "default privilege FOR ROLE {role:?}")?;
                if !schema.is_empty() {
                    write!(f, " IN SCHEMA {schema:?}")?;
                }
                write!(f, " {privilege} ON {objects} TO {}", Grantee(grantee))
            }
            Item::Policy {
                schema,
                table,
                name,
                definition,
            } => write!(f, "policy {name:?} ON {schema:?}.{table:?} {definition}"),
            Item::View {
                schema,
                name,
                owner,
                options,
                definition,
            } => write!(
                f,
                "view {schema:?}.{name:?} OWNER {owner:?} WITH ({options}) AS {}",
                definition.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
            Item::Schema { name, owner } => write!(f, "schema {name:?} OWNER {owner:?}"),
            Item::Rls {
                schema,
                table,
                enabled,
                forced,
            } => write!(
                f,
                "table {schema:?}.{table:?} row level security {}{}",
                on(*enabled, "enabled", "disabled"),
                on(*forced, ", forced", "")
            ),
            Item::ColumnGrant {
                privilege,
                schema,
                table,
                column,
                grantee,
            } => write!(
                f,
                "grant {privilege} ({column:?}) ON TABLE {schema:?}.{table:?} TO {grantee:?}"
            ),
            Item::Table {
                schema,
                name,
                owner,
                ..
            } => {
                write!(
                    f,
                    "owned table {schema:?}.{name:?} OWNER {owner:?} and its rows"
                )
            }
        }
    }
}

/// A grantee as printed: the role's name quoted, or `PUBLIC`.
struct Grantee<'a>(&'a str);

impl fmt::Display for Grantee<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("PUBLIC")
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

/// The normalised catalog of what sqlsandbox owns in one database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Its facts.
    pub items: BTreeSet<Item>,
}

/// The differences between the live catalog and the policy's export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Live, but not what the policy asks for (the plan removes it).
    pub extra: Vec<Item>,
    /// What the policy asks for, not live (the plan creates it).
    pub missing: Vec<Item>,
}

impl Diff {
    /// True when live and desired are the same.
    pub fn is_empty(&self) -> bool {
        self.extra.is_empty() && self.missing.is_empty()
    }

    fn between(live: &Model, desired: &Model) -> Diff {
        Diff {
            extra: live.items.difference(&desired.items).cloned().collect(),
            missing: desired.items.difference(&live.items).cloned().collect(),
        }
    }
}

impl fmt::Display for Diff {
    /// One line per difference: `- ` live but not in the policy, `+ ` in
    /// the policy but not live.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in &self.extra {
            writeln!(f, "- {}", oneline(&i.to_string()))?;
        }
        for i in &self.missing {
            writeln!(f, "+ {}", oneline(&i.to_string()))?;
        }
        Ok(())
    }
}

/// A migration from the live database to the policy's export.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The statements, to run in one transaction.
    pub sql: String,
    /// What they change.
    pub diff: Diff,
}

impl Plan {
    /// The plan as a script: the differences as comments, then the
    /// statements between `BEGIN` and `COMMIT`.
    pub fn script(&self) -> String {
        let mut out = String::from("-- sqlsandbox plan: what applying it changes\n");
        if self.diff.is_empty() {
            out.push_str("-- nothing: the database is what the policy says\n");
        }
        for line in self.diff.to_string().lines() {
            out.push_str("-- ");
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("BEGIN;\n");
        out.push_str(&self.sql);
        out.push_str("COMMIT;\n");
        out
    }
}

fn oneline(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn db_error(e: postgres::Error) -> Error {
    let message = match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => crate::error::chain(&e),
    };
    Error::Io {
        path: "live database".into(),
        message,
    }
}

/// The policy database the live one stands for: `opts.database`, or the
/// only PostgreSQL database of the policy.
fn single_database(policy: &Policy, opts: &ExportOptions) -> Result<ExportOptions> {
    let mut opts = opts.clone();
    if opts.database.is_none() {
        let pg: Vec<&String> = policy
            .databases
            .iter()
            .filter(|(_, d)| d.dialect == Dialect::Postgres)
            .map(|(n, _)| n)
            .collect();
        match pg.as_slice() {
            [one] => opts.database = Some((*one).clone()),
            [] => {
                return Err(Error::Unsupported {
                    construct: "export to PostgreSQL of a policy without a PostgreSQL database"
                        .into(),
                })
            }
            many => {
                return Err(Error::DatabaseRequired {
                    choices: many
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
    }
    Ok(opts)
}

/// Extra facts the plan needs besides the model.
#[derive(Default)]
struct Live {
    model: Model,
    /// Tables (schema, name) with a policy that does not carry the marker.
    foreign_policy_tables: BTreeSet<(String, String)>,
    /// The current database.
    database: String,
}

fn quoted_qualified(schema: &str, name: &str) -> Result<String> {
    Ok(format!("{}.{}", ident(schema)?, ident(name)?))
}

/// Reads what sqlsandbox owns (under `opts`) from the catalog.
fn read(c: &mut impl GenericClient, policy: &Policy, opts: &ExportOptions) -> Result<Live> {
    let mark = marker(opts);
    let mut items = BTreeSet::new();
    let mut roles: Vec<String> = Vec::new();
    for r in c
        .query(
            "SELECT rolname::text, rolcanlogin, rolinherit, rolbypassrls, \
                    concat_ws(' ', CASE WHEN rolsuper THEN 'SUPERUSER' END, \
                      CASE WHEN rolcreatedb THEN 'CREATEDB' END, \
                      CASE WHEN rolcreaterole THEN 'CREATEROLE' END, \
                      CASE WHEN rolreplication THEN 'REPLICATION' END) \
             FROM pg_catalog.pg_roles \
             WHERE left(rolname::text, length($1)) = $1 \
               AND pg_catalog.shobj_description(oid, 'pg_authid') = $2",
            &[&opts.role_prefix, &mark],
        )
        .map_err(db_error)?
    {
        let name: String = r.get(0);
        roles.push(name.clone());
        items.insert(Item::Role {
            name,
            login: r.get(1),
            inherit: r.get(2),
            bypassrls: r.get(3),
            privileged: r.get(4),
        });
    }
    for r in c
        .query(
            "SELECT r.rolname::text, coalesce(d.datname::text, ''), x \
             FROM pg_catalog.pg_db_role_setting s \
             JOIN pg_catalog.pg_roles r ON r.oid = s.setrole \
             LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) x \
             WHERE (s.setdatabase = 0 OR d.datname = current_database()) \
               AND r.rolname::text = ANY($1)",
            &[&roles],
        )
        .map_err(db_error)?
    {
        items.insert(Item::RoleSetting {
            role: r.get(0),
            database: r.get(1),
            setting: r.get(2),
        });
    }
    for r in c
        .query(
            "SELECT r.rolname::text, m.rolname::text, a.admin_option FROM pg_catalog.pg_auth_members a \
             JOIN pg_catalog.pg_roles r ON r.oid = a.roleid \
             JOIN pg_catalog.pg_roles m ON m.oid = a.member \
             WHERE m.rolname::text = ANY($1)",
            &[&roles],
        )
        .map_err(db_error)?
    {
        items.insert(Item::Member {
            role: r.get(0),
            member: r.get(1),
            admin: r.get(2),
        });
    }
    // Grants to owned roles on anything, and on owned objects to anyone
    // (`PUBLIC` is grantee 0: an empty name), never the owner's own (the
    // owner is modelled with the object). A function's `NULL` ACL is its
    // default (`acldefault`: `EXECUTE` to `PUBLIC`); a relation's or
    // schema's default grants nobody else anything.
    for r in c
        .query(
            "SELECT a.privilege_type, CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, \
                    n.nspname::text, c.relname::text, coalesce(g.rolname::text, '') \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL aclexplode(c.relacl) a \
             LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND a.grantee <> c.relowner \
               AND (g.rolname::text = ANY($1) \
                    OR pg_catalog.obj_description(c.oid, 'pg_class') = $2) \
             UNION ALL \
             SELECT a.privilege_type, 'SCHEMA', n.nspname::text, '', coalesce(g.rolname::text, '') \
             FROM pg_catalog.pg_namespace n \
             CROSS JOIN LATERAL aclexplode(n.nspacl) a \
             LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee \
             WHERE a.grantee <> n.nspowner AND (g.rolname::text = ANY($1) \
                   OR pg_catalog.obj_description(n.oid, 'pg_namespace') = $2) \
             UNION ALL \
             SELECT a.privilege_type, 'DATABASE', '', '', g.rolname::text \
             FROM pg_catalog.pg_database d \
             CROSS JOIN LATERAL aclexplode(d.datacl) a JOIN pg_catalog.pg_roles g ON g.oid = a.grantee \
             WHERE d.datname = current_database() AND g.rolname::text = ANY($1)",
            &[&roles, &mark],
        )
        .map_err(db_error)?
    {
        items.insert(Item::Grant {
            privilege: r.get(0),
            kind: r.get(1),
            schema: r.get(2),
            object: r.get(3),
            grantee: r.get(4),
        });
    }
    for r in c
        .query(
            "SELECT a.privilege_type, n.nspname::text, p.proname::text, \
                    pg_catalog.pg_get_function_identity_arguments(p.oid), coalesce(g.rolname::text, '') \
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a \
             LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee \
             WHERE a.grantee <> p.proowner AND (g.rolname::text = ANY($1) \
                   OR pg_catalog.obj_description(p.oid, 'pg_proc') = $2)",
            &[&roles, &mark],
        )
        .map_err(db_error)?
    {
        items.insert(Item::FunctionGrant {
            privilege: r.get(0),
            schema: r.get(1),
            name: r.get(2),
            args: r.get(3),
            grantee: r.get(4),
        });
    }
    for r in c
        .query(
            "SELECT n.nspname::text, p.proname::text, \
                    pg_catalog.pg_get_function_identity_arguments(p.oid), \
                    pg_catalog.pg_get_userbyid(p.proowner)::text, \
                    CASE WHEN p.prokind IN ('f', 'p') THEN pg_catalog.pg_get_functiondef(p.oid) \
                         ELSE 'kind ' || p.prokind::text END \
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             WHERE pg_catalog.obj_description(p.oid, 'pg_proc') = $1",
            &[&mark],
        )
        .map_err(db_error)?
    {
        items.insert(Item::Function {
            schema: r.get(0),
            name: r.get(1),
            args: r.get(2),
            owner: r.get(3),
            definition: r.get(4),
        });
    }
    for r in c
        .query(
            "SELECT pg_catalog.pg_get_userbyid(d.defaclrole)::text, coalesce(n.nspname::text, ''), \
                    CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' \
                      WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' \
                      ELSE d.defaclobjtype::text END, \
                    a.privilege_type, coalesce(g.rolname::text, '') \
             FROM pg_catalog.pg_default_acl d \
             LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace \
             CROSS JOIN LATERAL aclexplode(d.defaclacl) a \
             LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee \
             WHERE a.grantee <> d.defaclrole AND (g.rolname::text = ANY($1) \
                   OR pg_catalog.obj_description(n.oid, 'pg_namespace') = $2)",
            &[&roles, &mark],
        )
        .map_err(db_error)?
    {
        items.insert(Item::DefaultPrivilege {
            role: r.get(0),
            schema: r.get(1),
            objects: r.get(2),
            privilege: r.get(3),
            grantee: r.get(4),
        });
    }
    for r in c
        .query(
            "SELECT a.privilege_type, n.nspname::text, c.relname::text, att.attname::text, \
                    coalesce(g.rolname::text, '') \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute att ON att.attrelid = c.oid AND att.attnum > 0 AND NOT att.attisdropped \
             CROSS JOIN LATERAL aclexplode(att.attacl) a LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.grantee <> c.relowner \
               AND (g.rolname::text = ANY($1) \
                    OR pg_catalog.obj_description(c.oid, 'pg_class') = $2)",
            &[&roles, &mark],
        )
        .map_err(db_error)?
    {
        items.insert(Item::ColumnGrant {
            privilege: r.get(0),
            schema: r.get(1),
            table: r.get(2),
            column: r.get(3),
            grantee: r.get(4),
        });
    }
    let owned_tables: Vec<(String, String, String)> = c
        .query(
            "SELECT n.nspname::text, c.relname::text, pg_catalog.pg_get_userbyid(c.relowner)::text \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND pg_catalog.obj_description(c.oid, 'pg_class') = $1",
            &[&mark],
        )
        .map_err(db_error)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for (schema, name, owner) in owned_tables {
        let digest: String = c
            .query_one(
                &format!(
                    "SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {} t",
                    quoted_qualified(&schema, &name)?
                ),
                &[],
            )
            .map_err(db_error)?
            .get(0);
        items.insert(Item::Table {
            schema,
            name,
            owner,
            digest,
        });
    }
    let mut foreign_policy_tables = BTreeSet::new();
    for r in c
        .query(
            "SELECT n.nspname::text, c.relname::text, p.polname::text, \
                    pg_catalog.obj_description(p.oid, 'pg_policy') IS NOT DISTINCT FROM $1 \
                    OR p.polroles && ARRAY(SELECT oid FROM pg_catalog.pg_roles WHERE rolname::text = ANY($2)), \
                    CASE WHEN p.polpermissive THEN 'AS PERMISSIVE' ELSE 'AS RESTRICTIVE' END \
                    || ' FOR ' || CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' \
                       WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END \
                    || ' TO ' || array_to_string(ARRAY(SELECT CASE WHEN x = 0 THEN 'PUBLIC' \
                       ELSE quote_ident(pg_catalog.pg_get_userbyid(x)::text) END \
                       FROM unnest(p.polroles) x ORDER BY 1), ', ') \
                    || coalesce(' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')', '') \
                    || coalesce(' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')', '') \
             FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
            &[&mark, &roles],
        )
        .map_err(db_error)?
    {
        let (schema, table): (String, String) = (r.get(0), r.get(1));
        if r.get::<_, bool>(3) {
            items.insert(Item::Policy {
                schema,
                table,
                name: r.get(2),
                definition: r.get(4),
            });
        } else {
            foreign_policy_tables.insert((schema, table));
        }
    }
    for r in c
        .query(
            "SELECT n.nspname::text, c.relname::text, pg_catalog.pg_get_userbyid(c.relowner)::text, \
                    coalesce(array_to_string(ARRAY(SELECT o FROM unnest(c.reloptions) o ORDER BY 1), ','), ''), \
                    pg_catalog.pg_get_viewdef(c.oid) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'v' AND pg_catalog.obj_description(c.oid, 'pg_class') = $1",
            &[&mark],
        )
        .map_err(db_error)?
    {
        items.insert(Item::View {
            schema: r.get(0),
            name: r.get(1),
            owner: r.get(2),
            options: r.get(3),
            definition: r.get(4),
        });
    }
    for r in c
        .query(
            "SELECT nspname::text, pg_catalog.pg_get_userbyid(nspowner)::text \
             FROM pg_catalog.pg_namespace \
             WHERE pg_catalog.obj_description(oid, 'pg_namespace') = $1",
            &[&mark],
        )
        .map_err(db_error)?
    {
        items.insert(Item::Schema {
            name: r.get(0),
            owner: r.get(1),
        });
    }
    let (mut schemas, mut names) = (Vec::<String>::new(), Vec::<String>::new());
    if let Some(db) = opts.database.as_deref().and_then(|d| policy.database(d)) {
        for t in db.tables() {
            schemas.push(t.key.schema.clone());
            names.push(t.key.name.clone());
        }
    }
    for r in c
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relrowsecurity, c.relforcerowsecurity \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN unnest($1::text[], $2::text[]) AS d(s, t) ON d.s = n.nspname AND d.t = c.relname \
             WHERE c.relkind IN ('r', 'p')",
            &[&schemas, &names],
        )
        .map_err(db_error)?
    {
        items.insert(Item::Rls {
            schema: r.get(0),
            table: r.get(1),
            enabled: r.get(2),
            forced: r.get(3),
        });
    }
    let database: String = c
        .query_one("SELECT current_database()::text", &[])
        .map_err(db_error)?
        .get(0);
    Ok(Live {
        model: Model { items },
        foreign_policy_tables,
        database,
    })
}

/// Whether a privilege name read from the catalog can be printed as is.
fn is_privilege(p: &str) -> bool {
    !p.is_empty() && p.chars().all(|c| c.is_ascii_uppercase() || c == ' ')
}

/// Whether the plan drops relation `schema.name` (an owned view or table),
/// its grants with it.
fn dropped(live: &Live, schema: &str, name: &str) -> bool {
    live.model.items.iter().any(|i| match i {
        Item::View {
            schema: s, name: n, ..
        }
        | Item::Table {
            schema: s, name: n, ..
        } => s == schema && n == name,
        _ => false,
    })
}

/// Whether the plan drops function `schema.name(args)` (an owned one).
fn dropped_function(live: &Live, schema: &str, name: &str, args: &str) -> bool {
    live.model.items.iter().any(|i| {
        matches!(i, Item::Function { schema: s, name: n, args: a, .. }
            if s == schema && n == name && a == args)
    })
}

/// A grantee in a statement: the quoted role, or `PUBLIC`.
fn grantee_sql(grantee: &str) -> Result<String> {
    if grantee.is_empty() {
        Ok("PUBLIC".into())
    } else {
        ident(grantee)
    }
}

/// `schema.name(args)` of a function read from the catalog, to print in
/// a statement. The argument list is PostgreSQL's own (types quoted by
/// `format_type`); one that could end the statement is refused.
fn function_sql(schema: &str, name: &str, args: &str) -> Result<String> {
    if args.contains([';', '$', '\'', '\\']) || args.contains("--") || args.contains("/*") {
        return Err(Error::Unsupported {
            construct: format!(
                "the argument list `{args}` of function {schema}.{name} in the catalog"
            ),
        });
    }
    Ok(format!("{}({args})", quoted_qualified(schema, name)?))
}

fn check_privilege(p: &str) -> Result<()> {
    if is_privilege(p) {
        Ok(())
    } else {
        Err(Error::Unsupported {
            construct: format!("the privilege `{p}` in the catalog"),
        })
    }
}

/// The statements that take the live state to the policy's export.
fn migration(live: &Live, policy: &Policy, opts: &ExportOptions) -> Result<String> {
    let export = render_postgres(policy, opts)?;
    let mut policies = String::new();
    let mut views = String::new();
    let mut tables = String::new();
    let mut functions = String::new();
    let mut revokes = String::new();
    let mut members = String::new();
    let mut settings = BTreeSet::new();
    let mut defaults = String::new();
    let mut rls = String::new();
    let mut schemas = String::new();
    let mut roles = String::new();
    for item in &live.model.items {
        match item {
            Item::Policy {
                schema,
                table,
                name,
                ..
            } => {
                policies.push_str(&format!(
                    "DROP POLICY IF EXISTS {} ON {};\n",
                    ident(name)?,
                    quoted_qualified(schema, table)?
                ));
            }
            Item::View { schema, name, .. } => {
                views.push_str(&format!(
                    "DROP VIEW IF EXISTS {};\n",
                    quoted_qualified(schema, name)?
                ));
            }
            Item::Grant {
                privilege,
                kind,
                schema,
                object,
                grantee,
            } => {
                check_privilege(privilege)?;
                if matches!(kind.as_str(), "TABLE" | "SEQUENCE") && dropped(live, schema, object) {
                    // Its grants go with it.
                    continue;
                }
                let on = match kind.as_str() {
                    "TABLE" => format!("TABLE {}", quoted_qualified(schema, object)?),
                    "SEQUENCE" => format!("SEQUENCE {}", quoted_qualified(schema, object)?),
                    "SCHEMA" => format!("SCHEMA {}", ident(schema)?),
                    _ => format!("DATABASE {}", ident(&live.database)?),
                };
                revokes.push_str(&format!(
                    "REVOKE {privilege} ON {on} FROM {};\n",
                    grantee_sql(grantee)?
                ));
            }
            Item::FunctionGrant {
                privilege,
                schema,
                name,
                args,
                grantee,
            } => {
                check_privilege(privilege)?;
                if dropped_function(live, schema, name, args) {
                    continue;
                }
                revokes.push_str(&format!(
                    "REVOKE {privilege} ON FUNCTION {} FROM {};\n",
                    function_sql(schema, name, args)?,
                    grantee_sql(grantee)?
                ));
            }
            Item::Function {
                schema, name, args, ..
            } => {
                // Dropped and created again by the export: its body,
                // flags, owner and privileges become what the policy says.
                functions.push_str(&format!(
                    "DROP ROUTINE IF EXISTS {};\n",
                    function_sql(schema, name, args)?
                ));
            }
            Item::DefaultPrivilege {
                role,
                schema,
                objects,
                privilege,
                grantee,
            } => {
                check_privilege(privilege)?;
                check_privilege(objects)?;
                let in_schema = if schema.is_empty() {
                    String::new()
                } else {
                    format!(" IN SCHEMA {}", ident(schema)?)
                };
                defaults.push_str(&format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {}{in_schema} REVOKE {privilege} ON {objects} FROM {};\n",
                    ident(role)?,
                    grantee_sql(grantee)?
                ));
            }
            Item::ColumnGrant {
                privilege,
                schema,
                table,
                column,
                grantee,
            } => {
                check_privilege(privilege)?;
                if dropped(live, schema, table) {
                    continue;
                }
                revokes.push_str(&format!(
                    "REVOKE {privilege} ({}) ON TABLE {} FROM {};\n",
                    ident(column)?,
                    quoted_qualified(schema, table)?,
                    grantee_sql(grantee)?
                ));
            }
            Item::Table { schema, name, .. } => {
                tables.push_str(&format!(
                    "DROP TABLE IF EXISTS {};\n",
                    quoted_qualified(schema, name)?
                ));
            }
            Item::Member { role, member, .. } => {
                members.push_str(&format!(
                    "REVOKE {} FROM {};\n",
                    ident(role)?,
                    ident(member)?
                ));
            }
            Item::RoleSetting { role, database, .. } => {
                settings.insert((role.clone(), database.clone()));
            }
            Item::Rls {
                schema,
                table,
                enabled,
                forced,
            } => {
                let t = quoted_qualified(schema, table)?;
                if *enabled
                    && !live
                        .foreign_policy_tables
                        .contains(&(schema.clone(), table.clone()))
                {
                    rls.push_str(&format!("ALTER TABLE {t} DISABLE ROW LEVEL SECURITY;\n"));
                }
                if *forced {
                    rls.push_str(&format!("ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY;\n"));
                }
            }
            Item::Schema { name, .. } => {
                if !export.schemas.contains(name) {
                    schemas.push_str(&format!("DROP SCHEMA {};\n", ident(name)?));
                }
            }
            Item::Role { name, .. } => {
                if !export.roles.contains(name) {
                    roles.push_str(&format!("DROP ROLE {};\n", ident(name)?));
                }
            }
        }
    }
    let mut out = String::from(
        "-- Remove what sqlsandbox owns (the export below creates again what the policy keeps).\n",
    );
    for part in [&policies, &views, &tables, &functions, &revokes, &members] {
        out.push_str(part);
    }
    for (r, db) in &settings {
        if db.is_empty() {
            out.push_str(&format!("ALTER ROLE {} RESET ALL;\n", ident(r)?));
        } else {
            out.push_str(&format!(
                "ALTER ROLE {} IN DATABASE {} RESET ALL;\n",
                ident(r)?,
                ident(db)?
            ));
        }
    }
    for part in [&defaults, &rls, &schemas, &roles] {
        out.push_str(part);
    }
    out.push_str("\n-- The export.\n");
    out.push_str(&export.sql);
    Ok(out)
}

fn connect(url: &str) -> Result<Client> {
    Client::connect(url, NoTls).map_err(db_error)
}

/// Plans, and with `commit` applies, in one transaction on `c`.
fn run(c: &mut Client, policy: &Policy, opts: &ExportOptions, commit: bool) -> Result<Plan> {
    let opts = single_database(policy, opts)?;
    let mut tx = c.transaction().map_err(db_error)?;
    let live = read(&mut tx, policy, &opts)?;
    let sql = migration(&live, policy, &opts)?;
    tx.batch_execute(&sql).map_err(db_error)?;
    let desired = read(&mut tx, policy, &opts)?;
    if commit {
        tx.commit().map_err(db_error)?;
    } else {
        tx.rollback().map_err(db_error)?;
    }
    Ok(Plan {
        sql,
        diff: Diff::between(&live.model, &desired.model),
    })
}

/// The migration from the database at `url` (PostgreSQL) to the export of
/// `policy`, with what it changes. Nothing is changed: the plan is tried in
/// a transaction that is rolled back (see the module documentation).
pub fn plan(url: &str, policy: &Policy, opts: &ExportOptions) -> Result<Plan> {
    run(&mut connect(url)?, policy, opts, false)
}

/// Applies [`plan`] in one transaction; returns what it changed.
pub fn apply(url: &str, policy: &Policy, opts: &ExportOptions) -> Result<Plan> {
    run(&mut connect(url)?, policy, opts, true)
}

/// The differences between the database at `url` and the export of
/// `policy` (empty when none).
pub fn drift(url: &str, policy: &Policy, opts: &ExportOptions) -> Result<Diff> {
    Ok(plan(url, policy, opts)?.diff)
}

/// The normalised model of what sqlsandbox owns in the database at `url`.
pub fn model(url: &str, policy: &Policy, opts: &ExportOptions) -> Result<Model> {
    let opts = single_database(policy, opts)?;
    Ok(read(&mut connect(url)?, policy, &opts)?.model)
}
