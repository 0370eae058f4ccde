//! The warehouse dialects without an engine here — Snowflake, BigQuery,
//! Redshift, SQL Server and Trino — are checked by parsing, not by
//! execution: every corpus query (the ones written for every database) ×
//! every user of the differential test policy × literals and bind
//! parameters is rewritten in the dialect, and the output must
//!
//! 1. parse again with sqlparser in that dialect, as exactly one statement
//!    whose printed form parses and prints to itself (the first print may
//!    normalise a literal: Snowflake reads `'back\slash'` as `'backslash'`),
//!    and (with literals) pass `Policy::recheck`;
//! 2. parse with a second, independent parser — sqlglot, in its dialect of
//!    the same name (`tsql` for SQL Server), run once over all rewrites by
//!    `tests/engines/sqlglot_check.py` — and mean the same tables and
//!    sandboxes there: sqlglot's scope analysis finds exactly the base
//!    tables the original query reads; for a customer every read of a
//!    sandboxed table stands alone in a derived table whose WHERE has, as a
//!    top-level conjunct, each sandbox condition over exactly the user's
//!    values (literals, or placeholders bound to them; a false condition
//!    for a user with no values), and selects no hidden column.
//!
//! Refusals are counted, not failures; so are queries sqlglot finds invalid
//! in the dialect to begin with (BigQuery: a bare `UNION`, `''` in a string). Needs `SQLSANDBOX_PYTHON` (a Python
//! with `tests/engines/requirements.txt`); `#[ignore]`d otherwise.

mod differential;
mod engines;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sqlparser::parser::Parser;
use sqlsandbox::{Dialect, Options};

use differential::corpus::{HIDDEN_COLUMN, QUERIES};
use differential::{mark_done, policy, users, TestUser};

/// sqlsandbox's dialect name and sqlglot's.
const WAREHOUSES: &[(&str, &str)] = &[
    ("snowflake", "snowflake"),
    ("bigquery", "bigquery"),
    ("redshift", "redshift"),
    ("mssql", "tsql"),
    ("trino", "trino"),
];

/// The schema of the test policy's tables (BigQuery: the dataset).
const SCHEMA: &str = "app";

/// What sqlglot must find for `user`: per sandboxed table, each
/// condition's column and values; `null` for the unrestricted analyst.
fn sandboxes(user: &TestUser) -> Value {
    if user.analyst {
        return Value::Null;
    }
    let tenants = json!(user.tenants);
    json!({
        "tenants": [["id", tenants]],
        "accounts": [["tenant_id", tenants]],
        "orders": [["tenant_id", tenants]],
        "events": [["tenant_id", tenants], ["region", user.regions]],
    })
}

#[derive(Debug, Default)]
struct Counts {
    rewrites: usize,
    with_params: usize,
    refused: BTreeMap<&'static str, usize>,
}

