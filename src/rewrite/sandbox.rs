//! Building sandbox subqueries in the AST (never by pasting text).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, Ident, InTarget, LimitClause, ObjectName,
    ObjectNamePart, Offset, OffsetRows, Query, SetExpr, TableFactor, TableInheritance,
    TableWithJoins, UnaryOperator, Value,
};

use super::Rewriter;
use crate::bind::{Source, Target};
use crate::dialect::{Dialect, Fence};
use crate::error::{Error, Result};
use crate::policy::mask::VALUE_MARKER;
use crate::policy::{
    question, BasicFilter, ColumnType, Mask, Question, Sandbox, SandboxKind, Table,
};
use crate::value::AttributeValue;

/// A sandbox's visible columns when it does not show all of the table's:
/// a custom sandbox's question name (or [`RULES`]) and its columns.
pub(super) type Visible<'a> = Option<(&'a str, Cols<'a>)>;

/// The name [`Visible`] gives row rules with `columns:`.
pub(super) const RULES: &str = "row rules";
/// The name [`Visible`] gives sandboxes that mask columns (and hide none).
pub(super) const MASKS: &str = "column masks";

/// A column list: the policy's (a question's output), or one built for
/// this principal (row rules' `columns:` combined).
#[derive(Debug, Clone)]
pub(super) enum Cols<'a> {
    Policy(&'a [(String, Option<ColumnType>)]),
    Built(std::rc::Rc<[(String, Option<ColumnType>)]>),
}

impl std::ops::Deref for Cols<'_> {
    type Target = [(String, Option<ColumnType>)];
    fn deref(&self) -> &Self::Target {
        match self {
            Cols::Policy(c) => c,
            Cols::Built(c) => c,
        }
    }
}

/// One sandbox applied to one table reference, for audit and cache keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    /// The table, `schema.table`.
    pub table: String,
    /// The alias the sandbox subquery got.
    pub alias: String,
    /// The groups whose sandboxes apply (several with `combine: union`).
    pub groups: Vec<String>,
    /// `basic`, `custom`, or `union`.
    pub kind: &'static str,
    /// The question of a custom sandbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// Attribute values bound, in order.
    pub bindings: Vec<Binding>,
}

/// An attribute value bound into a sandbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Binding {
    /// The attribute.
    pub attribute: String,
    /// Its value for this principal.
    pub value: AttributeValue,
}

/// `SELECT *`, parsed once: the shape of a basic sandbox, which gets its
/// FROM and WHERE filled in (cloning this much allocates only what the
/// sandbox keeps).
fn template() -> Result<&'static Query> {
    static T: OnceLock<Option<Query>> = OnceLock::new();
    T.get_or_init(|| question::parse("SELECT *", crate::Dialect::Generic).ok())
        .as_ref()
        .ok_or_else(|| Error::Verification("the sandbox template does not parse".into()))
}

/// `SELECT * FROM [schema.]t` for the query body `TABLE [schema.]t`.
pub(super) fn table_statement(t: &sqlparser::ast::Table) -> Result<SetExpr> {
    let Some(name) = &t.table_name else {
        return Err(Error::unsupported("`TABLE` without a table name"));
    };
    let parts = t
        .schema_name
        .iter()
        .chain(std::iter::once(name))
        .map(|i| ObjectNamePart::Identifier(i.clone()))
        .collect();
    let mut body = template()?.body.as_ref().clone();
    if let SetExpr::Select(select) = &mut body {
        select.from = vec![TableWithJoins {
            relation: plain_table(ObjectName(parts), None),
            joins: vec![],
        }];
    }
    Ok(body)
}

/// A table reference with no alias, arguments, hints or sampling.
fn plain_table(name: ObjectName, inheritance: Option<TableInheritance>) -> TableFactor {
    TableFactor::Table {
        name,
        alias: None,
        args: None,
        with_hints: vec![],
        version: None,
        with_ordinality: false,
        partitions: vec![],
        json_path: None,
        sample: None,
        index_directives: vec![],
        inheritance,
    }
}

/// One permissive unit of a sandbox: its condition, the columns it
/// reveals (`None`: all), its grant's masks.
type Unit<'s> = (Expr, Option<Vec<String>>, &'s [Arc<Mask>]);

/// How one permissive unit shows one column.
enum View<'a> {
    /// As stored.
    Shown,
    /// Masked.
    Masked(&'a Arc<Mask>),
    /// Not at all (row rules' `columns:`).
    Hidden,
}

/// Whether two masks give the same values.
fn same_mask(a: &Mask, b: &Mask) -> bool {
    std::ptr::eq(a, b)
        || (a.kind == b.kind
            && a.value == b.value
            && a.unless.as_ref().map(|u| &u.expr) == b.unless.as_ref().map(|u| &u.expr))
}

