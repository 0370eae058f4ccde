//! Differential tests on Spark SQL in local mode (pyspark, `local[1]`, one SparkSession shared by the tests of this file), through the Python runner
//! (`tests/engines/`; run when `SQLSANDBOX_PYTHON` names a Python with
//! `tests/engines/requirements.txt` installed, `#[ignore]`d otherwise).
//!
//! sqlsandbox's side runs the rewritten SQL on the dataset's schema; the
//! oracle runs the original query in a schema of per-user views of the
//! same names (`engines::EngineDb`). Each test makes its schemas and drops
//! them afterwards.
//!
//! Spark plans and runs every query as a job (a few tenths of a second
//! each on CI machines), so the product is sampled: each corpus query runs
//! for one user (rotating, so every user runs an eighth of the corpus;
//! `SQLSANDBOX_SPARK_FULL=1` runs the whole product), 40 generated queries
//! (`SQLSANDBOX_DIFF_CASES` changes it), and each hostile value with one of
//! the five hostile queries (`SQLSANDBOX_SPARK_FULL=1`: all five).

mod differential;
mod engines;

/// The whole product instead of a sample.
fn full() -> bool {
    std::env::var_os("SQLSANDBOX_SPARK_FULL").is_some()
}

use differential::dataset::Db;

const DB: Db = Db::Spark;

#[test]
#[ignore = "needs SQLSANDBOX_PYTHON"]
fn the_oracle_shows_each_user_exactly_their_rows() {
    engines::oracle_test(DB);
}

#[test]
#[ignore = "needs SQLSANDBOX_PYTHON"]
fn corpus_matches_per_user_views() {
    let users = differential::users();
    engines::corpus_test(DB, &users, if full() { users.len() } else { 1 });
}

#[test]
#[ignore = "needs SQLSANDBOX_PYTHON"]
fn generated_queries_match_per_user_views() {
    let cases = match std::env::var("SQLSANDBOX_DIFF_CASES") {
        Ok(_) => differential::harness::generated_cases(),
        Err(_) => 40,
    };
    engines::generated_test(DB, cases);
}

#[test]
#[ignore = "needs SQLSANDBOX_PYTHON"]
fn hostile_attribute_values_select_exactly_their_rows() {
    engines::hostile_test(DB, if full() { 5 } else { 1 });
}
