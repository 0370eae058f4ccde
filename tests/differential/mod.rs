//! Differential tests: every query runs once through sqlsandbox and once
//! under an oracle the database itself enforces (PostgreSQL row-level
//! security, or per-user views on MariaDB and SQLite); the results must be
//! equal. Shared by `tests/diff_sqlite.rs`, `tests/diff_postgres.rs` and
//! `tests/diff_mariadb.rs`:
//!
//! - [`dataset`]: the multi-tenant tables and rows;
//! - [`corpus`]: the hand-written queries;
//! - [`generate`]: random queries for proptest;
//! - [`harness`]: the backend trait, running and comparing;
//! - this file: the test policy, its users, hostile values and the
//!   environment (server URLs, skip messages, CI markers).

// Each test crate uses a different part of this module.
#![allow(dead_code)]

pub mod corpus;
pub mod dataset;
pub mod generate;
pub mod harness;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlsandbox::{AttributeValue, Dialect, Policy, Principal, Scalar};

/// One user of the test policy, with the attributes the oracle needs.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub name: String,
    /// Member of `analysts` (unrestricted) instead of `customers`.
    pub analyst: bool,
    pub tenants: Vec<i64>,
    pub regions: Vec<String>,
    /// Attributes are lists (multi-valued) rather than single values.
    pub multi: bool,
}

fn customer(name: &str, tenant: i64, region: &str) -> TestUser {
    TestUser {
        name: name.into(),
        analyst: false,
        tenants: vec![tenant],
        regions: vec![region.into()],
        multi: false,
    }
}

fn multi(name: &str, tenants: &[i64], regions: &[&str]) -> TestUser {
    TestUser {
        name: name.into(),
        analyst: false,
        tenants: tenants.to_vec(),
        regions: regions.iter().map(|r| r.to_string()).collect(),
        multi: true,
    }
}

/// Every user of the test policy: a big tenant, a medium one, a tiny one,
/// one with no rows, a tenant with a quote in its name, two tenants at
/// once, an empty list (sees nothing), and an unrestricted analyst.
pub fn users() -> Vec<TestUser> {
    vec![
        customer("alice", 1, "eu"),
        customer("bob", 2, "us"),
        customer("chen", 3, "eu"),
        customer("dora", 4, "us"),
        customer("fay", 6, "ap"),
        multi("emil", &[1, 5], &["eu", "us"]),
        multi("nobody", &[], &[]),
        TestUser {
            name: "carol".into(),
            analyst: true,
            tenants: vec![],
            regions: vec![],
            multi: false,
        },
    ]
}

impl TestUser {
    /// A customer with one tenant and an arbitrary (hostile) region.
    pub fn with_region(tenant: i64, region: &str) -> TestUser {
        customer("hostile", tenant, region)
    }

    fn attributes(&self) -> Vec<(&'static str, AttributeValue)> {
        if self.analyst {
            return vec![];
        }
        let tenants: Vec<Scalar> = self.tenants.iter().map(|t| Scalar::Integer(*t)).collect();
        let regions: Vec<Scalar> = self.regions.iter().cloned().map(Scalar::Text).collect();
        let value = |mut v: Vec<Scalar>| {
            if self.multi {
                AttributeValue::Many(v)
            } else {
                AttributeValue::Single(v.remove(0))
            }
        };
        vec![("tenant", value(tenants)), ("region", value(regions))]
    }

    /// The principal: the policy's declared user of that name when there is
    /// one (checked to carry the same attributes), else built directly.
    pub fn principal(&self, policy: &Policy) -> Principal {
        let group = if self.analyst {
            "analysts"
        } else {
            "customers"
        };
        let built = Principal::new(policy, &self.name, [group], self.attributes())
            .unwrap_or_else(|e| panic!("principal {}: {e}", self.name));
        match Principal::from_user(policy, &self.name) {
            Ok(declared) => {
                assert_eq!(
                    declared.attributes(),
                    built.attributes(),
                    "user {}",
                    self.name
                );
                declared
            }
            Err(_) => built,
        }
    }
}

