//! The rate-limiting stage: a zone's rate limits, each a `edgenet_shield::limiter::Limiter`
//! kept across reloads (by zone, id and settings), counted per key built from the rule's
//! characteristics.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use edgenet_config::{Characteristic, RateLimit, RateLimitActionSection};
use edgenet_rules::expr::Request;
use edgenet_shield::limiter::{Decision, Limiter};
use edgenet_shield::window::key_hash;

use crate::lock;
use crate::state::ZoneRuntime;
use crate::waf::RequestView;

/// Limiters by zone, rule id and settings, so a reload keeps their counts.
pub struct ShieldRegistry {
    epoch: Instant,
    hasher: RandomState,
    limiters: Mutex<HashMap<String, Arc<Mutex<Limiter>>>>,
    detectors: Mutex<HashMap<String, Arc<Mutex<edgenet_shield::ddos::Detector>>>>,
}

impl Default for ShieldRegistry {
    fn default() -> Self {
        ShieldRegistry {
            epoch: Instant::now(),
            hasher: RandomState::new(),
            limiters: Mutex::new(HashMap::new()),
            detectors: Mutex::new(HashMap::new()),
        }
    }
}

impl ShieldRegistry {
    /// Milliseconds on the registry's clock.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The limiter of a rule: the one it had if its settings did not change.
    pub fn limiter(&self, zone: &str, r: &RateLimit) -> Arc<Mutex<Limiter>> {
        let key = format!(
            "{zone}/{}/{:?}/{}/{:?}",
            r.id, r.period, r.requests, r.mitigation_timeout
        );
        let now = self.now_ms();
        lock(&self.limiters)
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Mutex::new(Limiter::new(
                    r.period.as_millis() as u64,
                    r.requests,
                    r.mitigation_timeout.as_millis() as u64,
                    now,
                )))
            })
            .clone()
    }
}

/// The address's bytes (4 or 16) without allocating: the buffer and the length used.
fn ip_octets(ip: std::net::IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match ip {
        std::net::IpAddr::V4(v) => {
            b[..4].copy_from_slice(&v.octets());
            (b, 4)
        }
        std::net::IpAddr::V6(v) => (v.octets(), 16),
    }
}

/// The cookie `name` from a Cookie header value.
fn cookie<'a>(header: &'a [u8], name: &str) -> &'a [u8] {
    header
        .split(|b| *b == b';')
        .map(|c| c.trim_ascii())
        .find_map(|c| {
            let (k, v) = c.split_at(c.iter().position(|b| *b == b'=')?);
            (k == name.as_bytes()).then(|| &v[1..])
        })
        .unwrap_or(b"")
}

/// A rate limit that decided against the request.
pub struct Limited {
    /// The rule.
    pub rule: usize,
    /// Block (429) or only log.
    pub block: bool,
    /// Seconds until the mitigation ends (for Retry-After).
    pub retry_after_secs: u64,
}

