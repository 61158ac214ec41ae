//! [`NetworkSimulator`]: an in-process network between real engines that
//! applies a seeded fault model to every message.

use super::fault_type::FaultType;
use async_trait::async_trait;
use rabia_core::protocol::Envelope;
use rabia_core::NodeId;
use rabia_network::{Transport, TransportStats};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the simulator can do to a node beyond its network: implemented by
/// [`TestCluster`](super::TestCluster), or by your own harness.
#[async_trait]
pub trait NodeControl: Send + Sync + 'static {
    /// Stops the node abruptly (as a killed process: no clean shutdown).
    async fn crash(&self);
    /// Starts the node again from its persistence.
    async fn restart(&self);
    /// Makes every later storage call of the node fail.
    fn fail_disk(&self);
}

/// Counters of the simulated network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Copies put into an inbox.
    pub delivered: u64,
    /// Dropped: sender or receiver crashed.
    pub dropped_down: u64,
    /// Dropped: a partition.
    pub dropped_partition: u64,
    /// Dropped: packet loss.
    pub dropped_loss: u64,
    /// Dropped: the receiver's inbox was full or gone.
    pub dropped_inbox: u64,
    /// Messages delivered late (latency, slow node, reordering).
    pub delayed: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
}

struct ActiveFault {
    fault: FaultType,
    until: Option<Instant>,
}

struct State {
    rng: ChaCha8Rng,
    inboxes: BTreeMap<NodeId, mpsc::Sender<(NodeId, Envelope)>>,
    faults: Vec<ActiveFault>,
    /// Crashed nodes (their traffic is dropped), with when they come back
    /// when no controller restarts them.
    down: BTreeMap<NodeId, Option<Instant>>,
    controls: BTreeMap<NodeId, Arc<dyn NodeControl>>,
    stats: NetworkStats,
    events: Vec<String>,
}

struct Inner {
    seed: u64,
    inbox_capacity: usize,
    state: Mutex<State>,
}

/// A simulated network with fault injection, for testing your state
/// machine on real engines. Cheap to clone (clones share the network).
///
/// ```
/// use rabia_testing::{FaultType, NetworkSimulator};
/// use std::time::Duration;
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let simulator = NetworkSimulator::with_seed(7);
/// simulator
///     .inject_fault(FaultType::PacketLoss { rate: 0.1, duration: Duration::from_secs(5) })
///     .await;
/// assert_eq!(simulator.active_faults().len(), 1);
/// simulator.heal();
/// assert!(simulator.active_faults().is_empty());
/// # });
/// ```
#[derive(Clone)]
pub struct NetworkSimulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NetworkSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkSimulator")
            .field("seed", &self.inner.seed)
            .finish()
    }
}

impl Default for NetworkSimulator {
    fn default() -> Self {
        NetworkSimulator::new()
    }
}

