//! Reading input documents (claims, query-builder questions): one leading
//! byte-order mark dropped, size and nesting checked by a byte scan before
//! any parser runs, and repeated keys refused.
//!
//! serde_json keeps the last of two equal keys silently, so `{"tenant": 1,
//! "tenant": 2}` would bind tenant 2; every JSON input is read through
//! [`parse_json`] instead, which refuses it.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// Longest input document accepted, in bytes (as `Options::max_sql_bytes`).
pub(crate) const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Deepest bracket nesting accepted in an input document. serde_json stops
/// at 128; a YAML parser slows down quadratically with flow nesting, so the
/// limit is checked before either runs.
pub(crate) const MAX_DOCUMENT_DEPTH: usize = 100;

/// The text without one leading byte-order mark (an editor's artefact).
pub(crate) fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{FEFF}').unwrap_or(text)
}

/// Which syntax [`check_shape`] scans.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    Json,
    Yaml,
}

/// Refuses a document over [`MAX_DOCUMENT_BYTES`] or nested deeper than
/// [`MAX_DOCUMENT_DEPTH`] brackets, in one linear pass over the bytes.
///
/// Brackets inside quoted strings (and YAML comments) do not count. For
/// YAML, a quote only opens a string where a scalar can start (after
/// whitespace, an indicator or at a line start); any doubt counts a bracket
/// as nesting, so the scan never finds less nesting than the parser would.
pub(crate) fn check_shape(text: &str, syntax: Syntax, what: &str) -> Result<()> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::Limit(format!(
            "the {what} is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
            text.len()
        )));
    }
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    // The byte before the current one, outside strings (b'\n' at the start).
    let mut prev = b'\n';
    while let Some(&b) = bytes.get(i) {
        let scalar_start = syntax == Syntax::Json
            || matches!(
                prev,
                b' ' | b'\t' | b'\n' | b'\r' | b'[' | b'{' | b',' | b':'
            );
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DOCUMENT_DEPTH {
                    return Err(Error::Limit(format!(
                        "the {what} nests deeper than {MAX_DOCUMENT_DEPTH} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'"' if scalar_start => {
                // A double-quoted string: backslash escapes in both syntaxes.
                i += 1;
                while let Some(&c) = bytes.get(i).filter(|c| **c != b'"') {
                    i += if c == b'\\' { 2 } else { 1 };
                }
            }
            b'\'' if syntax == Syntax::Yaml && scalar_start => {
                // A single-quoted YAML string: `''` is an escaped quote,
                // which this loop reads as two adjacent strings.
                i += 1;
                while bytes.get(i).is_some_and(|c| *c != b'\'') {
                    i += 1;
                }
            }
            b'#' if syntax == Syntax::Yaml && matches!(prev, b' ' | b'\t' | b'\n' | b'\r') => {
                while bytes.get(i).is_some_and(|c| *c != b'\n') {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        prev = b;
        i += 1;
    }
    Ok(())
}

/// Parses JSON text (after one leading BOM) into a value, refusing a
/// repeated key in any object, and a document over the size limit or
/// nested too deep ([`Error::Limit`]). `what` names the document in limit
/// errors; `syntax_error` turns serde_json's message (with line and column)
/// into the caller's error.
pub(crate) fn parse_json(
    text: &str,
    what: &str,
    syntax_error: impl FnOnce(String) -> Error,
) -> Result<Value> {
    let text = strip_bom(text);
    check_shape(text, Syntax::Json, what)?;
    serde_json::from_str::<Strict>(text)
        .map(|s| s.0)
        .map_err(|e| syntax_error(e.to_string()))
}

/// A JSON value whose objects had no repeated key.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Strict, E> {
        Ok(Strict(
            Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Strict, E> {
        Ok(Strict(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> std::result::Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_none<E>(self) -> std::result::Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Strict, D::Error> {
        Strict::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Strict, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Strict, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Strict(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<Value> {
        parse_json(text, "test", Error::Verification)
    }

    fn limit(r: Result<()>) -> String {
        match r {
            Err(Error::Limit(m)) => m,
            other => panic!("expected a limit error, got {other:?}"),
        }
    }

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        let e = json(r#"{"tenant": 1, "tenant": 2}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate key `tenant`"), "{e}");
        let e = json(r#"{"a": [{"b": {"c": 1, "c": 1}}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate key `c`"), "{e}");
        // Escapes that spell the same key are the same key.
        let e = json(r#"{"a": 1, "\u0061": 2}"#).unwrap_err().to_string();
        assert!(e.contains("duplicate key `a`"), "{e}");
        let v = json("\u{FEFF}{\"a\": [1, 2.5, \"x\", null, true]}").unwrap();
        assert_eq!(v, serde_json::json!({"a": [1, 2.5, "x", null, true]}));
    }

    #[test]
    fn nesting_is_counted_outside_strings() {
        let deep = format!("{}{}", "[".repeat(101), "]".repeat(101));
        assert!(matches!(json(&deep), Err(Error::Limit(m)) if m.contains("nests deeper")));
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(json(&ok).is_ok());
        // Brackets in strings do not nest; an escaped quote does not end one.
        let s = format!("[\"\\\"{}\"]", "[".repeat(500));
        assert!(json(&s).is_ok(), "{s}");
        // Closing brackets in a YAML string cannot hide real nesting.
        let y = "[ ']',".repeat(101);
        limit(check_shape(&y, Syntax::Yaml, "test"));
        let y = "[ \"]\",".repeat(101);
        limit(check_shape(&y, Syntax::Yaml, "test"));
        // Comments and apostrophes inside plain scalars are not strings.
        let y = "# [[[[[[[[[[[[[[\nquery: {a: it's [1]}\n".repeat(200);
        assert!(check_shape(&y, Syntax::Yaml, "test").is_ok());
        let big = " ".repeat(MAX_DOCUMENT_BYTES + 1);
        assert!(limit(check_shape(&big, Syntax::Json, "test")).contains("bytes"));
    }
}
