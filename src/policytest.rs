//! Policy tests (`sqlsandbox test`): YAML files of cases kept next to the
//! policy, each naming a principal, a query and what must come out.
//!
//! ```yaml
//! policy: ../saas.yaml          # relative to this file (`--policy` overrides it)
//! fixture: saas.sql             # default fixture for `rows` cases (a SQL script or a .sqlite file)
//! cases:
//!   - name: alice's orders are her tenant's
//!     user: alice               # or group: [customers] + attributes: {tenant: 7}
//!                               # or api_key: SECRET, claims: {groups: [...], attributes: {...}},
//!                               # or anonymous: true
//!     sql: SELECT id FROM orders  # or builder: {query: {...}} (or a file name),
//!                               # or question: big_orders + values: {since: 2024-01-01}
//!     dialect: sqlite           # optional, like database: and fence:
//!     expect:
//!       sql: |                  # the exact rewritten SQL (`--update` rewrites it)
//!         SELECT id FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS orders
//!   - name: bob may not read e-mails
//!     user: bob
//!     sql: SELECT email FROM accounts
//!     expect: {refused: SB303}  # the error's stable code
//!   - name: carol sees every tenant
//!     user: carol
//!     sql: SELECT count(*) FROM orders
//!     expect:
//!       rows: [[6]]             # run on the fixture; compared as a multiset
//!       ordered: false          # unless ordered: true
//! ```
//!
//! Every case gets exactly one expectation. `refused` passes when the call
//! fails with that code (a wrong principal, `SB102`, included); `sql` when
//! the rewritten SQL equals the text (trailing newlines ignored); `rows`
//! when the rewritten SQL, run on the fixture, returns those rows. Cells
//! compare as numbers when both sides are numbers (or one is text that
//! reads as one), as text otherwise; `null` is SQL NULL and `true`/`false`
//! are 1/0. A `rows` case is rewritten for SQLite unless it names another
//! dialect; a script fixture runs into a fresh in-memory SQLite database
//! (`ATTACH DATABASE ':memory:' AS public;` gives it a `public` schema),
//! a `.sqlite`/`.db` file is opened read-only. With
//! [`RunOptions::database_url`] (`--database-url`, feature `live`), `rows`
//! cases run on that PostgreSQL or MySQL/MariaDB database instead,
//! rewritten for the policy's dialect, each in a read-only transaction that
//! is rolled back; values arrive as text and compare as above.
//!
//! A malformed file is [`Error::TestFile`] (`SB004`, CLI exit code 2);
//! failing cases are reported per case ([`FileReport`]), as text
//! ([`text_report`]) or JUnit XML ([`junit`]).
//!
//! With `update`, failing `sql` expectations are replaced in place by the
//! SQL produced (as `cargo insta` does): only the text of those block
//! scalars changes, comments and everything else stay as written, and the
//! file is parsed again and compared before it is written.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Location, Result};
use crate::pipeline::Options;
use crate::principal::AttributeValue;
use crate::who::Who;
use crate::{Dialect, FenceMode, Policy};

/// One parsed test file.
#[derive(Debug)]
pub struct TestFile {
    /// The file's path, as given.
    pub path: PathBuf,
    /// The policy the file names (`policy:`), resolved against its folder.
    pub policy: Option<PathBuf>,
    /// Its cases, in order.
    pub cases: Vec<Case>,
    source: String,
}

/// One test case.
#[derive(Debug)]
pub struct Case {
    /// The case's name (`case N` when it has none).
    pub name: String,
    /// 1-based line of the case in its file, when found.
    pub line: Option<usize>,
    /// Who asks.
    pub who: Who,
    /// What is asked.
    pub query: Query,
    /// `database:` of the case.
    pub database: Option<String>,
    /// `dialect:` of the case.
    pub dialect: Option<Dialect>,
    /// `fence:` of the case.
    pub fence: Option<FenceMode>,
    /// The fixture `rows` run on, resolved against the file's folder.
    pub fixture: Option<PathBuf>,
    /// What must come out.
    pub expect: Expect,
}

/// The query of a case.
#[derive(Debug)]
pub enum Query {
    /// Native SQL.
    Sql(String),
    /// A query-builder question.
    Builder(Value),
    /// A saved question run by name with variable values.
    Question {
        /// The question's name.
        name: String,
        /// Values of its `{{variables}}`.
        values: BTreeMap<String, AttributeValue>,
    },
}

/// The one expectation of a case.
#[derive(Debug)]
pub enum Expect {
    /// Refused with this stable code (`SB201`).
    Refused(String),
    /// Rewritten to exactly this SQL.
    Sql(String),
    /// Rewritten, run on the fixture, returns these rows.
    Rows {
        /// Expected rows; each cell a null, boolean, number or text.
        rows: Vec<Vec<Value>>,
        /// Compare in order (otherwise as a multiset).
        ordered: bool,
    },
}

/// How one case went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// As expected.
    Pass,
    /// Not as expected.
    Fail,
    /// A failing `sql` expectation rewritten in the file (with `update`).
    Updated,
}

/// The outcome of one case.
#[derive(Debug)]
pub struct CaseReport {
    /// The case's name.
    pub name: String,
    /// Its line in the file.
    pub line: Option<usize>,
    /// Pass, fail or updated.
    pub status: Status,
    /// Why it failed (or what was updated); empty when it passed.
    pub message: String,
    /// Wall time of the case, in seconds.
    pub seconds: f64,
}

