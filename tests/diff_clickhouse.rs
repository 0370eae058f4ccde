//! Differential tests on ClickHouse through chDB (embedded, a session in a scratch directory), through the Python runner
//! (`tests/engines/`; run when `SQLSANDBOX_PYTHON` names a Python with
//! `tests/engines/requirements.txt` installed, `#[ignore]`d otherwise).
//!
//! sqlsandbox's side runs the rewritten SQL on the dataset's schema; the
//! oracle runs the original query in a schema of per-user views of the
//! same names (`engines::EngineDb`). Each test makes its schemas and drops
//! them afterwards.

mod differential;
mod engines;

use differential::dataset::Db;

const DB: Db = Db::Clickhouse;

#[test]
#[ignore = "needs SQLSANDBOX_PYTHON"]
fn the_oracle_shows_each_user_exactly_their_rows() {
    engines::oracle_test(DB);
}

#[test]
#[ignore = "needs SQLSANDBOX_PYTHON"]
fn corpus_matches_per_user_views() {
    let users = differential::users();
    engines::corpus_test(DB, &users, users.len());
}

#[test]
#[ignore = "needs SQLSANDBOX_PYTHON"]
fn generated_queries_match_per_user_views() {
    engines::generated_test(DB, differential::harness::generated_cases());
}

#[test]
#[ignore = "needs SQLSANDBOX_PYTHON"]
fn hostile_attribute_values_select_exactly_their_rows() {
    engines::hostile_test(DB, 5);
}
