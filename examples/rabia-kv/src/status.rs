//! `rabia-kv status --resp ADDR`: a node's view of itself and the cluster,
//! read from its `INFO rabia` section.

use crate::client::{self, ClientError};
use crate::resp::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Fetches `INFO rabia` from `addr` as key → value.
pub async fn fetch(addr: SocketAddr) -> Result<BTreeMap<String, String>, ClientError> {
    let reply = client::request(addr, &[b"INFO", b"rabia"], Duration::from_secs(5)).await?;
    let text = match reply {
        Value::Bulk(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Value::Error(e) => {
            return Err(ClientError::Io(std::io::Error::other(format!(
                "the server refused INFO: {e}"
            ))))
        }
        other => {
            return Err(ClientError::Io(std::io::Error::other(format!(
                "unexpected reply to INFO: {other:?}"
            ))))
        }
    };
    Ok(text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// A human-readable report of `info`.
pub fn report(addr: SocketAddr, info: &BTreeMap<String, String>) -> String {
    let get = |k: &str| info.get(k).map_or("?", String::as_str);
    let mut out = format!(
        "node {} at {addr} (cluster {}, {} members)\n",
        get("node_id"),
        get("cluster_id"),
        get("cluster_size")
    );
    out += &format!(
        "  engine      running={} quorum={} learner={} participate_from={}\n",
        get("running"),
        get("quorum"),
        get("learner"),
        get("participate_from")
    );
    out += &format!(
        "  slots       next={} applied={} decided={} null(⊥)={} ⊥-rate={}\n",
        get("next_slot"),
        get("applied_slot"),
        get("slots_decided"),
        get("null_slots"),
        get("null_rate")
    );
    out += &format!(
        "  protocol    fast-path slots={} phases/slot={} batches/proposal={} pending batches={} queued ops={}\n",
        get("fast_path_slots"),
        get("phases_per_slot"),
        get("batches_per_proposal"),
        get("pending_batches"),
        get("queued_operations")
    );
    out += &format!(
        "  latency     submit→decide p50={}µs p99={}µs\n",
        get("submit_to_decide_p50_us"),
        get("submit_to_decide_p99_us")
    );
    out += &format!(
        "  peers       connected={} reachable={}\n",
        get("peers_connected"),
        get("peers_reachable")
    );
    for (k, v) in info.iter().filter(|(k, _)| k.starts_with("peer_")) {
        out += &format!("    {} {}\n", k.trim_start_matches("peer_"), v);
    }
    out += &format!(
        "  storage     persistence={} data_dir={} last snapshot slot={}\n",
        get("persistence"),
        get("data_dir"),
        get("last_snapshot_slot")
    );
    out += &format!("  reads       {}\n", get("read_mode"));
    if let Some(reason) = info.get("stopped_reason") {
        out += &format!("  STOPPED: {reason}\n");
    }
    out
}
