//! The multi-tenant test dataset: five tables, six tenants of very different
//! sizes (one with no rows at all), NULLs in most columns, unicode, quotes
//! and backslashes, a hidden `email` column and some dirty rows (orders
//! pointing at another tenant's account). Generated deterministically, the
//! same on every database.

/// What a column holds, for DDL and for the query generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Num,
    Text,
    Time,
}

/// The database a piece of SQL is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Postgres,
    Mariadb,
    Sqlite,
    /// DuckDB, in process through the Python runner (tests/engines/).
    Duckdb,
    /// ClickHouse through chDB, in process through the Python runner.
    Clickhouse,
    /// Spark SQL in local mode (pyspark), through the Python runner.
    Spark,
}

/// One column of a test table.
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// Hidden from customers by the custom sandbox on `accounts`.
    pub hidden: bool,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        hidden: false,
    }
}

/// A test table's definition.
pub struct TableDef {
    pub name: &'static str,
    pub columns: &'static [Column],
}

impl TableDef {
    /// The columns a customer may name.
    pub fn visible(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| !c.hidden)
    }
}

use Kind::*;

pub const TABLES: &[TableDef] = &[
    TableDef {
        name: "tenants",
        columns: &[col("id", Int), col("name", Text), col("country", Text)],
    },
    TableDef {
        name: "accounts",
        columns: &[
            col("id", Int),
            col("tenant_id", Int),
            Column {
                name: "email",
                kind: Text,
                hidden: true,
            },
            col("name", Text),
            col("plan", Text),
            col("created_at", Time),
        ],
    },
    TableDef {
        name: "products",
        columns: &[
            col("id", Int),
            col("name", Text),
            col("category", Text),
            col("price", Num),
        ],
    },
    TableDef {
        name: "orders",
        columns: &[
            col("id", Int),
            col("tenant_id", Int),
            col("account_id", Int),
            col("product_id", Int),
            col("total", Num),
            col("status", Text),
            col("created_at", Time),
        ],
    },
    TableDef {
        name: "events",
        columns: &[
            col("id", Int),
            col("tenant_id", Int),
            col("account_id", Int),
            col("kind", Text),
            col("region", Text),
            col("at", Time),
        ],
    },
];

pub fn table(name: &str) -> &'static TableDef {
    TABLES
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no test table {name}"))
}

/// One value of the dataset.
#[derive(Debug, Clone)]
pub enum Val {
    Null,
    Int(i64),
    /// A decimal, as its text.
    Num(String),
    Text(String),
    /// `YYYY-MM-DD HH:MM:SS`.
    Time(String),
}

/// A tenant and how many rows it owns.
struct Tenant {
    id: i64,
    name: &'static str,
    country: Option<&'static str>,
    accounts: usize,
    orders: usize,
    events: usize,
}

const fn tenant(
    id: i64,
    name: &'static str,
    country: Option<&'static str>,
    (accounts, orders, events): (usize, usize, usize),
) -> Tenant {
    Tenant {
        id,
        name,
        country,
        accounts,
        orders,
        events,
    }
}

/// Skewed sizes: tenant 1 owns most rows, tenant 3 one of each, tenant 4
/// none at all (but its `tenants` row).
const TENANTS: &[Tenant] = &[
    tenant(1, "Acme Corp", Some("DE"), (30, 200, 150)),
    tenant(2, "Globex", Some("US"), (8, 40, 30)),
    tenant(3, "Tiny Ltd", Some("FR"), (1, 2, 1)),
    tenant(4, "Empty Inc", None, (0, 0, 0)),
    tenant(5, "Ünïcode GmbH ✓", Some("AT"), (12, 80, 60)),
    tenant(6, "O'Reilly & Sons", Some("IE"), (3, 5, 4)),
];

/// A small deterministic generator (a 64-bit LCG), so every database gets
/// exactly the same rows without a dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
    fn time(&mut self) -> Val {
        if self.one_in(12) {
            return Val::Null;
        }
        Val::Time(format!(
            "{}-{:02}-{:02} {:02}:{:02}:{:02}",
            2023 + self.below(2),
            1 + self.below(12),
            1 + self.below(28),
            self.below(24),
            self.below(60),
            self.below(60)
        ))
    }
}

fn text(s: &str) -> Val {
    Val::Text(s.to_string())
}

fn opt_text(s: Option<&str>) -> Val {
    s.map_or(Val::Null, text)
}

