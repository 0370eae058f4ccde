//! Saved questions: `{{variable}}` markers, parsing once at load, output
//! columns and variable types.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Ident, InTarget, JoinConstraint, JoinOperator, Query, SelectItem,
    SetExpr, Statement, TableFactor, TableWithJoins, UnaryOperator, Visit, Visitor,
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
    while let Some((before, after)) = rest.split_once("{{") {
        out.push_str(before);
        let (name, after_var) = after
            .split_once("}}")
            .ok_or_else(|| "unterminated `{{` variable".to_string())?;
        let name = name.trim();
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
        rest = after_var;
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
    // Literals stay as written (`'o''neil'`), as the query front end and
    // `recheck` read them: the verifier compares the two.
    let mut stmts = Parser::new(dialect.parser())
        .with_options(sqlparser::parser::ParserOptions::new().with_unescape(false))
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| e.to_string())?;
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

/// What a FROM item of a question provides, for typing its output.
enum Provides<'a> {
    /// A declared table.
    Table(&'a super::Table),
    /// A CTE or derived table whose output columns are known.
    Columns(Vec<(String, Option<ColumnType>)>),
    /// Something else (a table function, an undeclared table): any column,
    /// of unknown type.
    Unknown,
}

impl Provides<'_> {
    /// `None`: does not have it; `Some(None)`: has it, type unknown.
    fn column(&self, col: &str) -> Option<Option<ColumnType>> {
        match self {
            Provides::Table(t) => t.column(col).map(|c| Some(c.ty)),
            Provides::Columns(cols) => cols.iter().find(|(c, _)| c == col).map(|(_, t)| *t),
            Provides::Unknown => Some(None),
        }
    }
}

