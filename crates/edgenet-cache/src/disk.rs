//! The disk tier: one file per object, written to a temporary file and renamed into place when
//! complete (a torn write is never visible), found again after a restart by scanning the
//! directory, and checksummed so that a corrupt entry is never served.
//!
//! File layout (integers little-endian):
//!
//! ```text
//! magic "EDGNCAC1" | meta0 len u32 | meta1 len u32 | body len u64 | block size u32 | crc u32
//! meta0 | meta1 | body | one CRC-32 per body block (u32 each)
//! ```
//!
//! The header CRC covers the header fields, both meta parts and the block CRC table; each body
//! block is checked when read. A lookup reads and checks the first block, so a corrupt small
//! object is a miss; a later block found corrupt aborts that response (the client sees a cut
//! response, never wrong bytes) and the entry is deleted.
//!
//! Every file call runs on tokio's blocking pool ([`off_thread`]), never on a proxy thread: a
//! cold or slow disk delays the requests that read from it, not the others on the same thread
//! (hits from memory included). Body blocks are read with positional reads of a shared file.

use std::any::Any;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
use pingora_lru::Lru;

use crate::accounting::Accounting;

const MAGIC: &[u8; 8] = b"EDGNCAC1";
const HEADER_LEN: usize = 32;
/// Body block size: the unit of checksums and of reads.
pub const BLOCK: usize = 256 * 1024;
/// The largest headers accepted in a file (a corrupt length must not allocate gigabytes).
const MAX_META: usize = 1 << 20;
const LRU_SHARDS: usize = 16;

struct Entry {
    primary: HashBinary,
    size: u64,
}

/// The disk tier.
pub struct DiskStore {
    dir: PathBuf,
    index: RwLock<HashMap<HashBinary, Entry>>,
    accounting: Accounting,
    lru: Lru<HashBinary, LRU_SHARDS>,
    next_tmp: AtomicU64,
    /// Set after the first write error: the tier stops taking objects (reads continue).
    failed: AtomicBool,
    errors: AtomicU64,
    corrupt: AtomicU64,
    evictions: AtomicU64,
}

fn hex(key: &HashBinary) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<HashBinary> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn lru_key(key: &HashBinary) -> u64 {
    u64::from_le_bytes(key[..8].try_into().expect("16-byte key"))
}

fn disk_error(context: &str, e: impl std::fmt::Display) -> Box<Error> {
    Error::explain(
        ErrorType::InternalError,
        format!("cache disk: {context}: {e}"),
    )
}

/// A parsed file header.
struct Header {
    meta0: usize,
    meta1: usize,
    body: u64,
    block: usize,
    crc: u32,
}

impl Header {
    fn blocks(&self) -> usize {
        (self.body as usize).div_ceil(self.block)
    }

    fn file_len(&self) -> u64 {
        (HEADER_LEN + self.meta0 + self.meta1) as u64 + self.body + 4 * self.blocks() as u64
    }

    fn fields(&self) -> [u8; HEADER_LEN - 4] {
        let mut out = [0u8; HEADER_LEN - 4];
        out[..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&(self.meta0 as u32).to_le_bytes());
        out[12..16].copy_from_slice(&(self.meta1 as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.body.to_le_bytes());
        out[24..28].copy_from_slice(&(self.block as u32).to_le_bytes());
        out
    }

    fn parse(b: &[u8; HEADER_LEN]) -> Option<Header> {
        if &b[..8] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let h = Header {
            meta0: u32_at(8) as usize,
            meta1: u32_at(12) as usize,
            body: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            block: u32_at(24) as usize,
            crc: u32_at(28),
        };
        (h.meta0 + h.meta1 <= MAX_META && h.block > 0).then_some(h)
    }

    fn checksum(&self, meta0: &[u8], meta1: &[u8], crcs: &[u8]) -> u32 {
        let mut c = crc32fast::Hasher::new();
        c.update(&self.fields());
        c.update(meta0);
        c.update(meta1);
        c.update(crcs);
        c.finalize()
    }
}

/// An entry opened and checked: its meta, and where its body is.
struct Opened {
    file: File,
    header: Header,
    meta: (Vec<u8>, Vec<u8>),
    crcs: Vec<u32>,
}

/// Runs blocking file work on tokio's blocking pool (inline outside a runtime), and waits for
/// it without holding the calling thread.
async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => match rt.spawn_blocking(work).await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        },
        Err(_) => work(),
    }
}

