//! `sqlsandbox serve`: the library over HTTP, for query services in any
//! language (feature `serve`).
//!
//! | route | does |
//! |---|---|
//! | `POST /v1/rewrite` | [`Policy::rewrite`] through the rewrite cache |
//! | `POST /v1/builder` | [`Policy::rewrite_builder`] |
//! | `POST /v1/question` | [`Policy::rewrite_question`] |
//! | `POST /v1/explain` | [`crate::explain::explain`], and a query's rewrite |
//! | `GET /healthz` | policy version, last reload's status and diagnostics |
//! | `GET /metrics` | Prometheus metrics (see [`metrics`](self) in the README) |
//!
//! Every `POST` needs a principal: a signed token (`Authorization: Bearer`,
//! [`JwtConfig`]) or, only when configured, headers set by a trusted proxy
//! ([`TrustedHeaders`]). Answers are JSON, as `sqlsandbox rewrite --format
//! json` prints them; errors are `{"error": {"code", "message", "refusal"}}`
//! with 400 (bad input), 401 (no or bad token), 403 (refused: access or an
//! unknown principal), 413 (body too large), 415 (not JSON), 431 (headers
//! too large) or 503 (`timeout`). The policy file is watched and reloaded
//! through a [`PolicyHandle`]; docs/openapi.yaml describes the API.

mod auth;
pub mod config;
mod metrics;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub use config::{Config, JwtAlgorithm, JwtConfig, PrincipalFrom, TrustedHeaders};

use crate::handle::{Reload, Snapshot};
use crate::{AttributeValue, Error, FenceMode, Options, Policy, PolicyHandle, Principal};
use auth::{Auth, Caller, Unauthorized};
use metrics::Metrics;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is incomplete or inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// The policy file did not load at start.
    #[error(transparent)]
    Policy(#[from] Error),
    /// Listening or serving failed.
    #[error("{0}")]
    Io(String),
}

/// Every route the server registers, as (method, path).
pub const ROUTES: [(&str, &str); 6] = [
    ("POST", "/v1/rewrite"),
    ("POST", "/v1/builder"),
    ("POST", "/v1/question"),
    ("POST", "/v1/explain"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
];

/// The metric label of a path: its route's last segment, `other` otherwise.
fn endpoint_of(path: &str) -> &'static str {
    match path {
        "/v1/rewrite" => "rewrite",
        "/v1/builder" => "builder",
        "/v1/question" => "question",
        "/v1/explain" => "explain",
        "/healthz" => "healthz",
        "/metrics" => "metrics",
        _ => "other",
    }
}

struct App {
    handle: Arc<PolicyHandle>,
    auth: Auth,
    metrics: Metrics,
    config: Config,
}

/// A bound server, not yet serving: [`Server::run`] serves.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    sighup: bool,
}

impl Server {
    /// Checks the configuration, loads the policy (a policy that does not
    /// load stops here), reads the keys and binds the address.
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        config.validate()?;
        let auth = Auth::new(config.jwt.as_ref(), config.trusted_headers.as_ref())?;
        let path = config.policy.clone();
        let cache_bytes = config.cache_bytes;
        let handle =
            tokio::task::spawn_blocking(move || PolicyHandle::load_with_cache(path, cache_bytes))
                .await
                .map_err(|e| ServeError::Io(format!("policy load: {e}")))??;
        let handle = Arc::new(handle);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| ServeError::Io(format!("cannot listen on {}: {e}", config.listen)))?;
        let metrics = Metrics::new(Arc::clone(&handle));
        Ok(Server {
            listener,
            app: Arc::new(App {
                handle,
                auth,
                metrics,
                config,
            }),
            sighup: true,
        })
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.listener
            .local_addr()
            .map_err(|e| ServeError::Io(e.to_string()))
    }

    /// The policy handle the server reads.
    pub fn handle(&self) -> Arc<PolicyHandle> {
        Arc::clone(&self.app.handle)
    }

    /// Whether SIGHUP reloads the policy (default: yes, on Unix).
    pub fn reload_on_sighup(mut self, on: bool) -> Server {
        self.sighup = on;
        self
    }

    /// Serves until `shutdown` completes, then stops accepting connections
    /// and waits for the requests in flight to finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let mut tasks = tokio::task::JoinSet::new();
        if self.app.config.watch_interval_ms > 0 {
            let interval = Duration::from_millis(self.app.config.watch_interval_ms);
            tasks.spawn(watch(Arc::clone(&self.app), interval));
        }
        #[cfg(unix)]
        if self.sighup {
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| ServeError::Io(format!("cannot handle SIGHUP: {e}")))?;
            let app = Arc::clone(&self.app);
            tasks.spawn(async move {
                while hup.recv().await.is_some() {
                    reload(&app, "SIGHUP").await;
                }
            });
        }
        let addr = self.local_addr()?;
        tracing::info!(
            listen = %addr,
            policy = %self.app.config.policy.display(),
            version = self.app.handle.current().version(),
            "serving"
        );
        let result = axum::serve(self.listener, router(Arc::clone(&self.app)))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| ServeError::Io(e.to_string()));
        tasks.shutdown().await;
        tracing::info!("stopped");
        result
    }
}

