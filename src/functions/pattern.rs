//! `LIKE` patterns the database may evaluate before it reads any row.
//!
//! PostgreSQL estimates the selectivity of `col LIKE 'pattern'` (and
//! `ILIKE`, `~~`, `LIKE ANY (ARRAY[…])`) by matching the pattern against
//! the column's statistics — its most common values and histogram, sampled
//! from every row of the table, every tenant's — when it *plans* the query.
//! A sandbox's fence (`OFFSET 0`) keeps conditions off other tenants' rows
//! at execution, but not off the statistics: the planner looks through the
//! subquery to the base table's. A pattern that raises an error depending
//! on the value it is matched with ("LIKE pattern must not end with escape
//! character" is raised only when the match reaches the pattern's end, so
//! only for values starting with the pattern's prefix) therefore tells the
//! user, one character at a time, what other tenants' rows hold.
//!
//! The rules (every expression outside a sandbox, in every query the
//! verifier proves, and every rule and question of a policy at load):
//! - a pattern whose value is known (a string literal, a `||` chain ending
//!   in one, a bound value) must not end in an unpaired escape character,
//!   and an `ESCAPE` must be a string literal of at most one character:
//!   refused in every dialect (such a pattern is malformed wherever an
//!   engine reads it);
//! - on PostgreSQL, Redshift and the generic dialect, a pattern must also
//!   be *known* to be well formed: a constant the planner folds (a
//!   function, a cast, a derived table's constant column pulled up into
//!   the query) would be matched against the statistics just the same, and
//!   its value cannot be checked here. So the pattern must end in a string
//!   literal (or a value sqlsandbox binds), and `LIKE ANY`/`ALL` must list
//!   its patterns in `ARRAY[…]`.

use std::borrow::Cow;

use sqlparser::ast::{BinaryOperator, Expr, Value};

use crate::dialect::Dialect;
use crate::error::{Error, Result};

/// The text of a value sqlsandbox bound (a saved question's variable), for
/// a placeholder it made; `None` for any other placeholder.
pub(crate) type Bound<'a> = &'a dyn Fn(&str) -> Option<Cow<'a, str>>;

/// What the end of a pattern is, as far as its trailing escape characters.
enum Tail {
    /// Ends in this many escape characters, and something else before them
    /// (or nothing).
    Known(usize),
    /// Cannot be known here.
    Unknown(String),
}

/// Checks the `LIKE` patterns of `e` itself (not of its subexpressions;
/// the caller visits every expression). `bound` gives the values of
/// sqlsandbox's own placeholders; a marker of a saved question's variable
/// (not yet bound, at load) counts as checked when it is bound.
pub(crate) fn check(e: &Expr, dialect: Dialect, bound: Bound<'_>) -> Result<()> {
    let (pattern, escape, any) = match e {
        Expr::Like {
            pattern,
            escape_char,
            any,
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char,
            any,
            ..
        } => (pattern.as_ref(), escape_char.as_deref(), *any),
        Expr::BinaryOp { op, right, .. } if is_like_op(op) => (right.as_ref(), None, false),
        Expr::AnyOp {
            compare_op, right, ..
        }
        | Expr::AllOp {
            compare_op, right, ..
        } if is_like_op(compare_op) => (right.as_ref(), None, true),
        _ => return Ok(()),
    };
    let strict = matches!(
        dialect,
        Dialect::Postgres | Dialect::Redshift | Dialect::Generic
    );
    let escape = match escape_char(escape, dialect) {
        Ok(c) => c,
        // An escape that is not a literal: the pattern cannot be read here.
        Err(why) if strict => return Err(refuse(e, &why)),
        Err(_) => return Ok(()),
    };
    let mut patterns = Vec::new();
    if any {
        if !list(pattern, &mut patterns) {
            if strict {
                return Err(refuse(
                    e,
                    "the patterns of `LIKE ANY`/`ALL` must be listed in `ARRAY[…]`",
                ));
            }
            return Ok(());
        }
    } else {
        patterns.push(pattern);
    }
    let Some(escape) = escape else {
        return Ok(());
    };
    for p in patterns {
        match tail(p, escape, dialect, bound) {
            Tail::Known(n) if n % 2 == 1 => {
                return Err(refuse(
                    e,
                    &format!("the pattern ends in an unpaired escape character (`{escape}`)"),
                ));
            }
            Tail::Known(_) => {}
            Tail::Unknown(why) if strict => return Err(refuse(e, &why)),
            Tail::Unknown(_) => {}
        }
    }
    Ok(())
}

