//! Stage 7, workers: deploying a zone's components (compiled in a separate process, cached,
//! loaded into the node's one wasmtime runtime) and running one for a request whose route
//! matches. A worker's own requests come back in on the node's subrequest listener (a Unix
//! socket only this node's user can open), which takes them at the cache stage (8): no
//! shield, WAF or worker runs on them again.
//!
//! A worker's response is [`gather`]ed up to [`BUFFER`] bytes before its head goes out: a
//! short body gets a `Content-Length`, and a worker that fails early still gets an error page
//! ([`error_status`]). A longer body streams as the worker writes it.

use std::fmt::Display;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use edgenet_config::{Config, HeaderRule, WorkerRuntime, Zone};
use edgenet_workers::{
    KvAccess, KvBackend, Limits, Pipeline, ResponseBody, Runtime, Worker, WorkerError,
};
use http_body_util::BodyExt;

use crate::header_rules::apply_header_rules;

/// How much of a worker's response body is gathered before its head is sent.
pub const BUFFER: usize = 64 * 1024;

/// The node's worker runtime (made when the first worker is deployed) and where workers'
/// requests go.
pub struct WorkerHost {
    runtime: OnceLock<Arc<Runtime>>,
    /// The subrequest listener's socket.
    pub socket: PathBuf,
    settings: WorkerRuntime,
    /// The edge key-value store workers' namespaces are in (a PoP following a control plane
    /// has one).
    kv: Option<Arc<dyn KvBackend>>,
    /// Each component file's artifact, by the file's length and modification time: a
    /// component is hashed once, not at every configuration version.
    artifacts:
        std::sync::Mutex<std::collections::HashMap<PathBuf, (u64, std::time::SystemTime, PathBuf)>>,
}

/// A deployed worker of a zone.
pub struct ZoneWorker {
    /// Its name.
    pub name: String,
    /// The loaded component with its limits, environment and allowed hosts.
    pub worker: Worker,
    /// The largest request body it is given.
    pub request_body_bytes: usize,
    /// Requests it handled.
    pub requests: prometheus::IntCounter,
}

impl WorkerHost {
    /// The host for a node whose configuration has `settings` (fixed for the process), its
    /// workers' key-value namespaces in `kv`.
    pub fn new(settings: &WorkerRuntime, kv: Option<Arc<dyn KvBackend>>) -> WorkerHost {
        WorkerHost {
            runtime: OnceLock::new(),
            socket: std::env::temp_dir()
                .join(format!("edgenet-subrequests-{}.sock", std::process::id())),
            settings: settings.clone(),
            kv,
            artifacts: Default::default(),
        }
    }

    /// Where `component`'s artifact for this node's engine is (built or not).
    fn artifact_of(&self, rt: &Runtime, component: &std::path::Path) -> std::io::Result<PathBuf> {
        let meta = std::fs::metadata(component)?;
        let stamp = (meta.len(), meta.modified()?);
        if let Some((len, at, artifact)) = crate::lock(&self.artifacts).get(component) {
            if (*len, *at) == stamp {
                return Ok(artifact.clone());
            }
        }
        let artifact = rt.artifact_path(&std::fs::read(component)?);
        crate::lock(&self.artifacts).insert(
            component.to_path_buf(),
            (stamp.0, stamp.1, artifact.clone()),
        );
        Ok(artifact)
    }

