//! The JSON Schema of the policy file: the shipped
//! `schema/policy.schema.json` is what the serde model generates
//! (`UPDATE_SCHEMA=1 cargo test --test policy_schema` rewrites it), every
//! example policy points at it on its first line and validates against it,
//! and policies the loader refuses for their shape fail it too.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_path() -> PathBuf {
    root().join("schema/policy.schema.json")
}

fn shipped() -> serde_json::Value {
    let text = std::fs::read_to_string(shipped_path()).expect("schema/policy.schema.json");
    serde_json::from_str(&text).expect("the shipped schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&shipped()).expect("the shipped schema compiles")
}

fn yaml_to_json(src: &str) -> serde_json::Value {
    serde_yaml::from_str(src).expect("YAML")
}

/// The errors of `src` against the schema, one line each.
fn errors(v: &jsonschema::Validator, src: &str) -> Vec<String> {
    let doc = yaml_to_json(src);
    v.iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// policies/*.yaml and examples/policy-ci/*.yaml.
fn example_policies() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["policies", "examples/policy-ci"] {
        for entry in std::fs::read_dir(root().join(dir)).expect("dir") {
            let p = entry.expect("entry").path();
            if p.extension().is_some_and(|e| e == "yaml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn shipped_schema_is_the_models() {
    let generated = sqlsandbox::schema::policy_schema_text();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(root().join("schema")).expect("mkdir");
        std::fs::write(shipped_path(), &generated).expect("write schema");
    }
    let on_disk = std::fs::read_to_string(shipped_path()).unwrap_or_default();
    assert!(
        on_disk == generated,
        "schema/policy.schema.json differs from the policy model; regenerate it with `UPDATE_SCHEMA=1 cargo test --test policy_schema` and review the diff"
    );
}

#[test]
fn example_policies_point_at_the_schema_and_validate() {
    let v = validator();
    let policies = example_policies();
    assert!(policies.len() >= 5, "{policies:?}");
    for path in policies {
        let src = std::fs::read_to_string(&path).expect("read");
        // The modeline is the first line and its relative path resolves.
        let first = src.lines().next().unwrap_or("");
        let rel = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| {
                panic!(
                    "{}: first line is not the schema modeline: {first}",
                    path.display()
                )
            });
        let target = path.parent().unwrap().join(rel);
        assert_eq!(
            std::fs::canonicalize(&target).ok(),
            std::fs::canonicalize(shipped_path()).ok(),
            "{}: {rel} does not name schema/policy.schema.json",
            path.display()
        );
        // The loader takes it, and so does the schema.
        sqlsandbox::Policy::from_yaml(&src, &path.display().to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let errs = errors(&v, &src);
        assert!(errs.is_empty(), "{}: {errs:#?}", path.display());
    }
}

/// Every other policy file in the repository that the loader takes (the
/// diff tests' policies, the benchmark's) validates against the schema too:
/// what the loader accepts, an editor must not flag.
#[test]
fn other_loadable_policies_validate() {
    let v = validator();
    let mut paths = vec![root().join("benches/db_cost/policy.yaml")];
    for entry in std::fs::read_dir(root().join("tests/policy_diff")).expect("dir") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "yaml") {
            paths.push(p);
        }
    }
    assert!(paths.len() >= 10, "{paths:?}");
    let mut loaded = 0;
    for path in paths {
        let src = std::fs::read_to_string(&path).expect("read");
        if sqlsandbox::Policy::from_yaml(&src, &path.display().to_string()).is_err() {
            continue;
        }
        loaded += 1;
        let errs = errors(&v, &src);
        assert!(errs.is_empty(), "{}: {errs:#?}", path.display());
    }
    assert!(loaded >= 10, "only {loaded} of the policies loaded");
}

/// Shapes the loader accepts that the examples do not all use: the schema
/// must accept them too.
#[test]
fn accepted_shapes_validate() {
    let v = validator();
    let srcs = [
        // fence as a mode and as the first version's boolean; an empty map
        // and an empty collection or group written as `key:` alone; typed
        // custom-sandbox parameters.
        r#"
version: 1
combine: error
databases:
  db:
    dialect: postgres
    combine: union
    fence: always
    tables:
      t: {columns: {id: integer, tenant: integer}}
  db2: {dialect: sqlite, fence: false, tables: {u: {columns: {id: integer}, combine: union}}}
questions:
  q: {database: db, sql: "SELECT id, tenant FROM t WHERE tenant = {{x}}", variables: {x: integer}}
collections:
  c:
groups:
  g:
    data:
      db: {public: {t: {sandbox: {question: q, parameters: {x: {attribute: tenant, type: integer}}}}}}
      db2: blocked
    collections: {c: view}
  nobody:
  h:
    data: {db: {public: {t: {sandbox: {filters: [{column: tenant, attribute: tenant}]}}}}}
users:
  u: {groups: [g], attributes: {tenant: [1, 2], flag: true}}
api_keys:
  k: {group: g, sha256: "0000000000000000000000000000000000000000000000000000000000000000", attributes: {tenant: 3}}
functions: {allow: [f], deny: [md5], variables: [version_comment]}
attributes: [tenant, flag]
"#,
    ];
    for src in srcs {
        sqlsandbox::Policy::from_yaml(src, "shapes.yaml").expect("the loader accepts it");
        let errs = errors(&v, src);
        assert!(errs.is_empty(), "{errs:#?}");
    }
}

/// Obviously wrong policies: the loader refuses them for their shape, and
/// the schema finds the same fault.
#[test]
fn invalid_policies_fail_the_schema() {
    let v = validator();
    let cases = [
        (
            "unknown key",
            "version: 1\ndatabases:\n  db:\n    dialect: postgres\n    tabels: {}\n",
            "/databases/db",
        ),
        (
            "wrong type",
            "version: 1\ndatabases:\n  db: {dialect: postgres, tables: {t: {columns: {id: integer}}}}\ngroups:\n  g:\n    native: {db: yes please}\n",
            "/groups/g/native/db",
        ),
        (
            "unknown access level",
            "version: 1\ndatabases:\n  db: {dialect: postgres, tables: {t: {columns: {id: integer}}}}\ngroups:\n  g:\n    data: {db: everything}\n",
            "/groups/g/data/db",
        ),
        (
            "fence mode misspelt",
            "version: 1\ndatabases:\n  db: {dialect: postgres, fence: sometimes, tables: {}}\n",
            "/databases/db/fence",
        ),
        ("version missing", "databases: {}\n", ""),
    ];
    for (what, src, at) in cases {
        assert!(
            sqlsandbox::Policy::from_yaml(src, "bad.yaml").is_err(),
            "{what}: the loader accepts it"
        );
        let errs = errors(&v, src);
        assert!(!errs.is_empty(), "{what}: the schema accepts it");
        assert!(
            errs.iter().any(|e| e.ends_with(&format!(" at {at}"))),
            "{what}: no error at `{at}`: {errs:#?}"
        );
    }
}

#[test]
fn policy_test_files_are_not_policies() {
    // The schema is for policies: a test file fails it (no `version`).
    let v = validator();
    let src = std::fs::read_to_string(Path::new(&root()).join("policies/tests/saas.test.yaml"))
        .expect("read");
    assert!(!errors(&v, &src).is_empty());
}
