//! The replicated key-value state machine.
//!
//! Every replicated command is an [`Operation`] whose data is a bincode
//! [`Command`]; applying it returns the RESP-encoded reply, so a replica
//! that applies it answers its client byte for byte as any other would.
//!
//! **Determinism and time.** Expiry (`SET ... EX/PX`) cannot read a clock
//! while applying: replicas apply at different moments. The node that takes
//! a command stamps it with its wall clock (`now_ms`) and turns relative
//! TTLs into absolute deadlines; the store keeps `clock_ms`, the largest
//! stamp it has applied, and a key is expired once `clock_ms` reaches its
//! deadline. All replicas apply the same stamps in the same order, so they
//! expire the same keys at the same log position. (A replica whose clock is
//! far ahead can expire keys early for everyone; clocks within NTP accuracy
//! make that the usual few milliseconds.)

use crate::resp::Value;
use async_trait::async_trait;
use bincode::Options;
use rabia_core::smr::{Operation, OperationResult, StateMachine};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A condition on `SET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetCondition {
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// What `SET` does to the key's expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetExpiry {
    /// Clear any expiry (plain `SET`).
    Persist,
    /// `KEEPTTL`: keep the current expiry.
    Keep,
    /// Expire at this absolute time (ms since the Unix epoch).
    At(u64),
}

/// One key-value operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// `GET key`
    Get(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT|KEEPTTL]`
    Set {
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// New value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// `NX`/`XX`.
        condition: Option<SetCondition>,
        /// `GET`: reply with the old value.
        get: bool,
        /// Expiry handling.
        expiry: SetExpiry,
    },
    /// `DEL key...`
    Del(Vec<Vec<u8>>),
    /// `EXISTS key...`
    Exists(Vec<Vec<u8>>),
    /// `INCRBY key delta` (and `INCR`, `DECR`, `DECRBY`).
    IncrBy(#[serde(with = "serde_bytes")] Vec<u8>, i64),
    /// `MGET key...`
    MGet(Vec<Vec<u8>>),
    /// `MSET key value...`
    MSet(Vec<(Vec<u8>, Vec<u8>)>),
    /// `CAS key expected new`: `:1` if the value was `expected` and is now
    /// `new`, `:0` otherwise.
    Cas {
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value it must have.
        #[serde(with = "serde_bytes")]
        expected: Vec<u8>,
        /// The value it gets.
        #[serde(with = "serde_bytes")]
        new: Vec<u8>,
    },
    /// `DBSIZE`
    DbSize,
    /// `FLUSHALL` / `FLUSHDB`
    FlushAll,
    /// `MULTI ... EXEC`: applied atomically, one reply array.
    Multi(Vec<KvOp>),
    /// Pipelined commands of one connection, applied in order as one log
    /// entry; the reply is each command's reply, concatenated (not an
    /// array). This is how a connection's commands keep their order.
    Pipeline(Vec<KvOp>),
}

impl KvOp {
    /// Bytes of keys and values the operation carries (what dominates its
    /// encoded size).
    pub fn payload_bytes(&self) -> usize {
        let all = |keys: &[Vec<u8>]| keys.iter().map(Vec::len).sum::<usize>();
        match self {
            KvOp::Get(key) | KvOp::IncrBy(key, _) => key.len(),
            KvOp::Set { key, value, .. } => key.len() + value.len(),
            KvOp::Del(keys) | KvOp::Exists(keys) | KvOp::MGet(keys) => all(keys),
            KvOp::MSet(pairs) => pairs.iter().map(|(k, v)| k.len() + v.len()).sum(),
            KvOp::Cas { key, expected, new } => key.len() + expected.len() + new.len(),
            KvOp::DbSize | KvOp::FlushAll => 0,
            KvOp::Multi(ops) | KvOp::Pipeline(ops) => ops.iter().map(KvOp::payload_bytes).sum(),
        }
    }

    /// True if the operation never changes the state (it may still go
    /// through the log, to be linearizable).
    pub fn is_read_only(&self) -> bool {
        match self {
            KvOp::Get(_) | KvOp::Exists(_) | KvOp::MGet(_) | KvOp::DbSize => true,
            KvOp::Multi(ops) | KvOp::Pipeline(ops) => ops.iter().all(KvOp::is_read_only),
            _ => false,
        }
    }
}

/// A command as it travels through the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The receiving node's wall clock when it took the command (ms since
    /// the Unix epoch); advances the store's clock.
    pub now_ms: u64,
    /// The operation.
    pub op: KvOp,
}

/// Bounds decoding of untrusted operation bytes.
const COMMAND_BYTES_MAX: u64 = 64 << 20;

fn codec() -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(COMMAND_BYTES_MAX)
        .reject_trailing_bytes()
}

