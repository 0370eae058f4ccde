//! `sqlsandbox test`: the binary run on the bundled policy tests
//! (`policies/tests/`), on a deliberately failing file (exit 1, the JUnit
//! report holds the failures), on broken files (exit 2), with `--update` on
//! a temporary copy, and on `examples/policy-ci`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sqlsandbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sqlsandbox"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run sqlsandbox")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh temporary directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sqlsandbox_policytest_{}_{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn bundled_policy_tests_pass() {
    let junit = temp_dir("bundled").join("junit.xml");
    let out = sqlsandbox(&["test", "policies/tests", "--junit", junit.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    // Every bundled policy has a test file, each with the three kinds of
    // expectation.
    for policy in ["saas", "departments", "marketplace", "routed", "rules"] {
        let file = root().join(format!("policies/tests/{policy}.test.yaml"));
        let src = std::fs::read_to_string(&file).expect("test file");
        for kind in ["refused:", "sql: |", "rows:"] {
            assert!(
                src.contains(kind),
                "{policy}.test.yaml has no `{kind}` case"
            );
        }
        assert!(
            text.contains(&format!("PASS policies/tests/{policy}.test.yaml:")),
            "{text}"
        );
    }
    assert!(!text.contains("FAIL"), "{text}");
    let last = text.lines().last().unwrap_or("");
    assert!(last.ends_with("passed, 0 failed"), "{last}");
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 40, "{last}");
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(
        xml.contains(&format!("tests=\"{passed}\" failures=\"0\"")),
        "{xml}"
    );
    assert!(!xml.contains("<failure"), "{xml}");
}

const FAILING: &str = r#"# Deliberately failing cases.
policy: ROOT/policies/saas.yaml
fixture: ROOT/policies/tests/saas.sql
cases:
  - name: passes
    user: alice
    sql: SELECT id FROM orders
    expect:
      rows: [[10], [11]]
  - name: wrong refusal code
    user: alice
    sql: SELECT email FROM accounts
    expect: {refused: SB201}
  - name: refusal expected, SQL produced
    user: carol
    sql: SELECT email FROM accounts
    expect: {refused: SB303}
  - name: rows of another tenant expected
    user: alice
    sql: SELECT id FROM orders
    expect:
      rows: [[12]]
  - name: order matters when ordered
    user: alice
    sql: SELECT id FROM orders ORDER BY id DESC
    expect:
      rows: [[10], [11]]
      ordered: true
  - name: stale SQL
    user: alice
    sql: SELECT count(*) FROM orders
    expect:
      sql: |
        SELECT count(*) FROM public.orders
  - name: unexpected error
    user: dave
    sql: SELECT count(*) FROM orders
    expect:
      rows: [[0]]
"#;

/// `FAILING` with absolute paths to the policy and the fixture.
fn failing_text() -> String {
    FAILING.replace("ROOT", root().to_str().expect("UTF-8 path"))
}

/// Writes `FAILING` into a fresh temporary directory.
fn failing_file(name: &str) -> PathBuf {
    let file = temp_dir(name).join("failing.test.yaml");
    std::fs::write(&file, failing_text()).expect("write");
    file
}

#[test]
fn failing_cases_exit_1_and_reach_junit() {
    let file = failing_file("failing");
    let junit = file.with_file_name("junit.xml");
    let out = sqlsandbox(&[
        "test",
        file.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("PASS "), "{text}");
    assert!(text.contains("failing.test.yaml:5: passes"), "{text}");
    assert!(text.ends_with("1 passed, 6 failed\n"), "{text}");
    assert!(
        text.contains("expected refusal SB201, got error[SB303]"),
        "{text}"
    );
    assert!(text.contains("expected refusal SB303, got SQL:"), "{text}");
    assert!(text.contains("missing row\n        - [12]"), "{text}");
    assert!(text.contains("unexpected row\n        + [10]"), "{text}");
    assert!(
        text.contains("row 1 differs\n        - [10]\n        + [11]"),
        "{text}"
    );
    assert!(
        text.contains("    - SELECT count(*) FROM public.orders\n    actual:\n      + SELECT count(*) FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS orders"),
        "{text}"
    );
    assert!(text.contains("unexpected error[SB301]"), "{text}");
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains("tests=\"7\" failures=\"6\""), "{xml}");
    assert_eq!(xml.matches("<failure message=").count(), 6, "{xml}");
    assert!(
        xml.contains("<testcase name=\"passes\" classname=\"")
            && xml.contains("<failure message=\"expected refusal SB201, got error[SB303]"),
        "{xml}"
    );
    assert!(
        xml.contains("<testcase name=\"rows of another tenant expected\""),
        "{xml}"
    );
}

