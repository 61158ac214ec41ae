//! The deterministic simulator: N production [`Replica`]s on virtual time,
//! driven from one seed.
//!
//! ```text
//!   seed ─► ChaCha8Rng ─► fault plan, latencies, losses, client choices
//!                         │
//!   EventQueue (virtual time, seq) ─► Deliver / Timer / DiskDone / Client / Fault
//!                         │
//!   SimNode: Replica (same code as production) + Disk + App
//!                         │ every action
//!   checkers: agreement, validity, integrity, apply order, convergence
//!   end: heal everything ─► liveness within budget ─► durability
//! ```
//!
//! A run has two phases. During the **fault phase** every enabled fault
//! class is active: latency with a slow tail (which also reorders), loss,
//! duplication, partitions (symmetric, one-way, one node isolated), clock
//! skew, crash-restart (the disk keeps exactly what was reported durable)
//! and crash-stop of at most f nodes. Then the **liveness phase** heals the
//! network, restarts crashed nodes and requires, within a virtual-time
//! budget, that every live replica decides and applies the same prefix and
//! every client operation completes. The same seed always produces the same
//! run; [`SimReport::trace_hash`] proves it.

mod disk;
mod network;
mod node;
mod queue;

pub use disk::Disk;
pub use network::{Fate, NetworkModel};
pub use node::{App, NodeStatus, SimNode};
pub use queue::EventQueue;

use crate::checkers::{
    hash_batch_parts, AgreementChecker, ApplyOrderChecker, ConvergenceChecker, DurabilityChecker,
    IntegrityChecker, ValidityChecker, Violation, ViolationKind,
};
use rabia_core::protocol::coin::mix64;
use rabia_core::protocol::{
    wire, Action, Delivery, DeliveryOutcome, Envelope, Message, RecoveredState, Replica,
    ReplicaConfig,
};
use rabia_core::time::Instant;
use rabia_core::{ClientId, ClusterConfig, NodeId, Operation, Slot, SubmitError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// Which fault classes a run injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultClasses {
    /// Random message loss.
    pub loss: bool,
    /// Random message duplication.
    pub duplication: bool,
    /// A slow latency tail (reorders messages).
    pub reordering: bool,
    /// Partitions: symmetric splits, one-way cuts, isolated nodes.
    pub partitions: bool,
    /// Crash and restart from the durable disk state.
    pub crash_restart: bool,
    /// Crash for good (at most f nodes).
    pub crash_stop: bool,
    /// A crash that loses the node's whole store: it restarts empty under
    /// the same id (one node per run, and then at most f − 1 crash-stops).
    pub disk_loss: bool,
    /// Wall-clock skew between nodes (affects batch ordering keys).
    pub clock_skew: bool,
}

impl FaultClasses {
    /// Every fault class on.
    pub const ALL: FaultClasses = FaultClasses {
        loss: true,
        duplication: true,
        reordering: true,
        partitions: true,
        crash_restart: true,
        crash_stop: true,
        disk_loss: true,
        clock_skew: true,
    };
    /// No faults: a healthy network with small random latency.
    pub const NONE: FaultClasses = FaultClasses {
        loss: false,
        duplication: false,
        reordering: false,
        partitions: false,
        crash_restart: false,
        crash_stop: false,
        disk_loss: false,
        clock_skew: false,
    };
}

/// The parameters of one simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed: everything random in the run derives from it.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Operations each client issues (one at a time, retried until done).
    pub operations_per_client: u64,
    /// How long faults are injected (virtual time).
    pub fault_phase: Duration,
    /// How long, after healing, the cluster has to converge.
    pub liveness_budget: Duration,
    /// Which faults to inject.
    pub faults: FaultClasses,
    /// The protocol configuration of every replica.
    pub replica: ReplicaConfig,
    /// A client re-sends an operation to another node after this long.
    pub client_timeout: Duration,
    /// Round-trip every message through the wire codec.
    pub wire_check: bool,
    /// Take application snapshots (every few slots, chosen per seed), drop
    /// the log behind them, restart from them, and ship them to laggards.
    pub snapshots: bool,
    /// The disk holds `Decided` records (not urgent: nothing waits on them)
    /// until a later urgent record's write completes them, never on their
    /// own: the engine's persistence task holds them for the next Proposal's
    /// sync, and here even an idle node never syncs them. Anything that
    /// waited on one would stall the run.
    pub hold_decided: bool,
}

impl SimConfig {
    /// A run of `nodes` replicas with every fault class on.
    pub fn new(seed: u64, nodes: usize) -> Self {
        let replica = ReplicaConfig {
            retransmit_interval: Duration::from_millis(50),
            heartbeat_interval: Duration::from_millis(50),
            // Small, so that laggards need snapshot transfer.
            decided_retention: 64,
            // Both ways of opening slots, as the engine and a plain driver
            // do: held after each decision until the node has applied it
            // (odd seeds), and every third seed without the opener hint.
            hold_opening_after_decision: seed % 2 == 1,
            opener_wait: if seed.is_multiple_of(3) {
                Duration::ZERO
            } else {
                ReplicaConfig::default().opener_wait
            },
            // The opener's wait for the previous value's contributors: off,
            // long (5 ms, most of a simulated slot) or the default.
            contributor_wait: match seed % 5 {
                0 => Duration::ZERO,
                1 => Duration::from_millis(5),
                _ => ReplicaConfig::default().contributor_wait,
            },
            // The wait for unanimity before sending a State: off, long
            // (5 ms) or the default.
            unanimity_wait: match seed % 7 {
                0 => Duration::ZERO,
                1 => Duration::from_millis(5),
                _ => ReplicaConfig::default().unanimity_wait,
            },
            // Openers announce their value ahead of their Proposal on half
            // the seeds (two in every four).
            announce_opening: seed % 4 >= 2,
            ..ReplicaConfig::default()
        };
        SimConfig {
            seed,
            nodes,
            clients: 6,
            operations_per_client: 15,
            fault_phase: Duration::from_secs(2),
            liveness_budget: Duration::from_secs(30),
            faults: FaultClasses::ALL,
            replica,
            client_timeout: Duration::from_millis(400),
            wire_check: true,
            snapshots: true,
            // Half the seeds, independent of the settings above.
            hold_decided: (seed / 8) % 2 == 1,
        }
    }
}

