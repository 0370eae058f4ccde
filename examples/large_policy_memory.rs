//! Loads the large benchmark policy once and prints the load time and the
//! memory the compiled policy holds (resident set growth).
//!
//! Run: `cargo run --release --example large_policy_memory`

use std::time::Instant;

#[path = "../benches/large_policy.rs"]
mod large_policy;

fn rss_kb() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let src = large_policy::yaml(100_000, 10_000, 1_000, 5_000);
    let t = Instant::now();
    let v: serde_yaml::Value = serde_yaml::from_str(&src).unwrap();
    let yaml_only = t.elapsed();
    drop(v);
    println!(
        "YAML text: {} bytes; serde_yaml parse alone (the floor): {:.3} s",
        src.len(),
        yaml_only.as_secs_f64()
    );
    let before = rss_kb();
    let t = Instant::now();
    let policy = sqlsandbox::Policy::from_yaml(&src, "large.yaml").expect("large policy loads");
    let elapsed = t.elapsed();
    let after = rss_kb();
    drop(src);
    let after_src = rss_kb();
    println!(
        "large policy ({} users, 1000 tables, 5000 questions): loaded in {:.3} s; resident memory grew by {} MB during load, {} MB held after freeing the YAML text",
        policy.user_names().len(),
        elapsed.as_secs_f64(),
        (after.saturating_sub(before)) / 1024,
        (after_src.saturating_sub(before.min(after_src))) / 1024,
    );
}
