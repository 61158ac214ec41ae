//! Per-sender tallies: one value per distinct sender, duplicates ignored,
//! conflicting values (equivocation) detected.

use crate::ids::NodeId;
use std::collections::BTreeMap;

/// The result of recording one sender's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// First value from this sender.
    New,
    /// The same value again (ignored).
    Duplicate,
    /// A different value from a sender that already sent one (ignored and
    /// reported: in a crash-fault system this means a broken peer).
    Conflict,
}

/// One value per distinct sender.
#[derive(Clone, Debug)]
pub struct Tally<V> {
    by_sender: BTreeMap<NodeId, V>,
}

impl<V> Default for Tally<V> {
    fn default() -> Self {
        Tally {
            by_sender: BTreeMap::new(),
        }
    }
}

impl<V: PartialEq + Clone> Tally<V> {
    /// Records `value` from `sender`.
    pub fn record(&mut self, sender: NodeId, value: V) -> Recorded {
        match self.by_sender.get(&sender) {
            None => {
                self.by_sender.insert(sender, value);
                Recorded::New
            }
            Some(existing) if *existing == value => Recorded::Duplicate,
            Some(_) => Recorded::Conflict,
        }
    }

    /// Number of distinct senders.
    pub fn len(&self) -> usize {
        self.by_sender.len()
    }

    /// Whether nobody has sent anything.
    pub fn is_empty(&self) -> bool {
        self.by_sender.is_empty()
    }

    /// How many senders sent a value matching `pred`.
    pub fn count(&self, pred: impl Fn(&V) -> bool) -> usize {
        self.by_sender.values().filter(|v| pred(v)).count()
    }

    /// The value from `sender`, if any.
    pub fn get(&self, sender: NodeId) -> Option<&V> {
        self.by_sender.get(&sender)
    }

    /// All values in sender order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.by_sender.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The tally agrees with a naive "first value per sender" model.
        #[test]
        fn tally_matches_naive_model(events in proptest::collection::vec((0u64..7, 0u8..3), 0..64)) {
            let mut tally = Tally::default();
            let mut model: Vec<(u64, u8)> = Vec::new();
            for (sender, value) in events {
                let outcome = tally.record(NodeId::from_u64(sender), value);
                match model.iter().find(|(s, _)| *s == sender) {
                    None => { prop_assert_eq!(outcome, Recorded::New); model.push((sender, value)); }
                    Some((_, v)) if *v == value => prop_assert_eq!(outcome, Recorded::Duplicate),
                    Some(_) => prop_assert_eq!(outcome, Recorded::Conflict),
                }
            }
            prop_assert_eq!(tally.len(), model.len());
            for probe in 0u8..3 {
                prop_assert_eq!(tally.count(|v| *v == probe), model.iter().filter(|(_, v)| *v == probe).count());
            }
        }
    }
}