/// The FROM items of a SELECT with the name each is referred to by (its
/// alias, else its name, normalised) and what it provides. `ctes` are the
/// CTEs in scope, innermost last.
fn from_items<'a>(
    select: &sqlparser::ast::Select,
    db: &'a Database,
    ctes: &[(String, &Query)],
) -> Vec<(String, Provides<'a>)> {
    let mut out = Vec::new();
    for twj in &select.from {
        let mut push = |f: &TableFactor| match f {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let last = name.0.last().and_then(|p| p.as_ident());
                let cte = match (name.0.len(), last, args) {
                    (1, Some(id), None) => {
                        let key = db.dialect.normalize(id);
                        ctes.iter().rposition(|(n, _)| *n == key)
                    }
                    _ => None,
                };
                let provides = match cte {
                    Some(i) => {
                        let (before, _) = ctes.split_at(i);
                        match ctes.get(i).map(|(_, q)| columns_in(q, db, before)) {
                            Some(Ok(cols)) => Provides::Columns(cols),
                            _ => Provides::Unknown,
                        }
                    }
                    None if args.is_none() => table_key(name, db)
                        .and_then(|key| db.table(&key))
                        .map_or(Provides::Unknown, |t| Provides::Table(t.as_ref())),
                    None => Provides::Unknown,
                };
                let key = match (alias, last) {
                    (Some(a), _) => db.dialect.normalize(&a.name).into_owned(),
                    (None, Some(id)) => db.dialect.normalize(id).into_owned(),
                    (None, None) => String::new(),
                };
                out.push((key, provides));
            }
            TableFactor::Derived {
                alias, subquery, ..
            } => {
                let key = alias
                    .as_ref()
                    .map(|a| db.dialect.normalize(&a.name).into_owned())
                    .unwrap_or_default();
                let provides = match columns_in(subquery, db, ctes) {
                    Ok(cols) if alias.as_ref().is_none_or(|a| a.columns.is_empty()) => {
                        Provides::Columns(cols)
                    }
                    _ => Provides::Unknown,
                };
                out.push((key, provides));
            }
            _ => out.push((String::new(), Provides::Unknown)),
        };
        push(&twj.relation);
        for j in &twj.joins {
            push(&j.relation);
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
/// an error saying which item has no name. Types follow column references
/// through CTEs and derived tables.
pub(crate) fn output_columns(
    query: &Query,
    db: &Database,
) -> Result<Vec<(String, Option<ColumnType>)>, String> {
    columns_in(query, db, &[])
}

fn columns_in(
    query: &Query,
    db: &Database,
    outer: &[(String, &Query)],
) -> Result<Vec<(String, Option<ColumnType>)>, String> {
    // This query's CTEs are visible to its body (a CTE's own body sees the
    // ones before it: `from_items` splits the list there).
    let mut ctes: Vec<(String, &Query)> = outer.to_vec();
    if let Some(with) = &query.with {
        for c in &with.cte_tables {
            ctes.push((db.dialect.normalize(&c.alias.name).into_owned(), &c.query));
        }
    }
    let mut body = query.body.as_ref();
    // For a set operation the left-most branch names the columns.
    while let SetExpr::SetOperation { left, .. } = body {
        body = left.as_ref();
    }
    let select = match body {
        SetExpr::Select(s) => s,
        SetExpr::Query(q) => return columns_in(q, db, &ctes),
        _ => return Err("cannot determine the columns of this question".into()),
    };
    let sources = from_items(select, db, &ctes);
    // A column's type: from the FROM item its qualifier names, or, for a
    // bare name, from the one FROM item that has it; unknown when none or
    // several might.
    let lookup = |parts: &[Ident]| -> Option<ColumnType> {
        let (col, qualifier) = match parts {
            [col] => (col, None),
            [.., q, col] => (col, Some(db.dialect.normalize(q))),
            [] => return None,
        };
        let col = db.dialect.normalize(col);
        match qualifier {
            Some(q) => sources
                .iter()
                .find(|(k, _)| *k == q)
                .and_then(|(_, p)| p.column(&col))
                .flatten(),
            None => {
                let mut having = sources.iter().filter_map(|(_, p)| p.column(&col));
                match (having.next(), having.next()) {
                    (Some(ty), None) => ty,
                    _ => None,
                }
            }
        }
    };
    let mut cols = Vec::new();
    for (i, item) in select.projection.iter().enumerate() {
        match item {
            SelectItem::UnnamedExpr(Expr::Identifier(id)) => {
                let n = db.dialect.normalize(id).into_owned();
                let ty = lookup(std::slice::from_ref(id));
                cols.push((n, ty));
            }
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                let last = parts.last().ok_or("empty identifier")?;
                let n = db.dialect.normalize(last).into_owned();
                let ty = lookup(parts);
                cols.push((n, ty));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let n = db.dialect.normalize(alias).into_owned();
                cols.push((n, expr_type(expr, &lookup)));
            }
            SelectItem::Wildcard(_)
                if matches!(select.from.as_slice(), [twj] if twj.joins.is_empty()) =>
            {
                match sources.as_slice() {
                    [(_, Provides::Table(table))] => {
                        for c in &table.columns {
                            cols.push((c.key.clone(), Some(c.ty)));
                        }
                    }
                    [(_, Provides::Columns(known))] => cols.extend(known.iter().cloned()),
                    _ => {
                        return Err(format!(
                            "cannot determine the columns of `*` in output column {} (the table is not declared)",
                            i + 1
                        ))
                    }
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

/// The type of a select-list expression when it can be told without the
/// database: column references (through `column`), literals, casts, and
/// common operators and functions with a fixed result type. `None` when
/// it cannot (the caller then needs a declared type).
pub(crate) fn expr_type(
    e: &Expr,
    column: &dyn Fn(&[Ident]) -> Option<ColumnType>,
) -> Option<ColumnType> {
    use sqlparser::ast::{CastKind, FunctionArg, FunctionArgExpr, FunctionArguments, Value as V};
    let numeric = |a: Option<ColumnType>, b: Option<ColumnType>| match (a?, b?) {
        (ColumnType::Integer, ColumnType::Integer) => Some(ColumnType::Integer),
        (ColumnType::Integer | ColumnType::Decimal, ColumnType::Integer | ColumnType::Decimal) => {
            Some(ColumnType::Decimal)
        }
        _ => None,
    };
    match e {
        Expr::Nested(inner) => expr_type(inner, column),
        Expr::Identifier(id) if marker(e).is_none() => column(std::slice::from_ref(id)),
        Expr::CompoundIdentifier(parts) => column(parts),
        Expr::Value(v) => match &v.value {
            V::Number(n, _) if n.bytes().all(|b| b.is_ascii_digit()) => Some(ColumnType::Integer),
            V::Number(..) => Some(ColumnType::Decimal),
            V::SingleQuotedString(_) | V::EscapedStringLiteral(_) | V::DoubleQuotedString(_) => {
                Some(ColumnType::Text)
            }
            V::Boolean(_) => Some(ColumnType::Boolean),
            _ => None,
        },
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon | CastKind::TryCast | CastKind::SafeCast,
            data_type,
            ..
        } => sql_type(&data_type.to_string()),
        Expr::TypedString(ts) => sql_type(&ts.data_type.to_string()),
        Expr::UnaryOp { op, expr } => match op {
            UnaryOperator::Not => Some(ColumnType::Boolean),
            UnaryOperator::Minus | UnaryOperator::Plus => {
                numeric(expr_type(expr, column), Some(ColumnType::Integer))
            }
            _ => None,
        },
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::Plus
            | BinaryOperator::Minus
            | BinaryOperator::Multiply
            | BinaryOperator::Modulo => numeric(expr_type(left, column), expr_type(right, column)),
            BinaryOperator::Divide => numeric(expr_type(left, column), expr_type(right, column))
                .map(|_| ColumnType::Decimal),
            BinaryOperator::StringConcat => Some(ColumnType::Text),
            _ if is_boolean_operation(e) => Some(ColumnType::Boolean),
            _ => None,
        },
        e if is_boolean_operation(e) => Some(ColumnType::Boolean),
        Expr::Substring { .. } | Expr::Trim { .. } => Some(ColumnType::Text),
        Expr::Position { .. } => Some(ColumnType::Integer),
        Expr::Ceil { .. } | Expr::Floor { .. } | Expr::Extract { .. } => Some(ColumnType::Decimal),
        Expr::Case {
            conditions,
            else_result,
            ..
        } => conditions
            .iter()
            .map(|c| &c.result)
            .chain(else_result.as_deref())
            .find_map(|r| expr_type(r, column)),
        Expr::Function(f) => {
            let name = f.name.0.last()?.as_ident()?.value.to_ascii_lowercase();
            let args: Vec<&Expr> = match &f.args {
                FunctionArguments::List(l) => l
                    .args
                    .iter()
                    .filter_map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let first_known = || args.iter().find_map(|a| expr_type(a, column));
            match name.as_str() {
                "length" | "char_length" | "character_length" | "octet_length" | "bit_length"
                | "strpos" | "instr" | "locate" | "count" | "row_number" | "rank"
                | "dense_rank" | "ntile" => Some(ColumnType::Integer),
                "lower" | "upper" | "concat" | "concat_ws" | "substring" | "substr" | "trim"
                | "ltrim" | "rtrim" | "btrim" | "replace" | "left" | "right" | "lpad" | "rpad"
                | "md5" | "initcap" | "reverse" | "repeat" | "to_char" | "format"
                | "string_agg" | "group_concat" | "split_part" | "translate" => {
                    Some(ColumnType::Text)
                }
                "sum" | "avg" | "round" | "trunc" | "truncate" | "ceil" | "ceiling" | "floor"
                | "power" | "pow" | "sqrt" | "exp" | "ln" | "log" | "log10" | "stddev"
                | "variance" | "date_part" => Some(ColumnType::Decimal),
                "abs" | "sign" | "mod" => numeric(first_known(), Some(ColumnType::Integer)),
                "min" | "max" | "coalesce" | "nullif" | "greatest" | "least" | "ifnull"
                | "any_value" | "first_value" | "last_value" | "lag" | "lead" => first_known(),
                "now" | "current_timestamp" | "localtimestamp" | "date_trunc" => {
                    Some(ColumnType::Timestamp)
                }
                "current_date" | "date" => Some(ColumnType::Date),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A SQL type name (as a cast prints it) as a column type, when it is one.
fn sql_type(printed: &str) -> Option<ColumnType> {
    let lower = printed.to_ascii_lowercase();
    let base = lower.split('(').next().unwrap_or("").trim();
    Some(match base {
        "int" | "integer" | "bigint" | "smallint" | "tinyint" | "mediumint" | "int2" | "int4"
        | "int8" | "signed" | "signed integer" | "unsigned" | "unsigned integer" => {
            ColumnType::Integer
        }
        "numeric" | "decimal" | "dec" | "float" | "float4" | "float8" | "double"
        | "double precision" | "real" => ColumnType::Decimal,
        "text" | "varchar" | "char" | "character" | "character varying" | "char varying"
        | "nvarchar" | "string" => ColumnType::Text,
        "boolean" | "bool" => ColumnType::Boolean,
        "date" => ColumnType::Date,
        "datetime" | "timestamp" | "timestamptz" => ColumnType::Timestamp,
        b if b.starts_with("timestamp") => ColumnType::Timestamp,
        "uuid" => ColumnType::Uuid,
        _ => return None,
    })
}

/// A comparison or another operation whose value is a boolean (the one
/// list both column typing and the condition checks use).
fn is_boolean_operation(e: &Expr) -> bool {
    matches!(
        e,
        Expr::BinaryOp {
            op: BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
                | BinaryOperator::And
                | BinaryOperator::Or
                | BinaryOperator::Xor,
            ..
        } | Expr::UnaryOp {
            op: UnaryOperator::Not,
            ..
        } | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsNotTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsNotFalse(_)
            | Expr::IsUnknown(_)
            | Expr::IsNotUnknown(_)
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..)
            | Expr::In { .. }
            | Expr::Between { .. }
            | Expr::Like { .. }
            | Expr::ILike { .. }
            | Expr::SimilarTo { .. }
            | Expr::Exists { .. }
    )
}

/// For a condition that is not a comparison or another boolean operation
/// (a function call, cast, CASE, arithmetic…) built from variables and
/// constants only, with no column or subquery: its first variable.
fn constant_condition(e: &Expr) -> Option<String> {
    match e {
        Expr::Nested(inner) => return constant_condition(inner),
        e if is_boolean_operation(e) => return None,
        _ => {}
    }
    struct Scan {
        first: Option<String>,
        column: bool,
    }
    impl Visitor for Scan {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(_) => match marker(e) {
                    Some(v) => {
                        self.first.get_or_insert_with(|| v.to_string());
                    }
                    None => self.column = true,
                },
                Expr::CompoundIdentifier(_) => self.column = true,
                _ => {}
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            // A subquery may read columns: not a constant.
            self.column = true;
            ControlFlow::Break(())
        }
    }
    let mut scan = Scan {
        first: None,
        column: false,
    };
    let _ = e.visit(&mut scan);
    if scan.column {
        None
    } else {
        scan.first
    }
}

/// How a question uses one `{{variable}}`, from where each occurrence
/// stands.
#[derive(Debug, Default)]
pub(crate) struct VariableUse {
    /// Types of the columns it is compared with (`col = {{v}}`, `col IN
    /// ({{v}})`, `{{v}} < col`, …), one per such occurrence.
    pub compared: Vec<ColumnType>,
    /// Occurrences anywhere else (function argument, select item, LIMIT,
    /// CASE, arithmetic, comparison with an expression…): only a declared
    /// type says what the value there is.
    pub untyped: usize,
    /// Occurrences standing alone as a boolean predicate (a WHERE, ON,
    /// HAVING or FILTER condition, an AND/OR/NOT operand, a CASE WHEN
    /// condition): `WHERE {{org_filter}}` bound to `'1'` is true for every
    /// row, so these are refused whatever the type.
    pub predicate: usize,
}

/// Classifies every occurrence of every `{{variable}}` of the question (see
/// [`VariableUse`]). Nested parentheses around a variable do not change
/// where it stands.
pub(crate) fn variable_uses(query: &Query, db: &Database) -> BTreeMap<String, VariableUse> {
    struct Uses<'a> {
        db: &'a Database,
        out: BTreeMap<String, VariableUse>,
        /// Occurrences classified as compared or predicate, per variable.
        placed: HashMap<String, usize>,
    }
    /// The variable of a marker, looking through parentheses.
    fn var(e: &Expr) -> Option<&str> {
        match e {
            Expr::Nested(inner) => var(inner),
            e => marker(e),
        }
    }
    impl Uses<'_> {
        fn column_type(&self, e: &Expr) -> Option<ColumnType> {
            let id = match e {
                Expr::Nested(inner) => return self.column_type(inner),
                Expr::Identifier(id) => id,
                Expr::CompoundIdentifier(p) => p.last()?,
                _ => return None,
            };
            if marker(e).is_some() {
                return None;
            }
            // Only a name every declared column of that name agrees on (the
            // index holds `None` for names with conflicting types).
            let key = self.db.dialect.normalize(id);
            self.db.column_types.get(key.as_ref()).copied().flatten()
        }
        fn compared(&mut self, e: &Expr, ty: ColumnType) {
            if let Some(v) = var(e) {
                self.out.entry(v.to_string()).or_default().compared.push(ty);
                *self.placed.entry(v.to_string()).or_default() += 1;
            }
        }
        fn predicate(&mut self, e: &Expr) {
            if let Some(v) = var(e) {
                self.out.entry(v.to_string()).or_default().predicate += 1;
                *self.placed.entry(v.to_string()).or_default() += 1;
            } else if let Some(v) = constant_condition(e) {
                // `WHERE coalesce({{v}}, 0)`: the value's truth, the same
                // for every row. (The variable's own occurrence is
                // classified by its parent as usual.)
                self.out.entry(v).or_default().predicate += 1;
            }
        }
    }
    impl Visitor for Uses<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(_) => {
                    if let Some(v) = marker(e) {
                        // Counted here once; classified by its parent.
                        self.out.entry(v.to_string()).or_default().untyped += 1;
                    }
                }
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
                        if let Some(t) = self.column_type(a) {
                            self.compared(b, t);
                        }
                    }
                }
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::And | BinaryOperator::Or | BinaryOperator::Xor,
                    right,
                } => {
                    self.predicate(left);
                    self.predicate(right);
                }
                Expr::UnaryOp {
                    op: UnaryOperator::Not,
                    expr,
                }
                | Expr::IsTrue(expr)
                | Expr::IsNotTrue(expr)
                | Expr::IsFalse(expr)
                | Expr::IsNotFalse(expr)
                | Expr::IsUnknown(expr)
                | Expr::IsNotUnknown(expr) => self.predicate(expr),
                Expr::In {
                    expr,
                    target: InTarget::List(list),
                    ..
                } => {
                    if let Some(t) = self.column_type(expr) {
                        for item in list {
                            self.compared(item, t);
                        }
                    }
                }
                Expr::Case {
                    operand: None,
                    conditions,
                    ..
                } => {
                    for c in conditions {
                        self.predicate(&c.condition);
                    }
                }
                Expr::Function(f) => {
                    if let Some(filter) = &f.filter {
                        self.predicate(filter);
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            // Conditions that are not expressions' operands: every SELECT
            // of the query (set operations included) is reached through its
            // own query or body.
            let mut bodies = vec![q.body.as_ref()];
            while let Some(b) = bodies.pop() {
                match b {
                    SetExpr::Select(select) => {
                        for cond in [
                            &select.selection,
                            &select.having,
                            &select.qualify,
                            &select.prewhere,
                        ]
                        .into_iter()
                        .flatten()
                        {
                            self.predicate(cond);
                        }
                        for twj in &select.from {
                            self.joins(twj);
                        }
                    }
                    SetExpr::SetOperation { left, right, .. } => {
                        bodies.push(left);
                        bodies.push(right);
                    }
                    _ => {}
                }
            }
            ControlFlow::Continue(())
        }
    }
    impl Uses<'_> {
        fn joins(&mut self, twj: &TableWithJoins) {
            if let TableFactor::NestedJoin {
                table_with_joins, ..
            } = &twj.relation
            {
                self.joins(table_with_joins);
            }
            for j in &twj.joins {
                if let TableFactor::NestedJoin {
                    table_with_joins, ..
                } = &j.relation
                {
                    self.joins(table_with_joins);
                }
                let constraint = match &j.join_operator {
                    JoinOperator::Join(c)
                    | JoinOperator::Inner(c)
                    | JoinOperator::Left(c)
                    | JoinOperator::LeftOuter(c)
                    | JoinOperator::Right(c)
                    | JoinOperator::RightOuter(c)
                    | JoinOperator::FullOuter(c)
                    | JoinOperator::CrossJoin(c)
                    | JoinOperator::Semi(c)
                    | JoinOperator::LeftSemi(c)
                    | JoinOperator::RightSemi(c)
                    | JoinOperator::Anti(c)
                    | JoinOperator::LeftAnti(c)
                    | JoinOperator::RightAnti(c)
                    | JoinOperator::StraightJoin(c) => Some(c),
                    JoinOperator::AsOf {
                        match_condition,
                        constraint,
                    } => {
                        self.predicate(match_condition);
                        Some(constraint)
                    }
                    _ => None,
                };
                if let Some(JoinConstraint::On(on)) = constraint {
                    self.predicate(on);
                }
            }
        }
    }
    let mut u = Uses {
        db,
        out: BTreeMap::new(),
        placed: HashMap::new(),
    };
    let _ = query.visit(&mut u);
    // Every occurrence was counted as untyped; take back the placed ones.
    for (v, n) in u.placed {
        if let Some(use_) = u.out.get_mut(&v) {
            use_.untyped = use_.untyped.saturating_sub(n);
        }
    }
    u.out
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

/// If `query` only filters `table` — `SELECT <its columns> FROM
/// schema.table [WHERE <condition>]`, nothing else — its condition (with
/// `{{variable}}` markers). Such a custom sandbox can be ORed with others
/// under `combine: union` (its rows are the table's rows meeting the
/// condition, so "rows of either" is the OR of the conditions).
pub(crate) fn filter_of(
    query: &Query,
    table: &super::Table,
    dialect: Dialect,
) -> Option<Option<Expr>> {
    use sqlparser::ast::{GroupByExpr, SelectItem, SetExpr};
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
        || !query.locks.is_empty()
        || query.for_clause.is_some()
        || query.settings.is_some()
        || query.format_clause.is_some()
        || !query.pipe_operators.is_empty()
    {
        return None;
    }
    let SetExpr::Select(s) = query.body.as_ref() else {
        return None;
    };
    let plain_group =
        matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if s.distinct.is_some()
        || s.top.is_some()
        || s.into.is_some()
        || !s.lateral_views.is_empty()
        || s.prewhere.is_some()
        || !plain_group
        || !s.cluster_by.is_empty()
        || !s.distribute_by.is_empty()
        || !s.sort_by.is_empty()
        || s.having.is_some()
        || !s.named_window.is_empty()
        || s.qualify.is_some()
        || !s.connect_by.is_empty()
    {
        return None;
    }
    let [from] = s.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let TableFactor::Table {
        name,
        alias: None,
        args: None,
        with_hints,
        version: None,
        with_ordinality: false,
        partitions,
        json_path: None,
        sample: None,
        index_directives,
        inheritance: None,
    } = &from.relation
    else {
        return None;
    };
    if !with_hints.is_empty() || !partitions.is_empty() || !index_directives.is_empty() {
        return None;
    }
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(|i| dialect.normalize(i).into_owned())
        .collect();
    if parts != [table.key.schema.clone(), table.key.name.clone()] {
        return None;
    }
    let plain_column = |e: &Expr| matches!(e, Expr::Identifier(i) if table.column(&dialect.normalize(i)).is_some());
    let columns_only = s.projection.iter().all(|item| match item {
        SelectItem::UnnamedExpr(e) => plain_column(e),
        SelectItem::ExprWithAlias { expr, alias } => {
            plain_column(expr)
                && matches!(expr, Expr::Identifier(i) if dialect.normalize(i) == dialect.normalize(alias))
        }
        SelectItem::Wildcard(o) => o.opt_exclude.is_none() && o.opt_except.is_none() && o.opt_replace.is_none() && o.opt_rename.is_none() && o.opt_ilike.is_none(),
        _ => false,
    });
    columns_only.then(|| s.selection.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn db() -> Policy {
        Policy::from_yaml(
            "version: 1\ndatabases:\n  db:\n    dialect: postgres\n    tables:\n      public.t: {columns: {id: integer, name: text, at: timestamp, price: decimal}}\n",
            "t.yaml",
        )
        .unwrap()
    }

    fn query(sql: &str) -> Query {
        let (text, _) = substitute_variables(sql).unwrap();
        parse(&text, Dialect::Postgres).unwrap()
    }

    #[test]
    fn select_expressions_get_their_types() {
        let p = db();
        let d = p.database("db").unwrap();
        let cols = output_columns(
            &query(
                "SELECT id, length(name) AS a, lower(name) AS b, count(*) AS c, sum(price) AS d, \
                 id + 1 AS e, price * 2 AS f, name || 'x' AS g, CAST(id AS text) AS h, \
                 id::numeric AS i, 'x' AS j, 1.5 AS k, coalesce(at, now()) AS l, \
                 CASE WHEN id > 1 THEN name END AS m, my_udf(name) AS n, NULL AS o, \
                 substring(name FROM 1 FOR 2) AS p, id > 1 AS q FROM t",
            ),
            d,
        )
        .unwrap();
        let ty = |n: &str| cols.iter().find(|(c, _)| c == n).unwrap().1;
        use ColumnType::*;
        assert_eq!(ty("id"), Some(Integer));
        for (c, t) in [
            ("a", Some(Integer)),
            ("b", Some(Text)),
            ("c", Some(Integer)),
            ("d", Some(Decimal)),
            ("e", Some(Integer)),
            ("f", Some(Decimal)),
            ("g", Some(Text)),
            ("h", Some(Text)),
            ("i", Some(Decimal)),
            ("j", Some(Text)),
            ("k", Some(Decimal)),
            ("l", Some(Timestamp)),
            ("m", Some(Text)),
            ("n", None),
            ("o", None),
            ("p", Some(Text)),
            ("q", Some(Boolean)),
        ] {
            assert_eq!(ty(c), t, "{c}");
        }
    }

    #[test]
    fn variables_are_classified_by_position() {
        let p = db();
        let d = p.database("db").unwrap();
        let uses = variable_uses(
            &query(
                "SELECT id, {{s}} AS s FROM t WHERE (id = {{a}} OR {{b}}) AND name IN ({{c}}) \
                 AND abs({{d}}) > 0 AND {{a}} < price LIMIT {{e}}",
            ),
            d,
        );
        let u = |v: &str| &uses[v];
        assert_eq!(
            u("a").compared,
            vec![ColumnType::Integer, ColumnType::Decimal]
        );
        assert_eq!((u("a").untyped, u("a").predicate), (0, 0));
        assert_eq!((u("b").untyped, u("b").predicate), (0, 1));
        assert_eq!(u("c").compared, vec![ColumnType::Text]);
        assert_eq!((u("d").untyped, u("d").predicate), (1, 0));
        assert_eq!((u("e").untyped, u("s").untyped), (1, 1));
    }
}