    fn runtime(&self) -> anyhow::Result<&Arc<Runtime>> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let rt = start_runtime(&self.settings)?;
        Ok(self.runtime.get_or_init(|| Arc::new(rt)))
    }

    /// Whether `component`'s artifact for this node's engine is built (so deploying it only
    /// loads it).
    pub fn is_built(&self, component: &std::path::Path) -> anyhow::Result<bool> {
        Ok(self.artifact_of(self.runtime()?, component)?.exists())
    }

    /// Builds `component`'s artifact in a separate process (blocking: seconds for a large
    /// component), or says why it cannot run.
    pub fn build(&self, component: &std::path::Path) -> anyhow::Result<PathBuf> {
        let exe = std::env::current_exe()?;
        Ok(self.runtime()?.compile_elsewhere(&exe, component)?)
    }

    /// Deploys a zone's workers: each component compiled in a separate process unless its
    /// artifact is cached, then loaded. A component that is not a usable `wasi:http/proxy`
    /// component refuses the whole configuration, naming the worker and the reason.
    pub fn deploy(
        &self,
        zone_index: usize,
        zone: &Zone,
        metrics: &crate::metrics::Metrics,
    ) -> anyhow::Result<Vec<ZoneWorker>> {
        if zone.workers.is_empty() {
            return Ok(Vec::new());
        }
        let rt = self.runtime()?;
        let exe = std::env::current_exe()?;
        let mut out = Vec::with_capacity(zone.workers.len());
        for (i, w) in zone.workers.iter().enumerate() {
            let fail = |e: &dyn Display| anyhow::anyhow!(refusal(zone_index, i, w, e));
            let mut artifact = self.artifact_of(rt, &w.component).map_err(|e| fail(&e))?;
            if !artifact.exists() {
                let started = std::time::Instant::now();
                artifact = rt
                    .compile_elsewhere(&exe, &w.component)
                    .map_err(|e| fail(&e))?;
                tracing::info!(
                    zone = %zone.name,
                    worker = %w.name,
                    ms = started.elapsed().as_millis() as u64,
                    artifact = %artifact.display(),
                    "worker compiled"
                );
            }
            let l = &w.limits;
            let limits = Limits {
                cpu_time: l.cpu_time,
                memory_bytes: l.memory_bytes,
                wall_time: l.wall_time,
                subrequests: l.subrequests,
                subrequests_in_flight: l.subrequests_in_flight as usize,
                response_body_bytes: l.response_body_bytes,
            };
            let worker = rt
                .load(&artifact, limits)
                .map_err(|e| fail(&e))?
                .with_env(w.env.clone())
                .with_allowed_hosts(w.allowed_hosts.clone(), Pipeline::Unix(self.socket.clone()))
                .with_kv(KvAccess::new(self.kv.clone(), w.kv_namespaces.clone()));
            out.push(ZoneWorker {
                name: w.name.clone(),
                worker,
                request_body_bytes: l.request_body_bytes,
                requests: metrics
                    .worker_requests
                    .with_label_values(&[&zone.name, &w.name]),
            });
        }
        Ok(out)
    }
}

fn start_runtime(s: &WorkerRuntime) -> anyhow::Result<Runtime> {
    Runtime::new(&s.artifact_dir, s.instances, s.max_memory).map_err(|e| {
        anyhow::anyhow!(
            "workers: cannot start the runtime (artifact_dir {}): {e:#}",
            s.artifact_dir.display()
        )
    })
}

/// Why the `i`th worker of zone `zone_index` is refused: its place in the configuration, its
/// name, its component and the reason.
fn refusal(zone_index: usize, i: usize, w: &edgenet_config::Worker, e: &dyn Display) -> String {
    format!(
        "zones[{zone_index}].workers[{i}] ({:?}): {}: {e}",
        w.name,
        w.component.display()
    )
}

/// `edgenet check`'s last step: compiles every worker component of `config` in this process,
/// into the node's artifact cache (so a node started next deploys them without compiling),
/// and returns why each component that deploying would refuse is refused, as deploy says it.
pub fn check_components(config: &Config) -> Vec<String> {
    let workers: Vec<_> = config
        .zones
        .iter()
        .enumerate()
        .flat_map(|(z, zone)| zone.workers.iter().enumerate().map(move |(i, w)| (z, i, w)))
        .collect();
    if workers.is_empty() {
        return Vec::new();
    }
    let rt = match start_runtime(&config.workers) {
        Ok(rt) => rt,
        Err(e) => return vec![format!("{e:#}")],
    };
    workers
        .into_iter()
        .filter_map(|(z, i, w)| {
            let compiled = std::fs::read(&w.component)
                .map_err(|e| e.to_string())
                .and_then(|wasm| rt.compile(&wasm).map_err(|e| e.to_string()));
            compiled.err().map(|e| refusal(z, i, w, &e))
        })
        .collect()
}

/// The status a failed worker request gets: resource limits are 503 (as an overloaded service),
/// a slow worker 504, a crashed one 500, an oversized response 502.
pub fn error_status(e: &WorkerError) -> u16 {
    match e {
        WorkerError::CpuTime(_)
        | WorkerError::Memory(_)
        | WorkerError::Subrequests(_)
        | WorkerError::Busy => 503,
        WorkerError::WallTime(_) => 504,
        WorkerError::ResponseTooLarge(_) => 502,
        WorkerError::Trap(_) | WorkerError::NoResponse | WorkerError::BadComponent(_) => 500,
    }
}

/// The header that tells a worker the client's address (Cloudflare's name, so workers written
/// for it read it as they do there); a value the client sent is replaced.
pub const CLIENT_IP_HEADER: &str = "cf-connecting-ip";

