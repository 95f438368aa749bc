//! The storage pingora-cache sees: the memory tier in front of the disk tier. A lookup tries
//! memory, then disk; a fill writes both (memory only if the object fits its per-object limit);
//! an eviction from pingora's LRU (which budgets the memory tier) leaves the disk copy; an
//! invalidation removes both. A disk that fails leaves the memory tier serving alone.
//!
//! A disk hit is promoted into memory by the same admission policy as a miss
//! ([`FrequencyAdmission`]): when admitted, the body is copied into the memory tier as it is
//! served ([`PromotingHit`]), and only then does pingora's LRU count it; a hit that is not
//! promoted is not counted against the memory budget.

use std::any::Any;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_cache::key::HashBinary;
use pingora_cache::storage::{
    HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget, PurgeType,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta, Storage};
use pingora_error::{Error, ErrorType, Result};

use pingora_cache::admission::AdmissionPolicy;
use pingora_cache::storage::HandleHit;

use crate::admission::FrequencyAdmission;
use crate::disk::DiskStore;
use crate::memory::MemoryStore;

/// Memory in front of an optional disk.
pub struct TieredStore {
    /// The memory tier.
    pub memory: &'static MemoryStore,
    /// The disk tier, when configured and opened.
    pub disk: Option<&'static DiskStore>,
    /// Which disk hits are promoted into memory.
    pub admission: &'static FrequencyAdmission,
}

impl TieredStore {
    /// Whether any variant of the URL with this primary key is stored in any tier.
    pub fn has_primary(&self, primary: &HashBinary) -> bool {
        self.memory.has_primary(primary) || self.disk.is_some_and(|d| d.has_primary(primary))
    }
}

#[async_trait]
impl Storage for TieredStore {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        if let Some(hit) = self.memory.lookup(key, trace).await? {
            return Ok(Some(hit));
        }
        let Some(disk) = self.disk else {
            return Ok(None);
        };
        let Some((meta, hit)) = disk.lookup(key, trace).await? else {
            return Ok(None);
        };
        let memory = if self.admission.observe(key).is_deferred() {
            None
        } else {
            // The memory tier refuses what is over its per-object limit.
            self.memory.get_miss_handler(key, &meta, trace).await.ok()
        };
        Ok(Some((
            meta,
            Box::new(PromotingHit {
                weight: hit.get_eviction_weight(),
                disk: hit,
                memory,
            }),
        )))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let memory = self.memory.get_miss_handler(key, meta, trace).await.ok();
        let disk = match self.disk {
            Some(d) if !d.is_failed() => d.get_miss_handler(key, meta, trace).await.ok(),
            _ => None,
        };
        if memory.is_none() && disk.is_none() {
            return Error::e_explain(ErrorType::InternalError, "no cache tier takes this object");
        }
        Ok(Box::new(TeeMiss { memory, disk }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        purge_type: PurgeType,
        trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let memory = self.memory.purge(target, purge_type, trace).await?;
        if matches!(purge_type, PurgeType::Eviction) {
            return Ok(memory);
        }
        let disk = match self.disk {
            Some(d) => d.purge(target, purge_type, trace).await?,
            None => PurgeOutcome::NotFound,
        };
        Ok(if memory == PurgeOutcome::NotFound {
            disk
        } else {
            memory
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        trace: &SpanHandle,
    ) -> Result<bool> {
        let memory = self.memory.update_meta(key, meta, trace).await?;
        let disk = match self.disk {
            Some(d) => d.update_meta(key, meta, trace).await?,
            None => false,
        };
        Ok(memory || disk)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// A disk hit, its body copied into the memory tier as it is read when it was admitted there.
pub struct PromotingHit {
    disk: HitHandler,
    /// Where the copy goes; none: not admitted, or given up (a seek, a failed write).
    memory: Option<MissHandler>,
    weight: usize,
}

#[async_trait]
impl HandleHit for PromotingHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        let chunk = self.disk.read_body().await?;
        match (&chunk, self.memory.as_mut()) {
            (Some(b), Some(m)) => {
                if m.write_body(b.clone(), false).await.is_err() {
                    self.memory = None;
                }
            }
            (None, Some(_)) => {
                if let Some(m) = self.memory.take() {
                    let _ = m.finish().await;
                }
            }
            (_, None) => {}
        }
        Ok(chunk)
    }

    async fn finish(
        self: Box<Self>,
        storage: &'static (dyn Storage + Sync),
        key: &CacheKey,
        trace: &SpanHandle,
    ) -> Result<()> {
        // A copy not finished (the client left early) is dropped: nothing half-written stays.
        self.disk.finish(storage, key, trace).await
    }

    fn can_seek(&self) -> bool {
        self.disk.can_seek()
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        // A range is not the whole body: no copy.
        self.memory = None;
        self.disk.seek(start, end)
    }

    fn should_count_access(&self) -> bool {
        // pingora's LRU budgets the memory tier: only what is going into it.
        self.memory.is_some()
    }

    fn get_eviction_weight(&self) -> usize {
        self.weight
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Writes one body to each tier that took it; a tier that fails drops out, the other goes on.
struct TeeMiss {
    memory: Option<MissHandler>,
    disk: Option<MissHandler>,
}

#[async_trait]
impl HandleMiss for TeeMiss {
    async fn write_body(&mut self, data: Bytes, eof: bool) -> Result<()> {
        if let Some(m) = self.memory.as_mut() {
            if m.write_body(data.clone(), eof).await.is_err() {
                self.memory = None;
            }
        }
        if let Some(d) = self.disk.as_mut() {
            if d.write_body(data, eof).await.is_err() {
                self.disk = None;
            }
        }
        if self.memory.is_none() && self.disk.is_none() {
            return Error::e_explain(
                ErrorType::InternalError,
                "every cache tier dropped the write",
            );
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        // pingora's eviction manager budgets the memory tier: report its weight only.
        let mut weight = 0;
        if let Some(m) = self.memory.take() {
            if let Ok(MissFinishType::Created(w)) = m.finish().await {
                weight = w;
            }
        }
        let disk_ok = match self.disk.take() {
            Some(d) => d.finish().await.is_ok(),
            None => false,
        };
        if weight == 0 && !disk_ok {
            return Error::e_explain(ErrorType::InternalError, "no cache tier stored the object");
        }
        Ok(MissFinishType::Created(weight))
    }
}