/// Completes on Ctrl-C or (on Unix) SIGTERM: the shutdown signal for
/// [`Server::run`] in the `sqlsandbox serve` command.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}

/// The handler of a route in [`ROUTES`].
fn handler_for(method: &str, path: &str) -> Option<MethodRouter<Arc<App>>> {
    Some(match (method, path) {
        ("POST", "/v1/rewrite") => post(rewrite),
        ("POST", "/v1/builder") => post(builder),
        ("POST", "/v1/question") => post(question),
        ("POST", "/v1/explain") => post(explain),
        ("GET", "/healthz") => get(healthz),
        ("GET", "/metrics") => get(metrics_text),
        _ => return None,
    })
}

/// The routes of [`ROUTES`], and nothing else.
fn router(app: Arc<App>) -> Router {
    let mut r = Router::new();
    for (method, path) in ROUTES {
        if let Some(method_router) = handler_for(method, path) {
            r = r.route(path, method_router.fallback(method_not_allowed));
        }
    }
    r.fallback(not_found)
        .layer(DefaultBodyLimit::max(app.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            guard,
        ))
        .with_state(app)
}

/// The code of an error answer, for the metrics and the log.
#[derive(Clone)]
struct ErrorCode(String);

/// The caller's name, for the log.
#[derive(Clone)]
struct CallerName(String);

fn error(status: StatusCode, code: &str, message: impl Into<String>, refusal: bool) -> Response {
    error_with(status, code, message.into(), refusal, None)
}

fn error_with(
    status: StatusCode,
    code: &str,
    message: String,
    refusal: bool,
    location: Option<Value>,
) -> Response {
    let mut body = json!({"code": code, "message": message, "refusal": refusal});
    if let (Some(l), Some(obj)) = (location, body.as_object_mut()) {
        obj.insert("location".into(), l);
    }
    let mut r = (status, Json(json!({ "error": body }))).into_response();
    r.extensions_mut().insert(ErrorCode(code.to_string()));
    r
}

/// A library error: 403 when refused, 400 for bad input; `principal`
/// marks errors resolving the caller (an unknown user or group named by a
/// verified token is refused, 403).
fn library_error(e: &Error, principal: bool) -> Response {
    let status = if principal || e.is_refusal() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::BAD_REQUEST
    };
    let location = e
        .location()
        .map(|l| json!({"path": l.file, "line": l.line, "column": l.column, "key": l.key}));
    error_with(
        status,
        e.code(),
        e.message(),
        status == StatusCode::FORBIDDEN,
        location,
    )
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such route", false)
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
        false,
    )
}

