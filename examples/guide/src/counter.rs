//! The guide's counter state machine ("Building Your First SMR Application"), as written there.
//! Public state fields (and `KVStoreSMR::new`) are the only additions, so
//! the examples can compare replicas' states.
#![allow(missing_docs)]
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CounterOperation {
    Increment,
    Decrement,
    Get,
    Set(i64),
}

use async_trait::async_trait;
use rabia_core::smr::{Operation, OperationResult, StateMachine};

pub struct CounterSMR {
    pub value: i64,
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
        Ok(
            bincode::serialize(&result)
                .map_err(|e| format!("Failed to serialize result: {}", e))?,
        )
    }

    async fn snapshot(&self) -> OperationResult {
        Ok(bincode::serialize(&self.value)
            .map_err(|e| format!("Failed to serialize snapshot: {}", e))?)
    }

    async fn restore_from_snapshot(
        &mut self,
        data: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.value = bincode::deserialize(data)?;
        Ok(())
    }
}
