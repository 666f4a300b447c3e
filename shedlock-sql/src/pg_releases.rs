//! Releases announced across processes on PostgreSQL: the release statement
//! sends `pg_notify(channel, name)` in its own transaction, and one listening
//! connection per provider (`LISTEN`), opened when something first waits,
//! wakes this process's waiters of that name once the release is committed.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use shedlock_core::{BoxFuture, ReleaseNotifiers};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::task::JoinHandle;

use crate::releases::ReleaseFeed;
use crate::table::TableName;

/// The longest channel name PostgreSQL takes (`NAMEDATALEN - 1` bytes).
const MAX_CHANNEL_LEN: usize = 63;
const CHANNEL_PREFIX: &str = "shedlock:";

/// How long opening the listening connection and `LISTEN` may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed subscription, waiters poll for this long before anyone
/// tries (and waits for) the subscription again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(30);
/// The first and the longest pause between attempts to listen again after
/// the connection was lost while somebody waits.
const RESUBSCRIBE_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RESUBSCRIBE_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A listening connection silent this long is replaced (if anyone still
/// waits) or closed: it never idles long enough for a NAT, a load balancer
/// or `idle_session_timeout` to drop it without a word, which would leave
/// waiters polling unnoticed. The same bound as the pool's idle connections.
const RENEW_AFTER_SILENCE: Duration = Duration::from_secs(60);

/// The channel releases of `table` are announced on: `shedlock:` and the
/// table's name as PostgreSQL folds it (lower case), or, when that is longer
/// than a channel name may be, its start and a hash of the whole. Every
/// process must spell the table alike (`locks` and `public.locks` are two
/// channels).
pub(crate) fn channel_of(table: &TableName) -> String {
    let folded = table.to_string().to_ascii_lowercase();
    if CHANNEL_PREFIX.len() + folded.len() <= MAX_CHANNEL_LEN {
        return format!("{CHANNEL_PREFIX}{folded}");
    }
    // FNV-1a: stable across builds and Rust versions, as every process must agree.
    let hash = folded
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    let kept = MAX_CHANNEL_LEN - CHANNEL_PREFIX.len() - 17;
    // The name is ASCII (validated), so any byte index is a character boundary.
    format!("{CHANNEL_PREFIX}{}#{hash:016x}", &folded[..kept])
}

/// The listening connection of one provider (shared by its clones).
pub(crate) struct PgReleaseFeed {
    /// The provider's pool, whose settings the listening connection copies;
    /// that connection is not taken from it.
    pool: PgPool,
    channel: String,
    notifiers: Arc<ReleaseNotifiers>,
    listening: tokio::sync::Mutex<Listening>,
}

#[derive(Default)]
struct Listening {
    task: Option<JoinHandle<()>>,
    failed_at: Option<Instant>,
}

impl PgReleaseFeed {
    /// Listens on `table`'s channel with `pool`'s settings once somebody
    /// waits, waking `notifiers`' waiters; nothing is opened yet.
    pub(crate) fn new(pool: &PgPool, table: &TableName, notifiers: &Arc<ReleaseNotifiers>) -> Self {
        PgReleaseFeed {
            pool: pool.clone(),
            channel: channel_of(table),
            notifiers: notifiers.clone(),
            listening: tokio::sync::Mutex::default(),
        }
    }
}

impl ReleaseFeed for PgReleaseFeed {
    /// Listens (again, if the connection was lost) before a waiter's first
    /// attempt, so a release right after that attempt is heard. If the
    /// connection cannot be made, waiters poll with backoff.
    fn listen(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut listening = self.listening.lock().await;
            if listening
                .task
                .as_ref()
                .is_some_and(|task| !task.is_finished())
            {
                return;
            }
            if listening
                .failed_at
                .is_some_and(|failed| failed.elapsed() < RESUBSCRIBE_AFTER)
            {
                return;
            }
            match subscribe(&self.pool, &self.channel).await {
                Ok(listener) => {
                    let notifiers = Arc::downgrade(&self.notifiers);
                    let (pool, channel) = (self.pool.clone(), self.channel.clone());
                    listening.task =
                        Some(tokio::spawn(dispatch(pool, channel, listener, notifiers)));
                    listening.failed_at = None;
                }
                Err(err) => {
                    tracing::debug!(
                        channel = %self.channel, error = %err,
                        "cannot listen for lock releases; waiters poll instead"
                    );
                    listening.failed_at = Some(Instant::now());
                }
            }
        })
    }
}

