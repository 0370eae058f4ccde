//! The serde model of the policy file, exactly as written in YAML.
//!
//! Nothing here is checked beyond shape; `compile` validates and builds the
//! lookup tables.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A YAML mapping with string keys that refuses a repeated key (a second
/// `groups.x` quietly replacing the first is how a policy leaks; the YAML
/// reader refuses one too, this is the model saying so itself). The error
/// carries the position, like every other syntax error. The keys are also kept in
/// the order written (`declared`): a table's columns are the table's in
/// that order, which `SELECT *` over a sandbox that reshapes them keeps.
#[derive(Debug)]
pub struct UMap<V>(pub BTreeMap<String, V>, pub Vec<String>);

impl<V> Default for UMap<V> {
    fn default() -> Self {
        UMap(BTreeMap::new(), Vec::new())
    }
}

impl<V> UMap<V> {
    /// The entries in the order the file writes them.
    pub fn declared(&self) -> impl Iterator<Item = (&String, &V)> {
        self.1
            .iter()
            .filter_map(|k| self.0.get_key_value(k.as_str()))
    }
}

impl<V> Deref for UMap<V> {
    type Target = BTreeMap<String, V>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a, V> IntoIterator for &'a UMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = std::collections::btree_map::Iter<'a, String, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = UMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_unit<E>(self) -> Result<UMap<V>, E> {
                Ok(UMap::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UMap<V>, A::Error> {
                let mut out = BTreeMap::new();
                let mut order = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    let v = map.next_value()?;
                    order.push(k.clone());
                    out.insert(k, v);
                }
                Ok(UMap(out, order))
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

/// A YAML mapping with string keys kept as a vector sorted by key: each
/// user's attributes (a `BTreeMap` node holds room for eleven entries, and
/// a policy may have 100,000 such maps). A repeated key is refused, as
/// [`UMap`] does; iteration is in key order, as [`UMap`]'s is.
#[derive(Debug)]
pub struct SmallMap<V>(pub Vec<(String, V)>);

impl<V> Default for SmallMap<V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SmallMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = SmallMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_unit<E>(self) -> Result<SmallMap<V>, E> {
                Ok(SmallMap::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SmallMap<V>, A::Error> {
                let mut out: Vec<(String, V)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(k) = map.next_key::<String>()? {
                    // A few entries are checked as they come (the error is
                    // then at the key); a long map once sorted, below.
                    if out.len() < 16 && out.iter().any(|(o, _)| *o == k) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    let v = map.next_value()?;
                    out.push((k, v));
                }
                out.sort_by(|a, b| a.0.cmp(&b.0));
                let repeated = out.windows(2).find_map(|w| match w {
                    [a, b] if a.0 == b.0 => Some(a.0.clone()),
                    _ => None,
                });
                if let Some(k) = repeated {
                    return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
                }
                out.shrink_to_fit();
                Ok(SmallMap(out))
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

/// A YAML mapping with string keys read as its entries, in the order
/// written, for the compiler to move into its own lookup table: the users
/// (100,000 in a large policy), with no sort and no second table only to
/// find a repeated name. A repeated key is still refused twice over: by
/// the YAML reader at the repeat, and by the compiler when the entry does
/// not go into its table.
#[derive(Debug)]
pub struct Entries<V>(pub Vec<(String, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_unit<E>(self) -> Result<Entries<V>, E> {
                Ok(Entries::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<V>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

/// The whole policy file.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub version: u32,
    #[serde(default)]
    pub databases: UMap<RawDatabase>,
    #[serde(default)]
    pub questions: UMap<RawQuestion>,
    #[serde(default)]
    pub collections: UMap<RawCollection>,
    #[serde(default)]
    pub groups: UMap<RawGroup>,
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "UMap<RawUser>"))]
    pub users: Entries<RawUser>,
    #[serde(default)]
    pub functions: Option<RawFunctions>,
    /// Optional declaration of the user attributes the policy uses; when
    /// present, sandboxes and users may only name these. A list of names,
    /// or a map of names to types (`{tenant: integer, regions: [text]}`).
    #[serde(default)]
    pub attributes: Option<RawAttributes>,
    /// What reading a table no group grants does: `error` (default) or
    /// `empty` (the table reads as having no rows).
    #[serde(default)]
    pub on_denied: Option<String>,
    /// How several groups' grants of one table combine, for every table:
    /// `error` (default) or `union` (databases and tables may override).
    #[serde(default)]
    pub combine: Option<String>,
    /// API keys, each scoped to one group.
    #[serde(default)]
    pub api_keys: UMap<RawApiKey>,
}

/// `attributes:` as written: names, or names with types.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum RawAttributes {
    /// `[tenant, region]`: declared, untyped.
    Names(Vec<String>),
    /// `{tenant: integer, regions: [text]}` (or `text[]`, `list<text>`).
    Typed(UMap<RawAttrType>),
}

/// One attribute's declared type: `integer`, `text[]`, `list<text>` or
/// `[text]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum RawAttrType {
    /// `integer`, `text[]`, `list<text>`.
    Name(String),
    /// `[text]`: a list of that type.
    List(Vec<String>),
}

/// An API key: the SHA-256 of the secret, the one group it acts as, and
/// fixed attributes. During a rotation (`sqlsandbox apikey rotate`) the
/// previous secret's SHA-256 is kept in `previous_sha256` and authenticates
/// too, until `sqlsandbox apikey finish-rotation` removes it.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    /// The one group the key acts as (not even `all_users` is added).
    pub group: String,
    /// The SHA-256 of the secret: 64 hex digits.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = "^[0-9a-fA-F]{64}$")))]
    pub sha256: String,
    /// The SHA-256 of the secret being replaced, during a rotation: it
    /// authenticates as this key too until the rotation is finished.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = "^[0-9a-fA-F]{64}$")))]
    pub previous_sha256: Option<String>,
    /// Fixed attributes of the key.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "UMap<serde_json::Value>"))]
    pub attributes: UMap<crate::yaml::Value>,
}

/// `fence:` as written: a mode, or the first version's boolean.
#[derive(Debug, Clone, Copy)]
pub enum RawFence {
    /// `true` (always) or `false` (never).
    Bool(bool),
    /// `auto`, `always` or `never`.
    Mode(crate::policy::FenceMode),
}

impl<'de> Deserialize<'de> for RawFence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawFence;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("auto, always or never")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<RawFence, E> {
                Ok(RawFence::Bool(b))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawFence, E> {
                s.parse().map(RawFence::Mode).map_err(|_| {
                    E::custom(format!(
                        "unknown fence mode `{s}` (expected auto, always or never)"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub dialect: String,
    #[serde(default)]
    pub default_schema: Option<String>,
    /// How sandbox subqueries are fenced against predicate push-down:
    /// `auto` (default), `always`, `never`; `true`/`false` are read as
    /// `always`/`never`.
    #[serde(default)]
    pub fence: Option<RawFence>,
    #[serde(default)]
    pub tables: UMap<RawTable>,
    /// Database routing: an attribute naming a destination database.
    #[serde(default)]
    pub routing: Option<RawRouting>,
    /// Connection impersonation: an attribute naming the database role.
    #[serde(default)]
    pub impersonation: Option<RawImpersonation>,
    /// Native enforcement export: one login role per value of this
    /// attribute among the declared users (per-tenant roles).
    #[serde(default)]
    pub tenant_roles: Option<String>,
    /// `error` or `empty` for tables of this database no group grants
    /// (overrides the policy's).
    #[serde(default)]
    pub on_denied: Option<String>,
    /// `error` or `union` for this database's tables (overrides the
    /// policy's; a table's own `combine` overrides this).
    #[serde(default)]
    pub combine: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub attribute: String,
    pub destinations: UMap<RawDestination>,
    /// Whether an anonymous principal (static embedding, no viewer) runs
    /// on the router database; by default it is refused, as Metabase cannot
    /// route for a viewer it does not know.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Destinations by group ("change the target warehouse for certain
    /// teams"): a principal without the routing attribute is routed by its
    /// groups; groups naming different destinations are refused.
    #[serde(default)]
    pub groups: UMap<String>,
}

/// A destination; `database` names another declared database (which must
/// have the router's tables) when the policy models it.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("type" = ["object", "null"])))]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    #[serde(default)]
    pub database: Option<String>,
    /// Schema-per-tenant: the schema that stands for the router database's
    /// (one-schema) tables on this destination.
    #[serde(default)]
    pub schema: Option<String>,
    /// Catalog-per-tenant: the catalog (three-part names) the router's
    /// tables are read from on this destination, where the dialect has
    /// catalogs; with `schema:`, that schema inside it.
    #[serde(default)]
    pub catalog: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawImpersonation {
    pub attribute: String,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    pub columns: UMap<String>,
    /// How sandboxes from several groups combine: `error` (default) or `union`.
    #[serde(default)]
    pub combine: Option<String>,
    /// Optional foreign keys, `column: table.column` (or
    /// `schema.table.column`), used by query-builder implicit joins.
    #[serde(default)]
    pub foreign_keys: UMap<String>,
    /// `error` or `empty` when no group grants this table (overrides the
    /// database's and the policy's).
    #[serde(default)]
    pub on_denied: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawQuestion {
    pub database: String,
    #[serde(default)]
    pub collection: Option<String>,
    pub sql: String,
    /// Declared types of `{{variables}}` (`variables: {n: integer}`): needed
    /// where no compared column gives one (a function argument, LIMIT, …).
    #[serde(default)]
    pub variables: UMap<String>,
    /// Declared types of output columns (`columns: {email: text}`), for a
    /// custom sandbox's columns whose type cannot be inferred.
    #[serde(default)]
    pub columns: UMap<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("type" = ["object", "null"])))]
#[serde(deny_unknown_fields)]
pub struct RawCollection {
    #[serde(default)]
    pub parent: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("type" = ["object", "null"])))]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    #[serde(default)]
    pub data: UMap<RawDbAccess>,
    #[serde(default)]
    pub native: UMap<bool>,
    /// Query creation per database (Metabase's "create queries"): `none`
    /// (run saved questions only), `builder` (query-builder questions) or
    /// `native` (SQL too; same as `native: true`). Default: `native` where
    /// `native:` says so, `builder` where the group has data access, else
    /// `none`.
    #[serde(default)]
    pub queries: UMap<String>,
    #[serde(default)]
    pub collections: UMap<String>,
}

/// Deserializes a `Level(String) | Map(…)` enum from a YAML string or
/// mapping. serde's untagged enums would buffer the value and replace any
/// error inside the mapping (a misspelt `sandbox:` three levels down) by
/// "data did not match any variant"; this keeps the inner error, its key
/// path and its line.
macro_rules! level_or_map {
    ($ty:ident, $level:ident, $map:ident, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct LevelOrMap;
                impl<'de> Visitor<'de> for LevelOrMap {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$ty, E> {
                        Ok($ty::$level(s.to_string()))
                    }
                    fn visit_unit<E: serde::de::Error>(self) -> Result<$ty, E> {
                        Deserialize::deserialize(serde::de::value::UnitDeserializer::new())
                            .map($ty::$map)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$ty, A::Error> {
                        Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                            .map($ty::$map)
                    }
                }
                d.deserialize_any(LevelOrMap)
            }
        }
    };
}

level_or_map!(
    RawDbAccess,
    Level,
    Schemas,
    "unrestricted, blocked, no_access or a map of schemas"
);
level_or_map!(
    RawSchemaAccess,
    Level,
    Tables,
    "unrestricted, no_access or a map of tables"
);
level_or_map!(
    RawTableAccess,
    Level,
    Sandboxed,
    "unrestricted, no_access or {sandbox: …} / {rules: […]}"
);

/// `unrestricted | blocked | no_access | {schema: ...}`
#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(untagged))]
pub enum RawDbAccess {
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["unrestricted", "blocked", "no_access"])))]
    Level(String),
    Schemas(UMap<RawSchemaAccess>),
}

