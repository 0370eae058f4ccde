//! Loops one operation over a corpus query, for profilers and instruction
//! counts (`valgrind --tool=callgrind`), which do not depend on machine load:
//!
//! `profile_rewrite <floor|rewrite|params|setup> <corpus-name> <iterations> [large]`
//!
//! With `large`, the policy is the 100,000-user benchmark policy.

#[path = "../benches/large_policy.rs"]
mod large_policy;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("rewrite");
    let name = args.get(2).map(String::as_str).unwrap_or("dashboard_1kb");
    let n: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let sql = std::fs::read_to_string(format!(
        "{}/benches/corpus/{name}.sql",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let policy = if args.get(4).map(String::as_str) == Some("large") {
        sqlsandbox::Policy::from_yaml(
            &large_policy::yaml(100_000, 10_000, 1_000, 5_000),
            "large.yaml",
        )
        .unwrap()
    } else {
        sqlsandbox::Policy::from_path(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/saas.yaml"))
            .unwrap()
    };
    let alice = sqlsandbox::Principal::from_user(&policy, "alice").unwrap();
    let opts = sqlsandbox::Options::default().with_params(mode == "params");
    // Warm up outside the measured functions (the allocator consolidates
    // what loading the policy freed on the first large allocation).
    let mut bytes = policy.rewrite(&alice, &sql, &opts).unwrap().sql.len();
    bytes += Parser::parse_sql(&PostgreSqlDialect {}, &sql)
        .unwrap()
        .len();
    for _ in 0..n {
        bytes += match mode {
            "floor" => measured_floor(&sql),
            "setup" => 0,
            _ => measured_rewrite(&policy, &alice, &sql, &opts),
        };
    }
    println!("{bytes}");
}

// Callgrind counts only inside these (`--toggle-collect=*measured_*`).
#[inline(never)]
fn measured_floor(sql: &str) -> usize {
    Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap()[0]
        .to_string()
        .len()
}

#[inline(never)]
fn measured_rewrite(
    policy: &sqlsandbox::Policy,
    who: &sqlsandbox::Principal,
    sql: &str,
    opts: &sqlsandbox::Options,
) -> usize {
    policy.rewrite(who, sql, opts).unwrap().sql.len()
}
