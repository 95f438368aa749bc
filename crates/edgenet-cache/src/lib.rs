//! HTTP caching for the PoP (DESIGN.md section 1, stage 8).
//!
//! pingora-cache runs the state machine (lookup, cache lock for collapsed forwarding,
//! revalidation, stale handling); this crate supplies what it leaves to its users: the storage
//! tiers (`memory`, `disk`, `tiered`), the RFC 9111 decision of what to store and for how long
//! (`policy`, pure), a zone's cache rules (`rules`, pure), the key and variance of a request
//! (`key`), purges (`purge`) and the `Cache-Status` header (`status`, pure). The proxy's
//! cache stage calls these; only its engine adapter sees pingora's session.

mod accounting;
pub mod admission;
pub mod disk;
pub mod key;
pub mod memory;
pub mod policy;
pub mod purge;
pub mod rules;
pub mod status;
pub mod tiered;

use std::time::Duration;

use pingora_cache::eviction::lru::Manager;
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora_cache::predictor::Predictor;

pub use admission::FrequencyAdmission;

pub use disk::DiskStore;
pub use memory::MemoryStore;
pub use policy::{decide, merge_not_modified, Decision, ZonePolicy};
pub use purge::{PurgeRequest, Purges};
pub use status::{CacheStatus, Forward, Observed, Phase};
pub use tiered::TieredStore;

/// Purge rules kept per zone before the oldest fold into a zone-wide purge.
const MAX_PURGE_RULES: usize = 100_000;

/// Uncacheable URLs remembered per predictor shard.
const PREDICTOR_KEYS_PER_SHARD: usize = 16 * 1024;

/// Shards of the LRU eviction manager (fewer lock collisions between threads).
const LRU_SHARDS: usize = 16;

/// The node's cache: storage tiers, the eviction manager that keeps the memory tier within its
/// byte budget, and the lock that collapses concurrent misses. pingora-cache wants `'static`
/// references, and a node has one cache for its whole life (reloads keep it), so the parts are
/// leaked once.
pub struct Cache {
    /// What pingora-cache reads and writes: memory, then disk.
    pub storage: &'static TieredStore,
    /// The memory tier.
    pub memory: &'static MemoryStore,
    /// The disk tier, when configured and usable.
    pub disk: Option<&'static DiskStore>,
    /// Least-recently-used eviction over the memory tier's byte budget.
    pub eviction: &'static Manager<LRU_SHARDS>,
    /// One fetch per key at a time; the others wait up to the lock timeout.
    pub lock: &'static CacheKeyLockImpl,
    /// Which misses fill the cache once it is near its budget.
    pub admission: &'static FrequencyAdmission,
    /// Remembers URLs whose last response was not storable, so that the next request goes
    /// straight to the origin instead of queueing on the cache lock (Varnish's hit-for-pass).
    pub predictor: &'static Predictor<LRU_SHARDS>,
    /// Purge rules, checked on every hit (kept beside the disk tier's objects, when there is
    /// one, so that what was purged stays purged after a restart).
    pub purges: &'static Purges,
    /// Where the purge rules are kept (beside the disk tier), when there is a disk tier.
    purges_file: Option<std::path::PathBuf>,
}

