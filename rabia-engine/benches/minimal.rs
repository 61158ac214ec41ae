//! In-process benchmark shaped like openraft's `benchmarks/minimal`: three
//! replicas in one process, in-memory transport and storage (no disk),
//! small operations, closed-loop clients.
//!
//! ```text
//! cargo bench -p rabia-engine --bench minimal -- [--clients 1,64,256,1024,4096]
//!     [--ops 200000] [--payload 16] [--runs 3]
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
use rabia_persistence::InMemoryPersistence;
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
    clients: Vec<usize>,
    ops: u64,
    payload: usize,
    runs: usize,
}

fn parse() -> Args {
    let mut args = Args {
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
}

async fn run_once(clients: usize, ops: u64, payload: usize) -> RunResult {
    let ids: Vec<NodeId> = (1..=3).map(NodeId::from_u64).collect();
    let network = InMemoryNetwork::new(1 << 16);
    let mut handles: Vec<EngineHandle> = Vec::new();
    let mut tasks = Vec::new();
    for id in &ids {
        let cluster = ClusterConfig::new(*id, ids.iter().copied().collect());
        let (_tx, rx) = mpsc::unbounded_channel();
        let engine = RabiaEngine::new(
            *id,
            RabiaConfig::default(),
            cluster,
            Sink::default(),
            InMemoryPersistence::new(),
            rx,
        )
        .with_transport(network.endpoint(*id));
        handles.push(engine.handle());
        tasks.push(tokio::spawn(engine.run()));
    }
    let remaining = Arc::new(AtomicU64::new(ops));
    let started = Instant::now();
    let mut workers = Vec::new();
    for c in 0..clients {
        let handle = handles[c % 3].clone();
        let remaining = remaining.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Histogram::default();
            let data = vec![7u8; payload];
            loop {
                if remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                let t = Instant::now();
                handle.submit(Operation::new(data.clone())).await.unwrap();
                latencies.record(t.elapsed());
            }
            latencies
        }));
    }
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
    let batches: u64 = status.iter().map(|s| s.batches_created).sum();
    let batch_mean = if batches == 0 {
        0.0
    } else {
        ops as f64 / batches as f64
    };
    let latency = all.summary();
    RunResult {
        ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
        p50: latency.p50,
        p99: latency.p99,
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
        batch: batch_mean,
    }
}

fn main() {
    let args = parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "rabia minimal benchmark: 3 replicas in-process, in-memory transport and storage, {}-byte operations, {} operations per run, median of {} runs",
        args.payload, args.ops, args.runs
    );
    println!(
        "{:>8} {:>12} {:>10} {:>10} {:>8} {:>8} {:>8}",
        "clients", "ops/s", "p50", "p99", "⊥ rate", "phases", "batch"
    );
    for &clients in &args.clients {
        let ops = if clients == 1 {
            args.ops.min(20_000)
        } else {
            args.ops
        };
        let mut results: Vec<RunResult> = (0..args.runs)
            .map(|_| runtime.block_on(run_once(clients, ops, args.payload)))
            .collect();
        results.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
        let m = &results[results.len() / 2];
        println!(
            "{:>8} {:>12.0} {:>10.2?} {:>10.2?} {:>7.2}% {:>8.3} {:>8.1}",
            clients,
            m.ops_per_sec,
            m.p50,
            m.p99,
            m.null_rate * 100.0,
            m.phases,
            m.batch
        );
    }
}
