//! Column masks: the kinds, and the SQL each one is in each dialect.
//!
//! A mask is computed inside the sandbox subquery (`SELECT id, <mask> AS
//! email, … FROM t WHERE …`), so every clause of the query — WHERE, JOIN,
//! GROUP BY, ORDER BY, aggregates, window functions, whole-row references,
//! set operations — sees the masked value and never the stored one. The
//! expressions are parsed once, when the policy loads, from fixed
//! templates: the column is put in as an identifier and a constant or a
//! hash key as a marker the binder replaces (a literal escaped for the
//! dialect, or a bind parameter), never as text.

use std::fmt;
use std::sync::Arc;

use sqlparser::ast::{Expr, Ident, VisitMut, VisitorMut};

use super::{ColumnType, Rule, TableKey};
use crate::dialect::Dialect;
use crate::value::Scalar;

/// The identifier standing for a mask's constant or hash key in its
/// template, replaced by the bound value when the sandbox is built.
pub(crate) const VALUE_MARKER: &str = "__sqlsandbox_mask_value__";
/// The identifier standing for the column in a template.
const COLUMN_MARKER: &str = "__sqlsandbox_mask_column__";

/// What a mask does to a column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum MaskKind {
    /// Every value becomes NULL.
    Null,
    /// Every value, NULL included, becomes this constant (as written).
    Constant(String),
    /// A keyed SHA-256 of the value's text, as lower-case hex.
    Hash,
    /// The first N characters, then `***`.
    First(u32),
    /// `***`, then the last N characters.
    Last(u32),
    /// `***@` and the domain (after the last `@`); `***` without an `@`.
    Email,
    /// A date or timestamp truncated to the start of its year, month, day,
    /// hour or minute.
    Truncate(String),
    /// A number rounded down to a multiple of the size (as written).
    Bucket(String),
    /// The policy's own SQL expression (as written).
    Expression(String),
}

impl fmt::Display for MaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskKind::Null => f.write_str("null"),
            MaskKind::Constant(v) => write!(f, "constant {v}"),
            MaskKind::Hash => f.write_str("hash"),
            MaskKind::First(n) => write!(f, "first {n}"),
            MaskKind::Last(n) => write!(f, "last {n}"),
            MaskKind::Email => f.write_str("email"),
            MaskKind::Truncate(u) => write!(f, "truncate to {u}"),
            MaskKind::Bucket(s) => write!(f, "bucket of {s}"),
            MaskKind::Expression(e) => write!(f, "expression {}", e.trim()),
        }
    }
}

/// A group's mask on one column of one table.
#[derive(Debug, PartialEq)]
pub struct Mask {
    /// The group whose grant it is.
    pub group: String,
    /// The table.
    pub table: TableKey,
    /// The column (normalised name).
    pub column: String,
    /// What it does.
    pub kind: MaskKind,
    /// The type of the masked values (the column's unless the mask
    /// changes it: `hash` gives text).
    pub ty: ColumnType,
    /// A built-in kind's expression, the column in place and the value
    /// (if any) as [`VALUE_MARKER`].
    pub(crate) expr: Expr,
    /// The constant or hash key bound for [`VALUE_MARKER`], with its type.
    pub(crate) value: Option<(Scalar, ColumnType)>,
    /// `expression:`: compiled as a rule (columns checked, attributes
    /// typed, functions held to the allow-list).
    pub(crate) custom: Option<Arc<Rule>>,
    /// Shown unmasked on the rows where this holds.
    pub unless: Option<Arc<Rule>>,
    /// A hash key written in the policy file (`key:`, not `key_env:`).
    pub(crate) key_in_file: bool,
}

impl Mask {
    /// `column: kind [unless …]`, for explanations and conflicts.
    pub fn describe(&self) -> String {
        let mut out = format!("{}: {}", self.column, self.kind);
        if let Some(u) = &self.unless {
            out.push_str(&format!(" unless {}", u.filter.trim()));
        }
        out
    }

    /// The rules it holds (its `unless` and `expression`).
    pub(crate) fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.unless.iter().chain(self.custom.iter())
    }
}

