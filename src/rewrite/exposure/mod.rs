//! Exposure analysis: which of a rewritten query's expressions the
//! database may evaluate on rows a sandbox filters out, whether all of them
//! are row-safe ([`super::rowsafe`]), and which row-safe conditions may move
//! into a fenced sandbox.
//!
//! Without a fence, a planner may evaluate, at the scan of a sandboxed
//! table and before (or instead of) the sandbox's own filter:
//! - every condition of WHERE, JOIN … ON and HAVING (a HAVING condition
//!   without an aggregate moves to WHERE), at every level of the query;
//! - the select-list expressions of derived tables, CTEs, custom sandbox
//!   questions and set-operation branches that such a condition refers to
//!   (planners pull subqueries up and substitute their columns);
//! - the arguments of table functions in FROM (evaluated per row when
//!   lateral).
//!
//! Those are what this analysis checks. Everything else runs on rows that
//! passed every filter: the outermost select list, aggregate arguments and
//! window functions (computed above the joins and filters of their query
//! block), GROUP BY and ORDER BY keys. A derived table's column computed by
//! an expression that is not row-safe is marked [`ColState::Unsafe`], so a
//! condition that refers to it is not row-safe either; an aggregate's or a
//! window function's output is computed after filtering, so it is not.
//!
//! The analysis reads the tree after the rewrite: sandbox subqueries are
//! recognised through a [`Catalog`] (by address in the rewrite, by value in
//! the verifier) and their bodies — the policy's conditions — are not
//! checked; a custom sandbox's select list is, since outer conditions reach
//! it. It is one pass over the query's clauses, and subqueries are analysed
//! where they stand with their enclosing scopes visible (correlation).

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, JoinConstraint,
    JoinOperator, LimitClause, ObjectNamePart, OrderBy, OrderByKind, Query, Select, SelectItem,
    SetExpr, TableAlias, TableFactor, TableWithJoins, Visit, Visitor,
};

mod outputs;
mod push;

use super::rowsafe::{self, ColState};
use crate::dialect::Dialect;
use crate::policy::{ColumnType, Table};
use crate::scope::{Binding, Ctes};
use outputs::{merge, Origin, Outputs};
use push::Place;
pub(crate) use push::{is_pushed_condition, is_pushed_top_n};

/// What the analysis needs to know about the relations of a rewritten
/// query.
pub(crate) trait Catalog<'a> {
    /// If `q` is a sandbox subquery: its table, and whether it is a basic
    /// sandbox (`SELECT * FROM t WHERE …`, into which conditions may move).
    fn sandbox(&self, q: &Query) -> Option<(&'a Table, bool)>;
    /// A declared table read by name (unrestricted, or inside a custom
    /// sandbox's question).
    fn table(&self, schema: Option<&Ident>, name: &Ident) -> Option<&'a Table>;
}

/// The result of the analysis.
#[derive(Debug, Default)]
pub(crate) struct Exposure {
    /// The first expression the database could evaluate on filtered-out
    /// rows that is not row-safe, described; `None` when there is none
    /// (the sandboxes need no fence).
    pub unsafe_at: Option<String>,
    /// Row-safe conditions that may move into a fenced basic sandbox (the
    /// sandbox's address, the condition with its columns qualified by the
    /// table's bare name).
    pub pushes: Vec<(*const Query, Expr)>,
    /// `ORDER BY … LIMIT n` that may move into a fenced basic sandbox read
    /// alone by a query block whose every condition moved inside too.
    pub top_n: Vec<(*const Query, OrderBy, LimitClause)>,
}

/// Analyses `q`. `pushes` says whether to collect the conditions that may
/// move into fenced sandboxes.
pub(crate) fn analyse<'a>(
    q: &Query,
    dialect: Dialect,
    catalog: &dyn Catalog<'a>,
    pushes: bool,
) -> Exposure {
    let mut a = Analysis {
        dialect,
        catalog,
        ctes: Ctes::new(),
        cte_outputs: Vec::new(),
        cte_refs: Vec::new(),
        through_ctes: Vec::new(),
        blocks: Vec::new(),
        sub_outputs: Vec::new(),
        trusted: 0,
        floor: None,
        collect: pushes,
        out: Exposure::default(),
    };
    a.query(q);
    let refs = std::mem::take(&mut a.cte_refs);
    for (ptr, e, ctes) in std::mem::take(&mut a.through_ctes) {
        if ctes.iter().all(|c| refs.get(*c) == Some(&1))
            && !a.out.pushes.iter().any(|(p, x)| *p == ptr && *x == e)
        {
            a.out.pushes.push((ptr, e));
        }
    }
    a.out
}

/// A FROM item of the query block being analysed.
#[derive(Debug)]
struct Source<'a> {
    /// The normalised name it is referred to by ("" when it has none).
    key: String,
    outputs: Outputs<'a>,
    /// The basic sandbox it is: (address, table).
    sandbox: Option<(*const Query, &'a Table)>,
    /// On the nullable side of an outer join (conditions of WHERE must not
    /// move into it).
    nullable: bool,
}

