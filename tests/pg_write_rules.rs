//! Write rules against PostgreSQL's own per-command policies (runs when
//! `SQLSANDBOX_PG_URL` is set). policies/rules.yaml gives `authors`
//! UPDATE/DELETE of their own documents with a check, INSERT with a check,
//! and a restrictive rule for all three; the same rules are written by
//! hand as `CREATE POLICY … FOR UPDATE/DELETE/INSERT … USING … WITH CHECK
//! …`. For every user and write statement, each side runs in a transaction
//! that is rolled back — PostgreSQL as the user's role with its attributes
//! in settings, sqlsandbox's rewrite as the superuser — and the tables'
//! states after them are compared:
//! - where PostgreSQL accepts the statement, the states are equal;
//! - where it refuses it (a row fails `WITH CHECK`: PostgreSQL raises an
//!   error, while the rewrite leaves that row alone), every row the
//!   rewrite changed passes the rules, and one-row statements change
//!   nothing;
//! - where sqlsandbox refuses (no write rule), PostgreSQL changes nothing.

mod common;
use common::Rng;

use sqlsandbox::{Error, Options, Policy, Principal};

const SETUP: &[&str] = &[
    "CREATE TABLE category (cid int PRIMARY KEY, cname text)",
    "CREATE TABLE document (did int PRIMARY KEY, cid int, dlevel int, dauthor text, dtitle text, status text)",
    "INSERT INTO category VALUES (11, 'novel'), (22, 'science'), (33, 'archive'), (44, 'secret')",
    "INSERT INTO document VALUES
       (1, 11, 0, 'alan', 'a1', 'draft'), (2, 22, 1, 'alan', 'a2', 'public'),
       (3, 44, 0, 'alan', 'a3', 'draft'), (4, NULL, 2, 'alan', 'a4', NULL),
       (5, 11, 0, 'ross', 'r1', 'draft'), (6, 33, 1, 'ross', 'r2', 'public'),
       (7, 11, 0, 'Alan', 'x1', 'draft'), (8, 22, 3, 'rita', 'x2', 'draft'),
       (9, 44, 1, 'ross', 'r3', 'draft'), (10, NULL, NULL, NULL, 'x3', NULL)",
    "CREATE ROLE sqlsb_w_authors NOLOGIN NOBYPASSRLS",
    "CREATE ROLE sqlsb_w_readers NOLOGIN NOBYPASSRLS",
    "GRANT SELECT ON category, document TO sqlsb_w_readers",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON document TO sqlsb_w_authors",
    "GRANT SELECT ON category TO sqlsb_w_authors",
    "ALTER TABLE document ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE category ENABLE ROW LEVEL SECURITY",
    // Reads, as in policies/rules.yaml.
    "CREATE POLICY cat ON category FOR SELECT TO sqlsb_w_readers USING (cid = ANY (string_to_array(current_setting('app.categories'), ',')::int[]))",
    "CREATE POLICY r_level ON document FOR SELECT TO sqlsb_w_readers USING (dlevel <= current_setting('app.level')::int AND EXISTS (SELECT 1 FROM category c WHERE c.cid = document.cid))",
    "CREATE POLICY r_draft ON document AS RESTRICTIVE FOR SELECT TO sqlsb_w_readers USING (status <> 'draft')",
    "CREATE POLICY a_own ON document FOR SELECT TO sqlsb_w_authors USING (dauthor = current_setting('app.user'))",
    "CREATE POLICY a_44 ON document AS RESTRICTIVE FOR SELECT TO sqlsb_w_authors USING (cid <> 44)",
    // Writes.
    "CREATE POLICY w_upd ON document FOR UPDATE TO sqlsb_w_authors USING (dauthor = current_setting('app.user')) WITH CHECK (dauthor = current_setting('app.user') AND status <> 'public')",
    "CREATE POLICY w_del ON document FOR DELETE TO sqlsb_w_authors USING (dauthor = current_setting('app.user'))",
    "CREATE POLICY w_ins ON document FOR INSERT TO sqlsb_w_authors WITH CHECK (dauthor = current_setting('app.user') AND dlevel <= 1)",
    "CREATE POLICY w_r_ins ON document AS RESTRICTIVE FOR INSERT TO sqlsb_w_authors WITH CHECK (cid IS NULL OR cid <> 44)",
    "CREATE POLICY w_r_upd ON document AS RESTRICTIVE FOR UPDATE TO sqlsb_w_authors USING (cid IS NULL OR cid <> 44) WITH CHECK (cid IS NULL OR cid <> 44)",
    "CREATE POLICY w_r_del ON document AS RESTRICTIVE FOR DELETE TO sqlsb_w_authors USING (cid IS NULL OR cid <> 44)",
];

