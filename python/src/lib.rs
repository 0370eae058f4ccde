//! The Python package `sqlsandbox` (its native half, `sqlsandbox._native`):
//! a loaded policy, rewrites of native SQL, query-builder questions and
//! saved questions, `explain`, and the library's errors as exceptions.
//!
//! Every call into the library runs with the GIL released (`Python::detach`):
//! the policy is immutable and `Send + Sync`, so any number of Python
//! threads rewrite at once. The library returns its refusals as values;
//! nothing here unwraps, so no panic reaches Python.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyMapping, PyString};
use sqlsandbox::who::Who;
use sqlsandbox::{Dialect, Error, FenceMode, Options, RewriteCache};

mod convert;
mod errors;
mod paramstyle;
mod result;

use result::{Applied, Explanation, Fencing, Rewritten};

/// mimalloc (see Cargo.toml). Memory the module allocates is freed by it;
/// Python objects keep Python's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How the caller named the principal; resolved against a policy.
#[derive(Debug, Clone)]
enum Spec {
    /// A user, the anonymous principal, claims or an API key: as the
    /// command line and policy tests name them.
    Who(Who),
    /// Groups and attributes supplied by the caller (its own login or
    /// token), under a name for messages and audit.
    Caller {
        name: String,
        groups: Vec<String>,
        attributes: Vec<(String, sqlsandbox::AttributeValue)>,
    },
}

impl Spec {
    fn resolve(&self, policy: &sqlsandbox::Policy) -> sqlsandbox::Result<sqlsandbox::Principal> {
        match self {
            Spec::Who(who) => who.principal(policy),
            Spec::Caller {
                name,
                groups,
                attributes,
            } => {
                // As `Who::Groups` does: when the policy declares its
                // attributes, a misspelt one is refused by name rather
                // than surfacing later as a missing attribute.
                if policy.declares_attributes() {
                    let declared = policy.attribute_names();
                    if let Some((a, _)) = attributes.iter().find(|(a, _)| !declared.contains(a)) {
                        return Err(Error::Unknown {
                            kind: "attribute",
                            name: a.clone(),
                        });
                    }
                }
                sqlsandbox::Principal::new(
                    policy,
                    name,
                    groups.iter().map(String::as_str),
                    attributes.iter().cloned(),
                )
            }
        }
    }
}

/// Who is asking, resolved against a policy: create one with
/// `Policy.principal(...)` and pass it as `principal=` to skip resolving
/// the same person on every call.
#[pyclass(frozen, module = "sqlsandbox", name = "Principal")]
struct Principal {
    inner: sqlsandbox::Principal,
    spec: Spec,
    /// The digest of the policy it was resolved against: used with another
    /// policy, it is resolved again from `spec` (so its groups are checked
    /// against that policy).
    digest: String,
}

#[pymethods]
impl Principal {
    /// The principal's name (for messages and audit).
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Its groups, `all_users` first.
    #[getter]
    fn groups(&self) -> Vec<String> {
        self.inner.groups().to_vec()
    }

    /// Its attributes.
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.inner.attributes() {
            d.set_item(k, convert::attribute_to_python(py, v)?)?;
        }
        Ok(d)
    }

    /// Whether it is in `administrators`.
    #[getter]
    fn is_admin(&self) -> bool {
        self.inner.is_admin()
    }

    /// Whether it is the anonymous principal of public embedding.
    #[getter]
    fn is_anonymous(&self) -> bool {
        self.inner.is_anonymous()
    }

    fn __repr__(&self) -> String {
        format!(
            "Principal(name={:?}, groups={:?})",
            self.inner.name(),
            self.inner.groups()
        )
    }
}

/// The principal keyword arguments every call takes.
struct WhoArgs<'a, 'py> {
    principal: Option<&'a Bound<'py, Principal>>,
    user: Option<String>,
    groups: Option<Vec<String>>,
    attributes: Option<&'a Bound<'py, PyMapping>>,
    claims: Option<&'a Bound<'py, PyAny>>,
    api_key: Option<String>,
    anonymous: bool,
    name: Option<String>,
}

/// A principal given as a `Principal` object, or how to resolve one.
enum Asked {
    Resolved(sqlsandbox::Principal),
    Spec(Spec),
}

impl Asked {
    fn resolve(&self, policy: &sqlsandbox::Policy) -> sqlsandbox::Result<sqlsandbox::Principal> {
        match self {
            Asked::Resolved(p) => Ok(p.clone()),
            Asked::Spec(s) => s.resolve(policy),
        }
    }
}

