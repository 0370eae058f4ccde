//! Generated policy + SQL text → rewrite for the policy's user: the first
//! bytes choose the policy (tables with multibyte, quoted and reserved
//! names; basic, union and custom sandboxes with hidden columns, CTEs and
//! joins; no-access tables; hostile attribute values), the rest is the
//! query. Must never panic; whatever is rewritten must parse again, pass
//! the re-check, and read protected tables only inside the sandboxes the
//! policy defines (see `tests/policy_gen/mod.rs`, shared with the property
//! tests, and `fuzz_one` there for the input format).
//!
//! Run: `cargo fuzz run policy fuzz/corpus/policy`. The seeds are replayed
//! by `cargo test --test policy_props`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/policy_gen/mod.rs"]
mod policy_gen;

fuzz_target!(|data: &[u8]| {
    policy_gen::fuzz_one(data);
});
