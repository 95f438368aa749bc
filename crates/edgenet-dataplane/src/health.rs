//! Tunnel health checks as Cloudflare defines them, pure (time passed in). Each PoP probes
//! each tunnel: a packet the customer's router returns through the tunnel after decapsulating
//! it (an ICMP echo reply it forwards back, or an echo request it answers). A probe that is
//! not back within [`PROBE_TIMEOUT`] failed. [`Checker`] turns outcomes into the tunnel's
//! health:
//!
//! - degraded when at least 0.1% of the probes of the last 5 minutes failed, and at least 2
//!   did (counting from when it last became healthy, so a recovered tunnel is not degraded
//!   again by the failures that degraded it);
//! - down when every one of at least 3 probes of the last second failed (at mid, a whole
//!   second of lost probes: five);
//! - from down back to degraded after 3 successes in a row;
//! - from degraded to healthy when fewer than 0.1% of the last 30 probes failed (of 30, that
//!   is none).
//!
//! Rates ([`Rate`]): low 1, mid 5 (the default) and high 10 probes per second. The down rule
//! needs 3 probes within a second, so at `low` a tunnel goes degraded but never down: `mid` or
//! `high` where failover matters.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long a probe may take to come back before it counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The degraded rule's window.
const WINDOW: Duration = Duration::from_secs(300);
/// The down rule's window.
const DOWN_WINDOW: Duration = Duration::from_secs(1);

/// Probes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    /// 1 per second (degraded only: the down rule needs 3 in a second).
    Low,
    /// 5 per second.
    #[default]
    Mid,
    /// 10 per second.
    High,
}

impl Rate {
    /// Probes per second.
    pub fn per_second(self) -> u32 {
        match self {
            Rate::Low => 1,
            Rate::Mid => 5,
            Rate::High => 10,
        }
    }

    /// Time between probes.
    pub fn interval(self) -> Duration {
        Duration::from_secs(1) / self.per_second()
    }
}

/// What the probe asks of the customer's router.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeType {
    /// An ICMP echo reply addressed to our side, which the router forwards back in the tunnel.
    #[default]
    Reply,
    /// An ICMP echo request to the router's tunnel address, which it answers.
    Request,
}

/// Which way probes go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Out through the tunnel; the answer may come back any way.
    #[default]
    Unidirectional,
    /// Out and back through the tunnel.
    Bidirectional,
}

/// A tunnel's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Fewer than 0.1% of probes fail.
    Healthy,
    /// Some fail: its routes lose preference.
    Degraded,
    /// Every recent probe failed: its routes are a last resort.
    Down,
}

impl Health {
    /// What this health adds to the priority of routes over the tunnel.
    pub fn priority_penalty(self) -> u32 {
        match self {
            Health::Healthy => 0,
            Health::Degraded => 500_000,
            Health::Down => 1_000_000,
        }
    }
}

/// One change of health, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Before.
    pub from: Health,
    /// After.
    pub to: Health,
    /// Which rule moved it.
    pub reason: String,
}

/// One tunnel's probe outcomes and health.
#[derive(Debug, Clone)]
pub struct Checker {
    health: Health,
    /// Outcomes of the last 5 minutes (and at least the last 30), oldest first.
    probes: VecDeque<(Instant, bool)>,
    /// Since when it is healthy (the degraded rule counts from there).
    healthy_since: Option<Instant>,
    /// Successes in a row while down.
    successes: u32,
}

impl Checker {
    /// A new tunnel: healthy until probes say otherwise.
    pub fn new(now: Instant) -> Checker {
        Checker {
            health: Health::Healthy,
            probes: VecDeque::new(),
            healthy_since: Some(now),
            successes: 0,
        }
    }

