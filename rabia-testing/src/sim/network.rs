//! The simulated network: latency with a tail (which also reorders), loss,
//! duplication and directed link blocking (partitions).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::time::Duration;

/// Parameters of the network model.
#[derive(Clone, Debug)]
pub struct NetworkModel {
    /// Minimum one-way latency.
    pub base_latency: Duration,
    /// Uniform extra latency in `[0, jitter)`.
    pub jitter: Duration,
    /// Probability that a message takes the slow tail.
    pub tail_probability: f64,
    /// Maximum extra latency of a tail message.
    pub tail_latency: Duration,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplication: f64,
    /// Directed links `(from, to)` that currently drop everything.
    blocked: BTreeSet<(usize, usize)>,
}

impl Default for NetworkModel {
    fn default() -> Self {
        NetworkModel {
            base_latency: Duration::from_micros(100),
            jitter: Duration::from_micros(200),
            tail_probability: 0.0,
            tail_latency: Duration::ZERO,
            loss: 0.0,
            duplication: 0.0,
            blocked: BTreeSet::new(),
        }
    }
}

/// What happened to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered after each of these delays (two entries: duplicated).
    Deliver(Vec<Duration>),
    /// Dropped by random loss.
    Lost,
    /// Dropped by a partition.
    Blocked,
}

impl NetworkModel {
    /// Decides the fate of a message from `from` to `to`.
    pub fn fate(&self, rng: &mut ChaCha8Rng, from: usize, to: usize) -> Fate {
        if self.blocked.contains(&(from, to)) {
            return Fate::Blocked;
        }
        if self.loss > 0.0 && rng.gen_bool(self.loss.min(1.0)) {
            return Fate::Lost;
        }
        let copies = if self.duplication > 0.0 && rng.gen_bool(self.duplication.min(1.0)) {
            2
        } else {
            1
        };
        Fate::Deliver((0..copies).map(|_| self.latency(rng)).collect())
    }

    fn latency(&self, rng: &mut ChaCha8Rng) -> Duration {
        let mut nanos = self.base_latency.as_nanos() as u64;
        let jitter = self.jitter.as_nanos() as u64;
        if jitter > 0 {
            nanos += rng.gen_range(0..jitter);
        }
        let tail = self.tail_latency.as_nanos() as u64;
        if tail > 0 && self.tail_probability > 0.0 && rng.gen_bool(self.tail_probability.min(1.0)) {
            nanos += rng.gen_range(0..tail);
        }
        Duration::from_nanos(nanos)
    }

    /// Blocks the directed link `from → to`.
    pub fn block(&mut self, from: usize, to: usize) {
        if from != to {
            self.blocked.insert((from, to));
        }
    }

    /// Unblocks every link.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Number of blocked directed links.
    pub fn blocked_links(&self) -> usize {
        self.blocked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn blocked_links_drop_and_heal_restores() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut net = NetworkModel::default();
        net.block(0, 1);
        assert_eq!(net.fate(&mut rng, 0, 1), Fate::Blocked);
        assert!(matches!(net.fate(&mut rng, 1, 0), Fate::Deliver(_)));
        net.heal();
        assert!(matches!(net.fate(&mut rng, 0, 1), Fate::Deliver(_)));
    }

    #[test]
    fn loss_and_duplication_rates_are_roughly_right() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let net = NetworkModel {
            loss: 0.2,
            duplication: 0.1,
            ..NetworkModel::default()
        };
        let (mut lost, mut dup) = (0, 0);
        for _ in 0..10_000 {
            match net.fate(&mut rng, 0, 1) {
                Fate::Lost => lost += 1,
                Fate::Deliver(d) if d.len() == 2 => dup += 1,
                _ => {}
            }
        }
        assert!((1_800..2_200).contains(&lost), "lost {lost}");
        assert!((600..1_000).contains(&dup), "dup {dup}");
    }
}
