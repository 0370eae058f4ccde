//! `["field", …]` references: a column of the main source or of a join,
//! followed through a declared foreign key (`fk`, an implicit join), and
//! shaped by `temporal-unit` (truncation or extraction) or `binning`.

use sqlparser::ast::{BinaryOperator, Join};

use super::flavor::{self, Part, Strategy, Unit};
use super::json::Node;
use super::scope::{check_name, Implicit, Source};
use super::sql::{binop, column, decimal, paren};
use super::{Compiler, Level, Typed};
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::{ColumnType, Table};

/// The type a truncation to `unit` returns in dialect `d`.
fn truncated_type(d: Dialect, unit: Unit) -> ColumnType {
    match d {
        Dialect::Postgres | Dialect::Duckdb | Dialect::Redshift => ColumnType::Timestamp,
        _ if unit.sub_day() => ColumnType::Timestamp,
        _ => ColumnType::Date,
    }
}

impl<'n> Compiler<'_> {
    /// `["field", name]` or `["field", name, {options}]`.
    pub(super) fn field(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let (name_node, opts) =
            match args {
                [a] => (a, None),
                [a, o] => (a, Some(o)),
                _ => return Err(n.err(
                    "`field` takes a name and optional options: [\"field\", \"orders.total\", {…}]",
                )),
            };
        let name = name_node.str("a field name")?;
        let mut join_alias = None;
        let mut fk = None;
        let mut unit = None;
        let mut binning = None;
        if let Some(o) = opts {
            o.allow_keys(
                &[
                    "join-alias",
                    "fk",
                    "temporal-unit",
                    "binning",
                    "base-type",
                    "effective-type",
                ],
                "field options",
            )?;
            join_alias = o.key("join-alias");
            fk = o.key("fk");
            unit = o.key("temporal-unit");
            binning = o.key("binning");
        }
        let (mut t, via) = self.column_ref(lv, name_node, name, join_alias.as_ref())?;
        if let Some(fk) = fk {
            t = self.follow_fk(lv, &fk, t, via)?;
        }
        match (unit, binning) {
            (Some(u), Some(b)) => Err(b.err(format!(
                "a field takes `temporal-unit` or `binning`, not both (temporal unit at {})",
                u.path
            ))),
            (Some(u), None) => self.temporal(&u, t),
            (None, Some(b)) => self.bin(&b, t),
            (None, None) => Ok(t),
        }
    }

    /// Resolves a column name; returns it with the alias of its source.
    fn column_ref(
        &self,
        lv: &Level,
        n: &Node,
        name: &str,
        join_alias: Option<&Node>,
    ) -> Result<(Typed, String)> {
        let (idx, col) = if let Some(a) = join_alias {
            let alias = a.str("`join-alias`")?;
            let i = self.find_source(lv, a, alias)?;
            (i, name)
        } else if lv.sources.first().is_some_and(|s| {
            let k = self.key(name);
            s.columns.iter().any(|c| c.key == k)
                || s.hidden.as_ref().is_some_and(|h| h.keys.contains(&k))
        }) {
            (0, name)
        } else if let Some((q, c)) = name.split_once('.') {
            let i = self.find_source(lv, n, q)?;
            (i, c)
        } else {
            (0, name)
        };
        let src = lv
            .sources
            .get(idx)
            .ok_or_else(|| Error::Verification("a query without a source".into()))?;
        let key = self.key(col);
        if let Some(h) = &src.hidden {
            if h.keys.contains(&key) {
                return Err(Error::HiddenColumn {
                    column: col.to_string(),
                    table: h.table.clone(),
                    hidden_by: h.hidden_by.clone(),
                });
            }
        }
        let Some(c) = src.columns.iter().find(|c| c.key == key) else {
            let elsewhere: Vec<String> = lv
                .sources
                .iter()
                .filter(|s| s.columns.iter().any(|c| c.key == key))
                .map(|s| format!("{}.{col}", s.alias))
                .collect();
            let hint = if elsewhere.is_empty() || idx != 0 || name.contains('.') {
                String::new()
            } else {
                format!("; did you mean {}?", elsewhere.join(" or "))
            };
            return Err(n.err(format!(
                "`{}` has no column `{col}` (it has: {}){hint}",
                src.alias,
                src.names()
            )));
        };
        Ok((
            Typed {
                expr: column(self.dialect, &src.alias, &c.name),
                ty: c.ty,
                name: Some(src.output_name(&c.name)),
                origin: c.origin.clone(),
            },
            src.alias.clone(),
        ))
    }

