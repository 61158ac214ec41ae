//! In-process benchmark shaped like openraft's `benchmarks/minimal`: three
//! replicas in one process, in-memory transport and storage (no disk),
//! small operations, closed-loop clients.
//!
//! ```text
//! cargo bench -p rabia-engine --bench minimal -- [--clients 1,64,256,1024,4096]
//!     [--ops 200000] [--payload 16] [--runs 3] [--runtime multi|current|per-node]
//!     [--persistence memory|file]
//! ```
//!
//! Runtimes: `multi` (default) puts the three replicas and every client on
//! one multi-threaded tokio runtime; `current` on one single-threaded
//! runtime; `per-node` gives each replica and its clients a single-threaded
//! runtime in its own OS thread, the shape of three processes without a
//! network.
//!
//! ```text
//! ```
//!
//! For each client count it prints the median over `--runs` of throughput,
//! and the p50/p99 client latency, ⊥ rate, phases per slot and mean batch
//! size of the median run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use async_trait::async_trait;
use rabia_core::smr::{Operation, OperationResult, StateMachine};
use rabia_core::{ClusterConfig, NodeId};
use rabia_engine::{EngineHandle, Histogram, RabiaConfig, RabiaEngine};
use rabia_network::InMemoryNetwork;
use rabia_persistence::{FileOptions, FilePersistence, InMemoryPersistence};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The cheapest useful state machine: counts operations and bytes.
#[derive(Default)]
struct Sink {
    operations: u64,
    bytes: u64,
}

#[async_trait]
impl StateMachine for Sink {
    async fn apply_operation(&mut self, op: &Operation) -> OperationResult {
        self.operations += 1;
        self.bytes += op.data.len() as u64;
        Ok(Vec::new())
    }
    async fn snapshot(&self) -> OperationResult {
        Ok([self.operations.to_le_bytes(), self.bytes.to_le_bytes()].concat())
    }
    async fn restore_from_snapshot(
        &mut self,
        data: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let (a, b) = data.split_at(8);
        self.operations = u64::from_le_bytes(a.try_into()?);
        self.bytes = u64::from_le_bytes(b.try_into()?);
        Ok(())
    }
}

struct Args {
    runtime: String,
    file: bool,
    clients: Vec<usize>,
    ops: u64,
    payload: usize,
    runs: usize,
}

