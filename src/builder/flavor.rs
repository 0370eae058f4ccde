//! What differs between dialects: date truncation and extraction, interval
//! arithmetic, "now", string matching, percentiles, outer joins. Every
//! function returns the dialect's own SQL or refuses with
//! [`Error::Unsupported`] saying what the dialect lacks — the one place the
//! builder asks "which dialect?".
//!
//! Conventions, identical in every dialect: weeks start on Monday (ISO),
//! `day-of-week` is 1 = Monday … 7 = Sunday, `week-of-year` is the ISO week.

use sqlparser::ast::{BinaryOperator, DateTimeField, Expr, JoinConstraint, JoinOperator};

use super::sql::{binop, call, int, interval, string, template};
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::policy::ColumnType;

/// A unit of time: what `temporal-unit`, `time-interval` and `datetime-add`
/// count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Unit {
    /// Every unit name, for error messages.
    pub const NAMES: &'static str = "minute, hour, day, week, month, quarter, year";

    pub fn parse(s: &str) -> Option<Unit> {
        Some(match s {
            "minute" => Unit::Minute,
            "hour" => Unit::Hour,
            "day" => Unit::Day,
            "week" => Unit::Week,
            "month" => Unit::Month,
            "quarter" => Unit::Quarter,
            "year" => Unit::Year,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Quarter => "quarter",
            Unit::Year => "year",
        }
    }

    /// Whether the unit is finer than a day (meaningless on a date column).
    pub fn sub_day(self) -> bool {
        matches!(self, Unit::Minute | Unit::Hour)
    }

    /// `n` of this unit in a unit every dialect's interval arithmetic has
    /// (weeks become days, quarters months).
    fn basic(self, n: i64) -> Result<(Unit, i64)> {
        let scaled = |k: i64, u| {
            n.checked_mul(k)
                .map(|v| (u, v))
                .ok_or_else(|| Error::Limit(format!("{n} {}s is out of range", self.name())))
        };
        match self {
            Unit::Week => scaled(7, Unit::Day),
            Unit::Quarter => scaled(3, Unit::Month),
            u => Ok((u, n)),
        }
    }

    fn field(self) -> DateTimeField {
        match self {
            Unit::Minute => DateTimeField::Minute,
            Unit::Hour => DateTimeField::Hour,
            Unit::Day => DateTimeField::Day,
            Unit::Week => DateTimeField::Week(None),
            Unit::Month => DateTimeField::Month,
            Unit::Quarter => DateTimeField::Quarter,
            Unit::Year => DateTimeField::Year,
        }
    }
}

/// A part of a date extracted as a number (`breakout` units such as
/// `day-of-week`, and the `get-…` functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    MinuteOfHour,
    HourOfDay,
    DayOfWeek,
    DayOfMonth,
    DayOfYear,
    WeekOfYear,
    MonthOfYear,
    QuarterOfYear,
    Year,
}

impl Part {
    /// Every part name, for error messages.
    pub const NAMES: &'static str = "minute-of-hour, hour-of-day, day-of-week, day-of-month, day-of-year, week-of-year, month-of-year, quarter-of-year, year-of-era";

    pub fn parse(s: &str) -> Option<Part> {
        Some(match s {
            "minute-of-hour" => Part::MinuteOfHour,
            "hour-of-day" => Part::HourOfDay,
            "day-of-week" => Part::DayOfWeek,
            "day-of-month" => Part::DayOfMonth,
            "day-of-year" => Part::DayOfYear,
            "week-of-year" => Part::WeekOfYear,
            "month-of-year" => Part::MonthOfYear,
            "quarter-of-year" => Part::QuarterOfYear,
            "year-of-era" => Part::Year,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Part::MinuteOfHour => "minute-of-hour",
            Part::HourOfDay => "hour-of-day",
            Part::DayOfWeek => "day-of-week",
            Part::DayOfMonth => "day-of-month",
            Part::DayOfYear => "day-of-year",
            Part::WeekOfYear => "week-of-year",
            Part::MonthOfYear => "month-of-year",
            Part::QuarterOfYear => "quarter-of-year",
            Part::Year => "year-of-era",
        }
    }

    /// Whether the part is finer than a day.
    pub fn sub_day(self) -> bool {
        matches!(self, Part::MinuteOfHour | Part::HourOfDay)
    }
}

/// The dialect as people call it.
pub(super) fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => "PostgreSQL",
        Dialect::Mysql => "MySQL/MariaDB",
        Dialect::Sqlite => "SQLite",
        Dialect::Generic => "generic SQL",
        Dialect::Duckdb => "DuckDB",
        Dialect::Clickhouse => "ClickHouse",
        Dialect::Spark => "Spark SQL",
        Dialect::Snowflake => "Snowflake",
        Dialect::Bigquery => "BigQuery",
        Dialect::Redshift => "Redshift",
        Dialect::Mssql => "SQL Server",
        Dialect::Trino => "Trino",
    }
}

