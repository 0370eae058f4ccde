//! Expressions: literals checked against the column they meet, field and
//! expression references, arithmetic, string and date functions, and
//! `case`; the dispatch of every operator (filters are in `filter`).
//!
//! A filter is an expression of type boolean, so an expression may be a
//! condition and a condition may be named in `expressions`.

use serde_json::Value;
use sqlparser::ast::{BinaryOperator, Expr};

use super::flavor::{self, Part, Unit};
use super::json::{describe, Node};
use super::sql::{self, binop, boolean, int, null, number, string, template};
use super::{Compiler, Level, Typed};
use crate::bind::{coerce, Target};
use crate::error::Result;
use crate::policy::ColumnType;
use crate::value::Scalar;

/// Aggregation names, refused outside `aggregation` with a pointer to it.
const AGGREGATIONS: &[&str] = &[
    "count",
    "distinct",
    "sum",
    "avg",
    "min",
    "max",
    "median",
    "percentile",
    "count-where",
    "sum-where",
    "share",
    "aggregation-options",
];

fn numeric(ty: Option<ColumnType>) -> bool {
    matches!(
        ty,
        None | Some(ColumnType::Integer) | Some(ColumnType::Decimal)
    )
}

fn temporal(ty: Option<ColumnType>) -> bool {
    matches!(
        ty,
        None | Some(ColumnType::Date) | Some(ColumnType::Timestamp)
    )
}

fn textual(ty: Option<ColumnType>) -> bool {
    matches!(ty, None | Some(ColumnType::Text))
}

/// Whether values of the two types may be compared.
fn comparable(a: Option<ColumnType>, b: Option<ColumnType>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) => {
            a == b
                || (numeric(Some(a)) && numeric(Some(b)))
                || (temporal(Some(a)) && temporal(Some(b)))
        }
    }
}

fn type_name(ty: Option<ColumnType>) -> String {
    ty.map(|t| t.to_string())
        .unwrap_or_else(|| "untyped".into())
}

/// Checks that `op` has between `MIN` and `max` arguments, and returns the
/// `MIN` required ones as an array (to destructure by pattern) and the
/// optional rest, so no caller indexes into `args`.
pub(super) fn arity<'a, 'n, const MIN: usize>(
    n: &Node,
    op: &str,
    args: &'a [Node<'n>],
    max: usize,
    shape: &str,
) -> Result<(&'a [Node<'n>; MIN], &'a [Node<'n>])> {
    let wrong = || {
        n.err(format!(
            "`{op}` takes {shape}, but got {} argument{}",
            args.len(),
            if args.len() == 1 { "" } else { "s" }
        ))
    };
    if args.len() > max {
        return Err(wrong());
    }
    args.split_first_chunk::<MIN>().ok_or_else(wrong)
}

impl<'n> Compiler<'_> {
    /// Any expression: a literal or a clause `["op", …]`.
    pub(super) fn expr(&mut self, lv: &mut Level<'n>, n: &Node<'n>) -> Result<Typed> {
        self.enter(n)?;
        let r = match n.clause() {
            Some((op, args)) => self.clause(lv, n, op, &args),
            None => match n.v {
                Value::Array(_) => Err(n.err(
                    "an expression is a clause that starts with its operator, e.g. [\"field\", \"total\"]",
                )),
                Value::Object(_) => Err(n.err("expected an expression, not an object")),
                _ => self.literal(n, None),
            },
        };
        self.leave();
        r
    }

    /// A condition (an expression of type boolean).
    pub(super) fn condition(&mut self, lv: &mut Level<'n>, n: &Node<'n>) -> Result<Expr> {
        let t = self.expr(lv, n)?;
        match t.ty {
            None | Some(ColumnType::Boolean) => Ok(t.expr),
            Some(other) => Err(n.err(format!(
                "expected a condition (a filter such as [\"=\", [\"field\", \"status\"], \"paid\"]), not a {other} expression"
            ))),
        }
    }

    /// A field or expression reference: something with a name.
    pub(super) fn named(&mut self, lv: &mut Level<'n>, n: &Node<'n>, what: &str) -> Result<Typed> {
        match n.clause() {
            Some(("field" | "expression", _)) => {
                let t = self.expr(lv, n)?;
                if t.name.is_none() {
                    return Err(n.err(format!("{what} has no name")));
                }
                Ok(t)
            }
            _ => Err(n.err(format!(
                "{what} must be [\"field\", …] or [\"expression\", …], not {}",
                describe(n.v)
            ))),
        }
    }

