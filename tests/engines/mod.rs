//! The engines reached through Python (DuckDB, ClickHouse through chDB,
//! Spark SQL in local mode): a client for the runner `engine.py` (one
//! subprocess speaking JSON lines), and the differential backend shared by
//! `tests/diff_duckdb.rs`, `tests/diff_clickhouse.rs` and
//! `tests/diff_spark.rs`.
//!
//! The tests need a Python with `tests/engines/requirements.txt`
//! installed, named by `SQLSANDBOX_PYTHON`; they are `#[ignore]`d by
//! default, and run with `--include-ignored` they fail without it (as the
//! server tests do without their URLs).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde_json::{json, Value};
use sqlsandbox::{BoundParam, Scalar};

use crate::differential::dataset::{self, Db};
use crate::differential::harness::{Backend, Rows};
use crate::differential::{is_stale, oracle_views, unique_name, users, TestUser, PREFIX};

/// The variable naming the Python interpreter.
pub const PYTHON: &str = "SQLSANDBOX_PYTHON";

/// The Python interpreter. The tests that call this are
/// `#[ignore = "needs SQLSANDBOX_PYTHON"]`: run with `--include-ignored`
/// they need it, and fail without it rather than pass having checked
/// nothing.
pub fn python(test: &str) -> String {
    match std::env::var(PYTHON) {
        Ok(p) if !p.trim().is_empty() => p,
        _ => panic!(
            "{test}: set {PYTHON} to a Python with tests/engines/requirements.txt installed (this test is #[ignore]d by default and runs with --include-ignored; see docs/testing.md)"
        ),
    }
}

/// A bind parameter as the runner takes it.
pub fn param(s: &Scalar) -> Value {
    match s {
        Scalar::Integer(i) => json!({ "int": i }),
        Scalar::Text(t) => json!({ "text": t }),
        Scalar::Number(n) => json!({ "num": n }),
        Scalar::Bool(b) => json!({ "bool": b }),
    }
}

/// One running `engine.py`.
pub struct Runner {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Scratch directory: the runner's log (its standard error), chDB's
    /// data, Spark's warehouse. Removed on drop.
    scratch: PathBuf,
    /// What the runner said it runs (engine and version).
    pub version: String,
}

/// The runner's name for a database.
fn engine_name(db: Db) -> &'static str {
    match db {
        Db::Duckdb => "duckdb",
        Db::Clickhouse => "clickhouse",
        Db::Spark => "spark",
        other => panic!("{other:?} does not run through the Python runner"),
    }
}

