//! The independent verifier: a proof over the final AST, in code that
//! shares nothing with the rewrite but the name resolver ([`crate::scope`])
//! and the function policy.
//!
//! It walks the query with sqlparser's complete visitor — every field of
//! every node, so no slot (a `TABLESAMPLE` argument, a hint, a `LIMIT`
//! subquery) can be forgotten — and proves:
//! - every relation read is either a sandbox subquery equal, by value, to
//!   one built for this principal; or a declared table the principal may
//!   read unrestricted, named with its schema (so the database's search
//!   path cannot move it); or a CTE in scope (whose body is proven where it
//!   is defined); or a derived table, whose body it proves too. Tables the
//!   policy does not declare pass for administrators only;
//! - no relation is read outside a FROM item (SQLite's `x IN table`);
//! - every function called outside the sandboxes is allowed, and so is
//!   every table function in FROM;
//! - nothing writes, locks, or changes the session (no statement inside the
//!   query, no `SELECT … INTO`, no locking clause).
//!
//! Hidden columns need no separate proof: a column hidden by a custom
//! sandbox is not in the sandbox's output, and every read of the table goes
//! through the sandbox, so no clause at any depth can name it.
//!
//! - a sandbox appears as built, or fenced with the dialect's fence, or
//!   fenced with extra conditions ANDed after its own filter that are
//!   row-safe and name only its table's declared columns (so they can only
//!   narrow it); a sandbox without the fence is accepted only when the
//!   exposure analysis ([`crate::rewrite::exposure`]) finds nothing the
//!   database could evaluate on the rows it filters out that is not
//!   row-safe (or the fence mode is `never`).
//!
//! What it does not prove: that the sandboxes themselves are right (they
//! are compared with the ones the policy defines, built by
//! `rewrite::sandbox`).

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, OrderByExpr, Query, Select, SetExpr, Statement, TableFactor, Value,
    ValueWithSpan,
};

use crate::access::{self, Decision};
use crate::bind::{BoundParam, TEMP_PLACEHOLDER};
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::functions;
use crate::policy::{Database, FenceMode, Policy, Table};
use crate::principal::Principal;
use crate::rewrite::exposure::{self, Catalog};
use crate::rewrite::rowsafe::conjuncts;
use crate::rewrite::walk::{self, Hooks};
use crate::rewrite::{fence_clause, Built};
use crate::scope::{Binding, Tracker};

/// What [`check`] found, when the walk itself passed.
pub(crate) enum Verdict {
    /// Safe.
    Proven,
    /// Safe but for a sandbox without the fence that the query's
    /// expression `why` could reach on the rows it filters out.
    Unfenced {
        /// The sandbox's table.
        table: String,
        /// The expression, described.
        why: String,
    },
}

/// Proves `query` safe for `principal`; `sandboxes` are the sandbox
/// subqueries built for this principal (compared by value), `mode` the
/// fence mode in force.
#[allow(clippy::too_many_arguments)]
pub(crate) fn verify(
    policy: &Policy,
    db: &Database,
    dialect: Dialect,
    principal: &Principal,
    sandboxes: &[Built<'_>],
    params: &[BoundParam],
    mode: FenceMode,
    query: &mut Query,
) -> Result<()> {
    match check(policy, db, dialect, principal, sandboxes, params, mode, query)? {
        Verdict::Proven => Ok(()),
        Verdict::Unfenced { table, why } => Err(Error::Verification(format!(
            "the sandbox of {table} is not fenced, but the database could evaluate {why} on the rows it filters out"
        ))),
    }
}

/// As [`verify`], but a missing fence is reported rather than refused, so
/// that the rewrite can add it (`fence: auto` checks a query once on its
/// fast path: here). `params` are the values bound so far, for the
/// placeholders sqlsandbox made.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check(
    policy: &Policy,
    db: &Database,
    dialect: Dialect,
    principal: &Principal,
    sandboxes: &[Built<'_>],
    params: &[BoundParam],
    mode: FenceMode,
    query: &mut Query,
) -> Result<Verdict> {
    let mut v = Verifier {
        policy,
        db,
        dialect,
        principal,
        sandboxes,
        params,
        scope: Tracker::new(),
        frames: Vec::new(),
        in_sandbox: 0,
        next_sandbox: Vec::new(),
        approved: None,
        accepted: Vec::new(),
        fence: None,
    };
    walk::walk(query, &mut v)?;
    let unfenced = v.accepted.iter().find(|a| !a.fenced);
    if let (Some(first), true) = (
        unfenced,
        mode != FenceMode::Never && dialect.fence() != crate::Fence::None,
    ) {
        let table = v
            .sandboxes
            .get(first.index)
            .map_or_else(String::new, |b| b.table.qualified());
        let found = exposure::analyse(query, dialect, &v, false);
        if let Some(why) = found.unsafe_at {
            return Ok(Verdict::Unfenced { table, why });
        }
    }
    Ok(Verdict::Proven)
}

/// A sandbox subquery the walk accepted.
struct Accepted {
    ptr: *const Query,
    /// Index into the built sandboxes.
    index: usize,
    fenced: bool,
}

impl<'a> Catalog<'a> for Verifier<'a> {
    fn sandbox(&self, q: &Query) -> Option<(&'a Table, bool)> {
        let ptr = q as *const Query;
        let a = self.accepted.iter().find(|a| a.ptr == ptr)?;
        self.sandboxes.get(a.index).map(|b| (b.table, b.basic))
    }

    fn table(
        &self,
        schema: Option<&sqlparser::ast::Ident>,
        name: &sqlparser::ast::Ident,
    ) -> Option<&'a Table> {
        let db: &'a Database = self.db;
        let schema = match schema {
            Some(s) => self.dialect.normalize(s),
            None => std::borrow::Cow::Borrowed(db.default_schema.as_str()),
        };
        db.lookup(&schema, &self.dialect.normalize(name))
            .map(|t| &**t)
    }
}

