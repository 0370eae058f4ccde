//! Live introspection (feature `live`): reads tables, columns and types
//! from a running PostgreSQL (`postgres://...`) or MySQL/MariaDB
//! (`mysql://...`) database, prints the `databases:` section of a policy
//! ([`schema_yaml`]), and checks a policy against the live database
//! ([`check_live`]).
//!
//! Types map to the policy's column types: integers to `integer`, exact and
//! floating numbers to `decimal`, character types to `text`, and `boolean`,
//! `date`, `timestamp` (with or without zone, MySQL `datetime`) and `uuid`
//! to themselves. Any other type (arrays, JSON, binary, geometry, ...) is
//! declared as `text` with a `# unknown type` comment in [`schema_yaml`],
//! so the output always loads; review those columns by hand.
//!
//! Findings of [`check_live`] use the lint [`Finding`] type with codes
//! `L101` (table missing), `L102` (column missing), `L103` (type
//! mismatch), `L104` (a custom sandbox's question does not prepare on the
//! server), `L105` (it returns a column its table does not have).

use std::fmt::Write as _;

use crate::access::group_grant;
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::lint::{Finding, Severity};
use crate::policy::{ColumnType, Policy, SandboxKind, TableGrant};

/// A column read from a live database.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveColumn {
    /// Its name.
    pub name: String,
    /// The server's type name (`data_type` of `information_schema`).
    pub raw_type: String,
    /// The policy type it maps to, `None` when unknown.
    pub ty: Option<ColumnType>,
}

/// A table read from a live database.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveTable {
    /// Its schema (MySQL: its database).
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Columns in declaration order.
    pub columns: Vec<LiveColumn>,
}

/// A live database: its dialect, name (from the URL) and tables.
#[derive(Debug, Clone)]
pub struct LiveSchema {
    /// `Postgres` or `Mysql`.
    pub dialect: Dialect,
    /// The database name in the URL.
    pub database: String,
    /// Its tables, sorted by schema and name.
    pub tables: Vec<LiveTable>,
}

/// Maps a server type name to a policy column type.
pub fn map_type(dialect: Dialect, raw: &str) -> Option<ColumnType> {
    let t = raw.to_ascii_lowercase();
    let t = t.split('(').next().unwrap_or("").trim();
    Some(match t {
        "smallint" | "integer" | "bigint" | "int" | "int2" | "int4" | "int8" | "tinyint"
        | "mediumint" | "serial" | "bigserial" => ColumnType::Integer,
        "numeric" | "decimal" | "real" | "double precision" | "double" | "float" | "float4"
        | "float8" => ColumnType::Decimal,
        "text" | "character varying" | "varchar" | "character" | "char" | "bpchar" | "citext"
        | "tinytext" | "mediumtext" | "longtext" | "enum" | "name" => ColumnType::Text,
        "boolean" | "bool" => ColumnType::Boolean,
        "date" => ColumnType::Date,
        "timestamp without time zone"
        | "timestamp with time zone"
        | "timestamp"
        | "timestamptz"
        | "datetime" => ColumnType::Timestamp,
        "uuid" => ColumnType::Uuid,
        _ => {
            let _ = dialect;
            return None;
        }
    })
}

fn live_error(e: impl std::error::Error + 'static) -> Error {
    Error::Io {
        path: "live database".into(),
        message: crate::error::chain(&e),
    }
}

/// The database name at the end of a URL (`.../name?opts`).
fn url_database(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    path.split('?').next().unwrap_or("").to_string()
}

/// A connection to a live database.
enum Conn {
    Pg(Box<postgres::Client>),
    My(Box<mysql::Conn>),
}

fn connect(url: &str) -> Result<(Dialect, Conn)> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let c = postgres::Client::connect(url, postgres::NoTls).map_err(live_error)?;
        Ok((Dialect::Postgres, Conn::Pg(Box::new(c))))
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let url = url.replacen("mariadb://", "mysql://", 1);
        let opts = mysql::Opts::from_url(&url).map_err(live_error)?;
        let c = mysql::Conn::new(opts).map_err(live_error)?;
        Ok((Dialect::Mysql, Conn::My(Box::new(c))))
    } else {
        let scheme = url.split_once("://").map_or("(none)", |(s, _)| s);
        Err(Error::Unknown {
            kind: "database URL scheme",
            name: format!("{scheme} (expected postgres://... or mysql://...)"),
        })
    }
}

