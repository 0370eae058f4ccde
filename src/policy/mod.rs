//! The policy: loading, validation with file/line diagnostics, and
//! compilation into immutable lookup tables.
//!
//! ```
//! let policy = sqlsandbox::Policy::from_yaml(r#"
//! version: 1
//! databases:
//!   db: {dialect: postgres, tables: {orders: {columns: {id: integer, tenant_id: integer}}}}
//! groups:
//!   customers: {data: {db: {public: {orders: {sandbox: {column: tenant_id, attribute: tenant}}}}}}
//! "#, "inline.yaml").unwrap();
//! assert!(policy.database("db").is_some());
//! ```

mod compile;
pub(crate) mod locate;
pub(crate) mod mask;
pub(crate) mod model;
pub(crate) mod question;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use sqlparser::ast::Query;

use crate::dialect::Dialect;
use crate::error::{Error, Result};

pub(crate) use compile::parse_yaml_document;
pub use question::VAR_PREFIX;

/// The name of the group every principal belongs to.
pub const ALL_USERS: &str = "all_users";
/// The name of the group whose members bypass data permissions.
pub const ADMINISTRATORS: &str = "administrators";

/// A compiled, validated policy. Immutable, `Send + Sync`, built once and
/// shared by every query.
#[derive(Debug)]
pub struct Policy {
    /// SHA-256 of the policy text and the environment values it read.
    pub(crate) digest: String,
    pub(crate) file: String,
    pub(crate) databases: BTreeMap<String, Database>,
    pub(crate) questions: BTreeMap<String, Arc<Question>>,
    pub(crate) collections: BTreeMap<String, Collection>,
    pub(crate) groups: BTreeMap<String, Group>,
    /// By name. foldhash rather than SipHash: the names are the policy
    /// author's, and a lookup (by a request's name) never grows the table.
    pub(crate) users: HashMap<String, UserDef, foldhash::fast::RandomState>,
    pub(crate) api_keys: Vec<ApiKey>,
    pub(crate) declared_attributes: Option<Vec<String>>,
    /// Declared attribute types (`attributes: {tenant: integer}`).
    pub(crate) attribute_types: HashMap<String, AttributeType>,
    /// Whether any rule governs writes (else every write is refused as
    /// not read-only, as before write rules existed).
    pub(crate) writes: bool,
    pub(crate) functions: FunctionPolicy,
}

/// An API key declared in the policy.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// Its name (for audit).
    pub name: String,
    /// Lower-case hex SHA-256 of the secret.
    pub sha256: String,
    /// Lower-case hex SHA-256 of the secret being replaced, during a
    /// rotation: it authenticates as this key too.
    pub previous_sha256: Option<String>,
    /// The one group it acts as.
    pub group: String,
    /// Fixed attributes.
    pub attributes: BTreeMap<String, crate::value::AttributeValue>,
}

impl ApiKey {
    /// Whether a secret whose SHA-256 is `hash` (lower-case hex)
    /// authenticates as this key: the current secret, or the previous one
    /// during a rotation.
    pub fn accepts(&self, hash: &str) -> bool {
        self.sha256 == hash || self.previous_sha256.as_deref() == Some(hash)
    }

    /// Whether a rotation is in progress (a previous secret still works).
    pub fn rotating(&self) -> bool {
        self.previous_sha256.is_some()
    }
}

impl Policy {
    /// Loads and compiles a policy from YAML text; `file` names it in errors.
    pub fn from_yaml(src: &str, file: &str) -> Result<Policy> {
        compile::compile(src, file)
    }

