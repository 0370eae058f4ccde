//! Database routing and connection impersonation: which destination
//! database runs the query, and as which database role.

use sqlparser::ast::Ident;

use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::{Database, Policy, METABASE_ROUTER, ROUTER};
use crate::principal::{AttributeValue, Principal, Scalar};

/// Where and as whom a query runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Route {
    /// The destination slug; `None` means the router database itself.
    pub destination: Option<String>,
    /// The database role to run as (connection impersonation).
    pub role: Option<String>,
    /// The schema the destination's tables are in (schema-per-tenant):
    /// the rewritten SQL names it instead of the router's.
    pub schema: Option<String>,
    /// The catalog the destination's tables are in (catalog-per-tenant,
    /// three-part names): the rewritten SQL names it before the schema.
    pub catalog: Option<String>,
}

impl Route {
    /// Whether the rewritten SQL names other relations than the router's:
    /// a schema or a catalog destination.
    pub fn relocates(&self) -> bool {
        self.schema.is_some() || self.catalog.is_some()
    }
}

/// The inverse of [`relocate`] for [`crate::Policy::recheck`]: the SQL of a
/// schema or catalog destination is proven as the router's SQL it was
/// printed from. Every qualified relation must name the destination (its
/// schema; its catalog and the router's schema); one that names the
/// router's own relations, or qualifies them otherwise, is refused, and so
/// is an unqualified name that is not a CTE of the query (it would resolve
/// in the connection's default schema or catalog, the router's).
pub(crate) fn unrelocate<N: sqlparser::ast::VisitMut + sqlparser::ast::Visit>(
    node: &mut N,
    db: &Database,
    dialect: Dialect,
    route: &Route,
) -> Result<()> {
    use sqlparser::ast::ObjectNamePart;
    if !route.relocates() {
        return Ok(());
    }
    let Some(router) = db.schemas.iter().next() else {
        return Ok(());
    };
    let ctes = cte_names(node, dialect);
    let norm = |s: &str| dialect.normalize(&dialect.ident(s)).into_owned();
    let schema = route.schema.as_deref().map(norm);
    let catalog = route.catalog.as_deref().map(norm);
    let mut bad = None;
    let _ = sqlparser::ast::visit_relations_mut(node, |name| {
        let key = |i: &Ident| dialect.normalize(i).into_owned();
        let ok = match (name.0.as_mut_slice(), &catalog) {
            ([ObjectNamePart::Identifier(t)], _) => ctes.contains(&key(t)),
            ([ObjectNamePart::Identifier(c), ObjectNamePart::Identifier(s), _], Some(cat)) => {
                let want = schema.as_deref().unwrap_or(router.as_str());
                if key(c) == *cat && key(s) == want {
                    *s = dialect.ident(router);
                    true
                } else {
                    false
                }
            }
            ([ObjectNamePart::Identifier(s), _], None) => match &schema {
                Some(want) if key(s) == *want => {
                    *s = dialect.ident(router);
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if ok {
            if catalog.is_some() && name.0.len() == 3 {
                name.0.remove(0);
            }
            std::ops::ControlFlow::Continue(())
        } else {
            bad = Some(name.to_string());
            std::ops::ControlFlow::Break(())
        }
    });
    let target = match (&route.catalog, &route.schema) {
        (Some(c), Some(s)) => format!("the catalog `{c}` (schema `{s}`)"),
        (Some(c), None) => format!("the catalog `{c}`"),
        (None, Some(s)) => format!("the schema `{s}`"),
        (None, None) => String::new(),
    };
    match bad {
        Some(name) => Err(Error::Verification(format!(
            "`{name}` is not a table of this principal's destination: their queries read {target} only, every table named in it"
        ))),
        None => Ok(()),
    }
}

/// The CTE names a query defines anywhere (normalised), for
/// [`unrelocate`]: a one-part relation name must be one of them.
fn cte_names<N: sqlparser::ast::Visit>(
    node: &N,
    dialect: Dialect,
) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    struct Ctes<'a> {
        dialect: Dialect,
        out: &'a mut std::collections::HashSet<String>,
    }
    impl sqlparser::ast::Visitor for Ctes<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &sqlparser::ast::Query) -> std::ops::ControlFlow<()> {
            if let Some(w) = &q.with {
                for c in &w.cte_tables {
                    self.out
                        .insert(self.dialect.normalize(&c.alias.name).into_owned());
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = node.visit(&mut Ctes {
        dialect,
        out: &mut out,
    });
    out
}

/// Names the destination instead of the router in every relation of
/// `node` that names `db`'s schema (the rewrite names every table it reads
/// with its schema): a schema destination replaces the schema, a catalog
/// destination puts its catalog in front (and its schema, if it has one,
/// in place of the router's). Runs on the proven tree, before printing.
pub(crate) fn relocate<N: sqlparser::ast::VisitMut>(
    node: &mut N,
    db: &Database,
    dialect: Dialect,
    route: &Route,
) {
    use sqlparser::ast::ObjectNamePart;
    if !route.relocates() {
        return;
    }
    let _ = sqlparser::ast::visit_relations_mut(node, |name| {
        let n = name.0.len();
        let ours = matches!(
            n.checked_sub(2).and_then(|k| name.0.get(k)),
            Some(ObjectNamePart::Identifier(i)) if db.schemas.contains(dialect.normalize(i).as_ref())
        );
        if ours {
            if let (Some(to), Some(ObjectNamePart::Identifier(i))) = (
                &route.schema,
                n.checked_sub(2).and_then(|k| name.0.get_mut(k)),
            ) {
                *i = dialect.ident(to);
            }
            if let Some(cat) = &route.catalog {
                let part = ObjectNamePart::Identifier(dialect.ident(cat));
                if n == 3 {
                    if let Some(first) = name.0.first_mut() {
                        *first = part;
                    }
                } else if n == 2 {
                    name.0.insert(0, part);
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

fn single<'a>(v: &'a AttributeValue, attribute: &str, what: &str) -> Result<&'a Scalar> {
    match v {
        AttributeValue::Single(s) => Ok(s),
        AttributeValue::Many(vs) => match vs.as_slice() {
            [s] => Ok(s),
            _ => Err(Error::AttributeType {
                attribute: attribute.to_string(),
                value: v.to_string(),
                ty: "single value".into(),
                target: what.to_string(),
            }),
        },
    }
}

fn text(s: &Scalar) -> String {
    match s {
        Scalar::Text(t) => t.clone(),
        other => other.to_string(),
    }
}

/// Decides the destination and the role for `principal` on `db`.
///
/// Routing order (as Metabase's database routing): an anonymous principal
/// is refused unless the routing allows it (then it uses the router
/// database); the value `__ROUTER__` (or `__METABASE_ROUTER__`) uses it; a
/// principal without the attribute whose groups the routing maps goes to
/// their destination (several different ones are refused); an
/// administrator without the attribute uses it; a non-administrator without
/// the attribute, or with a slug that names no destination, is refused.
pub fn route(policy: &Policy, principal: &Principal, db: &Database) -> Result<Route> {
    let mut out = Route::default();
    if let Some(r) = &db.routing {
        let refuse = |reason: String| Error::Routing {
            database: db.name.clone(),
            reason,
        };
        match principal.attribute(&r.attribute) {
            _ if principal.is_anonymous() && r.allow_anonymous => {}
            _ if principal.is_anonymous() => {
                return Err(refuse(
                    "an anonymous principal (static embedding) cannot be routed: nobody says whose database it is (the routing's `allow_anonymous: true` runs it on the router database)".to_string(),
                ))
            }
            None if principal.groups().iter().any(|g| r.groups.contains_key(g)) => {
                let mut slugs: Vec<&String> = principal
                    .groups()
                    .iter()
                    .filter_map(|g| r.groups.get(g))
                    .collect();
                slugs.sort();
                slugs.dedup();
                match slugs.as_slice() {
                    [slug] if **slug == ROUTER || **slug == METABASE_ROUTER => {}
                    [slug] => {
                        out.schema = r.schemas.get(*slug).cloned();
                        out.catalog = r.catalogs.get(*slug).cloned();
                        out.destination = Some((*slug).clone());
                    }
                    _ => {
                        return Err(refuse(format!(
                            "{}'s groups route it to several destinations ({}); give it the `{}` attribute to choose",
                            principal.name(),
                            slugs.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                            r.attribute
                        )))
                    }
                }
            }
            None if principal.is_admin() => {}
            None => {
                return Err(refuse(format!(
                    "{} has no `{}` attribute to choose a destination (destinations: {})",
                    principal.name(),
                    r.attribute,
                    r.destinations
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
            Some(v) => {
                let slug = text(single(v, &r.attribute, "the routing destination")?);
                if slug != ROUTER && slug != METABASE_ROUTER {
                    if !r.destinations.contains_key(&slug) {
                        return Err(refuse(format!(
                            "attribute `{}` is {slug:?}, which names no destination (destinations: {})",
                            r.attribute,
                            r.destinations.keys().cloned().collect::<Vec<_>>().join(", ")
                        )));
                    }
                    out.schema = r.schemas.get(&slug).cloned();
                    out.catalog = r.catalogs.get(&slug).cloned();
                    out.destination = Some(slug);
                }
            }
        }
    }
    if let Some(imp) = &db.impersonation {
        if !principal.is_admin() {
            let refuse = |reason: String| Error::Impersonation {
                database: db.name.clone(),
                reason,
            };
            let sandboxed: Vec<&str> = principal
                .groups()
                .iter()
                .filter(|g| {
                    policy
                        .groups
                        .get(*g)
                        .is_some_and(|gr| gr.sandboxed_dbs.contains(&db.name))
                })
                .map(String::as_str)
                .collect();
            if !sandboxed.is_empty() {
                return Err(refuse(format!(
                    "{} is both impersonated and sandboxed there (groups {}); use one or the other",
                    principal.name(),
                    sandboxed.join(", ")
                )));
            }
            let v = principal.attribute(&imp.attribute).ok_or_else(|| {
                refuse(format!(
                    "{} has no `{}` attribute naming the database role to run as",
                    principal.name(),
                    imp.attribute
                ))
            })?;
            let role = text(single(v, &imp.attribute, "the impersonated role")?);
            validate_role(&role).map_err(|why| refuse(format!("role {role:?} {why}")))?;
            out.role = Some(role);
        }
    }
    Ok(out)
}

/// Role names are identifiers, never SQL: letters, digits and `_ - . @ $`,
/// at most 63 bytes (PostgreSQL's limit).
fn validate_role(role: &str) -> std::result::Result<(), &'static str> {
    if role.is_empty() || role.len() > 63 {
        return Err("must be 1 to 63 bytes long");
    }
    if !role
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@' | '$'))
    {
        return Err("may only contain letters, digits and _ - . @ $");
    }
    Ok(())
}

/// The statement that switches to `role` in `dialect`: PostgreSQL `SET ROLE`
/// (or `SET LOCAL ROLE` inside a transaction), MySQL/MariaDB and ClickHouse
/// `SET ROLE`, Snowflake `USE ROLE`, SQL Server `EXECUTE AS USER`; the other
/// engines have none ([`Dialect::impersonation`] says why) and are refused.
pub fn role_statement(dialect: Dialect, role: &str, local: bool) -> Result<String> {
    validate_role(role).map_err(|why| Error::Impersonation {
        database: String::new(),
        reason: format!("role {role:?} {why}"),
    })?;
    let quoted = Ident::with_quote(dialect.identifier_quote(), role);
    match (dialect, dialect.impersonation()) {
        (_, Err(why)) => Err(Error::unsupported(format!(
            "impersonation on {dialect}: {why}"
        ))),
        (Dialect::Postgres, Ok(_)) if local => Ok(format!("SET LOCAL ROLE {quoted}")),
        // The role's characters were checked above: no quote can occur.
        (Dialect::Mssql, Ok(stmt)) => Ok(format!("{stmt} = '{role}'")),
        (_, Ok(stmt)) => Ok(format!("{stmt} {quoted}")),
    }
}