/// Removes scratch directories of test processes that no longer run.
fn remove_stale_scratch() {
    let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(PREFIX) && name.ends_with("_engine") && is_stale(&name) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Runner {
    /// Starts the runner for `db`; panics (naming `test`) when
    /// `SQLSANDBOX_PYTHON` is unset or the engine does not start.
    pub fn start(db: Db, test: &str) -> Runner {
        let python = python(test);
        remove_stale_scratch();
        let scratch = std::env::temp_dir().join(format!("{}_engine", unique_name()));
        std::fs::create_dir_all(&scratch).expect("scratch directory");
        let log = std::fs::File::create(scratch.join("runner.log")).expect("runner log");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/engines/engine.py");
        let mut child = Command::new(&python)
            .arg(script)
            .arg(engine_name(db))
            .arg(&scratch)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("{test}: cannot start {PYTHON}={python}: {e}"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("runner stdout"));
        let mut r = Runner {
            child,
            stdin,
            stdout,
            scratch,
            version: String::new(),
        };
        let ready = r
            .read()
            .unwrap_or_else(|e| panic!("{test}: the {db:?} runner did not start: {e}"));
        r.version = ready["ready"].as_str().unwrap_or("?").to_string();
        r
    }

    /// The end of the runner's log, for a message when it died.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.scratch.join("runner.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn read(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) | Err(_) => Err(format!(
                "the runner died; its log ends:\n{}",
                self.log_tail()
            )),
            Ok(_) => {
                let v: Value = serde_json::from_str(&line)
                    .map_err(|e| format!("bad reply from the runner ({e}): {line}"))?;
                if v["ok"].as_bool() == Some(true) {
                    Ok(v)
                } else {
                    Err(v["error"].as_str().unwrap_or("(no message)").to_string())
                }
            }
        }
    }

    fn call(&mut self, request: Value) -> Result<Value, String> {
        let stdin = self.stdin.as_mut().ok_or("the runner is closed")?;
        if writeln!(stdin, "{request}")
            .and_then(|_| stdin.flush())
            .is_err()
        {
            return Err(format!(
                "the runner died; its log ends:\n{}",
                self.log_tail()
            ));
        }
        self.read()
    }

    /// Runs statements in order; the first error stops them.
    pub fn batch(&mut self, statements: &[String]) -> Result<(), String> {
        self.call(json!({ "op": "batch", "sql": statements }))
            .map(|_| ())
    }

    /// Runs one statement with bind parameters (`db`: the database
    /// unqualified names resolve to).
    pub fn exec(&mut self, sql: &str, params: &[Value], db: Option<&str>) -> Result<(), String> {
        self.call(json!({ "op": "exec", "sql": sql, "params": params, "db": db }))
            .map(|_| ())
    }

    /// Runs a query with bind parameters; every cell rendered as text.
    pub fn query(&mut self, sql: &str, params: &[Value], db: Option<&str>) -> Result<Rows, String> {
        let v = self.call(json!({ "op": "query", "sql": sql, "params": params, "db": db }))?;
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Rows {
            columns: strings(&v["columns"]),
            rows: v["rows"]
                .as_array()
                .map(|rows| rows.iter().map(strings).collect())
                .unwrap_or_default(),
        })
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // End of input ends the runner.
        self.stdin = None;
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Spark's runner, shared by the tests of one test binary (a JVM and a
/// SparkSession take tens of seconds to start); the tests take turns.
/// Never dropped: the runner ends when the test process does (its
/// standard input closes), and the next run removes its scratch directory.
fn shared_spark(test: &str) -> MutexGuard<'static, Runner> {
    static SPARK: OnceLock<Mutex<Runner>> = OnceLock::new();
    SPARK
        .get_or_init(|| Mutex::new(Runner::start(Db::Spark, test)))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A runner of one's own, or a turn on the shared one.
