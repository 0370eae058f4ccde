//! Who is asking: a verified token or, when configured, trusted headers.
//!
//! Authentication (this module) yields a [`Caller`]; the policy then turns
//! it into a [`Principal`] — a caller the policy does not know (an unknown
//! user or group) is refused with the library's code, not let through.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::config::{JwtAlgorithm, JwtConfig, PrincipalFrom, TrustedHeaders};
use super::ServeError;
use crate::{AttributeValue, Error, Policy, Principal};

/// The longest `Authorization` header accepted (a token is a few hundred
/// bytes; a header this long is not a token).
const MAX_TOKEN_BYTES: usize = 8 << 10;

/// Claims never taken as attributes in Metabase style.
const NOT_ATTRIBUTES: [&str; 10] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "email",
    "first_name",
    "last_name",
];

/// How requests are authenticated.
pub(crate) enum Auth {
    Jwt(Box<Verifier>),
    Headers(TrustedHeaders),
}

/// A token verifier with its key and pinned algorithm.
pub(crate) struct Verifier {
    key: DecodingKey,
    validation: Validation,
    config: JwtConfig,
}

/// The caller, authenticated but not yet resolved against a policy.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    User(String),
    Groups {
        name: String,
        groups: Vec<String>,
        attributes: Vec<(String, AttributeValue)>,
    },
}

/// Why a request is not authenticated (HTTP 401; the message is safe to
/// return: it never holds the token).
#[derive(Debug)]
pub(crate) struct Unauthorized(pub String);

impl Auth {
    pub(crate) fn new(
        jwt: Option<&JwtConfig>,
        headers: Option<&TrustedHeaders>,
    ) -> Result<Auth, ServeError> {
        match (jwt, headers) {
            (Some(j), None) => Ok(Auth::Jwt(Box::new(Verifier::new(j)?))),
            (None, Some(h)) => Ok(Auth::Headers(h.clone())),
            _ => Err(ServeError::Config(
                "configure exactly one of [jwt] and [trusted_headers]".into(),
            )),
        }
    }

    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Unauthorized> {
        match self {
            Auth::Jwt(v) => v.authenticate(headers),
            Auth::Headers(h) => from_headers(h, headers),
        }
    }
}

fn read_secret(config: &JwtConfig) -> Result<Vec<u8>, ServeError> {
    let secret = match (&config.secret_env, &config.secret_file) {
        (Some(var), None) => std::env::var(var).map_err(|_| {
            ServeError::Config(format!(
                "jwt: environment variable {var} (secret_env) is not set"
            ))
        })?,
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|e| ServeError::Config(format!("jwt: cannot read {}: {e}", file.display())))?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        _ => {
            return Err(ServeError::Config(
                "jwt: HS256 needs exactly one of secret_env and secret_file".into(),
            ))
        }
    };
    if secret.len() < 32 {
        return Err(ServeError::Config(
            "jwt: an HS256 secret must be at least 32 bytes".into(),
        ));
    }
    Ok(secret.into_bytes())
}