/// The outcome of one test file.
#[derive(Debug)]
pub struct FileReport {
    /// The file, as given.
    pub path: String,
    /// One report per case, in file order.
    pub cases: Vec<CaseReport>,
}

impl FileReport {
    /// Number of failed cases.
    pub fn failures(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }
}

/// How [`run_file`] runs.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// The policy for every file (overrides a file's `policy:`).
    pub policy: Option<PathBuf>,
    /// Rewrite failing `sql` expectations in place.
    pub update: bool,
    /// Run `rows` cases on this live database (`postgres://…` or
    /// `mysql://…`, feature `live`) instead of the fixtures, rewritten for
    /// the policy's dialect, each in a read-only transaction rolled back
    /// afterwards. The database must hold the tables and rows the cases
    /// expect.
    pub database_url: Option<String>,
}

// ----- discovery -------------------------------------------------------------

/// The test files among `paths`: a file is taken as given; a directory is
/// searched recursively for `*.test.yaml` and `*.test.yml`, in name order.
/// No file at all is an error.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(Error::Io {
                path: p.display().to_string(),
                message: "no such file or directory".into(),
            });
        }
    }
    if out.is_empty() {
        return Err(file_error(
            &paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            None,
            "",
            "no test files (*.test.yaml) found",
        ));
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let io = |e: std::io::Error| Error::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::result::Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".test.yaml") || name.ends_with(".test.yml") {
                out.push(p);
            }
        }
    }
    Ok(())
}

// ----- parsing -----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    fixture: Option<String>,
    cases: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    anonymous: Option<bool>,
    #[serde(default)]
    group: Option<OneOrMany>,
    #[serde(default)]
    attributes: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    claims: Option<Value>,
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    builder: Option<Value>,
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    values: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    dialect: Option<String>,
    #[serde(default)]
    fence: Option<String>,
    #[serde(default)]
    fixture: Option<String>,
    expect: RawExpect,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    refused: Option<String>,
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    rows: Option<Vec<Vec<Value>>>,
    #[serde(default)]
    ordered: Option<bool>,
}

fn file_error(file: &str, line: Option<usize>, key: &str, message: impl Into<String>) -> Error {
    Error::TestFile {
        location: Location {
            file: file.to_string(),
            line,
            column: None,
            key: key.to_string(),
        },
        message: message.into(),
    }
}

/// Reads and parses a test file (see the module documentation).
pub fn load(path: &Path) -> Result<TestFile> {
    let source = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse(&source, path)
}

/// Parses test-file text; `path` names it in errors and anchors its
/// relative paths.
pub fn parse(source: &str, path: &Path) -> Result<TestFile> {
    let file = path.display().to_string();
    let text = crate::input::strip_bom(source);
    // Too large or too deep is a broken file here (exit 2), not a refusal.
    crate::input::check_shape(text, crate::input::Syntax::Yaml, "test file")
        .map_err(|e| file_error(&file, None, "", e.to_string()))?;
    let doc = crate::policy::parse_yaml_document(text)
        .map_err(|m| file_error(&file, None, "", format!("not valid YAML: {m}")))?;
    let raw: RawFile =
        serde_json::from_value(doc).map_err(|e| file_error(&file, None, "", e.to_string()))?;
    let dir = path.parent().unwrap_or_else(|| Path::new(""));
    let spans = case_spans(text);
    let file_fixture = raw.fixture.as_deref().map(|f| dir.join(f));
    let mut cases = Vec::new();
    for (i, value) in raw.cases.into_iter().enumerate() {
        let line = spans
            .as_ref()
            .and_then(|s| s.get(i))
            .map(|(start, _)| start + 1);
        let key = format!("cases[{i}]");
        let err = |m: String| file_error(&file, line, &key, m);
        let rc: RawCase = serde_json::from_value(value).map_err(|e| err(e.to_string()))?;
        cases.push(case(rc, i, line, dir, file_fixture.as_ref()).map_err(err)?);
    }
    Ok(TestFile {
        path: path.to_path_buf(),
        policy: raw.policy.as_deref().map(|p| dir.join(p)),
        cases,
        source: text.to_string(),
    })
}

