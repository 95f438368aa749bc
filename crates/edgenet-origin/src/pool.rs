//! An origin pool: smooth weighted round robin over the servers that are available.
//!
//! The schedule is computed once per configuration (nginx's smooth weighted round robin, so a
//! server of weight 3 next to one of weight 1 gets `A A B A`, not `A A A B`), and requests walk it
//! with one atomic increment: no lock on the request path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use edgenet_config::{OriginPool, OriginServer};

use crate::health::OriginHealth;

/// Health state shared across reloads, keyed by zone and server address.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    entries: Mutex<HashMap<(String, SocketAddr), Arc<OriginHealth>>>,
}

impl HealthRegistry {
    /// The health of `addr` in `zone`, created up when first seen.
    pub fn get(&self, zone: &str, addr: SocketAddr, now: Instant) -> Arc<OriginHealth> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .entry((zone.to_string(), addr))
            .or_insert_with(|| Arc::new(OriginHealth::new(now)))
            .clone()
    }

    /// Forgets servers that no configuration uses any more.
    pub fn retain(&self, keep: impl Fn(&str, SocketAddr) -> bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|(zone, addr), _| keep(zone, *addr));
    }
}

/// One server of a pool with its shared health.
#[derive(Debug)]
pub struct Member {
    /// The configured server.
    pub server: OriginServer,
    /// Its health.
    pub health: Arc<OriginHealth>,
}

/// A zone's origin pool at one configuration version.
#[derive(Debug)]
pub struct Pool {
    members: Vec<Member>,
    schedule: Vec<u16>,
    cursor: AtomicUsize,
}

impl Pool {
    /// Builds the pool of `zone`, reusing health state from `registry`.
    pub fn new(zone: &str, config: &OriginPool, registry: &HealthRegistry, now: Instant) -> Pool {
        let members: Vec<Member> = config
            .servers
            .iter()
            .map(|s| Member {
                server: s.clone(),
                health: registry.get(zone, s.address, now),
            })
            .collect();
        let weights: Vec<u32> = members.iter().map(|m| m.server.weight).collect();
        Pool {
            schedule: smooth_schedule(&weights),
            members,
            cursor: AtomicUsize::new(0),
        }
    }

    /// The servers.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Picks the next server for a request, skipping the ones in `tried`.
    ///
    /// Servers that checks count down or that are ejected are skipped. When none is available
    /// the pool "panics" like Envoy's: it picks among all untried servers anyway, because a health
    /// check that fails everywhere is more often wrong than every origin being down, and a real
    /// outage still ends in a connect error (502) rather than a guess.
    pub fn select(&self, tried: &[usize], now: Instant) -> Option<usize> {
        let n = self.schedule.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut fallback = None;
        for step in 0..n {
            let idx = self.schedule[(start + step) % n] as usize;
            if tried.contains(&idx) {
                continue;
            }
            if self.members[idx].health.is_available(now) {
                return Some(idx);
            }
            fallback.get_or_insert(idx);
        }
        fallback
    }
}

/// The smooth weighted round-robin order for `weights` (one cycle, reduced by their gcd).
pub fn smooth_schedule(weights: &[u32]) -> Vec<u16> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let w: Vec<i64> = weights.iter().map(|&x| (x / g) as i64).collect();
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u16);
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgenet_config::Passive;
    use std::time::Duration;

    fn pool(weights: &[u32]) -> (Pool, HealthRegistry) {
        let cfg = OriginPool {
            servers: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| OriginServer {
                    name: format!("127.0.0.1:{}", 9000 + i),
                    address: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                    weight: w,
                })
                .collect(),
            tls: None,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            retries: 1,
            health_check: None,
            passive: Passive {
                max_failures: 1,
                eject_for: Duration::from_secs(10),
            },
        };
        let reg = HealthRegistry::default();
        (Pool::new("z", &cfg, &reg, Instant::now()), reg)
    }

    #[test]
    fn smooth_schedule_interleaves_by_weight() {
        assert_eq!(smooth_schedule(&[3, 1]), vec![0, 0, 1, 0]);
        assert_eq!(smooth_schedule(&[1, 1, 1]), vec![0, 1, 2]);
        assert_eq!(smooth_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(
            smooth_schedule(&[200, 100]),
            vec![0, 1, 0],
            "reduced by the gcd"
        );
    }

    #[test]
    fn selection_follows_weights() {
        let (p, _) = pool(&[3, 1]);
        let now = Instant::now();
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[p.select(&[], now).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn selection_skips_down_ejected_and_tried_servers() {
        let (p, _) = pool(&[1, 1, 1]);
        let now = Instant::now();
        for _ in 0..3 {
            p.members()[0].health.observe_check(false, 1, 1);
        }
        p.members()[1]
            .health
            .connect_failed(now, 1, Duration::from_secs(5));
        for _ in 0..10 {
            assert_eq!(p.select(&[], now), Some(2));
        }
        // Everything else unavailable or tried: panic mode returns an untried server.
        let pick = p.select(&[2], now).unwrap();
        assert!(pick == 0 || pick == 1);
        assert_eq!(p.select(&[0, 1, 2], now), None);
    }

    #[test]
    fn health_survives_a_rebuild() {
        let (p, reg) = pool(&[1, 1]);
        p.members()[0].health.observe_check(false, 1, 1);
        let again = Pool::new(
            "z",
            &OriginPool {
                servers: p.members().iter().map(|m| m.server.clone()).collect(),
                tls: None,
                connect_timeout: Duration::from_secs(1),
                read_timeout: Duration::from_secs(1),
                retries: 1,
                health_check: None,
                passive: Passive {
                    max_failures: 1,
                    eject_for: Duration::from_secs(1),
                },
            },
            &reg,
            Instant::now(),
        );
        assert!(!again.members()[0].health.is_up());
        assert!(again.members()[1].health.is_up());
    }
}
