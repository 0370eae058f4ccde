//! sqlsandbox errors as Python exceptions.
//!
//! The exception classes live in Python (`sqlsandbox/_errors.py`: a
//! hierarchy by code family, picklable, documented); this side hands each
//! error's stable code, message, refusal flag and fields to
//! `sqlsandbox._errors._from_native`, which picks the class.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use sqlsandbox::Error;

/// The Python exception for `error`.
pub(crate) fn to_py(py: Python<'_>, error: &Error) -> PyErr {
    match build(py, error) {
        Ok(exception) => PyErr::from_value(exception),
        // The Python half of the package is missing or broken: still an
        // exception with the code, never a panic.
        Err(why) => PyRuntimeError::new_err(format!(
            "{}: {error} (and sqlsandbox._errors failed: {why})",
            error.code()
        )),
    }
}

/// `map_err` adapter.
pub(crate) fn map<T>(py: Python<'_>, r: sqlsandbox::Result<T>) -> PyResult<T> {
    r.map_err(|e| to_py(py, &e))
}

fn build<'py>(py: Python<'py>, error: &Error) -> PyResult<Bound<'py, PyAny>> {
    static FROM_NATIVE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let from_native = FROM_NATIVE.import(py, "sqlsandbox._errors", "_from_native")?;
    let details = details(py, error)?;
    from_native.call1((error.code(), error.to_string(), error.is_refusal(), details))
}

/// The error's fields, by name, for the exception's attributes.
fn details<'py>(py: Python<'py>, error: &Error) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    if let Some(loc) = error.location() {
        let l = PyDict::new(py);
        l.set_item("file", &loc.file)?;
        l.set_item("line", loc.line)?;
        l.set_item("column", loc.column)?;
        l.set_item("key", &loc.key)?;
        d.set_item("location", l)?;
        d.set_item("text", error.message())?;
    }
    let fields: Vec<(&str, &str)> = match error {
        Error::Io { path, .. } => vec![("path", path)],
        Error::PolicyEdit { path, .. } => vec![("path", path)],
        Error::SqlParse { dialect, .. } => vec![("dialect", dialect)],
        Error::Unknown { kind, name } => vec![("kind", kind), ("name", name)],
        Error::DatabaseRequired { choices } => vec![("choices", choices)],
        Error::Builder { path, .. } => vec![("path", path)],
        Error::AccessDenied {
            principal,
            object,
            reason,
        } => vec![
            ("principal", principal),
            ("object", object),
            ("reason", reason),
        ],
        Error::WriteDenied {
            principal,
            command,
            table,
            reason,
        } => vec![
            ("principal", principal),
            ("command", command),
            ("table", table),
            ("reason", reason),
        ],
        Error::NativeDenied {
            principal,
            database,
        }
        | Error::BuilderDenied {
            principal,
            database,
        } => vec![("principal", principal), ("database", database)],
        Error::SandboxConflict {
            table,
            group_a,
            sandbox_a,
            group_b,
            sandbox_b,
        } => vec![
            ("table", table),
            ("group_a", group_a),
            ("sandbox_a", sandbox_a),
            ("group_b", group_b),
            ("sandbox_b", sandbox_b),
        ],
        Error::Routing { database, reason } | Error::Impersonation { database, reason } => {
            vec![("database", database), ("reason", reason)]
        }
        Error::MissingAttribute { attribute, table } => {
            vec![("attribute", attribute), ("table", table)]
        }
        Error::MissingVariable { question, variable } => {
            vec![("question", question), ("variable", variable)]
        }
        Error::AttributeType {
            attribute,
            value,
            ty,
            target,
        } => vec![
            ("attribute", attribute),
            ("value", value),
            ("type", ty),
            ("target", target),
        ],
        Error::HiddenColumn {
            column,
            table,
            hidden_by,
        } => vec![
            ("column", column),
            ("table", table),
            ("hidden_by", hidden_by),
        ],
        Error::ForbiddenFunction { function, reason } => {
            vec![("function", function), ("reason", reason)]
        }
        Error::Unsupported { construct } => vec![("construct", construct)],
        // The rest carry their message only (and `Error` is
        // non-exhaustive: a variant added later still gets its code and
        // message).
        _ => Vec::new(),
    };
    for (k, v) in fields {
        d.set_item(k, v)?;
    }
    Ok(d)
}
