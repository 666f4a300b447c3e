//! The Lua scripts behind the lock operations: each is one round trip, on keys
//! of one Cluster slot. (An exclusive acquisition that does not wait sends
//! plain commands instead: see `provider.rs`.) `redis::Script` sends them by
//! SHA (EVALSHA) and loads them on a NOSCRIPT reply.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{
    Cmd, ErrorKind, FromRedisValue, Pipeline, RedisResult, Script, ServerErrorKind, Value,
};

use crate::replica_acks::{Acknowledgement, ReplicaAcks};

macro_rules! scripts {
    ($($(#[$doc:meta])* $name:ident = $($file:literal),+;)*) => {$(
        $(#[$doc])*
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!($(include_str!(concat!("scripts/", $file))),+))
        });
    )*};
}

scripts! {
    /// Exclusive `SET NX PX` or shared permits, checked against the capacity,
    /// plus the fencing token, atomically: waiting and shared acquisitions,
    /// and exclusive ones on servers without `SET NX GET` (before Redis 7).
    ACQUIRE = "fence.lua", "lease_value.lua", "acquire.lua", "acquire_main.lua";
    /// The acquisition of one tick (`for_tick`): the tick's claim and the
    /// lock in one step, and the tick claimed before.
    CLAIM_TICK = "fence.lua", "lease_value.lua", "acquire.lua", "claim_tick.lua";
    /// A one-round-trip exclusive acquisition that may not stand (paused,
    /// shared holders, a late answer): kept and renewed, or given back.
    SETTLE = "lease_value.lua", "settle.lua";
    /// The fencing token of an exclusive lease, issued on request while the
    /// lease is this acquisition's.
    TOKEN = "fence.lua", "lease_value.lua", "token.lua";
    /// Compare-and-delete (or compare-and-shorten for `lock_at_least_for`),
    /// recording nothing: the release of every plain cycle.
    RELEASE = "lease_value.lua", "no_history.lua", "release.lua";
    /// [`RELEASE`], recording the run after one in the lock's history.
    RELEASE_RECORDING = "lease_value.lua", "history.lua", "release.lua";
    /// Records a run whose lease had ended.
    RECORD_RUN = "history.lua", "record_run.lua";
    /// Compare-and-expire.
    EXTEND = "lease_value.lua", "extend.lua";
    /// A shared holder's release, checked against its own value, recording
    /// the run after one.
    RELEASE_SHARED_RECORDING = "settle_shared.lua", "history.lua", "release_shared.lua";
    /// [`RELEASE_SHARED_RECORDING`] recording nothing.
    RELEASE_SHARED = "settle_shared.lua", "no_history.lua", "release_shared.lua";
    /// A shared holder's extension, checked against its own value.
    EXTEND_SHARED = "settle_shared.lua", "extend_shared.lua";
    /// A lock's state, read in one step.
    STATE = "state.lua";
    /// Stores a capacity.
    SET_CAPACITY = "fence_park.lua", "set_capacity.lua";
    /// Capacity 0, remembering the capacity to resume to.
    PAUSE = "fence_park.lua", "pause.lua";
    /// Back to the capacity from before the pause.
    RESUME = "fence_park.lua", "resume.lua";
    /// Ends every lease of a lock.
    FORCE_RELEASE = "force_release.lua";
}

/// An `EVALSHA` of `script` with `keys` keys; the caller adds the keys, then
/// the arguments. One buffer sized for `data` bytes of them (a
/// `ScriptInvocation` allocates per key and argument): for the scripts every
/// lock cycle runs.
pub(crate) fn evalsha(script: &Script, keys: usize, args: usize, data: usize) -> Cmd {
    let mut cmd = Cmd::with_capacity(3 + keys + args, 64 + data);
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
    cmd
}

/// Runs an [`evalsha`] command of `script`, loading the script once when the
/// server does not know it (a new or restarted server).
pub(crate) async fn invoke<T: FromRedisValue>(
    script: &Script,
    cmd: &Cmd,
    connection: &mut impl ConnectionLike,
) -> RedisResult<T> {
    match cmd.query_async(connection).await {
        Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.load_async(connection).await?;
            cmd.query_async(connection).await
        }
        result => result,
    }
}

/// [`invoke`], followed by `WAIT` in the same round trip when replica
/// acknowledgement is asked: the script's answer, and whether as many
/// replicas as asked have what it wrote. `WAIT` runs after the script on
/// the same connection, so it waits for the script's writes (and those
/// before them). On NOSCRIPT the script is loaded and both are sent again:
/// the script did not run, and the first `WAIT` only waited.
pub(crate) async fn invoke_acknowledged<T: FromRedisValue>(
    script: &Script,
    cmd: &Cmd,
    acks: Option<ReplicaAcks>,
    connection: &mut impl ConnectionLike,
) -> RedisResult<(T, Acknowledgement)> {
    let Some(acks) = acks else {
        return Ok((
            invoke(script, cmd, connection).await?,
            Acknowledgement::Enough,
        ));
    };
    let mut pipeline = Pipeline::with_capacity(2);
    pipeline.add_command(cmd.clone()).add_command(acks.wait());
    let mut replies = connection.req_packed_commands(&pipeline, 0, 2).await?;
    if matches!(replies.first(), Some(Value::ServerError(err)) if err.kind() == Some(ServerErrorKind::NoScript))
    {
        script.load_async(connection).await?;
        replies = connection.req_packed_commands(&pipeline, 0, 2).await?;
    }
    let mut replies = replies.into_iter();
    let answer = replies.next().unwrap_or(Value::Nil).extract_error()?;
    let acknowledgement = acks.read(replies.next().as_ref());
    Ok((redis::from_redis_value(answer)?, acknowledgement))
}