const STATEMENTS: &[&str] = &[
    "UPDATE document SET dtitle = 'new' WHERE did = 1",
    "UPDATE document SET dtitle = 'new' WHERE did = 3",
    "UPDATE document SET dtitle = 'new' WHERE did = 5",
    "UPDATE document SET dtitle = 'new' WHERE did = 7",
    "UPDATE document SET status = 'public' WHERE did = 1",
    "UPDATE document SET dauthor = 'rita' WHERE did = 4",
    "UPDATE document SET cid = 44 WHERE did = 4",
    "UPDATE document SET cid = 22 WHERE did = 4",
    "UPDATE document SET dtitle = 'all'",
    "UPDATE document SET dlevel = dlevel + 1 WHERE status = 'draft'",
    "UPDATE document SET dtitle = dtitle || '!' WHERE dlevel >= 0",
    "DELETE FROM document WHERE did = 1",
    "DELETE FROM document WHERE did = 5",
    "DELETE FROM document WHERE did = 3",
    "DELETE FROM document WHERE status = 'draft'",
    "DELETE FROM document",
    "INSERT INTO document (did, cid, dlevel, dauthor, dtitle, status) VALUES (100, 11, 1, 'alan', 'n', 'draft')",
    "INSERT INTO document (did, cid, dlevel, dauthor, dtitle, status) VALUES (101, 11, 3, 'alan', 'n', 'draft')",
    "INSERT INTO document (did, cid, dlevel, dauthor, dtitle, status) VALUES (102, 11, 0, 'ross', 'n', 'draft')",
    "INSERT INTO document (did, cid, dlevel, dauthor, dtitle, status) VALUES (103, 44, 0, 'alan', 'n', 'draft')",
    "INSERT INTO document (did, cid, dlevel, dauthor, dtitle, status) VALUES (104, NULL, 0, 'alan', 'n', NULL)",
    "INSERT INTO document (did, cid, dlevel, dauthor) VALUES (105, 22, 1, 'alan')",
    "INSERT INTO document (did, dlevel, dauthor) VALUES (106, 1, 'ross')",
    "UPDATE document SET dtitle = 'r' WHERE did = 1 RETURNING did, dtitle",
    "UPDATE document SET cid = 44 WHERE did = 1 RETURNING *",
    "DELETE FROM document WHERE did = 4 RETURNING did",
    "INSERT INTO document (did, cid, dlevel, dauthor, status) VALUES (107, 22, 1, 'alan', 'draft') RETURNING did",
];

