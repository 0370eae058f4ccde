//! Attribute values: what a principal's attributes hold and what the policy
//! binds into sandboxes. Below both `policy` and `principal`, so that
//! neither depends on the other for it.

use std::fmt;

use serde::Serialize;

/// One attribute value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Scalar {
    /// Text.
    Text(String),
    /// A whole number.
    Integer(i64),
    /// Any other number, kept as its decimal text.
    Number(String),
    /// A boolean.
    Bool(bool),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Text(s) => write!(f, "{s:?}"),
            Scalar::Integer(i) => write!(f, "{i}"),
            Scalar::Number(n) => f.write_str(n),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl From<i64> for Scalar {
    fn from(v: i64) -> Self {
        Scalar::Integer(v)
    }
}

impl From<i32> for Scalar {
    fn from(v: i32) -> Self {
        Scalar::Integer(v.into())
    }
}

impl From<bool> for Scalar {
    fn from(v: bool) -> Self {
        Scalar::Bool(v)
    }
}

impl From<&str> for Scalar {
    fn from(v: &str) -> Self {
        Scalar::Text(v.to_string())
    }
}

impl From<String> for Scalar {
    fn from(v: String) -> Self {
        Scalar::Text(v)
    }
}

/// A user attribute: one value or several (a multi-valued attribute becomes
/// `IN (...)`; an empty list matches no rows).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// One value.
    Single(Scalar),
    /// Several values.
    Many(Vec<Scalar>),
}

impl AttributeValue {
    /// Converts a YAML value; `None` for maps, nulls and nested lists.
    /// Crate-internal, so that the YAML reader stays out of the public
    /// API: callers convert with [`AttributeValue::from_json`] or `From`.
    pub(crate) fn from_yaml(v: &crate::yaml::Value) -> Option<AttributeValue> {
        AttributeValue::from_yaml_owned(v.clone())
    }

    /// [`AttributeValue::from_yaml`], taking the value (its text moves).
    pub(crate) fn from_yaml_owned(v: crate::yaml::Value) -> Option<AttributeValue> {
        match v {
            crate::yaml::Value::Sequence(items) => items
                .into_iter()
                .map(scalar_from_yaml)
                .collect::<Option<Vec<_>>>()
                .map(AttributeValue::Many),
            other => scalar_from_yaml(other).map(AttributeValue::Single),
        }
    }

    /// Converts a JSON value; `None` for objects, nulls and nested arrays.
    pub fn from_json(v: &serde_json::Value) -> Option<AttributeValue> {
        match v {
            serde_json::Value::Array(items) => items
                .iter()
                .map(scalar_from_json)
                .collect::<Option<Vec<_>>>()
                .map(AttributeValue::Many),
            other => scalar_from_json(other).map(AttributeValue::Single),
        }
    }

    /// A plain text value (as given with `--attr k=v`).
    pub fn text(s: impl Into<String>) -> AttributeValue {
        AttributeValue::Single(Scalar::Text(s.into()))
    }

    /// The values as a slice-like list.
    pub fn values(&self) -> Vec<&Scalar> {
        match self {
            AttributeValue::Single(s) => vec![s],
            AttributeValue::Many(v) => v.iter().collect(),
        }
    }
}

/// One value, from anything a [`Scalar`] converts from.
///
/// ```
/// use sqlsandbox::{AttributeValue, Scalar};
/// assert_eq!(AttributeValue::from(7), AttributeValue::Single(Scalar::Integer(7)));
/// assert_eq!(AttributeValue::from("emea"), AttributeValue::text("emea"));
/// assert_eq!(AttributeValue::from(vec![1, 2]).values().len(), 2);
/// ```
impl<T: Into<Scalar>> From<T> for AttributeValue {
    fn from(v: T) -> Self {
        AttributeValue::Single(v.into())
    }
}

/// Several values (a multi-valued attribute: `IN (…)`).
impl<T: Into<Scalar>> From<Vec<T>> for AttributeValue {
    fn from(v: Vec<T>) -> Self {
        AttributeValue::Many(v.into_iter().map(Into::into).collect())
    }
}

impl fmt::Display for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeValue::Single(s) => s.fmt(f),
            AttributeValue::Many(v) => {
                f.write_str("[")?;
                for (i, s) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    s.fmt(f)?;
                }
                f.write_str("]")
            }
        }
    }
}

impl Scalar {
    /// A whole number read as unsigned: an integer where it fits in i64,
    /// else kept as its text (never rounded).
    pub(crate) fn from_u64(u: u64) -> Scalar {
        i64::try_from(u).map_or_else(|_| Scalar::Number(u.to_string()), Scalar::Integer)
    }

    /// A decimal number, kept as its text; `None` for an infinity or NaN.
    pub(crate) fn from_f64(f: f64) -> Option<Scalar> {
        f.is_finite().then(|| Scalar::Number(f.to_string()))
    }
}

fn scalar_from_yaml(v: crate::yaml::Value) -> Option<Scalar> {
    use crate::yaml::Value;
    match v {
        Value::String(s) => Some(Scalar::Text(s)),
        Value::Bool(b) => Some(Scalar::Bool(b)),
        Value::Int(i) => Some(Scalar::Integer(i)),
        Value::UInt(u) => Some(Scalar::from_u64(u)),
        Value::Float(f) => Scalar::from_f64(f),
        _ => None,
    }
}

fn scalar_from_json(v: &serde_json::Value) -> Option<Scalar> {
    match v {
        serde_json::Value::String(s) => Some(Scalar::Text(s.clone())),
        serde_json::Value::Bool(b) => Some(Scalar::Bool(*b)),
        serde_json::Value::Number(n) => Some(match n.as_i64() {
            Some(i) => Scalar::Integer(i),
            None => Scalar::Number(n.to_string()),
        }),
        _ => None,
    }
}