pub enum Handle {
    Own(Runner),
    Shared(MutexGuard<'static, Runner>),
}

impl Deref for Handle {
    type Target = Runner;
    fn deref(&self) -> &Runner {
        match self {
            Handle::Own(r) => r,
            Handle::Shared(r) => r,
        }
    }
}

impl DerefMut for Handle {
    fn deref_mut(&mut self) -> &mut Runner {
        match self {
            Handle::Own(r) => r,
            Handle::Shared(r) => r,
        }
    }
}

/// A runner for `db`: Spark's shared one, otherwise a new one.
pub fn runner(db: Db, test: &str) -> Handle {
    match db {
        Db::Spark => Handle::Shared(shared_spark(test)),
        _ => Handle::Own(Runner::start(db, test)),
    }
}

/// Placeholder `n` (1-based) of a statement the tests write themselves,
/// for a value of SQL type `ty` (ClickHouse names its parameters' types).
pub fn placeholder(db: Db, n: usize, ty: &str) -> String {
    match db {
        Db::Clickhouse => format!("{{p{n}:{ty}}}"),
        _ => "?".to_string(),
    }
}

/// `CREATE DATABASE` (or schema) for `db`.
pub fn create_schema(db: Db, name: &str) -> String {
    match db {
        Db::Duckdb => format!("CREATE SCHEMA {name}"),
        _ => format!("CREATE DATABASE {name}"),
    }
}

fn drop_schema(db: Db, name: &str) -> String {
    match db {
        Db::Duckdb => format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
        Db::Clickhouse => format!("DROP DATABASE IF EXISTS {name}"),
        _ => format!("DROP DATABASE IF EXISTS {name} CASCADE"),
    }
}

/// The SQL types of the oracle's one-column context tables.
fn context_types(db: Db) -> (&'static str, &'static str) {
    match db {
        Db::Duckdb => ("INTEGER", "VARCHAR"),
        Db::Clickhouse => ("Int32", "String"),
        _ => ("INT", "STRING"),
    }
}

/// A multi-tenant dataset on one engine, with per-user views as the
/// oracle (see [`oracle_views`]): each user's oracle is a schema
/// `<data>_o<k>` of views with the dataset's table names over the data,
/// joined to the one-column tables `_tenants` and `_regions` holding the
/// user's attribute values (inserted as bound parameters, never as SQL
/// text); a schema per user of the test policy, made once, and one more
/// refilled for each other user (the hostile values). The analyst's oracle
/// is the data itself.
pub struct EngineDb {
    pub runner: Handle,
    pub db: Db,
    pub data: String,
    /// Oracle schemas made so far, by the attribute values they show.
    oracles: HashMap<String, String>,
    /// The oracle schema refilled per user (made on first use).
    refilled: Option<String>,
    /// The schema unqualified names resolve to under the oracle.
    current: String,
    /// Hostile event rows not yet inserted (inserted together, before the
    /// next statement: an INSERT costs Spark a job and a file).
    pending: Vec<(i64, i64, String)>,
}

impl EngineDb {
    /// The dataset in a new schema on `runner`'s engine.
    pub fn new(db: Db, mut runner: Handle) -> EngineDb {
        let data = unique_name();
        let mut setup = vec![create_schema(db, &data)];
        setup.extend(dataset::statements(db, &data));
        if db == Db::Spark {
            // In memory: a scan of a parquet file costs more than the query.
            for t in dataset::TABLES {
                setup.push(format!("CACHE TABLE {data}.{}", t.name));
            }
        }
        runner
            .batch(&setup)
            .unwrap_or_else(|e| panic!("[{db:?}] setting up the dataset: {e}"));
        EngineDb {
            runner,
            db,
            current: data.clone(),
            data,
            oracles: HashMap::new(),
            refilled: None,
            pending: Vec::new(),
        }
    }

    /// Makes an oracle schema: the context tables and the views.
    fn make_oracle(&mut self, name: &str) -> Result<(), String> {
        let db = self.db;
        let (int, text) = context_types(db);
        let opts = dataset::table_options(db);
        let mut setup = vec![
            create_schema(db, name),
            format!("CREATE TABLE {name}._tenants (v {int}){opts}"),
            format!("CREATE TABLE {name}._regions (v {text}){opts}"),
        ];
        for (view, select) in oracle_views(&self.data, name) {
            setup.push(format!("CREATE VIEW {name}.{view} AS {select}"));
        }
        self.runner.batch(&setup)
    }

