//! Statement failures: what went wrong, in words that name its kind, and
//! whether the statement may have run anyway.

use shedlock_core::{LockError, StoreFailure};

use crate::dialect::Dialect;

/// A statement that failed, and whether it may have run anyway.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The statement was sent and its answer never came: it may have run.
    pub(crate) unanswered: bool,
    /// What went wrong, named by its kind; sqlx's own words are in `cause`.
    pub(crate) what_happened: String,
    pub(crate) cause: Option<sqlx::Error>,
}

impl Failure {
    /// `err`, a failure that is certain (nothing ran).
    pub(crate) fn of(err: sqlx::Error) -> Self {
        Failure {
            unanswered: false,
            what_happened: kind_of(&err),
            cause: Some(err),
        }
    }

    /// The same failure as the reason for `what`: "{what}: {what happened}".
    pub(super) fn explaining(self, what: &str) -> Self {
        Failure {
            what_happened: format!("{what}: {}", self.what_happened),
            ..self
        }
    }

    /// The error of `action` at `server`, with sqlx's error as its source only.
    pub(crate) fn into_error<D: Dialect>(
        self,
        server: &str,
        action: impl Into<String>,
        consequence: &str,
    ) -> LockError {
        let failure = StoreFailure {
            store: D::STORE,
            action: action.into(),
            what_happened: format!("{} at {server}: {}", D::TITLE, self.what_happened),
            consequence: consequence.to_owned(),
        };
        match self.cause {
            Some(cause) => failure.caused_by(cause),
            None => failure.into(),
        }
    }
}

/// What `err` is, in words that name its kind and what to check; its own
/// text (the server's message, the OS error) stays in the source.
pub(super) fn kind_of(err: &sqlx::Error) -> String {
    use sqlx::Error;
    let kind = match err {
        Error::Database(answer) => {
            return match answer.code() {
                Some(code) => format!("the database answered with error {code}"),
                None => "the database answered with an error".to_owned(),
            };
        }
        Error::Io(_) => {
            "the connection failed (the server closed or refused it, or the network dropped it)"
        }
        Error::Tls(_) => {
            "the TLS connection could not be made: check the server's certificate and the URL's \
             TLS settings"
        }
        Error::Configuration(_) => "the connection settings were refused",
        Error::Protocol(_) => "the database's answer could not be read (a protocol error)",
        Error::PoolTimedOut => {
            "no connection within the pool's acquire timeout: the database refuses or does not \
             answer connections (down, restarting, or unreachable from here), or all of the \
             pool's connections stayed in use"
        }
        Error::PoolClosed => "the connection pool was closed (Pool::close was called)",
        Error::WorkerCrashed => "the database driver's background worker stopped",
        Error::RowNotFound
        | Error::ColumnNotFound(_)
        | Error::ColumnIndexOutOfBounds { .. }
        | Error::ColumnDecode { .. }
        | Error::Decode(_)
        | Error::TypeNotFound { .. } => {
            "the answer did not have the expected shape: check that the table has ShedLock's \
             columns and types"
        }
        _ => "the database client failed",
    };
    kind.to_owned()
}

/// A pool that could not connect to `server`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn connect_error<D: Dialect>(server: &str, err: sqlx::Error) -> LockError {
    Failure::of(err).into_error::<D>(
        server,
        "connecting",
        "check that the server runs there, that the URL's user, password and database are \
         right, and, where the server requires TLS, the URL's TLS settings (sslmode=require \
         on PostgreSQL, ssl-mode=REQUIRED on MySQL; feature `tls`)",
    )
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    /// Every layer's message, joined as `{:#}` of anyhow prints them.
    fn layers(err: &LockError) -> Vec<String> {
        std::iter::successors(Some(err as &dyn Error), |e| (*e).source())
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    #[cfg(feature = "postgres")]
    fn a_statement_error_names_its_kind_and_keeps_sqlx_words_in_the_source() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by peer");
        let failure = Failure::of(sqlx::Error::Io(refused));
        let err = failure.into_error::<crate::Postgres>(
            "db:5432/test",
            "acquiring lock 'report'",
            "the lock was not taken",
        );
        let layers = layers(&err);
        assert_eq!(
            layers,
            [
                "lock store error (postgres) while acquiring lock 'report': PostgreSQL at \
                 db:5432/test: the connection failed (the server closed or refused it, or the \
                 network dropped it); the lock was not taken",
                // sqlx's own "error communicating with database: {cause}", without the cause.
                "error communicating with database",
                "refused by peer",
            ]
        );
    }
}