fn case(
    rc: RawCase,
    index: usize,
    line: Option<usize>,
    dir: &Path,
    file_fixture: Option<&PathBuf>,
) -> std::result::Result<Case, String> {
    let name = rc.name.unwrap_or_else(|| format!("case {}", index + 1));
    // Who: exactly one way of naming the principal.
    let groups_given = rc.group.is_some() || rc.attributes.is_some();
    let given = [
        rc.user.is_some(),
        rc.anonymous == Some(true),
        rc.claims.is_some(),
        rc.api_key.is_some(),
        groups_given,
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        return Err(format!(
            "case `{name}` needs exactly one principal: `user`, `anonymous: true`, `claims`, `api_key`, or `group`/`attributes` ({given} given)"
        ));
    }
    let who = if let Some(u) = rc.user {
        Who::User(u)
    } else if rc.anonymous == Some(true) {
        Who::Anonymous
    } else if let Some(c) = rc.claims {
        Who::Claims(c)
    } else if let Some(k) = rc.api_key {
        Who::ApiKey(k)
    } else {
        let groups = match rc.group {
            None => Vec::new(),
            Some(OneOrMany::One(g)) => vec![g],
            Some(OneOrMany::Many(gs)) => gs,
        };
        let attributes =
            rc.attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| {
                    AttributeValue::from_json(&v).map(|a| (k.clone(), a)).ok_or_else(|| {
                    format!("attribute `{k}` must be a string, number, boolean or a list of them")
                })
                })
                .collect::<std::result::Result<Vec<_>, String>>()?;
        Who::Groups { groups, attributes }
    };
    // What: exactly one query.
    let queries = [
        rc.sql.is_some(),
        rc.builder.is_some(),
        rc.question.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if queries != 1 {
        return Err(format!(
            "case `{name}` needs exactly one query: `sql`, `builder` or `question` ({queries} given)"
        ));
    }
    if rc.values.is_some() && rc.question.is_none() {
        return Err(format!("case `{name}`: `values` go with `question`"));
    }
    let query = if let Some(s) = rc.sql {
        Query::Sql(s)
    } else if let Some(b) = rc.builder {
        match b {
            Value::String(file) => Query::Builder(builder_file(&dir.join(file))?),
            other => Query::Builder(other),
        }
    } else {
        let values =
            rc.values
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| {
                    AttributeValue::from_json(&v).map(|a| (k.clone(), a)).ok_or_else(|| {
                    format!("value of `{k}` must be a string, number, boolean or a list of them")
                })
                })
                .collect::<std::result::Result<BTreeMap<_, _>, String>>()?;
        Query::Question {
            name: rc.question.unwrap_or_default(),
            values,
        }
    };
    // The expectation: exactly one.
    let e = rc.expect;
    let expects = [e.refused.is_some(), e.sql.is_some(), e.rows.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if expects != 1 {
        return Err(format!(
            "case `{name}` needs exactly one expectation under `expect`: `refused`, `sql` or `rows` ({expects} given)"
        ));
    }
    if e.ordered.is_some() && e.rows.is_none() {
        return Err(format!("case `{name}`: `ordered` goes with `rows`"));
    }
    let expect = if let Some(code) = e.refused {
        let well_formed = code.len() == 5
            && code.starts_with("SB")
            && code.chars().skip(2).all(|c| c.is_ascii_digit());
        if !well_formed {
            return Err(format!(
                "case `{name}`: `refused` takes an error code such as SB201, not `{code}`"
            ));
        }
        Expect::Refused(code)
    } else if let Some(sql) = e.sql {
        Expect::Sql(sql)
    } else {
        let rows = e.rows.unwrap_or_default();
        for row in &rows {
            for cell in row {
                if matches!(cell, Value::Array(_) | Value::Object(_)) {
                    return Err(format!(
                        "case `{name}`: a row cell must be null, a boolean, a number or text, not {cell}"
                    ));
                }
            }
        }
        Expect::Rows {
            rows,
            ordered: e.ordered.unwrap_or(false),
        }
    };
    let fixture = rc.fixture.map(|f| dir.join(f)).or(file_fixture.cloned());
    Ok(Case {
        name,
        line,
        who,
        query,
        database: rc.database,
        dialect: rc
            .dialect
            .map(|d| d.parse::<Dialect>())
            .transpose()
            .map_err(|e| e.to_string())?,
        fence: rc
            .fence
            .map(|f| f.parse::<FenceMode>())
            .transpose()
            .map_err(|e| e.to_string())?,
        fixture,
        expect,
    })
}

fn builder_file(path: &Path) -> std::result::Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read builder question {}: {e}", path.display()))?;
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml");
    let parsed = if yaml {
        crate::builder::parse_question_yaml(&text)
    } else {
        crate::builder::parse_question(&text)
    };
    parsed.map_err(|e| format!("{}: {e}", path.display()))
}

// ----- running -----------------------------------------------------------------

/// What a case's query gave.
enum Got {
    Sql(String),
    Refused(Error),
}

