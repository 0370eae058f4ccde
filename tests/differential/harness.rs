//! Running one query two ways and comparing: through sqlsandbox (the
//! rewritten SQL, on a connection that may read everything) and under the
//! database's own enforcement for the same user (the oracle).

use std::cell::RefCell;

use proptest::collection::vec;
use proptest::prelude::any;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use sqlsandbox::{BoundParam, Options, Policy, Principal};

use super::dataset::Db;
use super::{corpus, dataset, generate, hostile_values, TestUser};

/// A result set, every cell rendered as text (`NULL` for null; the
/// rendering depends only on the value and its database type).
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Rows {
    fn lines(&self) -> Vec<String> {
        self.rows.iter().map(|r| r.join(" | ")).collect()
    }

    fn sorted(&self) -> Vec<String> {
        let mut v = self.lines();
        v.sort();
        v
    }
}

/// One database under test.
pub trait Backend {
    fn db(&self) -> Db;
    /// The schema (MariaDB: database) holding the data; `{s}` in a query
    /// stands for it on the sqlsandbox side.
    fn data_schema(&self) -> String;
    /// Runs SQL with bind parameters on the application's connection, which
    /// may read every row (row-level security does not apply to it).
    fn run_app(&mut self, sql: &str, params: &[BoundParam]) -> Result<Rows, String>;
    /// Makes the oracle enforce `user`'s access; returns what `{s}` stands
    /// for under the oracle.
    fn become_user(&mut self, user: &TestUser) -> Result<String, String>;
    /// Runs SQL under the oracle, as the user last given to `become_user`.
    fn run_oracle(&mut self, sql: &str) -> Result<Rows, String>;
    /// Whether sqlsandbox binds parameters in this database's dialect
    /// (ClickHouse's it refuses: `SB403`); where not, only literals run, and
    /// the parameter variant must be that refusal.
    fn bind_parameters(&self) -> bool {
        true
    }
    /// Whether an error of the oracle (the original query, unchanged) is a
    /// limitation of the engine (a generated query it cannot run), and
    /// which; such generated cases are counted as skipped.
    fn limitation(&self, _oracle_error: &str) -> Option<&'static str> {
        None
    }
    /// Why a generated query means something else on this engine than in
    /// standard SQL (so the oracle answers another question), if it does;
    /// such cases are counted as skipped.
    fn reads_otherwise(&self, _sql: &str) -> Option<&'static str> {
        None
    }
    /// Adds an event row whose region is bound as a parameter.
    fn insert_event(&mut self, id: i64, tenant: i64, region: &str) -> Result<(), String>;
    /// Runs SQL on the application's connection with the optimiser setting
    /// that sidesteps a known wrong-result bug of this engine, and names the
    /// bug; `None` where no such bug is known. Only used to tell an engine
    /// bug from a sqlsandbox one after results differed.
    fn run_app_sidestepping_bug(
        &mut self,
        _sql: &str,
        _params: &[BoundParam],
    ) -> Option<(&'static str, Result<Rows, String>)> {
        None
    }
    /// The same for the oracle: the original query can meet the engine's
    /// bug too (its own derived tables), and then the oracle is the side
    /// that is wrong.
    fn run_oracle_sidestepping_bug(&mut self, _sql: &str) -> Option<Result<Rows, String>> {
        None
    }
}

fn options(params: bool) -> Options {
    Options::default().with_params(params)
}

fn short(s: &str) -> String {
    if s.chars().count() > 400 {
        format!(
            "{}… ({} bytes)",
            s.chars().take(400).collect::<String>(),
            s.len()
        )
    } else {
        s.to_string()
    }
}