impl Command {
    /// The operation data; an error if the command encodes to more than
    /// the 64 MiB a command may take.
    pub fn encode(&self) -> Result<Vec<u8>, bincode::Error> {
        codec().serialize(self)
    }

    /// Decodes operation data, refusing anything that is not a command.
    pub fn decode(bytes: &[u8]) -> Result<Command, bincode::Error> {
        codec().deserialize(bytes)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    #[serde(with = "serde_bytes")]
    value: Vec<u8>,
    expires_at_ms: Option<u64>,
}

/// The key-value store: the state every replica holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    entries: BTreeMap<Vec<u8>, Entry>,
    /// `(deadline, key)` of every key with an expiry.
    expiries: BTreeSet<(u64, Vec<u8>)>,
    clock_ms: u64,
}

const NOT_AN_INTEGER: &str = "value is not an integer or out of range";

impl KvStore {
    /// An empty store.
    pub fn new() -> Self {
        KvStore::default()
    }

    /// Live keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no key is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keys with an expiry.
    pub fn expiring(&self) -> usize {
        self.expiries.len()
    }

    /// The current value of `key` (for local reads and tests).
    pub fn value(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(|e| e.value.as_slice())
    }

    /// Applies one command: advances the clock, expires what is due, and
    /// executes the operation. A [`KvOp::Pipeline`] answers with an array of
    /// its replies here; [`apply_encoded`](Self::apply_encoded) gives the
    /// wire form clients see.
    pub fn apply(&mut self, command: Command) -> Value {
        self.advance_clock(command.now_ms);
        self.execute(command.op)
    }

    /// Applies one command and returns its reply bytes: for a pipeline,
    /// each command's reply in order.
    pub fn apply_encoded(&mut self, command: Command) -> Vec<u8> {
        self.advance_clock(command.now_ms);
        match command.op {
            KvOp::Pipeline(ops) => {
                let mut out = Vec::with_capacity(ops.len() * 8);
                for op in ops {
                    self.execute(op).encode(&mut out);
                }
                out
            }
            op => self.execute(op).to_bytes(),
        }
    }

    /// Runs a read-only operation on the current state without changing it
    /// (relaxed local reads); other operations are refused.
    pub fn read(&self, op: &KvOp) -> Value {
        if !op.is_read_only() {
            return Value::err("only read commands can run as local reads");
        }
        ReadView { store: self }.execute(op)
    }

    /// [`read`](Self::read), as reply bytes (a pipeline's replies
    /// concatenated).
    pub fn read_encoded(&self, op: &KvOp) -> Vec<u8> {
        match op {
            KvOp::Pipeline(ops) => {
                let mut out = Vec::new();
                for op in ops {
                    self.read(op).encode(&mut out);
                }
                out
            }
            op => self.read(op).to_bytes(),
        }
    }

    fn advance_clock(&mut self, now_ms: u64) {
        self.clock_ms = self.clock_ms.max(now_ms);
        while let Some((deadline, _)) = self.expiries.first() {
            if *deadline > self.clock_ms {
                break;
            }
            if let Some((_, key)) = self.expiries.pop_first() {
                self.entries.remove(&key);
            }
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        if let Some(at) = entry.expires_at_ms {
            self.expiries.remove(&(at, key.to_vec()));
        }
        Some(entry)
    }

    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>, expires_at_ms: Option<u64>) {
        if self.expiries.is_empty() && expires_at_ms.is_none() {
            // The common case: no expiry anywhere, one tree operation.
            self.entries.insert(
                key,
                Entry {
                    value,
                    expires_at_ms,
                },
            );
            return;
        }
        self.remove(&key);
        if let Some(at) = expires_at_ms {
            if at <= self.clock_ms {
                return; // already expired: as Redis, the key is gone
            }
            self.expiries.insert((at, key.clone()));
        }
        self.entries.insert(
            key,
            Entry {
                value,
                expires_at_ms,
            },
        );
    }

