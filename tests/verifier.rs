//! The verifier against deliberately broken rewrites: every correct rewrite
//! of a corpus of queries passes `Policy::recheck`, and every mutation that
//! weakens it — a sandbox unwrapped to its table, its filter value changed
//! or dropped, its fence or schema removed, a protected table slipped into
//! an unwalked-looking slot, a forbidden function added — is caught.
//! proptest picks the query, the mutation and the place.

use std::ops::ControlFlow;
use std::path::Path;

use proptest::prelude::*;
use sqlparser::ast::{
    Expr, ObjectName, Query, SetExpr, Statement, TableFactor, Value, VisitMut, VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlsandbox::{Options, Policy, Principal};

const CORPUS: &[&str] = &[
    "SELECT * FROM orders",
    "SELECT o.id, a.plan FROM orders o JOIN accounts a ON a.id = o.account_id",
    "SELECT count(*) FROM events WHERE kind = 'x'",
    "SELECT id FROM orders WHERE account_id IN (SELECT id FROM accounts WHERE plan = 'pro')",
    "WITH big AS (SELECT * FROM orders WHERE total > 10) SELECT count(*) FROM big",
    "SELECT (SELECT max(total) FROM orders) AS m FROM products",
    "SELECT p.name FROM products p WHERE EXISTS (SELECT 1 FROM orders o WHERE o.product_id = p.id)",
    "SELECT id FROM orders UNION ALL SELECT id FROM accounts",
    "SELECT * FROM products p, LATERAL (SELECT count(*) AS n FROM orders o WHERE o.product_id = p.id) x",
    "SELECT count(*) FROM products TABLESAMPLE BERNOULLI ((SELECT count(*) FROM orders)::float4)",
    "SELECT * FROM orders ORDER BY (SELECT count(*) FROM accounts) LIMIT 3",
    "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r JOIN orders ON orders.id = r.n",
    "SELECT a.id, e.kind FROM accounts a LEFT JOIN events e ON e.account_id = a.id GROUP BY a.id, e.kind HAVING count(*) > (SELECT count(*) FROM orders)",
];

fn setup() -> (Policy, Principal) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policy = Policy::from_path(root.join("policies/saas.yaml")).unwrap();
    let alice = Principal::from_user(&policy, "alice").unwrap();
    (policy, alice)
}

fn parse(sql: &str) -> Query {
    match Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .unwrap()
        .remove(0)
    {
        Statement::Query(q) => *q,
        other => panic!("not a query: {other}"),
    }
}

/// Whether a derived table looks like a sandbox: `SELECT … FROM
/// public.<table> …`.
fn sandbox_table(q: &Query) -> Option<ObjectName> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    match s.from.first().map(|f| &f.relation) {
        Some(TableFactor::Table { name, .. }) if name.0.len() == 2 && s.from.len() == 1 => {
            Some(name.clone())
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy)]
enum Mutation {
    /// Replace the sandbox by the table it wraps.
    Unwrap,
    /// Change the tenant value in its filter.
    OtherTenant,
    /// Drop its WHERE clause.
    DropFilter,
    /// Drop its fence (OFFSET 0), in a query whose WHERE gets a condition
    /// that can fail.
    DropFence,
    /// Drop the schema of the table inside it (search_path could move it).
    DropSchema,
    /// Add a read of a protected table in a TABLESAMPLE argument of it.
    Sample,
}

