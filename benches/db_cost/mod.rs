//! The database-cost benchmark (see `README.md` here): what the SQL
//! sqlsandbox writes costs the database, against the same query filtered by
//! hand and, on PostgreSQL, native row-level security.
//!
//! Shared by `examples/db_cost.rs` (the command line, timings and plans)
//! and `tests/db_cost.rs` (the CI-scale row-equality check).

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mysql::prelude::Queryable;

/// The tenant the principal belongs to.
pub const TENANT: u64 = 7;

/// What to build and run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Orders (rows of the big table).
    pub orders: u64,
    /// Accounts (a multiple of `tenants`).
    pub accounts: u64,
    /// Tenants.
    pub tenants: u64,
    /// Timed runs per query (the median is reported); 0 checks rows only.
    pub runs: usize,
    /// Database (PostgreSQL, MariaDB) and file (SQLite) name.
    pub name: String,
    /// Keep the databases afterwards.
    pub keep: bool,
    /// Reuse databases a `--keep` run left, when they hold as many orders.
    pub reuse: bool,
    /// `fence: <value>` for every database of the policy (none: the
    /// policy's default).
    pub fence: Option<String>,
    /// Where plans go (none: no plans).
    pub plans: Option<PathBuf>,
    /// PostgreSQL server URL (any database on it), if PostgreSQL runs.
    pub pg_url: Option<String>,
    /// MariaDB server URL, if MariaDB runs.
    pub mysql_url: Option<String>,
    /// Whether SQLite runs.
    pub sqlite: bool,
    /// Directory for the SQLite file.
    pub sqlite_dir: PathBuf,
}

impl Config {
    /// The full scale: 2,000,000 orders, 50,000 accounts, 50 tenants.
    pub fn full() -> Config {
        Config {
            orders: 2_000_000,
            accounts: 50_000,
            tenants: 50,
            runs: 7,
            name: "sqlsandbox_dbcost".into(),
            keep: false,
            reuse: false,
            fence: None,
            plans: None,
            pg_url: std::env::var("SQLSANDBOX_PG_URL").ok(),
            mysql_url: std::env::var("SQLSANDBOX_MYSQL_URL").ok(),
            sqlite: true,
            sqlite_dir: std::env::temp_dir(),
        }
    }

    /// The CI scale: 20,000 orders, 500 accounts, rows checked, no timing.
    pub fn ci() -> Config {
        Config {
            orders: 20_000,
            accounts: 500,
            runs: 0,
            ..Config::full()
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.tenants < TENANT
            || self.accounts < self.tenants
            || !self.accounts.is_multiple_of(self.tenants)
            || self.orders < 5_100
        {
            return Err(format!(
                "need at least {TENANT} tenants, accounts a multiple of tenants and at least 5,100 orders (the shapes' ids); got {} orders, {} accounts, {} tenants",
                self.orders, self.accounts, self.tenants
            ));
        }
        if !self
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!(
                "database name {:?}: lower case, digits, _",
                self.name
            ));
        }
        Ok(())
    }
}

/// One query shape: the query as a user writes it, and the same query with
/// `tenant_id = 7` written by hand on every table.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Short name (the table's first column, plan file names).
    pub name: &'static str,
    /// What it is.
    pub about: &'static str,
    /// The query the sandbox rewrite receives (and RLS runs as is).
    pub sql: &'static str,
    /// The hand-filtered query.
    pub hand: &'static str,
    /// Whether it is selective (reads a small part of the tenant).
    pub selective: bool,
}

