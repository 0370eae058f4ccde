//! Differential tests against PostgreSQL's own row-level security (run when
//! `SQLSANDBOX_PG_URL` is set, e.g. `postgres://postgres@127.0.0.1:5432/test`;
//! skipped with a notice otherwise).
//!
//! Each test makes a schema `sqlsandbox_diff_<pid>_<n>` with the dataset and
//! drops it (and its roles) afterwards, even when the test fails:
//!
//! - sqlsandbox's side runs the rewritten SQL as the connecting superuser,
//!   to whom row-level security does not apply: only the rewrite filters;
//! - the oracle runs the original query as role `<schema>_reader` (no
//!   BYPASSRLS), under `CREATE POLICY` on every sandboxed table that reads
//!   the user's tenants and regions from session settings, with column
//!   privileges that leave out `accounts.email`; its `search_path` is a
//!   schema `<schema>_oracle` of `security_invoker` views (the table's
//!   visible columns, so `SELECT *` works), through which the policies and
//!   privileges still apply to the reader. The analyst's oracle is role
//!   `<schema>_analyst` (BYPASSRLS) on the tables themselves.

mod differential;

use std::error::Error;

use differential::dataset::{self, Db};
use differential::harness::{self, Backend, Rows};
use differential::{
    is_stale, mark_done, policy, server_url, text_question_policy, unique_name, users, TestUser,
    PREFIX,
};
use postgres::types::{FromSql, ToSql, Type};
use postgres::{Client, NoTls};
use sqlsandbox::{BoundParam, Dialect, Scalar};

const TEST: &str = "PostgreSQL differential tests";

struct Pg {
    app: Client,
    oracle: Option<Client>,
    schema: String,
}

/// The user's tenants (and regions) as a JSON array, for the policies'
/// `current_setting`. Arrays rather than one value, so multi-valued and
/// empty attributes are enforced by the same policy.
const TENANTS: &str =
    "(SELECT jsonb_array_elements_text(current_setting('app.tenants')::jsonb)::int)";
const REGIONS: &str = "(SELECT jsonb_array_elements_text(current_setting('app.regions')::jsonb))";

impl Pg {
    fn new(url: &str) -> Pg {
        let connect = || {
            Client::connect(url, NoTls).unwrap_or_else(|e| {
                panic!("SQLSANDBOX_PG_URL={url} is set but PostgreSQL is not reachable: {e}")
            })
        };
        let mut app = connect();
        app.batch_execute("SET client_min_messages = warning")
            .unwrap();
        drop_stale(&mut app);
        let s = unique_name();
        let mut pg = Pg {
            app,
            oracle: None,
            schema: s.clone(),
        };
        let (o, reader, analyst) = (
            format!("{s}_oracle"),
            format!("{s}_reader"),
            format!("{s}_analyst"),
        );
        let mut setup = vec![
            format!("CREATE SCHEMA {s}"),
            format!("CREATE SCHEMA {o}"),
            format!("CREATE ROLE {reader} NOLOGIN NOBYPASSRLS"),
            format!("CREATE ROLE {analyst} NOLOGIN BYPASSRLS"),
        ];
        setup.extend(dataset::statements(Db::Postgres, &s));
        setup.extend([
            format!("GRANT USAGE ON SCHEMA {s}, {o} TO {reader}, {analyst}"),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {analyst}"),
            format!("GRANT SELECT ON {s}.tenants, {s}.products, {s}.orders, {s}.events TO {reader}"),
            format!("GRANT SELECT (id, tenant_id, name, plan, created_at) ON {s}.accounts TO {reader}"),
            format!("CREATE POLICY tenant_rows ON {s}.tenants USING (id IN {TENANTS})"),
            format!("CREATE POLICY tenant_rows ON {s}.accounts USING (tenant_id IN {TENANTS})"),
            format!("CREATE POLICY tenant_rows ON {s}.orders USING (tenant_id IN {TENANTS})"),
            format!(
                "CREATE POLICY tenant_rows ON {s}.events USING (tenant_id IN {TENANTS} AND region IN {REGIONS})"
            ),
        ]);
        for t in ["tenants", "accounts", "orders", "events"] {
            setup.push(format!("ALTER TABLE {s}.{t} ENABLE ROW LEVEL SECURITY"));
        }
        for t in dataset::TABLES {
            let cols: Vec<&str> = t.visible().map(|c| c.name).collect();
            setup.push(format!(
                "CREATE VIEW {o}.{} WITH (security_invoker = true) AS SELECT {} FROM {s}.{}",
                t.name,
                cols.join(", "),
                t.name
            ));
        }
        setup.push(format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA {o} TO {reader}"
        ));
        for stmt in &setup {
            // `pg` drops what was made so far if this fails.
            pg.app
                .batch_execute(stmt)
                .unwrap_or_else(|e| panic!("setup: {stmt}: {}", describe(&e)));
        }
        pg.app
            .batch_execute(&format!("SET search_path = {s}"))
            .unwrap();
        pg.oracle = Some(connect());
        pg
    }

    fn oracle(&mut self) -> &mut Client {
        self.oracle.as_mut().expect("oracle connection")
    }
}