/// Header size limit, timeout, metrics and the log line of every request.
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let endpoint = endpoint_of(req.uri().path());
    let method = req.method().clone();
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let response = if header_bytes > app.config.max_header_bytes {
        error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "request headers exceed {} bytes",
                app.config.max_header_bytes
            ),
            false,
        )
    } else {
        match tokio::time::timeout(app.config.timeout(), next.run(req)).await {
            Ok(r) => r,
            Err(_) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("no answer within {} ms", app.config.timeout_ms),
                false,
            ),
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    let code = response
        .extensions()
        .get::<ErrorCode>()
        .map(|c| c.0.as_str());
    app.metrics.record(endpoint, status, code, seconds);
    let caller = response
        .extensions()
        .get::<CallerName>()
        .map(|c| c.0.as_str());
    tracing::info!(
        %method,
        endpoint,
        status,
        code,
        caller,
        duration_ms = seconds * 1000.0,
        "request"
    );
    response
}

/// Reloads the policy off the async threads and logs what happened.
async fn reload(app: &Arc<App>, reason: &'static str) {
    let handle = Arc::clone(&app.handle);
    match tokio::task::spawn_blocking(move || handle.reload()).await {
        Ok(Ok(Reload::Swapped(version))) => {
            tracing::info!(reason, version, "policy reloaded");
        }
        Ok(Ok(Reload::Unchanged)) => {
            tracing::info!(reason, "policy file reloaded, policy unchanged");
        }
        Ok(Err(e)) => {
            tracing::warn!(
                reason,
                code = e.code(),
                diagnostic = %e,
                version = app.handle.current().version(),
                "policy reload failed; the last good policy keeps serving"
            );
        }
        Err(e) => tracing::error!(reason, error = %e, "policy reload task failed"),
    }
}

/// What identifies a version of the policy file on disk.
#[derive(PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

async fn stamp(path: &std::path::Path) -> Option<Stamp> {
    let m = tokio::fs::metadata(path).await.ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode,
    })
}

/// Polls the policy file's modification time, size and inode, and reloads
/// on a change. A poll (rather than inotify) follows atomic renames and
/// the symbolic-link swaps of mounted configuration volumes, and costs one
/// `stat` per interval.
async fn watch(app: Arc<App>, interval: Duration) {
    let path = app.config.policy.clone();
    let mut last = stamp(&path).await;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = stamp(&path).await;
        if now != last {
            last = now;
            reload(&app, "file changed").await;
        }
    }
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    let status = app.handle.status();
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let last_reload = match &status.last_error {
        None => json!({"ok": true}),
        Some(e) => json!({
            "ok": false,
            "at": secs(e.at),
            "error": {
                "code": e.code,
                "message": e.message,
                "diagnostic": e.diagnostic,
                "location": e.location,
            }
        }),
    };
    Json(json!({
        "status": if status.last_error.is_none() { "ok" } else { "degraded" },
        "policy": {
            "path": app.config.policy.display().to_string(),
            "version": status.version,
            "digest": status.digest,
            "loaded_at": secs(status.loaded_at),
        },
        "reloads": status.reloads,
        "reload_failures": status.failures,
        "last_reload": last_reload,
    }))
    .into_response()
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    match app.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            )],
            text,
        )
            .into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "cannot encode the metrics",
            false,
        ),
    }
}

/// Options a request may set. Limits can only be lowered, and the fence
/// only made stricter (`always`): a caller never weakens what the policy
/// asks for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestOptions {
    #[serde(default)]
    fence: Option<String>,
    #[serde(default)]
    emit_role: bool,
    #[serde(default)]
    local_role: bool,
    #[serde(default)]
    max_sql_bytes: Option<usize>,
    #[serde(default)]
    max_depth: Option<usize>,
    #[serde(default)]
    max_operators: Option<usize>,
}