/// Runs every case of `file` against its policy (`opts.policy`, else the
/// file's `policy:`); with `opts.update`, rewrites failing `sql`
/// expectations in the file. Errors only for what stops the whole file: no
/// policy, a policy that does not load, an update that cannot be written.
pub fn run_file(file: &TestFile, opts: &RunOptions) -> Result<FileReport> {
    let name = file.path.display().to_string();
    let policy_path = opts.policy.clone().or(file.policy.clone()).ok_or_else(|| {
        file_error(
            &name,
            None,
            "policy",
            "no policy: give --policy or a `policy:` key naming the policy file",
        )
    })?;
    let policy = Policy::from_path(&policy_path)?;
    let mut fixtures = Fixtures::default();
    match &opts.database_url {
        Some(url) => fixtures.live = Some(live::connect(url)?),
        None => {
            if let Some(case) = file
                .cases
                .iter()
                .find(|c| matches!(c.expect, Expect::Rows { .. }) && c.fixture.is_none())
            {
                return Err(file_error(
                    &name,
                    case.line,
                    "",
                    format!(
                        "case `{}` expects rows but neither it nor the file names a `fixture` (and no --database-url is given)",
                        case.name
                    ),
                ));
            }
        }
    }
    let mut reports = Vec::new();
    let mut updates: Vec<(usize, String)> = Vec::new();
    for (i, case) in file.cases.iter().enumerate() {
        let started = Instant::now();
        let (status, message) = match run_case(&policy, case, &mut fixtures) {
            Ok(()) => (Status::Pass, String::new()),
            Err(Failure { message, new_sql }) => match new_sql {
                Some(sql) if opts.update => {
                    updates.push((i, sql));
                    (Status::Updated, "expected SQL updated in the file".into())
                }
                _ => (Status::Fail, message),
            },
        };
        reports.push(CaseReport {
            name: case.name.clone(),
            line: case.line,
            status,
            message,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    if !updates.is_empty() {
        let updated = update_source(&file.source, &updates)
            .map_err(|m| file_error(&name, None, "", format!("cannot update: {m}")))?;
        check_update(&file.source, &updated, &updates, &file.path)
            .map_err(|m| file_error(&name, None, "", format!("cannot update: {m}")))?;
        std::fs::write(&file.path, updated).map_err(|e| Error::Io {
            path: name.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(FileReport {
        path: name,
        cases: reports,
    })
}

struct Failure {
    message: String,
    /// For a failing `sql` expectation: the SQL produced, for `update`.
    new_sql: Option<String>,
}

fn fail(message: String) -> Failure {
    Failure {
        message,
        new_sql: None,
    }
}

fn query(policy: &Policy, case: &Case, live: bool) -> Got {
    let opts = Options {
        database: case.database.clone(),
        // Rows run on a SQLite fixture: rewrite for it unless the case says
        // otherwise (on a live database, the policy's dialect).
        dialect: case.dialect.or(match case.expect {
            Expect::Rows { .. } if !live => Some(Dialect::Sqlite),
            _ => None,
        }),
        fence: case.fence,
        ..Options::default()
    };
    let result = case.who.principal(policy).and_then(|p| match &case.query {
        Query::Sql(sql) => policy.rewrite(&p, sql, &opts),
        Query::Builder(q) => policy.rewrite_builder(&p, q, &opts),
        Query::Question { name, values } => policy.rewrite_question(&p, name, values, &opts),
    });
    match result {
        Ok(out) => Got::Sql(out.sql),
        Err(e) => Got::Refused(e),
    }
}

fn run_case(
    policy: &Policy,
    case: &Case,
    fixtures: &mut Fixtures,
) -> std::result::Result<(), Failure> {
    let got = query(policy, case, fixtures.live.is_some());
    match (&case.expect, got) {
        (Expect::Refused(code), Got::Refused(e)) if e.code() == code => Ok(()),
        (Expect::Refused(code), Got::Refused(e)) => Err(fail(format!(
            "expected refusal {code}, got error[{}]: {e}",
            e.code()
        ))),
        (Expect::Refused(code), Got::Sql(sql)) => Err(fail(format!(
            "expected refusal {code}, got SQL:\n    {sql}"
        ))),
        (_, Got::Refused(e)) => Err(fail(format!("unexpected error[{}]: {e}", e.code()))),
        (Expect::Sql(want), Got::Sql(sql)) => {
            if want.trim_end_matches(['\n', '\r']) == sql {
                Ok(())
            } else {
                Err(Failure {
                    message: format!(
                        "SQL differs\n  expected:\n{}\n  actual:\n{}",
                        indent(want.trim_end_matches(['\n', '\r']), "    - "),
                        indent(&sql, "    + ")
                    ),
                    new_sql: Some(sql),
                })
            }
        }
        (Expect::Rows { rows, ordered }, Got::Sql(sql)) => {
            let actual = match (&mut fixtures.live, &case.fixture) {
                (Some(db), _) => db.query(&sql),
                (None, Some(path)) => fixtures.query(path, &sql),
                (None, None) => Err("no fixture".into()),
            }
            .map_err(|m| fail(format!("{m}\n  sql: {sql}")))?;
            compare_rows(rows, &actual, *ordered).map_err(|m| fail(format!("{m}\n  sql: {sql}")))
        }
    }
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ----- fixtures and rows ----------------------------------------------------------

/// One SQLite connection per fixture file, opened on first use; or the
/// live database.
#[derive(Default)]
struct Fixtures {
    open: HashMap<PathBuf, std::result::Result<rusqlite::Connection, String>>,
    live: Option<live::Live>,
}

/// A cell of a result row.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => f.write_str("null"),
            Cell::Int(i) => write!(f, "{i}"),
            Cell::Real(r) => write!(f, "{r}"),
            Cell::Text(t) => write!(f, "{}", Value::String(t.clone())),
            Cell::Blob(b) => {
                f.write_str("x'")?;
                for byte in b {
                    write!(f, "{byte:02x}")?;
                }
                f.write_str("'")
            }
        }
    }
}

fn open_fixture(path: &Path) -> std::result::Result<rusqlite::Connection, String> {
    let shown = path.display();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "sqlite" | "sqlite3" | "db") {
        return rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("fixture {shown}: {e}"));
    }
    let script =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read fixture {shown}: {e}"))?;
    let conn =
        rusqlite::Connection::open_in_memory().map_err(|e| format!("fixture {shown}: {e}"))?;
    conn.execute_batch(&script)
        .map_err(|e| format!("fixture {shown} does not run: {e}"))?;
    Ok(conn)
}

impl Fixtures {
    fn query(&mut self, path: &Path, sql: &str) -> std::result::Result<Vec<Vec<Cell>>, String> {
        let conn = self
            .open
            .entry(path.to_path_buf())
            .or_insert_with(|| open_fixture(path))
            .as_ref()
            .map_err(Clone::clone)?;
        let run = |e: rusqlite::Error| format!("the rewritten SQL fails on the fixture: {e}");
        let mut stmt = conn.prepare(sql).map_err(run)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).map_err(run)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(run)? {
            let mut cells = Vec::with_capacity(columns);
            for i in 0..columns {
                use rusqlite::types::ValueRef;
                cells.push(match row.get_ref(i).map_err(run)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) => Cell::Int(n),
                    ValueRef::Real(r) => Cell::Real(r),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                });
            }
            out.push(cells);
        }
        Ok(out)
    }
}