/// The declared columns of `table` that `e` names (by their last part;
/// conservative: a name in a subquery counts too).
pub(crate) fn columns_read(e: &Expr, table: &super::Table, dialect: Dialect) -> Vec<String> {
    let mut out = Vec::new();
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        let last = match x {
            Expr::Identifier(i) => Some(i),
            Expr::CompoundIdentifier(parts) => parts.last(),
            _ => None,
        };
        if let Some(i) = last {
            let key = dialect.normalize(i).into_owned();
            if table.column(&key).is_some() && !out.contains(&key) {
                out.push(key);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    out
}

/// Truncation units and their formats: (unit, for dates, MySQL format,
/// SQLite format for dates, SQLite format for timestamps).
const UNITS: &[(&str, bool, &str, &str, &str)] = &[
    ("year", true, "%Y-01-01", "%Y-01-01", "%Y-01-01 00:00:00"),
    ("month", true, "%Y-%m-01", "%Y-%m-01", "%Y-%m-01 00:00:00"),
    ("day", false, "%Y-%m-%d", "", "%Y-%m-%d 00:00:00"),
    ("hour", false, "%Y-%m-%d %H:00:00", "", "%Y-%m-%d %H:00:00"),
    (
        "minute",
        false,
        "%Y-%m-%d %H:%i:00",
        "",
        "%Y-%m-%d %H:%M:00",
    ),
];

/// PostgreSQL's name of a declared type, for a cast.
pub(crate) fn pg_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer => "bigint",
        ColumnType::Decimal => "numeric",
        ColumnType::Text => "text",
        ColumnType::Boolean => "boolean",
        ColumnType::Date => "date",
        ColumnType::Timestamp => "timestamp",
        ColumnType::Uuid => "uuid",
    }
}

/// Whether a bucket size is a positive decimal number as written
/// (`10`, `0.5`, `1000`).
pub(crate) fn is_bucket_size(s: &str) -> bool {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    !int.is_empty()
        && int.len() <= 18
        && frac.len() <= 18
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && s.bytes().any(|b| b.is_ascii_digit() && b != b'0')
}

