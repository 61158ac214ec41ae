use super::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex};

fn read(key: &str) -> KvOp {
    KvOp::Read { key: key.into() }
}

fn write(key: &str, value: &str) -> KvOp {
    KvOp::Write {
        key: key.into(),
        value: value.into(),
    }
}

fn cas(key: &str, expected: &str, new: &str) -> KvOp {
    KvOp::Cas {
        key: key.into(),
        expected: expected.into(),
        new: new.into(),
    }
}

fn inv(id: u64, client: u64, op: KvOp) -> Event {
    Event::Invoke {
        id: OpId(id),
        client,
        op,
    }
}

fn ok(id: u64, result: KvResult) -> Event {
    Event::Complete {
        id: OpId(id),
        result,
    }
}

fn done(id: u64) -> Event {
    ok(id, KvResult::Written)
}

fn saw(id: u64, value: Option<&str>) -> Event {
    ok(id, KvResult::Read(value.map(str::to_owned)))
}

fn swapped(id: u64, swapped: bool) -> Event {
    ok(id, KvResult::Cas(swapped))
}

fn fail(id: u64) -> Event {
    Event::Fail { id: OpId(id) }
}

fn timeout(id: u64) -> Event {
    Event::Timeout { id: OpId(id) }
}

fn verdict(events: Vec<Event>) -> CheckResult {
    check(&History::from_events(events))
}

#[track_caller]
fn assert_linearizable(events: Vec<Event>) {
    let result = verdict(events);
    assert_eq!(result, CheckResult::Linearizable, "{result}");
}

#[track_caller]
fn assert_violation(events: Vec<Event>, expected_key: &str) -> String {
    match verdict(events) {
        CheckResult::NotLinearizable { key, explanation } => {
            assert_eq!(key, expected_key, "{explanation}");
            explanation
        }
        other => panic!("expected a violation on {expected_key:?}, got {other}"),
    }
}

// ---- reads and writes ----

#[test]
fn empty_history_is_linearizable() {
    assert_linearizable(vec![]);
}

#[test]
fn sequential_write_then_read_is_linearizable() {
    assert_linearizable(vec![
        inv(0, 1, read("x")),
        saw(0, None),
        inv(1, 1, write("x", "a")),
        done(1),
        inv(2, 2, read("x")),
        saw(2, Some("a")),
    ]);
}

#[test]
fn stale_read_after_completed_write_is_not_linearizable() {
    assert_violation(
        vec![
            inv(0, 1, write("x", "a")),
            done(0),
            inv(1, 2, read("x")),
            saw(1, None),
        ],
        "x",
    );
    assert_violation(
        vec![
            inv(0, 1, write("x", "a")),
            done(0),
            inv(1, 1, write("x", "b")),
            done(1),
            inv(2, 2, read("x")),
            saw(2, Some("a")),
        ],
        "x",
    );
}

#[test]
fn read_concurrent_with_write_may_see_old_or_new_value() {
    for seen in [None, Some("a")] {
        assert_linearizable(vec![
            inv(0, 1, write("x", "a")),
            inv(1, 2, read("x")),
            saw(1, seen),
            done(0),
        ]);
    }
}

#[test]
fn read_of_value_never_written_is_not_linearizable() {
    assert_violation(
        vec![
            inv(0, 1, write("x", "a")),
            inv(1, 2, read("x")),
            saw(1, Some("z")),
            done(0),
        ],
        "x",
    );
}

#[test]
fn concurrent_writes_may_take_effect_in_either_order() {
    for last in ["a", "b"] {
        assert_linearizable(vec![
            inv(0, 1, write("x", "a")),
            inv(1, 2, write("x", "b")),
            done(1),
            done(0),
            inv(2, 3, read("x")),
            saw(2, Some(last)),
            inv(3, 4, read("x")),
            saw(3, Some(last)),
        ]);
    }
    // Concurrent readers may see the two writes in either order, as long as
    // some single order explains them: b, read b, a, read a.
    assert_linearizable(vec![
        inv(0, 1, write("x", "a")),
        inv(1, 2, write("x", "b")),
        inv(2, 3, read("x")),
        inv(3, 4, read("x")),
        saw(2, Some("b")),
        saw(3, Some("a")),
        done(0),
        done(1),
    ]);
}

