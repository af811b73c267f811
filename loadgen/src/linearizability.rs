//! A linearizability checker for key-value histories: every key is a register (put, delete, get,
//! compare-and-swap), checked on its own — linearizability is compositional (a history is
//! linearizable iff each key's sub-history is), so the keys of a history never multiply each
//! other's search space.
//!
//! Per key the search is Wing and Gong's, with Lowe's memoisation: walk the calls in time order,
//! try to linearize ("take effect") each call that is minimal (no other pending operation
//! returned before it was invoked), and backtrack when an operation's return is reached before
//! it took effect. Configurations already explored — the set of linearized operations together
//! with the register's value — are remembered and never explored twice, which turns the
//! exponential search into one that is, on real histories, close to linear.
//!
//! What the history may contain:
//!
//! - **completed operations** ([`Outcome::Ok`]): took effect exactly once between invoke and
//!   complete, and returned what the history says;
//! - **failed operations** ([`Outcome::Failed`]): definitely did not take effect (refused before
//!   they were proposed); they are left out;
//! - **operations of unknown outcome** ([`Outcome::Unknown`], or no completion time): a write
//!   that timed out, a connection lost mid-call. A write may or may not have taken effect, at any
//!   time after its invoke; a read tells nothing and is left out;
//! - **reads of absent keys** (`found: None`): the register starts absent, so a read served from
//!   the initial state is one of these.
//!
//! The search is bounded by a [`Budget`]; a key whose search exceeds it gets
//! [`KeyVerdict::Unknown`] instead of hanging the caller. Usage and the history file format:
//! `docs/reliability.md`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// What an operation asked the register to do, and what it answered (answers matter only for
/// operations whose outcome is [`Outcome::Ok`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Write `value`.
    Put {
        /// The value written.
        value: String,
    },
    /// Remove the key (the register becomes absent).
    Delete,
    /// Read the key; `found` is the value read, `None` when the key was absent.
    Get {
        /// What the read returned.
        found: Option<String>,
    },
    /// If the register holds `expected` (`None`: absent), write `new`; `succeeded` says whether
    /// the compare held.
    Cas {
        /// Value the compare expects (`None`: the key must be absent).
        expected: Option<String>,
        /// Value written when the compare holds.
        new: String,
        /// Whether the compare held (and `new` was written).
        succeeded: bool,
    },
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered with success: it took effect once, between invoke and complete.
    Ok,
    /// Definitely did not take effect.
    Failed,
    /// May or may not have taken effect (timeout, lost connection): a write may take effect at
    /// any time after its invoke.
    Unknown,
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Who issued it (for explanations only).
    pub client: u64,
    /// The key (the register).
    pub key: String,
    /// What it did.
    pub command: Command,
    /// When it was sent, in any monotonic unit shared by the whole history.
    pub invoke: u64,
    /// When its answer arrived; `None` when it never did (then its outcome counts as unknown).
    pub complete: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

impl fmt::Display for Operation {
    /// `client 3 cas lg/01 expect "a" → "b" (succeeded) [120, 180]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} ", self.client)?;
        match &self.command {
            Command::Put { value } => write!(f, "put {} = {}", self.key, show(Some(value)))?,
            Command::Delete => write!(f, "delete {}", self.key)?,
            Command::Get { found } if self.outcome == Outcome::Ok => {
                write!(f, "get {} → {}", self.key, show(found.as_deref()))?
            }
            Command::Get { .. } => write!(f, "get {}", self.key)?,
            Command::Cas { expected, new, succeeded } => {
                write!(f, "cas {} expect {} → {}", self.key, show(expected.as_deref()), show(Some(new)))?;
                if self.outcome == Outcome::Ok {
                    f.write_str(if *succeeded { " (succeeded)" } else { " (compare failed)" })?;
                }
            }
        }
        match self.complete {
            Some(c) => write!(f, " [{}, {}]", self.invoke, c)?,
            None => write!(f, " [{}, never]", self.invoke)?,
        }
        match self.outcome {
            Outcome::Ok => Ok(()),
            Outcome::Failed => f.write_str(" failed"),
            Outcome::Unknown => f.write_str(" outcome unknown"),
        }
    }
}

