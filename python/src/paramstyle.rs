//! Rewritten SQL in the placeholder style of a Python database driver
//! (PEP 249 `paramstyle`): sqlsandbox writes `$1` for PostgreSQL and `?`
//! elsewhere, while psycopg2 and PyMySQL take `%s`, sqlite3 `?` or
//! `:name`.
//!
//! Placeholders are found by the tokenizer of the dialect the SQL was
//! printed in, never by searching the text: a `$1` or `?` inside a string
//! literal, a quoted name or a comment stays as it is. Every other byte is
//! kept, except that the `format` styles double each `%` (the drivers read
//! `%%` as `%`, in literals too).

use sqlparser::tokenizer::{Token, Tokenizer};
use sqlsandbox::Dialect;

/// A PEP 249 parameter style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `?`
    Qmark,
    /// `:1`
    Numeric,
    /// `:p1`
    Named,
    /// `%s`
    Format,
    /// `%(p1)s`
    Pyformat,
}

impl Style {
    pub(crate) fn parse(s: &str) -> Option<Style> {
        Some(match s {
            "qmark" => Style::Qmark,
            "numeric" => Style::Numeric,
            "named" => Style::Named,
            "format" => Style::Format,
            "pyformat" => Style::Pyformat,
            _ => return None,
        })
    }

    /// Whether the driver takes a mapping (else a sequence).
    pub(crate) fn named(self) -> bool {
        matches!(self, Style::Named | Style::Pyformat)
    }

    /// Whether one value may be referred to twice by its number or name
    /// (else each placeholder takes the next value of the sequence).
    fn addressed(self) -> bool {
        matches!(self, Style::Numeric | Style::Named | Style::Pyformat)
    }
}

/// The SQL in `style`, and which parameter (0-based, into `params`) each
/// value the driver takes is: in order for sequence styles; for mapping
/// styles, value `i` is named `p{i+1}`.
pub(crate) fn convert(
    sql: &str,
    dialect: Dialect,
    n_params: usize,
    style: Style,
) -> Result<(String, Vec<usize>), String> {
    let numbered = dialect.numbered_placeholders();
    let tokens = Tokenizer::new(dialect.parser(), sql)
        .with_unescape(false)
        .tokenize_with_location()
        .map_err(|e| format!("the rewritten SQL does not tokenize again: {e}"))?;
    let lines = line_starts(sql);
    let mut out = String::with_capacity(sql.len() + 16);
    let mut order = Vec::new();
    let mut copied = 0usize;
    let mut positional = 0usize;
    for t in &tokens {
        let Token::Placeholder(p) = &t.token else {
            continue;
        };
        // Which parameter this placeholder is. A placeholder sqlsandbox
        // did not write (the input cannot hold one: it is refused) would
        // not match the parameters: refused rather than guessed.
        let index = if numbered {
            match p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n >= 1 && n <= n_params => n - 1,
                _ => return Err(format!("unexpected placeholder `{p}` in the rewritten SQL")),
            }
        } else if p == "?" {
            positional += 1;
            positional - 1
        } else {
            return Err(format!("unexpected placeholder `{p}` in the rewritten SQL"));
        };
        if index >= n_params {
            return Err("more placeholders than parameters in the rewritten SQL".into());
        }
        let start = offset(sql, &lines, t.span.start.line, t.span.start.column)
            .filter(|&s| sql.get(s..s + p.len()) == Some(p.as_str()))
            .ok_or_else(|| format!("cannot place placeholder `{p}` in the rewritten SQL"))?;
        push_text(&mut out, sql.get(copied..start).unwrap_or_default(), style);
        copied = start + p.len();
        let slot = if style.addressed() {
            index
        } else {
            order.push(index);
            order.len() - 1
        };
        match style {
            Style::Qmark => out.push('?'),
            Style::Format => out.push_str("%s"),
            Style::Numeric => out.push_str(&format!(":{}", slot + 1)),
            Style::Named => out.push_str(&format!(":p{}", slot + 1)),
            Style::Pyformat => out.push_str(&format!("%(p{})s", slot + 1)),
        }
    }
    if !numbered && positional != n_params {
        return Err(format!(
            "{positional} placeholders for {n_params} parameters in the rewritten SQL"
        ));
    }
    push_text(&mut out, sql.get(copied..).unwrap_or_default(), style);
    if style.addressed() {
        order = (0..n_params).collect();
    }
    Ok((out, order))
}

fn push_text(out: &mut String, text: &str, style: Style) {
    if matches!(style, Style::Format | Style::Pyformat) {
        out.push_str(&text.replace('%', "%%"));
    } else {
        out.push_str(text);
    }
}

/// Byte offset of each line's start.
fn line_starts(sql: &str) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
    starts
}

/// The byte offset of a 1-based line and column (columns count characters).
fn offset(sql: &str, lines: &[usize], line: u64, column: u64) -> Option<usize> {
    let line_start = *lines.get(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let col = usize::try_from(column).ok()?.checked_sub(1)?;
    let rest = sql.get(line_start..)?;
    rest.char_indices().nth(col).map(|(i, _)| line_start + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_to_format_keeps_literals() {
        let sql = "SELECT '$1', 'a%' FROM t WHERE a = $2 AND b = $1 AND c = $2";
        let (out, order) = convert(sql, Dialect::Postgres, 2, Style::Format).unwrap();
        assert_eq!(
            out,
            "SELECT '$1', 'a%%' FROM t WHERE a = %s AND b = %s AND c = %s"
        );
        assert_eq!(order, vec![1, 0, 1]);
        let (out, order) = convert(sql, Dialect::Postgres, 2, Style::Pyformat).unwrap();
        assert_eq!(
            out,
            "SELECT '$1', 'a%%' FROM t WHERE a = %(p2)s AND b = %(p1)s AND c = %(p2)s"
        );
        assert_eq!(order, vec![0, 1]);
    }

    #[test]
    fn sqlite_qmark_to_named() {
        let sql = "SELECT '?' FROM t WHERE a = ?\n AND \"?\" = ?";
        let (out, order) = convert(sql, Dialect::Sqlite, 2, Style::Named).unwrap();
        assert_eq!(out, "SELECT '?' FROM t WHERE a = :p1\n AND \"?\" = :p2");
        assert_eq!(order, vec![0, 1]);
        let (out, _) = convert(sql, Dialect::Sqlite, 2, Style::Qmark).unwrap();
        assert_eq!(out, sql);
    }

    #[test]
    fn mismatches_are_refused() {
        assert!(convert("SELECT $3", Dialect::Postgres, 2, Style::Qmark).is_err());
        assert!(convert("SELECT ?", Dialect::Sqlite, 2, Style::Qmark).is_err());
        assert!(convert("SELECT ?, ?", Dialect::Sqlite, 1, Style::Qmark).is_err());
    }

    #[test]
    fn multibyte_text_before_a_placeholder() {
        let sql = "SELECT 'é€😀' AS \"ü\", x FROM t WHERE a = $1";
        let (out, _) = convert(sql, Dialect::Postgres, 1, Style::Qmark).unwrap();
        assert_eq!(out, "SELECT 'é€😀' AS \"ü\", x FROM t WHERE a = ?");
    }
}
