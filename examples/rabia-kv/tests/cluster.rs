//! Real `rabia-kv` processes on loopback, driven by a real Redis client
//! crate: SIGKILL and restart, SIGSTOP and SIGCONT, garbage on both ports,
//! pipelining, transactions. Every acknowledged write must be on every
//! replica at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use redis::Value as RedisValue;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// `n` distinct free loopback ports (all bound at once, so none repeats).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

struct Node {
    id: u64,
    resp: SocketAddr,
    peer: SocketAddr,
    metrics: SocketAddr,
    data: PathBuf,
    child: Option<Child>,
}

/// A cluster of `rabia-kv` processes; killed on drop.
struct KvCluster {
    nodes: Vec<Node>,
    peers: String,
    _dir: tempfile::TempDir,
}

impl KvCluster {
    fn start(n: u64) -> KvCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(3 * n as usize);
        let addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], ports[i]));
        let nodes: Vec<Node> = (1..=n)
            .map(|id| Node {
                id,
                resp: addr(3 * (id as usize - 1)),
                peer: addr(3 * (id as usize - 1) + 1),
                metrics: addr(3 * (id as usize - 1) + 2),
                data: dir.path().join(format!("node-{id}")),
                child: None,
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = KvCluster {
            nodes,
            peers,
            _dir: dir,
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i);
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_ready(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        self.spawn_with(i, &[]);
    }

    fn spawn_with(&mut self, i: usize, extra: &[&str]) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self._dir.path().join(format!("node-{}.log", node.id)))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rabia-kv"))
            .args(["--id", &node.id.to_string()])
            .args(["--peers", &self.peers])
            .args(["--resp", &node.resp.to_string()])
            .args(["--metrics", &node.metrics.to_string()])
            .arg("--data-dir")
            .arg(&node.data)
            .args(["--persistence", "file"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(
            self._dir
                .path()
                .join(format!("node-{}.log", self.nodes[i].id)),
        )
        .unwrap_or_default()
    }

    fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(mut con) = self.try_connect(i) {
                if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not start; log:\n{}",
                i + 1,
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_connect(&self, i: usize) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://{}/", self.nodes[i].resp))?;
        let con = client.get_connection_with_timeout(Duration::from_secs(2))?;
        con.set_read_timeout(Some(Duration::from_secs(30)))?;
        con.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(con)
    }

    fn connect(&self, i: usize) -> redis::Connection {
        self.try_connect(i).unwrap()
    }

    fn pid(&self, i: usize) -> Pid {
        Pid::from_raw(self.nodes[i].child.as_ref().unwrap().id() as i32)
    }

    fn sigkill(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn signal(&self, i: usize, signal: Signal) {
        kill(self.pid(i), signal).unwrap();
    }

    /// Sets `key` through node `i`, retrying a connection error (a node
    /// that lost quorum or is restarting) until the deadline.
    fn set(&self, i: usize, key: &str, value: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let result = self.try_connect(i).and_then(|mut con| {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .query::<String>(&mut con)
            });
            match result {
                Ok(reply) => {
                    assert_eq!(reply, "OK");
                    return;
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "SET {key} via node {}: {e}",
                        i + 1
                    );
                    std::thread::sleep(Duration::from_millis(50)); // retry pacing
                }
            }
        }
    }

    /// Sets `k{k}` to `v{k}` for every k in `keys`, through node `via(k)`,
    /// and records each acknowledged write in `acked`.
    fn write(
        &self,
        keys: std::ops::Range<usize>,
        via: impl Fn(usize) -> usize,
        acked: &mut Vec<(String, String)>,
    ) {
        for k in keys {
            let (key, value) = (format!("k{k}"), format!("v{k}"));
            self.set(via(k), &key, &value);
            acked.push((key, value));
        }
    }

    /// Every key in `expected` has its value when read through every node.
    fn assert_everywhere(&self, expected: &[(String, String)]) {
        self.assert_on(0..self.nodes.len(), expected);
    }

    /// Every key in `expected` has its value when read through `nodes`.
    fn assert_on(&self, nodes: impl Iterator<Item = usize>, expected: &[(String, String)]) {
        for i in nodes {
            let mut con = self.connect(i);
            let keys: Vec<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query(&mut con).unwrap();
            for ((key, want), got) in expected.iter().zip(values) {
                assert_eq!(
                    got.as_deref(),
                    Some(want.as_str()),
                    "node {} lost acknowledged write {key}",
                    i + 1
                );
            }
        }
    }
}

