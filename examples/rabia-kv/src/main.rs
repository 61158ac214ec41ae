//! The `rabia-kv` command: run a node, a local cluster, or query a node.

use clap::{Args, Parser, Subcommand};
use rabia_kv::config::{self, PersistenceKind, ReadMode, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: the server allocates per request (buffers, batches, replies);
/// glibc's allocator cost a quarter of the CPU under load, with lock
/// contention between threads (docs/benchmarks.md). Built with `no_thp`:
/// with transparent huge pages, every page mimalloc took back from the
/// kernel after purging it came back as a fresh 2 MiB huge page the kernel
/// zeroed on first touch (about 5 % of all CPU under load); without them
/// SET -P 16 went from about 720,000 to 920,000 requests/s.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A replicated key-value server speaking the Redis protocol, on Rabia.
#[derive(Debug, Parser)]
#[command(name = "rabia-kv", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Start a whole cluster on loopback (one process per node) until Ctrl-C.
    LocalCluster(rabia_kv::cluster::LocalClusterArgs),
    /// Print a node's view: slots, ⊥ rate, peers, storage.
    Status {
        /// The node's RESP address.
        #[arg(long, default_value = "127.0.0.1:6381")]
        resp: SocketAddr,
    },
}

/// Run one node (the default command).
#[derive(Debug, Args)]
struct NodeArgs {
    /// A TOML file with any of the settings below (flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's id (a member of --peers).
    #[arg(long)]
    id: Option<u64>,
    /// Peer listen address (default: this node's address in --peers).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Every member: ID=HOST:PORT,ID=HOST:PORT,...
    #[arg(long)]
    peers: Option<String>,
    /// Address for Redis clients.
    #[arg(long)]
    resp: Option<SocketAddr>,
    /// Data directory (write-ahead log and snapshots).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Storage: file (durable, default) or memory.
    #[arg(long, value_enum)]
    persistence: Option<PersistenceKind>,
    /// Address for /metrics and /health.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Cluster name; nodes with different names refuse each other.
    #[arg(long)]
    cluster_id: Option<String>,
    /// linearizable (default) or local (relaxed, possibly stale) reads.
    #[arg(long, value_enum)]
    read_mode: Option<ReadMode>,
    /// Most operations per batch.
    #[arg(long)]
    max_batch_size: Option<usize>,
    /// Longest wait to fill a batch while this node's previous batch awaits a decision (ms).
    #[arg(long)]
    batch_timeout_ms: Option<u64>,
    /// Longest wait for a slot's opener (the node whose batch closed the
    /// previous slot) to propose before this node proposes its own batches
    /// (ms; 0: at once). Keep it above one disk sync plus a round trip.
    #[arg(long)]
    opener_wait_ms: Option<u64>,
    /// Longest wait, in microseconds, of the node opening a slot for the
    /// next operations of the nodes that were in the previous slot (never
    /// more than half a slot's time; 0: open at once).
    #[arg(long)]
    contributor_wait_us: Option<u64>,
    /// Longest wait, in microseconds, of a node whose proposal is on disk
    /// for the last nodes' proposals before it sends its State: if all
    /// agree the slot is decided without States and Votes (never more than
    /// half a slot's time; 0: no wait).
    #[arg(long)]
    unanimity_wait_us: Option<u64>,
    /// Longest wait, in microseconds, of a node that just answered its
    /// clients for their next operations before it opens or contributes to
    /// the next slot (never more than half a slot's time; 0: no wait).
    #[arg(long)]
    refill_wait_us: Option<u64>,
    /// With file persistence, send a slot's value ahead of the opener's
    /// Proposal so that the other nodes write theirs meanwhile (one disk
    /// sync less per slot). On by default.
    #[arg(long)]
    announce_opening: Option<bool>,
    /// This node replaces one that lost its data directory (same id): with
    /// an empty data directory it learns how far its predecessor went
    /// before it votes. Without it an empty directory is a new member.
    #[arg(long)]
    rejoin: bool,
    /// Worker threads (default: one per core). Nodes sharing a machine do
    /// better with cores / nodes each (`local-cluster` does that).
    #[arg(long)]
    threads: Option<usize>,
}

impl NodeArgs {
    fn settings(self) -> Result<config::NodeConfig, config::ConfigError> {
        let file = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        let peers = self
            .peers
            .as_deref()
            .map(config::parse_peers_flag)
            .transpose()?;
        let flags = Settings {
            id: self.id,
            listen: self.listen,
            peers,
            resp: self.resp,
            data_dir: self.data_dir,
            persistence: self.persistence,
            metrics: self.metrics,
            cluster_id: self.cluster_id,
            read_mode: self.read_mode,
            max_batch_size: self.max_batch_size,
            batch_timeout_ms: self.batch_timeout_ms,
            opener_wait_ms: self.opener_wait_ms,
            contributor_wait_us: self.contributor_wait_us,
            unanimity_wait_us: self.unanimity_wait_us,
            refill_wait_us: self.refill_wait_us,
            announce_opening: self.announce_opening,
            rejoin: self.rejoin.then_some(true),
        };
        file.overridden_by(flags).validate()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // One thread: a current-thread runtime (no cross-thread wake-ups).
    let mut builder = match cli.node.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(threads.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rabia-kv: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = runtime.block_on(async move {
        match cli.command {
            Some(Sub::LocalCluster(args)) => rabia_kv::cluster::run(args)
                .await
                .map_err(|e| e.to_string()),
            Some(Sub::Status { resp }) => match rabia_kv::status::fetch(resp).await {
                Ok(info) => {
                    print!("{}", rabia_kv::status::report(resp, &info));
                    Ok(())
                }
                Err(e) => Err(format!("cannot read the status of {resp}: {e}")),
            },
            None => {
                let config = cli
                    .node
                    .settings()
                    .map_err(|e| format!("configuration: {e}"))?;
                rabia_kv::node::run(config).await.map_err(|e| e.to_string())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rabia-kv: {e}");
            ExitCode::FAILURE
        }
    }
}
