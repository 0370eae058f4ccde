//! Differential tests on MariaDB against per-user views (run when
//! `SQLSANDBOX_MYSQL_URL` is set, e.g. `mysql://root@127.0.0.1:3306/test`;
//! skipped with a notice otherwise).
//!
//! Each test makes two databases, dropped afterwards even when it fails:
//! `sqlsandbox_diff_<pid>_<n>` with the dataset (sqlsandbox's side reads
//! it), and `<that>_oracle`, whose views of the same names show only the
//! current user's rows (see `oracle_views`); the oracle runs the original
//! query with the views' database as the default one. The analyst's oracle
//! is the data itself.

mod differential;

use differential::dataset::{self, Db};
use differential::harness::{self, Backend, Rows};
use differential::{
    is_stale, mark_done, oracle_views, policy, server_url, text_question_policy, unique_name,
    users, TestUser, PREFIX,
};
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, Params, Statement, Value};
use sqlsandbox::{BoundParam, Dialect, Scalar};

const TEST: &str = "MariaDB differential tests";

struct Maria {
    app: Conn,
    oracle: Option<Conn>,
    data: String,
    views: String,
}

/// A connection. Without a statement cache: a cached prepared statement
/// keeps the tables it resolved when first prepared, so after `USE` another
/// database the same SQL text would still read the old one.
fn connect(url: &str) -> Conn {
    Opts::from_url(url)
        .map_err(|e| e.to_string())
        .and_then(|opts| {
            Conn::new(OptsBuilder::from_opts(opts).stmt_cache_size(0)).map_err(|e| e.to_string())
        })
        .unwrap_or_else(|e| {
            panic!("SQLSANDBOX_MYSQL_URL={url} is set but MariaDB is not reachable: {e}")
        })
}

