//! Path selection, pure: link estimates in, a route per origin out. A route is direct or a
//! chain of relay PoPs; its cost is the sum of its links' costs, a link's cost its smoothed
//! RTT inflated by its loss, plus a small price per relay. The current route is kept until
//! another is cheaper by the hysteresis margin, or until it breaks.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

/// Smoothed measurements of one link (RFC 6298's gains for the RTT; an exponential average of
/// lost probes for the loss).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkEstimate {
    /// Smoothed round-trip time.
    pub srtt: Duration,
    /// Fraction of recent probes lost, 0 to 1.
    pub loss: f64,
    /// Probes seen.
    pub samples: u32,
}

/// Weight of a new loss sample.
const LOSS_GAIN: f64 = 0.1;

impl LinkEstimate {
    /// An estimate from a first probe (`None`: lost).
    pub fn first(sample: Option<Duration>) -> LinkEstimate {
        LinkEstimate {
            srtt: sample.unwrap_or(Duration::ZERO),
            loss: if sample.is_some() { 0.0 } else { 1.0 },
            samples: 1,
        }
    }

    /// Folds in one probe: its RTT, or `None` when it was lost.
    pub fn update(&mut self, sample: Option<Duration>) {
        self.samples = self.samples.saturating_add(1);
        match sample {
            // Probes lost before the first answer say the far end was not up yet, not that
            // the path loses packets: the first answer starts the loss estimate afresh.
            Some(rtt) if self.srtt.is_zero() => {
                self.srtt = rtt;
                self.loss = 0.0;
            }
            Some(rtt) => {
                self.srtt = (self.srtt * 7 + rtt) / 8;
                self.loss *= 1.0 - LOSS_GAIN;
            }
            None => self.loss = self.loss * (1.0 - LOSS_GAIN) + LOSS_GAIN,
        }
    }

    /// The link's cost in milliseconds: RTT × (1 + penalty × loss); `None` when it is down
    /// (no RTT yet, or most probes lost).
    pub fn cost(&self, p: &Params) -> Option<f64> {
        if self.srtt.is_zero() || self.loss >= p.down_loss {
            return None;
        }
        Some(self.srtt.as_secs_f64() * 1000.0 * (1.0 + p.loss_penalty * self.loss))
    }
}

/// Tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// How much a lost fraction inflates a link's cost: 10 makes 1% loss cost 10% more RTT.
    pub loss_penalty: f64,
    /// A link losing this fraction of probes or more is down.
    pub down_loss: f64,
    /// Added per relay hop (ms): relaying is not free, and ties go to fewer hops.
    pub hop_cost_ms: f64,
    /// A new route must be this much cheaper than the current one to replace it (0.1 = 10%)...
    pub hysteresis: f64,
    /// ... and at least this many ms cheaper: relaying to save a millisecond is not worth a
    /// hop, and a noisy probe on a fast path must not move traffic.
    pub min_gain_ms: f64,
    /// Most relays on a path.
    pub max_relays: usize,
    /// A working route is replaced only when every link of it and of the new route has this
    /// many probes: one slow first probe (a cold origin, a loaded machine) must not move
    /// traffic to a relay, where the hysteresis would keep it.
    pub min_samples: u32,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            loss_penalty: 10.0,
            down_loss: 0.5,
            hop_cost_ms: 1.0,
            hysteresis: 0.1,
            min_gain_ms: 5.0,
            max_relays: 2,
            min_samples: 4,
        }
    }
}

/// What every PoP measured: (from PoP, to PoP or origin) → estimate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkState {
    /// PoP → PoP links.
    pub pops: BTreeMap<(String, String), LinkEstimate>,
    /// PoP → origin links (origin as `host:port`).
    pub origins: BTreeMap<(String, String), LinkEstimate>,
}

/// How to reach an origin: the relays in order (empty: direct).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// Relay PoPs, first hop first.
    pub relays: Vec<String>,
}

impl Route {
    /// The direct route.
    pub fn direct() -> Route {
        Route { relays: Vec::new() }
    }

    /// Whether it goes straight to the origin.
    pub fn is_direct(&self) -> bool {
        self.relays.is_empty()
    }
}