fn state(c: &mut postgres::Transaction<'_>) -> Vec<Vec<String>> {
    let rows = c
        .simple_query("SELECT * FROM document ORDER BY did")
        .unwrap();
    rows.into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Whether a row of `document` passes the update rules for `user`.
fn passes_update_check(row: &[String], user: &str) -> bool {
    let (cid, author, status) = (&row[1], &row[3], &row[5]);
    // `status <> 'public'` is not true for a NULL status.
    author == user && status != "public" && status != "NULL" && (cid == "NULL" || cid != "44")
}

#[test]
#[ignore = "needs SQLSANDBOX_PG_URL"]
fn write_rules_match_postgres_policies() {
    let Ok(url) = std::env::var("SQLSANDBOX_PG_URL") else {
        panic!("set SQLSANDBOX_PG_URL: this server test is #[ignore]d by default and runs with --include-ignored");
    };
    let name = format!("sqlsandbox_writes_{}", std::process::id());
    let result = common::with_scratch_pg_database(&url, &name, run);
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    for r in ["sqlsb_w_authors", "sqlsb_w_readers"] {
        let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {r}"));
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn run(db_url: &str) {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/rules.yaml"))
        .unwrap();
    let policy = Policy::from_yaml(&src, "rules.yaml").unwrap();
    let mut c = postgres::Client::connect(db_url, postgres::NoTls).unwrap();
    // Roles are cluster-wide: a stale run's may be left over.
    let _ =
        c.batch_execute("DROP ROLE IF EXISTS sqlsb_w_authors; DROP ROLE IF EXISTS sqlsb_w_readers");
    for s in SETUP {
        c.batch_execute(s)
            .unwrap_or_else(|e| panic!("setup `{s}`: {e}"));
    }
    let (mut equal, mut both_refused, mut partial, mut changed, mut unprovable) = (0, 0, 0, 0, 0);
    for user in ["alan", "ross", "rita"] {
        let principal = Principal::from_user(&policy, user).unwrap();
        let attrs = principal.attributes().clone();
        let setting = |k: &str| {
            attrs
                .get(k)
                .map(|v| {
                    v.values()
                        .iter()
                        .map(|s| match s {
                            sqlsandbox::Scalar::Text(t) => t.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        for stmt in STATEMENTS {
            let mut t = c.transaction().unwrap();
            let initial = state(&mut t);
            t.rollback().unwrap();

            // PostgreSQL on its own.
            let mut t = c.transaction().unwrap();
            for g in principal.groups().iter().filter(|g| *g != "all_users") {
                t.batch_execute(&format!("GRANT sqlsb_w_{g} TO CURRENT_USER"))
                    .ok();
            }
            let role = format!("sqlsb_w_u_{user}");
            t.batch_execute(&format!("CREATE ROLE {role} NOLOGIN NOBYPASSRLS"))
                .unwrap();
            for g in principal.groups().iter().filter(|g| *g != "all_users") {
                t.batch_execute(&format!("GRANT sqlsb_w_{g} TO {role}"))
                    .unwrap();
            }
            for k in ["user", "level", "categories"] {
                t.execute(
                    "SELECT set_config($1, $2, true)",
                    &[&format!("app.{k}"), &setting(k)],
                )
                .unwrap();
            }
            t.batch_execute(&format!("SET LOCAL ROLE {role}")).unwrap();
            let native_ok = t.batch_execute("SAVEPOINT s").is_ok() && t.batch_execute(stmt).is_ok();
            if !native_ok {
                t.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
            }
            t.batch_execute("RESET ROLE").unwrap();
            let native = state(&mut t);
            t.rollback().unwrap();

            // The rewrite, as the superuser.
            match policy.rewrite(&principal, stmt, &Options::default()) {
                Ok(out) => {
                    let mut t = c.transaction().unwrap();
                    t.batch_execute(&out.sql).unwrap_or_else(|e| {
                        panic!("{user}: the rewrite of `{stmt}` fails: {e}\n{}", out.sql)
                    });
                    let ours = state(&mut t);
                    t.rollback().unwrap();
                    if ours != initial {
                        changed += 1;
                    }
                    if native_ok {
                        assert_eq!(ours, native, "{user}: `{stmt}`\nrewrite: {}", out.sql);
                        equal += 1;
                    } else {
                        // PostgreSQL refused because a row failed WITH
                        // CHECK; the rewrite may have written the others.
                        let one_row = stmt.contains("did = ") || stmt.starts_with("INSERT");
                        if one_row {
                            assert_eq!(
                                ours, initial,
                                "{user}: `{stmt}` changed rows PostgreSQL refused\nrewrite: {}",
                                out.sql
                            );
                        } else {
                            for row in ours.iter().filter(|r| !initial.contains(r)) {
                                assert!(
                                    !stmt.starts_with("UPDATE") || passes_update_check(row, user),
                                    "{user}: `{stmt}` wrote {row:?}, which the rules refuse\nrewrite: {}",
                                    out.sql
                                );
                            }
                        }
                        partial += 1;
                    }
                }
                Err(e @ (Error::WriteDenied { .. } | Error::AccessDenied { .. })) => {
                    assert_eq!(
                        native, initial,
                        "{user}: sqlsandbox refuses `{stmt}` ({e}) but PostgreSQL changes rows"
                    );
                    both_refused += 1;
                }
                // A value the rewrite cannot prove passes (a check on a
                // column the INSERT leaves to its default) is refused:
                // fail-closed, whatever PostgreSQL does.
                // So is an UPDATE that reads the rows (its WHERE) for a
                // user whose read rules read other tables (ross, a reader:
                // the new row must pass them, as in PostgreSQL).
                Err(e @ Error::Unsupported { .. })
                    if stmt.starts_with("INSERT")
                        || stmt.contains("RETURNING")
                        || (stmt.starts_with("UPDATE")
                            && e.to_string().contains("read rules read other tables")) =>
                {
                    unprovable += 1
                }
                Err(e) => panic!("{user}: unexpected refusal of `{stmt}`: {e}"),
            }
        }
    }
    assert!(equal >= 20, "too few equal comparisons: {equal}");
    assert!(
        changed >= 10,
        "too few statements changed anything: {changed}"
    );
    common::mark_done(
        "postgres-write-rules",
        &format!(
            "3 users x {} statements: {equal} equal to PostgreSQL's policies ({changed} changing rows), {partial} refused by PostgreSQL (WITH CHECK) and safe in the rewrite, {both_refused} refused by both, {unprovable} refused by sqlsandbox as unprovable",
            STATEMENTS.len()
        ),
    );
}

// ----- generated write rules ------------------------------------------------------

/// The scratch table of the generated cases (one table: a check that
/// reads other tables is refused, and so is RETURNING or an UPDATE that
/// reads rows under read rules that do).
const GEN_SETUP: &[&str] = &[
    "CREATE TABLE document (did int PRIMARY KEY, cid int, dlevel int, dauthor text, status text)",
    "INSERT INTO document VALUES
       (1, 11, 0, 'alan', 'draft'), (2, 22, 1, 'alan', 'public'), (3, 44, 0, 'alan', 'draft'),
       (4, NULL, 2, 'alan', NULL), (5, 11, 0, 'ross', 'draft'), (6, 33, 1, 'ross', 'public'),
       (7, 11, 0, 'Alan', 'draft'), (8, 22, 3, 'rita', 'draft'), (9, 44, 1, 'ross', 'draft'),
       (10, NULL, NULL, NULL, NULL), (11, 22, 2, 'rita', 'public'), (12, 33, 3, 'alan', 'internal'),
       (13, 11, 1, 'o''neil', 'draft'), (14, 44, 2, 'ross', 'internal'), (15, 33, 0, 'rita', NULL),
       (16, 22, 1, 'alan', 'internal')",
    "ALTER TABLE document ENABLE ROW LEVEL SECURITY",
    // The per-row replay when PostgreSQL raises (below): with `wg.only`
    // set, UPDATE and DELETE see that row only; unset, every row.
    "CREATE POLICY only_row_u ON document AS RESTRICTIVE FOR UPDATE TO PUBLIC
       USING (coalesce(current_setting('wg.only', true), '') IN ('', did::text))
       WITH CHECK (true)",
    "CREATE POLICY only_row_d ON document AS RESTRICTIVE FOR DELETE TO PUBLIC
       USING (coalesce(current_setting('wg.only', true), '') IN ('', did::text))",
];

/// A condition over `document` with `{{user}}` and `{{level}}`.
fn gen_condition(rng: &mut Rng, depth: usize) -> String {
    if depth > 0 && rng.chance(1, 4) {
        let a = gen_condition(rng, depth - 1);
        let b = gen_condition(rng, depth - 1);
        return format!("({a}) {} ({b})", rng.pick(&["AND", "OR"]));
    }
    match rng.below(10) {
        0 | 1 => "dauthor = {{user}}".into(),
        2 => "dlevel <= {{level}}".into(),
        3 => format!(
            "status {} {}",
            rng.pick(&["=", "<>"]),
            rng.pick(&["'draft'", "'public'", "'internal'"])
        ),
        4 => "cid IS NULL OR cid <> 44".into(),
        5 => format!("cid IN ({})", rng.pick(&["11, 22", "22, 33", "11"])),
        6 => format!("dlevel {} {}", rng.pick(&["<", ">=", "="]), rng.below(4)),
        7 => "status IS NOT NULL".into(),
        8 => "dauthor <> {{user}} AND dlevel < 2".into(),
        _ => "true".into(),
    }
}

#[derive(Debug, Clone)]
struct WRule {
    filter: String,
    check: Option<String>,
    restrictive: bool,
    /// `select`, `insert`, `update`, `delete` (or `all`).
    commands: Vec<&'static str>,
}

#[derive(Debug)]
struct WCase {
    /// Per group, its rules on `document`.
    groups: Vec<Vec<WRule>>,
    /// Per user: groups, `user`, `level`.
    users: Vec<(Vec<usize>, &'static str, i64)>,
}

fn gen_case(rng: &mut Rng) -> WCase {
    let ngroups = 1 + rng.below(3);
    let groups = (0..ngroups)
        .map(|_| {
            let mut rules = Vec::new();
            // Reads: usually one permissive rule, sometimes a restrictive one.
            if rng.chance(4, 5) {
                rules.push(WRule {
                    filter: gen_condition(rng, 1),
                    check: None,
                    restrictive: false,
                    commands: vec!["select"],
                });
            }
            if rng.chance(1, 4) {
                rules.push(WRule {
                    filter: gen_condition(rng, 0),
                    check: None,
                    restrictive: true,
                    commands: vec!["select"],
                });
            }
            for _ in 0..1 + rng.below(3) {
                let commands: Vec<&'static str> = if rng.chance(1, 8) {
                    vec!["all"]
                } else {
                    let mut cs: Vec<&'static str> = ["insert", "update", "delete"]
                        .into_iter()
                        .filter(|_| rng.chance(1, 2))
                        .collect();
                    if cs.is_empty() {
                        cs.push(*rng.pick(&["insert", "update", "delete"]));
                    }
                    cs
                };
                let checks = commands
                    .iter()
                    .any(|c| matches!(*c, "insert" | "update" | "all"));
                rules.push(WRule {
                    filter: gen_condition(rng, 1),
                    check: (checks && rng.chance(1, 2)).then(|| gen_condition(rng, 1)),
                    restrictive: rng.chance(1, 4),
                    commands,
                });
            }
            rules
        })
        .collect();
    let users = (0..3)
        .map(|_| {
            let mut gs: Vec<usize> = (0..ngroups).filter(|_| rng.chance(2, 3)).collect();
            if gs.is_empty() {
                gs.push(rng.below(ngroups));
            }
            (
                gs,
                *rng.pick(&["alan", "ross", "rita", "o'neil"]),
                rng.below(4) as i64,
            )
        })
        .collect();
    WCase { groups, users }
}

/// A random write statement; `n` makes inserted ids fresh.
fn gen_statement(rng: &mut Rng, n: usize) -> String {
    let value = |rng: &mut Rng, col: &str| -> String {
        match col {
            "cid" => rng.pick(&["11", "22", "44", "NULL", "cid"]).to_string(),
            "dlevel" => rng.pick(&["0", "1", "3", "NULL", "dlevel + 1"]).to_string(),
            "dauthor" => rng
                .pick(&[
                    "'alan'",
                    "'ross'",
                    "'rita'",
                    "'o''neil'",
                    "NULL",
                    "upper(dauthor)",
                ])
                .to_string(),
            _ => rng
                .pick(&["'draft'", "'public'", "'internal'", "NULL", "status || '!'"])
                .to_string(),
        }
    };
    let returning = |rng: &mut Rng| {
        if rng.chance(1, 3) {
            rng.pick(&[" RETURNING did", " RETURNING *", " RETURNING did, status"])
                .to_string()
        } else {
            String::new()
        }
    };
    // A WHERE that reads a column (PostgreSQL applies SELECT policies
    // then, and so does the rewrite).
    let where_ = |rng: &mut Rng| -> String {
        match rng.below(6) {
            0 => String::new(),
            1 => format!(" WHERE did = {}", 1 + rng.below(17)),
            2 => format!(
                " WHERE did IN ({}, {})",
                1 + rng.below(16),
                1 + rng.below(16)
            ),
            3 => " WHERE status = 'draft'".into(),
            4 => format!(" WHERE dlevel >= {}", rng.below(3)),
            _ => " WHERE dauthor IS NOT NULL".into(),
        }
    };
    match rng.below(10) {
        0..=3 => {
            let cols: Vec<&str> = ["cid", "dlevel", "dauthor", "status"]
                .into_iter()
                .filter(|_| rng.chance(1, 2))
                .collect();
            let cols = if cols.is_empty() { vec!["status"] } else { cols };
            let sets: Vec<String> = cols
                .iter()
                .map(|c| format!("{c} = {}", value(rng, c)))
                .collect();
            format!(
                "UPDATE document SET {}{}{}",
                sets.join(", "),
                where_(rng),
                returning(rng)
            )
        }
        4 | 5 => format!("DELETE FROM document{}{}", where_(rng), returning(rng)),
        6 => format!(
            "INSERT INTO document (did, cid, dlevel, dauthor, status) SELECT did + {}, cid, dlevel, dauthor, status FROM document WHERE did = {}",
            100 + n * 20,
            1 + rng.below(16)
        ),
        _ => {
            let constant = |rng: &mut Rng, col: &str| loop {
                let v = value(rng, col);
                if !v.contains(col) {
                    return v;
                }
            };
            let all = rng.chance(4, 5);
            let cols: Vec<&str> = if all {
                vec!["cid", "dlevel", "dauthor", "status"]
            } else {
                vec!["cid", "dlevel", "dauthor"]
            };
            let values: Vec<String> = cols.iter().map(|c| constant(rng, c)).collect();
            format!(
                "INSERT INTO document (did, {}) VALUES ({}, {}){}",
                cols.join(", "),
                100 + n,
                values.join(", "),
                returning(rng)
            )
        }
    }
}

impl WCase {
    fn yaml(&self) -> String {
        let mut y = String::from(
            "version: 1\nattributes: {user: text, level: integer}\ndatabases:\n  db:\n    dialect: postgres\n    default_schema: public\n    tables:\n      public.document: {columns: {did: integer, cid: integer, dlevel: integer, dauthor: text, status: text}, combine: union}\ngroups:\n",
        );
        for (g, rules) in self.groups.iter().enumerate() {
            let rules: Vec<String> = rules
                .iter()
                .map(|r| {
                    let mut s = format!("{{filter: {}", serde_json::to_string(&r.filter).unwrap());
                    if let Some(c) = &r.check {
                        s += &format!(", check: {}", serde_json::to_string(c).unwrap());
                    }
                    if r.restrictive {
                        s += ", restrictive: true";
                    }
                    if r.commands != ["select"] {
                        s += &format!(", commands: [{}]", r.commands.join(", "));
                    }
                    s + "}"
                })
                .collect();
            y += &format!(
                "  g{g}:\n    data: {{db: {{public: {{document: {{rules: [{}]}}}}}}}}\n    native: {{db: true}}\n",
                rules.join(", ")
            );
        }
        y += "users:\n";
        for (i, (gs, user, level)) in self.users.iter().enumerate() {
            let gs: Vec<String> = gs.iter().map(|g| format!("g{g}")).collect();
            y += &format!(
                "  u{i}: {{groups: [{}], attributes: {{user: {}, level: {level}}}}}\n",
                gs.join(", "),
                serde_json::to_string(user).unwrap()
            );
        }
        y
    }

    /// PostgreSQL's per-command policies for the rules, on the roles
    /// `{prefix}g<n>`.
    fn policies(&self, prefix: &str) -> Vec<String> {
        let native = |e: &str| {
            e.replace("{{user}}", "current_setting('app.user')")
                .replace("{{level}}", "current_setting('app.level')::int")
        };
        let mut out = Vec::new();
        for (g, rules) in self.groups.iter().enumerate() {
            for (k, r) in rules.iter().enumerate() {
                let commands: Vec<&str> = if r.commands == ["all"] {
                    vec!["select", "insert", "update", "delete"]
                } else {
                    r.commands.clone()
                };
                for c in commands {
                    let kind = if r.restrictive {
                        "RESTRICTIVE"
                    } else {
                        "PERMISSIVE"
                    };
                    let using = native(&r.filter);
                    let check = native(r.check.as_deref().unwrap_or(&r.filter));
                    let body = match c {
                        "select" | "delete" => format!("USING ({using})"),
                        "insert" => format!("WITH CHECK ({check})"),
                        _ => format!("USING ({using}) WITH CHECK ({check})"),
                    };
                    out.push(format!(
                        "CREATE POLICY {prefix}g{g}_{k}_{c} ON document AS {kind} FOR {} TO {prefix}g{g} {body}",
                        c.to_uppercase()
                    ));
                }
            }
        }
        out
    }
}

/// Rows as text, sorted.
fn simple_rows(t: &mut postgres::Transaction<'_>, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let msgs = t.simple_query(sql).map_err(|e| match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    })?;
    let mut rows: Vec<Vec<String>> = msgs
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    rows.sort();
    Ok(rows)
}

#[derive(Debug, Default)]
struct WStats {
    policies: usize,
    statements: usize,
    /// Accepted by both, same rows written and returned.
    equal: usize,
    /// ... of which changed the table.
    changed: usize,
    /// PostgreSQL raised (a row failed a check); the rewrite wrote exactly
    /// what the rows that pass write when replayed one by one.
    raised_replayed: usize,
    /// Refused by sqlsandbox (no rule grants the write); PostgreSQL
    /// changed nothing.
    both_refused: usize,
    /// Refused by sqlsandbox as documented (INSERT … SELECT, a check on a
    /// column the INSERT leaves to its default).
    documented: usize,
}

#[test]
#[ignore = "needs SQLSANDBOX_PG_URL"]
fn generated_write_rules_match_postgres_policies() {
    let Ok(url) = std::env::var("SQLSANDBOX_PG_URL") else {
        panic!("set SQLSANDBOX_PG_URL: this server test is #[ignore]d by default and runs with --include-ignored");
    };
    let pid = std::process::id();
    let prefix = format!("sqlsb_wg{pid}_");
    let name = format!("sqlsandbox_wgen_{pid}");
    let mut roles: Vec<String> = Vec::new();
    let result = common::with_scratch_pg_database(&url, &name, |db_url| {
        gen_run(db_url, &prefix, &mut roles)
    });
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    for r in &roles {
        let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {r}"));
    }
    match result {
        Ok(stats) => common::mark_done("postgres-write-rules-generated", &format!("{stats:?}")),
        Err(e) => std::panic::resume_unwind(e),
    }
}

fn gen_run(db_url: &str, prefix: &str, roles: &mut Vec<String>) -> WStats {
    let env = |var: &str, default: u64| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    // SQLSANDBOX_WRITES_SEED / SQLSANDBOX_WRITES_CASES (policies; 12
    // statements × 3 users each).
    let seed = env("SQLSANDBOX_WRITES_SEED", 0x3173_2026_0001_abcd).max(1);
    let cases = env("SQLSANDBOX_WRITES_CASES", 60) as usize;
    let mut rng = Rng(seed);
    let mut c = postgres::Client::connect(db_url, postgres::NoTls).unwrap();
    c.batch_execute("SET client_min_messages = warning")
        .unwrap();
    for s in GEN_SETUP {
        c.batch_execute(s)
            .unwrap_or_else(|e| panic!("setup `{s}`: {e}"));
    }
    let mut stats = WStats::default();
    let mut problems: Vec<String> = Vec::new();
    let mut stmt_no = 0usize;
    for case_no in 0..cases {
        let case = gen_case(&mut rng);
        let yaml = case.yaml();
        let policy = Policy::from_yaml(&yaml, "writes.yaml")
            .unwrap_or_else(|e| panic!("case {case_no}: {e}\n{yaml}"));
        stats.policies += 1;
        let cp = format!("{prefix}c{case_no}_");
        let mut ddl = Vec::new();
        for g in 0..case.groups.len() {
            let r = format!("{cp}g{g}");
            roles.push(r.clone());
            ddl.push(format!("CREATE ROLE {r} NOLOGIN NOBYPASSRLS"));
            ddl.push(format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON document TO {r}"
            ));
        }
        for (i, (gs, _, _)) in case.users.iter().enumerate() {
            let r = format!("{cp}u{i}");
            roles.push(r.clone());
            let member: Vec<String> = gs.iter().map(|g| format!("{cp}g{g}")).collect();
            ddl.push(format!(
                "CREATE ROLE {r} NOLOGIN NOBYPASSRLS IN ROLE {}",
                member.join(", ")
            ));
        }
        ddl.extend(case.policies(&cp));
        for s in &ddl {
            c.batch_execute(s)
                .unwrap_or_else(|e| panic!("case {case_no}: `{s}`: {e}\n{yaml}"));
        }
        let statements: Vec<String> = (0..12)
            .map(|_| {
                stmt_no += 1;
                gen_statement(&mut rng, stmt_no)
            })
            .collect();
        for (i, (_, user, level)) in case.users.iter().enumerate() {
            let principal = Principal::from_user(&policy, &format!("u{i}")).unwrap();
            let role = format!("{cp}u{i}");
            for stmt in &statements {
                stats.statements += 1;
                let context = |what: String| {
                    format!("case {case_no}, user u{i} ({user}, level {level}): `{stmt}`\n  {what}\n  policy:\n{yaml}")
                };
                let become_user = |t: &mut postgres::Transaction<'_>| {
                    t.execute(
                        "SELECT set_config('app.user', $1, true), set_config('app.level', $2, true)",
                        &[user, &level.to_string()],
                    )
                    .unwrap();
                    t.batch_execute(&format!("SET LOCAL ROLE {role}")).unwrap();
                };
                let mut t = c.transaction().unwrap();
                let initial = simple_rows(&mut t, "SELECT * FROM document").unwrap();
                t.rollback().unwrap();

                // PostgreSQL on its own.
                let mut t = c.transaction().unwrap();
                become_user(&mut t);
                let native = simple_rows(&mut t, stmt);
                let native_state = if native.is_ok() {
                    t.batch_execute("RESET ROLE").unwrap();
                    Some(simple_rows(&mut t, "SELECT * FROM document").unwrap())
                } else {
                    None
                };
                t.rollback().unwrap();

                let rewritten = policy.rewrite(&principal, stmt, &Options::default());
                let out = match rewritten {
                    Ok(out) => out,
                    Err(
                        e @ (Error::WriteDenied { .. }
                        | Error::AccessDenied { .. }
                        | Error::NotReadOnly(_)),
                    ) => {
                        if native_state.as_ref().is_some_and(|s| *s != initial) {
                            problems.push(context(format!(
                                "sqlsandbox refuses ({e}) but PostgreSQL writes"
                            )));
                        }
                        stats.both_refused += 1;
                        continue;
                    }
                    // What README lists as refused because it cannot be
                    // proven: INSERT … SELECT, a check on a column the
                    // INSERT leaves to its default, a new value that is
                    // not row-safe (computed in the check as well).
                    Err(e @ Error::Unsupported { .. })
                        if stmt.contains(" SELECT ")
                            || (stmt.starts_with("INSERT") && !stmt.contains(", status)"))
                            || e.to_string().contains("must be row-safe") =>
                    {
                        stats.documented += 1;
                        continue;
                    }
                    Err(e) => {
                        problems.push(context(format!("unexpected refusal [{}]: {e}", e.code())));
                        continue;
                    }
                };
                let mut t = c.transaction().unwrap();
                let ours_returned = simple_rows(&mut t, &out.sql);
                let ours_state = simple_rows(&mut t, "SELECT * FROM document").unwrap();
                t.rollback().unwrap();
                let ours_returned = match ours_returned {
                    Ok(r) => r,
                    Err(e) => {
                        problems.push(context(format!("the rewrite fails: {e}\n  {}", out.sql)));
                        continue;
                    }
                };
                let expected = match (&native, native_state) {
                    (Ok(returned), Some(state)) => Some((returned.clone(), state, false)),
                    (Err(e), _) if e.starts_with("42501") => {
                        // A row failed a check: PostgreSQL raised, the
                        // rewrite leaves that row alone. Replay the
                        // statement one row at a time (an INSERT is one
                        // row: nothing).
                        if stmt.starts_with("INSERT") {
                            Some((Vec::new(), initial.clone(), true))
                        } else {
                            let mut t = c.transaction().unwrap();
                            become_user(&mut t);
                            let mut returned = Vec::new();
                            for row in &initial {
                                t.execute("SELECT set_config('wg.only', $1, true)", &[&row[0]])
                                    .unwrap();
                                t.batch_execute("SAVEPOINT one").unwrap();
                                match simple_rows(&mut t, stmt) {
                                    Ok(r) => returned.extend(r),
                                    Err(_) => t.batch_execute("ROLLBACK TO SAVEPOINT one").unwrap(),
                                }
                            }
                            t.batch_execute("RESET ROLE").unwrap();
                            let state = simple_rows(&mut t, "SELECT * FROM document").unwrap();
                            t.rollback().unwrap();
                            returned.sort();
                            Some((returned, state, true))
                        }
                    }
                    (Err(e), _) => {
                        problems.push(context(format!(
                            "PostgreSQL fails otherwise ({e}); the rewrite: {}",
                            out.sql
                        )));
                        None
                    }
                    (Ok(_), None) => unreachable!(),
                };
                let Some((returned, state, replayed)) = expected else {
                    continue;
                };
                if ours_state != state || ours_returned != returned {
                    problems.push(context(format!(
                        "differs from PostgreSQL{}:\n  returned: native {returned:?}, rewrite {ours_returned:?}\n  changed rows: native {:?}, rewrite {:?}\n  rewrite: {}",
                        if replayed { " replayed row by row (it raised)" } else { "" },
                        state.iter().filter(|r| !initial.contains(r)).collect::<Vec<_>>(),
                        ours_state.iter().filter(|r| !initial.contains(r)).collect::<Vec<_>>(),
                        out.sql
                    )));
                    continue;
                }
                if replayed {
                    stats.raised_replayed += 1;
                } else {
                    stats.equal += 1;
                    if state != initial {
                        stats.changed += 1;
                    }
                }
            }
        }
    }
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for p in &problems {
        let k: String = p
            .lines()
            .nth(1)
            .unwrap_or("")
            .trim()
            .chars()
            .take(50)
            .collect();
        *kinds.entry(k).or_default() += 1;
    }
    assert!(
        problems.is_empty(),
        "{} differences (seed {seed}) by kind {kinds:#?}; the first 3:\n\n{}",
        problems.len(),
        problems
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    assert!(
        stats.equal > 100
            && stats.changed > 30
            && stats.raised_replayed > 0
            && stats.both_refused > 0,
        "{stats:?}"
    );
    stats
}
