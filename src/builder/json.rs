//! JSON nodes that know their path, so every error names the node it is
//! about (`$.query.filter[1][1]`).

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A JSON value and its JSONPath from the question's root.
#[derive(Debug, Clone)]
pub(super) struct Node<'a> {
    pub v: &'a Value,
    pub path: String,
}

/// `key` as a JSONPath step: `.key` for plain keys (MBQL's hyphenated keys
/// included), `['odd key']` otherwise.
fn step(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!(".{key}")
    } else {
        format!("['{}']", key.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// A short description of a JSON value for error messages.
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => "a long string".into(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

impl<'a> Node<'a> {
    /// The question itself, at `$`.
    pub fn root(v: &'a Value) -> Self {
        Node {
            v,
            path: "$".into(),
        }
    }

    /// An SB104 error about this node.
    pub fn err(&self, message: impl Into<String>) -> Error {
        Error::Builder {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// The member `key` of an object node.
    pub fn key(&self, key: &str) -> Option<Node<'a>> {
        self.v.as_object()?.get(key).map(|v| Node {
            v,
            path: format!("{}{}", self.path, step(key)),
        })
    }

    /// Element `i` of an array node.
    #[cfg(test)]
    pub fn index(&self, i: usize) -> Option<Node<'a>> {
        self.v.as_array()?.get(i).map(|v| Node {
            v,
            path: format!("{}[{i}]", self.path),
        })
    }

    /// The object's map, or an error saying what was expected.
    pub fn object(&self, what: &str) -> Result<&'a Map<String, Value>> {
        self.v.as_object().ok_or_else(|| {
            self.err(format!(
                "{what} must be an object, not {}",
                describe(self.v)
            ))
        })
    }

    /// The object's members in key order, each with its path.
    pub fn entries(&self, what: &str) -> Result<Vec<(&'a str, Node<'a>)>> {
        let map = self.object(what)?;
        Ok(map
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    Node {
                        v,
                        path: format!("{}{}", self.path, step(k)),
                    },
                )
            })
            .collect())
    }

    /// The array's elements, each with its path.
    pub fn items(&self, what: &str) -> Result<Vec<Node<'a>>> {
        let arr = self.v.as_array().ok_or_else(|| {
            self.err(format!("{what} must be an array, not {}", describe(self.v)))
        })?;
        Ok(arr
            .iter()
            .enumerate()
            .map(|(i, v)| Node {
                v,
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    /// The string value.
    pub fn str(&self, what: &str) -> Result<&'a str> {
        self.v
            .as_str()
            .ok_or_else(|| self.err(format!("{what} must be a string, not {}", describe(self.v))))
    }

    /// The value as a whole number.
    pub fn int(&self, what: &str) -> Result<i64> {
        self.v.as_i64().ok_or_else(|| {
            self.err(format!(
                "{what} must be a whole number, not {}",
                describe(self.v)
            ))
        })
    }

    /// The boolean value.
    pub fn bool(&self, what: &str) -> Result<bool> {
        self.v.as_bool().ok_or_else(|| {
            self.err(format!(
                "{what} must be true or false, not {}",
                describe(self.v)
            ))
        })
    }

    /// Fails on a member not in `allowed` (a misspelt key is an error, not
    /// silently ignored).
    pub fn allow_keys(&self, allowed: &[&str], what: &str) -> Result<()> {
        for (k, n) in self.entries(what)? {
            if !allowed.contains(&k) {
                return Err(n.err(format!(
                    "unknown key `{k}` in {what} (expected one of: {})",
                    allowed.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// A clause `["op", arg, …]`: its operator and argument nodes, or None
    /// when the node is not an array starting with a string.
    pub fn clause(&self) -> Option<(&'a str, Vec<Node<'a>>)> {
        let arr = self.v.as_array()?;
        let op = arr.first()?.as_str()?;
        let args = arr
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, v)| Node {
                v,
                path: format!("{}[{i}]", self.path),
            })
            .collect();
        Some((op, args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let v = serde_json::json!({"query": {"filter": ["and", ["=", 1, 2]], "my key": 1}});
        let root = Node::root(&v);
        let q = root.key("query").unwrap();
        let f = q.key("filter").unwrap();
        let (_, args) = f.clause().unwrap();
        assert_eq!(args[0].path, "$.query.filter[1]");
        assert_eq!(args[0].index(1).unwrap().path, "$.query.filter[1][1]");
        assert_eq!(q.key("my key").unwrap().path, "$.query['my key']");
    }
}