impl LinkState {
    /// The cost of `route` from `from` to `origin` now, or `None` if a link of it is down or
    /// unmeasured.
    pub fn route_cost(&self, from: &str, origin: &str, route: &Route, p: &Params) -> Option<f64> {
        let mut at = from;
        let mut total = 0.0;
        for relay in &route.relays {
            total += self.pops.get(&(at.to_string(), relay.clone()))?.cost(p)? + p.hop_cost_ms;
            at = relay;
        }
        Some(
            total
                + self
                    .origins
                    .get(&(at.to_string(), origin.to_string()))?
                    .cost(p)?,
        )
    }

    /// The fewest probes any link of `route` has, or `None` if a link is unmeasured.
    pub fn route_samples(&self, from: &str, origin: &str, route: &Route) -> Option<u32> {
        let mut at = from;
        let mut fewest = u32::MAX;
        for relay in &route.relays {
            fewest = fewest.min(self.pops.get(&(at.to_string(), relay.clone()))?.samples);
            at = relay;
        }
        let last = self.origins.get(&(at.to_string(), origin.to_string()))?;
        Some(fewest.min(last.samples))
    }

    /// The cheapest route from `from` to `origin` with at most `max_relays` relays (Dijkstra
    /// over PoPs, with the number of hops in the state so the limit holds), and its cost.
    pub fn best_route(&self, from: &str, origin: &str, p: &Params) -> Option<(Route, f64)> {
        #[derive(PartialEq)]
        struct Item(f64, String, Vec<String>);
        impl Eq for Item {}
        impl PartialOrd for Item {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Item {
            // Min-heap on cost, then fewer relays.
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                o.0.total_cmp(&self.0).then(o.2.len().cmp(&self.2.len()))
            }
        }
        let mut heap = BinaryHeap::from([Item(0.0, from.to_string(), Vec::new())]);
        let mut settled: BTreeSet<(String, usize)> = BTreeSet::new();
        let mut best: Option<(Route, f64)> = None;
        while let Some(Item(cost, at, relays)) = heap.pop() {
            if best.as_ref().is_some_and(|(_, b)| cost >= *b) {
                break;
            }
            if !settled.insert((at.clone(), relays.len())) {
                continue;
            }
            if let Some(c) = self
                .origins
                .get(&(at.clone(), origin.to_string()))
                .and_then(|l| l.cost(p))
            {
                let total = cost + c;
                if best.as_ref().is_none_or(|(_, b)| total < *b) {
                    best = Some((
                        Route {
                            relays: relays.clone(),
                        },
                        total,
                    ));
                }
            }
            if relays.len() == p.max_relays {
                continue;
            }
            for ((a, b), link) in self.pops.range((at.clone(), String::new())..) {
                if *a != at {
                    break;
                }
                if b == from || relays.contains(b) {
                    continue;
                }
                if let Some(c) = link.cost(p) {
                    let mut next = relays.clone();
                    next.push(b.clone());
                    heap.push(Item(cost + c + p.hop_cost_ms, b.clone(), next));
                }
            }
        }
        best
    }
}

/// The route in use per origin, changed with hysteresis.
#[derive(Debug, Clone, Default)]
pub struct PathSelector {
    current: BTreeMap<String, Route>,
}

/// A route change, for logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The origin.
    pub origin: String,
    /// The route before (None: none yet).
    pub from: Option<Route>,
    /// The route now.
    pub to: Route,
    /// Its cost (ms).
    pub cost: f64,
}

impl PathSelector {
    /// The route in use for `origin` (direct until one was chosen).
    pub fn route(&self, origin: &str) -> Route {
        self.current
            .get(origin)
            .cloned()
            .unwrap_or_else(Route::direct)
    }