/// "`what` in `dialect` (it has no `thing`)".
fn lacks(d: Dialect, what: &str, thing: &str) -> Error {
    Error::unsupported(format!(
        "{what} in {} (the dialect has no {thing})",
        dialect_name(d)
    ))
}

/// Truncates a date or timestamp to the start of its `unit`.
pub(super) fn truncate(d: Dialect, unit: Unit, x: Expr) -> Result<Expr> {
    match d {
        // `week` truncates to Monday in each of these.
        Dialect::Postgres
        | Dialect::Duckdb
        | Dialect::Snowflake
        | Dialect::Redshift
        | Dialect::Trino => Ok(call("date_trunc", vec![string(d, unit.name())?, x])),
        Dialect::Spark => {
            let t = match unit {
                Unit::Day => "to_date(__sb0)",
                _ => "date_trunc(__sb1, __sb0)",
            };
            template(d, t, vec![x, string(d, unit.name())?])
        }
        Dialect::Clickhouse => {
            let t = match unit {
                Unit::Minute => "toStartOfMinute(__sb0)",
                Unit::Hour => "toStartOfHour(__sb0)",
                Unit::Day => "toDate(__sb0)",
                Unit::Week => "toMonday(__sb0)",
                Unit::Month => "toStartOfMonth(__sb0)",
                Unit::Quarter => "toStartOfQuarter(__sb0)",
                Unit::Year => "toStartOfYear(__sb0)",
            };
            template(d, t, vec![x])
        }
        Dialect::Bigquery => {
            let t = match unit {
                Unit::Minute => "DATETIME_TRUNC(__sb0, MINUTE)",
                Unit::Hour => "DATETIME_TRUNC(__sb0, HOUR)",
                Unit::Day => "DATE_TRUNC(__sb0, DAY)",
                Unit::Week => "DATE_TRUNC(__sb0, ISOWEEK)",
                Unit::Month => "DATE_TRUNC(__sb0, MONTH)",
                Unit::Quarter => "DATE_TRUNC(__sb0, QUARTER)",
                Unit::Year => "DATE_TRUNC(__sb0, YEAR)",
            };
            template(d, t, vec![x])
        }
        Dialect::Mssql => {
            // DATETRUNC (SQL Server 2022); iso_week starts on Monday.
            let t = match unit {
                Unit::Minute => "DATETRUNC(minute, __sb0)",
                Unit::Hour => "DATETRUNC(hour, __sb0)",
                Unit::Day => "DATETRUNC(day, __sb0)",
                Unit::Week => "DATETRUNC(iso_week, __sb0)",
                Unit::Month => "DATETRUNC(month, __sb0)",
                Unit::Quarter => "DATETRUNC(quarter, __sb0)",
                Unit::Year => "DATETRUNC(year, __sb0)",
            };
            template(d, t, vec![x])
        }
        Dialect::Mysql => {
            let t = match unit {
                Unit::Minute => {
                    "STR_TO_DATE(DATE_FORMAT(__sb0, '%Y-%m-%d %H:%i:00'), '%Y-%m-%d %H:%i:%s')"
                }
                Unit::Hour => {
                    "STR_TO_DATE(DATE_FORMAT(__sb0, '%Y-%m-%d %H:00:00'), '%Y-%m-%d %H:%i:%s')"
                }
                Unit::Day => "DATE(__sb0)",
                Unit::Week => "DATE_SUB(DATE(__sb0), INTERVAL WEEKDAY(__sb0) DAY)",
                Unit::Month => "STR_TO_DATE(DATE_FORMAT(__sb0, '%Y-%m-01'), '%Y-%m-%d')",
                Unit::Quarter => "DATE_ADD(MAKEDATE(YEAR(__sb0), 1), INTERVAL (QUARTER(__sb0) - 1) QUARTER)",
                Unit::Year => "STR_TO_DATE(DATE_FORMAT(__sb0, '%Y-01-01'), '%Y-%m-%d')",
            };
            template(d, t, vec![x])
        }
        Dialect::Sqlite => {
            let t = match unit {
                Unit::Minute => "strftime('%Y-%m-%d %H:%M:00', __sb0)",
                Unit::Hour => "strftime('%Y-%m-%d %H:00:00', __sb0)",
                Unit::Day => "date(__sb0)",
                Unit::Week => "date(__sb0, '-6 days', 'weekday 1')",
                Unit::Month => "date(__sb0, 'start of month')",
                Unit::Quarter => "date(__sb0, 'start of month', '-' || ((CAST(strftime('%m', __sb0) AS INTEGER) - 1) % 3) || ' months')",
                Unit::Year => "date(__sb0, 'start of year')",
            };
            template(d, t, vec![x])
        }
        Dialect::Generic => match unit {
            Unit::Day => template(d, "CAST(__sb0 AS DATE)", vec![x]),
            u => Err(lacks(
                d,
                &format!("`temporal-unit: {}`", u.name()),
                "standard date truncation (only `day`, as CAST(… AS DATE)); set the database's dialect",
            )),
        },
    }
}