/// What differs between two result sets, for a failure message.
fn difference(expected: &Rows, got: &Rows, ordered: bool) -> Option<String> {
    if expected.columns != got.columns {
        return Some(format!(
            "columns differ: oracle {:?}, sqlsandbox {:?}",
            expected.columns, got.columns
        ));
    }
    let (e, g) = if ordered {
        (expected.lines(), got.lines())
    } else {
        (expected.sorted(), got.sorted())
    };
    if e == g {
        return None;
    }
    let (missing, extra) = if ordered {
        // From the first row where the two differ.
        let at = e.iter().zip(&g).take_while(|(a, b)| a == b).count();
        (e[at..].to_vec(), g[at..].to_vec())
    } else {
        multiset_difference(&e, &g)
    };
    Some(format!(
        "{} rows from the oracle, {} from sqlsandbox{}\n    only in the oracle (first 5): {:#?}\n    only in sqlsandbox (first 5): {:#?}",
        e.len(),
        g.len(),
        if ordered { " (compared in order)" } else { "" },
        &missing[..missing.len().min(5)],
        &extra[..extra.len().min(5)],
    ))
}

/// Rows of `a` not in `b` and of `b` not in `a`, counting repeats (both
/// sorted).
fn multiset_difference(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut i, mut j) = (0, 0);
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                only_a.push(x.clone());
                i += 1;
            }
            (Some(x), None) => {
                only_a.push(x.clone());
                i += 1;
            }
            (_, Some(y)) => {
                only_b.push(y.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    (only_a, only_b)
}

/// Runs `template` (with `{s}` for the schema) for `user`: rewritten by
/// sqlsandbox with literals and with bind parameters, and under the oracle
/// (`become_user` must have been called). Returns the number of rows, or
/// a report of the first difference.
pub fn compare(
    b: &mut dyn Backend,
    policy: &Policy,
    user: &TestUser,
    principal: &Principal,
    oracle_schema: &str,
    template: &str,
    ordered: bool,
) -> Result<usize, String> {
    let db = b.db();
    let context = |what: &str| {
        format!(
            "[{db:?}] user {} (tenants {:?}, regions {:?}{}): {what}\n  query: {}",
            user.name,
            user.tenants,
            short(&format!("{:?}", user.regions)),
            if user.analyst { ", analyst" } else { "" },
            short(template)
        )
    };
    let oracle_sql = template.replace("{s}", oracle_schema);
    let expected = b
        .run_oracle(&oracle_sql)
        .map_err(|e| context(&format!("the oracle failed: {e}")))?;
    let sql = template.replace("{s}", &b.data_schema());
    // Literals and parameters under `fence: auto`; literals under
    // `always` too, where conditions and top-N move into every sandbox.
    for (params, fence) in [
        (false, None),
        (true, None),
        (false, Some(sqlsandbox::FenceMode::Always)),
    ] {
        let opts = {
            let mut o = options(params);
            o.fence = fence;
            o
        };
        if params && !b.bind_parameters() {
            match policy.rewrite(principal, &sql, &opts) {
                Err(e) if e.code() == "SB403" => continue,
                // Nothing to bind (no sandbox applies): runs as it is.
                Ok(rw) if rw.params.is_empty() => {}
                other => {
                    return Err(context(&format!(
                        "bind parameters must be refused in this dialect (SB403), got {:?}",
                        other.map(|rw| rw.sql).map_err(|e| e.code())
                    )))
                }
            }
        }
        let rw = policy.rewrite(principal, &sql, &opts).map_err(|e| {
            context(&format!(
                "sqlsandbox refused (params: {params}, fence: {fence:?}): [{}] {e}",
                e.code()
            ))
        })?;
        let got = b.run_app(&rw.sql, &rw.params).map_err(|e| {
            context(&format!(
                "the rewritten SQL failed (params: {params}, fence: {fence:?}): {e}\n  rewritten: {}",
                short(&rw.sql)
            ))
        })?;
        // MariaDB can name a merged derived table's column after the
        // expression behind its alias (`SELECT d.c4 AS c0 … GROUP BY d.c4`
        // comes back as `c4`, plan-dependent: MDEV-style naming bug seen on
        // 10.11): there, compare the values only.
        // ClickHouse names a column of a joined table by its qualified path
        // when the name repeats (`<oracle schema>.orders.id` under the
        // views, `orders.id` in the rewrite): compare the last part.
        let (expected, got) = if db == super::dataset::Db::Clickhouse {
            let last = |r: &Rows| Rows {
                columns: r
                    .columns
                    .iter()
                    .map(|c| c.rsplit('.').next().unwrap_or(c).to_string())
                    .collect(),
                rows: r.rows.clone(),
            };
            (last(&expected), last(&got))
        } else {
            (expected.clone(), got)
        };
        let got =
            if db == super::dataset::Db::Mariadb && got.columns.len() == expected.columns.len() {
                Rows {
                    columns: expected.columns.clone(),
                    ..got
                }
            } else {
                got
            };
        if let Some(diff) = difference(&expected, &got, ordered) {
            // A result the engine gets right once its known bug is sidestepped
            // (on the rewrite's side, the oracle's, or both) is the engine's
            // bug, not the rewrite's: reported, not failed.
            if let Some((bug, Ok(again))) = b.run_app_sidestepping_bug(&rw.sql, &rw.params) {
                let again = Rows {
                    columns: expected.columns.clone(),
                    ..again
                };
                // The oracle is run again only when the rewrite alone does
                // not account for the difference.
                let agree = difference(&expected, &again, ordered).is_none()
                    || matches!(
                        b.run_oracle_sidestepping_bug(&oracle_sql),
                        Some(Ok(oracle_again)) if difference(&oracle_again, &again, ordered).is_none()
                    );
                if agree {
                    super::notice(&context(&format!(
                        "{bug}: the results agree with it sidestepped\n  rewritten: {}",
                        short(&rw.sql)
                    )));
                    continue;
                }
            }
            return Err(context(&format!(
                "results differ (params: {params}, fence: {fence:?})\n  rewritten: {}\n  params: {}\n  {diff}",
                short(&rw.sql),
                short(&format!("{:?}", rw.params)),
            )));
        }
    }
    Ok(expected.rows.len())
}

/// Fails with every report (the first ten in full).
fn fail_with(reports: &[String], what: &str) {
    if reports.is_empty() {
        return;
    }
    let shown: Vec<&String> = reports.iter().take(10).collect();
    panic!(
        "{} {what} failed:\n\n{}",
        reports.len(),
        shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

/// Row counts of every table, read on the application's connection.
pub fn table_counts(b: &mut dyn Backend) -> Vec<String> {
    let schema = b.data_schema();
    dataset::TABLES
        .iter()
        .map(|t| {
            let rows = b
                .run_app(&format!("SELECT count(*) FROM {schema}.{}", t.name), &[])
                .unwrap_or_else(|e| panic!("table {} is gone or broken: {e}", t.name));
            format!("{}: {}", t.name, rows.rows[0][0])
        })
        .collect()
}

/// Checks the oracle itself against the dataset: for every user and
/// table, the number of rows the oracle shows equals the number the policy
/// allows, counted in Rust from the generated rows.
pub fn check_oracle(b: &mut dyn Backend, users: &[TestUser]) {
    let data = dataset::rows();
    for user in users {
        let schema = b
            .become_user(user)
            .unwrap_or_else(|e| panic!("oracle for {}: {e}", user.name));
        for (t, rows) in &data {
            let tenant_col = if t.name == "tenants" { 0 } else { 1 };
            let allowed = |r: &Vec<dataset::Val>| {
                if user.analyst || t.name == "products" {
                    return true;
                }
                let tenant_ok =
                    matches!(r[tenant_col], dataset::Val::Int(x) if user.tenants.contains(&x));
                let region_ok = t.name != "events"
                    || matches!(&r[4], dataset::Val::Text(x) if user.regions.contains(x));
                tenant_ok && region_ok
            };
            let expected = rows.iter().filter(|r| allowed(r)).count();
            let got = b
                .run_oracle(&format!("SELECT count(*) FROM {schema}.{}", t.name))
                .unwrap_or_else(|e| panic!("oracle count of {} for {}: {e}", t.name, user.name));
            assert_eq!(
                got.rows[0][0],
                expected.to_string(),
                "[{:?}] the oracle shows {} {} rows of {}, the policy allows {expected}",
                b.db(),
                user.name,
                got.rows[0][0],
                t.name
            );
        }
    }
}

/// Counts from a corpus run.
#[derive(Debug, Default)]
pub struct CorpusStats {
    /// (user, query) pairs compared, each with literals and parameters.
    pub pairs: usize,
    /// Rows the oracle returned, over all pairs.
    pub rows: usize,
    /// (user, query) pairs where both sides refused a hidden column
    /// (sqlsandbox by an error, or by SQL the database rejects).
    pub both_refused: usize,
}

/// Ok when sqlsandbox refuses `sql` for `principal`, or when the database
/// rejects the rewritten SQL, with literals and with bind parameters (the
/// sandbox subquery lacks the hidden column); Err says what ran instead.
fn fails_closed(
    b: &mut dyn Backend,
    policy: &Policy,
    principal: &Principal,
    sql: &str,
) -> Result<(), String> {
    for params in [false, true] {
        match policy.rewrite(principal, sql, &options(params)) {
            Err(e) if e.is_refusal() => {}
            Err(e) => return Err(format!("not a refusal: [{}] {e}", e.code())),
            Ok(rw) => {
                if let Ok(rows) = b.run_app(&rw.sql, &rw.params) {
                    return Err(format!("{} rows from {}", rows.rows.len(), rw.sql));
                }
            }
        }
    }
    Ok(())
}

/// Every user of the test policy runs every corpus query for this
/// database; then the hidden-column queries must be refused by both sides
/// for customers and agree for the analyst.
pub fn run_corpus(b: &mut dyn Backend, policy: &Policy, users: &[TestUser]) -> CorpusStats {
    run_corpus_sampled(b, policy, users, users.len())
}

/// [`run_corpus`], each query for `per_query` of the users only (query `i`
/// for users `i`, `i + 1`, … modulo their number), for slow engines: every
/// query and every user still run.
pub fn run_corpus_sampled(
    b: &mut dyn Backend,
    policy: &Policy,
    users: &[TestUser],
    per_query: usize,
) -> CorpusStats {
    let db = b.db();
    let picked = |u: usize, i: usize| (u + users.len() - i % users.len()) % users.len() < per_query;
    let mut stats = CorpusStats::default();
    let mut reports = Vec::new();
    for (u, user) in users.iter().enumerate() {
        let principal = user.principal(policy);
        let schema = b
            .become_user(user)
            .unwrap_or_else(|e| panic!("oracle for {}: {e}", user.name));
        let queries = corpus::QUERIES.iter().filter(|q| q.runs_on(db));
        for (_, q) in queries.enumerate().filter(|(i, _)| picked(u, *i)) {
            match compare(b, policy, user, &principal, &schema, q.sql, q.ordered) {
                Ok(n) => {
                    stats.pairs += 1;
                    stats.rows += n;
                }
                Err(report) => reports.push(report),
            }
        }
        let hidden = corpus::HIDDEN_COLUMN.iter().enumerate();
        for (_, sql) in hidden.filter(|(i, _)| user.analyst || picked(u, *i)) {
            if user.analyst {
                match compare(b, policy, user, &principal, &schema, sql, false) {
                    Ok(_) => stats.pairs += 1,
                    Err(report) => reports.push(report),
                }
                continue;
            }
            let sandboxed = sql.replace("{s}", &b.data_schema());
            let sandbox = fails_closed(b, policy, &principal, &sandboxed);
            let oracle = b.run_oracle(&sql.replace("{s}", &schema));
            match (sandbox, oracle) {
                (Ok(()), Err(_)) => stats.both_refused += 1,
                (sandbox, oracle) => reports.push(format!(
                    "[{db:?}] user {}: hidden column query {sql}\n  sqlsandbox: {sandbox:?}\n  oracle: {:?}",
                    user.name,
                    oracle.map(|o| o.rows.len())
                )),
            }
        }
    }
    fail_with(&reports, "corpus comparisons");
    stats
}

/// The seed of the generated-query run: `SQLSANDBOX_DIFF_SEED` or a fresh
/// one.
pub fn seed() -> u64 {
    match std::env::var("SQLSANDBOX_DIFF_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SQLSANDBOX_DIFF_SEED={s} is not a u64")),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ (u64::from(std::process::id()) << 32)
        }
    }
}

