//! The server's configuration: a TOML file (`sqlsandbox serve --config`),
//! command-line flags over it, or a [`Config`] built in code.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ServeError;

/// Everything `sqlsandbox serve` needs (see the README's "Run as a
/// service" for a file with every key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The policy file; watched and reloaded on change and on SIGHUP.
    pub policy: PathBuf,
    /// Where to listen [default: `127.0.0.1:8080`, loopback only].
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest request body in bytes [default: 1 MiB]; larger is 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest total size of a request's headers in bytes [default:
    /// 16 KiB]; larger is 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Longest time a request may take, in milliseconds [default: 10000];
    /// longer is 503 with code `timeout`.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The rewrite cache's bound in bytes [default: 64 MiB].
    #[serde(default = "default_cache_bytes")]
    pub cache_bytes: u64,
    /// How often the policy file is checked for a change, in milliseconds
    /// [default: 1000]; 0 turns the watch off (SIGHUP still reloads).
    #[serde(default = "default_watch_ms")]
    pub watch_interval_ms: u64,
    /// Principals from signed tokens (`Authorization: Bearer …`).
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// Principals from headers set by a trusted proxy in front of the
    /// server. Only when configured; never together with `jwt`.
    #[serde(default)]
    pub trusted_headers: Option<TrustedHeaders>,
    /// Whether a request may ask for another SQL dialect than its
    /// database's [default: false]. A query checked under one engine's
    /// rules (its functions, which conditions cannot fail, its fence) but
    /// run on another can leak: turn it on only when every request is
    /// written by a service of yours, never by an end user.
    #[serde(default)]
    pub dialect_override: bool,
}

/// The signing algorithm tokens must use: the one the key is for, never
/// another (no `none`, no HS256 token checked with an RSA public key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret (at least 32 bytes).
    HS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256; an RSA public key (PEM).
    RS256,
    /// Ed25519; an Ed25519 public key (PEM).
    EdDSA,
}

/// Which principal a verified token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalFrom {
    /// A user declared in the policy, named by `user_claim`.
    #[default]
    User,
    /// Groups (`groups_claim`) and attributes from the token's claims, as
    /// Metabase's JWT single sign-on maps them.
    Claims,
}

/// How tokens are verified and turned into principals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JwtConfig {
    /// The one accepted algorithm.
    pub algorithm: JwtAlgorithm,
    /// HS256: the environment variable holding the secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// HS256: a file holding the secret (trailing newline ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// RS256 / EdDSA: the public key, PEM.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// The `aud` a token must carry (required).
    pub audience: String,
    /// The `iss` a token must carry (required).
    pub issuer: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds [default: 30].
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// `user` [default] or `claims`.
    #[serde(default)]
    pub principal: PrincipalFrom,
    /// The claim naming the principal [default: `sub`]: the policy user
    /// with `principal = "user"`, the name in logs with `claims`.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// With `principal = "claims"`: the claim listing the groups [default:
    /// `groups`].
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// With `principal = "claims"`: attribute name → claim name. Without
    /// it, every claim but the registered ones (`iss`, `sub`, `aud`, `exp`,
    /// `nbf`, `iat`, `jti`), the user and groups claims and Metabase's
    /// `email`, `first_name`, `last_name` is an attribute of its own name.
    #[serde(default)]
    pub attribute_claims: Option<BTreeMap<String, String>>,
}

/// The headers a trusted proxy sets (names are case-insensitive).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TrustedHeaders {
    /// A policy user's name [default: `x-sqlsandbox-user`].
    #[serde(default = "default_user_header")]
    pub user: String,
    /// Comma-separated groups [default: `x-sqlsandbox-groups`].
    #[serde(default = "default_groups_header")]
    pub groups: String,
    /// Attributes, one header per value: `x-sqlsandbox-attr-tenant: 42`
    /// [default prefix: `x-sqlsandbox-attr-`].
    #[serde(default = "default_attribute_prefix")]
    pub attribute_prefix: String,
}

impl Default for TrustedHeaders {
    fn default() -> Self {
        TrustedHeaders {
            user: default_user_header(),
            groups: default_groups_header(),
            attribute_prefix: default_attribute_prefix(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body_bytes() -> usize {
    1 << 20
}
fn default_max_header_bytes() -> usize {
    16 << 10
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_cache_bytes() -> u64 {
    crate::handle::DEFAULT_CACHE_BYTES
}
fn default_watch_ms() -> u64 {
    1000
}
fn default_leeway() -> u64 {
    30
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_user_header() -> String {
    "x-sqlsandbox-user".into()
}
fn default_groups_header() -> String {
    "x-sqlsandbox-groups".into()
}
fn default_attribute_prefix() -> String {
    "x-sqlsandbox-attr-".into()
}

impl Config {
    /// A configuration with every default for the policy file at `policy`;
    /// set `jwt` or `trusted_headers` before starting a server with it.
    pub fn new(policy: impl Into<PathBuf>) -> Config {
        Config {
            policy: policy.into(),
            listen: default_listen(),
            max_body_bytes: default_max_body_bytes(),
            max_header_bytes: default_max_header_bytes(),
            timeout_ms: default_timeout_ms(),
            cache_bytes: default_cache_bytes(),
            watch_interval_ms: default_watch_ms(),
            jwt: None,
            trusted_headers: None,
            dialect_override: false,
        }
    }

    /// Reads a TOML configuration file. A relative `policy`,
    /// `secret_file` or `public_key_file` is relative to the file's folder.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ServeError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServeError::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut config = Config::from_toml(&text)
            .map_err(|e| ServeError::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.policy = base.join(&config.policy);
        if let Some(jwt) = &mut config.jwt {
            for file in [&mut jwt.secret_file, &mut jwt.public_key_file]
                .into_iter()
                .flatten()
            {
                *file = base.join(&*file);
            }
        }
        Ok(config)
    }

    /// Parses TOML text (paths are taken as they are).
    pub fn from_toml(text: &str) -> Result<Config, ServeError> {
        toml::from_str(text).map_err(|e| ServeError::Config(e.to_string()))
    }

    /// [`Config::timeout_ms`] as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Checks what serde cannot: exactly one way to name principals, and
    /// limits that are not zero.
    pub fn validate(&self) -> Result<(), ServeError> {
        match (&self.jwt, &self.trusted_headers) {
            (None, None) => {
                return Err(ServeError::Config(
                    "no way to authenticate requests: configure [jwt] or [trusted_headers]".into(),
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ServeError::Config(
                    "configure [jwt] or [trusted_headers], not both".into(),
                ))
            }
            _ => {}
        }
        if self.max_body_bytes == 0 || self.max_header_bytes == 0 || self.timeout_ms == 0 {
            return Err(ServeError::Config(
                "max_body_bytes, max_header_bytes and timeout_ms must be above 0".into(),
            ));
        }
        if let Some(h) = &self.trusted_headers {
            for name in [&h.user, &h.groups, &h.attribute_prefix] {
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(ServeError::Config(format!(
                        "trusted header name `{name}` is not a valid header name"
                    )));
                }
            }
        }
        Ok(())
    }
}
