//! Filters: comparisons (`=`, `!=` with several values as IN / NOT IN,
//! `<` … `>=`, `between`), `is-null` / `not-null`, `is-empty` /
//! `not-empty`, string matching, `time-interval`, and `and` / `or` / `not`.
//! Each is an expression of type boolean.

use sqlparser::ast::{BinaryOperator, Expr, InTarget};

use super::expr::arity;
use super::flavor::{self, Match};
use super::json::{describe, Node};
use super::sql::{binop, fold, not, null, paren, string};
use super::{Compiler, Level, Typed};
use crate::error::Result;
use crate::policy::ColumnType;

impl<'n> Compiler<'_> {
    pub(super) fn op_compare(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let ([l, r], _) = arity::<2>(n, op, args, 2, "two operands")?;
        let l = self.expr(lv, l)?;
        if r.v.is_null() {
            return Err(r.err(format!(
                "`{op}` cannot compare with null; use is-null / not-null"
            )));
        }
        let r = self.operand(lv, r, l.ty)?;
        let bop = match op {
            "<" => BinaryOperator::Lt,
            "<=" => BinaryOperator::LtEq,
            ">" => BinaryOperator::Gt,
            _ => BinaryOperator::GtEq,
        };
        Ok(Typed::condition(binop(l.expr, bop, r)))
    }

    pub(super) fn op_between(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let ([x, low, high], _) = arity::<3>(n, op, args, 3, "an operand, a low and a high bound")?;
        let x = self.expr(lv, x)?;
        let low = self.operand(lv, low, x.ty)?;
        let high = self.operand(lv, high, x.ty)?;
        Ok(Typed::condition(Expr::Between {
            expr: Box::new(paren(x.expr)),
            negated: false,
            low: Box::new(paren(low)),
            high: Box::new(paren(high)),
        }))
    }

    pub(super) fn op_null(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let ([x], _) = arity::<1>(n, op, args, 1, "one operand")?;
        let x = paren(self.expr(lv, x)?.expr);
        let e = if op == "is-null" {
            Expr::IsNull(Box::new(x))
        } else {
            Expr::IsNotNull(Box::new(x))
        };
        Ok(Typed::condition(e))
    }

    pub(super) fn op_empty(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let d = self.dialect;
        let ([x], _) = arity::<1>(n, op, args, 1, "one operand")?;
        let x = self.expr(lv, x)?;
        let text = x.ty == Some(ColumnType::Text);
        let x = paren(x.expr);
        let e = match (op, text) {
            ("is-empty", true) => fold(
                vec![
                    Expr::IsNull(Box::new(x.clone())),
                    binop(x, BinaryOperator::Eq, string(d, "")?),
                ],
                BinaryOperator::Or,
            ),
            ("is-empty", false) => Some(Expr::IsNull(Box::new(x))),
            (_, true) => fold(
                vec![
                    Expr::IsNotNull(Box::new(x.clone())),
                    binop(x, BinaryOperator::NotEq, string(d, "")?),
                ],
                BinaryOperator::And,
            ),
            (_, false) => Some(Expr::IsNotNull(Box::new(x))),
        };
        Ok(Typed::condition(e.unwrap_or_else(null)))
    }

    pub(super) fn op_logic(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        arity::<1>(n, op, args, usize::MAX, "one or more conditions")?;
        let parts = args
            .iter()
            .map(|a| self.condition(lv, a))
            .collect::<Result<Vec<_>>>()?;
        let bop = if op == "and" {
            BinaryOperator::And
        } else {
            BinaryOperator::Or
        };
        Ok(Typed::condition(fold(parts, bop).unwrap_or_else(null)))
    }

    pub(super) fn op_not(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let ([c], _) = arity::<1>(n, op, args, 1, "one condition")?;
        let c = self.condition(lv, c)?;
        Ok(Typed::condition(not(c)))
    }