#[test]
fn read_seeing_a_value_then_an_older_one_is_not_linearizable() {
    assert_violation(
        vec![
            inv(0, 1, write("x", "a")),
            done(0),
            inv(1, 1, write("x", "b")),
            inv(2, 2, read("x")),
            saw(2, Some("b")),
            inv(3, 3, read("x")),
            saw(3, Some("a")),
            done(1),
        ],
        "x",
    );
}

#[test]
fn sequential_reads_flipping_between_concurrent_writes_is_not_linearizable() {
    assert_violation(
        vec![
            inv(0, 1, write("x", "a")),
            inv(1, 2, write("x", "b")),
            inv(2, 3, read("x")),
            saw(2, Some("a")),
            inv(3, 3, read("x")),
            saw(3, Some("b")),
            inv(4, 3, read("x")),
            saw(4, Some("a")),
            done(0),
            done(1),
        ],
        "x",
    );
}

// ---- compare-and-set ----

#[test]
fn cas_from_the_current_value_succeeds() {
    assert_linearizable(vec![
        inv(0, 1, write("x", "a")),
        done(0),
        inv(1, 2, cas("x", "a", "b")),
        swapped(1, true),
        inv(2, 3, read("x")),
        saw(2, Some("b")),
    ]);
}

#[test]
fn cas_from_another_value_fails_and_changes_nothing() {
    assert_linearizable(vec![
        inv(0, 1, write("x", "a")),
        done(0),
        inv(1, 2, cas("x", "z", "b")),
        swapped(1, false),
        inv(2, 3, read("x")),
        saw(2, Some("a")),
    ]);
    assert_violation(
        vec![
            inv(0, 1, write("x", "a")),
            done(0),
            inv(1, 2, cas("x", "z", "b")),
            swapped(1, true),
        ],
        "x",
    );
}

#[test]
fn cas_that_must_succeed_cannot_report_failure() {
    assert_violation(
        vec![
            inv(0, 1, write("x", "a")),
            done(0),
            inv(1, 2, cas("x", "a", "b")),
            swapped(1, false),
        ],
        "x",
    );
}

#[test]
fn cas_on_a_missing_key_fails() {
    assert_linearizable(vec![
        inv(0, 1, cas("x", "a", "b")),
        swapped(0, false),
        inv(1, 1, read("x")),
        saw(1, None),
    ]);
    assert_violation(vec![inv(0, 1, cas("x", "a", "b")), swapped(0, true)], "x");
}

#[test]
fn concurrent_cas_from_the_same_value_cannot_both_succeed() {
    assert_violation(
        vec![
            inv(0, 1, write("x", "a")),
            done(0),
            inv(1, 2, cas("x", "a", "b")),
            inv(2, 3, cas("x", "a", "c")),
            swapped(1, true),
            swapped(2, true),
        ],
        "x",
    );
}

#[test]
fn concurrent_cas_from_the_same_value_one_wins() {
    for (first, second, last) in [(true, false, "b"), (false, true, "c")] {
        assert_linearizable(vec![
            inv(0, 1, write("x", "a")),
            done(0),
            inv(1, 2, cas("x", "a", "b")),
            inv(2, 3, cas("x", "a", "c")),
            swapped(1, first),
            swapped(2, second),
            inv(3, 1, read("x")),
            saw(3, Some(last)),
        ]);
    }
}

// ---- indeterminate and failed operations ----

