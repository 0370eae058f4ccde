//! The rewrite: every base-table reference the scope walk finds is replaced
//! by its sandbox subquery, and the result is walked again to check it.
//!
//! Scopes follow sqlglot's model: a query's CTEs are visible to its body and
//! to the CTEs defined after them (and a recursive CTE to itself); a
//! qualified name is never a CTE; derived tables, subqueries in any clause
//! and set operations are walked innermost first. Every sqlparser variant is
//! matched by name and anything not listed is refused.
//!
//! The walk runs once per query, so it borrows what it can: names are
//! compared in their normal form without copying ([`Dialect::normalize`]
//! borrows), column lists point into the compiled policy, and the CTE names
//! in scope live on one stack.

pub(crate) mod exposure;
pub(crate) mod rowsafe;
mod sandbox;
mod source;
mod system;
pub(crate) mod walk;
pub(crate) mod write;

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::rc::Rc;

use sqlparser::ast::{
    Expr, Ident, JoinOperator, ObjectName, ObjectNamePart, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, TableAlias, TableFactor, TableWithJoins, VisitMut,
};

use crate::access::{self, Decision};
use crate::bind::Binder;
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::functions;
use crate::policy::{Column, Database, FenceMode, Policy, Table, TableKey};
use crate::principal::Principal;
use crate::scope::{table_name, Binding, Ctes};

pub use sandbox::Applied;
pub(crate) use sandbox::{and_conditions, fence_clause};
pub(crate) use system::is_system_word;

/// The columns a FROM item is known to have, borrowed from the policy.
#[derive(Debug, Clone)]
enum Columns<'a> {
    /// A declared table's columns.
    Table(&'a [Column]),
    /// A custom sandbox question's output columns (or row rules').
    Question(sandbox::Cols<'a>),
}

impl Columns<'_> {
    fn contains(&self, col: &str) -> bool {
        match self {
            Columns::Table(cols) => cols.iter().any(|c| c.key == col),
            Columns::Question(cols) => cols.iter().any(|(c, _)| c == col),
        }
    }
}

/// The columns a custom sandbox hides: its table's, less its question's.
#[derive(Debug, Clone)]
struct Hidden<'a> {
    table: &'a Table,
    question: &'a str,
    visible: sandbox::Cols<'a>,
}

impl Hidden<'_> {
    fn hides(&self, col: &str) -> bool {
        self.table.column(col).is_some() && !self.visible.iter().any(|(c, _)| c == col)
    }

    fn error(&self, col: &str) -> Error {
        Error::HiddenColumn {
            column: col.to_string(),
            table: self.table.qualified(),
            hidden_by: if self.question == sandbox::RULES {
                "the row rules' `columns`".to_string()
            } else {
                format!("sandbox question `{}`", self.question)
            },
        }
    }
}

/// A FROM item visible in one SELECT, for column checks.
#[derive(Debug)]
struct Source<'a> {
    /// Normalised name it is referred to by (alias or table name).
    key: String,
    /// Columns it is known to have (`None`: unknown, e.g. a derived table).
    columns: Option<Columns<'a>>,
    /// Columns hidden by a custom sandbox.
    hidden: Option<Hidden<'a>>,
}

/// A qualified table name that no longer exists after the rewrite:
/// `schema.table.col` must become `table.col`.
#[derive(Debug, Clone)]
struct Strip<'a> {
    /// The table's normalised (schema, name).
    key: &'a TableKey,
    /// The name as the query spelled it.
    bare: Ident,
}

impl Strip<'_> {
    fn matches(&self, schema: &str, table: &str) -> bool {
        self.key.schema == schema && self.key.name == table
    }
}

/// The state of one rewrite (one query, one principal).
pub(crate) struct Rewriter<'a> {
    pub policy: &'a Policy,
    pub db: &'a Database,
    pub dialect: Dialect,
    pub principal: &'a Principal,
    pub binder: Binder,
    pub applied: Vec<Applied>,
    /// Whether the query may hold `schema.table.column` names, which must
    /// lose their schema where the table became a sandbox subquery. `true`
    /// unless a walk of the whole query showed none ([`crate::functions::Shape`]).
    pub long_names: bool,
    /// Whether the query may name system columns (`tableoid`, `ctid`, …);
    /// `true` unless a walk of the whole query showed none.
    pub system_names: bool,
    /// Addresses of the sandbox subqueries this rewrite made.
    pub(super) generated: HashSet<*const Query>,
    /// The sandbox subqueries built, one copy of each distinct one: the
    /// verifier recognises sandboxes by value against these.
    pub built: Vec<Built<'a>>,
    /// Each generated sandbox subquery's table and custom question, for the
    /// system columns a query names on it ([`system`]).
    pub(super) origins: Vec<(*const Query, &'a Table, Option<&'a str>)>,
    /// Access decisions made so far, per table.
    decisions: Vec<(*const Table, Rc<Decision>)>,
    /// The CTEs in scope at the current point of the walk.
    scope: Ctes,
    /// How many row rules' subqueries enclose the current point (rules
    /// that read tables through their sandboxes nest).
    rule_depth: usize,
    /// Subqueries set aside during visits, shared by all the walks of this
    /// rewrite so that its placeholders are made once (a `Query` and its
    /// boxed body are kilobytes each in sqlparser's AST).
    parking: Parking,
}

