//! Stage 5, shield: automatic L7 DDoS mitigation (a zone's `edgenet_shield::ddos::Detector`)
//! and rate limits (each an `edgenet_shield::limiter::Limiter`), kept across reloads by zone
//! and settings and counted per key built from the request; and the cap on connections per
//! client address (stage 1's, counted here with the rest of the shield's state).
//!
//! [`screen`] runs the zone's checks in their order: a mitigated fingerprint is refused before
//! any rule runs (it is the cheapest to refuse), then the WAF (stage 6), then rate limits,
//! which a WAF `allow` skips.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgenet_config::{Characteristic, RateLimit, RateLimitAction};
use edgenet_rules::expr::Request;
use edgenet_shield::limiter::{Decision, Limiter};
use edgenet_shield::window::key_hash;

use super::waf::{self, RequestView, Verdict};
use crate::lock;
use crate::snapshot::ZoneRuntime;

/// What the shield and the rules decided for a request.
#[derive(Debug)]
pub enum Screen {
    /// Go on.
    Pass,
    /// Under an active DDoS mitigation: 429, retry after this many seconds.
    Mitigated {
        /// Seconds until the mitigation ends.
        retry_after: u64,
    },
    /// A WAF rule blocked it: the rule's index in the zone's rules.
    Blocked(usize),
    /// A rate limit limited it (with a block, or only logged).
    Limited(Limited),
}

/// Whether the zone has anything to screen with (so requests of zones without DDoS
/// mitigation, rules or limits skip building a request view).
pub fn guarded(zone: &ZoneRuntime) -> bool {
    zone.ddos.is_some() || !(zone.config.waf.is_empty() && zone.config.rate_limits.is_empty())
}

/// Runs the zone's DDoS detector, WAF rules and rate limits on a request, in that order;
/// `waf_log` gets `id:action` of each rule that matched.
pub fn screen(
    zone: &ZoneRuntime,
    view: &RequestView<'_>,
    registry: &ShieldRegistry,
    waf_log: &mut Option<String>,
) -> Screen {
    if let Some(retry_after) = ddos_check(zone, view, registry) {
        return Screen::Mitigated { retry_after };
    }
    match waf::evaluate(zone, view, waf_log) {
        Verdict::Block(idx) => Screen::Blocked(idx),
        Verdict::Pass { allowed: true } => Screen::Pass,
        Verdict::Pass { allowed: false } => match check(zone, view, registry) {
            Some(l) => Screen::Limited(l),
            None => Screen::Pass,
        },
    }
}

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
#[derive(Debug)]
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
                block: rule.action == RateLimitAction::Block,
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

    #[test]
    fn rules_run_in_order_and_allow_skips_the_rate_limits() {
        use crate::stages::test_support::{core, parts, snapshot};
        let core = core();
        let snap = snapshot(
            r#"[zones.ddos]
enabled = false
[[zones.waf.rules]]
id = "admin"
expression = 'http.request.uri.path eq "/admin"'
action = "block"
status = 451
[[zones.waf.rules]]
id = "partners"
expression = 'http.request.uri.path eq "/partner"'
action = "allow"
[[zones.rate_limits]]
id = "per-ip"
expression = 'http.request.uri.path ne ""'
characteristics = ["ip.src"]
period = "60s"
requests_per_period = 1
action = "block"
"#,
            &core,
        );
        let zone = &snap.zones[0];
        assert!(guarded(zone));
        let screen_at = |path: &str, ip: [u8; 4], log: &mut Option<String>| {
            let p = parts(path);
            let view = RequestView::new(&p, path.as_bytes(), b"z.test", ip.into(), false);
            screen(zone, &view, &core.shield, log)
        };
        let mut log = None;
        assert!(matches!(
            screen_at("/admin", [192, 0, 2, 1], &mut log),
            Screen::Blocked(0)
        ));
        assert_eq!(log.as_deref(), Some("admin:block"));
        assert!(matches!(
            screen_at("/x", [192, 0, 2, 2], &mut None),
            Screen::Pass
        ));
        let Screen::Limited(l) = screen_at("/x", [192, 0, 2, 2], &mut None) else {
            panic!("over the limit")
        };
        assert!(l.block && l.rule == 0 && l.retry_after_secs >= 1);
        assert!(
            matches!(screen_at("/x", [192, 0, 2, 3], &mut None), Screen::Pass),
            "another address has its own count"
        );
        let mut log = None;
        assert!(
            matches!(
                screen_at("/partner", [192, 0, 2, 2], &mut log),
                Screen::Pass
            ),
            "allow skips the rate limits"
        );
        assert_eq!(log.as_deref(), Some("partners:allow"));

        let plain = snapshot("[zones.ddos]\nenabled = false\n", &core);
        assert!(!guarded(&plain.zones[0]), "nothing to screen with");
    }

    #[test]
    fn the_cap_applies_under_pressure_or_to_an_abusive_address_only() {
        let counts = ClientConnectionCounts::default();
        let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let now = Instant::now();
        let calm = |_| false;
        // Not under pressure: a NAT's many connections are all taken.
        let nat: Vec<_> = (0..1000)
            .map(|_| counts.acquire(a, 2, calm, now).unwrap())
            .collect();
        assert_eq!(counts.total(), 1000);
        // Under pressure (from 1000 open): the address over the cap is refused, another is not.
        let pressed = |total| total >= 1000;
        assert_eq!(
            counts.acquire(a, 2, pressed, now).err(),
            Some(Refused::Pressure)
        );
        let other = counts.acquire(b, 2, pressed, now).unwrap();
        drop(nat);
        assert_eq!(counts.total(), 1);
        // An abusive address is capped without pressure, until its time is up.
        counts.mark_abusive(b, now + Duration::from_secs(60));
        let second = counts.acquire(b, 2, calm, now).unwrap();
        assert_eq!(
            counts.acquire(b, 2, calm, now).err(),
            Some(Refused::Abusive)
        );
        let later = now + Duration::from_secs(61);
        let third = counts.acquire(b, 2, calm, later).unwrap();
        drop((other, second, third));
        assert!(
            lock(&counts.open).by_address.is_empty(),
            "no entry is left behind"
        );
        assert_eq!(counts.total(), 0);
        let many: Vec<_> = (0..10)
            .map(|_| counts.acquire(a, 0, |_| true, now).unwrap())
            .collect();
        assert_eq!(many.len(), 10, "0 is no cap, even under pressure");
    }

    #[test]
    fn refusals_are_logged_once_per_address_per_minute() {
        let counts = ClientConnectionCounts::default();
        let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        assert!(counts.should_log(a, now, minute));
        assert!(!counts.should_log(a, now + Duration::from_secs(59), minute));
        assert!(counts.should_log(b, now, minute));
        assert!(counts.should_log(a, now + minute, minute));
    }
}