fn refuse(e: &Expr, why: &str) -> Error {
    // A value sqlsandbox bound shows as `?`.
    let mut text = e.to_string();
    if text.contains(crate::bind::TEMP_PLACEHOLDER) {
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some((before, after)) = rest.split_once(crate::bind::TEMP_PLACEHOLDER) {
            out.push_str(before);
            out.push('?');
            rest = after.trim_start_matches(|c: char| c.is_ascii_digit());
        }
        out.push_str(rest);
        text = out;
    }
    if text.len() > 120 {
        let mut end = 117;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    Error::unsupported(format!(
        "`{text}`: {why} (the database matches a pattern against the table's statistics, drawn from every tenant's rows, when it plans the query, so a pattern that can fail would tell what other tenants' rows hold)"
    ))
}

fn is_like_op(op: &BinaryOperator) -> bool {
    match op {
        BinaryOperator::PGLikeMatch
        | BinaryOperator::PGILikeMatch
        | BinaryOperator::PGNotLikeMatch
        | BinaryOperator::PGNotILikeMatch => true,
        // `OPERATOR(pg_catalog.~~)` (refused as an operator too).
        BinaryOperator::PGCustomBinaryOperator(path) => {
            matches!(
                path.last().map(String::as_str),
                Some("~~" | "~~*" | "!~~" | "!~~*")
            )
        }
        _ => false,
    }
}

/// The escape character in force: `Ok(None)` when there is none.
fn escape_char(
    escape: Option<&Expr>,
    dialect: Dialect,
) -> std::result::Result<Option<char>, String> {
    let Some(escape) = escape else {
        // SQLite's LIKE has no escape character unless one is given;
        // elsewhere a backslash escapes by default, or is taken as if it
        // did (the stricter reading).
        return Ok((dialect != Dialect::Sqlite).then_some('\\'));
    };
    let Expr::Value(v) = escape else {
        return Err("the `ESCAPE` is not a string literal".into());
    };
    let Some(text) = literal(&v.value, dialect) else {
        return Err("the `ESCAPE` is not a string literal".into());
    };
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        // PostgreSQL: `ESCAPE ''` turns escaping off.
        (None, _) => Ok(None),
        (Some(c), None) => Ok(Some(c)),
        _ => Err("the `ESCAPE` is more than one character".into()),
    }
}

/// The patterns of `LIKE ANY (…)`: `ARRAY[…]` elements (or a list, as
/// Snowflake writes it). False when they cannot be listed.
fn list<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) -> bool {
    match e {
        Expr::Nested(inner) => list(inner, out),
        Expr::Array(a) => {
            out.extend(a.elem.iter());
            true
        }
        Expr::Tuple(items) => items.iter().all(|i| match i {
            Expr::Array(_) | Expr::Nested(_) | Expr::Tuple(_) => list(i, out),
            other => {
                out.push(other);
                true
            }
        }),
        _ => false,
    }
}

/// A string literal's text as the database reads it (`None` if `v` is
/// not one). In a dialect with backslash escapes (MySQL, Spark,
/// ClickHouse) the literal is kept as written, so only what the
/// trailing-escape count needs is decoded: each `\\` is one backslash.
/// PostgreSQL's `E'…'` arrives decoded.
fn literal(v: &Value, dialect: Dialect) -> Option<Cow<'_, str>> {
    match v {
        Value::SingleQuotedString(s) if dialect.backslash_escapes() => Some(unescape(s)),
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::NationalStringLiteral(s) => Some(Cow::Borrowed(s.as_str())),
        _ => None,
    }
}