/// Counts of what a run did, per fault class and per outcome.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimStats {
    /// Events processed.
    pub events: u64,
    /// Messages handed to the network (per destination).
    pub messages_sent: u64,
    /// Messages lost at random.
    pub messages_lost: u64,
    /// Messages delivered twice.
    pub messages_duplicated: u64,
    /// Messages dropped by partitions.
    pub messages_blocked: u64,
    /// Messages that took the slow tail.
    pub messages_delayed: u64,
    /// Symmetric partitions (two groups).
    pub partitions_symmetric: u64,
    /// One-way link cuts.
    pub partitions_asymmetric: u64,
    /// Single-node isolations.
    pub isolations: u64,
    /// Crash-restarts.
    pub crash_restarts: u64,
    /// Of those, crashes placed at a persistence boundary.
    pub targeted_crashes: u64,
    /// Crash-stops.
    pub crash_stops: u64,
    /// Crash-restarts that lost the node's whole store.
    pub disk_losses: u64,
    /// Writes lost because a node crashed before they were durable.
    pub writes_lost: u64,
    /// Nodes with a skewed wall clock.
    pub skewed_clocks: u64,
    /// Decided slots (cluster-wide).
    pub slots_decided: u64,
    /// Of those, ⊥.
    pub null_slots: u64,
    /// Slots decided by some replica's own rounds, summed over replicas.
    pub slots_by_protocol: u64,
    /// Of those, decided because every member proposed the same value.
    pub unanimous_slots: u64,
    /// Values announced ahead of a Proposal (`Opening`), by the replicas
    /// running at the end.
    pub openings_sent: u64,
    /// Proposals sent by reference (`ProposalRef`), by the replicas running
    /// at the end.
    pub proposals_by_reference: u64,
    /// Proposals received by reference whose payloads were fetched from
    /// the sender (`ProposalFetch`), by the replicas running at the end.
    pub proposal_fetches: u64,
    /// Phases those took, summed.
    pub phases_total: u64,
    /// The most phases any slot took at any replica.
    pub phases_max: u32,
    /// Snapshots taken (written to disk).
    pub snapshots_taken: u64,
    /// Snapshots shipped to lagging replicas and installed.
    pub snapshots_installed: u64,
    /// Restarts that began from a snapshot.
    pub restarts_from_snapshot: u64,
    /// Operations acknowledged to clients.
    pub operations_acknowledged: u64,
    /// Client retries (timeouts and refusals).
    pub client_retries: u64,
    /// Virtual time at which the run ended.
    pub virtual_time: Duration,
}

impl SimStats {
    /// Adds another run's counts to these (the maximum for `phases_max`).
    pub fn accumulate(&mut self, other: &SimStats) {
        self.events += other.events;
        self.messages_sent += other.messages_sent;
        self.messages_lost += other.messages_lost;
        self.messages_duplicated += other.messages_duplicated;
        self.messages_blocked += other.messages_blocked;
        self.messages_delayed += other.messages_delayed;
        self.partitions_symmetric += other.partitions_symmetric;
        self.partitions_asymmetric += other.partitions_asymmetric;
        self.isolations += other.isolations;
        self.crash_restarts += other.crash_restarts;
        self.targeted_crashes += other.targeted_crashes;
        self.crash_stops += other.crash_stops;
        self.disk_losses += other.disk_losses;
        self.writes_lost += other.writes_lost;
        self.skewed_clocks += other.skewed_clocks;
        self.slots_decided += other.slots_decided;
        self.null_slots += other.null_slots;
        self.slots_by_protocol += other.slots_by_protocol;
        self.unanimous_slots += other.unanimous_slots;
        self.openings_sent += other.openings_sent;
        self.proposals_by_reference += other.proposals_by_reference;
        self.proposal_fetches += other.proposal_fetches;
        self.phases_total += other.phases_total;
        self.phases_max = self.phases_max.max(other.phases_max);
        self.operations_acknowledged += other.operations_acknowledged;
        self.snapshots_taken += other.snapshots_taken;
        self.snapshots_installed += other.snapshots_installed;
        self.restarts_from_snapshot += other.restarts_from_snapshot;
        self.client_retries += other.client_retries;
    }
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// The first violation, if any.
    pub violation: Option<Violation>,
    /// A hash of every event processed: equal seeds give equal hashes.
    pub trace_hash: u64,
    /// What happened.
    pub stats: SimStats,
}

impl SimReport {
    /// Whether every checker passed.
    pub fn passed(&self) -> bool {
        self.violation.is_none()
    }
}

/// Events at one virtual instant beyond which a run is reported as a busy
/// loop (normal runs stay orders of magnitude below).
const SAME_INSTANT_EVENTS_MAX: u64 = 1_000_000;

/// Runs one simulation to completion.
pub fn run(config: SimConfig) -> SimReport {
    World::new(config).run()
}