fn parse() -> Args {
    let mut args = Args {
        runtime: "multi".into(),
        file: false,
        clients: vec![1, 64, 256, 1024, 4096],
        ops: 200_000,
        payload: 16,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--clients" => {
                args.clients = it
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|s| s.parse().unwrap())
                    .collect()
            }
            "--ops" => args.ops = it.next().unwrap().parse().unwrap(),
            "--payload" => args.payload = it.next().unwrap().parse().unwrap(),
            "--runs" => args.runs = it.next().unwrap().parse().unwrap(),
            "--runtime" => args.runtime = it.next().unwrap(),
            "--persistence" => {
                args.file = match it.next().unwrap().as_str() {
                    "file" => true,
                    "memory" => false,
                    other => panic!("--persistence must be memory or file, not {other}"),
                }
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

struct RunResult {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
    null_rate: f64,
    phases: f64,
    batch: f64,
    /// Operations per slot that decided a value (not ⊥).
    per_slot: f64,
    /// Share of the replicas' own decisions taken on unanimous proposals.
    unanimous: f64,
}

async fn client(handle: EngineHandle, remaining: Arc<AtomicU64>, payload: usize) -> Histogram {
    let mut latencies = Histogram::default();
    let data = vec![7u8; payload];
    while remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
        .is_ok()
    {
        let t = Instant::now();
        handle.submit(Operation::new(data.clone())).await.unwrap();
        latencies.record(t.elapsed());
    }
    latencies
}

/// Data directories created by the current run (removed after it).
static BENCH_DIRS: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

fn remove_bench_dirs() {
    for dir in BENCH_DIRS.lock().unwrap().drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn engine_for(id: NodeId, ids: &[NodeId], network: &InMemoryNetwork) -> RabiaEngine<Sink> {
    let cluster = ClusterConfig::new(id, ids.iter().copied().collect());
    let (_tx, rx) = mpsc::unbounded_channel();
    let mut config = RabiaConfig::default();
    if let Ok(ms) = std::env::var("RABIA_BENCH_BATCH_TIMEOUT_MS") {
        config.batch_timeout = Duration::from_millis(ms.parse().unwrap());
    }
    if let Ok(us) = std::env::var("RABIA_BENCH_REFILL_WAIT_US") {
        config.refill_wait = Duration::from_micros(us.parse().unwrap());
    }
    if let Ok(us) = std::env::var("RABIA_BENCH_CONTRIBUTOR_WAIT_US") {
        config.contributor_wait = Duration::from_micros(us.parse().unwrap());
    }
    if let Ok(us) = std::env::var("RABIA_BENCH_UNANIMITY_WAIT_US") {
        config.unanimity_wait = Duration::from_micros(us.parse().unwrap());
    }
    if let Ok(on) = std::env::var("RABIA_BENCH_ANNOUNCE_OPENING") {
        config.announce_opening = on != "0";
    }
    let engine = if std::env::var("RABIA_BENCH_FILE").is_ok() {
        // A fresh data directory per replica and run; fdatasync on every
        // group commit (SyncPolicy::Always).
        let dir = tempfile::Builder::new()
            .prefix("rabia-bench-")
            .tempdir_in(
                std::env::var("RABIA_BENCH_DIR")
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|_| std::env::temp_dir()),
            )
            .unwrap()
            .keep();
        let storage = FilePersistence::open(&dir, FileOptions::default()).unwrap();
        BENCH_DIRS.lock().unwrap().push(dir);
        RabiaEngine::new(id, config, cluster, Sink::default(), storage, rx)
    } else {
        RabiaEngine::new(
            id,
            config,
            cluster,
            Sink::default(),
            InMemoryPersistence::new(),
            rx,
        )
    };
    engine.with_transport(network.endpoint(id))
}

fn summarize(
    ops: u64,
    elapsed: Duration,
    latency: &Histogram,
    status: &[rabia_engine::EngineStatus],
) -> RunResult {
    let decided: u64 = status
        .iter()
        .map(|s| s.protocol.slots_decided)
        .max()
        .unwrap_or(0);
    let nulls: u64 = status
        .iter()
        .map(|s| s.protocol.null_slots)
        .max()
        .unwrap_or(0);
    let by_protocol: u64 = status
        .iter()
        .map(|s| s.protocol.slots_decided_by_protocol)
        .sum();
    let phases: u64 = status.iter().map(|s| s.protocol.phases_total).sum();
    let unanimous: u64 = status.iter().map(|s| s.protocol.unanimous_slots).sum();
    let batches: u64 = status.iter().map(|s| s.batches_created).sum();
    if std::env::var_os("RABIA_BENCH_DEBUG").is_some() {
        let proposed: u64 = status.iter().map(|s| s.protocol.proposed_batches).sum();
        let proposals: u64 = status.iter().map(|s| s.protocol.proposals_sent).sum();
        eprintln!(
            "batches per proposal {:.2}",
            proposed as f64 / proposals.max(1) as f64
        );
        for st in status.iter() {
            let p = &st.protocol;
            eprintln!(
                "node: decided {} by_protocol {} unanimous {} adopted {} proposals {} retransmits {} value_fetches {} dropped {:?}",
                p.slots_decided, p.slots_decided_by_protocol, p.unanimous_slots, p.decisions_adopted, p.proposals_sent, p.retransmits, p.value_fetches, p.dropped
            );
        }
    }
    let summary = latency.summary();
    RunResult {
        ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
        p50: summary.p50,
        p99: summary.p99,
        null_rate: if decided == 0 {
            0.0
        } else {
            nulls as f64 / decided as f64
        },
        phases: if by_protocol == 0 {
            0.0
        } else {
            phases as f64 / by_protocol as f64
        },
        batch: if batches == 0 {
            0.0
        } else {
            ops as f64 / batches as f64
        },
        per_slot: if decided <= nulls {
            0.0
        } else {
            ops as f64 / (decided - nulls) as f64
        },
        unanimous: if by_protocol == 0 {
            0.0
        } else {
            unanimous as f64 / by_protocol as f64
        },
    }
}

/// All three replicas and all clients on one tokio runtime.
fn run_shared(
    runtime: &tokio::runtime::Runtime,
    clients: usize,
    ops: u64,
    payload: usize,
) -> RunResult {
    runtime.block_on(async {
        let ids: Vec<NodeId> = (1..=3).map(NodeId::from_u64).collect();
        let network = InMemoryNetwork::new(1 << 16);
        let mut handles: Vec<EngineHandle> = Vec::new();
        let mut tasks = Vec::new();
        for id in &ids {
            let engine = engine_for(*id, &ids, &network);
            handles.push(engine.handle());
            tasks.push(tokio::spawn(engine.run()));
        }
        let remaining = Arc::new(AtomicU64::new(ops));
        let started = Instant::now();
        let workers: Vec<_> = (0..clients)
            .map(|c| tokio::spawn(client(handles[c % 3].clone(), remaining.clone(), payload)))
            .collect();
        let mut all = Histogram::default();
        for w in workers {
            all.merge(&w.await.unwrap());
        }
        let elapsed = started.elapsed();
        for h in &handles {
            h.shutdown();
        }
        for t in tasks {
            let _ = t.await;
        }
        // The final status is published as each engine stops.
        let status: Vec<_> = handles.iter().map(|h| h.status()).collect();
        summarize(ops, elapsed, &all, &status)
    })
}

/// Each replica, with its own clients, on its own single-threaded runtime in
/// its own OS thread: the shape of three processes, without the network.
fn run_per_node(clients: usize, ops: u64, payload: usize) -> RunResult {
    let ids: Vec<NodeId> = (1..=3).map(NodeId::from_u64).collect();
    let network = InMemoryNetwork::new(1 << 16);
    let remaining = Arc::new(AtomicU64::new(ops));
    let start = Arc::new(std::sync::Barrier::new(ids.len() + 1));
    let (done_tx, done_rx) = tokio::sync::watch::channel(0usize);
    let done_tx = Arc::new(done_tx);
    let finished_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let threads: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (id, ids, network, remaining, start) = (
                *id,
                ids.clone(),
                network.clone(),
                remaining.clone(),
                start.clone(),
            );
            let (done_tx, mut done_rx, finished_at) =
                (done_tx.clone(), done_rx.clone(), finished_at.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let engine = engine_for(id, &ids, &network);
                    let handle = engine.handle();
                    let task = tokio::spawn(engine.run());
                    start.wait();
                    let mine = (i..clients).step_by(ids.len()).count();
                    let workers: Vec<_> = (0..mine)
                        .map(|_| tokio::spawn(client(handle.clone(), remaining.clone(), payload)))
                        .collect();
                    let mut all = Histogram::default();
                    for w in workers {
                        all.merge(&w.await.unwrap());
                    }
                    // Keep serving the others until every node's clients are done.
                    let finished = {
                        let mut n = 0;
                        done_tx.send_modify(|d| {
                            *d += 1;
                            n = *d;
                        });
                        n
                    };
                    if finished == ids.len() {
                        *finished_at.lock().unwrap() = Some(Instant::now());
                    }
                    let _ = done_rx.wait_for(|d| *d == ids.len()).await;
                    handle.shutdown();
                    let _ = task.await;
                    (all, handle.status())
                })
            })
        })
        .collect();
    start.wait();
    let started = Instant::now();
    let mut all = Histogram::default();
    let mut status = Vec::new();
    for t in threads {
        let (h, s) = t.join().unwrap();
        all.merge(&h);
        status.push(s);
    }
    let elapsed = finished_at.lock().unwrap().unwrap_or_else(Instant::now) - started;
    summarize(ops, elapsed, &all, &status)
}

