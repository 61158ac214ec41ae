//! Real loopback TCP: handshake refusals, garbage, peers that start late or
//! restart, and both sides dialing at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rabia_core::protocol::{Envelope, Message};
use rabia_core::{Epoch, NodeId, Slot};
use rabia_network::{TcpConfig, TcpTransport, Transport};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

fn node(i: u64) -> NodeId {
    NodeId::from_u64(i)
}

fn heartbeat(from: NodeId, mark: u64) -> Envelope {
    Envelope {
        sender: from,
        epoch: Epoch(0),
        message: Message::Heartbeat {
            next_slot: Slot(mark),
            learner: false,
            probe: 0,
        },
    }
}

/// Free loopback addresses for `n` nodes, with their listeners still bound.
async fn listeners(n: u64) -> (Vec<TcpListener>, BTreeMap<NodeId, SocketAddr>) {
    let mut ls = Vec::new();
    let mut peers = BTreeMap::new();
    for i in 1..=n {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(node(i), l.local_addr().unwrap());
        ls.push(l);
    }
    (ls, peers)
}

fn start(
    me: u64,
    cluster: u64,
    listener: TcpListener,
    peers: &BTreeMap<NodeId, SocketAddr>,
) -> TcpTransport {
    let addr = listener.local_addr().unwrap();
    let mut config = TcpConfig::new(node(me), cluster, addr, peers.clone());
    config.reconnect_backoff_max = Duration::from_millis(200);
    TcpTransport::with_listener(config, listener).unwrap()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Binds `addr` again once the previous owner's listener is gone (a
/// dropped transport closes its listener asynchronously, so an immediate
/// bind can still find the port in use).
async fn rebind(addr: std::net::SocketAddr) -> TcpListener {
    let mut bound = None;
    wait_until("the port is free to bind again", || {
        bound = std::net::TcpListener::bind(addr).ok();
        bound.is_some()
    })
    .await;
    let listener = bound.expect("bound once the wait is over");
    listener.set_nonblocking(true).unwrap();
    TcpListener::from_std(listener).unwrap()
}

/// Re-sends until `to` receives a message from `from` with `mark`.
async fn delivered(from: &TcpTransport, to: &mut TcpTransport, mark: u64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        from.send(to.node(), heartbeat(from.node(), mark));
        if let Ok(Some((sender, env))) = timeout(Duration::from_millis(20), to.recv()).await {
            if env == heartbeat(from.node(), mark) {
                assert_eq!(sender, from.node());
                return;
            }
        }
        assert!(Instant::now() < deadline, "message {mark} not delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cluster_id_is_refused_on_both_sides() {
    let (mut ls, peers) = listeners(2).await;
    let l2 = ls.pop().unwrap();
    let l1 = ls.pop().unwrap();
    let a = start(1, 100, l1, &peers);
    let b = start(2, 200, l2, &peers);
    wait_until("both sides refuse the other's cluster id", || {
        a.stats().handshakes_rejected > 0 && b.stats().handshakes_rejected > 0
    })
    .await;
    assert_eq!(a.stats().peers_connected, 0);
    assert_eq!(b.stats().peers_connected, 0);
    assert_eq!(a.stats().connections_established, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_the_membership_is_refused() {
    let (mut ls, mut peers) = listeners(2).await;
    let l_outsider = ls.pop().unwrap();
    let l1 = ls.pop().unwrap();
    let outsider_addr = peers.remove(&node(2)).unwrap();
    let a = start(1, 7, l1, &peers); // knows only itself
    let mut outsider_peers = peers.clone();
    outsider_peers.insert(node(2), outsider_addr);
    let outsider = start(2, 7, l_outsider, &outsider_peers);
    wait_until("node 1 refuses the unknown node 2", || {
        a.stats().handshakes_rejected > 0 && outsider.stats().handshakes_rejected > 0
    })
    .await;
    assert_eq!(outsider.stats().peers_connected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_peer_port_is_refused_and_the_node_keeps_serving() {
    let (mut ls, peers) = listeners(2).await;
    let l2 = ls.pop().unwrap();
    let l1 = ls.pop().unwrap();
    let addr1 = peers[&node(1)];
    let a = start(1, 7, l1, &peers);
    let mut b = start(2, 7, l2, &peers);
    // An HTTP request, a length prefix claiming 4 GiB, and random bytes.
    let junk: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        &[0x00, 0x00, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00],
    ];
    for bytes in junk {
        let mut s = TcpStream::connect(addr1).await.unwrap();
        s.write_all(bytes).await.unwrap();
        // A half-close makes a truncated frame, too.
        s.shutdown().await.unwrap();
    }
    wait_until("three refused handshakes", || {
        a.stats().handshakes_rejected >= 3
    })
    .await;
    delivered(&a, &mut b, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_down_at_start_is_reached_once_it_comes_up() {
    let (mut ls, peers) = listeners(2).await;
    let l2 = ls.pop().unwrap();
    let l1 = ls.pop().unwrap();
    let addr2 = peers[&node(2)];
    drop(l2); // node 2 is down: connects to it are refused
    let a = start(1, 7, l1, &peers);
    // Sends while the peer is down are dropped and counted, never block.
    for i in 0..100 {
        a.send(node(2), heartbeat(node(1), i));
    }
    wait_until("sends to a down peer are dropped and counted", || {
        a.stats().dropped_unreachable > 0
    })
    .await;
    let l2 = rebind(addr2).await;
    let mut b = start(2, 7, l2, &peers);
    delivered(&a, &mut b, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_reconnects() {
    let (mut ls, peers) = listeners(2).await;
    let l2 = ls.pop().unwrap();
    let l1 = ls.pop().unwrap();
    let addr2 = peers[&node(2)];
    let mut a = start(1, 7, l1, &peers);
    let mut b = start(2, 7, l2, &peers);
    delivered(&a, &mut b, 1).await;
    delivered(&b, &mut a, 2).await;
    drop(b);
    wait_until("node 1 notices node 2 went away", || {
        a.stats().peers_connected == 0
    })
    .await;
    let mut b = start(2, 7, rebind(addr2).await, &peers);
    delivered(&a, &mut b, 3).await;
    delivered(&b, &mut a, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_dialing_settle_on_one_connection() {
    for round in 0..5 {
        let (mut ls, peers) = listeners(2).await;
        let l2 = ls.pop().unwrap();
        let l1 = ls.pop().unwrap();
        // Started together, both dial at once.
        let mut a = start(1, 7, l1, &peers);
        let mut b = start(2, 7, l2, &peers);
        delivered(&a, &mut b, round).await;
        delivered(&b, &mut a, round).await;
        wait_until("one live connection on each side", || {
            a.stats().peers_connected == 1 && b.stats().peers_connected == 1
        })
        .await;
        let ports = [peers[&node(1)].port(), peers[&node(2)].port()];
        wait_until(
            "exactly one established TCP connection between the pair",
            || established_sockets(&ports) == 2,
        )
        .await;
        // A burst arrives complete and in order over that one connection.
        for i in 0..200 {
            a.send(node(2), heartbeat(node(1), 10_000 + i));
        }
        let mut expected = 10_000;
        while expected < 10_200 {
            let (from, env) = timeout(DEADLINE, b.recv()).await.unwrap().unwrap();
            assert_eq!(from, node(1));
            let Message::Heartbeat { next_slot, .. } = env.message else {
                panic!("unexpected message");
            };
            if next_slot.0 < 10_000 {
                continue; // a late copy of the warm-up message
            }
            assert_eq!(
                next_slot.0, expected,
                "round {round}: order on one connection"
            );
            expected += 1;
        }
    }
}

/// Loopback sockets in state ESTABLISHED with either end on one of `ports`
/// (from /proc/net/tcp): one connection between two listeners shows as two
/// sockets, one per side.
fn established_sockets(ports: &[u16]) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            fields.len() > 3
                && fields[3] == "01"
                && (port(fields[1]).is_some_and(|p| ports.contains(&p))
                    || port(fields[2]).is_some_and(|p| ports.contains(&p)))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_peer_address_is_refused_by_the_dialer() {
    // Node 1 believes node 2 listens where node 3 actually does. Node 3
    // knows node 1 but cannot reach it (a closed port), so the only
    // handshake is node 1 dialing node 3: node 3 accepts it (node 1 is a
    // member) and answers as node 3, and node 1 refuses the answer.
    let (mut ls, real) = listeners(3).await;
    let l3 = ls.pop().unwrap();
    let l2 = ls.pop().unwrap();
    let l1 = ls.pop().unwrap();
    let closed = l2.local_addr().unwrap();
    drop(l2);
    let mut node1_view = real.clone();
    node1_view.insert(node(2), real[&node(3)]);
    node1_view.remove(&node(3));
    let mut node3_view = real.clone();
    node3_view.insert(node(1), closed);
    node3_view.remove(&node(2));
    let a = start(1, 7, l1, &node1_view);
    let c = start(3, 7, l3, &node3_view);
    wait_until(
        "node 1 refuses the node that answers at node 2's address",
        || a.stats().handshakes_rejected > 0,
    )
    .await;
    assert_eq!(
        c.stats().handshakes_rejected,
        0,
        "node 3 accepted node 1: the refusal is the dialer's (expected node 2, found node 3)"
    );
    assert_eq!(a.stats().peers_connected, 0);
}
