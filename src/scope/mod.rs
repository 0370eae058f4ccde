//! Name resolution, and nothing else: which relation a table name in a
//! query binds to — a CTE in scope or a base table. It knows SQL's
//! visibility rules, not the policy; the rewrite, the verifier and
//! saved-question loading all ask it, so that there is one answer.
//!
//! The rules (checked on PostgreSQL 15, MariaDB 10.11 and SQLite 3):
//! - a query's CTEs are visible to its body, and to its subqueries at any
//!   depth unless an inner CTE of the same name shadows them;
//! - a CTE body sees the CTEs defined before it; with `WITH RECURSIVE` it
//!   also sees itself and the ones after it (all three databases accept
//!   forward references there);
//! - without `RECURSIVE`, a name of a later CTE is a base table on
//!   PostgreSQL and MariaDB, while SQLite takes it for the CTE. Taking it for
//!   a base table is the safe reading: it is then sandboxed, and the
//!   rewritten query no longer holds the name at all;
//! - a qualified name (`schema.table`) is never a CTE;
//! - a name that matches a CTE only loosely (other case where the database
//!   compares exactly, a Unicode look-alike) is refused: reading it as one
//!   thing while the database reads the other would leak.

use std::borrow::Cow;

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart, Query, With};

use crate::dialect::{unicode_lower, Dialect};
use crate::error::{Error, Result};

/// What a table name in FROM binds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binding<'n> {
    /// A CTE in scope (its body is walked where it is defined).
    Cte,
    /// A base table: schema as written (if any) and table name.
    Table {
        /// The schema part, when the name is qualified.
        schema: Option<&'n Ident>,
        /// The table part.
        name: &'n Ident,
    },
}

/// One WITH clause's names: (strict key, loose key), in definition order,
/// and how many of them are visible at the current point of the walk.
#[derive(Debug, Default)]
struct Frame {
    names: Vec<(String, String)>,
    visible: usize,
}

/// The CTEs in scope at the current point of a walk, innermost last.
///
/// A walk calls [`Ctes::enter`] for each query (with its WITH clause),
/// [`Ctes::enter_cte_body`] before walking CTE `i`'s body,
/// [`Ctes::enter_body`] before walking the query's own body, and
/// [`Ctes::leave`] when the query ends.
#[derive(Debug, Default)]
pub(crate) struct Ctes {
    frames: Vec<Frame>,
    /// Frames popped, kept so that their vectors are reused.
    spare: Vec<Frame>,
}

impl Ctes {
    /// An empty scope (top level).
    pub fn new() -> Self {
        Ctes::default()
    }

    /// Forgets everything (for reuse).
    pub fn clear(&mut self) {
        while let Some(f) = self.frames.pop() {
            self.recycle(f);
        }
    }

    fn recycle(&mut self, mut f: Frame) {
        f.names.clear();
        f.visible = 0;
        self.spare.push(f);
    }

    /// Enters a query with `with` as its WITH clause. None of its names is
    /// visible yet. Refuses a name defined twice in one WITH clause.
    pub fn enter(&mut self, with: Option<&With>, dialect: Dialect) -> Result<()> {
        let mut frame = self.spare.pop().unwrap_or_default();
        if let Some(with) = with {
            for cte in &with.cte_tables {
                let strict = dialect.cte_key(&cte.alias.name);
                if frame.names.iter().any(|(s, _)| *s == strict) {
                    let name = cte.alias.name.to_string();
                    self.recycle(frame);
                    return Err(Error::unsupported(format!(
                        "WITH query name `{name}` specified more than once"
                    )));
                }
                let loose = unicode_lower(&cte.alias.name.value).into_owned();
                frame.names.push((strict.into_owned(), loose));
            }
        }
        self.frames.push(frame);
        Ok(())
    }

    /// Before walking the body of CTE `i` of the innermost query: the
    /// CTEs before it are visible, and with `recursive` all of them.
    pub fn enter_cte_body(&mut self, i: usize, recursive: bool) {
        if let Some(f) = self.frames.last_mut() {
            f.visible = if recursive { f.names.len() } else { i };
        }
    }