const PG_COLUMNS: &str = "SELECT table_schema::text, table_name::text, column_name::text, data_type::text \
     FROM information_schema.columns \
     WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_schema NOT LIKE 'pg\\_%' \
     ORDER BY 1, 2, ordinal_position";

const MY_COLUMNS: &str = "SELECT CAST(table_schema AS CHAR), CAST(table_name AS CHAR), \
     CAST(column_name AS CHAR), CAST(data_type AS CHAR) \
     FROM information_schema.columns WHERE table_schema = DATABASE() \
     ORDER BY 1, 2, ordinal_position";

fn read_schema(dialect: Dialect, conn: &mut Conn, database: String) -> Result<LiveSchema> {
    let raw: Vec<(String, String, String, String)> = match conn {
        Conn::Pg(c) => c
            .query(PG_COLUMNS, &[])
            .map_err(live_error)?
            .into_iter()
            .map(|r| -> std::result::Result<_, postgres::Error> {
                Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(live_error)?,
        Conn::My(c) => {
            use mysql::prelude::Queryable;
            c.query(MY_COLUMNS).map_err(live_error)?
        }
    };
    let mut tables: Vec<LiveTable> = Vec::new();
    for (schema, table, column, ty) in raw {
        let col = LiveColumn {
            ty: map_type(dialect, &ty),
            name: column,
            raw_type: ty,
        };
        match tables.last_mut() {
            Some(t) if t.schema == schema && t.name == table => t.columns.push(col),
            _ => tables.push(LiveTable {
                schema,
                name: table,
                columns: vec![col],
            }),
        }
    }
    Ok(LiveSchema {
        dialect,
        database,
        tables,
    })
}

/// Reads tables, columns and types of the database at `url`.
pub fn introspect(url: &str) -> Result<LiveSchema> {
    let (dialect, mut conn) = connect(url)?;
    read_schema(dialect, &mut conn, url_database(url))
}

/// A YAML scalar: plain when safe, double-quoted otherwise.
fn yaml_key(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".into())
    }
}

/// A policy holding the `databases:` section for a live schema (with
/// `version: 1`, so it loads as it is; add groups to grant anything).
/// Columns of unknown types are declared `text`, with a comment naming the
/// real type.
pub fn schema_yaml(schema: &LiveSchema) -> String {
    let mut out = String::from("version: 1\ndatabases:\n");
    let name = if schema.database.is_empty() {
        "db".to_string()
    } else {
        schema.database.clone()
    };
    let _ = writeln!(out, "  {}:", yaml_key(&name));
    let _ = writeln!(
        out,
        "    dialect: {}",
        match schema.dialect {
            Dialect::Mysql => "mysql",
            _ => "postgres",
        }
    );
    out.push_str("    tables:\n");
    for t in &schema.tables {
        for c in t.columns.iter().filter(|c| c.ty.is_none()) {
            let _ = writeln!(
                out,
                "      # {}.{}.{}: unknown type `{}`, declared as text",
                t.schema,
                t.name,
                c.name,
                c.raw_type.replace(['\n', '\r'], " ")
            );
        }
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| {
                format!(
                    "{}: {}",
                    yaml_key(&c.name),
                    c.ty.unwrap_or(ColumnType::Text)
                )
            })
            .collect();
        let key = match schema.dialect {
            Dialect::Mysql => t.name.clone(),
            _ => format!("{}.{}", t.schema, t.name),
        };
        let _ = writeln!(out, "      {}:", yaml_key(&key));
        let _ = writeln!(out, "        columns: {{{}}}", cols.join(", "));
    }
    out
}

fn finding(code: &'static str, severity: Severity, key: String, message: String) -> Finding {
    Finding {
        code,
        severity,
        line: None,
        key,
        message,
    }
}

/// The SQL type name a `{{variable}}` placeholder is cast to when
/// preparing a question.
fn sql_type(dialect: Dialect, ty: ColumnType) -> &'static str {
    match (dialect, ty) {
        (Dialect::Mysql, ColumnType::Integer) => "SIGNED",
        (Dialect::Mysql, ColumnType::Decimal) => "DECIMAL(38,10)",
        (Dialect::Mysql, ColumnType::Text) | (Dialect::Mysql, ColumnType::Uuid) => "CHAR",
        (Dialect::Mysql, ColumnType::Boolean) => "SIGNED",
        (Dialect::Mysql, ColumnType::Date) => "DATE",
        (Dialect::Mysql, ColumnType::Timestamp) => "DATETIME",
        (_, ColumnType::Integer) => "bigint",
        (_, ColumnType::Decimal) => "numeric",
        (_, ColumnType::Text) => "text",
        (_, ColumnType::Boolean) => "boolean",
        (_, ColumnType::Date) => "date",
        (_, ColumnType::Timestamp) => "timestamp",
        (_, ColumnType::Uuid) => "uuid",
    }
}

