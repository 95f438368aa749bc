//! Stage 9, origin: which server of the zone's pool gets the request (`edgenet_origin`'s
//! weighted choice, skipping servers health checks hold down or passive ejection skips),
//! what a failed connection means (count it towards ejection; retry an idempotent request on
//! another server while retries are left), and the Host the origin gets.

use std::time::Instant;

use crate::snapshot::ZoneRuntime;

/// The server for the next attempt (its index in the pool), never one of `tried`; `None` once
/// every server was tried.
pub fn select(zone: &ZoneRuntime, tried: &[usize], now: Instant) -> Option<usize> {
    zone.pool.select(tried, now)
}

/// The Host sent to the origin: the zone's `host_header`, else the client's.
pub fn host<'a>(zone: &'a ZoneRuntime, client: Option<&'a str>) -> Option<&'a str> {
    zone.config
        .host_header
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .or(client)
}

/// A connection to server `idx` succeeded: passive ejection starts counting afresh.
pub fn connected(zone: &ZoneRuntime, idx: usize) {
    zone.pool.members()[idx].health.connect_succeeded();
}

/// A connection to server `idx` failed, after `tried` attempts: counts it towards passive
/// ejection (and says so when it ejects the server) and in the zone's metrics. Returns
/// whether the request may be retried on another server.
pub fn connect_failed(
    zone: &ZoneRuntime,
    idx: usize,
    idempotent: bool,
    tried: usize,
    now: Instant,
    error: &dyn std::fmt::Display,
) -> bool {
    let passive = &zone.config.origins.passive;
    let member = &zone.pool.members()[idx];
    if member
        .health
        .connect_failed(now, passive.max_failures, passive.eject_for)
    {
        tracing::warn!(zone = %zone.config.name, origin = %member.server.name, %error,
            "origin ejected after connect failures");
    }
    zone.metrics.upstream_error(0);
    let retries = zone.config.origins.retries as usize;
    let more = tried < zone.pool.members().len();
    idempotent && tried <= retries && more
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::test_support::{core, snapshot};

    const TWO_SERVERS: &str = "[[zones.origins.servers]]\naddress = \"127.0.0.1:3\"\n\
                               [zones.origins]\nretries = 1\n\
                               [zones.origins.passive]\nmax_failures = 2\neject_for = \"10s\"\n";

    #[test]
    fn a_failed_connection_is_retried_on_another_server_while_retries_last() {
        let core = core();
        let snap = snapshot(TWO_SERVERS, &core);
        let zone = &snap.zones[0];
        let now = Instant::now();
        let first = select(zone, &[], now).unwrap();
        assert!(connect_failed(zone, first, true, 1, now, &"refused"));
        assert!(
            !connect_failed(zone, first, false, 1, now, &"refused"),
            "not idempotent"
        );
        let second = select(zone, &[first], now).unwrap();
        assert_ne!(first, second);
        assert!(
            !connect_failed(zone, second, true, 2, now, &"refused"),
            "one retry, and no server left"
        );
        assert_eq!(select(zone, &[first, second], now), None);
        // Two failures eject the first server: the pool skips it while another is available.
        for _ in 0..3 {
            assert_eq!(select(zone, &[], now), Some(second));
        }
        connected(zone, first);
    }

    #[test]
    fn the_origin_gets_the_zones_host_or_the_clients() {
        let core = core();
        let plain = snapshot("", &core);
        assert_eq!(
            host(&plain.zones[0], Some("z.test:8080")),
            Some("z.test:8080")
        );
        let set = snapshot("host_header = \"origin.internal\"\n", &core);
        assert_eq!(host(&set.zones[0], Some("z.test")), Some("origin.internal"));
    }
}
