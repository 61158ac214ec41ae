//! `rabia-chaos --duration 30 --seed S` in the suite: a real 3-process
//! cluster under SIGKILL/restart, SIGSTOP/SIGCONT and partitions, its
//! history checked for linearizability and its replicas for convergence.
//! Longer runs: docs/testing.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn thirty_seconds_of_chaos_stay_linearizable_and_converge() {
    let seed = std::env::var("RABIA_SEED").unwrap_or_else(|_| "20261122".into());
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rabia-chaos"))
        .args(["--duration", "30", "--seed", &seed])
        .arg("--kv-bin")
        .arg(env!("CARGO_BIN_EXE_rabia-kv"))
        .arg("--dir")
        .arg(dir.path().join("chaos"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "chaos run failed (seed {seed}):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
    assert!(stdout.contains("linearizability: linearizable"), "{stdout}");
    // The run did something: operations completed and faults were injected.
    let ok: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("operations: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(ok > 100, "only {ok} operations completed");
    assert!(
        stdout.contains("faults: ") && !stdout.contains("faults: \n"),
        "{stdout}"
    );
}
