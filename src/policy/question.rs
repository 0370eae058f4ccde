//! Saved questions: `{{variable}}` markers, parsing once at load, output
//! columns and variable types.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Ident, InTarget, Query, SelectItem, SetExpr, Statement, TableFactor,
    Visit, Visitor,
};
use sqlparser::parser::Parser;

use super::{ColumnType, Database, TableKey};
use crate::dialect::Dialect;

/// `{{tenant}}` is parsed as the identifier `__sqlsandbox_var_tenant`.
pub const VAR_PREFIX: &str = "__sqlsandbox_var_";

/// Replaces `{{ name }}` by marker identifiers. Errors name the problem.
pub(crate) fn substitute_variables(sql: &str) -> Result<(String, Vec<String>), String> {
    if sql.contains("[[") || sql.contains("]]") {
        return Err("optional clauses `[[ ... ]]` are not allowed: every variable of a question is required".into());
    }
    let mut out = String::with_capacity(sql.len());
    let mut vars: Vec<String> = Vec::new();
    let mut rest = sql;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "unterminated `{{` variable".to_string())?;
        let name = after[..end].trim();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("`{{{{{name}}}}}` is not a valid variable name"));
        }
        out.push(' ');
        out.push_str(VAR_PREFIX);
        out.push_str(name);
        out.push(' ');
        if !vars.iter().any(|v| v == name) {
            vars.push(name.to_string());
        }
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err("stray `}}`".into());
    }
    out.push_str(rest);
    Ok((out, vars))
}

/// The variable name if `e` is a marker identifier.
pub(crate) fn marker(e: &Expr) -> Option<&str> {
    match e {
        Expr::Identifier(Ident {
            value,
            quote_style: None,
            ..
        }) => value.strip_prefix(VAR_PREFIX),
        _ => None,
    }
}

/// Parses a question's SQL (after substitution) as exactly one query.
pub(crate) fn parse(sql: &str, dialect: Dialect) -> Result<Query, String> {
    let mut stmts = Parser::parse_sql(dialect.parser(), sql).map_err(|e| e.to_string())?;
    if stmts.len() != 1 {
        return Err(format!("expected one statement, found {}", stmts.len()));
    }
    match stmts.pop() {
        Some(Statement::Query(q)) => Ok(*q),
        Some(other) => Err(format!(
            "a question must be a read query, found `{}`",
            first_words(&other.to_string())
        )),
        None => Err("empty question".into()),
    }
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The declared tables read by the outermost SELECT's FROM clause.
fn from_tables<'a>(query: &Query, db: &'a Database) -> Vec<&'a super::Table> {
    let mut out = Vec::new();
    if let SetExpr::Select(select) = query.body.as_ref() {
        for twj in &select.from {
            let mut push = |f: &TableFactor| {
                if let TableFactor::Table { name, .. } = f {
                    if let Some(key) = table_key(name, db) {
                        if let Some(t) = db.table(&key) {
                            out.push(t.as_ref());
                        }
                    }
                }
            };
            push(&twj.relation);
            for j in &twj.joins {
                push(&j.relation);
            }
        }
    }
    out
}

fn table_key(name: &sqlparser::ast::ObjectName, db: &Database) -> Option<TableKey> {
    let parts: Vec<&Ident> = name.0.iter().filter_map(|p| p.as_ident()).collect();
    match parts.as_slice() {
        [t] => Some(TableKey {
            schema: db.default_schema.clone(),
            name: db.dialect.normalize(t).into_owned(),
        }),
        [s, t] => Some(TableKey {
            schema: db.dialect.normalize(s).into_owned(),
            name: db.dialect.normalize(t).into_owned(),
        }),
        _ => None,
    }
}

/// Output columns of the question (normalised names, types when known), or
/// an error saying which item has no name.
pub(crate) fn output_columns(
    query: &Query,
    db: &Database,
) -> Result<Vec<(String, Option<ColumnType>)>, String> {
    let mut body = query.body.as_ref();
    // For a set operation the left-most branch names the columns.
    while let SetExpr::SetOperation { left, .. } = body {
        body = left.as_ref();
    }
    let select = match body {
        SetExpr::Select(s) => s,
        SetExpr::Query(q) => return output_columns(q, db),
        _ => return Err("cannot determine the columns of this question".into()),
    };
    let tables = from_tables(query, db);
    let lookup = |name: &str| -> Option<ColumnType> {
        tables.iter().find_map(|t| t.column(name).map(|c| c.ty))
    };
    let mut cols = Vec::new();
    for (i, item) in select.projection.iter().enumerate() {
        match item {
            SelectItem::UnnamedExpr(Expr::Identifier(id)) => {
                let n = db.dialect.normalize(id).into_owned();
                let ty = lookup(&n);
                cols.push((n, ty));
            }
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                let last = parts.last().ok_or("empty identifier")?;
                let n = db.dialect.normalize(last).into_owned();
                let ty = lookup(&n);
                cols.push((n, ty));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let n = db.dialect.normalize(alias).into_owned();
                let ty = match expr {
                    Expr::Identifier(id) => lookup(&db.dialect.normalize(id)),
                    Expr::CompoundIdentifier(p) => p.last().and_then(|l| lookup(&db.dialect.normalize(l))),
                    _ => None,
                };
                cols.push((n, ty));
            }
            SelectItem::Wildcard(_)
                if tables.len() == 1 && select.from.len() == 1 && select.from[0].joins.is_empty() =>
            {
                for c in &tables[0].columns {
                    cols.push((c.key.clone(), Some(c.ty)));
                }
            }
            _ => {
                return Err(format!(
                    "cannot determine the name of output column {} (`{item}`); give it an alias or name a column",
                    i + 1
                ))
            }
        }
    }
    Ok(cols)
}