struct Analysis<'a, 'c> {
    dialect: Dialect,
    catalog: &'c dyn Catalog<'a>,
    ctes: Ctes,
    /// Per query entered: its CTEs' names and outputs (once analysed).
    cte_outputs: Vec<Vec<(String, Option<Outputs<'a>>, usize)>>,
    /// Per CTE defined (by number): how many times the query reads it.
    cte_refs: Vec<usize>,
    /// Conditions that move through CTEs: kept only if each is read once.
    through_ctes: Vec<(*const Query, Expr, Vec<usize>)>,
    /// The FROM items of the enclosing query blocks, innermost last.
    blocks: Vec<Vec<Source<'a>>>,
    /// Outputs of the subqueries met in expressions, by address.
    sub_outputs: Vec<(*const Query, Outputs<'a>)>,
    /// Depth inside custom sandbox questions (the policy's conditions:
    /// outputs are computed, conditions not checked).
    trusted: usize,
    /// Inside a subquery of an expression (or a LATERAL one): how many
    /// query blocks enclose it. It runs once per row of those blocks —
    /// possibly a row a sandbox filters out — so every expression in it
    /// that reads their columns must be row-safe.
    floor: Option<usize>,
    collect: bool,
    out: Exposure,
}

/// Whether `f` is an aggregate or a window function call (one-part names:
/// the analysis treats its output as computed after filtering).
pub(crate) fn is_aggregate_call(f: &sqlparser::ast::Function, dialect: Dialect) -> bool {
    super::source::is_aggregate_call(f, dialect, super::source::AggregateNames::OnePart)
}

/// Whether `e` calls an aggregate (or window function) outside any
/// subquery.
fn contains_aggregate(e: &Expr, dialect: Dialect) -> bool {
    super::source::contains_aggregate(e, dialect, super::source::AggregateNames::OnePart)
}

/// A short description of an expression for messages.
fn describe(e: &Expr, clause: &str) -> String {
    let mut text = e.to_string();
    if text.len() > 120 {
        let mut cut = 117;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    format!("`{text}` in {clause}")
}

impl<'a> Analysis<'a, '_> {
    /// Records the first unsafe expression (described only then).
    fn fail(&mut self, what: impl FnOnce() -> String) {
        if self.trusted == 0 && self.out.unsafe_at.is_none() {
            self.out.unsafe_at = Some(what());
        }
    }

    /// Whether the answer is known and nothing more is wanted.
    fn done(&self) -> bool {
        !self.collect && self.out.unsafe_at.is_some()
    }

    // ----- queries -------------------------------------------------------

    fn query(&mut self, q: &Query) -> Outputs<'a> {
        if self.done() {
            return Outputs::open();
        }
        if let Err(e) = self.ctes.enter(q.with.as_ref(), self.dialect) {
            self.fail(|| e.to_string());
            return Outputs::open();
        }
        let mut names = Vec::new();
        for c in q.with.iter().flat_map(|w| &w.cte_tables) {
            self.cte_refs.push(0);
            names.push((
                self.dialect.cte_key(&c.alias.name).into_owned(),
                None,
                self.cte_refs.len() - 1,
            ));
        }
        self.cte_outputs.push(names);
        if let Some(with) = &q.with {
            for (i, cte) in with.cte_tables.iter().enumerate() {
                self.ctes.enter_cte_body(i, with.recursive);
                let mut outs = self
                    .query(&cte.query)
                    .rename(Some(&cte.alias), self.dialect);
                if let Some(slot) = self.cte_outputs.last_mut().and_then(|f| f.get_mut(i)) {
                    for o in outs.origins.iter_mut().flatten() {
                        o.ctes.push(slot.2);
                    }
                    slot.1 = Some(outs);
                }
            }
        }
        self.ctes.enter_body();
        let outs = match q.body.as_ref() {
            SetExpr::Select(s) => {
                let outs = self.select(s);
                if self.collect && self.trusted == 0 {
                    self.top_n(q, s);
                }
                if let (Some(floor), 0) = (self.floor, self.trusted) {
                    self.correlated_query(q, floor);
                }
                // ORDER BY, LIMIT and FETCH see the SELECT's FROM items.
                self.subqueries_in(&q.order_by, &[]);
                self.subqueries_in(&q.limit_clause, &[]);
                self.subqueries_in(&q.fetch, &[]);
                self.blocks.pop();
                outs
            }
            body => {
                let outs = self.set_expr(body);
                if let (Some(floor), 0) = (self.floor, self.trusted) {
                    self.correlated_query(q, floor);
                }
                self.subqueries_in(&q.order_by, &[]);
                self.subqueries_in(&q.limit_clause, &[]);
                self.subqueries_in(&q.fetch, &[]);
                outs
            }
        };
        self.cte_outputs.pop();
        self.ctes.leave();
        let mut outs = outs;
        if q.limit_clause.is_some() || q.fetch.is_some() {
            // A condition moved below a LIMIT changes which rows it keeps.
            outs.origins.clear();
        }
        outs
    }

    fn set_expr(&mut self, s: &SetExpr) -> Outputs<'a> {
        match s {
            SetExpr::Select(sel) => {
                let outs = self.select(sel);
                self.blocks.pop();
                outs
            }
            SetExpr::Query(q) => self.query(q),
            SetExpr::SetOperation { left, right, .. } => {
                let l = self.set_expr(left);
                let r = self.set_expr(right);
                l.union(&r)
            }
            SetExpr::Values(v) => {
                self.subqueries_in(v, &[]);
                // Rows of VALUES in FROM (LATERAL ones per outer row) may
                // be computed only when a row reaches them.
                if self.trusted == 0 {
                    for e in v.rows.iter().flat_map(|r| &r.content) {
                        if self.state(e) == ColState::Unsafe {
                            self.fail(|| describe(e, "VALUES"));
                        }
                    }
                }
                Outputs::open()
            }
            other => {
                self.fail(|| format!("the query body `{other}`"));
                Outputs::open()
            }
        }
    }

