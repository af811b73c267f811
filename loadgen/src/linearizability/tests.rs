//! Hand-made histories with known verdicts, then random histories of a real register (judged
//! linearizable) and the same histories with an anomaly added (judged not).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

fn op(client: u64, key: &str, command: Command, invoke: u64, complete: Option<u64>, outcome: Outcome) -> Operation {
    Operation { client, key: key.to_string(), command, invoke, complete, outcome }
}

fn put(c: u64, v: &str, i: u64, r: u64) -> Operation {
    op(c, "k", Command::Put { value: v.into() }, i, Some(r), Outcome::Ok)
}

fn get(c: u64, found: Option<&str>, i: u64, r: u64) -> Operation {
    op(c, "k", Command::Get { found: found.map(Into::into) }, i, Some(r), Outcome::Ok)
}

fn cas(c: u64, expected: Option<&str>, new: &str, succeeded: bool, i: u64, r: u64) -> Operation {
    let command = Command::Cas { expected: expected.map(Into::into), new: new.into(), succeeded };
    op(c, "k", command, i, Some(r), Outcome::Ok)
}

fn del(c: u64, i: u64, r: u64) -> Operation {
    op(c, "k", Command::Delete, i, Some(r), Outcome::Ok)
}

fn unknown(mut o: Operation, complete: Option<u64>) -> Operation {
    o.outcome = Outcome::Unknown;
    o.complete = complete;
    o
}

fn failed(mut o: Operation) -> Operation {
    o.outcome = Outcome::Failed;
    o
}

fn verdict(ops: &[Operation]) -> Report {
    check(ops, Budget::default())
}

#[track_caller]
fn assert_linearizable(ops: &[Operation]) {
    let r = verdict(ops);
    assert!(r.is_linearizable(), "expected linearizable:\n{}", r.to_text());
}

/// Asserts a violation on key `k` whose explanation contains `needle` and lists `involved`.
#[track_caller]
fn assert_violation(ops: &[Operation], needle: &str, involved: &[&Operation]) -> Violation {
    let r = verdict(ops);
    assert_eq!(r.violations.len(), 1, "expected one violation:\n{}", r.to_text());
    assert!(r.unknown.is_empty(), "{}", r.to_text());
    let v = r.violations[0].clone();
    assert_eq!(v.key, "k");
    assert!(v.reason.contains(needle), "reason {:?} lacks {needle:?}", v.reason);
    for o in involved {
        assert!(v.ops.contains(o), "explanation lacks {o}:\n{v}");
    }
    let text = r.to_text();
    assert!(text.starts_with("NOT LINEARIZABLE: 1 of 1 keys"), "{text}");
    v
}

#[test]
fn empty_and_sequential_histories_are_linearizable() {
    assert_linearizable(&[]);
    assert_linearizable(&[put(1, "a", 0, 1), get(1, Some("a"), 2, 3), put(1, "b", 4, 5), get(2, Some("b"), 6, 7)]);
}

#[test]
fn reads_of_the_initial_state_find_nothing() {
    assert_linearizable(&[get(1, None, 0, 1), put(1, "a", 2, 3), get(2, Some("a"), 4, 5)]);
    // Absent after a completed put: the write was lost.
    let w = put(1, "a", 0, 1);
    let r = get(2, None, 2, 3);
    assert_violation(&[w.clone(), r.clone()], "cannot", &[&w, &r]);
}

#[test]
fn stale_read_is_a_violation() {
    let (a, b, r) = (put(1, "a", 0, 1), put(1, "b", 2, 3), get(2, Some("a"), 4, 5));
    let v = assert_violation(&[a.clone(), b.clone(), r.clone()], "leaving the register \"b\"", &[&a, &b, &r]);
    assert!(v.reason.contains("get k → \"a\""), "{}", v.reason);
}

