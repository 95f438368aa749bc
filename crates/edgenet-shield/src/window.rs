//! The sliding-window rate estimate Cloudflare published ("Counting things, a lot of different
//! things"): counts of the previous and the current fixed window, the previous one weighted by
//! the part of it still inside the sliding window. Counts live in count-min sketches, so memory
//! is fixed however many keys an attacker invents; a sketch can only over-count, never under
//! (conservative update keeps the over-count small).

use std::hash::{BuildHasher, Hasher};

/// Rows of the sketch (independent hashes).
const ROWS: usize = 4;

/// A count-min sketch of `ROWS` × `width` counters.
#[derive(Debug, Clone)]
struct Sketch {
    width: usize,
    counts: Vec<u32>,
}

impl Sketch {
    fn new(width: usize) -> Sketch {
        Sketch {
            width,
            counts: vec![0; ROWS * width],
        }
    }

    fn slots(&self, key: u64) -> [usize; ROWS] {
        let mut out = [0; ROWS];
        for (row, o) in out.iter_mut().enumerate() {
            // Derive each row's hash from the key by mixing in the row (splitmix64).
            let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(row as u64 + 1));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            *o = row * self.width + (z % self.width as u64) as usize;
        }
        out
    }

    /// Counts one for `key` with the conservative update: only the counters below the new
    /// estimate rise to it, so the estimate is still never below the true count, while keys
    /// that share counters inflate each other far less (under a flood of random keys, about a
    /// quarter as much as a plain update).
    fn add(&mut self, key: u64) -> u32 {
        let slots = self.slots(key);
        let min = slots.iter().map(|&s| self.counts[s]).min().unwrap_or(0);
        let new = min.saturating_add(1);
        for s in slots {
            if self.counts[s] < new {
                self.counts[s] = new;
            }
        }
        new
    }

    fn get(&self, key: u64) -> u32 {
        self.slots(key)
            .into_iter()
            .map(|s| self.counts[s])
            .min()
            .unwrap_or(0)
    }

    fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
    }
}

/// A sliding-window counter over keys (hashes).
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    period_ms: u64,
    /// Start of the current fixed window (ms on the caller's clock).
    start_ms: u64,
    current: Sketch,
    previous: Sketch,
}

impl SlidingWindow {
    /// A window of `period_ms` with sketches `width` counters wide (memory: 2 × 4 × width × 4
    /// bytes).
    pub fn new(period_ms: u64, width: usize, now_ms: u64) -> SlidingWindow {
        SlidingWindow {
            period_ms: period_ms.max(1),
            start_ms: now_ms,
            current: Sketch::new(width.max(1)),
            previous: Sketch::new(width.max(1)),
        }
    }

    fn roll(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.start_ms);
        if elapsed < self.period_ms {
            return;
        }
        if elapsed < 2 * self.period_ms {
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
            self.start_ms += self.period_ms;
        } else {
            self.previous.clear();
            self.current.clear();
            self.start_ms = now_ms - elapsed % self.period_ms;
        }
    }

    fn estimate_with(&self, current: u32, key: u64, now_ms: u64) -> f64 {
        let into = now_ms.saturating_sub(self.start_ms) as f64 / self.period_ms as f64;
        f64::from(self.previous.get(key)) * (1.0 - into.min(1.0)) + f64::from(current)
    }

    /// Counts one event for `key` and returns the estimated events in the last period.
    pub fn observe(&mut self, key: u64, now_ms: u64) -> f64 {
        self.roll(now_ms);
        let current = self.current.add(key);
        self.estimate_with(current, key, now_ms)
    }

    /// The estimated events of `key` in the last period, without counting one.
    pub fn estimate(&mut self, key: u64, now_ms: u64) -> f64 {
        self.roll(now_ms);
        let current = self.current.get(key);
        self.estimate_with(current, key, now_ms)
    }
}

/// A stable hash of the bytes that make a rate-limit key (same across threads, restarts
/// vary it per process so keys cannot be precomputed to collide).
pub fn key_hash<'a>(
    parts: impl IntoIterator<Item = &'a [u8]>,
    state: &std::collections::hash_map::RandomState,
) -> u64 {
    let mut h = state.build_hasher();
    for p in parts {
        h.write_usize(p.len());
        h.write(p);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_random_keys_barely_inflates_a_quiet_one() {
        // 300,000 keys once each in a sketch 8,192 wide: a plain count-min update would put
        // about 37 in every counter; the conservative one keeps a new key's estimate far lower.
        let mut w = SlidingWindow::new(1000, 8192, 0);
        for i in 0..300_000u64 {
            w.observe(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), 500);
        }
        let quiet = w.observe(u64::MAX - 1, 500);
        assert!(quiet < 20.0, "{quiet}");
        let loud = (0..50).map(|_| w.observe(42, 600)).last().unwrap();
        assert!(loud >= 50.0, "never under the true count: {loud}");
    }

    #[test]
    fn counts_within_one_window() {
        let mut w = SlidingWindow::new(10_000, 1024, 0);
        for i in 1..=5 {
            assert_eq!(w.observe(7, 100 * i), i as f64);
        }
        assert_eq!(w.estimate(8, 600), 0.0);
    }

    #[test]
    fn the_previous_window_fades_linearly() {
        let mut w = SlidingWindow::new(10_000, 1024, 0);
        for _ in 0..100 {
            w.observe(1, 5_000);
        }
        // A quarter into the next window: 75 of the previous 100 still count.
        assert_eq!(w.estimate(1, 12_500), 75.0);
        assert_eq!(w.observe(1, 12_500), 76.0);
        // Two periods later everything is gone.
        assert_eq!(w.estimate(1, 40_000), 0.0);
    }

    #[test]
    fn memory_is_fixed_and_a_hot_key_stays_exact_among_a_million_others() {
        let mut w = SlidingWindow::new(10_000, 4096, 0);
        for k in 0..1_000_000u64 {
            w.observe(k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1 << 63, 1);
        }
        for _ in 0..500 {
            w.observe(42, 2);
        }
        let hot = w.estimate(42, 3);
        // Count-min over-counts by at most ~ total / width per row, with high probability far less.
        assert!(
            (500.0..=500.0 + 1_000_000.0 / 4096.0).contains(&hot),
            "{hot}"
        );
        assert_eq!(w.current.counts.len(), 4 * 4096);
    }
}
