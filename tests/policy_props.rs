//! Property tests over generated POLICIES and generated queries (see
//! `tests/policy_gen/mod.rs`): for every (policy, user, query) the rewrite
//! never panics, and either refuses or returns SQL that (a) parses again,
//! (b) `Policy::recheck` accepts, (c) reads no protected table outside a
//! sandbox subquery equal to the one the policy defines (a check of this
//! test's own), and (d) on SQLite returns exactly the rows the same query
//! returns over per-user views built from the policy. Writes, locks and
//! session changes must be refused.
//!
//! `PROPTEST_CASES` raises the case count (default 600).

mod policy_gen;

use policy_gen::{load, query, Choices, Spec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn open(name: &str) -> Connection {
    Connection::open_with_flags(
        format!("file:{name}?mode=memory&cache=shared"),
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .expect("shared in-memory SQLite")
}

/// The application's connection (tables) and the oracle's (TEMP views of
/// the same names that shadow them) on one fresh in-memory database.
fn databases(spec: &Spec) -> (Connection, Connection) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "policy_props_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let app = open(&name);
    for s in spec.data() {
        app.execute_batch(&s).unwrap_or_else(|e| panic!("{e}: {s}"));
    }
    let oracle = open(&name);
    for (view, select) in spec.oracle_views() {
        oracle
            .execute_batch(&format!("CREATE TEMP VIEW {view} AS {select}"))
            .unwrap_or_else(|e| panic!("view {view}: {e}\n{select}"));
    }
    (app, oracle)
}

/// The rows, sorted, every cell as text (reals rounded).
fn rows(c: &Connection, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let mut stmt = c.prepare(sql).map_err(|e| e.to_string())?;
    let n = stmt.column_count();
    let mut out = stmt
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    r.get_ref(i).map(|v| match v {
                        ValueRef::Null => "NULL".to_string(),
                        ValueRef::Integer(i) => i.to_string(),
                        ValueRef::Real(f) => format!("{f:.6e}"),
                        ValueRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
                        ValueRef::Blob(b) => format!("{b:?}"),
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| e.to_string())?;
    out.sort();
    Ok(out)
}

#[derive(Debug, Default)]
struct Stats {
    policies: usize,
    queries: usize,
    refused: usize,
    writes_refused: usize,
    hidden_refused: usize,
    equal: usize,
    both_failed: usize,
    app_failed: usize,
    ambiguous: usize,
    rows: usize,
}

/// One generated policy and several queries against it.
fn run_case(
    policy_choices: &[u16],
    queries: &[Vec<u16>],
    stats: &mut Stats,
) -> Result<(), TestCaseError> {
    let spec = Spec::generate(&mut Choices::new(policy_choices));
    let (policy, user) = load(&spec);
    let (app, oracle) = databases(&spec);
    stats.policies += 1;
    // Every hidden column, named plainly, is refused.
    for t in &spec.tables {
        let policy_gen::Grant::Custom(q) = &t.access else {
            continue;
        };
        for (i, c) in t.cols.iter().enumerate() {
            if q.visible.contains(&i) {
                continue;
            }
            let sql = format!(
                "SELECT x.{} FROM {} AS x",
                policy_gen::qi(&c.name),
                policy_gen::qi(&t.name)
            );
            if let Ok(out) = policy.rewrite(&user, &sql, &policy_gen::sqlite_opts()) {
                return Err(TestCaseError::fail(format!(
                    "hidden column rewritten: {sql}\n  output: {}\n  policy:\n{}",
                    out.sql,
                    spec.yaml(false)
                )));
            }
            stats.hidden_refused += 1;
        }
    }
    for q in queries {
        let q = query(&spec, q);
        let sql = q.app();
        stats.queries += 1;
        let context = || format!("\n  input: {sql}\n  policy:\n{}", spec.yaml(false));
        let out = policy_gen::check_static(&spec, &policy, &user, &sql)
            .map_err(|e| TestCaseError::fail(format!("{e}{}", context())))?;
        let Some(out) = out else {
            stats.refused += 1;
            if q.must_refuse {
                stats.writes_refused += 1;
            }
            continue;
        };
        if q.must_refuse {
            return Err(TestCaseError::fail(format!(
                "a write/lock/session statement was rewritten: {out}{}",
                context()
            )));
        }
        if q.ambiguous {
            // Checked above without the oracle; see `GenQuery::ambiguous`.
            stats.ambiguous += 1;
            continue;
        }
        match (rows(&app, &out), rows(&oracle, &q.oracle())) {
            (Ok(a), Ok(o)) if a == o => {
                stats.equal += 1;
                stats.rows += a.len();
            }
            (Ok(a), Ok(o)) => {
                return Err(TestCaseError::fail(format!(
                    "rows differ from the per-user views\n  sqlsandbox ({} rows): {:?}\n  oracle ({} rows): {:?}\n  output: {out}{}",
                    a.len(),
                    a.iter().take(8).collect::<Vec<_>>(),
                    o.len(),
                    o.iter().take(8).collect::<Vec<_>>(),
                    context()
                )))
            }
            // A hidden column: the view lacks it, the output must too.
            (Ok(a), Err(e)) if e.contains("no such column") => {
                return Err(TestCaseError::fail(format!(
                    "sqlsandbox's output ran ({} rows) where the oracle has no such column ({e}): a hidden column read?\n  output: {out}{}",
                    a.len(),
                    context()
                )))
            }
            (Ok(a), Err(e)) => {
                return Err(TestCaseError::fail(format!(
                    "sqlsandbox's output ran ({} rows) where the oracle fails: {e}\n  output: {out}{}",
                    a.len(),
                    context()
                )))
            }
            (Err(_), Ok(_)) => stats.app_failed += 1,
            (Err(_), Err(_)) => stats.both_failed += 1,
        }
    }
    Ok(())
}

#[test]
fn generated_policies_and_queries_keep_the_invariant() {
    let mut runner = TestRunner::new(Config {
        cases: cases(600),
        failure_persistence: None,
        ..Config::default()
    });
    let stats = std::cell::RefCell::new(Stats::default());
    let strategy = (
        proptest::collection::vec(any::<u16>(), 0..96),
        proptest::collection::vec(proptest::collection::vec(any::<u16>(), 0..64), 1..6),
    );
    let result = runner.run(&strategy, |(p, qs)| {
        run_case(&p, &qs, &mut stats.borrow_mut())
    });
    let stats = stats.into_inner();
    eprintln!("policy props: {stats:?}");
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        stats.equal > stats.queries / 10,
        "too few queries ran: {stats:?}"
    );
    assert!(stats.rows > 0, "{stats:?}");
}

/// The oracle can fail: reading every protected table unfiltered through
/// the application's connection differs from the views for some user.
#[test]
fn the_oracle_sees_less_than_the_tables() {
    let mut differed = 0;
    for seed in 0..200u16 {
        let choices: Vec<u16> = (0..48)
            .map(|i| seed.wrapping_mul(7919).wrapping_add(i * 31))
            .collect();
        let spec = Spec::generate(&mut Choices::new(&choices));
        let (app, oracle) = databases(&spec);
        for (i, t) in spec.tables.iter().enumerate() {
            if !spec.protected(i) {
                continue;
            }
            let sql = format!("SELECT * FROM {}", policy_gen::qi(&t.name));
            if rows(&app, &sql).unwrap() != rows(&oracle, &sql).unwrap() {
                differed += 1;
            }
        }
    }
    assert!(differed > 50, "only {differed} protected tables differ");
}

/// The fuzz target `policy`'s seeds, replayed through the same function
/// (`cargo fuzz` needs nightly; this runs everywhere). The seeds hold
/// multibyte identifiers and statements that write, lock or change the
/// session: some must be rewritten, the writes refused.
#[test]
fn fuzz_corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/policy");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("fuzz/corpus/policy")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut rewritten = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let sql = String::from_utf8_lossy(&data);
        let was = policy_gen::fuzz_one(&data);
        let write = [
            "INSERT", "UPDATE", "DELETE", "SET ", "COPY", "CALL", "INTO", "FOR ", "PRAGMA",
            "ATTACH", "DROP", "CREATE",
        ]
        .iter()
        .any(|w| sql.contains(w));
        assert!(!(was && write), "{}: a write was rewritten", f.display());
        rewritten += usize::from(was);
    }
    eprintln!("fuzz corpus: {} seeds, {rewritten} rewritten", files.len());
    assert!(
        files.len() >= 40 && rewritten >= 10,
        "{rewritten} of {}",
        files.len()
    );
}