impl<'a> Rewriter<'a> {
    pub fn new(
        policy: &'a Policy,
        db: &'a Database,
        dialect: Dialect,
        principal: &'a Principal,
        binder: Binder,
    ) -> Self {
        Rewriter {
            policy,
            db,
            dialect,
            principal,
            binder,
            applied: Vec::new(),
            long_names: true,
            system_names: true,
            generated: HashSet::new(),
            built: Vec::new(),
            origins: Vec::new(),
            decisions: Vec::new(),
            scope: Ctes::new(),
            rule_depth: 0,
            parking: Parking::default(),
        }
    }

    /// Rewrites a top-level query in place.
    pub fn rewrite(&mut self, q: &mut Query) -> Result<()> {
        self.scope.clear();
        self.parking.parked.clear();
        self.query(q)
    }

    /// Builds the sandbox subquery of every table this principal reads
    /// through one, for each inheritance modifier a query may carry: what
    /// [`crate::verify`] accepts when SQL printed earlier is checked again
    /// (`Policy::recheck`), where the rewrite that made it is gone.
    pub fn all_sandboxes(&mut self) -> Vec<Built<'a>> {
        let mut out = Vec::new();
        let db: &'a Database = self.db;
        for table in db.tables.values() {
            if let Ok(decision) = self.decision(table) {
                if let Decision::Sandboxed(sbs) = &*decision {
                    let variants = [
                        None,
                        Some(sqlparser::ast::TableInheritance::Only {
                            parenthesized: false,
                        }),
                        Some(sqlparser::ast::TableInheritance::Only {
                            parenthesized: true,
                        }),
                        Some(sqlparser::ast::TableInheritance::IncludeDescendants),
                    ];
                    for inh in variants {
                        if let Ok((sq, visible)) =
                            self.build_sandbox(table, sbs, inh, &Ident::new("x"))
                        {
                            // The same sandbox carrying `tableoid`.
                            let mut carried = sq.clone();
                            let question = visible.as_ref().map(|(q, _)| *q);
                            let basic = question.is_none();
                            if system::carry_tableoid(&mut carried, table, question, db.dialect)
                                .is_ok()
                            {
                                out.push(Built {
                                    query: *carried,
                                    table,
                                    basic,
                                });
                            }
                            out.push(Built {
                                query: *sq,
                                table,
                                basic,
                            });
                        }
                    }
                }
            }
        }
        self.applied.clear();
        out
    }

    /// Gives this rewrite's sandboxes the dialect's fence and moves the
    /// query's row-safe conditions into the fenced basic sandboxes (see
    /// [`exposure`]). Runs after [`Rewriter::rewrite`], when the mode is
    /// `always` or the verifier found the unfenced form unsafe.
    pub fn fence(&mut self, q: &mut Query, mode: FenceMode) -> Result<Fencing> {
        let exposure = exposure::analyse(q, self.dialect, &*self, true);
        let report = Fencing {
            mode,
            fenced: true,
            reason: exposure.unsafe_at,
            pushed: exposure.pushes.len(),
        };
        let clause = self.dialect.fence();
        let mut fencer = Fencer {
            generated: &self.generated,
            pushes: exposure.pushes,
            top_n: exposure.top_n,
            clause,
            depth: 0,
        };
        walk::walk(q, &mut fencer)?;
        Ok(report)
    }

    fn decision(&mut self, table: &Table) -> Result<Rc<Decision>> {
        let key = table as *const Table;
        if let Some((_, d)) = self.decisions.iter().find(|(t, _)| *t == key) {
            return Ok(Rc::clone(d));
        }
        let d = Rc::new(access::decide(self.policy, self.principal, self.db, table)?);
        self.decisions.push((key, Rc::clone(&d)));
        Ok(d)
    }

    fn norm<'i>(&self, id: &'i Ident) -> Cow<'i, str> {
        self.dialect.normalize(id)
    }

    // ----- queries -------------------------------------------------------

    fn query(&mut self, q: &mut Query) -> Result<()> {
        if !q.locks.is_empty() {
            return Err(Error::NotReadOnly(
                "locking clauses (FOR UPDATE / FOR SHARE) are not allowed".into(),
            ));
        }
        if q.for_clause.is_some() {
            return Err(Error::unsupported("FOR XML / FOR JSON"));
        }
        if q.settings.is_some() {
            return Err(Error::unsupported("SETTINGS"));
        }
        if q.format_clause.is_some() {
            return Err(Error::unsupported("FORMAT"));
        }
        if !q.pipe_operators.is_empty() {
            return Err(Error::unsupported("pipe operators (|>)"));
        }
        // This query's CTEs are in scope until it ends.
        self.scope.enter(q.with.as_ref(), self.dialect)?;
        let res = self.query_scoped(q);
        self.scope.leave();
        res
    }

    fn query_scoped(&mut self, q: &mut Query) -> Result<()> {
        if let Some(with) = q.with.as_mut() {
            let recursive = with.recursive;
            for (i, cte) in with.cte_tables.iter_mut().enumerate() {
                if cte.from.is_some() {
                    return Err(Error::unsupported("CTE with FROM"));
                }
                self.scope.enter_cte_body(i, recursive);
                self.query(&mut cte.query)?;
            }
        }
        self.scope.enter_body();
        let (strips, sources) = self.set_expr(&mut q.body)?;
        // ORDER BY, LIMIT, OFFSET, FETCH: subqueries and qualified names.
        self.walk_exprs(&mut q.order_by)?;
        self.walk_exprs(&mut q.limit_clause)?;
        self.walk_exprs(&mut q.fetch)?;
        if q.order_by.is_some() && self.needs_name_fix(&sources, &strips, true) {
            // ORDER BY sees the SELECT's sources, and its output names.
            let outputs: Vec<Cow<'_, str>> = match q.body.as_ref() {
                SetExpr::Select(sel) => sel
                    .projection
                    .iter()
                    .filter_map(|i| match i {
                        SelectItem::ExprWithAlias { alias, .. } => Some(self.norm(alias)),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            self.fix_names_except(&mut q.order_by, &sources, &strips, true, &outputs)?;
        }
        Ok(())
    }

    /// Returns the strips and sources of a SELECT body (ORDER BY sees them).
    fn set_expr(&mut self, s: &mut SetExpr) -> Result<(Vec<Strip<'a>>, Vec<Source<'a>>)> {
        match s {
            SetExpr::Select(select) => self.select(select),
            SetExpr::Query(q) => self.query(q).map(|_| Default::default()),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left)?;
                self.set_expr(right)?;
                Ok(Default::default())
            }
            SetExpr::Values(v) => {
                self.walk_exprs(v)?;
                Ok(Default::default())
            }
            SetExpr::Table(t) => {
                // `TABLE t` is `SELECT * FROM t`: rewritten to it, it is
                // sandboxed (and its columns checked) like any other read.
                *s = sandbox::table_statement(t)?;
                self.set_expr(s)
            }
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                Err(Error::NotReadOnly(
                    "data-modifying statements (also inside WITH) are not allowed".into(),
                ))
            }
        }
    }

    fn select(&mut self, s: &mut Select) -> Result<(Vec<Strip<'a>>, Vec<Source<'a>>)> {
        if s.into.is_some() {
            return Err(Error::NotReadOnly("SELECT … INTO is not allowed".into()));
        }
        if !s.optimizer_hints.is_empty() {
            // Hints are comments printed back verbatim; dialects disagree on
            // where a comment ends, so their text could become code.
            return Err(Error::unsupported("optimizer hint comments (/*+ … */)"));
        }
        if !s.lateral_views.is_empty() {
            return Err(Error::unsupported("LATERAL VIEW"));
        }
        if !s.connect_by.is_empty() {
            return Err(Error::unsupported("CONNECT BY"));
        }
        let mut sources = Vec::new();
        let mut strips = Vec::new();
        for twj in s.from.iter_mut() {
            self.table_with_joins(twj, &mut sources, &mut strips)?;
        }
        if self.system_names {
            self.system_columns(s)?;
        }
        // Every other clause: subqueries, then column checks and names.
        let mut from = std::mem::take(&mut s.from);
        let mut res = self.walk_exprs(s);
        if res.is_ok() && self.needs_name_fix(&sources, &strips, true) {
            res = self.fix_names(s, &sources, &strips, true);
            if res.is_ok() {
                for twj in from.iter_mut() {
                    for j in twj.joins.iter_mut() {
                        res = self.fix_names(&mut j.join_operator, &sources, &strips, true);
                        if res.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        s.from = from;
        res?;
        if !strips.is_empty() {
            for item in s.projection.iter_mut() {
                if let SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    _,
                ) = item
                {
                    self.strip_object_name(name, &strips);
                }
            }
        }
        Ok((strips, sources))
    }

    fn table_with_joins(
        &mut self,
        twj: &mut TableWithJoins,
        sources: &mut Vec<Source<'a>>,
        strips: &mut Vec<Strip<'a>>,
    ) -> Result<()> {
        self.factor(&mut twj.relation, sources, strips)?;
        for join in twj.joins.iter_mut() {
            match &join.join_operator {
                JoinOperator::Join(_)
                | JoinOperator::Inner(_)
                | JoinOperator::Left(_)
                | JoinOperator::LeftOuter(_)
                | JoinOperator::Right(_)
                | JoinOperator::RightOuter(_)
                | JoinOperator::FullOuter(_)
                | JoinOperator::CrossJoin(_)
                | JoinOperator::Semi(_)
                | JoinOperator::LeftSemi(_)
                | JoinOperator::RightSemi(_)
                | JoinOperator::Anti(_)
                | JoinOperator::LeftAnti(_)
                | JoinOperator::RightAnti(_)
                | JoinOperator::CrossApply
                | JoinOperator::OuterApply
                | JoinOperator::StraightJoin(_) => {}
                JoinOperator::AsOf { .. } => return Err(Error::unsupported("ASOF JOIN")),
                JoinOperator::ArrayJoin
                | JoinOperator::LeftArrayJoin
                | JoinOperator::InnerArrayJoin => return Err(Error::unsupported("ARRAY JOIN")),
            }
            self.factor(&mut join.relation, sources, strips)?;
            self.walk_exprs(&mut join.join_operator)?;
        }
        Ok(())
    }

    fn factor(
        &mut self,
        f: &mut TableFactor,
        sources: &mut Vec<Source<'a>>,
        strips: &mut Vec<Strip<'a>>,
    ) -> Result<()> {
        match f {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_directives,
                inheritance,
            } => {
                // Every slot that can hold an expression is walked, whatever
                // the table turns out to be: a subquery in `TABLESAMPLE
                // (…)`, a time-travel expression or a hint reads tables too.
                self.walk_exprs(with_hints)?;
                self.walk_exprs(version)?;
                self.walk_exprs(json_path)?;
                self.walk_exprs(sample)?;
                if args.is_some() {
                    functions::check_table_function(name, self.dialect, &self.policy.functions)?;
                    self.walk_exprs(args)?;
                    sources.push(self.opaque(alias.as_ref(), None));
                    return Ok(());
                }
                let (schema_part, last) = match self.scope.resolve(name, self.dialect)? {
                    Binding::Cte => {
                        let last = table_name(name)?.1;
                        sources.push(self.opaque(alias.as_ref(), Some(last)));
                        return Ok(());
                    }
                    Binding::Table { schema, name } => (schema, name),
                };
                let db: &'a Database = self.db;
                let found = {
                    let schema = match schema_part {
                        Some(s) => self.norm(s),
                        None => Cow::Borrowed(db.default_schema.as_str()),
                    };
                    db.lookup(&schema, &self.norm(last))
                };
                let hint = |this: &Self| {
                    access::readable_hint(
                        this.policy,
                        this.principal,
                        this.db,
                        schema_part.map(|s| this.norm(s)).as_deref(),
                        &this.norm(last),
                    )
                };
                let Some(table) = found else {
                    if self.principal.is_admin() {
                        sources.push(self.opaque(alias.as_ref(), Some(last)));
                        return Ok(());
                    }
                    return Err(access::invisible_table(
                        self.principal,
                        &name.to_string(),
                        self.db,
                        &hint(self),
                    ));
                };
                let table: &'a Table = table;
                let qualified = schema_part.is_some();
                let bare = last.clone();
                let decision = self.decision(table).map_err(|e| match e {
                    Error::AccessDenied { .. } if !self.principal.is_admin() => {
                        access::invisible_table(
                            self.principal,
                            &name.to_string(),
                            self.db,
                            &hint(self),
                        )
                    }
                    other => other,
                })?;
                match &*decision {
                    Decision::Unrestricted { .. } => {
                        if !qualified {
                            // Qualify it, so that the database's search_path
                            // cannot point the name at another schema's table.
                            *name = ObjectName(vec![
                                ObjectNamePart::Identifier(self.dialect.ident(&table.schema)),
                                ObjectNamePart::Identifier(bare.clone()),
                            ]);
                            if alias.is_none() {
                                *alias = Some(TableAlias {
                                    explicit: true,
                                    name: bare.clone(),
                                    columns: vec![],
                                    at: None,
                                });
                            }
                            strips.push(Strip {
                                key: &table.key,
                                bare: bare.clone(),
                            });
                        }
                        sources.push(Source {
                            key: alias
                                .as_ref()
                                .map_or_else(|| self.norm(&bare), |a| self.norm(&a.name))
                                .into_owned(),
                            columns: Some(Columns::Table(&table.columns)),
                            hidden: None,
                        });
                        Ok(())
                    }
                    Decision::Sandboxed(sandboxes) => {
                        let modifier = if !with_hints.is_empty() {
                            Some("table hints")
                        } else if version.is_some() {
                            Some("time travel (FOR SYSTEM_TIME / AT)")
                        } else if *with_ordinality {
                            Some("WITH ORDINALITY")
                        } else if !partitions.is_empty() {
                            Some("PARTITION selection")
                        } else if json_path.is_some() {
                            Some("JSON paths")
                        } else if sample.is_some() {
                            Some("TABLESAMPLE")
                        } else if !index_directives.is_empty() {
                            Some("index hints")
                        } else {
                            None
                        };
                        if let Some(m) = modifier {
                            return Err(Error::unsupported(format!(
                                "{m} on sandboxed table {}",
                                table.qualified()
                            )));
                        }
                        let new_alias = alias.take().unwrap_or(TableAlias {
                            explicit: true,
                            name: bare.clone(),
                            columns: vec![],
                            at: None,
                        });
                        let (subquery, visible) = self.build_sandbox(
                            table,
                            sandboxes,
                            inheritance.take(),
                            &new_alias.name,
                        )?;
                        self.alias_columns(table, &visible, &new_alias)?;
                        self.generated.insert(subquery.as_ref() as *const Query);
                        self.record(&subquery, table, visible.is_none());
                        self.origins.push((
                            subquery.as_ref() as *const Query,
                            table,
                            visible.as_ref().map(|(q, _)| *q),
                        ));
                        let hidden = visible.clone().and_then(|(question, cols)| {
                            table
                                .columns
                                .iter()
                                .any(|c| !cols.iter().any(|(v, _)| *v == c.key))
                                .then_some(Hidden {
                                    table,
                                    question,
                                    visible: cols,
                                })
                        });
                        sources.push(Source {
                            key: self.norm(&new_alias.name).into_owned(),
                            columns: Some(match visible {
                                Some((_, cols)) => Columns::Question(cols),
                                None => Columns::Table(&table.columns),
                            }),
                            hidden,
                        });
                        // `public.accounts.id` may still name `accounts`
                        // when the alias is the bare name.
                        if !qualified || new_alias.name == bare {
                            strips.push(Strip {
                                key: &table.key,
                                bare,
                            });
                        }
                        *f = TableFactor::Derived {
                            lateral: false,
                            subquery,
                            alias: Some(new_alias),
                            sample: None,
                        };
                        Ok(())
                    }
                }
            }
            TableFactor::Derived {
                subquery,
                alias,
                sample,
                lateral: _,
            } => {
                self.walk_exprs(sample)?;
                self.query(subquery)?;
                sources.push(self.opaque(alias.as_ref(), None));
                Ok(())
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    // An alias on a parenthesised join hides its members'
                    // names; keep the rule simple and refuse it.
                    return Err(Error::unsupported("an alias on a parenthesised join"));
                }
                self.table_with_joins(table_with_joins, sources, strips)
            }
            TableFactor::UNNEST {
                alias, array_exprs, ..
            } => {
                self.walk_exprs(array_exprs)?;
                sources.push(self.opaque(alias.as_ref(), None));
                Ok(())
            }
            TableFactor::Function {
                name, alias, args, ..
            } => {
                functions::check_table_function(name, self.dialect, &self.policy.functions)?;
                self.walk_exprs(args)?;
                sources.push(self.opaque(alias.as_ref(), None));
                Ok(())
            }
            TableFactor::JsonTable {
                alias, json_expr, ..
            } => {
                self.walk_exprs(json_expr)?;
                sources.push(self.opaque(alias.as_ref(), None));
                Ok(())
            }
            TableFactor::TableFunction { .. } => Err(Error::unsupported("TABLE(<expr>) in FROM")),
            TableFactor::OpenJsonTable { .. } => Err(Error::unsupported("OPENJSON")),
            TableFactor::Pivot { .. } => Err(Error::unsupported("PIVOT")),
            TableFactor::Unpivot { .. } | TableFactor::UnpivotExpr { .. } => {
                Err(Error::unsupported("UNPIVOT"))
            }
            TableFactor::MatchRecognize { .. } => Err(Error::unsupported("MATCH_RECOGNIZE")),
            TableFactor::XmlTable { .. } => Err(Error::unsupported("XMLTABLE")),
            TableFactor::SemanticView { .. } => Err(Error::unsupported("SEMANTIC_VIEW")),
        }
    }

    fn opaque(&self, alias: Option<&TableAlias>, name: Option<&Ident>) -> Source<'a> {
        Source {
            key: alias
                .map(|a| self.norm(&a.name))
                .or_else(|| name.map(|n| self.norm(n)))
                .map(Cow::into_owned)
                .unwrap_or_default(),
            columns: None,
            hidden: None,
        }
    }

    // ----- expressions ---------------------------------------------------

    /// Rewrites every subquery inside `node` (which must not contain the
    /// FROM clause of the current SELECT).
    fn walk_exprs<N: VisitMut>(&mut self, node: &mut N) -> Result<()> {
        walk::walk(node, &mut SubqueryWalk { rw: self })
    }

    /// Whether `fix_names` has anything to do: in the rewrite, with names to
    /// strip (and `schema.table.column` names in the query) or hidden
    /// columns to look for.
    fn needs_name_fix(&self, sources: &[Source], strips: &[Strip], check_columns: bool) -> bool {
        // In the check walk, names were fixed and columns checked already;
        // it is about table references only.
        (self.long_names && !strips.is_empty())
            || (check_columns && sources.iter().any(|s| s.hidden.is_some()))
    }

    /// Column checks (at this SELECT's level) and qualified-name fixes (at
    /// every level below, except inside our own sandboxes).
    fn fix_names<N: VisitMut>(
        &mut self,
        node: &mut N,
        sources: &[Source],
        strips: &[Strip],
        check_columns: bool,
    ) -> Result<()> {
        self.fix_names_except(node, sources, strips, check_columns, &[])
    }

    /// As `fix_names`, but unqualified names in `outputs` (select-list
    /// aliases, visible to ORDER BY) are not checked.
    fn fix_names_except<N: VisitMut>(
        &mut self,
        node: &mut N,
        sources: &[Source],
        strips: &[Strip],
        check_columns: bool,
        outputs: &[Cow<'_, str>],
    ) -> Result<()> {
        if !self.needs_name_fix(sources, strips, check_columns) {
            return Ok(());
        }
        let mut w = NameFix {
            outputs,
            dialect: self.dialect,
            generated: &self.generated,
            sources,
            strips: if self.long_names { strips } else { &[] },
            check_columns,
            depth: 0,
            parking: &mut self.parking,
            entered: Vec::new(),
        };
        walk::walk(node, &mut w)
    }

    fn strip_object_name(&self, name: &mut ObjectName, strips: &[Strip]) {
        let [.., s, t] = name.0.as_slice() else {
            return;
        };
        let (Some(s), Some(t)) = (s.as_ident(), t.as_ident()) else {
            return;
        };
        let (s, t) = (self.norm(s), self.norm(t));
        if let Some(strip) = strips.iter().find(|x| x.matches(&s, &t)) {
            let bare = strip.bare.clone();
            name.0 = vec![ObjectNamePart::Identifier(bare)];
        }
    }
}

