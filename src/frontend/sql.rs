//! The SQL front end: parse one read query safely for a dialect — size and
//! operator limits before the parser runs, tokens that databases would
//! read differently refused, quoted text flagged for a print-and-parse
//! proof — and the lexing checks of dialect overrides.

use sqlparser::ast::{Query, Statement};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserOptions};
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::pipeline::Options;

/// What the token scan learnt about a query, for the rewrite to skip work
/// it can prove useless (every field errs on the side of `true`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Shape {
    /// Some name has three or more parts (`schema.table.column`).
    pub long_names: bool,
    /// Some word is the name of a system column (`tableoid`, `ctid`, …).
    pub system_names: bool,
    /// The first bind placeholder of the text, if any (`$1`, `?`, `:x`).
    pub placeholder: Option<String>,
}

impl Shape {
    /// What to assume when no token scan ran (a builder question, a saved
    /// question): everything.
    pub fn unknown() -> Shape {
        Shape {
            long_names: true,
            system_names: true,
            placeholder: None,
        }
    }
}

/// Parses exactly one read query. Returns it with a flag saying whether a
/// quoted token holds characters whose printing must be double-checked,
/// and the [`Shape`] its tokens show.
pub(crate) fn parse_query(
    sql: &str,
    dialect: Dialect,
    opts: &Options,
) -> Result<(Query, bool, Shape)> {
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
    let mut shape = Shape::default();
    // Length of the current `word.word.…` chain, in words.
    let mut chain = 0usize;
    let mut after_period = false;
    for t in &tokens {
        match &t.token {
            Token::Word(w) => {
                chain = if after_period { chain + 1 } else { 1 };
                if chain >= 3 {
                    shape.long_names = true;
                }
                if !shape.system_names && crate::rewrite::is_system_word(&w.value) {
                    shape.system_names = true;
                }
            }
            Token::Period | Token::Whitespace(_) => {}
            _ => chain = 0,
        }
        after_period = match &t.token {
            Token::Period => chain > 0,
            Token::Whitespace(_) => after_period,
            _ => false,
        };
        if let Token::Placeholder(p) = &t.token {
            if shape.placeholder.is_none() {
                shape.placeholder = Some(p.clone());
            }
        }
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
    let delicate = tokens.iter().any(|t| delicate_token(&t.token));
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
        return Ok((*q, delicate, shape));
    }
    let mut stmts = parser.parse_statements().map_err(|e| perr(e.to_string()))?;
    if stmts.len() != 1 {
        return Err(Error::NotReadOnly(format!(
            "exactly one statement is allowed, found {}",
            stmts.len()
        )));
    }
    match stmts.pop() {
        Some(Statement::Query(q)) => Ok((*q, delicate, shape)),
        Some(other) => Err(Error::NotReadOnly(format!(
            "only read queries (SELECT) are allowed, not `{}`",
            statement_kind(&other)
        ))),
        None => Err(Error::NotReadOnly("empty query".into())),
    }
}

/// The non-whitespace tokens of `sql` as `dialect` lexes them.
pub(crate) fn lex(sql: &str, dialect: Dialect) -> Option<Vec<Token>> {
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
pub(crate) fn has_delicate_literal(sql: &str, dialect: Dialect) -> bool {
    let Ok(tokens) = Tokenizer::new(dialect.parser(), sql)
        .with_unescape(false)
        .tokenize()
    else {
        return true;
    };
    tokens.iter().any(delicate_token)
}

/// Whether a token is a literal or quoted name the printer may write back
/// otherwise than it was read (quotes or backslashes inside), so that the
/// printed SQL must be parsed again and compared.
fn delicate_token(t: &Token) -> bool {
    match t {
        Token::SingleQuotedString(s)
        | Token::DoubleQuotedString(s)
        | Token::NationalStringLiteral(s)
        | Token::EscapedStringLiteral(s)
        | Token::SingleQuotedByteStringLiteral(s)
        | Token::DoubleQuotedByteStringLiteral(s)
        | Token::HexStringLiteral(s) => s.contains(['\\', '\'', '"', '`']),
        Token::Word(w) => w.quote_style.is_some() && w.value.contains(['\\', '\'', '"', '`', ']']),
        // Raw, triple-quoted, dollar-quoted, quote-delimited and Unicode
        // strings (BigQuery, Snowflake, ClickHouse, …): the printer may
        // write them back another way, whatever they hold.
        Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::UnicodeStringLiteral(_) => true,
        _ => false,
    }
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

/// Parses exactly one write statement (`INSERT`, `UPDATE`, `DELETE`) for
/// the write rules; what it may hold is decided by `rewrite::write`.
pub(crate) fn parse_write(sql: &str, dialect: Dialect, opts: &Options) -> Result<Statement> {
    let sql = sql.strip_prefix('\u{FEFF}').unwrap_or(sql);
    if sql.len() > opts.max_sql_bytes {
        return Err(Error::Limit(format!(
            "the statement is {} bytes; the limit is {}",
            sql.len(),
            opts.max_sql_bytes
        )));
    }
    let perr = |m: String| Error::SqlParse {
        dialect: dialect.to_string(),
        message: m,
    };
    let mut stmts = Parser::new(dialect.parser())
        .with_options(ParserOptions::new().with_unescape(false))
        .with_recursion_limit(opts.max_depth)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| perr(e.to_string()))?;
    if stmts.len() != 1 {
        return Err(Error::NotReadOnly(format!(
            "exactly one statement is allowed, found {}",
            stmts.len()
        )));
    }
    match stmts.pop() {
        Some(s @ (Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_))) => Ok(s),
        Some(other) => Err(Error::NotReadOnly(format!(
            "only read queries and, under write rules, INSERT, UPDATE and DELETE are allowed, not `{}`",
            statement_kind(&other)
        ))),
        None => Err(Error::NotReadOnly("empty statement".into())),
    }
}
