//! Write statements under write rules (`commands: [insert, update,
//! delete]`): PostgreSQL's per-command policies, compiled into the
//! statement.
//!
//! - `UPDATE t SET c = v, … [WHERE w]` becomes
//!   `UPDATE schema.t SET … WHERE (w) AND (<using> AND <check on the new
//!   row>)`: the rows it may touch (the permissive rules' `filter`s ORed,
//!   the restrictive ones ANDed) and, with every assigned column replaced
//!   by its new value, the rows it may write (the rules' `check`s, or their
//!   filters). A row whose new values fail the check is not updated
//!   (PostgreSQL raises an error instead).
//! - `DELETE FROM t [WHERE w]` becomes `… WHERE (w) AND (<using>)`.
//! - `INSERT INTO t (c, …) VALUES (v, …)` (one row) becomes
//!   `INSERT INTO schema.t (c, …) SELECT v, … WHERE <check with c := v>`:
//!   a row that fails the check is not inserted.
//!
//! Only these shapes are accepted: each statement is compared with one
//! rebuilt from the parts understood here, so any other clause (RETURNING,
//! ON CONFLICT, FROM/USING, ORDER BY/LIMIT, an alias, several rows,
//! INSERT … SELECT) makes them differ and is refused. The user's WHERE must
//! be row-safe (the database may evaluate it on rows the rules exclude, and
//! a write has no fence), and no user expression may hold a subquery or a
//! bind placeholder.

use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, Expr, FromTable, Ident, ObjectName, ObjectNamePart, Query,
    SelectItem, SetExpr, Statement, TableFactor, TableObject, Value, Visit, VisitMut, Visitor,
    VisitorMut,
};

use super::sandbox::Binding;
use super::sandbox::{and_all, unnest};
use super::{Applied, Rewriter};
use crate::access;
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::{Command, Rule, Table};
use crate::rewrite::rowsafe::{self, conjuncts, ColState};

/// What [`Rewriter::write`] built: the target and the guard, which the
/// verifier ([`verify_write`]) finds again in the statement.
pub(crate) struct Write<'a> {
    /// The table written.
    pub table: &'a Table,
    /// The statement kind.
    pub command: Command,
    /// The condition the rules add (ANDed after the user's WHERE, or the
    /// WHERE of INSERT's SELECT).
    pub guard: Expr,
}

fn unsupported(command: Command) -> Error {
    Error::unsupported(format!(
        "this form of {command} under write rules (accepted: `UPDATE t SET col = value, … [WHERE …]`, `DELETE FROM t [WHERE …]`, `INSERT INTO t (col, …) VALUES (value, …)` with one row; no alias, RETURNING, ON CONFLICT, FROM/USING, ORDER BY or LIMIT)"
    ))
}

fn template(sql: &str, dialect: Dialect) -> Result<Statement> {
    let mut stmts = sqlparser::parser::Parser::parse_sql(dialect.parser(), sql)
        .map_err(|e| Error::Verification(format!("write template: {e}")))?;
    stmts
        .pop()
        .ok_or_else(|| Error::Verification("write template is empty".into()))
}

fn table_factor_name(f: &mut TableFactor) -> Option<&mut ObjectName> {
    match f {
        TableFactor::Table { name, .. } => Some(name),
        _ => None,
    }
}

/// Refuses subqueries and bind placeholders in what the user wrote.
fn plain_user_expr(e: &Expr, command: Command) -> Result<()> {
    struct V(Option<Error>, Command);
    impl Visitor for V {
        type Break = ();
        fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
            self.0 = Some(Error::unsupported(format!(
                "a subquery in {} under write rules",
                self.1
            )));
            ControlFlow::Break(())
        }
        fn pre_visit_value(&mut self, v: &sqlparser::ast::ValueWithSpan) -> ControlFlow<()> {
            if let Value::Placeholder(p) = &v.value {
                self.0 = Some(Error::unsupported(format!(
                    "the bind placeholder `{p}` in the statement (sqlsandbox binds its own parameters)"
                )));
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = V(None, command);
    let _ = e.visit(&mut v);
    v.0.map_or(Ok(()), Err)
}

/// A new value a check reads is computed there as well as where it is
/// stored: it must be row-safe (an UPDATE's WHERE may compute it on rows
/// the rules exclude) and so deterministic (`random()` is not: the check
/// and the row would see two values). `raw` and `typed` are the values as
/// written and as cast to their columns' types; `used`, the columns the
/// check read.
fn new_values_safe(
    raw: &[(String, Expr)],
    typed: &[(String, Expr)],
    used: &[String],
    table: &Table,
    dialect: Dialect,
) -> Result<()> {
    let cols = |parts: &[Ident]| column_state(table, dialect, parts);
    for ((c, v), (_, cast)) in raw.iter().zip(typed).filter(|((c, _), _)| used.contains(c)) {
        // The cast of a constant fails for every row or none; of a
        // column, it must be total.
        let safe = rowsafe::is_row_safe_value(v, dialect, &cols)
            && (!reads_a_column(v, table, dialect)
                || rowsafe::is_row_safe_value(cast, dialect, &cols));
        if !safe {
            return Err(Error::unsupported(format!(
                "the new value `{v}` of `{c}`, which a write rule checks: it is computed in the check too, so it must be row-safe and deterministic"
            )));
        }
    }
    Ok(())
}

/// Whether `e` holds a subquery.
fn contains_query(e: &Expr) -> bool {
    struct Q(bool);
    impl Visitor for Q {
        type Break = ();
        fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
            self.0 = true;
            ControlFlow::Break(())
        }
    }
    let mut q = Q(false);
    let _ = e.visit(&mut q);
    q.0
}

/// Checks a RETURNING list: plain expressions, `*` or `t.*` (the read
/// rules' columns are all visible, or the write is refused).
fn returning_items(items: &Option<Vec<SelectItem>>, command: Command) -> Result<()> {
    for item in items.iter().flatten() {
        match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                plain_user_expr(e, command)?
            }
            SelectItem::Wildcard(o) | SelectItem::QualifiedWildcard(_, o)
                if o.opt_exclude.is_none()
                    && o.opt_except.is_none()
                    && o.opt_replace.is_none()
                    && o.opt_rename.is_none()
                    && o.opt_ilike.is_none() => {}
            _ => return Err(unsupported(command)),
        }
    }
    Ok(())
}