fn fail(msg: String) -> ControlFlow<Error> {
    ControlFlow::Break(Error::Verification(msg))
}

/// What entering a query did, undone when it is left.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// A query inside a sandbox: nothing.
    InSandbox,
    /// A sandbox subquery (its body is the policy's).
    Sandbox,
    /// A query of the user's: a scope frame.
    Scoped,
}

struct Verifier<'a> {
    policy: &'a Policy,
    db: &'a Database,
    dialect: Dialect,
    principal: &'a Principal,
    sandboxes: &'a [Built<'a>],
    /// The values bound so far, for sqlsandbox's own placeholders.
    params: &'a [BoundParam],
    /// The sandboxes found, in the order met.
    accepted: Vec<Accepted>,
    /// The dialect's fence clause, made once when first needed.
    fence: Option<Option<sqlparser::ast::LimitClause>>,
    scope: Tracker,
    frames: Vec<Frame>,
    /// How many sandbox subqueries enclose the current node.
    in_sandbox: usize,
    /// Derived-table subqueries found equal to a sandbox, about to be
    /// entered.
    next_sandbox: Vec<*const Query>,
    /// The table name the last FROM item approved, which the visitor
    /// visits next as a relation.
    approved: Option<*const ObjectName>,
}

impl Verifier<'_> {
    /// Which built sandbox `q` is, and whether it is fenced: equal to one,
    /// or to one with the dialect's fence, or to a basic one with the fence
    /// and row-safe conditions on its own columns ANDed after its filter.
    fn match_sandbox(&mut self, q: &Query) -> Option<(usize, bool)> {
        if let Some(i) = self.sandboxes.iter().position(|b| b.query == *q) {
            return Some((i, false));
        }
        let fence = self
            .fence
            .get_or_insert_with(|| {
                let mut empty = Query::clone(&self.sandboxes.first()?.query);
                empty.limit_clause = None;
                empty.fetch = None;
                fence_clause(&mut empty, self.dialect.fence());
                empty.limit_clause
            })
            .clone();
        let fence = fence?;
        // The fence (a custom question may keep its own ORDER BY), or a
        // top-N moved inside (a LIMIT fences too).
        if q.limit_clause.as_ref() == Some(&fence) {
            let mut c = q.clone();
            c.limit_clause = None;
            if let Some(found) = self.fenced_form(c, None) {
                return Some(found);
            }
        }
        let mut c = q.clone();
        let order_by = c.order_by.take()?;
        let limit = c.limit_clause.take()?;
        self.fenced_form(c, Some((order_by, limit)))
    }

    /// Which built sandbox `c` (a sandbox with its fence or top-N taken
    /// off) is, with row-safe conditions on its own columns ANDed after its
    /// filter or not, and whether `top_n` may have moved into it.
    fn fenced_form(
        &self,
        mut c: Query,
        top_n: Option<(sqlparser::ast::OrderBy, sqlparser::ast::LimitClause)>,
    ) -> Option<(usize, bool)> {
        let top_n_ok = |table: &Table, dialect: Dialect| match &top_n {
            None => true,
            Some((o, l)) => exposure::is_pushed_top_n(o, l, table, dialect),
        };
        if let Some(i) = self.sandboxes.iter().position(|b| b.query == c) {
            let b = self.sandboxes.get(i)?;
            return (top_n.is_none() || (b.basic && top_n_ok(b.table, self.dialect)))
                .then_some((i, true));
        }
        let SetExpr::Select(select) = c.body.as_mut() else {
            return None;
        };
        let Some(Expr::BinaryOp {
            left,
            op: sqlparser::ast::BinaryOperator::And,
            right,
        }) = select.selection.take()
        else {
            return None;
        };
        let (Expr::Nested(own), Expr::Nested(moved)) = (*left, *right) else {
            return None;
        };
        select.selection = Some(*own);
        let i = self
            .sandboxes
            .iter()
            .position(|b| b.basic && b.query == c)?;
        let table = self.sandboxes.get(i)?.table;
        (top_n_ok(table, self.dialect)
            && conjuncts(&moved)
                .into_iter()
                .all(|e| exposure::is_pushed_condition(e, table, self.dialect)))
        .then_some((i, true))
    }

    fn query_clauses(&self, q: &Query) -> Result<()> {
        let refuse = |what: &str| {
            Err(Error::Verification(format!(
                "{what} in the rewritten query"
            )))
        };
        if !q.locks.is_empty() {
            return refuse("a locking clause");
        }
        if q.for_clause.is_some() {
            return refuse("FOR XML / FOR JSON");
        }
        if q.settings.is_some() {
            return refuse("SETTINGS");
        }
        if q.format_clause.is_some() {
            return refuse("FORMAT");
        }
        if !q.pipe_operators.is_empty() {
            return refuse("pipe operators");
        }
        if let Some(with) = &q.with {
            if with.cte_tables.iter().any(|c| c.from.is_some()) {
                return refuse("a CTE with FROM");
            }
        }
        set_expr(&q.body)
    }

    fn table(&mut self, name: &ObjectName, has_args: bool) -> Result<()> {
        if has_args {
            functions::check_table_function(name, self.dialect, &self.policy.functions)?;
            return Ok(());
        }
        let (schema, table) = match self.scope.resolve(name, self.dialect)? {
            Binding::Cte => return Ok(()),
            Binding::Table { schema, name } => (schema, name),
        };
        let schema_key = match schema {
            Some(s) => self.dialect.normalize(s),
            None => std::borrow::Cow::Borrowed(self.db.default_schema.as_str()),
        };
        let Some(t) = self.db.lookup(&schema_key, &self.dialect.normalize(table)) else {
            if self.principal.is_admin() {
                return Ok(());
            }
            return Err(Error::Verification(format!(
                "the undeclared table {name} is read"
            )));
        };
        match access::decide(self.policy, self.principal, self.db, t)? {
            Decision::Unrestricted { .. } if schema.is_some() => Ok(()),
            Decision::Unrestricted { .. } => Err(Error::Verification(format!(
                "{} is read without its schema",
                t.qualified()
            ))),
            Decision::Sandboxed(_) => Err(Error::Verification(format!(
                "{} is read outside its sandbox",
                t.qualified()
            ))),
        }
    }
}

