//! The PoP's copy of the edge key-value store: what its workers read through `wasi:keyvalue`.
//!
//! - On disk, the whole copy in a redb database beside the state file (`NAME.kv.redb`): each
//!   key's last write with its number, and the number of the last write applied. A PoP
//!   restarted with the control plane down serves its reads from it.
//! - In memory, the values read most recently, up to `workers.kv_memory` (quick_cache's
//!   weighted CLOCK-Pro); absent keys are remembered too. A read from memory takes a few
//!   hundred nanoseconds (`bench/workers.sh`).
//! - It follows `GET /v1/kv/stream?since=SEQ` from the last write applied; each chunk of
//!   lines is one transaction. When the control plane says the PoP was too far behind (it
//!   pruned a delete the PoP never saw), the copy is dropped and rebuilt from the stream.
//! - Until it has reached the stream's head once in this process, a key it does not have is
//!   read from the control plane (a cold read), unless that failed in the last few seconds.
//! - A worker's write goes to the control plane first (which numbers it and carries it to
//!   every PoP), then into this copy, so the worker reads its own write at once. The last
//!   write wins: a write is applied only over an older one, so a late stream line never
//!   undoes the PoP's own newer write.
//! - Values expire here by their own expiry time: a value past it reads as absent at once,
//!   and is dropped from disk every minute.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use edgenet_protocol::kv::{KvLine, KvStreamLine, MAX_KEY, MAX_VALUE};
use edgenet_proxy::lock;
use edgenet_workers::{KvBackend, KvError};
use futures_util::StreamExt;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const VALUES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("values");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

/// How long a failed cold read stops the others (the control plane is down or far).
const COLD_PAUSE: Duration = Duration::from_secs(5);
/// How long a cold read may take.
const COLD_TIMEOUT: Duration = Duration::from_secs(1);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A key's last write as this PoP knows it (a value, or none: deleted or absent).
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    seq: i64,
    expires_ms: Option<i64>,
    value: Option<Bytes>,
}

impl Slot {
    /// What nothing has been written to.
    const ABSENT: Slot = Slot {
        seq: 0,
        expires_ms: None,
        value: None,
    };

    fn of(line: &KvLine) -> Result<Slot, String> {
        let value = match &line.value {
            Some(b64) => Some(Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("write {} of {:?}: value: {e}", line.seq, line.key))?,
            )),
            None => None,
        };
        Ok(Slot {
            seq: line.seq,
            expires_ms: line.expires_ms,
            value,
        })
    }

    /// `seq`, `expires_ms` (`i64::MIN`: none), then the value after a 1 (or a 0: deleted).
    fn encode(&self) -> Vec<u8> {
        let value = self.value.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(17 + value.len());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.expires_ms.unwrap_or(i64::MIN).to_le_bytes());
        out.push(u8::from(self.value.is_some()));
        out.extend_from_slice(value);
        out
    }

    fn decode(b: &[u8]) -> Option<Slot> {
        let seq = i64::from_le_bytes(b.get(..8)?.try_into().ok()?);
        let expires = i64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
        let value = match *b.get(16)? {
            0 => None,
            _ => Some(Bytes::copy_from_slice(&b[17..])),
        };
        Some(Slot {
            seq,
            expires_ms: (expires != i64::MIN).then_some(expires),
            value,
        })
    }

    /// The value at `now`, unless deleted or expired.
    fn live(&self, now: i64) -> Option<Bytes> {
        match self.expires_ms {
            Some(x) if x <= now => None,
            _ => self.value.clone(),
        }
    }
}

/// A key in memory: (namespace, key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key(String, String);

/// A key to look up without copying it (hashes as [`Key`] does: each string in turn).
struct Probe<'a>(&'a str, &'a str);

impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h);
        self.1.hash(h);
    }
}

impl quick_cache::Equivalent<Key> for Probe<'_> {
    fn equivalent(&self, k: &Key) -> bool {
        self.0 == k.0 && self.1 == k.1
    }
}

/// What an entry costs in memory: its bytes and a bit for the bookkeeping.
#[derive(Debug, Clone)]
struct Weigh;

