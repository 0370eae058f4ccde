//! System columns of sandboxed tables (`tableoid`, `ctid`, `xmin`, …).
//!
//! A sandbox subquery is a derived table, and a derived table has no system
//! columns: `SELECT tableoid FROM t` would fail after the rewrite. What each
//! one reveals decides what happens to it:
//!
//! - `tableoid` (PostgreSQL) names the table or partition a visible row is
//!   stored in. It says nothing about other rows, and
//!   `tableoid::regclass` is how inheritance and partitioned tables are
//!   queried, so a sandbox carries it when the query names it: the sandbox
//!   becomes `SELECT *, tableoid FROM t WHERE …` (or the custom question
//!   with its one read's `tableoid`). That adds a column, so a query that
//!   also reads the sandbox whole (`*`, `t.*`, the row `t`) is refused
//!   rather than given an extra column.
//! - `ctid` is a row's physical position, and gaps between the positions of
//!   visible rows show where other tenants' rows are; `xmin`, `xmax`,
//!   `cmin` and `cmax` are transaction and command ids, which show other
//!   sessions' write activity; SQLite's `rowid` (`oid`, `_rowid_`) numbers
//!   rows in insertion order, so its gaps count other tenants' rows. These
//!   are refused on sandboxed tables.
//!
//! A name the policy declares as a column of the table is that column.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart,
    Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableFactor,
    TableWithJoins, Visit, Visitor,
};

use super::Rewriter;
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::Table;

/// The column carried through sandboxes.
const TABLEOID: &str = "tableoid";

/// System column names, with what they reveal.
/// Whether a word is the name of a system column, in any case (a cheap
/// test on the hot path: most queries name none, and then the system
/// column pass is skipped).
pub(crate) fn is_system_word(word: &str) -> bool {
    SYSTEM.iter().any(|(n, _)| word.eq_ignore_ascii_case(n))
}

const SYSTEM: &[(&str, &str)] = &[
    (TABLEOID, "it exists only on PostgreSQL"),
    (
        "ctid",
        "row positions show where other tenants' rows are stored",
    ),
    ("xmin", "transaction ids show other sessions' activity"),
    ("xmax", "transaction ids show other sessions' activity"),
    ("cmin", "command ids show other sessions' activity"),
    ("cmax", "command ids show other sessions' activity"),
    (
        "rowid",
        "row ids in insertion order count other tenants' rows",
    ),
    (
        "oid",
        "row ids in insertion order count other tenants' rows",
    ),
    (
        "_rowid_",
        "row ids in insertion order count other tenants' rows",
    ),
];

/// A sandbox subquery of the current SELECT.
struct Sandboxed<'a> {
    key: String,
    query: *const Query,
    table: &'a Table,
    question: Option<&'a str>,
    carry: bool,
}

/// A system column named in a SELECT: (qualifier, column), normalised.
type Reference = (Option<String>, String);

/// Collects system-column names and whole-row reads of `keys`.
struct Scan<'k> {
    dialect: Dialect,
    keys: &'k [String],
    depth: usize,
    refs: Vec<Reference>,
    /// Keys read whole (`t`, `t.*`).
    whole: Vec<String>,
}

impl Scan<'_> {
    fn whole_row(&mut self, name: &ObjectName) {
        if let Some(ObjectNamePart::Identifier(id)) = name.0.last() {
            self.whole.push(self.dialect.normalize(id).into_owned());
        }
    }
}