/// A sandbox subquery built for this principal, as the verifier knows it
/// (unfenced, without conditions moved into it).
#[derive(Debug, Clone)]
pub(crate) struct Built<'a> {
    /// The subquery.
    pub query: Query,
    /// The table it stands for.
    pub table: &'a Table,
    /// A basic sandbox (`SELECT * FROM t WHERE …`), which conditions may
    /// move into.
    pub basic: bool,
}

impl<'a> Rewriter<'a> {
    /// Remembers a sandbox as built (once per distinct value).
    fn record(&mut self, q: &Query, table: &'a Table, basic: bool) {
        if !self.built.iter().any(|b| b.query == *q) {
            self.built.push(Built {
                query: q.clone(),
                table,
                basic,
            });
        }
    }
}

/// How a rewrite fenced its sandboxes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fencing {
    /// The mode in force (the database's `fence:` or the caller's override).
    pub mode: FenceMode,
    /// Whether the sandboxes got the dialect's fence.
    pub fenced: bool,
    /// The first expression the database could evaluate on rows a sandbox
    /// filters out that is not row-safe (why `auto` fenced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Row-safe conditions copied into fenced sandboxes.
    pub pushed: usize,
}

impl<'a> exposure::Catalog<'a> for Rewriter<'a> {
    fn sandbox(&self, q: &Query) -> Option<(&'a Table, bool)> {
        let ptr = q as *const Query;
        if !self.generated.contains(&ptr) {
            return None;
        }
        self.origins
            .iter()
            .find(|(p, _, _)| *p == ptr)
            .map(|(_, t, question)| (*t, question.is_none()))
    }

    fn table(&self, schema: Option<&Ident>, name: &Ident) -> Option<&'a Table> {
        let db: &'a Database = self.db;
        let schema = match schema {
            Some(s) => self.norm(s),
            None => Cow::Borrowed(db.default_schema.as_str()),
        };
        db.lookup(&schema, &self.norm(name)).map(|t| &**t)
    }
}

