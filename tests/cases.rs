//! Fixture-driven snapshot tests: every `tests/cases/**/*.yaml` names a
//! policy, a principal, a dialect and a query (or only a policy), and its
//! outcome — rewritten SQL or the error — is an insta snapshot under the
//! top-level `snapshots/` folder. The fixture says whether the case must be
//! rewritten or refused, and why; the test fails if the outcome kind differs.
//!
//! Every rewritten SQL is parsed again in the same dialect and must print
//! identically (the round trip sqlparser's own tests use).
//!
//! Each fixture is its own test (libtest-mimic, `harness = false`), named
//! by its path under `tests/cases/`: `cargo test --test cases -- basic/`
//! runs one folder, and a failure names its fixture. The snapshot names are
//! those `insta::glob!` gave them (`cases@basic__x.yaml`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};

use serde::Deserialize;
use sqlparser::parser::Parser;
use sqlsandbox::{AttributeValue, Dialect, Options, Policy, Principal};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// Name of a file under `policies/` (without `.yaml`).
    #[serde(default)]
    policy: Option<String>,
    /// An inline policy instead.
    #[serde(default)]
    policy_yaml: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    attributes: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    dialect: Option<String>,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    params: bool,
    /// `auto`, `always` or `never` (overrides the policy's `fence:`).
    #[serde(default)]
    fence: Option<String>,
    #[serde(default)]
    sql: Option<String>,
    /// Run this saved question by name instead of `sql`.
    #[serde(default)]
    question: Option<String>,
    /// Values for the saved question's variables.
    #[serde(default)]
    vars: BTreeMap<String, serde_yaml::Value>,
    /// A query-builder question (MBQL-like) instead of `sql`.
    #[serde(default)]
    builder: Option<serde_yaml::Value>,
    /// A principal from identity-provider claims.
    #[serde(default)]
    claims: Option<serde_json::Value>,
    /// A principal from an API key secret.
    #[serde(default)]
    api_key: Option<String>,
    /// The anonymous principal (public or static embedding).
    #[serde(default)]
    anonymous: bool,
    /// `rewrite` (default), `explain`, `explain-json`, `matrix`, `check`,
    /// `check-json`.
    #[serde(default)]
    command: Option<String>,
    /// `rewrite`, `refuse` (the query) or `load` / `reject` (the policy).
    expect: String,
    /// Why this case exists.
    why: String,
}

fn load_policy(case: &Case, root: &Path) -> Result<Policy, sqlsandbox::Error> {
    match (&case.policy, &case.policy_yaml) {
        (Some(name), None) => Policy::from_path(root.join("policies").join(format!("{name}.yaml"))),
        (None, Some(src)) => Policy::from_yaml(src, "inline.yaml"),
        _ => panic!("a case needs exactly one of `policy` and `policy_yaml`"),
    }
}

fn render_err(e: &sqlsandbox::Error) -> String {
    format!("error[{}]: {e}", e.code())
}

fn policy_source(case: &Case, root: &Path) -> String {
    match (&case.policy, &case.policy_yaml) {
        (Some(name), None) => {
            std::fs::read_to_string(root.join("policies").join(format!("{name}.yaml"))).unwrap()
        }
        (None, Some(src)) => src.clone(),
        _ => panic!("a case needs exactly one of `policy` and `policy_yaml`"),
    }
}

fn principal(case: &Case, policy: &Policy) -> Result<Principal, sqlsandbox::Error> {
    if let Some(c) = &case.claims {
        return Principal::from_claims(policy, c);
    }
    if case.anonymous {
        return Ok(Principal::anonymous());
    }
    if let Some(k) = &case.api_key {
        return Principal::from_api_key(policy, k);
    }
    match (&case.user, &case.groups) {
        (Some(u), None) => Principal::from_user(policy, u),
        (None, Some(gs)) => Principal::new(
            policy,
            "caller",
            gs.iter().map(String::as_str),
            case.attributes
                .iter()
                .map(|(k, v)| (k.clone(), yaml_value(v).expect("attribute value"))),
        ),
        _ => panic!("a case needs `user`, `groups`, `claims`, `api_key` or `anonymous`"),
    }
}

/// A YAML attribute value, through its JSON form (serde_yaml is not in
/// the library's public API).
fn yaml_value(v: &serde_yaml::Value) -> Option<AttributeValue> {
    AttributeValue::from_json(&serde_json::to_value(v).ok()?)
}

