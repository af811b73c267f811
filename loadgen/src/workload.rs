//! Workloads: what to run (operation mix, key distribution, key and value sizes) and the
//! generator that turns one into a stream of [`Op`]s for each worker.
//!
//! Generation must never be the bottleneck, so it is cheap by construction: a small fast RNG per
//! worker, keys written digit by digit into one exact-size allocation, and values that are
//! zero-copy slices of one pre-generated random buffer shared by every worker of a run.
//! Everything here is deterministic given (spec, seed, worker), apart from the key count that
//! workers share through [`KeySpace`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::dist::{DEFAULT_THETA, Distribution, KeyChooser};
use crate::op::{Op, OpKind};

/// YCSB's scan length bound (`maxscanlength`) for workload E.
pub const YCSB_SCAN_LENGTH: u64 = 100;

/// Largest value size accepted (etcd itself refuses requests above 1.5 MiB by default).
pub const MAX_VALUE_SIZE: usize = 64 << 20;

/// Bytes of random data values are sliced from (plus the largest value size), so consecutive
/// values differ and do not compress.
const VALUE_POOL: usize = 1 << 20;

/// Value sizes in bytes: every value's length is uniform in `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueSize {
    /// Smallest value, in bytes.
    pub min: usize,
    /// Largest value, in bytes (`>= min`).
    pub max: usize,
}

impl ValueSize {
    /// Parse `256`, `100-1000`, `1KiB`, `4k`, `1k-64k`: a size or an inclusive range of sizes, each
    /// with an optional binary suffix `B`, `k`/`K`/`KB`/`KiB` (1024) or `m`/`M`/`MB`/`MiB` (1024²).
    ///
    /// # Errors
    ///
    /// A malformed size, `min > max`, or a size above [`MAX_VALUE_SIZE`]; the message names
    /// `--value-size` and the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use conflux_loadgen::workload::ValueSize;
    /// assert_eq!(ValueSize::parse("4k"), Ok(ValueSize { min: 4096, max: 4096 }));
    /// assert_eq!(ValueSize::parse("100-1KiB"), Ok(ValueSize { min: 100, max: 1024 }));
    /// ```
    pub fn parse(s: &str) -> Result<ValueSize, String> {
        let bad = |why: String| format!("--value-size: invalid value {s:?}: {why}");
        let (min, max) = match s.split_once('-') {
            Some((lo, hi)) => (parse_size(lo).map_err(bad)?, parse_size(hi).map_err(bad)?),
            None => {
                let n = parse_size(s).map_err(bad)?;
                (n, n)
            }
        };
        if min > max {
            return Err(bad(format!("the range is empty ({min} > {max})")));
        }
        if max > MAX_VALUE_SIZE {
            return Err(bad(format!("{max} bytes is more than the {MAX_VALUE_SIZE} allowed")));
        }
        Ok(ValueSize { min, max })
    }

    /// Whether every value has the same size.
    pub fn is_fixed(&self) -> bool {
        self.min == self.max
    }
}

impl std::fmt::Display for ValueSize {
    /// `256` or `100-1000` (bytes): what [`ValueSize::parse`] reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_fixed() { write!(f, "{}", self.min) } else { write!(f, "{}-{}", self.min, self.max) }
    }
}

fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits);
    let unit: usize = match suffix.trim() {
        "" | "b" | "B" => 1,
        "k" | "K" | "kb" | "KB" | "kB" | "KiB" | "kib" => 1 << 10,
        "m" | "M" | "mb" | "MB" | "MiB" | "mib" => 1 << 20,
        other => return Err(format!("unknown size suffix {other:?} (use B, k/KiB or M/MiB)")),
    };
    let n: usize = number.parse().map_err(|_| format!("{s:?} is not a size"))?;
    n.checked_mul(unit).ok_or_else(|| format!("{s:?} is too large"))
}

/// Everything that defines a workload; reports embed it so runs can be compared like for like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// What the user called it: `put`, `ycsb-a`, `mix`, ...
    pub name: String,
    /// Operation kinds and their relative weights.
    pub mix: Vec<(OpKind, u32)>,
    /// How non-insert operations choose their key.
    pub distribution: Distribution,
    /// Keys loaded by the preload phase (and the range non-insert ops pick from, plus inserts).
    pub key_space: u64,
    /// Bytes per key, prefix included: keys are fixed width so their order is numeric order.
    pub key_size: usize,
    /// Value sizes.
    pub value_size: ValueSize,
    /// Most keys per scan (each scan's limit is uniform in `1..=scan_length`, as YCSB E).
    pub scan_length: u64,
    /// Prefix of every key (default `lg/`), so loadgen's keys are recognizable; counted in `key_size`.
    pub key_prefix: String,
}