impl quick_cache::Weighter<Key, Slot> for Weigh {
    fn weight(&self, k: &Key, v: &Slot) -> u64 {
        (k.0.len() + k.1.len() + v.value.as_ref().map_or(0, Bytes::len) + 96) as u64
    }
}

/// Reads and writes so far.
#[derive(Debug, Default)]
pub struct KvStats {
    /// Reads answered from memory.
    pub memory: AtomicU64,
    /// Reads answered from disk.
    pub disk: AtomicU64,
    /// Reads sent to the control plane.
    pub cold: AtomicU64,
    /// Writes the PoP's workers made.
    pub writes: AtomicU64,
}

/// The control plane's address and the PoP's token.
struct Control {
    base: String,
    token: String,
    /// Without a pool: it is used from every proxy thread's runtime, and a pooled connection
    /// belongs to the runtime that opened it.
    client: reqwest::Client,
}

/// The PoP's copy of the edge key-value store.
pub struct KvReplica {
    db: redb::Database,
    memory: quick_cache::sync::Cache<Key, Slot, Weigh>,
    /// Held for reading while a read fills memory from disk, for writing while writes are
    /// applied: a fill never puts back a value older than one just applied.
    applying: RwLock<()>,
    /// The last write of the stream applied.
    seq: AtomicI64,
    /// The stream's head was reached in this process: what is not here does not exist.
    at_head: AtomicBool,
    control: Option<Control>,
    /// Cold reads wait until then after one failed.
    paused_until: Mutex<Option<Instant>>,
    /// Reads and writes so far.
    pub stats: KvStats,
}

fn disk(e: impl std::fmt::Display) -> KvError {
    KvError::Other(format!("the PoP's key-value copy: {e}"))
}

impl KvReplica {
    /// Opens (or creates) the copy at `path`, keeping up to `memory_bytes` of values in
    /// memory, reading and writing through the control plane at `control` (`(base URL,
    /// token)`) when there is one.
    pub fn open(
        path: &Path,
        memory_bytes: usize,
        control: Option<(String, String)>,
    ) -> anyhow::Result<KvReplica> {
        let db = Self::create(path, memory_bytes)
            .map_err(|e| anyhow::anyhow!("the key-value copy {}: {e}", path.display()))?;
        Self::from_db(db, memory_bytes, control)
    }