fn main() {
    let args = parse();
    if args.file {
        // Read by engine_for on every thread, including per-node ones.
        std::env::set_var("RABIA_BENCH_FILE", "1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "rabia minimal benchmark: 3 replicas in-process, in-memory transport, {} storage, {}-byte operations, {} operations per run, median of {} runs, {} tokio runtime",
        if args.file { "file (fdatasync per group commit)" } else { "in-memory" },
        args.payload, args.ops, args.runs, args.runtime
    );
    println!(
        "{:>8} {:>12} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "clients", "ops/s", "p50", "p99", "⊥ rate", "phases", "batch", "ops/slot", "unanimous"
    );
    for &clients in &args.clients {
        let ops = if clients == 1 {
            args.ops.min(20_000)
        } else {
            args.ops
        };
        let mut results: Vec<RunResult> = (0..args.runs)
            .map(|_| {
                let result = if args.runtime == "per-node" {
                    run_per_node(clients, ops, args.payload)
                } else {
                    run_shared(&runtime, clients, ops, args.payload)
                };
                remove_bench_dirs();
                result
            })
            .collect();
        results.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
        let m = &results[results.len() / 2];
        println!(
            "{:>8} {:>12.0} {:>10.2?} {:>10.2?} {:>7.2}% {:>8.3} {:>8.1} {:>8.1} {:>8.1}%",
            clients,
            m.ops_per_sec,
            m.p50,
            m.p99,
            m.null_rate * 100.0,
            m.phases,
            m.batch,
            m.per_slot,
            m.unanimous * 100.0
        );
    }
}
