//! Executes the adversarial corpus: every fixture under
//! `tests/cases/adversarial` and `tests/cases/bypass` that sqlsandbox
//! rewrites (rather than refuses) for alice is run on a real database
//! holding other tenants' rows with leak markers, and must show none.
//!
//! SQLite always runs (each case in the SQLite dialect); PostgreSQL runs
//! when `SQLSANDBOX_PG_URL` is set (each PostgreSQL-dialect case, in a
//! database of its own that is dropped afterwards).

mod common;

use std::path::Path;

use sqlsandbox::{Dialect, Options, Principal};

struct Case {
    name: String,
    sql: String,
    dialect: Dialect,
}

/// The fixtures written for the SaaS policy and alice.
fn corpus() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut out = Vec::new();
    for dir in ["adversarial", "bypass", "scope", "basic", "custom", "names"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            let v: serde_yaml::Value =
                serde_yaml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            if s("policy").as_deref() != Some("saas") || s("user").as_deref() != Some("alice") {
                continue;
            }
            let Some(sql) = s("sql") else { continue };
            let dialect = s("dialect")
                .map(|d| d.parse().unwrap())
                .unwrap_or(Dialect::Postgres);
            out.push(Case {
                name: format!("{dir}/{}", f.file_stem().unwrap().to_string_lossy()),
                sql,
                dialect,
            });
        }
    }
    out
}

#[test]
fn corpus_shows_no_other_tenant_on_sqlite() {
    let policy = common::saas_policy();
    let alice = Principal::from_user(&policy, "alice").unwrap();
    let db = common::sqlite();
    let (mut ran, mut refused, mut failed) = (0, 0, 0);
    for case in corpus() {
        let opts = Options::default().with_dialect(Dialect::Sqlite);
        match policy.rewrite(&alice, &case.sql, &opts) {
            Err(_) => refused += 1,
            Ok(out) => match common::sqlite_rows(&db, &out.sql) {
                None => failed += 1,
                Some(rows) => {
                    ran += 1;
                    assert_eq!(common::leaked(&rows), None, "{}: {}", case.name, out.sql);
                }
            },
        }
    }
    eprintln!("adversarial corpus on SQLite: {ran} ran without a leak, {refused} refused, {failed} not valid SQLite");
    assert!(ran > 60, "too few corpus queries ran on SQLite: {ran}");
}

#[test]
#[ignore = "needs SQLSANDBOX_PG_URL"]
fn corpus_shows_no_other_tenant_on_postgres() {
    common::with_pg_dataset(
        "corpus_shows_no_other_tenant_on_postgres",
        "sqlsandbox_adv",
        run_postgres,
    );
}

fn run_postgres(c: &mut postgres::Client) {
    let policy = common::saas_policy();
    let alice = Principal::from_user(&policy, "alice").unwrap();
    let (mut ran, mut refused, mut failed) = (0, 0, 0);
    for case in corpus()
        .into_iter()
        .filter(|c| c.dialect == Dialect::Postgres)
    {
        match policy.rewrite(&alice, &case.sql, &Options::default()) {
            Err(_) => refused += 1,
            Ok(out) => match common::pg_rows(c, &out.sql) {
                Err(_) => failed += 1,
                Ok(rows) => {
                    ran += 1;
                    assert_eq!(common::leaked(&rows), None, "{}: {}", case.name, out.sql);
                }
            },
        }
    }
    assert!(ran > 60, "too few corpus queries ran on PostgreSQL: {ran}");
    common::mark_done(
        "postgres-adversarial",
        &format!(
            "{ran} corpus queries ran without a leak, {refused} refused, {failed} failed to run"
        ),
    );
}