#[test]
fn reads_concurrent_with_a_write_may_see_either_value() {
    let w = put(1, "a", 0, 10);
    assert_linearizable(&[w.clone(), get(2, Some("a"), 1, 2), get(3, None, 1, 2)]);
    // But once a read saw the new value, a later read cannot see the old one.
    let (r1, r2) = (get(2, Some("a"), 1, 2), get(3, None, 3, 4));
    assert_violation(&[w.clone(), r1.clone(), r2.clone()], "cannot", &[&w, &r2]);
    // Operations that merely touch (one's return at the other's invoke) overlap.
    assert_linearizable(&[put(1, "a", 0, 5), get(2, None, 5, 6)]);
}

#[test]
fn a_value_nobody_wrote_is_a_violation() {
    let r = get(1, Some("ghost"), 0, 1);
    let v = assert_violation(&[put(2, "a", 0, 1), r.clone()], "no operation wrote", &[&r]);
    assert_eq!(v.ops.len(), 1);
    // A write that failed did not happen either.
    let w = failed(put(2, "a", 0, 1));
    assert_violation(&[w, get(1, Some("a"), 2, 3)], "no operation wrote", &[]);
    assert_linearizable(&[failed(put(2, "a", 0, 1)), get(1, None, 2, 3)]);
}

#[test]
fn a_read_from_the_future_is_a_violation() {
    let (r, w) = (get(1, Some("a"), 0, 1), put(2, "a", 2, 3));
    assert_violation(&[r.clone(), w.clone()], "before any write of it began", &[&r, &w]);
}

#[test]
fn compare_and_swap() {
    // Succeeds on the value it expects, and the new value is then read.
    assert_linearizable(&[put(1, "a", 0, 1), cas(1, Some("a"), "b", true, 2, 3), get(2, Some("b"), 4, 5)]);
    // On an absent key expecting absence.
    assert_linearizable(&[cas(1, None, "a", true, 0, 1), get(2, Some("a"), 2, 3), cas(3, None, "b", false, 4, 5)]);
    // A compare that fails leaves the value.
    assert_linearizable(&[put(1, "a", 0, 1), cas(2, Some("x"), "b", false, 2, 3), get(1, Some("a"), 4, 5)]);
    // Succeeded although the register held something else.
    let (a, c, s) = (put(1, "a", 0, 1), put(1, "c", 2, 3), cas(2, Some("a"), "b", true, 4, 5));
    assert_violation(&[a, c.clone(), s.clone()], "cannot", &[&c, &s]);
    // Failed although the register held what it expected.
    let (a, s) = (put(1, "a", 0, 1), cas(2, Some("a"), "b", false, 2, 3));
    assert_violation(&[a.clone(), s.clone()], "cannot", &[&a, &s]);
    // Its write was lost: the new value is not read after it.
    let (a, s, r) = (put(1, "a", 0, 1), cas(2, Some("a"), "b", true, 2, 3), get(3, Some("a"), 4, 5));
    assert_violation(&[a, s.clone(), r.clone()], "cannot", &[&s, &r]);
}

#[test]
fn two_concurrent_swaps_from_one_value_cannot_both_succeed() {
    let a = put(1, "a", 0, 1);
    let (s1, s2) = (cas(2, Some("a"), "b", true, 2, 10), cas(3, Some("a"), "c", true, 3, 9));
    assert_violation(&[a.clone(), s1.clone(), s2.clone()], "cannot", &[&s1, &s2]);
    // One wins, the other sees the winner's value.
    let lose = cas(3, Some("a"), "c", false, 3, 9);
    assert_linearizable(&[a.clone(), s1.clone(), lose.clone(), get(4, Some("b"), 11, 12)]);
    // Chained: the second expects what the first wrote.
    assert_linearizable(&[a, s1, cas(3, Some("b"), "c", true, 3, 9), get(4, Some("c"), 11, 12)]);
}

#[test]
fn deletes() {
    assert_linearizable(&[put(1, "a", 0, 1), del(1, 2, 3), get(2, None, 4, 5), cas(2, None, "b", true, 6, 7)]);
    let r = get(2, Some("a"), 4, 5);
    assert_violation(&[put(1, "a", 0, 1), del(1, 2, 3), r.clone()], "cannot", &[&r]);
}