fn number_of(cell: &Cell) -> Option<f64> {
    match cell {
        Cell::Int(i) => Some(*i as f64),
        Cell::Real(r) => Some(*r),
        Cell::Text(t) => t.trim().parse().ok(),
        Cell::Null | Cell::Blob(_) => None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Whether an expected cell (YAML) matches an actual one (SQLite).
fn cell_matches(want: &Value, got: &Cell) -> bool {
    match (want, got) {
        (Value::Null, Cell::Null) => true,
        (Value::Null, _) | (_, Cell::Null) => false,
        (Value::Bool(b), Cell::Int(i)) => *i == i64::from(*b),
        (Value::Bool(b), Cell::Text(t)) => {
            // SQLite text, PostgreSQL's text form (`t`/`f`), MySQL's 1/0.
            let t = t.as_str();
            if *b {
                matches!(t, "true" | "t" | "1")
            } else {
                matches!(t, "false" | "f" | "0")
            }
        }
        (Value::Number(n), Cell::Int(i)) => {
            n.as_i64() == Some(*i)
                || (!n.is_i64() && n.as_f64().is_some_and(|f| close(f, *i as f64)))
        }
        (Value::Number(n), got) => match (n.as_f64(), number_of(got)) {
            (Some(a), Some(b)) => close(a, b),
            _ => false,
        },
        (Value::String(s), Cell::Text(t)) => s == t,
        (Value::String(s), got @ (Cell::Int(_) | Cell::Real(_))) => s
            .trim()
            .parse::<f64>()
            .is_ok_and(|a| number_of(got).is_some_and(|b| close(a, b))),
        (Value::String(s), blob @ Cell::Blob(_)) => *s == blob.to_string(),
        _ => false,
    }
}

fn row_matches(want: &[Value], got: &[Cell]) -> bool {
    want.len() == got.len() && want.iter().zip(got).all(|(w, g)| cell_matches(w, g))
}

fn show_expected(row: &[Value]) -> String {
    format!(
        "[{}]",
        row.iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn show_actual(row: &[Cell]) -> String {
    format!(
        "[{}]",
        row.iter()
            .map(Cell::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn compare_rows(
    want: &[Vec<Value>],
    got: &[Vec<Cell>],
    ordered: bool,
) -> std::result::Result<(), String> {
    let mut msg = String::new();
    if ordered {
        for (i, pair) in want.iter().zip(got.iter()).enumerate() {
            if !row_matches(pair.0, pair.1) {
                let _ = write!(
                    msg,
                    "row {} differs\n    - {}\n    + {}\n",
                    i + 1,
                    show_expected(pair.0),
                    show_actual(pair.1)
                );
            }
        }
        for row in want.iter().skip(got.len()) {
            let _ = writeln!(msg, "missing row\n    - {}", show_expected(row));
        }
        for row in got.iter().skip(want.len()) {
            let _ = writeln!(msg, "unexpected row\n    + {}", show_actual(row));
        }
    } else {
        let mut used = vec![false; got.len()];
        let mut missing = Vec::new();
        for w in want {
            let hit = got
                .iter()
                .zip(used.iter_mut())
                .find(|(g, u)| !**u && row_matches(w, g));
            match hit {
                Some((_, u)) => *u = true,
                None => missing.push(show_expected(w)),
            }
        }
        let unexpected: Vec<String> = got
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(g, _)| show_actual(g))
            .collect();
        for m in &missing {
            let _ = writeln!(msg, "missing row\n    - {m}");
        }
        for u in &unexpected {
            let _ = writeln!(msg, "unexpected row\n    + {u}");
        }
    }
    if msg.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "rows differ ({} expected, {} returned{})\n  {}",
            want.len(),
            got.len(),
            if ordered { ", in order" } else { "" },
            msg.trim_end().replace('\n', "\n  ")
        ))
    }
}

/// Rows from a live database (feature `live`): every value in its text form.
#[cfg(feature = "live")]
mod live {
    use super::Cell;
    use crate::error::{Error, Result};
    use mysql::prelude::Queryable;

    /// A connection to the database of `--database-url`.
    pub(super) enum Live {
        Pg(Box<postgres::Client>),
        My(Box<mysql::Conn>),
    }

    fn connect_error(e: impl std::error::Error + 'static) -> Error {
        Error::Io {
            path: "--database-url".into(),
            message: format!("cannot connect: {}", crate::error::chain(&e)),
        }
    }

    /// Connects to a `postgres://` or `mysql://` (`mariadb://`) URL.
    pub(super) fn connect(url: &str) -> Result<Live> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let c = postgres::Client::connect(url, postgres::NoTls).map_err(connect_error)?;
            Ok(Live::Pg(Box::new(c)))
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let opts = mysql::Opts::from_url(&url).map_err(connect_error)?;
            Ok(Live::My(Box::new(
                mysql::Conn::new(opts).map_err(connect_error)?,
            )))
        } else {
            let scheme = url.split_once("://").map_or("(none)", |(s, _)| s);
            Err(Error::Unknown {
                kind: "database URL scheme",
                name: format!("{scheme} (expected postgres://... or mysql://...)"),
            })
        }
    }

    impl Live {
        /// Runs `sql` in a read-only transaction that is rolled back.
        pub(super) fn query(&mut self, sql: &str) -> std::result::Result<Vec<Vec<Cell>>, String> {
            let run =
                |e: &dyn std::fmt::Display| format!("the rewritten SQL fails on the database: {e}");
            match self {
                Live::Pg(c) => {
                    c.simple_query("BEGIN READ ONLY").map_err(|e| run(&e))?;
                    let result = c.simple_query(sql);
                    let rollback = c.simple_query("ROLLBACK");
                    let messages = result.map_err(|e| run(&e))?;
                    rollback.map_err(|e| run(&e))?;
                    let mut out = Vec::new();
                    for m in messages {
                        if let postgres::SimpleQueryMessage::Row(r) = m {
                            let mut cells = Vec::with_capacity(r.len());
                            for i in 0..r.len() {
                                cells.push(match r.try_get(i).map_err(|e| run(&e))? {
                                    None => Cell::Null,
                                    Some(t) => Cell::Text(t.to_string()),
                                });
                            }
                            out.push(cells);
                        }
                    }
                    Ok(out)
                }
                Live::My(c) => {
                    c.query_drop("START TRANSACTION READ ONLY")
                        .map_err(|e| run(&e))?;
                    let result: std::result::Result<Vec<mysql::Row>, _> = c.query(sql);
                    let rollback = c.query_drop("ROLLBACK");
                    let rows = result.map_err(|e| run(&e))?;
                    rollback.map_err(|e| run(&e))?;
                    Ok(rows
                        .iter()
                        .map(|row| {
                            (0..row.len())
                                .map(|i| match row.as_ref(i) {
                                    None | Some(mysql::Value::NULL) => Cell::Null,
                                    Some(mysql::Value::Bytes(b)) => {
                                        Cell::Text(String::from_utf8_lossy(b).into_owned())
                                    }
                                    Some(mysql::Value::Int(n)) => Cell::Int(*n),
                                    Some(mysql::Value::UInt(n)) => {
                                        i64::try_from(*n).map_or(Cell::Real(*n as f64), Cell::Int)
                                    }
                                    Some(mysql::Value::Float(f)) => Cell::Real(f64::from(*f)),
                                    Some(mysql::Value::Double(f)) => Cell::Real(*f),
                                    Some(v) => {
                                        Cell::Text(v.as_sql(true).trim_matches('\'').to_string())
                                    }
                                })
                                .collect()
                        })
                        .collect())
                }
            }
        }
    }
}

/// Without the `live` feature, `--database-url` is refused.
#[cfg(not(feature = "live"))]
mod live {
    use super::Cell;
    use crate::error::{Error, Result};

    /// Never built: there is no database client.
    pub(super) enum Live {}

    pub(super) fn connect(_url: &str) -> Result<Live> {
        Err(Error::Unsupported {
            construct: "a live database (built without the `live` feature)".into(),
        })
    }

    impl Live {
        pub(super) fn query(&mut self, _sql: &str) -> std::result::Result<Vec<Vec<Cell>>, String> {
            match *self {}
        }
    }
}

// ----- update in place --------------------------------------------------------------

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

fn is_dash(trimmed: &str) -> bool {
    trimmed == "-" || trimmed.starts_with("- ")
}

/// The key of a block-mapping line (trimmed) and what follows its colon.
fn key_and_rest(trimmed: &str) -> Option<(&str, &str)> {
    let (k, rest) = trimmed.split_once(':')?;
    let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
    let rest = rest.trim();
    Some((k, if rest.starts_with('#') { "" } else { rest }))
}

/// The line ranges (0-based, end exclusive) of the items of the top-level
/// block sequence `cases:`; `None` when it is not written as one.
fn case_spans(src: &str) -> Option<Vec<(usize, usize)>> {
    let lines: Vec<&str> = src.split('\n').collect();
    let start = lines.iter().position(|l| {
        indent_of(l) == 0
            && key_and_rest(l.trim()).is_some_and(|(k, r)| k == "cases" && r.is_empty())
    })?;
    let mut item_indent = None;
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if !is_content(line) {
            continue;
        }
        let ind = indent_of(line);
        let t = line.trim();
        let at = *item_indent.get_or_insert(ind);
        if ind < at || (ind == at && !is_dash(t)) {
            break;
        }
        if ind == at {
            spans.push((i, i + 1));
        } else if let Some(last) = spans.last_mut() {
            last.1 = i + 1;
        }
    }
    Some(spans)
}