    fn find_source(&self, lv: &Level, n: &Node, alias: &str) -> Result<usize> {
        let k = self.key(alias);
        lv.sources.iter().position(|s| s.key == k).ok_or_else(|| {
            let names: Vec<&str> = lv.sources.iter().map(|s| s.alias.as_str()).collect();
            n.err(format!(
                "no table or join named `{alias}` here (sources: {})",
                names.join(", ")
            ))
        })
    }

    /// `{"fk": "products.category"}`: the column of the table the base
    /// column's declared foreign key points at, through a LEFT JOIN added
    /// once per (source, key column). The joined table is sandboxed like
    /// any table reference.
    fn follow_fk(&mut self, lv: &mut Level, fk: &Node, base: Typed, via: String) -> Result<Typed> {
        let target_text = fk.str("`fk`")?;
        if lv.in_join {
            return Err(fk.err("implicit joins (`fk`) cannot be used in a join condition; join the table explicitly"));
        }
        let origin = base.origin.clone().ok_or_else(|| {
            fk.err("`fk` follows a declared foreign key, but this field is not a table column")
        })?;
        let def = origin.table.foreign_key(&origin.column).ok_or_else(|| {
            fk.err(format!(
                "column `{}.{}` has no declared foreign key (declare `foreign_keys` on table `{}` in the policy)",
                origin.table.name,
                origin.column,
                origin.table.qualified()
            ))
        })?;
        let target =
            self.db.table(&def.target).cloned().ok_or_else(|| {
                Error::Verification("a foreign key points at a missing table".into())
            })?;
        let col_text = match target_text.split_once('.') {
            Some((t, c)) => {
                if self.key(t) != target.key.name {
                    return Err(fk.err(format!(
                        "the foreign key `{}.{}` points at table `{}`, not `{t}`",
                        origin.table.name, origin.column, target.name
                    )));
                }
                c
            }
            None => target_text,
        };
        let key = (self.key(&via), origin.column.clone());
        if let Some(existing) = lv.implicit.iter().find(|i| i.via == key) {
            return self.implicit_column(&existing.source, fk, col_text, &target);
        }
        let alias = if lv.sources.first().is_some_and(|s| s.alias == via) {
            format!("{}__via__{}", target.name, origin.column)
        } else {
            format!("{}__via__{via}__{}", target.name, origin.column)
        };
        check_name(fk, &alias, "the implicit join alias")?;
        let akey = self.key(&alias);
        if lv.sources.iter().any(|s| s.key == akey) {
            return Err(fk.err(format!(
                "a join is already named `{alias}`, the name of this implicit join"
            )));
        }
        let (mut source, factor) = self.table_source(&target, &alias)?;
        source.joined = true;
        let on = binop(
            base.expr.clone(),
            BinaryOperator::Eq,
            column(
                self.dialect,
                &alias,
                &target_column_name(&target, &def.target_column),
            ),
        );
        let join = Join {
            relation: *factor,
            global: false,
            join_operator: flavor::join(self.dialect, Strategy::Left, on)?,
        };
        // Looked up before the join is recorded, as `source` moves into it.
        let typed = self.implicit_column(&source, fk, col_text, &target)?;
        lv.implicit.push(Implicit {
            via: key,
            source,
            join,
        });
        Ok(typed)
    }

    /// Column `col_text` of the table an implicit join reached.
    fn implicit_column(
        &self,
        src: &Source,
        fk: &Node,
        col_text: &str,
        target: &Table,
    ) -> Result<Typed> {
        let ckey = self.key(col_text);
        if let Some(h) = &src.hidden {
            if h.keys.contains(&ckey) {
                return Err(Error::HiddenColumn {
                    column: col_text.to_string(),
                    table: h.table.clone(),
                    hidden_by: h.hidden_by.clone(),
                });
            }
        }
        let c = src.columns.iter().find(|c| c.key == ckey).ok_or_else(|| {
            fk.err(format!(
                "table `{}` has no column `{col_text}` (it has: {})",
                target.name,
                src.names()
            ))
        })?;
        Ok(Typed {
            expr: column(self.dialect, &src.alias, &c.name),
            ty: c.ty,
            name: Some(src.output_name(&c.name)),
            origin: c.origin.clone(),
        })
    }

