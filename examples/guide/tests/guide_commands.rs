//! The guide's shell commands for the examples, run as written:
//! `cargo run --example counter`, `--example banking`, `--example kvstore`.
//! Each starts a 3-node cluster in one process and must end with its
//! "OK: all replicas ..." line (the example checks that every replica holds
//! the same state, and exits non-zero otherwise).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run_example(name: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args(["run", "-q", "-p", "rabia-examples", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cargo run --example {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_guide_examples_run_and_their_replicas_agree() {
    for name in ["counter", "banking", "kvstore"] {
        let stdout = run_example(name);
        assert!(
            stdout.lines().any(|l| l.starts_with("OK: all ")),
            "{name}:\n{stdout}"
        );
    }
}
