//! Exact text matching on MariaDB (run when `SQLSANDBOX_MYSQL_URL` is set,
//! e.g. `mysql://root@127.0.0.1:3306/test`; skipped with a notice
//! otherwise).
//!
//! The table uses MariaDB's default kind of collation (`utf8mb4_general_ci`:
//! case-insensitive, accent-insensitive, PAD SPACE), under which `plan =
//! 'Basic'` also finds `basic`, `basic ` and `básic`. A basic sandbox on a
//! text column must match its attribute value byte for byte, for single
//! values, multi-valued attributes (IN lists) and `combine: union`, with
//! literals and with bind parameters, and the plan must still use the
//! column's index.

mod common;

use std::collections::BTreeSet;

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, Params, Row, Value};
use sqlsandbox::{AttributeValue, Options, Policy, Principal, Scalar};

/// (id, plan, region) of the rows that differ from each other only by
/// case, accents or trailing spaces.
const ROWS: &[(i64, &str, &str)] = &[
    (1, "basic", "eu"),
    (2, "Basic", "EU"),
    (3, "basic ", "eu "),
    (4, "básic", "éu"),
    (5, "pro", "us"),
];

fn policy(db: &str) -> Policy {
    let src = format!(
        "version: 1
databases:
  maria:
    dialect: mysql
    default_schema: {db}
    tables:
      {db}.accounts:
        columns: {{id: integer, plan: text, region: text}}
        combine: union
groups:
  by_plan: {{data: {{maria: {{{db}: {{accounts: {{sandbox: {{column: plan, attribute: plan}}}}}}}}}}, native: {{maria: true}}}}
  by_region: {{data: {{maria: {{{db}: {{accounts: {{sandbox: {{column: region, attribute: region}}}}}}}}}}, native: {{maria: true}}}}
"
    );
    Policy::from_yaml(&src, "mariadb_exact.yaml").expect("the test policy loads")
}

fn attr(values: &[&str]) -> AttributeValue {
    match values {
        [one] => AttributeValue::text(*one),
        many => AttributeValue::Many(many.iter().map(|v| Scalar::Text(v.to_string())).collect()),
    }
}

/// The ids a sandbox may show: rows whose plan (or region) is one of the
/// values, byte for byte.
fn expected(plans: &[&str], regions: &[&str]) -> BTreeSet<i64> {
    ROWS.iter()
        .filter(|(_, p, r)| plans.contains(p) || regions.contains(r))
        .map(|(id, _, _)| *id)
        .collect()
}

fn run(c: &mut Conn, policy: &Policy, who: &Principal, params: bool) -> (String, BTreeSet<i64>) {
    let opts = Options::default().with_params(params);
    let out = policy
        .rewrite(who, "SELECT id FROM accounts", &opts)
        .expect("rewrites");
    let ids: Vec<i64> = if params {
        let values: Vec<Value> = out
            .params
            .iter()
            .map(|p| match &p.value {
                Scalar::Text(s) => Value::from(s.as_str()),
                other => panic!("unexpected parameter {other:?}"),
            })
            .collect();
        c.exec(&out.sql, Params::Positional(values))
    } else {
        c.query(&out.sql)
    }
    .unwrap_or_else(|e| panic!("{}: {e}", out.sql));
    // Filler rows (ids from 100) never match any attribute used here.
    (out.sql, ids.into_iter().collect())
}

/// The keys MariaDB's plan for `sql` uses.
fn keys(c: &mut Conn, sql: &str) -> Vec<String> {
    let rows: Vec<Row> = c.query(format!("EXPLAIN {sql}")).expect("EXPLAIN");
    rows.iter()
        .filter_map(|r| r.get::<Option<String>, _>("key").flatten())
        .collect()
}

fn check(c: &mut Conn, policy: &Policy, plans: &[&str], regions: &[&str]) -> usize {
    let mut groups = Vec::new();
    let mut attrs = Vec::new();
    if !plans.is_empty() {
        groups.push("by_plan");
        attrs.push(("plan", attr(plans)));
    }
    if !regions.is_empty() {
        groups.push("by_region");
        attrs.push(("region", attr(regions)));
    }
    let who = Principal::new(policy, "t", groups, attrs).expect("principal");
    let want = expected(plans, regions);
    let mut runs = 0;
    for params in [false, true] {
        let (sql, got) = run(c, policy, &who, params);
        assert_eq!(
            got, want,
            "plans {plans:?} regions {regions:?} (params: {params}): {sql}"
        );
        runs += 1;
        if !params {
            let used = keys(c, &sql);
            if !plans.is_empty() {
                assert!(
                    used.iter().any(|k| k.contains("ix_plan")),
                    "the plan of {sql} does not use the index on plan: {used:?}"
                );
            }
            if !regions.is_empty() {
                assert!(
                    used.iter().any(|k| k.contains("ix_region")),
                    "the plan of {sql} does not use the index on region: {used:?}"
                );
            }
        }
    }
    runs
}

#[test]
#[ignore = "needs SQLSANDBOX_MYSQL_URL"]
fn text_sandboxes_match_exactly_and_use_the_index() {
    let Ok(url) = std::env::var("SQLSANDBOX_MYSQL_URL") else {
        panic!("set SQLSANDBOX_MYSQL_URL: this server test is #[ignore]d by default and runs with --include-ignored");
    };
    let name = format!("sqlsandbox_exact_{}", std::process::id());
    let result = common::with_scratch_mariadb_database(&url, &name, |db_url| {
        let mut c = Conn::new(Opts::from_url(db_url).unwrap()).unwrap();
        c.query_drop(
            "CREATE TABLE accounts (id INT PRIMARY KEY, plan VARCHAR(32), region VARCHAR(8), \
             KEY ix_plan (plan), KEY ix_region (region)) \
             DEFAULT CHARSET utf8mb4 COLLATE utf8mb4_general_ci",
        )
        .unwrap();
        for (id, plan, region) in ROWS {
            c.exec_drop("INSERT INTO accounts VALUES (?, ?, ?)", (id, plan, region))
                .unwrap();
        }
        // Enough other rows that a full scan is never the cheaper plan.
        c.query_drop(
            "INSERT INTO accounts SELECT seq + 100, CONCAT('p', seq), CONCAT('r', seq) FROM seq_1_to_3000",
        )
        .unwrap();
        c.query_drop("ANALYZE TABLE accounts").unwrap();
        // The trap is set: the collation matches all four spellings.
        let loose: Vec<i64> = c
            .query("SELECT id FROM accounts WHERE plan = 'Basic' ORDER BY id")
            .unwrap();
        assert_eq!(
            loose,
            vec![1, 2, 3, 4],
            "the table's collation is not the default kind"
        );

        let policy = policy(&name);
        let mut runs = 0;
        for plans in [
            &["Basic"][..],
            &["basic "],
            &["básic"],
            &["BASIC"],
            &["basic"],
            &["Basic", "pro"],
            &["basic ", "básic"],
            &["BASIC", "PRO"],
        ] {
            runs += check(&mut c, &policy, plans, &[]);
        }
        for (plans, regions) in [
            (&["Basic"][..], &["eu "][..]),
            (&["BASIC"], &["EU", "US"]),
            (&["basic"], &["éu"]),
        ] {
            runs += check(&mut c, &policy, plans, regions);
        }
        format!("{runs} sandboxed queries matched exactly, with the index")
    });
    match result {
        Ok(summary) => common::mark_done("mariadb-exact", &summary),
        Err(e) => std::panic::resume_unwind(e),
    }
}
