//! Loads the large benchmark policy (100,000 users, 10,000 tenants, 1,000
//! tables, 5,000 saved questions) and prints what the load costs beside
//! the floor: the YAML parser alone (saphyr-parser) reading every event of
//! the same text and keeping none. For reference, serde_yaml (the parser
//! the loader used before) reading it into an ignored value, and the load
//! again with the system allocator (glibc malloc) in place of mimalloc,
//! which the `sqlsandbox` binary and the Python wheel use.
//!
//! Each measurement runs in a process of its own (this program started
//! again with `--phase`), so that one phase's peak does not hide
//! another's. A phase reports
//! - CPU time (user + system, `getrusage`) of the phase alone: on a shared
//!   machine wall time measures the neighbours;
//! - the process's peak resident memory (`ru_maxrss`), which includes the
//!   generated YAML text and the allocator's own caching;
//! - the heap's peak during the phase and what stays held after it,
//!   counted by a wrapping allocator (requested sizes only, so allocator
//!   caching and fragmentation do not inflate them). The heap is counted
//!   in a run of its own: counting every allocation costs CPU time.
//!
//! Run: `cargo run --release --example large_policy_memory [-- RUNS]`
//! (3 runs by default).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

#[path = "../benches/large_policy.rs"]
mod large_policy;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Counting is on only in the phases that measure the heap: its atomic
/// updates on every allocation would otherwise be billed to the CPU time.
static COUNTING: AtomicBool = AtomicBool::new(false);

/// The allocator underneath: mimalloc, as the `sqlsandbox` binary and the
/// Python wheel use, or the system's (glibc malloc) when
/// `LARGE_POLICY_SYSTEM_ALLOC` is set, for the comparison. Decided at the
/// first allocation, which may come before `main` (getenv allocates
/// nothing), so that every block is freed by the allocator that gave it.
static SYSTEM: AtomicU8 = AtomicU8::new(0);
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn system() -> bool {
    match SYSTEM.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // SAFETY: the name is a NUL-terminated string; nothing sets
            // the environment concurrently.
            let on = !unsafe { libc::getenv(c"LARGE_POLICY_SYSTEM_ALLOC".as_ptr()) }.is_null();
            SYSTEM.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
    }
}

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe {
            if system() {
                System.alloc(layout)
            } else {
                MIMALLOC.alloc(layout)
            }
        };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe {
            if system() {
                System.dealloc(ptr, layout)
            } else {
                MIMALLOC.dealloc(ptr, layout)
            }
        };
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe {
            if system() {
                System.realloc(ptr, layout, new_size)
            } else {
                MIMALLOC.realloc(ptr, layout, new_size)
            }
        };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MB: f64 = 1e6;

/// (CPU seconds, user + system; peak resident set in bytes) so far.
fn usage() -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(u.ru_utime) + secs(u.ru_stime),
        u.ru_maxrss as f64 * 1024.0,
    )
}

/// The YAML parser alone: every event read, nothing kept. (Named
/// `measured_*` and not inlined, so that an instruction count can be
/// taken of it alone: `valgrind --tool=callgrind
/// --toggle-collect='*measured_*'` with `--phase floor` or `--phase load`.)
#[inline(never)]
fn measured_floor(src: &str) -> usize {
    let mut parser = saphyr_parser::Parser::new_from_str(src);
    let mut events = 0usize;
    while let Some(ev) = parser.next_event() {
        ev.expect("the YAML parses");
        events += 1;
    }
    events
}

/// The load: the policy read and compiled.
#[inline(never)]
fn measured_load(src: &str) -> sqlsandbox::Policy {
    sqlsandbox::Policy::from_yaml(src, "large.yaml").expect("large policy loads")
}