    /// Before walking the innermost query's own body (and ORDER BY, LIMIT…):
    /// all its CTEs are visible.
    pub fn enter_body(&mut self) {
        if let Some(f) = self.frames.last_mut() {
            f.visible = f.names.len();
        }
    }

    /// Leaves the innermost query.
    pub fn leave(&mut self) {
        if let Some(f) = self.frames.pop() {
            self.recycle(f);
        }
    }

    /// Whether the stack is empty (no query entered).
    pub fn is_empty(&self) -> bool {
        self.frames.iter().all(|f| f.names.is_empty())
    }

    /// Whether a one-part name is a CTE visible here; an error for a name
    /// that only loosely matches one.
    pub fn is_cte(&self, name: &Ident, dialect: Dialect) -> Result<bool> {
        if self.is_empty() {
            return Ok(false);
        }
        let strict = dialect.cte_key(name);
        let visible = || {
            self.frames
                .iter()
                .rev()
                .flat_map(|f| f.names.get(..f.visible).unwrap_or(&[]).iter())
        };
        if visible().any(|(s, _)| *s == strict) {
            return Ok(true);
        }
        // Loose matches are checked against every name of every frame, the
        // invisible ones included: a near-miss is refused either way.
        let loose: Cow<'_, str> = unicode_lower(&name.value);
        if let Some((s, _)) = self
            .frames
            .iter()
            .flat_map(|f| f.names.iter())
            .find(|(s, l)| *l == loose && *s != strict)
        {
            return Err(Error::unsupported(format!(
                "the table name `{strict}`, which differs from the CTE `{s}` only in case or look-alike characters (rename one)"
            )));
        }
        Ok(false)
    }

    /// What a table name binds to. Computed name parts and names of three
    /// or more parts (catalogs) are refused.
    pub fn resolve<'n>(&self, name: &'n ObjectName, dialect: Dialect) -> Result<Binding<'n>> {
        let (schema, table) = table_name(name)?;
        if schema.is_none() && self.is_cte(table, dialect)? {
            return Ok(Binding::Cte);
        }
        Ok(Binding::Table {
            schema,
            name: table,
        })
    }
}

/// Scope for a visitor: sqlparser's visitors call `pre_visit_query` and
/// `post_visit_query` for every query, CTE bodies first; [`Tracker::enter`]
/// and [`Tracker::leave`] there keep [`Ctes`] right (a query is recognised
/// as CTE `i` of the enclosing one by its address).
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    ctes: Ctes,
    /// Per query entered: its address, its CTE bodies' addresses and
    /// whether its WITH is recursive.
    frames: Vec<(*const Query, Vec<*const Query>, bool)>,
}

impl Tracker {
    /// An empty scope.
    pub fn new() -> Self {
        Tracker::default()
    }

    /// From `pre_visit_query`.
    pub fn enter(&mut self, q: &Query, dialect: Dialect) -> Result<()> {
        let ptr = q as *const Query;
        if let Some((_, ctes, recursive)) = self.frames.last() {
            if let Some(i) = ctes.iter().position(|p| *p == ptr) {
                self.ctes.enter_cte_body(i, *recursive);
            }
        }
        self.ctes.enter(q.with.as_ref(), dialect)?;
        let bodies: Vec<*const Query> = q
            .with
            .as_ref()
            .map(|w| {
                w.cte_tables
                    .iter()
                    .map(|c| &*c.query as *const Query)
                    .collect()
            })
            .unwrap_or_default();
        if bodies.is_empty() {
            self.ctes.enter_body();
        }
        let recursive = q.with.as_ref().is_some_and(|w| w.recursive);
        self.frames.push((ptr, bodies, recursive));
        Ok(())
    }

    /// From `post_visit_query` of a query passed to [`Tracker::enter`].
    pub fn leave(&mut self, q: &Query) -> Result<()> {
        let ptr = q as *const Query;
        match self.frames.pop() {
            Some((p, _, _)) if p == ptr => {}
            _ => {
                return Err(Error::Verification(
                    "the scope walk left a query it never entered".into(),
                ))
            }
        }
        self.ctes.leave();
        // After the enclosing query's last CTE body comes its own body.
        if let Some((_, ctes, _)) = self.frames.last() {
            if ctes.last() == Some(&ptr) {
                self.ctes.enter_body();
            }
        }
        Ok(())
    }

