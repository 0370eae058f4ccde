//! `sqlsandbox serve` over real HTTP: the server runs in-process on an
//! ephemeral loopback port, a reqwest client talks to it. Tokens (HS256,
//! RS256, EdDSA; expired, early, foreign, unsigned, confused), trusted
//! headers, limits, refusal codes, cache isolation, reload under load,
//! SIGHUP, graceful shutdown, and the OpenAPI document against the routes.
//!
//! The RSA and Ed25519 keys under tests/serve/ are test-only keys.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sqlsandbox::serve::{Config, ServeError, Server, TrustedHeaders, ROUTES};

const SECRET: &str = "test-only-hs256-secret-0123456789abcdef";
const AUD: &str = "sqlsandbox-test";
const ISS: &str = "https://idp.test";

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn keys() -> PathBuf {
    manifest().join("tests/serve")
}

fn saas() -> String {
    std::fs::read_to_string(manifest().join("policies/saas.yaml")).unwrap()
}

/// A temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sqlsandbox-serve-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// Replaces `file` atomically (write beside, rename), as editors and
    /// deploy tools do.
    fn replace(&self, file: &str, text: &str) {
        let tmp = self.path(&format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(file)).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server running on a runtime of its own; stopped on drop.
struct Running {
    base: String,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<std::sync::mpsc::Receiver<Result<(), ServeError>>>,
    _thread: std::thread::JoinHandle<()>,
    dir: TempDir,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Asks the server to stop and waits for `run` to return.
    fn shutdown(&mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.done
            .take()
            .unwrap()
            .recv_timeout(Duration::from_secs(30))
            .expect("the server did not stop")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.done.is_some() {
            let _ = self.shutdown();
        }
    }
}

/// Starts a server over a copy of `policy` with the configuration `toml`
/// (`{dir}` stands for the server's folder); `sighup` installs the SIGHUP
/// reload.
fn start_with(policy: &str, toml: &str, sighup: bool) -> Running {
    let dir = TempDir::new("srv");
    dir.replace("policy.yaml", policy);
    std::fs::write(dir.path("secret"), format!("{SECRET}\n")).unwrap();
    let text = format!(
        "policy = \"{}\"\nlisten = \"127.0.0.1:0\"\n{}",
        dir.path("policy.yaml").display(),
        toml.replace("{dir}", &dir.0.display().to_string())
            .replace("{keys}", &keys().display().to_string())
    );
    let config = Config::from_toml(&text).unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = match Server::bind(config).await {
                Ok(s) => s.reload_on_sighup(sighup),
                Err(e) => {
                    addr_tx.send(Err(e)).unwrap();
                    return;
                }
            };
            addr_tx.send(Ok(server.local_addr().unwrap())).unwrap();
            let result = server
                .run(async move {
                    let _ = stop_rx.await;
                })
                .await;
            let _ = done_tx.send(result);
        });
    });
    let addr = addr_rx.recv().unwrap().unwrap();
    Running {
        base: format!("http://{addr}"),
        addr,
        stop: Some(stop_tx),
        done: Some(done_rx),
        _thread: thread,
        dir,
    }
}

const HS256: &str = "[jwt]\nalgorithm = \"HS256\"\nsecret_file = \"{dir}/secret\"\naudience = \"sqlsandbox-test\"\nissuer = \"https://idp.test\"\n";

fn start_hs256() -> Running {
    start_with(&saas(), HS256, false)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "aud": AUD, "iss": ISS, "exp": now() + 600, "iat": now()})
}

fn hs256(claims: &Value) -> String {
    hs256_with(claims, SECRET.as_bytes())
}