#[test]
#[ignore = "needs SQLSANDBOX_PYTHON"]
fn warehouse_rewrites_parse_in_sqlparser_and_sqlglot() {
    let python = engines::python("warehouse parse check");
    let started = std::time::Instant::now();
    let mut items = Vec::new();
    let mut labels = Vec::new();
    let mut failures = Vec::new();
    let mut counts: BTreeMap<&str, Counts> = BTreeMap::new();
    for &(name, glot) in WAREHOUSES {
        let dialect: Dialect = name
            .parse()
            .unwrap_or_else(|e| panic!("dialect {name}: {e}"));
        let policy = policy(dialect, SCHEMA);
        let c = counts.entry(name).or_default();
        for user in users() {
            let principal = user.principal(&policy);
            let queries = QUERIES
                .iter()
                .filter(|q| q.only.is_empty())
                .map(|q| q.sql)
                .chain(HIDDEN_COLUMN.iter().copied());
            // A hidden column is refused, or left to fail in the database
            // (the sandbox does not select it; sqlglot checks that).
            for template in queries {
                let sql = template.replace("{s}", SCHEMA);
                for params in [false, true] {
                    let opts = Options::default().with_params(params);
                    let what = format!(
                        "[{name}] user {}, {}: {sql}",
                        user.name,
                        if params { "parameters" } else { "literals" }
                    );
                    let rw = match policy.rewrite(&principal, &sql, &opts) {
                        Err(e) if e.is_refusal() => {
                            *c.refused.entry(e.code()).or_default() += 1;
                            continue;
                        }
                        Err(e) => {
                            failures.push(format!("{what}\n  not a refusal: [{}] {e}", e.code()));
                            continue;
                        }
                        Ok(rw) => rw,
                    };
                    // (1) sqlparser, in the dialect.
                    match Parser::parse_sql(dialect.parser(), &rw.sql) {
                        // Printing what it parsed is a fixed point (the
                        // text itself may be normalised: Snowflake's
                        // `'back\slash'` prints as the equal `'backslash'`).
                        Ok(stmts) if stmts.len() == 1 => {
                            let printed = stmts[0].to_string();
                            let again = Parser::parse_sql(dialect.parser(), &printed)
                                .map(|s| s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
                            if again.as_deref() != Ok(std::slice::from_ref(&printed)) {
                                failures.push(format!(
                                    "{what}\n  sqlparser does not print the rewrite stably:\n  {}\n  {printed}\n  {again:?}",
                                    rw.sql
                                ));
                            }
                        }
                        Ok(stmts) => failures.push(format!(
                            "{what}\n  {} statements: {}",
                            stmts.len(),
                            rw.sql
                        )),
                        Err(e) => failures.push(format!(
                            "{what}\n  sqlparser cannot parse the rewrite: {e}\n  {}",
                            rw.sql
                        )),
                    }
                    if !params {
                        if let Err(e) = policy.recheck(&principal, &rw.sql, &opts) {
                            failures.push(format!(
                                "{what}\n  recheck refuses the rewrite: [{}] {e}\n  {}",
                                e.code(),
                                rw.sql
                            ));
                        }
                    }
                    c.rewrites += 1;
                    if !rw.params.is_empty() {
                        c.with_params += 1;
                    }
                    // (2) sqlglot, all at once below.
                    items.push(json!({
                        "id": items.len(),
                        "dialect": glot,
                        "sql": rw.sql,
                        "params": rw.params.iter().map(|p| engines::param(&p.value)).collect::<Vec<_>>(),
                        "original": sql,
                        "schema": SCHEMA,
                        "sandboxes": sandboxes(&user),
                        "hidden": {"accounts": ["email"]},
                    }));
                    labels.push(format!("{what}\n  rewritten: {}", rw.sql));
                }
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("{}_glot", differential::unique_name()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("items.json");
    std::fs::write(&input, serde_json::to_vec(&items).unwrap()).unwrap();
    let out = std::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/engines/sqlglot_check.py"
        ))
        .arg(&input)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "sqlglot_check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: Value = serde_json::from_slice(&out.stdout).expect("sqlglot_check.py's JSON");
    let results = reply["results"].as_array().expect("results");
    assert_eq!(results.len(), items.len(), "one result per rewrite");
    let mut invalid: BTreeMap<String, usize> = BTreeMap::new();
    for r in results {
        let id = r["id"].as_u64().expect("id") as usize;
        if r["problems"].is_null() {
            let d = items[id]["dialect"].as_str().unwrap_or("?").to_string();
            *invalid.entry(d).or_default() += 1;
            continue;
        }
        let problems = r["problems"].as_array().expect("problems");
        if !problems.is_empty() {
            let list: Vec<String> = problems
                .iter()
                .map(|p| format!("  sqlglot: {}", p.as_str().unwrap_or_default()))
                .collect();
            failures.push(format!("{}\n{}", labels[id], list.join("\n")));
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {} warehouse rewrites fail the parse check (first 15):\n\n{}",
            failures.len(),
            items.len(),
            failures
                .iter()
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n\n")
        );
    }
    let summary: Vec<String> = counts
        .iter()
        .map(|(name, c)| {
            let glot = WAREHOUSES.iter().find(|w| w.0 == *name).map_or("?", |w| w.1);
            let skipped = invalid.get(glot).copied().unwrap_or(0);
            format!(
                "{name}: {} rewrites ({} with bind parameters) pass sqlparser, {} of them sqlglot too ({skipped} not checked: the original is invalid there), refused {:?}",
                c.rewrites,
                c.with_params,
                c.rewrites - skipped,
                c.refused
            )
        })
        .collect();
    mark_done(
        "warehouse-parse",
        &format!(
            "sqlglot {}: {}; {:.0?}",
            reply["sqlglot"].as_str().unwrap_or("?"),
            summary.join("; "),
            started.elapsed()
        ),
    );
}
