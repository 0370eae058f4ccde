//! The YAML reader (policies, `*.test.yaml`, YAML builder questions)
//! against damaged text: documents generated to mix block and flow
//! collections, every scalar style, escapes, comments, anchors, aliases
//! and tags, then damaged (characters that matter to YAML inserted, text
//! cut out). Policies and builder questions come from outside; the
//! reader must answer each with a value or an error, never a panic. (A
//! panic fails the case; proptest shrinks it to the smallest text.)

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// 3,000 cases, or `YAML_CASES`.
fn runner() -> TestRunner {
    let cases = std::env::var("YAML_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_local_rejects: u32::MAX,
        ..Config::default()
    })
}

/// Reads `src` as a builder question (the whole document, into JSON) and
/// as a policy; either may refuse it.
fn read(src: &str) -> Result<(), TestCaseError> {
    let _ = sqlsandbox::builder::parse_question_yaml(src);
    let _ = sqlsandbox::Policy::from_yaml(src, "damaged.yaml");
    Ok(())
}

#[test]
fn generated_documents_read() {
    let mut runner = runner();
    let result = runner.run(&(node(), prop()), |(n, p)| {
        let src = document(&n, &p);
        // Valid YAML (aliases aside, which may name no anchor): the
        // question reader reads it, or refuses it for what it refuses in
        // every document (tags, repeated keys, aliases).
        match sqlsandbox::builder::parse_question_yaml(&src) {
            Ok(_) => Ok(()),
            Err(e) => {
                let m = e.to_string();
                let known = [
                    "YAML tags",
                    "not a valid !!",
                    "duplicate key",
                    "alias",
                    "anchor",
                ]
                .iter()
                .any(|k| m.contains(k));
                if known {
                    Ok(())
                } else {
                    Err(TestCaseError::fail(format!("{src:?}: {m}")))
                }
            }
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---- Generated documents. ----

#[derive(Debug, Clone)]
enum Scalar {
    Plain(String),
    Single(String),
    Double(String),
}

#[derive(Debug, Clone)]
enum Node {
    Scalar(Scalar),
    Alias(u8),
    FlowSeq(Vec<Node>),
    FlowMap(Vec<(Scalar, Node)>),
    BlockSeq(Vec<Node>),
    BlockMap(Vec<(Scalar, Node)>),
    /// Literal (`|`) or folded (`>`), chomping (`-`, `+` or none), lines.
    BlockText(char, &'static str, Vec<String>),
}

/// A node with its properties.
#[derive(Debug, Clone)]
struct Prop {
    anchor: Option<u8>,
    tag: Option<&'static str>,
    comment: bool,
}

fn plain() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_]{0,6}",
        Just("true".to_string()),
        Just("~".to_string()),
        Just("-12".to_string()),
        Just("0x1F".to_string()),
        Just("1.5e3".to_string()),
        Just("007".to_string()),
        "[a-z]{1,3} [a-z]{1,3}",
        "[a-z]{1,3}-[a-z]{1,3}",
        "[a-z]{1,3}:[a-z]{1,3}",
        "[a-z]{1,3}#[a-z]{1,3}",
        Just("é".to_string()),
    ]
}

fn quoted_text() -> impl Strategy<Value = String> {
    "[a-z '\"\\\\:#,\\[\\]{}é\t-]{0,8}"
}

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        4 => plain().prop_map(Scalar::Plain),
        1 => quoted_text().prop_map(Scalar::Single),
        1 => quoted_text().prop_map(Scalar::Double),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        6 => scalar().prop_map(Node::Scalar),
        1 => (0u8..3).prop_map(Node::Alias),
        1 => (
            prop_oneof![Just('|'), Just('>')],
            prop_oneof![Just(""), Just("-"), Just("+")],
            prop::collection::vec("([a-z][a-z ]{0,5})?", 1..4)
        )
            .prop_map(|(kind, chomp, lines)| Node::BlockText(kind, chomp, lines)),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        let flow = inner.clone().prop_filter("flow content", is_flow);
        prop_oneof![
            prop::collection::vec(flow.clone(), 0..4).prop_map(Node::FlowSeq),
            prop::collection::vec((scalar(), flow), 0..4).prop_map(Node::FlowMap),
            prop::collection::vec(inner.clone(), 1..4).prop_map(Node::BlockSeq),
            prop::collection::vec((scalar(), inner), 1..4).prop_map(Node::BlockMap),
        ]
    })
}

fn is_flow(n: &Node) -> bool {
    match n {
        Node::Scalar(_) | Node::Alias(_) => true,
        Node::FlowSeq(items) => items.iter().all(is_flow),
        Node::FlowMap(entries) => entries.iter().all(|(_, v)| is_flow(v)),
        Node::BlockSeq(_) | Node::BlockMap(_) | Node::BlockText(..) => false,
    }
}

fn prop() -> impl Strategy<Value = Prop> {
    (
        prop_oneof![4 => Just(None), 1 => (0u8..3).prop_map(Some)],
        prop_oneof![
            6 => Just(None),
            1 => Just(Some("!!str")),
            1 => Just(Some("!!int")),
            1 => Just(Some("!local")),
        ],
        prop::bool::weighted(0.2),
    )
        .prop_map(|(anchor, tag, comment)| Prop {
            anchor,
            tag,
            comment,
        })
}