/// A value for messages: quoted, cut after 40 characters; `absent` for `None`.
fn show(v: Option<&str>) -> String {
    match v {
        None => "absent".to_string(),
        Some(s) if s.chars().count() > 40 => format!("{:?}…", s.chars().take(40).collect::<String>()),
        Some(s) => format!("{s:?}"),
    }
}

/// How much work the search may do per key before it gives up with [`KeyVerdict::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Attempts to linearize an operation (the search's unit of work).
    pub max_steps: u64,
    /// Bytes the memo of explored configurations may hold.
    pub max_memo_bytes: usize,
}

impl Default for Budget {
    /// Ten million steps and 1 GiB of memo: seconds of work, enough for runs of minutes.
    fn default() -> Budget {
        Budget { max_steps: 10_000_000, max_memo_bytes: 1 << 30 }
    }
}

/// Why a key's history is not linearizable: what went wrong, and the operations involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// What is impossible, in one sentence.
    pub reason: String,
    /// The operations that show it, by invoke time.
    pub ops: Vec<Operation>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {}: {}", self.key, self.reason)?;
        for op in &self.ops {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

/// The verdict on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    /// Some order of the operations, consistent with real time, explains every answer.
    Linearizable,
    /// No order does.
    Violation(Violation),
    /// The search exceeded the budget: no verdict.
    Unknown {
        /// Which limit was hit.
        reason: String,
    },
}

/// The verdict on a whole history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Operations in the history.
    pub ops: usize,
    /// Keys checked.
    pub keys: usize,
    /// Every key that is not linearizable.
    pub violations: Vec<Violation>,
    /// Keys whose search exceeded the budget, with the reason.
    pub unknown: Vec<(String, String)>,
}

impl Report {
    /// Linearizable: no violation and no key left undecided.
    pub fn is_linearizable(&self) -> bool {
        self.violations.is_empty() && self.unknown.is_empty()
    }

    /// The verdict in words: one line, then each violation and each undecided key.
    pub fn to_text(&self) -> String {
        let mut s = if !self.violations.is_empty() {
            format!(
                "NOT LINEARIZABLE: {} of {} keys have no linearization ({} operations)\n",
                self.violations.len(),
                self.keys,
                self.ops
            )
        } else if !self.unknown.is_empty() {
            format!(
                "UNKNOWN: {} of {} keys exceeded the search budget; the others are linearizable ({} operations)\n",
                self.unknown.len(),
                self.keys,
                self.ops
            )
        } else {
            format!("linearizable: {} operations on {} keys\n", self.ops, self.keys)
        };
        for v in &self.violations {
            s.push_str(&v.to_string());
        }
        for (k, why) in &self.unknown {
            s.push_str(&format!("key {k}: unknown: {why}\n"));
        }
        s
    }
}

/// Check a whole history, key by key.
pub fn check(ops: &[Operation], budget: Budget) -> Report {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in ops {
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut report = Report { ops: ops.len(), keys: by_key.len(), violations: Vec::new(), unknown: Vec::new() };
    for (key, ops) in by_key {
        match check_key(&ops, budget) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Violation(v) => report.violations.push(v),
            KeyVerdict::Unknown { reason } => report.unknown.push((key.to_string(), reason)),
        }
    }
    report
}

/// Value ids: 0 is "absent", others index the key's distinct values.
type Val = u32;
const ABSENT: Val = 0;

/// An operation as the search sees it.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// The register becomes the value (a put, or a delete writing [`ABSENT`]).
    Write(Val),
    /// The register holds the value.
    Read(Val),
    /// Compare-and-swap; `held` is `None` when the outcome is unknown.
    Cas { expected: Val, new: Val, held: Option<bool> },
}