    /// Fills `schema`'s context tables with `user`'s values (bound), after
    /// emptying them.
    fn fill(&mut self, schema: &str, user: &TestUser) -> Result<(), String> {
        let db = self.db;
        let (int, text) = context_types(db);
        let mut tenants = user.tenants.clone();
        tenants.sort();
        tenants.dedup();
        let mut regions = user.regions.clone();
        regions.sort();
        regions.dedup();
        let tenant_params: Vec<Value> = tenants.iter().map(|t| json!({ "int": t })).collect();
        let region_params: Vec<Value> = regions.iter().map(|r| json!({ "text": r })).collect();
        for (table, ty, params) in [
            ("_tenants", int, tenant_params),
            ("_regions", text, region_params),
        ] {
            let selects: Vec<String> = (1..=params.len())
                .map(|n| format!("SELECT {} AS v", placeholder(db, n, ty)))
                .collect();
            match db {
                // One statement (a job) per table.
                Db::Spark => {
                    let body = if selects.is_empty() {
                        format!("SELECT CAST(NULL AS {ty}) AS v WHERE 1 = 0")
                    } else {
                        selects.join(" UNION ALL ")
                    };
                    self.runner.exec(
                        &format!("INSERT OVERWRITE TABLE {schema}.{table} {body}"),
                        &params,
                        None,
                    )?;
                }
                _ => {
                    let clear = match db {
                        Db::Clickhouse => format!("TRUNCATE TABLE {schema}.{table}"),
                        _ => format!("DELETE FROM {schema}.{table}"),
                    };
                    self.runner.exec(&clear, &[], None)?;
                    if !selects.is_empty() {
                        self.runner.exec(
                            &format!(
                                "INSERT INTO {schema}.{table} {}",
                                selects.join(" UNION ALL ")
                            ),
                            &params,
                            None,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Inserts the hostile event rows waiting, 25 to a statement
    /// (ClickHouse and Spark limit a query's size and depth).
    fn flush(&mut self) -> Result<(), String> {
        let db = self.db;
        let pending = std::mem::take(&mut self.pending);
        for chunk in pending.chunks(25) {
            let mut selects = Vec::new();
            let mut params = Vec::new();
            for (id, tenant, region) in chunk {
                let n = params.len();
                selects.push(format!(
                    "SELECT {}, {}, {}, 'hostile', {}, NULL",
                    placeholder(db, n + 1, "Int32"),
                    placeholder(db, n + 2, "Int32"),
                    placeholder(db, n + 3, "Int32"),
                    placeholder(db, n + 4, "String"),
                ));
                params.extend([
                    json!({ "int": id }),
                    json!({ "int": tenant }),
                    json!({ "int": tenant * 1000 + 1 }),
                    json!({ "text": region }),
                ]);
            }
            let sql = format!(
                "INSERT INTO {}.events {}",
                self.data,
                selects.join(" UNION ALL ")
            );
            self.runner.exec(&sql, &params, None)?;
        }
        Ok(())
    }

    fn drop_all(&mut self) {
        let mut names: Vec<String> = self.oracles.values().cloned().collect();
        names.extend(self.refilled.take());
        names.push(self.data.clone());
        let stmts: Vec<String> = names.iter().map(|n| drop_schema(self.db, n)).collect();
        let _ = self.runner.batch(&stmts);
    }
}

impl Drop for EngineDb {
    fn drop(&mut self) {
        self.drop_all();
    }
}

/// The text of each parenthesised `(SELECT …)` in `sql`.
fn subqueries(sql: &str) -> impl Iterator<Item = &str> {
    sql.match_indices("(SELECT").filter_map(move |(start, _)| {
        let mut depth = 0usize;
        for (i, c) in sql.get(start..)?.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return sql.get(start..start + i + 1);
                    }
                }
                _ => {}
            }
        }
        None
    })
}

impl Backend for EngineDb {
    fn db(&self) -> Db {
        self.db
    }

    fn data_schema(&self) -> String {
        self.data.clone()
    }

    fn bind_parameters(&self) -> bool {
        self.db != Db::Clickhouse
    }

    fn reads_otherwise(&self, sql: &str) -> Option<&'static str> {
        // ClickHouse resolves a table name in FROM to a table alias of an
        // enclosing query (`… orders AS events … EXISTS (SELECT 1 FROM
        // events t3 …)` reads `orders` there); the generator names aliases
        // like tables on purpose.
        let aliased_like_a_table = dataset::TABLES.iter().any(|t| {
            sql.contains(&format!(" AS {} ", t.name)) || sql.ends_with(&format!(" AS {}", t.name))
        });
        // ClickHouse lets a table's name qualify a column of the table
        // under its alias: in `(SELECT count(*) FROM events t3 WHERE
        // t3.tenant_id = events.tenant_id)` the `events.` it reads is t3,
        // not the enclosing query's `events` (standard SQL: the outer one).
        let name_of_aliased = dataset::TABLES.iter().any(|t| {
            subqueries(sql).any(|sub| {
                (sub.contains(&format!("FROM {} t", t.name))
                    || sub.contains(&format!("JOIN {} t", t.name)))
                    && sub.contains(&format!(" {}.", t.name))
            })
        });
        // ClickHouse applies a set operation's ORDER BY and LIMIT to its
        // last branch only.
        let set_op_ordered = [" UNION ", " INTERSECT ", " EXCEPT "]
            .iter()
            .any(|op| sql.contains(op))
            && sql.contains(" ORDER BY ");
        (self.db == Db::Clickhouse && (aliased_like_a_table || name_of_aliased || set_op_ordered))
            .then_some("ClickHouse: a table name resolves to an outer alias or to its aliased copy, or ORDER BY binds to a set operation's last branch")
    }

    fn limitation(&self, oracle_error: &str) -> Option<&'static str> {
        match self.db {
            // Correlated subqueries ClickHouse does not run yet.
            Db::Clickhouse
                if oracle_error.contains("(NOT_IMPLEMENTED)")
                    || oracle_error.contains("Cannot evaluate correlated") =>
            {
                Some("ClickHouse: not implemented (correlated subqueries)")
            }
            // A table named bare and again under an alias: ClickHouse lets
            // the table's name stand for either.
            Db::Clickhouse if oracle_error.contains("(AMBIGUOUS_IDENTIFIER)") => {
                Some("ClickHouse: a table's name is ambiguous beside an alias of it")
            }
            _ => None,
        }
    }

