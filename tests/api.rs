//! Library-level properties: fingerprints, thread safety, parameter order.

use sqlparser::tokenizer::{Token, Tokenizer};
use sqlsandbox::{AttributeValue, Dialect, Options, Policy, Principal, Scalar};

fn saas() -> Policy {
    Policy::from_path(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/saas.yaml")).unwrap()
}

#[test]
fn fingerprint_separates_principals_and_is_stable() {
    let p = saas();
    let alice = Principal::from_user(&p, "alice").unwrap();
    let bob = Principal::from_user(&p, "bob").unwrap();
    let carol = Principal::from_user(&p, "carol").unwrap();
    let q = "SELECT * FROM orders";
    let o = Options::default();
    let fa = p.rewrite(&alice, q, &o).unwrap().fingerprint;
    assert_eq!(fa, p.rewrite(&alice, q, &o).unwrap().fingerprint);
    assert_ne!(fa, p.rewrite(&bob, q, &o).unwrap().fingerprint);
    assert_ne!(fa, p.rewrite(&carol, q, &o).unwrap().fingerprint);
    // With bind parameters the SQL text is the same for alice and bob, so
    // the fingerprint is what keeps their cached results apart.
    let po = Options::default().with_params(true);
    let (ra, rb) = (
        p.rewrite(&alice, q, &po).unwrap(),
        p.rewrite(&bob, q, &po).unwrap(),
    );
    assert_eq!(ra.sql, rb.sql);
    assert_ne!(ra.fingerprint, rb.fingerprint);
}

/// The fingerprint includes the policy's version: the same principal and
/// sandboxes under an edited policy (any edit, here a comment: the digest
/// cannot tell a harmless edit from a changed sandbox body, whose name and
/// bound values stay the same) get another fingerprint, so results cached
/// under the old policy are never served; loading the same text again
/// gives the same one.
#[test]
fn fingerprint_changes_with_the_policy() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/saas.yaml"))
        .unwrap();
    let q = "SELECT * FROM orders";
    let o = Options::default();
    let fp = |src: &str| {
        let p = Policy::from_yaml(src, "saas.yaml").unwrap();
        let alice = Principal::from_user(&p, "alice").unwrap();
        (
            p.digest().to_string(),
            p.rewrite(&alice, q, &o).unwrap().fingerprint,
        )
    };
    let (d1, f1) = fp(&src);
    assert_eq!((d1.clone(), f1.clone()), fp(&src));
    assert_eq!(d1.len(), 64);
    let edited = src.replacen("# ", "#  ", 1);
    assert_ne!(edited, src);
    let (d2, f2) = fp(&edited);
    assert_ne!(d1, d2);
    assert_ne!(f1, f2);
}

#[test]
fn one_policy_many_threads() {
    let p = std::sync::Arc::new(saas());
    let handles: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|u| {
            let p = p.clone();
            std::thread::spawn(move || {
                let who = Principal::from_user(&p, u).unwrap();
                let mut last = String::new();
                for _ in 0..200 {
                    last = p
                        .rewrite(&who, "SELECT count(*) FROM orders", &Options::default())
                        .unwrap()
                        .sql;
                }
                last
            })
        })
        .collect();
    let out: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(out[0].contains("tenant_id = 42") && out[1].contains("tenant_id = 7"));
}

