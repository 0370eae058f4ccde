//! Query-builder questions executed on DuckDB, ClickHouse (chDB) and Spark
//! SQL (local mode): every question of `builder_exec` × every user of its
//! policy, compiled with `Options::default().with_dialect(<engine>)` and run
//! on the engine loaded with the same data, must return the rows of the same
//! question compiled for SQLite and run on SQLite (whose answers
//! `builder_exec` proves equal to hand-written ground truth).
//!
//! The engines run in Python (`tests/engines/builder_run.py`, one process
//! per engine, one batch of statements in and one JSON file of rows out);
//! the tests are `#[ignore]`d and need `SQLSANDBOX_PYTHON`, a Python with
//! `duckdb`, `chdb` and `pyspark` (tests/engines/requirements.txt; Spark
//! needs Java 17). Run with `--include-ignored` and without the variable,
//! they fail. Each writes a marker `builder-<engine>` with its counts into
//! `$SQLSANDBOX_DIFF_MARKERS` for `.ci/run`.
//!
//! Values are normalised so that equal answers compare equal: numbers to 6
//! decimals, dates and timestamps as `YYYY-MM-DD HH:MM:SS` without a
//! `00:00:00` time (a date truncated to a TIMESTAMP on one engine is a DATE
//! on another), booleans as 1/0, NULL. Rows are compared as multisets
//! unless the question sorts totally; where it sorts on a breakout with
//! NULLs, DuckDB and ClickHouse put them last (`ASC` without NULLS FIRST),
//! SQLite first: such rows are equal if they are once the NULL rows move
//! to the front (counted apart).
//!
//! Where the dialect override refuses a question (ClickHouse and Spark read
//! backslashes in string literals, so text with quotes is refused when
//! SQLite's policy is compiled for them), the question is compiled under a
//! copy of the policy declared in the engine's dialect and default schema
//! (counted apart); the engine holds the tables in both schemas.

mod common;

#[path = "common/builder_cases.rs"]
mod builder_cases;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use builder_cases::{database, policy, user, Case, CASES, USERS};
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde_json::{json, Value};
use sqlsandbox::{Dialect, Options, Policy, Principal};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Engine {
    Duckdb,
    Clickhouse,
    Spark,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Duckdb => "duckdb",
            Engine::Clickhouse => "clickhouse",
            Engine::Spark => "spark",
        }
    }

    /// Whether `ORDER BY x ASC` puts NULLs last (SQLite puts them first).
    fn nulls_last(self) -> bool {
        matches!(self, Engine::Duckdb | Engine::Clickhouse)
    }

    fn dialect(self) -> Dialect {
        match self {
            Engine::Duckdb => Dialect::Duckdb,
            Engine::Clickhouse => Dialect::Clickhouse,
            Engine::Spark => Dialect::Spark,
        }
    }
}

// ----- the data, in each engine's types ---------------------------------------

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    Num,
    Ts,
    Date,
}

use Kind::{Date, Int, Num, Text, Ts};

/// The tables of `builder_cases::SCHEMA` with the types the policy declares.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "accounts",
        &[
            ("id", Int),
            ("email", Text),
            ("plan", Text),
            ("tenant_id", Int),
            ("created_at", Ts),
        ],
    ),
    (
        "orders",
        &[
            ("id", Int),
            ("account_id", Int),
            ("product_id", Int),
            ("total", Num),
            ("tenant_id", Int),
            ("status", Text),
        ],
    ),
    (
        "products",
        &[
            ("id", Int),
            ("name", Text),
            ("category", Text),
            ("price", Num),
        ],
    ),
    (
        "events",
        &[
            ("id", Int),
            ("account_id", Int),
            ("kind", Text),
            ("tenant_id", Int),
            ("region", Text),
            ("at", Ts),
        ],
    ),
    (
        "sessions",
        &[
            ("id", Int),
            ("tenant_id", Int),
            ("started_at", Ts),
            ("day", Date),
        ],
    ),
];

