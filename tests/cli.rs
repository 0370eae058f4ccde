//! The command line's conventions, run on the built binary: a closed
//! standard output, diagnostics (text and `--format json`, validated
//! against schema/error.schema.json), where the policy comes from,
//! `-q`/`-v`, `check --strict`/`--ignore`, usage errors (exit 2),
//! completions and the man page.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sqlsandbox"));
    c.current_dir(root())
        .args(args)
        .env_remove("SQLSANDBOX_POLICY")
        .env_remove("NO_COLOR");
    c
}

fn sqlsandbox(args: &[&str]) -> Output {
    cmd(args).output().expect("run sqlsandbox")
}

/// Runs with `input` on standard input.
fn with_stdin(mut c: Command, input: &str) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh temporary directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sqlsandbox_cli_{}_{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

const SAAS: &str = "policies/saas.yaml";

/// A policy whose one error is a misspelt `sandbox:` key.
const MISSPELT: &str = "version: 1
databases:
  shop: {dialect: postgres, tables: {orders: {columns: {id: integer, tenant_id: integer}}}}
groups:
  customers:
    data:
      shop:
        public:
          orders: {sandbx: {column: tenant_id, attribute: tenant}}
";

fn error_schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schema/error.schema.json")).expect("schema");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

/// The JSON error on standard output, checked against the schema.
fn json_error(o: &Output) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(o), stderr(o)));
    let schema = error_schema();
    let errors: Vec<String> = schema.iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{v}: {errors:?}");
    assert!(stderr(o).is_empty(), "stderr: {}", stderr(o));
    v
}

