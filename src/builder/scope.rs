//! Sources: the main source (a table, a saved question or a nested query)
//! and explicit joins, each visible under an alias with its columns.
//!
//! Columns a custom sandbox hides are not columns of the source at all:
//! naming one is [`Error::HiddenColumn`], and default field lists skip it.

use std::sync::Arc;

use sqlparser::ast::{Join, ObjectName, ObjectNamePart, TableAlias, TableFactor};

use super::flavor::{self, Strategy};
use super::json::{describe, Node};
use super::sql::column;
use super::{Compiler, Level, Origin, Typed};
use crate::access::{self, Decision};
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::{ColumnType, SandboxKind, Table, TableKey};

/// One column a source provides.
#[derive(Debug, Clone)]
pub(super) struct Column {
    /// Its name in SQL.
    pub name: String,
    /// The key references are compared by.
    pub key: String,
    pub ty: Option<ColumnType>,
    pub origin: Option<Origin>,
}

/// Columns of a table that the principal's custom sandbox hides.
#[derive(Debug, Clone)]
pub(super) struct Hidden {
    pub table: String,
    /// What hides them: ``sandbox question `q` `` or the row rules.
    pub hidden_by: String,
    pub keys: Vec<String>,
}

/// A table, saved question or nested query visible in a query.
#[derive(Debug, Clone)]
pub(super) struct Source {
    /// Its alias in SQL, and the qualifier of field names.
    pub alias: String,
    /// The alias as compared.
    pub key: String,
    pub columns: Vec<Column>,
    pub hidden: Option<Hidden>,
    /// Joined sources name their output columns `alias__column`.
    pub joined: bool,
}

impl Source {
    pub(super) fn output_name(&self, column: &str) -> String {
        if self.joined {
            format!("{}__{column}", self.alias)
        } else {
            column.to_string()
        }
    }

    pub(super) fn names(&self) -> String {
        let v: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        v.join(", ")
    }
}

/// A join added for a foreign-key reference.
pub(super) struct Implicit {
    /// (alias of the source holding the key, key column).
    pub via: (String, String),
    pub source: Source,
    pub join: Join,
}

/// Names a question chooses (aliases, expression and aggregation names)
/// become quoted identifiers: they must be printable unambiguously in every
/// dialect and fit PostgreSQL's 63-byte identifiers.
pub(super) fn check_name(n: &Node, name: &str, what: &str) -> Result<()> {
    if name.is_empty() {
        return Err(n.err(format!("{what} must not be empty")));
    }
    if name.len() > 63 {
        return Err(n.err(format!(
            "{what} `{name}` is longer than 63 bytes (PostgreSQL would cut it)"
        )));
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '"' | '`' | '\'' | '\\'))
    {
        return Err(n.err(format!(
            "{what} {name:?} contains quotes, backslashes or control characters"
        )));
    }
    Ok(())
}

/// `FROM [schema.]table [AS alias]`.
fn table_factor(d: Dialect, default_schema: &str, table: &Table, alias: &str) -> TableFactor {
    let mut parts = Vec::new();
    if table.key.schema != default_schema {
        parts.push(ObjectNamePart::Identifier(d.ident(&table.schema)));
    }
    parts.push(ObjectNamePart::Identifier(d.ident(&table.name)));
    TableFactor::Table {
        name: ObjectName(parts),
        alias: (alias != table.name).then(|| table_alias(d, alias)),
        args: None,
        with_hints: vec![],
        version: None,
        with_ordinality: false,
        partitions: vec![],
        json_path: None,
        sample: None,
        index_directives: vec![],
        inheritance: None,
    }
}

fn table_alias(d: Dialect, alias: &str) -> TableAlias {
    TableAlias {
        explicit: true,
        name: d.ident(alias),
        columns: vec![],
        at: None,
    }
}

