//! The checkers must be able to fail: deliberately broken protocol variants
//! run through the simulator and each must be caught.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rabia_core::protocol::Mutation;
use rabia_testing::checkers::ViolationKind;
use rabia_testing::sim::{run, SimConfig};

fn violations(
    mutation: Mutation,
    nodes: usize,
    seeds: std::ops::Range<u64>,
) -> Vec<(u64, ViolationKind)> {
    seeds
        .filter_map(|seed| {
            let mut config = SimConfig::new(seed, nodes);
            config.replica.mutation = mutation;
            config.liveness_budget = std::time::Duration::from_secs(5);
            run(config).violation.map(|v| (seed, v.kind))
        })
        .collect()
}

/// Runs `mutation` on 3 nodes over `seeds` and requires an agreement (or
/// convergence) violation among what the checkers report.
fn assert_breaks_agreement(label: &str, mutation: Mutation, seeds: std::ops::Range<u64>) {
    let found = violations(mutation, 3, seeds);
    println!("{label}: {found:?}");
    assert!(
        found
            .iter()
            .any(|(_, k)| matches!(k, ViolationKind::Agreement | ViolationKind::Convergence)),
        "no agreement violation found: {found:?}"
    );
}

#[test]
fn decision_threshold_one_below_f_plus_one_breaks_agreement() {
    assert_breaks_agreement(
        "decide-threshold-minus-one",
        Mutation::DecideThresholdMinusOne,
        1..200,
    );
}

#[test]
fn per_replica_coin_does_not_terminate() {
    let found = violations(Mutation::PerReplicaCoin, 5, 1..40);
    println!("per-replica-coin: {found:?}");
    assert!(
        found.iter().any(|(_, k)| *k == ViolationKind::Liveness),
        "no liveness violation found: {found:?}"
    );
}

#[test]
fn sending_before_persisting_equivocates_after_restart() {
    assert_breaks_agreement("send-before-persist", Mutation::SendBeforePersist, 1..120);
}

#[test]
fn delivering_before_own_votes_are_durable_is_caught() {
    assert_breaks_agreement(
        "deliver-before-votes-durable",
        Mutation::DeliverBeforeVotesDurable,
        // First caught at seeds 319 and 679 since slots carry several
        // batches (`rabia-sim --mutation deliver-before-votes-durable`).
        1..700,
    );
}

#[test]
fn taking_part_at_once_after_a_lost_store_is_caught() {
    // First caught at seed 159 (and 292) since unanimous slots send fewer
    // States and Votes to contradict (seed 5 before).
    assert_breaks_agreement("no-fresh-store-guard", Mutation::NoFreshStoreGuard, 1..300);
}

#[test]
fn deciding_on_a_quorum_of_equal_proposals_is_caught() {
    // The unanimity shortcut needs all n proposals; n − f of them do not
    // fix the outcome (first caught at seed 3).
    assert_breaks_agreement("unanimity-of-quorum", Mutation::UnanimityOfQuorum, 1..30);
}

#[test]
fn dropping_the_proposal_after_a_lost_slot_is_caught() {
    let found = violations(Mutation::NoRequeue, 3, 1..40);
    println!("no-requeue: {found:?}");
    assert!(!found.is_empty(), "no violation found");
}

#[test]
fn correct_protocol_passes_the_same_seeds() {
    let found = violations(Mutation::None, 3, 1..60);
    assert!(found.is_empty(), "{found:?}");
}