/// The request as a worker sees it: an absolute URI (`scheme://host/path`), the client's
/// headers with its address in [`CLIENT_IP_HEADER`], and its body.
pub fn worker_request(
    req: &http::request::Parts,
    scheme: &str,
    host: &str,
    client: Option<std::net::IpAddr>,
    body: Bytes,
) -> Option<hyper::Request<edgenet_workers::RequestBody>> {
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri: http::Uri = format!("{scheme}://{host}{path}").parse().ok()?;
    let mut builder = hyper::Request::builder()
        .method(req.method.clone())
        .uri(uri);
    for (name, value) in req.headers.iter() {
        if name.as_str() != CLIENT_IP_HEADER {
            builder = builder.header(name, value);
        }
    }
    if let Some(ip) = client {
        builder = builder.header(CLIENT_IP_HEADER, ip.to_string());
    }
    builder.body(edgenet_workers::request_body(body)).ok()
}

/// Whether a worker's response header is the proxy's to set (framing and connection
/// management).
pub fn is_hop_header(name: &http::HeaderName) -> bool {
    use http::header::*;
    [
        CONNECTION,
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
        TE,
        TRAILER,
        UPGRADE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// A worker's response as far as it was gathered before its head goes out.
pub struct Gathered {
    /// Its status and headers.
    pub parts: http::response::Parts,
    /// The rest of its body, if it has not ended.
    pub body: ResponseBody,
    /// What it wrote so far (at least [`BUFFER`] bytes unless it ended).
    pub buffered: Bytes,
    /// The body ended within [`BUFFER`] bytes: `buffered` is all of it.
    pub ended: bool,
}

/// Runs the worker on `req` until it has set its response and written [`BUFFER`] bytes of
/// body, or ended it.
pub async fn gather(
    worker: &Worker,
    req: hyper::Request<edgenet_workers::RequestBody>,
) -> Result<Gathered, WorkerError> {
    let (parts, mut body) = worker.stream(req).await?.into_parts();
    let mut buffered = BytesMut::new();
    while buffered.len() < BUFFER {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buffered.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => return Err(e),
            None => {
                return Ok(Gathered {
                    parts,
                    body,
                    buffered: buffered.freeze(),
                    ended: true,
                })
            }
        }
    }
    Ok(Gathered {
        parts,
        body,
        buffered: buffered.freeze(),
        ended: false,
    })
}

/// The headers of a worker's response as the client gets them: the worker's, but the framing
/// ones (the proxy's), then `Content-Length` when the whole body is known, the zone's
/// response header rules and the request id.
pub fn response_headers(
    parts: &http::response::Parts,
    rules: &[HeaderRule],
    request_id: &str,
    length: Option<usize>,
) -> http::HeaderMap {
    let mut headers = http::HeaderMap::with_capacity(parts.headers.len() + 3);
    for (name, value) in parts.headers.iter() {
        if !is_hop_header(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Some(n) = length {
        headers.insert(http::header::CONTENT_LENGTH, n.into());
    }
    apply_header_rules(rules, &mut headers);
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        headers.insert(super::respond::REQUEST_ID, v);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_request_names_the_client_and_replaces_a_sent_address() {
        let parts = http::Request::builder()
            .method("POST")
            .uri("/api?x=1")
            .header("cf-connecting-ip", "203.0.113.9")
            .header("x-a", "1")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let ip = "192.0.2.4".parse().ok();
        let req = worker_request(&parts, "https", "shop.test", ip, Bytes::new()).unwrap();
        assert_eq!(req.uri(), "https://shop.test/api?x=1");
        assert_eq!(req.method(), http::Method::POST);
        let ips: Vec<_> = req.headers().get_all(CLIENT_IP_HEADER).iter().collect();
        assert_eq!(ips, ["192.0.2.4"]);
        assert_eq!(req.headers()["x-a"], "1");
    }

    #[test]
    fn framing_headers_are_the_proxys() {
        let (parts, ()) = http::Response::builder()
            .status(201)
            .header("content-length", "999")
            .header("transfer-encoding", "chunked")
            .header("connection", "close")
            .header("x-worker", "yes")
            .body(())
            .unwrap()
            .into_parts();
        let rule = HeaderRule {
            action: edgenet_config::HeaderAction::Set,
            name: http::HeaderName::from_static("x-zone"),
            value: Some(http::HeaderValue::from_static("z")),
        };
        let h = response_headers(&parts, &[rule], "abc", Some(5));
        assert_eq!(h["content-length"], "5");
        assert!(h.get("transfer-encoding").is_none() && h.get("connection").is_none());
        assert_eq!(h["x-worker"], "yes");
        assert_eq!(h["x-zone"], "z");
        assert_eq!(h["x-request-id"], "abc");
        assert!(response_headers(&parts, &[], "abc", None)
            .get("content-length")
            .is_none());
    }

    #[test]
    fn limits_are_503_a_slow_worker_504() {
        assert_eq!(error_status(&WorkerError::Busy), 503);
        assert_eq!(error_status(&WorkerError::NoResponse), 500);
    }
}