/// Fences the sandboxes of a rewrite and moves conditions into them.
struct Fencer<'r> {
    generated: &'r HashSet<*const Query>,
    pushes: Vec<(*const Query, Expr)>,
    top_n: Vec<(
        *const Query,
        sqlparser::ast::OrderBy,
        sqlparser::ast::LimitClause,
    )>,
    clause: crate::dialect::Fence,
    /// How many sandboxes enclose the current query.
    depth: usize,
}

impl walk::Hooks for Fencer<'_> {
    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<Error> {
        let ptr = q as *const Query;
        if !self.generated.contains(&ptr) {
            return ControlFlow::Continue(());
        }
        self.depth += 1;
        if self.depth > 1 {
            // A sandbox inside a sandbox (a table a row rule reads as
            // invoker) is part of the outer one as built, which the
            // verifier compares whole; only the policy's own conditions
            // are near it.
            return ControlFlow::Continue(());
        }
        let mine: Vec<Expr> = self
            .pushes
            .iter()
            .filter(|(p, _)| *p == ptr)
            .map(|(_, e)| e.clone())
            .collect();
        if !mine.is_empty() {
            if let SetExpr::Select(select) = q.body.as_mut() {
                if let Some(own) = select.selection.take() {
                    select.selection = Some(and_conditions(own, mine));
                }
            }
        }
        if let Some((_, order_by, limit)) = self.top_n.iter().find(|(p, _, _)| *p == ptr) {
            // A LIMIT fences too.
            q.order_by = Some(order_by.clone());
            q.limit_clause = Some(limit.clone());
        }
        fence_clause(q, self.clause);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<Error> {
        if self.generated.contains(&(q as *const Query)) {
            self.depth -= 1;
        }
        ControlFlow::Continue(())
    }
}

