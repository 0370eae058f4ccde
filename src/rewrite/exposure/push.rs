//! What may move into a fenced sandbox: row-safe conditions that refer to
//! it alone (directly, through equalities, or through derived tables and
//! once-read CTEs that only filter, join and project), and the top N rows
//! of a block that reads it alone; and the checks the verifier applies to
//! what it finds moved there.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Ident, InTarget, LimitClause, OrderBy, OrderByExpr,
    OrderByKind, OrderBySort, Query, Select, SelectItem, Value,
};

use super::outputs::Origin;
use super::{contains_aggregate, rowsafe, Analysis, ColState};
use crate::dialect::Dialect;
use crate::policy::{ColumnType, Table};

/// Where a condition stands in its query block, for what may move where.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// WHERE, or ON of a top-level inner join: holds for every output row.
    Filter,
    /// ON of a top-level LEFT (RIGHT) join: may move into that join's
    /// right (left) relation when it names nothing else.
    OuterOn(usize),
    /// Anywhere else (nested joins, full joins, HAVING): checked only.
    Other,
}

/// Whether `order_by` and `limit`, found in a fenced basic sandbox of
/// `table`, are a top-N the rewrite may have moved there: plain declared
/// columns of the table (qualified by its bare name), ascending or
/// descending, and a literal row count.
pub(crate) fn is_pushed_top_n(
    order_by: &OrderBy,
    limit: &LimitClause,
    table: &Table,
    dialect: Dialect,
) -> bool {
    let own = dialect.ident(&table.name);
    let OrderByKind::Expressions(exprs) = &order_by.kind else {
        return false;
    };
    let columns_ok = !exprs.is_empty()
        && order_by.interpolate.is_none()
        && exprs.iter().all(|o| {
            o.with_fill.is_none()
                && !matches!(o.options.sort, Some(OrderBySort::Using(_)))
                && matches!(&o.expr, Expr::CompoundIdentifier(p) if matches!(p.as_slice(),
                    [q, col] if dialect.normalize(q) == dialect.normalize(&own)
                        && table.column(&dialect.normalize(col)).is_some()))
        });
    let limit_ok = matches!(limit, LimitClause::LimitOffset {
        limit: Some(Expr::Value(v)),
        offset: None,
        limit_by,
    } if limit_by.is_empty() && matches!(&v.value, Value::Number(n, false) if n.parse::<u64>().is_ok()));
    columns_ok && limit_ok
}

/// Whether `e`, found in a fenced basic sandbox of `table` beyond the
/// sandbox's own filter, is a condition the rewrite may have moved there:
/// row-safe, and naming only declared columns of `table`, qualified by the
/// table's bare name.
pub(crate) fn is_pushed_condition(e: &Expr, table: &Table, dialect: Dialect) -> bool {
    let own = dialect.ident(&table.name);
    let columns = |parts: &[Ident]| match parts {
        [q, col] if dialect.normalize(q) == dialect.normalize(&own) => {
            match table.column(&dialect.normalize(col)) {
                Some(c) => ColState::Typed(c.ty),
                None => ColState::Unsafe,
            }
        }
        _ => ColState::Unsafe,
    };
    rowsafe::is_row_safe(e, dialect, &columns)
}

