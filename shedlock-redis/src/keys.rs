//! Key names: ShedLock's `{prefix}:{environment}:{name}`, auxiliary keys
//! placed in the lock key's Redis Cluster slot, and the way back from a key
//! to its lock name (with the `SCAN` patterns that find them).

/// The keys of one lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockKeys {
    /// The lock itself, holding the exclusive holder's value: ShedLock's
    /// format, so Java and Rust services share locks.
    pub(crate) lock: String,
    /// The hash tag (with braces) that puts auxiliary keys in the lock's
    /// slot; `None` for the usual `{<lock key>}`, built with each key.
    tag: Option<String>,
}

/// Suffixes of the auxiliary keys of a lock.
pub(crate) const FENCE_SUFFIX: &str = ":fence";
pub(crate) const HOLDERS_SUFFIX: &str = ":holders";
pub(crate) const WAITERS_SUFFIX: &str = ":waiters";
pub(crate) const SETTINGS_SUFFIX: &str = ":settings";
pub(crate) const RENEWED_SUFFIX: &str = ":renewed";
pub(crate) const RUNS_SUFFIX: &str = ":runs";
/// The last tick claimed (`for_tick`): kept after the lease.
pub(crate) const TICK_SUFFIX: &str = ":tick";

impl LockKeys {
    /// Built on every acquisition, so each key is one exact-size allocation
    /// (`format!` would grow its buffer several times).
    pub(crate) fn new(prefix: &str, environment: &str, name: &str) -> Self {
        let mut lock = String::with_capacity(prefix.len() + environment.len() + name.len() + 2);
        for part in [prefix, ":", environment, ":", name] {
            lock.push_str(part);
        }
        let hashed = hashed_part(&lock);
        let tag = if hashed.len() == lock.len() && !hashed.contains('}') {
            // `{x}` hashes exactly x, and x is what the lock key hashes.
            None
        } else {
            // The lock key has a hash tag of its own (`report-{tenant}`), which
            // other locks may share, or a '}' that cannot go inside braces: a
            // tag of the same slot, followed by the whole lock key, so every
            // lock still has auxiliary keys of its own.
            let slot_tag = if hashed.contains('}') {
                same_slot_tag(hashed)
            } else {
                format!("{{{hashed}}}")
            };
            Some(format!("{slot_tag}:{lock}"))
        };
        LockKeys { lock, tag }
    }

    /// Built on every acquisition, in one allocation of its final size.
    fn auxiliary(&self, suffix: &'static str) -> String {
        let key = self.auxiliary_arg(suffix);
        let mut built = String::with_capacity(key.len());
        for part in key.parts() {
            built.push_str(part);
        }
        built
    }

    /// An auxiliary key written straight into a command: no allocation.
    pub(crate) fn auxiliary_arg(&self, suffix: &'static str) -> AuxiliaryKey<'_> {
        AuxiliaryKey { keys: self, suffix }
    }
}

/// An auxiliary key of a lock, as a command argument.
pub(crate) struct AuxiliaryKey<'a> {
    keys: &'a LockKeys,
    suffix: &'static str,
}

impl AuxiliaryKey<'_> {
    fn parts(&self) -> [&str; 4] {
        match &self.keys.tag {
            Some(tag) => [tag, "", "", self.suffix],
            None => ["{", &self.keys.lock, "}", self.suffix],
        }
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.parts().iter().map(|part| part.len()).sum()
    }
}

impl redis::ToRedisArgs for AuxiliaryKey<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        for part in self.parts() {
            // Writing into the command's own buffer cannot fail.
            let _ = std::io::Write::write_all(&mut arg, part.as_bytes());
        }
    }
}

impl LockKeys {
    /// The fencing-token counter.
    pub(crate) fn fence(&self) -> String {
        self.auxiliary(FENCE_SUFFIX)
    }

    /// Shared holders: a hash of acquisition value to "end permits token".
    pub(crate) fn holders(&self) -> String {
        self.auxiliary(HOLDERS_SUFFIX)
    }

    /// Queued exclusive waiters: a sorted set of waiter id by end of place.
    pub(crate) fn waiters(&self) -> String {
        self.auxiliary(WAITERS_SUFFIX)
    }

    /// Operator settings: a hash with `capacity` and `resume_to`.
    pub(crate) fn settings(&self) -> String {
        self.auxiliary(SETTINGS_SUFFIX)
    }

    /// The exclusive holder's last renewal, for operators: `"<token>
    /// <server ms> <renewals> <lock value>"`, written by `extend.lua`, living
    /// as long as the lease it renewed. Read only while the value matches the
    /// lock key's, so an earlier holder's stamp is ignored, never deleted.
    pub(crate) fn renewed(&self) -> String {
        self.auxiliary(RENEWED_SUFFIX)
    }

