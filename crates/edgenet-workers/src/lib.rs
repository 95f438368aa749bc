//! Workers: user code at the edge as WebAssembly components of the standard `wasi:http/proxy`
//! world, run in wasmtime (DESIGN.md section 6).
//!
//! - One [`Runtime`] per node: a wasmtime engine with the pooling allocator (linear memories
//!   and tables kept resident, or throughput collapses with more than one thread) and epoch
//!   interruption ticked every millisecond by a thread of its own.
//! - Compiling is slow and memory-hungry (seconds and hundreds of MB for a JavaScript
//!   component), so it happens at deploy time in a separate process ([`Runtime::compile`] is
//!   what that process runs); the artifact is cached under a key of the component's SHA-256,
//!   wasmtime's version and the engine's settings, written to a temporary file and renamed
//!   (artifacts are memory-mapped: overwriting one in place can crash a reader).
//! - [`Runtime::load`] deserializes an artifact into a [`Worker`]: a pre-linked template from
//!   which each request gets a fresh instance.
//! - Outgoing requests go only to the hosts a worker is allowed ([`Worker::with_allowed_hosts`]),
//!   at most `subrequests` per request and `subrequests_in_flight` at once; others fail in the
//!   guest with `HTTP-request-denied`. Allowed ones are sent to the [`Pipeline`] (in a node: its
//!   own request path, which takes them at the cache stage), never straight to the network.
//! - Limits per request ([`Limits`]): CPU time through epoch deadlines, linear memory through a
//!   resource limiter, wall time around the whole call, the response body's size. Exceeding
//!   one is a [`WorkerError`] naming the cause; the store and instance are dropped, nothing
//!   leaks to other requests. CPU time is the thread CPU time spent polling the guest's future
//!   ([`Meter`]): the guest only runs inside a poll, and time spent waiting (for a body, a
//!   subrequest) is time between polls. When the epoch deadline comes the guest gets what it
//!   has not used yet, yielding to the executor meanwhile so a busy guest does not hold a proxy
//!   thread for its whole budget.
//! - State at the edge through the standard `wasi:keyvalue` interfaces ([`kv`]): namespaces a
//!   script's settings bind by name, over the node's [`KvBackend`] ([`Worker::with_kv`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::Error as HttpError;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub mod kv;
pub use kv::{KvAccess, KvBackend, KvError};

/// A request body for [`Worker::handle`].
pub type RequestBody = http_body_util::combinators::BoxBody<Bytes, ErrorCode>;

/// A complete request body.
pub fn request_body(bytes: Bytes) -> RequestBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed()
}

/// How often the engine's epoch advances: the granularity of CPU-time limits.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The wasmtime version artifacts are compiled by (pinned in Cargo.toml; a test checks
/// Cargo.lock agrees). Part of an artifact's name: another version cannot load it.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Limits on one request's run of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU time (default 50 ms).
    pub cpu_time: Duration,
    /// Linear memory (default 128 MiB).
    pub memory_bytes: usize,
    /// Wall time for the whole request, waiting included (default 30 s).
    pub wall_time: Duration,
    /// Outgoing requests per request (default 50).
    pub subrequests: u32,
    /// Outgoing requests in flight at once (default 6).
    pub subrequests_in_flight: usize,
    /// The largest response body a worker may produce (default 16 MiB).
    pub response_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            cpu_time: Duration::from_millis(50),
            memory_bytes: 128 << 20,
            wall_time: Duration::from_secs(30),
            subrequests: 50,
            subrequests_in_flight: 6,
            response_body_bytes: 16 << 20,
        }
    }
}

/// Why a worker failed a request.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// It ran longer than its CPU time.
    #[error("exceeded its CPU time limit of {0:?}")]
    CpuTime(Duration),
    /// It asked for more memory than allowed.
    #[error("exceeded its memory limit of {0} bytes")]
    Memory(usize),
    /// The request took longer than its wall time.
    #[error("exceeded its wall time limit of {0:?}")]
    WallTime(Duration),
    /// It trapped (a panic, `unreachable`, an out-of-bounds access).
    #[error("trapped: {0}")]
    Trap(String),
    /// It returned without setting a response.
    #[error("returned without a response")]
    NoResponse,
    /// Every instance slot of the node is in use.
    #[error("found no free instance (workers.instances are all in use)")]
    Busy,
    /// It failed after being refused a request over its subrequest limit.
    #[error("exceeded its subrequest limit of {0}")]
    Subrequests(u32),
    /// Its response body was larger than allowed.
    #[error("exceeded its response body limit of {0} bytes")]
    ResponseTooLarge(usize),
    /// The component is not a `wasi:http/proxy` component, or does not link.
    #[error("is not a usable wasi:http/proxy component: {0}")]
    BadComponent(String),
}