fn hs256_with(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn rs256(claims: &Value, key: &str) -> String {
    let pem = std::fs::read(keys().join(key)).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

fn eddsa(claims: &Value) -> String {
    let pem = std::fs::read(keys().join("ed25519-private.pem")).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        claims,
        &EncodingKey::from_ed_pem(&pem).unwrap(),
    )
    .unwrap()
}

/// Base64url without padding (for hand-made tokens).
fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// POSTs JSON with a bearer token; returns the status and the JSON body.
async fn post(c: &reqwest::Client, url: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = c.post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

async fn get_json(c: &reqwest::Client, url: &str) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const ORDERS: &str = "SELECT id, total FROM orders";

#[test]
fn hs256_rs256_and_eddsa_tokens_name_the_principal() {
    let rs = format!(
        "[jwt]\nalgorithm = \"RS256\"\npublic_key_file = \"{{keys}}/rs256-public.pem\"\naudience = \"{AUD}\"\nissuer = \"{ISS}\"\n"
    );
    let ed = rs
        .replace("RS256", "EdDSA")
        .replace("rs256-public", "ed25519-public");
    let servers = [
        (start_hs256(), hs256(&claims("alice"))),
        (
            start_with(&saas(), &rs, false),
            rs256(&claims("alice"), "rs256-private.pem"),
        ),
        (start_with(&saas(), &ed, false), eddsa(&claims("alice"))),
    ];
    rt().block_on(async {
        let c = client();
        for (server, token) in &servers {
            let (status, body) = post(
                &c,
                &server.url("/v1/rewrite"),
                Some(token),
                &json!({"sql": ORDERS}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let sql = body["sql"].as_str().unwrap();
            assert!(sql.contains("tenant_id = 42"), "{sql}");
            assert_eq!(body["database"], "warehouse");
            assert!(body["fingerprint"].is_string());
        }
    });
}

#[test]
fn bad_tokens_are_401() {
    let hs = start_hs256();
    let rs = start_with(
        &saas(),
        &format!("[jwt]\nalgorithm = \"RS256\"\npublic_key_file = \"{{keys}}/rs256-public.pem\"\naudience = \"{AUD}\"\nissuer = \"{ISS}\"\n"),
        false,
    );
    let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = claims("alice");
        f(c.as_object_mut().unwrap());
        c
    };
    let none_token = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims("alice").to_string().as_bytes())
    );
    let public_pem = std::fs::read(keys().join("rs256-public.pem")).unwrap();
    let hs_cases: Vec<(&str, String)> = vec![
        (
            "expired",
            hs256(&with(&|c| {
                c.insert("exp".into(), json!(now() - 3600));
            })),
        ),
        (
            "not yet valid",
            hs256(&with(&|c| {
                c.insert("nbf".into(), json!(now() + 3600));
            })),
        ),
        (
            "wrong aud",
            hs256(&with(&|c| {
                c.insert("aud".into(), json!("another-service"));
            })),
        ),
        (
            "wrong iss",
            hs256(&with(&|c| {
                c.insert("iss".into(), json!("https://evil.test"));
            })),
        ),
        (
            "no exp",
            hs256(&with(&|c| {
                c.remove("exp");
            })),
        ),
        (
            "no aud",
            hs256(&with(&|c| {
                c.remove("aud");
            })),
        ),
        (
            "wrong key",
            hs256_with(
                &claims("alice"),
                b"another-secret-of-enough-length-0123456789",
            ),
        ),
        ("alg none", none_token.clone()),
        (
            "RS256 on an HS256 server",
            rs256(&claims("alice"), "rs256-private.pem"),
        ),
        ("EdDSA on an HS256 server", eddsa(&claims("alice"))),
        ("garbage", "not.a.token".into()),
        ("huge", "a".repeat(10_000)),
    ];
    let rs_cases: Vec<(&str, String)> = vec![
        // Alg confusion: HS256 keyed with the RSA public key's PEM.
        (
            "HS256 keyed with the public key",
            hs256_with(&claims("alice"), &public_pem),
        ),
        ("alg none", none_token),
        (
            "other RSA key",
            rs256(&claims("alice"), "other-rs256-private.pem"),
        ),
        ("EdDSA on an RS256 server", eddsa(&claims("alice"))),
    ];
    rt().block_on(async {
        let c = client();
        for (server, cases) in [(&hs, &hs_cases), (&rs, &rs_cases)] {
            for (what, token) in cases {
                let (status, body) = post(
                    &c,
                    &server.url("/v1/rewrite"),
                    Some(token),
                    &json!({"sql": ORDERS}),
                )
                .await;
                assert_eq!(status, 401, "{what}: {body}");
                assert_eq!(code(&body), "unauthorized", "{what}");
            }
        }
        // No header, another scheme, two headers.
        let url = hs.url("/v1/rewrite");
        let (status, _) = post(&c, &url, None, &json!({"sql": ORDERS})).await;
        assert_eq!(status, 401);
        let resp = c
            .post(&url)
            .header(
                "authorization",
                format!("Basic {}", hs256(&claims("alice"))),
            )
            .json(&json!({"sql": ORDERS}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let t = hs256(&claims("alice"));
        let resp = c
            .post(&url)
            .header("authorization", format!("Bearer {t}"))
            .header("authorization", format!("Bearer {t}"))
            .json(&json!({"sql": ORDERS}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        // And the good one passes on the same servers.
        let (status, _) = post(&c, &url, Some(&t), &json!({"sql": ORDERS})).await;
        assert_eq!(status, 200);
    });
}

#[test]
fn a_verified_token_naming_an_unknown_principal_is_403() {
    let user = start_hs256();
    let claims_mode = start_with(&saas(), &format!("{HS256}principal = \"claims\"\n"), false);
    rt().block_on(async {
        let c = client();
        let (status, body) = post(
            &c,
            &user.url("/v1/rewrite"),
            Some(&hs256(&claims("mallory"))),
            &json!({"sql": ORDERS}),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(code(&body), "SB102");
        assert_eq!(body["error"]["refusal"], true);

        // Claims mode, Metabase style: groups and other claims as attributes.
        let mut cl = claims("someone@example.com");
        let obj = cl.as_object_mut().unwrap();
        obj.insert("groups".into(), json!(["customers"]));
        obj.insert("tenant".into(), json!(7));
        obj.insert("region".into(), json!("us"));
        obj.insert("email".into(), json!("someone@example.com"));
        let (status, body) = post(
            &c,
            &claims_mode.url("/v1/rewrite"),
            Some(&hs256(&cl)),
            &json!({"sql": ORDERS}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["sql"].as_str().unwrap().contains("tenant_id = 7"));

        let obj = cl.as_object_mut().unwrap();
        obj.insert("groups".into(), json!(["customers", "no_such_group"]));
        let (status, body) = post(
            &c,
            &claims_mode.url("/v1/rewrite"),
            Some(&hs256(&cl)),
            &json!({"sql": ORDERS}),
        )
        .await;
        assert_eq!((status, code(&body)), (403, "SB102"), "{body}");

        // An attribute the policy does not declare.
        let obj = cl.as_object_mut().unwrap();
        obj.insert("groups".into(), json!(["customers"]));
        obj.insert("tenat".into(), json!(7));
        let (status, body) = post(
            &c,
            &claims_mode.url("/v1/rewrite"),
            Some(&hs256(&cl)),
            &json!({"sql": ORDERS}),
        )
        .await;
        assert_eq!((status, code(&body)), (403, "SB102"), "{body}");
    });
}

#[test]
fn trusted_headers_only_when_configured() {
    let jwt = start_hs256();
    let headers = start_with(&saas(), "[trusted_headers]\n", false);
    rt().block_on(async {
        let c = client();
        // A token server ignores the headers.
        let resp = c
            .post(jwt.url("/v1/rewrite"))
            .header("x-sqlsandbox-user", "carol")
            .json(&json!({"sql": ORDERS}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);

        let resp = c
            .post(headers.url("/v1/rewrite"))
            .header("x-sqlsandbox-user", "alice")
            .json(&json!({"sql": ORDERS}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body: Value = resp.json().await.unwrap();
        assert!(body["sql"].as_str().unwrap().contains("tenant_id = 42"));

        let resp = c
            .post(headers.url("/v1/rewrite"))
            .header("x-sqlsandbox-groups", "customers")
            .header("x-sqlsandbox-attr-tenant", "9")
            .header("x-sqlsandbox-attr-region", "eu")
            .json(&json!({"sql": ORDERS}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["sql"].as_str().unwrap().contains("tenant_id = 9"),
            "{body}"
        );

        // No principal headers; a token does not count here.
        let (status, body) = post(
            &c,
            &headers.url("/v1/rewrite"),
            Some(&hs256(&claims("carol"))),
            &json!({"sql": ORDERS}),
        )
        .await;
        assert_eq!((status, code(&body)), (401, "unauthorized"));
    });
    // Neither or both: the server does not start.
    let dir = TempDir::new("cfg");
    std::fs::write(dir.path("p.yaml"), saas()).unwrap();
    let p = dir.path("p.yaml").display().to_string();
    let neither = Config::from_toml(&format!("policy = \"{p}\"\n")).unwrap();
    assert!(neither.validate().is_err());
    let both = Config::from_toml(&format!(
        "policy = \"{p}\"\n{}[trusted_headers]\n",
        HS256.replace("{dir}", "/nonexistent")
    ))
    .unwrap();
    assert!(both.validate().is_err());
    assert!(Config::from_toml("policy = \"p\"\nlisten = \"127.0.0.1:1\"\nbogus = 1\n").is_err());
    // A short HS256 secret is refused at start.
    std::fs::write(dir.path("short"), "short").unwrap();
    let short = Config::from_toml(&format!(
        "policy = \"{p}\"\nlisten = \"127.0.0.1:0\"\n{}",
        HS256.replace("{dir}/secret", &dir.path("short").display().to_string())
    ))
    .unwrap();
    let err = rt().block_on(Server::bind(short)).err().unwrap();
    assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    let mut cfg = Config::new(dir.path("p.yaml"));
    cfg.trusted_headers = Some(TrustedHeaders::default());
    assert!(cfg.validate().is_ok());
}

#[test]
fn refusals_and_bad_input_carry_stable_codes() {
    let s = start_hs256();
    let alice = hs256(&claims("alice"));
    let dave = hs256(&claims("dave"));
    rt().block_on(async {
        let c = client();
        let url = s.url("/v1/rewrite");
        let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
            (
                "hidden table",
                &alice,
                json!({"sql": "SELECT * FROM audit.logins"}),
                403,
                "SB201",
            ),
            (
                "write",
                &alice,
                json!({"sql": "DELETE FROM orders"}),
                403,
                "SB401",
            ),
            (
                "missing attribute",
                &dave,
                json!({"sql": ORDERS}),
                403,
                "SB301",
            ),
            ("bad SQL", &alice, json!({"sql": "SELEC 1"}), 400, "SB101"),
            // Not told apart from a database without native permission.
            (
                "unknown database",
                &alice,
                json!({"sql": ORDERS, "database": "nope"}),
                403,
                "SB202",
            ),
            (
                "unknown dialect",
                &alice,
                json!({"sql": ORDERS, "dialect": "oracle"}),
                400,
                "SB102",
            ),
            (
                "another engine's dialect",
                &alice,
                json!({"sql": "SELECT id FROM orders WHERE date(status) IS NULL", "dialect": "sqlite"}),
                400,
                "SB102",
            ),
            (
                "weaker fence",
                &alice,
                json!({"sql": ORDERS, "options": {"fence": "never"}}),
                400,
                "SB102",
            ),
            (
                "higher limit",
                &alice,
                json!({"sql": ORDERS, "options": {"max_depth": 100000}}),
                400,
                "SB102",
            ),
            (
                "unknown field",
                &alice,
                json!({"sql": ORDERS, "user": "carol"}),
                400,
                "bad_request",
            ),
            ("no sql", &alice, json!({}), 400, "bad_request"),
        ];
        for (what, token, body, want_status, want_code) in cases {
            let (status, got) = post(&c, &url, Some(token), &body).await;
            assert_eq!(
                (status, code(&got)),
                (want_status, want_code),
                "{what}: {got}"
            );
            assert!(got["error"]["message"].is_string());
        }
        // Lower limits and a stricter fence are accepted.
        let (status, got) = post(
            &c,
            &url,
            Some(&alice),
            &json!({"sql": ORDERS, "options": {"fence": "always", "max_depth": 32}}),
        )
        .await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["fencing"]["fenced"], true, "{got}");
        // A repeated key is refused, not resolved silently.
        let resp = c
            .post(&url)
            .bearer_auth(&alice)
            .header("content-type", "application/json")
            .body(r#"{"sql": "SELECT 1", "sql": "SELECT id FROM orders"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        // Not JSON.
        let resp = c
            .post(&url)
            .bearer_auth(&alice)
            .header("content-type", "text/plain")
            .body(ORDERS)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 415);
        let resp = c
            .post(&url)
            .bearer_auth(&alice)
            .header("content-type", "application/json")
            .body("{\"sql\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        // Routes: unknown path 404, wrong method 405, JSON errors.
        let resp = c.get(s.url("/v2/nothing")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 404);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(code(&body), "not_found");
        let resp = c.get(s.url("/v1/rewrite")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 405);
        // Refusals counted by code.
        let metrics = c
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("sqlsandbox_refusals_total{code=\"SB201\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("sqlsandbox_requests_total{endpoint=\"rewrite\",status=\"403\"} 4"),
            "{metrics}"
        );
    });
}

/// A request checked under one engine's rules (SQLite's functions and
/// row-safe conditions) would still run on the database the answer names
/// (PostgreSQL): a request may name only its database's own dialect,
/// unless the server is configured to take overrides from its callers.
#[test]
fn a_request_may_change_the_dialect_only_where_the_server_allows_it() {
    let body = json!({"sql": "SELECT id FROM orders WHERE id = 7", "dialect": "sqlite"});
    let s = start_hs256();
    let alice = hs256(&claims("alice"));
    rt().block_on(async {
        let c = client();
        let url = s.url("/v1/rewrite");
        let (status, got) = post(&c, &url, Some(&alice), &body).await;
        assert_eq!((status, code(&got)), (400, "SB102"), "{got}");
        let message = got["error"]["message"].as_str().unwrap();
        assert!(message.contains("another engine"), "{message}");
        let own = json!({"sql": "SELECT id FROM orders WHERE id = 7", "dialect": "postgres"});
        let (status, got) = post(&c, &url, Some(&alice), &own).await;
        assert_eq!(status, 200, "{got}");
        let builder =
            json!({"question": {"query": {"source-table": "orders"}}, "dialect": "mysql"});
        let (status, got) = post(&c, &s.url("/v1/builder"), Some(&alice), &builder).await;
        assert_eq!((status, code(&got)), (400, "SB102"), "{got}");
    });
    let s = start_with(&saas(), &format!("dialect_override = true\n{HS256}"), false);
    rt().block_on(async {
        let (status, got) = post(&client(), &s.url("/v1/rewrite"), Some(&alice), &body).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["dialect"], "sqlite", "{got}");
    });
}

#[test]
fn builder_question_and_explain() {
    let s = start_hs256();
    let alice = hs256(&claims("alice"));
    let erin = hs256(&claims("erin"));
    rt().block_on(async {
        let c = client();
        let q =
            json!({"question": {"query": {"source-table": "orders", "aggregation": [["count"]]}}});
        let (status, body) = post(&c, &s.url("/v1/builder"), Some(&alice), &q).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["sql"].as_str().unwrap().contains("tenant_id = 42"),
            "{body}"
        );
        let (status, body) = post(&c, &s.url("/v1/builder"), Some(&erin), &q).await;
        assert_eq!((status, code(&body)), (403, "SB201"), "{body}");
        let bad = json!({"question": {"query": {"source-table": 5}}});
        let (status, body) = post(&c, &s.url("/v1/builder"), Some(&alice), &bad).await;
        assert_eq!((status, code(&body)), (400, "SB104"), "{body}");

        let (status, body) = post(
            &c,
            &s.url("/v1/question"),
            Some(&alice),
            &json!({"name": "big_orders", "params": true}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["sql"].as_str().unwrap().contains("tenant_id = $1"),
            "{body}"
        );
        assert_eq!(body["params"][0]["value"], 42, "{body}");
        let (status, body) = post(
            &c,
            &s.url("/v1/question"),
            Some(&alice),
            &json!({"name": "sandboxed_accounts"}),
        )
        .await;
        assert_eq!(status, 403, "{body}");

        let (status, body) = post(
            &c,
            &s.url("/v1/explain"),
            Some(&alice),
            &json!({"sql": ORDERS}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["explanation"].is_object());
        assert!(body["query"]["rewritten"]["sql"].is_string(), "{body}");
        let (status, body) = post(
            &c,
            &s.url("/v1/explain"),
            Some(&alice),
            &json!({"sql": "SELECT * FROM audit.logins"}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["query"]["refused"]["code"], "SB201", "{body}");
        let (status, body) = post(&c, &s.url("/v1/explain"), Some(&alice), &json!({})).await;
        assert_eq!(status, 200);
        assert!(body["query"].is_null());
    });
}

#[test]
fn the_cache_never_serves_one_principal_anothers_sql() {
    let s = start_with(&saas(), &format!("{HS256}principal = \"claims\"\n"), false);
    let token = |tenant: i64, region: &str| {
        let mut c = claims(&format!("user-{tenant}"));
        let o = c.as_object_mut().unwrap();
        o.insert("groups".into(), json!(["customers"]));
        o.insert("tenant".into(), json!(tenant));
        o.insert("region".into(), json!(region));
        hs256(&c)
    };
    let analyst = {
        let mut c = claims("analyst");
        c.as_object_mut()
            .unwrap()
            .insert("groups".into(), json!(["analysts"]));
        hs256(&c)
    };
    let sql = "SELECT e.kind, o.total FROM events e JOIN orders o ON o.account_id = e.account_id";
    rt().block_on(async {
        let c = client();
        let url = s.url("/v1/rewrite");
        let mut shared_sql = None;
        for round in 0..5 {
            for tenant in 1..=6i64 {
                let region = if tenant % 2 == 0 { "eu" } else { "us" };
                // Bind parameters: the same text for everyone, own values.
                let (status, body) = post(
                    &c,
                    &url,
                    Some(&token(tenant, region)),
                    &json!({"sql": sql, "params": true}),
                )
                .await;
                assert_eq!(status, 200, "{body}");
                let text = body["sql"].as_str().unwrap().to_string();
                assert!(!text.contains(&format!("= {tenant}")), "{text}");
                match &shared_sql {
                    None => shared_sql = Some(text),
                    Some(s) => assert_eq!(s, &text),
                }
                let values: Vec<&Value> = body["params"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| &p["value"])
                    .collect();
                assert!(
                    values.contains(&&json!(tenant)),
                    "round {round}: {values:?}"
                );
                assert!(values.contains(&&json!(region)), "{values:?}");
                for other in (1..=6i64).filter(|o| *o != tenant) {
                    assert!(!values.contains(&&json!(other)), "{values:?}");
                }
                // Literals: the values are in the key.
                let (status, body) =
                    post(&c, &url, Some(&token(tenant, region)), &json!({"sql": sql})).await;
                assert_eq!(status, 200);
                let text = body["sql"].as_str().unwrap();
                assert!(text.contains(&format!("tenant_id = {tenant}")), "{text}");
                for other in (1..=6i64).filter(|o| *o != tenant) {
                    assert!(!text.contains(&format!("tenant_id = {other})")), "{text}");
                }
                // A different sandbox (none) for the same text.
                let (status, body) = post(
                    &c,
                    &url,
                    Some(&analyst),
                    &json!({"sql": sql, "params": true}),
                )
                .await;
                assert_eq!(status, 200);
                assert!(
                    !body["sql"].as_str().unwrap().contains("tenant_id"),
                    "{body}"
                );
            }
        }
        let metrics = c
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let hits: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("sqlsandbox_cache_hits_total "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(hits >= 60, "{metrics}");
    });
}

#[test]
fn limits_body_headers_and_time() {
    let s = start_with(
        &saas(),
        &format!("max_body_bytes = 4096\nmax_header_bytes = 8192\ntimeout_ms = 300\n{HS256}"),
        false,
    );
    let alice = hs256(&claims("alice"));
    rt().block_on(async {
        let c = client();
        let url = s.url("/v1/rewrite");
        let big = format!(
            "SELECT id FROM orders WHERE id IN ({})",
            vec!["1"; 3000].join(",")
        );
        let (status, body) = post(&c, &url, Some(&alice), &json!({"sql": big})).await;
        assert_eq!((status, code(&body)), (413, "payload_too_large"), "{body}");
        let resp = c
            .post(&url)
            .bearer_auth(&alice)
            .header("x-padding", "p".repeat(9000))
            .json(&json!({"sql": ORDERS}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 431);
        let (status, _) = post(&c, &url, Some(&alice), &json!({"sql": ORDERS})).await;
        assert_eq!(status, 200);
    });
    // A client that stops sending its body: 503 `timeout` after 300 ms.
    let mut tcp = std::net::TcpStream::connect(s.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "POST /v1/rewrite HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"sql\""
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    let n = tcp.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("\"timeout\""), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Hammers the server from several clients while the policy file is
/// replaced good → broken → good three times: no request fails, /healthz
/// shows each broken edit with its diagnostics, the version goes up by
/// one per good edit, and the metrics count the failures.
#[test]
fn reload_under_load_never_fails_a_request() {
    let s = start_with(&saas(), &format!("watch_interval_ms = 20\n{HS256}"), false);
    let alice = hs256(&claims("alice"));
    let bob = hs256(&claims("bob"));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let runtime = rt();
    let mut hammers = Vec::new();
    for i in 0..4 {
        let (c, url, stop, ok) = (client(), s.url("/v1/rewrite"), stop.clone(), ok.clone());
        let (token, tenant) = if i % 2 == 0 {
            (alice.clone(), 42)
        } else {
            (bob.clone(), 7)
        };
        hammers.push(runtime.spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = post(
                    &c,
                    &url,
                    Some(&token),
                    &json!({"sql": ORDERS, "params": i >= 2}),
                )
                .await;
                let own = if i >= 2 {
                    body["params"][0]["value"] == json!(tenant)
                } else {
                    body["sql"]
                        .as_str()
                        .is_some_and(|s| s.contains(&format!("tenant_id = {tenant}")))
                };
                if status == 200 && own {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.push(format!("{status} {body}"));
                }
            }
            failures
        }));
    }
    let base = saas();
    runtime.block_on(async {
        let c = client();
        let health = |c: reqwest::Client| {
            let url = s.url("/healthz");
            async move { get_json(&c, &url).await }
        };
        let wait_for = |pred: Box<dyn Fn(&Value) -> bool + Send>| {
            let c = c.clone();
            async move {
                for _ in 0..500 {
                    let h = health(c.clone()).await;
                    if pred(&h) {
                        return h;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("/healthz never reached the expected state");
            }
        };
        let h = health(c.clone()).await;
        assert_eq!(h["policy"]["version"], 1);
        assert_eq!(h["status"], "ok");
        for round in 1..=3u64 {
            // Let the hammers run under this version for a moment.
            tokio::time::sleep(Duration::from_millis(100)).await;
            s.dir.replace(
                "policy.yaml",
                &base.replace("users:\n", "users:\n  ghost: {groups: [nope]}\n"),
            );
            let h = wait_for(Box::new(|h| h["status"] == "degraded")).await;
            assert_eq!(h["policy"]["version"], round, "{h}");
            let e = &h["last_reload"]["error"];
            assert_eq!(e["code"], "SB002", "{h}");
            assert!(e["message"].as_str().unwrap().contains("nope"), "{h}");
            assert!(e["location"]["line"].is_number(), "{h}");
            assert!(
                e["diagnostic"].as_str().unwrap().contains("policy.yaml"),
                "{h}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            s.dir
                .replace("policy.yaml", &format!("{base}\n# edit {round}\n"));
            let want = round + 1;
            let h = wait_for(Box::new(move |h| h["policy"]["version"] == want)).await;
            assert_eq!(h["status"], "ok", "{h}");
            assert_eq!(h["last_reload"]["ok"], true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.store(true, Ordering::Relaxed);
        for h in hammers {
            let failures = h.await.unwrap();
            assert!(failures.is_empty(), "failed requests: {failures:?}");
        }
        assert!(
            ok.load(Ordering::Relaxed) > 20,
            "{}",
            ok.load(Ordering::Relaxed)
        );
        let metrics = c
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("sqlsandbox_policy_version 4"), "{metrics}");
        assert!(
            metrics.contains("sqlsandbox_policy_last_reload_ok 1"),
            "{metrics}"
        );
        let failures: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("sqlsandbox_policy_reload_failures_total "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(failures >= 3, "{metrics}");
        for name in [
            "sqlsandbox_requests_total{",
            "sqlsandbox_request_duration_seconds_bucket{",
            "sqlsandbox_cache_hits_total",
            "sqlsandbox_cache_misses_total",
            "sqlsandbox_cache_entries",
            "sqlsandbox_cache_bytes",
            "sqlsandbox_policy_reloads_total",
        ] {
            assert!(metrics.contains(name), "{name} missing: {metrics}");
        }
    });
}

#[cfg(unix)]
#[test]
fn sighup_reloads_the_policy() {
    let s = start_with(&saas(), &format!("watch_interval_ms = 0\n{HS256}"), true);
    rt().block_on(async {
        let c = client();
        s.dir
            .replace("policy.yaml", &format!("{}\n# edited\n", saas()));
        // No watch: nothing happens until the signal.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            get_json(&c, &s.url("/healthz")).await["policy"]["version"],
            1
        );
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..500 {
            if get_json(&c, &s.url("/healthz")).await["policy"]["version"] == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("SIGHUP did not reload the policy");
    });
}

/// A request in flight when shutdown is asked for is answered; the server
/// then stops, and `run` returns.
#[test]
fn graceful_shutdown_finishes_requests_in_flight() {
    let mut s = start_with(&saas(), &format!("timeout_ms = 10000\n{HS256}"), false);
    let alice = hs256(&claims("alice"));
    let body = json!({"sql": ORDERS}).to_string();
    let mut tcp = std::net::TcpStream::connect(s.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "POST /v1/rewrite HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let (half, rest) = body.split_at(5);
    tcp.write_all(half.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Ask for shutdown while the request is half sent.
    let stop = s.stop.take().unwrap();
    stop.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    tcp.write_all(rest.as_bytes()).unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("tenant_id = 42"), "{text}");
    s.shutdown().unwrap();
    assert!(std::net::TcpStream::connect(s.addr).is_err());
}

/// docs/openapi.yaml parses, is OpenAPI 3, and names exactly the routes
/// the server registers; every registered route answers (not 404/405).
#[test]
fn openapi_document_matches_the_routes() {
    let text = std::fs::read_to_string(manifest().join("docs/openapi.yaml")).unwrap();
    let doc: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if matches!(method.as_str(), "get" | "post" | "put" | "delete" | "patch") {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let registered: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, registered);
    // Every error code the server itself answers with is documented.
    for code in [
        "unauthorized",
        "bad_request",
        "payload_too_large",
        "unsupported_media_type",
        "headers_too_large",
        "timeout",
        "not_found",
        "method_not_allowed",
    ] {
        assert!(text.contains(code), "{code} not in docs/openapi.yaml");
    }
    let s = start_hs256();
    let alice = hs256(&claims("alice"));
    rt().block_on(async {
        let c = client();
        for (method, path) in ROUTES {
            let req = match method {
                "GET" => c.get(s.url(path)),
                _ => c.post(s.url(path)).bearer_auth(&alice).json(&json!({})),
            };
            let status = req.send().await.unwrap().status().as_u16();
            assert!(status != 404 && status != 405, "{method} {path}: {status}");
        }
    });
}

#[test]
fn healthz_reports_the_policy() {
    let s = start_hs256();
    rt().block_on(async {
        let h = get_json(&client(), &s.url("/healthz")).await;
        assert_eq!(h["status"], "ok");
        assert_eq!(h["policy"]["version"], 1);
        assert_eq!(h["policy"]["digest"].as_str().unwrap().len(), 64);
        assert!(Path::new(h["policy"]["path"].as_str().unwrap()).ends_with("policy.yaml"));
    });
}