/// An empty query, swapped in for a subquery while a visitor passes over
/// it: sqlparser's visitors cannot skip a node's children, so a subquery
/// that was already handled is parked outside the tree instead.
fn placeholder() -> Query {
    Query {
        with: None,
        body: Box::new(SetExpr::Values(sqlparser::ast::Values {
            explicit_row: false,
            value_keyword: false,
            rows: vec![],
        })),
        order_by: None,
        limit_clause: None,
        fetch: None,
        locks: vec![],
        for_clause: None,
        settings: None,
        format_clause: None,
        pipe_operators: vec![],
    }
}

/// Subqueries taken out of the tree during a visit (see [`placeholder`]):
/// `park` in `pre_visit_query`, `unpark` in `post_visit_query` of the same
/// node, so each returns to the address it came from. Visits nest (a walk
/// rewrites a subquery, whose own walks park and unpark before it is
/// parked itself), so one stack serves them all.
#[derive(Default)]
struct Parking {
    parked: Vec<Query>,
    spare: Vec<Query>,
}

impl Parking {
    fn park(&mut self, q: &mut Query) {
        let empty = self.spare.pop().unwrap_or_else(placeholder);
        self.parked.push(std::mem::replace(q, empty));
    }

    /// Puts the last parked query back into `q`, if `q` was parked. An
    /// empty stack there would leave a placeholder in the user's query: it
    /// cannot happen, and is refused rather than printed if it does.
    fn unpark(&mut self, q: &mut Query, was_parked: bool) -> ControlFlow<Error> {
        if was_parked {
            let Some(real) = self.parked.pop() else {
                return ControlFlow::Break(Error::Verification(
                    "a subquery set aside during a walk went missing".into(),
                ));
            };
            self.spare.push(std::mem::replace(q, real));
        }
        ControlFlow::Continue(())
    }
}

