//! One query level: source and joins, `expressions`, `filter`, `breakout`
//! and `aggregation` (or `fields`), `order-by`, `limit` and `page`,
//! assembled into a sqlparser `Query` built from a parsed skeleton.

use sqlparser::ast::{
    Expr, Fetch, GroupByExpr, Join, LimitClause, Offset, OffsetRows, OrderBy, OrderByExpr,
    OrderByKind, OrderByOptions, OrderBySort, Query, SelectItem, SetExpr, Statement, TableFactor,
    TableWithJoins, Top, TopQuantity,
};
use sqlparser::parser::{Parser, ParserOptions};

use super::json::Node;
use super::scope::{check_name, Column};
use super::sql::int;
use super::{Compiler, Level, Origin, Typed};
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::ColumnType;

const QUERY_KEYS: &[&str] = &[
    "source-table",
    "source-question",
    "source-query",
    "joins",
    "expressions",
    "filter",
    "breakout",
    "aggregation",
    "fields",
    "order-by",
    "limit",
    "page",
];

/// A compiled query and its output columns (what an enclosing query sees).
pub(super) struct Compiled {
    pub query: Box<Query>,
    pub columns: Vec<Column>,
}

/// One select-list item.
struct Item {
    expr: Expr,
    name: String,
    ty: Option<ColumnType>,
    origin: Option<Origin>,
}

impl Item {
    fn from_typed(t: Typed, name: String) -> Item {
        Item {
            expr: t.expr,
            name,
            ty: t.ty,
            origin: t.origin,
        }
    }
}

/// `SELECT 1 FROM t`, parsed in the dialect: every field of the tree is
/// what the dialect's parser produces; the builder fills in its clauses.
fn skeleton(d: Dialect) -> Result<Box<Query>> {
    let stmts = Parser::new(d.parser())
        .with_options(ParserOptions::new().with_unescape(false))
        .try_with_sql("SELECT 1 FROM t")
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| Error::Verification(format!("builder skeleton: {e}")))?;
    match stmts.into_iter().next() {
        Some(Statement::Query(q)) => Ok(q),
        _ => Err(Error::Verification(
            "builder skeleton is not a query".into(),
        )),
    }
}

/// T-SQL has no LIMIT: `TOP n`, or `OFFSET m ROWS FETCH NEXT n ROWS ONLY`
/// for a page (which needs an ORDER BY).
fn mssql_limit(query: &mut Query, limit: Option<LimitClause>) -> Result<()> {
    let Some(LimitClause::LimitOffset {
        limit: Some(n),
        offset,
        ..
    }) = limit
    else {
        return Ok(());
    };
    match offset {
        None => {
            let SetExpr::Select(select) = query.body.as_mut() else {
                return Err(Error::Verification("builder query is not a SELECT".into()));
            };
            // `TOP 5`, as SQL Server's parser reads it back (an expression
            // would print as `TOP (5)`, another tree).
            let quantity = match &n {
                Expr::Value(v) => match &v.value {
                    sqlparser::ast::Value::Number(text, _) => text.parse::<u64>().ok(),
                    _ => None,
                },
                _ => None,
            }
            .map_or(TopQuantity::Expr(n), TopQuantity::Constant);
            select.top = Some(Top {
                with_ties: false,
                percent: false,
                quantity: Some(quantity),
            });
            select.top_before_distinct = Dialect::Mssql.parser().supports_top_before_distinct();
        }
        Some(mut offset) => {
            if query.order_by.is_none() {
                return Err(Error::unsupported(
                    "a `page` without `order-by` on SQL Server (OFFSET … FETCH needs an ORDER BY)",
                ));
            }
            offset.rows = OffsetRows::Rows;
            query.limit_clause = Some(LimitClause::LimitOffset {
                limit: None,
                offset: Some(offset),
                limit_by: vec![],
            });
            query.fetch = Some(Fetch {
                with_ties: false,
                percent: false,
                quantity: Some(n),
            });
        }
    }
    Ok(())
}

impl<'n> Compiler<'_> {
    /// Compiles the query object at `n` (the question's `query`, or a
    /// `source-query`).
    pub(super) fn query(&mut self, n: &Node<'n>) -> Result<Compiled> {
        self.enter(n)?;
        let r = self.query_level(n);
        self.leave();
        r
    }

    /// Sources first: this frame and those below it are on the recursion
    /// path of nested queries, so they hold little (large AST nodes are
    /// boxed) and the clauses are compiled in [`Self::clauses`].
    fn query_level(&mut self, n: &Node<'n>) -> Result<Compiled> {
        n.allow_keys(QUERY_KEYS, "a query")?;
        let mut lv = Level::default();
        let relation = self.main_source(n, &mut lv)?;
        let mut joins = Vec::new();
        let mut join_fields = Vec::new();
        if let Some(js) = n.key("joins") {
            for j in js.items("`joins`")? {
                let (join, fields) = self.join(&j, &mut lv)?;
                joins.push(*join);
                join_fields.extend(fields);
            }
        }
        self.clauses(n, lv, relation, joins, join_fields)
    }

