//! End-to-end checks against a real database: the SaaS policy is rewritten
//! for SQLite, the rewritten SQL runs on an in-memory SQLite database, and
//! its rows are compared with hand-written ground-truth queries that apply
//! the tenant filter directly.
//!
//! Row ids encode their tenant (`tenant * 1000 + n`; products, which are
//! shared, have ids below 1000), so a row of another tenant is recognisable
//! in any `…id` column of any result.

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{params_from_iter, Connection};
use sqlsandbox::{
    AttributeValue, BoundParam, Dialect, Options, Policy, Principal, Rewritten, Scalar,
};

// ----- policy ---------------------------------------------------------------

/// The groups, users and questions of `policies/saas.yaml`, for SQLite
/// (schema `main`; `audit.logins` is left out: SQLite has no `audit` schema).
const SAAS_SQLITE: &str = r#"
version: 1
databases:
  warehouse:
    dialect: sqlite
    default_schema: main
    tables:
      main.accounts:
        columns: {id: integer, email: text, plan: text, tenant_id: integer, created_at: timestamp}
      main.orders:
        columns: {id: integer, account_id: integer, product_id: integer, total: decimal, tenant_id: integer, status: text}
      main.products:
        columns: {id: integer, name: text, category: text, price: decimal}
      main.events:
        columns: {id: integer, account_id: integer, kind: text, tenant_id: integer, region: text, at: timestamp}
questions:
  sandboxed_accounts:
    database: warehouse
    collection: admin_only
    sql: SELECT id, plan, tenant_id, created_at FROM accounts WHERE tenant_id = {{tenant}}
  big_orders:
    database: warehouse
    collection: customer_reports
    sql: SELECT id, total FROM orders WHERE total > 100
collections:
  admin_only: {}
  customer_reports: {}
groups:
  analysts:
    data: {warehouse: unrestricted}
    native: {warehouse: true}
    collections: {customer_reports: curate}
  customers:
    data:
      warehouse:
        main:
          accounts: {sandbox: {question: sandboxed_accounts, parameters: {tenant: tenant}}}
          orders: {sandbox: {column: tenant_id, attribute: tenant}}
          events: {sandbox: {filters: [{column: tenant_id, attribute: tenant}, {column: region, attribute: region}]}}
          products: unrestricted
    native: {warehouse: true}
    collections: {customer_reports: view}
  builder_only:
    data:
      warehouse:
        main:
          products: unrestricted
users:
  alice: {groups: [customers], attributes: {tenant: 42, region: eu}}
  bob: {groups: [customers], attributes: {tenant: 7, region: us}}
  carol: {groups: [analysts]}
  dave: {groups: [customers]}
  erin: {groups: [builder_only]}
  root: {groups: [administrators]}
"#;

/// A variant where only text columns are sandboxed: `events` through a
/// custom question on `region`, `orders` through a basic filter on `status`
/// (both bound to the attribute `region`).
const TEXT_SANDBOX_SQLITE: &str = r#"
version: 1
databases:
  warehouse:
    dialect: sqlite
    default_schema: main
    tables:
      main.orders:
        columns: {id: integer, account_id: integer, product_id: integer, total: decimal, tenant_id: integer, status: text}
      main.events:
        columns: {id: integer, account_id: integer, kind: text, tenant_id: integer, region: text, at: timestamp}
questions:
  events_in_region:
    database: warehouse
    sql: SELECT id, account_id, kind, tenant_id, region FROM events WHERE region = {{region}}
groups:
  customers:
    data:
      warehouse:
        main:
          events: {sandbox: {question: events_in_region, parameters: {region: region}}}
          orders: {sandbox: {column: status, attribute: region}}
    native: {warehouse: true}
"#;

fn saas_policy() -> Policy {
    Policy::from_yaml(SAAS_SQLITE, "saas_sqlite.yaml").expect("the SQLite SaaS policy loads")
}

fn user(policy: &Policy, name: &str) -> Principal {
    Principal::from_user(policy, name).unwrap_or_else(|e| panic!("user {name}: {e}"))
}

/// A `customers` principal with the given attributes.
fn customer(policy: &Policy, attrs: Vec<(&str, AttributeValue)>) -> Principal {
    Principal::new(policy, "x", ["customers"], attrs).expect("principal")
}

// ----- database -------------------------------------------------------------

const SCHEMA: &str = "
CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT, plan TEXT, tenant_id INTEGER, created_at TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, account_id INTEGER, product_id INTEGER, total NUMERIC, tenant_id INTEGER, status TEXT);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price NUMERIC);
CREATE TABLE events (id INTEGER PRIMARY KEY, account_id INTEGER, kind TEXT, tenant_id INTEGER, region TEXT, at TEXT);
";

/// Three tenants of different sizes (42: 4 accounts, 7: 3, 99: 2), NULLs,
/// unicode, events in `eu` and `us`, and a few orders that point at another
/// tenant's account (dirty data a join must not reveal).
const DATA: &str = "
INSERT INTO accounts VALUES
  (42001, 'ana@acme.example', 'pro', 42, '2024-01-05 10:00:00'),
  (42002, NULL, 'free', 42, '2024-02-01 00:00:00'),
  (42003, 'zoë@bücher.de', 'entreprise ✓', 42, NULL),
  (42004, 'x@y', NULL, 42, '2024-03-03 03:03:03'),
  (7001, 'bob@b.example', 'pro', 7, '2023-12-31 23:59:59'),
  (7002, NULL, 'free', 7, '2024-01-01 00:00:00'),
  (7003, 'björk@ís.is', '無料', 7, '2024-05-05 05:05:05'),
  (99001, 'q@q.example', 'pro', 99, '2022-01-01 00:00:00'),
  (99002, 'r@r.example', NULL, 99, NULL);
INSERT INTO products VALUES
  (1, 'Widget', 'tools', 9.99),
  (2, 'Gädget', 'tools', 25),
  (3, 'Ünïcödé mug ☕', NULL, 12.5),
  (4, '手袋', 'apparel', 30),
  (5, 'Unused', 'misc', NULL),
  (6, 'O''Brien''s tea', 'food', 4.5);