impl WorkerError {
    /// A short label for metrics and logs.
    pub fn cause(&self) -> &'static str {
        match self {
            WorkerError::CpuTime(_) => "cpu_time",
            WorkerError::Memory(_) => "memory",
            WorkerError::WallTime(_) => "wall_time",
            WorkerError::Trap(_) => "trap",
            WorkerError::NoResponse => "no_response",
            WorkerError::ResponseTooLarge(_) => "response_body",
            WorkerError::Subrequests(_) => "subrequests",
            WorkerError::Busy => "instances",
            WorkerError::BadComponent(_) => "bad_component",
        }
    }
}

/// The per-request store data.
struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    memory: MemoryLimit,
    meter: Arc<Meter>,
    outgoing: Outgoing,
    kv: KvAccess,
}

/// Where a worker's allowed outgoing requests go: in a node, its own request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pipeline {
    /// Nowhere: every outgoing request is denied.
    None,
    /// An HTTP/1.1 server on a Unix socket (the node's subrequest listener).
    Unix(PathBuf),
    /// An HTTP/1.1 server on TCP.
    Tcp(std::net::SocketAddr),
}

/// What the connection behind a sent request ends with.
type IoFuture = Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>;
/// A sent request's response and its connection.
type Sent = Result<(hyper::Response<wasmtime_wasi_http::WasiBody>, IoFuture), HttpError>;

/// The worker's outgoing requests: only to allowed hosts, at most so many, so many at once,
/// all to the pipeline.
struct Outgoing {
    allowed: Arc<[String]>,
    pipeline: Arc<Pipeline>,
    left: u32,
    in_flight: Arc<tokio::sync::Semaphore>,
    /// A request was refused for being over the limit.
    over_limit: bool,
}

impl wasmtime_wasi_http::WasiHttpHooks for Outgoing {
    fn send_request(
        &mut self,
        request: hyper::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: IoFuture,
    ) -> Box<dyn std::future::Future<Output = Sent> + Send> {
        drop(fut);
        let host = request.uri().host().unwrap_or("").to_ascii_lowercase();
        let allowed = self.allowed.contains(&host) && *self.pipeline != Pipeline::None;
        if !allowed || self.left == 0 {
            self.over_limit |= allowed;
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        self.left -= 1;
        let in_flight = self.in_flight.clone();
        let pipeline = self.pipeline.clone();
        Box::new(async move {
            let _permit = in_flight
                .acquire_owned()
                .await
                .map_err(|_| HttpError::HttpRequestDenied)?;
            send(&pipeline, request, options).await
        })
    }
}

/// The header that tells the pipeline the scheme of a worker's request (it arrives over plain
/// HTTP; the scheme is part of the cache key).
pub const SCHEME_HEADER: &str = "x-edgenet-scheme";

/// Sends one request to the pipeline over a new HTTP/1.1 connection, with the request's own
/// Host (the pipeline routes by it), its scheme in [`SCHEME_HEADER`] and only its path on the
/// request line.
async fn send(
    pipeline: &Pipeline,
    mut req: hyper::Request<wasmtime_wasi_http::WasiBody>,
    options: Option<wasmtime_wasi_http::RequestOptions>,
) -> Sent {
    use hyper_util::rt::TokioIo;
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(Duration::from_secs(10));
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(Duration::from_secs(100));
    let scheme = match req.uri().scheme_str() {
        Some("https") => "https",
        _ => "http",
    };
    req.headers_mut()
        .insert(SCHEME_HEADER, http::HeaderValue::from_static(scheme));
    if let Some(authority) = req.uri().authority().cloned() {
        let host = http::HeaderValue::from_str(authority.as_str())
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        req.headers_mut().insert(http::header::HOST, host);
    }
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;
    trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
    impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}
    let connect = async {
        let stream: Box<dyn Stream> = match pipeline {
            Pipeline::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            Pipeline::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr).await?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            Pipeline::None => return Err(std::io::Error::other("no pipeline")),
        };
        Ok(hyper::client::conn::http1::handshake(TokioIo::new(stream)).await)
    };
    let (mut sender, conn) = tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(HttpError::Connect)?
        .map_err(HttpError::from)?;
    // The connection is driven by its own task: the response body may outlive this call.
    let io = tokio::spawn(conn);
    let resp = tokio::time::timeout(first_byte_timeout, sender.send_request(req))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)?
        .map_err(HttpError::from)?;
    let resp = resp.map(|b| b.map_err(HttpError::from).boxed_unsync());
    Ok((
        resp,
        Box::new(async move {
            match io.await {
                Ok(r) => r.map_err(HttpError::from),
                Err(_) => Ok(()),
            }
        }),
    ))
}

