//! Snapshots of the PostgreSQL native-enforcement DDL exported for the
//! example policies (`snapshots/export@*.snap`).

use std::path::Path;

use sqlsandbox::export::{export_postgres, export_postgres_with, ExportOptions};
use sqlsandbox::Policy;

fn policy(name: &str) -> Policy {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Policy::from_path(root.join("policies").join(name)).expect("policy loads")
}

fn snapshot(name: &str, ddl: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    insta::with_settings!({
        snapshot_path => root.join("snapshots"),
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_snapshot!(name, ddl);
    });
}

#[test]
fn saas_export() {
    // Strip the policy path from the header so the snapshot does not depend
    // on where the checkout lives.
    let ddl = export_postgres(&policy("saas.yaml")).unwrap();
    snapshot("export@saas", &ddl.replace(env!("CARGO_MANIFEST_DIR"), "."));
}

#[test]
fn marketplace_export() {
    let ddl = export_postgres(&policy("marketplace.yaml")).unwrap();
    snapshot(
        "export@marketplace",
        &ddl.replace(env!("CARGO_MANIFEST_DIR"), "."),
    );
}

#[test]
fn hostile_names_are_quoted_or_refused() {
    // PostgreSQL policy names are exact: quotes and capitals are part of them.
    let p = Policy::from_yaml(
        r#"
version: 1
databases:
  db: {dialect: postgres, tables: {"public.\"we\"ird\"": {columns: {id: integer, Tenant: integer}}}}
groups:
  "g\"; DROP": {data: {db: {public: {"\"we\"ird\"": {sandbox: {column: Tenant, attribute: tenant}}}}}}
"#,
        "hostile.yaml",
    )
    .unwrap();
    let ddl = export_postgres(&p).unwrap();
    assert!(ddl.contains(r#"ON "public"."""we""ird""" "#), "{ddl}");
    assert!(
        ddl.contains(r#"TO "sqlsandbox_g""; DROP" USING ("Tenant" = ANY"#),
        "{ddl}"
    );
    let saas = policy("saas.yaml");
    let bad = ExportOptions {
        role_prefix: "x\"; DROP".into(),
        ..Default::default()
    };
    assert!(export_postgres_with(&saas, &bad).is_err());
    let long = ExportOptions {
        role_prefix: "p".repeat(60),
        ..Default::default()
    };
    assert!(export_postgres_with(&saas, &long).is_err());
    let none = ExportOptions {
        database: Some("nope".into()),
        ..Default::default()
    };
    assert!(export_postgres_with(&saas, &none).is_err());
    // Role creation runs in a `DO $sqlsandbox$ … $sqlsandbox$` block (so
    // that the export can be applied again): a name holding the delimiter
    // would end the block's body early.
    let dollar = ExportOptions {
        role_prefix: "r$sqlsandbox$".into(),
        ..Default::default()
    };
    assert!(export_postgres_with(&saas, &dollar).is_err());
}

#[test]
fn session_settings_refuse_commas() {
    let saas = policy("saas.yaml");
    let opts = ExportOptions::default();
    let alice = sqlsandbox::Principal::from_user(&saas, "alice").unwrap();
    let s = sqlsandbox::export::session_settings(&alice, &opts).unwrap();
    assert_eq!(
        s,
        vec![
            ("sqlsandbox.region".to_string(), "eu".to_string()),
            ("sqlsandbox.tenant".to_string(), "42".to_string())
        ]
    );
    let p = sqlsandbox::Principal::new(
        &saas,
        "x",
        ["customers"],
        [(
            "region".to_string(),
            sqlsandbox::AttributeValue::text("eu,us"),
        )],
    )
    .unwrap();
    assert!(sqlsandbox::export::session_settings(&p, &opts).is_err());
}

#[test]
fn mysql_export_quotes_hostile_names_and_values() {
    let src = |group: &str, user: &str| {
        format!(
            r#"
version: 1
databases:
  db: {{dialect: mysql, default_schema: app, tables: {{"app.t": {{columns: {{id: integer, region: text}}}}}}}}
groups:
  {group:?}: {{data: {{db: {{app: {{t: {{sandbox: {{column: region, attribute: region}}}}}}}}}}}}
users:
  {user}: {{groups: [{group:?}], attributes: {{region: ["eu' OR '1'='1", "x\\'); DROP TABLE t; --", "`"]}}}}
"#
        )
    };
    let opts = ExportOptions::default();
    let p = Policy::from_yaml(&src("g`; DROP DATABASE x; --", "ann"), "hostile.yaml").unwrap();
    let ddl = sqlsandbox::export::mysql::export_mysql(&p, &opts).unwrap();
    assert!(
        ddl.contains("VIEW `sqlsandbox_g``; DROP DATABASE x; --`.`t` AS"),
        "{ddl}"
    );
    // Values appear only as hex literals.
    for v in ["eu' OR", "DROP TABLE"] {
        assert!(!ddl.contains(v), "raw value `{v}` in\n{ddl}");
    }
    assert!(ddl.contains("_utf8mb4 X'6575"), "{ddl}");
    // Names MySQL cannot hold, and logins that are not plain, are refused.
    let dotted = Policy::from_yaml(&src("a.b", "ann"), "hostile.yaml").unwrap();
    assert!(sqlsandbox::export::mysql::export_mysql(&dotted, &opts).is_err());
    let quoted = Policy::from_yaml(&src("g", "\"o'neil\""), "hostile.yaml").unwrap();
    assert!(sqlsandbox::export::mysql::export_mysql(&quoted, &opts).is_err());
    // A PostgreSQL-only policy has nothing to export to MySQL.
    let pg = policy("saas.yaml");
    assert!(sqlsandbox::export::mysql::export_mysql(&pg, &opts).is_err());
    // Two group combinations whose database names would collide
    // (`a` + `b` and `a__b`) are refused, not merged.
    let collide = Policy::from_yaml(
        r#"
version: 1
databases:
  db: {dialect: mysql, default_schema: app, tables: {"app.t": {columns: {id: integer}}}}
groups:
  a: {data: {db: unrestricted}}
  b: {data: {db: unrestricted}}
  a__b: {}
users:
  u1: {groups: [a, b]}
  u2: {groups: [a__b]}
"#,
        "collide.yaml",
    )
    .unwrap();
    let e = sqlsandbox::export::mysql::export_mysql(&collide, &opts).unwrap_err();
    assert!(
        e.to_string().contains("sharing the MySQL database name"),
        "{e}"
    );
}
