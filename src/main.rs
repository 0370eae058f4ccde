//! The `sqlsandbox` command line.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sqlsandbox::who::{key_values, Who as Caller};
use sqlsandbox::{explain, lint, AttributeValue, Dialect, Error, Options, Policy, Principal};

#[derive(Parser)]
#[command(
    name = "sqlsandbox",
    version,
    about = "Row- and column-level security compiler for SQL analytics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    #[arg(long)]
    attr: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the sandboxed SQL for a principal.
    Rewrite {
        /// The policy file.
        #[arg(long)]
        policy: String,
        #[command(flatten)]
        who: Who,
        /// The policy database the query runs on (default: the only one).
        #[arg(long)]
        database: Option<String>,
        /// Override the database's dialect.
        #[arg(long)]
        dialect: Option<String>,
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
        #[arg(long = "var", requires = "question")]
        vars: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "sql")]
        format: Format,
        /// The SQL (or `-` / nothing to read standard input).
        sql: Option<String>,
    },
    /// Explain what a principal may read and why (optionally for a query).
    Explain {
        /// The policy file.
        #[arg(long)]
        policy: String,
        #[command(flatten)]
        who: Who,
        /// The who-sees-what matrix over every user of the policy.
        #[arg(long, conflicts_with_all = ["user", "claims", "api_key", "group", "attr", "sql"])]
        all_users: bool,
        /// The policy database for the query.
        #[arg(long)]
        database: Option<String>,
        /// Output format.
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
        /// The policy file.
        #[arg(long)]
        policy: String,
        /// A live database (`postgres://...` or `mysql://...`) to check the
        /// policy against: tables, columns, types, custom sandboxes.
        #[arg(long)]
        database_url: Option<String>,
        /// The policy database the live one stands for (default: the only one).
        #[arg(long, requires = "database_url")]
        database: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
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
        /// The policy file.
        #[arg(long)]
        policy: String,
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
        /// The policy file.
        #[arg(long)]
        policy: String,
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
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
        /// Exit 1 when a change of this class exists (`widen`, or `any`).
        #[arg(long, value_enum)]
        fail_on: Option<FailOn>,
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

fn read(path: &str) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_string(),
        message: e.to_string(),
    })
}

fn principal(policy: &Policy, who: &Who) -> Result<Principal, Error> {
    let caller = if let Some(u) = &who.user {
        Caller::User(u.clone())
    } else if who.anonymous {
        Caller::Anonymous
    } else if let Some(path) = &who.claims {
        return Caller::ClaimsJson(read(path)?)
            .principal(policy)
            .map_err(|e| match e {
                Error::Unknown { kind, name } => Error::Unknown {
                    kind,
                    name: format!("{path}: {name}"),
                },
                other => other,
            });
    } else if let Some(secret) = &who.api_key {
        Caller::ApiKey(secret.clone())
    } else if who.group.is_empty() && who.attr.is_empty() {
        return Err(Error::Unknown {
            kind: "principal",
            name: "(give --user, --claims, --api-key or --group/--attr)".into(),
        });
    } else {
        Caller::Groups {
            groups: who.group.clone(),
            attributes: key_values(&who.attr, "attribute")?,
        }
    };
    caller.principal(policy)
}

fn read_sql(sql: Option<&str>) -> Result<String, Error> {
    match sql {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Error::Io {
                    path: "<stdin>".into(),
                    message: e.to_string(),
                })?;
            Ok(s)
        }
        Some(s) => Ok(s.to_string()),
    }
}