/// Backslash pairs read as one backslash; a backslash before any other
/// character is dropped (the character stays), which cannot add or remove
/// a trailing backslash.
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next().unwrap_or('\\'));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// How many escape characters end the pattern `e`.
fn tail(e: &Expr, escape: char, dialect: Dialect, bound: Bound<'_>) -> Tail {
    let text: Cow<'_, str> = match e {
        Expr::Nested(inner) => return tail(inner, escape, dialect, bound),
        Expr::Collate { expr, .. } => return tail(expr, escape, dialect, bound),
        // `a || b`: b's end, and a's too if b is all escape characters.
        Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            right,
        } => {
            return match tail(right, escape, dialect, bound) {
                Tail::Known(n) if all_escape(right, escape, dialect, bound) => {
                    match tail(left, escape, dialect, bound) {
                        Tail::Known(m) => Tail::Known(n + m),
                        unknown => unknown,
                    }
                }
                t => t,
            };
        }
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => match bound(p) {
                Some(text) => text,
                None => {
                    return Tail::Unknown(format!(
                        "the pattern ends in `{p}`, a value sqlsandbox did not bind"
                    ))
                }
            },
            Value::Null => return Tail::Known(0),
            other => match literal(other, dialect) {
                Some(text) => text,
                None => {
                    return Tail::Unknown(format!(
                        "the pattern ends in `{other}`, which is not a string"
                    ))
                }
            },
        },
        // Case mapping keeps an escape character that has no case (the
        // builder's case-insensitive `lower(col) LIKE lower('%x') ESCAPE
        // '!'`): no character maps to or from one.
        Expr::Function(_) if case_mapped(e).is_some() && !escape.is_alphabetic() => {
            let Some(inner) = case_mapped(e) else {
                return Tail::Known(0);
            };
            return tail(inner, escape, dialect, bound);
        }
        // A saved question's variable, at load: its value is checked when
        // it is bound.
        Expr::Identifier(_) if crate::policy::question::marker(e).is_some() => {
            return Tail::Known(0)
        }
        other => {
            return Tail::Unknown(format!(
                "the pattern ends in `{other}`, whose value cannot be checked here (end it in a string literal: `… || '%'`)"
            ))
        }
    };
    Tail::Known(text.chars().rev().take_while(|&c| c == escape).count())
}

/// The argument of `lower(x)` or `upper(x)`.
fn case_mapped(e: &Expr) -> Option<&Expr> {
    use sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let Expr::Function(f) = e else {
        return None;
    };
    let [sqlparser::ast::ObjectNamePart::Identifier(name)] = f.name.0.as_slice() else {
        return None;
    };
    if !(name.value.eq_ignore_ascii_case("lower") || name.value.eq_ignore_ascii_case("upper")) {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if list.duplicate_treatment.is_some()
        || !list.clauses.is_empty()
        || f.filter.is_some()
        || f.over.is_some()
    {
        return None;
    }
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))] => Some(x),
        _ => None,
    }
}