    /// Loads and compiles a policy file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Policy> {
        let path = path.as_ref();
        let src = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_yaml(&src, &path.display().to_string())
    }

    /// The policy's version: the SHA-256 (hex) of its text and of the
    /// environment values it read when it loaded (hash keys). Every
    /// [`crate::Rewritten::fingerprint`] includes it, so results cached
    /// under one policy are never served under an edited one.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// A database by name.
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.get(name)
    }

    /// Names of the declared databases.
    pub fn database_names(&self) -> impl Iterator<Item = &str> {
        self.databases.keys().map(String::as_str)
    }

    /// A saved question by name.
    pub fn question(&self, name: &str) -> Option<&Question> {
        self.questions.get(name).map(|q| q.as_ref())
    }

    /// A collection by name.
    pub fn collection(&self, name: &str) -> Option<&Collection> {
        self.collections.get(name)
    }

    /// A group by name.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    /// Names of the policy's users, sorted.
    pub fn user_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.users.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Names of the policy's groups (`all_users` and `administrators`
    /// included), sorted.
    pub fn group_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.groups.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The API keys the policy declares, sorted by name.
    pub fn api_keys(&self) -> &[ApiKey] {
        &self.api_keys
    }

    /// An API key by name.
    pub fn api_key(&self, name: &str) -> Option<&ApiKey> {
        self.api_keys.iter().find(|k| k.name == name)
    }

    /// Names of the API keys, sorted.
    pub fn api_key_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.api_keys.iter().map(|k| k.name.as_str()).collect();
        v.sort_unstable();
        v
    }

    /// Whether the policy declares its attributes (`attributes:`); then
    /// users, API keys and callers may give no other.
    pub fn declares_attributes(&self) -> bool {
        self.declared_attributes.is_some()
    }

    /// The attributes a principal can usefully have, sorted: the declared
    /// ones when the policy declares them, else those its rules read
    /// (sandboxes, routing, impersonation, tenant roles) and those its
    /// users and API keys are given. For "did you mean" on attribute names.
    pub fn attribute_names(&self) -> Vec<String> {
        let mut v: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        if let Some(d) = &self.declared_attributes {
            v.extend(d.iter().cloned());
            return v.into_iter().collect();
        }
        for db in self.databases.values() {
            v.extend(db.routing.iter().map(|r| r.attribute.clone()));
            v.extend(db.impersonation.iter().map(|i| i.attribute.clone()));
            v.extend(db.tenant_roles.iter().cloned());
            for t in db.tables() {
                for g in self.groups.values() {
                    if let TableGrant::Sandbox(sb) =
                        crate::access::group_grant(g.data.get(&db.name), t)
                    {
                        v.extend(sb.attributes("").into_iter().map(|(a, _, _)| a));
                    }
                }
            }
        }
        for u in self.users.values() {
            v.extend(u.attributes.iter().map(|(k, _)| k.clone()));
        }
        for k in &self.api_keys {
            v.extend(k.attributes.keys().cloned());
        }
        v.into_iter().collect()
    }

    /// Names of the saved questions, sorted.
    pub fn question_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.questions.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The file the policy came from.
    pub fn file(&self) -> &str {
        &self.file
    }
}

/// When a sandbox subquery gets the dialect's optimisation fence
/// ([`crate::Dialect::fence`]), which stops the database from evaluating
/// the query's predicates on rows the sandbox filters out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FenceMode {
    /// Fence only when the query holds an expression the database could
    /// evaluate on filtered-out rows and that is not row-safe (it could
    /// raise an error or warn); then push the query's row-safe conditions
    /// into the fenced sandboxes.
    #[default]
    Auto,
    /// Fence every sandbox (pushing row-safe conditions into it).
    Always,
    /// Never fence: for principals who may accept the error side channel
    /// (a failing expression can reveal that another tenant's row exists).
    Never,
}

impl std::str::FromStr for FenceMode {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<Self> {
        match s {
            "auto" => Ok(FenceMode::Auto),
            "always" => Ok(FenceMode::Always),
            "never" => Ok(FenceMode::Never),
            other => Err(crate::error::Error::Unknown {
                kind: "fence mode (auto, always, never)",
                name: other.to_string(),
            }),
        }
    }
}

/// A declared database.
#[derive(Debug)]
pub struct Database {
    /// Its name in the policy.
    pub name: String,
    /// Its SQL dialect.
    pub dialect: Dialect,
    /// Normalised default schema for unqualified names.
    pub default_schema: String,
    /// When sandbox subqueries get the dialect's optimisation fence.
    pub fence: FenceMode,
    pub(crate) tables: HashMap<TableKey, Arc<Table>>,
    /// Normalised names of schemas that hold declared tables.
    pub(crate) schemas: HashSet<String>,
    /// Column name → its type, `None` when tables disagree (for inference).
    pub(crate) column_types: HashMap<String, Option<ColumnType>>,
    /// Database routing, if configured.
    pub routing: Option<Routing>,
    /// Connection impersonation, if configured.
    pub impersonation: Option<Impersonation>,
    /// The attribute whose values get their own login roles in the native
    /// enforcement export, if any.
    pub tenant_roles: Option<String>,
}

