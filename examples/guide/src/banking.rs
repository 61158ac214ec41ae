//! The guide's banking state machine ("Banking System Example"), as written there.
//! Public state fields (and `KVStoreSMR::new`) are the only additions, so
//! the examples can compare replicas' states.
#![allow(missing_docs, clippy::unwrap_used)]
use async_trait::async_trait;
use rabia_core::smr::{Operation, OperationResult, StateMachine};
use serde::{Deserialize, Serialize};
#[allow(clippy::disallowed_types)]
use std::collections::HashMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BankingOperation {
    CreateAccount {
        account_id: String,
        initial_balance: u64,
    },
    Deposit {
        account_id: String,
        amount: u64,
    },
    Withdraw {
        account_id: String,
        amount: u64,
    },
    Transfer {
        from: String,
        to: String,
        amount: u64,
    },
    GetBalance {
        account_id: String,
    },
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
    pub accounts: HashMap<String, u64>,
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
            BankingOperation::CreateAccount {
                account_id,
                initial_balance,
            } => {
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
                            BankingResult::Success(format!(
                                "Withdrew {} from {}",
                                amount, account_id
                            ))
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
                    Some(_) => {
                        return Ok(bincode::serialize(&BankingResult::Error(
                            "Insufficient funds".to_string(),
                        ))?)
                    }
                    None => {
                        return Ok(bincode::serialize(&BankingResult::Error(
                            "Source account not found".to_string(),
                        ))?)
                    }
                };

                // Check destination account
                if !self.accounts.contains_key(&to) {
                    return Ok(bincode::serialize(&BankingResult::Error(
                        "Destination account not found".to_string(),
                    ))?);
                }

                // Perform transfer
                *self.accounts.get_mut(&from).unwrap() = source_balance - amount;
                *self.accounts.get_mut(&to).unwrap() += amount;

                BankingResult::Success(format!("Transferred {} from {} to {}", amount, from, to))
            }

            BankingOperation::GetBalance { account_id } => match self.accounts.get(&account_id) {
                Some(balance) => BankingResult::Balance(*balance),
                None => BankingResult::Error("Account not found".to_string()),
            },

            BankingOperation::GetAllAccounts => BankingResult::AllAccounts(self.accounts.clone()),
        };

        Ok(
            bincode::serialize(&result)
                .map_err(|e| format!("Failed to serialize result: {}", e))?,
        )
    }

    async fn snapshot(&self) -> OperationResult {
        Ok(bincode::serialize(&self.accounts)
            .map_err(|e| format!("Failed to serialize snapshot: {}", e))?)
    }

    async fn restore_from_snapshot(
        &mut self,
        data: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.accounts = bincode::deserialize(data)?;
        Ok(())
    }
}
