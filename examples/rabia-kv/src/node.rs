//! One rabia-kv node: storage, the TCP transport, the engine, the RESP
//! listener and the metrics endpoint, until a signal or a fatal error.

use crate::config::{NodeConfig, PersistenceKind};
use crate::connection;
use crate::metrics;
use crate::resp::Limits;
use crate::store::KvStore;
use rabia_core::ClusterConfig;
use rabia_engine::{EngineError, EngineHandle, LocalReader, RabiaConfig, RabiaEngine};
use rabia_network::{TcpConfig, TcpTransport, TransportError};
use rabia_persistence::{FileOptions, FilePersistence, InMemoryPersistence, PersistenceError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

/// Why a node could not start or had to stop.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The data directory could not be opened or recovered.
    #[error("storage: {0}")]
    Storage(#[from] PersistenceError),
    /// The peer transport could not start.
    #[error("peer transport: {0}")]
    Transport(#[from] TransportError),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what}): {reason}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Which endpoint.
        what: &'static str,
        /// The operating system's reason.
        reason: String,
    },
    /// The engine stopped with an error.
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    /// Signal handling could not be set up.
    #[error("signals: {0}")]
    Signals(std::io::Error),
}

/// Counters of the RESP server.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// Client connections open now.
    pub connections_open: AtomicU64,
    /// Commands received.
    pub commands: AtomicU64,
    /// Commands refused (unknown, wrong arity, syntax).
    pub errors: AtomicU64,
    /// Connections closed for bytes that are not RESP.
    pub protocol_errors: AtomicU64,
}

/// What every connection of a node shares.
pub struct Shared {
    /// The node's configuration.
    pub config: Arc<NodeConfig>,
    /// Submits to the engine.
    pub handle: EngineHandle,
    /// Relaxed local reads.
    pub reader: LocalReader<KvStore>,
    /// Counters.
    pub stats: ServerStats,
    /// RESP parsing limits.
    pub limits: Limits,
}

/// The engine settings rabia-kv runs with.
pub fn engine_config(config: &NodeConfig) -> RabiaConfig {
    RabiaConfig {
        max_batch_size: config.max_batch_size,
        batch_timeout: config.batch_timeout,
        opener_wait: config.opener_wait,
        contributor_wait: config.contributor_wait,
        unanimity_wait: config.unanimity_wait,
        refill_wait: config.refill_wait,
        announce_opening: config.announce_opening,
        empty_store: if config.rejoin {
            rabia_engine::EmptyStore::Rejoin
        } else {
            rabia_engine::EmptyStore::Bootstrap
        },
        ..RabiaConfig::default()
    }
}

async fn bind(addr: std::net::SocketAddr, what: &'static str) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr).await.map_err(|e| NodeError::Bind {
        addr,
        what,
        reason: e.to_string(),
    })
}

/// Runs a node until SIGINT/SIGTERM (clean stop, `Ok`) or a fatal error.
pub async fn run(config: NodeConfig) -> Result<(), NodeError> {
    let config = Arc::new(config);
    let mut sigterm = signal(SignalKind::terminate()).map_err(NodeError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(NodeError::Signals)?;

    let resp_listener = bind(config.resp, "RESP").await?;
    let metrics_listener = match config.metrics {
        Some(addr) => Some(bind(addr, "metrics").await?),
        None => None,
    };
    let transport = TcpTransport::bind(TcpConfig::new(
        config.id,
        config.cluster_hash(),
        config.listen,
        config.peers.clone(),
    ))
    .await?;
    let members = config.peers.keys().copied().collect();
    let cluster = ClusterConfig::new(config.id, members);
    let engine_settings = engine_config(&config);
    let (_operation_tx, operation_rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = match (config.persistence, &config.data_dir) {
        (PersistenceKind::File, Some(dir)) => {
            let storage = FilePersistence::open(dir, FileOptions::default())?;
            RabiaEngine::new(
                config.id,
                engine_settings,
                cluster,
                KvStore::new(),
                storage,
                operation_rx,
            )
        }
        _ => RabiaEngine::new(
            config.id,
            engine_settings,
            cluster,
            KvStore::new(),
            InMemoryPersistence::new(),
            operation_rx,
        ),
    }
    .with_transport(transport);
    let shared = Arc::new(Shared {
        handle: engine.handle(),
        reader: engine.local_reader(),
        config: config.clone(),
        stats: ServerStats::default(),
        limits: Limits::default(),
    });
    let mut running = tokio::spawn(engine.run());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(accept_clients(resp_listener, shared.clone()));
    if let Some(listener) = metrics_listener {
        tasks.spawn(metrics::serve(listener, shared.clone()));
    }
    info!(
        node = %config.id,
        resp = %config.resp,
        peers = %config.listen,
        persistence = ?config.persistence,
        "rabia-kv node ready"
    );
    println!(
        "rabia-kv node {} ready: RESP {} | peers {} | {}",
        config.id,
        config.resp,
        config.listen,
        match (&config.persistence, &config.data_dir) {
            (PersistenceKind::File, Some(dir)) => format!("data {}", dir.display()),
            _ => "memory persistence".to_string(),
        }
    );
    let outcome = tokio::select! {
        _ = sigterm.recv() => None,
        _ = sigint.recv() => None,
        result = &mut running => Some(result),
    };
    tasks.abort_all();
    match outcome {
        None => {
            info!("stopping on signal");
            shared.handle.shutdown();
            match running.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(NodeError::Engine(EngineError::Internal(e.to_string()))),
            }
        }
        Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => {
            error!(error = %e, "engine stopped");
            Err(e.into())
        }
        Some(Err(e)) => Err(NodeError::Engine(EngineError::Internal(e.to_string()))),
    }
}

/// Client connections served at once (Redis's default `maxclients`); a
/// connection beyond it is told so and closed.
pub const MAX_CLIENTS: usize = 10_000;

async fn accept_clients(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut stream, _)) if connections.len() >= MAX_CLIENTS => {
                    shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
                    });
                }
                Ok((stream, _)) => {
                    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
                    shared.stats.connections_open.fetch_add(1, Ordering::Relaxed);
                    let shared = shared.clone();
                    connections.spawn(async move {
                        connection::serve(stream, shared.clone()).await;
                        shared.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(e) => {
                    warn!(error = %e, "accepting a client failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
