//! Admission: which misses may fill the cache. While the cache has room every miss fills it;
//! once it is near its budget, an object is stored only from its second miss on, as counted by
//! a small frequency sketch (TinyLFU's doorkeeper idea). One-hit wonders then stop pushing
//! popular objects out, which is most of the hit ratio of a skewed (Zipf) workload.
//!
//! A deferred miss still goes to the origin and is served; it is just not stored. The count-min
//! sketch halves its counters every `10 × width` observations so that old popularity fades.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use pingora_cache::admission::{AdmissionPolicy, Decision};
use pingora_cache::key::CacheHashKey;
use pingora_cache::CacheKey;

const ROWS: usize = 4;

/// A count-min sketch of small saturating counters.
pub struct Sketch {
    counters: Vec<AtomicU8>,
    mask: usize,
    observed: AtomicU64,
    reset_every: u64,
}

impl Sketch {
    /// A sketch for about `expected` distinct keys (its width is the next power of two of
    /// 4 × `expected`, per row).
    pub fn new(expected: usize) -> Sketch {
        let width = (expected.max(1024) * 4).next_power_of_two();
        Sketch {
            counters: (0..width * ROWS).map(|_| AtomicU8::new(0)).collect(),
            mask: width - 1,
            observed: AtomicU64::new(0),
            reset_every: 10 * width as u64,
        }
    }

    fn slots(&self, hash: &[u8; 16]) -> [usize; ROWS] {
        let word = |i: usize| u32::from_le_bytes(hash[4 * i..4 * i + 4].try_into().expect("4"));
        std::array::from_fn(|row| row * (self.mask + 1) + (word(row) as usize & self.mask))
    }

    /// Counts one observation of `hash`; returns the estimate after it.
    pub fn increment(&self, hash: &[u8; 16]) -> u8 {
        let mut estimate = u8::MAX;
        for slot in self.slots(hash) {
            let c = &self.counters[slot];
            let now = match c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v < 15).then_some(v + 1)
            }) {
                Ok(prev) => prev + 1,
                Err(saturated) => saturated,
            };
            estimate = estimate.min(now);
        }
        if self.observed.fetch_add(1, Ordering::Relaxed) + 1 >= self.reset_every {
            self.observed.store(0, Ordering::Relaxed);
            for c in &self.counters {
                let v = c.load(Ordering::Relaxed);
                c.store(v / 2, Ordering::Relaxed);
            }
        }
        estimate
    }
}

/// Admits everything while `has_room` says so, else from the second miss of a key.
pub struct FrequencyAdmission {
    sketch: Sketch,
    has_room: Box<dyn Fn() -> bool + Send + Sync>,
}

impl FrequencyAdmission {
    /// `has_room` tells whether the cache is still below its budget.
    pub fn new(expected_objects: usize, has_room: Box<dyn Fn() -> bool + Send + Sync>) -> Self {
        FrequencyAdmission {
            sketch: Sketch::new(expected_objects),
            has_room,
        }
    }
}

impl AdmissionPolicy for FrequencyAdmission {
    fn observe(&self, key: &CacheKey) -> Decision {
        let observed = u32::from(self.sketch.increment(&key.primary_bin()));
        if observed >= 2 || (self.has_room)() {
            Decision::Ready { observed }
        } else {
            Decision::Defer { observed }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn counts_and_forgets() {
        let s = Sketch::new(1024);
        let a = [1u8; 16];
        assert_eq!(s.increment(&a), 1);
        assert_eq!(s.increment(&a), 2);
        for _ in 0..40 {
            s.increment(&a);
        }
        assert_eq!(s.increment(&a), 15, "saturates");
        // Enough other traffic halves the counters.
        for i in 0..(10 * 4096u32) {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.to_le_bytes());
            k[4..8].copy_from_slice(&i.wrapping_mul(2654435761).to_le_bytes());
            k[8..12].copy_from_slice(&i.wrapping_mul(40503).to_le_bytes());
            k[12..].copy_from_slice(&i.rotate_left(13).to_le_bytes());
            s.increment(&k);
        }
        assert!(s.increment(&a) <= 9);
    }

    #[test]
    fn defers_first_misses_only_when_full() {
        let full = Arc::new(AtomicBool::new(false));
        let f = full.clone();
        let policy = FrequencyAdmission::new(1024, Box::new(move || !f.load(Ordering::Relaxed)));
        assert!(
            !policy.observe(&CacheKey::new("a", "")).is_deferred(),
            "room: admit"
        );
        full.store(true, Ordering::Relaxed);
        assert!(
            policy.observe(&CacheKey::new("b", "")).is_deferred(),
            "full: first miss"
        );
        assert!(
            !policy.observe(&CacheKey::new("b", "")).is_deferred(),
            "second miss"
        );
    }
}
