//! Query-builder questions compiled for SQLite and executed on an embedded
//! multi-tenant database: for every user of the example policy, the rows
//! must equal a ground truth written by hand against per-user views (the
//! tenant filter applied directly, not by sqlsandbox) or, where calendar
//! logic is under test, literal expected rows.
//!
//! The policy, database and questions are in `common/builder_cases.rs`,
//! shared with `builder_engines` (the same questions on DuckDB, ClickHouse
//! and Spark SQL).

#[path = "common/builder_cases.rs"]
mod builder_cases;

use builder_cases::{database, policy, user, Truth, CASES, USERS};
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use sqlsandbox::{Dialect, Options, Policy, Principal};

/// (Re)creates the ground-truth views for one user: each table filtered by
/// hand exactly as the policy says, without sqlsandbox (`v_accounts` lists
/// the columns the custom sandbox keeps, in the order the policy declares
/// them, as the builder's default field list does).
fn views(conn: &Connection, scope: Option<(i64, &str)>) {
    let (accounts, orders, events, sessions) = match scope {
        Some((t, r)) => (
            format!("SELECT id, plan, tenant_id, created_at FROM accounts WHERE tenant_id = {t}"),
            format!("SELECT * FROM orders WHERE tenant_id = {t}"),
            format!("SELECT * FROM events WHERE tenant_id = {t} AND region = '{r}'"),
            format!("SELECT * FROM sessions WHERE tenant_id = {t}"),
        ),
        None => (
            "SELECT id, email, plan, tenant_id, created_at FROM accounts".to_string(),
            "SELECT * FROM orders".to_string(),
            "SELECT * FROM events".to_string(),
            "SELECT * FROM sessions".to_string(),
        ),
    };
    conn.execute_batch(&format!(
        "DROP VIEW IF EXISTS v_accounts; DROP VIEW IF EXISTS v_orders;
         DROP VIEW IF EXISTS v_events; DROP VIEW IF EXISTS v_sessions;
         CREATE TEMP VIEW v_accounts AS {accounts};
         CREATE TEMP VIEW v_orders AS {orders};
         CREATE TEMP VIEW v_events AS {events};
         CREATE TEMP VIEW v_sessions AS {sessions};"
    ))
    .expect("views");
}

// ----- running ---------------------------------------------------------------

/// A value as compared: numbers (integer or real) rounded to 6 decimals,
/// so that `25` and `25.0`, or two float sums in another order, agree.
fn render(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => format!("{:.6}", i as f64),
        ValueRef::Real(f) => format!("{f:.6}"),
        ValueRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => format!("{b:?}"),
    }
}

struct Output {
    columns: Vec<String>,
    rows: Vec<String>,
}

fn run(conn: &Connection, sql: &str) -> Output {
    let mut stmt = conn
        .prepare(sql)
        .unwrap_or_else(|e| panic!("SQLite rejected\n  {sql}\n  {e}"));
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let n = columns.len();
    let rows = stmt
        .query_map([], |row| {
            (0..n)
                .map(|i| row.get_ref(i).map(render))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(|v| v.join(" | "))
        })
        .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
        .unwrap_or_else(|e| panic!("SQLite failed on\n  {sql}\n  {e}"));
    Output { columns, rows }
}

fn compile(policy: &Policy, who: &Principal, question: &str) -> sqlsandbox::Result<String> {
    let q = sqlsandbox::builder::parse_question_yaml(question)?;
    let opts = Options::default().with_dialect(Dialect::Sqlite);
    policy.rewrite_builder(who, &q, &opts).map(|r| r.sql)
}

#[test]
fn builder_questions_return_each_users_rows() {
    let conn = database();
    let policy = policy();
    for (name, scope) in USERS {
        views(&conn, *scope);
        let who = user(&policy, name);
        for case in CASES {
            let sql = compile(&policy, &who, case.question)
                .unwrap_or_else(|e| panic!("{}: {name}: error[{}]: {e}", case.name, e.code()));
            let got = run(&conn, &sql);
            let mut want: Vec<String> = match &case.truth {
                Truth::Sql(truth) => run(&conn, truth).rows,
                Truth::Rows(per_user) => match per_user.iter().find(|(u, _)| u == name) {
                    Some((_, rows)) => rows.iter().map(|r| normalise_literal_row(r)).collect(),
                    None if scope.is_none() => continue,
                    None => Vec::new(),
                },
            };
            let mut have = got.rows.clone();
            if !case.ordered {
                want.sort();
                have.sort();
            }
            assert_eq!(
                have, want,
                "{}: {name}: rows differ\n  question: {}\n  sql: {sql}",
                case.name, case.question
            );
        }
    }
}