fn column_type(e: Engine, k: Kind) -> &'static str {
    match (e, k) {
        (Engine::Clickhouse, Int) => "Nullable(Int64)",
        (Engine::Clickhouse, Text) => "Nullable(String)",
        (Engine::Clickhouse, Num) => "Nullable(Decimal(10, 2))",
        (Engine::Clickhouse, Ts) => "Nullable(DateTime)",
        (Engine::Clickhouse, Date) => "Nullable(Date)",
        (_, Int) => "BIGINT",
        (Engine::Duckdb, Text) => "VARCHAR",
        (_, Text) => "STRING",
        (_, Num) => "DECIMAL(10, 2)",
        (_, Ts) => "TIMESTAMP",
        (_, Date) => "DATE",
    }
}

fn quote_ident(e: Engine, name: &str) -> String {
    match e {
        Engine::Duckdb => format!("\"{name}\""),
        Engine::Clickhouse | Engine::Spark => format!("`{name}`"),
    }
}

fn literal(e: Engine, k: Kind, v: ValueRef<'_>) -> String {
    let text = |s: &str| match e {
        // Spark's string literals take backslash escapes.
        Engine::Spark | Engine::Clickhouse => {
            format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
        }
        Engine::Duckdb => format!("'{}'", s.replace('\'', "''")),
    };
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Blob(_) => panic!("no blobs in the test data"),
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            match (e, k) {
                (Engine::Clickhouse, _) | (_, Text | Int | Num) => text(&s),
                (_, Ts) => format!("TIMESTAMP {}", text(&s)),
                (_, Date) => format!("DATE {}", text(&s)),
            }
        }
    }
}

/// DDL and inserts that load the engine with exactly the rows of the SQLite
/// database (the sessions are relative to the time SQLite made them).
fn setup(e: Engine, conn: &Connection) -> Vec<String> {
    // The policy's default schema is SQLite's `main`, and the compiled
    // questions name `main.orders`: DuckDB's default schema is `main`
    // already; ClickHouse and Spark get a database of that name.
    let mut out = Vec::new();
    if e != Engine::Duckdb {
        out.push("CREATE DATABASE IF NOT EXISTS main".to_string());
    }
    // The same tables in the engine's default schema, for the questions
    // compiled under `engine_policy`.
    let schemas: &[&str] = if e == Engine::Duckdb {
        &["main"]
    } else {
        &["main", "default"]
    };
    for schema in schemas {
        for (table, cols) in TABLES {
            let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {} FROM {table} ORDER BY id",
                    names.join(", ")
                ))
                .unwrap();
            let rows: Vec<String> = stmt
                .query_map([], |r| {
                    let cells: Vec<String> = cols
                        .iter()
                        .enumerate()
                        .map(|(i, (_, k))| literal(e, *k, r.get_ref(i).unwrap()))
                        .collect();
                    Ok(format!("({})", cells.join(", ")))
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            if e == Engine::Spark {
                // A view over inline rows: no files, no table writes (a view, not
                // a temporary one, so that `main.orders` names it).
                let casts: Vec<String> = cols
                    .iter()
                    .map(|(c, k)| {
                        let c = quote_ident(e, c);
                        format!("CAST({c} AS {}) AS {c}", column_type(e, *k))
                    })
                    .collect();
                let quoted: Vec<String> = names.iter().map(|c| quote_ident(e, c)).collect();
                out.push(format!(
                    "CREATE VIEW {schema}.{table} AS SELECT {} FROM VALUES {} AS t({})",
                    casts.join(", "),
                    rows.join(", "),
                    quoted.join(", ")
                ));
                continue;
            }
            let defs: Vec<String> = cols
                .iter()
                .map(|(c, k)| format!("{} {}", quote_ident(e, c), column_type(e, *k)))
                .collect();
            let tail = if e == Engine::Clickhouse {
                " ENGINE = Memory"
            } else {
                ""
            };
            out.push(format!(
                "CREATE TABLE {schema}.{table} ({}){tail}",
                defs.join(", ")
            ));
            out.push(format!(
                "INSERT INTO {schema}.{table} VALUES {}",
                rows.join(", ")
            ));
        }
    }
    out
}