impl WhoArgs<'_, '_> {
    fn spec(self, py: Python<'_>) -> PyResult<Spec> {
        let caller = self.groups.is_some() || self.attributes.is_some();
        let given = [
            self.principal.is_some(),
            self.user.is_some(),
            caller,
            self.claims.is_some(),
            self.api_key.is_some(),
            self.anonymous,
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(PyTypeError::new_err(
                "name the principal once: user=, groups=/attributes=, claims=, api_key=, anonymous=True or principal=",
            ));
        }
        if self.name.is_some() && !caller {
            return Err(PyTypeError::new_err(
                "name= names a principal given by groups=/attributes=",
            ));
        }
        if let Some(p) = self.principal {
            return Ok(p.get().spec.clone());
        }
        if let Some(user) = self.user {
            return Ok(Spec::Who(Who::User(user)));
        }
        if self.anonymous {
            return Ok(Spec::Who(Who::Anonymous));
        }
        if let Some(secret) = self.api_key {
            return Ok(Spec::Who(Who::ApiKey(secret)));
        }
        if let Some(claims) = self.claims {
            if claims.is_instance_of::<PyString>() {
                return Ok(Spec::Who(Who::ClaimsJson(claims.extract::<String>()?)));
            }
            // Malformed claims are an unknown-principal error (SB102), as
            // they are for claims given as JSON text.
            let value = convert::json(claims).map_err(|e| {
                errors::to_py(
                    py,
                    &Error::Unknown {
                        kind: "claims",
                        name: format!("(not valid claims at {}: {})", e.path, e.message),
                    },
                )
            })?;
            return Ok(Spec::Who(Who::Claims(value)));
        }
        Ok(Spec::Caller {
            name: self.name.unwrap_or_else(|| "caller".to_string()),
            groups: self.groups.unwrap_or_default(),
            attributes: convert::attributes("attribute", self.attributes)?,
        })
    }

    /// What the call asked for, for `policy`: a `Principal` object made for
    /// the same policy is used as it is.
    fn asked(self, py: Python<'_>, policy: &sqlsandbox::Policy) -> PyResult<Asked> {
        let resolved = self
            .principal
            .map(|p| p.get())
            .filter(|p| p.digest == policy.digest())
            .map(|p| p.inner.clone());
        // Checked even for a resolved principal: it refuses other
        // principal arguments beside it.
        let spec = self.spec(py)?;
        Ok(match resolved {
            Some(p) => Asked::Resolved(p),
            None => Asked::Spec(spec),
        })
    }
}

/// Per-call options (`sqlsandbox::Options`).
struct OptionArgs {
    database: Option<String>,
    dialect: Option<String>,
    params: bool,
    fence: Option<String>,
    emit_role: bool,
    local_role: bool,
    max_sql_bytes: Option<usize>,
    max_depth: Option<usize>,
    max_operators: Option<usize>,
}

impl OptionArgs {
    fn options(&self) -> sqlsandbox::Result<Options> {
        let mut opts = Options::default()
            .with_params(self.params)
            .with_emit_role(self.emit_role)
            .with_local_role(self.local_role);
        if let Some(d) = &self.database {
            opts = opts.with_database(d.clone());
        }
        if let Some(d) = &self.dialect {
            opts = opts.with_dialect(d.parse::<Dialect>()?);
        }
        if let Some(f) = &self.fence {
            opts = opts.with_fence(f.parse::<FenceMode>()?);
        }
        if let Some(n) = self.max_sql_bytes {
            opts = opts.with_max_sql_bytes(n);
        }
        if let Some(n) = self.max_depth {
            opts = opts.with_max_depth(n);
        }
        if let Some(n) = self.max_operators {
            opts = opts.with_max_operators(n);
        }
        Ok(opts)
    }
}

/// A compiled policy: load it once, share it between threads, rewrite per
/// query.
#[pyclass(frozen, module = "sqlsandbox", name = "Policy")]
struct Policy {
    policy: sqlsandbox::Policy,
    cache: Option<RewriteCache>,
}

impl Policy {
    fn new(policy: sqlsandbox::Policy, cache_bytes: Option<u64>) -> Policy {
        Policy {
            policy,
            cache: cache_bytes.filter(|&b| b > 0).map(RewriteCache::new),
        }
    }

