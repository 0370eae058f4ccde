//! Column masks, proven on SQLite (always), PostgreSQL
//! (`SQLSANDBOX_PG_URL`) and MariaDB (`SQLSANDBOX_MYSQL_URL`).
//!
//! The oracle never comes from sqlsandbox: for every user, this file
//! computes in Rust the rows the user may see with every mask applied (its
//! own implementation of each kind: SHA-256 from the `sha2` crate, string
//! slicing, floor division, date truncation by text), stores them in a
//! table of the same name in a per-user schema (database), and runs each
//! query of the probing corpus twice: rewritten by sqlsandbox over the real
//! table, and as written over the user's oracle table. The rows must be
//! equal (numbers compared as numbers), or sqlsandbox must refuse. Then no
//! result cell of a masked user may hold a raw secret (the stored SSNs,
//! notes and e-mail local parts): equality and range predicates,
//! `min`/`max`, `ORDER BY … LIMIT 1`, `count(DISTINCT …)`, `LIKE`
//! prefixes, joins and `EXISTS` against a table of guesses, GROUP BY,
//! window functions, set operations and whole-row references all see the
//! masked value.

mod differential;

use differential::{is_stale, mark_done, server_url, unique_name, PREFIX};
use sha2::{Digest, Sha256};
use sqlsandbox::{BoundParam, Dialect, Options, Policy, Principal, Scalar};

const KEY: &str = "mask-key-0123456789abcdef";

// ----- data ---------------------------------------------------------------------

/// One stored row; `None` is NULL. Dates and timestamps as text.
#[derive(Debug, Clone)]
struct Person {
    id: i64,
    tenant_id: i64,
    name: Option<&'static str>,
    email: Option<&'static str>,
    phone: Option<&'static str>,
    ssn: Option<&'static str>,
    salary: Option<f64>,
    age: Option<i64>,
    born: Option<&'static str>,
    seen_at: Option<&'static str>,
    notes: Option<&'static str>,
    score: Option<i64>,
}

