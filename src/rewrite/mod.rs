//! The rewrite: every base-table reference the scope walk finds is replaced
//! by its sandbox subquery, and the result is walked again to check it.
//!
//! Scopes follow sqlglot's model: a query's CTEs are visible to its body and
//! to the CTEs defined after them (and a recursive CTE to itself); a
//! qualified name is never a CTE; derived tables, subqueries in any clause
//! and set operations are walked innermost first. Every sqlparser variant is
//! matched by name and anything not listed is refused.

pub(crate) mod functions;
mod sandbox;

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use sqlparser::ast::{
    Expr, Ident, JoinOperator, ObjectName, ObjectNamePart, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, TableAlias, TableFactor, TableWithJoins, VisitMut,
    VisitorMut,
};

use crate::access::{self, Decision};
use crate::bind::Binder;
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::{Database, Policy, Table, TableKey};
use crate::principal::Principal;

pub use sandbox::Applied;

/// Walk mode: rewrite the user's query, or check a rewritten one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Rewrite,
    Verify,
}

/// Names of CTEs visible at a point of the query.
#[derive(Debug, Clone, Default)]
struct Env {
    /// (strict key, loose key) per CTE: the strict key is how the database
    /// compares names; the loose key (full Unicode lower case) catches names
    /// that only *look* alike.
    ctes: Vec<(String, String)>,
}

impl Env {
    /// Whether a one-part table name refers to a CTE. A name that matches a
    /// CTE only loosely (other case in a case-sensitive comparison, or a
    /// Unicode look-alike such as the Kelvin sign) is refused: reading it as
    /// the CTE when the database reads the base table would leak.
    fn is_cte(&self, strict: &str, loose: &str) -> Result<bool> {
        if self.ctes.iter().any(|(s, _)| s == strict) {
            return Ok(true);
        }
        if let Some((s, _)) = self.ctes.iter().find(|(_, l)| l == loose) {
            return Err(Error::unsupported(format!(
                "the table name `{strict}`, which differs from the CTE `{s}` only in case or look-alike characters (rename one)"
            )));
        }
        Ok(false)
    }

    fn push(&mut self, strict: String, loose: String) {
        self.ctes.push((strict, loose));
    }
}

/// A FROM item visible in one SELECT, for column checks.
#[derive(Debug)]
struct Source {
    /// Normalised name it is referred to by (alias or table name).
    key: String,
    /// Columns it is known to have (`None`: unknown, e.g. a derived table).
    columns: Option<Vec<String>>,
    /// Columns hidden by a custom sandbox: (table, question, hidden columns).
    hidden: Option<(String, String, Vec<String>)>,
}

/// A qualified table name that no longer exists after the rewrite:
/// `schema.table.col` must become `table.col`.
#[derive(Debug, Clone)]
struct Strip {
    schema: String,
    table: String,
    bare: Ident,
}