#[derive(Clone, Debug)]
enum Event {
    Deliver {
        to: usize,
        from: usize,
        envelope: Envelope,
    },
    Timer {
        node: usize,
        generation: u64,
    },
    DiskDone {
        node: usize,
        incarnation: u64,
        token: u64,
    },
    ClientIssue {
        client: usize,
    },
    ClientTimeout {
        client: usize,
        attempt: u64,
    },
    Crash {
        node: usize,
        restart_after: Option<Duration>,
        /// The node's store is lost too.
        wipe: bool,
    },
    Restart {
        node: usize,
    },
    SnapshotDone {
        node: usize,
        incarnation: u64,
    },
    Partition(PartitionKind),
    HealNetwork,
    EndFaults,
    LivenessProbe,
}

#[derive(Clone, Debug)]
enum PartitionKind {
    Symmetric(Vec<usize>),
    OneWay(usize, usize),
    Isolate(usize),
}

struct Client {
    id: ClientId,
    next_seq: u64,
    total: u64,
    /// The operation in flight: (seq, node, attempt number).
    waiting: Option<(u64, usize, u64)>,
    attempts: u64,
    /// Per node: do not send to it before this time (it timed out).
    avoid_until: Vec<Instant>,
}

struct World {
    config: SimConfig,
    rng: ChaCha8Rng,
    now: Instant,
    queue: EventQueue<Event>,
    network: NetworkModel,
    nodes: Vec<SimNode>,
    ids: Vec<NodeId>,
    clients: Vec<Client>,
    faults_over: bool,
    /// Take a snapshot after every this many slots (0: never).
    snapshot_every: u64,
    /// Per durable-write probability of a crash placed exactly at a
    /// persistence boundary (after a write is issued, or right after it is
    /// durable and before what it gated is sent).
    targeted_crash: f64,
    agreement: AgreementChecker,
    validity: ValidityChecker,
    integrity: IntegrityChecker,
    order: ApplyOrderChecker,
    convergence: ConvergenceChecker,
    durability: DurabilityChecker,
    violation: Option<Violation>,
    /// Batches created by submissions, and batches seen decided.
    created_batches: Vec<rabia_core::BatchId>,
    decided_batches: std::collections::BTreeSet<rabia_core::BatchId>,
    trace: u64,
    stats: SimStats,
}

impl World {
    fn new(config: SimConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let ids: Vec<NodeId> = (1..=config.nodes as u64).map(NodeId::from_u64).collect();
        let mut network = NetworkModel::default();
        network.base_latency = Duration::from_micros(rng.gen_range(20..300));
        network.jitter = Duration::from_micros(rng.gen_range(1..500));
        let f = &config.faults;
        if f.loss {
            network.loss = rng.gen_range(0.0..0.15);
        }
        if f.duplication {
            network.duplication = rng.gen_range(0.0..0.08);
        }
        if f.reordering {
            network.tail_probability = rng.gen_range(0.0..0.05);
            network.tail_latency = Duration::from_millis(rng.gen_range(1..40));
        }
        let mut stats = SimStats::default();
        let nodes = ids
            .iter()
            .map(|id| {
                let skew = if f.clock_skew && rng.gen_bool(0.5) {
                    stats.skewed_clocks += 1;
                    rng.gen_range(-100_000..100_000)
                } else {
                    0
                };
                SimNode {
                    id: *id,
                    replica: None,
                    status: NodeStatus::Down,
                    incarnation: 0,
                    disk: Disk::default(),
                    app: App::default(),
                    timer_generation: 0,
                    timer_at: None,
                    clock_skew_us: skew,
                    disk_latency: Duration::from_micros(rng.gen_range(10..2_000)),
                    rejoining: false,
                }
            })
            .collect();
        let clients = (0..config.clients)
            .map(|i| Client {
                id: ClientId(i as u64 + 1),
                next_seq: 1,
                total: config.operations_per_client,
                waiting: None,
                attempts: 0,
                avoid_until: vec![Instant::ZERO; config.nodes],
            })
            .collect();
        World {
            rng,
            now: Instant::ZERO,
            queue: EventQueue::default(),
            network,
            nodes,
            ids,
            clients,
            faults_over: false,
            snapshot_every: 0,
            targeted_crash: 0.0,
            agreement: AgreementChecker::default(),
            validity: ValidityChecker::default(),
            integrity: IntegrityChecker::default(),
            order: ApplyOrderChecker::default(),
            convergence: ConvergenceChecker::default(),
            durability: DurabilityChecker::default(),
            violation: None,
            created_batches: Vec::new(),
            decided_batches: std::collections::BTreeSet::new(),
            trace: config.seed,
            stats,
            config,
        }
    }

    fn run(mut self) -> SimReport {
        if self.config.snapshots && self.rng.gen_bool(0.7) {
            self.snapshot_every = self.rng.gen_range(4..40);
        }
        for node in 0..self.nodes.len() {
            self.start_node(node);
        }
        self.plan_faults();
        for client in 0..self.clients.len() {
            let at = Instant(self.rng.gen_range(0..5_000_000));
            self.queue.push(at, Event::ClientIssue { client });
        }
        let end_faults = Instant::ZERO + self.config.fault_phase;
        self.queue.push(end_faults, Event::EndFaults);
        let deadline = end_faults + self.config.liveness_budget;
        let mut same_instant = 0u64;
        while self.violation.is_none() {
            let Some((at, event)) = self.queue.pop() else {
                break;
            };
            if at > deadline {
                let detail = self.liveness_summary();
                self.fail(ViolationKind::Liveness, detail);
                break;
            }
            same_instant = if at == self.now { same_instant + 1 } else { 0 };
            if same_instant > SAME_INSTANT_EVENTS_MAX {
                // A replica asking to be woken at a time already past, over
                // and over: virtual time would never advance again.
                self.fail(
                    ViolationKind::Liveness,
                    format!(
                        "busy loop: more than {SAME_INSTANT_EVENTS_MAX} events without virtual time advancing (a timer left in the past?)"
                    ),
                );
                break;
            }
            self.now = at;
            self.stats.events += 1;
            self.trace_event(&event);
            if self.handle(event) {
                break;
            }
        }
        self.collect_protocol_stats();
        self.stats.virtual_time = Duration::from_nanos(self.now.as_nanos());
        SimReport {
            seed: self.config.seed,
            nodes: self.config.nodes,
            violation: self.violation,
            trace_hash: self.trace,
            stats: self.stats,
        }
    }

