//! Key choosers: which key number an operation touches, by YCSB's distributions.
//!
//! The zipfian sampler is the one of Gray et al., "Quickly generating billion-record synthetic
//! databases" (SIGMOD '94), as YCSB uses it. Its normalising constant `zeta(n, θ) = Σ_{i=1..n} i^-θ`
//! is computed in O(1) for any `n` (an exact head plus an Euler–Maclaurin tail), so a chooser over
//! a billion keys starts instantly. This module owns no I/O and no shared state: a [`KeyChooser`]
//! belongs to one worker, and the caller says how many keys exist on every draw.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// YCSB's default zipfian constant (`zipfian.constant`).
pub const DEFAULT_THETA: f64 = 0.99;

/// YCSB hotspot defaults: 20% of the keys ...
pub const DEFAULT_HOT_SET: f64 = 0.2;

/// ... receive 80% of the operations.
pub const DEFAULT_HOT_OPS: f64 = 0.8;

/// How many items the scrambled zipfian draws popularity ranks from before hashing them onto the
/// key space (YCSB's `ITEM_COUNT`). Far more than any key space, so the hash, not the rank
/// order, decides where the popular keys are.
pub const SCRAMBLED_ITEMS: u64 = 10_000_000_000;

/// How keys are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Distribution {
    /// Every existing key equally likely.
    Uniform,
    /// Scrambled zipfian (YCSB's): zipfian popularity, items scattered over the key space by a hash.
    Zipfian {
        /// Skew, in (0, 1); YCSB uses 0.99.
        theta: f64,
    },
    /// 0, 1, 2, ... wrapping at the key count.
    Sequential,
    /// YCSB "latest": zipfian over recency — the most recently inserted keys are the most popular.
    Latest {
        /// Skew, in (0, 1); YCSB uses 0.99.
        theta: f64,
    },
    /// A fraction `hot_set` of the keys receives a fraction `hot_ops` of the operations (YCSB
    /// hotspot; defaults 0.2 / 0.8). The hot keys are the lowest-numbered ones.
    Hotspot {
        /// Fraction of the keys that are hot, in (0, 1).
        hot_set: f64,
        /// Fraction of the operations that go to the hot keys, in [0, 1].
        hot_ops: f64,
    },
}

impl Distribution {
    /// Parse `uniform|zipfian|sequential|latest|hotspot` (case-insensitive).
    ///
    /// `zipfian` and `latest` take their skew from `theta` (the `--zipf-theta` flag), or from a
    /// `:θ` suffix (`zipfian:0.9`); `hotspot` takes optional fractions as `hotspot:0.2:0.8`
    /// (hot set, hot ops). Whatever [`Distribution::name`] prints parses back to the same value.
    ///
    /// # Errors
    ///
    /// An unknown name, or parameters out of range, with a message naming the flag and the value:
    /// YCSB's zipfian needs 0 < θ < 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use conflux_loadgen::dist::Distribution;
    /// assert_eq!(Distribution::parse("zipfian", 0.99), Ok(Distribution::Zipfian { theta: 0.99 }));
    /// assert_eq!(
    ///     Distribution::parse("hotspot:0.1:0.9", 0.99),
    ///     Ok(Distribution::Hotspot { hot_set: 0.1, hot_ops: 0.9 })
    /// );
    /// assert!(Distribution::parse("zipfian", 1.5).unwrap_err().contains("--zipf-theta"));
    /// ```
    pub fn parse(s: &str, theta: f64) -> Result<Distribution, String> {
        let lower = s.trim().to_ascii_lowercase();
        let mut parts = lower.split(':');
        let name = parts.next().unwrap_or_default();
        let params: Vec<&str> = parts.collect();
        let bad = |why: &str| format!("--distribution: invalid value {s:?}: {why}");
        let number = |p: &str| p.parse::<f64>().map_err(|_| bad(&format!("{p:?} is not a number")));
        let no_params = |d: Distribution| if params.is_empty() { Ok(d) } else { Err(bad("takes no parameters")) };
        let skew = || -> Result<f64, String> {
            match params[..] {
                [] => check_theta(theta).map_err(|why| format!("--zipf-theta: invalid value {theta}: {why}")),
                [p] => check_theta(number(p)?).map_err(|why| bad(&why)),
                _ => Err(bad("expected at most one parameter, theta (e.g. zipfian:0.99)")),
            }
        };
        match name {
            "uniform" => no_params(Distribution::Uniform),
            "sequential" => no_params(Distribution::Sequential),
            "zipfian" | "zipf" => Ok(Distribution::Zipfian { theta: skew()? }),
            "latest" => Ok(Distribution::Latest { theta: skew()? }),
            "hotspot" => {
                let (hot_set, hot_ops) = match params[..] {
                    [] => (DEFAULT_HOT_SET, DEFAULT_HOT_OPS),
                    [set] => (number(set)?, DEFAULT_HOT_OPS),
                    [set, ops] => (number(set)?, number(ops)?),
                    _ => return Err(bad("expected hotspot[:HOT_SET[:HOT_OPS]] (e.g. hotspot:0.2:0.8)")),
                };
                if !(hot_set > 0.0 && hot_set < 1.0) {
                    return Err(bad(&format!("hot set fraction {hot_set} must be in (0, 1)")));
                }
                if !(0.0..=1.0).contains(&hot_ops) {
                    return Err(bad(&format!("hot operations fraction {hot_ops} must be in [0, 1]")));
                }
                Ok(Distribution::Hotspot { hot_set, hot_ops })
            }
            _ => Err(bad("expected uniform, zipfian, sequential, latest or hotspot")),
        }
    }

