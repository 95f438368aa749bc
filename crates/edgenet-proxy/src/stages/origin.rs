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