/// The independent check (c) can fail: it finds an unsandboxed read, a
/// sandbox with another user's value, a CTE body reading the table of its
/// own name; it passes the expected sandbox and CTE references.
#[test]
fn the_outside_check_finds_unsandboxed_reads() {
    use sqlparser::dialect::SQLiteDialect;
    use sqlparser::parser::Parser;
    // No decisions: one table `orders`, basic sandbox tenant_id = 1.
    let spec = Spec::generate(&mut Choices::new(&[]));
    assert_eq!(spec.tables[0].name, "orders");
    let check = |sql: &str| {
        let stmt = Parser::parse_sql(&SQLiteDialect {}, sql).unwrap().remove(0);
        policy_gen::check_outside(&spec, &stmt)
    };
    let sandbox = "(SELECT * FROM main.orders WHERE tenant_id = 1 LIMIT -1)";
    assert!(check(&format!("SELECT * FROM {sandbox} AS orders")).is_ok());
    assert!(check(&format!(
        "WITH orders AS (SELECT * FROM {sandbox} AS s) SELECT * FROM orders"
    ))
    .is_ok());
    assert!(check(&format!("WITH RECURSIVE orders AS (SELECT * FROM {sandbox} AS s UNION SELECT * FROM orders) SELECT * FROM orders")).is_ok());
    let cte_sandbox = format!("WITH orders AS {sandbox} SELECT * FROM orders");
    for bad in [
        "SELECT * FROM t, main.orders",
        "SELECT * FROM main.orders",
        "SELECT * FROM ORDERS",
        "SELECT * FROM (SELECT * FROM main.orders WHERE tenant_id = 2 LIMIT -1) AS orders",
        "SELECT (SELECT count(*) FROM \"orders\") FROM t",
        "WITH orders AS (SELECT * FROM orders) SELECT * FROM orders",
        // A sandbox's text is recognised as a derived table only.
        cte_sandbox.as_str(),
        "WITH a AS (SELECT 1), b AS (SELECT * FROM main.orders) SELECT * FROM a",
        "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM main.orders)",
    ] {
        assert!(check(bad).is_err(), "not found: {bad}");
    }
}