#[test]
fn writes_of_unknown_outcome_may_take_effect_late_or_never() {
    // Never completed, then read: it took effect.
    assert_linearizable(&[unknown(put(1, "a", 0, 1), None), get(2, Some("a"), 5, 6)]);
    // Or not (yet): a read before, and one long after, still find nothing.
    assert_linearizable(&[unknown(put(1, "a", 0, 1), None), get(2, None, 5, 6), get(2, None, 100, 101)]);
    // Timed out (a completion time but no answer): may take effect after a later write.
    assert_linearizable(&[
        put(1, "a", 0, 1),
        unknown(put(2, "b", 2, 3), Some(3)),
        get(3, Some("a"), 4, 5),
        get(3, Some("b"), 6, 7),
    ]);
    // But not before its invoke.
    let r = get(3, Some("b"), 0, 1);
    assert_violation(&[r.clone(), unknown(put(2, "b", 2, 3), None)], "before any write of it began", &[&r]);
    // And once it took effect, it does not un-happen.
    let (w, r1, r2) = (unknown(put(1, "a", 0, 1), None), get(2, Some("a"), 5, 6), get(2, None, 7, 8));
    assert_violation(&[w, r1, r2.clone()], "cannot", &[&r2]);
}

#[test]
fn swaps_of_unknown_outcome() {
    let a = put(1, "a", 0, 1);
    let s = unknown(cas(2, Some("a"), "b", true, 2, 3), Some(3));
    assert_linearizable(&[a.clone(), s.clone(), get(3, Some("b"), 4, 5)]);
    assert_linearizable(&[a.clone(), s.clone(), get(3, Some("a"), 4, 5)]);
    // It can only write when its compare holds.
    let c = put(1, "c", 10, 11);
    let r = get(3, Some("b"), 12, 13);
    let late = unknown(cas(2, Some("a"), "b", true, 9, 9), None);
    assert_violation(&[a, c, late, r.clone()], "cannot", &[&r]);
}

#[test]
fn reads_without_an_answer_are_ignored() {
    let r = unknown(get(1, Some("zzz"), 0, 1), Some(1));
    assert_linearizable(&[put(1, "a", 0, 1), r, failed(get(2, Some("yyy"), 0, 1))]);
}

#[test]
fn keys_are_checked_independently() {
    let mut ops = vec![put(1, "a", 0, 1), get(2, Some("a"), 2, 3)];
    let mut other = get(1, Some("a"), 2, 3);
    other.key = "other".into();
    ops.push(other);
    let r = verdict(&ops);
    assert_eq!((r.keys, r.ops), (2, 3));
    assert_eq!(r.violations.len(), 1, "{}", r.to_text());
    assert_eq!(r.violations[0].key, "other");
    assert!(r.to_text().starts_with("NOT LINEARIZABLE: 1 of 2 keys"), "{}", r.to_text());
}

#[test]
fn a_search_over_budget_is_unknown_not_hung() {
    // Twelve concurrent puts, then two reads no order explains: the search must try many orders.
    let mut ops: Vec<Operation> = (0..12).map(|i| put(i, &format!("v{i}"), 0, 100)).collect();
    ops.push(get(20, Some("v1"), 101, 102));
    ops.push(get(20, Some("v2"), 103, 104));
    ops.push(get(20, Some("v1"), 105, 106));
    let r = check(&ops, Budget { max_steps: 50, max_memo_bytes: 1 << 30 });
    assert!(r.violations.is_empty());
    assert_eq!(r.unknown.len(), 1, "{}", r.to_text());
    assert!(r.unknown[0].1.contains("more than 50 search steps"), "{:?}", r.unknown);
    assert!(!r.is_linearizable());
    assert!(r.to_text().starts_with("UNKNOWN: 1 of 1 keys"), "{}", r.to_text());
    let r = check(&ops, Budget { max_steps: u64::MAX, max_memo_bytes: 1000 });
    assert!(r.unknown[0].1.contains("memo outgrew"), "{:?}", r.unknown);
    // With the default budget the same history is decided.
    assert_eq!(verdict(&ops).violations.len(), 1);
}

