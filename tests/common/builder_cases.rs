//! The query-builder test bed shared by `builder_exec` (SQLite against
//! hand-written ground truth) and `builder_engines` (DuckDB, ClickHouse and
//! Spark SQL against SQLite): the policy, its users, the database and the
//! questions.
//!
//! Row ids encode their tenant (`tenant * 1000 + n`); products are shared.

#![allow(dead_code)]

use rusqlite::Connection;
use sqlsandbox::{Policy, Principal};

// ----- policy ---------------------------------------------------------------

/// A multi-tenant shop: customers (native SQL) and viewers (builder
/// questions only) see their tenant's rows; accounts go through a custom
/// sandbox that hides `email`; analysts see everything.
pub const POLICY: &str = r#"
version: 1
databases:
  shop:
    dialect: sqlite
    default_schema: main
    tables:
      main.accounts:
        columns: {id: integer, email: text, plan: text, tenant_id: integer, created_at: timestamp}
      main.orders:
        columns: {id: integer, account_id: integer, product_id: integer, total: decimal, tenant_id: integer, status: text}
        foreign_keys: {account_id: accounts.id, product_id: products.id}
      main.products:
        columns: {id: integer, name: text, category: text, price: decimal}
      main.events:
        columns: {id: integer, account_id: integer, kind: text, tenant_id: integer, region: text, at: timestamp}
        foreign_keys: {account_id: accounts.id}
      main.sessions:
        columns: {id: integer, tenant_id: integer, started_at: timestamp, day: date}
questions:
  accounts_without_email:
    database: shop
    collection: admin_only
    sql: SELECT id, plan, tenant_id, created_at FROM accounts WHERE tenant_id = {{tenant}}
  big_orders:
    database: shop
    collection: reports
    sql: SELECT id, total FROM orders WHERE total > 100
collections: {admin_only: {}, reports: {}}
groups:
  customers:
    data:
      shop:
        main:
          accounts: {sandbox: {question: accounts_without_email, parameters: {tenant: tenant}}}
          orders: {sandbox: {column: tenant_id, attribute: tenant}}
          events: {sandbox: {filters: [{column: tenant_id, attribute: tenant}, {column: region, attribute: region}]}}
          sessions: {sandbox: {column: tenant_id, attribute: tenant}}
          products: unrestricted
    native: {shop: true}
    collections: {reports: view}
  viewers:
    data:
      shop:
        main:
          accounts: {sandbox: {question: accounts_without_email, parameters: {tenant: tenant}}}
          orders: {sandbox: {column: tenant_id, attribute: tenant}}
          events: {sandbox: {filters: [{column: tenant_id, attribute: tenant}, {column: region, attribute: region}]}}
          sessions: {sandbox: {column: tenant_id, attribute: tenant}}
          products: unrestricted
    collections: {reports: view}
  analysts:
    data: {shop: unrestricted}
    native: {shop: true}
    collections: {reports: view}
users:
  alice: {groups: [customers], attributes: {tenant: 42, region: eu}}
  bob: {groups: [customers], attributes: {tenant: 7, region: us}}
  vic: {groups: [viewers], attributes: {tenant: 99, region: eu}}
  carol: {groups: [analysts]}
  root: {groups: [administrators]}
"#;

/// Who sees what, as views written by hand: (user, tenant and region, or
/// None for everything).
pub const USERS: &[(&str, Option<(i64, &str)>)] = &[
    ("alice", Some((42, "eu"))),
    ("bob", Some((7, "us"))),
    ("vic", Some((99, "eu"))),
    ("carol", None),
    ("root", None),
];

// ----- database -------------------------------------------------------------

pub const SCHEMA: &str = "
CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT, plan TEXT, tenant_id INTEGER, created_at TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, account_id INTEGER, product_id INTEGER, total NUMERIC, tenant_id INTEGER, status TEXT);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price NUMERIC);
CREATE TABLE events (id INTEGER PRIMARY KEY, account_id INTEGER, kind TEXT, tenant_id INTEGER, region TEXT, at TEXT);
CREATE TABLE sessions (id INTEGER PRIMARY KEY, tenant_id INTEGER, started_at TEXT, day TEXT);
";