INSERT INTO orders VALUES
  (42501, 42001, 1, 19.98, 42, 'paid'),
  (42502, 42001, 2, 25, 42, 'paid'),
  (42503, 42002, 3, 12.5, 42, NULL),
  (42504, 42003, NULL, 100, 42, 'refunded'),
  (42505, 42003, 4, 150, 42, 'paid'),
  (42506, 42004, 6, 4.5, 42, 'pending'),
  (42507, 7001, 1, 9.99, 42, 'paid'),
  (42508, NULL, 2, NULL, 42, 'cancelled'),
  (7501, 7001, 1, 9.99, 7, 'paid'),
  (7502, 7001, 4, 60, 7, 'paid'),
  (7503, 7003, 3, NULL, 7, 'pending'),
  (7504, 42001, 2, 25, 7, 'paid'),
  (99501, 99001, 5, 1000, 99, 'paid'),
  (99502, 99002, 1, 9.99, 99, NULL),
  (99503, 99001, 2, 250, 99, 'paid');
INSERT INTO events VALUES
  (42801, 42001, 'login', 42, 'eu', '2024-06-01 08:00:00'),
  (42802, 42001, 'purchase', 42, 'eu', '2024-06-01 08:05:00'),
  (42803, 42002, 'login', 42, 'us', '2024-06-02 09:00:00'),
  (42804, 42003, 'logout', 42, NULL, NULL),
  (42805, 42003, 'purchase', 42, 'eu', '2024-06-03 10:00:00'),
  (42806, 42004, 'ログイン', 42, 'eu', '2024-06-04 11:00:00'),
  (7801, 7001, 'login', 7, 'us', '2024-06-01 12:00:00'),
  (7802, 7002, 'purchase', 7, 'us', '2024-06-01 12:30:00'),
  (7803, 7003, 'login', 7, 'eu', '2024-06-02 13:00:00'),
  (7804, 7001, 'logout', 7, 'us', NULL),
  (99801, 99001, 'login', 99, 'eu', '2024-06-05 14:00:00'),
  (99802, 99002, 'login', 99, 'us', '2024-06-05 15:00:00');
";

fn database() -> Connection {
    let conn = Connection::open_in_memory().expect("in-memory SQLite");
    conn.execute_batch(SCHEMA).expect("schema");
    conn.execute_batch(DATA).expect("data");
    conn
}

/// Row counts of the four tables (to prove nothing was dropped or changed).
fn table_counts(conn: &Connection) -> Vec<(String, i64)> {
    ["accounts", "orders", "products", "events"]
        .iter()
        .map(|t| {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("table {t} is gone or broken: {e}"));
            (t.to_string(), n)
        })
        .collect()
}

// ----- running and comparing ------------------------------------------------

/// A result set: column names and rows rendered as strings.
#[derive(Debug, Clone, PartialEq)]
struct Output {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Output {
    /// The rows as a sorted multiset of printed rows.
    fn multiset(&self) -> Vec<String> {
        let mut v: Vec<String> = self.rows.iter().map(|r| r.join(" | ")).collect();
        v.sort();
        v
    }

    /// The rows in order, printed.
    fn ordered(&self) -> Vec<String> {
        self.rows.iter().map(|r| r.join(" | ")).collect()
    }