    /// Analyses a SELECT; leaves its FROM items on `blocks` (the caller
    /// pops them after ORDER BY).
    fn select(&mut self, s: &Select) -> Outputs<'a> {
        let mut sources = Vec::new();
        let mut derived = Vec::new();
        let mut conditions: Vec<(&Expr, Place, &'static str)> = Vec::new();
        let mut using = Vec::new();
        for twj in &s.from {
            self.joined(
                twj,
                false,
                true,
                &mut sources,
                &mut derived,
                &mut conditions,
                &mut using,
            );
        }
        self.blocks.push(sources);
        // A name in a condition may be a select-list alias: MySQL/MariaDB
        // resolve HAVING names to aliases first, SQLite takes an alias in
        // WHERE — and in a subquery anywhere in the SELECT — when no column
        // has the name. While the subqueries and conditions are analysed,
        // the aliases stand beside the FROM items, so a name that could be
        // either gets the worse of the two. (Typed before the subqueries
        // are: an alias of an expression holding one is unsafe here.)
        let aliases = self.aliases(s);
        let with_aliases = !aliases.cols.is_empty();
        if with_aliases {
            if let Some(b) = self.blocks.last_mut() {
                b.push(Source {
                    key: String::new(),
                    outputs: aliases,
                    sandbox: None,
                    nullable: true,
                });
            }
        }
        // Subqueries anywhere in this SELECT but its FROM items' bodies.
        self.subqueries_in(s, &derived);
        let outs = self.projection_without_aliases(s, with_aliases);
        if let Some(w) = &s.selection {
            conditions.push((w, Place::Filter, "WHERE"));
        }
        if let Some(w) = &s.prewhere {
            conditions.push((w, Place::Other, "PREWHERE"));
        }
        if let Some(w) = &s.qualify {
            conditions.push((w, Place::Other, "QUALIFY"));
        }
        let having: Vec<&Expr> = s.having.iter().flat_map(rowsafe::conjuncts).collect();
        if self.trusted == 0 {
            for (cond, place, clause) in &conditions {
                for c in rowsafe::conjuncts(cond) {
                    self.condition(c, clause);
                    if self.collect {
                        self.push_candidate(c, *place);
                    }
                }
            }
            for c in having {
                // A HAVING condition with an aggregate runs on groups; one
                // without can move to WHERE.
                if !contains_aggregate(c, self.dialect) {
                    self.condition(c, "HAVING");
                }
            }
            for (cols, natural) in using {
                self.using(&cols, natural);
            }
            if let Some(floor) = self.floor {
                self.correlated_select(s, floor);
            }
            if self.collect {
                self.equality_chains(&conditions);
            }
        }
        if with_aliases {
            if let Some(b) = self.blocks.last_mut() {
                b.pop();
            }
        }
        outs
    }

