//! The guide's key-value state machine ("Key-Value Store with Transactions"), as written there.
//! Public state fields (and `KVStoreSMR::new`) are the only additions, so
//! the examples can compare replicas' states.
#![allow(missing_docs)]
use async_trait::async_trait;
use rabia_core::smr::{Operation, OperationResult, StateMachine};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum KVOperation {
    Get { key: String },
    Set { key: String, value: Vec<u8> },
    Delete { key: String },
    Transaction { ops: Vec<KVOperation> },
    ListKeys,
}

pub struct KVStoreSMR {
    pub data: HashMap<String, Vec<u8>>,
}

impl KVStoreSMR {
    pub fn new() -> Self {
        Self {
            data: HashMap::new(),
        }
    }
}

#[async_trait]
impl StateMachine for KVStoreSMR {
    async fn apply_operation(&mut self, op: &Operation) -> OperationResult {
        let kv_op: KVOperation = bincode::deserialize(&op.data)?;

        let result = match kv_op {
            KVOperation::Get { key } => self.data.get(&key).cloned().unwrap_or_default(),

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

    async fn restore_from_snapshot(
        &mut self,
        data: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.data = bincode::deserialize(data)?;
        Ok(())
    }
}