/// The thread CPU time a future spends inside `poll` (for a wasm guest: its CPU time, host
/// calls included, waits excluded; a poll runs on one thread from start to end).
pub struct Meter {
    busy_ns: std::sync::atomic::AtomicU64,
    /// The thread's CPU clock when the poll in progress began, or `u64::MAX` between polls.
    poll_start_ns: std::sync::atomic::AtomicU64,
}

/// This thread's CPU time in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`).
#[allow(unsafe_code)]
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Meter {
    fn new() -> Meter {
        Meter {
            busy_ns: 0.into(),
            poll_start_ns: u64::MAX.into(),
        }
    }

    /// CPU time spent in polls so far, the one in progress included (only the polling thread
    /// can see its own progress: others see completed polls).
    pub fn busy(&self) -> Duration {
        use std::sync::atomic::Ordering::Relaxed;
        let start = self.poll_start_ns.load(Relaxed);
        let current = if start == u64::MAX {
            0
        } else {
            thread_cpu_ns().saturating_sub(start)
        };
        Duration::from_nanos(self.busy_ns.load(Relaxed) + current)
    }
}

pin_project_lite::pin_project! {
    /// A future whose time in `poll` goes to a [`Meter`].
    struct Metered<F> {
        #[pin]
        inner: F,
        meter: Arc<Meter>,
    }
}

impl<F: std::future::Future> std::future::Future for Metered<F> {
    type Output = F::Output;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        use std::sync::atomic::Ordering::Relaxed;
        let this = self.project();
        let start = thread_cpu_ns();
        this.meter.poll_start_ns.store(start, Relaxed);
        let r = this.inner.poll(cx);
        let spent = thread_cpu_ns().saturating_sub(start);
        this.meter.poll_start_ns.store(u64::MAX, Relaxed);
        this.meter.busy_ns.fetch_add(spent, Relaxed);
        r
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outgoing,
        }
    }
}

