//! Health of one origin server: the active-check state machine and passive ejection.
//!
//! [`Tracker`] is the pure state machine for active checks (consecutive successes and failures
//! against thresholds). [`OriginHealth`] is the shared, lock-free view the request path reads:
//! whether checks say up, and whether passive ejection currently skips the server.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A change of a server's active-check state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// It passed `healthy_threshold` checks in a row while down.
    BecameUp,
    /// It failed `unhealthy_threshold` checks in a row while up.
    BecameDown,
}

/// The active health-check state machine of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    up: bool,
    successes: u32,
    failures: u32,
}

impl Default for Tracker {
    /// A new server starts up, so that a node serves at once after start or reload; the first
    /// failed checks take it down.
    fn default() -> Self {
        Tracker {
            up: true,
            successes: 0,
            failures: 0,
        }
    }
}

impl Tracker {
    /// A tracker that starts down: the first passing check brings it up.
    pub fn starting_down() -> Self {
        Tracker {
            up: false,
            successes: 0,
            failures: 0,
        }
    }

    /// Whether checks currently count the server up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records one check result and returns the transition it caused, if any.
    pub fn observe(
        &mut self,
        ok: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<Transition> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.up && self.successes >= healthy_threshold {
                self.up = true;
                return Some(Transition::BecameUp);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.up && self.failures >= unhealthy_threshold {
                self.up = false;
                return Some(Transition::BecameDown);
            }
        }
        None
    }
}

/// The health of one origin server as the request path sees it. Shared between the pool (which
/// may be rebuilt by a reload) and the health checker, so that state survives reloads.
#[derive(Debug)]
pub struct OriginHealth {
    base: Instant,
    active_up: AtomicBool,
    tracker: Mutex<Tracker>,
    connect_failures: AtomicU32,
    /// Milliseconds after `base` until which the server is ejected; 0 when not ejected.
    ejected_until_ms: AtomicU64,
}

impl OriginHealth {
    /// A server that is up and not ejected; `now` anchors the ejection clock.
    pub fn new(now: Instant) -> Self {
        OriginHealth {
            base: now,
            active_up: AtomicBool::new(true),
            tracker: Mutex::new(Tracker::default()),
            connect_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        // +1 keeps 0 free to mean "not ejected".
        t.saturating_duration_since(self.base).as_millis() as u64 + 1
    }

    /// Whether the server may get requests at `now`: checks say up and it is not ejected.
    pub fn is_available(&self, now: Instant) -> bool {
        self.active_up.load(Ordering::Relaxed) && !self.is_ejected(now)
    }

    /// Whether active checks count the server up.
    pub fn is_up(&self) -> bool {
        self.active_up.load(Ordering::Relaxed)
    }

    /// Whether passive ejection skips the server at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && self.ms(now) < until
    }

    /// Records an active check result; returns the transition it caused.
    pub fn observe_check(
        &self,
        ok: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<Transition> {
        let mut tracker = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
        let t = tracker.observe(ok, healthy_threshold, unhealthy_threshold);
        self.active_up.store(tracker.is_up(), Ordering::Relaxed);
        t
    }

    /// Records a failed connection. Returns true when this failure ejected the server.
    pub fn connect_failed(&self, now: Instant, max_failures: u32, eject_for: Duration) -> bool {
        if max_failures == 0 {
            return false;
        }
        let n = self.connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= max_failures {
            self.connect_failures.store(0, Ordering::Relaxed);
            self.ejected_until_ms
                .store(self.ms(now + eject_for), Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Records a successful connection: clears the failure count and any ejection.
    pub fn connect_succeeded(&self) {
        // Loads first: the common case writes nothing, so threads do not fight over the line.
        if self.connect_failures.load(Ordering::Relaxed) != 0 {
            self.connect_failures.store(0, Ordering::Relaxed);
        }
        if self.ejected_until_ms.load(Ordering::Relaxed) != 0 {
            self.ejected_until_ms.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_goes_down_after_threshold_failures_and_up_after_threshold_successes() {
        let mut t = Tracker::default();
        assert!(t.is_up());
        assert_eq!(t.observe(false, 2, 3), None);
        assert_eq!(t.observe(false, 2, 3), None);
        assert_eq!(t.observe(false, 2, 3), Some(Transition::BecameDown));
        assert!(!t.is_up());
        assert_eq!(
            t.observe(false, 2, 3),
            None,
            "already down: no second transition"
        );
        assert_eq!(t.observe(true, 2, 3), None);
        assert_eq!(t.observe(true, 2, 3), Some(Transition::BecameUp));
        assert_eq!(t.observe(true, 2, 3), None);
    }

    #[test]
    fn tracker_resets_the_opposite_counter() {
        let mut t = Tracker::default();
        t.observe(false, 1, 2);
        t.observe(true, 1, 2);
        assert_eq!(
            t.observe(false, 1, 2),
            None,
            "a success in between restarts the count"
        );
        assert_eq!(t.observe(false, 1, 2), Some(Transition::BecameDown));
        assert_eq!(t.observe(true, 1, 2), Some(Transition::BecameUp));
    }

    #[test]
    fn passive_ejection_expires() {
        let t0 = Instant::now();
        let h = OriginHealth::new(t0);
        assert!(!h.connect_failed(t0, 2, Duration::from_secs(10)));
        assert!(h.is_available(t0));
        assert!(h.connect_failed(t0, 2, Duration::from_secs(10)));
        assert!(!h.is_available(t0 + Duration::from_secs(9)));
        assert!(h.is_available(t0 + Duration::from_secs(11)));
    }

    #[test]
    fn success_clears_ejection_and_failures() {
        let t0 = Instant::now();
        let h = OriginHealth::new(t0);
        assert!(h.connect_failed(t0, 1, Duration::from_secs(10)));
        h.connect_succeeded();
        assert!(h.is_available(t0));
        assert!(!h.connect_failed(t0, 2, Duration::from_secs(10)));
    }

    #[test]
    fn passive_off_never_ejects() {
        let t0 = Instant::now();
        let h = OriginHealth::new(t0);
        for _ in 0..10 {
            assert!(!h.connect_failed(t0, 0, Duration::from_secs(10)));
        }
        assert!(h.is_available(t0));
    }
}