    /// [`KvReplica::open`], or, while another process holds the copy at `path` (the node an
    /// upgrade takes over from), the second copy beside it (`NAME.kv.b.redb`), which catches
    /// up from the stream where it left off.
    pub fn open_either(
        path: &Path,
        memory_bytes: usize,
        control: Option<(String, String)>,
    ) -> anyhow::Result<KvReplica> {
        match Self::create(path, memory_bytes) {
            Ok(db) => Self::from_db(db, memory_bytes, control),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                let other = path.with_extension("b.redb");
                tracing::info!(
                    held = %path.display(),
                    copy = %other.display(),
                    "the key-value copy is held by the node this one takes over from: using the other"
                );
                Self::open(&other, memory_bytes, control)
            }
            Err(e) => anyhow::bail!("the key-value copy {}: {e}", path.display()),
        }
    }

    fn create(path: &Path, memory_bytes: usize) -> Result<redb::Database, redb::DatabaseError> {
        redb::Database::builder()
            .set_cache_size((memory_bytes / 4).clamp(1 << 20, 64 << 20))
            .create(path)
    }

    fn from_db(
        db: redb::Database,
        memory_bytes: usize,
        control: Option<(String, String)>,
    ) -> anyhow::Result<KvReplica> {
        let tx = db.begin_write()?;
        let seq = {
            tx.open_table(VALUES)?;
            let meta = tx.open_table(META)?;
            let seq = meta.get("seq")?.map_or(0, |v| v.value());
            seq
        };
        tx.commit()?;
        let entries = (memory_bytes / 256).max(64);
        let control = control.map(|(base, token)| Control {
            base: base.trim_end_matches('/').to_string(),
            token,
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .pool_max_idle_per_host(0)
                .build()
                .expect("an HTTP client"),
        });
        Ok(KvReplica {
            db,
            memory: quick_cache::sync::Cache::with_weighter(entries, memory_bytes as u64, Weigh),
            applying: RwLock::new(()),
            seq: AtomicI64::new(seq),
            at_head: AtomicBool::new(false),
            control,
            paused_until: Mutex::new(None),
            stats: KvStats::default(),
        })
    }

    /// The last write of the stream applied.
    pub fn seq(&self) -> i64 {
        self.seq.load(Relaxed)
    }

    /// Applies writes: each over an older write of its key only. From the stream, the copy
    /// then stands at the last of them, and a delete leaves nothing; the PoP's own write (one
    /// the stream has not brought yet) is kept as it is, a delete as a tombstone, until the
    /// stream brings it.
    fn apply(&self, lines: &[KvLine], from_stream: bool) -> Result<(), KvError> {
        let slots = lines
            .iter()
            .map(|l| Slot::of(l).map(|s| (l, s)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(KvError::Other)?;
        let _writing = self.applying.write().unwrap_or_else(|e| e.into_inner());
        let tx = self.db.begin_write().map_err(disk)?;
        let mut applied = Vec::with_capacity(slots.len());
        let mut last = self.seq();
        {
            let mut values = tx.open_table(VALUES).map_err(disk)?;
            for (line, slot) in slots {
                let k = (line.namespace.as_str(), line.key.as_str());
                let had = values
                    .get(k)
                    .map_err(disk)?
                    .and_then(|v| Slot::decode(v.value()));
                if from_stream {
                    last = last.max(line.seq);
                }
                match had {
                    Some(h) if h.seq > slot.seq => continue,
                    Some(h) if h.seq == slot.seq => {
                        // The stream brought the PoP's own write: its tombstone can go.
                        if from_stream && h.value.is_none() {
                            values.remove(k).map_err(disk)?;
                        }
                        continue;
                    }
                    _ => {}
                }
                if slot.value.is_none() && from_stream {
                    values.remove(k).map_err(disk)?;
                } else {
                    values.insert(k, slot.encode().as_slice()).map_err(disk)?;
                }
                applied.push((Key(line.namespace.clone(), line.key.clone()), slot));
            }
            if from_stream {
                let mut meta = tx.open_table(META).map_err(disk)?;
                meta.insert("seq", last).map_err(disk)?;
            }
        }
        tx.commit().map_err(disk)?;
        self.seq.store(last, Relaxed);
        for (k, slot) in applied {
            if self.memory.contains_key(&Probe(&k.0, &k.1)) {
                self.memory.insert(k, slot);
            }
        }
        Ok(())
    }

    /// Drops the whole copy (the stream starts over from the first write).
    fn reset(&self) -> Result<(), KvError> {
        let _writing = self.applying.write().unwrap_or_else(|e| e.into_inner());
        let tx = self.db.begin_write().map_err(disk)?;
        tx.delete_table(VALUES).map_err(disk)?;
        tx.open_table(VALUES).map_err(disk)?;
        tx.open_table(META)
            .map_err(disk)?
            .insert("seq", 0)
            .map_err(disk)?;
        tx.commit().map_err(disk)?;
        self.seq.store(0, Relaxed);
        self.memory.clear();
        Ok(())
    }

    /// Drops what expired before `now` from disk (memory answers by expiry time already).
    fn drop_expired(&self, now: i64) -> Result<usize, KvError> {
        let expired: Vec<(String, String)> = {
            let tx = self.db.begin_read().map_err(disk)?;
            let values = tx.open_table(VALUES).map_err(disk)?;
            let mut out = Vec::new();
            for row in values.iter().map_err(disk)? {
                let (k, v) = row.map_err(disk)?;
                let slot = Slot::decode(v.value());
                if slot.is_some_and(|s| s.value.is_some() && s.live(now).is_none()) {
                    let (ns, key) = k.value();
                    out.push((ns.to_string(), key.to_string()));
                }
            }
            out
        };
        if expired.is_empty() {
            return Ok(0);
        }
        let _writing = self.applying.write().unwrap_or_else(|e| e.into_inner());
        let tx = self.db.begin_write().map_err(disk)?;
        {
            let mut values = tx.open_table(VALUES).map_err(disk)?;
            for (ns, key) in &expired {
                // Only if still the expired write (not rewritten since the scan).
                let still = values
                    .get((ns.as_str(), key.as_str()))
                    .map_err(disk)?
                    .and_then(|v| Slot::decode(v.value()))
                    .is_some_and(|s| s.value.is_some() && s.live(now).is_none());
                if still {
                    values.remove((ns.as_str(), key.as_str())).map_err(disk)?;
                }
            }
        }
        tx.commit().map_err(disk)?;
        Ok(expired.len())
    }

    /// The key's slot from memory, else from disk (then kept in memory); none when neither
    /// has it.
    fn local(&self, ns: &str, key: &str) -> Result<Option<Slot>, KvError> {
        if let Some(slot) = self.memory.get(&Probe(ns, key)) {
            self.stats.memory.fetch_add(1, Relaxed);
            return Ok(Some(slot));
        }
        let _filling = self.applying.read().unwrap_or_else(|e| e.into_inner());
        self.fill(ns, key)
    }

    /// The key's slot from disk, kept in memory. Call it holding `applying` for reading.
    fn fill(&self, ns: &str, key: &str) -> Result<Option<Slot>, KvError> {
        let tx = self.db.begin_read().map_err(disk)?;
        let values = tx.open_table(VALUES).map_err(disk)?;
        let found = values
            .get((ns, key))
            .map_err(disk)?
            .and_then(|v| Slot::decode(v.value()));
        self.stats.disk.fetch_add(1, Relaxed);
        if let Some(slot) = &found {
            self.memory
                .insert(Key(ns.to_string(), key.to_string()), slot.clone());
        }
        Ok(found)
    }

    /// The control plane's answer for a key this copy does not have, when it may be asked.
    async fn cold(&self, ns: &str, key: &str) -> Option<Slot> {
        let c = self.control.as_ref()?;
        if self.at_head.load(Relaxed) {
            return None;
        }
        if lock(&self.paused_until).is_some_and(|until| Instant::now() < until) {
            return None;
        }
        self.stats.cold.fetch_add(1, Relaxed);
        let url = c.url(&["v1", "kv", "values", ns, key], &[]);
        let answer = c
            .client
            .get(url)
            .bearer_auth(&c.token)
            .timeout(COLD_TIMEOUT)
            .send()
            .await;
        let slot = match answer {
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => Ok(Slot::ABSENT),
            Ok(r) => written(r).await.and_then(|l| Slot::of(&l)),
            Err(e) => Err(e.to_string()),
        };
        match slot {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(namespace = %ns, error = %e, pause = ?COLD_PAUSE, "a cold key-value read failed");
                *lock(&self.paused_until) = Some(Instant::now() + COLD_PAUSE);
                None
            }
        }
    }

    /// Sends a worker's write to the control plane, then applies what it numbered.
    async fn forward(
        &self,
        method: reqwest::Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<Slot, KvError> {
        let c = self.control.as_ref().ok_or_else(|| {
            KvError::Other(
                "this PoP follows its control plane over NATS: KV writes need its HTTP API".into(),
            )
        })?;
        let mut req = c
            .client
            .request(method, c.url(path, query))
            .bearer_auth(&c.token)
            .timeout(Duration::from_secs(10));
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| KvError::Other(format!("the control plane: {e}")))?;
        let line = written(resp).await.map_err(KvError::Other)?;
        self.apply(std::slice::from_ref(&line), false)?;
        self.stats.writes.fetch_add(1, Relaxed);
        Slot::of(&line).map_err(KvError::Other)
    }

    /// Follows the control plane's KV stream from the last write applied, forever.
    pub async fn follow(self: Arc<Self>) {
        let Some(c) = self.control.as_ref() else {
            return;
        };
        let client = super::http_client();
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.follow_once(c, &client).await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "the key-value stream"),
            }
            self.at_head.store(false, Relaxed);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn follow_once(&self, c: &Control, client: &reqwest::Client) -> Result<(), String> {
        let since = self.seq().to_string();
        let resp = client
            .get(c.url(&["v1", "kv", "stream"], &[("since", since)]))
            .bearer_auth(&c.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!(
                "{}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            ));
        }
        tracing::info!(since = self.seq(), "following the key-value stream");
        let mut body = resp.bytes_stream();
        let mut buf = Vec::new();
        let mut pruned_at = Instant::now();
        loop {
            let chunk =
                match tokio::time::timeout(edgenet_protocol::PING_EVERY * 3, body.next()).await {
                    Err(_) => return Err("silent for three pings".into()),
                    Ok(None) => return Ok(()),
                    Ok(Some(Err(e))) => return Err(e.to_string()),
                    Ok(Some(Ok(c))) => c,
                };
            buf.extend_from_slice(&chunk);
            let mut writes = Vec::new();
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                match serde_json::from_slice(&line).map_err(|e| e.to_string())? {
                    KvStreamLine::Write(w) => writes.push(w),
                    KvStreamLine::Head { reset: true, .. } => {
                        self.apply(&writes, true).map_err(|e| e.to_string())?;
                        writes.clear();
                        tracing::warn!(
                            had = self.seq(),
                            "the key-value copy was too far behind: starting over"
                        );
                        self.reset().map_err(|e| e.to_string())?;
                    }
                    KvStreamLine::Head { .. } => {
                        self.apply(&writes, true).map_err(|e| e.to_string())?;
                        writes.clear();
                        self.at_head.store(true, Relaxed);
                    }
                }
            }
            self.apply(&writes, true).map_err(|e| e.to_string())?;
            if pruned_at.elapsed() > Duration::from_secs(60) {
                pruned_at = Instant::now();
                match self.drop_expired(now_ms()) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(dropped = n, "expired key-value writes"),
                    Err(e) => tracing::warn!(error = %e, "dropping expired key-value writes"),
                }
            }
        }
    }
}