/// The SQL of a built-in mask kind on a column of type `ty` (the column
/// as [`COLUMN_MARKER`], the value as [`VALUE_MARKER`]), and the masked
/// values' type; the reason when the kind does not apply to the column
/// or the dialect cannot express it. `value_ty` is a constant's type.
pub(crate) fn template(
    kind: &MaskKind,
    dialect: Dialect,
    ty: ColumnType,
    value_ty: ColumnType,
) -> Result<(String, ColumnType), String> {
    use ColumnType as T;
    use Dialect as D;
    let c = COLUMN_MARKER;
    let v = VALUE_MARKER;
    let text_only = |what: &str| -> Result<(), String> {
        if ty == T::Text {
            Ok(())
        } else {
            Err(format!(
                "`{what}` masks text, and the column is {ty} (mask it with an `expression` that makes text first)"
            ))
        }
    };
    let sql = match kind {
        MaskKind::Null => match dialect {
            D::Postgres => format!("CAST(NULL AS {})", pg_type(ty)),
            _ => "NULL".to_string(),
        },
        MaskKind::Constant(_) => match dialect {
            D::Postgres => format!("CAST({v} AS {})", pg_type(value_ty)),
            _ => v.to_string(),
        },
        MaskKind::Hash => match dialect {
            D::Postgres => format!(
                "encode(sha256(convert_to(CAST({v} AS text) || CAST({c} AS text), 'UTF8')), 'hex')"
            ),
            D::Mysql => format!("SHA2(CONCAT({v}, CAST({c} AS CHAR)), 256)"),
            D::Duckdb => format!("sha256(CAST({v} AS VARCHAR) || CAST({c} AS VARCHAR))"),
            D::Sqlite | D::Generic => {
                return Err(format!(
                    "the {dialect} dialect has no built-in SHA-256 function for a `hash` mask (use PostgreSQL or MySQL/MariaDB, or another mask kind)"
                ))
            }
            _ => return Err(not_here("hash", dialect)),
        },
        MaskKind::First(n) | MaskKind::Last(n) => {
            let first = matches!(kind, MaskKind::First(_));
            text_only(if first { "first" } else { "last" })?;
            if *n == 0 {
                return Err(
                    "keeps no character: use `{constant: '***'}` instead of 0".to_string(),
                );
            }
            match (dialect, first) {
                (D::Postgres, true) => format!("left({c}, {n}) || '***'"),
                (D::Postgres, false) => format!("'***' || right({c}, {n})"),
                (D::Mysql, true) => format!("CONCAT(LEFT({c}, {n}), '***')"),
                (D::Mysql, false) => format!("CONCAT('***', RIGHT({c}, {n}))"),
                (D::Sqlite, true) => format!("substr({c}, 1, {n}) || '***'"),
                (D::Sqlite, false) => format!("'***' || substr({c}, -{n})"),
                (D::Duckdb, true) => format!("left({c}, {n}) || '***'"),
                (D::Duckdb, false) => format!("'***' || right({c}, {n})"),
                (D::Generic, _) => {
                    return Err("generic SQL has no portable substring function for `first`/`last` masks (declare the database's dialect)".to_string())
                }
                _ => return Err(not_here(if first { "first" } else { "last" }, dialect)),
            }
        }
        MaskKind::Email => {
            text_only("email")?;
            match dialect {
                D::Postgres => format!(
                    "CASE WHEN {c} IS NULL THEN NULL WHEN {c} LIKE '%@%' THEN '***@' || regexp_replace({c}, '^.*@', '') ELSE '***' END"
                ),
                D::Mysql => format!(
                    "CASE WHEN {c} IS NULL THEN NULL WHEN {c} LIKE '%@%' THEN CONCAT('***@', SUBSTRING_INDEX({c}, '@', -1)) ELSE '***' END"
                ),
                D::Sqlite => format!(
                    "CASE WHEN {c} IS NULL THEN NULL WHEN instr({c}, '@') > 0 THEN '***@' || substr({c}, length(rtrim({c}, replace({c}, '@', ''))) + 1) ELSE '***' END"
                ),
                D::Duckdb => format!(
                    "CASE WHEN {c} IS NULL THEN NULL WHEN {c} LIKE '%@%' THEN '***@' || regexp_replace({c}, '^.*@', '') ELSE '***' END"
                ),
                D::Generic => {
                    return Err("generic SQL has no portable string functions for an `email` mask (declare the database's dialect)".to_string())
                }
                _ => return Err(not_here("email", dialect)),
            }
        }
        MaskKind::Truncate(unit) => {
            let Some(&(name, for_dates, my_fmt, lite_date, lite_ts)) =
                UNITS.iter().find(|u| u.0 == unit.as_str())
            else {
                return Err(format!(
                    "unknown truncation unit `{unit}` (expected year, month, day, hour or minute)"
                ));
            };
            match ty {
                T::Date if !for_dates => {
                    return Err(format!(
                        "a date has no {name} to truncate to (a date column truncates to year or month)"
                    ))
                }
                T::Date | T::Timestamp => {}
                other => {
                    return Err(format!(
                        "`truncate` masks dates and timestamps, and the column is {other}"
                    ))
                }
            }
            let date = ty == T::Date;
            match dialect {
                D::Postgres if date => format!("CAST(date_trunc('{name}', {c}) AS date)"),
                D::Postgres => format!("date_trunc('{name}', {c})"),
                D::Mysql if date => format!("CAST(DATE_FORMAT({c}, '{my_fmt}') AS DATE)"),
                D::Mysql => {
                    let fmt = if my_fmt.len() == 8 {
                        format!("{my_fmt} 00:00:00")
                    } else {
                        my_fmt.to_string()
                    };
                    format!("CAST(DATE_FORMAT({c}, '{fmt}') AS DATETIME)")
                }
                D::Sqlite => {
                    format!("strftime('{}', {c})", if date { lite_date } else { lite_ts })
                }
                D::Duckdb if date => format!("CAST(date_trunc('{name}', {c}) AS DATE)"),
                D::Duckdb => format!("CAST(date_trunc('{name}', {c}) AS TIMESTAMP)"),
                D::Generic => {
                    return Err("generic SQL has no portable date truncation for a `truncate` mask (declare the database's dialect)".to_string())
                }
                _ => return Err(not_here("truncate", dialect)),
            }
        }
        MaskKind::Bucket(size) => {
            if !matches!(ty, T::Integer | T::Decimal) {
                return Err(format!(
                    "`bucket` masks numbers, and the column is {ty}"
                ));
            }
            if !is_bucket_size(size) {
                return Err(format!(
                    "bucket size `{size}` is not a positive number (`10`, `0.5`)"
                ));
            }
            if ty == T::Integer
                && (size.contains('.') || size.trim_start_matches('0') == "1")
            {
                return Err(format!(
                    "bucket size `{size}` on an integer column: only a whole number of 2 or more masks anything there (`{size}` gives every value back)"
                ));
            }
            match dialect {
                D::Postgres if ty == T::Integer => {
                    format!("CAST(floor({c} / CAST({size} AS numeric)) * {size} AS bigint)")
                }
                D::Postgres => format!("floor({c} / CAST({size} AS numeric)) * {size}"),
                D::Mysql => format!("FLOOR({c} / {size}) * {size}"),
                D::Sqlite => format!(
                    "(CAST({c} * 1.0 / {size} AS INTEGER) - ({c} * 1.0 / {size} < CAST({c} * 1.0 / {size} AS INTEGER))) * {size}"
                ),
                D::Duckdb if ty == T::Integer => {
                    format!("CAST(floor({c} / {size}) * {size} AS BIGINT)")
                }
                // Integer division truncates toward zero there.
                D::Mssql | D::Redshift | D::Trino if ty == T::Integer => {
                    format!("CAST(FLOOR({c} * 1.0 / {size}) * {size} AS BIGINT)")
                }
                _ => format!("FLOOR({c} / {size}) * {size}"),
            }
        }
        MaskKind::Expression(_) => {
            return Err("an expression mask is compiled as a rule".to_string())
        }
    };
    let masked = match kind {
        MaskKind::Hash | MaskKind::First(_) | MaskKind::Last(_) | MaskKind::Email => T::Text,
        MaskKind::Constant(_) => value_ty,
        _ => ty,
    };
    Ok((sql, masked))
}

