//! A multi-tenant dataset with leak markers, shared by execution tests.
//!
//! Rows alice (tenant 42, region eu) may see hold ordinary values; every
//! other row holds `LEAK` in its text columns and ids of 900000 and above,
//! and every e-mail (hidden by the custom sandbox) holds `LEAK` too. A
//! result that contains neither shows nothing alice may not see.

#![allow(dead_code)]

use std::io::Write;

use rusqlite::Connection;

/// The schema, in a dialect-neutral subset of SQL (schemas `public` and
/// `audit` must exist).
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE public.accounts (id INTEGER, email TEXT, plan TEXT, tenant_id INTEGER, created_at TIMESTAMP)",
    "CREATE TABLE public.orders (id INTEGER, account_id INTEGER, product_id INTEGER, total DECIMAL(10,2), tenant_id INTEGER, status TEXT)",
    "CREATE TABLE public.products (id INTEGER, name TEXT, category TEXT, price DECIMAL(10,2))",
    "CREATE TABLE public.events (id INTEGER, account_id INTEGER, kind TEXT, tenant_id INTEGER, region TEXT, at TIMESTAMP)",
    "CREATE TABLE audit.logins (id INTEGER, account_id INTEGER, ip TEXT)",
];

/// Insert statements for the dataset.
pub fn inserts() -> Vec<String> {
    let mut v = Vec::new();
    let tenants = [
        (42, "eu", 4, false),
        (42, "us", 2, true),
        (7, "us", 5, true),
        (99, "eu", 3, true),
    ];
    let mut acc = 0;
    let mut ord = 0;
    let mut ev = 0;
    for (tenant, region, n, hidden) in tenants {
        for i in 0..n {
            acc += 1;
            let aid = if hidden && tenant != 42 {
                900_000 + acc
            } else {
                acc
            };
            let plan = if tenant == 42 { "pro" } else { "LEAK-plan" };
            if region == "eu" || tenant != 42 {
                v.push(format!(
                    "INSERT INTO public.accounts VALUES ({aid}, 'LEAK-{aid}@mail', '{plan}', {tenant}, '2024-01-0{} 10:00:00')",
                    1 + i % 9
                ));
            }
            for k in 0..(i + 1) {
                ord += 1;
                let oid = if tenant == 42 { ord } else { 900_000 + ord };
                let status = if tenant == 42 { "paid" } else { "LEAK-status" };
                v.push(format!(
                    "INSERT INTO public.orders VALUES ({oid}, {aid}, {}, {}.50, {tenant}, '{status}')",
                    1 + (k % 3),
                    10 * (k + 1)
                ));
            }
            ev += 1;
            let visible = tenant == 42 && region == "eu";
            let eid = if visible { ev } else { 900_000 + ev };
            let kind = if visible { "login" } else { "LEAK-kind" };
            v.push(format!(
                "INSERT INTO public.events VALUES ({eid}, {aid}, '{kind}', {tenant}, '{region}', '2024-02-01 09:00:00')"
            ));
        }
    }
    for (id, name, cat) in [
        (1, "Widget", "tools"),
        (2, "Gadget", "toys"),
        (3, "Ünïcode ☃", "misc"),
    ] {
        v.push(format!(
            "INSERT INTO public.products VALUES ({id}, '{name}', '{cat}', {id}9.99)"
        ));
    }
    v.push("INSERT INTO public.products VALUES (4, NULL, NULL, NULL)".into());
    v.push("INSERT INTO audit.logins VALUES (900001, 1, 'LEAK-ip')".into());
    v
}

/// An in-memory SQLite database with `public` and `audit` attached.
pub fn sqlite() -> Connection {
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch("ATTACH ':memory:' AS public; ATTACH ':memory:' AS audit;")
        .unwrap();
    for s in SCHEMA {
        c.execute(s, []).unwrap();
    }
    for s in inserts() {
        c.execute(&s, []).unwrap();
    }
    c
}