/// The state of one rewrite (one query, one principal).
pub(crate) struct Rewriter<'a> {
    pub policy: &'a Policy,
    pub db: &'a Database,
    pub dialect: Dialect,
    pub principal: &'a Principal,
    pub binder: Binder,
    pub applied: Vec<Applied>,
    /// Addresses of the sandbox subqueries this rewrite made.
    generated: HashSet<*const Query>,
    /// Sandbox subqueries recognised by value (when re-checking printed
    /// SQL parsed again, where addresses mean nothing).
    trusted: Vec<Query>,
    decisions: HashMap<TableKey, Decision>,
    mode: Mode,
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
            generated: HashSet::new(),
            trusted: Vec::new(),
            decisions: HashMap::new(),
            mode: Mode::Rewrite,
        }
    }

    /// Rewrites a top-level query in place.
    pub fn rewrite(&mut self, q: &mut Query) -> Result<()> {
        self.mode = Mode::Rewrite;
        self.query(q, &Env::default()).map(|_| ())
    }

    /// Walks the rewritten query again: every protected base table must sit
    /// inside a sandbox subquery this rewrite made.
    pub fn verify(&mut self, q: &mut Query) -> Result<()> {
        self.mode = Mode::Verify;
        self.query(q, &Env::default()).map(|_| ())
    }

    fn is_sandbox(&self, q: &Query) -> bool {
        self.generated.contains(&(q as *const Query)) || self.trusted.iter().any(|t| t == q)
    }

    /// Re-checks SQL that was printed and parsed again: the sandbox
    /// subqueries are rebuilt for this principal and recognised by value;
    /// every other read of a protected table is an error.
    pub fn recheck(&mut self, q: &mut Query) -> Result<()> {
        let mut trusted = Vec::new();
        for table in self.db.tables.values().cloned().collect::<Vec<_>>() {
            if let Ok(Decision::Sandboxed(sbs)) = self.decision(&table) {
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
                    if let Ok((sq, _)) = self.build_sandbox(&table, &sbs, inh, &Ident::new("x")) {
                        trusted.push(*sq);
                    }
                }
            }
        }
        self.trusted = trusted;
        self.applied.clear();
        self.verify(q)
    }

    fn decision(&mut self, table: &Arc<Table>) -> Result<Decision> {
        if let Some(d) = self.decisions.get(&table.key) {
            return Ok(d.clone());
        }
        let d = access::decide(self.policy, self.principal, self.db, table)?;
        self.decisions.insert(table.key.clone(), d.clone());
        Ok(d)
    }

    fn norm(&self, id: &Ident) -> String {
        self.dialect.normalize(id)
    }

    // ----- queries -------------------------------------------------------

    fn query(&mut self, q: &mut Query, env: &Env) -> Result<()> {
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
        let mut env = env.clone();
        if let Some(with) = q.with.as_mut() {
            let mut seen: Vec<String> = Vec::new();
            for cte in with.cte_tables.iter_mut() {
                let name = self.dialect.cte_key(&cte.alias.name);
                let loose = cte.alias.name.value.to_lowercase();
                if seen.contains(&name) {
                    return Err(Error::unsupported(format!(
                        "WITH query name `{}` specified more than once",
                        cte.alias.name
                    )));
                }
                if cte.from.is_some() {
                    return Err(Error::unsupported("CTE with FROM"));
                }
                // A non-recursive CTE sees only the CTEs before it; its own
                // name inside its body is the base table.
                let mut inner = env.clone();
                if with.recursive {
                    inner.push(name.clone(), loose.clone());
                }
                self.query(&mut cte.query, &inner)?;
                env.push(name.clone(), loose);
                seen.push(name);
            }
        }
        let (strips, sources) = self.set_expr(&mut q.body, &env)?;
        // ORDER BY, LIMIT, OFFSET, FETCH: subqueries and qualified names.
        self.walk_exprs(&mut q.order_by, &env)?;
        self.walk_exprs(&mut q.limit_clause, &env)?;
        self.walk_exprs(&mut q.fetch, &env)?;
        // ORDER BY sees the SELECT's sources, and its output names.
        let outputs: Vec<String> = match q.body.as_ref() {
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
        Ok(())
    }

    /// Returns the strips and sources of a SELECT body (ORDER BY sees them).
    fn set_expr(&mut self, s: &mut SetExpr, env: &Env) -> Result<(Vec<Strip>, Vec<Source>)> {
        match s {
            SetExpr::Select(select) => self.select(select, env),
            SetExpr::Query(q) => self.query(q, env).map(|_| Default::default()),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left, env)?;
                self.set_expr(right, env)?;
                Ok(Default::default())
            }
            SetExpr::Values(v) => {
                self.walk_exprs(v, env)?;
                Ok(Default::default())
            }
            SetExpr::Table(t) => Err(Error::unsupported(format!(
                "`TABLE {}` (write SELECT * FROM … instead)",
                t.table_name
                    .as_ref()
                    .map(|i| i.value.as_str())
                    .unwrap_or("")
            ))),
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                Err(Error::NotReadOnly(
                    "data-modifying statements (also inside WITH) are not allowed".into(),
                ))
            }
        }
    }

    fn select(&mut self, s: &mut Select, env: &Env) -> Result<(Vec<Strip>, Vec<Source>)> {
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
            self.table_with_joins(twj, env, &mut sources, &mut strips)?;
        }
        // Every other clause: subqueries, then column checks and names.
        let mut from = std::mem::take(&mut s.from);
        let mut res = self.walk_exprs(s, env);
        if res.is_ok() {
            res = self.fix_names(s, &sources, &strips, true);
        }
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
        env: &Env,
        sources: &mut Vec<Source>,
        strips: &mut Vec<Strip>,
    ) -> Result<()> {
        self.factor(&mut twj.relation, env, sources, strips)?;
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
            self.factor(&mut join.relation, env, sources, strips)?;
            self.walk_exprs(&mut join.join_operator, env)?;
        }
        Ok(())
    }

    fn factor(
        &mut self,
        f: &mut TableFactor,
        env: &Env,
        sources: &mut Vec<Source>,
        strips: &mut Vec<Strip>,
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
                if args.is_some() {
                    functions::check_table_function(name, &self.policy.functions)?;
                    self.walk_exprs(args, env)?;
                    sources.push(self.opaque(alias.as_ref(), None));
                    return Ok(());
                }
                let parts = idents(name)?;
                if parts.len() == 1
                    && env.is_cte(
                        &self.dialect.cte_key(parts[0]),
                        &parts[0].value.to_lowercase(),
                    )?
                {
                    sources.push(self.opaque(alias.as_ref(), Some(parts[0])));
                    return Ok(());
                }
                let key = self.table_key(&parts)?;
                let Some(table) = self.db.table(&key).cloned() else {
                    if self.principal.is_admin() {
                        sources.push(self.opaque(alias.as_ref(), parts.last().copied()));
                        return Ok(());
                    }
                    return Err(Error::AccessDenied {
                        principal: self.principal.name().to_string(),
                        object: format!("table {name}"),
                        reason: format!(
                            "it is not declared in the policy for database `{}` (undeclared tables, system catalogs and information_schema are refused)",
                            self.db.name
                        ),
                    });
                };
                let decision = self.decision(&table)?;
                let bare = parts
                    .last()
                    .map(|i| (*i).clone())
                    .unwrap_or_else(|| Ident::new(""));
                match decision {
                    Decision::Unrestricted { .. } => {
                        if parts.len() == 1 && self.mode == Mode::Rewrite {
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
                                schema: table.key.schema.clone(),
                                table: self.norm(&bare),
                                bare: bare.clone(),
                            });
                        }
                        sources.push(Source {
                            key: alias
                                .as_ref()
                                .map_or_else(|| self.norm(&bare), |a| self.norm(&a.name)),
                            columns: Some(table.columns.iter().map(|c| c.key.clone()).collect()),
                            hidden: None,
                        });
                        Ok(())
                    }
                    Decision::Sandboxed(sandboxes) => {
                        if self.mode == Mode::Verify {
                            return Err(Error::Verification(format!(
                                "{} is read outside its sandbox",
                                table.qualified()
                            )));
                        }
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
                            &table,
                            &sandboxes,
                            inheritance.take(),
                            &new_alias.name,
                        )?;
                        self.generated.insert(subquery.as_ref() as *const Query);
                        let hidden = visible.as_ref().and_then(|(question, cols)| {
                            let h: Vec<String> = table
                                .columns
                                .iter()
                                .filter(|c| !cols.contains(&c.key))
                                .map(|c| c.key.clone())
                                .collect();
                            (!h.is_empty()).then(|| (table.qualified(), question.clone(), h))
                        });
                        sources.push(Source {
                            key: self.norm(&new_alias.name),
                            columns: Some(match &visible {
                                Some((_, cols)) => cols.clone(),
                                None => table.columns.iter().map(|c| c.key.clone()).collect(),
                            }),
                            hidden,
                        });
                        if new_alias.name == bare && parts.len() >= 2 {
                            strips.push(Strip {
                                schema: self.norm(parts[parts.len() - 2]),
                                table: self.norm(&bare),
                                bare: bare.clone(),
                            });
                        }
                        if parts.len() == 1 {
                            // `public.accounts.id` may still name `accounts`.
                            strips.push(Strip {
                                schema: table.key.schema.clone(),
                                table: self.norm(&bare),
                                bare: bare.clone(),
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
                subquery, alias, ..
            } => {
                if self.mode == Mode::Verify && self.is_sandbox(subquery) {
                    // Our own sandbox: its body is the policy's, not the user's.
                    let key = alias
                        .as_ref()
                        .map(|a| self.norm(&a.name))
                        .unwrap_or_default();
                    sources.push(Source {
                        key,
                        columns: None,
                        hidden: None,
                    });
                    return Ok(());
                }
                self.query(subquery, env)?;
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
                self.table_with_joins(table_with_joins, env, sources, strips)
            }
            TableFactor::UNNEST {
                alias, array_exprs, ..
            } => {
                self.walk_exprs(array_exprs, env)?;
                sources.push(self.opaque(alias.as_ref(), None));
                Ok(())
            }
            TableFactor::Function {
                name, alias, args, ..
            } => {
                functions::check_table_function(name, &self.policy.functions)?;
                self.walk_exprs(args, env)?;
                sources.push(self.opaque(alias.as_ref(), None));
                Ok(())
            }
            TableFactor::JsonTable {
                alias, json_expr, ..
            } => {
                self.walk_exprs(json_expr, env)?;
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

    fn opaque(&self, alias: Option<&TableAlias>, name: Option<&Ident>) -> Source {
        Source {
            key: alias
                .map(|a| self.norm(&a.name))
                .or_else(|| name.map(|n| self.norm(n)))
                .unwrap_or_default(),
            columns: None,
            hidden: None,
        }
    }

    fn table_key(&self, parts: &[&Ident]) -> Result<TableKey> {
        match parts {
            [t] => Ok(TableKey {
                schema: self.db.default_schema.clone(),
                name: self.norm(t),
            }),
            [s, t] => Ok(TableKey {
                schema: self.norm(s),
                name: self.norm(t),
            }),
            _ => Err(Error::unsupported(format!(
                "the catalog-qualified name `{}`",
                parts
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(".")
            ))),
        }
    }

    // ----- expressions ---------------------------------------------------

    /// Rewrites every subquery inside `node` (which must not contain the
    /// FROM clause of the current SELECT).
    fn walk_exprs<N: VisitMut>(&mut self, node: &mut N, env: &Env) -> Result<()> {
        let mut w = SubqueryWalk {
            rw: self,
            env,
            parking: Parking::default(),
        };
        match node.visit(&mut w) {
            ControlFlow::Break(e) => Err(e),
            ControlFlow::Continue(()) => Ok(()),
        }
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
        outputs: &[String],
    ) -> Result<()> {
        if self.mode == Mode::Verify {
            // Names were fixed and columns checked by the rewrite; the check
            // walk is about table references only.
            return Ok(());
        }
        if strips.is_empty() && !(check_columns && sources.iter().any(|s| s.hidden.is_some())) {
            // Nothing to rename and no hidden column to look for.
            return Ok(());
        }
        let mut w = NameFix {
            outputs,
            dialect: self.dialect,
            generated: &self.generated,
            sources,
            strips,
            check_columns: check_columns && self.mode == Mode::Rewrite,
            depth: 0,
            parking: Parking::default(),
            entered: Vec::new(),
        };
        match node.visit(&mut w) {
            ControlFlow::Break(e) => Err(e),
            ControlFlow::Continue(()) => Ok(()),
        }
    }

    fn strip_object_name(&self, name: &mut ObjectName, strips: &[Strip]) {
        let n = name.0.len();
        if n < 2 {
            return;
        }
        let (Some(s), Some(t)) = (name.0[n - 2].as_ident(), name.0[n - 1].as_ident()) else {
            return;
        };
        let (s, t) = (self.norm(s), self.norm(t));
        if let Some(strip) = strips.iter().find(|x| x.schema == s && x.table == t) {
            name.0 = vec![ObjectNamePart::Identifier(strip.bare.clone())];
        }
    }
}

/// The identifiers of a table name; function-valued name parts are refused.
fn idents(name: &ObjectName) -> Result<Vec<&Ident>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(i),
            ObjectNamePart::Function(_) => Err(Error::unsupported(format!(
                "the computed table name `{name}`"
            ))),
        })
        .collect()
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
/// node, so each returns to the address it came from.
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

    /// Puts the last parked query back into `q`, if `q` was parked.
    fn unpark(&mut self, q: &mut Query, was_parked: bool) {
        if was_parked {
            if let Some(real) = self.parked.pop() {
                self.spare.push(std::mem::replace(q, real));
            }
        }
    }
}