fn run(case: &Case, root: &Path) -> (bool, String) {
    let policy = match load_policy(case, root) {
        Ok(p) => p,
        Err(e) => {
            return (
                false,
                render_err(&e).replace(&root.display().to_string(), ""),
            )
        }
    };
    match case.command.as_deref() {
        Some(c @ ("check" | "check-json")) => {
            let findings = sqlsandbox::lint::check(&policy, &policy_source(case, root));
            let ok = !findings
                .iter()
                .any(|f| f.severity == sqlsandbox::lint::Severity::Error);
            let out = if c == "check" {
                findings
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                serde_json::to_string_pretty(&findings).unwrap()
            };
            return (ok, out);
        }
        Some("matrix") => {
            return match sqlsandbox::explain::matrix(&policy) {
                Ok(m) => (true, m.to_text()),
                Err(e) => (false, render_err(&e)),
            };
        }
        _ => {}
    }
    if case.sql.is_none()
        && case.question.is_none()
        && case.builder.is_none()
        && case.command.is_none()
    {
        let n = policy.database_names().count();
        return (true, format!("policy loaded: {n} databases"));
    }
    let principal = match principal(case, &policy) {
        Ok(p) => p,
        Err(e) => return (false, render_err(&e)),
    };
    match case.command.as_deref() {
        Some("explain") => {
            return (
                true,
                sqlsandbox::explain::explain(&policy, &principal).to_text(),
            );
        }
        Some("explain-json") => {
            let e = sqlsandbox::explain::explain(&policy, &principal);
            return (true, serde_json::to_string_pretty(&e).unwrap());
        }
        None | Some("rewrite") | Some("rewrite-json") => {}
        Some(other) => panic!("unknown command `{other}`"),
    }
    let opts = {
        let mut o = Options::default().with_params(case.params);
        o.dialect = case.dialect.as_deref().map(|d| d.parse().expect("dialect"));
        o.database = case.database.clone();
        o.fence = case
            .fence
            .as_deref()
            .map(|f| f.parse().expect("fence mode"));
        o
    };
    let result = match (&case.sql, &case.question, &case.builder) {
        (Some(sql), None, None) => policy.rewrite(&principal, sql, &opts),
        (None, None, Some(b)) => {
            let question = serde_json::to_value(b).expect("builder question as JSON");
            policy.rewrite_builder(&principal, &question, &opts)
        }
        (None, Some(q), None) => {
            let vars = case
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), yaml_value(v).expect("variable value")))
                .collect();
            policy.rewrite_question(&principal, q, &vars, &opts)
        }
        _ => panic!("a case needs exactly one of `sql`, `question` and `builder`"),
    };
    match result {
        Ok(out) => {
            round_trip(&out.sql, out.dialect);
            if !case.params {
                // Print, parse again, and prove the sandboxes are all there.
                let again = {
                    let mut o = Options::default()
                        .with_database(out.database.clone())
                        .with_dialect(out.dialect);
                    o.fence = opts.fence;
                    o
                };
                policy
                    .recheck(&principal, &out.sql, &again)
                    .unwrap_or_else(|e| panic!("recheck failed: {e}\n{}", out.sql));
            }
            let mut s = out.sql.clone();
            if !out.params.is_empty() {
                s.push_str("\n-- params: ");
                s.push_str(&serde_json::to_string(&out.params).unwrap());
            }
            if case.command.as_deref() == Some("rewrite-json") {
                s.push_str(&format!(
                    "\n-- destination: {:?}\n-- role: {:?}\n-- role statement: {:?}",
                    out.destination, out.role, out.role_statement
                ));
            }
            if out.fencing.fenced {
                s.push_str(&format!(
                    "\n-- fenced ({}): {}; conditions moved inside: {}",
                    match out.fencing.mode {
                        sqlsandbox::FenceMode::Auto => "auto",
                        sqlsandbox::FenceMode::Always => "always",
                        sqlsandbox::FenceMode::Never => "never",
                    },
                    out.fencing.reason.as_deref().unwrap_or("-"),
                    out.fencing.pushed
                ));
            }
            for a in &out.applied {
                s.push_str(&format!(
                    "\n-- applied: {} as {} ({} from {})",
                    a.table,
                    a.alias,
                    a.kind,
                    a.groups.join("+")
                ));
            }
            (true, s)
        }
        Err(e) => (false, render_err(&e)),
    }
}

