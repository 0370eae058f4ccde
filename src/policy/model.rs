//! The serde model of the policy file, exactly as written in YAML.
//!
//! Nothing here is checked beyond shape; `compile` validates and builds the
//! lookup tables.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub version: u32,
    #[serde(default)]
    pub databases: BTreeMap<String, RawDatabase>,
    #[serde(default)]
    pub questions: BTreeMap<String, RawQuestion>,
    #[serde(default)]
    pub collections: BTreeMap<String, RawCollection>,
    #[serde(default)]
    pub groups: BTreeMap<String, RawGroup>,
    #[serde(default)]
    pub users: BTreeMap<String, RawUser>,
    #[serde(default)]
    pub functions: Option<RawFunctions>,
    /// Optional declaration of the user attributes the policy uses; when
    /// present, sandboxes and users may only name these.
    #[serde(default)]
    pub attributes: Option<Vec<String>>,
    /// API keys, each scoped to one group.
    #[serde(default)]
    pub api_keys: BTreeMap<String, RawApiKey>,
}

/// An API key: the SHA-256 of the secret, the one group it acts as, and
/// fixed attributes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub group: String,
    pub sha256: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub dialect: String,
    #[serde(default)]
    pub default_schema: Option<String>,
    #[serde(default)]
    pub tables: BTreeMap<String, RawTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    pub columns: BTreeMap<String, String>,
    /// How sandboxes from several groups combine: `error` (default) or `union`.
    #[serde(default)]
    pub combine: Option<String>,
    /// Optional foreign keys, `column: table.column` (or
    /// `schema.table.column`), used by query-builder implicit joins.
    #[serde(default)]
    pub foreign_keys: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuestion {
    pub database: String,
    #[serde(default)]
    pub collection: Option<String>,
    pub sql: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCollection {
    #[serde(default)]
    pub parent: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    #[serde(default)]
    pub data: BTreeMap<String, RawDbAccess>,
    #[serde(default)]
    pub native: BTreeMap<String, bool>,
    #[serde(default)]
    pub collections: BTreeMap<String, String>,
}

/// `unrestricted | blocked | no_access | {schema: ...}`
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawDbAccess {
    Level(String),
    Schemas(BTreeMap<String, RawSchemaAccess>),
}

/// `unrestricted | no_access | {table: ...}`
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSchemaAccess {
    Level(String),
    Tables(BTreeMap<String, RawTableAccess>),
}

/// `unrestricted | no_access | {sandbox: ...}`
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawTableAccess {
    Level(String),
    Sandboxed(RawSandboxed),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSandboxed {
    pub sandbox: RawSandbox,
}

/// A basic sandbox (`column` + `attribute`, or `filters`) or a custom one
/// (`question` + `parameters`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSandbox {
    #[serde(default)]
    pub column: Option<String>,
    #[serde(default)]
    pub attribute: Option<String>,
    #[serde(default)]
    pub filters: Vec<RawFilter>,
    #[serde(default)]
    pub question: Option<String>,
    #[serde(default)]
    pub parameters: BTreeMap<String, RawParameter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    pub column: String,
    pub attribute: String,
}

/// `{{variable}}: attribute` or `{{variable}}: {attribute: a, type: integer}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawParameter {
    Attribute(String),
    Typed {
        attribute: String,
        #[serde(rename = "type")]
        ty: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_yaml::Value>,
}

/// Function policy: extra denied functions, or a strict allow-list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunctions {
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub allow: Option<Vec<String>>,
}
