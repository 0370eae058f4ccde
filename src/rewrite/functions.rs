//! Functions native SQL may not call: those that read tables or files from
//! strings, run SQL, change settings, or act on the server.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::OnceLock;

use sqlparser::ast::{Expr, ObjectName, ObjectNamePart, Query, Value, ValueWithSpan};

use crate::dialect::unicode_lower;

use crate::error::{Error, Result};
use crate::policy::FunctionPolicy;

/// Built-in deny list, for every dialect (a PostgreSQL function name is
/// refused on MySQL too: refusing more is the safe direction).
const DENIED: &[(&str, &str)] = &[
    // PostgreSQL: SQL from strings, other databases, files, settings.
    ("query_to_xml", "runs SQL from a string"),
    ("query_to_xml_and_xmlschema", "runs SQL from a string"),
    ("query_to_xmlschema", "runs SQL from a string"),
    ("cursor_to_xml", "reads a cursor"),
    ("cursor_to_xmlschema", "reads a cursor"),
    ("table_to_xml", "reads a table named by a string"),
    (
        "table_to_xml_and_xmlschema",
        "reads a table named by a string",
    ),
    ("table_to_xmlschema", "reads a table named by a string"),
    ("schema_to_xml", "reads a schema named by a string"),
    (
        "schema_to_xml_and_xmlschema",
        "reads a schema named by a string",
    ),
    ("schema_to_xmlschema", "reads a schema named by a string"),
    ("database_to_xml", "reads the whole database"),
    ("database_to_xml_and_xmlschema", "reads the whole database"),
    ("database_to_xmlschema", "reads the whole database"),
    ("dblink", "queries another database"),
    ("dblink_exec", "runs SQL on another database"),
    ("dblink_open", "queries another database"),
    ("dblink_fetch", "queries another database"),
    ("dblink_send_query", "queries another database"),
    ("dblink_get_result", "queries another database"),
    ("dblink_connect", "connects to another database"),
    ("dblink_connect_u", "connects to another database"),
    ("pg_read_file", "reads a server file"),
    ("pg_read_binary_file", "reads a server file"),
    ("pg_ls_dir", "lists server files"),
    ("pg_stat_file", "reads server file metadata"),
    ("lo_import", "reads a server file"),
    ("lo_export", "writes a server file"),
    ("lo_get", "reads a large object"),
    ("lo_open", "reads a large object"),
    ("loread", "reads a large object"),
    ("lo_from_bytea", "writes a large object"),
    ("lo_put", "writes a large object"),
    ("lo_unlink", "deletes a large object"),
    ("set_config", "changes a setting (search_path games)"),
    ("current_setting", "reads session settings"),
    ("pg_sleep", "blocks the server"),
    ("pg_sleep_for", "blocks the server"),
    ("pg_sleep_until", "blocks the server"),
    ("pg_terminate_backend", "acts on other sessions"),
    ("pg_cancel_backend", "acts on other sessions"),
    ("pg_reload_conf", "acts on the server"),
    ("pg_rotate_logfile", "acts on the server"),
    ("pg_notify", "has side effects"),
    ("nextval", "has side effects"),
    ("setval", "has side effects"),
    ("pg_advisory_lock", "takes server locks"),
    ("pg_advisory_xact_lock", "takes server locks"),
    ("pg_try_advisory_lock", "takes server locks"),
    ("ts_stat", "runs SQL from a string"),
    ("xpath_table", "runs SQL from strings"),
    ("crosstab", "runs SQL from a string"),
    ("crosstab2", "runs SQL from a string"),
    ("crosstab3", "runs SQL from a string"),
    ("crosstab4", "runs SQL from a string"),
    ("connectby", "runs SQL from strings"),
    ("pg_stat_statements", "reads other users' queries"),
    ("pg_get_keywords", "reads the catalog"),
    (
        "pg_relation_size",
        "reveals table sizes (other tenants' row volume)",
    ),
    (
        "pg_table_size",
        "reveals table sizes (other tenants' row volume)",
    ),
    (
        "pg_total_relation_size",
        "reveals table sizes (other tenants' row volume)",
    ),
    (
        "pg_indexes_size",
        "reveals table sizes (other tenants' row volume)",
    ),
    ("pg_database_size", "reveals database sizes"),
    ("pg_tablespace_size", "reveals tablespace sizes"),
    (
        "currval",
        "reveals sequence state (other tenants' activity)",
    ),
    (
        "lastval",
        "reveals sequence state (other tenants' activity)",
    ),
    // MySQL / MariaDB.
    ("load_file", "reads a server file"),
    ("sleep", "blocks the server"),
    ("benchmark", "blocks the server"),
    ("sys_exec", "runs a command"),
    ("sys_eval", "runs a command"),
    ("get_lock", "takes server locks"),
    ("master_pos_wait", "blocks the server"),
    ("source_pos_wait", "blocks the server"),
    // SQLite.
    ("load_extension", "loads native code"),
    ("readfile", "reads a file"),
    ("writefile", "writes a file"),
    ("edit", "runs an editor"),
    ("fts3_tokenizer", "can load native code"),
];

