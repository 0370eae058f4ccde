//! The database-cost benchmark's row check at CI scale (20,000 orders):
//! for every query shape, the sandboxed query returns exactly the rows of
//! the same query filtered by hand (and, on PostgreSQL, of native RLS).
//! SQLite always runs; PostgreSQL and MariaDB run when
//! `SQLSANDBOX_PG_URL` / `SQLSANDBOX_MYSQL_URL` are set, and the marker
//! `db-cost-rows` is written when both did. Timings are the example's job
//! (`cargo run --release --example db_cost`, benches/db_cost/README.md).

mod common;

#[path = "../benches/db_cost/mod.rs"]
mod db_cost;

fn config(prefix: &str) -> db_cost::Config {
    db_cost::Config {
        name: format!("sqlsandbox_dbcost_{prefix}_{}", std::process::id()),
        ..db_cost::Config::ci()
    }
}

fn run(cfg: &db_cost::Config, shapes: &[db_cost::Shape]) -> Vec<db_cost::DbReport> {
    let result = std::panic::catch_unwind(|| db_cost::run_shapes(cfg, shapes));
    // Also after a failed setup or a panic.
    db_cost::cleanup(cfg);
    match result {
        Ok(r) => r.unwrap_or_else(|e| panic!("db_cost: {e}")),
        Err(p) => std::panic::resume_unwind(p),
    }
}

#[test]
fn sandboxed_rows_equal_hand_filtered_rows() {
    let cfg = config("ci");
    let reports = run(&cfg, db_cost::SHAPES);
    assert!(!reports.is_empty(), "SQLite always runs");
    let mut problems = Vec::new();
    for r in &reports {
        problems.extend(r.mismatches.iter().map(|m| format!("{}: {m}", r.label)));
        // Every shape returns rows at this scale, so that equality means
        // something (an empty result equals an empty result).
        for m in &r.measures {
            if m.rows == 0 {
                problems.push(format!("{}: {} returned no rows", r.label, m.shape));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let labels: Vec<&str> = reports.iter().map(|r| r.label).collect();
    let summary = format!(
        "{} shapes, equal rows on {}",
        db_cost::SHAPES.len(),
        labels.join(", ")
    );
    if cfg.pg_url.is_some() && cfg.mysql_url.is_some() {
        common::mark_done("db-cost-rows", &summary);
    } else {
        // Past the harness's capture: this test ran only part of itself.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("db-cost-rows: {summary}; PostgreSQL/MariaDB SKIPPED (set SQLSANDBOX_PG_URL and SQLSANDBOX_MYSQL_URL)\n").as_bytes(),
        );
    }
}

/// The check has teeth: a "hand" query that forgets the tenant filter
/// returns another tenant's order, and the run reports the difference.
#[test]
fn a_difference_in_rows_is_reported() {
    let cfg = db_cost::Config {
        pg_url: None,
        mysql_url: None,
        ..config("neg")
    };
    let shapes = [db_cost::Shape {
        name: "forgotten_filter",
        about: "hand query without the tenant filter",
        sql: "SELECT id FROM orders WHERE id IN (1007, 3001)",
        hand: "SELECT id FROM orders WHERE id IN (1007, 3001)",
        selective: true,
    }];
    let reports = run(&cfg, &shapes);
    assert_eq!(reports.len(), 1);
    let m = &reports[0].mismatches;
    assert!(
        m.len() == 1 && m[0].contains("sandboxed rows differ"),
        "{m:?}"
    );
}
