//! Release notifications: the release script publishes a freed lock's key on
//! [`RELEASE_CHANNEL`]; one subscriber connection per provider wakes the
//! waiters of that key, so a waiting job starts right after the release.
//! Expiries are not published; a failed attempt learns the remaining lease
//! instead ([`ReleaseHub::note_lease_end`]), so waiters wake when it ends.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::Client;
use shedlock_core::{ReleaseNotifiers, ReleaseWatch};
use tokio::task::JoinHandle;

/// The channel every release is published on; the message is the lock key.
pub(crate) const RELEASE_CHANNEL: &str = "shedlock:released";

const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed subscription, waiters poll for this long before anyone
/// tries (and waits for) the subscription again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(30);
/// The first and the longest pause between attempts to subscribe again
/// after the subscription was lost while somebody waits.
const RESUBSCRIBE_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RESUBSCRIBE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The subscriber shared by clones of a provider.
pub(crate) struct ReleaseHub {
    /// Where to subscribe; `None`: no notifications (Redis Cluster), so
    /// waiters rely on lease-end hints and polling.
    client: Option<Client>,
    /// The notifiers of the lock keys somebody waits for.
    watchers: Arc<ReleaseNotifiers>,
    listener: tokio::sync::Mutex<Listener>,
}

#[derive(Default)]
struct Listener {
    task: Option<JoinHandle<()>>,
    failed_at: Option<Instant>,
}

impl ReleaseHub {
    pub(crate) fn new(client: Option<Client>) -> Self {
        ReleaseHub {
            client,
            watchers: Arc::default(),
            listener: tokio::sync::Mutex::default(),
        }
    }

    /// A watch on releases of `lock_key`. If the subscription cannot be made,
    /// the watch never fires and the waiter polls with backoff.
    pub(crate) async fn watch(&self, lock_key: &str) -> ReleaseWatch {
        let watch = self.watchers.watch(lock_key);
        self.ensure_listening().await;
        watch
    }

    /// Tells the waiters of `lock_key`, if any, when its holder's lease ends.
    pub(crate) fn note_lease_end(&self, lock_key: &str, lease_ends_at: Option<Instant>) {
        self.watchers.note_lease_end(lock_key, lease_ends_at);
    }

    /// Subscribes (again, if the connection was lost) before any waiter's first attempt.
    async fn ensure_listening(&self) {
        let mut listener = self.listener.lock().await;
        if listener
            .task
            .as_ref()
            .is_some_and(|task| !task.is_finished())
        {
            return;
        }
        let Some(client) = &self.client else {
            return;
        };
        if listener
            .failed_at
            .is_some_and(|failed| failed.elapsed() < RESUBSCRIBE_AFTER)
        {
            return;
        }
        match subscribe(client).await {
            Ok(pubsub) => {
                let watchers = Arc::downgrade(&self.watchers);
                listener.task = Some(tokio::spawn(dispatch(client.clone(), pubsub, watchers)));
                listener.failed_at = None;
            }
            Err(err) => {
                tracing::debug!(error = %err, "cannot subscribe to lock releases; waiters poll instead");
                listener.failed_at = Some(Instant::now());
            }
        }
    }
}

impl Drop for ReleaseHub {
    fn drop(&mut self) {
        if let Some(task) = self.listener.get_mut().task.take() {
            task.abort();
        }
    }
}

/// A connection subscribed to [`RELEASE_CHANNEL`].
async fn subscribe(client: &Client) -> redis::RedisResult<redis::aio::PubSub> {
    let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(RELEASE_CHANNEL).await?;
        Ok(pubsub)
    })
    .await;
    subscribed.unwrap_or_else(|_| {
        Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "subscribing to lock releases timed out",
        )))
    })
}

/// Wakes the waiters of each published key until the hub goes. When the
/// connection is closed (an idle timeout, `CLIENT KILL`, a restart), it
/// subscribes again while anyone waits, then wakes every waiter: a release
/// published in between was missed, so each tries again at once rather than
/// at its next poll. When nobody waits it stops; the next waiter starts it.
async fn dispatch(client: Client, first: redis::aio::PubSub, watchers: Weak<ReleaseNotifiers>) {
    let mut pubsub = Some(first);
    let mut backoff = RESUBSCRIBE_BACKOFF_MIN;
    loop {
        if let Some(pubsub) = pubsub.take() {
            deliver(pubsub, &watchers).await;
            tracing::debug!("lock release subscription lost; subscribing again");
        }
        if !watchers
            .upgrade()
            .is_some_and(|watchers| watchers.any_watched())
        {
            return;
        }
        match subscribe(&client).await {
            Ok(renewed) => {
                if let Some(watchers) = watchers.upgrade() {
                    watchers.notify_all();
                }
                pubsub = Some(renewed);
                backoff = RESUBSCRIBE_BACKOFF_MIN;
            }
            Err(err) => {
                tracing::debug!(error = %err, "cannot subscribe to lock releases again; waiters poll meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RESUBSCRIBE_BACKOFF_MAX);
            }
        }
    }
}

/// Wakes the waiters of each key published on `pubsub` until it ends.
async fn deliver(pubsub: redis::aio::PubSub, watchers: &Weak<ReleaseNotifiers>) {
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let Some(watchers) = watchers.upgrade() else {
            return;
        };
        if let Ok(lock_key) = message.get_payload::<String>() {
            watchers.notify_released(&lock_key);
        }
    }
}