/// In the lines of one case, the `sql:` key under `expect:` (written as
/// block mappings): its line, its indentation, and the end (exclusive) of
/// its value's lines.
fn expect_sql_span(lines: &[&str], span: (usize, usize)) -> Option<(usize, usize, usize)> {
    let (start, end) = span;
    let dash = lines.get(start)?;
    let after_dash = dash.trim_start().strip_prefix('-')?;
    let first_key = after_dash.trim_start();
    let key_indent = if first_key.is_empty() {
        lines
            .iter()
            .take(end)
            .skip(start + 1)
            .find(|l| is_content(l))
            .map(|l| indent_of(l))?
    } else {
        dash.len() - first_key.len()
    };
    // The `expect:` key of the case.
    let mut expect_line = None;
    for (i, line) in lines.iter().enumerate().take(end).skip(start) {
        let text = if i == start {
            first_key
        } else if is_content(line) && indent_of(line) == key_indent {
            line.trim()
        } else {
            continue;
        };
        if let Some((k, rest)) = key_and_rest(text) {
            if k == "expect" {
                if !rest.is_empty() {
                    return None; // a flow mapping: not updated
                }
                expect_line = Some(i);
                break;
            }
        }
    }
    let e = expect_line?;
    // Its `sql:` key, one level deeper.
    let mut nested = None;
    for (i, line) in lines.iter().enumerate().take(end).skip(e + 1) {
        if !is_content(line) {
            continue;
        }
        let ind = indent_of(line);
        if ind <= key_indent {
            break;
        }
        let at = *nested.get_or_insert(ind);
        if ind != at {
            continue;
        }
        if key_and_rest(line.trim()).is_some_and(|(k, _)| k == "sql") {
            // Its value: the following lines indented deeper (and blank
            // lines between them).
            let mut value_end = i + 1;
            for (j, l) in lines.iter().enumerate().take(end).skip(i + 1) {
                if l.trim().is_empty() {
                    continue;
                }
                if indent_of(l) <= at {
                    break;
                }
                value_end = j + 1;
            }
            return Some((i, at, value_end));
        }
    }
    None
}