    /// Everything but the sources: expressions, filter, breakout,
    /// aggregation or fields, order-by, limit and page.
    fn clauses(
        &mut self,
        n: &Node<'n>,
        mut lv: Level<'n>,
        relation: Box<TableFactor>,
        joins: Vec<Join>,
        join_fields: Vec<Typed>,
    ) -> Result<Compiled> {
        let d = self.dialect;
        if let Some(es) = n.key("expressions") {
            for (name, def) in es.entries("`expressions`")? {
                check_name(&def, name, "an expression name")?;
                lv.exprs.insert(name.to_string(), def);
            }
        }
        let selection = match n.key("filter") {
            Some(f) => Some(self.condition(&mut lv, &f)?),
            None => None,
        };
        let mut breakouts = Vec::new();
        if let Some(bs) = n.key("breakout") {
            for b in bs.items("`breakout`")? {
                breakouts.push(self.named(&mut lv, &b, "a breakout")?);
            }
        }
        let mut aggregates = Vec::new();
        if let Some(a) = n.key("aggregation") {
            for item in a.items("`aggregation`")? {
                aggregates.push(self.aggregation(&mut lv, &item)?);
            }
        }
        let aggregated = !breakouts.is_empty() || !aggregates.is_empty();

        let mut items = Vec::new();
        if aggregated {
            if let Some(f) = n.key("fields") {
                return Err(f.err(
                    "`fields` cannot be combined with `breakout` or `aggregation` (nest the query in `source-query` to pick columns)",
                ));
            }
            for b in &breakouts {
                let name = b.name.clone().unwrap_or_default();
                items.push(Item::from_typed(b.clone(), name));
            }
            for a in &aggregates {
                items.push(Item {
                    expr: a.expr.clone(),
                    name: a.name.clone(),
                    ty: a.ty,
                    origin: None,
                });
            }
        } else {
            match n.key("fields") {
                Some(f) => {
                    for item in f.items("`fields`")? {
                        let t = self.named(&mut lv, &item, "a field")?;
                        let name = t.name.clone().unwrap_or_default();
                        items.push(Item::from_typed(t, name));
                    }
                }
                None => {
                    let main = lv
                        .sources
                        .first()
                        .ok_or_else(|| Error::Verification("a query without a source".into()))?;
                    for c in &main.columns {
                        items.push(Item {
                            expr: super::sql::column(d, &main.alias, &c.name),
                            name: c.name.clone(),
                            ty: c.ty,
                            origin: c.origin.clone(),
                        });
                    }
                    let defs: Vec<(String, Node<'n>)> = lv
                        .exprs
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    for (name, def) in defs {
                        let t = self.expression_named(&mut lv, &def, &name)?;
                        items.push(Item::from_typed(t, name));
                    }
                }
            }
            for f in join_fields {
                let name = f.name.clone().unwrap_or_default();
                items.push(Item::from_typed(f, name));
            }
        }
        if items.is_empty() {
            return Err(n.err("the query selects no columns"));
        }
        unique_names(n, &mut items)?;

        let mut order = Vec::new();
        if let Some(o) = n.key("order-by") {
            for item in o.items("`order-by`")? {
                order.push(self.order_item(&mut lv, &item, aggregated, &breakouts, &aggregates)?);
            }
        }
        // As in Metabase, breakouts are sorted ascending unless sorted already.
        for b in &breakouts {
            if !order.iter().any(|o: &OrderByExpr| o.expr == b.expr) {
                order.push(order_by(b.expr.clone(), OrderBySort::Asc));
            }
        }
        let limit_clause = self.limit(n)?;

        let mut all_joins = joins;
        all_joins.extend(lv.implicit.into_iter().map(|i| i.join));
        let mut query = skeleton(d)?;
        let SetExpr::Select(select) = query.body.as_mut() else {
            return Err(Error::Verification(
                "builder skeleton is not a SELECT".into(),
            ));
        };
        select.projection = items
            .iter()
            .map(|i| match &i.expr {
                Expr::CompoundIdentifier(parts)
                    if parts.last().is_some_and(|p| p.value == i.name) =>
                {
                    SelectItem::UnnamedExpr(i.expr.clone())
                }
                _ => SelectItem::ExprWithAlias {
                    expr: i.expr.clone(),
                    alias: d.ident(&i.name),
                },
            })
            .collect();
        select.from = vec![TableWithJoins {
            relation: *relation,
            joins: all_joins,
        }];
        select.selection = selection;
        if !breakouts.is_empty() {
            select.group_by = GroupByExpr::Expressions(
                breakouts.iter().map(|b| b.expr.clone()).collect(),
                vec![],
            );
        }
        if !order.is_empty() {
            query.order_by = Some(OrderBy {
                kind: OrderByKind::Expressions(order),
                interpolate: None,
            });
        }
        if d == Dialect::Mssql {
            mssql_limit(&mut query, limit_clause)?;
        } else {
            query.limit_clause = limit_clause;
        }
        let columns = items
            .into_iter()
            .map(|i| Column {
                key: self.key(&i.name),
                name: i.name,
                ty: i.ty,
                origin: i.origin,
            })
            .collect();
        Ok(Compiled { query, columns })
    }

    /// `["asc", ref]` / `["desc", ref]`; `ref` may be `["aggregation", i]`.
    fn order_item(
        &mut self,
        lv: &mut Level<'n>,
        item: &Node<'n>,
        aggregated: bool,
        breakouts: &[Typed],
        aggregates: &[super::aggregate::Aggregate],
    ) -> Result<OrderByExpr> {
        let shape = "an order-by item is [\"asc\", field] or [\"desc\", field]";
        let Some((dir, args)) = item.clause() else {
            return Err(item.err(shape));
        };
        let sort = match dir {
            "asc" => OrderBySort::Asc,
            "desc" => OrderBySort::Desc,
            _ => return Err(item.err(format!("{shape}, not `{dir}`"))),
        };
        let [r] = args.as_slice() else {
            return Err(item.err(shape));
        };
        let expr = match r.clause() {
            Some(("aggregation", a)) => {
                let [i] = a.as_slice() else {
                    return Err(r.err("[\"aggregation\", i] names the i-th aggregation (from 0)"));
                };
                let idx = i.int("the aggregation index")?;
                usize::try_from(idx)
                    .ok()
                    .and_then(|k| aggregates.get(k))
                    .map(|a| a.expr.clone())
                    .ok_or_else(|| {
                        i.err(format!(
                            "there is no aggregation {idx} (the query has {})",
                            aggregates.len()
                        ))
                    })?
            }
            _ => {
                let t = self.expr(lv, r)?;
                if aggregated && !breakouts.iter().any(|b| b.expr == t.expr) {
                    return Err(r.err(
                        "an aggregated query is sorted by its breakouts or by [\"aggregation\", i]",
                    ));
                }
                t.expr
            }
        };
        Ok(order_by(expr, sort))
    }

    /// `limit: n` or `page: {page: p, items: n}` (pages count from 1).
    fn limit(&self, n: &Node) -> Result<Option<LimitClause>> {
        let (limit, offset) = match (n.key("limit"), n.key("page")) {
            (Some(_), Some(p)) => {
                return Err(p.err("give `limit` or `page`, not both"));
            }
            (Some(l), None) => {
                let v = l.int("`limit`")?;
                if v < 0 {
                    return Err(l.err("`limit` must not be negative"));
                }
                (v, 0)
            }
            (None, Some(p)) => {
                p.allow_keys(&["page", "items"], "`page`")?;
                let get = |k: &str| -> Result<i64> {
                    let node = p
                        .key(k)
                        .ok_or_else(|| p.err(format!("`page` needs `{k}`")))?;
                    let v = node.int(&format!("`{k}`"))?;
                    if v < 1 {
                        return Err(node.err(format!("`{k}` must be 1 or more")));
                    }
                    Ok(v)
                };
                let (page, items) = (get("page")?, get("items")?);
                let offset = (page - 1)
                    .checked_mul(items)
                    .ok_or_else(|| p.err("the page is out of range"))?;
                (items, offset)
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(LimitClause::LimitOffset {
            limit: Some(int(limit)),
            offset: (offset > 0).then(|| Offset {
                value: int(offset),
                rows: OffsetRows::None,
            }),
            limit_by: vec![],
        }))
    }
}

fn order_by(expr: Expr, sort: OrderBySort) -> OrderByExpr {
    OrderByExpr {
        expr,
        options: OrderByOptions {
            sort: Some(sort),
            nulls_first: None,
        },
        with_fill: None,
    }
}

/// Output names must differ: later duplicates become `name_2`, `name_3`.
fn unique_names(n: &Node, items: &mut [Item]) -> Result<()> {
    let mut seen: Vec<String> = Vec::new();
    for item in items.iter_mut() {
        let lower = item.name.to_lowercase();
        if seen.contains(&lower) {
            let mut k = 2;
            while seen.contains(&format!("{lower}_{k}")) {
                k += 1;
            }
            item.name = format!("{}_{k}", item.name);
        }
        if item.name.is_empty() || item.name.len() > 63 {
            return Err(n.err(format!(
                "the output column name `{}` is empty or longer than 63 bytes; use shorter aliases or names",
                item.name
            )));
        }
        seen.push(item.name.to_lowercase());
    }
    Ok(())
}
