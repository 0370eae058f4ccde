//! The one place that runs the stages, in order: front end (parse) or
//! builder or saved question → functions → rewrite → verify → route →
//! emit. Every entry point of the library goes through
//! [`rewrite_checked`], so no path can skip a stage.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlparser::ast::Query;

use crate::access;
use crate::bind::{Binder, BoundParam};
use crate::dialect::{Dialect, Fence};
use crate::emit::{fingerprint, number_params};
use crate::error::{Error, Result};
use crate::frontend::sql::{has_delicate_literal, lex, parse_query, Shape};
use crate::policy::{Database, FenceMode, Policy};
use crate::principal::{AttributeValue, Principal};
use crate::rewrite::{Applied, Fencing, Rewriter};
use crate::routing;

/// Options of one rewrite call.
///
/// Built from [`Options::default`] with the `with_*` methods (the struct is
/// `#[non_exhaustive]`, so that new options are not breaking changes):
///
/// ```
/// use sqlsandbox::{Dialect, Options};
/// let opts = Options::default().with_database("shop").with_params(true).with_dialect(Dialect::Postgres);
/// assert_eq!(opts.database.as_deref(), Some("shop"));
/// assert!(opts.params);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The policy database the query runs on (may be omitted when the
    /// policy declares exactly one).
    pub database: Option<String>,
    /// Override the database's dialect.
    pub dialect: Option<Dialect>,
    /// Return attribute values as bind parameters instead of literals.
    pub params: bool,
    /// Longest SQL text accepted, in bytes.
    pub max_sql_bytes: usize,
    /// Deepest nesting the parser accepts.
    pub max_depth: usize,
    /// Prefix the SQL with the statement that switches to the impersonated
    /// role (`SET ROLE …;`).
    pub emit_role: bool,
    /// Use `SET LOCAL ROLE` (PostgreSQL, inside a transaction).
    pub local_role: bool,
    /// Most operators (`+`, `AND`, `=`, …) a query may contain: chains such
    /// as `1+1+1…` parse without recursion into trees as deep as they are
    /// long, which later walks would pay for in stack and time.
    pub max_operators: usize,
    /// Overrides the database's `fence:` setting (see [`FenceMode`]).
    pub fence: Option<FenceMode>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            database: None,
            dialect: None,
            params: false,
            max_sql_bytes: 1 << 20,
            max_depth: 64,
            max_operators: 5_000,
            emit_role: false,
            local_role: false,
            fence: None,
        }
    }
}

impl Options {
    /// The policy database the query runs on.
    pub fn with_database(mut self, database: impl Into<String>) -> Self {
        self.database = Some(database.into());
        self
    }

    /// Overrides the database's dialect.
    pub fn with_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = Some(dialect);
        self
    }

    /// Attribute values as bind parameters instead of literals.
    pub fn with_params(mut self, params: bool) -> Self {
        self.params = params;
        self
    }

    /// Longest SQL text accepted, in bytes.
    pub fn with_max_sql_bytes(mut self, bytes: usize) -> Self {
        self.max_sql_bytes = bytes;
        self
    }

    /// Deepest nesting the parser accepts.
    pub fn with_max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Most operators a query may contain.
    pub fn with_max_operators(mut self, operators: usize) -> Self {
        self.max_operators = operators;
        self
    }

    /// Prefix the SQL with the impersonated role's statement.
    pub fn with_emit_role(mut self, emit_role: bool) -> Self {
        self.emit_role = emit_role;
        self
    }

    /// `SET LOCAL ROLE` instead of `SET ROLE` (PostgreSQL).
    pub fn with_local_role(mut self, local_role: bool) -> Self {
        self.local_role = local_role;
        self
    }

    /// Overrides the database's `fence:` setting.
    pub fn with_fence(mut self, fence: FenceMode) -> Self {
        self.fence = Some(fence);
        self
    }
}