/// Three tenants (42, 7, 99), NULLs, unicode, and orders that point at
/// another tenant's account (dirty data a join must not reveal).
pub const DATA: &str = "
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
-- Sessions relative to now: today, 2 and 10 days ago, 40 days ago, and
-- 400 days ago (the first two of each tenant also in the current week's
-- neighbourhood; `day` is the date of `started_at`).
INSERT INTO sessions (id, tenant_id, started_at)
  SELECT t * 1000 + n, t, datetime('now', offs) FROM
    (SELECT 42 AS t UNION ALL SELECT 7 UNION ALL SELECT 99)
    CROSS JOIN (SELECT 901 AS n, '+0 days' AS offs UNION ALL SELECT 902, '-2 days'
                UNION ALL SELECT 903, '-10 days' UNION ALL SELECT 904, '-40 days'
                UNION ALL SELECT 905, '-400 days');
UPDATE sessions SET day = date(started_at);
";

pub fn database() -> Connection {
    let conn = Connection::open_in_memory().expect("in-memory SQLite");
    conn.execute_batch(SCHEMA).expect("schema");
    conn.execute_batch(DATA).expect("data");
    conn
}

pub fn policy() -> Policy {
    Policy::from_yaml(POLICY, "builder_exec.yaml").expect("the test policy loads")
}

pub fn user(policy: &Policy, name: &str) -> Principal {
    Principal::from_user(policy, name).unwrap_or_else(|e| panic!("user {name}: {e}"))
}

/// What a question must return.
pub enum Truth {
    /// A hand-written query over the per-user views `v_orders`, ….
    Sql(&'static str),
    /// Literal rows per user (calendar logic under test); users not listed
    /// expect no rows.
    Rows(&'static [(&'static str, &'static [&'static str])]),
}

pub struct Case {
    pub name: &'static str,
    /// The question, in YAML.
    pub question: &'static str,
    pub truth: Truth,
    /// Compare in order (the question sorts totally).
    pub ordered: bool,
}

pub const fn sql(name: &'static str, question: &'static str, truth: &'static str) -> Case {
    Case {
        name,
        question,
        truth: Truth::Sql(truth),
        ordered: false,
    }
}