impl<'a> Analysis<'a, '_> {
    // ----- conditions that may move into fenced sandboxes ----------------

    /// `SELECT … FROM <basic sandbox> WHERE <row-safe, all moved inside>
    /// ORDER BY <its columns> LIMIT n [OFFSET m]`: the sandbox may return
    /// only its first n + m rows in that order (the query block filters
    /// nothing more, so they are the rows it would keep).
    pub(super) fn top_n(&mut self, q: &Query, s: &Select) {
        let Some([only]) = self.blocks.last().map(Vec::as_slice) else {
            return;
        };
        let Some((ptr, table)) = only.sandbox else {
            return;
        };
        let plain_group =
            matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
        if !plain_group
            || s.distinct.is_some()
            || s.top.is_some()
            || s.select_modifiers.is_some()
            || s.having.is_some()
            || !s.named_window.is_empty()
            || s.qualify.is_some()
            || s.prewhere.is_some()
            || !s.sort_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || s.from.len() != 1
            || q.fetch.is_some()
        {
            return;
        }
        let dialect = self.dialect;
        // The select list must keep one row per input row and name its
        // columns predictably: plain columns, `*`, and row-safe expressions
        // under an explicit alias (a set-returning function would multiply
        // rows; an unaliased expression's implicit name — `id::text` is
        // `id` on PostgreSQL — could be what ORDER BY means).
        let mut aliases = Vec::new();
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(Expr::Identifier(_) | Expr::CompoundIdentifier(_))
                | SelectItem::Wildcard(_)
                | SelectItem::QualifiedWildcard(..) => {}
                SelectItem::ExprWithAlias { expr, alias }
                    if !contains_aggregate(expr, dialect)
                        && self.state(expr) != ColState::Unsafe =>
                {
                    aliases.push(dialect.normalize(alias).into_owned())
                }
                _ => return,
            }
        }
        if let Some(w) = &s.selection {
            if !rowsafe::conjuncts(w)
                .into_iter()
                .all(|c| self.is_pushable(c) && self.sole_owner(c) == Some(0))
            {
                return;
            }
        }
        let Some(order_by) = &q.order_by else {
            return;
        };
        let OrderByKind::Expressions(exprs) = &order_by.kind else {
            return;
        };
        if exprs.is_empty() || order_by.interpolate.is_some() {
            return;
        }
        let own = dialect.ident(&table.name);
        let mut moved = Vec::new();
        for o in exprs {
            if o.with_fill.is_some() || matches!(o.options.sort, Some(OrderBySort::Using(_))) {
                return;
            }
            let parts: &[Ident] = match &o.expr {
                // An unqualified name may be a select-list alias.
                Expr::Identifier(i) if !aliases.contains(&dialect.normalize(i).into_owned()) => {
                    std::slice::from_ref(i)
                }
                Expr::CompoundIdentifier(p) => p,
                _ => return,
            };
            let Some((0, col)) = self.owner(parts) else {
                return;
            };
            let Some(column) = table.column(&col) else {
                return;
            };
            moved.push(OrderByExpr {
                expr: Expr::CompoundIdentifier(vec![own.clone(), dialect.ident(&column.name)]),
                options: o.options.clone(),
                with_fill: None,
            });
        }
        let number = |e: &Expr| match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, false) => n.parse::<u64>().ok(),
                _ => None,
            },
            _ => None,
        };
        let rows = match &q.limit_clause {
            Some(LimitClause::LimitOffset {
                limit: Some(l),
                offset,
                limit_by,
            }) if limit_by.is_empty() => {
                let skip = match offset {
                    None => Some(0),
                    Some(o) => number(&o.value),
                };
                number(l).zip(skip).and_then(|(n, m)| n.checked_add(m))
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => number(limit)
                .zip(number(offset))
                .and_then(|(n, m)| n.checked_add(m)),
            _ => None,
        };
        let Some(rows) = rows else {
            return;
        };
        let limit = LimitClause::LimitOffset {
            limit: Some(Expr::value(Value::Number(rows.to_string(), false))),
            offset: None,
            limit_by: vec![],
        };
        let order = OrderBy {
            kind: OrderByKind::Expressions(moved),
            interpolate: None,
        };
        if is_pushed_top_n(&order, &limit, table, dialect) {
            self.out.top_n.push((ptr, order, limit));
        }
    }

    /// Copies `c` for the sandbox it alone refers to, if it may move there.
    pub(super) fn push_candidate(&mut self, c: &Expr, place: Place) {
        if place == Place::Other || !self.is_pushable(c) {
            return;
        }
        let Some(owner) = self.sole_owner(c) else {
            return;
        };
        let Some(block) = self.blocks.last() else {
            return;
        };
        let Some(source) = block.get(owner) else {
            return;
        };
        let allowed = match place {
            Place::Filter => !source.nullable,
            Place::OuterOn(i) => i == owner,
            Place::Other => false,
        };
        if !allowed {
            return;
        }
        if let Some((ptr, table)) = source.sandbox {
            self.add_push(ptr, table, c, None);
            return;
        }
        // Through a derived table or CTE, to the sandbox its columns come
        // from.
        let mut target: Option<Origin<'a>> = None;
        let mut renames: Vec<(String, String)> = Vec::new();
        let consistent = sqlparser::ast::visit_expressions(c, |x| {
            let parts: &[Ident] = match x {
                Expr::Identifier(i) => std::slice::from_ref(i),
                Expr::CompoundIdentifier(p) => p,
                _ => return ControlFlow::Continue(()),
            };
            let Some(o) = self
                .owner(parts)
                .and_then(|(_, col)| source.outputs.origin(&col).map(|o| (col, o)))
            else {
                return ControlFlow::Break(());
            };
            let (col, o) = o;
            match &mut target {
                None => target = Some(o.clone()),
                Some(t) if t.ptr == o.ptr => {
                    for c in o.ctes.iter() {
                        if !t.ctes.contains(c) {
                            t.ctes.push(*c);
                        }
                    }
                }
                Some(_) => return ControlFlow::Break(()),
            }
            renames.push((col, o.column));
            ControlFlow::Continue(())
        })
        .is_continue();
        let (true, Some(t)) = (consistent, target) else {
            return;
        };
        let own = self.dialect.ident(&t.table.name);
        let dialect = self.dialect;
        let mut e = c.clone();
        let _ = sqlparser::ast::visit_expressions_mut(&mut e, |x| {
            let col = match x {
                Expr::Identifier(i) => dialect.normalize(i).into_owned(),
                Expr::CompoundIdentifier(p) => match p.last() {
                    Some(i) => dialect.normalize(i).into_owned(),
                    None => return ControlFlow::Continue(()),
                },
                _ => return ControlFlow::Continue(()),
            };
            if let Some(column) = renames
                .iter()
                .find(|(from, _)| *from == col)
                .and_then(|(_, to)| t.table.column(to))
            {
                *x = Expr::CompoundIdentifier(vec![own.clone(), dialect.ident(&column.name)]);
            }
            ControlFlow::<()>::Continue(())
        });
        if !is_pushed_condition(&e, t.table, self.dialect) {
            return;
        }
        if t.ctes.is_empty() {
            if !self.out.pushes.iter().any(|(p, x)| *p == t.ptr && *x == e) {
                self.out.pushes.push((t.ptr, e));
            }
        } else {
            self.through_ctes.push((t.ptr, e, t.ctes));
        }
    }

    /// Row-safe, without subqueries, and with at least one column.
    pub(super) fn is_pushable(&self, c: &Expr) -> bool {
        let mut has_column = false;
        let no_sub = sqlparser::ast::visit_expressions(c, |x| {
            match x {
                Expr::Identifier(_) | Expr::CompoundIdentifier(_) => has_column = true,
                Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::In {
                    target: InTarget::Subquery(_) | InTarget::Table { .. },
                    ..
                } => return ControlFlow::Break(()),
                _ => {}
            }
            ControlFlow::Continue(())
        })
        .is_continue();
        no_sub && has_column && rowsafe::is_row_safe(c, self.dialect, &|p| self.resolve(p))
    }

    /// The FROM item of the innermost block that every column of `c`
    /// belongs to.
    pub(super) fn sole_owner(&self, c: &Expr) -> Option<usize> {
        let mut owner = None;
        let ok = sqlparser::ast::visit_expressions(c, |x| {
            let parts: &[Ident] = match x {
                Expr::Identifier(i) => std::slice::from_ref(i),
                Expr::CompoundIdentifier(p) => p,
                _ => return ControlFlow::Continue(()),
            };
            match (self.owner(parts), owner) {
                (Some((i, _)), None) => {
                    owner = Some(i);
                    ControlFlow::Continue(())
                }
                (Some((i, _)), Some(o)) if i == o => ControlFlow::Continue(()),
                _ => ControlFlow::Break(()),
            }
        })
        .is_continue();
        if ok {
            owner
        } else {
            None
        }
    }

    /// Records `c` (with `column` renamed to `rename`, when given) for the
    /// sandbox at `ptr`, its columns qualified by the table's bare name.
    pub(super) fn add_push(
        &mut self,
        ptr: *const Query,
        table: &Table,
        c: &Expr,
        rename: Option<&Ident>,
    ) {
        let own = self.dialect.ident(&table.name);
        let mut e = c.clone();
        let _ = sqlparser::ast::visit_expressions_mut(&mut e, |x| {
            let col = match x {
                Expr::Identifier(i) => i.clone(),
                Expr::CompoundIdentifier(p) => match p.last() {
                    Some(i) => i.clone(),
                    None => return ControlFlow::Continue(()),
                },
                _ => return ControlFlow::Continue(()),
            };
            let col = rename.cloned().unwrap_or(col);
            *x = Expr::CompoundIdentifier(vec![own.clone(), col]);
            ControlFlow::<()>::Continue(())
        });
        if !is_pushed_condition(&e, table, self.dialect) {
            return;
        }
        if !self.out.pushes.iter().any(|(p, x)| *p == ptr && *x == e) {
            self.out.pushes.push((ptr, e));
        }
    }

    /// Conditions implied through equalities: with `o.account_id = a.id`
    /// and `a.id IN (1, 2)`, `o.account_id IN (1, 2)` moves into `o`'s
    /// sandbox. Only for numbers, dates and timestamps (text
    /// equality depends on each column's collation; a MariaDB UUID column
    /// equals CHAR spellings a text comparison does not), and only from
    /// conditions that hold for every output row.
    pub(super) fn equality_chains(&mut self, conditions: &[(&Expr, Place, &'static str)]) {
        let mut nodes: Vec<(usize, String)> = Vec::new();
        let mut parent: Vec<usize> = Vec::new();
        let mut single: Vec<(usize, &Expr)> = Vec::new();
        fn find(parent: &mut [usize], mut i: usize) -> usize {
            while let Some(&p) = parent.get(i) {
                if p == i {
                    break;
                }
                i = p;
            }
            i
        }
        let Some(block) = self.blocks.last() else {
            return;
        };
        let transferable = |st: ColState| {
            matches!(
                st,
                ColState::Typed(
                    ColumnType::Integer
                        | ColumnType::Decimal
                        | ColumnType::Date
                        | ColumnType::Timestamp
                )
            )
        };
        let node =
            |nodes: &mut Vec<(usize, String)>, parent: &mut Vec<usize>, key: (usize, String)| {
                match nodes.iter().position(|n| *n == key) {
                    Some(i) => i,
                    None => {
                        nodes.push(key);
                        parent.push(nodes.len() - 1);
                        nodes.len() - 1
                    }
                }
            };
        for (cond, place, _) in conditions {
            if *place != Place::Filter {
                continue;
            }
            for c in rowsafe::conjuncts(cond) {
                if let Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } = c
                {
                    let col = |e: &Expr| match e {
                        Expr::Identifier(i) => Some(vec![i.clone()]),
                        Expr::CompoundIdentifier(p) => Some(p.clone()),
                        _ => None,
                    };
                    if let (Some(l), Some(r)) = (col(left), col(right)) {
                        let (ls, rs) = (self.resolve(&l), self.resolve(&r));
                        if let (Some(lo), Some(ro), true) =
                            (self.owner(&l), self.owner(&r), ls == rs && transferable(ls))
                        {
                            if block.get(lo.0).is_some_and(|s| !s.nullable)
                                && block.get(ro.0).is_some_and(|s| !s.nullable)
                            {
                                let a = node(&mut nodes, &mut parent, lo);
                                let b = node(&mut nodes, &mut parent, ro);
                                let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                                if let Some(slot) = parent.get_mut(ra) {
                                    *slot = rb;
                                }
                            }
                        }
                        continue;
                    }
                }
                // A condition on one column of one FROM item.
                let mut cols = Vec::new();
                let _ = sqlparser::ast::visit_expressions(c, |x| {
                    match x {
                        Expr::Identifier(i) => cols.push(vec![i.clone()]),
                        Expr::CompoundIdentifier(p) => cols.push(p.clone()),
                        _ => {}
                    }
                    ControlFlow::<()>::Continue(())
                });
                let owners: Vec<Option<(usize, String)>> =
                    cols.iter().map(|p| self.owner(p)).collect();
                if let Some(Some(first)) = owners.first() {
                    if owners.iter().all(|o| o.as_ref() == Some(first))
                        && transferable(self.resolve(cols.first().map_or(&[][..], |v| v)))
                        && self.is_pushable(c)
                    {
                        let i = node(&mut nodes, &mut parent, first.clone());
                        single.push((i, c));
                    }
                }
            }
        }
        if single.is_empty() {
            return;
        }
        let mut moves = Vec::new();
        for (i, c) in &single {
            let root = find(&mut parent, *i);
            for (j, (src, col)) in nodes.iter().enumerate() {
                if j == *i || find(&mut parent, j) != root {
                    continue;
                }
                let Some(source) = block.get(*src) else {
                    continue;
                };
                let (Some((ptr, table)), false) = (source.sandbox, source.nullable) else {
                    continue;
                };
                // Same declared type on both ends.
                let to_state = table
                    .column(col)
                    .map_or(ColState::Untyped, |c| ColState::Typed(c.ty));
                let from = nodes
                    .get(*i)
                    .and_then(|(s, c)| block.get(*s).and_then(|src| src.outputs.lookup(c)));
                let Some(column) = table.column(col) else {
                    continue;
                };
                if from != Some(to_state) {
                    continue;
                }
                let ident = self.dialect.ident(&column.name);
                moves.push((ptr, table, (*c).clone(), ident));
            }
        }
        for (ptr, table, c, col) in moves {
            self.add_push(ptr, table, &c, Some(&col));
        }
    }
}