    // ------------------------------------------------------------- planning

    /// Schedules a crash of a random node at a random time of the fault
    /// phase (nanoseconds), restarting it 1 ms to `down_max_us` later,
    /// with its store lost if `wipe`.
    fn plan_crash_restart(&mut self, phase: u64, down_max_us: u64, wipe: bool) {
        let at = Instant(self.rng.gen_range(0..phase));
        let node = self.rng.gen_range(0..self.nodes.len());
        let down = Duration::from_micros(self.rng.gen_range(1_000..down_max_us));
        self.queue.push(
            at,
            Event::Crash {
                node,
                restart_after: Some(down),
                wipe,
            },
        );
    }

    fn plan_faults(&mut self) {
        let phase = self.config.fault_phase.as_nanos() as u64;
        let n = self.nodes.len();
        let f = (n - 1) / 2;
        let faults = self.config.faults;
        if faults.crash_restart {
            self.targeted_crash = self.rng.gen_range(0.0..0.01);
            for _ in 0..self.rng.gen_range(0..=5) {
                self.plan_crash_restart(phase, 600_000, false);
            }
        }
        // A lost store makes its node a learner until it hears f + 1
        // participating peers: keep the crash-stops to f − 1 then.
        let disk_loss = faults.disk_loss && f > 0 && self.rng.gen_bool(0.3);
        if disk_loss {
            self.plan_crash_restart(phase, 300_000, true);
        }
        let stops_max = if disk_loss { f - 1 } else { f };
        if faults.crash_stop && stops_max > 0 && self.rng.gen_bool(0.5) {
            let count = self.rng.gen_range(1..=stops_max);
            let mut victims: Vec<usize> = (0..n).collect();
            for i in 0..count {
                let j = self.rng.gen_range(i..n);
                victims.swap(i, j);
                let at = Instant(self.rng.gen_range(0..phase));
                self.queue.push(
                    at,
                    Event::Crash {
                        node: victims[i],
                        restart_after: None,
                        wipe: false,
                    },
                );
            }
        }
        if faults.partitions && n > 1 {
            for _ in 0..self.rng.gen_range(0..=4) {
                let at = self.rng.gen_range(0..phase);
                let length = self.rng.gen_range(10_000_000..700_000_000u64);
                let kind = match self.rng.gen_range(0..3) {
                    0 => {
                        let side: Vec<usize> = (0..n).filter(|_| self.rng.gen_bool(0.5)).collect();
                        PartitionKind::Symmetric(side)
                    }
                    1 => {
                        let a = self.rng.gen_range(0..n);
                        let b = (a + self.rng.gen_range(1..n)) % n;
                        PartitionKind::OneWay(a, b)
                    }
                    _ => PartitionKind::Isolate(self.rng.gen_range(0..n)),
                };
                self.queue.push(Instant(at), Event::Partition(kind));
                self.queue
                    .push(Instant((at + length).min(phase)), Event::HealNetwork);
            }
        }
    }

    // --------------------------------------------------------------- events

    /// Handles one event; returns true when the run is complete.
    fn handle(&mut self, event: Event) -> bool {
        match event {
            Event::Deliver { to, from, envelope } => {
                if let Some(replica) = self.nodes[to].replica.as_mut() {
                    replica.handle_message(self.now, self.ids[from], envelope);
                    self.drain(to);
                }
            }
            Event::Timer { node, generation } => {
                let n = &mut self.nodes[node];
                if n.timer_generation == generation {
                    n.timer_at = None;
                    if let Some(replica) = n.replica.as_mut() {
                        replica.handle_timeout(self.now);
                        self.drain(node);
                    }
                }
            }
            Event::DiskDone {
                node,
                incarnation,
                token,
            } => {
                let n = &mut self.nodes[node];
                if n.incarnation == incarnation && n.disk.complete(token) {
                    if self.maybe_targeted_crash(node) {
                        // Durable, but nothing it gated has left.
                        return false;
                    }
                    let n = &mut self.nodes[node];
                    if let Some(replica) = n.replica.as_mut() {
                        replica
                            .handle_persisted(self.now, rabia_core::protocol::PersistToken(token));
                        self.drain(node);
                    }
                }
            }
            Event::ClientIssue { client } => self.client_issue(client),
            Event::ClientTimeout { client, attempt } => {
                let c = &mut self.clients[client];
                if let Some((_, node, a)) = c.waiting {
                    if a != attempt {
                        return false;
                    }
                    c.waiting = None;
                    c.avoid_until[node] = self.now + Duration::from_secs(1);
                    self.stats.client_retries += 1;
                    self.client_issue(client);
                }
            }
            Event::Crash {
                node,
                restart_after,
                wipe,
            } => self.crash(node, restart_after, wipe),
            Event::SnapshotDone { node, incarnation } => {
                let n = &mut self.nodes[node];
                if n.incarnation == incarnation && n.disk.complete_snapshot() {
                    self.stats.snapshots_taken += 1;
                }
            }
            Event::Restart { node } => {
                if self.nodes[node].status == NodeStatus::Down {
                    self.start_node(node);
                }
            }
            Event::Partition(kind) => self.partition(kind),
            Event::HealNetwork => self.network.heal(),
            Event::EndFaults => {
                self.faults_over = true;
                self.network.heal();
                self.network.loss = 0.0;
                self.network.duplication = 0.0;
                for node in 0..self.nodes.len() {
                    if self.nodes[node].status == NodeStatus::Down {
                        self.start_node(node);
                    }
                }
                let probe = self.now + Duration::from_millis(10);
                self.queue.push(probe, Event::LivenessProbe);
            }
            Event::LivenessProbe => {
                if self.converged() {
                    self.check_batches_decided();
                    self.check_durability();
                    return true;
                }
                let probe = self.now + Duration::from_millis(10);
                self.queue.push(probe, Event::LivenessProbe);
            }
        }
        false
    }

