//! The query corpus: what an analyst or a BI tool sends. `{s}` stands for
//! the schema (sqlsandbox's side: where the data lives; the oracle's side:
//! whatever the oracle's users read), so qualified names are covered too.
//! Queries run on every database unless `only` says otherwise; `ordered`
//! queries have a total ORDER BY and are compared row by row.

use super::dataset::Db::{self, Clickhouse, Duckdb, Mariadb, Postgres, Spark, Sqlite};

pub struct Query {
    pub sql: &'static str,
    pub ordered: bool,
    pub only: &'static [Db],
}

impl Query {
    /// Whether the query is written for `db` and `db` can run it.
    pub fn runs_on(&self, db: Db) -> bool {
        (self.only.is_empty() || self.only.contains(&db)) && excluded(db, self.sql).is_none()
    }
}

/// Why `db` cannot run corpus query `sql` (a limitation of the engine, or
/// SQL it reads otherwise than the other databases), or `None`.
pub fn excluded(db: Db, sql: &str) -> Option<&'static str> {
    EXCLUDED
        .iter()
        .find(|(d, q, _)| *d == db && *q == sql)
        .map(|(_, _, why)| *why)
}

/// Corpus queries left out on an engine, with the reason.
pub const EXCLUDED: &[(Db, &str, &str)] = &[
    (
        Duckdb,
        "SELECT id FROM events WHERE at BETWEEN '2024-01-01 00:00:00' AND '2024-06-30 23:59:59'",
        "`at` is a reserved word in DuckDB: the query does not parse there",
    ),
    (
        Duckdb,
        "SELECT id FROM events ORDER BY at DESC, id LIMIT 7",
        "`at` is a reserved word in DuckDB: the query does not parse there",
    ),
    (
        Clickhouse,
        "SELECT o.id, a.name, p.name AS product FROM orders o JOIN (accounts a JOIN tenants t ON t.id = a.tenant_id) ON a.id = o.account_id LEFT JOIN products p ON p.id = o.product_id",
        "ClickHouse does not parse a parenthesized join",
    ),
    (
        Clickhouse,
        "SELECT o.id FROM orders AS o WHERE o.id IN (SELECT o.id FROM orders WHERE orders.total > 100)",
        "ClickHouse does not run a correlated subquery as an IN argument",
    ),
    (
        Clickhouse,
        "SELECT a.id FROM accounts a ORDER BY (SELECT count(*) FROM orders o WHERE o.account_id = a.id) DESC, a.id LIMIT 5",
        "ClickHouse does not run a correlated subquery in ORDER BY",
    ),
    (
        Clickhouse,
        "SELECT coalesce(status, '(none)') AS status, count(*) AS n FROM orders GROUP BY coalesce(status, '(none)')",
        "ClickHouse resolves `status` in GROUP BY to the select list's alias (then not grouped)",
    ),
    (
        Spark,
        "SELECT a.id FROM accounts a ORDER BY (SELECT count(*) FROM orders o WHERE o.account_id = a.id) DESC, a.id LIMIT 5",
        "Spark does not run a correlated scalar subquery in ORDER BY",
    ),
];

const fn q(sql: &'static str) -> Query {
    Query {
        sql,
        ordered: false,
        only: &[],
    }
}

const fn ordered(sql: &'static str) -> Query {
    Query {
        sql,
        ordered: true,
        only: &[],
    }
}

const fn only(only: &'static [Db], sql: &'static str) -> Query {
    Query {
        sql,
        ordered: false,
        only,
    }
}