/// `unrestricted | no_access | {table: ...}`
#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(untagged))]
pub enum RawSchemaAccess {
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["unrestricted", "no_access"])))]
    Level(String),
    Tables(UMap<RawTableAccess>),
}

/// `unrestricted | no_access | {sandbox: ...}`
#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(untagged))]
pub enum RawTableAccess {
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["unrestricted", "no_access"])))]
    Level(String),
    Sandboxed(Box<RawSandboxed>),
}

/// `{sandbox: …}`, `{rules: […]}`, or both (a sandbox with restrictive
/// rules on top).
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawSandboxed {
    #[serde(default)]
    pub sandbox: Option<RawSandbox>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// Column masks: column → mask (`null`, `email`, `{first: 2}`, …).
    /// Alone, the grant is every row with these columns masked.
    #[serde(default)]
    pub masks: UMap<Option<RawMask>>,
}

/// A column mask as written: a kind's name (`null`, `email`) or a map
/// with one kind (`{first: 2}`, `{hash: {key_env: K}}`, `{expression: …}`)
/// and optionally `type` and `unless`. A YAML `null` is the `null` mask.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum RawMask {
    /// `null` or `email`.
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["null", "email"])))]
    Kind(String),
    /// One kind with its argument.
    Spec(Box<RawMaskSpec>),
}