/// Refuses linear-memory growth past the limit, and remembers that it did.
struct MemoryLimit {
    max: usize,
    refused: bool,
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max;
        self.refused |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The node's wasmtime engine and artifact cache.
pub struct Runtime {
    engine: Engine,
    cache_dir: PathBuf,
    /// The settings `new` was given, for compile processes to make the same engine.
    instances: u32,
    max_memory: usize,
    /// Stops the epoch ticker when the runtime goes.
    stop_ticker: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Runtime {
    /// An engine for at most `instances` concurrent requests of at most `max_memory` bytes
    /// each, caching artifacts in `cache_dir`.
    pub fn new(cache_dir: &Path, instances: u32, max_memory: usize) -> anyhow::Result<Runtime> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances);
        pool.total_core_instances(instances * 4);
        pool.total_memories(instances * 2);
        pool.total_tables(instances * 4);
        pool.max_memory_size(max_memory);
        // Keep the first pages resident: re-faulting them per request costs more than they
        // weigh, and unmapping them serializes threads on the kernel's mm lock. With
        // PAGEMAP_SCAN (Linux 6.7+) only the pages an instance dirtied are reset, not the
        // whole resident range (a 1 MiB memset was a third of a cold start).
        pool.linear_memory_keep_resident(4 << 20);
        pool.table_keep_resident(1 << 16);
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        std::fs::create_dir_all(cache_dir)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (e, stopped) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("worker epochs".into())
            .spawn(move || {
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    e.increment_epoch();
                }
            })?;
        Ok(Runtime {
            engine,
            cache_dir: cache_dir.to_path_buf(),
            instances,
            max_memory,
            stop_ticker: stop,
        })
    }

    /// Where the artifact of `wasm` for this engine lives: keyed by the component's
    /// SHA-256, wasmtime's version and the engine's settings (an artifact only loads in an
    /// engine with the same settings).
    pub fn artifact_path(&self, wasm: &[u8]) -> PathBuf {
        use sha2::Digest;
        use std::hash::{Hash, Hasher};
        let mut settings = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut settings);
        let digest = sha2::Sha256::digest(wasm);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.cache_dir.join(format!(
            "{hex}-wasmtime{WASMTIME_VERSION}-{:016x}.cwasm",
            settings.finish()
        ))
    }

    /// Compiles a component to its artifact (unless cached), written to a temporary file and
    /// renamed. Slow: run it in a separate process.
    pub fn compile(&self, wasm: &[u8]) -> Result<PathBuf, WorkerError> {
        let path = self.artifact_path(wasm);
        if path.exists() {
            return Ok(path);
        }
        let bad = |e: &dyn std::fmt::Display| WorkerError::BadComponent(format!("{e:#}"));
        let component = Component::new(&self.engine, wasm).map_err(|e| bad(&e))?;
        // Refuse at deploy what would fail at load: it must be a wasi:http/proxy component.
        self.pre(&component)?;
        let bytes = component.serialize().map_err(|e| bad(&e))?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| bad(&e))?;
        std::fs::rename(&tmp, &path).map_err(|e| bad(&e))?;
        Ok(path)
    }

    /// [`Runtime::compile`] in a separate process: `exe worker-compile` with this runtime's
    /// settings (an artifact only loads in an engine made the same way). Compiling a large
    /// component takes seconds and hundreds of MB, which a serving node must not spend.
    pub fn compile_elsewhere(&self, exe: &Path, wasm: &Path) -> Result<PathBuf, WorkerError> {
        let out = std::process::Command::new(exe)
            .arg("worker-compile")
            .arg("--cache")
            .arg(&self.cache_dir)
            .args(["--instances", &self.instances.to_string()])
            .args(["--max-memory", &self.max_memory.to_string()])
            .arg(wasm)
            .output()
            .map_err(|e| WorkerError::BadComponent(format!("cannot run {}: {e}", exe.display())))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim();
            return Err(
                match err.strip_prefix("is not a usable wasi:http/proxy component: ") {
                    Some(reason) => WorkerError::BadComponent(reason.to_string()),
                    None => WorkerError::BadComponent(err.to_string()),
                },
            );
        }
        let artifact = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if !artifact.is_file() {
            return Err(WorkerError::BadComponent(format!(
                "{} worker-compile ended without an artifact (it printed {:?})",
                exe.display(),
                artifact.display().to_string()
            )));
        }
        Ok(artifact)
    }

    fn pre(&self, component: &Component) -> Result<ProxyPre<State>, WorkerError> {
        let bad = |e: &dyn std::fmt::Display| WorkerError::BadComponent(format!("{e:#}"));
        let mut linker = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| bad(&e))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(|e| bad(&e))?;
        kv::add_to_linker(&mut linker, |s: &mut State| kv::KvView {
            access: &s.kv,
            table: &mut s.table,
        })
        .map_err(|e| bad(&e))?;
        let pre = linker.instantiate_pre(component).map_err(|e| bad(&e))?;
        ProxyPre::new(pre).map_err(|e| bad(&e))
    }

    /// Loads a compiled artifact (memory-mapped) into a worker with `limits`.
    pub fn load(&self, artifact: &Path, limits: Limits) -> Result<Worker, WorkerError> {
        // SAFETY of deserialize_file: the artifact was written by `compile` for this engine
        // (its name carries the engine's settings) and is never rewritten in place.
        let component = deserialize(&self.engine, artifact)?;
        Ok(Worker {
            pre: self.pre(&component)?,
            limits,
            env: Arc::new([]),
            allowed_hosts: Arc::new([]),
            pipeline: Arc::new(Pipeline::None),
            kv: KvAccess::default(),
        })
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &Path) -> Result<Component, WorkerError> {
    // wasmtime marks this unsafe because it trusts the file to be its own output.
    unsafe { Component::deserialize_file(engine, artifact) }
        .map_err(|e| WorkerError::BadComponent(format!("{}: {e:#}", artifact.display())))
}