/// Refuses what a query body may not be: anything but SELECT, VALUES, set
/// operations and parenthesised queries (which are visited as queries).
fn set_expr(s: &SetExpr) -> Result<()> {
    match s {
        SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) => Ok(()),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr(left)?;
            set_expr(right)
        }
        SetExpr::Table(_) => Err(Error::Verification(
            "`TABLE name` (a table read the walk cannot see) in the rewritten query".into(),
        )),
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => Err(
            Error::Verification("a data-modifying statement in the rewritten query".into()),
        ),
    }
}

fn select(s: &Select) -> Result<()> {
    let refuse = |what: &str| {
        Err(Error::Verification(format!(
            "{what} in the rewritten query"
        )))
    };
    if s.into.is_some() {
        return refuse("SELECT … INTO");
    }
    if !s.optimizer_hints.is_empty() {
        return refuse("an optimizer hint");
    }
    if !s.lateral_views.is_empty() {
        return refuse("LATERAL VIEW");
    }
    if !s.connect_by.is_empty() {
        return refuse("CONNECT BY");
    }
    Ok(())
}

impl Hooks for Verifier<'_> {
    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<Error> {
        let ptr = q as *const Query;
        if self.in_sandbox > 0 {
            self.frames.push(Frame::InSandbox);
            return ControlFlow::Continue(());
        }
        if let Some(i) = self.next_sandbox.iter().position(|p| *p == ptr) {
            self.next_sandbox.swap_remove(i);
            self.in_sandbox += 1;
            self.frames.push(Frame::Sandbox);
            return ControlFlow::Continue(());
        }
        if let Err(e) = self
            .query_clauses(q)
            .and_then(|()| self.scope.enter(q, self.dialect))
        {
            return ControlFlow::Break(e);
        }
        self.frames.push(Frame::Scoped);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<Error> {
        match self.frames.pop() {
            Some(Frame::InSandbox) => {}
            Some(Frame::Sandbox) => self.in_sandbox -= 1,
            Some(Frame::Scoped) => {
                if let Err(e) = self.scope.leave(q) {
                    return ControlFlow::Break(e);
                }
            }
            None => return fail("the walk left a query it never entered".into()),
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &mut Select) -> ControlFlow<Error> {
        if self.in_sandbox > 0 {
            return ControlFlow::Continue(());
        }
        match select(s) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }

    fn pre_visit_order_by_expr(&mut self, o: &mut OrderByExpr) -> ControlFlow<Error> {
        if self.in_sandbox > 0 {
            return ControlFlow::Continue(());
        }
        match &o.options.sort {
            Some(sqlparser::ast::OrderBySort::Using(op)) => {
                match functions::check_order_using(op) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => ControlFlow::Break(e),
                }
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_statement(&mut self, _s: &mut Statement) -> ControlFlow<Error> {
        fail("a statement inside the rewritten query".into())
    }

    fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<Error> {
        if self.in_sandbox > 0 {
            return ControlFlow::Continue(());
        }
        let res = match f {
            TableFactor::Table { name, args, .. } => {
                let res = self.table(name, args.is_some());
                self.approved = Some(name as *const ObjectName);
                res
            }
            TableFactor::Derived { subquery, .. } => {
                if let Some((index, fenced)) = self.match_sandbox(subquery) {
                    let ptr = &**subquery as *const Query;
                    self.next_sandbox.push(ptr);
                    self.accepted.push(Accepted { ptr, index, fenced });
                }
                Ok(())
            }
            TableFactor::Function { name, .. } => {
                functions::check_table_function(name, self.dialect, &self.policy.functions)
            }
            TableFactor::NestedJoin { .. }
            | TableFactor::UNNEST { .. }
            | TableFactor::JsonTable { .. } => Ok(()),
            TableFactor::TableFunction { .. }
            | TableFactor::OpenJsonTable { .. }
            | TableFactor::Pivot { .. }
            | TableFactor::Unpivot { .. }
            | TableFactor::UnpivotExpr { .. }
            | TableFactor::MatchRecognize { .. }
            | TableFactor::XmlTable { .. }
            | TableFactor::SemanticView { .. } => Err(Error::Verification(format!(
                "the FROM item `{f}` in the rewritten query"
            ))),
        };
        match res {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }

    fn pre_visit_relation(&mut self, name: &mut ObjectName) -> ControlFlow<Error> {
        if self.in_sandbox > 0 {
            return ControlFlow::Continue(());
        }
        if self.approved.take() == Some(name as *const ObjectName) {
            return ControlFlow::Continue(());
        }
        fail(format!(
            "the table `{name}` is read outside a FROM item of the rewritten query"
        ))
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
        if self.in_sandbox > 0 {
            return ControlFlow::Continue(());
        }
        let params = self.params;
        let bound = |p: &str| {
            let i: usize = p.strip_prefix(TEMP_PLACEHOLDER)?.parse().ok()?;
            Some(match &params.get(i)?.value {
                crate::value::Scalar::Text(t) => std::borrow::Cow::Borrowed(t.as_str()),
                other => std::borrow::Cow::Owned(other.to_string()),
            })
        };
        // `LIKE` patterns are checked here, with the values bound so far:
        // the planner matches them against every tenant's statistics.
        let res = functions::check_expr(e, self.dialect, &self.policy.functions)
            .and_then(|()| functions::pattern::check(e, self.dialect, &bound));
        match res {
            Ok(()) => ControlFlow::Continue(()),
            Err(err) => ControlFlow::Break(err),
        }
    }

    fn pre_visit_value(&mut self, v: &mut ValueWithSpan) -> ControlFlow<Error> {
        // A bind placeholder that sqlsandbox did not make is the caller's:
        // its value would be bound by someone who never saw the policy
        // (and collide with the parameters sqlsandbox binds).
        match &v.value {
            Value::Placeholder(p)
                if self.in_sandbox == 0 && !p.starts_with(crate::bind::TEMP_PLACEHOLDER) =>
            {
                ControlFlow::Break(Error::unsupported(format!(
                    "the bind placeholder `{p}` in the query (sqlsandbox binds its own parameters)"
                )))
            }
            _ => ControlFlow::Continue(()),
        }
    }
}
