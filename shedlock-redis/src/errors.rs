//! Redis failures as [`LockError`]s: what happened, said as what it is (a
//! timeout, a refused or closed connection, a server in a state that refuses
//! the command), with what to do; the client's error kept as the source only.

use redis::RedisError;
use shedlock_core::{LockError, StoreFailure};

use crate::connection::{connection_closed, never_sent};

pub(crate) const STORE: &str = "redis";

/// A store error: `action` failed at `server` because of `err`, with
/// `consequence` telling what that left behind.
pub(crate) fn store_error(
    server: &str,
    action: &str,
    err: &RedisError,
    consequence: &str,
) -> LockError {
    StoreFailure {
        store: STORE,
        action: action.to_owned(),
        what_happened: what_happened(server, err),
        consequence: consequence.to_owned(),
    }
    .caused_by(err.clone())
}

/// A connection that could not be made.
pub(crate) fn connect_error(server: &str, err: &RedisError) -> LockError {
    store_error(server, "connecting", err, "no lock was touched")
}

/// A URL that did not parse. The client's message never repeats the URL, so
/// no credentials can leak through it.
pub(crate) fn invalid_url(err: RedisError) -> LockError {
    LockError::InvalidConfiguration(format!(
        "the Redis URL is not valid ({}); expected redis://[user:password@]host:port[/db] \
         or rediss://... for TLS",
        err.detail().unwrap_or(err.category())
    ))
}

/// Whether the command may have run on the server although no answer came
/// back, so what it did must be settled by its value. A redirect that the
/// cluster client gave up on counts: an earlier attempt may have run on the
/// node the slot was moving to.
pub(crate) fn reply_may_be_lost(err: &RedisError) -> bool {
    let lost = (err.is_timeout() || err.is_io_error() || err.is_connection_dropped())
        && !err.is_connection_refusal()
        && !never_sent(err);
    lost || matches!(err.code(), Some("ASK" | "MOVED"))
}

/// What `err` means, in words that name the failure and what to do; never
/// the URL's credentials (errors from the client do not repeat them).
pub(crate) fn what_happened(server: &str, err: &RedisError) -> String {
    let redis = format!("Redis at {server}");
    if err.is_connection_refusal() {
        return format!(
            "{redis} refused the connection: check that it runs there and listens on that port"
        );
    }
    if never_sent(err) {
        return format!(
            "could not connect to {redis} ({}): it may be restarting, unreachable, or at \
             maxclients (it then resets new connections); nothing was sent",
            if err.is_timeout() {
                "no answer within the connection timeout"
            } else {
                "the connection was closed while it was being set up"
            }
        );
    }
    if err.is_timeout() {
        return format!(
            "{redis} did not answer within the response timeout (the server or the network is \
             slow or down)"
        );
    }
    if connection_closed(err) {
        return format!(
            "the connection to {redis} was closed and could not be made again (the server \
             stopped, restarted, or closed it)"
        );
    }
    if err.kind() == redis::ErrorKind::AuthenticationFailed {
        return credentials_refused(&redis);
    }
    let detail = err.detail().unwrap_or_default();
    match code_of(err) {
        Some("OOM") => format!(
            "{redis} is out of memory (used memory above maxmemory with the noeviction policy) \
             and refuses writes: free memory or raise maxmemory"
        ),
        Some("READONLY") => format!(
            "{redis} is a read-only replica: point the URL at the master, or connect through \
             Sentinel so a failover is followed"
        ),
        Some("LOADING") => format!(
            "{redis} is loading its data set after a start and answers nothing else yet: retry \
             once it has loaded"
        ),
        Some("BUSY") => format!(
            "{redis} is busy running a long script and answers nothing else: wait, or end it \
             with SCRIPT KILL"
        ),
        Some("MASTERDOWN") => {
            format!("{redis} is a replica that lost its master: point the URL at the master")
        }
        Some("NOAUTH" | "WRONGPASS") => credentials_refused(&redis),
        Some("NOPERM") => format!(
            "{redis} denied a command to the ACL user: the user needs +@scripting, +set, +incr, \
             +pexpire, +get, +del and +publish on the lock keys and the release channel"
        ),
        Some("CROSSSLOT" | "MOVED" | "ASK" | "CLUSTERDOWN" | "TRYAGAIN") => format!(
            "{redis} could not serve the lock's slot now (the cluster is resharding or down): \
             retry later"
        ),
        _ if detail.contains("max number of clients") => format!(
            "{redis} has reached maxclients and accepts no more connections: raise maxclients \
             or close idle clients"
        ),
        Some(code) => format!("{redis} answered with a {code} error"),
        None => format!("{redis} failed: {} error", err.category()),
    }
}