/// The rows of every table, in [`TABLES`] order.
pub fn rows() -> Vec<(&'static TableDef, Vec<Vec<Val>>)> {
    let mut rng = Lcg(20240607);
    let tenants: Vec<Vec<Val>> = TENANTS
        .iter()
        .map(|t| vec![Val::Int(t.id), text(t.name), opt_text(t.country)])
        .collect();

    let mut accounts = Vec::new();
    let mut account_ids: Vec<(i64, i64)> = Vec::new();
    let names = [
        Some("Ana"),
        Some("Björk"),
        Some("Zoë"),
        Some("李雷"),
        Some("O'Neil"),
        Some("Łukasz"),
        Some("back\\slash"),
        Some("  leading"),
        Some("50%_off"),
        None,
    ];
    let plans = [
        Some("free"),
        Some("pro"),
        Some("pro"),
        Some("enterprise ✓"),
        None,
    ];
    for tenant in TENANTS {
        let t = tenant.id;
        for i in 1..=tenant.accounts as i64 {
            let id = t * 1000 + i;
            account_ids.push((t, id));
            let email = match rng.below(6) {
                0 => Val::Null,
                1 => text(&format!("zoë{i}@bücher{t}.de")),
                _ => text(&format!("user{i}@tenant{t}.example")),
            };
            accounts.push(vec![
                Val::Int(id),
                Val::Int(t),
                email,
                opt_text(rng.pick(&names)),
                opt_text(rng.pick(&plans)),
                rng.time(),
            ]);
        }
    }

    let products: Vec<Vec<Val>> = [
        (1, Some("Widget"), Some("tools"), Some("9.99")),
        (2, Some("Gädget"), Some("tools"), Some("25.00")),
        (3, Some("Ünïcödé mug ☕"), None, Some("12.50")),
        (4, Some("手袋"), Some("apparel"), Some("30.00")),
        (5, Some("Unused"), Some("misc"), None),
        (6, Some("O'Brien's tea"), Some("food"), Some("4.50")),
        (7, Some("Back\\slash cable"), Some("tools"), Some("7.25")),
        (8, None, Some("misc"), Some("0.00")),
        (9, Some("Premium plan"), Some("services"), Some("499.00")),
        (10, Some("Sticker"), Some("apparel"), Some("1.00")),
        (11, Some("Gift card"), Some("services"), Some("50.00")),
        (12, Some("Mystery box"), None, Some("19.99")),
    ]
    .iter()
    .map(|&(id, name, cat, price)| {
        vec![
            Val::Int(id),
            opt_text(name),
            opt_text(cat),
            price.map_or(Val::Null, |p| Val::Num(p.to_string())),
        ]
    })
    .collect();

    // A tenant's own account ids.
    let own_accounts = |t: i64| -> Vec<i64> {
        account_ids
            .iter()
            .filter(|(tt, _)| *tt == t)
            .map(|(_, id)| *id)
            .collect()
    };
    let statuses = [
        Some("paid"),
        Some("paid"),
        Some("pending"),
        Some("refunded"),
        Some("cancelled"),
        Some("PAID"),
        None,
    ];
    let mut orders = Vec::new();
    for tenant in TENANTS {
        let (t, n) = (tenant.id, tenant.orders);
        let own = own_accounts(t);
        for i in 1..=n as i64 {
            let account = if rng.one_in(30) {
                Val::Null
            } else if rng.one_in(25) {
                // Dirty data: another tenant's account.
                Val::Int(account_ids[rng.below(account_ids.len())].1)
            } else {
                Val::Int(rng.pick(&own))
            };
            let product = if rng.one_in(15) {
                Val::Null
            } else {
                Val::Int(1 + rng.below(12) as i64)
            };
            let total = if rng.one_in(20) {
                Val::Null
            } else {
                let cents = rng.below(50_000);
                Val::Num(format!("{}.{:02}", cents / 100, cents % 100))
            };
            orders.push(vec![
                Val::Int(t * 10_000 + i),
                Val::Int(t),
                account,
                product,
                total,
                opt_text(rng.pick(&statuses)),
                rng.time(),
            ]);
        }
    }

    let kinds = ["login", "logout", "purchase", "ログイン", "view"];
    let regions = [
        Some("eu"),
        Some("eu"),
        Some("us"),
        Some("ap"),
        None,
        Some("EU"),
    ];
    let mut events = Vec::new();
    for tenant in TENANTS {
        let (t, n) = (tenant.id, tenant.events);
        let own = own_accounts(t);
        for i in 1..=n as i64 {
            events.push(vec![
                Val::Int(t * 100_000 + i),
                Val::Int(t),
                if rng.one_in(20) {
                    Val::Null
                } else {
                    Val::Int(rng.pick(&own))
                },
                text(rng.pick(&kinds)),
                opt_text(rng.pick(&regions)),
                rng.time(),
            ]);
        }
    }

    vec![
        (table("tenants"), tenants),
        (table("accounts"), accounts),
        (table("products"), products),
        (table("orders"), orders),
        (table("events"), events),
    ]
}