/// A loaded worker: a pre-linked template; each request gets a fresh instance.
#[derive(Clone)]
pub struct Worker {
    pre: ProxyPre<State>,
    limits: Limits,
    /// Environment variables (and secrets) the guest reads through `wasi:cli/environment`.
    env: Arc<[(String, String)]>,
    /// Hosts the guest may send requests to (lower case); none by default.
    allowed_hosts: Arc<[String]>,
    /// Where allowed requests go.
    pipeline: Arc<Pipeline>,
    /// Its key-value namespaces.
    kv: KvAccess,
}

impl Worker {
    /// The worker allowed to send requests to these hosts, through `pipeline`.
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>, pipeline: Pipeline) -> Worker {
        self.allowed_hosts = hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        self.pipeline = Arc::new(pipeline);
        self
    }

    /// The worker with these environment variables (a zone's settings and secrets).
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Worker {
        self.env = env.into();
        self
    }

    /// The worker with these key-value namespaces (`wasi:keyvalue/store.open(NAME)`).
    pub fn with_kv(mut self, kv: KvAccess) -> Worker {
        self.kv = kv;
        self
    }

    /// Runs the worker on one request and collects its response.
    pub async fn handle<B>(
        &self,
        req: hyper::Request<B>,
    ) -> Result<hyper::Response<Bytes>, WorkerError>
    where
        B: hyper::body::Body<Data = Bytes, Error = ErrorCode> + Send + 'static,
    {
        let (parts, body) = self.stream(req).await?.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(hyper::Response::from_parts(parts, body))
    }

    /// Runs the worker on one request: its response as soon as it sets one, the body
    /// streaming from the guest as it writes (within the response-body and wall-time limits;
    /// a failure after the head is an error frame of the body).
    pub async fn stream<B>(
        &self,
        req: hyper::Request<B>,
    ) -> Result<hyper::Response<ResponseBody>, WorkerError>
    where
        B: hyper::body::Body<Data = Bytes, Error = ErrorCode> + Send + 'static,
    {
        let started = tokio::time::Instant::now();
        let limits = self.limits;
        let meter = Arc::new(Meter::new());
        let mut store = Store::new(
            self.pre.engine(),
            State {
                wasi: WasiCtx::builder().envs(&self.env).build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                memory: MemoryLimit {
                    max: limits.memory_bytes,
                    refused: false,
                },
                meter: meter.clone(),
                outgoing: Outgoing {
                    allowed: self.allowed_hosts.clone(),
                    pipeline: self.pipeline.clone(),
                    left: limits.subrequests,
                    in_flight: Arc::new(tokio::sync::Semaphore::new(limits.subrequests_in_flight)),
                    over_limit: false,
                },
                kv: self.kv.clone(),
            },
        );
        store.limiter(|s| &mut s.memory);
        let ticks = |d: Duration| (d.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64;
        store.set_epoch_deadline(ticks(limits.cpu_time));
        store.epoch_deadline_callback(move |ctx| {
            let used = ctx.data().meter.busy();
            Ok(match limits.cpu_time.checked_sub(used) {
                Some(left) if !left.is_zero() => wasmtime::UpdateDeadline::Yield(ticks(left)),
                _ => wasmtime::UpdateDeadline::Interrupt,
            })
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let scheme = match req.uri().scheme_str() {
            Some("https") => Scheme::Https,
            _ => Scheme::Http,
        };
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(scheme, req)
            .map_err(|e| WorkerError::Trap(format!("{e:#}")))?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(tx)
            .map_err(|e| WorkerError::Trap(format!("{e:#}")))?;
        // The guest runs in a task of its own: it may go on writing the body after setting the
        // response, and when it ends without one, dropping its store tells `rx`.
        let pre = self.pre.clone();
        let mut task = tokio::spawn(Metered {
            meter,
            inner: async move {
                let proxy = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| failure(e, store.data(), limits))?;
                let result = proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await;
                result.map_err(|e| failure(e, store.data(), limits))
            },
        });
        let deadline = started + limits.wall_time;
        let head = tokio::time::timeout_at(deadline, async {
            match rx.await {
                Ok(head) => Ok(head),
                // It ended without setting a response: its store went, and with it the sender.
                Err(_) => Err(joined((&mut task).await)
                    .err()
                    .unwrap_or(WorkerError::NoResponse)),
            }
        });
        match head.await {
            Ok(Ok(Ok(resp))) => {
                let (parts, body) = resp.into_parts();
                let body = ResponseBody {
                    inner: http_body_util::Limited::new(body, limits.response_body_bytes),
                    limits,
                    task: Some(task),
                    failed: None,
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                };
                Ok(hyper::Response::from_parts(parts, body))
            }
            Ok(Ok(Err(code))) => {
                task.abort();
                Err(WorkerError::Trap(format!("error response: {code:?}")))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                task.abort();
                Err(WorkerError::WallTime(limits.wall_time))
            }
        }
    }
}

/// The guest task's outcome: a task that panicked or was aborted is a trap.
fn joined(r: Result<Result<(), WorkerError>, tokio::task::JoinError>) -> Result<(), WorkerError> {
    r.unwrap_or_else(|e| Err(WorkerError::Trap(e.to_string())))
}

/// What a wasmtime error means for the request: a failure after a refused memory growth, or a
/// trap after a refused subrequest, is that limit's error (the guest failed because of it).
fn failure(e: wasmtime::Error, state: &State, limits: Limits) -> WorkerError {
    // The first limit hit is the cause: a guest refused memory may spin or trap after.
    if state.memory.refused {
        return WorkerError::Memory(limits.memory_bytes);
    }
    if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
        return WorkerError::CpuTime(limits.cpu_time);
    }
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return WorkerError::Busy;
    }
    if state.outgoing.over_limit {
        return WorkerError::Subrequests(limits.subrequests);
    }
    WorkerError::Trap(format!("{e:#}"))
}

