//! Rate-limit decisions: a key over its threshold (by the sliding-window estimate) is limited
//! for the mitigation timeout, during which every request with that key is limited without
//! being counted. The set of mitigated keys is bounded; when it is full, expired entries go
//! first and a new key is still limited by the estimate alone.

use std::collections::HashMap;

use crate::window::SlidingWindow;

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Under the threshold.
    Allow,
    /// Over it: limited for this many more milliseconds.
    Limit {
        /// Until the mitigation ends.
        retry_after_ms: u64,
    },
}

/// One rate-limit rule's state.
#[derive(Debug)]
pub struct Limiter {
    window: SlidingWindow,
    threshold: f64,
    timeout_ms: u64,
    mitigated: HashMap<u64, u64>,
    max_mitigated: usize,
}

impl Limiter {
    /// `threshold` requests per `period_ms`, then `timeout_ms` of mitigation.
    pub fn new(period_ms: u64, threshold: u32, timeout_ms: u64, now_ms: u64) -> Limiter {
        Limiter {
            window: SlidingWindow::new(period_ms, 4096, now_ms),
            threshold: f64::from(threshold),
            timeout_ms,
            mitigated: HashMap::new(),
            max_mitigated: 100_000,
        }
    }

    /// Counts a request of `key` at `now_ms` and decides.
    pub fn check(&mut self, key: u64, now_ms: u64) -> Decision {
        if let Some(until) = self.mitigated.get(&key) {
            if *until > now_ms {
                return Decision::Limit {
                    retry_after_ms: until - now_ms,
                };
            }
            self.mitigated.remove(&key);
        }
        let estimate = self.window.observe(key, now_ms);
        if estimate <= self.threshold {
            return Decision::Allow;
        }
        let until = now_ms + self.timeout_ms.max(1);
        if self.mitigated.len() >= self.max_mitigated {
            self.mitigated.retain(|_, u| *u > now_ms);
        }
        if self.mitigated.len() < self.max_mitigated {
            self.mitigated.insert(key, until);
        }
        Decision::Limit {
            retry_after_ms: self.timeout_ms.max(1),
        }
    }

    /// Keys under mitigation now (for metrics).
    pub fn mitigated(&self) -> usize {
        self.mitigated.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_after_the_threshold_for_the_timeout() {
        let mut l = Limiter::new(10_000, 20, 60_000, 0);
        let allowed = (0..100)
            .map(|i| l.check(1, i * 10))
            .take_while(|d| *d == Decision::Allow)
            .count();
        assert_eq!(allowed, 20);
        // The 21st request (at 200 ms) started the mitigation.
        assert_eq!(
            l.check(1, 1_000),
            Decision::Limit {
                retry_after_ms: 59_200
            }
        );
        assert_eq!(
            l.check(2, 1_000),
            Decision::Allow,
            "another key is not limited"
        );
        // After the timeout the key starts afresh (its old counts have faded).
        assert_eq!(l.check(1, 70_000), Decision::Allow);
    }

    #[test]
    fn a_steady_rate_under_the_threshold_is_never_limited() {
        let mut l = Limiter::new(10_000, 20, 60_000, 0);
        // 1.5 requests per second against 2 per second allowed, for two minutes.
        for i in 0..180u64 {
            assert_eq!(l.check(9, i * 667), Decision::Allow, "at {i}");
        }
    }

    #[test]
    fn the_mitigation_set_is_bounded() {
        let mut l = Limiter::new(10_000, 0, 60_000, 0);
        l.max_mitigated = 1000;
        for k in 0..5000 {
            assert!(matches!(l.check(k, 1), Decision::Limit { .. }));
        }
        assert_eq!(l.mitigated(), 1000);
    }
}
