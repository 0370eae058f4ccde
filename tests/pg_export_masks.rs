//! The PostgreSQL export of column masks on a real server (runs when
//! `SQLSANDBOX_PG_URL` is set): applies `sqlsandbox::export` of a policy
//! using every mask kind (null, constant, keyed hash, first, last, email,
//! truncate to year/month/hour, bucket of integers and decimals,
//! expression, `unless`) and unions of groups (two masked groups; a masked
//! and an unmasked one) to a fresh database, twice, and checks for every
//! declared user and a set of probing queries that the database on its own
//! — a role per user that is a member of its groups' roles, attributes in
//! session settings, `search_path` = the masking schema, then `public` —
//! returns exactly the rows of sqlsandbox's rewrite run on the
//! application connection. Then that no group role can read a masked
//! column of the table itself, nor the hash keys, and that the key is in
//! no view or function definition. With feature `live`: drift after the
//! plain export reports nothing, and planning the policy without masks
//! removes the masking views, schema, keys and role and gives the columns
//! back.

mod common;

use sqlsandbox::export::{
    export_postgres_with, masked_schema, masking_role, role_name, service_role, session_settings,
    ExportOptions,
};
use sqlsandbox::{AttributeValue, Error, Options, Policy, Principal, Scalar};

const KEY: &str = "export-mask-key-0123456789";

const SCHEMA: &[&str] = &[
    "CREATE TABLE people (id int PRIMARY KEY, tenant_id int, name text, email text, phone text, ssn text, salary numeric(12,2), age int, born date, seen_at timestamp, notes text, score int)",
    "CREATE TABLE guesses (v text)",
    "INSERT INTO guesses VALUES ('123-45-6789'), ('ann@example.com'), ('secret note'), ('Ann'), (NULL)",
];