/// The shapes. Ids are chosen so that they exist at every scale: orders
/// and accounts whose id is 7 modulo the tenant count belong to tenant 7
/// (1007, 2057, 5007, accounts 57, 107, 157, 457), others do not (3001).
pub const SHAPES: &[Shape] = &[
    Shape {
        name: "point_pk",
        about: "point lookup by primary key",
        sql: "SELECT id, account_id, total, status FROM orders WHERE id = 5007",
        hand: "SELECT id, account_id, total, status FROM orders WHERE tenant_id = 7 AND id = 5007",
        selective: true,
    },
    Shape {
        name: "in_list",
        about: "IN list of 3 ids (one another tenant's)",
        sql: "SELECT id, total FROM orders WHERE id IN (1007, 2057, 3001)",
        hand: "SELECT id, total FROM orders WHERE tenant_id = 7 AND id IN (1007, 2057, 3001)",
        selective: true,
    },
    Shape {
        name: "join_account",
        about: "one account's orders, through a join",
        sql: "SELECT o.id, o.total, a.plan FROM orders o JOIN accounts a ON a.id = o.account_id WHERE a.id = 457",
        hand: "SELECT o.id, o.total, a.plan FROM orders o JOIN accounts a ON a.id = o.account_id WHERE o.tenant_id = 7 AND a.tenant_id = 7 AND a.id = 457",
        selective: true,
    },
    Shape {
        name: "latest_10",
        about: "ORDER BY created_at DESC LIMIT 10",
        sql: "SELECT id, created_at, total FROM orders ORDER BY created_at DESC LIMIT 10",
        hand: "SELECT id, created_at, total FROM orders WHERE tenant_id = 7 ORDER BY created_at DESC LIMIT 10",
        selective: true,
    },
    Shape {
        name: "day_count",
        about: "count of one day (created_at range)",
        sql: "SELECT count(*) FROM orders WHERE created_at >= '2024-03-15' AND created_at < '2024-03-16'",
        hand: "SELECT count(*) FROM orders WHERE tenant_id = 7 AND created_at >= '2024-03-15' AND created_at < '2024-03-16'",
        selective: true,
    },
    Shape {
        name: "cte_filter",
        about: "CTE, selective filter outside it",
        sql: "WITH o AS (SELECT id, account_id, total FROM orders) SELECT id, total FROM o WHERE account_id = 457",
        hand: "WITH o AS (SELECT id, account_id, total FROM orders WHERE tenant_id = 7) SELECT id, total FROM o WHERE account_id = 457",
        selective: true,
    },
    Shape {
        name: "exists",
        about: "EXISTS correlated subquery",
        sql: "SELECT a.id, a.plan FROM accounts a WHERE a.id IN (57, 107, 157, 3001) AND EXISTS (SELECT 1 FROM orders o WHERE o.account_id = a.id AND o.total > 500)",
        hand: "SELECT a.id, a.plan FROM accounts a WHERE a.tenant_id = 7 AND a.id IN (57, 107, 157, 3001) AND EXISTS (SELECT 1 FROM orders o WHERE o.tenant_id = 7 AND o.account_id = a.id AND o.total > 500)",
        selective: true,
    },
    Shape {
        name: "in_subquery",
        about: "IN subquery",
        sql: "SELECT id, total FROM orders WHERE account_id IN (SELECT id FROM accounts WHERE id BETWEEN 400 AND 460 AND plan = 'pro')",
        hand: "SELECT id, total FROM orders WHERE tenant_id = 7 AND account_id IN (SELECT id FROM accounts WHERE tenant_id = 7 AND id BETWEEN 400 AND 460 AND plan = 'pro')",
        selective: true,
    },
    Shape {
        name: "window",
        about: "window function over a filtered subset",
        sql: "SELECT id, account_id, row_number() OVER (PARTITION BY account_id ORDER BY created_at DESC) AS rn FROM orders WHERE account_id IN (57, 457)",
        hand: "SELECT id, account_id, row_number() OVER (PARTITION BY account_id ORDER BY created_at DESC) AS rn FROM orders WHERE tenant_id = 7 AND account_id IN (57, 457)",
        selective: true,
    },
    Shape {
        name: "union",
        about: "UNION of two filtered branches",
        sql: "SELECT id, total FROM orders WHERE id = 1007 UNION SELECT id, total FROM orders WHERE account_id = 457",
        hand: "SELECT id, total FROM orders WHERE tenant_id = 7 AND id = 1007 UNION SELECT id, total FROM orders WHERE tenant_id = 7 AND account_id = 457",
        selective: true,
    },
    Shape {
        name: "leaky_point",
        about: "point lookup with an error-prone second conjunct",
        sql: "SELECT id, total FROM orders WHERE id = 5007 AND 1/(total - total + 1) > 0",
        hand: "SELECT id, total FROM orders WHERE tenant_id = 7 AND id = 5007 AND 1/(total - total + 1) > 0",
        selective: true,
    },
    Shape {
        name: "tenant_group_by",
        about: "whole-tenant GROUP BY",
        sql: "SELECT status, count(*), round(sum(total), 2) FROM orders GROUP BY status",
        hand: "SELECT status, count(*), round(sum(total), 2) FROM orders WHERE tenant_id = 7 GROUP BY status",
        selective: false,
    },
    Shape {
        name: "join_group_by",
        about: "join GROUP BY",
        sql: "SELECT a.plan, count(*), round(sum(o.total), 2) FROM orders o JOIN accounts a ON a.id = o.account_id GROUP BY a.plan",
        hand: "SELECT a.plan, count(*), round(sum(o.total), 2) FROM orders o JOIN accounts a ON a.id = o.account_id WHERE o.tenant_id = 7 AND a.tenant_id = 7 GROUP BY a.plan",
        selective: false,
    },
];