/// The expressions of a RETURNING list.
fn returning_exprs(items: &Option<Vec<SelectItem>>) -> impl Iterator<Item = &Expr> {
    items.iter().flatten().filter_map(|i| match i {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    })
}

/// `CAST((v) AS <the column's declared type>)` in `dialect`.
fn cast_to(v: &Expr, ty: Option<crate::policy::ColumnType>, dialect: Dialect) -> Expr {
    use crate::policy::ColumnType as T;
    use sqlparser::ast::{CastKind, DataType, ExactNumberInfo, TimezoneInfo};
    let nested = Expr::Nested(Box::new(v.clone()));
    let Some(ty) = ty else {
        return nested;
    };
    let data_type = match (dialect, ty) {
        (Dialect::Mysql, T::Integer | T::Boolean) => DataType::Signed,
        (Dialect::Mysql, T::Decimal) => {
            DataType::Decimal(ExactNumberInfo::PrecisionAndScale(65, 30))
        }
        (Dialect::Mysql, T::Text | T::Uuid) => DataType::Char(None),
        (Dialect::Mysql, T::Date) => DataType::Date,
        (Dialect::Mysql, T::Timestamp) => DataType::Datetime(Some(6)),
        (Dialect::Sqlite, T::Integer | T::Boolean) => DataType::Integer(None),
        (Dialect::Sqlite, T::Decimal) => DataType::Numeric(ExactNumberInfo::None),
        (Dialect::Sqlite, T::Text | T::Uuid | T::Date | T::Timestamp) => DataType::Text,
        (_, T::Integer) => DataType::BigInt(None),
        (_, T::Decimal) => DataType::Numeric(ExactNumberInfo::None),
        (_, T::Text) => DataType::Text,
        (_, T::Boolean) => DataType::Boolean,
        (_, T::Date) => DataType::Date,
        (_, T::Timestamp) => DataType::Timestamp(None, TimezoneInfo::None),
        (_, T::Uuid) => DataType::Uuid,
    };
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(nested),
        data_type,
        format: None,
    }
}

/// Adds the new value `v` of column `col` (one plain name, a declared
/// column of `table`, named once) to `values`, checking it is plain.
fn add_value(
    values: &mut Vec<(String, Expr)>,
    col: &ObjectName,
    v: &Expr,
    table: &Table,
    dialect: Dialect,
    command: Command,
) -> Result<()> {
    let key = match col.0.as_slice() {
        [ObjectNamePart::Identifier(c)] => dialect.normalize(c).into_owned(),
        _ => return Err(unsupported(command)),
    };
    if table.column(&key).is_none() {
        return Err(Error::unsupported(format!(
            "{command} of `{col}`, which is not a declared column of {}",
            table.qualified()
        )));
    }
    if values.iter().any(|(c, _)| *c == key) {
        return Err(Error::unsupported(format!("{command} names `{col}` twice")));
    }
    plain_user_expr(v, command)?;
    values.push((key, v.clone()));
    Ok(())
}

/// The declared columns of `table` by name (`col` or `table.col`), typed,
/// for the row-safety of the user's WHERE.
fn column_state(table: &Table, dialect: Dialect, parts: &[Ident]) -> ColState {
    let col = match parts {
        [c] => c,
        [t, c] if dialect.normalize(t) == table.key.name => c,
        _ => return ColState::Unsafe,
    };
    match table.column(&dialect.normalize(col)) {
        Some(c) => ColState::Typed(c.ty),
        None => ColState::Unsafe,
    }
}