#[test]
fn indeterminate_write_whose_value_is_later_read_is_linearizable() {
    assert_linearizable(vec![
        inv(0, 1, write("x", "a")),
        done(0),
        inv(1, 2, write("x", "b")),
        timeout(1),
        inv(2, 3, read("x")),
        saw(2, Some("a")),
        inv(3, 3, read("x")),
        saw(3, Some("b")),
    ]);
    // No response at all means the same as a timeout.
    assert_linearizable(vec![
        inv(0, 2, write("x", "b")),
        inv(1, 3, read("x")),
        saw(1, Some("b")),
    ]);
}

#[test]
fn indeterminate_write_never_observed_is_linearizable() {
    assert_linearizable(vec![
        inv(0, 1, write("x", "a")),
        done(0),
        inv(1, 2, write("x", "b")),
        timeout(1),
        inv(2, 3, read("x")),
        saw(2, Some("a")),
        inv(3, 3, read("x")),
        saw(3, Some("a")),
    ]);
}

#[test]
fn indeterminate_write_takes_effect_at_most_once() {
    assert_violation(
        vec![
            inv(0, 1, write("x", "a")),
            done(0),
            inv(1, 2, write("x", "b")),
            timeout(1),
            inv(2, 3, read("x")),
            saw(2, Some("b")),
            inv(3, 3, read("x")),
            saw(3, Some("a")),
        ],
        "x",
    );
}

#[test]
fn indeterminate_write_cannot_take_effect_before_its_invocation() {
    assert_violation(
        vec![
            inv(0, 3, read("x")),
            saw(0, Some("b")),
            inv(1, 2, write("x", "b")),
            timeout(1),
        ],
        "x",
    );
}

#[test]
fn indeterminate_cas_may_take_effect_late() {
    assert_linearizable(vec![
        inv(0, 1, write("x", "a")),
        done(0),
        inv(1, 2, cas("x", "a", "b")),
        timeout(1),
        inv(2, 3, read("x")),
        saw(2, Some("a")),
        inv(3, 3, read("x")),
        saw(3, Some("b")),
    ]);
}

#[test]
fn failed_write_whose_value_is_read_is_not_linearizable() {
    assert_violation(
        vec![
            inv(0, 1, write("x", "a")),
            fail(0),
            inv(1, 2, read("x")),
            saw(1, Some("a")),
        ],
        "x",
    );
    // Even while the failed write was still outstanding.
    assert_violation(
        vec![
            inv(0, 1, write("x", "a")),
            inv(1, 2, read("x")),
            saw(1, Some("a")),
            fail(0),
        ],
        "x",
    );
}

#[test]
fn failed_write_never_observed_is_linearizable() {
    assert_linearizable(vec![
        inv(0, 1, write("x", "a")),
        fail(0),
        inv(1, 2, read("x")),
        saw(1, None),
    ]);
}

// ---- several keys ----

fn healthy_key(key: &str, first_id: u64) -> Vec<Event> {
    vec![
        inv(first_id, 1, write(key, "a")),
        done(first_id),
        inv(first_id + 1, 2, read(key)),
        saw(first_id + 1, Some("a")),
    ]
}

#[test]
fn only_the_violated_key_is_reported() {
    let mut events = healthy_key("x", 0);
    events.extend(healthy_key("z", 10));
    events.extend([
        inv(20, 3, write("y", "a")),
        done(20),
        inv(21, 4, read("y")),
        saw(21, None),
    ]);
    events.extend(healthy_key("w", 30));
    assert_violation(events, "y");
}

#[test]
fn keys_are_independent() {
    // Each key is linearizable on its own (the read of y sees its value).
    assert_linearizable(vec![
        inv(0, 1, write("x", "a")),
        inv(1, 2, write("y", "a")),
        done(0),
        done(1),
        inv(2, 3, read("y")),
        saw(2, Some("a")),
        inv(3, 3, read("x")),
        saw(3, Some("a")),
    ]);
}