/// Applies `m` to the `n`-th sandbox (modulo their count); false if the
/// query has none.
fn mutate(q: &mut Query, m: Mutation, n: usize) -> bool {
    struct Find(Vec<*const Query>);
    impl VisitorMut for Find {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Derived { subquery, .. } = f {
                if sandbox_table(subquery).is_some() {
                    self.0.push(&**subquery as *const Query);
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut find = Find(Vec::new());
    let _ = q.visit(&mut find);
    if find.0.is_empty() {
        return false;
    }
    let target = find.0[n % find.0.len()];
    struct Apply {
        target: *const Query,
        m: Mutation,
        done: bool,
    }
    impl VisitorMut for Apply {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::Derived {
                subquery, alias, ..
            } = f
            else {
                return ControlFlow::Continue(());
            };
            if !std::ptr::eq(&**subquery, self.target) || self.done {
                return ControlFlow::Continue(());
            }
            self.done = true;
            let name = sandbox_table(subquery).unwrap();
            let SetExpr::Select(s) = subquery.body.as_mut() else {
                unreachable!()
            };
            match self.m {
                Mutation::Unwrap => {
                    let alias = alias.clone();
                    *f = TableFactor::Table {
                        name,
                        alias,
                        args: None,
                        with_hints: vec![],
                        version: None,
                        with_ordinality: false,
                        partitions: vec![],
                        json_path: None,
                        sample: None,
                        index_directives: vec![],
                        inheritance: None,
                    };
                }
                Mutation::OtherTenant => {
                    struct Swap;
                    impl VisitorMut for Swap {
                        type Break = ();
                        fn pre_visit_value(
                            &mut self,
                            v: &mut sqlparser::ast::ValueWithSpan,
                        ) -> ControlFlow<()> {
                            if v.value == Value::Number("42".into(), false) {
                                v.value = Value::Number("7".into(), false);
                            }
                            ControlFlow::Continue(())
                        }
                    }
                    let _ = s.selection.visit(&mut Swap);
                }
                Mutation::DropFilter => s.selection = None,
                Mutation::DropFence => subquery.limit_clause = None,
                Mutation::DropSchema => {
                    if let Some(TableFactor::Table { name, .. }) =
                        s.from.first_mut().map(|f| &mut f.relation)
                    {
                        name.0.remove(0);
                    }
                }
                Mutation::Sample => {
                    let probe = parse("SELECT count(*) FROM public.accounts");
                    if let Some(TableFactor::Table { sample, .. }) =
                        s.from.first_mut().map(|f| &mut f.relation)
                    {
                        *sample = Some(sqlparser::ast::TableSampleKind::AfterTableAlias(Box::new(
                            sqlparser::ast::TableSample {
                                modifier: sqlparser::ast::TableSampleModifier::TableSample,
                                name: Some(sqlparser::ast::TableSampleMethod::Bernoulli),
                                quantity: Some(sqlparser::ast::TableSampleQuantity {
                                    parenthesized: true,
                                    value: Expr::Subquery(Box::new(probe)),
                                    unit: None,
                                }),
                                seed: None,
                                bucket: None,
                                offset: None,
                            },
                        )));
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut apply = Apply {
        target,
        m,
        done: false,
    };
    let _ = q.visit(&mut apply);
    apply.done
}

#[test]
fn correct_rewrites_pass() {
    let (policy, alice) = setup();
    let opts = Options::default();
    for sql in CORPUS {
        let out = policy
            .rewrite(&alice, sql, &opts)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        policy
            .recheck(&alice, &out.sql, &opts)
            .unwrap_or_else(|e| panic!("recheck of a correct rewrite failed: {e}\n{}", out.sql));
    }
}

/// Slots the walk must not forget, written by hand: each reads a protected
/// table unsandboxed and must be refused by the verifier.
#[test]
fn hand_written_bypasses_fail() {
    let (policy, alice) = setup();
    let opts = Options::default();
    for bad in [
        "SELECT count(*) FROM public.products AS products TABLESAMPLE BERNOULLI ((SELECT count(*) FROM public.orders)::FLOAT4)",
        "SELECT * FROM public.products AS products LIMIT (SELECT count(*) FROM public.orders)",
        "SELECT * FROM public.products AS products FETCH FIRST (SELECT count(*) FROM public.orders) ROWS ONLY",
        "WITH x AS (SELECT * FROM public.orders) SELECT * FROM x",
        "WITH RECURSIVE x AS (SELECT * FROM y), y AS (SELECT * FROM public.orders) SELECT * FROM x",
        "SELECT * FROM products",
        "SELECT pg_read_file('/etc/passwd')",
        // Unfenced, while a condition that can fail reaches its rows.
        "SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS orders WHERE 1 / (total - total) = 0",
        "SELECT * FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS orders JOIN public.products AS products ON products.id = orders.product_id AND products.name::int = 1",
        "SELECT * FROM (SELECT id, 1 / (total - total) AS r FROM (SELECT * FROM public.orders WHERE tenant_id = 42) AS orders) AS d WHERE r > 0",
        "SELECT * FROM (SELECT * FROM orders WHERE tenant_id = 42 OFFSET 0) AS orders",
        "SELECT * FROM public.audit_log",
        "SELECT * FROM pg_catalog.pg_user",
    ] {
        assert!(
            policy.recheck(&alice, bad, &opts).is_err(),
            "the verifier accepted: {bad}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn broken_rewrites_fail(
        which in 0..CORPUS.len(),
        m in prop_oneof![
            Just(Mutation::Unwrap),
            Just(Mutation::OtherTenant),
            Just(Mutation::DropFilter),
            Just(Mutation::DropFence),
            Just(Mutation::DropSchema),
            Just(Mutation::Sample),
        ],
        n in 0usize..8,
    ) {
        let (policy, alice) = setup();
        // Fenced, with conditions moved into the sandboxes: the most
        // elaborate form a sandbox takes.
        let opts = Options::default().with_fence(sqlsandbox::FenceMode::Always);
        let out = policy.rewrite(&alice, CORPUS[which], &opts).unwrap();
        let mut q = parse(&out.sql);
        prop_assume!(mutate(&mut q, m, n));
        if let Mutation::DropFence = m {
            // Without a fence, a sandbox is fine when nothing unsafe can
            // reach its rows: add something that can.
            let SetExpr::Select(s) = q.body.as_mut() else {
                return Err(proptest::test_runner::TestCaseError::reject("not a SELECT"));
            };
            let probe = sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
                .try_with_sql("1 / (1 - 1) = 0")
                .and_then(|mut p| p.parse_expr())
                .unwrap();
            s.selection = Some(match s.selection.take() {
                Some(w) => Expr::BinaryOp {
                    left: Box::new(Expr::Nested(Box::new(w))),
                    op: sqlparser::ast::BinaryOperator::And,
                    right: Box::new(probe),
                },
                None => probe,
            });
        }
        let broken = q.to_string();
        prop_assert_ne!(&broken, &out.sql);
        prop_assert!(
            policy.recheck(&alice, &broken, &opts).is_err(),
            "the verifier accepted a broken rewrite ({:?}):\n{}", m, broken
        );
    }
}

#[test]
fn identifiers_are_not_confused_with_ctes_across_scopes() {
    // A CTE visible only inside a subquery does not shadow the table in
    // the outer query.
    let (policy, alice) = setup();
    let opts = Options::default();
    let bad =
        "SELECT * FROM (WITH orders AS (SELECT 1 AS id) SELECT * FROM orders) s, public.orders";
    assert!(policy.recheck(&alice, bad, &opts).is_err());
}