/// Replaces the table's columns in `e` by their new values; `missing`
/// gets a column that `values` does not hold, if `e` reads one.
fn substitute(
    e: &mut Expr,
    table: &Table,
    dialect: Dialect,
    values: &[(String, Expr)],
    keep_others: bool,
) -> Result<Vec<String>> {
    struct S<'s> {
        table: &'s Table,
        dialect: Dialect,
        values: &'s [(String, Expr)],
        keep_others: bool,
        used: Vec<String>,
    }
    impl VisitorMut for S<'_> {
        type Break = Error;
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
            let col = match e {
                Expr::Identifier(c) => Some(self.dialect.normalize(c).into_owned()),
                Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                    [t, c] if self.dialect.normalize(t) == self.table.key.name => {
                        Some(self.dialect.normalize(c).into_owned())
                    }
                    _ => None,
                },
                _ => None,
            };
            let Some(col) = col.filter(|c| self.table.column(c).is_some()) else {
                return ControlFlow::Continue(());
            };
            match self.values.iter().find(|(c, _)| *c == col) {
                Some((_, v)) => {
                    *e = Expr::Nested(Box::new(v.clone()));
                    self.used.push(col);
                }
                None if self.keep_others => {}
                None => {
                    return ControlFlow::Break(Error::unsupported(format!(
                        "INSERT into {} without column `{col}`, which a write rule's check reads (its default value is not known here; give it)",
                        self.table.qualified()
                    )))
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut sub = S {
        table,
        dialect,
        values,
        keep_others,
        used: Vec::new(),
    };
    match e.visit(&mut sub) {
        ControlFlow::Break(err) => Err(err),
        ControlFlow::Continue(()) => Ok(sub.used),
    }
}

impl<'a> Rewriter<'a> {
    /// Compiles a write statement under the principal's write rules.
    pub(crate) fn write(&mut self, stmt: &mut Statement) -> Result<Write<'a>> {
        let dialect = self.dialect;
        let (command, canonical) = match &*stmt {
            Statement::Update(u) => {
                let mut c = template("UPDATE t SET a = 1", dialect)?;
                if let Statement::Update(t) = &mut c {
                    if let (Some(name), Some(user)) = (
                        table_factor_name(&mut t.table.relation),
                        match &u.table.relation {
                            TableFactor::Table { name, .. } => Some(name.clone()),
                            _ => None,
                        },
                    ) {
                        *name = user;
                    }
                    t.assignments = u.assignments.clone();
                    t.selection = u.selection.clone();
                    t.returning = u.returning.clone();
                }
                (Command::Update, c)
            }
            Statement::Delete(d) => {
                let mut c = template("DELETE FROM t", dialect)?;
                if let Statement::Delete(t) = &mut c {
                    let user = match &d.from {
                        FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => {
                            f.first().and_then(|twj| match &twj.relation {
                                TableFactor::Table { name, .. } => Some(name.clone()),
                                _ => None,
                            })
                        }
                    };
                    if let (FromTable::WithFromKeyword(f), Some(user)) = (&mut t.from, user) {
                        if let Some(name) = f
                            .first_mut()
                            .and_then(|x| table_factor_name(&mut x.relation))
                        {
                            *name = user;
                        }
                    }
                    t.selection = d.selection.clone();
                    t.returning = d.returning.clone();
                }
                (Command::Delete, c)
            }
            Statement::Insert(i) => {
                let mut c = template("INSERT INTO t (a) VALUES (1)", dialect)?;
                if let Statement::Insert(t) = &mut c {
                    t.table = i.table.clone();
                    t.columns = i.columns.clone();
                    if let (Some(src), Some(user)) = (t.source.as_mut(), i.source.as_ref()) {
                        if let (SetExpr::Values(v), SetExpr::Values(u)) =
                            (src.body.as_mut(), user.body.as_ref())
                        {
                            v.rows = u.rows.clone();
                        }
                    }
                    t.returning = i.returning.clone();
                }
                (Command::Insert, c)
            }
            _ => return Err(Error::NotReadOnly("not a write statement".into())),
        };
        if canonical != *stmt {
            return Err(unsupported(command));
        }
        *stmt = canonical;
        match stmt {
            Statement::Update(u) => {
                let name =
                    table_factor_name(&mut u.table.relation).ok_or_else(|| unsupported(command))?;
                let table = self.write_target(name)?;
                let mut values = Vec::new();
                for a in &u.assignments {
                    let AssignmentTarget::ColumnName(col) = &a.target else {
                        return Err(unsupported(command));
                    };
                    add_value(&mut values, col, &a.value, table, dialect, command)?;
                }
                self.no_mask_oracle(table, &values, command)?;
                if dialect == Dialect::Mysql
                    && values
                        .iter()
                        .any(|(_, v)| reads_a_column(v, table, dialect))
                {
                    // MySQL assigns left to right: a later value sees an
                    // earlier one's new value, which the check, computed
                    // on the old row, would not.
                    return Err(Error::unsupported(
                        "an UPDATE on MySQL/MariaDB whose new values read columns under write rules (MySQL assigns left to right, so the check could see other values than the row gets)",
                    ));
                }
                if let Some(w) = &u.selection {
                    plain_user_expr(w, command)?;
                    self.row_safe_where(w, table, command)?;
                }
                returning_items(&u.returning, command)?;
                let returning = u.returning.is_some();
                let reads_columns = u.selection.is_some()
                    || returning
                    || values
                        .iter()
                        .any(|(_, v)| reads_a_column(v, table, dialect));
                let guard = self.guard(
                    table,
                    command,
                    Some(&values),
                    true,
                    reads_columns,
                    returning,
                )?;
                u.selection = Some(match u.selection.take() {
                    Some(w) => and_all(vec![w, guard.clone()], BinaryOperator::And),
                    None => guard.clone(),
                });
                Ok(Write {
                    table,
                    command,
                    guard,
                })
            }
            Statement::Delete(d) => {
                let FromTable::WithFromKeyword(from) = &mut d.from else {
                    return Err(unsupported(command));
                };
                let name = from
                    .first_mut()
                    .and_then(|x| table_factor_name(&mut x.relation))
                    .ok_or_else(|| unsupported(command))?;
                let table = self.write_target(name)?;
                if let Some(w) = &d.selection {
                    plain_user_expr(w, command)?;
                    self.row_safe_where(w, table, command)?;
                }
                returning_items(&d.returning, command)?;
                let reads_columns = d.selection.is_some() || d.returning.is_some();
                let guard = self.guard(table, command, None, true, reads_columns, false)?;
                d.selection = Some(match d.selection.take() {
                    Some(w) => and_all(vec![w, guard.clone()], BinaryOperator::And),
                    None => guard.clone(),
                });
                Ok(Write {
                    table,
                    command,
                    guard,
                })
            }
            Statement::Insert(i) => {
                let TableObject::TableName(name) = &mut i.table else {
                    return Err(unsupported(command));
                };
                let table = self.write_target(name)?;
                let rows = match i.source.as_deref() {
                    Some(Query { body, .. }) => match body.as_ref() {
                        SetExpr::Values(v) => v.rows.clone(),
                        _ => return Err(unsupported(command)),
                    },
                    None => return Err(unsupported(command)),
                };
                let [row] = rows
                    .iter()
                    .map(|r| r.content.as_slice())
                    .collect::<Vec<_>>()[..]
                else {
                    return Err(Error::unsupported(
                        "INSERT of several rows under write rules (one row per statement: each is checked on its own)",
                    ));
                };
                if row.len() != i.columns.len() {
                    return Err(Error::unsupported(
                        "INSERT whose row has another number of values than columns",
                    ));
                }
                let mut values = Vec::new();
                for (col, v) in i.columns.iter().zip(row) {
                    add_value(&mut values, col, v, table, dialect, command)?;
                }
                self.no_mask_oracle(table, &values, command)?;
                returning_items(&i.returning, command)?;
                let returning = i.returning.is_some();
                let guard = self.guard(table, command, Some(&values), false, false, returning)?;
                let select_sql = if dialect == Dialect::Mysql {
                    "SELECT 1 FROM DUAL WHERE 1 = 1"
                } else {
                    "SELECT 1 WHERE 1 = 1"
                };
                let Statement::Query(mut q) = template(select_sql, dialect)? else {
                    return Err(Error::Verification("insert template".into()));
                };
                if let SetExpr::Select(s) = q.body.as_mut() {
                    s.projection = row.iter().cloned().map(SelectItem::UnnamedExpr).collect();
                    s.selection = Some(guard.clone());
                }
                i.source = Some(q);
                Ok(Write {
                    table,
                    command,
                    guard,
                })
            }
            _ => Err(unsupported(command)),
        }
    }

    /// The declared table a write names, its name qualified with the
    /// schema so that the search path cannot move it.
    fn write_target(&self, name: &mut ObjectName) -> Result<&'a Table> {
        let idents: Vec<Ident> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().cloned())
            .collect();
        let (schema, last) = match idents.as_slice() {
            [t] => (None, t),
            [s, t] => (Some(s), t),
            _ => return Err(Error::unsupported(format!("the table name `{name}`"))),
        };
        let table =
            <Self as super::exposure::Catalog>::table(self, schema, last).ok_or_else(|| {
                Error::AccessDenied {
                    principal: self.principal.name().to_string(),
                    object: format!("table {name}"),
                    reason: format!(
                        "it is not declared in the policy for database `{}`",
                        self.db.name
                    ),
                }
            })?;
        *name = ObjectName(vec![
            ObjectNamePart::Identifier(self.dialect.ident(&table.schema)),
            ObjectNamePart::Identifier(last.clone()),
        ]);
        Ok(table)
    }

    fn row_safe_where(&self, w: &Expr, table: &Table, command: Command) -> Result<()> {
        let dialect = self.dialect;
        let cols = |parts: &[Ident]| column_state(table, dialect, parts);
        for c in conjuncts(w) {
            if !rowsafe::is_row_safe(c, dialect, &cols) {
                return Err(Error::unsupported(format!(
                    "the condition `{c}` in the WHERE of {command} under write rules: it is not row-safe, and the database may evaluate it on rows the rules exclude (a write has no fence)"
                )));
            }
        }
        Ok(())
    }

    /// The rules' condition for `command` on `table`: which rows it may
    /// touch (UPDATE, DELETE: `using`) and, with `values` (the new row's
    /// values; `keep_others`: the row's other columns keep theirs), which
    /// rows it may write (UPDATE, INSERT).
    fn guard(
        &mut self,
        table: &'a Table,
        command: Command,
        values: Option<&[(String, Expr)]>,
        using: bool,
        reads: bool,
        returning: bool,
    ) -> Result<Expr> {
        let (permissive, restrictive) =
            access::decide_write(self.policy, self.principal, self.db, table, command)?;
        let mut bindings: Vec<Binding> = Vec::new();
        let mut parts = Vec::new();
        if reads {
            // As PostgreSQL: a write that reads the rows' columns (a
            // WHERE, a SET value computed from them) touches only rows the
            // principal may also read.
            if let Some(p) = self.read_predicate(table)? {
                parts.push(p);
            }
        }
        if using {
            let mut or = Vec::new();
            for r in &permissive {
                or.push(self.rule_predicate(table, r, &mut bindings)?);
            }
            parts.push(unnest(and_all(or, BinaryOperator::Or)));
            for r in &restrictive {
                parts.push(self.rule_predicate(table, r, &mut bindings)?);
            }
        }
        if let Some(values) = values {
            // Each new value as the column will store it: the check must
            // see `CAST(43.6 AS BIGINT)` (44), not `43.6`, and on SQLite
            // `'44'` stored in an integer column as 44.
            let typed: Vec<(String, Expr)> = values
                .iter()
                .map(|(c, v)| {
                    let ty = table.column(c).map(|col| col.ty);
                    (c.clone(), cast_to(v, ty, self.dialect))
                })
                .collect();
            let raw = values;
            let values = typed.as_slice();
            let keep_others = command == Command::Update;
            let check = |rw: &mut Self, r: &Rule, bindings: &mut Vec<Binding>| {
                let rule: &Rule = r.check.as_deref().unwrap_or(r);
                let mut e = rw.rule_predicate(table, rule, bindings)?;
                let used = substitute(&mut e, table, rw.dialect, values, keep_others)?;
                // A new value the check reads is computed there as well as
                // where it is stored: it must be row-safe (an UPDATE's
                // WHERE may compute it on rows the rules exclude) and so
                // deterministic (`random()` is not: the check and the row
                // would see two values).
                new_values_safe(raw, values, &used, table, rw.dialect)?;
                Ok::<Expr, Error>(e)
            };
            let mut or = Vec::new();
            for r in &permissive {
                or.push(check(self, r, &mut bindings)?);
            }
            parts.push(unnest(and_all(or, BinaryOperator::Or)));
            for r in &restrictive {
                parts.push(check(self, r, &mut bindings)?);
            }
            if returning || reads {
                // RETURNING shows the new row, and an UPDATE that reads
                // the rows (a WHERE, a value computed from a column) needs
                // read access to it: it must be one the principal may read
                // (PostgreSQL checks SELECT policies on the new row then),
                // so the read rules are a check too.
                if let Some(mut p) = self.read_predicate(table)? {
                    if contains_query(&p) {
                        return Err(Error::unsupported(format!(
                            "{} on {}, whose read rules read other tables (the new row cannot be checked against them)",
                            if returning {
                                "RETURNING from a write"
                            } else {
                                "an UPDATE that reads the rows (a WHERE, or a value computed from a column)"
                            },
                            table.qualified()
                        )));
                    }
                    let used = substitute(&mut p, table, self.dialect, values, keep_others)?;
                    new_values_safe(raw, values, &used, table, self.dialect)?;
                    parts.push(p);
                }
            }
        }
        let mut groups: Vec<String> = permissive
            .iter()
            .chain(&restrictive)
            .map(|r| r.group.clone())
            .collect();
        groups.dedup();
        self.applied.push(Applied {
            table: table.qualified(),
            alias: table.name.clone(),
            groups,
            kind: match command {
                Command::Insert => "insert",
                Command::Update => "update",
                Command::Delete => "delete",
            },
            question: None,
            bindings,
        });
        Ok(unnest(and_all(parts, BinaryOperator::And)))
    }
}