/// A request's options. `dialect` must be its database's own unless the
/// server allows overrides (`dialect_override`): the query is checked under
/// the dialect it is written for, and the answer still names the database.
fn options(
    policy: &Policy,
    config: &Config,
    database: Option<String>,
    dialect: Option<&str>,
    params: bool,
    extra: &RequestOptions,
) -> Result<Options, Error> {
    let bad = |what: String| Error::Unknown {
        kind: "option",
        name: what,
    };
    let defaults = Options::default();
    let mut opts = Options::default()
        .with_params(params)
        .with_emit_role(extra.emit_role)
        .with_local_role(extra.local_role);
    if let Some(d) = database {
        opts = opts.with_database(d);
    }
    if let Some(d) = dialect {
        let d: crate::Dialect = d.parse()?;
        // Fail closed: a database that cannot be told (none named among
        // several, or unknown) is no proof that the dialect is its own.
        let own = crate::pipeline::pick_database(policy, opts.database.as_deref())
            .is_ok_and(|db| db.dialect == d);
        if !config.dialect_override && !own {
            return Err(bad(format!(
                "dialect: {d} (not the database's own; this server does not let a request check a query under another engine's rules than the one it runs on)"
            )));
        }
        opts = opts.with_dialect(d);
    }
    match extra.fence.as_deref() {
        None => {}
        Some("always") => opts = opts.with_fence(FenceMode::Always),
        Some(other) => {
            return Err(bad(format!(
                "fence: {other} (a request may only ask for `always`)"
            )))
        }
    }
    let limits = [
        (extra.max_sql_bytes, defaults.max_sql_bytes, "max_sql_bytes"),
        (extra.max_depth, defaults.max_depth, "max_depth"),
        (extra.max_operators, defaults.max_operators, "max_operators"),
    ];
    for (asked, default, name) in limits {
        if let Some(n) = asked {
            if n > default {
                return Err(bad(format!(
                    "{name}: {n} (a request may lower it, up to {default})"
                )));
            }
        }
    }
    if let Some(n) = extra.max_sql_bytes {
        opts = opts.with_max_sql_bytes(n);
    }
    if let Some(n) = extra.max_depth {
        opts = opts.with_max_depth(n);
    }
    if let Some(n) = extra.max_operators {
        opts = opts.with_max_operators(n);
    }
    Ok(opts)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RewriteRequest {
    sql: String,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    dialect: Option<String>,
    #[serde(default)]
    params: bool,
    #[serde(default)]
    options: RequestOptions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuilderRequest {
    question: Value,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    dialect: Option<String>,
    #[serde(default)]
    params: bool,
    #[serde(default)]
    options: RequestOptions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuestionRequest {
    name: String,
    #[serde(default)]
    variables: BTreeMap<String, Value>,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    dialect: Option<String>,
    #[serde(default)]
    params: bool,
    #[serde(default)]
    options: RequestOptions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainRequest {
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    builder: Option<Value>,
    #[serde(default)]
    database: Option<String>,
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, Error> {
    serde_json::to_value(v).map_err(|e| Error::Verification(format!("cannot encode JSON: {e}")))
}

/// The shared path of every `POST`: authenticate, read and parse the
/// body, resolve the principal and run `work` off the async threads, all
/// under one policy snapshot.
async fn serve_json<R, F>(app: Arc<App>, req: Request, work: F) -> Response
where
    R: serde::de::DeserializeOwned + Send + 'static,
    F: FnOnce(&App, &Snapshot, &Principal, R) -> Result<Value, Error> + Send + 'static,
{
    let caller: Caller = match app.auth.authenticate(req.headers()) {
        Ok(c) => c,
        Err(Unauthorized(message)) => {
            let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", message, false);
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    };
    let name = CallerName(caller.name().to_string());
    let json_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    let mut response = if json_body {
        match Bytes::from_request(req, &()).await {
            Err(rejection) => {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "payload_too_large"
                } else {
                    "bad_request"
                };
                error(status, code, rejection.body_text(), false)
            }
            Ok(body) => run_json(app, caller, &body, work).await,
        }
    } else {
        error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request as Content-Type: application/json",
            false,
        )
    };
    response.extensions_mut().insert(name);
    response
}

async fn run_json<R, F>(app: Arc<App>, caller: Caller, body: &[u8], work: F) -> Response
where
    R: serde::de::DeserializeOwned + Send + 'static,
    F: FnOnce(&App, &Snapshot, &Principal, R) -> Result<Value, Error> + Send + 'static,
{
    let Ok(text) = std::str::from_utf8(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body is not UTF-8",
            false,
        );
    };
    // The library's JSON reader: repeated keys, deep nesting refused.
    let request: R = match crate::input::parse_json(text, "request body", |m| Error::Unknown {
        kind: "request",
        name: m,
    })
    .and_then(|v| {
        serde_json::from_value(v).map_err(|e| Error::Unknown {
            kind: "request",
            name: e.to_string(),
        })
    }) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.message(), false),
    };
    let worker = Arc::clone(&app);
    let result = tokio::task::spawn_blocking(move || {
        let snapshot = worker.handle.current();
        let principal = caller
            .principal(snapshot.policy())
            .map_err(|e| Box::new((e, true)))?;
        work(&worker, &snapshot, &principal, request).map_err(|e| Box::new((e, false)))
    })
    .await;
    match result {
        Ok(Ok(value)) => Json(value).into_response(),
        Ok(Err(failure)) => library_error(&failure.0, failure.1),
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error, query refused",
                true,
            )
        }
    }
}