impl Drop for PgReleaseFeed {
    fn drop(&mut self) {
        if let Some(task) = self.listening.get_mut().task.take() {
            task.abort();
        }
    }
}

/// A connection of its own (a pool of one, with `pool`'s settings) listening
/// on `channel`.
async fn subscribe(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(SUBSCRIBE_TIMEOUT)
        .connect_lazy_with((*pool.connect_options()).clone());
    let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
        let mut listener = PgListener::connect_with(&own).await?;
        // A lost connection is reported at once: `dispatch` listens again
        // and wakes every waiter, as releases may have gone unheard.
        listener.eager_reconnect(false);
        listener.listen(channel).await?;
        Ok(listener)
    })
    .await;
    subscribed.unwrap_or_else(|_elapsed| {
        Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "listening for lock releases timed out",
        )))
    })
}

/// Wakes the waiters of each announced name until the feed goes. When the
/// connection is lost (killed, a restart) or has been silent for
/// [`RENEW_AFTER_SILENCE`], it listens again while anyone waits, then wakes
/// every waiter: a release announced in between was missed, so each tries
/// again at once rather than at its next poll. When nobody waits it stops;
/// the next waiter starts it.
async fn dispatch(
    pool: PgPool,
    channel: String,
    first: PgListener,
    notifiers: Weak<ReleaseNotifiers>,
) {
    let mut listener = Some(first);
    let mut backoff = RESUBSCRIBE_BACKOFF_MIN;
    loop {
        if let Some(listener) = listener.take() {
            deliver(listener, &notifiers).await;
        }
        if !notifiers
            .upgrade()
            .is_some_and(|notifiers| notifiers.any_watched())
        {
            return;
        }
        match subscribe(&pool, &channel).await {
            Ok(renewed) => {
                if let Some(notifiers) = notifiers.upgrade() {
                    notifiers.notify_all();
                }
                listener = Some(renewed);
                backoff = RESUBSCRIBE_BACKOFF_MIN;
            }
            Err(err) => {
                tracing::debug!(
                    %channel, error = %err,
                    "cannot listen for lock releases again; waiters poll meanwhile"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RESUBSCRIBE_BACKOFF_MAX);
            }
        }
    }
}

/// Wakes the waiters of each name announced on `listener` until its
/// connection is lost or silent for [`RENEW_AFTER_SILENCE`]. The listener is
/// dropped afterwards, so a wait cut short leaves nothing half read.
async fn deliver(mut listener: PgListener, notifiers: &Weak<ReleaseNotifiers>) {
    loop {
        let heard = tokio::time::timeout(RENEW_AFTER_SILENCE, listener.try_recv()).await;
        match heard {
            Ok(Ok(Some(notification))) => {
                let Some(notifiers) = notifiers.upgrade() else {
                    return;
                };
                notifiers.notify_released(notification.payload());
            }
            Ok(Ok(None)) => {
                tracing::debug!("lock release listener lost its connection; listening again");
                return;
            }
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "lock release listener failed; listening again");
                return;
            }
            Err(_silent) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> TableName {
        TableName::parse(name).unwrap_or_else(|err| panic!("{err}")) // allow-panic: unit test
    }

    #[test]
    fn the_channel_is_the_folded_table_name() {
        assert_eq!(channel_of(&table("shedlock")), "shedlock:shedlock");
        assert_eq!(
            channel_of(&table("Ops.Job_Locks")),
            "shedlock:ops.job_locks"
        );
    }

    #[test]
    fn a_long_table_name_gives_a_channel_within_the_limit() {
        let long = format!("{}.{}", "s".repeat(50), "t".repeat(50));
        let other = format!("{}.{}", "s".repeat(50), "u".repeat(50));
        let channel = channel_of(&table(&long));
        assert_eq!(channel.len(), MAX_CHANNEL_LEN);
        assert!(channel.starts_with("shedlock:sss"));
        assert_ne!(channel, channel_of(&table(&other)));
        assert_eq!(channel, channel_of(&table(&long.to_uppercase())));
    }
}