/// Rows as text, `NULL` for nulls.
pub type Rows = Vec<Vec<String>>;

/// A database the benchmark runs on.
trait Backend {
    /// `PostgreSQL`, `MariaDB`, `SQLite`.
    fn label(&self) -> &'static str;
    /// The policy database (`pg`, `maria`, `lite`).
    fn policy_db(&self) -> &'static str;
    fn rows(&mut self, sql: &str) -> Result<Rows, String>;
    fn explain(&mut self, sql: &str) -> Result<String, String>;
    /// The same query under native row-level security, where supported.
    fn rls_rows(&mut self, _sql: &str) -> Option<Result<Rows, String>> {
        None
    }
    fn rls_explain(&mut self, _sql: &str) -> Option<Result<String, String>> {
        None
    }
    /// Drops what the benchmark made.
    fn teardown(&mut self) -> Result<(), String>;
}

/// One measured shape on one database (milliseconds, medians).
#[derive(Debug, Clone)]
pub struct Measure {
    pub shape: &'static str,
    pub selective: bool,
    pub sandboxed: f64,
    pub hand: f64,
    pub rls: Option<f64>,
    pub rows: usize,
}

/// What one database's run found.
#[derive(Debug, Default)]
pub struct DbReport {
    pub label: &'static str,
    pub setup: String,
    pub measures: Vec<Measure>,
    /// Shapes whose sandboxed (or RLS) rows differ from the hand-filtered
    /// ones, or that failed.
    pub mismatches: Vec<String>,
}

/// The policy, for `cfg` (database name, fence).
pub fn policy(cfg: &Config) -> Result<sqlsandbox::Policy, String> {
    let mut yaml = include_str!("policy.yaml").replace("sqlsandbox_dbcost", &cfg.name);
    if let Some(fence) = &cfg.fence {
        let mut out = String::new();
        for line in yaml.lines() {
            out.push_str(line);
            out.push('\n');
            if line.starts_with("    dialect: ") {
                let _ = writeln!(out, "    fence: {fence}");
            }
        }
        yaml = out;
    }
    sqlsandbox::Policy::from_yaml(&yaml, "db_cost/policy.yaml").map_err(|e| e.to_string())
}

/// Runs [`SHAPES`] on every configured database; one report each.
pub fn run(cfg: &Config) -> Result<Vec<DbReport>, String> {
    run_shapes(cfg, SHAPES)
}

/// Runs `shapes` on every configured database; one report each.
pub fn run_shapes(cfg: &Config, shapes: &[Shape]) -> Result<Vec<DbReport>, String> {
    cfg.check()?;
    let policy = policy(cfg)?;
    let principal =
        sqlsandbox::Principal::from_user(&policy, "tenant7").map_err(|e| e.to_string())?;
    let mut reports = Vec::new();
    if let Some(url) = &cfg.pg_url {
        let mut db = Pg::open(url, cfg)?;
        reports.push(run_one(&mut db, cfg, &policy, &principal, shapes));
    }
    if let Some(url) = &cfg.mysql_url {
        let mut db = Maria::open(url, cfg)?;
        reports.push(run_one(&mut db, cfg, &policy, &principal, shapes));
    }
    if cfg.sqlite {
        let mut db = Lite::open(cfg)?;
        reports.push(run_one(&mut db, cfg, &policy, &principal, shapes));
    }
    Ok(reports)
}