fn scalar_text(s: &Scalar) -> String {
    match s {
        Scalar::Plain(p) => p.clone(),
        Scalar::Single(t) => format!("'{}'", t.replace('\'', "''")),
        Scalar::Double(t) => format!(
            "\"{}\"",
            t.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\t', "\\t")
        ),
    }
}

/// The node's properties, as a prefix (`&a1 !!str `).
fn props(p: &Prop) -> String {
    let mut out = String::new();
    if let Some(a) = p.anchor {
        out.push_str(&format!("&a{a} "));
    }
    if let Some(t) = p.tag {
        out.push_str(t);
        out.push(' ');
    }
    out
}

fn flow(n: &Node) -> String {
    match n {
        Node::Scalar(s) => scalar_text(s),
        Node::Alias(a) => format!("*a{a}"),
        Node::FlowSeq(items) => format!(
            "[{}]",
            items.iter().map(flow).collect::<Vec<_>>().join(", ")
        ),
        Node::FlowMap(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("{}: {}", scalar_text(k), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Node::BlockSeq(_) | Node::BlockMap(_) | Node::BlockText(..) => {
            unreachable!("flow content only")
        }
    }
}

/// Writes `n` as the value after a `key:` or `-` at `indent`; `p` are its
/// properties (only on scalars and flow collections, where they are
/// unambiguous on one line, and on block collections after the
/// indicator).
fn value(n: &Node, p: &Prop, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent + 2);
    let comment = if p.comment { " # note" } else { "" };
    match n {
        Node::Alias(_) => {
            // An alias takes no properties.
            out.push_str(&format!(" {}{comment}\n", flow(n)));
        }
        Node::Scalar(_) | Node::FlowSeq(_) | Node::FlowMap(_) => {
            out.push_str(&format!(" {}{}{comment}\n", props(p), flow(n)));
        }
        Node::BlockText(kind, chomp, lines) => {
            out.push_str(&format!(" {}{kind}{chomp}{comment}\n", props(p)));
            for line in lines {
                let line = line.trim_end();
                if line.is_empty() {
                    out.push('\n');
                } else {
                    out.push_str(&format!("{pad}{line}\n"));
                }
            }
        }
        Node::BlockSeq(items) => {
            let pr = props(p);
            out.push_str(&format!(" {}{comment}\n", pr.trim_end()));
            block_seq(items, indent + 2, out);
        }
        Node::BlockMap(entries) => {
            let pr = props(p);
            out.push_str(&format!(" {}{comment}\n", pr.trim_end()));
            block_map(entries, indent + 2, out);
        }
    }
}

fn block_seq(items: &[Node], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (i, item) in items.iter().enumerate() {
        out.push_str(&format!("{pad}-"));
        let p = Prop {
            anchor: None,
            tag: None,
            comment: i % 2 == 1,
        };
        value(item, &p, indent, out);
    }
}

fn block_map(entries: &[(Scalar, Node)], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (i, (k, v)) in entries.iter().enumerate() {
        out.push_str(&format!("{pad}{}:", scalar_text(k)));
        let p = Prop {
            anchor: if i == 0 { Some(i as u8) } else { None },
            tag: None,
            comment: false,
        };
        value(v, &p, indent, out);
    }
}

fn document(n: &Node, p: &Prop) -> String {
    let mut out = String::new();
    match n {
        Node::BlockSeq(items) => block_seq(items, 0, &mut out),
        Node::BlockMap(entries) => block_map(entries, 0, &mut out),
        other => {
            out.push_str("root:");
            value(other, p, 0, &mut out);
        }
    }
    out
}

#[test]
fn damaged_documents_never_panic_the_reader() {
    let mut runner = runner();
    let edit = prop_oneof![
        (
            any::<prop::sample::Index>(),
            prop::sample::select(vec![
                "-", "- ", ":", ": ", "\n", "\n  ", "\t", "#", "&", "*", "!", "!!", "|", ">", "'",
                "\"", "\\", "[", "]", "{", "}", ",", "?", "%", "@", "`", "---", "...", "\r",
                "\u{feff}", "\u{0}", "é",
            ])
        )
            .prop_map(|(at, text)| (at, Some(text))),
        any::<prop::sample::Index>().prop_map(|at| (at, None)),
    ];
    let result = runner.run(
        &(node(), prop(), prop::collection::vec(edit, 1..6)),
        |(n, p, edits)| {
            let mut src = document(&n, &p);
            for (at, insert) in edits {
                let chars: Vec<char> = src.chars().collect();
                let i = at.index(chars.len() + 1);
                let mut out: String = chars.iter().take(i).collect();
                match insert {
                    Some(text) => {
                        out.push_str(text);
                        out.extend(chars.iter().skip(i));
                    }
                    // Cut up to four characters.
                    None => out.extend(chars.iter().skip(i + 4)),
                }
                src = out;
            }
            read(&src)
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
