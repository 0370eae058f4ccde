//! The `sqlsandbox` command line.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{ArgAction, CommandFactory, Parser, Subcommand, ValueEnum};
use sqlsandbox::who::{key_values, Who as Caller};
use sqlsandbox::{explain, lint, AttributeValue, Dialect, Error, Options, Policy, Principal};

#[path = "cli/diag.rs"]
mod diag;

use diag::{Diagnostic, Position, Severity};

/// mimalloc: a policy loads with about 0.85x the CPU it takes with the
/// system allocator (Cargo.toml, docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The policy file found in the current directory when neither --policy
/// nor SQLSANDBOX_POLICY names one.
const DISCOVERED_POLICY: &str = "sqlsandbox.yaml";

/// Writes to standard output; a closed pipe (`| head`) ends the command
/// quietly instead of panicking as `print!` would.
macro_rules! out {
    ($($arg:tt)*) => {
        write_out(format_args!($($arg)*))?
    };
}

macro_rules! outln {
    ($($arg:tt)*) => {
        write_out(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

#[derive(Parser)]
#[command(
    name = "sqlsandbox",
    version,
    about = "Row- and column-level security compiler for SQL analytics",
    long_about = "Row- and column-level security compiler for SQL analytics.\n\n\
        The policy comes from --policy FILE (`-`: standard input), else the \
        SQLSANDBOX_POLICY environment variable, else sqlsandbox.yaml in the \
        current directory. Exit codes: 0 done, 1 refused (or a failed check), \
        2 bad input or usage. Diagnostics are coloured only on a terminal and \
        when NO_COLOR is unset or empty; with --format json, errors are JSON \
        on standard output."
)]
struct Cli {
    /// Print only what was asked for and errors: no warnings, notes or
    /// summaries.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Say more on standard error (the policy file used).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// The policy file: `--policy FILE`, `--policy -` (standard input),
/// `SQLSANDBOX_POLICY`, or `sqlsandbox.yaml` in the current directory.
#[derive(clap::Args)]
struct PolicyArg {
    /// The policy file, `-` for standard input [default:
    /// $SQLSANDBOX_POLICY, else ./sqlsandbox.yaml].
    #[arg(long, env = "SQLSANDBOX_POLICY", value_name = "FILE")]
    policy: Option<String>,
}

/// A dialect (`--dialect`).
#[derive(Clone, Copy, ValueEnum)]
enum DialectArg {
    /// PostgreSQL.
    #[value(alias = "postgresql", alias = "pg")]
    Postgres,
    /// MySQL and MariaDB.
    #[value(alias = "mariadb")]
    Mysql,
    /// SQLite.
    Sqlite,
    /// ANSI SQL.
    #[value(alias = "ansi")]
    Generic,
    /// DuckDB.
    Duckdb,
    /// ClickHouse.
    #[value(alias = "chdb")]
    Clickhouse,
    /// Spark SQL and Databricks.
    #[value(alias = "databricks", alias = "sparksql")]
    Spark,
    /// Snowflake (checked by parsing).
    Snowflake,
    /// BigQuery (checked by parsing).
    Bigquery,
    /// Amazon Redshift (checked by parsing).
    Redshift,
    /// SQL Server (checked by parsing).
    #[value(alias = "sqlserver", alias = "tsql")]
    Mssql,
    /// Trino and Presto (checked by parsing).
    #[value(alias = "presto")]
    Trino,
}

impl From<DialectArg> for Dialect {
    fn from(d: DialectArg) -> Dialect {
        match d {
            DialectArg::Postgres => Dialect::Postgres,
            DialectArg::Mysql => Dialect::Mysql,
            DialectArg::Sqlite => Dialect::Sqlite,
            DialectArg::Generic => Dialect::Generic,
            DialectArg::Duckdb => Dialect::Duckdb,
            DialectArg::Clickhouse => Dialect::Clickhouse,
            DialectArg::Spark => Dialect::Spark,
            DialectArg::Snowflake => Dialect::Snowflake,
            DialectArg::Bigquery => Dialect::Bigquery,
            DialectArg::Redshift => Dialect::Redshift,
            DialectArg::Mssql => Dialect::Mssql,
            DialectArg::Trino => Dialect::Trino,
        }
    }
}

/// `key=value` for --attr and --var: a value without `=` is a usage error.
fn key_value(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(s.to_string()),
        _ => Err(format!("expected key=value, got `{s}`")),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Sql,
    Json,
}

/// The syntax of a `--builder` question.
#[derive(Clone, Copy, ValueEnum)]
enum BuilderFormat {
    Json,
    Yaml,
}

#[derive(Clone, Copy, ValueEnum)]
enum TextOrJson {
    Text,
    Json,
}

/// Who is asking: one of --user, --claims, --api-key, or --group/--attr.
#[derive(clap::Args)]
struct Who {
    /// A user declared in the policy.
    #[arg(long, conflicts_with_all = ["group", "attr", "claims", "api_key", "anonymous"])]
    user: Option<String>,
    /// The anonymous principal of public embedding (all_users only).
    #[arg(long, conflicts_with_all = ["group", "attr", "claims", "api_key"])]
    anonymous: bool,
    /// A JSON claims file: {"sub": ..., "groups": [...], "attributes": {...}}.
    #[arg(long, conflicts_with_all = ["group", "attr", "api_key"])]
    claims: Option<String>,
    /// An API key secret (matched by SHA-256 against the policy's api_keys).
    #[arg(long, conflicts_with_all = ["group", "attr"])]
    api_key: Option<String>,
    /// A group of the principal (repeatable).
    #[arg(long)]
    group: Vec<String>,
    /// A user attribute `key=value` (repeat a key for a multi-valued attribute).
    #[arg(long, value_parser = key_value)]
    attr: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the sandboxed SQL for a principal.
    Rewrite {
        #[command(flatten)]
        policy: PolicyArg,
        #[command(flatten)]
        who: Who,
        /// The policy database the query runs on (default: the only one).
        #[arg(long)]
        database: Option<String>,
        /// Override the database's dialect.
        #[arg(long, value_enum)]
        dialect: Option<DialectArg>,
        /// Return attribute values as bind parameters.
        #[arg(long)]
        params: bool,
        /// Override the database's `fence:` setting: `auto` fences sandboxes
        /// only when the query holds an error-prone expression the database
        /// could evaluate on other tenants' rows; `always`; `never` (accepts
        /// that error side channel).
        #[arg(long, value_parser = ["auto", "always", "never"])]
        fence: Option<String>,
        /// Prefix the SQL with the impersonated role's statement (`SET ROLE …;`).
        #[arg(long)]
        emit_role: bool,
        /// With --emit-role on PostgreSQL: `SET LOCAL ROLE` (inside a transaction).
        #[arg(long, requires = "emit_role")]
        local_role: bool,
        /// Run a saved question by name instead of SQL.
        #[arg(long, conflicts_with = "sql")]
        question: Option<String>,
        /// A query-builder question (JSON or YAML file, `-` for standard
        /// input) instead of SQL; needs no native SQL permission.
        #[arg(long, conflicts_with_all = ["sql", "question"])]
        builder: Option<String>,
        /// The syntax of --builder (default: YAML for `.yaml`/`.yml` files,
        /// JSON otherwise).
        #[arg(long, value_enum, requires = "builder")]
        builder_format: Option<BuilderFormat>,
        /// A value for a saved question's `{{variable}}`: `name=value` (repeatable).
        #[arg(long = "var", requires = "question", value_parser = key_value)]
        vars: Vec<String>,
        /// Longest SQL text accepted, in bytes [default: 1048576].
        #[arg(long, value_name = "BYTES")]
        max_sql_bytes: Option<usize>,
        /// Deepest nesting the parser accepts [default: 64].
        #[arg(long, value_name = "N")]
        max_depth: Option<usize>,
        /// Most operators a query may contain [default: 5000].
        #[arg(long, value_name = "N")]
        max_operators: Option<usize>,
        /// Output format (with `json`, errors are JSON on standard output too).
        #[arg(long, value_enum, default_value = "sql")]
        format: Format,
        /// The SQL (or `-` / nothing to read standard input).
        sql: Option<String>,
    },
    /// Explain what a principal may read and why (optionally for a query).
    Explain {
        #[command(flatten)]
        policy: PolicyArg,
        #[command(flatten)]
        who: Who,
        /// The who-sees-what matrix over every user of the policy.
        #[arg(long, conflicts_with_all = ["user", "claims", "api_key", "group", "attr", "sql"])]
        all_users: bool,
        /// The policy database for the query.
        #[arg(long)]
        database: Option<String>,
        /// Output format (with `json`, errors are JSON on standard output too).
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
        /// A query-builder question (JSON or YAML file, `-` for standard
        /// input) to explain too.
        #[arg(long, conflicts_with_all = ["sql", "all_users"])]
        builder: Option<String>,
        /// The syntax of --builder (default: YAML for `.yaml`/`.yml` files,
        /// JSON otherwise).
        #[arg(long, value_enum, requires = "builder")]
        builder_format: Option<BuilderFormat>,
        /// A query to explain too.
        sql: Option<String>,
    },
    /// Validate and lint a policy; exits 1 when a lint is an error. With
    /// --database-url, also check it against a live database.
    Check {
        #[command(flatten)]
        policy: PolicyArg,
        /// A live database (`postgres://...` or `mysql://...`) to check the
        /// policy against: tables, columns, types, custom sandboxes.
        #[arg(long)]
        database_url: Option<String>,
        /// The policy database the live one stands for (default: the only one).
        #[arg(long, requires = "database_url")]
        database: Option<String>,
        /// Output format (with `json`, errors are JSON on standard output too,
        /// also when the policy does not load).
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
        /// Fail (exit 1) on warnings too.
        #[arg(long)]
        strict: bool,
        /// Do not report this lint (`L003`; repeatable).
        #[arg(long, value_name = "CODE")]
        ignore: Vec<String>,
    },
    /// Run policy test files: each case names a principal and a query and
    /// expects a refusal code, the exact rewritten SQL, or rows on a
    /// fixture. Exits 1 when a case fails, 2 on a bad test file or policy.
    Test {
        /// The policy (default: each file's `policy:` key).
        #[arg(long)]
        policy: Option<String>,
        /// Rewrite failing `sql:` expectations in place with the SQL produced.
        #[arg(long)]
        update: bool,
        /// Also write a JUnit XML report to this file.
        #[arg(long)]
        junit: Option<String>,
        /// Run `rows` cases on this live database (`postgres://...` or
        /// `mysql://...`; feature `live`) instead of the fixtures.
        #[arg(long)]
        database_url: Option<String>,
        /// Test files, or directories searched for `*.test.yaml`.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Print the `databases:` section of a policy for a live database.
    Schema {
        /// `postgres://user@host/db` or `mysql://user@host/db`.
        #[arg(long)]
        database_url: String,
    },
    /// Export DDL that makes the database enforce the policy natively
    /// (defence in depth behind the rewrite).
    Export {
        #[command(flatten)]
        policy: PolicyArg,
        /// The target: `postgres` (alias `postgres-rls`) or `mysql` (alias `mariadb`).
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Export only this policy database.
        #[arg(long)]
        database: Option<String>,
        /// Prefix of the role names.
        #[arg(long, default_value = "sqlsandbox_")]
        role_prefix: String,
        /// A live PostgreSQL database to migrate (with --plan or --apply).
        #[arg(long)]
        database_url: Option<String>,
        /// Print the migration from the live database to the policy's
        /// export, dropping what sqlsandbox created that the policy no
        /// longer has (needs --database-url; changes nothing).
        #[arg(long, requires = "database_url", conflicts_with = "apply")]
        plan: bool,
        /// Run that migration in one transaction (needs --database-url).
        #[arg(long, requires = "database_url")]
        apply: bool,
    },
    /// Report how a live PostgreSQL database differs from the policy's
    /// export (`-` live only, `+` missing); exits 1 when it does.
    Drift {
        #[command(flatten)]
        policy: PolicyArg,
        /// `postgres://user@host/db`.
        #[arg(long)]
        database_url: String,
        /// The policy database the live one stands for (default: the only
        /// PostgreSQL one).
        #[arg(long)]
        database: Option<String>,
        /// Prefix of the role names.
        #[arg(long, default_value = "sqlsandbox_")]
        role_prefix: String,
    },
    /// What a policy change does, per principal and table: access gained or
    /// lost, sandboxes, visible columns, native SQL, collections, routes;
    /// each change classified widen, narrow or neutral.
    Diff {
        /// The old policy: a file, or `REV:path` (read with `git show`).
        /// With --git, the only argument: the working policy file.
        #[arg(value_name = "OLD")]
        first: String,
        /// The new policy: a file, or `REV:path`.
        #[arg(
            value_name = "NEW",
            required_unless_present = "git",
            conflicts_with = "git"
        )]
        second: Option<String>,
        /// Compare the file as committed at this git revision with the
        /// working file (`diff --git HEAD policy.yaml`).
        #[arg(long, value_name = "REV")]
        git: Option<String>,
        /// Output format (with `json`, errors are JSON on standard output too).
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
        /// Exit 1 when a change of this class exists (`widen`, or `any`).
        #[arg(long, value_enum)]
        fail_on: Option<FailOn>,
    },
    /// Print a shell completion script (`sqlsandbox completions bash >
    /// /etc/bash_completion.d/sqlsandbox`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Create API keys and rotate their secrets in the policy file. A new
    /// secret is printed once, on standard output; the policy keeps only
    /// its SHA-256.
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
    /// Print the manual page (roff: `sqlsandbox man | man -l -`), a
    /// subcommand's (`sqlsandbox man rewrite`), or write one page per
    /// command into a directory (`--dir`).
    Man {
        /// Write sqlsandbox.1 and one page per subcommand
        /// (sqlsandbox-rewrite.1, sqlsandbox-apikey-generate.1, …) into
        /// this directory, created if missing; prints the files written.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<std::path::PathBuf>,
        /// The subcommand whose page to print (`apikey generate`).
        #[arg(value_name = "SUBCOMMAND")]
        command: Vec<String>,
    },
    /// Serve the HTTP JSON API (`POST /v1/rewrite`, `/v1/builder`,
    /// `/v1/question`, `/v1/explain`, `GET /healthz`, `/metrics`) on a
    /// loopback address, reloading the policy when its file changes and on
    /// SIGHUP; SIGTERM or Ctrl-C stops it after the requests in flight.
    #[cfg(feature = "serve")]
    Serve(Box<ServeArgs>),
}

/// `sqlsandbox serve`: a configuration file, and flags over it.
#[cfg(feature = "serve")]
#[derive(clap::Args)]
struct ServeArgs {
    /// The configuration file (TOML; see the README's "Run as a service").
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// The policy file (over the configuration's `policy`).
    #[arg(long, value_name = "FILE")]
    policy: Option<std::path::PathBuf>,
    /// Address and port to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Take principals from the x-sqlsandbox-user / -groups / -attr-*
    /// headers of a trusted proxy (instead of signed tokens).
    #[arg(long)]
    trusted_headers: bool,
    /// Largest request body, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    max_body_bytes: Option<usize>,
    /// Longest time a request may take, in milliseconds [default: 10000].
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// The rewrite cache's bound, in bytes [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    cache_bytes: Option<u64>,
    /// How often to check the policy file for a change, in milliseconds;
    /// 0: only on SIGHUP [default: 1000].
    #[arg(long, value_name = "MS")]
    watch_interval_ms: Option<u64>,
    /// Log lines as JSON objects (default: `key=value` text); the level
    /// comes from SQLSANDBOX_LOG (default `info`).
    #[arg(long)]
    log_json: bool,
}

/// `sqlsandbox apikey …`.
#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create an API key: print a new secret (once, on standard output)
    /// and add its SHA-256 to the policy's `api_keys:`.
    Generate {
        #[command(flatten)]
        policy: PolicyArg,
        /// The key's name under `api_keys:` (a letter, then letters,
        /// digits, `_`, `-`, `.`).
        name: String,
        /// The one group the key acts as.
        #[arg(long)]
        group: String,
        /// A fixed attribute of the key, `key=value` (repeat a key for a
        /// list).
        #[arg(long, value_parser = key_value)]
        attr: Vec<String>,
        /// Edit the policy file (else print the entry to add, on standard
        /// error).
        #[arg(long)]
        write: bool,
    },
    /// Start rotating a key's secret: print a new secret (once, on
    /// standard output), make it the key's `sha256` and keep the old one as
    /// `previous_sha256`; both authenticate until `finish-rotation`.
    Rotate {
        #[command(flatten)]
        policy: PolicyArg,
        /// The key's name under `api_keys:`.
        name: String,
        /// Edit the policy file (else print the entry as it should read).
        #[arg(long)]
        write: bool,
    },
    /// Finish a rotation: remove the key's `previous_sha256`, so that only
    /// the new secret authenticates.
    FinishRotation {
        #[command(flatten)]
        policy: PolicyArg,
        /// The key's name under `api_keys:`.
        name: String,
        /// Edit the policy file (else print the entry as it should read).
        #[arg(long)]
        write: bool,
    },
}

