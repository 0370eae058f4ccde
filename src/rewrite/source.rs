//! The row source of a custom sandbox question: the one read of the
//! sandboxed table inside the question, where a modifier of the user's
//! reference (`ONLY`, a carried system column) is applied.
//!
//! Moving a modifier into the question is faithful only when each row the
//! question returns comes from one row of that read: the question reads the
//! table exactly once, in the FROM clause of its one SELECT, and does not
//! group, deduplicate, aggregate or use window functions. Otherwise
//! `ONLY t` could make the question return rows (or aggregates over fewer
//! rows) it never returns for `t`, so the query is refused.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, GroupByExpr, ObjectNamePart, Query, Select, SetExpr, TableFactor, Visit, Visitor,
};

use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::Table;

/// Aggregate functions (PostgreSQL, MySQL, SQLite and the SQL standard): one
/// in a question's select list makes it non-row-wise.
pub(super) const AGGREGATES: &[&str] = &[
    "any_value",
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "corr",
    "count",
    "covar_pop",
    "covar_samp",
    "every",
    "group_concat",
    "json_agg",
    "json_arrayagg",
    "json_group_array",
    "json_group_object",
    "json_object_agg",
    "json_objectagg",
    "jsonb_agg",
    "jsonb_object_agg",
    "listagg",
    "max",
    "min",
    "mode",
    "percentile_cont",
    "percentile_disc",
    "range_agg",
    "range_intersect_agg",
    "std",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "sum",
    "total",
    "var_pop",
    "var_samp",
    "variance",
    "xmlagg",
];

/// Whether `name` (a table name in a sandbox question, which the policy
/// compiler schema-qualified) may be `table`. Only the last part is
/// compared: a name that might be the table counts as a read of it.
fn may_be(name: &sqlparser::ast::ObjectName, table: &Table, dialect: Dialect) -> bool {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(id)) => dialect.normalize(id) == table.key.name.as_str(),
        // A computed name could be anything.
        _ => true,
    }
}

/// Whether `name` is exactly `table` (schema and name).
fn is_exactly(name: &sqlparser::ast::ObjectName, table: &Table, dialect: Dialect) -> bool {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(s), ObjectNamePart::Identifier(t)] => {
            dialect.normalize(s) == table.key.schema.as_str()
                && dialect.normalize(t) == table.key.name.as_str()
        }
        _ => false,
    }
}

/// How many table references in `query` may read `table`.
fn reads(query: &Query, table: &Table, dialect: Dialect) -> usize {
    struct Count<'t> {
        table: &'t Table,
        dialect: Dialect,
        n: usize,
    }
    impl Visitor for Count<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name, args: None, ..
            } = f
            {
                if may_be(name, self.table, self.dialect) {
                    self.n += 1;
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut c = Count {
        table,
        dialect,
        n: 0,
    };
    let _ = query.visit(&mut c);
    c.n
}

/// Why `select` is not row-wise, if it is not.
fn not_row_wise(select: &Select) -> Option<&'static str> {
    let grouped = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) => !exprs.is_empty() || !modifiers.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if grouped || select.having.is_some() {
        return Some("groups rows");
    }
    if select.distinct.is_some() {
        return Some("is DISTINCT");
    }
    if select.qualify.is_some() || !select.named_window.is_empty() || select.top.is_some() {
        return Some("uses named windows, QUALIFY or TOP");
    }
    // Any qualifier counts here: a name that might be an aggregate makes
    // the question not row-wise, which only refuses more.
    if select
        .projection
        .iter()
        .any(|item| contains_aggregate(item, Dialect::Generic, AggregateNames::AnyQualifier))
    {
        return Some("aggregates or uses window functions");
    }
    None
}

/// Which function names count as aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AggregateNames {
    /// Unqualified names only (PostgreSQL finds `pg_catalog`'s first): a
    /// qualified `s.sum` could be a scalar function run on every row. For
    /// checks where calling something an aggregate makes it safe.
    OnePart,
    /// The last part of any name, ASCII case-insensitively. For checks
    /// where calling something an aggregate only refuses more.
    AnyQualifier,
}

/// Whether `f` is an aggregate or a window function call.
pub(super) fn is_aggregate_call(
    f: &sqlparser::ast::Function,
    dialect: Dialect,
    names: AggregateNames,
) -> bool {
    if f.over.is_some() || !f.within_group.is_empty() || f.filter.is_some() {
        return true;
    }
    match (f.name.0.as_slice(), names) {
        ([ObjectNamePart::Identifier(n)], AggregateNames::OnePart) => {
            AGGREGATES.contains(&dialect.normalize(n).as_ref())
        }
        ([.., last], AggregateNames::AnyQualifier) => last
            .as_ident()
            .is_some_and(|i| AGGREGATES.contains(&i.value.to_ascii_lowercase().as_str())),
        _ => false,
    }
}

/// Whether `node` calls an aggregate (or window function) outside any
/// subquery (a scalar subquery's aggregates are its own).
pub(super) fn contains_aggregate<V: Visit>(
    node: &V,
    dialect: Dialect,
    names: AggregateNames,
) -> bool {
    struct Find {
        dialect: Dialect,
        names: AggregateNames,
        depth: usize,
    }
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Function(f)
                    if self.depth == 0 && is_aggregate_call(f, self.dialect, self.names) =>
                {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    node.visit(&mut Find {
        dialect,
        names,
        depth: 0,
    })
    .is_break()
}

/// The one read of `table` in a custom sandbox question, if the question
/// is row-wise over it (see the module documentation); `what` names the
/// modifier for the error.
pub(super) fn row_source<'q>(
    query: &'q mut Query,
    table: &Table,
    question: &str,
    dialect: Dialect,
    what: &str,
) -> Result<&'q mut TableFactor> {
    let refuse = |why: &str| {
        Err(Error::unsupported(format!(
            "{what} on sandboxed table {} whose sandbox question `{question}` {why} ({what} cannot be moved into the question faithfully)",
            table.qualified()
        )))
    };
    let n = reads(query, table, dialect);
    if n != 1 {
        return refuse(&format!("reads the table {n} times (not once)"));
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return refuse("is not a single SELECT");
    };
    if let Some(why) = not_row_wise(select) {
        return refuse(why);
    }
    let found = select
        .from
        .iter_mut()
        .flat_map(|twj| {
            std::iter::once(&mut twj.relation).chain(twj.joins.iter_mut().map(|j| &mut j.relation))
        })
        .find(|f| matches!(f, TableFactor::Table { name, args: None, .. } if is_exactly(name, table, dialect)));
    match found {
        Some(f) => Ok(f),
        None => refuse("does not read the table directly in its FROM clause"),
    }
}