fn people() -> Vec<Person> {
    let names = [
        Some("Ann"),
        Some("bob"),
        Some("Ünïcode"),
        Some(""),
        None,
        Some("x"),
        Some("O'Neil"),
        Some("a\\b"),
    ];
    let emails = [
        Some("ann@example.com"),
        Some("bob@x.org"),
        Some("weird@@y.net"),
        Some("no-at-sign"),
        Some("a@b@c.com"),
        None,
        Some(""),
        Some("UPPER@Case.COM"),
        Some("carol@example.com"),
    ];
    let phones = [
        Some("+1 555 0100"),
        Some("12"),
        None,
        Some("0044-20-7946-0958"),
    ];
    let ssns = [
        Some("123-45-6789"),
        Some("987-65-4321"),
        None,
        Some("000"),
        Some("555-12-3456"),
    ];
    let salaries = [
        Some(12345.67),
        Some(-2500.5),
        Some(0.0),
        None,
        Some(99999.99),
        Some(10000.0),
    ];
    let ages = [
        Some(0),
        Some(9),
        Some(10),
        Some(-1),
        Some(-10),
        Some(37),
        None,
        Some(99),
    ];
    let borns = [
        Some("1990-06-15"),
        Some("2000-01-01"),
        Some("1985-12-31"),
        None,
    ];
    let seens = [
        Some("2024-03-15 13:45:59"),
        Some("2023-12-31 23:59:59"),
        None,
        Some("2024-01-01 00:00:00"),
        Some("2024-07-04 09:05:00"),
    ];
    let notes = [Some("secret note"), None, Some("another secret")];
    let scores = [Some(5), Some(-3), None];
    let pick = |v: &[Option<&'static str>], i: usize| v.get(i % v.len()).copied().flatten();
    (1..=40usize)
        .map(|i| Person {
            id: i as i64,
            tenant_id: (i % 3 + 1) as i64,
            name: pick(&names, i),
            email: pick(&emails, i * 7),
            phone: pick(&phones, i),
            ssn: pick(&ssns, i * 3),
            salary: *salaries.get(i % salaries.len()).unwrap(),
            age: *ages.get(i % ages.len()).unwrap(),
            born: pick(&borns, i),
            seen_at: pick(&seens, i * 2),
            notes: pick(&notes, i),
            score: *scores.get(i % scores.len()).unwrap(),
        })
        .collect()
}

/// The raw values no result may show `user` (`None`: for the table of
/// guesses, all of them): SSNs and notes to all; e-mail local parts to
/// those who see them masked with `email` or `first`.
fn secrets(user: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for p in people() {
        out.extend(p.ssn.filter(|s| s.len() > 3).map(str::to_string));
        out.extend(p.notes.map(str::to_string));
        if matches!(user, Some("olga" | "kim")) {
            continue;
        }
        if let Some(e) = p.email {
            if let Some((local, _)) = e.rsplit_once('@') {
                if local.len() > 2 {
                    out.push(format!("{local}@"));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

// ----- the policy and the oracle ----------------------------------------------

/// Column names in the policy's declared order, which is the order of a
/// masking sandbox's select list (and of the tables made here), and their
/// SQL types per engine.
const COLUMNS: &[(&str, &str, &str, &str)] = &[
    // name, PostgreSQL, MariaDB, SQLite
    ("id", "integer", "INT", "INTEGER"),
    ("tenant_id", "integer", "INT", "INTEGER"),
    ("name", "text", "VARCHAR(200)", "TEXT"),
    ("email", "text", "VARCHAR(200)", "TEXT"),
    ("phone", "text", "VARCHAR(200)", "TEXT"),
    ("ssn", "text", "VARCHAR(200)", "TEXT"),
    ("salary", "numeric(12,2)", "DECIMAL(12,2)", "REAL"),
    ("age", "integer", "INT", "INTEGER"),
    ("born", "date", "DATE", "TEXT"),
    ("seen_at", "timestamp", "DATETIME", "TEXT"),
    ("notes", "text", "VARCHAR(200)", "TEXT"),
    ("score", "integer", "INT", "INTEGER"),
];

/// The order of the oracle's row vectors (alphabetical).
const ROW_ORDER: &str =
    "age, born, email, id, name, notes, phone, salary, score, seen_at, ssn, tenant_id";

fn policy_yaml(dialect: &str, schema: &str) -> String {
    // SQLite has no SHA-256: the SSN gets a constant there.
    let ssn_mask = if dialect == "sqlite" {
        "{constant: 'redacted'}".to_string()
    } else {
        format!("{{hash: {{key: '{KEY}'}}}}")
    };
    format!(
        r#"
version: 1
attributes: {{tenant: integer, user_id: integer}}
databases:
  crm:
    dialect: {dialect}
    default_schema: {schema}
    tables:
      {schema}.people:
        columns: {{id: integer, tenant_id: integer, name: text, email: text, phone: text, ssn: text, salary: decimal, age: integer, born: date, seen_at: timestamp, notes: text, score: integer}}
        combine: union
      {schema}.guesses:
        columns: {{v: text}}
groups:
  support:
    native: {{crm: true}}
    data:
      crm:
        {schema}:
          guesses: unrestricted
          people:
            sandbox: {{column: tenant_id, attribute: tenant}}
            masks:
              name: {{first: 1}}
              email: email
              phone: {{last: 4}}
              ssn: {ssn_mask}
              salary: {{bucket: 10000}}
              age: {{bucket: 10}}
              born: {{truncate: year}}
              seen_at: {{truncate: month}}
              notes: null
              score: {{constant: 0}}
  own:
    native: {{crm: true}}
    data:
      crm:
        {schema}:
          guesses: unrestricted
          people:
            masks:
              email: {{expression: "lower(email)", unless: "id = {{{{user_id}}}}"}}
              notes: null
              ssn: {{constant: 'n/a'}}
  analysts:
    native: {{crm: true}}
    data:
      crm:
        {schema}:
          guesses: unrestricted
          people:
            rules:
              - filter: "tenant_id = 2 OR tenant_id = 3"
            masks:
              name: {{constant: anon}}
              email: {{first: 3}}
              born: {{truncate: month}}
              seen_at: {{truncate: hour}}
              salary: {{bucket: 0.5}}
              score: {{expression: "abs(score)"}}
              notes: null
              ssn: null
users:
  sam: {{groups: [support], attributes: {{tenant: 1}}}}
  olga: {{groups: [support, own], attributes: {{tenant: 1, user_id: 7}}}}
  otto: {{groups: [support, analysts], attributes: {{tenant: 1}}}}
  kim: {{groups: [own], attributes: {{user_id: 3}}}}
  ana: {{groups: [analysts]}}
"#
    )
}

const USERS: &[&str] = &["sam", "olga", "kim", "ana", "otto"];

/// A value of the oracle: text, integer, number, or NULL.
#[derive(Debug, Clone)]
enum V {
    T(String),
    I(i64),
    N(f64),
    Null,
}

fn t(s: Option<&str>, f: impl Fn(&str) -> String) -> V {
    s.map_or(V::Null, |s| V::T(f(s)))
}

fn first(s: &str, n: usize) -> String {
    format!("{}***", s.chars().take(n).collect::<String>())
}

fn last(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    let from = chars.len().saturating_sub(n);
    format!("***{}", chars[from..].iter().collect::<String>())
}

fn email(s: &str) -> String {
    match s.rsplit_once('@') {
        Some((_, domain)) => format!("***@{domain}"),
        None => "***".into(),
    }
}

fn hash(s: &str) -> String {
    let d = Sha256::digest(format!("{KEY}{s}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn bucket(x: f64, size: f64) -> f64 {
    (x / size).floor() * size
}

/// `YYYY-…` truncated: `keep` characters kept, the rest from `fill`.
fn trunc(s: &str, keep: usize, fill: &str) -> String {
    format!("{}{}", &s[..keep], &fill[keep..])
}

/// The row `p` as `user` sees it (columns in [`ROW_ORDER`]), or `None`.
fn oracle_row(user: &str, p: &Person, sqlite: bool) -> Option<Vec<V>> {
    let raw_i = |v: Option<i64>| v.map_or(V::Null, V::I);
    let raw_n = |v: Option<f64>| v.map_or(V::Null, V::N);
    let raw_t = |v: Option<&str>| t(v, str::to_string);
    let support = |p: &Person| -> Vec<V> {
        vec![
            p.age
                .map_or(V::Null, |a| V::I(bucket(a as f64, 10.0) as i64)),
            t(p.born, |b| trunc(b, 4, "0000-01-01")),
            t(p.email, email),
            V::I(p.id),
            t(p.name, |n| first(n, 1)),
            V::Null,
            t(p.phone, |x| last(x, 4)),
            p.salary.map_or(V::Null, |s| V::N(bucket(s, 10000.0))),
            V::I(0),
            t(p.seen_at, |s| trunc(s, 7, "0000-00-01 00:00:00")),
            if sqlite {
                V::T("redacted".into())
            } else {
                t(p.ssn, hash)
            },
            V::I(p.tenant_id),
        ]
    };
    let own = |p: &Person, me: i64| -> Vec<V> {
        vec![
            raw_i(p.age),
            raw_t(p.born),
            if p.id == me {
                raw_t(p.email)
            } else {
                t(p.email, |e| e.to_lowercase())
            },
            V::I(p.id),
            raw_t(p.name),
            V::Null,
            raw_t(p.phone),
            raw_n(p.salary),
            raw_i(p.score),
            raw_t(p.seen_at),
            V::T("n/a".into()),
            V::I(p.tenant_id),
        ]
    };
    match user {
        "sam" => (p.tenant_id == 1).then(|| support(p)),
        "kim" => Some(own(p, 3)),
        // Union: the own grant shows the row (every column but email,
        // notes and ssn as stored); where both grants mask a column, the
        // mask of the group whose name sorts first wins (`own` before
        // `support`), whatever order the principal's groups come in.
        "olga" => Some(own(p, 7)),
        // Union of two grants on disjoint rows, each with its own masks:
        // each row shows its own grant's masks.
        "otto" if p.tenant_id == 1 => Some(support(p)),
        "otto" => oracle_row("ana", p, sqlite),
        "ana" => (p.tenant_id == 2 || p.tenant_id == 3).then(|| {
            vec![
                raw_i(p.age),
                t(p.born, |b| trunc(b, 7, "0000-00-01")),
                t(p.email, |e| first(e, 3)),
                V::I(p.id),
                p.name.map_or(V::T("anon".into()), |_| V::T("anon".into())),
                V::Null,
                raw_t(p.phone),
                p.salary.map_or(V::Null, |s| V::N(bucket(s, 0.5))),
                p.score.map_or(V::Null, |s| V::I(s.abs())),
                t(p.seen_at, |s| trunc(s, 13, "0000-00-00 00:00:00")),
                V::Null,
                V::I(p.tenant_id),
            ]
        }),
        _ => None,
    }
}

// ----- the corpus ----------------------------------------------------------------

/// (query, ordered): ordered queries have a total ORDER BY.
fn corpus(dialect: Dialect) -> Vec<(String, bool)> {
    let mut q: Vec<(String, bool)> = [
        "SELECT * FROM people",
        "SELECT p.* FROM people p WHERE p.phone LIKE '%0100'",
        "SELECT id, email FROM people WHERE email = 'ann@example.com'",
        "SELECT id FROM people WHERE ssn = '123-45-6789'",
        "SELECT id FROM people WHERE ssn IN ('987-65-4321', '555-12-3456')",
        "SELECT id FROM people WHERE salary > 12000",
        "SELECT id FROM people WHERE salary BETWEEN 12345 AND 12346",
        "SELECT id FROM people WHERE age BETWEEN 30 AND 40",
        "SELECT min(salary), max(salary), min(age), max(age) FROM people",
        "SELECT min(ssn), max(ssn), min(notes), max(email) FROM people",
        "SELECT min(born), max(seen_at) FROM people",
        "SELECT count(DISTINCT email), count(DISTINCT ssn), count(DISTINCT phone), count(DISTINCT notes) FROM people",
        "SELECT id FROM people WHERE email LIKE 'a%'",
        "SELECT id FROM people WHERE email LIKE 'ann@%'",
        "SELECT id FROM people WHERE name LIKE 'An%'",
        "SELECT id FROM people WHERE ssn LIKE '123%'",
        "SELECT g.v FROM guesses g JOIN people p ON p.ssn = g.v OR p.email = g.v OR p.notes = g.v",
        "SELECT g.v FROM guesses g WHERE EXISTS (SELECT 1 FROM people p WHERE p.ssn = g.v)",
        "SELECT g.v FROM guesses g WHERE g.v IN (SELECT notes FROM people)",
        "SELECT email, count(*) FROM people GROUP BY email",
        "SELECT ssn, count(*) FROM people GROUP BY ssn HAVING count(*) > 0",
        "SELECT id, sum(salary) OVER (PARTITION BY tenant_id) FROM people",
        "SELECT x.v FROM (SELECT email AS v FROM people UNION SELECT ssn FROM people UNION SELECT notes FROM people) x",
        "SELECT id FROM people WHERE born = '1990-06-15'",
        "SELECT id FROM people WHERE seen_at = '2024-03-15 13:45:59'",
        "SELECT id FROM people WHERE born < '1990-01-01'",
        "SELECT count(*) FROM people WHERE notes IS NOT NULL",
        "SELECT id, score FROM people WHERE score = 5",
        "WITH c AS (SELECT * FROM people) SELECT c.ssn, c.notes FROM c",
    ]
    .iter()
    .map(|s| (s.to_string(), false))
    .collect();
    q.extend(
        [
            "SELECT id, notes FROM people ORDER BY salary DESC, id LIMIT 1",
            "SELECT id FROM people ORDER BY ssn, id LIMIT 1",
            "SELECT id, email FROM people ORDER BY email DESC, id LIMIT 3",
            "SELECT id FROM people ORDER BY age, id LIMIT 2",
        ]
        .iter()
        .map(|s| (s.to_string(), true)),
    );
    if dialect == Dialect::Postgres {
        q.push((
            "SELECT to_jsonb(p) ->> 'ssn', to_jsonb(p) ->> 'notes', to_jsonb(p) ->> 'email' FROM people p".into(),
            false,
        ));
        q.push(("SELECT (p).ssn FROM people p".into(), false));
        q.push((
            "SELECT row_to_json(p)::text LIKE '%secret%' FROM people p".into(),
            false,
        ));
    }
    q
}

fn guesses() -> Vec<String> {
    let mut g = secrets(None);
    for p in people() {
        g.extend(p.email.map(str::to_string));
        g.extend(p.ssn.map(str::to_string));
    }
    g.sort();
    g.dedup();
    g
}

/// `sql` with the tables `people` and `guesses` read from `schema`.
fn qualify(sql: &str, schema: &str, dialect: Dialect) -> String {
    use sqlparser::ast::{visit_relations_mut, Ident, ObjectNamePart};
    let parser: Box<dyn sqlparser::dialect::Dialect> = match dialect {
        Dialect::Postgres => Box::new(sqlparser::dialect::PostgreSqlDialect {}),
        Dialect::Mysql => Box::new(sqlparser::dialect::MySqlDialect {}),
        _ => Box::new(sqlparser::dialect::SQLiteDialect {}),
    };
    let mut stmts = sqlparser::parser::Parser::parse_sql(parser.as_ref(), sql).unwrap();
    let _ = visit_relations_mut(&mut stmts, |name| {
        if let [ObjectNamePart::Identifier(i)] = name.0.as_slice() {
            if i.value == "people" || i.value == "guesses" {
                name.0
                    .insert(0, ObjectNamePart::Identifier(Ident::new(schema)));
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    stmts
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

// ----- engines ---------------------------------------------------------------------

trait Engine {
    fn dialect(&self) -> Dialect;
    /// The column types' index in [`COLUMNS`].
    fn types(&self) -> usize;
    fn exec(&mut self, sql: &str);
    /// Runs a query on the data (`None`) or a user's oracle (`Some`).
    fn query(
        &mut self,
        oracle: Option<&str>,
        sql: &str,
        params: &[BoundParam],
    ) -> Result<Vec<Vec<String>>, String>;
    /// The schema (MariaDB: database) holding the data.
    fn data(&self) -> String;
    fn oracle_schema(&self, user: &str) -> String {
        format!("{}_{user}", self.data())
    }
    fn create_schema(&mut self, name: &str);
    fn drop_all(&mut self);
}

fn render_f(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Numbers compared as numbers; everything else as text.
fn norm(cell: String) -> String {
    match cell.parse::<f64>() {
        Ok(x)
            if cell
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') =>
        {
            render_f(x)
        }
        _ => cell,
    }
}

fn literal(v: &V, sqlite: bool) -> String {
    match v {
        V::Null => "NULL".into(),
        V::I(i) => i.to_string(),
        V::N(x) => render_f(*x),
        V::T(s) if sqlite => format!("'{}'", s.replace('\'', "''")),
        V::T(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
    }
}

fn install(e: &mut dyn Engine) {
    let sqlite = e.dialect() == Dialect::Sqlite;
    let pg = e.dialect() == Dialect::Postgres;
    let lit = |v: &V| {
        let s = literal(v, sqlite);
        // PostgreSQL reads backslashes literally in standard strings.
        if pg {
            s.replace("\\\\", "\\")
        } else {
            s
        }
    };
    let ty = e.types();
    let cols = |schema: &str| {
        let defs: Vec<String> = COLUMNS
            .iter()
            .map(|c| {
                let t = match ty {
                    1 => c.1,
                    2 => c.2,
                    _ => c.3,
                };
                format!("{} {t}", c.0)
            })
            .collect();
        format!("CREATE TABLE {schema}.people ({})", defs.join(", "))
    };
    let data = e.data();
    let mut schemas = vec![(data.clone(), None)];
    for u in USERS {
        schemas.push((e.oracle_schema(u), Some(*u)));
    }
    for (schema, user) in schemas {
        e.create_schema(&schema);
        e.exec(&cols(&schema));
        e.exec(&format!(
            "CREATE TABLE {schema}.guesses (v {})",
            if ty == 2 { "VARCHAR(200)" } else { "TEXT" }
        ));
        for g in guesses() {
            e.exec(&format!(
                "INSERT INTO {schema}.guesses VALUES ({})",
                lit(&V::T(g))
            ));
        }
        for p in people() {
            let row = match user {
                None => vec![
                    p.age.map_or(V::Null, V::I),
                    t(p.born, str::to_string),
                    t(p.email, str::to_string),
                    V::I(p.id),
                    t(p.name, str::to_string),
                    t(p.notes, str::to_string),
                    t(p.phone, str::to_string),
                    p.salary.map_or(V::Null, V::N),
                    p.score.map_or(V::Null, V::I),
                    t(p.seen_at, str::to_string),
                    t(p.ssn, str::to_string),
                    V::I(p.tenant_id),
                ],
                Some(u) => match oracle_row(u, &p, sqlite) {
                    Some(r) => r,
                    None => continue,
                },
            };
            let vals: Vec<String> = row.iter().map(lit).collect();
            e.exec(&format!(
                "INSERT INTO {schema}.people ({ROW_ORDER}) VALUES ({})",
                vals.join(", ")
            ));
        }
    }
}

/// Runs the corpus for every user; returns (queries compared, refused).
// `Options` is built field by field: it may not take struct literals.
#[allow(clippy::field_reassign_with_default)]
fn run(e: &mut dyn Engine) -> (usize, usize) {
    install(e);
    let dialect = e.dialect();
    let name = match dialect {
        Dialect::Postgres => "postgres",
        Dialect::Mysql => "mysql",
        _ => "sqlite",
    };
    let policy = Policy::from_yaml(&policy_yaml(name, &e.data()), "masks.yaml").unwrap();
    let (mut compared, mut refused) = (0, 0);
    let mut failures = Vec::new();
    for user in USERS {
        let secrets = secrets(Some(user));
        let principal = Principal::from_user(&policy, user).unwrap();
        for (sql, ordered) in corpus(dialect) {
            let expected = match e.query(Some(user), &sql, &[]) {
                Ok(r) => r,
                Err(err) => panic!("[{dialect:?}] the oracle failed for {user}: {sql}: {err}"),
            };
            for params in [false, true] {
                if params && dialect == Dialect::Postgres {
                    continue;
                }
                let mut o = Options::default();
                o.params = params;
                let rw = match policy.rewrite(&principal, &sql, &o) {
                    Ok(rw) => rw,
                    Err(err) => {
                        refused += 1;
                        eprintln!(
                            "[{dialect:?}] refused for {user}: {sql}: [{}] {err}",
                            err.code()
                        );
                        continue;
                    }
                };
                // The independent verifier accepts the printed SQL again
                // (literals: a printed placeholder is not the policy's).
                let recheck = if params {
                    Ok(())
                } else {
                    policy.recheck(&principal, &rw.sql, &o)
                };
                if let Err(err) = recheck {
                    failures.push(format!(
                        "[{dialect:?}] {user}: recheck refused the rewrite: {err}\n  query: {sql}"
                    ));
                }
                let got = match e.query(None, &rw.sql, &rw.params) {
                    Ok(r) => r,
                    Err(err) => {
                        failures.push(format!(
                            "[{dialect:?}] {user}: the rewrite failed: {err}\n  query: {sql}\n  rewritten: {}",
                            rw.sql
                        ));
                        continue;
                    }
                };
                let (mut a, mut b) = (expected.clone(), got.clone());
                if !ordered {
                    a.sort();
                    b.sort();
                }
                if a != b {
                    failures.push(format!(
                        "[{dialect:?}] {user} (params {params}): rows differ\n  query: {sql}\n  rewritten: {}\n  oracle: {:?}\n  sqlsandbox: {:?}",
                        rw.sql,
                        a.iter().take(6).collect::<Vec<_>>(),
                        b.iter().take(6).collect::<Vec<_>>()
                    ));
                    continue;
                }
                // Every user here sees notes masked, and SSNs hashed,
                // constant or NULL: no stored secret may appear anywhere.
                for row in &got {
                    for cell in row {
                        if let Some(s) = secrets.iter().find(|s| cell.contains(s.as_str())) {
                            failures.push(format!(
                                "[{dialect:?}] {user}: a raw value `{s}` escaped in `{cell}`\n  query: {sql}"
                            ));
                        }
                    }
                }
                compared += 1;
            }
        }
    }
    e.drop_all();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    (compared, refused)
}

// ----- SQLite ------------------------------------------------------------------------

struct Lite {
    conn: rusqlite::Connection,
}

impl Engine for Lite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    fn types(&self) -> usize {
        3
    }
    fn exec(&mut self, sql: &str) {
        self.conn
            .execute_batch(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    fn data(&self) -> String {
        "main".into()
    }
    fn oracle_schema(&self, user: &str) -> String {
        format!("o_{user}")
    }
    fn create_schema(&mut self, name: &str) {
        if name != "main" {
            self.exec(&format!("ATTACH DATABASE ':memory:' AS {name}"));
        }
    }
    fn query(
        &mut self,
        oracle: Option<&str>,
        sql: &str,
        params: &[BoundParam],
    ) -> Result<Vec<Vec<String>>, String> {
        let sql = match oracle {
            Some(u) => qualify(sql, &self.oracle_schema(u), Dialect::Sqlite),
            None => sql.to_string(),
        };
        let mut stmt = self.conn.prepare(&sql).map_err(|e| e.to_string())?;
        let n = stmt.column_count();
        let values: Vec<rusqlite::types::Value> = params
            .iter()
            .map(|p| match &p.value {
                Scalar::Integer(i) => rusqlite::types::Value::Integer(*i),
                Scalar::Number(n) => rusqlite::types::Value::Real(n.parse().unwrap()),
                Scalar::Text(s) => rusqlite::types::Value::Text(s.clone()),
                Scalar::Bool(b) => rusqlite::types::Value::Integer(i64::from(*b)),
            })
            .collect();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(values))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| e.to_string())? {
            let mut row = Vec::new();
            for i in 0..n {
                use rusqlite::types::ValueRef;
                row.push(norm(match r.get_ref(i).map_err(|e| e.to_string())? {
                    ValueRef::Null => "NULL".into(),
                    ValueRef::Integer(i) => i.to_string(),
                    ValueRef::Real(f) => render_f(f),
                    ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    ValueRef::Blob(b) => format!("{b:?}"),
                }));
            }
            out.push(row);
        }
        Ok(out)
    }
    fn drop_all(&mut self) {}
}

#[test]
fn masks_on_sqlite() {
    let mut e = Lite {
        conn: rusqlite::Connection::open_in_memory().unwrap(),
    };
    let (compared, refused) = run(&mut e);
    assert!(compared > 200, "{compared} compared, {refused} refused");
}

// ----- PostgreSQL ------------------------------------------------------------------

struct Pg {
    client: postgres::Client,
    data: String,
}

impl Engine for Pg {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn types(&self) -> usize {
        1
    }
    fn exec(&mut self, sql: &str) {
        self.client
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    fn data(&self) -> String {
        self.data.clone()
    }
    fn create_schema(&mut self, name: &str) {
        self.exec(&format!("CREATE SCHEMA {name}"));
    }
    fn query(
        &mut self,
        oracle: Option<&str>,
        sql: &str,
        _params: &[BoundParam],
    ) -> Result<Vec<Vec<String>>, String> {
        let text = match oracle {
            Some(u) => qualify(sql, &self.oracle_schema(u), Dialect::Postgres),
            None => sql.to_string(),
        };
        let msgs = self
            .client
            .simple_query(&text)
            .map_err(|e| format!("{e:?}"))?;
        let mut out = Vec::new();
        for m in msgs {
            if let postgres::SimpleQueryMessage::Row(r) = m {
                out.push(
                    (0..r.len())
                        .map(|i| norm(r.get(i).unwrap_or("NULL").to_string()))
                        .collect(),
                );
            }
        }
        Ok(out)
    }
    fn drop_all(&mut self) {
        let mut names = vec![self.data.clone()];
        names.extend(USERS.iter().map(|u| self.oracle_schema(u)));
        for n in names {
            let _ = self
                .client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {n} CASCADE"));
        }
    }
}

#[test]
#[ignore = "needs SQLSANDBOX_PG_URL"]
fn masks_on_postgres() {
    let Some(url) = server_url("SQLSANDBOX_PG_URL", "PostgreSQL mask tests") else {
        return;
    };
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let stale: Vec<String> = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'sqlsandbox_diff_%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .filter(|n: &String| is_stale(n))
        .collect();
    for n in stale {
        let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {n} CASCADE"));
    }
    let mut e = Pg {
        client,
        data: unique_name(),
    };
    struct Guard<'e>(&'e mut Pg);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            self.0.drop_all();
        }
    }
    let g = Guard(&mut e);
    let (compared, refused) = run(g.0);
    mark_done(
        "postgres-masks",
        &format!("{compared} queries equal to the oracle, {refused} refused"),
    );
}

// ----- MariaDB ---------------------------------------------------------------------

struct Maria {
    conn: mysql::Conn,
    data: String,
}

fn render_my(v: &mysql::Value) -> String {
    use mysql::Value;
    match v {
        Value::NULL => "NULL".into(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => render_f(f64::from(*f)),
        Value::Double(d) => render_f(*d),
        Value::Date(y, mo, d, h, mi, s, _) => {
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
        }
        Value::Time(..) => format!("{v:?}"),
    }
}

impl Engine for Maria {
    fn dialect(&self) -> Dialect {
        Dialect::Mysql
    }
    fn types(&self) -> usize {
        2
    }
    fn exec(&mut self, sql: &str) {
        use mysql::prelude::Queryable;
        self.conn
            .query_drop(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    fn data(&self) -> String {
        self.data.clone()
    }
    fn create_schema(&mut self, name: &str) {
        self.exec(&format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ));
    }
    fn query(
        &mut self,
        oracle: Option<&str>,
        sql: &str,
        params: &[BoundParam],
    ) -> Result<Vec<Vec<String>>, String> {
        use mysql::prelude::Queryable;
        let owned;
        let sql = match oracle {
            Some(u) => {
                owned = qualify(sql, &self.oracle_schema(u), Dialect::Mysql);
                owned.as_str()
            }
            None => sql,
        };
        let values: Vec<mysql::Value> = params
            .iter()
            .map(|p| match &p.value {
                Scalar::Integer(i) => mysql::Value::Int(*i),
                Scalar::Number(n) => mysql::Value::Bytes(n.clone().into_bytes()),
                Scalar::Text(s) => mysql::Value::Bytes(s.clone().into_bytes()),
                Scalar::Bool(b) => mysql::Value::Int(i64::from(*b)),
            })
            .collect();
        let params = if values.is_empty() {
            mysql::Params::Empty
        } else {
            mysql::Params::Positional(values)
        };
        let rows: Vec<mysql::Row> = self.conn.exec(sql, params).map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| norm(r.as_ref(i).map_or_else(|| "NULL".into(), render_my)))
                    .collect()
            })
            .collect())
    }
    fn drop_all(&mut self) {
        use mysql::prelude::Queryable;
        let mut names = vec![self.data.clone()];
        names.extend(USERS.iter().map(|u| self.oracle_schema(u)));
        for n in names {
            let _ = self.conn.query_drop(format!("DROP DATABASE IF EXISTS {n}"));
        }
    }
}

#[test]
#[ignore = "needs SQLSANDBOX_MYSQL_URL"]
fn masks_on_mariadb() {
    use mysql::prelude::Queryable;
    let Some(url) = server_url("SQLSANDBOX_MYSQL_URL", "MariaDB mask tests") else {
        return;
    };
    let mut conn = mysql::Conn::new(mysql::Opts::from_url(&url).unwrap()).unwrap();
    let names: Vec<String> = conn.query("SHOW DATABASES").unwrap();
    for n in names
        .iter()
        .filter(|n| n.starts_with(PREFIX) && is_stale(n))
    {
        let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS {n}"));
    }
    conn.query_drop("SET NAMES utf8mb4").unwrap();
    let mut e = Maria {
        conn,
        data: unique_name(),
    };
    struct Guard<'e>(&'e mut Maria);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            self.0.drop_all();
        }
    }
    let g = Guard(&mut e);
    let (compared, refused) = run(g.0);
    mark_done(
        "mariadb-masks",
        &format!("{compared} queries equal to the oracle, {refused} refused"),
    );
}