/// Which changes make `diff` exit 1.
#[derive(Clone, Copy, ValueEnum)]
enum FailOn {
    /// A change that lets someone read more.
    Widen,
    /// Any change at all.
    Any,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// PostgreSQL roles, grants, row level security and views.
    #[value(alias = "postgres-rls")]
    Postgres,
    /// MySQL/MariaDB definer views over a mapping table, roles and logins.
    #[value(alias = "mariadb")]
    Mysql,
}

/// A library error; `source` is the text its position points into (the
/// policy, or the query: name and text), `hint` a "did you mean" to append.
struct SbFailure {
    error: Error,
    source: Option<(String, String)>,
    hint: String,
}

/// Why a command stopped.
enum Failure {
    /// A library error.
    Sb(Box<SbFailure>),
    /// Bad command-line use that clap cannot see (exit 2, with usage).
    Usage(Box<clap::Error>),
    /// Standard output was closed (`sqlsandbox … | head`): stop quietly.
    BrokenPipe,
    /// Writing standard output failed otherwise.
    Output(std::io::Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Sb(Box::new(SbFailure {
            error,
            source: None,
            hint: String::new(),
        }))
    }
}

impl Failure {
    /// `error`, whose position points into `text` (named `name`).
    fn in_source(error: Error, name: &str, text: &str) -> Self {
        Failure::Sb(Box::new(SbFailure {
            error,
            source: Some((name.to_string(), text.to_string())),
            hint: String::new(),
        }))
    }