    /// What a table name binds to here.
    pub fn resolve<'n>(&self, name: &'n ObjectName, dialect: Dialect) -> Result<Binding<'n>> {
        self.ctes.resolve(name, dialect)
    }
}

/// The (schema, table) identifiers of a table name. Computed name parts
/// and catalog-qualified names are refused.
pub(crate) fn table_name(name: &ObjectName) -> Result<(Option<&Ident>, &Ident)> {
    fn ident(p: &ObjectNamePart) -> Option<&Ident> {
        match p {
            ObjectNamePart::Identifier(i) => Some(i),
            ObjectNamePart::Function(_) => None,
        }
    }
    let computed = || Error::unsupported(format!("the computed table name `{name}`"));
    match name.0.as_slice() {
        [t] => Ok((None, ident(t).ok_or_else(computed)?)),
        [s, t] => Ok((
            Some(ident(s).ok_or_else(computed)?),
            ident(t).ok_or_else(computed)?,
        )),
        parts => {
            if parts.iter().any(|p| ident(p).is_none()) {
                return Err(computed());
            }
            Err(Error::unsupported(format!(
                "the catalog-qualified name `{name}`"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::{Query, Statement};
    use sqlparser::parser::Parser;

    fn with_of(sql: &str) -> Query {
        match Parser::parse_sql(Dialect::Postgres.parser(), sql)
            .unwrap()
            .remove(0)
        {
            Statement::Query(q) => *q,
            _ => unreachable!(),
        }
    }

    #[test]
    fn visibility_follows_definition_order_unless_recursive() {
        let q = with_of("WITH a AS (SELECT 1), b AS (SELECT 2) SELECT 3");
        let with = q.with.as_ref().unwrap();
        let mut c = Ctes::new();
        c.enter(Some(with), Dialect::Postgres).unwrap();
        c.enter_cte_body(0, false);
        assert!(!c.is_cte(&Ident::new("a"), Dialect::Postgres).unwrap());
        assert!(!c.is_cte(&Ident::new("b"), Dialect::Postgres).unwrap());
        c.enter_cte_body(1, false);
        assert!(c.is_cte(&Ident::new("a"), Dialect::Postgres).unwrap());
        assert!(!c.is_cte(&Ident::new("b"), Dialect::Postgres).unwrap());
        c.enter_cte_body(0, true);
        assert!(c.is_cte(&Ident::new("b"), Dialect::Postgres).unwrap());
        c.enter_body();
        assert!(c.is_cte(&Ident::new("A"), Dialect::Postgres).unwrap());
        // Quoted upper case is another name on PostgreSQL, and a near miss.
        assert!(c
            .is_cte(&Ident::with_quote('"', "A"), Dialect::Postgres)
            .is_err());
        c.leave();
        assert!(!c.is_cte(&Ident::new("a"), Dialect::Postgres).unwrap());
    }

    #[test]
    fn qualified_names_are_never_ctes() {
        let q = with_of("WITH t AS (SELECT 1) SELECT * FROM public.t");
        let mut c = Ctes::new();
        c.enter(q.with.as_ref(), Dialect::Postgres).unwrap();
        c.enter_body();
        let name = ObjectName::from(vec![Ident::new("public"), Ident::new("t")]);
        assert!(matches!(
            c.resolve(&name, Dialect::Postgres).unwrap(),
            Binding::Table {
                schema: Some(_),
                ..
            }
        ));
        let bare = ObjectName::from(vec![Ident::new("t")]);
        assert_eq!(c.resolve(&bare, Dialect::Postgres).unwrap(), Binding::Cte);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let q = with_of("WITH a AS (SELECT 1), A AS (SELECT 2) SELECT 3");
        assert!(Ctes::new()
            .enter(q.with.as_ref(), Dialect::Postgres)
            .is_err());
    }
}