impl Rewriter<'_> {
    /// Proves a write statement printed earlier (literals, not bind
    /// parameters) safe for the principal: the guard is built again from
    /// the statement's own values and must stand where the rewrite puts
    /// it ([`verify_write`]).
    pub(crate) fn recheck_write(&mut self, stmt: &Statement) -> Result<()> {
        let dialect = self.dialect;
        let mut stmt_copy = stmt.clone();
        let target = match &mut stmt_copy {
            Statement::Update(u) => table_factor_name(&mut u.table.relation).cloned(),
            Statement::Delete(d) => match &mut d.from {
                FromTable::WithFromKeyword(f) => f
                    .first_mut()
                    .and_then(|x| table_factor_name(&mut x.relation))
                    .cloned(),
                FromTable::WithoutKeyword(_) => None,
            },
            Statement::Insert(i) => match &i.table {
                TableObject::TableName(n) => Some(n.clone()),
                _ => None,
            },
            _ => None,
        };
        let mut name =
            target.ok_or_else(|| Error::Verification("a write without a table".into()))?;
        if name.0.len() != 2 {
            return Err(Error::Verification(format!(
                "the table `{name}` of a write is not schema-qualified"
            )));
        }
        let table = self.write_target(&mut name)?;
        let user_part = |sel: &Option<Expr>| matches!(sel, Some(Expr::BinaryOp { op: BinaryOperator::And, left, .. }) if matches!(left.as_ref(), Expr::Nested(_)));
        let (command, guard) = match stmt {
            Statement::Update(u) => {
                let mut values = Vec::new();
                for a in &u.assignments {
                    let AssignmentTarget::ColumnName(col) = &a.target else {
                        return Err(unsupported(Command::Update));
                    };
                    add_value(&mut values, col, &a.value, table, dialect, Command::Update)?;
                }
                // The guard alone, or (user) AND (guard): try the split
                // the statement shows; a user WHERE reads the rows.
                returning_items(&u.returning, Command::Update)?;
                let returning = u.returning.is_some();
                let reads = user_part(&u.selection)
                    || returning
                    || values
                        .iter()
                        .any(|(_, v)| reads_a_column(v, table, dialect));
                let guard = self.guard(
                    table,
                    Command::Update,
                    Some(&values),
                    true,
                    reads,
                    returning,
                )?;
                (Command::Update, guard)
            }
            Statement::Delete(d) => {
                returning_items(&d.returning, Command::Delete)?;
                let reads = user_part(&d.selection) || d.returning.is_some();
                (
                    Command::Delete,
                    self.guard(table, Command::Delete, None, true, reads, false)?,
                )
            }
            Statement::Insert(i) => {
                let Some(SetExpr::Select(s)) = i.source.as_ref().map(|q| q.body.as_ref()) else {
                    return Err(Error::Verification(
                        "an INSERT that is not INSERT … SELECT".into(),
                    ));
                };
                let mut values = Vec::new();
                if i.columns.len() != s.projection.len() {
                    return Err(unsupported(Command::Insert));
                }
                for (col, item) in i.columns.iter().zip(&s.projection) {
                    let SelectItem::UnnamedExpr(e) = item else {
                        return Err(unsupported(Command::Insert));
                    };
                    add_value(&mut values, col, e, table, dialect, Command::Insert)?;
                }
                returning_items(&i.returning, Command::Insert)?;
                let returning = i.returning.is_some();
                (
                    Command::Insert,
                    self.guard(
                        table,
                        Command::Insert,
                        Some(&values),
                        false,
                        false,
                        returning,
                    )?,
                )
            }
            _ => return Err(Error::Verification("not a write".into())),
        };
        let w = Write {
            table,
            command,
            guard,
        };
        verify_write(stmt, &w, dialect, &self.policy.functions)
    }
}