#[test]
fn update_rewrites_sql_expectations_in_place() {
    let file = failing_file("update");
    let out = sqlsandbox(&["test", "--update", file.to_str().unwrap()]);
    let text = stdout(&out);
    // The stale SQL is updated; the other failures remain.
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("UPDATED "), "{text}");
    assert!(text.ends_with("1 passed, 5 failed, 1 updated\n"), "{text}");
    let updated = std::fs::read_to_string(&file).expect("read");
    let want = failing_text().replace(
        "        SELECT count(*) FROM public.orders\n",
        "        SELECT count(*) FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS orders\n",
    );
    assert_ne!(want, failing_text());
    assert_eq!(updated, want, "only the expectation changes; comments stay");
    // Now that case passes.
    let again = sqlsandbox(&["test", file.to_str().unwrap()]);
    assert!(
        stdout(&again).ends_with("2 passed, 5 failed\n"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn broken_files_exit_2() {
    let dir = temp_dir("broken");
    let cases: &[(&str, &str, &str)] = &[
        ("unknown_key", "cases:\n  - user: a\n    sql: SELECT 1\n    expct: {refused: SB201}\n", "unknown field `expct`"),
        ("two_expectations", "cases:\n  - user: alice\n    sql: SELECT 1\n    expect: {refused: SB201, rows: []}\n", "exactly one expectation"),
        ("no_principal", "cases:\n  - sql: SELECT 1\n    expect: {refused: SB201}\n", "exactly one principal"),
        ("bad_code", "cases:\n  - user: alice\n    sql: SELECT 1\n    expect: {refused: denied}\n", "error code such as SB201"),
        ("rows_without_fixture", "cases:\n  - user: alice\n    sql: SELECT 1\n    expect: {rows: [[1]]}\n", "`fixture`"),
        ("not_yaml", "cases: [\n", "not valid YAML"),
        ("duplicate_key", "cases:\n  - user: alice\n    user: bob\n    sql: SELECT 1\n    expect: {refused: SB201}\n", "duplicate"),
    ];
    let deep = format!(
        "cases:\n  - user: alice\n    sql: SELECT 1\n    expect: {{refused: SB201}}\n    x: {}\n",
        "[".repeat(150)
    );
    let too_deep = [("too_deep", deep.as_str(), "nests deeper")];
    let policy = root().join("policies/saas.yaml");
    for (name, text, message) in cases.iter().chain(&too_deep) {
        let file = dir.join(format!("{name}.test.yaml"));
        std::fs::write(&file, text).unwrap();
        let out = sqlsandbox(&[
            "test",
            "--policy",
            policy.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}{}", stdout(&out));
        assert!(err.contains("error[SB004]"), "{name}: {err}");
        assert!(err.contains(message), "{name}: {err}");
    }
    // No policy at all.
    let file = dir.join("no_policy.test.yaml");
    std::fs::write(
        &file,
        "cases:\n  - user: alice\n    sql: SELECT 1\n    expect: {refused: SB201}\n",
    )
    .unwrap();
    let out = sqlsandbox(&["test", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no policy"), "{}", stderr(&out));
    // A directory without test files.
    let empty = temp_dir("empty");
    let out = sqlsandbox(&["test", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no test files"), "{}", stderr(&out));
}

#[test]
fn policy_ci_example_checks_and_tests() {
    let dir = Path::new("examples/policy-ci");
    let check = sqlsandbox(&[
        "check",
        "--policy",
        dir.join("policy.yaml").to_str().unwrap(),
    ]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
    let out = sqlsandbox(&["test", dir.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("PASS examples/policy-ci/tests/"), "{text}");
    assert!(text.ends_with(" passed, 0 failed\n"), "{text}");
}

#[test]
fn sqlite_file_fixture_builder_file_and_anonymous() {
    let dir = temp_dir("sqlite_file");
    // A database file as the fixture (opened read-only).
    let db = dir.join("helpdesk.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT);
         CREATE TABLE tickets (id INTEGER PRIMARY KEY, customer_id INTEGER, subject TEXT, status TEXT);
         INSERT INTO tickets VALUES (1, 1, 'a', 'open'), (2, 1, 'b', 'open'), (3, 2, 'c', 'open');",
    )
    .unwrap();
    drop(conn);
    // A builder question in a file next to the test file.
    std::fs::write(
        dir.join("count.yaml"),
        "query:\n  source-table: tickets\n  aggregation: [[count]]\n",
    )
    .unwrap();
    let policy = root().join("examples/policy-ci/policy.yaml");
    let file = dir.join("file.test.yaml");
    std::fs::write(
        &file,
        format!(
            "policy: {}\nfixture: helpdesk.sqlite\ncases:\n  - name: builder file\n    user: ana\n    builder: count.yaml\n    expect:\n      rows: [[2]]\n  - name: wrong count\n    user: ben\n    builder: count.yaml\n    expect:\n      rows: [[2]]\n  - name: anonymous\n    anonymous: true\n    builder: count.yaml\n    expect: {{refused: SB207}}\n",
            policy.display()
        ),
    )
    .unwrap();
    let out = sqlsandbox(&["test", file.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("PASS "), "{text}");
    assert!(text.contains(": builder file\n"), "{text}");
    assert!(
        text.contains("FAIL ") && text.contains(": wrong count\n"),
        "{text}"
    );
    assert!(
        text.contains("missing row\n        - [2]\n    unexpected row\n        + [1]"),
        "{text}"
    );
    assert!(text.ends_with("2 passed, 1 failed\n"), "{text}");
    // The fixture is opened read-only: it is unchanged.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
}

/// Drops the test's PostgreSQL schema, also when the test fails.
#[cfg(feature = "live")]
struct DropSchema {
    url: String,
    schema: String,
}

#[cfg(feature = "live")]
impl Drop for DropSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

/// `--database-url`: `rows` cases run on PostgreSQL, rewritten for its
/// dialect (when `SQLSANDBOX_PG_URL` is set; skipped otherwise).
#[cfg(feature = "live")]
#[test]
#[ignore = "needs SQLSANDBOX_PG_URL"]
fn live_postgres_rows() {
    let Ok(url) = std::env::var("SQLSANDBOX_PG_URL") else {
        panic!("set SQLSANDBOX_PG_URL: this server test is #[ignore]d by default and runs with --include-ignored");
    };
    let schema = format!("sqlsandbox_ptest_{}", std::process::id());
    let _guard = DropSchema {
        url: url.clone(),
        schema: schema.clone(),
    };
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE TABLE {schema}.tickets (id integer, customer_id integer, subject text, urgent boolean, cost numeric(8,2));
         INSERT INTO {schema}.tickets VALUES (1, 1, 'a', true, 1.50), (2, 1, 'b', false, NULL), (3, 2, 'c', true, 7);"
    ))
    .expect("setup");
    let dir = temp_dir("live_pg");
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "version: 1\ndatabases:\n  db:\n    dialect: postgres\n    default_schema: {schema}\n    tables:\n      {schema}.tickets: {{columns: {{id: integer, customer_id: integer, subject: text, urgent: boolean, cost: decimal}}}}\ngroups:\n  customers:\n    data: {{db: {{{schema}: {{tickets: {{sandbox: {{column: customer_id, attribute: customer_id}}}}}}}}}}\n    native: {{db: true}}\n  agents:\n    data: {{db: unrestricted}}\n    native: {{db: true}}\nusers:\n  ana: {{groups: [customers], attributes: {{customer_id: 1}}}}\n  zoe: {{groups: [agents]}}\n"
        ),
    )
    .unwrap();
    let file = dir.join("live.test.yaml");
    std::fs::write(
        &file,
        "policy: policy.yaml\ncases:\n  - name: ana's tickets\n    user: ana\n    sql: SELECT id, subject, urgent, cost FROM tickets ORDER BY id\n    expect:\n      rows: [[1, a, true, 1.5], [2, b, false, null]]\n      ordered: true\n  - name: agents count all\n    user: zoe\n    sql: SELECT count(*) FROM tickets\n    expect:\n      rows: [[3]]\n  - name: wrong on purpose\n    user: ana\n    sql: SELECT id FROM tickets\n    expect:\n      rows: [[3]]\n",
    )
    .unwrap();
    let out = sqlsandbox(&["test", "--database-url", &url, file.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.ends_with("2 passed, 1 failed\n"), "{text}");
    // Rewritten for PostgreSQL, not SQLite: the schema is the policy's.
    assert!(
        text.contains(&format!(
            "sql: SELECT id FROM (SELECT * FROM {schema}.tickets WHERE customer_id = 1) AS tickets"
        )),
        "{text}"
    );
    assert!(text.contains("missing row\n        - [3]"), "{text}");
    // Without a fixture and without --database-url, the file cannot run.
    let out = sqlsandbox(&["test", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("no --database-url"),
        "{}",
        stderr(&out)
    );
}

/// `--database-url` on MariaDB/MySQL (when `SQLSANDBOX_MYSQL_URL` is set).
#[cfg(feature = "live")]
#[test]
#[ignore = "needs SQLSANDBOX_MYSQL_URL"]
fn live_mysql_rows() {
    use mysql::prelude::Queryable;
    let Ok(url) = std::env::var("SQLSANDBOX_MYSQL_URL") else {
        panic!("set SQLSANDBOX_MYSQL_URL: this server test is #[ignore]d by default and runs with --include-ignored");
    };
    struct DropDb(mysql::Pool, String);
    impl Drop for DropDb {
        fn drop(&mut self) {
            if let Ok(mut c) = self.0.get_conn() {
                let _ = c.query_drop(format!("DROP DATABASE IF EXISTS {}", self.1));
            }
        }
    }
    let db = format!("sqlsandbox_ptest_{}", std::process::id());
    let pool = mysql::Pool::new(mysql::Opts::from_url(&url).expect("url")).expect("pool");
    let guard = DropDb(pool.clone(), db.clone());
    let mut c = guard.0.get_conn().expect("connect");
    for stmt in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
        format!("CREATE TABLE {db}.tickets (id integer, customer_id integer, subject text, urgent boolean, cost decimal(8,2))"),
        format!("INSERT INTO {db}.tickets VALUES (1, 1, 'a', true, 1.50), (2, 1, 'b', false, NULL), (3, 2, 'c', true, 7)"),
    ] {
        c.query_drop(stmt).expect("setup");
    }
    let dir = temp_dir("live_mysql");
    std::fs::write(
        dir.join("policy.yaml"),
        format!(
            "version: 1\ndatabases:\n  db:\n    dialect: mysql\n    default_schema: {db}\n    tables:\n      {db}.tickets: {{columns: {{id: integer, customer_id: integer, subject: text, urgent: boolean, cost: decimal}}}}\ngroups:\n  customers:\n    data: {{db: {{{db}: {{tickets: {{sandbox: {{column: customer_id, attribute: customer_id}}}}}}}}}}\n    native: {{db: true}}\nusers:\n  ana: {{groups: [customers], attributes: {{customer_id: 1}}}}\n"
        ),
    )
    .unwrap();
    let file = dir.join("live.test.yaml");
    std::fs::write(
        &file,
        "policy: policy.yaml\ncases:\n  - name: ana's tickets\n    user: ana\n    sql: SELECT id, subject, urgent, cost FROM tickets ORDER BY id\n    expect:\n      rows: [[1, a, true, 1.5], [2, b, false, null]]\n      ordered: true\n  - name: wrong on purpose\n    user: ana\n    sql: SELECT id FROM tickets\n    expect:\n      rows: [[3]]\n",
    )
    .unwrap();
    let out = sqlsandbox(&["test", "--database-url", &url, file.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.ends_with("1 passed, 1 failed\n"), "{text}");
    assert!(
        text.contains(&format!("FROM {db}.tickets WHERE customer_id = 1")),
        "{text}"
    );
}