/// Open client connections per address and in all, for `limits.max_connections_per_client`,
/// and the addresses that failed a slow-client check recently. The cap applies to an address
/// only while the node is under pressure or when the address is abusive: a NAT's users share
/// one address and are served otherwise.
#[derive(Default)]
pub struct ClientConnectionCounts {
    open: Mutex<Open>,
    /// Address to when it stops being abusive.
    abusive: Mutex<HashMap<std::net::IpAddr, Instant>>,
    /// Address to when its last refusal was logged.
    logged: Mutex<HashMap<std::net::IpAddr, Instant>>,
}

#[derive(Default)]
struct Open {
    by_address: HashMap<std::net::IpAddr, u32>,
    total: u32,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The node is under pressure and the address is at the cap.
    Pressure,
    /// The address failed a slow-client check recently and is at the cap.
    Abusive,
}

impl Refused {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Pressure => "pressure",
            Refused::Abusive => "abusive",
        }
    }
}

/// Entries kept of abusive and logged addresses before expired ones are dropped.
const TRACKED: usize = 4096;

/// A connection's place in the count; freed on drop.
pub struct ConnectionSlot<'a> {
    counts: &'a ClientConnectionCounts,
    ip: std::net::IpAddr,
}

impl ClientConnectionCounts {
    /// Counts a new connection from `ip`, or refuses it when the address is at `cap` (0: no
    /// cap) and it is abusive or `pressure` (asked with the open connections in all) holds.
    pub fn acquire(
        &self,
        ip: std::net::IpAddr,
        cap: u32,
        pressure: impl FnOnce(u32) -> bool,
        now: Instant,
    ) -> Result<ConnectionSlot<'_>, Refused> {
        let mut open = lock(&self.open);
        let n = open.by_address.get(&ip).copied().unwrap_or(0);
        if cap != 0 && n >= cap {
            if self.is_abusive(ip, now) {
                return Err(Refused::Abusive);
            }
            if pressure(open.total) {
                return Err(Refused::Pressure);
            }
        }
        *open.by_address.entry(ip).or_insert(0) += 1;
        open.total += 1;
        Ok(ConnectionSlot { counts: self, ip })
    }

    /// Open client connections in all.
    pub fn total(&self) -> u32 {
        lock(&self.open).total
    }

    /// Marks `ip` abusive until `until` (a slow request head, a control-frame flood).
    pub fn mark_abusive(&self, ip: std::net::IpAddr, until: Instant) {
        let mut abusive = lock(&self.abusive);
        if abusive.len() >= TRACKED {
            let now = Instant::now();
            abusive.retain(|_, t| *t > now);
        }
        abusive.insert(ip, until);
    }

    fn is_abusive(&self, ip: std::net::IpAddr, now: Instant) -> bool {
        lock(&self.abusive).get(&ip).is_some_and(|t| *t > now)
    }

    /// Whether a refusal of `ip` should be logged: at most once per address per `every`.
    pub fn should_log(&self, ip: std::net::IpAddr, now: Instant, every: Duration) -> bool {
        let mut logged = lock(&self.logged);
        if logged.len() >= TRACKED {
            logged.retain(|_, t| now.duration_since(*t) < every);
        }
        match logged.get(&ip) {
            Some(t) if now.duration_since(*t) < every => false,
            _ => {
                logged.insert(ip, now);
                true
            }
        }
    }
}

impl Drop for ConnectionSlot<'_> {
    fn drop(&mut self) {
        let mut open = lock(&self.counts.open);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&self.ip);
            }
        }
    }
}

impl ShieldRegistry {
    /// The DDoS detector of a zone: the one it had if its settings did not change.
    pub fn detector(
        &self,
        zone: &str,
        d: &edgenet_config::Ddos,
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