/// Runs the zone's rate limits whose expression matches; the first that limits decides.
pub fn check(
    zone: &ZoneRuntime,
    view: &RequestView<'_>,
    registry: &ShieldRegistry,
) -> Option<Limited> {
    let now = registry.now_ms();
    let (ip, ip_len) = ip_octets(view.ip);
    for (idx, rule) in zone.config.rate_limits.iter().enumerate() {
        if !rule.expression.matches(view) {
            continue;
        }
        let parts = rule.characteristics.iter().map(|c| match c {
            Characteristic::IpSrc => &ip[..ip_len],
            Characteristic::Host => view.host(),
            Characteristic::Path => view.path(),
            Characteristic::Header(n) => view.header(n, 0).unwrap_or(b""),
            Characteristic::Cookie(n) => cookie(view.header("cookie", 0).unwrap_or(b""), n),
        });
        let key = key_hash(parts, &registry.hasher);
        let decision = lock(&zone.limiters[idx]).check(key, now);
        if let Decision::Limit { retry_after_ms } = decision {
            zone.rate_limit_hits[idx].inc();
            return Some(Limited {
                rule: idx,
                block: rule.action == RateLimitActionSection::Block,
                retry_after_secs: retry_after_ms.div_ceil(1000).max(1),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_by_name() {
        assert_eq!(cookie(b"a=1; session=xyz; b=2", "session"), b"xyz");
        assert_eq!(cookie(b"a=1;b=2", "b"), b"2");
        assert_eq!(cookie(b"a=1", "missing"), b"");
        assert_eq!(cookie(b"novalue; a=1", "novalue"), b"");
    }
}

/// Open client connections per address, for `limits.max_connections_per_client`.
#[derive(Default)]
pub struct ClientConnectionCounts {
    open: Mutex<HashMap<std::net::IpAddr, u32>>,
}

/// A connection's place in the count; freed on drop.
pub struct ConnectionSlot<'a> {
    counts: &'a ClientConnectionCounts,
    ip: std::net::IpAddr,
}

impl ClientConnectionCounts {
    /// Counts a new connection from `ip`, or `None` when the address is at the cap.
    pub fn acquire(
        &self,
        ip: std::net::IpAddr,
        snapshot: &crate::state::Snapshot,
    ) -> Option<ConnectionSlot<'_>> {
        let cap = snapshot.config.limits.max_connections_per_client;
        let mut open = lock(&self.open);
        let n = open.entry(ip).or_insert(0);
        if cap != 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot { counts: self, ip })
    }
}

impl Drop for ConnectionSlot<'_> {
    fn drop(&mut self) {
        let mut open = lock(&self.counts.open);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl ShieldRegistry {
    /// The DDoS detector of a zone: the one it had if its settings did not change.
    pub fn detector(
        &self,
        zone: &str,
        d: &edgenet_config::DdosSection,
    ) -> Arc<Mutex<edgenet_shield::ddos::Detector>> {
        let key = format!(
            "ddos/{zone}/{}/{}/{:?}",
            d.sensitivity, d.floor_rps, d.mitigation
        );
        let now = self.now_ms();
        let mut detectors = lock(&self.detectors);
        detectors
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Mutex::new(edgenet_shield::ddos::Detector::new(
                    edgenet_shield::ddos::DdosParams {
                        k: d.sensitivity,
                        floor_rps: d.floor_rps,
                        dominance: 0.5,
                        mitigation_ms: d.mitigation.as_millis() as u64,
                    },
                    now,
                )))
            })
            .clone()
    }

    fn hash<'a>(&self, parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
        key_hash(parts, &self.hasher)
    }

    /// The request's fingerprint, in the order of `edgenet_shield::ddos::FEATURES`.
    pub fn fingerprint(&self, view: &RequestView<'_>) -> [u64; 6] {
        let (ip, ip_len) = ip_octets(view.ip);
        // The client's /24 (IPv4) or /48 (IPv6).
        let subnet = &ip[..if ip_len == 4 { 3 } else { 6 }];
        let names = (0..).map_while(|i| view.header_name(i));
        [
            self.hash([&ip[..ip_len]]),
            self.hash([view.header("user-agent", 0).unwrap_or(b"")]),
            self.hash([view.path()]),
            self.hash(names),
            // 0 is "absent" to the detector: plain HTTP has no JA4.
            view.ja4.map_or(0, |j| self.hash([j.as_bytes()]) | 1),
            self.hash([subnet]),
        ]
    }
}

/// Checks the zone's DDoS detector: `Some(seconds)` when the request falls under an active
/// mitigation (answer 429 with Retry-After). Counts the request otherwise.
pub fn ddos_check(
    zone: &ZoneRuntime,
    view: &RequestView<'_>,
    registry: &ShieldRegistry,
) -> Option<u64> {
    let detector = zone.ddos.as_ref()?;
    let now = registry.now_ms();
    let features = registry.fingerprint(view);
    let mut d = lock(detector);
    if let Some(m) = d.mitigated(&features, now) {
        return Some((m.until_ms - now).div_ceil(1000).max(1));
    }
    if let Some(m) = d.observe(&features, now) {
        let feature = edgenet_shield::ddos::FEATURES[m.feature];
        zone.ddos_mitigations
            .with_label_values(&[zone.config.name.as_str(), feature])
            .inc();
        tracing::warn!(
            zone = %zone.config.name,
            feature,
            client = %view.ip,
            baseline_rps = d.baseline().unwrap_or(0.0),
            until_s = (m.until_ms - now) / 1000,
            "DDoS mitigation installed"
        );
        if features[m.feature] == m.value {
            return Some((m.until_ms - now).div_ceil(1000).max(1));
        }
    }
    None
}