/// `CASE WHEN c1 THEN r1 … [ELSE e] END`.
fn case_when(branches: Vec<(Expr, Expr)>, else_result: Option<Expr>) -> Expr {
    use sqlparser::ast::helpers::attached_token::AttachedToken;
    Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: None,
        conditions: branches
            .into_iter()
            .map(|(condition, result)| sqlparser::ast::CaseWhen { condition, result })
            .collect(),
        else_result: else_result.map(Box::new),
    }
}

/// `1 = 1`: every row.
fn one_eq_one() -> Expr {
    let one = || Expr::value(Value::Number("1".into(), false));
    Expr::BinaryOp {
        left: Box::new(one()),
        op: BinaryOperator::Eq,
        right: Box::new(one()),
    }
}

fn eq_zero() -> Expr {
    // `1 = 0`: an empty multi-valued attribute matches no rows.
    Expr::BinaryOp {
        left: Box::new(Expr::value(Value::Number("1".into(), false))),
        op: BinaryOperator::Eq,
        right: Box::new(Expr::value(Value::Number("0".into(), false))),
    }
}

fn in_list(col: Expr, list: Vec<Expr>) -> Expr {
    Expr::In {
        expr: Box::new(col),
        target: InTarget::List(list),
        negated: false,
        global: false,
    }
}

/// `CAST(value AS BINARY)` (MySQL's `BINARY value`): compared with a text
/// column, the comparison is byte for byte.
fn binary(value: Expr) -> Expr {
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(value),
        data_type: DataType::Binary(None),
        format: None,
    }
}

fn and(left: Expr, right: Expr) -> Expr {
    Expr::BinaryOp {
        left: Box::new(left),
        op: BinaryOperator::And,
        right: Box::new(right),
    }
}

pub(super) fn and_all(mut parts: Vec<Expr>, op: BinaryOperator) -> Expr {
    if parts.len() == 1 {
        return parts.remove(0);
    }
    // Parenthesise in the tree: `a OR b AND c` must never be printed.
    let mut it = parts.into_iter().map(|p| Expr::Nested(Box::new(p)));
    let first = it.next().unwrap_or_else(eq_zero);
    it.fold(first, |acc, p| Expr::BinaryOp {
        left: Box::new(acc),
        op: op.clone(),
        right: Box::new(p),
    })
}

/// A sandbox's own filter with conditions moved into it:
/// `(own) AND (c1 AND c2 …)`, the shape the verifier takes apart.
pub(crate) fn and_conditions(own: Expr, moved: Vec<Expr>) -> Expr {
    and(
        Expr::Nested(Box::new(own)),
        Expr::Nested(Box::new(and_all(moved, BinaryOperator::And))),
    )
}

/// Adds the dialect's optimisation fence (see [`crate::Dialect::fence`])
/// unless the query already limits its rows (a LIMIT/OFFSET fences too).
pub(crate) fn fence_clause(q: &mut Query, fence: Fence) {
    if q.limit_clause.is_some() || q.fetch.is_some() {
        return;
    }
    let number = |n: &str| Expr::value(Value::Number(n.into(), false));
    q.limit_clause = match fence {
        Fence::OffsetZero => Some(LimitClause::LimitOffset {
            limit: None,
            offset: Some(Offset {
                value: number("0"),
                rows: OffsetRows::None,
            }),
            limit_by: vec![],
        }),
        Fence::LimitMax => Some(LimitClause::LimitOffset {
            limit: Some(number("18446744073709551615")),
            offset: None,
            limit_by: vec![],
        }),
        Fence::LimitMinusOne => Some(LimitClause::LimitOffset {
            limit: Some(Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr: Box::new(number("1")),
            }),
            offset: None,
            limit_by: vec![],
        }),
        Fence::LimitI64Max => Some(LimitClause::LimitOffset {
            limit: Some(number("9223372036854775807")),
            offset: None,
            limit_by: vec![],
        }),
        Fence::LimitI32Max => Some(LimitClause::LimitOffset {
            limit: Some(number("2147483647")),
            offset: None,
            limit_by: vec![],
        }),
        // Never reached with a fence to add: the pipeline refuses first.
        Fence::None | Fence::Unproven => None,
    };
}

impl<'a> Rewriter<'a> {
    fn attribute(&self, name: &str, table: &Table) -> Result<&AttributeValue> {
        let value = self
            .principal
            .attribute(name)
            .ok_or_else(|| Error::MissingAttribute {
                attribute: name.to_string(),
                table: table.qualified(),
            })?;
        // A list where the policy declares one value (a claim, a caller's
        // attribute map) is refused, not read as `IN (…)`.
        if let (AttributeValue::Many(_), Some(ty)) = (value, self.policy.attribute_types.get(name))
        {
            if !ty.list {
                return Err(Error::AttributeType {
                    attribute: name.to_string(),
                    value: value.to_string(),
                    ty: format!("{ty} (one value: the policy declares it so, not a list)"),
                    target: format!("the sandbox on {}", table.qualified()),
                });
            }
        }
        Ok(value)
    }