/// `?` parameters are positional: their order in the text must match the
/// order of `params`, even when a sandbox question binds values in several
/// clauses.
#[test]
fn question_mark_params_follow_print_order() {
    let src = r#"
version: 1
databases:
  db:
    dialect: sqlite
    default_schema: main
    tables:
      t: {columns: {id: integer, a: text, b: text, c: integer}}
questions:
  q:
    database: db
    sql: >-
      WITH w AS (SELECT id FROM t WHERE c = {{c}})
      SELECT id, CASE WHEN a = {{a}} THEN a END AS a, b FROM t
      WHERE id IN (SELECT id FROM w) AND b = {{b}}
      GROUP BY id, a, b HAVING count(*) > {{c}}
groups:
  g:
    data: {db: {main: {t: {sandbox: {question: q, parameters: {a: a, b: b, c: {attribute: c, type: integer}}}}}}}
    native: {db: true}
"#;
    let p = Policy::from_yaml(src, "inline.yaml").unwrap();
    let who = Principal::new(
        &p,
        "x",
        ["g"],
        [
            ("a", AttributeValue::text("A")),
            ("b", AttributeValue::text("B")),
            ("c", AttributeValue::Single(Scalar::Integer(3))),
        ],
    )
    .unwrap();
    let lit = p
        .rewrite(&who, "SELECT * FROM t", &Options::default())
        .unwrap();
    let par = p
        .rewrite(
            &who,
            "SELECT * FROM t",
            &Options::default().with_params(true),
        )
        .unwrap();
    // Literal tokens of the inline version, in text order, must equal the
    // parameter values in order.
    let dialect = Dialect::Sqlite.parser();
    let literals: Vec<String> = Tokenizer::new(dialect, &lit.sql)
        .tokenize()
        .unwrap()
        .into_iter()
        .filter_map(|t| match t {
            Token::SingleQuotedString(s) => Some(s),
            Token::Number(n, _) if n != "0" && n != "1" => Some(n), // 0 and 1: fences
            _ => None,
        })
        .collect();
    let params: Vec<String> = par
        .params
        .iter()
        .map(|b| match &b.value {
            Scalar::Text(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    assert_eq!(literals, params, "\n{}\n{}", lit.sql, par.sql);
    assert_eq!(par.sql.matches('?').count(), par.params.len());
}

#[test]
fn execute_and_prepare_are_refused() {
    let p = saas();
    let alice = Principal::from_user(&p, "alice").unwrap();
    for q in [
        "EXECUTE stmt",
        "PREPARE s AS SELECT * FROM orders",
        "DEALLOCATE s",
        "LISTEN x",
        "VACUUM orders",
        "GRANT SELECT ON orders TO public",
    ] {
        let e = p.rewrite(&alice, q, &Options::default()).unwrap_err();
        assert!(matches!(e.code(), "SB401" | "SB101"), "{q}: {e}");
    }
}

#[test]
fn limits_are_enforced_without_panics() {
    let p = saas();
    let alice = Principal::from_user(&p, "alice").unwrap();
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    assert!(p.rewrite(&alice, &deep, &Options::default()).is_err());
    let nested = format!(
        "SELECT * FROM {}orders{}",
        "(SELECT * FROM ".repeat(300),
        ") AS x".repeat(300)
    );
    assert!(p.rewrite(&alice, &nested, &Options::default()).is_err());
    let big = format!(
        "SELECT * FROM orders WHERE id IN ({})",
        vec!["1"; 600_000].join(",")
    );
    match p.rewrite(&alice, &big, &Options::default()) {
        Err(e) => assert_eq!(e.code(), "SB404"),
        Ok(_) => panic!("a 1.2 MB query passed the default 1 MiB limit"),
    }
    let o = Options::default().with_max_sql_bytes(10 << 20);
    assert!(p.rewrite(&alice, &big, &o).is_ok());
}

#[test]
fn recheck_catches_unsandboxed_sql() {
    let p = saas();
    let alice = Principal::from_user(&p, "alice").unwrap();
    let o = Options::default();
    for bad in [
        "SELECT * FROM orders",
        "SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 7 OFFSET 0) AS orders",
        // Unfenced, with a condition that can fail on filtered-out rows.
        "SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS orders WHERE 1 / (total - total) = 0",
        "SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS orders WHERE id IN (SELECT 1 / (total - total) FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS o)",
        // Fenced, but a condition moved inside is not row-safe, names
        // another table, or replaces the sandbox's own filter.
        "SELECT * FROM (SELECT * FROM public.orders WHERE (tenant_id = 42) AND (orders.id = 1 / 0) OFFSET 0) AS orders",
        "SELECT * FROM (SELECT * FROM public.orders WHERE (tenant_id = 42) AND (accounts.id = 1) OFFSET 0) AS orders",
        "SELECT * FROM (SELECT * FROM public.orders WHERE (tenant_id = 42 OR 1 = 1) AND (orders.id = 1) OFFSET 0) AS orders",
        "SELECT * FROM (SELECT * FROM public.orders WHERE (orders.id = 1) AND (tenant_id = 42) OFFSET 0) AS orders",
        // A top-N inside must order by plain columns and take a literal count.
        "SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 42 ORDER BY orders.total / 0 LIMIT 10) AS orders",
        "SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 42 ORDER BY accounts.id LIMIT 10) AS orders",
        "SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 42 ORDER BY orders.id LIMIT (SELECT count(*) FROM public.orders)) AS orders",
        "SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 42 ORDER BY orders.id) AS orders WHERE 1 / total > 0",
        "WITH x AS (SELECT * FROM public.events) SELECT * FROM x",
    ] {
        let e = p.recheck(&alice, bad, &o).unwrap_err();
        assert_eq!(e.code(), "SB901", "{bad}: {e}");
    }
    for good in [
        "SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS orders WHERE id = 5",
        "SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 42 OFFSET 0) AS orders WHERE 1 / (total - total) = 0",
        "SELECT * FROM (SELECT * FROM public.orders WHERE (tenant_id = 42) AND (orders.id = 5) OFFSET 0) AS orders WHERE id = 5 AND 1 / total > 0",
        "SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 42 ORDER BY orders.id DESC LIMIT 10) AS orders WHERE 1 / total > 0",
        "SELECT * FROM (SELECT * FROM public.orders WHERE (tenant_id = 42) AND (orders.status = 'paid') ORDER BY orders.id LIMIT 3) AS orders WHERE 1 / total > 0",
    ] {
        p.recheck(&alice, good, &o)
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    // With `fence: never`, unfenced sandboxes pass whatever the query holds.
    let never = Options::default().with_fence(sqlsandbox::FenceMode::Never);
    p.recheck(
        &alice,
        "SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS orders WHERE 1 / (total - total) = 0",
        &never,
    )
    .unwrap();
    let good = p
        .rewrite(&alice, "SELECT * FROM orders JOIN accounts USING (id)", &o)
        .unwrap();
    p.recheck(&alice, &good.sql, &o).unwrap();
}

#[test]
fn builder_input_past_the_limits_is_refused_before_parsing() {
    use sqlsandbox::builder::{parse_question, parse_question_yaml};
    let limit = |r: sqlsandbox::Result<serde_json::Value>| match r {
        Err(sqlsandbox::Error::Limit(m)) => m,
        other => panic!("expected a limit error, got {other:?}"),
    };
    // 400 KB of nesting: past serde_json's own depth limit, where the YAML
    // parser used to take over (and over a minute).
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    assert!(limit(parse_question(&deep)).contains("nests deeper"));
    assert!(limit(parse_question_yaml(&deep)).contains("nests deeper"));
    let unclosed = "{\"query\": ".to_string() + &"[".repeat(400_000);
    assert!(limit(parse_question_yaml(&unclosed)).contains("nests deeper"));
    let huge = format!(
        "{{\"query\": {{\"source-table\": \"orders\", \"fields\": [{}]}}}}",
        vec!["[\"field\", \"id\"]"; 100_000].join(",")
    );
    assert!(limit(parse_question(&huge)).contains("bytes"));
    assert!(limit(parse_question_yaml(&huge)).contains("bytes"));
    // JSON input is JSON: YAML is not tried on it.
    match parse_question("query: {source-table: orders}") {
        Err(e) => assert_eq!(e.code(), "SB104"),
        Ok(v) => panic!("YAML read as a JSON question: {v}"),
    }
}

#[test]
fn repeated_keys_are_refused_in_json_inputs() {
    let p = saas();
    let e = Principal::from_claims_json(
        &p,
        r#"{"sub": "x", "groups": ["customers"], "attributes": {"tenant": 1, "region": "eu", "tenant": 2}}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("duplicate key `tenant`"), "{e}");
    let ok = Principal::from_claims_json(
        &p,
        "\u{FEFF}{\"sub\": \"x\", \"groups\": [\"customers\"], \"attributes\": {\"tenant\": 2, \"region\": \"eu\"}}",
    );
    assert!(ok.is_ok(), "{ok:?}");
    let e = sqlsandbox::builder::parse_question(
        r#"{"query": {"source-table": "orders", "limit": 1, "limit": 1000}}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("duplicate key `limit`"), "{e}");
    let e = sqlsandbox::builder::parse_question_yaml("query: {source-table: orders}\nquery: {}")
        .unwrap_err();
    assert_eq!(e.code(), "SB104");
}

/// `recheck` proves write statements only in the shape the rewrite makes:
/// crafted ones that read or change other tables, skip the checks or hide
/// clauses are refused (red-team findings), and what the rewrite prints
/// passes.
#[test]
fn recheck_refuses_crafted_writes() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/rules.yaml"))
        .unwrap();
    let p = Policy::from_yaml(&src, "rules.yaml").unwrap();
    let alan = Principal::from_user(&p, "alan").unwrap();
    let o = Options::default();
    let guard = "((dauthor) = 'alan' AND (dlevel) <= 1) AND ((cid) IS NULL OR (cid) <> 44)";
    for bad in [
        // A CTE named like MySQL's DUAL copying a table alan may not read.
        format!("INSERT INTO public.document (did, dauthor, dlevel, cid, dtitle) WITH dual AS (SELECT id AS did, 'alan' AS dauthor, 1 AS dlevel, 11 AS cid, email AS dtitle FROM public.customers) SELECT did, dauthor, dlevel, cid, dtitle FROM dual WHERE {guard}"),
        format!("INSERT INTO public.document (did, dauthor, dlevel, cid) SELECT 1, 'alan', 1, 11 WHERE {guard} HAVING (SELECT count(*) FROM public.customers) > 0"),
        format!("INSERT INTO public.document (did, dauthor, dlevel, cid) SELECT 1, 'alan', 1, 11 FROM public.customers WHERE {guard}"),
        "INSERT INTO public.document (did, dauthor, dlevel, cid) SELECT 1, 'alan', 1, 44".to_string(),
        "UPDATE public.document SET cid = 11, cid = 44 WHERE (dauthor = 'alan') AND (cid IS NULL OR cid <> 44) AND (dauthor = 'alan' AND status <> 'public') AND ((CAST((11) AS BIGINT)) IS NULL OR (CAST((11) AS BIGINT)) <> 44)".to_string(),
        "UPDATE public.document SET nosuchcol = 44".to_string(),
        "DELETE FROM public.document".to_string(),
        "DELETE FROM public.document WHERE did = 1 RETURNING *".to_string(),
        "UPDATE public.customers SET email = 'x'".to_string(),
    ] {
        assert!(p.recheck(&alan, &bad, &o).is_err(), "recheck accepts {bad}");
    }
    for good in [
        "INSERT INTO document (did, dauthor, dlevel, cid) VALUES (9, 'alan', 1, 11)",
        "UPDATE document SET status = 'draft' WHERE did = 1",
        "UPDATE document SET dtitle = 'x'",
        "DELETE FROM document WHERE did = 1",
    ] {
        let out = p.rewrite(&alan, good, &o).unwrap();
        p.recheck(&alan, &out.sql, &o)
            .unwrap_or_else(|e| panic!("recheck refuses the rewrite of {good}: {e}\n{}", out.sql));
    }
}

/// A schema destination: the rewrite names the destination's schema; the
/// recheck proves it as the router's SQL and refuses SQL that reads the
/// router's own schema or another tenant's.
#[test]
fn schema_destination_rewrites_and_rechecks() {
    let p = Policy::from_yaml(
        r#"
version: 1
databases:
  router:
    dialect: postgres
    tables: {public.invoices: {columns: {id: integer, region: text}}}
    routing:
      attribute: tenant
      destinations: {acme: {schema: tenant_acme}, globex: {schema: tenant_globex}}
groups:
  customers:
    data: {router: {public: {invoices: {sandbox: {column: region, attribute: region}}}}}
    native: {router: true}
"#,
        "routed.yaml",
    )
    .unwrap();
    let acme = Principal::new(
        &p,
        "ann",
        ["customers"],
        [
            (
                "tenant",
                AttributeValue::Single(Scalar::Text("acme".into())),
            ),
            (
                "region",
                AttributeValue::Single(Scalar::Text("west".into())),
            ),
        ],
    )
    .unwrap();
    let o = Options::default();
    let out = p
        .rewrite(&acme, "SELECT count(*) FROM invoices", &o)
        .unwrap();
    assert!(out.sql.contains("tenant_acme.invoices"), "{}", out.sql);
    assert!(!out.sql.contains("public."), "{}", out.sql);
    p.recheck(&acme, &out.sql, &o).unwrap();
    for bad in [
        out.sql.replace("tenant_acme", "public"),
        format!("{} UNION ALL SELECT count(*) FROM public.invoices", out.sql),
        // Unqualified, it would resolve in the router's schema.
        out.sql.replace("tenant_acme.invoices", "invoices"),
        format!("{} UNION ALL SELECT count(*) FROM invoices", out.sql),
    ] {
        assert!(p.recheck(&acme, &bad, &o).is_err(), "recheck accepts {bad}");
    }
    // Another tenant's schema is not a table the policy declares.
    let other = out.sql.replace("tenant_acme", "tenant_globex");
    assert!(
        p.recheck(&acme, &other, &o).is_err(),
        "recheck accepts {other}"
    );
}

/// A catalog destination (three-part names, generic dialect): the rewrite
/// puts the catalog in front of every table; the recheck proves it as the
/// router's SQL and refuses two-part names (the router's tables), another
/// catalog, and unqualified names that are not CTEs.
#[test]
fn catalog_destination_rewrites_and_rechecks() {
    let p = Policy::from_yaml(
        r#"
version: 1
databases:
  router:
    dialect: generic
    tables: {public.invoices: {columns: {id: integer, region: text}}}
    routing:
      attribute: tenant
      destinations: {acme: {catalog: acme_lake}, globex: {catalog: globex_lake, schema: sales}}
groups:
  customers:
    data: {router: {public: {invoices: {sandbox: {column: region, attribute: region}}}}}
    native: {router: true}
"#,
        "routed.yaml",
    )
    .unwrap();
    let who = |tenant: &str| {
        Principal::new(
            &p,
            "ann",
            ["customers"],
            [
                ("tenant", AttributeValue::from(tenant)),
                ("region", AttributeValue::from("west")),
            ],
        )
        .unwrap()
    };
    let (acme, globex) = (who("acme"), who("globex"));
    let o = Options::default();
    let q = "WITH w AS (SELECT id FROM invoices) SELECT count(*) FROM w";
    let out = p.rewrite(&acme, q, &o).unwrap();
    assert!(out.sql.contains("acme_lake.public.invoices"), "{}", out.sql);
    p.recheck(&acme, &out.sql, &o).unwrap();
    for bad in [
        out.sql
            .replace("acme_lake.public.invoices", "public.invoices"),
        out.sql.replace("acme_lake.public.invoices", "invoices"),
        out.sql.replace("acme_lake", "globex_lake"),
        format!("{} UNION ALL SELECT count(*) FROM public.invoices", out.sql),
    ] {
        assert!(p.recheck(&acme, &bad, &o).is_err(), "recheck accepts {bad}");
    }
    let out = p.rewrite(&globex, q, &o).unwrap();
    assert!(
        out.sql.contains("globex_lake.sales.invoices"),
        "{}",
        out.sql
    );
    p.recheck(&globex, &out.sql, &o).unwrap();
    let other = out.sql.replace("globex_lake.sales", "globex_lake.public");
    assert!(
        p.recheck(&globex, &other, &o).is_err(),
        "recheck accepts {other}"
    );
}

/// During a rotation an API key has two hashes, and each secret
/// authenticates as the key, with the key's group and attributes; no
/// other secret does, and a hash shared with another key is refused.
#[test]
fn api_key_with_two_hashes() {
    use sqlsandbox::apikey::sha256_hex;
    let (old, new) = (
        "an-old-secret-of-at-least-32-chars",
        "a-new-secret-of-at-least-32-chars!",
    );
    let policy_yaml = |previous: &str| {
        format!(
            "version: 1\ngroups: {{reporting: {{}}, ops: {{}}}}\napi_keys:\n  ci:\n    group: reporting\n    sha256: {}\n    previous_sha256: {previous}\n    attributes: {{tenant: 7}}\n",
            sha256_hex(new)
        )
    };
    let policy = Policy::from_yaml(&policy_yaml(&sha256_hex(old)), "p.yaml").expect("policy");
    for secret in [old, new] {
        let p = Principal::from_api_key(&policy, secret).expect("authenticates");
        assert_eq!(p.name(), "api-key:ci");
        assert_eq!(p.groups(), ["reporting".to_string()]);
        assert_eq!(
            p.attribute("tenant").map(|v| v.to_string()).as_deref(),
            Some("7")
        );
    }
    let e = Principal::from_api_key(&policy, "a-third-secret-nobody-was-given-xx").unwrap_err();
    assert_eq!(e.code(), "SB102");
    let key = policy.api_key("ci").expect("key");
    assert!(key.rotating());
    assert!(key.accepts(&sha256_hex(old)) && key.accepts(&sha256_hex(new)));
    // The previous hash may not be another key's.
    let clash = policy_yaml(&sha256_hex(old)).replace(
        "api_keys:\n",
        &format!(
            "api_keys:\n  other: {{group: ops, sha256: {}}}\n",
            sha256_hex(old)
        ),
    );
    let e = Policy::from_yaml(&clash, "p.yaml").unwrap_err();
    assert_eq!(e.code(), "SB002");
    assert!(e.to_string().contains("same secret as API key"), "{e}");
}

/// Attributes a caller names (`--attr`, a test file's `attributes:`) must
/// be declared when the policy declares its attributes.
#[test]
fn caller_attributes_must_be_declared() {
    use sqlsandbox::who::{key_values, Who};
    let p = saas();
    let who = |attr: &str| Who::Groups {
        groups: vec!["customers".into()],
        attributes: key_values(&[attr.to_string()], "attribute").unwrap(),
    };
    assert!(who("tenant=7").principal(&p).is_ok());
    let e = who("tenat=7").principal(&p).unwrap_err();
    assert_eq!(e.code(), "SB102");
    assert_eq!(e.to_string(), "unknown attribute `tenat`");
    assert_eq!(
        sqlsandbox::suggest::did_you_mean("tenat", p.attribute_names().iter().map(String::as_str)),
        "; did you mean `tenant`?"
    );
}