    /// The health now.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Takes a probe's outcome (sent at `at`: answered, or failed after the timeout); the change
    /// it made, if any.
    pub fn record(&mut self, at: Instant, ok: bool) -> Option<Change> {
        self.probes.push_back((at, ok));
        while self.probes.len() > 30
            && self
                .probes
                .front()
                .is_some_and(|(t, _)| at.saturating_duration_since(*t) > WINDOW)
        {
            self.probes.pop_front();
        }
        let recent: Vec<bool> = self
            .probes
            .iter()
            .filter(|(t, _)| at.saturating_duration_since(*t) < DOWN_WINDOW)
            .map(|(_, ok)| *ok)
            .collect();
        let down_rule = recent.len() >= 3 && recent.iter().all(|ok| !ok);
        let (to, reason) = match self.health {
            Health::Healthy | Health::Degraded if down_rule => (
                Health::Down,
                format!("all {} probes of the last second failed", recent.len()),
            ),
            Health::Healthy => {
                let since = self.healthy_since.unwrap_or(at);
                let (mut total, mut failed) = (0usize, 0usize);
                for (t, ok) in &self.probes {
                    if *t >= since && at.saturating_duration_since(*t) <= WINDOW {
                        total += 1;
                        failed += usize::from(!ok);
                    }
                }
                if failed >= 2 && failed * 1000 >= total {
                    (
                        Health::Degraded,
                        format!("{failed} of {total} probes of the last 5 minutes failed"),
                    )
                } else {
                    return None;
                }
            }
            Health::Degraded => {
                let last30 = self.probes.iter().rev().take(30);
                let (n, failed) =
                    last30.fold((0, 0), |(n, f), (_, ok)| (n + 1, f + usize::from(!ok)));
                if n == 30 && failed * 1000 < 30 {
                    (
                        Health::Healthy,
                        "none of the last 30 probes failed".to_string(),
                    )
                } else {
                    return None;
                }
            }
            Health::Down => {
                self.successes = if ok { self.successes + 1 } else { 0 };
                if self.successes >= 3 {
                    (Health::Degraded, "3 probes in a row came back".to_string())
                } else {
                    return None;
                }
            }
        };
        let from = std::mem::replace(&mut self.health, to);
        self.successes = 0;
        self.healthy_since = (to == Health::Healthy).then_some(at);
        Some(Change { from, to, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `n` outcomes `ok` every `step` from `*t`; the changes, in order.
    fn feed(c: &mut Checker, t: &mut Instant, step: Duration, n: usize, ok: bool) -> Vec<Health> {
        let mut out = Vec::new();
        for _ in 0..n {
            *t += step;
            if let Some(ch) = c.record(*t, ok) {
                out.push(ch.to);
            }
        }
        out
    }

    #[test]
    fn rates_are_documented_numbers_and_mid_can_go_down() {
        assert_eq!(
            [Rate::Low, Rate::Mid, Rate::High].map(Rate::per_second),
            [1, 5, 10]
        );
        assert!(Rate::Mid.per_second() >= 3);
        assert_eq!(Rate::High.interval(), Duration::from_millis(100));
        assert_eq!(Health::Degraded.priority_penalty(), 500_000);
        assert_eq!(Health::Down.priority_penalty(), 1_000_000);
    }

    #[test]
    fn two_failures_in_a_thousand_degrade_one_does_not() {
        let start = Instant::now();
        let mut t = start;
        let mut c = Checker::new(start);
        let step = Rate::Mid.interval();
        assert!(feed(&mut c, &mut t, step, 998, true).is_empty());
        assert!(
            feed(&mut c, &mut t, step, 1, false).is_empty(),
            "one failure is not enough"
        );
        assert!(feed(&mut c, &mut t, step, 5, true).is_empty());
        let ch = c
            .record(t + step, false)
            .expect("the second failure degrades");
        assert_eq!((ch.from, ch.to), (Health::Healthy, Health::Degraded));
        assert!(ch.reason.contains("2 of"), "{}", ch.reason);
    }

    #[test]
    fn at_high_rate_two_failures_in_five_minutes_are_below_a_tenth_of_a_percent() {
        let start = Instant::now();
        let mut t = start;
        let mut c = Checker::new(start);
        let step = Rate::High.interval();
        // 10 minutes of successes: the window holds 3,000 probes.
        assert!(feed(&mut c, &mut t, step, 6000, true).is_empty());
        assert!(
            feed(&mut c, &mut t, step * 20, 2, false).is_empty(),
            "2 of 3,000 is 0.067%"
        );
        assert_eq!(
            feed(&mut c, &mut t, step * 20, 1, false),
            [Health::Degraded],
            "3 of 3,000"
        );
    }

    #[test]
    fn three_lost_probes_in_a_second_are_down_and_recovery_goes_through_degraded() {
        let start = Instant::now();
        let mut t = start;
        let mut c = Checker::new(start);
        let step = Rate::Mid.interval();
        feed(&mut c, &mut t, step, 100, true);
        // The first two failures already degrade (2 of 102); once a whole second of probes
        // (five at mid) has failed, it is down.
        assert_eq!(
            feed(&mut c, &mut t, step, 4, false),
            [Health::Degraded],
            "a success is still within the last second"
        );
        assert_eq!(feed(&mut c, &mut t, step, 1, false), [Health::Down]);
        assert!(feed(&mut c, &mut t, step, 10, false).is_empty());
        assert!(
            feed(&mut c, &mut t, step, 2, true).is_empty(),
            "two successes are not three"
        );
        assert!(
            feed(&mut c, &mut t, step, 1, false).is_empty(),
            "the run is broken"
        );
        assert_eq!(feed(&mut c, &mut t, step, 3, true), [Health::Degraded]);
        // 30 in a row back to healthy: 27 more after the 3.
        assert!(feed(&mut c, &mut t, step, 26, true).is_empty());
        assert_eq!(feed(&mut c, &mut t, step, 1, true), [Health::Healthy]);
        // The failures that degraded it do not degrade it again.
        assert!(feed(&mut c, &mut t, step, 100, true).is_empty());
        assert_eq!(c.health(), Health::Healthy);
    }

    #[test]
    fn at_low_rate_the_down_rule_cannot_fire() {
        let start = Instant::now();
        let mut t = start;
        let mut c = Checker::new(start);
        assert_eq!(
            feed(&mut c, &mut t, Rate::Low.interval(), 30, false),
            [Health::Degraded],
            "one probe a second never has 3 in a second"
        );
    }
}