    /// `error` with "did you mean" for an unknown user, group, database or
    /// question of `policy`.
    fn with_hint(error: Error, policy: &Policy) -> Self {
        let hint = match &error {
            Error::Unknown { kind, name } => {
                let names: Vec<&str> = match *kind {
                    "user" => policy.user_names(),
                    "group" => policy.group_names(),
                    "database" => policy.database_names().collect(),
                    "question" => policy.question_names(),
                    "API key" => policy.api_key_names(),
                    "attribute" => {
                        return Failure::Sb(Box::new(SbFailure {
                            hint: sqlsandbox::suggest::did_you_mean(
                                name,
                                policy.attribute_names().iter().map(String::as_str),
                            ),
                            error,
                            source: None,
                        }))
                    }
                    _ => Vec::new(),
                };
                sqlsandbox::suggest::did_you_mean(name, names)
            }
            _ => String::new(),
        };
        Failure::Sb(Box::new(SbFailure {
            error,
            source: None,
            hint,
        }))
    }
}

/// A usage error of subcommand `cmd` (exit 2, with its usage).
fn usage(cmd: &str, kind: clap::error::ErrorKind, message: impl std::fmt::Display) -> Failure {
    let mut top = Cli::command();
    top.build();
    let err = match top.find_subcommand_mut(cmd) {
        Some(sub) => sub.error(kind, message),
        None => top.error(kind, message),
    };
    Failure::Usage(Box::new(err))
}

fn write_out(args: std::fmt::Arguments) -> Result<(), Failure> {
    std::io::stdout()
        .lock()
        .write_fmt(args)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Failure::BrokenPipe,
            _ => Failure::Output(e),
        })
}