/// The printed SQL must parse back to a tree that prints identically.
fn round_trip(sql: &str, dialect: Dialect) {
    let stmts = Parser::new(dialect.parser())
        .with_options(sqlparser::parser::ParserOptions::new().with_unescape(false))
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .unwrap_or_else(|e| panic!("rewritten SQL does not parse: {e}\n{sql}"));
    assert_eq!(stmts.len(), 1, "{sql}");
    assert_eq!(stmts[0].to_string(), sql, "round trip changed the SQL");
    // The output never carries a comment, nor a token that a database could
    // read as the start of one.
    let tokens = sqlparser::tokenizer::Tokenizer::new(dialect.parser(), sql)
        .with_unescape(false)
        .tokenize()
        .unwrap();
    for t in tokens {
        use sqlparser::tokenizer::{Token, Whitespace};
        match &t {
            Token::Whitespace(Whitespace::SingleLineComment { .. })
            | Token::Whitespace(Whitespace::MultiLineComment(_)) => {
                panic!("comment in output: {sql}")
            }
            Token::Word(w) if w.quote_style.is_some() => {}
            Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::DollarQuotedString(_) => {}
            other => {
                let text = other.to_string();
                assert!(
                    !text.contains("--") && !text.contains("/*") && !text.contains("*/"),
                    "comment marker in token `{text}`: {sql}"
                );
            }
        }
    }
}

/// One fixture: its outcome kind must match `expect`, and its output the
/// snapshot.
fn case(root: &Path, path: &Path) -> Result<(), Failed> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let case: Case = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let expected_ok = match case.expect.as_str() {
        "rewrite" | "load" => true,
        "refuse" | "reject" => false,
        other => return Err(format!("unknown expect `{other}`").into()),
    };
    let (ok, out) = run(&case, root);
    let rel = path
        .strip_prefix(root.join("tests/cases"))
        .map_err(|e| e.to_string())?;
    let name = format!(
        "cases@{}",
        rel.to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "__")
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root.join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_input_file(path);
    settings.bind(|| {
        insta::assert_snapshot!(name, format!("{}\n-- why: {}", out, case.why));
    });
    if ok != expected_ok {
        return Err(format!("expected `{}` ({}), got:\n{out}", case.expect, case.why).into());
    }
    Ok(())
}

/// Every `*.yaml` under `dir`, sorted.
fn fixtures(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            fixtures(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
}

/// A test body that may panic (insta, the helpers): a panic is a failure.
fn catching(f: impl FnOnce() -> Result<(), Failed>) -> Result<(), Failed> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into());
        Err(msg.into())
    })
}

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    fixtures(&root.join("tests/cases"), &mut paths);
    let mut trials: Vec<Trial> = paths
        .into_iter()
        .map(|path| {
            let name = path
                .strip_prefix(root.join("tests/cases"))
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            Trial::test(name, move || catching(|| case(root, &path)))
        })
        .collect();
    trials.push(Trial::test(
        "builder_functions_are_on_every_dialects_list",
        move || {
            catching(|| {
                builder_functions_are_on_every_dialects_list();
                Ok(())
            })
        },
    ));
    libtest_mimic::run(&args, trials).exit();
}

/// Every function the query builder emits must be on the allow-list of the
/// dialect it emits it for: each builder fixture is compiled again for
/// every dialect (its policy's `dialect:` swapped), and none may be refused
/// by the function check (SB402). Other refusals (an operator a dialect
/// lacks, a schema the swap broke) are not this test's business.
fn builder_functions_are_on_every_dialects_list() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut compiled = BTreeMap::<&str, usize>::new();
    let mut refused = Vec::new();
    for entry in std::fs::read_dir(root.join("tests/cases/builder")).unwrap() {
        let path = entry.unwrap().path();
        let case: Case = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let Some(question) = &case.builder else {
            continue;
        };
        let question = serde_json::to_value(question).unwrap();
        let source = policy_source(&case, root);
        for dialect in Dialect::ALL {
            let src = ["postgres", "mysql", "sqlite", "generic"]
                .iter()
                .fold(source.clone(), |s, d| {
                    s.replace(&format!("dialect: {d}"), &format!("dialect: {dialect}"))
                });
            let Ok(policy) = Policy::from_yaml(&src, "swapped.yaml") else {
                continue;
            };
            let Ok(principal) = principal(&case, &policy) else {
                continue;
            };
            let opts = {
                let mut o = Options::default();
                o.database = case.database.clone();
                o
            };
            match policy.rewrite_builder(&principal, &question, &opts) {
                Ok(_) => *compiled.entry(dialect.name()).or_default() += 1,
                Err(e) if e.code() == "SB402" => {
                    refused.push(format!("{} ({dialect}): {e}", path.display()))
                }
                Err(_) => {}
            }
        }
    }
    assert!(refused.is_empty(), "{}", refused.join("\n"));
    // The test must have compiled real questions in every dialect.
    for d in Dialect::ALL {
        let n = compiled.get(d.name()).copied().unwrap_or(0);
        assert!(n >= 20, "only {n} builder fixtures compiled for {d}");
    }
}