    fn basic_predicate(
        &mut self,
        table: &Table,
        filters: &[BasicFilter],
        bindings: &mut Vec<Binding>,
    ) -> Result<Expr> {
        let mut parts = Vec::new();
        for f in filters {
            let value = self.attribute(&f.attribute, table)?.clone();
            let col = Expr::Identifier(self.dialect.ident(&f.column));
            let what = || format!("column {}.{}", table.qualified(), f.column);
            let target = Target {
                attribute: &f.attribute,
                what: &what,
            };
            // MySQL/MariaDB compare text under the column's collation, which
            // by default ignores case, accents and trailing spaces: `Basic`,
            // `basic ` and `básic` would all match `basic`. A second,
            // binary comparison makes the match exact; the first one keeps
            // the column's index usable (MariaDB 10.11 plans both as an
            // index lookup, tests/mariadb_exact.rs).
            let exact = self.dialect == Dialect::Mysql && f.ty == ColumnType::Text;
            let pred = match &value {
                AttributeValue::Single(v) => {
                    let eq = |value: Expr| Expr::BinaryOp {
                        left: Box::new(col.clone()),
                        op: BinaryOperator::Eq,
                        right: Box::new(value),
                    };
                    let src = || Source::attribute(&f.attribute, &value, 0);
                    let collated = eq(self.binder.bind_from(v, Some(f.ty), &target, src())?);
                    if exact {
                        let binary = eq(binary(self.binder.bind_from(
                            v,
                            Some(f.ty),
                            &target,
                            src(),
                        )?));
                        and(collated, binary)
                    } else {
                        collated
                    }
                }
                AttributeValue::Many(vs) if vs.is_empty() => eq_zero(),
                AttributeValue::Many(vs) => {
                    let collated = in_list(
                        col.clone(),
                        vs.iter()
                            .enumerate()
                            .map(|(i, v)| {
                                let src = Source::attribute(&f.attribute, &value, i);
                                self.binder.bind_from(v, Some(f.ty), &target, src)
                            })
                            .collect::<Result<_>>()?,
                    );
                    if exact {
                        let binaries = vs
                            .iter()
                            .enumerate()
                            .map(|(i, v)| {
                                let src = Source::attribute(&f.attribute, &value, i);
                                self.binder
                                    .bind_from(v, Some(f.ty), &target, src)
                                    .map(binary)
                            })
                            .collect::<Result<_>>()?;
                        and(collated, in_list(col, binaries))
                    } else {
                        collated
                    }
                }
            };
            bindings.push(Binding {
                attribute: f.attribute.clone(),
                value,
            });
            parts.push(pred);
        }
        Ok(and_all(parts, BinaryOperator::And))
    }

    /// Applies the user's `ONLY t` to the read of `t` inside a custom
    /// sandbox question (refused when that is not faithful). `t *` is what
    /// the question reads anyway.
    fn inherit(
        &self,
        query: &mut Query,
        table: &Table,
        question: &str,
        inheritance: Option<TableInheritance>,
    ) -> Result<()> {
        let Some(only @ TableInheritance::Only { .. }) = inheritance else {
            return Ok(());
        };
        if query.limit_clause.is_some() || query.fetch.is_some() {
            // The first n rows of `ONLY t` are not among the first n of `t`.
            return Err(Error::unsupported(format!(
                "ONLY on sandboxed table {} whose sandbox question `{question}` limits its rows (ONLY cannot be moved into the question faithfully)",
                table.qualified()
            )));
        }
        let dialect = self.db.dialect;
        if let TableFactor::Table { inheritance, .. } =
            super::source::row_source(query, table, question, dialect, "ONLY")?
        {
            *inheritance = Some(only);
        }
        Ok(())
    }

    /// A column-list alias `t AS x(a, b)` renames the table's columns by
    /// position; over a custom sandbox it would rename the question's
    /// columns, another list when the question hides or reorders columns
    /// (and the policy does not record the table's column order), so it
    /// is refused there.
    pub(super) fn alias_columns(
        &self,
        table: &Table,
        visible: &Visible<'_>,
        alias: &sqlparser::ast::TableAlias,
    ) -> Result<()> {
        match visible {
            Some((MASKS, _)) if !alias.columns.is_empty() => Err(Error::unsupported(format!(
                "the column-list alias `{alias}` on sandboxed table {}: it renames columns by position, and the masking sandbox lists the policy's columns in the policy's order, which need not be the table's (name the columns in a derived table instead)",
                table.qualified()
            ))),
            Some((RULES, _)) if !alias.columns.is_empty() => Err(Error::unsupported(format!(
                "the column-list alias `{alias}` on sandboxed table {}: it renames columns by position, and the row rules' `columns` may hide some (name the columns in a derived table instead)",
                table.qualified()
            ))),
            Some((question, _)) if !alias.columns.is_empty() => Err(Error::unsupported(format!(
                "the column-list alias `{alias}` on sandboxed table {}: it renames columns by position, and the sandbox question `{question}` may return other columns than the table at those positions (name the columns in a derived table instead)",
                table.qualified()
            ))),
            _ => Ok(()),
        }
    }