/// A test's slow disk: `EDGENET_TEST_DISK_READ_DELAY=ms` delays every body read of the disk
/// tier (debug builds only; release builds have no such knob).
fn injected_delay() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("EDGENET_TEST_DISK_READ_DELAY")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Block `index` of a body of `body_len` bytes starting at `body_start` in `file`, checked
/// against its CRC in `crcs`.
fn read_block(
    file: &File,
    body_start: u64,
    body_len: u64,
    block: usize,
    crcs: &[u32],
    index: usize,
) -> io::Result<Bytes> {
    injected_delay();
    let start = index as u64 * block as u64;
    let len = (body_len - start).min(block as u64) as usize;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, body_start + start)?;
    if crcs.get(index) != Some(&crc32fast::hash(&buf)) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "block checksum"));
    }
    Ok(Bytes::from(buf))
}

fn open_checked(path: &Path) -> io::Result<Option<Opened>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut hb = [0u8; HEADER_LEN];
    if len < HEADER_LEN as u64 {
        return Ok(None);
    }
    file.read_exact(&mut hb)?;
    let Some(header) = Header::parse(&hb) else {
        return Ok(None);
    };
    if header.file_len() != len {
        return Ok(None);
    }
    let mut meta0 = vec![0; header.meta0];
    let mut meta1 = vec![0; header.meta1];
    file.read_exact(&mut meta0)?;
    file.read_exact(&mut meta1)?;
    let mut table = vec![0; 4 * header.blocks()];
    file.seek(SeekFrom::Start(len - table.len() as u64))?;
    file.read_exact(&mut table)?;
    if header.checksum(&meta0, &meta1, &table) != header.crc {
        return Ok(None);
    }
    let crcs = table
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    Ok(Some(Opened {
        file,
        header,
        meta: (meta0, meta1),
        crcs,
    }))
}