/// The source with the `expect: sql:` of each `(case index, sql)` replaced
/// by a block scalar holding `sql`.
fn update_source(src: &str, updates: &[(usize, String)]) -> std::result::Result<String, String> {
    let newline = if src.contains("\r\n") { "\r\n" } else { "\n" };
    let spans = case_spans(src).ok_or("`cases:` is not a block sequence")?;
    let lines: Vec<&str> = src.split('\n').collect();
    let mut edits = Vec::new();
    for (case, sql) in updates {
        let span = spans
            .get(*case)
            .copied()
            .ok_or_else(|| format!("case {} not found in the text", case + 1))?;
        let (key_line, at, end) = expect_sql_span(&lines, span).ok_or_else(|| {
            format!(
                "case {}: write its expectation as a block (`expect:`, then `sql: |` on a line of its own)",
                case + 1
            )
        })?;
        let pad = " ".repeat(at);
        let mut new_lines = vec![format!("{pad}sql: |{}", cr(newline))];
        for l in sql.lines() {
            new_lines.push(if l.is_empty() {
                cr(newline).to_string()
            } else {
                format!("{pad}  {l}{}", cr(newline))
            });
        }
        edits.push((key_line, end, new_lines));
    }
    edits.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_string()).collect();
    for (start, end, new_lines) in edits {
        if start > end || end > out.len() {
            return Err("case lines out of range".into());
        }
        out.splice(start..end, new_lines);
    }
    Ok(out.join("\n"))
}

/// The carriage return a CRLF file keeps at the end of each split line.
fn cr(newline: &str) -> &'static str {
    if newline == "\r\n" {
        "\r"
    } else {
        ""
    }
}

/// Checks that `new` parses to `old` with exactly the updated expectations
/// changed.
fn check_update(
    old: &str,
    new: &str,
    updates: &[(usize, String)],
    path: &Path,
) -> std::result::Result<(), String> {
    let parse = |s: &str| crate::policy::parse_yaml_document(s);
    let mut want = parse(old)?;
    let mut got = parse(new).map_err(|e| format!("the updated file does not parse: {e}"))?;
    for (case, sql) in updates {
        for (doc, value) in [(&mut want, sql.clone()), (&mut got, String::new())] {
            let slot = doc
                .get_mut("cases")
                .and_then(|c| c.get_mut(*case))
                .and_then(|c| c.get_mut("expect"))
                .and_then(|e| e.get_mut("sql"))
                .ok_or("expectation not found")?;
            if value.is_empty() {
                // A block scalar ends in one newline.
                if let Value::String(s) = slot {
                    let trimmed = s.strip_suffix('\n').unwrap_or(s).to_string();
                    *s = trimmed;
                }
            } else {
                *slot = Value::String(value);
            }
        }
    }
    if got != want {
        return Err(format!(
            "the updated {} would not hold exactly the new SQL (left unchanged)",
            path.display()
        ));
    }
    Ok(())
}

// ----- reports -------------------------------------------------------------------------

