//! The database-cost benchmark (benches/db_cost/README.md): builds a
//! multi-tenant dataset on PostgreSQL, MariaDB and SQLite and compares, per
//! query shape, the sandboxed query's time with the hand-filtered query's
//! (and PostgreSQL native RLS), after checking that they return the same
//! rows. Exits non-zero when any shape's rows differ.
//!
//! ```text
//! cargo run --release --example db_cost -- [--orders N] [--accounts N] [--tenants N]
//!     [--runs N] [--fence VALUE] [--out DIR] [--only pg,mysql,sqlite]
//!     [--keep] [--reuse] [--ci]
//! ```
//!
//! Servers come from `SQLSANDBOX_PG_URL` and `SQLSANDBOX_MYSQL_URL` (or
//! `--pg URL`, `--mysql URL`); a database without a URL is skipped.

#[path = "../benches/db_cost/mod.rs"]
mod db_cost;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: db_cost [--orders N] [--accounts N] [--tenants N] [--runs N] \
[--fence VALUE] [--out DIR] [--only pg,mysql,sqlite] [--pg URL] [--mysql URL] [--name NAME] \
[--keep] [--reuse] [--ci]

  --orders N     orders (default 2,000,000; accounts default to orders/40, rounded to tenants)
  --runs N       timed runs per query, median reported (default 7)
  --fence VALUE  add `fence: VALUE` to every database of the policy (e.g. false;
                 auto/always/never once the policy takes them); default: the policy's default
  --out DIR      where EXPLAIN plans go (default target/db_cost)
  --keep         keep the databases; --reuse skips loading when a kept one has as many orders
  --ci           CI scale (20,000 orders, 500 accounts): rows checked, no timing, no plans";

fn parse_args() -> Result<db_cost::Config, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cfg = if args.iter().any(|a| a == "--ci") {
        db_cost::Config::ci()
    } else {
        db_cost::Config::full()
    };
    let ci = cfg.runs == 0;
    let mut accounts = None;
    let mut out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/db_cost"));
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        let number = |v: String| {
            v.replace([',', '_'], "")
                .parse::<u64>()
                .map_err(|e| format!("{a}: {e}"))
        };
        match a.as_str() {
            "--ci" => {}
            "--orders" => cfg.orders = number(value()?)?,
            "--accounts" => accounts = Some(number(value()?)?),
            "--tenants" => cfg.tenants = number(value()?)?,
            "--runs" => cfg.runs = number(value()?)? as usize,
            "--fence" => cfg.fence = Some(value()?),
            "--out" => out = PathBuf::from(value()?),
            "--only" => only = Some(value()?),
            "--pg" => cfg.pg_url = Some(value()?),
            "--mysql" => cfg.mysql_url = Some(value()?),
            "--name" => cfg.name = value()?,
            "--keep" => cfg.keep = true,
            "--reuse" => {
                cfg.reuse = true;
                cfg.keep = true;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    cfg.accounts = accounts.unwrap_or_else(|| {
        let per = (cfg.orders / 40 / cfg.tenants.max(1)).max(1);
        per * cfg.tenants
    });
    if ci {
        cfg.runs = 0;
    } else {
        cfg.plans = Some(out);
    }
    if let Some(only) = only {
        let want: Vec<&str> = only.split(',').map(str::trim).collect();
        for w in &want {
            if !["pg", "mysql", "sqlite"].contains(w) {
                return Err(format!("--only: unknown database {w} (pg, mysql, sqlite)"));
            }
        }
        if !want.contains(&"pg") {
            cfg.pg_url = None;
        }
        if !want.contains(&"mysql") {
            cfg.mysql_url = None;
        }
        cfg.sqlite = want.contains(&"sqlite");
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    for (label, url) in [("PostgreSQL", &cfg.pg_url), ("MariaDB", &cfg.mysql_url)] {
        if url.is_none() {
            eprintln!("{label}: skipped (no URL)");
        }
    }
    eprintln!(
        "{} orders, {} accounts, {} tenants; fence: {}",
        cfg.orders,
        cfg.accounts,
        cfg.tenants,
        cfg.fence.as_deref().unwrap_or("policy default")
    );
    let reports = match db_cost::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("db_cost: {e}");
            if !cfg.keep {
                db_cost::cleanup(&cfg);
            }
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    for r in &reports {
        for m in &r.mismatches {
            failed = true;
            eprintln!("{}: {m}", r.label);
        }
        let rows_ok = r.measures.len();
        eprintln!(
            "{}: {rows_ok} of {} shapes return the hand-filtered rows",
            r.label,
            db_cost::SHAPES.len()
        );
    }
    if cfg.runs > 0 {
        println!(
            "{} orders, {} accounts, {} tenants; principal tenant {}; fence: {}; median of {} runs, ms",
            cfg.orders,
            cfg.accounts,
            cfg.tenants,
            db_cost::TENANT,
            cfg.fence.as_deref().unwrap_or("policy default"),
            cfg.runs
        );
        println!("{}", db_cost::table(&reports));
        if let Some(dir) = &cfg.plans {
            eprintln!("plans in {}", dir.display());
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
