//! `sqlsandbox diff OLD NEW`, run as a binary on pairs of small policies:
//! `tests/policy_diff/base.yaml` against each other fixture there, which
//! changes it in one respect. Text lines and classes are asserted here; the
//! JSON output of each pair is an insta snapshot under `snapshots/`
//! (`policy_diff_<fixture>.snap`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    root().join("tests/policy_diff")
}

/// Runs the binary in `dir`: (exit code, stdout, stderr).
fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sqlsandbox"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run sqlsandbox");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

/// `diff base.yaml NEW [extra…]` in the fixtures directory.
fn diff(new: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["diff", "base.yaml", new];
    args.extend_from_slice(extra);
    run(&fixtures(), &args)
}

/// A fixture, the lines its text output must hold (class, line after the
/// class) and its summary line.
type Expected = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

const EXPECTED: &[Expected] = &[
    (
        "unrestricted.yaml",
        &[
            ("widen", "shop.public.orders: access gained: sandboxed by basic sandbox (tenant_id = attribute `tenant`) binding tenant = 1 → unrestricted"),
            ("widen", "shop.public.orders: access gained: sandboxed by basic sandbox (tenant_id = attribute `tenant`) → unrestricted"),
        ],
        "3 changes: 3 widen, 0 narrow, 0 neutral",
    ),
    (
        "more_filters.yaml",
        &[
            ("narrow", "shop.public.orders: sandbox narrowed: sandboxed by basic sandbox (tenant_id = attribute `tenant`) → sandboxed by basic sandbox (tenant_id = attribute `tenant` AND region = attribute `regions`)"),
            ("narrow", "shop.public.orders: sandbox narrowed: sandboxed by basic sandbox (tenant_id = attribute `tenant`) binding tenant = 1 → sandboxed by basic sandbox (tenant_id = attribute `tenant` AND region = attribute `regions`) binding tenant = 1, regions = [\"west\"]"),
        ],
        "3 changes: 0 widen, 3 narrow, 0 neutral",
    ),
    (
        "changed_sandbox.yaml",
        &[
            ("widen", "shop.public.orders: sandbox changed (treated as widening): sandboxed by basic sandbox (tenant_id = attribute `tenant`) → sandboxed by basic sandbox (region = attribute `regions`)"),
            // uma had both sandboxes ORed (combine: union); one is left.
            ("narrow", "shop.public.orders: sandbox narrowed: sandboxed by basic sandbox (tenant_id = attribute `tenant`) OR basic sandbox (region = attribute `regions`) binding tenant = 3, regions = [\"west\"] → sandboxed by basic sandbox (region = attribute `regions`) binding regions = [\"west\"]"),
        ],
        "3 changes: 2 widen, 1 narrow, 0 neutral",
    ),
    (
        "columns.yaml",
        &[
            ("widen", "shop.public.accounts: sandbox changed (treated as widening): sandboxed by custom sandbox (question `own_accounts`) (its question's SQL or parameters changed)"),
            ("widen", "shop.public.accounts: columns newly visible: email"),
            ("narrow", "shop.public.accounts: columns hidden: plan"),
        ],
        "9 changes: 6 widen, 3 narrow, 0 neutral",
    ),
    (
        "native_lost.yaml",
        &[("narrow", "shop: native SQL lost")],
        "3 changes: 0 widen, 3 narrow, 0 neutral",
    ),
    (
        "collection_up.yaml",
        &[("widen", "collection reports: view → curate")],
        "3 changes: 3 widen, 0 narrow, 0 neutral",
    ),
    (
        "user_values.yaml",
        &[
            ("widen", "shop.public.orders: sandbox changed (treated as widening): sandboxed by basic sandbox (tenant_id = attribute `tenant`) binding tenant = 1 → sandboxed by basic sandbox (tenant_id = attribute `tenant`) binding tenant = 2"),
            ("narrow", "shop.public.orders: sandbox narrowed: sandboxed by basic sandbox (region = attribute `regions`) binding regions = [\"north\", \"east\"] → sandboxed by basic sandbox (region = attribute `regions`) binding regions = [\"north\"]"),
        ],
        "3 changes: 2 widen, 1 narrow, 0 neutral",
    ),
    (
        "users.yaml",
        &[
            ("widen", "user added"),
            ("widen", "shop.public.orders: access gained: denied → sandboxed by basic sandbox (tenant_id = attribute `tenant`) binding tenant = 9"),
            ("narrow", "user removed"),
            ("narrow", "shop.public.orders: access lost: sandboxed by basic sandbox (region = attribute `regions`) binding regions = [\"north\", \"east\"] → denied"),
            ("widen", "question own_accounts may now be run (its SQL is sandboxed like any other)"),
        ],
        "9 changes: 7 widen, 2 narrow, 0 neutral",
    ),
    (
        "union.yaml",
        &[
            ("neutral", "groups [customers, regional] → [regional] (what that changes is listed separately)"),
            ("narrow", "shop.public.accounts: access lost: sandboxed by custom sandbox (question `own_accounts`) binding tenant = 3 → denied"),
            ("narrow", "shop.public.orders: sandbox narrowed: sandboxed by basic sandbox (tenant_id = attribute `tenant`) OR basic sandbox (region = attribute `regions`) binding tenant = 3, regions = [\"west\"] → sandboxed by basic sandbox (region = attribute `regions`) binding regions = [\"west\"]"),
            ("narrow", "collection reports: view → none"),
            ("narrow", "question own_accounts may no longer be run (its SQL is sandboxed like any other)"),
        ],
        "7 changes: 0 widen, 6 narrow, 1 neutral",
    ),
    (
        "routing.yaml",
        &[
            ("widen", "database shop: fence auto → never"),
            ("widen", "database shop: routing by attribute `tenant_db` to acme or __ROUTER__ → by attribute `tenant_db` to acme, globex or __ROUTER__ (changed, treated as widening)"),
            ("widen", "shop: route changed (treated as widening): destination `acme` as the connection's role → destination `globex` as the connection's role"),
        ],
        "3 changes: 3 widen, 0 narrow, 0 neutral",
    ),
    (
        "role.yaml",
        &[("widen", "ops: route changed (treated as widening): this database as role `support_ro` → this database as role `support_rw`")],
        "1 change: 1 widen, 0 narrow, 0 neutral",
    ),
    (
        "impersonation_off.yaml",
        &[("widen", "database ops: impersonation role from attribute `db_role` → none (changed, treated as widening)")],
        "1 change: 1 widen, 0 narrow, 0 neutral",
    ),
    (
        "tables.yaml",
        &[
            ("neutral", "database archive declared (who may read it is listed per principal)"),
            ("neutral", "shop.public.orders: columns declared: discount"),
            ("neutral", "table shop.public.products dropped (who may read it is listed per principal)"),
            ("widen", "archive.main.old_orders: access gained: not declared → unrestricted"),
            ("widen", "archive: native SQL gained"),
            ("widen", "shop.public.orders: columns newly visible: discount"),
            ("narrow", "shop.public.products: access lost: unrestricted → not declared"),
        ],
        "19 changes: 12 widen, 4 narrow, 3 neutral",
    ),
    (
        "api_key.yaml",
        &[
            ("neutral", "groups [regional] → [customers] (what that changes is listed separately)"),
            ("neutral", "secret (sha256) changed"),
            ("narrow", "shop.public.orders: access lost: sandboxed by basic sandbox (region = attribute `regions`) binding regions = [\"south\"] → refused (queries on it are refused: query requires user attribute `tenant` (sandbox on public.orders), which this principal does not have)"),
            ("widen", "shop.public.products: access gained: denied → unrestricted"),
        ],
        "8 changes: 4 widen, 1 narrow, 3 neutral",
    ),
    (
        "functions.yaml",
        &[
            ("widen", "native SQL may use function `myschema.mask_email`"),
            ("narrow", "function `upper` denied"),
        ],
        "2 changes: 1 widen, 1 narrow, 0 neutral",
    ),
    (
        "all_users.yaml",
        &[("widen", "shop.public.products: access gained: denied → unrestricted")],
        "6 changes: 6 widen, 0 narrow, 0 neutral",
    ),
];

