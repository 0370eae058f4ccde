//! The JSON Schema of the policy file (feature `schema`), generated from the
//! serde model the loader reads, so an editor (`# yaml-language-server:
//! $schema=…` as a policy's first line) and the loader agree on its shape.
//! The repository ships it as `schema/policy.schema.json`;
//! `tests/policy_schema.rs` fails when that file differs from
//! [`policy_schema`] (`UPDATE_SCHEMA=1` rewrites it).
//!
//! The schema checks shape only — keys, value types, access levels; names
//! that must refer to each other (groups, tables, questions) are checked
//! when the policy loads.
//!
//! ```
//! let schema = sqlsandbox::schema::policy_schema();
//! assert_eq!(schema["title"], "sqlsandbox policy");
//! assert_eq!(schema["additionalProperties"], false);
//! ```

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use crate::policy::model::{RawFence, RawPolicy, UMap};

/// The policy file's JSON Schema (draft 2020-12), as a JSON value.
pub fn policy_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RawPolicy);
    schema.insert("title".into(), "sqlsandbox policy".into());
    schema.insert(
        "description".into(),
        "A sqlsandbox policy file (version 1): databases and their tables, saved questions, collections, groups with their data access and sandboxes, users, API keys, functions.".into(),
    );
    schema.to_value()
}

/// The schema as the shipped file holds it: pretty-printed, one final
/// newline.
pub fn policy_schema_text() -> String {
    let text = serde_json::to_string_pretty(&policy_schema()).unwrap_or_default();
    format!("{text}\n")
}

/// A mapping with string keys, or nothing (`key:` alone reads as empty).
impl<V: JsonSchema> JsonSchema for UMap<V> {
    fn schema_name() -> Cow<'static, str> {
        format!("Map_of_{}", V::schema_name()).into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["object", "null"],
            "additionalProperties": generator.subschema_for::<V>(),
        })
    }
}

/// `fence:`: a mode, or the first version's boolean.
impl JsonSchema for RawFence {
    fn schema_name() -> Cow<'static, str> {
        "Fence".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "How sandbox subqueries are fenced: auto (default), always, never; true/false read as always/never.",
            "anyOf": [
                {"type": "boolean"},
                {"type": "string", "enum": ["auto", "always", "never"]}
            ]
        })
    }
}