/// Literal rows are written with plain numbers; render them as `render` does.
fn normalise_literal_row(row: &str) -> String {
    row.split(" | ")
        .map(|cell| match cell.parse::<f64>() {
            Ok(f) => format!("{f:.6}"),
            Err(_) => cell.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
fn sandboxes_hold_for_every_question() {
    // No row of another tenant ever comes back, whatever the question.
    let conn = database();
    let policy = policy();
    for (name, scope) in USERS {
        let Some((tenant, _)) = scope else { continue };
        let who = user(&policy, name);
        for case in CASES {
            let sql = compile(&policy, &who, case.question).expect("compiles");
            let out = run(&conn, &sql);
            for (i, col) in out.columns.iter().enumerate() {
                let c = col.to_lowercase();
                let is_row_id = (c == "id"
                    || c.ends_with("__id")
                    || c == "tenant_id"
                    || c.ends_with("__tenant_id"))
                    && !c.contains("product");
                if !is_row_id {
                    continue;
                }
                for row in &out.rows {
                    let cell = row.split(" | ").nth(i).unwrap_or("NULL");
                    if let Ok(v) = cell.parse::<f64>() {
                        let v = v as i64;
                        let t = if c.ends_with("tenant_id") {
                            v
                        } else {
                            v / 1000
                        };
                        assert!(
                            v < 1000 && !c.ends_with("tenant_id") || t == *tenant,
                            "{}: {name} saw {col} = {v} of tenant {t}\n  sql: {sql}",
                            case.name
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn output_column_names() {
    let policy = policy();
    let conn = database();
    let who = user(&policy, "alice");
    let sql = compile(
        &policy,
        &who,
        r#"query:
  source-table: orders
  joins: [{source-table: products, alias: p, condition: ["=", [field, product_id], [field, p.id]], fields: [[field, p.name]]}]
  expressions: {twice: ["*", [field, total], 2]}
  fields: [[field, id], [expression, twice], [field, account_id, {fk: accounts.plan}]]"#,
    )
    .expect("compiles");
    let out = run(&conn, &sql);
    assert_eq!(
        out.columns,
        ["id", "twice", "accounts__via__account_id__plan", "p__name"]
    );
}

#[test]
fn builder_needs_no_native_permission_but_data_access() {
    let policy = policy();
    let vic = user(&policy, "vic");
    // vic's group has no native SQL permission ...
    let native = policy.rewrite(&vic, "SELECT count(*) FROM orders", &Options::default());
    assert_eq!(native.err().map(|e| e.code()), Some("SB202"));
    // ... but sends builder questions, sandboxed to tenant 99.
    let conn = database();
    let sql = compile(
        &policy,
        &vic,
        "query: {source-table: orders, aggregation: [[count]]}",
    )
    .expect("builder question");
    assert_eq!(run(&conn, &sql).rows, ["3.000000"]);
    // A hidden column stays hidden.
    let hidden = compile(
        &policy,
        &vic,
        "query: {source-table: accounts, fields: [[field, email]]}",
    );
    assert_eq!(hidden.err().map(|e| e.code()), Some("SB303"));
}

#[test]
fn refusals_name_the_bad_node() {
    let policy = policy();
    let alice = user(&policy, "alice");
    let err = compile(
        &policy,
        &alice,
        r#"query: {source-table: orders, filter: [and, ["=", [field, status], paid], ["=", [field, nope], 1]]}"#,
    )
    .expect_err("unknown column");
    assert_eq!(err.code(), "SB104");
    assert!(err.to_string().contains("$.query.filter[2][1]"), "{err}");
    let err = compile(
        &policy,
        &alice,
        "query: {source-table: orders, aggregation: [[median, [field, total]]]}",
    )
    .expect_err("SQLite has no median");
    assert_eq!(err.code(), "SB403");
    assert!(err.to_string().contains("SQLite"), "{err}");
}

/// Every node of every question above replaced by junk, in every dialect:
/// the compiler returns a value or an error, never panics, and a bad node
/// is reported with a JSON path.
#[test]
fn malformed_questions_never_panic() {
    use serde_json::{json, Value};
    let policy = policy();
    let who = user(&policy, "alice");
    let junk = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1.5),
        json!(""),
        json!("x"),
        json!([]),
        json!({}),
        json!(["field"]),
        json!(["field", "id", {"fk": 1}]),
        json!([[]]),
        json!(["aggregation", 99]),
    ];
    fn paths(v: &Value, at: Vec<Step>, out: &mut Vec<Vec<Step>>) {
        out.push(at.clone());
        match v {
            Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| {
                let mut p = at.clone();
                p.push(Step::Index(i));
                paths(x, p, out)
            }),
            Value::Object(m) => m.iter().for_each(|(k, x)| {
                let mut p = at.clone();
                p.push(Step::Key(k.clone()));
                paths(x, p, out)
            }),
            _ => {}
        }
    }
    #[derive(Clone)]
    enum Step {
        Index(usize),
        Key(String),
    }
    fn node<'v>(v: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
        let mut cur = v;
        for s in path {
            cur = match s {
                Step::Index(i) => cur.get_mut(*i)?,
                Step::Key(k) => cur.get_mut(k.as_str())?,
            };
        }
        Some(cur)
    }
    let mut runs = 0;
    for case in CASES {
        let base = sqlsandbox::builder::parse_question_yaml(case.question).expect("parses");
        let mut all = Vec::new();
        paths(&base, Vec::new(), &mut all);
        for path in &all {
            for j in &junk {
                let mut q = base.clone();
                if let Some(n) = node(&mut q, path) {
                    *n = j.clone();
                }
                for dialect in [
                    Dialect::Postgres,
                    Dialect::Mysql,
                    Dialect::Sqlite,
                    Dialect::Generic,
                ] {
                    let opts = Options::default().with_dialect(dialect);
                    runs += 1;
                    if let Err(sqlsandbox::Error::Builder { path, .. }) =
                        policy.rewrite_builder(&who, &q, &opts)
                    {
                        assert!(path.starts_with('$'), "{path}");
                    }
                }
            }
        }
    }
    assert!(runs > 10_000, "{runs} mutations");
    // Deep nesting is a limit, not a stack overflow.
    let mut deep = json!(["=", ["field", "status"], "paid"]);
    for _ in 0..500 {
        deep = json!(["not", deep]);
    }
    let q = json!({"query": {"source-table": "orders", "filter": deep}});
    let err = policy
        .rewrite_builder(&who, &q, &Options::default())
        .expect_err("too deep");
    assert_eq!(err.code(), "SB404", "{err}");
}
