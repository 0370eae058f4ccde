//! Generates a large policy: the SaaS example's tables, groups and users,
//! plus many more tables, saved questions, tenants and users.

use std::fmt::Write;

/// YAML for a policy with `users` users over `tenants` tenants, `tables`
/// tables and `questions` saved questions (sandbox questions included).
pub fn yaml(users: usize, tenants: usize, tables: usize, questions: usize) -> String {
    let mut s = String::with_capacity(users * 80 + tables * 200 + questions * 150);
    s.push_str("version: 1\ndatabases:\n  warehouse:\n    dialect: postgres\n    default_schema: public\n    tables:\n");
    s.push_str("      public.accounts: {columns: {id: integer, email: text, plan: text, tenant_id: integer, created_at: timestamp}}\n");
    s.push_str("      public.orders: {columns: {id: integer, account_id: integer, product_id: integer, total: decimal, tenant_id: integer, status: text}}\n");
    s.push_str("      public.products: {columns: {id: integer, name: text, category: text, price: decimal}}\n");
    s.push_str("      public.events: {columns: {id: integer, account_id: integer, kind: text, tenant_id: integer, region: text, at: timestamp}}\n");
    for i in 4..tables {
        let _ = writeln!(
            s,
            "      public.t_{i}: {{columns: {{id: integer, tenant_id: integer, a: text, b: text, c: decimal, d: date, e: timestamp, f: boolean, g: integer, h: text}}}}"
        );
    }
    s.push_str("questions:\n  sandboxed_accounts:\n    database: warehouse\n    collection: admin_only\n    sql: SELECT id, plan, tenant_id, created_at FROM accounts WHERE tenant_id = {{tenant}}\n");
    for i in 1..questions {
        let t = 4 + i % (tables - 4).max(1);
        let _ = writeln!(
            s,
            "  q_{i}:\n    database: warehouse\n    collection: reports\n    sql: SELECT id, tenant_id, a, c FROM t_{t} WHERE tenant_id = {{{{tenant}}}} AND c > {i}"
        );
    }
    s.push_str("collections:\n  admin_only: {}\n  reports: {}\ngroups:\n  analysts:\n    data: {warehouse: unrestricted}\n    native: {warehouse: true}\n");
    s.push_str("  customers:\n    native: {warehouse: true}\n    collections: {reports: view}\n    data:\n      warehouse:\n        public:\n");
    s.push_str("          accounts: {sandbox: {question: sandboxed_accounts, parameters: {tenant: tenant}}}\n");
    s.push_str("          orders: {sandbox: {column: tenant_id, attribute: tenant}}\n");
    s.push_str("          events: {sandbox: {filters: [{column: tenant_id, attribute: tenant}, {column: region, attribute: region}]}}\n");
    s.push_str("          products: unrestricted\n");
    for i in 4..tables {
        let _ = writeln!(
            s,
            "          t_{i}: {{sandbox: {{column: tenant_id, attribute: tenant}}}}"
        );
    }
    s.push_str("users:\n  alice: {groups: [customers], attributes: {tenant: 42, region: eu}}\n");
    for i in 1..users {
        let _ = writeln!(
            s,
            "  u{i}: {{groups: [customers], attributes: {{tenant: {}, region: {}}}}}",
            i % tenants.max(1),
            if i % 2 == 0 { "eu" } else { "us" }
        );
    }
    s
}
