//! Every locked run runs inside a `scheduler_lock` span with its lock's name,
//! fencing token and mode, so the job's own log lines carry its lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shedlock_core::{InMemoryLockProvider, LockConfiguration, LockingTaskExecutor};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type Fields = Vec<(String, String)>;
/// A span's name and fields.
type SpanSeen = (String, Fields);
/// An event's message and the span it ran in.
type EventSeen = (String, Option<SpanSeen>);

/// A subscriber that remembers spans and, for each event, the span it ran in.
#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<HashMap<u64, SpanSeen>>>,
    events: Arc<Mutex<Vec<EventSeen>>>,
    next: Arc<AtomicU64>,
}

thread_local! {
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut fields = Fields::new();
        span.record(&mut Collect(&mut fields));
        self.spans
            .lock()
            .unwrap()
            .insert(id, (span.metadata().name().to_owned(), fields));
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some((_, fields)) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Collect(fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::new();
        event.record(&mut Collect(&mut fields));
        let message = fields
            .into_iter()
            .find(|(name, _)| name == "message")
            .map(|(_, value)| value)
            .unwrap_or_default();
        let current = ENTERED.with(|entered| entered.borrow().last().copied());
        let span = current.and_then(|id| self.spans.lock().unwrap().get(&id).cloned());
        self.events.lock().unwrap().push((message, span));
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, _: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().pop());
    }
}

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .rev()
        .find(|(field, _)| field == name)
        .map(|(_, value)| value.as_str())
}

#[tokio::test]
async fn a_jobs_own_log_lines_carry_its_lock() {
    let recorder = Recorder::default();
    let _default = tracing::subscriber::set_default(recorder.clone());
    let executor = LockingTaskExecutor::new(InMemoryLockProvider::new());
    let config =
        LockConfiguration::new("span-report", Duration::from_secs(10), Duration::ZERO).unwrap();
    let ran = executor
        .execute(&config, async {
            tracing::info!("the job's own line");
        })
        .await
        .unwrap();
    assert_eq!(ran, Some(()));

    let events = recorder.events.lock().unwrap();
    let (_, span) = events
        .iter()
        .find(|(message, _)| message == "the job's own line")
        .expect("the job's line was not recorded");
    let (name, fields) = span.as_ref().expect("the job's line ran outside any span");
    assert_eq!(name, "scheduler_lock");
    assert_eq!(field(fields, "lock"), Some("span-report"), "{fields:?}");
    assert_eq!(field(fields, "mode"), Some("Exclusive"), "{fields:?}");
    let token: u64 = field(fields, "fencing_token")
        .and_then(|token| token.parse().ok())
        .unwrap_or_else(|| panic!("no fencing token in the span: {fields:?}"));
    assert!(token > 0);
    // The executor's own events about the lock stay outside the job's span.
    assert!(
        events
            .iter()
            .any(|(message, span)| message == "lock acquired" && span.is_none()),
        "{events:?}"
    );
}
