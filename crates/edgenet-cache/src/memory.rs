//! The memory tier: whole objects held in memory as the chunks they arrived in (no copy into one
//! buffer), with their `CacheMeta` (kept decoded: a hit clones it, with the patched
//! pingora-cache of `vendor/`). The byte budget is enforced by the eviction
//! manager that pingora-cache drives (`Cache::new` pairs them); this store only refuses single
//! objects larger than its per-object limit, so one huge download cannot flush the tier.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheEntryKey, CacheKey, CacheMeta, Storage};
use pingora_error::{Error, ErrorType, Result};

use crate::accounting::Accounting;

/// A stored object: its meta (decoded, handed out by a clone on each hit: deserializing means
/// decompressing the header, a tenth of a 1 KiB hit), the serialized meta's size, and the body
/// chunks with their start offsets.
struct Object {
    primary: HashBinary,
    meta: (Vec<u8>, Vec<u8>),
    decoded: CacheMeta,
    body: Arc<Body>,
}

struct Body {
    chunks: Vec<Bytes>,
    /// `starts[i]` is the offset of `chunks[i]` in the body.
    starts: Vec<usize>,
    len: usize,
}

impl Body {
    fn weight(&self, meta: &(Vec<u8>, Vec<u8>)) -> usize {
        self.len + meta.0.len() + meta.1.len()
    }
}

/// The memory tier.
pub struct MemoryStore {
    objects: RwLock<HashMap<HashBinary, Arc<Object>>>,
    accounting: Accounting,
    max_object_bytes: usize,
    evictions: AtomicU64,
}

impl MemoryStore {
    /// A store that refuses objects larger than `max_object_bytes` (body plus headers).
    pub fn new(max_object_bytes: usize) -> MemoryStore {
        MemoryStore {
            objects: RwLock::new(HashMap::new()),
            accounting: Accounting::default(),
            max_object_bytes,
            evictions: AtomicU64::new(0),
        }
    }

    /// Bytes held (bodies and serialized headers).
    pub fn stored_bytes(&self) -> usize {
        self.accounting.bytes() as usize
    }

