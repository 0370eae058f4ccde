//! SQL text + the bundled SaaS policy → rewrite for alice, in every
//! dialect. Must never panic; whatever is rewritten must pass the re-check
//! (printed, parsed again, every protected read inside its sandbox).
//!
//! Run: `cargo fuzz run rewrite fuzz/corpus/rewrite` (seed the corpus with
//! `fuzz/seed.sh`).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sqlsandbox::{Dialect, Options, Policy, Principal};

fn setup() -> &'static (Policy, Principal) {
    static S: OnceLock<(Policy, Principal)> = OnceLock::new();
    S.get_or_init(|| {
        let policy = Policy::from_yaml(include_str!("../../policies/saas.yaml"), "saas.yaml").unwrap();
        let alice = Principal::from_user(&policy, "alice").unwrap();
        (policy, alice)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let (policy, alice) = setup();
    for d in Dialect::ALL {
        let opts = Options::default().with_dialect(d);
        if let Ok(out) = policy.rewrite(alice, sql, &opts) {
            if let Err(e) = policy.recheck(alice, &out.sql, &opts) {
                panic!("re-check failed ({d}): {e}\ninput:  {sql}\noutput: {}", out.sql);
            }
        }
    }
});