impl Cache {
    /// A cache with a memory budget and per-object limit in bytes, an optional disk tier
    /// (directory and budget), and the lock timeout. A disk tier that cannot be opened is
    /// logged and left out: the node serves from memory.
    pub fn new(
        memory_bytes: usize,
        max_object_bytes: usize,
        disk: Option<(&std::path::Path, usize)>,
        lock_timeout: Duration,
    ) -> Cache {
        // Preallocate for objects of ~16 KiB on average; the LRU grows past it if needed.
        let expected_objects = (memory_bytes / (16 * 1024)).clamp(1024, 1 << 20);
        let memory: &'static MemoryStore = Box::leak(Box::new(MemoryStore::new(max_object_bytes)));
        let disk = disk.and_then(|(dir, budget)| match DiskStore::open(dir, budget) {
            Ok(d) => Some((&*Box::leak(Box::new(d)), budget)),
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e,
                    "cache disk tier cannot be opened; serving from the memory tier only");
                None
            }
        });
        let (disk, disk_budget) = (disk.map(|(d, _)| d), disk.map_or(0, |(_, b)| b));
        let purges: &'static Purges = Box::leak(Box::new(Purges::new(MAX_PURGE_RULES)));
        let purges_file = disk.map(|d| d.dir().join(PURGES_FILE));
        if let Some(path) = &purges_file {
            keep_purges(purges, path.clone());
        }
        let has_room = Box::new(move || {
            memory.stored_bytes() < memory_bytes / 10 * 9
                || disk.is_some_and(|d| {
                    !d.is_failed() && d.stored_bytes() < (disk_budget / 10 * 9) as u64
                })
        });
        let admission: &'static FrequencyAdmission = Box::leak(Box::new(FrequencyAdmission::new(
            expected_objects,
            has_room,
        )));
        Cache {
            admission,
            storage: Box::leak(Box::new(TieredStore {
                memory,
                disk,
                admission,
            })),
            memory,
            disk,
            eviction: Box::leak(Box::new(Manager::with_capacity(
                memory_bytes,
                expected_objects,
            ))),
            lock: Box::leak(CacheLock::new_boxed(lock_timeout)),
            predictor: Box::leak(Box::new(Predictor::new(PREDICTOR_KEYS_PER_SHARD, None))),
            purges,
            purges_file,
        }
    }

    /// Writes the purge rules beside the disk tier now, if they changed (the saving thread
    /// does it within [`SAVE_PURGES_EVERY`]; an operator's purge is answered once it is kept).
    /// Nothing without a disk tier: the memory tier does not outlive the process.
    pub fn save_purges(&self) -> std::io::Result<()> {
        match &self.purges_file {
            Some(path) => self.purges.save(path).map(drop),
            None => Ok(()),
        }
    }
}

/// The disk tier's file of purge rules.
const PURGES_FILE: &str = "purges.json";

/// How often changed purge rules are written to disk.
const SAVE_PURGES_EVERY: Duration = Duration::from_secs(1);

/// Reads the rules saved at `path` and writes them back there whenever they change (at most
/// every [`SAVE_PURGES_EVERY`], on a thread of its own: a purge never waits on the disk).
fn keep_purges(purges: &'static Purges, path: std::path::PathBuf) {
    match purges.load(&path) {
        Ok(n) => tracing::info!(path = %path.display(), rules = n, "cache purge rules read"),
        Err(e) => tracing::error!(path = %path.display(), error = %e,
            "cache purge rules cannot be read; objects purged before the restart may be served"),
    }
    let spawned = std::thread::Builder::new()
        .name("cache-purges".into())
        .spawn(move || loop {
            std::thread::sleep(SAVE_PURGES_EVERY);
            if let Err(e) = purges.save(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot save the cache purge rules");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "no thread to save the cache purge rules");
    }
}

impl Cache {
    /// Whether a stored object of `zone` for the keyed `url`, stored at `created` with the
    /// response headers `stored` (its `Cache-Tag`s), has been purged since.
    pub fn is_purged(
        &self,
        zone: &str,
        url: &str,
        stored: &http::HeaderMap,
        created: std::time::SystemTime,
    ) -> bool {
        let tags = stored
            .get_all("cache-tag")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(purge::split_tags);
        self.purges.is_purged(zone, url, tags, created)
    }

    /// RFC 9111 section 4.4: a successful unsafe request invalidates the stored responses for
    /// its target URI. A purge rule is only recorded when something is stored for it, under
    /// either scheme. Returns whether one was.
    pub fn invalidate(
        &self,
        zone: &str,
        url: &str,
        rule: Option<&edgenet_config::CacheRule>,
        headers: &http::HeaderMap,
        now: std::time::SystemTime,
    ) -> bool {
        use pingora_cache::key::CacheHashKey;
        let stored = ["http", "https"].iter().any(|scheme| {
            let key = key::cache_key(zone, scheme, url, rule, headers);
            self.storage.has_primary(&key.primary_bin())
        });
        if stored {
            self.purges
                .purge(zone, &PurgeRequest::Urls(vec![url.to_string()]), now);
        }
        stored
    }
}

/// The byte range `[start, end)` a hit handler's `seek(start, end)` asks for within a body of
/// `len` bytes: `end` past the body is clamped, a start at or past it is an error.
fn seek_range(start: usize, end: Option<usize>, len: u64) -> pingora_error::Result<(u64, u64)> {
    if start as u64 >= len {
        return pingora_error::Error::e_explain(
            pingora_error::ErrorType::InternalError,
            format!("seek start {start} beyond the body's {len} bytes"),
        );
    }
    Ok((start as u64, end.map_or(len, |e| (e as u64).min(len))))
}