/// A question's SQL with every `{{variable}}` replaced by a typed `NULL`.
fn with_typed_nulls(
    sql: &str,
    dialect: Dialect,
    ty: impl Fn(&str) -> Option<ColumnType>,
) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some((before, after)) = rest.split_once("{{") {
        out.push_str(before);
        let Some((var, tail)) = after.split_once("}}") else {
            rest = after;
            break;
        };
        let t = ty(var.trim()).unwrap_or(ColumnType::Text);
        let _ = write!(out, "CAST(NULL AS {})", sql_type(dialect, t));
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// The output column names of `sql`, prepared on the server.
fn prepared_columns(conn: &mut Conn, sql: &str) -> std::result::Result<Vec<String>, String> {
    match conn {
        Conn::Pg(c) => c
            .prepare(sql)
            .map(|s| s.columns().iter().map(|c| c.name().to_string()).collect())
            .map_err(|e| e.to_string()),
        Conn::My(c) => {
            use mysql::prelude::Queryable;
            let stmt = c.prep(sql).map_err(|e| e.to_string())?;
            let cols = stmt
                .columns()
                .iter()
                .map(|c| c.name_str().into_owned())
                .collect();
            let _ = c.close(stmt);
            Ok(cols)
        }
    }
}

/// Checks policy database `database` (default: the only one) against the
/// live database at `url`: declared tables and columns exist with
/// compatible types, and each custom sandbox's question prepares on the
/// server and returns only columns of its table.
pub fn check_live(policy: &Policy, database: Option<&str>, url: &str) -> Result<Vec<Finding>> {
    let db = match database {
        Some(name) => policy.database(name).ok_or_else(|| Error::Unknown {
            kind: "database",
            name: name.to_string(),
        })?,
        None => {
            let mut it = policy.databases.values();
            match (it.next(), it.next()) {
                (Some(db), None) => db,
                _ => {
                    return Err(Error::DatabaseRequired {
                        choices: policy.database_names().collect::<Vec<_>>().join(", "),
                    })
                }
            }
        }
    };
    let (dialect, mut conn) = connect(url)?;
    let live = read_schema(dialect, &mut conn, url_database(url))?;
    let mut out = Vec::new();
    let find = |schema: &str, name: &str| -> Option<&LiveTable> {
        live.tables.iter().find(|t| match dialect {
            Dialect::Mysql => t.name.eq_ignore_ascii_case(name),
            _ => t.schema == schema && t.name == name,
        })
    };
    for t in db.tables() {
        let key = format!("databases.{}.tables.{}", db.name, t.qualified());
        let Some(lt) = find(&t.key.schema, &t.key.name) else {
            out.push(finding(
                "L101",
                Severity::Error,
                key,
                format!(
                    "table `{}` does not exist in the live database",
                    t.qualified()
                ),
            ));
            continue;
        };
        for c in &t.columns {
            let Some(lc) = lt
                .columns
                .iter()
                .find(|x| x.name.eq_ignore_ascii_case(&c.key))
            else {
                out.push(finding(
                    "L102",
                    Severity::Error,
                    format!("{key}.columns.{}", c.name),
                    format!("column `{}` does not exist in the live table", c.name),
                ));
                continue;
            };
            match lc.ty {
                Some(ty) if ty == c.ty => {}
                Some(ty)
                    if matches!(
                        (ty, c.ty),
                        (ColumnType::Integer, ColumnType::Decimal)
                            | (ColumnType::Decimal, ColumnType::Integer)
                    ) =>
                {
                    out.push(finding(
                        "L103",
                        Severity::Info,
                        format!("{key}.columns.{}", c.name),
                        format!(
                            "declared {} but the live column is `{}` ({ty}); compatible",
                            c.ty, lc.raw_type
                        ),
                    ))
                }
                Some(ty) => out.push(finding(
                    "L103",
                    Severity::Error,
                    format!("{key}.columns.{}", c.name),
                    format!(
                        "declared {} but the live column is `{}` ({ty})",
                        c.ty, lc.raw_type
                    ),
                )),
                None => out.push(finding(
                    "L103",
                    Severity::Warning,
                    format!("{key}.columns.{}", c.name),
                    format!(
                        "declared {} but the live column has type `{}`, which sqlsandbox does not map",
                        c.ty, lc.raw_type
                    ),
                )),
            }
        }
        // Custom sandboxes on this table.
        let mut seen: Vec<&str> = Vec::new();
        for g in policy.groups.values() {
            let TableGrant::Sandbox(s) = group_grant(g.data.get(&db.name), t) else {
                continue;
            };
            let SandboxKind::Custom {
                question,
                parameters,
            } = &s.kind
            else {
                continue;
            };
            let Some(q) = policy.question(question) else {
                continue;
            };
            if seen.contains(&q.name.as_str()) {
                continue;
            }
            seen.push(q.name.as_str());
            let qkey = format!("questions.{}", q.name);
            let sql = with_typed_nulls(&q.sql, dialect, |v| {
                parameters
                    .iter()
                    .find(|p| p.variable == v)
                    .and_then(|p| p.ty)
                    .or_else(|| q.inferred.get(v).copied())
            });
            match prepared_columns(&mut conn, &sql) {
                Err(e) => out.push(finding(
                    "L104",
                    Severity::Error,
                    qkey,
                    format!(
                        "the custom sandbox of `{}` does not prepare on the server: {}",
                        t.qualified(),
                        e.replace(['\n', '\r'], " ")
                    ),
                )),
                Ok(cols) => {
                    for c in cols {
                        if !lt.columns.iter().any(|x| x.name.eq_ignore_ascii_case(&c)) {
                            out.push(finding(
                                "L105",
                                Severity::Error,
                                qkey.clone(),
                                format!(
                                    "the custom sandbox of `{}` returns `{c}`, which is not a column of the table",
                                    t.qualified()
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_map_or_stay_unknown() {
        let pg = Dialect::Postgres;
        assert_eq!(map_type(pg, "integer"), Some(ColumnType::Integer));
        assert_eq!(map_type(pg, "numeric"), Some(ColumnType::Decimal));
        assert_eq!(map_type(pg, "character varying"), Some(ColumnType::Text));
        assert_eq!(
            map_type(pg, "timestamp with time zone"),
            Some(ColumnType::Timestamp)
        );
        assert_eq!(
            map_type(Dialect::Mysql, "datetime"),
            Some(ColumnType::Timestamp)
        );
        assert_eq!(map_type(pg, "jsonb"), None);
        assert_eq!(map_type(pg, ""), None);
    }

    #[test]
    fn urls_and_placeholders() {
        assert_eq!(url_database("postgres://u:p@h:5/db?sslmode=x"), "db");
        assert_eq!(url_database("mysql://h"), "");
        assert_eq!(url_database("nonsense"), "");
        let sql = with_typed_nulls(
            "SELECT a FROM t WHERE x = {{ v }} AND y = {{w}}",
            Dialect::Postgres,
            |v| (v == "v").then_some(ColumnType::Integer),
        );
        assert_eq!(
            sql,
            "SELECT a FROM t WHERE x = CAST(NULL AS bigint) AND y = CAST(NULL AS text)"
        );
        assert_eq!(
            with_typed_nulls("x {{ broken", Dialect::Mysql, |_| None),
            "x  broken"
        );
        assert!(connect("ftp://x").is_err());
    }

    #[test]
    fn schema_yaml_quotes_odd_names() {
        let s = LiveSchema {
            dialect: Dialect::Postgres,
            database: "w h".into(),
            tables: vec![LiveTable {
                schema: "public".into(),
                name: "Odd: name".into(),
                columns: vec![LiveColumn {
                    name: "yes".into(),
                    raw_type: "jsonb".into(),
                    ty: None,
                }],
            }],
        };
        let y = schema_yaml(&s);
        assert!(y.contains("\"w h\":"), "{y}");
        assert!(y.contains("\"public.Odd: name\":"), "{y}");
        assert!(y.contains("{\"yes\": text}"), "{y}");
        assert!(y.contains("unknown type `jsonb`"), "{y}");
    }
}