/// Extracts a numeric part of a date or timestamp.
pub(super) fn extract(d: Dialect, part: Part, x: Expr) -> Result<Expr> {
    let t = match d {
        Dialect::Postgres | Dialect::Duckdb => match part {
            Part::MinuteOfHour => "CAST(EXTRACT(MINUTE FROM __sb0) AS INTEGER)",
            Part::HourOfDay => "CAST(EXTRACT(HOUR FROM __sb0) AS INTEGER)",
            Part::DayOfWeek => "CAST(EXTRACT(ISODOW FROM __sb0) AS INTEGER)",
            Part::DayOfMonth => "CAST(EXTRACT(DAY FROM __sb0) AS INTEGER)",
            Part::DayOfYear => "CAST(EXTRACT(DOY FROM __sb0) AS INTEGER)",
            Part::WeekOfYear => "CAST(EXTRACT(WEEK FROM __sb0) AS INTEGER)",
            Part::MonthOfYear => "CAST(EXTRACT(MONTH FROM __sb0) AS INTEGER)",
            Part::QuarterOfYear => "CAST(EXTRACT(QUARTER FROM __sb0) AS INTEGER)",
            Part::Year => "CAST(EXTRACT(YEAR FROM __sb0) AS INTEGER)",
        },
        Dialect::Clickhouse => match part {
            Part::MinuteOfHour => "toMinute(__sb0)",
            Part::HourOfDay => "toHour(__sb0)",
            Part::DayOfWeek => "toDayOfWeek(__sb0)",
            Part::DayOfMonth => "toDayOfMonth(__sb0)",
            Part::DayOfYear => "toDayOfYear(__sb0)",
            Part::WeekOfYear => "toISOWeek(__sb0)",
            Part::MonthOfYear => "toMonth(__sb0)",
            Part::QuarterOfYear => "toQuarter(__sb0)",
            Part::Year => "toYear(__sb0)",
        },
        Dialect::Spark => match part {
            Part::MinuteOfHour => "minute(__sb0)",
            Part::HourOfDay => "hour(__sb0)",
            // weekday: 0 = Monday.
            Part::DayOfWeek => "weekday(__sb0) + 1",
            Part::DayOfMonth => "dayofmonth(__sb0)",
            Part::DayOfYear => "dayofyear(__sb0)",
            Part::WeekOfYear => "weekofyear(__sb0)",
            Part::MonthOfYear => "month(__sb0)",
            Part::QuarterOfYear => "quarter(__sb0)",
            Part::Year => "year(__sb0)",
        },
        Dialect::Snowflake => match part {
            Part::MinuteOfHour => "MINUTE(__sb0)",
            Part::HourOfDay => "HOUR(__sb0)",
            Part::DayOfWeek => "DAYOFWEEKISO(__sb0)",
            Part::DayOfMonth => "DAYOFMONTH(__sb0)",
            Part::DayOfYear => "DAYOFYEAR(__sb0)",
            Part::WeekOfYear => "WEEKISO(__sb0)",
            Part::MonthOfYear => "MONTH(__sb0)",
            Part::QuarterOfYear => "QUARTER(__sb0)",
            Part::Year => "YEAR(__sb0)",
        },
        Dialect::Bigquery => match part {
            Part::MinuteOfHour => "EXTRACT(MINUTE FROM __sb0)",
            Part::HourOfDay => "EXTRACT(HOUR FROM __sb0)",
            // DAYOFWEEK: 1 = Sunday.
            Part::DayOfWeek => "MOD(EXTRACT(DAYOFWEEK FROM __sb0) + 5, 7) + 1",
            Part::DayOfMonth => "EXTRACT(DAY FROM __sb0)",
            Part::DayOfYear => "EXTRACT(DAYOFYEAR FROM __sb0)",
            Part::WeekOfYear => "EXTRACT(ISOWEEK FROM __sb0)",
            Part::MonthOfYear => "EXTRACT(MONTH FROM __sb0)",
            Part::QuarterOfYear => "EXTRACT(QUARTER FROM __sb0)",
            Part::Year => "EXTRACT(YEAR FROM __sb0)",
        },
        Dialect::Redshift => match part {
            Part::MinuteOfHour => "CAST(DATE_PART(minute, __sb0) AS INTEGER)",
            Part::HourOfDay => "CAST(DATE_PART(hour, __sb0) AS INTEGER)",
            // dow: 0 = Sunday.
            Part::DayOfWeek => "(CAST(DATE_PART(dow, __sb0) AS INTEGER) + 6) % 7 + 1",
            Part::DayOfMonth => "CAST(DATE_PART(day, __sb0) AS INTEGER)",
            Part::DayOfYear => "CAST(DATE_PART(doy, __sb0) AS INTEGER)",
            Part::WeekOfYear => "CAST(DATE_PART(week, __sb0) AS INTEGER)",
            Part::MonthOfYear => "CAST(DATE_PART(month, __sb0) AS INTEGER)",
            Part::QuarterOfYear => "CAST(DATE_PART(quarter, __sb0) AS INTEGER)",
            Part::Year => "CAST(DATE_PART(year, __sb0) AS INTEGER)",
        },
        Dialect::Mssql => match part {
            Part::MinuteOfHour => "DATEPART(minute, __sb0)",
            Part::HourOfDay => "DATEPART(hour, __sb0)",
            // Independent of SET DATEFIRST: 1900-01-01 was a Monday.
            Part::DayOfWeek => "(DATEDIFF(day, '19000101', __sb0) % 7 + 7) % 7 + 1",
            Part::DayOfMonth => "DATEPART(day, __sb0)",
            Part::DayOfYear => "DATEPART(dayofyear, __sb0)",
            Part::WeekOfYear => "DATEPART(iso_week, __sb0)",
            Part::MonthOfYear => "DATEPART(month, __sb0)",
            Part::QuarterOfYear => "DATEPART(quarter, __sb0)",
            Part::Year => "DATEPART(year, __sb0)",
        },
        Dialect::Trino => match part {
            Part::MinuteOfHour => "minute(__sb0)",
            Part::HourOfDay => "hour(__sb0)",
            Part::DayOfWeek => "day_of_week(__sb0)",
            Part::DayOfMonth => "day(__sb0)",
            Part::DayOfYear => "day_of_year(__sb0)",
            Part::WeekOfYear => "week(__sb0)",
            Part::MonthOfYear => "month(__sb0)",
            Part::QuarterOfYear => "quarter(__sb0)",
            Part::Year => "year(__sb0)",
        },
        Dialect::Mysql => match part {
            Part::MinuteOfHour => "MINUTE(__sb0)",
            Part::HourOfDay => "HOUR(__sb0)",
            Part::DayOfWeek => "WEEKDAY(__sb0) + 1",
            Part::DayOfMonth => "DAYOFMONTH(__sb0)",
            Part::DayOfYear => "DAYOFYEAR(__sb0)",
            Part::WeekOfYear => "WEEK(__sb0, 3)",
            Part::MonthOfYear => "MONTH(__sb0)",
            Part::QuarterOfYear => "QUARTER(__sb0)",
            Part::Year => "YEAR(__sb0)",
        },
        Dialect::Sqlite => match part {
            Part::MinuteOfHour => "CAST(strftime('%M', __sb0) AS INTEGER)",
            Part::HourOfDay => "CAST(strftime('%H', __sb0) AS INTEGER)",
            Part::DayOfWeek => "(CAST(strftime('%w', __sb0) AS INTEGER) + 6) % 7 + 1",
            Part::DayOfMonth => "CAST(strftime('%d', __sb0) AS INTEGER)",
            Part::DayOfYear => "CAST(strftime('%j', __sb0) AS INTEGER)",
            // The ISO week is the week of the Thursday of the same Monday-week.
            Part::WeekOfYear => {
                "(CAST(strftime('%j', date(__sb0, '-3 days', 'weekday 4')) AS INTEGER) - 1) / 7 + 1"
            }
            Part::MonthOfYear => "CAST(strftime('%m', __sb0) AS INTEGER)",
            Part::QuarterOfYear => "(CAST(strftime('%m', __sb0) AS INTEGER) + 2) / 3",
            Part::Year => "CAST(strftime('%Y', __sb0) AS INTEGER)",
        },
        Dialect::Generic => match part {
            Part::MinuteOfHour => "EXTRACT(MINUTE FROM __sb0)",
            Part::HourOfDay => "EXTRACT(HOUR FROM __sb0)",
            Part::DayOfMonth => "EXTRACT(DAY FROM __sb0)",
            Part::MonthOfYear => "EXTRACT(MONTH FROM __sb0)",
            Part::Year => "EXTRACT(YEAR FROM __sb0)",
            p => {
                return Err(lacks(
                    d,
                    &format!("`{}`", p.name()),
                    "standard EXTRACT field for it (only YEAR, MONTH, DAY, HOUR, MINUTE)",
                ))
            }
        },
    };
    template(d, t, vec![x])
}