/// Generated cases per run and database: `SQLSANDBOX_DIFF_CASES`, or 500.
pub fn generated_cases() -> u32 {
    std::env::var("SQLSANDBOX_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
}

/// Runs `cases` random queries (see [`generate`]) for random users of the
/// test policy, each compared with the oracle; on a failure, proptest
/// shrinks the query and the panic message names the seed that replays it.
pub fn run_generated(b: &mut dyn Backend, policy: &Policy, users: &[TestUser], cases: u32) -> u32 {
    run_generated_counting(b, policy, users, cases).0
}

/// [`run_generated`], returning the cases compared and the cases skipped
/// because the engine cannot run the query (see [`Backend::limitation`]).
pub fn run_generated_counting(
    b: &mut dyn Backend,
    policy: &Policy,
    users: &[TestUser],
    cases: u32,
) -> (u32, u32) {
    let seed = seed();
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
    let principals: Vec<Principal> = users.iter().map(|u| u.principal(policy)).collect();
    // SQLSANDBOX_DIFF_SHOW=1 prints every generated query.
    let show = std::env::var_os("SQLSANDBOX_DIFF_SHOW").is_some();
    let backend = RefCell::new(b);
    let ran = RefCell::new(0u32);
    let skipped = RefCell::new(0u32);
    let result = runner.run(&vec(any::<u16>(), 0..160), |choices| {
        let g = generate::query(&choices, users.len());
        let user = &users[g.user];
        if show {
            super::notice(&format!("generated for {}: {}", user.name, g.sql));
        }
        let mut b = backend.borrow_mut();
        if b.reads_otherwise(&g.sql).is_some() {
            *skipped.borrow_mut() += 1;
            return Ok(());
        }
        let schema = b
            .become_user(user)
            .map_err(|e| TestCaseError::fail(format!("oracle for {}: {e}", user.name)))?;
        match compare(
            *b,
            policy,
            user,
            &principals[g.user],
            &schema,
            &g.sql,
            g.ordered,
        ) {
            Ok(_) => *ran.borrow_mut() += 1,
            // The engine cannot run the query, or the rewrite of it (both
            // counted; ClickHouse's correlated subqueries).
            Err(e)
                if (e.contains("the oracle failed: ")
                    || e.contains("the rewritten SQL failed"))
                    && b.limitation(&e).is_some() =>
            {
                *skipped.borrow_mut() += 1
            }
            Err(e) => return Err(TestCaseError::fail(e)),
        }
        Ok(())
    });
    let db = backend.borrow().db();
    match result {
        Ok(()) => (*ran.borrow(), *skipped.borrow()),
        Err(TestError::Fail(reason, choices)) => {
            let g = generate::query(&choices, users.len());
            panic!(
                "[{db:?}] a generated query differs from the oracle.\n  replay with SQLSANDBOX_DIFF_SEED={seed}\n  minimal case: user {}, query {}\n  {reason}",
                users[g.user].name, g.sql
            )
        }
        Err(TestError::Abort(reason)) => {
            panic!("[{db:?}] generated queries aborted (SQLSANDBOX_DIFF_SEED={seed}): {reason}")
        }
    }
}

/// Counts from a hostile-value run.
#[derive(Debug, Default)]
pub struct HostileStats {
    pub values: usize,
    /// (value, policy, query, mode) runs that returned exactly the oracle's rows.
    pub exact: usize,
    /// Rows those runs returned.
    pub rows: usize,
}

/// Queries of the hostile-value test, over `events` (filtered on the text
/// attribute) and `accounts`.
const HOSTILE_QUERIES: &[&str] = &[
    "SELECT id, region FROM events",
    "SELECT e.id, a.name FROM events e JOIN accounts a ON a.id = e.account_id",
    "SELECT count(*) AS n, max(id) AS top FROM events",
    "WITH x AS (SELECT * FROM events) SELECT region, count(*) AS n FROM x GROUP BY region",
    "SELECT id FROM events WHERE region IS NOT NULL UNION SELECT id FROM {s}.events",
];

/// Each hostile value becomes the region of a few event rows (tenants 1
/// and 2) and then the `region` attribute of a tenant-1 customer, under the
/// test policy (basic sandbox) and a custom-question policy; every query
/// runs with literals and with bind parameters and must return exactly the
/// oracle's rows — no refusal, no error — and the tables stay intact.
pub fn run_hostile(b: &mut dyn Backend, policies: &[&Policy]) -> HostileStats {
    run_hostile_sampled(b, policies, HOSTILE_QUERIES.len())
}

/// [`run_hostile`] with `per_value` of the queries for each value (value
/// `i` runs queries `i`, `i + 1`, … modulo their number), for slow engines.
pub fn run_hostile_sampled(
    b: &mut dyn Backend,
    policies: &[&Policy],
    per_value: usize,
) -> HostileStats {
    let mut stats = HostileStats::default();
    let mut reports = Vec::new();
    let values = hostile_values();
    for (i, v) in values.iter().enumerate() {
        let id = 900_000 + 10 * i as i64;
        // Every other value gets rows of its own; the rest must find none.
        if i % 2 == 0 {
            for (k, tenant) in [(0, 1), (1, 1), (2, 2)] {
                b.insert_event(id + k, tenant, v)
                    .unwrap_or_else(|e| panic!("inserting hostile value {}: {e}", short(v)));
            }
        }
    }
    let before = table_counts(b);
    for (i, v) in values.iter().enumerate() {
        stats.values += 1;
        let user = TestUser::with_region(1, v);
        let schema = b
            .become_user(&user)
            .unwrap_or_else(|e| panic!("oracle for value {}: {e}", short(v)));
        for policy in policies {
            let principal = user.principal(policy);
            let n = HOSTILE_QUERIES.len();
            for q in (0..per_value.min(n)).map(|k| HOSTILE_QUERIES[(i + k) % n]) {
                match compare(b, policy, &user, &principal, &schema, q, false) {
                    Ok(n) => {
                        stats.exact += 2;
                        stats.rows += 2 * n;
                    }
                    Err(report) => reports.push(report),
                }
            }
        }
    }
    // A NUL character is refused in both modes, never bound.
    let user = TestUser::with_region(1, super::NUL_VALUE);
    for policy in policies {
        for params in [false, true] {
            let err = policy
                .rewrite(
                    &user.principal(policy),
                    HOSTILE_QUERIES[0],
                    &options(params),
                )
                .expect_err("a NUL character must be refused");
            let refused_params = params && !b.bind_parameters() && err.code() == "SB403";
            assert!(err.code() == "SB302" || refused_params, "{err}");
        }
    }
    fail_with(&reports, "hostile-value comparisons");
    assert_eq!(
        table_counts(b),
        before,
        "tables changed during the hostile-value run"
    );
    stats
}
