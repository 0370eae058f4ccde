//! Crafted SQL handed to the verifier (`Policy::recheck`), from a red-team
//! review of `fence: auto`: unfenced sandboxes next to something unsafe in
//! every clause, fences swapped for look-alikes, conditions and top-N
//! "moved inside" that hide casts, subqueries, other tables' or outer
//! columns, placeholders, system columns. Fails when any is accepted.
//! (Some safe forms the verifier refuses too, conservatively; they print
//! as "control refused".)
use sqlsandbox::{Options, Policy, Principal};
use std::path::Path;

const S: &str = "(SELECT * FROM rt3.orders WHERE tenant_id = 1) AS orders";
const F: &str = "(SELECT * FROM rt3.orders WHERE tenant_id = 1 OFFSET 0) AS orders";

fn load(d: &str) -> (Policy, Principal) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = Policy::from_path(root.join(format!("tests/verifier_crafted/pol_{d}.yaml"))).unwrap();
    let u = Principal::from_user(&p, "u").unwrap();
    (p, u)
}

fn run(d: &str, cases: &[(&str, bool)]) -> Vec<String> {
    let (p, u) = load(d);
    let opts = Options::default();
    let mut bad = vec![];
    for (sql, must_accept) in cases {
        let sql = sql.replace("{S}", S).replace("{F}", F);
        let r = p.recheck(&u, &sql, &opts);
        eprintln!(
            "[{d}] {} {sql}\n      {:?}",
            if r.is_ok() { "ACCEPT" } else { "refuse" },
            r.as_ref().err().map(|e| e.to_string())
        );
        if r.is_ok() != *must_accept && !must_accept {
            bad.push(format!("[{d}] accepted: {sql}"));
        }
        if r.is_ok() != *must_accept && *must_accept {
            eprintln!("      (control refused)");
        }
    }
    bad
}

