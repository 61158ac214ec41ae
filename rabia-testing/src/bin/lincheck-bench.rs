//! `lincheck-bench`: times the linearizability checker on a simulated
//! history.
//!
//! ```text
//! cargo run --release -p rabia-testing --bin lincheck-bench -- [--seed 1] [--ops 10000] [--clients 10] [--keys 8] [--mutate]
//! ```
//!
//! Generates a linearizable history (simulated clients of an atomic store,
//! reads, writes and compare-and-sets, ~1% indeterminate, ~0.5% failed)
//! from the seed, checks it, and prints the seed, the sizes, the wall time
//! and the verdict. With `--mutate`, the middle completed read is changed to
//! return a value never written, so the verdict must be a violation.
//! Exits non-zero unless the verdict is the expected one.

use rabia_testing::linearizability::{
    check, simulate, CheckResult, Event, History, KvResult, Outcome, SimulationConfig,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::process::ExitCode;
use std::time::Instant;

fn usage() -> &'static str {
    "usage: lincheck-bench [--seed S] [--ops N] [--clients C] [--keys K] [--mutate]"
}

struct Args {
    seed: u64,
    config: SimulationConfig,
    mutate: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut seed = 1;
    let mut mutate = false;
    let mut config = SimulationConfig {
        operations: 10_000,
        clients: 10,
        keys: 8,
        values: 1_000_000,
        indeterminate_per_mille: 10,
        failed_per_mille: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--mutate" {
            mutate = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{}", usage()))?;
        let number = value
            .parse::<u64>()
            .map_err(|e| format!("bad {flag} {value:?}: {e}"))?;
        match flag.as_str() {
            "--seed" => seed = number,
            "--ops" => config.operations = usize::try_from(number).map_err(|e| e.to_string())?,
            "--clients" => config.clients = number.max(1),
            "--keys" => config.keys = u32::try_from(number.max(1)).map_err(|e| e.to_string())?,
            other => return Err(format!("unknown flag {other:?}\n{}", usage())),
        }
    }
    Ok(Args {
        seed,
        config,
        mutate,
    })
}

/// `history` with its middle completed read returning a value never
/// written, or `None` if it has no completed read.
fn mutated(history: &History) -> Option<History> {
    let mut events = history.events();
    let reads: Vec<usize> = (0..events.len())
        .filter(|&i| {
            matches!(
                events.get(i),
                Some(Event::Complete {
                    result: KvResult::Read(_),
                    ..
                })
            )
        })
        .collect();
    let target = events.get_mut(*reads.get(reads.len() / 2)?)?;
    *target = Event::Complete {
        id: target.id(),
        result: KvResult::Read(Some("never-written".into())),
    };
    Some(History::from_events(events))
}

fn main() -> ExitCode {
    let Args {
        seed,
        config,
        mutate,
    } = match parse_args() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    println!("seed {seed}");
    let started = Instant::now();
    let mut history = simulate(&config, &mut ChaCha8Rng::seed_from_u64(seed));
    if mutate {
        match mutated(&history) {
            Some(m) => history = m,
            None => {
                eprintln!("--mutate: the history has no completed read");
                return ExitCode::from(2);
            }
        }
    }
    let generated = started.elapsed();
    let (mut indeterminate, mut failed, mut ops) = (0, 0, 0);
    if let Ok(operations) = history.operations() {
        ops = operations.len();
        for op in &operations {
            match op.outcome {
                Outcome::Indeterminate => indeterminate += 1,
                Outcome::Failed { .. } => failed += 1,
                Outcome::Completed { .. } => {}
            }
        }
    }
    println!(
        "ops {ops} ({indeterminate} indeterminate, {failed} failed), clients {}, keys {}, events {}, generated in {generated:.2?}",
        config.clients,
        config.keys,
        history.len()
    );
    let started = Instant::now();
    let result = check(&history);
    let elapsed = started.elapsed();
    println!("check: {elapsed:.2?}");
    println!("verdict: {result}");
    let expected = match result {
        CheckResult::Linearizable => !mutate,
        CheckResult::NotLinearizable { .. } => mutate,
        CheckResult::Unknown { .. } | CheckResult::Invalid(_) => false,
    };
    if expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