    /// Builds the sandbox subquery for `table`; returns it with the custom
    /// sandbox's (question, visible columns) when columns are restricted.
    pub(super) fn build_sandbox(
        &mut self,
        table: &'a Table,
        sandboxes: &[Arc<Sandbox>],
        inheritance: Option<TableInheritance>,
        alias: &Ident,
    ) -> Result<(Box<Query>, Visible<'a>)> {
        let mut bindings = Vec::new();
        let groups: Vec<String> = sandboxes
            .iter()
            .map(|s| s.group.clone())
            .filter(|g| !g.is_empty())
            .collect();
        if let [sb] = sandboxes {
            if let SandboxKind::Custom {
                question,
                parameters,
            } = &sb.kind
            {
                let policy: &'a crate::policy::Policy = self.policy;
                let q = policy.questions.get(question).ok_or_else(|| {
                    Error::Verification(format!("question `{question}` vanished"))
                })?;
                let mut query = q.query.clone();
                let mut bind = BindVars {
                    rw: self,
                    source: VarSource::Sandbox { table, parameters },
                    bindings: &mut bindings,
                };
                super::walk::walk(&mut query, &mut bind)?;
                self.inherit(&mut query, table, question, inheritance)?;
                let visible = q.columns.as_deref().ok_or_else(|| {
                    Error::Verification(format!("columns of question `{question}` unknown"))
                })?;
                self.applied.push(Applied {
                    table: table.qualified(),
                    alias: alias.value.clone(),
                    groups,
                    kind: "custom",
                    question: Some(question.clone()),
                    bindings,
                });
                return Ok((
                    Box::new(query),
                    Some((q.name.as_str(), Cols::Policy(visible))),
                ));
            }
        }
        // Basic sandboxes and row rules (several combined by union), every
        // restrictive rule ANDed on top. Each unit: its condition, the
        // columns it reveals (`None`: all), the grant's masks.
        let mut units: Vec<Unit> = Vec::new();
        let mut all_rows = false;
        let mut kind = if sandboxes.len() > 1 {
            "union"
        } else {
            "basic"
        };
        for sb in sandboxes {
            let masks: &[Arc<Mask>] = &sb.masks;
            match &sb.kind {
                SandboxKind::Basic(filters) => units.push((
                    self.basic_predicate(table, filters, &mut bindings)?,
                    None,
                    masks,
                )),
                SandboxKind::Rules(rules) => {
                    if sandboxes.len() == 1 {
                        kind = "rules";
                    }
                    for r in rules {
                        let e = self.rule_predicate(table, r, &mut bindings)?;
                        units.push((e, r.columns.clone(), masks));
                    }
                }
                // A masks-only grant: every row, masked.
                SandboxKind::All if !masks.is_empty() => {
                    if sandboxes.len() == 1 {
                        kind = "masked";
                    }
                    units.push((one_eq_one(), None, masks));
                }
                SandboxKind::All => {
                    all_rows = true;
                    kind = "restricted";
                }
                SandboxKind::Empty => kind = "empty",
                SandboxKind::Custom {
                    question,
                    parameters,
                } => {
                    // Under `combine: union`, a question that only filters
                    // the table (checked by `access`) is its condition and
                    // its columns.
                    let (e, cols) =
                        self.question_filter(table, question, parameters, &mut bindings)?;
                    let all = table.columns.iter().all(|c| cols.contains(&c.key));
                    units.push((e, (!all).then_some(cols), masks));
                }
            }
        }
        let mut restrictive = Vec::new();
        for r in sandboxes.iter().flat_map(|s| s.restrictive.iter()) {
            restrictive.push(self.rule_predicate(table, r, &mut bindings)?);
        }
        // Per column and unit: shown, masked or hidden. A column every
        // unit shows stays as it is; one some units do not reveal is shown
        // on the rows of those that do (`CASE WHEN … THEN col END`), hidden
        // when none does; a masked one is computed here, inside the
        // sandbox, so that every clause of the query sees the mask. Under
        // a union the least-masked view a row qualifies for wins: the
        // stored value on the rows of units that show it, else the mask of
        // the first unit that masks it.
        let reshaped = !all_rows
            && units
                .iter()
                .any(|(_, cols, masks)| cols.is_some() || !masks.is_empty());
        let mut projection = None;
        let mut visible: Visible<'a> = None;
        if reshaped {
            let hides = units.iter().any(|(_, c, _)| c.is_some());
            let mut items = Vec::new();
            let mut cols = Vec::new();
            for c in &table.columns {
                let views: Vec<View> = units
                    .iter()
                    .map(|(_, cs, masks)| {
                        if cs.as_ref().is_some_and(|cs| !cs.contains(&c.key)) {
                            View::Hidden
                        } else {
                            masks
                                .iter()
                                .find(|m| m.column == c.key)
                                .map_or(View::Shown, View::Masked)
                        }
                    })
                    .collect();
                if views.iter().all(|v| matches!(v, View::Hidden)) {
                    continue;
                }
                let mut ty: Option<ColumnType> = None;
                for v in &views {
                    let t = match v {
                        View::Hidden => continue,
                        View::Shown => c.ty,
                        View::Masked(m) => m.ty,
                    };
                    match ty {
                        Some(seen) if seen != t => {
                            return Err(Error::unsupported(format!(
                                "column {}.{} is {seen} under one of this principal's grants and {t} under another (a mask changes its type); the grants cannot be combined",
                                table.qualified(),
                                c.name
                            )))
                        }
                        _ => ty = Some(t),
                    }
                }
                let ident = Expr::Identifier(self.dialect.ident(&c.name));
                let alias = self.dialect.ident(&c.name);
                let item = if views.iter().all(|v| matches!(v, View::Shown)) {
                    sqlparser::ast::SelectItem::UnnamedExpr(ident)
                } else if let (Some(View::Masked(m)), true) = (
                    views.first(),
                    views
                        .iter()
                        .zip(views.iter().skip(1))
                        .all(|pair| match pair {
                            (View::Masked(a), View::Masked(b)) => same_mask(a, b),
                            _ => false,
                        }),
                ) {
                    let expr = self.mask_expr(table, m, &mut bindings)?;
                    sqlparser::ast::SelectItem::ExprWithAlias { expr, alias }
                } else {
                    // Conditions are bound again, not cloned: a positional
                    // placeholder (`?`) takes one value per occurrence.
                    // The stored value on the rows of units that show it,
                    // and of units whose mask's `unless` holds there.
                    let mut branches = Vec::new();
                    let mut conds = Vec::new();
                    for (i, v) in views.iter().enumerate() {
                        match v {
                            View::Shown => {
                                conds.push(self.unit_again(table, sandboxes, i, &mut bindings)?)
                            }
                            View::Masked(m) => {
                                if let Some(rule) = &m.unless {
                                    let unit =
                                        self.unit_again(table, sandboxes, i, &mut bindings)?;
                                    let unless = self.rule_predicate(table, rule, &mut bindings)?;
                                    conds.push(and_all(vec![unit, unless], BinaryOperator::And));
                                }
                            }
                            View::Hidden => {}
                        }
                    }
                    if !conds.is_empty() {
                        branches.push((and_all(conds, BinaryOperator::Or), ident.clone()));
                    }
                    // Masks in the order of their groups' names, not of
                    // the principal's groups (a claim's order): the same
                    // for everyone, and what the export does.
                    let mut order: Vec<(&str, usize)> = views
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| match v {
                            View::Masked(m) => Some((m.group.as_str(), i)),
                            _ => None,
                        })
                        .collect();
                    order.sort();
                    let mut done: Vec<usize> = Vec::new();
                    for (_, i) in order {
                        let Some(View::Masked(m)) = views.get(i) else {
                            continue;
                        };
                        if done.contains(&i) {
                            continue;
                        }
                        let same: Vec<usize> = views
                            .iter()
                            .enumerate()
                            .filter(|(_, w)| matches!(w, View::Masked(x) if same_mask(x, m)))
                            .map(|(k, _)| k)
                            .collect();
                        let mut conds = Vec::new();
                        for k in &same {
                            conds.push(self.unit_again(table, sandboxes, *k, &mut bindings)?);
                        }
                        done.extend(same);
                        let masked = self.mask_expr(table, m, &mut bindings)?;
                        branches.push((and_all(conds, BinaryOperator::Or), masked));
                    }
                    sqlparser::ast::SelectItem::ExprWithAlias {
                        expr: case_when(branches, None),
                        alias,
                    }
                };
                items.push(item);
                cols.push((c.key.clone(), ty));
            }
            projection = Some(items);
            visible = Some((if hides { RULES } else { MASKS }, Cols::Built(cols.into())));
        }
        let permissive = (!all_rows).then(|| {
            and_all(
                units.into_iter().map(|(e, _, _)| e).collect(),
                BinaryOperator::Or,
            )
        });
        let predicate = match (permissive, restrictive.is_empty()) {
            (Some(p), true) => p,
            (Some(p), false) => {
                let mut parts = vec![unnest(p)];
                parts.extend(restrictive);
                and_all(parts, BinaryOperator::And)
            }
            (None, _) => and_all(restrictive, BinaryOperator::And),
        };
        let mut query = template()?.clone();
        if let SetExpr::Select(select) = query.body.as_mut() {
            select.selection = Some(predicate);
            if let Some(items) = projection {
                select.projection = items;
            }
            let relation = plain_table(
                ObjectName(vec![
                    ObjectNamePart::Identifier(self.dialect.ident(&table.schema)),
                    ObjectNamePart::Identifier(self.dialect.ident(&table.name)),
                ]),
                inheritance,
            );
            select.from = vec![TableWithJoins {
                relation,
                joins: vec![],
            }];
        }
        self.applied.push(Applied {
            table: table.qualified(),
            alias: alias.value.clone(),
            groups,
            kind,
            question: None,
            bindings,
        });
        Ok((Box::new(query), visible))
    }

    /// A mask's expression over its column, its value and attributes
    /// bound; with `unless`, the stored value where that holds.
    fn mask_expr(&mut self, table: &Table, m: &Mask, bindings: &mut Vec<Binding>) -> Result<Expr> {
        if self.dialect != self.db.dialect {
            // Built, and meaning what it says, in the database's dialect.
            return Err(Error::unsupported(format!(
                "the {} dialect for a query on {}, whose column masks are written in the database's {} dialect",
                self.dialect,
                table.qualified(),
                self.db.dialect
            )));
        }
        let masked = match (&m.custom, &m.value) {
            (Some(rule), _) => self.rule_predicate(table, rule, bindings)?,
            (None, None) => m.expr.clone(),
            (None, Some((value, ty))) => {
                let mut e = m.expr.clone();
                let what = || format!("the mask on {}.{}", table.qualified(), m.column);
                let target = Target {
                    attribute: "mask value",
                    what: &what,
                };
                let bound = self.binder.bind(value, Some(*ty), &target)?;
                let mut put = PutValue {
                    value: bound,
                    count: 0,
                };
                let _ = sqlparser::ast::VisitMut::visit(&mut e, &mut put);
                if put.count != 1 {
                    return Err(Error::Verification(format!(
                        "the mask on {}.{} holds its value {} times",
                        table.qualified(),
                        m.column,
                        put.count
                    )));
                }
                e
            }
        };
        Ok(match &m.unless {
            None => masked,
            Some(rule) => {
                let shown = self.rule_predicate(table, rule, bindings)?;
                let column = table.column(&m.column).ok_or_else(|| {
                    Error::Verification(format!("masked column `{}` vanished", m.column))
                })?;
                case_when(
                    vec![(shown, Expr::Identifier(self.dialect.ident(&column.name)))],
                    Some(masked),
                )
            }
        })
    }

    /// The permissive condition number `i` of `sandboxes` (as numbered by
    /// `build_sandbox`), bound again.
    fn unit_again(
        &mut self,
        table: &Table,
        sandboxes: &[Arc<Sandbox>],
        i: usize,
        bindings: &mut Vec<Binding>,
    ) -> Result<Expr> {
        let mut n = 0;
        for sb in sandboxes {
            match &sb.kind {
                SandboxKind::Basic(filters) => {
                    if n == i {
                        return self.basic_predicate(table, filters, bindings);
                    }
                    n += 1;
                }
                SandboxKind::Rules(rules) => {
                    for r in rules {
                        if n == i {
                            return self.rule_predicate(table, r, bindings);
                        }
                        n += 1;
                    }
                }
                SandboxKind::Custom {
                    question,
                    parameters,
                } => {
                    if n == i {
                        return self
                            .question_filter(table, question, parameters, bindings)
                            .map(|(e, _)| e);
                    }
                    n += 1;
                }
                SandboxKind::All if !sb.masks.is_empty() => {
                    if n == i {
                        return Ok(one_eq_one());
                    }
                    n += 1;
                }
                SandboxKind::All | SandboxKind::Empty => {}
            }
        }
        Err(Error::Verification(format!(
            "permissive condition {i} vanished"
        )))
    }

    /// A custom sandbox that only filters `table`, as (its condition with
    /// its variables bound, its columns).
    fn question_filter(
        &mut self,
        table: &Table,
        question: &str,
        parameters: &[crate::policy::Parameter],
        bindings: &mut Vec<Binding>,
    ) -> Result<(Expr, Vec<String>)> {
        let policy: &crate::policy::Policy = self.policy;
        let q = policy
            .questions
            .get(question)
            .ok_or_else(|| Error::Verification(format!("question `{question}` vanished")))?;
        let mut query = q.query.clone();
        let mut bind = BindVars {
            rw: self,
            source: VarSource::Sandbox { table, parameters },
            bindings,
        };
        super::walk::walk(&mut query, &mut bind)?;
        let condition = question::filter_of(&query, table, self.db.dialect).ok_or_else(|| {
            Error::Verification(format!(
                "question `{question}` does not only filter {}",
                table.qualified()
            ))
        })?;
        let cols = q
            .columns
            .as_ref()
            .map(|c| c.iter().map(|(k, _)| k.clone()).collect())
            .ok_or_else(|| {
                Error::Verification(format!("columns of question `{question}` unknown"))
            })?;
        Ok((condition.unwrap_or_else(one_eq_one), cols))
    }

    /// A row rule's condition with its `{{attributes}}` bound and, unless it
    /// runs `as: definer`, the tables its subqueries read replaced by their
    /// sandboxes for the same principal.
    pub(super) fn rule_predicate(
        &mut self,
        table: &Table,
        rule: &crate::policy::Rule,
        bindings: &mut Vec<Binding>,
    ) -> Result<Expr> {
        if self.dialect != self.db.dialect {
            // A rule was parsed, and means what it says, in the database's
            // dialect: `a || b` concatenates on PostgreSQL and is OR on
            // MySQL.
            return Err(Error::unsupported(format!(
                "the {} dialect for a query on {}, whose row rules are written in the database's {} dialect (an operator can mean another thing there)",
                self.dialect,
                table.qualified(),
                self.db.dialect
            )));
        }
        let mut holder = template()?.clone();
        if let SetExpr::Select(select) = holder.body.as_mut() {
            select.selection = Some(rule.expr.clone());
        }
        let mut bind = BindVars {
            rw: self,
            source: VarSource::Sandbox {
                table,
                parameters: &rule.parameters,
            },
            bindings,
        };
        super::walk::walk(&mut holder, &mut bind)?;
        let mut e = match *holder.body {
            SetExpr::Select(select) => select.selection,
            _ => None,
        }
        .ok_or_else(|| Error::Verification("a rule lost its condition".into()))?;
        if !rule.definer && !rule.reads.is_empty() {
            if self.rule_depth >= 16 {
                return Err(Error::unsupported(format!(
                    "row rules on {} nest more than 16 deep through the tables they read",
                    table.qualified()
                )));
            }
            // The rule's own scope: the query's CTEs are not visible in it.
            let saved = std::mem::replace(&mut self.scope, crate::scope::Ctes::new());
            let origins = self.origins.len();
            self.rule_depth += 1;
            let r = self.walk_exprs(&mut e);
            self.rule_depth -= 1;
            self.scope = saved;
            // The sandboxes made inside are part of this one's body: the
            // fence, moved conditions and the exposure analysis treat it
            // as one sandbox (as a custom question's reads), and the
            // verifier compares it whole.
            for (ptr, _, _) in self.origins.drain(origins..) {
                self.generated.remove(&ptr);
            }
            r?;
        }
        Ok(e)
    }
}

