//! Rewrite cost against the floor — sqlparser's own parse + print of the
//! same text — measured in the same run, over a corpus from a point lookup
//! to a 50-join ~20 KB query and a 1,000-item IN list; plus policy size,
//! policy load and principal resolution; and the rewrite cache's hit
//! (another viewer of the same dashboard card, own values bound) against
//! the same floor.
//!
//! Run: `cargo bench --bench rewrite` (reports in target/criterion/).

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlsandbox::{AttributeValue, Options, Policy, Principal, RewriteCache};

#[path = "large_policy.rs"]
mod large_policy;

const CORPUS: &[(&str, &str)] = &[
    ("point_lookup", include_str!("corpus/point_lookup.sql")),
    ("dashboard_1kb", include_str!("corpus/dashboard_1kb.sql")),
    ("in_list_1000", include_str!("corpus/in_list_1000.sql")),
    ("joins_50_20kb", include_str!("corpus/joins_50_20kb.sql")),
];

fn saas() -> Policy {
    Policy::from_path(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/saas.yaml")).unwrap()
}

fn corpus(c: &mut Criterion) {
    let policy = saas();
    let alice = Principal::from_user(&policy, "alice").unwrap();
    let opts = Options::default();
    let params = Options::default().with_params(true);
    let mut g = c.benchmark_group("corpus");
    g.measurement_time(Duration::from_secs(3));
    for (name, sql) in CORPUS {
        policy.rewrite(&alice, sql, &opts).unwrap();
        g.bench_with_input(
            BenchmarkId::new("parse_print_floor", name),
            sql,
            |b, sql| {
                b.iter(|| {
                    let stmts = Parser::parse_sql(&PostgreSqlDialect {}, black_box(sql)).unwrap();
                    black_box(stmts[0].to_string())
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("rewrite", name), sql, |b, sql| {
            b.iter(|| black_box(policy.rewrite(&alice, black_box(sql), &opts).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("rewrite_params", name), sql, |b, sql| {
            b.iter(|| black_box(policy.rewrite(&alice, black_box(sql), &params).unwrap()))
        });
    }
    g.finish();
}

fn policy_size(c: &mut Criterion) {
    let small = saas();
    let big = Policy::from_yaml(
        &large_policy::yaml(100_000, 10_000, 1_000, 5_000),
        "large.yaml",
    )
    .unwrap();
    let sql = CORPUS[1].1;
    let opts = Options::default();
    let mut g = c.benchmark_group("policy_size");
    g.measurement_time(Duration::from_secs(3));
    let a_small = Principal::from_user(&small, "alice").unwrap();
    let a_big = Principal::from_user(&big, "alice").unwrap();
    g.bench_function("rewrite_10_users", |b| {
        b.iter(|| black_box(small.rewrite(&a_small, black_box(sql), &opts).unwrap()))
    });
    g.bench_function("rewrite_100k_users", |b| {
        b.iter(|| black_box(big.rewrite(&a_big, black_box(sql), &opts).unwrap()))
    });
    g.bench_function("principal_from_user_100k", |b| {
        b.iter(|| black_box(Principal::from_user(&big, black_box("u77777")).unwrap()))
    });
    g.finish();
}

fn policy_load(c: &mut Criterion) {
    let src = large_policy::yaml(100_000, 10_000, 1_000, 5_000);
    let mut g = c.benchmark_group("policy_load");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("load_100k_users_1000_tables_5000_questions", |b| {
        b.iter(|| black_box(Policy::from_yaml(black_box(&src), "large.yaml").unwrap()))
    });
    g.finish();
}

/// A cache hit for the 1 KB dashboard query: every iteration is another
/// viewer (tenant) of the same card, so each answer binds its own values;
/// beside it the parse + print floor and the uncached rewrite, same run.
fn cache(c: &mut Criterion) {
    let policy = saas();
    let sql = CORPUS[1].1;
    let params = Options::default().with_params(true);
    let viewers: Vec<Principal> = (0..64)
        .map(|t| {
            Principal::new(
                &policy,
                "viewer",
                ["customers"],
                [
                    ("tenant", AttributeValue::from(t)),
                    ("region", AttributeValue::from("eu")),
                ],
            )
            .unwrap()
        })
        .collect();
    let cache = RewriteCache::new(64 << 20);
    cache.rewrite(&policy, &viewers[0], sql, &params).unwrap();
    let mut g = c.benchmark_group("cache");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("parse_print_floor/dashboard_1kb", |b| {
        b.iter(|| {
            let stmts = Parser::parse_sql(&PostgreSqlDialect {}, black_box(sql)).unwrap();
            black_box(stmts[0].to_string())
        })
    });
    g.bench_function("rewrite_params/dashboard_1kb", |b| {
        b.iter(|| {
            black_box(
                policy
                    .rewrite(&viewers[1], black_box(sql), &params)
                    .unwrap(),
            )
        })
    });
    let mut i = 0usize;
    g.bench_function("hit_other_viewer/dashboard_1kb", |b| {
        b.iter(|| {
            i = (i + 1) % viewers.len();
            black_box(
                cache
                    .rewrite(&policy, &viewers[i], black_box(sql), &params)
                    .unwrap(),
            )
        })
    });
    g.finish();
    assert!(cache.stats().hits > 0);
}

criterion_group!(benches, corpus, policy_size, policy_load, cache);
criterion_main!(benches);