/// Database routing (as Metabase's): the router database declares a user
/// attribute whose value is the slug of the destination database to run on.
#[derive(Debug, Clone)]
pub struct Routing {
    /// The attribute holding the destination slug.
    pub attribute: String,
    /// Destination slugs (with the policy database each stands for, if any).
    pub destinations: BTreeMap<String, Option<String>>,
    /// Whether an anonymous principal runs on the router database
    /// (`allow_anonymous: true`); refused otherwise.
    pub allow_anonymous: bool,
    /// Group → destination slug, for principals without the attribute.
    pub groups: BTreeMap<String, String>,
    /// Destination slug → the schema its queries read (schema-per-tenant:
    /// every table's schema is replaced by it in the rewritten SQL).
    pub schemas: BTreeMap<String, String>,
    /// Destination slug → the catalog its queries read (three-part names).
    pub catalogs: BTreeMap<String, String>,
}

/// The slug that selects the router database itself.
pub const ROUTER: &str = "__ROUTER__";
/// Metabase's name for [`ROUTER`], accepted beside it.
pub const METABASE_ROUTER: &str = "__METABASE_ROUTER__";

/// Connection impersonation: the database role comes from an attribute.
#[derive(Debug, Clone)]
pub struct Impersonation {
    /// The attribute holding the role name.
    pub attribute: String,
}

impl Database {
    /// Looks a table up by its normalised key.
    pub fn table(&self, key: &TableKey) -> Option<&Arc<Table>> {
        self.tables.get(key)
    }

    /// Looks a table up by normalised schema and name, without building a
    /// [`TableKey`] (the rewrite does this for every table reference).
    pub fn lookup(&self, schema: &str, name: &str) -> Option<&Arc<Table>> {
        self.tables.get(&(schema, name) as &dyn KeyPair)
    }

    /// All declared tables, sorted by name.
    pub fn tables(&self) -> Vec<&Arc<Table>> {
        let mut v: Vec<&Arc<Table>> = self.tables.values().collect();
        v.sort_by_key(|a| a.qualified());
        v
    }
}

/// Normalised (schema, table) key of a declared table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableKey {
    /// Normalised schema name.
    pub schema: String,
    /// Normalised table name.
    pub name: String,
}

/// A (schema, name) pair a table can be looked up by: [`TableKey`] itself,
/// or borrowed strings (the standard `Borrow` trick for two-part keys).
trait KeyPair {
    fn pair(&self) -> (&str, &str);
}

impl KeyPair for TableKey {
    fn pair(&self) -> (&str, &str) {
        (&self.schema, &self.name)
    }
}

impl KeyPair for (&str, &str) {
    fn pair(&self) -> (&str, &str) {
        (self.0, self.1)
    }
}

impl<'k> std::borrow::Borrow<dyn KeyPair + 'k> for TableKey {
    fn borrow(&self) -> &(dyn KeyPair + 'k) {
        self
    }
}

// Hash and equality as `TableKey`'s derived ones (field by field), as
// `Borrow` requires.
impl std::hash::Hash for dyn KeyPair + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let (schema, name) = self.pair();
        schema.hash(h);
        name.hash(h);
    }
}

impl PartialEq for dyn KeyPair + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.pair() == other.pair()
    }
}

impl Eq for dyn KeyPair + '_ {}

/// A declared table.
#[derive(Debug)]
pub struct Table {
    /// Key in the database's table map.
    pub key: TableKey,
    /// Schema as written in the policy.
    pub schema: String,
    /// Name as written in the policy.
    pub name: String,
    /// Declared columns.
    pub columns: Vec<Column>,
    /// How sandboxes of several groups combine.
    pub combine: Combine,
    /// Declared foreign keys (query-builder implicit joins follow them).
    pub foreign_keys: Vec<ForeignKey>,
    /// What a principal no group grants the table gets.
    pub on_denied: OnDenied,
}