impl WorkloadSpec {
    /// Check that the spec can be generated: some operation has weight, keys are wide enough to
    /// number the whole key space, scans have a length.
    ///
    /// # Errors
    ///
    /// What is wrong, naming the flag to change (`--mix`, `--key-size`, `--scan-length`).
    pub fn validate(&self) -> Result<(), String> {
        if self.mix.iter().all(|&(_, w)| w == 0) {
            return Err("--mix: no operation has a positive weight".to_string());
        }
        let digits = decimal_digits(self.key_space.saturating_sub(1));
        let needed = self.key_prefix.len() + digits;
        if self.key_size < needed {
            return Err(format!(
                "--key-size: {} bytes cannot number {} keys: the prefix {:?} and {digits} digits need {needed}",
                self.key_size, self.key_space, self.key_prefix
            ));
        }
        if self.scan_length == 0 && self.mix.iter().any(|&(k, w)| k == OpKind::Scan && w > 0) {
            return Err("--scan-length: scans need a length of at least 1".to_string());
        }
        Ok(())
    }
}

/// Parse an operation mix: `put=50,get=50` (weights are relative) or a single operation name.
/// Names are as [`OpKind::parse`] reads them (case-insensitive); zero-weight entries are dropped.
///
/// # Errors
///
/// An unknown name, a bad or missing weight, a name given twice, or no positive weight; the
/// message names `--mix` and the value.
///
/// # Examples
///
/// ```
/// use conflux_loadgen::{op::OpKind, workload::parse_mix};
/// assert_eq!(parse_mix("put=3,get=1"), Ok(vec![(OpKind::Put, 3), (OpKind::Get, 1)]));
/// assert_eq!(parse_mix("get"), Ok(vec![(OpKind::Get, 1)]));
/// ```
pub fn parse_mix(s: &str) -> Result<Vec<(OpKind, u32)>, String> {
    let bad = |why: String| format!("--mix: invalid value {s:?}: {why}");
    let mut mix: Vec<(OpKind, u32)> = Vec::new();
    let mut seen = Vec::new();
    let entries: Vec<&str> = s.split(',').map(str::trim).collect();
    for entry in &entries {
        let (name, weight) = match entry.split_once('=') {
            Some((name, weight)) => {
                let w = weight.trim().parse::<u32>().map_err(|_| bad(format!("weight {weight:?} is not a number")))?;
                (name.trim(), w)
            }
            None if entries.len() == 1 => (*entry, 1),
            None => return Err(bad(format!("{entry:?} has no weight (write {entry}=N)"))),
        };
        let kind = OpKind::parse(&name.to_ascii_lowercase()).ok_or_else(|| {
            let known: Vec<&str> = OpKind::ALL.iter().map(|k| k.as_str()).collect();
            bad(format!("unknown operation {name:?} (known: {})", known.join(", ")))
        })?;
        if seen.contains(&kind) {
            return Err(bad(format!("{kind} appears twice")));
        }
        seen.push(kind);
        if weight > 0 {
            mix.push((kind, weight));
        }
    }
    if mix.is_empty() {
        return Err(bad("no operation has a positive weight".to_string()));
    }
    if mix.iter().map(|&(_, w)| u64::from(w)).sum::<u64>() > u64::from(u32::MAX) {
        return Err(bad("the weights add up to more than 2^32".to_string()));
    }
    Ok(mix)
}