#[test]
fn first_violated_key_in_sorted_order_is_reported() {
    let mut events = vec![
        inv(0, 1, read("m")),
        saw(0, Some("z")),
        inv(1, 1, read("c")),
        saw(1, Some("z")),
    ];
    events.extend(healthy_key("a", 10));
    assert_violation(events, "c");
}

// ---- explanations, limits, malformed input ----

#[test]
fn explanation_names_prefix_and_blocked_operation() {
    let explanation = assert_violation(
        vec![
            inv(0, 1, write("x", "a")),
            done(0),
            inv(1, 2, read("x")),
            saw(1, None),
        ],
        "x",
    );
    assert!(explanation.contains("1 of 2 operations"), "{explanation}");
    assert!(
        explanation.contains("#0 client 1 write(\"x\", \"a\") -> ok [0, 1]"),
        "{explanation}"
    );
    assert!(explanation.contains("value \"a\""), "{explanation}");
    assert!(
        explanation.contains("then #1 client 2 read(\"x\") -> None [2, 3] cannot"),
        "{explanation}"
    );
}

#[test]
fn long_prefixes_are_abbreviated() {
    let mut events = Vec::new();
    for i in 0..20 {
        events.push(inv(i, 1, write("x", &format!("v{i}"))));
        events.push(done(i));
    }
    events.push(inv(20, 1, read("x")));
    events.push(saw(20, Some("v3")));
    let explanation = assert_violation(events, "x");
    assert!(
        explanation.contains("20 of 21 operations (…, #15"),
        "{explanation}"
    );
}

#[test]
fn state_limit_gives_unknown() {
    let history = History::from_events(healthy_key("x", 0));
    assert_eq!(
        check_with_limit(&history, 0),
        CheckResult::Unknown {
            key: "x".into(),
            max_states: 0
        }
    );
    assert!(check_with_limit(&history, 10).is_linearizable());
}

#[test]
fn response_without_invocation_is_invalid() {
    for response in [saw(7, None), fail(7), timeout(7)] {
        assert_eq!(
            verdict(vec![response]),
            CheckResult::Invalid(HistoryError::NotInvoked { id: OpId(7), at: 0 })
        );
    }
    // A response before its invocation is as bad.
    assert_eq!(
        verdict(vec![done(0), inv(0, 1, write("x", "a"))]),
        CheckResult::Invalid(HistoryError::NotInvoked { id: OpId(0), at: 0 })
    );
}

#[test]
fn duplicate_events_are_invalid() {
    assert_eq!(
        verdict(vec![inv(0, 1, write("x", "a")), inv(0, 1, write("x", "b")),]),
        CheckResult::Invalid(HistoryError::DuplicateInvocation { id: OpId(0), at: 1 })
    );
    assert_eq!(
        verdict(vec![inv(0, 1, write("x", "a")), timeout(0), done(0)]),
        CheckResult::Invalid(HistoryError::DuplicateResponse { id: OpId(0), at: 2 })
    );
}

#[test]
fn result_of_the_wrong_kind_is_invalid() {
    let result = verdict(vec![inv(0, 1, read("x")), done(0)]);
    assert!(
        matches!(
            result,
            CheckResult::Invalid(HistoryError::ResultMismatch { id: OpId(0), .. })
        ),
        "{result}"
    );
}

// ---- the recorder ----

#[test]
fn recorder_assigns_ids_and_times_in_call_order() {
    let history = History::new();
    let a = history.invoke(1, write("x", "a"));
    let b = history.invoke(2, read("x"));
    history.complete(b, KvResult::Read(None));
    history.timeout(a);
    assert_eq!((a, b), (OpId(0), OpId(1)));
    assert_eq!(history.len(), 4);
    let ops = history.operations().unwrap();
    assert_eq!(ops[1].invoked_at, 1);
    assert_eq!(
        ops[1].outcome,
        Outcome::Completed {
            result: KvResult::Read(None),
            at: 2
        }
    );
    assert_eq!(ops[0].outcome, Outcome::Indeterminate);
    assert!(check(&history).is_linearizable());

    let resumed = History::from_events(history.events());
    assert_eq!(resumed.invoke(1, read("x")), OpId(2));
}