/// Finds the outermost queries inside an expression tree and rewrites them
/// with the enclosing scope. Each is then parked, so the visit does not
/// descend into what `Rewriter::query` has already walked.
struct SubqueryWalk<'r, 'a> {
    rw: &'r mut Rewriter<'a>,
}

impl walk::Hooks for SubqueryWalk<'_, '_> {
    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<Error> {
        if let Err(e) = self.rw.query(q) {
            return ControlFlow::Break(e);
        }
        self.rw.parking.park(q);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<Error> {
        // Every query this visitor meets was parked (the placeholder holds
        // none), so this is always the parked one's own node.
        self.rw.parking.unpark(q, true)
    }

    fn pre_visit_relation(&mut self, name: &mut ObjectName) -> ControlFlow<Error> {
        // Outside any query (subqueries are parked): e.g. SQLite's
        // `x IN accounts`, a table read from an expression.
        ControlFlow::Break(Error::unsupported(format!(
            "the table `{name}` used inside an expression (write a subquery: IN (SELECT …))"
        )))
    }

    fn pre_visit_table_factor(&mut self, _f: &mut TableFactor) -> ControlFlow<Error> {
        // A table outside any query, inside an expression: nothing in
        // sqlparser's AST should produce this; refuse rather than guess.
        ControlFlow::Break(Error::unsupported("a table reference inside an expression"))
    }
}

/// Checks column names against custom-sandbox visibility and rewrites
/// `schema.table.col` to `table.col` where `schema.table` became a derived
/// table.
struct NameFix<'r, 'a> {
    outputs: &'r [Cow<'r, str>],
    dialect: Dialect,
    generated: &'r HashSet<*const Query>,
    sources: &'r [Source<'a>],
    strips: &'r [Strip<'a>],
    check_columns: bool,
    depth: usize,
    /// Our own sandbox subqueries, parked: the policy's SQL, not the user's.
    parking: &'r mut Parking,
    /// Per query entered: whether it was parked.
    entered: Vec<bool>,
}