fn run_one(
    db: &mut dyn Backend,
    cfg: &Config,
    policy: &sqlsandbox::Policy,
    principal: &sqlsandbox::Principal,
    shapes: &[Shape],
) -> DbReport {
    let mut report = DbReport {
        label: db.label(),
        ..DbReport::default()
    };
    let opts = sqlsandbox::Options::default().with_database(db.policy_db().to_string());
    for shape in shapes {
        match run_shape(db, cfg, policy, principal, &opts, shape) {
            Ok(m) => report.measures.push(m),
            Err(e) => report.mismatches.push(format!("{}: {e}", shape.name)),
        }
    }
    if !cfg.keep {
        if let Err(e) = db.teardown() {
            report.mismatches.push(format!("teardown: {e}"));
        }
    }
    report
}

fn sorted(mut rows: Rows) -> Rows {
    rows.sort();
    rows
}

fn run_shape(
    db: &mut dyn Backend,
    cfg: &Config,
    policy: &sqlsandbox::Policy,
    principal: &sqlsandbox::Principal,
    opts: &sqlsandbox::Options,
    shape: &Shape,
) -> Result<Measure, String> {
    let sandboxed = policy
        .rewrite(principal, shape.sql, opts)
        .map_err(|e| format!("rewrite: {e}"))?
        .sql;
    let hand_rows = sorted(db.rows(shape.hand).map_err(|e| format!("hand: {e}"))?);
    let sb_rows = sorted(db.rows(&sandboxed).map_err(|e| format!("sandboxed: {e}"))?);
    if sb_rows != hand_rows {
        return Err(format!(
            "sandboxed rows differ from the hand-filtered ones\n  sandboxed SQL: {sandboxed}\n  sandboxed: {sb_rows:?}\n  hand: {hand_rows:?}"
        ));
    }
    if let Some(rls) = db.rls_rows(shape.sql) {
        let rls = sorted(rls.map_err(|e| format!("rls: {e}"))?);
        if rls != hand_rows {
            return Err(format!(
                "RLS rows differ from the hand-filtered ones\n  rls: {rls:?}\n  hand: {hand_rows:?}"
            ));
        }
    }
    let mut m = Measure {
        shape: shape.name,
        selective: shape.selective,
        sandboxed: 0.0,
        hand: 0.0,
        rls: None,
        rows: hand_rows.len(),
    };
    if cfg.runs == 0 {
        return Ok(m);
    }
    if let Some(dir) = &cfg.plans {
        let dir = dir.join(db.policy_db());
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let write = |variant: &str, sql: &str, plan: String| {
            let path = dir.join(format!("{}.{variant}.txt", shape.name));
            std::fs::write(&path, format!("{sql}\n\n{plan}\n"))
                .map_err(|e| format!("{}: {e}", path.display()))
        };
        write("sandboxed", &sandboxed, db.explain(&sandboxed)?)?;
        write("hand", shape.hand, db.explain(shape.hand)?)?;
        if let Some(plan) = db.rls_explain(shape.sql) {
            write("rls", shape.sql, plan?)?;
        }
    }
    // Interleaved, so that a burst of load on the (shared) machine hits
    // every variant alike; one warm-up run each first.
    let mut times: [Vec<f64>; 3] = Default::default();
    for i in 0..=cfg.runs {
        let t = Instant::now();
        db.rows(&sandboxed)?;
        let a = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        db.rows(shape.hand)?;
        let b = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let c = db.rls_rows(shape.sql).transpose()?;
        let c = c.map(|_| t.elapsed().as_secs_f64() * 1e3);
        if i > 0 {
            times[0].push(a);
            times[1].push(b);
            if let Some(c) = c {
                times[2].push(c);
            }
        }
    }
    m.sandboxed = median(&mut times[0]);
    m.hand = median(&mut times[1]);
    m.rls = (!times[2].is_empty()).then(|| median(&mut times[2]));
    Ok(m)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One markdown table per database: shape → sandboxed ms, hand ms, ratio
/// (and RLS ms on PostgreSQL).
pub fn table(reports: &[DbReport]) -> String {
    let mut out = String::new();
    for r in reports {
        if r.measures.is_empty() {
            continue;
        }
        let rls = r.measures.iter().any(|m| m.rls.is_some());
        let _ = writeln!(out, "\n### {}\n", r.label);
        out.push_str("| shape | rows | sandboxed ms | hand ms | ratio |");
        out.push_str(if rls { " RLS ms |\n" } else { "\n" });
        out.push_str("|---|---:|---:|---:|---:|");
        out.push_str(if rls { "---:|\n" } else { "\n" });
        for m in &r.measures {
            let _ = write!(
                out,
                "| {}{} | {} | {:.3} | {:.3} | {:.1}x |",
                m.shape,
                if m.selective { "" } else { " (whole tenant)" },
                m.rows,
                m.sandboxed,
                m.hand,
                m.sandboxed / m.hand.max(1e-6)
            );
            if rls {
                let _ = write!(
                    out,
                    " {} |",
                    m.rls.map_or("-".into(), |v| format!("{v:.3}"))
                );
            }
            out.push('\n');
        }
    }
    out
}

/// Drops whatever a run with `cfg` may have left (databases, role, file),
/// also after a failed setup. Errors are ignored: nothing may be there.
pub fn cleanup(cfg: &Config) {
    if let Some(url) = &cfg.pg_url {
        if let Ok(mut c) = postgres::Client::connect(url, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                cfg.name
            ));
            let _ = c.batch_execute(&format!("DROP ROLE IF EXISTS {}_rls", cfg.name));
        }
    }
    if let Some(url) = &cfg.mysql_url {
        if let Ok(mut c) = mysql::Opts::from_url(url)
            .map_err(|e| e.to_string())
            .and_then(|o| mysql::Conn::new(o).map_err(|e| e.to_string()))
        {
            let _ = c.query_drop(format!("DROP DATABASE IF EXISTS {}", cfg.name));
        }
    }
    remove_sqlite(&cfg.sqlite_dir.join(format!("{}.sqlite", cfg.name)));
}