/// How the command reports: JSON errors with `--format json`, `-q`, `-v`,
/// colours on a terminal without `NO_COLOR`.
struct Ui {
    json: bool,
    quiet: bool,
    verbose: u8,
    color: bool,
}

fn read(path: &str) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// A policy and its text (for snippets under diagnostics).
struct Loaded {
    policy: Policy,
    /// The name errors use: the path, or `<stdin>`.
    name: String,
    src: String,
}

impl PolicyArg {
    /// True when the policy comes from standard input.
    fn is_stdin(&self) -> bool {
        self.policy.as_deref() == Some("-")
    }

    /// Loads the policy: --policy (or `SQLSANDBOX_POLICY`), `-` for standard
    /// input, else `sqlsandbox.yaml` in the current directory.
    fn load(&self, cmd: &str, ui: &Ui) -> Result<Loaded, Failure> {
        let path = match &self.policy {
            Some(p) => p.clone(),
            None if std::path::Path::new(DISCOVERED_POLICY).is_file() => {
                DISCOVERED_POLICY.to_string()
            }
            None => {
                return Err(usage(
                    cmd,
                    clap::error::ErrorKind::MissingRequiredArgument,
                    format!("no policy: give --policy FILE (`-` for standard input), set SQLSANDBOX_POLICY, or put {DISCOVERED_POLICY} in the current directory"),
                ))
            }
        };
        if ui.verbose > 0 {
            eprintln!("sqlsandbox: policy {path}");
        }
        let (name, src) = if path == "-" {
            ("<stdin>".to_string(), read_stdin()?)
        } else {
            let src = read(&path)?;
            (path, src)
        };
        match Policy::from_yaml(&src, &name) {
            Ok(policy) => Ok(Loaded { policy, name, src }),
            Err(e) => Err(Failure::in_source(e, &name, &src)),
        }
    }
}

fn principal(policy: &Policy, who: &Who, cmd: &str, ui: &Ui) -> Result<Principal, Failure> {
    let caller = if let Some(u) = &who.user {
        Caller::User(u.clone())
    } else if who.anonymous {
        Caller::Anonymous
    } else if let Some(path) = &who.claims {
        return Caller::ClaimsJson(read(path)?)
            .principal(policy)
            .map_err(|e| match e {
                Error::Unknown { kind, name } => Failure::with_hint(
                    Error::Unknown {
                        kind,
                        name: format!("{path}: {name}"),
                    },
                    policy,
                ),
                other => other.into(),
            });
    } else if let Some(secret) = &who.api_key {
        Caller::ApiKey(secret.clone())
    } else if who.group.is_empty() && who.attr.is_empty() {
        return Err(usage(
            cmd,
            clap::error::ErrorKind::MissingRequiredArgument,
            "no principal: give --user, --anonymous, --claims, --api-key or --group/--attr",
        ));
    } else {
        let attributes = key_values(&who.attr, "attribute")?;
        warn_unused_attributes(policy, &attributes, ui);
        Caller::Groups {
            groups: who.group.clone(),
            attributes,
        }
    };
    caller
        .principal(policy)
        .map_err(|e| Failure::with_hint(e, policy))
}

/// A query's failure, with a hint when it needs an attribute that an
/// `--attr` name is close to (`--attr tenat=7` for `tenant`).
fn attr_hint(failure: Failure, who: &Who) -> Failure {
    let Failure::Sb(mut f) = failure else {
        return failure;
    };
    if let Error::MissingAttribute { attribute, .. } = &f.error {
        let given: Vec<&str> = who
            .attr
            .iter()
            .filter_map(|a| a.split_once('=').map(|(k, _)| k))
            .collect();
        let close = given
            .iter()
            .copied()
            .find(|g| sqlsandbox::suggest::closest(g, [attribute.as_str()]).is_some());
        if let Some(g) = close {
            f.hint = format!("; --attr gave `{g}`: did you mean `{attribute}`?");
        }
    }
    Failure::Sb(f)
}

fn read_stdin() -> Result<String, Error> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| Error::Io {
            path: "<stdin>".into(),
            message: e.to_string(),
        })?;
    Ok(s)
}

/// The query: the argument, or standard input for `-` or none. An empty
/// query is a usage error.
fn read_sql(sql: Option<&str>, cmd: &str) -> Result<(String, String), Failure> {
    let (name, text) = match sql {
        None | Some("-") => ("<stdin>", read_stdin()?),
        Some(s) => ("<query>", s.to_string()),
    };
    if text.trim().is_empty() {
        return Err(usage(
            cmd,
            clap::error::ErrorKind::InvalidValue,
            "empty query: give the SQL as an argument or on standard input",
        ));
    }
    Ok((name.to_string(), text))
}

/// A query error with its position in the query text, when the parser
/// said `Line: N, Column: M`.
fn query_failure(error: Error, policy: &Policy, name: &str, sql: &str) -> Failure {
    match &error {
        Error::SqlParse { .. } => Failure::in_source(error, name, sql),
        _ => Failure::with_hint(error, policy),
    }
}