impl Step {
    /// The register after the step taken from `state`, or `None` if the step's answer is
    /// impossible from `state`.
    fn apply(self, state: Val) -> Option<Val> {
        match self {
            Step::Write(v) => Some(v),
            Step::Read(v) => (state == v).then_some(state),
            Step::Cas { expected, new, held: Some(true) } => (state == expected).then_some(new),
            Step::Cas { expected, held: Some(false), .. } => (state != expected).then_some(state),
            Step::Cas { expected, new, held: None } => Some(if state == expected { new } else { state }),
        }
    }
}

/// One operation the search takes into account.
#[derive(Debug, Clone, Copy)]
struct Entry {
    step: Step,
    invoke: u64,
    /// `None`: may take effect at any time after invoke, or never.
    complete: Option<u64>,
    /// Index in the key's operation list (for explanations).
    orig: usize,
}

const NIL: usize = usize::MAX;

/// The event list: calls and returns in time order, doubly linked so an operation's two events
/// can be taken out when it is linearized and put back, in reverse order, on backtracking.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Event node → (entry, is call).
    of: Vec<(usize, bool)>,
    /// Entry → (call node, return node or NIL).
    nodes: Vec<(usize, usize)>,
}

/// The list head is node 0.
const HEAD: usize = 0;

impl Events {
    fn new(entries: &[Entry]) -> Events {
        // (time, returns after calls at equal times: such operations overlap), entry, is call.
        let mut evs: Vec<(u64, u8, usize, bool)> = Vec::with_capacity(entries.len() * 2);
        for (i, e) in entries.iter().enumerate() {
            evs.push((e.invoke, 0, i, true));
            if let Some(c) = e.complete {
                evs.push((c, 1, i, false));
            }
        }
        evs.sort_unstable();
        let n = evs.len() + 1;
        let mut ev = Events {
            next: vec![NIL; n],
            prev: vec![NIL; n],
            of: vec![(NIL, false); n],
            nodes: vec![(NIL, NIL); entries.len()],
        };
        for (k, &(_, _, i, call)) in evs.iter().enumerate() {
            let node = k + 1;
            ev.of[node] = (i, call);
            ev.prev[node] = k;
            ev.next[k] = node;
            if call {
                ev.nodes[i].0 = node;
            } else {
                ev.nodes[i].1 = node;
            }
        }
        ev
    }

    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        if n != NIL {
            self.prev[n] = x;
        }
    }

    fn lift(&mut self, entry: usize) {
        let (call, ret) = self.nodes[entry];
        self.unlink(call);
        if ret != NIL {
            self.unlink(ret);
        }
    }

    fn unlift(&mut self, entry: usize) {
        let (call, ret) = self.nodes[entry];
        if ret != NIL {
            self.relink(ret);
        }
        self.relink(call);
    }
}

/// Check the operations of one key (all with the same key).
pub fn check_key<'a>(ops: &[&'a Operation], budget: Budget) -> KeyVerdict {
    let Some(first) = ops.first() else { return KeyVerdict::Linearizable };
    let key = first.key.clone();
    // Distinct values get ids; every value any operation mentions is interned.
    let mut ids: HashMap<&'a str, Val> = HashMap::new();
    let mut intern = |v: Option<&'a str>| -> Val {
        match v {
            None => ABSENT,
            Some(s) => {
                let n = ids.len() as Val + 1;
                *ids.entry(s).or_insert(n)
            }
        }
    };
    let mut entries = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let outcome = if op.complete.is_none() { Outcome::Unknown } else { op.outcome };
        let step = match (&op.command, outcome) {
            (_, Outcome::Failed) => continue,
            // A read that did not answer tells nothing.
            (Command::Get { .. }, Outcome::Unknown) => continue,
            (Command::Get { found }, Outcome::Ok) => Step::Read(intern(found.as_deref())),
            (Command::Put { value }, _) => Step::Write(intern(Some(value))),
            (Command::Delete, _) => Step::Write(ABSENT),
            (Command::Cas { expected, new, succeeded }, o) => Step::Cas {
                expected: intern(expected.as_deref()),
                new: intern(Some(new)),
                held: (o == Outcome::Ok).then_some(*succeeded),
            },
        };
        let complete = if outcome == Outcome::Unknown { None } else { op.complete };
        entries.push(Entry { step, invoke: op.invoke, complete, orig: i });
    }
    if let Some(v) = impossible_reads(&key, ops, &entries) {
        return KeyVerdict::Violation(v);
    }
    search(&key, ops, &entries, budget)
}