    fn execute(&mut self, op: KvOp) -> Value {
        match op {
            KvOp::Get(_) | KvOp::Exists(_) | KvOp::MGet(_) | KvOp::DbSize => {
                ReadView { store: self }.execute(&op)
            }
            KvOp::Set {
                key,
                value,
                condition,
                get,
                expiry,
            } => {
                let old = self.entries.get(&key);
                let old_expiry = old.and_then(|e| e.expires_at_ms);
                let allowed = match condition {
                    None => true,
                    Some(SetCondition::IfAbsent) => old.is_none(),
                    Some(SetCondition::IfPresent) => old.is_some(),
                };
                let old_value = if get {
                    Some(old.map(|e| e.value.clone()))
                } else {
                    None
                };
                if allowed {
                    let expires_at_ms = match expiry {
                        SetExpiry::Persist => None,
                        SetExpiry::Keep => old_expiry,
                        SetExpiry::At(at) => Some(at),
                    };
                    self.insert(key, value, expires_at_ms);
                }
                match (old_value, allowed) {
                    (Some(old), _) => Value::Bulk(old),
                    (None, true) => Value::ok(),
                    (None, false) => Value::nil(),
                }
            }
            KvOp::Del(keys) => {
                let removed = keys.iter().filter(|k| self.remove(k).is_some()).count();
                Value::Integer(removed as i64)
            }
            KvOp::IncrBy(key, delta) => {
                let (current, expires_at_ms) = match self.entries.get(&key) {
                    None => (0, None),
                    Some(entry) => match std::str::from_utf8(&entry.value)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                    {
                        Some(n) => (n, entry.expires_at_ms),
                        None => return Value::err(NOT_AN_INTEGER),
                    },
                };
                let Some(next) = current.checked_add(delta) else {
                    return Value::err("increment or decrement would overflow");
                };
                self.insert(key, next.to_string().into_bytes(), expires_at_ms);
                Value::Integer(next)
            }
            KvOp::MSet(pairs) => {
                for (key, value) in pairs {
                    self.insert(key, value, None);
                }
                Value::ok()
            }
            KvOp::Cas { key, expected, new } => {
                let current = self.entries.get(&key);
                let matches = current.is_some_and(|e| e.value == expected);
                if matches {
                    let expires_at_ms = current.and_then(|e| e.expires_at_ms);
                    self.insert(key, new, expires_at_ms);
                }
                Value::Integer(i64::from(matches))
            }
            KvOp::FlushAll => {
                self.entries.clear();
                self.expiries.clear();
                Value::ok()
            }
            KvOp::Multi(ops) | KvOp::Pipeline(ops) => {
                Value::Array(Some(ops.into_iter().map(|op| self.execute(op)).collect()))
            }
        }
    }
}

/// Read-only execution over a shared reference.
struct ReadView<'a> {
    store: &'a KvStore,
}

impl ReadView<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.store.entries.get(key).map(|e| e.value.clone())
    }

    fn execute(&self, op: &KvOp) -> Value {
        match op {
            KvOp::Get(key) => Value::Bulk(self.get(key)),
            KvOp::Exists(keys) => Value::Integer(
                keys.iter()
                    .filter(|k| self.store.entries.contains_key(*k))
                    .count() as i64,
            ),
            KvOp::MGet(keys) => Value::Array(Some(
                keys.iter().map(|k| Value::Bulk(self.get(k))).collect(),
            )),
            KvOp::DbSize => Value::Integer(self.store.entries.len() as i64),
            KvOp::Multi(ops) | KvOp::Pipeline(ops) => {
                Value::Array(Some(ops.iter().map(|op| self.execute(op)).collect()))
            }
            _ => Value::err("not a read command"),
        }
    }
}

#[async_trait]
impl StateMachine for KvStore {
    async fn apply_operation(&mut self, operation: &Operation) -> OperationResult {
        let command =
            Command::decode(&operation.data).map_err(|e| format!("not a rabia-kv command: {e}"))?;
        Ok(self.apply_encoded(command))
    }

    async fn snapshot(&self) -> OperationResult {
        // No size limit here: a store may hold far more than one command.
        Ok(bincode::DefaultOptions::new().serialize(self)?)
    }