/// A string literal for `db` (the dataset's own values only; attribute
/// values are always bound as parameters by the tests).
pub fn quote(db: Db, s: &str) -> String {
    match db {
        // ClickHouse and Spark read backslash escapes in string literals.
        Db::Mariadb | Db::Clickhouse | Db::Spark => {
            format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
        }
        Db::Postgres | Db::Sqlite | Db::Duckdb => format!("'{}'", s.replace('\'', "''")),
    }
}

fn literal(db: Db, v: &Val) -> String {
    match v {
        Val::Null => "NULL".into(),
        Val::Int(i) => i.to_string(),
        Val::Num(n) => n.clone(),
        // Spark (ANSI store assignment) does not cast text to a timestamp
        // column on insert.
        Val::Time(s) if db == Db::Spark => format!("TIMESTAMP {}", quote(db, s)),
        Val::Text(s) | Val::Time(s) => quote(db, s),
    }
}

fn column_type(db: Db, c: &Column) -> &'static str {
    match (db, c.kind) {
        (Db::Postgres, Int) => "INTEGER",
        (Db::Postgres, Num) => "NUMERIC(10,2)",
        (Db::Postgres, Text) => "TEXT",
        (Db::Postgres, Time) => "TIMESTAMP",
        (Db::Mariadb, Int) => "INT",
        (Db::Mariadb, Num) => "DECIMAL(10,2)",
        // `region` receives very long hostile values.
        (Db::Mariadb, Text) if c.name == "region" => "TEXT",
        (Db::Mariadb, Text) => "VARCHAR(255)",
        (Db::Mariadb, Time) => "DATETIME",
        (Db::Sqlite, Int) => "INTEGER",
        (Db::Sqlite, Num) => "NUMERIC",
        (Db::Sqlite, Text | Time) => "TEXT",
        (Db::Duckdb, Int) => "INTEGER",
        (Db::Duckdb, Num) => "DECIMAL(10,2)",
        (Db::Duckdb, Text) => "VARCHAR",
        (Db::Duckdb, Time) => "TIMESTAMP",
        // Nullable(…): ClickHouse columns hold no NULL otherwise.
        (Db::Clickhouse, Int) if c.name == "id" => "Int32",
        (Db::Clickhouse, Int) => "Nullable(Int32)",
        (Db::Clickhouse, Num) => "Nullable(Decimal(10,2))",
        (Db::Clickhouse, Text) => "Nullable(String)",
        (Db::Clickhouse, Time) => "Nullable(DateTime)",
        (Db::Spark, Int) => "INT",
        (Db::Spark, Num) => "DECIMAL(10,2)",
        (Db::Spark, Text) => "STRING",
        (Db::Spark, Time) => "TIMESTAMP",
    }
}

/// What follows a `CREATE TABLE (…)`: the table engine or format.
pub fn table_options(db: Db) -> &'static str {
    match db {
        Db::Clickhouse => " ENGINE = Memory",
        Db::Spark => " USING parquet",
        _ => "",
    }
}

/// `CREATE TABLE` and `INSERT` statements for the whole dataset in
/// `schema` (one statement per element, no trailing semicolons).
pub fn statements(db: Db, schema: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (t, rows) in rows() {
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| {
                // ClickHouse's Memory tables and Spark's parquet tables take
                // no primary key.
                let pk = if c.name == "id" && !matches!(db, Db::Clickhouse | Db::Spark) {
                    " PRIMARY KEY"
                } else {
                    ""
                };
                // `at` is a reserved word in DuckDB.
                if db == Db::Duckdb {
                    format!("\"{}\" {}{pk}", c.name, column_type(db, c))
                } else {
                    format!("{} {}{pk}", c.name, column_type(db, c))
                }
            })
            .collect();
        out.push(format!(
            "CREATE TABLE {schema}.{} ({}){}",
            t.name,
            cols.join(", "),
            table_options(db)
        ));
        for chunk in rows.chunks(100) {
            let values: Vec<String> = chunk
                .iter()
                .map(|r| {
                    let vs: Vec<String> = r.iter().map(|v| literal(db, v)).collect();
                    format!("({})", vs.join(", "))
                })
                .collect();
            out.push(format!(
                "INSERT INTO {schema}.{} VALUES {}",
                t.name,
                values.join(", ")
            ));
        }
    }
    out
}

/// Row counts per table, as generated.
pub fn row_counts() -> Vec<(&'static str, usize)> {
    rows().iter().map(|(t, r)| (t.name, r.len())).collect()
}