impl Visitor for Scan<'_> {
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
        let system = |id: &Ident| {
            let n = self.dialect.normalize(id);
            SYSTEM.iter().any(|(s, _)| *s == n).then(|| n.into_owned())
        };
        match e {
            Expr::Identifier(id) => {
                let n = self.dialect.normalize(id);
                if self.keys.iter().any(|k| *k == n) {
                    self.whole.push(n.into_owned());
                }
                // Unqualified, a name means this SELECT's columns only at
                // its own level.
                if self.depth == 0 {
                    if let Some(col) = system(id) {
                        self.refs.push((None, col));
                    }
                }
            }
            Expr::CompoundIdentifier(parts) => {
                if let [.., q, c] = parts.as_slice() {
                    if let Some(col) = system(c) {
                        let q = self.dialect.normalize(q).into_owned();
                        self.refs.push((Some(q), col));
                    }
                }
            }
            Expr::QualifiedWildcard(name, _) => self.whole_row(name),
            Expr::Function(f) => {
                if let FunctionArguments::List(list) = &f.args {
                    for a in &list.args {
                        let arg = match a {
                            FunctionArg::Named { arg, .. }
                            | FunctionArg::ExprNamed { arg, .. }
                            | FunctionArg::Unnamed(arg) => arg,
                        };
                        if let FunctionArgExpr::QualifiedWildcard(name) = arg {
                            self.whole_row(name);
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// The sandbox subqueries among `from` (nested joins included).
fn derived<'f>(from: &'f mut [TableWithJoins], out: &mut Vec<&'f mut TableFactor>) {
    for twj in from {
        for f in
            std::iter::once(&mut twj.relation).chain(twj.joins.iter_mut().map(|j| &mut j.relation))
        {
            match f {
                TableFactor::NestedJoin {
                    table_with_joins, ..
                } => derived(std::slice::from_mut(table_with_joins.as_mut()), out),
                TableFactor::Derived { .. } => out.push(f),
                _ => {}
            }
        }
    }
}

/// Adds `tableoid` to a sandbox subquery's select list: `tableoid` for a
/// basic sandbox, the one read's `tableoid` for a custom sandbox question
/// (refused when that read is not its row source).
pub(super) fn carry_tableoid(
    query: &mut Query,
    table: &Table,
    question: Option<&str>,
    dialect: Dialect,
) -> Result<()> {
    let expr = match question {
        None => Expr::Identifier(dialect.ident(TABLEOID)),
        Some(q) => {
            let source = super::source::row_source(query, table, q, dialect, "tableoid")?;
            let TableFactor::Table { name, alias, .. } = source else {
                return Err(Error::Verification("a row source is not a table".into()));
            };
            let mut parts: Vec<Ident> = match alias {
                Some(a) => vec![a.name.clone()],
                None => name
                    .0
                    .iter()
                    .filter_map(|p| p.as_ident().cloned())
                    .collect(),
            };
            parts.push(dialect.ident(TABLEOID));
            Expr::CompoundIdentifier(parts)
        }
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Err(Error::Verification("a sandbox is not a SELECT".into()));
    };
    select.projection.push(match expr {
        Expr::Identifier(_) => SelectItem::UnnamedExpr(expr),
        _ => SelectItem::ExprWithAlias {
            expr,
            alias: dialect.ident(TABLEOID),
        },
    });
    Ok(())
}

impl<'a> Rewriter<'a> {
    /// Handles the system columns a SELECT names on its sandboxed tables
    /// (see the module documentation). Runs on the user's SELECT before
    /// its subqueries are rewritten.
    pub(super) fn system_columns(&mut self, s: &mut Select) -> Result<()> {
        let mut sandboxes = Vec::new();
        {
            let mut factors = Vec::new();
            derived(&mut s.from, &mut factors);
            for f in factors {
                if let TableFactor::Derived {
                    subquery,
                    alias: Some(alias),
                    ..
                } = f
                {
                    let ptr = subquery.as_ref() as *const Query;
                    if let Some((_, table, question)) = self.origins.iter().find(|o| o.0 == ptr) {
                        sandboxes.push(Sandboxed {
                            key: self.norm(&alias.name).into_owned(),
                            query: ptr,
                            table,
                            question: *question,
                            carry: false,
                        });
                    }
                }
            }
        }
        if sandboxes.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = sandboxes.iter().map(|s| s.key.clone()).collect();
        let mut scan = Scan {
            dialect: self.dialect,
            keys: &keys,
            depth: 0,
            refs: Vec::new(),
            whole: Vec::new(),
        };
        let from = std::mem::take(&mut s.from);
        let _ = s.visit(&mut scan);
        for twj in &from {
            for j in &twj.joins {
                let _ = j.join_operator.visit(&mut scan);
            }
        }
        s.from = from;
        let (refs, whole) = (scan.refs, scan.whole);
        for (qualifier, col) in &refs {
            for sb in sandboxes.iter_mut() {
                if qualifier.as_ref().is_some_and(|q| *q != sb.key)
                    || sb.table.column(col).is_some()
                {
                    continue;
                }
                if col == TABLEOID && self.dialect == Dialect::Postgres {
                    sb.carry = true;
                    continue;
                }
                let why = SYSTEM
                    .iter()
                    .find(|(n, _)| n == col)
                    .map_or("", |(_, w)| *w);
                return Err(Error::unsupported(format!(
                    "the system column `{col}` of sandboxed table {} ({why})",
                    sb.table.qualified()
                )));
            }
        }
        for sb in sandboxes.iter().filter(|sb| sb.carry) {
            let star = s.projection.iter().any(|item| match item {
                SelectItem::Wildcard(_) => true,
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    n.0.last()
                        .and_then(|p| p.as_ident())
                        .is_some_and(|id| self.norm(id) == sb.key.as_str())
                }
                SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::Expr(_), _) => true,
                _ => false,
            });
            if star || whole.contains(&sb.key) {
                return Err(Error::unsupported(format!(
                    "`tableoid` of sandboxed table {} together with `*` or the whole row `{}` (the sandbox would return an extra column; list the columns instead)",
                    sb.table.qualified(),
                    sb.key
                )));
            }
        }
        let mut factors = Vec::new();
        derived(&mut s.from, &mut factors);
        for f in factors {
            if let TableFactor::Derived { subquery, .. } = f {
                let ptr = subquery.as_ref() as *const Query;
                if let Some(sb) = sandboxes.iter().find(|sb| sb.carry && sb.query == ptr) {
                    carry_tableoid(subquery, sb.table, sb.question, self.db.dialect)?;
                    // The verifier compares sandboxes by value: it must
                    // know this one as it now is.
                    self.record(subquery, sb.table, sb.question.is_none());
                }
            }
        }
        Ok(())
    }
}