/// A builder question from a file, or standard input for `-`: YAML for a
/// `.yaml`/`.yml` file or `--builder-format yaml`, JSON otherwise.
fn read_builder(path: &str, format: Option<BuilderFormat>) -> Result<serde_json::Value, Error> {
    let text = if path == "-" {
        read_sql(None)?
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

fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Rewrite {
            policy,
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
            format,
            sql,
        } => {
            let policy = Policy::from_path(&policy)?;
            let principal = principal(&policy, &who)?;
            let opts = Options {
                database,
                dialect: dialect.map(|d| d.parse::<Dialect>()).transpose()?,
                params,
                emit_role,
                local_role,
                fence: fence.map(|f| f.parse()).transpose()?,
                ..Options::default()
            };
            let out = match (question, builder) {
                (Some(q), _) => {
                    let values: BTreeMap<String, AttributeValue> =
                        key_values(&vars, "variable")?.into_iter().collect();
                    policy.rewrite_question(&principal, &q, &values, &opts)?
                }
                (None, Some(path)) => policy.rewrite_builder(
                    &principal,
                    &read_builder(&path, builder_format)?,
                    &opts,
                )?,
                (None, None) => policy.rewrite(&principal, &read_sql(sql.as_deref())?, &opts)?,
            };
            match format {
                Format::Sql => println!("{}", out.sql),
                Format::Json => println!("{}", json(&out)),
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
            let policy = Policy::from_path(&policy)?;
            if all_users {
                let m = explain::matrix(&policy)?;
                match format {
                    TextOrJson::Text => print!("{}", m.to_text()),
                    TextOrJson::Json => println!("{}", json(&m)),
                }
                return Ok(ExitCode::SUCCESS);
            }
            let principal = principal(&policy, &who)?;
            let e = explain::explain(&policy, &principal);
            let opts = Options {
                database,
                ..Options::default()
            };
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
                    print!("{}", e.to_text());
                    match &query {
                        None => {}
                        Some(Ok(out)) => {
                            println!("query: rewritten");
                            for a in &out.applied {
                                let vals: Vec<String> = a
                                    .bindings
                                    .iter()
                                    .map(|b| format!("{} = {}", b.attribute, b.value))
                                    .collect();
                                println!(
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
                                (_, false) => println!(
                                    "  fence ({mode}): none (nothing that can fail reaches the sandboxes' rows)"
                                ),
                                (Some(why), true) => println!(
                                    "  fence ({mode}): fenced, because the database could evaluate {why} on rows a sandbox filters out; {} row-safe condition(s) copied inside",
                                    f.pushed
                                ),
                                (None, true) => println!(
                                    "  fence ({mode}): fenced; {} row-safe condition(s) copied inside",
                                    f.pushed
                                ),
                            }
                            println!("  sql: {}", out.sql);
                            println!("  fingerprint: {}", out.fingerprint);
                        }
                        Some(Err(err)) => {
                            println!("query: refused\n  error[{}]: {err}", err.code())
                        }
                    }
                }
                TextOrJson::Json => {
                    let q = query.as_ref().map(|r| match r {
                        Ok(out) => serde_json::json!({"rewritten": out}),
                        Err(err) => serde_json::json!({"refused": {"code": err.code(), "message": err.to_string()}}),
                    });
                    println!(
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
            policy: path,
            format,
            database_url,
            database,
        } => {
            let src = read(&path)?;
            let policy = Policy::from_yaml(&src, &path)?;
            let mut findings = lint::check(&policy, &src);
            if let Some(url) = database_url {
                findings.extend(live_check(&policy, database.as_deref(), &url)?);
            }
            let errors = findings
                .iter()
                .filter(|f| f.severity == lint::Severity::Error)
                .count();
            match format {
                TextOrJson::Text => {
                    for f in &findings {
                        println!("{path}: {f}");
                    }
                    println!(
                        "{path}: {} ({} errors, {} warnings, {} notes)",
                        if errors == 0 { "ok" } else { "FAILED" },
                        errors,
                        findings
                            .iter()
                            .filter(|f| f.severity == lint::Severity::Warning)
                            .count(),
                        findings
                            .iter()
                            .filter(|f| f.severity == lint::Severity::Info)
                            .count()
                    );
                }
                TextOrJson::Json => println!(
                    "{}",
                    json(
                        &serde_json::json!({"file": path, "ok": errors == 0, "findings": findings})
                    )
                ),
            }
            Ok(if errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
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
                    return Err(Error::Unknown {
                        kind: "option",
                        name: "--database-url without --plan or --apply".into(),
                    })
                }
                (None, ..) => None,
            };
            export(&policy, format, database, role_prefix, live)
        }
        Command::Drift {
            policy,
            database_url,
            database,
            role_prefix,
        } => drift(&policy, &database_url, database, role_prefix),
        Command::Diff {
            first,
            second,
            git,
            format,
            fail_on,
        } => policy_diff(&first, second.as_deref(), git.as_deref(), format, fail_on),
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
) -> Result<ExitCode, Error> {
    use sqlsandbox::export::live;
    match what {
        LiveExport::Plan => print!("{}", live::plan(url, policy, opts)?.script()),
        LiveExport::Apply => {
            let plan = live::apply(url, policy, opts)?;
            if plan.diff.is_empty() {
                println!("applied: nothing changed");
            } else {
                print!("applied:\n{}", plan.diff);
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
) -> Result<ExitCode, Error> {
    Err(no_live())
}

#[cfg(feature = "live")]
fn drift(
    policy: &str,
    url: &str,
    database: Option<String>,
    role_prefix: String,
) -> Result<ExitCode, Error> {
    let policy = Policy::from_path(policy)?;
    let opts = sqlsandbox::export::ExportOptions {
        role_prefix,
        database,
        ..Default::default()
    };
    let diff = sqlsandbox::export::live::drift(url, &policy, &opts)?;
    if diff.is_empty() {
        println!("no drift");
        Ok(ExitCode::SUCCESS)
    } else {
        print!("{diff}");
        Ok(ExitCode::from(1))
    }
}

#[cfg(not(feature = "live"))]
fn drift(
    _policy: &str,
    _url: &str,
    _database: Option<String>,
    _role_prefix: String,
) -> Result<ExitCode, Error> {
    Err(no_live())
}

fn policy_test(
    policy: Option<String>,
    update: bool,
    junit: Option<String>,
    database_url: Option<String>,
    files: &[String],
) -> Result<ExitCode, Error> {
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
    print!("{}", policytest::text_report(&reports));
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
) -> Result<ExitCode, Error> {
    use sqlsandbox::policydiff;
    let (old, new) = match (git, second) {
        (Some(rev), _) => (policydiff::load_git(rev, first)?, Policy::from_path(first)?),
        (None, Some(new)) => (policydiff::load(first)?, policydiff::load(new)?),
        (None, None) => {
            return Err(Error::Unknown {
                kind: "argument",
                name: "(give OLD NEW, or --git REV NEW)".into(),
            })
        }
    };
    let report = policydiff::diff(&old, &new)?;
    match format {
        TextOrJson::Text => print!("{}", report.to_text()),
        TextOrJson::Json => println!("{}", json(&report)),
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
fn schema(url: &str) -> Result<ExitCode, Error> {
    let live = sqlsandbox::introspect::introspect(url)?;
    print!("{}", sqlsandbox::introspect::schema_yaml(&live));
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "live"))]
fn schema(_url: &str) -> Result<ExitCode, Error> {
    Err(no_live())
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
    Err(no_live())
}

#[cfg(not(feature = "live"))]
fn no_live() -> Error {
    Error::Unsupported {
        construct: "a live database (built without the `live` feature)".into(),
    }
}

fn export(
    policy: &str,
    format: ExportFormat,
    database: Option<String>,
    role_prefix: String,
    live: Option<(String, LiveExport)>,
) -> Result<ExitCode, Error> {
    let policy = Policy::from_path(policy)?;
    let opts = sqlsandbox::export::ExportOptions {
        role_prefix,
        database,
        ..Default::default()
    };
    match format {
        ExportFormat::Postgres => match live {
            Some((url, what)) => return live_export(&policy, &opts, &url, what),
            None => print!(
                "{}",
                sqlsandbox::export::export_postgres_with(&policy, &opts)?
            ),
        },
        ExportFormat::Mysql => {
            if live.is_some() {
                return Err(Error::Unsupported {
                    construct: "--plan/--apply for MySQL (PostgreSQL only)".into(),
                });
            }
            print!(
                "{}",
                sqlsandbox::export::mysql::export_mysql(&policy, &opts)?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error[{}]: {e}", e.code());
            ExitCode::from(if e.is_refusal() { 1 } else { 2 })
        }
    }
}