/// The current date and time.
pub(super) fn now(d: Dialect) -> Result<Expr> {
    let t = match d {
        Dialect::Postgres => "now()",
        Dialect::Mysql => "NOW()",
        Dialect::Sqlite => "datetime('now')",
        Dialect::Generic => "CURRENT_TIMESTAMP",
        // Without the time zone, comparable with TIMESTAMP columns.
        Dialect::Duckdb => "CAST(now() AS TIMESTAMP)",
        Dialect::Clickhouse => "now()",
        Dialect::Spark => "current_timestamp()",
        Dialect::Snowflake => "CURRENT_TIMESTAMP()",
        Dialect::Bigquery => "CURRENT_DATETIME()",
        Dialect::Redshift => "GETDATE()",
        Dialect::Mssql => "SYSDATETIME()",
        Dialect::Trino => "localtimestamp",
    };
    template(d, t, vec![])
}

/// SQLite's date function for a column type: `date` keeps `YYYY-MM-DD`
/// text comparable with date columns, `datetime` with timestamps.
fn sqlite_fn(ty: Option<ColumnType>) -> &'static str {
    if ty == Some(ColumnType::Date) {
        "date"
    } else {
        "datetime"
    }
}

/// SQLite's `±n units` modifier.
fn sqlite_modifier(d: Dialect, unit: Unit, n: i64) -> Result<Expr> {
    let (u, n) = unit.basic(n)?;
    string(d, &format!("{n:+} {}s", u.name()))
}