/// The result of a rewrite.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Rewritten {
    /// The sandboxed SQL.
    pub sql: String,
    /// Bind parameters, in placeholder order (empty unless requested).
    pub params: Vec<BoundParam>,
    /// The database it must run on.
    pub database: String,
    /// The dialect it is written in.
    pub dialect: Dialect,
    /// The routing destination slug the query must run on; `None` for the
    /// database itself (or the router database when routing is configured).
    pub destination: Option<String>,
    /// The database role to run as (connection impersonation), if any.
    pub role: Option<String>,
    /// The statement that switches to `role` in this dialect (also prefixed
    /// to `sql` when [`Options::emit_role`] is set).
    pub role_statement: Option<String>,
    /// The sandboxes applied, one per rewritten table reference.
    pub applied: Vec<Applied>,
    /// Whether the sandboxes were fenced, and why.
    pub fencing: Fencing,
    /// A stable digest of the policy's version ([`crate::Policy::digest`]),
    /// `database`, `destination` (with its schema or catalog), `role` and
    /// `applied` (values included), for result-cache keys: two principals
    /// share cached results only when their fingerprints are equal, and an
    /// edited policy (or another hash key) changes every fingerprint.
    pub fingerprint: String,
}

pub(crate) fn pick_database<'p>(policy: &'p Policy, name: Option<&str>) -> Result<&'p Database> {
    match name {
        Some(n) => policy.databases.get(n).ok_or_else(|| Error::Unknown {
            kind: "database",
            name: n.to_string(),
        }),
        None => {
            let mut it = policy.databases.values();
            match (it.next(), it.next()) {
                (Some(db), None) => Ok(db),
                (None, _) => Err(Error::Unknown {
                    kind: "database",
                    name: "(the policy declares none)".into(),
                }),
                _ => Err(Error::DatabaseRequired {
                    choices: policy
                        .databases
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            }
        }
    }
}

/// For a non-administrator, a database that does not exist is refused as
/// one they may not query (`native`: SQL, else query-builder questions),
/// and the databases to choose from are those they may query: a refusal
/// does not list or confirm other clients' databases.
pub(crate) fn invisible_database(
    policy: &Policy,
    principal: &Principal,
    e: Error,
    native: bool,
) -> Error {
    if principal.is_admin() {
        return e;
    }
    match e {
        Error::Unknown {
            kind: "database",
            name,
        } if native => Error::NativeDenied {
            principal: principal.name().to_string(),
            database: name,
        },
        Error::Unknown {
            kind: "database",
            name,
        } => Error::BuilderDenied {
            principal: principal.name().to_string(),
            database: name,
        },
        Error::DatabaseRequired { .. } => Error::DatabaseRequired {
            choices: format!(
                "the ones this principal may query: {}",
                policy
                    .databases
                    .values()
                    .filter(|db| {
                        if native {
                            access::check_native(policy, principal, db).is_ok()
                        } else {
                            access::check_builder(policy, principal, db).is_ok()
                        }
                    })
                    .map(|db| db.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        other => other,
    }
}

/// Rewrites native SQL for a principal. See [`Policy::rewrite`].
pub(crate) fn rewrite_sql(
    policy: &Policy,
    principal: &Principal,
    sql: &str,
    opts: &Options,
) -> Result<Rewritten> {
    let db = pick_database(policy, opts.database.as_deref())
        .map_err(|e| invisible_database(policy, principal, e, true))?;
    let dialect = opts.dialect.unwrap_or(db.dialect);
    access::check_native(policy, principal, db)?;
    let (query, delicate, shape) = match parse_query(sql, dialect, opts) {
        Ok(parsed) => parsed,
        // A policy with write rules takes INSERT, UPDATE and DELETE too;
        // without them every write is refused as before.
        Err(Error::NotReadOnly(_)) if policy.writes => {
            let stmt = crate::frontend::sql::parse_write(sql, dialect, opts)?;
            return rewrite_write(policy, principal, db, dialect, stmt, opts);
        }
        Err(e) => return Err(e),
    };
    // The caller's SQL may not hold bind placeholders of its own (they
    // would collide with the parameters sqlsandbox binds).
    if let Some(p) = &shape.placeholder {
        return Err(Error::unsupported(format!(
            "the bind placeholder `{p}` in the query (sqlsandbox binds its own parameters)"
        )));
    }
    let source = Source { delicate, shape };
    rewrite_checked(
        policy,
        principal,
        db,
        dialect,
        query,
        source,
        opts,
        |_, _| Ok(()),
    )
}

/// A write statement under the principal's write rules (see
/// [`crate::rewrite::write`]), proven by the verifier's write check and
/// printed back the way reads are.
fn rewrite_write(
    policy: &Policy,
    principal: &Principal,
    db: &Database,
    dialect: Dialect,
    mut stmt: sqlparser::ast::Statement,
    opts: &Options,
) -> Result<Rewritten> {
    let mut rw = Rewriter::new(
        policy,
        db,
        dialect,
        principal,
        Binder::new(dialect, opts.params),
    );
    let write = rw.write(&mut stmt)?;
    crate::rewrite::write::verify_write(&stmt, &write, dialect, &policy.functions)?;
    routing::relocate(
        &mut stmt,
        db,
        dialect,
        &routing::route(policy, principal, db)?,
    );
    let params = if rw.binder.params.is_empty() {
        Vec::new()
    } else {
        number_params(&mut stmt, dialect, &rw.binder.params)?
    };
    let sql = stmt.to_string();
    // Printed text must mean the tree: parse it again.
    let reopts = Options {
        max_sql_bytes: usize::MAX,
        max_depth: opts.max_depth.saturating_mul(2),
        ..opts.clone()
    };
    if crate::frontend::sql::parse_write(&sql, dialect, &reopts)? != stmt {
        return Err(Error::unsupported(
            "a write statement that cannot be printed back unambiguously",
        ));
    }
    let fencing = Fencing {
        mode: opts.fence.unwrap_or(db.fence),
        fenced: false,
        reason: None,
        pushed: 0,
    };
    finish(
        policy, principal, db, dialect, sql, params, rw.applied, fencing, opts,
    )
}

/// Routing, the role statement and the fingerprint: the end every rewrite
/// shares.
#[allow(clippy::too_many_arguments)]
fn finish(
    policy: &Policy,
    principal: &Principal,
    db: &Database,
    dialect: Dialect,
    sql: String,
    params: Vec<BoundParam>,
    applied: Vec<Applied>,
    fencing: Fencing,
    opts: &Options,
) -> Result<Rewritten> {
    let route = routing::route(policy, principal, db)?;
    let role_statement = route
        .role
        .as_deref()
        .map(|r| routing::role_statement(dialect, r, opts.local_role))
        .transpose()?;
    let sql = match (&role_statement, opts.emit_role) {
        (Some(stmt), true) => format!("{stmt};\n{sql}"),
        _ => sql,
    };
    Ok(Rewritten {
        fingerprint: fingerprint(&policy.digest, &db.name, &route, &applied),
        sql,
        params,
        database: db.name.clone(),
        dialect,
        destination: route.destination,
        role: route.role,
        role_statement,
        applied,
        fencing,
    })
}

/// Runs a saved question by name: view permission on its collection, its
/// variables bound from `values`, then sandboxed like any SQL.
pub(crate) fn rewrite_saved_question(
    policy: &Policy,
    principal: &Principal,
    name: &str,
    values: &BTreeMap<String, AttributeValue>,
    opts: &Options,
) -> Result<Rewritten> {
    let q = match policy.questions.get(name) {
        Some(q) => q,
        None if !principal.is_admin() => return Err(access::invisible_question(principal, name)),
        None => {
            return Err(Error::Unknown {
                kind: "question",
                name: name.to_string(),
            })
        }
    };
    access::check_question(policy, principal, q).map_err(|e| match e {
        Error::AccessDenied { .. } => access::invisible_question(principal, name),
        other => other,
    })?;
    let db = pick_database(policy, Some(&q.database))?;
    if let Some(v) = values.keys().find(|v| !q.variables.contains(v)) {
        return Err(Error::Unknown {
            kind: "question variable",
            name: format!("{v} (question `{name}` has: {})", q.variables.join(", ")),
        });
    }
    let question = q.clone();
    rewrite_query(
        policy,
        principal,
        db,
        db.dialect,
        q.query.clone(),
        false,
        opts,
        move |rw: &mut Rewriter, query: &mut Query| {
            rw.bind_question_variables(query, &question, values)
                .map(|_| ())
        },
    )
}

/// Compiles a query-builder question and sandboxes it like native SQL.
/// See [`Policy::rewrite_builder`].
pub(crate) fn rewrite_builder(
    policy: &Policy,
    principal: &Principal,
    question: &serde_json::Value,
    opts: &Options,
) -> Result<Rewritten> {
    let compiled = crate::builder::compile(policy, principal, question, opts)?;
    // `delicate`: the printed SQL is always parsed again and must give the
    // very tree the builder built.
    rewrite_query(
        policy,
        principal,
        compiled.db,
        compiled.dialect,
        compiled.query,
        true,
        opts,
        |_, _| Ok(()),
    )
}

/// Rewrites an already parsed query (a query-builder question compiled to
/// SQL, or a saved question).
#[allow(clippy::too_many_arguments)]
pub(crate) fn rewrite_query(
    policy: &Policy,
    principal: &Principal,
    db: &Database,
    dialect: Dialect,
    query: Query,
    delicate: bool,
    opts: &Options,
    pre: impl FnOnce(&mut Rewriter, &mut Query) -> Result<()>,
) -> Result<Rewritten> {
    let source = Source {
        delicate,
        shape: Shape::unknown(),
    };
    rewrite_checked(policy, principal, db, dialect, query, source, opts, pre)
}

/// What the back end needs to know of where a query came from.
struct Source {
    /// The input had quotes or backslashes inside quoted text (see
    /// `parse_query`): the printed SQL is parsed again to prove it.
    delicate: bool,
    /// What the front end's token scan showed ([`Shape::unknown`] when
    /// there was none).
    shape: Shape,
}

/// The shared back end: the rewrite, the verifier (which also holds every
/// function call to the function policy), routing, then printing.
#[allow(clippy::too_many_arguments)]
fn rewrite_checked(
    policy: &Policy,
    principal: &Principal,
    db: &Database,
    dialect: Dialect,
    mut query: Query,
    source: Source,
    opts: &Options,
    pre: impl FnOnce(&mut Rewriter, &mut Query) -> Result<()>,
) -> Result<Rewritten> {
    let mut rw = Rewriter::new(
        policy,
        db,
        dialect,
        principal,
        Binder::new(dialect, opts.params),
    );
    rw.long_names = source.shape.long_names;
    rw.system_names = source.shape.system_names;
    pre(&mut rw, &mut query)?;
    rw.rewrite(&mut query)?;
    // The sandboxes are built without the fence. The verifier's exposure
    // analysis says whether they may stay so (`auto`); if not, the rewrite
    // fences them, moves row-safe conditions inside, and is proven again.
    let mode = opts.fence.unwrap_or(db.fence);
    let verdict = if mode == FenceMode::Always {
        crate::verify::Verdict::Unfenced {
            table: String::new(),
            why: String::new(),
        }
    } else {
        crate::verify::check(
            policy,
            db,
            dialect,
            principal,
            &rw.built,
            &rw.binder.params,
            mode,
            &mut query,
        )?
    };
    let fencing = match verdict {
        crate::verify::Verdict::Proven => Fencing {
            mode,
            fenced: false,
            reason: None,
            pushed: 0,
        },
        crate::verify::Verdict::Unfenced { table, why } if dialect.fence() == Fence::Unproven => {
            return Err(Error::unsupported(if why.is_empty() {
                format!("`fence: always` on {dialect}, which has no optimisation fence proven on the engine (it is checked by parsing only)")
            } else {
                format!("{why} (reading {table}) on {dialect}, a condition the engine could evaluate on rows the sandbox removes, with no optimisation fence proven on {dialect} (it is checked by parsing only; `fence: never` on the database accepts that error side channel)")
            }));
        }
        crate::verify::Verdict::Unfenced { .. } => {
            let fencing = rw.fence(&mut query, mode)?;
            crate::verify::verify(
                policy,
                db,
                dialect,
                principal,
                &rw.built,
                &rw.binder.params,
                mode,
                &mut query,
            )?;
            fencing
        }
    };
    routing::relocate(
        &mut query,
        db,
        dialect,
        &routing::route(policy, principal, db)?,
    );
    let params = if rw.binder.params.is_empty() {
        Vec::new()
    } else {
        number_params(&mut query, dialect, &rw.binder.params)?
    };
    if dialect == Dialect::Clickhouse {
        crate::emit::clickhouse_type_names(&mut query);
    }
    let sql = query.to_string();
    if source.delicate || db.dialect != dialect {
        // The printer guesses how quotes inside literals were escaped; when
        // the input had such characters, prove the text means the tree.
        // With a dialect override, always: the policy's saved questions
        // were parsed in the database's dialect, and the override dialect
        // may read their quoting otherwise (PostgreSQL's `"region"` is a
        // string on MySQL).
        let reopts = Options {
            max_sql_bytes: usize::MAX,
            max_depth: opts.max_depth.saturating_mul(2),
            ..opts.clone()
        };
        let reopts = Options {
            max_operators: usize::MAX,
            ..reopts
        };
        let (again, _, _) = parse_query(&sql, dialect, &reopts)?;
        if again != query {
            return Err(Error::unsupported(if db.dialect != dialect {
                format!(
                    "SQL that the {dialect} dialect reads differently from the {} dialect the policy was written for (quoting in a saved question or in the query)",
                    db.dialect
                )
            } else {
                "a quoted literal or identifier that cannot be printed back unambiguously (backslashes next to quotes)".to_string()
            }));
        }
    }
    if db.dialect != dialect && has_delicate_literal(&sql, dialect) {
        // With a dialect override, the database's declared dialect must read
        // the same text the same way (MySQL's backslash escapes, printed for
        // a PostgreSQL server, would end a string where MySQL does not) —
        // for the caller's literals and for bound attribute values alike.
        // Both lexers must cut the text into the same tokens.
        let same = match (lex(&sql, dialect), lex(&sql, db.dialect)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        if !same {
            return Err(Error::unsupported(format!(
                "quoted text with backslashes or quotes when the {dialect} dialect overrides the database's {} dialect (the two would read it differently)",
                db.dialect
            )));
        }
    }
    finish(
        policy, principal, db, dialect, sql, params, rw.applied, fencing, opts,
    )
}

/// See [`Policy::recheck`].
pub(crate) fn recheck(
    policy: &Policy,
    principal: &Principal,
    sql: &str,
    opts: &Options,
) -> Result<()> {
    let db = pick_database(policy, opts.database.as_deref())?;
    let dialect = opts.dialect.unwrap_or(db.dialect);
    let reopts = Options {
        max_sql_bytes: usize::MAX,
        max_depth: opts.max_depth.saturating_mul(2),
        max_operators: usize::MAX,
        ..opts.clone()
    };
    // A schema or catalog destination: the SQL must name the
    // destination's tables only; it is proven as the router's SQL it was
    // printed from.
    let route = routing::route(policy, principal, db)?;
    let (mut query, _, _) = match parse_query(sql, dialect, &reopts) {
        Ok(parsed) => parsed,
        Err(Error::NotReadOnly(_)) if policy.writes => {
            let mut stmt = crate::frontend::sql::parse_write(sql, dialect, &reopts)?;
            routing::unrelocate(&mut stmt, db, dialect, &route)?;
            let mut rw = Rewriter::new(policy, db, dialect, principal, Binder::new(dialect, false));
            return rw.recheck_write(&stmt);
        }
        Err(e) => return Err(e),
    };
    routing::unrelocate(&mut query, db, dialect, &route)?;
    let mut rw = Rewriter::new(policy, db, dialect, principal, Binder::new(dialect, false));
    let sandboxes = rw.all_sandboxes();
    let mode = opts.fence.unwrap_or(db.fence);
    crate::verify::verify(
        policy,
        db,
        dialect,
        principal,
        &sandboxes,
        &[],
        mode,
        &mut query,
    )
}
