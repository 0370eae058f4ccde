//! A policy that can be reloaded while it serves: [`PolicyHandle`].
//!
//! A long-running service (`sqlsandbox serve`, or a Rust service of its
//! own) keeps one handle. Every request takes a [`Snapshot`] with
//! [`PolicyHandle::current`] and uses it to the end, so one request sees
//! one policy even when a reload lands in the middle of it.
//!
//! [`PolicyHandle::reload`] reads and compiles the file beside the policy
//! that serves, then swaps the new one in; readers never wait for a
//! compile (they take a read lock only to clone an [`Arc`]). A file that
//! does not load (a broken edit) changes nothing that serves: the last
//! good policy stays, and the error is kept for [`PolicyHandle::status`]
//! with its code and diagnostics. A file whose policy is identical (same
//! [`Policy::digest`]) is not swapped in again.
//!
//! The handle owns a [`RewriteCache`], emptied on every swap. Its keys hold
//! the policy's digest, so an answer computed under one policy is never
//! served under another even without the clear; the clear frees memory.
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("sqlsandbox-handle-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let path = dir.join("policy.yaml");
//! std::fs::write(&path, "version: 1\ngroups: {g: {}}\n").unwrap();
//! let handle = sqlsandbox::PolicyHandle::load(&path).unwrap();
//! assert_eq!(handle.current().version(), 1);
//! std::fs::write(&path, "version: 1\ngroups: {g: {}, h: {}}\n").unwrap();
//! assert_eq!(handle.reload().unwrap(), sqlsandbox::handle::Reload::Swapped(2));
//! std::fs::write(&path, "version: 1\ngroups: [").unwrap();
//! assert!(handle.reload().is_err());
//! assert_eq!(handle.current().version(), 2); // the last good policy serves
//! assert_eq!(handle.status().last_error.unwrap().code, "SB001");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use crate::cache::RewriteCache;
use crate::error::{Error, Location, Result};
use crate::pipeline::{Options, Rewritten};
use crate::principal::Principal;
use crate::Policy;

/// The rewrite cache's default bound: 64 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// One policy as it was swapped in: what a request uses from start to end.
#[derive(Debug)]
pub struct Snapshot {
    policy: Arc<Policy>,
    version: u64,
    loaded_at: SystemTime,
}

impl Snapshot {
    /// The compiled policy.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Its version: 1 for the policy the handle was made with, one more
    /// for each policy swapped in since.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When it was swapped in.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }
}

/// Why the last reload failed: the error's stable code and its text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadError {
    /// The stable code ([`Error::code`]), e.g. `SB001` for YAML that does
    /// not parse, `SB002` for an inconsistent policy, `SB003` for a file
    /// that cannot be read.
    pub code: String,
    /// The message without its location ([`Error::message`]).
    pub message: String,
    /// Where in the file, when the error says.
    pub location: Option<Location>,
    /// The whole diagnostic in one line: `file:line:column (at key): message`.
    pub diagnostic: String,
    /// When the reload was tried.
    #[serde(skip)]
    pub at: SystemTime,
}

impl LoadError {
    fn new(error: &Error) -> LoadError {
        LoadError {
            code: error.code().to_string(),
            message: error.message(),
            location: error.location().cloned(),
            diagnostic: error.to_string(),
            at: SystemTime::now(),
        }
    }
}

/// What [`PolicyHandle::reload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// A new policy serves now, with this version.
    Swapped(u64),
    /// The file holds the policy that serves already (same digest).
    Unchanged,
}

/// The handle's state for health checks and metrics.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// The serving policy's version ([`Snapshot::version`]).
    pub version: u64,
    /// The serving policy's digest ([`Policy::digest`]).
    pub digest: String,
    /// When it was swapped in.
    pub loaded_at: SystemTime,
    /// Reloads tried so far (successful, unchanged or failed).
    pub reloads: u64,
    /// Reloads that failed so far.
    pub failures: u64,
    /// The error of the last reload, when it failed; `None` once a reload
    /// succeeds (or finds the file unchanged).
    pub last_error: Option<LoadError>,
}

#[derive(Debug, Default)]
struct Book {
    reloads: u64,
    failures: u64,
    last_error: Option<LoadError>,
}

/// A policy file's compiled policy, reloadable while it serves (see the
/// module's text). `Send + Sync`: share it with an [`Arc`].
pub struct PolicyHandle {
    path: Option<PathBuf>,
    current: RwLock<Arc<Snapshot>>,
    /// Held while a reload compiles and swaps: reloads run one at a time,
    /// so versions only grow. Readers never take it.
    reloading: Mutex<Book>,
    cache: RewriteCache,
}

impl std::fmt::Debug for PolicyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHandle")
            .field("path", &self.path)
            .field("version", &self.current().version)
            .finish_non_exhaustive()
    }
}

