//! Live introspection against real servers (runs when `SQLSANDBOX_PG_URL`
//! / `SQLSANDBOX_MYSQL_URL` are set): `introspect` reads the shared
//! dataset's schema back, the generated `databases:` section loads as a
//! policy, `check_live` accepts policies/saas.yaml, and it reports missing
//! tables and columns, type mismatches, and custom sandboxes that do not
//! prepare or return columns their table does not have.

#![cfg(feature = "live")]

mod common;

use sqlsandbox::introspect::{check_live, introspect, schema_yaml};
use sqlsandbox::lint::{Finding, Severity};
use sqlsandbox::Policy;

/// The saas policy with a few mistakes the live check must find.
const BROKEN: &str = r#"
version: 1
databases:
  warehouse:
    dialect: postgres
    tables:
      public.accounts:
        columns: {id: integer, email: text, plan: text, tenant_id: integer, created_at: timestamp, region: text}
      public.orders:
        columns: {id: integer, total: decimal, tenant_id: integer, status: integer, shipped: boolean}
      public.ghosts:
        columns: {id: integer}
      public.products:
        columns: {id: integer, name: text}
questions:
  extra_column:
    database: warehouse
    sql: SELECT a.id, a.tenant_id, p.category AS region FROM accounts a JOIN products p ON p.id = a.id WHERE a.tenant_id = {{tenant}}
    # `products.category` is not declared here, so its type is.
    columns: {region: text}
  broken_sql:
    database: warehouse
    sql: SELECT id, tenant_id FROM orders WHERE no_such_column = {{tenant}}
groups:
  customers:
    data:
      warehouse:
        public:
          accounts: {sandbox: {question: extra_column, parameters: {tenant: tenant}}}
          orders: {sandbox: {question: broken_sql, parameters: {tenant: {attribute: tenant, type: integer}}}}
"#;

fn codes(f: &[Finding]) -> Vec<String> {
    let mut v: Vec<String> = f
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .map(|f| format!("{} {}", f.code, f.key))
        .collect();
    v.sort();
    v
}

fn verify(url: &str, extra_column_type: &str) -> String {
    let live = introspect(url).expect("introspect");
    let yaml = schema_yaml(&live);
    assert!(yaml.contains("columns: {id: integer, account_id: integer, product_id: integer, total: decimal, tenant_id: integer, status: text}"), "{yaml}");
    assert!(
        yaml.contains(&format!(
            "unknown type `{extra_column_type}`, declared as text"
        )),
        "{yaml}"
    );
    // The output loads as a policy, as it is.
    assert!(yaml.starts_with("version: 1\n"), "{yaml}");
    Policy::from_yaml(&yaml, "live.yaml")
        .unwrap_or_else(|e| panic!("generated schema does not load: {e}\n{yaml}"));

    let saas = common::saas_policy();
    let ok = check_live(&saas, None, url).expect("check");
    assert!(codes(&ok).is_empty(), "saas.yaml should pass: {ok:#?}");

    let broken = Policy::from_yaml(BROKEN, "broken.yaml").expect("broken policy loads");
    let found = codes(&check_live(&broken, Some("warehouse"), url).expect("check"));
    let expected = [
        "L101 databases.warehouse.tables.public.ghosts",
        "L102 databases.warehouse.tables.public.accounts.columns.region",
        "L102 databases.warehouse.tables.public.orders.columns.shipped",
        "L103 databases.warehouse.tables.public.orders.columns.status",
        "L104 questions.broken_sql",
        "L105 questions.extra_column",
    ];
    assert_eq!(found, expected);
    format!(
        "{} tables introspected, saas.yaml passes, {} seeded mistakes found",
        live.tables.len(),
        expected.len()
    )
}

#[test]
#[ignore = "needs SQLSANDBOX_PG_URL"]
fn postgres_introspection() {
    let Ok(url) = std::env::var("SQLSANDBOX_PG_URL") else {
        panic!("set SQLSANDBOX_PG_URL: this server test is #[ignore]d by default and runs with --include-ignored");
    };
    let name = format!("sqlsandbox_live_{}", std::process::id());
    let result = common::with_scratch_pg_database(&url, &name, |db_url| {
        let mut c = postgres::Client::connect(db_url, postgres::NoTls).unwrap();
        c.batch_execute("CREATE SCHEMA audit").unwrap();
        for s in common::SCHEMA {
            c.batch_execute(s).unwrap();
        }
        c.batch_execute("CREATE TABLE public.docs (id INTEGER, body TSVECTOR)")
            .unwrap();
        drop(c);
        verify(db_url, "tsvector")
    });
    match result {
        Ok(summary) => common::mark_done("postgres-introspection", &summary),
        Err(e) => std::panic::resume_unwind(e),
    }
}

#[test]
#[ignore = "needs SQLSANDBOX_MYSQL_URL"]
fn mariadb_introspection() {
    use mysql::prelude::Queryable;
    let Ok(url) = std::env::var("SQLSANDBOX_MYSQL_URL") else {
        panic!("set SQLSANDBOX_MYSQL_URL: this server test is #[ignore]d by default and runs with --include-ignored");
    };
    let name = format!("sqlsandbox_live_{}", std::process::id());
    let opts = mysql::Opts::from_url(&url).expect("URL");
    let mut admin = mysql::Conn::new(opts).expect("connect");
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    admin.query_drop(format!("CREATE DATABASE {name}")).unwrap();
    let (base, _) = url.rsplit_once('/').expect("URL ends in /database");
    let db_url = format!("{base}/{name}");
    let result = std::panic::catch_unwind(|| {
        let mut c = mysql::Conn::new(mysql::Opts::from_url(&db_url).unwrap()).unwrap();
        for s in common::SCHEMA {
            c.query_drop(s.replace("public.", "").replace("audit.", ""))
                .unwrap();
        }
        c.query_drop("CREATE TABLE docs (id INTEGER, body BLOB)")
            .unwrap();
        drop(c);
        verify(&db_url, "blob")
    });
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    match result {
        Ok(summary) => common::mark_done("mariadb-introspection", &summary),
        Err(e) => std::panic::resume_unwind(e),
    }
}
