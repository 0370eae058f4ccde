//! The README's examples are run and their printed output compared, so the
//! README cannot drift from what a fresh clone prints.
//!
//! Every fenced block tagged `console` is a transcript: lines starting with
//! `$ ` are commands (a trailing `\` continues one), the lines up to the next
//! command are what it prints (standard output, then standard error). Each
//! command runs through `sh` in the repository root with the built binary
//! first on `PATH`; `cargo run -q --` stands for that binary, so the quick
//! start's commands are checked as written. An output line ending in `…`
//! matches any line starting with the rest.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One command of a transcript and what it must print.
struct Example {
    line: usize,
    command: String,
    expected: String,
}

/// The `console` blocks of a Markdown file, as commands with their output.
fn transcripts(markdown: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut in_console = false;
    let mut in_other = false;
    let mut current: Option<Example> = None;
    let mut continued = false;
    let flush = |current: &mut Option<Example>, out: &mut Vec<Example>| {
        if let Some(mut e) = current.take() {
            while e.expected.ends_with('\n') {
                e.expected.pop();
            }
            out.push(e);
        }
    };
    for (i, line) in markdown.lines().enumerate() {
        if let Some(tag) = line.strip_prefix("```") {
            if in_console {
                flush(&mut current, &mut out);
                in_console = false;
            } else if in_other {
                in_other = false;
            } else if tag.trim() == "console" {
                in_console = true;
            } else {
                in_other = true;
            }
            continue;
        }
        if !in_console {
            continue;
        }
        if continued {
            let e = current.as_mut().expect("a continued command");
            let body = line.trim_end();
            continued = body.ends_with('\\');
            e.command.push(' ');
            e.command.push_str(body.trim_end_matches('\\').trim());
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            flush(&mut current, &mut out);
            continued = cmd.trim_end().ends_with('\\');
            current = Some(Example {
                line: i + 1,
                command: cmd.trim_end().trim_end_matches('\\').trim().to_string(),
                expected: String::new(),
            });
        } else if let Some(e) = current.as_mut() {
            e.expected.push_str(line.trim_end());
            e.expected.push('\n');
        } else {
            panic!(
                "README line {}: console output before any `$ ` command",
                i + 1
            );
        }
    }
    out
}

fn run(example: &Example, bin_dir: &Path) -> String {
    let command = example.command.replace("cargo run -q -- ", "sqlsandbox ");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(root())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("SQLSANDBOX_POLICY")
        .env_remove("SQLSANDBOX_HASH_KEY")
        .output()
        .expect("run sh");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end_matches('\n')
        .to_string()
}

/// Line by line; an expected line ending in `…` stands for any line that
/// starts with the rest (for values that change with every edit of a
/// policy, such as fingerprints).
fn matches(expected: &str, got: &str) -> bool {
    let (e, g): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), got.lines().collect());
    e.len() == g.len()
        && e.iter().zip(&g).all(|(e, g)| match e.strip_suffix('…') {
            Some(prefix) => g.starts_with(prefix),
            None => e == g,
        })
}

#[test]
fn readme_transcripts_print_what_the_readme_says() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let examples = transcripts(&readme);
    assert!(
        examples.len() >= 8,
        "only {} console examples found in README.md",
        examples.len()
    );
    // The quick start's first command is among them.
    assert!(
        examples
            .iter()
            .any(|e| e.command.starts_with("cargo run -q -- rewrite")),
        "the quick start's rewrite is not checked"
    );
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_sqlsandbox"));
    let bin_dir = bin.parent().expect("binary directory");
    let mut failures = Vec::new();
    for e in &examples {
        let got = run(e, bin_dir);
        if !matches(&e.expected, &got) {
            failures.push(format!(
                "README.md:{}: `{}`\n--- README says\n{}\n--- it prints\n{}\n",
                e.line, e.command, e.expected, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} README examples print something else:\n\n{}",
        failures.len(),
        examples.len(),
        failures.join("\n")
    );
}

#[test]
fn ellipsis_matches_the_rest_of_a_line_only() {
    assert!(matches("a\nfingerprint: …", "a\nfingerprint: 12ab"));
    assert!(!matches("a\nfingerprint: …", "a\nprint: 12ab"));
    assert!(!matches("a\nb", "a\nb\nc"));
    assert!(!matches("a …", "b"));
}

#[test]
fn transcript_parser_reads_commands_continuations_and_output() {
    let md = "text\n```console\n$ echo a \\\n  b\na b\n$ true\n```\n```sh\n$ not run\n```\n";
    let t = transcripts(md);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].command, "echo a b");
    assert_eq!(t[0].expected, "a b");
    assert_eq!(t[1].command, "true");
    assert_eq!(t[1].expected, "");
}
