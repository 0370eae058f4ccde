//! Times the benchmark corpus (sqlparser parse + print floor, sqlsandbox
//! rewrite) and prints JSON, for `benches/peer_sqlglot.py`, which runs the
//! same corpus through a sqlglot-based rewrite on the same machine.
//!
//! Run: `cargo run --release --example bench_corpus`

use std::time::{Duration, Instant};

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

const CORPUS: &[&str] = &[
    "point_lookup",
    "dashboard_1kb",
    "in_list_1000",
    "joins_50_20kb",
];

/// Median of 15 batches of the per-call time, in microseconds.
fn time(mut f: impl FnMut() -> usize) -> f64 {
    let mut calls = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(f());
        }
        if t.elapsed() > Duration::from_millis(20) {
            break;
        }
        calls *= 2;
    }
    let mut samples: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..calls {
                std::hint::black_box(f());
            }
            t.elapsed().as_secs_f64() * 1e6 / calls as f64
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let policy = sqlsandbox::Policy::from_path(format!("{root}/policies/saas.yaml")).unwrap();
    let alice = sqlsandbox::Principal::from_user(&policy, "alice").unwrap();
    let opts = sqlsandbox::Options::default();
    let mut rows = Vec::new();
    for name in CORPUS {
        let sql = std::fs::read_to_string(format!("{root}/benches/corpus/{name}.sql")).unwrap();
        let floor = time(|| {
            Parser::parse_sql(&PostgreSqlDialect {}, &sql).unwrap()[0]
                .to_string()
                .len()
        });
        let rewrite = time(|| policy.rewrite(&alice, &sql, &opts).unwrap().sql.len());
        rows.push(format!(
            "{{\"query\": \"{name}\", \"bytes\": {}, \"floor_us\": {floor:.2}, \"rewrite_us\": {rewrite:.2}}}",
            sql.len()
        ));
    }
    println!("[{}]", rows.join(", "));
}