    /// `temporal-unit`: a truncation (`month`) or an extraction
    /// (`day-of-week`).
    fn temporal(&self, u: &Node, t: Typed) -> Result<Typed> {
        let text = u.str("`temporal-unit`")?;
        if !matches!(
            t.ty,
            None | Some(ColumnType::Date) | Some(ColumnType::Timestamp)
        ) {
            return Err(u.err(format!(
                "`temporal-unit` needs a date or timestamp; `{}` is {}",
                t.name.as_deref().unwrap_or("this field"),
                t.ty.map(|t| t.to_string()).unwrap_or_default()
            )));
        }
        let date = t.ty == Some(ColumnType::Date);
        let name = t.name.clone();
        if let Some(unit) = Unit::parse(text) {
            if date && unit.sub_day() {
                return Err(u.err(format!(
                    "`{text}` is finer than a day, but the column is a date"
                )));
            }
            return Ok(Typed {
                expr: flavor::truncate(self.dialect, unit, t.expr)?,
                ty: Some(truncated_type(self.dialect, unit)),
                name,
                origin: None,
            });
        }
        if let Some(part) = Part::parse(text) {
            if date && part.sub_day() {
                return Err(u.err(format!(
                    "`{text}` is finer than a day, but the column is a date"
                )));
            }
            return Ok(Typed {
                expr: flavor::extract(self.dialect, part, t.expr)?,
                ty: Some(ColumnType::Integer),
                name,
                origin: None,
            });
        }
        Err(u.err(format!(
            "unknown temporal unit `{text}` (truncations: {}; extractions: {})",
            Unit::NAMES,
            Part::NAMES
        )))
    }

    /// `binning`: `{"strategy": "bin-width", "bin-width": 10}` or
    /// `{"strategy": "num-bins", "num-bins": 8, "min-value": 0, "max-value": 400}`
    /// (sqlsandbox keeps no column statistics, so the range is given).
    fn bin(&self, b: &Node, t: Typed) -> Result<Typed> {
        b.allow_keys(
            &[
                "strategy",
                "bin-width",
                "num-bins",
                "min-value",
                "max-value",
            ],
            "binning options",
        )?;
        if !matches!(
            t.ty,
            None | Some(ColumnType::Integer) | Some(ColumnType::Decimal)
        ) {
            return Err(b.err("`binning` needs a number column"));
        }
        let num = |k: &str| -> Result<Option<f64>> {
            match b.key(k) {
                None => Ok(None),
                Some(v) => {
                    v.v.as_f64()
                        .filter(|x| x.is_finite())
                        .map(Some)
                        .ok_or_else(|| v.err(format!("`{k}` must be a number")))
                }
            }
        };
        let strategy_node = b
            .key("strategy")
            .ok_or_else(|| b.err("binning needs a `strategy`: bin-width or num-bins"))?;
        let strategy = strategy_node.str("`strategy`")?;
        let (width, min) = match strategy {
            "bin-width" => {
                let w = num("bin-width")?
                    .ok_or_else(|| b.err("the bin-width strategy needs `bin-width`"))?;
                (w, num("min-value")?.unwrap_or(0.0))
            }
            "num-bins" => {
                let n_node = b
                    .key("num-bins")
                    .ok_or_else(|| b.err("the num-bins strategy needs `num-bins`"))?;
                let n = n_node.int("`num-bins`")?;
                if !(1..=10_000).contains(&n) {
                    return Err(n_node.err("`num-bins` must be between 1 and 10000"));
                }
                let (Some(lo), Some(hi)) = (num("min-value")?, num("max-value")?) else {
                    return Err(b.err("the num-bins strategy needs `min-value` and `max-value` (sqlsandbox keeps no column statistics)"));
                };
                if hi <= lo {
                    return Err(b.err("`max-value` must be above `min-value`"));
                }
                ((hi - lo) / n as f64, lo)
            }
            other => {
                return Err(strategy_node.err(format!(
                    "unknown binning strategy `{other}` (bin-width or num-bins)"
                )))
            }
        };
        if !(width > 0.0 && width.is_finite()) {
            return Err(b.err("the bin width must be a positive number"));
        }
        // min + floor((x - min) / width) * width
        let shifted = if min == 0.0 {
            t.expr
        } else {
            binop(t.expr, BinaryOperator::Minus, decimal(min))
        };
        let bucket = flavor::floor(
            self.dialect,
            binop(paren(shifted), BinaryOperator::Divide, decimal(width)),
        )?;
        let mut expr = binop(bucket, BinaryOperator::Multiply, decimal(width));
        if min != 0.0 {
            expr = binop(decimal(min), BinaryOperator::Plus, expr);
        }
        Ok(Typed {
            expr,
            ty: Some(ColumnType::Decimal),
            name: t.name,
            origin: None,
        })
    }
}

fn target_column_name(table: &Table, key: &str) -> String {
    table
        .column(key)
        .map(|c| c.name.clone())
        .unwrap_or_else(|| key.to_string())
}