/// Whether `e` is known to be made of escape characters only (so the
/// count goes on into what precedes it).
fn all_escape(e: &Expr, escape: char, dialect: Dialect, bound: Bound<'_>) -> bool {
    match e {
        Expr::Nested(inner) => all_escape(inner, escape, dialect, bound),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            right,
        } => all_escape(left, escape, dialect, bound) && all_escape(right, escape, dialect, bound),
        Expr::Value(v) => {
            let text = match &v.value {
                Value::Placeholder(p) => bound(p),
                other => literal(other, dialect),
            };
            text.is_some_and(|t| t.chars().all(|c| c == escape))
        }
        Expr::Function(_) if !escape.is_alphabetic() => {
            case_mapped(e).is_some_and(|x| all_escape(x, escape, dialect, bound))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::parser::{Parser, ParserOptions};

    fn run(sql: &str, dialect: Dialect) -> Result<()> {
        let e = Parser::new(dialect.parser())
            .with_options(ParserOptions::new().with_unescape(false))
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_expr())
            .expect("parses");
        let none = |_: &str| None;
        let mut res = Ok(());
        let _ = sqlparser::ast::visit_expressions(&e, |x| {
            if let Err(err) = check(x, dialect, &none) {
                res = Err(err);
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        });
        res
    }

    #[test]
    fn patterns_that_can_fail_on_statistics_are_refused() {
        use Dialect::{Mysql, Postgres, Sqlite};
        let cases: &[(&str, Dialect, bool)] = &[
            // (expression, dialect, accepted)
            ("status LIKE 'charge%'", Postgres, true),
            ("status LIKE 'charge%\\'", Postgres, false),
            ("status LIKE 'charge%\\\\'", Postgres, true),
            ("status NOT ILIKE 'CHARGE%\\'", Postgres, false),
            ("status ~~ 'charge%\\'", Postgres, false),
            ("status !~~* 'charge%\\'", Postgres, false),
            ("status LIKE 'charge%!' ESCAPE '!'", Postgres, false),
            ("status LIKE 'charge%!!' ESCAPE '!'", Postgres, true),
            ("status LIKE 'charge%\\' ESCAPE ''", Postgres, true),
            ("status LIKE 'a' ESCAPE '!!'", Postgres, false),
            ("status LIKE 'a' ESCAPE chr(33)", Postgres, false),
            ("status LIKE ANY (ARRAY['charge%\\'])", Postgres, false),
            ("status LIKE ANY (ARRAY['a%', 'b%'])", Postgres, true),
            ("status ILIKE ANY ('{a%\\}')", Postgres, false),
            ("status ~~ ANY (ARRAY['a%', 'b%\\'])", Postgres, false),
            ("status ~~ ALL (ARRAY['a%'])", Postgres, true),
            (
                "status OPERATOR(pg_catalog.~~) 'charge%\\'",
                Postgres,
                false,
            ),
            (
                "status OPERATOR(pg_catalog.!~~*) 'CHARGE%\\'",
                Postgres,
                false,
            ),
            // Constants the planner folds: refused unless the end is known.
            ("status LIKE 'charge' || '%\\'", Postgres, false),
            ("status LIKE 'charge' || '%'", Postgres, true),
            ("status LIKE '%' || name || '%'", Postgres, true),
            ("status LIKE name || '\\'", Postgres, false),
            ("status LIKE 'a\\' || '\\'", Postgres, true),
            ("status LIKE name", Postgres, false),
            ("status LIKE v.x", Postgres, false),
            ("status LIKE lower('A%\\')", Postgres, false),
            ("lower(status) LIKE lower('%X') ESCAPE '!'", Postgres, true),
            (
                "lower(status) LIKE upper('%X!') ESCAPE '!'",
                Postgres,
                false,
            ),
            (
                "lower(status) LIKE lower('%X' || '!') ESCAPE '!'",
                Postgres,
                false,
            ),
            ("lower(status) LIKE lower('%a') ESCAPE 'a'", Postgres, false),
            ("status LIKE btrim('%x')", Postgres, false),
            ("status LIKE CAST('a%\\' AS text)", Postgres, false),
            ("status LIKE (SELECT 'a%\\')", Postgres, false),
            ("status LIKE E'a%\\\\'", Postgres, false),
            ("status LIKE E'a%\\\\\\\\'", Postgres, true),
            ("status LIKE NULL", Postgres, true),
            // Elsewhere only a known malformed pattern is refused.
            ("status LIKE name", Mysql, true),
            ("status LIKE 'a\\\\'", Mysql, false),
            ("status LIKE 'a\\\\\\\\'", Mysql, true),
            ("status LIKE 'a\\%'", Mysql, true),
            ("status LIKE 'a\\'", Sqlite, true),
            ("status LIKE 'a!' ESCAPE '!'", Sqlite, false),
        ];
        for (sql, dialect, ok) in cases {
            let got = run(sql, *dialect);
            assert_eq!(got.is_ok(), *ok, "{dialect} {sql}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.code(), "SB403", "{sql}");
            }
        }
    }

    #[test]
    fn bound_values_are_checked() {
        let e = Parser::new(Dialect::Postgres.parser())
            .try_with_sql("status LIKE $1")
            .and_then(|mut p| p.parse_expr())
            .expect("parses");
        let bad = |p: &str| (p == "$1").then_some(Cow::Borrowed("charge%\\"));
        let good = |p: &str| (p == "$1").then_some(Cow::Borrowed("charge%"));
        assert!(check(&e, Dialect::Postgres, &bad).is_err());
        assert!(check(&e, Dialect::Postgres, &good).is_ok());
        assert!(check(&e, Dialect::Postgres, &|_| None).is_err());
    }
}