// ----- values as compared -------------------------------------------------------

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (or with `T`) as `YYYY-MM-DD HH:MM:SS`,
/// and a midnight as the date alone; other text unchanged.
fn normalise_text(s: &str) -> String {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    let is_date = b.len() >= 10
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10);
    if !is_date {
        return s.to_string();
    }
    if b.len() == 10 {
        return s.to_string();
    }
    let is_time = b.len() >= 19
        && (b[10] == b' ' || b[10] == b'T')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (b.len() == 19 || (b[19] == b'.' && b.len() > 20 && digits(20..b.len())));
    if !is_time {
        return s.to_string();
    }
    let fraction = &s[19..];
    let whole = fraction.trim_start_matches('.').bytes().all(|c| c == b'0');
    if &s[11..19] == "00:00:00" && whole {
        return s[..10].to_string();
    }
    let mut out = format!("{} {}", &s[..10], &s[11..19]);
    if !whole {
        out.push_str(fraction.trim_end_matches('0'));
    }
    out
}

fn number(f: f64) -> String {
    let s = format!("{f:.6}");
    if s == "-0.000000" {
        "0.000000".into()
    } else {
        s
    }
}

fn render_sqlite(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => number(i as f64),
        ValueRef::Real(f) => number(f),
        ValueRef::Text(t) => format!("{:?}", normalise_text(&String::from_utf8_lossy(t))),
        ValueRef::Blob(b) => format!("{b:?}"),
    }
}

fn render_json(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => number(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => number(n.as_f64().expect("a number")),
        Value::String(s) => format!("{:?}", normalise_text(s)),
        other => format!("{other}"),
    }
}

fn sqlite_rows(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(sql)
        .unwrap_or_else(|e| panic!("SQLite rejected\n  {sql}\n  {e}"));
    let n = stmt.column_count();
    stmt.query_map([], |row| {
        (0..n)
            .map(|i| row.get_ref(i).map(render_sqlite))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map(|v| v.join(" | "))
    })
    .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
    .unwrap_or_else(|e| panic!("SQLite failed on\n  {sql}\n  {e}"))
}

/// The test policy with the engine's own dialect and default schema (in
/// place of SQLite's `main`), for questions that the dialect override
/// refuses.
fn engine_policy(e: Engine) -> Policy {
    let schema = engine_schema(e);
    let text = builder_cases::POLICY
        .replace("dialect: sqlite", &format!("dialect: {}", e.name()))
        .replace("default_schema: main", &format!("default_schema: {schema}"))
        .replace("      main.", &format!("      {schema}."))
        .replace("        main:\n", &format!("        {schema}:\n"));
    assert!(schema == "main" || !text.contains("main"), "{text}");
    Policy::from_yaml(&text, "builder_engines.yaml").expect("the engine's policy loads")
}

/// The engine's default schema (database).
fn engine_schema(e: Engine) -> &'static str {
    match e {
        Engine::Duckdb => "main",
        Engine::Clickhouse | Engine::Spark => "default",
    }
}

fn compile(
    policy: &Policy,
    who: &Principal,
    case: &Case,
    d: Dialect,
) -> sqlsandbox::Result<String> {
    let q = sqlsandbox::builder::parse_question_yaml(case.question)?;
    let opts = Options::default().with_dialect(d);
    policy.rewrite_builder(who, &q, &opts).map(|r| r.sql)
}

// ----- what may differ ---------------------------------------------------------

/// Questions an engine refuses to compile, and why (each must refuse for
/// every user; any other refusal fails the test).
const REFUSED: &[(Engine, &str, &str)] = &[];

/// Questions whose rows legitimately differ on an engine, and why (checked
/// to still run there; their rows are not compared).
const EXCLUDED: &[(Engine, &str, &str)] = &[];

/// The rows with a NULL first column (the first sort key) moved to the
/// front, otherwise in the same order.
fn nulls_first(rows: &[String]) -> Vec<String> {
    let (mut nulls, rest): (Vec<String>, Vec<String>) = rows
        .iter()
        .cloned()
        .partition(|r| r == "NULL" || r.starts_with("NULL | "));
    nulls.extend(rest);
    nulls
}