    fn run_app(&mut self, sql: &str, params: &[BoundParam]) -> Result<Rows, String> {
        self.flush()?;
        let params: Vec<Value> = params.iter().map(|p| param(&p.value)).collect();
        let data = self.data.clone();
        self.runner.query(sql, &params, Some(&data))
    }

    fn become_user(&mut self, user: &TestUser) -> Result<String, String> {
        self.flush()?;
        if user.analyst {
            self.current = self.data.clone();
            return Ok(self.current.clone());
        }
        let key = format!("{:?} {:?}", user.tenants, user.regions);
        if let Some(schema) = self.oracles.get(&key) {
            self.current = schema.clone();
            return Ok(schema.clone());
        }
        // The test policy's own users get a schema each; anyone else the
        // refilled one.
        let known = users().iter().any(|u| u.name == user.name);
        let schema = if known {
            let name = format!("{}_o{}", self.data, self.oracles.len());
            self.make_oracle(&name)?;
            self.fill(&name, user)?;
            self.oracles.insert(key, name.clone());
            name
        } else {
            let name = match &self.refilled {
                Some(n) => n.clone(),
                None => {
                    let n = format!("{}_or", self.data);
                    self.make_oracle(&n)?;
                    self.refilled = Some(n.clone());
                    n
                }
            };
            self.fill(&name, user)?;
            name
        };
        self.current = schema.clone();
        Ok(schema)
    }

    fn run_oracle(&mut self, sql: &str) -> Result<Rows, String> {
        self.flush()?;
        let current = self.current.clone();
        self.runner.query(sql, &[], Some(&current))
    }

    fn insert_event(&mut self, id: i64, tenant: i64, region: &str) -> Result<(), String> {
        self.pending.push((id, tenant, region.to_string()));
        Ok(())
    }
}

// ----- the differential tests, shared by the three engines --------------------

/// The engine's name in markers and messages.
pub fn label(db: Db) -> &'static str {
    engine_name(db)
}