impl PolicyHandle {
    /// Loads the policy file at `path`; a file that does not load is an
    /// error (there is no last good policy yet to fall back on). The
    /// rewrite cache holds [`DEFAULT_CACHE_BYTES`].
    pub fn load(path: impl AsRef<Path>) -> Result<PolicyHandle> {
        Self::load_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`PolicyHandle::load`] with a rewrite cache of about `cache_bytes`.
    pub fn load_with_cache(path: impl AsRef<Path>, cache_bytes: u64) -> Result<PolicyHandle> {
        let path = path.as_ref();
        let policy = Policy::from_path(path)?;
        Ok(Self::build(Some(path.to_path_buf()), policy, cache_bytes))
    }

    /// A handle over a policy compiled elsewhere, without a file:
    /// [`PolicyHandle::reload`] fails with [`Error::Io`];
    /// [`PolicyHandle::replace`] swaps in a policy.
    pub fn new(policy: Policy, cache_bytes: u64) -> PolicyHandle {
        Self::build(None, policy, cache_bytes)
    }

    fn build(path: Option<PathBuf>, policy: Policy, cache_bytes: u64) -> PolicyHandle {
        PolicyHandle {
            path,
            current: RwLock::new(Arc::new(Snapshot {
                policy: Arc::new(policy),
                version: 1,
                loaded_at: SystemTime::now(),
            })),
            reloading: Mutex::new(Book::default()),
            cache: RewriteCache::new(cache_bytes),
        }
    }