/// 30 people: every mask input shape (NULLs, no `@`, several `@`, empty
/// text, negative numbers, bucket edges, dates at period edges).
fn people() -> String {
    let names = [
        "'Ann'",
        "'bob'",
        "'Ünïcode'",
        "''",
        "NULL",
        "'x'",
        "'O''Neil'",
    ];
    let emails = [
        "'ann@example.com'",
        "'bob@x.org'",
        "'weird@@y.net'",
        "'no-at-sign'",
        "'a@b@c.com'",
        "NULL",
        "''",
        "'UPPER@Case.COM'",
    ];
    let phones = ["'+1 555 0100'", "'12'", "NULL", "'0044-20-7946-0958'"];
    let ssns = [
        "'123-45-6789'",
        "'987-65-4321'",
        "NULL",
        "'000'",
        "'555-12-3456'",
    ];
    let salaries = ["12345.67", "-2500.50", "0", "NULL", "99999.99", "10000"];
    let ages = ["0", "9", "10", "-1", "-10", "37", "NULL", "99"];
    let borns = ["'1990-06-15'", "'2000-01-01'", "'1985-12-31'", "NULL"];
    let seens = [
        "'2024-03-15 13:45:59'",
        "'2023-12-31 23:59:59'",
        "NULL",
        "'2024-01-01 00:00:00'",
    ];
    let notes = ["'secret note'", "NULL", "'another secret'"];
    let scores = ["5", "-3", "NULL"];
    let pick = |v: &[&'static str], i: usize| v[i % v.len()];
    let rows: Vec<String> = (1..=30usize)
        .map(|i| {
            format!(
                "({i}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                i % 3 + 1,
                pick(&names, i),
                pick(&emails, i * 7),
                pick(&phones, i),
                pick(&ssns, i * 3),
                pick(&salaries, i),
                pick(&ages, i),
                pick(&borns, i),
                pick(&seens, i * 2),
                pick(&notes, i),
                pick(&scores, i),
            )
        })
        .collect();
    format!("INSERT INTO people VALUES {}", rows.join(", "))
}

fn policy_yaml(with_masks: bool) -> String {
    let masks = |m: &str| {
        if with_masks {
            m.to_string()
        } else {
            String::new()
        }
    };
    format!(
        r#"
version: 1
attributes: {{tenant: integer, user_id: integer}}
databases:
  crm:
    dialect: postgres
    default_schema: public
    tables:
      public.people:
        columns: {{id: integer, tenant_id: integer, name: text, email: text, phone: text, ssn: text, salary: decimal, age: integer, born: date, seen_at: timestamp, notes: text, score: integer}}
        combine: union
      public.guesses:
        columns: {{v: text}}
groups:
  all_users:
    native: {{crm: true}}
    data: {{crm: {{public: {{guesses: unrestricted}}}}}}
  support:
    data:
      crm:
        public:
          people:
            sandbox: {{column: tenant_id, attribute: tenant}}
{support}
  own:
    data:
      crm:
        public:
          people:
{own}
  analysts:
    data:
      crm:
        public:
          people:
            rules:
              - filter: "tenant_id = 2 OR tenant_id = 3"
{analysts}
  leads:
    data:
      crm:
        public:
          people:
            rules:
              - filter: "score > 0"
users:
  sam: {{groups: [support], attributes: {{tenant: 1}}}}
  kim: {{groups: [own], attributes: {{user_id: 3}}}}
  ana: {{groups: [analysts]}}
  olga: {{groups: [own, support], attributes: {{tenant: 1, user_id: 7}}}}
  lee: {{groups: [support, leads], attributes: {{tenant: 2}}}}
  leo: {{groups: [leads]}}
  nobody: {{groups: [own]}}
  root: {{groups: [administrators]}}
"#,
        support = masks(&format!(
            "            masks:
              name: {{first: 1}}
              email: email
              phone: {{last: 4}}
              ssn: {{hash: {{key: '{KEY}'}}}}
              salary: {{bucket: 10000}}
              age: {{bucket: 10}}
              born: {{truncate: year}}
              seen_at: {{truncate: month}}
              notes: null
              score: {{constant: 0}}"
        )),
        own = if with_masks {
            "            masks:
              email: {expression: \"lower(email)\", unless: \"id = {{user_id}}\"}
              notes: null
              ssn: {constant: 'n/a'}"
        } else {
            "            rules:
              - filter: \"id = {{user_id}}\""
        },
        analysts = masks(
            "            masks:
              name: {constant: anon}
              email: {first: 3}
              born: {truncate: month}
              seen_at: {truncate: hour}
              salary: {bucket: 0.5}
              score: {expression: \"abs(score)\"}
              notes: null
              ssn: null"
        ),
    )
}

const QUERIES: &[&str] = &[
    "SELECT * FROM people",
    "SELECT id, email FROM people WHERE email LIKE '%example.com'",
    "SELECT id FROM people WHERE ssn = '123-45-6789'",
    "SELECT id FROM people WHERE salary > 12000",
    "SELECT id FROM people WHERE name LIKE 'A%'",
    "SELECT min(salary), max(salary), min(ssn), max(email), min(born), max(seen_at) FROM people",
    "SELECT id, name FROM people ORDER BY salary DESC NULLS LAST, id LIMIT 1",
    "SELECT id FROM people ORDER BY ssn NULLS LAST, id LIMIT 1",
    "SELECT count(DISTINCT ssn), count(DISTINCT email), count(DISTINCT age) FROM people",
    "SELECT born, count(*) FROM people GROUP BY born",
    "SELECT age, sum(score), count(*) FROM people GROUP BY age",
    "SELECT seen_at, phone FROM people WHERE seen_at >= '2024-03-01'",
    "SELECT p.id FROM people p JOIN guesses g ON g.v = p.ssn OR g.v = p.email OR g.v = p.notes OR g.v = p.name",
    "SELECT id FROM people WHERE notes IS NOT NULL",
];

/// The masked columns of `people`: no group role may read them from the table.
const MASKED: &[&str] = &[
    "name", "email", "phone", "ssn", "salary", "age", "born", "seen_at", "notes", "score",
];

/// The rows as text, sorted; each row's cells as `column=value` ordered by
/// column name (stable): the column order of `SELECT *` is not part of the
/// contract (the rewrite lists a masked table's columns in policy order,
/// the table itself in its own order).
fn rows(c: &mut postgres::Client, sql: &str) -> Result<Vec<Vec<String>>, postgres::Error> {
    let mut out: Vec<Vec<String>> = c
        .simple_query(sql)?
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => {
                let mut cells: Vec<(String, String)> = r
                    .columns()
                    .iter()
                    .enumerate()
                    .map(|(i, col)| {
                        (
                            col.name().to_string(),
                            r.get(i).unwrap_or("NULL").to_string(),
                        )
                    })
                    .collect();
                cells.sort_by(|a, b| a.0.cmp(&b.0));
                Some(cells.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
            }
            _ => None,
        })
        .collect();
    out.sort();
    Ok(out)
}

#[test]
#[ignore = "needs SQLSANDBOX_PG_URL"]
fn exported_masks_match_the_rewrite() {
    let Ok(url) = std::env::var("SQLSANDBOX_PG_URL") else {
        panic!("set SQLSANDBOX_PG_URL: this server test is #[ignore]d by default and runs with --include-ignored");
    };
    let pid = std::process::id();
    let name = format!("sqlsandbox_masks_{pid}");
    let opts = ExportOptions {
        role_prefix: format!("sqlsandbox_m{pid}_"),
        ..Default::default()
    };
    let policy = Policy::from_yaml(&policy_yaml(true), "masks.yaml").unwrap();
    let result =
        common::with_scratch_pg_database(&url, &name, |db_url| run(db_url, &policy, &opts));
    // Roles are cluster-wide: drop the users' and the export's (their
    // objects went with the scratch database).
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let mut roles: Vec<String> = policy
        .user_names()
        .iter()
        .map(|u| format!("{}u_{u}", opts.role_prefix))
        .collect();
    roles.push(service_role(&opts));
    roles.push(masking_role(&opts));
    for g in [
        "support",
        "own",
        "analysts",
        "leads",
        "administrators",
        "all_users",
    ] {
        roles.push(role_name(&opts, g));
    }
    for r in &roles {
        let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS \"{r}\""));
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn run(db_url: &str, policy: &Policy, opts: &ExportOptions) {
    let mut c = postgres::Client::connect(db_url, postgres::NoTls).unwrap();
    for s in SCHEMA {
        c.batch_execute(s).unwrap();
    }
    c.batch_execute(&people()).unwrap();
    let ddl = export_postgres_with(policy, opts).unwrap();
    assert!(
        ddl.contains("WITH (security_barrier)"),
        "no masking view:\n{ddl}"
    );
    c.batch_execute(&ddl)
        .unwrap_or_else(|e| panic!("the export does not apply: {e}\n{ddl}"));
    c.batch_execute(&ddl)
        .unwrap_or_else(|e| panic!("the export does not apply a second time: {e}\n{ddl}"));
    let schema = masked_schema(opts);

    let (mut same, mut nonempty, mut refused, mut denied, mut missing) = (0, 0, 0, 0, 0);
    for user in policy.user_names() {
        let principal = Principal::from_user(policy, user).unwrap();
        let role = format!("{}u_{user}", opts.role_prefix);
        c.batch_execute(&format!("CREATE ROLE \"{role}\" NOLOGIN NOBYPASSRLS"))
            .unwrap();
        for g in principal.groups() {
            c.batch_execute(&format!("GRANT \"{}\" TO \"{role}\"", role_name(opts, g)))
                .unwrap();
        }
        let mut n = postgres::Client::connect(db_url, postgres::NoTls).unwrap();
        if principal.is_admin() {
            // BYPASSRLS is an attribute of the administrators' role, not
            // inherited: the service SETs ROLE to it.
            n.batch_execute(&format!(
                "SET ROLE \"{}\"",
                role_name(opts, "administrators")
            ))
            .unwrap();
        } else {
            n.batch_execute(&format!("SET ROLE \"{role}\"")).unwrap();
            // Administrators read the tables themselves; the others the
            // masking views first.

            n.batch_execute(&format!("SET search_path TO \"{schema}\", public"))
                .unwrap();
        }
        for (k, v) in session_settings(&principal, opts).unwrap() {
            n.execute("SELECT set_config($1, $2, false)", &[&k, &v])
                .unwrap();
        }
        for q in QUERIES {
            let native = rows(&mut n, q);
            match policy.rewrite(&principal, q, &Options::default()) {
                Ok(out) => {
                    let expected = rows(&mut c, &out.sql).unwrap_or_else(|e| {
                        panic!("rewrite fails on PostgreSQL: {e}\n{}", out.sql)
                    });
                    let native = native.unwrap_or_else(|e| {
                        panic!("{user}: native enforcement refuses `{q}` which the rewrite allows: {e}\nrewrite: {}", out.sql)
                    });
                    assert_eq!(
                        native, expected,
                        "{user}: native enforcement and rewrite differ for `{q}`\nrewrite: {}",
                        out.sql
                    );
                    // Users whose every grant masks notes and ssn: no raw
                    // secret in any cell.
                    if ["sam", "ana", "kim", "olga"].contains(&user) {
                        for cell in native.iter().flatten() {
                            assert!(
                                !cell.contains("secret") && !cell.contains("123-45-6789"),
                                "{user}: raw value in `{q}`: {cell}"
                            );
                        }
                    }
                    if !expected.is_empty() {
                        nonempty += 1;
                    }
                    same += 1;
                }
                Err(e @ Error::AccessDenied { .. }) => {
                    if let Ok(r) = native {
                        assert!(
                            r.is_empty(),
                            "{user}: rewrite refuses `{q}` ({e}) but native enforcement returns {r:?}"
                        );
                    }
                    refused += 1;
                }
                Err(Error::MissingAttribute { attribute, .. }) => {
                    // The rewrite refuses; natively the missing setting is
                    // NULL, and `unless id = NULL` holds on no row: the
                    // rows of a principal whose attribute matches nothing.
                    let mut attrs: Vec<(String, AttributeValue)> = principal
                        .attributes()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    attrs.push((attribute, AttributeValue::Single(Scalar::Integer(-1))));
                    let stand_in = Principal::new(
                        policy,
                        user,
                        principal.groups().iter().map(String::as_str),
                        attrs,
                    )
                    .unwrap();
                    let out = policy.rewrite(&stand_in, q, &Options::default()).unwrap();
                    let expected = rows(&mut c, &out.sql).unwrap();
                    let native = native.unwrap_or_else(|e| panic!("{user}: `{q}`: {e}"));
                    assert_eq!(native, expected, "{user} (no attribute) `{q}`");
                    missing += 1;
                }
                Err(e) => panic!("{user}: unexpected refusal of `{q}`: {e}"),
            }
        }
        if principal.is_admin() {
            continue;
        }
        // Around the view: the table's masked columns, the keys.
        n.batch_execute("RESET search_path").unwrap();
        for col in MASKED {
            let r = n.query(&format!("SELECT {col} FROM public.people"), &[]);
            let err = r.expect_err(&format!("{user} reads people.{col} from the table"));
            assert_eq!(
                err.code(),
                Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
                "{user}: {err}"
            );
            denied += 1;
        }
        for q in [
            "SELECT * FROM public.people".to_string(),
            format!("SELECT * FROM \"{schema}\".mask_keys"),
        ] {
            let err = n.query(&q, &[]).expect_err(&format!("{user} runs {q}"));
            assert_eq!(
                err.code(),
                Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
                "{user}: {err}"
            );
            denied += 1;
        }
        // The unmasked columns stay readable from the table.
        n.query("SELECT id, tenant_id FROM public.people", &[])
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let visible: i64 = n
            .query_one(
                "SELECT count(*) FROM pg_views WHERE position($1 IN definition) > 0",
                &[&KEY],
            )
            .unwrap()
            .get(0);
        assert_eq!(visible, 0, "the hash key is in a view definition");
        let in_functions: i64 = n
            .query_one(
                "SELECT count(*) FROM pg_proc WHERE position($1 IN prosrc) > 0",
                &[&KEY],
            )
            .unwrap()
            .get(0);
        assert_eq!(in_functions, 0, "the hash key is in a function body");
    }
    assert!(same >= 80, "too few comparisons ran: {same}");
    assert!(nonempty >= 60, "too few comparisons had rows: {nonempty}");

    #[cfg(feature = "live")]
    let live = live_checks(db_url, policy, opts);
    #[cfg(not(feature = "live"))]
    let live = "plan/drift not checked (feature live off)".to_string();

    common::mark_done(
        "postgres-export-masks",
        &format!(
            "{} users x {} queries: {same} identical results native vs rewrite ({nonempty} with rows), {refused} refused by both, {missing} refused by the rewrite for a missing attribute and masked natively; {denied} reads around the views denied; {live}",
            policy.user_names().len(),
            QUERIES.len()
        ),
    );
}

/// Drift after the plain export is empty; the plan of the policy without
/// masks removes what the masks made and gives the columns back.
#[cfg(feature = "live")]
fn live_checks(db_url: &str, policy: &Policy, opts: &ExportOptions) -> String {
    use sqlsandbox::export::live;
    let opts = ExportOptions {
        database: Some("crm".into()),
        ..opts.clone()
    };
    let d = live::drift(db_url, policy, &opts).unwrap();
    assert!(d.is_empty(), "drift after the export:\n{d}");
    let plan = live::apply(db_url, policy, &opts).unwrap();
    assert!(
        plan.diff.is_empty(),
        "apply after the export changes:\n{}",
        plan.diff
    );

    // A changed key is drift.
    let mut c = postgres::Client::connect(db_url, postgres::NoTls).unwrap();
    c.batch_execute(&format!(
        "UPDATE \"{}\".mask_keys SET secret = 'another-key-0123456789'",
        masked_schema(&opts)
    ))
    .unwrap();
    let d = live::drift(db_url, policy, &opts).unwrap();
    assert!(!d.is_empty(), "a changed hash key is not drift");
    live::apply(db_url, policy, &opts).unwrap();
    assert!(live::drift(db_url, policy, &opts).unwrap().is_empty());

    let unmasked = Policy::from_yaml(&policy_yaml(false), "unmasked.yaml").unwrap();
    let plan = live::apply(db_url, &unmasked, &opts).unwrap();
    let d = live::drift(db_url, &unmasked, &opts).unwrap();
    assert!(d.is_empty(), "drift after removing the masks:\n{d}");
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &[&masked_schema(&opts)],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the masking schema survives:\n{}", plan.sql);
    let role: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = $1",
            &[&masking_role(&opts)],
        )
        .unwrap()
        .get(0);
    assert_eq!(role, 0, "the masking role survives:\n{}", plan.sql);
    // sam (support, no masks now) reads every column of the table again.
    let mut n = postgres::Client::connect(db_url, postgres::NoTls).unwrap();
    n.batch_execute(&format!(
        "SET ROLE \"{}\"; SELECT set_config('sqlsandbox.tenant', '1', false)",
        role_name(&opts, "support")
    ))
    .unwrap();
    let r = rows(&mut n, "SELECT ssn, email FROM public.people").unwrap();
    assert_eq!(r.len(), 10, "sam after the masks were removed");
    format!(
        "drift empty after the export, a changed key reported, plan without masks removed {} items",
        plan.diff.extra.len()
    )
}