impl Verifier {
    pub(crate) fn new(config: &JwtConfig) -> Result<Verifier, ServeError> {
        let (key, alg) = match config.algorithm {
            JwtAlgorithm::HS256 => {
                if config.public_key_file.is_some() {
                    return Err(ServeError::Config(
                        "jwt: HS256 takes a secret, not public_key_file".into(),
                    ));
                }
                let secret = read_secret(config)?;
                let key = DecodingKey::from_secret(&secret)
                    .map_err(|e| ServeError::Config(format!("jwt: bad secret: {e}")))?;
                (key, Algorithm::HS256)
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA => {
                if config.secret_env.is_some() || config.secret_file.is_some() {
                    return Err(ServeError::Config(
                        "jwt: RS256 and EdDSA take public_key_file, not a secret".into(),
                    ));
                }
                let file = config.public_key_file.as_ref().ok_or_else(|| {
                    ServeError::Config("jwt: RS256 and EdDSA need public_key_file".into())
                })?;
                let pem = std::fs::read(file).map_err(|e| {
                    ServeError::Config(format!("jwt: cannot read {}: {e}", file.display()))
                })?;
                let bad = |e: jsonwebtoken::errors::Error| {
                    ServeError::Config(format!(
                        "jwt: {} is not a {:?} public key: {e}",
                        file.display(),
                        config.algorithm
                    ))
                };
                if config.algorithm == JwtAlgorithm::RS256 {
                    (
                        DecodingKey::from_rsa_pem(&pem).map_err(bad)?,
                        Algorithm::RS256,
                    )
                } else {
                    (
                        DecodingKey::from_ed_pem(&pem).map_err(bad)?,
                        Algorithm::EdDSA,
                    )
                }
            }
        };
        if config.audience.is_empty() || config.issuer.is_empty() {
            return Err(ServeError::Config(
                "jwt: audience and issuer must not be empty".into(),
            ));
        }
        // One algorithm, the key's: a token whose header names another
        // (`none`, or HS256 against an RSA key) is refused before any
        // signature check.
        let mut validation = Validation::new(alg);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.leeway = config.leeway_secs;
        validation.set_audience(&[&config.audience]);
        validation.set_issuer(&[&config.issuer]);
        Ok(Verifier {
            key,
            validation,
            config: config.clone(),
        })
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Unauthorized> {
        let mut values = headers.get_all(axum::http::header::AUTHORIZATION).iter();
        let value = values
            .next()
            .ok_or_else(|| Unauthorized("no Authorization header".into()))?;
        if values.next().is_some() {
            return Err(Unauthorized("more than one Authorization header".into()));
        }
        if value.len() > MAX_TOKEN_BYTES {
            return Err(Unauthorized("Authorization header too long".into()));
        }
        let value = value
            .to_str()
            .map_err(|_| Unauthorized("Authorization header is not ASCII".into()))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(Unauthorized(
                    "expected `Authorization: Bearer <token>`".into(),
                ))
            }
        };
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &self.key, &self.validation)
            .map_err(|e| Unauthorized(format!("invalid token: {e}")))?;
        let claims = data
            .claims
            .as_object()
            .ok_or_else(|| Unauthorized("token claims are not a JSON object".into()))?;
        let name = claims.get(&self.config.user_claim).and_then(|v| v.as_str());
        match self.config.principal {
            PrincipalFrom::User => {
                let name = name.ok_or_else(|| {
                    Unauthorized(format!(
                        "token has no string claim `{}` naming the user",
                        self.config.user_claim
                    ))
                })?;
                Ok(Caller::User(name.to_string()))
            }
            PrincipalFrom::Claims => {
                let groups = match claims.get(&self.config.groups_claim) {
                    None => Vec::new(),
                    Some(serde_json::Value::Array(a)) => a
                        .iter()
                        .map(|g| g.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            Unauthorized(format!(
                                "claim `{}` must be a list of strings",
                                self.config.groups_claim
                            ))
                        })?,
                    Some(_) => {
                        return Err(Unauthorized(format!(
                            "claim `{}` must be a list of strings",
                            self.config.groups_claim
                        )))
                    }
                };
                let pairs: Vec<(&str, &serde_json::Value)> = match &self.config.attribute_claims {
                    Some(map) => map
                        .iter()
                        .filter_map(|(attr, claim)| claims.get(claim).map(|v| (attr.as_str(), v)))
                        .collect(),
                    None => claims
                        .iter()
                        .filter(|(k, _)| {
                            !NOT_ATTRIBUTES.contains(&k.as_str())
                                && **k != self.config.groups_claim
                                && **k != self.config.user_claim
                        })
                        .map(|(k, v)| (k.as_str(), v))
                        .collect(),
                };
                let mut attributes = Vec::with_capacity(pairs.len());
                for (attr, v) in pairs {
                    let value = AttributeValue::from_json(v).ok_or_else(|| {
                        Unauthorized(format!(
                            "claim for attribute `{attr}` must be a string, number, boolean or a list of them"
                        ))
                    })?;
                    attributes.push((attr.to_string(), value));
                }
                Ok(Caller::Groups {
                    name: name.unwrap_or("token").to_string(),
                    groups,
                    attributes,
                })
            }
        }
    }
}

fn from_headers(config: &TrustedHeaders, headers: &HeaderMap) -> Result<Caller, Unauthorized> {
    fn text<'v>(v: &'v axum::http::HeaderValue, name: &str) -> Result<&'v str, Unauthorized> {
        v.to_str()
            .map(str::trim)
            .map_err(|_| Unauthorized(format!("header {name} is not ASCII")))
    }
    let mut users = headers.get_all(config.user.as_str()).iter();
    if let Some(user) = users.next() {
        if users.next().is_some() {
            return Err(Unauthorized(format!(
                "more than one {} header",
                config.user
            )));
        }
        let user = text(user, &config.user)?;
        if user.is_empty() {
            return Err(Unauthorized(format!("header {} is empty", config.user)));
        }
        return Ok(Caller::User(user.to_string()));
    }
    let mut groups = Vec::new();
    for v in headers.get_all(config.groups.as_str()) {
        for g in text(v, &config.groups)?.split(',') {
            let g = g.trim();
            if !g.is_empty() {
                groups.push(g.to_string());
            }
        }
    }
    let prefix = config.attribute_prefix.to_ascii_lowercase();
    let mut attrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, v) in headers {
        if let Some(attr) = name.as_str().strip_prefix(prefix.as_str()) {
            if attr.is_empty() {
                continue;
            }
            attrs
                .entry(attr.to_string())
                .or_default()
                .push(text(v, name.as_str())?.to_string());
        }
    }
    if groups.is_empty() && attrs.is_empty() {
        return Err(Unauthorized(format!(
            "no principal: set {} or {}",
            config.user, config.groups
        )));
    }
    let attributes = attrs
        .into_iter()
        .map(|(k, mut vs)| {
            let value = if vs.len() == 1 {
                AttributeValue::text(vs.pop().unwrap_or_default())
            } else {
                AttributeValue::Many(vs.into_iter().map(crate::Scalar::Text).collect())
            };
            (k, value)
        })
        .collect();
    Ok(Caller::Groups {
        name: "headers".into(),
        groups,
        attributes,
    })
}

impl Caller {
    /// The principal in `policy`: an unknown user, group or (when the
    /// policy declares its attributes) attribute is [`Error::Unknown`].
    pub(crate) fn principal(&self, policy: &Policy) -> Result<Principal, Error> {
        match self {
            Caller::User(name) => Principal::from_user(policy, name),
            Caller::Groups {
                name,
                groups,
                attributes,
            } => {
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
                    name,
                    groups.iter().map(String::as_str),
                    attributes.iter().cloned(),
                )
            }
        }
    }

    /// The name for logs.
    pub(crate) fn name(&self) -> &str {
        match self {
            Caller::User(n) | Caller::Groups { name: n, .. } => n,
        }
    }
}