/// Table-valued functions allowed in FROM (they only compute rows from
/// their arguments).
const SAFE_TABLE_FUNCTIONS: &[&str] = &[
    "generate_series",
    "unnest",
    "json_each",
    "json_each_text",
    "jsonb_each",
    "jsonb_each_text",
    "json_array_elements",
    "json_array_elements_text",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "json_to_recordset",
    "jsonb_to_recordset",
    "json_to_record",
    "jsonb_to_record",
    "regexp_split_to_table",
    "regexp_matches",
    "string_to_table",
    "json_tree",
];

fn last_part(name: &ObjectName) -> Cow<'_, str> {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| unicode_lower(&i.value))
        .unwrap_or_default()
}

/// The built-in deny list as a map, built once.
fn denied_map() -> &'static HashMap<&'static str, &'static str> {
    static M: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    M.get_or_init(|| DENIED.iter().copied().collect())
}

/// Checks one function name against the built-in list and the policy.
pub(crate) fn check_function(name: &ObjectName, policy: &FunctionPolicy) -> Result<()> {
    let short = last_part(name);
    // The whole name as printed (quotes included), lower case; for a plain
    // one-part name that is the short name again.
    let full: Cow<'_, str> = match name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] if i.quote_style.is_none() => short.clone(),
        _ => Cow::Owned(name.to_string().to_lowercase()),
    };
    let denied = |n: &str| {
        denied_map()
            .get(n)
            .map(|why| why.to_string())
            .or_else(|| {
                (n.starts_with("dblink")
                    || n.starts_with("lo_")
                    || n.starts_with("pg_read")
                    || n.starts_with("pg_ls_"))
                .then(|| "reads files, large objects or other databases".to_string())
            })
            .or_else(|| {
                n.starts_with("pg_stat_get")
                    .then(|| "reads table statistics (other tenants' row counts)".to_string())
            })
            .or_else(|| {
                policy
                    .deny
                    .contains(n)
                    .then(|| "denied by the policy".to_string())
            })
    };
    if let Some(reason) = denied(&short).or_else(|| denied(&full)) {
        return Err(Error::ForbiddenFunction {
            function: name.to_string(),
            reason,
        });
    }
    if let Some(allow) = &policy.allow {
        if !allow.contains(short.as_ref()) && !allow.contains(full.as_ref()) {
            return Err(Error::ForbiddenFunction {
                function: name.to_string(),
                reason: "not in the policy's function allow-list".into(),
            });
        }
    }
    Ok(())
}

/// Whether a table-valued function may appear in FROM.
pub(crate) fn check_table_function(name: &ObjectName, policy: &FunctionPolicy) -> Result<()> {
    check_function(name, policy)?;
    let short = last_part(name);
    if name.0.len() == 1 && SAFE_TABLE_FUNCTIONS.contains(&short.as_ref()) {
        Ok(())
    } else {
        Err(Error::ForbiddenFunction {
            function: name.to_string(),
            reason: "only known row-generating table functions (generate_series, unnest, json_each, ...) may be used in FROM".into(),
        })
    }
}

/// What the function check's walk learnt about the query's shape, for the
/// rewrite to skip work it can prove useless.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Some column is named with three or more parts (`schema.table.col`).
    pub long_names: bool,
}

/// Checks every function call in the query and, when `no_placeholders`,
/// refuses bind placeholders of the caller's own (they would collide with
/// the parameters sqlsandbox binds). One walk for both, which also notes
/// the query's [`Shape`].
pub(crate) fn check_all(
    query: &mut Query,
    policy: &FunctionPolicy,
    no_placeholders: bool,
) -> Result<Shape> {
    struct Check<'a> {
        policy: &'a FunctionPolicy,
        no_placeholders: bool,
        shape: Shape,
    }
    impl super::walk::Hooks for Check<'_> {
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
            match e {
                Expr::Function(f) => {
                    if let Err(err) = check_function(&f.name, self.policy) {
                        return ControlFlow::Break(err);
                    }
                }
                Expr::CompoundIdentifier(parts) if parts.len() >= 3 => {
                    self.shape.long_names = true;
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_value(&mut self, v: &mut ValueWithSpan) -> ControlFlow<Error> {
            if self.no_placeholders {
                if let Value::Placeholder(p) = &v.value {
                    return ControlFlow::Break(Error::unsupported(format!(
                        "the bind placeholder `{p}` in the query (sqlsandbox binds its own parameters)"
                    )));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut check = Check {
        policy,
        no_placeholders,
        shape: Shape { long_names: false },
    };
    super::walk::walk(query, &mut check)?;
    Ok(check.shape)
}