/// Whether `(v)` occurs in `e`.
fn contains_nested(e: &Expr, v: &Expr) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        if matches!(x, Expr::Nested(inner) if **inner == *v) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// Whether `e` names a column of `table`.
fn reads_a_column(e: &Expr, table: &Table, dialect: Dialect) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        // Any name reads the row: a column, or the whole row by the
        // table's name (`'a' || document`), or `t.*`.
        let _ = (table, dialect);
        let hit = matches!(
            x,
            Expr::Identifier(_)
                | Expr::CompoundIdentifier(_)
                | Expr::Wildcard(_)
                | Expr::QualifiedWildcard(..)
        );
        if hit {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

impl Rewriter<'_> {
    /// Refuses a write that assigns a column one of the principal's masks
    /// on the table could be probed through: the column of a `hash` mask
    /// (writing a chosen value and reading its hash tests guesses against
    /// the other rows' hashes), and any column an `unless` or an
    /// `expression` mask reads besides its own (writing it could lift the
    /// mask, or show through it).
    fn no_mask_oracle(
        &mut self,
        table: &Table,
        values: &[(String, Expr)],
        command: Command,
    ) -> Result<()> {
        let Ok(access::Decision::Sandboxed(sbs)) =
            access::decide(self.policy, self.principal, self.db, table)
        else {
            return Ok(());
        };
        for m in sbs.iter().flat_map(|s| s.masks.iter()) {
            let mut reads: Vec<String> = Vec::new();
            if m.kind == crate::policy::MaskKind::Hash {
                reads.push(m.column.clone());
            }
            for r in m.unless.iter() {
                reads.extend(crate::policy::mask::columns_read(
                    &r.expr,
                    table,
                    self.db.dialect,
                ));
            }
            for r in m.custom.iter() {
                reads.extend(
                    crate::policy::mask::columns_read(&r.expr, table, self.db.dialect)
                        .into_iter()
                        .filter(|c| *c != m.column),
                );
            }
            if let Some((col, _)) = values.iter().find(|(c, _)| reads.contains(c)) {
                return Err(Error::unsupported(format!(
                    "{command} that assigns column {}.{col}, which the principal's mask on `{}` reads ({}): a write of a chosen value there could be used to test guesses or lift the mask",
                    table.qualified(),
                    m.column,
                    m.kind
                )));
            }
        }
        Ok(())
    }
}

