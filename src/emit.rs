//! The last stage: number bind parameters in print order, and fingerprint
//! what was applied for result-cache keys.

use std::ops::ControlFlow;

use sha2::{Digest, Sha256};
use sqlparser::ast::{Value, ValueWithSpan};

use crate::bind::{BoundParam, TEMP_PLACEHOLDER};
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::principal::{AttributeValue, Scalar};
use crate::rewrite::Applied;
use crate::routing::Route;

/// Renumbers the temporary placeholders in print order.
pub(crate) fn number_params<Q: sqlparser::ast::VisitMut>(
    q: &mut Q,
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

pub(crate) fn fingerprint(
    policy: &str,
    database: &str,
    route: &Route,
    applied: &[Applied],
) -> String {
    // SHA-256 over a length-prefixed encoding: no two different inputs
    // share an encoding, so equal fingerprints mean equal inputs. The
    // encoding is built in one buffer and hashed once (many small hasher
    // updates cost more than the hashing).
    struct Enc(Vec<u8>);
    impl Enc {
        fn update(&mut self, b: impl AsRef<[u8]>) {
            self.0.extend_from_slice(b.as_ref());
        }
        fn n(&mut self, n: usize) {
            self.update((n as u64).to_le_bytes());
        }
        fn s(&mut self, s: &str) {
            self.n(s.len());
            self.update(s.as_bytes());
        }
        fn opt(&mut self, s: Option<&str>) {
            match s {
                Some(s) => {
                    self.update([1]);
                    self.s(s);
                }
                None => self.update([0]),
            }
        }
        fn scalar(&mut self, v: &Scalar) {
            match v {
                Scalar::Text(t) => {
                    self.update(b"t");
                    self.s(t);
                }
                Scalar::Integer(i) => {
                    self.update(b"i");
                    self.update(i.to_le_bytes());
                }
                Scalar::Number(n) => {
                    self.update(b"n");
                    self.s(n);
                }
                Scalar::Bool(b) => self.update([b'b', u8::from(*b)]),
            }
        }
    }
    let mut e = Enc(Vec::with_capacity(256));
    e.s("sqlsandbox fingerprint 3");
    e.s(policy);
    e.s(database);
    e.opt(route.destination.as_deref());
    e.opt(route.role.as_deref());
    // Where the destination's tables are: the same slug routed to another
    // schema or catalog (a changed policy) reads other rows.
    e.opt(route.schema.as_deref());
    e.opt(route.catalog.as_deref());
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
                    e.update(b"1");
                    e.scalar(v);
                }
                AttributeValue::Many(vs) => {
                    e.update(b"*");
                    e.n(vs.len());
                    for v in vs {
                        e.scalar(v);
                    }
                }
            }
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(&e.0);
    let mut out = String::with_capacity(32);
    for b in digest.iter().take(16) {
        for nibble in [b >> 4, b & 15] {
            out.push(char::from(*HEX.get(usize::from(nibble)).unwrap_or(&b'0')));
        }
    }
    out
}

/// ClickHouse type names are case-sensitive, and sqlparser prints some of
/// the ones it parsed in upper case (`Int64` as `INT64`, `Float64` as
/// `FLOAT64`, `String` as `STRING`), which ClickHouse does not read: they
/// are written as the standard aliases ClickHouse takes for the same types
/// (`BIGINT`, `DOUBLE`, `TEXT`), in casts at any depth of `Nullable`,
/// `LowCardinality` and `Array`.
pub(crate) fn clickhouse_type_names<Q: sqlparser::ast::VisitMut>(q: &mut Q) {
    use sqlparser::ast::{ArrayElemTypeDef, DataType, ExactNumberInfo, Expr};
    fn fix(t: &mut DataType) {
        match t {
            DataType::Int64 => *t = DataType::BigInt(None),
            DataType::Float64 => *t = DataType::Double(ExactNumberInfo::None),
            DataType::String(None) => *t = DataType::Text,
            DataType::Nullable(inner) | DataType::LowCardinality(inner) => fix(inner),
            DataType::Array(
                ArrayElemTypeDef::Parenthesis(inner)
                | ArrayElemTypeDef::ParenthesisNotNull(inner)
                | ArrayElemTypeDef::AngleBracket(inner)
                | ArrayElemTypeDef::SquareBracket(inner, _),
            ) => fix(inner),
            _ => {}
        }
    }
    let _ = sqlparser::ast::visit_expressions_mut(q, |e| {
        if let Expr::Cast { data_type, .. } = e {
            fix(data_type);
        }
        ControlFlow::<()>::Continue(())
    });
}