/// Why mask `kind` has no template on `dialect` (one the engine would
/// need proven: see the README's dialect table).
fn not_here(kind: &str, dialect: Dialect) -> String {
    format!(
        "`{kind}` masks are not available on {dialect}: sqlsandbox has a `{kind}` template only for PostgreSQL, MySQL/MariaDB{} and DuckDB (use `null`, `constant`, `bucket` or an `expression` mask there)",
        if kind == "hash" { "" } else { ", SQLite" }
    )
}

/// Parses a template in `dialect` and puts the column in.
pub(crate) fn parse_template(sql: &str, dialect: Dialect, column: Ident) -> Result<Expr, String> {
    // Literals stay as written, as the query front end reads them.
    let mut p = sqlparser::parser::Parser::new(dialect.parser())
        .with_options(sqlparser::parser::ParserOptions::new().with_unescape(false))
        .try_with_sql(sql)
        .map_err(|e| format!("mask template `{sql}`: {e}"))?;
    let mut e = p
        .parse_expr()
        .map_err(|e| format!("mask template `{sql}`: {e}"))?;
    struct Put(Ident);
    impl VisitorMut for Put {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
            if matches!(e, Expr::Identifier(i) if i.value == COLUMN_MARKER) {
                *e = Expr::Identifier(self.0.clone());
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = e.visit(&mut Put(column));
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every template parses and prints back to text that parses to the
    /// same tree, in every dialect that has it.
    #[test]
    fn templates_round_trip() {
        let kinds = [
            MaskKind::Null,
            MaskKind::Constant("x".into()),
            MaskKind::Hash,
            MaskKind::First(2),
            MaskKind::Last(4),
            MaskKind::Email,
            MaskKind::Truncate("month".into()),
            MaskKind::Truncate("hour".into()),
            MaskKind::Bucket("10".into()),
            MaskKind::Bucket("0.5".into()),
        ];
        let types = [
            ColumnType::Text,
            ColumnType::Integer,
            ColumnType::Decimal,
            ColumnType::Date,
            ColumnType::Timestamp,
        ];
        let mut n = 0;
        for d in Dialect::ALL {
            for k in &kinds {
                for ty in types {
                    let Ok((sql, _)) = template(k, d, ty, ty) else {
                        continue;
                    };
                    let e = parse_template(&sql, d, d.ident("Col")).unwrap();
                    let again = parse_template(&e.to_string(), d, d.ident("Col")).unwrap();
                    assert_eq!(e, again, "{d:?} {k:?} {ty:?}: {e}");
                    assert!(!e.to_string().contains(COLUMN_MARKER));
                    n += 1;
                }
            }
        }
        assert!(n > 60, "{n}");
    }

    #[test]
    fn kinds_refused_where_they_do_not_apply() {
        let t = |k: MaskKind, d, ty| template(&k, d, ty, ty).map(|_| ()).unwrap_err();
        assert!(t(MaskKind::Hash, Dialect::Sqlite, ColumnType::Text).contains("SHA-256"));
        assert!(t(MaskKind::First(2), Dialect::Postgres, ColumnType::Integer).contains("text"));
        assert!(t(MaskKind::Last(0), Dialect::Sqlite, ColumnType::Text).contains("no character"));
        assert!(t(
            MaskKind::Truncate("hour".into()),
            Dialect::Postgres,
            ColumnType::Date
        )
        .contains("date"));
        assert!(t(
            MaskKind::Bucket("0".into()),
            Dialect::Mysql,
            ColumnType::Integer
        )
        .contains("positive"));
        assert!(t(
            MaskKind::Bucket("-5".into()),
            Dialect::Mysql,
            ColumnType::Integer
        )
        .contains("positive"));
        assert!(t(
            MaskKind::Bucket("1e9".into()),
            Dialect::Mysql,
            ColumnType::Integer
        )
        .contains("positive"));
    }
}
