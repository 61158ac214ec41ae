//! The README's quick start, run as written: `rabia-kv local-cluster --nodes
//! 3` on its default ports, `SET greeting hello` through node 1, `GET
//! greeting` through node 2, `rabia-kv status`, then Ctrl-C (SIGINT) stops
//! every node cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_readme_quick_start_works() {
    // The README's ports must be free (another cluster running on this
    // machine would make this test meaningless rather than wrong).
    for port in [6381u16, 6382, 6383, 7001, 7002, 7003, 9101, 9102, 9103] {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            eprintln!("port {port} is busy; skipping the quick-start check");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Command::new(env!("CARGO_BIN_EXE_rabia-kv"))
        .args(["local-cluster", "--nodes", "3", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = cluster.stdout.take().unwrap();
    // Whatever happens below, the cluster is stopped at the end.
    let mut guard = StopOnDrop(cluster);
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("Ctrl-C stops the cluster");
        banner.push(line);
        if done {
            break;
        }
    }
    let banner = banner.join("\n");
    assert!(banner.contains("node 1: RESP 127.0.0.1:6381"), "{banner}");
    assert!(
        banner.contains("redis-cli -p 6381 SET greeting hello"),
        "{banner}"
    );

    // redis-cli -p 6381 SET greeting hello / redis-cli -p 6382 GET greeting
    let mut one = redis::Client::open("redis://127.0.0.1:6381/")
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap();
    let ok: String = redis::cmd("SET")
        .arg("greeting")
        .arg("hello")
        .query(&mut one)
        .unwrap();
    assert_eq!(ok, "OK");
    let mut two = redis::Client::open("redis://127.0.0.1:6382/")
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap();
    let got: String = redis::cmd("GET").arg("greeting").query(&mut two).unwrap();
    assert_eq!(got, "hello");

    // rabia-kv status --resp 127.0.0.1:6381
    let status = Command::new(env!("CARGO_BIN_EXE_rabia-kv"))
        .args(["status", "--resp", "127.0.0.1:6381"])
        .output()
        .unwrap();
    assert!(status.status.success());
    let report = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(report.contains("node 1 at 127.0.0.1:6381"), "{report}");
    assert!(report.contains("quorum=ok"), "{report}");
    let applied: u64 = report
        .split("applied=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(applied >= 2, "the SET and the GET are applied: {report}");

    // Ctrl-C stops the cluster.
    let cluster = &mut guard.0;
    kill(Pid::from_raw(cluster.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = cluster.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "local-cluster did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(exit.success(), "exit {exit}; output: {rest:?}");
    assert!(rest.iter().any(|l| l.starts_with("stopped;")), "{rest:?}");
    // Every node shut down cleanly (its log says so).
    for node in 1..=3 {
        let log = std::fs::read_to_string(dir.path().join(format!("node-{node}.log"))).unwrap();
        assert!(log.contains("engine shut down"), "node {node} log:\n{log}");
    }
}

/// Stops the local cluster (SIGINT, as Ctrl-C) if the test fails midway.
struct StopOnDrop(std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGINT);
            let _ = self.0.wait();
        }
    }
}