/// A random history of a real register: `clients` clients, each running `per_client` operations
/// one after the other, on `keys` keys. Each operation takes effect at a random instant between
/// its invoke and its completion, applied to the register in that order. Some writes fail (no
/// effect) and some have an unknown outcome (took effect or not, maybe never answered).
fn random_history(rng: &mut SmallRng, clients: u64, per_client: usize, keys: usize) -> Vec<Operation> {
    struct Planned {
        op: Operation,
        at: u64,
        applies: bool,
    }
    let mut planned = Vec::new();
    let mut n = 0u64;
    for c in 0..clients {
        let mut t = rng.random_range(0..20);
        for _ in 0..per_client {
            let invoke = t;
            let at = invoke + rng.random_range(0..30);
            let complete = at + rng.random_range(0..30);
            t = complete + rng.random_range(0..10);
            let key = format!("k{}", rng.random_range(0..keys));
            n += 1;
            let value = format!("v{n}");
            let command = match rng.random_range(0..10) {
                0..4 => Command::Get { found: None },
                4..7 => Command::Put { value },
                7 => Command::Delete,
                // The expected value is filled in below from what the key holds or held.
                _ => Command::Cas { expected: None, new: value, succeeded: false },
            };
            let (outcome, applies, complete) = match rng.random_range(0..20) {
                0 => (Outcome::Failed, false, Some(complete)),
                1 => (Outcome::Unknown, rng.random_bool(0.5), Some(complete)),
                2 => (Outcome::Unknown, rng.random_bool(0.5), None),
                _ => (Outcome::Ok, true, Some(complete)),
            };
            planned.push(Planned { op: Operation { client: c, key, command, invoke, complete, outcome }, at, applies });
        }
    }
    planned.sort_by_key(|p| p.at);
    let mut state: HashMap<String, Option<String>> = HashMap::new();
    let mut seen: HashMap<String, Vec<Option<String>>> = HashMap::new();
    for p in &mut planned {
        let cur = state.get(&p.op.key).cloned().flatten();
        let history = seen.entry(p.op.key.clone()).or_insert_with(|| vec![None]);
        match &mut p.op.command {
            Command::Get { found } => *found = cur.clone(),
            Command::Put { value } if p.applies => {
                history.push(Some(value.clone()));
                state.insert(p.op.key.clone(), Some(value.clone()));
            }
            Command::Delete if p.applies => {
                state.insert(p.op.key.clone(), None);
            }
            Command::Cas { expected, new, succeeded } => {
                // Half the time the current value (usually succeeds), else any earlier one.
                *expected = if rng.random_bool(0.5) {
                    cur.clone()
                } else {
                    history[rng.random_range(0..history.len())].clone()
                };
                *succeeded = p.applies && *expected == cur;
                if *succeeded {
                    history.push(Some(new.clone()));
                    state.insert(p.op.key.clone(), Some(new.clone()));
                }
            }
            Command::Put { .. } | Command::Delete => {}
        }
    }
    planned.into_iter().map(|p| p.op).collect()
}

#[test]
fn random_histories_of_a_real_register_are_linearizable() {
    for seed in 0..300 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let clients = rng.random_range(1..7);
        let (per_client, keys) = (rng.random_range(1..40), rng.random_range(1..4));
        let ops = random_history(&mut rng, clients, per_client, keys);
        let r = verdict(&ops);
        assert!(r.is_linearizable(), "seed {seed}:\n{}", r.to_text());
        assert_eq!(r.ops, ops.len());
    }
}