impl Maria {
    fn new(url: &str) -> Maria {
        let mut app = connect(url);
        drop_stale(&mut app);
        let data = unique_name();
        let views = format!("{data}_oracle");
        let mut m = Maria {
            app,
            oracle: None,
            data: data.clone(),
            views: views.clone(),
        };
        let mut setup = vec![
            // Binary collation: exact, case-sensitive matching, as sqlsandbox promises.
            format!("CREATE DATABASE {data} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
            format!("CREATE DATABASE {views} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
        ];
        setup.extend(dataset::statements(Db::Mariadb, &data));
        setup.push(format!("CREATE TABLE {views}._tenants (v INT)"));
        setup.push(format!("CREATE TABLE {views}._regions (v TEXT)"));
        // TEMPTABLE: MariaDB 10.11 merges a plain view into the query and
        // then returns no rows for some shapes (two merged views joined, a
        // window function and an IN subquery together; seen with
        // SQLSANDBOX_DIFF_SEED=1795592951824679384). A materialized view is
        // the view's plain meaning, which is what an oracle must be.
        for (view, select) in oracle_views(&data, &views) {
            setup.push(format!(
                "CREATE ALGORITHM=TEMPTABLE VIEW {views}.{view} AS {select}"
            ));
        }
        for stmt in &setup {
            // `m` drops what was made so far if this fails.
            m.app
                .query_drop(stmt)
                .unwrap_or_else(|e| panic!("setup: {stmt}: {e}"));
        }
        m.app.select_db(&data).unwrap();
        m.oracle = Some(connect(url));
        m
    }

    fn oracle(&mut self) -> &mut Conn {
        self.oracle.as_mut().expect("oracle connection")
    }
}

/// Drops databases left by test processes that no longer run.
fn drop_stale(app: &mut Conn) {
    let names: Vec<String> = app.query("SHOW DATABASES").unwrap();
    for name in names
        .iter()
        .filter(|n| n.starts_with(PREFIX) && is_stale(n))
    {
        let _ = app.query_drop(format!("DROP DATABASE IF EXISTS {name}"));
    }
}

impl Drop for Maria {
    fn drop(&mut self) {
        self.oracle = None;
        // SQLSANDBOX_DIFF_KEEP=1 leaves the databases for a replay by hand.
        if std::env::var_os("SQLSANDBOX_DIFF_KEEP").is_some() {
            return;
        }
        let _ = self
            .app
            .query_drop(format!("DROP DATABASE IF EXISTS {}", self.views));
        let _ = self
            .app
            .query_drop(format!("DROP DATABASE IF EXISTS {}", self.data));
    }
}

/// A cell as text. Both sides run as prepared statements (the binary
/// protocol), so equal values of equal types render equally.
fn render(v: &Value) -> String {
    match v {
        Value::NULL => "NULL".into(),
        Value::Bytes(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => format!("{f:.6e}"),
        Value::Double(d) => format!("{d:.9e}"),
        Value::Date(y, mo, d, h, mi, s, us) => {
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
        }
        Value::Time(neg, d, h, m, s, us) => {
            format!(
                "{}{d} {h:02}:{m:02}:{s:02}.{us:06}",
                if *neg { "-" } else { "" }
            )
        }
    }
}

/// Prepares, runs and closes one statement (nothing is cached: see
/// [`connect`]).
fn run(conn: &mut Conn, sql: &str, params: Vec<Value>) -> Result<Rows, String> {
    let params = if params.is_empty() {
        Params::Empty
    } else {
        Params::Positional(params)
    };
    let stmt = conn.prep(sql).map_err(|e| e.to_string())?;
    let rows = fetch(conn, &stmt, params);
    conn.close(stmt).map_err(|e| e.to_string())?;
    rows
}

fn fetch(conn: &mut Conn, stmt: &Statement, params: Params) -> Result<Rows, String> {
    let mut result = conn.exec_iter(stmt, params).map_err(|e| e.to_string())?;
    let columns = result
        .columns()
        .as_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    let mut rows = Vec::new();
    for row in result.by_ref() {
        let row = row.map_err(|e| e.to_string())?;
        rows.push(row.unwrap().iter().map(render).collect());
    }
    Ok(Rows { columns, rows })
}

fn value(s: &Scalar) -> Value {
    match s {
        Scalar::Integer(i) => Value::Int(*i),
        Scalar::Text(t) => Value::Bytes(t.clone().into_bytes()),
        Scalar::Number(n) => Value::Bytes(n.clone().into_bytes()),
        Scalar::Bool(b) => Value::Int(i64::from(*b)),
    }
}

impl Backend for Maria {
    fn db(&self) -> Db {
        Db::Mariadb
    }

    fn data_schema(&self) -> String {
        self.data.clone()
    }

    fn run_app(&mut self, sql: &str, params: &[BoundParam]) -> Result<Rows, String> {
        run(
            &mut self.app,
            sql,
            params.iter().map(|p| value(&p.value)).collect(),
        )
    }

    /// MariaDB 10.11 (seen on 10.11.19) returns too few rows (often none)
    /// for a query with a window function over merged derived tables and
    /// a correlated `EXISTS` or an `IN (SELECT …)` that it runs as a
    /// materialised semi-join, or after turning the `EXISTS` into an `IN`;
    /// the same query over base tables, or with `materialization=off` and
    /// `exists_to_in=off`, is right. Sandboxes are derived tables, so
    /// the corpus can meet it (README: Known engine bugs).
    fn run_app_sidestepping_bug(
        &mut self,
        sql: &str,
        params: &[BoundParam],
    ) -> Option<(&'static str, Result<Rows, String>)> {
        // Two transformations are known to lose rows here: semi-join
        // materialisation (seed 1796550033785383438) and EXISTS-to-IN,
        // which turned `IN (empty) OR EXISTS (SELECT 1 FROM (derived) t3
        // WHERE t3.tenant_id = t1.tenant_id)` into no rows at all (seed
        // 1796550724739572104; right with exists_to_in=off alone).
        let sql = format!(
            "SET STATEMENT optimizer_switch='materialization=off,exists_to_in=off' FOR {sql}"
        );
        Some((
            "MariaDB semi-join materialisation / EXISTS-to-IN wrong-result bug",
            run(
                &mut self.app,
                &sql,
                params.iter().map(|p| value(&p.value)).collect(),
            ),
        ))
    }

    fn become_user(&mut self, user: &TestUser) -> Result<String, String> {
        let (data, views) = (self.data.clone(), self.views.clone());
        let oracle = self.oracle();
        let e = |e: mysql::Error| e.to_string();
        if user.analyst {
            oracle.select_db(&data).map_err(e)?;
            return Ok(data);
        }
        oracle
            .query_drop(format!("DELETE FROM {views}._tenants"))
            .map_err(e)?;
        oracle
            .query_drop(format!("DELETE FROM {views}._regions"))
            .map_err(e)?;
        for t in &user.tenants {
            let sql = format!("INSERT INTO {views}._tenants VALUES (?)");
            run(oracle, &sql, vec![Value::Int(*t)])?;
        }
        for r in &user.regions {
            let sql = format!("INSERT INTO {views}._regions VALUES (?)");
            run(oracle, &sql, vec![Value::from(r)])?;
        }
        oracle.select_db(&views).map_err(e)?;
        Ok(views)
    }

    fn run_oracle(&mut self, sql: &str) -> Result<Rows, String> {
        run(self.oracle(), sql, vec![])
    }

    fn run_oracle_sidestepping_bug(&mut self, sql: &str) -> Option<Result<Rows, String>> {
        let sql = format!(
            "SET STATEMENT optimizer_switch='materialization=off,exists_to_in=off' FOR {sql}"
        );
        Some(run(self.oracle(), &sql, vec![]))
    }

    fn insert_event(&mut self, id: i64, tenant: i64, region: &str) -> Result<(), String> {
        let values = vec![
            Value::Int(id),
            Value::Int(tenant),
            Value::Int(tenant * 1000 + 1),
            Value::from(region),
        ];
        let sql = "INSERT INTO events VALUES (?, ?, ?, 'hostile', ?, NULL)";
        run(&mut self.app, sql, values).map(|_| ())
    }
}

fn backend(test: &str) -> Option<Maria> {
    server_url("SQLSANDBOX_MYSQL_URL", &format!("{TEST}: {test}")).map(|url| Maria::new(&url))
}

#[test]
#[ignore = "needs SQLSANDBOX_MYSQL_URL"]
fn the_oracle_shows_each_user_exactly_their_rows() {
    let Some(mut b) = backend("oracle check") else {
        return;
    };
    harness::check_oracle(&mut b, &users());
    mark_done(
        "mariadb-oracle",
        "the oracle shows each user exactly their rows",
    );
}

#[test]
#[ignore = "needs SQLSANDBOX_MYSQL_URL"]
fn corpus_matches_per_user_views() {
    let Some(mut b) = backend("corpus") else {
        return;
    };
    let policy = policy(Dialect::Mysql, &b.data);
    let users = users();
    let stats = harness::run_corpus(&mut b, &policy, &users);
    assert!(stats.pairs >= 100 * users.len(), "{stats:?}");
    mark_done("mariadb-corpus", &format!("{stats:?}"));
}

#[test]
#[ignore = "needs SQLSANDBOX_MYSQL_URL"]
fn generated_queries_match_per_user_views() {
    let Some(mut b) = backend("generated queries") else {
        return;
    };
    let policy = policy(Dialect::Mysql, &b.data);
    let ran = harness::run_generated(&mut b, &policy, &users(), harness::generated_cases());
    mark_done("mariadb-generated", &format!("{ran} generated cases"));
}

#[test]
#[ignore = "needs SQLSANDBOX_MYSQL_URL"]
fn hostile_attribute_values_select_exactly_their_rows() {
    let Some(mut b) = backend("hostile values") else {
        return;
    };
    let basic = policy(Dialect::Mysql, &b.data);
    let custom = text_question_policy(Dialect::Mysql, &b.data);
    let stats = harness::run_hostile(&mut b, &[&basic, &custom]);
    assert!(stats.rows > 0, "{stats:?}");
    mark_done("mariadb-hostile", &format!("{stats:?}"));
}