/// The server's message, with its detail (postgres's `Display` alone says
/// only "db error").
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Drops schemas and roles left by test processes that no longer run.
fn drop_stale(app: &mut Client) {
    let like = format!("{}%", PREFIX.replace('_', "\\_"));
    let schemas = app
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
            &[&like],
        )
        .unwrap();
    for row in schemas {
        let name: String = row.get(0);
        if is_stale(&name) {
            let _ = app.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
        }
    }
    let roles = app
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE $1",
            &[&like],
        )
        .unwrap();
    for row in roles {
        let name: String = row.get(0);
        if is_stale(&name) {
            let _ = app.batch_execute(&format!("DROP ROLE IF EXISTS {name}"));
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.oracle = None;
        let s = &self.schema;
        let _ = self.app.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {s}_oracle CASCADE; DROP SCHEMA IF EXISTS {s} CASCADE; \
             DROP ROLE IF EXISTS {s}_reader; DROP ROLE IF EXISTS {s}_analyst"
        ));
    }
}

/// A cell rendered as text, whatever its type (decoded from PostgreSQL's
/// binary format).
struct Cell(String);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let s = match *ty {
            Type::BOOL => bool::from_sql(ty, raw)?.to_string(),
            Type::INT2 => i16::from_sql(ty, raw)?.to_string(),
            Type::INT4 => i32::from_sql(ty, raw)?.to_string(),
            Type::INT8 => i64::from_sql(ty, raw)?.to_string(),
            Type::FLOAT4 => format!("{:.6e}", f32::from_sql(ty, raw)?),
            Type::FLOAT8 => format!("{:.9e}", f64::from_sql(ty, raw)?),
            Type::NUMERIC => numeric(raw)?,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                format!("{:?}", std::str::from_utf8(raw)?)
            }
            // Microseconds since 2000-01-01: exact, which is all a
            // comparison needs.
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                format!("ts {}", i64::from_sql(&Type::INT8, raw)?)
            }
            _ => format!("{} {raw:02x?}", ty.name()),
        };
        Ok(Cell(s))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Cell("NULL".into()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// PostgreSQL's binary NUMERIC (base-10000 digits) as decimal text.
fn numeric(raw: &[u8]) -> Result<String, Box<dyn Error + Sync + Send>> {
    let word = |i: usize| -> Result<u16, Box<dyn Error + Sync + Send>> {
        Ok(u16::from_be_bytes([
            *raw.get(2 * i).ok_or("short numeric")?,
            *raw.get(2 * i + 1).ok_or("short numeric")?,
        ]))
    };
    let (ndigits, weight, sign, dscale) =
        (word(0)? as i32, word(1)? as i16 as i32, word(2)?, word(3)?);
    if sign == 0xC000 {
        return Ok("NaN".into());
    }
    // The base-10000 digit of weight `w` (10000^w).
    let digit = |w: i32| -> Result<u16, Box<dyn Error + Sync + Send>> {
        let i = weight - w;
        if (0..ndigits).contains(&i) {
            word(4 + i as usize)
        } else {
            Ok(0)
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    }
    for w in (0..=weight).rev() {
        if w == weight {
            s += &digit(w)?.to_string();
        } else {
            s += &format!("{:04}", digit(w)?);
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut w = -1;
        while frac.len() < dscale as usize {
            frac += &format!("{:04}", digit(w)?);
            w -= 1;
        }
        frac.truncate(dscale as usize);
        s += &format!(".{frac}");
    }
    Ok(s)
}

fn rows(result: Vec<postgres::Row>, columns: Vec<String>) -> Result<Rows, String> {
    let rows = result
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get::<_, Cell>(i).map(|c| c.0))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(Rows { columns, rows })
}

fn run(client: &mut Client, sql: &str, params: &[BoundParam]) -> Result<Rows, String> {
    let stmt = client.prepare(sql).map_err(|e| describe(&e))?;
    let columns = stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    // Bind each value as the type the server inferred for its placeholder.
    let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    for (p, ty) in params.iter().zip(stmt.params()) {
        values.push(match (&p.value, ty) {
            (Scalar::Integer(i), &Type::INT2) => {
                Box::new(i16::try_from(*i).map_err(|e| e.to_string())?)
            }
            (Scalar::Integer(i), &Type::INT4) => {
                Box::new(i32::try_from(*i).map_err(|e| e.to_string())?)
            }
            (Scalar::Integer(i), &Type::INT8) => Box::new(*i),
            (Scalar::Text(s), _) => Box::new(s.clone()),
            (Scalar::Bool(b), _) => Box::new(*b),
            (v, ty) => return Err(format!("no test binding for {v:?} as {ty}")),
        });
    }
    let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
    let result = client.query(&stmt, &refs).map_err(|e| describe(&e))?;
    rows(result, columns)
}

impl Backend for Pg {
    fn db(&self) -> Db {
        Db::Postgres
    }

    fn data_schema(&self) -> String {
        self.schema.clone()
    }

    fn run_app(&mut self, sql: &str, params: &[BoundParam]) -> Result<Rows, String> {
        run(&mut self.app, sql, params)
    }

    fn become_user(&mut self, user: &TestUser) -> Result<String, String> {
        let s = self.schema.clone();
        let oracle = self.oracle();
        if user.analyst {
            oracle
                .batch_execute(&format!("SET ROLE {s}_analyst; SET search_path = {s}"))
                .map_err(|e| describe(&e))?;
            return Ok(s);
        }
        let tenants = serde_json::to_string(&user.tenants).unwrap();
        let regions = serde_json::to_string(&user.regions).unwrap();
        oracle
            .batch_execute(&format!(
                "SET ROLE {s}_reader; SET search_path = {s}_oracle"
            ))
            .map_err(|e| describe(&e))?;
        oracle
            .execute(
                "SELECT set_config('app.tenants', $1, false), set_config('app.regions', $2, false)",
                &[&tenants, &regions],
            )
            .map_err(|e| describe(&e))?;
        Ok(format!("{s}_oracle"))
    }

    fn run_oracle(&mut self, sql: &str) -> Result<Rows, String> {
        run(self.oracle(), sql, &[])
    }

    fn insert_event(&mut self, id: i64, tenant: i64, region: &str) -> Result<(), String> {
        let (id, tenant) = (id as i32, tenant as i32);
        self.app
            .execute(
                "INSERT INTO events VALUES ($1, $2, $3, 'hostile', $4, NULL)",
                &[&id, &tenant, &(tenant * 1000 + 1), &region],
            )
            .map(|_| ())
            .map_err(|e| describe(&e))
    }
}

fn backend(test: &str) -> Option<Pg> {
    server_url("SQLSANDBOX_PG_URL", &format!("{TEST}: {test}")).map(|url| Pg::new(&url))
}

#[test]
#[ignore = "needs SQLSANDBOX_PG_URL"]
fn the_oracle_shows_each_user_exactly_their_rows() {
    let Some(mut b) = backend("oracle check") else {
        return;
    };
    harness::check_oracle(&mut b, &users());
    // The reader role really is bound by row-level security and column
    // privileges: the base table's hidden column is refused to it.
    let s = b.schema.clone();
    b.become_user(&users()[0]).unwrap();
    let err = b
        .run_oracle(&format!("SELECT email FROM {s}.accounts"))
        .expect_err("the reader must not read email");
    assert!(err.contains("42501"), "{err}");
    mark_done(
        "postgres-oracle",
        "the oracle shows each user exactly their rows",
    );
}

#[test]
#[ignore = "needs SQLSANDBOX_PG_URL"]
fn corpus_matches_row_level_security() {
    let Some(mut b) = backend("corpus") else {
        return;
    };
    let policy = policy(Dialect::Postgres, &b.schema);
    let users = users();
    let stats = harness::run_corpus(&mut b, &policy, &users);
    assert!(stats.pairs >= 100 * users.len(), "{stats:?}");
    mark_done("postgres-corpus", &format!("{stats:?}"));
}

#[test]
#[ignore = "needs SQLSANDBOX_PG_URL"]
fn generated_queries_match_row_level_security() {
    let Some(mut b) = backend("generated queries") else {
        return;
    };
    let policy = policy(Dialect::Postgres, &b.schema);
    let ran = harness::run_generated(&mut b, &policy, &users(), harness::generated_cases());
    mark_done("postgres-generated", &format!("{ran} generated cases"));
}

#[test]
#[ignore = "needs SQLSANDBOX_PG_URL"]
fn hostile_attribute_values_select_exactly_their_rows() {
    let Some(mut b) = backend("hostile values") else {
        return;
    };
    let basic = policy(Dialect::Postgres, &b.schema);
    let custom = text_question_policy(Dialect::Postgres, &b.schema);
    let stats = harness::run_hostile(&mut b, &[&basic, &custom]);
    assert!(stats.rows > 0, "{stats:?}");
    mark_done("postgres-hostile", &format!("{stats:?}"));
}

/// Queries that repeat a subquery over a sandboxed table where PostgreSQL
/// requires the two copies to be the same expression.
const REPEATED_SUBQUERIES: &[&str] = &[
    "SELECT (SELECT count(*) FROM events e WHERE e.account_id = o.account_id) AS n, count(*) AS c \
     FROM orders o GROUP BY (SELECT count(*) FROM events e WHERE e.account_id = o.account_id)",
    "SELECT DISTINCT ON ((SELECT count(*) FROM events)) id FROM orders ORDER BY (SELECT count(*) FROM events), id",
];

#[test]
#[ignore = "needs SQLSANDBOX_PG_URL"]
fn repeated_subqueries_with_bind_parameters() {
    let Some(mut b) = backend("repeated subqueries") else {
        return;
    };
    let policy = policy(Dialect::Postgres, &b.schema);
    let alice = &users()[0];
    let schema = b.become_user(alice).unwrap();
    for sql in REPEATED_SUBQUERIES {
        harness::compare(
            &mut b,
            &policy,
            alice,
            &alice.principal(&policy),
            &schema,
            sql,
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}