/// The quick, clear cases: a read of a value no operation wrote, or of a value only written
/// after the read had returned.
fn impossible_reads(key: &str, ops: &[&Operation], entries: &[Entry]) -> Option<Violation> {
    // Earliest invoke of a write of each value.
    let mut written: HashMap<Val, (u64, usize)> = HashMap::new();
    for e in entries {
        let w = match e.step {
            Step::Write(v) if v != ABSENT => v,
            Step::Cas { new, held, .. } if held != Some(false) => new,
            _ => continue,
        };
        let slot = written.entry(w).or_insert((e.invoke, e.orig));
        if e.invoke < slot.0 {
            *slot = (e.invoke, e.orig);
        }
    }
    for e in entries {
        let (read, what) = match e.step {
            Step::Read(v) => (v, "read returned"),
            Step::Cas { expected, held: Some(true), .. } => (expected, "compare-and-swap found"),
            _ => continue,
        };
        if read == ABSENT {
            continue;
        }
        let complete = e.complete.unwrap_or(u64::MAX);
        match written.get(&read) {
            None => {
                return Some(Violation {
                    key: key.to_string(),
                    reason: format!("a {what} a value that no operation wrote"),
                    ops: vec![ops[e.orig].clone()],
                });
            }
            Some(&(invoke, w)) if invoke > complete => {
                return Some(Violation {
                    key: key.to_string(),
                    reason: format!("a {what} a value before any write of it began"),
                    ops: vec![ops[e.orig].clone(), ops[w].clone()],
                });
            }
            Some(_) => {}
        }
    }
    None
}

/// The set of linearized entries, as a bit set.
type Bits = Box<[u64]>;

fn bit_set(b: &mut Bits, i: usize) {
    b[i / 64] |= 1 << (i % 64);
}

fn bit_clear(b: &mut Bits, i: usize) {
    b[i / 64] &= !(1 << (i % 64));
}

/// Where the search got furthest: what explains a violation.
struct Furthest {
    depth: usize,
    /// The operation whose return was reached before it could take effect.
    stuck: usize,
    state: Val,
    /// The last few operations linearized before it, most recent last.
    before: Vec<usize>,
}

fn search(key: &str, ops: &[&Operation], entries: &[Entry], budget: Budget) -> KeyVerdict {
    let n = entries.len();
    let mut events = Events::new(entries);
    let mut definite_left = entries.iter().filter(|e| e.complete.is_some()).count();
    let words = n.div_ceil(64).max(1);
    let mut linearized: Bits = vec![0u64; words].into_boxed_slice();
    let mut memo: HashSet<(Bits, Val)> = HashSet::new();
    let entry_bytes = words * 8 + std::mem::size_of::<(Bits, Val)>() + 16;
    let mut stack: Vec<(usize, Val)> = Vec::new();
    let mut state = ABSENT;
    let mut steps = 0u64;
    let mut furthest: Option<Furthest> = None;
    let mut cur = events.next[HEAD];
    loop {
        if definite_left == 0 {
            // Every operation that completed took effect; those of unknown outcome that have
            // not can take effect after all of them (or never), which nothing observes.
            return KeyVerdict::Linearizable;
        }
        if cur == NIL || !events.of[cur].1 {
            // An operation returned before it took effect (or nothing more can be tried):
            // undo the last choice.
            if cur != NIL && furthest.as_ref().is_none_or(|f| stack.len() > f.depth) {
                let before = stack.iter().rev().take(3).rev().map(|&(e, _)| e).collect();
                furthest = Some(Furthest { depth: stack.len(), stuck: events.of[cur].0, state, before });
            }
            let Some((e, prev)) = stack.pop() else {
                return KeyVerdict::Violation(explain(key, ops, entries, &furthest));
            };
            state = prev;
            bit_clear(&mut linearized, e);
            events.unlift(e);
            if entries[e].complete.is_some() {
                definite_left += 1;
            }
            cur = events.next[events.nodes[e].0];
            continue;
        }
        let e = events.of[cur].0;
        steps += 1;
        if steps > budget.max_steps {
            return KeyVerdict::Unknown { reason: format!("more than {} search steps", budget.max_steps) };
        }
        if let Some(next_state) = entries[e].step.apply(state) {
            bit_set(&mut linearized, e);
            if memo.insert((linearized.clone(), next_state)) {
                if memo.len().saturating_mul(entry_bytes) > budget.max_memo_bytes {
                    return KeyVerdict::Unknown {
                        reason: format!(
                            "the search memo outgrew {} MiB ({} configurations)",
                            budget.max_memo_bytes >> 20,
                            memo.len()
                        ),
                    };
                }
                stack.push((e, state));
                state = next_state;
                events.lift(e);
                if entries[e].complete.is_some() {
                    definite_left -= 1;
                }
                cur = events.next[HEAD];
                continue;
            }
            bit_clear(&mut linearized, e);
        }
        cur = events.next[cur];
    }
}