/// What reading a table that none of the principal's groups grants does
/// (`on_denied:` on the table, its database or the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDenied {
    /// Refused with an access error (the default).
    Error,
    /// Read as a table without rows (Superset's base filter `1 = 0`).
    Empty,
}

/// A user attribute's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeType {
    /// The type of its value(s).
    pub ty: ColumnType,
    /// Whether it holds a list of values.
    pub list: bool,
}

impl AttributeType {
    pub(crate) fn parse(s: &str) -> Option<AttributeType> {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        let inner = lower.strip_suffix("[]").or_else(|| {
            lower
                .strip_prefix("list<")
                .and_then(|r| r.strip_suffix('>'))
        });
        match inner {
            Some(i) => ColumnType::parse(i.trim()).map(|ty| AttributeType { ty, list: true }),
            None => ColumnType::parse(&lower).map(|ty| AttributeType { ty, list: false }),
        }
    }
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.list {
            write!(f, "list of {}", self.ty)
        } else {
            write!(f, "{}", self.ty)
        }
    }
}

/// A declared foreign key: `column` of a table references `target_column`
/// of table `target` in the same database.
///
/// ```yaml
/// public.orders:
///   columns: {id: integer, product_id: integer}
///   foreign_keys: {product_id: products.id}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// Normalised name of the referencing column.
    pub column: String,
    /// The referenced table.
    pub target: TableKey,
    /// Normalised name of the referenced column.
    pub target_column: String,
}

impl Table {
    /// `schema.table`, as written in the policy.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// A column by normalised name.
    pub fn column(&self, key: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.key == key)
    }

    /// The foreign key declared on column `key` (normalised), if any.
    pub fn foreign_key(&self, key: &str) -> Option<&ForeignKey> {
        self.foreign_keys.iter().find(|f| f.column == key)
    }
}

/// A declared column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Name as written in the policy.
    pub name: String,
    /// Normalised name.
    pub key: String,
    /// Declared type.
    pub ty: ColumnType,
}

/// Column types sandbox values are coerced to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// 64-bit integer.
    Integer,
    /// Exact decimal number.
    Decimal,
    /// Text.
    Text,
    /// Boolean.
    Boolean,
    /// Calendar date `YYYY-MM-DD`.
    Date,
    /// Timestamp `YYYY-MM-DD HH:MM:SS[.f][zone]`.
    Timestamp,
    /// UUID.
    Uuid,
}

impl ColumnType {
    pub(crate) fn parse(s: &str) -> Option<ColumnType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "integer" | "int" | "bigint" | "smallint" => ColumnType::Integer,
            "decimal" | "numeric" | "float" | "double" | "real" => ColumnType::Decimal,
            "text" | "string" | "varchar" => ColumnType::Text,
            "boolean" | "bool" => ColumnType::Boolean,
            "date" => ColumnType::Date,
            "timestamp" | "datetime" | "timestamptz" => ColumnType::Timestamp,
            "uuid" => ColumnType::Uuid,
            _ => return None,
        })
    }

    pub(crate) fn compatible(self, other: ColumnType) -> bool {
        self == other
            || matches!(
                (self, other),
                (ColumnType::Integer, ColumnType::Decimal)
                    | (ColumnType::Decimal, ColumnType::Integer)
            )
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnType::Integer => "integer",
            ColumnType::Decimal => "decimal",
            ColumnType::Text => "text",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Uuid => "uuid",
        })
    }
}

/// How several groups' sandboxes on one table combine for one principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// Two different sandboxes are a conflict (the default, as in Metabase).
    Error,
    /// Rows visible under either basic sandbox are visible.
    Union,
}