/// A builder question from a file, or standard input for `-`: YAML for a
/// `.yaml`/`.yml` file or `--builder-format yaml`, JSON otherwise.
fn read_builder(path: &str, format: Option<BuilderFormat>) -> Result<serde_json::Value, Error> {
    let text = if path == "-" {
        read_stdin()?
    } else {
        read(path)?
    };
    let yaml = match format {
        Some(f) => matches!(f, BuilderFormat::Yaml),
        None => path.ends_with(".yaml") || path.ends_with(".yml"),
    };
    if yaml {
        sqlsandbox::builder::parse_question_yaml(&text)
    } else {
        sqlsandbox::builder::parse_question(&text)
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Whether the parsed command asked for JSON output.
fn wants_json(cmd: &Command) -> bool {
    match cmd {
        Command::Rewrite { format, .. } => matches!(format, Format::Json),
        Command::Explain { format, .. }
        | Command::Check { format, .. }
        | Command::Diff { format, .. } => matches!(format, TextOrJson::Json),
        _ => false,
    }
}

fn run(cli: Cli, ui: &Ui) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Rewrite {
            policy: policy_arg,
            who,
            database,
            dialect,
            params,
            fence,
            emit_role,
            local_role,
            question,
            builder,
            builder_format,
            vars,
            max_sql_bytes,
            max_depth,
            max_operators,
            format,
            sql,
        } => {
            if !vars.is_empty() && question.is_none() {
                return Err(usage(
                    "rewrite",
                    clap::error::ErrorKind::ArgumentConflict,
                    "--var binds a saved question's variables: it needs --question",
                ));
            }
            let from_stdin = question.is_none()
                && builder.is_none()
                && matches!(sql.as_deref(), None | Some("-"));
            if policy_arg.is_stdin() && (from_stdin || builder.as_deref() == Some("-")) {
                return Err(usage(
                    "rewrite",
                    clap::error::ErrorKind::ArgumentConflict,
                    "--policy - reads the policy from standard input: give the query as an argument",
                ));
            }
            let loaded = policy_arg.load("rewrite", ui)?;
            let policy = &loaded.policy;
            let principal = principal(policy, &who, "rewrite", ui)?;
            let mut opts = Options::default()
                .with_params(params)
                .with_emit_role(emit_role)
                .with_local_role(local_role);
            if let Some(d) = database {
                opts = opts.with_database(d);
            }
            if let Some(d) = dialect {
                opts = opts.with_dialect(d.into());
            }
            if let Some(f) = fence {
                opts = opts.with_fence(f.parse()?);
            }
            if let Some(n) = max_sql_bytes {
                opts = opts.with_max_sql_bytes(n);
            }
            if let Some(n) = max_depth {
                opts = opts.with_max_depth(n);
            }
            if let Some(n) = max_operators {
                opts = opts.with_max_operators(n);
            }
            let out = match (question, builder) {
                (Some(q), _) => {
                    let values: BTreeMap<String, AttributeValue> =
                        key_values(&vars, "variable")?.into_iter().collect();
                    policy
                        .rewrite_question(&principal, &q, &values, &opts)
                        .map_err(|e| attr_hint(Failure::with_hint(e, policy), &who))?
                }
                (None, Some(path)) => policy
                    .rewrite_builder(&principal, &read_builder(&path, builder_format)?, &opts)
                    .map_err(|e| attr_hint(Failure::with_hint(e, policy), &who))?,
                (None, None) => {
                    let (name, sql) = read_sql(sql.as_deref(), "rewrite")?;
                    policy
                        .rewrite(&principal, &sql, &opts)
                        .map_err(|e| attr_hint(query_failure(e, policy, &name, &sql), &who))?
                }
            };
            match format {
                Format::Sql => outln!("{}", out.sql),
                Format::Json => outln!("{}", json(&out)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            policy,
            who,
            all_users,
            database,
            format,
            builder,
            builder_format,
            sql,
        } => {
            let loaded = policy.load("explain", ui)?;
            let policy = &loaded.policy;
            if all_users {
                let m = explain::matrix(policy)?;
                match format {
                    TextOrJson::Text => out!("{}", m.to_text()),
                    TextOrJson::Json => outln!("{}", json(&m)),
                }
                return Ok(ExitCode::SUCCESS);
            }
            let principal = principal(policy, &who, "explain", ui)?;
            let e = explain::explain(policy, &principal);
            let mut opts = Options::default();
            if let Some(d) = database {
                opts = opts.with_database(d);
            }
            let query = match (sql, builder) {
                (Some(s), _) => Some(policy.rewrite(&principal, &s, &opts)),
                (None, Some(path)) => Some(
                    read_builder(&path, builder_format)
                        .and_then(|q| policy.rewrite_builder(&principal, &q, &opts)),
                ),
                (None, None) => None,
            };
            match format {
                TextOrJson::Text => {
                    out!("{}", e.to_text());
                    match &query {
                        None => {}
                        Some(Ok(out)) => {
                            outln!("query: rewritten");
                            for a in &out.applied {
                                let vals: Vec<String> = a
                                    .bindings
                                    .iter()
                                    .map(|b| format!("{} = {}", b.attribute, b.value))
                                    .collect();
                                outln!(
                                    "  {} AS {}: {} sandbox from {}{}",
                                    a.table,
                                    a.alias,
                                    a.kind,
                                    a.groups.join(" + "),
                                    if vals.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" ({})", vals.join(", "))
                                    }
                                );
                            }
                            let f = &out.fencing;
                            let mode = match f.mode {
                                sqlsandbox::FenceMode::Auto => "auto",
                                sqlsandbox::FenceMode::Always => "always",
                                sqlsandbox::FenceMode::Never => "never",
                            };
                            match (&f.reason, f.fenced) {
                                (_, false) => outln!(
                                    "  fence ({mode}): none (nothing that can fail reaches the sandboxes' rows)"
                                ),
                                (Some(why), true) => outln!(
                                    "  fence ({mode}): fenced, because the database could evaluate {why} on rows a sandbox filters out; {} row-safe condition(s) copied inside",
                                    f.pushed
                                ),
                                (None, true) => outln!(
                                    "  fence ({mode}): fenced; {} row-safe condition(s) copied inside",
                                    f.pushed
                                ),
                            }
                            outln!("  sql: {}", out.sql);
                            outln!("  fingerprint: {}", out.fingerprint);
                        }
                        Some(Err(err)) => {
                            outln!("query: refused\n  error[{}]: {err}", err.code())
                        }
                    }
                }
                TextOrJson::Json => {
                    let q = query.as_ref().map(|r| match r {
                        Ok(out) => serde_json::json!({"rewritten": out}),
                        Err(err) => serde_json::json!({"refused": {"code": err.code(), "message": err.to_string()}}),
                    });
                    outln!(
                        "{}",
                        json(&serde_json::json!({"explanation": e, "query": q}))
                    );
                }
            }
            Ok(match query {
                Some(Err(err)) => ExitCode::from(if err.is_refusal() { 1 } else { 2 }),
                _ => ExitCode::SUCCESS,
            })
        }
        Command::Test {
            policy,
            update,
            junit,
            database_url,
            files,
        } => policy_test(policy, update, junit, database_url, &files),
        Command::Schema { database_url } => schema(&database_url),
        Command::Check {
            policy,
            format,
            database_url,
            database,
            strict,
            ignore,
        } => {
            let loaded = policy.load("check", ui)?;
            let mut findings = lint::check(&loaded.policy, &loaded.src);
            if let Some(url) = database_url {
                findings.extend(live_check(&loaded.policy, database.as_deref(), &url)?);
            }
            findings.retain(|f| !ignore.iter().any(|code| code.eq_ignore_ascii_case(f.code)));
            let count = |s: lint::Severity| findings.iter().filter(|f| f.severity == s).count();
            let (errors, warnings, notes) = (
                count(lint::Severity::Error),
                count(lint::Severity::Warning),
                count(lint::Severity::Info),
            );
            let failed = errors > 0 || (strict && warnings > 0);
            match format {
                TextOrJson::Text => {
                    for f in &findings {
                        if ui.quiet && f.severity != lint::Severity::Error {
                            continue;
                        }
                        outln!("{}", finding(f, &loaded).to_text(false));
                    }
                    if !ui.quiet {
                        outln!(
                            "{}: {} ({errors} errors, {warnings} warnings, {notes} notes)",
                            loaded.name,
                            if failed { "FAILED" } else { "ok" },
                        );
                    }
                }
                TextOrJson::Json => outln!(
                    "{}",
                    json(
                        &serde_json::json!({"file": loaded.name, "ok": !failed, "findings": findings})
                    )
                ),
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Export {
            policy,
            format,
            database,
            role_prefix,
            database_url,
            plan,
            apply,
        } => {
            let live = match (database_url, plan, apply) {
                (Some(url), true, _) => Some((url, LiveExport::Plan)),
                (Some(url), _, true) => Some((url, LiveExport::Apply)),
                (Some(_), false, false) => {
                    return Err(usage(
                        "export",
                        clap::error::ErrorKind::MissingRequiredArgument,
                        "--database-url needs --plan or --apply",
                    ))
                }
                (None, ..) => None,
            };
            let loaded = policy.load("export", ui)?;
            export(&loaded.policy, format, database, role_prefix, live)
        }
        Command::Drift {
            policy,
            database_url,
            database,
            role_prefix,
        } => {
            let loaded = policy.load("drift", ui)?;
            drift(&loaded.policy, &database_url, database, role_prefix)
        }
        Command::Diff {
            first,
            second,
            git,
            format,
            fail_on,
        } => policy_diff(&first, second.as_deref(), git.as_deref(), format, fail_on),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "sqlsandbox", &mut buf);
            out!("{}", String::from_utf8_lossy(&buf));
            Ok(ExitCode::SUCCESS)
        }
        Command::Apikey(cmd) => apikey(cmd, ui),
        Command::Man { dir, command } => man(dir.as_deref(), &command),
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve(*args),
    }
}