/// A violation from where the search got furthest: the operation that could not take effect,
/// what the register held, the operations just before it and those concurrent with it, and the
/// write of the value it expected.
fn explain(key: &str, ops: &[&Operation], entries: &[Entry], furthest: &Option<Furthest>) -> Violation {
    let Some(f) = furthest else {
        return Violation {
            key: key.to_string(),
            reason: "no operation can take effect first".to_string(),
            ops: ops.iter().take(8).map(|o| (*o).clone()).collect(),
        };
    };
    let stuck = &entries[f.stuck];
    let held = |v: Val| -> String {
        if v == ABSENT {
            return "absent".to_string();
        }
        // The id's value, from any operation that mentions it.
        for e in entries {
            let found = match (e.step, &ops[e.orig].command) {
                (Step::Write(w), Command::Put { value }) if w == v => Some(value.as_str()),
                (Step::Read(r), Command::Get { found }) if r == v => found.as_deref(),
                (Step::Cas { new, .. }, Command::Cas { new: s, .. }) if new == v => Some(s.as_str()),
                (Step::Cas { expected, .. }, Command::Cas { expected: s, .. }) if expected == v => s.as_deref(),
                _ => None,
            };
            if let Some(s) = found {
                return show(Some(s));
            }
        }
        format!("value #{v}")
    };
    let reason = format!(
        "{} operations can take effect in an order consistent with real time, leaving the register {}; \
         then this one cannot: {}",
        f.depth,
        held(f.state),
        ops[stuck.orig]
    );
    let mut involved: Vec<usize> = f.before.clone();
    involved.push(f.stuck);
    let s_end = stuck.complete.unwrap_or(u64::MAX);
    for (i, e) in entries.iter().enumerate() {
        let e_end = e.complete.unwrap_or(u64::MAX);
        if i != f.stuck && e.invoke <= s_end && stuck.invoke <= e_end && involved.len() < 12 {
            involved.push(i);
        }
    }
    let wanted = match stuck.step {
        Step::Read(v) => Some(v),
        Step::Cas { expected, held: Some(true), .. } => Some(expected),
        _ => None,
    };
    if let Some(v) = wanted.filter(|&v| v != ABSENT) {
        for (i, e) in entries.iter().enumerate() {
            let writes = match e.step {
                Step::Write(w) => w == v,
                Step::Cas { new, held, .. } => new == v && held != Some(false),
                Step::Read(_) => false,
            };
            if writes {
                involved.push(i);
            }
        }
    }
    involved.sort_unstable();
    involved.dedup();
    let mut out: Vec<Operation> = involved.iter().map(|&i| ops[entries[i].orig].clone()).collect();
    out.sort_by_key(|o| o.invoke);
    Violation { key: key.to_string(), reason, ops: out }
}

#[cfg(test)]
mod tests;
