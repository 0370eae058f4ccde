//! sqlsandbox: a row- and column-level security compiler for SQL analytics.
//!
//! A query service hands it a query and the principal asking; it hands back
//! SQL in which every protected table is replaced by its sandbox.
//!
//! ```
//! use sqlsandbox::{Options, Policy, Principal};
//! let policy = Policy::from_yaml(r#"
//! version: 1
//! databases:
//!   shop: {dialect: postgres, tables: {orders: {columns: {id: integer, tenant_id: integer}}}}
//! groups:
//!   customers:
//!     data: {shop: {public: {orders: {sandbox: {column: tenant_id, attribute: tenant}}}}}
//!     native: {shop: true}
//! users:
//!   alice: {groups: [customers], attributes: {tenant: 42}}
//! "#, "example.yaml").unwrap();
//! let alice = Principal::from_user(&policy, "alice").unwrap();
//! let out = policy.rewrite(&alice, "SELECT count(*) FROM orders", &Options::default()).unwrap();
//! assert_eq!(out.sql, "SELECT count(*) FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS orders");
//! // A condition that could fail on another tenant's row: the sandbox is
//! // fenced, and the row-safe part moves inside it (`fence: auto`).
//! let out = policy.rewrite(&alice, "SELECT id FROM orders WHERE id = 5 AND 1 / id > 0", &Options::default()).unwrap();
//! assert_eq!(out.sql, "SELECT id FROM (SELECT * FROM public.orders WHERE (tenant_id = 42) AND (orders.id = 5) OFFSET 0) AS orders WHERE id = 5 AND 1 / id > 0");
//! ```
//!
//! Pipeline (one module per stage, data flows one way):
//! `policy` → `principal` → `access` → `emit` (front end: parse) → `rewrite`
//! (scope walk, sandboxes, check) → `emit` (parameters, printing).

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod access;
pub mod apikey;
pub(crate) mod bind;
pub mod builder;
pub mod cache;
mod dialect;
mod emit;
mod error;
pub mod explain;
pub mod export;
mod frontend;
pub(crate) mod functions;
pub mod handle;
mod input;
#[cfg(feature = "live")]
pub mod introspect;
pub mod lint;
mod pipeline;
pub mod policy;
pub mod policydiff;
#[cfg(feature = "cli")]
pub mod policytest;
mod principal;
mod rewrite;
pub mod routing;
#[cfg(feature = "schema")]
pub mod schema;
mod scope;
#[cfg(feature = "serve")]
pub mod serve;
pub mod suggest;
mod value;
mod verify;
pub mod who;
mod yaml;

pub use bind::BoundParam;
pub use cache::{CacheStats, RewriteCache};
pub use dialect::{Dialect, Fence};
pub use error::{Error, Location, Result};
pub use handle::PolicyHandle;
pub use pipeline::{Options, Rewritten};
pub use policy::{FenceMode, Policy};
pub use principal::{AttributeValue, Principal, Scalar};
pub use rewrite::{Applied, Fencing};

impl Policy {
    /// Rewrites one native SQL query for `principal`.
    ///
    /// Fails closed: anything not understood well enough to prove safe is
    /// refused with an [`Error`] whose [`Error::code`] is stable.
    pub fn rewrite(&self, principal: &Principal, sql: &str, opts: &Options) -> Result<Rewritten> {
        pipeline::rewrite_sql(self, principal, sql, opts)
    }

    /// Re-checks SQL that [`Policy::rewrite`] produced (with literals, not
    /// bind parameters) for `principal`: parses the text again and proves
    /// that every read of a protected table sits inside a sandbox subquery
    /// identical to the one sqlsandbox builds for that principal. Used by
    /// the tests, the property tests and the fuzzer; also useful to audit
    /// stored SQL.
    pub fn recheck(&self, principal: &Principal, sql: &str, opts: &Options) -> Result<()> {
        pipeline::recheck(self, principal, sql, opts)
    }

    /// Runs saved question `name` for `principal`: the principal needs view
    /// permission on the question's collection (native SQL permission is not
    /// needed), `values` bind the question's `{{variables}}`, and the SQL is
    /// then sandboxed exactly like native SQL — a saved SQL question never
    /// shows more than the principal's sandboxes allow.
    pub fn rewrite_question(
        &self,
        principal: &Principal,
        name: &str,
        values: &std::collections::BTreeMap<String, AttributeValue>,
        opts: &Options,
    ) -> Result<Rewritten> {
        pipeline::rewrite_saved_question(self, principal, name, values, opts)
    }

    /// Compiles a query-builder question (MBQL-like JSON, see
    /// [`builder`]) to SQL in the database's dialect and sandboxes it like
    /// native SQL. No native SQL permission is needed — groups without it
    /// may send builder questions — but every table read, joined, reached
    /// through a foreign key or behind a saved question is sandboxed, and
    /// a `source-question` needs view permission on its collection.
    ///
    /// Malformed questions fail with [`Error::Builder`] (`SB104`), whose
    /// path names the bad node (`$.query.filter[1][1]`); operators the
    /// dialect lacks fail with [`Error::Unsupported`].
    pub fn rewrite_builder(
        &self,
        principal: &Principal,
        question: &serde_json::Value,
        opts: &Options,
    ) -> Result<Rewritten> {
        pipeline::rewrite_builder(self, principal, question, opts)
    }
}

/// Compile-time proof that the compiled policy can be shared across threads.
#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Policy>();
    is::<Principal>();
    is::<PolicyHandle>();
}
