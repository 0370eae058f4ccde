//! Results as Python objects: `Rewritten` (with `Applied` and `Fencing`)
//! and `Explanation`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::convert;
use crate::paramstyle::{self, Style};

/// The result of a rewrite: the sandboxed SQL, its bind parameters, where
/// it must run, and what was applied (for audit and cache keys).
#[pyclass(frozen, module = "sqlsandbox", name = "Rewritten")]
pub(crate) struct Rewritten {
    pub(crate) inner: sqlsandbox::Rewritten,
}

#[pymethods]
impl Rewritten {
    /// The sandboxed SQL.
    #[getter]
    fn sql(&self) -> &str {
        &self.inner.sql
    }

    /// The bind parameters' values in placeholder order (empty unless
    /// `params=True`): `str`, `int`, `decimal.Decimal` or `bool`.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for p in &self.inner.params {
            list.append(convert::scalar_to_python(py, &p.value)?)?;
        }
        Ok(list)
    }

    /// The column type each parameter was coerced to (`"integer"`,
    /// `"text"`, …), or `None` when not known.
    #[getter]
    fn param_types<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for p in &self.inner.params {
            list.append(convert::to_python(py, &p.ty)?)?;
        }
        Ok(list)
    }

    /// The policy database it must run on.
    #[getter]
    fn database(&self) -> &str {
        &self.inner.database
    }

    /// The dialect it is written in (`"postgres"`, `"sqlite"`, …).
    #[getter]
    fn dialect(&self) -> &'static str {
        self.inner.dialect.name()
    }

    /// The routing destination it must run on; `None` for the database
    /// itself.
    #[getter]
    fn destination(&self) -> Option<&str> {
        self.inner.destination.as_deref()
    }

    /// The database role to run it as (connection impersonation), if any.
    #[getter]
    fn role(&self) -> Option<&str> {
        self.inner.role.as_deref()
    }

    /// The statement that switches to `role` in this dialect.
    #[getter]
    fn role_statement(&self) -> Option<&str> {
        self.inner.role_statement.as_deref()
    }

    /// The sandboxes applied, one per rewritten table reference.
    #[getter]
    fn applied(&self) -> Vec<Applied> {
        self.inner
            .applied
            .iter()
            .map(|a| Applied { inner: a.clone() })
            .collect()
    }

    /// Whether the sandboxes were fenced, and why.
    #[getter]
    fn fencing(&self) -> Fencing {
        Fencing {
            inner: self.inner.fencing.clone(),
        }
    }

    /// A stable digest of the policy version, destination, role and the
    /// sandboxes applied (values included): put it in result-cache keys.
    #[getter]
    fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// The SQL and parameters for a database driver whose PEP 249
    /// `paramstyle` is `style` (`"qmark"`, `"numeric"`, `"named"`,
    /// `"format"`, `"pyformat"`): a tuple `(sql, params)`, params a tuple
    /// for `qmark`/`numeric`/`format` and a dict for `named`/`pyformat`.
    /// Placeholders are found by tokenizing (never in literals); the
    /// `format` styles double every other `%`, so pass the parameters to
    /// `execute` even when there are none.
    fn for_paramstyle<'py>(&self, py: Python<'py>, style: &str) -> PyResult<Bound<'py, PyTuple>> {
        let style = Style::parse(style).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown paramstyle `{style}` (qmark, numeric, named, format, pyformat)"
            ))
        })?;
        let (sql, order) = paramstyle::convert(
            &self.inner.sql,
            self.inner.dialect,
            self.inner.params.len(),
            style,
        )
        .map_err(PyValueError::new_err)?;
        let value = |i: usize| -> PyResult<Bound<'py, PyAny>> {
            match self.inner.params.get(i) {
                Some(p) => convert::scalar_to_python(py, &p.value),
                None => Err(PyValueError::new_err("parameter out of range")),
            }
        };
        let params = if style.named() {
            let d = PyDict::new(py);
            for (slot, &i) in order.iter().enumerate() {
                d.set_item(format!("p{}", slot + 1), value(i)?)?;
            }
            d.into_any()
        } else {
            // A tuple: SQLAlchemy's `exec_driver_sql` reads a list as
            // several parameter sets (executemany).
            let values = order
                .iter()
                .map(|&i| value(i))
                .collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(py, values)?.into_any()
        };
        PyTuple::new(py, [sql.into_pyobject(py)?.into_any(), params])
    }

    /// Everything as plain data, in the shape of `sqlsandbox rewrite
    /// --format json` (parameters as `{"value": …, "type": …}`, decimals
    /// as strings).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.inner)
    }

    fn __str__(&self) -> &str {
        &self.inner.sql
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Rewritten(sql={}, params={}, database={})",
            PyString::new(py, &self.inner.sql).repr()?,
            self.params(py)?.repr()?,
            PyString::new(py, &self.inner.database).repr()?,
        ))
    }
}

/// One sandbox applied to one table reference.
#[pyclass(frozen, module = "sqlsandbox", name = "Applied")]
pub(crate) struct Applied {
    inner: sqlsandbox::Applied,
}

