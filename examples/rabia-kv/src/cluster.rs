//! `rabia-kv local-cluster`: a whole cluster on loopback, one child process
//! per node, until Ctrl-C.

use crate::client;
use crate::config::PersistenceKind;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// Settings of a local cluster.
#[derive(Clone, Debug, clap::Args)]
pub struct LocalClusterArgs {
    /// Number of nodes (3, 5 or 7 tolerate 1, 2 or 3 failures).
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Directory for the nodes' data and logs (default: a new directory
    /// under the system's temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// RESP port of node 1; node i listens on resp_base + i - 1.
    #[arg(long, default_value_t = 6381)]
    pub resp_base: u16,
    /// Peer port of node 1.
    #[arg(long, default_value_t = 7001)]
    pub peer_base: u16,
    /// Metrics port of node 1.
    #[arg(long, default_value_t = 9101)]
    pub metrics_base: u16,
    /// Storage of every node.
    #[arg(long, value_enum, default_value_t = PersistenceKind::File)]
    pub persistence: PersistenceKind,
}

/// Why the local cluster could not run.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// A port is taken.
    #[error(
        "port {0} is in use; choose other ports with --resp-base, --peer-base or --metrics-base"
    )]
    PortInUse(u16),
    /// Files or processes.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A node did not come up or died.
    #[error("node {node}: {reason} (log: {log})")]
    Node {
        /// The node.
        node: u64,
        /// What happened.
        reason: String,
        /// Its log file.
        log: String,
    },
}

struct NodeProcess {
    id: u64,
    child: Child,
    resp: SocketAddr,
    log: PathBuf,
    /// The command line, to show how to restart the node by hand.
    command: String,
    exited: bool,
}

fn port(base: u16, i: u64) -> Result<u16, ClusterError> {
    u16::try_from(u64::from(base) + i - 1)
        .map_err(|_| ClusterError::Usage(format!("port base {base} + {i} overflows")))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn check_free(port: u16) -> Result<(), ClusterError> {
    std::net::TcpListener::bind(loopback(port))
        .map(drop)
        .map_err(|_| ClusterError::PortInUse(port))
}

fn stop(child: &Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

/// Runs the cluster until Ctrl-C (or a node dies), then stops every node.
pub async fn run(args: LocalClusterArgs) -> Result<(), ClusterError> {
    if !(1..=15).contains(&args.nodes) {
        return Err(ClusterError::Usage(
            "--nodes must be between 1 and 15".into(),
        ));
    }
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("rabia-kv-cluster-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let ids: Vec<u64> = (1..=args.nodes).collect();
    let mut peers = Vec::new();
    for &i in &ids {
        for base in [args.resp_base, args.peer_base, args.metrics_base] {
            check_free(port(base, i)?)?;
        }
        peers.push(format!("{i}={}", loopback(port(args.peer_base, i)?)));
    }
    let peers = peers.join(",");
    let exe = std::env::current_exe()?;
    // Nodes share this machine: split its cores between them.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / args.nodes as usize).max(1);
    let mut nodes = Vec::new();
    for &i in &ids {
        let data_dir = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&data_dir)?;
        let log = dir.join(format!("node-{i}.log"));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let resp = loopback(port(args.resp_base, i)?);
        let node_args: Vec<String> = vec![
            "--id".into(),
            i.to_string(),
            "--listen".into(),
            loopback(port(args.peer_base, i)?).to_string(),
            "--peers".into(),
            peers.clone(),
            "--resp".into(),
            resp.to_string(),
            "--metrics".into(),
            loopback(port(args.metrics_base, i)?).to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--threads".into(),
            threads.to_string(),
            "--persistence".into(),
            match args.persistence {
                PersistenceKind::File => "file",
                PersistenceKind::Memory => "memory",
            }
            .into(),
        ];
        let command = format!("{} {}", exe.display(), node_args.join(" "));
        let child = Command::new(&exe)
            .args(&node_args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()?;
        nodes.push(NodeProcess {
            id: i,
            child,
            resp,
            log,
            command,
            exited: false,
        });
    }
    if let Err(e) = wait_ready(&mut nodes).await {
        shutdown(&mut nodes).await;
        return Err(e);
    }
    print_banner(&args, &dir, &nodes);
    // A node that dies (say, `kill -9` to try a crash) is reported with the
    // command that restarts it; the others keep serving until Ctrl-C.
    loop {
        if nodes.iter().all(|n| n.exited) {
            println!("every node has exited");
            break;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            (id, status) = first_exit(&mut nodes) => {
                if let Some(node) = nodes.iter().find(|n| n.id == id) {
                    // --rejoin: if its data is gone it learns before it
                    // votes (no effect otherwise). A cluster of two
                    // refuses it: the other node cannot decide alone.
                    let (why, flag) = if args.nodes == 2 {
                        ("", "")
                    } else {
                        (" (--rejoin: if its data is gone it learns before it votes; no effect otherwise)", " --rejoin")
                    };
                    println!(
                        "node {id} exited ({status}); the others keep serving. Its log: {}\nRestart it by hand with{why}:\n  {}{flag}",
                        node.log.display(),
                        node.command
                    );
                }
            }
        }
    }
    println!("\nstopping the cluster...");
    shutdown(&mut nodes).await;
    println!("stopped; data and logs kept in {}", dir.display());
    Ok(())
}

async fn wait_ready(nodes: &mut [NodeProcess]) -> Result<(), ClusterError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for node in nodes.iter_mut() {
        loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                return Err(ClusterError::Node {
                    node: node.id,
                    reason: format!("exited during start-up ({status})"),
                    log: node.log.display().to_string(),
                });
            }
            if client::pings(node.resp, Duration::from_secs(1)).await {
                break;
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Node {
                    node: node.id,
                    reason: "did not answer PING within 60 s".into(),
                    log: node.log.display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Waits for the first running node to exit; marks it and returns its id
/// and exit status.
async fn first_exit(nodes: &mut [NodeProcess]) -> (u64, String) {
    let waits = nodes.iter_mut().filter(|n| !n.exited).map(|n| {
        Box::pin(async move {
            let status = match n.child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => format!("lost: {e}"),
            };
            n.exited = true;
            (n.id, status)
        })
    });
    futures::future::select_all(waits).await.0
}

async fn shutdown(nodes: &mut [NodeProcess]) {
    for node in nodes.iter() {
        stop(&node.child);
    }
    for node in nodes.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(10), node.child.wait())
            .await
            .is_err()
        {
            let _ = node.child.kill().await;
        }
    }
}

fn print_banner(args: &LocalClusterArgs, dir: &Path, nodes: &[NodeProcess]) {
    println!(
        "rabia-kv local cluster: {} nodes, {} persistence, data and logs in {}",
        nodes.len(),
        match args.persistence {
            PersistenceKind::File => "file",
            PersistenceKind::Memory => "memory",
        },
        dir.display()
    );
    for node in nodes {
        let i = node.id;
        println!(
            "  node {i}: RESP {}   metrics http://127.0.0.1:{}/metrics   pid {}   log {}",
            node.resp,
            u64::from(args.metrics_base) + i - 1,
            node.child.id().map_or("-".to_string(), |p| p.to_string()),
            node.log.display()
        );
    }
    let first = args.resp_base;
    let second = if nodes.len() > 1 { first + 1 } else { first };
    println!();
    println!("Try it (any Redis client works):");
    println!("  redis-cli -p {first} SET greeting hello");
    println!("  redis-cli -p {second} GET greeting");
    println!("  cargo run --release -p rabia-kv -- status --resp 127.0.0.1:{first}");
    println!("Ctrl-C stops the cluster.");
}