/// `x` plus `n` units (`n` may be negative).
pub(super) fn add(d: Dialect, x: Expr, n: i64, unit: Unit, ty: Option<ColumnType>) -> Result<Expr> {
    match d {
        // `DATEADD(unit, n, x)`.
        Dialect::Snowflake | Dialect::Redshift | Dialect::Mssql => {
            let t = match unit {
                Unit::Minute => "DATEADD(minute, __sb1, __sb0)",
                Unit::Hour => "DATEADD(hour, __sb1, __sb0)",
                Unit::Day => "DATEADD(day, __sb1, __sb0)",
                Unit::Week => "DATEADD(week, __sb1, __sb0)",
                Unit::Month => "DATEADD(month, __sb1, __sb0)",
                Unit::Quarter => "DATEADD(quarter, __sb1, __sb0)",
                Unit::Year => "DATEADD(year, __sb1, __sb0)",
            };
            template(d, t, vec![x, int(n)])
        }
        Dialect::Trino => Ok(call("date_add", vec![string(d, unit.name())?, int(n), x])),
        // `x ± INTERVAL n UNIT`, the count unquoted.
        Dialect::Clickhouse | Dialect::Spark | Dialect::Bigquery => {
            let (u, n) = unit.basic(n)?;
            let op = if n < 0 {
                BinaryOperator::Minus
            } else {
                BinaryOperator::Plus
            };
            let count = i64::try_from(n.unsigned_abs())
                .map_err(|_| Error::Limit(format!("{n} {}s is out of range", u.name())))?;
            Ok(binop(x, op, interval(int(count), Some(u.field()))))
        }
        Dialect::Postgres | Dialect::Duckdb => {
            let (u, n) = unit.basic(n)?;
            Ok(binop(
                x,
                BinaryOperator::Plus,
                interval(string(d, &format!("{n} {}", u.name()))?, None),
            ))
        }
        Dialect::Mysql => Ok(binop(
            x,
            BinaryOperator::Plus,
            interval(int(n), Some(unit.field())),
        )),
        Dialect::Sqlite => Ok(call(sqlite_fn(ty), vec![x, sqlite_modifier(d, unit, n)?])),
        Dialect::Generic => {
            let (u, n) = unit.basic(n)?;
            let op = if n < 0 {
                BinaryOperator::Minus
            } else {
                BinaryOperator::Plus
            };
            Ok(binop(
                x,
                op,
                interval(string(d, &n.unsigned_abs().to_string())?, Some(u.field())),
            ))
        }
    }
}