    /// The name reports use, with parameters: `uniform`, `zipfian:0.99`, `sequential`,
    /// `latest:0.99`, `hotspot:0.2:0.8`. [`Distribution::parse`] reads it back.
    pub fn name(&self) -> String {
        match self {
            Distribution::Uniform => "uniform".to_string(),
            Distribution::Zipfian { theta } => format!("zipfian:{theta}"),
            Distribution::Sequential => "sequential".to_string(),
            Distribution::Latest { theta } => format!("latest:{theta}"),
            Distribution::Hotspot { hot_set, hot_ops } => format!("hotspot:{hot_set}:{hot_ops}"),
        }
    }
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

fn check_theta(theta: f64) -> Result<f64, String> {
    // Gray's closed form divides by (1 - θ) and assumes θ < 1; θ = 0 is just uniform.
    if theta > 0.0 && theta < 1.0 {
        Ok(theta)
    } else {
        Err(format!("theta {theta} is out of range: YCSB's zipfian needs 0 < theta < 1 (its default is 0.99)"))
    }
}

/// Chooses key numbers in [0, count) where count = loaded keys + inserted so far.
///
/// One per worker (it keeps state: the sequential cursor, the latest distribution's zeta).
#[derive(Debug, Clone)]
pub struct KeyChooser {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Uniform,
    Scrambled {
        zipf: Zipf,
        /// The hash is reduced modulo this; it starts at the loaded key count and doubles when
        /// inserts outgrow it, so the popular keys move only at each doubling.
        range: u64,
    },
    Sequential {
        next: u64,
    },
    Latest {
        zipf: Zipf,
        zeta: Zeta,
    },
    Hotspot {
        hot_set: f64,
        hot_ops: f64,
    },
}

impl KeyChooser {
    /// A chooser for `dist` over a key space of `key_space` loaded keys.
    ///
    /// Cheap for any `key_space` (zeta is computed in constant time), so it may be built per worker.
    pub fn new(dist: &Distribution, key_space: u64) -> KeyChooser {
        let inner = match *dist {
            Distribution::Uniform => Inner::Uniform,
            Distribution::Zipfian { theta } => {
                let zeta = Zeta::new(theta);
                Inner::Scrambled {
                    zipf: Zipf::new(theta, SCRAMBLED_ITEMS, zeta.zeta(SCRAMBLED_ITEMS)),
                    range: key_space.max(1),
                }
            }
            Distribution::Sequential => Inner::Sequential { next: 0 },
            Distribution::Latest { theta } => {
                let zeta = Zeta::new(theta);
                let n = key_space.max(1);
                Inner::Latest { zipf: Zipf::new(theta, n, zeta.zeta(n)), zeta }
            }
            Distribution::Hotspot { hot_set, hot_ops } => Inner::Hotspot { hot_set, hot_ops },
        };
        KeyChooser { inner }
    }