/// Infers variable types from comparisons `column <op> {{var}}` and
/// `column IN ({{var}})`.
pub(crate) fn infer_variable_types(query: &Query, db: &Database) -> HashMap<String, ColumnType> {
    struct Infer<'a> {
        db: &'a Database,
        out: HashMap<String, ColumnType>,
    }
    impl Infer<'_> {
        fn column_type(&self, e: &Expr) -> Option<ColumnType> {
            let id = match e {
                Expr::Identifier(id) => id,
                Expr::CompoundIdentifier(p) => p.last()?,
                _ => return None,
            };
            // Only infer when every declared column of that name agrees
            // (the index holds `None` for names with conflicting types).
            let key = self.db.dialect.normalize(id);
            self.db.column_types.get(key.as_ref()).copied().flatten()
        }
    }
    impl Visitor for Infer<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::BinaryOp {
                    left,
                    op:
                        BinaryOperator::Eq
                        | BinaryOperator::NotEq
                        | BinaryOperator::Lt
                        | BinaryOperator::LtEq
                        | BinaryOperator::Gt
                        | BinaryOperator::GtEq,
                    right,
                } => {
                    for (a, b) in [(left, right), (right, left)] {
                        if let (Some(v), Some(t)) = (marker(b), self.column_type(a)) {
                            self.out.entry(v.to_string()).or_insert(t);
                        }
                    }
                }
                Expr::In {
                    expr,
                    target: InTarget::List(list),
                    ..
                } => {
                    if let Some(t) = self.column_type(expr) {
                        for item in list {
                            if let Some(v) = marker(item) {
                                self.out.entry(v.to_string()).or_insert(t);
                            }
                        }
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = Infer {
        db,
        out: HashMap::new(),
    };
    let _ = query.visit(&mut v);
    v.out
}

/// Variables that appear as markers in the parsed query (a `{{var}}` inside
/// a string literal or comment does not).
pub(crate) fn markers_in(query: &Query) -> Vec<String> {
    struct Find(Vec<String>);
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if let Some(v) = marker(e) {
                if !self.0.iter().any(|x| x == v) {
                    self.0.push(v.to_string());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Find(Vec::new());
    let _ = query.visit(&mut f);
    f.0
}

/// Qualifies every unqualified table the question reads with the database's
/// default schema, so that a CTE of the user's query (which surrounds the
/// inlined question) can never stand in for one of the question's tables.
/// Which names are CTEs is decided by [`crate::scope`], by real scope —
/// never by name alone. A question may not define a CTE with the name of a
/// declared table (a reader of the question could not tell them apart),
/// and every base table must end up qualified: errors say which.
pub(crate) fn qualify_tables(query: &mut Query, db: &Database) -> Result<(), String> {
    use crate::scope::{Binding, Tracker};
    use sqlparser::ast::{ObjectNamePart, VisitMut, VisitorMut};
    struct Qualify<'a> {
        scope: Tracker,
        db: &'a Database,
    }
    impl VisitorMut for Qualify<'_> {
        type Break = String;
        fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<String> {
            if let Some(w) = &q.with {
                for c in &w.cte_tables {
                    let key = self.db.dialect.normalize(&c.alias.name);
                    if self.db.tables.values().any(|t| t.key.name == key) {
                        return ControlFlow::Break(format!(
                            "the CTE `{}` has the name of a declared table; rename it",
                            c.alias.name
                        ));
                    }
                }
            }
            match self.scope.enter(q, self.db.dialect) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(e.to_string()),
            }
        }
        fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<String> {
            match self.scope.leave(q) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(e.to_string()),
            }
        }
        fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<String> {
            if let TableFactor::Table {
                name, args: None, ..
            } = f
            {
                match self.scope.resolve(name, self.db.dialect) {
                    Ok(Binding::Cte)
                    | Ok(Binding::Table {
                        schema: Some(_), ..
                    }) => {}
                    Ok(Binding::Table { schema: None, .. }) => {
                        let schema = self.db.dialect.ident(&self.db.default_schema);
                        name.0.insert(0, ObjectNamePart::Identifier(schema));
                    }
                    Err(e) => return ControlFlow::Break(e.to_string()),
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut q = Qualify {
        scope: Tracker::new(),
        db,
    };
    match query.visit(&mut q) {
        ControlFlow::Break(m) => Err(m),
        ControlFlow::Continue(()) => Ok(()),
    }
}