#[test]
fn each_change_kind_is_listed_and_classified() {
    let mut failures = Vec::new();
    for (fixture, lines, summary) in EXPECTED {
        let (code, out, err) = diff(fixture, &[]);
        if code != 0 {
            failures.push(format!("{fixture}: exit {code}: {err}"));
            continue;
        }
        for (class, line) in *lines {
            let want = format!("  {class:<8} {line}\n");
            if !out.contains(&want) {
                failures.push(format!("{fixture}: no line\n{want}in\n{out}"));
            }
        }
        if out.lines().last() != Some(*summary) {
            failures.push(format!("{fixture}: summary is not `{summary}`:\n{out}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn text_groups_changes_by_principal() {
    let (_, out, _) = diff("all_users.yaml", &[]);
    assert_eq!(
        out,
        "diff base.yaml → all_users.yaml\n\
         user:olga:\n  widen    shop.public.products: access gained: denied → unrestricted\n\
         user:rita:\n  widen    shop.public.products: access gained: denied → unrestricted\n\
         group:all_users:\n  widen    shop.public.products: access gained: denied → unrestricted\n\
         group:operations:\n  widen    shop.public.products: access gained: denied → unrestricted\n\
         group:regional:\n  widen    shop.public.products: access gained: denied → unrestricted\n\
         anonymous:\n  widen    shop.public.products: access gained: denied → unrestricted\n\
         6 changes: 6 widen, 0 narrow, 0 neutral\n"
    );
}

#[test]
fn every_fixture_differs_from_base() {
    let dir = std::fs::read_dir(fixtures()).expect("fixtures");
    let mut names: Vec<String> = dir
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "base.yaml")
        .collect();
    names.sort();
    let listed: Vec<&str> = EXPECTED.iter().map(|(f, _, _)| *f).collect();
    for n in &names {
        assert!(listed.contains(&n.as_str()), "{n} is not in EXPECTED");
    }
}

#[test]
fn json_output_snapshots() {
    insta::with_settings!({
        snapshot_path => root().join("snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        for (fixture, _, _) in EXPECTED {
            let (code, out, err) = diff(fixture, &["--format", "json"]);
            assert_eq!(code, 0, "{fixture}: {err}");
            let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
            // The summary counts the changes.
            let changes = v["changes"].as_array().expect("changes");
            for class in ["widen", "narrow", "neutral"] {
                let n = changes.iter().filter(|c| c["class"] == class).count();
                assert_eq!(v["summary"][class], n, "{fixture}: {class}");
            }
            let stem = fixture.trim_end_matches(".yaml");
            insta::assert_snapshot!(format!("policy_diff_{stem}"), out);
        }
    });
}

#[test]
fn bundled_policies_against_themselves_change_nothing() {
    for p in [
        "saas.yaml",
        "departments.yaml",
        "marketplace.yaml",
        "routed.yaml",
    ] {
        let path = format!("policies/{p}");
        let (code, out, err) = run(root(), &["diff", &path, &path, "--fail-on", "any"]);
        assert_eq!(code, 0, "{p}: {out}{err}");
        assert_eq!(
            out,
            format!("diff {path} → {path}\n0 changes: 0 widen, 0 narrow, 0 neutral\n")
        );
        let (code, out, _) = run(
            root(),
            &[
                "diff",
                &path,
                &path,
                "--format",
                "json",
                "--fail-on",
                "widen",
            ],
        );
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(v["changes"], serde_json::json!([]));
    }
}

#[test]
fn bundled_policies_against_each_other_differ() {
    // saas.yaml and marketplace.yaml share no user: every user is added or
    // removed; exit 1 under --fail-on widen.
    let (code, out, _) = run(
        root(),
        &[
            "diff",
            "policies/saas.yaml",
            "policies/marketplace.yaml",
            "--fail-on",
            "widen",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("user:alice:\n  narrow   user removed\n"),
        "{out}"
    );
    assert!(out.contains("user:sam:\n  widen    user added\n"), "{out}");
    assert!(
        out.contains("  neutral  database warehouse dropped"),
        "{out}"
    );
}

#[test]
fn fail_on_exit_codes() {
    // A widening change.
    assert_eq!(diff("unrestricted.yaml", &[]).0, 0);
    assert_eq!(diff("unrestricted.yaml", &["--fail-on", "widen"]).0, 1);
    assert_eq!(diff("unrestricted.yaml", &["--fail-on", "any"]).0, 1);
    // Narrowing changes only.
    assert_eq!(diff("more_filters.yaml", &["--fail-on", "widen"]).0, 0);
    assert_eq!(diff("more_filters.yaml", &["--fail-on", "any"]).0, 1);
    // Nothing.
    assert_eq!(diff("base.yaml", &["--fail-on", "any"]).0, 0);
    // JSON too.
    assert_eq!(
        diff(
            "changed_sandbox.yaml",
            &["--format", "json", "--fail-on", "widen"]
        )
        .0,
        1
    );
}

#[test]
fn bad_input_exits_2() {
    let (code, _, err) = diff("no_such.yaml", &[]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error[SB003]: cannot read no_such.yaml"),
        "{err}"
    );

    let dir = scratch("bad_policy");
    std::fs::write(
        dir.join("bad.yaml"),
        "version: 1\ngroups: {g: {data: {nope: unrestricted}}}\n",
    )
    .expect("write");
    let base = fixtures().join("base.yaml");
    let (code, _, err) = run(&dir, &["diff", base.to_str().expect("utf-8"), "bad.yaml"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("bad.yaml:2:"), "{err}");
    assert!(err.contains(": error[SB002]: "), "{err}");
    std::fs::remove_dir_all(&dir).expect("clean up");

    // Usage: NEW is required without --git, and refused with it.
    let (code, _, err) = run(&fixtures(), &["diff", "base.yaml"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(
        &fixtures(),
        &["diff", "--git", "HEAD", "base.yaml", "base.yaml"],
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(
        &fixtures(),
        &["diff", "base.yaml", "base.yaml", "--fail-on", "sometimes"],
    );
    assert_eq!(code, 2, "{err}");
}

/// An empty directory of its own under the system temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sqlsandbox-policy-diff-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn git_revisions() {
    let repo = scratch("git");
    let sub = repo.join("conf");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let read = |f: &str| std::fs::read_to_string(fixtures().join(f)).expect("fixture");
    git(&repo, &["init", "-q"]);
    std::fs::write(sub.join("policy.yaml"), read("base.yaml")).expect("write");
    git(&repo, &["add", "conf/policy.yaml"]);
    git(&repo, &["commit", "-q", "-m", "base"]);
    // The working file narrows the committed one.
    std::fs::write(sub.join("policy.yaml"), read("more_filters.yaml")).expect("write");
    let narrowed = "  narrow   shop.public.orders: sandbox narrowed: sandboxed by basic sandbox (tenant_id = attribute `tenant`) → sandboxed by basic sandbox (tenant_id = attribute `tenant` AND region = attribute `regions`)\n";

    // --git REV NEW, from the repository root and from the file's directory.
    let (code, out, err) = run(
        &repo,
        &[
            "diff",
            "--git",
            "HEAD",
            "conf/policy.yaml",
            "--fail-on",
            "widen",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("diff HEAD:conf/policy.yaml → conf/policy.yaml\n"),
        "{out}"
    );
    assert!(out.contains(narrowed), "{out}");
    assert!(
        out.ends_with("3 changes: 0 widen, 3 narrow, 0 neutral\n"),
        "{out}"
    );
    let (code, out, err) = run(&sub, &["diff", "--git", "HEAD", "policy.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(narrowed), "{out}");
    // An absolute path, from outside the repository.
    let abs = sub.join("policy.yaml");
    let (code, out, err) = run(
        &std::env::temp_dir(),
        &["diff", "--git", "HEAD", abs.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(narrowed), "{out}");

    // REV:path arguments (git's paths: from the repository root), either side.
    let (code, out, err) = run(
        &repo,
        &["diff", "HEAD:conf/policy.yaml", "conf/policy.yaml"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(narrowed), "{out}");
    // Reversed: the committed policy is wider than the working one.
    let (code, out, err) = run(
        &repo,
        &[
            "diff",
            "conf/policy.yaml",
            "HEAD:conf/policy.yaml",
            "--fail-on",
            "widen",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        out.contains("  widen    shop.public.orders: sandbox widened: "),
        "{out}"
    );

    // Committed again: nothing differs.
    git(&repo, &["commit", "-q", "-a", "-m", "narrow"]);
    let (code, out, _) = run(
        &repo,
        &[
            "diff",
            "--git",
            "HEAD",
            "conf/policy.yaml",
            "--fail-on",
            "any",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run(
        &repo,
        &["diff", "HEAD~1:conf/policy.yaml", "HEAD:conf/policy.yaml"],
    );
    assert_eq!(code, 0);
    assert!(out.contains(narrowed), "{out}");

    // A file with a colon in its name is a file, not a revision.
    std::fs::write(repo.join("a:b.yaml"), read("base.yaml")).expect("write");
    let (code, out, err) = run(&repo, &["diff", "a:b.yaml", "a:b.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.ends_with("0 changes: 0 widen, 0 narrow, 0 neutral\n"),
        "{out}"
    );

    // Unknown revision or path: bad input, exit 2, SB003.
    let (code, _, err) = run(
        &repo,
        &["diff", "nope:conf/policy.yaml", "conf/policy.yaml"],
    );
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error[SB003]: cannot read nope:conf/policy.yaml: git show failed"),
        "{err}"
    );
    let (code, _, err) = run(&repo, &["diff", "--git", "HEAD", "conf/missing.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("SB003"), "{err}");

    std::fs::remove_dir_all(&repo).expect("clean up");
}

/// Row rules and write rules: a removed restrictive rule widens (the
/// sandbox changed), a removed write rule narrows, an added write command
/// widens.
#[test]
fn row_and_write_rule_changes_are_classified() {
    use sqlsandbox::policydiff::{self, Class};
    let src = std::fs::read_to_string(root().join("policies/rules.yaml")).unwrap();
    let old = sqlsandbox::Policy::from_yaml(&src, "rules.yaml").unwrap();
    let change = |from: &str, to: &str| {
        assert!(src.contains(from), "{from}");
        let new = sqlsandbox::Policy::from_yaml(&src.replace(from, to), "new.yaml").unwrap();
        policydiff::diff(&old, &new).unwrap()
    };
    // Drafts no longer hidden from readers.
    let r = change(
        "                filter: \"status <> 'draft'\"\n                restrictive: true\n",
        "                filter: \"status <> 'draft'\"\n                restrictive: false\n",
    );
    assert!(r.has(Class::Widen), "{}", r.to_text());
    assert!(
        r.to_text().contains("user:rita") && r.to_text().contains("public.document"),
        "{}",
        r.to_text()
    );
    // A restrictive rule's condition changes: the change is shown, not
    // the same text on both sides.
    let r = change("filter: \"cid <> 44\"", "filter: \"cid <> 45\"");
    let text = r.to_text();
    assert!(r.has(Class::Widen), "{text}");
    assert!(
        text.contains("restrictive (not category 44: cid <> 44 from authors)")
            && text.contains("cid <> 45 from authors")
            && !text.contains("its question's SQL"),
        "{text}"
    );
    // Authors may no longer insert.
    let r = change("commands: [insert]\n", "commands: [select]\n");
    let text = r.to_text();
    assert!(text.contains("INSERT lost"), "{text}");
    // Authors may now delete what they file.
    let r = change("commands: [insert]\n", "commands: [insert, delete]\n");
    let text = r.to_text();
    assert!(
        r.has(Class::Widen) && text.contains("DELETE rules changed"),
        "{text}"
    );
}

/// A rotation started (a second secret accepted) and finished (the old
/// one dropped) are named as such, and neutral.
#[test]
fn api_key_rotation_is_named() {
    let dir = scratch("rotation");
    let base = std::fs::read_to_string(fixtures().join("base.yaml")).expect("base");
    let secret = "sk_0123456789abcdef0123456789abcdef0123456789";
    let rotated = sqlsandbox::apikey::rotate(&base, "base.yaml", "bot", secret)
        .expect("rotate")
        .text;
    let finished = sqlsandbox::apikey::finish_rotation(&rotated, "rotated.yaml", "bot")
        .expect("finish")
        .text;
    for (name, text) in [
        ("base.yaml", &base),
        ("rotated.yaml", &rotated),
        ("finished.yaml", &finished),
    ] {
        std::fs::write(dir.join(name), text).expect("write");
    }
    let (code, out, err) = run(
        &dir,
        &["diff", "base.yaml", "rotated.yaml", "--fail-on", "widen"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("neutral"), "{out}");
    assert!(
        out.contains("a new secret is accepted beside the old one (rotation started)"),
        "{out}"
    );
    let (code, out, err) = run(&dir, &["diff", "rotated.yaml", "finished.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("the previous secret is no longer accepted (rotation finished)"),
        "{out}"
    );
    let (_, out, _) = run(&dir, &["diff", "base.yaml", "finished.yaml"]);
    assert!(out.contains("secret (sha256) changed"), "{out}");
}