/// The YCSB core workloads A–F, as (mix, distribution); zipfian ones use θ = 0.99.
///
/// | | mix | keys |
/// |---|---|---|
/// | A | 50% get, 50% put (update) | zipfian |
/// | B | 95% get, 5% put | zipfian |
/// | C | 100% get | zipfian |
/// | D | 95% get, 5% insert | latest |
/// | E | 95% scan, 5% insert | zipfian (scan length uniform up to [`YCSB_SCAN_LENGTH`]) |
/// | F | 50% get, 50% read-modify-write | zipfian |
///
/// `letter` is case-insensitive and may be written `ycsb-a` or `workloada`.
///
/// # Errors
///
/// Anything but A–F; the message names `--workload` and the value.
pub fn ycsb(letter: &str) -> Result<(Vec<(OpKind, u32)>, Distribution), String> {
    let lower = letter.trim().to_ascii_lowercase();
    let l = lower.strip_prefix("ycsb-").or_else(|| lower.strip_prefix("workload")).unwrap_or(&lower);
    let zipfian = Distribution::Zipfian { theta: DEFAULT_THETA };
    use OpKind::*;
    Ok(match l {
        "a" => (vec![(Get, 50), (Put, 50)], zipfian),
        "b" => (vec![(Get, 95), (Put, 5)], zipfian),
        "c" => (vec![(Get, 100)], zipfian),
        "d" => (vec![(Get, 95), (Insert, 5)], Distribution::Latest { theta: DEFAULT_THETA }),
        "e" => (vec![(Scan, 95), (Insert, 5)], zipfian),
        "f" => (vec![(Get, 50), (ReadModifyWrite, 50)], zipfian),
        _ => return Err(format!("--workload: invalid value {letter:?}: YCSB core workloads are a, b, c, d, e and f")),
    })
}

/// Key number `n` → key bytes: `prefix` + `n` zero-padded in decimal to exactly `key_size` bytes,
/// so byte order is numeric order.
///
/// If `n` has more digits than fit, the key is the prefix and all of `n`'s digits — longer than
/// `key_size` and out of order, but still unique ([`WorkloadSpec::validate`] makes room for the
/// loaded keys; inserts past that many digits widen).
///
/// # Examples
///
/// ```
/// use conflux_loadgen::workload::key_name;
/// assert_eq!(&key_name("lg/", 42, 10)[..], b"lg/0000042");
/// ```
pub fn key_name(prefix: &str, n: u64, key_size: usize) -> Bytes {
    make_key(prefix.as_bytes(), n, key_size)
}

fn make_key(prefix: &[u8], n: u64, key_size: usize) -> Bytes {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut v = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let digits = &digits[start..];
    let len = key_size.max(prefix.len() + digits.len());
    // Exactly `len` capacity, so `Bytes::from` takes the buffer without a second allocation.
    let mut key = Vec::with_capacity(len);
    key.extend_from_slice(prefix);
    key.resize(len - digits.len(), b'0');
    key.extend_from_slice(digits);
    Bytes::from(key)
}

fn decimal_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Shared by all workers of a run: how many keys exist (loaded + inserted), and the next insert number.
#[derive(Debug)]
pub struct KeySpace {
    loaded: u64,
    inserted: AtomicU64,
}

impl KeySpace {
    /// A key space of `loaded` preloaded keys, numbered `0..loaded`; inserts continue from `loaded`.
    pub fn new(loaded: u64) -> Arc<KeySpace> {
        Arc::new(KeySpace { loaded, inserted: AtomicU64::new(0) })
    }

    /// Keys that exist: loaded plus every insert handed out (some may still be in flight, so a
    /// read of the newest keys can miss — as it can in YCSB without its acknowledgement window).
    pub fn count(&self) -> u64 {
        self.loaded + self.inserted.load(Ordering::Relaxed)
    }

    /// Claim the next key number to insert (`loaded`, `loaded + 1`, ...); unique across workers.
    pub fn next_insert(&self) -> u64 {
        self.loaded + self.inserted.fetch_add(1, Ordering::Relaxed)
    }
}

/// Makes the operations of one worker; deterministic given (spec, seed, worker) and the key count.
#[derive(Debug)]
pub struct OpGen {
    rng: SmallRng,
    keys: Arc<KeySpace>,
    chooser: KeyChooser,
    /// Kinds with cumulative weights: a draw `d` in `0..total` picks the first with `d < bound`.
    kinds: Box<[(OpKind, u64)]>,
    total: u64,
    prefix: Box<[u8]>,
    key_size: usize,
    values: Values,
    scan_length: u64,
}