impl Drop for KvCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[test]
fn a_killed_node_restarts_from_disk_and_catches_up() {
    let mut cluster = KvCluster::start(3);
    let mut acked = Vec::new();
    cluster.write(0..60, |k| k % 3, &mut acked);
    cluster.sigkill(2);
    // Two of three keep serving.
    cluster.write(60..120, |k| k % 2, &mut acked);
    cluster.spawn(2);
    cluster.wait_ready(2);
    cluster.write(120..140, |_| 2, &mut acked);
    cluster.assert_everywhere(&acked);
}

/// A node whose data directory is lost comes back empty with `--rejoin`:
/// it learns before it votes (INFO shows `learner:1`, then `learner:0`),
/// and then takes part: the cluster serves with it and one other node.
#[test]
fn a_node_that_lost_its_data_rejoins_with_rejoin() {
    let mut cluster = KvCluster::start(3);
    let mut acked = Vec::new();
    cluster.write(0..30, |k| k % 3, &mut acked);
    cluster.sigkill(2);
    std::fs::remove_dir_all(&cluster.nodes[2].data).unwrap();
    cluster.spawn_with(2, &["--rejoin"]);
    cluster.wait_ready(2);
    // Writes through the learner are decided by the others.
    cluster.write(30..40, |_| 2, &mut acked);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let info: String = redis::cmd("INFO")
            .arg("rabia")
            .query(&mut cluster.connect(2))
            .unwrap();
        let from = info
            .lines()
            .find_map(|l| l.strip_prefix("participate_from:"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        if info.contains("learner:0\r\n") {
            if let Some(from) = from {
                assert!(from >= 32, "took part too early: from slot {from}");
                break;
            }
        }
        assert!(Instant::now() < deadline, "still learning:\n{info}");
        cluster.set(1, "tick", "x"); // keep slots coming
    }
    // It takes part now: with node 1 gone, nodes 2 and 3 still decide.
    cluster.sigkill(0);
    cluster.write(40..50, |k| 1 + k % 2, &mut acked);
    cluster.assert_on(1..3, &acked);
}

#[test]
fn a_stopped_node_catches_up_after_sigcont() {
    let cluster = KvCluster::start(3);
    let mut acked = Vec::new();
    cluster.signal(1, Signal::SIGSTOP);
    for k in 0..100 {
        let (key, value) = (format!("s{k}"), format!("{k}"));
        cluster.set(if k % 2 == 0 { 0 } else { 2 }, &key, &value);
        acked.push((key, value));
    }
    cluster.signal(1, Signal::SIGCONT);
    cluster.assert_everywhere(&acked);
}

#[test]
fn garbage_on_both_ports_is_refused_and_the_cluster_keeps_serving() {
    let cluster = KvCluster::start(3);
    let node = &cluster.nodes[0];
    // The RESP port answers non-RESP with a protocol error and closes.
    let mut s = TcpStream::connect(node.resp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"*1\r\n$-7\r\n").unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("-ERR Protocol error"), "got {reply:?}");
    // The peer port refuses a stranger's bytes at the handshake.
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 64][..],
        &[0, 0, 0, 3, 1, 2, 3][..],
    ] {
        let mut s = TcpStream::connect(node.peer).unwrap();
        s.write_all(junk).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.read_to_end(&mut sink);
    }
    cluster.set(0, "after", "garbage");
    cluster.assert_everywhere(&[("after".into(), "garbage".into())]);
    let mut con = cluster.connect(0);
    let info: String = redis::cmd("INFO").arg("clients").query(&mut con).unwrap();
    assert!(info.contains("protocol_errors:1"), "{info}");
    let info: String = redis::cmd("INFO").arg("rabia").query(&mut con).unwrap();
    assert!(info.contains("unanimous_slots:"), "{info}");
    // The status behind /metrics is published periodically: wait for it.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let metrics = http_get(node.metrics, "/metrics");
        let rejected = metric(&metrics, "rabia_transport_handshakes_rejected_total").unwrap();
        if rejected >= 3 {
            assert!(
                metrics.contains("rabia_unanimous_slots_total"),
                "the unanimity counter is exported: {metrics}"
            );
            // This node took every write and opened slots with them; with
            // file persistence it announces each value ahead of its
            // Proposal.
            let openings = metric(&metrics, "rabia_openings_sent_total");
            assert!(openings.is_some_and(|n| n > 0), "{metrics}");
            // And its Proposal names the announced value by reference.
            let by_reference = metric(&metrics, "rabia_proposals_by_reference_total");
            assert!(by_reference.is_some_and(|n| n > 0), "{metrics}");
            break;
        }
        assert!(Instant::now() < deadline, "handshakes rejected: {rejected}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Healthy: this node sees a quorum (its status is periodic: wait).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let health = http_get(node.metrics, "/health");
        if health.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "unhealthy: {health}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pipelines_transactions_and_redis_errors_behave_like_redis() {
    let cluster = KvCluster::start(3);
    let mut con = cluster.connect(0);
    // 200 pipelined commands come back in order.
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("INCR").arg("counter").ignore();
        pipe.cmd("GET").arg("counter");
        if i == 199 {
            pipe.cmd("DBSIZE");
        }
    }
    let replies: Vec<RedisValue> = pipe.query(&mut con).unwrap();
    assert_eq!(replies.len(), 201);
    for (i, reply) in replies.iter().take(200).enumerate() {
        let got: String = redis::from_redis_value(reply).unwrap();
        assert_eq!(got, (i + 1).to_string(), "pipelined replies out of order");
    }
    // MULTI/EXEC: one replicated operation, applied atomically.
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCRBY")
        .arg("x")
        .arg(5)
        .cmd("INCRBY")
        .arg("x")
        .arg(5)
        .query(&mut con)
        .unwrap();
    assert_eq!((a, b), (5, 10));
    // CAS through another node sees the transaction's result.
    let mut other = cluster.connect(1);
    let swapped: i64 = redis::cmd("CAS")
        .arg("x")
        .arg("10")
        .arg("11")
        .query(&mut other)
        .unwrap();
    let not_swapped: i64 = redis::cmd("CAS")
        .arg("x")
        .arg("10")
        .arg("12")
        .query(&mut other)
        .unwrap();
    assert_eq!((swapped, not_swapped), (1, 0));
    // SET options.
    let first: Option<String> = redis::cmd("SET")
        .arg("n")
        .arg("1")
        .arg("NX")
        .query(&mut con)
        .unwrap();
    let second: Option<String> = redis::cmd("SET")
        .arg("n")
        .arg("2")
        .arg("NX")
        .query(&mut con)
        .unwrap();
    assert_eq!((first.as_deref(), second), (Some("OK"), None));
    let old: Option<String> = redis::cmd("SET")
        .arg("n")
        .arg("3")
        .arg("GET")
        .query(&mut con)
        .unwrap();
    assert_eq!(old.as_deref(), Some("1"));
    // Redis-style errors keep the connection usable.
    let e = redis::cmd("NOSUCH").query::<String>(&mut con).unwrap_err();
    assert!(e.to_string().contains("unknown command"), "{e}");
    let e = redis::cmd("GET").query::<String>(&mut con).unwrap_err();
    assert!(e.to_string().contains("wrong number of arguments"), "{e}");
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    // Ten pipelined 1 MiB values (10 MiB together, more than one log entry
    // may carry) are all accepted.
    let big = "x".repeat(1 << 20);
    let mut pipe = redis::pipe();
    for i in 0..10 {
        pipe.cmd("SET").arg(format!("big{i}")).arg(&big);
    }
    let replies: Vec<String> = pipe.query(&mut con).unwrap();
    assert_eq!(replies, vec!["OK".to_string(); 10]);
    let got: String = redis::cmd("GET").arg("big9").query(&mut con).unwrap();
    assert_eq!(got.len(), big.len());
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_rabia-kv"))
        .args([
            "--id",
            "4",
            "--peers",
            "1=127.0.0.1:1,2=127.0.0.1:2",
            "--resp",
            "127.0.0.1:3",
        ])
        .arg("--persistence")
        .arg("memory")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("this node's id 4 is not in the member list"),
        "{err}"
    );
}

/// The value of the unlabelled counter or gauge `name` in a `/metrics` page.
fn metric(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
