//! Front ends that turn text into a query: native SQL (`sql`). The query
//! builder (`crate::builder`) is the other.

pub(crate) mod sql;