    /// A literal, checked against (and shaped for) the type it meets.
    pub(super) fn literal(&self, n: &Node, want: Option<ColumnType>) -> Result<Typed> {
        let d = self.dialect;
        let bad = |what: &str| {
            let article = if what.starts_with(['a', 'e', 'i', 'o']) {
                "an"
            } else {
                "a"
            };
            n.err(format!(
                "{} is not {article} {what}, the type it is compared with",
                describe(n.v)
            ))
        };
        let check = |s: &str, ty: ColumnType, what: &str| -> Result<String> {
            let target = Target {
                attribute: "",
                what: &String::new,
            };
            match coerce(&Scalar::Text(s.to_string()), Some(ty), &target) {
                Ok(Scalar::Text(t)) => Ok(t),
                _ => Err(bad(what)),
            }
        };
        Ok(match (n.v, want) {
            (Value::Null, _) => Typed::new(null(), want),
            (Value::Bool(b), None | Some(ColumnType::Boolean)) => {
                Typed::new(boolean(self.dialect, *b), Some(ColumnType::Boolean))
            }
            (Value::Number(x), None | Some(ColumnType::Integer) | Some(ColumnType::Decimal)) => {
                match (x.as_i64(), want) {
                    (Some(i), _) => Typed::new(int(i), want.or(Some(ColumnType::Integer))),
                    (None, Some(ColumnType::Integer)) => return Err(bad("integer")),
                    (None, _) => {
                        if x.as_f64().is_none_or(|f| !f.is_finite()) {
                            return Err(bad("number"));
                        }
                        Typed::new(number(&x.to_string()), Some(ColumnType::Decimal))
                    }
                }
            }
            (Value::String(s), None | Some(ColumnType::Text)) => {
                if s.contains('\0') {
                    return Err(n.err("strings must not contain NUL characters"));
                }
                Typed::new(string(d, s)?, Some(ColumnType::Text))
            }
            (Value::String(s), Some(ColumnType::Date)) => {
                let v = check(s, ColumnType::Date, "date (YYYY-MM-DD)")?;
                Typed::new(string(d, &v)?, want)
            }
            (Value::String(s), Some(ColumnType::Timestamp)) => {
                // A date alone means its midnight; `T` is written as a space
                // so that SQLite's text comparison orders it correctly.
                let v = if s.len() == 10 {
                    check(s, ColumnType::Date, "timestamp (YYYY-MM-DD[ HH:MM[:SS]])")?
                } else {
                    check(s, ColumnType::Timestamp, "timestamp (YYYY-MM-DD HH:MM:SS)")?
                        .replacen('T', " ", 1)
                };
                Typed::new(string(d, &v)?, want)
            }
            (Value::String(s), Some(ColumnType::Uuid)) => {
                let v = check(s, ColumnType::Uuid, "uuid")?;
                Typed::new(string(d, &v)?, want)
            }
            (Value::Array(_) | Value::Object(_), _) => {
                return Err(n.err(format!("expected a value, not {}", describe(n.v))))
            }
            (_, Some(ty)) => return Err(bad(&ty.to_string())),
        })
    }

    /// An operand compared with something of type `want`: a literal
    /// coerced to it, or an expression of a comparable type.
    pub(super) fn operand(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        want: Option<ColumnType>,
    ) -> Result<Expr> {
        if n.clause().is_some() {
            let t = self.expr(lv, n)?;
            if !comparable(want, t.ty) {
                return Err(n.err(format!(
                    "cannot compare a {} with a {}",
                    type_name(want),
                    type_name(t.ty)
                )));
            }
            Ok(t.expr)
        } else {
            Ok(self.literal(n, want)?.expr)
        }
    }

