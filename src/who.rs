//! Who is asking, as a caller names it: a declared user, the anonymous
//! principal, identity-provider claims, an API key, or groups and
//! attributes given directly.
//!
//! The command line (`--user`, `--anonymous`, `--claims`, `--api-key`,
//! `--group`/`--attr`) and the policy test files of `sqlsandbox test`
//! (`user:`, `anonymous:`, `claims:`, `api_key:`, `group:`/`attributes:`)
//! both build a [`Who`] and turn it into a [`Principal`] here, so a test
//! case and a command line naming the same principal get the same one.
//!
//! ```
//! use sqlsandbox::who::{key_values, Who};
//! let policy = sqlsandbox::Policy::from_yaml("version: 1\ngroups: {customers: {}}\n", "p.yaml").unwrap();
//! let who = Who::Groups {
//!     groups: vec!["customers".into()],
//!     attributes: key_values(&["tenant=7".to_string(), "tenant=8".to_string()], "attribute").unwrap(),
//! };
//! let p = who.principal(&policy).unwrap();
//! assert_eq!(p.attribute("tenant").unwrap().to_string(), r#"["7", "8"]"#);
//! ```

use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::principal::{AttributeValue, Principal, Scalar};

/// A principal as the caller names it; [`Who::principal`] resolves it
/// against a policy.
#[derive(Debug, Clone)]
pub enum Who {
    /// A user declared in the policy.
    User(String),
    /// The anonymous principal of public embedding (`all_users` only).
    Anonymous,
    /// Identity-provider claims as JSON text (repeated keys refused; see
    /// [`Principal::from_claims_json`]).
    ClaimsJson(String),
    /// Identity-provider claims already parsed (see [`Principal::from_claims`]).
    Claims(serde_json::Value),
    /// The secret of an API key declared in the policy.
    ApiKey(String),
    /// Groups and attributes supplied by the caller; `all_users` is added.
    /// When the policy declares its attributes (`attributes:`), an
    /// undeclared one is [`Error::Unknown`] (a misspelt `--attr` would
    /// otherwise only surface as a missing attribute).
    Groups {
        /// Group names; each must exist in the policy.
        groups: Vec<String>,
        /// Attributes, in the order given.
        attributes: Vec<(String, AttributeValue)>,
    },
}

impl Who {
    /// The principal this names in `policy`: an unknown user, group or API
    /// key is [`Error::Unknown`] (`SB102`), as are malformed claims.
    pub fn principal(&self, policy: &Policy) -> Result<Principal> {
        match self {
            Who::User(name) => Principal::from_user(policy, name),
            Who::Anonymous => Ok(Principal::anonymous()),
            Who::ClaimsJson(text) => Principal::from_claims_json(policy, text),
            Who::Claims(claims) => Principal::from_claims(policy, claims),
            Who::ApiKey(secret) => Principal::from_api_key(policy, secret),
            Who::Groups { groups, attributes } => {
                if policy.declares_attributes() {
                    let declared = policy.attribute_names();
                    if let Some((a, _)) = attributes.iter().find(|(a, _)| !declared.contains(a)) {
                        return Err(Error::Unknown {
                            kind: "attribute",
                            name: a.clone(),
                        });
                    }
                }
                Principal::new(
                    policy,
                    "cli",
                    groups.iter().map(String::as_str),
                    attributes.iter().cloned(),
                )
            }
        }
    }
}

/// Parses `key=value` items (`--attr`, `--var`) into text values; a key
/// given again adds a value, making a multi-valued attribute. `what` names
/// the items in the error for one without `=` (`attribute`, `variable`).
pub fn key_values(items: &[String], what: &'static str) -> Result<Vec<(String, AttributeValue)>> {
    let mut out: Vec<(String, AttributeValue)> = Vec::new();
    for a in items {
        let (k, v) = a.split_once('=').ok_or_else(|| Error::Unknown {
            kind: what,
            name: format!("{a} (expected key=value)"),
        })?;
        match out.iter_mut().find(|(x, _)| x == k) {
            Some((_, existing)) => {
                let mut vals: Vec<Scalar> = existing.values().into_iter().cloned().collect();
                vals.push(Scalar::Text(v.to_string()));
                *existing = AttributeValue::Many(vals);
            }
            None => out.push((k.to_string(), AttributeValue::text(v))),
        }
    }
    Ok(out)
}