pub const QUERIES: &[Query] = &[
    // Plain reads, SELECT *, qualified names.
    q("SELECT * FROM orders"),
    q("SELECT * FROM accounts"),
    q("SELECT * FROM events"),
    q("SELECT * FROM tenants"),
    q("SELECT * FROM products"),
    q("SELECT a.* FROM accounts a"),
    q("SELECT accounts.* FROM accounts"),
    q("SELECT t.*, a.id AS account FROM tenants t JOIN accounts a ON a.tenant_id = t.id"),
    q("SELECT o.id, o.tenant_id FROM {s}.orders o"),
    q("SELECT {s}.orders.id, {s}.orders.total FROM {s}.orders WHERE {s}.orders.total < 50"),
    ordered("SELECT orders.id, orders.status FROM orders ORDER BY orders.id"),
    q("SELECT accounts.id, accounts.total FROM orders AS accounts"),
    q("SELECT e.* FROM events AS e WHERE e.region IS NULL"),
    // Filters.
    q("SELECT id, total, status FROM orders WHERE status = 'paid'"),
    q("SELECT id FROM orders WHERE total > 100 AND status IS NOT NULL"),
    q("SELECT id, status FROM orders WHERE status IN ('paid', 'PAID') OR total IS NULL"),
    q("SELECT id FROM orders WHERE NOT (status = 'paid')"),
    q("SELECT id, name, plan FROM accounts WHERE plan IS NULL"),
    q("SELECT id, kind FROM events WHERE region = 'eu'"),
    q("SELECT id FROM events WHERE region = 'EU'"),
    q("SELECT id, kind, region FROM events WHERE kind LIKE 'log%'"),
    q("SELECT id FROM events WHERE at BETWEEN '2024-01-01 00:00:00' AND '2024-06-30 23:59:59'"),
    q("SELECT id, name FROM tenants WHERE country IS NULL"),
    q("SELECT id, name FROM tenants WHERE name = 'O''Reilly & Sons'"),
    q("SELECT id FROM accounts WHERE name = 'back\\slash' OR name LIKE 'back%'"),
    q("SELECT id, name FROM accounts WHERE name LIKE '%ö%' OR name LIKE '李%'"),
    q("SELECT count(*) AS n FROM accounts WHERE created_at >= '2024-01-01 00:00:00'"),
    q("SELECT 1 AS one FROM orders WHERE 1 = 0"),
    q("SELECT id, kind FROM events WHERE kind <> '?' AND kind <> '$1' AND kind <> ':x'"),
    only(&[Postgres], "SELECT id FROM accounts WHERE name = E'O\\'Neil' OR name = E'back\\\\slash'"),
    only(&[Postgres], "SELECT id FROM accounts WHERE name = $$O'Neil$$ OR plan = $tag$pro$tag$"),
    only(&[Mariadb], "SELECT id FROM orders WHERE status = \"paid\""),
    only(&[Mariadb], "SELECT id FROM accounts WHERE name = 'O\\'Neil' OR name = 'back\\\\slash'"),
    only(&[Postgres, Sqlite], "SELECT ID FROM ORDERS WHERE TOTAL > 400"),
    only(&[Postgres], "SELECT id FROM \"orders\" WHERE \"total\" > 400"),
    only(&[Mariadb], "SELECT id FROM `orders` WHERE `total` > 400"),
    // Joins.
    q("SELECT o.id, a.name, p.name AS product FROM orders o JOIN accounts a ON a.id = o.account_id JOIN products p ON p.id = o.product_id"),
    q("SELECT a.id AS account, o.id AS order_id FROM accounts a LEFT JOIN orders o ON o.account_id = a.id"),
    q("SELECT o.id, a.id AS account FROM orders o LEFT JOIN accounts a ON a.id = o.account_id"),
    q("SELECT p.name, o.id FROM products p LEFT JOIN orders o ON o.product_id = p.id"),
    q("SELECT o.id, a.name FROM orders o RIGHT JOIN accounts a ON a.id = o.account_id"),
    q("SELECT o.id, e.id AS event FROM orders o JOIN events e ON e.account_id = o.account_id AND e.tenant_id = o.tenant_id WHERE o.total > 200"),
    q("SELECT o1.id, o2.id AS other FROM orders o1 JOIN orders o2 ON o1.account_id = o2.account_id AND o1.id < o2.id WHERE o1.total > 300"),
    q("SELECT t.name, a.name AS account FROM tenants t JOIN accounts a ON a.tenant_id = t.id"),
    q("SELECT a.id FROM accounts a CROSS JOIN tenants t WHERE t.id = a.tenant_id"),
    q("SELECT o.id FROM orders o, accounts a WHERE a.id = o.account_id AND a.plan = 'pro'"),
    q("SELECT o.id, e.kind FROM orders o JOIN events e USING (tenant_id, account_id) WHERE o.total > 400"),
    q("SELECT count(*) AS n FROM (SELECT account_id, tenant_id FROM orders) x NATURAL JOIN (SELECT account_id, tenant_id FROM events) y"),
    q("SELECT o.id, a.name, p.name AS product FROM orders o JOIN (accounts a JOIN tenants t ON t.id = a.tenant_id) ON a.id = o.account_id LEFT JOIN products p ON p.id = o.product_id"),
    q("SELECT a.id FROM accounts a LEFT JOIN orders o ON o.account_id = a.id WHERE o.id IS NULL"),
    q("SELECT count(*) AS n FROM orders o JOIN tenants t ON t.id = o.tenant_id JOIN accounts a ON a.tenant_id = t.id AND a.id = o.account_id"),
    only(&[Postgres, Sqlite], "SELECT a.id, o.id AS order_id FROM accounts a FULL JOIN orders o ON o.account_id = a.id"),
    // Aggregates.
    q("SELECT count(*) FROM orders"),
    q("SELECT count(*) AS n, count(total) AS with_total, sum(total) AS s, min(total) AS lo, max(total) AS hi FROM orders"),
    q("SELECT status, count(*) AS n, sum(total) AS s FROM orders GROUP BY status"),
    q("SELECT status, avg(total) AS a FROM orders GROUP BY status HAVING count(*) > 2"),
    q("SELECT tenant_id, count(*) AS n FROM orders GROUP BY tenant_id"),
    q("SELECT a.plan, count(o.id) AS n, sum(o.total) AS s FROM accounts a LEFT JOIN orders o ON o.account_id = a.id GROUP BY a.plan"),
    q("SELECT p.category, sum(o.total) AS revenue FROM orders o JOIN products p ON p.id = o.product_id GROUP BY p.category"),
    q("SELECT kind, region, count(*) AS n FROM events GROUP BY kind, region"),
    q("SELECT count(DISTINCT account_id) AS accounts, count(DISTINCT product_id) AS products FROM orders"),
    q("SELECT max(created_at) AS latest, min(created_at) AS first FROM orders"),
    q("SELECT account_id, count(*) AS n FROM orders GROUP BY account_id HAVING sum(total) > 500"),
    q("SELECT t.name, count(e.id) AS n FROM tenants t LEFT JOIN events e ON e.tenant_id = t.id GROUP BY t.name"),
    q("SELECT sum(CASE WHEN status = 'paid' THEN total ELSE 0 END) AS paid, sum(CASE WHEN status <> 'paid' THEN total END) AS other FROM orders"),
    q("SELECT coalesce(status, '(none)') AS status, count(*) AS n FROM orders GROUP BY coalesce(status, '(none)')"),
    q("SELECT count(*) FROM products"),
    q("SELECT category, count(*) AS n, avg(price) AS avg_price FROM products GROUP BY category"),
    q("SELECT min(name) AS first_name, max(name) AS last_name FROM accounts"),
    q("SELECT sum(total) AS s FROM orders WHERE total < 0"),
    q("SELECT tenant_id, count(*) AS n FROM accounts GROUP BY tenant_id"),
    only(&[Postgres, Sqlite], "SELECT count(*) FILTER (WHERE status = 'paid') AS paid FROM orders"),
    only(&[Postgres], "SELECT string_agg(status, ',' ORDER BY id) AS s FROM orders WHERE total > 450"),
    only(&[Postgres], "SELECT status, count(*) AS n FROM orders GROUP BY ROLLUP (status)"),
    // DISTINCT.
    q("SELECT DISTINCT status FROM orders"),
    q("SELECT DISTINCT a.plan, o.status FROM orders o JOIN accounts a ON a.id = o.account_id"),
    q("SELECT DISTINCT region FROM events"),
    q("SELECT count(*) FROM (SELECT DISTINCT account_id FROM events) d"),
    // ORDER BY / LIMIT / OFFSET (total orders: compared in order).
    ordered("SELECT id, total FROM orders ORDER BY total DESC, id LIMIT 5"),
    ordered("SELECT id, total FROM orders ORDER BY id LIMIT 10 OFFSET 3"),
    ordered("SELECT id, name FROM accounts ORDER BY name, id"),
    ordered("SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY n DESC, status"),
    ordered("SELECT id FROM events ORDER BY at DESC, id LIMIT 7"),
    ordered("SELECT p.name, o.id FROM orders o JOIN products p ON p.id = o.product_id ORDER BY o.id DESC LIMIT 4"),
    ordered("SELECT * FROM tenants ORDER BY id"),
    ordered("SELECT account_id, sum(total) AS s FROM orders GROUP BY account_id ORDER BY s DESC, account_id LIMIT 3"),
    ordered("SELECT id FROM orders ORDER BY 1 LIMIT 1"),
    ordered("SELECT id, created_at FROM accounts ORDER BY created_at, id LIMIT 5 OFFSET 2"),
    Query {
        sql: "SELECT DISTINCT ON (account_id) account_id, id FROM orders ORDER BY account_id, id",
        ordered: true,
        only: &[Postgres],
    },
    // CTEs.
    q("WITH big AS (SELECT * FROM orders WHERE total > 250) SELECT id, total FROM big"),
    // SQLite reads a CTE that names itself as a circular reference.
    only(&[Postgres, Mariadb], "WITH orders AS (SELECT * FROM orders) SELECT count(*) FROM orders"),
    q("WITH per_account AS (SELECT account_id, sum(total) AS s FROM orders GROUP BY account_id) SELECT a.name, p.s FROM per_account p JOIN accounts a ON a.id = p.account_id"),
    q("WITH a AS (SELECT id FROM accounts), b AS (SELECT account_id FROM orders WHERE account_id IN (SELECT id FROM a)) SELECT count(*) FROM b"),
    q("WITH x AS (SELECT id, tenant_id FROM accounts) SELECT x1.id FROM x x1 JOIN x x2 ON x1.tenant_id = x2.tenant_id AND x1.id < x2.id"),
    q("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) SELECT n.i, count(o.id) AS orders FROM n LEFT JOIN orders o ON o.product_id = n.i GROUP BY n.i"),
    q("WITH e AS (SELECT account_id, count(*) AS n FROM events GROUP BY account_id) SELECT a.id, coalesce(e.n, 0) AS n FROM accounts a LEFT JOIN e ON e.account_id = a.id"),
    q("WITH t AS (SELECT * FROM tenants) SELECT t.name, (SELECT count(*) FROM orders o WHERE o.tenant_id = t.id) AS n FROM t"),
    q("WITH accounts AS (SELECT * FROM {s}.accounts WHERE plan = 'pro') SELECT id, name FROM accounts"),
    q("SELECT * FROM (WITH x AS (SELECT id, total FROM orders) SELECT id FROM x WHERE total > 100) y"),
    // Subqueries.
    q("SELECT id, name FROM accounts WHERE id IN (SELECT account_id FROM orders WHERE total > 300)"),
    q("SELECT id FROM products WHERE id NOT IN (SELECT product_id FROM orders WHERE product_id IS NOT NULL)"),
    q("SELECT a.id FROM accounts a WHERE EXISTS (SELECT 1 FROM events e WHERE e.account_id = a.id)"),
    q("SELECT a.id FROM accounts a WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.account_id = a.id)"),
    q("SELECT a.id, (SELECT count(*) FROM orders o WHERE o.account_id = a.id) AS n FROM accounts a"),
    q("SELECT id, total FROM orders WHERE total > (SELECT avg(total) FROM orders)"),
    q("SELECT x.kind, count(*) AS n FROM (SELECT e.kind FROM events e WHERE e.account_id IN (SELECT id FROM accounts)) x GROUP BY x.kind"),
    q("SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM accounts) AS accounts"),
    q("SELECT id FROM orders o WHERE total = (SELECT max(total) FROM orders o2 WHERE o2.account_id = o.account_id)"),
    q("SELECT t.id, t.name FROM tenants t WHERE t.id IN (SELECT tenant_id FROM events WHERE kind = 'purchase')"),
    q("SELECT orders.id FROM (SELECT * FROM orders WHERE total > 100) AS orders"),
    q("SELECT d.status, d.n FROM (SELECT status, count(*) AS n FROM orders GROUP BY status) d WHERE d.n > 1"),
    q("SELECT count(*) FROM (SELECT * FROM (SELECT id, account_id FROM orders WHERE total IS NOT NULL) a WHERE account_id IS NOT NULL) b"),
    q("SELECT o.id FROM orders AS o WHERE o.id IN (SELECT o.id FROM orders WHERE orders.total > 100)"),
    only(&[Postgres, Mariadb], "SELECT id FROM orders WHERE account_id = ANY (SELECT id FROM accounts WHERE plan = 'free')"),
    only(&[Postgres, Mariadb], "SELECT id FROM orders WHERE total > ALL (SELECT total FROM orders WHERE status = 'refunded' AND total IS NOT NULL)"),
    only(&[Postgres], "SELECT a.id, x.n FROM accounts a CROSS JOIN LATERAL (SELECT count(*) AS n FROM orders o WHERE o.account_id = a.id) x"),
    only(&[Postgres], "SELECT g, (SELECT count(*) FROM orders WHERE product_id = g) AS n FROM generate_series(1, 12) AS g"),
    only(&[Postgres], "SELECT v.k, count(o.id) AS n FROM (VALUES ('paid'), ('pending')) AS v(k) LEFT JOIN orders o ON o.status = v.k GROUP BY v.k"),
    only(&[Postgres], "SELECT x.a, x.b FROM tenants AS x(a, b)"),
    // Subqueries in every clause.
    ordered("SELECT a.id FROM accounts a ORDER BY (SELECT count(*) FROM orders o WHERE o.account_id = a.id) DESC, a.id LIMIT 5"),
    only(&[Postgres], "SELECT id FROM products ORDER BY id LIMIT (SELECT count(*) FROM orders) / 20"),
    only(&[Postgres], "SELECT id FROM products ORDER BY id OFFSET (SELECT count(*) FROM events)"),
    q("SELECT id, sum(total) OVER (PARTITION BY account_id > (SELECT min(account_id) FROM events)) AS s FROM orders"),
    q("SELECT p.id, t.id AS tenant FROM products p JOIN tenants t ON t.id = (SELECT min(tenant_id) FROM orders)"),
    q("SELECT coalesce((SELECT max(total) FROM orders), 0) AS m, (SELECT count(*) FROM events) + 1 AS n"),
    q("SELECT id, CASE WHEN id IN (SELECT product_id FROM orders) THEN 'sold' ELSE 'unsold' END AS state FROM products"),
    q("SELECT 5 IN (SELECT tenant_id FROM orders) AS has5, EXISTS (SELECT 1 FROM events) AS any_events"),
    q("SELECT status, count(*) AS n FROM orders GROUP BY status HAVING count(*) > (SELECT count(*) FROM events) / 10"),
    q("WITH RECURSIVE chain(id, n) AS (SELECT min(id), 1 FROM orders UNION ALL SELECT o.id, c.n + 1 FROM orders o JOIN chain c ON o.id = c.id + 1 WHERE c.n < 5) SELECT id, n FROM chain"),
    q("WITH v(x) AS (VALUES (1), (2), (5)) SELECT v.x, (SELECT count(*) FROM orders o WHERE o.tenant_id = v.x) AS n FROM v"),
    only(&[Postgres], "SELECT count(*) AS n FROM generate_series(1, (SELECT count(*) FROM orders)) AS g"),
    only(&[Postgres], "SELECT array_length(ARRAY(SELECT id FROM orders), 1) AS n"),
    only(&[Postgres], "SELECT n FROM (VALUES ((SELECT count(*) FROM orders))) AS v(n)"),
    only(&[Postgres], "SELECT id FROM orders WHERE tenant_id = ANY (ARRAY(SELECT id FROM tenants))"),
    only(&[Postgres, Sqlite], "SELECT count(*) FILTER (WHERE account_id IN (SELECT account_id FROM events)) AS n FROM orders"),
    only(&[Postgres, Mariadb], "SELECT id FROM orders WHERE (tenant_id, account_id) IN (SELECT tenant_id, account_id FROM events)"),
    only(&[Postgres, Mariadb], "(SELECT id FROM orders ORDER BY id LIMIT 3) UNION ALL (SELECT id FROM accounts ORDER BY id LIMIT 2)"),
    q("SELECT status, sum(count(*)) OVER () AS all_n FROM orders GROUP BY status"),
    only(&[Postgres], "SELECT json_agg(a ORDER BY a.id) AS j FROM accounts a"),
    only(&[Postgres], "SELECT count(*) AS n FROM accounts a, LATERAL (SELECT o.id FROM orders o WHERE o.account_id = a.id ORDER BY o.id LIMIT 1) x"),
    only(&[Postgres], "SELECT id FROM ONLY orders WHERE total > 400"),
    // Set operations.
    q("SELECT account_id FROM orders UNION SELECT account_id FROM events"),
    q("SELECT id FROM accounts UNION ALL SELECT id FROM orders"),
    q("SELECT account_id FROM orders INTERSECT SELECT account_id FROM events"),
    q("SELECT account_id FROM orders EXCEPT SELECT account_id FROM events"),
    q("SELECT tenant_id FROM orders UNION SELECT id FROM tenants UNION SELECT tenant_id FROM events"),
    ordered("SELECT id FROM accounts UNION SELECT account_id FROM orders WHERE account_id IS NOT NULL ORDER BY 1 LIMIT 5"),
    q("SELECT status AS label FROM orders UNION ALL SELECT kind FROM events UNION ALL SELECT plan FROM accounts"),
    q("SELECT count(*) FROM (SELECT account_id FROM orders UNION SELECT account_id FROM events) u"),
    // Window functions.
    q("SELECT id, row_number() OVER (PARTITION BY account_id ORDER BY id) AS rn FROM orders"),
    q("SELECT id, sum(total) OVER (PARTITION BY account_id) AS account_total FROM orders"),
    q("SELECT id, rank() OVER (ORDER BY total DESC) AS r FROM orders"),
    q("SELECT id, lag(id) OVER (ORDER BY id) AS prev, lead(id) OVER (ORDER BY id) AS next FROM events"),
    q("SELECT account_id, count(*) OVER () AS all_rows FROM orders"),
    q("SELECT id, sum(total) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running FROM orders"),
    q("SELECT x.id FROM (SELECT id, row_number() OVER (PARTITION BY tenant_id ORDER BY total DESC, id) AS rn FROM orders) x WHERE x.rn <= 3"),
    q("SELECT kind, dense_rank() OVER (ORDER BY kind) AS dr FROM events"),
    q("SELECT a.id, count(o.id) OVER (PARTITION BY a.plan) AS n FROM accounts a LEFT JOIN orders o ON o.account_id = a.id"),
    // Expressions.
    q("SELECT id, CASE WHEN total >= 100 THEN 'big' WHEN total IS NULL THEN 'none' ELSE 'small' END AS size FROM orders"),
    q("SELECT upper(name) AS n, lower(plan) AS p FROM accounts"),
    q("SELECT id, coalesce(region, 'unknown') AS region FROM events"),
    q("SELECT id, nullif(status, 'paid') AS s FROM orders"),
    q("SELECT id, abs(total - 100) AS d, round(total, 0) AS r FROM orders WHERE total IS NOT NULL"),
    q("SELECT length(name) AS n FROM accounts"),
    q("SELECT id, concat(name, '/', coalesce(plan, '-')) AS label FROM accounts"),
    only(&[Postgres, Sqlite], "SELECT id, name || '/' || coalesce(plan, '-') AS label FROM accounts"),
];

/// Queries naming the column the custom sandbox hides: refused by
/// sqlsandbox and failing under the oracle for customers; equal for the
/// analyst.
pub const HIDDEN_COLUMN: &[&str] = &[
    "SELECT email FROM accounts",
    "SELECT a.email FROM accounts a",
    "SELECT id FROM accounts WHERE email LIKE '%@%'",
    "SELECT count(*) FROM accounts GROUP BY email",
    "SELECT id FROM accounts ORDER BY email",
    "SELECT o.id FROM orders o JOIN accounts a ON a.id = o.account_id WHERE a.email IS NOT NULL",
    "SELECT {s}.accounts.email FROM {s}.accounts",
    "SELECT x.email FROM (SELECT * FROM accounts) x",
    "WITH a AS (SELECT * FROM accounts) SELECT a.email FROM a",
    "SELECT a.id FROM accounts a JOIN accounts b USING (email)",
    "SELECT (SELECT a.email) AS e FROM accounts a",
    "SELECT id FROM accounts WHERE id IN (SELECT id FROM accounts WHERE email IS NULL)",
];
