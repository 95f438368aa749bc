//! Stage 8 on pingora-cache: the cache turned on for a session, the phase its state machine
//! reached in this crate's words, what the request's `Cache-Status` says, and a storage
//! decision as pingora-cache's `RespCacheable`.

use std::time::SystemTime;

use edgenet_cache::{Decision, Observed, Phase};
use pingora_cache::key::CacheHashKey;
use pingora_cache::{CacheMeta, CachePhase, NoCacheReason, RespCacheable};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::ctx::Ctx;
use crate::core::Core;

/// Turns pingora-cache on for this session with the node's storage, eviction, predictor, lock
/// and admission policy.
pub fn enable(core: &Core, session: &mut Session) {
    let c = &core.cache;
    session.cache.enable(
        c.storage,
        Some(c.eviction),
        Some(c.predictor),
        Some(c.lock),
        None,
    );
    session.cache.set_admission_policy(c.admission);
}

/// pingora-cache's phase in `edgenet-cache`'s words.
pub fn phase(p: CachePhase) -> Phase {
    match p {
        CachePhase::Hit => Phase::Hit,
        CachePhase::Stale => Phase::Stale { updating: false },
        CachePhase::StaleUpdating => Phase::Stale { updating: true },
        CachePhase::Miss => Phase::Miss,
        CachePhase::Expired => Phase::Expired,
        CachePhase::Revalidated => Phase::Revalidated,
        CachePhase::RevalidatedNoCache(_) => Phase::RevalidatedNoCache,
        CachePhase::Disabled(reason) => Phase::Disabled(reason.as_str()),
        CachePhase::Bypass | CachePhase::Uninit | CachePhase::CacheKey => Phase::Bypass,
    }
}

/// Whether the response comes from a stored object (and so gets an `Age`).
pub fn from_storage(session: &Session) -> bool {
    matches!(
        session.cache.phase(),
        CachePhase::Hit | CachePhase::Stale | CachePhase::StaleUpdating | CachePhase::Revalidated
    )
}

/// What is known about the request's use of the cache as its response head goes out.
pub fn observe(core: &Core, session: &Session, ctx: &Ctx, status: u16) -> Observed {
    let cache = &session.cache;
    let phase = phase(cache.phase());
    let ttl =
        cache.maybe_cache_meta().map(
            |m| match m.fresh_until().duration_since(SystemTime::now()) {
                Ok(d) => d.as_secs() as i64,
                Err(e) => -(e.duration().as_secs() as i64),
            },
        );
    // Looked up only for a miss: other variants of the URL are stored while this one is not
    // (until its body is complete).
    let vary_miss = phase == Phase::Miss
        && !ctx.cache.purged
        && cache.maybe_cache_key().is_some_and(|k| {
            k.get_variance_key().is_some() && core.cache.storage.has_primary(&k.primary_bin())
        });
    Observed {
        enabled: ctx.cache.enabled,
        phase,
        collapsed: cache.lock_duration().is_some(),
        ttl,
        vary_miss,
        revalidate_by_request: ctx.cache.revalidate_by_request,
        not_stored: ctx.cache.not_stored,
        status,
    }
}

/// A storage decision for the response `resp` as pingora-cache takes it.
pub fn cacheable(decision: Decision, resp: &ResponseHeader, now: SystemTime) -> RespCacheable {
    match decision {
        Decision::Store {
            fresh_for,
            stale_while_revalidate,
            stale_if_error,
        } => RespCacheable::Cacheable(CacheMeta::new(
            now + fresh_for,
            now,
            stale_while_revalidate,
            stale_if_error,
            resp.clone(),
        )),
        Decision::DoNotStore(reason) => RespCacheable::Uncacheable(NoCacheReason::Custom(reason)),
    }
}
