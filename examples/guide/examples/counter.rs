//! The guide's counter, replicated on a 3-node cluster in one process.
//!
//! `cargo run --example counter`
//!
//! Eight concurrent clients, spread over the three replicas, increment and
//! decrement the counter; every reply is the counter's value at that point in
//! the log. At the end every replica must hold the same value.

use rabia_core::Operation;
use rabia_engine::RabiaConfig;
use rabia_examples::counter::{CounterOperation, CounterSMR};
use rabia_examples::{start_cluster, wait_converged};
use std::process::ExitCode;
use std::time::Instant;

const CLIENTS: usize = 8;
const INCREMENTS: usize = 250;
const DECREMENTS: usize = 50;

fn op(o: &CounterOperation) -> Result<Operation, Box<dyn std::error::Error>> {
    Ok(Operation::new(bincode::serialize(o)?))
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let replicas = start_cluster(3, RabiaConfig::default(), CounterSMR::new);
    println!(
        "started a 3-node Rabia cluster: {:?}",
        replicas.iter().map(|r| r.id).collect::<Vec<_>>()
    );

    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let handle = replicas[c % replicas.len()].handle.clone();
        clients.push(tokio::spawn(async move {
            let mut last = 0i64;
            for i in 0..INCREMENTS + DECREMENTS {
                let o = if i % 6 == 5 {
                    CounterOperation::Decrement
                } else {
                    CounterOperation::Increment
                };
                let reply = handle
                    .submit(op(&o).map_err(|e| e.to_string())?)
                    .await
                    .map_err(|e| e.to_string())?;
                last = bincode::deserialize(&reply).map_err(|e| e.to_string())?;
            }
            Ok::<i64, String>(last)
        }));
    }
    for (c, client) in clients.into_iter().enumerate() {
        let last = client.await??;
        println!(
            "client {c}: {} operations, last reply {last}",
            INCREMENTS + DECREMENTS
        );
    }
    let elapsed = started.elapsed();
    let total = CLIENTS * (INCREMENTS + DECREMENTS);
    println!(
        "{total} operations in {elapsed:.2?} ({:.0} ops/s)",
        total as f64 / elapsed.as_secs_f64()
    );

    let get = replicas[1].handle.read(op(&CounterOperation::Get)?).await?;
    let linearizable: i64 = bincode::deserialize(&get)?;
    println!("linearizable read through replica 2: {linearizable}");

    wait_converged(&replicas).await;
    let expected = (CLIENTS * (INCREMENTS - DECREMENTS)) as i64;
    let mut values = Vec::new();
    for replica in &replicas {
        let value = replica.reader.read_local(|c: &CounterSMR| c.value).await?;
        println!("replica {}: counter = {value}", replica.id);
        values.push(value);
    }
    for replica in &replicas {
        replica.handle.shutdown();
    }
    if values.iter().all(|v| *v == expected) && linearizable == expected {
        println!("OK: all {} replicas agree on {expected}", values.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("MISMATCH: expected {expected} everywhere, got {values:?}");
        Ok(ExitCode::FAILURE)
    }
}
