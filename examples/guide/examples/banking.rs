//! The guide's banking state machine, replicated on a 3-node cluster.
//!
//! `cargo run --example banking`
//!
//! Clients on every replica move money between ten accounts concurrently
//! (some transfers fail for insufficient funds, deterministically on every
//! replica). Money is conserved and every replica ends with the same books.

use rabia_core::Operation;
use rabia_engine::RabiaConfig;
use rabia_examples::banking::{BankingOperation, BankingResult, BankingSMR};
use rabia_examples::{start_cluster, wait_converged};
use std::collections::BTreeMap;
use std::process::ExitCode;

const ACCOUNTS: u64 = 10;
const INITIAL: u64 = 1_000;
const CLIENTS: u64 = 6;
const TRANSFERS: u64 = 200;

fn op(o: &BankingOperation) -> Result<Operation, String> {
    bincode::serialize(o)
        .map(Operation::new)
        .map_err(|e| e.to_string())
}

fn account(i: u64) -> String {
    format!("acct-{i:02}")
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let replicas = start_cluster(3, RabiaConfig::default(), BankingSMR::new);
    for i in 0..ACCOUNTS {
        let create = BankingOperation::CreateAccount {
            account_id: account(i),
            initial_balance: INITIAL,
        };
        replicas[(i % 3) as usize]
            .handle
            .submit(op(&create)?)
            .await?;
    }
    println!("opened {ACCOUNTS} accounts with {INITIAL} each");

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let handle = replicas[(c % 3) as usize].handle.clone();
        clients.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0u64, 0u64);
            let mut x = c * 7919 + 1; // a small deterministic generator per client
            for _ in 0..TRANSFERS {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let from = (x >> 33) % ACCOUNTS;
                let to = (from + 1 + (x >> 45) % (ACCOUNTS - 1)) % ACCOUNTS;
                let amount = 1 + (x >> 20) % 400;
                let transfer = BankingOperation::Transfer {
                    from: account(from),
                    to: account(to),
                    amount,
                };
                let reply = handle
                    .submit(op(&transfer)?)
                    .await
                    .map_err(|e| e.to_string())?;
                match bincode::deserialize::<BankingResult>(&reply).map_err(|e| e.to_string())? {
                    BankingResult::Success(_) => ok += 1,
                    _ => refused += 1,
                }
            }
            Ok::<(u64, u64), String>((ok, refused))
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for client in clients {
        let (o, r) = client.await??;
        ok += o;
        refused += r;
    }
    println!("{ok} transfers done, {refused} refused (insufficient funds)");

    let all = replicas[2]
        .handle
        .read(op(&BankingOperation::GetAllAccounts)?)
        .await?;
    if let BankingResult::AllAccounts(accounts) = bincode::deserialize(&all)? {
        let sorted: BTreeMap<_, _> = accounts.into_iter().collect();
        println!("balances (linearizable read via replica 3): {sorted:?}");
    }

    wait_converged(&replicas).await;
    let mut books = Vec::new();
    for replica in &replicas {
        let accounts: BTreeMap<String, u64> = replica
            .reader
            .read_local(|b: &BankingSMR| b.accounts.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .await?;
        let total: u64 = accounts.values().sum();
        println!(
            "replica {}: {} accounts, total {total}",
            replica.id,
            accounts.len()
        );
        books.push(accounts);
    }
    for replica in &replicas {
        replica.handle.shutdown();
    }
    let conserved = books
        .iter()
        .all(|b| b.values().sum::<u64>() == ACCOUNTS * INITIAL);
    let identical = books.windows(2).all(|w| w[0] == w[1]);
    if conserved && identical {
        println!("OK: all replicas hold identical books and money is conserved");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("MISMATCH: conserved={conserved} identical={identical}");
        Ok(ExitCode::FAILURE)
    }
}
