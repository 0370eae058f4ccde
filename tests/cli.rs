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
        err.contains("[possible values: postgres, mysql, sqlite, generic, duckdb, clickhouse, spark, snowflake, bigquery, redshift, mssql, trino]"),
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

/// A policy with comments, for the API key commands.
const KEYS: &str = "\
# Reporting keys live at the end of this file.
version: 1
databases:
  shop:
    dialect: postgres
    tables:
      orders: {columns: {id: integer, tenant_id: integer}}
groups:
  reporting:   # dashboards
    native: {shop: true}
    data: {shop: {public: {orders: {sandbox: {column: tenant_id, attribute: tenant}}}}}
# The end.
";

/// The one line `sk_` + 64 hex digits a key command prints.
fn secret_of(o: &Output) -> String {
    let out = stdout(o);
    let secret = out.strip_suffix('\n').expect("one line");
    assert!(!secret.contains('\n'), "{out}");
    let hex = secret.strip_prefix("sk_").expect("sk_ prefix");
    assert_eq!(hex.len(), 64, "{secret}");
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{secret}");
    secret.to_string()
}

/// `rewrite` as the API key `secret` on `policy`: its exit code and output.
fn as_key(policy: &str, secret: &str) -> (Option<i32>, String) {
    let out = sqlsandbox(&[
        "rewrite",
        "--policy",
        policy,
        "--api-key",
        secret,
        "SELECT id FROM orders",
    ]);
    (
        out.status.code(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

#[test]
fn apikey_generate_writes_a_key_that_authenticates() {
    let dir = temp_dir("apikey_generate");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, KEYS).expect("write");
    let p = path.to_str().expect("utf-8");
    let out = sqlsandbox(&[
        "apikey",
        "generate",
        "ci",
        "--group",
        "reporting",
        "--attr",
        "tenant=7",
        "--policy",
        p,
        "--write",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let secret = secret_of(&out);
    // The secret is printed once: on standard output, never on standard
    // error, never in the file.
    assert!(!stderr(&out).contains(&secret), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("added API key `ci`"),
        "{}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(!text.contains(&secret));
    // The rest of the file, comments included, is kept as it was.
    let hash = sqlsandbox::apikey::sha256_hex(&secret);
    assert_eq!(
        text,
        format!("{KEYS}api_keys:\n  ci:\n    group: reporting\n    sha256: {hash}\n    attributes: {{tenant: 7}}\n")
    );
    let (code, sql) = as_key(p, &secret);
    assert_eq!(code, Some(0), "{sql}");
    assert!(sql.contains("tenant_id = 7"), "{sql}");
    // Two runs give two different secrets.
    let again = sqlsandbox(&[
        "apikey",
        "generate",
        "ci2",
        "--group",
        "reporting",
        "--policy",
        p,
        "--write",
        "-q",
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_ne!(secret_of(&again), secret);
    assert_eq!(stderr(&again), "", "-q: nothing on standard error");
    let check = sqlsandbox(&["check", "--policy", p, "-q"]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
}

#[test]
fn apikey_without_write_prints_the_entry_and_leaves_the_file() {
    let dir = temp_dir("apikey_dry");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, KEYS).expect("write");
    let p = path.to_str().expect("utf-8");
    let out = sqlsandbox(&[
        "apikey",
        "generate",
        "ci",
        "--group",
        "reporting",
        "--attr",
        "tenant=7",
        "--policy",
        p,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let secret = secret_of(&out);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), KEYS);
    let err = stderr(&out);
    assert!(err.contains("give --write"), "{err}");
    // The entry printed, pasted at the end of the file, makes the secret work.
    let entry = err
        .split_once("\n\n")
        .and_then(|(_, rest)| rest.split_once("\n\n"))
        .map(|(entry, _)| entry)
        .expect("an entry between blank lines");
    assert!(entry.starts_with("api_keys:\n  ci:\n"), "{entry}");
    assert!(
        entry.contains(&sqlsandbox::apikey::sha256_hex(&secret)),
        "{entry}"
    );
    std::fs::write(&path, format!("{KEYS}{entry}\n")).expect("write");
    assert_eq!(as_key(p, &secret).0, Some(0));
}

#[test]
fn apikey_rotation_accepts_both_secrets_until_finished() {
    let dir = temp_dir("apikey_rotate");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, KEYS).expect("write");
    let p = path.to_str().expect("utf-8");
    let run = |args: &[&str]| {
        let mut all = vec!["apikey"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--policy", p]);
        sqlsandbox(&all)
    };
    let out = run(&[
        "generate",
        "ci",
        "--group",
        "reporting",
        "--attr",
        "tenant=7",
        "--write",
    ]);
    let old = secret_of(&out);
    let out = run(&["rotate", "ci", "--write"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let new = secret_of(&out);
    assert_ne!(old, new);
    assert!(
        stderr(&out).contains("finish-rotation ci"),
        "{}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with(KEYS), "{text}");
    assert!(text.contains(&format!(
        "    sha256: {}\n    previous_sha256: {}\n",
        sqlsandbox::apikey::sha256_hex(&new),
        sqlsandbox::apikey::sha256_hex(&old)
    )));
    assert_eq!(
        as_key(p, &old).0,
        Some(0),
        "the old secret works during the rotation"
    );
    assert_eq!(as_key(p, &new).0, Some(0), "the new secret works");

    // A second rotation before the first is finished is refused, the file
    // untouched and no secret printed.
    let out = run(&["rotate", "ci", "--write"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("error[SB005]"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);

    let out = run(&["finish-rotation", "ci", "--write"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "finishing prints no secret");
    let (code, err) = as_key(p, &old);
    assert_eq!(code, Some(2), "the old secret is refused: {err}");
    assert!(err.contains("unknown API key"), "{err}");
    assert_eq!(as_key(p, &new).0, Some(0));
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(!text.contains("previous_sha256"), "{text}");
    assert!(text.starts_with(KEYS), "{text}");

    let out = run(&["finish-rotation", "ci", "--write"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no rotation"), "{}", stderr(&out));
}

#[test]
fn apikey_refusals_leave_the_file_untouched_and_print_no_secret() {
    let dir = temp_dir("apikey_refusals");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, KEYS).expect("write");
    let p = path.to_str().expect("utf-8");
    let refused = |args: &[&str], code: &str, says: &str| {
        let mut all = vec!["apikey"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--policy", p, "--write"]);
        let out = sqlsandbox(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}: no secret for a refused key");
        let err = stderr(&out);
        assert!(err.contains(&format!("error[{code}]")), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            KEYS,
            "{args:?}"
        );
    };
    refused(
        &["generate", "ci", "--group", "reportng"],
        "SB102",
        "unknown group `reportng`; did you mean `reporting`?",
    );
    refused(
        &["generate", "9ci", "--group", "reporting"],
        "SB005",
        "must be a letter",
    );
    refused(
        &["generate", "c i", "--group", "reporting"],
        "SB005",
        "must be a letter",
    );
    refused(&["rotate", "ci"], "SB102", "unknown API key `ci`");
    std::fs::write(
        &path,
        KEYS.replace(
            "version: 1\n",
            "version: 1\nattributes: {tenant: integer}\n",
        ),
    )
    .expect("write");
    let declared = std::fs::read_to_string(&path).expect("read");
    let out = sqlsandbox(&[
        "apikey",
        "generate",
        "ci",
        "--group",
        "reporting",
        "--attr",
        "tenat=7",
        "--policy",
        p,
        "--write",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown attribute `tenat`; did you mean `tenant`?"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), declared);
    let out = sqlsandbox(&[
        "apikey",
        "generate",
        "ci",
        "--group",
        "reporting",
        "--attr",
        "tenant=x",
        "--policy",
        p,
        "--write",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a value that does not fit the declared type"
    );
    assert!(stderr(&out).contains("would not load"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), declared);
    // An existing name.
    let out = sqlsandbox(&[
        "apikey",
        "generate",
        "ci",
        "--group",
        "reporting",
        "--policy",
        p,
        "--write",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let once = std::fs::read_to_string(&path).expect("read");
    let out = sqlsandbox(&[
        "apikey",
        "generate",
        "ci",
        "--group",
        "reporting",
        "--policy",
        p,
        "--write",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), once);
    let out = sqlsandbox(&["apikey", "rotate", "cj", "--policy", p]);
    assert!(
        stderr(&out).contains("did you mean `ci`?"),
        "{}",
        stderr(&out)
    );
    // --write needs a file.
    let out = with_stdin(
        cmd(&[
            "apikey",
            "generate",
            "x",
            "--group",
            "reporting",
            "--policy",
            "-",
            "--write",
        ]),
        KEYS,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--write edits the policy file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn man_pages_per_subcommand() {
    let dir = temp_dir("man");
    let out_dir = dir.join("man1");
    let d = out_dir.to_str().expect("utf-8");
    let out = sqlsandbox(&["man", "--dir", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    for page in [
        "sqlsandbox.1",
        "sqlsandbox-rewrite.1",
        "sqlsandbox-check.1",
        "sqlsandbox-apikey.1",
        "sqlsandbox-apikey-generate.1",
        "sqlsandbox-apikey-rotate.1",
        "sqlsandbox-apikey-finish-rotation.1",
        "sqlsandbox-man.1",
    ] {
        let path = out_dir.join(page);
        assert!(
            listed.contains(&path.display().to_string()),
            "{page} in {listed:?}"
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
        let name = page.strip_suffix(".1").expect(".1");
        assert!(text.contains(&format!(".TH {name} 1")), "{page}: {text}");
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{page}: {text}");
    }
    assert!(!out_dir.join("sqlsandbox-help.1").exists());
    let written = std::fs::read_dir(&out_dir).expect("dir").count();
    assert_eq!(written, listed.len());
    // The main page points at the subcommands' pages.
    let main = std::fs::read_to_string(out_dir.join("sqlsandbox.1")).expect("read");
    assert!(main.contains("sqlsandbox\\-rewrite(1)"), "{main}");
    // One subcommand's page on standard output.
    let out = sqlsandbox(&["man", "apikey", "generate"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains(".TH sqlsandbox-apikey-generate 1"), "{text}");
    assert!(text.contains("\\-\\-group"), "{text}");
    let out = sqlsandbox(&["man", "rewrit"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("did you mean `rewrite`?"),
        "{}",
        stderr(&out)
    );
    let out = sqlsandbox(&["man", "--dir", d, "rewrite"]);
    assert_eq!(out.status.code(), Some(2), "--dir writes every page");
}

#[test]
fn attr_names_and_schemas_get_did_you_mean() {
    // A policy that declares its attributes refuses an undeclared --attr.
    let out = sqlsandbox(&[
        "rewrite",
        "--policy",
        SAAS,
        "--group",
        "customers",
        "--attr",
        "tenat=7",
        "SELECT id FROM orders",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("error[SB102]: unknown attribute `tenat`; did you mean `tenant`?"),
        "{}",
        stderr(&out)
    );
    // One that does not warns, and says which attribute was meant when the
    // query then lacks it.
    let dir = temp_dir("attr_hint");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, KEYS).expect("write");
    let p = path.to_str().expect("utf-8");
    let out = sqlsandbox(&[
        "rewrite",
        "--policy",
        p,
        "--group",
        "reporting",
        "--attr",
        "tenat=7",
        "SELECT id FROM orders",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("warning: attribute `tenat` (--attr) is used by no rule of the policy; did you mean `tenant`?"),
        "{err}"
    );
    assert!(err.contains("error[SB301]"), "{err}");
    assert!(
        err.contains("--attr gave `tenat`: did you mean `tenant`?"),
        "{err}"
    );
    let quiet = sqlsandbox(&[
        "rewrite",
        "-q",
        "--policy",
        p,
        "--group",
        "reporting",
        "--attr",
        "tenat=7",
        "SELECT id FROM orders",
    ]);
    assert!(!stderr(&quiet).contains("warning"), "{}", stderr(&quiet));
    // A misspelt schema in a query.
    let out = sqlsandbox(&[
        "rewrite",
        "--policy",
        SAAS,
        "--user",
        "alice",
        "SELECT id FROM pubilc.orders",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("did you mean `public.orders`?"),
        "{}",
        stderr(&out)
    );
}