    /// The lock's run history: a list of its last 20 runs, the newest first,
    /// each `"<finished, server ms> <duration ms> <outcome> <token> <locked_by>"`,
    /// written by the release after a run (`history.lua`). It outlives the
    /// lock's leases, and expires 30 days after the lock's last run.
    pub(crate) fn runs(&self) -> String {
        self.auxiliary(RUNS_SUFFIX)
    }
}

/// The lock name a key belongs to, if it is a lock key or an auxiliary key under `base`.
pub(crate) fn name_of_key(key: &str, base: &str) -> Option<String> {
    for suffix in [
        FENCE_SUFFIX,
        HOLDERS_SUFFIX,
        WAITERS_SUFFIX,
        SETTINGS_SUFFIX,
        RENEWED_SUFFIX,
        RUNS_SUFFIX,
        TICK_SUFFIX,
    ] {
        let Some(rest) = key.strip_suffix(suffix) else {
            continue;
        };
        // `{base name}:suffix`
        if let Some(name) = rest
            .strip_prefix('{')
            .and_then(|rest| rest.strip_prefix(base))
            .and_then(|rest| rest.strip_suffix('}'))
            && !name.contains('}')
        {
            return Some(name.to_owned());
        }
        // `{tag}:base name:suffix`, for names with a hash tag or a '}'.
        if rest.starts_with('{')
            && let Some(at) = rest.find(&format!("}}:{base}"))
        {
            return Some(rest[at + 2 + base.len()..].to_owned());
        }
    }
    key.strip_prefix(base).map(str::to_owned)
}

/// `pattern` with Redis glob's special characters escaped.
pub(crate) fn glob_escape(pattern: &str) -> String {
    let mut escaped = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// A `{hash tag}` whose Cluster slot is the slot of `hashed`, for a hashed
/// part that cannot sit inside braces itself because it contains '}' (a lock
/// name with unbalanced braces), so auxiliary keys built on it live on the
/// lock's node and scripts may touch them together.
fn same_slot_tag(hashed: &str) -> String {
    let slot = crc16(hashed.as_bytes()) % SLOTS;
    let n = SLOT_TAGS
        .get(usize::from(slot))
        .copied()
        .unwrap_or_default();
    format!("{{shedlock-slot-{n}}}")
}

/// For each slot, the smallest n whose `shedlock-slot-{n}` hashes to it:
/// found once (about 170,000 checksums, a few milliseconds), then looked up.
static SLOT_TAGS: std::sync::LazyLock<Vec<u32>> = std::sync::LazyLock::new(|| {
    let mut tags = vec![u32::MAX; usize::from(SLOTS)];
    let mut missing = tags.len();
    let mut n = 0u32;
    while missing > 0 && n < u32::MAX {
        let slot = usize::from(crc16(format!("shedlock-slot-{n}").as_bytes()) % SLOTS);
        if tags[slot] == u32::MAX {
            tags[slot] = n;
            missing -= 1;
        }
        n += 1;
    }
    tags
});

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
        assert_eq!(keys.fence(), "{job-lock:default:nightly-report}:fence");
        assert_eq!(keys.holders(), "{job-lock:default:nightly-report}:holders");
        assert_eq!(
            keys.settings(),
            "{job-lock:default:nightly-report}:settings"
        );
    }

    #[test]
    fn names_with_braces_in_one_slot_keep_keys_of_their_own() {
        let a = LockKeys::new("job-lock", "default", "a}b");
        let b = LockKeys::new("job-lock", "default", "c}d");
        assert_ne!(a.holders(), b.holders());
        assert!(
            a.holders().ends_with("job-lock:default:a}b:holders"),
            "{}",
            a.holders()
        );
    }

    #[test]
    fn names_sharing_a_hash_tag_keep_keys_of_their_own() {
        let a = LockKeys::new("job-lock", "default", "export-{tenant-1}");
        let b = LockKeys::new("job-lock", "default", "import-{tenant-1}");
        assert_ne!(a.holders(), b.holders());
        assert_eq!(
            a.fence(),
            "{tenant-1}:job-lock:default:export-{tenant-1}:fence"
        );
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
            for aux in [
                keys.fence(),
                keys.holders(),
                keys.waiters(),
                keys.settings(),
                keys.renewed(),
            ] {
                assert_eq!(slot(&keys.lock), slot(&aux), "name {name:?}: {aux}");
            }
        }
    }

    #[test]
    fn names_come_back_from_every_kind_of_key() {
        let base = "job-lock:default:";
        for name in [
            "report",
            "a:b",
            "with space",
            "a}b",
            "{x}",
            "r-{t}",
            "}{",
            "ü",
        ] {
            let keys = LockKeys::new("job-lock", "default", name);
            for key in [
                keys.lock.clone(),
                keys.fence(),
                keys.holders(),
                keys.waiters(),
                keys.settings(),
                keys.renewed(),
            ] {
                assert_eq!(name_of_key(&key, base).as_deref(), Some(name), "key {key}");
            }
        }
        assert_eq!(name_of_key("other:default:x", base), None);
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
