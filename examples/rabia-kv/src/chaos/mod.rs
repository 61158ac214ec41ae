//! `rabia-chaos`: a real multi-process `rabia-kv` cluster on loopback under
//! faults — SIGKILL and restart, SIGSTOP/SIGCONT, a lost data directory
//! (restart empty with `--rejoin`), and network partitions
//! through a link-level proxy per node pair — driven by concurrent clients
//! whose every invocation and completion is recorded. At the end it heals
//! everything, checks the history for linearizability and checks that the
//! replicas converged.
//!
//! The seed fixes the fault schedule and the clients' choices; the timing of
//! real processes is not reproducible, so a seed replays the same scenario,
//! not the same interleaving.

mod proxy;
mod workload;

use crate::client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use proxy::Proxies;
use rabia_testing::linearizability::{self, History, KvOp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use workload::Counts;

/// Settings of a chaos run.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "rabia-chaos", version)]
pub struct ChaosArgs {
    /// Seed of the fault schedule and the workload (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// How long the workload and faults run, in seconds.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub clients: u64,
    /// Keys the clients share.
    #[arg(long, default_value_t = 4)]
    pub keys: usize,
    /// A client gives up on a request after this many milliseconds (the
    /// operation is then indeterminate).
    #[arg(long, default_value_t = 2000)]
    pub request_timeout_ms: u64,
    /// Directory for data and logs (default: a new one under the temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The rabia-kv binary (default: next to this one).
    #[arg(long)]
    pub kv_bin: Option<PathBuf>,
    /// Run the nodes with `--read-mode local` (relaxed reads): the checker
    /// should then catch stale reads. A way to see that it can fail.
    #[arg(long)]
    pub local_reads: bool,
    /// Worker threads of each node's runtime (1: a current-thread runtime,
    /// as `local-cluster` gives nodes sharing a small machine; more: a
    /// multi-threaded one, whose log syncs run in `block_in_place`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub node_threads: u64,
}

/// What a run found.
#[derive(Debug)]
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// Operations with a result.
    pub ok: u64,
    /// Operations that certainly did not take effect.
    pub failed: u64,
    /// Operations that may or may not have taken effect.
    pub indeterminate: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// The linearizability verdict.
    pub linearizability: String,
    /// Whether the history is linearizable.
    pub linearizable: bool,
    /// Convergence: `None` if every replica agrees, else what differs.
    pub divergence: Option<String>,
    /// Nodes brought back empty with `--rejoin` that were still learning
    /// 30 s later.
    pub stuck_learners: u64,
    /// Where data and logs are.
    pub dir: PathBuf,
}

impl Summary {
    /// True if the run found nothing wrong.
    pub fn passed(&self) -> bool {
        self.linearizable && self.divergence.is_none() && self.stuck_learners == 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "operations: {} ok, {} failed, {} indeterminate",
            self.ok, self.failed, self.indeterminate
        )?;
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(f, "faults: {}", faults.join(", "))?;
        writeln!(f, "linearizability: {}", self.linearizability)?;
        match &self.divergence {
            None => writeln!(f, "convergence: every replica holds the same values")?,
            Some(d) => writeln!(f, "convergence: FAILED: {d}")?,
        }
        if self.stuck_learners > 0 {
            writeln!(
                f,
                "rejoin: FAILED: {} node(s) brought back empty still learning after 30 s",
                self.stuck_learners
            )?;
        }
        writeln!(f, "data and logs: {}", self.dir.display())?;
        write!(
            f,
            "verdict: {} (seed {}; rerun with --seed {})",
            if self.passed() { "PASS" } else { "FAIL" },
            self.seed,
            self.seed
        )
    }
}

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// Files, sockets or processes.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A node did not come up.
    #[error("node {0} did not start (see its log in {1})")]
    NodeStart(u64, String),
}

struct Node {
    id: u64,
    resp: SocketAddr,
    data: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    stopped: bool,
}

impl Node {
    fn spawn(&mut self, bin: &PathBuf) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let err = log.try_clone()?;
        let child = Command::new(bin)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        self.stopped = false;
        Ok(())
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self
            .child
            .as_ref()
            .and_then(Child::id)
            .and_then(|p| i32::try_from(p).ok())
        {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    async fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.signal(Signal::SIGCONT);
            let _ = child.kill().await;
        }
    }
}

/// `n` distinct free loopback addresses, with their listeners: keep those
/// until the proxies are bound, so no proxy lands on a node's port.
fn free_addrs(n: usize) -> std::io::Result<(Vec<SocketAddr>, Vec<std::net::TcpListener>)> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok((addrs, listeners))
}