    async fn restore_from_snapshot(
        &mut self,
        data: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        // Bounded by the snapshot itself: length prefixes in a damaged
        // snapshot cannot make decoding read (or reserve) more than it has.
        *self = bincode::DefaultOptions::new()
            .with_limit(data.len() as u64)
            .reject_trailing_bytes()
            .deserialize(data)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(now_ms: u64, op: KvOp) -> Command {
        Command { now_ms, op }
    }

    fn set(key: &str, value: &str) -> KvOp {
        KvOp::Set {
            key: key.into(),
            value: value.into(),
            condition: None,
            get: false,
            expiry: SetExpiry::Persist,
        }
    }

    #[test]
    fn set_get_del_incr_cas() {
        let mut s = KvStore::new();
        assert_eq!(s.apply(cmd(1, set("a", "1"))), Value::ok());
        assert_eq!(s.apply(cmd(1, KvOp::Get("a".into()))), Value::bulk("1"));
        assert_eq!(
            s.apply(cmd(1, KvOp::IncrBy("a".into(), 41))),
            Value::Integer(42)
        );
        assert_eq!(
            s.apply(cmd(1, KvOp::IncrBy("new".into(), -1))),
            Value::Integer(-1)
        );
        assert_eq!(
            s.apply(cmd(
                1,
                KvOp::Cas {
                    key: "a".into(),
                    expected: "41".into(),
                    new: "x".into()
                }
            )),
            Value::Integer(0)
        );
        assert_eq!(
            s.apply(cmd(
                1,
                KvOp::Cas {
                    key: "a".into(),
                    expected: "42".into(),
                    new: "x".into()
                }
            )),
            Value::Integer(1)
        );
        assert_eq!(
            s.apply(cmd(1, KvOp::IncrBy("a".into(), 1))),
            Value::err(NOT_AN_INTEGER)
        );
        assert_eq!(
            s.apply(cmd(1, KvOp::Del(vec!["a".into(), "zz".into()]))),
            Value::Integer(1)
        );
        assert_eq!(s.apply(cmd(1, KvOp::DbSize)), Value::Integer(1));
        s.apply(cmd(1, set("m", &i64::MAX.to_string())));
        assert_eq!(
            s.apply(cmd(1, KvOp::IncrBy("m".into(), 1))),
            Value::err("increment or decrement would overflow")
        );
    }

    #[test]
    fn set_conditions_and_get_option() {
        let mut s = KvStore::new();
        let nx = |v: &str| KvOp::Set {
            key: "k".into(),
            value: v.into(),
            condition: Some(SetCondition::IfAbsent),
            get: false,
            expiry: SetExpiry::Persist,
        };
        assert_eq!(s.apply(cmd(1, nx("1"))), Value::ok());
        assert_eq!(s.apply(cmd(1, nx("2"))), Value::nil());
        let xx_get = KvOp::Set {
            key: "k".into(),
            value: "3".into(),
            condition: Some(SetCondition::IfPresent),
            get: true,
            expiry: SetExpiry::Persist,
        };
        assert_eq!(s.apply(cmd(1, xx_get)), Value::bulk("1"));
        assert_eq!(s.value(b"k"), Some(&b"3"[..]));
    }

    #[test]
    fn expiry_follows_the_stamped_clock_only() {
        let mut s = KvStore::new();
        let ex = KvOp::Set {
            key: "t".into(),
            value: "v".into(),
            condition: None,
            get: false,
            expiry: SetExpiry::At(1_000),
        };
        s.apply(cmd(500, ex));
        assert_eq!(s.apply(cmd(999, KvOp::Get("t".into()))), Value::bulk("v"));
        // A stamp from the past does not move the clock back.
        assert_eq!(
            s.apply(cmd(10, KvOp::Exists(vec!["t".into()]))),
            Value::Integer(1)
        );
        assert_eq!(s.apply(cmd(1_000, KvOp::Get("t".into()))), Value::nil());
        assert_eq!(s.expiring(), 0);
    }

    #[test]
    fn multi_applies_all_in_order() {
        let mut s = KvStore::new();
        let reply = s.apply(cmd(
            1,
            KvOp::Multi(vec![
                set("a", "1"),
                KvOp::IncrBy("a".into(), 1),
                KvOp::Get("a".into()),
            ]),
        ));
        assert_eq!(
            reply,
            Value::Array(Some(vec![Value::ok(), Value::Integer(2), Value::bulk("2")]))
        );
    }

    #[tokio::test]
    async fn garbage_operations_are_errors_and_snapshots_round_trip() {
        let mut s = KvStore::new();
        assert!(s
            .apply_operation(&Operation::new(vec![0xff; 9]))
            .await
            .is_err());
        s.apply(cmd(5, set("a", "1")));
        let snap = s.snapshot().await.unwrap();
        let mut t = KvStore::new();
        t.restore_from_snapshot(&snap).await.unwrap();
        assert_eq!(s, t);
        assert!(t.restore_from_snapshot(b"junk").await.is_err());
    }

    /// A store may hold more than one command can: its snapshot is not
    /// bound by the 64 MiB command limit (it once was, and snapshots of
    /// large stores failed for ever while the log grew).
    #[tokio::test]
    async fn a_store_larger_than_a_command_snapshots_and_restores() {
        let mut s = KvStore::new();
        let big = vec![7u8; (COMMAND_BYTES_MAX + 1024) as usize];
        s.apply(cmd(
            5,
            KvOp::Set {
                key: b"big".to_vec(),
                value: big.clone(),
                condition: None,
                get: false,
                expiry: SetExpiry::Persist,
            },
        ));
        let too_large = cmd(
            5,
            KvOp::Set {
                key: b"big".to_vec(),
                value: big,
                condition: None,
                get: false,
                expiry: SetExpiry::Persist,
            },
        );
        assert!(too_large.encode().is_err(), "a command is bounded");
        let snap = s.snapshot().await.unwrap();
        let mut t = KvStore::new();
        t.restore_from_snapshot(&snap).await.unwrap();
        assert_eq!(s, t);
        // A damaged length prefix cannot make restore read past the data.
        let mut damaged = snap.clone();
        damaged.truncate(snap.len() - 10);
        assert!(t.restore_from_snapshot(&damaged).await.is_err());
    }
}