    /// The policy file, when the handle has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The policy that serves now. Keep the snapshot for the whole request.
    pub fn current(&self) -> Arc<Snapshot> {
        // A poisoned lock still holds a whole `Arc`: the swap is one store.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The rewrite cache (emptied on every swap).
    pub fn cache(&self) -> &RewriteCache {
        &self.cache
    }

    /// [`Policy::rewrite`] through the handle's cache, under `snapshot`'s
    /// policy.
    pub fn rewrite(
        &self,
        snapshot: &Snapshot,
        principal: &Principal,
        sql: &str,
        opts: &Options,
    ) -> Result<Rewritten> {
        self.cache.rewrite(&snapshot.policy, principal, sql, opts)
    }

    /// Reads and compiles the policy file again and swaps it in. A file
    /// that does not load leaves the serving policy as it is; its error is
    /// returned and kept for [`PolicyHandle::status`].
    pub fn reload(&self) -> Result<Reload> {
        let mut book = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        book.reloads += 1;
        let loaded = match &self.path {
            Some(path) => Policy::from_path(path),
            None => Err(Error::Io {
                path: "<policy handle>".into(),
                message: "the handle was made from a policy, not a file".into(),
            }),
        };
        match loaded {
            Ok(policy) => Ok(self.swap(&mut book, policy)),
            Err(e) => {
                book.failures += 1;
                book.last_error = Some(LoadError::new(&e));
                Err(e)
            }
        }
    }

    /// Swaps in a policy compiled by the caller (e.g. from text it
    /// fetched); the same as a successful [`PolicyHandle::reload`].
    pub fn replace(&self, policy: Policy) -> Reload {
        let mut book = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        book.reloads += 1;
        self.swap(&mut book, policy)
    }

    fn swap(&self, book: &mut Book, policy: Policy) -> Reload {
        book.last_error = None;
        let old = self.current();
        if old.policy.digest() == policy.digest() {
            return Reload::Unchanged;
        }
        let version = old.version + 1;
        let next = Arc::new(Snapshot {
            policy: Arc::new(policy),
            version,
            loaded_at: SystemTime::now(),
        });
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        self.cache.clear();
        Reload::Swapped(version)
    }

    /// Version, reload counts and the last reload's error.
    pub fn status(&self) -> Status {
        let book = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.current();
        Status {
            version: current.version,
            digest: current.policy.digest().to_string(),
            loaded_at: current.loaded_at,
            reloads: book.reloads,
            failures: book.failures,
            last_error: book.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    const GOOD: &str = "version: 1
databases:
  shop: {dialect: postgres, tables: {orders: {columns: {id: integer, tenant_id: integer}}}}
groups:
  customers:
    data: {shop: {public: {orders: {sandbox: {column: tenant_id, attribute: tenant}}}}}
    native: {shop: true}
users:
  alice: {groups: [customers], attributes: {tenant: 42}}
";

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "sqlsandbox-handle-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        fn file(&self) -> PathBuf {
            self.0.join("policy.yaml")
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A good policy whose text (and so digest) differs with `n`.
    fn good(n: u32) -> String {
        format!("{GOOD}# edit {n}\n")
    }

    #[test]
    fn a_broken_edit_keeps_the_last_good_policy() {
        let dir = TempDir::new("broken");
        std::fs::write(dir.file(), good(0)).unwrap();
        let handle = PolicyHandle::load(dir.file()).unwrap();
        let first = handle.current();
        assert_eq!(first.version(), 1);

        std::fs::write(dir.file(), "version: 1\nusers: {a: {groups: [nope]}}\n").unwrap();
        let err = handle.reload().unwrap_err();
        assert_eq!(err.code(), "SB002");
        let status = handle.status();
        assert_eq!(status.version, 1);
        assert_eq!(status.failures, 1);
        let last = status.last_error.unwrap();
        assert_eq!(last.code, "SB002");
        assert_eq!(last.location.as_ref().unwrap().line, Some(2));
        assert!(
            last.diagnostic.contains("policy.yaml:2"),
            "{}",
            last.diagnostic
        );
        assert!(Arc::ptr_eq(&first, &handle.current()));

        std::fs::write(dir.file(), good(1)).unwrap();
        assert_eq!(handle.reload().unwrap(), Reload::Swapped(2));
        assert!(handle.status().last_error.is_none());
        // The old snapshot still answers under the old policy.
        assert_eq!(first.version(), 1);
        assert_ne!(first.policy().digest(), handle.current().policy().digest());
    }

    #[test]
    fn an_unchanged_file_is_not_swapped_in() {
        let dir = TempDir::new("same");
        std::fs::write(dir.file(), good(0)).unwrap();
        let handle = PolicyHandle::load(dir.file()).unwrap();
        assert_eq!(handle.reload().unwrap(), Reload::Unchanged);
        assert_eq!(handle.current().version(), 1);
        assert_eq!(handle.status().reloads, 1);
    }

    #[test]
    fn a_missing_file_is_an_io_error_and_keeps_serving() {
        let dir = TempDir::new("missing");
        std::fs::write(dir.file(), good(0)).unwrap();
        let handle = PolicyHandle::load(dir.file()).unwrap();
        std::fs::remove_file(dir.file()).unwrap();
        assert_eq!(handle.reload().unwrap_err().code(), "SB003");
        assert_eq!(handle.status().last_error.unwrap().code, "SB003");
        assert_eq!(handle.current().version(), 1);
        assert!(PolicyHandle::load(dir.file()).is_err());
    }

    #[test]
    fn a_swap_empties_the_cache() {
        let dir = TempDir::new("cache");
        std::fs::write(dir.file(), good(0)).unwrap();
        let handle = PolicyHandle::load_with_cache(dir.file(), 1 << 20).unwrap();
        let snap = handle.current();
        let alice = Principal::from_user(snap.policy(), "alice").unwrap();
        let opts = Options::default();
        let a = handle
            .rewrite(&snap, &alice, "SELECT id FROM orders", &opts)
            .unwrap();
        let b = handle
            .rewrite(&snap, &alice, "SELECT id FROM orders", &opts)
            .unwrap();
        assert_eq!(a.sql, b.sql);
        assert_eq!(handle.cache().stats().hits, 1);
        assert_eq!(handle.cache().stats().entries, 1);
        std::fs::write(dir.file(), good(1)).unwrap();
        handle.reload().unwrap();
        assert_eq!(handle.cache().stats().entries, 0);
    }

    #[test]
    fn a_handle_without_a_file_swaps_by_replace() {
        let policy = Policy::from_yaml(&good(0), "p.yaml").unwrap();
        let handle = PolicyHandle::new(policy, 1 << 20);
        assert_eq!(handle.reload().unwrap_err().code(), "SB003");
        let next = Policy::from_yaml(&good(1), "p.yaml").unwrap();
        assert_eq!(handle.replace(next), Reload::Swapped(2));
        assert!(handle.status().last_error.is_none());
    }

    /// Readers on several threads rewrite without pause while another
    /// thread reloads good, broken and good files: every read succeeds,
    /// each sees a whole policy, and the versions a reader sees never go
    /// down.
    #[test]
    fn concurrent_readers_during_reloads() {
        let dir = TempDir::new("concurrent");
        std::fs::write(dir.file(), good(0)).unwrap();
        let handle = Arc::new(PolicyHandle::load_with_cache(dir.file(), 1 << 20).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let handle = Arc::clone(&handle);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut seen = 0;
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Relaxed) || reads == 0 {
                        let snap = handle.current();
                        assert!(snap.version() >= seen, "version went down");
                        seen = snap.version();
                        let alice = Principal::from_user(snap.policy(), "alice").unwrap();
                        let out = handle
                            .rewrite(&snap, &alice, "SELECT id FROM orders", &Options::default())
                            .unwrap();
                        assert!(out.sql.contains("tenant_id = 42"), "{}", out.sql);
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for n in 1..=6 {
            std::fs::write(dir.file(), "version: 1\ngroups: [").unwrap();
            assert!(handle.reload().is_err());
            std::fs::write(dir.file(), good(n)).unwrap();
            assert_eq!(handle.reload().unwrap(), Reload::Swapped(u64::from(n) + 1));
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
        let status = handle.status();
        assert_eq!(status.version, 7);
        assert_eq!(status.failures, 6);
        assert_eq!(status.reloads, 12);
        assert!(status.last_error.is_none());
    }
}
