//! Binding attribute values: coercion to the column type, and safe literals
//! or bind parameters.

use serde::Serialize;
use sqlparser::ast::{Expr, Value};

use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::ColumnType;
use crate::value::Scalar;

/// A bind parameter returned beside the SQL (in placeholder order).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BoundParam {
    /// The value, typed as JSON (integers as numbers, decimals as strings).
    pub value: Scalar,
    /// The column type it was coerced to, when known.
    #[serde(rename = "type")]
    pub ty: Option<ColumnType>,
    /// Where the value came from (for the rewrite cache, which binds
    /// another principal's values into a cached rewrite). Two parameters
    /// share a numbered placeholder only when they are equal, source
    /// included: the SQL's text never depends on whether two different
    /// attributes happen to hold equal values.
    #[serde(skip)]
    pub(crate) source: Source,
}

/// Where a bound value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) enum Source {
    /// The principal's attribute `target.attribute`: its single value
    /// (`None`) or the value at this position of its list.
    Attribute(String, Option<usize>),
    /// A value the caller gave for this call (a saved question's
    /// variable): not the principal's.
    Caller,
    /// A value of the policy (a mask's constant or hash key), or any value
    /// bound outside a rewrite.
    #[default]
    Fixed,
}

/// Prefix of the temporary placeholder text; renumbered when emitting.
pub(crate) const TEMP_PLACEHOLDER: &str = "\u{1}sqlsandbox:";

/// Turns attribute values into SQL expressions for one query.
pub(crate) struct Binder {
    pub dialect: Dialect,
    pub use_params: bool,
    pub params: Vec<BoundParam>,
}

/// Where a value goes, for error messages. `what` describes the place; it
/// is only called when there is an error to report.
pub(crate) struct Target<'t> {
    pub attribute: &'t str,
    pub what: &'t dyn Fn() -> String,
}

impl Source {
    /// The source of the `i`th of `value`'s values, for attribute `name`.
    pub fn attribute(name: &str, value: &crate::value::AttributeValue, i: usize) -> Source {
        match value {
            crate::value::AttributeValue::Single(_) => Source::Attribute(name.to_string(), None),
            crate::value::AttributeValue::Many(_) => Source::Attribute(name.to_string(), Some(i)),
        }
    }
}

impl Binder {
    pub fn new(dialect: Dialect, use_params: bool) -> Self {
        Binder {
            dialect,
            use_params,
            params: Vec::new(),
        }
    }

    /// Coerces one value and returns the expression standing for it.
    pub fn bind(&mut self, v: &Scalar, ty: Option<ColumnType>, target: &Target) -> Result<Expr> {
        self.bind_from(v, ty, target, Source::Fixed)
    }

    /// [`Binder::bind`] for a value that came from `source`.
    pub fn bind_from(
        &mut self,
        v: &Scalar,
        ty: Option<ColumnType>,
        target: &Target,
        source: Source,
    ) -> Result<Expr> {
        let coerced = coerce(v, ty, target)?;
        if self.use_params {
            if let Some(why) = self.dialect.no_bind_parameters() {
                return Err(Error::unsupported(format!("bind parameters: {why}")));
            }
            let n = self.params.len();
            self.params.push(BoundParam {
                value: coerced,
                ty,
                source,
            });
            return Ok(Expr::value(Value::Placeholder(format!(
                "{TEMP_PLACEHOLDER}{n}"
            ))));
        }
        Ok(match coerced {
            Scalar::Integer(i) => number(&i.to_string()),
            Scalar::Number(n) => number(&n),
            // T-SQL has no boolean literals: a BIT is 1 or 0.
            Scalar::Bool(b) if self.dialect == Dialect::Mssql => number(if b { "1" } else { "0" }),
            Scalar::Bool(b) => Expr::value(Value::Boolean(b)),
            Scalar::Text(s) => self.string_literal(&s)?,
        })
    }

    /// A string literal that prints, in this dialect, as exactly `s`.
    ///
    /// sqlparser's printer guesses whether quotes inside a string are already
    /// escaped, so the text is escaped here in a form that guess leaves
    /// alone: MySQL gets backslash escapes (`\'`, `\\`), PostgreSQL an
    /// `E'...'` literal whose printer escapes every quote and backslash, and
    /// SQLite/generic SQL (no backslash escapes) a concatenation of
    /// quote-free parts and `''''` literals when the value contains a quote.
    fn string_literal(&self, s: &str) -> Result<Expr> {
        let e = self.string_literal_unchecked(s)?;
        // Belt and braces: the printed literal must be exactly the escaped
        // text between quotes, or the value is refused.
        if let Expr::Value(v) = &e {
            if let Value::SingleQuotedString(r) = &v.value {
                if v.to_string() != format!("'{r}'") {
                    return Err(Error::unsupported(
                        "an attribute value that cannot be quoted unambiguously",
                    ));
                }
            }
        }
        Ok(e)
    }