async fn rewrite(State(app): State<Arc<App>>, req: Request) -> Response {
    serve_json(app, req, |app, snapshot, principal, r: RewriteRequest| {
        let opts = options(
            snapshot.policy(),
            &app.config,
            r.database,
            r.dialect.as_deref(),
            r.params,
            &r.options,
        )?;
        to_json(&app.handle.rewrite(snapshot, principal, &r.sql, &opts)?)
    })
    .await
}

async fn builder(State(app): State<Arc<App>>, req: Request) -> Response {
    serve_json(app, req, |app, snapshot, principal, r: BuilderRequest| {
        let opts = options(
            snapshot.policy(),
            &app.config,
            r.database,
            r.dialect.as_deref(),
            r.params,
            &r.options,
        )?;
        to_json(
            &snapshot
                .policy()
                .rewrite_builder(principal, &r.question, &opts)?,
        )
    })
    .await
}

async fn question(State(app): State<Arc<App>>, req: Request) -> Response {
    serve_json(app, req, |app, snapshot, principal, r: QuestionRequest| {
        let opts = options(
            snapshot.policy(),
            &app.config,
            r.database,
            r.dialect.as_deref(),
            r.params,
            &r.options,
        )?;
        let mut values = BTreeMap::new();
        for (k, v) in &r.variables {
            let value = AttributeValue::from_json(v).ok_or_else(|| Error::Unknown {
                kind: "variable",
                name: format!("{k} (a value must be a string, number, boolean or a list of them)"),
            })?;
            values.insert(k.clone(), value);
        }
        to_json(
            &snapshot
                .policy()
                .rewrite_question(principal, &r.name, &values, &opts)?,
        )
    })
    .await
}

async fn explain(State(app): State<Arc<App>>, req: Request) -> Response {
    serve_json(app, req, |_, snapshot, principal, r: ExplainRequest| {
        let policy: &Policy = snapshot.policy();
        let e = crate::explain::explain(policy, principal);
        let mut opts = Options::default();
        if let Some(d) = r.database {
            opts = opts.with_database(d);
        }
        let query = match (r.sql, r.builder) {
            (Some(_), Some(_)) => {
                return Err(Error::Unknown {
                    kind: "request",
                    name: "give `sql` or `builder`, not both".into(),
                })
            }
            (Some(s), None) => Some(policy.rewrite(principal, &s, &opts)),
            (None, Some(q)) => Some(policy.rewrite_builder(principal, &q, &opts)),
            (None, None) => None,
        };
        let q = match query {
            None => Value::Null,
            Some(Ok(out)) => json!({"rewritten": to_json(&out)?}),
            Some(Err(err)) => {
                json!({"refused": {"code": err.code(), "message": err.to_string()}})
            }
        };
        Ok(json!({"explanation": to_json(&e)?, "query": q}))
    })
    .await
}