#[test]
fn closed_stdout_ends_quietly() {
    for args in [
        &[
            "rewrite",
            "--policy",
            SAAS,
            "--user",
            "alice",
            "SELECT id FROM orders",
        ][..],
        &["explain", "--policy", SAAS, "--all-users"][..],
        &["man"][..],
    ] {
        let mut child = cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // The reader goes away before the command writes (`| head -0`).
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

#[test]
fn policy_errors_name_the_key_with_a_snippet() {
    let dir = temp_dir("misspelt");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, MISSPELT).expect("write");
    let p = path.to_str().expect("utf-8");
    let out = sqlsandbox(&["check", "--policy", p]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("{p}:9:20: error[SB001]: invalid policy: ")),
        "{err}"
    );
    assert!(
        err.contains(
            "unknown field `sandbx`, expected one of `sandbox`, `rules`, `masks`; did you mean `sandbox`?"
        ),
        "{err}"
    );
    assert!(!err.contains("untagged enum"), "{err}");
    // The source line, and a caret under the key; no colours off a terminal.
    assert!(
        err.contains("9 |           orders: {sandbx: {column: tenant_id, attribute: tenant}}"),
        "{err}"
    );
    assert!(err.contains("|                    ^^^^^^"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err}");

    // The same as JSON, on standard output, also for `check`.
    let out = sqlsandbox(&["check", "--policy", p, "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let v = json_error(&out);
    assert_eq!(v["error"]["code"], "SB001");
    assert_eq!(v["error"]["refusal"], false);
    assert_eq!(v["error"]["location"]["line"], 9);
    assert_eq!(v["error"]["location"]["column"], 20);
    assert_eq!(v["error"]["location"]["path"], p);
}

#[test]
fn lints_share_the_format() {
    let out = sqlsandbox(&["check", "--policy", SAAS]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("policies/saas.yaml:62:3: warning[L009]: user `dave` lacks attribute"),
        "{text}"
    );
    assert!(
        text.contains("62 |   dave: {groups: [customers]}"),
        "{text}"
    );
    assert!(
        text.contains("policies/saas.yaml:41:5: info[L005]: "),
        "{text}"
    );
    assert!(
        text.ends_with("policies/saas.yaml: ok (0 errors, 4 warnings, 1 notes)\n"),
        "{text}"
    );
}

#[test]
fn check_strict_ignore_quiet_verbose() {
    // Warnings fail with --strict.
    let out = sqlsandbox(&["check", "--policy", SAAS, "--strict"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("FAILED (0 errors, 4 warnings, 1 notes)"));
    // ... unless ignored.
    let out = sqlsandbox(&[
        "check", "--policy", SAAS, "--strict", "--ignore", "L009", "--ignore", "l005",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(
        stdout(&out),
        "policies/saas.yaml: ok (0 errors, 0 warnings, 0 notes)\n"
    );
    // -q: errors only, no summary.
    let out = sqlsandbox(&["-q", "check", "--policy", SAAS]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "");
    // -v: says which policy file is used.
    let out = sqlsandbox(&["check", "-v", "--policy", SAAS]);
    assert!(
        stderr(&out).contains("sqlsandbox: policy policies/saas.yaml"),
        "{}",
        stderr(&out)
    );
    // JSON with --strict.
    let out = sqlsandbox(&["check", "--policy", SAAS, "--strict", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(v["ok"], false);
}

#[test]
fn json_errors_for_refusals_unknown_names_and_usage() {
    // A refusal: exit 1.
    let out = sqlsandbox(&[
        "rewrite",
        "--policy",
        SAAS,
        "--user",
        "alice",
        "--format",
        "json",
        "DELETE FROM orders",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let v = json_error(&out);
    assert_eq!(v["error"]["refusal"], true);
    assert!(v["error"]["code"]
        .as_str()
        .is_some_and(|c| c.starts_with("SB")));
    assert!(v["error"].get("location").is_none());

    // An unknown user, with a suggestion: exit 2.
    let out = sqlsandbox(&[
        "rewrite", "--policy", SAAS, "--user", "alcie", "--format", "json", "SELECT 1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v = json_error(&out);
    assert_eq!(v["error"]["code"], "SB102");
    assert_eq!(
        v["error"]["message"],
        "unknown user `alcie`; did you mean `alice`?"
    );

    // A usage error clap finds, and one found after parsing.
    for args in [
        &[
            "rewrite",
            "--policy",
            SAAS,
            "--user",
            "alice",
            "--dialect",
            "postgress",
            "--format",
            "json",
            "SELECT 1",
        ][..],
        &["rewrite", "--policy", SAAS, "--format", "json", "SELECT 1"][..],
        &["explain", "--format=json", "--policy", SAAS][..],
    ] {
        let out = sqlsandbox(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let v = json_error(&out);
        assert_eq!(v["error"]["code"], "usage", "{args:?}");
    }
}

#[test]
fn did_you_mean_for_groups_and_dialects() {
    let out = sqlsandbox(&[
        "rewrite", "--policy", SAAS, "--group", "customer", "SELECT 1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("error[SB102]: unknown group `customer`; did you mean `customers`?"),
        "{}",
        stderr(&out)
    );
    let out = sqlsandbox(&[
        "rewrite",
        "--policy",
        SAAS,
        "--user",
        "alice",
        "--dialect",
        "postgress",
        "SELECT 1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("a similar value exists: 'postgres'"), "{err}");
    assert!(
        err.contains("[possible values: postgres, mysql, sqlite, generic]"),
        "{err}"
    );
}

#[test]
fn sql_parse_errors_point_into_the_query() {
    let out = sqlsandbox(&[
        "rewrite",
        "--policy",
        SAAS,
        "--user",
        "alice",
        "SELECT 1 FROM orders wher x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.starts_with("<query>:1:27: error[SB101]: "), "{err}");
    assert!(err.contains("1 | SELECT 1 FROM orders wher x"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["rewrite", "--policy", SAAS, "SELECT 1"], "no principal"),
        (
            &[
                "rewrite",
                "--policy",
                SAAS,
                "--group",
                "customers",
                "--attr",
                "tenant",
                "SELECT 1",
            ],
            "expected key=value",
        ),
        (
            &[
                "rewrite", "--policy", SAAS, "--user", "alice", "--var", "x=1", "SELECT 1",
            ],
            "--question",
        ),
        (
            &["rewrite", "--policy", SAAS, "--user", "alice", "  "],
            "empty query",
        ),
    ];
    for (args, says) in cases {
        let out = sqlsandbox(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        // clap's own errors end with a pointer to --help, ours with the usage.
        let err = stderr(&out);
        assert!(
            err.contains("Usage: sqlsandbox rewrite") || err.contains("try '--help'"),
            "{args:?}: {err}"
        );
    }
    // An empty query on standard input too.
    let out = with_stdin(cmd(&["rewrite", "--policy", SAAS, "--user", "alice"]), "\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("empty query"));
}

#[test]
fn where_the_policy_comes_from() {
    let q = ["rewrite", "--user", "alice", "SELECT count(*) FROM orders"];
    let expected = stdout(&sqlsandbox(&[&q[..], &["--policy", SAAS][..]].concat()));
    assert!(expected.contains("tenant_id = 42"), "{expected}");

    // SQLSANDBOX_POLICY.
    let out = cmd(&q)
        .env("SQLSANDBOX_POLICY", SAAS)
        .output()
        .expect("run");
    assert_eq!(stdout(&out), expected, "{}", stderr(&out));

    // sqlsandbox.yaml in the current directory.
    let dir = temp_dir("discovery");
    std::fs::copy(root().join(SAAS), dir.join("sqlsandbox.yaml")).expect("copy");
    let out = cmd(&q).current_dir(&dir).output().expect("run");
    assert_eq!(stdout(&out), expected, "{}", stderr(&out));

    // Neither: a usage error saying how to give one.
    let empty = temp_dir("no_policy");
    let out = cmd(&q).current_dir(&empty).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("SQLSANDBOX_POLICY"),
        "{}",
        stderr(&out)
    );

    // --policy - reads standard input.
    let policy = std::fs::read_to_string(root().join(SAAS)).expect("read");
    let out = with_stdin(cmd(&[&q[..], &["--policy", "-"][..]].concat()), &policy);
    assert_eq!(stdout(&out), expected, "{}", stderr(&out));
    // ... and then the query cannot come from there too.
    let out = with_stdin(
        cmd(&["rewrite", "--policy", "-", "--user", "alice"]),
        &policy,
    );
    assert_eq!(out.status.code(), Some(2));
    // A policy error on standard input is named <stdin>.
    let out = with_stdin(cmd(&["check", "--policy", "-"]), MISSPELT);
    assert!(
        stderr(&out).starts_with("<stdin>:9:20: error[SB001]"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn limits_as_flags() {
    let out = sqlsandbox(&[
        "rewrite",
        "--policy",
        SAAS,
        "--user",
        "alice",
        "--max-sql-bytes",
        "10",
        "SELECT id FROM orders",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("error[SB404]"), "{}", stderr(&out));
    let out = sqlsandbox(&[
        "rewrite",
        "--policy",
        SAAS,
        "--user",
        "alice",
        "--max-operators",
        "2",
        "SELECT id FROM orders WHERE id = 1 + 2 + 3 + 4",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = sqlsandbox(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = stdout(&out);
        assert!(text.contains("sqlsandbox"), "{shell}");
        assert!(text.contains("rewrite"), "{shell}");
    }
    let out = sqlsandbox(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains(".TH sqlsandbox 1"), "{text}");
    assert!(text.contains("SQLSANDBOX_POLICY"), "{text}");
    assert!(text.contains("NO_COLOR"), "{text}");
    assert!(text.contains("rewrite"), "{text}");
}

/// A connection error says why (the client's cause), not only "error
/// connecting to server".
#[cfg(feature = "live")]
#[test]
fn connection_errors_carry_their_cause() {
    let out = sqlsandbox(&[
        "check",
        "--policy",
        SAAS,
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("error[SB003]"), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
}