/// The sqlsandbox dialect the engine's queries are rewritten in.
pub fn dialect(db: Db) -> sqlsandbox::Dialect {
    let name =
        std::env::var("SQLSANDBOX_ENGINE_DIALECT").unwrap_or_else(|_| engine_name(db).to_string());
    name.parse()
        .unwrap_or_else(|e| panic!("dialect {name} for {db:?}: {e}"))
}

/// A fresh dataset on `db`'s engine, for `test`.
pub fn backend(db: Db, test: &str) -> EngineDb {
    let test = format!("{db:?} differential tests: {test}");
    EngineDb::new(db, runner(db, &test))
}

/// The oracle check: each user's views show exactly the rows the policy
/// allows (counted in Rust from the dataset).
pub fn oracle_test(db: Db) {
    let mut b = backend(db, "oracle check");
    crate::differential::harness::check_oracle(&mut b, &users());
    let version = b.runner.version.clone();
    crate::differential::mark_done(
        &format!("{}-oracle", label(db)),
        &format!("{version}: the oracle shows each user exactly their rows"),
    );
}

/// Corpus queries the engine does not run: written for other databases
/// (`only`), and left out for the engine's own limitations (`EXCLUDED`).
pub fn corpus_left_out(db: Db) -> (usize, usize) {
    use crate::differential::corpus::{excluded, QUERIES};
    let other = QUERIES
        .iter()
        .filter(|q| !q.only.is_empty() && !q.only.contains(&db))
        .count();
    let limits = QUERIES
        .iter()
        .filter(|q| excluded(db, q.sql).is_some())
        .count();
    (other, limits)
}

/// Every corpus query × `per_query` of `users` (all of them: the full
/// product) against the per-user views.
pub fn corpus_test(db: Db, users: &[TestUser], per_query: usize) {
    let mut b = backend(db, "corpus");
    let policy = crate::differential::policy(dialect(db), &b.data);
    let started = std::time::Instant::now();
    let stats = crate::differential::harness::run_corpus_sampled(&mut b, &policy, users, per_query);
    let (other, limits) = corpus_left_out(db);
    assert!(stats.pairs >= 90 * per_query.min(users.len()), "{stats:?}");
    assert!(stats.rows > 0, "{stats:?}");
    crate::differential::mark_done(
        &format!("{}-corpus", label(db)),
        &format!(
            "{}: {stats:?}, {} users, each query for {per_query} of them; corpus queries left out: {other} written for other databases, {limits} the engine cannot run; {:.0?}",
            b.runner.version,
            users.len(),
            started.elapsed()
        ),
    );
}

/// `cases` generated queries against the per-user views.
pub fn generated_test(db: Db, cases: u32) {
    let mut b = backend(db, "generated queries");
    let policy = crate::differential::policy(dialect(db), &b.data);
    let started = std::time::Instant::now();
    let (ran, skipped) =
        crate::differential::harness::run_generated_counting(&mut b, &policy, &users(), cases);
    assert!(ran >= cases / 2, "{ran} of {cases} generated cases ran");
    crate::differential::mark_done(
        &format!("{}-generated", label(db)),
        &format!(
            "{}: {ran} generated cases compared, {skipped} skipped (the engine cannot run the query or its rewrite, or reads it otherwise); {:.0?}",
            b.runner.version,
            started.elapsed()
        ),
    );
}

/// The hostile attribute values, each with `per_value` of the queries.
pub fn hostile_test(db: Db, per_value: usize) {
    let mut b = backend(db, "hostile values");
    let basic = crate::differential::policy(dialect(db), &b.data);
    let custom = crate::differential::text_question_policy(dialect(db), &b.data);
    let started = std::time::Instant::now();
    let stats =
        crate::differential::harness::run_hostile_sampled(&mut b, &[&basic, &custom], per_value);
    assert!(stats.rows > 0, "{stats:?}");
    crate::differential::mark_done(
        &format!("{}-hostile", label(db)),
        &format!("{}: {stats:?}; {:.0?}", b.runner.version, started.elapsed()),
    );
}