/// A mask with its argument; exactly one kind is given.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawMaskSpec {
    /// `null: true`: every value becomes NULL.
    #[serde(default)]
    pub null: Option<bool>,
    /// Every value (NULL included) becomes this one.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<serde_json::Value>"))]
    pub constant: Option<crate::yaml::Value>,
    /// A keyed SHA-256 of the value, as hex text.
    #[serde(default)]
    pub hash: Option<RawHash>,
    /// Keep the first N characters, then `***`.
    #[serde(default)]
    pub first: Option<u32>,
    /// `***`, then the last N characters.
    #[serde(default)]
    pub last: Option<u32>,
    /// `email: true`: `***@` and the domain.
    #[serde(default)]
    pub email: Option<bool>,
    /// Dates and timestamps: `year`, `month`, `day`, `hour` or `minute`.
    #[serde(default)]
    pub truncate: Option<String>,
    /// Numbers: rounded down to a multiple of this size.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<serde_json::Value>"))]
    pub bucket: Option<crate::yaml::Value>,
    /// A SQL expression over the table's columns (and `{{attributes}}`).
    #[serde(default)]
    pub expression: Option<String>,
    /// The masked values' type when it is not the column's.
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    /// A condition (a row rule over columns and `{{attributes}}`) under
    /// which the value is shown unmasked.
    #[serde(default)]
    pub unless: Option<String>,
    /// With `unless`: `invoker` (default) or `definer`, for the tables
    /// it reads.
    #[serde(default, rename = "as")]
    pub run_as: Option<String>,
}