/// The start of the `unit` that is `offset` units from the current one
/// (`0`: the start of the current unit), comparable with a column of type
/// `ty`. `time-interval` filters are built from it.
pub(super) fn relative_start(
    d: Dialect,
    unit: Unit,
    offset: i64,
    ty: Option<ColumnType>,
) -> Result<Expr> {
    match d {
        Dialect::Postgres
        | Dialect::Mysql
        | Dialect::Duckdb
        | Dialect::Clickhouse
        | Dialect::Spark
        | Dialect::Snowflake
        | Dialect::Bigquery
        | Dialect::Redshift
        | Dialect::Mssql
        | Dialect::Trino => {
            let base = truncate(d, unit, now(d)?)?;
            if offset == 0 {
                Ok(base)
            } else {
                add(d, base, offset, unit, ty)
            }
        }
        Dialect::Sqlite => {
            let now = string(d, "now")?;
            let shift: Vec<Expr> = if offset == 0 {
                vec![]
            } else {
                vec![sqlite_modifier(d, unit, offset)?]
            };
            let fixed = |m: &[&str]| -> Result<Vec<Expr>> {
                m.iter().map(|s| string(d, s)).collect()
            };
            Ok(match unit {
                Unit::Minute | Unit::Hour => {
                    let fmt = if unit == Unit::Minute {
                        "%Y-%m-%d %H:%M:00"
                    } else {
                        "%Y-%m-%d %H:00:00"
                    };
                    let mut args = vec![string(d, fmt)?, now];
                    args.extend(shift);
                    call("strftime", args)
                }
                Unit::Quarter => {
                    let back = template(
                        d,
                        "'-' || ((CAST(strftime('%m', 'now') AS INTEGER) - 1) % 3) || ' months'",
                        vec![],
                    )?;
                    let mut args = vec![now, string(d, "start of month")?, back];
                    args.extend(shift);
                    call(sqlite_fn(ty), args)
                }
                _ => {
                    let mods = match unit {
                        Unit::Day => fixed(&["start of day"])?,
                        Unit::Week => fixed(&["start of day", "-6 days", "weekday 1"])?,
                        Unit::Month => fixed(&["start of month"])?,
                        _ => fixed(&["start of year"])?,
                    };
                    let mut args = vec![now];
                    args.extend(mods);
                    args.extend(shift);
                    call(sqlite_fn(ty), args)
                }
            })
        }
        Dialect::Generic => match unit {
            Unit::Day => {
                let today = template(d, "CURRENT_DATE", vec![])?;
                if offset == 0 {
                    Ok(today)
                } else {
                    add(d, today, offset, unit, ty)
                }
            }
            u => Err(lacks(
                d,
                &format!("`time-interval` in {}s", u.name()),
                "standard date truncation (only days, from CURRENT_DATE); set the database's dialect",
            )),
        },
    }
}

/// Number of characters of a string.
pub(super) fn length(d: Dialect, x: Expr) -> Result<Expr> {
    let t = match d {
        Dialect::Postgres => "char_length(__sb0)",
        Dialect::Mysql | Dialect::Generic | Dialect::Spark | Dialect::Bigquery => {
            "CHAR_LENGTH(__sb0)"
        }
        Dialect::Sqlite | Dialect::Duckdb | Dialect::Snowflake | Dialect::Trino => "length(__sb0)",
        Dialect::Redshift => "CHAR_LENGTH(__sb0)",
        // Not `length`, which counts bytes.
        Dialect::Clickhouse => "lengthUTF8(__sb0)",
        // LEN ignores trailing spaces; DATALENGTH counts bytes.
        Dialect::Mssql => "LEN(__sb0 + 'x') - 1",
    };
    template(d, t, vec![x])
}

