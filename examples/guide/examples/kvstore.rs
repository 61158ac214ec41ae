//! The guide's key-value store with transactions, replicated on 3 nodes.
//!
//! `cargo run --example kvstore`
//!
//! Clients set, read, delete and run multi-key transactions concurrently;
//! every replica ends with the same data.

use rabia_core::Operation;
use rabia_engine::RabiaConfig;
use rabia_examples::kv::{KVOperation, KVStoreSMR};
use rabia_examples::{start_cluster, wait_converged};
use std::collections::BTreeMap;
use std::process::ExitCode;

const CLIENTS: usize = 6;
const ROUNDS: usize = 100;

fn op(o: KVOperation) -> Result<Operation, String> {
    bincode::serialize(&o)
        .map(Operation::new)
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let replicas = start_cluster(3, RabiaConfig::default(), KVStoreSMR::new);
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let handle = replicas[c % 3].handle.clone();
        clients.push(tokio::spawn(async move {
            let mut reads_ok = 0;
            for r in 0..ROUNDS {
                let key = format!("client{c}/key{}", r % 10);
                let value = format!("{c}:{r}").into_bytes();
                handle
                    .submit(op(KVOperation::Set {
                        key: key.clone(),
                        value: value.clone(),
                    })?)
                    .await
                    .map_err(|e| e.to_string())?;
                let read = handle
                    .read(op(KVOperation::Get { key: key.clone() })?)
                    .await
                    .map_err(|e| e.to_string())?;
                if read == value {
                    reads_ok += 1;
                }
                if r % 10 == 9 {
                    // Atomically move this client's keys under a new prefix.
                    let tx = KVOperation::Transaction {
                        ops: vec![
                            KVOperation::Set {
                                key: format!("client{c}/checkpoint"),
                                value: format!("{r}").into_bytes(),
                            },
                            KVOperation::Delete {
                                key: format!("client{c}/key0"),
                            },
                        ],
                    };
                    handle.submit(op(tx)?).await.map_err(|e| e.to_string())?;
                }
            }
            Ok::<usize, String>(reads_ok)
        }));
    }
    for (c, client) in clients.into_iter().enumerate() {
        let reads_ok = client.await??;
        println!("client {c}: {ROUNDS} writes, {reads_ok}/{ROUNDS} reads saw the client's own latest write");
    }
    let keys = replicas[0].handle.read(op(KVOperation::ListKeys)?).await?;
    let keys: Vec<String> = bincode::deserialize(&keys)?;
    println!("{} keys in the store", keys.len());

    wait_converged(&replicas).await;
    let mut states = Vec::new();
    for replica in &replicas {
        let data: BTreeMap<String, Vec<u8>> = replica
            .reader
            .read_local(|kv: &KVStoreSMR| {
                kv.data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .await?;
        println!("replica {}: {} keys", replica.id, data.len());
        states.push(data);
    }
    for replica in &replicas {
        replica.handle.shutdown();
    }
    if states.windows(2).all(|w| w[0] == w[1]) && states[0].len() == keys.len() {
        println!("OK: all replicas hold the same {} keys", keys.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("MISMATCH between replicas");
        Ok(ExitCode::FAILURE)
    }
}