/// Puts a bound value where a mask's template holds [`VALUE_MARKER`].
struct PutValue {
    value: Expr,
    count: usize,
}

impl sqlparser::ast::VisitorMut for PutValue {
    type Break = ();
    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if matches!(e, Expr::Identifier(i) if i.value == VALUE_MARKER) {
            *e = self.value.clone();
            self.count += 1;
        }
        ControlFlow::Continue(())
    }
}

/// `(x)` → `x`, so that it is not parenthesised twice.
pub(super) fn unnest(e: Expr) -> Expr {
    match e {
        Expr::Nested(inner) => *inner,
        other => other,
    }
}

/// Binds `{{variables}}` of a custom sandbox question.
struct BindVars<'r, 'a, 'b> {
    rw: &'r mut Rewriter<'a>,
    source: VarSource<'b>,
    bindings: &'r mut Vec<Binding>,
}

/// Where `{{variable}}` values come from.
enum VarSource<'b> {
    /// A custom sandbox: the principal's attributes, as the policy maps them.
    Sandbox {
        table: &'b Table,
        parameters: &'b [crate::policy::Parameter],
    },
    /// A saved question run by name: values the caller supplies.
    Caller {
        question: &'b Question,
        values: &'b BTreeMap<String, AttributeValue>,
    },
}