/// Concatenation of strings; a NULL part counts as empty text in every
/// dialect (PostgreSQL's `concat` semantics), so results agree everywhere.
pub(super) fn concat(d: Dialect, args: Vec<Expr>) -> Result<Expr> {
    Ok(match d {
        // Their concat skips NULLs (SQL Server's needs two arguments).
        Dialect::Postgres | Dialect::Duckdb => call("concat", args),
        Dialect::Mssql => {
            let mut all = args;
            if all.len() < 2 {
                all.push(string(d, "")?);
            }
            call("CONCAT", all)
        }
        // CONCAT would be NULL as soon as one part is; CONCAT_WS skips NULLs.
        Dialect::Mysql | Dialect::Spark => {
            let mut all = vec![string(d, "")?];
            all.extend(args);
            call("CONCAT_WS", all)
        }
        // `||` is NULL as soon as one part is.
        Dialect::Sqlite
        | Dialect::Generic
        | Dialect::Clickhouse
        | Dialect::Snowflake
        | Dialect::Bigquery
        | Dialect::Redshift
        | Dialect::Trino => {
            let empty = string(d, "")?;
            let parts = args
                .into_iter()
                .map(|a| match &a {
                    Expr::Value(v) if v.value != sqlparser::ast::Value::Null => a,
                    _ => call("coalesce", vec![a, empty.clone()]),
                })
                .collect();
            super::sql::fold(parts, BinaryOperator::StringConcat).unwrap_or_else(super::sql::null)
        }
    })
}

/// `len` characters of `x` from position `start` (1-based).
pub(super) fn substring(d: Dialect, x: Expr, start: Expr, len: Option<Expr>) -> Result<Expr> {
    let t = match (d, len.is_some()) {
        (
            Dialect::Postgres
            | Dialect::Sqlite
            | Dialect::Duckdb
            | Dialect::Snowflake
            | Dialect::Bigquery
            | Dialect::Trino,
            true,
        ) => "substr(__sb0, __sb1, __sb2)",
        (
            Dialect::Postgres
            | Dialect::Sqlite
            | Dialect::Duckdb
            | Dialect::Snowflake
            | Dialect::Bigquery
            | Dialect::Trino,
            false,
        ) => "substr(__sb0, __sb1)",
        (Dialect::Mysql | Dialect::Spark | Dialect::Redshift | Dialect::Mssql, true) => {
            "SUBSTRING(__sb0, __sb1, __sb2)"
        }
        (Dialect::Mysql | Dialect::Spark | Dialect::Redshift, false) => "SUBSTRING(__sb0, __sb1)",
        // SQL Server's SUBSTRING needs a length: the whole string is enough.
        (Dialect::Mssql, false) => "SUBSTRING(__sb0, __sb1, LEN(__sb0 + 'x'))",
        (Dialect::Clickhouse, true) => "substringUTF8(__sb0, __sb1, __sb2)",
        (Dialect::Clickhouse, false) => "substringUTF8(__sb0, __sb1)",
        (Dialect::Generic, true) => "SUBSTRING(__sb0 FROM __sb1 FOR __sb2)",
        (Dialect::Generic, false) => "SUBSTRING(__sb0 FROM __sb1)",
    };
    let mut args = vec![x, start];
    args.extend(len);
    template(d, t, args)
}

/// The largest whole number not above `x`. SQLite's `floor` exists only
/// when math functions are compiled in, so it is spelt with CAST there.
pub(super) fn floor(d: Dialect, x: Expr) -> Result<Expr> {
    match d {
        Dialect::Sqlite => template(
            d,
            "(CAST(__sb0 AS INTEGER) - ((__sb0) < CAST(__sb0 AS INTEGER)))",
            vec![x],
        ),
        _ => template(d, "floor(__sb0)", vec![x]),
    }
}

/// The smallest whole number not below `x`.
pub(super) fn ceil(d: Dialect, x: Expr) -> Result<Expr> {
    match d {
        Dialect::Sqlite => template(
            d,
            "(CAST(__sb0 AS INTEGER) + ((__sb0) > CAST(__sb0 AS INTEGER)))",
            vec![x],
        ),
        _ => template(d, "ceil(__sb0)", vec![x]),
    }
}

/// Where a string filter looks for its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Match {
    Contains,
    StartsWith,
    EndsWith,
}