    fn string_literal_unchecked(&self, s: &str) -> Result<Expr> {
        Ok(match self.dialect {
            Dialect::Mssql if s.contains("\\\n") || s.contains("\\\r\n") => {
                // SQL Server drops a backslash-newline pair inside a string
                // (line continuation): the value would change.
                return Err(Error::unsupported(
                    "on SQL Server, an attribute value with a backslash before a line break (SQL Server would remove both)",
                ));
            }
            Dialect::Mssql if !s.is_ascii() => {
                // Without N the text is converted to the database's code
                // page, and a character it lacks becomes `?`.
                Expr::value(Value::NationalStringLiteral(s.replace('\'', "''")))
            }
            Dialect::Redshift => {
                // Redshift reads backslash escapes in strings as PostgreSQL
                // 8 did (and sqlparser agrees), but a cluster may not:
                // doubled quotes and doubled backslashes are one literal
                // either way (at worst a value with a backslash matches
                // nothing), never a way out of the string.
                Expr::value(Value::SingleQuotedString(
                    s.replace('\\', "\\\\").replace('\'', "''"),
                ))
            }
            d if d.backslash_escapes() => {
                let mut r = String::with_capacity(s.len() + 2);
                for c in s.chars() {
                    match c {
                        '\\' => r.push_str("\\\\"),
                        '\'' => r.push_str("\\'"),
                        c => r.push(c),
                    }
                }
                Expr::value(Value::SingleQuotedString(r))
            }
            Dialect::Postgres => {
                if s.contains(['\'', '\\', '\n', '\r', '\t']) {
                    Expr::value(Value::EscapedStringLiteral(s.to_string()))
                } else {
                    Expr::value(Value::SingleQuotedString(s.to_string()))
                }
            }
            _ => {
                // No backslash escapes: doubling every quote is the whole
                // escape, and the printer leaves doubled quotes alone.
                Expr::value(Value::SingleQuotedString(s.replace('\'', "''")))
            }
        })
    }
}

/// A numeric literal as the parser reads it back: a negative number is a
/// unary minus applied to a positive one (so the re-parse check of the
/// printed SQL sees the same tree).
fn number(text: &str) -> Expr {
    match text.strip_prefix('-') {
        Some(abs) => Expr::UnaryOp {
            op: sqlparser::ast::UnaryOperator::Minus,
            expr: Box::new(Expr::value(Value::Number(abs.to_string(), false))),
        },
        None => Expr::value(Value::Number(text.to_string(), false)),
    }
}

/// Coerces a value to a column type; `None` keeps the value's own kind.
pub(crate) fn coerce(v: &Scalar, ty: Option<ColumnType>, target: &Target) -> Result<Scalar> {
    let bad = |ty: &str| Error::AttributeType {
        attribute: target.attribute.to_string(),
        value: match v {
            Scalar::Text(s) => format!("{:?}", truncate(s)),
            other => other.to_string(),
        },
        ty: ty.to_string(),
        target: (target.what)(),
    };
    if let Scalar::Text(s) = v {
        if s.contains('\0') {
            return Err(bad("string without NUL characters"));
        }
    }
    let Some(ty) = ty else {
        return Ok(v.clone());
    };
    let text = |v: &Scalar| -> Option<String> {
        match v {
            Scalar::Text(s) => Some(s.clone()),
            _ => None,
        }
    };
    Ok(match ty {
        ColumnType::Integer => match v {
            Scalar::Integer(i) => Scalar::Integer(*i),
            Scalar::Text(s) => Scalar::Integer(s.parse::<i64>().map_err(|_| bad("integer"))?),
            _ => return Err(bad("integer")),
        },
        ColumnType::Decimal => match v {
            Scalar::Integer(i) => Scalar::Integer(*i),
            Scalar::Number(n) if is_decimal(n) => Scalar::Number(n.clone()),
            Scalar::Text(s) if is_decimal(s) => Scalar::Number(s.clone()),
            _ => return Err(bad("decimal")),
        },
        ColumnType::Text => Scalar::Text(match v {
            Scalar::Text(s) => s.clone(),
            other => other.to_string(),
        }),
        ColumnType::Boolean => match v {
            Scalar::Bool(b) => Scalar::Bool(*b),
            Scalar::Text(s) if s.eq_ignore_ascii_case("true") => Scalar::Bool(true),
            Scalar::Text(s) if s.eq_ignore_ascii_case("false") => Scalar::Bool(false),
            _ => return Err(bad("boolean")),
        },
        ColumnType::Date => match text(v) {
            Some(s) if is_date(&s) => Scalar::Text(s),
            _ => return Err(bad("date (YYYY-MM-DD)")),
        },
        ColumnType::Timestamp => match text(v) {
            Some(s) if is_timestamp(&s) => Scalar::Text(s),
            // A date given for a timestamp means its midnight.
            Some(s) if is_date(&s) => Scalar::Text(format!("{s} 00:00:00")),
            _ => return Err(bad("timestamp (YYYY-MM-DD HH:MM:SS)")),
        },
        ColumnType::Uuid => match text(v) {
            Some(s) if is_uuid(&s) => Scalar::Text(s.to_lowercase()),
            _ => return Err(bad("uuid")),
        },
    })
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 64 {
        let t: String = s.chars().take(64).collect();
        format!("{t}…")
    } else {
        s.to_string()
    }
}

fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD`, a real calendar day.
pub(crate) fn is_date(s: &str) -> bool {
    let p: Vec<&str> = s.split('-').collect();
    let [y, m, d] = p.as_slice() else {
        return false;
    };
    let (Some(y), Some(m), Some(d)) = (digits(y, 4), digits(m, 2), digits(d, 2)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    y >= 1 && (1..=days).contains(&d)
}

fn is_timestamp(s: &str) -> bool {
    if s.len() < 16 || !s.is_char_boundary(10) {
        return false;
    }
    let (date, rest) = s.split_at(10);
    if !is_date(date) {
        return false;
    }
    let Some(time) = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('T')) else {
        return false;
    };
    // Split off a zone: Z or ±HH[:MM].
    let (clock, zone) = if let Some(t) = time.strip_suffix('Z') {
        (t, "")
    } else if let Some((c, z)) = time.rsplit_once(['+', '-']) {
        (c, z)
    } else {
        (time, "")
    };
    let zone_ok = zone.is_empty() || {
        let z: Vec<&str> = zone.split(':').collect();
        match z.as_slice() {
            [h] => digits(h, 2).is_some_and(|h| h <= 14) || digits(h, 4).is_some(),
            [h, m] => digits(h, 2).is_some_and(|h| h <= 14) && digits(m, 2).is_some_and(|m| m < 60),
            _ => false,
        }
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let clock_ok = match parts.as_slice() {
        [h, m] => digits(h, 2).is_some_and(|h| h < 24) && digits(m, 2).is_some_and(|m| m < 60),
        [h, m, sec] => {
            digits(h, 2).is_some_and(|h| h < 24)
                && digits(m, 2).is_some_and(|m| m < 60)
                && digits(sec, 2).is_some_and(|s| s < 61)
        }
        _ => false,
    };
    let frac_ok =
        frac.is_none_or(|f| !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()));
    clock_ok && frac_ok && zone_ok
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(is_date("2024-02-29"));
        assert!(!is_date("2023-02-29"));
        assert!(!is_date("2023-13-01"));
        assert!(is_timestamp("2024-01-01 10:00:00"));
        assert!(is_timestamp("2024-01-01T10:00:00.123Z"));
        assert!(is_timestamp("2024-01-01 10:00:00+02:00"));
        assert!(!is_timestamp("2024-01-01 25:00:00"));
        assert!(!is_timestamp("2024-01-01; DROP"));
        let target = Target {
            attribute: "since",
            what: &|| "test".to_string(),
        };
        let ts = |s: &str| {
            coerce(
                &Scalar::Text(s.into()),
                Some(ColumnType::Timestamp),
                &target,
            )
        };
        assert_eq!(
            ts("2024-01-01").unwrap(),
            Scalar::Text("2024-01-01 00:00:00".into())
        );
        assert!(ts("2024-02-30").is_err());
        assert!(ts("2024-01-01 ").is_err());
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400g"));
        assert!(is_decimal("-12.50"));
        assert!(!is_decimal("1e5"));
        assert!(!is_decimal("1."));
    }
}