    /// Dispatches one clause. Every operator is its own method, so that
    /// the frames on the recursion path (expr → clause → operator → expr)
    /// stay small even in debug builds.
    fn clause(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        match op {
            "field" => self.field(lv, n, args),
            "expression" => self.expression_ref(lv, n, args),
            "value" => self.op_value(lv, n, op, args),
            "+" | "-" | "*" | "/" => self.arithmetic(lv, n, op, args),
            "concat" => self.op_concat(lv, n, op, args),
            "substring" => self.op_substring(lv, n, op, args),
            "upper" | "lower" | "trim" | "ltrim" | "rtrim" => self.op_text(lv, n, op, args),
            "length" => self.op_length(lv, n, op, args),
            "replace" => self.op_replace(lv, n, op, args),
            "coalesce" => self.op_coalesce(lv, n, op, args),
            "abs" | "round" | "ceil" | "floor" => self.op_math(lv, n, op, args),
            "now" => self.op_now(lv, n, op, args),
            "datetime-add" | "datetime-subtract" => self.op_datetime_add(lv, n, op, args),
            "get-year" | "get-quarter" | "get-month" | "get-week" | "get-day" | "get-day-of-week"
            | "get-hour" | "get-minute" => self.op_get(lv, n, op, args),
            "temporal-extract" => self.op_temporal_extract(lv, n, op, args),
            "case" => self.case(lv, n, args),
            "=" | "!=" | "in" | "not-in" => self.equality(lv, n, op, args),
            "<" | "<=" | ">" | ">=" => self.op_compare(lv, n, op, args),
            "between" => self.op_between(lv, n, op, args),
            "is-null" | "not-null" => self.op_null(lv, n, op, args),
            "is-empty" | "not-empty" => self.op_empty(lv, n, op, args),
            "contains" | "does-not-contain" | "starts-with" | "ends-with" => {
                self.string_filter(lv, n, op, args)
            }
            "time-interval" => self.time_interval(lv, n, args),
            "and" | "or" => self.op_logic(lv, n, op, args),
            "not" => self.op_not(lv, n, op, args),
            "aggregation" => Err(n.err(
                "[\"aggregation\", i] names an aggregation only in `order-by`",
            )),
            a if AGGREGATIONS.contains(&a) => Err(n.err(format!(
                "`{a}` is an aggregation: it belongs in `aggregation` (to filter on an aggregate, nest the query in `source-query`)"
            ))),
            other => Err(n.err(format!("unknown operator `{other}`"))),
        }
    }

    fn op_value(
        &mut self,
        _lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let ([v], _) = arity::<1>(n, op, args, 2, "a literal and optional options")?;
        self.literal(v, None)
    }

    fn op_concat(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let d = self.dialect;
        arity::<2>(n, op, args, usize::MAX, "two or more strings")?;
        let parts = args
            .iter()
            .map(|a| self.expr(lv, a).map(|t| t.expr))
            .collect::<Result<Vec<_>>>()?;
        Ok(Typed::new(
            flavor::concat(d, parts)?,
            Some(ColumnType::Text),
        ))
    }

    fn op_substring(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let d = self.dialect;
        let ([s, start], rest) = arity::<2>(
            n,
            op,
            args,
            3,
            "a string, a start (1-based) and an optional length",
        )?;
        let s = self.text_arg(lv, s, op)?;
        let start = self.operand(lv, start, Some(ColumnType::Integer))?;
        let len = match rest.first() {
            Some(a) => Some(self.operand(lv, a, Some(ColumnType::Integer))?),
            None => None,
        };
        Ok(Typed::new(
            flavor::substring(d, s, start, len)?,
            Some(ColumnType::Text),
        ))
    }

    fn op_text(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let d = self.dialect;
        let ([s], _) = arity::<1>(n, op, args, 1, "one string")?;
        let s = self.text_arg(lv, s, op)?;
        let t = match op {
            "upper" => "upper(__sb0)",
            "lower" => "lower(__sb0)",
            "trim" => "trim(__sb0)",
            "ltrim" => "ltrim(__sb0)",
            _ => "rtrim(__sb0)",
        };
        Ok(Typed::new(template(d, t, vec![s])?, Some(ColumnType::Text)))
    }

    fn op_length(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let d = self.dialect;
        let ([s], _) = arity::<1>(n, op, args, 1, "one string")?;
        let s = self.text_arg(lv, s, op)?;
        Ok(Typed::new(flavor::length(d, s)?, Some(ColumnType::Integer)))
    }

    fn op_replace(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let d = self.dialect;
        let ([s, from, to], _) = arity::<3>(
            n,
            op,
            args,
            3,
            "a string, the text to find and its replacement",
        )?;
        let s = self.text_arg(lv, s, op)?;
        let from = self.operand(lv, from, Some(ColumnType::Text))?;
        let to = self.operand(lv, to, Some(ColumnType::Text))?;
        Ok(Typed::new(
            template(d, "replace(__sb0, __sb1, __sb2)", vec![s, from, to])?,
            Some(ColumnType::Text),
        ))
    }

    fn op_coalesce(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let ([first, _], _) = arity::<2>(n, op, args, usize::MAX, "two or more values")?;
        let first = self.expr(lv, first)?;
        let mut parts = vec![first.expr];
        for a in args.iter().skip(1) {
            parts.push(self.operand(lv, a, first.ty)?);
        }
        Ok(Typed::new(sql::call("coalesce", parts), first.ty))
    }

