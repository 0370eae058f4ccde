//! The SQL dialects sqlsandbox understands, and the questions the rest of the
//! pipeline asks of them (case folding, quoting, placeholders, fencing).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlparser::ast::Ident;
use sqlparser::dialect::{
    BigQueryDialect, ClickHouseDialect, DatabricksDialect, Dialect as ParserDialect, DuckDbDialect,
    GenericDialect, MsSqlDialect, MySqlDialect, PostgreSqlDialect, RedshiftSqlDialect,
    SQLiteDialect, SnowflakeDialect,
};

use crate::error::Error;

/// `s` in ASCII lower case, borrowed when it has no ASCII capital.
fn ascii_lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// `s` in full Unicode lower case, borrowed when lowering changes nothing.
pub(crate) fn unicode_lower(s: &str) -> Cow<'_, str> {
    if s.chars().all(|c| c.is_ascii() && !c.is_ascii_uppercase()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// A target SQL dialect.
///
/// ```
/// use sqlsandbox::Dialect;
/// let d: Dialect = "postgres".parse().unwrap();
/// assert_eq!(d.placeholder(1), "$1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// PostgreSQL (unquoted names fold to lower case).
    Postgres,
    /// MySQL and MariaDB (backslash escapes in strings; case-insensitive
    /// matching of names, the conservative choice).
    Mysql,
    /// SQLite (case-insensitive names).
    Sqlite,
    /// Generic ANSI-ish SQL (case-insensitive matching of unquoted names).
    Generic,
    /// DuckDB (proven by execution).
    Duckdb,
    /// ClickHouse (proven by execution on chDB). Names are case-sensitive
    /// in ClickHouse; they are matched case-insensitively here, so that a
    /// differently-cased spelling can never dodge a sandbox.
    Clickhouse,
    /// Spark SQL and Databricks (proven by execution on Spark in local
    /// mode; backslash escapes in strings, as Spark's parser has them).
    Spark,
    /// Snowflake (checked by parsing only; unquoted names fold to upper
    /// case, matched case-insensitively here).
    Snowflake,
    /// BigQuery (checked by parsing only).
    Bigquery,
    /// Amazon Redshift (checked by parsing only).
    Redshift,
    /// Microsoft SQL Server (checked by parsing only).
    Mssql,
    /// Trino and Presto (checked by parsing only).
    Trino,
}

