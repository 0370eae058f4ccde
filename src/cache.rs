//! A rewrite cache for query services: the same dashboard card asked by
//! many viewers is parsed, rewritten and verified once.
//!
//! An entry is keyed by the policy's digest, the query text, the options
//! and everything of the principal the rewrite reads: its groups (in
//! order), whether it is an administrator or anonymous, the route (the
//! destination, its schema or catalog, the impersonated role), and its
//! attributes. With bind parameters ([`Options::params`]) an attribute
//! counts by its *shape* only — one value or a list of `n`, with the kind
//! of each value — because the rewritten SQL then holds placeholders, never
//! values: principals who differ only in their values share the entry, and
//! each gets its own values bound again (coerced as the rewrite coerces
//! them; a value that does not coerce falls back to a full rewrite, which
//! gives the same error). With literals the values are part of the key.
//!
//! What makes sharing sound: every bound parameter records where its value
//! came from ([`crate::bind::Source`]: which attribute and which of its
//! values, or the policy itself), and two parameters share a numbered
//! placeholder only when their sources are equal, so the SQL's text never
//! depends on the values. `tests/cache.rs` checks that a cached answer is
//! always the one a fresh rewrite gives, for generated principals.
//!
//! The cache is bounded by memory (least recently used entries go first),
//! shared by threads, and never holds an answer across policies: the
//! policy's digest is in every key; [`RewriteCache::clear`] empties it.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::bind::{coerce, BoundParam, Source, Target};
use crate::error::Result;
use crate::pipeline::{pick_database, Options, Rewritten};
use crate::principal::{AttributeValue, Principal, Scalar};
use crate::routing::{self, Route};
use crate::Policy;