impl NetworkSimulator {
    /// A simulator seeded from the `RABIA_SEED` environment variable, or
    /// from a fresh random seed. The seed is printed so a failing run can be
    /// replayed with `RABIA_SEED=<seed>`.
    pub fn new() -> Self {
        let seed = std::env::var("RABIA_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(rand::random);
        eprintln!("NetworkSimulator seed {seed} (replay with RABIA_SEED={seed})");
        NetworkSimulator::with_seed(seed)
    }

    /// A simulator with a fixed seed: the same fault decisions in the same
    /// order of messages.
    pub fn with_seed(seed: u64) -> Self {
        NetworkSimulator {
            inner: Arc::new(Inner {
                seed,
                inbox_capacity: 65_536,
                state: Mutex::new(State {
                    rng: ChaCha8Rng::seed_from_u64(seed),
                    inboxes: BTreeMap::new(),
                    faults: Vec::new(),
                    down: BTreeMap::new(),
                    controls: BTreeMap::new(),
                    stats: NetworkStats::default(),
                    events: Vec::new(),
                }),
            }),
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.inner.seed
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock (a failing assertion elsewhere)
        // must not hide the original failure behind a poison error.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `node` and returns its transport (replacing an earlier
    /// endpoint of the same node, as a restarted process would).
    pub fn endpoint(&self, node: NodeId) -> SimTransport {
        let (tx, rx) = mpsc::channel(self.inner.inbox_capacity);
        self.state().inboxes.insert(node, tx);
        SimTransport {
            me: node,
            simulator: self.clone(),
            rx,
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }
    }

    /// Lets the simulator crash, restart and break the disk of `node`.
    pub fn register_node(&self, node: NodeId, control: Arc<dyn NodeControl>) {
        self.state().controls.insert(node, control);
    }

    /// Forgets `node`'s controller (a [`TestCluster`](super::TestCluster)
    /// being dropped does this).
    pub fn unregister_node(&self, node: NodeId) {
        self.state().controls.remove(&node);
    }

    /// Applies `fault` now. Faults with a duration end by themselves; a
    /// crashed node with a registered controller restarts after its
    /// duration (in tokio time: under `start_paused` it costs no real
    /// time).
    ///
    /// # Panics
    ///
    /// On a fault with invalid parameters (a loss rate above 1, say) or a
    /// `DiskFailure` of a node nobody registered: a test that asks for an
    /// impossible fault is wrong. [`try_inject_fault`](Self::try_inject_fault)
    /// returns the error instead.
    pub async fn inject_fault(&self, fault: FaultType) {
        if let Err(e) = self.try_inject_fault(fault).await {
            panic!("NetworkSimulator::inject_fault: {e}");
        }
    }

    /// [`inject_fault`](Self::inject_fault), returning what is wrong with
    /// the fault instead of panicking.
    pub async fn try_inject_fault(&self, fault: FaultType) -> Result<(), String> {
        fault.validate()?;
        let now = Instant::now();
        let until = |d: Duration| Some(now + d);
        self.record(format!("inject {fault:?}"));
        match fault {
            FaultType::NodeCrash { node_id, duration } => {
                let control = self.state().controls.get(&node_id).cloned();
                match control {
                    Some(control) => {
                        self.state().down.insert(node_id, None);
                        control.crash().await;
                        let simulator = self.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(duration).await;
                            simulator.state().down.remove(&node_id);
                            simulator.record(format!("restart {node_id}"));
                            control.restart().await;
                        });
                    }
                    None => {
                        self.state().down.insert(node_id, until(duration));
                    }
                }
            }
            FaultType::DiskFailure { node_id } => {
                let control = self.state().controls.get(&node_id).cloned();
                match control {
                    Some(control) => control.fail_disk(),
                    None => {
                        return Err(format!(
                            "DiskFailure needs node {node_id} registered (register_node)"
                        ))
                    }
                }
            }
            FaultType::NetworkPartition { duration, .. } => {
                let until = duration.and_then(until);
                self.state().faults.push(ActiveFault { fault, until });
            }
            FaultType::PacketLoss { duration, .. }
            | FaultType::HighLatency { duration, .. }
            | FaultType::SlowNode { duration, .. }
            | FaultType::MessageReordering { duration, .. }
            | FaultType::MessageDuplication { duration, .. } => {
                let until = until(duration);
                self.state().faults.push(ActiveFault { fault, until });
            }
        }
        Ok(())
    }

    /// Ends every network fault and brings back nodes that are down without
    /// a controller. (Crashed nodes with a controller restart on their own
    /// schedule; a failed disk stays failed.)
    pub fn heal(&self) {
        let mut state = self.state();
        state.faults.clear();
        state.down.retain(|_, until| until.is_none());
        state.events.push("heal".into());
    }

    /// The network faults in effect now.
    pub fn active_faults(&self) -> Vec<FaultType> {
        let now = Instant::now();
        let mut state = self.state();
        state.faults.retain(|f| f.until.is_none_or(|u| now < u));
        state.faults.iter().map(|f| f.fault.clone()).collect()
    }

    /// Counters.
    pub fn stats(&self) -> NetworkStats {
        self.state().stats
    }

    /// What was injected and healed, in order (for failure reports).
    pub fn events(&self) -> Vec<String> {
        self.state().events.clone()
    }

    fn record(&self, event: String) {
        self.state().events.push(event);
    }

    /// Routes one message through the fault model.
    fn route(&self, from: NodeId, to: NodeId, envelope: Envelope) {
        let now = Instant::now();
        let (inbox, delay, copies) = {
            let mut guard = self.state();
            let state = &mut *guard;
            state.stats.sent += 1;
            state.faults.retain(|f| f.until.is_none_or(|u| now < u));
            state.down.retain(|_, until| until.is_none_or(|u| now < u));
            if state.down.contains_key(&from) || state.down.contains_key(&to) {
                state.stats.dropped_down += 1;
                return;
            }
            let mut delay = Duration::ZERO;
            let mut copies = 1;
            let mut slow_factor: Option<f64> = None;
            let mut extra = Duration::ZERO;
            for active in &state.faults {
                match &active.fault {
                    FaultType::NetworkPartition {
                        groups, one_way, ..
                    } if partitioned(groups, *one_way, from, to) => {
                        state.stats.dropped_partition += 1;
                        return;
                    }
                    FaultType::PacketLoss { rate, .. } if state.rng.gen_bool(*rate) => {
                        state.stats.dropped_loss += 1;
                        return;
                    }
                    FaultType::HighLatency { min, max, .. } => {
                        let d = if min == max {
                            *min
                        } else {
                            state.rng.gen_range(*min..=*max)
                        };
                        delay = delay.max(d);
                    }
                    FaultType::SlowNode {
                        node_id,
                        delay_factor,
                        ..
                    } if *node_id == from || *node_id == to => {
                        slow_factor = Some(slow_factor.unwrap_or(1.0).max(*delay_factor));
                    }
                    FaultType::MessageReordering {
                        rate, max_delay, ..
                    } if state.rng.gen_bool(*rate) && !max_delay.is_zero() => {
                        extra += state.rng.gen_range(Duration::ZERO..=*max_delay);
                    }
                    FaultType::MessageDuplication { rate, .. } if state.rng.gen_bool(*rate) => {
                        copies = 2;
                    }
                    _ => {}
                }
            }
            if let Some(factor) = slow_factor {
                let base = if delay.is_zero() {
                    Duration::from_millis(1)
                } else {
                    delay
                };
                delay = base.mul_f64(factor);
            }
            delay += extra;
            if !delay.is_zero() {
                state.stats.delayed += 1;
            }
            if copies > 1 {
                state.stats.duplicated += 1;
            }
            let Some(inbox) = state.inboxes.get(&to).cloned() else {
                state.stats.dropped_inbox += 1;
                return;
            };
            (inbox, delay, copies)
        };
        for _ in 0..copies {
            let message = (from, envelope.clone());
            if delay.is_zero() {
                self.deliver(&inbox, message);
            } else {
                let simulator = self.clone();
                let inbox = inbox.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    // A node that crashed meanwhile loses what was in flight.
                    if simulator.state().down.contains_key(&message.0) {
                        simulator.state().stats.dropped_down += 1;
                        return;
                    }
                    simulator.deliver(&inbox, message);
                });
            }
        }
    }

    fn deliver(&self, inbox: &mpsc::Sender<(NodeId, Envelope)>, message: (NodeId, Envelope)) {
        let ok = inbox.try_send(message).is_ok();
        let mut state = self.state();
        if ok {
            state.stats.delivered += 1;
        } else {
            state.stats.dropped_inbox += 1;
        }
    }

    fn peers_of(&self, me: NodeId) -> Vec<NodeId> {
        self.state()
            .inboxes
            .keys()
            .copied()
            .filter(|n| *n != me)
            .collect()
    }
}