#[test]
fn long_random_histories_are_checked_quickly() {
    let mut rng = SmallRng::seed_from_u64(99);
    let ops = random_history(&mut rng, 8, 1500, 2);
    let t = std::time::Instant::now();
    let r = verdict(&ops);
    assert!(r.is_linearizable(), "{}", r.to_text());
    assert!(t.elapsed() < std::time::Duration::from_secs(20), "took {:?}", t.elapsed());
}

/// Values written only by operations that completed with success (and so took effect).
fn definite_values(ops: &[Operation], key: &str) -> Vec<String> {
    ops.iter()
        .filter(|o| o.key == key && o.outcome == Outcome::Ok)
        .filter_map(|o| match &o.command {
            Command::Put { value } => Some(value.clone()),
            Command::Cas { new, succeeded: true, .. } => Some(new.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn random_histories_with_an_anomaly_are_not_linearizable() {
    for seed in 0..200u64 {
        let mut rng = SmallRng::seed_from_u64(1000 + seed);
        let (clients, per_client) = (rng.random_range(1..6), rng.random_range(2..30));
        let mut ops = random_history(&mut rng, clients, per_client, 2);
        let end = ops.iter().map(|o| o.complete.unwrap_or(o.invoke)).max().unwrap_or(0) + 1;
        let key = ops[0].key.clone();
        let at = |c: u64, command: Command, i: u64| Operation {
            client: 100 + c,
            key: key.clone(),
            command,
            invoke: end + i,
            complete: Some(end + i + 1),
            outcome: Outcome::Ok,
        };
        let kind = seed % 4;
        match kind {
            // A successful read of a value nobody wrote, somewhere in the history.
            0 => {
                let i = rng.random_range(0..ops.len());
                ops[i].command = Command::Get { found: Some("never-written".into()) };
                ops[i].outcome = Outcome::Ok;
                ops[i].complete = Some(ops[i].complete.unwrap_or(end));
            }
            // After everything: a write, then a read of an older value (a stale read), or
            // of absence (a lost write). Values some unknown write may still write are avoided.
            1 | 2 => {
                let unknown: Vec<&Operation> = ops.iter().filter(|o| o.outcome == Outcome::Unknown).collect();
                let stale = if kind == 1 {
                    definite_values(&ops, &key).into_iter().find(|v| {
                        !unknown.iter().any(|o| matches!(&o.command, Command::Put { value } if value == v))
                            && !unknown.iter().any(|o| matches!(&o.command, Command::Cas { new, .. } if new == v))
                    })
                } else {
                    None
                };
                if stale.is_none() && unknown.iter().any(|o| o.key == key && o.command == Command::Delete) {
                    // An unknown delete could explain absence; use the double swap instead.
                    ops.push(at(0, Command::Put { value: "fresh".into() }, 0));
                    ops.push(at(
                        1,
                        Command::Cas { expected: Some("fresh".into()), new: "x1".into(), succeeded: true },
                        2,
                    ));
                    ops.push(at(
                        2,
                        Command::Cas { expected: Some("fresh".into()), new: "x2".into(), succeeded: true },
                        4,
                    ));
                } else {
                    ops.push(at(0, Command::Put { value: "fresh".into() }, 0));
                    ops.push(at(1, Command::Get { found: stale }, 2));
                }
            }
            // After everything: two swaps from the same value both succeed.
            _ => {
                ops.push(at(0, Command::Put { value: "fresh".into() }, 0));
                ops.push(at(1, Command::Cas { expected: Some("fresh".into()), new: "x1".into(), succeeded: true }, 2));
                ops.push(at(2, Command::Cas { expected: Some("fresh".into()), new: "x2".into(), succeeded: true }, 4));
            }
        }
        let r = verdict(&ops);
        assert!(!r.violations.is_empty(), "seed {seed} mutation {kind}: judged linearizable");
        assert!(r.unknown.is_empty(), "seed {seed}: {}", r.to_text());
        let v = &r.violations[0];
        assert!(!v.ops.is_empty() && v.ops.iter().all(|o| o.key == v.key), "{v}");
    }
}