impl NameFix<'_, '_> {
    fn hidden_error(&self, col: &str) -> Option<Error> {
        for s in self.sources {
            if let Some(hidden) = &s.hidden {
                if hidden.hides(col) {
                    let provided_elsewhere = self.sources.iter().any(|o| {
                        !std::ptr::eq(o, s)
                            && o.columns.as_ref().is_none_or(|cols| cols.contains(col))
                    });
                    if !provided_elsewhere {
                        return Some(hidden.error(col));
                    }
                }
            }
        }
        None
    }
}

impl walk::Hooks for NameFix<'_, '_> {
    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<Error> {
        let generated = self.generated.contains(&(q as *const Query));
        if generated {
            self.parking.park(q);
        }
        self.entered.push(generated);
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<Error> {
        self.depth -= 1;
        let parked = self.entered.pop().unwrap_or(false);
        self.parking.unpark(q, parked)
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
        match e {
            Expr::Identifier(id) if self.check_columns && self.depth == 0 => {
                let col = self.dialect.normalize(id);
                if self.outputs.contains(&col) {
                    return ControlFlow::Continue(());
                }
                if let Some(err) = self.hidden_error(&col) {
                    return ControlFlow::Break(err);
                }
            }
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                if let [.., s, t, col] = parts.as_slice() {
                    let s = self.dialect.normalize(s);
                    let t = self.dialect.normalize(t);
                    if let Some(strip) = self.strips.iter().find(|x| x.matches(&s, &t)) {
                        let col = col.clone();
                        *parts = vec![strip.bare.clone(), col];
                    }
                }
                if let ([q, col], true) = (parts.as_slice(), self.check_columns && self.depth == 0)
                {
                    let q = self.dialect.normalize(q);
                    let col = self.dialect.normalize(col);
                    for s in self.sources {
                        if s.key == q {
                            if let Some(hidden) = &s.hidden {
                                if hidden.hides(&col) {
                                    return ControlFlow::Break(hidden.error(&col));
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
