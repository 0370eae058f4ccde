//! A bounded load generator for `sqlsandbox serve` on loopback: throughput
//! and latency (p50, p99) of `POST /v1/rewrite` for the 1 KB dashboard
//! query, with cache hits (viewers of one group, each with their own
//! tenant bound as a parameter), with cache misses (a new query text per
//! request), and with hits while the policy file is replaced every 100 ms
//! (good and broken edits alternating; a request that fails is counted).
//! The floor beside them is `GET /healthz` (HTTP, JSON and the token check
//! only) and the rewrite itself in-process.
//!
//! `cargo bench --bench serve_load` (or `-- --seconds 5 --clients 8`).
//! Every request is checked (status 200, SQL present); the run fails if
//! any request failed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sqlsandbox::serve::{Config, Server};
use sqlsandbox::{Options, Policy, Principal};

const SECRET: &str = "bench-only-hs256-secret-0123456789abcdef";
const DASHBOARD: &str = include_str!("corpus/dashboard_1kb.sql");

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The SaaS policy with `n` more customers (tenants 1000.., region eu/us).
fn policy_text(n: usize) -> String {
    let mut s =
        std::fs::read_to_string(manifest().join("policies/saas.yaml")).expect("policies/saas.yaml");
    // Users are appended under the policy's `users:` mapping, its last key.
    assert!(s.contains("\nusers:\n"), "saas.yaml ends with its users");
    if !s.ends_with('\n') {
        s.push('\n');
    }
    for i in 0..n {
        s.push_str(&format!(
            "  viewer{i}: {{groups: [customers], attributes: {{tenant: {}, region: {}}}}}\n",
            1000 + i,
            if i % 2 == 0 { "eu" } else { "us" }
        ));
    }
    s
}

fn token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = json!({"sub": sub, "aud": "bench", "iss": "bench", "exp": now + 3600});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).expect("key"),
    )
    .expect("token")
}