impl Control {
    /// `base/seg/seg?query`, each path segment percent-encoded (a key may hold a `/`).
    fn url(&self, path: &[&str], query: &[(&str, String)]) -> reqwest::Url {
        let mut url =
            reqwest::Url::parse(&self.base).expect("the control plane's URL was checked at start");
        url.path_segments_mut()
            .expect("an http(s) URL")
            .pop_if_empty()
            .extend(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }
}

/// The write in an API envelope's `result`, or the envelope's first error.
async fn written(resp: reqwest::Response) -> Result<KvLine, String> {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(|e| format!("{status}: {e}"))?;
    if !status.is_success() {
        let why = body["errors"][0]["message"]
            .as_str()
            .unwrap_or("no reason given");
        let field = body["errors"][0]["field"].as_str();
        return Err(match field {
            Some(f) => format!("{f}: {why}"),
            None => why.to_string(),
        });
    }
    serde_json::from_value(body["result"].clone())
        .map_err(|e| format!("the control plane's answer: {e}"))
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(KvError::Other(format!("a key is 1 to {MAX_KEY} bytes")));
    }
    Ok(())
}

#[async_trait::async_trait]
impl KvBackend for KvReplica {
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Bytes>, KvError> {
        let now = now_ms();
        if let Some(slot) = self.local(ns, key)? {
            return Ok(slot.live(now));
        }
        let cold = self.cold(ns, key).await;
        // The stream may have brought the key meanwhile: what is here now wins.
        let _filling = self.applying.read().unwrap_or_else(|e| e.into_inner());
        if let Some(here) = self.fill(ns, key)? {
            return Ok(here.live(now));
        }
        let remembered = match cold {
            Some(slot) => slot,
            None if self.at_head.load(Relaxed) => Slot::ABSENT,
            None => return Ok(None),
        };
        let value = remembered.live(now);
        self.memory
            .insert(Key(ns.to_string(), key.to_string()), remembered);
        Ok(value)
    }

