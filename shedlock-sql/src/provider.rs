//! The methods the three public providers share, written once.

/// Implements the shared builder methods, `LockProvider` and `Debug` for a
/// provider struct whose field `locks` is a `SqlLocks`.
macro_rules! sql_provider {
    ($provider:ident) => {
        impl $provider {
            /// Uses the table `table` (`table` or `schema.table`; default
            /// `shedlock`, as ShedLock). Only plain identifiers are accepted,
            /// as the name is written into statements.
            ///
            /// # Errors
            ///
            /// [`LockError::InvalidConfiguration`] for anything but
            /// `[A-Za-z_][A-Za-z0-9_]*`, optionally after `schema.`, at most
            /// 63 characters each.
            pub fn with_table_name(self, table: &str) -> Result<Self, LockError> {
                Ok($provider {
                    locks: self.locks.with_table_name(table)?,
                })
            }

            /// Says whether the table has the `fencing_token BIGINT` column
            /// (see the crate docs). Without this call, it is detected when
            /// the provider takes its first lock.
            pub fn with_fencing_column(self, fencing: bool) -> Self {
                $provider {
                    locks: self.locks.with_fencing_column(fencing),
                }
            }

            /// Sets who this process is in `locked_by` (default: host name and
            /// process id). Each acquisition appends `;id=<unique id>`; the
            /// whole is cut to fit `VARCHAR(255)`.
            pub fn with_locked_by(self, locked_by: impl Into<String>) -> Self {
                $provider {
                    locks: self.locks.with_locked_by(locked_by),
                }
            }

            /// Sets how long one statement (or waiting for a connection of the
            /// pool) may take; default [`DEFAULT_STATEMENT_TIMEOUT`](crate::DEFAULT_STATEMENT_TIMEOUT).
            /// An acquisition that times out after it was sent is reported as
            /// [`LockError::AcquisitionUncertain`] and its possible lease released.
            pub fn with_statement_timeout(self, timeout: std::time::Duration) -> Self {
                $provider {
                    locks: self.locks.with_statement_timeout(timeout),
                }
            }

            /// Creates the lock table if it does not exist: ShedLock's four
            /// columns plus `fencing_token BIGINT NOT NULL DEFAULT 0` (which
            /// ShedLock for Java ignores). An existing table is left as it is.
            ///
            /// # Errors
            ///
            /// [`LockError::Store`] when the statement fails (e.g. no
            /// `CREATE` privilege: create the table with the README's DDL).
            pub async fn create_table_if_missing(&self) -> Result<(), LockError> {
                self.locks.create_table_if_missing().await
            }

            /// Whether fencing tokens come from the `fencing_token` column
            /// (configured, or detected now). Without it, tokens come from the
            /// database's clock: see the crate docs.
            ///
            /// # Errors
            ///
            /// [`LockError::Store`] when the table does not exist or cannot be read.
            pub async fn uses_fencing_column(&self) -> Result<bool, LockError> {
                self.locks.uses_fencing_column().await
            }

            /// The lock table's name, as given (`schema.table` or `table`).
            pub fn table_name(&self) -> String {
                self.locks.table_name()
            }

            /// `locked_by` of this provider's acquisitions, before the unique id.
            pub fn locked_by(&self) -> &str {
                self.locks.locked_by()
            }
        }

        impl LockProvider for $provider {
            fn try_lock<'a>(
                &'a self,
                config: &'a LockConfiguration,
            ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
                Box::pin(self.locks.try_lock(config))
            }

            fn watch_releases<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ReleaseWatch> {
                let watch = self.locks.watch_releases(name);
                Box::pin(async move { watch })
            }

            fn scope(&self) -> &str {
                self.locks.scope()
            }
        }

        impl std::fmt::Debug for $provider {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($provider))
                    .field("server", &self.locks.server())
                    .field("table", &self.locks.table_name())
                    .field("locked_by", &self.locks.locked_by())
                    .finish_non_exhaustive()
            }
        }
    };
}

pub(crate) use sql_provider;
