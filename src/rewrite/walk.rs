//! One visitor type for every walk over a query at rewrite time.
//!
//! sqlparser's traversal is generic over the visitor, so each visitor type
//! brings its own copy of the traversal code for every node type, and that
//! code is large (the `Expr` match alone is kilobytes). A rewrite runs
//! several walks right after the parser has filled the instruction cache;
//! with one visitor type they all share one copy. The walks differ only in
//! their [`Hooks`], called through a trait object.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, OrderByExpr, Query, Select, Statement, TableFactor, ValueWithSpan, VisitMut,
    VisitorMut,
};

use crate::error::{Error, Result};

/// What a walk does at the nodes it cares about. Each hook runs before the
/// node's children are walked, except `post_visit_query`, which runs after.
pub(crate) trait Hooks {
    fn pre_visit_query(&mut self, _q: &mut Query) -> ControlFlow<Error> {
        ControlFlow::Continue(())
    }
    fn post_visit_query(&mut self, _q: &mut Query) -> ControlFlow<Error> {
        ControlFlow::Continue(())
    }
    fn pre_visit_expr(&mut self, _e: &mut Expr) -> ControlFlow<Error> {
        ControlFlow::Continue(())
    }
    fn pre_visit_relation(&mut self, _name: &mut ObjectName) -> ControlFlow<Error> {
        ControlFlow::Continue(())
    }
    fn pre_visit_table_factor(&mut self, _f: &mut TableFactor) -> ControlFlow<Error> {
        ControlFlow::Continue(())
    }
    fn pre_visit_value(&mut self, _v: &mut ValueWithSpan) -> ControlFlow<Error> {
        ControlFlow::Continue(())
    }
    fn pre_visit_select(&mut self, _s: &mut Select) -> ControlFlow<Error> {
        ControlFlow::Continue(())
    }
    fn pre_visit_statement(&mut self, _s: &mut Statement) -> ControlFlow<Error> {
        ControlFlow::Continue(())
    }
    fn pre_visit_order_by_expr(&mut self, _o: &mut OrderByExpr) -> ControlFlow<Error> {
        ControlFlow::Continue(())
    }
}

/// The one visitor type.
struct Walk<'h>(&'h mut dyn Hooks);

impl VisitorMut for Walk<'_> {
    type Break = Error;

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<Error> {
        self.0.pre_visit_query(q)
    }
    fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<Error> {
        self.0.post_visit_query(q)
    }
    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
        self.0.pre_visit_expr(e)
    }
    fn pre_visit_relation(&mut self, name: &mut ObjectName) -> ControlFlow<Error> {
        self.0.pre_visit_relation(name)
    }
    fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<Error> {
        self.0.pre_visit_table_factor(f)
    }
    fn pre_visit_value(&mut self, v: &mut ValueWithSpan) -> ControlFlow<Error> {
        self.0.pre_visit_value(v)
    }
    fn pre_visit_select(&mut self, s: &mut Select) -> ControlFlow<Error> {
        self.0.pre_visit_select(s)
    }
    fn pre_visit_statement(&mut self, s: &mut Statement) -> ControlFlow<Error> {
        self.0.pre_visit_statement(s)
    }
    fn pre_visit_order_by_expr(&mut self, o: &mut OrderByExpr) -> ControlFlow<Error> {
        self.0.pre_visit_order_by_expr(o)
    }
}

/// Walks `node` depth first, calling `hooks`; stops at the first error.
pub(crate) fn walk<N: VisitMut>(node: &mut N, hooks: &mut dyn Hooks) -> Result<()> {
    match node.visit(&mut Walk(hooks)) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}
