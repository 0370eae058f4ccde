//! Sources and names: the main source (a table, a saved question or a
//! nested query), explicit joins, implicit joins through declared foreign
//! keys, and `["field", …]` references resolved against them.
//!
//! Columns a custom sandbox hides are not columns of the source at all:
//! naming one is [`Error::HiddenColumn`], and default field lists skip it.

use std::sync::Arc;

use sqlparser::ast::{BinaryOperator, Join, ObjectName, ObjectNamePart, TableAlias, TableFactor};

use super::flavor::{self, Part, Strategy, Unit};
use super::json::{describe, Node};
use super::sql::{binop, column, decimal, paren};
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
    pub question: String,
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
    fn output_name(&self, column: &str) -> String {
        if self.joined {
            format!("{}__{column}", self.alias)
        } else {
            column.to_string()
        }
    }

    fn names(&self) -> String {
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

/// The type a truncation to `unit` returns in dialect `d`.
fn truncated_type(d: Dialect, unit: Unit) -> ColumnType {
    match d {
        Dialect::Postgres => ColumnType::Timestamp,
        _ if unit.sub_day() => ColumnType::Timestamp,
        _ => ColumnType::Date,
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
            n.err(format!(
                "unknown table `{text}` in database `{}`",
                self.db.name
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
            question: question.clone(),
            keys,
        }))
    }

    fn table_source(&self, table: &Arc<Table>, alias: &str) -> Result<(Source, Box<TableFactor>)> {
        let hidden = self.hidden(table)?;
        let columns = table
            .columns
            .iter()
            .filter(|c| hidden.as_ref().is_none_or(|h| !h.keys.contains(&c.key)))
            .map(|c| Column {
                name: c.name.clone(),
                key: c.key.clone(),
                ty: Some(c.ty),
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
        let q = self
            .policy
            .questions
            .get(name)
            .ok_or_else(|| n.err(format!("unknown saved question `{name}`")))?;
        access::check_question(self.policy, self.principal, q)?;
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
        let idx = lv.sources.len() - 1;
        let fields = match j.key("fields") {
            None => Vec::new(),
            Some(f) if f.v.as_str() == Some("none") => Vec::new(),
            Some(f) if f.v.as_str() == Some("all") => {
                let s = &lv.sources[idx];
                s.columns
                    .iter()
                    .map(|c| Typed {
                        expr: column(self.dialect, &s.alias, &c.name),
                        ty: c.ty,
                        name: Some(s.output_name(&c.name)),
                        origin: c.origin.clone(),
                    })
                    .collect()
            }
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

    /// `["field", name]` or `["field", name, {options}]`.
    pub(super) fn field(
        &mut self,
        lv: &mut Level<'n>,
        n: &Node<'n>,
        args: &[Node<'n>],
    ) -> Result<Typed> {
        let (name_node, opts) =
            match args {
                [a] => (a, None),
                [a, o] => (a, Some(o)),
                _ => return Err(n.err(
                    "`field` takes a name and optional options: [\"field\", \"orders.total\", {…}]",
                )),
            };
        let name = name_node.str("a field name")?;
        let mut join_alias = None;
        let mut fk = None;
        let mut unit = None;
        let mut binning = None;
        if let Some(o) = opts {
            o.allow_keys(
                &[
                    "join-alias",
                    "fk",
                    "temporal-unit",
                    "binning",
                    "base-type",
                    "effective-type",
                ],
                "field options",
            )?;
            join_alias = o.key("join-alias");
            fk = o.key("fk");
            unit = o.key("temporal-unit");
            binning = o.key("binning");
        }
        let (mut t, via) = self.column_ref(lv, name_node, name, join_alias.as_ref())?;
        if let Some(fk) = fk {
            t = self.follow_fk(lv, &fk, t, via)?;
        }
        match (unit, binning) {
            (Some(u), Some(b)) => Err(b.err(format!(
                "a field takes `temporal-unit` or `binning`, not both (temporal unit at {})",
                u.path
            ))),
            (Some(u), None) => self.temporal(&u, t),
            (None, Some(b)) => self.bin(&b, t),
            (None, None) => Ok(t),
        }
    }

    /// Resolves a column name; returns it with the alias of its source.
    fn column_ref(
        &self,
        lv: &Level,
        n: &Node,
        name: &str,
        join_alias: Option<&Node>,
    ) -> Result<(Typed, String)> {
        let (idx, col) = if let Some(a) = join_alias {
            let alias = a.str("`join-alias`")?;
            let i = self.find_source(lv, a, alias)?;
            (i, name)
        } else if lv.sources.first().is_some_and(|s| {
            let k = self.key(name);
            s.columns.iter().any(|c| c.key == k)
                || s.hidden.as_ref().is_some_and(|h| h.keys.contains(&k))
        }) {
            (0, name)
        } else if let Some((q, c)) = name.split_once('.') {
            let i = self.find_source(lv, n, q)?;
            (i, c)
        } else {
            (0, name)
        };
        let src = lv
            .sources
            .get(idx)
            .ok_or_else(|| Error::Verification("a query without a source".into()))?;
        let key = self.key(col);
        if let Some(h) = &src.hidden {
            if h.keys.contains(&key) {
                return Err(Error::HiddenColumn {
                    column: col.to_string(),
                    table: h.table.clone(),
                    question: h.question.clone(),
                });
            }
        }
        let Some(c) = src.columns.iter().find(|c| c.key == key) else {
            let elsewhere: Vec<String> = lv
                .sources
                .iter()
                .filter(|s| s.columns.iter().any(|c| c.key == key))
                .map(|s| format!("{}.{col}", s.alias))
                .collect();
            let hint = if elsewhere.is_empty() || idx != 0 || name.contains('.') {
                String::new()
            } else {
                format!("; did you mean {}?", elsewhere.join(" or "))
            };
            return Err(n.err(format!(
                "`{}` has no column `{col}` (it has: {}){hint}",
                src.alias,
                src.names()
            )));
        };
        Ok((
            Typed {
                expr: column(self.dialect, &src.alias, &c.name),
                ty: c.ty,
                name: Some(src.output_name(&c.name)),
                origin: c.origin.clone(),
            },
            src.alias.clone(),
        ))
    }

    fn find_source(&self, lv: &Level, n: &Node, alias: &str) -> Result<usize> {
        let k = self.key(alias);
        lv.sources.iter().position(|s| s.key == k).ok_or_else(|| {
            let names: Vec<&str> = lv.sources.iter().map(|s| s.alias.as_str()).collect();
            n.err(format!(
                "no table or join named `{alias}` here (sources: {})",
                names.join(", ")
            ))
        })
    }

    /// `{"fk": "products.category"}`: the column of the table the base
    /// column's declared foreign key points at, through a LEFT JOIN added
    /// once per (source, key column). The joined table is sandboxed like
    /// any table reference.
    fn follow_fk(&mut self, lv: &mut Level, fk: &Node, base: Typed, via: String) -> Result<Typed> {
        let target_text = fk.str("`fk`")?;
        if lv.in_join {
            return Err(fk.err("implicit joins (`fk`) cannot be used in a join condition; join the table explicitly"));
        }
        let origin = base.origin.clone().ok_or_else(|| {
            fk.err("`fk` follows a declared foreign key, but this field is not a table column")
        })?;
        let def = origin.table.foreign_key(&origin.column).ok_or_else(|| {
            fk.err(format!(
                "column `{}.{}` has no declared foreign key (declare `foreign_keys` on table `{}` in the policy)",
                origin.table.name,
                origin.column,
                origin.table.qualified()
            ))
        })?;
        let target =
            self.db.table(&def.target).cloned().ok_or_else(|| {
                Error::Verification("a foreign key points at a missing table".into())
            })?;
        let col_text = match target_text.split_once('.') {
            Some((t, c)) => {
                if self.key(t) != target.key.name {
                    return Err(fk.err(format!(
                        "the foreign key `{}.{}` points at table `{}`, not `{t}`",
                        origin.table.name, origin.column, target.name
                    )));
                }
                c
            }
            None => target_text,
        };
        let key = (self.key(&via), origin.column.clone());
        let pos = match lv.implicit.iter().position(|i| i.via == key) {
            Some(p) => p,
            None => {
                let alias = if lv.sources.first().is_some_and(|s| s.alias == via) {
                    format!("{}__via__{}", target.name, origin.column)
                } else {
                    format!("{}__via__{via}__{}", target.name, origin.column)
                };
                check_name(fk, &alias, "the implicit join alias")?;
                let akey = self.key(&alias);
                if lv.sources.iter().any(|s| s.key == akey) {
                    return Err(fk.err(format!(
                        "a join is already named `{alias}`, the name of this implicit join"
                    )));
                }
                let (mut source, factor) = self.table_source(&target, &alias)?;
                source.joined = true;
                let on = binop(
                    base.expr.clone(),
                    BinaryOperator::Eq,
                    column(
                        self.dialect,
                        &alias,
                        &target_column_name(&target, &def.target_column),
                    ),
                );
                let join = Join {
                    relation: *factor,
                    global: false,
                    join_operator: flavor::join(self.dialect, Strategy::Left, on)?,
                };
                lv.implicit.push(Implicit {
                    via: key,
                    source,
                    join,
                });
                lv.implicit.len() - 1
            }
        };
        let src = &lv.implicit[pos].source;
        let ckey = self.key(col_text);
        if let Some(h) = &src.hidden {
            if h.keys.contains(&ckey) {
                return Err(Error::HiddenColumn {
                    column: col_text.to_string(),
                    table: h.table.clone(),
                    question: h.question.clone(),
                });
            }
        }
        let c = src.columns.iter().find(|c| c.key == ckey).ok_or_else(|| {
            fk.err(format!(
                "table `{}` has no column `{col_text}` (it has: {})",
                target.name,
                src.names()
            ))
        })?;
        Ok(Typed {
            expr: column(self.dialect, &src.alias, &c.name),
            ty: c.ty,
            name: Some(src.output_name(&c.name)),
            origin: c.origin.clone(),
        })
    }

    /// `temporal-unit`: a truncation (`month`) or an extraction
    /// (`day-of-week`).
    fn temporal(&self, u: &Node, t: Typed) -> Result<Typed> {
        let text = u.str("`temporal-unit`")?;
        if !matches!(
            t.ty,
            None | Some(ColumnType::Date) | Some(ColumnType::Timestamp)
        ) {
            return Err(u.err(format!(
                "`temporal-unit` needs a date or timestamp; `{}` is {}",
                t.name.as_deref().unwrap_or("this field"),
                t.ty.map(|t| t.to_string()).unwrap_or_default()
            )));
        }
        let date = t.ty == Some(ColumnType::Date);
        let name = t.name.clone();
        if let Some(unit) = Unit::parse(text) {
            if date && unit.sub_day() {
                return Err(u.err(format!(
                    "`{text}` is finer than a day, but the column is a date"
                )));
            }
            return Ok(Typed {
                expr: flavor::truncate(self.dialect, unit, t.expr)?,
                ty: Some(truncated_type(self.dialect, unit)),
                name,
                origin: None,
            });
        }
        if let Some(part) = Part::parse(text) {
            if date && part.sub_day() {
                return Err(u.err(format!(
                    "`{text}` is finer than a day, but the column is a date"
                )));
            }
            return Ok(Typed {
                expr: flavor::extract(self.dialect, part, t.expr)?,
                ty: Some(ColumnType::Integer),
                name,
                origin: None,
            });
        }
        Err(u.err(format!(
            "unknown temporal unit `{text}` (truncations: {}; extractions: {})",
            Unit::NAMES,
            Part::NAMES
        )))
    }

    /// `binning`: `{"strategy": "bin-width", "bin-width": 10}` or
    /// `{"strategy": "num-bins", "num-bins": 8, "min-value": 0, "max-value": 400}`
    /// (sqlsandbox keeps no column statistics, so the range is given).
    fn bin(&self, b: &Node, t: Typed) -> Result<Typed> {
        b.allow_keys(
            &[
                "strategy",
                "bin-width",
                "num-bins",
                "min-value",
                "max-value",
            ],
            "binning options",
        )?;
        if !matches!(
            t.ty,
            None | Some(ColumnType::Integer) | Some(ColumnType::Decimal)
        ) {
            return Err(b.err("`binning` needs a number column"));
        }
        let num = |k: &str| -> Result<Option<f64>> {
            match b.key(k) {
                None => Ok(None),
                Some(v) => {
                    v.v.as_f64()
                        .filter(|x| x.is_finite())
                        .map(Some)
                        .ok_or_else(|| v.err(format!("`{k}` must be a number")))
                }
            }
        };
        let strategy_node = b
            .key("strategy")
            .ok_or_else(|| b.err("binning needs a `strategy`: bin-width or num-bins"))?;
        let strategy = strategy_node.str("`strategy`")?;
        let (width, min) = match strategy {
            "bin-width" => {
                let w = num("bin-width")?
                    .ok_or_else(|| b.err("the bin-width strategy needs `bin-width`"))?;
                (w, num("min-value")?.unwrap_or(0.0))
            }
            "num-bins" => {
                let n_node = b
                    .key("num-bins")
                    .ok_or_else(|| b.err("the num-bins strategy needs `num-bins`"))?;
                let n = n_node.int("`num-bins`")?;
                if !(1..=10_000).contains(&n) {
                    return Err(n_node.err("`num-bins` must be between 1 and 10000"));
                }
                let (Some(lo), Some(hi)) = (num("min-value")?, num("max-value")?) else {
                    return Err(b.err("the num-bins strategy needs `min-value` and `max-value` (sqlsandbox keeps no column statistics)"));
                };
                if hi <= lo {
                    return Err(b.err("`max-value` must be above `min-value`"));
                }
                ((hi - lo) / n as f64, lo)
            }
            other => {
                return Err(strategy_node.err(format!(
                    "unknown binning strategy `{other}` (bin-width or num-bins)"
                )))
            }
        };
        if !(width > 0.0 && width.is_finite()) {
            return Err(b.err("the bin width must be a positive number"));
        }
        // min + floor((x - min) / width) * width
        let shifted = if min == 0.0 {
            t.expr
        } else {
            binop(t.expr, BinaryOperator::Minus, decimal(min))
        };
        let bucket = flavor::floor(
            self.dialect,
            binop(paren(shifted), BinaryOperator::Divide, decimal(width)),
        )?;
        let mut expr = binop(bucket, BinaryOperator::Multiply, decimal(width));
        if min != 0.0 {
            expr = binop(decimal(min), BinaryOperator::Plus, expr);
        }
        Ok(Typed {
            expr,
            ty: Some(ColumnType::Decimal),
            name: t.name,
            origin: None,
        })
    }
}

fn target_column_name(table: &Table, key: &str) -> String {
    table
        .column(key)
        .map(|c| c.name.clone())
        .unwrap_or_else(|| key.to_string())
}