    fn rewritten(
        py: Python<'_>,
        r: sqlsandbox::Result<sqlsandbox::Rewritten>,
    ) -> PyResult<Rewritten> {
        errors::map(py, r).map(|inner| Rewritten { inner })
    }
}

#[pymethods]
impl Policy {
    /// Loads and compiles the policy file at `path`. With `cache_bytes`,
    /// native SQL rewrites go through a rewrite cache of about that size
    /// (see `cache_stats`).
    #[staticmethod]
    #[pyo3(signature = (path, *, cache_bytes=None))]
    fn from_file(py: Python<'_>, path: PathBuf, cache_bytes: Option<u64>) -> PyResult<Policy> {
        let policy = py.detach(|| sqlsandbox::Policy::from_path(&path));
        errors::map(py, policy).map(|p| Policy::new(p, cache_bytes))
    }

    /// Compiles a policy from YAML text; `name` is the file name its
    /// diagnostics give.
    #[staticmethod]
    #[pyo3(signature = (text, name=String::from("<string>"), *, cache_bytes=None))]
    fn from_yaml(
        py: Python<'_>,
        text: String,
        name: String,
        cache_bytes: Option<u64>,
    ) -> PyResult<Policy> {
        let policy = py.detach(|| sqlsandbox::Policy::from_yaml(&text, &name));
        errors::map(py, policy).map(|p| Policy::new(p, cache_bytes))
    }

    /// The file the policy was loaded from (or the name given).
    #[getter]
    fn file(&self) -> &str {
        self.policy.file()
    }

    /// A digest of the policy's content (changes with every edit).
    #[getter]
    fn digest(&self) -> &str {
        self.policy.digest()
    }

    /// The declared databases.
    #[getter]
    fn databases(&self) -> Vec<String> {
        self.policy.database_names().map(str::to_string).collect()
    }