impl Rewriter<'_> {
    /// Binds the `{{variables}}` of a saved question run by name.
    pub(crate) fn bind_question_variables(
        &mut self,
        query: &mut Query,
        question: &Question,
        values: &BTreeMap<String, AttributeValue>,
    ) -> Result<Vec<Binding>> {
        let mut bindings = Vec::new();
        let mut bind = BindVars {
            rw: self,
            source: VarSource::Caller { question, values },
            bindings: &mut bindings,
        };
        super::walk::walk(query, &mut bind)?;
        Ok(bindings)
    }
}

impl<'b> BindVars<'_, '_, 'b> {
    fn value(&mut self, var: &str) -> Result<(AttributeValue, crate::policy::Parameter)> {
        let (v, p) = match &self.source {
            VarSource::Sandbox { table, parameters } => {
                let p = parameters
                    .iter()
                    .find(|p| p.variable == var)
                    .cloned()
                    .ok_or_else(|| {
                        Error::Verification(format!("variable `{var}` is not mapped"))
                    })?;
                (self.rw.attribute(&p.attribute, table)?.clone(), p)
            }
            VarSource::Caller { question, values } => {
                let v = values
                    .get(var)
                    .cloned()
                    .ok_or_else(|| Error::MissingVariable {
                        question: question.name.clone(),
                        variable: var.to_string(),
                    })?;
                let p = crate::policy::Parameter {
                    variable: var.to_string(),
                    attribute: var.to_string(),
                    ty: question.inferred.get(var).copied(),
                };
                (v, p)
            }
        };
        if !self.bindings.iter().any(|b| b.attribute == p.attribute) {
            self.bindings.push(Binding {
                attribute: p.attribute.clone(),
                value: v.clone(),
            });
        }
        Ok((v, p))
    }