    async fn set(&self, ns: &str, key: &str, value: Option<Bytes>) -> Result<(), KvError> {
        check_key(key)?;
        if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE) {
            return Err(KvError::Other(format!(
                "a value is at most {MAX_VALUE} bytes"
            )));
        }
        let method = match value {
            Some(_) => reqwest::Method::PUT,
            None => reqwest::Method::DELETE,
        };
        self.forward(method, &["v1", "kv", "values", ns, key], &[], value)
            .await
            .map(drop)
    }

    async fn increment(&self, ns: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        check_key(key)?;
        let path = ["v1", "kv", "increment", ns, key];
        let slot = self
            .forward(
                reqwest::Method::POST,
                &path,
                &[("delta", delta.to_string())],
                None,
            )
            .await?;
        let text = slot.value.unwrap_or_default();
        std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| KvError::Other("the control plane's count is not a number".into()))
    }

    fn list(&self, ns: &str, skip: usize, limit: usize) -> Result<Vec<String>, KvError> {
        let now = now_ms();
        let tx = self.db.begin_read().map_err(disk)?;
        let values = tx.open_table(VALUES).map_err(disk)?;
        let mut out = Vec::new();
        let mut skipped = 0;
        for row in values.range((ns, "")..).map_err(disk)? {
            let (k, v) = row.map_err(disk)?;
            let (row_ns, key) = k.value();
            if row_ns != ns || out.len() == limit {
                break;
            }
            if Slot::decode(v.value()).is_some_and(|s| s.live(now).is_some()) {
                if skipped < skip {
                    skipped += 1;
                } else {
                    out.push(key.to_string());
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: i64, key: &str, value: Option<&str>, expires_ms: Option<i64>) -> KvLine {
        KvLine {
            seq,
            namespace: "ns".into(),
            key: key.into(),
            value: value.map(|v| base64::engine::general_purpose::STANDARD.encode(v)),
            expires_ms,
            written_ms: 1,
        }
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("edgenet-kv-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn get(r: &KvReplica, key: &str) -> Option<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(r.get("ns", key))
            .unwrap()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn the_last_write_wins_deletes_and_expiry_hold_and_a_restart_keeps_the_copy() {
        let d = dir("lww");
        let path = d.join("pop.kv.redb");
        let r = KvReplica::open(&path, 1 << 20, None).unwrap();
        r.apply(
            &[
                line(1, "a", Some("one"), None),
                line(2, "b", Some("bee"), None),
            ],
            true,
        )
        .unwrap();
        assert_eq!(get(&r, "a").as_deref(), Some("one"));
        // The PoP's own write (seq 10) is kept over older stream lines for the key.
        r.apply(&[line(10, "a", Some("mine"), None)], false)
            .unwrap();
        r.apply(&[line(3, "a", Some("older"), None)], true).unwrap();
        assert_eq!(get(&r, "a").as_deref(), Some("mine"), "read your writes");
        assert_eq!(r.seq(), 3);
        // Its own delete too, until the stream brings it.
        r.apply(&[line(11, "b", None, None)], false).unwrap();
        r.apply(&[line(4, "b", Some("late"), None)], true).unwrap();
        assert_eq!(get(&r, "b"), None);
        r.apply(
            &[line(10, "a", Some("mine"), None), line(11, "b", None, None)],
            true,
        )
        .unwrap();
        assert_eq!(
            r.list("ns", 0, 10).unwrap(),
            ["a"],
            "the tombstone went with the stream's line"
        );
        // Expiry: absent once past it, from memory and from disk.
        let past = now_ms() - 1;
        r.apply(
            &[
                line(12, "t", Some("soon"), Some(now_ms() + 60_000)),
                line(13, "x", Some("gone"), Some(past)),
            ],
            true,
        )
        .unwrap();
        assert_eq!(get(&r, "t").as_deref(), Some("soon"));
        assert_eq!(get(&r, "x"), None);
        assert_eq!(r.drop_expired(now_ms()).unwrap(), 1);
        assert_eq!(r.list("ns", 0, 10).unwrap(), ["a", "t"]);
        assert_eq!(
            r.list("ns", 1, 10).unwrap(),
            ["t"],
            "the cursor skips what was listed"
        );
        assert_eq!(r.list("other", 0, 10).unwrap(), Vec::<String>::new());
        drop(r);
        let r = KvReplica::open(&path, 1 << 20, None).unwrap();
        assert_eq!(r.seq(), 13, "where the stream resumes");
        assert_eq!(
            get(&r, "a").as_deref(),
            Some("mine"),
            "read from disk after a restart"
        );
        assert_eq!(r.stats.disk.load(Relaxed), 1);
        assert_eq!(get(&r, "a").as_deref(), Some("mine"));
        assert_eq!(r.stats.memory.load(Relaxed), 1, "then from memory");
        r.reset().unwrap();
        assert_eq!((r.seq(), get(&r, "a")), (0, None), "a reset drops the copy");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn memory_stays_within_its_bound() {
        let d = dir("bound");
        let r = KvReplica::open(&d.join("pop.kv.redb"), 1 << 20, None).unwrap();
        let big = "v".repeat(10_000);
        let lines: Vec<KvLine> = (0..500)
            .map(|i| line(i + 1, &format!("k{i}"), Some(&big), None))
            .collect();
        r.apply(&lines, true).unwrap();
        for i in 0..500 {
            assert_eq!(get(&r, &format!("k{i}")).map(|v| v.len()), Some(10_000));
        }
        assert!(
            r.memory.weight() <= 1 << 20,
            "{} bytes in memory",
            r.memory.weight()
        );
        assert!(r.memory.len() < 500, "not every value stayed in memory");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A control plane that answers cold reads: `k` has a value, anything else is 404.
    async fn cold_control() -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&req);
                let authorized = head
                    .to_ascii_lowercase()
                    .contains("authorization: bearer t0k");
                let (status, body) = if !authorized {
                    (
                        "403 Forbidden",
                        r#"{"errors":[{"message":"no"}]}"#.to_string(),
                    )
                } else if head.starts_with("GET /v1/kv/values/ns/k ") {
                    let line = line(7, "k", Some("cold"), None);
                    (
                        "200 OK",
                        format!(
                            r#"{{"success":true,"result":{}}}"#,
                            serde_json::to_string(&line).unwrap()
                        ),
                    )
                } else {
                    (
                        "404 Not Found",
                        r#"{"success":false,"errors":[{"message":"no such key"}]}"#.to_string(),
                    )
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        (base, task)
    }

    #[tokio::test]
    async fn until_caught_up_a_missing_key_is_read_from_the_control_plane_unless_it_is_down() {
        let d = dir("cold");
        let (base, server) = cold_control().await;
        let r =
            KvReplica::open(&d.join("pop.kv.redb"), 1 << 20, Some((base, "t0k".into()))).unwrap();
        let text = |v: Option<Bytes>| v.map(|b| String::from_utf8(b.to_vec()).unwrap());
        assert_eq!(
            text(r.get("ns", "k").await.unwrap()).as_deref(),
            Some("cold")
        );
        assert_eq!(
            text(r.get("ns", "k").await.unwrap()).as_deref(),
            Some("cold")
        );
        assert_eq!(
            r.stats.cold.load(Relaxed),
            1,
            "the second read was from memory"
        );
        assert_eq!(r.get("ns", "none").await.unwrap(), None);
        // A newer write from the stream replaces what the cold read brought.
        r.apply(&[line(8, "k", Some("streamed"), None)], true)
            .unwrap();
        assert_eq!(
            text(r.get("ns", "k").await.unwrap()).as_deref(),
            Some("streamed")
        );
        // The control plane gone: the read answers from here, and reads stop asking for a while.
        server.abort();
        let _ = server.await;
        assert_eq!(r.get("ns", "x").await.unwrap(), None);
        let asked = r.stats.cold.load(Relaxed);
        assert_eq!(r.get("ns", "y").await.unwrap(), None);
        assert_eq!(r.stats.cold.load(Relaxed), asked, "paused after a failure");
        // Caught up: what is not here does not exist, without asking.
        *lock(&r.paused_until) = None;
        r.at_head.store(true, Relaxed);
        assert_eq!(r.get("ns", "z").await.unwrap(), None);
        assert_eq!(r.stats.cold.load(Relaxed), asked);
        let _ = std::fs::remove_dir_all(&d);
    }
}
