//! The front end for native SQL and the last stage: parse safely, run the
//! rewrite and its check, number bind parameters, print, fingerprint.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlparser::ast::{Query, Statement, Value, ValueWithSpan};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserOptions};
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::access;
use crate::bind::{Binder, BoundParam, TEMP_PLACEHOLDER};
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::functions;
use crate::policy::{Database, Policy};
use crate::principal::{AttributeValue, Principal, Scalar};
use crate::rewrite::{Applied, Rewriter};
use crate::routing::{self, Route};

/// Options of one rewrite call.
#[derive(Debug, Clone)]
pub struct Options {
    /// The policy database the query runs on (may be omitted when the
    /// policy declares exactly one).
    pub database: Option<String>,
    /// Override the database's dialect.
    pub dialect: Option<Dialect>,
    /// Return attribute values as bind parameters instead of literals.
    pub params: bool,
    /// Longest SQL text accepted, in bytes.
    pub max_sql_bytes: usize,
    /// Deepest nesting the parser accepts.
    pub max_depth: usize,
    /// Prefix the SQL with the statement that switches to the impersonated
    /// role (`SET ROLE …;`).
    pub emit_role: bool,
    /// Use `SET LOCAL ROLE` (PostgreSQL, inside a transaction).
    pub local_role: bool,
    /// Most operators (`+`, `AND`, `=`, …) a query may contain: chains such
    /// as `1+1+1…` parse without recursion into trees as deep as they are
    /// long, which later walks would pay for in stack and time.
    pub max_operators: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            database: None,
            dialect: None,
            params: false,
            max_sql_bytes: 1 << 20,
            max_depth: 64,
            max_operators: 5_000,
            emit_role: false,
            local_role: false,
        }
    }
}

/// The result of a rewrite.
#[derive(Debug, Clone, Serialize)]
pub struct Rewritten {
    /// The sandboxed SQL.
    pub sql: String,
    /// Bind parameters, in placeholder order (empty unless requested).
    pub params: Vec<BoundParam>,
    /// The database it must run on.
    pub database: String,
    /// The dialect it is written in.
    pub dialect: Dialect,
    /// The routing destination slug the query must run on; `None` for the
    /// database itself (or the router database when routing is configured).
    pub destination: Option<String>,
    /// The database role to run as (connection impersonation), if any.
    pub role: Option<String>,
    /// The statement that switches to `role` in this dialect (also prefixed
    /// to `sql` when [`Options::emit_role`] is set).
    pub role_statement: Option<String>,
    /// The sandboxes applied, one per rewritten table reference.
    pub applied: Vec<Applied>,
    /// A stable digest of `database`, `destination`, `role` and `applied`
    /// (values included), for
    /// result-cache keys: two principals share cached results only when
    /// their fingerprints are equal.
    pub fingerprint: String,
}