    /// The next key number, in `[0, count)` (0 when `count` is 0: there is nothing to choose).
    pub fn next<R: Rng + ?Sized>(&mut self, rng: &mut R, count: u64) -> u64 {
        if count <= 1 {
            return 0;
        }
        match &mut self.inner {
            Inner::Uniform => rng.random_range(0..count),
            Inner::Scrambled { zipf, range } => {
                while *range < count {
                    *range = range.saturating_mul(2);
                }
                // Ranks hashed past `count` are keys not inserted yet (or, if the caller shrank
                // `count`, keys that no longer count): draw again, as YCSB does.
                for _ in 0..64 {
                    let key = fnv1a64(zipf.sample(rng.random())) % *range;
                    if key < count {
                        return key;
                    }
                }
                fnv1a64(zipf.sample(rng.random())) % count
            }
            Inner::Sequential { next } => {
                let key = if *next >= count { 0 } else { *next };
                *next = key + 1;
                key
            }
            Inner::Latest { zipf, zeta } => {
                if zipf.n != count {
                    let zetan = if count > zipf.n && count - zipf.n <= INCREMENTAL_ZETA {
                        zeta.extend(zipf.n, zipf.zetan, count)
                    } else {
                        zeta.zeta(count)
                    };
                    zipf.set_n(count, zetan);
                }
                count - 1 - zipf.sample(rng.random())
            }
            Inner::Hotspot { hot_set, hot_ops } => {
                let hot = ((count as f64 * *hot_set) as u64).min(count);
                if hot == 0 || hot == count {
                    rng.random_range(0..count)
                } else if rng.random::<f64>() < *hot_ops {
                    rng.random_range(0..hot)
                } else {
                    rng.random_range(hot..count)
                }
            }
        }
    }
}

/// Past this many new keys, recomputing zeta in closed form beats adding the new terms.
const INCREMENTAL_ZETA: u64 = 64;

/// FNV-1a, 64-bit, over the little-endian bytes of `v`: YCSB's scramble.
fn fnv1a64(v: u64) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    v.to_le_bytes().iter().fold(OFFSET_BASIS, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Gray et al.'s zipfian sampler over ranks [0, n): rank 0 most popular, P(i) ∝ (i+1)^-θ.
#[derive(Debug, Clone)]
struct Zipf {
    theta: f64,
    n: u64,
    zetan: f64,
    alpha: f64,
    eta: f64,
    /// 1 + 0.5^θ = zeta(2, θ): below it (times zetan), rank 0 or 1 exactly.
    zeta2: f64,
}

impl Zipf {
    fn new(theta: f64, n: u64, zetan: f64) -> Zipf {
        let mut z =
            Zipf { theta, n: 0, zetan: 0.0, alpha: 1.0 / (1.0 - theta), eta: 0.0, zeta2: 1.0 + 0.5f64.powf(theta) };
        z.set_n(n, zetan);
        z
    }

    fn set_n(&mut self, n: u64, zetan: f64) {
        self.n = n;
        self.zetan = zetan;
        // With n <= 2 every draw is decided by the exact rank-0/rank-1 tests; eta would be 0/0.
        self.eta =
            if n <= 2 { 0.0 } else { (1.0 - (2.0 / n as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / zetan) };
    }

    /// A rank for the uniform draw `u` in [0, 1).
    fn sample(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < self.zeta2 || self.n <= 2 {
            return 1.min(self.n - 1);
        }
        let rank = self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha);
        (rank as u64).min(self.n - 1)
    }
}

/// `zeta(n, θ) = Σ_{i=1..n} i^-θ` for any n in constant time.
#[derive(Debug, Clone)]
struct Zeta {
    theta: f64,
    /// Σ_{i=1..HEAD-1} i^-θ.
    head: f64,
}

/// Terms summed exactly; beyond, the Euler–Maclaurin remainder is below 1e-20.
const HEAD: u64 = 1000;

impl Zeta {
    fn new(theta: f64) -> Zeta {
        Zeta { theta, head: (1..HEAD).map(|i| (i as f64).powf(-theta)).sum() }
    }

    fn zeta(&self, n: u64) -> f64 {
        let t = self.theta;
        if n < HEAD {
            return (1..=n).map(|i| (i as f64).powf(-t)).sum();
        }
        // Σ_{i=a..b} f(i) = ∫_a^b f + (f(a)+f(b))/2 + (f'(b)-f'(a))/12 - (f'''(b)-f'''(a))/720 + …
        // with f(x) = x^-θ, f'(x) = -θ x^(-θ-1), f'''(x) = -θ(θ+1)(θ+2) x^(-θ-3).
        let (a, b) = (HEAD as f64, n as f64);
        let integral = (b.powf(1.0 - t) - a.powf(1.0 - t)) / (1.0 - t);
        let ends = (a.powf(-t) + b.powf(-t)) / 2.0;
        let d1 = |x: f64| -t * x.powf(-t - 1.0);
        let d3 = |x: f64| -t * (t + 1.0) * (t + 2.0) * x.powf(-t - 3.0);
        self.head + integral + ends + (d1(b) - d1(a)) / 12.0 - (d3(b) - d3(a)) / 720.0
    }

    /// zeta(to) from zeta(from) = `zeta_from`, adding the terms from+1..=to.
    fn extend(&self, from: u64, zeta_from: f64, to: u64) -> f64 {
        zeta_from + (from + 1..=to).map(|i| (i as f64).powf(-self.theta)).sum::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn exact_zeta(n: u64, theta: f64) -> f64 {
        (1..=n).map(|i| (i as f64).powf(-theta)).sum()
    }

    fn counts(dist: &Distribution, n: u64, draws: usize) -> Vec<u64> {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut chooser = KeyChooser::new(dist, n);
        let mut counts = vec![0u64; n as usize];
        for _ in 0..draws {
            counts[chooser.next(&mut rng, n) as usize] += 1;
        }
        counts
    }

    #[test]
    fn zeta_closed_form_matches_the_sum() {
        for theta in [0.5, 0.8, 0.99, 0.999] {
            let z = Zeta::new(theta);
            for n in [1, 2, 10, 999, 1000, 1001, 12_345, 1_000_000] {
                let (got, want) = (z.zeta(n), exact_zeta(n, theta));
                assert!((got - want).abs() / want < 1e-12, "theta {theta} n {n}: {got} vs {want}");
            }
            assert!((z.extend(5000, z.zeta(5000), 5050) - z.zeta(5050)).abs() < 1e-10);
        }
        // YCSB's precomputed ZETAN for its 10^10 items at θ = 0.99.
        assert!((Zeta::new(0.99).zeta(SCRAMBLED_ITEMS) - 26.46902820178302).abs() < 1e-9);
    }

    #[test]
    fn uniform_buckets_are_even() {
        let (n, draws) = (100u64, 1_000_000usize);
        let counts = counts(&Distribution::Uniform, n, draws);
        let expected = draws as f64 / n as f64;
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
        // 99 degrees of freedom: P(chi2 > 148) ≈ 0.001.
        assert!(chi2 < 148.0, "chi-square {chi2}");
        for &c in &counts {
            assert!((c as f64 - expected).abs() / expected < 0.05, "bucket {c} vs {expected}");
        }
    }

    #[test]
    fn zipf_sampler_matches_theory() {
        let (n, theta, draws) = (1000u64, 0.99, 1_000_000usize);
        let zipf = Zipf::new(theta, n, exact_zeta(n, theta));
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = vec![0u64; n as usize];
        for _ in 0..draws {
            counts[zipf.sample(rng.random()) as usize] += 1;
        }
        let share = |c: u64| c as f64 / draws as f64;
        let zetan = exact_zeta(n, theta);
        assert!((share(counts[0]) - 1.0 / zetan).abs() < 0.005, "top {} vs {}", share(counts[0]), 1.0 / zetan);
        let top10_theory = exact_zeta(10, theta) / zetan;
        let top10 = share(counts[..10].iter().sum());
        assert!((top10 - top10_theory).abs() < 0.02, "top-10 {top10} vs {top10_theory}");
        // Popularity falls with rank.
        assert!(counts[0] > counts[1] && counts[1] > counts[5] && counts[5] > counts[100]);
    }

    #[test]
    fn scrambled_zipfian_is_skewed_and_spread() {
        let (n, draws) = (10_000u64, 1_000_000usize);
        let counts = counts(&Distribution::Zipfian { theta: 0.99 }, n, draws);
        let mut sorted: Vec<(u64, usize)> = counts.iter().enumerate().map(|(k, &c)| (c, k)).collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        // The hottest key is rank 0 of 10^10 items: 1/zeta(10^10, θ), plus its share of the
        // uniform-looking background of far ranks (≈ 1/n).
        let top = sorted[0].0 as f64 / draws as f64;
        let rank0 = 1.0 / Zeta::new(0.99).zeta(SCRAMBLED_ITEMS);
        assert!(top > rank0 && top < rank0 + 3.0 / n as f64, "top share {top} vs rank-0 share {rank0}");
        assert_eq!(sorted[0].1 as u64, fnv1a64(0) % n);
        let top10: f64 = sorted[..10].iter().map(|&(c, _)| c as f64).sum::<f64>() / draws as f64;
        let top10_ranks = exact_zeta(10, 0.99) / Zeta::new(0.99).zeta(SCRAMBLED_ITEMS);
        assert!(top10 > top10_ranks && top10 < top10_ranks + 0.01, "top-10 {top10} vs {top10_ranks}");
        // Scattered: the ten hottest keys are not bunched at the low end, and every tenth of the
        // key space holds some of the hundred hottest.
        assert!(sorted[..10].iter().any(|&(_, k)| k as u64 > n / 2));
        let mut deciles = [0; 10];
        for &(_, k) in &sorted[..100] {
            deciles[k * 10 / n as usize] += 1;
        }
        assert!(deciles.iter().all(|&d| d > 0), "hot keys by decile: {deciles:?}");
    }

    #[test]
    fn scrambled_zipfian_stays_in_range_as_keys_grow() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut chooser = KeyChooser::new(&Distribution::Zipfian { theta: 0.99 }, 100);
        let mut saw_new = false;
        for count in (100..1000).chain((1..50).rev()) {
            for _ in 0..100 {
                let k = chooser.next(&mut rng, count);
                assert!(k < count);
                saw_new |= k >= 100;
            }
        }
        assert!(saw_new, "inserted keys are chosen too");
    }

    #[test]
    fn sequential_counts_up_and_wraps() {
        let mut rng = SmallRng::seed_from_u64(0);
        let mut chooser = KeyChooser::new(&Distribution::Sequential, 5);
        let got: Vec<u64> = (0..12).map(|_| chooser.next(&mut rng, 5)).collect();
        assert_eq!(got, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]);
        // The key count grows: the cursor carries on instead of wrapping.
        let got: Vec<u64> = (0..6).map(|_| chooser.next(&mut rng, 6)).collect();
        assert_eq!(got, [2, 3, 4, 5, 0, 1]);
        // It shrinks below the cursor: wrap.
        assert_eq!(chooser.next(&mut rng, 2), 0);
    }

    #[test]
    fn latest_favours_the_newest_keys_as_they_arrive() {
        let mut rng = SmallRng::seed_from_u64(5);
        let mut chooser = KeyChooser::new(&Distribution::Latest { theta: 0.99 }, 1000);
        for count in [1000u64, 1001, 1050, 5000, 2_000_000] {
            let draws = 200_000;
            let mut newest = [0u64; 3];
            let mut old_half = 0;
            for _ in 0..draws {
                let k = chooser.next(&mut rng, count);
                assert!(k < count);
                if k + 3 >= count {
                    newest[(count - 1 - k) as usize] += 1;
                }
                old_half += u64::from(k < count / 2);
            }
            let zetan = exact_zeta(count, 0.99);
            let share = newest[0] as f64 / draws as f64;
            assert!((share - 1.0 / zetan).abs() < 0.01, "count {count}: newest {share} vs {}", 1.0 / zetan);
            assert!(newest[0] > newest[1] && newest[1] > newest[2], "count {count}: {newest:?}");
            assert!((old_half as f64) < 0.25 * draws as f64, "count {count}: old half {old_half}");
        }
    }

    #[test]
    fn hotspot_sends_hot_ops_to_the_hot_set() {
        let (n, draws) = (1000u64, 500_000usize);
        for (hot_set, hot_ops) in [(0.2, 0.8), (0.05, 0.5)] {
            let counts = counts(&Distribution::Hotspot { hot_set, hot_ops }, n, draws);
            let hot_n = (n as f64 * hot_set) as usize;
            let hot: u64 = counts[..hot_n].iter().sum();
            let share = hot as f64 / draws as f64;
            assert!((share - hot_ops).abs() < 0.01, "hot share {share} vs {hot_ops}");
            // Uniform within each set.
            let per_hot = hot_ops * draws as f64 / hot_n as f64;
            assert!(counts[..hot_n].iter().all(|&c| (c as f64 - per_hot).abs() / per_hot < 0.15));
        }
    }

    #[test]
    fn tiny_key_counts() {
        let mut rng = SmallRng::seed_from_u64(9);
        for dist in [
            Distribution::Uniform,
            Distribution::Zipfian { theta: 0.99 },
            Distribution::Sequential,
            Distribution::Latest { theta: 0.5 },
            Distribution::Hotspot { hot_set: 0.2, hot_ops: 0.8 },
        ] {
            let mut chooser = KeyChooser::new(&dist, 0);
            for count in [0u64, 1, 2, 3, 2, 1, 4] {
                for _ in 0..200 {
                    let k = chooser.next(&mut rng, count);
                    assert!(k < count.max(1), "{dist:?} count {count} gave {k}");
                }
            }
        }
    }

    #[test]
    fn parse_names_and_errors() {
        let p = |s| Distribution::parse(s, 0.9);
        assert_eq!(p("uniform"), Ok(Distribution::Uniform));
        assert_eq!(p("Sequential"), Ok(Distribution::Sequential));
        assert_eq!(p("zipfian"), Ok(Distribution::Zipfian { theta: 0.9 }));
        assert_eq!(p("zipfian:0.5"), Ok(Distribution::Zipfian { theta: 0.5 }));
        assert_eq!(p("latest"), Ok(Distribution::Latest { theta: 0.9 }));
        assert_eq!(p("hotspot"), Ok(Distribution::Hotspot { hot_set: 0.2, hot_ops: 0.8 }));
        assert_eq!(p("hotspot:0.1"), Ok(Distribution::Hotspot { hot_set: 0.1, hot_ops: 0.8 }));
        assert_eq!(p("hotspot:0.01:0.99"), Ok(Distribution::Hotspot { hot_set: 0.01, hot_ops: 0.99 }));
        for d in [p("zipfian").unwrap(), p("latest:0.3").unwrap(), p("hotspot:0.3:0.6").unwrap(), p("uniform").unwrap()]
        {
            assert_eq!(Distribution::parse(&d.name(), 0.1), Ok(d));
        }
        for theta in [1.0, 0.0, -0.5, 1.5, f64::NAN] {
            let err = Distribution::parse("zipfian", theta).unwrap_err();
            assert!(err.contains("--zipf-theta") && err.contains(&theta.to_string()), "{err}");
            assert!(Distribution::parse("latest", theta).unwrap_err().contains("--zipf-theta"));
        }
        // theta is not checked where it is not used.
        assert_eq!(Distribution::parse("uniform", 1.0), Ok(Distribution::Uniform));
        for bad in ["gaussian", "hotspot:1.5", "hotspot:0.2:2", "hotspot:x", "uniform:3", "zipfian:1", "zipfian:0.5:1"]
        {
            let err = p(bad).unwrap_err();
            assert!(err.contains("--distribution") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn serializes_as_name_and_params() {
        let json = serde_json::to_string(&Distribution::Zipfian { theta: 0.99 }).unwrap();
        assert_eq!(json, r#"{"name":"zipfian","theta":0.99}"#);
        assert_eq!(serde_json::to_string(&Distribution::Uniform).unwrap(), r#"{"name":"uniform"}"#);
        let hot = Distribution::Hotspot { hot_set: 0.2, hot_ops: 0.8 };
        assert_eq!(serde_json::from_str::<Distribution>(&serde_json::to_string(&hot).unwrap()).unwrap(), hot);
    }
}
