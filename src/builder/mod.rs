//! The query-builder front end: structured questions (JSON or YAML, modeled
//! on Metabase's MBQL but naming tables and columns) compiled to a sqlparser
//! [`Query`](sqlparser::ast::Query), then sandboxed by the same rewrite as
//! native SQL.
//!
//! ```
//! use sqlsandbox::{Options, Policy, Principal};
//! let policy = Policy::from_yaml(r#"
//! version: 1
//! databases:
//!   shop: {dialect: postgres, tables: {orders: {columns: {id: integer, total: decimal, tenant_id: integer}}}}
//! groups:
//!   customers: {data: {shop: {public: {orders: {sandbox: {column: tenant_id, attribute: tenant}}}}}}
//! users:
//!   alice: {groups: [customers], attributes: {tenant: 42}}
//! "#, "example.yaml").unwrap();
//! let alice = Principal::from_user(&policy, "alice").unwrap();
//! let question = serde_json::json!({
//!     "query": {"source-table": "orders", "aggregation": [["sum", ["field", "total"]]]}
//! });
//! let out = policy.rewrite_builder(&alice, &question, &Options::default()).unwrap();
//! assert_eq!(out.sql, "SELECT sum(orders.total) AS sum FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS orders");
//! ```
//!
//! One file per clause, as in a planner: `query` (one query level:
//! fields, breakout, order-by, limit, page), `scope` (tables, saved
//! questions, nested queries, joins), `field` (field references, implicit
//! joins, temporal units, binning), `expr` (expressions), `filter`
//! (conditions), `aggregate`, `flavor` (everything that differs between
//! dialects), `sql` (AST construction) and `json` (nodes with their JSON
//! paths, for errors).

mod aggregate;
mod expr;
mod field;
mod filter;
mod flavor;
mod json;
mod query;
mod scope;
mod sql;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sqlparser::ast::Expr;

use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::pipeline::{self, Options};
use crate::policy::{ColumnType, Database, Policy, Table};
use crate::principal::Principal;

use json::Node;

/// Parses a builder question from JSON text. A repeated key, a document
/// over 1 MiB and one nested deeper than 100 brackets are refused (the last
/// two before any parsing).
///
/// ```
/// let q = sqlsandbox::builder::parse_question(r#"{"query": {"source-table": "orders", "limit": 5}}"#).unwrap();
/// assert_eq!(q["query"]["limit"], 5);
/// assert!(sqlsandbox::builder::parse_question(r#"{"query": {}, "query": {}}"#).is_err());
/// ```
pub fn parse_question(text: &str) -> Result<serde_json::Value> {
    crate::input::parse_json(text, "builder question", |m| syntax_error("JSON", m))
}

/// Parses a builder question from YAML text, with the limits and the
/// repeated-key check of [`parse_question`].
///
/// ```
/// let q = sqlsandbox::builder::parse_question_yaml("query: {source-table: orders, limit: 5}").unwrap();
/// assert_eq!(q["query"]["limit"], 5);
/// ```
pub fn parse_question_yaml(text: &str) -> Result<serde_json::Value> {
    let text = crate::input::strip_bom(text);
    crate::input::check_shape(text, crate::input::Syntax::Yaml, "builder question")?;
    crate::policy::parse_yaml_document(text).map_err(|m| syntax_error("YAML", m))
}

fn syntax_error(syntax: &str, message: String) -> Error {
    Error::Builder {
        path: "$".into(),
        message: format!("not valid {syntax}: {message}"),
    }
}

/// A builder question compiled to SQL, not yet sandboxed.
pub(crate) struct Compiled<'p> {
    /// The database it reads.
    pub db: &'p Database,
    /// The dialect it was compiled for.
    pub dialect: Dialect,
    /// The query.
    pub query: sqlparser::ast::Query,
}

