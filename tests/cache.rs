//! The rewrite cache (`sqlsandbox::RewriteCache`) never serves an answer
//! that a fresh rewrite would not give: for generated principals (the
//! bundled policies' users with their attribute values replaced by random
//! ones of random shapes, hostile text included) and a corpus of queries
//! per policy, with bind parameters and with literals, every answer of one
//! shared cache equals `Policy::rewrite`'s — SQL, parameters, sandboxes
//! applied, route and fingerprint, or the same refusal.

use proptest::prelude::*;
use sqlsandbox::{AttributeValue, Options, Policy, Principal, RewriteCache, Scalar};

fn policy(name: &str) -> Policy {
    // The masks example reads its hash key from the environment.
    std::env::set_var("SSN_HASH_KEY", "a-test-key-of-enough-length");
    Policy::from_path(format!(
        "{}/policies/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Per bundled policy: its queries (and the database when it has several).
fn corpus() -> Vec<(&'static str, Option<&'static str>, Vec<&'static str>)> {
    vec![
        (
            "saas",
            None,
            vec![
                "SELECT * FROM orders",
                "SELECT a.plan, sum(o.total) FROM accounts a JOIN orders o ON o.account_id = a.id GROUP BY a.plan",
                "SELECT count(*) FROM events WHERE kind = 'login'",
                "SELECT o.id FROM orders o WHERE o.total / (o.id - 5) > 1",
            ],
        ),
        (
            "rules",
            None,
            vec![
                "SELECT * FROM document",
                "SELECT d.did, c.cname FROM document d JOIN category c ON c.cid = d.cid",
                "SELECT count(*) FROM customers",
            ],
        ),
        (
            "routed",
            Some("router"),
            vec!["SELECT sum(amount) FROM invoices", "SELECT * FROM invoices WHERE id = 3"],
        ),
        (
            "masks",
            None,
            vec!["SELECT * FROM people", "SELECT count(*) FROM people GROUP BY email"],
        ),
        (
            "departments",
            None,
            vec![
                "SELECT * FROM employees",
                "SELECT e.name, sum(x.amount) FROM employees e JOIN expenses x ON x.employee_id = e.id GROUP BY e.name",
            ],
        ),
        (
            "marketplace",
            Some("shop"),
            vec!["SELECT * FROM sales", "SELECT s.id FROM sales s JOIN listings l ON l.id = s.listing_id"],
        ),
    ]
}

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        (0i64..6).prop_map(Scalar::Integer),
        prop::sample::select(vec![
            "eu",
            "us",
            "west",
            "east",
            "sales",
            "support",
            "acme",
            "globex",
            "rita",
            "it's",
            "a\\b",
            "'; DROP TABLE x; --",
            "42",
            "7",
            "__ROUTER__",
            "",
        ])
        .prop_map(|s| Scalar::Text(s.to_string())),
        Just(Scalar::Number("1.5".into())),
        any::<bool>().prop_map(Scalar::Bool),
    ]
}

fn value() -> impl Strategy<Value = AttributeValue> {
    prop_oneof![
        3 => scalar().prop_map(AttributeValue::Single),
        1 => prop::collection::vec(scalar(), 0..4).prop_map(AttributeValue::Many),
    ]
}

/// One call: which policy, user, replacement values, query, options.
#[derive(Debug, Clone)]
struct Call {
    policy: usize,
    user: usize,
    values: Vec<Option<AttributeValue>>,
    query: usize,
    params: bool,
}

fn call() -> impl Strategy<Value = Call> {
    (
        0usize..6,
        0usize..16,
        prop::collection::vec(prop::option::of(value()), 4),
        0usize..4,
        prop::bool::weighted(0.75),
    )
        .prop_map(|(policy, user, values, query, params)| Call {
            policy,
            user,
            values,
            query,
            params,
        })
}

fn compare(
    p: &Policy,
    cache: &RewriteCache,
    who: &Principal,
    sql: &str,
    opts: &Options,
) -> Result<(), TestCaseError> {
    let fresh = p.rewrite(who, sql, opts);
    let cached = cache.rewrite(p, who, sql, opts);
    match (fresh, cached) {
        (Ok(a), Ok(b)) => {
            let (a, b) = (
                serde_json::to_value(&a).unwrap(),
                serde_json::to_value(&b).unwrap(),
            );
            prop_assert_eq!(a, b, "{} for {:?}", sql, who);
        }
        (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
        (a, b) => prop_assert!(false, "fresh {:?}, cached {:?} for {:?}", a, b, who),
    }
    Ok(())
}

/// A policy with its database, queries and declared users.
type Loaded = (Policy, Option<&'static str>, Vec<&'static str>, Vec<String>);

#[test]
fn cached_answers_equal_fresh_rewrites() {
    let policies: Vec<Loaded> = corpus()
        .into_iter()
        .map(|(name, db, queries)| {
            let p = policy(name);
            let src = std::fs::read_to_string(format!(
                "{}/policies/{name}.yaml",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            let users = users(&src);
            (p, db, queries, users)
        })
        .collect();
    // One cache for every case, small enough that entries are evicted too.
    let cache = RewriteCache::new(256 * 1024);
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    runner
        .run(&prop::collection::vec(call(), 1..24), |calls| {
            for c in calls {
                let (p, db, queries, users) = &policies[c.policy];
                let Some(user) = users.get(c.user % users.len()) else {
                    continue;
                };
                let Ok(base) = Principal::from_user(p, user) else {
                    continue;
                };
                // The user's groups, with attribute values replaced.
                let mut attrs: Vec<(String, AttributeValue)> = base
                    .attributes()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (slot, v) in attrs.iter_mut().zip(&c.values) {
                    if let Some(v) = v {
                        slot.1 = v.clone();
                    }
                }
                let groups: Vec<&str> = base
                    .groups()
                    .iter()
                    .map(String::as_str)
                    .filter(|g| *g != "all_users")
                    .collect();
                let Ok(who) = Principal::new(p, user, groups, attrs) else {
                    continue;
                };
                let sql = queries[c.query % queries.len()];
                let mut opts = Options::default().with_params(c.params);
                if let Some(db) = db {
                    opts = opts.with_database(*db);
                }
                compare(p, &cache, &who, sql, &opts)?;
                // And the declared user as declared.
                compare(p, &cache, &base, sql, &opts)?;
            }
            Ok(())
        })
        .unwrap();
    let stats = cache.stats();
    assert!(
        stats.hits > 0,
        "nothing was ever served from the cache: {stats:?}"
    );
    assert!(stats.bytes <= 256 * 1024, "{stats:?}");
}

/// The declared users of a policy file (names under `users:`).
fn users(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in src.lines() {
        if line.starts_with("users:") {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
                break;
            }
            if let Some(name) = line
                .strip_prefix("  ")
                .filter(|l| !l.starts_with(' ') && !l.starts_with('#'))
                .and_then(|l| l.split(':').next())
            {
                if !name.trim().is_empty() {
                    out.push(name.trim().to_string());
                }
            }
        }
    }
    assert!(!out.is_empty(), "no users found");
    out
}

/// Two principals who differ only in their values share one entry, each
/// with its own values bound; equal values in two attributes do not merge
/// their placeholders (the SQL's text never depends on values).
#[test]
fn principals_differing_in_values_share_an_entry() {
    let p = policy("saas");
    let cache = RewriteCache::new(1 << 20);
    let who = |tenant: i64, region: &str| {
        Principal::new(
            &p,
            "viewer",
            ["customers"],
            [
                ("tenant", AttributeValue::from(tenant)),
                ("region", AttributeValue::from(region)),
            ],
        )
        .unwrap()
    };
    let sql = "SELECT count(*) FROM events e JOIN orders o ON o.tenant_id = e.tenant_id";
    let opts = Options::default().with_params(true);
    let a = cache.rewrite(&p, &who(42, "eu"), sql, &opts).unwrap();
    let b = cache.rewrite(&p, &who(7, "us"), sql, &opts).unwrap();
    assert_eq!(cache.stats().hits, 1, "{:?}", cache.stats());
    assert_eq!(a.sql, b.sql);
    assert_ne!(a.params, b.params);
    assert_ne!(a.fingerprint, b.fingerprint);
    assert_eq!(
        b.params,
        p.rewrite(&who(7, "us"), sql, &opts).unwrap().params
    );
    // A value that does not fit the column falls back to the rewrite's
    // own refusal.
    let bad = Principal::new(
        &p,
        "viewer",
        ["customers"],
        [
            ("tenant", AttributeValue::from("not a number")),
            ("region", AttributeValue::from("eu")),
        ],
    )
    .unwrap();
    assert_eq!(
        cache.rewrite(&p, &bad, sql, &opts).unwrap_err().to_string(),
        p.rewrite(&bad, sql, &opts).unwrap_err().to_string()
    );
    // With literals, values are part of the key: no sharing.
    let lit = Options::default();
    let _ = cache.rewrite(&p, &who(42, "eu"), sql, &lit).unwrap();
    let before = cache.stats().hits;
    let c = cache.rewrite(&p, &who(7, "us"), sql, &lit).unwrap();
    assert_eq!(cache.stats().hits, before);
    assert!(c.sql.contains("= 7"), "{}", c.sql);
    cache.clear();
    assert_eq!(cache.stats().entries, 0);
}
