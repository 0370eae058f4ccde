//! Rewrite cost against the floor: sqlparser's own parse + print of the
//! same query, measured in the same run.
//!
//! Run: `cargo bench --bench rewrite`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlsandbox::{Options, Policy, Principal};

/// A typical ~1 KB analytic query over three sandboxed tables.
const QUERY_1KB: &str = "WITH recent AS (
    SELECT o.account_id, o.product_id, o.total, o.status
    FROM orders o
    WHERE o.status IN ('paid', 'shipped') AND o.total > 10
), per_account AS (
    SELECT r.account_id, count(*) AS n, sum(r.total) AS revenue, max(r.total) AS biggest
    FROM recent r
    GROUP BY r.account_id
)
SELECT a.id, a.plan, pa.n, pa.revenue, pa.biggest,
       (SELECT count(*) FROM events e WHERE e.account_id = a.id AND e.kind = 'login') AS logins,
       p.category,
       rank() OVER (PARTITION BY a.plan ORDER BY pa.revenue DESC) AS plan_rank
FROM accounts a
JOIN per_account pa ON pa.account_id = a.id
LEFT JOIN recent r2 ON r2.account_id = a.id
LEFT JOIN products p ON p.id = r2.product_id
WHERE a.created_at >= '2024-01-01' AND a.plan <> 'trial'
  AND EXISTS (SELECT 1 FROM orders o2 WHERE o2.account_id = a.id AND o2.total > 100)
GROUP BY a.id, a.plan, pa.n, pa.revenue, pa.biggest, p.category
HAVING sum(pa.n) > 1
ORDER BY pa.revenue DESC, a.id
LIMIT 100";

fn bench(c: &mut Criterion) {
    let root = env!("CARGO_MANIFEST_DIR");
    let policy = Policy::from_path(format!("{root}/policies/saas.yaml")).expect("policy");
    let alice = Principal::from_user(&policy, "alice").expect("alice");
    let opts = Options::default();
    assert!(policy.rewrite(&alice, QUERY_1KB, &opts).is_ok());

    let mut g = c.benchmark_group("1kb_query");
    g.bench_function("parse_print_floor", |b| {
        b.iter(|| {
            let stmts = Parser::parse_sql(&PostgreSqlDialect {}, black_box(QUERY_1KB)).unwrap();
            black_box(stmts[0].to_string())
        })
    });
    g.bench_function("rewrite", |b| {
        b.iter(|| black_box(policy.rewrite(&alice, black_box(QUERY_1KB), &opts).unwrap()))
    });
    g.bench_function("rewrite_params", |b| {
        let opts = Options {
            params: true,
            ..Options::default()
        };
        b.iter(|| black_box(policy.rewrite(&alice, black_box(QUERY_1KB), &opts).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
