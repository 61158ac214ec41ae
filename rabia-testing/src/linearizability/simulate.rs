//! Linearizable histories by construction: simulated clients of an atomic
//! key-value store, for testing and benchmarking the checker.

use super::history::{History, KvOp, KvResult, OpId};
use rand::Rng;
use std::collections::BTreeMap;

/// Parameters of [`simulate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulationConfig {
    /// Operations invoked in total.
    pub operations: usize,
    /// Concurrent clients, each with at most one operation outstanding.
    pub clients: u64,
    /// Keys, named `k0`, `k1`, ...
    pub keys: u32,
    /// Distinct values, named `v0`, `v1`, ...
    pub values: u32,
    /// Per mille of operations the client times out on (indeterminate):
    /// half before they take effect (the store may apply them later, or
    /// never), half after.
    pub indeterminate_per_mille: u32,
    /// Per mille of operations that fail without taking effect.
    pub failed_per_mille: u32,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        SimulationConfig {
            operations: 100,
            clients: 4,
            keys: 2,
            values: 5,
            indeterminate_per_mille: 10,
            failed_per_mille: 10,
        }
    }
}

enum Client {
    Idle,
    /// Invoked, not yet applied.
    Pending(OpId, KvOp),
    /// Applied, not yet answered.
    Applied(OpId, KvResult),
}

/// Simulates `config.clients` clients issuing random reads, writes and
/// compare-and-sets against one sequential store. Each step either a random
/// client advances (invokes, has its operation applied atomically, or gets
/// its answer) or a timed-out operation takes effect late, so every
/// operation takes effect at a random point within its interval and the
/// history is linearizable by construction. Deterministic for a given
/// `rng`.
pub fn simulate(config: &SimulationConfig, rng: &mut impl Rng) -> History {
    let history = History::new();
    let clients = usize::try_from(config.clients.max(1)).unwrap_or(1);
    let mut states: Vec<Client> = (0..clients).map(|_| Client::Idle).collect();
    let mut store: BTreeMap<String, String> = BTreeMap::new();
    // Timed out before taking effect; each may still take effect, or never.
    let mut orphans: Vec<KvOp> = Vec::new();
    let fail = config.failed_per_mille.saturating_mul(2);
    let lost = fail.saturating_add(config.indeterminate_per_mille);
    let mut invoked = 0;
    let mut busy = 0usize;
    while invoked < config.operations || busy > 0 {
        if !orphans.is_empty() && rng.gen_ratio(1, 8) {
            let late = orphans.swap_remove(rng.gen_range(0..orphans.len()));
            apply(&mut store, &late);
            continue;
        }
        let c = rng.gen_range(0..clients);
        let Some(slot) = states.get_mut(c) else {
            continue;
        };
        let client = c as u64;
        *slot = match std::mem::replace(slot, Client::Idle) {
            Client::Idle if invoked < config.operations => {
                invoked += 1;
                busy += 1;
                let op = random_op(config, &store, rng);
                Client::Pending(history.invoke(client, op.clone()), op)
            }
            Client::Idle => Client::Idle,
            Client::Pending(id, op) => {
                let roll = rng.gen_range(0..2000);
                if roll < fail {
                    history.fail(id);
                    busy -= 1;
                    Client::Idle
                } else if roll < lost {
                    history.timeout(id);
                    orphans.push(op);
                    busy -= 1;
                    Client::Idle
                } else {
                    Client::Applied(id, apply(&mut store, &op))
                }
            }
            Client::Applied(id, result) => {
                if rng.gen_range(0..2000) < config.indeterminate_per_mille {
                    history.timeout(id);
                } else {
                    history.complete(id, result);
                }
                busy -= 1;
                Client::Idle
            }
        };
    }
    history
}

fn random_op(
    config: &SimulationConfig,
    store: &BTreeMap<String, String>,
    rng: &mut impl Rng,
) -> KvOp {
    let key = format!("k{}", rng.gen_range(0..config.keys.max(1)));
    match rng.gen_range(0..20) {
        0..=7 => KvOp::Read { key },
        8..=14 => KvOp::Write {
            key,
            value: random_value(config, rng),
        },
        _ => {
            // Half the time expect the current value, so that some succeed.
            let expected = match store.get(&key) {
                Some(current) if rng.gen_bool(0.5) => current.clone(),
                _ => random_value(config, rng),
            };
            let new = random_value(config, rng);
            KvOp::Cas { key, expected, new }
        }
    }
}

fn random_value(config: &SimulationConfig, rng: &mut impl Rng) -> String {
    format!("v{}", rng.gen_range(0..config.values.max(1)))
}

/// Applies `op` atomically to `store`.
fn apply(store: &mut BTreeMap<String, String>, op: &KvOp) -> KvResult {
    match op {
        KvOp::Read { key } => KvResult::Read(store.get(key).cloned()),
        KvOp::Write { key, value } => {
            store.insert(key.clone(), value.clone());
            KvResult::Written
        }
        KvOp::Cas { key, expected, new } => {
            let swaps = store.get(key) == Some(expected);
            if swaps {
                store.insert(key.clone(), new.clone());
            }
            KvResult::Cas(swaps)
        }
    }
}