/// `sqlsandbox serve`: runs until SIGTERM or Ctrl-C.
#[cfg(feature = "serve")]
fn serve(args: ServeArgs) -> Result<ExitCode, Failure> {
    use sqlsandbox::serve::{Config, ServeError, Server, TrustedHeaders};
    let filter = tracing_subscriber::EnvFilter::try_from_env("SQLSANDBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(diag::stderr_color());
    if args.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let config = match (&args.config, &args.policy) {
        (Some(file), _) => Config::from_file(file),
        (None, Some(policy)) => Ok(Config::new(policy.clone())),
        (None, None) => Err(ServeError::Config(
            "give --config FILE or --policy FILE".into(),
        )),
    };
    let started = config.map(|mut config| {
        if let Some(p) = args.policy {
            config.policy = p;
        }
        if let Some(l) = args.listen {
            config.listen = l;
        }
        if args.trusted_headers {
            config.trusted_headers = Some(TrustedHeaders::default());
        }
        if let Some(n) = args.max_body_bytes {
            config.max_body_bytes = n;
        }
        if let Some(n) = args.timeout_ms {
            config.timeout_ms = n;
        }
        if let Some(n) = args.cache_bytes {
            config.cache_bytes = n;
        }
        if let Some(n) = args.watch_interval_ms {
            config.watch_interval_ms = n;
        }
        config
    });
    let result = started.and_then(|config| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| ServeError::Io(format!("cannot start the runtime: {e}")))?;
        runtime.block_on(async move {
            Server::bind(config)
                .await?
                .run(sqlsandbox::serve::shutdown_signal())
                .await
        })
    });
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(ServeError::Policy(e)) => Err(e.into()),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

/// The footer of every manual page: the program and its version.
const MAN_SOURCE: &str = concat!("sqlsandbox ", env!("CARGO_PKG_VERSION"));

/// `sqlsandbox man`: the page of the command or of a subcommand on
/// standard output, or every page into a directory.
fn man(dir: Option<&std::path::Path>, command: &[String]) -> Result<ExitCode, Failure> {
    let mut top = Cli::command().disable_help_subcommand(true);
    top.build();
    let Some(dir) = dir else {
        let mut cmd = &top;
        let mut path = String::new();
        for name in command {
            let names: Vec<&str> = cmd
                .get_subcommands()
                .filter(|c| !c.is_hide_set())
                .map(|c| c.get_name())
                .collect();
            let found = cmd.find_subcommand(name).filter(|c| !c.is_hide_set());
            cmd = match found {
                Some(c) => c,
                None => {
                    return Err(usage(
                        "man",
                        clap::error::ErrorKind::InvalidSubcommand,
                        format!(
                            "no subcommand `{path}{name}`{}",
                            sqlsandbox::suggest::did_you_mean(name, names)
                        ),
                    ))
                }
            };
            path.push_str(name);
            path.push(' ');
        }
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .source(MAN_SOURCE)
            .render(&mut buf)
            .map_err(Failure::Output)?;
        out!("{}", String::from_utf8_lossy(&buf));
        return Ok(ExitCode::SUCCESS);
    };
    let io = |path: &std::path::Path, e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    // Depth first, the command itself before its subcommands.
    let mut todo = vec![top];
    while let Some(cmd) = todo.pop() {
        let subs: Vec<clap::Command> = cmd
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .cloned()
            .collect();
        let page = clap_mangen::Man::new(cmd).source(MAN_SOURCE);
        let path = dir.join(page.get_filename());
        let mut buf = Vec::new();
        page.render(&mut buf).map_err(Failure::Output)?;
        std::fs::write(&path, buf).map_err(|e| io(&path, e))?;
        outln!("{}", path.display());
        todo.extend(subs.into_iter().rev());
    }
    Ok(ExitCode::SUCCESS)
}