    /// The declared users.
    #[getter]
    fn users(&self) -> Vec<String> {
        self.policy
            .user_names()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// The declared groups.
    #[getter]
    fn groups(&self) -> Vec<String> {
        self.policy
            .group_names()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// The saved questions.
    #[getter]
    fn questions(&self) -> Vec<String> {
        self.policy
            .question_names()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// Resolves a principal once, for many calls (`principal=`).
    #[pyo3(signature = (*, user=None, groups=None, attributes=None, claims=None, api_key=None, anonymous=false, name=None))]
    #[allow(clippy::too_many_arguments)]
    fn principal(
        &self,
        py: Python<'_>,
        user: Option<String>,
        groups: Option<Vec<String>>,
        attributes: Option<&Bound<'_, PyMapping>>,
        claims: Option<&Bound<'_, PyAny>>,
        api_key: Option<String>,
        anonymous: bool,
        name: Option<String>,
    ) -> PyResult<Principal> {
        let spec = WhoArgs {
            principal: None,
            user,
            groups,
            attributes,
            claims,
            api_key,
            anonymous,
            name,
        }
        .spec(py)?;
        let inner = errors::map(py, spec.resolve(&self.policy))?;
        Ok(Principal {
            inner,
            spec,
            digest: self.policy.digest().to_string(),
        })
    }

    /// Rewrites one native SQL query for the principal.
    #[pyo3(signature = (sql, *, principal=None, user=None, groups=None, attributes=None, claims=None, api_key=None, anonymous=false, name=None, database=None, dialect=None, params=false, fence=None, emit_role=false, local_role=false, max_sql_bytes=None, max_depth=None, max_operators=None, cache=true))]
    #[allow(clippy::too_many_arguments)]
    fn rewrite(
        &self,
        py: Python<'_>,
        sql: String,
        principal: Option<&Bound<'_, Principal>>,
        user: Option<String>,
        groups: Option<Vec<String>>,
        attributes: Option<&Bound<'_, PyMapping>>,
        claims: Option<&Bound<'_, PyAny>>,
        api_key: Option<String>,
        anonymous: bool,
        name: Option<String>,
        database: Option<String>,
        dialect: Option<String>,
        params: bool,
        fence: Option<String>,
        emit_role: bool,
        local_role: bool,
        max_sql_bytes: Option<usize>,
        max_depth: Option<usize>,
        max_operators: Option<usize>,
        cache: bool,
    ) -> PyResult<Rewritten> {
        let asked = WhoArgs {
            principal,
            user,
            groups,
            attributes,
            claims,
            api_key,
            anonymous,
            name,
        }
        .asked(py, &self.policy)?;
        let opts = OptionArgs {
            database,
            dialect,
            params,
            fence,
            emit_role,
            local_role,
            max_sql_bytes,
            max_depth,
            max_operators,
        };
        let cache = if cache { self.cache.as_ref() } else { None };
        let out = py.detach(|| {
            let who = asked.resolve(&self.policy)?;
            let opts = opts.options()?;
            match cache {
                Some(c) => c.rewrite(&self.policy, &who, &sql, &opts),
                None => self.policy.rewrite(&who, &sql, &opts),
            }
        });
        Policy::rewritten(py, out)
    }

    /// Compiles a query-builder question (a dict, or JSON text) to SQL and
    /// sandboxes it; no native SQL permission is needed.
    #[pyo3(signature = (question, *, principal=None, user=None, groups=None, attributes=None, claims=None, api_key=None, anonymous=false, name=None, database=None, dialect=None, params=false, fence=None, emit_role=false, local_role=false, max_sql_bytes=None, max_depth=None, max_operators=None))]
    #[allow(clippy::too_many_arguments)]
    fn rewrite_builder(
        &self,
        py: Python<'_>,
        question: &Bound<'_, PyAny>,
        principal: Option<&Bound<'_, Principal>>,
        user: Option<String>,
        groups: Option<Vec<String>>,
        attributes: Option<&Bound<'_, PyMapping>>,
        claims: Option<&Bound<'_, PyAny>>,
        api_key: Option<String>,
        anonymous: bool,
        name: Option<String>,
        database: Option<String>,
        dialect: Option<String>,
        params: bool,
        fence: Option<String>,
        emit_role: bool,
        local_role: bool,
        max_sql_bytes: Option<usize>,
        max_depth: Option<usize>,
        max_operators: Option<usize>,
    ) -> PyResult<Rewritten> {
        let asked = WhoArgs {
            principal,
            user,
            groups,
            attributes,
            claims,
            api_key,
            anonymous,
            name,
        }
        .asked(py, &self.policy)?;
        let question = errors::map(py, builder_question(question))?;
        let opts = OptionArgs {
            database,
            dialect,
            params,
            fence,
            emit_role,
            local_role,
            max_sql_bytes,
            max_depth,
            max_operators,
        };
        let out = py.detach(|| {
            let who = asked.resolve(&self.policy)?;
            self.policy
                .rewrite_builder(&who, &question, &opts.options()?)
        });
        Policy::rewritten(py, out)
    }

    /// Runs saved question `question` for the principal: `variables` bind
    /// its `{{variables}}`; the SQL is then sandboxed like native SQL.
    #[pyo3(signature = (question, variables=None, *, principal=None, user=None, groups=None, attributes=None, claims=None, api_key=None, anonymous=false, name=None, database=None, dialect=None, params=false, fence=None, emit_role=false, local_role=false, max_sql_bytes=None, max_depth=None, max_operators=None))]
    #[allow(clippy::too_many_arguments)]
    fn rewrite_question(
        &self,
        py: Python<'_>,
        question: String,
        variables: Option<&Bound<'_, PyMapping>>,
        principal: Option<&Bound<'_, Principal>>,
        user: Option<String>,
        groups: Option<Vec<String>>,
        attributes: Option<&Bound<'_, PyMapping>>,
        claims: Option<&Bound<'_, PyAny>>,
        api_key: Option<String>,
        anonymous: bool,
        name: Option<String>,
        database: Option<String>,
        dialect: Option<String>,
        params: bool,
        fence: Option<String>,
        emit_role: bool,
        local_role: bool,
        max_sql_bytes: Option<usize>,
        max_depth: Option<usize>,
        max_operators: Option<usize>,
    ) -> PyResult<Rewritten> {
        let asked = WhoArgs {
            principal,
            user,
            groups,
            attributes,
            claims,
            api_key,
            anonymous,
            name,
        }
        .asked(py, &self.policy)?;
        let values = convert::variables(variables)?;
        let opts = OptionArgs {
            database,
            dialect,
            params,
            fence,
            emit_role,
            local_role,
            max_sql_bytes,
            max_depth,
            max_operators,
        };
        let out = py.detach(|| {
            let who = asked.resolve(&self.policy)?;
            self.policy
                .rewrite_question(&who, &question, &values, &opts.options()?)
        });
        Policy::rewritten(py, out)
    }

    /// What the principal may read and why, per database and table; with
    /// `sql` (or a builder `question`), also what that query becomes or
    /// why it is refused (`Explanation.query` / `.error`; not raised).
    #[pyo3(signature = (*, principal=None, user=None, groups=None, attributes=None, claims=None, api_key=None, anonymous=false, name=None, sql=None, builder=None, database=None))]
    #[allow(clippy::too_many_arguments)]
    fn explain(
        &self,
        py: Python<'_>,
        principal: Option<&Bound<'_, Principal>>,
        user: Option<String>,
        groups: Option<Vec<String>>,
        attributes: Option<&Bound<'_, PyMapping>>,
        claims: Option<&Bound<'_, PyAny>>,
        api_key: Option<String>,
        anonymous: bool,
        name: Option<String>,
        sql: Option<String>,
        builder: Option<&Bound<'_, PyAny>>,
        database: Option<String>,
    ) -> PyResult<Explanation> {
        if sql.is_some() && builder.is_some() {
            return Err(PyTypeError::new_err(
                "explain takes sql= or builder=, not both",
            ));
        }
        let asked = WhoArgs {
            principal,
            user,
            groups,
            attributes,
            claims,
            api_key,
            anonymous,
            name,
        }
        .asked(py, &self.policy)?;
        let question = builder.map(builder_question);
        let policy = &self.policy;
        let (explanation, query) = py
            .detach(|| {
                let who = asked.resolve(policy)?;
                let explanation = sqlsandbox::explain::explain(policy, &who);
                let mut opts = Options::default();
                if let Some(d) = database {
                    opts = opts.with_database(d);
                }
                let query = match (sql, question) {
                    (Some(s), _) => Some(policy.rewrite(&who, &s, &opts)),
                    (None, Some(q)) => {
                        Some(q.and_then(|q| policy.rewrite_builder(&who, &q, &opts)))
                    }
                    (None, None) => None,
                };
                Ok::<_, Error>((explanation, query))
            })
            .map_err(|e| errors::to_py(py, &e))?;
        let (query, error, refused) = match query {
            None => (None, None, None),
            Some(Ok(inner)) => (Some(Py::new(py, Rewritten { inner })?), None, None),
            Some(Err(e)) => (
                None,
                Some(errors::to_py(py, &e).into_value(py).into_any()),
                Some((e.code().to_string(), e.to_string())),
            ),
        };
        Ok(Explanation {
            inner: explanation,
            query,
            error,
            refused,
        })
    }

    /// Who sees what: every declared user against every table, as plain
    /// data (the shape of `sqlsandbox explain --all-users --format json`).
    fn explain_all_users<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let m = py.detach(|| sqlsandbox::explain::matrix(&self.policy));
        let m = errors::map(py, m)?;
        convert::to_python(py, &m)
    }

    /// The rewrite cache's counters (`hits`, `misses`, `entries`,
    /// `bytes`), or `None` when the policy was loaded without
    /// `cache_bytes`.
    fn cache_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        let s = cache.stats();
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("entries", s.entries)?;
        d.set_item("bytes", s.bytes)?;
        Ok(Some(d))
    }

    /// Empties the rewrite cache (its counters stay).
    fn clear_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Policy(file={:?}, digest={:?})",
            self.policy.file(),
            self.policy.digest()
        )
    }
}

/// A builder question from a dict (any JSON-like Python data) or from JSON
/// text (with the library's limits and repeated-key check).
fn builder_question(question: &Bound<'_, PyAny>) -> sqlsandbox::Result<serde_json::Value> {
    if !question.is_instance_of::<PyString>() {
        return convert::question(question);
    }
    match question.extract::<String>() {
        Ok(text) => sqlsandbox::builder::parse_question(&text),
        Err(e) => Err(Error::Builder {
            path: "$".into(),
            message: format!("not valid text: {e}"),
        }),
    }
}

/// The version of the Rust crate this was built from.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Dialect names accepted by `dialect=`.
#[pyfunction]
fn dialects<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, Dialect::ALL.iter().map(|d| d.name()))
}

/// sqlsandbox's native module; import `sqlsandbox` instead.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Policy>()?;
    m.add_class::<Principal>()?;
    m.add_class::<Rewritten>()?;
    m.add_class::<Applied>()?;
    m.add_class::<Fencing>()?;
    m.add_class::<Explanation>()?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(dialects, m)?)?;
    Ok(())
}