pub(crate) fn pick_database<'p>(policy: &'p Policy, name: Option<&str>) -> Result<&'p Database> {
    match name {
        Some(n) => policy.databases.get(n).ok_or_else(|| Error::Unknown {
            kind: "database",
            name: n.to_string(),
        }),
        None => {
            let mut it = policy.databases.values();
            match (it.next(), it.next()) {
                (Some(db), None) => Ok(db),
                (None, _) => Err(Error::Unknown {
                    kind: "database",
                    name: "(the policy declares none)".into(),
                }),
                _ => Err(Error::DatabaseRequired {
                    choices: policy
                        .databases
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            }
        }
    }
}

/// Parses exactly one read query. Returns it with a flag saying whether a
/// quoted token holds characters whose printing must be double-checked.
pub(crate) fn parse_query(sql: &str, dialect: Dialect, opts: &Options) -> Result<(Query, bool)> {
    // One leading byte-order mark is an editor's artefact, not SQL.
    let sql = sql.strip_prefix('\u{FEFF}').unwrap_or(sql);
    if sql.len() > opts.max_sql_bytes {
        return Err(Error::Limit(format!(
            "the query is {} bytes; the limit is {}",
            sql.len(),
            opts.max_sql_bytes
        )));
    }
    let perr = |m: String| Error::SqlParse {
        dialect: dialect.to_string(),
        message: m,
    };
    let tokens = Tokenizer::new(dialect.parser(), sql)
        .with_unescape(false)
        .tokenize_with_location()
        .map_err(|e| perr(e.to_string()))?;
    let mut operators = 0usize;
    for t in &tokens {
        match &t.token {
            // sqlparser reads `%--` or `@/*` as one PostgreSQL operator, but
            // PostgreSQL's lexer starts a comment inside it: the printed
            // query would then hide the sandbox in a comment.
            Token::CustomBinaryOperator(op)
                if op.contains("--") || op.contains("/*") || op.contains("*/") =>
            {
                return Err(Error::unsupported(format!(
                    "the operator `{op}` (it contains a comment marker the database would read as a comment)"
                )));
            }
            Token::Whitespace(_)
            | Token::LParen
            | Token::RParen
            | Token::Comma
            | Token::Period
            | Token::SemiColon
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_) => {}
            Token::Word(w) => {
                if w.quote_style.is_none()
                    && matches!(
                        w.keyword,
                        Keyword::AND
                            | Keyword::OR
                            | Keyword::NOT
                            | Keyword::IS
                            | Keyword::LIKE
                            | Keyword::ILIKE
                    )
                {
                    operators += 1;
                }
            }
            _ => operators += 1,
        }
    }
    if operators > opts.max_operators {
        return Err(Error::Limit(format!(
            "the query has more than {} operators (the limit is configurable)",
            opts.max_operators
        )));
    }
    let delicate = tokens.iter().any(|t| match &t.token {
        Token::SingleQuotedString(s)
        | Token::DoubleQuotedString(s)
        | Token::NationalStringLiteral(s)
        | Token::EscapedStringLiteral(s)
        | Token::SingleQuotedByteStringLiteral(s)
        | Token::DoubleQuotedByteStringLiteral(s)
        | Token::HexStringLiteral(s) => s.contains(['\\', '\'', '"', '`']),
        Token::Word(w) => w.quote_style.is_some() && w.value.contains(['\\', '\'', '"', '`']),
        _ => false,
    });
    // sqlparser reads `TABLE t` (PostgreSQL and MySQL 8's short form of
    // `SELECT * FROM t`) inside a query but not as a statement: a query that
    // starts with it is parsed as a query, and must be all there is.
    let table_first = tokens
        .iter()
        .find(|t| !matches!(t.token, Token::Whitespace(_)))
        .is_some_and(|t| matches!(&t.token, Token::Word(w) if w.keyword == Keyword::TABLE && w.quote_style.is_none()));
    let mut parser = Parser::new(dialect.parser())
        .with_options(ParserOptions::new().with_unescape(false))
        .with_recursion_limit(opts.max_depth)
        .with_tokens_with_locations(tokens);
    if table_first {
        let q = parser.parse_query().map_err(|e| perr(e.to_string()))?;
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token_ref().token != Token::EOF {
            return Err(Error::NotReadOnly(
                "exactly one statement is allowed, found more after `TABLE …`".into(),
            ));
        }
        return Ok((*q, delicate));
    }
    let mut stmts = parser.parse_statements().map_err(|e| perr(e.to_string()))?;
    if stmts.len() != 1 {
        return Err(Error::NotReadOnly(format!(
            "exactly one statement is allowed, found {}",
            stmts.len()
        )));
    }
    match stmts.pop() {
        Some(Statement::Query(q)) => Ok((*q, delicate)),
        Some(other) => Err(Error::NotReadOnly(format!(
            "only read queries (SELECT) are allowed, not `{}`",
            statement_kind(&other)
        ))),
        None => Err(Error::NotReadOnly("empty query".into())),
    }
}

/// The non-whitespace tokens of `sql` as `dialect` lexes them.
fn lex(sql: &str, dialect: Dialect) -> Option<Vec<Token>> {
    Tokenizer::new(dialect.parser(), sql)
        .with_unescape(false)
        .tokenize()
        .ok()
        .map(|ts| {
            ts.into_iter()
                .filter(|t| !matches!(t, Token::Whitespace(_)))
                .collect()
        })
}

