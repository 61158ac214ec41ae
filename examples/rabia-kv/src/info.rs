//! `INFO` and `CONFIG GET`: what a node tells clients and operators about
//! itself. The `rabia` section is the replica's view of the cluster (what
//! `rabia-kv status` prints).

use crate::config::{NodeConfig, PersistenceKind, ReadMode};
use crate::node::Shared;
use crate::resp::Value;
use rabia_engine::EngineStatus;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// `part / whole`, or 0 before anything was counted.
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The ⊥ (null) slot rate: decided-empty slots over all decided slots.
pub fn null_rate(status: &EngineStatus) -> f64 {
    ratio(status.protocol.null_slots, status.protocol.slots_decided)
}

/// Mean phases per slot the protocol decided (1.0 is all fast path).
pub fn phases_per_slot(status: &EngineStatus) -> f64 {
    let p = &status.protocol;
    ratio(p.phases_total, p.slots_decided_by_protocol)
}

/// Mean batches per value this node proposed (above 1: slots carry
/// several replicas' batches).
pub fn batches_per_proposal(status: &EngineStatus) -> f64 {
    ratio(
        status.protocol.proposed_batches,
        status.protocol.proposals_sent,
    )
}

/// Peers heard from within the failure timeout.
pub fn peers_reachable(status: &EngineStatus) -> usize {
    status.peers.iter().filter(|p| p.reachable).count()
}

/// True if this node plus its reachable peers form a majority.
pub fn has_quorum(config: &NodeConfig, status: &EngineStatus) -> bool {
    status.running && (peers_reachable(status) + 1) * 2 > config.peers.len()
}

/// The engine publishes its status every `status_interval` (100 ms): wait
/// for the next publication so INFO describes the node as of this request
/// (a stopped engine publishes no more; its last status is returned).
pub async fn fresh_status(shared: &Shared) -> rabia_engine::EngineStatus {
    let mut watch = shared.handle.status_watch();
    watch.mark_unchanged();
    let _ = tokio::time::timeout(std::time::Duration::from_millis(300), watch.changed()).await;
    let status = watch.borrow().clone();
    status
}

fn section(out: &mut String, title: &str) {
    if !out.is_empty() {
        out.push_str("\r\n");
    }
    let _ = write!(out, "# {title}\r\n");
}

/// The `INFO` text for `section` (`None`: every section).
pub async fn render(shared: &Shared, wanted: Option<&str>) -> String {
    let wanted = wanted.map(str::to_ascii_lowercase);
    let show = |name: &str| {
        matches!(
            wanted.as_deref(),
            None | Some("all") | Some("everything") | Some("default")
        ) || wanted.as_deref() == Some(name)
    };
    let config = &shared.config;
    let status = fresh_status(shared).await;
    let mut out = String::new();
    if show("server") {
        section(&mut out, "Server");
        let _ = write!(
            out,
            "redis_version:7.0.0\r\nrabia_kv_version:{}\r\nredis_mode:standalone\r\nprocess_id:{}\r\ntcp_port:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            config.resp.port()
        );
    }
    if show("clients") {
        section(&mut out, "Clients");
        let _ = write!(
            out,
            "connected_clients:{}\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_commands:{}\r\nprotocol_errors:{}\r\n",
            shared.stats.connections_open.load(Ordering::Relaxed),
            shared.stats.connections.load(Ordering::Relaxed),
            shared.stats.commands.load(Ordering::Relaxed),
            shared.stats.errors.load(Ordering::Relaxed),
            shared.stats.protocol_errors.load(Ordering::Relaxed),
        );
    }
    if show("rabia") || show("replication") {
        section(&mut out, "Rabia");
        let peers_connected = status.transport.peers_connected;
        let _ = write!(
            out,
            "node_id:{}\r\ncluster_id:{}\r\ncluster_size:{}\r\nrunning:{}\r\nquorum:{}\r\nlearner:{}\r\nparticipate_from:{}\r\nnext_slot:{}\r\napplied_slot:{}\r\nslots_decided:{}\r\nnull_slots:{}\r\nnull_rate:{:.4}\r\nfast_path_slots:{}\r\nunanimous_slots:{}\r\nphases_per_slot:{:.3}\r\npending_batches:{}\r\nqueued_operations:{}\r\nmean_batch_size:{:.1}\r\nbatches_per_proposal:{:.2}\r\nsubmit_to_decide_p50_us:{}\r\nsubmit_to_decide_p99_us:{}\r\nlast_snapshot_slot:{}\r\npeers_connected:{}\r\npeers_reachable:{}\r\npersistence:{}\r\ndata_dir:{}\r\nread_mode:{}\r\n",
            config.id,
            config.cluster_id,
            config.peers.len(),
            u8::from(status.running),
            if has_quorum(config, &status) { "ok" } else { "lost" },
            u8::from(status.learner),
            status
                .participate_from
                .map_or("unknown".to_string(), |s| s.0.to_string()),
            status.next_slot.0,
            status.applied_slot.0,
            status.protocol.slots_decided,
            status.protocol.null_slots,
            null_rate(&status),
            status.protocol.fast_path_slots,
            status.protocol.unanimous_slots,
            phases_per_slot(&status),
            status.protocol.pending_batches,
            status.queued_operations,
            status.mean_batch_size,
            batches_per_proposal(&status),
            status.submit_to_decide.p50.as_micros(),
            status.submit_to_decide.p99.as_micros(),
            status.last_snapshot.map_or("none".to_string(), |s| s.0.to_string()),
            peers_connected,
            peers_reachable(&status),
            match config.persistence {
                PersistenceKind::File => "file",
                PersistenceKind::Memory => "memory",
            },
            config
                .data_dir
                .as_ref()
                .map_or("-".to_string(), |d| d.display().to_string()),
            match config.read_mode {
                ReadMode::Linearizable => "linearizable",
                ReadMode::Local => "local",
            },
        );
        for peer in &status.peers {
            let _ = write!(
                out,
                "peer_{}:reachable={},last_heard_ms={}\r\n",
                peer.node,
                u8::from(peer.reachable),
                peer.last_heard.map_or(-1, |d| d.as_millis() as i64),
            );
        }
        if let Some(reason) = &status.stopped_reason {
            let _ = write!(out, "stopped_reason:{reason}\r\n");
        }
    }
    if show("keyspace") {
        // A relaxed local read: INFO describes this replica.
        let counts = shared
            .reader
            .read_local(|store| (store.len(), store.expiring()))
            .await;
        section(&mut out, "Keyspace");
        if let Ok((keys, expires)) = counts {
            if keys > 0 {
                let _ = write!(out, "db0:keys={keys},expires={expires},avg_ttl=0\r\n");
            }
        }
    }
    out
}

/// `CONFIG GET`: the few parameters clients ask about at start-up.
pub fn config_get(config: &NodeConfig, patterns: &[String]) -> Value {
    let appendonly = match config.persistence {
        PersistenceKind::File => "yes",
        PersistenceKind::Memory => "no",
    };
    let known = [
        ("save", ""),
        ("appendonly", appendonly),
        ("appendfsync", "always"),
        ("databases", "1"),
    ];
    let mut items = Vec::new();
    for (name, value) in known {
        if patterns.iter().any(|p| p == "*" || p == name) {
            items.push(Value::bulk(name));
            items.push(Value::bulk(value));
        }
    }
    Value::Array(Some(items))
}