impl Dialect {
    /// Why a catalog (three-part name) destination cannot be used in this
    /// dialect, or `None` where catalogs exist.
    pub fn no_catalogs(self) -> Option<&'static str> {
        match self {
            Dialect::Postgres => Some("PostgreSQL cannot read another database's tables in a query (\"cross-database references are not implemented\"): route to a database or a schema"),
            Dialect::Mysql => Some("in MySQL and MariaDB a database is a schema: route with `schema:`"),
            Dialect::Sqlite => Some("in SQLite an attached database is a schema: route with `schema:`"),
            Dialect::Clickhouse => Some("in ClickHouse a database is a schema: route with `schema:`"),
            Dialect::Mssql => Some("SQL Server reads another database through `database.schema.table`, but sqlsandbox does not route across SQL Server databases yet: route with `schema:` or a database connection"),
            Dialect::Generic
            | Dialect::Duckdb
            | Dialect::Spark
            | Dialect::Snowflake
            | Dialect::Bigquery
            | Dialect::Redshift
            | Dialect::Trino => None,
        }
    }

    /// All supported dialects.
    pub const ALL: [Dialect; 12] = [
        Dialect::Postgres,
        Dialect::Mysql,
        Dialect::Sqlite,
        Dialect::Generic,
        Dialect::Duckdb,
        Dialect::Clickhouse,
        Dialect::Spark,
        Dialect::Snowflake,
        Dialect::Bigquery,
        Dialect::Redshift,
        Dialect::Mssql,
        Dialect::Trino,
    ];

    /// Whether rewrites for this dialect are proven by running them on the
    /// engine (`true`) or checked by parsing only (the warehouses this
    /// project cannot run).
    pub fn executed(self) -> bool {
        !matches!(
            self,
            Dialect::Generic
                | Dialect::Snowflake
                | Dialect::Bigquery
                | Dialect::Redshift
                | Dialect::Mssql
                | Dialect::Trino
        )
    }

    /// Whether a backslash in a string literal escapes the next character
    /// (MySQL, ClickHouse, Spark, Snowflake, BigQuery, Redshift), as the
    /// engine's own parser and sqlparser's tokenizer for it agree.
    pub fn backslash_escapes(self) -> bool {
        self.parser().supports_string_literal_backslash_escape()
    }

    /// The dialect's name as used in policies and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
            Dialect::Generic => "generic",
            Dialect::Duckdb => "duckdb",
            Dialect::Clickhouse => "clickhouse",
            Dialect::Spark => "spark",
            Dialect::Snowflake => "snowflake",
            Dialect::Bigquery => "bigquery",
            Dialect::Redshift => "redshift",
            Dialect::Mssql => "mssql",
            Dialect::Trino => "trino",
        }
    }

    /// The sqlparser dialect used to parse input and re-parse output.
    pub fn parser(self) -> &'static dyn ParserDialect {
        match self {
            Dialect::Postgres => &PostgreSqlDialect {},
            Dialect::Mysql => &MySqlDialect {},
            Dialect::Sqlite => &SQLiteDialect {},
            Dialect::Generic => &GenericDialect {},
            Dialect::Duckdb => &DuckDbDialect {},
            Dialect::Clickhouse => &ClickHouseDialect {},
            // Databricks' tokenizer, not sqlparser's Spark one: Spark SQL
            // reads backslash escapes in strings, and a tokenizer that did
            // not would see a different query than the engine.
            Dialect::Spark => &DatabricksDialect {},
            Dialect::Snowflake => &SnowflakeDialect,
            Dialect::Bigquery => &BigQueryDialect,
            Dialect::Redshift => &RedshiftSqlDialect {},
            Dialect::Mssql => &MsSqlDialect {},
            // sqlparser has no Trino dialect; its generic one reads Trino's
            // standard strings and double-quoted names.
            Dialect::Trino => &GenericDialect {},
        }
    }

    /// The key an identifier is compared by.
    ///
    /// PostgreSQL folds unquoted names to lower case and keeps quoted names
    /// exact. MySQL/MariaDB table names may or may not be case-sensitive
    /// depending on the server (`lower_case_table_names`), and SQLite ignores
    /// case; for them every name is compared case-insensitively, so that a
    /// differently-cased spelling can never dodge a sandbox.
    ///
    /// Folding is ASCII-only, as in the databases: PostgreSQL does not fold
    /// `K` (U+212A KELVIN SIGN) to `k`, so neither may sqlsandbox.
    ///
    /// Borrows the identifier's text when it is already in normal form (the
    /// common case), so comparing names allocates nothing.
    pub fn normalize(self, ident: &Ident) -> Cow<'_, str> {
        match self {
            Dialect::Postgres if ident.quote_style.is_some() => Cow::Borrowed(&ident.value),
            _ => ascii_lower(&ident.value),
        }
    }

    /// The key a CTE name is matched by: the database's own rule where it
    /// is certain (PostgreSQL folding), the exact spelling elsewhere (MySQL's
    /// CTE-name case rules depend on the server), so that a reference is
    /// only ever taken for a CTE when the database will take it so too.
    pub fn cte_key(self, ident: &Ident) -> Cow<'_, str> {
        match self {
            Dialect::Postgres => self.normalize(ident),
            _ => Cow::Borrowed(&ident.value),
        }
    }

    /// The key a name written in the policy file is compared by (policy
    /// names are taken as the database's stored spelling).
    pub fn normalize_policy_name(self, name: &str) -> String {
        match self {
            Dialect::Postgres => name.to_string(),
            _ => name.to_ascii_lowercase(),
        }
    }

    /// The quote character for identifiers.
    pub fn identifier_quote(self) -> char {
        match self {
            Dialect::Mysql | Dialect::Spark | Dialect::Bigquery | Dialect::Clickhouse => '`',
            // Brackets, not double quotes: with QUOTED_IDENTIFIER OFF a
            // double-quoted name is a string.
            Dialect::Mssql => '[',
            _ => '"',
        }
    }

    /// Builds an identifier for a name taken from the policy, quoted when it
    /// is not a plain lower-case word.
    pub fn ident(self, name: &str) -> Ident {
        let plain = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if plain && !is_reserved(name) {
            Ident::new(name)
        } else {
            Ident::with_quote(self.identifier_quote(), name)
        }
    }

    /// The text of bind parameter `n` (1-based) in this dialect.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres | Dialect::Duckdb | Dialect::Redshift => format!("${n}"),
            _ => "?".to_string(),
        }
    }

    /// Whether placeholders are numbered (`$1`), so one can appear twice.
    pub fn numbered_placeholders(self) -> bool {
        matches!(
            self,
            Dialect::Postgres | Dialect::Duckdb | Dialect::Redshift
        )
    }

    /// Why this dialect cannot take bind parameters, if it cannot.
    pub fn no_bind_parameters(self) -> Option<&'static str> {
        match self {
            Dialect::Clickhouse => Some("ClickHouse binds values as typed `{name:Type}` query parameters, which sqlparser cannot print; use literals (the default), which are escaped for ClickHouse"),
            _ => None,
        }
    }

    /// The statement that makes a session act as a database role, or why
    /// the engine has none.
    pub fn impersonation(self) -> std::result::Result<&'static str, &'static str> {
        match self {
            Dialect::Postgres => Ok("SET ROLE"),
            Dialect::Mysql => Ok("SET ROLE"),
            Dialect::Clickhouse => Ok("SET ROLE"),
            Dialect::Snowflake => Ok("USE ROLE"),

            Dialect::Mssql => Ok("EXECUTE AS USER"),
            Dialect::Sqlite => Err("SQLite has no database roles"),
            Dialect::Generic => Err("generic SQL has no standard way to switch roles"),
            Dialect::Duckdb => Err("DuckDB has no database roles"),
            Dialect::Spark => Err("Spark SQL and Databricks have no statement to switch to another principal in a session"),
            Dialect::Bigquery => Err("BigQuery has no role statement (impersonate a service account in the client instead)"),
            Dialect::Redshift => Err("Redshift has no statement to take on a role in a session (SET SESSION AUTHORIZATION needs a superuser connection)"),
            Dialect::Trino => Err("Trino's SET ROLE enables a role the session's user already holds; it cannot act as another user, so it is not impersonation"),
        }
    }

    /// The optimisation fence a sandbox subquery gets, so that the
    /// database cannot evaluate the user's predicates on rows the sandbox
    /// filters out (an error such as division by zero would reveal them):
    /// PostgreSQL neither flattens nor pushes quals into a subquery with
    /// `OFFSET`; MySQL/MariaDB materialise a derived table with `LIMIT`
    /// instead of merging it or pushing conditions into it; SQLite runs a
    /// subquery with `LIMIT` as a co-routine without push-down. DuckDB keeps
    /// an `OFFSET 0` as a limit operator no filter passes (it drops a
    /// `LIMIT` larger than any table); ClickHouse keeps a `LIMIT` step below
    /// the outer filter (it drops `OFFSET 0`); Spark keeps a `GlobalLimit`
    /// (its limits are 32-bit, and it gathers the sandbox's rows into one
    /// partition: a cost paid only when a fence is needed). The probes in
    /// the engine tests prove each. Generic SQL has no known fence. The
    /// warehouses that cannot be run here have no proven one: a rewrite that
    /// needs a fence there is refused.
    pub fn fence(self) -> Fence {
        match self {
            Dialect::Postgres => Fence::OffsetZero,
            Dialect::Mysql => Fence::LimitMax,
            Dialect::Sqlite => Fence::LimitMinusOne,
            Dialect::Generic => Fence::None,
            Dialect::Duckdb => Fence::OffsetZero,
            Dialect::Clickhouse => Fence::LimitI64Max,
            Dialect::Spark => Fence::LimitI32Max,
            Dialect::Snowflake
            | Dialect::Bigquery
            | Dialect::Redshift
            | Dialect::Mssql
            | Dialect::Trino => Fence::Unproven,
        }
    }

    /// The schema an unqualified name resolves to when the policy says none.
    pub fn default_schema(self) -> &'static str {
        match self {
            Dialect::Postgres | Dialect::Generic | Dialect::Redshift => "public",
            Dialect::Sqlite | Dialect::Duckdb => "main",
            Dialect::Mysql => "test",
            Dialect::Clickhouse | Dialect::Spark => "default",
            Dialect::Snowflake => "public",
            Dialect::Mssql => "dbo",
            Dialect::Bigquery => "dataset",
            Dialect::Trino => "default",
        }
    }
}