impl<'n> Compiler<'_> {
    /// A declared table by `table` or `schema.table`.
    pub(super) fn table(&self, n: &Node) -> Result<Arc<Table>> {
        let text = n.str("a table name")?;
        let key = match text.split_once('.') {
            Some((s, t)) => TableKey {
                schema: self.key(s),
                name: self.key(t),
            },
            None => TableKey {
                schema: self.db.default_schema.clone(),
                name: self.key(text),
            },
        };
        self.db.table(&key).cloned().ok_or_else(|| {
            let schema = text.contains('.').then_some(key.schema.as_str());
            n.err(format!(
                "unknown table `{text}` in database `{}`{}",
                self.db.name,
                access::readable_hint(self.policy, self.principal, self.db, schema, &key.name)
            ))
        })
    }

    /// The columns the principal's custom sandbox on `table` hides. Access
    /// errors (no grant, conflicts) surface here, before any SQL is built.
    fn hidden(&self, table: &Table) -> Result<Option<Hidden>> {
        let decision = access::decide(self.policy, self.principal, self.db, table)?;
        let Decision::Sandboxed(sandboxes) = decision else {
            return Ok(None);
        };
        // Row rules with `columns:`: what none of them reveals.
        let mut revealed: Option<Vec<&String>> = Some(Vec::new());
        for sb in &sandboxes {
            match &sb.kind {
                SandboxKind::Rules(rules) => {
                    for r in rules {
                        match (&r.columns, revealed.as_mut()) {
                            (Some(cols), Some(v)) => v.extend(cols.iter()),
                            _ => revealed = None,
                        }
                    }
                }
                SandboxKind::Empty => {}
                // Custom sandboxes combined by union: their questions' columns.
                SandboxKind::Custom { question, .. } if sandboxes.len() > 1 => {
                    match (
                        self.policy
                            .questions
                            .get(question)
                            .and_then(|q| q.columns.as_ref()),
                        revealed.as_mut(),
                    ) {
                        (Some(cols), Some(v)) => v.extend(cols.iter().map(|(c, _)| c)),
                        _ => revealed = None,
                    }
                }
                _ => revealed = None,
            }
        }
        if let Some(revealed) = revealed.filter(|r| !r.is_empty()) {
            let keys: Vec<String> = table
                .columns
                .iter()
                .filter(|c| !revealed.contains(&&c.key))
                .map(|c| c.key.clone())
                .collect();
            return Ok((!keys.is_empty()).then(|| Hidden {
                table: table.qualified(),
                hidden_by: "the row rules' `columns`".to_string(),
                keys,
            }));
        }
        let [sb] = sandboxes.as_slice() else {
            return Ok(None);
        };
        let SandboxKind::Custom { question, .. } = &sb.kind else {
            return Ok(None);
        };
        let visible = self
            .policy
            .questions
            .get(question)
            .and_then(|q| q.columns.as_ref())
            .ok_or_else(|| {
                Error::Verification(format!("columns of question `{question}` unknown"))
            })?;
        let keys: Vec<String> = table
            .columns
            .iter()
            .filter(|c| !visible.iter().any(|(v, _)| *v == c.key))
            .map(|c| c.key.clone())
            .collect();
        Ok((!keys.is_empty()).then(|| Hidden {
            table: table.qualified(),
            hidden_by: format!("sandbox question `{question}`"),
            keys,
        }))
    }

    pub(super) fn table_source(
        &self,
        table: &Arc<Table>,
        alias: &str,
    ) -> Result<(Source, Box<TableFactor>)> {
        let hidden = self.hidden(table)?;
        // A mask may change a column's type for this principal (`hash`
        // gives text): the question is typed as the sandbox returns it.
        let mut masked: Vec<(String, ColumnType)> = Vec::new();
        if let Ok(Decision::Sandboxed(sbs)) =
            access::decide(self.policy, self.principal, self.db, table)
        {
            for m in sbs.iter().flat_map(|s| s.masks.iter()) {
                masked.push((m.column.clone(), m.ty));
            }
        }
        let columns = table
            .columns
            .iter()
            .filter(|c| hidden.as_ref().is_none_or(|h| !h.keys.contains(&c.key)))
            .map(|c| Column {
                name: c.name.clone(),
                key: c.key.clone(),
                ty: Some(
                    masked
                        .iter()
                        .find(|(k, _)| *k == c.key)
                        .map_or(c.ty, |(_, t)| *t),
                ),
                origin: Some(Origin {
                    table: table.clone(),
                    column: c.key.clone(),
                }),
            })
            .collect();
        let factor = Box::new(table_factor(
            self.dialect,
            &self.db.default_schema,
            table,
            alias,
        ));
        Ok((
            Source {
                alias: alias.to_string(),
                key: self.key(alias),
                columns,
                hidden,
                joined: false,
            },
            factor,
        ))
    }