    /// Integer values of the columns holding row ids (names ending in `id`,
    /// except the foreign keys `account_id` and `product_id`: a few orders
    /// deliberately point at another tenant's account).
    fn ids(&self) -> Vec<i64> {
        let mut out = Vec::new();
        for row in &self.rows {
            for (c, cell) in self.columns.iter().zip(row) {
                let c = c.to_lowercase();
                if c.ends_with("id") && c != "account_id" && c != "product_id" {
                    if let Some(n) = cell.strip_prefix("i:").and_then(|s| s.parse().ok()) {
                        out.push(n);
                    }
                }
            }
        }
        out
    }
}

fn render(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".to_string(),
        ValueRef::Integer(i) => format!("i:{i}"),
        ValueRef::Real(f) => format!("r:{f:?}"),
        ValueRef::Text(t) => format!("t:{:?}", String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => format!("b:{b:?}"),
    }
}

fn to_sql_value(s: &Scalar) -> SqlValue {
    match s {
        Scalar::Integer(i) => SqlValue::Integer(*i),
        Scalar::Text(t) => SqlValue::Text(t.clone()),
        Scalar::Number(n) => SqlValue::Real(
            n.parse()
                .unwrap_or_else(|_| panic!("bad decimal parameter {n}")),
        ),
        Scalar::Bool(b) => SqlValue::Integer(i64::from(*b)),
    }
}

/// Runs one query with positional parameters.
fn run_sql(conn: &Connection, sql: &str, params: &[SqlValue]) -> rusqlite::Result<Output> {
    let mut stmt = conn.prepare(sql)?;
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let n = columns.len();
    let rows = stmt
        .query_map(params_from_iter(params.iter()), |row| {
            (0..n)
                .map(|i| row.get_ref(i).map(render))
                .collect::<rusqlite::Result<Vec<_>>>()
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Output { columns, rows })
}

/// Runs a rewritten query with its bind parameters.
fn run_rewritten(conn: &Connection, rw: &Rewritten) -> Output {
    let params: Vec<SqlValue> = rw
        .params
        .iter()
        .map(|p: &BoundParam| to_sql_value(&p.value))
        .collect();
    run_sql(conn, &rw.sql, &params).unwrap_or_else(|e| {
        panic!(
            "SQLite rejected rewritten SQL\n  {}\n  params {:?}\n  error: {e}",
            short(&rw.sql),
            rw.params
        )
    })
}

/// At most 300 characters of `s`, for messages.
fn short(s: &str) -> String {
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s.to_string()
    }
}

fn options(params: bool) -> Options {
    Options::default()
        .with_dialect(Dialect::Sqlite)
        .with_params(params)
}

/// Rewrites `sql` for `who` in both modes (literals and bind parameters),
/// runs both, checks they agree, and returns the rows and the literal SQL.
fn rewrite_and_run(
    conn: &Connection,
    policy: &Policy,
    who: &Principal,
    sql: &str,
) -> Result<(Output, String), sqlsandbox::Error> {
    let literal = policy.rewrite(who, sql, &options(false))?;
    assert!(
        literal.params.is_empty(),
        "params: false must not return parameters: {:?}",
        literal.params
    );
    let bound = policy.rewrite(who, sql, &options(true))?;
    // Queries and values here contain no `?`: every `?` is a placeholder.
    assert_eq!(
        bound.sql.matches('?').count(),
        bound.params.len(),
        "placeholders vs parameters in {}",
        bound.sql
    );
    assert_eq!(
        bound.params.is_empty(),
        bound.sql == literal.sql,
        "parameters must replace exactly the literals:\n  {}\n  {}",
        literal.sql,
        bound.sql
    );
    let a = run_rewritten(conn, &literal);
    let b = run_rewritten(conn, &bound);
    assert_eq!(
        a.multiset(),
        b.multiset(),
        "literal and bind-parameter rewrites disagree for {sql:?}\n  literal: {}\n  bound:   {}",
        literal.sql,
        bound.sql
    );
    assert_eq!(a.columns, b.columns);
    Ok((a, literal.sql))
}

/// Tenants a row id belongs to (`None` for shared rows such as products).
fn tenant_of(id: i64) -> Option<i64> {
    (id >= 1000).then_some(id / 1000)
}

fn assert_only_tenants(out: &Output, allowed: &[i64], context: &str) {
    for id in out.ids() {
        if let Some(t) = tenant_of(id) {
            assert!(
                allowed.contains(&t),
                "{context}: row id {id} of tenant {t} returned (allowed tenants {allowed:?})\n  rows: {:#?}",
                out.rows
            );
        }
    }
    if let Some(i) = out
        .columns
        .iter()
        .position(|c| c.eq_ignore_ascii_case("tenant_id"))
    {
        for row in &out.rows {
            let cell = &row[i];
            assert!(
                allowed.iter().any(|t| *cell == format!("i:{t}")),
                "{context}: tenant_id {cell} returned (allowed tenants {allowed:?})"
            );
        }
    }
}

// ----- the query corpus -----------------------------------------------------

/// A query and its ground truth; in `truth`, `{t}` is the user's tenant and
/// `{r}` the user's region (as SQL literals).
struct Case {
    name: &'static str,
    sql: &'static str,
    truth: &'static str,
    /// Compare rows in order (the query has a total ORDER BY).
    ordered: bool,
}

const fn case(name: &'static str, sql: &'static str, truth: &'static str) -> Case {
    Case {
        name,
        sql,
        truth,
        ordered: false,
    }
}

const CASES: &[Case] = &[
    case(
        "plain select",
        "SELECT id, total, status FROM orders",
        "SELECT id, total, status FROM orders WHERE tenant_id = {t}",
    ),
    case(
        "select star",
        "SELECT * FROM orders",
        "SELECT * FROM orders WHERE tenant_id = {t}",
    ),
    case(
        "select star, custom sandbox",
        "SELECT * FROM accounts",
        "SELECT id, plan, tenant_id, created_at FROM accounts WHERE tenant_id = {t}",
    ),
    case(
        "events: two filters",
        "SELECT id, kind, region, at FROM events",
        "SELECT id, kind, region, at FROM events WHERE tenant_id = {t} AND region = {r}",
    ),
    case(
        "where on top of the sandbox",
        "SELECT id FROM orders WHERE status = 'paid' OR total IS NULL",
        "SELECT id FROM orders WHERE tenant_id = {t} AND (status = 'paid' OR total IS NULL)",
    ),
    case(
        "inner joins orders/accounts/products",
        "SELECT o.id, a.plan, p.name, o.total FROM orders o JOIN accounts a ON a.id = o.account_id JOIN products p ON p.id = o.product_id",
        "SELECT o.id, a.plan, p.name, o.total FROM orders o JOIN accounts a ON a.id = o.account_id AND a.tenant_id = {t} \
         JOIN products p ON p.id = o.product_id WHERE o.tenant_id = {t}",
    ),
    case(
        "left join accounts -> orders",
        "SELECT a.id AS acct_id, o.id AS order_id, o.total FROM accounts a LEFT JOIN orders o ON o.account_id = a.id",
        "SELECT a.id AS acct_id, o.id AS order_id, o.total FROM accounts a \
         LEFT JOIN orders o ON o.account_id = a.id AND o.tenant_id = {t} WHERE a.tenant_id = {t}",
    ),
    case(
        "left join unrestricted products -> orders, grouped",
        "SELECT p.name, count(o.id) AS n, sum(o.total) AS s FROM products p LEFT JOIN orders o ON o.product_id = p.id GROUP BY p.name",
        "SELECT p.name, count(o.id) AS n, sum(o.total) AS s FROM products p \
         LEFT JOIN orders o ON o.product_id = p.id AND o.tenant_id = {t} GROUP BY p.name",
    ),
    case(
        "CTE named like the table",
        "WITH orders AS (SELECT * FROM orders) SELECT id, total FROM orders WHERE total > 10",
        "SELECT id, total FROM orders WHERE tenant_id = {t} AND total > 10",
    ),
    case(
        "CTE over the custom-sandboxed table",
        "WITH a2 AS (SELECT * FROM accounts) SELECT count(*) AS n, max(id) AS max_id FROM a2",
        "SELECT count(*) AS n, max(id) AS max_id FROM accounts WHERE tenant_id = {t}",
    ),
    case(
        "CTE named like the table, body reading the qualified table",
        "WITH orders AS (SELECT * FROM main.orders WHERE total IS NOT NULL) SELECT o.id, o.total FROM orders o",
        "SELECT id, total FROM orders WHERE tenant_id = {t} AND total IS NOT NULL",
    ),
    case(
        "CTE with another name, used twice",
        "WITH big AS (SELECT account_id, total FROM orders WHERE total >= 20) \
         SELECT b1.account_id, b1.total FROM big b1 WHERE b1.total = (SELECT max(total) FROM big b2 WHERE b2.account_id = b1.account_id)",
        "SELECT account_id, total FROM orders o1 WHERE tenant_id = {t} AND total >= 20 AND total = \
         (SELECT max(total) FROM orders o2 WHERE o2.tenant_id = {t} AND o2.total >= 20 AND o2.account_id = o1.account_id)",
    ),
    case(
        "subquery in WHERE (IN)",
        "SELECT id, plan FROM accounts WHERE id IN (SELECT account_id FROM orders WHERE total > 20)",
        "SELECT id, plan FROM accounts WHERE tenant_id = {t} AND id IN (SELECT account_id FROM orders WHERE tenant_id = {t} AND total > 20)",
    ),
    case(
        "subquery in WHERE (NOT IN)",
        "SELECT id FROM products WHERE id NOT IN (SELECT product_id FROM orders WHERE product_id IS NOT NULL)",
        "SELECT id FROM products WHERE id NOT IN (SELECT product_id FROM orders WHERE tenant_id = {t} AND product_id IS NOT NULL)",
    ),
    case(
        "correlated EXISTS",
        "SELECT a.id FROM accounts a WHERE EXISTS (SELECT 1 FROM events e WHERE e.account_id = a.id)",
        "SELECT a.id FROM accounts a WHERE a.tenant_id = {t} AND EXISTS \
         (SELECT 1 FROM events e WHERE e.account_id = a.id AND e.tenant_id = {t} AND e.region = {r})",
    ),
    case(
        "scalar subquery in SELECT",
        "SELECT a.id, (SELECT count(*) FROM orders o WHERE o.account_id = a.id) AS n_orders FROM accounts a",
        "SELECT a.id, (SELECT count(*) FROM orders o WHERE o.account_id = a.id AND o.tenant_id = {t}) AS n_orders \
         FROM accounts a WHERE a.tenant_id = {t}",
    ),
    case(
        "UNION",
        "SELECT account_id FROM orders UNION SELECT account_id FROM events",
        "SELECT account_id FROM orders WHERE tenant_id = {t} UNION SELECT account_id FROM events WHERE tenant_id = {t} AND region = {r}",
    ),
    case(
        "UNION ALL over accounts and orders ids",
        "SELECT id FROM accounts UNION ALL SELECT id FROM orders",
        "SELECT id FROM accounts WHERE tenant_id = {t} UNION ALL SELECT id FROM orders WHERE tenant_id = {t}",
    ),
    case(
        "aggregates with GROUP BY / HAVING",
        "SELECT status, count(*) AS n, sum(total) AS s, avg(total) AS a FROM orders GROUP BY status HAVING count(*) >= 1",
        "SELECT status, count(*) AS n, sum(total) AS s, avg(total) AS a FROM orders WHERE tenant_id = {t} GROUP BY status HAVING count(*) >= 1",
    ),
    case(
        "count(*) only",
        "SELECT count(*) FROM orders",
        "SELECT count(*) FROM orders WHERE tenant_id = {t}",
    ),
    Case {
        name: "ORDER BY / LIMIT / OFFSET",
        sql: "SELECT id, total FROM orders ORDER BY total DESC, id LIMIT 3 OFFSET 1",
        truth: "SELECT id, total FROM orders WHERE tenant_id = {t} ORDER BY total DESC, id LIMIT 3 OFFSET 1",
        ordered: true,
    },
    case(
        "self-join",
        "SELECT o1.id, o2.id AS other_id FROM orders o1 JOIN orders o2 ON o1.account_id = o2.account_id AND o1.id < o2.id",
        "SELECT o1.id, o2.id AS other_id FROM orders o1 JOIN orders o2 ON o1.account_id = o2.account_id AND o1.id < o2.id \
         WHERE o1.tenant_id = {t} AND o2.tenant_id = {t}",
    ),
    case(
        "derived table aliased like the table",
        "SELECT orders.id, orders.total FROM (SELECT * FROM orders) AS orders WHERE orders.total > 20",
        "SELECT id, total FROM orders WHERE tenant_id = {t} AND total > 20",
    ),
    case(
        "qualified column refs (schema.table.column)",
        "SELECT main.orders.id, main.orders.status FROM main.orders WHERE main.orders.total < 100",
        "SELECT id, status FROM orders WHERE tenant_id = {t} AND total < 100",
    ),
    case(
        "qualified column refs (table.column), unqualified table",
        "SELECT orders.id, orders.account_id FROM orders ORDER BY orders.id",
        "SELECT id, account_id FROM orders WHERE tenant_id = {t}",
    ),
    case(
        "schema.table.column with an unqualified table name",
        "SELECT main.orders.id FROM orders",
        "SELECT id FROM orders WHERE tenant_id = {t}",
    ),
    case(
        "table.* projection",
        "SELECT a.*, o.id AS order_id FROM accounts a JOIN orders o ON o.account_id = a.id",
        "SELECT a.id, a.plan, a.tenant_id, a.created_at, o.id AS order_id FROM accounts a JOIN orders o ON o.account_id = a.id \
         WHERE a.tenant_id = {t} AND o.tenant_id = {t}",
    ),
    case(
        "case-insensitive and quoted table names",
        "SELECT id FROM ORDERS UNION ALL SELECT id FROM \"orders\" UNION ALL SELECT id FROM Main.Orders",
        "SELECT id FROM orders WHERE tenant_id = {t} UNION ALL SELECT id FROM orders WHERE tenant_id = {t} \
         UNION ALL SELECT id FROM orders WHERE tenant_id = {t}",
    ),
    case(
        "TABLE statement (read as SELECT * FROM)",
        "TABLE orders",
        "SELECT * FROM orders WHERE tenant_id = {t}",
    ),
    case(
        "TABLE statement over a custom sandbox",
        "SELECT * FROM (TABLE accounts) a",
        "SELECT id, plan, tenant_id, created_at FROM accounts WHERE tenant_id = {t}",
    ),
    case(
        "window function",
        "SELECT id, row_number() OVER (PARTITION BY account_id ORDER BY id) AS rn FROM orders",
        "SELECT id, row_number() OVER (PARTITION BY account_id ORDER BY id) AS rn FROM orders WHERE tenant_id = {t}",
    ),
    case(
        "nested derived tables and IN over events",
        "SELECT x.kind, count(*) AS n FROM (SELECT e.kind FROM events e WHERE e.account_id IN (SELECT id FROM accounts)) x GROUP BY x.kind",
        "SELECT kind, count(*) AS n FROM events WHERE tenant_id = {t} AND region = {r} \
         AND account_id IN (SELECT id FROM accounts WHERE tenant_id = {t}) GROUP BY kind",
    ),
];

/// Fills `{t}` and `{r}` in a ground-truth query.
fn truth_sql(template: &str, tenant: i64, region: &str) -> String {
    template
        .replace("{t}", &tenant.to_string())
        .replace("{r}", &format!("'{region}'"))
}

/// Runs every case for one user; returns how many cases were compared.
fn check_corpus(
    conn: &Connection,
    policy: &Policy,
    name: &str,
    tenant: i64,
    region: &str,
) -> usize {
    let who = user(policy, name);
    let mut compared = 0;
    for c in CASES {
        let context = format!("{name} / {} / {}", c.name, c.sql);
        let (got, rewritten) = rewrite_and_run(conn, policy, &who, c.sql)
            .unwrap_or_else(|e| panic!("{context}: refused: [{}] {e}", e.code()));
        let truth = run_sql(conn, &truth_sql(c.truth, tenant, region), &[])
            .unwrap_or_else(|e| panic!("{context}: ground truth fails: {e}"));
        if c.ordered {
            assert_eq!(
                got.ordered(),
                truth.ordered(),
                "{context}\n  rewritten: {rewritten}"
            );
        } else {
            assert_eq!(
                got.multiset(),
                truth.multiset(),
                "{context}\n  rewritten: {rewritten}"
            );
        }
        assert_only_tenants(&got, &[tenant], &context);
        compared += 1;
    }
    compared
}

// ----- tests ----------------------------------------------------------------

#[test]
fn corpus_matches_ground_truth_for_alice_and_bob() {
    let conn = database();
    let policy = saas_policy();
    let before = table_counts(&conn);
    let pairs = check_corpus(&conn, &policy, "alice", 42, "eu")
        + check_corpus(&conn, &policy, "bob", 7, "us");
    assert!(pairs >= 24, "only {pairs} (user, query) pairs compared");
    assert_eq!(table_counts(&conn), before);
    eprintln!("compared {pairs} (user x query) pairs, each with literals and with bind parameters");
}

#[test]
fn ground_truth_is_not_trivial() {
    // Each user sees some but not all rows of every sandboxed table, so the
    // comparisons above can tell a missing filter from a working one.
    let conn = database();
    let all: i64 = conn
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    for (tenant, region) in [(42, "eu"), (7, "us")] {
        for (table, filter) in [
            ("orders", format!("tenant_id = {tenant}")),
            ("accounts", format!("tenant_id = {tenant}")),
            (
                "events",
                format!("tenant_id = {tenant} AND region = '{region}'"),
            ),
        ] {
            let n: i64 = conn
                .query_row(
                    &format!("SELECT count(*) FROM {table} WHERE {filter}"),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(n > 0, "tenant {tenant} has no rows in {table}");
        }
        let mine: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM orders WHERE tenant_id = {tenant}"),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(mine < all);
    }
}

#[test]
fn analyst_sees_everything_and_unknown_attributes_are_refused() {
    let conn = database();
    let policy = saas_policy();
    let carol = user(&policy, "carol");
    let (out, sql) = rewrite_and_run(&conn, &policy, &carol, "SELECT * FROM orders").unwrap();
    // Unrestricted tables are schema-qualified (no search_path games), not filtered.
    assert_eq!(sql, "SELECT * FROM main.orders AS orders");
    assert_eq!(out.rows.len(), 15);
    let (out, _) = rewrite_and_run(&conn, &policy, &carol, "SELECT email FROM accounts").unwrap();
    assert_eq!(out.rows.len(), 9);

    // dave is a customer without a tenant: refused, never unfiltered.
    let dave = user(&policy, "dave");
    let err = policy
        .rewrite(&dave, "SELECT * FROM orders", &options(false))
        .unwrap_err();
    assert_eq!(err.code(), "SB301", "{err}");
    // erin may not read orders at all.
    let erin = user(&policy, "erin");
    assert!(policy
        .rewrite(&erin, "SELECT * FROM orders", &options(false))
        .is_err());
}

#[test]
fn custom_sandbox_hides_email() {
    let conn = database();
    let policy = saas_policy();
    for name in ["alice", "bob"] {
        let who = user(&policy, name);
        for sql in [
            "SELECT * FROM accounts",
            "SELECT a.* FROM accounts a",
            "SELECT accounts.* FROM accounts",
        ] {
            let (out, rewritten) = rewrite_and_run(&conn, &policy, &who, sql).unwrap();
            assert!(!out.rows.is_empty(), "{name}: {sql} returned nothing");
            assert!(
                !out.columns.iter().any(|c| c.eq_ignore_ascii_case("email")),
                "{name}: {sql} returned columns {:?}\n  rewritten: {rewritten}",
                out.columns
            );
            assert!(
                !out.rows.iter().flatten().any(|cell| cell.contains('@')),
                "{name}: {sql} returned an e-mail address: {:?}",
                out.rows
            );
        }
        for sql in [
            "SELECT email FROM accounts",
            "SELECT a.email FROM accounts a",
            "SELECT accounts.email FROM accounts",
            "SELECT id FROM accounts WHERE email LIKE '%@%'",
            "SELECT main.accounts.email FROM main.accounts",
            "SELECT count(*) FROM accounts GROUP BY email",
        ] {
            let err = policy
                .rewrite(&who, sql, &options(false))
                .expect_err(&format!("{name}: {sql} must be refused"));
            assert_eq!(err.code(), "SB303", "{name}: {sql}: {err}");
        }
    }
}

#[test]
fn hidden_columns_outside_the_checked_clauses_fail_closed() {
    // ORDER BY (and a correlated scalar subquery) are not column-checked, so
    // these are not refused with SB303; they must still never produce rows,
    // because the sandbox subquery does not project `email` at all.
    let conn = database();
    let policy = saas_policy();
    let alice = user(&policy, "alice");
    for sql in [
        "SELECT id FROM accounts ORDER BY email",
        "SELECT o.id FROM orders o JOIN accounts a ON a.id = o.account_id ORDER BY a.email",
        "SELECT (SELECT email) FROM accounts",
    ] {
        match policy.rewrite(&alice, sql, &options(false)) {
            Err(e) => assert_eq!(e.code(), "SB303", "{sql}: {e}"),
            Ok(rw) => {
                let res = run_sql(&conn, &rw.sql, &[]);
                assert!(
                    res.is_err(),
                    "{sql} ran: {:?}\n  rewritten: {}",
                    res,
                    rw.sql
                );
            }
        }
    }
}

#[test]
fn hidden_column_in_order_by_is_refused() {
    let policy = saas_policy();
    let alice = user(&policy, "alice");
    for sql in [
        "SELECT id FROM accounts ORDER BY email",
        "SELECT o.id FROM orders o JOIN accounts a ON a.id = o.account_id ORDER BY a.email",
    ] {
        let err = policy.rewrite(&alice, sql, &options(false)).expect_err(sql);
        assert_eq!(err.code(), "SB303", "{sql}: {err}");
    }
}

/// Values an attacker might put into a text attribute.
fn hostile_values() -> Vec<String> {
    vec![
        "eu' OR '1'='1".into(),
        "\\' OR 1=1 --".into(),
        "x'); DROP TABLE orders; --".into(),
        "$$".into(),
        "$$ OR 1=1 $$".into(),
        "'".into(),
        "''".into(),
        "\\".into(),
        "\\'".into(),
        "eu\\".into(),
        "\"".into(),
        "eu\" OR \"1\"=\"1".into(),
        "eu' --".into(),
        "eu'/*".into(),
        "*/ OR 1=1 /*".into(),
        "eu\n' OR 1=1 --".into(),
        "eu\r\nus".into(),
        "ünïcødé-区域-🌍".into(),
        "E'eu'".into(),
        "?".into(),
        "?1".into(),
        "$1".into(),
        ":region".into(),
        "%".into(),
        "_u".into(),
        "{{region}}".into(),
        "__sqlsandbox_var_region".into(),
        "\u{1}sqlsandbox:0".into(),
        "eu\0".into(),
        "x'".repeat(5000),
        "é".repeat(10_000),
        String::new(),
    ]
}

/// Adds rows whose text columns hold some of the hostile values, so that an
/// exact match has rows to find.
fn add_hostile_rows(conn: &Connection) {
    let values = hostile_values();
    for (i, v) in values.iter().enumerate() {
        if v.contains('\0') {
            continue;
        }
        if i % 2 == 0 || v.len() > 1000 || v.is_empty() {
            let i = i as i64;
            conn.execute(
                "INSERT INTO events VALUES (?1, 42001, 'hostile', 42, ?2, NULL)",
                rusqlite::params![42900 + i, v],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO events VALUES (?1, 7001, 'hostile', 7, ?2, NULL)",
                rusqlite::params![7900 + i, v],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO orders VALUES (?1, 42001, 1, 1, 42, ?2)",
                rusqlite::params![42900 + i, v],
            )
            .unwrap();
        }
    }
}

/// What became of one hostile value in one query.
#[derive(Debug, Default)]
struct Tally {
    /// Rewritten, run, and returned exactly the expected rows.
    exact: usize,
    /// Refused by sqlsandbox.
    refused: usize,
    /// Rewritten with literals, but SQLite could not run the SQL (see
    /// `many_quotes_in_a_literal_run_on_sqlite`).
    db_rejected: usize,
}

/// Rewrites `sql` with literals and with bind parameters; each must either
/// return exactly the rows of `truth` (run with `value` bound as `?1`) or
/// fail: be refused by sqlsandbox, or (literals only) be rejected by SQLite.
fn check_hostile(
    conn: &Connection,
    policy: &Policy,
    who: &Principal,
    sql: &str,
    truth: &str,
    value: &str,
    tally: &mut Tally,
) {
    let context = format!("value {:?} / {sql}", short(value));
    let expected = run_sql(conn, truth, &[SqlValue::Text(value.to_string())]).unwrap();
    for params in [false, true] {
        let rw = match policy.rewrite(who, sql, &options(params)) {
            Ok(rw) => rw,
            Err(e) => {
                assert!(e.is_refusal(), "{context}: {e}");
                tally.refused += 1;
                continue;
            }
        };
        let bound: Vec<SqlValue> = rw.params.iter().map(|p| to_sql_value(&p.value)).collect();
        match run_sql(conn, &rw.sql, &bound) {
            Ok(got) => {
                assert_eq!(
                    got.multiset(),
                    expected.multiset(),
                    "{context} (params: {params})\n  rewritten: {}",
                    short(&rw.sql)
                );
                tally.exact += 1;
            }
            Err(e) if !params && e.to_string().contains("Expression tree is too large") => {
                assert!(value.matches('\'').count() > 400, "{context}: {e}");
                tally.db_rejected += 1;
            }
            Err(e) => panic!(
                "{context} (params: {params}): SQLite rejected {}: {e}",
                short(&rw.sql)
            ),
        }
    }
}

#[test]
fn hostile_text_attributes_match_exactly_or_are_refused() {
    let conn = database();
    add_hostile_rows(&conn);
    let before = table_counts(&conn);
    let saas = saas_policy();
    let text = Policy::from_yaml(TEXT_SANDBOX_SQLITE, "text_sandbox.yaml").unwrap();
    let mut tally = Tally::default();
    let mut matched_rows = 0;
    for v in hostile_values() {
        // SaaS policy: events filtered on tenant_id (integer) and region (text).
        let who = customer(
            &saas,
            vec![
                ("tenant", AttributeValue::text("42")),
                ("region", AttributeValue::text(v.clone())),
            ],
        );
        check_hostile(
            &conn,
            &saas,
            &who,
            "SELECT id, region FROM events",
            "SELECT id, region FROM events WHERE tenant_id = 42 AND region = ?1",
            &v,
            &mut tally,
        );
        // Text-only variant: a custom question and a basic filter on text.
        let who = customer(&text, vec![("region", AttributeValue::text(v.clone()))]);
        let queries = [
            ("SELECT e.id, e.region FROM events e", "SELECT id, region FROM events WHERE region = ?1"),
            (
                "SELECT id, status FROM orders WHERE status IS NOT NULL",
                "SELECT id, status FROM orders WHERE status = ?1",
            ),
            (
                "SELECT o.id, e.id AS event_id FROM orders o JOIN events e ON e.account_id = o.account_id",
                "SELECT o.id, e.id AS event_id FROM orders o JOIN events e ON e.account_id = o.account_id \
                 WHERE o.status = ?1 AND e.region = ?1",
            ),
        ];
        for (sql, truth) in queries {
            check_hostile(&conn, &text, &who, sql, truth, &v, &mut tally);
        }
        let n: i64 = conn
            .query_row("SELECT count(*) FROM events WHERE region = ?1", [&v], |r| {
                r.get(0)
            })
            .unwrap();
        matched_rows += n;
        assert_eq!(
            table_counts(&conn),
            before,
            "tables changed after value {v:?}"
        );
    }
    eprintln!("hostile values: {tally:?}");
    // Almost everything must actually run (refusing everything would prove
    // nothing), and some values must find their own rows.
    assert!(tally.exact >= hostile_values().len() * 7, "{tally:?}");
    assert!(tally.refused <= 8, "{tally:?}");
    assert!(matched_rows > 0);
    assert_eq!(table_counts(&conn), before);
}

#[test]
fn many_quotes_in_a_literal_run_on_sqlite() {
    let conn = database();
    let policy = saas_policy();
    let v = "x'".repeat(5000);
    conn.execute(
        "INSERT INTO events VALUES (42999, 42001, 'q', 42, ?1, NULL)",
        [&v],
    )
    .unwrap();
    let who = customer(
        &policy,
        vec![
            ("tenant", AttributeValue::text("42")),
            ("region", AttributeValue::text(v)),
        ],
    );
    let rw = policy
        .rewrite(&who, "SELECT id FROM events", &options(false))
        .unwrap();
    let out = run_sql(&conn, &rw.sql, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.rows, vec![vec!["i:42999".to_string()]]);
}

#[test]
fn hostile_integer_attributes_are_refused() {
    let conn = database();
    let policy = saas_policy();
    for v in [
        "42 OR 1=1",
        "42; DROP TABLE orders",
        "42)",
        "42 --",
        "0x2A",
        "4.2e1",
        "42.0",
        " 42",
        "",
        "'42'",
        "99999999999999999999",
    ] {
        let who = customer(
            &policy,
            vec![
                ("tenant", AttributeValue::text(v)),
                ("region", AttributeValue::text("eu")),
            ],
        );
        for sql in [
            "SELECT * FROM orders",
            "SELECT * FROM accounts",
            "SELECT * FROM events",
        ] {
            let err = policy
                .rewrite(&who, sql, &options(false))
                .expect_err(&format!("tenant {v:?}: {sql} must be refused"));
            assert_eq!(err.code(), "SB302", "tenant {v:?}: {err}");
            let err = policy.rewrite(&who, sql, &options(true)).unwrap_err();
            assert_eq!(err.code(), "SB302", "tenant {v:?} (params): {err}");
        }
    }
    // Values that are valid integers after all select exactly that tenant.
    for (v, tenant) in [("+42", 42), ("007", 7), ("-0", 0)] {
        let who = customer(
            &policy,
            vec![
                ("tenant", AttributeValue::text(v)),
                ("region", AttributeValue::text("us")),
            ],
        );
        let (out, _) = rewrite_and_run(&conn, &policy, &who, "SELECT * FROM orders").unwrap();
        let truth = run_sql(
            &conn,
            &format!("SELECT * FROM orders WHERE tenant_id = {tenant}"),
            &[],
        )
        .unwrap();
        assert_eq!(out.multiset(), truth.multiset(), "tenant {v:?}");
    }
    table_counts(&conn);
}

fn ints(v: &[i64]) -> AttributeValue {
    AttributeValue::Many(v.iter().map(|i| Scalar::Integer(*i)).collect())
}

fn texts(v: &[&str]) -> AttributeValue {
    AttributeValue::Many(v.iter().map(|s| Scalar::Text(s.to_string())).collect())
}

#[test]
fn multi_valued_attributes_become_in_lists() {
    let conn = database();
    let policy = saas_policy();
    let queries = [
        ("SELECT * FROM orders", "SELECT * FROM orders WHERE tenant_id IN ({ts})"),
        (
            "SELECT * FROM accounts",
            "SELECT id, plan, tenant_id, created_at FROM accounts WHERE tenant_id IN ({ts})",
        ),
        (
            "SELECT id, region FROM events",
            "SELECT id, region FROM events WHERE tenant_id IN ({ts}) AND region IN ({rs})",
        ),
        (
            "SELECT o.id, a.plan FROM orders o JOIN accounts a ON a.id = o.account_id",
            "SELECT o.id, a.plan FROM orders o JOIN accounts a ON a.id = o.account_id \
             WHERE o.tenant_id IN ({ts}) AND a.tenant_id IN ({ts})",
        ),
        (
            "WITH orders AS (SELECT * FROM orders) SELECT tenant_id, count(*) AS n FROM orders GROUP BY tenant_id",
            "SELECT tenant_id, count(*) AS n FROM orders WHERE tenant_id IN ({ts}) GROUP BY tenant_id",
        ),
    ];
    let combos: Vec<(AttributeValue, AttributeValue, Vec<i64>, Vec<&str>)> = vec![
        (
            ints(&[42, 7]),
            texts(&["eu", "us"]),
            vec![42, 7],
            vec!["eu", "us"],
        ),
        (ints(&[99]), texts(&["eu"]), vec![99], vec!["eu"]),
        (
            texts(&["42", "99"]),
            texts(&["us"]),
            vec![42, 99],
            vec!["us"],
        ),
        (
            ints(&[7, 7, 1234]),
            texts(&["us", "nowhere"]),
            vec![7, 7, 1234],
            vec!["us", "nowhere"],
        ),
    ];
    for (tenant, region, ts, rs) in combos {
        let who = customer(
            &policy,
            vec![("tenant", tenant.clone()), ("region", region.clone())],
        );
        let ts_sql = ts.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        let rs_sql = rs
            .iter()
            .map(|r| format!("'{r}'"))
            .collect::<Vec<_>>()
            .join(", ");
        for (sql, truth) in queries {
            let context = format!("tenant {tenant}, region {region}: {sql}");
            let (got, rewritten) = rewrite_and_run(&conn, &policy, &who, sql)
                .unwrap_or_else(|e| panic!("{context}: {e}"));
            assert!(
                rewritten.contains(" IN ("),
                "{context}: no IN list in {rewritten}"
            );
            let truth = run_sql(
                &conn,
                &truth.replace("{ts}", &ts_sql).replace("{rs}", &rs_sql),
                &[],
            )
            .unwrap();
            assert_eq!(
                got.multiset(),
                truth.multiset(),
                "{context}\n  rewritten: {rewritten}"
            );
            assert!(
                !got.rows.is_empty(),
                "{context}: the union of tenants must not be empty"
            );
            assert_only_tenants(&got, &ts, &context);
        }
    }

    // An empty list matches no rows.
    let empty = customer(
        &policy,
        vec![
            ("tenant", AttributeValue::Many(vec![])),
            ("region", AttributeValue::Many(vec![])),
        ],
    );
    for (sql, _) in queries {
        let (got, rewritten) = rewrite_and_run(&conn, &policy, &empty, sql)
            .unwrap_or_else(|e| panic!("empty: {sql}: {e}"));
        assert!(
            got.rows.is_empty(),
            "empty list: {sql} returned {:?}\n  rewritten: {rewritten}",
            got.rows
        );
    }
    // Empty region with a real tenant: events empty, orders still the tenant's.
    let half = customer(
        &policy,
        vec![
            ("tenant", ints(&[42])),
            ("region", AttributeValue::Many(vec![])),
        ],
    );
    let (got, _) = rewrite_and_run(&conn, &policy, &half, "SELECT * FROM events").unwrap();
    assert!(got.rows.is_empty());
    let (got, _) = rewrite_and_run(&conn, &policy, &half, "SELECT * FROM orders").unwrap();
    assert_eq!(got.rows.len(), 8);
}

/// A custom sandbox whose question reads a second table (`memberships`).
const MEMBERSHIP_SQLITE: &str = r#"
version: 1
databases:
  warehouse:
    dialect: sqlite
    tables:
      orders:
        columns: {id: integer, account_id: integer, product_id: integer, total: decimal, tenant_id: integer, status: text}
      memberships:
        columns: {member: text, tenant_id: integer}
questions:
  my_orders:
    database: warehouse
    sql: SELECT id, tenant_id, total FROM orders WHERE tenant_id IN (SELECT tenant_id FROM memberships WHERE member = {{me}})
groups:
  customers:
    data:
      warehouse:
        main:
          orders: {sandbox: {question: my_orders, parameters: {me: me}}}
    native: {warehouse: true}
users:
  alice: {groups: [customers], attributes: {me: alice}}
"#;

#[test]
fn custom_question_reading_two_tables() {
    let conn = database();
    conn.execute_batch(
        "CREATE TABLE memberships (member TEXT, tenant_id INTEGER);
         INSERT INTO memberships VALUES ('alice', 42), ('bob', 7);",
    )
    .unwrap();
    let policy = Policy::from_yaml(MEMBERSHIP_SQLITE, "membership.yaml").unwrap();
    let alice = user(&policy, "alice");
    let (out, _) =
        rewrite_and_run(&conn, &policy, &alice, "SELECT id, tenant_id FROM orders").unwrap();
    assert_eq!(out.rows.len(), 8);
    assert_only_tenants(&out, &[42], "membership sandbox");
}

#[test]
fn user_ctes_cannot_shadow_tables_of_a_sandbox_question() {
    let conn = database();
    conn.execute_batch(
        "CREATE TABLE memberships (member TEXT, tenant_id INTEGER);
         INSERT INTO memberships VALUES ('alice', 42), ('bob', 7);",
    )
    .unwrap();
    let policy = Policy::from_yaml(MEMBERSHIP_SQLITE, "membership.yaml").unwrap();
    let alice = user(&policy, "alice");
    // The CTE `memberships` claims alice belongs to tenant 99.
    let sql = "WITH memberships AS (SELECT 'alice' AS member, 99 AS tenant_id) SELECT id, tenant_id FROM orders";
    match rewrite_and_run(&conn, &policy, &alice, sql) {
        Err(e) => assert!(e.is_refusal(), "{e}"),
        Ok((out, rewritten)) => {
            assert_only_tenants(&out, &[42], &format!("{sql}\n  rewritten: {rewritten}"));
            assert_eq!(out.rows.len(), 8, "{rewritten}");
        }
    }
    // The same on the SaaS policy: a CTE `accounts` replaces the real table
    // inside the accounts sandbox (wrong rows, though only the user's own).
    let saas = saas_policy();
    let alice = user(&saas, "alice");
    let sql = "WITH accounts AS (SELECT 42001 AS id, 'fake' AS plan, 42 AS tenant_id, NULL AS created_at) \
               SELECT a.id, a.plan FROM main.accounts a";
    match rewrite_and_run(&conn, &saas, &alice, sql) {
        Err(e) => assert!(e.is_refusal(), "{e}"),
        Ok((out, rewritten)) => {
            let truth = run_sql(
                &conn,
                "SELECT id, plan FROM accounts WHERE tenant_id = 42",
                &[],
            )
            .unwrap();
            assert_eq!(out.multiset(), truth.multiset(), "{rewritten}");
        }
    }
}
