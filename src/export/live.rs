//! Plan, apply and drift of the PostgreSQL export against a live database
//! (feature `live`).
//!
//! **What sqlsandbox owns.** Every role, row level security policy, view
//! and schema the export creates carries the comment [`marker`]
//! (`sqlsandbox export <role prefix>`); a role is sqlsandbox's when its name
//! starts with the role prefix *and* it carries the marker. Grants to those
//! roles, role settings of those roles, and memberships between two of
//! those roles are sqlsandbox's too. Nothing else is ever dropped or
//! revoked. The row level security flags of the policy's declared tables
//! are set to what the export needs; RLS is only disabled on a table that
//! has no policy without the marker.
//!
//! **Plan.** [`plan`] reads what sqlsandbox owns in the live database and
//! prints the migration: drop every owned policy and view, revoke every
//! grant to and membership between owned roles, reset their settings,
//! switch off RLS where the policy no longer needs it, drop owned view
//! schemas and roles the policy no longer has, then the export itself
//! (which creates what is missing and grants again what stays). Run in one
//! transaction ([`apply`]) no other session sees an intermediate state:
//! every statement of it, `CREATE ROLE` and `DROP ROLE` included, is
//! transactional in PostgreSQL.
//!
//! **Drift.** [`drift`] compares two normalised [`Model`]s of the catalog
//! restricted to what sqlsandbox owns: the live one, and the one the
//! policy asks for. The desired model is read from the same catalog after
//! running the plan inside a transaction that is then rolled back, so
//! policy expressions and view definitions are compared after
//! PostgreSQL's own deparse (`pg_get_expr`, `pg_get_viewdef`), not as
//! text sqlsandbox printed. (It takes the plan's locks for that moment and
//! needs the privileges of `apply`.)

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
    /// A setting of an owned role (`ALTER ROLE … SET`, every database).
    RoleSetting {
        /// The role.
        role: String,
        /// `name=value`.
        setting: String,
    },
    /// `member` is a member of `role` (both owned).
    Member {
        /// The granted role.
        role: String,
        /// Its member.
        member: String,
    },
    /// A privilege granted to an owned role.
    Grant {
        /// `SELECT`, `USAGE`, `CONNECT`, ...
        privilege: String,
        /// `TABLE`, `SCHEMA` or `DATABASE` (the current one).
        kind: String,
        /// The schema of a table, the schema, or empty.
        schema: String,
        /// The name of a table, or empty.
        object: String,
        /// The owned role.
        grantee: String,
    },
    /// A row level security policy carrying the marker.
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
        /// Its options (`security_barrier=true`).
        options: String,
        /// `pg_get_viewdef`.
        definition: String,
    },
    /// A schema carrying the marker.
    Schema {
        /// Its name.
        name: String,
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
            Item::RoleSetting { role, setting } => write!(f, "role {role:?} SET {setting:?}"),
            Item::Member { role, member } => write!(f, "membership {role:?} TO {member:?}"),
            Item::Grant {
                privilege,
                kind,
                schema,
                object,
                grantee,
            } => match kind.as_str() {
                "TABLE" => write!(
                    f,
                    "grant {privilege} ON TABLE {schema:?}.{object:?} TO {grantee:?}"
                ),
                "SCHEMA" => write!(f, "grant {privilege} ON SCHEMA {schema:?} TO {grantee:?}"),
                _ => write!(f, "grant {privilege} ON {kind} TO {grantee:?}"),
            },
            Item::Policy {
                schema,
                table,
                name,
                definition,
            } => write!(f, "policy {name:?} ON {schema:?}.{table:?} {definition}"),
            Item::View {
                schema,
                name,
                options,
                definition,
            } => write!(
                f,
                "view {schema:?}.{name:?} WITH ({options}) AS {}",
                definition.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
            Item::Schema { name } => write!(f, "schema {name:?}"),
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
            Item::Table { schema, name, .. } => {
                write!(f, "owned table {schema:?}.{name:?} and its rows")
            }
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
            "SELECT r.rolname::text, x FROM pg_catalog.pg_db_role_setting s \
             JOIN pg_catalog.pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) x \
             WHERE s.setdatabase = 0 AND r.rolname::text = ANY($1)",
            &[&roles],
        )
        .map_err(db_error)?
    {
        items.insert(Item::RoleSetting {
            role: r.get(0),
            setting: r.get(1),
        });
    }
    for r in c
        .query(
            "SELECT r.rolname::text, m.rolname::text FROM pg_catalog.pg_auth_members a \
             JOIN pg_catalog.pg_roles r ON r.oid = a.roleid \
             JOIN pg_catalog.pg_roles m ON m.oid = a.member \
             WHERE r.rolname::text = ANY($1) AND m.rolname::text = ANY($1)",
            &[&roles],
        )
        .map_err(db_error)?
    {
        items.insert(Item::Member {
            role: r.get(0),
            member: r.get(1),
        });
    }
    for r in c
        .query(
            "SELECT a.privilege_type, 'TABLE', n.nspname::text, c.relname::text, g.rolname::text \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_catalog.pg_roles g ON g.oid = a.grantee \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND g.rolname::text = ANY($1) \
             UNION ALL \
             SELECT a.privilege_type, 'SCHEMA', n.nspname::text, '', g.rolname::text \
             FROM pg_catalog.pg_namespace n \
             CROSS JOIN LATERAL aclexplode(n.nspacl) a JOIN pg_catalog.pg_roles g ON g.oid = a.grantee \
             WHERE g.rolname::text = ANY($1) \
             UNION ALL \
             SELECT a.privilege_type, 'DATABASE', '', '', g.rolname::text \
             FROM pg_catalog.pg_database d \
             CROSS JOIN LATERAL aclexplode(d.datacl) a JOIN pg_catalog.pg_roles g ON g.oid = a.grantee \
             WHERE d.datname = current_database() AND g.rolname::text = ANY($1)",
            &[&roles],
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
            "SELECT a.privilege_type, n.nspname::text, c.relname::text, att.attname::text, g.rolname::text \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute att ON att.attrelid = c.oid AND att.attnum > 0 AND NOT att.attisdropped \
             CROSS JOIN LATERAL aclexplode(att.attacl) a JOIN pg_catalog.pg_roles g ON g.oid = a.grantee \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND g.rolname::text = ANY($1)",
            &[&roles],
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
    let owned_tables: Vec<(String, String)> = c
        .query(
            "SELECT n.nspname::text, c.relname::text \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND pg_catalog.obj_description(c.oid, 'pg_class') = $1",
            &[&mark],
        )
        .map_err(db_error)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (schema, name) in owned_tables {
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
            digest,
        });
    }
    let mut foreign_policy_tables = BTreeSet::new();
    for r in c
        .query(
            "SELECT n.nspname::text, c.relname::text, p.polname::text, \
                    pg_catalog.obj_description(p.oid, 'pg_policy') IS NOT DISTINCT FROM $1, \
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
            &[&mark],
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
            "SELECT n.nspname::text, c.relname::text, \
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
            options: r.get(2),
            definition: r.get(3),
        });
    }
    for r in c
        .query(
            "SELECT nspname::text FROM pg_catalog.pg_namespace \
             WHERE pg_catalog.obj_description(oid, 'pg_namespace') = $1",
            &[&mark],
        )
        .map_err(db_error)?
    {
        items.insert(Item::Schema { name: r.get(0) });
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

/// The statements that take the live state to the policy's export.
fn migration(live: &Live, policy: &Policy, opts: &ExportOptions) -> Result<String> {
    let export = render_postgres(policy, opts)?;
    let mut policies = String::new();
    let mut views = String::new();
    let mut tables = String::new();
    let mut revokes = String::new();
    let mut members = String::new();
    let mut settings = BTreeSet::new();
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
                if !is_privilege(privilege) {
                    return Err(Error::Unsupported {
                        construct: format!("the privilege `{privilege}` in the catalog"),
                    });
                }
                if kind == "TABLE" && dropped(live, schema, object) {
                    // Its grants go with it.
                    continue;
                }
                let on = match kind.as_str() {
                    "TABLE" => format!("TABLE {}", quoted_qualified(schema, object)?),
                    "SCHEMA" => format!("SCHEMA {}", ident(schema)?),
                    _ => format!("DATABASE {}", ident(&live.database)?),
                };
                revokes.push_str(&format!(
                    "REVOKE {privilege} ON {on} FROM {};\n",
                    ident(grantee)?
                ));
            }
            Item::ColumnGrant {
                privilege,
                schema,
                table,
                column,
                grantee,
            } => {
                if !is_privilege(privilege) {
                    return Err(Error::Unsupported {
                        construct: format!("the privilege `{privilege}` in the catalog"),
                    });
                }
                if dropped(live, schema, table) {
                    continue;
                }
                revokes.push_str(&format!(
                    "REVOKE {privilege} ({}) ON TABLE {} FROM {};\n",
                    ident(column)?,
                    quoted_qualified(schema, table)?,
                    ident(grantee)?
                ));
            }
            Item::Table { schema, name, .. } => {
                tables.push_str(&format!(
                    "DROP TABLE IF EXISTS {};\n",
                    quoted_qualified(schema, name)?
                ));
            }
            Item::Member { role, member } => {
                members.push_str(&format!(
                    "REVOKE {} FROM {};\n",
                    ident(role)?,
                    ident(member)?
                ));
            }
            Item::RoleSetting { role, .. } => {
                settings.insert(role.clone());
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
            Item::Schema { name } => {
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
    for part in [&policies, &views, &tables, &revokes, &members] {
        out.push_str(part);
    }
    for r in &settings {
        out.push_str(&format!("ALTER ROLE {} RESET ALL;\n", ident(r)?));
    }
    for part in [&rls, &schemas, &roles] {
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