    /// A saved question as a source: view permission on its collection,
    /// same database, no variables; its SQL is sandboxed by the rewrite.
    fn question_source(&self, n: &Node, alias: &str) -> Result<(Source, Box<TableFactor>)> {
        let name = n.str("a saved question name")?;
        // Non-administrators get one answer for a question that does not
        // exist and one they may not run (no enumeration of collections).
        let q = match self.policy.questions.get(name) {
            Some(q) => q,
            None if !self.principal.is_admin() => {
                return Err(access::invisible_question(self.principal, name))
            }
            None => return Err(n.err(format!("unknown saved question `{name}`"))),
        };
        access::check_question(self.policy, self.principal, q).map_err(|e| match e {
            crate::Error::AccessDenied { .. } => access::invisible_question(self.principal, name),
            other => other,
        })?;
        if q.database != self.db.name {
            return Err(n.err(format!(
                "saved question `{name}` runs on database `{}`, not `{}`",
                q.database, self.db.name
            )));
        }
        if !q.variables.is_empty() {
            return Err(n.err(format!(
                "saved question `{name}` has variables ({}); a builder question cannot bind them (run it with `--question`)",
                q.variables.join(", ")
            )));
        }
        let cols = q.columns.as_ref().ok_or_else(|| {
            n.err(format!(
                "the output columns of saved question `{name}` are unknown (give every select item a name)"
            ))
        })?;
        let columns = cols
            .iter()
            .map(|(c, ty)| Column {
                name: c.clone(),
                key: c.clone(),
                ty: *ty,
                origin: None,
            })
            .collect();
        let factor = Box::new(TableFactor::Derived {
            lateral: false,
            subquery: Box::new(q.query.clone()),
            alias: Some(table_alias(self.dialect, alias)),
            sample: None,
        });
        Ok((
            Source {
                alias: alias.to_string(),
                key: self.key(alias),
                columns,
                hidden: None,
                joined: false,
            },
            factor,
        ))
    }

    /// A nested query as a source.
    fn query_source(&mut self, n: &Node, alias: &str) -> Result<(Source, Box<TableFactor>)> {
        let inner = self.query(n)?;
        let columns = inner
            .columns
            .into_iter()
            .map(|c| Column {
                key: self.key(&c.name),
                ..c
            })
            .collect();
        let factor = Box::new(TableFactor::Derived {
            lateral: false,
            subquery: inner.query,
            alias: Some(table_alias(self.dialect, alias)),
            sample: None,
        });
        Ok((
            Source {
                alias: alias.to_string(),
                key: self.key(alias),
                columns,
                hidden: None,
                joined: false,
            },
            factor,
        ))
    }