/// A saved question.
#[derive(Debug)]
pub struct Question {
    /// Its name.
    pub name: String,
    /// The database it runs on.
    pub database: String,
    /// Its collection: [`ROOT_COLLECTION`] when the policy names none.
    pub collection: String,
    /// The SQL text as written.
    pub sql: String,
    /// The parsed query; `{{var}}` appear as identifiers `VAR_PREFIX + var`.
    pub(crate) query: Query,
    /// Variables in order of first appearance.
    pub variables: Vec<String>,
    /// Output column names (normalised) with their type when known.
    pub(crate) columns: Option<Vec<(String, Option<ColumnType>)>>,
    /// Variable types: declared (on the question, or unanimously by the
    /// sandboxes that use it), else inferred from `column = {{var}}`
    /// comparisons.
    pub(crate) inferred: HashMap<String, ColumnType>,
    /// Variables used where no compared column gives their type and the
    /// question declares none: every sandbox using the question must
    /// declare the parameter's type (checked at load).
    pub(crate) untyped: Vec<String>,
}

/// The root collection, Metabase's "Our analytics": always present, it holds
/// the questions that name no collection and top-level collections. A
/// group's grant on it covers the questions directly in it only; top-level
/// collections do not inherit it (so a grant on the root never opens every
/// collection).
pub const ROOT_COLLECTION: &str = "root";

/// A collection of saved questions.
#[derive(Debug)]
pub struct Collection {
    /// Its name ([`ROOT_COLLECTION`] for the root collection).
    pub name: String,
    /// Parent collection.
    pub parent: Option<String>,
}

/// A permission group.
#[derive(Debug, Default)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Databases on which the group has at least one sandbox.
    pub(crate) sandboxed_dbs: HashSet<String>,
    pub(crate) data: HashMap<String, DbGrant>,
    pub(crate) native: HashSet<String>,
    /// Query creation per database, as declared (`queries:`).
    pub(crate) queries: HashMap<String, QueryLevel>,
    pub(crate) collections: HashMap<String, CollectionLevel>,
}

/// What a group may create on a database (Metabase's "create queries").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryLevel {
    /// Nothing: saved questions in viewable collections only.
    None,
    /// Query-builder questions.
    Builder,
    /// Query-builder questions and native SQL.
    Native,
}

impl Group {
    /// Whether the group may send native SQL to `database`.
    pub fn native(&self, database: &str) -> bool {
        self.native.contains(database)
    }

    /// What the group may create on `database`: as declared in `queries:`,
    /// else native SQL where `native:` grants it, query-builder questions
    /// where the group has data access, nothing otherwise.
    pub fn query_level(&self, database: &str) -> QueryLevel {
        if let Some(l) = self.queries.get(database) {
            return *l;
        }
        if self.native.contains(database) {
            return QueryLevel::Native;
        }
        match self.data.get(database) {
            None | Some(DbGrant::NoAccess) | Some(DbGrant::Blocked) => QueryLevel::None,
            Some(_) => QueryLevel::Builder,
        }
    }

    /// The group's own permission on a collection (no inheritance).
    pub fn collection_level(&self, collection: &str) -> Option<CollectionLevel> {
        self.collections.get(collection).copied()
    }
}

/// Collection permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionLevel {
    /// No access.
    None,
    /// May view and run questions.
    View,
    /// May also edit.
    Curate,
}

/// A group's grant on a database.
#[derive(Debug)]
pub enum DbGrant {
    /// Every declared table, unfiltered.
    Unrestricted,
    /// Nothing, and saved questions on it cannot be viewed through collections.
    Blocked,
    /// Nothing.
    NoAccess,
    /// Per schema.
    Schemas(HashMap<String, SchemaGrant>),
}

/// A group's grant on a schema.
#[derive(Debug)]
pub enum SchemaGrant {
    /// Every declared table of the schema.
    Unrestricted,
    /// Nothing.
    NoAccess,
    /// Per table (normalised name).
    Tables(HashMap<String, TableGrant>),
}

/// A group's grant on a table.
#[derive(Debug, Clone)]
pub enum TableGrant {
    /// All rows and columns.
    Unrestricted,
    /// Nothing.
    NoAccess,
    /// Rows (and maybe columns) restricted by a sandbox.
    Sandbox(Arc<Sandbox>),
}