#[test]
fn verifier_refuses_crafted_sql() {
    let pg: &[(&str, bool)] = &[
        // controls
        ("SELECT * FROM {S} WHERE id = 5", true),
        ("SELECT * FROM {F} WHERE n::int = 1", true),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (orders.id = 5) OFFSET 0) AS orders WHERE id = 5", true),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (orders.id > 5) ORDER BY orders.id DESC LIMIT 3) AS orders ORDER BY id DESC LIMIT 3", true),
        // unfenced + unsafe
        ("SELECT * FROM {S} WHERE n::int = 1", false),
        ("SELECT * FROM {S} JOIN rt3.products p ON p.id = orders.product_id AND orders.status::int = 1", false),
        ("SELECT * FROM {S} WHERE EXISTS (SELECT 1 FROM rt3.products p WHERE p.id = orders.product_id AND p.name::int = orders.n)", false),
        ("SELECT * FROM (SELECT abs(n) AS a FROM {S}) x WHERE a = 1", false),
        ("SELECT * FROM (SELECT n, count(*) FROM {S} GROUP BY n HAVING n::int = 1) x", false),
        ("SELECT status FROM {S} GROUP BY status HAVING status::int = 1", false),
        ("WITH c AS (SELECT abs(n) AS a FROM {S}) SELECT * FROM c WHERE a = 1", false),
        ("SELECT * FROM {S} WHERE id IN (SELECT abs(n) FROM {S})", false),
        ("SELECT * FROM {S} WHERE status = (SELECT name FROM rt3.products)", false),
        ("SELECT * FROM rt3.products p WHERE 0 < (SELECT max(abs(o.n)) FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1) o WHERE o.product_id = p.id)", false),
        ("SELECT * FROM {S} WHERE id = 1 OR n::int = 1", false),
        ("SELECT * FROM {S} WHERE NOT (n::int = 1)", false),
        ("SELECT * FROM {S} WHERE CASE WHEN id = 1 THEN n::int = 1 END", false),
        ("SELECT * FROM {S} WHERE status LIKE 'a\\'", false),
        ("SELECT * FROM {S} WHERE id = '1x'", false),
        // fence replaced
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 LIMIT 100) AS orders WHERE n::int = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 LIMIT ALL) AS orders WHERE n::int = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 LIMIT NULL) AS orders WHERE n::int = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 FETCH FIRST 100 ROWS ONLY) AS orders WHERE n::int = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 OFFSET 1) AS orders WHERE n::int = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 OFFSET 0 ROWS) AS orders WHERE n::int = 1", true),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 OFFSET 0 LIMIT 1) AS orders WHERE n::int = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 LIMIT 1 OFFSET 0) AS orders WHERE n::int = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 OFFSET (0)) AS orders WHERE n::int = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 OFFSET '0') AS orders WHERE n::int = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 OFFSET 00) AS orders WHERE n::int = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY id OFFSET 0) AS orders WHERE n::int = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 FOR UPDATE OFFSET 0) AS orders", false),
        // fenced with extra conditions hiding something
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (n::int = 1) OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (abs(n) = 1) OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (id IN (SELECT id FROM rt3.products)) OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (EXISTS (SELECT 1 FROM rt3.orders x WHERE x.n::int = 1)) OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 AND id = 1 OR tenant_id = 2 OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) OR (id = 1) OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1 OR id = 1) OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (id = 1) AND (tenant_id = 1) OFFSET 0) AS orders", true),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (NOT (tenant_id = 1 AND id = 1)) OFFSET 0) AS orders", true),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (id = 1) AND (n::int = 1) OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND ((id = 1) AND (status = 1)) OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (status = 'x' OR n::int = 1) OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (NOT n::int = 1) OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (id = 1) OFFSET 0) AS orders(a, b)", false),
        ("SELECT * FROM rt3.products p WHERE EXISTS (SELECT 1 FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (orders.product_id = p.id) OFFSET 0) AS o)", false),
        ("SELECT * FROM rt3.products p WHERE EXISTS (SELECT 1 FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (status = name) OFFSET 0) AS o)", false),
        ("SELECT * FROM rt3.products p WHERE EXISTS (SELECT 1 FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (p.id = 1) OFFSET 0) AS o)", false),
        ("SELECT * FROM rt3.products p, LATERAL (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (product_id = p.id) OFFSET 0) AS o", false),
        ("SELECT * FROM rt3.products p WHERE EXISTS (SELECT 1 FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (status = $1) OFFSET 0) AS o)", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (orders.tenant_id = 2 OR TRUE) OFFSET 0) AS orders", true),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (rt3.orders.id = 1) OFFSET 0) AS orders", true),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (public.orders.id = 1) OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (xmin = '1') OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (orders = orders) OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND ((SELECT 1) = 1) OFFSET 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (lower(status) = 'a') OFFSET 0) AS orders", true),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (lower(status) = 'a' COLLATE \"C\") OFFSET 0) AS orders", false),
        // top-N
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY abs(n) LIMIT 3) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY n::int LIMIT 3) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY id LIMIT 3 OFFSET 2) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY id LIMIT (SELECT 3)) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY id LIMIT 3 + 0) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY id LIMIT $1) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY id LIMIT -1) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY id FETCH FIRST 3 ROWS WITH TIES) AS orders WHERE n::int = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY (SELECT 1) LIMIT 3) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY status COLLATE \"C\" LIMIT 3) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY id USING < LIMIT 3) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY 1 LIMIT 3) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY id LIMIT 3) AS orders WHERE n::int = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (n::int = 1) ORDER BY id LIMIT 3) AS orders", false),
    ];
    let my: &[(&str, bool)] = &[
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 LIMIT 18446744073709551615) AS orders WHERE status = 1", true),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1) AS orders WHERE status = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 LIMIT 18446744073709551614) AS orders WHERE status = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 LIMIT 0, 18446744073709551615) AS orders WHERE status = 1", true),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 LIMIT 1, 18446744073709551615) AS orders WHERE status = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 LIMIT 18446744073709551615 OFFSET 1) AS orders WHERE status = 1", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (status = 1) LIMIT 18446744073709551615) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (status = ?) LIMIT 18446744073709551615) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (status = 'a' COLLATE utf8mb4_bin) LIMIT 18446744073709551615) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (status = _latin1'a') LIMIT 18446744073709551615) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (status = x'61') LIMIT 18446744073709551615) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (id = 1e400) LIMIT 18446744073709551615) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (id = 0x10) LIMIT 18446744073709551615) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE (tenant_id = 1) AND (status = \"a\") LIMIT 18446744073709551615) AS orders", false),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY id LIMIT 3) AS orders", true),
        ("SELECT * FROM (SELECT * FROM rt3.orders WHERE tenant_id = 1 ORDER BY id LIMIT 2, 3) AS orders", false),
    ];
    let lite: &[(&str, bool)] = &[
        ("SELECT * FROM (SELECT * FROM main.orders WHERE tenant_id = 1 LIMIT -1) AS orders WHERE abs(n) = 1", true),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE tenant_id = 1) AS orders WHERE abs(n) = 1", false),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE tenant_id = 1 LIMIT -2) AS orders WHERE abs(n) = 1", false),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE tenant_id = 1 LIMIT -1 OFFSET 1) AS orders WHERE abs(n) = 1", false),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE tenant_id = 1 LIMIT 1, -1) AS orders WHERE abs(n) = 1", false),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE tenant_id = 1 LIMIT 9223372036854775807) AS orders WHERE abs(n) = 1", false),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE tenant_id = 1 LIMIT -1.5) AS orders WHERE abs(n) = 1", false),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE tenant_id = 1 LIMIT '-1') AS orders WHERE abs(n) = 1", false),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE (tenant_id = 1) AND (abs(n) = 1) LIMIT -1) AS orders", false),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE (tenant_id = 1) AND (status = ?) LIMIT -1) AS orders", false),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE (tenant_id = 1) AND (status LIKE 'aaaaa' ESCAPE 'ab') LIMIT -1) AS orders", false),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE (tenant_id = 1) AND (status GLOB 'a*') LIMIT -1) AS orders", false),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE (tenant_id = 1) AND (status MATCH 'a') LIMIT -1) AS orders", false),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE (tenant_id = 1) AND (orders.rowid = 1) LIMIT -1) AS orders", false),
        ("SELECT * FROM (SELECT * FROM main.orders WHERE (tenant_id = 1) AND (status = 'a' COLLATE nocase) LIMIT -1) AS orders", false),
        ("SELECT * FROM (SELECT * FROM main.orders INDEXED BY sca WHERE tenant_id = 1 LIMIT -1) AS orders", false),
    ];
    let mut bad = run("postgres", pg);
    bad.extend(run("mysql", my));
    bad.extend(run("sqlite", lite));
    assert!(
        bad.is_empty(),
        "verifier accepted unsafe SQL:\n{}",
        bad.join("\n")
    );
}