    fn partition(&mut self, kind: PartitionKind) {
        if self.faults_over {
            return;
        }
        let n = self.nodes.len();
        match kind {
            PartitionKind::Symmetric(side) => {
                self.stats.partitions_symmetric += 1;
                for a in 0..n {
                    for b in 0..n {
                        if side.contains(&a) != side.contains(&b) {
                            self.network.block(a, b);
                        }
                    }
                }
            }
            PartitionKind::OneWay(a, b) => {
                self.stats.partitions_asymmetric += 1;
                self.network.block(a, b);
            }
            PartitionKind::Isolate(a) => {
                self.stats.isolations += 1;
                for b in 0..n {
                    self.network.block(a, b);
                    self.network.block(b, a);
                }
            }
        }
    }

    fn targeted_down_time(&mut self) -> Duration {
        Duration::from_micros(self.rng.gen_range(500..50_000))
    }

    /// Crashes `node` now with probability `targeted_crash`.
    fn maybe_targeted_crash(&mut self, node: usize) -> bool {
        if self.faults_over || self.targeted_crash == 0.0 || !self.rng.gen_bool(self.targeted_crash)
        {
            return false;
        }
        let down = self.targeted_down_time();
        self.stats.targeted_crashes += 1;
        self.crash(node, Some(down), false);
        true
    }

    /// Schedules a crash of `node` at the current instant (after the
    /// current drain) with probability `targeted_crash`.
    fn maybe_targeted_crash_after_drain(&mut self, node: usize) -> bool {
        if self.faults_over || self.targeted_crash == 0.0 || !self.rng.gen_bool(self.targeted_crash)
        {
            return false;
        }
        let down = self.targeted_down_time();
        self.stats.targeted_crashes += 1;
        self.queue.push(
            self.now,
            Event::Crash {
                node,
                restart_after: Some(down),
                wipe: false,
            },
        );
        true
    }

    fn crash(&mut self, node: usize, restart_after: Option<Duration>, wipe: bool) {
        if self.faults_over || self.nodes[node].status != NodeStatus::Up {
            return;
        }
        let n = &mut self.nodes[node];
        n.replica = None;
        n.timer_generation += 1;
        n.timer_at = None;
        self.stats.writes_lost += n.disk.crash() as u64;
        if wipe {
            n.disk = Disk::default();
            n.rejoining = true;
            self.stats.disk_losses += 1;
        }
        match restart_after {
            Some(after) => {
                n.status = NodeStatus::Down;
                self.stats.crash_restarts += 1;
                self.queue.push(self.now + after, Event::Restart { node });
            }
            None => {
                n.status = NodeStatus::Stopped;
                self.stats.crash_stops += 1;
            }
        }
    }

    fn start_node(&mut self, node: usize) {
        let id = self.ids[node];
        let cluster = match ClusterConfig::try_new(id, self.ids.clone()) {
            Ok(c) => c,
            Err(e) => {
                self.fail(ViolationKind::Liveness, format!("bad cluster config: {e}"));
                return;
            }
        };
        let n = &mut self.nodes[node];
        let snapshot = n.disk.snapshot().cloned();
        let base = snapshot.as_ref().map_or(Slot::ZERO, |s| s.base_slot);
        let recovered = RecoveredState {
            incarnation: n.incarnation,
            base_slot: base,
            filter: snapshot.as_ref().map(|s| s.filter.clone()),
            records: n.disk.durable().to_vec(),
        };
        let rng_seed = mix64(self.config.seed ^ mix64(node as u64 ^ (n.incarnation << 32)));
        let mut replica_config = self.config.replica.clone();
        if n.rejoining {
            replica_config.empty_store = rabia_core::protocol::EmptyStore::Rejoin;
        }
        match Replica::new(replica_config, cluster, recovered, self.now, rng_seed) {
            Ok(replica) => {
                n.replica = Some(replica);
                n.status = NodeStatus::Up;
                n.incarnation += 1;
                n.app = snapshot.as_ref().map(App::restore).unwrap_or_default();
                if snapshot.is_some() && n.incarnation > 1 {
                    self.stats.restarts_from_snapshot += 1;
                }
                let applied = n.app.applied.clone();
                self.order.reset(id, base);
                self.integrity.reset_to(id, applied);
                self.drain(node);
            }
            Err(e) => self.fail(
                ViolationKind::Liveness,
                format!("replica refused to start: {e}"),
            ),
        }
    }

    // -------------------------------------------------------------- clients

