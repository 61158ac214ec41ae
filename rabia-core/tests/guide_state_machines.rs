//! The developer guide's state machines and unit tests
//! (`shared/seeds/001_4203f395dee7a848.txt`, "Building Your First SMR
//! Application", "Advanced SMR Patterns" and "Unit Testing State Machines").
//!
//! The code between the `BEGIN GUIDE` / `END GUIDE` markers is copied from the
//! guide byte for byte (a test below checks that), so the guide's examples keep
//! compiling against this crate. Only the `use` lines the guide elides are
//! added around them.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::new_without_default,
    dead_code,
    missing_docs,
    unreachable_pub
)]

#[rustfmt::skip]
mod counter {
// BEGIN GUIDE (Step 1)
use serde::{Serialize, Deserialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CounterOperation {
    Increment,
    Decrement,
    Get,
    Set(i64),
}
// END GUIDE
// BEGIN GUIDE (Step 2)
use rabia_core::smr::{StateMachine, Operation, OperationResult};
use async_trait::async_trait;

pub struct CounterSMR {
    value: i64,
}

impl CounterSMR {
    pub fn new() -> Self {
        Self { value: 0 }
    }
}

#[async_trait]
impl StateMachine for CounterSMR {
    async fn apply_operation(&mut self, op: &Operation) -> OperationResult {
        // Deserialize the operation
        let counter_op: CounterOperation = bincode::deserialize(&op.data)
            .map_err(|e| format!("Failed to deserialize operation: {}", e))?;
        
        // Apply operation deterministically
        let result = match counter_op {
            CounterOperation::Increment => {
                self.value += 1;
                self.value
            }
            CounterOperation::Decrement => {
                self.value -= 1;
                self.value
            }
            CounterOperation::Get => self.value,
            CounterOperation::Set(new_value) => {
                self.value = new_value;
                self.value
            }
        };
        
        // Return serialized result
        Ok(bincode::serialize(&result)
            .map_err(|e| format!("Failed to serialize result: {}", e))?)
    }
    
    async fn snapshot(&self) -> OperationResult {
        Ok(bincode::serialize(&self.value)
            .map_err(|e| format!("Failed to serialize snapshot: {}", e))?)
    }
    
    async fn restore_from_snapshot(&mut self, data: &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.value = bincode::deserialize(data)?;
        Ok(())
    }
}
// END GUIDE

// BEGIN GUIDE (Unit Testing State Machines)
#[cfg(test)]
mod tests {
    use super::*;
    use rabia_core::smr::Operation;
    
    #[tokio::test]
    async fn test_counter_operations() {
        let mut counter = CounterSMR::new();
        
        // Test increment
        let increment_op = Operation::new(bincode::serialize(&CounterOperation::Increment).unwrap());
        let result = counter.apply_operation(&increment_op).await.unwrap();
        let value: i64 = bincode::deserialize(&result).unwrap();
        assert_eq!(value, 1);
        
        // Test decrement
        let decrement_op = Operation::new(bincode::serialize(&CounterOperation::Decrement).unwrap());
        let result = counter.apply_operation(&decrement_op).await.unwrap();
        let value: i64 = bincode::deserialize(&result).unwrap();
        assert_eq!(value, 0);
        
        // Test determinism - same operation should produce same result
        let get_op = Operation::new(bincode::serialize(&CounterOperation::Get).unwrap());
        let result1 = counter.apply_operation(&get_op).await.unwrap();
        let result2 = counter.apply_operation(&get_op).await.unwrap();
        assert_eq!(result1, result2);
    }
    
    #[tokio::test]
    async fn test_snapshot_restore() {
        let mut counter1 = CounterSMR::new();
        counter1.value = 42;
        
        // Create snapshot
        let snapshot = counter1.snapshot().await.unwrap();
        
        // Restore to new instance
        let mut counter2 = CounterSMR::new();
        counter2.restore_from_snapshot(&snapshot).await.unwrap();
        
        assert_eq!(counter1.value, counter2.value);
    }
}
// END GUIDE
}

#[rustfmt::skip]
mod banking {
use rabia_core::smr::{StateMachine, Operation, OperationResult};
use async_trait::async_trait;
// BEGIN GUIDE (Banking System Example)
use serde::{Serialize, Deserialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BankingOperation {
    CreateAccount { account_id: String, initial_balance: u64 },
    Deposit { account_id: String, amount: u64 },
    Withdraw { account_id: String, amount: u64 },
    Transfer { from: String, to: String, amount: u64 },
    GetBalance { account_id: String },
    GetAllAccounts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BankingResult {
    Success(String),
    Balance(u64),
    AllAccounts(HashMap<String, u64>),
    Error(String),
}

pub struct BankingSMR {
    accounts: HashMap<String, u64>,
}

impl BankingSMR {
    pub fn new() -> Self {
        Self {
            accounts: HashMap::new(),
        }
    }
}

#[async_trait]
impl StateMachine for BankingSMR {
    async fn apply_operation(&mut self, op: &Operation) -> OperationResult {
        let banking_op: BankingOperation = bincode::deserialize(&op.data)
            .map_err(|e| format!("Failed to deserialize operation: {}", e))?;
        
        let result = match banking_op {
            BankingOperation::CreateAccount { account_id, initial_balance } => {
                if self.accounts.contains_key(&account_id) {
                    BankingResult::Error("Account already exists".to_string())
                } else {
                    self.accounts.insert(account_id.clone(), initial_balance);
                    BankingResult::Success(format!("Account {} created", account_id))
                }
            }
            
            BankingOperation::Deposit { account_id, amount } => {
                match self.accounts.get_mut(&account_id) {
                    Some(balance) => {
                        *balance += amount;
                        BankingResult::Success(format!("Deposited {} to {}", amount, account_id))
                    }
                    None => BankingResult::Error("Account not found".to_string()),
                }
            }
            
            BankingOperation::Withdraw { account_id, amount } => {
                match self.accounts.get_mut(&account_id) {
                    Some(balance) => {
                        if *balance >= amount {
                            *balance -= amount;
                            BankingResult::Success(format!("Withdrew {} from {}", amount, account_id))
                        } else {
                            BankingResult::Error("Insufficient funds".to_string())
                        }
                    }
                    None => BankingResult::Error("Account not found".to_string()),
                }
            }
            
            BankingOperation::Transfer { from, to, amount } => {
                // Check source account
                let source_balance = match self.accounts.get(&from) {
                    Some(balance) if *balance >= amount => *balance,
                    Some(_) => return Ok(bincode::serialize(&BankingResult::Error("Insufficient funds".to_string()))?),
                    None => return Ok(bincode::serialize(&BankingResult::Error("Source account not found".to_string()))?),
                };
                
                // Check destination account
                if !self.accounts.contains_key(&to) {
                    return Ok(bincode::serialize(&BankingResult::Error("Destination account not found".to_string()))?);
                }
                
                // Perform transfer
                *self.accounts.get_mut(&from).unwrap() = source_balance - amount;
                *self.accounts.get_mut(&to).unwrap() += amount;
                
                BankingResult::Success(format!("Transferred {} from {} to {}", amount, from, to))
            }
            
            BankingOperation::GetBalance { account_id } => {
                match self.accounts.get(&account_id) {
                    Some(balance) => BankingResult::Balance(*balance),
                    None => BankingResult::Error("Account not found".to_string()),
                }
            }
            
            BankingOperation::GetAllAccounts => {
                BankingResult::AllAccounts(self.accounts.clone())
            }
        };
        
        Ok(bincode::serialize(&result)
            .map_err(|e| format!("Failed to serialize result: {}", e))?)
    }
    
    async fn snapshot(&self) -> OperationResult {
        Ok(bincode::serialize(&self.accounts)
            .map_err(|e| format!("Failed to serialize snapshot: {}", e))?)
    }
    
    async fn restore_from_snapshot(&mut self, data: &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.accounts = bincode::deserialize(data)?;
        Ok(())
    }
}
// END GUIDE

    #[tokio::test]
    async fn banking_transfers_and_errors() {
        let mut bank = BankingSMR::new();
        let run = |op: BankingOperation| Operation::new(bincode::serialize(&op).unwrap());
        let create = |id: &str, b: u64| run(BankingOperation::CreateAccount { account_id: id.into(), initial_balance: b });
        bank.apply_operation(&create("alice", 100)).await.unwrap();
        bank.apply_operation(&create("bob", 5)).await.unwrap();
        let dup: BankingResult = bincode::deserialize(&bank.apply_operation(&create("bob", 1)).await.unwrap()).unwrap();
        assert!(matches!(dup, BankingResult::Error(_)));
        let t = run(BankingOperation::Transfer { from: "alice".into(), to: "bob".into(), amount: 40 });
        let ok: BankingResult = bincode::deserialize(&bank.apply_operation(&t).await.unwrap()).unwrap();
        assert!(matches!(ok, BankingResult::Success(_)));
        let too_much = run(BankingOperation::Withdraw { account_id: "bob".into(), amount: 1_000 });
        let err: BankingResult = bincode::deserialize(&bank.apply_operation(&too_much).await.unwrap()).unwrap();
        assert!(matches!(err, BankingResult::Error(_)));
        let all: BankingResult = bincode::deserialize(&bank.apply_operation(&run(BankingOperation::GetAllAccounts)).await.unwrap()).unwrap();
        match all {
            BankingResult::AllAccounts(map) => {
                assert_eq!(map["alice"], 60);
                assert_eq!(map["bob"], 45);
            }
            other => panic!("unexpected {other:?}"),
        }
        let snap = bank.snapshot().await.unwrap();
        let mut restored = BankingSMR::new();
        restored.restore_from_snapshot(&snap).await.unwrap();
        assert_eq!(restored.accounts, bank.accounts);
        // Garbage operations are errors, not panics.
        assert!(bank.apply_operation(&Operation::new(vec![0xFF; 3])).await.is_err());
    }
}

#[rustfmt::skip]
mod kv {
use rabia_core::smr::{StateMachine, Operation, OperationResult};
use async_trait::async_trait;
use serde::{Serialize, Deserialize};
use std::collections::HashMap;
// BEGIN GUIDE (Key-Value Store with Transactions)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum KVOperation {
    Get { key: String },
    Set { key: String, value: Vec<u8> },
    Delete { key: String },
    Transaction { ops: Vec<KVOperation> },
    ListKeys,
}

pub struct KVStoreSMR {
    data: HashMap<String, Vec<u8>>,
}

#[async_trait]
impl StateMachine for KVStoreSMR {
    async fn apply_operation(&mut self, op: &Operation) -> OperationResult {
        let kv_op: KVOperation = bincode::deserialize(&op.data)?;
        
        let result = match kv_op {
            KVOperation::Get { key } => {
                self.data.get(&key).cloned().unwrap_or_default()
            }
            
            KVOperation::Set { key, value } => {
                self.data.insert(key, value.clone());
                b"OK".to_vec()
            }
            
            KVOperation::Delete { key } => {
                self.data.remove(&key);
                b"OK".to_vec()
            }
            
            KVOperation::Transaction { ops } => {
                // Apply all operations atomically
                let mut temp_state = self.data.clone();
                let mut results = Vec::new();
                
                for tx_op in ops {
                    match tx_op {
                        KVOperation::Set { key, value } => {
                            temp_state.insert(key, value);
                            results.push(b"OK".to_vec());
                        }
                        KVOperation::Delete { key } => {
                            temp_state.remove(&key);
                            results.push(b"OK".to_vec());
                        }
                        // Transactions of transactions not supported
                        _ => return Ok(b"Invalid transaction operation".to_vec()),
                    }
                }
                
                // Commit transaction
                self.data = temp_state;
                bincode::serialize(&results)?
            }
            
            KVOperation::ListKeys => {
                let keys: Vec<String> = self.data.keys().cloned().collect();
                bincode::serialize(&keys)?
            }
        };
        
        Ok(result)
    }
    
    async fn snapshot(&self) -> OperationResult {
        Ok(bincode::serialize(&self.data)?)
    }
    
    async fn restore_from_snapshot(&mut self, data: &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.data = bincode::deserialize(data)?;
        Ok(())
    }
}
// END GUIDE

    #[tokio::test]
    async fn kv_transactions_apply_atomically() {
        let mut kv = KVStoreSMR { data: HashMap::new() };
        let op = |o: KVOperation| Operation::new(bincode::serialize(&o).unwrap());
        kv.apply_operation(&op(KVOperation::Set { key: "a".into(), value: b"1".to_vec() })).await.unwrap();
        let tx = KVOperation::Transaction { ops: vec![
            KVOperation::Set { key: "b".into(), value: b"2".to_vec() },
            KVOperation::Delete { key: "a".into() },
        ]};
        let results: Vec<Vec<u8>> = bincode::deserialize(&kv.apply_operation(&op(tx)).await.unwrap()).unwrap();
        assert_eq!(results, vec![b"OK".to_vec(), b"OK".to_vec()]);
        assert_eq!(kv.apply_operation(&op(KVOperation::Get { key: "b".into() })).await.unwrap(), b"2");
        assert_eq!(kv.apply_operation(&op(KVOperation::Get { key: "a".into() })).await.unwrap(), b"");
        // A nested transaction is refused and changes nothing.
        let bad = KVOperation::Transaction { ops: vec![
            KVOperation::Set { key: "c".into(), value: vec![] },
            KVOperation::ListKeys,
        ]};
        assert_eq!(kv.apply_operation(&op(bad)).await.unwrap(), b"Invalid transaction operation");
        let keys: Vec<String> = bincode::deserialize(&kv.apply_operation(&op(KVOperation::ListKeys)).await.unwrap()).unwrap();
        assert_eq!(keys, vec!["b".to_string()]);
        let snap = kv.snapshot().await.unwrap();
        let mut restored = KVStoreSMR { data: HashMap::new() };
        restored.restore_from_snapshot(&snap).await.unwrap();
        assert_eq!(restored.data, kv.data);
        assert!(kv.apply_operation(&Operation::new(vec![9, 9, 9, 9, 9])).await.is_err());
    }
}

/// The blocks above must stay identical to the guide.
#[test]
fn guide_blocks_are_verbatim() {
    let this_file = include_str!("guide_state_machines.rs");
    let guide = include_str!("guide/developer-guide.md");
    let marker = ["fn guide_blocks", "_are_verbatim"].concat();
    let mut rest = &this_file[..this_file.find(&marker).unwrap()];
    let mut blocks = 0;
    while let Some(start) = rest.find("// BEGIN GUIDE") {
        let after = &rest[start..];
        let body_start = after.find('\n').unwrap() + 1;
        let end = after.find("// END GUIDE").unwrap();
        let body = &after[body_start..end];
        assert!(
            guide.contains(body),
            "block {blocks} differs from the guide"
        );
        blocks += 1;
        rest = &after[end + 1..];
    }
    assert_eq!(blocks, 5);
}