    /// The projection's outputs, computed with the alias source (if any)
    /// set aside, so that `*` does not list it.
    fn projection_without_aliases(&mut self, s: &Select, with_aliases: bool) -> Outputs<'a> {
        let parked = if with_aliases {
            self.blocks.last_mut().and_then(Vec::pop)
        } else {
            None
        };
        let outs = self.projection(s);
        if let (Some(src), Some(b)) = (parked, self.blocks.last_mut()) {
            b.push(src);
        }
        outs
    }

    /// The select list's explicit aliases (not `col AS col`), as columns.
    fn aliases(&self, s: &Select) -> Outputs<'a> {
        let mut out = Outputs::default();
        for item in &s.projection {
            if let SelectItem::ExprWithAlias { expr, alias } = item {
                let name = self.dialect.normalize(alias);
                let same = match expr {
                    Expr::Identifier(i) => self.dialect.normalize(i) == name,
                    Expr::CompoundIdentifier(p) => {
                        p.last().is_some_and(|i| self.dialect.normalize(i) == name)
                    }
                    _ => false,
                };
                if !same {
                    out.cols
                        .push((Some(name.into_owned()), self.item_state(expr)));
                }
            }
        }
        out
    }

    /// Collects the FROM items of `twj` and its join conditions.
    #[allow(clippy::too_many_arguments)]
    fn joined<'q>(
        &mut self,
        twj: &'q TableWithJoins,
        nullable: bool,
        top: bool,
        sources: &mut Vec<Source<'a>>,
        derived: &mut Vec<*const Query>,
        conditions: &mut Vec<(&'q Expr, Place, &'static str)>,
        using: &mut Vec<(Vec<String>, bool)>,
    ) {
        let first = sources.len();
        self.factor(&twj.relation, nullable, sources, derived, conditions, using);
        for join in &twj.joins {
            use JoinOperator as J;
            let (left_nullable, right_nullable, constraint) = match &join.join_operator {
                J::Join(c) | J::Inner(c) | J::StraightJoin(c) => (false, false, Some(c)),
                J::CrossJoin(c) => (false, false, Some(c)),
                J::Left(c) | J::LeftOuter(c) => (false, true, Some(c)),
                J::Right(c) | J::RightOuter(c) => (true, false, Some(c)),
                J::FullOuter(c) => (true, true, Some(c)),
                J::Semi(c)
                | J::LeftSemi(c)
                | J::RightSemi(c)
                | J::Anti(c)
                | J::LeftAnti(c)
                | J::RightAnti(c) => (true, true, Some(c)),
                J::CrossApply => (false, false, None),
                J::OuterApply => (false, true, None),
                other => {
                    self.fail(|| format!("the join `{other:?}`"));
                    (true, true, None)
                }
            };
            if left_nullable {
                for s in sources.iter_mut().skip(first) {
                    s.nullable = true;
                }
            }
            let right_index = sources.len();
            self.factor(
                &join.relation,
                nullable || right_nullable,
                sources,
                derived,
                conditions,
                using,
            );
            let right_single = sources.len() == right_index + 1;
            match constraint {
                Some(JoinConstraint::On(e)) => {
                    let place = match (top, left_nullable, right_nullable) {
                        (true, false, false) => Place::Filter,
                        (true, false, true) if right_single => Place::OuterOn(right_index),
                        _ => Place::Other,
                    };
                    conditions.push((e, place, "JOIN … ON"));
                }
                Some(JoinConstraint::Using(cols)) => using.push((
                    cols.iter()
                        .filter_map(|c| match c.0.as_slice() {
                            [ObjectNamePart::Identifier(i)] => {
                                Some(self.dialect.normalize(i).into_owned())
                            }
                            _ => None,
                        })
                        .collect(),
                    false,
                )),
                Some(JoinConstraint::Natural | JoinConstraint::UsingAlias(..)) => {
                    using.push((Vec::new(), true))
                }
                Some(JoinConstraint::None) | None => {}
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn factor<'q>(
        &mut self,
        f: &'q TableFactor,
        nullable: bool,
        sources: &mut Vec<Source<'a>>,
        derived: &mut Vec<*const Query>,
        conditions: &mut Vec<(&'q Expr, Place, &'static str)>,
        using: &mut Vec<(Vec<String>, bool)>,
    ) {
        let dialect = self.dialect;
        let key = |alias: Option<&TableAlias>, name: Option<&Ident>| {
            alias
                .map(|a| dialect.normalize(&a.name).into_owned())
                .or_else(|| name.map(|n| dialect.normalize(n).into_owned()))
                .unwrap_or_default()
        };
        match f {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if let Some(args) = args {
                    self.table_args(&args.args, &format!("the arguments of {name}"));
                    sources.push(Source {
                        key: key(alias.as_ref(), None),
                        outputs: Outputs::open(),
                        sandbox: None,
                        nullable,
                    });
                    return;
                }
                let outputs = match self.ctes.resolve(name, dialect) {
                    Ok(Binding::Cte) => self.cte(name),
                    Ok(Binding::Table { schema, name }) => match self.catalog.table(schema, name) {
                        Some(t) => Outputs::table(t),
                        None => Outputs::open(),
                    },
                    Err(e) => {
                        self.fail(|| e.to_string());
                        Outputs::open()
                    }
                };
                let last = name.0.last().and_then(ObjectNamePart::as_ident);
                sources.push(Source {
                    key: key(alias.as_ref(), last),
                    outputs: outputs.rename(alias.as_ref(), dialect),
                    sandbox: None,
                    nullable,
                });
            }
            TableFactor::Derived {
                subquery,
                alias,
                lateral,
                ..
            } => {
                derived.push(&**subquery as *const Query);
                // A LATERAL subquery runs per row of the FROM items before
                // it; its references to them resolve to no block here, and
                // count as outer.
                let saved = if *lateral {
                    self.floor.replace(self.blocks.len())
                } else {
                    self.floor
                };
                let renamed = alias.as_ref().is_some_and(|a| !a.columns.is_empty());
                let (outputs, sandbox) = match self.catalog.sandbox(subquery) {
                    // `AS o(a, b)` renames by the database's column order,
                    // which the policy does not record: nothing may move
                    // into the sandbox under those names.
                    Some((table, true)) => (
                        Outputs::table(table),
                        (!renamed).then_some((&**subquery as *const Query, table)),
                    ),
                    Some((_, false)) => {
                        // A custom sandbox: its select list is reachable.
                        self.trusted += 1;
                        let outs = self.query(subquery);
                        self.trusted -= 1;
                        (outs, None)
                    }
                    None => (self.query(subquery), None),
                };
                self.floor = saved;
                sources.push(Source {
                    key: key(alias.as_ref(), None),
                    outputs: outputs.rename(alias.as_ref(), dialect),
                    sandbox,
                    nullable,
                });
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                self.joined(
                    table_with_joins,
                    nullable,
                    false,
                    sources,
                    derived,
                    conditions,
                    using,
                );
            }
            TableFactor::Function {
                name, args, alias, ..
            } => {
                self.table_args(args, &format!("the arguments of {name}"));
                sources.push(Source {
                    key: key(alias.as_ref(), None),
                    outputs: Outputs::open(),
                    sandbox: None,
                    nullable,
                });
            }
            TableFactor::UNNEST {
                array_exprs, alias, ..
            } => {
                for e in array_exprs {
                    self.value(e, "UNNEST");
                }
                sources.push(Source {
                    key: key(alias.as_ref(), None),
                    outputs: Outputs::open(),
                    sandbox: None,
                    nullable,
                });
            }
            other => {
                self.fail(|| format!("the FROM item `{other}`"));
                sources.push(Source {
                    key: String::new(),
                    outputs: Outputs::open(),
                    sandbox: None,
                    nullable,
                });
            }
        }
    }

    /// A table function's arguments run per row of the FROM items before it
    /// (when lateral): each must be a row-safe value.
    fn table_args(&mut self, args: &[FunctionArg], what: &str) {
        for a in args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                | FunctionArg::Named {
                    arg: FunctionArgExpr::Expr(e),
                    ..
                }
                | FunctionArg::ExprNamed {
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => self.value(e, what),
                _ => self.fail(|| what.to_string()),
            }
        }
    }

    fn cte(&mut self, name: &sqlparser::ast::ObjectName) -> Outputs<'a> {
        let Some(last) = name.0.last().and_then(ObjectNamePart::as_ident) else {
            return Outputs::open();
        };
        let key = self.dialect.cte_key(last);
        for frame in self.cte_outputs.iter().rev() {
            if let Some((_, outs, uid)) = frame.iter().find(|(n, _, _)| *n == key) {
                if let Some(r) = self.cte_refs.get_mut(*uid) {
                    *r += 1;
                }
                // Not analysed yet (a recursive reference): unknown.
                return outs.clone().unwrap_or_else(Outputs::open);
            }
        }
        Outputs::open()
    }

    /// Analyses the outermost subqueries inside `node` (in expressions),
    /// except the FROM bodies listed in `skip`.
    fn subqueries_in<V: Visit>(&mut self, node: &V, skip: &[*const Query]) {
        struct Find<'s, 'a, 'c> {
            an: &'s mut Analysis<'a, 'c>,
            skip: &'s [*const Query],
            depth: usize,
        }
        impl Visitor for Find<'_, '_, '_> {
            type Break = ();
            fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
                let ptr = q as *const Query;
                if self.depth == 0 && !self.skip.contains(&ptr) {
                    let saved = self.an.floor.replace(self.an.blocks.len());
                    let outs = self.an.query(q);
                    self.an.floor = saved;
                    self.an.sub_outputs.push((ptr, outs));
                }
                self.depth += 1;
                ControlFlow::Continue(())
            }
            fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
                self.depth -= 1;
                ControlFlow::Continue(())
            }
        }
        let _ = node.visit(&mut Find {
            an: self,
            skip,
            depth: 0,
        });
    }

    // ----- columns -------------------------------------------------------

    /// Resolves a column reference through the enclosing query blocks.
    fn resolve(&self, parts: &[Ident]) -> ColState {
        match parts {
            [col] => {
                let col = self.dialect.normalize(col);
                for block in self.blocks.iter().rev() {
                    let mut found = None;
                    for s in block {
                        if let Some(st) = s.outputs.lookup(&col) {
                            found = Some(match found {
                                None => st,
                                Some(prev) => merge(prev, st),
                            });
                        }
                    }
                    if let Some(st) = found {
                        return st;
                    }
                }
                ColState::Untyped
            }
            // `schema.table.col` (Metabase writes these) names the FROM
            // item `table`; a wrong schema is the database's error at plan
            // time.
            [q, col] | [_, q, col] => {
                let q = self.dialect.normalize(q);
                let col = self.dialect.normalize(col);
                for block in self.blocks.iter().rev() {
                    // Several FROM items under one normalised name (MySQL
                    // aliases `a` and `A`, which the server may tell
                    // apart): the worst of their columns.
                    let mut found: Option<ColState> = None;
                    for s in block.iter().filter(|s| s.key == q) {
                        let st = s.outputs.lookup(&col).unwrap_or(ColState::Untyped);
                        found = Some(match found {
                            None => st,
                            Some(prev) if prev == st => st,
                            Some(prev) => match merge(prev, st) {
                                ColState::Unsafe => ColState::Unsafe,
                                _ => ColState::Untyped,
                            },
                        });
                    }
                    if let Some(st) = found {
                        return st;
                    }
                }
                ColState::Untyped
            }
            _ => ColState::Untyped,
        }
    }

    /// The FROM item of the innermost block that column `parts` certainly
    /// belongs to, with the column's normalised name.
    fn owner(&self, parts: &[Ident]) -> Option<(usize, String)> {
        let block = self.blocks.last()?;
        match parts {
            [col] => {
                let col = self.dialect.normalize(col);
                let mut owner = None;
                for (i, s) in block.iter().enumerate() {
                    if s.outputs.open {
                        return None;
                    }
                    if s.outputs.lookup(&col).is_some() {
                        if owner.is_some() {
                            return None;
                        }
                        owner = Some(i);
                    }
                }
                owner.map(|i| (i, col.into_owned()))
            }
            [q, col] => {
                let q = self.dialect.normalize(q);
                let col = self.dialect.normalize(col);
                let mut it = block.iter().enumerate().filter(|(_, s)| s.key == q);
                let (i, s) = it.next()?;
                if it.next().is_some() || s.outputs.open || s.outputs.lookup(&col).is_none() {
                    return None;
                }
                Some((i, col.into_owned()))
            }
            _ => None,
        }
    }

    fn subquery_output(&self, q: &Query) -> Option<ColState> {
        let ptr = q as *const Query;
        self.sub_outputs
            .iter()
            .rev()
            .find(|(p, _)| *p == ptr)
            .and_then(|(_, o)| o.single())
    }

    fn is_safe(&self, e: &Expr) -> bool {
        rowsafe::is_row_safe_with(e, self.dialect, &|p| self.resolve(p), &|q| {
            self.subquery_output(q)
        })
    }

    fn state(&self, e: &Expr) -> ColState {
        rowsafe::value_state(e, self.dialect, &|p| self.resolve(p), &|q| {
            self.subquery_output(q)
        })
    }

    fn condition(&mut self, c: &Expr, clause: &str) {
        if !self.is_safe(c) {
            self.fail(|| describe(c, clause));
        }
    }

    fn value(&mut self, e: &Expr, what: &str) {
        if self.trusted == 0 && self.state(e) == ColState::Unsafe {
            self.fail(|| describe(e, what));
        }
    }

    /// Whether `e` reads a column of a block below `floor` (or one that
    /// resolves nowhere), or holds a subquery (which may).
    fn reads_outer(&self, e: &Expr, floor: usize) -> bool {
        struct Find<'s, 'a, 'c> {
            an: &'s Analysis<'a, 'c>,
            floor: usize,
        }
        impl Visitor for Find<'_, '_, '_> {
            type Break = ();
            fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
                // A nested subquery may read the outer row too (its own
                // names are not on the stack here): assume it does.
                ControlFlow::Break(())
            }
            fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
                let parts: &[Ident] = match e {
                    Expr::Identifier(i) => std::slice::from_ref(i),
                    Expr::CompoundIdentifier(p) => p,
                    _ => return ControlFlow::Continue(()),
                };
                match self.an.resolves_in(parts) {
                    Some(block) if block >= self.floor => ControlFlow::Continue(()),
                    _ => ControlFlow::Break(()),
                }
            }
        }
        e.visit(&mut Find { an: self, floor }).is_break()
    }

    /// The index of the block a column reference resolves in.
    fn resolves_in(&self, parts: &[Ident]) -> Option<usize> {
        match parts {
            [col] => {
                let col = self.dialect.normalize(col);
                self.blocks
                    .iter()
                    .enumerate()
                    .rev()
                    .find(|(_, b)| b.iter().any(|s| s.outputs.lookup(&col).is_some()))
                    .map(|(i, _)| i)
            }
            [q, _] | [_, q, _] => {
                let q = self.dialect.normalize(q);
                self.blocks
                    .iter()
                    .enumerate()
                    .rev()
                    .find(|(_, b)| b.iter().any(|s| s.key == q))
                    .map(|(i, _)| i)
            }
            _ => None,
        }
    }

    /// In a subquery that runs per row of enclosing blocks: every
    /// expression of this SELECT reading their columns — select list,
    /// GROUP BY, HAVING (aggregates included: they run per outer row too),
    /// QUALIFY, DISTINCT ON — must be row-safe.
    fn correlated_select(&mut self, s: &Select, floor: usize) {
        let mut values: Vec<&Expr> = Vec::new();
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e)
                | SelectItem::ExprWithAlias { expr: e, .. }
                | SelectItem::ExprWithAliases { expr: e, .. } => values.push(e),
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {}
            }
        }
        if let GroupByExpr::Expressions(exprs, _) = &s.group_by {
            values.extend(exprs);
        }
        if let Some(sqlparser::ast::Distinct::On(exprs)) = &s.distinct {
            values.extend(exprs);
        }
        // `WINDOW w AS (PARTITION BY … ORDER BY …)`: keys like an inline
        // OVER's, which the select list's check covers.
        for w in &s.named_window {
            if let sqlparser::ast::NamedWindowExpr::WindowSpec(spec) = &w.1 {
                values.extend(&spec.partition_by);
                values.extend(spec.order_by.iter().map(|o| &o.expr));
                if let Some(frame) = &spec.window_frame {
                    for bound in std::iter::once(&frame.start_bound).chain(&frame.end_bound) {
                        if let sqlparser::ast::WindowFrameBound::Preceding(Some(e))
                        | sqlparser::ast::WindowFrameBound::Following(Some(e)) = bound
                        {
                            values.push(e);
                        }
                    }
                }
            }
        }
        for e in values {
            if self.reads_outer(e, floor) && self.state(e) == ColState::Unsafe {
                self.fail(|| describe(e, "a subquery that runs per row of the query around it"));
            }
        }
        let conditions = s.having.iter().chain(&s.qualify);
        for c in conditions {
            if self.reads_outer(c, floor) && !self.is_safe(c) {
                self.fail(|| describe(c, "a subquery that runs per row of the query around it"));
            }
        }
    }

    /// As [`Analysis::correlated_select`], for ORDER BY and LIMIT.
    fn correlated_query(&mut self, q: &Query, floor: usize) {
        let mut values: Vec<&Expr> = Vec::new();
        if let Some(OrderBy {
            kind: OrderByKind::Expressions(exprs),
            ..
        }) = &q.order_by
        {
            values.extend(exprs.iter().map(|o| &o.expr));
        }
        match &q.limit_clause {
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                values.extend(limit);
                values.extend(offset.iter().map(|o| &o.value));
                values.extend(limit_by);
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
                values.push(offset);
                values.push(limit);
            }
            None => {}
        }
        for e in values {
            if self.reads_outer(e, floor) && self.state(e) == ColState::Unsafe {
                self.fail(|| describe(e, "a subquery that runs per row of the query around it"));
            }
        }
    }

    /// `JOIN … USING (cols)` compares the two sides' columns of those
    /// names; `NATURAL` all common ones (not analysed: not row-safe).
    fn using(&mut self, cols: &[String], natural: bool) {
        if natural {
            self.fail(|| "a NATURAL join or `USING (…) AS`".into());
            return;
        }
        for col in cols {
            let ident = Ident::new(col.clone());
            // Every FROM item that has the column: all must agree on a type
            // the comparison needs no conversion for.
            let states: Vec<ColState> = self
                .blocks
                .last()
                .map(|b| b.iter().filter_map(|s| s.outputs.lookup(col)).collect())
                .unwrap_or_default();
            let first = states.first().copied().unwrap_or(ColState::Untyped);
            let same = states.iter().all(|s| merge(*s, first) == first);
            let ok = self.dialect == Dialect::Sqlite && !states.contains(&ColState::Unsafe)
                || (same && matches!(first, ColState::Typed(_)));
            if !ok {
                self.fail(|| format!("`USING ({ident})`"));
            }
        }
    }

    // ----- outputs -------------------------------------------------------

    fn projection(&self, s: &Select) -> Outputs<'a> {
        let mut out = Outputs::default();
        let block = self.blocks.last();
        // Origins pass through a block that only filters, joins and
        // projects.
        let plain_group =
            matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
        let simple = self.trusted == 0
            && plain_group
            && s.having.is_none()
            && s.distinct.is_none()
            && s.top.is_none()
            && s.select_modifiers.is_none()
            && s.named_window.is_empty()
            && s.qualify.is_none()
            && s.prewhere.is_none()
            && !s.projection.iter().any(|i| match i {
                SelectItem::UnnamedExpr(e)
                | SelectItem::ExprWithAlias { expr: e, .. }
                | SelectItem::ExprWithAliases { expr: e, .. } => {
                    contains_aggregate(e, self.dialect)
                }
                _ => false,
            });
        let mut origins: Vec<Option<Origin<'a>>> = Vec::new();
        let column_origin = |e: &Expr| -> Option<Origin<'a>> {
            let parts: &[Ident] = match e {
                Expr::Identifier(i) => std::slice::from_ref(i),
                Expr::CompoundIdentifier(p) => p,
                _ => return None,
            };
            let (i, col) = self.owner(parts)?;
            self.origin_of(block?.get(i)?, &col)
        };
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let name = match e {
                        Expr::Identifier(i) => Some(self.dialect.normalize(i).into_owned()),
                        Expr::CompoundIdentifier(parts) => {
                            parts.last().map(|i| self.dialect.normalize(i).into_owned())
                        }
                        _ => None,
                    };
                    out.cols.push((name, self.item_state(e)));
                    origins.push(if simple { column_origin(e) } else { None });
                }
                SelectItem::ExprWithAliases { expr, .. } => {
                    // Several names for one expression: not analysed.
                    out.cols.push((None, self.item_state(expr)));
                    origins.push(None);
                    out.open = true;
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    out.cols.push((
                        Some(self.dialect.normalize(alias).into_owned()),
                        self.item_state(expr),
                    ));
                    origins.push(if simple { column_origin(expr) } else { None });
                }
                SelectItem::Wildcard(opts) => {
                    if opts.opt_replace.is_some() {
                        // `* REPLACE (expr AS col)`: not analysed.
                        out.cols.push((None, ColState::Unsafe));
                        origins.push(None);
                        out.open = true;
                        continue;
                    }
                    let plain = opts.opt_exclude.is_none()
                        && opts.opt_except.is_none()
                        && opts.opt_rename.is_none()
                        && opts.opt_ilike.is_none();
                    for src in block.into_iter().flatten() {
                        self.expand(src, simple && plain, &mut out, &mut origins);
                        out.open |= src.outputs.open || !plain;
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let name = match kind {
                        sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(n) => {
                            n.0.last()
                                .and_then(ObjectNamePart::as_ident)
                                .map(|i| self.dialect.normalize(i).into_owned())
                        }
                        sqlparser::ast::SelectItemQualifiedWildcardKind::Expr(_) => None,
                    };
                    match block.and_then(|b| b.iter().find(|s| Some(&s.key) == name.as_ref())) {
                        Some(src) => {
                            self.expand(src, simple, &mut out, &mut origins);
                            out.open |= src.outputs.open;
                        }
                        None => {
                            out.cols.push((None, ColState::Unsafe));
                            origins.push(None);
                            out.open = true;
                        }
                    }
                }
            }
        }
        if origins.iter().any(Option::is_some) {
            out.origins = origins;
        }
        out
    }

    /// `*` over one FROM item: its columns, with their origins.
    fn expand(
        &self,
        src: &Source<'a>,
        origins_too: bool,
        out: &mut Outputs<'a>,
        origins: &mut Vec<Option<Origin<'a>>>,
    ) {
        let listed = src.outputs.listed();
        for (name, _) in &listed {
            origins.push(match (origins_too, name) {
                (true, Some(n)) => self.origin_of(src, n),
                _ => None,
            });
        }
        out.cols.extend(listed);
        out.unordered |= src.outputs.unordered;
    }

    /// Where column `col` of FROM item `src` comes from.
    fn origin_of(&self, src: &Source<'a>, col: &str) -> Option<Origin<'a>> {
        if src.nullable {
            return None;
        }
        if let Some((ptr, table)) = src.sandbox {
            let c = table.column(col)?;
            return Some(Origin {
                ptr,
                table,
                column: c.key.clone(),
                ctes: Vec::new(),
            });
        }
        src.outputs.origin(col)
    }

    /// What a condition referring to select-list item `e` sees.
    fn item_state(&self, e: &Expr) -> ColState {
        let inner = match e {
            Expr::Nested(i) => i.as_ref(),
            other => other,
        };
        if let Expr::Function(f) = inner {
            if is_aggregate_call(f, self.dialect) {
                // Computed above the block's filters: never evaluated on
                // filtered-out rows. Its type, where evident.
                let name = match f.name.0.as_slice() {
                    [ObjectNamePart::Identifier(n)] => self.dialect.normalize(n).into_owned(),
                    _ => String::new(),
                };
                return match name.as_str() {
                    "count" | "row_number" | "rank" | "dense_rank" => {
                        ColState::Typed(ColumnType::Integer)
                    }
                    "sum" | "avg" | "total" => match &f.args {
                        FunctionArguments::List(l) => match l.args.as_slice() {
                            [FunctionArg::Unnamed(FunctionArgExpr::Expr(a))] => {
                                match self.state(a) {
                                    ColState::Typed(ColumnType::Integer | ColumnType::Decimal) => {
                                        ColState::Typed(ColumnType::Decimal)
                                    }
                                    _ => ColState::Untyped,
                                }
                            }
                            _ => ColState::Untyped,
                        },
                        _ => ColState::Untyped,
                    },
                    "min" | "max" => match &f.args {
                        FunctionArguments::List(l) => match l.args.as_slice() {
                            [FunctionArg::Unnamed(FunctionArgExpr::Expr(a))] => {
                                match self.state(a) {
                                    ColState::Typed(t) => ColState::Typed(t),
                                    _ => ColState::Untyped,
                                }
                            }
                            _ => ColState::Untyped,
                        },
                        _ => ColState::Untyped,
                    },
                    _ => ColState::Untyped,
                };
            }
        }
        self.state(e)
    }
}
