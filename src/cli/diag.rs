//! Diagnostics of the command line: errors (`SB…`) and lints (`L…`) in one
//! format, `path:line:col: severity[CODE]: message`, followed by the source
//! line and a caret when the position is known (rendered by
//! annotate-snippets); or, with `--format json`, one JSON document
//! (schema/error.schema.json).

use std::fmt::Write as _;

use annotate_snippets::renderer::{AnsiColor, Effects, Style};
use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

/// How bad a diagnostic is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    fn style(self) -> Style {
        let color = match self {
            Severity::Error => AnsiColor::BrightRed,
            Severity::Warning => AnsiColor::Yellow,
            Severity::Info => AnsiColor::BrightBlue,
        };
        color.on_default().effects(Effects::BOLD)
    }

    fn level(self) -> Level<'static> {
        match self {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
            Severity::Info => Level::INFO,
        }
    }
}

/// A file position (1-based line and column).
#[derive(Clone, Serialize)]
pub struct Position {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

/// One error or lint finding, ready to print.
pub struct Diagnostic<'a> {
    pub severity: Severity,
    pub code: String,
    pub message: String,
    pub position: Option<Position>,
    /// The text of the file `position` points into, for the snippet.
    pub source: Option<&'a str>,
}

impl Diagnostic<'_> {
    /// The text form; `color` adds ANSI styles.
    pub fn to_text(&self, color: bool) -> String {
        let mut out = String::new();
        if let Some(p) = &self.position {
            out.push_str(&p.path);
            if let Some(l) = p.line {
                let _ = write!(out, ":{l}");
                if let Some(c) = p.column {
                    let _ = write!(out, ":{c}");
                }
            }
            out.push_str(": ");
        }
        let head = format!("{}[{}]", self.severity.name(), self.code);
        if color {
            let style = self.severity.style();
            let _ = write!(out, "{style}{head}{style:#}");
        } else {
            out.push_str(&head);
        }
        let _ = write!(out, ": {}", self.message);
        if let Some(snippet) = self.snippet(color) {
            out.push('\n');
            out.push_str(&snippet);
        }
        out
    }

    /// The source line under the position, with a caret under the key (or
    /// the first character of the line when the column is unknown).
    fn snippet(&self, color: bool) -> Option<String> {
        let position = self.position.as_ref()?;
        let line_no = position.line?;
        let line = self.source?.lines().nth(line_no.checked_sub(1)?)?;
        let start = match position.column {
            Some(c) => line
                .char_indices()
                .nth(c.saturating_sub(1))
                .map_or(line.len(), |(i, _)| i),
            None => line.len() - line.trim_start().len(),
        };
        let rest = line.get(start..).unwrap_or("");
        let word = rest
            .char_indices()
            .find(|(_, ch)| matches!(ch, ':' | ',' | '{' | '}' | '[' | ']' | ' '))
            .map_or(rest.len(), |(i, _)| i);
        let end = start
            + if word == 0 {
                rest.chars().next().map_or(0, char::len_utf8)
            } else {
                word
            };
        let report = [Group::with_level(self.severity.level()).element(
            Snippet::source(line)
                .line_start(line_no)
                .annotation(AnnotationKind::Primary.span(start..end)),
        )];
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        Some(renderer.render(&report))
    }

    /// The JSON form: `{"error": {"code", "message", "refusal", "location"}}`
    /// (schema/error.schema.json).
    pub fn to_json(&self, refusal: bool) -> serde_json::Value {
        let mut error = serde_json::json!({
            "code": self.code,
            "message": self.message,
            "refusal": refusal,
        });
        if let (Some(p), Some(obj)) = (&self.position, error.as_object_mut()) {
            obj.insert(
                "location".into(),
                serde_json::to_value(p).unwrap_or_default(),
            );
        }
        serde_json::json!({ "error": error })
    }
}

/// Whether stderr gets colours: a terminal, and `NO_COLOR` unset or empty
/// (<https://no-color.org>).
pub fn stderr_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnostic(source: &str) -> Diagnostic<'_> {
        Diagnostic {
            severity: Severity::Warning,
            code: "L009".into(),
            message: "something".into(),
            position: Some(Position {
                path: "p.yaml".into(),
                line: Some(2),
                column: Some(3),
            }),
            source: Some(source),
        }
    }

    #[test]
    fn one_format_with_snippet_and_caret() {
        let d = diagnostic("version: 1\n  dave: {groups: [g]}\n");
        assert_eq!(
            d.to_text(false),
            "p.yaml:2:3: warning[L009]: something\n  |\n2 |   dave: {groups: [g]}\n  |   ^^^^"
        );
    }

    #[test]
    fn colours_only_when_asked() {
        let d = diagnostic("version: 1\n  dave: {groups: [g]}\n");
        assert!(!d.to_text(false).contains('\u{1b}'));
        assert!(d.to_text(true).contains('\u{1b}'));
    }

    #[test]
    fn positions_past_the_text_print_no_snippet() {
        let mut d = diagnostic("short\n");
        d.position = Some(Position {
            path: "p.yaml".into(),
            line: Some(9),
            column: Some(99),
        });
        assert_eq!(d.to_text(false), "p.yaml:9:99: warning[L009]: something");
        let d = diagnostic("x\n  ümlaut: 1\n");
        assert!(d.to_text(false).contains("^^^^^^"), "{}", d.to_text(false));
    }
}