impl<'a> Rewriter<'a> {
    /// The principal's read sandbox on `table` as a condition on its rows
    /// (`None`: it reads the table unrestricted); refused where it reads
    /// through a custom sandbox, whose rows no condition describes.
    fn read_predicate(&mut self, table: &'a Table) -> Result<Option<Expr>> {
        let decision = access::decide(self.policy, self.principal, self.db, table)?;
        let access::Decision::Sandboxed(sbs) = decision else {
            return Ok(None);
        };
        if sbs
            .iter()
            .any(|s| matches!(s.kind, crate::policy::SandboxKind::Custom { .. }))
        {
            return Err(Error::unsupported(format!(
                "a write on {} that reads its rows, which the principal reads through a custom sandbox (no condition on the table's rows describes it)",
                table.qualified()
            )));
        }
        let alias = self.dialect.ident(&table.name);
        let (q, visible) = self.build_sandbox(table, &sbs, None, &alias)?;
        if let Some((label, _)) = visible {
            let what = if label == super::sandbox::MASKS {
                "some columns masked (the write would compare or return their stored values)"
            } else {
                "some columns only"
            };
            return Err(Error::unsupported(format!(
                "a write on {} that reads its rows, of which the principal sees {what}",
                table.qualified()
            )));
        }
        match *q.body {
            SetExpr::Select(s) => Ok(s.selection.map(unnest)),
            _ => Err(Error::Verification("a sandbox is not a SELECT".into())),
        }
    }
}

