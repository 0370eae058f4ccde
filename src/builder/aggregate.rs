//! Aggregations: `count`, `count` of a column, `distinct`, `sum`, `avg`,
//! `min`, `max`, `median`, `percentile`, `count-where`, `sum-where`,
//! `share`, and `aggregation-options` to name one.

use sqlparser::ast::{BinaryOperator, Expr};

use super::flavor;
use super::json::{describe, Node};
use super::scope::check_name;
use super::sql::{binop, case, decimal, int, template};
use super::{Compiler, Level};
use crate::error::Result;
use crate::policy::ColumnType;

/// One compiled aggregation.
pub(super) struct Aggregate {
    pub expr: Expr,
    /// Its output column name (the aggregation's name unless renamed).
    pub name: String,
    pub ty: Option<ColumnType>,
}

impl<'n> Compiler<'_> {
    /// `["sum", ["field", "total"]]`, `["count"]`, ….
    pub(super) fn aggregation(&mut self, lv: &mut Level<'n>, n: &Node<'n>) -> Result<Aggregate> {
        let Some((op, args)) = n.clause() else {
            return Err(n.err(format!(
                "an aggregation is a clause such as [\"count\"] or [\"sum\", [\"field\", \"total\"]], not {}",
                describe(n.v)
            )));
        };
        let d = self.dialect;
        // The single argument of a one-argument aggregation.
        let one = |what: &str| match args.as_slice() {
            [arg] => Ok(arg),
            _ => Err(n.err(format!("`{op}` takes {what}"))),
        };
        let (expr, name, ty) = match op {
            "aggregation-options" => {
                let [inner, opts] = args.as_slice() else {
                    return Err(n.err(
                        "`aggregation-options` takes an aggregation and {\"name\": …}",
                    ));
                };
                opts.allow_keys(&["name", "display-name"], "aggregation options")?;
                let mut agg = self.aggregation(lv, inner)?;
                if let Some(nm) = opts.key("name") {
                    let text = nm.str("`name`")?;
                    check_name(&nm, text, "an aggregation name")?;
                    agg.name = text.to_string();
                }
                return Ok(agg);
            }
            "count" if args.is_empty() => (
                template(d, "count(*)", vec![])?,
                "count",
                Some(ColumnType::Integer),
            ),
            "count" => {
                let arg = one("no argument, or one field")?;
                let x = self.expr(lv, arg)?;
                (
                    template(d, "count(__sb0)", vec![x.expr])?,
                    "count",
                    Some(ColumnType::Integer),
                )
            }
            "distinct" => {
                let arg = one("one field")?;
                let x = self.expr(lv, arg)?;
                (
                    template(d, "count(DISTINCT __sb0)", vec![x.expr])?,
                    "distinct",
                    Some(ColumnType::Integer),
                )
            }
            "sum" | "avg" => {
                let arg = one("one number")?;
                let x = self.number(lv, arg, op)?;
                if op == "sum" {
                    (template(d, "sum(__sb0)", vec![x.0])?, "sum", x.1)
                } else {
                    (
                        template(d, "avg(__sb0)", vec![x.0])?,
                        "avg",
                        Some(ColumnType::Decimal),
                    )
                }
            }
            "min" | "max" => {
                let arg = one("one field")?;
                let x = self.expr(lv, arg)?;
                if x.ty == Some(ColumnType::Boolean) {
                    return Err(arg.err(format!("`{op}` of a condition is not defined")));
                }
                let t = if op == "min" { "min(__sb0)" } else { "max(__sb0)" };
                (template(d, t, vec![x.expr])?, op, x.ty)
            }
            "median" => {
                let arg = one("one number")?;
                let x = self.number(lv, arg, op)?;
                (
                    flavor::percentile(d, x.0, decimal(0.5), op)?,
                    "median",
                    Some(ColumnType::Decimal),
                )
            }
            "percentile" => {
                let [x, p] = args.as_slice() else {
                    return Err(n.err("`percentile` takes a number and a fraction between 0 and 1"));
                };
                let x = self.number(lv, x, op)?;
                let pv = p
                    .v
                    .as_f64()
                    .filter(|v| (0.0..=1.0).contains(v))
                    .ok_or_else(|| p.err("the percentile must be a number between 0 and 1"))?;
                (
                    flavor::percentile(d, x.0, decimal(pv), op)?,
                    "percentile",
                    Some(ColumnType::Decimal),
                )
            }
            "count-where" => {
                let arg = one("one condition")?;
                let c = self.condition(lv, arg)?;
                (
                    template(d, "count(__sb0)", vec![case(vec![(c, int(1))], None)])?,
                    "count_where",
                    Some(ColumnType::Integer),
                )
            }
            "sum-where" => {
                let [x, c] = args.as_slice() else {
                    return Err(n.err("`sum-where` takes a number and a condition"));
                };
                let x = self.number(lv, x, op)?;
                let c = self.condition(lv, c)?;
                (
                    template(d, "sum(__sb0)", vec![case(vec![(c, x.0)], Some(int(0)))])?,
                    "sum_where",
                    x.1,
                )
            }
            "share" => {
                let arg = one("one condition")?;
                let c = self.condition(lv, arg)?;
                let hits = template(d, "count(__sb0)", vec![case(vec![(c, int(1))], None)])?;
                let all = template(d, "NULLIF(count(*), 0)", vec![])?;
                (
                    binop(
                        binop(hits, BinaryOperator::Multiply, decimal(1.0)),
                        BinaryOperator::Divide,
                        all,
                    ),
                    "share",
                    Some(ColumnType::Decimal),
                )
            }
            other => {
                return Err(n.err(format!(
                    "unknown aggregation `{other}` (expected one of: count, distinct, sum, avg, min, max, median, percentile, count-where, sum-where, share, aggregation-options)"
                )))
            }
        };
        Ok(Aggregate {
            expr,
            name: name.to_string(),
            ty,
        })
    }

    fn number(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        op: &str,
    ) -> Result<(Expr, Option<ColumnType>)> {
        let x = self.expr(lv, n)?;
        match x.ty {
            None | Some(ColumnType::Integer) | Some(ColumnType::Decimal) => Ok((x.expr, x.ty)),
            Some(other) => Err(n.err(format!("`{op}` needs a number, not a {other}"))),
        }
    }
}