/// Whether printed SQL holds a string literal or quoted identifier with a
/// backslash or an embedded quote (where dialects' lexers disagree).
fn has_delicate_literal(sql: &str, dialect: Dialect) -> bool {
    let Ok(tokens) = Tokenizer::new(dialect.parser(), sql)
        .with_unescape(false)
        .tokenize()
    else {
        return true;
    };
    tokens.iter().any(|t| match t {
        Token::SingleQuotedString(s)
        | Token::DoubleQuotedString(s)
        | Token::NationalStringLiteral(s)
        | Token::EscapedStringLiteral(s) => s.contains(['\\', '\'', '"', '`']),
        Token::Word(w) => w.quote_style.is_some() && w.value.contains(['\\', '\'', '"', '`']),
        _ => false,
    })
}

fn statement_kind(s: &Statement) -> String {
    let text = s.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    let kind = words.join(" ");
    // Cut on a character boundary: the statement text is the user's, and a
    // byte slice through a multi-byte letter panics.
    if kind.chars().count() > 40 {
        kind.chars().take(40).collect()
    } else {
        kind
    }
}

/// Renumbers the temporary placeholders in print order.
fn number_params(
    q: &mut Query,
    dialect: Dialect,
    params: &[BoundParam],
) -> Result<Vec<BoundParam>> {
    struct N<'p> {
        dialect: Dialect,
        params: &'p [BoundParam],
        out: Vec<BoundParam>,
    }
    impl crate::rewrite::walk::Hooks for N<'_> {
        fn pre_visit_value(&mut self, v: &mut ValueWithSpan) -> ControlFlow<Error> {
            if let Value::Placeholder(p) = &mut v.value {
                if let Some(idx) = p.strip_prefix(TEMP_PLACEHOLDER) {
                    let Some(param) = idx.parse::<usize>().ok().and_then(|i| self.params.get(i))
                    else {
                        return ControlFlow::Break(Error::Verification("bad parameter".into()));
                    };
                    // Numbered placeholders ($n) are reused for equal values,
                    // so that two copies of one sandboxed subquery stay the
                    // same expression (PostgreSQL compares GROUP BY / DISTINCT
                    // ON expressions textually). Positional `?` cannot be.
                    let reuse = self.dialect.numbered_placeholders();
                    let n = match self.out.iter().position(|o| reuse && o == param) {
                        Some(i) => i + 1,
                        None => {
                            self.out.push(param.clone());
                            self.out.len()
                        }
                    };
                    *p = self.dialect.placeholder(n);
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut n = N {
        dialect,
        params,
        out: Vec::new(),
    };
    crate::rewrite::walk::walk(q, &mut n)?;
    Ok(n.out)
}

pub(crate) fn fingerprint(database: &str, route: &Route, applied: &[Applied]) -> String {
    // SHA-256 over a length-prefixed encoding: no two different inputs
    // share an encoding, so equal fingerprints mean equal inputs.
    struct Enc(Sha256);
    impl Enc {
        fn n(&mut self, n: usize) {
            self.0.update((n as u64).to_le_bytes());
        }
        fn s(&mut self, s: &str) {
            self.n(s.len());
            self.0.update(s.as_bytes());
        }
        fn opt(&mut self, s: Option<&str>) {
            match s {
                Some(s) => {
                    self.0.update([1]);
                    self.s(s);
                }
                None => self.0.update([0]),
            }
        }
        fn scalar(&mut self, v: &Scalar) {
            match v {
                Scalar::Text(t) => {
                    self.0.update(b"t");
                    self.s(t);
                }
                Scalar::Integer(i) => {
                    self.0.update(b"i");
                    self.0.update(i.to_le_bytes());
                }
                Scalar::Number(n) => {
                    self.0.update(b"n");
                    self.s(n);
                }
                Scalar::Bool(b) => self.0.update([b'b', u8::from(*b)]),
            }
        }
    }
    let mut e = Enc(Sha256::new());
    e.s("sqlsandbox fingerprint 2");
    e.s(database);
    e.opt(route.destination.as_deref());
    e.opt(route.role.as_deref());
    e.n(applied.len());
    for a in applied {
        e.s(&a.table);
        e.s(&a.alias);
        e.n(a.groups.len());
        for g in &a.groups {
            e.s(g);
        }
        e.s(a.kind);
        e.opt(a.question.as_deref());
        e.n(a.bindings.len());
        for b in &a.bindings {
            e.s(&b.attribute);
            match &b.value {
                AttributeValue::Single(v) => {
                    e.0.update(b"1");
                    e.scalar(v);
                }
                AttributeValue::Many(vs) => {
                    e.0.update(b"*");
                    e.n(vs.len());
                    for v in vs {
                        e.scalar(v);
                    }
                }
            }
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = e.0.finalize();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// Rewrites native SQL for a principal. See [`Policy::rewrite`].
pub(crate) fn rewrite_sql(
    policy: &Policy,
    principal: &Principal,
    sql: &str,
    opts: &Options,
) -> Result<Rewritten> {
    let db = pick_database(policy, opts.database.as_deref())?;
    let dialect = opts.dialect.unwrap_or(db.dialect);
    access::check_native(policy, principal, db)?;
    let (query, delicate) = parse_query(sql, dialect, opts)?;
    // The caller's SQL may not hold bind placeholders of its own.
    let source = Source {
        delicate,
        no_placeholders: true,
    };
    rewrite_checked(
        policy,
        principal,
        db,
        dialect,
        query,
        source,
        opts,
        |_, _| Ok(()),
    )
}

/// Runs a saved question by name: view permission on its collection, its
/// variables bound from `values`, then sandboxed like any SQL.
pub(crate) fn rewrite_saved_question(
    policy: &Policy,
    principal: &Principal,
    name: &str,
    values: &BTreeMap<String, AttributeValue>,
    opts: &Options,
) -> Result<Rewritten> {
    let q = policy.questions.get(name).ok_or_else(|| Error::Unknown {
        kind: "question",
        name: name.to_string(),
    })?;
    access::check_question(policy, principal, q)?;
    let db = pick_database(policy, Some(&q.database))?;
    if let Some(v) = values.keys().find(|v| !q.variables.contains(v)) {
        return Err(Error::Unknown {
            kind: "question variable",
            name: format!("{v} (question `{name}` has: {})", q.variables.join(", ")),
        });
    }
    let question = q.clone();
    rewrite_query(
        policy,
        principal,
        db,
        db.dialect,
        q.query.clone(),
        false,
        opts,
        move |rw: &mut Rewriter, query: &mut Query| {
            rw.bind_question_variables(query, &question, values)
                .map(|_| ())
        },
    )
}

/// Compiles a query-builder question and sandboxes it like native SQL.
/// See [`Policy::rewrite_builder`].
pub(crate) fn rewrite_builder(
    policy: &Policy,
    principal: &Principal,
    question: &serde_json::Value,
    opts: &Options,
) -> Result<Rewritten> {
    let compiled = crate::builder::compile(policy, principal, question, opts)?;
    // `delicate`: the printed SQL is always parsed again and must give the
    // very tree the builder built.
    rewrite_query(
        policy,
        principal,
        compiled.db,
        compiled.dialect,
        compiled.query,
        true,
        opts,
        |_, _| Ok(()),
    )
}

/// Rewrites an already parsed query (a query-builder question compiled to
/// SQL, or a saved question).
#[allow(clippy::too_many_arguments)]
pub(crate) fn rewrite_query(
    policy: &Policy,
    principal: &Principal,
    db: &Database,
    dialect: Dialect,
    query: Query,
    delicate: bool,
    opts: &Options,
    pre: impl FnOnce(&mut Rewriter, &mut Query) -> Result<()>,
) -> Result<Rewritten> {
    let source = Source {
        delicate,
        no_placeholders: false,
    };
    rewrite_checked(policy, principal, db, dialect, query, source, opts, pre)
}

/// What the back end needs to know of where a query came from.
struct Source {
    /// The input had quotes or backslashes inside quoted text (see
    /// `parse_query`): the printed SQL is parsed again to prove it.
    delicate: bool,
    /// Bind placeholders in the query are refused (native SQL).
    no_placeholders: bool,
}

/// The shared back end: the function policy (one walk, which also notes
/// the query's shape), the rewrite, its check, then printing.
#[allow(clippy::too_many_arguments)]
fn rewrite_checked(
    policy: &Policy,
    principal: &Principal,
    db: &Database,
    dialect: Dialect,
    mut query: Query,
    source: Source,
    opts: &Options,
    pre: impl FnOnce(&mut Rewriter, &mut Query) -> Result<()>,
) -> Result<Rewritten> {
    let shape = functions::check_all(
        &mut query,
        &policy.functions,
        dialect,
        source.no_placeholders,
    )?;
    let mut rw = Rewriter::new(
        policy,
        db,
        dialect,
        principal,
        Binder::new(dialect, opts.params),
    );
    rw.long_names = shape.long_names;
    rw.system_names = shape.system_names;
    pre(&mut rw, &mut query)?;
    rw.rewrite(&mut query)?;
    crate::verify::verify(policy, db, dialect, principal, &rw.built, &mut query)?;
    let params = if rw.binder.params.is_empty() {
        Vec::new()
    } else {
        number_params(&mut query, dialect, &rw.binder.params)?
    };
    let sql = query.to_string();
    if source.delicate {
        // The printer guesses how quotes inside literals were escaped; when
        // the input had such characters, prove the text means the tree.
        let reopts = Options {
            max_sql_bytes: usize::MAX,
            max_depth: opts.max_depth.saturating_mul(2),
            ..opts.clone()
        };
        let reopts = Options {
            max_operators: usize::MAX,
            ..reopts
        };
        let (again, _) = parse_query(&sql, dialect, &reopts)?;
        if again != query {
            return Err(Error::unsupported(
                "a quoted literal or identifier that cannot be printed back unambiguously (backslashes next to quotes)",
            ));
        }
    }
    if db.dialect != dialect && has_delicate_literal(&sql, dialect) {
        // With a dialect override, the database's declared dialect must read
        // the same text the same way (MySQL's backslash escapes, printed for
        // a PostgreSQL server, would end a string where MySQL does not) —
        // for the caller's literals and for bound attribute values alike.
        // Both lexers must cut the text into the same tokens.
        let same = match (lex(&sql, dialect), lex(&sql, db.dialect)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        if !same {
            return Err(Error::unsupported(format!(
                "quoted text with backslashes or quotes when the {dialect} dialect overrides the database's {} dialect (the two would read it differently)",
                db.dialect
            )));
        }
    }
    let applied = rw.applied;
    let route = routing::route(policy, principal, db)?;
    let role_statement = route
        .role
        .as_deref()
        .map(|r| routing::role_statement(dialect, r, opts.local_role))
        .transpose()?;
    let sql = match (&role_statement, opts.emit_role) {
        (Some(stmt), true) => format!("{stmt};\n{sql}"),
        _ => sql,
    };
    Ok(Rewritten {
        fingerprint: fingerprint(&db.name, &route, &applied),
        sql,
        params,
        database: db.name.clone(),
        dialect,
        destination: route.destination,
        role: route.role,
        role_statement,
        applied,
    })
}

/// See [`Policy::recheck`].
pub(crate) fn recheck(
    policy: &Policy,
    principal: &Principal,
    sql: &str,
    opts: &Options,
) -> Result<()> {
    let db = pick_database(policy, opts.database.as_deref())?;
    let dialect = opts.dialect.unwrap_or(db.dialect);
    let reopts = Options {
        max_sql_bytes: usize::MAX,
        max_depth: opts.max_depth.saturating_mul(2),
        max_operators: usize::MAX,
        ..opts.clone()
    };
    let (mut query, _) = parse_query(sql, dialect, &reopts)?;
    let mut rw = Rewriter::new(policy, db, dialect, principal, Binder::new(dialect, false));
    let sandboxes = rw.all_sandboxes();
    crate::verify::verify(policy, db, dialect, principal, &sandboxes, &mut query)
}