/// True if a partition with `groups` cuts `from → to`.
fn partitioned(groups: &[Vec<NodeId>], one_way: bool, from: NodeId, to: NodeId) -> bool {
    let group_of = |n: NodeId| groups.iter().position(|g| g.contains(&n));
    let (gf, gt) = (group_of(from), group_of(to));
    if gf == gt {
        return false;
    }
    if one_way {
        // Only traffic leaving the first group is cut.
        gf == Some(0)
    } else {
        true
    }
}

/// One node's endpoint on a [`NetworkSimulator`].
pub struct SimTransport {
    me: NodeId,
    simulator: NetworkSimulator,
    rx: mpsc::Receiver<(NodeId, Envelope)>,
    received: AtomicU64,
    sent: AtomicU64,
}

impl std::fmt::Debug for SimTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTransport")
            .field("node", &self.me)
            .finish()
    }
}

#[async_trait]
impl Transport for SimTransport {
    fn send(&self, to: NodeId, envelope: Envelope) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.simulator.route(self.me, to, envelope);
    }

    fn broadcast(&self, envelope: Envelope) {
        let peers = self.simulator.peers_of(self.me);
        for to in peers {
            self.send(to, envelope.clone());
        }
    }

    async fn recv(&mut self) -> Option<(NodeId, Envelope)> {
        let message = self.rx.recv().await;
        if message.is_some() {
            self.received.fetch_add(1, Ordering::Relaxed);
        }
        message
    }

    fn try_recv(&mut self) -> Option<(NodeId, Envelope)> {
        let message = self.rx.try_recv().ok();
        if message.is_some() {
            self.received.fetch_add(1, Ordering::Relaxed);
        }
        message
    }

    fn stats(&self) -> TransportStats {
        TransportStats {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            ..TransportStats::default()
        }
    }
}