/// A sandbox: the filtered stand-in for a table.
#[derive(Debug, PartialEq)]
pub struct Sandbox {
    /// The group whose grant it is.
    pub group: String,
    /// What it does.
    pub kind: SandboxKind,
    /// The group's restrictive rules on the table: ANDed on top of every
    /// permissive grant the principal has on it, from any group.
    pub restrictive: Vec<Arc<Rule>>,
    /// The group's rules that govern writes (permissive and restrictive).
    pub writes: Vec<Arc<Rule>>,
    /// The group's column masks on the table (table column order).
    pub masks: Vec<Arc<Mask>>,
}

pub use mask::{Mask, MaskKind};

/// A row rule (`rules:` or `sandbox: {filter: …}`).
#[derive(Debug, PartialEq)]
pub struct Rule {
    /// The group that has it.
    pub group: String,
    /// The table it is on.
    pub table: TableKey,
    /// Its name (`name:`, else `rule <n>` in the group's list).
    pub name: String,
    /// The condition as written.
    pub filter: String,
    /// The condition, parsed: `{{attribute}}` as markers (see
    /// [`VAR_PREFIX`]), table names qualified.
    pub(crate) expr: sqlparser::ast::Expr,
    /// ANDed on top of the permissive rules.
    pub restrictive: bool,
    /// Tables the filter reads are read unrestricted (`as: definer`)
    /// rather than through their sandboxes for the same principal.
    pub definer: bool,
    /// The columns it reveals (normalised names, table order); `None`: all.
    pub columns: Option<Vec<String>>,
    /// Its `{{attribute}}` parameters, with the types they bind as.
    pub parameters: Vec<Parameter>,
    /// Declared tables the filter reads (normalised).
    pub reads: Vec<TableKey>,
    /// The statements it governs.
    pub commands: Commands,
    /// For writes: the condition written rows must meet (`check:`, else
    /// the filter itself), compiled like a rule.
    pub check: Option<Arc<Rule>>,
}

/// The statements a rule governs (`commands:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Commands {
    /// Reads.
    pub select: bool,
    /// `INSERT`.
    pub insert: bool,
    /// `UPDATE`.
    pub update: bool,
    /// `DELETE`.
    pub delete: bool,
}

impl Commands {
    /// Whether it governs any write.
    pub fn writes(self) -> bool {
        self.insert || self.update || self.delete
    }
}

/// A write statement kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
}

impl Command {
    /// Whether `c` includes this command.
    pub fn in_set(self, c: Commands) -> bool {
        match self {
            Command::Insert => c.insert,
            Command::Update => c.update,
            Command::Delete => c.delete,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Insert => "INSERT",
            Command::Update => "UPDATE",
            Command::Delete => "DELETE",
        })
    }
}

/// The kinds of sandbox.
#[derive(Debug, PartialEq)]
pub enum SandboxKind {
    /// `column = attribute` pairs, ANDed.
    Basic(Vec<BasicFilter>),
    /// A saved question with `{{variables}}` bound to attributes.
    Custom {
        /// The question name.
        question: String,
        /// Variable bindings.
        parameters: Vec<Parameter>,
    },
    /// Permissive row rules of one group, ORed (none: the group grants
    /// no rows of its own, only restrictive rules).
    Rules(Vec<Arc<Rule>>),
    /// Every row: another group's unrestricted grant, when restrictive
    /// rules apply on top (only in a [`crate::access::Decision`]).
    All,
    /// No row: no group grants the table and it is `on_denied: empty`
    /// (only in a [`crate::access::Decision`]).
    Empty,
}

impl SandboxKind {
    /// A short description, used in conflicts and explanations.
    pub fn describe(&self) -> String {
        match self {
            SandboxKind::Basic(filters) => {
                let parts: Vec<String> = filters
                    .iter()
                    .map(|f| format!("{} = attribute `{}`", f.column, f.attribute))
                    .collect();
                format!("basic sandbox ({})", parts.join(" AND "))
            }
            SandboxKind::Custom { question, .. } => {
                format!("custom sandbox (question `{question}`)")
            }
            SandboxKind::Rules(rules) if rules.is_empty() => "no permissive rule".to_string(),
            SandboxKind::Rules(rules) => {
                let parts: Vec<String> = rules.iter().map(|r| r.describe()).collect();
                format!("rules ({})", parts.join(" OR "))
            }
            SandboxKind::All => "every row".to_string(),
            SandboxKind::Empty => "no rows (on_denied: empty)".to_string(),
        }
    }
}

