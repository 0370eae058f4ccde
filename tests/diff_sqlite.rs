//! Differential tests on an embedded SQLite (always run): sqlsandbox's
//! rewritten SQL against per-user views. The data lives in a shared-cache
//! in-memory database of its own; the application's connection reads the
//! tables, the oracle's connection has TEMP views of the same names that
//! shadow them (filtered by the current user's attributes), so the same
//! query text reads the user's rows only.

mod differential;

use differential::dataset::{self, Db};
use differential::harness::{self, Backend, Rows};
use differential::{
    notice, oracle_views, policy, text_question_policy, unique_name, users, TestUser,
};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{params_from_iter, Connection, OpenFlags};
use sqlsandbox::{BoundParam, Dialect, Scalar};

struct Sqlite {
    app: Connection,
    oracle: Connection,
    /// The analyst's oracle is the application's connection (no views).
    analyst: bool,
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

impl Sqlite {
    /// A fresh database with the dataset (it disappears with the last
    /// connection).
    fn new() -> Sqlite {
        let name = unique_name();
        let app = open(&name);
        for stmt in dataset::statements(Db::Sqlite, "main") {
            app.execute_batch(&stmt)
                .unwrap_or_else(|e| panic!("{e}: {stmt}"));
        }
        let oracle = open(&name);
        oracle
            .execute_batch(
                "CREATE TEMP TABLE _tenants (v INTEGER); CREATE TEMP TABLE _regions (v TEXT);",
            )
            .expect("oracle context tables");
        for (view, select) in oracle_views("main", "temp") {
            oracle
                .execute_batch(&format!("CREATE TEMP VIEW {view} AS {select}"))
                .unwrap_or_else(|e| panic!("view {view}: {e}"));
        }
        Sqlite {
            app,
            oracle,
            analyst: false,
        }
    }
}

fn render(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        // Rounded: sums of the same reals may be added in another order.
        ValueRef::Real(f) => format!("{f:.9e}"),
        ValueRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => format!("blob {b:?}"),
    }
}

fn run(conn: &Connection, sql: &str, params: &[SqlValue]) -> Result<Rows, String> {
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let n = columns.len();
    let rows = stmt
        .query_map(params_from_iter(params.iter()), |row| {
            (0..n)
                .map(|i| row.get_ref(i).map(render))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| e.to_string())?;
    Ok(Rows { columns, rows })
}

fn value(s: &Scalar) -> SqlValue {
    match s {
        Scalar::Integer(i) => SqlValue::Integer(*i),
        Scalar::Text(t) => SqlValue::Text(t.clone()),
        Scalar::Number(n) => SqlValue::Real(n.parse().unwrap_or(f64::NAN)),
        Scalar::Bool(b) => SqlValue::Integer(i64::from(*b)),
    }
}

impl Backend for Sqlite {
    fn db(&self) -> Db {
        Db::Sqlite
    }

    fn data_schema(&self) -> String {
        "main".into()
    }

    fn run_app(&mut self, sql: &str, params: &[BoundParam]) -> Result<Rows, String> {
        let values: Vec<SqlValue> = params.iter().map(|p| value(&p.value)).collect();
        run(&self.app, sql, &values)
    }

    fn become_user(&mut self, user: &TestUser) -> Result<String, String> {
        self.analyst = user.analyst;
        if user.analyst {
            return Ok("main".into());
        }
        let e = |e: rusqlite::Error| e.to_string();
        self.oracle
            .execute_batch("DELETE FROM temp._tenants; DELETE FROM temp._regions;")
            .map_err(e)?;
        for t in &user.tenants {
            self.oracle
                .execute("INSERT INTO temp._tenants VALUES (?1)", [t])
                .map_err(e)?;
        }
        for r in &user.regions {
            self.oracle
                .execute("INSERT INTO temp._regions VALUES (?1)", [r])
                .map_err(e)?;
        }
        Ok("temp".into())
    }

    fn run_oracle(&mut self, sql: &str) -> Result<Rows, String> {
        let conn = if self.analyst {
            &self.app
        } else {
            &self.oracle
        };
        run(conn, sql, &[])
    }

    fn insert_event(&mut self, id: i64, tenant: i64, region: &str) -> Result<(), String> {
        self.app
            .execute(
                "INSERT INTO main.events VALUES (?1, ?2, ?3, 'hostile', ?4, NULL)",
                rusqlite::params![id, tenant, tenant * 1000 + 1, region],
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[test]
fn the_oracle_shows_each_user_exactly_their_rows() {
    harness::check_oracle(&mut Sqlite::new(), &users());
}

#[test]
fn corpus_matches_per_user_views() {
    let mut b = Sqlite::new();
    let policy = policy(Dialect::Sqlite, "main");
    let users = users();
    let stats = harness::run_corpus(&mut b, &policy, &users);
    notice(&format!("differential sqlite corpus: {stats:?}"));
    assert!(stats.pairs >= 100 * users.len(), "{stats:?}");
    assert!(stats.rows > 0);
}

#[test]
fn generated_queries_match_per_user_views() {
    let mut b = Sqlite::new();
    let policy = policy(Dialect::Sqlite, "main");
    let ran = harness::run_generated(&mut b, &policy, &users(), harness::generated_cases());
    notice(&format!("differential sqlite generated: {ran} cases"));
}

#[test]
fn hostile_attribute_values_select_exactly_their_rows() {
    let mut b = Sqlite::new();
    let basic = policy(Dialect::Sqlite, "main");
    let custom = text_question_policy(Dialect::Sqlite, "main");
    let stats = harness::run_hostile(&mut b, &[&basic, &custom]);
    notice(&format!("differential sqlite hostile values: {stats:?}"));
    assert!(stats.rows > 0, "{stats:?}");
}