fn step(span_rows: u64) -> u64 {
    // Spread creation times over one year, one second apart at least.
    (31_536_000 / span_rows).max(1)
}

// ---------------------------------------------------------------- PostgreSQL

struct Pg {
    admin: postgres::Client,
    c: postgres::Client,
    rls: postgres::Client,
    name: String,
    role: String,
}

fn pg_err(e: postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

fn pg_rows(c: &mut postgres::Client, sql: &str) -> Result<Rows, String> {
    Ok(c.simple_query(sql)
        .map_err(pg_err)?
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

impl Pg {
    fn open(url: &str, cfg: &Config) -> Result<Pg, String> {
        let (base, _) = url
            .rsplit_once('/')
            .ok_or("the PostgreSQL URL must end in /database")?;
        let connect = |u: &str| {
            postgres::Client::connect(u, postgres::NoTls).map_err(|e| format!("{u}: {e}"))
        };
        let mut admin = connect(url)?;
        let db_url = format!("{base}/{}", cfg.name);
        let role = format!("{}_rls", cfg.name);
        let t = Instant::now();
        let reused = cfg.reuse
            && connect(&db_url)
                .ok()
                .and_then(|mut c| pg_rows(&mut c, "SELECT count(*) FROM orders").ok())
                .is_some_and(|r| r[0][0] == cfg.orders.to_string());
        if !reused {
            // One statement a call: DROP/CREATE DATABASE refuse to run in
            // the implicit transaction of a multi-statement batch.
            for s in [
                format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", cfg.name),
                format!("CREATE DATABASE {}", cfg.name),
            ] {
                admin.batch_execute(&s).map_err(pg_err)?;
            }
            let mut c = connect(&db_url)?;
            let (n, a, t) = (cfg.orders, cfg.accounts, cfg.tenants);
            let (os, as_) = (step(n), step(a));
            c.batch_execute(&format!(
                "CREATE TABLE accounts (id bigint NOT NULL, tenant_id int NOT NULL, plan text NOT NULL, created_at timestamp NOT NULL);
                 CREATE TABLE orders (id bigint NOT NULL, tenant_id int NOT NULL, account_id bigint NOT NULL, status text NOT NULL, total numeric(12,2) NOT NULL, created_at timestamp NOT NULL);
                 INSERT INTO accounts SELECT i, (i - 1) % {t} + 1,
                     CASE i % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'pro' ELSE 'team' END,
                     timestamp '2024-01-01' + (i * {as_}) * interval '1 second'
                   FROM generate_series(1, {a}) AS g(i);
                 INSERT INTO orders SELECT j, (j - 1) % {t} + 1,
                     (j - 1) % {t} + 1 + {t} * ((((j - 1) / {t}) * 7919) % ({a} / {t})),
                     CASE j % 3 WHEN 0 THEN 'paid' WHEN 1 THEN 'open' ELSE 'refunded' END,
                     ((j * 13) % 100000) / 100.0,
                     timestamp '2024-01-01' + (j * {os}) * interval '1 second'
                   FROM generate_series(1, {n}) AS g(j);
                 ALTER TABLE accounts ADD PRIMARY KEY (id);
                 ALTER TABLE orders ADD PRIMARY KEY (id);
                 CREATE INDEX ON accounts (tenant_id, created_at);
                 CREATE INDEX ON orders (tenant_id, created_at);
                 CREATE INDEX ON orders (account_id);
                 CREATE INDEX ON orders (created_at);"
            ))
            .map_err(pg_err)?;
            // Outside the batch's transaction; sets the visibility map too,
            // so that index-only scans are possible as on a settled table.
            c.batch_execute("VACUUM ANALYZE accounts")
                .and_then(|()| c.batch_execute("VACUUM ANALYZE orders"))
                .map_err(pg_err)?;
        }
        // Native RLS for the comparison: a non-owner role, the tenant in a
        // setting (as an application would set it per connection).
        let mut c = connect(&db_url)?;
        c.batch_execute(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role} NOLOGIN; END IF;
             END $$;
             GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT ON accounts, orders TO {role};
             ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
             ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
             DROP POLICY IF EXISTS tenant ON accounts;
             DROP POLICY IF EXISTS tenant ON orders;
             CREATE POLICY tenant ON accounts USING (tenant_id = current_setting('app.tenant')::int);
             CREATE POLICY tenant ON orders USING (tenant_id = current_setting('app.tenant')::int);"
        ))
        .map_err(pg_err)?;
        let mut rls = connect(&db_url)?;
        rls.batch_execute(&format!("SET ROLE {role}; SET app.tenant = '{TENANT}'"))
            .map_err(pg_err)?;
        eprintln!(
            "PostgreSQL: {} in {:.1} s",
            if reused { "reused" } else { "loaded" },
            t.elapsed().as_secs_f64()
        );
        Ok(Pg {
            admin,
            c,
            rls,
            name: cfg.name.clone(),
            role,
        })
    }
}

impl Backend for Pg {
    fn label(&self) -> &'static str {
        "PostgreSQL"
    }
    fn policy_db(&self) -> &'static str {
        "pg"
    }
    fn rows(&mut self, sql: &str) -> Result<Rows, String> {
        pg_rows(&mut self.c, sql)
    }
    fn explain(&mut self, sql: &str) -> Result<String, String> {
        let rows = pg_rows(&mut self.c, &format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"))?;
        Ok(rows
            .into_iter()
            .map(|r| r.join(" "))
            .collect::<Vec<_>>()
            .join("\n"))
    }
    fn rls_rows(&mut self, sql: &str) -> Option<Result<Rows, String>> {
        Some(pg_rows(&mut self.rls, sql))
    }
    fn rls_explain(&mut self, sql: &str) -> Option<Result<String, String>> {
        Some(
            pg_rows(&mut self.rls, &format!("EXPLAIN (ANALYZE, BUFFERS) {sql}")).map(|rows| {
                rows.into_iter()
                    .map(|r| r.join(" "))
                    .collect::<Vec<_>>()
                    .join("\n")
            }),
        )
    }
    fn teardown(&mut self) -> Result<(), String> {
        for s in [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            format!("DROP ROLE IF EXISTS {}", self.role),
        ] {
            self.admin.batch_execute(&s).map_err(pg_err)?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------- MariaDB

struct Maria {
    c: mysql::Conn,
    name: String,
}

fn my_rows(c: &mut mysql::Conn, sql: &str) -> Result<Rows, String> {
    let rows: Vec<mysql::Row> = c.query(sql).map_err(|e| e.to_string())?;
    Ok(rows
        .into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql::Value::NULL => "NULL".to_string(),
                    mysql::Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => other.as_sql(true),
                })
                .collect()
        })
        .collect())
}