impl DiskStore {
    /// The tier's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens (creating) the tier in `dir` with a budget of `budget_bytes`, indexing the objects
    /// already there. Entries that fail their header check and unfinished writes are deleted.
    pub fn open(dir: &Path, budget_bytes: usize) -> io::Result<DiskStore> {
        let objects = dir.join("objects");
        let tmp = dir.join("tmp");
        fs::create_dir_all(&objects)?;
        fs::create_dir_all(&tmp)?;
        for e in fs::read_dir(&tmp)? {
            let _ = fs::remove_file(e?.path());
        }
        let store = DiskStore {
            dir: dir.to_path_buf(),
            index: RwLock::new(HashMap::new()),
            accounting: Accounting::default(),
            lru: Lru::with_capacity(budget_bytes, 1024),
            next_tmp: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        };
        for shard in fs::read_dir(&objects)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for e in fs::read_dir(shard.path())? {
                let path = e?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let parsed = name
                    .split_once('-')
                    .and_then(|(k, p)| Some((unhex(k)?, unhex(p)?)));
                let checked = open_checked(&path).ok().flatten();
                match (parsed, checked) {
                    (Some((key, primary)), Some(opened)) => {
                        store.insert(key, primary, opened.header.file_len());
                    }
                    _ => {
                        store.corrupt.fetch_add(1, Ordering::Relaxed);
                        let _ = fs::remove_file(&path);
                    }
                }
            }
        }
        Ok(store)
    }

    fn path(&self, key: &HashBinary, primary: &HashBinary) -> PathBuf {
        let k = hex(key);
        self.dir
            .join("objects")
            .join(&k[..2])
            .join(format!("{k}-{}", hex(primary)))
    }

    /// A fresh name under `tmp/` for a file being written.
    fn tmp_path(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()))
    }

    /// Bytes held (files, headers included).
    pub fn stored_bytes(&self) -> u64 {
        self.accounting.bytes()
    }

    /// Objects held.
    pub fn len(&self) -> usize {
        self.index.read().len()
    }

    /// Whether the tier holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any variant of the URL with this primary key is stored.
    pub fn has_primary(&self, primary: &HashBinary) -> bool {
        self.accounting.has_primary(primary)
    }

    /// Write errors since start (the first one turns the tier off for writes).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Corrupt entries found (and deleted) since start.
    pub fn corrupt(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }

    /// Objects evicted to stay within the budget.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Whether writes stopped after an error.
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn write_failed(&self, what: &str, e: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if !self.failed.swap(true, Ordering::Relaxed) {
            tracing::error!(dir = %self.dir.display(), error = %e,
                "cache disk tier: {what} failed; serving from the memory tier only");
        }
    }

    /// Indexes a complete file of `size` bytes (replacing any entry for `key`) and evicts
    /// what no longer fits.
    fn insert(&self, key: HashBinary, primary: HashBinary, size: u64) {
        match self.index.write().insert(key, Entry { primary, size }) {
            Some(old) => {
                self.accounting.resized(old.size, size);
                self.lru.remove(lru_key(&key));
            }
            None => self.accounting.added(primary, size),
        }
        self.lru.admit(lru_key(&key), key, size as usize);
        self.evict();
    }

    /// Drops `key` from the index and deletes its file; returns whether it was there.
    fn forget(&self, key: &HashBinary) -> bool {
        let Some(entry) = self.index.write().remove(key) else {
            return false;
        };
        self.accounting.removed(&entry.primary, entry.size);
        let _ = fs::remove_file(self.path(key, &entry.primary));
        true
    }

    fn remove(&self, key: &HashBinary) -> bool {
        self.lru.remove(lru_key(key));
        self.forget(key)
    }

    fn evict(&self) {
        for (key, _) in self.lru.evict_to_limit() {
            if self.forget(&key) {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn corrupt_entry(&self, key: &HashBinary) {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(key = %hex(key), "cache disk tier: corrupt entry deleted");
        self.remove(key);
    }
}

#[async_trait]
impl Storage for DiskStore {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let hash = key.combined_bin();
        let Some(primary) = self.index.read().get(&hash).map(|e| e.primary) else {
            return Ok(None);
        };
        let path = self.path(&hash, &primary);
        // Open and check the file, and its first block (so that a corrupt small object is a
        // miss), off the proxy's thread.
        let opened = off_thread(move || {
            let opened = open_checked(&path)?;
            Ok::<_, io::Error>(opened.map(|o| {
                let body_start = (HEADER_LEN + o.header.meta0 + o.header.meta1) as u64;
                let first = (o.header.body > 0).then(|| {
                    read_block(
                        &o.file,
                        body_start,
                        o.header.body,
                        o.header.block,
                        &o.crcs,
                        0,
                    )
                });
                (o, body_start, first)
            }))
        })
        .await;
        let (opened, body_start, first) = match opened {
            Ok(Some(o)) => o,
            Ok(None) => {
                self.corrupt_entry(&hash);
                return Ok(None);
            }
            Err(_) => {
                // Gone underneath us (deleted by hand, or evicted concurrently): a miss.
                self.remove(&hash);
                return Ok(None);
            }
        };
        let first = match first {
            None => None,
            Some(Ok(b)) => Some(b),
            Some(Err(_)) => {
                self.corrupt_entry(&hash);
                return Ok(None);
            }
        };
        let meta = match CacheMeta::deserialize(&opened.meta.0, &opened.meta.1) {
            Ok(m) => m,
            Err(_) => {
                self.corrupt_entry(&hash);
                return Ok(None);
            }
        };
        self.lru.promote(lru_key(&hash));
        let hit = DiskHit {
            store: self,
            key: hash,
            file: Arc::new(opened.file),
            body_start,
            body_len: opened.header.body,
            block: opened.header.block,
            crcs: opened.crcs.into(),
            pos: 0,
            end: opened.header.body,
            weight: opened.header.file_len() as usize,
            first,
        };
        Ok(Some((meta, Box::new(hit))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        if self.is_failed() {
            return Error::e_explain(ErrorType::InternalError, "cache disk tier is off");
        }
        let meta = meta.serialize()?;
        let tmp = self.tmp_path();
        let (path, head) = (tmp.clone(), meta.clone());
        let created = off_thread(move || {
            let mut file = BufWriter::with_capacity(BLOCK, File::create(&path)?);
            let prefix = [0u8; HEADER_LEN];
            let written = file
                .write_all(&prefix)
                .and_then(|_| file.write_all(&head.0))
                .and_then(|_| file.write_all(&head.1));
            if let Err(e) = written {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
            Ok(file)
        })
        .await;
        let file = match created {
            Ok(f) => f,
            Err(e) => {
                self.write_failed("creating a file", &e);
                return Err(disk_error("create", e));
            }
        };
        Ok(Box::new(DiskMiss {
            store: self,
            key: key.combined_bin(),
            primary: key.primary_bin(),
            tmp,
            file: Some(file),
            meta,
            body: 0,
            crcs: Vec::new(),
            block: crc32fast::Hasher::new(),
            in_block: 0,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        if matches!(target, PurgeTarget::Exact(CacheEntryKey::Identified { .. })) {
            return Ok(PurgeOutcome::NotFound);
        }
        if self.remove(&target.key().combined_bin()) {
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
        // The meta is inside the file, before the body: rewriting means copying the body.
        // Revalidations are rare next to hits; copy through a new temporary file and rename.
        let hash = key.combined_bin();
        let Some(primary) = self.index.read().get(&hash).map(|e| e.primary) else {
            return Ok(false);
        };
        let path = self.path(&hash, &primary);
        let meta = meta.serialize()?;
        let tmp = self.tmp_path();
        let (path_, tmp_) = (path.clone(), tmp.clone());
        let result = off_thread(move || -> io::Result<Option<u64>> {
            let Some(mut opened) = open_checked(&path_)? else {
                return Ok(None);
            };
            let body_start = (HEADER_LEN + opened.header.meta0 + opened.header.meta1) as u64;
            let header = Header {
                meta0: meta.0.len(),
                meta1: meta.1.len(),
                body: opened.header.body,
                block: opened.header.block,
                crc: 0,
            };
            let table: Vec<u8> = opened.crcs.iter().flat_map(|c| c.to_le_bytes()).collect();
            let crc = header.checksum(&meta.0, &meta.1, &table);
            let mut out = BufWriter::with_capacity(BLOCK, File::create(&tmp_)?);
            out.write_all(&header.fields())?;
            out.write_all(&crc.to_le_bytes())?;
            out.write_all(&meta.0)?;
            out.write_all(&meta.1)?;
            opened.file.seek(SeekFrom::Start(body_start))?;
            io::copy(&mut (&mut opened.file).take(opened.header.body), &mut out)?;
            out.write_all(&table)?;
            out.flush()?;
            fs::rename(&tmp_, &path_)?;
            Ok(Some(header.file_len()))
        })
        .await;
        // Not there, or failing its checks: that entry is gone; failing to write: the tier's.
        let result = match result {
            Ok(Some(size)) => Ok(size),
            Ok(None) => {
                self.corrupt_entry(&hash);
                return Ok(false);
            }
            Err(_) if !path.exists() => {
                self.corrupt_entry(&hash);
                return Ok(false);
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(size) => {
                if let Some(e) = self.index.write().get_mut(&hash) {
                    self.accounting.resized(e.size, size);
                    e.size = size;
                }
                Ok(true)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                self.write_failed("rewriting headers", &e);
                Ok(false)
            }
        }
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Streams a stored body block by block, checking each block's CRC.
struct DiskHit {
    store: &'static DiskStore,
    key: HashBinary,
    file: Arc<File>,
    body_start: u64,
    body_len: u64,
    block: usize,
    crcs: Arc<[u32]>,
    pos: u64,
    end: u64,
    weight: usize,
    /// The first block, read and checked at lookup.
    first: Option<Bytes>,
}

impl DiskHit {
    /// Reads and checks block `index`, off the proxy's thread.
    async fn read_block(&self, index: usize) -> io::Result<Bytes> {
        let (file, crcs) = (self.file.clone(), self.crcs.clone());
        let (start, len, block) = (self.body_start, self.body_len, self.block);
        off_thread(move || read_block(&file, start, len, block, &crcs, index)).await
    }
}

#[async_trait]
impl HandleHit for DiskHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let index = (self.pos / self.block as u64) as usize;
        let block = match (index, self.first.take()) {
            (0, Some(b)) => b,
            _ => match self.read_block(index).await {
                Ok(b) => b,
                Err(e) => {
                    self.store.corrupt_entry(&self.key);
                    return Err(disk_error("reading a cached body", e));
                }
            },
        };
        let block_start = index as u64 * self.block as u64;
        let from = (self.pos - block_start) as usize;
        let to = ((self.end - block_start) as usize).min(block.len());
        self.pos = block_start + to as u64;
        Ok(Some(block.slice(from..to)))
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
        (self.pos, self.end) = crate::seek_range(start, end, self.body_len)?;
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

/// Writes a body to a temporary file; `finish` adds the checksums and renames it into place.
struct DiskMiss {
    store: &'static DiskStore,
    key: HashBinary,
    primary: HashBinary,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    meta: (Vec<u8>, Vec<u8>),
    body: u64,
    crcs: Vec<u32>,
    block: crc32fast::Hasher,
    in_block: usize,
}

impl DiskMiss {
    fn fail(&mut self, what: &str, e: io::Error) -> Box<Error> {
        self.file = None;
        let _ = fs::remove_file(&self.tmp);
        self.store.write_failed(what, &e);
        disk_error(what, e)
    }
}

#[async_trait]
impl HandleMiss for DiskMiss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        let Some(mut file) = self.file.take() else {
            return Error::e_explain(ErrorType::InternalError, "cache disk write abandoned");
        };
        let chunk = data.clone();
        let (file, written) = off_thread(move || {
            let written = file.write_all(&chunk);
            (file, written)
        })
        .await;
        self.file = Some(file);
        if let Err(e) = written {
            return Err(self.fail("writing a body", e));
        }
        let mut rest = &data[..];
        while !rest.is_empty() {
            let take = (BLOCK - self.in_block).min(rest.len());
            self.block.update(&rest[..take]);
            self.in_block += take;
            rest = &rest[take..];
            if self.in_block == BLOCK {
                let done = std::mem::replace(&mut self.block, crc32fast::Hasher::new());
                self.crcs.push(done.finalize());
                self.in_block = 0;
            }
        }
        self.body += data.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        if self.in_block > 0 {
            let done = std::mem::replace(&mut self.block, crc32fast::Hasher::new());
            self.crcs.push(done.finalize());
        }
        let header = Header {
            meta0: self.meta.0.len(),
            meta1: self.meta.1.len(),
            body: self.body,
            block: BLOCK,
            crc: 0,
        };
        let table: Vec<u8> = self.crcs.iter().flat_map(|c| c.to_le_bytes()).collect();
        let crc = header.checksum(&self.meta.0, &self.meta.1, &table);
        let Some(mut file) = self.file.take() else {
            return Error::e_explain(ErrorType::InternalError, "cache disk write abandoned");
        };
        let path = self.store.path(&self.key, &self.primary);
        let tmp = self.tmp.clone();
        let fields = header.fields();
        let written = off_thread(move || -> io::Result<()> {
            file.write_all(&table)?;
            let mut file = file.into_inner().map_err(|e| e.into_error())?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&fields)?;
            file.write_all(&crc.to_le_bytes())?;
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::rename(&tmp, &path)
        })
        .await;
        if let Err(e) = written {
            return Err(self.fail("finishing a file", e));
        }
        let size = header.file_len();
        self.store.insert(self.key, self.primary, size);
        Ok(MissFinishType::Created(size as usize))
    }
}

impl Drop for DiskMiss {
    fn drop(&mut self) {
        // Abandoned before `finish`: the temporary file goes.
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::trace::Span;
    use pingora_http::ResponseHeader;
    use std::time::{Duration, SystemTime};

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("edgenet-disk-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn meta() -> CacheMeta {
        let now = SystemTime::now();
        let resp = ResponseHeader::build(200, None).unwrap();
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, resp)
    }

    async fn write(s: &'static DiskStore, key: &CacheKey, body: &[u8]) {
        let span = Span::inactive().handle();
        let mut miss = s.get_miss_handler(key, &meta(), &span).await.unwrap();
        for part in body.chunks(100_000) {
            miss.write_body(Bytes::copy_from_slice(part), false)
                .await
                .unwrap();
        }
        miss.finish().await.unwrap();
    }

    async fn read(s: &'static DiskStore, key: &CacheKey) -> Option<Result<Vec<u8>>> {
        let span = Span::inactive().handle();
        let (_, mut hit) = s.lookup(key, &span).await.unwrap()?;
        let mut out = Vec::new();
        loop {
            match hit.read_body().await {
                Ok(Some(b)) => out.extend_from_slice(&b),
                Ok(None) => return Some(Ok(out)),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn leak(d: &Path, budget: usize) -> &'static DiskStore {
        Box::leak(Box::new(DiskStore::open(d, budget).unwrap()))
    }

    #[tokio::test]
    async fn survives_a_restart() {
        let d = dir("restart");
        let body: Vec<u8> = (0..700_000u32).map(|i| i as u8).collect();
        let key = CacheKey::new("k", "");
        write(leak(&d, 1 << 30), &key, &body).await;
        let reopened = leak(&d, 1 << 30);
        assert_eq!(reopened.len(), 1);
        assert_eq!(read(reopened, &key).await.unwrap().unwrap(), body);
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn corrupt_entries_are_misses_or_cut_never_wrong() {
        let d = dir("corrupt");
        let s = leak(&d, 1 << 30);
        let small = CacheKey::new("small", "");
        write(s, &small, b"hello world").await;
        let big = CacheKey::new("big", "");
        write(s, &big, &vec![7u8; 3 * BLOCK]).await;
        let flip = |key: &CacheKey, at_end: u64| {
            let path = s.path(&key.combined_bin(), &key.primary_bin());
            let mut f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap();
            let len = f.metadata().unwrap().len();
            let at = len - at_end;
            let mut b = [0u8];
            f.seek(SeekFrom::Start(at)).unwrap();
            f.read_exact(&mut b).unwrap();
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&[b[0] ^ 0xff]).unwrap();
        };
        // A flipped body byte of a one-block object: a miss, and the entry is gone.
        flip(&small, 4 + 3);
        assert!(read(s, &small).await.is_none());
        assert_eq!(s.corrupt(), 1);
        // A flipped byte in the last block of a big object: the read fails there.
        flip(&big, 12 + 10);
        assert!(read(s, &big).await.unwrap().is_err());
        assert!(read(s, &big).await.is_none(), "deleted after");
        // A torn file (truncated) is dropped at startup.
        let torn = CacheKey::new("torn", "");
        write(s, &torn, b"abcdef").await;
        let path = s.path(&torn.combined_bin(), &torn.primary_bin());
        let len = fs::metadata(&path).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let reopened = leak(&d, 1 << 30);
        assert!(read(reopened, &torn).await.is_none());
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn stays_within_its_budget_and_seeks() {
        let d = dir("budget");
        let s = leak(&d, 3 * 110_000);
        for i in 0..10 {
            write(
                s,
                &CacheKey::new(format!("k{i}"), ""),
                &vec![i as u8; 100_000],
            )
            .await;
        }
        assert!(s.stored_bytes() <= 3 * 110_000, "{}", s.stored_bytes());
        assert!(s.evictions() >= 7);
        let s = leak(&dir("seek"), 1 << 30);
        let key = CacheKey::new("seek", "");
        let body: Vec<u8> = (0..(BLOCK as u32 + 1000))
            .map(|i| (i % 251) as u8)
            .collect();
        write(s, &key, &body).await;
        let span = Span::inactive().handle();
        let (_, mut hit) = s.lookup(&key, &span).await.unwrap().unwrap();
        hit.seek(BLOCK - 2, Some(BLOCK + 3)).unwrap();
        let mut got = Vec::new();
        while let Some(b) = hit.read_body().await.unwrap() {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, body[BLOCK - 2..BLOCK + 3]);
        let _ = fs::remove_dir_all(&d);
        let _ = fs::remove_dir_all(dir("seek"));
    }

    #[tokio::test]
    async fn an_unwritable_directory_turns_the_tier_off() {
        let d = dir("ro");
        let s = leak(&d, 1 << 20);
        fs::remove_dir_all(d.join("tmp")).unwrap();
        let span = Span::inactive().handle();
        assert!(s
            .get_miss_handler(&CacheKey::new("x", ""), &meta(), &span)
            .await
            .is_err());
        assert!(s.is_failed());
        assert_eq!(s.errors(), 1);
        let _ = fs::remove_dir_all(&d);
    }
}