impl OpGen {
    /// The generator of worker `worker` (workers of one run differ only in this number).
    ///
    /// # Panics
    ///
    /// If no operation in the mix has a positive weight ([`WorkloadSpec::validate`] rejects that).
    pub fn new(spec: &WorkloadSpec, keys: Arc<KeySpace>, seed: u64, worker: u64) -> OpGen {
        let mut total = 0u64;
        let kinds: Box<[(OpKind, u64)]> = spec
            .mix
            .iter()
            .filter(|&&(_, w)| w > 0)
            .map(|&(kind, w)| {
                total += u64::from(w);
                (kind, total)
            })
            .collect();
        assert!(total > 0, "workload {:?}: no operation has a positive weight", spec.name);
        OpGen {
            rng: SmallRng::seed_from_u64(stream_seed(seed, STREAM_WORKER, worker)),
            keys,
            chooser: KeyChooser::new(&spec.distribution, spec.key_space),
            kinds,
            total,
            prefix: spec.key_prefix.as_bytes().into(),
            key_size: spec.key_size,
            values: Values::new(seed, spec.value_size),
            scan_length: spec.scan_length.max(1),
        }
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        let kind = if self.kinds.len() == 1 {
            self.kinds[0].0
        } else {
            let d = self.rng.random_range(0..self.total);
            self.kinds.iter().find(|&&(_, bound)| d < bound).map_or(self.kinds[0].0, |&(kind, _)| kind)
        };
        if kind == OpKind::Insert {
            let key = make_key(&self.prefix, self.keys.next_insert(), self.key_size);
            return Op::Insert { key, value: self.values.next(&mut self.rng) };
        }
        let n = self.chooser.next(&mut self.rng, self.keys.count());
        let key = make_key(&self.prefix, n, self.key_size);
        match kind {
            OpKind::Put => Op::Put { key, value: self.values.next(&mut self.rng) },
            OpKind::Get => Op::Get { key },
            OpKind::Delete => Op::Delete { key },
            OpKind::Txn => Op::Txn { key, value: self.values.next(&mut self.rng) },
            OpKind::Scan => {
                let limit = self.rng.random_range(1..=self.scan_length);
                Op::Scan { key, limit: i64::try_from(limit).unwrap_or(i64::MAX) }
            }
            OpKind::ReadModifyWrite => Op::ReadModifyWrite { key, value: self.values.next(&mut self.rng) },
            OpKind::Watch => Op::Watch { key, value: self.values.next(&mut self.rng) },
            OpKind::Insert => unreachable!("handled above"),
        }
    }
}

/// The preload phase's puts: keys `[0, key_space)` in order, split into `parts` disjoint
/// contiguous chunks (one per worker): part `part`'s ops. The chunks of `0..parts` partition the
/// key space exactly; values are deterministic given (spec, seed, part, parts).
///
/// # Panics
///
/// If `part >= parts`.
pub fn preload_part(spec: &WorkloadSpec, seed: u64, part: u64, parts: u64) -> PreloadOps {
    assert!(part < parts, "preload part {part} of {parts}");
    let bound = |i: u64| (u128::from(spec.key_space) * u128::from(i) / u128::from(parts)) as u64;
    PreloadOps {
        keys: bound(part)..bound(part + 1),
        prefix: spec.key_prefix.as_bytes().into(),
        key_size: spec.key_size,
        rng: SmallRng::seed_from_u64(stream_seed(seed, STREAM_PRELOAD, part)),
        values: Values::new(seed, spec.value_size),
    }
}

/// One part of the preload phase: a put of each key number of [`PreloadOps::keys`], in order.
/// Made by [`preload_part`]; owns everything it needs, so it can move to a worker task.
#[derive(Debug)]
pub struct PreloadOps {
    keys: std::ops::Range<u64>,
    prefix: Box<[u8]>,
    key_size: usize,
    rng: SmallRng,
    values: Values,
}

impl PreloadOps {
    /// The key numbers not yet put.
    pub fn keys(&self) -> std::ops::Range<u64> {
        self.keys.clone()
    }
}

impl Iterator for PreloadOps {
    type Item = Op;