/// The verifier's part for writes: the statement targets the table the
/// rules were built for, by its qualified name; the rules' guard stands
/// where it belongs, unchanged (compared by value with the one built); the
/// user's WHERE before it is row-safe; and nothing the user wrote holds a
/// subquery, a bind placeholder or a function the policy does not allow.
pub(crate) fn verify_write(
    stmt: &Statement,
    w: &Write<'_>,
    dialect: Dialect,
    functions: &crate::policy::FunctionPolicy,
) -> Result<()> {
    let fail = |m: &str| Err(Error::Verification(format!("{} {m}", w.command)));
    let expected_name = |name: &ObjectName| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(|i| dialect.normalize(i).into_owned())
            .collect();
        parts == [w.table.key.schema.clone(), w.table.key.name.clone()]
    };
    let user = |e: &Expr| -> Result<()> {
        plain_user_expr(e, w.command)?;
        let mut err = None;
        let _ = sqlparser::ast::visit_expressions(e, |x| {
            if let Err(e) = crate::functions::check_expr(x, dialect, functions)
                .and_then(|()| crate::functions::pattern::check(x, dialect, &|_| None))
            {
                err = Some(e);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        err.map_or(Ok(()), Err)
    };
    let user_where = |sel: &Option<Expr>| -> Result<()> {
        match sel {
            Some(e) if *e == w.guard => Ok(()),
            Some(Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            }) => match (left.as_ref(), right.as_ref()) {
                (Expr::Nested(u), Expr::Nested(g)) if **g == w.guard => {
                    user(u)?;
                    let cols = |parts: &[Ident]| column_state(w.table, dialect, parts);
                    if conjuncts(u)
                        .into_iter()
                        .all(|c| rowsafe::is_row_safe(c, dialect, &cols))
                    {
                        Ok(())
                    } else {
                        fail("has a condition that is not row-safe")
                    }
                }
                _ => fail("lost the rules' condition"),
            },
            _ => fail("lost the rules' condition"),
        }
    };
    // The statement must be exactly the one the rewrite builds from its
    // parts: rebuilt from the templates, anything else it holds (a CTE in
    // INSERT's SELECT, HAVING, REPLACE, RETURNING, a join) makes them
    // differ.
    let canonical = match stmt {
        Statement::Update(u) => {
            let mut c = template("UPDATE t SET a = 1", dialect)?;
            if let (Statement::Update(t), TableFactor::Table { name, .. }) =
                (&mut c, &u.table.relation)
            {
                if let Some(n) = table_factor_name(&mut t.table.relation) {
                    *n = name.clone();
                }
                t.assignments = u.assignments.clone();
                t.selection = u.selection.clone();
                t.returning = u.returning.clone();
            }
            c
        }
        Statement::Delete(d) => {
            let mut c = template("DELETE FROM t", dialect)?;
            let user = match &d.from {
                FromTable::WithFromKeyword(f) => f.first().and_then(|x| match &x.relation {
                    TableFactor::Table { name, .. } => Some(name.clone()),
                    _ => None,
                }),
                FromTable::WithoutKeyword(_) => None,
            };
            if let (Statement::Delete(t), Some(user)) = (&mut c, user) {
                if let FromTable::WithFromKeyword(f) = &mut t.from {
                    if let Some(n) = f
                        .first_mut()
                        .and_then(|x| table_factor_name(&mut x.relation))
                    {
                        *n = user;
                    }
                }
                t.selection = d.selection.clone();
                t.returning = d.returning.clone();
            }
            c
        }
        Statement::Insert(i) => {
            let mut c = template(
                if dialect == Dialect::Mysql {
                    "INSERT INTO t (a) SELECT 1 FROM DUAL WHERE 1 = 1"
                } else {
                    "INSERT INTO t (a) SELECT 1 WHERE 1 = 1"
                },
                dialect,
            )?;
            if let Statement::Insert(t) = &mut c {
                t.table = i.table.clone();
                t.columns = i.columns.clone();
                if let (Some(SetExpr::Select(ts)), Some(SetExpr::Select(us))) = (
                    t.source.as_mut().map(|q| q.body.as_mut()),
                    i.source.as_ref().map(|q| q.body.as_ref()),
                ) {
                    ts.projection = us.projection.clone();
                    ts.selection = us.selection.clone();
                }
                t.returning = i.returning.clone();
            }
            c
        }
        _ => return fail("is not a write"),
    };
    if canonical != *stmt {
        return fail("holds a clause the rewrite does not make");
    }
    match (stmt, w.command) {
        (Statement::Update(u), Command::Update) => {
            match &u.table.relation {
                TableFactor::Table { name, .. } if expected_name(name) => {}
                _ => return fail("targets another table"),
            }
            if !u.table.joins.is_empty() || u.from.is_some() {
                return fail("has a clause it may not have");
            }
            returning_items(&u.returning, w.command)?;
            for e in returning_exprs(&u.returning) {
                user(e)?;
            }
            let cols = |parts: &[Ident]| column_state(w.table, dialect, parts);
            let mut seen = Vec::new();
            for a in &u.assignments {
                let AssignmentTarget::ColumnName(col) = &a.target else {
                    return fail("assigns something other than a column");
                };
                add_value(&mut seen, col, &a.value, w.table, dialect, w.command)?;
                user(&a.value)?;
                if !rowsafe::is_row_safe_value(&a.value, dialect, &cols)
                    && contains_nested(&w.guard, &a.value)
                {
                    return fail("computes a value that is not row-safe in its WHERE");
                }
            }
            user_where(&u.selection)
        }
        (Statement::Delete(d), Command::Delete) => {
            match &d.from {
                FromTable::WithFromKeyword(f) => match f.as_slice() {
                    [twj] if twj.joins.is_empty() => match &twj.relation {
                        TableFactor::Table { name, .. } if expected_name(name) => {}
                        _ => return fail("targets another table"),
                    },
                    _ => return fail("targets several tables"),
                },
                FromTable::WithoutKeyword(_) => return fail("has no FROM"),
            }
            if d.using.is_some() || d.limit.is_some() {
                return fail("has a clause it may not have");
            }
            returning_items(&d.returning, w.command)?;
            for e in returning_exprs(&d.returning) {
                user(e)?;
            }
            user_where(&d.selection)
        }
        (Statement::Insert(i), Command::Insert) => {
            match &i.table {
                TableObject::TableName(name) if expected_name(name) => {}
                _ => return fail("targets another table"),
            }
            if i.on.is_some() {
                return fail("has a clause it may not have");
            }
            returning_items(&i.returning, w.command)?;
            for e in returning_exprs(&i.returning) {
                user(e)?;
            }
            let Some(SetExpr::Select(s)) = i.source.as_ref().map(|q| q.body.as_ref()) else {
                return fail("is not INSERT … SELECT … WHERE <check>");
            };
            if s.selection.as_ref() != Some(&w.guard) {
                return fail("lost the rules' check");
            }
            if s.projection.len() != i.columns.len() || !s.from.iter().all(|f| {
                f.joins.is_empty()
                    && matches!(&f.relation, TableFactor::Table { name, args: None, .. } if name.to_string().eq_ignore_ascii_case("dual"))
            }) {
                return fail("inserts something other than one row of values");
            }
            let mut seen = Vec::new();
            for (col, item) in i.columns.iter().zip(&s.projection) {
                match item {
                    SelectItem::UnnamedExpr(e) => {
                        add_value(&mut seen, col, e, w.table, dialect, w.command)?;
                        user(e)?
                    }
                    _ => return fail("inserts something other than values"),
                }
            }
            Ok(())
        }
        _ => fail("changed kind"),
    }
}
