//! Building sqlparser AST nodes: literals, column references, operators
//! (parenthesised in the tree), function calls, and constant templates
//! parsed once per dialect with `__sbN` markers replaced by sub-trees.
//!
//! Templates are constant text written here, never user input: user values
//! only ever enter the tree as nodes (literals built by [`Binder`], column
//! identifiers from the policy), so nothing is spliced into SQL text.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Mutex, OnceLock};

use sqlparser::ast::{
    BinaryOperator, CaseWhen, DateTimeField, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, Interval, ObjectName, ObjectNamePart,
    UnaryOperator, Value, VisitMut, VisitorMut,
};
use sqlparser::parser::{Parser, ParserOptions};

use crate::bind::{Binder, Target};
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::value::Scalar;

/// Prefix of template markers: `__sb0` is replaced by the first argument.
const MARKER: &str = "__sb";

fn cache() -> &'static Mutex<HashMap<(Dialect, &'static str), Expr>> {
    static C: OnceLock<Mutex<HashMap<(Dialect, &'static str), Expr>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Parses the constant expression `text` in `dialect` (cached) and replaces
/// each marker `__sbN` by `args[N]`.
///
/// Parsing with the target dialect gives exactly the tree the dialect's
/// parser produces for that text, so the printed SQL parses back to it.
pub(super) fn template(dialect: Dialect, text: &'static str, args: Vec<Expr>) -> Result<Expr> {
    let parsed = {
        let mut c = cache()
            .lock()
            .map_err(|_| Error::Verification("template cache poisoned".into()))?;
        match c.get(&(dialect, text)) {
            Some(e) => e.clone(),
            None => {
                let e = Parser::new(dialect.parser())
                    .with_options(ParserOptions::new().with_unescape(false))
                    .try_with_sql(text)
                    .and_then(|mut p| p.parse_expr())
                    .map_err(|e| {
                        Error::Verification(format!("builder template `{text}` ({dialect}): {e}"))
                    })?;
                c.insert((dialect, text), e.clone());
                e
            }
        }
    };
    let mut out = parsed;
    struct Fill {
        args: Vec<Expr>,
        missing: bool,
    }
    impl VisitorMut for Fill {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Expr::Identifier(id) = e {
                if id.quote_style.is_none() {
                    if let Some(n) = id.value.strip_prefix(MARKER) {
                        match n.parse::<usize>().ok().and_then(|i| self.args.get(i)) {
                            Some(a) => *e = a.clone(),
                            None => self.missing = true,
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut fill = Fill {
        args,
        missing: false,
    };
    let _ = out.visit(&mut fill);
    if fill.missing {
        return Err(Error::Verification(format!(
            "builder template `{text}` has a marker without an argument"
        )));
    }
    Ok(out)
}

/// A whole number; negative numbers are a unary minus, as the parser reads them.
pub(super) fn int(i: i64) -> Expr {
    let n = Expr::value(Value::Number(i.unsigned_abs().to_string(), false));
    if i < 0 {
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: Box::new(n),
        }
    } else {
        n
    }
}

/// A number from its decimal text (`-12.5`, `1e3`).
pub(super) fn number(text: &str) -> Expr {
    match text.strip_prefix('-') {
        Some(pos) => Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: Box::new(Expr::value(Value::Number(pos.to_string(), false))),
        },
        None => Expr::value(Value::Number(text.to_string(), false)),
    }
}

/// A decimal literal for `x` (always with a fraction or exponent, so that
/// division by it is never integer division).
pub(super) fn decimal(x: f64) -> Expr {
    let mut s = format!("{x}");
    if !s.contains(['.', 'e', 'E']) {
        s.push_str(".0");
    }
    number(&s)
}

/// A string literal quoted for the dialect.
pub(super) fn string(dialect: Dialect, s: &str) -> Result<Expr> {
    Binder::new(dialect, false).bind(
        &Scalar::Text(s.to_string()),
        None,
        &Target {
            attribute: "(query-builder value)",
            what: &|| "a query-builder literal".into(),
        },
    )
}

/// `TRUE` / `FALSE` (`1` / `0` in T-SQL, which has no boolean literals).
pub(super) fn boolean(d: Dialect, b: bool) -> Expr {
    if d == Dialect::Mssql {
        return Expr::value(Value::Number(if b { "1" } else { "0" }.into(), false));
    }
    Expr::value(Value::Boolean(b))
}

/// `NULL`.
pub(super) fn null() -> Expr {
    Expr::value(Value::Null)
}

/// `alias.column`.
pub(super) fn column(dialect: Dialect, alias: &str, name: &str) -> Expr {
    Expr::CompoundIdentifier(vec![dialect.ident(alias), dialect.ident(name)])
}

/// Whether `e` prints as one unit that no operator can bind into.
fn atomic(e: &Expr) -> bool {
    match e {
        Expr::Identifier(_)
        | Expr::CompoundIdentifier(_)
        | Expr::Value(_)
        | Expr::Function(_)
        | Expr::Nested(_)
        | Expr::Cast { .. }
        | Expr::Extract { .. }
        | Expr::Case { .. }
        | Expr::Substring { .. }
        | Expr::Trim { .. }
        | Expr::Ceil { .. }
        | Expr::Floor { .. }
        | Expr::Interval(_) => true,
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => matches!(expr.as_ref(), Expr::Value(_)),
        _ => false,
    }
}

/// `(e)` unless `e` is atomic.
pub(super) fn paren(e: Expr) -> Expr {
    if atomic(&e) {
        e
    } else {
        Expr::Nested(Box::new(e))
    }
}

/// `l op r`, each compound operand parenthesised in the tree, so that the
/// printed text can never regroup (`a OR b AND c`).
pub(super) fn binop(l: Expr, op: BinaryOperator, r: Expr) -> Expr {
    Expr::BinaryOp {
        left: Box::new(paren(l)),
        op,
        right: Box::new(paren(r)),
    }
}

/// Folds `parts` with `op` (`a AND b AND c`, each part parenthesised).
pub(super) fn fold(parts: Vec<Expr>, op: BinaryOperator) -> Option<Expr> {
    let mut it = parts.into_iter();
    let first = it.next()?;
    Some(it.fold(paren(first), |acc, p| Expr::BinaryOp {
        left: Box::new(acc),
        op: op.clone(),
        right: Box::new(paren(p)),
    }))
}

/// `NOT (e)`.
pub(super) fn not(e: Expr) -> Expr {
    Expr::UnaryOp {
        op: UnaryOperator::Not,
        expr: Box::new(Expr::Nested(Box::new(e))),
    }
}

/// `name(args…)`, the tree the parser builds for a plain call.
pub(super) fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// `CASE WHEN c THEN r … [ELSE e] END`.
pub(super) fn case(whens: Vec<(Expr, Expr)>, otherwise: Option<Expr>) -> Expr {
    Expr::Case {
        case_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        end_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: whens
            .into_iter()
            .map(|(condition, result)| CaseWhen { condition, result })
            .collect(),
        else_result: otherwise.map(Box::new),
    }
}

/// `INTERVAL value [field]`.
pub(super) fn interval(value: Expr, field: Option<DateTimeField>) -> Expr {
    Expr::Interval(Interval {
        value: Box::new(value),
        leading_field: field,
        leading_precision: None,
        last_field: None,
        fractional_seconds_precision: None,
    })
}
