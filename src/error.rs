//! One error type for every stage, with stable codes.
//!
//! Codes are part of the public contract: callers (and the CLI's exit codes)
//! key on them, so a code is never reused for a different meaning.

use std::fmt;

/// Where in a policy file a problem sits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// File name (or `<string>` for a policy loaded from memory).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted path of the key, e.g. `groups.customers.data.warehouse`.
    pub key: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if !self.key.is_empty() {
            write!(f, " (at `{}`)", self.key)?;
        }
        Ok(())
    }
}

/// Every refusal and failure sqlsandbox reports.
///
/// ```
/// use sqlsandbox::Error;
/// let e = Error::MissingAttribute { attribute: "tenant".into(), table: "public.orders".into() };
/// assert_eq!(e.code(), "SB301");
/// assert!(e.is_refusal());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The policy file is not valid YAML or does not match the policy schema.
    #[error("{location}: invalid policy: {message}")]
    PolicySyntax {
        /// Where.
        location: Location,
        /// What the YAML parser said.
        message: String,
    },
    /// The policy parsed but is inconsistent (unknown names, bad sandbox, ...).
    #[error("{location}: {message}")]
    PolicyInvalid {
        /// Where.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// Reading a file failed.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },
    /// A policy test file (`sqlsandbox test`, [`crate::policytest`]) is
    /// malformed: not YAML, an unknown key, a case without a principal, a
    /// query or exactly one expectation, or a policy it cannot find.
    #[error("{location}: invalid test file: {message}")]
    TestFile {
        /// Where (`key` is `cases[2]` for the third case).
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// A policy file cannot be edited as asked (`sqlsandbox apikey`,
    /// [`crate::apikey`]): the API key exists already (or does not), no
    /// rotation is in progress (or one is), the file's layout is not one
    /// the editor understands, or the edited file would not load or would
    /// change more than asked. The file is left untouched.
    #[error("cannot edit {path}: {message}")]
    PolicyEdit {
        /// The policy file.
        path: String,
        /// Why.
        message: String,
    },
    /// The SQL text does not parse in the dialect.
    #[error("cannot parse SQL ({dialect}): {message}")]
    SqlParse {
        /// Dialect used.
        dialect: String,
        /// Parser message (with line and column).
        message: String,
    },
    /// The principal names a user, group or database the policy does not know.
    #[error("unknown {kind} `{name}`")]
    Unknown {
        /// `user`, `group`, `database`, `dialect`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The policy declares several databases and the call named none.
    #[error("the policy declares several databases; name the one the query runs on ({choices})")]
    DatabaseRequired {
        /// The declared databases.
        choices: String,
    },
    /// A query-builder question is malformed; `path` is the JSON path of the
    /// bad node, e.g. `$.query.filter[1][1]`.
    #[error("bad query-builder question at {path}: {message}")]
    Builder {
        /// JSON path of the node.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The principal may not read this table / schema / database.
    #[error("access denied: {principal} may not read {object}: {reason}")]
    AccessDenied {
        /// Who asked.
        principal: String,
        /// The object refused, e.g. `table public.accounts`.
        object: String,
        /// Why.
        reason: String,
    },
    /// No write rule lets the principal run this command on this table.
    #[error("write denied: {principal} may not {command} {table}: {reason}")]
    WriteDenied {
        /// Who asked.
        principal: String,
        /// `INSERT`, `UPDATE` or `DELETE`.
        command: String,
        /// The table, `schema.table`.
        table: String,
        /// Why.
        reason: String,
    },
    /// No native SQL permission on this database.
    #[error("native SQL denied: {principal} may not send SQL to database `{database}` (no group grants `native`); use query-builder questions instead")]
    NativeDenied {
        /// Who asked.
        principal: String,
        /// The database.
        database: String,
    },
    /// The principal may not create query-builder questions there (only
    /// run saved questions).
    #[error("query creation denied: {principal} may not create questions on database `{database}` (its groups' `queries:` level is none); run saved questions instead")]
    BuilderDenied {
        /// Who asked.
        principal: String,
        /// The database.
        database: String,
    },
    /// Two groups sandbox the same table differently.
    #[error("sandbox conflict on {table}: group `{group_a}` applies {sandbox_a} and group `{group_b}` applies {sandbox_b}; declare the table with `combine: union` to show rows visible under either, or remove one")]
    SandboxConflict {
        /// The table.
        table: String,
        /// First group.
        group_a: String,
        /// Its sandbox.
        sandbox_a: String,
        /// Second group.
        group_b: String,
        /// Its sandbox.
        sandbox_b: String,
    },
    /// Database routing refused the principal.
    #[error("database routing on `{database}` refused: {reason}")]
    Routing {
        /// The router database.
        database: String,
        /// Why.
        reason: String,
    },
    /// Connection impersonation refused the principal.
    #[error("impersonation on `{database}` refused: {reason}")]
    Impersonation {
        /// The database.
        database: String,
        /// Why.
        reason: String,
    },
    /// A sandbox needs a user attribute the principal does not have.
    #[error("query requires user attribute `{attribute}` (sandbox on {table}), which this principal does not have")]
    MissingAttribute {
        /// The attribute.
        attribute: String,
        /// The sandboxed table.
        table: String,
    },
    /// A saved question run by name lacks a value for one of its variables.
    #[error("question `{question}` requires a value for `{{{{{variable}}}}}`")]
    MissingVariable {
        /// The question.
        question: String,
        /// The variable.
        variable: String,
    },
    /// An attribute value does not fit the column (or parameter) type.
    #[error("attribute `{attribute}` value {value} is not a valid {ty} for {target}")]
    AttributeType {
        /// The attribute.
        attribute: String,
        /// The offending value, quoted.
        value: String,
        /// Expected type.
        ty: String,
        /// What it is bound to, e.g. `column public.orders.tenant_id`.
        target: String,
    },
    /// The query names a column that the principal's sandbox hides.
    #[error(
        "column `{column}` of {table} is not visible to this principal (hidden by {hidden_by})"
    )]
    HiddenColumn {
        /// The column.
        column: String,
        /// The table.
        table: String,
        /// What hides it: ``sandbox question `q` `` or the row rules.
        hidden_by: String,
    },
    /// The statement is not a single read-only query.
    #[error("refused: {0}")]
    NotReadOnly(String),
    /// A function that reads tables or files, or runs SQL from strings.
    #[error("refused: function `{function}` is not allowed ({reason})")]
    ForbiddenFunction {
        /// The function name.
        function: String,
        /// Why.
        reason: String,
    },
    /// A construct the compiler does not understand well enough to prove safe.
    #[error("refused: {construct} is not supported by sqlsandbox (it cannot prove it safe)")]
    Unsupported {
        /// The construct.
        construct: String,
    },
    /// A resource limit was hit.
    #[error("refused: {0}")]
    Limit(String),
    /// The post-rewrite check found a protected table outside its sandbox.
    /// This is a bug in sqlsandbox; the query is refused.
    #[error("internal check failed, query refused: {0}")]
    Verification(String),
}

impl Error {
    /// The stable code of this error (`SB` + three digits).
    pub fn code(&self) -> &'static str {
        match self {
            Error::PolicySyntax { .. } => "SB001",
            Error::PolicyInvalid { .. } => "SB002",
            Error::Io { .. } => "SB003",
            Error::TestFile { .. } => "SB004",
            Error::PolicyEdit { .. } => "SB005",
            Error::SqlParse { .. } => "SB101",
            Error::Unknown { .. } => "SB102",
            Error::DatabaseRequired { .. } => "SB103",
            Error::Builder { .. } => "SB104",
            Error::AccessDenied { .. } => "SB201",
            Error::NativeDenied { .. } => "SB202",
            Error::SandboxConflict { .. } => "SB203",
            Error::Routing { .. } => "SB204",
            Error::Impersonation { .. } => "SB205",
            Error::WriteDenied { .. } => "SB206",
            Error::BuilderDenied { .. } => "SB207",
            Error::MissingAttribute { .. } => "SB301",
            Error::AttributeType { .. } => "SB302",
            Error::HiddenColumn { .. } => "SB303",
            Error::MissingVariable { .. } => "SB304",
            Error::NotReadOnly(_) => "SB401",
            Error::ForbiddenFunction { .. } => "SB402",
            Error::Unsupported { .. } => "SB403",
            Error::Limit(_) => "SB404",
            Error::Verification(_) => "SB901",
        }
    }

    /// Where in a file the problem sits, for policy and test-file errors.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::PolicySyntax { location, .. }
            | Error::PolicyInvalid { location, .. }
            | Error::TestFile { location, .. } => Some(location),
            _ => None,
        }
    }

    /// The message without the location that [`Error::location`] returns
    /// (the `Display` text starts with it): for diagnostics that print the
    /// location their own way.
    ///
    /// ```
    /// let e = sqlsandbox::Policy::from_yaml("version: 1\nusers: {a: {groups: [nope]}}\n", "p.yaml").unwrap_err();
    /// assert_eq!(e.location().unwrap().line, Some(2));
    /// assert!(e.message().starts_with("user `a` is in unknown group `nope`"));
    /// ```
    pub fn message(&self) -> String {
        let (text, location) = match self {
            Error::PolicySyntax { location, message } => {
                (format!("invalid policy: {message}"), location)
            }
            Error::PolicyInvalid { location, message } => (message.clone(), location),
            Error::TestFile { location, message } => {
                (format!("invalid test file: {message}"), location)
            }
            other => return other.to_string(),
        };
        if location.key.is_empty() {
            text
        } else {
            format!("{text} (at `{}`)", location.key)
        }
    }

    /// True when the input was understood and refused (CLI exit code 1);
    /// false for bad input (exit code 2).
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            Error::PolicySyntax { .. }
                | Error::PolicyInvalid { .. }
                | Error::Io { .. }
                | Error::TestFile { .. }
                | Error::PolicyEdit { .. }
                | Error::SqlParse { .. }
                | Error::Unknown { .. }
                | Error::DatabaseRequired { .. }
                | Error::Builder { .. }
        )
    }

    pub(crate) fn unsupported(construct: impl Into<String>) -> Self {
        Error::Unsupported {
            construct: construct.into(),
        }
    }
}

/// `e` followed by its causes, `: `-separated; a cause whose text the
/// message already contains is skipped. A database client's "error
/// connecting to server" says nothing without its cause ("Connection
/// refused").
#[cfg_attr(not(feature = "live"), allow(dead_code))]
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