    /// `=`, `!=` (several values: IN / NOT IN), `in`, `not-in`.
    pub(super) fn equality(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let ([l, first], rest) =
            arity::<2>(n, op, args, usize::MAX, "an operand and one or more values")?;
        let l = self.expr(lv, l)?;
        let negated = matches!(op, "!=" | "not-in");
        if rest.is_empty() && first.v.is_null() {
            let x = Box::new(paren(l.expr));
            let e = if negated {
                Expr::IsNotNull(x)
            } else {
                Expr::IsNull(x)
            };
            return Ok(Typed::condition(e));
        }
        let e = match (op, rest) {
            ("=" | "!=", []) => binop(
                l.expr,
                if negated {
                    BinaryOperator::NotEq
                } else {
                    BinaryOperator::Eq
                },
                self.operand(lv, first, l.ty)?,
            ),
            _ => {
                let mut list = Vec::new();
                for v in std::iter::once(first).chain(rest) {
                    if v.v.is_null() {
                        return Err(v.err("null cannot be one of several values; combine with [\"is-null\", …] in an `or`"));
                    }
                    list.push(self.operand(lv, v, l.ty)?);
                }
                Expr::In {
                    expr: Box::new(paren(l.expr)),
                    target: InTarget::List(list.into_iter().map(paren).collect()),
                    negated,
                    global: false,
                }
            }
        };
        Ok(Typed::condition(e))
    }

    /// `contains`, `does-not-contain`, `starts-with`, `ends-with`, with
    /// `{"case-sensitive": false}` as an optional last argument (default:
    /// case-sensitive, as in MBQL).
    pub(super) fn string_filter(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let ([x, needle_arg], rest) = arity::<2>(
            n,
            op,
            args,
            3,
            "a string field, a string and optional {\"case-sensitive\": false}",
        )?;
        let x = self.text_arg(lv, x, op)?;
        let needle = needle_arg.str("the text to look for")?;
        if needle.contains('\0') {
            return Err(needle_arg.err("strings must not contain NUL characters"));
        }
        let mut case_sensitive = true;
        if let Some(o) = rest.first() {
            o.allow_keys(&["case-sensitive"], "string filter options")?;
            if let Some(cs) = o.key("case-sensitive") {
                case_sensitive = cs.bool("`case-sensitive`")?;
            }
        }
        let how = match op {
            "starts-with" => Match::StartsWith,
            "ends-with" => Match::EndsWith,
            _ => Match::Contains,
        };
        let e = flavor::string_match(self.dialect, x, how, needle, case_sensitive)?;
        let e = if op == "does-not-contain" { not(e) } else { e };
        Ok(Typed::condition(e))
    }

    /// `["time-interval", field, n, unit, {"include-current": true}]`: `n`
    /// whole units before (negative) or after (positive) the current one,
    /// or `"current"`, `"last"`, `"next"`. The current unit is included
    /// only with `include-current`.
    pub(super) fn time_interval(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let ([field, count, unit], rest) = arity::<3>(n, "time-interval", args, 4, "a date field, a count (or \"current\", \"last\", \"next\"), a unit and optional {\"include-current\": true}")?;
        let x = self.date_arg(lv, field, "time-interval")?;
        if x.ty.is_none() {
            return Err(field.err(
                "`time-interval` needs a column whose type is known to be a date or timestamp",
            ));
        }
        let count = match (count.v.as_str(), count.v.as_i64()) {
            (Some("current"), _) => 0,
            (Some("last"), _) => -1,
            (Some("next"), _) => 1,
            (None, Some(i)) if i.unsigned_abs() <= 100_000 => i,
            _ => {
                return Err(count.err(format!(
                    "the count must be a whole number (up to 100000 units), \"current\", \"last\" or \"next\", not {}",
                    describe(count.v)
                )))
            }
        };
        let unit = self.unit(unit, x.ty)?;
        let mut include_current = false;
        if let Some(o) = rest.first() {
            o.allow_keys(&["include-current"], "`time-interval` options")?;
            if let Some(ic) = o.key("include-current") {
                include_current = ic.bool("`include-current`")?;
            }
        }
        let (start, end) = match count {
            0 => (0, 1),
            c if c < 0 => (c, if include_current { 1 } else { 0 }),
            c => (if include_current { 0 } else { 1 }, c + 1),
        };
        let d = self.dialect;
        let lo = flavor::relative_start(d, unit, start, x.ty)?;
        let hi = flavor::relative_start(d, unit, end, x.ty)?;
        let e = fold(
            vec![
                binop(x.expr.clone(), BinaryOperator::GtEq, lo),
                binop(x.expr, BinaryOperator::Lt, hi),
            ],
            BinaryOperator::And,
        );
        Ok(Typed::condition(e.unwrap_or_else(null)))
    }
}