impl Maria {
    fn open(url: &str, cfg: &Config) -> Result<Maria, String> {
        let opts = mysql::Opts::from_url(url).map_err(|e| e.to_string())?;
        let mut c = mysql::Conn::new(opts).map_err(|e| format!("{url}: {e}"))?;
        let t = Instant::now();
        let name = &cfg.name;
        let reused = cfg.reuse
            && my_rows(&mut c, &format!("SELECT count(*) FROM {name}.orders"))
                .is_ok_and(|r| r[0][0] == cfg.orders.to_string());
        if !reused {
            let (n, a, t) = (cfg.orders, cfg.accounts, cfg.tenants);
            let (os, as_) = (step(n), step(a));
            // `seq_1_to_N` comes from MariaDB's SEQUENCE engine.
            for s in [
                format!("DROP DATABASE IF EXISTS {name}"),
                format!("CREATE DATABASE {name}"),
                format!("USE {name}"),
                "CREATE TABLE accounts (id bigint NOT NULL PRIMARY KEY, tenant_id int NOT NULL, plan varchar(10) NOT NULL, created_at datetime NOT NULL) ENGINE=InnoDB".into(),
                "CREATE TABLE orders (id bigint NOT NULL PRIMARY KEY, tenant_id int NOT NULL, account_id bigint NOT NULL, status varchar(10) NOT NULL, total decimal(12,2) NOT NULL, created_at datetime NOT NULL) ENGINE=InnoDB".into(),
                format!(
                    "INSERT INTO accounts SELECT seq, (seq - 1) % {t} + 1,
                       CASE seq % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'pro' ELSE 'team' END,
                       TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (seq * {as_}) SECOND
                     FROM seq_1_to_{a}"
                ),
                format!(
                    "INSERT INTO orders SELECT seq, (seq - 1) % {t} + 1,
                       (seq - 1) % {t} + 1 + {t} * ((((seq - 1) DIV {t}) * 7919) % ({a} DIV {t})),
                       CASE seq % 3 WHEN 0 THEN 'paid' WHEN 1 THEN 'open' ELSE 'refunded' END,
                       ((seq * 13) % 100000) / 100.0,
                       TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (seq * {os}) SECOND
                     FROM seq_1_to_{n}"
                ),
                "CREATE INDEX accounts_tenant_created ON accounts (tenant_id, created_at)".into(),
                "CREATE INDEX orders_tenant_created ON orders (tenant_id, created_at)".into(),
                "CREATE INDEX orders_account ON orders (account_id)".into(),
                "CREATE INDEX orders_created ON orders (created_at)".into(),
                "ANALYZE TABLE accounts, orders".into(),
            ] {
                c.query_drop(&s).map_err(|e| format!("{e}\n  in: {s}"))?;
            }
        }
        c.query_drop(format!("USE {name}"))
            .map_err(|e| e.to_string())?;
        eprintln!(
            "MariaDB: {} in {:.1} s",
            if reused { "reused" } else { "loaded" },
            t.elapsed().as_secs_f64()
        );
        Ok(Maria {
            c,
            name: name.clone(),
        })
    }
}