/// What one scenario measured.
struct Measured {
    name: &'static str,
    requests: usize,
    failed: u64,
    seconds: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Measured {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Healthz,
    Hit,
    Miss,
}

async fn scenario(
    name: &'static str,
    base: &str,
    kind: Kind,
    tokens: Arc<Vec<String>>,
    clients: usize,
    seconds: f64,
) -> Measured {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let failed = Arc::new(AtomicU64::new(0));
    let unique = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client.clone();
        let tokens = Arc::clone(&tokens);
        let failed = Arc::clone(&failed);
        let unique = Arc::clone(&unique);
        let base = base.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                let token = &tokens[i % tokens.len()];
                i += clients;
                let t0 = Instant::now();
                let ok = match kind {
                    Kind::Healthz => client
                        .get(format!("{base}/healthz"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success()),
                    Kind::Hit | Kind::Miss => {
                        let sql = if kind == Kind::Miss {
                            let n = unique.fetch_add(1, Ordering::Relaxed);
                            format!("{DASHBOARD}\n-- request {n}")
                        } else {
                            DASHBOARD.to_string()
                        };
                        match client
                            .post(format!("{base}/v1/rewrite"))
                            .bearer_auth(token)
                            .json(&json!({"sql": sql, "params": true}))
                            .send()
                            .await
                        {
                            Ok(r) if r.status().is_success() => r
                                .json::<Value>()
                                .await
                                .is_ok_and(|v| v.get("sql").is_some_and(Value::is_string)),
                            _ => false,
                        }
                    }
                };
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t0.elapsed().as_nanos() as u64);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    Measured {
        name,
        requests: all.len(),
        failed: failed.load(Ordering::Relaxed),
        seconds: elapsed,
        p50_us: percentile(&all, 0.50),
        p99_us: percentile(&all, 0.99),
    }
}

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` too: run briefly then.
    let quick = std::env::args().any(|a| a == "--test") || std::env::var_os("QUICK").is_some();
    let seconds = arg("--seconds", if quick { 0.3 } else { 5.0 });
    let clients = arg("--clients", 8.0) as usize;
    let viewers = 1000;

    let dir = std::env::temp_dir().join(format!("sqlsandbox-serve-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = policy_text(viewers);
    let policy_path = dir.join("policy.yaml");
    std::fs::write(&policy_path, &good).expect("policy");
    std::fs::write(dir.join("secret"), SECRET).expect("secret");

    // In-process floor: the same rewrite through the library (cache off).
    let policy = Policy::from_yaml(&good, "policy.yaml").expect("policy loads");
    let viewer = Principal::from_user(&policy, "viewer0").expect("viewer0");
    let opts = Options::default().with_params(true);
    let n = if quick { 50 } else { 2000 };
    let t0 = Instant::now();
    for _ in 0..n {
        std::hint::black_box(policy.rewrite(&viewer, DASHBOARD, &opts).expect("rewrite"));
    }
    let in_process_us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;

    let config = Config::from_toml(&format!(
        "policy = \"{}\"\nlisten = \"127.0.0.1:0\"\nwatch_interval_ms = 50\n[jwt]\nalgorithm = \"HS256\"\nsecret_file = \"{}\"\naudience = \"bench\"\nissuer = \"bench\"\n",
        policy_path.display(),
        dir.join("secret").display()
    ))
    .expect("config");
    // Server and clients share the machine: two server workers, the
    // clients on a runtime of their own.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("server runtime");
    let server = server_rt
        .block_on(Server::bind(config))
        .expect("server binds");
    let addr = server.local_addr().expect("address");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = server_rt.spawn(async move {
        server
            .reload_on_sighup(false)
            .run(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    let base = format!("http://{addr}");
    let tokens: Arc<Vec<String>> =
        Arc::new((0..viewers).map(|i| token(&format!("viewer{i}"))).collect());

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    let results = client_rt.block_on(async {
        // Warm the connection pool and the cache.
        let _ = scenario(
            "warm-up",
            &base,
            Kind::Hit,
            Arc::clone(&tokens),
            clients,
            0.2,
        )
        .await;
        let floor = scenario(
            "GET /healthz (floor)",
            &base,
            Kind::Healthz,
            Arc::clone(&tokens),
            clients,
            seconds,
        )
        .await;
        let hit = scenario(
            "rewrite, cache hit",
            &base,
            Kind::Hit,
            Arc::clone(&tokens),
            clients,
            seconds,
        )
        .await;
        let miss = scenario(
            "rewrite, cache miss",
            &base,
            Kind::Miss,
            Arc::clone(&tokens),
            clients,
            seconds,
        )
        .await;
        // Reload under load: replace the policy every 100 ms, alternately
        // with a broken edit and with a good one (one more viewer, so each
        // good edit is a new policy and a new version).
        let stop = Arc::new(AtomicBool::new(false));
        let editor = {
            let stop = Arc::clone(&stop);
            let dir = dir.clone();
            let path = policy_path.clone();
            std::thread::spawn(move || {
                let mut edits = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let text = if edits.is_multiple_of(2) {
                        format!("{}  broken: [\n", policy_text(viewers))
                    } else {
                        policy_text(viewers + edits as usize)
                    };
                    let tmp = dir.join(".policy.tmp");
                    std::fs::write(&tmp, text).expect("edit");
                    std::fs::rename(&tmp, &path).expect("rename");
                    edits += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                edits
            })
        };
        let reload = scenario(
            "rewrite, cache hit, reloading every 100 ms",
            &base,
            Kind::Hit,
            Arc::clone(&tokens),
            clients,
            seconds.max(2.0),
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        let edits = editor.join().expect("editor");
        let health: Value = reqwest::get(format!("{base}/healthz"))
            .await
            .expect("healthz")
            .json()
            .await
            .expect("healthz json");
        (floor, hit, miss, reload, edits, health)
    });
    let (floor, hit, miss, reload, edits, health) = results;
    let _ = stop_tx.send(());
    let _ = server_rt.block_on(served);
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "serve load: {clients} clients, {} s per scenario, policy with {viewers} extra viewers, 2 cores shared by server and clients",
        seconds
    );
    println!("| scenario | requests | failed | req/s | p50 ms | p99 ms | req/s vs floor |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for m in [&floor, &hit, &miss, &reload] {
        println!(
            "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.2}x |",
            m.name,
            m.requests,
            m.failed,
            m.rps(),
            m.p50_us / 1000.0,
            m.p99_us / 1000.0,
            m.rps() / floor.rps()
        );
    }
    let num = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let reloads = num(health.get("reloads"));
    let reload_failures = num(health.get("reload_failures"));
    println!(
        "in-process rewrite of the same query (library, no cache): {in_process_us:.1} µs; \
         policy edits during the reload scenario: {edits} (good and broken alternating); \
         /healthz after: policy version {}, {reloads} reloads, {reload_failures} refused edits",
        num(health.get("policy").and_then(|p| p.get("version")))
    );
    // The reload scenario measured reloads: good edits were swapped in and
    // broken ones refused while requests kept being served.
    if !quick {
        assert!(reloads > 0, "no reload happened during the reload scenario");
        assert!(reload_failures > 0, "no broken edit was seen");
    }
    let failed = floor.failed + hit.failed + miss.failed + reload.failed;
    assert_eq!(failed, 0, "{failed} requests failed");
}
