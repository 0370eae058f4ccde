//! Loads the large benchmark policy (100,000 users, 10,000 tenants, 1,000
//! tables, 5,000 saved questions) and prints the load time, against
//! serde_yaml's own parse of the same text, and the heap the compiled
//! policy holds (counted by a wrapping allocator, so allocator caching and
//! fragmentation do not inflate it).
//!
//! Run: `cargo run --release --example large_policy_memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[path = "../benches/large_policy.rs"]
mod large_policy;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let src = large_policy::yaml(100_000, 10_000, 1_000, 5_000);
    let t = Instant::now();
    let v: serde_yaml::Value = serde_yaml::from_str(&src).unwrap();
    let yaml_only = t.elapsed();
    drop(v);
    let before = LIVE.load(Ordering::Relaxed);
    let t = Instant::now();
    let policy = sqlsandbox::Policy::from_yaml(&src, "large.yaml").expect("large policy loads");
    let elapsed = t.elapsed();
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "large policy: {} users, 1,000 tables, 5,000 questions, {:.1} MB of YAML",
        policy.user_names().len(),
        src.len() as f64 / 1e6
    );
    println!(
        "load + compile: {:.3} s (serde_yaml parsing the same text alone: {:.3} s); compiled policy holds {:.1} MB of heap",
        elapsed.as_secs_f64(),
        yaml_only.as_secs_f64(),
        held as f64 / 1e6
    );
}