/// Human-readable report: one line per case (`PASS`/`FAIL`/`UPDATED`),
/// failures followed by their diff or error, and a closing count.
pub fn text_report(files: &[FileReport]) -> String {
    let mut out = String::new();
    let (mut passed, mut failed, mut updated) = (0, 0, 0);
    for f in files {
        for c in &f.cases {
            let at = match c.line {
                Some(l) => format!("{}:{l}", f.path),
                None => f.path.clone(),
            };
            let word = match c.status {
                Status::Pass => {
                    passed += 1;
                    "PASS"
                }
                Status::Fail => {
                    failed += 1;
                    "FAIL"
                }
                Status::Updated => {
                    updated += 1;
                    "UPDATED"
                }
            };
            let _ = writeln!(out, "{word} {at}: {}", c.name);
            if c.status == Status::Fail {
                let _ = writeln!(out, "{}", indent(&c.message, "  "));
            }
        }
    }
    let _ = write!(out, "{passed} passed, {failed} failed");
    if updated > 0 {
        let _ = write!(out, ", {updated} updated");
    }
    out.push('\n');
    out
}

/// Escapes text for an XML attribute or element, dropping characters XML
/// 1.0 cannot hold.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one `<testsuite>` per file, one `<testcase>` per case, a
/// `<failure>` with the message for each failing case.
pub fn junit(files: &[FileReport]) -> String {
    let total: usize = files.iter().map(|f| f.cases.len()).sum();
    let failures: usize = files.iter().map(FileReport::failures).sum();
    let time: f64 = files
        .iter()
        .flat_map(|f| f.cases.iter().map(|c| c.seconds))
        .sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"sqlsandbox test\" tests=\"{total}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">"
    );
    for f in files {
        let t: f64 = f.cases.iter().map(|c| c.seconds).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{t:.3}\">",
            xml(&f.path),
            f.cases.len(),
            f.failures()
        );
        for c in &f.cases {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
                xml(&c.name),
                xml(&f.path),
                c.seconds
            );
            match c.status {
                Status::Pass => out.push_str("/>\n"),
                Status::Updated => {
                    let _ = writeln!(
                        out,
                        ">\n      <system-out>{}</system-out>\n    </testcase>",
                        xml(&c.message)
                    );
                }
                Status::Fail => {
                    let first = c.message.lines().next().unwrap_or("");
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        xml(first),
                        xml(&c.message)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# a comment that must survive\ncases:\n  - name: one\n    user: alice\n    sql: SELECT 1\n    expect:\n      sql: |\n        SELECT old\n        FROM x\n\n  # between cases\n  - name: two\n    user: bob\n    sql: SELECT 2\n    expect:\n      sql: SELECT plain # trailing\n  - expect:\n      refused: SB201\n    user: carol\n    sql: SELECT 3\nfixture: f.sql\n";

    #[test]
    fn spans_of_cases() {
        let spans = case_spans(FILE).unwrap();
        assert_eq!(spans, vec![(2, 9), (11, 16), (16, 20)]);
    }

    #[test]
    fn update_replaces_only_the_expectations() {
        let new = update_source(
            FILE,
            &[(0, "SELECT new".into()), (1, "SELECT a\nFROM b".into())],
        )
        .unwrap();
        assert!(new.starts_with("# a comment that must survive\n"));
        assert!(new.contains("  # between cases\n"));
        assert!(new.contains("      sql: |\n        SELECT new\n\n  # between"));
        assert!(new.contains("      sql: |\n        SELECT a\n        FROM b\n  - expect:"));
        check_update(
            FILE,
            &new,
            &[(0, "SELECT new".into()), (1, "SELECT a\nFROM b".into())],
            Path::new("x"),
        )
        .unwrap();
        // A flow-style expectation is not updated.
        let flow = "cases:\n  - user: a\n    sql: SELECT 1\n    expect: {sql: SELECT 2}\n";
        assert!(update_source(flow, &[(0, "SELECT 3".into())]).is_err());
    }

    #[test]
    fn cells_compare_as_numbers_or_text() {
        assert!(cell_matches(&serde_json::json!(42), &Cell::Int(42)));
        assert!(cell_matches(&serde_json::json!(12.5), &Cell::Real(12.5)));
        assert!(cell_matches(&serde_json::json!("12.50"), &Cell::Real(12.5)));
        assert!(cell_matches(
            &serde_json::json!(12.5),
            &Cell::Text("12.50".into())
        ));
        assert!(cell_matches(&serde_json::json!(true), &Cell::Int(1)));
        assert!(cell_matches(&serde_json::json!(null), &Cell::Null));
        assert!(!cell_matches(&serde_json::json!(42), &Cell::Int(7)));
        assert!(!cell_matches(
            &serde_json::json!("42"),
            &Cell::Text("42 ".into())
        ));
        assert!(!cell_matches(&serde_json::json!(null), &Cell::Int(0)));
        assert!(!cell_matches(&serde_json::json!(0), &Cell::Null));
    }

    #[test]
    fn rows_as_multiset_or_in_order() {
        let want = vec![vec![serde_json::json!(1)], vec![serde_json::json!(2)]];
        let got = vec![vec![Cell::Int(2)], vec![Cell::Int(1)]];
        assert!(compare_rows(&want, &got, false).is_ok());
        assert!(compare_rows(&want, &got, true).is_err());
        let dup = vec![vec![Cell::Int(1)], vec![Cell::Int(1)]];
        let err = compare_rows(&want, &dup, false).unwrap_err();
        assert!(err.contains("missing row\n      - [2]"), "{err}");
        assert!(err.contains("unexpected row\n      + [1]"), "{err}");
    }

    #[test]
    fn xml_escapes() {
        assert_eq!(xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }
}
