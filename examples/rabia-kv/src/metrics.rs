//! `/metrics` (Prometheus/OpenMetrics text, via `prometheus-client`) and
//! `/health` over a deliberately small HTTP/1.1 responder: one GET per
//! connection, bounded request size and time.

use crate::info;
use crate::node::Shared;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const REQUEST_BYTES_MAX: usize = 8 << 10;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

type Labels = Vec<(String, String)>;

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn gauge_f(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g: Gauge<f64, AtomicU64> = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Renders every metric of this node.
pub fn render(shared: &Shared) -> String {
    let status = shared.handle.status();
    let p = &status.protocol;
    let t = &status.transport;
    let mut r = Registry::default();
    gauge(
        &mut r,
        "rabia_up",
        "1 while the engine loop runs",
        i64::from(status.running),
    );
    gauge(
        &mut r,
        "rabia_quorum",
        "1 if this node and its reachable peers form a majority",
        i64::from(info::has_quorum(&shared.config, &status)),
    );
    gauge(
        &mut r,
        "rabia_cluster_size",
        "Members of the cluster",
        shared.config.peers.len() as i64,
    );
    gauge(
        &mut r,
        "rabia_next_slot",
        "First slot not yet decided here",
        clamp(status.next_slot.0),
    );
    gauge(
        &mut r,
        "rabia_applied_slot",
        "First slot not yet applied here",
        clamp(status.applied_slot.0),
    );
    counter(
        &mut r,
        "rabia_slots_decided",
        "Slots decided",
        p.slots_decided,
    );
    counter(
        &mut r,
        "rabia_null_slots",
        "Slots decided empty (bottom)",
        p.null_slots,
    );
    counter(
        &mut r,
        "rabia_fast_path_slots",
        "Slots decided in the first phase",
        p.fast_path_slots,
    );
    counter(
        &mut r,
        "rabia_unanimous_slots",
        "Slots decided on every member's agreeing proposal (no vote round)",
        p.unanimous_slots,
    );
    counter(
        &mut r,
        "rabia_openings_sent",
        "Slot values announced ahead of this node's Proposal (file persistence)",
        p.openings_sent,
    );
    counter(
        &mut r,
        "rabia_proposals_by_reference",
        "Proposals sent naming their value by batch ids (the peers already held the payloads)",
        p.proposals_by_reference,
    );
    counter(
        &mut r,
        "rabia_proposal_fetches",
        "Proposals received by reference whose payloads had to be fetched from the sender",
        p.proposal_fetches,
    );
    counter(
        &mut r,
        "rabia_phases",
        "Phases run over all slots decided by the protocol",
        p.phases_total,
    );
    gauge(
        &mut r,
        "rabia_phases_max",
        "Most phases any slot needed",
        i64::from(p.phases_max),
    );
    counter(
        &mut r,
        "rabia_decisions_adopted",
        "Decisions learned from peers instead of voted",
        p.decisions_adopted,
    );
    counter(
        &mut r,
        "rabia_retransmits",
        "Messages retransmitted",
        p.retransmits,
    );
    counter(
        &mut r,
        "rabia_catch_up_requests",
        "Catch-up requests sent",
        p.catch_up_requests,
    );
    counter(
        &mut r,
        "rabia_snapshot_requests",
        "Snapshot transfers requested",
        p.snapshot_requests,
    );
    counter(
        &mut r,
        "rabia_snapshots_installed",
        "Snapshots installed from peers",
        p.snapshots_installed,
    );
    gauge(
        &mut r,
        "rabia_pending_batches",
        "Batches waiting for a slot",
        clamp(p.pending_batches),
    );
    gauge(
        &mut r,
        "rabia_queued_operations",
        "Operations waiting to be batched",
        status.queued_operations as i64,
    );
    counter(
        &mut r,
        "rabia_batches_created",
        "Batches this node proposed",
        status.batches_created,
    );
    gauge_f(
        &mut r,
        "rabia_mean_batch_size",
        "Mean operations per created batch",
        status.mean_batch_size,
    );
    gauge(
        &mut r,
        "rabia_last_snapshot_slot",
        "Base slot of the latest durable snapshot (-1: none)",
        status.last_snapshot.map_or(-1, |s| clamp(s.0)),
    );
    counter(
        &mut r,
        "rabia_refused_operations",
        "Fire-and-forget operations refused",
        status.refused_operations,
    );
    let latency: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
    for (stage, summary) in [
        ("submit_to_decide", status.submit_to_decide),
        ("decide_to_apply", status.decide_to_apply),
    ] {
        for (q, d) in [
            ("0.5", summary.p50),
            ("0.99", summary.p99),
            ("1", summary.max),
        ] {
            latency
                .get_or_create(&vec![
                    ("stage".into(), stage.into()),
                    ("quantile".into(), q.into()),
                ])
                .set(d.as_secs_f64());
        }
    }
    r.register(
        "rabia_latency_seconds",
        "Latency quantiles per stage",
        latency,
    );
    let dropped: Family<Labels, Counter> = Family::default();
    let d = &p.dropped;
    for (reason, n) in [
        ("unknown_sender", d.unknown_sender),
        ("wrong_epoch", d.wrong_epoch),
        ("invalid", d.invalid),
        ("out_of_window", d.out_of_window),
        ("stale", d.stale),
        ("duplicate", d.duplicate),
        ("conflicting", d.conflicting),
        ("queue_full", d.queue_full),
    ] {
        dropped
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc_by(n);
    }
    r.register(
        "rabia_messages_dropped",
        "Inbound protocol messages dropped by the replica",
        dropped,
    );
    counter(
        &mut r,
        "rabia_transport_sent",
        "Messages queued to peers",
        t.sent,
    );
    counter(
        &mut r,
        "rabia_transport_received",
        "Messages received from peers",
        t.received,
    );
    let tdrop: Family<Labels, Counter> = Family::default();
    tdrop
        .get_or_create(&vec![("reason".into(), "outbox_full".into())])
        .inc_by(t.dropped_full);
    tdrop
        .get_or_create(&vec![("reason".into(), "unreachable".into())])
        .inc_by(t.dropped_unreachable);
    r.register(
        "rabia_transport_dropped",
        "Outbound messages dropped",
        tdrop,
    );
    counter(
        &mut r,
        "rabia_transport_frames_rejected",
        "Inbound frames refused (garbage, oversized, forged sender)",
        t.frames_rejected,
    );
    counter(
        &mut r,
        "rabia_transport_handshakes_rejected",
        "Connections refused at the handshake",
        t.handshakes_rejected,
    );
    counter(
        &mut r,
        "rabia_transport_connections",
        "Peer connections established",
        t.connections_established,
    );
    gauge(
        &mut r,
        "rabia_peers_connected",
        "Peers with a live connection",
        clamp(t.peers_connected),
    );
    gauge(
        &mut r,
        "rabia_peers_reachable",
        "Peers heard from within the failure timeout",
        info::peers_reachable(&status) as i64,
    );
    let s = &shared.stats;
    counter(
        &mut r,
        "rabia_kv_connections",
        "Client connections accepted",
        s.connections.load(Ordering::Relaxed),
    );
    gauge(
        &mut r,
        "rabia_kv_connections_open",
        "Client connections open",
        clamp(s.connections_open.load(Ordering::Relaxed)),
    );
    counter(
        &mut r,
        "rabia_kv_commands",
        "Commands received",
        s.commands.load(Ordering::Relaxed),
    );
    counter(
        &mut r,
        "rabia_kv_commands_rejected",
        "Commands refused (unknown, arity, syntax)",
        s.errors.load(Ordering::Relaxed),
    );
    counter(
        &mut r,
        "rabia_kv_protocol_errors",
        "Client connections closed for non-RESP input",
        s.protocol_errors.load(Ordering::Relaxed),
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

/// Serves `/metrics` and `/health` until aborted.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut requests = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    if requests.len() < 64 {
                        let shared = shared.clone();
                        requests.spawn(async move {
                            let _ = tokio::time::timeout(REQUEST_TIMEOUT, respond(stream, &shared)).await;
                        });
                    }
                }
            }
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
        }
    }
}

async fn respond(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        if request.len() > REQUEST_BYTES_MAX {
            return write(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            )
            .await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return write(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n",
        )
        .await;
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" => {
            let body = render(shared);
            write(
                &mut stream,
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                &body,
            )
            .await
        }
        "/health" => {
            let status = shared.handle.status();
            if info::has_quorum(&shared.config, &status) {
                write(&mut stream, "200 OK", "text/plain", "ok\n").await
            } else {
                let why = match &status.stopped_reason {
                    Some(reason) => format!("engine stopped: {reason}\n"),
                    None if !status.running => "engine not running\n".to_string(),
                    None => format!(
                        "no quorum: {} of {} peers reachable\n",
                        info::peers_reachable(&status),
                        shared.config.peers.len().saturating_sub(1)
                    ),
                };
                write(&mut stream, "503 Service Unavailable", "text/plain", &why).await
            }
        }
        _ => {
            write(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "try /metrics or /health\n",
            )
            .await
        }
    }
}

async fn write(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
