//! What a relation of a FROM clause (or a query) provides, as the exposure
//! analysis sees it: its columns' names and row-safety states, and where
//! each comes from.

use sqlparser::ast::{Query, TableAlias};

use super::super::rowsafe::ColState;
use crate::dialect::Dialect;
use crate::policy::{ColumnType, Table};

/// Where a derived table's (or CTE's) column comes from: a plain column
/// of a basic sandbox, passed up through query blocks that only filter,
/// join and project (so a condition on it may move into that sandbox).
#[derive(Debug, Clone)]
pub(super) struct Origin<'a> {
    pub(super) ptr: *const Query,
    pub(super) table: &'a Table,
    /// The table's column (normalised).
    pub(super) column: String,
    /// The CTEs it passes through (each must be read once).
    pub(super) ctes: Vec<usize>,
}

/// The columns a relation of a FROM clause (or a query) provides.
#[derive(Debug, Clone, Default)]
pub(super) struct Outputs<'a> {
    /// Per column of `cols`, where it comes from (empty: nowhere known).
    pub(super) origins: Vec<Option<Origin<'a>>>,
    /// A declared table's columns, borrowed until a list is needed.
    pub(super) table: Option<&'a Table>,
    /// Normalised name (None: unnamed expression) and state, in order.
    pub(super) cols: Vec<(Option<String>, ColState)>,
    /// Whether it may have columns not listed (of unknown type).
    pub(super) open: bool,
    /// Whether the list's order is the relation's: not for a table's
    /// columns (the policy does not record their order in the database),
    /// nor for a `*` over them. A positional rename (`AS x(a, b)`) or a
    /// set operation then cannot tell which column is which.
    pub(super) unordered: bool,
}

impl<'a> Outputs<'a> {
    pub(super) fn open() -> Self {
        Outputs {
            origins: Vec::new(),
            table: None,
            cols: Vec::new(),
            open: true,
            unordered: true,
        }
    }

    pub(super) fn table(t: &'a Table) -> Self {
        Outputs {
            origins: Vec::new(),
            table: Some(t),
            cols: Vec::new(),
            open: false,
            unordered: true,
        }
    }

    /// The columns as a list.
    pub(super) fn list(mut self) -> Self {
        if let Some(t) = self.table.take() {
            self.cols = t
                .columns
                .iter()
                .map(|c| (Some(c.key.clone()), ColState::Typed(c.ty)))
                .collect();
        }
        self
    }

    /// The columns as a list, copied.
    pub(super) fn listed(&self) -> Vec<(Option<String>, ColState)> {
        match self.table {
            Some(_) => self.clone().list().cols,
            None => self.cols.clone(),
        }
    }

    /// The state of column `name`, `None` when it certainly has none.
    pub(super) fn lookup(&self, name: &str) -> Option<ColState> {
        if let Some(t) = self.table {
            return t.column(name).map(|c| ColState::Typed(c.ty));
        }
        let mut found = None;
        for (n, st) in &self.cols {
            if n.as_deref() == Some(name) {
                found = Some(match found {
                    None => *st,
                    Some(prev) => merge(prev, *st),
                });
            }
        }
        match found {
            Some(s) => Some(s),
            None if self.open => Some(ColState::Untyped),
            None => None,
        }
    }

    /// Renames by position (`AS x(a, b)`).
    pub(super) fn rename(self, alias: Option<&TableAlias>, dialect: Dialect) -> Self {
        let Some(alias) = alias else { return self };
        if alias.columns.is_empty() {
            return self;
        }
        let mut s = self.list();
        let names: Vec<String> = alias
            .columns
            .iter()
            .map(|c| dialect.normalize(&c.name).into_owned())
            .collect();
        if s.open || s.unordered || s.cols.len() < names.len() {
            // Positions unknown: the named columns, of unknown type.
            return Outputs {
                origins: Vec::new(),
                table: None,
                cols: names
                    .into_iter()
                    .map(|n| (Some(n), ColState::Untyped))
                    .collect(),
                open: true,
                unordered: true,
            };
        }
        for (slot, n) in s.cols.iter_mut().zip(names) {
            slot.0 = Some(n);
        }
        s
    }

    /// Where column `name` comes from, if it is one column of known origin.
    pub(super) fn origin(&self, name: &str) -> Option<Origin<'a>> {
        let mut found = self
            .cols
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| n.as_deref() == Some(name));
        let (i, _) = found.next()?;
        if found.next().is_some() {
            return None;
        }
        self.origins.get(i).cloned().flatten()
    }

    /// The single column of a subquery's output (for `x IN (SELECT …)`).
    pub(super) fn single(&self) -> Option<ColState> {
        if self.table.is_some() {
            return None;
        }
        match (self.cols.as_slice(), self.open) {
            ([(_, st)], false) => Some(*st),
            _ => None,
        }
    }

    /// A set operation's output: the left branch's names, each column the
    /// worse of the two branches' states at its position.
    pub(super) fn union(self, right: &Outputs<'a>) -> Self {
        let mut s = self.list();
        let right_cols = right.listed();
        s.union_list(right.open, right.unordered, &right_cols);
        s
    }

    pub(super) fn union_list(
        &mut self,
        right_open: bool,
        right_unordered: bool,
        right_cols: &[(Option<String>, ColState)],
    ) {
        self.origins.clear();
        let right = Outputs {
            origins: Vec::new(),
            table: None,
            cols: right_cols.to_vec(),
            open: right_open,
            unordered: right_unordered,
        };
        if self.open
            || right.open
            || self.unordered
            || right.unordered
            || self.cols.len() != right.cols.len()
        {
            let unsafe_any = self
                .cols
                .iter()
                .chain(&right.cols)
                .any(|(_, s)| *s == ColState::Unsafe);
            for c in &mut self.cols {
                c.1 = if unsafe_any {
                    ColState::Unsafe
                } else {
                    ColState::Untyped
                };
            }
            self.open = true;
            return;
        }
        for (l, r) in self.cols.iter_mut().zip(&right.cols) {
            l.1 = merge(l.1, r.1);
        }
    }
}

pub(super) fn merge(a: ColState, b: ColState) -> ColState {
    match (a, b) {
        (ColState::Unsafe, _) | (_, ColState::Unsafe) => ColState::Unsafe,
        (x, y) if x == y => x,
        (ColState::Typed(ColumnType::Integer), ColState::Typed(ColumnType::Decimal))
        | (ColState::Typed(ColumnType::Decimal), ColState::Typed(ColumnType::Integer)) => {
            ColState::Typed(ColumnType::Decimal)
        }
        _ => ColState::Untyped,
    }
}
