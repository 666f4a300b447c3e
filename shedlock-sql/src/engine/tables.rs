//! The tables: creating them, and checking them before the statements
//! are made (the columns each needs, the fencing column detected).

use std::sync::Arc;

use shedlock_core::{LockError, StoreFailure};

use crate::dialect::{Dialect, Statements};
use crate::schema;
use crate::statements::{Tables, statements};
use crate::table::TableName;

use super::*;

impl<D: Dialect> SqlLocks<D> {
    /// Creates the lock table and its companion settings and runs tables,
    /// each if missing.
    pub(crate) async fn create_table_if_missing(&self) -> Result<(), LockError> {
        let tables = std::iter::once((self.table.clone(), &schema::LOCK_TABLE))
            .chain(schema::companions(&self.table));
        for (table, shape) in tables {
            let create = shape.ddl::<D>(&table);
            let what = shape.what;
            self.engine
                .create_table(&table, &create, self.timeout)
                .await
                .map_err(|failure| {
                    failure.into_error::<D>(
                        &self.server,
                        format!("creating the {what} '{table}'"),
                        &format!(
                            "create it by hand (the README gives the DDL of each database), or \
                             grant CREATE to this user; this database's DDL: {create}"
                        ),
                    )
                })?;
        }
        let (settings, runs) = (self.table.settings(), self.table.runs());
        let (holders, waiters) = (self.table.holders(), self.table.waiters());
        tracing::info!(
            table = %self.table, %settings, %runs, %holders, %waiters, store = D::STORE,
            "lock tables present"
        );
        Ok(())
    }

    /// Whether this provider hands out fencing tokens from the `fencing_token`
    /// column (detecting the column now if it was not configured).
    pub(crate) async fn uses_fencing_column(&self) -> Result<bool, LockError> {
        Ok(self.prepared().await?.fencing)
    }

    /// The statements, made once the tables are checked: all exist with
    /// the columns the statements use (a clear error naming the DDL
    /// otherwise), and the fencing column is detected if not configured.
    pub(super) async fn prepared(&self) -> Result<&Prepared, LockError> {
        self.prepared
            .get_or_try_init(|| async {
                let tables = self.check_tables().await?;
                match tables.gap {
                    Some(gap) => Err(gap),
                    None => Ok(self.prepare(tables.fencing)),
                }
            })
            .await
    }

    /// For calls that need only the lock table (a force-release): the
    /// statements of [`prepared`](Self::prepared) when every table is
    /// there, else statements made for this call (so companion tables
    /// created later are used), on ShedLock for Java's table alone too.
    pub(super) async fn lock_table_statements(&self) -> Result<LockTableStatements, LockError> {
        let complete = |prepared: &Prepared| LockTableStatements {
            statements: prepared.statements.clone(),
            holders: true,
        };
        if let Some(prepared) = self.prepared.get() {
            return Ok(complete(prepared));
        }
        let tables = self.check_tables().await?;
        if tables.gap.is_none() {
            let prepared = self.prepare(tables.fencing);
            let statements = complete(&prepared);
            // Another call may have made them meanwhile: the same statements.
            let _ = self.prepared.set(prepared);
            return Ok(statements);
        }
        tracing::debug!(
            table = %self.table, store = D::STORE, holders = tables.holders,
            "companion tables missing; statements for the lock table alone"
        );
        Ok(LockTableStatements {
            statements: Arc::new(statements::<D>(&Tables::of(&self.table, tables.fencing))),
            holders: tables.holders,
        })
    }

    /// The statements of the table, with or without the fencing column.
    pub(super) fn prepare(&self, fencing: bool) -> Prepared {
        tracing::debug!(
            table = %self.table, store = D::STORE, fencing,
            "lock table statements prepared"
        );
        Prepared {
            fencing,
            statements: Arc::new(statements::<D>(&Tables::of(&self.table, fencing))),
        }
    }

    /// Checks the lock table (an error when it is missing or lacks
    /// ShedLock's columns, or the catalog cannot be read) and its
    /// companions (whose first gap is kept in `gap`), and detects the
    /// fencing column if it was not configured.
    pub(super) async fn check_tables(&self) -> Result<CheckedTables, LockError> {
        let lock = &schema::LOCK_TABLE;
        let columns = self
            .checked_columns(&self.table, &lock.required(), lock.ddl::<D>(&self.table))
            .await??;
        let fencing = self
            .fencing
            .unwrap_or_else(|| columns.iter().any(|column| D::is_fencing_column(column)));
        let mut checked = CheckedTables {
            fencing,
            holders: true,
            gap: None,
        };
        for (table, shape) in schema::companions(&self.table) {
            let ddl = shape.ddl::<D>(&table);
            if let Err(gap) = self.checked_columns(&table, &shape.required(), ddl).await? {
                if std::ptr::eq(shape, &schema::HOLDERS_TABLE) {
                    checked.holders = false;
                }
                checked.gap.get_or_insert(gap);
            }
        }
        Ok(checked)
    }

    /// The columns of `table`, once it is known to exist with `required`;
    /// otherwise (the inner error) an error that says what is missing and
    /// gives `ddl`. The outer error: the catalog could not be read.
    pub(super) async fn checked_columns(
        &self,
        table: &TableName,
        required: &[&str],
        ddl: String,
    ) -> Result<Result<Vec<String>, LockError>, LockError> {
        let action = || format!("looking up the columns of the table '{table}'");
        let columns = self
            .engine
            .columns(table, self.timeout)
            .await
            .map_err(|failure| {
                failure.into_error::<D>(&self.server, action(), "nothing was done")
            })?;
        let missing: Vec<&str> = required
            .iter()
            .filter(|wanted| {
                !columns
                    .iter()
                    .any(|column| column.eq_ignore_ascii_case(wanted))
            })
            .copied()
            .collect();
        if missing.is_empty() {
            return Ok(Ok(columns));
        }
        let (what_happened, consequence) = if columns.is_empty() {
            (
                format!("there is no table '{table}'"),
                format!(
                    "call create_table_if_missing() once at startup, or create it with the DDL \
                     in the README: {ddl}"
                ),
            )
        } else {
            (
                format!("the table '{table}' has no column {}", missing.join(", ")),
                format!(
                    "it is not the table shedlock uses: give another table name, or alter it \
                     to match the DDL in the README: {ddl}"
                ),
            )
        };
        Ok(Err(StoreFailure {
            store: D::STORE,
            action: action(),
            what_happened: format!("{} at {}: {what_happened}", D::TITLE, self.server),
            consequence,
        }
        .into()))
    }
}

pub(super) struct Prepared {
    pub(super) fencing: bool,
    pub(super) statements: Arc<Statements>,
}

/// What `check_tables` found.
pub(super) struct CheckedTables {
    pub(super) fencing: bool,
    /// Whether the shared holders' table is there with its columns.
    pub(super) holders: bool,
    /// Why a companion table cannot be used (missing, or without a column
    /// the statements use), for the first such table.
    pub(super) gap: Option<LockError>,
}

/// The statements of a lock table for calls that need no companion table.
pub(crate) struct LockTableStatements {
    pub(crate) statements: Arc<Statements>,
    /// Whether the shared holders' table is there (ShedLock for Java's
    /// table alone has none, nor any holder to end).
    pub(crate) holders: bool,
}