pub const CASES: &[Case] = &[
    sql(
        "string functions: unicode length, concat with NULL, replace, trim",
        r#"query:
  source-table: products
  expressions:
    len: [length, [field, name]]
    joined: [concat, [field, name], "/", [field, category]]
    swapped: [replace, [field, name], e, E]
    clean: [trim, [concat, " ", [field, category], " "]]
  fields: [[field, id], [expression, len], [expression, joined], [expression, swapped], [expression, clean]]"#,
        "SELECT id, length(name), coalesce(name, '') || '/' || coalesce(category, ''), replace(name, 'e', 'E'),
                trim(' ' || coalesce(category, '') || ' ')
         FROM products",
    ),
    sql(
        "date parts and datetime-add",
        r#"query:
  source-table: events
  expressions:
    y: [get-year, [field, at]]
    q: [get-quarter, [field, at]]
    m: [get-month, [field, at]]
    w: [get-week, [field, at]]
    d: [get-day, [field, at]]
    dow: [get-day-of-week, [field, at]]
    h: [get-hour, [field, at]]
    mi: [get-minute, [field, at]]
    later: [datetime-add, [field, at], 1, month]
    before: [datetime-subtract, [field, at], 3, day]
  fields: [[field, id], [expression, y], [expression, q], [expression, m], [expression, w], [expression, d], [expression, dow], [expression, h], [expression, mi], [expression, later], [expression, before]]"#,
        "SELECT id, CAST(strftime('%Y', at) AS INTEGER), (CAST(strftime('%m', at) AS INTEGER) + 2) / 3,
                CAST(strftime('%m', at) AS INTEGER), CASE WHEN at IS NULL THEN NULL WHEN at < '2024-06-03' THEN 22 ELSE 23 END,
                CAST(strftime('%d', at) AS INTEGER), (CAST(strftime('%w', at) AS INTEGER) + 6) % 7 + 1,
                CAST(strftime('%H', at) AS INTEGER), CAST(strftime('%M', at) AS INTEGER),
                datetime(at, '+1 months'), datetime(at, '-3 days')
         FROM v_events",
    ),
    sql(
        "all fields",
        "query: {source-table: orders}",
        "SELECT id, account_id, product_id, total, tenant_id, status FROM v_orders",
    ),
    sql(
        "custom sandbox: default fields without the hidden column",
        "query: {source-table: accounts}",
        "SELECT * FROM v_accounts",
    ),
    sql(
        "count and sum by status",
        "query: {source-table: orders, aggregation: [[count], [sum, [field, total]]], breakout: [[field, status]]}",
        "SELECT status, count(*), sum(total) FROM v_orders GROUP BY status",
    ),
    sql(
        "every aggregation SQLite has",
        r#"query:
  source-table: orders
  aggregation: [[count], [count, [field, product_id]], [distinct, [field, account_id]], [sum, [field, total]], [avg, [field, total]], [min, [field, total]], [max, [field, status]], [count-where, ["=", [field, status], paid]], [sum-where, [field, total], ["=", [field, status], paid]], [share, ["=", [field, status], paid]]]"#,
        "SELECT count(*), count(product_id), count(DISTINCT account_id), sum(total), avg(total), min(total), max(status),
                (SELECT count(*) FROM v_orders WHERE status = 'paid'),
                coalesce((SELECT sum(total) FROM v_orders WHERE status = 'paid'), 0),
                (SELECT count(*) FROM v_orders WHERE status = 'paid') * 1.0 / count(*)
         FROM v_orders",
    ),
    sql(
        "equality, inequality, in, null",
        r#"query:
  source-table: orders
  fields: [[field, id]]
  filter: [or, ["=", [field, status], paid, pending], [and, ["!=", [field, status], paid], [not-in, [field, product_id], 3]], ["=", [field, total], null]]"#,
        "SELECT id FROM v_orders WHERE status IN ('paid', 'pending') OR (status <> 'paid' AND product_id NOT IN (3)) OR total IS NULL",
    ),
    sql(
        "comparisons and between",
        r#"query:
  source-table: orders
  fields: [[field, id], [field, total]]
  filter: [and, [">", [field, total], 5], ["<=", [field, total], 150], [between, [field, product_id], 1, 4], [not-null, [field, account_id]]]"#,
        "SELECT id, total FROM v_orders WHERE total > 5 AND total <= 150 AND product_id BETWEEN 1 AND 4 AND account_id IS NOT NULL",
    ),
    sql(
        "is-empty and not-empty",
        r#"query: {source-table: accounts, fields: [[field, id]], filter: [or, [is-empty, [field, plan]], [not-empty, [field, created_at]]]}"#,
        "SELECT id FROM v_accounts WHERE plan IS NULL OR plan = '' OR created_at IS NOT NULL",
    ),
    sql(
        "string filters, case-sensitive",
        r#"query:
  source-table: products
  fields: [[field, id]]
  filter: [or, [contains, [field, name], dg], [starts-with, [field, name], Un], [ends-with, [field, name], "'s tea"], [contains, [field, name], WIDGET]]"#,
        "SELECT id FROM products WHERE id IN (1, 2, 5, 6)",
    ),
    sql(
        "string filters, case-insensitive",
        r#"query:
  source-table: products
  fields: [[field, id]]
  filter: [or, [contains, [field, name], WIDGET, {case-sensitive: false}], [starts-with, [field, name], "o'", {case-sensitive: false}], [does-not-contain, [field, category], TOOLS, {case-sensitive: false}]]"#,
        "SELECT id FROM products WHERE id IN (1, 4, 5, 6)",
    ),
    sql(
        "LIKE wildcards in the text are literal",
        r#"query: {source-table: products, fields: [[field, id]], filter: [or, [contains, [field, name], "%"], [contains, [field, name], "_", {case-sensitive: false}]]}"#,
        "SELECT id FROM products WHERE 0",
    ),
    sql(
        "explicit inner join to a sandboxed table",
        r#"query:
  source-table: orders
  joins: [{source-table: accounts, alias: a, strategy: inner-join, condition: ["=", [field, account_id], [field, a.id]], fields: [[field, a.plan]]}]
  fields: [[field, id]]"#,
        "SELECT o.id, a.plan FROM v_orders o JOIN v_accounts a ON o.account_id = a.id",
    ),
    sql(
        "left join keeps rows, other tenants' accounts come back NULL",
        r#"query:
  source-table: orders
  joins: [{source-table: accounts, alias: a, condition: ["=", [field, account_id], [field, a.id]], fields: [[field, a.plan], [field, a.tenant_id]]}]
  fields: [[field, id]]"#,
        "SELECT o.id, a.plan, a.tenant_id FROM v_orders o LEFT JOIN v_accounts a ON o.account_id = a.id",
    ),
    sql(
        "right join to products",
        r#"query:
  source-table: orders
  joins: [{source-table: products, alias: p, strategy: right-join, condition: ["=", [field, product_id], [field, p.id]]}]
  aggregation: [[count, [field, id]]]
  breakout: [[field, p.name]]"#,
        "SELECT p.name, count(o.id) FROM products p LEFT JOIN v_orders o ON o.product_id = p.id GROUP BY p.name",
    ),
    sql(
        "full join of orders and events",
        r#"query:
  source-table: orders
  joins: [{source-table: events, alias: e, strategy: full-join, condition: ["=", [field, account_id], [field, e.account_id]]}]
  aggregation: [[count], [count, [field, id]], [count, [field, e.id]]]"#,
        "SELECT count(*), count(oid), count(eid) FROM (
           SELECT o.id AS oid, e.id AS eid FROM v_orders o LEFT JOIN v_events e ON o.account_id = e.account_id
           UNION ALL
           SELECT NULL, e.id FROM v_events e WHERE NOT EXISTS (SELECT 1 FROM v_orders o WHERE o.account_id = e.account_id))",
    ),
    sql(
        "implicit join through a foreign key to an unrestricted table",
        r#"query: {source-table: orders, aggregation: [[sum, [field, total]]], breakout: [[field, product_id, {fk: products.category}]]}"#,
        "SELECT p.category, sum(o.total) FROM v_orders o LEFT JOIN products p ON o.product_id = p.id GROUP BY p.category",
    ),
    sql(
        "implicit join to a sandboxed table: another tenant's account is NULL",
        r#"query: {source-table: orders, fields: [[field, id], [field, account_id, {fk: accounts.plan}], [field, account_id, {fk: created_at}]]}"#,
        "SELECT o.id, a.plan, a.created_at FROM v_orders o LEFT JOIN v_accounts a ON o.account_id = a.id",
    ),
    sql(
        "saved question as source, sandboxed at the bottom",
        "query: {source-question: big_orders, aggregation: [[count], [sum, [field, total]]]}",
        "SELECT count(*), sum(total) FROM v_orders WHERE total > 100",
    ),
    sql(
        "nested query on a saved question",
        r#"query:
  source-query: {source-question: big_orders, filter: [">", [field, total], 200]}
  aggregation: [[count]]"#,
        "SELECT count(*) FROM v_orders WHERE total > 200",
    ),
    sql(
        "filter on an aggregate by nesting",
        r#"query:
  source-query: {source-table: orders, aggregation: [[sum, [field, total]]], breakout: [[field, status]]}
  filter: [">", [field, sum], 20]"#,
        "SELECT status, s FROM (SELECT status, sum(total) AS s FROM v_orders GROUP BY status) WHERE s > 20",
    ),
    sql(
        "expressions: arithmetic, case, strings",
        r#"query:
  source-table: orders
  expressions:
    net: ["-", [field, total], ["*", [field, total], 0.25]]
    per: ["/", [field, total], 4]
    size: [case, [[[">", [field, total], 100], large], [[">", [field, total], 20], medium]], {default: small}]
    label: [concat, [upper, [coalesce, [field, status], none]], "-", [substring, [expression, size], 1, 1]]
  fields: [[field, id], [expression, net], [expression, per], [expression, label]]
  filter: [not-null, [expression, net]]"#,
        "SELECT id, total - total * 0.25, total / 4.0,
                upper(coalesce(status, 'none')) || '-' || substr(CASE WHEN total > 100 THEN 'large' WHEN total > 20 THEN 'medium' ELSE 'small' END, 1, 1)
         FROM v_orders WHERE total IS NOT NULL",
    ),
    sql(
        "division by zero is NULL, never an error",
        r#"query: {source-table: orders, expressions: {r: ["/", [field, total], ["-", [field, product_id], 1]]}, fields: [[field, id], [expression, r]]}"#,
        "SELECT id, CASE WHEN product_id = 1 THEN NULL ELSE total * 1.0 / (product_id - 1) END FROM v_orders",
    ),
    sql(
        "order-by an aggregation, limit",
        r#"query: {source-table: orders, aggregation: [[sum, [field, total]]], breakout: [[field, status]], order-by: [[desc, [aggregation, 0]]], limit: 2}"#,
        "SELECT status, sum(total) AS s FROM v_orders GROUP BY status ORDER BY s DESC, status LIMIT 2",
    ),
    sql(
        "page 2 of 3 rows",
        r#"query: {source-table: orders, fields: [[field, id]], order-by: [[asc, [field, id]]], page: {page: 2, items: 3}}"#,
        "SELECT id FROM v_orders ORDER BY id LIMIT 3 OFFSET 3",
    ),
    sql(
        "time-interval: last 30 days, excluding today",
        r#"query: {source-table: sessions, fields: [[field, id]], filter: [time-interval, [field, started_at], -30, day]}"#,
        "SELECT id FROM v_sessions WHERE id % 1000 IN (902, 903)",
    ),
    sql(
        "time-interval: last 30 days including today, on a date column",
        r#"query: {source-table: sessions, fields: [[field, id]], filter: [time-interval, [field, day], -30, day, {include-current: true}]}"#,
        "SELECT id FROM v_sessions WHERE id % 1000 IN (901, 902, 903)",
    ),
    sql(
        "time-interval: the current year, and last year",
        r#"query:
  source-table: sessions
  aggregation: [[count-where, [time-interval, [field, started_at], current, year]], [count-where, [time-interval, [field, day], last, year]]]"#,
        "SELECT count(CASE WHEN strftime('%Y', started_at) = strftime('%Y', 'now') THEN 1 END),
                count(CASE WHEN CAST(strftime('%Y', day) AS INTEGER) = CAST(strftime('%Y', 'now') AS INTEGER) - 1 THEN 1 END)
         FROM v_sessions",
    ),
    sql(
        "time-interval: next 3 months matches nothing",
        r#"query: {source-table: sessions, aggregation: [[count]], filter: [time-interval, [field, started_at], 3, month]}"#,
        "SELECT 0",
    ),
    sql(
        "breakout by day of a relative timestamp",
        r#"query: {source-table: sessions, aggregation: [[count]], breakout: [[field, started_at, {temporal-unit: day}]]}"#,
        "SELECT day, count(*) FROM v_sessions GROUP BY day",
    ),
    Case {
        name: "breakout by ISO day-of-week and week-of-year",
        question: r#"query: {source-table: events, aggregation: [[count]], breakout: [[field, at, {temporal-unit: day-of-week}], [field, at, {temporal-unit: week-of-year}]]}"#,
        // 2024-06-01 is a Saturday (ISO week 22), 06-02 a Sunday (22),
        // 06-03 a Monday (23), 06-04 a Tuesday, 06-05 a Wednesday.
        truth: Truth::Rows(&[
            ("alice", &["1 | 23 | 1", "2 | 23 | 1", "6 | 22 | 2"]),
            ("bob", &["NULL | NULL | 1", "6 | 22 | 2"]),
            ("vic", &["3 | 23 | 1"]),
            ("carol", &["NULL | NULL | 2", "1 | 23 | 1", "2 | 23 | 1", "3 | 23 | 2", "6 | 22 | 4", "7 | 22 | 2"]),
            ("root", &["NULL | NULL | 2", "1 | 23 | 1", "2 | 23 | 1", "3 | 23 | 2", "6 | 22 | 4", "7 | 22 | 2"]),
        ]),
        ordered: true,
    },
    Case {
        name: "breakout by week, month, quarter and year of the account's creation",
        question: r#"query:
  source-table: accounts
  aggregation: [[count]]
  breakout: [[field, created_at, {temporal-unit: week}], [field, created_at, {temporal-unit: quarter}], [field, created_at, {temporal-unit: year}]]"#,
        truth: Truth::Rows(&[
            (
                "alice",
                &[
                    "NULL | NULL | NULL | 1",
                    "\"2024-01-01\" | \"2024-01-01\" | \"2024-01-01\" | 1",
                    "\"2024-01-29\" | \"2024-01-01\" | \"2024-01-01\" | 1",
                    "\"2024-02-26\" | \"2024-01-01\" | \"2024-01-01\" | 1",
                ],
            ),
            (
                "bob",
                &[
                    "\"2023-12-25\" | \"2023-10-01\" | \"2023-01-01\" | 1",
                    "\"2024-01-01\" | \"2024-01-01\" | \"2024-01-01\" | 1",
                    "\"2024-04-29\" | \"2024-04-01\" | \"2024-01-01\" | 1",
                ],
            ),
            (
                "vic",
                &["NULL | NULL | NULL | 1", "\"2021-12-27\" | \"2022-01-01\" | \"2022-01-01\" | 1"],
            ),
        ]),
        ordered: true,
    },
    Case {
        name: "binning totals by 50",
        question: r#"query:
  source-table: orders
  aggregation: [[count]]
  breakout: [[field, total, {binning: {strategy: bin-width, bin-width: 50}}]]"#,
        truth: Truth::Rows(&[
            ("alice", &["NULL | 1", "0.000000 | 5", "100.000000 | 1", "150.000000 | 1"]),
            ("bob", &["NULL | 1", "0.000000 | 2", "50.000000 | 1"]),
            ("vic", &["0.000000 | 1", "250.000000 | 1", "1000.000000 | 1"]),
        ]),
        ordered: true,
    },
    Case {
        name: "floor of negative numbers (SQLite floor spelt with CAST)",
        question: r#"query:
  source-table: orders
  expressions: {f: [floor, ["-", [field, total], 60]], c: [ceil, ["-", [field, total], 60]]}
  fields: [[field, id], [expression, f], [expression, c]]
  filter: [in, [field, id], 42501, 42505, 7502, 99503]
  order-by: [[asc, [field, id]]]"#,
        truth: Truth::Rows(&[
            ("alice", &["42501.000000 | -41.000000 | -40.000000", "42505.000000 | 90.000000 | 90.000000"]),
            ("bob", &["7502.000000 | 0.000000 | 0.000000"]),
            ("vic", &["99503.000000 | 190.000000 | 190.000000"]),
        ]),
        ordered: true,
    },
];
