//! L7 DDoS detection, pure: a per-zone baseline of requests per second (smoothed); when a
//! second's rate exceeds `k` × baseline and an absolute floor, the most specific fingerprint
//! that carries most of that second's traffic (client address, user agent, path, header order,
//! client /24) *and* carries far more of it than it normally does becomes a mitigation for a
//! while. The second condition tells an attack from a flash crowd: when a popular page gets
//! ten times its traffic, its path still has its usual share and nothing is mitigated; when one
//! address that normally sends a sliver sends most of the traffic, it is. Counting uses a
//! bounded top-k summary per feature (Space-Saving) and a bounded table of usual shares, so
//! memory is fixed whatever the attacker varies.

use std::collections::HashMap;

/// Fingerprint features, most specific first.
/// A value of 0 is "absent" (`tls_ja4` on plain HTTP): never counted, never mitigated.
pub const FEATURES: [&str; 6] = [
    "ip",
    "user_agent",
    "path",
    "header_order",
    "tls_ja4",
    "subnet",
];

/// Tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdosParams {
    /// Rate over `k` × baseline is an attack...
    pub k: f64,
    /// ... when it is also over this many requests per second.
    pub floor_rps: f64,
    /// A fingerprint must carry this share of the attack second's requests.
    pub dominance: f64,
    /// How long a mitigation lasts.
    pub mitigation_ms: u64,
}

/// A Space-Saving summary of the top values of one feature.
#[derive(Debug, Clone, Default)]
struct TopK {
    counts: HashMap<u64, u64>,
}

const K: usize = 64;

impl TopK {
    fn add(&mut self, v: u64) {
        if v == 0 {
            return;
        }
        if let Some(c) = self.counts.get_mut(&v) {
            *c += 1;
            return;
        }
        if self.counts.len() < K {
            self.counts.insert(v, 1);
            return;
        }
        // Replace the smallest, inheriting its count (over-estimates, never under).
        let (&min_v, &min_c) = self.counts.iter().min_by_key(|(_, c)| **c).expect("full");
        self.counts.remove(&min_v);
        self.counts.insert(v, min_c + 1);
    }

    fn top(&self) -> Option<(u64, u64)> {
        self.counts
            .iter()
            .max_by_key(|(_, c)| **c)
            .map(|(v, c)| (*v, *c))
    }
}

/// Values' usual shares of a feature's traffic, learnt from normal seconds (smoothed).
#[derive(Debug, Clone, Default)]
struct Shares {
    usual: HashMap<u64, f64>,
}

/// Values kept per feature; the rarest go first.
const SHARES_KEPT: usize = 256;
/// Shares below this are forgotten.
const SHARE_FLOOR: f64 = 0.001;

impl Shares {
    /// Learns from a normal second's top values (`count` requests in all).
    fn learn(&mut self, top: &TopK, count: u64) {
        if count == 0 {
            return;
        }
        for share in self.usual.values_mut() {
            *share *= 0.9;
        }
        for (v, c) in &top.counts {
            *self.usual.entry(*v).or_insert(0.0) += 0.1 * (*c as f64 / count as f64);
        }
        self.usual.retain(|_, s| *s >= SHARE_FLOOR);
        if self.usual.len() > SHARES_KEPT {
            let mut all: Vec<(u64, f64)> = self.usual.drain().collect();
            all.select_nth_unstable_by(SHARES_KEPT - 1, |a, b| b.1.total_cmp(&a.1));
            all.truncate(SHARES_KEPT);
            self.usual.extend(all);
        }
    }

    fn of(&self, v: u64) -> f64 {
        self.usual.get(&v).copied().unwrap_or(0.0)
    }
}

/// An installed mitigation: requests whose `feature` hashes to `value` are blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mitigation {
    /// Index into [`FEATURES`].
    pub feature: usize,
    /// The fingerprint's hash.
    pub value: u64,
    /// When it ends.
    pub until_ms: u64,
}

/// A zone's detector.
#[derive(Debug, Clone)]
pub struct Detector {
    params: DdosParams,
    second_start: u64,
    count: u64,
    tops: [TopK; 6],
    shares: [Shares; 6],
    baseline: Option<f64>,
    mitigations: Vec<Mitigation>,
}