/// Compiles `question` for `principal` to a query in the database's
/// dialect. The builder never calls the back end: the pipeline sandboxes
/// and verifies what it returns like any other query (see
/// [`Policy::rewrite_builder`]).
pub(crate) fn compile<'p>(
    policy: &'p Policy,
    principal: &Principal,
    question: &serde_json::Value,
    opts: &Options,
) -> Result<Compiled<'p>> {
    let root = Node::root(question);
    root.allow_keys(&["database", "type", "query"], "a builder question")?;
    if let Some(t) = root.key("type") {
        if t.str("`type`")? != "query" {
            return Err(t.err("`type` must be `query` (native SQL goes through `rewrite`)"));
        }
    }
    let named = root.key("database");
    let name = match (&named, &opts.database) {
        (Some(n), Some(o)) => {
            let n_name = n.str("`database`")?;
            if n_name != o {
                return Err(n.err(format!(
                    "the question names database `{n_name}` but the call names `{o}`"
                )));
            }
            Some(n_name)
        }
        (Some(n), None) => Some(n.str("`database`")?),
        (None, o) => o.as_deref(),
    };
    let db = pipeline::pick_database(policy, name)
        .map_err(|e| pipeline::invisible_database(policy, principal, e, false))?;
    // Before anything about the question is looked at: who may not create
    // questions learns nothing from one.
    crate::access::check_builder(policy, principal, db)?;
    let dialect = opts.dialect.unwrap_or(db.dialect);
    let q = root.key("query").ok_or_else(|| {
        root.err("a builder question needs `query` (an object with `source-table`, …)")
    })?;
    let mut compiler = Compiler {
        policy,
        principal,
        db,
        dialect,
        max_depth: opts.max_depth,
        depth: 0,
    };
    let compiled = compiler.query(&q)?;
    Ok(Compiled {
        db,
        dialect,
        query: *compiled.query,
    })
}

/// The state of one compilation.
struct Compiler<'a> {
    policy: &'a Policy,
    principal: &'a Principal,
    db: &'a Database,
    dialect: Dialect,
    max_depth: usize,
    depth: usize,
}

impl Compiler<'_> {
    /// Guards recursion (nested queries and expressions).
    fn enter(&mut self, n: &Node) -> Result<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(Error::Limit(format!(
                "the question nests deeper than {} levels (at {})",
                self.max_depth, n.path
            )));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// The key names are compared by: the dialect's rule for policy names.
    fn key(&self, name: &str) -> String {
        self.dialect.normalize_policy_name(name)
    }
}

/// A compiled expression and what is known about it.
#[derive(Debug, Clone)]
struct Typed {
    pub expr: Expr,
    /// Its type, when known (`Boolean` for conditions).
    pub ty: Option<ColumnType>,
    /// The output column name it gets by default (fields and expressions).
    pub name: Option<String>,
    /// The table column it is, unchanged (foreign keys start there).
    pub origin: Option<Origin>,
}

impl Typed {
    fn new(expr: Expr, ty: Option<ColumnType>) -> Self {
        Typed {
            expr,
            ty,
            name: None,
            origin: None,
        }
    }

    /// A condition (every filter operator makes one).
    fn condition(expr: Expr) -> Self {
        Typed::new(expr, Some(ColumnType::Boolean))
    }
}

/// A table column, for foreign-key lookups.
#[derive(Debug, Clone)]
struct Origin {
    pub table: Arc<Table>,
    pub column: String,
}

/// The names visible in one query level.
#[derive(Default)]
struct Level<'n> {
    /// The main source first, then explicit joins in order.
    pub sources: Vec<scope::Source>,
    /// Joins added for foreign-key references, in order of first use.
    pub implicit: Vec<scope::Implicit>,
    /// Expression definitions by name.
    pub exprs: BTreeMap<String, Node<'n>>,
    /// Compiled expressions.
    pub done: HashMap<String, Typed>,
    /// Expressions being compiled (cycle detection).
    pub busy: Vec<String>,
    /// Inside a join condition: no implicit joins (they would come later).
    pub in_join: bool,
}
