//! `provider = <expr>` in every form, and `crate = ..` for a renamed facade.

extern crate shedlock as extern_renamed;

use std::sync::{Arc, LazyLock};

use shedlock as renamed;
use shedlock::{InMemoryLockProvider, LockError, LockProvider, scheduler_lock};

fn assert_send<T: Send>(_: T) {}

static VALUE: LazyLock<InMemoryLockProvider> = LazyLock::new(InMemoryLockProvider::new);

struct Service {
    value: InMemoryLockProvider,
    shared: Arc<InMemoryLockProvider>,
    dynamic: Arc<dyn LockProvider>,
    boxed: Box<dyn LockProvider>,
}

impl Service {
    #[scheduler_lock(name = "field-value", lock_at_most_for = "1m", provider = self.value)]
    async fn value(&self) -> u8 {
        1
    }

    #[scheduler_lock(name = "field-arc", lock_at_most_for = "1m", provider = self.shared)]
    async fn shared(&self) -> u8 {
        2
    }

    #[scheduler_lock(name = "field-dyn", lock_at_most_for = "1m", provider = self.dynamic)]
    async fn dynamic(&self) -> u8 {
        3
    }

    #[scheduler_lock(name = "field-box", lock_at_most_for = "1m", provider = &self.boxed)]
    async fn boxed(&self) -> u8 {
        4
    }

    #[scheduler_lock(name = "mut-self", lock_at_most_for = "1m", provider = self.dynamic.clone())]
    async fn mutate(&mut self) -> u8 {
        self.value = InMemoryLockProvider::new();
        5
    }
}

#[scheduler_lock(name = "static", lock_at_most_for = "1m", provider = VALUE)]
async fn from_static() -> u8 {
    6
}

#[scheduler_lock(name = "reference", lock_at_most_for = "1m", provider = &*VALUE)]
async fn from_reference() -> u8 {
    7
}

#[scheduler_lock(name = "argument", lock_at_most_for = "1m", provider = locks)]
async fn from_argument(locks: &dyn LockProvider) -> u8 {
    8
}

#[scheduler_lock(name = "argument-{n}", lock_at_most_for = "1m", provider = locks)]
async fn from_owned_argument(locks: Arc<dyn LockProvider>, n: u8) -> u8 {
    n
}

#[scheduler_lock(name = "use-renamed", lock_at_most_for = "1m", provider = VALUE, crate = renamed)]
async fn use_renamed() -> u8 {
    10
}

#[scheduler_lock(name = "extern-renamed", lock_at_most_for = "1m", provider = VALUE, crate = ::extern_renamed)]
async fn extern_renamed() -> u8 {
    11
}

#[scheduler_lock(name = "string-path", lock_at_most_for = "1m", provider = VALUE, crate = "renamed")]
async fn string_path() -> u8 {
    12
}

mod nested {
    #[shedlock::scheduler_lock(name = "nested", lock_at_most_for = "PT1M", lock_at_least_for = "PT0.5S", provider = super::VALUE, crate = crate::renamed)]
    pub async fn nested() -> u8 {
        13
    }
}

fn main() -> Result<(), LockError> {
    let dynamic: Arc<dyn LockProvider> = Arc::new(InMemoryLockProvider::new());
    let mut service = Service {
        value: InMemoryLockProvider::new(),
        shared: Arc::new(InMemoryLockProvider::new()),
        dynamic: dynamic.clone(),
        boxed: Box::new(InMemoryLockProvider::new()),
    };
    assert_send(service.value());
    assert_send(service.shared());
    assert_send(service.dynamic());
    assert_send(service.boxed());
    assert_send(from_static());
    assert_send(from_reference());
    assert_send(from_argument(&*dynamic));
    assert_send(from_owned_argument(dynamic.clone(), 9));
    assert_send(nested::nested());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| LockError::InvalidConfiguration(e.to_string()))?;
    runtime.block_on(async {
        assert_eq!(service.value().await?, Some(1));
        assert_eq!(service.shared().await?, Some(2));
        assert_eq!(service.dynamic().await?, Some(3));
        assert_eq!(service.boxed().await?, Some(4));
        assert_eq!(service.mutate().await?, Some(5));
        assert_eq!(from_static().await?, Some(6));
        assert_eq!(from_reference().await?, Some(7));
        assert_eq!(from_argument(&*dynamic).await?, Some(8));
        assert_eq!(from_owned_argument(dynamic, 9).await?, Some(9));
        assert_eq!(use_renamed().await?, Some(10));
        assert_eq!(extern_renamed().await?, Some(11));
        assert_eq!(string_path().await?, Some(12));
        assert_eq!(nested::nested().await?, Some(13));
        Ok(())
    })
}