    /// The source of a query or join: exactly one of `source-table`,
    /// `source-question`, `source-query`; `alias` overrides the default
    /// name: the table's, or `default` (else the question's) for a saved
    /// question or nested query.
    fn source(
        &mut self,
        n: &Node,
        alias: Option<&Node>,
        default: Option<&str>,
    ) -> Result<(Source, Box<TableFactor>)> {
        let given: Vec<(&str, Node)> = ["source-table", "source-question", "source-query"]
            .into_iter()
            .filter_map(|k| n.key(k).map(|v| (k, v)))
            .collect();
        let [(kind, src)] = given.as_slice() else {
            return Err(n.err(if given.is_empty() {
                "needs one of `source-table`, `source-question`, `source-query`"
            } else {
                "give only one of `source-table`, `source-question`, `source-query`"
            }));
        };
        let alias_text = match alias {
            Some(a) => {
                let t = a.str("`alias`")?;
                check_name(a, t, "an alias")?;
                if t.contains('.') {
                    return Err(a.err(format!(
                        "the alias `{t}` must not contain a dot (fields are named `alias.column`)"
                    )));
                }
                Some(t.to_string())
            }
            None => None,
        };
        match *kind {
            "source-table" => {
                let table = self.table(src)?;
                let alias = alias_text.unwrap_or_else(|| table.name.clone());
                self.table_source(&table, &alias)
            }
            "source-question" => {
                let alias = match alias_text.or(default.map(str::to_string)) {
                    Some(a) => a,
                    None => src.str("a saved question name")?.to_string(),
                };
                self.question_source(src, &alias)
            }
            _ => {
                let alias = alias_text
                    .or(default.map(str::to_string))
                    .ok_or_else(|| n.err("a joined `source-query` needs an `alias`"))?;
                self.query_source(src, &alias)
            }
        }
    }

    /// The main source of a query (`source` when it is not a table).
    pub(super) fn main_source(&mut self, q: &Node, lv: &mut Level) -> Result<Box<TableFactor>> {
        let (source, factor) = self.source(q, None, Some("source"))?;
        lv.sources.push(source);
        Ok(factor)
    }

    /// One explicit join: its SQL and the fields it brings.
    pub(super) fn join(
        &mut self,
        j: &Node<'n>,
        lv: &mut Level<'n>,
    ) -> Result<(Box<Join>, Vec<Typed>)> {
        j.allow_keys(
            &[
                "source-table",
                "source-question",
                "source-query",
                "alias",
                "condition",
                "strategy",
                "fields",
            ],
            "a join",
        )?;
        let alias_node = j.key("alias");
        let (mut source, factor) = self.source(j, alias_node.as_ref(), None)?;
        source.joined = true;
        if lv.sources.iter().any(|s| s.key == source.key) {
            return Err(alias_node.as_ref().unwrap_or(j).err(format!(
                "two sources are named `{}`; give the join a distinct `alias`",
                source.alias
            )));
        }
        let fields_node = j.key("fields");
        // The columns `"fields": "all"` brings, read before the source moves
        // into the level.
        let all_fields: Vec<Typed> = if fields_node
            .as_ref()
            .is_some_and(|f| f.v.as_str() == Some("all"))
        {
            source
                .columns
                .iter()
                .map(|c| Typed {
                    expr: column(self.dialect, &source.alias, &c.name),
                    ty: c.ty,
                    name: Some(source.output_name(&c.name)),
                    origin: c.origin.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        lv.sources.push(source);
        let strategy = match j.key("strategy") {
            None => Strategy::Left,
            Some(s) => {
                let text = s.str("`strategy`")?;
                Strategy::parse(text).ok_or_else(|| {
                    s.err(format!(
                        "unknown join strategy `{text}` (expected one of: {})",
                        Strategy::NAMES
                    ))
                })?
            }
        };
        let cond_node = j
            .key("condition")
            .ok_or_else(|| j.err("a join needs a `condition`, e.g. [\"=\", [\"field\", \"orders.product_id\"], [\"field\", \"p.id\"]]"))?;
        lv.in_join = true;
        let cond = self.condition(lv, &cond_node);
        lv.in_join = false;
        let operator = flavor::join(self.dialect, strategy, cond?)?;
        let fields = match fields_node {
            None => Vec::new(),
            Some(f) if f.v.as_str() == Some("none") => Vec::new(),
            Some(f) if f.v.as_str() == Some("all") => all_fields,
            Some(f) if f.v.is_array() => {
                let mut out = Vec::new();
                for item in f.items("join `fields`")? {
                    out.push(self.named(lv, &item, "a join field")?);
                }
                out
            }
            Some(f) => {
                return Err(f.err(format!(
                    "join `fields` must be \"all\", \"none\" or a list of fields, not {}",
                    describe(f.v)
                )))
            }
        };
        Ok((
            Box::new(Join {
                relation: *factor,
                global: false,
                join_operator: operator,
            }),
            fields,
        ))
    }
}