/// The key of a hash mask: written in the policy, or read from an
/// environment variable when the policy loads.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawHash {
    /// The key itself.
    #[serde(default)]
    pub key: Option<String>,
    /// The environment variable holding the key.
    #[serde(default)]
    pub key_env: Option<String>,
}

/// A row rule: a boolean SQL expression over the table's columns with
/// `{{attribute}}` parameters.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// The condition.
    pub filter: String,
    /// ANDed on top of the permissive rules (PostgreSQL's `AS RESTRICTIVE`).
    #[serde(default)]
    pub restrictive: bool,
    /// The columns this rule reveals (default: all); under `combine: union`
    /// a column only some rules reveal is shown on their rows only.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// `invoker` (default: tables the filter reads are sandboxed for the
    /// same principal) or `definer` (read unrestricted).
    #[serde(default, rename = "as")]
    pub run_as: Option<String>,
    /// A name for explanations.
    #[serde(default)]
    pub name: Option<String>,
    /// What it governs: `select` (default), `insert`, `update`, `delete`
    /// or `all`; writes are refused unless a rule grants them.
    #[serde(default)]
    pub commands: Option<Vec<String>>,
    /// For `insert`/`update`: the condition every written row must meet
    /// (PostgreSQL's `WITH CHECK`); default: `filter`.
    #[serde(default)]
    pub check: Option<String>,
}

