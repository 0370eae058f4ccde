//! The `sqlsandbox` command line.

use std::io::Read;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sqlsandbox::{AttributeValue, Dialect, Error, Options, Policy, Principal, Scalar};

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

#[derive(clap::Args)]
struct Who {
    /// A user declared in the policy.
    #[arg(long, conflicts_with_all = ["group", "attr"])]
    user: Option<String>,
    /// A group of the principal (repeatable), when not using --user.
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
        /// Output format.
        #[arg(long, value_enum, default_value = "sql")]
        format: Format,
        /// The SQL (or `-` / nothing to read standard input).
        sql: Option<String>,
    },
    /// Validate a policy.
    Check {
        /// The policy file.
        #[arg(long)]
        policy: String,
    },
}

fn principal(policy: &Policy, who: &Who) -> Result<Principal, Error> {
    if let Some(u) = &who.user {
        return Principal::from_user(policy, u);
    }
    let mut attrs: Vec<(String, AttributeValue)> = Vec::new();
    for a in &who.attr {
        let (k, v) = a.split_once('=').ok_or_else(|| Error::Unknown {
            kind: "attribute syntax (expected key=value)",
            name: a.clone(),
        })?;
        match attrs.iter_mut().find(|(x, _)| x == k) {
            Some((_, existing)) => {
                let mut vals: Vec<Scalar> = existing.values().into_iter().cloned().collect();
                vals.push(Scalar::Text(v.to_string()));
                *existing = AttributeValue::Many(vals);
            }
            None => attrs.push((k.to_string(), AttributeValue::text(v))),
        }
    }
    Principal::new(policy, "cli", who.group.iter().map(String::as_str), attrs)
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Rewrite {
            policy,
            who,
            database,
            dialect,
            params,
            format,
            sql,
        } => {
            let policy = Policy::from_path(&policy)?;
            let principal = principal(&policy, &who)?;
            let sql = match sql.as_deref() {
                None | Some("-") => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .map_err(|e| Error::Io {
                            path: "<stdin>".into(),
                            message: e.to_string(),
                        })?;
                    s
                }
                Some(s) => s.to_string(),
            };
            let opts = Options {
                database,
                dialect: dialect.map(|d| d.parse::<Dialect>()).transpose()?,
                params,
                ..Options::default()
            };
            let out = policy.rewrite(&principal, &sql, &opts)?;
            match format {
                Format::Sql => println!("{}", out.sql),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&out)
                        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
                ),
            }
            Ok(())
        }
        Command::Check { policy } => {
            let p = Policy::from_path(&policy)?;
            println!(
                "{}: ok ({} databases, {} groups, {} users)",
                p.file(),
                p.database_names().count(),
                p.groups_count(),
                p.user_names().len()
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error[{}]: {e}", e.code());
            ExitCode::from(if e.is_refusal() { 1 } else { 2 })
        }
    }
}