    fn client_issue(&mut self, client: usize) {
        let c = &mut self.clients[client];
        if c.waiting.is_some() || c.next_seq > c.total {
            return;
        }
        let seq = c.next_seq;
        c.attempts += 1;
        let attempt = c.attempts;
        let client_id = c.id;
        let now = self.now;
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|i| c.avoid_until[*i] <= now)
            .collect();
        let node = if candidates.is_empty() {
            self.rng.gen_range(0..self.nodes.len())
        } else {
            candidates[self.rng.gen_range(0..candidates.len())]
        };
        self.clients[client].waiting = Some((seq, node, attempt));
        let timeout = self.now + self.config.client_timeout;
        self.queue
            .push(timeout, Event::ClientTimeout { client, attempt });
        let data = format!("c{}-op{}", client_id.0, seq).into_bytes();
        let op = Operation::with_session(data, client_id, seq);
        let wall = self.wall_clock(node);
        let Some(replica) = self.nodes[node].replica.as_mut() else {
            return; // node down: the client times out and retries elsewhere
        };
        match replica.submit(self.now, wall, vec![op.clone()]) {
            Ok(id) => {
                self.created_batches.push(id);
                self.validity
                    .created_hash(id, hash_batch_parts(id, std::slice::from_ref(&op)));
                self.drain(node);
            }
            Err(SubmitError::Overloaded { .. }) | Err(SubmitError::Stopped { .. }) => {}
            Err(e @ SubmitError::InvalidBatch { .. }) => {
                self.fail(ViolationKind::Liveness, format!("valid batch refused: {e}"));
            }
        }
    }

    fn wall_clock(&self, node: usize) -> u64 {
        let micros = (self.now.as_nanos() / 1_000) as i64 + 1_000_000;
        (micros + self.nodes[node].clock_skew_us).max(0) as u64
    }

    // ---------------------------------------------------------------- nodes

    /// Carries out every action `node`'s replica has ready.
    fn drain(&mut self, node: usize) {
        while let Some(action) = self.nodes[node]
            .replica
            .as_mut()
            .and_then(Replica::poll_action)
        {
            match action {
                Action::Send { to, envelope } => {
                    self.observe_outgoing(node, &envelope);
                    match self.ids.iter().position(|id| *id == to) {
                        Some(j) => self.send(node, j, envelope),
                        None => {
                            self.fail(ViolationKind::Validity, format!("send to unknown {to:?}"))
                        }
                    }
                }
                Action::Broadcast { envelope } => {
                    self.observe_outgoing(node, &envelope);
                    for j in 0..self.nodes.len() {
                        if j != node {
                            self.send(node, j, envelope.clone());
                        }
                    }
                }
                Action::Persist { token, record } => {
                    if self.maybe_targeted_crash_after_drain(node) {
                        // The write is issued; the crash comes once the
                        // actions already taken (sends included) are out.
                    }
                    let hold = self.config.hold_decided && !record.is_urgent();
                    let n = &mut self.nodes[node];
                    let done = n.disk.write(self.now, n.disk_latency, token.0, record);
                    let incarnation = n.incarnation;
                    if !hold {
                        self.queue.push(
                            done,
                            Event::DiskDone {
                                node,
                                incarnation,
                                token: token.0,
                            },
                        );
                    }
                }
                Action::Deliver(delivery) => self.deliver(node, delivery),
                // The replica asked a peer for its snapshot (informational).
                Action::NeedSnapshot { .. } => {}
                Action::ServeSnapshot { to } => self.serve_snapshot(node, to),
                Action::SnapshotChunk {
                    offset,
                    total,
                    data,
                    ..
                } => {
                    if offset == 0 && data.len() as u64 == total {
                        self.install_snapshot(node, &data);
                    }
                }
            }
        }
        self.reschedule_timer(node);
    }

    fn reschedule_timer(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let Some(at) = n.replica.as_ref().and_then(Replica::poll_timeout) else {
            return;
        };
        if n.timer_at == Some(at) {
            return;
        }
        n.timer_generation += 1;
        n.timer_at = Some(at);
        let generation = n.timer_generation;
        self.queue
            .push(at.max(self.now), Event::Timer { node, generation });
    }

    fn observe_outgoing(&mut self, node: usize, envelope: &Envelope) {
        if self.config.wire_check {
            let round_trip = wire::encode(envelope)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    wire::decode(&bytes, wire::DEFAULT_FRAME_BYTES_MAX).map_err(|e| e.to_string())
                });
            if round_trip.as_ref() != Ok(envelope) {
                self.fail(
                    ViolationKind::Validity,
                    format!(
                        "wire round trip changed a {} message: {round_trip:?}",
                        envelope.message.kind()
                    ),
                );
            }
        }
        let id = self.ids[node];
        let decisions: Vec<(Slot, Option<rabia_core::ValueId>)> = match &envelope.message {
            Message::Decision { slot, value } => vec![(*slot, value.value_id().cloned())],
            Message::CatchUpReply { decisions, .. } => decisions
                .iter()
                .map(|(s, v)| (*s, v.value_id().cloned()))
                .collect(),
            _ => Vec::new(),
        };
        for (slot, batch) in decisions {
            if let Err(detail) = self.agreement.observe_id(id, slot, batch) {
                self.fail(ViolationKind::Agreement, detail);
            }
        }
        if let Message::Decision { value, .. } = &envelope.message {
            if let Err(detail) = self.validity.check(value) {
                self.fail(ViolationKind::Validity, detail);
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, envelope: Envelope) {
        self.stats.messages_sent += 1;
        match self.network.fate(&mut self.rng, from, to) {
            Fate::Lost => self.stats.messages_lost += 1,
            Fate::Blocked => self.stats.messages_blocked += 1,
            Fate::Deliver(delays) => {
                if delays.len() > 1 {
                    self.stats.messages_duplicated += 1;
                }
                for delay in delays {
                    if delay > self.network.base_latency + self.network.jitter {
                        self.stats.messages_delayed += 1;
                    }
                    self.queue.push(
                        self.now + delay,
                        Event::Deliver {
                            to,
                            from,
                            envelope: envelope.clone(),
                        },
                    );
                }
            }
        }
    }

    fn deliver(&mut self, node: usize, delivery: Delivery) {
        let id = self.ids[node];
        let slot = delivery.slot;
        if let Err(detail) = self.order.delivered(id, slot) {
            self.fail(ViolationKind::ApplyOrder, detail);
            return;
        }
        let consistent = match (&delivery.outcome, &delivery.value) {
            (DeliveryOutcome::Null, None) => true,
            (DeliveryOutcome::Null, Some(_)) | (_, None) => false,
            (DeliveryOutcome::Apply(batches), Some(value)) => {
                batches.iter().all(|b| value.contains(b.id))
            }
            (DeliveryOutcome::Duplicate(ids), Some(value)) => {
                ids.iter().all(|id| value.contains(*id))
            }
        };
        if !consistent {
            self.fail(
                ViolationKind::Validity,
                format!("{slot}: delivery {delivery:?} does not match its value"),
            );
            return;
        }
        if let Some(value) = &delivery.value {
            self.decided_batches
                .extend(value.batch_ids().iter().copied());
        }
        if let Err(detail) = self.agreement.observe_id(id, slot, delivery.value.clone()) {
            self.fail(ViolationKind::Agreement, detail);
            return;
        }
        if let DeliveryOutcome::Apply(batches) = &delivery.outcome {
            if let Some(detail) = batches
                .iter()
                .find_map(|batch| self.validity.check_batch(batch).err())
            {
                self.fail(ViolationKind::Validity, detail);
                return;
            }
        }
        let answered = self.nodes[node].app.apply(&delivery.outcome);
        let digest = self.nodes[node].app.digest;
        self.trace = mix64(self.trace ^ digest ^ slot.0);
        if let Err(detail) = self.convergence.observe(id, slot, digest) {
            self.fail(ViolationKind::Convergence, detail);
            return;
        }
        for applied in answered {
            if applied.fresh {
                if let Err(detail) = self.integrity.applied(id, applied.tag) {
                    self.fail(ViolationKind::Integrity, detail);
                    return;
                }
            }
            self.reply_to_client(node, applied.tag);
        }
        // Applied and answered: the node may open the next slot (as the
        // engine releases its hold once the apply task caught up).
        let now = self.now;
        if let Some(replica) = self.nodes[node].replica.as_mut() {
            if replica.opening_held() {
                replica.hold_opening(now, false);
            }
        }
        if self.snapshot_every > 0 && (slot.0 + 1).is_multiple_of(self.snapshot_every) {
            let n = &mut self.nodes[node];
            n.disk.write_snapshot(n.app.snapshot(slot.next()));
            let (done, incarnation) = (self.now + n.disk_latency, n.incarnation);
            self.queue
                .push(done, Event::SnapshotDone { node, incarnation });
        }
    }

    /// A lagging peer asked `node` for its snapshot: send the state as of
    /// what `node` has applied, in one chunk.
    fn serve_snapshot(&mut self, node: usize, to: NodeId) {
        let base = self.order.next(self.ids[node]);
        let snapshot = self.nodes[node].app.snapshot(base);
        let Ok(data) = bincode::serialize(&snapshot) else {
            self.fail(ViolationKind::Validity, "snapshot does not encode".into());
            return;
        };
        let Some(j) = self.ids.iter().position(|id| *id == to) else {
            return;
        };
        let envelope = Envelope {
            sender: self.ids[node],
            epoch: rabia_core::Epoch::default(),
            message: Message::SnapshotChunk {
                base_slot: base,
                offset: 0,
                total: data.len() as u64,
                data,
            },
        };
        self.send(node, j, envelope);
    }

    /// `node` received a whole snapshot: restore the application, persist
    /// the snapshot, and move the replica past it (as the engine does).
    fn install_snapshot(&mut self, node: usize, data: &[u8]) {
        let Ok(snapshot) = bincode::deserialize::<node::SimSnapshot>(data) else {
            self.fail(
                ViolationKind::Validity,
                "received snapshot does not decode".into(),
            );
            return;
        };
        let id = self.ids[node];
        let base = snapshot.base_slot;
        let n = &mut self.nodes[node];
        // Like the engine: only if the replica itself is behind the snapshot
        // (it may have decided those slots already and be delivering them).
        let installed = n
            .replica
            .as_mut()
            .is_some_and(|r| r.install_snapshot(self.now, base, snapshot.filter.clone()));
        if !installed {
            return;
        }
        n.app = App::restore(&snapshot);
        n.disk.write_snapshot(snapshot.clone());
        let (done, incarnation) = (self.now + n.disk_latency, n.incarnation);
        self.queue
            .push(done, Event::SnapshotDone { node, incarnation });
        self.order.reset(id, base);
        self.integrity.reset_to(id, snapshot.applied);
        self.stats.snapshots_installed += 1;
    }

    fn reply_to_client(&mut self, node: usize, tag: rabia_core::SessionTag) {
        let Some(index) = (tag.client.0 as usize).checked_sub(1) else {
            return;
        };
        let Some(client) = self.clients.get_mut(index) else {
            return;
        };
        if let Some((seq, target, _)) = client.waiting {
            if seq == tag.seq && target == node {
                client.waiting = None;
                client.next_seq += 1;
                self.durability.acknowledged(tag);
                self.stats.operations_acknowledged += 1;
                let think = Duration::from_micros(self.rng.gen_range(0..3_000));
                self.queue
                    .push(self.now + think, Event::ClientIssue { client: index });
            }
        }
    }

    // ------------------------------------------------------------ liveness

    fn live_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].status != NodeStatus::Stopped)
    }

    fn converged(&self) -> bool {
        if self.clients.iter().any(|c| c.next_seq <= c.total) {
            return false;
        }
        let mut target: Option<Slot> = None;
        for i in self.live_nodes() {
            let Some(replica) = self.nodes[i].replica.as_ref() else {
                return false;
            };
            let next = replica.next_slot();
            if self.order.next(self.ids[i]) != next {
                return false; // decided but not yet applied
            }
            if replica.pending_len() > 0 || replica.slot_in_flight() {
                return false; // work still queued or running
            }
            match target {
                None => target = Some(next),
                Some(t) if t != next => return false,
                Some(_) => {}
            }
        }
        true
    }

    /// Every batch created by a replica incarnation that is still running
    /// must be decided: a live replica never loses its own batches (client
    /// retries would hide such a loss from the client-level checks).
    fn check_batches_decided(&mut self) {
        let lost = self.created_batches.iter().find(|id| {
            let Some(node) = self.ids.iter().position(|n| *n == id.origin) else {
                return false;
            };
            let n = &self.nodes[node];
            let live_incarnation =
                n.status == NodeStatus::Up && n.incarnation == id.incarnation + 1;
            live_incarnation && !self.decided_batches.contains(id)
        });
        if let Some(id) = lost.copied() {
            self.fail(
                ViolationKind::Liveness,
                format!("batch {id:?} of a replica that never crashed since was never decided"),
            );
        }
    }

    fn check_durability(&mut self) {
        let live: Vec<usize> = self.live_nodes().collect();
        for i in live {
            let id = self.ids[i];
            let empty = std::collections::BTreeSet::new();
            let applied = self.integrity.applied_by(id).unwrap_or(&empty);
            if let Err(detail) = self.durability.check(id, applied) {
                self.fail(ViolationKind::Durability, detail);
                return;
            }
        }
    }

    fn liveness_summary(&self) -> String {
        let clients_left: u64 = self
            .clients
            .iter()
            .map(|c| (c.total + 1).saturating_sub(c.next_seq))
            .sum();
        let nodes: Vec<String> = (0..self.nodes.len())
            .map(|i| {
                let n = &self.nodes[i];
                match &n.replica {
                    Some(r) => {
                        let m = r.metrics();
                        format!(
                            "{:?}: next {} applied {} phase {} pending {} participate from {:?} (catch-ups {}, retransmits {}, dropped {:?})",
                            n.id,
                            r.next_slot().0,
                            self.order.next(n.id).0,
                            r.current_phase().0,
                            r.pending_len(),
                            r.participate_from().map(|s| s.0),
                            m.catch_up_requests,
                            m.retransmits,
                            m.dropped
                        )
                    }
                    None => format!("{:?}: {:?}", n.id, n.status),
                }
            })
            .collect();
        let waiting: Vec<String> = self
            .clients
            .iter()
            .filter_map(|c| {
                c.waiting.map(|(seq, node, attempt)| {
                    format!("{}#{seq}@{:?}(try {attempt})", c.id, self.ids[node])
                })
            })
            .collect();
        format!(
            "not converged {:?} after healing: {clients_left} client operations unfinished (in flight: {}); {}",
            self.config.liveness_budget,
            waiting.join(", "),
            nodes.join("; ")
        )
    }

    // ---------------------------------------------------------- reporting

    fn fail(&mut self, kind: ViolationKind, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                kind,
                at: self.now,
                detail,
            });
        }
    }

    fn trace_event(&mut self, event: &Event) {
        let code = match event {
            Event::Deliver { to, from, envelope } => {
                let slot = envelope.message.slot().map(|s| s.0).unwrap_or(u64::MAX);
                mix64((*to as u64) << 8 | *from as u64)
                    ^ slot
                    ^ envelope.message.kind().len() as u64
            }
            Event::Timer { node, .. } => 0x100 + *node as u64,
            Event::DiskDone { node, token, .. } => 0x200 + ((*node as u64) << 32) + token,
            Event::ClientIssue { client } => 0x300 + *client as u64,
            Event::ClientTimeout { client, attempt } => 0x400 + ((*client as u64) << 32) + attempt,
            Event::Crash { node, .. } => 0x500 + *node as u64,
            Event::Restart { node } => 0x600 + *node as u64,
            Event::SnapshotDone { node, .. } => 0xB00 + *node as u64,
            Event::Partition(_) => 0x700,
            Event::HealNetwork => 0x800,
            Event::EndFaults => 0x900,
            Event::LivenessProbe => 0xA00,
        };
        self.trace = mix64(self.trace ^ self.now.as_nanos() ^ mix64(code));
    }

    fn collect_protocol_stats(&mut self) {
        let (decided, nulls) = self.agreement.counts();
        self.stats.slots_decided = decided as u64;
        self.stats.null_slots = nulls as u64;
        for node in &self.nodes {
            if let Some(replica) = &node.replica {
                let m = replica.metrics();
                self.stats.slots_by_protocol += m.slots_decided_by_protocol;
                self.stats.unanimous_slots += m.unanimous_slots;
                self.stats.openings_sent += m.openings_sent;
                self.stats.proposals_by_reference += m.proposals_by_reference;
                self.stats.proposal_fetches += m.proposal_fetches;
                self.stats.phases_total += m.phases_total;
                self.stats.phases_max = self.stats.phases_max.max(m.phases_max);
            }
        }
    }
}
