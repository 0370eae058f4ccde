//! Values between Python and sqlsandbox: attribute values in, JSON
//! documents (builder questions, claims) in, results out.

use std::collections::BTreeMap;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyMappingMethods, PyString, PyTuple,
};
use sqlsandbox::{AttributeValue, Error, Scalar};

/// Deepest nesting of a JSON document taken from Python: the limit the
/// library's own JSON reader applies (`builder::parse_question`), which
/// also stops a dict that contains itself.
const MAX_DEPTH: usize = 100;

fn decimal_type(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static DECIMAL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    DECIMAL.import(py, "decimal", "Decimal")
}

/// One attribute (or question variable) value: `str`, `int`, `float`,
/// `bool`, `decimal.Decimal`, or a list or tuple of those.
pub(crate) fn attribute(what: &str, name: &str, v: &Bound<'_, PyAny>) -> PyResult<AttributeValue> {
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for item in v.try_iter()? {
            out.push(scalar(what, name, &item?)?);
        }
        return Ok(AttributeValue::Many(out));
    }
    scalar(what, name, v).map(AttributeValue::Single)
}

fn scalar(what: &str, name: &str, v: &Bound<'_, PyAny>) -> PyResult<Scalar> {
    let py = v.py();
    // bool before int: Python's bool is an int.
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Scalar::Bool(b.is_true()));
    }
    if v.is_instance_of::<PyString>() {
        return Ok(Scalar::Text(v.extract::<String>()?));
    }
    if v.is_instance_of::<PyInt>() {
        return Ok(match v.extract::<i64>() {
            Ok(i) => Scalar::Integer(i),
            // Beyond 64 bits: kept exact as decimal text, as the library
            // does for JSON numbers it cannot hold in an i64.
            Err(_) => Scalar::Number(v.str()?.extract::<String>()?),
        });
    }
    let is_float = v.is_instance_of::<PyFloat>();
    if is_float || v.is_instance(decimal_type(py)?)? {
        let finite = if is_float {
            v.extract::<f64>()?.is_finite()
        } else {
            v.call_method0("is_finite")?.is_truthy()?
        };
        if !finite {
            return Err(PyTypeError::new_err(format!(
                "{what} `{name}`: {} is not a finite number",
                v.repr()?
            )));
        }
        return Ok(Scalar::Number(v.str()?.extract::<String>()?));
    }
    Err(PyTypeError::new_err(format!(
        "{what} `{name}` must be a str, int, float, bool, Decimal or a list of them, not {}",
        v.get_type().name()?
    )))
}

/// A mapping of names to attribute values.
pub(crate) fn attributes(
    what: &str,
    m: Option<&Bound<'_, PyMapping>>,
) -> PyResult<Vec<(String, AttributeValue)>> {
    let mut out = Vec::new();
    if let Some(m) = m {
        for item in m.items()?.iter() {
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
            let k: String = k.extract().map_err(|_| {
                PyTypeError::new_err(format!("{what} names must be str, not {}", k.get_type()))
            })?;
            let value = attribute(what, &k, &v)?;
            out.push((k, value));
        }
    }
    Ok(out)
}

/// Question variables, as the library takes them.
pub(crate) fn variables(
    m: Option<&Bound<'_, PyMapping>>,
) -> PyResult<BTreeMap<String, AttributeValue>> {
    Ok(attributes("variable", m)?.into_iter().collect())
}

/// Where a Python value does not fit JSON: its JSON path, and why.
pub(crate) struct NotJson {
    pub(crate) path: String,
    pub(crate) message: String,
}

/// A JSON document from Python data (dicts with str keys, lists and tuples,
/// str, int, finite float, bool, None).
pub(crate) fn json(v: &Bound<'_, PyAny>) -> Result<serde_json::Value, NotJson> {
    to_json(v, "$", 0)
}