/// A worker's response body as the guest writes it. Past `response_body_bytes` it fails with
/// [`WorkerError::ResponseTooLarge`]; past the wall time with [`WorkerError::WallTime`]; when
/// the guest fails after setting its response, with the guest's error. It ends only once the
/// guest has returned. Dropping it stops the guest.
pub struct ResponseBody {
    inner: http_body_util::Limited<HyperOutgoingBody>,
    limits: Limits,
    /// The guest's task, until it has been awaited.
    task: Option<tokio::task::JoinHandle<Result<(), WorkerError>>>,
    /// The body failed (not for its size): the guest's own error, when it has one, says why.
    failed: Option<WorkerError>,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl ResponseBody {
    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.stop();
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = WorkerError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, WorkerError>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        let Some(task) = this.task.as_mut() else {
            return Poll::Ready(this.failed.take().map(Err));
        };
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.stop();
            return Poll::Ready(Some(Err(WorkerError::WallTime(this.limits.wall_time))));
        }
        if this.failed.is_none() {
            match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => return Poll::Ready(Some(Ok(frame))),
                Poll::Ready(Some(Err(e))) => {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        // Its writes fail once the body is refused: that is no news.
                        this.stop();
                        let max = this.limits.response_body_bytes;
                        return Poll::Ready(Some(Err(WorkerError::ResponseTooLarge(max))));
                    }
                    this.failed = Some(WorkerError::Trap(format!("body: {e}")));
                }
                Poll::Ready(None) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
        // The body ended (or failed): the guest's outcome decides.
        let outcome = match std::pin::Pin::new(task).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => joined(r),
        };
        this.task = None;
        let failed = this.failed.take();
        Poll::Ready(match (outcome, failed) {
            (Err(e), _) | (Ok(()), Some(e)) => Some(Err(e)),
            (Ok(()), None) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_artifact_names_the_wasmtime_version_in_cargo_lock() {
        let lock = include_str!("../../../Cargo.lock");
        let entry = format!(
            "name = \"wasmtime\"\nversion = \"{}\"",
            super::WASMTIME_VERSION
        );
        assert!(lock.contains(&entry), "Cargo.lock has another wasmtime");
    }
}