/// The test policy for `dialect`, its tables in `schema`. Customers see
/// their tenants' rows (`tenants` by id, `orders` by tenant, `events` by
/// tenant and region) and `accounts` through a saved question that hides
/// `email`; products are shared; analysts see everything.
pub fn policy(dialect: Dialect, schema: &str) -> Policy {
    let mut yaml = format!(
        r#"version: 1
attributes: [tenant, region]
databases:
  app:
    dialect: {dialect}
    default_schema: {schema}
    tables:
"#,
        dialect = dialect.name()
    );
    for t in dataset::TABLES {
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| {
                let ty = match c.kind {
                    dataset::Kind::Int => "integer",
                    dataset::Kind::Num => "decimal",
                    dataset::Kind::Text => "text",
                    dataset::Kind::Time => "timestamp",
                };
                format!("{}: {ty}", c.name)
            })
            .collect();
        yaml += &format!(
            "      {schema}.{}: {{columns: {{{}}}}}\n",
            t.name,
            cols.join(", ")
        );
    }
    yaml += &format!(
        r#"questions:
  visible_accounts:
    database: app
    sql: SELECT id, tenant_id, name, plan, created_at FROM accounts WHERE tenant_id = {{{{tenant}}}}
groups:
  customers:
    data:
      app:
        {schema}:
          tenants: {{sandbox: {{column: id, attribute: tenant}}}}
          accounts: {{sandbox: {{question: visible_accounts, parameters: {{tenant: tenant}}}}}}
          orders: {{sandbox: {{column: tenant_id, attribute: tenant}}}}
          events: {{sandbox: {{filters: [{{column: tenant_id, attribute: tenant}}, {{column: region, attribute: region}}]}}}}
          products: unrestricted
    native: {{app: true}}
  analysts:
    data: {{app: unrestricted}}
    native: {{app: true}}
users:
"#
    );
    for u in users() {
        if u.analyst {
            yaml += &format!("  {}: {{groups: [analysts]}}\n", u.name);
            continue;
        }
        let list = |v: Vec<String>| {
            if u.multi {
                format!("[{}]", v.join(", "))
            } else {
                v[0].clone()
            }
        };
        yaml += &format!(
            "  {}: {{groups: [customers], attributes: {{tenant: {}, region: {}}}}}\n",
            u.name,
            list(u.tenants.iter().map(i64::to_string).collect()),
            list(u.regions.clone()),
        );
    }
    Policy::from_yaml(&yaml, "differential.yaml")
        .unwrap_or_else(|e| panic!("test policy: {e}\n{yaml}"))
}

/// A variant for the hostile-value test: `events` through a custom
/// question binding the text attribute `region` (and `tenant`).
pub fn text_question_policy(dialect: Dialect, schema: &str) -> Policy {
    let yaml = format!(
        r#"version: 1
databases:
  app:
    dialect: {dialect}
    default_schema: {schema}
    tables:
      {schema}.events: {{columns: {{id: integer, tenant_id: integer, account_id: integer, kind: text, region: text, at: timestamp}}}}
      {schema}.accounts: {{columns: {{id: integer, tenant_id: integer, email: text, name: text, plan: text, created_at: timestamp}}}}
questions:
  my_events:
    database: app
    sql: SELECT id, tenant_id, account_id, kind, region, {at} FROM events WHERE region = {{{{region}}}} AND tenant_id = {{{{tenant}}}}
groups:
  customers:
    data:
      app:
        {schema}:
          events: {{sandbox: {{question: my_events, parameters: {{region: region, tenant: tenant}}}}}}
          accounts: {{sandbox: {{column: tenant_id, attribute: tenant}}}}
    native: {{app: true}}
"#,
        dialect = dialect.name(),
        // `at` is a reserved word in DuckDB.
        at = if dialect.name() == "duckdb" {
            "\"at\""
        } else {
            "at"
        },
    );
    Policy::from_yaml(&yaml, "text_question.yaml")
        .unwrap_or_else(|e| panic!("text-question policy: {e}\n{yaml}"))
}