/// A bounded, thread-safe cache of rewrites (see the module's text).
pub struct RewriteCache {
    entries: quick_cache::sync::Cache<Key, Arc<Rewritten>, Weight>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What the cache has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// Answers served from the cache.
    pub hits: u64,
    /// Answers rewritten (then stored, unless they could not be shared).
    pub misses: u64,
    /// Entries held now.
    pub entries: u64,
    /// Their approximate size in bytes.
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    policy: Box<str>,
    sql: Box<str>,
    options: Box<str>,
    groups: Box<[String]>,
    admin: bool,
    anonymous: bool,
    route: RouteKey,
    attributes: Box<[(String, Attr)]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RouteKey {
    destination: Option<String>,
    role: Option<String>,
    schema: Option<String>,
    catalog: Option<String>,
}

/// An attribute as the key sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Attr {
    /// With bind parameters: one value of this kind.
    One(Kind),
    /// With bind parameters: a list, the kind of each value.
    List(Box<[Kind]>),
    /// With literals: the values themselves.
    Value(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Text,
    Integer,
    Number,
    Bool,
}

fn kind(s: &Scalar) -> Kind {
    match s {
        Scalar::Text(_) => Kind::Text,
        Scalar::Integer(_) => Kind::Integer,
        Scalar::Number(_) => Kind::Number,
        Scalar::Bool(_) => Kind::Bool,
    }
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<Key, Arc<Rewritten>> for Weight {
    fn weight(&self, key: &Key, val: &Arc<Rewritten>) -> u64 {
        let params = val.params.len() * std::mem::size_of::<BoundParam>();
        let applied: usize = val
            .applied
            .iter()
            .map(|a| 128 + a.table.len() + a.alias.len() + a.bindings.len() * 64)
            .sum();
        (256 + key.sql.len() + key.options.len() + val.sql.len() + params + applied) as u64
    }
}

impl RewriteCache {
    /// A cache holding about `max_bytes` of entries.
    pub fn new(max_bytes: u64) -> RewriteCache {
        // quick_cache sizes its tables by the number of items it expects;
        // a rewrite of a dashboard query weighs a few kilobytes.
        let items = usize::try_from(max_bytes / 4096)
            .unwrap_or(usize::MAX)
            .max(16);
        RewriteCache {
            entries: quick_cache::sync::Cache::with_weighter(items, max_bytes, Weight),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// [`Policy::rewrite`], answered from the cache when an entry fits the
    /// principal; the answer is always the one [`Policy::rewrite`] gives.
    /// Refusals are not cached.
    pub fn rewrite(
        &self,
        policy: &Policy,
        principal: &Principal,
        sql: &str,
        opts: &Options,
    ) -> Result<Rewritten> {
        let Some((key, route)) = key(policy, principal, sql, opts) else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return policy.rewrite(principal, sql, opts);
        };
        if let Some(entry) = self.entries.get(&key) {
            if let Some(out) = rebind(policy, principal, &entry, &route, opts) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(out);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let out = policy.rewrite(principal, sql, opts)?;
        // A value the caller gave for this call is not the principal's: an
        // answer holding one is not shared.
        if !out.params.iter().any(|p| p.source == Source::Caller) {
            self.entries.insert(key, Arc::new(out.clone()));
        }
        Ok(out)
    }

    /// Hits, misses and size so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.entries.len() as u64,
            bytes: self.entries.weight(),
        }
    }

    /// Drops every entry (say, when the policy is reloaded).
    pub fn clear(&self) {
        self.entries.clear();
    }
}

/// The key for this call, and the principal's route (needed to bind);
/// `None` when the call cannot be keyed (its route is refused: the
/// rewrite gives the error).
fn key(policy: &Policy, principal: &Principal, sql: &str, opts: &Options) -> Option<(Key, Route)> {
    let db = pick_database(policy, opts.database.as_deref()).ok()?;
    let route = routing::route(policy, principal, db).ok()?;
    let attributes = principal
        .attributes()
        .iter()
        .map(|(name, v)| {
            let a = match (opts.params, v) {
                (true, AttributeValue::Single(s)) => Attr::One(kind(s)),
                (true, AttributeValue::Many(vs)) => Attr::List(vs.iter().map(kind).collect()),
                (false, v) => Attr::Value(format!("{v:?}")),
            };
            (name.to_string(), a)
        })
        .collect();
    let key = Key {
        policy: policy.digest().into(),
        sql: sql.into(),
        options: format!("{opts:?}").into(),
        groups: principal.groups().into(),
        admin: principal.is_admin(),
        anonymous: principal.is_anonymous(),
        route: RouteKey {
            destination: route.destination.clone(),
            role: route.role.clone(),
            schema: route.schema.clone(),
            catalog: route.catalog.clone(),
        },
        attributes,
    };
    Some((key, route))
}

/// The cached answer with this principal's values: every parameter from
/// an attribute is bound again from the principal's value in the same
/// place, the sandboxes' bindings and the fingerprint follow. `None` when
/// a value does not fit (the full rewrite then gives the error).
fn rebind(
    policy: &Policy,
    principal: &Principal,
    entry: &Rewritten,
    route: &Route,
    opts: &Options,
) -> Option<Rewritten> {
    let mut out = entry.clone();
    if !opts.params {
        // The values are in the key: the entry is this principal's.
        return Some(out);
    }
    for p in &mut out.params {
        match &p.source {
            Source::Fixed => {}
            Source::Caller => return None,
            Source::Attribute(name, index) => {
                let value = match (principal.attribute(name)?, index) {
                    (AttributeValue::Single(s), None) => s,
                    (AttributeValue::Many(vs), Some(i)) => vs.get(*i)?,
                    _ => return None,
                };
                let what = String::new;
                let target = Target {
                    attribute: name,
                    what: &what,
                };
                p.value = coerce(value, p.ty, &target).ok()?;
            }
        }
    }
    for a in &mut out.applied {
        for b in &mut a.bindings {
            b.value = principal.attribute(&b.attribute)?.clone();
        }
    }
    out.fingerprint = crate::emit::fingerprint(policy.digest(), &out.database, route, &out.applied);
    Some(out)
}