// ----- running -------------------------------------------------------------------

fn python() -> String {
    // The tests are #[ignore = "needs SQLSANDBOX_PYTHON"]: run with
    // --include-ignored and without the variable, they fail rather than
    // pass having checked nothing.
    std::env::var("SQLSANDBOX_PYTHON").unwrap_or_else(|_| {
        panic!(
            "set SQLSANDBOX_PYTHON to a Python with tests/engines/requirements.txt installed \
             (duckdb, chdb, pyspark; this test is #[ignore]d by default and runs with --include-ignored)"
        )
    })
}

struct Pending {
    id: String,
    case: &'static Case,
    user: &'static str,
    sql: String,
    want: Vec<String>,
}

fn run_engine(e: Engine) {
    let python = python();
    let started = Instant::now();
    let conn = database();
    let policy = policy();
    let dump = std::env::var_os("SQLSANDBOX_BUILDER_DUMP").is_some();
    let mut pending = Vec::new();
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    let native = engine_policy(e);
    let mut via_copy: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (name, _) in USERS {
        let who = user(&policy, name);
        for case in CASES {
            let lite = compile(&policy, &who, case, Dialect::Sqlite)
                .unwrap_or_else(|err| panic!("{}: {name}: SQLite: {err}", case.name));
            let want = sqlite_rows(&conn, &lite);
            let expected_refusal = REFUSED.iter().find(|(x, c, _)| *x == e && *c == case.name);
            // The override first; where it refuses (text that SQLite and
            // the engine would read differently), the policy declared in
            // the engine's dialect.
            let compiled = compile(&policy, &who, case, e.dialect()).or_else(|err| {
                if err.to_string().contains("overrides the database's") {
                    let who = user(&native, name);
                    compile(&native, &who, case, e.dialect()).inspect(|_| {
                        *via_copy.entry(format!("{}: {err}", case.name)).or_default() += 1;
                    })
                } else {
                    Err(err)
                }
            });
            match compiled {
                Ok(sql) => {
                    if dump {
                        eprintln!("-- {} / {name}\n{sql};", case.name);
                    }
                    if let Some((_, _, why)) = expected_refusal {
                        failures.push(format!(
                            "{}: {name}: compiled, but listed as refused ({why})\n  sql: {sql}",
                            case.name
                        ));
                    }
                    pending.push(Pending {
                        id: format!("q{}", pending.len()),
                        case,
                        user: name,
                        sql,
                        want,
                    });
                }
                Err(err) => match expected_refusal {
                    Some(_) => *refused.entry(format!("{}: {err}", case.name)).or_default() += 1,
                    None => failures.push(format!(
                        "{}: {name}: refused at compile time: error[{}]: {err}",
                        case.name,
                        err.code()
                    )),
                },
            }
        }
    }

    // One engine process for every question and user.
    let dir = std::env::temp_dir().join(format!(
        "sqlsandbox-builder-{}-{}",
        e.name(),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.json");
    let output = dir.join("out.json");
    let queries: Vec<Value> = pending
        .iter()
        .map(|p| json!({"id": p.id, "sql": p.sql}))
        .collect();
    std::fs::write(
        &input,
        serde_json::to_string(&json!({"setup": setup(e, &conn), "queries": queries})).unwrap(),
    )
    .unwrap();
    let script: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "engines",
        "builder_run.py",
    ]
    .iter()
    .collect();
    let status = Command::new(&python)
        .arg(&script)
        .arg(e.name())
        .arg(&input)
        .arg(&output)
        .env("TZ", "UTC")
        .status()
        .unwrap_or_else(|err| panic!("SQLSANDBOX_PYTHON={python}: cannot run: {err}"));
    let out: Value = std::fs::read_to_string(&output)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| {
            panic!(
                "{} run failed ({status}): see stderr above; input {}",
                e.name(),
                input.display()
            )
        });
    assert!(status.success(), "{}: {status}", e.name());
    let results: BTreeMap<&str, &Value> = out["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["id"].as_str().expect("id"), r))
        .collect();

    let (mut equal, mut excluded, mut null_order) = (0, 0, 0);
    for p in &pending {
        let r = results
            .get(p.id.as_str())
            .unwrap_or_else(|| panic!("{}: no result for {}", e.name(), p.id));
        let context = format!(
            "{}: {}: {}\n  question: {}\n  sql: {}",
            e.name(),
            p.case.name,
            p.user,
            p.case.question,
            p.sql
        );
        if let Some(err) = r.get("error") {
            failures.push(format!(
                "{context}\n  engine error: {}",
                err.as_str().unwrap_or("?")
            ));
            continue;
        }
        if EXCLUDED
            .iter()
            .any(|(x, c, _)| *x == e && *c == p.case.name)
        {
            excluded += 1;
            continue;
        }
        let mut have: Vec<String> = r["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|row| {
                row.as_array()
                    .expect("a row")
                    .iter()
                    .map(render_json)
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .collect();
        let mut want = p.want.clone();
        if !p.case.ordered {
            have.sort();
            want.sort();
        }
        if have == want {
            equal += 1;
        } else if p.case.ordered && e.nulls_last() && nulls_first(&have) == want {
            // The builder sorts breakouts `ASC` without NULLS FIRST/LAST:
            // SQLite (and Spark) put NULLs first, DuckDB and ClickHouse
            // last. Same rows, same order otherwise.
            null_order += 1;
        } else {
            failures.push(format!(
                "{context}\n  {}: {have:#?}\n  SQLite: {want:#?}",
                e.name()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let n_refused: usize = refused.values().sum();
    let summary = format!(
        "{} questions x {} users = {} runs on {} {}: {equal} equal, {null_order} equal but for NULLS LAST, {} compiled under the policy in the engine's dialect where the override refused, {n_refused} refused at compile time, {excluded} excluded, {} differences ({:.1} s, engine {} s)",
        CASES.len(),
        USERS.len(),
        CASES.len() * USERS.len(),
        e.name(),
        out["version"].as_str().unwrap_or("?"),
        via_copy.values().sum::<usize>(),
        failures.len(),
        started.elapsed().as_secs_f64(),
        out["seconds"]
    );
    for (why, n) in &via_copy {
        eprintln!("  compiled with the policy in the engine's dialect ({n}x): {why}");
    }
    for (why, n) in &refused {
        eprintln!("  refused ({n}x): {why}");
    }
    for (x, c, why) in EXCLUDED.iter().filter(|(x, _, _)| *x == e) {
        eprintln!("  excluded on {}: {c}: {why}", x.name());
    }
    assert!(
        failures.is_empty(),
        "{summary}\n\n{}",
        failures.join("\n\n")
    );
    assert!(equal > 0, "{summary}: nothing compared");
    common::mark_done(&format!("builder-{}", e.name()), &summary);
}

#[test]
#[ignore = "needs SQLSANDBOX_PYTHON"]
fn builder_questions_on_duckdb() {
    run_engine(Engine::Duckdb);
}

#[test]
#[ignore = "needs SQLSANDBOX_PYTHON"]
fn builder_questions_on_clickhouse() {
    run_engine(Engine::Clickhouse);
}

#[test]
#[ignore = "needs SQLSANDBOX_PYTHON"]
fn builder_questions_on_spark() {
    run_engine(Engine::Spark);
}

#[test]
fn timestamps_normalise_to_dates_at_midnight() {
    assert_eq!(normalise_text("2024-01-01 00:00:00"), "2024-01-01");
    assert_eq!(normalise_text("2024-01-01T00:00:00.000"), "2024-01-01");
    assert_eq!(normalise_text("2024-01-01 10:00:00"), "2024-01-01 10:00:00");
    assert_eq!(
        normalise_text("2024-01-01T10:00:00.250000"),
        "2024-01-01 10:00:00.25"
    );
    assert_eq!(normalise_text("2024-01-01"), "2024-01-01");
    assert_eq!(normalise_text("2024-01-01 x"), "2024-01-01 x");
    assert_eq!(normalise_text("ana@acme"), "ana@acme");
}