    fn op_math(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let d = self.dialect;
        let ([arg], _) = arity::<1>(n, op, args, 1, "one number")?;
        let x = self.expr(lv, arg)?;
        if !numeric(x.ty) {
            return Err(arg.err(format!("`{op}` needs a number, not a {}", type_name(x.ty))));
        }
        let (e, ty) = match op {
            "abs" => (template(d, "abs(__sb0)", vec![x.expr])?, x.ty),
            "round" => (
                template(d, "round(__sb0)", vec![x.expr])?,
                Some(ColumnType::Integer),
            ),
            "ceil" => (flavor::ceil(d, x.expr)?, Some(ColumnType::Integer)),
            _ => (flavor::floor(d, x.expr)?, Some(ColumnType::Integer)),
        };
        Ok(Typed::new(e, ty))
    }

    fn op_now(
        &mut self,
        _lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let d = self.dialect;
        arity::<0>(n, op, args, 0, "no arguments")?;
        Ok(Typed::new(flavor::now(d)?, Some(ColumnType::Timestamp)))
    }

    fn op_datetime_add(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let d = self.dialect;
        let ([date, amount_arg, unit], _) =
            arity::<3>(n, op, args, 3, "a date, a whole number and a unit")?;
        let x = self.date_arg(lv, date, op)?;
        let mut amount = amount_arg.int("the amount")?;
        if op == "datetime-subtract" {
            amount = amount
                .checked_neg()
                .ok_or_else(|| amount_arg.err("the amount is out of range"))?;
        }
        let unit = self.unit(unit, x.ty)?;
        let ty = x.ty.or(Some(ColumnType::Timestamp));
        Ok(Typed::new(flavor::add(d, x.expr, amount, unit, x.ty)?, ty))
    }

    fn op_get(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let ([date], _) = arity::<1>(n, op, args, 1, "one date")?;
        let part = match op {
            "get-year" => Part::Year,
            "get-quarter" => Part::QuarterOfYear,
            "get-month" => Part::MonthOfYear,
            "get-week" => Part::WeekOfYear,
            "get-day" => Part::DayOfMonth,
            "get-day-of-week" => Part::DayOfWeek,
            "get-hour" => Part::HourOfDay,
            _ => Part::MinuteOfHour,
        };
        self.extract(lv, date, part, op)
    }

    fn op_temporal_extract(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let ([date, part_arg], _) =
            arity::<2>(n, op, args, 2, "a date and a part such as day-of-week")?;
        let text = part_arg.str("the part")?;
        let part = Part::parse(text).ok_or_else(|| {
            part_arg.err(format!(
                "unknown date part `{text}` (expected one of: {})",
                Part::NAMES
            ))
        })?;
        self.extract(lv, date, part, op)
    }

    pub(super) fn text_arg(&mut self, lv: &mut Level<'n>, n: &Node<'n>, op: &str) -> Result<Expr> {
        let t = self.expr(lv, n)?;
        if !textual(t.ty) {
            return Err(n.err(format!("`{op}` needs a string, not a {}", type_name(t.ty))));
        }
        Ok(t.expr)
    }

    pub(super) fn date_arg(&mut self, lv: &mut Level<'n>, n: &Node<'n>, op: &str) -> Result<Typed> {
        let t = self.expr(lv, n)?;
        if !temporal(t.ty) {
            return Err(n.err(format!(
                "`{op}` needs a date or timestamp, not a {}",
                type_name(t.ty)
            )));
        }
        Ok(t)
    }

    /// A unit of time, checked against the column type.
    pub(super) fn unit(&self, n: &Node, ty: Option<ColumnType>) -> Result<Unit> {
        let text = n.str("the unit")?;
        let unit = Unit::parse(text).ok_or_else(|| {
            n.err(format!(
                "unknown unit `{text}` (expected one of: {})",
                Unit::NAMES
            ))
        })?;
        if unit.sub_day() && ty == Some(ColumnType::Date) {
            return Err(n.err(format!(
                "`{text}` is finer than a day, but the column is a date"
            )));
        }
        Ok(unit)
    }

    fn extract(&mut self, lv: &mut Level<'n>, n: &Node<'n>, part: Part, op: &str) -> Result<Typed> {
        let x = self.date_arg(lv, n, op)?;
        if part.sub_day() && x.ty == Some(ColumnType::Date) {
            return Err(n.err(format!(
                "`{op}` is finer than a day, but the column is a date"
            )));
        }
        Ok(Typed::new(
            flavor::extract(self.dialect, part, x.expr)?,
            Some(ColumnType::Integer),
        ))
    }

    /// `["expression", name]`: compiled once, on first use (expressions
    /// may use each other; a cycle is an error).
    fn expression_ref(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let [name_node] = args else {
            return Err(n.err("`expression` takes one name: [\"expression\", \"margin\"]"));
        };
        let name = name_node.str("an expression name")?;
        self.expression_named(lv, name_node, name)
    }