    fn next(&mut self) -> Option<Op> {
        let n = self.keys.next()?;
        Some(Op::Put { key: make_key(&self.prefix, n, self.key_size), value: self.values.next(&mut self.rng) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.keys.end - self.keys.start).ok();
        (left.unwrap_or(usize::MAX), left)
    }
}

impl ExactSizeIterator for PreloadOps {}

const STREAM_WORKER: u64 = 1;
const STREAM_PRELOAD: u64 = 2;

/// A well-mixed seed for one of the streams (workers, preload parts) of a run's seed.
fn stream_seed(seed: u64, stream: u64, index: u64) -> u64 {
    splitmix64(splitmix64(seed ^ splitmix64(stream)) ^ index)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Values as slices of a random pool: `VALUE_POOL + max` bytes, shared by every generator of the
/// same (seed, max) so a thousand workers hold one pool, not a thousand.
#[derive(Debug, Clone)]
struct Values {
    pool: Bytes,
    size: ValueSize,
}

impl Values {
    fn new(seed: u64, size: ValueSize) -> Values {
        static LAST: Mutex<Option<(u64, usize, Bytes)>> = Mutex::new(None);
        let len = VALUE_POOL + size.max;
        let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let pool = match &*last {
            Some((s, l, pool)) if *s == seed && *l == len => pool.clone(),
            _ => {
                let mut data = vec![0u8; len];
                SmallRng::seed_from_u64(stream_seed(seed, 0, 0)).fill_bytes(&mut data);
                let pool = Bytes::from(data);
                *last = Some((seed, len, pool.clone()));
                pool
            }
        };
        Values { pool, size }
    }

    fn next(&self, rng: &mut SmallRng) -> Bytes {
        let len = if self.size.is_fixed() { self.size.min } else { rng.random_range(self.size.min..=self.size.max) };
        let offset = rng.random_range(0..=VALUE_POOL);
        self.pool.slice(offset..offset + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mix: &str, distribution: Distribution) -> WorkloadSpec {
        WorkloadSpec {
            name: "test".to_string(),
            mix: parse_mix(mix).unwrap(),
            distribution,
            key_space: 1000,
            key_size: 16,
            value_size: ValueSize { min: 10, max: 300 },
            scan_length: 100,
            key_prefix: "lg/".to_string(),
        }
    }

    fn key_number(key: &[u8]) -> u64 {
        std::str::from_utf8(&key[3..]).unwrap().parse().unwrap()
    }

    #[test]
    fn value_size_parses_sizes_and_ranges() {
        let p = ValueSize::parse;
        assert_eq!(p("256"), Ok(ValueSize { min: 256, max: 256 }));
        assert_eq!(p("0"), Ok(ValueSize { min: 0, max: 0 }));
        assert_eq!(p("100-1000"), Ok(ValueSize { min: 100, max: 1000 }));
        assert_eq!(p("1KiB"), Ok(ValueSize { min: 1024, max: 1024 }));
        assert_eq!(p("4k"), Ok(ValueSize { min: 4096, max: 4096 }));
        assert_eq!(p("4K"), Ok(ValueSize { min: 4096, max: 4096 }));
        assert_eq!(p("512B"), Ok(ValueSize { min: 512, max: 512 }));
        assert_eq!(p("1k-2MiB"), Ok(ValueSize { min: 1024, max: 2 << 20 }));
        assert_eq!(p("1m"), Ok(ValueSize { min: 1 << 20, max: 1 << 20 }));
        assert_eq!(p(" 8 - 16 "), Ok(ValueSize { min: 8, max: 16 }));
        assert!(p("256").unwrap().is_fixed() && !p("1-2").unwrap().is_fixed());
        assert_eq!(p("100-1000").unwrap().to_string(), "100-1000");
        assert_eq!(p("1k").unwrap().to_string(), "1024");
        for bad in ["", "abc", "12x", "1000-100", "-5", "1-", "1G", "65M", "4-5-6", "99999999999999999999"] {
            let err = p(bad).unwrap_err();
            assert!(err.contains("--value-size") && err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn mixes_parse() {
        use OpKind::*;
        assert_eq!(parse_mix("put=50,get=50"), Ok(vec![(Put, 50), (Get, 50)]));
        assert_eq!(parse_mix("put"), Ok(vec![(Put, 1)]));
        assert_eq!(parse_mix("PUT=2, range=1 ,rmw=0"), Ok(vec![(Put, 2), (Get, 1)]));
        assert_eq!(parse_mix("txn=1,scan=2,insert=3,delete=4,watch=5,read-modify-write=6").unwrap().len(), 6);
        for bad in ["", "fly", "put,get", "put=x", "put=-1", "put=1,put=2", "put=0", "put=4294967295,get=1"] {
            let err = parse_mix(bad).unwrap_err();
            assert!(err.contains("--mix") && err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn ycsb_core_workloads() {
        use OpKind::*;
        let z = Distribution::Zipfian { theta: 0.99 };
        assert_eq!(ycsb("a"), Ok((vec![(Get, 50), (Put, 50)], z)));
        assert_eq!(ycsb("B"), Ok((vec![(Get, 95), (Put, 5)], z)));
        assert_eq!(ycsb("c"), Ok((vec![(Get, 100)], z)));
        assert_eq!(ycsb("D"), Ok((vec![(Get, 95), (Insert, 5)], Distribution::Latest { theta: 0.99 })));
        assert_eq!(ycsb("e"), Ok((vec![(Scan, 95), (Insert, 5)], z)));
        assert_eq!(ycsb("f"), Ok((vec![(Get, 50), (ReadModifyWrite, 50)], z)));
        assert_eq!(ycsb("ycsb-A"), ycsb("a"));
        assert_eq!(ycsb("workloadf"), ycsb("F"));
        for bad in ["g", "", "ab"] {
            let err = ycsb(bad).unwrap_err();
            assert!(err.contains("--workload") && err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn key_names_are_fixed_width_and_ordered() {
        assert_eq!(&key_name("lg/", 0, 8)[..], b"lg/00000");
        assert_eq!(&key_name("lg/", 12345, 8)[..], b"lg/12345");
        assert_eq!(&key_name("", 7, 3)[..], b"007");
        assert_eq!(&key_name("lg/", u64::MAX, 23)[..], format!("lg/{}", u64::MAX).as_bytes());
        // Too many digits: wider, still unique.
        assert_eq!(&key_name("lg/", 123456, 8)[..], b"lg/123456");
        let mut prev = key_name("lg/", 0, 12);
        for n in (1..100_000).chain([999_999_999]) {
            let k = key_name("lg/", n, 12);
            assert_eq!(k.len(), 12);
            assert!(prev < k, "{prev:?} !< {k:?}");
            prev = k;
        }
    }

    #[test]
    fn validate_checks_key_width_and_mix() {
        let mut s = spec("put", Distribution::Uniform);
        assert_eq!(s.validate(), Ok(()));
        s.key_space = 100_000_000_000_000; // 14 digits after "lg/": 17 bytes
        assert!(s.validate().unwrap_err().contains("--key-size"));
        s.key_size = 17;
        assert_eq!(s.validate(), Ok(()));
        s.key_space = 1000;
        s.key_size = 6; // "lg/" + 999
        assert_eq!(s.validate(), Ok(()));
        s.key_size = 5;
        assert!(s.validate().unwrap_err().contains("--key-size"));
        let mut s = spec("scan", Distribution::Uniform);
        s.scan_length = 0;
        assert!(s.validate().unwrap_err().contains("--scan-length"));
        s.mix = vec![(OpKind::Put, 0)];
        assert!(s.validate().unwrap_err().contains("--mix"));
    }

    #[test]
    fn same_seed_same_ops() {
        let s = spec("put=1,get=1,delete=1,txn=1,scan=1,insert=1,rmw=1,watch=1", Distribution::Zipfian { theta: 0.9 });
        let run = |seed, worker| {
            let mut g = OpGen::new(&s, KeySpace::new(s.key_space), seed, worker);
            (0..2000).map(|_| g.next_op()).collect::<Vec<Op>>()
        };
        assert_eq!(run(1, 0), run(1, 0));
        assert_ne!(run(1, 0), run(1, 1));
        assert_ne!(run(1, 0), run(2, 0));
        let preload = |seed| preload_part(&s, seed, 1, 3).collect::<Vec<Op>>();
        assert_eq!(preload(4), preload(4));
        assert_ne!(preload(4), preload(5));
    }

    #[test]
    fn ops_follow_the_spec() {
        let s = spec("put=1,get=1,delete=1,txn=1,scan=1,insert=1,rmw=1,watch=1", Distribution::Uniform);
        let keys = KeySpace::new(s.key_space);
        let mut g = OpGen::new(&s, keys.clone(), 3, 0);
        let mut per_kind = std::collections::BTreeMap::new();
        let mut inserts = Vec::new();
        let mut sizes = (usize::MAX, 0);
        for _ in 0..80_000 {
            let op = g.next_op();
            *per_kind.entry(op.kind()).or_insert(0u32) += 1;
            let (key, value, limit) = match &op {
                Op::Put { key, value }
                | Op::Txn { key, value }
                | Op::ReadModifyWrite { key, value }
                | Op::Watch { key, value }
                | Op::Insert { key, value } => (key, Some(value), None),
                Op::Get { key } | Op::Delete { key } => (key, None, None),
                Op::Scan { key, limit } => (key, None, Some(*limit)),
            };
            assert_eq!(key.len(), 16);
            assert!(key.starts_with(b"lg/"));
            let n = key_number(key);
            if let Op::Insert { .. } = op {
                inserts.push(n);
            } else {
                assert!(n < keys.count());
            }
            if let Some(v) = value {
                assert!((10..=300).contains(&v.len()), "value of {} bytes", v.len());
                sizes = (sizes.0.min(v.len()), sizes.1.max(v.len()));
            }
            if let Some(limit) = limit {
                assert!((1..=100).contains(&limit));
            }
        }
        assert_eq!(sizes, (10, 300), "value sizes cover the range");
        assert_eq!(per_kind.len(), 8);
        assert!(per_kind.values().all(|&c| (9_000..11_000).contains(&c)), "{per_kind:?}");
        assert_eq!(inserts, (1000..1000 + inserts.len() as u64).collect::<Vec<_>>());
        assert_eq!(keys.count(), 1000 + inserts.len() as u64);
        // Values are slices of random data, not one repeated value.
        let a = OpGen::new(&spec("put", Distribution::Uniform), KeySpace::new(10), 3, 0).next_op();
        let b = OpGen::new(&spec("put", Distribution::Uniform), KeySpace::new(10), 3, 1).next_op();
        let (Op::Put { value: a, .. }, Op::Put { value: b, .. }) = (a, b) else { panic!("puts") };
        assert_ne!(a[..10], b[..10]);
    }

    #[test]
    fn fixed_value_sizes_are_exact() {
        let mut s = spec("put", Distribution::Sequential);
        s.value_size = ValueSize::parse("256").unwrap();
        let mut g = OpGen::new(&s, KeySpace::new(s.key_space), 0, 0);
        for i in 0..2000u64 {
            let Op::Put { key, value } = g.next_op() else { panic!("put") };
            assert_eq!(value.len(), 256);
            assert_eq!(key_number(&key), i % 1000, "sequential keys");
        }
    }

    #[test]
    fn inserts_are_unique_across_workers() {
        let s = spec("insert", Distribution::Uniform);
        let keys = KeySpace::new(50);
        let mut gens: Vec<OpGen> = (0..4).map(|w| OpGen::new(&s, keys.clone(), 1, w)).collect();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..400 {
            let Op::Insert { key, .. } = gens[i % 4].next_op() else { panic!("insert") };
            assert!(seen.insert(key_number(&key)));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), (50..450).collect::<Vec<_>>());
    }

    #[test]
    fn preload_parts_partition_the_key_space() {
        for (key_space, parts) in [(1000u64, 1u64), (1000, 7), (10, 16), (0, 3), (12345, 100)] {
            let mut s = spec("put", Distribution::Uniform);
            s.key_space = key_space;
            let mut all = Vec::new();
            for part in 0..parts {
                let ops = preload_part(&s, 9, part, parts);
                let expected = ops.len();
                let chunk: Vec<u64> = ops
                    .map(|op| match op {
                        Op::Put { key, value } => {
                            assert!((10..=300).contains(&value.len()));
                            key_number(&key)
                        }
                        other => panic!("preload made {other:?}"),
                    })
                    .collect();
                assert_eq!(chunk.len(), expected);
                // Contiguous, in order, and balanced to within one key.
                assert!(chunk.windows(2).all(|w| w[1] == w[0] + 1));
                assert!(chunk.len() as u64 >= key_space / parts && chunk.len() as u64 <= key_space / parts + 1);
                all.extend(chunk);
            }
            assert_eq!(all, (0..key_space).collect::<Vec<_>>(), "key space {key_space} in {parts} parts");
        }
    }

    #[test]
    fn latest_workload_reads_recent_inserts() {
        let mut s = spec("get=95,insert=5", Distribution::Latest { theta: 0.99 });
        s.key_space = 100_000;
        let keys = KeySpace::new(s.key_space);
        let mut g = OpGen::new(&s, keys.clone(), 2, 0);
        let mut recent = 0;
        let mut gets = 0;
        for _ in 0..50_000 {
            if let Op::Get { key } = g.next_op() {
                gets += 1;
                recent += u32::from(key_number(&key) + 1000 >= keys.count());
            }
        }
        assert!(keys.count() > 100_000);
        assert!(f64::from(recent) > 0.5 * f64::from(gets), "{recent} of {gets} gets in the newest 1000 keys");
    }
}
