//! Key names: ShedLock's `{prefix}:{environment}:{name}`, and auxiliary keys
//! placed in the lock key's Redis Cluster slot.

/// The keys of one lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockKeys {
    /// The lock itself: ShedLock's format, so Java and Rust services share locks.
    pub(crate) lock: String,
    /// The fencing-token counter.
    pub(crate) fence: String,
}

const FENCE_SUFFIX: &str = ":fence";

impl LockKeys {
    /// Built on every acquisition, so each key is one exact-size allocation
    /// (`format!` would grow its buffer several times).
    pub(crate) fn new(prefix: &str, environment: &str, name: &str) -> Self {
        let mut lock = String::with_capacity(prefix.len() + environment.len() + name.len() + 2);
        for part in [prefix, ":", environment, ":", name] {
            lock.push_str(part);
        }
        let hashed = hashed_part(&lock);
        let fence = if hashed.contains('}') {
            format!("{}{FENCE_SUFFIX}", same_slot_tag(hashed))
        } else {
            // `{x}` hashes exactly x, and x is what the lock key hashes.
            let mut fence = String::with_capacity(hashed.len() + 2 + FENCE_SUFFIX.len());
            for part in ["{", hashed, "}", FENCE_SUFFIX] {
                fence.push_str(part);
            }
            fence
        };
        LockKeys { lock, fence }
    }
}

/// A `{hash tag}` whose Cluster slot is the slot of `hashed`, for a hashed
/// part that cannot sit inside braces itself because it contains '}' (a lock
/// name with unbalanced braces), so auxiliary keys built on it live on the
/// lock's node and scripts may touch them together.
fn same_slot_tag(hashed: &str) -> String {
    let slot = crc16(hashed.as_bytes()) % SLOTS;
    (0u32..)
        .map(|n| format!("shedlock-slot-{n}"))
        .find(|tag| crc16(tag.as_bytes()) % SLOTS == slot)
        .map(|tag| format!("{{{tag}}}"))
        .unwrap_or_default() // unreachable: every slot is hit within a few thousand tags
}

const SLOTS: u16 = 16384;

/// The part of a key Redis Cluster hashes: the first non-empty `{...}`, or the whole key.
fn hashed_part(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// CRC16/XMODEM, the checksum Redis Cluster uses for key slots.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        (0..8).fold(crc ^ (u16::from(byte) << 8), |crc, _| {
            if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(key: &str) -> u16 {
        crc16(hashed_part(key).as_bytes()) % SLOTS
    }

    #[test]
    fn lock_key_has_shedlocks_format() {
        let keys = LockKeys::new("job-lock", "default", "nightly-report");
        assert_eq!(keys.lock, "job-lock:default:nightly-report");
        assert_eq!(keys.fence, "{job-lock:default:nightly-report}:fence");
    }

    #[test]
    fn crc16_matches_redis_cluster_reference_values() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
    }

    #[test]
    fn auxiliary_keys_share_the_lock_keys_slot_for_any_name() {
        let names = [
            "plain",
            "with{tag}",
            "{}",
            "{",
            "}",
            "a}b",
            "}{",
            "x{}y{z}",
            "{a{b}c}",
            "ü{ñ}",
            "new\nline",
            "\"quoted\"",
            "}}}{{{",
            "a{b",
            "{{}}",
        ];
        for name in names {
            let keys = LockKeys::new("job-lock", "default", name);
            assert_eq!(
                slot(&keys.lock),
                slot(&keys.fence),
                "name {name:?}: {keys:?}"
            );
        }
    }
}