/// One phase, in this process; prints one `key=value` line.
fn phase(which: &str) {
    let src = large_policy::yaml(100_000, 10_000, 1_000, 5_000);
    let live_before = LIVE.load(Ordering::Relaxed);
    PEAK.store(live_before, Ordering::Relaxed);
    let (cpu_before, rss_before) = usage();
    // What the phase built, dropped only after its usage is read: a
    // service keeps its policy, and the drop is not part of loading it.
    let mut kept = None;
    let held = match which {
        "floor" => {
            std::hint::black_box(measured_floor(&src));
            0
        }
        "serde_yaml" => {
            // The parser the loader used before (unmaintained), into a
            // value that keeps nothing.
            let _: serde::de::IgnoredAny = serde_yaml::from_str(&src).expect("the YAML parses");
            0
        }
        "load" => {
            let policy = measured_load(&src);
            let held = LIVE.load(Ordering::Relaxed).saturating_sub(live_before);
            kept = Some(policy);
            held
        }
        other => panic!("unknown phase {other}"),
    };
    let (cpu_after, rss_after) = usage();
    if let Some(policy) = kept {
        assert_eq!(policy.user_names().len(), 100_000);
    }
    println!(
        "cpu={:.4} rss_peak={:.1} rss_before={:.1} heap_peak={:.1} held={:.1} text={:.2}",
        cpu_after - cpu_before,
        rss_after / MB,
        rss_before / MB,
        PEAK.load(Ordering::Relaxed).saturating_sub(live_before) as f64 / MB,
        held as f64 / MB,
        src.len() as f64 / MB,
    );
}

fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Runs a phase in a process of its own; with `heap`, one that counts
/// its allocations (and reports the heap, not the CPU).
fn run(which: &str, heap: bool) -> String {
    run_with(which, heap, false)
}

/// [`run`], with the system allocator when `system_alloc`.
fn run_with(which: &str, heap: bool, system_alloc: bool) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("own path"));
    cmd.args(["--phase", which]);
    if system_alloc {
        cmd.env(SYSTEM_ALLOC_ENV, "1");
    } else {
        cmd.env_remove(SYSTEM_ALLOC_ENV);
    }
    if heap {
        cmd.env(HEAP_ENV, "1");
    } else {
        cmd.env_remove(HEAP_ENV);
    }
    let out = cmd.output().expect("phase runs");
    assert!(
        out.status.success(),
        "{which}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

const HEAP_ENV: &str = "LARGE_POLICY_COUNT_HEAP";
const SYSTEM_ALLOC_ENV: &str = "LARGE_POLICY_SYSTEM_ALLOC";

fn main() {
    // Decided before anything is allocated (getenv allocates nothing), so
    // that every block a counting process frees was counted.
    // SAFETY: the name is a NUL-terminated string; nothing sets the
    // environment concurrently.
    let heap = !unsafe { libc::getenv(c"LARGE_POLICY_COUNT_HEAP".as_ptr()) }.is_null();
    COUNTING.store(heap, Ordering::Relaxed);
    let args: Vec<String> = std::env::args().collect();
    if let (Some("--phase"), Some(which)) = (
        args.get(1).map(String::as_str),
        args.get(2).map(String::as_str),
    ) {
        phase(which);
        return;
    }
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    println!(
        "large policy: 100,000 users, 10,000 tenants, 1,000 tables, 5,000 questions; \
         CPU is user + system of the phase; RSS is the process's peak (the text included)"
    );
    println!(
        "{:>3}  {:>8} {:>9} {:>10} {:>8}   {:>8} {:>9}   {:>10} {:>10}  {:>9}   {:>8} {:>9}  {:>9}",
        "run",
        "load s",
        "peak RSS",
        "peak heap",
        "held",
        "floor s",
        "floor RSS",
        "serde_yaml",
        "s_y RSS",
        "load/floor",
        "glibc s",
        "glibc RSS",
        "load/glibc"
    );
    for i in 1..=runs {
        let floor = run("floor", false);
        let old = run("serde_yaml", false);
        let load = run("load", false);
        let heap = run("load", true);
        let glibc = run_with("load", false, true);
        println!(
            "{i:>3}  {:>8.3} {:>6.0} MB {:>7.0} MB {:>5.0} MB   {:>8.3} {:>6.0} MB   {:>10.3} {:>7.0} MB  {:>8.2}x   {:>8.3} {:>6.0} MB  {:>8.2}x",
            field(&load, "cpu"),
            field(&load, "rss_peak"),
            field(&heap, "heap_peak"),
            field(&heap, "held"),
            field(&floor, "cpu"),
            field(&floor, "rss_peak"),
            field(&old, "cpu"),
            field(&old, "rss_peak"),
            field(&load, "cpu") / field(&floor, "cpu"),
            field(&glibc, "cpu"),
            field(&glibc, "rss_peak"),
            field(&load, "cpu") / field(&glibc, "cpu"),
        );
        if i == 1 {
            println!(
                "     (text {:.1} MB; RSS before the phase {:.0} MB)",
                field(&load, "text"),
                field(&load, "rss_before")
            );
        }
    }
}