async fn wait_ready(node: &Node, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if client::pings(node.resp, Duration::from_secs(1)).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Waits until every node reports no pending batches and no queued
/// operations, and all report the same applied slot, twice in a row.
async fn wait_quiescent(nodes: &[Node], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut stable = 0;
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut applied = Vec::new();
        let mut idle = true;
        for node in nodes {
            match crate::status::fetch(node.resp).await.ok() {
                Some(info) => {
                    let get = |k: &str| info.get(k).cloned().unwrap_or_default();
                    idle &= get("pending_batches") == "0" && get("queued_operations") == "0";
                    applied.push(get("applied_slot"));
                }
                None => idle = false,
            }
        }
        let same = applied.windows(2).all(|w| w[0] == w[1]);
        last = format!("applied slots {applied:?}, idle {idle}");
        if idle && same {
            stable += 1;
            if stable >= 2 {
                return Ok(());
            }
        } else {
            stable = 0;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(format!("replicas did not settle within {limit:?} ({last})"))
}

/// Waits until `node` reports `learner:0` in `INFO rabia`; false if it
/// is still learning at `deadline`.
async fn wait_participating(node: &Node, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        let info = client::request(node.resp, &[b"INFO", b"rabia"], Duration::from_secs(2)).await;
        if let Ok(crate::resp::Value::Bulk(Some(text))) = info {
            if String::from_utf8_lossy(&text).contains("learner:0\r\n") {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Runs the chaos scenario and reports what it found.
pub async fn run(args: ChaosArgs) -> Result<Summary, ChaosError> {
    if !(3..=9).contains(&args.nodes) {
        return Err(ChaosError::Usage("--nodes must be between 3 and 9".into()));
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bin = match &args.kv_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("rabia-kv"),
    };
    if !bin.exists() {
        return Err(ChaosError::Usage(format!(
            "rabia-kv binary not found at {} (build it with `cargo build --release -p rabia-kv` or pass --kv-bin)",
            bin.display()
        )));
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("rabia-chaos-{seed}")),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    println!(
        "rabia-chaos seed {seed}: {} nodes, {} s, {} clients, {} keys; data and logs in {}",
        args.nodes,
        args.duration,
        args.clients,
        args.keys,
        dir.display()
    );

    // Real peer addresses, and a proxy per ordered pair in front of them.
    let ids: Vec<u64> = (1..=args.nodes).collect();
    let (addrs, reserved) = free_addrs(2 * ids.len())?;
    let mut free = addrs.into_iter();
    let mut listen = BTreeMap::new();
    let mut resp_addrs = BTreeMap::new();
    for &i in &ids {
        listen.insert(
            i,
            free.next()
                .ok_or_else(|| ChaosError::Usage("no free port".into()))?,
        );
        resp_addrs.insert(
            i,
            free.next()
                .ok_or_else(|| ChaosError::Usage("no free port".into()))?,
        );
    }
    let proxies = Proxies::start(&listen).await?;
    drop(reserved);
    let mut nodes = Vec::new();
    for &i in &ids {
        let peers: Vec<String> = ids
            .iter()
            .map(|&j| {
                let addr = if j == i {
                    listen[&i]
                } else {
                    proxies.addresses[&(i, j)]
                };
                format!("{j}={addr}")
            })
            .collect();
        let resp = resp_addrs[&i];
        let data = dir.join(format!("node-{i}"));
        let read_mode = if args.local_reads {
            "local"
        } else {
            "linearizable"
        };
        nodes.push(Node {
            id: i,
            resp,
            data: data.clone(),
            args: vec![
                "--read-mode".into(),
                read_mode.into(),
                "--id".into(),
                i.to_string(),
                "--listen".into(),
                listen[&i].to_string(),
                "--peers".into(),
                peers.join(","),
                "--resp".into(),
                resp.to_string(),
                "--data-dir".into(),
                data.display().to_string(),
                "--persistence".into(),
                "file".into(),
                "--threads".into(),
                args.node_threads.to_string(),
            ],
            log: dir.join(format!("node-{i}.log")),
            child: None,
            stopped: false,
        });
    }
    for node in &mut nodes {
        node.spawn(&bin)?;
    }
    for node in &nodes {
        if !wait_ready(node, Duration::from_secs(60)).await {
            return Err(ChaosError::NodeStart(node.id, dir.display().to_string()));
        }
    }

    // The workload.
    let history = History::new();
    let counts = Arc::new(Counts::default());
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.resp).collect();
    let until = Instant::now() + Duration::from_secs(args.duration);
    let limit = Duration::from_millis(args.request_timeout_ms);
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..args.clients {
        clients.spawn(workload::client_loop(
            history.clone(),
            counts.clone(),
            c + 1,
            seed,
            addrs.clone(),
            args.keys,
            until,
            limit,
        ));
    }

    // The faults: one at a time, at most f nodes affected, each healed
    // before the next.
    let f = ((args.nodes - 1) / 2) as usize;
    let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut stuck_learners = 0;
    while Instant::now() + Duration::from_millis(500) < until {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1200))).await;
        let hold = Duration::from_millis(rng.gen_range(300..2500));
        let mut victims: Vec<usize> = (0..nodes.len()).collect();
        for i in (1..victims.len()).rev() {
            victims.swap(i, rng.gen_range(0..=i));
        }
        victims.truncate(rng.gen_range(1..=f.max(1)));
        // A replacement needs two more slots decided to take part, so the
        // lost-disk fault comes only while the clients have time left.
        let time_left = until.saturating_duration_since(Instant::now());
        let kinds = if time_left > Duration::from_secs(10) {
            5
        } else {
            4
        };
        match rng.gen_range(0..kinds) {
            4 => {
                // A lost disk: the node comes back empty as a replacement
                // (--rejoin), learns how far its predecessor may have
                // gone, and takes part again. One node at a time, and the
                // next fault waits until it takes part (two learners in a
                // cluster of three would wait for each other for ever).
                *faults.entry("lose data+rejoin").or_default() += 1;
                let v = victims[0];
                nodes[v].sigkill().await;
                let _ = std::fs::remove_dir_all(&nodes[v].data);
                if !nodes[v].args.iter().any(|a| a == "--rejoin") {
                    nodes[v].args.push("--rejoin".into());
                }
                tokio::time::sleep(hold).await;
                nodes[v].spawn(&bin)?;
                if !wait_participating(&nodes[v], Instant::now() + Duration::from_secs(30)).await {
                    stuck_learners += 1;
                }
            }
            0 => {
                *faults.entry("kill+restart").or_default() += 1;
                for &v in &victims {
                    nodes[v].sigkill().await;
                }
                tokio::time::sleep(hold).await;
                for &v in &victims {
                    nodes[v].spawn(&bin)?;
                }
            }
            1 => {
                *faults.entry("stop+continue").or_default() += 1;
                for &v in &victims {
                    nodes[v].signal(Signal::SIGSTOP);
                    nodes[v].stopped = true;
                }
                tokio::time::sleep(hold).await;
                for &v in &victims {
                    nodes[v].signal(Signal::SIGCONT);
                    nodes[v].stopped = false;
                }
            }
            2 => {
                *faults.entry("isolate node").or_default() += 1;
                for &v in &victims {
                    for &other in &ids {
                        if other != nodes[v].id {
                            proxies.set_cut(nodes[v].id, other, true);
                        }
                    }
                }
                tokio::time::sleep(hold).await;
                proxies.heal_all();
            }
            _ => {
                *faults.entry("cut link").or_default() += 1;
                let a = nodes[victims[0]].id;
                let b = ids[(rng.gen_range(1..ids.len()) + victims[0]) % ids.len()];
                proxies.set_cut(a, b, true);
                tokio::time::sleep(hold).await;
                proxies.heal_all();
            }
        }
    }
    while clients.join_next().await.is_some() {}

    // Heal everything and let the replicas settle.
    proxies.heal_all();
    for node in &mut nodes {
        if node.stopped {
            node.signal(Signal::SIGCONT);
            node.stopped = false;
        }
        if node.child.is_none() {
            node.spawn(&bin)?;
        }
    }
    for node in &nodes {
        if !wait_ready(node, Duration::from_secs(60)).await {
            return Err(ChaosError::NodeStart(node.id, dir.display().to_string()));
        }
    }
    // Writes that timed out may still be queued somewhere and take effect
    // late (that is what indeterminate means): wait until no node has any
    // work left and all have applied the same prefix, so that nothing can
    // change the values while they are compared.
    let quiescent = wait_quiescent(&nodes, Duration::from_secs(120)).await;
    // Final reads of every key through every node (recorded: they must fit
    // the history too), and the replicas must agree.
    let mut seen: BTreeMap<String, BTreeMap<u64, String>> = BTreeMap::new();
    for node in &nodes {
        for k in 0..args.keys {
            let key = format!("k{k}");
            let mut value = None;
            for _attempt in 0..20 {
                let result = workload::run_op(
                    &history,
                    &counts,
                    10_000 + node.id,
                    node.resp,
                    KvOp::Read { key: key.clone() },
                    Duration::from_secs(10),
                )
                .await;
                if let Some(linearizability::KvResult::Read(v)) = result {
                    value = Some(v.unwrap_or_else(|| "(nil)".into()));
                    break;
                }
            }
            seen.entry(key)
                .or_default()
                .insert(node.id, value.unwrap_or_else(|| "(no answer)".into()));
        }
    }
    let mut divergence: Vec<String> = seen
        .iter()
        .filter(|(_, by_node)| {
            let mut values = by_node.values();
            let first = values.next();
            values.any(|v| Some(v) != first)
        })
        .map(|(key, by_node)| format!("{key}: {by_node:?}"))
        .collect();
    if let Err(why) = quiescent {
        divergence.insert(0, why);
    }
    for node in &mut nodes {
        node.signal(Signal::SIGTERM);
    }
    for node in &mut nodes {
        if let Some(child) = node.child.as_mut() {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                node.sigkill().await;
            }
        }
    }

    let started = std::time::Instant::now();
    let verdict = linearizability::check(&history);
    let linearizable = verdict.is_linearizable();
    let linearizability = format!(
        "{verdict} ({} operations checked in {:.2} s)",
        history.len() / 2,
        started.elapsed().as_secs_f64()
    );
    Ok(Summary {
        seed,
        ok: counts.ok.load(Ordering::Relaxed),
        failed: counts.failed.load(Ordering::Relaxed),
        indeterminate: counts.indeterminate.load(Ordering::Relaxed),
        faults,
        linearizability,
        linearizable,
        divergence: if divergence.is_empty() {
            None
        } else {
            Some(divergence.join("; "))
        },
        stuck_learners,
        dir,
    })
}