impl Detector {
    /// A detector starting at `now_ms`.
    pub fn new(params: DdosParams, now_ms: u64) -> Detector {
        Detector {
            params,
            second_start: now_ms,
            count: 0,
            tops: Default::default(),
            shares: Default::default(),
            baseline: None,
            mitigations: Vec::new(),
        }
    }

    /// The mitigation a request with these fingerprint hashes falls under, if any.
    pub fn mitigated(&self, features: &[u64; 6], now_ms: u64) -> Option<Mitigation> {
        self.mitigations
            .iter()
            .find(|m| m.until_ms > now_ms && features[m.feature] == m.value)
            .copied()
    }

    /// Counts a request; returns a mitigation installed at this second's end, if one was.
    pub fn observe(&mut self, features: &[u64; 6], now_ms: u64) -> Option<Mitigation> {
        let installed = if now_ms >= self.second_start + 1000 {
            self.close_second(now_ms)
        } else {
            None
        };
        self.count += 1;
        for (t, f) in self.tops.iter_mut().zip(features) {
            t.add(*f);
        }
        installed
    }

    fn close_second(&mut self, now_ms: u64) -> Option<Mitigation> {
        let elapsed = (now_ms - self.second_start).max(1000) as f64 / 1000.0;
        let rate = self.count as f64 / elapsed;
        self.mitigations.retain(|m| m.until_ms > now_ms);
        let mut installed = None;
        let attack = match self.baseline {
            Some(b) => rate > self.params.floor_rps && rate > self.params.k * b,
            None => rate > self.params.floor_rps * self.params.k,
        };
        if attack {
            for (feature, t) in self.tops.iter().enumerate() {
                if let Some((value, c)) = t.top() {
                    let share = c as f64 / self.count as f64;
                    // Dominant now, and by far more than usual (a flash crowd keeps its mix).
                    let grew =
                        share - self.shares[feature].of(value) >= self.params.dominance / 2.0;
                    if share >= self.params.dominance && grew {
                        let m = Mitigation {
                            feature,
                            value,
                            until_ms: now_ms + self.params.mitigation_ms,
                        };
                        if !self
                            .mitigations
                            .iter()
                            .any(|x| x.feature == feature && x.value == value)
                        {
                            self.mitigations.push(m);
                            installed = Some(m);
                        }
                        break;
                    }
                }
            }
        } else {
            // The baseline and the usual shares learn from normal seconds only.
            for (shares, top) in self.shares.iter_mut().zip(&self.tops) {
                shares.learn(top, self.count);
            }
            self.baseline = Some(match self.baseline {
                Some(b) => 0.9 * b + 0.1 * rate,
                None => rate,
            });
        }
        self.second_start = now_ms;
        self.count = 0;
        self.tops = Default::default();
        installed
    }

