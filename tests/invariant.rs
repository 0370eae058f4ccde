//! The invariant, checked on generated queries: whatever SQL a customer
//! sends, sqlsandbox either refuses it or returns SQL that, executed on a
//! real database, shows nothing of another tenant's rows and no hidden
//! column. Queries are generated from a grammar rich in the constructs
//! that trip rewriters (CTEs named like tables, aliases equal to table
//! names, quoted and qualified names, nested subqueries, set operations,
//! comments); each is rewritten for alice and executed on SQLite, where
//! every row she may not see carries a leak marker.
//!
//! Failures print the generated SQL; proptest also records the seed in
//! `proptest-regressions/` so the case replays.

mod common;

use proptest::prelude::*;
use proptest::test_runner::Config;
use sqlsandbox::{Dialect, Options, Principal};

fn table() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("orders".to_string()),
        Just("public.orders".to_string()),
        Just("ORDERS".to_string()),
        Just("\"orders\"".to_string()),
        Just("events".to_string()),
        Just("public.events".to_string()),
        Just("accounts".to_string()),
        Just("public.accounts".to_string()),
        Just("products".to_string()),
        Just("audit.logins".to_string()),
    ]
}

fn alias() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" AS o".to_string()),
        Just(" orders".to_string()),
        Just(" AS events".to_string()),
        Just(" AS \"orders\"".to_string()),
        Just(" x".to_string()),
    ]
}

fn projection() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        Just("count(*)".to_string()),
        Just("id".to_string()),
        Just("max(id)".to_string()),
    ]
}

/// A query of bounded depth.
fn query(depth: u32) -> BoxedStrategy<String> {
    let leaf =
        (projection(), table(), alias()).prop_map(|(p, t, a)| format!("SELECT {p} FROM {t}{a}"));
    if depth == 0 {
        return leaf.boxed();
    }
    let inner = query(depth - 1);
    prop_oneof![
        3 => leaf,
        // derived table, possibly aliased like a protected table
        1 => (projection(), inner.clone(), prop_oneof![Just("orders"), Just("d"), Just("accounts")])
            .prop_map(|(p, q, a)| format!("SELECT {p} FROM ({q}) AS {a}")),
        // CTE, possibly named like a protected table
        1 => (prop_oneof![Just("orders"), Just("events"), Just("c"), Just("ORDERS")], inner.clone(), table())
            .prop_map(|(n, q, t)| format!("WITH {n} AS ({q}) SELECT * FROM {t}")),
        // set operations
        1 => (inner.clone(), inner.clone(), prop_oneof![Just("UNION"), Just("UNION ALL"), Just("EXCEPT")])
            .prop_map(|(a, b, op)| format!("SELECT * FROM ({a}) AS l {op} SELECT * FROM ({b}) AS r")),
        // subqueries in WHERE and the select list
        1 => (table(), inner.clone()).prop_map(|(t, q)| format!("SELECT * FROM {t} WHERE EXISTS ({q})")),
        1 => (inner.clone(), table()).prop_map(|(q, t)| format!("SELECT ({q} LIMIT 1) AS s FROM {t}")),
        // joins
        1 => (table(), table(), alias()).prop_map(|(a, b, al)| format!("SELECT * FROM {a} AS j1 JOIN {b}{al} ON 1 = 1")),
        1 => (table(), inner).prop_map(|(t, q)| format!("SELECT * FROM {t} AS t1 LEFT JOIN ({q}) AS t2 ON 1 = 1")),
    ]
    .boxed()
}

/// Sprinkles comments and odd whitespace between tokens.
fn noisy(depth: u32) -> impl Strategy<Value = String> {
    (query(depth), any::<u8>()).prop_map(|(q, n)| match n % 4 {
        0 => q,
        1 => q.replace(" FROM ", " /* c */ FROM\n"),
        2 => q.replace(' ', "\t"),
        _ => q.replace("SELECT", "SELECT/**/"),
    })
}

#[test]
fn no_generated_query_leaks() {
    let policy = common::saas_policy();
    let alice = Principal::from_user(&policy, "alice").unwrap();
    let db = common::sqlite();
    let opts = Options::default().with_dialect(Dialect::Sqlite);
    let stats = std::cell::Cell::new((0usize, 0usize, 0usize)); // ran, refused, db error
    let bump = |i: usize| {
        let mut s = stats.get();
        match i {
            0 => s.0 += 1,
            1 => s.1 += 1,
            _ => s.2 += 1,
        }
        stats.set(s);
    };
    let mut runner = proptest::test_runner::TestRunner::new(Config {
        cases: 600,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&noisy(3), |sql| {
        match policy.rewrite(&alice, &sql, &opts) {
            Err(_) => bump(1),
            Ok(out) => match common::sqlite_rows(&db, &out.sql) {
                _ if policy.recheck(&alice, &out.sql, &opts).is_err() => {
                    return Err(TestCaseError::fail(format!(
                        "recheck failed\n  input:  {sql}\n  output: {}",
                        out.sql
                    )));
                }
                None => bump(2),
                Some(rows) => {
                    bump(0);
                    if let Some(cell) = common::leaked(&rows) {
                        return Err(TestCaseError::fail(format!(
                            "leak `{cell}`\n  input:  {sql}\n  output: {}",
                            out.sql
                        )));
                    }
                }
            },
        }
        Ok(())
    });
    let stats = stats.get();
    eprintln!(
        "invariant: {} generated queries ran without a leak, {} refused, {} rejected by SQLite",
        stats.0, stats.1, stats.2
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(stats.0 > 100, "too few generated queries ran: {stats:?}");
}

/// Refusals and rewrites never panic, whatever the bytes.
#[test]
fn arbitrary_text_never_panics() {
    let policy = common::saas_policy();
    let alice = Principal::from_user(&policy, "alice").unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let strat = prop_oneof![
        ".*",
        "[ -~]{0,200}",
        "(SELECT|FROM|WHERE|WITH|AS|orders|\\(|\\)|,|\\*|'|\"|--|/\\*|\\*/|;| )*",
    ];
    runner
        .run(&strat, |sql| {
            for d in Dialect::ALL {
                let opts = Options::default().with_dialect(d);
                let _ = policy.rewrite(&alice, &sql, &opts);
            }
            Ok(())
        })
        .unwrap();
}

/// The oracle can fail: reading the tables directly shows the markers, and
/// alice's own sandboxed rows do not.
#[test]
fn markers_detect_unsandboxed_reads() {
    let db = common::sqlite();
    for t in [
        "public.orders",
        "public.events",
        "public.accounts",
        "audit.logins",
    ] {
        let rows = common::sqlite_rows(&db, &format!("SELECT * FROM {t}")).unwrap();
        assert!(common::leaked(&rows).is_some(), "{t} has no marker");
    }
    let policy = common::saas_policy();
    let alice = Principal::from_user(&policy, "alice").unwrap();
    let opts = Options::default().with_dialect(Dialect::Sqlite);
    for t in ["orders", "events", "accounts", "products"] {
        let out = policy
            .rewrite(&alice, &format!("SELECT * FROM {t}"), &opts)
            .unwrap();
        let rows = common::sqlite_rows(&db, &out.sql).unwrap();
        assert!(!rows.is_empty(), "alice sees no {t}");
        assert_eq!(common::leaked(&rows), None, "{t}: {}", out.sql);
    }
}