/// Runs SQL on SQLite; returns every cell as text (`None` on SQL error).
pub fn sqlite_rows(c: &Connection, sql: &str) -> Option<Vec<Vec<String>>> {
    let mut stmt = c.prepare(sql).ok()?;
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    r.get_ref(i).map(|v| match v {
                        rusqlite::types::ValueRef::Null => "NULL".to_string(),
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        rusqlite::types::ValueRef::Real(f) => f.to_string(),
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .ok()?;
    rows.collect::<Result<Vec<_>, _>>().ok()
}

/// The leak markers a result must not contain.
pub fn leaked(rows: &[Vec<String>]) -> Option<String> {
    for r in rows {
        for cell in r {
            if cell.contains("LEAK") {
                return Some(cell.clone());
            }
            if let Ok(n) = cell.parse::<i64>() {
                if n >= 900_000 {
                    return Some(cell.clone());
                }
            }
        }
    }
    None
}

/// The SaaS policy, for SQLite (schemas attached as `public` and `audit`).
pub fn saas_policy() -> sqlsandbox::Policy {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/saas.yaml"))
        .unwrap();
    sqlsandbox::Policy::from_yaml(&src, "saas.yaml").unwrap()
}

/// Records that a server test ran to completion, for `.ci/run` (which fails
/// when a marker is missing).
pub fn mark_done(name: &str, summary: &str) {
    let _ = writeln!(std::io::stderr(), "{name}: {summary}");
    if let Ok(dir) = std::env::var("SQLSANDBOX_DIFF_MARKERS") {
        let path = std::path::Path::new(&dir).join(name);
        std::fs::write(&path, format!("{summary}\n"))
            .unwrap_or_else(|e| panic!("cannot write marker {}: {e}", path.display()));
    }
}

/// Runs `body` with a client connected to a fresh PostgreSQL database
/// holding the leak-marker dataset (schemas `public` and `audit`), created
/// under `SQLSANDBOX_PG_URL` and dropped afterwards, also on failure.
/// Without the variable it panics (its callers are `#[ignore]`d).
pub fn with_pg_dataset(test: &str, prefix: &str, body: impl FnOnce(&mut postgres::Client)) {
    // The callers are #[ignore = "needs SQLSANDBOX_PG_URL"]: run with
    // --include-ignored, they fail without their server.
    let Ok(url) = std::env::var("SQLSANDBOX_PG_URL") else {
        panic!("{test}: set SQLSANDBOX_PG_URL (this server test is #[ignore]d by default and runs with --include-ignored)");
    };
    let name = format!("{prefix}_{}", std::process::id());
    let result = with_scratch_pg_database(&url, &name, |db_url| {
        let mut c = postgres::Client::connect(db_url, postgres::NoTls).unwrap();
        c.batch_execute("CREATE SCHEMA audit").unwrap();
        for s in SCHEMA {
            c.batch_execute(s).unwrap();
        }
        for s in inserts() {
            c.batch_execute(&s).unwrap();
        }
        body(&mut c);
    });
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Runs `body` with the URL of a new, empty PostgreSQL database `name`
/// on the server of `url`, and drops the database afterwards, also when
/// `body` panics. Returns what `body` returned, or its panic, so that the
/// caller can clean up more before resuming it.
pub fn with_scratch_pg_database<T>(
    url: &str,
    name: &str,
    body: impl FnOnce(&str) -> T,
) -> std::thread::Result<T> {
    let (base, _) = url
        .rsplit_once('/')
        .expect("SQLSANDBOX_PG_URL ends in /database");
    let mut admin = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let db_url = format!("{base}/{name}");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&db_url)));
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    result
}

/// Runs `body` with the URL of a fresh MariaDB database `name` (utf8mb4,
/// case-insensitive collation), dropped afterwards even when `body`
/// panics (the panic is returned).
#[allow(dead_code)]
pub fn with_scratch_mariadb_database<T>(
    url: &str,
    name: &str,
    body: impl FnOnce(&str) -> T,
) -> std::thread::Result<T> {
    use mysql::prelude::Queryable;
    let mut admin =
        mysql::Conn::new(mysql::Opts::from_url(url).expect("URL")).unwrap_or_else(|e| {
            panic!("SQLSANDBOX_MYSQL_URL={url} is set but MariaDB is not reachable: {e}")
        });
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    admin
        .query_drop(format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ))
        .unwrap();
    let (base, _) = url.rsplit_once('/').expect("URL ends in /database");
    let db_url = format!("{base}/{name}");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&db_url)));
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    result
}

/// The rows `sql` returns, as text (`NULL` for nulls), in the server's order.
pub fn pg_rows(c: &mut postgres::Client, sql: &str) -> Result<Vec<Vec<String>>, postgres::Error> {
    Ok(c.simple_query(sql)?
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// A small deterministic generator (xorshift64*) for the seeded generated
/// tests (`pg_rules`, `rules_cells`, `pg_write_rules`); the seed must not
/// be 0.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