/// The error's code; for an error a script met (Redis before 7 wraps it:
/// `ERR Error running script (call to f_..): @user_script:1: -OOM ...`), the
/// code of that inner error.
fn code_of(err: &RedisError) -> Option<&str> {
    let code = err.code()?;
    if code != "ERR" {
        return Some(code);
    }
    let inner = err
        .detail()
        .filter(|detail| detail.starts_with("Error running script"))
        .and_then(|detail| detail.split(": -").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|word| word.chars().all(|c| c.is_ascii_uppercase()));
    Some(inner.unwrap_or(code))
}

fn credentials_refused(redis: &str) -> String {
    format!(
        "{redis} did not accept the credentials (wrong or missing password, or the ACL user is \
         disabled): check the URL's user and password"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(resp: &str) -> RedisError {
        match redis::parse_redis_value(resp.as_bytes()) {
            Ok(redis::Value::ServerError(err)) => err.into(),
            other => RedisError::from((
                redis::ErrorKind::Client,
                "not a server error",
                format!("{other:?}"),
            )),
        }
    }

    #[test]
    fn each_failure_reads_as_what_it_is() {
        let io = |kind| RedisError::from(std::io::Error::from(kind));
        let cases = [
            (io(std::io::ErrorKind::TimedOut), "did not answer within"),
            (
                io(std::io::ErrorKind::ConnectionRefused),
                "refused the connection",
            ),
            (io(std::io::ErrorKind::BrokenPipe), "was closed"),
            (io(std::io::ErrorKind::ConnectionReset), "was closed"),
            (
                server_error("-OOM command not allowed\r\n"),
                "out of memory",
            ),
            (
                server_error("-READONLY You can't write\r\n"),
                "read-only replica",
            ),
            (
                server_error("-LOADING Redis is loading\r\n"),
                "loading its data set",
            ),
            (server_error("-BUSY Redis is busy\r\n"), "SCRIPT KILL"),
            (server_error("-WRONGPASS invalid\r\n"), "credentials"),
            (server_error("-NOPERM no\r\n"), "ACL user"),
            (
                server_error("-ERR max number of clients reached\r\n"),
                "maxclients",
            ),
            (server_error("-WRONGTYPE Operation\r\n"), "WRONGTYPE error"),
            (
                server_error(
                    "-ERR Error running script (call to f_1): @user_script:1: @user_script: 1: \
                     -OOM command not allowed when used memory > 'maxmemory'.\r\n",
                ),
                "out of memory",
            ),
        ];
        for (err, expected) in cases {
            let text = what_happened("127.0.0.1:6379", &err);
            assert!(text.contains(expected), "{err:?} read as {text:?}");
        }
    }

    #[test]
    fn the_cause_is_the_source_and_not_repeated_in_the_message() {
        let err = server_error("-OOM command not allowed when used memory > 'maxmemory'\r\n");
        let lock_error = store_error("host:1", "acquiring lock 'a'", &err, "not taken");
        let message = lock_error.to_string();
        assert!(!message.contains("command not allowed"), "{message}");
        let source = std::error::Error::source(&lock_error).map(ToString::to_string);
        assert!(
            source.is_some_and(|source| source.contains("command not allowed")),
            "{lock_error:?}"
        );
    }

    #[test]
    fn a_store_error_chain_prints_each_cause_once() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let cases = [
            // redis-rs shows an I/O or server error as its own text and as its source.
            (RedisError::from(reset), "reset by peer"),
            (
                server_error("-OOM command not allowed\r\n"),
                "command not allowed",
            ),
        ];
        for (err, cause) in cases {
            let lock_error = store_error("host:1", "acquiring lock 'a'", &err, "not taken");
            let layers: Vec<String> =
                std::iter::successors(Some(&lock_error as &dyn std::error::Error), |e| {
                    (*e).source()
                })
                .map(ToString::to_string)
                .collect();
            // What `{:#}` of anyhow prints.
            let printed = layers.join(": ");
            assert_eq!(layers.len(), 2, "{printed}");
            assert_eq!(printed.matches(cause).count(), 1, "{printed}");
        }
    }

    #[test]
    fn refused_connections_lost_no_answer_and_timeouts_may_have() {
        let io = |kind| RedisError::from(std::io::Error::from(kind));
        assert!(!reply_may_be_lost(&io(
            std::io::ErrorKind::ConnectionRefused
        )));
        assert!(reply_may_be_lost(&io(std::io::ErrorKind::TimedOut)));
        assert!(reply_may_be_lost(&io(std::io::ErrorKind::BrokenPipe)));
        assert!(!reply_may_be_lost(&server_error("-OOM no\r\n")));
    }
}