/// Finds the outermost queries inside an expression tree and rewrites them
/// with the enclosing scope. Each is then parked, so the visit does not
/// descend into what `Rewriter::query` has already walked.
struct SubqueryWalk<'r, 'a> {
    rw: &'r mut Rewriter<'a>,
    env: &'r Env,
    parking: Parking,
}

impl VisitorMut for SubqueryWalk<'_, '_> {
    type Break = Error;

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<Error> {
        let generated = self.rw.is_sandbox(q);
        if !(generated && self.rw.mode == Mode::Verify) {
            if let Err(e) = self.rw.query(q, self.env) {
                return ControlFlow::Break(e);
            }
        }
        self.parking.park(q);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<Error> {
        // Every query this visitor meets was parked (the placeholder holds
        // none), so this is always the parked one's own node.
        self.parking.unpark(q, true);
        ControlFlow::Continue(())
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
struct NameFix<'r> {
    outputs: &'r [String],
    dialect: Dialect,
    generated: &'r HashSet<*const Query>,
    sources: &'r [Source],
    strips: &'r [Strip],
    check_columns: bool,
    depth: usize,
    /// Our own sandbox subqueries, parked: the policy's SQL, not the user's.
    parking: Parking,
    /// Per query entered: whether it was parked.
    entered: Vec<bool>,
}

impl NameFix<'_> {
    fn hidden_error(&self, col: &str) -> Option<Error> {
        for s in self.sources {
            if let Some((table, question, hidden)) = &s.hidden {
                if hidden.iter().any(|h| h == col) {
                    let provided_elsewhere = self.sources.iter().any(|o| {
                        !std::ptr::eq(o, s)
                            && o.columns
                                .as_ref()
                                .is_none_or(|cols| cols.iter().any(|c| c == col))
                    });
                    if !provided_elsewhere {
                        return Some(Error::HiddenColumn {
                            column: col.to_string(),
                            table: table.clone(),
                            question: question.clone(),
                        });
                    }
                }
            }
        }
        None
    }
}

impl VisitorMut for NameFix<'_> {
    type Break = Error;

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
        self.parking.unpark(q, parked);
        ControlFlow::Continue(())
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
                let n = parts.len();
                if n >= 3 {
                    let s = self.dialect.normalize(&parts[n - 3]);
                    let t = self.dialect.normalize(&parts[n - 2]);
                    if let Some(strip) = self.strips.iter().find(|x| x.schema == s && x.table == t)
                    {
                        let col = parts[n - 1].clone();
                        *parts = vec![strip.bare.clone(), col];
                    }
                }
                if self.check_columns && self.depth == 0 && parts.len() == 2 {
                    let q = self.dialect.normalize(&parts[0]);
                    let col = self.dialect.normalize(&parts[1]);
                    for s in self.sources {
                        if s.key == q {
                            if let Some((table, question, hidden)) = &s.hidden {
                                if hidden.contains(&col) {
                                    return ControlFlow::Break(Error::HiddenColumn {
                                        column: col,
                                        table: table.clone(),
                                        question: question.clone(),
                                    });
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