    /// Objects evicted to stay within the byte budget, since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Objects held.
    pub fn len(&self) -> usize {
        self.objects.read().len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any variant of the URL with this primary key is stored.
    pub fn has_primary(&self, primary: &HashBinary) -> bool {
        self.accounting.has_primary(primary)
    }

    fn insert(&self, key: HashBinary, object: Object) {
        let weight = object.body.weight(&object.meta) as u64;
        let primary = object.primary;
        match self.objects.write().insert(key, Arc::new(object)) {
            Some(old) => self
                .accounting
                .resized(old.body.weight(&old.meta) as u64, weight),
            None => self.accounting.added(primary, weight),
        }
    }

    fn remove(&self, key: &HashBinary) -> bool {
        let Some(old) = self.objects.write().remove(key) else {
            return false;
        };
        self.accounting
            .removed(&old.primary, old.body.weight(&old.meta) as u64);
        true
    }
}

#[async_trait]
impl Storage for MemoryStore {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(object) = self.objects.read().get(&key.combined_bin()).cloned() else {
            return Ok(None);
        };
        let meta = object.decoded.clone();
        let hit = MemoryHit {
            body: object.body.clone(),
            weight: object.body.weight(&object.meta),
            pos: 0,
            end: object.body.len,
        };
        Ok(Some((meta, Box::new(hit))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let decoded = meta.clone();
        let meta = meta.serialize()?;
        if meta.0.len() + meta.1.len() > self.max_object_bytes {
            return Error::e_explain(ErrorType::InternalError, "cache object headers too large");
        }
        Ok(Box::new(MemoryMiss {
            store: self,
            key: key.combined_bin(),
            primary: key.primary_bin(),
            meta: Some(meta),
            decoded: Some(decoded),
            chunks: Vec::new(),
            len: 0,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        // Entries are identified by key alone here; an exact target with an id is not ours.
        if matches!(target, PurgeTarget::Exact(CacheEntryKey::Identified { .. })) {
            return Ok(PurgeOutcome::NotFound);
        }
        if self.remove(&target.key().combined_bin()) {
            if matches!(purge_type, PurgeType::Eviction) {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
            Ok(PurgeOutcome::Purged(None))
        } else {
            Ok(PurgeOutcome::NotFound)
        }
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let serialized = meta.serialize()?;
        let hash = key.combined_bin();
        let mut objects = self.objects.write();
        let Some(old) = objects.get(&hash).cloned() else {
            return Ok(false);
        };
        let (old_w, new_w) = (old.body.weight(&old.meta), old.body.weight(&serialized));
        objects.insert(
            hash,
            Arc::new(Object {
                primary: old.primary,
                meta: serialized,
                decoded: meta.clone(),
                body: old.body.clone(),
            }),
        );
        drop(objects);
        self.accounting.resized(old_w as u64, new_w as u64);
        Ok(true)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Reads a stored body, whole or one range of it.
struct MemoryHit {
    body: Arc<Body>,
    weight: usize,
    /// The next byte to return.
    pos: usize,
    /// One past the last byte to return.
    end: usize,
}

#[async_trait]
impl HandleHit for MemoryHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        // The chunk holding `pos`: the last whose start is at or before it.
        let i = self.body.starts.partition_point(|&s| s <= self.pos) - 1;
        let chunk = &self.body.chunks[i];
        let from = self.pos - self.body.starts[i];
        let to = chunk.len().min(from + (self.end - self.pos));
        self.pos += to - from;
        Ok(Some(chunk.slice(from..to)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let (start, end) = crate::seek_range(start, end, self.body.len as u64)?;
        (self.pos, self.end) = (start as usize, end as usize);
        Ok(())
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

/// Collects a body from the origin; it becomes visible to lookups only on `finish`.
struct MemoryMiss {
    store: &'static MemoryStore,
    key: HashBinary,
    primary: HashBinary,
    meta: Option<(Vec<u8>, Vec<u8>)>,
    decoded: Option<CacheMeta>,
    chunks: Vec<Bytes>,
    len: usize,
}

#[async_trait]
impl HandleMiss for MemoryMiss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let meta_len = self.meta.as_ref().map_or(0, |m| m.0.len() + m.1.len());
        if self.len + data.len() + meta_len > self.store.max_object_bytes {
            // Dropping the handler without `finish` abandons the write; the response still
            // streams to the client.
            return Error::e_explain(
                ErrorType::InternalError,
                "object larger than the memory tier's per-object limit",
            );
        }
        self.len += data.len();
        self.chunks.push(data);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let meta = self.meta.take().unwrap_or_default();
        let Some(decoded) = self.decoded.take() else {
            return Error::e_explain(ErrorType::InternalError, "memory fill finished twice");
        };
        let (chunks, starts) = coalesce(std::mem::take(&mut self.chunks));
        let body = Body {
            chunks,
            starts,
            len: self.len,
        };
        let weight = body.weight(&meta);
        self.store.insert(
            self.key,
            Object {
                primary: self.primary,
                meta,
                decoded,
                body: Arc::new(body),
            },
        );
        Ok(MissFinishType::Created(weight))
    }
}

/// Chunks as served: origin reads arrive in small pieces, and each piece would be one write to
/// every client on every hit. One copy at store time joins them into pieces of up to
/// [`COALESCE`] bytes.
const COALESCE: usize = 1 << 20;

fn coalesce(chunks: Vec<Bytes>) -> (Vec<Bytes>, Vec<usize>) {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    let mut current = bytes::BytesMut::new();
    let mut offset = 0;
    for chunk in chunks {
        if !current.is_empty() && current.len() + chunk.len() > COALESCE {
            starts.push(offset);
            offset += current.len();
            out.push(current.split().freeze());
        }
        current.extend_from_slice(&chunk);
    }
    if !current.is_empty() {
        starts.push(offset);
        out.push(current.freeze());
    }
    (out, starts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::trace::Span;
    use pingora_http::ResponseHeader;
    use std::time::{Duration, SystemTime};

    fn store() -> &'static MemoryStore {
        Box::leak(Box::new(MemoryStore::new(1 << 20)))
    }

    fn meta() -> CacheMeta {
        let now = SystemTime::now();
        let resp = ResponseHeader::build(200, None).unwrap();
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, resp)
    }

    async fn write(store: &'static MemoryStore, key: &CacheKey, parts: &[&str]) {
        let span = Span::inactive().handle();
        let mut miss = store.get_miss_handler(key, &meta(), &span).await.unwrap();
        for p in parts {
            miss.write_body(Bytes::copy_from_slice(p.as_bytes()), false)
                .await
                .unwrap();
        }
        miss.finish().await.unwrap();
    }

    async fn read_all(hit: &mut HitHandler) -> String {
        let mut out = String::new();
        while let Some(b) = hit.read_body().await.unwrap() {
            out.push_str(std::str::from_utf8(&b).unwrap());
        }
        out
    }

    #[tokio::test]
    async fn stores_on_finish_and_reads_back_chunks() {
        let s = store();
        let key = CacheKey::new("a", "");
        let span = Span::inactive().handle();
        assert!(s.lookup(&key, &span).await.unwrap().is_none());
        write(s, &key, &["hello ", "cached ", "world"]).await;
        let (_, mut hit) = s.lookup(&key, &span).await.unwrap().unwrap();
        assert_eq!(read_all(&mut hit).await, "hello cached world");
        assert!(s.stored_bytes() >= 18);
        assert!(s.has_primary(&key.primary_bin()));
    }

    #[tokio::test]
    async fn seeks_within_and_across_chunks() {
        let s = store();
        let key = CacheKey::new("r", "");
        write(s, &key, &["0123", "4567", "89"]).await;
        let (_, mut hit) = s
            .lookup(&key, &Span::inactive().handle())
            .await
            .unwrap()
            .unwrap();
        hit.seek(3, Some(7)).unwrap();
        assert_eq!(read_all(&mut hit).await, "3456");
        hit.seek(8, None).unwrap();
        assert_eq!(read_all(&mut hit).await, "89");
        assert!(hit.seek(10, None).is_err());

        // Pieces joined up to COALESCE bytes: 3 x 600 KB stays 3 chunks; a range spans two.
        let big: &'static MemoryStore = Box::leak(Box::new(MemoryStore::new(8 << 20)));
        let key = CacheKey::new("big", "");
        let parts: Vec<String> = ["a", "b", "c"].iter().map(|c| c.repeat(600_000)).collect();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        write(big, &key, &refs).await;
        let (_, mut hit) = big
            .lookup(&key, &Span::inactive().handle())
            .await
            .unwrap()
            .unwrap();
        hit.seek(599_998, Some(600_003)).unwrap();
        assert_eq!(read_all(&mut hit).await, "aabbb");
    }

    #[test]
    fn coalesces_small_reads_into_large_chunks() {
        let pieces: Vec<Bytes> = (0..100)
            .map(|_| Bytes::from(vec![1u8; 16 * 1024]))
            .collect();
        let (chunks, starts) = coalesce(pieces);
        assert_eq!(chunks.len(), 2);
        assert_eq!(starts, vec![0, 1 << 20]);
        assert_eq!(
            chunks.iter().map(Bytes::len).sum::<usize>(),
            100 * 16 * 1024
        );
    }

    #[tokio::test]
    async fn an_unfinished_write_is_never_visible() {
        let s = store();
        let key = CacheKey::new("u", "");
        let span = Span::inactive().handle();
        let mut miss = s.get_miss_handler(&key, &meta(), &span).await.unwrap();
        miss.write_body(Bytes::from_static(b"part"), false)
            .await
            .unwrap();
        drop(miss);
        assert!(s.lookup(&key, &span).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn refuses_objects_over_the_limit_and_purges() {
        let s: &'static MemoryStore = Box::leak(Box::new(MemoryStore::new(300)));
        let key = CacheKey::new("big", "");
        let span = Span::inactive().handle();
        let mut miss = s.get_miss_handler(&key, &meta(), &span).await.unwrap();
        assert!(miss
            .write_body(Bytes::from(vec![0u8; 400]), false)
            .await
            .is_err());
        let small = CacheKey::new("small", "");
        write(s, &small, &["x"]).await;
        let compact = small.to_compact();
        let out = s
            .purge(
                PurgeTarget::Active(&compact),
                PurgeType::Invalidation,
                &span,
            )
            .await
            .unwrap();
        assert_eq!(out, PurgeOutcome::Purged(None));
        assert!(s.lookup(&small, &span).await.unwrap().is_none());
        assert_eq!(s.stored_bytes(), 0);
        assert!(!s.has_primary(&small.primary_bin()));
    }
}