#[test]
fn recorder_is_shared_by_concurrent_clients() {
    let history = History::new();
    let store = Arc::new(Mutex::new(
        std::collections::BTreeMap::<String, String>::new(),
    ));
    let threads: Vec<_> = (0..4u64)
        .map(|client| {
            let history = history.clone();
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let key = format!("k{}", i % 3);
                    let op = match (client + i) % 3 {
                        0 => read(&key),
                        1 => write(&key, &format!("{client}-{i}")),
                        _ => cas(
                            &key,
                            &format!("{client}-{}", i.saturating_sub(1)),
                            "swapped",
                        ),
                    };
                    let id = history.invoke(client, op.clone());
                    let result = {
                        let mut store = store.lock().unwrap();
                        match op {
                            KvOp::Read { key } => KvResult::Read(store.get(&key).cloned()),
                            KvOp::Write { key, value } => {
                                store.insert(key, value);
                                KvResult::Written
                            }
                            KvOp::Cas { key, expected, new } => {
                                let swaps = store.get(&key) == Some(&expected);
                                if swaps {
                                    store.insert(key, new);
                                }
                                KvResult::Cas(swaps)
                            }
                        }
                    };
                    history.complete(id, result);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(history.len(), 400);
    assert_eq!(check(&history), CheckResult::Linearizable);
}

#[test]
fn simulated_benchmark_sized_history_is_linearizable() {
    let config = SimulationConfig {
        operations: 2_000,
        clients: 10,
        keys: 8,
        values: 1_000,
        indeterminate_per_mille: 10,
        failed_per_mille: 5,
    };
    let history = simulate(&config, &mut ChaCha8Rng::seed_from_u64(7));
    assert_eq!(check(&history), CheckResult::Linearizable);
}

// ---- properties ----

fn config() -> impl Strategy<Value = SimulationConfig> {
    (0usize..80, 1u64..6, 1u32..4, 1u32..5, 0u32..300, 0u32..200).prop_map(
        |(operations, clients, keys, values, indeterminate, failed)| SimulationConfig {
            operations,
            clients,
            keys,
            values,
            indeterminate_per_mille: indeterminate,
            failed_per_mille: failed,
        },
    )
}

/// Whether some order of `ops` respecting real time is a legal sequential
/// execution: a direct search with no memo, partitioning or interning.
fn brute_force(ops: &[Operation]) -> bool {
    fn ret(op: &Operation) -> Option<u64> {
        match op.outcome {
            Outcome::Completed { at, .. } => Some(at),
            _ => None,
        }
    }
    fn go(
        ops: &[Operation],
        placed: &mut Vec<bool>,
        store: &mut std::collections::BTreeMap<String, String>,
    ) -> bool {
        if ops
            .iter()
            .zip(placed.iter())
            .all(|(op, placed)| *placed || ret(op).is_none())
        {
            return true;
        }
        for i in 0..ops.len() {
            let op = &ops[i];
            let blocked = ops
                .iter()
                .enumerate()
                .any(|(j, other)| !placed[j] && ret(other).is_some_and(|r| r < op.invoked_at));
            if placed[i] || blocked {
                continue;
            }
            let saved = store.clone();
            let result = match &op.op {
                KvOp::Read { key } => KvResult::Read(store.get(key).cloned()),
                KvOp::Write { key, value } => {
                    store.insert(key.clone(), value.clone());
                    KvResult::Written
                }
                KvOp::Cas { key, expected, new } => {
                    let swaps = store.get(key) == Some(expected);
                    if swaps {
                        store.insert(key.clone(), new.clone());
                    }
                    KvResult::Cas(swaps)
                }
            };
            let legal = match &op.outcome {
                Outcome::Completed { result: r, .. } => *r == result,
                _ => true,
            };
            if legal {
                placed[i] = true;
                if go(ops, placed, store) {
                    return true;
                }
                placed[i] = false;
            }
            *store = saved;
        }
        false
    }
    let mut placed: Vec<bool> = ops
        .iter()
        .map(|op| matches!(op.outcome, Outcome::Failed { .. }))
        .collect();
    go(ops, &mut placed, &mut std::collections::BTreeMap::new())
}

/// A random small history, linearizable or not: each op is invoked at `t`
/// and answered at `t + d` (or fails, or is indeterminate), with an
/// arbitrary result of the right kind.
fn arbitrary_history() -> impl Strategy<Value = History> {
    let op = (
        0u8..3,
        0u8..2,
        0u8..3,
        0u8..3,
        0u8..4,
        0u8..6,
        0u8..8,
        0u8..4,
    );
    prop::collection::vec(op, 0..7).prop_map(|ops| {
        let value = |v: u8| format!("v{v}");
        let mut timed = Vec::new();
        for (i, (kind, key, a, b, result, outcome, t, d)) in ops.into_iter().enumerate() {
            let id = i as u64;
            let key = format!("k{key}");
            let (op, answer) = match kind {
                0 => (
                    read(&key),
                    KvResult::Read((result > 0).then(|| value(result - 1))),
                ),
                1 => (write(&key, &value(a)), KvResult::Written),
                _ => (
                    cas(&key, &value(a), &value(b)),
                    KvResult::Cas(result % 2 == 0),
                ),
            };
            timed.push(((t, 0, id), inv(id, id, op)));
            let response = match outcome {
                0 => Some(fail(id)),
                1 => Some(timeout(id)),
                2 => None,
                _ => Some(ok(id, answer)),
            };
            if let Some(response) = response {
                timed.push(((t + d, 1, id), response));
            }
        }
        timed.sort_by_key(|(order, _)| *order);
        History::from_events(timed.into_iter().map(|(_, e)| e).collect())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn simulated_histories_are_linearizable(config in config(), seed in any::<u64>()) {
        let history = simulate(&config, &mut ChaCha8Rng::seed_from_u64(seed));
        let result = check(&history);
        prop_assert_eq!(result, CheckResult::Linearizable, "{:?}", history.events());
    }

    #[test]
    fn reading_a_value_never_written_is_caught(
        config in config(),
        seed in any::<u64>(),
        pick in any::<prop::sample::Index>(),
    ) {
        let history = simulate(&config, &mut ChaCha8Rng::seed_from_u64(seed));
        let mut events = history.events();
        let reads: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Event::Complete { result: KvResult::Read(_), .. }))
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!reads.is_empty());
        let target = reads[pick.index(reads.len())];
        let Event::Complete { id, .. } = events[target] else { unreachable!() };
        events[target] = Event::Complete {
            id,
            result: KvResult::Read(Some("never-written".into())),
        };
        let key = history
            .operations()
            .unwrap()
            .into_iter()
            .find(|op| op.id == id)
            .map(|op| op.op.key().to_owned())
            .unwrap();
        let result = check(&History::from_events(events));
        prop_assert!(
            matches!(&result, CheckResult::NotLinearizable { key: k, .. } if *k == key),
            "{}", result
        );
    }

    #[test]
    fn checker_agrees_with_brute_force(history in arbitrary_history()) {
        let ops = history.operations().unwrap();
        let expected = brute_force(&ops);
        let result = check(&history);
        prop_assert!(
            !matches!(result, CheckResult::Unknown { .. } | CheckResult::Invalid(_)),
            "{}", result
        );
        prop_assert_eq!(result.is_linearizable(), expected, "{:?}: {}", ops, result);
    }
}