    /// Re-decides the route of `origin` from `from` on the current link state.
    pub fn decide(
        &mut self,
        state: &LinkState,
        from: &str,
        origin: &str,
        p: &Params,
    ) -> Option<Change> {
        let (best, best_cost) = state.best_route(from, origin, p)?;
        // Until a route is chosen, traffic goes direct: a relay must beat that.
        let current = self
            .current
            .get(origin)
            .cloned()
            .unwrap_or_else(Route::direct);
        let current_cost = state.route_cost(from, origin, &current, p);
        // A working route stays until both it and the new one are measured well enough.
        let measured = |r: &Route| {
            state
                .route_samples(from, origin, r)
                .is_some_and(|n| n >= p.min_samples)
        };
        let keep = current == best
            || current_cost.is_some_and(|cc| {
                best_cost >= cc - (cc * p.hysteresis).max(p.min_gain_ms)
                    || !measured(&current)
                    || !measured(&best)
            });
        if keep {
            return None;
        }
        let from_route = self.current.insert(origin.to_string(), best.clone());
        Some(Change {
            origin: origin.to_string(),
            from: from_route,
            to: best,
            cost: best_cost,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn link(ms: u64) -> LinkEstimate {
        LinkEstimate {
            srtt: MS * ms as u32,
            loss: 0.0,
            samples: 10,
        }
    }

    /// a → origin 200 ms; a → b 20 ms, b → origin 40 ms; a → c 30 ms, c → b 5 ms.
    fn topology() -> LinkState {
        let mut s = LinkState::default();
        for (x, y, ms) in [
            ("a", "b", 20),
            ("b", "a", 20),
            ("a", "c", 30),
            ("c", "b", 5),
        ] {
            s.pops.insert((x.into(), y.into()), link(ms));
        }
        for (x, ms) in [("a", 200), ("b", 40), ("c", 150)] {
            s.origins.insert((x.into(), "o:80".into()), link(ms));
        }
        s
    }

    #[test]
    fn a_slow_first_probe_does_not_move_traffic() {
        let p = Params::default();
        let mut s = topology();
        // The direct link's first probe was slow; the relay's links are well measured.
        let direct = s.origins.get_mut(&("a".into(), "o:80".into())).unwrap();
        direct.samples = 1;
        let mut sel = PathSelector::default();
        assert_eq!(
            sel.decide(&s, "a", "o:80", &p),
            None,
            "one probe is not enough"
        );
        for _ in 1..p.min_samples {
            s.origins
                .get_mut(&("a".into(), "o:80".into()))
                .unwrap()
                .samples += 1;
        }
        assert!(
            sel.decide(&s, "a", "o:80", &p).is_some(),
            "measured: the relay wins"
        );
        // A broken route is left at once, however new the other's links are.
        let mut s = topology();
        for e in s.pops.values_mut().chain(s.origins.values_mut()) {
            e.samples = 1;
        }
        let mut sel = PathSelector::default();
        sel.current.insert(
            "o:80".into(),
            Route {
                relays: vec!["b".into()],
            },
        );
        s.pops.get_mut(&("a".into(), "b".into())).unwrap().loss = 1.0;
        let c = sel
            .decide(&s, "a", "o:80", &p)
            .expect("leaves the broken relay");
        assert_ne!(c.to.relays, ["b"]);
    }

    #[test]
    fn estimates_smooth_rtt_and_loss() {
        let mut e = LinkEstimate::first(Some(MS * 80));
        e.update(Some(MS * 160));
        assert_eq!(e.srtt, MS * 90);
        for _ in 0..3 {
            e.update(None);
        }
        assert!((e.loss - 0.271).abs() < 0.001, "{}", e.loss);
        let p = Params::default();
        assert!((e.cost(&p).unwrap() - 90.0 * 3.71).abs() < 0.5);
        for _ in 0..10 {
            e.update(None);
        }
        assert_eq!(e.cost(&p), None, "mostly lost: down");
        assert_eq!(LinkEstimate::first(None).cost(&p), None);
        let mut late = LinkEstimate::first(None);
        late.update(None);
        late.update(Some(MS * 5));
        assert_eq!(
            (late.srtt, late.loss),
            (MS * 5, 0.0),
            "not up yet is not loss"
        );
    }

    #[test]
    fn relay_beats_a_slow_direct_path() {
        let p = Params::default();
        let (route, cost) = topology().best_route("a", "o:80", &p).unwrap();
        assert_eq!(route.relays, vec!["b".to_string()]);
        assert_eq!(cost, 20.0 + 1.0 + 40.0);
    }

    #[test]
    fn max_relays_and_loops_are_respected() {
        let mut s = topology();
        // b's own origin link is gone; only c → b → ... could reach, but b has no origin link.
        s.origins.remove(&("b".into(), "o:80".into()));
        let p = Params {
            max_relays: 1,
            ..Params::default()
        };
        let (route, _) = s.best_route("a", "o:80", &p).unwrap();
        assert_eq!(
            route.relays,
            vec!["c".to_string()],
            "c at 30 + 1 + 150 beats direct 200"
        );
        let p0 = Params {
            max_relays: 0,
            ..Params::default()
        };
        assert_eq!(s.best_route("a", "o:80", &p0).unwrap().0, Route::direct());
    }

    #[test]
    fn two_relays_when_cheaper() {
        let mut s = topology();
        s.pops.remove(&("a".into(), "b".into()));
        let p = Params::default();
        let (route, cost) = s.best_route("a", "o:80", &p).unwrap();
        assert_eq!(route.relays, vec!["c".to_string(), "b".to_string()]);
        assert_eq!(cost, 30.0 + 1.0 + 5.0 + 1.0 + 40.0);
    }

    #[test]
    fn loss_makes_a_path_costlier_and_down_links_are_skipped() {
        let mut s = topology();
        s.pops.get_mut(&("a".into(), "b".into())).unwrap().loss = 0.3;
        let p = Params::default();
        // a→b costs 20 × 4 = 80 now: via c (30 + 1 + 5 + 1 + 40 = 77) wins.
        let (route, _) = s.best_route("a", "o:80", &p).unwrap();
        assert_eq!(route.relays, vec!["c".to_string(), "b".to_string()]);
        s.pops.get_mut(&("a".into(), "c".into())).unwrap().loss = 0.9;
        let (route, _) = s.best_route("a", "o:80", &p).unwrap();
        assert_eq!(route.relays, vec!["b".to_string()], "a→c is down");
    }

    #[test]
    fn a_few_milliseconds_do_not_move_traffic_to_a_relay() {
        // A noisy fast path: direct 6 ms, via b 1 + 1 (hop) + 1 ms: cheaper, but by < 5 ms.
        let mut s = LinkState::default();
        s.pops.insert(("a".into(), "b".into()), link(1));
        s.origins.insert(("a".into(), "o:80".into()), link(6));
        s.origins.insert(("b".into(), "o:80".into()), link(1));
        let p = Params::default();
        assert_eq!(s.best_route("a", "o:80", &p).unwrap().0.relays, vec!["b"]);
        let mut sel = PathSelector::default();
        assert_eq!(sel.decide(&s, "a", "o:80", &p), None, "direct stays");
        assert_eq!(sel.route("o:80"), Route::direct());
        // The direct path slows to 30 ms: now the relay wins.
        s.origins.insert(("a".into(), "o:80".into()), link(30));
        let change = sel.decide(&s, "a", "o:80", &p).expect("relay chosen");
        assert_eq!(change.to.relays, vec!["b"]);
    }

    #[test]
    fn hysteresis_keeps_the_route_until_another_is_10_percent_cheaper() {
        let p = Params::default();
        let mut s = topology();
        let mut sel = PathSelector::default();
        let c = sel.decide(&s, "a", "o:80", &p).unwrap();
        assert_eq!(c.to.relays, vec!["b".to_string()]);
        assert_eq!(sel.decide(&s, "a", "o:80", &p), None);
        // Direct becomes slightly cheaper (58 vs 61): within 10%, keep the relay.
        s.origins.insert(("a".into(), "o:80".into()), link(58));
        assert_eq!(sel.decide(&s, "a", "o:80", &p), None);
        assert_eq!(sel.route("o:80").relays, vec!["b".to_string()]);
        // Clearly cheaper (50 < 61 × 0.9): switch back to direct.
        s.origins.insert(("a".into(), "o:80".into()), link(50));
        let c = sel.decide(&s, "a", "o:80", &p).unwrap();
        assert!(c.to.is_direct());
        // The relay path breaks while in use elsewhere: switch at once, whatever the margin.
        let mut s2 = topology();
        let mut sel2 = PathSelector::default();
        sel2.decide(&s2, "a", "o:80", &p);
        s2.pops.get_mut(&("a".into(), "b".into())).unwrap().loss = 0.9;
        let c = sel2.decide(&s2, "a", "o:80", &p).unwrap();
        assert_eq!(c.to.relays, vec!["c".to_string(), "b".to_string()]);
    }
}
