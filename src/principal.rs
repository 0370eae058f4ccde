//! Who is asking: groups and user attributes.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::policy::{ApiKey, Policy, ADMINISTRATORS, ALL_USERS};
pub use crate::value::{AttributeValue, Scalar};

/// The person (or service) a query runs for.
///
/// ```
/// # let policy = sqlsandbox::Policy::from_yaml("version: 1\ngroups: {customers: {}}", "p.yaml").unwrap();
/// use sqlsandbox::{Principal, AttributeValue};
/// let p = Principal::new(&policy, "api", ["customers"], [("tenant", AttributeValue::text("7"))]).unwrap();
/// assert!(p.groups().contains(&"all_users".to_string()));
/// ```
#[derive(Debug, Clone)]
pub struct Principal {
    name: String,
    groups: Vec<String>,
    attributes: BTreeMap<String, AttributeValue>,
    admin: bool,
    anonymous: bool,
}

impl Principal {
    /// The policy's user `name`.
    pub fn from_user(policy: &Policy, name: &str) -> Result<Principal> {
        let user = policy.users.get(name).ok_or_else(|| Error::Unknown {
            kind: "user",
            name: name.to_string(),
        })?;
        Self::new(
            policy,
            name,
            user.groups.iter().map(String::as_str),
            user.attributes.iter().map(|(k, v)| (k.as_str(), v.clone())),
        )
    }

    /// A principal supplied by the caller (from its own login, JWT or API
    /// key). Every group must exist in the policy; `all_users` is added.
    pub fn new<'a, G, A, K>(
        policy: &Policy,
        name: &str,
        groups: G,
        attributes: A,
    ) -> Result<Principal>
    where
        G: IntoIterator<Item = &'a str>,
        A: IntoIterator<Item = (K, AttributeValue)>,
        K: Into<String>,
    {
        let mut gs = vec![ALL_USERS.to_string()];
        for g in groups {
            if !policy.groups.contains_key(g) {
                return Err(Error::Unknown {
                    kind: "group",
                    name: g.to_string(),
                });
            }
            if !gs.iter().any(|x| x == g) {
                gs.push(g.to_string());
            }
        }
        let admin = gs.iter().any(|g| g == ADMINISTRATORS);
        Ok(Principal {
            name: name.to_string(),
            groups: gs,
            attributes: attributes.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            admin,
            anonymous: false,
        })
    }

    /// A principal from claims given as JSON text (see [`Principal::from_claims`]).
    /// A repeated key anywhere is refused (a JSON parser would keep the last
    /// `"tenant"` silently), as is a document over 1 MiB or nested deeper
    /// than 100 brackets; one leading byte-order mark is ignored.
    ///
    /// ```
    /// # let policy = sqlsandbox::Policy::from_yaml("version: 1\ngroups: {g: {}}\n", "p.yaml").unwrap();
    /// use sqlsandbox::Principal;
    /// assert!(Principal::from_claims_json(&policy, r#"{"groups": ["g"], "attributes": {"tenant": 1}}"#).is_ok());
    /// assert!(Principal::from_claims_json(&policy, r#"{"attributes": {"tenant": 1, "tenant": 2}}"#).is_err());
    /// ```
    pub fn from_claims_json(policy: &Policy, text: &str) -> Result<Principal> {
        let claims = crate::input::parse_json(text, "claims document", |m| Error::Unknown {
            kind: "claims",
            name: format!("(not valid JSON: {m})"),
        })?;
        Principal::from_claims(policy, &claims)
    }

    /// A principal from identity-provider claims (a decoded JWT or SAML
    /// assertion), as JSON: `{"sub": "...", "groups": [...], "attributes":
    /// {...}}`. Every group must exist in the policy; `all_users` is added.
    pub fn from_claims(policy: &Policy, claims: &serde_json::Value) -> Result<Principal> {
        let bad = |what: &str| Error::Unknown {
            kind: "claims",
            name: what.to_string(),
        };
        let obj = claims
            .as_object()
            .ok_or_else(|| bad("(not a JSON object)"))?;
        for k in obj.keys() {
            if !matches!(
                k.as_str(),
                "sub" | "name" | "groups" | "attributes" | "iss" | "aud" | "exp" | "iat" | "nbf"
            ) {
                return Err(bad(&format!(
                    "unexpected claim `{k}` (expected sub, groups, attributes)"
                )));
            }
        }
        let name = obj
            .get("sub")
            .or_else(|| obj.get("name"))
            .and_then(|v| v.as_str())
            .unwrap_or("claims");
        let groups: Vec<&str> = match obj.get("groups") {
            None => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|g| {
                    g.as_str()
                        .ok_or_else(|| bad("`groups` must be a list of strings"))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(bad("`groups` must be a list of strings")),
        };
        let mut attrs = Vec::new();
        match obj.get("attributes") {
            None => {}
            Some(serde_json::Value::Object(m)) => {
                for (k, v) in m {
                    let value = AttributeValue::from_json(v).ok_or_else(|| {
                        bad(&format!(
                            "attribute `{k}` must be a string, number, boolean or a list of them"
                        ))
                    })?;
                    attrs.push((k.clone(), value));
                }
            }
            Some(_) => return Err(bad("`attributes` must be an object")),
        }
        Self::new(policy, name, groups, attrs)
    }

    /// The principal of an API key declared in the policy (matched by the
    /// SHA-256 of `secret`: the key's `sha256`, or its `previous_sha256`
    /// while a rotation is in progress). It acts as exactly its one group —
    /// not even `all_users` is added — so a key never grants more than its
    /// group.
    pub fn from_api_key(policy: &Policy, secret: &str) -> Result<Principal> {
        let hash = crate::apikey::sha256_hex(secret);
        let key = policy
            .api_keys
            .iter()
            .find(|k| k.accepts(&hash))
            .ok_or_else(|| Error::Unknown {
                kind: "API key",
                name: "(no key with that secret)".into(),
            })?;
        Ok(Principal::of_api_key(key))
    }

    /// The principal of a declared API key, without its secret: what
    /// [`Principal::from_api_key`] returns for the key's secret (used by
    /// `diff`, which compares what every key may read).
    pub fn of_api_key(key: &ApiKey) -> Principal {
        Principal {
            name: format!("api-key:{}", key.name),
            groups: vec![key.group.clone()],
            attributes: key.attributes.clone(),
            admin: key.group == ADMINISTRATORS,
            anonymous: false,
        }
    }

    /// The anonymous principal of public embedding: only `all_users`, no
    /// attributes; database routing sends it to the router database.
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            groups: vec![ALL_USERS.to_string()],
            attributes: BTreeMap::new(),
            admin: false,
            anonymous: true,
        }
    }

    /// Whether this is the anonymous principal.
    pub fn is_anonymous(&self) -> bool {
        self.anonymous
    }

    /// The principal's name (for messages and audit).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Groups, `all_users` first.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// An attribute.
    pub fn attribute(&self, name: &str) -> Option<&AttributeValue> {
        self.attributes.get(name)
    }

    /// All attributes.
    pub fn attributes(&self) -> &BTreeMap<String, AttributeValue> {
        &self.attributes
    }

    /// Whether the principal is in `administrators`.
    pub fn is_admin(&self) -> bool {
        self.admin
    }
}