/// Regression (found by these property tests): with `Options::dialect`
/// overriding the database's dialect, a custom sandbox's saved question
/// keeps its identifiers' quote style. A `"region"` written for PostgreSQL
/// becomes, in MySQL output, the string `'region'`, so the sandbox filter
/// `"region" = 'region'` is true for every row of a user whose attribute
/// is the column name. Now an override always has its output parsed again
/// in the override dialect and compared with the tree: this is refused.
#[test]
fn dialect_override_keeps_no_question_quotes() {
    let policy = sqlsandbox::Policy::from_yaml(
        r#"
version: 1
databases:
  db:
    dialect: postgres
    tables:
      public.events: {columns: {id: integer, region: text}}
questions:
  mine: {database: db, sql: 'SELECT id, region FROM events WHERE "region" = {{region}}'}
groups:
  g1:
    data: {db: {public: {events: {sandbox: {question: mine, parameters: {region: region}}}}}}
    native: {db: true}
users:
  u: {groups: [g1], attributes: {region: region}}
"#,
        "override.yaml",
    )
    .unwrap();
    let u = sqlsandbox::Principal::from_user(&policy, "u").unwrap();
    let opts = sqlsandbox::Options::default().with_dialect(sqlsandbox::Dialect::Mysql);
    if let Ok(out) = policy.rewrite(&u, "SELECT * FROM events", &opts) {
        assert!(
            !out.sql.contains("\"region\""),
            "MySQL reads \"region\" as a string: {}",
            out.sql
        );
        policy.recheck(&u, &out.sql, &opts).unwrap();
    }
}

/// Regression (found by these property tests): the type of a saved question's
/// output column `a.x` is looked up by name in every declared table of the
/// FROM clause, ignoring the qualifier, so joining a table with a
/// same-named column of another type refuses a valid policy ("returns `x`
/// as date, but `main.t.x` is integer"). Fails closed, but wrongly.
#[test]
fn question_column_type_follows_the_qualifier() {
    let yaml = r#"
version: 1
databases:
  db:
    dialect: sqlite
    default_schema: main
    tables:
      main.orders: {columns: {tenant_id: integer, x: integer}}
      main.other: {columns: {tenant_id: integer, x: date}}
questions:
  q: {database: db, sql: "WITH base AS (SELECT * FROM orders WHERE tenant_id = {{tenant}}) SELECT a.x FROM base AS a JOIN other AS j ON j.tenant_id = a.tenant_id"}
groups:
  g1:
    data: {db: {main: {orders: {sandbox: {question: q, parameters: {tenant: tenant}}}}}}
"#;
    // `a` is the CTE `base` over `orders`: `a.x` is `orders.x` (integer),
    // never `other.x` (date).
    sqlsandbox::Policy::from_yaml(yaml, "types.yaml").unwrap();
    // Declared as a date, it contradicts the column it reads.
    let declared = yaml.replace(
        "q: {database: db, sql:",
        "q: {database: db, columns: {x: date}, sql:",
    );
    assert!(sqlsandbox::Policy::from_yaml(&declared, "types.yaml").is_err());
}