#[pymethods]
impl Applied {
    /// The table, `schema.table`.
    #[getter]
    fn table(&self) -> &str {
        &self.inner.table
    }

    /// The alias the sandbox subquery got.
    #[getter]
    fn alias(&self) -> &str {
        &self.inner.alias
    }

    /// The groups whose sandboxes apply.
    #[getter]
    fn groups(&self) -> Vec<String> {
        self.inner.groups.clone()
    }

    /// `"basic"`, `"custom"`, `"union"`, `"rules"` or `"masked"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind
    }

    /// The question of a custom sandbox.
    #[getter]
    fn question(&self) -> Option<&str> {
        self.inner.question.as_deref()
    }

    /// The attribute values bound, as `(attribute, value)` pairs in order.
    #[getter]
    fn bindings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for b in &self.inner.bindings {
            let value = convert::attribute_to_python(py, &b.value)?;
            list.append(PyTuple::new(
                py,
                [b.attribute.as_str().into_pyobject(py)?.into_any(), value],
            )?)?;
        }
        Ok(list)
    }

    /// As plain data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "Applied(table={:?}, kind={:?}, groups={:?})",
            self.inner.table, self.inner.kind, self.inner.groups
        )
    }
}

/// How a rewrite fenced its sandboxes.
#[pyclass(frozen, module = "sqlsandbox", name = "Fencing")]
pub(crate) struct Fencing {
    inner: sqlsandbox::Fencing,
}

#[pymethods]
impl Fencing {
    /// `"auto"`, `"always"` or `"never"`.
    #[getter]
    fn mode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.inner.mode)
    }

    /// Whether the sandboxes got the dialect's fence.
    #[getter]
    fn fenced(&self) -> bool {
        self.inner.fenced
    }

    /// Why `auto` fenced: the first expression that could fail on rows a
    /// sandbox filters out.
    #[getter]
    fn reason(&self) -> Option<&str> {
        self.inner.reason.as_deref()
    }

    /// Row-safe conditions copied into fenced sandboxes.
    #[getter]
    fn pushed(&self) -> usize {
        self.inner.pushed
    }

    /// As plain data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "Fencing(mode={:?}, fenced={}, pushed={})",
            serde_json::to_value(self.inner.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            if self.inner.fenced { "True" } else { "False" },
            self.inner.pushed
        )
    }
}

/// What a principal may read and why; with a query, what it became.
#[pyclass(frozen, module = "sqlsandbox", name = "Explanation")]
pub(crate) struct Explanation {
    pub(crate) inner: sqlsandbox::explain::Explanation,
    /// The query's rewrite, when one was given and rewritten.
    pub(crate) query: Option<Py<Rewritten>>,
    /// The query's refusal (an exception object), when it was refused.
    pub(crate) error: Option<Py<PyAny>>,
    /// The query's refusal as `{"code": …, "message": …}`.
    pub(crate) refused: Option<(String, String)>,
}

#[pymethods]
impl Explanation {
    /// The principal's name.
    #[getter]
    fn principal(&self) -> &str {
        &self.inner.principal
    }

    /// Its groups.
    #[getter]
    fn groups(&self) -> Vec<String> {
        self.inner.groups.clone()
    }

    /// Whether it bypasses data permissions.
    #[getter]
    fn admin(&self) -> bool {
        self.inner.admin
    }

    /// Per database: the decisions on each table, as plain data.
    #[getter]
    fn databases<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.inner.databases)
    }

    /// The rewritten query, when a query was given and not refused.
    #[getter]
    fn query(&self, py: Python<'_>) -> Option<Py<Rewritten>> {
        self.query.as_ref().map(|q| q.clone_ref(py))
    }

    /// The query's refusal (a `SqlsandboxError`), when it was refused.
    #[getter]
    fn error(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.error.as_ref().map(|e| e.clone_ref(py))
    }

    /// The explanation as text, as `sqlsandbox explain` prints it (without
    /// the query part).
    #[getter]
    fn text(&self) -> String {
        self.inner.to_text()
    }

    /// As plain data, in the shape of `sqlsandbox explain --format json`:
    /// `{"explanation": …, "query": {"rewritten": …} | {"refused": …} | None}`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let query = match (&self.query, &self.refused) {
            (Some(q), _) => serde_json::json!({ "rewritten": q.get().inner }),
            (None, Some((code, message))) => {
                serde_json::json!({"refused": {"code": code, "message": message}})
            }
            (None, None) => serde_json::Value::Null,
        };
        convert::to_python(
            py,
            &serde_json::json!({"explanation": self.inner, "query": query}),
        )
    }

    fn __str__(&self) -> String {
        self.inner.to_text()
    }

    fn __repr__(&self) -> String {
        format!(
            "Explanation(principal={:?}, groups={:?}, admin={})",
            self.inner.principal,
            self.inner.groups,
            if self.inner.admin { "True" } else { "False" }
        )
    }
}