/// `sqlsandbox apikey generate|rotate|finish-rotation`.
fn apikey(cmd: ApiKeyCommand, ui: &Ui) -> Result<ExitCode, Failure> {
    use sqlsandbox::apikey;
    let (policy_arg, write) = match &cmd {
        ApiKeyCommand::Generate { policy, write, .. }
        | ApiKeyCommand::Rotate { policy, write, .. }
        | ApiKeyCommand::FinishRotation { policy, write, .. } => (policy, *write),
    };
    if write && policy_arg.is_stdin() {
        return Err(usage(
            "apikey",
            clap::error::ErrorKind::ArgumentConflict,
            "--write edits the policy file: --policy - (standard input) has none",
        ));
    }
    let loaded = policy_arg.load("apikey", ui)?;
    let policy = &loaded.policy;
    let file = loaded.name.as_str();
    let hint = |e: Error| Failure::with_hint(e, policy);
    let (edit, secret, done) = match &cmd {
        ApiKeyCommand::Generate {
            name, group, attr, ..
        } => {
            let attrs = key_values(attr, "attribute")?;
            warn_unused_attributes(policy, &attrs, ui);
            if group == sqlsandbox::policy::ADMINISTRATORS && !ui.quiet {
                eprintln!(
                    "sqlsandbox: warning: a key in `administrators` reads everything, unsandboxed"
                );
            }
            let secret = apikey::generate_secret()?;
            let edit =
                apikey::add(&loaded.src, file, name, group, &attrs, &secret).map_err(hint)?;
            let done = format!("added API key `{name}` (group `{group}`) to {file}");
            (edit, Some(secret), done)
        }
        ApiKeyCommand::Rotate { name, .. } => {
            let secret = apikey::generate_secret()?;
            let edit = apikey::rotate(&loaded.src, file, name, &secret).map_err(hint)?;
            let done = format!(
                "started rotating API key `{name}` in {file}: the new secret and the old one both authenticate until `sqlsandbox apikey finish-rotation {name}`"
            );
            (edit, Some(secret), done)
        }
        ApiKeyCommand::FinishRotation { name, .. } => {
            let edit = apikey::finish_rotation(&loaded.src, file, name).map_err(hint)?;
            let done = format!(
                "finished rotating API key `{name}` in {file}: only its new secret authenticates now"
            );
            (edit, None, done)
        }
    };
    if write {
        write_policy(file, &loaded.src, &edit.text)?;
        if !ui.quiet {
            eprintln!("sqlsandbox: {done}");
        }
    } else {
        eprintln!(
            "sqlsandbox: {file} is unchanged (give --write to edit it); the entry should read:\n\n{}",
            edit.snippet
        );
    }
    if let Some(secret) = secret {
        outln!("{secret}");
        if !ui.quiet {
            eprintln!("sqlsandbox: the secret is on standard output and shown only this once; the policy keeps only its SHA-256");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Replaces the policy file with `text`, atomically (a temporary file in
/// the same directory, renamed over it; its permissions kept), unless the
/// file changed since it was read as `original`.
fn write_policy(path: &str, original: &str, text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    let io = |e: std::io::Error| Error::Io {
        path: path.to_string(),
        message: e.to_string(),
    };
    let target = std::fs::canonicalize(path).map_err(io)?;
    if std::fs::read_to_string(&target).map_err(io)? != original {
        return Err(Error::PolicyEdit {
            path: path.to_string(),
            message: "the file changed while it was being edited; run the command again".into(),
        });
    }
    let permissions = std::fs::metadata(&target).map_err(io)?.permissions();
    let dir = target.parent().unwrap_or(std::path::Path::new("."));
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{base}.sqlsandbox-{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, permissions)?;
        std::fs::rename(&tmp, &target)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}

/// Warns (on standard error, unless `-q`) about `--attr` names that no
/// rule of the policy uses, with the nearest name it does use. (A policy
/// that declares its attributes refuses undeclared ones instead.)
fn warn_unused_attributes(policy: &Policy, attrs: &[(String, AttributeValue)], ui: &Ui) {
    if ui.quiet || policy.declares_attributes() {
        return;
    }
    let known = policy.attribute_names();
    for (name, _) in attrs {
        if !known.contains(name) {
            let hint = sqlsandbox::suggest::did_you_mean(name, known.iter().map(String::as_str));
            eprintln!(
                "sqlsandbox: warning: attribute `{name}` (--attr) is used by no rule of the policy{hint}"
            );
        }
    }
}

/// A lint finding as a diagnostic, with the column of its key.
fn finding<'a>(f: &lint::Finding, loaded: &'a Loaded) -> Diagnostic<'a> {
    let column = f.line.and_then(|l| {
        let line = loaded.src.lines().nth(l.checked_sub(1)?)?;
        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        let dash = usize::from(line.trim_start().starts_with("- ")) * 2;
        Some(indent + dash + 1)
    });
    Diagnostic {
        severity: match f.severity {
            lint::Severity::Error => Severity::Error,
            lint::Severity::Warning => Severity::Warning,
            lint::Severity::Info => Severity::Info,
        },
        code: f.code.to_string(),
        message: if f.key.is_empty() {
            f.message.clone()
        } else {
            format!("{} (at `{}`)", f.message, f.key)
        },
        position: Some(Position {
            path: loaded.name.clone(),
            line: f.line,
            column,
        }),
        source: Some(&loaded.src),
    }
}

/// What `export --database-url` does.
#[derive(Clone, Copy)]
enum LiveExport {
    Plan,
    Apply,
}

#[cfg(feature = "live")]
fn live_export(
    policy: &Policy,
    opts: &sqlsandbox::export::ExportOptions,
    url: &str,
    what: LiveExport,
) -> Result<ExitCode, Failure> {
    use sqlsandbox::export::live;
    match what {
        LiveExport::Plan => out!("{}", live::plan(url, policy, opts)?.script()),
        LiveExport::Apply => {
            let plan = live::apply(url, policy, opts)?;
            if plan.diff.is_empty() {
                outln!("applied: nothing changed");
            } else {
                out!("applied:\n{}", plan.diff);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "live"))]
fn live_export(
    _policy: &Policy,
    _opts: &sqlsandbox::export::ExportOptions,
    _url: &str,
    _what: LiveExport,
) -> Result<ExitCode, Failure> {
    Err(no_live().into())
}

#[cfg(feature = "live")]
fn drift(
    policy: &Policy,
    url: &str,
    database: Option<String>,
    role_prefix: String,
) -> Result<ExitCode, Failure> {
    let opts = sqlsandbox::export::ExportOptions {
        role_prefix,
        database,
        ..Default::default()
    };
    let diff = sqlsandbox::export::live::drift(url, policy, &opts)?;
    if diff.is_empty() {
        outln!("no drift");
        Ok(ExitCode::SUCCESS)
    } else {
        out!("{diff}");
        Ok(ExitCode::from(1))
    }
}

#[cfg(not(feature = "live"))]
fn drift(
    _policy: &Policy,
    _url: &str,
    _database: Option<String>,
    _role_prefix: String,
) -> Result<ExitCode, Failure> {
    Err(no_live().into())
}

fn policy_test(
    policy: Option<String>,
    update: bool,
    junit: Option<String>,
    database_url: Option<String>,
    files: &[String],
) -> Result<ExitCode, Failure> {
    use sqlsandbox::policytest;
    let paths: Vec<std::path::PathBuf> = files.iter().map(Into::into).collect();
    let opts = policytest::RunOptions {
        policy: policy.map(Into::into),
        update,
        database_url,
    };
    // Every file is parsed before any runs: a broken one stops the run.
    let loaded = policytest::discover(&paths)?
        .iter()
        .map(|p| policytest::load(p))
        .collect::<Result<Vec<_>, Error>>()?;
    let reports = loaded
        .iter()
        .map(|f| policytest::run_file(f, &opts))
        .collect::<Result<Vec<_>, Error>>()?;
    out!("{}", policytest::text_report(&reports));
    if let Some(path) = junit {
        std::fs::write(&path, policytest::junit(&reports)).map_err(|e| Error::Io {
            path,
            message: e.to_string(),
        })?;
    }
    Ok(if reports.iter().any(|r| r.failures() > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `sqlsandbox diff`: OLD NEW, or --git REV NEW.
fn policy_diff(
    first: &str,
    second: Option<&str>,
    git: Option<&str>,
    format: TextOrJson,
    fail_on: Option<FailOn>,
) -> Result<ExitCode, Failure> {
    use sqlsandbox::policydiff;
    let (old, new) = match (git, second) {
        (Some(rev), _) => (policydiff::load_git(rev, first)?, Policy::from_path(first)?),
        (None, Some(new)) => (policydiff::load(first)?, policydiff::load(new)?),
        (None, None) => {
            return Err(usage(
                "diff",
                clap::error::ErrorKind::MissingRequiredArgument,
                "give OLD NEW, or --git REV NEW",
            ))
        }
    };
    let report = policydiff::diff(&old, &new)?;
    match format {
        TextOrJson::Text => out!("{}", report.to_text()),
        TextOrJson::Json => outln!("{}", json(&report)),
    }
    let fail = match fail_on {
        None => false,
        Some(FailOn::Widen) => report.has(policydiff::Class::Widen),
        Some(FailOn::Any) => !report.changes.is_empty(),
    };
    Ok(if fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(feature = "live")]
fn schema(url: &str) -> Result<ExitCode, Failure> {
    let live = sqlsandbox::introspect::introspect(url)?;
    out!("{}", sqlsandbox::introspect::schema_yaml(&live));
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "live"))]
fn schema(_url: &str) -> Result<ExitCode, Failure> {
    Err(no_live().into())
}

#[cfg(feature = "live")]
fn live_check(
    policy: &Policy,
    database: Option<&str>,
    url: &str,
) -> Result<Vec<lint::Finding>, Error> {
    sqlsandbox::introspect::check_live(policy, database, url)
}

#[cfg(not(feature = "live"))]
fn live_check(
    _policy: &Policy,
    _database: Option<&str>,
    _url: &str,
) -> Result<Vec<lint::Finding>, Error> {
    Err(no_live().into())
}

#[cfg(not(feature = "live"))]
fn no_live() -> Error {
    Error::Unsupported {
        construct: "a live database (built without the `live` feature)".into(),
    }
}

fn export(
    policy: &Policy,
    format: ExportFormat,
    database: Option<String>,
    role_prefix: String,
    live: Option<(String, LiveExport)>,
) -> Result<ExitCode, Failure> {
    let opts = sqlsandbox::export::ExportOptions {
        role_prefix,
        database,
        ..Default::default()
    };
    match format {
        ExportFormat::Postgres => match live {
            Some((url, what)) => return live_export(policy, &opts, &url, what),
            None => out!(
                "{}",
                sqlsandbox::export::export_postgres_with(policy, &opts)?
            ),
        },
        ExportFormat::Mysql => {
            if live.is_some() {
                return Err(Error::Unsupported {
                    construct: "--plan/--apply for MySQL (PostgreSQL only)".into(),
                }
                .into());
            }
            out!(
                "{}",
                sqlsandbox::export::mysql::export_mysql(policy, &opts)?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--format json` as given on the command line, for errors clap reports
/// before the command is parsed.
fn json_requested(args: &[std::ffi::OsString]) -> bool {
    args.windows(2)
        .any(|w| matches!(w, [flag, value] if flag == "--format" && value == "json"))
        || args.iter().any(|a| a == "--format=json")
}

/// Prints why the command stopped and returns the exit code: 1 for a
/// refusal (or a failed lint), 2 for bad input or usage, 0 for a closed
/// standard output.
fn report(mut failure: Failure, ui: &Ui) -> ExitCode {
    // A policy error from a file read elsewhere (diff): read it again for
    // the snippet.
    if let Failure::Sb(f) = &mut failure {
        if let (None, Some(l)) = (&f.source, f.error.location()) {
            if let Ok(text) = std::fs::read_to_string(&l.file) {
                f.source = Some((l.file.clone(), text));
            }
        }
    }
    let (diagnostic, refusal) = match &failure {
        Failure::BrokenPipe => return ExitCode::SUCCESS,
        Failure::Usage(e) => {
            if !ui.json {
                let _ = e.print();
                return ExitCode::from(2);
            }
            (usage_diagnostic(e), false)
        }
        Failure::Output(e) => (
            Diagnostic {
                severity: Severity::Error,
                code: "SB003".into(),
                message: format!("cannot write standard output: {e}"),
                position: None,
                source: None,
            },
            false,
        ),
        Failure::Sb(f) => (
            error_diagnostic(&f.error, f.source.as_ref(), &f.hint),
            f.error.is_refusal(),
        ),
    };
    if ui.json {
        // Standard output, like the JSON of a success: one document to parse.
        if write_out(format_args!("{}\n", json(&diagnostic.to_json(refusal)))).is_err() {
            return ExitCode::from(2);
        }
    } else {
        let _ = writeln!(std::io::stderr(), "{}", diagnostic.to_text(ui.color));
    }
    ExitCode::from(if refusal { 1 } else { 2 })
}

/// A clap usage error as a diagnostic (code `usage`): its first paragraph.
fn usage_diagnostic(e: &clap::Error) -> Diagnostic<'static> {
    let text = e.render().to_string();
    let first = text.split("\n\n").next().unwrap_or("").trim();
    Diagnostic {
        severity: Severity::Error,
        code: "usage".into(),
        message: first.strip_prefix("error: ").unwrap_or(first).to_string(),
        position: None,
        source: None,
    }
}

/// A library error as a diagnostic: the policy position of SB001/SB002/
/// SB004, or the query position of an SB101 parse error.
fn error_diagnostic<'a>(
    error: &Error,
    source: Option<&'a (String, String)>,
    hint: &str,
) -> Diagnostic<'a> {
    let position = match (error.location(), error) {
        (Some(l), _) => Some(Position {
            path: l.file.clone(),
            line: l.line,
            column: l.column,
        }),
        (None, Error::SqlParse { message, .. }) => source.and_then(|(name, _)| {
            let (line, column) = parser_position(message);
            line.map(|_| Position {
                path: name.clone(),
                line,
                column,
            })
        }),
        _ => None,
    };
    let source = source
        .filter(|(name, _)| position.as_ref().is_some_and(|p| &p.path == name))
        .map(|(_, text)| text.as_str());
    Diagnostic {
        severity: Severity::Error,
        code: error.code().to_string(),
        message: format!("{}{hint}", error.message()),
        position,
        source,
    }
}

/// `Line: 1, Column: 8` in a sqlparser message.
fn parser_position(message: &str) -> (Option<usize>, Option<usize>) {
    let number = |key: &str| {
        let (_, rest) = message.rsplit_once(key)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    match (number("Line: "), number("Column: ")) {
        (Some(l), c) => (Some(l), c),
        _ => (None, None),
    }
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let color = diag::stderr_color();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) || !json_requested(&args)
            {
                e.exit();
            }
            let ui = Ui {
                json: true,
                quiet: false,
                verbose: 0,
                color,
            };
            return report(Failure::Usage(Box::new(e)), &ui);
        }
    };
    let ui = Ui {
        json: wants_json(&cli.command),
        quiet: cli.quiet,
        verbose: cli.verbose,
        color,
    };
    match run(cli, &ui) {
        Ok(code) => code,
        Err(failure) => report(failure, &ui),
    }
}