    /// The smoothed normal rate (requests per second).
    pub fn baseline(&self) -> Option<f64> {
        self.baseline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> DdosParams {
        DdosParams {
            k: 3.0,
            floor_rps: 50.0,
            dominance: 0.5,
            mitigation_ms: 60_000,
        }
    }

    /// Features of a client `ip` (the /24 is shared by all test clients).
    fn f(ip: u64, ua: u64) -> [u64; 6] {
        [ip, ua, 1, 1, 0, 24]
    }

    /// A detector after ten seconds of 30 requests per second from three clients, and the time.
    fn with_baseline() -> (Detector, u64) {
        let mut d = Detector::new(params(), 0);
        let mut now = 0;
        for _ in 0..10 {
            for i in 0..30 {
                d.observe(&f(i % 3, 7), now + i * 33);
            }
            now += 1000;
        }
        (d, now)
    }

    #[test]
    fn a_flood_from_one_address_is_mitigated_by_address_not_by_subnet() {
        let (mut d, now) = with_baseline();
        assert!((d.baseline().unwrap() - 30.0).abs() < 3.0);
        // One second with a flood of 600 from address 9 on top.
        let mut installed = None;
        for i in 0..630 {
            let ip = if i % 21 == 0 { i % 3 } else { 9 };
            installed = installed.or(d.observe(&f(ip, 7), now + i));
        }
        installed = installed.or(d.observe(&f(0, 7), now + 1000));
        let m = installed.expect("mitigation installed");
        assert_eq!((FEATURES[m.feature], m.value), ("ip", 9));
        assert!(d.mitigated(&f(9, 7), now + 1500).is_some());
        assert!(
            d.mitigated(&f(1, 7), now + 1500).is_none(),
            "others still served"
        );
        assert!(d.mitigated(&f(9, 7), now + 70_000).is_none(), "it expires");
    }

    #[test]
    fn a_distributed_flood_with_one_user_agent_is_mitigated_by_user_agent() {
        let (mut d, now) = with_baseline();
        let mut installed = None;
        for i in 0..600 {
            installed = installed.or(d.observe(&f(1000 + i, 66), now + i));
        }
        installed = installed.or(d.observe(&f(0, 7), now + 1000));
        let m = installed.unwrap();
        assert_eq!((FEATURES[m.feature], m.value), ("user_agent", 66));
    }

    #[test]
    fn a_flash_crowd_keeps_its_mix_and_is_not_mitigated() {
        // Normal: 30/s, a third of it to path 1 (the home page), from many addresses.
        let mut d = Detector::new(params(), 0);
        let mut now = 0;
        let fp = |i: u64| [1000 + i, 7 + i % 4, 1 + i % 3, 1, 0, 24 + i % 50];
        for _ in 0..30 {
            for i in 0..30 {
                assert_eq!(d.observe(&fp(i), now + i * 33), None);
            }
            now += 1000;
        }
        // Ten times the traffic, same mix (home page a third, same user agents), new clients.
        for _ in 0..5 {
            for i in 0..300 {
                assert_eq!(d.observe(&fp(5000 + i), now + i * 3), None);
            }
            now += 1000;
        }
        assert_eq!(d.observe(&fp(0), now), None, "nothing mitigated");
        // A flood from one address is still caught after the crowd.
        let mut installed = None;
        for i in 0..900 {
            installed = installed.or(d.observe(&[9, 7, 2, 1, 0, 24], now + 1 + i));
        }
        installed = installed.or(d.observe(&fp(1), now + 1002));
        assert_eq!(
            installed.map(|m| (FEATURES[m.feature], m.value)),
            Some(("ip", 9))
        );
    }

    #[test]
    fn a_usually_dominant_value_is_not_mitigated_for_being_dominant() {
        // A zone whose traffic is normally 80% one user agent (an app), from many addresses.
        let mut d = Detector::new(params(), 0);
        let mut now = 0;
        let fp = |i: u64| {
            [
                1000 + i,
                if i.is_multiple_of(5) { 8 } else { 66 },
                i % 7,
                1,
                0,
                i % 40,
            ]
        };
        for _ in 0..30 {
            for i in 0..30 {
                d.observe(&fp(i), now + i * 33);
            }
            now += 1000;
        }
        // A surge of the app's users: still 80% that user agent.
        let mut installed = None;
        for s in 0..3 {
            for i in 0..400 {
                installed = installed.or(d.observe(&fp(10_000 + s * 400 + i), now + i * 2));
            }
            now += 1000;
        }
        assert_eq!(installed, None);
    }

    #[test]
    fn usual_shares_stay_bounded_under_random_values() {
        let mut d = Detector::new(params(), 0);
        let mut now = 0;
        for s in 0..50u64 {
            for i in 0..40 {
                let v = s * 1000 + i;
                d.observe(&[v, v, v, v, v, v], now + i * 20);
            }
            now += 1000;
        }
        assert!(d.shares.iter().all(|s| s.usual.len() <= SHARES_KEPT));
    }

    #[test]
    fn growth_below_the_floor_or_factor_is_not_an_attack() {
        let mut d = Detector::new(params(), 0);
        let mut now = 0;
        for s in 0..20u64 {
            // Traffic doubling slowly: never 3x the smoothed baseline in one second.
            let n = 20 + s * 2;
            for i in 0..n {
                assert_eq!(d.observe(&f(i % 5, 7), now + i), None);
            }
            now += 1000;
        }
    }
}