impl Backend for Maria {
    fn label(&self) -> &'static str {
        "MariaDB"
    }
    fn policy_db(&self) -> &'static str {
        "maria"
    }
    fn rows(&mut self, sql: &str) -> Result<Rows, String> {
        my_rows(&mut self.c, sql)
    }
    fn explain(&mut self, sql: &str) -> Result<String, String> {
        // ANALYZE runs the query and reports actual rows per step.
        let rows = my_rows(&mut self.c, &format!("ANALYZE FORMAT=JSON {sql}"))?;
        Ok(rows
            .into_iter()
            .map(|r| r.join(" "))
            .collect::<Vec<_>>()
            .join("\n"))
    }
    fn teardown(&mut self) -> Result<(), String> {
        self.c
            .query_drop(format!("DROP DATABASE IF EXISTS {}", self.name))
            .map_err(|e| e.to_string())
    }
}

// -------------------------------------------------------------------- SQLite

struct Lite {
    c: Option<rusqlite::Connection>,
    path: PathBuf,
}

fn lite_rows(c: &rusqlite::Connection, sql: &str) -> Result<Rows, String> {
    let mut stmt = c.prepare(sql).map_err(|e| e.to_string())?;
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    r.get_ref(i).map(|v| match v {
                        rusqlite::types::ValueRef::Null => "NULL".to_string(),
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        rusqlite::types::ValueRef::Real(f) => f.to_string(),
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

impl Lite {
    fn open(cfg: &Config) -> Result<Lite, String> {
        let path = cfg.sqlite_dir.join(format!("{}.sqlite", cfg.name));
        let t = Instant::now();
        let reused = cfg.reuse
            && path.exists()
            && rusqlite::Connection::open(&path)
                .ok()
                .and_then(|c| lite_rows(&c, "SELECT count(*) FROM orders").ok())
                .is_some_and(|r| r[0][0] == cfg.orders.to_string());
        if !reused {
            remove_sqlite(&path);
        }
        let c = rusqlite::Connection::open(&path).map_err(|e| e.to_string())?;
        if !reused {
            let (n, a, t) = (cfg.orders, cfg.accounts, cfg.tenants);
            let (os, as_) = (step(n), step(a));
            c.execute_batch(&format!(
                "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
                 BEGIN;
                 CREATE TABLE accounts (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, plan TEXT NOT NULL, created_at TIMESTAMP NOT NULL);
                 CREATE TABLE orders (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, account_id INTEGER NOT NULL, status TEXT NOT NULL, total DECIMAL(12,2) NOT NULL, created_at TIMESTAMP NOT NULL);
                 INSERT INTO accounts
                   WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {a})
                   SELECT i, (i - 1) % {t} + 1,
                     CASE i % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'pro' ELSE 'team' END,
                     datetime('2024-01-01', '+' || (i * {as_}) || ' seconds')
                   FROM s;
                 INSERT INTO orders
                   WITH RECURSIVE s(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM s WHERE j < {n})
                   SELECT j, (j - 1) % {t} + 1,
                     (j - 1) % {t} + 1 + {t} * ((((j - 1) / {t}) * 7919) % ({a} / {t})),
                     CASE j % 3 WHEN 0 THEN 'paid' WHEN 1 THEN 'open' ELSE 'refunded' END,
                     ((j * 13) % 100000) / 100.0,
                     datetime('2024-01-01', '+' || (j * {os}) || ' seconds')
                   FROM s;
                 CREATE INDEX accounts_tenant_created ON accounts (tenant_id, created_at);
                 CREATE INDEX orders_tenant_created ON orders (tenant_id, created_at);
                 CREATE INDEX orders_account ON orders (account_id);
                 CREATE INDEX orders_created ON orders (created_at);
                 COMMIT;
                 ANALYZE;"
            ))
            .map_err(|e| e.to_string())?;
        }
        eprintln!(
            "SQLite: {} in {:.1} s ({})",
            if reused { "reused" } else { "loaded" },
            t.elapsed().as_secs_f64(),
            path.display()
        );
        Ok(Lite { c: Some(c), path })
    }

    fn conn(&self) -> &rusqlite::Connection {
        self.c.as_ref().expect("open until teardown")
    }
}

fn remove_sqlite(path: &Path) {
    let _ = std::fs::remove_file(path);
}

impl Backend for Lite {
    fn label(&self) -> &'static str {
        "SQLite"
    }
    fn policy_db(&self) -> &'static str {
        "lite"
    }
    fn rows(&mut self, sql: &str) -> Result<Rows, String> {
        lite_rows(self.conn(), sql)
    }
    fn explain(&mut self, sql: &str) -> Result<String, String> {
        let rows = lite_rows(self.conn(), &format!("EXPLAIN QUERY PLAN {sql}"))?;
        Ok(rows
            .into_iter()
            .map(|r| r.join(" | "))
            .collect::<Vec<_>>()
            .join("\n"))
    }
    fn teardown(&mut self) -> Result<(), String> {
        self.c = None;
        std::fs::remove_file(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))
    }
}