/// The clause that fences a sandbox subquery from the outer query's
/// predicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// `OFFSET 0` (PostgreSQL, DuckDB).
    OffsetZero,
    /// `LIMIT 18446744073709551615` (MySQL/MariaDB: the documented "all rows").
    LimitMax,
    /// `LIMIT -1` (SQLite: no limit).
    LimitMinusOne,
    /// `LIMIT 9223372036854775807` (ClickHouse: a limit no table reaches,
    /// below which no filter is pushed).
    LimitI64Max,
    /// `LIMIT 2147483647` (Spark, whose limits are 32-bit: a sandbox of
    /// more rows than that would be cut short, never widened).
    LimitI32Max,
    /// No fence (generic SQL: no guarantee either way).
    None,
    /// No fence is proven on this engine: a rewrite that would need one is
    /// refused (fail closed) unless the database says `fence: never`.
    Unproven,
}

/// Words that must be quoted when used as identifiers (a conservative list).
fn is_reserved(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "all",
        "and",
        "any",
        "as",
        "asc",
        "between",
        "by",
        "case",
        "cast",
        "check",
        "column",
        "constraint",
        "create",
        "cross",
        "current_date",
        "current_time",
        "current_user",
        "default",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "from",
        "full",
        "grant",
        "group",
        "having",
        "in",
        "inner",
        "intersect",
        "into",
        "is",
        "join",
        "key",
        "lateral",
        "left",
        "like",
        "limit",
        "natural",
        "not",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "outer",
        "primary",
        "references",
        "right",
        "select",
        "table",
        "then",
        "to",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "values",
        "when",
        "where",
        "window",
        "with",
        "order",
        "rows",
        "range",
        "interval",
        "index",
    ];
    RESERVED.contains(&name)
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dialect {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" | "pg" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::Mysql),
            "sqlite" => Ok(Dialect::Sqlite),
            "generic" | "ansi" => Ok(Dialect::Generic),
            "duckdb" => Ok(Dialect::Duckdb),
            "clickhouse" | "chdb" => Ok(Dialect::Clickhouse),
            "spark" | "sparksql" | "databricks" => Ok(Dialect::Spark),
            "snowflake" => Ok(Dialect::Snowflake),
            "bigquery" => Ok(Dialect::Bigquery),
            "redshift" => Ok(Dialect::Redshift),
            "mssql" | "sqlserver" | "tsql" => Ok(Dialect::Mssql),
            "trino" | "presto" => Ok(Dialect::Trino),
            _ => Err(Error::Unknown {
                kind: "dialect",
                name: s.to_string(),
            }),
        }
    }
}