/// A builder question from Python data: what does not fit is a
/// query-builder error (SB104) at its JSON path, as malformed JSON text
/// would be.
pub(crate) fn question(v: &Bound<'_, PyAny>) -> Result<serde_json::Value, Error> {
    json(v).map_err(|e| Error::Builder {
        path: e.path,
        message: e.message,
    })
}

fn bad(path: &str, message: impl Into<String>) -> NotJson {
    NotJson {
        path: path.to_string(),
        message: message.into(),
    }
}

fn to_json(v: &Bound<'_, PyAny>, path: &str, depth: usize) -> Result<serde_json::Value, NotJson> {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        return Err(bad(
            path,
            format!("nested deeper than {MAX_DEPTH} levels (or contains itself)"),
        ));
    }
    if v.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if v.is_instance_of::<PyString>() {
        return v
            .extract::<String>()
            .map(Value::String)
            .map_err(|e| bad(path, format!("not valid text: {e}")));
    }
    if v.is_instance_of::<PyInt>() {
        if let Ok(i) = v.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = v.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(bad(path, "an integer beyond 64 bits"));
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        return serde_json::Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| bad(path, "a number that is not finite"));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut map = serde_json::Map::new();
        for (k, item) in d.iter() {
            let key = if k.is_instance_of::<PyString>() {
                k.extract::<String>().ok()
            } else {
                None
            };
            let Some(key) = key else {
                return Err(bad(path, "an object key that is not a str"));
            };
            let child = to_json(&item, &format!("{path}.{key}"), depth + 1)?;
            map.insert(key, child);
        }
        return Ok(Value::Object(map));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        let iter = v
            .try_iter()
            .map_err(|e| bad(path, format!("cannot iterate: {e}")))?;
        for (i, item) in iter.enumerate() {
            let item = item.map_err(|e| bad(path, format!("cannot iterate: {e}")))?;
            items.push(to_json(&item, &format!("{path}[{i}]"), depth + 1)?);
        }
        return Ok(Value::Array(items));
    }
    let ty = v
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Err(bad(
        path,
        format!("a {ty} is not a JSON value (use dict, list, str, int, float, bool or None)"),
    ))
}

/// A JSON value as Python data (objects as dicts, arrays as lists).
pub(crate) fn from_json<'py>(
    py: Python<'py>,
    v: &serde_json::Value,
) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(from_json(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let d = PyDict::new(py);
            for (k, item) in map {
                d.set_item(k, from_json(py, item)?)?;
            }
            d.into_any()
        }
    })
}

/// Any serializable library value as Python data, through its JSON shape
/// (the shape `sqlsandbox … --format json` prints).
pub(crate) fn to_python<'py, T: serde::Serialize>(
    py: Python<'py>,
    v: &T,
) -> PyResult<Bound<'py, PyAny>> {
    let json = serde_json::to_value(v)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    from_json(py, &json)
}

/// A bound value as the Python value a database driver takes: text as
/// `str`, whole numbers as `int`, other numbers as `decimal.Decimal`
/// (exact), booleans as `bool`.
pub(crate) fn scalar_to_python<'py>(py: Python<'py>, s: &Scalar) -> PyResult<Bound<'py, PyAny>> {
    Ok(match s {
        Scalar::Text(t) => PyString::new(py, t).into_any(),
        Scalar::Integer(i) => i.into_pyobject(py)?.into_any(),
        Scalar::Number(n) => decimal_type(py)?.call1((n.as_str(),))?,
        Scalar::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
    })
}

/// An attribute value: one value, or a list.
pub(crate) fn attribute_to_python<'py>(
    py: Python<'py>,
    v: &AttributeValue,
) -> PyResult<Bound<'py, PyAny>> {
    match v {
        AttributeValue::Single(s) => scalar_to_python(py, s),
        AttributeValue::Many(items) => {
            let list = PyList::empty(py);
            for s in items {
                list.append(scalar_to_python(py, s)?)?;
            }
            Ok(list.into_any())
        }
    }
}