    fn rewrite(&mut self, e: &mut Expr) -> Result<()> {
        match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } if question::marker(right).is_some() || question::marker(left).is_some() => {
                let (col, var) = match question::marker(right) {
                    Some(v) => (left.as_ref().clone(), v.to_string()),
                    None => (
                        right.as_ref().clone(),
                        question::marker(left).unwrap_or_default().to_string(),
                    ),
                };
                let (value, p) = self.value(&var)?;
                if let AttributeValue::Many(vs) = &value {
                    let place = self.place();
                    let what = || place.describe(&p.variable);
                    let target = Target {
                        attribute: &p.attribute,
                        what: &what,
                    };
                    *e = if vs.is_empty() {
                        eq_zero()
                    } else {
                        let caller = self.is_caller();
                        in_list(
                            col,
                            vs.iter()
                                .enumerate()
                                .map(|(i, v)| {
                                    let src = source(caller, &p.attribute, &value, i);
                                    self.rw.binder.bind_from(v, p.ty, &target, src)
                                })
                                .collect::<Result<_>>()?,
                        )
                    };
                }
                Ok(())
            }
            Expr::In {
                target: InTarget::List(list),
                negated,
                ..
            } if list.iter().any(|i| question::marker(i).is_some()) => {
                let mut out = Vec::new();
                for item in list.drain(..) {
                    match question::marker(&item) {
                        Some(var) => {
                            let (value, p) = self.value(var)?;
                            let place = self.place();
                            let what = || place.describe(&p.variable);
                            let target = Target {
                                attribute: &p.attribute,
                                what: &what,
                            };
                            let caller = self.is_caller();
                            for (i, v) in value.values().into_iter().enumerate() {
                                let src = source(caller, &p.attribute, &value, i);
                                out.push(self.rw.binder.bind_from(v, p.ty, &target, src)?);
                            }
                        }
                        None => out.push(item),
                    }
                }
                if out.is_empty() {
                    // `x NOT IN ()` holds for every row (NULL included:
                    // there is nothing to compare with), `x IN ()` for none.
                    *e = if *negated {
                        Expr::BinaryOp {
                            left: Box::new(Expr::value(Value::Number("1".into(), false))),
                            op: BinaryOperator::Eq,
                            right: Box::new(Expr::value(Value::Number("1".into(), false))),
                        }
                    } else {
                        eq_zero()
                    };
                } else {
                    *list = out;
                }
                Ok(())
            }
            Expr::Identifier(_) => {
                let Some(var) = question::marker(e).map(str::to_string) else {
                    return Ok(());
                };
                let (value, p) = self.value(&var)?;
                let place = self.place();
                let what = || place.describe(&p.variable);
                let target = Target {
                    attribute: &p.attribute,
                    what: &what,
                };
                let scalar = match &value {
                    AttributeValue::Single(v) => v.clone(),
                    AttributeValue::Many(vs) if vs.len() == 1 => {
                        vs.iter().next().cloned().ok_or_else(|| {
                            Error::Verification("a one-element list is empty".into())
                        })?
                    }
                    AttributeValue::Many(_) => {
                        return Err(Error::AttributeType {
                            attribute: p.attribute.clone(),
                            value: value.to_string(),
                            ty: "single value".into(),
                            target: format!("`{{{{{var}}}}}` (only `column = {{{{{var}}}}}` and `IN ({{{{{var}}}}})` take several values)"),
                        })
                    }
                };
                let src = source(self.is_caller(), &p.attribute, &value, 0);
                *e = self.rw.binder.bind_from(&scalar, p.ty, &target, src)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Whether the values come from the caller (a saved question's
    /// variables), not from the principal's attributes.
    fn is_caller(&self) -> bool {
        matches!(self.source, VarSource::Caller { .. })
    }

    /// Where the variables' values go, for error messages.
    fn place(&self) -> Place<'b> {
        match &self.source {
            VarSource::Sandbox { table, .. } => Place::Sandbox(table),
            VarSource::Caller { question, .. } => Place::Question(question),
        }
    }
}

/// The sandbox or question a `{{variable}}` belongs to.
#[derive(Clone, Copy)]
enum Place<'b> {
    Sandbox(&'b Table),
    Question(&'b Question),
}

impl Place<'_> {
    fn describe(self, variable: &str) -> String {
        match self {
            Place::Sandbox(table) => format!(
                "variable {{{{{variable}}}}} of the sandbox on {}",
                table.qualified()
            ),
            Place::Question(q) => format!("variable {{{{{variable}}}}} of question `{}`", q.name),
        }
    }
}

impl super::walk::Hooks for BindVars<'_, '_, '_> {
    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
        match self.rewrite(e) {
            Ok(()) => ControlFlow::Continue(()),
            Err(err) => ControlFlow::Break(err),
        }
    }
}

/// The source of the `i`th value of a variable: the caller's, or the
/// principal's attribute.
fn source(caller: bool, attribute: &str, value: &AttributeValue, i: usize) -> Source {
    if caller {
        Source::Caller
    } else {
        Source::attribute(attribute, value, i)
    }
}