impl Sandbox {
    /// The grant described: its rows, and its masks if any.
    pub fn describe(&self) -> String {
        let rows = match &self.kind {
            SandboxKind::All if !self.masks.is_empty() => "every row".to_string(),
            k => k.describe(),
        };
        if self.masks.is_empty() {
            rows
        } else {
            let masks: Vec<String> = self.masks.iter().map(|m| m.describe()).collect();
            format!("{rows}, masks ({})", masks.join("; "))
        }
    }

    /// The attributes it binds: (attribute, type it binds as, where),
    /// restrictive rules included.
    pub fn attributes(&self, table: &str) -> Vec<(String, Option<ColumnType>, String)> {
        let mut out = Vec::new();
        let rule = |r: &Rule, out: &mut Vec<(String, Option<ColumnType>, String)>| {
            for p in &r.parameters {
                out.push((
                    p.attribute.clone(),
                    p.ty,
                    format!(
                        "{{{{{}}}}} of {} (group `{}`) on {table}",
                        p.variable, r.name, r.group
                    ),
                ));
            }
        };
        match &self.kind {
            SandboxKind::Basic(fs) => {
                for f in fs {
                    out.push((
                        f.attribute.clone(),
                        Some(f.ty),
                        format!("column {table}.{}", f.column),
                    ));
                }
            }
            SandboxKind::Custom {
                parameters,
                question,
            } => {
                for p in parameters {
                    out.push((
                        p.attribute.clone(),
                        p.ty,
                        format!("variable {{{{{}}}}} of question `{question}`", p.variable),
                    ));
                }
            }
            SandboxKind::Rules(rules) => {
                for r in rules {
                    rule(r, &mut out);
                }
            }
            SandboxKind::All | SandboxKind::Empty => {}
        }
        for r in self
            .restrictive
            .iter()
            .chain(self.masks.iter().flat_map(|m| m.rules()))
        {
            rule(r, &mut out);
        }
        out
    }
}

impl Rule {
    /// `name: filter [columns …]`, for conflicts and explanations.
    pub fn describe(&self) -> String {
        let mut out = format!("{}: {}", self.name, self.filter.trim());
        if let Some(cols) = &self.columns {
            out.push_str(&format!(" [columns {}]", cols.join(", ")));
        }
        if self.definer {
            out.push_str(" [as definer]");
        }
        out
    }
}

/// One `column = attribute` pair of a basic sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct BasicFilter {
    /// Column name as declared.
    pub column: String,
    /// Its declared type (values are coerced to it).
    pub ty: ColumnType,
    /// The user attribute.
    pub attribute: String,
}

/// One `{{variable}}` binding of a custom sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// Variable name.
    pub variable: String,
    /// The user attribute.
    pub attribute: String,
    /// Type the value is coerced to (declared, or inferred from the SQL).
    pub ty: Option<ColumnType>,
}

/// A user declared in the policy.
#[derive(Debug, Clone)]
pub struct UserDef {
    /// Groups (besides `all_users`).
    pub groups: Vec<String>,
    /// Attributes, sorted by name (a vector: a `BTreeMap` node has room
    /// for eleven entries, and a policy may hold 100,000 users).
    pub attributes: Vec<(String, crate::value::AttributeValue)>,
}

/// Which functions native SQL may call, on top of each dialect's built-in
/// allow-list (`functions:` in the policy file).
#[derive(Debug, Default)]
pub struct FunctionPolicy {
    /// Function names added to every dialect's allow-list (lower case;
    /// `schema.name` for a user-defined function). Never an always-denied
    /// name: the policy loader refuses those.
    pub allow: HashSet<String>,
    /// Function names taken off every dialect's allow-list (lower case).
    pub deny: HashSet<String>,
    /// MySQL/MariaDB variables native SQL may read: a system variable's
    /// name without `@@` (lower case), or `@name` for a user variable.
    pub variables: HashSet<String>,
}