/// Values an attacker might put into a text attribute: quotes, backslashes,
/// comment markers, semicolons, dollar quotes, unicode, very long strings,
/// and values that look like numbers, NULL or SQL.
pub fn hostile_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "eu' OR '1'='1",
        "eu' OR 1=1 --",
        "\\' OR 1=1 --",
        "x'); DROP TABLE orders; --",
        "eu'; SELECT email FROM accounts; --",
        "' UNION SELECT email FROM accounts --",
        "$$",
        "$$ OR 1=1 $$",
        "$tag$ OR 1=1 $tag$",
        "'",
        "''",
        "'''",
        "\\",
        "\\\\",
        "\\'",
        "eu\\",
        "\\n",
        "\"",
        "eu\" OR \"1\"=\"1",
        "`eu`",
        "eu' --",
        "eu' #",
        "eu'/*",
        "*/ OR 1=1 /*",
        "-- comment",
        "/* comment */",
        ";",
        "eu;",
        "eu\n' OR 1=1 --",
        "eu\r\nus",
        "\t",
        "ünïcødé-区域-🌍",
        "E'eu'",
        "N'eu'",
        "?",
        "?1",
        "$1",
        ":region",
        "@region",
        "%",
        "_u",
        "{{region}}",
        "[[region]]",
        "42",
        "-1",
        "1e3",
        "0x2A",
        "NULL",
        "null",
        "TRUE",
        "SELECT 1",
        "eu",
        "",
        " eu",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("x'".repeat(5000));
    v.push("\\".repeat(3000));
    v.push("é".repeat(10_000));
    v.push("a".repeat(60_000));
    v
}

/// A value sqlsandbox refuses (`SB302`) rather than binds: text with a NUL
/// character (PostgreSQL cannot store it, SQLite's SQL text ends at it).
pub const NUL_VALUE: &str = "eu\0x";

/// The oracle of MariaDB and SQLite: per-user views. Each sandboxed table
/// becomes a view that shows the current user's rows only: it joins the
/// one-column tables `_tenants` and `_regions` of `ctx`, where the tests
/// store the user's attribute values (as bound parameters, never as SQL
/// text, and without repeats); `accounts` lacks `email`. Returns (view
/// name, its SELECT over the tables in `data`).
///
/// Joins rather than `IN (SELECT v FROM _tenants)`: MariaDB 10.11 returns
/// no rows for some queries over such views (an IN subquery in a joined
/// view or derived table, a window function and a LEFT JOIN together), and
/// still does with joins when it merges the views, so the MariaDB tests
/// create them with `ALGORITHM=TEMPTABLE`.
pub fn oracle_views(data: &str, ctx: &str) -> Vec<(&'static str, String)> {
    let tenant = |col: &str| format!("JOIN {ctx}._tenants t ON t.v = d.{col}");
    vec![
        (
            "tenants",
            format!("SELECT d.* FROM {data}.tenants d {}", tenant("id")),
        ),
        (
            "accounts",
            format!(
                "SELECT d.id, d.tenant_id, d.name, d.plan, d.created_at FROM {data}.accounts d {}",
                tenant("tenant_id")
            ),
        ),
        ("products", format!("SELECT * FROM {data}.products")),
        (
            "orders",
            format!("SELECT d.* FROM {data}.orders d {}", tenant("tenant_id")),
        ),
        (
            "events",
            format!(
                "SELECT d.* FROM {data}.events d {} JOIN {ctx}._regions r ON r.v = d.region",
                tenant("tenant_id")
            ),
        ),
    ]
}

// ----- environment ------------------------------------------------------------

/// Writes to the real standard error, past the test harness's capture, so
/// that skip notices show in a plain `cargo test`.
pub fn notice(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// The server URL in `var`. The tests that call this are
/// `#[ignore = "needs …"]`: run with `--include-ignored`, they need their
/// server, and fail without it rather than pass having checked nothing.
pub fn server_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => panic!(
            "{test}: set {var} (this server test is #[ignore]d by default and runs with --include-ignored; see README, \"Differential tests\")"
        ),
    }
}

/// Records that a server test ran to completion: writes
/// `$SQLSANDBOX_DIFF_MARKERS/<name>` (CI checks for these files) and
/// prints a summary line.
pub fn mark_done(name: &str, summary: &str) {
    notice(&format!("differential {name}: {summary}"));
    if let Ok(dir) = std::env::var("SQLSANDBOX_DIFF_MARKERS") {
        let path = std::path::Path::new(&dir).join(name);
        std::fs::write(&path, format!("{summary}\n"))
            .unwrap_or_else(|e| panic!("cannot write marker {}: {e}", path.display()));
    }
}

/// A name unique to this process and call, for databases, schemas and roles:
/// `sqlsandbox_diff_<pid>_<n>`.
pub fn unique_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{PREFIX}{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Prefix of every object the tests create on a server.
pub const PREFIX: &str = "sqlsandbox_diff_";

/// Whether `name` (made by [`unique_name`]) belongs to a process that is no
/// longer running: such leftovers of a killed run may be dropped.
pub fn is_stale(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let pid = rest.split('_').next().unwrap_or("");
    match pid.parse::<u32>() {
        Ok(pid) => {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        Err(_) => false,
    }
}