/// A basic sandbox (`column` + `attribute`, or `filters`) or a custom one
/// (`question` + `parameters`).
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    pub parameters: UMap<RawParameter>,
    /// A row rule (sugar for `rules: [{filter: …}]`).
    #[serde(default)]
    pub filter: Option<String>,
    /// With `filter`: `invoker` (default) or `definer`.
    #[serde(default, rename = "as")]
    pub run_as: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    pub column: String,
    pub attribute: String,
}

/// `{{variable}}: attribute` or `{{variable}}: {attribute: a, type: integer}`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("type" = ["object", "null"])))]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "UMap<serde_json::Value>"))]
    pub attributes: SmallMap<RawAttr>,
}

/// A user attribute's value as read: read straight into the value the
/// compiled policy keeps (no intermediate YAML value per attribute of
/// 100,000 users), or `Invalid` for what an attribute cannot be (a
/// mapping, a null, a nested list), which the compiler refuses naming
/// the user and the attribute.
#[derive(Debug)]
pub enum RawAttr {
    Value(crate::value::AttributeValue),
    Invalid,
}

impl<'de> Deserialize<'de> for RawAttr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::value::{AttributeValue, Scalar};

        /// One scalar, or `None` for anything else (skipped whole).
        struct One;
        impl<'de> Visitor<'de> for One {
            type Value = Option<Scalar>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Some(Scalar::Bool(b)))
            }
            fn visit_i64<E>(self, i: i64) -> Result<Self::Value, E> {
                Ok(Some(Scalar::Integer(i)))
            }
            fn visit_u64<E>(self, u: u64) -> Result<Self::Value, E> {
                Ok(Some(Scalar::from_u64(u)))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Self::Value, E> {
                Ok(Scalar::from_f64(f))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Some(Scalar::Text(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Some(Scalar::Text(s)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(None)
            }
        }
        struct OneSeed;
        impl<'de> DeserializeSeed<'de> for OneSeed {
            type Value = Option<Scalar>;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(One)
            }
        }

        /// A scalar, or a list of scalars.
        struct Attr;
        impl<'de> Visitor<'de> for Attr {
            type Value = RawAttr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a number, a boolean or a list of them")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawAttr, A::Error> {
                let mut items = Vec::new();
                let mut invalid = false;
                while let Some(item) = seq.next_element_seed(OneSeed)? {
                    match item {
                        Some(s) if !invalid => items.push(s),
                        _ => invalid = true,
                    }
                }
                Ok(if invalid {
                    RawAttr::Invalid
                } else {
                    RawAttr::Value(AttributeValue::Many(items))
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawAttr, A::Error> {
                One.visit_map(map).map(|_| RawAttr::Invalid)
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<RawAttr, E> {
                Ok(single(One.visit_bool(b)?))
            }
            fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<RawAttr, E> {
                Ok(single(One.visit_i64(i)?))
            }
            fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<RawAttr, E> {
                Ok(single(One.visit_u64(u)?))
            }
            fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<RawAttr, E> {
                Ok(single(One.visit_f64(f)?))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawAttr, E> {
                Ok(single(One.visit_str(s)?))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<RawAttr, E> {
                Ok(single(One.visit_string(s)?))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<RawAttr, E> {
                Ok(RawAttr::Invalid)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<RawAttr, E> {
                Ok(RawAttr::Invalid)
            }
        }
        fn single(s: Option<Scalar>) -> RawAttr {
            s.map_or(RawAttr::Invalid, |s| {
                RawAttr::Value(AttributeValue::Single(s))
            })
        }
        d.deserialize_any(Attr)
    }
}

/// Function policy: names added to (`allow`) and taken off (`deny`) the
/// dialect's built-in allow-list, and the variables native SQL may read.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("type" = ["object", "null"])))]
#[serde(deny_unknown_fields)]
pub struct RawFunctions {
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub variables: Vec<String>,
}