/// `x` contains / starts with / ends with `needle`.
///
/// LIKE patterns escape `%`, `_` and `!` with `!` (`ESCAPE '!'` also turns
/// off PostgreSQL's and MySQL's default backslash escape). Case-sensitive
/// matching uses each dialect's exact comparison: LIKE on PostgreSQL and
/// generic SQL, LIKE on binary strings on MySQL (whose LIKE follows the
/// collation), `instr`/`substr` on SQLite (whose LIKE ignores ASCII case).
pub(super) fn string_match(
    d: Dialect,
    x: Expr,
    how: Match,
    needle: &str,
    case_sensitive: bool,
) -> Result<Expr> {
    if needle.is_empty() {
        return template(d, "__sb0 IS NOT NULL", vec![x]);
    }
    if d == Dialect::Sqlite && case_sensitive {
        let n = i64::try_from(needle.chars().count())
            .map_err(|_| Error::Limit("the string is too long".into()))?;
        let lit = string(d, needle)?;
        return match how {
            Match::Contains => template(d, "instr(__sb0, __sb1) > 0", vec![x, lit]),
            Match::StartsWith => {
                template(d, "substr(__sb0, 1, __sb2) = __sb1", vec![x, lit, int(n)])
            }
            Match::EndsWith => template(d, "substr(__sb0, __sb2) = __sb1", vec![x, lit, int(-n)]),
        };
    }
    if d == Dialect::Mssql && case_sensitive {
        return Err(lacks(
            d,
            "case-sensitive matching",
            "case-sensitive LIKE without naming a collation (use `case-sensitive: false`)",
        ));
    }
    // ClickHouse and BigQuery have no ESCAPE clause: a backslash escapes.
    let backslash = matches!(d, Dialect::Clickhouse | Dialect::Bigquery);
    let escape = if backslash { '\\' } else { '!' };
    let mut pattern = String::with_capacity(needle.len() + 2);
    if how != Match::StartsWith {
        pattern.push('%');
    }
    for c in needle.chars() {
        // `[` is a wildcard in SQL Server's LIKE.
        if matches!(c, '%' | '_') || c == escape || (d == Dialect::Mssql && c == '[') {
            pattern.push(escape);
        }
        pattern.push(c);
    }
    if how != Match::EndsWith {
        pattern.push('%');
    }
    let lit = string(d, &pattern)?;
    let t = match (d, case_sensitive) {
        (Dialect::Clickhouse, true) | (Dialect::Bigquery, true) => "__sb0 LIKE __sb1",
        (Dialect::Clickhouse, false) => "lowerUTF8(__sb0) LIKE lowerUTF8(__sb1)",
        (Dialect::Bigquery, false) => "lower(__sb0) LIKE lower(__sb1)",
        (Dialect::Mysql, true) => "CAST(__sb0 AS BINARY) LIKE CAST(__sb1 AS BINARY) ESCAPE '!'",
        (_, true) => "__sb0 LIKE __sb1 ESCAPE '!'",
        (_, false) => "lower(__sb0) LIKE lower(__sb1) ESCAPE '!'",
    };
    template(d, t, vec![x, lit])
}

/// The continuous percentile `p` (0 to 1) of `x`, as an aggregate.
pub(super) fn percentile(d: Dialect, x: Expr, p: Expr, what: &str) -> Result<Expr> {
    match d {
        Dialect::Postgres
        | Dialect::Generic
        | Dialect::Duckdb
        | Dialect::Snowflake
        | Dialect::Redshift => template(
            d,
            "percentile_cont(__sb1) WITHIN GROUP (ORDER BY __sb0)",
            vec![x, p],
        ),
        // Exact, interpolated as percentile_cont.
        Dialect::Spark => template(d, "percentile(__sb0, __sb1)", vec![x, p]),
        Dialect::Clickhouse => template(d, "quantileExactInclusive(__sb1)(__sb0)", vec![x, p]),
        Dialect::Mysql | Dialect::Sqlite | Dialect::Trino => Err(lacks(
            d,
            &format!("`{what}`"),
            "exact median or percentile aggregate",
        )),
        // Both have PERCENTILE_CONT only as a window function.
        Dialect::Bigquery | Dialect::Mssql => Err(lacks(
            d,
            &format!("`{what}`"),
            "percentile aggregate (PERCENTILE_CONT is a window function there)",
        )),
    }
}

/// How a join combines rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strategy {
    Left,
    Inner,
    Right,
    Full,
}

impl Strategy {
    pub const NAMES: &'static str = "left-join, inner-join, right-join, full-join";

    pub fn parse(s: &str) -> Option<Strategy> {
        Some(match s {
            "left-join" => Strategy::Left,
            "inner-join" => Strategy::Inner,
            "right-join" => Strategy::Right,
            "full-join" => Strategy::Full,
            _ => return None,
        })
    }
}

/// The join operator for `strategy` with condition `on`.
pub(super) fn join(d: Dialect, strategy: Strategy, on: Expr) -> Result<JoinOperator> {
    let c = JoinConstraint::On(on);
    Ok(match strategy {
        Strategy::Left => JoinOperator::Left(c),
        Strategy::Inner => JoinOperator::Inner(c),
        Strategy::Right => JoinOperator::Right(c),
        Strategy::Full if d == Dialect::Mysql => {
            return Err(lacks(d, "`full-join`", "FULL OUTER JOIN"))
        }
        Strategy::Full => JoinOperator::FullOuter(c),
    })
}