    /// Expression `name`, compiled on first use; errors point at `at`.
    pub(super) fn expression_named(
        &mut self,
        lv: &mut Level<'n>,
        at: &Node<'n>,
        name: &str,
    ) -> Result<Typed> {
        let name_node = at;
        if let Some(t) = lv.done.get(name) {
            return Ok(t.clone());
        }
        let Some(def) = lv.exprs.get(name).cloned() else {
            let names: Vec<&str> = lv.exprs.keys().map(String::as_str).collect();
            return Err(name_node.err(format!(
                "no expression named `{name}` (defined: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        };
        if lv.busy.iter().any(|b| b == name) {
            return Err(name_node.err(format!(
                "expression `{name}` refers to itself (through {})",
                lv.busy.join(" → ")
            )));
        }
        lv.busy.push(name.to_string());
        let r = self.expr(lv, &def);
        lv.busy.pop();
        let mut t = r?;
        t.name = Some(name.to_string());
        t.origin = None;
        lv.done.insert(name.to_string(), t.clone());
        Ok(t)
    }

    fn arithmetic(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        arity::<2>(n, op, args, usize::MAX, "two or more numbers")?;
        let mut parts = Vec::new();
        let mut ty = Some(ColumnType::Integer);
        for a in args {
            let t = self.expr(lv, a)?;
            if !numeric(t.ty) {
                let hint = if temporal(t.ty) {
                    " (use datetime-add / datetime-subtract for dates)"
                } else {
                    ""
                };
                return Err(a.err(format!(
                    "`{op}` needs numbers, not a {}{hint}",
                    type_name(t.ty)
                )));
            }
            ty = match (ty, t.ty) {
                (Some(ColumnType::Integer), Some(ColumnType::Integer)) => Some(ColumnType::Integer),
                (_, None) | (None, _) => None,
                _ => Some(ColumnType::Decimal),
            };
            parts.push(t.expr);
        }
        let mut it = parts.into_iter();
        let first = it.next().unwrap_or_else(null);
        let d = self.dialect;
        let expr = match op {
            "/" => {
                // Never integer division, never a division-by-zero error.
                let mut acc = binop(first, BinaryOperator::Multiply, sql::decimal(1.0));
                for p in it {
                    acc = binop(
                        acc,
                        BinaryOperator::Divide,
                        template(d, "NULLIF(__sb0, 0)", vec![p])?,
                    );
                }
                ty = Some(ColumnType::Decimal);
                acc
            }
            _ => {
                let bop = match op {
                    "+" => BinaryOperator::Plus,
                    "-" => BinaryOperator::Minus,
                    _ => BinaryOperator::Multiply,
                };
                it.fold(first, |acc, p| binop(acc, bop.clone(), p))
            }
        };
        Ok(Typed::new(expr, ty))
    }

    /// `["case", [[condition, value], …], {"default": value}]`.
    fn case(&mut self, lv: &mut Level<'n>, n: &Node<'n>, args: &[Node<'n>]) -> Result<Typed> {
        let ([branches], rest) = arity::<1>(
            n,
            "case",
            args,
            2,
            "a list of [condition, value] pairs and optional {\"default\": value}",
        )?;
        let pairs = branches.items("the `case` branches")?;
        if pairs.is_empty() {
            return Err(branches.err("`case` needs at least one [condition, value] pair"));
        }
        let mut ty: Option<ColumnType> = None;
        let mut whens = Vec::new();
        let mut results = Vec::new();
        for p in &pairs {
            let parts = p.items("a `case` branch")?;
            let [c, v] = parts.as_slice() else {
                return Err(p.err("a `case` branch is [condition, value]"));
            };
            let cond = self.condition(lv, c)?;
            let val = self.expr(lv, v)?;
            if !comparable(ty, val.ty) {
                return Err(v.err(format!(
                    "`case` branches must have one type: this one is {}, an earlier one {}",
                    type_name(val.ty),
                    type_name(ty)
                )));
            }
            ty = ty.or(val.ty);
            if val.ty == Some(ColumnType::Decimal) {
                ty = val.ty;
            }
            results.push(v.clone());
            whens.push((cond, val.expr));
        }
        let otherwise = match rest.first() {
            None => None,
            Some(o) => {
                o.allow_keys(&["default"], "`case` options")?;
                match o.key("default") {
                    Some(dv) => Some(self.operand(lv, &dv, ty)?),
                    None => None,
                }
            }
        };
        Ok(Typed::new(sql::case(whens, otherwise), ty))
    }
}
